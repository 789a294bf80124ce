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
