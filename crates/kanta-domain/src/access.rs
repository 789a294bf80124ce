//! Who may do what: one pure decision for every request and every record.
//!
//! [`decide`] answers every access question of the platform — a provider system's FHIR
//! interaction, the archivist's look-up, the operator's functions, a citizen's page — as a function
//! of (principal, action, target, facts, now). Handlers hold no rules: they ask once for the
//! request as a whole ([`Target::Request`]) and then, inside the audited release, once for every
//! record, so that what the audit log records as released is exactly what the principal receives.
//!
//! A [`Permit`] can be made only here; the store's release and write paths require one for every
//! record. Its [`Basis`] (role, purpose of use, the ground) goes into the audit record.
//!
//! The rules (each a row of the table in `tests/access-table.txt`):
//! - **Clinician** (a care provider's system): reads patient data of every register (until the
//!   consent rules of R-CONSENT-1 arrive through [`Facts`], the ground says which register it was),
//!   writes patient data into its own register only: a new version of another organisation's
//!   document is refused (an amendment is a new resource of its own, pointing at the original).
//!   Reads the shared registry; never writes it. Records no dispensations.
//! - **Pharmacy**: reads the patient, prescriptions, dispensations and the registry; writes
//!   dispensations only (its own register) and files Prescription Centre tasks (reservations in its
//!   own queue, renewal requests into the prescriber's). No diagnoses, no other clinical data.
//! - **Prescription Centre tasks** (`Task`): the business of the organisation whose queue holds
//!   them, for every role (`queue_rule`): the unit answers its renewal requests, the operator its
//!   review requests (R-ACT-11, R-ACT-12).
//! - **Archivist**: the archivist view only, for documents its own organisation recorded.
//! - **Operator**: the population register, the shared registry (reads and writes), the audit
//!   export. No clinical reads through `/fhir`.
//! - **Citizen**: their own records after the display rules, their own disclosure log, the
//!   functions of the R-ACT table by age (a minor: renewals, and wellbeing data from 16).
//! - **Citizen acting for another** ([`crate::acting`]): a guardian or right-holder for a minor
//!   from the population register (R-MINOR), a proxy for an adult through the mandate service
//!   (R-PROXY): the standing is checked first (age under 18 on today's Finnish day, not deceased,
//!   no non-disclosure marker on the child, a marker on the guardian only with a mutual
//!   authorisation, a coded custody agreement governs, an uncoded one needs the mutual
//!   authorisation; a proxy needs the mandate service's ALLOWED); then each of the child's records
//!   by the child's age at its visit and the minor's disclosure code there (R-MINOR-3/4); then each
//!   function by the R-ACT column of the standing. Never the disclosure log (R-VIEW-5).
//! - Every FHIR interaction also needs a granted SMART scope for the resource type
//!   ([`Scopes::allows`]).
//!
//! Architecture invariant: no I/O, no clock; every `match` over the enums here names every variant.

use crate::acting::{
    self, Acting, FunctionFacts, MandateCheck, MinorHidden, MinorRecord, Standing,
};
use crate::consent::{
    self, CentreAccess, ConsentFacts, Disclosed, Purpose, Reader, RecordFacts, RecordedAs,
    RecorderClaim, Refused,
};
use crate::display::{self, Section};
use crate::ids::{ClientRole, OrgId, PatientKey};
use crate::population::CustodyAgreement;
use serde::{Deserialize, Serialize};
use std::fmt;

// ------------------------------------------------------------------------------------------------
// Resource types and what kind of data each is.

/// What kind of data a resource type holds, as far as access is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The `Patient` resource.
    Patient,
    /// Care documents and other clinical data of the Patient Data Repository.
    Clinical,
    /// Prescriptions (`MedicationRequest`).
    Prescription,
    /// Dispensations (`MedicationDispense`).
    Dispensation,
    /// The Prescription Centre's tasks (`Task`): reservations, renewal and review requests, each in
    /// the queue of the organisation that holds it.
    PrescriptionTask,
    /// Consents and prohibitions (`Consent`).
    Consent,
    /// `Provenance` of patient data.
    Provenance,
    /// Shared reference data: organisations, practitioners, locations, services, medicines.
    Registry,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Patient,
        Kind::Clinical,
        Kind::Prescription,
        Kind::Dispensation,
        Kind::Consent,
        Kind::Provenance,
        Kind::Registry,
        Kind::PrescriptionTask,
    ];

    /// The kind of a resource type this platform stores; `None` for any other type.
    pub fn of(resource_type: &str) -> Option<Kind> {
        Some(match resource_type {
            "Patient" => Kind::Patient,
            "AllergyIntolerance"
            | "CarePlan"
            | "Composition"
            | "Condition"
            | "DiagnosticReport"
            | "DocumentReference"
            | "Encounter"
            | "EpisodeOfCare"
            | "Flag"
            | "ImagingStudy"
            | "Immunization"
            | "MedicationStatement"
            | "Observation"
            | "Procedure"
            | "QuestionnaireResponse"
            | "ServiceRequest" => Kind::Clinical,
            "MedicationRequest" => Kind::Prescription,
            "MedicationDispense" => Kind::Dispensation,
            "Task" => Kind::PrescriptionTask,
            "Consent" => Kind::Consent,
            "Provenance" => Kind::Provenance,
            "HealthcareService" | "Location" | "Medication" | "Organization" | "Practitioner"
            | "PractitionerRole" => Kind::Registry,
            _ => return None,
        })
    }

    /// Whether this kind is personal data of one patient (everything but the registry).
    pub fn is_patient_data(self) -> bool {
        match self {
            Kind::Patient
            | Kind::Clinical
            | Kind::Prescription
            | Kind::Dispensation
            | Kind::PrescriptionTask
            | Kind::Consent
            | Kind::Provenance => true,
            Kind::Registry => false,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Kind::Patient => "patient",
            Kind::Clinical => "clinical",
            Kind::Prescription => "prescription",
            Kind::Dispensation => "dispensation",
            Kind::PrescriptionTask => "prescription-task",
            Kind::Consent => "consent",
            Kind::Provenance => "provenance",
            Kind::Registry => "registry",
        }
    }
}

// ------------------------------------------------------------------------------------------------
// SMART Backend Services scopes.

/// The permissions of a SMART v2 scope: create, read, update, delete, search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Perms(u8);

impl Perms {
    pub const C: Perms = Perms(1);
    pub const R: Perms = Perms(2);
    pub const U: Perms = Perms(4);
    pub const D: Perms = Perms(8);
    pub const S: Perms = Perms(16);
    pub const NONE: Perms = Perms(0);
    pub const ALL: Perms = Perms(31);
    /// SMART v1 `read`: read and search.
    pub const V1_READ: Perms = Perms(2 | 16);
    /// SMART v1 `write`: create, update, delete.
    pub const V1_WRITE: Perms = Perms(1 | 4 | 8);

    pub fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn and(self, other: Perms) -> Perms {
        Perms(self.0 & other.0)
    }
    pub fn or(self, other: Perms) -> Perms {
        Perms(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The v2 suffix, letters in the order SMART requires (`cruds`).
    pub fn letters(self) -> String {
        [(1, 'c'), (2, 'r'), (4, 'u'), (8, 'd'), (16, 's')]
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, c)| *c)
            .collect()
    }

    fn parse(s: &str) -> Option<(Perms, bool)> {
        match s {
            "read" => return Some((Perms::V1_READ, true)),
            "write" => return Some((Perms::V1_WRITE, true)),
            "*" => return Some((Perms::ALL, true)),
            _ => {}
        }
        // v2: a non-empty subsequence of "cruds", in that order.
        let mut bits = 0u8;
        let mut last = 0u8;
        for c in s.chars() {
            let bit = match c {
                'c' => 1,
                'r' => 2,
                'u' => 4,
                'd' => 8,
                's' => 16,
                _ => return None,
            };
            if bit <= last {
                return None;
            }
            last = bit;
            bits |= bit;
        }
        (bits != 0).then_some((Perms(bits), false))
    }
}

/// One `system/<Type|*>.<permissions>` scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmartScope {
    /// `None` for `*` (every type).
    pub resource: Option<String>,
    pub perms: Perms,
    /// Written in SMART v1 form (`read`, `write`, `*`): echoed the same way where it can be.
    v1: bool,
}

impl SmartScope {
    fn covers(&self, resource_type: &str) -> bool {
        self.resource.as_deref().is_none_or(|r| r == resource_type)
    }
}

impl fmt::Display for SmartScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.resource.as_deref().unwrap_or("*");
        let p = if self.v1 && self.perms == Perms::ALL {
            "*".to_string()
        } else if self.v1 && self.perms == Perms::V1_READ {
            "read".to_string()
        } else if self.v1 && self.perms == Perms::V1_WRITE {
            "write".to_string()
        } else {
            self.perms.letters()
        };
        write!(f, "system/{t}.{p}")
    }
}

/// A set of granted SMART scopes (RFC 6749 §3.3: space-separated).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Scopes(Vec<SmartScope>);

/// Why a scope string was refused (`invalid_scope`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The most scopes one request may name.
pub const MAX_SCOPES: usize = 64;

impl Scopes {
    /// Parse `system/…` scopes (SMART v1 `read|write|*`, v2 `cruds`); a type must be one this
    /// platform stores, or `*`. Fine-grained (`?param=`) scopes and other scope kinds are refused.
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        let mut out: Vec<SmartScope> = Vec::new();
        for (n, s) in text.split_whitespace().enumerate() {
            if n >= MAX_SCOPES {
                return Err(ScopeError(format!("at most {MAX_SCOPES} scopes")));
            }
            let rest = s.strip_prefix("system/").ok_or_else(|| {
                ScopeError(format!(
                    "'{}' is not a system/ scope; backend services request system/<Type>.<permissions>",
                    shorten(s)
                ))
            })?;
            if rest.contains('?') {
                return Err(ScopeError(format!(
                    "'{}': fine-grained scopes (with ?) are not supported",
                    shorten(s)
                )));
            }
            let (t, p) = rest
                .rsplit_once('.')
                .ok_or_else(|| ScopeError(format!("'{}' has no .permissions", shorten(s))))?;
            let resource = match t {
                "*" => None,
                t if Kind::of(t).is_some() => Some(t.to_string()),
                _ => {
                    return Err(ScopeError(format!(
                        "'{}': unknown resource type",
                        shorten(s)
                    )))
                }
            };
            let (perms, v1) = Perms::parse(p).ok_or_else(|| {
                ScopeError(format!(
                    "'{}': permissions must be read, write, * or letters of cruds in that order",
                    shorten(s)
                ))
            })?;
            let scope = SmartScope {
                resource,
                perms,
                v1,
            };
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Ok(Scopes(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|s| s.perms.is_empty())
    }

    /// Every interaction on every type (`system/*.cruds`): the platform's own jobs (the demo seed,
    /// the benchmark), whose roles still bound what they may do.
    pub fn all() -> Scopes {
        Scopes(vec![SmartScope {
            resource: None,
            perms: Perms::ALL,
            v1: false,
        }])
    }

    /// What of `self` (the request) `registered` allows: per requested scope, the permissions that
    /// a registered scope covering the same types also has. The result names the requested types.
    pub fn intersect(&self, registered: &Scopes) -> Scopes {
        let mut out: Vec<SmartScope> = Vec::new();
        for want in &self.0 {
            for have in &registered.0 {
                // The narrower of the two type patterns.
                let resource = match (&want.resource, &have.resource) {
                    (Some(a), Some(b)) if a == b => Some(a.clone()),
                    (Some(_), Some(_)) => continue,
                    (Some(a), None) => Some(a.clone()),
                    (None, Some(b)) => Some(b.clone()),
                    (None, None) => None,
                };
                let perms = want.perms.and(have.perms);
                if perms.is_empty() {
                    continue;
                }
                let scope = SmartScope {
                    resource,
                    perms,
                    v1: want.v1,
                };
                if !out.contains(&scope) {
                    out.push(scope);
                }
            }
        }
        Scopes(out)
    }

    /// Whether these scopes grant `need` on `resource_type`.
    pub fn allows(&self, resource_type: &str, need: Perms) -> bool {
        let have = self
            .0
            .iter()
            .filter(|s| s.covers(resource_type))
            .fold(Perms::NONE, |acc, s| acc.or(s.perms));
        have.contains(need)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(" "))
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

// ------------------------------------------------------------------------------------------------
// Principals, actions, targets, facts.

/// An organisation's system, as its token and the client register say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub org: OrgId,
    pub roles: Vec<ClientRole>,
    /// The scopes granted to this token (already the intersection with the registered ones).
    pub scopes: Scopes,
    /// The acting professional, when the request names one.
    pub professional: Option<String>,
    /// The purpose of use, when the request names one.
    pub purpose: Option<String>,
    /// The stated reason of an emergency read (purpose of use `ETREAT`, R-X-5).
    pub emergency_reason: Option<String>,
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Client(Client),
    /// A citizen in MyKanta, by their patient key; `acting_for` when they act for someone else
    /// (a child, a principal: the rules for that arrive with acting for others).
    Citizen {
        person: PatientKey,
        acting_for: Option<PatientKey>,
    },
    /// A person the identification service has just vouched for, before any session (login).
    Identified,
}

impl Principal {
    /// An organisation's system with these roles and every scope (the platform's own jobs, tests).
    pub fn system(client_id: &str, org: &OrgId, roles: &[ClientRole]) -> Principal {
        Principal::Client(Client {
            client_id: client_id.to_string(),
            org: org.clone(),
            roles: roles.to_vec(),
            scopes: Scopes::all(),
            professional: None,
            purpose: None,
            emergency_reason: None,
        })
    }

    /// The organisation a client acts for.
    pub fn org(&self) -> Option<&OrgId> {
        match self {
            Principal::Client(c) => Some(&c.org),
            Principal::Citizen { .. } | Principal::Identified => None,
        }
    }
}

/// A FHIR REST interaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interaction {
    Read,
    Vread,
    History,
    Search,
    Create,
    Update,
}

impl Interaction {
    pub const ALL: [Interaction; 6] = [
        Interaction::Read,
        Interaction::Vread,
        Interaction::History,
        Interaction::Search,
        Interaction::Create,
        Interaction::Update,
    ];

    /// The SMART permission the interaction needs.
    pub fn needs(self) -> Perms {
        match self {
            Interaction::Read | Interaction::Vread | Interaction::History => Perms::R,
            Interaction::Search => Perms::S,
            Interaction::Create => Perms::C,
            Interaction::Update => Perms::U,
        }
    }

    pub fn is_write(self) -> bool {
        match self {
            Interaction::Create | Interaction::Update => true,
            Interaction::Read | Interaction::Vread | Interaction::History | Interaction::Search => {
                false
            }
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::History => "history",
            Interaction::Search => "search",
            Interaction::Create => "create",
            Interaction::Update => "update",
        }
    }
}

/// A MyKanta page a citizen reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// A section of the health records (R-VIEW-1/2): its list and a record's detail.
    Section(Section),
    /// The front page's "what is new" (records of every section).
    WhatsNew,
    /// "Disclosure and use of my data" (R-VIEW-5, R-ACT-9).
    DisclosureLog,
    /// "Management of data use": the notice, consents, prohibitions and wills given (R-VIEW-6),
    /// and what a provider could read now (R-X-1).
    DataUse,
}

impl View {
    /// Every view: each section, what is new, the disclosure log.
    pub fn all() -> Vec<View> {
        Section::ALL
            .into_iter()
            .map(View::Section)
            .chain([View::WhatsNew, View::DisclosureLog, View::DataUse])
            .collect()
    }

    pub fn code(self) -> String {
        match self {
            View::Section(s) => format!("section-{}", s.code()),
            View::WhatsNew => "whats-new".into(),
            View::DisclosureLog => "disclosure-log".into(),
            View::DataUse => "data-use".into(),
        }
    }
}

/// A function of the R-ACT table (what the citizen can manage). The disclosure log (R-ACT-9) is
/// [`View::DisclosureLog`]. The functions themselves arrive with their issues (consents, wills,
/// prescriptions, wellbeing data); their rules are here now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// R-ACT-1 prescription renewal request.
    RenewalRequest,
    /// R-ACT-2 prescription disclosure prohibition.
    PrescriptionProhibition,
    /// R-ACT-3 acknowledge the information notice.
    AcknowledgeNotice,
    /// R-ACT-4 disclosure prohibition (provider, register, visit).
    DisclosureProhibition,
    /// R-ACT-5 give a disclosure consent.
    GiveConsent,
    /// R-ACT-5 revoke a disclosure consent.
    RevokeConsent,
    /// R-ACT-6 organ donation will.
    OrganDonationWill,
    /// R-ACT-7 living will.
    LivingWill,
    /// R-ACT-8 wellbeing data: delete, permit or revoke wellbeing apps.
    WellbeingData,
    /// R-ACT-12 ask the controller of the Prescription Centre to check a prescription. The seeds
    /// give it no column of its own: it is decided as a request about a prescription, like R-ACT-1.
    ReviewRequest,
}

impl Function {
    pub const ALL: [Function; 10] = [
        Function::RenewalRequest,
        Function::PrescriptionProhibition,
        Function::AcknowledgeNotice,
        Function::DisclosureProhibition,
        Function::GiveConsent,
        Function::RevokeConsent,
        Function::OrganDonationWill,
        Function::LivingWill,
        Function::WellbeingData,
        Function::ReviewRequest,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Function::RenewalRequest => "renewal-request",
            Function::ReviewRequest => "review-request",
            Function::PrescriptionProhibition => "prescription-prohibition",
            Function::AcknowledgeNotice => "acknowledge-notice",
            Function::DisclosureProhibition => "disclosure-prohibition",
            Function::GiveConsent => "give-consent",
            Function::RevokeConsent => "revoke-consent",
            Function::OrganDonationWill => "organ-donation-will",
            Function::LivingWill => "living-will",
            Function::WellbeingData => "wellbeing-data",
        }
    }
}

/// What is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A FHIR interaction on a resource type.
    Fhir {
        interaction: Interaction,
        resource_type: String,
    },
    /// The archivist's "why is it (not) shown" (R-DOC-12).
    ArchivistLookup,
    /// Feeding the population register.
    PopulationImport,
    /// A person's log data (R-OPS-5).
    AuditExport,
    /// A citizen's page.
    View(View),
    /// A citizen's function of the R-ACT table.
    Manage(Function),
    /// Switching to act for another person (or back to oneself): target the person's summary.
    ActFor,
    /// Entering MyKanta after identification (R-AUTH-2).
    Login,
}

impl Action {
    pub fn fhir(interaction: Interaction, resource_type: &str) -> Action {
        Action::Fhir {
            interaction,
            resource_type: resource_type.to_string(),
        }
    }
}

/// Whose data, held where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// Before anything is read: may this kind of request be made at all?
    Request,
    /// Shared reference data (the registry).
    Shared,
    /// One patient's data, held in `holder`'s register, or not yet stored (`None`: a create).
    Patient {
        patient: Option<PatientKey>,
        holder: Option<&'a str>,
    },
    /// Something derived about one patient that is no single record (e.g. which units have recorded
    /// in a section).
    Summary { patient: PatientKey },
}

/// What the population register says of a person logging in (R-AUTH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonFacts {
    /// The register (the operator's copy) knows the person.
    pub in_register: bool,
    /// The register records a date of death.
    pub deceased: bool,
    /// The identification service gave the person's names (used when the register does not know
    /// them).
    pub named_by_identification: bool,
}

/// What else the decision rests on, gathered by the caller before deciding (consents arrive here).
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// The MyKanta display rules' decision about the record (citizens' views of their records).
    pub display: Option<&'a display::Decision>,
    /// The population register's facts about a person logging in.
    pub person: Option<&'a PersonFacts>,
    /// A citizen's standing to the person whose data is asked for, that person, and today's
    /// Finnish day (needed when acting for another, and for the R-ACT functions).
    pub acting: Option<&'a Acting>,
    /// A child's record as a guardian or right-holder would see it: the child's age at its visit
    /// and the disclosure code recorded there (R-MINOR-3).
    pub minor: Option<&'a MinorRecord>,
    /// What a function of the R-ACT table needs beyond the standing.
    pub function: Option<&'a FunctionFacts>,
    /// The patient's consents and prohibitions, and the record's register and service event, for a
    /// provider's read of another register (R-CONSENT-1).
    pub disclosure: Option<&'a Disclosure<'a>>,
    /// What a system's write of a consent, prohibition or will says of its recorder
    /// (R-CONSENT-1: who may record the patient's choices).
    pub recording: Option<RecorderClaim>,
}

/// What the disclosure rule reads for one record of another register.
#[derive(Clone, Copy, Debug)]
pub struct Disclosure<'a> {
    pub consents: &'a ConsentFacts,
    /// The record (for a read decided before the record is known, e.g. a whole search: `None`).
    pub record: Option<RecordFacts<'a>>,
    /// How Prescription Centre data is asked for.
    pub centre: CentreAccess,
}

// ------------------------------------------------------------------------------------------------
// The answer.

/// Why access was granted, as the audit log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ground {
    /// The organisation's own register.
    OwnRegister,
    /// Another organisation's register, data the disclosure rule does not cover: the patient's
    /// identity (`Patient`) and the consent service's records (`Consent`).
    OtherRegister,
    /// Another register's data under the patient's consent (R-CONSENT-1).
    Consent,
    /// The organiser's data, read by a producer under a purchased-services mandate (R-CONSENT-2).
    PurchasedService,
    /// Prescription Centre data (no consent needed in care; no prescription prohibition).
    PrescriptionCentre,
    /// An emergency read with a stated reason (R-X-5).
    Emergency,
    /// Shared reference data.
    Registry,
    /// An operator's function (population register, audit export).
    OperatorFunction,
    /// The citizen's own data.
    OwnData,
    /// A guardian's, for a minor (R-MINOR-1).
    Guardian,
    /// A right-holder's, for a minor: view only (R-MINOR-5).
    RightToInformation,
    /// A proxy's, under a health-care-errands mandate (R-PROXY-1).
    Mandate,
}

/// The basis of a permit: the ground, the role that carried it, the purpose of use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Basis {
    pub ground: Ground,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<ClientRole>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub purpose: Option<String>,
    /// An emergency read's stated reason (R-X-5).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// Permission for one action on one target. Only [`decide`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permit {
    basis: Basis,
}

impl Permit {
    pub fn basis(&self) -> &Basis {
        &self.basis
    }
}

/// Why something is refused. Stable codes, each naming its rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Denial {
    /// A citizen on a system API.
    NotAClient,
    /// A system on a citizen's page.
    NotACitizen,
    /// The client has no role at all.
    NoRole,
    /// The token's scopes do not grant this interaction on this type.
    ScopeNotGranted,
    /// None of the client's roles may do this with this kind of data.
    RoleMayNot,
    /// Shared registry data is maintained by the operator.
    RegistryIsOperators,
    /// The operator reads no clinical data.
    OperatorReadsNoPatientData,
    /// The archivist role has the archivist view, nothing else.
    ArchivistViewOnly,
    /// A new version of a document held in another organisation's register.
    OtherRegister,
    /// The archivist's look-up of another organisation's document.
    NotOwnOrganisation,
    /// Another person's data.
    AnotherPerson,
    /// Not while acting for another person.
    ActingForAnother,
    /// Hidden by a display rule (a citizen's view).
    Hidden(display::Hidden),
    /// A record for which the caller gave no display decision (fail closed).
    NoDisplayDecision,
    /// The action and target do not fit together (e.g. patient data asked as shared).
    Inconsistent,
    /// The register records the person as deceased: no login.
    Deceased,
    /// Neither the register nor the identification service says who the person is.
    UnknownPerson,
    /// Acting for another person without the facts of the standing (fail closed).
    NoActingFacts,
    /// The population register records no guardianship or right to information, and there is
    /// no mandate.
    NoRelation,
    /// A guardian or right-holder acts only for a minor: the person is 18 today.
    NotAMinor,
    /// Nobody acts for a deceased person in MyKanta.
    SubjectDeceased,
    /// A non-disclosure marker on the child blocks acting for the child (R-MINOR-7).
    ChildNonDisclosure,
    /// A non-disclosure marker on the guardian blocks unless the guardians authorised each other
    /// (R-MINOR-6).
    GuardianNonDisclosure,
    /// A non-disclosure marker on the right-holder (R-MINOR-2).
    HolderNonDisclosure,
    /// The coded custody agreement gives health-care matters to the other guardian (R-MINOR-8).
    CustodyOtherGuardian,
    /// The custody agreement is not registered in coded form: only with a mutual authorisation.
    CustodyNotCoded,
    /// A guardian of interests does not act in MyKanta through the population register.
    GuardianOfInterests,
    /// Minors are acted for through custody, never through a mandate.
    MandateNotForMinor,
    /// No mandate in force (none, expired, revoked, another issue) (R-PROXY-3).
    NoValidMandate,
    /// The mandate service cannot be asked now (R-OPS-2).
    MandateServiceUnavailable,
    /// A child's record no guardian sees (R-MINOR-3, R-MINOR-4).
    Minor(MinorHidden),
    /// A child's record without the facts of its visit (fail closed).
    NoMinorFacts,
    /// A right-holder sees but takes no action (R-MINOR-5).
    RightHolderViewOnly,
    /// Not a function of this standing (the R-ACT table).
    NotForThisStanding,
    /// Not a function a minor uses for themselves (the R-ACT table).
    NotForMinorSelf,
    /// Wellbeing data from age 16 (R-ACT-8).
    UnderSixteen,
    /// The information notice was given to the minor in health care (R-ACT-3).
    NoticeReceivedInCare,
    /// The principal has acknowledged the information notice themselves (R-ACT-3).
    NoticeAlreadyAcknowledged,
    /// A guardian revokes only a consent they gave (R-ACT-5).
    ConsentGivenByAnother,
    /// The function's own facts were not given (fail closed).
    NoFunctionFacts,
    /// The disclosure rule refuses another register's data (R-CONSENT-1, R-RX-2, R-X-5).
    Disclosure(Refused),
    /// The patient's consents could not be read for the decision (fail closed).
    NoConsentFacts,
    /// A patient's choice is recorded in care by a named professional (X-Kanta-Professional).
    RecorderNotNamed,
    /// A patient's choice is recorded in care for the patient's care (purpose of use TREAT).
    RecordingNotForCare,
    /// The patient, a guardian or a proxy records choices in MyKanta only, never through a system.
    RecordedInMyKantaOnly,
    /// A write of a patient's choice without what it says of its recorder (fail closed).
    NoRecordingFacts,
    /// A producer's write into the organiser's register that no purchased-services mandate in
    /// force lets it make (R-CONSENT-2).
    NoStoreMandate,
}

impl Denial {
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NotAClient => "not-a-client",
            Denial::NotACitizen => "not-a-citizen",
            Denial::NoRole => "no-role",
            Denial::ScopeNotGranted => "scope-not-granted",
            Denial::RoleMayNot => "role-may-not",
            Denial::RegistryIsOperators => "registry-is-operators",
            Denial::OperatorReadsNoPatientData => "operator-no-patient-data",
            Denial::ArchivistViewOnly => "archivist-view-only",
            Denial::OtherRegister => "other-register",
            Denial::NotOwnOrganisation => "not-own-organisation",
            Denial::AnotherPerson => "another-person",
            Denial::ActingForAnother => "acting-for-another",
            Denial::Hidden(h) => h.code(),
            Denial::NoDisplayDecision => "no-display-decision",
            Denial::Inconsistent => "inconsistent",
            Denial::Deceased => "deceased",
            Denial::UnknownPerson => "unknown-person",
            Denial::NoActingFacts => "no-acting-facts",
            Denial::NoRelation => "no-relation",
            Denial::NotAMinor => "not-a-minor",
            Denial::SubjectDeceased => "subject-deceased",
            Denial::ChildNonDisclosure => "child-non-disclosure",
            Denial::GuardianNonDisclosure => "guardian-non-disclosure",
            Denial::HolderNonDisclosure => "holder-non-disclosure",
            Denial::CustodyOtherGuardian => "custody-other-guardian",
            Denial::CustodyNotCoded => "custody-not-coded",
            Denial::GuardianOfInterests => "guardian-of-interests",
            Denial::MandateNotForMinor => "mandate-not-for-minor",
            Denial::NoValidMandate => "no-valid-mandate",
            Denial::MandateServiceUnavailable => "mandate-service-unavailable",
            Denial::Minor(h) => h.code(),
            Denial::NoMinorFacts => "no-minor-facts",
            Denial::RightHolderViewOnly => "right-holder-view-only",
            Denial::NotForThisStanding => "not-for-this-standing",
            Denial::NotForMinorSelf => "not-for-minor-self",
            Denial::UnderSixteen => "under-sixteen",
            Denial::NoticeReceivedInCare => "notice-received-in-care",
            Denial::NoticeAlreadyAcknowledged => "notice-already-acknowledged",
            Denial::ConsentGivenByAnother => "consent-given-by-another",
            Denial::NoFunctionFacts => "no-function-facts",
            Denial::Disclosure(r) => r.code(),
            Denial::NoConsentFacts => "no-consent-facts",
            Denial::RecorderNotNamed => "recorder-not-named",
            Denial::RecordingNotForCare => "recording-not-for-care",
            Denial::RecordedInMyKantaOnly => "recorded-in-mykanta-only",
            Denial::NoRecordingFacts => "no-recording-facts",
            Denial::NoStoreMandate => "no-store-mandate",
        }
    }

    /// What the caller is told (it names no data the caller may not see).
    pub fn message(&self) -> &'static str {
        match self {
            Denial::NotAClient => "this is an API for organisations' systems",
            Denial::NotACitizen => "this is a page for citizens",
            Denial::NoRole => "this client has no role on the platform",
            Denial::ScopeNotGranted => "the access token's scopes do not grant this interaction on this resource type",
            Denial::RoleMayNot => "this client's roles do not allow this on this kind of data",
            Denial::RegistryIsOperators => "shared registry data (organisations, practitioners, locations, services, medicines) is maintained by the platform operator",
            Denial::OperatorReadsNoPatientData => "the operator's clients neither read nor write patient data",
            Denial::ArchivistViewOnly => "an archivist client uses the archivist view (/archivist/documents/…) only",
            Denial::OtherRegister => "this resource is held in another organisation's register; write an amendment as a new resource that refers to it",
            Denial::NotOwnOrganisation => "this document was recorded by another organisation; its archivist can look it up",
            Denial::AnotherPerson => "this is another person's data",
            Denial::ActingForAnother => "this is not available while acting for another person",
            Denial::Hidden(_) => "not shown in MyKanta",
            Denial::NoDisplayDecision => "not shown in MyKanta",
            Denial::Inconsistent => "this action does not apply to this data",
            Denial::Deceased => "the population register records this person as deceased",
            Denial::UnknownPerson => "the person is not known to the population register",
            Denial::NoActingFacts => "whom you act for could not be checked",
            Denial::NoRelation => "the population register records no guardianship or right to information, and there is no mandate",
            Denial::NotAMinor => "a guardian acts only for a child under 18",
            Denial::SubjectDeceased => "the population register records this person as deceased",
            Denial::ChildNonDisclosure => "the child has a non-disclosure marker: guardians handle the child's matters with the care provider directly",
            Denial::GuardianNonDisclosure => "a non-disclosure marker on the guardian: possible only when the guardians have authorised each other",
            Denial::HolderNonDisclosure => "a non-disclosure marker on the person with the right to information",
            Denial::CustodyOtherGuardian => "the custody agreement gives health-care matters to the other guardian",
            Denial::CustodyNotCoded => "the custody agreement is not registered in coded form: possible only when the guardians have authorised each other",
            Denial::GuardianOfInterests => "a guardian of interests cannot act in MyKanta through the population register",
            Denial::MandateNotForMinor => "a child is acted for by the guardians, not by a mandate",
            Denial::NoValidMandate => "there is no valid health-care-errands mandate",
            Denial::MandateServiceUnavailable => "the mandate service is not available",
            Denial::Minor(_) => "not shown to guardians",
            Denial::NoMinorFacts => "not shown to guardians",
            Denial::RightHolderViewOnly => "with a right to information you can see the data but take no action",
            Denial::NotForThisStanding => "this is not available when acting for another person in this role",
            Denial::NotForMinorSelf => "this is not available to a minor in MyKanta",
            Denial::UnderSixteen => "this is available from the age of 16",
            Denial::NoticeReceivedInCare => "the minor has received the information notice in health care",
            Denial::NoticeAlreadyAcknowledged => "the person has acknowledged the information notice",
            Denial::ConsentGivenByAnother => "a guardian can revoke only a consent they gave",
            Denial::NoFunctionFacts => "this cannot be checked now",
            Denial::Disclosure(r) => r.message(),
            Denial::NoConsentFacts => "the patient's consents could not be checked",
            Denial::RecorderNotNamed => "a consent, prohibition or will is recorded in care by a named professional (X-Kanta-Professional)",
            Denial::RecordingNotForCare => "a consent, prohibition or will is recorded in care for the patient's care (X-Kanta-Purpose-Of-Use: TREAT)",
            Denial::RecordedInMyKantaOnly => "the patient, a guardian or a proxy records choices in MyKanta; a system records them as the care unit (recorded-as care-unit, or none)",
            Denial::NoRecordingFacts => "the recorder of this consent could not be checked",
            Denial::NoStoreMandate => "no purchased-services mandate in force for this patient lets your organisation store this into that register (a producer stores new clinical records only)",
        }
    }

    /// The requirement behind the rule.
    pub fn rule(&self) -> &'static str {
        match self {
            Denial::Hidden(h) => h.rule(),
            Denial::NotAClient
            | Denial::NotACitizen
            | Denial::NoRole
            | Denial::ScopeNotGranted
            | Denial::RoleMayNot
            | Denial::OperatorReadsNoPatientData
            | Denial::ArchivistViewOnly
            | Denial::Inconsistent => "R-CONSENT-1",
            Denial::RegistryIsOperators => "R-REG-5",
            Denial::OtherRegister => "R-CONSENT-2",
            Denial::NotOwnOrganisation => "R-DOC-12",
            Denial::AnotherPerson => "R-AUTH-6",
            Denial::NoDisplayDecision => "R-DOC-1",
            Denial::ActingForAnother => "R-VIEW-5",
            Denial::Deceased | Denial::UnknownPerson => "R-AUTH-2",
            Denial::NoActingFacts | Denial::NoRelation | Denial::NotAMinor => "R-MINOR-1",
            Denial::SubjectDeceased => "R-MINOR-1",
            Denial::ChildNonDisclosure => "R-MINOR-7",
            Denial::GuardianNonDisclosure => "R-MINOR-6",
            Denial::HolderNonDisclosure | Denial::GuardianOfInterests => "R-MINOR-2",
            Denial::CustodyOtherGuardian | Denial::CustodyNotCoded => "R-MINOR-8",
            Denial::MandateNotForMinor | Denial::NoValidMandate => "R-PROXY-3",
            Denial::MandateServiceUnavailable => "R-OPS-2",
            Denial::Minor(MinorHidden::MinorForbids) => "R-MINOR-4",
            Denial::Minor(MinorHidden::CapacityUnknown | MinorHidden::NonUpdatedSystem)
            | Denial::NoMinorFacts => "R-MINOR-3",
            Denial::RightHolderViewOnly => "R-MINOR-5",
            Denial::NotForThisStanding | Denial::NotForMinorSelf | Denial::NoFunctionFacts => {
                "R-ACT"
            }
            Denial::UnderSixteen => "R-ACT-8",
            Denial::NoticeReceivedInCare | Denial::NoticeAlreadyAcknowledged => "R-ACT-3",
            Denial::ConsentGivenByAnother => "R-ACT-5",
            Denial::Disclosure(Refused::PrescriptionProhibition) => "R-RX-2",
            Denial::Disclosure(Refused::NoEmergencyReason) => "R-X-5",
            Denial::Disclosure(
                Refused::NoProfessional
                | Refused::NotForCare
                | Refused::NotInformed
                | Refused::NoConsent
                | Refused::Prohibited,
            )
            | Denial::NoConsentFacts => "R-CONSENT-1",
            Denial::RecorderNotNamed
            | Denial::RecordingNotForCare
            | Denial::RecordedInMyKantaOnly
            | Denial::NoRecordingFacts => "R-CONSENT-1",
            Denial::NoStoreMandate => "R-CONSENT-2",
        }
    }
}

/// The answer to one access question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Permit(Permit),
    /// Every reason, sorted, without repeats (never empty).
    Denied(Vec<Denial>),
}

impl Decision {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }

    pub fn permit(self) -> Result<Permit, Vec<Denial>> {
        match self {
            Decision::Permit(p) => Ok(p),
            Decision::Denied(d) => Err(d),
        }
    }

    /// A short text for tables and tests: `permit:<ground>` or `deny:<code>,<code>`.
    pub fn summary(&self) -> String {
        match self {
            Decision::Permit(p) => format!("permit:{}", ground_code(p.basis.ground)),
            Decision::Denied(d) => {
                let codes: Vec<&str> = d.iter().map(Denial::code).collect();
                format!("deny:{}", codes.join(","))
            }
        }
    }
}

fn ground_code(g: Ground) -> &'static str {
    match g {
        Ground::OwnRegister => "own-register",
        Ground::OtherRegister => "other-register",
        Ground::Consent => "consent",
        Ground::PurchasedService => "purchased-service",
        Ground::PrescriptionCentre => "prescription-centre",
        Ground::Emergency => "emergency",
        Ground::Registry => "registry",
        Ground::OperatorFunction => "operator-function",
        Ground::OwnData => "own-data",
        Ground::Guardian => "guardian",
        Ground::RightToInformation => "right-to-information",
        Ground::Mandate => "mandate",
    }
}

// ------------------------------------------------------------------------------------------------
// The decision.

/// The one access decision. `now` is milliseconds since the epoch (the rules that depend on time —
/// mandates, ages, consents' validity — arrive with their issues; the display rules' time is in
/// `facts.display`).
pub fn decide(
    principal: &Principal,
    action: &Action,
    target: Target<'_>,
    facts: &Facts<'_>,
    now: i64,
) -> Decision {
    let result = match principal {
        Principal::Client(c) => client(c, action, target, facts, now),
        Principal::Citizen { person, acting_for } => {
            citizen(*person, *acting_for, action, target, facts).map(|ground| Basis {
                ground,
                role: None,
                purpose: None,
                reason: None,
            })
        }
        Principal::Identified => identified(action, facts).map(|ground| Basis {
            ground,
            role: None,
            purpose: None,
            reason: None,
        }),
    };
    match result {
        Ok(basis) => Decision::Permit(Permit { basis }),
        Err(mut reasons) => {
            reasons.sort();
            reasons.dedup();
            if reasons.is_empty() {
                reasons.push(Denial::Inconsistent);
            }
            Decision::Denied(reasons)
        }
    }
}

fn client(
    c: &Client,
    action: &Action,
    target: Target<'_>,
    facts: &Facts<'_>,
    now: i64,
) -> Result<Basis, Vec<Denial>> {
    if c.roles.is_empty() {
        return Err(vec![Denial::NoRole]);
    }
    let mut denials = Vec::new();
    if let Action::Fhir {
        interaction,
        resource_type,
    } = action
    {
        if !c.scopes.allows(resource_type, interaction.needs()) {
            denials.push(Denial::ScopeNotGranted);
        }
    }
    let mut permitted: Option<(ClientRole, Ground)> = None;
    for &role in &c.roles {
        match role_rule(role, c, action, target, facts, now) {
            Ok(ground) => {
                // The most specific ground wins when several roles permit.
                if permitted.is_none_or(|(_, g)| ground < g) {
                    permitted = Some((role, ground));
                }
            }
            Err(d) => denials.extend(d),
        }
    }
    match permitted {
        Some((role, ground)) if !denials.contains(&Denial::ScopeNotGranted) => Ok(Basis {
            ground,
            role: Some(role),
            purpose: c.purpose.clone(),
            reason: match ground {
                Ground::Emergency => c.emergency_reason.clone(),
                _ => None,
            },
        }),
        Some(_) => Err(vec![Denial::ScopeNotGranted]),
        None => Err(denials),
    }
}

/// What one role allows.
fn role_rule(
    role: ClientRole,
    c: &Client,
    action: &Action,
    target: Target<'_>,
    facts: &Facts<'_>,
    now: i64,
) -> Result<Ground, Vec<Denial>> {
    let org = &c.org;
    match action {
        Action::Fhir {
            interaction,
            resource_type,
        } => {
            let kind = Kind::of(resource_type).ok_or_else(|| vec![Denial::Inconsistent])?;
            let ground = match fhir_rule(role, org, *interaction, kind, target) {
                Err(Denial::OtherRegister) => {
                    producer_rule(role, c, *interaction, kind, target, facts, now)?
                }
                other => other.map_err(|d| vec![d])?,
            };
            if kind == Kind::Consent && interaction.is_write() {
                recording_rule(c, target, facts)?;
            }
            match ground {
                Ground::OtherRegister => disclosure_rule(role, c, kind, facts, now),
                Ground::OwnRegister
                | Ground::Consent
                | Ground::PurchasedService
                | Ground::PrescriptionCentre
                | Ground::Emergency
                | Ground::Registry
                | Ground::OperatorFunction
                | Ground::OwnData
                | Ground::Guardian
                | Ground::RightToInformation
                | Ground::Mandate => Ok(ground),
            }
        }
        Action::ArchivistLookup => match role {
            ClientRole::Archivist => match target {
                Target::Request => Ok(Ground::OwnRegister),
                Target::Patient {
                    holder: Some(h), ..
                } if h == org.as_str() => Ok(Ground::OwnRegister),
                Target::Patient { .. } => Err(vec![Denial::NotOwnOrganisation]),
                Target::Shared | Target::Summary { .. } => Err(vec![Denial::Inconsistent]),
            },
            ClientRole::Clinician | ClientRole::Pharmacy | ClientRole::Operator => {
                Err(vec![Denial::RoleMayNot])
            }
        },
        Action::PopulationImport | Action::AuditExport => match role {
            ClientRole::Operator => match target {
                Target::Request | Target::Patient { .. } => Ok(Ground::OperatorFunction),
                Target::Shared | Target::Summary { .. } => Err(vec![Denial::Inconsistent]),
            },
            ClientRole::Clinician | ClientRole::Pharmacy | ClientRole::Archivist => {
                Err(vec![Denial::RoleMayNot])
            }
        },
        Action::View(_) | Action::Manage(_) | Action::ActFor | Action::Login => {
            Err(vec![Denial::NotACitizen])
        }
    }
}

/// R-AUTH-2: the register first, then the identification's own attributes; nobody the register
/// records as deceased.
fn identified(action: &Action, facts: &Facts<'_>) -> Result<Ground, Vec<Denial>> {
    match action {
        Action::Login => match facts.person {
            Some(p) if p.deceased => Err(vec![Denial::Deceased]),
            Some(p) if p.in_register || p.named_by_identification => Ok(Ground::OwnData),
            Some(_) | None => Err(vec![Denial::UnknownPerson]),
        },
        Action::View(_) | Action::Manage(_) | Action::ActFor => Err(vec![Denial::NotACitizen]),
        Action::Fhir { .. }
        | Action::ArchivistLookup
        | Action::PopulationImport
        | Action::AuditExport => Err(vec![Denial::NotAClient]),
    }
}

fn fhir_rule(
    role: ClientRole,
    org: &OrgId,
    interaction: Interaction,
    kind: Kind,
    target: Target<'_>,
) -> Result<Ground, Denial> {
    // The target must fit the kind of data.
    match (kind.is_patient_data(), target) {
        (true, Target::Shared) | (false, Target::Patient { .. }) | (_, Target::Summary { .. }) => {
            return Err(Denial::Inconsistent)
        }
        (_, Target::Request) | (true, Target::Patient { .. }) | (false, Target::Shared) => {}
    }
    let write = interaction.is_write();
    match role {
        ClientRole::Clinician => match kind {
            Kind::Registry if write => Err(Denial::RegistryIsOperators),
            Kind::Registry => Ok(Ground::Registry),
            Kind::Dispensation if write => Err(Denial::RoleMayNot),
            Kind::PrescriptionTask => queue_rule(org, target),
            Kind::Patient
            | Kind::Clinical
            | Kind::Prescription
            | Kind::Dispensation
            | Kind::Consent
            | Kind::Provenance => register_rule(org, interaction, target),
        },
        ClientRole::Pharmacy => match kind {
            Kind::Registry if write => Err(Denial::RegistryIsOperators),
            Kind::Registry => Ok(Ground::Registry),
            Kind::Dispensation => register_rule(org, interaction, target),
            Kind::PrescriptionTask => queue_rule(org, target),
            Kind::Patient | Kind::Prescription if !write => register_rule(org, interaction, target),
            Kind::Patient
            | Kind::Prescription
            | Kind::Clinical
            | Kind::Consent
            | Kind::Provenance => Err(Denial::RoleMayNot),
        },
        ClientRole::Archivist => Err(Denial::ArchivistViewOnly),
        ClientRole::Operator => match kind {
            Kind::Registry => Ok(Ground::Registry),
            // The review requests of the Prescription Centre's controller (R-ACT-12).
            Kind::PrescriptionTask => queue_rule(org, target),
            Kind::Patient
            | Kind::Clinical
            | Kind::Prescription
            | Kind::Dispensation
            | Kind::Consent
            | Kind::Provenance => Err(Denial::OperatorReadsNoPatientData),
        },
    }
}

/// A Prescription Centre task is the business of the organisation whose queue holds it (the
/// pharmacy's reservation, the unit's renewal request, the controller's review request), for
/// reads and writes alike; a new one is filed by the writer (the write path puts it into its
/// owner's queue).
fn queue_rule(org: &OrgId, target: Target<'_>) -> Result<Ground, Denial> {
    match target {
        Target::Request | Target::Shared | Target::Summary { .. } => Ok(Ground::OwnRegister),
        Target::Patient { holder, .. } => match holder {
            None => Ok(Ground::OwnRegister),
            Some(h) if h == org.as_str() => Ok(Ground::OwnRegister),
            Some(_) => Err(Denial::NotOwnOrganisation),
        },
    }
}

/// Patient data by register: reads from every register (the ground says which), writes into the
/// organisation's own register only.
fn register_rule(
    org: &OrgId,
    interaction: Interaction,
    target: Target<'_>,
) -> Result<Ground, Denial> {
    let holder = match target {
        Target::Request | Target::Shared | Target::Summary { .. } => {
            return Ok(Ground::OwnRegister)
        }
        Target::Patient { holder, .. } => holder,
    };
    let own = holder.is_none_or(|h| h == org.as_str());
    match (interaction.is_write(), own) {
        (_, true) => Ok(Ground::OwnRegister),
        (true, false) => Err(Denial::OtherRegister),
        (false, false) => Ok(Ground::OtherRegister),
    }
}

/// R-CONSENT-1 with seed 000 §9 and seed 004: consents, prohibitions and wills may be recorded or
/// changed in care, at the patient's request. A system therefore records them only as a care
/// unit's recording — the acting professional named, for the patient's care — and never in the
/// name of the patient, a guardian or a proxy, who record their choices in MyKanta (the server
/// stamps the recorder from the request; a body claiming another is refused, never rewritten).
fn recording_rule(c: &Client, target: Target<'_>, facts: &Facts<'_>) -> Result<(), Vec<Denial>> {
    let mut denials = vec![];
    if c.professional.is_none() {
        denials.push(Denial::RecorderNotNamed);
    }
    match Purpose::parse(c.purpose.as_deref(), c.emergency_reason.is_some()) {
        Purpose::Treatment => {}
        // An emergency reads; it records no one's choices.
        Purpose::Emergency { .. } | Purpose::Other => denials.push(Denial::RecordingNotForCare),
    }
    match target {
        Target::Request => {}
        Target::Patient { .. } | Target::Shared | Target::Summary { .. } => match facts.recording {
            None => denials.push(Denial::NoRecordingFacts),
            Some(RecorderClaim::None | RecorderClaim::Claims(RecordedAs::CareUnit)) => {}
            Some(
                RecorderClaim::Claims(
                    RecordedAs::Myself | RecordedAs::Guardian | RecordedAs::Proxy,
                )
                | RecorderClaim::Unreadable,
            ) => denials.push(Denial::RecordedInMyKantaOnly),
        },
    }
    if denials.is_empty() {
        Ok(())
    } else {
        Err(denials)
    }
}

/// R-CONSENT-2: a producer stores straight into the organiser's register under a
/// purchased-services mandate in force that names it and lets it store. Only new clinical records
/// (never a consent, a mandate, a task or a prescription: what a producer may do is the organiser's
/// to grant, never the producer's to widen), only by a care provider's client, and only with the
/// organiser's mandates as facts; anything else stays "another register's".
fn producer_rule(
    role: ClientRole,
    c: &Client,
    interaction: Interaction,
    kind: Kind,
    target: Target<'_>,
    facts: &Facts<'_>,
    now: i64,
) -> Result<Ground, Vec<Denial>> {
    let clinician = match role {
        ClientRole::Clinician => true,
        ClientRole::Pharmacy | ClientRole::Archivist | ClientRole::Operator => false,
    };
    let clinical = match kind {
        Kind::Clinical => true,
        Kind::Patient
        | Kind::Prescription
        | Kind::Dispensation
        | Kind::PrescriptionTask
        | Kind::Consent
        | Kind::Provenance
        | Kind::Registry => false,
    };
    let create = match interaction {
        Interaction::Create => true,
        Interaction::Read
        | Interaction::Vread
        | Interaction::History
        | Interaction::Search
        | Interaction::Update => false,
    };
    // Only a clinician's new clinical record could have been a producer's: say what it lacks.
    let refused = || match (clinician, clinical, create) {
        (true, true, true) => vec![Denial::NoStoreMandate],
        _ => vec![Denial::OtherRegister],
    };
    let holder = match target {
        Target::Patient {
            holder: Some(h), ..
        } => h,
        Target::Patient { holder: None, .. }
        | Target::Request
        | Target::Shared
        | Target::Summary { .. } => return Err(refused()),
    };
    let mandates = facts.disclosure.map(|d| &d.consents.mandates);
    let granted = mandates.is_some_and(|ms| {
        ms.iter()
            .any(|m| m.organiser == holder && m.lets_store(c.org.as_str(), now))
    });
    if clinician && clinical && create && granted {
        Ok(Ground::PurchasedService)
    } else {
        Err(refused())
    }
}

/// The client as the disclosure rule sees the reader: its organisation, whether the request names
/// the professional, and the purpose of use.
fn reader_of(c: &Client) -> Reader<'_> {
    Reader {
        org: c.org.as_str(),
        professional: c.professional.is_some(),
        purpose: Purpose::parse(c.purpose.as_deref(), c.emergency_reason.is_some()),
    }
}

/// R-CONSENT-1, R-CONSENT-2, R-RX-2, R-X-5: a read of another organisation's register. The
/// patient's identity and the consent service's own records are not under the disclosure rule;
/// clinical data is, record by record; Prescription Centre data follows the prescription
/// prohibition instead of the consent.
fn disclosure_rule(
    role: ClientRole,
    c: &Client,
    kind: Kind,
    facts: &Facts<'_>,
    now: i64,
) -> Result<Ground, Vec<Denial>> {
    match kind {
        Kind::Patient => return Ok(Ground::OtherRegister),
        // The patient's consents and prohibitions, to another organisation: only for care, with
        // the professional named (they tell of the patient's choices and wills).
        Kind::Consent => {
            return consent::reader_rule(&reader_of(c))
                .map(|_| Ground::OtherRegister)
                .map_err(|r| r.into_iter().map(Denial::Disclosure).collect());
        }
        // Never another organisation's queue (queue_rule refuses before this).
        Kind::Registry | Kind::PrescriptionTask => return Err(vec![Denial::Inconsistent]),
        Kind::Clinical | Kind::Provenance | Kind::Prescription | Kind::Dispensation => {}
    }
    let d = facts
        .disclosure
        .ok_or_else(|| vec![Denial::NoConsentFacts])?;
    let reader = reader_of(c);
    let pharmacy = match role {
        ClientRole::Pharmacy => true,
        ClientRole::Clinician | ClientRole::Archivist | ClientRole::Operator => false,
    };
    let answer = match kind {
        Kind::Prescription | Kind::Dispensation => {
            consent::disclose_centre(&reader, d.centre, pharmacy, d.consents)
        }
        Kind::Clinical
        | Kind::Provenance
        | Kind::Patient
        | Kind::Consent
        | Kind::Registry
        | Kind::PrescriptionTask => {
            let record = d.record.ok_or_else(|| vec![Denial::NoConsentFacts])?;
            consent::disclose(&reader, &record, d.consents, now)
        }
    };
    answer
        .map(|how| match how {
            Disclosed::Consent => Ground::Consent,
            Disclosed::PurchasedService => Ground::PurchasedService,
            Disclosed::PrescriptionCentre => Ground::PrescriptionCentre,
            Disclosed::Emergency => Ground::Emergency,
        })
        .map_err(|r| r.into_iter().map(Denial::Disclosure).collect())
}

/// What a citizen asks for.
#[derive(Clone, Copy)]
enum Asked {
    View(View),
    Manage(Function),
    ActFor,
}

/// The R-ACT column a citizen's request falls in.
#[derive(Clone, Copy)]
enum Column {
    SelfAdult,
    SelfMinor { age: u32 },
    Guardian,
    RightHolder,
    Proxy,
}

fn citizen(
    person: PatientKey,
    acting_for: Option<PatientKey>,
    action: &Action,
    target: Target<'_>,
    facts: &Facts<'_>,
) -> Result<Ground, Vec<Denial>> {
    let asked = match action {
        Action::View(v) => Asked::View(*v),
        Action::Manage(f) => Asked::Manage(*f),
        Action::ActFor => Asked::ActFor,
        // Already in: a session's citizen logs in again only through identification.
        Action::Login => return Err(vec![Denial::Inconsistent]),
        Action::Fhir { .. }
        | Action::ArchivistLookup
        | Action::PopulationImport
        | Action::AuditExport => return Err(vec![Denial::NotAClient]),
    };
    // Back to one's own data: always (R-ACT: "one click returns to one's own data").
    if let (Asked::ActFor, Target::Summary { patient }) = (asked, target) {
        if patient == person {
            return Ok(Ground::OwnData);
        }
    }
    let subject = acting_for.unwrap_or(person);
    // Whose data: the subject's only (or shared reference data on a records page).
    match target {
        Target::Patient { patient, .. } if patient != Some(subject) => {
            return Err(vec![Denial::AnotherPerson])
        }
        Target::Summary { patient } if patient != subject => {
            return Err(vec![Denial::AnotherPerson])
        }
        Target::Shared => {
            return match asked {
                // The registry's organisations, to choose a provider from (R-X-1).
                Asked::View(View::Section(_) | View::WhatsNew | View::DataUse) => {
                    Ok(Ground::Registry)
                }
                Asked::View(View::DisclosureLog) | Asked::Manage(_) | Asked::ActFor => {
                    Err(vec![Denial::Inconsistent])
                }
            };
        }
        Target::Request | Target::Patient { .. } | Target::Summary { .. } => {}
    }
    let (ground, column) = if subject == person {
        match facts.acting.map(|a| a.standing) {
            Some(Standing::Own) | None => {}
            Some(
                Standing::Guardian(_)
                | Standing::RightToInformation { .. }
                | Standing::GuardianOfInterests
                | Standing::Proxy(_)
                | Standing::Unrelated,
            ) => return Err(vec![Denial::Inconsistent]),
        }
        let column = facts.acting.map(|a| {
            let age = acting::age_on(a.subject.born, a.today);
            if age < 18 {
                Column::SelfMinor { age }
            } else {
                Column::SelfAdult
            }
        });
        (Ground::OwnData, column)
    } else {
        let a = facts.acting.ok_or_else(|| vec![Denial::NoActingFacts])?;
        let (ground, column) = standing_rule(a)?;
        (ground, Some(column))
    };
    match asked {
        Asked::ActFor => Ok(ground),
        // R-VIEW-5, R-ACT-9: one's own only.
        // R-VIEW-6: the consents and prohibitions given, for whoever may act for the person
        // (what each may change is the R-ACT table's, below); a right-holder sees them too.
        Asked::View(View::DataUse) => Ok(ground),
        Asked::View(View::DisclosureLog) => match column {
            Some(Column::Guardian | Column::RightHolder | Column::Proxy) => {
                Err(vec![Denial::ActingForAnother])
            }
            Some(Column::SelfAdult | Column::SelfMinor { .. }) | None => Ok(ground),
        },
        Asked::View(View::Section(_) | View::WhatsNew) => match target {
            Target::Request | Target::Shared => Ok(ground),
            // A summary over a child's records (e.g. the units that have recorded in a section)
            // cannot be checked visit by visit: not for guardians (it would tell of hidden visits).
            Target::Summary { .. } => match column {
                Some(Column::Guardian | Column::RightHolder) => Err(vec![Denial::NoMinorFacts]),
                Some(Column::SelfAdult | Column::SelfMinor { .. } | Column::Proxy) | None => {
                    Ok(ground)
                }
            },
            Target::Patient { .. } => {
                let mut denials = match facts.display {
                    Some(display::Decision::Shown | display::Decision::VisitOnly) => vec![],
                    Some(display::Decision::Hidden(reasons)) => {
                        reasons.iter().cloned().map(Denial::Hidden).collect()
                    }
                    None => vec![Denial::NoDisplayDecision],
                };
                // A child's record by the child's age at its visit and the code recorded there.
                if let (Some(Column::Guardian | Column::RightHolder), Some(a)) =
                    (column, facts.acting)
                {
                    match facts.minor {
                        Some(m) => {
                            if let Err(h) = acting::minor_record_shown(a.subject.born, m) {
                                denials.push(Denial::Minor(h));
                            }
                        }
                        None => denials.push(Denial::NoMinorFacts),
                    }
                }
                if denials.is_empty() {
                    Ok(ground)
                } else {
                    Err(denials)
                }
            }
        },
        Asked::Manage(f) => {
            let column = column.ok_or_else(|| vec![Denial::NoActingFacts])?;
            function_rule(f, column, facts.function).map(|()| ground)
        }
    }
}

/// R-MINOR-1, R-MINOR-2, R-MINOR-5…8, R-PROXY-3: whether the standing lets the citizen act for
/// the subject at all today, and in which R-ACT column.
fn standing_rule(a: &Acting) -> Result<(Ground, Column), Vec<Denial>> {
    let minor = acting::age_on(a.subject.born, a.today) < 18;
    let mut denials = Vec::new();
    if a.subject.deceased {
        denials.push(Denial::SubjectDeceased);
    }
    let ok = match a.standing {
        Standing::Own => return Err(vec![Denial::Inconsistent]),
        Standing::Guardian(g) => {
            if !minor {
                denials.push(Denial::NotAMinor);
            }
            // R-MINOR-7: always, whatever the guardians have agreed.
            if a.subject.non_disclosure {
                denials.push(Denial::ChildNonDisclosure);
            }
            match g.custody {
                Some(CustodyAgreement::HealthCareOtherGuardian) => {
                    denials.push(Denial::CustodyOtherGuardian)
                }
                Some(CustodyAgreement::Uncoded) if !g.mutual_authorisation => {
                    denials.push(Denial::CustodyNotCoded)
                }
                Some(
                    CustodyAgreement::Joint
                    | CustodyAgreement::HealthCareThisGuardian
                    | CustodyAgreement::Uncoded,
                )
                | None => {}
            }
            if g.holder_non_disclosure && !g.mutual_authorisation {
                denials.push(Denial::GuardianNonDisclosure);
            }
            (Ground::Guardian, Column::Guardian)
        }
        Standing::RightToInformation {
            holder_non_disclosure,
        } => {
            if !minor {
                denials.push(Denial::NotAMinor);
            }
            if a.subject.non_disclosure {
                denials.push(Denial::ChildNonDisclosure);
            }
            if holder_non_disclosure {
                denials.push(Denial::HolderNonDisclosure);
            }
            (Ground::RightToInformation, Column::RightHolder)
        }
        // Seeds silent; research/mission.md §1.8 (Kela): guardians of interests could not act in
        // MyKanta. They act, like anyone, through a mandate the principal gives.
        Standing::GuardianOfInterests => return Err(vec![Denial::GuardianOfInterests]),
        Standing::Unrelated => return Err(vec![Denial::NoRelation]),
        // The mandate first, and alone: without one the subject is anyone the caller named, and
        // their age or death is nothing the caller may learn from the refusal.
        Standing::Proxy(check) => {
            match check {
                MandateCheck::Allowed => {}
                MandateCheck::Disallowed => return Err(vec![Denial::NoValidMandate]),
                MandateCheck::Unavailable => return Err(vec![Denial::MandateServiceUnavailable]),
            }
            if minor {
                denials.push(Denial::MandateNotForMinor);
            }
            (Ground::Mandate, Column::Proxy)
        }
    };
    if denials.is_empty() {
        Ok(ok)
    } else {
        Err(denials)
    }
}

/// The R-ACT table, column by column.
fn function_rule(
    f: Function,
    column: Column,
    facts: Option<&FunctionFacts>,
) -> Result<(), Vec<Denial>> {
    let fact = |get: fn(&FunctionFacts) -> Option<bool>| {
        facts
            .and_then(get)
            .ok_or_else(|| vec![Denial::NoFunctionFacts])
    };
    let no = |d: Denial| Err(vec![d]);
    match column {
        Column::SelfAdult => Ok(()),
        Column::RightHolder => no(Denial::RightHolderViewOnly),
        Column::SelfMinor { age } => match f {
            Function::RenewalRequest | Function::ReviewRequest => Ok(()),
            Function::WellbeingData if age >= 16 => Ok(()),
            Function::WellbeingData => no(Denial::UnderSixteen),
            Function::PrescriptionProhibition
            | Function::AcknowledgeNotice
            | Function::DisclosureProhibition
            | Function::GiveConsent
            | Function::RevokeConsent
            | Function::OrganDonationWill
            | Function::LivingWill => no(Denial::NotForMinorSelf),
        },
        Column::Guardian => match f {
            Function::RenewalRequest | Function::ReviewRequest => Ok(()),
            Function::AcknowledgeNotice => match fact(|x| x.notice_received_in_care)? {
                false => Ok(()),
                true => no(Denial::NoticeReceivedInCare),
            },
            Function::RevokeConsent => match fact(|x| x.consent_given_by_actor)? {
                true => Ok(()),
                false => no(Denial::ConsentGivenByAnother),
            },
            Function::PrescriptionProhibition
            | Function::DisclosureProhibition
            | Function::GiveConsent
            | Function::OrganDonationWill
            | Function::LivingWill
            | Function::WellbeingData => no(Denial::NotForThisStanding),
        },
        // R-PROXY-2: almost the principal's rights — not the wills, wellbeing data or the log.
        Column::Proxy => match f {
            Function::RenewalRequest
            | Function::ReviewRequest
            | Function::DisclosureProhibition
            | Function::GiveConsent => Ok(()),
            Function::AcknowledgeNotice => match fact(|x| x.notice_acknowledged_by_principal)? {
                false => Ok(()),
                true => no(Denial::NoticeAlreadyAcknowledged),
            },
            // The table's cell says "may give on principal's behalf": revoking is the principal's.
            Function::RevokeConsent
            | Function::PrescriptionProhibition
            | Function::OrganDonationWill
            | Function::LivingWill
            | Function::WellbeingData => no(Denial::NotForThisStanding),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_v1_and_v2_and_refuse_junk() {
        let s = Scopes::parse("system/Observation.read system/*.cruds system/Patient.rs").unwrap();
        assert!(s.allows("Observation", Perms::R));
        assert!(s.allows("Encounter", Perms::C));
        for bad in [
            "user/Observation.read",
            "system/Observation",
            "system/Foo.read",
            "system/Observation.rc",
            "system/Observation.x",
            "system/Observation.",
            "system/Observation.rs?category=lab",
            "openid",
        ] {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
        assert!(Scopes::parse("").unwrap().is_empty());
    }

    #[test]
    fn intersection_is_what_both_allow_and_echoes_the_request_form() {
        let registered = Scopes::parse("system/Patient.rs system/Observation.cruds").unwrap();
        let want = Scopes::parse("system/*.read").unwrap();
        let got = want.intersect(&registered);
        assert_eq!(
            got.to_string(),
            "system/Patient.read system/Observation.read"
        );
        assert!(got.allows("Observation", Perms::S));
        assert!(!got.allows("Observation", Perms::C));
        assert!(!got.allows("Encounter", Perms::R));
        let want = Scopes::parse("system/Observation.write").unwrap();
        assert_eq!(
            want.intersect(&registered).to_string(),
            "system/Observation.write"
        );
        let want = Scopes::parse("system/Patient.write").unwrap();
        assert!(want.intersect(&registered).is_empty());
        let all = Scopes::parse("system/*.*").unwrap();
        let want = Scopes::parse("system/Observation.rs").unwrap();
        assert_eq!(want.intersect(&all).to_string(), "system/Observation.rs");
    }

    #[test]
    fn every_stored_type_has_a_kind() {
        for t in [
            "Patient",
            "Observation",
            "MedicationDispense",
            "Organization",
            "Consent",
        ] {
            assert!(Kind::of(t).is_some(), "{t}");
        }
        assert_eq!(Kind::of("AuditEvent"), None);
    }
}
