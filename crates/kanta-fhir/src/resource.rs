//! Checking a submitted resource: well-formed JSON object, a type we serve, the required elements of
//! that type present and of the right shape, a valid HETU where one is required, and a patient for
//! every patient-scoped type. The result keeps the submitted JSON untouched. A resource that fails is
//! refused at ingest with an OperationOutcome naming the element, and nothing of its Bundle is
//! stored (R-DOC-2).

use crate::codes;
use crate::datetime;
use crate::outcome::{ErrorKind, FhirError};
use crate::types::{self, Reference};
use kanta_domain::hetu::Hetu;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Where a resource lives: with one patient's data (and is distributed by patient), or in the shared
/// reference data (organisations, practitioners, medicines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Patient,
    Shared,
}

/// How a patient-scoped resource names its patient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatientLink {
    /// The resource is the Patient, with this HETU.
    Itself(Hetu),
    /// A literal reference (`Patient/<id>` or `urn:uuid:<uuid>`) at `expression`.
    Reference {
        expression: String,
        reference: String,
    },
    /// A logical reference by HETU.
    Hetu(Hetu),
    /// Provenance: the patient of the first target resource.
    Target {
        expression: String,
        reference: String,
    },
}

/// A resource that passed [`check`].
#[derive(Clone, Debug)]
pub struct Checked {
    pub resource_type: String,
    pub id: Option<String>,
    /// The submitted JSON object, losslessly.
    pub body: Map<String, Value>,
    pub scope: Scope,
    pub patient: Option<PatientLink>,
    /// The clinically relevant date (for `_sort=date`).
    pub effective: Option<OffsetDateTime>,
    pub status: Option<String>,
    /// `identifier` system|value pairs (for conditional create and search).
    pub identifiers: Vec<(String, String)>,
}

/// The resource types this server stores, and where.
pub const PATIENT_TYPES: &[&str] = &[
    "Patient",
    "AllergyIntolerance",
    "CarePlan",
    "Composition",
    "Condition",
    "Consent",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "EpisodeOfCare",
    "Flag",
    "ImagingStudy",
    "Immunization",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "Provenance",
    "QuestionnaireResponse",
    "ServiceRequest",
    "Task",
];
pub const SHARED_TYPES: &[&str] = &[
    "HealthcareService",
    "Location",
    "Medication",
    "Organization",
    "Practitioner",
    "PractitionerRole",
];

pub fn scope_of(resource_type: &str) -> Option<Scope> {
    // The access decision's kinds are the one list of stored types; a test holds the capability
    // lists above to it.
    kanta_domain::access::Kind::of(resource_type).map(|k| {
        if k.is_patient_data() {
            Scope::Patient
        } else {
            Scope::Shared
        }
    })
}

/// A FHIR logical id: `[A-Za-z0-9\-\.]{1,64}`, but not `.` or `..` (R4's pattern allows them, yet
/// URLs lose them as dot segments, so `Patient/..` would name something else).
pub fn valid_id(id: &str) -> bool {
    id != "."
        && id != ".."
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Check a parsed JSON value as a FHIR resource this server accepts.
pub fn check(value: Value) -> Result<Checked, FhirError> {
    let Value::Object(body) = value else {
        return Err(FhirError::bad_request(
            "a FHIR resource must be a JSON object",
        ));
    };
    let resource_type = match body.get("resourceType") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => return Err(FhirError::bad_request("resourceType must be a string")),
        None => return Err(FhirError::bad_request("the resource has no resourceType")),
    };
    let Some(scope) = scope_of(&resource_type) else {
        return Err(FhirError::new(
            if resource_type == "AuditEvent" {
                ErrorKind::MethodNotAllowed
            } else {
                ErrorKind::BadRequest
            },
            if resource_type == "AuditEvent" {
                "AuditEvent resources are written by the platform itself, not by clients"
                    .to_string()
            } else {
                format!("resource type '{resource_type}' is not supported by this server (see /fhir/metadata)")
            },
        ));
    };
    let value = Value::Object(body);
    let base: types::Base = view(&value, &resource_type)?;
    if let Some(id) = &base.id {
        if !valid_id(id) {
            return Err(FhirError::invalid(
                format!("{resource_type}.id"),
                "id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '.'",
            ));
        }
    }
    let t = resource_type.as_str();
    let mut status = None;
    let mut effective = None;
    let mut patient = None;
    match t {
        "Patient" => {
            let p: types::Patient = view(&value, t)?;
            let hetu = patient_hetu(&p.identifier)?;
            if let Some(b) = &p.birth_date {
                let date = datetime::parse_date(b).ok_or_else(|| {
                    FhirError::invalid(
                        "Patient.birthDate",
                        "birthDate must be a full date YYYY-MM-DD",
                    )
                })?;
                if date != hetu.birth_date() {
                    return Err(FhirError::invalid(
                        "Patient.birthDate",
                        "birthDate does not agree with the birth date in the HETU",
                    ));
                }
            }
            patient = Some(PatientLink::Itself(hetu));
        }
        "Encounter" => {
            let r: types::Encounter = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, ENCOUNTER_STATUS)?);
            effective = date(t, "period.start", r.period.and_then(|p| p.start))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "EpisodeOfCare" => {
            let r: types::EpisodeOfCare = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, EPISODE_STATUS)?);
            effective = date(t, "period.start", r.period.and_then(|p| p.start))?;
            patient = Some(subject(t, "patient", &r.patient)?);
        }
        "Condition" => {
            let r: types::Condition = view(&value, t)?;
            require_coded(t, "code", &r.code)?;
            effective = date(t, "recordedDate", r.recorded_date.or(r.onset_date_time))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Observation" => {
            let r: types::Observation = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, OBSERVATION_STATUS)?);
            require_coded(t, "code", &r.code)?;
            let when = r
                .effective_date_time
                .or(r.effective_period.and_then(|p| p.start))
                .or(r.issued);
            effective = date(t, "effectiveDateTime", when)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "DiagnosticReport" => {
            let r: types::DiagnosticReport = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, REPORT_STATUS)?);
            require_coded(t, "code", &r.code)?;
            effective = date(t, "effectiveDateTime", r.effective_date_time.or(r.issued))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "ImagingStudy" => {
            let r: types::ImagingStudy = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, IMAGING_STATUS)?);
            effective = date(t, "started", r.started)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Immunization" => {
            let r: types::Immunization = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, IMMUNIZATION_STATUS)?);
            require_coded(t, "vaccineCode", &r.vaccine_code)?;
            if r.occurrence_date_time.is_none() && r.occurrence_string.is_none() {
                return Err(missing(t, "occurrence[x]"));
            }
            effective = date(t, "occurrenceDateTime", r.occurrence_date_time)?;
            patient = Some(subject(t, "patient", &r.patient)?);
        }
        "ServiceRequest" => {
            let r: types::ServiceRequest = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, REQUEST_STATUS)?);
            code_in(t, "intent", r.intent, REQUEST_INTENT)?;
            effective = date(t, "authoredOn", r.authored_on)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "AllergyIntolerance" => {
            let r: types::AllergyIntolerance = view(&value, t)?;
            effective = date(t, "recordedDate", r.recorded_date)?;
            patient = Some(subject(t, "patient", &r.patient)?);
        }
        "Procedure" => {
            let r: types::Procedure = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, PROCEDURE_STATUS)?);
            let when = r
                .performed_date_time
                .or(r.performed_period.and_then(|p| p.start));
            effective = date(t, "performedDateTime", when)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "CarePlan" => {
            let r: types::CarePlan = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, REQUEST_STATUS)?);
            code_in(t, "intent", r.intent, CAREPLAN_INTENT)?;
            effective = date(t, "created", r.created.or(r.period.and_then(|p| p.start)))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "DocumentReference" => {
            let r: types::DocumentReference = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, DOCREF_STATUS)?);
            if r.content.is_empty() {
                return Err(missing(t, "content"));
            }
            effective = date(t, "date", r.date)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Composition" => {
            let r: types::Composition = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, COMPOSITION_STATUS)?);
            require_coded(t, "type", &r.type_)?;
            if r.author.is_empty() {
                return Err(missing(t, "author"));
            }
            if r.title.trim().is_empty() {
                return Err(missing(t, "title"));
            }
            effective = date(t, "date", Some(r.date))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Consent" => {
            let r: types::Consent = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, CONSENT_STATUS)?);
            if r.category.is_empty() {
                return Err(missing(t, "category"));
            }
            effective = date(t, "dateTime", r.date_time)?;
            patient = Some(subject(t, "patient", &r.patient)?);
            // A Kanta consent (its kind in `category`) must carry what its kind needs.
            if let Err(msg) = crate::consent::read(&value) {
                let at = msg.split(':').next().unwrap_or("Consent").to_string();
                return Err(FhirError::invalid(at, msg));
            }
        }
        "MedicationRequest" => {
            let r: types::MedicationRequest = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, MEDREQ_STATUS)?);
            code_in(t, "intent", r.intent, REQUEST_INTENT)?;
            if r.medication_codeable_concept.is_none() && r.medication_reference.is_none() {
                return Err(missing(t, "medication[x]"));
            }
            effective = date(t, "authoredOn", r.authored_on)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "MedicationDispense" => {
            let r: types::MedicationDispense = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, DISPENSE_STATUS)?);
            if r.medication_codeable_concept.is_none() && r.medication_reference.is_none() {
                return Err(missing(t, "medication[x]"));
            }
            effective = date(t, "whenHandedOver", r.when_handed_over.or(r.when_prepared))?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Task" => {
            let r: types::Task = view(&value, t)?;
            status = Some(code_in(t, "status", r.status, TASK_STATUS)?);
            code_in(t, "intent", r.intent, TASK_INTENT)?;
            effective = date(t, "authoredOn", r.authored_on)?;
            let whose = r.for_.ok_or_else(|| missing(t, "for"))?;
            patient = Some(subject(t, "for", &whose)?);
        }
        "Provenance" => {
            let r: types::Provenance = view(&value, t)?;
            if r.agent.is_empty() {
                return Err(missing(t, "agent"));
            }
            effective = date(t, "recorded", Some(r.recorded))?;
            let first = r.target.first().ok_or_else(|| missing(t, "target"))?;
            let reference = first.reference.clone().ok_or_else(|| {
                FhirError::invalid(
                    "Provenance.target[0]",
                    "Provenance.target[0] must be a literal reference",
                )
            })?;
            patient = Some(PatientLink::Target {
                expression: "Provenance.target[0]".into(),
                reference,
            });
        }
        "Flag" | "MedicationStatement" | "QuestionnaireResponse" => {
            let r: types::SubjectOnly = view(&value, t)?;
            patient = Some(subject(t, "subject", &r.subject)?);
        }
        "Organization" => {
            let _: types::Organization = view(&value, t)?;
        }
        "Practitioner" => {
            let _: types::Practitioner = view(&value, t)?;
        }
        "Medication" => {
            let _: types::Medication = view(&value, t)?;
        }
        _ => {}
    }
    let identifiers = identifiers(&value, t)?;
    let Value::Object(body) = value else {
        return Err(FhirError::internal());
    };
    Ok(Checked {
        resource_type,
        id: base.id,
        body,
        scope,
        patient,
        effective,
        status,
        identifiers,
    })
}

/// Read a typed view, turning serde's complaint into an issue that names the element.
fn view<T: DeserializeOwned>(value: &Value, resource_type: &str) -> Result<T, FhirError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            let at = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            missing(resource_type, &at)
        } else {
            let expression = if path == "." {
                resource_type.to_string()
            } else {
                format!("{resource_type}.{path}")
            };
            FhirError::at(
                ErrorKind::BadRequest,
                expression.clone(),
                format!(
                    "{expression}: {}",
                    inner.split(" at line ").next().unwrap_or(&inner)
                ),
            )
        }
    })
}

fn missing(resource_type: &str, element: &str) -> FhirError {
    let expression = format!("{resource_type}.{element}");
    FhirError::invalid(expression.clone(), format!("{expression} is required"))
}

fn code_in(t: &str, element: &str, code: String, allowed: &[&str]) -> Result<String, FhirError> {
    if allowed.contains(&code.as_str()) {
        Ok(code)
    } else {
        Err(FhirError::invalid(
            format!("{t}.{element}"),
            format!(
                "{t}.{element} '{code}' is not one of: {}",
                allowed.join(", ")
            ),
        ))
    }
}

fn require_coded(t: &str, element: &str, c: &types::CodeableConcept) -> Result<(), FhirError> {
    let has_code = c
        .coding
        .iter()
        .any(|c| c.code.as_deref().is_some_and(|s| !s.is_empty()));
    if has_code || c.text.as_deref().is_some_and(|s| !s.trim().is_empty()) {
        Ok(())
    } else {
        Err(FhirError::invalid(
            format!("{t}.{element}"),
            format!("{t}.{element} must have a coding with a code, or a text"),
        ))
    }
}

fn date(
    t: &str,
    element: &str,
    value: Option<String>,
) -> Result<Option<OffsetDateTime>, FhirError> {
    match value {
        None => Ok(None),
        Some(s) => datetime::parse_start(&s).map(Some).ok_or_else(|| {
            FhirError::invalid(
                format!("{t}.{element}"),
                format!("{t}.{element} '{s}' is not a valid FHIR date or dateTime"),
            )
        }),
    }
}

/// The patient reference of a patient-scoped resource.
fn subject(t: &str, element: &str, r: &Reference) -> Result<PatientLink, FhirError> {
    let expression = format!("{t}.{element}");
    if let Some(reference) = &r.reference {
        if let Some(query) = reference.strip_prefix("Patient?") {
            let value = query
                .strip_prefix("identifier=")
                .and_then(|v| v.strip_prefix(codes::HETU_SYSTEM))
                .and_then(|v| v.strip_prefix('|').or_else(|| v.strip_prefix("%7C")))
                .ok_or_else(|| {
                    FhirError::invalid(
                        expression.clone(),
                        format!("{expression}: a conditional reference must be Patient?identifier={}|<HETU>", codes::HETU_SYSTEM),
                    )
                })?;
            return parse_hetu(&expression, value).map(PatientLink::Hetu);
        }
        let is_patient = reference
            .strip_prefix("Patient/")
            .is_some_and(|id| valid_id(id.split("/_history/").next().unwrap_or(id)));
        if is_patient || reference.starts_with("urn:uuid:") {
            return Ok(PatientLink::Reference {
                expression,
                reference: reference.clone(),
            });
        }
        return Err(FhirError::invalid(
            expression.clone(),
            format!("{expression} must reference a Patient (Patient/<id>, urn:uuid:<uuid> or a HETU identifier)"),
        ));
    }
    if let Some(ident) = &r.identifier {
        if ident.system.as_deref() == Some(codes::HETU_SYSTEM) {
            let value = ident.value.as_deref().unwrap_or("");
            return parse_hetu(&format!("{expression}.identifier.value"), value)
                .map(PatientLink::Hetu);
        }
    }
    Err(missing(t, &format!("{element}.reference")))
}

fn parse_hetu(expression: &str, value: &str) -> Result<Hetu, FhirError> {
    Hetu::parse(value).map_err(|e| {
        let mut err = FhirError::invalid(expression, format!("{expression}: invalid HETU: {e}"));
        err.issues[0].code = Some("value");
        err
    })
}

/// The HETU of a Patient: exactly one identifier with the HETU system, valid.
fn patient_hetu(identifiers: &[types::Identifier]) -> Result<Hetu, FhirError> {
    let mut found = None;
    for (i, ident) in identifiers.iter().enumerate() {
        if ident.system.as_deref() == Some(codes::HETU_SYSTEM) {
            if found.is_some() {
                return Err(FhirError::invalid(
                    format!("Patient.identifier[{i}]"),
                    "a Patient may carry only one HETU identifier",
                ));
            }
            let expression = format!("Patient.identifier[{i}].value");
            let value = ident.value.as_deref().ok_or_else(|| {
                FhirError::invalid(expression.clone(), format!("{expression} is required"))
            })?;
            found = Some(parse_hetu(&expression, value)?);
        }
    }
    found.ok_or_else(|| {
        FhirError::invalid(
            "Patient.identifier",
            format!(
                "a Patient must carry its HETU as an identifier with system {}",
                codes::HETU_SYSTEM
            ),
        )
    })
}

fn identifiers(value: &Value, t: &str) -> Result<Vec<(String, String)>, FhirError> {
    let list = match value.get("identifier") {
        None => return Ok(vec![]),
        Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
        Some(o @ Value::Object(_)) => vec![o],
        Some(_) => {
            return Err(FhirError::at(
                ErrorKind::BadRequest,
                format!("{t}.identifier"),
                format!("{t}.identifier must be an array of Identifier"),
            ))
        }
    };
    Ok(list
        .into_iter()
        .filter_map(|i| {
            let system = i.get("system")?.as_str()?;
            let value = i.get("value")?.as_str()?;
            Some((system.to_string(), value.to_string()))
        })
        .collect())
}

const ENCOUNTER_STATUS: &[&str] = &[
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const EPISODE_STATUS: &[&str] = &[
    "planned",
    "waitlist",
    "active",
    "onhold",
    "finished",
    "cancelled",
    "entered-in-error",
];
const OBSERVATION_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const REPORT_STATUS: &[&str] = &[
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const IMAGING_STATUS: &[&str] = &[
    "registered",
    "available",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const IMMUNIZATION_STATUS: &[&str] = &["completed", "entered-in-error", "not-done"];
const REQUEST_STATUS: &[&str] = &[
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
];
const REQUEST_INTENT: &[&str] = &[
    "proposal",
    "plan",
    "directive",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
];
const CAREPLAN_INTENT: &[&str] = &["proposal", "plan", "order", "option"];
const PROCEDURE_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
];
const DOCREF_STATUS: &[&str] = &["current", "superseded", "entered-in-error"];
const COMPOSITION_STATUS: &[&str] = &["preliminary", "final", "amended", "entered-in-error"];
const CONSENT_STATUS: &[&str] = &[
    "draft",
    "proposed",
    "active",
    "rejected",
    "inactive",
    "entered-in-error",
];
const MEDREQ_STATUS: &[&str] = &[
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
];
const TASK_STATUS: &[&str] = &[
    "draft",
    "requested",
    "received",
    "accepted",
    "rejected",
    "ready",
    "cancelled",
    "in-progress",
    "on-hold",
    "failed",
    "completed",
    "entered-in-error",
];
const TASK_INTENT: &[&str] = &[
    "unknown",
    "proposal",
    "plan",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
];
const DISPENSE_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "cancelled",
    "on-hold",
    "completed",
    "entered-in-error",
    "stopped",
    "declined",
    "unknown",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> (u16, String, String) {
        let e = check(v).unwrap_err();
        let oo = e.to_operation_outcome();
        (
            e.kind.status(),
            oo["issue"][0]["expression"][0]
                .as_str()
                .unwrap_or("")
                .to_string(),
            oo["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    fn patient(hetu: &str) -> Value {
        json!({"resourceType": "Patient", "identifier": [{"system": codes::HETU_SYSTEM, "value": hetu}]})
    }

    #[test]
    fn a_valid_patient_is_checked_with_its_hetu_r_auth_7() {
        let c = check(patient("010594Y9032")).unwrap();
        assert_eq!(c.scope, Scope::Patient);
        assert!(matches!(c.patient, Some(PatientLink::Itself(h)) if h.as_str() == "010594Y9032"));
    }

    #[test]
    fn bad_input_names_the_element_and_status_r_doc_2() {
        let cases: Vec<(Value, u16, &str, &str)> = vec![
            (json!([1, 2]), 400, "", "JSON object"),
            (json!({"id": "x"}), 400, "", "no resourceType"),
            (json!({"resourceType": "Foo"}), 400, "", "not supported"),
            (
                json!({"resourceType": "AuditEvent"}),
                405,
                "",
                "written by the platform",
            ),
            (
                patient("010594Y9033"),
                422,
                "Patient.identifier[0].value",
                "invalid HETU",
            ),
            (
                patient("010594Z9032"),
                422,
                "Patient.identifier[0].value",
                "invalid HETU",
            ),
            (
                json!({"resourceType": "Patient"}),
                422,
                "Patient.identifier",
                "HETU",
            ),
            (
                json!({"resourceType": "Patient", "identifier": [{"system": codes::HETU_SYSTEM, "value": "010594Y9032"}], "birthDate": "1994-05-02"}),
                422,
                "Patient.birthDate",
                "does not agree",
            ),
            (
                json!({"resourceType": "Observation", "code": {"text": "x"}, "subject": {"reference": "Patient/1"}}),
                422,
                "Observation.status",
                "is required",
            ),
            (
                json!({"resourceType": "Observation", "status": "done", "code": {"text": "x"}, "subject": {"reference": "Patient/1"}}),
                422,
                "Observation.status",
                "not one of",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {}, "subject": {"reference": "Patient/1"}}),
                422,
                "Observation.code",
                "coding",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Group/1"}}),
                422,
                "Observation.subject",
                "must reference a Patient",
            ),
            (
                json!({"resourceType": "Observation", "status": 7, "code": {"text": "x"}, "subject": {"reference": "Patient/1"}}),
                400,
                "Observation.status",
                "invalid type",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/1"}, "effectiveDateTime": "yesterday"}),
                422,
                "Observation.effectiveDateTime",
                "not a valid",
            ),
            (
                json!({"resourceType": "Condition", "code": {"text": "x"}, "subject": {"reference": "Patient?identifier=urn:oid:1.2.246.21|131052-308U"}}),
                422,
                "Condition.subject",
                "invalid HETU",
            ),
            (
                json!({"resourceType": "Observation", "id": "a/b", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/1"}}),
                422,
                "Observation.id",
                "1-64",
            ),
        ];
        for (v, status, expression, text) in cases {
            let (s, e, d) = err(v.clone());
            assert_eq!((s, e.as_str()), (status, expression), "{v}: {d}");
            assert!(d.contains(text), "{v}: '{d}' lacks '{text}'");
        }
    }

    #[test]
    fn effective_dates_and_patient_links_are_extracted() {
        let c = check(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
            "subject": {"reference": "urn:uuid:5d0e6ba4-6a26-4c8f-9d3c-0d7a9b1e1f2a"},
            "effectiveDateTime": "2024-05-06T10:00:00+02:00",
            "identifier": [{"system": "urn:lab", "value": "42"}]
        }))
        .unwrap();
        assert_eq!(
            c.effective.map(datetime::instant).as_deref(),
            Some("2024-05-06T08:00:00.000Z")
        );
        assert!(matches!(c.patient, Some(PatientLink::Reference { .. })));
        assert_eq!(
            c.identifiers,
            vec![("urn:lab".to_string(), "42".to_string())]
        );
        let c = check(json!({
            "resourceType": "Condition", "code": {"text": "x"},
            "subject": {"identifier": {"system": codes::HETU_SYSTEM, "value": "010594Y9032"}}
        }))
        .unwrap();
        assert!(matches!(c.patient, Some(PatientLink::Hetu(_))));
        assert_eq!(
            check(json!({"resourceType": "Organization", "name": "HUS"}))
                .unwrap()
                .scope,
            Scope::Shared
        );
    }

    #[test]
    fn the_type_lists_are_the_access_kinds() {
        use kanta_domain::access::Kind;
        for t in PATIENT_TYPES {
            assert!(Kind::of(t).is_some_and(Kind::is_patient_data), "{t}");
        }
        for t in SHARED_TYPES {
            assert_eq!(Kind::of(t), Some(Kind::Registry), "{t}");
        }
        for k in Kind::ALL {
            // Every kind has at least one listed type.
            let listed = PATIENT_TYPES
                .iter()
                .chain(SHARED_TYPES)
                .any(|t| Kind::of(t) == Some(k));
            assert!(listed, "{k:?}");
        }
    }
}
