//! Acting for another person in MyKanta: the facts the one access decision rests on when a citizen
//! acts for a child (R-MINOR) or for another adult (R-PROXY), and the pure rules that read them —
//! ages on Finnish calendar days, the minor's disclosure code of a visit, a mandate's validity, the
//! guardians' mutual authorisation.
//!
//! The facts are gathered by the caller (the population register for guardianship and rights to
//! information, the mandate service for mandates) and given to [`crate::access::decide`] in
//! [`crate::access::Facts`]; nothing here does I/O or reads the clock.

use crate::hetu::Hetu;
use crate::population::CustodyAgreement;
use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// The Suomi.fi mandate issue for health-care errands ("Uträttande av ärenden inom hälso- och
/// sjukvården", R-PROXY-1).
pub const HEALTH_CARE_ISSUE: &str =
    "http://valtuusrekisteri.suomi.fi/terveydenhuollon_asioiden_hoito";

/// Completed years on the Finnish calendar day `day` for a person born on `born`.
///
/// A birthday is reached at 00:00 Helsinki time (the caller gives Finnish calendar days). A
/// 29 February birthday is reached on 28 February in a common year: the seeds and the research are
/// silent; this follows the Finnish Act on the Calculation of Statutory Time Limits (150/1930, § 4:
/// a period counted in years that would end on a day the month lacks ends on the month's last day).
pub fn age_on(born: Date, day: Date) -> u32 {
    if day < born {
        return 0;
    }
    let mut years = day.year() - born.year();
    let (bm, bd) = (born.month(), born.day());
    // This year's birthday (28 February for a 29 February birthday in a common year).
    let birthday_day = if bm == Month::February && bd == 29 && !time::util::is_leap_year(day.year())
    {
        28
    } else {
        bd
    };
    if (u8::from(day.month()), day.day()) < (u8::from(bm), birthday_day) {
        years -= 1;
    }
    years.max(0) as u32
}

/// The professional's structured record, at a service event, of the minor's capacity and will
/// about disclosure to guardians (THL code system `urn:oid:1.2.246.537.5.40202.201901`, R-MINOR-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MinorDisclosure {
    /// 1: the minor lacks capacity to decide: disclosed to guardians.
    NoCapacity,
    /// 2: capable, allows disclosure.
    Allows,
    /// 3: capable, forbids disclosure (R-MINOR-4).
    Forbids,
    /// 4: capacity unknown: not disclosed.
    Unknown,
    /// A code outside the code system: treated as not disclosed (fail closed).
    Unreadable,
}

impl MinorDisclosure {
    pub const ALL: [MinorDisclosure; 5] = [
        MinorDisclosure::NoCapacity,
        MinorDisclosure::Allows,
        MinorDisclosure::Forbids,
        MinorDisclosure::Unknown,
        MinorDisclosure::Unreadable,
    ];

    pub fn from_code(code: &str) -> MinorDisclosure {
        match code {
            "1" => MinorDisclosure::NoCapacity,
            "2" => MinorDisclosure::Allows,
            "3" => MinorDisclosure::Forbids,
            "4" => MinorDisclosure::Unknown,
            _ => MinorDisclosure::Unreadable,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            MinorDisclosure::NoCapacity => "1",
            MinorDisclosure::Allows => "2",
            MinorDisclosure::Forbids => "3",
            MinorDisclosure::Unknown => "4",
            MinorDisclosure::Unreadable => "unreadable",
        }
    }

    /// Whether the code lets the record be disclosed to guardians.
    pub fn discloses(self) -> bool {
        match self {
            MinorDisclosure::NoCapacity | MinorDisclosure::Allows => true,
            MinorDisclosure::Forbids | MinorDisclosure::Unknown | MinorDisclosure::Unreadable => {
                false
            }
        }
    }
}

/// What a record says about the minor at the time it was made: the Finnish calendar day of its
/// service event (or its own date when it has none), and the disclosure code recorded there
/// (`None`: no code, i.e. recorded in a system not updated for minors' data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinorRecord {
    pub on: Date,
    pub disclosure: Option<MinorDisclosure>,
}

/// Why a child's record is not shown to a guardian or right-holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MinorHidden {
    /// The minor, judged capable, forbade disclosure (R-MINOR-4).
    MinorForbids,
    /// The professional recorded the capacity as unknown, or a code outside the code system.
    CapacityUnknown,
    /// Recorded while the child was 10–17 in a system that records no disclosure code (R-MINOR-3).
    NonUpdatedSystem,
}

impl MinorHidden {
    pub fn code(self) -> &'static str {
        match self {
            MinorHidden::MinorForbids => "minor-forbids",
            MinorHidden::CapacityUnknown => "minor-capacity-unknown",
            MinorHidden::NonUpdatedSystem => "non-updated-system",
        }
    }
}

/// R-MINOR-3, R-MINOR-4: whether a guardian (or right-holder) may see a record of a child born on
/// `born`. The child's age on the day of the record's service event decides. Under 10: shown, unless
/// a code recorded there says otherwise (a professional's assessment is honoured at any age). From 10
/// to 17: shown only under code 1 or 2; without a code the record comes from a non-updated system
/// and is never shown.
pub fn minor_record_shown(born: Date, record: &MinorRecord) -> Result<(), MinorHidden> {
    let hidden = |d: MinorDisclosure| match d {
        MinorDisclosure::Forbids => MinorHidden::MinorForbids,
        MinorDisclosure::Unknown
        | MinorDisclosure::Unreadable
        | MinorDisclosure::NoCapacity
        | MinorDisclosure::Allows => MinorHidden::CapacityUnknown,
    };
    match (age_on(born, record.on) < 10, record.disclosure) {
        (_, Some(d)) if d.discloses() => Ok(()),
        (_, Some(d)) => Err(hidden(d)),
        (true, None) => Ok(()),
        (false, None) => Err(MinorHidden::NonUpdatedSystem),
    }
}

/// What the mandate service answered for (delegate, principal, the health-care issue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MandateCheck {
    Allowed,
    /// No mandate in force: none given, expired, revoked, or for another issue (R-PROXY-3).
    Disallowed,
    /// The mandate service could not be asked (R-OPS-2).
    Unavailable,
}

/// How the signed-in person stands to the person whose data is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The person themselves.
    Own,
    /// A guardian (huoltaja) in the population register (R-MINOR-1).
    Guardian(Guardianship),
    /// A right to information about the child's health care (tiedonsaantioikeus, R-MINOR-5).
    RightToInformation { holder_non_disclosure: bool },
    /// A guardian of interests (edunvalvoja) of an adult, from the population register.
    GuardianOfInterests,
    /// A person with no relation in the register, asking through the mandate service (R-PROXY).
    Proxy(MandateCheck),
    /// No relation in the register (none, or ended) and no mandate asked for.
    Unrelated,
}

/// A guardian's standing: the coded custody agreement if any, whether the guardians have
/// authorised each other (R-MINOR-6), and whether the guardian has a non-disclosure marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guardianship {
    /// `None`: no custody agreement registered (guardians act as guardians).
    pub custody: Option<CustodyAgreement>,
    pub mutual_authorisation: bool,
    pub holder_non_disclosure: bool,
}

/// The person whose data is asked for, as the population register (or the HETU) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectFacts {
    pub born: Date,
    pub deceased: bool,
    /// Non-disclosure for personal safety (turvakielto).
    pub non_disclosure: bool,
}

/// Everything about acting that a citizen's request rests on: the standing, the subject, and the
/// Finnish calendar day of `now` (ages change at 00:00 Helsinki time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acting {
    pub standing: Standing,
    pub subject: SubjectFacts,
    pub today: Date,
}

/// Facts a function of the R-ACT table needs beyond the standing (they arrive with the functions:
/// the information notice with consents, a consent's giver with consents). `None`: not known, and a
/// rule that needs it refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FunctionFacts {
    /// The information notice was given to the minor in health care (R-ACT-3).
    pub notice_received_in_care: Option<bool>,
    /// The principal has acknowledged the information notice themselves (R-ACT-3).
    pub notice_acknowledged_by_principal: Option<bool>,
    /// The consent to be revoked was given by the person now acting (R-ACT-5).
    pub consent_given_by_actor: Option<bool>,
}

/// How a mandate was given (R-PROXY-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GivenAt {
    /// By the principal, online after strong identification.
    Online,
    /// At a service point, identity checked from a document, for someone without eID.
    ServicePoint,
}

/// A mandate in the mandate registry: the principal authorises the delegate for an issue, from
/// `valid_from` (inclusive) to `valid_to` (exclusive: it ends exactly then), unless revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mandate {
    pub id: String,
    pub principal: Hetu,
    pub delegate: Hetu,
    pub issue: String,
    pub valid_from: i64,
    pub valid_to: i64,
    pub revoked_at: Option<i64>,
    pub given_at: GivenAt,
}

impl Mandate {
    /// Whether this mandate lets `delegate` act for `principal` in `issue` at `now` (ms).
    pub fn allows(&self, delegate: &Hetu, principal: &Hetu, issue: &str, now: i64) -> bool {
        &self.delegate == delegate
            && &self.principal == principal
            && self.issue == issue
            && self.valid_from <= now
            && now < self.valid_to
            && self.revoked_at.is_none_or(|r| now < r)
    }
}

/// A mutual authorisation of a child's two guardians (R-MINOR-6), given in the mandate service:
/// proposed by one, in force once the other confirms, until either revokes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianAuthorisation {
    pub id: String,
    pub child: Hetu,
    pub proposed_by: Hetu,
    pub other: Hetu,
    pub proposed_at: i64,
    pub confirmed_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl GuardianAuthorisation {
    /// In force for `guardian` and `child` at `now`: both have confirmed, nobody has revoked.
    pub fn in_force_for(&self, guardian: &Hetu, child: &Hetu, now: i64) -> bool {
        &self.child == child
            && (&self.proposed_by == guardian || &self.other == guardian)
            && self.confirmed_at.is_some_and(|c| c <= now)
            && self.revoked_at.is_none_or(|r| now < r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::date;

    #[test]
    fn ages_change_on_the_birthday_and_a_leap_day_birthday_on_28_february() {
        let born = date!(2008 - 05 - 01);
        assert_eq!(age_on(born, date!(2026 - 04 - 30)), 17);
        assert_eq!(age_on(born, date!(2026 - 05 - 01)), 18);
        assert_eq!(age_on(born, date!(2000 - 01 - 01)), 0);
        let leap = date!(2008 - 02 - 29);
        assert_eq!(age_on(leap, date!(2026 - 02 - 27)), 17);
        assert_eq!(age_on(leap, date!(2026 - 02 - 28)), 18);
        assert_eq!(age_on(leap, date!(2028 - 02 - 28)), 19);
        assert_eq!(age_on(leap, date!(2028 - 02 - 29)), 20);
    }

    #[test]
    fn the_age_at_the_visit_and_its_code_decide() {
        let born = date!(2012 - 06 - 15);
        let at = |on, d| MinorRecord { on, disclosure: d };
        // Under 10 at the visit: shown without a code; a recorded prohibition is honoured.
        assert!(minor_record_shown(born, &at(date!(2022 - 06 - 14), None)).is_ok());
        assert_eq!(
            minor_record_shown(
                born,
                &at(date!(2022 - 06 - 14), Some(MinorDisclosure::Forbids))
            ),
            Err(MinorHidden::MinorForbids)
        );
        // Ten on the day of the visit: a non-updated system's record is never shown.
        assert_eq!(
            minor_record_shown(born, &at(date!(2022 - 06 - 15), None)),
            Err(MinorHidden::NonUpdatedSystem)
        );
        for (d, shown) in [
            (MinorDisclosure::NoCapacity, true),
            (MinorDisclosure::Allows, true),
            (MinorDisclosure::Forbids, false),
            (MinorDisclosure::Unknown, false),
            (MinorDisclosure::Unreadable, false),
        ] {
            assert_eq!(
                minor_record_shown(born, &at(date!(2025 - 01 - 01), Some(d))).is_ok(),
                shown,
                "{d:?}"
            );
        }
        assert_eq!(MinorDisclosure::from_code("5"), MinorDisclosure::Unreadable);
    }

    #[test]
    fn a_mandate_ends_exactly_at_its_valid_to_time_or_when_revoked() {
        let p = Hetu::from_parts(date!(1950 - 01 - 01), '-', 903).unwrap();
        let d = Hetu::from_parts(date!(1980 - 01 - 01), '-', 902).unwrap();
        let m = Mandate {
            id: "m".into(),
            principal: p.clone(),
            delegate: d.clone(),
            issue: HEALTH_CARE_ISSUE.into(),
            valid_from: 100,
            valid_to: 200,
            revoked_at: None,
            given_at: GivenAt::Online,
        };
        assert!(!m.allows(&d, &p, HEALTH_CARE_ISSUE, 99));
        assert!(m.allows(&d, &p, HEALTH_CARE_ISSUE, 100));
        assert!(m.allows(&d, &p, HEALTH_CARE_ISSUE, 199));
        assert!(!m.allows(&d, &p, HEALTH_CARE_ISSUE, 200));
        assert!(!m.allows(&p, &d, HEALTH_CARE_ISSUE, 150));
        assert!(!m.allows(&d, &p, "http://valtuusrekisteri.suomi.fi/other", 150));
        let revoked = Mandate {
            revoked_at: Some(150),
            ..m
        };
        assert!(revoked.allows(&d, &p, HEALTH_CARE_ISSUE, 149));
        assert!(!revoked.allows(&d, &p, HEALTH_CARE_ISSUE, 150));
    }
}
