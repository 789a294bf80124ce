//! The disclosure rule over HTTP (R-CONSENT-1, R-CONSENT-2, R-RX-2, R-X-5): several providers read
//! one patient before and after each change of the patient's consents; what a prohibition covers
//! is indistinguishable from what does not exist.

use super::*;

const PATIENT: &str = "131052-308T";

pub fn kanta_consent(kind: &str, patient: &str, at: &str, extra: Value) -> Value {
    let mut c = json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "urn:kanta:cs:consent-kind", "code": kind}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": at,
        "performer": [{"identifier": {"system": "urn:oid:1.2.246.21", "value": PATIENT}, "display": "Potilas"}],
        "extension": [{"url": "urn:kanta:ext:recorded-as", "valueCode": "care-unit"}],
    });
    if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    c
}

pub async fn post(app: &TestApp, token: &str, body: Value) -> String {
    let (s, v, _) = app
        .send(
            Method::POST,
            &format!("/fhir/{}", body["resourceType"].as_str().unwrap()),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The notice received and a health-care disclosure consent, recorded by a care unit.
pub async fn inform_and_consent(app: &TestApp, token: &str, patient: &str) {
    post(
        app,
        token,
        kanta_consent(
            "information-notice",
            patient,
            "2026-11-01T08:00:00+02:00",
            json!({}),
        ),
    )
    .await;
    post(
        app,
        token,
        kanta_consent(
            "disclosure-consent",
            patient,
            "2026-11-01T08:01:00+02:00",
            json!({"provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}]}}),
        ),
    )
    .await;
}

/// A patient with a visit at HUS (public register 2) with a diagnosis, another at Terveystalo
/// (private register 3), and a prescription by HUS. Returns (patient id, HUS encounter, HUS condition,
/// Terveystalo condition, prescription).
pub async fn patient_in_two_registers(app: &TestApp) -> (String, String, String, String, String) {
    let hus = app.token("clinician").await;
    let operator = app.token("operator").await;
    for org in ["org-hus", "org-terveystalo", "org-tays"] {
        let (s, v, _) = app
            .send(
                Method::PUT,
                &format!("/fhir/Organization/{org}"),
                Some(&operator),
                Some(json!({"resourceType": "Organization", "id": org, "name": org})),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let visit = |register: &str, start: &str, text: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": patient(PATIENT), "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=urn:oid:1.2.246.21|{PATIENT}")}},
            {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                "meta": {"tag": [{"system": "urn:oid:1.2.246.537.5.40150", "code": register}]},
                "subject": {"reference": "urn:uuid:p"}, "period": {"start": start}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:c", "resource": {"resourceType": "Condition", "code": {"text": text},
                "meta": {"tag": [{"system": "urn:oid:1.2.246.537.5.40150", "code": register}]},
                "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}, "recordedDate": &start[..10]},
             "request": {"method": "POST", "url": "Condition"}},
        ]})
    };
    let ids = |v: &Value| -> Vec<String> {
        v["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let loc = e["response"]["location"].as_str().unwrap();
                loc.split("/fhir/")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    };
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir",
            Some(&hus),
            Some(visit("2", "2026-10-01T09:00:00+03:00", "Astma")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let a = ids(&v);
    let tt = app.token("clinician-tt").await;
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir",
            Some(&tt),
            Some(visit("3", "2026-10-15T09:00:00+03:00", "Migreeni")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let b = ids(&v);
    let pid = a[0].trim_start_matches("Patient/").to_string();
    let rx = post(
        app,
        &hus,
        prescription(&format!("Patient/{pid}"), "403001", 1),
    )
    .await;
    (
        pid,
        a[1].clone(),
        a[2].clone(),
        b[2].clone(),
        format!("MedicationRequest/{rx}"),
    )
}

/// What a provider receives of the patient's conditions: the ids of a search, and whether each
/// of the given records can be read.
pub async fn sees(
    app: &TestApp,
    token: &str,
    pid: &str,
    records: &[&str],
) -> (Vec<String>, Vec<bool>) {
    let (s, v, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition?patient=Patient/{pid}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut found: Vec<String> = v["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| format!("Condition/{}", e["resource"]["id"].as_str().unwrap()))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if let Some(total) = v["total"].as_u64() {
        assert_eq!(total as usize, found.len(), "{v}");
    }
    let mut readable = vec![];
    for r in records {
        let (s, _, _) = app
            .send(Method::GET, &format!("/fhir/{r}"), Some(token), None)
            .await;
        assert!(
            s == StatusCode::OK || s == StatusCode::NOT_FOUND,
            "{r}: {s}"
        );
        readable.push(s == StatusCode::OK);
    }
    (found, readable)
}

pub async fn another_register_is_read_only_under_the_patients_consent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, hus_enc, hus_cond, tt_cond, _) = patient_in_two_registers(&app).await;
    let (hus, tt, tays) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
        app.token("clinician-tays").await,
    );
    let both = [hus_cond.as_str(), tt_cond.as_str()];
    // Nothing given yet: each provider sees its own register only; a third sees nothing.
    assert_eq!(sees(&app, &hus, &pid, &both).await.1, [true, false]);
    assert_eq!(sees(&app, &tt, &pid, &both).await.1, [false, true]);
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [false, false]);
    // Informed, but no consent yet: still nothing of the other registers.
    post(
        &app,
        &hus,
        kanta_consent(
            "information-notice",
            &pid,
            "2026-11-01T08:00:00+02:00",
            json!({}),
        ),
    )
    .await;
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [false, false]);
    // A social-care consent does not open health-care data.
    post(&app, &hus, kanta_consent("disclosure-consent", &pid, "2026-11-01T08:01:00+02:00",
        json!({"provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "social"}]}]}}))).await;
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [false, false]);
    // The health-care consent: every provider reads every register.
    let consent = post(&app, &hus, kanta_consent("disclosure-consent", &pid, "2026-11-01T08:02:00+02:00",
        json!({"provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}]}}))).await;
    let (found, readable) = sees(&app, &tays, &pid, &both).await;
    assert_eq!(readable, [true, true]);
    assert_eq!(found.len(), 2);
    // Without naming the professional, or for another purpose, nothing of another register.
    let r = app
        .http
        .get(format!("{}/fhir/{hus_cond}", app.base))
        .bearer_auth(&tays)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app
        .http
        .get(format!("{}/fhir/{hus_cond}", app.base))
        .bearer_auth(&tays)
        .header("x-kanta-professional", "p")
        .header("x-kanta-purpose-of-use", "HMARKT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A prohibition of HUS's public register: HUS still sees its own; others do not.
    let prohibition = post(&app, &tt, kanta_consent("disclosure-prohibition", &pid, "2026-11-02T08:00:00+02:00",
        json!({"provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
            "reference": {"reference": "Organization/org-hus"}}],
            "code": [{"coding": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "2"}]}]}}))).await;
    assert_eq!(sees(&app, &hus, &pid, &both).await.1, [true, true]);
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [false, true]);
    assert_eq!(sees(&app, &tt, &pid, &both).await.1, [false, true]);
    // Lifted (a new version, inactive): readable again.
    let (_, mut body, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Consent/{prohibition}"),
            Some(&tt),
            None,
        )
        .await;
    body["status"] = json!("inactive");
    body["dateTime"] = json!("2026-11-03T08:00:00+02:00");
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Consent/{prohibition}"),
            Some(&tt),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [true, true]);
    // A prohibition of one service event hides that visit and what points at it, not the rest.
    post(&app, &tt, kanta_consent("disclosure-prohibition", &pid, "2026-11-04T08:00:00+02:00",
        json!({"provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
            "reference": {"reference": "Organization/org-hus"}}],
            "data": [{"meaning": "related", "reference": {"reference": hus_enc}}]}}))).await;
    assert_eq!(
        sees(&app, &tays, &pid, &[&hus_cond, &tt_cond, &hus_enc])
            .await
            .1,
        [false, true, false]
    );
    // The consent revoked (a new version, inactive): nothing of other registers.
    let (_, mut body, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Consent/{consent}"),
            Some(&hus),
            None,
        )
        .await;
    body["status"] = json!("inactive");
    body["dateTime"] = json!("2026-11-05T08:00:00+02:00");
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Consent/{consent}"),
            Some(&hus),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sees(&app, &tays, &pid, &both).await.1, [false, false]);
    // Every version of the consent is kept.
    let (_, h, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Consent/{consent}/_history"),
            Some(&hus),
            None,
        )
        .await;
    assert_eq!(h["total"], 2);
    // The reads under the consent are audited with their ground.
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let records = store.audit_of_patient(key, None, 1000).await.unwrap();
    assert!(records
        .iter()
        .any(|r| r.body.contains("\"ground\":\"consent\"") && r.body.contains("org-tays")));
    app.finish().await;
}

pub async fn prohibited_data_is_indistinguishable_from_absent(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tays) = (
        app.token("clinician").await,
        app.token("clinician-tays").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    // A social-care record (the social-welfare register system) is not under the health-care
    // consent; a health-care one is.
    let social = post(
        &app,
        &hus,
        json!({"resourceType": "Condition", "code": {"text": "Sosiaalihuollon asiakkuus"},
        "meta": {"tag": [{"system": "urn:oid:1.2.246.537.6.1264", "code": "1"}]},
        "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": "2026-08-01"}),
    )
    .await;
    let (s, _, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition/{social}"),
            Some(&tays),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = app
        .send(Method::GET, &format!("/fhir/{hus_cond}"), Some(&tays), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition/{social}"),
            Some(&hus),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "its own register sees it");
    // Twelve more HUS conditions, then a prohibition of all of HUS's data.
    for i in 0..12 {
        post(&app, &hus, json!({"resourceType": "Condition", "code": {"text": format!("c{i}")},
            "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": format!("2026-09-{:02}", i + 1)})).await;
    }
    post(&app, &hus, kanta_consent("disclosure-prohibition", &pid, "2026-11-02T08:00:00+02:00",
        json!({"provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
            "reference": {"reference": "Organization/org-hus"}}]}}))).await;
    // A read of a prohibited record answers exactly as a read of an id that was never stored.
    let (s1, v1, _) = app
        .send(Method::GET, &format!("/fhir/{hus_cond}"), Some(&tays), None)
        .await;
    let (s2, v2, _) = app
        .send(
            Method::GET,
            "/fhir/Condition/never-stored",
            Some(&tays),
            None,
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    let strip = |v: &Value| {
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .replace(hus_cond.trim_start_matches("Condition/"), "X")
            .replace("never-stored", "X")
    };
    assert_eq!(strip(&v1), strip(&v2));
    for suffix in ["/_history", "/_history/1"] {
        let (s, _, _) = app
            .send(
                Method::GET,
                &format!("/fhir/{hus_cond}{suffix}"),
                Some(&tays),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{suffix}");
    }
    // A search pages over prohibited records as if absent: one page, the Terveystalo condition,
    // total 1, no next link — the same shape as for a patient who only ever had that one.
    for count in ["1", "2", "20"] {
        let (s, v, _) = app
            .send(
                Method::GET,
                &format!("/fhir/Condition?patient=Patient/{pid}&_count={count}"),
                Some(&tays),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(v["total"].is_null() || v["total"] == 1, "{v}");
        assert_eq!(v["entry"].as_array().unwrap().len(), 1);
        let next = v["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next");
        assert!(
            !next,
            "_count={count}: no next page over prohibited records: {v}"
        );
    }
    // A conditional create naming a prohibited record's identifier answers as for an unused one:
    // it finds nothing in the writer's own register and creates.
    let obs = |ident: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
        "identifier": [{"system": "urn:x:lab", "value": ident}],
        "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": "2026-09-01"})
    };
    post(&app, &hus, obs("hus-1")).await;
    for ident in ["hus-1", "never-used"] {
        let r = app
            .http
            .post(format!("{}/fhir/Observation", app.base))
            .bearer_auth(&tays)
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", format!("identifier=urn:x:lab|{ident}"))
            .header("x-kanta-professional", "p")
            .header("x-kanta-purpose-of-use", "TREAT")
            .body(obs(ident).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{ident}");
    }
    // HUS itself still sees all of its own (a prohibition never hides data from its register),
    // and pages through them with next links.
    let (_, v, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Condition?patient=Patient/{pid}&_count=5"),
            Some(&hus),
            None,
        )
        .await;
    assert_eq!(v["entry"].as_array().unwrap().len(), 5);
    assert!(v["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));
    app.finish().await;
}

pub async fn emergency_reads_are_reasoned_audited_and_bounded_by_the_patients_choice(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tays) = (
        app.token("clinician").await,
        app.token("clinician-tays").await,
    );
    let emergency = |reason: Option<&str>| {
        let mut r = app
            .http
            .get(format!("{}/fhir/{hus_cond}", app.base))
            .bearer_auth(&tays)
            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|200")
            .header("x-kanta-purpose-of-use", "ETREAT");
        if let Some(reason) = reason {
            r = r.header("x-kanta-emergency-reason", reason);
        }
        r.send()
    };
    // Not informed, no consent: an emergency read with a stated reason is allowed.
    assert_eq!(
        emergency(None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        emergency(Some("unconscious on arrival"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = emergency(Some(&"x".repeat(201))).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A prohibition that holds in an emergency holds.
    let p = post(&app, &hus, kanta_consent("disclosure-prohibition", &pid, "2026-11-02T08:00:00+02:00",
        json!({"provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
            "reference": {"reference": "Organization/org-hus"}}]}}))).await;
    assert_eq!(
        emergency(Some("unconscious")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    // The patient's choice that it yields in an emergency (a new version): it yields.
    let (_, mut body, _) = app
        .send(Method::GET, &format!("/fhir/Consent/{p}"), Some(&hus), None)
        .await;
    body["extension"]
        .as_array_mut()
        .unwrap()
        .push(json!({"url": "urn:kanta:ext:yields-in-emergency", "valueBoolean": true}));
    body["dateTime"] = json!("2026-11-03T08:00:00+02:00");
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Consent/{p}"),
            Some(&hus),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        emergency(Some("unconscious")).await.unwrap().status(),
        StatusCode::OK
    );
    // Audited as an emergency, with the reason.
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let records = store.audit_of_patient(key, None, 1000).await.unwrap();
    let e = records
        .iter()
        .filter(|r| r.body.contains("\"ground\":\"emergency\""))
        .count();
    assert_eq!(e, 2, "both emergency reads, each audited as one");
    assert!(records
        .iter()
        .any(|r| r.body.contains("\"reason\":\"unconscious on arrival\"")));
    app.finish().await;
}

pub async fn prescriptions_follow_the_prescription_prohibition(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, _, _, rx) = patient_in_two_registers(&app).await;
    let (hus, tays, pharmacy) = (
        app.token("clinician").await,
        app.token("clinician-tays").await,
        app.token("pharmacy").await,
    );
    let search = format!("/fhir/MedicationRequest?patient=Patient/{pid}");
    let n = |v: &Value| v["entry"].as_array().map_or(0, Vec::len);
    // No consent is needed for Prescription Centre data in care.
    for t in [&tays, &pharmacy] {
        let (_, v, _) = app.send(Method::GET, &search, Some(t), None).await;
        assert_eq!(n(&v), 1);
    }
    post(
        &app,
        &hus,
        kanta_consent(
            "prescription-prohibition",
            &pid,
            "2026-11-02T08:00:00+02:00",
            json!({}),
        ),
    )
    .await;
    // The pharmacy no longer finds it by the person, but reads the one the customer presents.
    let (_, v, _) = app.send(Method::GET, &search, Some(&pharmacy), None).await;
    assert_eq!(n(&v), 0);
    let (s, _, _) = app
        .send(Method::GET, &format!("/fhir/{rx}"), Some(&pharmacy), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // Another provider: neither; the prescriber: always.
    let (_, v, _) = app.send(Method::GET, &search, Some(&tays), None).await;
    assert_eq!(n(&v), 0);
    let (s, _, _) = app
        .send(Method::GET, &format!("/fhir/{rx}"), Some(&tays), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v, _) = app.send(Method::GET, &search, Some(&hus), None).await;
    assert_eq!(n(&v), 1);
    app.finish().await;
}

pub async fn a_purchased_services_producer_reads_the_organisers_data(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, tt_cond, _) = patient_in_two_registers(&app).await;
    let (hus, tt, tays) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
        app.token("clinician-tays").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    // The patient prohibits both HUS's and Terveystalo's data.
    for org in ["org-hus", "org-terveystalo"] {
        post(&app, &hus, kanta_consent("disclosure-prohibition", &pid, "2026-11-02T08:00:00+02:00",
            json!({"provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                "reference": {"reference": format!("Organization/{org}")}}]}}))).await;
    }
    assert_eq!(
        sees(&app, &tays, &pid, &[&hus_cond, &tt_cond]).await.1,
        [false, false]
    );
    // HUS (organiser) stores a mandate first without the producer (version 2): nothing yet.
    let mandate = |producer: Option<&str>, end: &str| {
        let mut actor = vec![];
        if let Some(p) = producer {
            actor.push(json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRF"}]},
                "reference": {"reference": format!("Organization/{p}")}}));
        }
        kanta_consent(
            "purchased-service-mandate",
            &pid,
            "2026-11-03T08:00:00+02:00",
            json!({
            "organization": [{"reference": "Organization/org-hus"}],
            "provision": {"period": {"start": "2026-11-01", "end": end}, "actor": actor,
                "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]},
                           {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "collect"}]}],
                "code": [{"text": "Fysioterapia 10 krt"}]}}),
        )
    };
    let id = post(&app, &hus, mandate(None, "2027-01-01")).await;
    assert_eq!(
        sees(&app, &tays, &pid, &[&hus_cond, &tt_cond]).await.1,
        [false, false]
    );
    // Completed with Tays as the producer: Tays reads HUS's data over the HUS prohibition, not
    // Terveystalo's over its own.
    let mut completed = mandate(Some("org-tays"), "2027-01-01");
    completed["id"] = json!(id);
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Consent/{id}"),
            Some(&hus),
            Some(completed),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        sees(&app, &tays, &pid, &[&hus_cond, &tt_cond]).await.1,
        [true, false]
    );
    // The producer lists the mandates granted to it; another organisation may not list Tays's.
    let (s, v, _) = app
        .send(
            Method::GET,
            "/fhir/Consent?producer=Organization/org-tays",
            Some(&tays),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let listed: Vec<&str> = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str()]);
    let (s, _, _) = app
        .send(
            Method::GET,
            "/fhir/Consent?producer=Organization/org-tays",
            Some(&tt),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The producer stores straight into the organiser's register: HUS holds it as its own.
    let store_into = |org: &'static str| {
        let body = json!({"resourceType": "Condition", "code": {"text": "Fysioterapiajakso"},
            "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": "2026-11-20"});
        app.http
            .post(format!("{}/fhir/Condition", app.base))
            .bearer_auth(&tays)
            .header("content-type", "application/fhir+json")
            .header("x-kanta-register-of", org)
            .header("x-kanta-professional", "p")
            .header("x-kanta-purpose-of-use", "TREAT")
            .body(body.to_string())
            .send()
    };
    let r = store_into("org-hus").await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let stored: Value = r.json().await.unwrap();
    let written = format!("Condition/{}", stored["id"].as_str().unwrap());
    let (s, _, _) = app
        .send(Method::GET, &format!("/fhir/{written}"), Some(&hus), None)
        .await;
    assert_eq!(s, StatusCode::OK, "HUS holds it in its own register");
    let (s, _, _) = app.send(Method::PUT, &format!("/fhir/{written}"), Some(&tays), Some(json!({"resourceType": "Condition", "id": written.trim_start_matches("Condition/"), "code": {"text": "x"}, "subject": {"reference": format!("Patient/{pid}")}}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a new version is the organiser's");
    // Not into a register no mandate names.
    assert_eq!(
        store_into("org-terveystalo").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Others gain nothing from it.
    assert_eq!(sees(&app, &tt, &pid, &[&hus_cond]).await.1, [false]);
    // Ended (the test clock is 2026-11-24): nothing again.
    let mut ended = mandate(Some("org-tays"), "2026-11-20");
    ended["id"] = json!(id);
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/Consent/{id}"),
            Some(&hus),
            Some(ended),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(sees(&app, &tays, &pid, &[&hus_cond]).await.1, [false]);
    let body = json!({"resourceType": "Condition", "code": {"text": "Myöhässä"},
        "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": "2026-11-22"});
    let r = app
        .http
        .post(format!("{}/fhir/Condition", app.base))
        .bearer_auth(&tays)
        .header("content-type", "application/fhir+json")
        .header("x-kanta-register-of", "org-hus")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "an ended mandate stores nothing"
    );
    app.finish().await;
}

pub async fn kanta_consents_are_checked_when_written(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, _, _, _) = patient_in_two_registers(&app).await;
    let hus = app.token("clinician").await;
    for (bad, at) in [
        (
            kanta_consent("no-such-kind", &pid, "2026-11-01T08:00:00+02:00", json!({})),
            "Consent.category",
        ),
        (
            kanta_consent(
                "disclosure-consent",
                &pid,
                "2026-11-01T08:00:00+02:00",
                json!({}),
            ),
            "Consent.provision.code",
        ),
        (
            kanta_consent(
                "disclosure-prohibition",
                &pid,
                "2026-11-01T08:00:00+02:00",
                json!({"provision": {}}),
            ),
            "Consent.provision.actor",
        ),
        (
            kanta_consent(
                "purchased-service-mandate",
                &pid,
                "2026-11-01T08:00:00+02:00",
                json!({}),
            ),
            "Consent.organization",
        ),
    ] {
        let (s, v, _) = app
            .send(Method::POST, "/fhir/Consent", Some(&hus), Some(bad))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["expression"][0], at, "{v}");
    }
    // A consent dated ahead of the clock would outrank every later change: refused.
    let future = kanta_consent(
        "information-notice",
        &pid,
        "2099-01-01T08:00:00+02:00",
        json!({}),
    );
    let (s, v, _) = app
        .send(Method::POST, "/fhir/Consent", Some(&hus), Some(future))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A mandate naming another organiser (Terveystalo forging HUS's): refused.
    let tt = app.token("clinician-tt").await;
    let forged = kanta_consent(
        "purchased-service-mandate",
        &pid,
        "2026-11-01T08:00:00+02:00",
        json!({
        "organization": [{"reference": "Organization/org-hus"}],
        "provision": {"actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRF"}]},
            "reference": {"reference": "Organization/org-terveystalo"}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]}}),
    );
    let (s, v, _) = app
        .send(Method::POST, "/fhir/Consent", Some(&tt), Some(forged))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // The platform's own indexes are not identifiers to search by.
    let (s, _, _) = app
        .send(
            Method::GET,
            "/fhir/Consent?identifier=urn:kanta:index:mandate-producer|org-tays",
            Some(&tt),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Another organisation reads the patient's consents only for care, naming the professional.
    let id = post(
        &app,
        &hus,
        kanta_consent(
            "information-notice",
            &pid,
            "2026-11-01T08:00:00+02:00",
            json!({}),
        ),
    )
    .await;
    let r = app
        .http
        .get(format!("{}/fhir/Consent/{id}", app.base))
        .bearer_auth(&tt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (s, _, _) = app
        .send(Method::GET, &format!("/fhir/Consent/{id}"), Some(&tt), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    app.finish().await;
}
