//! The built-in test identification service (demo only): an OpenID provider inside the binary, in
//! the spirit of the national test identification service. One picks a demo person or types a test
//! HETU and a method. It requires the Finnish Trust Network profile of its one client, the portal,
//! so that the demo runs the code path production runs (R-AUTH-1): the authorization request as a
//! signed request object (by value or pushed to `/par`), `private_key_jwt` at the token and PAR
//! endpoints (a `jti` used once), the ID token and the userinfo response signed (EdDSA) and
//! encrypted to the portal's published encryption key (RSA-OAEP-256, A256GCM). The person's names
//! come only in the userinfo response, as some brokers do. It keeps a session of its own (a
//! cookie), answers `prompt=none` from it (`login_required` when there is none), and ends it at
//! logout or on `/test-idp/session`, so that "continue" can be tried against an ended provider
//! session (R-AUTH-5). It exists only when `--demo` (or `test_idp = true`) turns it on: without
//! that, [`routes`] answer 404 because `Portal::test_idp` is `None`.
//!
//! Codes, requests and sessions live in memory: the demo runs as one instance.

use super::jose::encrypt_to;
use super::oidc::{EIDAS_PERSON_IDENTIFIER, HETU_CLAIM, LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL};
use super::session::{cookie, hash, pkce_challenge, random_token};
use super::{error_page, lang_of, render, Ui};
use crate::AppState;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// A person the test service offers to log in as.
#[derive(Clone, Debug)]
pub struct TestPerson {
    pub hetu: String,
    pub given: String,
    pub family: String,
    pub situation: String,
}

/// A code issued and not yet redeemed.
struct Grant {
    login: Login,
    redirect_uri: String,
    nonce: String,
    challenge: String,
    created: i64,
}

/// Who is logged in at the service, how, and under which session id (`sid`).
#[derive(Clone)]
struct Login {
    hetu: String,
    method: Method,
    sid: String,
}

/// Identification methods offered, each with the level of assurance it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    BankCodes,
    CertificateCard,
    /// A weak method (for trying the refusal).
    Weak,
    /// A foreign eIDAS identity without a HETU (for trying the refusal).
    Foreign,
}

impl Method {
    const ALL: [Method; 4] = [
        Method::BankCodes,
        Method::CertificateCard,
        Method::Weak,
        Method::Foreign,
    ];
    fn code(self) -> &'static str {
        match self {
            Method::BankCodes => "bank",
            Method::CertificateCard => "card",
            Method::Weak => "weak",
            Method::Foreign => "foreign",
        }
    }
    fn label_key(self) -> &'static str {
        match self {
            Method::BankCodes => "idp-method-bank",
            Method::CertificateCard => "idp-method-card",
            Method::Weak => "idp-method-weak",
            Method::Foreign => "idp-method-foreign",
        }
    }
    fn loa(self) -> &'static str {
        match self {
            Method::CertificateCard => LOA_HIGH,
            Method::Weak => LOA_LOW,
            Method::BankCodes | Method::Foreign => LOA_SUBSTANTIAL,
        }
    }
}

pub struct TestIdp {
    /// `<public_url>/test-idp`.
    pub issuer: String,
    pub client_id: String,
    redirect_uri: String,
    post_logout_redirect_uri: String,
    people: Vec<TestPerson>,
    key: EncodingKey,
    public_key: Vec<u8>,
    kid: String,
    /// The portal's published keys: its signatures are checked with these, and responses are
    /// encrypted to its encryption key (statically registered, as the profile requires).
    rp_keys: JwkSet,
    rp_encryption_key: Value,
    grants: Mutex<HashMap<String, Grant>>,
    /// Checked authorization requests waiting for the user's choice, by interaction id.
    interactions: Mutex<HashMap<String, (AuthorizeParams, i64)>>,
    /// Pushed requests by `request_uri`.
    pushed: Mutex<HashMap<String, (AuthorizeParams, i64)>>,
    /// The service's own sessions, by the hash of their cookie.
    sessions: Mutex<HashMap<String, (Login, i64)>>,
    /// Access tokens for userinfo.
    access: Mutex<HashMap<String, (Login, i64)>>,
    /// Client assertion ids seen (no replay), with when they were seen.
    seen_jti: Mutex<HashMap<String, i64>>,
}

/// Codes and pushed requests live this long; interactions and access tokens longer.
const CODE_SECONDS: i64 = 60;
const INTERACTION_SECONDS: i64 = 600;
const SESSION_SECONDS: i64 = 8 * 3600;
const SESSION_COOKIE: &str = "kanta_test_idp";
const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl TestIdp {
    /// A test service for the portal at `public_url`, with a fresh signing key, that knows the
    /// portal by its published keys `rp_jwks` (one signing and one encryption key at least).
    pub fn new(
        public_url: &str,
        people: Vec<TestPerson>,
        rp_jwks: &Value,
    ) -> Result<TestIdp, String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "cannot generate the test identification key".to_string())?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| "cannot read the test identification key".to_string())?;
        let public_key = pair.public_key().as_ref().to_vec();
        let rp_keys: JwkSet = serde_json::from_value(rp_jwks.clone())
            .map_err(|e| format!("the portal's keys: {e}"))?;
        let rp_encryption_key = rp_jwks["keys"]
            .as_array()
            .and_then(|ks| ks.iter().find(|k| k["use"] == "enc"))
            .cloned()
            .ok_or("the portal publishes no encryption key")?;
        Ok(TestIdp {
            issuer: format!("{public_url}/test-idp"),
            client_id: "kanta-portal".into(),
            redirect_uri: format!("{public_url}/auth/callback"),
            post_logout_redirect_uri: format!("{public_url}/logged-out"),
            people,
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            kid: hash(&URL_SAFE_NO_PAD.encode(&public_key))[..16].to_string(),
            public_key,
            rp_keys,
            rp_encryption_key,
            grants: Mutex::new(HashMap::new()),
            interactions: Mutex::new(HashMap::new()),
            pushed: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            access: Mutex::new(HashMap::new()),
            seen_jti: Mutex::new(HashMap::new()),
        })
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.issuer)
    }

    /// A JWT the portal signed: its key by `kid`, `iss` the portal, `aud` one of `audiences`, not
    /// expired.
    fn verify_portal_jwt(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("header: {e}"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| self.rp_keys.find(kid))
            .ok_or("no kid, or an unknown one")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.client_id]);
        v.set_audience(audiences);
        v.set_required_spec_claims(&["iss", "aud", "exp"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    /// `private_key_jwt` (RFC 7523): a client assertion for `endpoint`, each `jti` once.
    fn client_authenticated(
        &self,
        form: &HashMap<String, String>,
        endpoint: &str,
        now: i64,
    ) -> bool {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return false;
        }
        let Some(assertion) = form.get("client_assertion") else {
            return false;
        };
        let claims =
            match self.verify_portal_jwt(assertion, &[endpoint.to_string(), self.issuer.clone()]) {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(error = %e, "test identification: client assertion refused");
                    return false;
                }
            };
        let sub_ok = claims.get("sub").and_then(Value::as_str) == Some(&self.client_id);
        let id_ok = form.get("client_id").is_none_or(|c| c == &self.client_id);
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return false;
        };
        let Ok(mut seen) = self.seen_jti.lock() else {
            return false;
        };
        seen.retain(|_, at| now - *at < 600);
        sub_ok && id_ok && seen.insert(jti.to_string(), now).is_none()
    }

    /// The authorization request from a signed request object (`request`) or a pushed one
    /// (`request_uri`); plain parameters are refused (the profile).
    fn request_of(
        &self,
        q: &HashMap<String, String>,
        now: i64,
    ) -> Result<AuthorizeParams, &'static str> {
        if q.get("client_id") != Some(&self.client_id) {
            return Err("unknown client");
        }
        if let Some(uri) = q.get("request_uri") {
            let found = self.pushed.lock().ok().and_then(|mut p| p.remove(uri));
            return match found {
                Some((p, at)) if now - at < CODE_SECONDS => Ok(p),
                _ => Err("unknown or expired request_uri"),
            };
        }
        let request = q
            .get("request")
            .ok_or("the profile requires a signed request object")?;
        self.signed_request(request)
    }

    fn signed_request(&self, request: &str) -> Result<AuthorizeParams, &'static str> {
        let claims = self
            .verify_portal_jwt(request, std::slice::from_ref(&self.issuer))
            .map_err(|e| {
                tracing::info!(error = %e, "test identification: request object refused");
                "the request object is not validly signed by the client"
            })?;
        let text = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(AuthorizeParams {
            client_id: text("client_id"),
            redirect_uri: text("redirect_uri"),
            state: text("state"),
            nonce: text("nonce"),
            code_challenge: text("code_challenge"),
            code_challenge_method: text("code_challenge_method"),
            response_type: text("response_type"),
            prompt: text("prompt"),
        })
    }

    /// The service's session behind the browser's cookie.
    fn session_of(&self, headers: &HeaderMap, now: i64) -> Option<Login> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        sessions.retain(|_, (_, at)| now - *at < SESSION_SECONDS);
        sessions.get(&hash(id)).map(|(l, _)| l.clone())
    }

    fn end_session_of(&self, headers: &HeaderMap) {
        if let (Some(id), Ok(mut sessions)) =
            (cookie(headers, SESSION_COOKIE), self.sessions.lock())
        {
            sessions.remove(&hash(id));
        }
    }

    /// A code for `login`, and the browser sent back with it.
    fn issue_code(&self, p: &AuthorizeParams, login: Login, now: i64) -> Response {
        let code = random_token(24);
        if let Ok(mut grants) = self.grants.lock() {
            grants.retain(|_, g| now - g.created < CODE_SECONDS);
            grants.insert(
                code.clone(),
                Grant {
                    login,
                    redirect_uri: p.redirect_uri.clone(),
                    nonce: p.nonce.clone(),
                    challenge: p.code_challenge.clone(),
                    created: now,
                },
            );
        }
        back_to(&p.redirect_uri, &[("code", &code), ("state", &p.state)])
    }

    /// Sign `claims` (EdDSA) and encrypt the result to the portal's key.
    fn sign_and_encrypt(&self, claims: &Value) -> Result<String, String> {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(self.kid.clone());
        let signed = jsonwebtoken::encode(&h, claims, &self.key).map_err(|e| e.to_string())?;
        encrypt_to(&self.rp_encryption_key, &signed, "RSA-OAEP-256", "A256GCM")
    }
}

fn back_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let url = reqwest::Url::parse_with_params(redirect_uri, pairs)
        .map(String::from)
        .unwrap_or_default();
    Redirect::to(&url).into_response()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/test-idp/.well-known/openid-configuration", get(discovery))
        .route("/test-idp/jwks", get(jwks))
        .route("/test-idp/authorize", get(authorize_page).post(authorize))
        .route("/test-idp/par", post(par))
        .route("/test-idp/token", post(token))
        .route("/test-idp/userinfo", get(userinfo).post(userinfo))
        .route("/test-idp/logout", get(end_session))
        .route("/test-idp/session", get(session_page))
        .route("/test-idp/session/end", post(session_end))
}

/// The service, if it is on.
fn enabled(state: &AppState) -> Option<&TestIdp> {
    state.portal.test_idp.as_deref()
}

fn now_s() -> i64 {
    crate::Clock::System.now().unix_timestamp()
}

async fn discovery(State(state): State<AppState>) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Json(json!({
        "issuer": idp.issuer,
        "authorization_endpoint": idp.endpoint("authorize"),
        "pushed_authorization_request_endpoint": idp.endpoint("par"),
        "token_endpoint": idp.endpoint("token"),
        "userinfo_endpoint": idp.endpoint("userinfo"),
        "jwks_uri": idp.endpoint("jwks"),
        "end_session_endpoint": idp.endpoint("logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "id_token_encryption_alg_values_supported": ["RSA-OAEP-256"],
        "id_token_encryption_enc_values_supported": ["A256GCM"],
        "userinfo_signing_alg_values_supported": ["EdDSA"],
        "userinfo_encryption_alg_values_supported": ["RSA-OAEP-256"],
        "userinfo_encryption_enc_values_supported": ["A256GCM"],
        "request_parameter_supported": true,
        "request_object_signing_alg_values_supported": ["RS256", "PS256"],
        "require_signed_request_object": true,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256"],
        "prompt_values_supported": ["none", "login"],
        "claims_supported": ["sub", "sid", "acr", "given_name", "family_name", HETU_CLAIM, EIDAS_PERSON_IDENTIFIER],
        "ui_locales_supported": ["fi", "sv", "en"],
    }))
    .into_response()
}

async fn jwks(State(state): State<AppState>) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Json(json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": idp.kid,
        "x": URL_SAFE_NO_PAD.encode(&idp.public_key),
    }]}))
    .into_response()
}

/// An authorization request, as checked out of its request object.
#[derive(Clone, Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
    response_type: String,
    prompt: String,
}

#[derive(Template)]
#[template(path = "test_idp.html")]
struct AuthorizePage<'a> {
    ui: &'a Ui,
    people: &'a [TestPerson],
    interaction: &'a str,
    methods: Vec<(&'static str, String)>,
}

fn check_request(idp: &TestIdp, p: &AuthorizeParams) -> Result<(), &'static str> {
    if p.client_id != idp.client_id || p.redirect_uri != idp.redirect_uri {
        return Err("unknown client or redirect_uri");
    }
    if p.response_type != "code"
        || p.code_challenge_method != "S256"
        || p.code_challenge.is_empty()
        || p.nonce.is_empty()
    {
        return Err("the request needs response_type=code, PKCE S256 and a nonce");
    }
    Ok(())
}

fn idp_ui(headers: &HeaderMap, path: &str) -> Ui {
    Ui {
        lang: lang_of(headers),
        csrf: String::new(),
        path: path.into(),
        signed_in: None,
    }
}

async fn authorize_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    let now = now_s();
    let p = match idp
        .request_of(&q, now)
        .and_then(|p| check_request(idp, &p).map(|()| p))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = e, "test identification: bad request");
            return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
        }
    };
    // A silent request is answered from the service's own session, never with a page.
    if p.prompt == "none" {
        return match idp.session_of(&headers, now) {
            Some(login) => idp.issue_code(&p, login, now),
            None => back_to(
                &p.redirect_uri,
                &[("error", "login_required"), ("state", &p.state)],
            ),
        };
    }
    let interaction = random_token(16);
    if let Ok(mut i) = idp.interactions.lock() {
        i.retain(|_, (_, at)| now - *at < INTERACTION_SECONDS);
        i.insert(interaction.clone(), (p, now));
    }
    let ui = idp_ui(&headers, "/test-idp/authorize");
    render(&AuthorizePage {
        methods: Method::ALL
            .iter()
            .map(|m| (m.code(), ui.t(m.label_key())))
            .collect(),
        ui: &ui,
        people: &idp.people,
        interaction: &interaction,
    })
}

#[derive(Deserialize)]
struct AuthorizeForm {
    #[serde(default)]
    interaction: String,
    #[serde(default)]
    hetu: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    cancel: Option<String>,
}

async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    f: Result<Form<AuthorizeForm>, FormRejection>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    let Ok(Form(f)) = f else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    let now = now_s();
    let hetu = f.hetu.trim().to_string();
    let method = Method::ALL
        .into_iter()
        .find(|m| m.code() == f.method)
        .unwrap_or(Method::BankCodes);
    if f.cancel.is_none() && ((hetu.is_empty() && method != Method::Foreign) || hetu.len() > 20) {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-need-hetu");
    }
    let found = idp
        .interactions
        .lock()
        .ok()
        .and_then(|mut i| i.remove(&f.interaction));
    let Some((p, at)) = found.filter(|(_, at)| now - *at < INTERACTION_SECONDS) else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    let _ = at;
    if f.cancel.is_some() {
        return back_to(
            &p.redirect_uri,
            &[("error", "access_denied"), ("state", &p.state)],
        );
    }
    // A new login replaces whatever session the browser had here.
    idp.end_session_of(&headers);
    let login = Login {
        hetu,
        method,
        sid: random_token(12),
    };
    let cookie_value = random_token(24);
    if let Ok(mut sessions) = idp.sessions.lock() {
        sessions.insert(hash(&cookie_value), (login.clone(), now));
    }
    let mut res = idp.issue_code(&p, login, now);
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.portal.cookies.set(
        SESSION_COOKIE,
        &cookie_value,
        None,
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error})),
    )
        .into_response()
}

/// RFC 9126: a signed request object pushed by the authenticated client; the browser then carries
/// only the `request_uri`.
async fn par(
    State(state): State<AppState>,
    f: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Form(f)) = f else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let now = now_s();
    if !idp.client_authenticated(&f, &idp.endpoint("par"), now) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(request) = f.get("request") else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request_object");
    };
    let p = match idp
        .signed_request(request)
        .and_then(|p| check_request(idp, &p).map(|()| p))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = e, "test identification: pushed request refused");
            return token_error(StatusCode::BAD_REQUEST, "invalid_request_object");
        }
    };
    let uri = format!("{REQUEST_URI_PREFIX}{}", random_token(24));
    if let Ok(mut pushed) = idp.pushed.lock() {
        pushed.retain(|_, (_, at)| now - *at < CODE_SECONDS);
        pushed.insert(uri.clone(), (p, now));
    }
    (
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"request_uri": uri, "expires_in": CODE_SECONDS})),
    )
        .into_response()
}

async fn token(
    State(state): State<AppState>,
    f: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Form(f)) = f else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let now = now_s();
    if !idp.client_authenticated(&f, &idp.endpoint("token"), now) {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let field = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "authorization_code" {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let grant = idp
        .grants
        .lock()
        .ok()
        .and_then(|mut g| g.remove(field("code")));
    let Some(g) = grant else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if now - g.created >= CODE_SECONDS
        || g.redirect_uri != field("redirect_uri")
        || pkce_challenge(field("code_verifier")) != g.challenge
    {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let mut claims = json!({
        "iss": idp.issuer, "aud": idp.client_id, "iat": now, "exp": now + 300,
        "nonce": g.nonce, "acr": g.login.method.loa(), "sid": g.login.sid,
    });
    for (k, v) in identity_claims(idp, &g.login, false) {
        claims[k] = v;
    }
    let access_token = random_token(24);
    if let Ok(mut access) = idp.access.lock() {
        access.retain(|_, (_, at)| now - *at < 300);
        access.insert(hash(&access_token), (g.login, now));
    }
    match idp.sign_and_encrypt(&claims) {
        Ok(id_token) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300, "id_token": id_token})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "test identification could not sign or encrypt");
            token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}

/// Who the login is: `sub` and the HETU (or the foreign identifier), and with `names`, the
/// population attributes of a known person (only the userinfo response carries those).
fn identity_claims(idp: &TestIdp, login: &Login, names: bool) -> Vec<(&'static str, Value)> {
    let mut c = Vec::new();
    if login.method == Method::Foreign {
        c.push(("sub", json!(format!("eidas-{}", &hash(&login.hetu)[..16]))));
        let id = if login.hetu.is_empty() {
            "199001011234"
        } else {
            &login.hetu
        };
        c.push((EIDAS_PERSON_IDENTIFIER, json!(format!("SE/FI/{id}"))));
    } else {
        c.push(("sub", json!(format!("fi-{}", &hash(&login.hetu)[..16]))));
        c.push((HETU_CLAIM, json!(login.hetu)));
    }
    if names {
        if let Some(p) = idp.people.iter().find(|p| p.hetu == login.hetu) {
            c.push(("given_name", json!(p.given)));
            c.push(("family_name", json!(p.family)));
        }
    }
    c
}

/// The userinfo response: signed and encrypted (`application/jwt`).
async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = now_s();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let login = idp.access.lock().ok().and_then(|a| {
        a.get(&hash(token))
            .filter(|(_, at)| now - *at < 300)
            .map(|(l, _)| l.clone())
    });
    let Some(login) = login else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    let mut claims = json!({"iss": idp.issuer, "aud": idp.client_id, "iat": now});
    for (k, v) in identity_claims(idp, &login, true) {
        claims[k] = v;
    }
    match idp.sign_and_encrypt(&claims) {
        Ok(jwt) => (
            [
                (header::CONTENT_TYPE, "application/jwt"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jwt,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "test identification could not sign or encrypt");
            token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}

#[derive(Deserialize)]
struct EndSession {
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
}

/// RP-initiated logout: the service's own session ends, and the browser goes back (to the
/// registered address only).
async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EndSession>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let clear = state.portal.cookies.clear(SESSION_COOKIE);
    let mut res = match q.post_logout_redirect_uri {
        Some(u) if u == idp.post_logout_redirect_uri => Redirect::to(&u).into_response(),
        None => Redirect::to("/logged-out").into_response(),
        Some(_) => {
            return error_page(
                lang_of(&headers),
                StatusCode::BAD_REQUEST,
                "idp-bad-request",
            )
        }
    };
    idp.end_session_of(&headers);
    if let Ok(v) = axum::http::HeaderValue::from_str(&clear) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

#[derive(Template)]
#[template(path = "test_idp_session.html")]
struct SessionPage<'a> {
    ui: &'a Ui,
    active: bool,
}

/// Whether the browser has a session at the test service, with a button to end it (to try what
/// "continue" does when the identification service's session has ended).
async fn session_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let ui = idp_ui(&headers, "/test-idp/session");
    render(&SessionPage {
        ui: &ui,
        active: idp.session_of(&headers, now_s()).is_some(),
    })
}

async fn session_end(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    idp.end_session_of(&headers);
    let mut res = Redirect::to("/test-idp/session").into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&state.portal.cookies.clear(SESSION_COOKIE)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
