#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `kill -9` during load, many times over, on both backends (R-OPS-3, R-OPS-4): after each restart
//! every response the clients received with personal data has its audit record, every write the
//! database committed has its audit record (acknowledged or not: a write and its record commit
//! together), and the log verifies (`kanta audit verify`).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KANTA: &str = env!("CARGO_BIN_EXE_kanta");

struct Server {
    child: Child,
    base: String,
}

fn start(data_dir: &str, database: Option<&str>) -> Server {
    let mut cmd = Command::new(KANTA);
    cmd.args(["--data-dir", data_dir, "--log-format", "json"]);
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env("RUST_LOG", "info");
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("kanta is listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not start");
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

async fn token(http: &reqwest::Client, base: &str) -> String {
    let v: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth("demo-hus", Some("demo-secret-hus"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn crash_many_times(database: Option<String>, iterations: usize) {
    let dir = std::env::temp_dir().join(format!("kanta-crash-{}", uuid::Uuid::new_v4().simple()));
    let data_dir = dir.to_str().unwrap().to_string();
    let hetu = {
        let out = Command::new(KANTA)
            .args(["demo", "people"])
            .output()
            .unwrap();
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        first["hetu"].as_str().unwrap().to_string()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut loaded_kills = 0usize;
    let mut seq = 0u64;
    for i in 0..iterations {
        let mut server = start(&data_dir, database.as_deref());
        let t = token(&http, &server.base).await;
        let stop_at = Instant::now() + Duration::from_millis(60 + (i as u64 * 37) % 240);
        let mut tasks = vec![];
        for c in 0..4 {
            let (http, base, t, hetu) =
                (http.clone(), server.base.clone(), t.clone(), hetu.clone());
            let start_seq = seq + c * 1_000_000;
            tasks.push(tokio::spawn(async move {
                let mut acked = vec![];
                let mut n = start_seq;
                let mut patient: Option<String> = None;
                while Instant::now() < stop_at + Duration::from_millis(200) {
                    n += 1;
                    let id = format!("crash-{i}-{n}");
                    // One client writes: an Observation of the patient, each its own request.
                    if c == 3 {
                        if let Some(pid) = &patient {
                            let obs = serde_json::json!({"resourceType": "Observation", "status": "final",
                                "code": {"text": format!("crash {id}")}, "subject": {"reference": format!("Patient/{pid}")},
                                "effectiveDateTime": "2026-11-01T10:00:00+02:00", "valueQuantity": {"value": 1, "unit": "x"}});
                            let id = format!("crash-w-{i}-{n}");
                            let r = http
                                .post(format!("{base}/fhir/Observation"))
                                .bearer_auth(&t)
                                .header("x-request-id", &id)
                                .header("content-type", "application/fhir+json")
                                .body(obs.to_string())
                                .send()
                                .await;
                            if matches!(r, Ok(r) if r.status().is_success()) {
                                acked.push(id);
                            }
                            continue;
                        }
                    }
                    let r = http
                        .get(format!(
                            "{base}/fhir/Patient?identifier=urn:oid:1.2.246.21|{hetu}"
                        ))
                        .bearer_auth(&t)
                        .header("x-request-id", &id)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            if let Ok(body) = r.text().await {
                                if body.contains("\"Patient\"") {
                                    acked.push(id);
                                }
                                if patient.is_none() {
                                    patient = serde_json::from_str::<serde_json::Value>(&body)
                                        .ok()
                                        .and_then(|v| v["entry"][0]["resource"]["id"].as_str().map(str::to_string));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                acked
            }));
        }
        tokio::time::sleep_until(stop_at.into()).await;
        server.child.kill().unwrap(); // SIGKILL
        let _ = server.child.wait();
        let before = acknowledged.len();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        if acknowledged.len() > before {
            loaded_kills += 1;
        }
        seq += 10_000_000;
    }
    // Each kill must have hit a server that was answering: one acknowledged response across all
    // the kills would prove little.
    assert!(
        loaded_kills * 4 >= iterations * 3,
        "only {loaded_kills} of {iterations} kills came while responses were being acknowledged"
    );
    // Restart once more, then check the log.
    let mut server = start(&data_dir, database.as_deref());
    let _ = token(&http, &server.base).await;
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let url = database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{data_dir}/kanta.db"));
    let store = kanta_store::connect(&url).await.unwrap();
    let (size, _) = store.audit_head().await.unwrap();
    let records = store.audit_range(0, size).await.unwrap();
    let bodies: Vec<serde_json::Value> = records
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .collect();
    let logged: HashSet<String> = bodies
        .iter()
        .filter_map(|v| v["request_id"].as_str().map(str::to_string))
        .collect();
    // Every Observation the database holds (each written once by the load) was logged as created,
    // exactly once.
    let mut created: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in bodies
        .iter()
        .filter(|v| v["action"] == "create")
        .flat_map(|v| v["entities"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
    {
        *created.entry(e).or_default() += 1;
    }
    let stored: Vec<String> = {
        let sql = "SELECT id FROM resource WHERE resource_type = 'Observation'";
        let ids: Vec<String> = if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let ids = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            ids
        } else {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let ids = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            ids
        };
        ids.into_iter()
            .map(|id| format!("Observation/{id}"))
            .collect()
    };
    let unlogged: Vec<&String> = stored
        .iter()
        .filter(|e| !created.contains_key(*e))
        .collect();
    let twice: Vec<&String> = stored
        .iter()
        .filter(|e| created.get(*e).is_some_and(|n| *n > 1))
        .collect();
    assert!(
        twice.is_empty(),
        "{} Observations logged as created more than once, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    // Nothing is left pending after the restart.
    let pending: i64 = {
        let sql = "SELECT count(*) FROM audit_outbox";
        if url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    };
    assert_eq!(
        pending, 0,
        "audit records left in the outbox after the restart"
    );
    let writes = acknowledged
        .iter()
        .filter(|id| id.starts_with("crash-w-"))
        .count();
    assert!(writes > 0, "the load acknowledged no write");
    assert!(
        unlogged.is_empty(),
        "{} of {} stored Observations have no audit record of their creation, e.g. {:?}",
        unlogged.len(),
        stored.len(),
        unlogged.first()
    );
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !logged.contains(*id))
        .collect();
    assert!(!acknowledged.is_empty(), "the load produced no responses");
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged responses have no audit record, e.g. {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
    let mut verify = Command::new(KANTA);
    verify.args(["--data-dir", &data_dir]);
    if let Some(db) = &database {
        verify.args(["--database", db]);
    }
    let out = verify.args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!(
        "{} kills; {} acknowledged responses ({} writes), all in the log; {} stored Observations ({} beyond the acknowledged writes: the demo's and those a kill cut off), each logged as created once; {}",
        iterations,
        acknowledged.len(),
        writes,
        stored.len(),
        stored.len().saturating_sub(writes),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_sqlite() {
    crash_many_times(None, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_load_postgres() {
    let db = kanta_store::testing::TestDb::new(kanta_store::Backend::Postgres).await;
    // The server runs as the production's least-privilege role, as in production.
    let url = db.app_url.clone();
    crash_many_times(Some(url), 50).await;
    db.cleanup().await;
}
