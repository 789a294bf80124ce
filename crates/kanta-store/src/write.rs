//! Applying writes: create, conditional create, update (with If-Match), update-as-create, and
//! whole transaction Bundles with `urn:uuid:` references — once, for both backends, over the
//! small [`Tx`] interface each backend implements.

use crate::{Result, StoreError, Stored};
use async_trait::async_trait;
use kanta_domain::access::{self, Action, Basis, Facts, Interaction, Principal, Target};
use kanta_domain::consent::RecorderClaim;
use kanta_domain::ids::{OrgId, PatientKey};
use kanta_fhir::bundle::for_each_reference_mut;
use kanta_fhir::resource::{scope_of, valid_id};
use kanta_fhir::{codes, datetime, Checked, ErrorKind, FhirError, PatientLink, Scope};
use serde_json::{json, Value};
use std::collections::HashMap;
use time::OffsetDateTime;

/// The token system under which a care document's service event (`Encounter/<id>`) is indexed.
pub const ENCOUNTER_INDEX: &str = "urn:kanta:index:encounter";

/// How far ahead of the server's clock a consent's `dateTime` may be (clocks of care systems).
const CONSENT_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// How many consent records one organisation may hold for one patient (issue 29): a change is a
/// new version of one of them, so a care unit needs a handful; the bound keeps every provider's
/// read of the patient's consents — emergency reads included — far from `CONSENT_FACTS_MAX`.
pub const CONSENTS_PER_WRITER_MAX: usize = 100;

/// The token system under which a purchased-services mandate (`Consent`) is indexed by producer.
pub const MANDATE_PRODUCER_INDEX: &str = "urn:kanta:index:mandate-producer";

/// One write.
#[derive(Clone, Debug)]
pub enum WriteOp {
    /// POST: a new resource with a server-assigned id; with `if_none_exist`, only if no resource
    /// of the type has that identifier (then the existing one is returned).
    Create {
        resource: Checked,
        if_none_exist: Option<(String, String)>,
    },
    /// PUT Type/id: a new version (or version 1: update-as-create with a client-assigned id).
    /// With `if_match`, only if the current version is that one.
    Update {
        resource: Checked,
        id: String,
        if_match: Option<i32>,
    },
}

impl WriteOp {
    fn resource(&self) -> &Checked {
        match self {
            WriteOp::Create { resource, .. } | WriteOp::Update { resource, .. } => resource,
        }
    }
}

/// A set of writes applied all-or-nothing, on behalf of one organisation. Every entry is decided
/// by the access decision inside the transaction, where the register holding what it replaces is
/// known: an entry that is refused refuses the whole request.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    /// Who writes (its organisation's register receives the data).
    pub principal: Principal,
    pub org: OrgId,
    /// (FHIRPath prefix for error messages, e.g. `Bundle.entry[2]`; fullUrl; the write)
    pub ops: Vec<(String, Option<String>, WriteOp)>,
    /// A citizen's change through MyKanta: each entry is decided as this R-ACT function, with its
    /// facts, rather than as a FHIR interaction.
    pub citizen: Option<CitizenWrite>,
    /// The Prescription Centre's medicines database and settings; without them no prescription,
    /// dispensation or task is written.
    pub centre: Option<std::sync::Arc<crate::centre::Centre>>,
    /// A producer's create into the organiser's register (`org` is then not the principal's): the
    /// patient's consent facts with the purchased-services mandates, which the one decision reads
    /// (R-CONSENT-2). `None` when writing into one's own register.
    pub organiser: Option<kanta_domain::consent::ConsentFacts>,
}

/// What a citizen's write is, for the one decision (R-ACT).
#[derive(Clone, Copy, Debug)]
pub struct CitizenWrite {
    pub function: access::Function,
    pub acting: kanta_domain::acting::Acting,
    pub facts: kanta_domain::acting::FunctionFacts,
}

/// The outcome of one write, in request order.
#[derive(Clone, Debug)]
pub struct Written {
    pub stored: Stored,
    /// A new resource (201) rather than a new version or an existing match (200).
    pub created: bool,
    /// The basis of the access decision that permitted it (for its audit record).
    pub basis: Basis,
    /// An existing resource that a conditional create found: a read of it, audited as one.
    pub matched: bool,
    /// A version the server wrote as the consequence of another entry (a prescription's new state
    /// after a dispensation): audited, but not an entry of the response.
    pub derived: bool,
}

/// The access decision for one entry, or the entry's refusal. A conditional create that matched an
/// existing resource is a read of it.
fn permit(
    who: (&Principal, Option<&CitizenWrite>),
    (interaction, resource_type): (Interaction, &str),
    target: Target<'_>,
    at: &str,
    now_ms: i64,
    recording: Option<RecorderClaim>,
    organiser: Option<&kanta_domain::consent::ConsentFacts>,
) -> Result<Basis> {
    let (principal, citizen) = who;
    let (action, facts) = match citizen {
        Some(c) => (
            Action::Manage(c.function),
            Facts {
                acting: Some(&c.acting),
                function: Some(&c.facts),
                ..Facts::default()
            },
        ),
        None => (Action::fhir(interaction, resource_type), Facts::default()),
    };
    let disclosure = organiser.map(|consents| access::Disclosure {
        consents,
        record: None,
        centre: kanta_domain::consent::CentreAccess::Searched,
    });
    let facts = Facts {
        recording,
        disclosure: disclosure.as_ref(),
        ..facts
    };
    access::decide(principal, &action, target, &facts, now_ms)
        .permit()
        .map(|p| p.basis().clone())
        .map_err(|reasons| {
            let msg: Vec<&str> = reasons.iter().map(|r| r.message()).collect();
            fail(
                ErrorKind::Forbidden,
                at,
                format!("{at}: {}", msg.join("; ")),
            )
        })
}

/// What a write found already stored instead of writing it (a conditional create that matched, a
/// retried dispensation): a read of it, decided and audited as one.
fn found_again(
    who: (&Principal, Option<&CitizenWrite>),
    stored: Stored,
    at: &str,
    now_ms: i64,
) -> Result<Written> {
    let basis = permit(
        who,
        (Interaction::Read, &stored.resource_type),
        target_of(stored.patient, stored.org.as_deref()),
        at,
        now_ms,
        None,
        None,
    )?;
    Ok(Written {
        stored,
        created: false,
        basis,
        matched: true,
        derived: false,
    })
}

fn target_of(patient: Option<PatientKey>, holder: Option<&str>) -> Target<'_> {
    match patient {
        Some(p) => Target::Patient {
            patient: Some(p),
            holder,
        },
        None => Target::Shared,
    }
}

/// What is written for entry `index` besides its `Written` result.
struct Pending {
    index: usize,
    effective_at: i64,
    status: Option<String>,
    section: Option<&'static str>,
    tokens: Vec<(String, String)>,
}

/// A row to store: the current version of a resource.
pub(crate) struct Row<'a> {
    pub patient_key: Option<PatientKey>,
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: i32,
    pub last_updated: i64,
    pub effective_at: i64,
    pub status: Option<&'a str>,
    pub org_id: &'a str,
    /// The MyKanta section (`Section::code`) of a patient-scoped resource.
    pub section: Option<&'static str>,
    pub body: &'a Value,
    pub tokens: &'a [(String, String)],
}

/// What a backend offers inside one database transaction.
#[async_trait]
pub(crate) trait Tx: Send {
    /// What the store remembers of committed data, without a query: `Some(Some(key))` for patient
    /// data of that patient, `Some(None)` for shared data that exists, `None` when not remembered.
    /// Never wrong (nothing is deleted or moves), only ever missing.
    fn remembered(&self, _resource_type: &str, _id: &str) -> Option<Option<PatientKey>> {
        None
    }
    /// The patient key of a patient-scoped resource.
    async fn locate(&mut self, resource_type: &str, id: &str) -> Result<Option<PatientKey>>;
    /// The current version (locking the row where the backend can) of a resource, and the
    /// organisation whose register holds it.
    async fn current_version(
        &mut self,
        key: Option<PatientKey>,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<(i32, Option<String>)>>;
    async fn get(
        &mut self,
        key: Option<PatientKey>,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Stored>>;
    /// A patient's current resources of one type, every register's, at most `limit` (for the
    /// bounds and checks of writes of that type, e.g. a patient's consents).
    async fn of_patient(
        &mut self,
        key: PatientKey,
        resource_type: &str,
        limit: usize,
    ) -> Result<Vec<Stored>>;
    /// Make sure a HETU has a patient key (`candidate` if it had none) and return the key and the
    /// id of its Patient resource, locking the mapping for the rest of the transaction.
    async fn claim_hetu(
        &mut self,
        hetu: &str,
        candidate: PatientKey,
        now: i64,
    ) -> Result<(PatientKey, Option<String>)>;
    async fn hetu_lookup(&mut self, hetu: &str) -> Result<Option<(PatientKey, Option<String>)>>;
    async fn set_patient_resource(&mut self, hetu: &str, id: &str) -> Result<()>;
    /// Ids of resources of a type with an identifier (patient-scoped types across all patients).
    async fn find_token(
        &mut self,
        scope: Scope,
        resource_type: &str,
        system: &str,
        value: &str,
    ) -> Result<Vec<String>>;
    /// Ids of one patient's resources of a type with an identifier (one shard).
    async fn find_patient_token(
        &mut self,
        key: PatientKey,
        resource_type: &str,
        system: &str,
        value: &str,
    ) -> Result<Vec<String>>;
    /// Store versions as current (and in the history; new resources also get their locators), all
    /// rows of a transaction at once so that each table takes one multi-row statement.
    async fn put_many(&mut self, rows: &[Row<'_>]) -> Result<()>;
}

/// A fresh patient key: random, positive, never 0.
pub(crate) fn new_patient_key() -> PatientKey {
    let bits = uuid::Uuid::new_v4().as_u128() as i64;
    PatientKey((bits & i64::MAX).max(1))
}

fn fail(kind: ErrorKind, at: &str, msg: impl Into<String>) -> StoreError {
    StoreError::Fhir(FhirError::at(kind, at, msg))
}

/// What this transaction already knows about where resources live: `Type/id` → patient key (or
/// `None` for shared data), from its own writes and earlier look-ups. Saves a query per reference.
#[derive(Default)]
struct Known(HashMap<String, Option<PatientKey>>);

impl Known {
    async fn locate(&mut self, tx: &mut dyn Tx, t: &str, id: &str) -> Result<Option<PatientKey>> {
        let k = format!("{t}/{id}");
        if let Some(Some(key)) = self.0.get(&k) {
            return Ok(Some(*key));
        }
        if let Some(Some(key)) = tx.remembered(t, id) {
            self.0.insert(k, Some(key));
            return Ok(Some(key));
        }
        let found = tx.locate(t, id).await?;
        if found.is_some() {
            self.0.insert(k, found);
        }
        Ok(found)
    }

    async fn shared_exists(&mut self, tx: &mut dyn Tx, t: &str, id: &str) -> Result<bool> {
        let k = format!("{t}/{id}");
        if self.0.contains_key(&k) || tx.remembered(t, id) == Some(None) {
            return Ok(true);
        }
        // A plain read, not current_version: that one locks the row, and every writer refers to
        // the same few organisations.
        let found = tx.get(None, t, id).await?.is_some();
        if found {
            self.0.insert(k, None);
        }
        Ok(found)
    }
}

/// Apply a request inside an open transaction. The caller commits on `Ok` and rolls back on `Err`.
pub(crate) async fn apply(
    tx: &mut dyn Tx,
    req: WriteRequest,
    now: OffsetDateTime,
) -> Result<Vec<Written>> {
    let now_ms = datetime::millis(now);
    let n = req.ops.len();
    // Patients first (so references to them resolve), Provenance last (it points at the rest).
    let rank = |op: &WriteOp| match op.resource().resource_type.as_str() {
        "Patient" => 0,
        "Provenance" => 2,
        _ => 1,
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| rank(&req.ops[i].2));

    // Where resources live, learnt along the way (a HETU's mapping names its Patient's key).
    let mut known = Known::default();
    // Phase 1: the id each entry ends up with, and which fullUrl names which Type/id.
    let mut ids: Vec<String> = vec![String::new(); n];
    let mut matched: Vec<bool> = vec![false; n];
    let mut full_urls: HashMap<String, String> = HashMap::new();
    for &i in &order {
        let (at, full_url, op) = &req.ops[i];
        let t = op.resource().resource_type.as_str();
        let id = match op {
            WriteOp::Update { id, .. } => {
                if !valid_id(id) {
                    return Err(fail(
                        ErrorKind::BadRequest,
                        at,
                        format!("{at}: '{id}' is not a valid FHIR id"),
                    ));
                }
                if let Some(body_id) = &op.resource().id {
                    if body_id != id {
                        return Err(fail(
                            ErrorKind::BadRequest,
                            at,
                            format!("{at}: the resource id '{body_id}' does not match the URL id '{id}'"),
                        ));
                    }
                }
                id.clone()
            }
            WriteOp::Create {
                if_none_exist: Some((system, value)),
                ..
            } => {
                let found = if t == "Patient" && system == codes::HETU_SYSTEM {
                    match tx.hetu_lookup(value).await? {
                        Some((key, Some(rid))) => {
                            known.0.insert(format!("Patient/{rid}"), Some(key));
                            vec![rid]
                        }
                        _ => vec![],
                    }
                } else {
                    let scope = scope_of(t).unwrap_or(Scope::Shared);
                    let all = tx.find_token(scope, t, system, value).await?;
                    // Patient data matches only in the writer's own register: another register's
                    // record with the same identifier is not the writer's to find (it may be one
                    // the writer may not read, and a match would tell that it exists).
                    match scope {
                        Scope::Shared => all,
                        Scope::Patient => {
                            let mut own = vec![];
                            for rid in all {
                                let key = tx.locate(t, &rid).await?;
                                // A plain read: no row lock on another's record.
                                let held = tx.get(key, t, &rid).await?.and_then(|r| r.org);
                                if held.as_deref() == Some(req.org.as_str()) {
                                    own.push(rid);
                                }
                            }
                            own
                        }
                    }
                };
                match found.len() {
                    0 => uuid::Uuid::new_v4().to_string(),
                    1 => {
                        matched[i] = true;
                        found[0].clone()
                    }
                    _ => {
                        return Err(fail(
                            ErrorKind::PreconditionFailed,
                            at,
                            format!(
                                "{at}: the conditional create matches {} {t} resources",
                                found.len()
                            ),
                        ))
                    }
                }
            }
            WriteOp::Create { .. } => uuid::Uuid::new_v4().to_string(),
        };
        if let Some(u) = full_url {
            full_urls.insert(u.clone(), format!("{t}/{id}"));
        }
        ids[i] = id;
    }

    // Phase 2: write, in order.
    let mut locked = crate::centre::Locked::default();
    let mut derived_basis: Option<Basis> = None;
    let mut pending: Vec<Pending> = Vec::with_capacity(n);
    let mut assigned: HashMap<String, i32> = HashMap::new();
    let mut out: Vec<Option<Written>> = vec![None; n];
    let mut written_refs: Vec<(String, String)> = vec![];
    let mut ops: Vec<Option<(String, Option<String>, WriteOp)>> =
        req.ops.into_iter().map(Some).collect();
    // Conditional references (`Patient?identifier=…`) resolved so far: `Patient/<id>`.
    let mut resolved: HashMap<String, String> = HashMap::new();
    for &i in &order {
        let Some((at, full_url, op)) = ops[i].take() else {
            continue;
        };
        let mut id = ids[i].clone();
        let hetu_condition = matches!(&op, WriteOp::Create { if_none_exist: Some((system, _)), .. } if system == codes::HETU_SYSTEM);
        let (mut resource, if_match, is_update) = match op {
            WriteOp::Create { resource, .. } => (resource, None, false),
            WriteOp::Update {
                resource, if_match, ..
            } => (resource, if_match, true),
        };
        let t = resource.resource_type.clone();
        let scope = resource.scope;
        if hetu_condition && !matched[i] {
            if let Some(PatientLink::Itself(h)) = &resource.patient {
                // Lock the HETU now: a concurrent transaction may have created the Patient since
                // our first look, and then the condition matches it.
                let (key, rid) = tx.claim_hetu(h.as_str(), new_patient_key(), now_ms).await?;
                if let Some(existing) = rid {
                    known.0.insert(format!("Patient/{existing}"), Some(key));
                    if let Some(u) = &full_url {
                        full_urls.insert(u.clone(), format!("Patient/{existing}"));
                    }
                    ids[i] = existing.clone();
                    id = existing;
                    matched[i] = true;
                }
            }
        }
        if matched[i] {
            let key = match scope {
                Scope::Patient => known.locate(tx, &t, &id).await?,
                Scope::Shared => None,
            };
            let stored = tx
                .get(key, &t, &id)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("{t}/{id} matched but missing")))?;
            out[i] = Some(found_again(
                (&req.principal, req.citizen.as_ref()),
                stored,
                &at,
                now_ms,
            )?);
            continue;
        }
        // References: urn:uuid → Type/id of this Bundle; conditional Patient references → Patient/id.
        let mut body = Value::Object(std::mem::take(&mut resource.body));
        let mut unresolved: Option<String> = None;
        let mut conditional: Vec<String> = vec![];
        for_each_reference_mut(&mut body, &mut |r| {
            if r.starts_with("urn:uuid:") {
                match full_urls.get(r.as_str()) {
                    Some(target) => *r = target.clone(),
                    None => unresolved = Some(r.clone()),
                }
            } else if r.starts_with("Patient?") {
                conditional.push(r.clone());
            }
        });
        if let Some(r) = unresolved {
            return Err(fail(
                ErrorKind::Unprocessable,
                &at,
                format!("{at}: the reference '{r}' names no entry of this Bundle"),
            ));
        }
        // Each distinct conditional reference is looked up once per transaction, and the body is
        // rewritten in one pass: linear in the references, however many repeat.
        if !conditional.is_empty() {
            conditional.sort_unstable();
            conditional.dedup();
            for c in conditional {
                if resolved.contains_key(&c) {
                    continue;
                }
                let hetu = c.rsplit('|').next().unwrap_or("").to_string();
                let rid = match tx.hetu_lookup(&hetu).await? {
                    Some((key, Some(rid))) => {
                        known.0.insert(format!("Patient/{rid}"), Some(key));
                        rid
                    }
                    _ => {
                        return Err(fail(
                            ErrorKind::Unprocessable,
                            &at,
                            format!("{at}: no Patient with the HETU in the conditional reference; create the Patient first"),
                        ))
                    }
                };
                resolved.insert(c, format!("Patient/{rid}"));
            }
            for_each_reference_mut(&mut body, &mut |r| {
                if let Some(to) = resolved.get(r.as_str()) {
                    *r = to.clone();
                }
            });
        }

        // The patient this resource belongs to.
        let patient_key = match (&scope, &resource.patient) {
            (Scope::Shared, _) => None,
            (Scope::Patient, Some(PatientLink::Itself(hetu))) => {
                let (key, rid) = tx.claim_hetu(hetu.as_str(), crate::write::new_patient_key(), now_ms).await?;
                match rid {
                    Some(existing) if existing != id => {
                        return Err(fail(
                            ErrorKind::Conflict,
                            &at,
                            // Neither the id nor the HETU: the caller learns only what its own request said.
                            format!("{at}: a Patient with this HETU already exists; use a conditional create (ifNoneExist identifier={}|<HETU>), which returns it", codes::HETU_SYSTEM),
                        ))
                    }
                    Some(_) => {}
                    None => tx.set_patient_resource(hetu.as_str(), &id).await?,
                }
                Some(key)
            }
            (Scope::Patient, Some(PatientLink::Hetu(hetu))) => match tx.hetu_lookup(hetu.as_str()).await? {
                Some((key, Some(_))) => Some(key),
                _ => {
                    return Err(fail(
                        ErrorKind::Unprocessable,
                        &at,
                        format!("{at}: no Patient with the HETU given as the subject; create the Patient first"),
                    ))
                }
            },
            (Scope::Patient, Some(PatientLink::Reference { expression, reference }))
            | (Scope::Patient, Some(PatientLink::Target { expression, reference })) => {
                let literal = if reference.starts_with("urn:uuid:") {
                    full_urls.get(reference).cloned().unwrap_or_default()
                } else {
                    reference.clone()
                };
                let literal = literal.split("/_history/").next().unwrap_or("").to_string();
                let (rt, rid) = literal.split_once('/').unwrap_or(("", ""));
                if scope_of(rt) != Some(Scope::Patient) {
                    return Err(fail(
                        ErrorKind::Unprocessable,
                        &at,
                        format!("{at}: {expression} must point to patient data, not '{reference}'"),
                    ));
                }
                match known.locate(tx, rt, rid).await? {
                    Some(k) => Some(k),
                    None => {
                        return Err(fail(
                            ErrorKind::Unprocessable,
                            &at,
                            format!("{at}: {expression} refers to {rt}/{rid}, which does not exist"),
                        ))
                    }
                }
            }
            (Scope::Patient, None) => return Err(fail(ErrorKind::Unprocessable, &at, format!("{at}: no patient"))),
        };

        // A retried dispensation (issue 30): a create naming an identifier of a dispensation the
        // same pharmacy already stored for this patient returns that first result — read, not
        // dispensed again. Scoped to the patient, so it stays on one shard.
        if !is_update && t == "MedicationDispense" && req.citizen.is_none() {
            if let Some(key) = patient_key {
                let mut first: Option<Stored> = None;
                for (system, value) in &resource.identifiers {
                    for found in tx.find_patient_token(key, &t, system, value).await? {
                        if let Some(s) = tx.get(Some(key), &t, &found).await? {
                            if s.org.as_deref() == Some(req.org.as_str()) {
                                first = Some(s);
                                break;
                            }
                        }
                    }
                    if first.is_some() {
                        break;
                    }
                }
                if let Some(stored) = first {
                    out[i] = Some(found_again(
                        (&req.principal, req.citizen.as_ref()),
                        stored,
                        &at,
                        now_ms,
                    )?);
                    continue;
                }
            }
        }
        // Versioning.
        let existing_key = match scope {
            Scope::Patient if is_update => known.locate(tx, &t, &id).await?,
            _ => None,
        };
        if let (Some(old), Some(new)) = (existing_key, patient_key) {
            if old != new {
                // The permit first, against the register holding it (issue 29): another
                // register's record answers as a refused update does, whichever patient it is
                // about, so the answer tells nothing of whose it is.
                let holder = tx
                    .current_version(Some(old), &t, &id)
                    .await?
                    .and_then(|(_, o)| o);
                permit(
                    (&req.principal, req.citizen.as_ref()),
                    (Interaction::Update, &t),
                    target_of(Some(old), holder.as_deref()),
                    &at,
                    now_ms,
                    Some(RecorderClaim::None),
                    None,
                )?;
                return Err(fail(
                    ErrorKind::Unprocessable,
                    &at,
                    format!("{at}: {t}/{id} belongs to another patient; a resource cannot move between patients"),
                ));
            }
        }
        // What it replaces, and whose register holds that: this request's own earlier entry, or
        // the stored current version.
        let assigned_before = assigned.contains_key(&format!("{t}/{id}"));
        let (current, holder) = match assigned.get(&format!("{t}/{id}")) {
            Some(v) => (Some(*v), Some(req.org.as_str().to_string())),
            None if is_update => match tx.current_version(patient_key, &t, &id).await? {
                Some((v, org)) => (Some(v), org),
                None => (None, None),
            },
            None => (None, None),
        };
        let interaction = if current.is_some() {
            Interaction::Update
        } else {
            Interaction::Create
        };
        // A system's recording of a patient's choice: who it says recorded it decides whether it
        // may be written at all; what is stored names the care unit and the professional
        // (R-CONSENT-1, seed 000 §9, seed 004).
        let recording = (t == "Consent" && req.citizen.is_none())
            .then(|| kanta_fhir::consent::recorder_claim(&body));
        // A producer's create into the organiser's register is a write into another register,
        // decided with the organiser's mandates (R-CONSENT-2).
        let into_other = req.citizen.is_none() && req.principal.org() != Some(&req.org);
        let holder = if holder.is_none() && into_other {
            Some(req.org.as_str().to_string())
        } else {
            holder
        };
        let basis = permit(
            (&req.principal, req.citizen.as_ref()),
            (interaction, &t),
            target_of(patient_key, holder.as_deref()),
            &at,
            now_ms,
            recording,
            req.organiser.as_ref().filter(|_| into_other),
        )?;
        if let (Some(_), Principal::Client(c)) = (recording, &req.principal) {
            if let Some(professional) = &c.professional {
                kanta_fhir::consent::stamp_care_unit(&mut body, c.org.as_str(), professional);
            }
        }
        match (if_match, current) {
            (Some(want), Some(have)) if want != have => {
                return Err(fail(
                    ErrorKind::PreconditionFailed,
                    &at,
                    format!(
                    "{at}: If-Match version {want} is not the current version {have} of {t}/{id}"
                ),
                ))
            }
            (Some(want), None) => {
                return Err(fail(
                    ErrorKind::PreconditionFailed,
                    &at,
                    format!("{at}: If-Match version {want} given, but {t}/{id} does not exist"),
                ))
            }
            _ => {}
        }
        let version = current.map_or(1, |v| v + 1);
        stamp(&mut body, &id, version, now);
        assigned.insert(format!("{t}/{id}"), version);
        // A Kanta consent: recorded now or earlier (the latest record decides, so a date ahead of
        // the clock would outrank every later change), and a purchased-services mandate only by
        // its organiser, into its own register (R-CONSENT-2).
        if let Ok(Some(r)) = kanta_fhir::consent::read(&body) {
            if r.recorded_at > now_ms + CONSENT_CLOCK_SKEW_MS {
                return Err(fail(
                    ErrorKind::Unprocessable,
                    &at,
                    format!("{at}: Consent.dateTime is in the future; a consent is recorded when it is given"),
                ));
            }
            // A system's recordings are bounded per patient and writer, and one that changes
            // nothing is refused (issue 29: one organisation wrote 10,001 consents for a patient,
            // and every other provider's read of that patient failed).
            if let (None, Some(patient)) = (&req.citizen, patient_key) {
                let held = tx
                    .of_patient(patient, "Consent", crate::CONSENT_FACTS_MAX + 1)
                    .await?;
                let writer = req.org.as_str();
                let own = held
                    .iter()
                    .filter(|h| h.org.as_deref() == Some(writer) && h.id != id)
                    .count();
                if current.is_none() && own >= CONSENTS_PER_WRITER_MAX {
                    return Err(fail(
                        ErrorKind::Unprocessable,
                        &at,
                        format!("{at}: your organisation holds {own} consent records for this patient, the most one organisation may; record a change as a new version of one of them (PUT)"),
                    ));
                }
                let existing: Vec<(String, kanta_fhir::consent::ConsentRecord)> = held
                    .iter()
                    .filter_map(|h| {
                        kanta_fhir::consent::read(&h.body)
                            .ok()
                            .flatten()
                            .map(|c| (h.id.clone(), c))
                    })
                    .collect();
                if kanta_fhir::consent::changes_nothing(&id, &r, &existing) {
                    return Err(fail(
                        ErrorKind::Conflict,
                        &at,
                        format!("{at}: the patient's latest recording of this kind and scope already says this; nothing to record"),
                    ));
                }
            }
            if let Some(m) = &r.mandate {
                // By the organiser itself, into its own register: never by a producer, even one
                // storing into the organiser's register under a mandate (it would widen its own).
                let writer = req.principal.org().map(OrgId::as_str);
                if writer != Some(m.organiser.as_str()) || m.organiser != req.org.as_str() {
                    return Err(fail(
                        ErrorKind::Forbidden,
                        &at,
                        format!("{at}: a purchased-services mandate is stored by its organiser (Consent.organization names another organisation)"),
                    ));
                }
            }
        }
        // The Prescription Centre's rules, with the prescription locked (R-RX-1, R-RX-2).
        let previous = match (current, t.as_str()) {
            (Some(_), "MedicationRequest" | "MedicationDispense" | "Task") if !assigned_before => {
                tx.get(patient_key, &t, &id).await?
            }
            _ => None,
        };
        if assigned_before
            && matches!(
                t.as_str(),
                "MedicationRequest" | "MedicationDispense" | "Task"
            )
        {
            return Err(fail(
                ErrorKind::Unprocessable,
                &at,
                format!("{at}: {t}/{id} is written once in a request"),
            ));
        }
        let effect = crate::centre::check(
            tx,
            req.centre.as_deref(),
            &mut locked,
            crate::centre::Entry {
                principal: &req.principal,
                org: req.org.as_str(),
                resource_type: &t,
                at: &at,
                patient: patient_key,
                previous: previous.as_ref(),
                now_ms,
            },
            &mut body,
        )
        .await?;
        if matches!(t.as_str(), "MedicationDispense" | "Task") {
            derived_basis = Some(basis.clone());
        }
        let row_org = effect
            .holder
            .or_else(|| {
                previous
                    .as_ref()
                    .and_then(|p| p.org.clone())
                    .filter(|_| t == "Task")
            })
            .unwrap_or_else(|| req.org.as_str().to_string());
        pending.push(Pending {
            index: i,
            effective_at: resource.effective.map_or(now_ms, datetime::millis),
            status: resource.status.take(),
            section: kanta_fhir::display::section(&body).map(|s| s.code()),
            tokens: {
                let mut tokens = std::mem::take(&mut resource.identifiers);
                // The service event a care document is attached to, as resolved above.
                if let Some(e) = kanta_fhir::display::encounter_reference(&body) {
                    if e.starts_with("Encounter/") {
                        tokens.push((ENCOUNTER_INDEX.to_string(), e.to_string()));
                    }
                }
                // A purchased-services mandate, by its producer: a producer lists the mandates
                // granted to it (R-CONSENT-2 v2).
                if let Ok(Some(r)) = kanta_fhir::consent::read(&body) {
                    if let Some(p) = r.mandate.and_then(|m| m.producer) {
                        tokens.push((MANDATE_PRODUCER_INDEX.to_string(), p));
                    }
                }
                tokens.extend(effect.tokens);
                tokens
            },
        });
        known.0.insert(format!("{t}/{id}"), patient_key);
        for r in kanta_fhir::bundle::references(&body) {
            written_refs.push((at.clone(), r));
        }
        out[i] = Some(Written {
            stored: Stored {
                resource_type: t,
                id,
                version,
                last_updated: now,
                patient: patient_key,
                org: Some(row_org),
                body,
            },
            created: current.is_none(),
            basis,
            matched: false,
            derived: false,
        });
    }

    // The prescriptions' new states, one version each.
    let mut derived: Vec<(Pending, Written)> = vec![];
    for stored in locked.changed() {
        // Its own entry and its new state would be two versions of one number.
        if assigned.contains_key(&format!("MedicationRequest/{}", stored.id)) {
            return Err(fail(
                ErrorKind::Unprocessable,
                "Bundle",
                format!(
                    "MedicationRequest/{} is written by this request and dispensed or reserved in it: write each in a request of its own",
                    stored.id
                ),
            ));
        }
        let checked = kanta_fhir::check(stored.body.clone())
            .map_err(|e| StoreError::Corrupt(format!("a prescription's new state: {e:?}")))?;
        let basis = derived_basis
            .clone()
            .ok_or_else(|| StoreError::Corrupt("a prescription changed by no entry".into()))?;
        derived.push((
            Pending {
                index: usize::MAX,
                effective_at: checked.effective.map_or(now_ms, datetime::millis),
                status: checked.status,
                section: kanta_fhir::display::section(&stored.body).map(|s| s.code()),
                tokens: checked.identifiers,
            },
            Written {
                stored: Stored {
                    last_updated: now,
                    ..stored
                },
                created: false,
                basis,
                matched: false,
                derived: true,
            },
        ));
    }

    // Write everything at once.
    let writer = req.org.as_str();
    let row = |p, w| row_of(p, w, now_ms, writer);
    let rows: Vec<Row<'_>> = pending
        .iter()
        .filter_map(|p| out[p.index].as_ref().map(|w| row(p, w)))
        .chain(derived.iter().map(|(p, w)| row(p, w)))
        .collect();
    tx.put_many(&rows).await?;
    drop(rows);

    // Every relative reference must name a resource that now exists.
    for (at, r) in written_refs {
        let literal = r.split("/_history/").next().unwrap_or(&r);
        let Some((rt, rid)) = literal.split_once('/') else {
            continue;
        };
        let exists = match scope_of(rt) {
            Some(Scope::Patient) => known.locate(tx, rt, rid).await?.is_some(),
            Some(Scope::Shared) => known.shared_exists(tx, rt, rid).await?,
            None => continue,
        };
        if !exists {
            return Err(fail(
                ErrorKind::Unprocessable,
                &at,
                format!("{at}: the reference '{r}' points to a resource that does not exist"),
            ));
        }
    }
    out.into_iter()
        .map(|w| w.ok_or_else(|| StoreError::Corrupt("a write produced no result".into())))
        .chain(derived.into_iter().map(|(_, w)| Ok(w)))
        .collect()
}

/// The row of one write: its version, and where and how it is listed.
fn row_of<'a>(p: &'a Pending, w: &'a Written, now_ms: i64, writer: &'a str) -> Row<'a> {
    Row {
        patient_key: w.stored.patient,
        resource_type: &w.stored.resource_type,
        id: &w.stored.id,
        version: w.stored.version,
        last_updated: now_ms,
        effective_at: p.effective_at,
        status: p.status.as_deref(),
        org_id: w.stored.org.as_deref().unwrap_or(writer),
        section: p.section,
        body: &w.stored.body,
        tokens: &p.tokens,
    }
}

/// Set `id` and `meta.versionId`/`meta.lastUpdated`, keeping the rest of `meta`.
fn stamp(body: &mut Value, id: &str, version: i32, now: OffsetDateTime) {
    if let Value::Object(map) = body {
        map.insert("id".into(), json!(id));
        let meta = map.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        meta["versionId"] = json!(version.to_string());
        meta["lastUpdated"] = json!(datetime::instant(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanta_domain::ids::ClientRole;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store of one patient in memory that counts its HETU look-ups.
    struct Fake {
        hetus: HashMap<String, (PatientKey, String)>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl Tx for Fake {
        async fn locate(&mut self, t: &str, id: &str) -> Result<Option<PatientKey>> {
            Ok(self
                .hetus
                .values()
                .find(|(_, pid)| t == "Patient" && pid == id)
                .map(|(k, _)| *k))
        }
        async fn current_version(
            &mut self,
            _: Option<PatientKey>,
            _: &str,
            _: &str,
        ) -> Result<Option<(i32, Option<String>)>> {
            Ok(None)
        }
        async fn get(&mut self, _: Option<PatientKey>, _: &str, _: &str) -> Result<Option<Stored>> {
            Ok(None)
        }
        async fn of_patient(&mut self, _: PatientKey, _: &str, _: usize) -> Result<Vec<Stored>> {
            Ok(vec![])
        }
        async fn claim_hetu(
            &mut self,
            hetu: &str,
            candidate: PatientKey,
            _: i64,
        ) -> Result<(PatientKey, Option<String>)> {
            Ok(match self.hetus.get(hetu) {
                Some((k, id)) => (*k, Some(id.clone())),
                None => (candidate, None),
            })
        }
        async fn hetu_lookup(
            &mut self,
            hetu: &str,
        ) -> Result<Option<(PatientKey, Option<String>)>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self.hetus.get(hetu).map(|(k, id)| (*k, Some(id.clone()))))
        }
        async fn set_patient_resource(&mut self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn find_token(&mut self, _: Scope, _: &str, _: &str, _: &str) -> Result<Vec<String>> {
            Ok(vec![])
        }
        async fn find_patient_token(
            &mut self,
            _: PatientKey,
            _: &str,
            _: &str,
            _: &str,
        ) -> Result<Vec<String>> {
            Ok(vec![])
        }
        async fn put_many(&mut self, _: &[Row<'_>]) -> Result<()> {
            Ok(())
        }
    }

    /// Issue "bounded inputs": thousands of conditional references to a few patients cost one
    /// look-up per distinct reference, not one per occurrence (and the body is rewritten once).
    #[tokio::test]
    async fn conditional_references_are_looked_up_once_each() {
        let hetus = ["010594Y9032", "020516C903K", "131052-308U"];
        let mut fake = Fake {
            hetus: hetus
                .iter()
                .enumerate()
                .map(|(i, h)| (h.to_string(), (PatientKey(i as i64 + 1), format!("p{i}"))))
                .collect(),
            lookups: AtomicUsize::new(0),
        };
        let cond = |h: &str| json!({"reference": format!("Patient?identifier={}|{h}", codes::HETU_SYSTEM)});
        // One Observation of the first patient naming the three patients 5,000 times over.
        let performers: Vec<Value> = (0..5_000).map(|i| cond(hetus[i % 3])).collect();
        let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p0"}, "performer": performers});
        let op = WriteOp::Create {
            resource: kanta_fhir::check(obs).unwrap(),
            if_none_exist: None,
        };
        let org = OrgId::new("org-hus");
        let req = WriteRequest {
            principal: Principal::system("c", &org, &[ClientRole::Clinician]),
            org,
            ops: vec![
                ("Observation".into(), None, op.clone()),
                ("Observation".into(), None, op),
            ],
            citizen: None,
            centre: None,
            organiser: None,
        };
        let now = time::macros::datetime!(2026-12-01 12:00 UTC);
        let written = apply(&mut fake, req, now).await.unwrap();
        assert_eq!(
            fake.lookups.load(Ordering::SeqCst),
            3,
            "one look-up per distinct reference"
        );
        let refs = kanta_fhir::bundle::references(&written[0].stored.body);
        assert!(
            refs.iter().all(|r| r.starts_with("Patient/p")),
            "all rewritten"
        );
        assert_eq!(
            refs.iter().filter(|r| *r == "Patient/p2").count(),
            5_000 / 3
        );
    }
}
