#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The mandate service client (R-PROXY, R-OPS-2) against the built-in registry it is meant to
//! stand in for (the same Web API, the checksum header checked), and against a stub that answers
//! errors, timeouts and garbage: every failure is `Unavailable` (never an ALLOWED), never cached,
//! and the next good answer is taken.

use kanta_domain::acting::{GivenAt, Mandate, MandateCheck, HEALTH_CARE_ISSUE};
use kanta_domain::hetu::Hetu;
use kanta_store::audit::{AuditConfig, AuditLog, Signer};
use kanta_store::testing::TestDb;
use kanta_store::Backend;
use kanta_web::portal::mandates::{
    HttpMandates, MandateCache, MandateConfig, MandateError, MandateService,
};
use kanta_web::portal::test_mandates::{TestMandates, PREFIX};
use kanta_web::portal::Portal;
use kanta_web::{AppState, Clock, WebConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::macros::date;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hetu(d: time::Date, n: u16) -> Hetu {
    Hetu::from_parts(d, '-', n).unwrap()
}

/// The app with the built-in registry on; returns its base URL and the registry.
async fn registry() -> (String, Arc<TestMandates>, TestDb, Clock) {
    let db = TestDb::new(Backend::Sqlite).await;
    let clock = Clock::fixed(Clock::System.now());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
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
    let reg = Arc::new(TestMandates::new());
    let mut portal = Portal::new(db.store.clone(), &base);
    portal.test_mandates = Some(reg.clone());
    let state = AppState::new(
        db.store.clone(),
        audit,
        WebConfig {
            public_url: base.clone(),
            max_body_bytes: 1 << 20,
            demo: false,
            limits: kanta_web::Limits::default(),
        },
        clock.clone(),
        b"0123456789abcdef0123456789abcdef",
    )
    .with_portal(portal);
    tokio::spawn(kanta_web::serve(listener, state, std::future::pending()));
    (base, reg, db, clock)
}

fn client(base: &str, reg: &TestMandates, clock: Clock, api_key: Option<&str>) -> HttpMandates {
    let b = format!("{base}{PREFIX}");
    HttpMandates::new(
        MandateConfig {
            base_url: b.clone(),
            browser_url: b,
            client_id: reg.client_id.clone(),
            api_key: api_key.unwrap_or(&reg.api_key).to_string(),
            oauth_password: reg.oauth_password.clone(),
            rest_api_key: reg.rest_api_key.clone(),
            timeout: Duration::from_secs(2),
        },
        clock,
    )
}

#[tokio::test]
async fn the_client_against_the_built_in_registry() {
    let (base, reg, db, clock) = registry().await;
    let principal = hetu(date!(1942 - 03 - 04), 915);
    let delegate = hetu(date!(1974 - 05 - 06), 914);
    let other = hetu(date!(1970 - 01 - 01), 917);
    let now = kanta_fhir::datetime::millis(clock.now());
    reg.give(Mandate {
        id: "m1".into(),
        principal: principal.clone(),
        delegate: delegate.clone(),
        issue: HEALTH_CARE_ISSUE.into(),
        valid_from: now - 1000,
        valid_to: now + 60_000,
        revoked_at: None,
        given_at: GivenAt::ServicePoint,
    });
    let c = client(&base, &reg, clock.clone(), None);
    // The system-level check.
    assert!(c
        .check(&delegate, &principal, HEALTH_CARE_ISSUE)
        .await
        .unwrap());
    assert!(!c
        .check(&other, &principal, HEALTH_CARE_ISSUE)
        .await
        .unwrap());
    assert!(!c
        .check(
            &delegate,
            &principal,
            "http://valtuusrekisteri.suomi.fi/verotus"
        )
        .await
        .unwrap());
    // The HPA flow: register, (the selection page), token, the chosen principal.
    let hpa = c.register(&delegate).await.unwrap();
    let url = c.selection_url(&hpa.user_id, "http://rp.example/cb", "st", "fi");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains(principal.as_str()), "{body}");
    let chosen = http
        .post(format!("{base}{PREFIX}/oauth/authorize"))
        .form(&[
            ("client_id", reg.client_id.as_str()),
            ("redirect_uri", "http://rp.example/cb"),
            ("user", hpa.user_id.as_str()),
            ("state", "st"),
            ("response_type", "code"),
            ("principal", principal.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 303);
    let loc = chosen.headers()["location"].to_str().unwrap().to_string();
    let loc = reqwest::Url::parse(&loc).unwrap();
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st");
    let got = c
        .principals(&hpa.session_id, &q["code"], "http://rp.example/cb")
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|p| p.hetu.clone()).collect::<Vec<_>>(),
        vec![principal.clone()]
    );
    // A code is used once.
    assert!(matches!(
        c.principals(&hpa.session_id, &q["code"], "http://rp.example/cb")
            .await,
        Err(MandateError::Refused(_))
    ));
    // Revoked: DISALLOWED at once (the registry's answer; the cache is the portal's).
    reg.revoke(&principal, &delegate, now);
    assert!(!c
        .check(&delegate, &principal, HEALTH_CARE_ISSUE)
        .await
        .unwrap());
    // A wrong API key: the checksum is refused.
    let wrong = client(&base, &reg, clock.clone(), Some("not-the-key"));
    assert!(matches!(
        wrong.register(&delegate).await,
        Err(MandateError::Refused(_))
    ));
    db.cleanup().await;
}

/// A stub of the mandate service that answers the n-th request with the n-th canned answer.
async fn stub(answers: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let i = n.fetch_add(1, Ordering::SeqCst);
            let answer = answers.get(i).copied().unwrap_or("ok");
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let (status, body) = match answer {
                    "ok" => ("200 OK", r#"{"result":"ALLOWED"}"#.to_string()),
                    "no" => ("200 OK", r#"{"result":"DISALLOWED"}"#.to_string()),
                    "500" => ("500 Internal Server Error", "oops".to_string()),
                    "garbage" => ("200 OK", "<html>not json".to_string()),
                    "maybe" => ("200 OK", r#"{"result":"MAYBE"}"#.to_string()),
                    "huge" => (
                        "200 OK",
                        format!(r#"{{"result":"ALLOWED","x":"{}"}}"#, "a".repeat(100_000)),
                    ),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        ("200 OK", r#"{"result":"ALLOWED"}"#.to_string())
                    }
                    _ => ("200 OK", String::new()),
                };
                let res = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(res.as_bytes()).await;
            });
        }
    });
    (base, count)
}

#[tokio::test]
async fn errors_timeouts_and_garbage_are_unavailable_and_never_cached() {
    let (base, count) = stub(vec!["500", "garbage", "maybe", "huge", "slow", "no", "ok"]).await;
    let c = HttpMandates::new(
        MandateConfig {
            base_url: base.clone(),
            browser_url: base,
            client_id: "kanta001".into(),
            api_key: "k".into(),
            oauth_password: "p".into(),
            rest_api_key: "r".into(),
            timeout: Duration::from_secs(1),
        },
        Clock::System,
    );
    let cache = MandateCache::new(Duration::from_secs(60));
    let d = hetu(date!(1974 - 05 - 06), 914);
    let p = hetu(date!(1942 - 03 - 04), 915);
    let mut got = vec![];
    for t in 0..7 {
        got.push(
            cache
                .check(&c, &d, &p, HEALTH_CARE_ISSUE, 1_000 + t, false)
                .await,
        );
    }
    use MandateCheck::*;
    assert_eq!(
        got,
        vec![
            Unavailable,
            Unavailable,
            Unavailable,
            Unavailable,
            Unavailable,
            Disallowed,
            // A DISALLOWED is kept for the interval (no new request) …
            Disallowed
        ]
    );
    assert_eq!(count.load(Ordering::SeqCst), 6);
    // … and a fresh check (a switch, an action) asks again: now ALLOWED.
    assert_eq!(
        cache
            .check(&c, &d, &p, HEALTH_CARE_ISSUE, 1_010, true)
            .await,
        Allowed
    );
    // Past the interval it is asked again.
    assert_eq!(
        cache
            .check(&c, &d, &p, HEALTH_CARE_ISSUE, 70_000, false)
            .await,
        Allowed
    );
    assert_eq!(count.load(Ordering::SeqCst), 8);
    // Nothing listening: unavailable at once.
    let dead = HttpMandates::new(
        MandateConfig {
            base_url: "http://127.0.0.1:9".into(),
            browser_url: "http://127.0.0.1:9".into(),
            client_id: "c".into(),
            api_key: "k".into(),
            oauth_password: "p".into(),
            rest_api_key: "r".into(),
            timeout: Duration::from_secs(1),
        },
        Clock::System,
    );
    assert!(matches!(
        dead.check(&d, &p, HEALTH_CARE_ISSUE).await,
        Err(MandateError::Unavailable(_))
    ));
}

/// Issue 29: a mandate given at a service point is the operator's act — recorded with an operator
/// client's token — never a citizen's (any signed-in person could record one from any adult to
/// himself through the manage page's form, which is gone).
#[tokio::test]
async fn a_service_point_mandate_is_the_operators_act() {
    let (base, reg, db, clock) = registry().await;
    for (id, roles) in [("operator", "operator"), ("clinician", "clinician")] {
        db.store
            .upsert_client(
                &kanta_store::ClientRecord {
                    client_id: id.into(),
                    org: kanta_domain::ids::OrgId::new(format!("org-{id}")),
                    name: id.into(),
                    roles: vec![roles.into()],
                    secret_sha256: Some(kanta_web::auth::sha256_hex(
                        format!("{id}-secret").as_bytes(),
                    )),
                    jwks: None,
                    enabled: true,
                    scopes: "system/*.cruds".into(),
                },
                clock.now(),
            )
            .await
            .unwrap();
    }
    let http = reqwest::Client::new();
    let token = |id: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http
                .post(format!("{base}/oauth/token"))
                .basic_auth(id, Some(format!("{id}-secret")))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let v: serde_json::Value = r.json().await.unwrap();
            v["access_token"].as_str().unwrap().to_string()
        }
    };
    let principal = hetu(date!(1950 - 03 - 01), 300);
    let delegate = hetu(date!(1980 - 05 - 05), 400);
    let now = kanta_fhir::datetime::millis(clock.now());
    let give = |token: Option<String>, checked: bool| {
        let mut form = vec![
            ("principal", principal.as_str().to_string()),
            ("delegate", delegate.as_str().to_string()),
        ];
        if checked {
            form.push(("identity_checked", "1".into()));
        }
        let mut req = http
            .post(format!("{base}{PREFIX}/service-point"))
            .form(&form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // No credentials, a clinician's system, an unchecked identity: nothing recorded.
    assert_eq!(give(None, true).await.unwrap().status(), 401);
    assert_eq!(
        give(Some(token("clinician").await), true)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        give(Some(token("operator").await), false)
            .await
            .unwrap()
            .status(),
        400
    );
    assert!(!reg.allowed(&delegate, &principal, HEALTH_CARE_ISSUE, now));
    // The operator's official records it.
    assert_eq!(
        give(Some(token("operator").await), true)
            .await
            .unwrap()
            .status(),
        201
    );
    assert!(reg.allowed(&delegate, &principal, HEALTH_CARE_ISSUE, now + 1));
    db.cleanup().await;
}
