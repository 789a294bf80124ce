//! Citizen identification (R-AUTH-1): the portal as an OpenID Connect relying party —
//! authorization code flow with PKCE (S256), `state` and `nonce`, the ID token's signature and
//! claims checked against the provider's published keys, RP-initiated logout and back-channel
//! logout tokens.
//!
//! Identification sits behind [`Identification`] so that a SAML 2.0 implementation (Suomi.fi's
//! interface today) can be added beside this one without touching the portal.

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
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
        }
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
    /// The origin of the provider's pages (for the CSP `form-action`).
    fn origin(&self) -> String;
    /// Whether the provider's metadata and keys can be had (cached).
    async fn reachable(&self) -> bool;
    /// Where to send the browser to identify.
    async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_challenge: &str,
        lang: &str,
    ) -> Result<String, IdentError>;
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
pub fn check_id_token_claims(
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
        origin_of(&self.config.issuer)
    }

    async fn reachable(&self) -> bool {
        self.discover(false).await.is_ok()
    }

    async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_challenge: &str,
        lang: &str,
    ) -> Result<String, IdentError> {
        let (meta, _) = self.discover(false).await?;
        let mut url = reqwest::Url::parse(&meta.authorization_endpoint)
            .map_err(|e| IdentError::Unavailable(format!("authorization_endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", &self.config.redirect_uri)
                .append_pair("scope", &self.config.scopes)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", pkce_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("ui_locales", lang);
            if let Some(acr) = &self.config.acr_values {
                q.append_pair("acr_values", acr);
            }
        }
        Ok(url.into())
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
            .http
            .post(&meta.token_endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(&self.config.client_secret)),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.config.redirect_uri),
                ("code_verifier", pkce_verifier),
            ])
            .send()
            .await
            .map_err(|e| IdentError::Unavailable(format!("token endpoint: {e}")))?;
        let status = res.status();
        let body = res
            .bytes()
            .await
            .map_err(|e| IdentError::Unavailable(format!("token endpoint: {e}")))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("status {status}"));
            return Err(if status.is_server_error() {
                IdentError::Unavailable(error)
            } else {
                IdentError::ProviderError(error)
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| IdentError::Unavailable(format!("token response: {e}")))?;
        let id_token = token
            .id_token
            .ok_or_else(|| IdentError::BadToken("the token response has no id_token".into()))?;
        let claims = self.verify_jwt(&id_token).await?;
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
            if let Some(hint) = id_token_hint {
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
        let claims = self.verify_jwt(token).await?;
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
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

    #[test]
    fn client_credentials_are_form_encoded_for_basic_auth() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(
            origin_of("https://idp.example:8443/x/y"),
            "https://idp.example:8443"
        );
    }
}
