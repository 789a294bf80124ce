//! Typed views of the FHIR elements the platform reasons about. Each view is read from the stored
//! JSON (which stays the source of truth, losslessly); fields we do not reason about are ignored
//! here and kept there.

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    pub reference: Option<String>,
    pub identifier: Option<Identifier>,
    pub display: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    pub system: Option<String>,
    pub value: Option<String>,
    #[serde(rename = "use")]
    pub use_: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coding {
    pub system: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    pub start: Option<String>,
    pub end: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub url: String,
    pub value_date_time: Option<String>,
    pub value_date: Option<String>,
    pub value_coding: Option<Coding>,
    pub value_code: Option<String>,
    pub value_boolean: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub version_id: Option<String>,
    pub last_updated: Option<String>,
    #[serde(default)]
    pub profile: Vec<String>,
    #[serde(default)]
    pub security: Vec<Coding>,
    #[serde(default)]
    pub tag: Vec<Coding>,
    #[serde(default)]
    pub extension: Vec<Extension>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HumanName {
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub family: Option<String>,
    #[serde(default)]
    pub given: Vec<String>,
    pub text: Option<String>,
}

/// The fields common to every resource.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Base {
    pub resource_type: String,
    pub id: Option<String>,
    #[serde(default)]
    pub meta: Meta,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub name: Vec<HumanName>,
    pub birth_date: Option<String>,
    pub gender: Option<String>,
    pub deceased_boolean: Option<bool>,
    pub deceased_date_time: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedPerson {
    pub patient: Reference,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub relationship: Vec<CodeableConcept>,
    pub period: Option<Period>,
    #[serde(default)]
    pub extension: Vec<Extension>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    pub status: String,
    pub class: Coding,
    pub subject: Reference,
    pub period: Option<Period>,
    pub service_provider: Option<Reference>,
    #[serde(default)]
    pub extension: Vec<Extension>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeOfCare {
    pub status: String,
    pub patient: Reference,
    pub period: Option<Period>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub subject: Reference,
    pub code: CodeableConcept,
    pub encounter: Option<Reference>,
    pub recorded_date: Option<String>,
    pub onset_date_time: Option<String>,
    pub verification_status: Option<CodeableConcept>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub status: String,
    pub code: CodeableConcept,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub effective_date_time: Option<String>,
    pub effective_period: Option<Period>,
    pub issued: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticReport {
    pub status: String,
    pub code: CodeableConcept,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub effective_date_time: Option<String>,
    pub issued: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagingStudy {
    pub status: String,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub started: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Immunization {
    pub status: String,
    pub vaccine_code: CodeableConcept,
    pub patient: Reference,
    pub encounter: Option<Reference>,
    pub occurrence_date_time: Option<String>,
    pub occurrence_string: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRequest {
    pub status: String,
    pub intent: String,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub authored_on: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllergyIntolerance {
    pub patient: Reference,
    pub encounter: Option<Reference>,
    pub recorded_date: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Procedure {
    pub status: String,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub performed_date_time: Option<String>,
    pub performed_period: Option<Period>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarePlan {
    pub status: String,
    pub intent: String,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub created: Option<String>,
    pub period: Option<Period>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    pub status: String,
    pub subject: Reference,
    pub date: Option<String>,
    pub content: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Composition {
    pub status: String,
    #[serde(rename = "type")]
    pub type_: CodeableConcept,
    pub subject: Reference,
    pub encounter: Option<Reference>,
    pub date: String,
    pub author: Vec<Reference>,
    pub title: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    pub status: String,
    pub scope: CodeableConcept,
    #[serde(default)]
    pub category: Vec<CodeableConcept>,
    pub patient: Reference,
    pub date_time: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationRequest {
    pub status: String,
    pub intent: String,
    pub subject: Reference,
    pub medication_codeable_concept: Option<CodeableConcept>,
    pub medication_reference: Option<Reference>,
    pub authored_on: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MedicationDispense {
    pub status: String,
    pub subject: Reference,
    pub medication_codeable_concept: Option<CodeableConcept>,
    pub medication_reference: Option<Reference>,
    pub when_handed_over: Option<String>,
    pub when_prepared: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub status: String,
    pub intent: String,
    #[serde(rename = "for")]
    pub for_: Option<Reference>,
    pub authored_on: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub target: Vec<Reference>,
    pub recorded: String,
    pub agent: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(rename = "type")]
    pub type_: Coding,
    pub recorded: String,
    pub agent: Vec<serde_json::Value>,
    pub source: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Practitioner {
    #[serde(default)]
    pub identifier: Vec<Identifier>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Medication {
    pub code: Option<CodeableConcept>,
}

/// A view for types we store by patient without reasoning about more than the subject.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectOnly {
    pub subject: Reference,
}
