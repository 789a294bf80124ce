//! `kanta bench`: throughput and latency of the platform's main paths, each reported as a ratio to
//! the raw database doing the same work in the same run (JSON lines on stdout).
//!
//! Workloads:
//! - `ingest`: providers POST transaction Bundles of one visit (a conditional Patient, an Encounter
//!   and 8 Observations, written out before the run for up to 2,000 patients) over HTTP with a
//!   bearer token. Floor: the same 10 JSON documents inserted in one database transaction into an
//!   indexed table.
//! - `read_latest_20`: `GET /fhir/Observation?patient=…&_count=20` for a random patient. Floor: the
//!   same `SELECT … ORDER BY date DESC LIMIT 20` on a copy of the same rows.
//!
//! The dataset has `--patients` patients with a skewed (Zipf-like) number of records: patient of
//! rank i has about 3000/i Observations, at least 5, so a few have thousands.

use crate::seed::OPERATOR_ORG;
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::OrgId;
use kanta_fhir::check;
use kanta_store::{ClientRecord, Store, WriteOp, WriteRequest};
use kanta_web::{AppState, Clock, WebConfig};
use serde_json::{json, Value};
use sqlx::Row as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Patients in the dataset.
    #[arg(long, default_value_t = 10_000)]
    patients: usize,
    /// Seconds per workload run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A PostgreSQL server URL (e.g. postgres://postgres@127.0.0.1/postgres): the benchmark creates a
    /// fresh database there, runs, and drops it. Without it only SQLite runs.
    #[arg(long, env = "KANTA_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Skip SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// Concurrent requests committing audit records in the audit workload.
    #[arg(long, default_value_t = 64)]
    audit_clients: usize,
    /// Run only these workload groups (comma-separated: ingest, reads, pharmacy, visits, acting,
    /// disclosure, audit), e.g. to profile one of them alone. Default: all.
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(GROUPS))]
    only: Vec<String>,
}

/// The workload groups `--only` can pick.
const GROUPS: [&str; 7] = [
    "ingest",
    "reads",
    "pharmacy",
    "visits",
    "acting",
    "disclosure",
    "audit",
];

impl BenchArgs {
    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

const SECRET: &str = "bench-secret";
/// Records (visits and their care documents) of the patients whose visits page is measured.
const PAGE_PATIENTS: [usize; 3] = [20, 500, 5_000];
const CLIENT: &str = "bench-clinician";

pub async fn run(args: BenchArgs, _database: String, data_dir: PathBuf) -> Result<(), String> {
    if !args.no_sqlite {
        let dir = data_dir.join(format!("bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let url = crate::config::sqlite_url(&dir);
        let result = bench_backend(&args, &url, "sqlite").await;
        let _ = std::fs::remove_dir_all(&dir);
        result?;
    }
    if let Some(server) = &args.postgres {
        let name = format!("kanta_bench_{}", std::process::id());
        let admin = sqlx::PgPool::connect(server)
            .await
            .map_err(|e| format!("postgres: {e}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .map_err(|e| e.to_string())?;
        let url = kanta_store::testing::with_database(server, &name);
        let result = bench_backend(&args, &url, "postgres").await;
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        result?;
    }
    Ok(())
}

fn hetu_for(i: usize) -> Result<Hetu, String> {
    // Test-range HETUs (individual numbers 900-999), spread over birth dates.
    let day = time::Date::from_calendar_date(1940, time::Month::January, 1)
        .map_err(|e| e.to_string())?
        + time::Duration::days((i / 100) as i64);
    let sign = if day.year() >= 2000 { 'A' } else { '-' };
    Hetu::from_parts(day, sign, 900 + (i % 100) as u16).map_err(|e| e.to_string())
}

/// A confirmed portal session for the benchmark; the cookie to send.
async fn bench_session(
    store: &dyn Store,
    id: &str,
    key: kanta_domain::ids::PatientKey,
    hetu: &Hetu,
    acting_for: Option<kanta_store::ActingFor>,
) -> Result<String, String> {
    let now_ms = kanta_fhir::datetime::millis(Clock::System.now());
    store
        .session_insert(&kanta_store::SessionRow {
            id_hash: kanta_web::portal::session::hash(id),
            patient_key: key,
            hetu: hetu.clone(),
            display_name: "Bench Test".into(),
            acting_for,
            csrf_token: "bench".into(),
            created_at: now_ms,
            last_active_at: now_ms,
            absolute_expiry: now_ms + 3_600_000,
            confirmed: true,
            idp_issuer: "bench".into(),
            idp_sub: id.to_string(),
            idp_sid: None,
            id_token: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("kanta_session={id}"))
}

/// The visits page under load for one session: one look first (a broken set-up fails loudly),
/// then `clients` loops for `seconds`.
async fn visits_page_load(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    args: &BenchArgs,
) -> Result<Run, String> {
    let probe = http
        .get(format!("{base}/visits"))
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = probe.status();
    let text = probe.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() || !text.contains("class=\"visit\"") {
        return Err(format!(
            "the visits page answered {status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    let (http, base, cookie) = (http.clone(), base.to_string(), cookie.to_string());
    Ok(drive(args.clients, args.seconds, move |_, _| {
        let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
        async move {
            match http
                .get(format!("{base}/visits"))
                .header("cookie", cookie)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    r.text().await.is_ok_and(|t| t.contains("class=\"visit\""))
                }
                _ => false,
            }
        }
    })
    .await)
}

fn records_for(rank: usize) -> usize {
    (3000 / (rank + 1)).max(5)
}

fn visit_bundle(hetu: &str, day: i64, observations: usize, seq: usize) -> Value {
    let mut entries = vec![
        json!({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}], "name": [{"family": "Bench", "given": ["Test"]}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}}),
        json!({"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002", "resource": {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
            "period": {"start": date(day)}, "serviceProvider": {"reference": "Organization/org-bench"}},
            "request": {"method": "POST", "url": "Encounter"}}),
    ];
    for k in 0..observations {
        entries.push(json!({"fullUrl": format!("urn:uuid:00000000-0000-4000-8001-{:012}", k), "resource": {
            "resourceType": "Observation", "status": "final",
            "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}, {"system": "urn:oid:1.2.246.537.5.40150", "code": "2"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "B -Hb"}], "text": "B -Hb"},
            "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
            "encounter": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"},
            "effectiveDateTime": format!("{}T{:02}:{:02}:00Z", date(day), 8 + k % 10, seq % 60),
            "valueQuantity": {"value": 120 + (seq + k) % 50, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"},
            "referenceRange": [{"low": {"value": 117, "unit": "g/L"}, "high": {"value": 155, "unit": "g/L"}}]},
            "request": {"method": "POST", "url": "Observation"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn date(day: i64) -> String {
    let d = time::Date::from_calendar_date(2010, time::Month::January, 1)
        .unwrap_or(time::Date::MIN)
        + time::Duration::days(day.rem_euclid(5000));
    kanta_fhir::datetime::format_date(d)
}

/// A fast deterministic generator (xorshift) so runs pick the same patients.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

struct Run {
    ops: usize,
    errors: usize,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// One line on stderr as each workload starts (the results are the JSON lines on stdout).
fn progress(backend: &str, workload: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "kanta bench: {backend}: {workload}…");
}

/// Run `f` from `clients` tasks for `seconds`, counting successes and latencies.
async fn drive<F, Fut>(clients: usize, seconds: u64, f: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut handles = vec![];
    for c in 0..clients {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let (mut ops, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if f(c, i).await {
                    ops += 1;
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (ops, errors, lat)
        }));
    }
    let mut run = Run {
        ops: 0,
        errors: 0,
        secs: 0.0,
        latencies: vec![],
    };
    for h in handles {
        if let Ok((o, e, l)) = h.await {
            run.ops += o;
            run.errors += e;
            run.latencies.extend(l);
        }
    }
    run.secs = start.elapsed().as_secs_f64();
    run
}

enum Floor {
    Sqlite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

impl Floor {
    async fn connect(url: &str) -> Result<Floor, String> {
        if url.starts_with("sqlite:") {
            let opts: sqlx::sqlite::SqliteConnectOptions =
                url.parse().map_err(|e: sqlx::Error| e.to_string())?;
            let opts = opts
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30));
            // One connection, like the store's single writer: SQLite serialises writers anyway.
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(1)
                .connect_with(opts)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Floor::Sqlite(pool))
        } else {
            // The store's pool options (no ping before each statement): like for like.
            Ok(Floor::Pg(
                kanta_store::pg_pool_options()
                    .max_connections(16)
                    .connect(url)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        }
    }

    async fn setup(&self) -> Result<(), String> {
        let stmts: [&str; 3] = match self {
            Floor::Sqlite(_) => [
                "CREATE TABLE floor_doc (id INTEGER PRIMARY KEY, patient_id BIGINT NOT NULL, ts BIGINT NOT NULL, type_code TEXT NOT NULL, body TEXT NOT NULL)",
                "CREATE INDEX floor_doc_patient_ts ON floor_doc (patient_id, ts DESC)",
                "CREATE TABLE floor_audit (id INTEGER PRIMARY KEY, at BIGINT NOT NULL DEFAULT 0, actor TEXT NOT NULL, patient_id BIGINT, action TEXT NOT NULL, n INT)",
            ],
            Floor::Pg(_) => [
                "CREATE TABLE floor_doc (id BIGSERIAL PRIMARY KEY, patient_id BIGINT NOT NULL, ts BIGINT NOT NULL, type_code TEXT NOT NULL, body TEXT NOT NULL)",
                "CREATE INDEX floor_doc_patient_ts ON floor_doc (patient_id, ts DESC)",
                "CREATE TABLE floor_audit (id BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(), actor TEXT NOT NULL, patient_id BIGINT, action TEXT NOT NULL, n INT)",
            ],
        };
        for s in stmts {
            self.exec(s).await?;
        }
        Ok(())
    }

    async fn exec(&self, sql: &str) -> Result<(), String> {
        match self {
            Floor::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Floor::Pg(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .map_err(|e| e.to_string())
    }

    /// Let the database catch up after a burst of writes, so that the next run does not pay for the
    /// last one: on PostgreSQL a checkpoint (the dirty pages written out) and `VACUUM ANALYZE`
    /// (dead tuples gone, statistics fresh); on SQLite the WAL checkpointed into the file. Reads
    /// measured right after ingest ran at a fifth of their rate. Best effort: a refusal (no right to
    /// CHECKPOINT, say) is reported and the run goes on.
    async fn settle(&self) {
        let stmts: &[&str] = match self {
            Floor::Sqlite(_) => &["PRAGMA wal_checkpoint(TRUNCATE)"],
            Floor::Pg(_) => &["CHECKPOINT", "VACUUM ANALYZE"],
        };
        for sql in stmts {
            if let Err(e) = self.exec(sql).await {
                eprintln!("kanta bench: {sql} before the next run failed (measured anyway): {e}");
            }
        }
    }

    /// One transaction inserting `docs` documents (the floor of a Bundle write).
    async fn insert(&self, patient: i64, docs: &[String]) -> bool {
        macro_rules! go {
            ($p:expr) => {{
                let Ok(mut tx) = $p.begin().await else { return false };
                for (k, d) in docs.iter().enumerate() {
                    let r = sqlx::query("INSERT INTO floor_doc (patient_id, ts, type_code, body) VALUES ($1, $2, 'Observation', $3)")
                        .bind(patient)
                        .bind(k as i64)
                        .bind(d)
                        .execute(&mut *tx)
                        .await;
                    if r.is_err() {
                        return false;
                    }
                }
                tx.commit().await.is_ok()
            }};
        }
        match self {
            Floor::Sqlite(p) => go!(p),
            Floor::Pg(p) => go!(p),
        }
    }

    /// The bodies are stored and come back as text on both backends, as the server stores and
    /// returns them (issue 15: the floor's column type is the store's, so the ratio is like for like).
    async fn latest20(&self, patient: i64) -> bool {
        let sql = match self {
            Floor::Sqlite(_) => {
                "SELECT id, body FROM floor_doc WHERE patient_id = $1 ORDER BY ts DESC LIMIT 20"
            }
            Floor::Pg(_) => {
                "SELECT id, body FROM floor_doc WHERE patient_id = $1 ORDER BY ts DESC LIMIT 20"
            }
        };
        match self {
            Floor::Sqlite(p) => sqlx::query(sql)
                .bind(patient)
                .fetch_all(p)
                .await
                .map(|rows| rows.iter().all(|r| r.try_get::<String, _>(1).is_ok()))
                .unwrap_or(false),
            Floor::Pg(p) => sqlx::query(sql)
                .bind(patient)
                .fetch_all(p)
                .await
                .map(|rows| rows.iter().all(|r| r.try_get::<String, _>(1).is_ok()))
                .unwrap_or(false),
        }
    }

    /// The naive audited read: the same read and one audit row, committed per request.
    async fn latest20_audited(&self, patient: i64) -> bool {
        macro_rules! go {
            ($p:expr, $t:ty, $sql:literal) => {{
                let Ok(mut tx) = $p.begin().await else { return false };
                let rows = sqlx::query($sql)
                    .bind(patient)
                    .fetch_all(&mut *tx)
                    .await;
                let Ok(rows) = rows else { return false };
                if !rows.iter().all(|r| r.try_get::<$t, _>(1).is_ok()) {
                    return false;
                }
                let ins = sqlx::query("INSERT INTO floor_audit (actor, patient_id, action, n) VALUES ('citizen', $1, 'read', 20)")
                    .bind(patient)
                    .execute(&mut *tx)
                    .await;
                ins.is_ok() && tx.commit().await.is_ok()
            }};
        }
        match self {
            Floor::Sqlite(p) => go!(
                p,
                String,
                "SELECT id, body FROM floor_doc WHERE patient_id = $1 ORDER BY ts DESC LIMIT 20"
            ),
            Floor::Pg(p) => go!(
                p,
                String,
                "SELECT id, body FROM floor_doc WHERE patient_id = $1 ORDER BY ts DESC LIMIT 20"
            ),
        }
    }

    /// One audit row, one commit (what group commit is measured against).
    async fn audit_row(&self, patient: i64) -> bool {
        let sql = "INSERT INTO floor_audit (actor, patient_id, action, n) VALUES ('org:1/client:2', $1, 'read', 1)";
        match self {
            Floor::Sqlite(p) => sqlx::query(sql).bind(patient).execute(p).await.is_ok(),
            Floor::Pg(p) => sqlx::query(sql).bind(patient).execute(p).await.is_ok(),
        }
    }

    /// The prescriptions as rows of their own (the floor of the Prescription Centre): each with
    /// its total and what was dispensed, and a table of dispensations.
    async fn pharmacy_setup(&self) -> Result<(), String> {
        let (rx, md) = match self {
            Floor::Sqlite(_) => (
                "CREATE TABLE floor_rx (id TEXT PRIMARY KEY, patient_id BIGINT NOT NULL, total BIGINT NOT NULL, dispensed BIGINT NOT NULL, body TEXT NOT NULL)",
                "CREATE TABLE floor_dispense (id INTEGER PRIMARY KEY, rx_id TEXT NOT NULL, amount BIGINT NOT NULL, body TEXT NOT NULL)",
            ),
            Floor::Pg(_) => (
                "CREATE TABLE floor_rx (id TEXT PRIMARY KEY, patient_id BIGINT NOT NULL, total BIGINT NOT NULL, dispensed BIGINT NOT NULL, body TEXT NOT NULL)",
                "CREATE TABLE floor_dispense (id BIGSERIAL PRIMARY KEY, rx_id TEXT NOT NULL, amount BIGINT NOT NULL, body TEXT NOT NULL)",
            ),
        };
        self.exec(rx).await?;
        self.exec(md).await?;
        self.exec("CREATE INDEX floor_rx_patient ON floor_rx (patient_id)")
            .await?;
        self.exec("INSERT INTO floor_rx (id, patient_id, total, dispensed, body) SELECT id, patient_key, 30000000, 0, body FROM resource WHERE resource_type = 'MedicationRequest'")
            .await
    }

    async fn prescription_patients(&self) -> Result<Vec<i64>, String> {
        let sql = "SELECT DISTINCT patient_id FROM floor_rx";
        match self {
            Floor::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Floor::Pg(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .map_err(|e| e.to_string())
    }

    async fn prescription_of(&self, id: &str) -> Result<String, String> {
        let sql = "SELECT id FROM floor_rx WHERE id = $1";
        match self {
            Floor::Sqlite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await,
            Floor::Pg(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await,
        }
        .map_err(|e| e.to_string())
    }

    /// The patient's prescriptions (bodies as text), then a dispensation of the first.
    async fn look_up_and_dispense(&self, patient: i64) -> bool {
        let first: Option<String> = match self {
            Floor::Sqlite(p) => {
                sqlx::query("SELECT id, body FROM floor_rx WHERE patient_id = $1 LIMIT 20")
                    .bind(patient)
                    .fetch_all(p)
                    .await
                    .ok()
                    .and_then(|rows| rows.first().and_then(|r| r.try_get::<String, _>(0).ok()))
            }
            Floor::Pg(p) => {
                sqlx::query("SELECT id, body FROM floor_rx WHERE patient_id = $1 LIMIT 20")
                    .bind(patient)
                    .fetch_all(p)
                    .await
                    .ok()
                    .and_then(|rows| rows.first().and_then(|r| r.try_get::<String, _>(0).ok()))
            }
        };
        match first {
            Some(id) => self.dispense(&id).await,
            None => false,
        }
    }

    /// One dispensation of a package: lock the prescription, check what remains, insert, update.
    async fn dispense(&self, id: &str) -> bool {
        macro_rules! go {
            ($p:expr, $lock:literal) => {{
                let Ok(mut tx) = $p.begin().await else {
                    return false;
                };
                let row: Result<(i64, i64), _> = sqlx::query_as(concat!(
                    "SELECT total, dispensed FROM floor_rx WHERE id = $1",
                    $lock
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await;
                let Ok((total, dispensed)) = row else {
                    return false;
                };
                if dispensed + 30 > total {
                    return false;
                }
                let ins = sqlx::query(
                    "INSERT INTO floor_dispense (rx_id, amount, body) VALUES ($1, 30, $2)",
                )
                .bind(id)
                .bind(r#"{"resourceType":"MedicationDispense","status":"completed"}"#)
                .execute(&mut *tx)
                .await;
                let upd =
                    sqlx::query("UPDATE floor_rx SET dispensed = dispensed + 30 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await;
                ins.is_ok() && upd.is_ok() && tx.commit().await.is_ok()
            }};
        }
        match self {
            Floor::Sqlite(p) => go!(p, ""),
            Floor::Pg(p) => go!(p, " FOR UPDATE"),
        }
    }

    async fn patient_keys(&self) -> Result<Vec<i64>, String> {
        let sql = "SELECT DISTINCT patient_id FROM floor_doc";
        match self {
            Floor::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Floor::Pg(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .map_err(|e| e.to_string())
    }
}

/// The benchmark's provider system, as the access decision sees it.
fn bench_writer() -> kanta_domain::access::Principal {
    kanta_domain::access::Principal::system(
        CLIENT,
        &OrgId::new("org-bench"),
        &[kanta_domain::ids::ClientRole::Clinician],
    )
}

/// The benchmark's writers as care units recording a patient's choice.
fn recording(p: kanta_domain::access::Principal) -> kanta_domain::access::Principal {
    crate::seed::as_care_unit(p, "bench-professional")
}

/// The registry's Organizations for the benchmark, written by the operator.
async fn put_organisations(
    store: &Arc<dyn Store>,
    orgs: &[(&str, &str)],
    now: time::OffsetDateTime,
) -> Result<(), String> {
    let mut ops = vec![];
    for (id, name) in orgs {
        let org = json!({"resourceType": "Organization", "id": id, "name": name});
        ops.push((
            format!("Organization/{id}"),
            None,
            WriteOp::Update {
                resource: check(org).map_err(|e| e.to_string())?,
                id: id.to_string(),
                if_match: None,
            },
        ));
    }
    // Written, not released: nothing leaves the process, so nothing to audit.
    let _stored = store
        .write(
            WriteRequest {
                principal: kanta_domain::access::Principal::system(
                    "bench",
                    &OrgId::new(OPERATOR_ORG),
                    &[kanta_domain::ids::ClientRole::Operator],
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
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn bench_backend(args: &BenchArgs, url: &str, backend: &str) -> Result<(), String> {
    let store: Arc<dyn Store> = kanta_store::connect(url).await.map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let now = Clock::System.now();
    put_organisations(&store, &[("org-bench", "Benchmark Health")], now).await?;
    bench_client(store.as_ref(), CLIENT, "org-bench", "clinician", now).await?;

    // Load the dataset through the store's write path, 4 writers at a time.
    let load_start = Instant::now();
    let hetus: Vec<String> = (0..args.patients)
        .map(|i| hetu_for(i).map(|h| h.as_str().to_string()))
        .collect::<Result<_, _>>()?;
    let mut total_records = 0usize;
    let mut jobs = vec![];
    for (rank, h) in hetus.iter().enumerate() {
        let mut left = records_for(rank);
        total_records += left;
        let mut seq = 0;
        while left > 0 {
            let n = left.min(50);
            jobs.push(visit_bundle(h, (rank * 7 + seq * 13) as i64, n, seq));
            left -= n;
            seq += 1;
        }
    }
    // The visits-page patients: one visit and four care documents per bundle (five records).
    let page_hetus: Vec<String> = (0..PAGE_PATIENTS.len())
        .map(|k| hetu_for(args.patients + k).map(|h| h.as_str().to_string()))
        .collect::<Result<_, _>>()?;
    for (h, records) in page_hetus.iter().zip(PAGE_PATIENTS) {
        total_records += records;
        for seq in 0..records / 5 {
            jobs.push(visit_bundle(h, seq as i64, 4, seq));
        }
    }
    let jobs = Arc::new(std::sync::Mutex::new(jobs));
    let mut loaders = vec![];
    for _ in 0..4 {
        let (store, jobs) = (store.clone(), jobs.clone());
        loaders.push(tokio::spawn(async move {
            loop {
                let job = jobs.lock().map(|mut j| j.pop()).unwrap_or(None);
                let Some(b) = job else {
                    return Ok::<(), String>(());
                };
                let (req, _) = kanta_web::bundle_write_request(bench_writer(), b)
                    .map_err(|e| e.to_string())?;
                // Written, not released: nothing leaves the process, so nothing to audit.
                let _stored = store.write(req, now).await.map_err(|e| e.to_string())?;
            }
        }));
    }
    for l in loaders {
        l.await.map_err(|e| e.to_string())??;
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    // A live database has planner statistics (autovacuum's ANALYZE); a freshly bulk-loaded one
    // does not yet, and PostgreSQL would plan the per-patient queries as if the tables were empty.
    if backend == "postgres" {
        let pool = sqlx::PgPool::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("ANALYZE")
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close().await;
    }
    emit!(
        "{}",
        json!({"phase": "load", "backend": backend, "patients": args.patients, "observations": total_records, "seconds": round(load_secs)})
    );

    // The visits-page patients received the information notice in care (R-INFO-1: otherwise their
    // pages would wait for it).
    for h in &page_hetus {
        let notice = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Consent", "status": "active",
                "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "urn:kanta:cs:consent-kind", "code": "information-notice"}]}],
                "patient": {"reference": format!("Patient?identifier=urn:oid:1.2.246.21|{h}")},
                "dateTime": "2026-01-01T10:00:00+02:00",
                "performer": [{"identifier": {"system": "urn:oid:1.2.246.21", "value": h}}]},
             "request": {"method": "POST", "url": "Consent"}}]});
        let (req, _) = kanta_web::bundle_write_request(recording(bench_writer()), notice)
            .map_err(|e| e.to_string())?;
        // Written, not released: nothing leaves the process, so nothing to audit.
        let _stored = store.write(req, now).await.map_err(|e| e.to_string())?;
    }

    // The server, on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    let config = WebConfig {
        public_url: base.clone(),
        max_body_bytes: 8 << 20,
        demo: false,
        limits: kanta_web::Limits::default(),
    };
    let audit_key = kanta_store::audit::Signer::generate_pkcs8()?;
    let signer = kanta_store::audit::Signer::from_pkcs8("bench/audit", &audit_key)?;
    let audit = kanta_store::audit::AuditLog::start(
        store.clone(),
        kanta_store::audit::AuditConfig {
            max_batch: 1000,
            checkpoint_every: Duration::from_secs(1),
            signer,
            witness_file: None,
            witness_channel: None,
        },
    );
    // The built-in mandate registry, spoken to over HTTP by the production client (the proxy's
    // visits page below); the answer cached for the default re-check interval.
    let mandates = Arc::new(kanta_web::portal::test_mandates::TestMandates::new());
    let mut portal = kanta_web::portal::Portal::new(store.clone(), &base);
    {
        let b = format!("{base}{}", kanta_web::portal::test_mandates::PREFIX);
        portal.mandates = Some(Arc::new(kanta_web::portal::mandates::HttpMandates::new(
            kanta_web::portal::mandates::MandateConfig {
                base_url: b.clone(),
                browser_url: b,
                client_id: mandates.client_id.clone(),
                api_key: mandates.api_key.clone(),
                oauth_password: mandates.oauth_password.clone(),
                rest_api_key: mandates.rest_api_key.clone(),
                timeout: Duration::from_secs(5),
            },
            Clock::System,
        )));
        portal.test_mandates = Some(mandates.clone());
    }
    let state = AppState::new(
        store.clone(),
        audit,
        config,
        Clock::System,
        b"bench-token-secret-bench-token-secret",
    )
    .with_portal(portal)
    .with_centre(crate::seed::demo_centre()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kanta_web::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .build()
        .map_err(|e| e.to_string())?;
    let bearer = bearer_for(&http, &base, CLIENT).await?;

    // Patient ids for reads.
    let mut patient_ids = vec![];
    for h in hetus.iter().step_by((hetus.len() / 2000).max(1)) {
        let r: Value = http
            .get(format!(
                "{base}/fhir/Patient?identifier=urn:oid:1.2.246.21|{h}"
            ))
            .header("authorization", &bearer)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(id) = r["entry"][0]["resource"]["id"].as_str() {
            patient_ids.push(id.to_string());
        }
    }
    let patient_ids = Arc::new(patient_ids);
    let hetus = Arc::new(hetus);

    // The floor: the raw database doing the same work on the same rows.
    let floor = Arc::new(Floor::connect(url).await?);
    floor.setup().await?;
    floor
        .exec("INSERT INTO floor_doc (patient_id, ts, type_code, body) SELECT patient_key, effective_at, resource_type, body FROM resource WHERE resource_type = 'Observation'")
        .await?;
    let keys = Arc::new(floor.patient_keys().await?);
    let sample_doc = visit_bundle(&hetus[0], 0, 8, 0)["entry"][2]["resource"].to_string();
    let docs: Arc<Vec<String>> = Arc::new(vec![sample_doc; 10]);
    if args.runs("ingest") {
        progress(backend, "ingest");
        // W1: ingest.
        // The Bundles are written out before the clock starts, as the floor's documents are: the
        // run measures the server, not the client building JSON (that was 4% of the CPU).
        let bundles: Arc<Vec<String>> = Arc::new(
            hetus
                .iter()
                .step_by((hetus.len() / 2000).max(1))
                .enumerate()
                .map(|(k, h)| visit_bundle(h, (k * 3) as i64, 8, k).to_string())
                .collect(),
        );
        let ingest = {
            let (http, bearer, base, bundles) =
                (http.clone(), bearer.clone(), base.clone(), bundles.clone());
            drive(args.clients, args.seconds, move |c, i| {
                let (http, bearer, base, bundles) =
                    (http.clone(), bearer.clone(), base.clone(), bundles.clone());
                async move {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64) << 32 | i));
                    let body = bundles[rng.below(bundles.len())].clone();
                    http.post(format!("{base}/fhir"))
                        .header("authorization", &bearer)
                        .header("content-type", "application/fhir+json")
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                }
            })
            .await
        };
        floor.settle().await;
        let floor_ingest = {
            let (floor, docs) = (floor.clone(), docs.clone());
            drive(args.clients, args.seconds, move |c, i| {
                let (floor, docs) = (floor.clone(), docs.clone());
                async move { floor.insert(((c as i64) << 40) | i as i64, &docs).await }
            })
            .await
        };
        report(
            "ingest_transaction_bundle",
            backend,
            args,
            ingest,
            floor_ingest,
        );
        floor.settle().await;
    }
    if args.runs("reads") {
        progress(backend, "read_latest_20");
        // W2: the latest 20 Observations of a patient.
        let reads = {
            let (http, bearer, base, ids) = (
                http.clone(),
                bearer.clone(),
                base.clone(),
                patient_ids.clone(),
            );
            drive(args.clients, args.seconds, move |c, i| {
                let (http, bearer, base, ids) =
                    (http.clone(), bearer.clone(), base.clone(), ids.clone());
                async move {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((c as u64) << 32 | i));
                    let id = &ids[rng.below(ids.len())];
                    match http
                        .get(format!(
                            "{base}/fhir/Observation?patient=Patient/{id}&_count=20"
                        ))
                        .header("authorization", &bearer)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            })
            .await
        };

        let floor_reads = {
            let (floor, keys) = (floor.clone(), keys.clone());
            drive(args.clients, args.seconds, move |c, i| {
                let (floor, keys) = (floor.clone(), keys.clone());
                async move {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((c as u64) << 32 | i));
                    floor.latest20(keys[rng.below(keys.len())]).await
                }
            })
            .await
        };
        let floor_reads_audited = {
            let (floor, keys) = (floor.clone(), keys.clone());
            drive(args.clients, args.seconds, move |c, i| {
                let (floor, keys) = (floor.clone(), keys.clone());
                async move {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((c as u64) << 32 | i));
                    floor.latest20_audited(keys[rng.below(keys.len())]).await
                }
            })
            .await
        };
        let naive_audited = floor_reads_audited.per_sec();
        let mut reads = reads;
        emit!(
            "{}",
            json!({"workload": "read_latest_20_vs_naive_audited_floor", "backend": backend, "clients": args.clients,
                   "ops_per_s": round(reads.per_sec()), "naive_audited_floor_ops_per_s": round(naive_audited),
                   "ratio": round(if naive_audited > 0.0 { reads.per_sec() / naive_audited } else { 0.0 }), "p99_ms": round(reads.pct(0.99))})
        );
        report("read_latest_20", backend, args, reads, floor_reads);
    }
    if args.runs("pharmacy") {
        progress(backend, "pharmacy");
        bench_pharmacy(
            args,
            backend,
            &store,
            &http,
            &base,
            &bearer,
            &floor,
            &patient_ids,
            now,
        )
        .await?;
    }

    if args.runs("visits") {
        progress(backend, "visits_page");
        // W2b: "open my visits page" (issue 4): a signed-in citizen's /visits — session check, the
        // display rules, two audited releases, HTML — for patients with 20, 500 and 5,000 records,
        // against the floor of the latest 20 rows plus one audit insert for the same patient.
        let mut p99s = vec![];
        for (h, records) in page_hetus.iter().zip(PAGE_PATIENTS) {
            let hetu = Hetu::parse(h).map_err(|e| e.to_string())?;
            let key = store
                .patient_key_for_hetu(&hetu)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("a page patient was not loaded")?;
            let cookie = bench_session(
                &*store,
                &format!("bench-session-{records}"),
                key,
                &hetu,
                None,
            )
            .await?;
            let mut page = visits_page_load(&http, &base, &cookie, args).await?;
            let floor_page = {
                let floor = floor.clone();
                drive(args.clients, args.seconds, move |_, _| {
                    let floor = floor.clone();
                    async move { floor.latest20_audited(key.0).await }
                })
                .await
            };
            let mut floor_page = floor_page;
            let ratio = if floor_page.per_sec() > 0.0 {
                page.per_sec() / floor_page.per_sec()
            } else {
                0.0
            };
            let p99 = page.pct(0.99);
            p99s.push(p99);
            emit!(
                "{}",
                json!({"workload": "visits_page", "backend": backend, "records": records, "clients": args.clients,
                       "ops": page.ops, "errors": page.errors, "ops_per_s": round(page.per_sec()),
                       "p50_ms": round(page.pct(0.5)), "p99_ms": round(p99),
                       "floor_ops_per_s": round(floor_page.per_sec()), "floor_p99_ms": round(floor_page.pct(0.99)),
                       "ratio": round(ratio)})
            );
        }
        if let (Some(first), Some(last)) = (p99s.first(), p99s.last()) {
            emit!(
                "{}",
                json!({"workload": "visits_page_p99_5000_vs_20", "backend": backend,
                       "ratio": round(if *first > 0.0 { last / first } else { 0.0 })})
            );
        }
    }
    if args.runs("acting") {
        progress(backend, "visits_page_acting");
        // W2c: acting for others (issue 11): a guardian opens the child's visits page, a proxy the
        // principal's, each against the citizen's own page of the same patient in the same run.
        {
            let now = Clock::System.now();
            let today = now.date();
            let guardian = hetu_for(args.patients + 10)?;
            let delegate = hetu_for(args.patients + 11)?;
            let child = Hetu::parse(&page_hetus[1]).map_err(|e| e.to_string())?;
            let principal = Hetu::parse(&page_hetus[0]).map_err(|e| e.to_string())?;
            let person =
                |h: &Hetu, born: time::Date, relations| kanta_domain::population::PersonRecord {
                    person: kanta_domain::population::Person {
                        hetu: h.clone(),
                        family_name: "Bench".into(),
                        given_names: "Test".into(),
                        birth_date: born,
                        deceased: None,
                        non_disclosure: false,
                    },
                    relations,
                };
            // The register says the 500-record patient is a child (17: every visit, from 2010, was
            // before 10) with a guardian; the 20-record patient is an adult who gave a mandate.
            let child_born = today - Duration::from_secs(17 * 366 * 86_400);
            store
                .import_population(
                    &[
                        person(
                            &child,
                            child_born,
                            vec![kanta_domain::population::Relation {
                                kind: kanta_domain::population::RelationKind::Guardian,
                                subject: child.clone(),
                                holder: guardian.clone(),
                                start: None,
                                end: None,
                                custody: None,
                            }],
                        ),
                        person(
                            &guardian,
                            today - Duration::from_secs(45 * 366 * 86_400),
                            vec![],
                        ),
                        person(&principal, principal.birth_date(), vec![]),
                        person(
                            &delegate,
                            today - Duration::from_secs(50 * 366 * 86_400),
                            vec![],
                        ),
                    ],
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            let now_ms = kanta_fhir::datetime::millis(now);
            mandates.give(kanta_domain::acting::Mandate {
                id: "bench".into(),
                principal: principal.clone(),
                delegate: delegate.clone(),
                issue: kanta_domain::acting::HEALTH_CARE_ISSUE.into(),
                valid_from: now_ms - 60_000,
                valid_to: now_ms + 86_400_000,
                revoked_at: None,
                given_at: kanta_domain::acting::GivenAt::Online,
            });
            for (workload, subject, actor, via) in [
                (
                    "visits_page_guardian_vs_own",
                    &child,
                    &guardian,
                    kanta_store::ActingVia::Guardian,
                ),
                (
                    "visits_page_proxy_vs_own",
                    &principal,
                    &delegate,
                    kanta_store::ActingVia::Mandate,
                ),
            ] {
                let subject_key = store
                    .patient_key_for_hetu(subject)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("a page patient was not loaded")?;
                let actor_key = store
                    .claim_patient_key(actor, now)
                    .await
                    .map_err(|e| e.to_string())?;
                let own = bench_session(
                    &*store,
                    &format!("{workload}-own"),
                    subject_key,
                    subject,
                    None,
                )
                .await?;
                let acting = bench_session(
                    &*store,
                    &format!("{workload}-acting"),
                    actor_key,
                    actor,
                    Some(kanta_store::ActingFor {
                        key: subject_key,
                        hetu: subject.clone(),
                        name: "Bench Test".into(),
                        via,
                    }),
                )
                .await?;
                let mut own_run = visits_page_load(&http, &base, &own, args).await?;
                let mut acting_run = visits_page_load(&http, &base, &acting, args).await?;
                // Cost per page: the ratio of the own page's throughput to the acting one's (≤ 1.2 is
                // the target: the acting page costs at most 1.2 times the own).
                let cost = if acting_run.per_sec() > 0.0 {
                    own_run.per_sec() / acting_run.per_sec()
                } else {
                    0.0
                };
                emit!(
                    "{}",
                    json!({"workload": workload, "backend": backend, "clients": args.clients,
                           "own_ops_per_s": round(own_run.per_sec()), "acting_ops_per_s": round(acting_run.per_sec()),
                           "own_p99_ms": round(own_run.pct(0.99)), "acting_p99_ms": round(acting_run.pct(0.99)),
                           "errors": own_run.errors + acting_run.errors,
                           "cost_ratio": round(cost)})
                );
            }
        }
    }
    if args.runs("disclosure") {
        progress(backend, "provider_read_500_across_5_registers");
        // W2d (issue 12, R-CONSENT-1): a provider reads a patient's 500 records with the disclosure
        // rule on (the records held in five other organisations' registers: the patient's consents
        // read and every record decided with its register and service event) and off (the same
        // number of records, alike, in the reader's own register) — the same query, one run.
        {
            let now = Clock::System.now();
            let own = hetu_for(args.patients + 20)?;
            let other = hetu_for(args.patients + 21)?;
            let registers = ["2", "3", "4", "2", "3"];
            let mut writes = vec![];
            for (n, register) in registers.iter().enumerate() {
                let org = format!("org-bench-reg-{n}");
                let writer = kanta_domain::access::Principal::system(
                    &format!("bench-reg-{n}"),
                    &OrgId::new(&org),
                    &[kanta_domain::ids::ClientRole::Clinician],
                );
                for (hetu, who) in [(&own, bench_writer()), (&other, writer)] {
                    let mut b = visit_bundle(hetu.as_str(), n as i64 * 30, 100, n);
                    for e in b["entry"].as_array_mut().into_iter().flatten() {
                        if e["resource"]["resourceType"] == "Observation" {
                            e["resource"]["meta"]["tag"][1]["code"] = json!(register);
                        }
                    }
                    writes.push((who, b));
                }
            }
            let consent = |kind: &str, extra: Value| {
                let mut c = json!({"resourceType": "Consent", "status": "active",
                    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                    "category": [{"coding": [{"system": "urn:kanta:cs:consent-kind", "code": kind}]}],
                    "patient": {"reference": format!("Patient?identifier=urn:oid:1.2.246.21|{}", other.as_str())},
                    "dateTime": "2026-01-01T10:00:00+02:00",
                    "performer": [{"identifier": {"system": "urn:oid:1.2.246.21", "value": other.as_str()}}]});
                if let (Some(o), Some(more)) = (c.as_object_mut(), extra.as_object()) {
                    o.extend(more.clone());
                }
                json!({"resource": c, "request": {"method": "POST", "url": "Consent"}})
            };
            let consents = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                consent("information-notice", json!({})),
                consent("disclosure-consent", json!({"provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}]}})),
            ]});
            writes.push((
                recording(kanta_domain::access::Principal::system(
                    "bench-reg-0",
                    &OrgId::new("org-bench-reg-0"),
                    &[kanta_domain::ids::ClientRole::Clinician],
                )),
                consents,
            ));
            for (who, b) in writes {
                let (req, _) =
                    kanta_web::bundle_write_request(who, b).map_err(|e| e.to_string())?;
                // Written, not released: nothing leaves the process, so nothing to audit.
                let _stored = store.write(req, now).await.map_err(|e| e.to_string())?;
            }
            let read_url = |hetu: Hetu| {
                let (http, base, bearer) = (http.clone(), base.clone(), bearer.clone());
                async move {
                    let r: Value = http
                        .get(format!(
                            "{base}/fhir/Patient?identifier=urn:oid:1.2.246.21|{}",
                            hetu.as_str()
                        ))
                        .header("authorization", &bearer)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .json()
                        .await
                        .map_err(|e| e.to_string())?;
                    let id = r["entry"][0]["resource"]["id"]
                        .as_str()
                        .ok_or("no bench patient")?;
                    Ok::<String, String>(format!(
                        "{base}/fhir/Observation?patient=Patient/{id}&_count=500"
                    ))
                }
            };
            let (own_url, other_url) = (read_url(own).await?, read_url(other.clone()).await?);
            let run = |url: String| {
                let (http, bearer) = (http.clone(), bearer.clone());
                drive(args.clients, args.seconds, move |_, _| {
                    let (http, bearer, url) = (http.clone(), bearer.clone(), url.clone());
                    async move {
                        match http
                            .get(&url)
                            .header("authorization", &bearer)
                            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|1")
                            .header("x-kanta-purpose-of-use", "TREAT")
                            .send()
                            .await
                        {
                            Ok(r) if r.status().is_success() => r
                                .json::<Value>()
                                .await
                                .is_ok_and(|v| v["entry"].as_array().map_or(0, Vec::len) == 500),
                            _ => false,
                        }
                    }
                })
            };
            let mut off = run(own_url).await;
            let mut on = run(other_url.clone()).await;
            let cost = if on.per_sec() > 0.0 {
                off.per_sec() / on.per_sec()
            } else {
                0.0
            };
            // With a prohibition of another register of each of the five (none of the 500 records is
            // in it): every record's register is then read from its JSON before it is decided.
            let ids: Vec<String> = (0..registers.len())
                .map(|n| format!("org-bench-reg-{n}"))
                .collect();
            let orgs: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), i.as_str())).collect();
            put_organisations(&store, &orgs, now).await?;
            let mut entries = vec![];
            for n in 0..registers.len() {
                entries.push(consent("disclosure-prohibition", json!({"provision": {
                    "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                               "reference": {"reference": format!("Organization/org-bench-reg-{n}")}}],
                    "code": [{"coding": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "9"}]}]}})));
            }
            let prohibitions =
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let (req, _) = kanta_web::bundle_write_request(
                recording(kanta_domain::access::Principal::system(
                    "bench-reg-0",
                    &OrgId::new("org-bench-reg-0"),
                    &[kanta_domain::ids::ClientRole::Clinician],
                )),
                prohibitions,
            )
            .map_err(|e| e.to_string())?;
            // Written, not released: nothing leaves the process, so nothing to audit.
            let _stored = store.write(req, now).await.map_err(|e| e.to_string())?;
            let mut scoped = run(other_url).await;
            let scoped_cost = if scoped.per_sec() > 0.0 {
                off.per_sec() / scoped.per_sec()
            } else {
                0.0
            };
            emit!(
                "{}",
                json!({"workload": "provider_read_500_across_5_registers_rule_on_vs_off", "backend": backend,
                       "clients": args.clients,
                       "off_ops_per_s": round(off.per_sec()), "on_ops_per_s": round(on.per_sec()),
                       "off_p99_ms": round(off.pct(0.99)), "on_p99_ms": round(on.pct(0.99)),
                       "scoped_ops_per_s": round(scoped.per_sec()), "scoped_p99_ms": round(scoped.pct(0.99)),
                       "errors": off.errors + on.errors + scoped.errors, "cost_ratio": round(cost),
                       "scoped_cost_ratio": round(scoped_cost)})
            );
        }
    }

    let _ = stop_tx.send(());
    let _ = server.await;

    if args.runs("audit") {
        progress(backend, "audit_group_commit");
        // W3: audit records through group commit: many requests, one record each.
        let signer = kanta_store::audit::Signer::from_pkcs8("bench/audit", &audit_key)?;
        let public_key = signer.public_key();
        let log = kanta_store::audit::AuditLog::start(
            store.clone(),
            kanta_store::audit::AuditConfig {
                max_batch: 1000,
                checkpoint_every: Duration::from_secs(1),
                signer,
                witness_file: None,
                witness_channel: None,
            },
        );
        let (size_before, _) = store.audit_head().await.map_err(|e| e.to_string())?;
        let batch_before = last_batch(store.as_ref(), size_before).await?;
        let mut audit_run = {
            let log = log.clone();
            drive(args.audit_clients, args.seconds, move |c, i| {
                let log = log.clone();
                async move {
                    let record = kanta_domain::audit::AuditRecord {
                        schema: kanta_domain::audit::AUDIT_SCHEMA,
                        recorded_at: 0,
                        patient: Some(kanta_domain::ids::PatientKey(
                            1 + (c as i64) * 1000 + (i as i64 % 1000),
                        )),
                        actor: kanta_domain::audit::Actor::System {
                            component: "bench".into(),
                        },
                        on_behalf_of: None,
                        action: kanta_domain::audit::Action::Read,
                        entities: vec![format!("Observation/{c}-{i}")],
                        query: None,
                        outcome: kanta_domain::audit::Outcome::Success,
                        request_id: None,
                        basis: None,
                    };
                    log.commit(vec![record]).await.is_ok()
                }
            })
            .await
        };
        let (size_after, _) = store.audit_head().await.map_err(|e| e.to_string())?;
        let batches = last_batch(store.as_ref(), size_after).await? - batch_before;
        let floor_audit = {
            let floor = floor.clone();
            drive(args.audit_clients, args.seconds, move |c, i| {
                let floor = floor.clone();
                async move { floor.audit_row((c as i64) * 1000 + (i as i64 % 1000)).await }
            })
            .await
        };
        emit!(
            "{}",
            json!({"workload": "audit_group_commit", "backend": backend, "clients": args.audit_clients,
                   "records_per_s": round(audit_run.per_sec()), "p99_ms": round(audit_run.pct(0.99)), "errors": audit_run.errors,
                   "batches": batches, "mean_batch": round((size_after - size_before) as f64 / batches.max(1) as f64),
                   "floor_one_commit_per_record_per_s": round(floor_audit.per_sec()),
                   "ratio": round(if floor_audit.per_sec() > 0.0 { audit_run.per_sec() / floor_audit.per_sec() } else { 0.0 })})
        );
        // Verify the whole log and scale to a million records.
        let started = Instant::now();
        let checked = kanta_store::audit::verify(store.as_ref(), "bench/audit", &public_key, None)
            .await
            .map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        emit!(
            "{}",
            json!({"workload": "audit_verify", "backend": backend, "records": checked.records, "ok": checked.ok(),
                   "seconds": round(secs), "seconds_per_million": round(secs * 1_000_000.0 / checked.records.max(1) as f64)})
        );
    }
    Ok(())
}

/// Register a bench client (the bench secret, every scope) with one role.
async fn bench_client(
    store: &dyn Store,
    client_id: &str,
    org: &str,
    role: &str,
    now: time::OffsetDateTime,
) -> Result<(), String> {
    store
        .upsert_client(
            &ClientRecord {
                client_id: client_id.into(),
                org: OrgId::new(org),
                name: client_id.into(),
                roles: vec![role.into()],
                secret_sha256: Some(kanta_web::auth::sha256_hex(SECRET.as_bytes())),
                jwks: None,
                enabled: true,
                scopes: "system/*.cruds".into(),
            },
            now,
        )
        .await
        .map_err(|e| e.to_string())
}

/// `Bearer <token>` for a bench client (client credentials with the bench secret).
async fn bearer_for(http: &reqwest::Client, base: &str, client: &str) -> Result<String, String> {
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "Bearer {}",
        token["access_token"]
            .as_str()
            .ok_or_else(|| format!("no access token for {client}"))?
    ))
}

/// A prescription of `packages` packages of the demo atorvastatin (VNR 401011, 30 tablets).
fn bench_prescription(patient_id: &str, packages: u32, today: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": format!("Patient/{patient_id}")}, "authoredOn": today,
        "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": "401011"}]},
        "dosageInstruction": [{"text": "1 tabletti illalla"}],
        "dispenseRequest": {"quantity": {"value": packages, "code": "{package}", "system": "http://unitsofmeasure.org"}}})
}

fn bench_dispensation(patient_id: &str, rx_id: &str) -> String {
    json!({"resourceType": "MedicationDispense", "status": "completed",
        "subject": {"reference": format!("Patient/{patient_id}")},
        "authorizingPrescription": [{"reference": format!("MedicationRequest/{rx_id}")}],
        "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": "401011"}]},
        "quantity": {"value": 1, "code": "{package}", "system": "http://unitsofmeasure.org"},
        "whenHandedOver": "2026-12-01T10:00:00+02:00"})
    .to_string()
}

async fn post_json(http: &reqwest::Client, url: &str, bearer: &str, body: String) -> Option<Value> {
    let r = http
        .post(url)
        .header("authorization", bearer)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Issue 13: the pharmacy workload (look up a patient's prescriptions, then dispense one package
/// in one transaction) and the contention workload (2 and 8 pharmacies on one prescription), each
/// against the raw database doing the same (a row lock, a check, an insert and an update), and the
/// exactly-once check: 8 pharmacies racing for the last packages dispense exactly what remains.
#[allow(clippy::too_many_arguments)]
async fn bench_pharmacy(
    args: &BenchArgs,
    backend: &str,
    store: &Arc<dyn Store>,
    http: &reqwest::Client,
    base: &str,
    doctor: &str,
    floor: &Arc<Floor>,
    patient_ids: &Arc<Vec<String>>,
    now: time::OffsetDateTime,
) -> Result<(), String> {
    bench_client(
        store.as_ref(),
        "bench-pharmacy",
        "org-bench-apteekki",
        "pharmacy",
        now,
    )
    .await?;
    let pharmacy = bearer_for(http, base, "bench-pharmacy").await?;
    let today = kanta_fhir::datetime::helsinki(kanta_fhir::datetime::millis(now))
        .map(|t| kanta_fhir::datetime::format_date(t.date()))
        .ok_or("clock out of range")?;
    // One large prescription for each of up to 200 patients: nothing runs out during the run.
    let mut rx_of: Vec<(String, String)> = vec![];
    for pid in patient_ids.iter().take(200) {
        let v = post_json(
            http,
            &format!("{base}/fhir/MedicationRequest"),
            doctor,
            bench_prescription(pid, 1_000_000, &today).to_string(),
        )
        .await
        .ok_or("writing a bench prescription failed")?;
        rx_of.push((
            pid.clone(),
            v["id"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let rx_of = Arc::new(rx_of);
    let ours = {
        let (http, base, pharmacy, rx_of) = (
            http.clone(),
            base.to_string(),
            pharmacy.clone(),
            rx_of.clone(),
        );
        drive(args.clients, args.seconds, move |c, i| {
            let (http, base, pharmacy, rx_of) =
                (http.clone(), base.clone(), pharmacy.clone(), rx_of.clone());
            async move {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ ((c as u64) << 32 | i));
                let (pid, _) = &rx_of[rng.below(rx_of.len())];
                let found: Option<Value> = match http
                    .get(format!(
                        "{base}/fhir/MedicationRequest?patient=Patient/{pid}&_count=20"
                    ))
                    .header("authorization", &pharmacy)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.json().await.ok(),
                    _ => None,
                };
                let Some(rx) = found
                    .as_ref()
                    .and_then(|f| f["entry"][0]["resource"]["id"].as_str())
                else {
                    return false;
                };
                post_json(
                    &http,
                    &format!("{base}/fhir/MedicationDispense"),
                    &pharmacy,
                    bench_dispensation(pid, rx),
                )
                .await
                .is_some()
            }
        })
        .await
    };
    floor.pharmacy_setup().await?;
    let floor_keys = Arc::new(floor.prescription_patients().await?);
    let theirs = {
        let (floor, keys) = (floor.clone(), floor_keys.clone());
        drive(args.clients, args.seconds, move |c, i| {
            let (floor, keys) = (floor.clone(), keys.clone());
            async move {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ ((c as u64) << 32 | i));
                let key = keys[rng.below(keys.len())];
                floor.look_up_and_dispense(key).await
            }
        })
        .await
    };
    report("pharmacy_look_up_and_dispense", backend, args, ours, theirs);

    // Contention: every client on one prescription.
    let (one_pid, one_rx) = rx_of.first().cloned().ok_or("no bench prescription")?;
    let floor_one = floor.prescription_of(&one_rx).await?;
    for clients in [2usize, 8] {
        let ours = {
            let (http, base, pharmacy, pid, rx) = (
                http.clone(),
                base.to_string(),
                pharmacy.clone(),
                one_pid.clone(),
                one_rx.clone(),
            );
            drive(clients, args.seconds, move |_, _| {
                let (http, base, pharmacy, pid, rx) = (
                    http.clone(),
                    base.clone(),
                    pharmacy.clone(),
                    pid.clone(),
                    rx.clone(),
                );
                async move {
                    post_json(
                        &http,
                        &format!("{base}/fhir/MedicationDispense"),
                        &pharmacy,
                        bench_dispensation(&pid, &rx),
                    )
                    .await
                    .is_some()
                }
            })
            .await
        };
        let theirs = {
            let floor = floor.clone();
            let id = floor_one.clone();
            drive(clients, args.seconds, move |_, _| {
                let (floor, id) = (floor.clone(), id.clone());
                async move { floor.dispense(&id).await }
            })
            .await
        };
        report_clients(
            &format!("pharmacy_contention_{clients}_clients"),
            backend,
            args,
            clients,
            ours,
            theirs,
        );
    }

    // Exactly once: 10 packages, 8 pharmacies trying 3 each at once.
    let (pid, _) = rx_of.first().cloned().ok_or("no bench prescription")?;
    let v = post_json(
        http,
        &format!("{base}/fhir/MedicationRequest"),
        doctor,
        bench_prescription(&pid, 10, &today).to_string(),
    )
    .await
    .ok_or("writing the contended prescription failed")?;
    let rx = v["id"].as_str().unwrap_or_default().to_string();
    let mut tasks = vec![];
    for _ in 0..24 {
        let (http, url, pharmacy, body) = (
            http.clone(),
            format!("{base}/fhir/MedicationDispense"),
            pharmacy.clone(),
            bench_dispensation(&pid, &rx),
        );
        tasks.push(tokio::spawn(async move {
            post_json(&http, &url, &pharmacy, body).await.is_some()
        }));
    }
    let mut won = 0usize;
    for t in tasks {
        if t.await.unwrap_or(false) {
            won += 1;
        }
    }
    let stored: Value = http
        .get(format!("{base}/fhir/MedicationRequest/{rx}"))
        .header("authorization", &pharmacy)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let dispensed = kanta_fhir::prescription::state_of(&stored).map_or(u64::MAX, |s| s.dispensed);
    let over = (won as i64 - 10).max(0) + ((dispensed as i64 - 300) / 30).max(0);
    emit!(
        "{}",
        json!({"workload": "pharmacy_exactly_once_8_clients_10_packages", "backend": backend,
               "attempts": 24, "dispensed_packages": won, "stored_dispensed_units": dispensed,
               "over_dispensations": over, "ok": won == 10 && dispensed == 300})
    );
    if over != 0 || won != 10 {
        return Err(format!("{backend}: exactly-once dispensing failed: {won} of 10 packages, stored {dispensed} units"));
    }
    Ok(())
}

/// The batch number of the record at `size - 1` (the writer numbers batches from 1).
async fn last_batch(store: &dyn Store, size: u64) -> Result<u64, String> {
    if size == 0 {
        return Ok(0);
    }
    let r = store
        .audit_range(size - 1, size)
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.first().map_or(0, |r| r.batch))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn report(workload: &str, backend: &str, args: &BenchArgs, ours: Run, floor: Run) {
    report_clients(workload, backend, args, args.clients, ours, floor);
}

fn report_clients(
    workload: &str,
    backend: &str,
    args: &BenchArgs,
    clients: usize,
    mut ours: Run,
    mut floor: Run,
) {
    let ratio = if floor.per_sec() > 0.0 {
        ours.per_sec() / floor.per_sec()
    } else {
        0.0
    };
    emit!(
        "{}",
        json!({
            "workload": workload, "backend": backend, "patients": args.patients, "clients": clients,
            "ops": ours.ops, "errors": ours.errors, "ops_per_s": round(ours.per_sec()),
            "p50_ms": round(ours.pct(0.5)), "p99_ms": round(ours.pct(0.99)),
            "floor_ops_per_s": round(floor.per_sec()), "floor_p99_ms": round(floor.pct(0.99)), "floor_errors": floor.errors,
            "ratio": round(ratio),
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_data_is_valid_and_skewed() {
        for i in [0, 1, 99, 100, 9_999, 36_499] {
            assert!(hetu_for(i).unwrap().is_temporary());
        }
        assert_eq!(records_for(0), 3000);
        assert_eq!(records_for(9_999), 5);
        let (req, _) =
            kanta_web::bundle_write_request(bench_writer(), visit_bundle("010594Y9032", 3, 8, 1))
                .unwrap();
        assert_eq!(req.ops.len(), 10);
        assert_eq!(
            kanta_store::testing::with_database(
                "postgres://u@h:5432/postgres?sslmode=disable",
                "x"
            ),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            kanta_store::testing::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
