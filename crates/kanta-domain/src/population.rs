//! Facts from the population register (the operator's copy of the population information system):
//! persons and the relations that let one person act for another (R-AUTH-2, R-MINOR-1).

use crate::hetu::Hetu;
use serde::{Deserialize, Serialize};
use time::Date;

/// A person as the population register knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub hetu: Hetu,
    pub family_name: String,
    pub given_names: String,
    pub birth_date: Date,
    pub deceased: Option<Date>,
    /// Non-disclosure for personal safety (turvakielto).
    pub non_disclosure: bool,
}

/// The kind of a relation in the population register. The person the relation is *about* (the
/// child, or the adult under guardianship of interests) is the subject; the other is the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelationKind {
    /// Huoltaja: a guardian of a minor (R-MINOR-1).
    Guardian,
    /// Tiedonsaantioikeus: right to information about a child's health care (R-MINOR-1, R-MINOR-5).
    RightToInformation,
    /// Edunvalvoja: guardianship of interests of an adult (R-MINOR-2).
    GuardianOfInterests,
}

impl RelationKind {
    pub const ALL: [RelationKind; 3] = [
        RelationKind::Guardian,
        RelationKind::RightToInformation,
        RelationKind::GuardianOfInterests,
    ];
    pub fn code(self) -> &'static str {
        match self {
            RelationKind::Guardian => "guardian",
            RelationKind::RightToInformation => "right-to-information",
            RelationKind::GuardianOfInterests => "guardian-of-interests",
        }
    }
    pub fn from_code(code: &str) -> Option<RelationKind> {
        RelationKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// A custody agreement registered in coded form (R-MINOR-8). Without one, guardians act for the
/// child only through a mutual authorisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CustodyAgreement {
    /// Both guardians act in health-care matters.
    Joint,
    /// This guardian alone decides health-care matters.
    HealthCareThisGuardian,
    /// The other guardian alone decides health-care matters.
    HealthCareOtherGuardian,
    /// An agreement or order is registered, but not in coded form: the guardians act in MyKanta
    /// only through a mutual authorisation (R-MINOR-8).
    Uncoded,
}

impl CustodyAgreement {
    pub const ALL: [CustodyAgreement; 4] = [
        CustodyAgreement::Joint,
        CustodyAgreement::HealthCareThisGuardian,
        CustodyAgreement::HealthCareOtherGuardian,
        CustodyAgreement::Uncoded,
    ];
    pub fn code(self) -> &'static str {
        match self {
            CustodyAgreement::Joint => "joint",
            CustodyAgreement::HealthCareThisGuardian => "health-care-this-guardian",
            CustodyAgreement::HealthCareOtherGuardian => "health-care-other-guardian",
            CustodyAgreement::Uncoded => "uncoded",
        }
    }
    pub fn from_code(code: &str) -> Option<CustodyAgreement> {
        CustodyAgreement::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One relation from the register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    pub kind: RelationKind,
    /// The child or principal.
    pub subject: Hetu,
    /// The guardian, right-holder or guardian of interests.
    pub holder: Hetu,
    pub start: Option<Date>,
    pub end: Option<Date>,
    pub custody: Option<CustodyAgreement>,
}

impl Relation {
    /// Whether the relation is in force on `today` (start and end inclusive).
    pub fn in_force(&self, today: Date) -> bool {
        self.start.is_none_or(|s| s <= today) && self.end.is_none_or(|e| today <= e)
    }
}

/// What the register says about one person: their data and the relations about them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub person: Person,
    pub relations: Vec<Relation>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn relation_in_force_boundaries_are_inclusive() {
        let h = Hetu::parse("010516B903X").unwrap();
        let r = Relation {
            kind: RelationKind::Guardian,
            subject: h.clone(),
            holder: h,
            start: Some(date!(2020 - 01 - 01)),
            end: Some(date!(2020 - 12 - 31)),
            custody: None,
        };
        for (day, expect) in [
            (date!(2019 - 12 - 31), false),
            (date!(2020 - 01 - 01), true),
            (date!(2020 - 12 - 31), true),
            (date!(2021 - 01 - 01), false),
        ] {
            assert_eq!(r.in_force(day), expect, "{day}");
        }
    }

    #[test]
    fn codes_round_trip() {
        for k in RelationKind::ALL {
            assert_eq!(RelationKind::from_code(k.code()), Some(k));
        }
        for c in CustodyAgreement::ALL {
            assert_eq!(CustodyAgreement::from_code(c.code()), Some(c));
        }
        assert_eq!(RelationKind::from_code("GUARD"), None);
    }
}
