//! MyKanta, the citizen portal: server-rendered HTML in Finnish, Swedish and English that works
//! without JavaScript. This module holds identification (R-AUTH-1…7), sessions, the portal shell
//! and the built-in test identification service.
//!
//! Invariants:
//! - A page with personal data is rendered only for a live, confirmed session (the [`Citizen`]
//!   extractor), and every state-changing request passes [`csrf_ok`] and the same-origin check.
//! - Login, failed login and logout are audited before the response leaves; if the audit log cannot
//!   take the record, the login fails (fail closed).
//! - The session id, the HETU and tokens never reach the logs.

pub mod acting;
pub mod data_use;
pub mod facts;
pub mod i18n;
pub mod jose;
pub mod mandates;
pub mod narrative;
pub mod oidc;
pub mod prescriptions;
pub mod records;
pub mod sections;
pub mod session;
pub mod test_idp;
pub mod test_mandates;

use crate::AppState;
use askama::Template;
use async_trait::async_trait;
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use i18n::{tr, Lang};
use kanta_domain::audit::{Action, Actor, AuditRecord, Outcome};
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::PatientKey;
use kanta_domain::population::PersonRecord;
use kanta_store::{PendingLogin, SessionRow, Store};
use oidc::{IdentError, Identification};
use serde::Deserialize;
use session::{cookie, hash, millis, random_token, same_secret, Cookies, SessionPolicy, Standing};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// The population register as the portal asks it at login (R-AUTH-2): the operator's own copy
/// today; a live query to the population information system could implement the same.
#[async_trait]
pub trait PopulationRegister: Send + Sync {
    /// `Err` means the register could not be asked (login then fails closed).
    async fn person(&self, hetu: &Hetu) -> Result<Option<PersonRecord>, String>;
}

/// The register kept in the platform's own database.
pub struct StoreRegister(pub Arc<dyn Store>);

#[async_trait]
impl PopulationRegister for StoreRegister {
    async fn person(&self, hetu: &Hetu) -> Result<Option<PersonRecord>, String> {
        self.0.person(hetu).await.map_err(|e| e.to_string())
    }
}

/// Everything the portal needs besides the store and the audit log.
#[derive(Clone)]
pub struct Portal {
    /// People known to have received the information notice (R-INFO-1).
    pub informed: Arc<data_use::Informed>,
    pub identification: Option<Arc<dyn Identification>>,
    pub register: Arc<dyn PopulationRegister>,
    pub policy: SessionPolicy,
    pub cookies: Cookies,
    pub limiter: Arc<RateLimiter>,
    pub test_idp: Option<Arc<test_idp::TestIdp>>,
    /// The mandate service (R-PROXY): `None` when none is configured (acting for adults is then
    /// refused, naming the service; R-OPS-2).
    pub mandates: Option<Arc<dyn mandates::MandateService>>,
    /// Its answers, kept for the re-check interval (R-PROXY-3).
    pub mandate_cache: Arc<mandates::MandateCache>,
    /// The standings pages were shown under, kept a few seconds (never longer than the mandate
    /// re-check interval).
    pub standing_cache: Arc<acting::StandingCache>,
    /// The built-in mandate registry (demo and tests only; its routes answer 404 without it).
    pub test_mandates: Option<Arc<test_mandates::TestMandates>>,
    /// Behind a load balancer: the header it puts the client's address in (e.g. `x-forwarded-for`;
    /// its last entry is taken, the one the balancer appended). Without it the peer address is used.
    pub client_ip_header: Option<String>,
}

impl Portal {
    pub fn new(store: Arc<dyn Store>, public_url: &str) -> Portal {
        Portal {
            identification: None,
            register: Arc::new(StoreRegister(store)),
            policy: SessionPolicy::default(),
            cookies: Cookies {
                secure: public_url.starts_with("https://"),
            },
            limiter: Arc::new(RateLimiter::new(30)),
            informed: Arc::default(),
            test_idp: None,
            mandates: None,
            // With the standing cache's 5 s: a page rests on a mandate answer at most 120 s old.
            mandate_cache: Arc::new(mandates::MandateCache::new(std::time::Duration::from_secs(
                115,
            ))),
            test_mandates: None,
            standing_cache: Arc::new(acting::StandingCache::new(std::time::Duration::from_secs(
                5,
            ))),
            client_ip_header: None,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(front))
        .route("/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/backchannel-logout", post(backchannel_logout))
        .route("/auth/frontchannel-logout", get(frontchannel_logout))
        .route("/auth/jwks", get(rp_jwks))
        .route("/confirm", get(confirm_page).post(confirm))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .route("/session/continue", post(continue_session))
        .route("/session/status", get(session_status))
        .route("/lang", post(set_lang))
        .route("/disclosures", get(disclosures))
        .route("/disclosures/flag", post(flag_disclosure))
        .route("/notice", get(data_use::notice).post(data_use::acknowledge))
        .route("/data-use", get(data_use::page).post(data_use::change))
        .route("/data-use/preview", get(data_use::preview))
        .route("/act-for", get(acting::page).post(acting::switch))
        .route("/act-for/self", post(acting::back_to_self))
        .route("/act-for/mandate", post(acting::mandate_start))
        .route("/act-for/mandate/callback", get(acting::mandate_callback))
        .route("/visits", get(records::visits))
        .route("/records/prescriptions", get(prescriptions::page))
        .route("/records/prescriptions/{id}", get(prescriptions::sheet))
        .route(
            "/records/prescriptions/{id}/request",
            post(prescriptions::request),
        )
        .route("/records/{section}", get(sections::list))
        .route("/records/{section}/{type}/{id}", get(sections::detail))
        .route("/static/portal.css", get(css))
        .route("/static/session.js", get(js))
        .route("/static/favicon.svg", get(favicon))
        .merge(test_idp::routes())
        .merge(test_mandates::routes())
}

// --- security ------------------------------------------------------------------------------

/// Security headers on every response; the same-origin check on every state-changing request.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let is_portal = !["/fhir", "/oauth", "/operator", "/archivist"]
        .iter()
        .any(|p| req.uri().path().starts_with(p));
    if !safe && is_portal && !same_origin(req.headers(), &state.config.public_url) {
        let lang = lang_of(req.headers());
        let mut res = error_page(lang, StatusCode::FORBIDDEN, "error-cross-site");
        security_headers(res.headers_mut(), &state, "");
        return res;
    }
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    security_headers(res.headers_mut(), &state, &path);
    res
}

fn security_headers(h: &mut HeaderMap, state: &AppState, path: &str) {
    if path == "/auth/frontchannel-logout" {
        // Framed by the identification service's logout page, and by nobody else.
        let idp = state
            .portal
            .identification
            .as_ref()
            .map(|i| i.origin())
            .unwrap_or_default();
        let csp = format!("default-src 'none'; frame-ancestors {idp}; base-uri 'none'");
        if let Ok(v) = HeaderValue::from_str(csp.trim()) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        // Front-Channel Logout 1.0 §3: never cached.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        );
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if state.portal.cookies.secure {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
        }
        return;
    }
    // Made per response: the provider's endpoints' origins are known once discovery has run.
    let idp = state
        .portal
        .identification
        .as_ref()
        .map(|i| i.origin())
        .unwrap_or_default();
    // Forms post to ourselves; logout and "continue" redirect to the identity provider:
    // form-action covers those.
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         form-action 'self' {idp}; frame-ancestors 'none'; base-uri 'none'"
    );
    let csp = HeaderValue::from_str(csp.trim())
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Nothing is cached anywhere unless a response says otherwise (only the static assets do):
    // every page, FHIR answer, redirect and error may carry personal data (ASVS 14.3.2).
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.portal.cookies.secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// A state-changing request must come from our own pages. `Sec-Fetch-Site` (sent by current
/// browsers) must say same-origin (or none: typed by the user); then `Origin` may be `null`, which
/// browsers send on form posts under `Referrer-Policy: no-referrer`. Without `Sec-Fetch-Site`, an
/// `Origin` that is sent must be ours. Server-to-server calls send neither.
fn same_origin(h: &HeaderMap, public_url: &str) -> bool {
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => {
            (site == "same-origin" || site == "none")
                && origin.is_none_or(|o| o == "null" || o == oidc::origin_of(public_url))
        }
        None => origin.is_none_or(|o| o == oidc::origin_of(public_url)),
    }
}

/// The synchronizer token check (R-X CSRF): the form's token equals the session's (or, before
/// login, the CSRF cookie's).
pub fn csrf_ok(form_token: &str, expected: &str) -> bool {
    same_secret(form_token, expected)
}

/// Requests per minute per client address, per instance, on the login and callback endpoints.
pub struct RateLimiter {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn allow(&self, ip: IpAddr, now: OffsetDateTime) -> bool {
        let minute = now.unix_timestamp() / 60;
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.len() > 100_000 {
            seen.retain(|_, (m, _)| *m == minute);
        }
        let entry = seen.entry(ip).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }
}

/// The client's address for rate limiting: from the load balancer's header when one is configured,
/// else the TCP peer.
fn client_ip(portal: &Portal, req: &Request) -> IpAddr {
    if let Some(name) = &portal.client_ip_header {
        // Strictly the last entry: an earlier one is whatever the client sent.
        let last = req
            .headers()
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        if let Some(ip) = last {
            return ip;
        }
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

// --- language ------------------------------------------------------------------------------

/// The language: the remembered choice, else the browser's preference, else Finnish.
pub fn lang_of(h: &HeaderMap) -> Lang {
    cookie(h, "kanta_lang")
        .and_then(Lang::from_code)
        .or_else(|| {
            h.get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Fi)
}

// --- what templates see --------------------------------------------------------------------

/// The frame of every page: language, CSRF token, where we are, and who is signed in.
pub struct Ui {
    pub lang: Lang,
    pub csrf: String,
    pub path: String,
    pub signed_in: Option<SignedIn>,
}

pub struct SignedIn {
    pub name: String,
    /// While acting for another person: whose data and as whom (R-OPS-3: every page says it).
    pub acting: Option<acting::Banner>,
    /// When the session ends if idle, as Finnish local time `HH.MM`.
    pub ends_at: String,
    /// Milliseconds since the epoch, for the warning script.
    pub ends_at_ms: i64,
    pub warn_at_ms: i64,
}

impl Ui {
    pub fn t(&self, key: impl AsRef<str>) -> String {
        tr(self.lang, key.as_ref(), &[])
    }
    pub fn t1(&self, key: &str, name: &str, value: &str) -> String {
        tr(self.lang, key, &[(name, value)])
    }
    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
    /// The other languages, for the switch: (code, name in itself).
    pub fn other_langs(&self) -> Vec<(&'static str, &'static str)> {
        Lang::ALL
            .into_iter()
            .filter(|l| *l != self.lang)
            .map(|l| (l.code(), l.native_name()))
            .collect()
    }
}

#[derive(Template)]
#[template(path = "front_public.html")]
struct FrontPublic<'a> {
    ui: &'a Ui,
    notice: Option<String>,
    login_available: bool,
}

#[derive(Template)]
#[template(path = "front.html")]
struct Front<'a> {
    /// The disclosure log is offered (not while acting for another, R-VIEW-5).
    disclosure_log: bool,
    acting: bool,
    /// Whose data the page leads to, when not one's own.
    acting_name: Option<&'a str>,
    ui: &'a Ui,
    name: &'a str,
    nav: Vec<sections::NavItem>,
    /// `None`: the records could not be read just now (the rest of the page still works).
    news: Option<Vec<kanta_domain::display::Visible<sections::Item>>>,
    /// The patient's choices recorded or changed at a care unit lately (issue 29).
    changed_in_care: Vec<data_use::Line>,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct Confirm<'a> {
    ui: &'a Ui,
    name: &'a str,
    hetu: &'a str,
}

/// One line of the disclosure log as the citizen sees it.
pub struct Disclosure {
    pub when: String,
    pub organisation: String,
    pub system: String,
    pub action: String,
    pub items: usize,
    /// The purpose of use the provider named, in words.
    pub purpose: String,
    /// An emergency read (R-X-5): its stated reason.
    pub emergency: Option<String>,
    /// The log entry's sequence number (to flag it, R-X-2).
    pub seq: u64,
}

#[derive(Template)]
#[template(path = "disclosures.html")]
struct Disclosures<'a> {
    ui: &'a Ui,
    rows: Vec<Disclosure>,
    acting_for_other: bool,
    /// The next page, further back in the log.
    older: Option<String>,
    /// After flagging an entry: whom it went to.
    flagged: Option<String>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    ui: &'a Ui,
    title: String,
    text: String,
    /// A refusal of acting for another: the page leads to the act-for page (and back to one's own).
    acting: bool,
}

pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A translated error page.
pub fn error_page(lang: Lang, status: StatusCode, key: &str) -> Response {
    let ui = Ui {
        lang,
        csrf: String::new(),
        path: "/".into(),
        signed_in: None,
    };
    let mut res = render(&Message {
        ui: &ui,
        title: tr(lang, "error-title", &[]),
        text: tr(lang, key, &[]),
        acting: key.starts_with("acting-"),
    });
    *res.status_mut() = status;
    res
}

/// Finnish local time for a UTC instant (ms since the epoch). EU summer time: from the last Sunday
/// of March 01:00 UTC to the last Sunday of October 01:00 UTC, UTC+3; otherwise UTC+2.
pub fn helsinki(ms: i64) -> Option<time::PrimitiveDateTime> {
    kanta_fhir::datetime::helsinki(ms)
}

/// `HH.MM`, Finnish local time.
pub fn helsinki_hm(ms: i64) -> String {
    helsinki(ms)
        .map(|l| format!("{:02}.{:02}", l.hour(), l.minute()))
        .unwrap_or_default()
}

/// `d.m.yyyy HH.MM`, Finnish local time.
pub fn helsinki_datetime(ms: i64) -> String {
    helsinki(ms)
        .map(|l| {
            format!(
                "{}.{}.{} {:02}.{:02}",
                l.day(),
                u8::from(l.month()),
                l.year(),
                l.hour(),
                l.minute()
            )
        })
        .unwrap_or_default()
}

// --- sessions ------------------------------------------------------------------------------

/// The session behind the request's cookie, checked against the idle and absolute limits. An ended
/// session is deleted (and its end audited) here. `touch` records activity: only the citizen's own
/// requests do, never background ones.
async fn load_session(
    state: &AppState,
    headers: &HeaderMap,
    now: OffsetDateTime,
    touch: bool,
) -> Result<SessionLookup, Response> {
    let lang = lang_of(headers);
    let Some(id) = cookie(headers, state.portal.cookies.session()) else {
        return Ok(SessionLookup::None);
    };
    let id_hash = hash(id);
    let row = state.store.session_get(&id_hash).await.map_err(|e| {
        tracing::error!(error = %e, "session store unavailable");
        error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable")
    })?;
    let Some(row) = row else {
        return Ok(SessionLookup::Ended);
    };
    let now_ms = kanta_fhir::datetime::millis(now);
    match state.portal.policy.standing(&row, now_ms) {
        Standing::Live => {
            // Activity is written at most once per `touch_every` (a page view is otherwise a
            // read plus a write); the stored time, not `now`, is what the page then states.
            let touch =
                touch && now_ms - row.last_active_at >= state.portal.policy.touch_every_ms();
            if touch {
                if let Err(e) = state.store.session_touch(&id_hash, now_ms).await {
                    tracing::error!(error = %e, "session touch failed");
                    return Err(error_page(
                        lang,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "error-unavailable",
                    ));
                }
            }
            let mut row = row;
            if touch {
                row.last_active_at = now_ms;
            }
            Ok(SessionLookup::Live(Box::new(row)))
        }
        standing => {
            if let Ok(Some(gone)) = state.store.session_delete(&id_hash).await {
                let reason = if standing == Standing::Idle {
                    "idle-timeout"
                } else {
                    "lifetime"
                };
                let _ = state
                    .audit
                    .commit(vec![session_record(
                        &gone,
                        Action::Logout,
                        Outcome::Success,
                        reason,
                        now,
                        None,
                    )])
                    .await;
            }
            Ok(SessionLookup::Ended)
        }
    }
}

/// End sessions nobody came back to (and logins never finished), auditing each end. Run
/// periodically by the server; ended sessions met by a request are handled at once in
/// [`load_session`] instead.
pub async fn prune_sessions(state: &AppState) -> Result<usize, String> {
    let now = state.clock.now();
    let now_ms = kanta_fhir::datetime::millis(now);
    let policy = state.portal.policy;
    let gone = state
        .store
        .sessions_prune(
            now_ms - millis(policy.idle),
            now_ms,
            now_ms - millis(policy.login_window),
        )
        .await
        .map_err(|e| e.to_string())?;
    let records: Vec<AuditRecord> = gone
        .iter()
        .map(|s| {
            let reason = if policy.standing(s, now_ms) == Standing::Expired {
                "lifetime"
            } else {
                "idle-timeout"
            };
            session_record(s, Action::Logout, Outcome::Success, reason, now, None)
        })
        .collect();
    state
        .audit
        .commit(records)
        .await
        .map_err(|e| e.to_string())?;
    Ok(gone.len())
}

enum SessionLookup {
    None,
    /// There was a cookie, but its session has ended (timed out, logged out elsewhere).
    Ended,
    Live(Box<SessionRow>),
}

fn session_record(
    s: &SessionRow,
    action: Action,
    outcome: Outcome,
    reason: &str,
    now: OffsetDateTime,
    request_id: Option<String>,
) -> AuditRecord {
    AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(s.patient_key),
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: None,
        action,
        entities: vec![],
        query: Some(format!("reason={reason}")),
        outcome,
        request_id,
        basis: None,
    }
}

fn ui_for(
    state: &AppState,
    lang: Lang,
    path: &str,
    session: Option<&SessionRow>,
    anon_csrf: &str,
) -> Ui {
    Ui {
        lang,
        csrf: session.map_or_else(|| anon_csrf.to_string(), |s| s.csrf_token.clone()),
        path: path.to_string(),
        signed_in: session.map(|s| {
            let ends = state.portal.policy.ends_at(s);
            SignedIn {
                name: s.display_name.clone(),
                acting: acting::banner(s),
                ends_at: helsinki_hm(ends),
                ends_at_ms: ends,
                warn_at_ms: ends - millis(state.portal.policy.warn_before),
            }
        }),
    }
}

/// The pre-login CSRF cookie's value, made (and set on `res`) if the browser has none.
fn anon_csrf(state: &AppState, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, state.portal.cookies.csrf()) {
        Some(v) => (v.to_string(), None),
        None => {
            let v = random_token(16);
            let set = state
                .portal
                .cookies
                .set(state.portal.cookies.csrf(), &v, None);
            (v, Some(set))
        }
    }
}

fn with_cookies(mut res: Response, cookies: impl IntoIterator<Item = String>) -> Response {
    for c in cookies.into_iter().filter(|c| !c.is_empty()) {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Only our own paths are valid return targets (no open redirect).
/// A `return` target kept only if it is a path on this site: it starts with one `/`, and holds
/// nothing but printable ASCII without spaces or backslashes (browsers drop tabs and newlines, so
/// `/\t/evil.example` would become `//evil.example`), at most 512 characters.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.len() <= 512
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

// --- pages ---------------------------------------------------------------------------------

async fn front(
    State(state): State<AppState>,
    headers: HeaderMap,
    rid: crate::RequestId,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let lookup = match load_session(&state, &headers, now, true).await {
        Ok(l) => l,
        Err(res) => return res,
    };
    match lookup {
        SessionLookup::Live(s) if !s.confirmed => see_other("/confirm"),
        SessionLookup::Live(s) => {
            let ui = ui_for(&state, lang, "/", Some(&s), "");
            let whose = match acting::whose(&state, &s, now, lang).await {
                Ok(w) => w,
                Err(e) => return e.into_response(),
            };
            let principal = citizen_principal(&s);
            let now_ms = kanta_fhir::datetime::millis(now);
            // R-INFO-1: the information notice comes first.
            let c = Citizen {
                now,
                lang,
                session: s,
                principal,
                whose,
            };
            match data_use::notice_first(&state, "/", &c).await {
                Ok(true) => return see_other("/notice"),
                Ok(false) => {}
                Err(e) => return e.into_response(),
            }
            let changed_in_care = if acting::offers(
                &c.principal,
                &c.whose.acting,
                kanta_domain::access::View::DataUse,
                now_ms,
            ) {
                match data_use::changed_in_care(&state, &c, &rid).await {
                    Ok(lines) => lines,
                    Err(_) => {
                        tracing::error!("the choices changed in care unavailable");
                        vec![]
                    }
                }
            } else {
                vec![]
            };
            let Citizen {
                session: s,
                principal,
                whose,
                ..
            } = c;
            // A revoked mandate, a child now 18: the front page says so, and offers the way back.
            if let Err(e) = acting::may(
                &principal,
                &whose.acting,
                kanta_domain::access::View::WhatsNew,
                now_ms,
                lang,
            ) {
                return e.into_response();
            }
            let news = match sections::whats_new(&state, &s, &whose, &rid).await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::error!(error = %e, "what is new unavailable");
                    None
                }
            };
            render(&Front {
                ui: &ui,
                name: &s.display_name,
                acting_name: s.acting_for.as_ref().map(|a| a.name.as_str()),
                nav: sections::nav(None),
                news,
                changed_in_care,
                disclosure_log: acting::offers(
                    &principal,
                    &whose.acting,
                    kanta_domain::access::View::DisclosureLog,
                    now_ms,
                ),
                acting: s.acting_for.is_some(),
            })
        }
        other => {
            let (csrf, set) = anon_csrf(&state, &headers);
            let ui = ui_for(&state, lang, "/", None, &csrf);
            let notice =
                matches!(other, SessionLookup::Ended).then(|| tr(lang, "session-ended", &[]));
            let res = render(&FrontPublic {
                ui: &ui,
                notice,
                login_available: state.portal.identification.is_some(),
            });
            let mut cookies: Vec<String> = set.into_iter().collect();
            if matches!(other, SessionLookup::Ended) {
                cookies.push(state.portal.cookies.clear(state.portal.cookies.session()));
            }
            with_cookies(res, cookies)
        }
    }
}

async fn login(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let lang = lang_of(&headers);
    let now = state.clock.now();
    if !state
        .portal
        .limiter
        .allow(client_ip(&state.portal, &req), now)
    {
        return error_page(lang, StatusCode::TOO_MANY_REQUESTS, "error-rate-limited");
    }
    let Some(ident) = state.portal.identification.clone() else {
        return error_page(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            "login-error-not-configured",
        );
    };
    let (url, login_state) =
        match begin_authorization(&state, ident.as_ref(), None, lang, now).await {
            Ok(begun) => begun,
            Err(res) => return res,
        };
    let max_age = state.portal.policy.login_window.as_secs() as i64;
    // The state is also kept in a cookie: a callback must come back to the browser that left
    // (no login CSRF).
    with_cookies(
        see_other(&url),
        [state
            .portal
            .cookies
            .set(state.portal.cookies.login(), &login_state, Some(max_age))],
    )
}

/// An authorization request under way (a login, or with `silent` a session check): its state,
/// nonce and PKCE verifier kept in the store, taken once by the callback. The provider's URL and
/// the state; or the page to send when the provider or the store is unavailable.
async fn begin_authorization(
    state: &AppState,
    ident: &dyn Identification,
    silent: Option<&str>,
    lang: Lang,
    now: OffsetDateTime,
) -> Result<(String, String), Response> {
    let login_state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(32);
    let url = ident
        .authorization_url(&oidc::AuthRequest {
            state: &login_state,
            nonce: &nonce,
            pkce_challenge: &session::pkce_challenge(&verifier),
            lang: lang.code(),
            silent,
            now,
        })
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, silent = silent.is_some(), "identification service unavailable");
            error_page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                "login-error-idp-unavailable",
            )
        })?;
    let pending = PendingLogin {
        state_hash: hash(&login_state),
        nonce,
        pkce_verifier: verifier,
        lang: lang.code().to_string(),
        created_at: kanta_fhir::datetime::millis(now),
    };
    if let Err(e) = state.store.login_begin(&pending).await {
        tracing::error!(error = %e, "cannot record an authorization request under way");
        return Err(error_page(
            lang,
            StatusCode::SERVICE_UNAVAILABLE,
            "error-unavailable",
        ));
    }
    Ok((url, login_state))
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Why a login failed: the message key, the status, the audit reason.
struct Refusal {
    key: &'static str,
    status: StatusCode,
    reason: &'static str,
}

const fn refusal(key: &'static str, status: StatusCode, reason: &'static str) -> Refusal {
    Refusal {
        key,
        status,
        reason,
    }
}

fn refusal_for(e: &IdentError) -> Refusal {
    match e {
        IdentError::Unavailable(_) => refusal(
            "login-error-idp-unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "provider-unavailable",
        ),
        IdentError::ProviderError(_) => refusal(
            "login-error-provider",
            StatusCode::BAD_REQUEST,
            "provider-error",
        ),
        IdentError::BadToken(_) => {
            refusal("login-error-token", StatusCode::BAD_REQUEST, "bad-token")
        }
        IdentError::Expired => refusal(
            "login-error-token-expired",
            StatusCode::BAD_REQUEST,
            "token-expired",
        ),
        IdentError::NonceMismatch => refusal(
            "login-error-token",
            StatusCode::BAD_REQUEST,
            "nonce-mismatch",
        ),
        IdentError::WeakAssurance => {
            refusal("login-error-weak", StatusCode::FORBIDDEN, "weak-assurance")
        }
        IdentError::ForeignEid => refusal(
            "login-error-foreign-eid",
            StatusCode::FORBIDDEN,
            "foreign-eid",
        ),
        IdentError::NoHetu => refusal("login-error-no-hetu", StatusCode::FORBIDDEN, "no-hetu"),
        IdentError::NotEncrypted => refusal(
            "login-error-not-encrypted",
            StatusCode::BAD_REQUEST,
            "not-encrypted",
        ),
        IdentError::UnknownEncryptionKey => refusal(
            "login-error-unknown-key",
            StatusCode::BAD_REQUEST,
            "unknown-encryption-key",
        ),
        IdentError::Unsigned => {
            refusal("login-error-unsigned", StatusCode::BAD_REQUEST, "unsigned")
        }
        IdentError::WrongAlgorithm(_) => refusal(
            "login-error-algorithm",
            StatusCode::BAD_REQUEST,
            "wrong-algorithm",
        ),
        IdentError::ProviderSessionEnded => refusal(
            "session-provider-ended",
            StatusCode::OK,
            "provider-session-ended",
        ),
    }
}

async fn callback(
    State(state): State<AppState>,
    Query(params): Query<CallbackParams>,
    request_id: crate::RequestId,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let now = state.clock.now();
    let lang = lang_of(&headers);
    if !state
        .portal
        .limiter
        .allow(client_ip(&state.portal, &req), now)
    {
        return error_page(lang, StatusCode::TOO_MANY_REQUESTS, "error-rate-limited");
    }
    if let Some(kept) = cookie(&headers, state.portal.cookies.silent()) {
        let (kept_state, _) = kept.split_once('~').unwrap_or((kept, ""));
        if same_secret(params.state.as_deref().unwrap_or(""), kept_state) {
            return silent_callback(&state, &headers, &params, kept, now, request_id).await;
        }
    }
    // The login cookie is cleared only by the callback that matches it: a forged callback must
    // not be able to cancel a login under way.
    let matches = same_secret(
        params.state.as_deref().unwrap_or(""),
        cookie(&headers, state.portal.cookies.login()).unwrap_or(""),
    );
    let clear_login = if matches {
        state.portal.cookies.clear(state.portal.cookies.login())
    } else {
        String::new()
    };
    let result = identify(&state, &headers, &params, now).await;
    match result {
        Ok((row, id)) => {
            // A session this browser already had ends: one browser, one identity at a time.
            if let Some(old) = cookie(&headers, state.portal.cookies.session()) {
                if let Ok(Some(gone)) = state.store.session_delete(&hash(old)).await {
                    let r = session_record(
                        &gone,
                        Action::Logout,
                        Outcome::Success,
                        "new-login",
                        now,
                        None,
                    );
                    if let Err(e) = state.audit.commit(vec![r]).await {
                        tracing::error!(error = %e, "audit log unavailable at re-login");
                    }
                }
            }
            let record = session_record(
                &row,
                Action::Login,
                Outcome::Success,
                "identified",
                now,
                request_id.0,
            );
            if let Err(e) = state.store.session_insert(&row).await {
                tracing::error!(error = %e, "cannot store a session");
                return with_cookies(
                    error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable"),
                    [clear_login],
                );
            }
            // Fail closed: no session without its audit record.
            if let Err(e) = state.audit.commit(vec![record]).await {
                tracing::error!(error = %e, "audit log unavailable at login");
                let _ = state.store.session_delete(&row.id_hash).await;
                return with_cookies(
                    error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable"),
                    [clear_login],
                );
            }
            tracing::info!(session = %&row.id_hash[..8], "login");
            with_cookies(
                see_other("/confirm"),
                [
                    clear_login,
                    // A new id at every login, whatever the browser brought (no fixation).
                    state
                        .portal
                        .cookies
                        .set(state.portal.cookies.session(), &id, None),
                ],
            )
        }
        Err((refused, patient)) => {
            let record = AuditRecord {
                schema: kanta_domain::audit::AUDIT_SCHEMA,
                recorded_at: kanta_fhir::datetime::millis(now),
                patient,
                actor: match patient {
                    Some(person) => Actor::Citizen { person },
                    None => Actor::System {
                        component: "identification".into(),
                    },
                },
                on_behalf_of: None,
                action: Action::FailedLogin,
                entities: vec![],
                query: Some(format!("reason={}", refused.reason)),
                outcome: Outcome::Failure,
                request_id: request_id.0,
                basis: None,
            };
            if let Err(e) = state.audit.commit(vec![record]).await {
                tracing::error!(error = %e, "audit log unavailable at a failed login");
            }
            tracing::info!(reason = refused.reason, "login refused");
            with_cookies(error_page(lang, refused.status, refused.key), [clear_login])
        }
    }
}

/// The checks of a login, in order (R-AUTH-1, R-AUTH-2, R-AUTH-7). On success: the new session
/// (not yet stored) and its id for the cookie.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    params: &CallbackParams,
    now: OffsetDateTime,
) -> Result<(SessionRow, String), (Refusal, Option<PatientKey>)> {
    let bad_state = || {
        (
            refusal(
                "login-error-state",
                StatusCode::BAD_REQUEST,
                "state-mismatch",
            ),
            None,
        )
    };
    let returned = params.state.as_deref().unwrap_or("");
    let kept = cookie(headers, state.portal.cookies.login()).unwrap_or("");
    if !same_secret(returned, kept) {
        return Err(bad_state());
    }
    let pending = match state.store.login_take(&hash(returned)).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(bad_state()),
        Err(e) => {
            tracing::error!(error = %e, "login store unavailable");
            return Err((
                refusal(
                    "error-unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                ),
                None,
            ));
        }
    };
    let now_ms = kanta_fhir::datetime::millis(now);
    if now_ms - pending.created_at > millis(state.portal.policy.login_window) {
        return Err((
            refusal("login-error-too-slow", StatusCode::BAD_REQUEST, "too-slow"),
            None,
        ));
    }
    if let Some(error) = &params.error {
        let r = if error == "access_denied" {
            refusal("login-cancelled", StatusCode::OK, "cancelled")
        } else {
            refusal(
                "login-error-provider",
                StatusCode::BAD_REQUEST,
                "provider-error",
            )
        };
        return Err((r, None));
    }
    let Some(code) = params.code.as_deref() else {
        return Err(bad_state());
    };
    let Some(ident) = state.portal.identification.as_ref() else {
        return Err((
            refusal(
                "login-error-not-configured",
                StatusCode::SERVICE_UNAVAILABLE,
                "not-configured",
            ),
            None,
        ));
    };
    let identity = ident
        .complete(code, &pending.pkce_verifier, &pending.nonce, now)
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "identification refused");
            (refusal_for(&e), None)
        })?;
    // R-AUTH-7: the HETU is validated exactly where it enters.
    let hetu = Hetu::parse(&identity.hetu).map_err(|_| {
        (
            refusal(
                "login-error-invalid-hetu",
                StatusCode::FORBIDDEN,
                "invalid-hetu",
            ),
            None,
        )
    })?;
    // R-AUTH-2: the register first, then the identification's own attributes.
    let record = state.portal.register.person(&hetu).await.map_err(|e| {
        tracing::error!(error = %e, "population register unavailable at login");
        (
            refusal(
                "login-error-register-unavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "register-unavailable",
            ),
            None,
        )
    })?;
    // R-AUTH-2 as a row of the one decision: the register's facts about the person.
    let person = kanta_domain::access::PersonFacts {
        in_register: record.is_some(),
        deceased: record.as_ref().is_some_and(|r| r.person.deceased.is_some()),
        named_by_identification: identity.given_name.is_some() && identity.family_name.is_some(),
    };
    let decision = kanta_domain::access::decide(
        &kanta_domain::access::Principal::Identified,
        &kanta_domain::access::Action::Login,
        kanta_domain::access::Target::Request,
        &kanta_domain::access::Facts {
            person: Some(&person),
            ..Default::default()
        },
        now_ms,
    );
    if let kanta_domain::access::Decision::Denied(reasons) = decision {
        let reason = reasons.first().map_or("unknown-person", |r| r.code());
        return Err((
            refusal("login-error-unknown-person", StatusCode::FORBIDDEN, reason),
            None,
        ));
    }
    let display_name = match (&record, &identity.given_name, &identity.family_name) {
        (Some(r), _, _) => format!("{} {}", r.person.given_names, r.person.family_name),
        (None, Some(g), Some(f)) => format!("{g} {f}"),
        (None, _, _) => String::new(),
    };
    let key = state
        .store
        .claim_patient_key(&hetu, now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot claim a patient key at login");
            (
                refusal(
                    "error-unavailable",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store-unavailable",
                ),
                None,
            )
        })?;
    let id = session::new_session_id();
    let row = SessionRow {
        id_hash: hash(&id),
        patient_key: key,
        hetu,
        display_name,
        acting_for: None,
        csrf_token: random_token(32),
        created_at: now_ms,
        last_active_at: now_ms,
        absolute_expiry: now_ms + millis(state.portal.policy.absolute),
        confirmed: false,
        idp_issuer: identity.issuer,
        idp_sub: identity.sub,
        idp_sid: identity.sid,
        id_token: Some(identity.id_token),
    };
    if row.id_hash.len() != 64 || id.is_empty() {
        return Err((
            refusal("error-unavailable", StatusCode::SERVICE_UNAVAILABLE, "rng"),
            None,
        ));
    }
    Ok((row, id))
}

async fn confirm_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    match load_session(&state, &headers, now, true).await {
        Ok(SessionLookup::Live(s)) => {
            let ui = ui_for(&state, lang, "/confirm", Some(&s), "");
            render(&Confirm {
                ui: &ui,
                name: &s.display_name,
                hetu: s.hetu.as_str(),
            })
        }
        Ok(_) => see_other("/"),
        Err(res) => res,
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "return")]
    return_to: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// The session's citizen as the access decision sees them.
pub(crate) fn citizen_principal(s: &SessionRow) -> kanta_domain::access::Principal {
    kanta_domain::access::Principal::Citizen {
        person: s.patient_key,
        acting_for: s.acting_for.as_ref().map(|a| a.key),
    }
}

/// A request for a page of personal data: the clock read once, the language, the live, confirmed
/// session, and the citizen as the access decision sees them. Extracting it sends the browser to
/// the confirm page or the front page when there is no confirmed session.
pub struct Citizen {
    pub now: OffsetDateTime,
    pub lang: Lang,
    pub session: Box<SessionRow>,
    pub principal: kanta_domain::access::Principal,
    /// Whose data the pages show, and the standing (R-MINOR, R-PROXY).
    pub whose: acting::Whose,
}

impl axum::extract::FromRequestParts<AppState> for Citizen {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now = state.clock.now();
        let session = confirmed_session(state, &parts.headers, now).await?;
        let lang = lang_of(&parts.headers);
        let whose = acting::whose(state, &session, now, lang)
            .await
            .map_err(IntoResponse::into_response)?;
        let c = Citizen {
            now,
            lang,
            principal: citizen_principal(&session),
            session,
            whose,
        };
        // R-INFO-1: the information notice comes first; the rest of the service waits for it.
        if data_use::notice_first(state, parts.uri.path(), &c)
            .await
            .map_err(IntoResponse::into_response)?
        {
            return Err(see_other("/notice"));
        }
        Ok(c)
    }
}

/// The one error of a portal page: a translated page with its status.
pub struct PageError {
    pub lang: Lang,
    pub status: StatusCode,
    pub key: &'static str,
}

impl PageError {
    pub fn not_found(lang: Lang) -> PageError {
        PageError {
            lang,
            status: StatusCode::NOT_FOUND,
            key: "error-not-found",
        }
    }
    pub fn bad_page(lang: Lang) -> PageError {
        PageError {
            lang,
            status: StatusCode::BAD_REQUEST,
            key: "error-bad-page",
        }
    }
    /// The store or the audit log failed: logged here (without personal data), a 503 page.
    pub fn unavailable(lang: Lang, e: &dyn std::fmt::Display) -> PageError {
        tracing::error!(error = %e, "records unavailable");
        PageError {
            lang,
            status: StatusCode::SERVICE_UNAVAILABLE,
            key: "error-unavailable",
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.lang, self.status, self.key)
    }
}

/// For a page of personal data: the live, confirmed session; otherwise the response to send (to the
/// confirm page, to the front page, or the store's failure).
async fn confirmed_session(
    state: &AppState,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Box<SessionRow>, Response> {
    match load_session(state, headers, now, true).await? {
        SessionLookup::Live(s) if s.confirmed => Ok(s),
        SessionLookup::Live(_) => Err(see_other("/confirm")),
        _ => Err(see_other("/")),
    }
}

/// For a state-changing request: the live session, if its CSRF token matches the form's. `Ok(None)`:
/// no live session (the caller redirects); `Err`: the response to send (store down, bad token).
async fn posting_session(
    state: &AppState,
    headers: &HeaderMap,
    form_csrf: &str,
    now: OffsetDateTime,
    touch: bool,
) -> Result<Option<Box<SessionRow>>, Response> {
    match load_session(state, headers, now, touch).await? {
        SessionLookup::Live(s) if csrf_ok(form_csrf, &s.csrf_token) => Ok(Some(s)),
        SessionLookup::Live(_) => Err(error_page(
            lang_of(headers),
            StatusCode::FORBIDDEN,
            "error-cross-site",
        )),
        _ => Ok(None),
    }
}

async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    match posting_session(&state, &headers, &form.csrf, now, false).await {
        Ok(Some(s)) => {
            if let Err(e) = state.store.session_confirm(&s.id_hash).await {
                tracing::error!(error = %e, "confirm failed");
                return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
            }
            see_other("/")
        }
        Ok(None) => see_other("/"),
        Err(res) => res,
    }
}

/// Logout (R-AUTH-4): ends the session here, clears what the browser keeps of us, and sends the
/// browser on to the identity provider so that its session (and so every service's) ends too.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    request_id: crate::RequestId,
    Form(form): Form<CsrfForm>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let session = match posting_session(&state, &headers, &form.csrf, now, false).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/logged-out"),
        Err(res) => return res,
    };
    match state.store.session_delete(&session.id_hash).await {
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "logout failed");
            return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
        }
    }
    let record = session_record(
        &session,
        Action::Logout,
        Outcome::Success,
        "user",
        now,
        request_id.0,
    );
    if let Err(e) = state.audit.commit(vec![record]).await {
        tracing::error!(error = %e, "audit log unavailable at logout");
    }
    let next = match &state.portal.identification {
        Some(ident) => ident
            .logout_url(session.id_token.as_deref(), lang.code())
            .await
            .unwrap_or_else(|| "/logged-out".to_string()),
        None => "/logged-out".to_string(),
    };
    let mut res = with_cookies(
        see_other(&next),
        [
            state.portal.cookies.clear(state.portal.cookies.session()),
            state.portal.cookies.clear(state.portal.cookies.silent()),
        ],
    );
    res.headers_mut().insert(
        "clear-site-data",
        HeaderValue::from_static("\"cache\", \"storage\""),
    );
    res
}

async fn logged_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let (csrf, set) = anon_csrf(&state, &headers);
    let ui = ui_for(&state, lang, "/logged-out", None, &csrf);
    let res = render(&Message {
        title: ui.t("logged-out-title"),
        text: ui.t("logged-out-text"),
        ui: &ui,
        acting: false,
    });
    with_cookies(res, set)
}

/// "Continue the session" (R-AUTH-5): a request of the citizen's own, so it extends the session.
async fn continue_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    match posting_session(&state, &headers, &form.csrf, now, false).await {
        Ok(Some(s)) => {
            let return_to = local_path(form.return_to.as_deref());
            // R-AUTH-5: go on only if the identification service's own session is alive.
            if let (Some(ident), Some(hint)) = (&state.portal.identification, &s.id_token) {
                if ident.checks_provider_session() {
                    return silent_check(&state, ident.as_ref(), hint, &return_to, lang, now).await;
                }
            }
            if let Err(e) = state
                .store
                .session_touch(&s.id_hash, kanta_fhir::datetime::millis(now))
                .await
            {
                tracing::error!(error = %e, "session touch failed");
                return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
            }
            see_other(&return_to)
        }
        Ok(None) => see_other("/"),
        Err(res) => res,
    }
}

/// "Continue" under a provider that keeps a session: a silent authorization request
/// (`prompt=none`, our ID token as the hint). Its answer comes to the callback, which extends our
/// session only if the provider still knows the same person (R-AUTH-5).
async fn silent_check(
    state: &AppState,
    ident: &dyn Identification,
    hint: &str,
    return_to: &str,
    lang: Lang,
    now: OffsetDateTime,
) -> Response {
    let (url, check_state) = match begin_authorization(state, ident, Some(hint), lang, now).await {
        Ok(begun) => begun,
        Err(res) => return res,
    };
    let max_age = state.portal.policy.login_window.as_secs() as i64;
    // The state and where to return, for this browser only.
    let value = format!(
        "{check_state}~{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(return_to)
    );
    with_cookies(
        see_other(&url),
        [state
            .portal
            .cookies
            .set(state.portal.cookies.silent(), &value, Some(max_age))],
    )
}

/// The provider's answer to a silent check: the same person's fresh identification extends the
/// session; anything else (`login_required` above all) ends it, audited, with a message.
async fn silent_callback(
    state: &AppState,
    headers: &HeaderMap,
    params: &CallbackParams,
    kept: &str,
    now: OffsetDateTime,
    request_id: crate::RequestId,
) -> Response {
    let lang = lang_of(headers);
    let clear = state.portal.cookies.clear(state.portal.cookies.silent());
    let (kept_state, encoded_return) = kept.split_once('~').unwrap_or((kept, ""));
    let return_to = local_path(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded_return)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .as_deref(),
    );
    // Taken first, whatever follows: a state and verifier are used once.
    let pending = match state.store.login_take(&hash(kept_state)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "login store unavailable");
            return with_cookies(
                error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable"),
                [clear],
            );
        }
    };
    let session = match load_session(state, headers, now, false).await {
        Ok(SessionLookup::Live(s)) => s,
        Ok(_) => return with_cookies(see_other("/"), [clear]),
        Err(res) => return with_cookies(res, [clear]),
    };
    let now_ms = kanta_fhir::datetime::millis(now);
    let outcome = match (
        &pending,
        &params.error,
        &params.code,
        &state.portal.identification,
    ) {
        (None, _, _, _) => Err(IdentError::BadToken("no session check under way".into())),
        (Some(p), _, _, _) if now_ms - p.created_at > millis(state.portal.policy.login_window) => {
            Err(IdentError::BadToken(
                "the session check took too long".into(),
            ))
        }
        (Some(_), Some(error), _, _) => {
            tracing::info!(error = %error, "the identification service's session has ended");
            Err(IdentError::ProviderSessionEnded)
        }
        (Some(p), None, Some(code), Some(ident)) => ident
            .complete(code, &p.pkce_verifier, &p.nonce, now)
            .await
            .and_then(|id| {
                if id.issuer == session.idp_issuer
                    && id.sub == session.idp_sub
                    && Hetu::parse(&id.hetu).is_ok_and(|h| h.as_str() == session.hetu.as_str())
                {
                    Ok(())
                } else {
                    Err(IdentError::BadToken(
                        "the provider's session is another person's".into(),
                    ))
                }
            }),
        _ => Err(IdentError::BadToken("neither code nor error".into())),
    };
    match outcome {
        Ok(()) => {
            if let Err(e) = state.store.session_touch(&session.id_hash, now_ms).await {
                tracing::error!(error = %e, "session touch failed");
                return with_cookies(
                    error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable"),
                    [clear],
                );
            }
            with_cookies(see_other(&return_to), [clear])
        }
        Err(e) => {
            tracing::info!(error = %e, "session check failed: the session ends");
            let reason = if e == IdentError::ProviderSessionEnded {
                "provider-session-ended"
            } else {
                "provider-session-check-failed"
            };
            if let Ok(Some(gone)) = state.store.session_delete(&session.id_hash).await {
                let r = session_record(
                    &gone,
                    Action::Logout,
                    Outcome::Success,
                    reason,
                    now,
                    request_id.0,
                );
                if let Err(e) = state.audit.commit(vec![r]).await {
                    tracing::error!(error = %e, "audit log unavailable at a session end");
                }
            }
            let page = if e == IdentError::ProviderSessionEnded {
                error_page(lang, StatusCode::OK, "session-provider-ended")
            } else {
                error_page(
                    lang,
                    refusal_for(&e).status,
                    "session-provider-check-failed",
                )
            };
            with_cookies(
                page,
                [
                    clear,
                    state.portal.cookies.clear(state.portal.cookies.session()),
                ],
            )
        }
    }
}

/// For the warning script: whether the session lives and when it ends. A background request: it
/// never extends the session.
async fn session_status(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let now = state.clock.now();
    let body = match load_session(&state, &headers, now, false).await {
        Ok(SessionLookup::Live(s)) => {
            let ends = state.portal.policy.ends_at(&s);
            serde_json::json!({"active": true, "ends_at_ms": ends, "ends_in_seconds": (ends - kanta_fhir::datetime::millis(now)) / 1000})
        }
        Ok(_) => serde_json::json!({"active": false}),
        Err(res) => return res,
    };
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Remember a language choice (a cookie for a year), then back to the page it was made on.
async fn set_lang(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    let expected = match load_session(&state, &headers, now, true).await {
        Ok(SessionLookup::Live(s)) => s.csrf_token,
        Ok(_) => cookie(&headers, state.portal.cookies.csrf())
            .unwrap_or("")
            .to_string(),
        Err(res) => return res,
    };
    if !csrf_ok(&form.csrf, &expected) {
        return error_page(lang, StatusCode::FORBIDDEN, "error-cross-site");
    }
    let Some(chosen) = form.lang.as_deref().and_then(Lang::from_code) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "error-bad-language");
    };
    let mut c = format!(
        "kanta_lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
        chosen.code()
    );
    if state.portal.cookies.secure {
        c.push_str("; Secure");
    }
    with_cookies(see_other(&local_path(form.return_to.as_deref())), [c])
}

#[derive(Deserialize)]
struct LogoutTokenForm {
    logout_token: String,
}

/// OpenID Connect Back-Channel Logout (R-AUTH-4): the identity provider ends our sessions.
async fn backchannel_logout(
    State(state): State<AppState>,
    Form(form): Form<LogoutTokenForm>,
) -> Response {
    let now = state.clock.now();
    let bad = |e: &str| {
        (
            StatusCode::BAD_REQUEST,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({"error": "invalid_request", "error_description": e})),
        )
            .into_response()
    };
    let Some(ident) = state.portal.identification.as_ref() else {
        return bad("identification is not configured");
    };
    let order = match ident.logout_token(&form.logout_token, now).await {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(error = %e, "back-channel logout refused");
            return bad("the logout token was not accepted");
        }
    };
    match end_provider_sessions(&state, &order, now, "backchannel").await {
        Ok(()) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
        )
            .into_response(),
    }
}

/// End the sessions a provider's logout names (back- or front-channel), each end audited.
/// `Err`: the session store failed (logged).
async fn end_provider_sessions(
    state: &AppState,
    order: &oidc::LogoutOrder,
    now: OffsetDateTime,
    channel: &str,
) -> Result<(), ()> {
    let ended = state
        .store
        .sessions_end_for_idp(&order.issuer, order.sid.as_deref(), order.sub.as_deref())
        .await
        .map_err(|e| tracing::error!(error = %e, channel, "provider logout failed"))?;
    let records: Vec<AuditRecord> = ended
        .iter()
        .map(|s| {
            session_record(
                s,
                Action::Logout,
                Outcome::Success,
                "provider-logout",
                now,
                None,
            )
        })
        .collect();
    if let Err(e) = state.audit.commit(records).await {
        tracing::error!(error = %e, channel, "audit log unavailable at provider logout");
    }
    tracing::info!(sessions = ended.len(), channel, "provider logout");
    Ok(())
}

#[derive(Deserialize)]
struct FrontChannelParams {
    iss: Option<String>,
    sid: Option<String>,
}

/// OpenID Connect Front-Channel Logout 1.0: the provider's logout page loads this in a hidden,
/// cross-site iframe, where our `SameSite=Lax` cookie is not sent; the sessions to end are named
/// by `iss` (ours only) and `sid`. The one route the provider may frame ([`security_headers`]).
async fn frontchannel_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FrontChannelParams>,
) -> Response {
    let now = state.clock.now();
    let lang = lang_of(&headers);
    // A small page of its own (it is shown in the provider's hidden frame): translated, with a
    // heading and a main landmark, naming nothing of the session.
    let page = |status: StatusCode| {
        let heading = tr(
            lang,
            if status == StatusCode::OK {
                "logged-out-title"
            } else {
                "error-title"
            },
            &[],
        );
        let html = format!(
            "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} – {}</title></head><body><main><h1>{}</h1></main></body></html>",
            lang.code(),
            escape_text(&heading),
            escape_text(&tr(lang, "app-name", &[])),
            escape_text(&heading),
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response()
    };
    let Some(ident) = state.portal.identification.as_ref() else {
        return page(StatusCode::NOT_FOUND);
    };
    let (Some(iss), Some(sid)) = (q.iss.as_deref(), q.sid.as_deref()) else {
        return page(StatusCode::BAD_REQUEST);
    };
    if iss.trim_end_matches('/') != ident.issuer() || sid.is_empty() || sid.len() > 256 {
        tracing::info!("front-channel logout refused: another issuer or no session id");
        return page(StatusCode::BAD_REQUEST);
    }
    let order = oidc::LogoutOrder {
        issuer: ident.issuer().to_string(),
        sid: Some(sid.to_string()),
        sub: None,
    };
    match end_provider_sessions(&state, &order, now, "frontchannel").await {
        Ok(()) => page(StatusCode::OK),
        Err(()) => page(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// Text for HTML outside the templates (which escape by themselves).
fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Our public keys as a JWK set (FTN profile), for registration with the identification broker:
/// the signing keys of our client assertions and request objects, and the keys it encrypts ID
/// tokens and userinfo to. 404 when the relying party has none.
async fn rp_jwks(State(state): State<AppState>) -> Response {
    match state
        .portal
        .identification
        .as_ref()
        .and_then(|i| i.public_jwks())
    {
        Some(jwks) => (
            [
                (header::CONTENT_TYPE, "application/jwk-set+json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            jwks.to_string(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The disclosure view reads the log a batch at a time, shows up to `DISCLOSURE_SHOW` uses by
/// organisations a page, and reads at most `DISCLOSURE_SCAN` records per page view (the citizen's
/// own reads are in the same log); "older" continues below the last record read.
const DISCLOSURE_BATCH: usize = 1000;
const DISCLOSURE_SCAN: usize = 20_000;
const DISCLOSURE_SHOW: usize = 50;

#[derive(Deserialize)]
struct DisclosureQuery {
    before: Option<u64>,
    /// The log entry just reported (its DPO is named from the person's own log).
    flagged: Option<u64>,
}

/// The disclosure log (R-VIEW-5, R-CONSENT-3): which care units, pharmacies and other organisations
/// have processed the citizen's data through the platform, read from the audit log, newest first,
/// page by page through the whole history. Not available when acting for another person. Reading
/// it is itself audited, before the page is sent.
async fn disclosures(
    State(state): State<AppState>,
    Citizen {
        now,
        lang,
        session: s,
        principal,
        whose,
    }: Citizen,
    request_id: crate::RequestId,
    query: Result<Query<DisclosureQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error_page(lang, StatusCode::BAD_REQUEST, "error-bad-page");
    };
    let path = match q.before {
        Some(b) => format!("/disclosures?before={b}"),
        None => "/disclosures".to_string(),
    };
    let ui = ui_for(&state, lang, &path, Some(&s), "");
    // R-VIEW-5: not while acting for another person — the one decision says so.
    let permit = match kanta_domain::access::decide(
        &principal,
        &kanta_domain::access::Action::View(kanta_domain::access::View::DisclosureLog),
        kanta_domain::access::Target::Summary { patient: whose.key },
        &kanta_domain::access::Facts {
            acting: Some(&whose.acting),
            ..Default::default()
        },
        kanta_fhir::datetime::millis(now),
    ) {
        kanta_domain::access::Decision::Permit(p) => p,
        kanta_domain::access::Decision::Denied(_) => {
            // Asked for directly while acting for another: refused, with the page saying why.
            let mut res = render(&Disclosures {
                ui: &ui,
                rows: vec![],
                acting_for_other: true,
                older: None,
                flagged: None,
            });
            *res.status_mut() = StatusCode::FORBIDDEN;
            return res;
        }
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut orgs: HashMap<String, String> = HashMap::new();
    let mut rows = vec![];
    let mut before = q.before;
    let mut scanned = 0;
    let mut more = true;
    'scan: while rows.len() < DISCLOSURE_SHOW && scanned < DISCLOSURE_SCAN {
        let records = match state
            .store
            .audit_of_patient(s.patient_key, before, DISCLOSURE_BATCH)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "audit log unreadable");
                return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
            }
        };
        more = records.len() == DISCLOSURE_BATCH;
        for stored in &records {
            scanned += 1;
            before = Some(stored.seq);
            let Ok(rec) = serde_json::from_str::<AuditRecord>(&stored.body) else {
                continue;
            };
            let Actor::Organisation { org, client_id, .. } = &rec.actor else {
                continue;
            };
            let key = match rec.action {
                Action::Read => "action-read",
                Action::Search => "action-search",
                Action::Create => "action-create",
                Action::Update => "action-update",
                Action::Export => "action-export",
                _ => "action-other",
            };
            if !names.contains_key(client_id) {
                let name = match state.store.client(client_id).await {
                    Ok(Some(c)) => c.name,
                    _ => client_id.clone(),
                };
                names.insert(client_id.clone(), name);
            }
            if !orgs.contains_key(org.as_str()) {
                let name = sections::recorder(&state, org.as_str()).await.name;
                orgs.insert(org.as_str().to_string(), name);
            }
            let basis = rec.basis.as_ref();
            let purpose = match basis.and_then(|b| b.purpose.as_deref()) {
                Some("TREAT") => tr(lang, "purpose-treat", &[]),
                Some("ETREAT") => tr(lang, "purpose-etreat", &[]),
                Some(_) => tr(lang, "purpose-other", &[]),
                None => String::new(),
            };
            let emergency = basis
                .filter(|b| b.ground == kanta_domain::access::Ground::Emergency)
                .map(|b| b.reason.clone().unwrap_or_default());
            rows.push(Disclosure {
                when: helsinki_datetime(rec.recorded_at),
                organisation: orgs.get(org.as_str()).cloned().unwrap_or_default(),
                system: names.get(client_id).cloned().unwrap_or_default(),
                action: tr(lang, key, &[]),
                items: rec.entities.len(),
                purpose,
                emergency,
                seq: stored.seq,
            });
            if rows.len() == DISCLOSURE_SHOW {
                // More may follow the last one shown.
                more = true;
                break 'scan;
            }
        }
        if !more {
            break;
        }
    }
    let record = AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: kanta_fhir::datetime::millis(now),
        patient: Some(s.patient_key),
        actor: Actor::Citizen {
            person: s.patient_key,
        },
        on_behalf_of: None,
        action: Action::AuditRead,
        entities: vec![],
        query: Some("view=disclosures".into()),
        outcome: Outcome::Success,
        request_id: request_id.0,
        basis: Some(permit.basis().clone()),
    };
    if let Err(e) = state.audit.commit(vec![record]).await {
        tracing::error!(error = %e, "audit log unavailable for the disclosure view");
        return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
    }
    render(&Disclosures {
        ui: &ui,
        rows,
        acting_for_other: false,
        older: before
            .filter(|_| more)
            .map(|b| format!("/disclosures?before={b}")),
        flagged: match q.flagged {
            Some(seq) => match entry_org(&state, s.patient_key, seq).await {
                Some(org) => Some(tr(
                    lang,
                    "disclosures-flagged",
                    &[("dpo", &dpo_of(&state, &org).await)],
                )),
                None => None,
            },
            None => None,
        },
    })
}

/// The organisation an entry of the person's own log names as the one that processed the data.
async fn entry_org(state: &AppState, patient: PatientKey, seq: u64) -> Option<String> {
    let records = state
        .store
        .audit_of_patient(patient, Some(seq.saturating_add(1)), 1)
        .await
        .ok()?;
    let entry = records.into_iter().find(|r| r.seq == seq)?;
    match serde_json::from_str::<AuditRecord>(&entry.body).ok()?.actor {
        Actor::Organisation { org, .. } => Some(org.as_str().to_string()),
        _ => None,
    }
}

/// Who to contact about an organisation's processing: its data protection officer.
async fn dpo_of(state: &AppState, org: &str) -> String {
    let r = sections::recorder(state, org).await;
    let contact = [r.dpo_email.as_str(), r.dpo_phone.as_str()]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    match (r.dpo_name.is_empty(), contact.is_empty()) {
        (false, false) => format!("{}, {} ({contact})", r.name, r.dpo_name),
        (false, true) => format!("{}, {}", r.name, r.dpo_name),
        (true, _) => r.name.clone(),
    }
}

#[derive(Deserialize)]
struct FlagForm {
    csrf: String,
    seq: u64,
}

/// `POST /disclosures/flag` (R-X-2): the person does not recognise a log entry; it is recorded
/// for the data protection officer of the organisation that processed the data (the controller
/// of its records), whose contact the page then names.
async fn flag_disclosure(
    State(state): State<AppState>,
    c: Citizen,
    request_id: crate::RequestId,
    Form(f): Form<FlagForm>,
) -> Response {
    let lang = c.lang;
    if !csrf_ok(&f.csrf, &c.session.csrf_token) {
        return error_page(lang, StatusCode::FORBIDDEN, "error-cross-site");
    }
    let now_ms = kanta_fhir::datetime::millis(c.now);
    let permit = match kanta_domain::access::decide(
        &c.principal,
        &kanta_domain::access::Action::View(kanta_domain::access::View::DisclosureLog),
        kanta_domain::access::Target::Summary {
            patient: c.whose.key,
        },
        &kanta_domain::access::Facts {
            acting: Some(&c.whose.acting),
            ..Default::default()
        },
        now_ms,
    ) {
        kanta_domain::access::Decision::Permit(p) => p,
        kanta_domain::access::Decision::Denied(d) => {
            return acting::refused(lang, &d).into_response()
        }
    };
    // The entry must be one of the person's own (read it back from their log).
    let Some(org) = entry_org(&state, c.session.patient_key, f.seq).await else {
        return error_page(lang, StatusCode::NOT_FOUND, "error-not-found");
    };
    let record = AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: now_ms,
        patient: Some(c.session.patient_key),
        actor: Actor::Citizen {
            person: c.session.patient_key,
        },
        on_behalf_of: None,
        action: Action::Flagged,
        entities: vec![format!("audit/{}", f.seq), format!("Organization/{org}")],
        query: Some("flag=unrecognised".into()),
        outcome: Outcome::Success,
        request_id: request_id.0,
        basis: Some(permit.basis().clone()),
    };
    if let Err(e) = state.audit.commit(vec![record]).await {
        tracing::error!(error = %e, "audit log unavailable for a flag");
        return error_page(lang, StatusCode::SERVICE_UNAVAILABLE, "error-unavailable");
    }
    see_other(&format!("/disclosures?flagged={}", f.seq))
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/portal.css"),
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/session.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finnish_time_follows_eu_summer_time() {
        // 2026-07-01 12:00 UTC = 15:00 in Helsinki; 2026-12-01 12:00 UTC = 14:00.
        assert_eq!(helsinki_hm(1_782_907_200_000), "15.00");
        assert_eq!(helsinki_hm(1_796_126_400_000), "14.00");
        // Summer time begins 2026-03-29 01:00 UTC.
        assert_eq!(helsinki_hm(1_774_745_940_000), "02.59");
        assert_eq!(helsinki_hm(1_774_746_000_000), "04.00");
        // 2026-12-31 23:30 UTC is already 2027 in Helsinki.
        assert_eq!(helsinki_datetime(1_798_759_800_000), "1.1.2027 01.30");
    }

    #[test]
    fn return_targets_stay_on_this_site() {
        assert_eq!(local_path(Some("/confirm")), "/confirm");
        assert_eq!(
            local_path(Some("/records/lab?from=2026-01-01")),
            "/records/lab?from=2026-01-01"
        );
        let long = format!("/{}", "a".repeat(600));
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/\u{7f}",
            "/ä",
            long.as_str(),
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
    }

    #[test]
    fn same_origin_check() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h, "http://127.0.0.1:8080"), "server-to-server");
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, "http://127.0.0.1:8080"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, "http://127.0.0.1:8080"));
        h.remove("sec-fetch-site");
        h.insert("origin", HeaderValue::from_static("http://127.0.0.2:8080"));
        assert!(!same_origin(&h, "http://127.0.0.1:8080"));
        // Under no-referrer, browsers send `Origin: null` on a same-origin form post.
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(
            !same_origin(&h, "http://127.0.0.1:8080"),
            "null without Sec-Fetch-Site"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, "http://127.0.0.1:8080"));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.2:8080"));
        assert!(
            !same_origin(&h, "http://127.0.0.1:8080"),
            "a foreign origin even if same-site"
        );
    }

    #[test]
    fn rate_limit_per_address_per_minute() {
        let l = RateLimiter::new(2);
        let t = time::macros::datetime!(2026-11-26 12:00:10 UTC);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        assert!(l.allow(a, t) && l.allow(a, t));
        assert!(!l.allow(a, t));
        assert!(l.allow(b, t));
        assert!(l.allow(a, t + time::Duration::minutes(1)));
    }
}
