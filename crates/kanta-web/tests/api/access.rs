//! The access decision over HTTP: each finding of the outside review (issue "one access
//! decision") refused with a clear OperationOutcome, and every route walked with every role (and
//! none) against the decision table `crates/kanta-domain/tests/access-table.txt`.

use super::*;
use std::collections::BTreeMap;

const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// One patient with a record of every kind, held by HUS (the registry entry by the operator, a
/// dispensation by the pharmacy). Returns `Type → id`.
async fn records_of_every_kind(app: &TestApp) -> BTreeMap<&'static str, String> {
    let t = app.token("clinician").await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": patient(HETU), "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": "urn:uuid:p"}, "period": {"start": "2026-11-01T09:00:00+02:00"}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Condition", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1"}], "text": "Masennus"},
            "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}, "recordedDate": "2026-11-01"},
         "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": "urn:uuid:m", "resource": prescription("urn:uuid:p", "402001", 2),
         "request": {"method": "POST", "url": "MedicationRequest"}},
        {"fullUrl": "urn:uuid:k", "resource": {"resourceType": "Consent", "status": "active", "scope": {"text": "patient-privacy"},
            "category": [{"text": "disclosure"}], "patient": {"reference": "urn:uuid:p"}, "dateTime": "2026-11-01T09:00:00+02:00"},
         "request": {"method": "POST", "url": "Consent"}},
        {"fullUrl": "urn:uuid:v", "resource": {"resourceType": "Provenance", "target": [{"reference": "urn:uuid:c"}],
            "recorded": "2026-11-01T09:05:00+02:00", "agent": [{"who": {"display": "Dr X"}}]},
         "request": {"method": "POST", "url": "Provenance"}},
    ]});
    let (s, v, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(bundle))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut ids = BTreeMap::new();
    for e in v["entry"].as_array().unwrap() {
        let loc = e["response"]["location"].as_str().unwrap();
        let rel = loc.split("/fhir/").nth(1).unwrap();
        let mut parts = rel.split('/');
        let (rt, id) = (parts.next().unwrap(), parts.next().unwrap());
        let rt: &'static str = match rt {
            "Patient" => "Patient",
            "Encounter" => "Encounter",
            "Condition" => "Condition",
            "MedicationRequest" => "MedicationRequest",
            "Consent" => "Consent",
            "Provenance" => "Provenance",
            other => panic!("{other}"),
        };
        ids.insert(rt, id.to_string());
    }
    // The patient was informed and gave a health-care disclosure consent at HUS (R-CONSENT-1).
    super::consent::inform_and_consent(app, &t, &ids["Patient"]).await;
    let pharmacy = app.token("pharmacy").await;
    let dispense = dispensation(
        &format!("Patient/{}", ids["Patient"]),
        &ids["MedicationRequest"],
        "402001",
        1,
    );
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/MedicationDispense",
            Some(&pharmacy),
            Some(dispense),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    ids.insert("MedicationDispense", v["id"].as_str().unwrap().to_string());
    let op = app.token("operator").await;
    let org = json!({"resourceType": "Organization", "id": "org-hus", "name": "HUS"});
    let (s, v, _) = app
        .send(
            Method::PUT,
            "/fhir/Organization/org-hus",
            Some(&op),
            Some(org),
        )
        .await;
    assert!(s.is_success(), "{v}");
    ids.insert("Organization", "org-hus".to_string());
    ids
}

fn is_outcome(v: &Value) -> bool {
    v["resourceType"] == "OperationOutcome" && v["issue"][0]["diagnostics"].is_string()
}

pub async fn another_organisation_cannot_version_a_document(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ids = records_of_every_kind(&app).await;
    let tays = app.token("clinician-tays").await;
    let cond = &ids["Condition"];
    let (_, mut body, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition/{cond}"),
            Some(&tays),
            None,
        )
        .await;
    body["code"]["text"] = json!("Ei masennusta");
    // Finding 1: a new version of another organisation's document.
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Condition/{cond}"),
            Some(&tays),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(is_outcome(&v), "{v}");
    assert!(
        v.to_string().contains("another organisation's register"),
        "{v}"
    );
    // Nor inside a transaction, nor with If-Match; nothing of the Bundle is stored.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Uusi"},
            "subject": {"reference": format!("Patient/{}", ids["Patient"])}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": body, "request": {"method": "PUT", "url": format!("Condition/{cond}"), "ifMatch": "W/\"1\""}},
    ]});
    let (s, v, _) = app
        .send(Method::POST, "/fhir", Some(&tays), Some(bundle))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (_, found, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Observation?patient=Patient/{}", ids["Patient"]),
            Some(&tays),
            None,
        )
        .await;
    assert_eq!(
        found["entry"].as_array().map_or(0, Vec::len),
        0,
        "the Bundle's other entry was not stored: {found}"
    );
    // The original is untouched, still HUS's: its archivist still answers for it.
    let hus = app.token("clinician").await;
    let (_, now, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition/{cond}"),
            Some(&hus),
            None,
        )
        .await;
    assert_eq!(
        (
            now["meta"]["versionId"].as_str(),
            now["code"]["text"].as_str()
        ),
        (Some("1"), Some("Masennus"))
    );
    let arch = app.token("archivist").await;
    let (s, v, _) = app
        .send(
            Method::GET,
            &format!("/archivist/documents/Condition/{cond}"),
            Some(&arch),
            None,
        )
        .await;
    assert_eq!(
        (s, v["stored"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    // Another organisation's Patient resource is not theirs to version either.
    let (_, p, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Patient/{}", ids["Patient"]),
            Some(&tays),
            None,
        )
        .await;
    let (s, _, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{}", ids["Patient"]),
            Some(&tays),
            Some(p.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Its own organisation versions it.
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Patient/{}", ids["Patient"]),
            Some(&hus),
            Some(p),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.finish().await;
}

pub async fn the_registry_is_the_operators(b: Backend) {
    let app = TestApp::spawn(b).await;
    let op = app.token("operator").await;
    let hus_org = json!({"resourceType": "Organization", "id": "org-hus", "name": "HUS",
        "extension": [{"url": "urn:kanta:ext:joined-kanta", "valueDate": "2010-01-01"}]});
    let (s, v, _) = app
        .send(
            Method::PUT,
            "/fhir/Organization/org-hus",
            Some(&op),
            Some(hus_org.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Finding 2: a clinician rewrites an organisation's joining date or its DPO contact.
    for client in ["clinician", "clinician-tays", "pharmacy"] {
        let t = app.token(client).await;
        let mut changed = hus_org.clone();
        changed["extension"][0]["valueDate"] = json!("2099-01-01");
        let (s, v, _) = app
            .send(
                Method::PUT,
                "/fhir/Organization/org-hus",
                Some(&t),
                Some(changed),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{client}: {v}");
        assert!(
            v.to_string()
                .contains("maintained by the platform operator"),
            "{v}"
        );
        let (s, _, _) = app
            .send(
                Method::POST,
                "/fhir/Practitioner",
                Some(&t),
                Some(json!({"resourceType": "Practitioner"})),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{client}");
        // Reading the registry is fine.
        let (s, v, _) = app
            .send(Method::GET, "/fhir/Organization/org-hus", Some(&t), None)
            .await;
        assert_eq!(
            (s, v["extension"][0]["valueDate"].as_str()),
            (StatusCode::OK, Some("2010-01-01"))
        );
    }
    app.finish().await;
}

pub async fn operator_archivist_and_pharmacy_stay_in_their_lanes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ids = records_of_every_kind(&app).await;
    let pid = &ids["Patient"];
    // Finding 3: the operator and the archivist read no clinical content through /fhir.
    for client in ["operator", "archivist"] {
        let t = app.token(client).await;
        for path in [
            format!("/fhir/Condition/{}", ids["Condition"]),
            format!("/fhir/Condition/{}/_history", ids["Condition"]),
            format!("/fhir/Condition/{}/_history/1", ids["Condition"]),
            format!("/fhir/Condition?patient=Patient/{pid}"),
            format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{HETU}"),
        ] {
            let (s, v, _) = app.send(Method::GET, &path, Some(&t), None).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{client} {path}: {v}");
            assert!(is_outcome(&v));
            assert!(!v.to_string().contains("Masennus"));
        }
    }
    // A pharmacy writes dispensations, not diagnoses; reads prescriptions, not diagnoses.
    let ph = app.token("pharmacy").await;
    let diagnosis = json!({"resourceType": "Condition", "code": {"text": "F20 Skitsofrenia"},
        "subject": {"reference": format!("Patient/{pid}")}});
    let (s, v, _) = app
        .send(Method::POST, "/fhir/Condition", Some(&ph), Some(diagnosis))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition?patient=Patient/{pid}"),
            Some(&ph),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v, _) = app
        .send(
            Method::GET,
            &format!("/fhir/MedicationRequest?patient=Patient/{pid}"),
            Some(&ph),
            None,
        )
        .await;
    assert_eq!(
        (s, v["entry"].as_array().map_or(0, Vec::len)),
        (StatusCode::OK, 1),
        "{v}"
    );
    // The operator still does its own work: the audit export.
    let op = app.token("operator").await;
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "patient",
        "valueIdentifier": {"system": "urn:oid:1.2.246.21", "value": HETU}}]});
    let (s, _, _) = app
        .send(
            Method::POST,
            "/operator/audit/export",
            Some(&op),
            Some(params.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let cl = app.token("clinician").await;
    let (s, _, _) = app
        .send(
            Method::POST,
            "/operator/audit/export",
            Some(&cl),
            Some(params),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.finish().await;
}

pub async fn a_conflict_names_no_patient(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, first, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = first["id"].as_str().unwrap();
    // Finding 4: the 409 told the HETU's Patient id, unaudited.
    let tays = app.token("clinician-tays").await;
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&tays),
            Some(patient(HETU)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(is_outcome(&v));
    let text = v.to_string();
    assert!(!text.contains(id) && !text.contains(HETU), "{text}");
    app.finish().await;
}

pub async fn scopes_are_parsed_granted_and_enforced(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ask = |scope: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(format!("{}/oauth/token", app.base))
                .basic_auth("clinician", Some("clinician-secret"))
                .form(&[("grant_type", "client_credentials"), ("scope", scope)])
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    // Malformed or unknown: invalid_scope.
    for bad in [
        "user/Patient.read",
        "system/Nothing.read",
        "system/Patient.rx",
        "openid",
        "system/Patient.rs?x=1",
    ] {
        let (s, v) = ask(bad).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_scope")),
            "{bad}"
        );
    }
    // Finding 5: a token for Patient.read creates no Observation.
    let (s, v) = ask("system/Patient.read").await;
    assert_eq!(
        (s, v["scope"].as_str()),
        (StatusCode::OK, Some("system/Patient.read"))
    );
    let t = v["access_token"].as_str().unwrap().to_string();
    let (s, v, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v.to_string().contains("scopes"), "{v}");
    let (s, v, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{HETU}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"identifier": {"system": "urn:oid:1.2.246.21", "value": HETU}}});
    let (s, _, _) = app
        .send(Method::POST, "/fhir/Observation", Some(&t), Some(obs))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // v2 letters: search without read.
    let (_, v) = ask("system/Patient.s").await;
    assert_eq!(v["scope"], "system/Patient.s");
    // Within the registration only: a client registered for Patient alone gets nothing else.
    let store = &app.db.as_ref().unwrap().store;
    store
        .upsert_client(
            &ClientRecord {
                client_id: "narrow".into(),
                org: OrgId::new("org-hus"),
                name: "narrow".into(),
                roles: vec!["clinician".into()],
                secret_sha256: Some(sha256_hex(b"narrow-secret")),
                jwks: None,
                enabled: true,
                scopes: "system/Patient.rs".into(),
            },
            app.clock.now(),
        )
        .await
        .unwrap();
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("narrow", Some("narrow-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.read"),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "system/Patient.read", "{v}");
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("narrow", Some("narrow-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/Observation.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_scope");
    app.finish().await;
}

fn forge(app: &TestApp, sub: &str, org: &str, roles: &str, secret: &[u8]) -> String {
    let now = app.clock.now().unix_timestamp();
    let claims = json!({"iss": app.base, "sub": sub, "org": org, "roles": roles, "scope": "system/*.cruds",
        "iat": now, "exp": now + 300, "jti": "j"});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

pub async fn the_register_decides_on_every_use(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let search = format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{HETU}");
    assert_eq!(
        app.send(Method::GET, &search, Some(&t), None).await.0,
        StatusCode::OK
    );
    // A token naming no real client, or claiming another organisation or more roles.
    for forged in [
        forge(&app, "ghost", "org-hus", "clinician", SECRET),
        forge(&app, "clinician", "org-tays", "clinician", SECRET),
        forge(
            &app,
            "clinician",
            "org-hus",
            "clinician",
            b"another-secret-another-secret-!!",
        ),
    ] {
        let (s, v, _) = app.send(Method::GET, &search, Some(&forged), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    // alg confusion: an unsigned token ("none") and one claiming RS256 over the same claims.
    let genuine = forge(&app, "clinician", "org-hus", "clinician", SECRET);
    let payload = genuine.split('.').nth(1).unwrap();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"RS256","typ":"JWT"}"#,
    ] {
        let h = URL_SAFE_NO_PAD.encode(header);
        let (s, _, _) = app
            .send(Method::GET, &search, Some(&format!("{h}.{payload}.")), None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{header}");
    }
    // The roles are the register's, not the token's: an archivist's token claiming clinician.
    let claimed = forge(&app, "archivist", "org-hus", "clinician operator", SECRET);
    assert_eq!(
        app.send(Method::GET, &search, Some(&claimed), None).await.0,
        StatusCode::FORBIDDEN
    );
    // Disabled: its live token stops working within the cache time.
    let store = &app.db.as_ref().unwrap().store;
    let mut c = store.client("clinician").await.unwrap().unwrap();
    c.enabled = false;
    store.upsert_client(&c, app.clock.now()).await.unwrap();
    app.clock.advance(time::Duration::seconds(
        kanta_web::auth::CLIENT_CACHE_SECONDS,
    ));
    let (s, v, _) = app.send(Method::GET, &search, Some(&t), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    // And gets no new one; the answer does not tell a disabled client from a wrong secret.
    let r = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("clinician", Some("clinician-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let unknown = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("nobody", Some("x"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let (a, b2): (Value, Value) = (r.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(a, b2);
    app.finish().await;
}

pub async fn reads_are_audited_with_their_basis(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ids = records_of_every_kind(&app).await;
    let t = app.token("clinician-tays").await;
    let r = app
        .http
        .get(format!("{}/fhir/Condition/{}", app.base, ids["Condition"]))
        .bearer_auth(&t)
        .header("x-kanta-purpose-of-use", "TREAT")
        .header("x-kanta-professional", "urn:oid:1.2.246.537.26|123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bad = app
        .http
        .get(format!("{}/fhir/Condition/{}", app.base, ids["Condition"]))
        .bearer_auth(&t)
        .header("x-kanta-purpose-of-use", "x".repeat(65))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let store = &app.db.as_ref().unwrap().store;
    let key = store
        .patient_key_of(&ids["Patient"])
        .await
        .unwrap()
        .unwrap();
    let records = store.audit_of_patient(key, None, 100).await.unwrap();
    let read = records
        .iter()
        .find(|r| r.body.contains("\"action\":\"read\"") && r.body.contains("org-tays"))
        .expect("the read's audit record");
    let rec: Value = serde_json::from_str(&read.body).unwrap();
    assert_eq!(rec["schema"], 2);
    assert_eq!(
        rec["basis"],
        json!({"ground": "consent", "role": "clinician", "purpose": "TREAT"})
    );
    assert_eq!(rec["actor"]["professional"], "urn:oid:1.2.246.537.26|123");
    app.finish().await;
}

/// The decision table the domain crate tests, read here as the oracle for the HTTP answers.
fn table() -> BTreeMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kanta-domain/tests/access-table.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(" -> "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn kind_of(t: &str) -> &'static str {
    match t {
        "Patient" => "patient",
        "Condition" => "clinical",
        "MedicationRequest" => "prescription",
        "MedicationDispense" => "dispensation",
        "Consent" => "consent",
        "Provenance" => "provenance",
        "Organization" => "registry",
        other => panic!("{other}"),
    }
}

/// Every route with every role (and no token): the status each gets is the table's answer —
/// permit → success (2xx; or 404 where the route's own answer is "no such thing"), deny → 403,
/// no token → 401.
pub async fn authorization_matrix(b: Backend) {
    let app = TestApp::spawn(b).await;
    let ids = records_of_every_kind(&app).await;
    let table = table();
    let pid = ids["Patient"].clone();
    let clients: [(&str, &str); 8] = [
        ("clinician", "clinician"),
        ("clinician-tays", "clinician"),
        ("pharmacy", "pharmacy"),
        ("archivist", "archivist"),
        ("archivist-tt", "archivist"),
        ("operator", "operator"),
        ("norole", "no-role"),
        ("", "anonymous"),
    ];
    let holder_org = |client: &str| match client {
        "clinician" | "archivist" | "norole" => "org-hus",
        "clinician-tays" => "org-tays",
        "pharmacy" => "org-apteekki",
        "archivist-tt" => "org-terveystalo",
        _ => "org-kanta-operator",
    };
    let mut checked = 0;
    for (client, role) in clients {
        let token = if client.is_empty() {
            None
        } else {
            Some(app.token(client).await)
        };
        for rtype in [
            "Patient",
            "Condition",
            "MedicationRequest",
            "MedicationDispense",
            "Consent",
            "Provenance",
            "Organization",
        ] {
            let kind = kind_of(rtype);
            let id = ids[rtype].clone();
            let (_, body, _) = {
                let op = app.token("clinician").await;
                let reader = if rtype == "MedicationDispense" {
                    app.token("pharmacy").await
                } else {
                    op
                };
                app.send(
                    Method::GET,
                    &format!("/fhir/{rtype}/{id}"),
                    Some(&reader),
                    None,
                )
                .await
            };
            // Who holds the stored record: the dispensation is the pharmacy's, the registry
            // entry shared, the rest HUS's.
            let holder = match rtype {
                "MedicationDispense" => "org-apteekki",
                "Organization" => "shared",
                _ => "org-hus",
            };
            let register = if holder == "shared" {
                "shared"
            } else if holder == holder_org(client) {
                "own-register"
            } else {
                "other-register"
            };
            let search = if rtype == "Patient" {
                format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{HETU}")
            } else if rtype == "Organization" {
                "/fhir/Organization?identifier=urn:x|y".to_string()
            } else {
                format!("/fhir/{rtype}?patient=Patient/{pid}")
            };
            let cases: Vec<(&str, Method, String, Option<Value>, &str)> = vec![
                (
                    "read",
                    Method::GET,
                    format!("/fhir/{rtype}/{id}"),
                    None,
                    register,
                ),
                (
                    "vread",
                    Method::GET,
                    format!("/fhir/{rtype}/{id}/_history/1"),
                    None,
                    register,
                ),
                (
                    "history",
                    Method::GET,
                    format!("/fhir/{rtype}/{id}/_history"),
                    None,
                    register,
                ),
                ("search", Method::GET, search, None, "request"),
                (
                    "update",
                    Method::PUT,
                    format!("/fhir/{rtype}/{id}"),
                    // A valid new version: a prescription's correction states its justification,
                    // a dispensation's only new version is its cancellation.
                    Some(match rtype {
                        "MedicationRequest" => {
                            let mut b = body.clone();
                            b["extension"] = json!([{"url": "urn:kanta:ext:correction-justification", "valueString": "annos tarkennettu"}]);
                            b
                        }
                        "MedicationDispense" => {
                            let mut b = body.clone();
                            b["status"] = json!("cancelled");
                            b
                        }
                        _ => body.clone(),
                    }),
                    register,
                ),
            ];
            for (interaction, method, path, body, target) in cases {
                let key = format!("{role} scoped | fhir {interaction} {rtype} ({kind}) | {target}");
                let (s, v, _) = app
                    .send(method.clone(), &path, token.as_deref(), body)
                    .await;
                if token.is_none() {
                    assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
                    continue;
                }
                let want = table.get(&key).unwrap_or_else(|| panic!("no cell {key}"));
                if want.starts_with("permit") {
                    assert!(s.is_success(), "{key}: {s} {v}");
                } else {
                    assert_eq!(s, StatusCode::FORBIDDEN, "{key}: {v}");
                    assert!(is_outcome(&v), "{key}: {v}");
                }
                checked += 1;
            }
        }
        // The archivist view and the operator's functions.
        let others: Vec<(&str, Method, String, Option<Value>, &str)> = vec![
            (
                "archivist-lookup",
                Method::GET,
                format!("/archivist/documents/Condition/{}", ids["Condition"]),
                None,
                if holder_org(client) == "org-hus" {
                    "own-register"
                } else {
                    "other-register"
                },
            ),
            (
                "audit-export",
                Method::POST,
                "/operator/audit/export".into(),
                Some(
                    json!({"resourceType": "Parameters", "parameter": [{"name": "patient",
                "valueIdentifier": {"system": "urn:oid:1.2.246.21", "value": HETU}}]}),
                ),
                "request",
            ),
            (
                "population-import",
                Method::POST,
                "/operator/population/import".into(),
                Some(json!({"resourceType": "Bundle", "type": "collection", "entry": []})),
                "request",
            ),
        ];
        for (name, method, path, body, target) in others {
            let (s, v, _) = app.send(method, &path, token.as_deref(), body).await;
            if token.is_none() {
                assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
                continue;
            }
            let key = format!("{role} | {name} | {target}");
            let want = table.get(&key).unwrap_or_else(|| panic!("no cell {key}"));
            if want.starts_with("permit") {
                // An empty import is refused as input (422/400), after the decision let it in.
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{key}: {s} {v}"
                );
            } else if name == "archivist-lookup" && want == "deny:not-own-organisation" {
                // Another register's document answers as a document not stored.
                assert_eq!(
                    (s, v["stored"].as_bool()),
                    (StatusCode::OK, Some(false)),
                    "{key}: {v}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{key}: {v}");
            }
            checked += 1;
        }
    }
    // Seven clients with a token, each 7 types × 5 interactions and 3 other routes.
    assert_eq!(checked, 7 * (7 * 5 + 3));
    app.finish().await;
}
