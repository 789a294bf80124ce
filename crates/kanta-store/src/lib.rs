//! Storage: one [`Store`] trait, implemented for SQLite (embedded, the demo) and PostgreSQL
//! (production; the schema is ready to be distributed by patient on Citus).
//!
//! Architecture invariants:
//! - All SQL lives in this crate; handlers never see a query.
//! - Every patient-scoped row carries `patient_key`; queries of patient data are scoped by it.
//! - A write is all-or-nothing: [`Store::write`] applies a whole transaction Bundle or nothing.
//! - The store never reads the clock: `now` is a parameter.

pub mod audit;
mod backend;
pub mod centre;
pub mod citus;
pub mod conformance;
pub mod testing;
mod write;

use async_trait::async_trait;
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::{OrgId, PatientKey};
use kanta_domain::population::{PersonRecord, Relation};
use kanta_fhir::FhirError;
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;

pub use audit::Sealed;
pub use backend::pg_pool_options;
/// The statements built at run time, for the shard-key guard (`tests/shard_keys.rs`).
pub use backend::{search_sql, section_sql};

/// The store's parts, for callers that use them through `dyn Store` (`use kanta_store::prelude::*`).
pub mod prelude {
    pub use crate::{AuditStore, Clients, Records, Register, Sessions, Store};
}
pub use write::{
    CitizenWrite, WriteOp, WriteRequest, Written, CONSENTS_PER_WRITER_MAX, ENCOUNTER_INDEX,
    MANDATE_PRODUCER_INDEX,
};

use kanta_domain::audit::AuditRecord;
use kanta_domain::merkle::Hash;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A failure of the store. `Fhir` carries a client-facing problem (not found, conflict, invalid);
/// `Database` is internal and is logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Fhir(#[from] FhirError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A request this store will not carry out (wrong database, unsupported operation).
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// The FHIR error to show a client.
    pub fn to_fhir(&self) -> FhirError {
        match self {
            StoreError::Fhir(e) => e.clone(),
            StoreError::Database(sqlx::Error::PoolTimedOut) => FhirError::new(
                kanta_fhir::ErrorKind::Unavailable,
                "the record store is busy; try again shortly",
            ),
            // PostgreSQL broke a deadlock or a serialisation conflict (two Bundles locking the
            // same prescriptions in another order): nothing was written; the client may retry.
            StoreError::Database(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                FhirError::new(
                    kanta_fhir::ErrorKind::Conflict,
                    "a concurrent write took the same records; nothing was stored; retry",
                )
            }
            e if e.is_storage_full() => FhirError::new(
                kanta_fhir::ErrorKind::Unavailable,
                "the record store has no room to write; nothing was stored; try again later",
            ),
            _ => FhirError::internal(),
        }
    }

    /// The database ran out of disk space (SQLite `SQLITE_FULL`, PostgreSQL `53100 disk_full`): an
    /// operator's problem, not a client's; the write was rolled back whole.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("13") | Some("53100"))
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored version of a resource, with `id` and `meta` filled in.
#[derive(Clone, Debug)]
pub struct Stored {
    pub resource_type: String,
    pub id: String,
    pub version: i32,
    pub last_updated: OffsetDateTime,
    pub patient: Option<PatientKey>,
    /// The organisation whose system wrote this version (the recording unit).
    pub org: Option<String>,
    pub body: Value,
}

/// A search hit: the stored JSON as it is, unparsed (a searchset passes it straight through).
#[derive(Clone, Debug)]
pub struct Found {
    pub resource_type: String,
    pub id: String,
    pub patient: Option<PatientKey>,
    /// The organisation whose register holds it (whose system wrote the current version).
    pub org: Option<String>,
    /// Its clinically relevant date (epoch ms), as indexed.
    pub effective_at: i64,
    pub json: StoredJson,
}

/// A resource's JSON text as the store holds it. The store wrote it from a resource it had parsed
/// and checked, so a read passes it on without parsing it again (issue 15: re-validating every
/// body on the hot read path cost ~3% of a read's CPU). A row that does not even look like one
/// JSON object is refused as corrupt. Parsed at most once, when first looked inside: the access
/// decision's facts and then the page read the same parse (the visits page parsed every body
/// twice, 45% of its CPU).
#[derive(Clone, Debug)]
pub struct StoredJson {
    text: Box<str>,
    parsed: std::sync::OnceLock<Value>,
}

impl StoredJson {
    pub(crate) fn from_store(text: String) -> Result<StoredJson> {
        let t = text.trim_ascii();
        if t.starts_with('{') && t.ends_with('}') {
            Ok(StoredJson {
                text: text.into_boxed_str(),
                parsed: std::sync::OnceLock::new(),
            })
        } else {
            Err(StoreError::Corrupt("stored JSON is not an object".into()))
        }
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.text
    }

    /// The parsed JSON (`null` for text that does not parse, which the store never wrote).
    pub fn value(&self) -> &Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.text).unwrap_or(Value::Null))
    }

    /// The JSON in its borrowed form, parsed on each call (cheap: no `String` per key or plain
    /// string), or the `Value` when that was parsed already. Text that does not parse reads as
    /// `null`, as in [`StoredJson::value`].
    pub fn doc(&self) -> kanta_fhir::json::Doc<'_> {
        static NULL: Value = Value::Null;
        if let Some(v) = self.parsed.get() {
            return kanta_fhir::json::Doc::Value(v);
        }
        match kanta_fhir::json::lite(&self.text) {
            Some(l) => kanta_fhir::json::Doc::Lite(l),
            None => kanta_fhir::json::Doc::Value(&NULL),
        }
    }
}

impl Found {
    /// The parsed JSON (for callers that need to look inside), parsed once.
    pub fn value(&self) -> &Value {
        self.json.value()
    }

    /// An owned copy of the parsed JSON.
    pub fn to_value(&self) -> Value {
        self.value().clone()
    }
}

/// Where a search continues from: the sort key of the last row of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub effective_at: i64,
    pub id: String,
}

#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub resource_type: String,
    /// Required for patient-scoped types other than Patient.
    pub patient: Option<PatientKey>,
    pub identifier: Option<(String, String)>,
    pub ascending: bool,
    pub count: usize,
    pub after: Option<Cursor>,
}

#[derive(Clone, Debug)]
pub struct Page {
    pub resources: Vec<Found>,
    pub next: Option<Cursor>,
}

/// Where a section's list continues from: the sort key of the last row of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionCursor {
    pub effective_at: i64,
    pub id: String,
    pub resource_type: String,
}

/// One page of a patient's records in a MyKanta section (R-VIEW-2), newest first: one query on the
/// patient's shard through the `resource_by_section` index.
#[derive(Clone, Debug)]
pub struct SectionQuery {
    pub patient: PatientKey,
    /// A `Section::code()`, or every section.
    pub section: Option<String>,
    /// Effective at or after (epoch ms).
    pub since: Option<i64>,
    /// Effective before (epoch ms).
    pub until: Option<i64>,
    /// Recorded by this organisation.
    pub org: Option<String>,
    /// Just this resource (type, id): the detail view.
    pub only: Option<(String, String)>,
    pub count: usize,
    pub after: Option<SectionCursor>,
}

/// One resource of a section page, with what the page needs beside it: who recorded it, and the
/// service event it is attached to (for the display rules' context), read in the same query.
#[derive(Debug)]
pub struct SectionRow {
    pub found: Found,
    pub org: Option<String>,
    pub section: Option<String>,
    pub effective_at: i64,
    pub last_updated: i64,
    pub encounter: Option<Found>,
}

#[derive(Debug)]
pub struct SectionPage {
    pub rows: Vec<SectionRow>,
    pub next: Option<SectionCursor>,
}

/// A page of a patient's visits and care periods with the care documents attached to them.
#[derive(Debug)]
pub struct VisitsPage {
    pub visits: Page,
    pub documents: Vec<Found>,
}

/// The organisations that have recorded something in one of a patient's sections (the provider
/// filter's choices): personal data, released through the audit log like the records.
#[derive(Debug)]
pub struct SectionProviders {
    pub patient: PatientKey,
    pub section: String,
    pub orgs: Vec<String>,
}

/// A system that calls the API, and the organisation it acts for.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub client_id: String,
    pub org: OrgId,
    pub name: String,
    pub roles: Vec<String>,
    /// SHA-256 (hex) of the client secret, for demo clients using client_secret_basic/post.
    pub secret_sha256: Option<String>,
    /// The client's public keys (a JWK Set, JSON) for private_key_jwt.
    pub jwks: Option<String>,
    /// Whether the client may be used; a disabled client's tokens are refused on their next use.
    pub enabled: bool,
    /// The SMART scopes the client is registered for (space-separated `system/…`).
    pub scopes: String,
}

impl std::fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("org", &self.org)
            .field("roles", &self.roles)
            .field(
                "secret_sha256",
                &self.secret_sha256.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks", &self.jwks.is_some())
            .field("enabled", &self.enabled)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// An audit record as stored: its place in the log and the bytes its leaf hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAudit {
    pub seq: u64,
    pub patient: Option<PatientKey>,
    pub recorded_at: i64,
    pub batch: u64,
    pub leaf_hash: Hash,
    /// Empty once the record's retention has passed and the retention job has emptied it.
    pub body: String,
    /// When the retention job emptied it (ms), if it has.
    pub pruned_at: Option<i64>,
}

/// One record a write put in the outbox, as it put it there (the bytes its leaf will cover).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAudit {
    pub id: i64,
    /// The patient key, or 0 for none.
    pub patient: i64,
    pub recorded_at: i64,
    pub body: String,
}

/// What a drain of the outbox did: the append (none if nothing was pending) and, for each outbox
/// id it drained, the record's sequence number.
#[derive(Clone, Debug, Default)]
pub struct Drained {
    pub append: Option<AuditAppend>,
    pub seqs: Vec<(i64, u64)>,
}

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditAppend {
    pub first_seq: u64,
    pub tree_size: u64,
    pub batch: u64,
    pub root: Hash,
}

/// A signed statement of the log's size and root (C2SP signed-note text in `note`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash,
    pub note: String,
    pub created_at: i64,
}

/// On what a switch to act for another person rested (R-MINOR-1, R-PROXY-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActingVia {
    /// Guardianship in the population register.
    Guardian,
    /// A right to information in the population register.
    RightToInformation,
    /// A health-care-errands mandate in the mandate service.
    Mandate,
}

impl ActingVia {
    pub const ALL: [ActingVia; 3] = [
        ActingVia::Guardian,
        ActingVia::RightToInformation,
        ActingVia::Mandate,
    ];
    pub fn code(self) -> &'static str {
        match self {
            ActingVia::Guardian => "guardian",
            ActingVia::RightToInformation => "right-to-information",
            ActingVia::Mandate => "mandate",
        }
    }
    pub fn from_code(c: &str) -> Option<ActingVia> {
        ActingVia::ALL.into_iter().find(|v| v.code() == c)
    }
}

/// The person a session acts for.
#[derive(Clone, PartialEq, Eq)]
pub struct ActingFor {
    pub key: PatientKey,
    pub hetu: Hetu,
    pub name: String,
    pub via: ActingVia,
}

impl std::fmt::Debug for ActingFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActingFor")
            .field("key", &self.key)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

/// A citizen's portal session as stored (R-AUTH-4, R-AUTH-5). Times are milliseconds since the epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie's session id; the id itself is never stored.
    pub id_hash: String,
    pub patient_key: PatientKey,
    pub hetu: Hetu,
    pub display_name: String,
    /// Whom the citizen acts for now, if not themselves.
    pub acting_for: Option<ActingFor>,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub absolute_expiry: i64,
    /// Whether the citizen has checked their data on the confirm page (R-AUTH-3).
    pub confirmed: bool,
    pub idp_issuer: String,
    pub idp_sub: String,
    pub idp_sid: Option<String>,
    /// The ID token, sent back as `id_token_hint` at logout.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("patient_key", &self.patient_key)
            .field("created_at", &self.created_at)
            .field("last_active_at", &self.last_active_at)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// An authorisation request under way (state, nonce, PKCE verifier), taken once by the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub state_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub lang: String,
    pub created_at: i64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("lang", &self.lang)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What an import changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub persons: usize,
    pub relations: usize,
    /// The patient keys of the persons imported (for the audit records of the import).
    pub keys: Vec<PatientKey>,
}

/// The whole store: its parts, and what concerns the database as such.
#[async_trait]
pub trait Store: Records + Register + Sessions + AuditStore + Clients + 'static {
    fn backend(&self) -> Backend;
    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;
    /// Run pending migrations (as the database's owner: `kanta migrate`).
    async fn migrate(&self) -> Result<()>;
    /// Whether the schema has every migration this build knows (the server runs as a role that
    /// cannot migrate, so it checks instead): `Refused` naming what is missing and what to run
    /// when behind. A schema ahead of this build (a newer kanta migrated) is `Ok` with a warning.
    async fn check_schema(&self) -> Result<()>;
    /// PostgreSQL: grant the server's least-privilege role what it needs (`sql/app-role.sql`: the
    /// records, sessions and outbox read and written, the audit tables append-only, the schema
    /// version readable). Run as the owner after migrating. SQLite: refused (no roles).
    async fn grant_app_role(&self, role: &str) -> Result<()>;
    /// Write a consistent copy of the whole database to `path` while serving (SQLite: `VACUUM
    /// INTO`). PostgreSQL answers with how to back it up instead (base backup with WAL archiving).
    async fn backup_to(&self, path: &str) -> Result<()>;
}

/// Patient records and the registry (R-DOC, R-VIEW). Record contents come back [`Sealed`]: only
/// `AuditLog::release` opens them, after the access decision and the audit records for them (R-OPS-3).
#[async_trait]
pub trait Records: Send + Sync {
    /// Apply writes (one resource, or a whole transaction Bundle) all-or-nothing.
    async fn write(
        &self,
        request: WriteRequest,
        now: OffsetDateTime,
    ) -> Result<Sealed<Vec<Written>>>;
    /// A write whose audit records (one per patient written, for `access`) commit with it: as
    /// leaves of the tree in its transaction (SQLite, one writer), or into the outbox in its
    /// transaction (PostgreSQL), which `AuditLog::settle` has the group-commit writer make leaves
    /// before anything is released.
    async fn write_audited(
        &self,
        request: WriteRequest,
        now: OffsetDateTime,
        access: &audit::Access,
    ) -> Result<audit::Committed<Vec<Written>>>;
    async fn read(&self, resource_type: &str, id: &str) -> Result<Sealed<Option<Stored>>>;
    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i32,
    ) -> Result<Sealed<Option<Stored>>>;
    /// All versions, newest first.
    async fn history(&self, resource_type: &str, id: &str) -> Result<Sealed<Vec<Stored>>>;
    async fn search(&self, query: &SearchQuery) -> Result<Sealed<Page>>;
    /// A patient's resources attached to any of these service events (`Encounter/<id>`), current
    /// versions, through the encounter index (R-DOC-1: care documents point to their service event).
    async fn attached_to(
        &self,
        patient: PatientKey,
        encounters: &[String],
    ) -> Result<Sealed<Vec<Found>>>;
    /// A page of a patient's visits and care periods, newest first, with their care documents, read
    /// together so that one audit release covers the page.
    async fn visits(
        &self,
        patient: PatientKey,
        count: usize,
        after: Option<Cursor>,
    ) -> Result<Sealed<VisitsPage>>;
    /// A page of a patient's section (R-VIEW-2), each row with its service event.
    async fn section(&self, query: &SectionQuery) -> Result<Sealed<SectionPage>>;
    /// The organisations that have recorded in a patient's section.
    async fn section_providers(
        &self,
        patient: PatientKey,
        section: &str,
    ) -> Result<Sealed<SectionProviders>>;
    /// Shared registry data (Organization, Practitioner, …): no patient's data, so not sealed and
    /// not audited. Refuses patient-scoped types.
    async fn registry(&self, resource_type: &str, id: &str) -> Result<Option<Stored>>;
    /// The patient key behind `Patient/<id>`.
    async fn patient_key_of(&self, patient_resource_id: &str) -> Result<Option<PatientKey>>;
    /// The patient key for a HETU, if the platform has seen the person.
    async fn patient_key_for_hetu(&self, hetu: &Hetu) -> Result<Option<PatientKey>>;
}

/// The population register's copy (R-AUTH-2, R-MINOR).
#[async_trait]
pub trait Register: Send + Sync {
    /// Replace what the register says about each person given (all-or-nothing).
    async fn import_population(
        &self,
        records: &[PersonRecord],
        now: OffsetDateTime,
    ) -> Result<ImportSummary>;
    async fn person(&self, hetu: &Hetu) -> Result<Option<PersonRecord>>;
    /// Relations in which `hetu` is the holder (whom this person may act for).
    async fn relations_held_by(&self, hetu: &Hetu) -> Result<Vec<Relation>>;
    /// The patient key for a HETU, claimed now if the platform has not seen the person (a citizen
    /// identified from the identification service's attributes alone). Creates no register entry.
    async fn claim_patient_key(&self, hetu: &Hetu, now: OffsetDateTime) -> Result<PatientKey>;
}

/// Portal sessions and logins under way (R-AUTH-4, R-AUTH-5).
#[async_trait]
pub trait Sessions: Send + Sync {
    async fn session_insert(&self, session: &SessionRow) -> Result<()>;
    async fn session_get(&self, id_hash: &str) -> Result<Option<SessionRow>>;
    /// Record activity (extends the idle timeout).
    async fn session_touch(&self, id_hash: &str, at: i64) -> Result<()>;
    async fn session_confirm(&self, id_hash: &str) -> Result<()>;
    /// End a session; returns it if it existed.
    async fn session_delete(&self, id_hash: &str) -> Result<Option<SessionRow>>;
    /// Replace a session by another (a switch of whom one acts for gets a new session id), in one
    /// transaction; `false` if the old session no longer existed (nothing is inserted then).
    async fn session_replace(&self, old_id_hash: &str, new: &SessionRow) -> Result<bool>;
    /// End the sessions the identity provider names in a logout (by `sid`, or by `sub` when it sends
    /// no `sid`); returns the sessions ended.
    async fn sessions_end_for_idp(
        &self,
        issuer: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Vec<SessionRow>>;
    /// Delete sessions idle since `idle_before` or earlier, or past their absolute expiry at `now`, and
    /// logins begun before `login_before`. Returns the sessions that went (for their audit records).
    async fn sessions_prune(
        &self,
        idle_before: i64,
        now: i64,
        login_before: i64,
    ) -> Result<Vec<SessionRow>>;
    async fn login_begin(&self, login: &PendingLogin) -> Result<()>;
    /// Take (and delete) a login under way; `None` if unknown or already taken.
    async fn login_take(&self, state_hash: &str) -> Result<Option<PendingLogin>>;
}

/// The audit log's storage (R-OPS-4); `audit::AuditLog` is its only writer.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append records in one durable transaction, extending the Merkle tree.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<AuditAppend>;
    /// Make records waiting in the outbox leaves of the tree, in one transaction that also removes
    /// them: these ids (those still there), or with `None` up to 1,000 of whatever is pending (the
    /// recovery after a crash). Returns the append and each drained id's sequence number.
    async fn audit_drain(&self, ids: Option<&[i64]>) -> Result<Drained>;
    /// Make these outbox records leaves, given as their writes put them there (in ascending id
    /// order): what `audit_drain(Some(ids))` does, but a store may do it without reading them back.
    async fn audit_drain_rows(&self, rows: &[PendingAudit]) -> Result<Drained> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        self.audit_drain(Some(&ids)).await
    }
    /// How many records wait in the outbox (committed with their writes, not yet leaves).
    async fn audit_pending(&self) -> Result<u64>;
    /// The tree size and root now.
    async fn audit_head(&self) -> Result<(u64, Hash)>;
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()>;
    /// All checkpoints, oldest first.
    async fn checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// Records with `from <= seq < to`, in order.
    async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<StoredAudit>>;
    /// A patient's records, newest (highest sequence number) first, from below `before_seq` if
    /// given: page through a whole history with the last `seq` of the previous page.
    async fn audit_of_patient(
        &self,
        patient: PatientKey,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredAudit>>;
    /// Retention (R-OPS-5): empty up to `limit` records recorded before `recorded_before` (oldest
    /// first), keeping their place in the tree; returns how many. The database refuses to empty a
    /// record younger than three years.
    async fn audit_prune(&self, recorded_before: i64, now: i64, limit: usize) -> Result<u64>;
}

/// The client register: systems that call the API (read on every request by the access decision).
#[async_trait]
pub trait Clients: Send + Sync {
    async fn upsert_client(&self, client: &ClientRecord, now: OffsetDateTime) -> Result<()>;
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>>;
    /// Remember a client-assertion id until it expires; false if it was seen before (replay).
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool>;
}

/// Open a store from a URL: `sqlite://path/to/file.db` (created if missing) or `postgres://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(backend::PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(backend::SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Refused(format!(
            "unsupported database URL scheme (use sqlite:// or postgres://): {}",
            url.split(':').next().unwrap_or("")
        )))
    }
}

/// A patient's `Consent` resources (current versions), for the access decision's facts only
/// (R-CONSENT-1): what the disclosure rule reads before it judges the patient's records. They are
/// never rendered or sent from here — a page or an API that shows consents reads them through
/// [`Records::search`] and the audited release. Each as (id, the register holding it, JSON). At
/// most `CONSENT_FACTS_MAX` records: a patient
/// with more fails closed (an error, not a partial set of facts).
pub async fn consents_for_decision(
    store: &dyn Store,
    patient: PatientKey,
) -> Result<Vec<(String, Option<String>, Value)>> {
    let mut q = SearchQuery {
        resource_type: "Consent".into(),
        patient: Some(patient),
        identifier: None,
        ascending: true,
        count: 1000,
        after: None,
    };
    let mut out = vec![];
    loop {
        let page = store.search(&q).await?.into_inner();
        for f in page.resources {
            let v = f.to_value();
            out.push((f.id, f.org, v));
        }
        if out.len() > CONSENT_FACTS_MAX {
            return Err(StoreError::Refused(format!(
                "more than {CONSENT_FACTS_MAX} consent records for one patient"
            )));
        }
        match page.next {
            Some(c) => q.after = Some(c),
            None => return Ok(out),
        }
    }
}

/// The most consent records one patient's facts are read from.
pub const CONSENT_FACTS_MAX: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database error with a SQLSTATE of our choosing.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "sqlstate {}", self.0)
        }
    }
    impl std::error::Error for Coded {}
    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "the database refused"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// Issue 30: a deadlock PostgreSQL broke, or a serialisation conflict, is a 409 the client may
    /// retry (nothing was stored); a full disk is a 503; anything else a 500 that names nothing.
    #[test]
    fn database_failures_map_to_what_a_client_can_do() {
        let status = |code: &'static str| {
            StoreError::Database(sqlx::Error::Database(Box::new(Coded(code))))
                .to_fhir()
                .kind
                .status()
        };
        assert_eq!(status("40P01"), 409, "deadlock detected");
        assert_eq!(status("40001"), 409, "serialization failure");
        assert_eq!(status("53100"), 503, "disk full (PostgreSQL)");
        assert_eq!(status("13"), 503, "SQLITE_FULL");
        assert_eq!(status("23505"), 500, "anything else");
        let e = StoreError::Database(sqlx::Error::Database(Box::new(Coded("40P01")))).to_fhir();
        assert!(
            !format!("{e:?}").contains("sqlstate"),
            "the database's own words stay in the log: {e:?}"
        );
    }
}
