//! Provider authentication: OAuth2 client credentials at `/oauth/token` following SMART Backend
//! Services (`private_key_jwt` with RS384/ES384 assertions), plus `client_secret_basic`/`_post` for
//! demo clients; short-lived access tokens; the [`Caller`] extractor for the FHIR API.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kanta_domain::access::{self, Action, Facts, Principal, Scopes, Target};
use kanta_domain::ids::{ClientRole, OrgId};
use kanta_fhir::{ErrorKind, FhirError};
use kanta_store::ClientRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Access tokens live five minutes (SMART Backend Services recommends no more).
pub const TOKEN_LIFETIME_SECONDS: i64 = 300;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The key that signs and checks our access tokens (HS256, shared by every instance).
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    org: String,
    roles: String,
    scope: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// How long a client's register entry is trusted before it is read again: disabling a client, or
/// changing its roles or scopes, takes effect on every instance within this time.
pub const CLIENT_CACHE_SECONDS: i64 = 5;

/// The client register as requests read it: each entry cached for [`CLIENT_CACHE_SECONDS`], its
/// roles and scopes parsed once per read of the register (not once per request).
#[derive(Clone, Default)]
pub struct ClientCache(Arc<Mutex<HashMap<String, CachedClient>>>);

/// A client's register entry as the access decision needs it.
#[derive(Debug)]
struct Registered {
    record: ClientRecord,
    roles: Vec<ClientRole>,
    scopes: Scopes,
}

/// When (unix seconds) a client's entry was read, and what it said (`None`: no such client).
type CachedClient = (i64, Option<Arc<Registered>>);

impl ClientCache {
    /// The client's current entry (`None`: unknown), from the cache or the store.
    async fn get(
        &self,
        state: &AppState,
        client_id: &str,
        now: i64,
    ) -> Result<Option<Arc<Registered>>, kanta_store::StoreError> {
        if let Some((at, c)) = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
        {
            if now - at < CLIENT_CACHE_SECONDS && now >= *at {
                return Ok(c.clone());
            }
        }
        let c = state.store.client(client_id).await?.map(|record| {
            Arc::new(Registered {
                roles: record
                    .roles
                    .iter()
                    .filter_map(|r| ClientRole::parse(r))
                    .collect(),
                scopes: registered_scopes(&record),
                record,
            })
        });
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(client_id.to_string(), (now, c.clone()));
        Ok(c)
    }
}

/// The scopes a client is registered for (an unreadable registration grants nothing).
fn registered_scopes(client: &ClientRecord) -> Scopes {
    Scopes::parse(&client.scopes).unwrap_or_else(|e| {
        tracing::error!(client_id = %client.client_id, error = %e, "a client's registered scopes do not parse; it is granted none");
        Scopes::default()
    })
}

/// An authenticated system calling the API: its token checked, its register entry read now (it
/// must still exist, be enabled and act for the organisation the token names), its roles as the
/// register has them, its scopes the token's grant within what the register allows.
#[derive(Clone, Debug)]
pub struct Caller {
    pub client: access::Client,
    pub principal: Principal,
}

impl Caller {
    pub fn org(&self) -> &OrgId {
        &self.client.org
    }

    /// This caller as the audit log names it.
    pub fn actor(&self) -> kanta_domain::audit::Actor {
        // A client that holds the operator's role alone is the operator; one that also holds a
        // care role is its organisation, and each record names the operator only where the
        // operator's role carried the permit (`audit::records_for`): a two-role client's reads of
        // patient data stay in the citizen's disclosure log.
        if !self.client.roles.is_empty()
            && self.client.roles.iter().all(|r| *r == ClientRole::Operator)
        {
            kanta_domain::audit::Actor::Operator {
                client_id: self.client.client_id.clone(),
            }
        } else {
            kanta_domain::audit::Actor::Organisation {
                org: self.client.org.clone(),
                client_id: self.client.client_id.clone(),
                professional: self.client.professional.clone(),
                purpose: self.client.purpose.clone(),
            }
        }
    }

    /// The access decision for this caller; a refusal as a 403 OperationOutcome naming why.
    pub fn decide(
        &self,
        action: &Action,
        target: Target<'_>,
        now_ms: i64,
    ) -> Result<access::Permit, ApiError> {
        access::decide(&self.principal, action, target, &Facts::default(), now_ms)
            .permit()
            .map_err(|reasons| forbidden(&reasons))
    }
}

/// The longest client-assertion `jti` kept (it is stored until the assertion expires).
pub const MAX_JTI: usize = 255;

/// A refusal: every reason's message (none of them names data the caller may not see).
pub fn forbidden(reasons: &[access::Denial]) -> ApiError {
    let msg: Vec<&str> = reasons.iter().map(|r| r.message()).collect();
    ApiError(FhirError::new(ErrorKind::Forbidden, msg.join("; ")))
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError(FhirError::new(ErrorKind::Unauthorized, msg))
}

/// A request header naming who acts or why (`X-Kanta-Professional`, `X-Kanta-Purpose-Of-Use`):
/// at most 64 characters of `[A-Za-z0-9._:|-]`, as it goes into the audit log.
fn context_header(parts: &Parts, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = parts.headers.get(name) else {
        return Ok(None);
    };
    let ok = v.to_str().ok().filter(|s| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:|-".contains(&b))
    });
    match ok {
        Some(s) => Ok(Some(s.to_string())),
        None => Err(ApiError(FhirError::bad_request(format!(
            "{name} must be 1 to 64 characters of A-Z a-z 0-9 . _ : | -"
        )))),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("this request needs an access token (Authorization: Bearer …) from /oauth/token"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must carry a Bearer token"))?;
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = false; // checked below against the edge clock
        v.required_spec_claims.clear();
        v.set_issuer(&[state.config.public_url.as_str()]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &state.token_keys.decoding, &v)
            .map_err(|_| unauthorized("the access token is not valid"))?;
        let now = state.clock.now().unix_timestamp();
        if data.claims.exp <= now {
            return Err(unauthorized(
                "the access token has expired; get a new one from /oauth/token",
            ));
        }
        // The register decides, not the token: a deleted or disabled client's tokens stop working.
        let registered = state
            .clients
            .get(state, &data.claims.sub, now)
            .await
            .map_err(ApiError::from)?
            .filter(|c| c.record.enabled && c.record.org.as_str() == data.claims.org)
            .ok_or_else(|| unauthorized("the access token is not valid"))?;
        let granted = Scopes::parse(&data.claims.scope)
            .map_err(|_| unauthorized("the access token is not valid"))?
            .intersect(&registered.scopes);
        let client = access::Client {
            client_id: registered.record.client_id.clone(),
            org: registered.record.org.clone(),
            roles: registered.roles.clone(),
            scopes: granted,
            professional: context_header(parts, "x-kanta-professional")?,
            purpose: context_header(parts, "x-kanta-purpose-of-use")?,
            emergency_reason: reason_header(parts)?,
        };
        Ok(Caller {
            principal: Principal::Client(client.clone()),
            client,
        })
    }
}

/// The stated reason of an emergency read (`X-Kanta-Emergency-Reason`, R-X-5): 1 to 200 printable
/// ASCII characters, as it goes into the audit record and the citizen's disclosure log.
fn reason_header(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(v) = parts.headers.get("x-kanta-emergency-reason") else {
        return Ok(None);
    };
    let ok = v.to_str().ok().map(str::trim).filter(|s| {
        !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| (0x20..0x7f).contains(&b))
    });
    match ok {
        Some(s) => Ok(Some(s.to_string())),
        None => Err(ApiError(FhirError::bad_request(
            "X-Kanta-Emergency-Reason must be 1 to 200 printable ASCII characters",
        ))),
    }
}

/// An OAuth2 error response (RFC 6749 §5.2).
struct OAuthError(StatusCode, &'static str, String);

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut res = (
            self.0,
            Json(json!({"error": self.1, "error_description": self.2})),
        )
            .into_response();
        res.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        res
    }
}

fn invalid_client(msg: impl Into<String>) -> OAuthError {
    OAuthError(StatusCode::UNAUTHORIZED, "invalid_client", msg.into())
}

fn invalid_request(msg: impl Into<String>) -> OAuthError {
    OAuthError(StatusCode::BAD_REQUEST, "invalid_request", msg.into())
}

/// `POST /oauth/token`
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    match issue(&state, &headers, form).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn issue(
    state: &AppState,
    headers: &HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Response, OAuthError> {
    let Form(form) =
        form.map_err(|_| invalid_request("the body must be application/x-www-form-urlencoded"))?;
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported".into(),
            ))
        }
        None => return Err(invalid_request("grant_type is required")),
    }
    let now = state.clock.now();
    let client = if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
            return Err(invalid_request(format!(
                "client_assertion_type must be {ASSERTION_TYPE}"
            )));
        }
        verify_assertion(state, assertion, now).await?
    } else {
        let (id, secret) = basic_credentials(headers)
            .or_else(|| {
                Some((
                    form.get("client_id")?.clone(),
                    form.get("client_secret")?.clone(),
                ))
            })
            .ok_or_else(|| {
                invalid_client(
                    "authenticate with private_key_jwt (client_assertion) or a client secret",
                )
            })?;
        let client = lookup(state, &id).await?;
        let want = client
            .secret_sha256
            .as_deref()
            .ok_or_else(|| invalid_client("this client must use private_key_jwt"))?;
        if !constant_time_eq(sha256_hex(secret.as_bytes()).as_bytes(), want.as_bytes()) {
            return Err(invalid_client("client authentication failed"));
        }
        client
    };
    if !client.enabled {
        return Err(invalid_client("client authentication failed"));
    }
    // RFC 6749 §3.3: the grant is what was asked for within what the client is registered for;
    // without a scope parameter, everything it is registered for.
    let registered = registered_scopes(&client);
    let requested = match form.get("scope") {
        Some(s) => Scopes::parse(s)
            .map_err(|e| OAuthError(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string()))?,
        None => registered.clone(),
    };
    let granted = requested.intersect(&registered);
    if granted.is_empty() {
        return Err(OAuthError(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes is registered for this client".into(),
        ));
    }
    let scope = granted.to_string();
    let iat = now.unix_timestamp();
    let claims = AccessClaims {
        iss: state.config.public_url.clone(),
        sub: client.client_id.clone(),
        org: client.org.as_str().to_string(),
        roles: client.roles.join(" "),
        scope: scope.clone(),
        iat,
        exp: iat + TOKEN_LIFETIME_SECONDS,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &state.token_keys.encoding,
    )
    .map_err(|_| {
        OAuthError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "could not sign the token".into(),
        )
    })?;
    tracing::info!(client_id = %client.client_id, org = %client.org, "access token issued");
    let mut res = Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS,
        "scope": scope,
        "organization": client.org.as_str(),
    }))
    .into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

async fn lookup(state: &AppState, client_id: &str) -> Result<ClientRecord, OAuthError> {
    match state.store.client(client_id).await {
        Ok(Some(c)) => Ok(c),
        // The same answer as a wrong secret: the endpoint does not tell which client ids exist.
        Ok(None) => Err(invalid_client("client authentication failed")),
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            Err(OAuthError(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again shortly".into(),
            ))
        }
    }
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    jti: Option<String>,
}

/// SMART Backend Services: the client signs a JWT with its private key; we check it with the
/// public keys registered for it.
async fn verify_assertion(
    state: &AppState,
    assertion: &str,
    now: time::OffsetDateTime,
) -> Result<ClientRecord, OAuthError> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_client("client_assertion is not a JWT"))?;
    if !matches!(
        header.alg,
        Algorithm::RS384 | Algorithm::ES384 | Algorithm::RS256 | Algorithm::ES256
    ) {
        return Err(invalid_client(
            "client_assertion must be signed with RS384 or ES384",
        ));
    }
    // Which client claims to speak: read iss before checking the signature with its keys.
    let payload = assertion
        .split('.')
        .nth(1)
        .ok_or_else(|| invalid_client("client_assertion is not a JWT"))?;
    let peek: AssertionClaims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid_client("client_assertion has no readable claims"))?;
    let client_id = peek
        .iss
        .clone()
        .ok_or_else(|| invalid_client("client_assertion has no iss"))?;
    let client = lookup(state, &client_id).await?;
    let jwks: JwkSet = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| invalid_client("no public key is registered for this client"))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid_client("no registered key matches the assertion's kid"))?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|_| invalid_client("the registered key cannot be used"))?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    // An assertion without `aud` is refused: it could have been made for another server.
    v.required_spec_claims.insert("aud".to_string());
    v.set_audience(&[state.config.token_url()]);
    v.set_issuer(&[client_id.as_str()]);
    jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v)
        .map_err(|e| invalid_client(format!("client_assertion rejected: {e}")))?;
    if peek.sub.as_deref() != Some(client_id.as_str()) {
        return Err(invalid_client(
            "client_assertion sub must equal iss (the client id)",
        ));
    }
    let t = now.unix_timestamp();
    let exp = peek
        .exp
        .ok_or_else(|| invalid_client("client_assertion has no exp"))?;
    if exp <= t {
        return Err(invalid_client("client_assertion has expired"));
    }
    if exp > t + 300 {
        return Err(invalid_client(
            "client_assertion exp must be at most five minutes ahead",
        ));
    }
    let jti = peek
        .jti
        .ok_or_else(|| invalid_client("client_assertion has no jti"))?;
    // Kept until the assertion expires: bounded like every input (issue 30).
    if jti.is_empty() || jti.len() > MAX_JTI {
        return Err(invalid_client(
            "client_assertion jti must be 1 to 255 characters",
        ));
    }
    let expires =
        time::OffsetDateTime::from_unix_timestamp(exp).map_err(|_| invalid_client("bad exp"))?;
    match state
        .store
        .remember_assertion(&client_id, &jti, expires, now)
        .await
    {
        Ok(true) => Ok(client),
        Ok(false) => Err(invalid_client("client_assertion jti was already used")),
        Err(e) => {
            tracing::error!(error = %e, "assertion replay check failed");
            Err(OAuthError(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again shortly".into(),
            ))
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = v.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// SHA-256 of a secret, as lower-case hex (how client secrets are stored).
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /.well-known/smart-configuration`
pub async fn smart_configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "token_endpoint": state.config.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.read", "system/*.write", "system/*.cruds", "system/*.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }))
}
