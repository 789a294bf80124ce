//! The mandate service client (R-PROXY, R-MINOR-6): the Suomi.fi mandates Web API as DVV
//! describes it (research/mission.md §1.8) — the person-to-person (HPA) flow to choose whom to act
//! for, and the system-level check that re-asks whether a delegate may act for a principal in an
//! issue — with the `X-AsiointivaltuudetAuthorization` checksum header on every API-key call.
//!
//! The same client talks to DVV in production and to the built-in registry
//! ([`super::test_mandates`]) in the demo and tests. Answers are cached for
//! [`MandateCache::interval`] (a page view re-checks at least that often, R-PROXY-3); an action
//! taken for the principal, and every switch, asks afresh. A failure is never cached, and is
//! reported as `Unavailable` so that only acting for adults stops (R-OPS-2).

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kanta_domain::acting::MandateCheck;
use kanta_domain::hetu::Hetu;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The checksum header's value: `<clientId> <timestamp> <base64(HMAC-SHA256(apiKey, pathAndQuery + " " + timestamp))>`.
pub fn checksum(client_id: &str, api_key: &str, path_and_query: &str, timestamp: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, api_key.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{path_and_query} {timestamp}").as_bytes());
    format!("{client_id} {timestamp} {}", STANDARD.encode(tag.as_ref()))
}

/// Check a checksum header against the key (the built-in registry's side): the client id, the
/// signature in constant time, and the timestamp within ±5 minutes of `now_ms`.
pub fn verify_checksum(
    header: &str,
    client_id: &str,
    api_key: &str,
    path_and_query: &str,
    now_ms: i64,
) -> bool {
    let mut parts = header.splitn(3, ' ');
    let (Some(id), Some(ts), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if id != client_id {
        return false;
    }
    let Ok(t) = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    let t_ms = kanta_fhir::datetime::millis(t);
    if (t_ms - now_ms).abs() > 5 * 60 * 1000 {
        return false;
    }
    let expected = checksum(client_id, api_key, path_and_query, ts);
    super::session::same_secret(&expected, header)
}

/// The timestamp form DVV's examples use: `2017-02-09T10:29:42.090000+00:00`.
pub fn timestamp(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

#[derive(Debug, thiserror::Error)]
pub enum MandateError {
    /// The service could not be reached, timed out, or answered something unreadable.
    #[error("the mandate service is unavailable: {0}")]
    Unavailable(String),
    /// The service refused (expired session, bad code).
    #[error("the mandate service refused: {0}")]
    Refused(String),
}

/// A person the delegate chose in the mandate service's selection page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenPrincipal {
    pub hetu: Hetu,
    pub name: String,
}

/// The HPA session the service opened for a delegate.
#[derive(Clone, Debug, Deserialize)]
pub struct HpaSession {
    #[serde(rename = "sessionId")]
    pub session_id: String,
    #[serde(rename = "userId")]
    pub user_id: String,
}

/// The mandate service as the portal uses it.
#[async_trait]
pub trait MandateService: Send + Sync {
    /// HPA step 1: register the delegate (the signed-in person).
    async fn register(&self, delegate: &Hetu) -> Result<HpaSession, MandateError>;
    /// HPA step 2: where to send the browser to choose whom to act for.
    fn selection_url(&self, user_id: &str, redirect_uri: &str, state: &str, lang: &str) -> String;
    /// HPA steps 3–4: redeem the code, list the principals chosen (then unregister the session).
    async fn principals(
        &self,
        session: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Vec<ChosenPrincipal>, MandateError>;
    /// The system-level check: may `delegate` act for `principal` in `issue` now?
    async fn check(
        &self,
        delegate: &Hetu,
        principal: &Hetu,
        issue: &str,
    ) -> Result<bool, MandateError>;
}

/// Where the service is and the e-service's credentials.
#[derive(Clone, Debug)]
pub struct MandateConfig {
    /// e.g. `https://asiointivaltuustarkastus.suomi.fi` (no trailing slash).
    pub base_url: String,
    /// The browser-facing base of the selection page (the same service; may differ behind proxies).
    pub browser_url: String,
    pub client_id: String,
    pub api_key: String,
    pub oauth_password: String,
    /// The separately issued key of the system-level REST check.
    pub rest_api_key: String,
    pub timeout: Duration,
}

/// The HTTP client of the mandates Web API.
pub struct HttpMandates {
    config: MandateConfig,
    http: reqwest::Client,
    clock: crate::clock::Clock,
}

impl HttpMandates {
    pub fn new(config: MandateConfig, clock: crate::clock::Clock) -> HttpMandates {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        HttpMandates {
            config,
            http,
            clock,
        }
    }

    fn request_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path_and_query: &str,
        key: &str,
        bearer: Option<&str>,
    ) -> Result<T, MandateError> {
        let ts = timestamp(self.clock.now());
        let mut req = self
            .http
            .get(format!("{}{path_and_query}", self.config.base_url))
            .header(
                "X-AsiointivaltuudetAuthorization",
                checksum(&self.config.client_id, key, path_and_query, &ts),
            );
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| MandateError::Unavailable(e.without_url().to_string()))?;
        read_json(res).await
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    res: reqwest::Response,
) -> Result<T, MandateError> {
    let status = res.status();
    // Bounded: the answers are a few hundred bytes.
    let body = res
        .bytes()
        .await
        .map_err(|e| MandateError::Unavailable(e.without_url().to_string()))?;
    if body.len() > 64 * 1024 {
        return Err(MandateError::Unavailable("answer too large".into()));
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::BAD_REQUEST {
        return Err(MandateError::Refused(format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(MandateError::Unavailable(format!("HTTP {status}")));
    }
    serde_json::from_slice(&body)
        .map_err(|e| MandateError::Unavailable(format!("unreadable answer: {e}")))
}

fn enc(s: &str) -> String {
    // Percent-encode a query value (RFC 3986 unreserved characters pass).
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only a path segment of safe characters is sent (session ids, user ids).
fn segment(s: &str) -> Result<&str, MandateError> {
    if !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(s)
    } else {
        Err(MandateError::Unavailable("unexpected identifier".into()))
    }
}

#[derive(Deserialize)]
struct Token {
    access_token: String,
}

#[derive(Deserialize)]
struct Person {
    #[serde(rename = "personId")]
    person_id: String,
    name: String,
}

#[derive(Deserialize)]
struct Answer {
    result: String,
}

fn allowed(a: &Answer) -> Result<bool, MandateError> {
    match a.result.as_str() {
        "ALLOWED" => Ok(true),
        "DISALLOWED" => Ok(false),
        _ => Err(MandateError::Unavailable("unexpected result".into())),
    }
}

#[async_trait]
impl MandateService for HttpMandates {
    async fn register(&self, delegate: &Hetu) -> Result<HpaSession, MandateError> {
        let c = &self.config;
        let path = format!(
            "/service/hpa/user/register/{}/{}?requestId={}",
            enc(&c.client_id),
            delegate.as_str(),
            Self::request_id()
        );
        let s: HpaSession = self.get_json(&path, &c.api_key, None).await?;
        segment(&s.session_id)?;
        segment(&s.user_id)?;
        Ok(s)
    }

    fn selection_url(&self, user_id: &str, redirect_uri: &str, state: &str, lang: &str) -> String {
        format!(
            "{}/oauth/authorize?client_id={}&response_type=code&redirect_uri={}&user={}&lang={}&state={}",
            self.config.browser_url,
            enc(&self.config.client_id),
            enc(redirect_uri),
            enc(user_id),
            enc(lang),
            enc(state)
        )
    }

    async fn principals(
        &self,
        session: &str,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Vec<ChosenPrincipal>, MandateError> {
        let c = &self.config;
        let session = segment(session)?;
        let basic = STANDARD.encode(format!("{}:{}", c.client_id, c.oauth_password));
        let res = self
            .http
            .post(format!(
                "{}/oauth/token?grant_type=authorization_code&code={}&redirect_uri={}",
                c.base_url,
                enc(code),
                enc(redirect_uri)
            ))
            .header("Authorization", format!("Basic {basic}"))
            .send()
            .await
            .map_err(|e| MandateError::Unavailable(e.without_url().to_string()))?;
        let token: Token = read_json(res).await?;
        let path = format!(
            "/service/hpa/api/delegate/{session}?requestId={}",
            Self::request_id()
        );
        let people: Vec<Person> = self
            .get_json(&path, &c.api_key, Some(&token.access_token))
            .await?;
        if people.len() > 100 {
            return Err(MandateError::Unavailable("too many principals".into()));
        }
        let mut out = Vec::new();
        for p in people {
            let hetu = Hetu::parse(&p.person_id).map_err(|_| {
                MandateError::Unavailable("a principal without a valid HETU".into())
            })?;
            out.push(ChosenPrincipal {
                hetu,
                name: p.name.chars().take(200).collect(),
            });
        }
        // The session is no longer needed; a failure to unregister changes nothing for the user.
        let path = format!(
            "/service/hpa/user/unregister/{session}?requestId={}",
            Self::request_id()
        );
        let _ = self
            .get_json::<serde_json::Value>(&path, &c.api_key, None)
            .await;
        Ok(out)
    }

    async fn check(
        &self,
        delegate: &Hetu,
        principal: &Hetu,
        issue: &str,
    ) -> Result<bool, MandateError> {
        let c = &self.config;
        let path = format!(
            "/service/rest/hpa/authorization/{}/{}/{}?requestId={}&issue={}",
            enc(&c.client_id),
            delegate.as_str(),
            principal.as_str(),
            Self::request_id(),
            enc(issue)
        );
        let a: Answer = self.get_json(&path, &c.rest_api_key, None).await?;
        allowed(&a)
    }
}

/// (delegate, principal, issue).
type CacheKey = (String, String, String);

/// The answers of the system-level check, kept for an interval (per instance: each instance
/// re-checks at least that often). Failures are not kept.
pub struct MandateCache {
    pub interval: Duration,
    entries: Mutex<HashMap<CacheKey, (bool, i64)>>,
    /// Whether the last call to the service was answered (for `/readyz`), `None` before any.
    last_answered: Mutex<Option<bool>>,
}

/// At most this many answers are kept; beyond it the cache is emptied (it refills in one
/// interval).
const CACHE_MAX: usize = 100_000;

impl MandateCache {
    pub fn new(interval: Duration) -> MandateCache {
        MandateCache {
            interval,
            entries: Mutex::default(),
            last_answered: Mutex::default(),
        }
    }

    /// Whether the service answered the last time it was asked (`None`: not asked yet).
    pub fn last_answered(&self) -> Option<bool> {
        self.last_answered.lock().ok().and_then(|l| *l)
    }

    fn answered(&self, ok: bool) {
        if let Ok(mut l) = self.last_answered.lock() {
            *l = Some(ok);
        }
    }

    /// The answer for (delegate, principal, issue): from the cache if younger than the interval
    /// and `fresh` is false, else asked now.
    pub async fn check(
        &self,
        service: &dyn MandateService,
        delegate: &Hetu,
        principal: &Hetu,
        issue: &str,
        now_ms: i64,
        fresh: bool,
    ) -> MandateCheck {
        let key = (
            delegate.as_str().to_string(),
            principal.as_str().to_string(),
            issue.to_string(),
        );
        let interval = self.interval.as_millis() as i64;
        if !fresh {
            if let Ok(m) = self.entries.lock() {
                if let Some((ok, at)) = m.get(&key) {
                    if now_ms >= *at && now_ms - at < interval {
                        return if *ok {
                            MandateCheck::Allowed
                        } else {
                            MandateCheck::Disallowed
                        };
                    }
                }
            }
        }
        let answer = service.check(delegate, principal, issue).await;
        self.answered(answer.is_ok());
        match answer {
            Ok(ok) => {
                if let Ok(mut m) = self.entries.lock() {
                    if m.len() >= CACHE_MAX {
                        m.clear();
                    }
                    m.insert(key, (ok, now_ms));
                }
                if ok {
                    MandateCheck::Allowed
                } else {
                    MandateCheck::Disallowed
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "mandate check failed");
                if let Ok(mut m) = self.entries.lock() {
                    m.remove(&key);
                }
                MandateCheck::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DVV's published test vector (research/mission.md §1.8; issue 11).
    #[test]
    fn the_checksum_matches_dvvs_test_vector() {
        let path = "/service/hpa/user/register/ed4b7ae7/080297-915A?requestId=02fd35dc-99e6-477b-b6e2-03f02cbf3666";
        let ts = "2017-02-09T10:29:42.090000+00:00";
        assert_eq!(
            checksum("ed4b7ae7", "3ba56df8-88b8-4805-9b04-2f8e7a61", path, ts),
            "ed4b7ae7 2017-02-09T10:29:42.090000+00:00 GeRKoGmGd0RFk33s2vNHutJf/TrEdwSM2Vb7qWXLESY="
        );
    }

    #[test]
    fn a_checksum_is_verified_by_key_path_and_time() {
        let ts = "2017-02-09T10:29:42.090000+00:00";
        let at = kanta_fhir::datetime::millis(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        );
        let h = checksum("c", "k", "/p?q=1", ts);
        assert!(verify_checksum(&h, "c", "k", "/p?q=1", at));
        assert!(verify_checksum(&h, "c", "k", "/p?q=1", at + 4 * 60 * 1000));
        assert!(!verify_checksum(&h, "c", "k", "/p?q=1", at + 6 * 60 * 1000));
        assert!(!verify_checksum(&h, "c", "other", "/p?q=1", at));
        assert!(!verify_checksum(&h, "c", "k", "/p?q=2", at));
        assert!(!verify_checksum(&h, "d", "k", "/p?q=1", at));
        assert!(!verify_checksum("garbage", "c", "k", "/p?q=1", at));
    }

    #[test]
    fn timestamps_have_dvvs_form() {
        let t = time::macros::datetime!(2017-02-09 10:29:42.09 UTC);
        assert_eq!(timestamp(t), "2017-02-09T10:29:42.090000+00:00");
    }
}
