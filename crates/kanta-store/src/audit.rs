//! The audit log's writer and reader (R-OPS-3, R-OPS-4, R-VIEW-5, R-CONSENT-3).
//!
//! - **Fail closed by type.** Record reads come out of the [`Store`] as [`Sealed`] values; the only
//!   way to open one is [`AuditLog::release`], which first commits one audit record per patient the
//!   data touches and returns the contents together with a [`Receipt`]. No receipt, no data.
//! - **Group commit.** One writer task owns the audit appends. Requests queue their records; the
//!   writer takes everything waiting (up to `max_batch`), appends it in one durable transaction that
//!   also extends the Merkle tree, and answers each request with its receipt. A failed commit fails
//!   every request in the batch.
//! - **Tamper evidence.** Leaves are RFC 9162 hashes of each record's canonical bytes; the writer
//!   keeps the tree's right edge, and signs checkpoints (C2SP signed-note text, Ed25519) of the tree
//!   size and root. [`verify`] recomputes everything from the stored bytes.

use crate::{Checkpoint, Cursor, Found, Page, Store, StoreError, Stored, Written};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kanta_domain::access::{Basis, Decision, Target};
use kanta_domain::audit::{Action, Actor, AuditRecord, Outcome, AUDIT_SCHEMA};
use kanta_domain::ids::{ClientRole, PatientKey};
use kanta_domain::merkle::{self, Frontier, Hash};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Data that may be released only through the audit log.
#[must_use = "sealed data is released only through AuditLog::release"]
pub struct Sealed<T>(T);

impl<T> std::fmt::Debug for Sealed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(<personal data>)")
    }
}

impl<T> Sealed<T> {
    pub(crate) fn new(value: T) -> Self {
        Sealed(value)
    }

    /// For this crate's own tests (the conformance suite checks stored values directly).
    pub(crate) fn into_inner(self) -> T {
        self.0
    }

    /// The organisations whose registers hold these records (and their service events), so that
    /// the facts about them can be loaded before the access decision judges the records. Nothing
    /// of the records themselves leaves.
    pub fn holders(&self) -> std::collections::BTreeSet<String>
    where
        T: Gated,
    {
        self.0
            .subjects()
            .iter()
            .flat_map(|s| {
                s.holder
                    .into_iter()
                    .chain(s.service_event.and_then(|e| e.org.as_deref()))
            })
            .map(str::to_string)
            .collect()
    }

    /// Two sealed values as one, released (and audited) together.
    pub fn zip<U>(self, other: Sealed<U>) -> Sealed<(T, U)> {
        Sealed((self.0, other.0))
    }
}

impl<T: Gated> Sealed<T> {
    /// The judge's answer for every record, without releasing or recording anything: for a
    /// decision that rests on another record (a version is released only as its resource's
    /// current version is). Only the answers leave.
    pub fn judged(&self, judge: impl FnMut(&Subject<'_>) -> bool) -> Vec<bool> {
        self.0.subjects().iter().map(judge).collect()
    }

    /// The patients some of whose records are held in a register other than `org`'s (their
    /// consents are the disclosure rule's facts). Nothing of the records leaves.
    pub fn patients_held_elsewhere(&self, org: &str) -> std::collections::BTreeSet<PatientKey> {
        self.0
            .subjects()
            .iter()
            .filter(|s| s.holder.is_some_and(|h| h != org))
            .filter_map(|s| s.patient)
            .collect()
    }
}

impl Sealed<Page> {
    pub fn len(&self) -> usize {
        self.0.resources.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.resources.is_empty()
    }
    /// Where the store's search would continue (after the last record it read).
    pub fn next(&self) -> Option<Cursor> {
        self.0.next.clone()
    }
    /// Drop the records `keep` refuses, before release: a search then pages over refused
    /// records as if they were absent. Nothing is released or recorded.
    pub fn retain(&mut self, mut keep: impl FnMut(&Subject<'_>) -> bool) {
        let flags: Vec<bool> = self.0.subjects().iter().map(&mut keep).collect();
        let page = std::mem::replace(
            &mut self.0,
            Page {
                resources: vec![],
                next: None,
            },
        );
        self.0 = page.keep(&flags);
    }
    /// The records of a later page of the same search after these.
    pub fn extend(&mut self, more: Sealed<Page>) {
        self.0.resources.extend(more.0.resources);
        self.0.next = more.0.next;
    }
    /// The search continues after the last record kept (none kept: it ends here), so that a
    /// cursor never names a record that was dropped.
    pub fn limit_after_last(&mut self) {
        self.0.next = self.0.resources.last().map(|f| Cursor {
            effective_at: f.effective_at,
            id: f.id.clone(),
        });
    }
    /// At most `n` records; when more were kept, the search continues after the `n`th.
    pub fn limit(&mut self, n: usize) {
        if self.0.resources.len() > n {
            self.0.resources.truncate(n);
            self.0.next = self.0.resources.last().map(|f| Cursor {
                effective_at: f.effective_at,
                id: f.id.clone(),
            });
        }
    }
}

/// Proof that the audit records for a response were durably committed. Only the writer makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    first_seq: u64,
    count: u64,
    batch: u64,
}

impl Receipt {
    pub(crate) fn new(first_seq: u64, count: u64, batch: u64) -> Self {
        Receipt {
            first_seq,
            count,
            batch,
        }
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }
    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The leaf indexes of this request's records.
    pub fn seqs(&self) -> std::ops::Range<u64> {
        self.first_seq..self.first_seq + self.count
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log could not be written")]
    Unavailable,
}

/// A write as the store returns it: audited in its own transaction (its records leaves already,
/// or waiting in the outbox with these ids for the writer to make them leaves), or sealed.
#[must_use = "written data is released only through AuditLog::settle"]
pub enum Committed<T> {
    Released(Receipt, T),
    Pending(Vec<crate::PendingAudit>, Sealed<T>),
    Sealed(Sealed<T>),
}

/// Who is asking, for what, in which request: everything in an audit record but the patient and
/// the entities, which [`AuditLog::release`] reads off the data itself.
#[derive(Clone, Debug)]
pub struct Access {
    pub actor: Actor,
    pub on_behalf_of: Option<PatientKey>,
    pub action: Action,
    pub query: Option<String>,
    pub request_id: Option<String>,
    pub now_ms: i64,
    /// The patient asked about, recorded even when nothing was found.
    pub subject: Option<PatientKey>,
}

/// One released record as its audit record names it: whose, which, and on what basis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    pub patient: Option<PatientKey>,
    pub entity: String,
    pub basis: Option<Basis>,
    /// What was done to it, when not the request's action (a conditional create that found an
    /// existing resource read it).
    pub action: Option<Action>,
}

/// Values a write released: which patients' data, which resources, on what basis. (Writes are
/// decided inside their transaction, so they carry their permits' bases already.)
pub trait Touches {
    fn touched(&self) -> Vec<Touch>;
}

impl Touches for Written {
    fn touched(&self) -> Vec<Touch> {
        vec![Touch {
            patient: self.stored.patient,
            entity: format!("{}/{}", self.stored.resource_type, self.stored.id),
            basis: Some(self.basis.clone()),
            action: self.matched.then_some(Action::Read),
        }]
    }
}
impl<T: Touches> Touches for Vec<T> {
    fn touched(&self) -> Vec<Touch> {
        self.iter().flat_map(Touches::touched).collect()
    }
}

/// A record's JSON as the store holds it.
#[derive(Clone, Copy, Debug)]
pub enum Json<'a> {
    /// The stored text, parsed when first looked inside (and then once for every reader).
    Stored(&'a crate::StoredJson),
    Value(&'a serde_json::Value),
    /// Not a resource (a summary such as the list of units that recorded in a section).
    None,
}

impl<'a> Json<'a> {
    /// The parsed JSON (`null` for none).
    pub fn value(&self) -> &'a serde_json::Value {
        static NULL: serde_json::Value = serde_json::Value::Null;
        match self {
            Json::Stored(s) => s.value(),
            Json::Value(v) => v,
            Json::None => &NULL,
        }
    }

    /// An owned copy of the parsed JSON.
    pub fn to_value(&self) -> serde_json::Value {
        self.value().clone()
    }

    /// The JSON for reading through `kanta_fhir::json::Node`: stored text in the borrowed form,
    /// parsed now (unless it was parsed as a `Value` already), a `Value` as it is.
    pub fn doc(&self) -> kanta_fhir::json::Doc<'a> {
        match self {
            Json::Stored(s) => s.doc(),
            Json::Value(_) | Json::None => kanta_fhir::json::Doc::Value(self.value()),
        }
    }
}

/// One record inside sealed data, as the access decision sees it before release.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub patient: Option<PatientKey>,
    /// The organisation whose register holds it.
    pub holder: Option<&'a str>,
    pub resource_type: &'a str,
    pub id: &'a str,
    pub json: Json<'a>,
    /// A section row's service event (context for the display rules), released with the row.
    pub service_event: Option<&'a Found>,
    /// A summary about the patient rather than one record.
    pub summary: bool,
    /// Its clinically relevant date (epoch ms), when the store read it.
    pub effective_at: Option<i64>,
}

impl<'a> Subject<'a> {
    /// A found record as the access decision sees it.
    pub fn of_found(f: &'a Found) -> Subject<'a> {
        Subject {
            patient: f.patient,
            holder: f.org.as_deref(),
            resource_type: &f.resource_type,
            id: &f.id,
            json: Json::Stored(&f.json),
            service_event: None,
            summary: false,
            effective_at: Some(f.effective_at),
        }
    }

    fn of_stored(s: &'a Stored) -> Subject<'a> {
        Subject {
            patient: s.patient,
            holder: s.org.as_deref(),
            resource_type: &s.resource_type,
            id: &s.id,
            json: Json::Value(&s.body),
            service_event: None,
            summary: false,
            effective_at: None,
        }
    }

    /// What the access decision is asked about.
    pub fn target(&self) -> Target<'a> {
        match (self.patient, self.summary) {
            (Some(p), true) => Target::Summary { patient: p },
            (Some(p), false) => Target::Patient {
                patient: Some(p),
                holder: self.holder,
            },
            (None, _) => Target::Shared,
        }
    }

    /// The entities its audit record names.
    fn entities(&self) -> Vec<String> {
        let mut e = vec![format!("{}/{}", self.resource_type, self.id)];
        if let Some(enc) = self.service_event {
            e.push(format!("{}/{}", enc.resource_type, enc.id));
        }
        e
    }
}

/// Sealed values made of records that the access decision judges one by one before release.
pub trait Gated: Sized {
    /// Every record, in a fixed order.
    fn subjects(&self) -> Vec<Subject<'_>>;
    /// Keep the records whose place in [`Gated::subjects`] is `true` in `keep`.
    fn keep(self, keep: &[bool]) -> Self;
}

fn mask<T>(items: Vec<T>, keep: &[bool]) -> Vec<T> {
    items
        .into_iter()
        .zip(keep.iter().chain(std::iter::repeat(&false)))
        .filter_map(|(item, k)| k.then_some(item))
        .collect()
}

impl Gated for Option<Stored> {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.iter().map(Subject::of_stored).collect()
    }
    fn keep(self, keep: &[bool]) -> Self {
        self.filter(|_| keep.first() == Some(&true))
    }
}
impl Gated for Vec<Stored> {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.iter().map(Subject::of_stored).collect()
    }
    fn keep(self, keep: &[bool]) -> Self {
        mask(self, keep)
    }
}
impl Gated for Vec<Found> {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.iter().map(Subject::of_found).collect()
    }
    fn keep(self, keep: &[bool]) -> Self {
        mask(self, keep)
    }
}
impl Gated for Page {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.resources.subjects()
    }
    fn keep(self, keep: &[bool]) -> Self {
        Page {
            resources: mask(self.resources, keep),
            next: self.next,
        }
    }
}
impl Gated for crate::VisitsPage {
    fn subjects(&self) -> Vec<Subject<'_>> {
        let mut s = self.visits.subjects();
        s.extend(self.documents.subjects());
        s
    }
    fn keep(self, keep: &[bool]) -> Self {
        let n = self.visits.resources.len().min(keep.len());
        crate::VisitsPage {
            visits: self.visits.keep(&keep[..n]),
            documents: mask(self.documents, &keep[n..]),
        }
    }
}
impl Gated for crate::SectionPage {
    fn subjects(&self) -> Vec<Subject<'_>> {
        self.rows
            .iter()
            .map(|r| Subject {
                holder: r.org.as_deref(),
                service_event: r.encounter.as_ref(),
                ..Subject::of_found(&r.found)
            })
            .collect()
    }
    fn keep(self, keep: &[bool]) -> Self {
        crate::SectionPage {
            rows: mask(self.rows, keep),
            next: self.next,
        }
    }
}
impl Gated for crate::SectionProviders {
    fn subjects(&self) -> Vec<Subject<'_>> {
        vec![Subject {
            patient: Some(self.patient),
            holder: None,
            resource_type: "section",
            id: &self.section,
            json: Json::None,
            service_event: None,
            summary: true,
            effective_at: None,
        }]
    }
    fn keep(self, keep: &[bool]) -> Self {
        if keep.first() == Some(&true) {
            self
        } else {
            crate::SectionProviders {
                orgs: vec![],
                ..self
            }
        }
    }
}
impl<A: Gated, B: Gated> Gated for (A, B) {
    fn subjects(&self) -> Vec<Subject<'_>> {
        let mut s = self.0.subjects();
        s.extend(self.1.subjects());
        s
    }
    fn keep(self, keep: &[bool]) -> Self {
        let n = self.0.subjects().len().min(keep.len());
        (self.0.keep(&keep[..n]), self.1.keep(&keep[n..]))
    }
}

/// The records a release hands over, and the touches its audit records name: each subject's
/// decision applied, in order. A missing decision counts as a denial (fail closed).
fn judged(subjects: &[Subject<'_>], decisions: &[Decision]) -> (Vec<bool>, Vec<Touch>) {
    let mut keep = Vec::with_capacity(subjects.len());
    let mut touches = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        match decisions.get(i) {
            Some(Decision::Permit(p)) => {
                keep.push(true);
                for entity in s.entities() {
                    touches.push(Touch {
                        patient: s.patient,
                        entity,
                        basis: Some(p.basis().clone()),
                        action: None,
                    });
                }
            }
            Some(Decision::Denied(_)) | None => keep.push(false),
        }
    }
    (keep, touches)
}

/// One audit record per patient, action and basis touched (none for shared reference data alone).
pub fn records_for(touched: Vec<Touch>, access: &Access) -> Vec<AuditRecord> {
    let mut by_patient: BTreeMap<(PatientKey, Action, Option<Basis>), Vec<String>> =
        BTreeMap::new();
    for t in touched {
        if let Some(p) = t.patient {
            let action = t.action.unwrap_or(access.action);
            by_patient
                .entry((p, action, t.basis))
                .or_default()
                .push(t.entity);
        }
    }
    if let Some(s) = access.subject {
        if !by_patient.keys().any(|(p, _, _)| *p == s) {
            by_patient.entry((s, access.action, None)).or_default();
        }
    }
    by_patient
        .into_iter()
        .map(|((patient, action, basis), entities)| AuditRecord {
            schema: AUDIT_SCHEMA,
            recorded_at: access.now_ms,
            patient: Some(patient),
            // The role that carried the permit names the actor.
            actor: match (&access.actor, basis.as_ref().and_then(|b| b.role)) {
                (Actor::Organisation { client_id, .. }, Some(ClientRole::Operator)) => {
                    Actor::Operator {
                        client_id: client_id.clone(),
                    }
                }
                (actor, _) => actor.clone(),
            },
            on_behalf_of: access.on_behalf_of,
            action,
            entities,
            query: access.query.clone(),
            outcome: Outcome::Success,
            request_id: access.request_id.clone(),
            basis,
        })
        .collect()
}

/// The key that signs checkpoints.
pub struct Signer {
    name: String,
    pair: Ed25519KeyPair,
}

impl Signer {
    /// `name` is the signer's name in signed notes (e.g. `kanta.example.fi/audit`).
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Signer, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| "the audit signing key is not an Ed25519 PKCS#8 key".to_string())?;
        Ok(Signer {
            name: name.to_string(),
            pair,
        })
    }

    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| "cannot generate an audit signing key".to_string())
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A C2SP checkpoint note signed with this key.
    pub fn checkpoint(&self, size: u64, root: &Hash) -> String {
        let body = checkpoint_body(&self.name, size, root);
        let sig = self.pair.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.public_key()).to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// Signed-note key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key).
fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([1u8]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Check a checkpoint note's signature and read its size and root.
pub fn open_checkpoint(note: &str, name: &str, public_key: &[u8]) -> Option<(u64, Hash)> {
    let (body, sigs) = note.split_once("\n\n")?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    if lines.next()? != name {
        return None;
    }
    let size: u64 = lines.next()?.parse().ok()?;
    let root: Hash = B64.decode(lines.next()?).ok()?.try_into().ok()?;
    let want = key_id(name, public_key);
    let ok = sigs.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((n, b)) = rest.split_once(' ') else {
            return false;
        };
        let Ok(blob) = B64.decode(b) else {
            return false;
        };
        n == name
            && blob.len() == 68
            && blob[..4] == want
            && UnparsedPublicKey::new(&ED25519, public_key)
                .verify(body.as_bytes(), &blob[4..])
                .is_ok()
    });
    ok.then_some((size, root))
}

pub struct AuditConfig {
    /// Most records in one commit.
    pub max_batch: usize,
    /// Sign a checkpoint when this long has passed since the last one (and the tree grew).
    pub checkpoint_every: Duration,
    pub signer: Signer,
    /// Where to publish each new checkpoint for an outside witness (overwritten atomically).
    pub witness_file: Option<PathBuf>,
    /// Each new checkpoint note is also handed here (e.g. to a task that sends it to a witness
    /// over HTTP). Never blocks the writer: when the receiver lags, a note is dropped — the next
    /// one covers it, since a later checkpoint commits to everything before it.
    pub witness_channel: Option<mpsc::Sender<String>>,
}

/// What a request asks of the writer: records to append, or its write's records in the outbox to
/// make leaves.
enum Work {
    Append(Vec<AuditRecord>),
    Drain(Vec<crate::PendingAudit>),
}

struct Job {
    work: Work,
    done: oneshot::Sender<Result<Receipt, AuditError>>,
}

impl Job {
    fn len(&self) -> usize {
        match &self.work {
            Work::Append(r) => r.len(),
            Work::Drain(rows) => rows.len(),
        }
    }
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    /// A drain of writes' outbox records failed and the writer has not yet found the outbox empty
    /// since (the operator's alarm: `/readyz` says the audit log is behind).
    behind: Arc<std::sync::atomic::AtomicBool>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<Faults>,
}

/// Make the writer fail: at batch `at` once, or at every batch from `from` on (1-based).
#[cfg(feature = "fault-injection")]
#[derive(Default)]
pub struct Faults {
    pub at: std::sync::atomic::AtomicU64,
    pub from: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
}

#[cfg(feature = "fault-injection")]
impl Faults {
    /// Batches the writer has attempted so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl AuditLog {
    /// Start the writer task.
    pub fn start(store: Arc<dyn Store>, config: AuditConfig) -> AuditLog {
        let (tx, rx) = mpsc::channel::<Job>(8192);
        #[cfg(feature = "fault-injection")]
        let faults = Arc::new(Faults::default());
        let behind = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            store,
            config,
            last_checkpoint: None,
            behind: behind.clone(),
            #[cfg(feature = "fault-injection")]
            faults: faults.clone(),
        };
        tokio::spawn(writer.run(rx));
        AuditLog {
            tx,
            behind,
            #[cfg(feature = "fault-injection")]
            faults,
        }
    }

    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Whether records committed with their writes wait in the outbox because the writer's last
    /// drain failed (for `/readyz`): the data and its records are durable, the leaves are late.
    pub fn is_behind(&self) -> bool {
        self.behind.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Commit records durably; returns when their batch has committed.
    pub async fn commit(&self, records: Vec<AuditRecord>) -> Result<Receipt, AuditError> {
        if records.is_empty() {
            return Ok(Receipt {
                first_seq: 0,
                count: 0,
                batch: 0,
            });
        }
        self.send(Work::Append(records)).await
    }

    async fn send(&self, work: Work) -> Result<Receipt, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { work, done })
            .await
            .map_err(|_| AuditError::Unavailable)?;
        wait.await.map_err(|_| AuditError::Unavailable)?
    }

    /// Release a write: if the store already committed its audit records, as is; otherwise through
    /// the writer. A write's records were decided inside its transaction and carry their bases.
    pub async fn settle<T: Touches>(
        &self,
        committed: Committed<T>,
        access: &Access,
    ) -> Result<(Receipt, T), AuditError> {
        match committed {
            Committed::Released(receipt, value) => Ok((receipt, value)),
            // Stored with the write; released once they are leaves. If this fails, the records
            // stay in the outbox and become leaves at the next drain: the write is never without
            // them, and the caller hears that nothing was released.
            // A write that committed never answers an error (issue 30: a pharmacy told 503 retried
            // and dispensed twice): its records committed with it, in the outbox, so what it
            // releases has its committed records even when making them leaves fails now. The
            // writer retries on every tick; the operator is told (log, metric, `/readyz`).
            Committed::Pending(rows, sealed) => {
                let receipt = if rows.is_empty() {
                    Receipt::new(0, 0, 0)
                } else {
                    let n = rows.len();
                    match self.send(Work::Drain(rows)).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.behind.store(true, std::sync::atomic::Ordering::SeqCst);
                            metrics::counter!("kanta_audit_drain_deferred_total").increment(1);
                            tracing::error!(
                                records = n,
                                "a committed write's audit records stay in the outbox (the drain failed); answered as committed, the writer retries on its next tick"
                            );
                            Receipt::new(0, n as u64, 0)
                        }
                    }
                };
                Ok((receipt, sealed.0))
            }
            Committed::Sealed(sealed) => {
                let records = records_for(sealed.0.touched(), access);
                let receipt = self.commit(records).await?;
                Ok((receipt, sealed.0))
            }
        }
    }

    /// Judge every record of sealed data with the access decision, record who received the
    /// permitted ones (and on what basis), then hand over exactly those. `judge` answers one
    /// [`Decision`] per subject, in order; only `kanta_domain::access::decide` makes a permit, so
    /// nothing is released without one.
    pub async fn release<T: Gated>(
        &self,
        sealed: Sealed<T>,
        access: &Access,
        judge: impl FnOnce(&[Subject<'_>]) -> Vec<Decision>,
    ) -> Result<(Receipt, T), AuditError> {
        let (keep, touches) = {
            let subjects = sealed.0.subjects();
            let decisions = judge(&subjects);
            judged(&subjects, &decisions)
        };
        let records = records_for(touches, access);
        let receipt = self.commit(records).await?;
        Ok((receipt, sealed.0.keep(&keep)))
    }
}

struct Writer {
    store: Arc<dyn Store>,
    config: AuditConfig,
    last_checkpoint: Option<(Instant, u64)>,
    behind: Arc<std::sync::atomic::AtomicBool>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<Faults>,
}

/// Every how many ticks the writer looks in the outbox for records no request of this instance
/// waits for (left by another instance that died): the only scan of the outbox while all is well
/// (30 s at the default 1 s tick).
const OUTBOX_SWEEP_TICKS: u32 = 30;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        // Records can also enter the tree inside a write's own transaction (SQLite): the ticker
        // checkpoints those too while the log grows.
        let mut tick =
            tokio::time::interval(self.config.checkpoint_every.max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // After a crash: what writes committed with their records but never saw made leaves.
        self.drain_pending().await;
        self.gauge_pending().await;
        let mut ticks_since_sweep = 0u32;
        loop {
            let first = tokio::select! {
                job = rx.recv() => match job {
                    Some(j) => j,
                    None => break,
                },
                _ = tick.tick() => {
                    // Records left in the outbox — by a drain that failed here (every tick until
                    // one succeeds), or by another instance that died (a sweep every
                    // `OUTBOX_SWEEP_TICKS`): one bounded pass, so a steady stream of new writes never
                    // holds the queue up. An idle instance does not scan the outbox (on Citus every
                    // shard) every tick.
                    ticks_since_sweep += 1;
                    let sweep = ticks_since_sweep >= OUTBOX_SWEEP_TICKS;
                    if sweep || self.behind.load(std::sync::atomic::Ordering::SeqCst) {
                        self.drain_once().await;
                        self.gauge_pending().await;
                        ticks_since_sweep = 0;
                    }
                    if let Ok((size, root)) = self.store.audit_head().await {
                        self.maybe_checkpoint(size, root).await;
                    }
                    continue;
                }
            };
            let mut n = first.len();
            let mut all = vec![first];
            while n < self.config.max_batch {
                match rx.try_recv() {
                    Ok(j) => {
                        n += j.len();
                        all.push(j);
                    }
                    Err(_) => break,
                }
            }
            let (drains, jobs): (Vec<Job>, Vec<Job>) = all
                .into_iter()
                .partition(|j| matches!(j.work, Work::Drain(_)));
            if !drains.is_empty() {
                self.drain(drains).await;
            }
            if jobs.is_empty() {
                continue;
            }
            let records: Vec<AuditRecord> = jobs
                .iter()
                .flat_map(|j| match &j.work {
                    Work::Append(r) => r.clone(),
                    Work::Drain(_) => vec![],
                })
                .collect();
            let result = if self.injected_failure() {
                Err(StoreError::Corrupt("injected audit failure".into()))
            } else {
                self.store.append_audit(&records).await
            };
            match result {
                Ok(app) => {
                    metrics::histogram!("kanta_audit_batch_records").record(records.len() as f64);
                    metrics::counter!("kanta_audit_records_total").increment(records.len() as u64);
                    let mut seq = app.first_seq;
                    for j in jobs {
                        let count = j.len() as u64;
                        let _ = j.done.send(Ok(Receipt {
                            first_seq: seq,
                            count,
                            batch: app.batch,
                        }));
                        seq += count;
                    }
                    self.maybe_checkpoint(app.tree_size, app.root).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, records = records.len(), "audit commit failed; the requests in this batch fail closed");
                    metrics::counter!("kanta_audit_failures_total").increment(1);
                    for j in jobs {
                        let _ = j.done.send(Err(AuditError::Unavailable));
                    }
                }
            }
        }
    }

    /// Make the outbox records of these jobs' writes leaves, in one transaction, and answer each
    /// job (its first record's sequence number; 0 when another writer made them leaves first).
    async fn drain(&mut self, jobs: Vec<Job>) {
        // The records move out of the jobs (no copy of their bodies); each job keeps its ids for
        // its receipt. Ascending, once each: every drain locks outbox rows in id order, so two
        // writers never wait for each other in a circle.
        let mut rows: Vec<crate::PendingAudit> = vec![];
        let mut answers = Vec::with_capacity(jobs.len());
        for j in jobs {
            let mine: Vec<i64> = match j.work {
                Work::Drain(r) => {
                    let ids = r.iter().map(|r| r.id).collect();
                    rows.extend(r);
                    ids
                }
                Work::Append(_) => vec![],
            };
            answers.push((mine, j.done));
        }
        rows.sort_unstable_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        let result = if self.injected_failure() {
            Err(StoreError::Corrupt("injected audit failure".into()))
        } else {
            self.store.audit_drain_rows(&rows).await
        };
        match result {
            Ok(drained) => {
                metrics::counter!("kanta_audit_records_total").increment(drained.seqs.len() as u64);
                // Not "caught up": older records a failed drain left may still wait; only a pass
                // over the outbox that finds it empty clears the alarm (`drain_once`).
                let seqs: std::collections::HashMap<i64, u64> = drained.seqs.into_iter().collect();
                let batch = drained.append.map_or(0, |a| a.batch);
                for (mine, done) in answers {
                    let first = mine.iter().filter_map(|id| seqs.get(id)).min().copied();
                    let _ = done.send(Ok(Receipt {
                        first_seq: first.unwrap_or(0),
                        count: mine.len() as u64,
                        batch,
                    }));
                }
                if let Some(a) = drained.append {
                    self.maybe_checkpoint(a.tree_size, a.root).await;
                }
            }
            Err(e) => {
                self.behind.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(error = %e, records = rows.len(), "audit drain failed; the records stay pending in the outbox, made leaves on a later tick");
                metrics::counter!("kanta_audit_failures_total").increment(1);
                for (_, done) in answers {
                    let _ = done.send(Err(AuditError::Unavailable));
                }
            }
        }
    }

    /// For the operator: how many records wait in the outbox (committed with their writes, not yet
    /// leaves) — `kanta_audit_outbox_pending` on `/metrics`; a number that keeps growing means the
    /// writer cannot keep up or keeps failing.
    async fn gauge_pending(&self) {
        if let Ok(n) = self.store.audit_pending().await {
            metrics::gauge!("kanta_audit_outbox_pending").set(n as f64);
        }
    }

    /// Everything pending in the outbox, 1,000 at a time, until none is left (at start).
    async fn drain_pending(&mut self) {
        while self.drain_once().await {}
    }

    /// Up to 1,000 pending records; whether there were any.
    async fn drain_once(&mut self) -> bool {
        match self.store.audit_drain(None).await {
            Ok(d) if d.seqs.is_empty() => {
                self.behind
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                false
            }
            Ok(d) => {
                metrics::counter!("kanta_audit_records_total").increment(d.seqs.len() as u64);
                tracing::debug!(
                    records = d.seqs.len(),
                    "audit records pending in the outbox made leaves"
                );
                if let Some(a) = d.append {
                    self.maybe_checkpoint(a.tree_size, a.root).await;
                }
                true
            }
            Err(e) => {
                self.behind.store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(error = %e, "draining the audit outbox failed; retried on the next tick");
                metrics::counter!("kanta_audit_failures_total").increment(1);
                false
            }
        }
    }

    #[cfg(feature = "fault-injection")]
    fn injected_failure(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let b = self.faults.batches.fetch_add(1, SeqCst) + 1;
        let (at, from) = (self.faults.at.load(SeqCst), self.faults.from.load(SeqCst));
        (at != 0 && b == at) || (from != 0 && b >= from)
    }

    #[cfg(not(feature = "fault-injection"))]
    fn injected_failure(&self) -> bool {
        false
    }

    async fn maybe_checkpoint(&mut self, size: u64, root: Hash) {
        let due = match self.last_checkpoint {
            None => true,
            Some((at, last_size)) => {
                size > last_size && at.elapsed() >= self.config.checkpoint_every
            }
        };
        if due {
            let cp = match checkpoint_now(
                self.store.as_ref(),
                &self.config.signer,
                self.config.witness_file.as_deref(),
                size,
                root,
            )
            .await
            {
                Ok(cp) => cp,
                Err(e) => {
                    tracing::error!(error = %e, "audit checkpoint failed");
                    return;
                }
            };
            if let Some(tx) = &self.config.witness_channel {
                if tx.try_send(cp.note).is_err() {
                    metrics::counter!("kanta_audit_witness_dropped_total").increment(1);
                }
            }
            self.last_checkpoint = Some((Instant::now(), size));
        }
    }
}

/// Make every record pending in the outbox a leaf (the recovery after a crash, before serving):
/// how many there were.
pub async fn drain_outbox(store: &dyn Store) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let d = store.audit_drain(None).await?;
        if d.seqs.is_empty() {
            return Ok(total);
        }
        total += d.seqs.len();
    }
}

/// Sign and store a checkpoint of (size, root), and publish it to the witness file.
pub async fn checkpoint_now(
    store: &dyn Store,
    signer: &Signer,
    witness: Option<&std::path::Path>,
    size: u64,
    root: Hash,
) -> Result<Checkpoint, String> {
    let note = signer.checkpoint(size, &root);
    let cp = Checkpoint {
        tree_size: size,
        root,
        note: note.clone(),
        created_at: 0,
    };
    store.add_checkpoint(&cp).await.map_err(|e| e.to_string())?;
    if let Some(path) = witness {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, note.as_bytes())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("witness file: {e}"))?;
    }
    Ok(cp)
}

/// The shortest retention of an audit record: three years (1096 days) for the citizen's view
/// (R-OPS-5). The database refuses to empty a younger record; [`verify`] reports one.
pub const MIN_RETENTION_MS: i64 = 1096 * 86_400_000;

/// Retention (R-OPS-5): empty every record older than `retention_days` (at least 1096), a batch at a
/// time; returns how many were emptied.
pub async fn prune(store: &dyn Store, retention_days: u32, now_ms: i64) -> Result<u64, String> {
    let keep = i64::from(retention_days) * 86_400_000;
    if keep < MIN_RETENTION_MS {
        return Err(format!(
            "audit records are kept at least 1096 days (three years); {retention_days} days is too short"
        ));
    }
    let mut total = 0;
    loop {
        let n = store
            .audit_prune(now_ms - keep, now_ms, 10_000)
            .await
            .map_err(|e| e.to_string())?;
        total += n;
        if n < 10_000 {
            return Ok(total);
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub records: u64,
    /// Records whose content the retention job has removed (their leaf hashes still verify).
    pub pruned: u64,
    pub checkpoints_verified: u64,
    pub head_size: u64,
    /// Records committed with their writes and waiting in the outbox to become leaves (the next
    /// `kanta serve` start or the writer's next tick makes them leaves; not a problem).
    pub pending: u64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the whole log: every record's bytes against its leaf hash, the sequence without gaps or
/// repeats, every checkpoint's signature and root against the recomputed tree, the writer's head,
/// and (if given) the witness's latest checkpoint. Reports change, deletion, reordering, insertion
/// and truncation as problems.
pub async fn verify(
    store: &dyn Store,
    name: &str,
    public_key: &[u8],
    witness: Option<&str>,
) -> Result<VerifyReport, StoreError> {
    const PAGE: u64 = 50_000;
    let mut report = VerifyReport {
        pending: store.audit_pending().await?,
        ..VerifyReport::default()
    };
    let checkpoints = store.checkpoints().await?;
    let mut cps = checkpoints.iter().peekable();
    let mut frontier = Frontier::new();
    let check_at =
        |size: u64,
         root: Hash,
         report: &mut VerifyReport,
         cps: &mut std::iter::Peekable<std::slice::Iter<'_, Checkpoint>>| {
            while let Some(cp) = cps.peek() {
                if cp.tree_size != size {
                    break;
                }
                match open_checkpoint(&cp.note, name, public_key) {
                    Some((s, r)) if s == cp.tree_size && r == cp.root && r == root => {
                        report.checkpoints_verified += 1
                    }
                    Some(_) => report.problems.push(format!(
                        "the log no longer matches the checkpoint at size {size}"
                    )),
                    None => report.problems.push(format!(
                        "the checkpoint at size {size} has no valid signature"
                    )),
                }
                cps.next();
            }
        };
    check_at(0, frontier.root(), &mut report, &mut cps);
    let mut from = 0u64;
    loop {
        let page = store.audit_range(from, from + PAGE).await?;
        if page.is_empty() {
            break;
        }
        for rec in &page {
            let expected = frontier.size();
            if rec.seq != expected {
                report.problems.push(format!(
                    "record {expected} is missing (found {} next)",
                    rec.seq
                ));
                return Ok(report);
            }
            match rec.pruned_at {
                // Emptied by the retention job: its leaf hash still holds its place in the tree
                // (checked against the checkpoints below), its content is gone by design — but
                // never before three years.
                Some(at) => {
                    report.pruned += 1;
                    if !rec.body.is_empty() || at - rec.recorded_at < MIN_RETENTION_MS {
                        report.problems.push(format!(
                            "record {} was emptied before its retention ended",
                            rec.seq
                        ));
                    }
                }
                None => {
                    if merkle::leaf_hash(rec.body.as_bytes()) != rec.leaf_hash {
                        report.problems.push(format!(
                            "record {} was changed after it was written",
                            rec.seq
                        ));
                    }
                }
            }
            frontier.push(rec.leaf_hash);
            report.records += 1;
            check_at(frontier.size(), frontier.root(), &mut report, &mut cps);
        }
        from += PAGE;
    }
    for cp in cps {
        report.problems.push(format!(
            "a checkpoint covers {} records but the log has {}: records were removed from the end",
            cp.tree_size,
            frontier.size()
        ));
    }
    let (head, head_root) = store.audit_head().await?;
    report.head_size = head;
    if head != frontier.size() || head_root != frontier.root() {
        report.problems.push(format!(
            "the writer's head ({head} records) does not match the stored records ({})",
            frontier.size()
        ));
    }
    if let Some(w) = witness {
        match open_checkpoint(w, name, public_key) {
            Some((size, root)) if size <= frontier.size() => {
                let leaves: Vec<Hash> = store
                    .audit_range(0, size)
                    .await?
                    .into_iter()
                    .map(|r| r.leaf_hash)
                    .collect();
                if merkle::root(&leaves) != root {
                    report.problems.push(format!(
                        "the log does not contain the tree the witness saw at size {size}"
                    ));
                }
            }
            Some((size, _)) => report.problems.push(format!(
                "the witness saw {size} records but the log has {}: the end was truncated",
                frontier.size()
            )),
            None => report
                .problems
                .push("the witness checkpoint's signature does not verify".into()),
        }
    }
    Ok(report)
}

/// An inclusion proof for record `seq` against the latest checkpoint.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub proof: Vec<String>,
    pub root: String,
    pub checkpoint: String,
}

pub async fn prove(store: &dyn Store, seq: u64) -> Result<Option<InclusionProof>, StoreError> {
    let Some(cp) = store
        .checkpoints()
        .await?
        .into_iter()
        .rev()
        .find(|c| c.tree_size > seq)
    else {
        return Ok(None);
    };
    let leaves: Vec<Hash> = store
        .audit_range(0, cp.tree_size)
        .await?
        .into_iter()
        .map(|r| r.leaf_hash)
        .collect();
    let Some(leaf) = leaves.get(seq as usize).copied() else {
        return Ok(None);
    };
    let proof = merkle::inclusion_proof(seq as usize, &leaves);
    Ok(Some(InclusionProof {
        seq,
        tree_size: cp.tree_size,
        leaf_hash: B64.encode(leaf),
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
        root: B64.encode(cp.root),
        checkpoint: cp.note,
    }))
}
