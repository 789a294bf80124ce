//! The patient's choices about their data and the disclosure rule that obeys them (R-CONSENT-1,
//! R-CONSENT-2, R-INFO-1…4, R-X-5, R-RX-2).
//!
//! A provider reads its own register's data always. Another register's data it receives only when
//! [`disclose`] says so:
//! - the acting professional is named and the purpose of use is care (a treatment relationship,
//!   which the provider's own system verifies and asserts: [`Reader`]);
//! - the patient has received the information notice (R-INFO);
//! - a disclosure consent for the care domain of the record (health care and social care
//!   separately) is in force;
//! - no disclosure prohibition covers the holding provider, its register, or the record's service
//!   event — except that a producer under a purchased-services mandate reads the organiser's data
//!   over a prohibition that concerns the organiser's data (and only that, R-CONSENT-2).
//!
//! Prescription Centre data (prescriptions and dispensations) is not under the disclosure consent:
//! it follows the prescription disclosure prohibition (R-ACT-2, R-RX-2): with one in force, another
//! organisation finds no prescription by searching; a pharmacy still reads the one the customer
//! presents (by its id, from the patient instruction or summary printout); the prescriber always
//! sees its own.
//!
//! Emergencies (R-X-5): with a stated reason, an emergency read is allowed where the patient has
//! not given the notice or consent (the Patient Act: consent cannot be had from an unconscious
//! patient). A prohibition — a disclosure prohibition or the prescription prohibition — yields in
//! an emergency only when the patient chose so when setting it (kanta.fi: "When setting up a denial
//! of consent, you can give permission for your data to be shared … in an emergency"; for
//! prescriptions "Voit kuitenkin sallia kiellettyjen reseptien tietojen luovuttamisen
//! terveydenhuollolle hätätilanteessa" — to health care, so never to a pharmacy by emergency).
//! The choice is stored with the prohibition (`Prohibition::yields_in_emergency`; MyKanta asks).
//! Every emergency read is a ground of its own in the audit record, with its reason, and marked
//! in the disclosure log.
//!
//! Architecture invariant: no I/O, no clock; times are epoch milliseconds given by the caller.

use serde::{Deserialize, Serialize};

/// The domain a record belongs to: the disclosure consent is given separately for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CareDomain {
    Health,
    Social,
}

impl CareDomain {
    pub fn all() -> [CareDomain; 2] {
        [CareDomain::Health, CareDomain::Social]
    }
    pub fn code(self) -> &'static str {
        match self {
            CareDomain::Health => "health",
            CareDomain::Social => "social",
        }
    }
    pub fn parse(s: &str) -> Option<CareDomain> {
        CareDomain::all().into_iter().find(|d| d.code() == s)
    }
}

/// In which capacity a recording of the patient's choices (a consent, a prohibition, a will, the
/// notice) was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordedAs {
    /// The person themselves, in MyKanta.
    Myself,
    /// A guardian for a minor, in MyKanta.
    Guardian,
    /// A proxy for an adult, in MyKanta.
    Proxy,
    /// A care unit, at the patient's request (seed 000 §9, seed 004).
    CareUnit,
}

impl RecordedAs {
    pub const ALL: [RecordedAs; 4] = [
        RecordedAs::Myself,
        RecordedAs::Guardian,
        RecordedAs::Proxy,
        RecordedAs::CareUnit,
    ];
    pub fn code(self) -> &'static str {
        match self {
            RecordedAs::Myself => "self",
            RecordedAs::Guardian => "guardian",
            RecordedAs::Proxy => "proxy",
            RecordedAs::CareUnit => "care-unit",
        }
    }
    pub fn parse(s: &str) -> Option<RecordedAs> {
        RecordedAs::ALL.into_iter().find(|r| r.code() == s)
    }
}

/// What a system's write of a consent, prohibition or will says of its recorder (its
/// `recorded-as`), for the rule of who records the patient's choices. The server stamps the
/// recorder of what it stores; the claim only decides whether the write is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecorderClaim {
    /// The body names no recorder (the server stamps the care unit).
    None,
    /// The body names this one.
    Claims(RecordedAs),
    /// The body names one the platform does not know, or several.
    Unreadable,
}

/// A period of validity: from (inclusive) to (exclusive), either end open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Period {
    pub fn always() -> Period {
        Period::default()
    }
    pub fn covers(&self, now: i64) -> bool {
        self.from.is_none_or(|f| f <= now) && self.to.is_none_or(|t| now < t)
    }
}

/// What a disclosure prohibition covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProhibitionScope {
    /// Everything a provider holds.
    Provider { org: String },
    /// One of a provider's registers (the eArkisto register code, e.g. `2` public health care).
    Register { org: String, register: String },
    /// One service event (a visit or care period): `Encounter/<id>`, and the records pointing at it.
    ServiceEvent { org: String, encounter: String },
}

impl ProhibitionScope {
    /// The provider whose data it concerns.
    pub fn org(&self) -> &str {
        match self {
            ProhibitionScope::Provider { org }
            | ProhibitionScope::Register { org, .. }
            | ProhibitionScope::ServiceEvent { org, .. } => org,
        }
    }

    /// Whether a record held by `org` in `register`, on service event `encounter`, falls under it.
    pub fn covers(&self, record: &RecordFacts<'_>) -> bool {
        match self {
            ProhibitionScope::Provider { org } => record.holder == org,
            // A record that names no register falls under every register prohibition of its
            // holder (fail closed: its register cannot be told).
            ProhibitionScope::Register { org, register } => {
                record.holder == org
                    && (record.unreadable || record.register.is_none_or(|r| r == register.as_str()))
            }
            ProhibitionScope::ServiceEvent { org, encounter } => {
                record.holder == org
                    && (record.unreadable
                        || record.service_event == Some(encounter.as_str())
                        || record.self_ref == Some(encounter.as_str()))
            }
        }
    }
}

/// A disclosure prohibition in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prohibition {
    pub scope: ProhibitionScope,
    /// The patient's choice when setting it: whether it yields to emergency care.
    pub yields_in_emergency: bool,
}

/// A purchased-services mandate (ostopalvelun valtuutus) as the organiser stored it (R-CONSENT-2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurchaseMandate {
    /// The organiser: the provider responsible, whose register the data belongs to.
    pub organiser: String,
    /// The producer; version 2 lets the organiser store it first without one (then it grants
    /// nothing until completed).
    pub producer: Option<String>,
    pub valid: Period,
    /// The producer may retrieve the organiser's earlier data for the patient.
    pub retrieve: bool,
    /// The producer may store into the organiser's register.
    pub store: bool,
}

impl PurchaseMandate {
    fn grants(&self, producer: &str, now: i64) -> bool {
        self.producer.as_deref() == Some(producer) && self.valid.covers(now)
    }

    /// May `producer` retrieve the organiser's data now?
    pub fn lets_retrieve(&self, producer: &str, now: i64) -> bool {
        self.retrieve && self.grants(producer, now)
    }

    /// May `producer` store into the organiser's register now?
    pub fn lets_store(&self, producer: &str, now: i64) -> bool {
        self.store && self.grants(producer, now)
    }
}

/// Everything the patient has chosen (and the organisers have stored) that the disclosure rule
/// reads, as in force now: the latest record of each kind decides; a revoked one is not here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentFacts {
    /// The information notice has been received (in MyKanta or in care).
    pub informed: bool,
    /// Disclosure consents in force, by domain, with their validity.
    pub consents: Vec<(CareDomain, Period)>,
    pub prohibitions: Vec<Prohibition>,
    /// The prescription disclosure prohibition, when in force: `Some(yields_in_emergency)` (the
    /// patient may allow health care to see the prohibited prescriptions in an emergency).
    pub prescription_prohibition: Option<bool>,
    pub mandates: Vec<PurchaseMandate>,
}

impl ConsentFacts {
    pub fn consent_in_force(&self, domain: CareDomain, now: i64) -> bool {
        self.consents
            .iter()
            .any(|(d, p)| *d == domain && p.covers(now))
    }
}

/// What the rule needs of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFacts<'a> {
    /// The provider whose register holds it.
    pub holder: &'a str,
    /// The register's code, when the record names one.
    pub register: Option<&'a str>,
    /// Its service event (`Encounter/<id>`), when it has one.
    pub service_event: Option<&'a str>,
    /// The record itself as `Type/id` (an Encounter is its own service event).
    pub self_ref: Option<&'a str>,
    pub domain: CareDomain,
    /// Its register or service event cannot be told exactly (text that does not parse, several
    /// register tags): every prohibition of its holder covers it (fail closed).
    pub unreadable: bool,
}

/// How the Prescription Centre's data is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CentreAccess {
    /// By the prescription's id (the one the customer presents).
    Presented,
    /// By searching the patient's prescriptions.
    Searched,
}

/// The purpose of use the request names (HL7 v3 PurposeOfUse codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// `TREAT`: care of the patient.
    Treatment,
    /// `ETREAT`: emergency care, with a stated reason (`reason` says whether one was given).
    Emergency { reason: bool },
    /// None named, or another purpose.
    Other,
}

impl Purpose {
    /// From the request's purpose-of-use value and whether an emergency reason came with it.
    pub fn parse(code: Option<&str>, reason: bool) -> Purpose {
        match code {
            Some("TREAT") => Purpose::Treatment,
            Some("ETREAT") => Purpose::Emergency { reason },
            Some(_) | None => Purpose::Other,
        }
    }
}

/// The reader: the organisation, and whether the request names the acting professional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reader<'a> {
    pub org: &'a str,
    pub professional: bool,
    pub purpose: Purpose,
}

/// Why another register's data may be disclosed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disclosed {
    /// Informed, consent in force, no prohibition.
    Consent,
    /// A producer under a purchased-services mandate reads the organiser's data.
    PurchasedService,
    /// Prescription Centre data, no prescription prohibition (no consent is needed in care).
    PrescriptionCentre,
    /// An emergency read with a stated reason.
    Emergency,
}

/// Why it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refused {
    NoProfessional,
    NotForCare,
    NoEmergencyReason,
    NotInformed,
    NoConsent,
    Prohibited,
    PrescriptionProhibition,
}

impl Refused {
    pub fn code(self) -> &'static str {
        match self {
            Refused::NoProfessional => "no-professional",
            Refused::NotForCare => "not-for-care",
            Refused::NoEmergencyReason => "no-emergency-reason",
            Refused::NotInformed => "not-informed",
            Refused::NoConsent => "no-consent",
            Refused::Prohibited => "prohibited",
            Refused::PrescriptionProhibition => "prescription-prohibition",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refused::NoProfessional => "another register's data is read only for a named professional (X-Kanta-Professional)",
            Refused::NotForCare => "another register's data is read only for care (purpose of use TREAT or ETREAT)",
            Refused::NoEmergencyReason => "an emergency read needs a stated reason (X-Kanta-Emergency-Reason)",
            Refused::NotInformed => "the patient has not received the information notice",
            Refused::NoConsent => "no disclosure consent in force for this care domain",
            Refused::Prohibited => "a disclosure prohibition covers this data",
            Refused::PrescriptionProhibition => "a prescription disclosure prohibition is in force",
        }
    }
}

/// The professional and purpose first: without them nothing of another register is disclosed.
pub fn reader_rule(reader: &Reader<'_>) -> Result<bool, Vec<Refused>> {
    let mut refused = vec![];
    if !reader.professional {
        refused.push(Refused::NoProfessional);
    }
    let emergency = match reader.purpose {
        Purpose::Treatment => false,
        Purpose::Emergency { reason: true } => true,
        Purpose::Emergency { reason: false } => {
            refused.push(Refused::NoEmergencyReason);
            true
        }
        Purpose::Other => {
            refused.push(Refused::NotForCare);
            false
        }
    };
    if refused.is_empty() {
        Ok(emergency)
    } else {
        Err(refused)
    }
}

/// R-CONSENT-1, R-CONSENT-2, R-X-5: may `reader` receive this record of another provider's
/// register? (A record in the reader's own register never comes here: a prohibition never hides
/// data from the register that holds it.)
pub fn disclose(
    reader: &Reader<'_>,
    record: &RecordFacts<'_>,
    facts: &ConsentFacts,
    now: i64,
) -> Result<Disclosed, Vec<Refused>> {
    let emergency = reader_rule(reader)?;
    // A producer reads the organiser's data over a prohibition that concerns the organiser's
    // data, but over no other — and the mandate stands in for the consent (the data is the
    // organiser's, for this care).
    let mandated = facts
        .mandates
        .iter()
        .any(|m| m.organiser == record.holder && m.lets_retrieve(reader.org, now));
    let covering: Vec<&Prohibition> = facts
        .prohibitions
        .iter()
        .filter(|p| p.scope.covers(record))
        .collect();
    let prohibited = covering
        .iter()
        .any(|p| !(mandated && p.scope.org() == record.holder));
    if mandated && !prohibited {
        return Ok(Disclosed::PurchasedService);
    }
    let mut refused = vec![];
    if prohibited {
        let yields = covering
            .iter()
            .filter(|p| !(mandated && p.scope.org() == record.holder))
            .all(|p| p.yields_in_emergency);
        if !(emergency && yields) {
            refused.push(Refused::Prohibited);
        }
    }
    if !facts.informed && !emergency {
        refused.push(Refused::NotInformed);
    }
    if !facts.consent_in_force(record.domain, now) && !emergency {
        refused.push(Refused::NoConsent);
    }
    if !refused.is_empty() {
        return Err(refused);
    }
    let consented = facts.informed && facts.consent_in_force(record.domain, now) && !prohibited;
    Ok(if consented {
        Disclosed::Consent
    } else {
        Disclosed::Emergency
    })
}

/// R-ACT-2, R-RX-2: may `reader` receive another organisation's prescription or dispensation?
pub fn disclose_centre(
    reader: &Reader<'_>,
    asked: CentreAccess,
    pharmacy: bool,
    facts: &ConsentFacts,
) -> Result<Disclosed, Vec<Refused>> {
    // Health care reads another organisation's prescriptions for care, with the professional named
    // (a pharmacy serves the customer at the counter).
    let emergency = if pharmacy {
        false
    } else {
        reader_rule(reader)?
    };
    let Some(yields) = facts.prescription_prohibition else {
        return Ok(Disclosed::PrescriptionCentre);
    };
    // A pharmacy dispenses the prescription the customer presents, prohibition or not.
    if pharmacy && asked == CentreAccess::Presented {
        return Ok(Disclosed::PrescriptionCentre);
    }
    // Health care in an emergency, if the patient allowed it; never a pharmacy by emergency.
    if pharmacy || !yields {
        return Err(vec![Refused::PrescriptionProhibition]);
    }
    if emergency {
        Ok(Disclosed::Emergency)
    } else {
        Err(vec![Refused::PrescriptionProhibition])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(holder: &'a str, register: &'a str, event: &'a str) -> RecordFacts<'a> {
        RecordFacts {
            holder,
            register: Some(register),
            service_event: Some(event),
            self_ref: None,
            unreadable: false,
            domain: CareDomain::Health,
        }
    }

    /// Issue 29: a record whose tags cannot be told exactly (several registers, text that does
    /// not parse) falls under every prohibition of its holder, and under no other provider's.
    #[test]
    fn an_unreadable_record_is_covered_by_every_prohibition_of_its_holder() {
        let mut r = rec("org-a", "2", "Encounter/e1");
        r.unreadable = true;
        for scope in [
            ProhibitionScope::Provider {
                org: "org-a".into(),
            },
            ProhibitionScope::Register {
                org: "org-a".into(),
                register: "3".into(),
            },
            ProhibitionScope::ServiceEvent {
                org: "org-a".into(),
                encounter: "Encounter/other".into(),
            },
        ] {
            assert!(scope.covers(&r), "{scope:?}");
        }
        let elsewhere = ProhibitionScope::Register {
            org: "org-b".into(),
            register: "2".into(),
        };
        assert!(!elsewhere.covers(&r));
        r.unreadable = false;
        assert!(!ProhibitionScope::ServiceEvent {
            org: "org-a".into(),
            encounter: "Encounter/other".into(),
        }
        .covers(&r));
    }

    #[test]
    fn periods_end_exactly() {
        let p = Period {
            from: Some(10),
            to: Some(20),
        };
        assert!(!p.covers(9));
        assert!(p.covers(10));
        assert!(p.covers(19));
        assert!(!p.covers(20));
        assert!(Period::always().covers(i64::MIN));
    }

    #[test]
    fn an_encounter_is_its_own_service_event() {
        let s = ProhibitionScope::ServiceEvent {
            org: "a".into(),
            encounter: "Encounter/e1".into(),
        };
        let mut r = rec("a", "2", "Encounter/e2");
        assert!(!s.covers(&r));
        r.self_ref = Some("Encounter/e1");
        assert!(s.covers(&r));
        r.holder = "b";
        assert!(
            !s.covers(&r),
            "the same id in another register is not covered"
        );
    }
}
