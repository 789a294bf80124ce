#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! HTTP tests: the real app on port 0 with its own fresh database, on SQLite and on PostgreSQL.
//! Every test runs on both backends (see `both!`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kanta_domain::ids::OrgId;
use kanta_store::audit::{AuditConfig, AuditLog, Signer};
use kanta_store::testing::TestDb;
use kanta_store::{Backend, ClientRecord};
use kanta_web::auth::sha256_hex;
use kanta_web::{AppState, Clock, WebConfig};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};
use time::macros::datetime;

const HETU: &str = "010594Y9032";
const AUDIT_NAME: &str = "kanta.test/audit";
const CHILD: &str = "020516C903K";

struct TestApp {
    audit: AuditLog,
    audit_public_key: Vec<u8>,
    base: String,
    http: reqwest::Client,
    clock: Clock,
    db: Option<TestDb>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, 1 << 20).await
    }

    async fn spawn_with(backend: Backend, max_body_bytes: usize) -> TestApp {
        Self::spawn_db(TestDb::new(backend).await, max_body_bytes).await
    }

    async fn spawn_db(db: TestDb, max_body_bytes: usize) -> TestApp {
        Self::spawn_limits(db, max_body_bytes, |_| {}).await
    }

    /// With the test app's limits changed by `f`.
    async fn spawn_limits(
        db: TestDb,
        max_body_bytes: usize,
        f: impl FnOnce(&mut kanta_web::Limits),
    ) -> TestApp {
        let clock = Clock::fixed(datetime!(2026-11-24 12:00 UTC));
        let now = clock.now();
        for (id, org, roles) in [
            ("clinician", "org-hus", "clinician"),
            ("clinician-tays", "org-tays", "clinician"),
            ("clinician-tt", "org-terveystalo", "clinician"),
            ("pharmacy", "org-apteekki", "pharmacy"),
            ("pharmacy-2", "org-apteekki-2", "pharmacy"),
            ("archivist", "org-hus", "archivist"),
            ("archivist-tt", "org-terveystalo", "archivist"),
            ("operator", "org-kanta-operator", "operator"),
            ("norole", "org-hus", ""),
            ("dual", "org-hus", "clinician operator"),
            ("hospital-pharmacy", "org-hus", "clinician pharmacy"),
        ] {
            db.store
                .upsert_client(
                    &ClientRecord {
                        client_id: id.into(),
                        org: OrgId::new(org),
                        name: id.into(),
                        roles: roles.split_whitespace().map(str::to_string).collect(),
                        secret_sha256: Some(sha256_hex(format!("{id}-secret").as_bytes())),
                        jwks: None,
                        enabled: true,
                        scopes: "system/*.cruds".into(),
                    },
                    now,
                )
                .await
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = WebConfig {
            public_url: base.clone(),
            max_body_bytes,
            demo: false,
            limits: kanta_web::Limits {
                // Short, so that the slow-headers test closes in seconds; far above what a local
                // client needs to send its headers.
                header_read_timeout: std::time::Duration::from_secs(2),
                body_read_timeout: std::time::Duration::from_secs(2),
                max_connections: 64,
                ..kanta_web::Limits::default()
            },
        };
        let mut config = config;
        f(&mut config.limits);
        let key = Signer::generate_pkcs8().unwrap();
        let signer = Signer::from_pkcs8(AUDIT_NAME, &key).unwrap();
        let audit_public_key = signer.public_key();
        let audit = AuditLog::start(
            db.store.clone(),
            AuditConfig {
                max_batch: 1000,
                checkpoint_every: std::time::Duration::ZERO,
                signer,
                witness_file: None,
                witness_channel: None,
            },
        );
        let state = AppState::new(
            db.store.clone(),
            audit.clone(),
            config,
            clock.clone(),
            b"test-secret-test-secret-test-secret!",
        )
        .with_centre(kanta_store::centre::Centre {
            medicines: kanta_domain::medicines::Database::new(vec![
                kanta_domain::medicines::parse(MEDICINES).unwrap(),
            ]),
            reservation_ms: 3_600_000,
            controller: Some("org-kanta-operator".into()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(kanta_web::serve(listener, state, async move {
            let _ = rx.await;
        }));
        TestApp {
            audit,
            audit_public_key,
            base,
            http: reqwest::Client::new(),
            clock,
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

    async fn token(&self, client: &str) -> String {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        // A provider system names the acting professional and the purpose of use (R-CONSENT-1).
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|100")
            .header("x-kanta-purpose-of-use", "TREAT");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }
}

/// A medicines database of four packages: two atorvastatins of one substitution group, a
/// sertraline, and a salbutamol inhaler.
const MEDICINES: &str = "# kanta-medicines 1\n# valid-from: 2026-01-01\n\
VNR;NAME;STRENGTH;FORM;PACKAGE_SIZE;UNIT;ATC;SUBSTITUTION_GROUP;PRICE_EUR;REIMBURSEMENT;STATUS\n\
401011;Atorvastatin Pohjola;20 mg;tabletti;30;tabl;C10AA05;1201;6,45;40;R\n\
401012;Atorvastatin Kaamos;20 mg;tabletti;30;tabl;C10AA05;1201;5,90;40;R\n\
402001;Sertralin Pohjola;50 mg;tabletti;30;tabl;N06AB06;2201;9,80;40;R\n\
403001;Salbutamol Revontuli;0,1 mg/annos;inhalaatiosumute;1;kpl;R03AC02;;7,20;65;R\n";

/// A prescription of `packages` packages of `vnr` (R-RX-1).
fn prescription(patient_ref: &str, vnr: &str, packages: u32) -> Value {
    json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": patient_ref}, "authoredOn": "2026-11-01",
        "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": vnr}]},
        "dosageInstruction": [{"text": "1 tabletti illalla"}],
        "dispenseRequest": {"quantity": {"value": packages, "code": "{package}", "system": "http://unitsofmeasure.org"}}})
}

/// A dispensation of `packages` packages of `vnr` for a prescription (R-RX-2).
fn dispensation(patient_ref: &str, rx_id: &str, vnr: &str, packages: u32) -> Value {
    json!({"resourceType": "MedicationDispense", "status": "completed",
        "subject": {"reference": patient_ref},
        "authorizingPrescription": [{"reference": format!("MedicationRequest/{rx_id}")}],
        "medicationCodeableConcept": {"coding": [{"system": "urn:kanta:cs:vnr", "code": vnr}]},
        "quantity": {"value": packages, "code": "{package}", "system": "http://unitsofmeasure.org"},
        "whenHandedOver": "2026-11-24T10:00:00+02:00"})
}

fn patient(hetu: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}], "name": [{"family": "Virtanen", "given": ["Aino"]}]})
}

fn visit(hetu: &str, obs_hetu_override: Option<&str>) -> Value {
    let mut p = patient(hetu);
    if let Some(h) = obs_hetu_override {
        p["identifier"][0]["value"] = json!(h);
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a1", "resource": p, "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{hetu}")}},
        {"fullUrl": "urn:uuid:a2", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:a1"}, "period": {"start": "2025-03-01T09:00:00+02:00"}}, "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": "urn:uuid:a3", "resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "B -Hb"}, "subject": {"reference": "urn:uuid:a1"}, "encounter": {"reference": "urn:uuid:a2"}, "effectiveDateTime": "2025-03-01T09:30:00+02:00", "valueQuantity": {"value": 131, "unit": "g/L"}}, "request": {"method": "POST", "url": "Observation"}}
    ]})
}

fn issue(v: &Value) -> (String, String) {
    (
        v["issue"][0]["expression"][0]
            .as_str()
            .unwrap_or("")
            .to_string(),
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

use reqwest::Method;

async fn health_metadata_and_auth(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, body, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, body), (StatusCode::OK, Value::String("ok".into())));
    let (s, ready, _) = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    for sub in [
        "records",
        "prescriptions",
        "consents",
        "wellbeing_data",
        "population_register",
        "identification",
        "mandates",
    ] {
        assert!(
            ready["subsystems"][sub].is_string(),
            "{sub} missing from {ready}"
        );
    }
    // What does not exist yet is not reported as up.
    assert_eq!(ready["subsystems"]["wellbeing_data"], "not-implemented");
    // The Prescription Centre with its medicines database loaded.
    assert_eq!(ready["subsystems"]["prescriptions"], "up");
    assert_eq!(ready["subsystems"]["consents"], "up");
    // No mandate service configured here: said so, not "up".
    assert_eq!(ready["subsystems"]["mandates"], "not-configured");
    // Without the demo (or its test settings) the built-in test services do not exist.
    for path in [
        "/test-idp/.well-known/openid-configuration",
        "/test-idp/authorize",
        "/test-idp/jwks",
        "/test-idp/userinfo",
        "/test-idp/session",
        "/test-idp/logout",
        "/test-mandates/manage",
        "/test-mandates/oauth/authorize",
        "/test-mandates/service/rest/hpa/authorization/c/010594Y9021/010594Y9021?issue=x",
    ] {
        let (s, _, _) = app.send(Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/test-idp/token",
        "/test-idp/par",
        "/test-idp/authorize",
        "/test-idp/session/end",
    ] {
        let (s, _, _) = app.send(Method::POST, path, None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, cap, h) = app.send(Method::GET, "/fhir/metadata", None, None).await;
    assert_eq!(s, StatusCode::OK);
    // Nothing the API answers is cached (ASVS 14.3.2), refusals included.
    assert_eq!(h["cache-control"], "no-store");
    let (s, _, h401) = app.send(Method::GET, "/fhir/Patient/x", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h401["cache-control"], "no-store");
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(cap["fhirVersion"], "4.0.1");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    // No token, a bad token, an expired token: 401 with an OperationOutcome.
    let (s, oo, h) = app
        .send(
            Method::GET,
            "/fhir/Patient?identifier=urn:oid:1.2.246.21|010594Y9032",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(h["www-authenticate"], "Bearer");
    let (s, _, _) = app
        .send(Method::GET, "/fhir/Patient/x", Some("not-a-jwt"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let token = app.token("clinician").await;
    app.clock.advance(time::Duration::seconds(299));
    assert_eq!(
        app.send(Method::GET, "/fhir/Patient/x", Some(&token), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    app.clock.advance(time::Duration::seconds(1));
    let (s, oo, _) = app
        .send(Method::GET, "/fhir/Patient/x", Some(&token), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(issue(&oo).1.contains("expired"));
    // A wrong secret and an unknown grant are OAuth errors.
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("clinician", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("clinician", Some("clinician-secret"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _, _) = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    // The audit outbox's backlog, for the operator (the writer sets it at start and at each sweep
    // of the outbox, every 30 ticks: 6 s here).
    let mut seen = String::new();
    for _ in 0..100 {
        seen = app
            .http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if seen.contains("kanta_audit_outbox_pending 0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.contains("kanta_audit_outbox_pending 0"), "{seen}");
    app.finish().await;
}

/// SMART Backend Services: a client signs an ES384 assertion with its own key.
async fn private_key_jwt(b: Backend) {
    let app = TestApp::spawn(b).await;
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let (x, y) = point[1..].split_at(48);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "alg": "ES384", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]});
    app.db
        .as_ref()
        .unwrap()
        .store
        .upsert_client(
            &ClientRecord {
                client_id: "ehr-1".into(),
                org: OrgId::new("org-hus"),
                name: "EHR".into(),
                roles: vec!["clinician".into()],
                secret_sha256: None,
                jwks: Some(jwks.to_string()),
                enabled: true,
                scopes: "system/*.cruds".into(),
            },
            app.clock.now(),
        )
        .await
        .unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let now = app.clock.now().unix_timestamp();
    let assertion = |aud: &str, exp: i64, jti: &str, sub: &str| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(
            &h,
            &json!({"iss": "ehr-1", "sub": sub, "aud": aud, "exp": exp, "jti": jti}),
            &key,
        )
        .unwrap()
    };
    let token_url = format!("{}/oauth/token", app.base);
    let post = |a: String| {
        let http = app.http.clone();
        let url = token_url.clone();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.read"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(assertion(&token_url, now + 240, "j1", "ehr-1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["organization"], "org-hus");
    let token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        app.send(Method::GET, "/fhir/Patient/x", Some(&token), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    for (bad, why) in [
        (
            assertion(&token_url, now + 240, "j1", "ehr-1"),
            "replayed jti",
        ),
        (
            assertion("https://elsewhere/token", now + 240, "j2", "ehr-1"),
            "wrong audience",
        ),
        (assertion(&token_url, now - 1, "j3", "ehr-1"), "expired"),
        // Issue 30: a jti is kept until the assertion expires, so it is bounded.
        (
            assertion(&token_url, now + 240, &"j".repeat(256), "ehr-1"),
            "a jti of 256 characters",
        ),
        (
            assertion(&token_url, now + 240, "", "ehr-1"),
            "an empty jti",
        ),
        (
            assertion(&token_url, now + 3600, "j4", "ehr-1"),
            "too far ahead",
        ),
        (
            assertion(&token_url, now + 240, "j5", "someone-else"),
            "sub is not the client",
        ),
    ] {
        let r = post(bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
    // A key the client did not register.
    let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    h.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &h,
        &json!({"iss": "ehr-1", "sub": "ehr-1", "aud": token_url, "exp": now + 60, "jti": "j9"}),
        &jsonwebtoken::EncodingKey::from_ec_der(other.as_ref()),
    )
    .unwrap();
    assert_eq!(
        post(forged).await.status(),
        StatusCode::UNAUTHORIZED,
        "foreign key"
    );
    // No audience at all: it could have been made for any server.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    h.kid = Some("k1".into());
    let no_aud = jsonwebtoken::encode(
        &h,
        &json!({"iss": "ehr-1", "sub": "ehr-1", "exp": now + 60, "jti": "j10"}),
        &key,
    )
    .unwrap();
    assert_eq!(
        post(no_aud).await.status(),
        StatusCode::UNAUTHORIZED,
        "no aud"
    );
    app.finish().await;
}

async fn transaction_bundles(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(resp["type"], "transaction-response");
    assert_eq!(resp["entry"].as_array().unwrap().len(), 3);
    assert_eq!(resp["entry"][2]["response"]["status"], "201 Created");
    let pid = resp["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        resp["entry"][2]["resource"]["subject"]["reference"],
        format!("Patient/{pid}")
    );
    // The same visit again: the Patient is matched (200), the rest created.
    let (_, again, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(again["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(again["entry"][0]["resource"]["id"], pid.as_str());
    // An invalid HETU in an entry: 422 naming the entry, nothing written.
    let (s, oo, _) = app
        .send(
            Method::POST,
            "/fhir",
            Some(&t),
            Some(visit(CHILD, Some("020516C903L"))),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (expr, diag) = issue(&oo);
    assert_eq!(expr, "Bundle.entry[0].resource.identifier[0].value");
    assert!(diag.contains("invalid HETU"), "{diag}");
    // A valid Patient but a broken later entry: nothing of the Bundle stays.
    let mut broken = visit(CHILD, None);
    broken["entry"][2]["resource"]["encounter"]["reference"] = json!("Encounter/does-not-exist");
    let (s, oo, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(broken))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{oo}");
    assert!(issue(&oo).1.contains("does not exist"));
    let (_, found, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{CHILD}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(0), "{found}");
    app.finish().await;
}

async fn crud_history_and_conflicts(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, p, h) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(h["etag"], "W/\"1\"");
    assert!(h["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/fhir/Patient/{id}/_history/1")));
    // Conditional create through the header returns the existing one.
    let r = app
        .http
        .post(format!("{}/fhir/Patient", app.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .header(
            "if-none-exist",
            format!("identifier=urn:oid:1.2.246.21|{HETU}"),
        )
        .body(patient(HETU).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A second Patient with the same HETU without a condition: 409.
    let (s, oo, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{oo}");
    let mut v2 = patient(HETU);
    v2["id"] = json!(id);
    v2["name"][0]["family"] = json!("Korhonen");
    let put = |body: Value, etag: Option<&str>| {
        let mut r = app
            .http
            .put(format!("{}/fhir/Patient/{id}", app.base))
            .bearer_auth(&t)
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        if let Some(e) = etag {
            r = r.header("if-match", e);
        }
        r.send()
    };
    assert_eq!(
        put(v2.clone(), Some("W/\"1\"")).await.unwrap().status(),
        StatusCode::OK
    );
    let r = put(v2.clone(), Some("W/\"1\"")).await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    let (_, cur, _) = app
        .send(Method::GET, &format!("/fhir/Patient/{id}"), Some(&t), None)
        .await;
    assert_eq!(
        (
            cur["meta"]["versionId"].as_str(),
            cur["name"][0]["family"].as_str()
        ),
        (Some("2"), Some("Korhonen"))
    );
    let (_, v1, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Patient/{id}/_history/1"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(v1["name"][0]["family"], "Virtanen");
    let (_, hist, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Patient/{id}/_history"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        (hist["type"].as_str(), hist["total"].as_u64()),
        (Some("history"), Some(2))
    );
    // Roles: an archivist has the archivist view only — no reads or writes through /fhir.
    let a = app.token("archivist").await;
    assert_eq!(
        app.send(Method::GET, &format!("/fhir/Patient/{id}"), Some(&a), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(
            Method::POST,
            "/fhir/Patient",
            Some(&a),
            Some(patient(CHILD))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    app.finish().await;
}

async fn bad_input_is_refused_precisely(b: Backend) {
    let app = TestApp::spawn_with(b, 64 * 1024).await;
    let t = app.token("clinician").await;
    let (_, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let raw = |path: &str, ct: &str, body: String| {
        app.http
            .post(format!("{}{path}", app.base))
            .bearer_auth(&t)
            .header("content-type", ct.to_string())
            .body(body)
            .send()
    };
    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        ("/fhir/Patient", "application/fhir+json", "{\"resourceType\": \"Patient\",".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("/fhir/Patient", "text/plain", patient(CHILD).to_string(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        ("/fhir/Patient", "application/fhir+json", json!({"resourceType": "Observation"}).to_string(), StatusCode::BAD_REQUEST, "URL says Patient"),
        ("/fhir/Patient", "application/fhir+json", patient("020516C903L").to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid HETU"),
        ("/fhir/Observation", "application/fhir+json", json!({"resourceType": "Observation", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{pid}")}}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "Observation.status is required"),
        ("/fhir/Observation", "application/fhir+json", json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/unknown"}}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "does not exist"),
        ("/fhir/Observation", "application/fhir+json", "x".repeat(70 * 1024), StatusCode::PAYLOAD_TOO_LARGE, "larger"),
        ("/fhir/Basic", "application/fhir+json", json!({"resourceType": "Basic"}).to_string(), StatusCode::NOT_FOUND, "not supported"),
        ("/fhir", "application/fhir+json", json!({"resourceType": "Bundle", "type": "batch"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "transaction"),
    ];
    for (path, ct, body, status, text) in cases {
        let r = raw(path, ct, body).await.unwrap();
        let got = r.status();
        let oo: Value = r.json().await.unwrap();
        assert_eq!(got, status, "{path} {text}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert!(
            issue(&oo).1.contains(text),
            "{path}: '{}' lacks '{text}'",
            issue(&oo).1
        );
    }
    for (path, status, text) in [
        (
            "/fhir/Observation?patient=Patient/x&date=2024",
            StatusCode::BAD_REQUEST,
            "not supported",
        ),
        (
            "/fhir/Observation",
            StatusCode::BAD_REQUEST,
            "needs patient=",
        ),
        (
            "/fhir/Observation?patient=Patient/x&_count=0",
            StatusCode::BAD_REQUEST,
            "_count",
        ),
        (
            "/fhir/Patient?identifier=urn:oid:1.2.246.21|131052-308U",
            StatusCode::BAD_REQUEST,
            "invalid HETU",
        ),
        (
            "/fhir/Observation?patient=x&_page=garbage",
            StatusCode::BAD_REQUEST,
            "page token",
        ),
        ("/fhir/Patient/nope", StatusCode::NOT_FOUND, "not known"),
        (
            "/fhir/Patient/nope/_history/x",
            StatusCode::BAD_REQUEST,
            "not a number",
        ),
    ] {
        let (s, oo, _) = app.send(Method::GET, path, Some(&t), None).await;
        assert_eq!(s, status, "{path}: {oo}");
        assert!(issue(&oo).1.contains(text), "{path}: {}", issue(&oo).1);
    }
    // Nothing above was written.
    let (_, found, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Observation?patient=Patient/{pid}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(0));
    app.finish().await;
}

/// A searchset's `next` link, if it has one.
fn next_link(page: &Value) -> Option<String> {
    page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string())
}

async fn search_pages_by_patient(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let mut entries = vec![];
    for d in 1..=23 {
        entries.push(json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"}, "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": format!("2024-02-{d:02}")}, "request": {"method": "POST", "url": "Observation"}}));
    }
    let (s, _, _) = app
        .send(
            Method::POST,
            "/fhir",
            Some(&t),
            Some(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut url = format!("/fhir/Observation?subject=Patient/{pid}&_count=10&_sort=-date");
    let mut dates = vec![];
    loop {
        let (s, page, _) = app.send(Method::GET, &url, Some(&t), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["type"], "searchset");
        for e in page["entry"].as_array().unwrap() {
            dates.push(
                e["resource"]["effectiveDateTime"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let next = next_link(&page);
        match next {
            Some(n) => url = n.strip_prefix(&app.base).unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(dates.len(), 23);
    assert_eq!(dates[0], "2024-02-23");
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);
    let (_, asc, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Observation?patient={pid}&_sort=date&_count=1"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(
        asc["entry"][0]["resource"]["effectiveDateTime"],
        "2024-02-01"
    );
    // As many as there are: no next page; one fewer: a next page, holding the last one.
    for (n, more) in [(23, false), (22, true), (24, false)] {
        let (_, page, _) = app
            .send(
                Method::GET,
                &format!("/fhir/Observation?patient={pid}&_count={n}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(
            page["entry"].as_array().map(Vec::len),
            Some(n.min(23)),
            "_count={n}"
        );
        let next = next_link(&page);
        assert_eq!(next.is_some(), more, "_count={n}: {next:?}");
        if let Some(n) = next {
            let (_, rest, _) = app
                .send(
                    Method::GET,
                    n.strip_prefix(&app.base).unwrap(),
                    Some(&t),
                    None,
                )
                .await;
            assert_eq!(rest["entry"].as_array().map(Vec::len), Some(1));
        }
    }
    let (_, none, _) = app
        .send(
            Method::GET,
            "/fhir/Observation?patient=Patient/someone-else",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(none["entry"].as_array().map(Vec::len), Some(0));
    app.finish().await;
}

async fn population_import_endpoint(b: Backend) {
    let app = TestApp::spawn(b).await;
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": CHILD}], "name": [{"family": "Virtanen", "given": ["Eetu"]}]}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}], "name": [{"family": "Virtanen", "given": ["Aino"]}]}},
        {"resource": {"resourceType": "RelatedPerson", "patient": {"identifier": {"system": "urn:oid:1.2.246.21", "value": CHILD}},
            "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}],
            "relationship": [{"coding": [{"system": "urn:kanta:cs:population-relation", "code": "guardian"}]}]}}
    ]});
    let clinician = app.token("clinician").await;
    assert_eq!(
        app.send(
            Method::POST,
            "/operator/population/import",
            Some(&clinician),
            Some(bundle.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let op = app.token("operator").await;
    let (s, oo, _) = app
        .send(
            Method::POST,
            "/operator/population/import",
            Some(&op),
            Some(bundle.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{oo}");
    assert!(issue(&oo).1.contains("2 persons and 1 relations"));
    let store = &app.db.as_ref().unwrap().store;
    let child = store
        .person(&kanta_domain::hetu::Hetu::parse(CHILD).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.relations.len(), 1);
    let mut bad = bundle;
    bad["entry"][1]["resource"]["identifier"][0]["value"] = json!("010594Y9033");
    let (s, oo, _) = app
        .send(
            Method::POST,
            "/operator/population/import",
            Some(&op),
            Some(bad),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(issue(&oo).0.starts_with("Bundle.entry[1]"), "{oo}");
    // Provider writes never create register entries: the Patient is stored (201), the register
    // still does not know the person.
    let (s, created, _) = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&clinician),
            Some(patient("030516D9037")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["resourceType"], "Patient");
    assert!(store
        .person(&kanta_domain::hetu::Hetu::parse("030516D9037").unwrap())
        .await
        .unwrap()
        .is_none());
    app.finish().await;
}

/// R-OPS-4 ("every use of data is logged"): every response that carries patient data has its audit records committed first; one
/// record per patient; a search records its subject even when nothing is found.
async fn every_read_is_audited_before_it_leaves(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    let pid = resp["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = app.db.as_ref().unwrap().store.clone();
    let (size_after_write, _) = store.audit_head().await.unwrap();
    assert_eq!(
        size_after_write, 1,
        "the transaction wrote one patient's data: one record"
    );
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    for path in [
        format!("/fhir/Patient/{pid}"),
        format!("/fhir/Patient/{pid}/_history/1"),
        format!("/fhir/Patient/{pid}/_history"),
        format!("/fhir/Observation?patient=Patient/{pid}"),
        format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{HETU}"),
    ] {
        let before = store.audit_head().await.unwrap().0;
        let (s, _, _) = app.send(Method::GET, &path, Some(&t), None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert_eq!(
            store.audit_head().await.unwrap().0,
            before + 1,
            "{path}: one record"
        );
    }
    let records = store.audit_of_patient(key, None, 100).await.unwrap();
    assert_eq!(records.len(), 6);
    let newest: Value = serde_json::from_str(&records[0].body).unwrap();
    assert_eq!(newest["action"], "search");
    assert_eq!(newest["actor"]["org"], "org-hus");
    assert!(
        newest["query"].as_str().unwrap().contains("<hetu>"),
        "{newest}"
    );
    assert!(
        !records.iter().any(|r| r.body.contains(HETU)),
        "no HETU in the audit log"
    );
    // An empty search about a patient is still a disclosure ("nothing here").
    let before = store.audit_head().await.unwrap().0;
    app.send(
        Method::GET,
        &format!("/fhir/Procedure?patient=Patient/{pid}"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(store.audit_head().await.unwrap().0, before + 1);
    let report =
        kanta_store::audit::verify(store.as_ref(), AUDIT_NAME, &app.audit_public_key, None)
            .await
            .unwrap();
    assert!(report.ok(), "{report:?}");
    app.finish().await;
}

/// Fault injection: the audit store fails at request k (once, and from k on); no response carries
/// patient data without its committed record.
async fn audit_failure_fails_closed(b: Backend) {
    use std::sync::atomic::Ordering::SeqCst;
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    let pid = resp["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = app.db.as_ref().unwrap().store.clone();
    let n = 8u64;
    for (mode, k) in (1..=n)
        .map(|k| ("at", k))
        .chain((1..=n).map(|k| ("from", k)))
    {
        let start = app.audit.faults().batches();
        app.audit
            .faults()
            .at
            .store(if mode == "at" { start + k } else { 0 }, SeqCst);
        app.audit
            .faults()
            .from
            .store(if mode == "from" { start + k } else { 0 }, SeqCst);
        let mut served = 0;
        let before = store.audit_head().await.unwrap().0;
        for i in 1..=n {
            let (s, body, _) = app
                .send(
                    Method::GET,
                    &format!("/fhir/Observation?patient=Patient/{pid}"),
                    Some(&t),
                    None,
                )
                .await;
            let should_fail = if mode == "at" { i == k } else { i >= k };
            if should_fail {
                assert_eq!(
                    s,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{mode} {k}: request {i}"
                );
                assert_eq!(body["resourceType"], "OperationOutcome");
                assert!(
                    !body.to_string().contains("B -Hb"),
                    "no record content in a failed response"
                );
            } else {
                assert_eq!(s, StatusCode::OK, "{mode} {k}: request {i}");
                served += 1;
            }
        }
        let committed = store.audit_head().await.unwrap().0 - before;
        assert_eq!(
            committed, served,
            "{mode} {k}: every response served has exactly its record"
        );
    }
    app.audit.faults().at.store(0, SeqCst);
    app.audit.faults().from.store(0, SeqCst);
    assert_eq!(
        app.send(Method::GET, &format!("/fhir/Patient/{pid}"), Some(&t), None)
            .await
            .0,
        StatusCode::OK,
        "recovers"
    );
    app.finish().await;
}

/// R-OPS-5: the operator answers a log-data request with the person's AuditEvents; the look-up is
/// itself logged.
async fn log_data_request(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    let pid = resp["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.send(Method::GET, &format!("/fhir/Patient/{pid}"), Some(&t), None)
        .await;
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueIdentifier": {"system": "urn:oid:1.2.246.21", "value": HETU}}]});
    assert_eq!(
        app.send(
            Method::POST,
            "/operator/audit/export",
            Some(&t),
            Some(params.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let op = app.token("operator").await;
    let (s, b1, _) = app
        .send(
            Method::POST,
            "/operator/audit/export",
            Some(&op),
            Some(params.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b1}");
    let events: Vec<&Value> = b1["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(events.len(), 3, "write, read, and this export: {b1}");
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "R"
                && e["agent"][0]["who"]["reference"] == "Organization/org-hus")
    );
    let (s, b2, _) = app
        .send(
            Method::POST,
            "/operator/audit/export",
            Some(&op),
            Some(params),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b2["entry"].as_array().unwrap().len(),
        4,
        "the first export is in the log"
    );
    let bad = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueIdentifier": {"system": "urn:oid:1.2.246.21", "value": "010594Y9033"}}]});
    assert_eq!(
        app.send(Method::POST, "/operator/audit/export", Some(&op), Some(bad))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    app.finish().await;
}

/// R-DOC-12: the archivist's view names the rule that hides a document (or says it is shown), for
/// archivist clients only, without record content, and every look-up is audited.
async fn archivist_view(b: Backend) {
    let app = TestApp::spawn(b).await;
    let clin = app.token("clinician").await;
    let arch = app.token("archivist").await;
    let view = json!({"tag": [{"system": "urn:oid:1.2.246.537.6.12.2002", "code": "LAB"}]});
    let mut other = view.clone();
    other["security"] = json!([{"system": "urn:kanta:cs:security", "code": "other-person"}]);
    let obs = |meta: &Value, text: &str| {
        json!({"resource": {"resourceType": "Observation", "status": "final", "meta": meta,
        "code": {"text": text}, "subject": {"reference": "urn:uuid:a1"}, "encounter": {"reference": "urn:uuid:a2"},
        "effectiveDateTime": "2025-03-01T09:30:00+02:00", "valueQuantity": {"value": 131, "unit": "g/L"}},
        "request": {"method": "POST", "url": "Observation"}})
    };
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a1", "resource": patient(HETU), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:a2", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"},
         "subject": {"reference": "urn:uuid:a1"}, "period": {"start": "2025-03-01T09:00:00+02:00"}}, "request": {"method": "POST", "url": "Encounter"}},
        obs(&view, "Shown Hb"),
        obs(&other, "Secret Hb"),
    ]});
    let (s, resp, _) = app
        .send(Method::POST, "/fhir", Some(&clin), Some(bundle))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let id = |i: usize| {
        resp["entry"][i]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (enc, shown, hidden) = (id(1), id(2), id(3));
    let app_ref = &app;
    let ask = move |path: String, token: String| async move {
        app_ref.send(Method::GET, &path, Some(&token), None).await
    };

    let (s, v, h) = ask(
        format!("/archivist/documents/Observation/{hidden}"),
        arch.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    // Ward care (IMP): a lab result is not a medication or a summary, and this one holds another
    // person's data: both rules, in rule order.
    assert_eq!(
        v["hidden_by"],
        json!([{"code": "other-person", "rule": "R-DOC-5"}, {"code": "inpatient-content", "rule": "R-DOC-7"}]),
        "{v}"
    );
    assert_eq!(
        (v["stored"].as_bool(), v["shown_in_mykanta"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(v["service_event"], format!("Encounter/{enc}"));
    assert_eq!(
        (v["care_setting"].as_str(), v["versions"].as_u64()),
        (Some("inpatient"), Some(1))
    );
    assert!(
        !v.to_string().contains("Secret Hb"),
        "no record content: {v}"
    );
    // R-DOC-12 "when archived": the instant the first version was stored (the store's own time,
    // never the client's); "is it delayed": no delay here.
    let archived = v["archived_at"].as_str().unwrap_or_default().to_string();
    let at = time::OffsetDateTime::parse(&archived, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("archived_at {archived:?}: {e}"));
    assert_eq!(
        at,
        app.clock.now(),
        "archived at the store's (the app clock's) time"
    );
    assert!(v["delayed_until"].is_null(), "{v}");
    // A delayed document: the archivist sees until when (and that it hides it, R-DOC-4).
    let mut delayed_meta = view.clone();
    delayed_meta["extension"] = json!([{"url": "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/release-for-patient-viewing", "valueDateTime": "2099-01-01T00:00:00+02:00"}]);
    let mut later = obs(&delayed_meta, "Delayed Hb")["resource"].clone();
    later["subject"] = json!({"reference": format!("Patient/{}", resp["entry"][0]["resource"]["id"].as_str().unwrap())});
    later["encounter"] = json!({"reference": format!("Encounter/{enc}")});
    let (s, created, _) = app
        .send(Method::POST, "/fhir/Observation", Some(&clin), Some(later))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let (_, v, _) = ask(
        format!(
            "/archivist/documents/Observation/{}",
            created["id"].as_str().unwrap()
        ),
        arch.clone(),
    )
    .await;
    assert!(
        v["delayed_until"]
            .as_str()
            .is_some_and(|d| d.starts_with("2098-12-31T22:00:00")),
        "{v}"
    );
    assert!(
        v["hidden_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["rule"] == "R-DOC-4"),
        "{v}"
    );

    let (_, v, _) = ask(
        format!("/archivist/documents/Encounter/{enc}"),
        arch.clone(),
    )
    .await;
    assert_eq!(
        (v["shown_in_mykanta"].as_bool(), v["visit_only"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
    let (_, v, _) = ask(
        format!("/archivist/documents/Observation/{shown}"),
        arch.clone(),
    )
    .await;
    assert_eq!(
        v["hidden_by"],
        json!([{"code": "inpatient-content", "rule": "R-DOC-7"}]),
        "{v}"
    );
    // The same answer as a page, in the browser's language, without record content.
    let page = app
        .http
        .get(format!(
            "{}/archivist/documents/Observation/{hidden}",
            app.base
        ))
        .bearer_auth(&arch)
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "sv-FI")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    for want in [
        "lang=\"sv\"",
        "Visas inte i MinaKanta",
        "innehåller uppgifter om en annan person (R-DOC-5)",
        "(R-DOC-7)",
    ] {
        assert!(html.contains(want), "{want}: {html}");
    }
    assert!(!html.contains("Secret Hb"));
    let (s, v, _) = ask("/archivist/documents/Observation/nope".into(), arch.clone()).await;
    assert_eq!((s, v["stored"].as_bool()), (StatusCode::OK, Some(false)));
    let (s, v, _) = ask(
        format!("/archivist/documents/Observation/{hidden}"),
        clin.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    // Another organisation's archivist answers for their own register only: another's document
    // looks exactly like one that is not stored (the look-up reveals nothing it may not see).
    let other_arch = app.token("archivist-tt").await;
    let (s, v, _) = ask(
        format!("/archivist/documents/Observation/{hidden}"),
        other_arch.clone(),
    )
    .await;
    let (s2, absent, _) = ask(
        "/archivist/documents/Observation/no-such-document".to_string(),
        other_arch,
    )
    .await;
    assert_eq!((s, s2), (StatusCode::OK, StatusCode::OK), "{v}");
    assert_eq!(
        v.to_string().replace(&hidden, "X"),
        absent.to_string().replace("no-such-document", "X")
    );
    assert!(
        !v.to_string().contains("other-person"),
        "nothing of the decision: {v}"
    );

    let store = app.db.as_ref().unwrap().store.clone();
    let key = store
        .patient_key_for_hetu(&kanta_domain::hetu::Hetu::parse(HETU).unwrap())
        .await
        .unwrap()
        .unwrap();
    // Exactly the own archivist's five look-ups of this patient's documents (the hidden one as JSON
    // and as a page, the delayed one, the visit, the shown one), each with its records, and the
    // refused ones none (issue 30: the bound was `>= 3`).
    let records: Vec<Value> = store
        .audit_of_patient(key, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .filter(|r| r["query"] == "view=archivist")
        .collect();
    let requests: std::collections::BTreeSet<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(requests.len(), 5, "{records:#?}");
    assert!(
        records
            .iter()
            .all(|r| r["actor"]["client_id"] == "archivist"),
        "{records:#?}"
    );
    app.finish().await;
}

#[path = "api/access.rs"]
mod access;
use access::*;
#[path = "api/bounds.rs"]
mod bounds;
use bounds::*;
#[path = "api/concurrency.rs"]
mod concurrency;
use concurrency::*;
#[path = "api/choices.rs"]
mod choices;
use choices::*;
#[path = "api/consent.rs"]
mod consent;
use consent::*;
#[path = "api/prescriptions.rs"]
mod prescriptions;
use prescriptions::*;

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(kanta_store::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(kanta_store::Backend::Postgres).await } )* }
    };
}

both!(
    another_register_is_read_only_under_the_patients_consent,
    prohibited_data_is_indistinguishable_from_absent,
    emergency_reads_are_reasoned_audited_and_bounded_by_the_patients_choice,
    prescriptions_follow_the_prescription_prohibition,
    a_purchased_services_producer_reads_the_organisers_data,
    kanta_consents_are_checked_when_written,
    concurrent_updates_of_one_version,
    if_match_edge_cases,
    a_bundle_failing_midway_leaves_nothing,
    archivist_and_export_fail_closed,
    health_metadata_and_auth,
    private_key_jwt,
    transaction_bundles,
    crud_history_and_conflicts,
    bad_input_is_refused_precisely,
    search_pages_by_patient,
    population_import_endpoint,
    every_read_is_audited_before_it_leaves,
    audit_failure_fails_closed,
    log_data_request,
    archivist_view,
    another_organisation_cannot_version_a_document,
    the_registry_is_the_operators,
    operator_archivist_and_pharmacy_stay_in_their_lanes,
    a_conflict_names_no_patient,
    scopes_are_parsed_granted_and_enforced,
    the_register_decides_on_every_use,
    reads_are_audited_with_their_basis,
    authorization_matrix,
    request_ids_are_bounded,
    dot_ids_and_trailing_slash,
    bundles_references_and_searches_are_bounded,
    a_conditional_create_that_finds_is_a_read,
    malformed_paths_get_an_operation_outcome,
    half_sent_headers_are_closed,
    prescriber_pharmacy_and_renewal,
    dispensing_is_exactly_once_under_contention,
    prescription_bundles,
    the_server_keeps_its_own,
    a_patients_choice_is_recorded_only_as_a_care_unit,
    a_producer_cannot_widen_its_own_mandate,
    older_versions_are_released_only_as_the_current_one,
    a_prohibition_covers_what_its_tags_cannot_tell,
    another_registers_ids_get_one_answer,
    a_patients_consents_are_bounded_per_writer,
    a_two_role_client_is_audited_by_the_role_it_used,
    a_write_happens_once,
    slow_bodies_and_idle_connections_are_bounded,
    the_scan_past_refused_records_is_bounded,
    racing_prescription_centre_writes,
);

/// Mounts a small tmpfs for the life of a test (needs root, as on the CI machines).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("kanta-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs failed: the disk-full test needs root (as scripts/test runs on CI)"
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: the server's last connections may still be closing.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// R-OPS-4 with a full disk (SQLite on a 16 MB tmpfs): while there is no room, a write is refused
/// whole with a 503 OperationOutcome and every read either fails closed (503, no data) or comes
/// with its audit record committed; when room returns, the service recovers without a restart and
/// the log verifies.
#[tokio::test]
async fn disk_full_fails_closed_and_recovers() {
    let disk = Tmpfs::mount("16m");
    let app = TestApp::spawn_db(TestDb::sqlite_in(&disk.0).await, 8 << 20).await;
    let t = app.token("clinician").await;
    let (s, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let pid = resp["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let search = format!("/fhir/Observation?patient=Patient/{pid}&_count=20");
    let count = |v: &Value| v["entry"].as_array().map_or(0, Vec::len);

    // Fill the file system.
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(disk.0.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let big = |n: usize| {
        let entries: Vec<Value> = (0..n)
            .map(|i| json!({"resource": {"resourceType": "Observation", "status": "final",
                "code": {"text": format!("{i} {}", "x".repeat(2000))}, "subject": {"reference": format!("Patient/{pid}")},
                "effectiveDateTime": "2026-01-01T00:00:00Z"}, "request": {"method": "POST", "url": "Observation"}}))
            .collect();
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    };
    let (s, v, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(big(400)))
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    let mut served = vec![];
    let mut refused = 0;
    for _ in 0..200 {
        let (s, v, h) = app.send(Method::GET, &search, Some(&t), None).await;
        match s {
            StatusCode::OK => served.push(h["x-request-id"].to_str().unwrap().to_string()),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert_eq!(v["resourceType"], "OperationOutcome");
                assert!(!v.to_string().contains("B -Hb"), "no data: {v}");
            }
            other => panic!("{other}: {v}"),
        }
    }

    // Room returns: the service recovers, nothing half-written, every served read was audited.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let (s, v, _) = app.send(Method::GET, &search, Some(&t), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(count(&v), 1, "the refused Bundle left nothing behind");
    let (s, _, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(big(5)))
        .await;
    assert_eq!(s, StatusCode::OK);
    let store = app.db.as_ref().unwrap().store.clone();
    let (size, _) = store.audit_head().await.unwrap();
    let bodies: Vec<String> = store
        .audit_range(0, size)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    // What another connection reads from the file is what was committed.
    let fresh = sqlx::SqlitePool::connect(&app.db.as_ref().unwrap().url)
        .await
        .unwrap();
    let on_disk: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_record")
        .fetch_one(&fresh)
        .await
        .unwrap();
    fresh.close().await;
    assert_eq!(
        on_disk as u64, size,
        "the head counts only committed records"
    );
    eprintln!(
        "disk full: {} reads served with their records, {refused} refused; {size} records",
        served.len()
    );
    for id in &served {
        assert!(
            bodies.iter().any(|b| b.contains(id.as_str())),
            "a read was served without its audit record ({id}); {refused} refused"
        );
    }
    let report =
        kanta_store::audit::verify(store.as_ref(), AUDIT_NAME, &app.audit_public_key, None)
            .await
            .unwrap();
    assert!(report.ok(), "{report:?}");
    app.finish().await;
    drop(disk);
}
