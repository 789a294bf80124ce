//! Audit records as FHIR `AuditEvent` resources (IHE BALP style) for log-data requests (R-OPS-5).

use crate::datetime;
use kanta_domain::audit::{Action, Actor, AuditRecord, Outcome};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// One AuditEvent. `seq` is the record's leaf index (its id); `patient` is the FHIR reference of
/// the person the record is about, if they have a Patient resource.
pub fn audit_event(record: &AuditRecord, seq: u64, patient: Option<&str>) -> Value {
    let (type_code, type_display, action) = match record.action {
        Action::Login => ("110114", "User Authentication", "E"),
        Action::FailedLogin => ("110114", "User Authentication", "E"),
        Action::Logout => ("110114", "User Authentication", "E"),
        Action::SwitchActingFor => ("110114", "User Authentication", "E"),
        Action::Read => ("rest", "RESTful Operation", "R"),
        Action::Search => ("rest", "RESTful Operation", "E"),
        Action::Create => ("rest", "RESTful Operation", "C"),
        Action::Update => ("rest", "RESTful Operation", "U"),
        Action::Export => ("110106", "Export", "R"),
        Action::Import => ("110107", "Import", "C"),
        Action::AuditRead => ("110101", "Audit Log Used", "R"),
        // DICOM 110113 Security Alert: the person reported an entry they do not recognise.
        Action::Flagged => ("110113", "Security Alert", "E"),
    };
    let recorded =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.recorded_at) * 1_000_000)
            .map(datetime::instant)
            .unwrap_or_default();
    let who = match &record.actor {
        Actor::Citizen { .. } => json!({"display": "the citizen (MyKanta)"}),
        Actor::Organisation {
            org,
            client_id,
            professional,
            ..
        } => {
            let mut w = json!({"reference": format!("Organization/{}", org.as_str()), "display": format!("client {client_id}")});
            if let Some(p) = professional {
                w["identifier"] = json!({"value": p});
            }
            w
        }
        Actor::Operator { client_id } => json!({"display": format!("operator client {client_id}")}),
        Actor::System { component } => json!({"display": format!("Kanta {component}")}),
    };
    let mut agent = vec![json!({"who": who, "requestor": true})];
    if let Some(on_behalf) = record.on_behalf_of {
        agent.push(json!({"who": {"display": format!("acting for person {}", on_behalf.0)}, "requestor": false}));
    }
    let mut entity: Vec<Value> = record
        .entities
        .iter()
        .map(|e| json!({"what": {"reference": e}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}}))
        .collect();
    if let Some(p) = patient {
        entity.push(json!({"what": {"reference": p}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}, "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}));
    }
    if let Some(q) = &record.query {
        entity.push(json!({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}, "description": q}));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": format!("audit-{seq}"),
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": type_code, "display": type_display},
        "action": action,
        "recorded": recorded,
        "outcome": match record.outcome { Outcome::Success => "0", Outcome::Failure => "8" },
        "agent": agent,
        "source": {"observer": {"display": "Kanta"}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
        "entity": entity,
    });
    // The whole record (issue 30: the export left out the purpose, the ground and the emergency
    // reason): the purpose of use as `purposeOfEvent` (HL7 v3 PurposeOfUse) on the event and the
    // requesting agent, the ground, the role and an emergency's stated reason as extensions.
    let purpose = match &record.actor {
        Actor::Organisation { purpose, .. } => purpose.clone(),
        Actor::Citizen { .. } | Actor::Operator { .. } | Actor::System { .. } => None,
    }
    .or_else(|| record.basis.as_ref().and_then(|b| b.purpose.clone()));
    if let Some(p) = &purpose {
        let coding = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p}]}]);
        ev["purposeOfEvent"] = coding.clone();
        ev["agent"][0]["purposeOfUse"] = coding;
    }
    let mut ext = vec![];
    if let Some(r) = &record.request_id {
        ext.push(json!({"url": "urn:kanta:ext:request-id", "valueString": r}));
    }
    if let Some(b) = &record.basis {
        if let Ok(Value::String(g)) = serde_json::to_value(b.ground) {
            ext.push(json!({"url": "urn:kanta:ext:audit-ground", "valueCode": g}));
        }
        if let Some(role) = b.role {
            ext.push(json!({"url": "urn:kanta:ext:audit-role", "valueCode": role.as_str()}));
        }
        if let Some(reason) = &b.reason {
            ext.push(json!({"url": "urn:kanta:ext:emergency-reason", "valueString": reason}));
        }
    }
    if !ext.is_empty() {
        ev["extension"] = Value::Array(ext);
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanta_domain::ids::{OrgId, PatientKey};

    #[test]
    fn a_provider_read_becomes_an_audit_event() {
        let r = AuditRecord {
            schema: kanta_domain::audit::AUDIT_SCHEMA,
            recorded_at: 1_700_000_000_000,
            patient: Some(PatientKey(5)),
            actor: Actor::Organisation {
                org: OrgId::new("org-hus"),
                client_id: "demo-hus".into(),
                professional: None,
                purpose: None,
            },
            on_behalf_of: None,
            action: Action::Read,
            entities: vec!["Observation/1".into()],
            query: None,
            outcome: Outcome::Success,
            request_id: Some("r1".into()),
            basis: None,
        };
        let ev = audit_event(&r, 7, Some("Patient/p1"));
        assert_eq!(ev["action"], "R");
        assert!(ev.get("purposeOfEvent").is_none());
        assert_eq!(ev["agent"][0]["who"]["reference"], "Organization/org-hus");
        assert_eq!(ev["entity"][1]["what"]["reference"], "Patient/p1");
        assert_eq!(ev["recorded"], "2023-11-14T22:13:20.000Z");
        assert_eq!(ev["id"], "audit-7");
    }

    /// Issue 30: the export names the purpose, the ground, the role and an emergency's reason.
    #[test]
    fn an_emergency_read_exports_its_purpose_ground_and_reason() {
        use kanta_domain::access::{Basis, Ground};
        use kanta_domain::ids::ClientRole;
        let r = AuditRecord {
            schema: kanta_domain::audit::AUDIT_SCHEMA,
            recorded_at: 1_700_000_000_000,
            patient: Some(PatientKey(5)),
            actor: Actor::Organisation {
                org: OrgId::new("org-tays"),
                client_id: "tays".into(),
                professional: Some("urn:oid:1.2.246.537.26|9".into()),
                purpose: Some("ETREAT".into()),
            },
            on_behalf_of: None,
            action: Action::Read,
            entities: vec!["Condition/1".into()],
            query: None,
            outcome: Outcome::Success,
            request_id: None,
            basis: Some(Basis {
                ground: Ground::Emergency,
                role: Some(ClientRole::Clinician),
                purpose: Some("ETREAT".into()),
                reason: Some("tajuton potilas".into()),
            }),
        };
        let ev = audit_event(&r, 8, None);
        assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
        assert_eq!(
            ev["agent"][0]["purposeOfUse"][0]["coding"][0]["code"],
            "ETREAT"
        );
        let ext = ev["extension"].as_array().unwrap();
        let by = |url: &str| ext.iter().find(|e| e["url"] == url).cloned();
        assert_eq!(
            by("urn:kanta:ext:audit-ground").unwrap()["valueCode"],
            "emergency"
        );
        assert_eq!(
            by("urn:kanta:ext:audit-role").unwrap()["valueCode"],
            "clinician"
        );
        assert_eq!(
            by("urn:kanta:ext:emergency-reason").unwrap()["valueString"],
            "tajuton potilas"
        );
    }
}
