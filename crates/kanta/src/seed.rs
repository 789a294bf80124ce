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

/// The mark of a complete seed: a disabled client record (it can get no token), written last.
const SEEDED_MARK: &str = "kanta-demo-seed-complete";
/// The identifier system of each record the seed writes, so that a seed started again after an
/// interruption finds what it wrote and writes the rest (issue 16).
const SEED_SYSTEM: &str = "urn:kanta:demo-seed";

/// Whether the demo has been seeded into this database, to the end.
pub async fn is_seeded(store: &Arc<dyn Store>) -> Result<bool, String> {
    Ok(store
        .client(SEEDED_MARK)
        .await
        .map_err(|e| e.to_string())?
        .is_some())
}

/// Seed everything; started again after an interruption (a crash, a full disk), it finds what was
/// written — every record it creates carries its own identifier and is created only if none has
/// it — and writes the rest, and only then marks the demo seeded.
pub async fn seed(
    store: &Arc<dyn Store>,
    audit: &kanta_store::audit::AuditLog,
    now: OffsetDateTime,
) -> Result<(), String> {
    seed_until(store, audit, now, None).await
}

/// Give each created record of a submission its own seed identifier and create it only if none
/// has it (a resumed seed matches what an interrupted one wrote).
fn resumable(mut bundle: serde_json::Value, submission: &str) -> serde_json::Value {
    let entries = bundle["entry"].as_array_mut().into_iter().flatten();
    for (j, e) in entries.enumerate() {
        if e["request"]["method"] != "POST" || e["request"].get("ifNoneExist").is_some() {
            continue;
        }
        let value = format!("{submission}.{j}");
        let ident = serde_json::json!({"system": SEED_SYSTEM, "value": value});
        let r = &mut e["resource"];
        let single = r["resourceType"] == "Composition";
        match r.get_mut("identifier") {
            Some(serde_json::Value::Array(a)) => a.push(ident),
            Some(_) => continue,
            None if single => r["identifier"] = ident,
            None => r["identifier"] = serde_json::json!([ident]),
        }
        e["request"]["ifNoneExist"] =
            serde_json::json!(format!("identifier={SEED_SYSTEM}|{value}"));
    }
    bundle
}

/// A resumed seed leaves what an interrupted one wrote under a fixed id as it is (issue 30: each
/// resumption wrote those records again as new versions): such entries are dropped from the
/// Bundle. (Whether one exists is all that is asked; nothing of it is released.)
async fn keep_written_puts(
    store: &Arc<dyn Store>,
    bundle: &mut serde_json::Value,
) -> Result<(), String> {
    let Some(entries) = bundle["entry"].as_array_mut() else {
        return Ok(());
    };
    let mut keep = Vec::with_capacity(entries.len());
    for e in entries.iter() {
        let existing = match (
            e["request"]["method"].as_str(),
            e["request"]["url"].as_str(),
        ) {
            (Some("PUT"), Some(url)) => match url.split_once('/') {
                Some((t, id)) => store
                    .read(t, id)
                    .await
                    .map_err(|err| format!("demo {url}: {err}"))?
                    .judged(|_| true)
                    .len(),
                None => 0,
            },
            _ => 0,
        };
        keep.push(existing == 0);
    }
    let mut k = keep.into_iter();
    entries.retain(|_| k.next().unwrap_or(true));
    Ok(())
}

/// The seed, stopping with an error after `stop_after` steps (a test's interruption).
async fn seed_until(
    store: &Arc<dyn Store>,
    audit: &kanta_store::audit::AuditLog,
    now: OffsetDateTime,
    stop_after: Option<usize>,
) -> Result<(), String> {
    let mut steps = 0usize;
    let mut step = || -> Result<(), String> {
        steps += 1;
        match stop_after {
            Some(n) if steps > n => Err(format!("seed interrupted after {n} steps")),
            _ => Ok(()),
        }
    };
    let today = now.date();
    // Organisations: shared reference data, written by the operator.
    let mut ops = vec![];
    for org in demo::organisations(today) {
        let id = org
            .get("id")
            .and_then(|v| v.as_str())
            .ok_or("a demo Organization lacks an id")?
            .to_string();
        // A resumed seed writes only what the interrupted one did not (issue 30: it rewrote
        // every organisation as a new version).
        if store
            .registry("Organization", &id)
            .await
            .map_err(|e| format!("demo Organization {id}: {e}"))?
            .is_some()
        {
            continue;
        }
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
    step()?;
    // Written, not released: nothing leaves the process, so nothing to audit.
    if !ops.is_empty() {
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
                    organiser: None,
                },
                now,
            )
            .await
            .map_err(|e| format!("seeding organisations: {e}"))?;
    }
    step()?;
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
    step()?;
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
        step()?;
        let client = clients
            .iter()
            .find(|c| c.client_id == sub.client_id)
            .ok_or_else(|| format!("demo submission {i} names unknown client {}", sub.client_id))?;
        let mut bundle = resumable(sub.bundle, &format!("s{i}"));
        keep_written_puts(store, &mut bundle).await?;
        let (mut req, _) = kanta_web::bundle_write_request(demo_principal(client), bundle)
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
    for (k, (subject, rx, vnr)) in dispense_first.into_iter().enumerate() {
        step()?;
        let mark = format!("d{k}");
        let md = serde_json::json!({"resourceType": "MedicationDispense", "status": "completed",
            "identifier": [{"system": SEED_SYSTEM, "value": mark}],
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
                    if_none_exist: Some((SEED_SYSTEM.to_string(), mark)),
                },
            )],
            citizen: None,
            centre: Some(centre.clone()),
            organiser: None,
        };
        // Written, not released (nothing leaves the process).
        let _written = store
            .write(req, now)
            .await
            .map_err(|e| format!("demo dispensation: {e}"))?;
    }
    step()?;
    store
        .upsert_client(
            &ClientRecord {
                client_id: SEEDED_MARK.into(),
                org: OrgId::new(OPERATOR_ORG),
                name: "the demo seed is complete".into(),
                roles: vec![],
                secret_sha256: None,
                jwks: None,
                enabled: false,
                scopes: String::new(),
            },
            now,
        )
        .await
        .map_err(|e| format!("marking the demo seeded: {e}"))?;
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
    as_care_unit(
        Principal::system(&c.client_id, &OrgId::new(&c.organisation), &roles),
        &format!("{}-professional", c.client_id),
    )
}

/// A care unit's client as it records a patient's choices: a named professional, for care, as
/// every system must (R-CONSENT-1); the seed's and the benchmark's writers.
pub(crate) fn as_care_unit(p: Principal, professional: &str) -> Principal {
    match p {
        Principal::Client(mut client) => {
            client.professional = Some(professional.to_string());
            client.purpose = Some("TREAT".into());
            Principal::Client(client)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanta_store::testing::TestDb;
    use kanta_store::Backend;

    /// What a seeded database holds: current records by type, people, clients.
    async fn contents(db: &TestDb) -> Vec<(String, i64)> {
        // Versions too: a resumed seed writes nothing twice, not even as a new version.
        let sql = "SELECT resource_type, count(*) FROM resource GROUP BY resource_type \
                   UNION ALL SELECT 'person', count(*) FROM person \
                   UNION ALL SELECT 'client', count(*) FROM api_client \
                   UNION ALL SELECT 'organisation', count(*) FROM shared_resource \
                   UNION ALL SELECT 'organisation versions', count(*) FROM shared_resource_version \
                   UNION ALL SELECT 'versions', count(*) FROM resource_version ORDER BY 1";
        if db.url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        } else {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }

    fn log(store: &Arc<dyn Store>) -> kanta_store::audit::AuditLog {
        let key = kanta_store::audit::Signer::generate_pkcs8().unwrap();
        kanta_store::audit::AuditLog::start(
            store.clone(),
            kanta_store::audit::AuditConfig {
                max_batch: 1000,
                checkpoint_every: std::time::Duration::from_secs(60),
                signer: kanta_store::audit::Signer::from_pkcs8("seed.test/audit", &key).unwrap(),
                witness_file: None,
                witness_channel: None,
            },
        )
    }

    /// Issue 16: the seed interrupted after any step and started again ends with exactly the demo
    /// a seed never interrupted writes (nothing missing, nothing twice), and only then says it is
    /// seeded; on both backends.
    async fn an_interrupted_seed_resumes_to_the_end(backend: Backend) {
        let now = time::macros::datetime!(2026-12-01 10:00 UTC);
        let whole = TestDb::new(backend).await;
        seed(&whole.store, &log(&whole.store), now).await.unwrap();
        assert!(is_seeded(&whole.store).await.unwrap());
        let want = contents(&whole).await;
        whole.cleanup().await;
        assert!(
            want.iter()
                .any(|(t, n)| t == "MedicationDispense" && *n > 0),
            "{want:?}"
        );
        let steps = 3
            + demo::clinical_submissions(now.date()).len()
            + demo::consent_submissions(now.date()).len()
            + demo::prescription_submissions(now.date()).len();
        for stop in [0, 1, 2, 3, steps / 2, steps - 1, steps + 2] {
            let db = TestDb::new(backend).await;
            let audit = log(&db.store);
            let e = seed_until(&db.store, &audit, now, Some(stop))
                .await
                .unwrap_err();
            assert!(e.contains("interrupted"), "{e}");
            assert!(
                !is_seeded(&db.store).await.unwrap(),
                "not seeded after {stop} steps"
            );
            // Started again, perhaps interrupted again, then to the end.
            let _ = seed_until(&db.store, &audit, now, Some(stop + 2)).await;
            seed(&db.store, &audit, now).await.unwrap();
            assert!(is_seeded(&db.store).await.unwrap());
            assert_eq!(contents(&db).await, want, "interrupted after {stop} steps");
            db.cleanup().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_seed_resumes_to_the_end_sqlite() {
        an_interrupted_seed_resumes_to_the_end(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_seed_resumes_to_the_end_postgres() {
        an_interrupted_seed_resumes_to_the_end(Backend::Postgres).await;
    }
}
