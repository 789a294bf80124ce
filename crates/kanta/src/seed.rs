//! Seeding the demo: organisations, API clients, the population register and clinical records, all
//! written through the same paths that production traffic uses (the population import and the
//! transaction-Bundle write).

use crate::demo;
use kanta_domain::access::Principal;
use kanta_domain::ids::ClientRole;
use kanta_domain::ids::OrgId;
use kanta_fhir::check;
use kanta_store::{ClientRecord, Store, WriteOp, WriteRequest};
use kanta_web::auth::sha256_hex;
use std::sync::Arc;
use time::OffsetDateTime;

pub const OPERATOR_ORG: &str = "org-kanta-operator";

/// Whether the demo has been seeded into this database.
pub async fn is_seeded(store: &Arc<dyn Store>) -> Result<bool, String> {
    let first = demo::clients()
        .into_iter()
        .next()
        .ok_or("the demo has no clients")?;
    Ok(store
        .client(&first.client_id)
        .await
        .map_err(|e| e.to_string())?
        .is_some())
}

/// Seed everything. Idempotent in effect only if the database is fresh; callers check [`is_seeded`].
pub async fn seed(
    store: &Arc<dyn Store>,
    audit: &kanta_store::audit::AuditLog,
    now: OffsetDateTime,
) -> Result<(), String> {
    let today = now.date();
    // Organisations: shared reference data, written by the operator.
    let mut ops = vec![];
    for org in demo::organisations(today) {
        let id = org
            .get("id")
            .and_then(|v| v.as_str())
            .ok_or("a demo Organization lacks an id")?
            .to_string();
        let resource = check(org).map_err(|e| format!("demo Organization {id}: {e}"))?;
        ops.push((
            format!("Organization/{id}"),
            None,
            WriteOp::Update {
                resource,
                id,
                if_match: None,
            },
        ));
    }
    // Written, not released: nothing leaves the process, so nothing to audit.
    let _stored = store
        .write(
            WriteRequest {
                principal: Principal::system(
                    "seed",
                    &OrgId::new(OPERATOR_ORG),
                    &[ClientRole::Operator],
                ),
                org: OrgId::new(OPERATOR_ORG),
                ops,
                citizen: None,
                centre: None,
            },
            now,
        )
        .await
        .map_err(|e| format!("seeding organisations: {e}"))?;
    for c in demo::clients() {
        let record = ClientRecord {
            client_id: c.client_id.clone(),
            org: OrgId::new(&c.organisation),
            name: c.organisation_name.clone(),
            roles: c.roles.clone(),
            secret_sha256: Some(sha256_hex(c.client_secret.as_bytes())),
            jwks: None,
            enabled: true,
            scopes: "system/*.cruds".into(),
        };
        store
            .upsert_client(&record, now)
            .await
            .map_err(|e| format!("seeding client {}: {e}", c.client_id))?;
    }
    let records = kanta_fhir::population::parse_import(&demo::population_bundle(today))
        .map_err(|e| format!("demo population: {e}"))?;
    store
        .import_population(&records, now)
        .await
        .map_err(|e| format!("seeding the population register: {e}"))?;
    let clients = demo::clients();
    let submissions = demo::clinical_submissions(today)
        .into_iter()
        .chain(demo::consent_submissions(today))
        .chain(demo::prescription_submissions(today));
    let centre = std::sync::Arc::new(demo_centre()?);
    let mut dispense_first: Vec<(String, String, String)> = vec![];
    for (i, sub) in submissions.enumerate() {
        let client = clients
            .iter()
            .find(|c| c.client_id == sub.client_id)
            .ok_or_else(|| format!("demo submission {i} names unknown client {}", sub.client_id))?;
        let (mut req, _) = kanta_web::bundle_write_request(demo_principal(client), sub.bundle)
            .map_err(|e| format!("demo submission {i}: {e}"))?;
        req.centre = Some(centre.clone());
        // Through the providers' own path: each submission is in the audit log as the provider's
        // write, so the demo citizens' disclosure logs (R-VIEW-5) show who stored what.
        let access = kanta_store::audit::Access {
            actor: kanta_domain::audit::Actor::Organisation {
                org: OrgId::new(&client.organisation),
                client_id: client.client_id.clone(),
                professional: None,
                purpose: Some("care".into()),
            },
            on_behalf_of: None,
            action: kanta_domain::audit::Action::Create,
            query: None,
            request_id: None,
            now_ms: kanta_fhir::datetime::millis(now),
            subject: None,
        };
        let committed = store
            .write_audited(req, now, &access)
            .await
            .map_err(|e| format!("demo submission {i}: {e}"))?;
        let written = audit
            .settle(committed, &access)
            .await
            .map_err(|e| format!("demo submission {i}: audit: {e}"))?
            .1;
        // The first prescription of each person gets its first package from the pharmacy.
        if let Some(w) = written
            .iter()
            .find(|w| w.stored.resource_type == "MedicationRequest")
        {
            let vnr = kanta_fhir::prescription::vnr_of(&w.stored.body)
                .unwrap_or_default()
                .to_string();
            let subject = w.stored.body["subject"]["reference"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            dispense_first.push((subject, w.stored.id.clone(), vnr));
        }
    }
    let pharmacy = clients
        .iter()
        .find(|c| c.roles.iter().any(|r| r == "pharmacy"))
        .ok_or("no demo pharmacy")?;
    for (subject, rx, vnr) in dispense_first {
        let md = serde_json::json!({"resourceType": "MedicationDispense", "status": "completed",
            "subject": {"reference": subject},
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{rx}")}],
            "medicationCodeableConcept": {"coding": [{"system": kanta_fhir::codes::VNR_SYSTEM, "code": vnr}]},
            "quantity": {"value": 1, "code": "{package}", "system": "http://unitsofmeasure.org"},
            "whenHandedOver": kanta_fhir::datetime::instant(now)});
        let req = WriteRequest {
            principal: demo_principal(pharmacy),
            org: OrgId::new(&pharmacy.organisation),
            ops: vec![(
                "MedicationDispense".into(),
                None,
                WriteOp::Create {
                    resource: kanta_fhir::check(md).map_err(|e| e.to_string())?,
                    if_none_exist: None,
                },
            )],
            citizen: None,
            centre: Some(centre.clone()),
        };
        // Written, not released (nothing leaves the process).
        let _written = store
            .write(req, now)
            .await
            .map_err(|e| format!("demo dispensation: {e}"))?;
    }
    Ok(())
}

/// The demo's Prescription Centre: the built-in medicines dataset.
pub fn demo_centre() -> Result<kanta_store::centre::Centre, String> {
    Ok(kanta_store::centre::Centre {
        medicines: kanta_domain::medicines::Database::new(vec![kanta_domain::medicines::parse(
            demo::MEDICINES,
        )
        .map_err(|e| format!("the demo medicines: {e}"))?]),
        reservation_ms: kanta_store::centre::DEFAULT_RESERVATION_MS,
        controller: Some("org-kanta-operator".into()),
    })
}

/// A demo client as the access decision sees it when the seed writes its submissions.
fn demo_principal(c: &demo::DemoClient) -> Principal {
    let roles: Vec<ClientRole> = c
        .roles
        .iter()
        .filter_map(|r| ClientRole::parse(r))
        .collect();
    Principal::system(&c.client_id, &OrgId::new(&c.organisation), &roles)
}
