//! Citizen identification (R-AUTH-1): the portal as an OpenID Connect relying party —
//! authorization code flow with PKCE (S256), `state` and `nonce`, the ID token's signature and
//! claims checked against the provider's published keys, RP-initiated logout and back-channel
//! logout tokens.
//!
//! Under the Finnish Trust Network profile (Traficom 213/2023 S, binding since 31 August 2025) it
//! also authenticates with `private_key_jwt`, sends its authorization request as a signed request
//! object (by value, RFC 9101, or pushed, RFC 9126), and takes the ID token and userinfo encrypted
//! to its own keys ([`super::jose`]); the profile is configuration, so that providers that do not
//! require it keep working. "Continue" after the idle warning asks the provider silently
//! (`prompt=none`) whether its own session is alive (R-AUTH-5).
//!
//! Identification sits behind [`Identification`] so that a SAML 2.0 implementation (Suomi.fi's
//! interface today) can be added beside this one without touching the portal.

use super::jose::{JweError, RpKeys};
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::RwLock;

/// Where the relying party stands with one identity provider.
#[derive(Clone)]
pub struct OidcConfig {
    /// The provider's issuer identifier (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Our callback, registered at the provider.
    pub redirect_uri: String,
    /// Where the provider returns the browser after logout.
    pub post_logout_redirect_uri: String,
    /// Scopes asked for (`openid` first).
    pub scopes: String,
    /// The claim carrying the HETU (Suomi.fi's attribute `urn:oid:1.2.246.21` by default).
    pub hetu_claim: String,
    /// The claim naming the level of assurance, and the values accepted (substantial, high).
    pub loa_claim: String,
    pub loa_accepted: Vec<String>,
    /// Claims that mark a foreign (eIDAS) identity when no HETU comes with them.
    pub foreign_id_claims: Vec<String>,
    /// `acr_values` sent with the request (default: substantial and high).
    pub acr_values: Option<String>,
    /// Our own keys (the FTN profile): signing and decryption.
    pub keys: Option<Arc<RpKeys>>,
    pub client_auth: ClientAuth,
    pub request_mode: RequestMode,
    /// Refuse ID tokens and userinfo responses that are not encrypted to our keys.
    pub require_encryption: bool,
    /// "Continue" after the idle warning first asks the provider with `prompt=none` whether its
    /// own session is alive (R-AUTH-5).
    pub check_provider_session: bool,
}

/// How the relying party authenticates at the token (and PAR) endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    ClientSecretBasic,
    /// RFC 7523 client assertions signed with our active key (`kid` in the header, a `jti`).
    PrivateKeyJwt,
}

/// How the authorization request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMode {
    /// As query parameters.
    Plain,
    /// As a signed request object in the `request` parameter (JAR, RFC 9101).
    Signed,
    /// The signed request object pushed to the provider first; the browser carries only its
    /// `request_uri` (PAR, RFC 9126).
    Pushed,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("hetu_claim", &self.hetu_claim)
            .finish_non_exhaustive()
    }
}

/// The eIDAS levels of assurance that strong identification means (R-AUTH-1).
pub const LOA_SUBSTANTIAL: &str = "http://eidas.europa.eu/LoA/substantial";
pub const LOA_HIGH: &str = "http://eidas.europa.eu/LoA/high";
pub const LOA_LOW: &str = "http://eidas.europa.eu/LoA/low";
/// Suomi.fi's attribute name for the HETU, the default HETU claim.
pub const HETU_CLAIM: &str = "urn:oid:1.2.246.21";
pub const EIDAS_PERSON_IDENTIFIER: &str =
    "http://eidas.europa.eu/attributes/naturalperson/PersonIdentifier";

impl OidcConfig {
    /// Defaults for everything but the provider, the client and our own URLs.
    pub fn new(issuer: &str, client_id: &str, client_secret: &str, public_url: &str) -> OidcConfig {
        OidcConfig {
            issuer: issuer.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_uri: format!("{public_url}/auth/callback"),
            post_logout_redirect_uri: format!("{public_url}/logged-out"),
            scopes: "openid profile hetu".to_string(),
            hetu_claim: HETU_CLAIM.to_string(),
            loa_claim: "acr".to_string(),
            loa_accepted: vec![LOA_SUBSTANTIAL.to_string(), LOA_HIGH.to_string()],
            foreign_id_claims: vec![EIDAS_PERSON_IDENTIFIER.to_string()],
            // Ask for strong identification (and for the level to be stated in the token).
            acr_values: Some(format!("{LOA_SUBSTANTIAL} {LOA_HIGH}")),
            keys: None,
            client_auth: ClientAuth::ClientSecretBasic,
            request_mode: RequestMode::Plain,
            require_encryption: false,
            check_provider_session: true,
        }
    }

    /// The Finnish Trust Network profile with `keys`: `private_key_jwt`, signed request objects
    /// (`mode`), and encryption required when the keys include a decryption key.
    pub fn ftn(mut self, keys: Arc<RpKeys>, mode: RequestMode) -> OidcConfig {
        self.client_auth = ClientAuth::PrivateKeyJwt;
        self.request_mode = mode;
        self.require_encryption = keys.can_decrypt();
        self.keys = Some(keys);
        self
    }

    /// Whether the settings hang together (keys for what needs them).
    pub fn check(&self) -> Result<(), String> {
        let signs = self.keys.as_ref().is_some_and(|k| k.can_sign());
        if self.client_auth == ClientAuth::PrivateKeyJwt && !signs {
            return Err("private_key_jwt needs a signing key".into());
        }
        if self.request_mode != RequestMode::Plain && !signs {
            return Err("signed or pushed authorization requests need a signing key".into());
        }
        if self.require_encryption && !self.keys.as_ref().is_some_and(|k| k.can_decrypt()) {
            return Err("required encryption needs an encryption key".into());
        }
        if self.client_auth == ClientAuth::ClientSecretBasic && self.client_secret.is_empty() {
            return Err("client_secret_basic needs a client secret".into());
        }
        Ok(())
    }
}

/// Who the identity provider says the user is. The HETU is as received: the portal validates it.
#[derive(Clone)]
pub struct Identity {
    pub issuer: String,
    pub sub: String,
    pub sid: Option<String>,
    pub hetu: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub id_token: String,
}

/// Why an identification did not yield an identity. Each maps to a translated message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The provider could not be reached or answered nonsense (fail closed).
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused or the user cancelled (`error=` on the callback, or at the token endpoint).
    #[error("identity provider refused: {0}")]
    ProviderError(String),
    /// The ID token's signature, issuer, audience or form is wrong.
    #[error("ID token rejected: {0}")]
    BadToken(String),
    #[error("ID token expired")]
    Expired,
    #[error("nonce does not match")]
    NonceMismatch,
    #[error("level of assurance too low")]
    WeakAssurance,
    /// A foreign eID: an identity with no Finnish HETU (R-AUTH-1).
    #[error("foreign eID without a HETU")]
    ForeignEid,
    #[error("no HETU in the identity")]
    NoHetu,
    /// The FTN profile: a plain ID token or userinfo response where encryption is required.
    #[error("the response is not encrypted")]
    NotEncrypted,
    /// Encrypted, but to a key that is not one of ours.
    #[error("the response is encrypted to an unknown key")]
    UnknownEncryptionKey,
    /// An unsigned (`alg: none`) token, encrypted or not.
    #[error("the token is not signed")]
    Unsigned,
    /// An `alg` or `enc` other than the configured ones.
    #[error("wrong algorithm: {0}")]
    WrongAlgorithm(String),
    /// A silent check (`prompt=none`): the provider's own session has ended.
    #[error("the identification service's session has ended")]
    ProviderSessionEnded,
}

impl From<JweError> for IdentError {
    fn from(e: JweError) -> IdentError {
        match e {
            JweError::NotEncrypted => IdentError::NotEncrypted,
            JweError::UnknownKey => IdentError::UnknownEncryptionKey,
            JweError::WrongAlgorithm(a) => IdentError::WrongAlgorithm(a),
            JweError::Undecryptable(m) => IdentError::BadToken(format!("cannot decrypt: {m}")),
        }
    }
}

/// What an authorization request carries. `silent`: a `prompt=none` check of the provider's
/// session, with the ID token we hold as the hint.
pub struct AuthRequest<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_challenge: &'a str,
    pub lang: &'a str,
    pub silent: Option<&'a str>,
    pub now: OffsetDateTime,
}

/// A logout the identity provider asks for (back-channel): end the sessions it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutOrder {
    pub issuer: String,
    pub sid: Option<String>,
    pub sub: Option<String>,
}

/// An identification service. OIDC now; SAML 2.0 can implement the same.
#[async_trait]
pub trait Identification: Send + Sync {
    fn issuer(&self) -> &str;
    /// The origins of the provider's pages, space-separated (for the CSP `form-action`).
    fn origin(&self) -> String;
    /// Whether the provider's metadata and keys can be had (cached).
    async fn reachable(&self) -> bool;
    /// Where to send the browser to identify (or, `silent`, to check the provider's session).
    async fn authorization_url(&self, request: &AuthRequest<'_>) -> Result<String, IdentError>;
    /// Our public keys, to publish for the provider (FTN profile); `None` without keys.
    fn public_jwks(&self) -> Option<Value> {
        None
    }
    /// Whether "continue" asks the provider about its own session first (R-AUTH-5).
    fn checks_provider_session(&self) -> bool {
        false
    }
    /// Redeem the code and check the ID token.
    async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, IdentError>;
    /// Where to send the browser to log out at the provider too (single logout), if it offers that.
    async fn logout_url(&self, id_token_hint: Option<&str>, lang: &str) -> Option<String>;
    /// Check a back-channel logout token.
    async fn logout_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<LogoutOrder, IdentError>;
}

#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    pushed_authorization_request_endpoint: Option<String>,
}

struct Discovered {
    meta: Metadata,
    keys: JwkSet,
    fetched: std::time::Instant,
}

/// The OpenID Connect relying party.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    discovered: RwLock<Option<Discovered>>,
    /// The origins the browser is sent to (the issuer's, and its authorization and end-session
    /// endpoints' once discovered), for the CSP's `form-action` and the front-channel frame.
    origins: std::sync::RwLock<String>,
}

/// Discovery and keys are re-read after this long, and at once when a token names an unknown key.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Clock skew tolerated on `iat`/`exp`.
const LEEWAY_SECONDS: i64 = 60;
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl OidcClient {
    pub fn new(config: OidcConfig) -> OidcClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        OidcClient {
            origins: std::sync::RwLock::new(origin_of(&config.issuer)),
            config,
            http,
            discovered: RwLock::new(None),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, IdentError> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| IdentError::Unavailable(format!("GET {url}: {e}")))?;
        if !res.status().is_success() {
            return Err(IdentError::Unavailable(format!(
                "GET {url}: status {}",
                res.status()
            )));
        }
        res.json()
            .await
            .map_err(|e| IdentError::Unavailable(format!("GET {url}: {e}")))
    }

    /// The provider's metadata and keys, fetched when missing, stale or `refresh`.
    async fn discover(&self, refresh: bool) -> Result<(Metadata, JwkSet), IdentError> {
        if !refresh {
            if let Some(d) = self.discovered.read().await.as_ref() {
                if d.fetched.elapsed() < DISCOVERY_TTL {
                    return Ok((d.meta.clone(), d.keys.clone()));
                }
            }
        }
        let meta: Metadata = self
            .fetch_json(&format!(
                "{}/.well-known/openid-configuration",
                self.config.issuer
            ))
            .await?;
        if meta.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(IdentError::Unavailable(format!(
                "discovery names issuer {} instead of {}",
                meta.issuer, self.config.issuer
            )));
        }
        let keys: JwkSet = self.fetch_json(&meta.jwks_uri).await?;
        let mut origins = vec![origin_of(&self.config.issuer)];
        for endpoint in [
            Some(&meta.authorization_endpoint),
            meta.end_session_endpoint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let o = origin_of(endpoint);
            if !o.is_empty() && !origins.contains(&o) {
                origins.push(o);
            }
        }
        if let Ok(mut held) = self.origins.write() {
            *held = origins.join(" ");
        }
        *self.discovered.write().await = Some(Discovered {
            meta: meta.clone(),
            keys: keys.clone(),
            fetched: std::time::Instant::now(),
        });
        Ok((meta, keys))
    }

    /// Verify a JWT from the provider with its published keys, refreshing them once if the token
    /// names a key we do not know (key rotation).
    async fn verify_jwt(&self, token: &str) -> Result<Map<String, Value>, IdentError> {
        let (_, keys) = self.discover(false).await?;
        match verify_signed(token, &keys, &self.config.issuer, &self.config.client_id) {
            Err(IdentError::BadToken(m)) if m.starts_with(UNKNOWN_KEY) => {
                let (_, keys) = self.discover(true).await?;
                verify_signed(token, &keys, &self.config.issuer, &self.config.client_id)
            }
            other => other,
        }
    }
}

const UNKNOWN_KEY: &str = "no published key";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Our own JWTs (client assertions, request objects) are valid this long.
const OWN_JWT_SECONDS: i64 = 120;

impl OidcClient {
    /// A JWT from the provider as received (ID token, userinfo): decrypted when encrypted to us,
    /// refused when it should have been encrypted and was not, and when it is unsigned. The
    /// signature itself is checked by the caller with the provider's keys.
    fn open(&self, token: &str) -> Result<String, IdentError> {
        if token.len() > super::jose::MAX_TOKEN_BYTES {
            return Err(IdentError::BadToken("the token is too large".into()));
        }
        let inner = if super::jose::is_encrypted(token) {
            match &self.config.keys {
                Some(k) if k.can_decrypt() => k.decrypt(token)?,
                _ => return Err(IdentError::UnknownEncryptionKey),
            }
        } else if self.config.require_encryption {
            return Err(IdentError::NotEncrypted);
        } else {
            token.to_string()
        };
        if is_unsigned(&inner) {
            return Err(IdentError::Unsigned);
        }
        Ok(inner)
    }

    /// Whether our ID token may travel through the browser as `id_token_hint`. It holds the HETU:
    /// when the provider encrypts tokens to us, the decrypted one must not appear in a URL or in a
    /// signed (readable) request object (OpenID Connect Core §3.1.2.1), so it goes only inside a
    /// pushed request (server to server). The hint is optional; the callback of a silent check
    /// compares `iss` and `sub` with the session's either way.
    fn may_send_hint(&self) -> bool {
        !self.config.require_encryption || self.config.request_mode == RequestMode::Pushed
    }

    /// A back-channel logout token: like an ID token it may come encrypted to us; the profile
    /// does not require it to be (the provider decides per client), so a plain one is taken, but
    /// never an unsigned one.
    fn open_logout(&self, token: &str) -> Result<String, IdentError> {
        if super::jose::is_encrypted(token) || !self.config.require_encryption {
            return self.open(token);
        }
        if token.len() > super::jose::MAX_TOKEN_BYTES {
            return Err(IdentError::BadToken("the token is too large".into()));
        }
        if is_unsigned(token) {
            return Err(IdentError::Unsigned);
        }
        Ok(token.to_string())
    }

    /// A JWT of ours (client assertion, request object) with the registered claims filled in.
    fn own_jwt(
        &self,
        mut claims: Map<String, Value>,
        audience: &str,
        typ: &str,
        now: OffsetDateTime,
    ) -> Result<String, IdentError> {
        let keys = self
            .config
            .keys
            .as_ref()
            .ok_or_else(|| IdentError::Unavailable("no signing key configured".into()))?;
        let now = now.unix_timestamp();
        for (k, v) in [
            ("iss", Value::from(self.config.client_id.clone())),
            ("aud", Value::from(audience)),
            ("iat", Value::from(now)),
            ("nbf", Value::from(now)),
            ("exp", Value::from(now + OWN_JWT_SECONDS)),
            ("jti", Value::from(super::session::random_token(24))),
        ] {
            claims.insert(k.to_string(), v);
        }
        keys.sign(claims, typ).map_err(IdentError::Unavailable)
    }

    /// A form post to the provider's `url` with our client authentication.
    fn authenticated_post(
        &self,
        url: &str,
        mut form: Vec<(&'static str, String)>,
        now: OffsetDateTime,
    ) -> Result<reqwest::RequestBuilder, IdentError> {
        match self.config.client_auth {
            ClientAuth::ClientSecretBasic => Ok(self
                .http
                .post(url)
                .basic_auth(
                    form_encode(&self.config.client_id),
                    Some(form_encode(&self.config.client_secret)),
                )
                .form(&form)),
            ClientAuth::PrivateKeyJwt => {
                // RFC 7523 §3: we are issuer and subject; the endpoint is the audience.
                let mut claims = Map::new();
                claims.insert("sub".into(), Value::from(self.config.client_id.clone()));
                let assertion = self.own_jwt(claims, url, "JWT", now)?;
                form.push(("client_id", self.config.client_id.clone()));
                form.push(("client_assertion_type", JWT_BEARER.to_string()));
                form.push(("client_assertion", assertion));
                Ok(self.http.post(url).form(&form))
            }
        }
    }

    /// The person's attributes from the userinfo endpoint (decrypted and its signature checked
    /// when it is a JWT), for when the ID token lacks them. Its `sub` must be the ID token's.
    async fn userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
        sub: &str,
    ) -> Result<Map<String, Value>, IdentError> {
        let res = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/jwt, application/json")
            .send()
            .await
            .map_err(|e| IdentError::Unavailable(format!("userinfo: {e}")))?;
        if !res.status().is_success() {
            return Err(IdentError::ProviderError(format!(
                "userinfo: status {}",
                res.status()
            )));
        }
        let is_jwt = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/jwt"));
        let body = read_capped(res)
            .await
            .map_err(|e| IdentError::Unavailable(format!("userinfo: {e}")))?;
        let claims = if is_jwt {
            let inner = self.open(body.trim())?;
            self.verify_jwt(&inner).await?
        } else if self.config.require_encryption {
            return Err(IdentError::NotEncrypted);
        } else {
            serde_json::from_str(&body)
                .map_err(|_| IdentError::BadToken("userinfo: not a JSON object".into()))?
        };
        if claim_str(&claims, "sub").as_deref() != Some(sub) {
            return Err(IdentError::BadToken(
                "the userinfo response is about another subject".into(),
            ));
        }
        Ok(claims)
    }
}

/// Check a JWT's signature against `keys`, and its issuer and audience. Time claims are left to the
/// caller, who has the (injectable) clock. Unsigned tokens (`alg: none`) and symmetric algorithms
/// are refused.
pub fn verify_signed(
    token: &str,
    keys: &JwkSet,
    issuer: &str,
    audience: &str,
) -> Result<Map<String, Value>, IdentError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| IdentError::BadToken(format!("unreadable header: {e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(IdentError::BadToken(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| IdentError::BadToken(format!("{UNKNOWN_KEY} matches the token's key id")))?;
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| IdentError::BadToken(format!("unusable published key: {e}")))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.validate_exp = false;
    v.set_required_spec_claims(&["iss", "aud"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| IdentError::BadToken(e.to_string()))
}

fn claim_str(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The checks on an ID token's claims after its signature (OpenID Connect Core §3.1.3.7), then
/// what makes an identity acceptable here: strong assurance and a Finnish HETU (R-AUTH-1).
pub fn check_id_token_claims_before_attributes(
    config: &OidcConfig,
    claims: &Map<String, Value>,
    nonce: &str,
    now: OffsetDateTime,
) -> Result<(), IdentError> {
    let now = now.unix_timestamp();
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| IdentError::BadToken("no exp".into()))?;
    if now >= exp + LEEWAY_SECONDS {
        return Err(IdentError::Expired);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| IdentError::BadToken("no iat".into()))?;
    if iat > now + LEEWAY_SECONDS {
        return Err(IdentError::BadToken("issued in the future".into()));
    }
    if claim_str(claims, "sub").is_none() {
        return Err(IdentError::BadToken("no sub".into()));
    }
    if let Some(Value::Array(aud)) = claims.get("aud") {
        if aud.len() > 1 && claim_str(claims, "azp").as_deref() != Some(&config.client_id) {
            return Err(IdentError::BadToken(
                "several audiences and azp is not us".into(),
            ));
        }
    }
    if claim_str(claims, "nonce").as_deref() != Some(nonce) {
        return Err(IdentError::NonceMismatch);
    }
    let loa = claim_str(claims, &config.loa_claim).unwrap_or_default();
    if !config.loa_accepted.contains(&loa) {
        return Err(IdentError::WeakAssurance);
    }
    Ok(())
}

/// [`check_id_token_claims`]: what the ID token itself must satisfy, then the person's attributes
/// (which may come from userinfo).
pub fn check_id_token_claims(
    config: &OidcConfig,
    claims: &Map<String, Value>,
    nonce: &str,
    now: OffsetDateTime,
) -> Result<(), IdentError> {
    check_id_token_claims_before_attributes(config, claims, nonce, now)?;
    if claim_str(claims, &config.hetu_claim).is_none() {
        if config
            .foreign_id_claims
            .iter()
            .any(|c| claim_str(claims, c).is_some())
        {
            return Err(IdentError::ForeignEid);
        }
        return Err(IdentError::NoHetu);
    }
    Ok(())
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ParResponse {
    request_uri: String,
}

/// Claims the userinfo response may add to the ID token's (the person's attributes), never the
/// ones that say who issued what to whom, or how strongly.
const NOT_FROM_USERINFO: [&str; 11] = [
    "iss", "aud", "sub", "exp", "iat", "nbf", "nonce", "acr", "amr", "sid", "azp",
];

/// A response body, at most [`super::jose::MAX_TOKEN_BYTES`] (the provider's answers are tokens and
/// small JSON; anything larger is refused rather than read).
async fn read_capped(mut res: reqwest::Response) -> Result<String, String> {
    let cap = super::jose::MAX_TOKEN_BYTES;
    if res.content_length().is_some_and(|n| n > cap as u64) {
        return Err("the response is too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err("the response is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the response is not text".to_string())
}

/// Whether a compact JWS says `alg: none`.
fn is_unsigned(token: &str) -> bool {
    token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .is_some_and(|h| {
            h.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a.eq_ignore_ascii_case("none"))
        })
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
}

#[async_trait]
impl Identification for OidcClient {
    fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn origin(&self) -> String {
        self.origins
            .read()
            .map(|o| o.clone())
            .unwrap_or_else(|_| origin_of(&self.config.issuer))
    }

    async fn reachable(&self) -> bool {
        self.discover(false).await.is_ok()
    }

    async fn authorization_url(&self, r: &AuthRequest<'_>) -> Result<String, IdentError> {
        let (meta, _) = self.discover(false).await?;
        let mut url = reqwest::Url::parse(&meta.authorization_endpoint)
            .map_err(|e| IdentError::Unavailable(format!("authorization_endpoint: {e}")))?;
        let c = &self.config;
        let mut params: Vec<(&'static str, String)> = vec![
            ("response_type", "code".into()),
            ("client_id", c.client_id.clone()),
            ("redirect_uri", c.redirect_uri.clone()),
            ("scope", c.scopes.clone()),
            ("state", r.state.into()),
            ("nonce", r.nonce.into()),
            ("code_challenge", r.pkce_challenge.into()),
            ("code_challenge_method", "S256".into()),
            ("ui_locales", r.lang.into()),
        ];
        if let Some(acr) = &c.acr_values {
            params.push(("acr_values", acr.clone()));
        }
        if let Some(hint) = r.silent {
            params.push(("prompt", "none".into()));
            if self.may_send_hint() {
                params.push(("id_token_hint", hint.into()));
            }
        }
        let signed = || {
            let claims: Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
                .collect();
            self.own_jwt(claims, &c.issuer, "oauth-authz-req+jwt", r.now)
        };
        let outside: Vec<(&str, String)> = match c.request_mode {
            RequestMode::Plain => params.clone(),
            // RFC 9101 §5 and OpenID Connect Core §6.1: client_id, response_type and scope also
            // as parameters.
            RequestMode::Signed => vec![
                ("client_id", c.client_id.clone()),
                ("response_type", "code".into()),
                ("scope", c.scopes.clone()),
                ("request", signed()?),
            ],
            RequestMode::Pushed => {
                let endpoint = meta
                    .pushed_authorization_request_endpoint
                    .as_deref()
                    .ok_or_else(|| {
                        IdentError::Unavailable("the provider offers no PAR endpoint".into())
                    })?;
                let res = self
                    .authenticated_post(endpoint, vec![("request", signed()?)], r.now)?
                    .send()
                    .await
                    .map_err(|e| IdentError::Unavailable(format!("PAR endpoint: {e}")))?;
                let status = res.status();
                if !status.is_success() {
                    let body = read_capped(res).await.unwrap_or_default();
                    let error = serde_json::from_str::<TokenError>(&body)
                        .map(|e| e.error)
                        .unwrap_or_else(|_| format!("status {status}"));
                    return Err(IdentError::Unavailable(format!("PAR endpoint: {error}")));
                }
                let pushed: ParResponse = res
                    .json()
                    .await
                    .map_err(|e| IdentError::Unavailable(format!("PAR response: {e}")))?;
                vec![
                    ("client_id", c.client_id.clone()),
                    ("request_uri", pushed.request_uri),
                ]
            }
        };
        url.query_pairs_mut().extend_pairs(outside);
        Ok(url.into())
    }

    fn public_jwks(&self) -> Option<Value> {
        self.config.keys.as_ref().map(|k| k.public_jwks())
    }

    fn checks_provider_session(&self) -> bool {
        self.config.check_provider_session
    }

    async fn complete(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, IdentError> {
        let (meta, _) = self.discover(false).await?;
        let res = self
            .authenticated_post(
                &meta.token_endpoint,
                vec![
                    ("grant_type", "authorization_code".into()),
                    ("code", code.into()),
                    ("redirect_uri", self.config.redirect_uri.clone()),
                    ("code_verifier", pkce_verifier.into()),
                ],
                now,
            )?
            .send()
            .await
            .map_err(|e| IdentError::Unavailable(format!("token endpoint: {e}")))?;
        let status = res.status();
        let body = read_capped(res)
            .await
            .map_err(|e| IdentError::Unavailable(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let error = serde_json::from_str::<TokenError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("status {status}"));
            return Err(if status.is_server_error() {
                IdentError::Unavailable(error)
            } else {
                IdentError::ProviderError(error)
            });
        }
        // The error names no value: a token response holds tokens.
        let token: TokenResponse = serde_json::from_str(&body).map_err(|_| {
            IdentError::Unavailable("the token response is not the expected JSON".into())
        })?;
        let received = token
            .id_token
            .ok_or_else(|| IdentError::BadToken("the token response has no id_token".into()))?;
        // The signed token inside (kept: it is the hint at logout and at a silent check).
        let id_token = self.open(&received)?;
        let mut claims = self.verify_jwt(&id_token).await?;
        // The person's attributes from userinfo when the ID token lacks them.
        let lacks = |c: &Map<String, Value>| {
            claim_str(c, &self.config.hetu_claim).is_none()
                || claim_str(c, "given_name").is_none()
                || claim_str(c, "family_name").is_none()
        };
        if lacks(&claims) {
            if let (Some(endpoint), Some(access), Some(sub)) = (
                meta.userinfo_endpoint.as_deref(),
                token.access_token.as_deref(),
                claim_str(&claims, "sub"),
            ) {
                // The ID token's own checks come first: nothing is fetched for a bad token.
                check_id_token_claims_before_attributes(&self.config, &claims, nonce, now)?;
                for (k, v) in self.userinfo(endpoint, access, &sub).await? {
                    if !NOT_FROM_USERINFO.contains(&k.as_str()) && !claims.contains_key(&k) {
                        claims.insert(k, v);
                    }
                }
            }
        }
        check_id_token_claims(&self.config, &claims, nonce, now)?;
        Ok(Identity {
            issuer: self.config.issuer.clone(),
            sub: claim_str(&claims, "sub").unwrap_or_default(),
            sid: claim_str(&claims, "sid"),
            hetu: claim_str(&claims, &self.config.hetu_claim).unwrap_or_default(),
            given_name: claim_str(&claims, "given_name")
                .or_else(|| claim_str(&claims, "urn:oid:2.5.4.42")),
            family_name: claim_str(&claims, "family_name")
                .or_else(|| claim_str(&claims, "urn:oid:2.5.4.4")),
            id_token,
        })
    }

    async fn logout_url(&self, id_token_hint: Option<&str>, lang: &str) -> Option<String> {
        let (meta, _) = self.discover(false).await.ok()?;
        let mut url = reqwest::Url::parse(meta.end_session_endpoint.as_deref()?).ok()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id)
                .append_pair(
                    "post_logout_redirect_uri",
                    &self.config.post_logout_redirect_uri,
                )
                .append_pair("ui_locales", lang);
            if let Some(hint) = id_token_hint.filter(|_| self.may_send_hint()) {
                q.append_pair("id_token_hint", hint);
            }
        }
        Some(url.into())
    }

    async fn logout_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<LogoutOrder, IdentError> {
        let token = self.open_logout(token)?;
        let claims = self.verify_jwt(&token).await?;
        check_logout_claims(&claims, now)?;
        Ok(LogoutOrder {
            issuer: self.config.issuer.clone(),
            sid: claim_str(&claims, "sid"),
            sub: claim_str(&claims, "sub"),
        })
    }
}

/// OpenID Connect Back-Channel Logout 1.0 §2.6: the logout event, `sid` or `sub`, no `nonce`, a
/// recent `iat`.
pub fn check_logout_claims(
    claims: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(), IdentError> {
    let event = claims
        .get("events")
        .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"));
    if !event.is_some_and(Value::is_object) {
        return Err(IdentError::BadToken(
            "not a logout token (no logout event)".into(),
        ));
    }
    if claims.contains_key("nonce") {
        return Err(IdentError::BadToken(
            "a logout token must not carry a nonce".into(),
        ));
    }
    if claim_str(claims, "sid").is_none() && claim_str(claims, "sub").is_none() {
        return Err(IdentError::BadToken(
            "a logout token names neither sid nor sub".into(),
        ));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    let now = now.unix_timestamp();
    if iat > now + LEEWAY_SECONDS || iat < now - 600 {
        return Err(IdentError::BadToken(
            "the logout token is not recent".into(),
        ));
    }
    Ok(())
}

/// `scheme://host[:port]` of a URL.
pub fn origin_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before HTTP Basic.
fn form_encode(s: &str) -> String {
    reqwest::Url::parse_with_params("x:", [("v", s)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::KeyPair as _;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

    fn key() -> (EncodingKey, JwkSet) {
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())
        }]}))
        .unwrap();
        (EncodingKey::from_ed_der(pkcs8.as_ref()), jwks)
    }

    fn config() -> OidcConfig {
        OidcConfig::new(
            "https://idp.example",
            "portal",
            "s",
            "https://kanta.example",
        )
    }

    fn claims() -> Value {
        json!({
            "iss": "https://idp.example", "aud": "portal", "sub": "s1", "nonce": "n1",
            "iat": NOW.unix_timestamp(), "exp": NOW.unix_timestamp() + 600,
            "acr": LOA_SUBSTANTIAL, "urn:oid:1.2.246.21": "010594Y9021"
        })
    }

    fn sign(k: &EncodingKey, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, k).unwrap()
    }

    fn check(
        token: &str,
        keys: &JwkSet,
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<(), IdentError> {
        let c = config();
        let claims = verify_signed(token, keys, &c.issuer, &c.client_id)?;
        check_id_token_claims(&c, &claims, nonce, now)
    }

    /// R-AUTH-1: every way an ID token can be wrong, each refused with its own reason.
    #[test]
    fn id_token_table() {
        let (k, keys) = key();
        let (foreign_key, _) = key();
        let good = sign(&k, &claims());
        assert_eq!(check(&good, &keys, "n1", NOW), Ok(()));

        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = claims();
            f(&mut c);
            sign(&k, &c)
        };
        let unsigned = {
            let parts: Vec<&str> = good.split('.').collect();
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
                parts[1]
            )
        };
        let hs256 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let tampered = {
            let parts: Vec<&str> = good.split('.').collect();
            let mut c = claims();
            c["urn:oid:1.2.246.21"] = json!("131052-308T");
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
            format!("{}.{}.{}", parts[0], body, parts[2])
        };
        type Case<'a> = (
            &'a str,
            String,
            &'a str,
            OffsetDateTime,
            fn(&IdentError) -> bool,
        );
        let cases: Vec<Case> = vec![
            ("wrong nonce", good.clone(), "n2", NOW, |e| {
                *e == IdentError::NonceMismatch
            }),
            (
                "expired",
                good.clone(),
                "n1",
                NOW + time::Duration::seconds(600 + LEEWAY_SECONDS),
                |e| *e == IdentError::Expired,
            ),
            ("unsigned", unsigned, "n1", NOW, |e| {
                matches!(e, IdentError::BadToken(_))
            }),
            ("symmetric", hs256, "n1", NOW, |e| {
                matches!(e, IdentError::BadToken(_))
            }),
            (
                "foreign-signed",
                sign(&foreign_key, &claims()),
                "n1",
                NOW,
                |e| matches!(e, IdentError::BadToken(_)),
            ),
            ("tampered", tampered, "n1", NOW, |e| {
                matches!(e, IdentError::BadToken(_))
            }),
            (
                "other issuer",
                with(&|c| c["iss"] = json!("https://evil.example")),
                "n1",
                NOW,
                |e| matches!(e, IdentError::BadToken(_)),
            ),
            (
                "other audience",
                with(&|c| c["aud"] = json!("someone-else")),
                "n1",
                NOW,
                |e| matches!(e, IdentError::BadToken(_)),
            ),
            (
                "future iat",
                with(&|c| c["iat"] = json!(NOW.unix_timestamp() + 3600)),
                "n1",
                NOW,
                |e| matches!(e, IdentError::BadToken(_)),
            ),
            (
                "low assurance",
                with(&|c| c["acr"] = json!(LOA_LOW)),
                "n1",
                NOW,
                |e| *e == IdentError::WeakAssurance,
            ),
            (
                "no assurance",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("acr");
                }),
                "n1",
                NOW,
                |e| *e == IdentError::WeakAssurance,
            ),
            (
                "no HETU",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("urn:oid:1.2.246.21");
                }),
                "n1",
                NOW,
                |e| *e == IdentError::NoHetu,
            ),
            (
                "foreign eID",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("urn:oid:1.2.246.21");
                    c[EIDAS_PERSON_IDENTIFIER] = json!("SE/FI/19900101-1234");
                }),
                "n1",
                NOW,
                |e| *e == IdentError::ForeignEid,
            ),
        ];
        for (name, token, nonce, now, expect) in cases {
            let got = check(&token, &keys, nonce, now);
            assert!(matches!(&got, Err(e) if expect(e)), "{name}: {got:?}");
        }
        // 59 seconds past exp is inside the leeway; high assurance is accepted.
        assert_eq!(
            check(&good, &keys, "n1", NOW + time::Duration::seconds(659)),
            Ok(())
        );
        assert_eq!(
            check(&with(&|c| c["acr"] = json!(LOA_HIGH)), &keys, "n1", NOW),
            Ok(())
        );
    }

    #[test]
    fn logout_token_table() {
        let base = || {
            json!({"iss": "https://idp.example", "aud": "portal", "iat": NOW.unix_timestamp(), "jti": "j",
            "sid": "s", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}})
        };
        let ok = |c: &Value| check_logout_claims(c.as_object().unwrap(), NOW).is_ok();
        assert!(ok(&base()));
        let mut c = base();
        c["nonce"] = json!("n");
        assert!(!ok(&c), "nonce");
        let mut c = base();
        c["events"] = json!({});
        assert!(!ok(&c), "no event");
        let mut c = base();
        c.as_object_mut().unwrap().remove("sid");
        assert!(!ok(&c), "neither sid nor sub");
        c["sub"] = json!("x");
        assert!(ok(&c), "sub alone");
        let mut c = base();
        c["iat"] = json!(NOW.unix_timestamp() - 3600);
        assert!(!ok(&c), "stale");
    }

    /// R-AUTH-1 (FTN profile): what arrives is opened only if it is encrypted to us (when that is
    /// required) and signed inside; an unsigned inner token is refused however it is wrapped.
    #[test]
    fn responses_are_opened_by_the_profile() {
        let keys = Arc::new(super::super::jose::RpKeys::generate().unwrap());
        let enc_key = keys.public_jwks()["keys"][1].clone();
        assert_eq!(enc_key["use"], "enc");
        let client = OidcClient::new(config().ftn(keys, RequestMode::Signed));
        let (k, _) = key();
        let signed = sign(&k, &claims());
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            signed.split('.').nth(1).unwrap()
        );
        let wrap = |inner: &str| {
            super::super::jose::encrypt_to(&enc_key, inner, "RSA-OAEP-256", "A256GCM").unwrap()
        };
        assert_eq!(client.open(&wrap(&signed)).unwrap(), signed);
        assert_eq!(client.open(&wrap(&unsigned)), Err(IdentError::Unsigned));
        assert_eq!(client.open(&signed), Err(IdentError::NotEncrypted));
        assert_eq!(client.open(&unsigned), Err(IdentError::NotEncrypted));
        // Without the profile, a plain token is taken but an unsigned one still is not, and an
        // encrypted one cannot be opened.
        let plain = OidcClient::new(config());
        assert_eq!(plain.open(&signed).unwrap(), signed);
        assert_eq!(plain.open(&unsigned), Err(IdentError::Unsigned));
        assert_eq!(
            plain.open(&wrap(&signed)),
            Err(IdentError::UnknownEncryptionKey)
        );
        assert!(config()
            .ftn(
                Arc::new(super::super::jose::RpKeys::generate().unwrap()),
                RequestMode::Pushed
            )
            .check()
            .is_ok());
        let mut c = config();
        c.request_mode = RequestMode::Signed;
        assert!(c.check().is_err(), "a signed request needs a signing key");
    }

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(
            origin_of("https://idp.example:8443/x/y"),
            "https://idp.example:8443"
        );
    }
}
