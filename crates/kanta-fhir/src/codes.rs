//! Code systems, identifier systems and extension URLs the platform reads. One place to change them.
//! See `docs/fhir-conventions.md`.

/// HETU, the Finnish personal identity code.
pub const HETU_SYSTEM: &str = "urn:oid:1.2.246.21";
/// AR/YDIN – Näkymät: the national views of the Patient Data Repository.
pub const NATIONAL_VIEW_SYSTEM: &str = "urn:oid:1.2.246.537.6.12.2002";
/// A view local to one organisation (never shown in MyKanta).
pub const LOCAL_VIEW_SYSTEM: &str = "urn:kanta:cs:local-view";
/// eArkisto patient-document register ids (2 public, 3 private, 4 occupational health, ...).
pub const REGISTER_SYSTEM: &str = "urn:oid:1.2.246.537.5.40150";
/// Delayed display in MyKanta: the first instant the data may be shown.
pub const RELEASE_FOR_PATIENT_VIEWING_URL: &str =
    "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing";
/// Minor's capacity and will about disclosure to guardians, recorded per service event.
pub const RESTRICTION_PARENT_URL: &str =
    "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/restriction-parent";
pub const RESTRICTION_PARENT_SYSTEM: &str = "urn:oid:1.2.246.537.5.40202.201901";
/// Non-disclosure for personal safety.
pub const SECURITY_LABEL_SYSTEM: &str =
    "https://hl7.fi/fhir/finnish-base-profiles/CodeSystem/fi-base-security-label-cs";
pub const TURVAKIELTO: &str = "TURVAKIELTO";
/// Kanta's own security codes (e.g. `other-person`: contains another person's data).
pub const KANTA_SECURITY_SYSTEM: &str = "urn:kanta:cs:security";
pub const DOCUMENT_FORM_SYSTEM: &str = "urn:kanta:cs:document-form";
/// Relations in the population register import.
pub const POPULATION_RELATION_SYSTEM: &str = "urn:kanta:cs:population-relation";
pub const CUSTODY_AGREEMENT_URL: &str = "urn:kanta:ext:custody-agreement";
pub const CUSTODY_AGREEMENT_SYSTEM: &str = "urn:kanta:cs:custody-agreement";
/// ICD-10, Finnish edition.
pub const ICD10_SYSTEM: &str = "urn:oid:1.2.246.537.6.1";

/// Social-welfare document register IDs (eArkisto): a record tagged with this system is social care.
pub const SOCIAL_REGISTER_SYSTEM: &str = "urn:oid:1.2.246.537.6.1264";
/// The social-welfare register system's OID alone (a quick test of whether a record may name it).
pub const SOCIAL_REGISTER_OID: &str = "1.2.246.537.6.1264";
/// What a Kanta `Consent` records (`Consent.category`): see docs/fhir-conventions.md.
pub const CONSENT_KIND_SYSTEM: &str = "urn:kanta:cs:consent-kind";
/// The care domain of a disclosure consent (`Consent.provision.code`): `health`, `social`.
pub const CARE_DOMAIN_SYSTEM: &str = "urn:kanta:cs:care-domain";
/// A prohibition the patient let yield to emergency care (`Consent.extension`, valueBoolean).
pub const YIELDS_IN_EMERGENCY_URL: &str = "urn:kanta:ext:yields-in-emergency";
/// In which capacity the recorder acted (`Consent.extension`, valueCode: self, guardian, proxy,
/// care-unit).
pub const RECORDED_AS_URL: &str = "urn:kanta:ext:recorded-as";
/// The acting professional of a care unit's recording (`Consent.performer.identifier.system`; the
/// value is the request's `X-Kanta-Professional`, e.g. the Terhikki number).
pub const PROFESSIONAL_SYSTEM: &str = "urn:kanta:ns:professional";
/// The recording organisation of a care unit's recording, by its platform id (a logical
/// reference in `Consent.performer`: the organisation need not be in the shared registry).
pub const ORGANISATION_SYSTEM: &str = "urn:kanta:ns:organisation";
/// The living will's structured fields (`Consent.extension`, complex).
pub const LIVING_WILL_URL: &str = "urn:kanta:ext:living-will";
/// The custodian role of a prohibited provider (`Consent.provision.actor.role`).
pub const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// Consent actions (`Consent.provision.action`): `access` = retrieve, `collect` = store.
pub const CONSENT_ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
/// FHIR Consent scopes.
pub const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";

/// The product of a prescription or dispensation, by VNR number (Kanta's own system until the
/// national one is confirmed; docs/prescription-centre.md).
pub const VNR_SYSTEM: &str = "urn:kanta:cs:vnr";
/// Why a prescription was cancelled (R-RX-1, R-DOC-10).
pub const PRESCRIPTION_CANCELLATION_SYSTEM: &str = "urn:kanta:cs:prescription-cancellation";
/// The prescriber prohibited renewal (valueBoolean).
pub const RENEWAL_PROHIBITED_URL: &str = "urn:kanta:ext:renewal-prohibited";
/// The server-maintained state of a prescription (complex extension: `measure`, `total`,
/// `dispensed`, `remaining`, `validUntil`, `reservedBy`, `reservedUntil`); never taken from a client.
pub const PRESCRIPTION_STATE_URL: &str = "urn:kanta:ext:prescription-state";
/// A correction's justification (valueString), required on every new version by the prescriber.
pub const CORRECTION_JUSTIFICATION_URL: &str = "urn:kanta:ext:correction-justification";
/// What a dispensation took, in the prescription's measure (server-set, valueUnsignedInt).
pub const DISPENSED_AMOUNT_URL: &str = "urn:kanta:ext:dispensed-amount";
/// The retail price of a dispensation, VAT included (server-set, valueMoney EUR).
pub const RETAIL_PRICE_URL: &str = "urn:kanta:ext:retail-price";
/// What a substitution cost more (or less) than the prescribed product (server-set, valueMoney).
pub const PRICE_DIFFERENCE_URL: &str = "urn:kanta:ext:price-difference";
/// A dispensation abroad: the country (valueCoding, ISO 3166-1 alpha-2).
pub const DISPENSED_ABROAD_URL: &str = "urn:kanta:ext:dispensed-abroad";
/// The kinds of Prescription Centre task (`Task.code`): reservation, renewal-request, review-request.
pub const PRESCRIPTION_TASK_SYSTEM: &str = "urn:kanta:cs:prescription-task";
