//! Citizen sessions (R-AUTH-4, R-AUTH-5): server-side rows, an opaque 128-bit id in a cookie (only
//! its SHA-256 is stored), a new id at login and whenever whom the citizen acts for changes, an
//! idle timeout that only the citizen's own requests extend, and an absolute lifetime.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kanta_store::SessionRow;
use ring::rand::SecureRandom as _;
use std::time::Duration;

/// How long sessions last.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// Idle timeout (30 minutes, R-AUTH-5).
    pub idle: Duration,
    /// Absolute lifetime regardless of activity (12 hours by default; NIST SP 800-63B AAL2).
    pub absolute: Duration,
    /// How long before the idle timeout the warning shows.
    pub warn_before: Duration,
    /// How long an identification may take between leaving for the provider and coming back.
    pub login_window: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            warn_before: Duration::from_secs(2 * 60),
            login_window: Duration::from_secs(10 * 60),
        }
    }
}

/// Where a session stands at `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Live,
    /// Idle for the whole idle timeout or longer.
    Idle,
    /// Past its absolute lifetime.
    Expired,
}

impl SessionPolicy {
    /// How stale the stored last activity may be before a request writes it again: 1/120 of the
    /// idle timeout (15 s of 30 min), so the session may end at most that much early.
    pub fn touch_every_ms(&self) -> i64 {
        i64::try_from(self.idle.as_millis() / 120).unwrap_or(i64::MAX)
    }

    /// R-AUTH-5: at 29:59 of idleness the session lives; at 30:00 it has ended.
    pub fn standing(&self, s: &SessionRow, now_ms: i64) -> Standing {
        if now_ms >= s.absolute_expiry {
            Standing::Expired
        } else if now_ms - s.last_active_at >= millis(self.idle) {
            Standing::Idle
        } else {
            Standing::Live
        }
    }

    /// When the session ends if the citizen does nothing (ms since the epoch).
    pub fn ends_at(&self, s: &SessionRow) -> i64 {
        (s.last_active_at + millis(self.idle)).min(s.absolute_expiry)
    }
}

pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `n` random bytes from the operating system's CSPRNG, base64url.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // The system RNG fails only if the OS has no entropy source; then no token is safe to issue.
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        tracing::error!("the system random number generator failed");
        return String::new();
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new session id: 128 random bits.
pub fn new_session_id() -> String {
    random_token(16)
}

/// SHA-256 (hex) of a secret token: what the database keeps.
pub fn hash(token: &str) -> String {
    crate::auth::sha256_hex(token.as_bytes())
}

/// PKCE S256: `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// Compare secrets without leaking where they differ: what is compared is their SHA-256, so the
/// time taken says nothing about the secret's bytes.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && hash(a) == hash(b)
}

/// Cookie names: with the `__Host-` prefix (Secure, path /, no domain) when served over HTTPS.
#[derive(Clone, Debug)]
pub struct Cookies {
    pub secure: bool,
}

impl Cookies {
    pub fn session(&self) -> &'static str {
        if self.secure {
            "__Host-kanta_session"
        } else {
            "kanta_session"
        }
    }
    pub fn csrf(&self) -> &'static str {
        if self.secure {
            "__Host-kanta_csrf"
        } else {
            "kanta_csrf"
        }
    }
    pub fn login(&self) -> &'static str {
        if self.secure {
            "__Host-kanta_login"
        } else {
            "kanta_login"
        }
    }
    /// A silent check of the provider's session under way (R-AUTH-5): its state and return path.
    pub fn silent(&self) -> &'static str {
        if self.secure {
            "__Host-kanta_silent"
        } else {
            "kanta_silent"
        }
    }
    /// The language choice is not a secret; readable so that it survives logout.
    pub fn lang(&self) -> &'static str {
        "kanta_lang"
    }

    /// A `Set-Cookie` value. `max_age` None = for the browser session.
    pub fn set(&self, name: &str, value: &str, max_age: Option<i64>) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }

    pub fn clear(&self, name: &str) -> String {
        self.set(name, "", Some(0))
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn activity_is_written_every_fifteen_seconds_of_thirty_minutes() {
        assert_eq!(SessionPolicy::default().touch_every_ms(), 15_000);
        let short = SessionPolicy {
            idle: Duration::from_secs(40),
            ..SessionPolicy::default()
        };
        assert_eq!(short.touch_every_ms(), 333);
    }
    use kanta_domain::hetu::Hetu;
    use kanta_domain::ids::PatientKey;

    fn row(last: i64, abs: i64) -> SessionRow {
        SessionRow {
            id_hash: "h".into(),
            patient_key: PatientKey(1),
            hetu: Hetu::parse("010594Y9021").unwrap(),
            display_name: "x".into(),
            acting_for: None,
            csrf_token: "c".into(),
            created_at: 0,
            last_active_at: last,
            absolute_expiry: abs,
            confirmed: true,
            idp_issuer: "i".into(),
            idp_sub: "s".into(),
            idp_sid: None,
            id_token: None,
        }
    }

    /// R-AUTH-5 boundaries: 29:59 idle lives, 30:00 does not; the absolute lifetime wins.
    #[test]
    fn idle_and_absolute_boundaries() {
        let p = SessionPolicy::default();
        let minute = 60_000;
        let s = row(0, 12 * 60 * minute);
        assert_eq!(p.standing(&s, 30 * minute - 1000), Standing::Live);
        assert_eq!(p.standing(&s, 30 * minute - 1), Standing::Live);
        assert_eq!(p.standing(&s, 30 * minute), Standing::Idle);
        let active = row(12 * 60 * minute - 1000, 12 * 60 * minute);
        assert_eq!(p.standing(&active, 12 * 60 * minute - 1), Standing::Live);
        assert_eq!(p.standing(&active, 12 * 60 * minute), Standing::Expired);
        assert_eq!(p.ends_at(&s), 30 * minute);
        assert_eq!(p.ends_at(&active), 12 * 60 * minute);
    }

    #[test]
    fn ids_are_128_bit_random_and_stored_hashed() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
        // What is stored is SHA-256 in hex (FIPS 180-2's "abc" vector), never the id.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(hash(&a), hash(&b));
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("", ""));
    }

    #[test]
    fn cookies_are_prefixed_and_flagged_over_https() {
        let c = Cookies { secure: true };
        let set = c.set(c.session(), "v", None);
        assert!(set.starts_with("__Host-kanta_session=v; Path=/; HttpOnly; SameSite=Lax; Secure"));
        let plain = Cookies { secure: false };
        assert!(!plain.set(plain.session(), "v", None).contains("Secure"));
        let mut h = axum::http::HeaderMap::new();
        h.insert("cookie", "a=1; kanta_session=xyz; b=".parse().unwrap());
        assert_eq!(cookie(&h, "kanta_session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
