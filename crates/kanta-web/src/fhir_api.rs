//! The FHIR R4 REST API: metadata, create, read, vread, update, history, search, transaction.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FHIR_JSON};
use crate::AppState;
use crate::RequestId;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kanta_domain::access::Disclosure;
use kanta_domain::access::{self, Facts, Interaction, Principal, Target};
use kanta_domain::audit::Action;
use kanta_domain::consent::{
    CareDomain, CentreAccess, ConsentFacts, ProhibitionScope, RecordFacts,
};
use kanta_domain::ids::{OrgId, PatientKey};
use kanta_fhir::bundle::{self, Method};
use kanta_fhir::resource::{scope_of, valid_id};
use kanta_fhir::{capability, check, codes, datetime, ErrorKind, FhirError, Scope};
use kanta_store::audit::{Access, Gated, Json, Receipt, Sealed, Subject};
use kanta_store::{Cursor, Found, SearchQuery, Stored, WriteOp, WriteRequest, Written};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", axum::routing::post(transaction))
        // Many clients write the base URL with a trailing slash.
        .route("/fhir/", axum::routing::post(transaction))
        .route("/fhir/{rtype}", get(search).post(create))
        .route("/fhir/{rtype}/{id}", get(read).put(update))
        .route("/fhir/{rtype}/{id}/_history", get(history))
        .route("/fhir/{rtype}/{id}/_history/{vid}", get(vread))
}

/// `Path`, with a malformed path (e.g. invalid UTF-8 after percent-decoding) answered as an
/// OperationOutcome rather than axum's plain-text rejection.
pub(crate) struct FhirPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for FhirPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(FhirPath(t)),
            Err(_) => Err(FhirError::bad_request(
                "the URL path is malformed (it must be valid UTF-8 once percent-decoded)",
            )
            .into()),
        }
    }
}

/// The query string's pairs, a malformed one answered as an OperationOutcome.
pub(crate) struct FhirQuery(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for FhirQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(FhirQuery(q)),
            Err(_) => Err(FhirError::bad_request(
                "the query string is malformed (it must be valid UTF-8 once percent-decoded)",
            )
            .into()),
        }
    }
}

fn fhir_response(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

/// Open sealed record data: every record judged by the access decision for `fhir` (what is
/// refused is dropped, as if absent), the audit records for what remains committed first — or
/// nothing is released and the request fails with 503 (R-OPS-3).
#[allow(clippy::too_many_arguments)]
async fn release<T: Gated>(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    action: Action,
    fhir: &access::Action,
    subject: Option<PatientKey>,
    query: Option<String>,
    sealed: Sealed<T>,
    consents: &mut Consents,
) -> ApiResult<(Receipt, T)> {
    let access = access(state, caller, request_id, action, subject, query);
    let now_ms = access.now_ms;
    consents.load(state, &caller.principal, &sealed).await?;
    let consents = &*consents;
    state
        .audit
        .release(sealed, &access, |subjects| match &consents.decided {
            // A search's records were decided when its page was made, in this order.
            Some(d) if d.len() == subjects.len() => d.clone(),
            _ => subjects
                .iter()
                .map(|s| consents.decide(&caller.principal, fhir, s, now_ms))
                .collect(),
        })
        .await
        .map_err(|_| audit_unavailable())
}

/// The patients' consents, read once per request, for the disclosure rule (R-CONSENT-1): a
/// record of another organisation's register is decided with the patient's consents and the
/// record's register and service event as facts.
pub(crate) struct Consents {
    facts: HashMap<PatientKey, ConsentFacts>,
    /// How Prescription Centre data is asked for (by id: the presented prescription; by search).
    centre: CentreAccess,
    /// A search's permits, decided as its page was made (one per kept record, in order).
    decided: Option<Vec<access::Decision>>,
}

impl Consents {
    pub(crate) fn new(centre: CentreAccess) -> Consents {
        Consents {
            facts: HashMap::new(),
            centre,
            decided: None,
        }
    }

    /// Read the consents of every patient some of whose records are held elsewhere. A failure is
    /// the request's failure (503), never a silent refusal.
    pub(crate) async fn load<T: Gated>(
        &mut self,
        state: &AppState,
        principal: &Principal,
        sealed: &Sealed<T>,
    ) -> Result<(), kanta_store::StoreError> {
        let Some(org) = principal.org() else {
            return Ok(());
        };
        for p in sealed.patients_held_elsewhere(org.as_str()) {
            self.load_patient(state, p).await?;
        }
        Ok(())
    }

    /// Read one patient's consents (once).
    pub(crate) async fn load_patient(
        &mut self,
        state: &AppState,
        p: PatientKey,
    ) -> Result<(), kanta_store::StoreError> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.facts.entry(p) {
            let rows = kanta_store::consents_for_decision(state.store.as_ref(), p).await?;
            // An unreadable Kanta consent: no facts for this patient, so another register's
            // records are refused (fail closed), and the operator is told.
            match kanta_fhir::consent::facts(
                rows.iter().map(|(id, h, v)| (id.as_str(), h.as_deref(), v)),
            ) {
                Ok(f) => {
                    e.insert(f);
                }
                Err(msg) => tracing::error!(error = %msg, "a patient's consents are unreadable"),
            }
        }
        Ok(())
    }

    /// The one decision for one record, with its disclosure facts when another register holds it.
    pub(crate) fn decide(
        &self,
        principal: &Principal,
        fhir: &access::Action,
        s: &Subject<'_>,
        now_ms: i64,
    ) -> access::Decision {
        let elsewhere = match (principal.org(), s.holder) {
            (Some(org), Some(h)) => org.as_str() != h,
            _ => false,
        };
        let consents = s.patient.and_then(|p| self.facts.get(&p));
        let (Some(holder), true, Some(consents)) = (s.holder, elsewhere, consents) else {
            // Own register, shared data, or facts missing (then the rule fails closed).
            return access::decide(principal, fhir, s.target(), &Facts::default(), now_ms);
        };
        let clinical = matches!(
            access::Kind::of(s.resource_type),
            Some(access::Kind::Clinical | access::Kind::Provenance)
        );
        // The record's tags are read only when the answer can depend on them: a prohibition of
        // one of this holder's registers or service events, or a record that may be social care
        // (its text names the social-welfare register system). Otherwise it is health care, and
        // only provider-wide prohibitions can cover it — no parse.
        let scoped = consents.prohibitions.iter().any(|p| {
            p.scope.org() == holder && !matches!(p.scope, ProhibitionScope::Provider { .. })
        });
        let tags = match &s.json {
            _ if !clinical => kanta_fhir::consent::RecordTags::default(),
            Json::Stored(r) => {
                let maybe_social = r.get().contains(kanta_fhir::codes::SOCIAL_REGISTER_OID);
                if scoped || maybe_social {
                    kanta_fhir::consent::record_tags(r.get())
                } else {
                    kanta_fhir::consent::RecordTags::default()
                }
            }
            Json::Value(v) => kanta_fhir::consent::record_tags_of(*v),
            // No body to read: every prohibition of the holder covers it (fail closed).
            Json::None => kanta_fhir::consent::RecordTags {
                unreadable: true,
                ..Default::default()
            },
        };
        let self_ref = scoped.then(|| format!("{}/{}", s.resource_type, s.id));
        let d = Disclosure {
            consents,
            record: Some(RecordFacts {
                holder,
                register: tags.register.as_deref(),
                service_event: tags.service_event.as_deref(),
                self_ref: self_ref.as_deref(),
                unreadable: tags.unreadable,
                domain: if tags.social {
                    CareDomain::Social
                } else {
                    CareDomain::Health
                },
            }),
            centre: self.centre,
        };
        let facts = Facts {
            disclosure: Some(&d),
            ..Facts::default()
        };
        access::decide(principal, fhir, s.target(), &facts, now_ms)
    }
}

/// R-CONSENT-2: a producer stores straight into the organiser's register
/// (`X-Kanta-Register-Of: <organiser>` on a create). This reads the facts only — the patient's
/// consent facts with the organiser's purchased-services mandates —; whether the mandate lets this
/// producer store this record is the one decision's (`access::producer_rule`), inside the write.
/// `None`: the caller's own register.
async fn organisers_register(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    resource: &kanta_fhir::Checked,
) -> ApiResult<Option<(OrgId, ConsentFacts)>> {
    let Some(v) = headers.get("x-kanta-register-of") else {
        return Ok(None);
    };
    let organiser = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 64 && kanta_fhir::resource::valid_id(s))
        .ok_or_else(|| FhirError::bad_request("X-Kanta-Register-Of must be an organisation id"))?;
    if organiser == caller.org().as_str() {
        return Ok(None);
    }
    let patient = match &resource.patient {
        Some(kanta_fhir::PatientLink::Reference { reference, .. }) => {
            reference.strip_prefix("Patient/").map(str::to_string)
        }
        _ => None,
    }
    .ok_or_else(|| {
        FhirError::invalid(
            "subject",
            "storing into another register names its patient as Patient/<id>",
        )
    })?;
    // An unknown patient has no mandates: the decision refuses as for a known one without.
    let facts = match state.store.patient_key_of(&patient).await? {
        Some(key) => {
            let mut consents = Consents::new(CentreAccess::Searched);
            consents.load_patient(state, key).await?;
            consents.facts.remove(&key).unwrap_or_default()
        }
        None => ConsentFacts::default(),
    };
    Ok(Some((OrgId::new(organiser), facts)))
}

fn access(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    action: Action,
    subject: Option<PatientKey>,
    query: Option<String>,
) -> Access {
    Access {
        actor: caller.actor(),
        on_behalf_of: None,
        action,
        query,
        request_id: request_id.0.clone(),
        now_ms: datetime::millis(state.clock.now()),
        subject,
    }
}

/// Whether this caller may make this kind of request at all (before anything is read).
fn may(
    state: &AppState,
    caller: &Caller,
    interaction: Interaction,
    rtype: &str,
) -> ApiResult<access::Action> {
    let action = access::Action::fhir(interaction, rtype);
    caller.decide(
        &action,
        Target::Request,
        datetime::millis(state.clock.now()),
    )?;
    Ok(action)
}

fn audit_unavailable() -> ApiError {
    ApiError(FhirError::new(
        ErrorKind::Unavailable,
        "the audit log is unavailable, so no data was released; try again shortly",
    ))
}

/// A write, with its audit records committed before anything is answered.
async fn write_released(
    state: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    action: Action,
    request: WriteRequest,
) -> ApiResult<(Receipt, Vec<Written>)> {
    // A producer's write into the organiser's register says so in its audit record (R-CONSENT-2).
    let query =
        (request.org != *caller.org()).then(|| format!("register-of={}", request.org.as_str()));
    let access = access(state, caller, request_id, action, None, query);
    let committed = state
        .store
        .write_audited(request, state.clock.now(), &access)
        .await?;
    state
        .audit
        .settle(committed, &access)
        .await
        .map_err(|_| audit_unavailable())
}

/// A response carrying one resource; it needs the receipt of its audit records.
fn resource_response(
    _receipt: &Receipt,
    status: StatusCode,
    stored: &Stored,
    base: &str,
) -> Response {
    let mut res = fhir_response(status, &stored.body);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", stored.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&datetime::instant(stored.last_updated)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if status == StatusCode::CREATED {
        let loc = format!(
            "{base}/{}/{}/_history/{}",
            stored.resource_type, stored.id, stored.version
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            h.insert(header::LOCATION, v);
        }
    }
    res
}

/// Parse a JSON body, naming where it is malformed.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(FhirError::bad_request(
            "the request body is empty; send a FHIR resource as JSON",
        )
        .into());
    }
    serde_json::from_slice(body).map_err(|e| {
        FhirError::bad_request(format!(
            "the body is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        ))
        .into()
    })
}

/// The body of a create/update/transaction: FHIR JSON within the size limit.
fn body_json(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/fhir+json" && mime != "application/json" {
        return Err(FhirError::new(
            ErrorKind::UnsupportedMediaType,
            "send Content-Type: application/fhir+json (or application/json)",
        )
        .into());
    }
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            FhirError::new(
                ErrorKind::PayloadTooLarge,
                "the request body is larger than this server accepts",
            )
        } else {
            FhirError::bad_request("the request body could not be read")
        }
    })?;
    parse_json(&bytes)
}

fn supported_type(rtype: &str) -> Result<Scope, ApiError> {
    scope_of(rtype).ok_or_else(|| {
        FhirError::not_found(format!(
            "resource type '{rtype}' is not supported by this server (see /fhir/metadata)"
        ))
        .into()
    })
}

async fn metadata(State(state): State<AppState>) -> Response {
    fhir_response(
        StatusCode::OK,
        &capability::capability_statement(
            &state.config.fhir_base(),
            env!("CARGO_PKG_VERSION"),
            "2026-11-24",
        ),
    )
}

pub(crate) async fn not_found() -> ApiError {
    FhirError::not_found("no such endpoint (the FHIR API is under /fhir; see /fhir/metadata)")
        .into()
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath((rtype, id)): FhirPath<(String, String)>,
) -> ApiResult<Response> {
    supported_type(&rtype)?;
    let fhir = may(&state, &caller, Interaction::Read, &rtype)?;
    let sealed = state.store.read(&rtype, &id).await?;
    let (receipt, stored) = release(
        &state,
        &caller,
        &rid,
        Action::Read,
        &fhir,
        None,
        None,
        sealed,
        &mut Consents::new(CentreAccess::Presented),
    )
    .await?;
    let stored =
        stored.ok_or_else(|| FhirError::not_found(format!("{rtype}/{id} is not known")))?;
    Ok(resource_response(
        &receipt,
        StatusCode::OK,
        &stored,
        &state.config.fhir_base(),
    ))
}

async fn vread(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath((rtype, id, vid)): FhirPath<(String, String, String)>,
) -> ApiResult<Response> {
    supported_type(&rtype)?;
    let fhir = may(&state, &caller, Interaction::Vread, &rtype)?;
    let v: i32 = vid
        .parse()
        .map_err(|_| FhirError::bad_request(format!("version id '{vid}' is not a number")))?;
    if !current_permitted(&state, &caller, &rtype, &id).await? {
        return Err(FhirError::not_found(format!("{rtype}/{id} has no version {v}")).into());
    }
    let sealed = state.store.vread(&rtype, &id, v).await?;
    let (receipt, stored) = release(
        &state,
        &caller,
        &rid,
        Action::Read,
        &fhir,
        None,
        None,
        sealed,
        &mut Consents::new(CentreAccess::Presented),
    )
    .await?;
    let stored =
        stored.ok_or_else(|| FhirError::not_found(format!("{rtype}/{id} has no version {v}")))?;
    Ok(resource_response(
        &receipt,
        StatusCode::OK,
        &stored,
        &state.config.fhir_base(),
    ))
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath((rtype, id)): FhirPath<(String, String)>,
) -> ApiResult<Response> {
    supported_type(&rtype)?;
    let fhir = may(&state, &caller, Interaction::History, &rtype)?;
    if !current_permitted(&state, &caller, &rtype, &id).await? {
        return Err(FhirError::not_found(format!("{rtype}/{id} is not known")).into());
    }
    let sealed = state.store.history(&rtype, &id).await?;
    let (_receipt, versions) = release(
        &state,
        &caller,
        &rid,
        Action::Read,
        &fhir,
        None,
        None,
        sealed,
        &mut Consents::new(CentreAccess::Presented),
    )
    .await?;
    if versions.is_empty() {
        return Err(FhirError::not_found(format!("{rtype}/{id} is not known")).into());
    }
    let base = state.config.fhir_base();
    let total = versions.len();
    let b = bundle::bundle_of(
        "history",
        &base,
        versions.into_iter().map(|s| s.body).collect(),
        &format!("{base}/{rtype}/{id}/_history"),
        None,
        Some(total),
    );
    Ok(fhir_response(StatusCode::OK, &b))
}

/// A record's older versions and history are released only as its current version is (issue 29):
/// the current version is judged as a read — nothing of it released or recorded — and when it is
/// refused or absent, so is every version (the same 404 as the read). Each version released is
/// then judged again by itself.
async fn current_permitted(
    state: &AppState,
    caller: &Caller,
    rtype: &str,
    id: &str,
) -> ApiResult<bool> {
    let read = access::Action::fhir(Interaction::Read, rtype);
    let current = state.store.read(rtype, id).await?;
    let mut consents = Consents::new(CentreAccess::Presented);
    consents.load(state, &caller.principal, &current).await?;
    let now_ms = datetime::millis(state.clock.now());
    let judged = current.judged(|s| {
        consents
            .decide(&caller.principal, &read, s, now_ms)
            .is_permit()
    });
    Ok(judged == [true])
}

fn op_resource(op: &WriteOp) -> &kanta_fhir::Checked {
    match op {
        WriteOp::Create { resource, .. } | WriteOp::Update { resource, .. } => resource,
    }
}

/// At most `max` references in one resource (each costs a look-up inside the write transaction).
fn references_within(resource: &kanta_fhir::Checked, max: usize, at: &str) -> ApiResult<()> {
    let n = kanta_fhir::bundle::count_references(&resource.body);
    if n > max {
        return Err(FhirError::invalid(
            at,
            format!("{at}: the resource has {n} references; this server takes at most {max} (max_references_per_resource)"),
        )
        .into());
    }
    Ok(())
}

fn if_none_exist(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    match headers.get("if-none-exist").and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(q) => Ok(Some(bundle::parse_identifier_criterion(q)?)),
    }
}

/// A version ETag, exactly: `W/"3"` (or the strong `"3"`); anything else is a 400, never a guess.
fn if_match(raw: Option<&str>) -> Result<Option<i32>, ApiError> {
    let Some(s) = raw else {
        return Ok(None);
    };
    let t = s.trim();
    let quoted = t.strip_prefix("W/").unwrap_or(t);
    let version = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .filter(|v| !v.is_empty() && v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 1);
    version.map(Some).ok_or_else(|| {
        let shown: String = s.chars().take(40).collect();
        FhirError::bad_request(format!(
            "If-Match must be a version ETag like W/\"3\", not '{shown}'"
        ))
        .into()
    })
}

fn expect_type(value: &Value, rtype: &str) -> Result<(), ApiError> {
    match value.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rtype => Ok(()),
        Some(t) => Err(FhirError::bad_request(format!(
            "the body is a {t}, but the URL says {rtype}"
        ))
        .into()),
        None => Err(FhirError::bad_request("the resource has no resourceType").into()),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath(rtype): FhirPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    supported_type(&rtype)?;
    may(&state, &caller, Interaction::Create, &rtype)?;
    let value = body_json(&headers, body)?;
    expect_type(&value, &rtype)?;
    let resource = check(value)?;
    references_within(
        &resource,
        state.config.limits.max_references_per_resource,
        &rtype,
    )?;
    let register = organisers_register(&state, &caller, &headers, &resource).await?;
    let if_none_exist = if_none_exist(&headers)?;
    if register.is_some() && if_none_exist.is_some() {
        return Err(FhirError::bad_request(
            "If-None-Exist is not supported with X-Kanta-Register-Of",
        )
        .into());
    }
    let op = WriteOp::Create {
        resource,
        if_none_exist,
    };
    let written = write_one(&state, &caller, &rid, rtype.clone(), op, register).await?;
    let status = if written.1.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let (receipt, written) = written;
    Ok(resource_response(
        &receipt,
        status,
        &written.stored,
        &state.config.fhir_base(),
    ))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath((rtype, id)): FhirPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    supported_type(&rtype)?;
    may(&state, &caller, Interaction::Update, &rtype)?;
    if !valid_id(&id) {
        return Err(FhirError::bad_request(format!("'{id}' is not a valid FHIR id")).into());
    }
    let value = body_json(&headers, body)?;
    expect_type(&value, &rtype)?;
    let resource = check(value)?;
    references_within(
        &resource,
        state.config.limits.max_references_per_resource,
        &rtype,
    )?;
    let op = WriteOp::Update {
        resource,
        id,
        if_match: if_match(headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()))?,
    };
    let written = write_one(&state, &caller, &rid, rtype.clone(), op, None).await?;
    let status = if written.1.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let (receipt, written) = written;
    Ok(resource_response(
        &receipt,
        status,
        &written.stored,
        &state.config.fhir_base(),
    ))
}

async fn write_one(
    state: &AppState,
    caller: &Caller,
    rid: &RequestId,
    rtype: String,
    op: WriteOp,
    register: Option<(OrgId, ConsentFacts)>,
) -> ApiResult<(Receipt, Written)> {
    let action = if matches!(op, WriteOp::Update { .. }) {
        Action::Update
    } else {
        Action::Create
    };
    let req = WriteRequest {
        principal: caller.principal.clone(),
        org: register
            .as_ref()
            .map_or_else(|| caller.org().clone(), |(org, _)| org.clone()),
        ops: vec![(rtype, None, op)],
        citizen: None,
        centre: state.centre.clone(),
        organiser: register.map(|(_, facts)| facts),
    };
    let (receipt, written) = write_released(state, caller, rid, action, req).await?;
    let one = written
        .into_iter()
        .find(|w| !w.derived)
        .ok_or_else(|| ApiError(FhirError::internal()))?;
    Ok((receipt, one))
}

/// Turn a transaction Bundle into one all-or-nothing write by `principal` (into its
/// organisation's register), checking every entry's resource. Also returns each entry's type and
/// interaction, for the request-level access decision.
pub fn bundle_write_request(
    principal: Principal,
    value: Value,
) -> Result<(WriteRequest, Vec<(String, Interaction)>), FhirError> {
    let org = principal.org().cloned().ok_or_else(|| {
        FhirError::new(
            ErrorKind::Forbidden,
            "only organisations' systems write records",
        )
    })?;
    let entries = bundle::parse_transaction(value)?;
    let mut ops = Vec::with_capacity(entries.len());
    let mut scopes = Vec::with_capacity(entries.len());
    for e in entries {
        let at = e.expression();
        let (rtype, id) = match e.url.split_once('/') {
            Some((t, id)) => (t.to_string(), Some(id.to_string())),
            None => (e.url.split('?').next().unwrap_or("").to_string(), None),
        };
        scope_of(&rtype).ok_or_else(|| {
            FhirError::invalid(
                format!("{at}.request.url"),
                format!("{at}.request.url: type '{rtype}' is not supported"),
            )
        })?;
        if e.resource.get("resourceType").and_then(Value::as_str) != Some(rtype.as_str()) {
            return Err(FhirError::invalid(
                format!("{at}.resource"),
                format!(
                    "{at}: the resource type does not match request.url '{}'",
                    e.url
                ),
            ));
        }
        let resource = check(e.resource).map_err(|err| err.within(&format!("{at}.resource")))?;
        let interaction = match e.method {
            Method::Post => Interaction::Create,
            Method::Put => Interaction::Update,
        };
        let op = match (e.method, id) {
            (Method::Post, None) => WriteOp::Create {
                resource,
                if_none_exist: e
                    .if_none_exist
                    .as_deref()
                    .map(bundle::parse_identifier_criterion)
                    .transpose()?,
            },
            (Method::Put, Some(id)) => WriteOp::Update {
                resource,
                id,
                if_match: if_match(e.if_match.as_deref()).map_err(|e| e.0)?,
            },
            (Method::Post, Some(_)) => {
                return Err(FhirError::invalid(
                    format!("{at}.request.url"),
                    format!("{at}: POST takes a type, not Type/id"),
                ))
            }
            (Method::Put, None) => {
                return Err(FhirError::invalid(
                    format!("{at}.request.url"),
                    format!("{at}: PUT takes Type/id (conditional update is not supported)"),
                ))
            }
        };
        scopes.push((rtype, interaction));
        ops.push((at, e.full_url, op));
    }
    Ok((
        WriteRequest {
            principal,
            org,
            ops,
            citizen: None,
            centre: None,
            organiser: None,
        },
        scopes,
    ))
}

/// `POST /fhir` with a transaction Bundle: all entries or none.
async fn transaction(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let value = body_json(&headers, body)?;
    let limits = state.config.limits;
    let n = value
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if n > limits.max_bundle_entries {
        return Err(FhirError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the Bundle has {n} entries; this server takes at most {} in one transaction (max_bundle_entries): split it",
                limits.max_bundle_entries
            ),
        )
        .into());
    }
    let (mut request, entries) = bundle_write_request(caller.principal.clone(), value)?;
    request.centre = state.centre.clone();
    for (at, _, op) in &request.ops {
        references_within(op_resource(op), limits.max_references_per_resource, at)?;
    }
    let mut checked = std::collections::BTreeSet::new();
    for (rtype, interaction) in entries {
        if checked.insert((rtype.clone(), interaction)) {
            may(&state, &caller, interaction, &rtype)?;
        }
    }
    let n = request.ops.len();
    let (_receipt, written) =
        write_released(&state, &caller, &rid, Action::Create, request).await?;
    let base = state.config.fhir_base();
    let entries = written
        .into_iter()
        .filter(|w| !w.derived)
        .map(|w| bundle::ResponseEntry {
            status: if w.created { "201 Created" } else { "200 OK" },
            location: format!(
                "{base}/{}/{}/_history/{}",
                w.stored.resource_type, w.stored.id, w.stored.version
            ),
            etag: format!("W/\"{}\"", w.stored.version),
            last_modified: datetime::instant(w.stored.last_updated),
            resource: w.stored.body,
        })
        .collect();
    tracing::info!(entries = n, org = %caller.org(), "transaction committed");
    Ok(fhir_response(
        StatusCode::OK,
        &bundle::transaction_response(entries),
    ))
}

/// `GET /fhir/{type}?…`
async fn search(
    State(state): State<AppState>,
    caller: Caller,
    rid: RequestId,
    FhirPath(rtype): FhirPath<String>,
    FhirQuery(params): FhirQuery,
) -> ApiResult<Response> {
    let scope = supported_type(&rtype)?;
    let fhir = may(&state, &caller, Interaction::Search, &rtype)?;
    let mut q = SearchQuery {
        resource_type: rtype.clone(),
        patient: None,
        identifier: None,
        ascending: false,
        count: 20,
        after: None,
    };
    let mut kept: BTreeMap<&str, String> = BTreeMap::new();
    let mut patient_ref: Option<String> = None;
    let mut queue: (Option<String>, Option<String>, Option<String>) = (None, None, None);
    let max = state.config.limits.max_search_value;
    if params.len() > 16 {
        return Err(FhirError::bad_request("at most 16 search parameters").into());
    }
    for (k, v) in &params {
        // The query goes into the audit log: every value is bounded.
        if v.chars().count() > max || k.len() > 64 {
            return Err(FhirError::bad_request(format!(
                "search parameter values are at most {max} characters"
            ))
            .into());
        }
        match k.as_str() {
            "patient" | "subject" if scope == Scope::Patient && rtype != "Patient" => {
                if patient_ref.replace(v.clone()).is_some() {
                    return Err(FhirError::bad_request(
                        "give the patient once (patient= or subject=)",
                    )
                    .into());
                }
                kept.insert("patient", v.clone());
            }
            "identifier" => {
                let (system, value) = v.split_once('|').ok_or_else(|| {
                    FhirError::bad_request(format!(
                        "identifier must be system|value, e.g. {}|<HETU>",
                        codes::HETU_SYSTEM
                    ))
                })?;
                // The platform's own indexes are not searchable as identifiers.
                if system.starts_with("urn:kanta:index:") || q.identifier.is_some() {
                    return Err(FhirError::bad_request(
                        "give one identifier (system|value) of the resource, not an internal index",
                    )
                    .into());
                }
                if system == codes::HETU_SYSTEM {
                    kanta_domain::hetu::Hetu::parse(value).map_err(|e| {
                        FhirError::at(
                            ErrorKind::BadRequest,
                            "identifier",
                            format!("identifier: invalid HETU: {e}"),
                        )
                    })?;
                }
                q.identifier = Some((system.to_string(), value.to_string()));
                kept.insert("identifier", v.clone());
            }
            "_count" => {
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        FhirError::bad_request(format!(
                            "_count must be a number from 1 to 1000, not '{v}'"
                        ))
                    })?;
                q.count = n;
                kept.insert("_count", v.clone());
            }
            "_sort" => {
                q.ascending = match v.as_str() {
                    "date" => true,
                    "-date" => false,
                    other => {
                        return Err(FhirError::bad_request(format!(
                            "_sort supports date and -date, not '{other}'"
                        ))
                        .into())
                    }
                };
                kept.insert("_sort", v.clone());
            }
            // R-CONSENT-2 v2: a producer lists the purchased-services mandates granted to it —
            // its own organisation only.
            "producer" if rtype == "Consent" => {
                let org = v.strip_prefix("Organization/").unwrap_or(v);
                if q.identifier.is_some() {
                    return Err(
                        FhirError::bad_request("give producer= or identifier=, once").into(),
                    );
                }
                if caller.principal.org().map(|o| o.as_str()) != Some(org) {
                    return Err(FhirError::new(
                        ErrorKind::Forbidden,
                        "producer= lists the mandates granted to your own organisation only",
                    )
                    .into());
                }
                q.identifier = Some((
                    kanta_store::MANDATE_PRODUCER_INDEX.to_string(),
                    org.to_string(),
                ));
                kept.insert("producer", v.clone());
            }
            // A queue of the Prescription Centre: the caller's own (docs/prescription-centre.md).
            "owner" | "code" | "status" if rtype == "Task" => {
                let slot = match k.as_str() {
                    "owner" => &mut queue.0,
                    "code" => &mut queue.1,
                    _ => &mut queue.2,
                };
                if slot.replace(v.clone()).is_some() {
                    return Err(FhirError::bad_request(format!("give {k} once")).into());
                }
                kept.insert(k.as_str(), v.clone());
            }
            // The dispensations of one prescription.
            "prescription" if rtype == "MedicationDispense" => {
                let id = v.strip_prefix("MedicationRequest/").unwrap_or(v);
                if !valid_id(id) || q.identifier.is_some() {
                    return Err(FhirError::bad_request(
                        "prescription= names one prescription (MedicationRequest/<id>)",
                    )
                    .into());
                }
                q.identifier = Some((
                    kanta_store::centre::PRESCRIPTION_INDEX.to_string(),
                    format!("MedicationRequest/{id}"),
                ));
                kept.insert("prescription", v.clone());
            }
            "_page" => q.after = Some(decode_cursor(v)?),
            "_format" => {}
            other => {
                return Err(FhirError::bad_request(format!(
                    "search parameter '{other}' is not supported for {rtype} (see /fhir/metadata)"
                ))
                .into())
            }
        }
    }
    match queue {
        (None, None, None) => {}
        (Some(owner), code, status) => {
            let org = owner.strip_prefix("Organization/").unwrap_or(&owner);
            if caller.principal.org().map(|o| o.as_str()) != Some(org) {
                return Err(FhirError::new(
                    ErrorKind::Forbidden,
                    "owner= lists your own organisation's queue only",
                )
                .into());
            }
            if q.identifier.is_some() {
                return Err(FhirError::bad_request("give owner= or identifier=, once").into());
            }
            q.identifier = Some(match (code, status) {
                (None, None) => (
                    kanta_store::centre::TASK_OWNER_INDEX.to_string(),
                    org.to_string(),
                ),
                (Some(c), Some(st)) => (
                    kanta_store::centre::TASK_QUEUE_INDEX.to_string(),
                    format!("{org}|{c}|{st}"),
                ),
                _ => {
                    return Err(FhirError::bad_request(
                        "a queue is owner= alone, or owner= with both code= and status=",
                    )
                    .into())
                }
            });
        }
        (None, _, _) => {
            return Err(FhirError::bad_request(
                "code= and status= of a Task go with owner= (your organisation's queue)",
            )
            .into())
        }
    }
    // A patient by HETU: the key through the HETU routing table first, then one patient's data
    // (a single-shard query, R-X-8), never a scan of every patient's identifiers.
    if rtype == "Patient" && q.patient.is_none() {
        if let Some((system, value)) = &q.identifier {
            if system == codes::HETU_SYSTEM {
                let hetu = kanta_domain::hetu::Hetu::parse(value).map_err(|e| {
                    FhirError::bad_request(format!("identifier: invalid HETU: {e}"))
                })?;
                match state.store.patient_key_for_hetu(&hetu).await? {
                    Some(k) => q.patient = Some(k),
                    None => return Ok(searchset(&state, &rtype, &[], &kept, None)),
                }
            }
        }
    }
    if let Some(r) = &patient_ref {
        let id = r.strip_prefix("Patient/").unwrap_or(r);
        match state.store.patient_key_of(id).await? {
            Some(k) => q.patient = Some(k),
            None => return Ok(searchset(&state, &rtype, &[], &kept, None)),
        }
    }
    if scope == Scope::Patient && q.patient.is_none() && q.identifier.is_none() {
        return Err(FhirError::bad_request(if rtype == "Patient" {
            format!(
                "searching Patient needs identifier={}|<HETU>",
                codes::HETU_SYSTEM
            )
        } else {
            format!("searching {rtype} needs patient= (or subject=) or identifier=")
        })
        .into());
    }
    let count = q.count;
    let mut consents = Consents::new(CentreAccess::Searched);
    let now_ms = datetime::millis(state.clock.now());
    // Refused records are dropped before the page is made, and the search reads on until the
    // page has one record more than it shows (so `next` is there exactly when more follow). The
    // first read asks for that one more: when none is refused, no second read (before, every page
    // with a next page read up to 100 more records to find the one: 15% of the benchmark's reads).
    let first = kanta_store::SearchQuery {
        count: count + 1,
        ..q.clone()
    };
    let mut scanned = first.count;
    // Reading on past refused records is bounded by count and by a deadline (issue 30: 5,000
    // refused records made a search take 63 ms instead of 3); past either, the page ends with a
    // `next` after the last record kept.
    let limits = state.config.limits;
    let deadline = tokio::time::Instant::now() + limits.search_scan_deadline;
    let mut decided = vec![];
    let mut batch = Some(state.store.search(&first).await?);
    let mut sealed: Option<Sealed<kanta_store::Page>> = None;
    while let Some(mut page) = batch.take() {
        consents.load(&state, &caller.principal, &page).await?;
        page.retain(|s| {
            let d = consents.decide(&caller.principal, &fhir, s, now_ms);
            let keep = d.is_permit();
            if keep {
                decided.push(d);
            }
            keep
        });
        let mut kept = match sealed.take() {
            Some(mut all) => {
                all.extend(page);
                all
            }
            None => page,
        };
        if let Some(c) = kept.next() {
            let spent =
                scanned >= limits.search_scan_max || tokio::time::Instant::now() >= deadline;
            if kept.len() <= count && spent {
                // Read as far as a request may: continue after the last record kept (never after
                // a refused one), or end here if none was.
                kept.limit_after_last();
            } else if kept.len() <= count {
                let mut more_q = q.clone();
                more_q.after = Some(c);
                more_q.count = (count * 4).clamp(100, 1000);
                let more = state.store.search(&more_q).await?;
                scanned += more.len();
                batch = Some(more);
            }
        }
        sealed = Some(kept);
    }
    let Some(mut sealed) = sealed else {
        return Err(FhirError::new(ErrorKind::Internal, "search produced no page").into());
    };
    sealed.limit(count);
    decided.truncate(count);
    consents.decided = Some(decided);
    let audit_query = audit_query(&rtype, &kept);
    let (_receipt, page) = release(
        &state,
        &caller,
        &rid,
        Action::Search,
        &fhir,
        q.patient,
        Some(audit_query),
        sealed,
        &mut consents,
    )
    .await?;
    Ok(searchset(&state, &rtype, &page.resources, &kept, page.next))
}

fn searchset(
    state: &AppState,
    rtype: &str,
    resources: &[Found],
    kept: &BTreeMap<&str, String>,
    next: Option<Cursor>,
) -> Response {
    let base = state.config.fhir_base();
    let query = |extra: Option<(&str, String)>| -> String {
        let mut pairs: Vec<(String, String)> = kept
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if let Some((k, v)) = extra {
            pairs.push((k.to_string(), v));
        }
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        format!("{base}/{rtype}?{}", encoded.join("&"))
    };
    let next_url = next.map(|c| query(Some(("_page", encode_cursor(&c)))));
    let items: Vec<(&str, &str, &str)> = resources
        .iter()
        .map(|f| (f.resource_type.as_str(), f.id.as_str(), f.json.get()))
        .collect();
    let body = bundle::searchset_raw(&base, &items, &query(None), next_url.as_deref());
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    res
}

/// The search as the audit log records it: HETUs replaced by a placeholder (the patient is already
/// the record's subject).
fn audit_query(rtype: &str, kept: &BTreeMap<&str, String>) -> String {
    let parts: Vec<String> = kept
        .iter()
        .map(|(k, v)| {
            if *k == "identifier" && v.starts_with(codes::HETU_SYSTEM) {
                format!("{k}={}|<hetu>", codes::HETU_SYSTEM)
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{rtype}?{}", parts.join("&"))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", c.effective_at, c.id))
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let bad = || {
        ApiError(FhirError::bad_request(
            "_page is not a page token this server issued",
        ))
    };
    let raw =
        String::from_utf8(URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok(Cursor {
        effective_at: at.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}
