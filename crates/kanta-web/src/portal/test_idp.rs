//! The built-in test identification service (demo only): an OpenID provider inside the binary, in
//! the spirit of the national test identification service. One picks a demo person or types a test
//! HETU and a method; it issues a signed ID token (EdDSA) to the portal through the same OIDC code
//! path production uses. It exists only when `--demo` (or `test_idp = true`) turns it on: without
//! that, [`routes`] answer 404 because `Portal::test_idp` is `None`.
//!
//! Codes live in memory for 60 seconds: the demo runs as one instance.

use super::oidc::{EIDAS_PERSON_IDENTIFIER, HETU_CLAIM, LOA_HIGH, LOA_LOW, LOA_SUBSTANTIAL};
use super::session::{hash, pkce_challenge, random_token, same_secret};
use super::{error_page, lang_of, render, Ui};
use crate::AppState;
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde::Deserialize;
use serde_json::json;
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

struct Grant {
    hetu: String,
    method: Method,
    redirect_uri: String,
    nonce: String,
    challenge: String,
    created: i64,
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
    pub client_secret: String,
    redirect_uri: String,
    post_logout_redirect_uri: String,
    people: Vec<TestPerson>,
    key: EncodingKey,
    public_key: Vec<u8>,
    kid: String,
    grants: Mutex<HashMap<String, Grant>>,
}

impl TestIdp {
    /// A test service for the portal at `public_url`, with a fresh signing key and client secret.
    pub fn new(public_url: &str, people: Vec<TestPerson>) -> Result<TestIdp, String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "cannot generate the test identification key".to_string())?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| "cannot read the test identification key".to_string())?;
        let public_key = pair.public_key().as_ref().to_vec();
        Ok(TestIdp {
            issuer: format!("{public_url}/test-idp"),
            client_id: "kanta-portal".into(),
            client_secret: random_token(24),
            redirect_uri: format!("{public_url}/auth/callback"),
            post_logout_redirect_uri: format!("{public_url}/logged-out"),
            people,
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            kid: hash(&URL_SAFE_NO_PAD.encode(&public_key))[..16].to_string(),
            public_key,
            grants: Mutex::new(HashMap::new()),
        })
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/test-idp/.well-known/openid-configuration", get(discovery))
        .route("/test-idp/jwks", get(jwks))
        .route("/test-idp/authorize", get(authorize_page).post(authorize))
        .route("/test-idp/token", post(token))
        .route("/test-idp/logout", get(end_session))
}

/// The service, if it is on.
fn enabled(state: &AppState) -> Option<&TestIdp> {
    state.portal.test_idp.as_deref()
}

async fn discovery(State(state): State<AppState>) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let i = &idp.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
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

#[derive(Deserialize)]
struct AuthorizeParams {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    response_type: String,
}

#[derive(Template)]
#[template(path = "test_idp.html")]
struct AuthorizePage<'a> {
    ui: &'a Ui,
    people: &'a [TestPerson],
    p: &'a AuthorizeParams,
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

async fn authorize_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    let Ok(Query(p)) = query else {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    };
    if let Err(e) = check_request(idp, &p) {
        tracing::info!(error = e, "test identification: bad request");
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    }
    let ui = Ui {
        lang,
        csrf: String::new(),
        path: "/test-idp/authorize".into(),
        signed_in: None,
    };
    render(&AuthorizePage {
        methods: Method::ALL
            .iter()
            .map(|m| (m.code(), ui.t(m.label_key())))
            .collect(),
        ui: &ui,
        people: &idp.people,
        p: &p,
    })
}

#[derive(Deserialize)]
struct AuthorizeForm {
    #[serde(flatten)]
    p: AuthorizeParams,
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
    Form(f): Form<AuthorizeForm>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let lang = lang_of(&headers);
    if check_request(idp, &f.p).is_err() {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-bad-request");
    }
    let back = |pairs: &[(&str, &str)]| {
        let url = reqwest::Url::parse_with_params(&f.p.redirect_uri, pairs)
            .map(String::from)
            .unwrap_or_default();
        Redirect::to(&url).into_response()
    };
    if f.cancel.is_some() {
        return back(&[("error", "access_denied"), ("state", &f.p.state)]);
    }
    let hetu = f.hetu.trim().to_string();
    let method = Method::ALL
        .into_iter()
        .find(|m| m.code() == f.method)
        .unwrap_or(Method::BankCodes);
    if (hetu.is_empty() && method != Method::Foreign) || hetu.len() > 20 {
        return error_page(lang, StatusCode::BAD_REQUEST, "idp-need-hetu");
    }
    let now = crate::Clock::System.now().unix_timestamp();
    let code = random_token(24);
    if let Ok(mut grants) = idp.grants.lock() {
        grants.retain(|_, g| now - g.created < 60);
        grants.insert(
            code.clone(),
            Grant {
                hetu,
                method,
                redirect_uri: f.p.redirect_uri.clone(),
                nonce: f.p.nonce.clone(),
                challenge: f.p.code_challenge.clone(),
                created: now,
                sid: random_token(12),
            },
        );
    }
    back(&[("code", &code), ("state", &f.p.state)])
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: String,
}

fn token_error(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error})),
    )
        .into_response()
}

async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let authorised = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .is_some_and(|(id, secret)| {
            id == idp.client_id && same_secret(&secret, &idp.client_secret)
        });
    if !authorised {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if f.grant_type != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    let now = crate::Clock::System.now().unix_timestamp();
    let grant = idp.grants.lock().ok().and_then(|mut g| g.remove(&f.code));
    let Some(g) = grant else {
        return token_error("invalid_grant");
    };
    if now - g.created >= 60
        || g.redirect_uri != f.redirect_uri
        || pkce_challenge(&f.code_verifier) != g.challenge
    {
        return token_error("invalid_grant");
    }
    let person = idp.people.iter().find(|p| p.hetu == g.hetu);
    let mut claims = json!({
        "iss": idp.issuer, "aud": idp.client_id, "iat": now, "exp": now + 300,
        "nonce": g.nonce, "acr": g.method.loa(), "sid": g.sid,
    });
    if g.method == Method::Foreign {
        claims["sub"] = json!(format!("eidas-{}", &hash(&g.hetu)[..16]));
        claims[EIDAS_PERSON_IDENTIFIER] = json!(format!(
            "SE/FI/{}",
            if g.hetu.is_empty() {
                "199001011234"
            } else {
                &g.hetu
            }
        ));
    } else {
        claims["sub"] = json!(format!("fi-{}", &hash(&g.hetu)[..16]));
        claims[HETU_CLAIM] = json!(g.hetu);
        // Like the national service, the population attributes come with a known person.
        if let Some(p) = person {
            claims["given_name"] = json!(p.given);
            claims["family_name"] = json!(p.family);
        }
    }
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(idp.kid.clone());
    match jsonwebtoken::encode(&h, &claims, &idp.key) {
        Ok(id_token) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"access_token": random_token(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "test identification could not sign");
            token_error("server_error")
        }
    }
}

#[derive(Deserialize)]
struct EndSession {
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
}

/// RP-initiated logout: the test service keeps no session of its own, so it only sends the browser
/// back (to the registered address only).
async fn end_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EndSession>,
) -> Response {
    let Some(idp) = enabled(&state) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match q.post_logout_redirect_uri {
        Some(u) if u == idp.post_logout_redirect_uri => Redirect::to(&u).into_response(),
        None => Redirect::to("/logged-out").into_response(),
        Some(_) => error_page(
            lang_of(&headers),
            StatusCode::BAD_REQUEST,
            "idp-bad-request",
        ),
    }
}
