//! The built-in mandate registry (demo and tests only): a stand-in for Suomi.fi mandates that
//! serves the same Web API the portal's client ([`super::mandates`]) speaks — the HPA flow
//! (register, the selection page, token, the chosen principals, authorization), the system-level
//! check, the checksum header on every API-key call — and pages to give and revoke mandates
//! (online by the principal, or by an official at a service point for someone without eID,
//! R-PROXY-1) and the guardians' mutual authorisation (proposed by one, confirmed by the other,
//! revocable by either, R-MINOR-6).
//!
//! It exists only when `--demo` turns it on; otherwise every route
//! answers 404. State is in memory: the demo runs as one instance, and a restart re-seeds it.
//!
//! Simplifications, all of the demo's stand-in and not of the client: the manage page identifies
//! the principal by their MyKanta session (Suomi.fi has its own login); a mandate given at a
//! service point is recorded by the operator's system (`POST /test-mandates/service-point` with an
//! operator client's token: at DVV an official's tool, never a citizen's); the mutual authorisation is checked
//! through the system-level endpoint with this registry's own issue, [`MUTUAL_ISSUE`] (DVV's shape
//! for it is not in our sources).

use super::mandates::verify_checksum;
use super::session::{random_token, same_secret};
use super::{error_page, lang_of, render, Ui};
use crate::AppState;
use askama::Template;
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kanta_domain::acting::{GivenAt, GuardianAuthorisation, Mandate, HEALTH_CARE_ISSUE};
use kanta_domain::hetu::Hetu;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// This registry's issue for the guardians' mutual authorisation (delegate = a guardian,
/// principal = the child).
pub const MUTUAL_ISSUE: &str = "urn:kanta:mandate-issue:guardians-mutual-authorisation";

/// Where the registry's routes live.
pub const PREFIX: &str = "/test-mandates";

struct Hpa {
    delegate: Hetu,
    user_id: String,
    chosen: Vec<Hetu>,
    created: i64,
}

#[derive(Default)]
struct Inner {
    mandates: Vec<Mandate>,
    authorisations: Vec<GuardianAuthorisation>,
    sessions: HashMap<String, Hpa>,
    /// code → (session id, redirect uri, created)
    codes: HashMap<String, (String, String, i64)>,
    /// access token → (session id, expires)
    tokens: HashMap<String, (String, i64)>,
}

/// The registry and the e-service credentials it accepts.
pub struct TestMandates {
    pub client_id: String,
    pub api_key: String,
    pub oauth_password: String,
    pub rest_api_key: String,
    inner: Mutex<Inner>,
}

impl TestMandates {
    pub fn new() -> TestMandates {
        TestMandates {
            client_id: random_token(4).chars().take(8).collect(),
            api_key: random_token(16),
            oauth_password: random_token(16),
            rest_api_key: random_token(16),
            inner: Mutex::default(),
        }
    }

    /// Add a mandate (the demo's seed, tests).
    pub fn give(&self, m: Mandate) {
        if let Ok(mut i) = self.inner.lock() {
            i.mandates.push(m);
        }
    }

    /// Add a guardians' authorisation (the demo's seed, tests).
    pub fn authorise(&self, a: GuardianAuthorisation) {
        if let Ok(mut i) = self.inner.lock() {
            i.authorisations.push(a);
        }
    }

    /// Revoke every mandate of `principal` for `delegate` at `at` (tests).
    pub fn revoke(&self, principal: &Hetu, delegate: &Hetu, at: i64) -> usize {
        let Ok(mut i) = self.inner.lock() else {
            return 0;
        };
        let mut n = 0;
        for m in i.mandates.iter_mut() {
            if &m.principal == principal && &m.delegate == delegate && m.revoked_at.is_none() {
                m.revoked_at = Some(at);
                n += 1;
            }
        }
        n
    }

    /// Whether a mandate for `issue` from `principal` to `delegate` is in force at `now`.
    pub fn allowed(&self, delegate: &Hetu, principal: &Hetu, issue: &str, now: i64) -> bool {
        let Ok(i) = self.inner.lock() else {
            return false;
        };
        if issue == MUTUAL_ISSUE {
            return i
                .authorisations
                .iter()
                .any(|a| a.in_force_for(delegate, principal, now));
        }
        i.mandates
            .iter()
            .any(|m| m.allows(delegate, principal, issue, now))
    }

    /// The principals who have given `delegate` a health-care mandate in force now.
    fn principals_of(&self, delegate: &Hetu, now: i64) -> Vec<Hetu> {
        let Ok(i) = self.inner.lock() else {
            return vec![];
        };
        let mut out: Vec<Hetu> = i
            .mandates
            .iter()
            .filter(|m| m.allows(delegate, &m.principal, HEALTH_CARE_ISSUE, now))
            .map(|m| m.principal.clone())
            .collect();
        out.dedup();
        out
    }
}

impl Default for TestMandates {
    fn default() -> Self {
        TestMandates::new()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/test-mandates/service/hpa/user/register/{client}/{hetu}",
            get(register),
        )
        .route(
            "/test-mandates/oauth/authorize",
            get(selection_page).post(select),
        )
        .route("/test-mandates/oauth/token", post(token))
        .route(
            "/test-mandates/service/hpa/api/delegate/{session}",
            get(delegate),
        )
        .route(
            "/test-mandates/service/hpa/api/authorization/{session}/{principal}",
            get(session_authorization),
        )
        .route(
            "/test-mandates/service/rest/hpa/authorization/{client}/{delegate}/{principal}",
            get(rest_authorization),
        )
        .route(
            "/test-mandates/service/hpa/user/unregister/{session}",
            get(unregister),
        )
        .route("/test-mandates/manage", get(manage_page).post(manage))
        .route("/test-mandates/service-point", post(service_point))
}

/// What an official records at a service point for someone without eID (R-PROXY-1).
#[derive(Deserialize)]
struct ServicePointForm {
    /// The principal's HETU, their identity checked from a document.
    principal: String,
    /// The delegate's HETU.
    delegate: String,
    #[serde(default)]
    days: Option<u16>,
    /// The official checked the principal's identity from a document.
    #[serde(default)]
    identity_checked: Option<String>,
}

/// `POST /test-mandates/service-point`: a mandate given at a service point, recorded by the
/// operator's system (bearer token of a client with the operator role) — at DVV an official's
/// tool, never a citizen's. Audited first, with the operator as the actor.
async fn service_point(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    Form(f): Form<ServicePointForm>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refuse = |status: StatusCode, msg: &str| {
        (status, Json(serde_json::json!({"error": msg}))).into_response()
    };
    if !caller
        .client
        .roles
        .contains(&kanta_domain::ids::ClientRole::Operator)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "a mandate given at a service point is recorded by the operator's officials",
        );
    }
    let (Ok(principal), Ok(delegate), Some(_)) = (
        Hetu::parse(f.principal.trim()),
        Hetu::parse(f.delegate.trim()),
        f.identity_checked.as_ref(),
    ) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "principal and delegate must be valid HETUs, and identity_checked given",
        );
    };
    if principal == delegate {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a person cannot be their own proxy",
        );
    }
    let now_t = state.clock.now();
    let now = kanta_fhir::datetime::millis(now_t);
    let key = match state.store.claim_patient_key(&principal, now_t).await {
        Ok(k) => k,
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "try again shortly"),
    };
    let record = kanta_domain::audit::AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: now,
        patient: Some(key),
        actor: caller.actor(),
        on_behalf_of: None,
        action: kanta_domain::audit::Action::Update,
        entities: vec![],
        query: Some("mandate-registry=give-at-service-point".into()),
        outcome: kanta_domain::audit::Outcome::Success,
        request_id: None,
        basis: None,
    };
    if state.audit.commit(vec![record]).await.is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log is unavailable",
        );
    }
    let days = i64::from(f.days.unwrap_or(365).clamp(1, 3650));
    let id = random_token(8);
    reg.give(Mandate {
        id: id.clone(),
        principal,
        delegate,
        issue: HEALTH_CARE_ISSUE.into(),
        valid_from: now,
        valid_to: now + days * 86_400_000,
        revoked_at: None,
        given_at: GivenAt::ServicePoint,
    });
    (StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response()
}

fn enabled(state: &AppState) -> Option<&TestMandates> {
    state.portal.test_mandates.as_deref()
}

fn now_ms(state: &AppState) -> i64 {
    kanta_fhir::datetime::millis(state.clock.now())
}

fn api_error(status: StatusCode, what: &str) -> Response {
    (status, Json(json!({"error": what}))).into_response()
}

/// The path and query as the client signed them (without this registry's prefix).
fn signed_path(uri: &OriginalUri) -> String {
    let pq = uri
        .0
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    pq.strip_prefix(PREFIX).map(str::to_string).unwrap_or(pq)
}

/// Which key signs a call: the Web API key, or the system-level check's own.
#[derive(Clone, Copy)]
enum Key {
    Api,
    Rest,
}

/// What every API-key call starts with: the registry on (else 404), the time, and the checksum
/// header signed with the right key (else 401).
fn api_call<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    uri: &OriginalUri,
    key: Key,
) -> Result<(&'a TestMandates, i64), Box<Response>> {
    let Some(reg) = enabled(state) else {
        return Err(Box::new(StatusCode::NOT_FOUND.into_response()));
    };
    let now = now_ms(state);
    let key = match key {
        Key::Api => &reg.api_key,
        Key::Rest => &reg.rest_api_key,
    };
    let h = headers
        .get("x-asiointivaltuudetauthorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if verify_checksum(h, &reg.client_id, key, &signed_path(uri), now) {
        Ok((reg, now))
    } else {
        Err(Box::new(api_error(StatusCode::UNAUTHORIZED, "checksum")))
    }
}

async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path((client, hetu)): Path<(String, String)>,
) -> Response {
    let (reg, now) = match api_call(&state, &headers, &uri, Key::Api) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(delegate) = Hetu::parse(&hetu) else {
        return api_error(StatusCode::BAD_REQUEST, "hetu");
    };
    if client != reg.client_id {
        return api_error(StatusCode::UNAUTHORIZED, "client");
    }
    let session_id = random_token(16);
    let user_id = random_token(16);
    if let Ok(mut i) = reg.inner.lock() {
        i.sessions.retain(|_, s| now - s.created < 30 * 60 * 1000);
        i.sessions.insert(
            session_id.clone(),
            Hpa {
                delegate,
                user_id: user_id.clone(),
                chosen: vec![],
                created: now,
            },
        );
    }
    Json(json!({"sessionId": session_id, "userId": user_id})).into_response()
}

#[derive(Deserialize)]
struct AuthorizeParams {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    response_type: String,
}

#[derive(Template)]
#[template(path = "test_mandates_select.html")]
struct SelectPage<'a> {
    ui: &'a Ui,
    p: &'a AuthorizeParams,
    people: Vec<(String, String)>,
}

/// The session a selection request belongs to, by its user id.
fn session_of_user(reg: &TestMandates, user: &str) -> Option<(String, Hetu)> {
    let i = reg.inner.lock().ok()?;
    i.sessions
        .iter()
        .find(|(_, s)| same_secret(&s.user_id, user))
        .map(|(id, s)| (id.clone(), s.delegate.clone()))
}

async fn name_of(state: &AppState, hetu: &Hetu) -> String {
    match state.store.person(hetu).await {
        Ok(Some(r)) => format!("{} {}", r.person.given_names, r.person.family_name),
        _ => String::new(),
    }
}

async fn selection_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    if p.client_id != reg.client_id || p.response_type != "code" || p.redirect_uri.is_empty() {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    }
    let Some((_, delegate)) = session_of_user(reg, &p.user) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    let mut people = vec![];
    for h in reg.principals_of(&delegate, now_ms(&state)) {
        people.push((h.as_str().to_string(), name_of(&state, &h).await));
    }
    let ui = Ui {
        lang,
        csrf: String::new(),
        path: "/test-mandates/oauth/authorize".into(),
        signed_in: None,
    };
    render(&SelectPage {
        ui: &ui,
        p: &p,
        people,
    })
}

#[derive(Deserialize)]
struct SelectForm {
    #[serde(flatten)]
    p: AuthorizeParams,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    cancel: Option<String>,
}

async fn select(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SelectForm>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    if f.p.client_id != reg.client_id {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    }
    let Some((session, delegate)) = session_of_user(reg, &f.p.user) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    let back = |pairs: &[(&str, &str)]| {
        let url = reqwest::Url::parse_with_params(&f.p.redirect_uri, pairs)
            .map(String::from)
            .unwrap_or_default();
        Redirect::to(&url).into_response()
    };
    if f.cancel.is_some() {
        return back(&[("error", "access_denied"), ("state", &f.p.state)]);
    }
    let now = now_ms(&state);
    let Ok(principal) = Hetu::parse(&f.principal) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    if !reg.principals_of(&delegate, now).contains(&principal) {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    }
    let code = random_token(16);
    if let Ok(mut i) = reg.inner.lock() {
        if let Some(s) = i.sessions.get_mut(&session) {
            s.chosen = vec![principal];
        }
        i.codes.retain(|_, c| now - c.2 < 60_000);
        i.codes
            .insert(code.clone(), (session, f.p.redirect_uri.clone(), now));
    }
    back(&[("code", &code), ("state", &f.p.state)])
}

#[derive(Deserialize)]
struct TokenParams {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenParams>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", reg.client_id, reg.oauth_password))
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same_secret(given, &expected) {
        return api_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if q.grant_type != "authorization_code" {
        return api_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let now = now_ms(&state);
    let Ok(mut i) = reg.inner.lock() else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "state");
    };
    match i.codes.remove(&q.code) {
        Some((session, uri, at)) if uri == q.redirect_uri && now - at < 60_000 => {
            let t = random_token(24);
            i.tokens.retain(|_, (_, exp)| *exp > now);
            i.tokens.insert(t.clone(), (session, now + 599_000));
            Json(json!({"access_token": t, "token_type": "bearer", "expires_in": 599, "scope": "read write trust"}))
                .into_response()
        }
        _ => api_error(StatusCode::BAD_REQUEST, "invalid_grant"),
    }
}

/// The HPA session `session`, if the request's bearer token opens it (an expired token: 401, as
/// DVV's): its delegate and the principals chosen.
fn opened_session(
    reg: &TestMandates,
    headers: &HeaderMap,
    session: &str,
    now: i64,
) -> Result<(Hetu, Vec<Hetu>), Box<Response>> {
    let refused = || Box::new(api_error(StatusCode::UNAUTHORIZED, "session"));
    let t = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(refused)?;
    let i = reg.inner.lock().map_err(|_| refused())?;
    match i.tokens.get(t) {
        Some((s, exp)) if *exp > now && s == session => i
            .sessions
            .get(session)
            .map(|h| (h.delegate.clone(), h.chosen.clone()))
            .ok_or_else(refused),
        _ => Err(refused()),
    }
}

async fn delegate(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(session): Path<String>,
) -> Response {
    let (reg, now) = match api_call(&state, &headers, &uri, Key::Api) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let chosen = match opened_session(reg, &headers, &session, now) {
        Ok((_, chosen)) => chosen,
        Err(r) => return *r,
    };
    let mut out = vec![];
    for h in chosen {
        out.push(json!({"personId": h.as_str(), "name": name_of(&state, &h).await}));
    }
    Json(out).into_response()
}

#[derive(Deserialize)]
struct IssueQuery {
    #[serde(default)]
    issues: Option<String>,
    #[serde(default)]
    issue: Option<String>,
}

fn result(ok: bool) -> Response {
    Json(json!({"result": if ok { "ALLOWED" } else { "DISALLOWED" }})).into_response()
}

async fn session_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path((session, principal)): Path<(String, String)>,
    Query(q): Query<IssueQuery>,
) -> Response {
    let (reg, now) = match api_call(&state, &headers, &uri, Key::Api) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let delegate = match opened_session(reg, &headers, &session, now) {
        Ok((delegate, _)) => delegate,
        Err(r) => return *r,
    };
    let Ok(principal) = Hetu::parse(&principal) else {
        return api_error(StatusCode::BAD_REQUEST, "principal");
    };
    let issue = q.issues.or(q.issue).unwrap_or_default();
    result(reg.allowed(&delegate, &principal, &issue, now))
}

async fn rest_authorization(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path((client, delegate, principal)): Path<(String, String, String)>,
    Query(q): Query<IssueQuery>,
) -> Response {
    let (reg, now) = match api_call(&state, &headers, &uri, Key::Rest) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if client != reg.client_id {
        return api_error(StatusCode::UNAUTHORIZED, "client");
    }
    let (Ok(delegate), Ok(principal)) = (Hetu::parse(&delegate), Hetu::parse(&principal)) else {
        return api_error(StatusCode::BAD_REQUEST, "hetu");
    };
    let issue = q.issue.or(q.issues).unwrap_or_default();
    result(reg.allowed(&delegate, &principal, &issue, now))
}

async fn unregister(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    Path(session): Path<String>,
) -> Response {
    let (reg, _) = match api_call(&state, &headers, &uri, Key::Api) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if let Ok(mut i) = reg.inner.lock() {
        i.sessions.remove(&session);
        i.tokens.retain(|_, (s, _)| *s != session);
    }
    Json(json!({})).into_response()
}

// --- the pages to give and revoke ------------------------------------------------------------

/// A mandate as the manage page lists it.
pub struct MandateRow {
    pub id: String,
    pub other: String,
    pub from: String,
    pub to: String,
    pub state_key: &'static str,
    pub service_point: bool,
}

/// A guardians' authorisation as the manage page lists it.
pub struct AuthorisationRow {
    pub id: String,
    pub child: String,
    pub other: String,
    pub state_key: &'static str,
    /// This guardian may confirm it (the other proposed it).
    pub confirmable: bool,
}

#[derive(Template)]
#[template(path = "test_mandates_manage.html")]
struct ManagePage<'a> {
    ui: &'a Ui,
    given: Vec<MandateRow>,
    received: Vec<MandateRow>,
    authorisations: Vec<AuthorisationRow>,
    /// Children whose other guardian could be authorised: (child HETU, child name, other HETU, other name).
    children: Vec<(String, String, String, String)>,
    notice: Option<String>,
}

fn day(ms: i64) -> String {
    kanta_fhir::datetime::helsinki(ms)
        .map(|t| format!("{}.{}.{}", t.day(), u8::from(t.month()), t.year()))
        .unwrap_or_default()
}

fn mandate_state(m: &Mandate, now: i64) -> &'static str {
    if m.revoked_at.is_some_and(|r| r <= now) {
        "mandates-state-revoked"
    } else if now >= m.valid_to {
        "mandates-state-expired"
    } else if now < m.valid_from {
        "mandates-state-future"
    } else {
        "mandates-state-valid"
    }
}

async fn manage_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let s = match super::confirmed_session(&state, &headers, now).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = kanta_fhir::datetime::millis(now);
    let me = s.hetu.clone();
    let (mandates, auths) = match reg.inner.lock() {
        Ok(i) => (i.mandates.clone(), i.authorisations.clone()),
        Err(_) => (vec![], vec![]),
    };
    let mut given = vec![];
    let mut received = vec![];
    for m in &mandates {
        if m.issue != HEALTH_CARE_ISSUE {
            continue;
        }
        let other = if m.principal == me {
            &m.delegate
        } else if m.delegate == me {
            &m.principal
        } else {
            continue;
        };
        let row = MandateRow {
            id: m.id.clone(),
            other: name_of(&state, other).await,
            from: day(m.valid_from),
            to: day(m.valid_to - 1),
            state_key: mandate_state(m, now),
            service_point: m.given_at == GivenAt::ServicePoint,
        };
        if m.principal == me {
            given.push(row);
        } else {
            received.push(row);
        }
    }
    let mut authorisations = vec![];
    for a in auths
        .iter()
        .filter(|a| a.proposed_by == me || a.other == me)
    {
        let other = if a.proposed_by == me {
            &a.other
        } else {
            &a.proposed_by
        };
        let state_key = if a.revoked_at.is_some() {
            "mandates-state-revoked"
        } else if a.confirmed_at.is_some() {
            "mandates-state-valid"
        } else {
            "mandates-state-pending"
        };
        authorisations.push(AuthorisationRow {
            id: a.id.clone(),
            child: name_of(&state, &a.child).await,
            other: name_of(&state, other).await,
            state_key,
            confirmable: a.other == me && a.confirmed_at.is_none() && a.revoked_at.is_none(),
        });
    }
    // The children this person is a guardian of, with each other guardian.
    let mut children = vec![];
    if let Ok(rels) = state.store.relations_held_by(&me).await {
        for r in rels.iter().filter(|r| {
            r.kind == kanta_domain::population::RelationKind::Guardian
                && kanta_fhir::datetime::helsinki(now).is_some_and(|t| r.in_force(t.date()))
        }) {
            if let Ok(Some(child)) = state.store.person(&r.subject).await {
                for other in child.relations.iter().filter(|o| {
                    o.kind == kanta_domain::population::RelationKind::Guardian && o.holder != me
                }) {
                    children.push((
                        r.subject.as_str().to_string(),
                        format!("{} {}", child.person.given_names, child.person.family_name),
                        other.holder.as_str().to_string(),
                        name_of(&state, &other.holder).await,
                    ));
                }
            }
        }
    }
    let ui = super::ui_for(&state, lang, "/test-mandates/manage", Some(&s), "");
    let notice = q.done.as_deref().and_then(|d| match d {
        "given" | "revoked" | "proposed" | "confirmed" => Some(ui.t(format!("mandates-done-{d}"))),
        _ => None,
    });
    render(&ManagePage {
        ui: &ui,
        given,
        received,
        authorisations,
        children,
        notice,
    })
}

#[derive(Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    done: Option<String>,
}

#[derive(Deserialize)]
struct ManageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    id: String,
    /// The delegate's HETU (give), the other guardian's (propose).
    #[serde(default)]
    hetu: String,
    /// The child's HETU (propose).
    #[serde(default)]
    child: String,
    /// Valid for this many days (default 365).
    #[serde(default)]
    days: Option<u32>,
}

/// Every change in the registry is audited before it is made (fail closed): who, about whom (the
/// principal or the child), what.
async fn audit_change(
    state: &AppState,
    actor: &kanta_store::SessionRow,
    about: &Hetu,
    what: &str,
    now: time::OffsetDateTime,
) -> Result<(), Box<Response>> {
    let lang = super::i18n::Lang::Fi;
    let key = state
        .store
        .claim_patient_key(about, now)
        .await
        .map_err(|e| Box::new(super::PageError::unavailable(lang, &e).into_response()))?;
    let record = kanta_domain::audit::AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(key),
        actor: kanta_domain::audit::Actor::Citizen {
            person: actor.patient_key,
        },
        on_behalf_of: None,
        action: kanta_domain::audit::Action::Update,
        entities: vec![],
        query: Some(format!("mandate-registry={what}")),
        outcome: kanta_domain::audit::Outcome::Success,
        request_id: None,
        basis: None,
    };
    state
        .audit
        .commit(vec![record])
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "audit log unavailable: no mandate change");
            Box::new(error_page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                "error-unavailable",
            ))
        })
}

async fn manage(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ManageForm>,
) -> Response {
    let Some(reg) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now_t = state.clock.now();
    let lang = lang_of(&headers);
    let s = match super::posting_session(&state, &headers, &f.csrf, now_t, true).await {
        Ok(Some(s)) => s,
        Ok(None) => return Redirect::to("/").into_response(),
        Err(r) => return r,
    };
    let now = kanta_fhir::datetime::millis(now_t);
    let bad = || error_page(lang, StatusCode::BAD_REQUEST, "mandates-bad-request");
    let days = i64::from(f.days.unwrap_or(365).clamp(1, 3650));
    let me = s.hetu.clone();
    let done = match f.op.as_str() {
        // A citizen gives a mandate only as its principal; a mandate given at a service point is
        // the operator's act (`service_point`), never a citizen's (issue 29).
        "give" => {
            let Ok(delegate) = Hetu::parse(f.hetu.trim()) else {
                return bad();
            };
            let (principal, given_at) = (me.clone(), GivenAt::Online);
            if delegate == principal {
                return bad();
            }
            if let Err(r) = audit_change(&state, &s, &principal, "give", now_t).await {
                return *r;
            }
            reg.give(Mandate {
                id: random_token(8),
                principal,
                delegate,
                issue: HEALTH_CARE_ISSUE.into(),
                valid_from: now,
                valid_to: now + days * 86_400_000,
                revoked_at: None,
                given_at,
            });
            "given"
        }
        "revoke" => {
            if let Err(r) = audit_change(&state, &s, &me, "revoke", now_t).await {
                return *r;
            }
            let Ok(mut i) = reg.inner.lock() else {
                return bad();
            };
            let mut found = false;
            for m in i.mandates.iter_mut() {
                if m.id == f.id && m.principal == me && m.revoked_at.is_none() {
                    m.revoked_at = Some(now);
                    found = true;
                }
            }
            for a in i.authorisations.iter_mut() {
                if a.id == f.id && (a.proposed_by == me || a.other == me) && a.revoked_at.is_none()
                {
                    a.revoked_at = Some(now);
                    found = true;
                }
            }
            if !found {
                return bad();
            }
            "revoked"
        }
        "propose" => {
            let (Ok(child), Ok(other)) = (Hetu::parse(f.child.trim()), Hetu::parse(f.hetu.trim()))
            else {
                return bad();
            };
            // Both must be the child's guardians in the population register.
            let ok = match state.store.person(&child).await {
                Ok(Some(r)) => [&me, &other].iter().all(|g| {
                    r.relations.iter().any(|rel| {
                        rel.kind == kanta_domain::population::RelationKind::Guardian
                            && &&rel.holder == g
                    })
                }),
                _ => false,
            };
            if !ok || other == me {
                return bad();
            }
            if let Err(r) =
                audit_change(&state, &s, &child, "mutual-authorisation-proposed", now_t).await
            {
                return *r;
            }
            reg.authorise(GuardianAuthorisation {
                id: random_token(8),
                child,
                proposed_by: me.clone(),
                other,
                proposed_at: now,
                confirmed_at: None,
                revoked_at: None,
            });
            "proposed"
        }
        "confirm" => {
            let child = reg.inner.lock().ok().and_then(|i| {
                i.authorisations
                    .iter()
                    .find(|a| {
                        a.id == f.id
                            && a.other == me
                            && a.confirmed_at.is_none()
                            && a.revoked_at.is_none()
                    })
                    .map(|a| a.child.clone())
            });
            let Some(child) = child else {
                return bad();
            };
            if let Err(r) =
                audit_change(&state, &s, &child, "mutual-authorisation-confirmed", now_t).await
            {
                return *r;
            }
            let Ok(mut i) = reg.inner.lock() else {
                return bad();
            };
            if let Some(a) = i
                .authorisations
                .iter_mut()
                .find(|a| a.id == f.id && a.other == me)
            {
                a.confirmed_at = Some(now);
            }
            "confirmed"
        }
        _ => return bad(),
    };
    Redirect::to(&format!("/test-mandates/manage?done={done}")).into_response()
}
