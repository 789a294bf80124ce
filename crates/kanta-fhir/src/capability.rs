//! The server's `CapabilityStatement` (`GET /fhir/metadata`): what it really supports, no more.

use crate::resource::{PATIENT_TYPES, SHARED_TYPES};
use serde_json::{json, Value};

pub fn capability_statement(base: &str, version: &str, release_date: &str) -> Value {
    let mut types: Vec<&str> = PATIENT_TYPES.iter().chain(SHARED_TYPES).copied().collect();
    types.sort_unstable();
    let resources: Vec<Value> = types
        .into_iter()
        .map(|t| {
            let mut search = vec![
                json!({"name": "_count", "type": "number", "documentation": "Page size (1-1000, default 20); follow link[next] for more"}),
                json!({"name": "_sort", "type": "special", "documentation": "date or -date (default -date: newest first)"}),
                json!({"name": "identifier", "type": "token", "documentation": "system|value"}),
            ];
            if PATIENT_TYPES.contains(&t) && t != "Patient" {
                search.push(json!({"name": "patient", "type": "reference", "documentation": "Patient/<id>"}));
                search.push(json!({"name": "subject", "type": "reference", "documentation": "Patient/<id>"}));
            }
            if t == "Consent" {
                search.push(json!({"name": "producer", "type": "reference", "documentation": "Organization/<your own id>: the purchased-services mandates granted to your organisation (R-CONSENT-2)"}));
            }
            if t == "Task" {
                search.push(json!({"name": "owner", "type": "reference", "documentation": "Organization/<your own id>: your organisation's queue of the Prescription Centre (reservations, renewal requests, review requests)"}));
                search.push(json!({"name": "code", "type": "token", "documentation": "with owner and status: reservation, renewal-request or review-request"}));
                search.push(json!({"name": "status", "type": "token", "documentation": "with owner and code: requested, in-progress, completed, rejected, cancelled"}));
            }
            if t == "MedicationDispense" {
                search.push(json!({"name": "prescription", "type": "reference", "documentation": "MedicationRequest/<id>: the dispensations of one prescription"}));
            }
            json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "documentation": documentation(t),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "create"},
                    {"code": "history-instance"}, {"code": "search-type"}
                ],
                "searchParam": search,
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": release_date,
        "publisher": "Kanta open platform",
        "kind": "instance",
        "software": { "name": "kanta", "version": version },
        "implementation": { "description": "Kanta FHIR R4 API", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "OAuth2 client credentials (SMART Backend Services, private_key_jwt; demo clients may use client_secret_basic). Token endpoint: see extension.",
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": format!("{}/oauth/token", base.trim_end_matches("/fhir"))}]
                }]
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}],
        }]
    })
}

/// What refuses a create or an update of this type, beyond the resource being valid FHIR R4: the
/// roles that write it and the platform's own rules (issue 30: a client could not learn them
/// before trying).
fn documentation(t: &str) -> String {
    let rule = match t {
        "Patient" => "Written by care providers' clients (role clinician); identified by the HETU (identifier system urn:oid:1.2.246.21, checked exactly); create it with a conditional create (ifNoneExist identifier=urn:oid:1.2.246.21|<HETU>), which returns an existing one.",
        "MedicationRequest" => "Written by prescribers (role clinician): the product by VNR (urn:kanta:cs:vnr) from the medicines database in force on authoredOn, dose instructions, a quantity in packages, an amount or a treatment time, valid at most two years. The server keeps the prescription's state and status (urn:kanta:ext:prescription-state; completed once nothing remains): a status it would store as something else is refused. A correction states its justification (urn:kanta:ext:correction-justification); a cancellation its reason (urn:kanta:cs:prescription-cancellation).",
        "MedicationDispense" => "Written by pharmacies (role pharmacy) against a prescription (authorizingPrescription), in parts that never exceed what remains. Send your own identifier: a retried create with the same identifier returns the first dispensation instead of dispensing again.",
        "Task" => "The Prescription Centre's queues (urn:kanta:cs:prescription-task): a pharmacy files reservations (its own queue) and renewal requests; the patient files renewal and review requests in MyKanta; the prescriber's unit and the operator answer their own queue. One open renewal or review request per prescription.",
        "Consent" => "The patient's choices (urn:kanta:cs:consent-kind): a care provider's client (role clinician) records them as the care unit, at the patient's request, only with X-Kanta-Professional and X-Kanta-Purpose-Of-Use: TREAT; the server stamps recorded-as care-unit and the performer (a body naming the patient, a guardian or a proxy is refused). One that changes nothing is refused (409); an organisation holds at most 100 per patient. A purchased-services mandate is written by its organiser only, never under X-Kanta-Register-Of.",
        "Organization" | "Practitioner" | "PractitionerRole" | "Location" | "HealthcareService" | "Medication" => "Shared registry data: written by the operator's clients only; read by every role.",
        "Provenance" => "Written by care providers' clients (role clinician) into their own register.",
        _ => "Clinical data of the Patient Data Repository: written by care providers' clients (role clinician) into their own register (a new version of another organisation's record is refused: write an amendment that refers to it); with X-Kanta-Register-Of: <organiser> a producer creates a new record in the organiser's register under a purchased-services mandate that lets it store.",
    };
    format!("{rule} Every interaction needs the SMART scope system/{t}.<c|r|u|s> granted to the client; another organisation's records are read only with X-Kanta-Professional and a purpose of use, under the patient's consents.")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 30: every type names its profile and the rules that refuse a write of it.
    #[test]
    fn every_type_names_its_profile_and_rules() {
        let c = capability_statement("https://k.example/fhir", "0", "2026-12-05");
        let resources = c["rest"][0]["resource"].as_array().unwrap();
        assert!(resources.len() > 10);
        for r in resources {
            let t = r["type"].as_str().unwrap();
            assert_eq!(
                r["profile"],
                json!(format!("http://hl7.org/fhir/StructureDefinition/{t}"))
            );
            let doc = r["documentation"].as_str().unwrap();
            assert!(doc.contains(&format!("system/{t}.")), "{t}: {doc}");
        }
        let doc_of = |t: &str| {
            resources.iter().find(|r| r["type"] == t).unwrap()["documentation"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(doc_of("MedicationRequest").contains("VNR"));
        assert!(doc_of("Consent").contains("X-Kanta-Professional"));
        assert!(doc_of("Task").contains("renewal"));
    }
}
