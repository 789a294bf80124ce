//! The two backends. Their SQL is the same text (positional `$n` parameters work on both); what
//! differs is the driver, the connection set-up, row locking and the migrations directory. One
//! macro stamps out both so that the two can never drift apart in behaviour — the conformance suite
//! checks the rest.

use crate::audit::{records_for, Access, Committed, Receipt, Sealed, Touches};
use crate::prelude::*;
use crate::write::{apply, new_patient_key, Row, Tx};
use crate::{
    ActingFor, ActingVia, AuditAppend, Backend, Checkpoint, ClientRecord, Cursor, Drained, Found,
    ImportSummary, Page, PendingAudit, PendingLogin, Result, SearchQuery, SectionCursor,
    SectionPage, SectionProviders, SectionQuery, SectionRow, SessionRow, Store, StoreError, Stored,
    StoredAudit, StoredJson, VisitsPage, WriteRequest, Written,
};
use async_trait::async_trait;
use kanta_domain::audit::AuditRecord;
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::{OrgId, PatientKey};
use kanta_domain::merkle::{leaf_hash, Frontier, Hash};
use kanta_domain::population::{CustodyAgreement, Person, PersonRecord, Relation, RelationKind};
use kanta_fhir::resource::scope_of;
use kanta_fhir::{datetime, ErrorKind, FhirError, Scope};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions, Postgres};
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row as _, Transaction};
use std::str::FromStr;
use std::time::Duration;
use time::OffsetDateTime;

const STORED_COLUMNS: &str = "resource_type, id, version_id, last_updated, org_id, body";

pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    locations: std::sync::Arc<Locations>,
    head: AuditHead,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // One writer connection: SQLite serialises writers anyway, and a single writer never meets
        // SQLITE_BUSY on a read-to-write upgrade. Readers run in parallel under WAL.
        // No ping before each use (sqlx's default): a SQLite connection is a file handle, and the
        // ping is one more hop to the connection's worker thread per statement.
        let write = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(false))
            .await?;
        Ok(SqliteStore {
            read,
            write,
            locations: std::sync::Arc::default(),
            head: AuditHead::default(),
        })
    }

    /// SQLite's single writer connection commits an append in one sync either way.
    async fn append_one_statement(&self, _: &[AuditRecord]) -> Result<Option<AuditAppend>> {
        Ok(None)
    }

    /// SQLite's writes make their records leaves in their own transaction: no outbox to drain.
    async fn drain_one_statement(&self, _: &[PendingAudit]) -> Result<Option<Drained>> {
        Ok(None)
    }
}

pub struct PgStore {
    read: PgPool,
    write: PgPool,
    locations: std::sync::Arc<Locations>,
    head: AuditHead,
    one_statement_append: bool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = pg_pool_options().max_connections(16).connect(url).await?;
        // Citus refuses what the one-statement audit append does (a data-modifying CTE on a
        // reference table feeding a distributed insert); there the writer keeps the transaction.
        let citus: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
        )
        .fetch_one(&pool)
        .await?;
        Ok(PgStore {
            read: pool.clone(),
            write: pool,
            locations: std::sync::Arc::default(),
            head: AuditHead::default(),
            one_statement_append: !citus,
        })
    }
}

impl PgStore {
    /// A batch of audit records appended after the remembered head in one statement, its own
    /// transaction: the records become leaves and `audit_state` moves on together, and only if
    /// `audit_state` still holds that head (under READ COMMITTED a concurrent writer's update is
    /// waited for and the condition checked again on its result). One round trip where the locked
    /// transaction takes five. `None` when it does not apply: no head remembered yet, on Citus, or
    /// another writer moved the head (then the caller takes the locked transaction, which reads
    /// the head afresh).
    async fn append_one_statement(&self, records: &[AuditRecord]) -> Result<Option<AuditAppend>> {
        if !self.one_statement_append || records.is_empty() {
            return Ok(None);
        }
        let rows = records
            .iter()
            .map(|r| {
                String::from_utf8(r.canonical_bytes())
                    .map(|body| PendingAudit {
                        id: 0,
                        patient: r.patient.map_or(0, |k| k.0),
                        recorded_at: r.recorded_at,
                        body,
                    })
                    .map_err(|_| StoreError::Corrupt("audit body".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.leaves_one_statement(&rows, false).await
    }

    /// The same for records waiting in the outbox, given as their writes put them there (ascending
    /// ids): the statement also deletes them from the outbox, and applies only if every one is
    /// still there (a writer that took them first also moved the head; the count is a second
    /// guard). Seven round trips become one for a batch of writes.
    async fn drain_one_statement(&self, rows: &[PendingAudit]) -> Result<Option<Drained>> {
        if !self.one_statement_append || rows.is_empty() {
            return Ok(None);
        }
        Ok(self
            .leaves_one_statement(rows, true)
            .await?
            .map(|app| Drained {
                seqs: rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id, app.first_seq + i as u64))
                    .collect(),
                append: Some(app),
            }))
    }

    async fn leaves_one_statement(
        &self,
        rows: &[PendingAudit],
        from_outbox: bool,
    ) -> Result<Option<AuditAppend>> {
        let Some((old_batch, mut frontier)) = self.head.get() else {
            return Ok(None);
        };
        let (old_size, batch, first_seq) = (frontier.size() as i64, old_batch + 1, frontier.size());
        let n = rows.len();
        let (mut patients, mut seqs, mut times) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut leaves, mut bodies, mut ids) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            let leaf = leaf_hash(r.body.as_bytes());
            seqs.push(frontier.size() as i64);
            frontier.push(leaf);
            patients.push(r.patient);
            times.push(r.recorded_at);
            leaves.push(leaf.to_vec());
            bodies.push(r.body.as_str());
            ids.push(r.id);
        }
        let frontier_text: String = frontier.nodes().iter().map(to_hex).collect();
        let q = if from_outbox {
            sqlx::query(
                "WITH moved AS (UPDATE audit_state SET tree_size = $1, batch = $2, frontier = $3 \
                 WHERE id = 1 AND tree_size = $4 AND batch = $5 \
                 AND (SELECT count(*) FROM audit_outbox WHERE id = ANY($11::bigint[])) = $12 RETURNING 1), \
                 gone AS (DELETE FROM audit_outbox WHERE id = ANY($11::bigint[]) AND EXISTS (SELECT 1 FROM moved) RETURNING 1) \
                 INSERT INTO audit_record (patient_key, seq, recorded_at, batch, leaf_hash, body) \
                 SELECT r.patient_key, r.seq, r.recorded_at, $2::bigint, r.leaf_hash, r.body \
                 FROM unnest($6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[], $10::text[]) \
                 AS r(patient_key, seq, recorded_at, leaf_hash, body) \
                 WHERE EXISTS (SELECT 1 FROM moved)",
            )
        } else {
            sqlx::query(
                "WITH moved AS (UPDATE audit_state SET tree_size = $1, batch = $2, frontier = $3 \
                 WHERE id = 1 AND tree_size = $4 AND batch = $5 RETURNING 1) \
                 INSERT INTO audit_record (patient_key, seq, recorded_at, batch, leaf_hash, body) \
                 SELECT r.patient_key, r.seq, r.recorded_at, $2::bigint, r.leaf_hash, r.body \
                 FROM unnest($6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[], $10::text[]) \
                 AS r(patient_key, seq, recorded_at, leaf_hash, body) \
                 WHERE EXISTS (SELECT 1 FROM moved)",
            )
        };
        let q = q
            .bind(frontier.size() as i64)
            .bind(batch)
            .bind(&frontier_text)
            .bind(old_size)
            .bind(old_batch)
            .bind(&patients)
            .bind(&seqs)
            .bind(&times)
            .bind(&leaves)
            .bind(&bodies);
        let q = if from_outbox {
            q.bind(&ids).bind(n as i64)
        } else {
            q
        };
        match q.execute(&self.write).await {
            Ok(d) if d.rows_affected() == n as u64 => {
                let app = AuditAppend {
                    first_seq,
                    tree_size: frontier.size(),
                    batch: batch as u64,
                    root: frontier.root(),
                };
                self.head.set(Some((batch, frontier)));
                Ok(Some(app))
            }
            Ok(d) => {
                // Nothing applied (one statement: all or none): the head moved elsewhere, or
                // another writer took these outbox records.
                self.head.set(None);
                if d.rows_affected() == 0 {
                    metrics::counter!("kanta_audit_head_moved_total").increment(1);
                    Ok(None)
                } else {
                    Err(StoreError::Corrupt(format!(
                        "audit append wrote {} of {n} records",
                        d.rows_affected()
                    )))
                }
            }
            Err(e) => {
                self.head.set(None);
                Err(e.into())
            }
        }
    }
}

/// The documents attached to these encounters, as rows of `resource_type, id, effective_at, org_id,
/// body_text`: the values go as one array, `t.value = ANY($3)`, an index condition that PostgreSQL
/// probes value by value. (Given them as a `UNION ALL` join input, its generic plan read every
/// one of the patient's encounter tokens into a hash join: 1.8-3.7 ms for a patient with 5,000
/// records, against 0.5 ms; given `IN ($3, $4, …)`, it filtered a scan of them.)
const ATTACHED_PG: &str =
    "SELECT r.resource_type, r.id, r.effective_at, r.org_id, r.body AS body_text \
     FROM resource_token t JOIN resource r \
     ON r.patient_key = t.patient_key AND r.resource_type = t.resource_type AND r.id = t.id \
     WHERE t.patient_key = $1 AND t.system = $2 AND t.value = ANY($3)";

impl PgStore {
    async fn attached_rows(
        &self,
        patient: PatientKey,
        encounters: &[String],
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        Ok(sqlx::query(ATTACHED_PG)
            .bind(patient.0)
            .bind(crate::ENCOUNTER_INDEX)
            .bind(encounters)
            .fetch_all(&self.read)
            .await?)
    }
}

impl SqliteStore {
    /// SQLite probes an `IN` list value by value (a join form made it scan).
    async fn attached_rows(
        &self,
        patient: PatientKey,
        encounters: &[String],
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>> {
        let list: Vec<String> = (0..encounters.len())
            .map(|i| format!("${}", i + 3))
            .collect();
        let sql = format!(
            "SELECT r.resource_type, r.id, r.effective_at, r.org_id, r.body AS body_text FROM resource_token t JOIN resource r \
             ON r.patient_key = t.patient_key AND r.resource_type = t.resource_type AND r.id = t.id \
             WHERE t.patient_key = $1 AND t.system = $2 AND t.value IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(patient.0)
            .bind(crate::ENCOUNTER_INDEX);
        for e in encounters {
            q = q.bind(e);
        }
        Ok(q.fetch_all(&self.read).await?)
    }
}

/// A pooled connection idle for longer than this is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The pool options for PostgreSQL (the store's and the benchmark's floor): a connection is tested
/// with a ping only when it has been idle for over [`PING_AFTER_IDLE`] (sqlx's default pings before
/// every use: one extra round trip per statement, 16% of a read's CPU in the profile). A busy
/// connection that broke since its last statement fails that statement and is dropped; after a
/// quiet spell (a restart of the server, say) every connection is tested first.
pub fn pg_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
}

fn ping_if_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<bool, sqlx::Error>> + Send + '_>,
> {
    Box::pin(async move {
        if meta.idle_for > PING_AFTER_IDLE {
            use sqlx::Connection as _;
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// The audit writer's last committed position (batch number and the tree's right edge), kept so
/// that its next batch goes to PostgreSQL as one statement. Only a hint: that statement applies
/// only if `audit_state` still holds this position, and when another instance appended meanwhile
/// (or anything failed) the writer takes the locked transaction, which reads the position afresh.
#[derive(Default)]
struct AuditHead(std::sync::Mutex<Option<(i64, Frontier)>>);

impl AuditHead {
    fn get(&self) -> Option<(i64, Frontier)> {
        self.0.lock().ok()?.clone()
    }

    fn set(&self, head: Option<(i64, Frontier)>) {
        if let Ok(mut h) = self.0.lock() {
            *h = head;
        }
    }
}

/// What the store remembers of committed data: `Type/id` → the patient key of a patient-scoped
/// resource, or `None` for a shared resource that exists. Safe to keep: nothing is ever deleted, a
/// resource never moves to another patient and ids are never reused, so an entry can only be
/// missing, never wrong. Filled only from committed data (reads, and writes after their commit).
/// Bounded; cleared when full.
#[derive(Default)]
pub(crate) struct Locations(
    std::sync::Mutex<std::collections::HashMap<String, Option<PatientKey>>>,
);

impl Locations {
    const MAX: usize = 200_000;

    fn get(&self, t: &str, id: &str) -> Option<PatientKey> {
        self.remembered(t, id).flatten()
    }

    /// `Some(Some(key))`: patient data of that patient; `Some(None)`: shared data that exists.
    pub(crate) fn remembered(&self, t: &str, id: &str) -> Option<Option<PatientKey>> {
        self.0.lock().ok()?.get(&format!("{t}/{id}")).copied()
    }

    fn put(&self, t: &str, id: &str, key: Option<PatientKey>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= Self::MAX {
                m.clear();
            }
            m.insert(format!("{t}/{id}"), key);
        }
    }

    /// A committed write's resources (and the ones it matched): where each lives.
    fn put_written(&self, written: &[Written]) {
        let Ok(mut m) = self.0.lock() else { return };
        if m.len() + written.len() >= Self::MAX {
            m.clear();
        }
        for w in written {
            let s = &w.stored;
            m.insert(format!("{}/{}", s.resource_type, s.id), s.patient);
        }
    }
}

const SESSION_COLUMNS: &str =
    "id_hash, patient_key, hetu, display_name, acting_for, csrf_token, created_at, \
     last_active_at, absolute_expiry, confirmed, idp_issuer, idp_sub, idp_sid, id_token, \
     acting_for_hetu, acting_for_name, acting_via";

fn ts(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn parse_date(s: &str) -> Result<time::Date> {
    datetime::parse_date(s)
        .ok_or_else(|| StoreError::Corrupt(format!("bad date '{s}' in the register")))
}

fn hetu(s: &str) -> Result<Hetu> {
    Hetu::parse(s).map_err(|e| StoreError::Corrupt(format!("stored HETU is invalid: {}", e.code())))
}

fn to_hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_of(bytes: &[u8]) -> Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a stored hash is not 32 bytes".into()))
}

fn parse_frontier(size: i64, text: &str) -> Result<Frontier> {
    let mut nodes = vec![];
    for chunk in text.as_bytes().chunks(64).filter(|c| !c.is_empty()) {
        let mut h = [0u8; 32];
        for (i, pair) in chunk.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair)
                .map_err(|_| StoreError::Corrupt("audit frontier".into()))?;
            h[i] = u8::from_str_radix(s, 16)
                .map_err(|_| StoreError::Corrupt("audit frontier".into()))?;
        }
        nodes.push(h);
    }
    Frontier::from_parts(size as u64, nodes)
        .ok_or_else(|| StoreError::Corrupt("audit frontier does not match the tree size".into()))
}

/// Rows per multi-row INSERT of resources (at most 9 parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2, $3), ($4, $5, $6)` for `rows` rows of `cols` parameters.
fn values(rows: usize, cols: usize) -> String {
    values_after(0, rows, cols, &[])
}

/// [`values`] numbered from `$first + 1`, each column with its cast (`::bigint`) where one is given.
fn values_after(first: usize, rows: usize, cols: usize, casts: &[&str]) -> String {
    let mut s = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", first + r * cols + c + 1));
            s.push_str(casts.get(c).copied().unwrap_or(""));
        }
        s.push(')');
    }
    s
}

/// The multi-row inserts of a write's patient rows (`VALUES` follows), sent per table or, on a
/// single PostgreSQL server, together in one statement.
const LOCATOR_INSERT: &str = "INSERT INTO resource_locator (resource_type, id, patient_key) VALUES";
const RESOURCE_INSERT: &str = "INSERT INTO resource (patient_key, resource_type, id, version_id, last_updated, effective_at, status, org_id, section, body) VALUES";
const RESOURCE_UPSERT: &str = "ON CONFLICT (patient_key, resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
     last_updated = excluded.last_updated, effective_at = excluded.effective_at, status = excluded.status, \
     org_id = excluded.org_id, section = excluded.section, body = excluded.body";
const VERSION_INSERT: &str = "INSERT INTO resource_version (patient_key, resource_type, id, version_id, last_updated, org_id, body) VALUES";
const TOKEN_INSERT: &str =
    "INSERT INTO resource_token (patient_key, resource_type, system, value, id) VALUES";

/// A write's patient rows laid out per table: the new resources' locators, the current version of
/// each resource (its last row), every version, the updated resources whose tokens are replaced,
/// and the current versions' tokens.
struct Layout<'a, 'r> {
    new: Vec<&'a Row<'r>>,
    current: Vec<(&'a Row<'r>, &'a str)>,
    versions: Vec<(&'a Row<'r>, &'a str)>,
    replaced: Vec<&'a Row<'r>>,
    tokens: Vec<(&'a Row<'r>, &'a (String, String))>,
}

impl<'a, 'r> Layout<'a, 'r> {
    /// `rows` (patient data) with their bodies' `texts`, in the same order.
    fn of(rows: &[&'a Row<'r>], texts: &'a [String]) -> Layout<'a, 'r> {
        let mut last: std::collections::HashMap<(i64, &str, &str), (&'a Row<'r>, &'a str)> =
            std::collections::HashMap::new();
        for (r, text) in rows.iter().zip(texts) {
            last.insert((Self::key(r), r.resource_type, r.id), (*r, text.as_str()));
        }
        let current: Vec<(&'a Row<'r>, &'a str)> = last.into_values().collect();
        let tokens = current
            .iter()
            .flat_map(|(r, _)| r.tokens.iter().map(move |t| (*r, t)))
            .collect();
        Layout {
            new: rows.iter().copied().filter(|r| r.version == 1).collect(),
            versions: rows
                .iter()
                .copied()
                .zip(texts.iter().map(String::as_str))
                .collect(),
            replaced: rows.iter().copied().filter(|r| r.version > 1).collect(),
            current,
            tokens,
        }
    }

    fn key(r: &Row<'_>) -> i64 {
        r.patient_key.map_or(0, |k| k.0)
    }

    /// The parameters the rows take in one statement.
    fn parameters(&self) -> usize {
        self.new.len() * 3
            + self.current.len() * 10
            + self.versions.len() * 7
            + self.replaced.len() * 3
            + self.tokens.len() * 5
    }
}

/// Records per INSERT statement (6 parameters each; well under both backends' limits).
const AUDIT_CHUNK: usize = 500;

/// A unique-key violation means two writers raced for the same id: a conflict, not a crash.
fn conflict_on_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Fhir(FhirError::new(
            ErrorKind::Conflict,
            "a concurrent write created the same resource; read it and retry",
        )),
        _ => StoreError::Database(e),
    }
}

/// A current version's columns (`RESOURCE_INSERT`'s order) bound to a query.
macro_rules! bind_current {
    ($q:expr, $r:expr, $text:expr) => {
        $q.bind(Layout::key($r))
            .bind($r.resource_type)
            .bind($r.id)
            .bind($r.version)
            .bind($r.last_updated)
            .bind($r.effective_at)
            .bind($r.status)
            .bind($r.org_id)
            .bind($r.section)
            .bind($text)
    };
}

/// A version's columns (`VERSION_INSERT`'s order) bound to a query.
macro_rules! bind_version {
    ($q:expr, $r:expr, $text:expr) => {
        $q.bind(Layout::key($r))
            .bind($r.resource_type)
            .bind($r.id)
            .bind($r.version)
            .bind($r.last_updated)
            .bind($r.org_id)
            .bind($text)
    };
}

/// A token's columns (`TOKEN_INSERT`'s order) bound to a query.
macro_rules! bind_token {
    ($q:expr, $r:expr, $system:expr, $value:expr) => {
        $q.bind(Layout::key($r))
            .bind($r.resource_type)
            .bind($system)
            .bind($value)
            .bind($r.id)
    };
}

macro_rules! backend {
    ($store:ident, $tx:ident, $db:ty, $backend:expr, $for_update:literal, $audit_in_write:literal, $migrator:expr) => {
        pub(crate) struct $tx {
            tx: Transaction<'static, $db>,
            /// The store's memory of committed locations, consulted before a look-up.
            known: std::sync::Arc<Locations>,
            /// A write's rows go out in one statement (a single PostgreSQL server).
            one_statement: bool,
        }

        impl $tx {
            /// A write's patient rows, one multi-row statement per table.
            async fn put_per_table(&mut self, l: &Layout<'_, '_>) -> Result<()> {
                let key = Layout::key;
                // New resources get their locators.
                for chunk in l.new.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!("{LOCATOR_INSERT} {}", values(chunk.len(), 3));
                    let mut query = sqlx::query(&sql);
                    for r in chunk {
                        query = query.bind(r.resource_type).bind(r.id).bind(key(r));
                    }
                    query.execute(&mut *self.tx).await.map_err(conflict_on_unique)?;
                }
                for chunk in l.current.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!("{RESOURCE_INSERT} {} {RESOURCE_UPSERT}", values(chunk.len(), 10));
                    let mut query = sqlx::query(&sql);
                    for (r, text) in chunk {
                        query = bind_current!(query, r, *text);
                    }
                    query.execute(&mut *self.tx).await?;
                }
                for chunk in l.versions.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!("{VERSION_INSERT} {}", values(chunk.len(), 7));
                    let mut query = sqlx::query(&sql);
                    for (r, text) in chunk {
                        query = bind_version!(query, r, *text);
                    }
                    query.execute(&mut *self.tx).await.map_err(conflict_on_unique)?;
                }
                for r in &l.replaced {
                    sqlx::query("DELETE FROM resource_token WHERE patient_key = $1 AND resource_type = $2 AND id = $3")
                        .bind(key(r)).bind(r.resource_type).bind(r.id)
                        .execute(&mut *self.tx).await?;
                }
                for chunk in l.tokens.chunks(ROWS_PER_STATEMENT) {
                    let sql = format!("{TOKEN_INSERT} {}", values(chunk.len(), 5));
                    let mut query = sqlx::query(&sql);
                    for (r, (system, value)) in chunk {
                        query = bind_token!(query, r, system, value);
                    }
                    query.execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn claim(&mut self, hetu: &str, candidate: PatientKey, now: i64) -> Result<(PatientKey, Option<String>)> {
                sqlx::query("INSERT INTO patient_hetu (hetu, patient_key, created_at) VALUES ($1, $2, $3) ON CONFLICT (hetu) DO NOTHING")
                    .bind(hetu)
                    .bind(candidate.0)
                    .bind(now)
                    .execute(&mut *self.tx)
                    .await?;
                let row = sqlx::query(concat!("SELECT patient_key, patient_resource_id FROM patient_hetu WHERE hetu = $1", $for_update))
                    .bind(hetu)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok((PatientKey(row.try_get(0)?), row.try_get(1)?))
            }

            async fn stored(&mut self, key: Option<PatientKey>, t: &str, id: &str) -> Result<Option<Stored>> {
                let row = match key {
                    Some(k) => sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM resource WHERE patient_key = $1 AND resource_type = $2 AND id = $3"))
                        .bind(k.0).bind(t).bind(id).fetch_optional(&mut *self.tx).await?,
                    None => sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM shared_resource WHERE resource_type = $1 AND id = $2"))
                        .bind(t).bind(id).fetch_optional(&mut *self.tx).await?,
                };
                row.map(|r| decode(&r, key)).transpose()
            }
        }

        fn decode(row: &<$db as sqlx::Database>::Row, key: Option<PatientKey>) -> Result<Stored> {
            let text: String = row.try_get("body")?;
            let body: Value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))?;
            Ok(Stored {
                resource_type: row.try_get("resource_type")?,
                id: row.try_get("id")?,
                version: row.try_get("version_id")?,
                last_updated: ts(row.try_get("last_updated")?),
                patient: key,
                org: row.try_get("org_id")?,
                body,
            })
        }

        #[async_trait]
        impl Tx for $tx {
            fn remembered(&self, resource_type: &str, id: &str) -> Option<Option<PatientKey>> {
                self.known.remembered(resource_type, id)
            }

            async fn locate(&mut self, resource_type: &str, id: &str) -> Result<Option<PatientKey>> {
                let key: Option<i64> = sqlx::query_scalar("SELECT patient_key FROM resource_locator WHERE resource_type = $1 AND id = $2")
                    .bind(resource_type)
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(key.map(PatientKey))
            }

            async fn current_version(&mut self, key: Option<PatientKey>, t: &str, id: &str) -> Result<Option<(i32, Option<String>)>> {
                let row = match key {
                    Some(k) => sqlx::query(concat!("SELECT version_id, org_id FROM resource WHERE patient_key = $1 AND resource_type = $2 AND id = $3", $for_update))
                        .bind(k.0).bind(t).bind(id).fetch_optional(&mut *self.tx).await?,
                    None => sqlx::query(concat!("SELECT version_id, org_id FROM shared_resource WHERE resource_type = $1 AND id = $2", $for_update))
                        .bind(t).bind(id).fetch_optional(&mut *self.tx).await?,
                };
                row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
            }

            async fn get(&mut self, key: Option<PatientKey>, t: &str, id: &str) -> Result<Option<Stored>> {
                self.stored(key, t, id).await
            }

            async fn of_patient(&mut self, key: PatientKey, t: &str, limit: usize) -> Result<Vec<Stored>> {
                let rows = sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM resource WHERE patient_key = $1 AND resource_type = $2 ORDER BY id LIMIT $3"))
                    .bind(key.0).bind(t).bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut *self.tx).await?;
                rows.iter().map(|r| decode(r, Some(key))).collect()
            }

            async fn claim_hetu(&mut self, hetu: &str, candidate: PatientKey, now: i64) -> Result<(PatientKey, Option<String>)> {
                self.claim(hetu, candidate, now).await
            }

            async fn hetu_lookup(&mut self, hetu: &str) -> Result<Option<(PatientKey, Option<String>)>> {
                let row = sqlx::query("SELECT patient_key, patient_resource_id FROM patient_hetu WHERE hetu = $1")
                    .bind(hetu)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                row.map(|r| Ok((PatientKey(r.try_get(0)?), r.try_get(1)?))).transpose()
            }

            async fn set_patient_resource(&mut self, hetu: &str, id: &str) -> Result<()> {
                sqlx::query("UPDATE patient_hetu SET patient_resource_id = $1 WHERE hetu = $2")
                    .bind(id)
                    .bind(hetu)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn find_patient_token(&mut self, key: PatientKey, t: &str, system: &str, value: &str) -> Result<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT id FROM resource_token WHERE patient_key = $1 AND resource_type = $2 AND system = $3 AND value = $4")
                    .bind(key.0).bind(t).bind(system).bind(value).fetch_all(&mut *self.tx).await?)
            }

            async fn find_token(&mut self, scope: Scope, t: &str, system: &str, value: &str) -> Result<Vec<String>> {
                let sql = match scope {
                    Scope::Patient => "SELECT id FROM resource_token WHERE resource_type = $1 AND system = $2 AND value = $3",
                    Scope::Shared => "SELECT id FROM shared_token WHERE resource_type = $1 AND system = $2 AND value = $3",
                };
                Ok(sqlx::query_scalar(sql).bind(t).bind(system).bind(value).fetch_all(&mut *self.tx).await?)
            }

            async fn put_many(&mut self, rows: &[Row<'_>]) -> Result<()> {
                let (patient_rows, shared_rows): (Vec<&Row<'_>>, Vec<&Row<'_>>) = rows.iter().partition(|r| r.patient_key.is_some());
                // Each body is serialised once, as the text that is stored and returned (issue 15:
                // a TEXT column, not jsonb, so a read sends it on without conversion).
                let texts: Vec<String> = patient_rows.iter().map(|r| serde_json::to_string(r.body)).collect::<std::result::Result<_, _>>()
                    .map_err(|e| StoreError::Corrupt(format!("resource JSON: {e}")))?;
                let layout = Layout::of(&patient_rows, &texts);
                if !self.one_statement || !self.put_one_statement(&layout).await? {
                    self.put_per_table(&layout).await?;
                }
                // Shared reference data is written rarely: one row at a time.
                for row in shared_rows {
                    let body = serde_json::to_string(row.body).map_err(|e| StoreError::Corrupt(format!("resource JSON: {e}")))?;
                    sqlx::query(
                        "INSERT INTO shared_resource (resource_type, id, version_id, last_updated, effective_at, status, org_id, body) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
                         last_updated = excluded.last_updated, effective_at = excluded.effective_at, status = excluded.status, \
                         org_id = excluded.org_id, body = excluded.body",
                    )
                    .bind(row.resource_type).bind(row.id).bind(row.version).bind(row.last_updated)
                    .bind(row.effective_at).bind(row.status).bind(row.org_id).bind(&body)
                    .execute(&mut *self.tx).await?;
                    sqlx::query(
                        "INSERT INTO shared_resource_version (resource_type, id, version_id, last_updated, org_id, body) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(row.resource_type).bind(row.id).bind(row.version).bind(row.last_updated)
                    .bind(row.org_id).bind(&body)
                    .execute(&mut *self.tx).await.map_err(conflict_on_unique)?;
                    sqlx::query("DELETE FROM shared_token WHERE resource_type = $1 AND id = $2")
                        .bind(row.resource_type).bind(row.id)
                        .execute(&mut *self.tx).await?;
                    for (system, value) in row.tokens {
                        sqlx::query("INSERT INTO shared_token (resource_type, system, value, id) VALUES ($1, $2, $3, $4)")
                            .bind(row.resource_type).bind(system).bind(value).bind(row.id)
                            .execute(&mut *self.tx).await?;
                    }
                }
                Ok(())
            }
        }

        impl $store {
            /// A write transaction on the writer pool.
            async fn begin_write(&self) -> Result<$tx> {
                Ok($tx { tx: self.write.begin().await?, known: self.locations.clone(), one_statement: self.one_statement_writes() })
            }

            async fn locate(&self, t: &str, id: &str) -> Result<Option<PatientKey>> {
                if let Some(k) = self.locations.get(t, id) {
                    return Ok(Some(k));
                }
                let key: Option<i64> = sqlx::query_scalar("SELECT patient_key FROM resource_locator WHERE resource_type = $1 AND id = $2")
                    .bind(t).bind(id).fetch_optional(&self.read).await?;
                let key = key.map(PatientKey);
                if let Some(k) = key {
                    self.locations.put(t, id, Some(k));
                }
                Ok(key)
            }

            async fn key_of(&self, hetu: &str) -> Result<Option<(PatientKey, Option<String>)>> {
                let row = sqlx::query("SELECT patient_key, patient_resource_id FROM patient_hetu WHERE hetu = $1")
                    .bind(hetu).fetch_optional(&self.read).await?;
                row.map(|r| Ok((PatientKey(r.try_get(0)?), r.try_get(1)?))).transpose()
            }

            async fn relations_about(&self, key: PatientKey, subject: &Hetu) -> Result<Vec<Relation>> {
                let rows = sqlx::query("SELECT kind, holder_hetu, start_date, end_date, custody FROM relation WHERE patient_key = $1 ORDER BY kind, holder_hetu")
                    .bind(key.0).fetch_all(&self.read).await?;
                rows.iter().map(|r| relation_row(r, subject.clone(), hetu(&r.try_get::<String, _>(1)?)?)).collect()
            }
        }

        /// Append records inside an open transaction, extending the tree (the writer's batch, or a
        /// write's own records on a backend that audits writes in the same transaction).
        async fn append_in(conn: &mut <$db as sqlx::Database>::Connection, records: &[AuditRecord]) -> Result<(AuditAppend, Frontier)> {
                let bodies = records
                    .iter()
                    .map(|r| {
                        String::from_utf8(r.canonical_bytes())
                            .map(|b| (r.patient.map_or(0, |k| k.0), r.recorded_at, b))
                            .map_err(|_| StoreError::Corrupt("audit body".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                append_bodies_in(conn, &bodies).await
        }

        /// Append records given as (patient key or 0, recorded at, canonical body) — the bytes a
        /// leaf covers, as they were made (a record waiting in the outbox is never re-encoded).
        /// Also the tree's new right edge, for the writer to remember once the transaction commits.
        async fn append_bodies_in(conn: &mut <$db as sqlx::Database>::Connection, records: &[(i64, i64, String)]) -> Result<(AuditAppend, Frontier)> {
                let row = sqlx::query(concat!("SELECT tree_size, batch, frontier FROM audit_state WHERE id = 1", $for_update))
                    .fetch_one(&mut *conn).await?;
                let size: i64 = row.try_get(0)?;
                let batch: i64 = row.try_get::<i64, _>(1)? + 1;
                let mut frontier = parse_frontier(size, &row.try_get::<String, _>(2)?)?;
                let first_seq = frontier.size();
                for chunk in records.chunks(AUDIT_CHUNK) {
                    let mut sql = String::from("INSERT INTO audit_record (patient_key, seq, recorded_at, batch, leaf_hash, body) VALUES ");
                    for i in 0..chunk.len() {
                        let b = i * 6;
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6));
                    }
                    let mut q = sqlx::query(&sql);
                    for (patient, recorded_at, body) in chunk {
                        let leaf = leaf_hash(body.as_bytes());
                        let seq = frontier.size() as i64;
                        frontier.push(leaf);
                        q = q.bind(*patient).bind(seq).bind(*recorded_at).bind(batch).bind(leaf.to_vec()).bind(body.as_str());
                    }
                    q.execute(&mut *conn).await?;
                }
                let frontier_text: String = frontier.nodes().iter().map(to_hex).collect();
                sqlx::query("UPDATE audit_state SET tree_size = $1, batch = $2, frontier = $3 WHERE id = 1")
                    .bind(frontier.size() as i64).bind(batch).bind(frontier_text)
                    .execute(&mut *conn).await?;
                Ok((AuditAppend { first_seq, tree_size: frontier.size(), batch: batch as u64, root: frontier.root() }, frontier))
        }

        /// A write's audit records into the outbox, in the write's transaction; their ids.
        /// (In the order given: a multi-row `INSERT … VALUES … RETURNING` returns its rows in the
        /// order of its values.)
        async fn outbox_in(conn: &mut <$db as sqlx::Database>::Connection, records: &[AuditRecord]) -> Result<Vec<PendingAudit>> {
            let mut out = Vec::with_capacity(records.len());
            for chunk in records.chunks(AUDIT_CHUNK) {
                let mut sql = String::from("INSERT INTO audit_outbox (patient_key, recorded_at, body) VALUES ");
                for i in 0..chunk.len() {
                    let b = i * 3;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("(${}, ${}, ${})", b + 1, b + 2, b + 3));
                }
                sql.push_str(" RETURNING id");
                let mut rows = Vec::with_capacity(chunk.len());
                for r in chunk {
                    let body = String::from_utf8(r.canonical_bytes()).map_err(|_| StoreError::Corrupt("audit body".into()))?;
                    rows.push(PendingAudit { id: 0, patient: r.patient.map_or(0, |k| k.0), recorded_at: r.recorded_at, body });
                }
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for r in &rows {
                    q = q.bind(r.patient).bind(r.recorded_at).bind(r.body.as_str());
                }
                let ids = q.fetch_all(&mut *conn).await?;
                if ids.len() != rows.len() {
                    return Err(StoreError::Corrupt("the outbox returned fewer ids than rows".into()));
                }
                for (mut r, id) in rows.into_iter().zip(ids) {
                    r.id = id;
                    out.push(r);
                }
            }
            Ok(out)
        }

        fn audit_row(r: &<$db as sqlx::Database>::Row) -> Result<StoredAudit> {
            let key: i64 = r.try_get(1)?;
            Ok(StoredAudit {
                seq: r.try_get::<i64, _>(0)? as u64,
                patient: (key != 0).then_some(PatientKey(key)),
                recorded_at: r.try_get(2)?,
                batch: r.try_get::<i64, _>(3)? as u64,
                leaf_hash: hash_of(&r.try_get::<Vec<u8>, _>(4)?)?,
                body: r.try_get(5)?,
                pruned_at: r.try_get(6)?,
            })
        }

        impl $store {
            async fn read_open(&self, t: &str, id: &str) -> Result<Option<Stored>> {

                let row = match scope_of(t) {
                    Some(Scope::Patient) => {
                        let Some(key) = self.locate(t, id).await? else { return Ok(None) };
                        sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM resource WHERE patient_key = $1 AND resource_type = $2 AND id = $3"))
                            .bind(key.0).bind(t).bind(id).fetch_optional(&self.read).await?
                            .map(|r| decode(&r, Some(key)))
                    }
                    Some(Scope::Shared) => sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM shared_resource WHERE resource_type = $1 AND id = $2"))
                        .bind(t).bind(id).fetch_optional(&self.read).await?
                        .map(|r| decode(&r, None)),
                    None => None,
                };
                row.transpose()
            }

            async fn history_open(&self, t: &str, id: &str) -> Result<Vec<Stored>> {
                let rows = match scope_of(t) {
                    Some(Scope::Patient) => {
                        let Some(key) = self.locate(t, id).await? else { return Ok(vec![]) };
                        sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM resource_version WHERE patient_key = $1 AND resource_type = $2 AND id = $3 ORDER BY version_id DESC"))
                            .bind(key.0).bind(t).bind(id).fetch_all(&self.read).await?
                            .iter().map(|r| decode(r, Some(key))).collect::<Result<Vec<_>>>()?
                    }
                    Some(Scope::Shared) => sqlx::query(&format!("SELECT {STORED_COLUMNS} FROM shared_resource_version WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC"))
                        .bind(t).bind(id).fetch_all(&self.read).await?
                        .iter().map(|r| decode(r, None)).collect::<Result<Vec<_>>>()?,
                    None => vec![],
                };
                Ok(rows)
            }

            /// After a locked append: the committed position is where the next batch starts; after
            /// a failure (committed or not, who knows) no position is assumed.
            fn remember_head<T>(&self, r: Result<(T, Frontier)>, batch: impl Fn(&T) -> u64) -> Result<T> {
                match r {
                    Ok((t, frontier)) => {
                        self.head.set(Some((batch(&t) as i64, frontier)));
                        Ok(t)
                    }
                    Err(e) => {
                        self.head.set(None);
                        Err(e)
                    }
                }
            }

            /// After a failed write transaction on SQLite, close the writer connection so the next
            /// write starts on a fresh one. A COMMIT or statement that fails for lack of disk space
            /// can leave the connection's transaction state out of step with the driver's (later
            /// "commits" then never reach the file — found by the disk-full test); a new
            /// connection cannot inherit that.
            async fn settle<T>(&self, r: Result<T>) -> Result<T> {
                if let Err(StoreError::Database(e)) = &r {
                    if $backend == Backend::Sqlite {
                        tracing::warn!(error = %e, "write failed; reopening the writer connection");
                        if let Ok(conn) = self.write.acquire().await {
                            let _ = conn.close().await;
                        }
                    }
                }
                r
            }

            async fn attached_open(&self, patient: PatientKey, encounters: &[String]) -> Result<Vec<Found>> {
                if encounters.is_empty() {
                    return Ok(vec![]);
                }
                // One index probe per wanted value on (patient_key, system, value); the few rows are
                // sorted here.
                let rows = self.attached_rows(patient, encounters).await?;
                let mut found = rows.iter()
                    .map(|r| {
                        let text: String = r.try_get("body_text")?;
                        let at: i64 = r.try_get("effective_at")?;
                        Ok((at, Found {
                            resource_type: r.try_get("resource_type")?,
                            id: r.try_get("id")?,
                            patient: Some(patient),
                            org: r.try_get("org_id")?,
                            effective_at: at,
                            json: StoredJson::from_store(text)?,
                        }))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Newest first, as the index order would have given.
                found.sort_by(|(a, fa), (b, fb)| b.cmp(a).then_with(|| fb.id.cmp(&fa.id)));
                Ok(found.into_iter().map(|(_, f)| f).collect())
            }

            async fn search_open(&self, q: &SearchQuery) -> Result<Page> {
                let scope = scope_of(&q.resource_type)
                    .ok_or_else(|| FhirError::bad_request(format!("resource type '{}' is not supported", q.resource_type)))?;
                let limit = i64::try_from(q.count).unwrap_or(1000) + 1;
                let sql = search_sql(q, scope).ok_or_else(|| {
                    FhirError::bad_request(format!("searching {} needs a patient or an identifier", q.resource_type))
                })?;
                let mut query = sqlx::query(&sql);
                if let Some((system, value)) = &q.identifier {
                    query = query.bind(system).bind(value);
                }
                query = query.bind(&q.resource_type);
                if let Some(k) = q.patient {
                    query = query.bind(k.0);
                }
                if let Some(c) = &q.after {
                    query = query.bind(c.effective_at).bind(&c.id);
                }
                let rows = query.bind(limit).fetch_all(&self.read).await?;
                let mut resources = Vec::with_capacity(rows.len());
                let mut last = None;
                for r in rows.iter().take(q.count) {
                    let key: Option<i64> = r.try_get("pk")?;
                    let text: String = r.try_get("body_text")?;
                    resources.push(Found {
                        resource_type: r.try_get("resource_type")?,
                        id: r.try_get("id")?,
                        patient: key.map(PatientKey),
                        org: r.try_get("org_id")?,
                        effective_at: r.try_get("effective_at")?,
                        json: StoredJson::from_store(text)?,
                    });
                    last = Some(Cursor { effective_at: r.try_get("effective_at")?, id: r.try_get("id")? });
                }
                let next = if rows.len() > q.count { last } else { None };
                Ok(Page { resources, next })
            }

        }

        fn session_insert_query(s: &SessionRow) -> sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments<'_>> {
            let a = s.acting_for.as_ref();
            sqlx::query(
                "INSERT INTO portal_session (id_hash, patient_key, hetu, display_name, acting_for, csrf_token, created_at, \
                 last_active_at, absolute_expiry, confirmed, idp_issuer, idp_sub, idp_sid, id_token, \
                 acting_for_hetu, acting_for_name, acting_via) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(&s.id_hash).bind(s.patient_key.0).bind(s.hetu.as_str()).bind(&s.display_name)
            .bind(a.map(|k| k.key.0)).bind(&s.csrf_token).bind(s.created_at).bind(s.last_active_at)
            .bind(s.absolute_expiry).bind(s.confirmed).bind(&s.idp_issuer).bind(&s.idp_sub)
            .bind(&s.idp_sid).bind(&s.id_token)
            .bind(a.map(|k| k.hetu.as_str().to_string())).bind(a.map(|k| k.name.clone())).bind(a.map(|k| k.via.code()))
        }

        fn session_row(r: &<$db as sqlx::Database>::Row) -> Result<SessionRow> {
            let h: String = r.try_get(2)?;
            Ok(SessionRow {
                id_hash: r.try_get(0)?,
                patient_key: PatientKey(r.try_get(1)?),
                hetu: hetu(&h)?,
                display_name: r.try_get(3)?,
                acting_for: match (
                    r.try_get::<Option<i64>, _>(4)?,
                    r.try_get::<Option<String>, _>(14)?,
                    r.try_get::<Option<String>, _>(15)?,
                    r.try_get::<Option<String>, _>(16)?,
                ) {
                    (Some(k), Some(h), Some(name), Some(via)) => Some(ActingFor {
                        key: PatientKey(k),
                        hetu: hetu(&h)?,
                        name,
                        via: ActingVia::from_code(&via)
                            .ok_or_else(|| StoreError::Corrupt(format!("acting_via {via}")))?,
                    }),
                    (None, _, _, _) => None,
                    _ => return Err(StoreError::Corrupt("a session's acting-for columns are incomplete".into())),
                },
                csrf_token: r.try_get(5)?,
                created_at: r.try_get(6)?,
                last_active_at: r.try_get(7)?,
                absolute_expiry: r.try_get(8)?,
                confirmed: r.try_get(9)?,
                idp_issuer: r.try_get(10)?,
                idp_sub: r.try_get(11)?,
                idp_sid: r.try_get(12)?,
                id_token: r.try_get(13)?,
            })
        }

        fn relation_row(r: &<$db as sqlx::Database>::Row, subject: Hetu, holder: Hetu) -> Result<Relation> {
            let kind: String = r.try_get("kind")?;
            let start: Option<String> = r.try_get("start_date")?;
            let end: Option<String> = r.try_get("end_date")?;
            let custody: Option<String> = r.try_get("custody")?;
            Ok(Relation {
                kind: RelationKind::from_code(&kind).ok_or_else(|| StoreError::Corrupt(format!("relation kind {kind}")))?,
                subject,
                holder,
                start: start.as_deref().map(parse_date).transpose()?,
                end: end.as_deref().map(parse_date).transpose()?,
                custody: custody.as_deref().and_then(CustodyAgreement::from_code),
            })
        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<()> {
                if $backend == Backend::Postgres {
                    // Never install into the cluster's maintenance or template databases: a URL that
                    // forgot its database name would otherwise fill `postgres` with Kanta's tables.
                    let name: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&self.write).await?;
                    if name == "postgres" || name.starts_with("template") {
                        return Err(StoreError::Refused(format!(
                            "refusing to create Kanta's tables in the '{name}' database; create a database for Kanta and name it in the URL"
                        )));
                    }
                }
                $migrator.run(&self.write).await?;
                Ok(())
            }

            async fn check_schema(&self) -> Result<()> {
                let wanted: Vec<i64> = $migrator.iter().map(|m| m.version).collect();
                // No table at all: never migrated.
                let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                    .fetch_all(&self.read)
                    .await
                    .unwrap_or_default();
                let missing: Vec<String> = wanted.iter().filter(|v| !applied.contains(v)).map(|v| format!("{v:04}")).collect();
                if !missing.is_empty() {
                    return Err(StoreError::Refused(format!(
                        "the database schema is behind this kanta (migrations {} not applied): run `kanta migrate --app-role <the server's role>` as the database owner, then start the server",
                        missing.join(", ")
                    )));
                }
                if let Some(newer) = applied.iter().find(|v| !wanted.contains(v)) {
                    tracing::warn!(migration = newer, "the database schema is ahead of this kanta (a newer version migrated it)");
                }
                Ok(())
            }

            async fn grant_app_role(&self, role: &str) -> Result<()> {
                let ok = !role.is_empty()
                    && role.len() <= 63
                    && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(StoreError::Refused(format!(
                        "'{role}' is not a role name this grants to (lowercase letters, digits, _)"
                    )));
                }
                match $backend {
                    Backend::Sqlite => Err(StoreError::Refused("SQLite has no roles: the server opens the file itself".into())),
                    Backend::Postgres => {
                        let sql = include_str!("../sql/app-role.sql").replace(":app_role", role);
                        sqlx::raw_sql(&sql).execute(&self.write).await?;
                        Ok(())
                    }
                }
            }

            async fn backup_to(&self, path: &str) -> Result<()> {
                match $backend {
                    Backend::Sqlite => {
                        sqlx::query("VACUUM INTO $1").bind(path).execute(&self.read).await?;
                        Ok(())
                    }
                    Backend::Postgres => Err(StoreError::Refused(
                        "back up PostgreSQL with pg_basebackup and WAL archiving (or pg_dump); see the README".into(),
                    )),
                }
            }
        }

        #[async_trait]
        impl Records for $store {
            async fn write(&self, request: WriteRequest, now: OffsetDateTime) -> Result<Sealed<Vec<Written>>> {
                let r = async {
                    let mut tx = self.begin_write().await?;
                    let written = apply(&mut tx, request, now).await?;
                    tx.tx.commit().await?;
                    self.locations.put_written(&written);
                    Ok(written)
                }
                .await;
                self.settle(r).await.map(Sealed::new)
            }

            async fn read(&self, t: &str, id: &str) -> Result<Sealed<Option<Stored>>> {
                self.read_open(t, id).await.map(Sealed::new)
            }

            async fn vread(&self, t: &str, id: &str, version: i32) -> Result<Sealed<Option<Stored>>> {
                Ok(Sealed::new(self.history_open(t, id).await?.into_iter().find(|s| s.version == version)))
            }

            async fn history(&self, t: &str, id: &str) -> Result<Sealed<Vec<Stored>>> {
                self.history_open(t, id).await.map(Sealed::new)
            }

            async fn search(&self, q: &SearchQuery) -> Result<Sealed<Page>> {
                self.search_open(q).await.map(Sealed::new)
            }

            async fn section(&self, q: &SectionQuery) -> Result<Sealed<SectionPage>> {
                let limit = i64::try_from(q.count).unwrap_or(1000) + 1;
                let sql = section_sql(q);
                let mut query = sqlx::query(&sql).bind(crate::ENCOUNTER_INDEX).bind(q.patient.0);
                if let Some(s) = &q.section {
                    query = query.bind(s);
                }
                if let Some(t) = q.since {
                    query = query.bind(t);
                }
                if let Some(t) = q.until {
                    query = query.bind(t);
                }
                if let Some(o) = &q.org {
                    query = query.bind(o);
                }
                if let Some((t, id)) = &q.only {
                    query = query.bind(t).bind(id);
                }
                if let Some(c) = &q.after {
                    query = query.bind(c.effective_at).bind(&c.id).bind(&c.resource_type);
                }
                let rows = query.bind(limit).fetch_all(&self.read).await?;
                let raw = StoredJson::from_store;
                let mut out = Vec::with_capacity(rows.len().min(q.count));
                for r in rows.iter().take(q.count) {
                    let enc_id: Option<String> = r.try_get("enc_id")?;
                    let enc_text: Option<String> = r.try_get("enc_text")?;
                    let enc_org: Option<String> = r.try_get("enc_org")?;
                    let enc_at: Option<i64> = r.try_get("enc_at")?;
                    let encounter = match (enc_id, enc_text) {
                        (Some(id), Some(text)) => Some(Found { resource_type: "Encounter".into(), id, patient: Some(q.patient), org: enc_org, effective_at: enc_at.unwrap_or_default(), json: raw(text)? }),
                        _ => None,
                    };
                    out.push(SectionRow {
                        found: Found {
                            resource_type: r.try_get("resource_type")?,
                            id: r.try_get("id")?,
                            patient: Some(q.patient),
                            org: r.try_get("org_id")?,
                            effective_at: r.try_get("effective_at")?,
                            json: raw(r.try_get("body_text")?)?,
                        },
                        org: r.try_get("org_id")?,
                        section: r.try_get("section")?,
                        effective_at: r.try_get("effective_at")?,
                        last_updated: r.try_get("last_updated")?,
                        encounter,
                    });
                }
                let next = if rows.len() > q.count {
                    out.last().map(|r| SectionCursor {
                        effective_at: r.effective_at,
                        id: r.found.id.clone(),
                        resource_type: r.found.resource_type.clone(),
                    })
                } else {
                    None
                };
                Ok(Sealed::new(SectionPage { rows: out, next }))
            }

            async fn section_providers(&self, patient: PatientKey, section: &str) -> Result<Sealed<SectionProviders>> {
                let orgs: Vec<Option<String>> = sqlx::query_scalar(
                    "SELECT DISTINCT org_id FROM resource WHERE patient_key = $1 AND section = $2 ORDER BY org_id",
                )
                .bind(patient.0)
                .bind(section)
                .fetch_all(&self.read)
                .await?;
                Ok(Sealed::new(SectionProviders { patient, section: section.to_string(), orgs: orgs.into_iter().flatten().collect() }))
            }

            async fn attached_to(&self, patient: PatientKey, encounters: &[String]) -> Result<Sealed<Vec<Found>>> {
                self.attached_open(patient, encounters).await.map(Sealed::new)
            }

            async fn visits(&self, patient: PatientKey, count: usize, after: Option<Cursor>) -> Result<Sealed<VisitsPage>> {
                let visits = self.search_open(&SearchQuery {
                    resource_type: "Encounter".into(),
                    patient: Some(patient),
                    identifier: None,
                    ascending: false,
                    count,
                    after,
                }).await?;
                let refs: Vec<String> = visits.resources.iter().map(|f| format!("Encounter/{}", f.id)).collect();
                let documents = self.attached_open(patient, &refs).await?;
                Ok(Sealed::new(VisitsPage { visits, documents }))
            }

            async fn write_audited(&self, request: WriteRequest, now: OffsetDateTime, access: &Access) -> Result<Committed<Vec<Written>>> {
                if !$audit_in_write {
                    // The write's records go into the outbox in its own transaction: the write
                    // and its records commit together; the writer makes them leaves.
                    let r = async {
                        let mut tx = self.begin_write().await?;
                        let written = apply(&mut tx, request, now).await?;
                        let records = records_for(written.touched(), access);
                        let pending = outbox_in(&mut *tx.tx, &records).await?;
                        tx.tx.commit().await?;
                        self.locations.put_written(&written);
                        Ok(Committed::Pending(pending, Sealed::new(written)))
                    }
                    .await;
                    return self.settle(r).await;
                }
                // One writer connection serialises SQLite's writes anyway: the write's audit records
                // join its transaction, so data and record commit together with one sync.
                let r = async {
                    let mut tx = self.begin_write().await?;
                    let written = apply(&mut tx, request, now).await?;
                    let records = records_for(written.touched(), access);
                    let (app, _) = append_in(&mut *tx.tx, &records).await?;
                    tx.tx.commit().await?;
                    self.locations.put_written(&written);
                    Ok(Committed::Released(Receipt::new(app.first_seq, records.len() as u64, app.batch), written))
                }
                .await;
                self.settle(r).await
            }

            async fn registry(&self, t: &str, id: &str) -> Result<Option<Stored>> {
                if scope_of(t) != Some(Scope::Shared) {
                    return Err(StoreError::Refused(format!("{t} is not shared registry data")));
                }
                self.read_open(t, id).await
            }

            async fn patient_key_of(&self, id: &str) -> Result<Option<PatientKey>> {
                self.locate("Patient", id).await
            }

            async fn patient_key_for_hetu(&self, h: &Hetu) -> Result<Option<PatientKey>> {
                Ok(self.key_of(h.as_str()).await?.map(|(k, _)| k))
            }
        }

        #[async_trait]
        impl Register for $store {
            async fn import_population(&self, records: &[PersonRecord], now: OffsetDateTime) -> Result<ImportSummary> {
                let now_ms = datetime::millis(now);
                let r = async {
                let mut tx = self.begin_write().await?;
                let mut summary = ImportSummary::default();
                let in_batch: std::collections::HashSet<&str> = records.iter().map(|r| r.person.hetu.as_str()).collect();
                for rec in records {
                    let p = &rec.person;
                    let (key, _) = tx.claim(p.hetu.as_str(), new_patient_key(), now_ms).await?;
                    sqlx::query(
                        "INSERT INTO person (patient_key, hetu, family_name, given_names, birth_date, deceased_date, non_disclosure, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (patient_key) DO UPDATE SET hetu = excluded.hetu, \
                         family_name = excluded.family_name, given_names = excluded.given_names, birth_date = excluded.birth_date, \
                         deceased_date = excluded.deceased_date, non_disclosure = excluded.non_disclosure, updated_at = excluded.updated_at",
                    )
                    .bind(key.0).bind(p.hetu.as_str()).bind(&p.family_name).bind(&p.given_names)
                    .bind(datetime::format_date(p.birth_date)).bind(p.deceased.map(datetime::format_date))
                    .bind(p.non_disclosure).bind(now_ms)
                    .execute(&mut *tx.tx).await?;
                    // Replace the relations about this person, in both directions.
                    let old_holders: Vec<i64> = sqlx::query_scalar("SELECT holder_key FROM relation WHERE patient_key = $1")
                        .bind(key.0).fetch_all(&mut *tx.tx).await?;
                    for h in old_holders {
                        sqlx::query("DELETE FROM relation_by_holder WHERE holder_key = $1 AND subject_key = $2")
                            .bind(h).bind(key.0).execute(&mut *tx.tx).await?;
                    }
                    sqlx::query("DELETE FROM relation WHERE patient_key = $1").bind(key.0).execute(&mut *tx.tx).await?;
                    for rel in &rec.relations {
                        let holder = rel.holder.as_str();
                        // The HETU's key through the routing table first, then the person on that
                        // key's shard: no join between tables distributed by different columns.
                        let holder_key: Option<i64> = sqlx::query_scalar("SELECT patient_key FROM patient_hetu WHERE hetu = $1")
                            .bind(holder).fetch_optional(&mut *tx.tx).await?;
                        let known: Option<i64> = match holder_key {
                            Some(k) => sqlx::query_scalar("SELECT patient_key FROM person WHERE patient_key = $1")
                                .bind(k).fetch_optional(&mut *tx.tx).await?,
                            None => None,
                        };
                        if known.is_none() && !in_batch.contains(holder) {
                            return Err(StoreError::Fhir(FhirError::invalid(
                                "Bundle.entry",
                                format!("a {} relation names a holder who is neither in this import nor in the register", rel.kind.code()),
                            )));
                        }
                        let (hk, _) = tx.claim(holder, new_patient_key(), now_ms).await?;
                        let start = rel.start.map(datetime::format_date);
                        let end = rel.end.map(datetime::format_date);
                        let custody = rel.custody.map(|c| c.code());
                        sqlx::query("INSERT INTO relation (patient_key, kind, holder_key, holder_hetu, start_date, end_date, custody) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                            .bind(key.0).bind(rel.kind.code()).bind(hk.0).bind(holder).bind(&start).bind(&end).bind(custody)
                            .execute(&mut *tx.tx).await?;
                        sqlx::query("INSERT INTO relation_by_holder (holder_key, kind, subject_key, subject_hetu, start_date, end_date, custody) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                            .bind(hk.0).bind(rel.kind.code()).bind(key.0).bind(p.hetu.as_str()).bind(&start).bind(&end).bind(custody)
                            .execute(&mut *tx.tx).await?;
                        summary.relations += 1;
                    }
                    summary.persons += 1;
                    summary.keys.push(key);
                }
                tx.tx.commit().await?;
                Ok(summary)
                }
                .await;
                self.settle(r).await
            }

            async fn person(&self, h: &Hetu) -> Result<Option<PersonRecord>> {
                let Some((key, _)) = self.key_of(h.as_str()).await? else { return Ok(None) };
                let Some(r) = sqlx::query("SELECT family_name, given_names, birth_date, deceased_date, non_disclosure FROM person WHERE patient_key = $1")
                    .bind(key.0).fetch_optional(&self.read).await? else { return Ok(None) };
                let birth: String = r.try_get(2)?;
                let deceased: Option<String> = r.try_get(3)?;
                let person = Person {
                    hetu: h.clone(),
                    family_name: r.try_get(0)?,
                    given_names: r.try_get(1)?,
                    birth_date: parse_date(&birth)?,
                    deceased: deceased.as_deref().map(parse_date).transpose()?,
                    non_disclosure: r.try_get(4)?,
                };
                let relations = self.relations_about(key, h).await?;
                Ok(Some(PersonRecord { person, relations }))
            }

            async fn relations_held_by(&self, h: &Hetu) -> Result<Vec<Relation>> {
                let Some((key, _)) = self.key_of(h.as_str()).await? else { return Ok(vec![]) };
                let rows = sqlx::query("SELECT kind, subject_hetu, start_date, end_date, custody FROM relation_by_holder WHERE holder_key = $1 ORDER BY subject_hetu, kind")
                    .bind(key.0).fetch_all(&self.read).await?;
                rows.iter().map(|r| relation_row(r, hetu(&r.try_get::<String, _>(1)?)?, h.clone())).collect()
            }

            async fn claim_patient_key(&self, h: &Hetu, now: OffsetDateTime) -> Result<PatientKey> {
                if let Some((k, _)) = self.key_of(h.as_str()).await? {
                    return Ok(k);
                }
                let r = async {
                    let mut tx = self.begin_write().await?;
                    let (key, _) = tx.claim(h.as_str(), new_patient_key(), datetime::millis(now)).await?;
                    tx.tx.commit().await?;
                    Ok(key)
                }
                .await;
                self.settle(r).await
            }
        }

        #[async_trait]
        impl Sessions for $store {
            async fn session_insert(&self, s: &SessionRow) -> Result<()> {
                session_insert_query(s).execute(&self.write).await?;
                Ok(())
            }

            async fn session_replace(&self, old_id_hash: &str, new: &SessionRow) -> Result<bool> {
                let mut tx = self.write.begin().await?;
                let gone = sqlx::query("DELETE FROM portal_session WHERE id_hash = $1")
                    .bind(old_id_hash).execute(&mut *tx).await?.rows_affected();
                if gone == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                session_insert_query(new).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn session_get(&self, id_hash: &str) -> Result<Option<SessionRow>> {
                // Off the writer connection: on SQLite every write (a large Bundle) queues on that one
                // connection, and a page's session check must not wait behind it. A session row is
                // committed before its cookie is sent, so a reader sees it.
                let row = sqlx::query(&format!("SELECT {SESSION_COLUMNS} FROM portal_session WHERE id_hash = $1"))
                    .bind(id_hash).fetch_optional(&self.read).await?;
                row.as_ref().map(session_row).transpose()
            }

            async fn session_touch(&self, id_hash: &str, at: i64) -> Result<()> {
                sqlx::query("UPDATE portal_session SET last_active_at = $2 WHERE id_hash = $1 AND last_active_at < $2")
                    .bind(id_hash).bind(at).execute(&self.write).await?;
                Ok(())
            }

            async fn session_confirm(&self, id_hash: &str) -> Result<()> {
                sqlx::query("UPDATE portal_session SET confirmed = $2 WHERE id_hash = $1")
                    .bind(id_hash).bind(true).execute(&self.write).await?;
                Ok(())
            }

            async fn session_delete(&self, id_hash: &str) -> Result<Option<SessionRow>> {
                let row = sqlx::query(&format!("DELETE FROM portal_session WHERE id_hash = $1 RETURNING {SESSION_COLUMNS}"))
                    .bind(id_hash).fetch_optional(&self.write).await?;
                row.as_ref().map(session_row).transpose()
            }

            async fn sessions_end_for_idp(&self, issuer: &str, sid: Option<&str>, sub: Option<&str>) -> Result<Vec<SessionRow>> {
                let rows = match (sid, sub) {
                    (Some(sid), _) => sqlx::query(&format!("DELETE FROM portal_session WHERE idp_issuer = $1 AND idp_sid = $2 RETURNING {SESSION_COLUMNS}"))
                        .bind(issuer).bind(sid).fetch_all(&self.write).await?,
                    (None, Some(sub)) => sqlx::query(&format!("DELETE FROM portal_session WHERE idp_issuer = $1 AND idp_sub = $2 RETURNING {SESSION_COLUMNS}"))
                        .bind(issuer).bind(sub).fetch_all(&self.write).await?,
                    (None, None) => vec![],
                };
                rows.iter().map(session_row).collect()
            }

            async fn sessions_prune(&self, idle_before: i64, now: i64, login_before: i64) -> Result<Vec<SessionRow>> {
                let gone = sqlx::query(&format!("DELETE FROM portal_session WHERE last_active_at <= $1 OR absolute_expiry <= $2 RETURNING {SESSION_COLUMNS}"))
                    .bind(idle_before).bind(now).fetch_all(&self.write).await?;
                sqlx::query("DELETE FROM portal_login WHERE created_at < $1").bind(login_before).execute(&self.write).await?;
                gone.iter().map(session_row).collect()
            }

            async fn login_begin(&self, l: &PendingLogin) -> Result<()> {
                sqlx::query("INSERT INTO portal_login (state_hash, nonce, pkce_verifier, lang, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&l.state_hash).bind(&l.nonce).bind(&l.pkce_verifier).bind(&l.lang).bind(l.created_at)
                    .execute(&self.write).await?;
                Ok(())
            }

            async fn login_take(&self, state_hash: &str) -> Result<Option<PendingLogin>> {
                let row = sqlx::query("DELETE FROM portal_login WHERE state_hash = $1 RETURNING state_hash, nonce, pkce_verifier, lang, created_at")
                    .bind(state_hash).fetch_optional(&self.write).await?;
                row.map(|r| Ok(PendingLogin {
                    state_hash: r.try_get(0)?,
                    nonce: r.try_get(1)?,
                    pkce_verifier: r.try_get(2)?,
                    lang: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })).transpose()
            }
        }

        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(&self, records: &[AuditRecord]) -> Result<AuditAppend> {
                if let Some(app) = self.append_one_statement(records).await? {
                    return Ok(app);
                }
                let r = async {
                    let mut tx = self.write.begin().await?;
                    let (app, frontier) = append_in(&mut *tx, records).await?;
                    tx.commit().await?;
                    Ok((app, frontier))
                }
                .await;
                let r = self.remember_head(r, |a| a.batch);
                self.settle(r).await
            }

            async fn audit_drain(&self, ids: Option<&[i64]>) -> Result<Drained> {
                let r = async {
                    let mut tx = self.write.begin().await?;
                    // The tree's lock first: another writer making leaves is waited for, and the
                    // outbox is read after it committed, so what it took is gone and never appended
                    // twice. (Not row locks on the outbox: on Citus a FOR UPDATE that spans shards
                    // is refused, and the outbox is distributed by id.)
                    sqlx::query(concat!("SELECT tree_size FROM audit_state WHERE id = 1", $for_update))
                        .fetch_optional(&mut *tx)
                        .await?;
                    let rows = match ids {
                        Some([]) => vec![],
                        Some(ids) => {
                            let mut all = vec![];
                            for chunk in ids.chunks(AUDIT_CHUNK) {
                                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                                let sql = format!(
                                    "SELECT id, patient_key, recorded_at, body FROM audit_outbox WHERE id IN ({}) ORDER BY id",
                                    marks.join(", "),
                                );
                                let mut q = sqlx::query(&sql);
                                for id in chunk {
                                    q = q.bind(*id);
                                }
                                all.extend(q.fetch_all(&mut *tx).await?);
                            }
                            all
                        }
                        None => sqlx::query("SELECT id, patient_key, recorded_at, body FROM audit_outbox ORDER BY id LIMIT 1000")
                            .fetch_all(&mut *tx)
                            .await?,
                    };
                    if rows.is_empty() {
                        return Ok((Drained::default(), None));
                    }
                    let mut taken = Vec::with_capacity(rows.len());
                    let mut bodies = Vec::with_capacity(rows.len());
                    for r in &rows {
                        taken.push(r.try_get::<i64, _>(0)?);
                        bodies.push((r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?, r.try_get::<String, _>(3)?));
                    }
                    let (app, frontier) = append_bodies_in(&mut *tx, &bodies).await?;
                    for chunk in taken.chunks(AUDIT_CHUNK) {
                        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                        let sql = format!("DELETE FROM audit_outbox WHERE id IN ({})", marks.join(", "));
                        let mut q = sqlx::query(&sql);
                        for id in chunk {
                            q = q.bind(*id);
                        }
                        q.execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    let seqs = taken.iter().enumerate().map(|(i, id)| (*id, app.first_seq + i as u64)).collect();
                    Ok((Drained { append: Some(app), seqs }, Some(frontier)))
                }
                .await;
                let r = match r {
                    Ok((d, Some(f))) => self.remember_head(Ok((d, f)), |d: &Drained| d.append.as_ref().map_or(0, |a| a.batch)),
                    Ok((d, None)) => Ok(d),
                    Err(e) => { self.head.set(None); Err(e) }
                };
                self.settle(r).await
            }

            async fn audit_drain_rows(&self, rows: &[PendingAudit]) -> Result<Drained> {
                if let Some(d) = self.drain_one_statement(rows).await? {
                    return Ok(d);
                }
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                self.audit_drain(Some(&ids)).await
            }

            async fn audit_pending(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_outbox").fetch_one(&self.read).await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn audit_head(&self) -> Result<(u64, Hash)> {
                let row = sqlx::query("SELECT tree_size, frontier FROM audit_state WHERE id = 1").fetch_one(&self.read).await?;
                let f = parse_frontier(row.try_get(0)?, &row.try_get::<String, _>(1)?)?;
                Ok((f.size(), f.root()))
            }

            async fn add_checkpoint(&self, c: &Checkpoint) -> Result<()> {
                sqlx::query("INSERT INTO audit_checkpoint (tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING")
                    .bind(c.tree_size as i64).bind(c.root.to_vec()).bind(&c.note).bind(c.created_at)
                    .execute(&self.write).await?;
                Ok(())
            }

            async fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
                let rows = sqlx::query("SELECT tree_size, root_hash, note, created_at FROM audit_checkpoint ORDER BY tree_size")
                    .fetch_all(&self.read).await?;
                rows.iter()
                    .map(|r| Ok(Checkpoint {
                        tree_size: r.try_get::<i64, _>(0)? as u64,
                        root: hash_of(&r.try_get::<Vec<u8>, _>(1)?)?,
                        note: r.try_get(2)?,
                        created_at: r.try_get(3)?,
                    }))
                    .collect()
            }

            async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<StoredAudit>> {
                let rows = sqlx::query("SELECT seq, patient_key, recorded_at, batch, leaf_hash, body, pruned_at FROM audit_record WHERE seq >= $1 AND seq < $2 ORDER BY seq")
                    .bind(from as i64).bind(to as i64).fetch_all(&self.read).await?;
                rows.iter().map(|r| audit_row(r)).collect()
            }

            async fn audit_of_patient(&self, patient: PatientKey, before_seq: Option<u64>, limit: usize) -> Result<Vec<StoredAudit>> {
                let before = before_seq.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
                let rows = sqlx::query("SELECT seq, patient_key, recorded_at, batch, leaf_hash, body, pruned_at FROM audit_record WHERE patient_key = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3")
                    .bind(patient.0).bind(before).bind(limit as i64).fetch_all(&self.read).await?;
                rows.iter().map(|r| audit_row(r)).collect()
            }

            async fn audit_prune(&self, recorded_before: i64, now: i64, limit: usize) -> Result<u64> {
                let done = sqlx::query(
                    "UPDATE audit_record SET body = '', pruned_at = $1 WHERE (patient_key, seq) IN \
                     (SELECT patient_key, seq FROM audit_record WHERE recorded_at < $2 AND pruned_at IS NULL ORDER BY seq LIMIT $3)",
                )
                .bind(now)
                .bind(recorded_before)
                .bind(limit as i64)
                .execute(&self.write)
                .await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait]
        impl Clients for $store {
            async fn upsert_client(&self, c: &ClientRecord, now: OffsetDateTime) -> Result<()> {
                sqlx::query(
                    "INSERT INTO api_client (client_id, org_id, name, roles, secret_sha256, jwks, created_at, enabled, scopes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (client_id) DO UPDATE SET org_id = excluded.org_id, name = excluded.name, roles = excluded.roles, \
                     secret_sha256 = excluded.secret_sha256, jwks = excluded.jwks, enabled = excluded.enabled, scopes = excluded.scopes",
                )
                .bind(&c.client_id).bind(c.org.as_str()).bind(&c.name).bind(c.roles.join(" "))
                .bind(&c.secret_sha256).bind(&c.jwks).bind(datetime::millis(now)).bind(c.enabled).bind(&c.scopes)
                .execute(&self.write).await?;
                Ok(())
            }

            async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>> {
                let row = sqlx::query("SELECT client_id, org_id, name, roles, secret_sha256, jwks, enabled, scopes FROM api_client WHERE client_id = $1")
                    .bind(client_id).fetch_optional(&self.read).await?;
                row.map(|r| {
                    let roles: String = r.try_get(3)?;
                    Ok(ClientRecord {
                        client_id: r.try_get(0)?,
                        org: OrgId::new(r.try_get::<String, _>(1)?),
                        name: r.try_get(2)?,
                        roles: roles.split_whitespace().map(str::to_string).collect(),
                        secret_sha256: r.try_get(4)?,
                        jwks: r.try_get(5)?,
                        enabled: r.try_get(6)?,
                        scopes: r.try_get(7)?,
                    })
                })
                .transpose()
            }

            async fn remember_assertion(&self, client_id: &str, jti: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Result<bool> {
                let r = async {
                    let mut tx = self.write.begin().await?;
                    sqlx::query("DELETE FROM client_assertion_jti WHERE client_id = $1 AND expires_at < $2")
                        .bind(client_id).bind(datetime::millis(now)).execute(&mut *tx).await?;
                    let done = sqlx::query("INSERT INTO client_assertion_jti (client_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (client_id, jti) DO NOTHING")
                        .bind(client_id).bind(jti).bind(datetime::millis(expires_at)).execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() == 1)
                }
                .await;
                self.settle(r).await
            }
        }
    };
}

/// The statement of a FHIR search (parameters in the order `search` binds them: identifier system
/// and value, type, patient, cursor, limit). Built here, outside the backends, so that the shard-key
/// guard (`tests/shard_keys.rs`) checks every shape it takes.
/// `None` for a search of patient data that names neither the patient nor an identifier: a scan of
/// every patient, which the store never sends.
pub fn search_sql(q: &SearchQuery, scope: Scope) -> Option<String> {
    if scope == Scope::Patient && q.patient.is_none() && q.identifier.is_none() {
        return None;
    }
    let (cmp, dir) = if q.ascending {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let mut sql = String::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let table = if scope == Scope::Patient {
        "resource"
    } else {
        "shared_resource"
    };
    let key_col = if scope == Scope::Patient {
        "r.patient_key"
    } else {
        "NULL"
    };
    sql.push_str(&format!("SELECT {key_col} AS pk, r.resource_type, r.id, r.effective_at, r.org_id, r.body AS body_text FROM {table} r "));
    if q.identifier.is_some() {
        let tokens = if scope == Scope::Patient {
            "resource_token"
        } else {
            "shared_token"
        };
        let join_key = if scope == Scope::Patient {
            "t.patient_key = r.patient_key AND "
        } else {
            ""
        };
        sql.push_str(&format!("JOIN {tokens} t ON {join_key}t.resource_type = r.resource_type AND t.id = r.id AND t.system = {} AND t.value = {} ", next(), next()));
    }
    sql.push_str(&format!("WHERE r.resource_type = {} ", next()));
    if q.patient.is_some() {
        sql.push_str(&format!("AND r.patient_key = {} ", next()));
    }
    if q.after.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(
            "AND (r.effective_at {cmp} {a} OR (r.effective_at = {a} AND r.id {cmp} {b})) "
        ));
    }
    sql.push_str(&format!(
        "ORDER BY r.effective_at {dir}, r.id {dir} LIMIT {}",
        next()
    ));
    Some(sql)
}

/// The statement of a MyKanta section page (parameters: the encounter index's system, the patient,
/// then the filters as `section` binds them, the limit last); for the shard-key guard as
/// [`search_sql`].
pub fn section_sql(q: &SectionQuery) -> String {
    let mut sql = String::new();
    let mut n = 2;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    // The service event rides along through the encounter index; both joins stay on the
    // patient's shard (patient_key in every join condition).
    sql.push_str(
        "SELECT r.resource_type, r.id, r.effective_at, r.last_updated, r.org_id, r.section, r.body AS body_text, \
         e.id AS enc_id, e.org_id AS enc_org, e.effective_at AS enc_at, e.body AS enc_text FROM resource r \
         LEFT JOIN resource_token t ON t.patient_key = r.patient_key AND t.resource_type = r.resource_type AND t.id = r.id AND t.system = $1 \
         LEFT JOIN resource e ON e.patient_key = r.patient_key AND e.resource_type = 'Encounter' AND e.id = substr(t.value, 11) \
         WHERE r.patient_key = $2 ",
    );
    match &q.section {
        Some(_) => sql.push_str(&format!("AND r.section = {} ", next())),
        None => sql.push_str("AND r.section IS NOT NULL "),
    }
    if q.since.is_some() {
        sql.push_str(&format!("AND r.effective_at >= {} ", next()));
    }
    if q.until.is_some() {
        sql.push_str(&format!("AND r.effective_at < {} ", next()));
    }
    if q.org.is_some() {
        sql.push_str(&format!("AND r.org_id = {} ", next()));
    }
    if q.only.is_some() {
        sql.push_str(&format!(
            "AND r.resource_type = {} AND r.id = {} ",
            next(),
            next()
        ));
    }
    if q.after.is_some() {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(
            "AND (r.effective_at < {a} OR (r.effective_at = {a} AND (r.id < {b} OR (r.id = {b} AND r.resource_type < {c})))) "
        ));
    }
    sql.push_str(&format!(
        "ORDER BY r.effective_at DESC, r.id DESC, r.resource_type DESC LIMIT {}",
        next()
    ));
    sql
}

mod sqlite_impl {
    use super::*;
    backend!(
        SqliteStore,
        SqliteTx,
        Sqlite,
        Backend::Sqlite,
        "",
        true,
        sqlx::migrate!("./migrations/sqlite")
    );

    impl SqliteStore {
        /// SQLite has no data-modifying `WITH`: a write's rows go per table.
        fn one_statement_writes(&self) -> bool {
            false
        }
    }

    impl SqliteTx {
        async fn put_one_statement(&mut self, _: &Layout<'_, '_>) -> Result<bool> {
            Ok(false)
        }
    }
}

mod postgres_impl {
    use super::*;
    backend!(
        PgStore,
        PgTx,
        Postgres,
        Backend::Postgres,
        " FOR UPDATE",
        false,
        sqlx::migrate!("./migrations/postgres")
    );

    /// Parameters in one statement at most (PostgreSQL takes 65,535); a larger write goes per table.
    const ONE_STATEMENT_PARAMETERS: usize = 30_000;

    impl PgStore {
        /// Off on Citus, which routes each distributed statement by one shard key (a write's
        /// locators are placed by resource, its rows by patient).
        fn one_statement_writes(&self) -> bool {
            self.one_statement_append
        }
    }

    impl PgTx {
        /// A write's patient rows in one statement of data-modifying `WITH` parts, one round trip
        /// where the per-table inserts take four or five (issue 15). The parts run against the
        /// statement's one snapshot: the replaced tokens are the ones stored before it, so the
        /// new tokens are never deleted. `false` when it does not apply (nothing to write, or
        /// too many parameters); then the caller writes per table.
        pub(super) async fn put_one_statement(&mut self, l: &Layout<'_, '_>) -> Result<bool> {
            if l.current.is_empty() || l.parameters() > ONE_STATEMENT_PARAMETERS {
                return Ok(false);
            }
            let mut parts: Vec<String> = vec![];
            let mut n = 0;
            if !l.new.is_empty() {
                parts.push(format!(
                    "one_write_locators AS ({LOCATOR_INSERT} {})",
                    values_after(n, l.new.len(), 3, &[])
                ));
                n += l.new.len() * 3;
            }
            parts.push(format!(
                "one_write_current AS ({RESOURCE_INSERT} {} {RESOURCE_UPSERT})",
                values_after(n, l.current.len(), 10, &[])
            ));
            n += l.current.len() * 10;
            parts.push(format!(
                "one_write_versions AS ({VERSION_INSERT} {})",
                values_after(n, l.versions.len(), 7, &[])
            ));
            n += l.versions.len() * 7;
            if !l.replaced.is_empty() {
                parts.push(format!(
                    "one_write_replaced AS (DELETE FROM resource_token t USING (VALUES {}) AS r (k, rt, rid) \
                     WHERE t.patient_key = r.k AND t.resource_type = r.rt AND t.id = r.rid)",
                    values_after(n, l.replaced.len(), 3, &["::bigint", "::text", "::text"])
                ));
                n += l.replaced.len() * 3;
            }
            if !l.tokens.is_empty() {
                parts.push(format!(
                    "one_write_tokens AS ({TOKEN_INSERT} {})",
                    values_after(n, l.tokens.len(), 5, &[])
                ));
            }
            let sql = format!("WITH {} SELECT 1", parts.join(", "));
            let key = Layout::key;
            let mut q = sqlx::query(&sql);
            for r in &l.new {
                q = q.bind(r.resource_type).bind(r.id).bind(key(r));
            }
            for (r, text) in &l.current {
                q = bind_current!(q, r, *text);
            }
            for (r, text) in &l.versions {
                q = bind_version!(q, r, *text);
            }
            for r in &l.replaced {
                q = q.bind(key(r)).bind(r.resource_type).bind(r.id);
            }
            for (r, (system, value)) in &l.tokens {
                q = bind_token!(q, r, system, value);
            }
            q.execute(&mut *self.tx).await.map_err(conflict_on_unique)?;
            Ok(true)
        }
    }
}
