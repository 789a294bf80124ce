#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Citizen identification and sessions (R-AUTH-1…7) against a real, independent OpenID provider:
//! panva's `oidc-provider` from npm (OpenID Certified), started on loopback for each test
//! (`tests/idp/idp.mjs`; install it with `npm ci --prefix crates/kanta-web/tests/idp`). The portal
//! runs on port 0 with its own fresh database and an injected clock; a cookie-keeping HTTP client
//! plays the browser.

use async_trait::async_trait;
use kanta_domain::audit::{Action, AuditRecord};
use kanta_domain::hetu::Hetu;
use kanta_domain::population::{Person, PersonRecord};
use kanta_store::audit::{AuditConfig, AuditLog, Signer};
use kanta_store::testing::TestDb;
use kanta_store::{Backend, PendingLogin, Store};
use kanta_web::portal::jose::{KeySpec, RpKeys};
use kanta_web::portal::oidc::{OidcClient, OidcConfig, RequestMode};
use kanta_web::portal::session::{hash, SessionPolicy};
use kanta_web::portal::{PopulationRegister, Portal, RateLimiter};
use kanta_web::{AppState, Clock, WebConfig};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use std::io::BufRead as _;
use std::sync::Arc;
use std::time::Duration;
use time::macros::date;

const HETU: &str = "010594Y9021";
const DECEASED: &str = "010594Y9054";

struct Opts {
    id_token_ttl: u32,
    register: Option<Arc<dyn PopulationRegister>>,
    policy: SessionPolicy,
    rate: u32,
    client_ip_header: Option<&'static str>,
    /// The FTN profile: the provider's client to use and how requests travel.
    ftn: Option<(&'static str, RequestMode)>,
    /// "Continue" checks the provider's session (prompt=none). Off where a test moves the clock
    /// far from the provider's.
    check_provider_session: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            id_token_ttl: 3600,
            register: None,
            policy: SessionPolicy::default(),
            rate: 1000,
            client_ip_header: None,
            ftn: None,
            check_provider_session: false,
        }
    }
}

/// The portal's keys in the FTN tests, made once per test binary: two signing keys (the second
/// in use, as after a rotation) and two encryption keys, all published to the provider.
fn ftn_keys() -> Arc<RpKeys> {
    static PEMS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let pems = PEMS.get_or_init(|| {
        (0..4)
            .map(|_| {
                josekit::jwk::alg::rsa::RsaKeyPair::generate(2048)
                    .unwrap()
                    .to_pem_private_key()
            })
            .collect()
    });
    let probe = RpKeys::new(&KeySpec {
        signing_pems: &pems[..2],
        active_kid: None,
        decryption_pems: &pems[2..],
        sign_alg: "RS256",
        enc_alg: "RSA-OAEP-256",
        enc: "A256GCM",
    })
    .unwrap();
    let second = probe.public_jwks()["keys"][1]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    Arc::new(
        RpKeys::new(&KeySpec {
            signing_pems: &pems[..2],
            active_kid: Some(&second),
            decryption_pems: &pems[2..],
            sign_alg: "RS256",
            enc_alg: "RSA-OAEP-256",
            enc: "A256GCM",
        })
        .unwrap(),
    )
}

struct App {
    base: String,
    idp: String,
    http: reqwest::Client,
    clock: Clock,
    state: AppState,
    store: Arc<dyn Store>,
    _node: Node,
    db: Option<TestDb>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The provider's process, stopped however the test ends.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test provider, started once the portal's address is known (its client registration names
/// our callback).
fn start_idp(rp_base: &str, ttl: u32, rp_jwks: Option<&serde_json::Value>) -> (Node, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp");
    assert!(
        std::path::Path::new(dir).join("node_modules/oidc-provider").exists(),
        "oidc-provider is not installed: run `npm ci --prefix crates/kanta-web/tests/idp` (scripts/test does)"
    );
    let mut child = std::process::Command::new("node")
        .arg("idp.mjs")
        .current_dir(dir)
        .env("RP_BASE", rp_base)
        .env("ID_TOKEN_TTL", ttl.to_string())
        .env(
            "RP_JWKS",
            rp_jwks.map(|j| j.to_string()).unwrap_or_default(),
        )
        .env(
            "MINIMAL_ID_TOKEN",
            if rp_jwks.is_some() { "1" } else { "0" },
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node is needed for the identification tests");
    let out = child.stdout.take().unwrap();
    let child = Node(child);
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    // Keep reading what it prints, or its writes would fail on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port = line
        .trim()
        .strip_prefix("LISTENING ")
        .expect(&line)
        .to_string();
    (child, format!("http://127.0.0.1:{port}"))
}

impl App {
    async fn spawn(backend: Backend, opts: Opts) -> App {
        let db = TestDb::new(backend).await;
        // The injected clock starts at the real time: the provider's tokens carry real times.
        let clock = Clock::fixed(Clock::System.now());
        let person = |hetu: &str, given: &str, family: &str, deceased| PersonRecord {
            person: Person {
                hetu: Hetu::parse(hetu).unwrap(),
                family_name: family.into(),
                given_names: given.into(),
                birth_date: date!(1994 - 05 - 01),
                deceased,
                non_disclosure: false,
            },
            relations: vec![],
        };
        db.store
            .import_population(
                &[
                    person(HETU, "Testi", "Henkilö", None),
                    person(DECEASED, "Kuollut", "Henkilö", Some(date!(2025 - 01 - 01))),
                ],
                clock.now(),
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let keys = opts.ftn.map(|_| ftn_keys());
        let (node, idp) = start_idp(
            &base,
            opts.id_token_ttl,
            keys.as_ref().map(|k| k.public_jwks()).as_ref(),
        );
        let key = Signer::generate_pkcs8().unwrap();
        let audit = AuditLog::start(
            db.store.clone(),
            AuditConfig {
                max_batch: 1000,
                checkpoint_every: Duration::ZERO,
                signer: Signer::from_pkcs8("kanta.test/audit", &key).unwrap(),
                witness_file: None,
                witness_channel: None,
            },
        );
        let config = WebConfig {
            public_url: base.clone(),
            max_body_bytes: 1 << 20,
            demo: false,
            limits: kanta_web::Limits::default(),
        };
        let mut portal = Portal::new(db.store.clone(), &base);
        let mut oc = match (opts.ftn, keys) {
            (Some((client, mode)), Some(keys)) => {
                OidcConfig::new(&idp, client, "", &base).ftn(keys, mode)
            }
            _ => OidcConfig::new(&idp, "kanta-portal", "test-secret", &base),
        };
        oc.check_provider_session = opts.check_provider_session;
        oc.check().unwrap();
        portal.identification = Some(Arc::new(OidcClient::new(oc)));
        portal.policy = opts.policy;
        portal.limiter = Arc::new(RateLimiter::new(opts.rate));
        portal.client_ip_header = opts.client_ip_header.map(str::to_string);
        if let Some(r) = opts.register {
            portal.register = r;
        }
        let state = AppState::new(
            db.store.clone(),
            audit,
            config,
            clock.clone(),
            b"0123456789abcdef0123456789abcdef",
        )
        .with_portal(portal)
        .with_centre(test_centre());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(kanta_web::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        App {
            state,
            http: browser(),
            store: db.store.clone(),
            base,
            idp,
            clock,
            _node: node,
            db: Some(db),
            stop: Some(tx),
        }
    }

    async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn get(&self, path: &str) -> Page {
        Page::of(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// A form post from one of our own pages (the browser sends our Origin).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(self.url(path))
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap();
        Page::of(r).await
    }

    async fn choose_account(&self, name: &str) {
        let r = self
            .http
            .post(format!(
                "{}/test-control/next-account?name={name}",
                self.idp
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// /login → the provider (which logs in the chosen account) → the URL of our callback.
    async fn identify_at_provider(&self, account: &str) -> String {
        // The provider stamps its tokens with real time: a frozen clock that has fallen behind
        // (a slow machine, a long test) would see them as issued in the future.
        self.clock.catch_up();
        self.choose_account(account).await;
        let first = self.get("/login").await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        self.follow_to_callback(&first.location()).await
    }

    async fn follow_to_callback(&self, start: &str) -> String {
        let mut url = start.to_string();
        for _ in 0..10 {
            if url.starts_with(&format!("{}/auth/callback", self.base)) {
                return url;
            }
            let r = self.http.get(&url).send().await.unwrap();
            assert!(
                r.status().is_redirection(),
                "{url}: {} {}",
                r.status(),
                r.text().await.unwrap()
            );
            let next = r.headers()[LOCATION].to_str().unwrap().to_string();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&next)
                .unwrap()
                .to_string();
        }
        panic!("the provider never sent us back");
    }

    /// A whole login as `account`: the callback's answer.
    async fn login(&self, account: &str) -> Page {
        let cb = self.identify_at_provider(account).await;
        self.get(&cb).await
    }

    /// A new browser (no cookies here or at the provider).
    fn new_browser(&mut self) {
        self.http = browser();
    }

    /// Log in as the register's person and confirm.
    async fn login_confirmed(&self) -> String {
        let cb = self.login("ok").await;
        assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
        self.confirm().await
    }

    /// Confirm after identification (R-AUTH-3) and see the front page; the CSRF token.
    async fn confirm(&self) -> String {
        let confirm = self.get("/confirm").await;
        assert!(
            confirm.body.contains("Testi Henkilö") && confirm.body.contains(HETU),
            "{}",
            confirm.body
        );
        let r = self.post("/confirm", &[("csrf", &confirm.csrf())]).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::SEE_OTHER, "/".to_string())
        );
        self.acknowledge_notice().await;
        let front = self.get("/").await;
        assert!(front.body.contains("Hei, Testi Henkilö"), "{}", front.body);
        front.csrf()
    }

    /// R-INFO-1: an adult who has not received the information notice is shown it first; tick it.
    async fn acknowledge_notice(&self) {
        let front = self.get("/").await;
        if front.status != StatusCode::SEE_OTHER {
            return;
        }
        assert_eq!(front.location(), "/notice");
        let notice = self.get("/notice").await;
        assert!(notice.body.contains("name=\"received\""), "{}", notice.body);
        // Without the tick nothing is recorded and the notice stays.
        let r = self.post("/notice", &[("csrf", &notice.csrf())]).await;
        assert_eq!(r.location(), "/notice?missing=1");
        let r = self
            .post("/notice", &[("csrf", &notice.csrf()), ("received", "yes")])
            .await;
        assert_eq!(r.location(), "/data-use?done=notice");
    }

    async fn audit_actions(&self) -> Vec<(Action, Option<String>)> {
        let (size, _) = self.store.audit_head().await.unwrap();
        self.store
            .audit_range(0, size)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let rec: AuditRecord = serde_json::from_str(&r.body).unwrap();
                (rec.action, rec.query)
            })
            .collect()
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    async fn of(r: reqwest::Response) -> Page {
        Page {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }
    fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let i = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no csrf in {}", self.body));
        let rest = &self.body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(|v| v[name.len() + 1..].split(';').next().unwrap().to_string())
    }
}

/// R-AUTH-1, R-AUTH-3, R-AUTH-4: log in, confirm, see one's own front page, switch language, log
/// out here and at the provider (RP-initiated logout); every step audited.
async fn full_flow(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    let public = app.get("/").await;
    assert_eq!(public.status, StatusCode::OK);
    assert!(public.body.contains("href=\"/login\""));
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
    ] {
        assert!(public.headers.contains_key(h), "{h}");
    }
    let csp = public.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );

    let cb = app.login("ok").await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
    let sid = cb.set_cookie("kanta_session").expect("a session cookie");
    let set = cb
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        set.iter().any(|c| c.starts_with("kanta_session=")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{set:?}"
    );
    // Not confirmed yet: the front page sends to the confirm page (R-AUTH-3).
    assert_eq!(app.get("/").await.location(), "/confirm");
    let csrf = app.confirm().await;
    assert!(
        app.store.session_get(&hash(&sid)).await.unwrap().is_some(),
        "stored hashed"
    );
    assert!(
        app.store.session_get(&sid).await.unwrap().is_none(),
        "never stored as is"
    );

    let r = app
        .post("/lang", &[("csrf", &csrf), ("lang", "sv"), ("return", "/")])
        .await;
    assert_eq!(r.location(), "/");
    let sv = app.get("/").await;
    assert!(
        sv.body.contains("<html lang=\"sv\">") && sv.body.contains("Hej, Testi Henkilö"),
        "{}",
        sv.body
    );

    let out = app.post("/logout", &[("csrf", &sv.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let to = out.location();
    assert!(
        to.starts_with(&format!("{}/session/end", app.idp)) && to.contains("id_token_hint="),
        "{to}"
    );
    assert!(out.headers.contains_key("clear-site-data"));
    assert!(
        app.store.session_get(&hash(&sid)).await.unwrap().is_none(),
        "ended here"
    );
    let after = app.get("/").await;
    assert!(after.body.contains("href=\"/login\""), "{}", after.body);
    // The provider ends its own session and returns the browser to us.
    let end = app.http.get(&to).send().await.unwrap();
    let form = end.text().await.unwrap();
    let xsrf = between(&form, "name=\"xsrf\" value=\"", "\"");
    let confirm = app
        .http
        .post(format!("{}/session/end/confirm", app.idp))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(confirm.status().is_redirection());
    let back = confirm.headers()[LOCATION].to_str().unwrap().to_string();
    assert_eq!(back, format!("{}/logged-out", app.base));

    let actions = app.audit_actions().await;
    assert!(
        actions.contains(&(Action::Login, Some("reason=identified".into()))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&(Action::Logout, Some("reason=user".into()))),
        "{actions:?}"
    );
    app.finish().await;
}

fn between(s: &str, start: &str, end: &str) -> String {
    let i = s.find(start).unwrap_or_else(|| panic!("no {start} in {s}")) + start.len();
    s[i..i + s[i..].find(end).unwrap()].to_string()
}

#[tokio::test]
async fn full_flow_sqlite() {
    full_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn full_flow_postgres() {
    full_flow(Backend::Postgres).await;
}

/// R-AUTH-1, R-AUTH-2, R-AUTH-7: who is refused, with which message; each refusal audited and no
/// session made. A person missing from the register but named by the identification's attributes
/// gets in (the register first, then the attributes).
async fn refusals(backend: Backend) {
    let mut app = App::spawn(backend, Opts::default()).await;
    let cases = [
        (
            "weak",
            StatusCode::FORBIDDEN,
            "vahva tunnistautuminen",
            "weak-assurance",
        ),
        (
            "foreign",
            StatusCode::FORBIDDEN,
            "vain suomalaisella henkilötunnuksella",
            "foreign-eid",
        ),
        (
            "nohetu",
            StatusCode::FORBIDDEN,
            "ei saatu henkilötunnusta",
            "no-hetu",
        ),
        (
            "invalid",
            StatusCode::FORBIDDEN,
            "ei ole kelvollinen",
            "invalid-hetu",
        ),
        (
            "unknown",
            StatusCode::FORBIDDEN,
            "ei löytynyt väestötiedoista",
            "unknown-person",
        ),
        (
            "deceased",
            StatusCode::FORBIDDEN,
            "ei löytynyt väestötiedoista",
            "deceased",
        ),
    ];
    for (account, status, text, reason) in cases {
        // Each in a new browser: the provider would otherwise keep its session (single sign-on).
        app.new_browser();
        let r = app.login(account).await;
        assert_eq!(r.status, status, "{account}: {}", r.body);
        assert!(r.body.contains(text), "{account}: {}", r.body);
        assert!(r.set_cookie("kanta_session").is_none(), "{account}");
        let actions = app.audit_actions().await;
        assert!(
            actions.contains(&(Action::FailedLogin, Some(format!("reason={reason}")))),
            "{account}: {actions:?}"
        );
    }
    app.new_browser();
    let r = app.login("attributes").await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/confirm".to_string()),
        "{}",
        r.body
    );
    assert!(app
        .get("/confirm")
        .await
        .body
        .contains("Attribuutti Henkilö"));
    let claimed = app
        .store
        .patient_key_for_hetu(&Hetu::parse("150390A904F").unwrap())
        .await
        .unwrap();
    assert!(claimed.is_some());
    assert!(
        app.store
            .person(&Hetu::parse("150390A904F").unwrap())
            .await
            .unwrap()
            .is_none(),
        "no register entry made"
    );
    app.finish().await;
}

/// `state` binds the callback to the browser that left, once; `nonce` binds the token to the request.
async fn state_and_nonce(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    let cb = app.identify_at_provider("ok").await;
    // Another browser (no login cookie) cannot use the callback.
    let other = Page::of(browser().get(&cb).send().await.unwrap()).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert!(
        other.body.contains("ei kuulu tähän selaimeen"),
        "{}",
        other.body
    );
    // A forged state is refused.
    let forged = cb.replace("state=", "state=x");
    assert_eq!(app.get(&forged).await.status, StatusCode::BAD_REQUEST);
    // The real one works once…
    let ok = app.get(&cb).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // …and not twice.
    assert_eq!(app.get(&cb).await.status, StatusCode::BAD_REQUEST);

    // Wrong nonce: swap the nonce of the login under way before the provider answers.
    app.choose_account("ok").await;
    let first = app.get("/login").await;
    let state = between(&first.location(), "state=", "&");
    let pending = app.store.login_take(&hash(&state)).await.unwrap().unwrap();
    app.store
        .login_begin(&PendingLogin {
            nonce: "not-the-nonce-sent".into(),
            ..pending
        })
        .await
        .unwrap();
    let cb = app.follow_to_callback(&first.location()).await;
    let r = app.get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::FailedLogin, Some("reason=nonce-mismatch".into()))));
    app.finish().await;
}

/// An ID token past its `exp` (by our clock) is refused.
async fn expired_id_token(backend: Backend) {
    let app = App::spawn(
        backend,
        Opts {
            id_token_ttl: 60,
            ..Opts::default()
        },
    )
    .await;
    let cb = app.identify_at_provider("ok").await;
    app.clock.advance(time::Duration::minutes(3));
    let r = app.get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("vanheni"), "{}", r.body);
    app.finish().await;
}

/// A token whose signature does not verify with the provider's published keys is refused.
async fn foreign_signed_token(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    let r = app
        .http
        .post(format!("{}/test-control/rogue-keys", app.idp))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = app.login("ok").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("ei voitu varmistaa"), "{}", r.body);
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::FailedLogin, Some("reason=bad-token".into()))));
    app.finish().await;
}

struct DownRegister;

#[async_trait]
impl PopulationRegister for DownRegister {
    async fn person(&self, _: &Hetu) -> Result<Option<PersonRecord>, String> {
        Err("connection refused".into())
    }
}

/// R-AUTH-2: the register unavailable means no login, with a message naming the population data.
async fn register_unavailable_fails_closed(backend: Backend) {
    let app = App::spawn(
        backend,
        Opts {
            register: Some(Arc::new(DownRegister)),
            ..Opts::default()
        },
    )
    .await;
    let r = app.login("ok").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("Väestötietojärjestelmän"), "{}", r.body);
    assert!(r.set_cookie("kanta_session").is_none());
    app.finish().await;
}

/// R-AUTH-5: idle 29:59 lives, 30:00 has ended; background requests (the status check) never
/// extend; the citizen's own requests do.
async fn idle_timeout(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    app.login_confirmed().await;
    let almost = time::Duration::minutes(29) + time::Duration::seconds(59);
    app.clock.advance(almost);
    let s: serde_json::Value = app
        .http
        .get(app.url("/session/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (s["active"].as_bool(), s["ends_in_seconds"].as_i64()),
        (Some(true), Some(1)),
        "{s}"
    );
    app.clock.advance(time::Duration::seconds(1));
    let s: serde_json::Value = app
        .http
        .get(app.url("/session/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        s["active"], false,
        "the status check did not extend it: {s}"
    );
    let front = app.get("/").await;
    assert!(
        front.body.contains("Istuntosi on päättynyt"),
        "{}",
        front.body
    );
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::Logout, Some("reason=idle-timeout".into()))));

    // Own requests extend: a page view at 29:59, then 29:59 more, is still live.
    let csrf = app.login_confirmed().await;
    app.clock.advance(almost);
    assert!(app.get("/").await.body.contains("Hei, Testi"));
    app.clock.advance(almost);
    // The warning and the way to continue are on every page, without JavaScript.
    let page = app.get("/").await;
    assert!(
        page.body.contains("Istuntosi päättyy klo")
            && page.body.contains("action=\"/session/continue\"")
    );
    app.clock.advance(almost);
    let r = app
        .post("/session/continue", &[("csrf", &csrf), ("return", "/")])
        .await;
    assert_eq!(r.location(), "/");
    app.clock.advance(almost);
    assert!(app.get("/").await.body.contains("Hei, Testi"));
    app.clock.advance(time::Duration::minutes(30));
    assert!(!app.get("/").await.body.contains("Hei, Testi"));
    app.finish().await;
}

/// The absolute lifetime ends a session however active it is.
async fn absolute_lifetime(backend: Backend) {
    let policy = SessionPolicy {
        absolute: Duration::from_secs(3600),
        ..SessionPolicy::default()
    };
    let app = App::spawn(
        backend,
        Opts {
            policy,
            ..Opts::default()
        },
    )
    .await;
    app.login_confirmed().await;
    for _ in 0..2 {
        app.clock.advance(time::Duration::minutes(25));
        assert!(app.get("/").await.body.contains("Hei, Testi"));
    }
    app.clock
        .advance(time::Duration::minutes(9) + time::Duration::seconds(59));
    assert!(app.get("/").await.body.contains("Hei, Testi"), "59:59");
    app.clock.advance(time::Duration::seconds(1));
    assert!(
        app.get("/").await.body.contains("Istuntosi on päättynyt"),
        "60:00"
    );
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::Logout, Some("reason=lifetime".into()))));
    app.finish().await;
}

/// R-AUTH-4: logging out at the provider ends our session (back-channel logout).
async fn logout_at_the_provider_ends_ours(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    app.login_confirmed().await;
    let end = app
        .http
        .get(format!("{}/session/end", app.idp))
        .send()
        .await
        .unwrap();
    let form = end.text().await.unwrap();
    let xsrf = between(&form, "name=\"xsrf\" value=\"", "\"");
    let r = app
        .http
        .post(format!("{}/session/end/confirm", app.idp))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let mut ended = false;
    for _ in 0..400 {
        if !app.get("/").await.body.contains("Hei, Testi") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "the provider's logout did not reach us");
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::Logout, Some("reason=provider-logout".into()))));
    app.finish().await;
}

/// No session fixation: a planted id is never adopted; each login issues a new id and ends the
/// browser's previous session.
async fn session_fixation(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    let planted = "planted-by-an-attacker";
    // The attacker's cookie is in the browser before login.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("kanta_session={planted}; Path=/"),
        &app.base.parse().unwrap(),
    );
    let victim = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let app = App {
        http: victim,
        ..app
    };
    let first = app.login("ok").await;
    let id1 = first.set_cookie("kanta_session").unwrap();
    assert_ne!(id1, planted);
    assert!(app
        .store
        .session_get(&hash(planted))
        .await
        .unwrap()
        .is_none());
    let with_planted = Page::of(
        browser()
            .get(app.url("/"))
            .header("cookie", format!("kanta_session={planted}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(with_planted.body.contains("href=\"/login\""));
    let second = app.login("ok").await;
    let id2 = second.set_cookie("kanta_session").unwrap();
    assert_ne!(id1, id2);
    assert!(
        app.store.session_get(&hash(&id1)).await.unwrap().is_none(),
        "the old session ended"
    );
    assert!(app.store.session_get(&hash(&id2)).await.unwrap().is_some());
    app.finish().await;
}

/// CSRF: a state-changing request needs the session's token and a same-origin request; GET does
/// not log out.
async fn csrf_and_methods(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    let csrf = app.login_confirmed().await;
    let no_token = app.post("/logout", &[("csrf", "")]).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let wrong = app.post("/logout", &[("csrf", "guess")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    for (name, value) in [
        ("origin", "http://127.0.0.2:9"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = app
            .http
            .post(app.url("/logout"))
            .header(name, value)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}");
    }
    let get = app.get("/logout").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    // Every other state-changing route of a session: a missing or a wrong token is refused, and
    // nothing changes (the language stays, the session is not extended or switched).
    for route in [
        "/confirm",
        "/lang",
        "/session/continue",
        "/act-for",
        "/act-for/self",
        "/act-for/mandate",
    ] {
        for token in ["", "guess", &csrf[..csrf.len() - 1]] {
            let r = app
                .post(
                    route,
                    &[
                        ("csrf", token),
                        ("lang", "sv"),
                        ("return", "/"),
                        ("via", "register"),
                        ("person", HETU),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{route} with {token:?}");
            assert!(r.set_cookie("kanta_lang").is_none(), "{route}");
            assert!(r.set_cookie("kanta_session").is_none(), "{route}");
        }
    }
    // A forged logout token (not signed by the provider) ends nothing.
    let forged = format!(
        "{}.{}.{}",
        "eyJhbGciOiJSUzI1NiIsInR5cCI6ImxvZ291dCtqd3QifQ", "eyJpc3MiOiJ4Iiwic2lkIjoieCJ9", "AAAA"
    );
    for token in [forged.as_str(), "", "not-a-jwt"] {
        let r = app
            .http
            .post(app.url("/auth/backchannel-logout"))
            .form(&[("logout_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{token:?}");
    }
    assert!(
        app.get("/").await.body.contains("Hei, Testi"),
        "still logged in"
    );
    // Nothing of a session is cached anywhere: every answer says no-store (ASVS 14.3.2).
    for path in [
        "/",
        "/visits",
        "/records/lab",
        "/records/lab/Observation/missing",
        "/disclosures",
        "/act-for",
        "/confirm",
        "/no-such-page",
    ] {
        let r = app.get(path).await;
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{path} ({})",
            r.status
        );
    }
    let ok = app.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    app.finish().await;
}

/// Logins and callbacks are rate limited per client address.
async fn login_rate_limit(backend: Backend) {
    let app = App::spawn(
        backend,
        Opts {
            rate: 3,
            ..Opts::default()
        },
    )
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("/login").await.status, StatusCode::SEE_OTHER);
    }
    let r = app.get("/login").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("Liian monta yritystä"));
    app.finish().await;

    // Behind a load balancer the limit counts the addresses it reports (the last entry, which the
    // balancer appended; what the client put before it does not count), not the balancer's own.
    let app = App::spawn(
        backend,
        Opts {
            rate: 1,
            client_ip_header: Some("x-forwarded-for"),
            ..Opts::default()
        },
    )
    .await;
    let login_from = |xff: &'static str| {
        let r = app
            .http
            .get(app.url("/login"))
            .header("x-forwarded-for", xff);
        async move { r.send().await.unwrap().status() }
    };
    assert_eq!(login_from("10.0.0.1").await, StatusCode::SEE_OTHER);
    assert_eq!(login_from("10.0.0.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(login_from("10.0.0.2").await, StatusCode::SEE_OTHER);
    assert_eq!(
        login_from("192.0.2.7, 10.0.0.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.finish().await;
}

/// Sessions nobody returns to are ended by the periodic pruning, and each end is audited.
async fn idle_sessions_are_pruned_and_audited(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    app.login_confirmed().await;
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(
        kanta_web::portal::prune_sessions(&app.state).await.unwrap(),
        0
    );
    app.clock.advance(time::Duration::minutes(1));
    assert_eq!(
        kanta_web::portal::prune_sessions(&app.state).await.unwrap(),
        1
    );
    let actions = app.audit_actions().await;
    assert!(
        actions.contains(&(Action::Logout, Some("reason=idle-timeout".into()))),
        "{actions:?}"
    );
    app.finish().await;
}

/// R-VIEW-5: the disclosure log shows which organisations processed the citizen's data (not the
/// citizen's own logins); viewing it is itself audited.
async fn disclosure_log(backend: Backend) {
    let app = App::spawn(backend, Opts::default()).await;
    app.login_confirmed().await;
    let key = app
        .store
        .patient_key_for_hetu(&Hetu::parse(HETU).unwrap())
        .await
        .unwrap()
        .unwrap();
    let empty = app.get("/disclosures").await;
    assert!(
        empty.body.contains("Tietojasi ei ole käsitelty"),
        "{}",
        empty.body
    );
    let now = kanta_fhir::datetime::millis(app.clock.now());
    app.state
        .audit
        .commit(vec![AuditRecord {
            schema: kanta_domain::audit::AUDIT_SCHEMA,
            recorded_at: now,
            patient: Some(key),
            actor: kanta_domain::audit::Actor::Organisation {
                org: kanta_domain::ids::OrgId::new("org-hus"),
                client_id: "hus-ehr".into(),
                professional: None,
                purpose: Some("care".into()),
            },
            on_behalf_of: None,
            action: Action::Read,
            entities: vec!["Observation/1".into(), "Observation/2".into()],
            query: None,
            outcome: kanta_domain::audit::Outcome::Success,
            request_id: None,
            basis: None,
        }])
        .await
        .unwrap();
    let page = app.get("/disclosures").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("org-hus") && page.body.contains("Luki tietoja"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("<tr><td>").count(),
        1,
        "only the organisation's use: {}",
        page.body
    );
    let actions = app.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _)| *a == Action::AuditRead)
            .count(),
        2
    );
    // A long history pages back through the whole log: 60 more uses by the organisation, among
    // the citizen's own reads, which are not listed.
    let use_by = |org: &str, i: u64| AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: now + i as i64,
        patient: Some(key),
        actor: kanta_domain::audit::Actor::Organisation {
            org: kanta_domain::ids::OrgId::new(org),
            client_id: "hus-ehr".into(),
            professional: None,
            purpose: Some("care".into()),
        },
        on_behalf_of: None,
        action: Action::Search,
        entities: vec![],
        query: None,
        outcome: kanta_domain::audit::Outcome::Success,
        request_id: None,
        basis: None,
    };
    for i in 0..60 {
        let mut batch = vec![use_by("org-hus", i)];
        let mut own = use_by("org-hus", i);
        own.actor = kanta_domain::audit::Actor::Citizen { person: key };
        batch.push(own);
        app.state.audit.commit(batch).await.unwrap();
    }
    let first = app.get("/disclosures").await;
    assert_eq!(first.body.matches("<tr><td>").count(), 50, "{}", first.body);
    let older = between(&first.body, "<a href=\"/disclosures?before=", "\"");
    let second = app.get(&format!("/disclosures?before={older}")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        second.body.matches("<tr><td>").count(),
        11,
        "the rest, the first use included: {}",
        second.body
    );
    assert!(second.body.contains("Luki tietoja"));
    assert!(
        !second.body.contains("<a href=\"/disclosures?before="),
        "no older page: {}",
        second.body
    );
    assert_eq!(
        app.get("/disclosures?before=x").await.status,
        StatusCode::BAD_REQUEST
    );
    app.finish().await;
}

/// R-DOC-3…9 on the citizen's page: a provider's Bundle with one record per rule; the visits page
/// shows exactly what the rules allow, clinician text as text, and the page view is audited.
async fn visits_show_only_what_the_rules_allow(backend: Backend) {
    use serde_json::json;
    let app = App::spawn(backend, Opts::default()).await;
    let view =
        |code: &str| json!({"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": code}]});
    let composition = |title: &str, text: &str, meta: serde_json::Value| {
        json!({"resource": {
        "resourceType": "Composition", "status": "final", "meta": meta,
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}], "text": title},
        "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"},
        "date": "2026-11-20T09:30:00+02:00", "author": [{"display": "Lääkäri"}], "title": title,
        "section": [{"title": title, "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{text}</p></div>")}}]
    }, "request": {"method": "POST", "url": "Composition"}})
    };
    let mut other_person = view("YLE");
    other_person["security"] = json!([{"system": "urn:kanta:cs:security", "code": "other-person"}]);
    let mut delayed = view("166");
    delayed["extension"] = json!([{"url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing", "valueDateTime": "2099-01-01T00:00:00+02:00"}]);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{HETU}")}},
        {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2026-11-20T09:00:00+02:00"}, "reasonCode": [{"text": "Flunssa"}]},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": "urn:uuid:e2", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2026-10-01T09:00:00+02:00"}, "reasonCode": [{"text": "Peruttu"}]},
         "request": {"method": "POST", "url": "Encounter"}},
        composition("Vastaanotto", "Nuha &lt;script&gt;alert(1)&lt;/script&gt;", view("YLE")),
        composition("Salainen", "Toisen henkilön tietoja", other_person),
        composition(
            "Muotoiltu",
            "<b>Tärkeä</b><script>alert(2)</script><img src=\"x\" onerror=\"alert(3)\"/>",
            view("YLE"),
        ),
        {"resource": {"resourceType": "Observation", "status": "final", "meta": view("LAB"), "code": {"text": "P -CRP"},
         "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}, "effectiveDateTime": "2026-11-20T09:10:00+02:00",
         "valueQuantity": {"value": 142.0, "unit": "mg/L"}, "referenceRange": [{"low": {"value": 0.0}, "high": {"value": 10.0}}]},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "status": "final", "meta": {"tag": [{"system": "urn:kanta:cs:local-view", "code": "X"}]},
         "code": {"text": "Paikallinen mittaus"}, "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Condition", "meta": delayed, "code": {"text": "Viivästetty diagnoosi"},
         "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}},
         "request": {"method": "POST", "url": "Condition"}},
    ]});
    let (req, _) = kanta_web::bundle_write_request(clinician("org-hus"), bundle).unwrap();
    let _written = app.store.write(req, app.clock.now()).await.unwrap();
    app.login_confirmed().await;
    let page = app.get("/visits").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let b = &page.body;
    for shown in [
        "Flunssa",
        "Vastaanotto",
        "Nuha",
        "P -CRP",
        "142 mg/L",
        "viitealueen ulkopuolella",
        "Peruttu",
        "Käynnistä ei ole tallennettu",
    ] {
        assert!(b.contains(shown), "{shown} missing: {b}");
    }
    for hidden in ["Salainen", "Toisen henkilön", "Paikallinen", "Viivästetty"] {
        assert!(!b.contains(hidden), "{hidden} shown: {b}");
    }
    assert!(!b.contains("<script>alert"), "clinician text is text");
    assert!(b.contains("&lt;script&gt;"), "escaped: {b}");
    // Narrative markup is sanitized to the FHIR narrative subset: structure kept, nothing active.
    assert!(b.contains("<b>Tärkeä</b>"), "{b}");
    for gone in ["alert(2)", "onerror", "<img"] {
        assert!(!b.contains(gone), "{gone}: {b}");
    }
    let actions = app.audit_actions().await;
    assert!(
        actions.contains(&(Action::Search, Some("view=visits".into()))),
        "{actions:?}"
    );
    assert_eq!(
        app.get("/visits?after=junk").await.status,
        StatusCode::BAD_REQUEST
    );
    app.finish().await;
}

/// R-VIEW-2, R-ACT-12: each section lists the citizen's own records that the rules show, newest
/// first, twenty a page; the time and provider filters narrow it; the detail view names the unit
/// and its data protection officer; hidden and other people's records are "not found"; every page
/// is audited.
async fn sections_filter_page_and_detail(backend: Backend) {
    use serde_json::json;
    let app = App::spawn(backend, Opts::default()).await;
    let view = |code: &str| json!([{"system": "urn:oid:1.2.246.537.6.12.2002", "code": code}]);
    let lab = |i: usize, name: &str, mut meta: serde_json::Value| {
        meta["tag"] = view("LAB");
        json!({"resource": {"resourceType": "Observation", "status": "final", "meta": meta,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": name}, "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"},
            "effectiveDateTime": format!("2026-01-{i:02}T08:00:00+02:00"),
            "valueQuantity": {"value": 120.0 + i as f64, "unit": "g/L"}}, "request": {"method": "POST", "url": "Observation"}})
    };
    let patient = |hetu: &str| {
        json!({"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}]},
               "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}})
    };
    let encounter = json!({"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2026-01-01T07:00:00+02:00"}, "reasonCode": [{"text": "Kontrolli"}]},
        "request": {"method": "POST", "url": "Encounter"}});
    let mut entries = vec![
        json!({"resource": {"resourceType": "Organization", "id": "org-hus", "name": "HUS",
            "contact": [{"purpose": {"coding": [{"system": "urn:kanta:cs:contact-purpose", "code": "dpo"}]},
                         "name": {"text": "HUS tietosuojavastaava"},
                         "telecom": [{"system": "email", "value": "tietosuoja@hus.example.fi"}, {"system": "phone", "value": "+358 9 4711"}]}]},
               "request": {"method": "PUT", "url": "Organization/org-hus"}}),
        patient(HETU),
        encounter.clone(),
    ];
    for i in 1..=23 {
        entries.push(lab(i, &format!("Hb{i}"), json!({})));
    }
    let delayed = json!({"extension": [{"url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing",
        "valueDateTime": "2099-01-01T00:00:00+02:00"}]});
    let mut hidden = lab(24, "Viivästetty", delayed);
    hidden["resource"]["id"] = json!("lab-delayed");
    hidden["request"] = json!({"method": "PUT", "url": "Observation/lab-delayed"});
    entries.push(hidden);
    entries.push(json!({"resource": {"resourceType": "Immunization", "status": "completed", "meta": {"tag": view("ROK")},
        "vaccineCode": {"text": "Rokote <script>alert(1)</script>"}, "patient": {"reference": "urn:uuid:p"},
        "encounter": {"reference": "urn:uuid:e"}, "occurrenceDateTime": "2026-01-02T10:00:00+02:00"},
        "request": {"method": "POST", "url": "Immunization"}}));
    let write = |org: &str, entries: Vec<serde_json::Value>| {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        kanta_web::bundle_write_request(clinician(org), bundle)
            .unwrap()
            .0
    };
    let _ = app
        .store
        .write(write("org-hus", entries), app.clock.now())
        .await
        .unwrap();
    // Another unit, and another person.
    let other_unit = vec![
        // Joined the platform on 20 January (R-VIEW-8): its older records, archived later, stay
        // hidden.
        json!({"resource": {"resourceType": "Organization", "id": "org-tt", "name": "Terveystalo",
                            "extension": [{"url": "urn:kanta:ext:joined-kanta", "valueDate": "2026-01-20"}]},
               "request": {"method": "PUT", "url": "Organization/org-tt"}}),
        patient(HETU),
        encounter.clone(),
        lab(25, "TSH", json!({})),
        lab(5, "Vanha", json!({})),
    ];
    let _ = app
        .store
        .write(write("org-tt", other_unit), app.clock.now())
        .await
        .unwrap();
    let mut strangers = lab(26, "Vieras", json!({}));
    strangers["resource"]["id"] = json!("lab-stranger");
    strangers["request"] = json!({"method": "PUT", "url": "Observation/lab-stranger"});
    let _ = app
        .store
        .write(
            write("org-hus", vec![patient(DECEASED), encounter, strangers]),
            app.clock.now(),
        )
        .await
        .unwrap();

    app.login_confirmed().await;
    let hrefs = |body: &str| -> Vec<String> {
        body.match_indices("href=\"/records/lab/Observation/")
            .map(|(i, _)| between(&body[i..], "href=\"", "\""))
            .collect()
    };
    let first = app.get("/records/lab").await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "{} {}",
        first.body,
        first.location()
    );
    // Twenty rows a page, of which the delayed one is hidden by the rules.
    assert_eq!(hrefs(&first.body).len(), 19, "{}", first.body);
    assert!(
        first.body.contains("TSH") && first.body.contains("Hb23"),
        "newest first"
    );
    assert!(!first.body.contains("Viivästetty") && !first.body.contains("Vieras"));
    assert!(!first.body.contains("Vanha"), "before the unit joined");
    assert!(
        first
            .body
            .contains("<option value=\"org-tt\">Terveystalo</option>"),
        "{}",
        first.body
    );
    let next = between(&first.body, "<p><a href=\"/records/lab?after=", "\"");
    let second = app.get(&format!("/records/lab?after={next}")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(hrefs(&second.body).len(), 5, "{}", second.body);
    assert!(second.body.contains("Hb1<") && !second.body.contains("Hb23"));
    // Filters: provider; a time range with both days included.
    let tt = app.get("/records/lab?provider=org-tt").await;
    assert_eq!(hrefs(&tt.body).len(), 1);
    assert!(tt.body.contains("TSH"));
    let range = app
        .get("/records/lab?from=2026-01-10&to=2026-01-12&provider=")
        .await;
    let shown: Vec<&str> = ["Hb9<", "Hb10<", "Hb11<", "Hb12<", "Hb13<"]
        .into_iter()
        .filter(|h| range.body.contains(h))
        .collect();
    assert_eq!(shown, ["Hb10<", "Hb11<", "Hb12<"], "{}", range.body);
    let bad = app.get("/records/lab?from=10.1.2026").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("Päivämäärää ei voitu lukea"));
    let backwards = app.get("/records/lab?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(backwards.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get("/records/lab?after=junk").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.get("/records/nope").await.status, StatusCode::NOT_FOUND);
    // Other sections; text is text.
    let vacc = app.get("/records/vaccinations").await;
    assert!(
        vacc.body.contains("Rokote &#60;script&#62;"),
        "{}",
        vacc.body
    );
    assert!(app
        .get("/records/prescriptions")
        .await
        .body
        .contains("Sinulla ei ole voimassa olevia reseptejä"));
    // The detail view, with the data protection officer (R-ACT-12).
    let detail = app.get(&hrefs(&first.body)[1]).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    for want in [
        "Hb23",
        "HUS tietosuojavastaava",
        "mailto:tietosuoja@hus.example.fi",
        "+358 9 4711",
        "Kontrolli",
    ] {
        assert!(detail.body.contains(want), "{want}: {}", detail.body);
    }
    let tt_detail = app.get(&hrefs(&tt.body)[0]).await;
    assert!(
        tt_detail
            .body
            .contains("ei ole ilmoittanut tietosuojavastaavansa"),
        "{}",
        tt_detail.body
    );
    // Hidden, someone else's, or in another section: not found, alike.
    for path in [
        "/records/lab/Observation/lab-delayed",
        "/records/lab/Observation/lab-stranger",
        "/records/lab/Observation/nope",
        "/records/lab/Observation/a%20b",
    ] {
        assert_eq!(app.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        app.get(&hrefs(&first.body)[1].replace("/lab/", "/diagnoses/"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let actions = app.audit_actions().await;
    for want in [
        (Action::Search, Some("view=section:lab".to_string())),
        (Action::Read, Some("view=record:lab".to_string())),
    ] {
        assert!(actions.contains(&want), "{want:?}: {actions:?}");
    }
    // What is new: the newest shown records of every section.
    let front = app.get("/").await;
    assert!(
        front.body.contains("Uutta") && front.body.contains("TSH"),
        "{}",
        front.body
    );
    app.finish().await;
}

/// A test's writer storing data directly: a provider system writing its own records, with the
/// operator's role for the registry entries (organisations) those records refer to.
/// The Prescription Centre of these tests: three packages in one substitution group and one other.
fn test_centre() -> kanta_store::centre::Centre {
    let text = "# kanta-medicines 1\n# valid-from: 2026-01-01\n\
VNR;NAME;STRENGTH;FORM;PACKAGE_SIZE;UNIT;ATC;SUBSTITUTION_GROUP;PRICE_EUR;REIMBURSEMENT;STATUS\n\
401011;Atorvastatin Pohjola;20 mg;tabletti;30;tabl;C10AA05;1201;6,45;40;R\n\
401021;Atorvastatin Kaamos;20 mg;tabletti;30;tabl;C10AA05;1201;5,80;40;R\n\
409011;Varfariini Revontuli;3 mg;tabletti;100;tabl;B01AA03;;8,25;40;R\n";
    kanta_store::centre::Centre {
        medicines: kanta_domain::medicines::Database::new(vec![kanta_domain::medicines::parse(
            text,
        )
        .unwrap()]),
        reservation_ms: 3_600_000,
        controller: Some("org-kanta-operator".into()),
    }
}

/// The audit frame of a provider system's write or read in these tests.
fn system_access(
    app: &App,
    who: &kanta_domain::access::Principal,
    action: Action,
) -> kanta_store::audit::Access {
    kanta_store::audit::Access {
        actor: kanta_domain::audit::Actor::Organisation {
            org: who.org().unwrap().clone(),
            client_id: "test".into(),
            professional: None,
            purpose: Some("care".into()),
        },
        on_behalf_of: None,
        action,
        query: None,
        request_id: None,
        now_ms: kanta_fhir::datetime::millis(app.clock.now()),
        subject: None,
    }
}

/// Write as `who` through the store with the Prescription Centre, audited as the system's write.
async fn write_rx(
    app: &App,
    who: kanta_domain::access::Principal,
    bundle: serde_json::Value,
) -> Vec<kanta_store::Written> {
    let access = system_access(app, &who, Action::Create);
    let (mut req, _) = kanta_web::bundle_write_request(who, bundle).unwrap();
    req.centre = app.state.centre.clone();
    let committed = app
        .store
        .write_audited(req, app.clock.now(), &access)
        .await
        .unwrap();
    app.state.audit.settle(committed, &access).await.unwrap().1
}

/// The patient's tasks as the unit's system reads them (its own queue), through the decision.
async fn tasks_as(
    app: &App,
    who: &kanta_domain::access::Principal,
    pid: &str,
) -> Vec<(String, serde_json::Value)> {
    let sealed = app
        .store
        .search(&kanta_store::SearchQuery {
            resource_type: "Task".into(),
            patient: app.store.patient_key_of(pid).await.unwrap(),
            identifier: None,
            ascending: false,
            count: 10,
            after: None,
        })
        .await
        .unwrap();
    let access = system_access(app, who, Action::Search);
    let now_ms = kanta_fhir::datetime::millis(app.clock.now());
    let action =
        kanta_domain::access::Action::fhir(kanta_domain::access::Interaction::Search, "Task");
    let (_, page) = app
        .state
        .audit
        .release(sealed, &access, |subjects| {
            subjects
                .iter()
                .map(|s| {
                    kanta_domain::access::decide(
                        who,
                        &action,
                        s.target(),
                        &Default::default(),
                        now_ms,
                    )
                })
                .collect()
        })
        .await
        .unwrap();
    page.resources
        .into_iter()
        .map(|f| (f.id.clone(), f.to_value()))
        .collect()
}

/// Issue 13, R-VIEW-1, R-DOC-10, R-DOC-11, R-ACT-1, R-ACT-11: the citizen's prescriptions page —
/// what remains, the dispensation with its pharmacy and price, the renewal button only where
/// allowed, a renewal request sent and answered, a prescription cancelled for a technical error
/// not shown, a cancelled dispensation not shown, the printable sheet; in Finnish and Swedish.
async fn prescriptions_page_and_renewal(backend: Backend) {
    use serde_json::json;
    let app = App::spawn(backend, Opts::default()).await;
    let today = kanta_fhir::datetime::helsinki(kanta_fhir::datetime::millis(app.clock.now()))
        .unwrap()
        .date();
    let day = |ago: i64| kanta_fhir::datetime::format_date(today - time::Duration::days(ago));
    let operator = clinician("org-kanta-operator");
    for (id, name) in [
        ("org-hus", "HUS"),
        ("org-tays", "TAYS"),
        ("org-apteekki", "Kampin apteekki"),
        ("org-kanta-operator", "Kanta"),
    ] {
        write_rx(
            &app,
            operator.clone(),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Organization", "id": id, "name": name},
                 "request": {"method": "PUT", "url": format!("Organization/{id}")}}]}),
        )
        .await;
    }
    let rx = |vnr: &str, dose: &str, extra: serde_json::Value| {
        let mut r = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "urn:uuid:p"}, "authoredOn": day(30),
            "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": vnr}]},
            "dosageInstruction": [{"text": dose}],
            "dispenseRequest": {"quantity": {"value": 3, "code": "{package}", "system": "http://unitsofmeasure.org"}}});
        if let (Some(o), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        json!({"resource": r, "request": {"method": "POST", "url": "MedicationRequest"}})
    };
    let written = write_rx(
        &app,
        clinician("org-hus"),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{HETU}")}},
            rx("401011", "1 tabletti illalla", json!({})),
            rx("409011", "INR-arvon mukaan", json!({"extension": [{"url": "urn:kanta:ext:renewal-prohibited", "valueBoolean": true}]})),
            rx("401021", "Väärä resepti", json!({})),
        ]}),
    )
    .await;
    let ids: Vec<String> = written
        .iter()
        .filter(|w| w.stored.resource_type == "MedicationRequest")
        .map(|w| w.stored.id.clone())
        .collect();
    let pid = written[0].stored.id.clone();
    // The third is cancelled for a technical error: never shown (R-DOC-10).
    let mut wrong = written[3].stored.body.clone();
    wrong["status"] = json!("cancelled");
    wrong["statusReason"] = json!({"coding": [{"system": "urn:kanta:cs:prescription-cancellation", "code": "technical-error"}]});
    write_rx(
        &app,
        clinician("org-hus"),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": wrong, "request": {"method": "PUT", "url": format!("MedicationRequest/{}", ids[2])}}]}),
    )
    .await;
    // The pharmacy dispenses one package of the substitute, and one more that it cancels (R-DOC-11).
    let pharmacy = kanta_domain::access::Principal::system(
        "test-apteekki",
        &kanta_domain::ids::OrgId::new("org-apteekki"),
        &[kanta_domain::ids::ClientRole::Pharmacy],
    );
    let md = |n: u32| {
        json!({"resource": {"resourceType": "MedicationDispense", "status": "completed",
        "subject": {"reference": format!("Patient/{pid}")},
        "authorizingPrescription": [{"reference": format!("MedicationRequest/{}", ids[0])}],
        "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": "401021"}]},
        "quantity": {"value": n, "code": "{package}"}, "whenHandedOver": format!("{}T10:00:00+02:00", day(2))},
        "request": {"method": "POST", "url": "MedicationDispense"}})
    };
    write_rx(
        &app,
        pharmacy.clone(),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [md(1)]}),
    )
    .await;
    let second = write_rx(
        &app,
        pharmacy.clone(),
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [md(1)]}),
    )
    .await;
    let mut cancel = second[0].stored.body.clone();
    cancel["status"] = json!("cancelled");
    write_rx(&app, pharmacy, json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": cancel, "request": {"method": "PUT", "url": format!("MedicationDispense/{}", second[0].stored.id)}}]})).await;

    let csrf = app.login_confirmed().await;
    let page = app.get("/records/prescriptions").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let b = &page.body;
    for shown in [
        "Atorvastatin Pohjola 20 mg",
        "1 tabletti illalla",
        "60 tabl / 90 tabl",
        "Kampin apteekki",
        "Atorvastatin Kaamos 20 mg",
        "5,80 € (hintaero −0,65 €)",
        "Varfariini Revontuli",
        "Lääkäri on kieltänyt reseptin uusimisen.",
    ] {
        assert!(b.contains(shown), "{shown} missing: {b}");
    }
    assert!(
        !b.contains("Väärä resepti"),
        "cancelled for a technical error: {b}"
    );
    assert_eq!(
        b.matches("5,80 €").count(),
        1,
        "the cancelled dispensation is not shown: {b}"
    );
    // The renewal button for the first only (the second prohibits renewal).
    assert_eq!(
        b.matches("name=\"kind\" value=\"renewal\"").count(),
        1,
        "{b}"
    );
    assert!(b.contains(&format!("/records/prescriptions/{}/request", ids[0])));
    // Without the page's token nothing is sent; a request the page does not offer is refused.
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[0]),
            &[("csrf", "x"), ("kind", "renewal")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[1]),
            &[("csrf", &csrf), ("kind", "renewal")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[2]),
            &[("csrf", &csrf), ("kind", "renewal")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a hidden prescription is not there: {}",
        r.body
    );
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[0]),
            &[("csrf", &csrf), ("kind", "renewal")],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (
            StatusCode::SEE_OTHER,
            "/records/prescriptions?done=renewal".to_string()
        ),
        "{}",
        r.body
    );
    let page = app.get("/records/prescriptions?done=renewal").await;
    assert!(
        page.body.contains("Uusimispyyntö on lähetetty"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Uusimispyyntö,"), "{}", page.body);
    assert!(
        page.body.contains("<strong>lähetetty</strong>"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("value=\"renewal\"").count(),
        0,
        "one request at a time"
    );
    // The unit's system answers: renewed.
    let tasks = tasks_as(&app, &clinician("org-hus"), &pid).await;
    assert_eq!(tasks.len(), 1);
    let task = tasks[0].1.clone();
    assert_eq!(task["owner"]["reference"], json!("Organization/org-hus"));
    let renewed = write_rx(&app, clinician("org-hus"), json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        rx("401011", "1 tabletti illalla (uusittu)", json!({"subject": {"reference": format!("Patient/{pid}")}, "authoredOn": day(0)}))]})).await;
    let mut answer = task.clone();
    answer["status"] = json!("completed");
    answer["output"] = json!([{"type": {"text": "renewed"}, "valueReference": {"reference": format!("MedicationRequest/{}", renewed[0].stored.id)}}]);
    write_rx(&app, clinician("org-hus"), json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": answer, "request": {"method": "PUT", "url": format!("Task/{}", tasks[0].0)}}]})).await;
    let page = app.get("/records/prescriptions").await;
    assert!(
        page.body.contains("<strong>käsitelty</strong>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("1 tabletti illalla (uusittu)"),
        "{}",
        page.body
    );
    // A renewal of the renewed prescription to another unit the citizen chooses (R-ACT-11); a unit
    // the page does not offer is refused.
    let renewed_id = renewed[0].stored.id.clone();
    let page = app.get("/records/prescriptions").await;
    assert!(
        page.body
            .contains("<option value=\"org-tays\">TAYS</option>"),
        "{}",
        page.body
    );
    let r = app
        .post(
            &format!("/records/prescriptions/{renewed_id}/request"),
            &[
                ("csrf", &csrf),
                ("kind", "renewal"),
                ("unit", "org-nowhere"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = app
        .post(
            &format!("/records/prescriptions/{renewed_id}/request"),
            &[("csrf", &csrf), ("kind", "renewal"), ("unit", "org-tays")],
        )
        .await;
    assert_eq!(
        r.location(),
        "/records/prescriptions?done=renewal",
        "{}",
        r.body
    );
    let tays = tasks_as(&app, &clinician("org-tays"), &pid).await;
    assert_eq!(tays.len(), 1, "in the chosen unit's queue: {tays:?}");
    assert_eq!(
        tays[0].1["owner"]["reference"],
        json!("Organization/org-tays")
    );
    // A review request goes to the controller's queue (R-ACT-12), once.
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[1]),
            &[("csrf", &csrf), ("kind", "review")],
        )
        .await;
    assert_eq!(
        r.location(),
        "/records/prescriptions?done=review",
        "{}",
        r.body
    );
    let queue = tasks_as(&app, &clinician("org-kanta-operator"), &pid).await;
    assert_eq!(queue.len(), 1, "the operator's queue: {queue:?}");
    assert_eq!(
        queue[0].1["code"]["coding"][0]["code"],
        json!("review-request")
    );
    let r = app
        .post(
            &format!("/records/prescriptions/{}/request", ids[1]),
            &[("csrf", &csrf), ("kind", "review")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "not offered twice: {}",
        r.body
    );
    // The printable sheet; another id is not found.
    let sheet = app.get(&format!("/records/prescriptions/{}", ids[0])).await;
    assert_eq!(sheet.status, StatusCode::OK, "{}", sheet.body);
    assert!(
        sheet.body.contains("Reseptin potilasohje") && sheet.body.contains("1 tabletti illalla")
    );
    assert_eq!(
        app.get(&format!("/records/prescriptions/{}", ids[2]))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // In Swedish.
    let r = app
        .post(
            "/lang",
            &[
                ("csrf", &csrf),
                ("lang", "sv"),
                ("return", "/records/prescriptions"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let sv = app.get("/records/prescriptions").await;
    assert!(
        sv.body.contains("Giltiga recept") && sv.body.contains("Expedieringar från apotek"),
        "{}",
        sv.body
    );
    let actions = app.audit_actions().await;
    assert!(
        actions.contains(&(Action::Search, Some("view=section:prescriptions".into()))),
        "{actions:?}"
    );
    assert!(
        actions.contains(&(Action::Create, Some("function=renewal-request".into()))),
        "{actions:?}"
    );
    app.finish().await;
}

fn clinician(org: &str) -> kanta_domain::access::Principal {
    use kanta_domain::ids::ClientRole;
    kanta_domain::access::Principal::system(
        &format!("test-{org}"),
        &kanta_domain::ids::OrgId::new(org),
        &[ClientRole::Clinician, ClientRole::Operator],
    )
}

/// R-OPS-3, R-MINOR-1: a guardian's switch to a child is audited with both persons before it takes
/// effect — if that record cannot be written there is no switch (the old session goes on, acting
/// for nobody) — and every page viewed while acting records both; the switch gives a new session
/// id (the old one ends); the way back is audited too. On SQLite and PostgreSQL.
async fn acting_for_a_child_is_audited_or_refused(backend: Backend) {
    use kanta_domain::audit::Actor;
    use kanta_domain::population::{Relation, RelationKind};
    use serde_json::json;
    use std::sync::atomic::Ordering::SeqCst;
    let app = App::spawn(backend, Opts::default()).await;
    // A child of Testi Henkilö's (the "ok" account), born six years ago, with one visit.
    let today = app.clock.now().date();
    let born = today.replace_year(today.year() - 6).unwrap_or(today);
    let child = Hetu::from_parts(born, if born.year() >= 2000 { 'A' } else { '-' }, 906).unwrap();
    let me = Hetu::parse(HETU).unwrap();
    app.store
        .import_population(
            &[PersonRecord {
                person: Person {
                    hetu: child.clone(),
                    family_name: "Henkilö".into(),
                    given_names: "Lapsi".into(),
                    birth_date: born,
                    deceased: None,
                    non_disclosure: false,
                },
                relations: vec![Relation {
                    kind: RelationKind::Guardian,
                    subject: child.clone(),
                    holder: me,
                    start: None,
                    end: None,
                    custody: None,
                }],
            }],
            app.clock.now(),
        )
        .await
        .unwrap();
    let c = child.as_str();
    let visit = kanta_fhir::datetime::format_date(today - time::Duration::days(30));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": c}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{c}")}},
        {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "urn:uuid:p"}, "period": {"start": visit}, "reasonCode": [{"text": "Korvatulehdus"}]},
         "request": {"method": "POST", "url": "Encounter"}},
    ]});
    let (req, _) = kanta_web::bundle_write_request(clinician("org-hus"), bundle).unwrap();
    let _written = app.store.write(req, app.clock.now()).await.unwrap();
    app.login_confirmed().await;
    let list = app.get("/act-for").await;
    assert!(list.body.contains("Lapsi Henkilö"), "{}", list.body);
    let csrf = list.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("via", "register"),
        ("person", child.as_str()),
    ];
    let faults = app.state.audit.faults();
    let before = app.store.audit_head().await.unwrap().0;
    faults.at.store(faults.batches() + 1, SeqCst);
    let r = app.post("/act-for", &form).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(app.store.audit_head().await.unwrap().0, before);
    // No switch: the session goes on as before, for oneself.
    let front = app.get("/").await;
    assert!(!front.body.contains("Lapsi Henkilö"), "{}", front.body);
    faults.at.store(0, SeqCst);
    let old_session = {
        let r = app.get("/act-for").await;
        r.csrf()
    };
    let r = app
        .post(
            "/act-for",
            &[
                ("csrf", old_session.as_str()),
                ("via", "register"),
                ("person", child.as_str()),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/".to_string()),
        "{}",
        r.body
    );
    assert!(r.set_cookie("kanta_session").is_some(), "a new session id");
    let visits = app.get("/visits").await;
    assert!(visits.body.contains("Korvatulehdus"), "{}", visits.body);
    assert!(visits
        .body
        .contains("Katselet henkilön Lapsi Henkilö tietoja"));
    // The old session's CSRF token (and so its session) no longer works.
    let stale = app
        .post("/act-for/self", &[("csrf", old_session.as_str())])
        .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    let back = app.get("/act-for").await.csrf();
    let r = app.post("/act-for/self", &[("csrf", back.as_str())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!app.get("/visits").await.body.contains("Korvatulehdus"));
    // The audit log: the switch and the page name both persons; so does the way back.
    let me_key = app
        .store
        .patient_key_for_hetu(&Hetu::parse(HETU).unwrap())
        .await
        .unwrap()
        .unwrap();
    let child_key = app
        .store
        .patient_key_for_hetu(&child)
        .await
        .unwrap()
        .unwrap();
    let (size, _) = app.store.audit_head().await.unwrap();
    let records: Vec<AuditRecord> = app
        .store
        .audit_range(0, size)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let switch = records
        .iter()
        .find(|r| r.action == Action::SwitchActingFor && r.on_behalf_of == Some(child_key))
        .expect("the switch is audited");
    assert_eq!(switch.actor, Actor::Citizen { person: me_key });
    assert_eq!(switch.patient, Some(child_key));
    assert_eq!(
        switch.basis.as_ref().map(|b| b.ground),
        Some(kanta_domain::access::Ground::Guardian)
    );
    let page = records
        .iter()
        .find(|r| {
            r.action == Action::Search
                && r.query.as_deref() == Some("view=visits")
                && r.patient == Some(child_key)
        })
        .expect("the page viewed for the child is audited");
    assert_eq!(
        (page.actor.clone(), page.on_behalf_of),
        (Actor::Citizen { person: me_key }, Some(child_key))
    );
    assert!(records.iter().any(|r| r.action == Action::SwitchActingFor
        && r.on_behalf_of.is_none()
        && r.query
            .as_deref()
            .is_some_and(|q| q.starts_with("reason=back-to-self"))));
    app.finish().await;
}

#[tokio::test]
async fn acting_for_a_child_is_audited_or_refused_sqlite() {
    acting_for_a_child_is_audited_or_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn acting_for_a_child_is_audited_or_refused_postgres() {
    acting_for_a_child_is_audited_or_refused(Backend::Postgres).await;
}

/// R-OPS-3: the audit log failing closes everything that would release personal data — the login
/// (no session without its record), every records page, a record's detail, the disclosure log —
/// and what does open shows no record; when the log works again, so does the portal.
async fn an_audit_failure_closes_the_login_and_every_page(backend: Backend) {
    use serde_json::json;
    use std::sync::atomic::Ordering::SeqCst;
    let mut app = App::spawn(backend, Opts::default()).await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{HETU}")}},
        {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2026-11-20T09:00:00+02:00"}, "reasonCode": [{"text": "Salaisuus"}]},
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {"resourceType": "Observation", "status": "final",
         "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}]}, "code": {"text": "P -Salainen"},
         "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}, "effectiveDateTime": "2026-11-20T09:10:00+02:00",
         "valueQuantity": {"value": 1.0, "unit": "mg/L"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]});
    let (req, _) = kanta_web::bundle_write_request(clinician("org-hus"), bundle).unwrap();
    let _written = app.store.write(req, app.clock.now()).await.unwrap();
    let audit = app.state.audit.clone();
    let faults = audit.faults();
    // The login: the log fails at the login's record → no session.
    faults.from.store(faults.batches() + 1, SeqCst);
    let cb = app.login("ok").await;
    assert_eq!(cb.status, StatusCode::SERVICE_UNAVAILABLE, "{}", cb.body);
    assert!(cb.set_cookie("kanta_session").is_none());
    assert!(!app.get("/").await.body.contains("Hei, Testi"));
    faults.from.store(0, SeqCst);
    app.new_browser();
    app.login_confirmed().await;
    let lab = app.get("/records/lab").await;
    let detail = format!(
        "/records/lab/Observation/{}",
        between(&lab.body, "href=\"/records/lab/Observation/", "\"")
    );
    assert!(
        app.get(&detail).await.body.contains("P -Salainen"),
        "{}",
        lab.body
    );
    for path in [
        "/visits",
        "/records/lab",
        detail.as_str(),
        "/disclosures",
        "/",
    ] {
        faults.from.store(faults.batches() + 1, SeqCst);
        let r = app.get(path).await;
        faults.from.store(0, SeqCst);
        assert!(
            !r.body.contains("Salaisuus") && !r.body.contains("P -Salainen"),
            "{path} released data without its record"
        );
        if path == "/" {
            // The front page opens, without what is new.
            assert_eq!(r.status, StatusCode::OK, "{path}");
        } else {
            assert_eq!(
                r.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{path}: {}",
                r.body
            );
        }
        // And with the log back, the page works.
        let again = app.get(path).await;
        assert_eq!(
            again.status,
            StatusCode::OK,
            "{path} after the log recovered"
        );
    }
    assert!(app.get("/visits").await.body.contains("Salaisuus"));
    app.finish().await;
}

/// The display rules end to end, through the store and the portal (issue 17): R-DOC-3 only the
/// latest version of a document is shown, and a cancelled latest version hides the whole document;
/// R-DOC-4 a delay hides a record until it ends, and then it shows without any write; R-DOC-7
/// from ward care only summaries; R-DOC-8 a form-archived document is not shown.
async fn display_rules_end_to_end(backend: Backend) {
    use serde_json::json;
    let app = App::spawn(backend, Opts::default()).await;
    let me = format!("Patient?identifier=urn:oid:1.2.246.21|{HETU}");
    let yle = json!([{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "YLE"}]);
    let comp = |id: &str,
                enc: &str,
                title: &str,
                text: &str,
                loinc: &str,
                status: &str,
                extra_tag: Option<serde_json::Value>| {
        let mut tags = yle.as_array().unwrap().clone();
        if let Some(t) = extra_tag {
            tags.push(t);
        }
        json!({"resource": {"resourceType": "Composition", "id": id, "status": status, "meta": {"tag": tags},
            "type": {"coding": [{"system": "http://loinc.org", "code": loinc}], "text": title},
            "subject": {"reference": me}, "encounter": {"reference": format!("Encounter/{enc}")},
            "date": "2026-11-20T09:30:00+02:00", "author": [{"display": "Lääkäri"}], "title": title,
            "section": [{"title": title, "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{text}</p></div>")}}]},
            "request": {"method": "PUT", "url": format!("Composition/{id}")}})
    };
    let delay_ends = app.clock.now() + time::Duration::hours(1);
    let delay = delay_ends
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let first = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{HETU}")}},
        {"resource": {"resourceType": "Encounter", "id": "e2e-out", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": me}, "period": {"start": "2026-11-20T09:00:00+02:00"}, "reasonCode": [{"text": "Avokäynti"}]},
         "request": {"method": "PUT", "url": "Encounter/e2e-out"}},
        {"resource": {"resourceType": "Encounter", "id": "e2e-ward", "status": "finished", "class": {"code": "IMP"},
         "subject": {"reference": me}, "period": {"start": "2026-10-01T09:00:00+02:00", "end": "2026-10-05T12:00:00+02:00"}, "reasonCode": [{"text": "Osastojakso"}]},
         "request": {"method": "PUT", "url": "Encounter/e2e-ward"}},
        comp("e2e-ver", "e2e-out", "Versioitu", "Ensimmäinen versio", "11506-3", "final", None),
        comp("e2e-cancel", "e2e-out", "Peruttava", "Väärälle potilaalle", "11506-3", "final", None),
        comp("e2e-form", "e2e-out", "Lomake", "Lomakkeen sisältö", "11506-3", "final", Some(json!({"system": "urn:kanta:cs:document-form", "code": "form"}))),
        comp("e2e-ward-note", "e2e-ward", "Osastomerkintä", "Hoitajan yövuoro", "11506-3", "final", None),
        comp("e2e-summary", "e2e-ward", "Epikriisi", "Kotiutettu hyvässä kunnossa", "18842-5", "final", None),
        {"resource": {"resourceType": "Observation", "id": "e2e-delayed", "status": "final",
         "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}],
                  "extension": [{"url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing", "valueDateTime": delay}]},
         "code": {"text": "P -Viivästetty"}, "subject": {"reference": me}, "encounter": {"reference": "Encounter/e2e-out"},
         "effectiveDateTime": "2026-11-20T09:10:00+02:00", "valueQuantity": {"value": 5.0, "unit": "mg/L"}},
         "request": {"method": "PUT", "url": "Observation/e2e-delayed"}},
    ]});
    let (req, _) = kanta_web::bundle_write_request(clinician("org-hus"), first).unwrap();
    let _w = app.store.write(req, app.clock.now()).await.unwrap();
    // A second version of one document; the latest version of another cancelled.
    let second = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        comp("e2e-ver", "e2e-out", "Versioitu", "Toinen versio", "11506-3", "final", None),
        comp("e2e-cancel", "e2e-out", "Peruttava", "Väärälle potilaalle", "11506-3", "entered-in-error", None),
    ]});
    let (req, _) = kanta_web::bundle_write_request(clinician("org-hus"), second).unwrap();
    let _w = app.store.write(req, app.clock.now()).await.unwrap();
    app.login_confirmed().await;
    let page = app.get("/visits").await;
    let b = &page.body;
    assert_eq!(page.status, StatusCode::OK);
    for shown in [
        "Avokäynti",
        "Toinen versio",
        "Osastojakso",
        "Kotiutettu hyvässä kunnossa",
    ] {
        assert!(b.contains(shown), "{shown} missing: {b}");
    }
    for hidden in [
        "Ensimmäinen versio", // R-DOC-3: an earlier version
        "Peruttava",          // R-DOC-3: cancelled latest version, whole document
        "Väärälle potilaalle",
        "Lomakkeen sisältö", // R-DOC-8
        "Hoitajan yövuoro",  // R-DOC-7: ward notes
        "P -Viivästetty",    // R-DOC-4: still delayed
    ] {
        assert!(!b.contains(hidden), "{hidden} shown: {b}");
    }
    assert!(!app
        .get("/records/lab")
        .await
        .body
        .contains("P -Viivästetty"));
    // The delay ends: shown without any write.
    // (In steps the idle timeout allows, the session kept alive by "continue".)
    for _ in 0..3 {
        app.clock.advance(time::Duration::minutes(25));
        let csrf = app.get("/").await.csrf();
        let r = app.post("/session/continue", &[("csrf", &csrf)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    let page = app.get("/visits").await;
    assert!(page.body.contains("P -Viivästetty"), "{}", page.body);
    assert!(app
        .get("/records/lab")
        .await
        .body
        .contains("P -Viivästetty"));
    app.finish().await;
}

/// The provider's test controls (its session forgotten or remembered).
async fn idp_control(app: &App, what: &str) {
    let r = app
        .http
        .post(format!("{}/test-control/{what}", app.idp))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// The query parameters of a URL.
fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The session row behind the browser's session cookie, as the callback set it.
async fn session_of(app: &App, callback: &Page) -> Option<kanta_store::SessionRow> {
    let id = callback
        .set_cookie("kanta_session")
        .expect("a session cookie");
    app.store.session_get(&hash(&id)).await.unwrap()
}

/// R-AUTH-1 under the FTN profile (Traficom 213/2023 S) against a provider that enforces it:
/// private_key_jwt, a signed request object (signed with the second, newly active key while both
/// are published), the ID token and userinfo signed and encrypted to our keys, the person's
/// attributes only in userinfo; then "continue" checked with prompt=none (R-AUTH-5): alive → the
/// session goes on; ended at the provider → ours ends with a message; front-channel logout by
/// `iss` and `sid`; RP-initiated logout with the decrypted ID token as the hint.
async fn ftn_profile_flow(backend: Backend) {
    let keys = ftn_keys();
    let app = App::spawn(
        backend,
        Opts {
            ftn: Some(("ftn", RequestMode::Signed)),
            check_provider_session: true,
            ..Opts::default()
        },
    )
    .await;
    // Our keys, published for the broker: two for signing, two for encryption, no private parts.
    let jwks: serde_json::Value = app
        .http
        .get(app.url("/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let published = jwks["keys"].as_array().unwrap();
    assert_eq!(published.len(), 4, "{jwks}");
    assert!(published
        .iter()
        .all(|k| k.get("d").is_none() && k["kty"] == "RSA"));
    assert_eq!(published.iter().filter(|k| k["use"] == "enc").count(), 2);

    app.clock.catch_up();
    app.choose_account("ok").await;
    let first = app.get("/login").await;
    let q = query_of(&first.location());
    assert!(
        q.contains_key("request") && !q.contains_key("nonce") && !q.contains_key("state"),
        "{q:?}"
    );
    let header = jsonwebtoken::decode_header(&q["request"]).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        keys.active_kid(),
        "signed with the key in use"
    );
    assert_eq!(header.typ.as_deref(), Some("oauth-authz-req+jwt"));
    assert_eq!(
        header.kid.as_deref(),
        published[1]["kid"].as_str(),
        "the second, rotated-in key"
    );
    let cb_url = app.follow_to_callback(&first.location()).await;
    let cb = app.get(&cb_url).await;
    assert_eq!(
        (cb.status, cb.location()),
        (StatusCode::SEE_OTHER, "/confirm".to_string()),
        "{}",
        cb.body
    );
    let row = session_of(&app, &cb).await.unwrap();
    assert!(row.idp_sid.is_some(), "the provider's session id is kept");
    // The hint kept is the signed token inside the encrypted one.
    assert_eq!(row.id_token.as_deref().unwrap().split('.').count(), 3);
    let csrf = app.confirm().await;

    // Continue while the provider's session lives: a silent round trip, then the page asked for.
    let r = app
        .post(
            "/session/continue",
            &[("csrf", &csrf), ("return", "/visits")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let q = query_of(&r.location());
    let claims: serde_json::Value = {
        use base64::Engine as _;
        let body = q["request"].split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(claims["prompt"], "none", "a silent request: {claims}");
    // Our decrypted ID token (it holds the HETU) never rides in a readable request.
    assert!(claims.get("id_token_hint").is_none(), "{claims}");
    let back = app.follow_to_callback(&r.location()).await;
    let done = app.get(&back).await;
    assert_eq!(
        (done.status, done.location()),
        (StatusCode::SEE_OTHER, "/visits".to_string()),
        "{}",
        done.body
    );
    assert!(app.get("/").await.body.contains("Hei, Testi Henkilö"));

    // The provider's session ends; continue finds that out and ends ours, saying so.
    idp_control(&app, "forget-sessions").await;
    let r = app
        .post("/session/continue", &[("csrf", &csrf), ("return", "/")])
        .await;
    let back = app.follow_to_callback(&r.location()).await;
    assert!(
        query_of(&back)
            .get("error")
            .is_some_and(|e| e == "login_required"),
        "{back}"
    );
    let ended = app.get(&back).await;
    assert!(
        ended
            .body
            .contains("Istuntosi tunnistuspalvelussa on päättynyt"),
        "{}",
        ended.body
    );
    assert!(!app.get("/").await.body.contains("Hei, Testi"));
    assert!(app
        .audit_actions()
        .await
        .contains(&(Action::Logout, Some("reason=provider-session-ended".into()))));
    idp_control(&app, "remember-sessions").await;

    // Front-channel logout: framed by the provider, no cookie of ours; by iss and sid.
    let cb = app.login("ok").await;
    assert_eq!(cb.status, StatusCode::SEE_OTHER, "{}", cb.body);
    let row = session_of(&app, &cb).await.unwrap();
    let sid = row.idp_sid.clone().unwrap();
    let framed = browser();
    let front_channel = |iss: &str| {
        format!(
            "{}/auth/frontchannel-logout?{}",
            app.base,
            serde_urlencoded_pairs(&[("iss", iss), ("sid", &sid)])
        )
    };
    let r = framed
        .get(front_channel("https://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        app.store.session_get(&row.id_hash).await.unwrap().is_some(),
        "another issuer ends nothing"
    );
    let r = framed
        .get(front_channel(&app.idp))
        .header("sec-fetch-dest", "iframe")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("frame-ancestors {}", app.idp)),
        "{csp}"
    );
    assert!(r.headers().get("x-frame-options").is_none());
    assert_eq!(r.headers()["pragma"], "no-cache");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("<main><h1>Olet kirjautunut ulos</h1></main>"),
        "{body}"
    );
    assert!(
        app.store.session_get(&row.id_hash).await.unwrap().is_none(),
        "front-channel logout ended it"
    );
    // Every other page still refuses to be framed.
    assert!(app.get("/").await.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));

    // RP-initiated logout names us, not the decrypted ID token (it holds the HETU), in the URL.
    app.login_confirmed().await;
    let csrf = app.get("/").await.csrf();
    let out = app.post("/logout", &[("csrf", &csrf)]).await;
    let q = query_of(&out.location());
    assert!(
        !q.contains_key("id_token_hint") && q["client_id"] == "ftn",
        "{q:?}"
    );
    assert!(!out.location().contains(HETU));
    app.finish().await;
}

fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse("x:/").unwrap();
    u.query_pairs_mut().extend_pairs(pairs);
    u.query().unwrap_or_default().to_string()
}

/// R-AUTH-1: a pushed authorization request (PAR) where the provider requires it, and a response
/// encrypted to our second encryption key (both published: either is decrypted).
async fn ftn_pushed_request_and_second_key(backend: Backend) {
    for (client, mode) in [
        ("ftn-par", RequestMode::Pushed),
        ("ftn-second-key", RequestMode::Signed),
    ] {
        let app = App::spawn(
            backend,
            Opts {
                ftn: Some((client, mode)),
                check_provider_session: true,
                ..Opts::default()
            },
        )
        .await;
        app.clock.catch_up();
        app.choose_account("ok").await;
        let first = app.get("/login").await;
        let q = query_of(&first.location());
        if mode == RequestMode::Pushed {
            assert!(
                q["request_uri"].starts_with("urn:ietf:params:oauth:request_uri:")
                    && !q.contains_key("request"),
                "{q:?}"
            );
        }
        let cb = app
            .get(&app.follow_to_callback(&first.location()).await)
            .await;
        assert_eq!(cb.status, StatusCode::SEE_OTHER, "{client}: {}", cb.body);
        let csrf = app.confirm().await;
        if mode == RequestMode::Pushed {
            // A silent check is pushed too; the hint travels server to server only.
            let r = app
                .post(
                    "/session/continue",
                    &[("csrf", &csrf), ("return", "/visits")],
                )
                .await;
            assert!(
                query_of(&r.location()).contains_key("request_uri"),
                "{}",
                r.location()
            );
            let done = app.get(&app.follow_to_callback(&r.location()).await).await;
            assert_eq!(done.location(), "/visits", "{}", done.body);
        }
        app.finish().await;
    }
}

/// R-AUTH-1 under the FTN profile: each way a provider's answer can fall short, refused with its
/// own translated message, audited, and no session made.
async fn ftn_refusals(backend: Backend) {
    for (client, text, reason) in [
        ("ftn-plain", "salaamattomina", "not-encrypted"),
        (
            "ftn-other-key",
            "salattu toiselle palvelulle",
            "unknown-encryption-key",
        ),
        (
            "ftn-wrong-enc",
            "tavalla, jota tämä palvelu ei hyväksy",
            "wrong-algorithm",
        ),
    ] {
        let app = App::spawn(
            backend,
            Opts {
                ftn: Some((client, RequestMode::Signed)),
                ..Opts::default()
            },
        )
        .await;
        let cb = app.login("ok").await;
        assert_eq!(cb.status, StatusCode::BAD_REQUEST, "{client}: {}", cb.body);
        assert!(cb.body.contains(text), "{client}: {}", cb.body);
        assert!(
            cb.set_cookie("kanta_session").is_none(),
            "{client}: no session"
        );
        assert!(
            app.audit_actions()
                .await
                .contains(&(Action::FailedLogin, Some(format!("reason={reason}")))),
            "{client}"
        );
        app.finish().await;
    }
}

/// Every portal test on both backends (SQLite, and PostgreSQL as production runs it).
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(kanta_store::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(kanta_store::Backend::Postgres).await } )* }
    };
}

both!(
    ftn_profile_flow,
    ftn_pushed_request_and_second_key,
    ftn_refusals,
    prescriptions_page_and_renewal,
    refusals,
    state_and_nonce,
    expired_id_token,
    foreign_signed_token,
    register_unavailable_fails_closed,
    idle_timeout,
    absolute_lifetime,
    logout_at_the_provider_ends_ours,
    session_fixation,
    csrf_and_methods,
    login_rate_limit,
    idle_sessions_are_pruned_and_audited,
    disclosure_log,
    visits_show_only_what_the_rules_allow,
    sections_filter_page_and_detail,
    an_audit_failure_closes_the_login_and_every_page,
    display_rules_end_to_end,
);
