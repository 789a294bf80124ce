//! Issue 29: the patient's choices cannot be rewritten by others. Each test reproduces a finding
//! of the outside review over HTTP, built anew here: who records a consent, what a mandate grants,
//! every version judged alike, one answer for another register's ids.

use super::*;

const CST: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// A write with exactly these headers (the test app's `send` always names a professional and
/// TREAT).
async fn write_with(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let s = r.status();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn prohibition_of(pid: &str, org: &str, at: &str) -> Value {
    kanta_consent(
        "disclosure-prohibition",
        pid,
        at,
        json!({"provision": {"actor": [{"role": {"coding": [{"system": CST, "code": "CST"}]},
            "reference": {"reference": format!("Organization/{org}")}}]}}),
    )
}

fn without_recorder(mut c: Value) -> Value {
    c.as_object_mut().unwrap().remove("extension");
    c
}

fn claiming(mut c: Value, recorded_as: &str) -> Value {
    c["extension"] = json!([{"url": "urn:kanta:ext:recorded-as", "valueCode": recorded_as}]);
    c
}

/// High finding 1: a clinician client with no professional named and no purpose wrote consents
/// in the patient's name (lifted a prohibition, granted a consent, stored a living will "recorded
/// by the patient in MyKanta"). Now: a system records a choice only as the care unit, with the
/// professional and TREAT, the recorder stamped from the request.
pub async fn a_patients_choice_is_recorded_only_as_a_care_unit(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tt) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    post(
        &app,
        &hus,
        prohibition_of(&pid, "org-hus", "2026-11-20T08:00:00+02:00"),
    )
    .await;
    assert_eq!(sees(&app, &tt, &pid, &[&hus_cond]).await.1, [false]);
    let mut lift = prohibition_of(&pid, "org-hus", "2026-11-21T08:00:00+02:00");
    lift["status"] = json!("inactive");
    let will = kanta_consent(
        "living-will",
        &pid,
        "2026-11-21T08:00:00+02:00",
        json!({"extension": [{"url": "urn:kanta:ext:living-will", "extension": [{"url": "life-sustaining", "valueString": "ei elvytystä"}]}]}),
    );
    let full = [
        ("x-kanta-professional", "urn:oid:1.2.246.537.26|200"),
        ("x-kanta-purpose-of-use", "TREAT"),
    ];
    // No professional, no purpose, another purpose, an emergency: refused, and nothing changes.
    for headers in [
        vec![],
        vec![full[0]],
        vec![full[1]],
        vec![full[0], ("x-kanta-purpose-of-use", "HRESCH")],
        vec![
            full[0],
            ("x-kanta-purpose-of-use", "ETREAT"),
            ("x-kanta-emergency-reason", "tajuton"),
        ],
    ] {
        for body in [&lift, &without_recorder(lift.clone()), &will] {
            let (s, v) = write_with(&app, &tt, Method::POST, "/fhir/Consent", &headers, body).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{headers:?}: {v}");
        }
    }
    // In the patient's, a guardian's or a proxy's name: refused even with the headers (a code
    // that is none of them is not a Kanta consent's at all).
    for who in ["self", "guardian", "proxy", "somebody"] {
        for body in [claiming(lift.clone(), who), claiming(will.clone(), who)] {
            let (s, v) = write_with(&app, &tt, Method::POST, "/fhir/Consent", &full, &body).await;
            let want = if who == "somebody" {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(s, want, "{who}: {v}");
        }
    }
    assert_eq!(sees(&app, &tt, &pid, &[&hus_cond]).await.1, [false]);
    // As the care unit (the body names no recorder, or the care unit): recorded, with the
    // recorder stamped from the request, whatever the body said of its performer.
    let (s, v) = write_with(&app, &tt, Method::POST, "/fhir/Consent", &full, &will).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["extension"][0],
        json!({"url": "urn:kanta:ext:recorded-as", "valueCode": "care-unit"})
    );
    assert_eq!(
        v["performer"],
        json!([
            {"type": "Practitioner", "identifier": {"system": "urn:kanta:ns:professional", "value": "urn:oid:1.2.246.537.26|200"}},
            {"type": "Organization", "identifier": {"system": "urn:kanta:ns:organisation", "value": "org-terveystalo"}},
        ])
    );
    let (s, v) = write_with(
        &app,
        &tt,
        Method::POST,
        "/fhir/Consent",
        &full,
        &without_recorder(lift.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The care unit's lifting at the patient's request is in force, and audited as the change it
    // is, with the professional and the purpose.
    assert_eq!(sees(&app, &tt, &pid, &[&hus_cond]).await.1, [true]);
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let records = store.audit_of_patient(key, None, 200).await.unwrap();
    let created = records
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .find(|r| {
            r["action"] == "create"
                && r["actor"]["org"] == "org-terveystalo"
                && r["entities"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|x| x.as_str().is_some_and(|x| x.starts_with("Consent/")))
                })
        })
        .expect("the recording's audit record");
    assert_eq!(
        created["actor"]["professional"],
        "urn:oid:1.2.246.537.26|200"
    );
    assert_eq!(created["basis"]["purpose"], "TREAT");
    app.finish().await;
}

/// High finding 2: a producer holding a store-only mandate for an hour wrote, under
/// `X-Kanta-Register-Of`, an open-ended read mandate naming itself into the organiser's register
/// and then read all the organiser's records over the patient's prohibition.
pub async fn a_producer_cannot_widen_its_own_mandate(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tays) = (
        app.token("clinician").await,
        app.token("clinician-tays").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    post(
        &app,
        &hus,
        prohibition_of(&pid, "org-hus", "2026-11-20T08:00:00+02:00"),
    )
    .await;
    let mandate = |actions: &[&str], end: Option<&str>| {
        let mut period = json!({"start": "2026-11-24T11:00:00Z"});
        if let Some(e) = end {
            period["end"] = json!(e);
        }
        let action: Vec<Value> = actions
            .iter()
            .map(|a| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": a}]}))
            .collect();
        kanta_consent(
            "purchased-service-mandate",
            &pid,
            "2026-11-24T11:00:00Z",
            json!({"organization": [{"reference": "Organization/org-hus"}],
                "provision": {"period": period, "action": action,
                    "actor": [{"role": {"coding": [{"system": CST, "code": "PRF"}]}, "reference": {"reference": "Organization/org-tays"}}]}}),
        )
    };
    // HUS grants Tays a store-only mandate for one hour.
    post(
        &app,
        &hus,
        mandate(&["collect"], Some("2026-11-24T13:00:00Z")),
    )
    .await;
    assert_eq!(sees(&app, &tays, &pid, &[&hus_cond]).await.1, [false]);
    let into_hus = [
        ("x-kanta-register-of", "org-hus"),
        ("x-kanta-professional", "p"),
        ("x-kanta-purpose-of-use", "TREAT"),
    ];
    // Tays writes itself an open-ended read mandate into HUS's register: refused, as is any
    // consent, prohibition, task or prescription there.
    let wider = without_recorder(mandate(&["access", "collect"], None));
    let (s, v) = write_with(
        &app,
        &tays,
        Method::POST,
        "/fhir/Consent",
        &into_hus,
        &wider,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let mut lift = without_recorder(prohibition_of(&pid, "org-hus", "2026-11-24T11:30:00Z"));
    lift["status"] = json!("inactive");
    let (s, v) = write_with(&app, &tays, Method::POST, "/fhir/Consent", &into_hus, &lift).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Nor in its own name (a mandate is stored by its organiser).
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Consent",
            Some(&tays),
            Some(wider.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(sees(&app, &tays, &pid, &[&hus_cond]).await.1, [false]);
    // What the mandate grants it still does: a new clinical record into HUS's register, audited
    // as a purchased service.
    let condition = json!({"resourceType": "Condition", "code": {"text": "Fysioterapiajakso"},
        "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": "2026-11-24"});
    let (s, v) = write_with(
        &app,
        &tays,
        Method::POST,
        "/fhir/Condition",
        &into_hus,
        &condition,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let written = format!("Condition/{}", v["id"].as_str().unwrap());
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let rec = store
        .audit_of_patient(key, None, 200)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .find(|r| r["action"] == "create" && r["entities"][0] == json!(written))
        .expect("the producer's write's audit record");
    assert_eq!(rec["basis"]["ground"], "purchased-service");
    assert_eq!(rec["actor"]["org"], "org-tays");
    // A new version of the organiser's record is the organiser's, mandate or not.
    let mut v2 = condition.clone();
    v2["id"] = json!(written.trim_start_matches("Condition/"));
    let (s, _) = write_with(
        &app,
        &tays,
        Method::PUT,
        &format!("/fhir/{written}"),
        &into_hus,
        &v2,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.finish().await;
}

/// Medium finding: `vread` and `_history` released older versions of a record that is now
/// prohibited (each version judged by its own tags), and `_history` answered 200 where the read
/// answered 404.
pub async fn older_versions_are_released_only_as_the_current_one(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tt) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    // Version 2 moves the record into HUS's occupational-health register (4), which the patient
    // then prohibits: version 1 (register 2) is not covered by its own tags, but is the same
    // record.
    let (s, v, _) = app
        .send(Method::GET, &format!("/fhir/{hus_cond}"), Some(&hus), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut v2 = v.clone();
    v2["meta"] = json!({"tag": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "4"}]});
    let (s, v, _) = app
        .send(
            Method::PUT,
            &format!("/fhir/{hus_cond}"),
            Some(&hus),
            Some(v2),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let paths = [
        format!("/fhir/{hus_cond}"),
        format!("/fhir/{hus_cond}/_history/1"),
        format!("/fhir/{hus_cond}/_history/2"),
        format!("/fhir/{hus_cond}/_history"),
    ];
    for p in &paths {
        let (s, _, _) = app.send(Method::GET, p, Some(&tt), None).await;
        assert_eq!(s, StatusCode::OK, "{p} before the prohibition");
    }
    post(
        &app,
        &hus,
        kanta_consent(
            "disclosure-prohibition",
            &pid,
            "2026-11-22T08:00:00+02:00",
            json!({"provision": {"actor": [{"role": {"coding": [{"system": CST, "code": "CST"}]},
                "reference": {"reference": "Organization/org-hus"}}],
                "code": [{"coding": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "4"}]}]}}),
        ),
    )
    .await;
    let (_, unknown, _) = app
        .send(
            Method::GET,
            "/fhir/Condition/no-such-record/_history",
            Some(&tt),
            None,
        )
        .await;
    for p in &paths {
        let (s, v, _) = app.send(Method::GET, p, Some(&tt), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}: {v}");
        assert_eq!(v["issue"][0]["code"], unknown["issue"][0]["code"], "{p}");
    }
    // The holder still reads every version.
    for p in &paths {
        let (s, _, _) = app.send(Method::GET, p, Some(&hus), None).await;
        assert_eq!(s, StatusCode::OK, "{p} for the holder");
    }
    app.finish().await;
}

/// Medium findings: a record tagged with two registers escaped a prohibition of the first (the reader kept the last); a
/// record whose `context` had an unexpected shape lost its service event to the rule while the
/// visits index kept it.
pub async fn a_prohibition_covers_what_its_tags_cannot_tell(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, hus_enc, _, _, _) = patient_in_two_registers(&app).await;
    let (hus, tt) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    let condition = |tags: Value, extra: Value| {
        let mut c = json!({"resourceType": "Condition", "code": {"text": "Salainen"},
            "meta": {"tag": tags}, "subject": {"reference": format!("Patient/{pid}")},
            "recordedDate": "2026-11-20"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let reg = |code: &str| json!({"system": "urn:oid:1.2.246.537.5.40150", "code": code});
    let two_registers = post(
        &app,
        &hus,
        condition(json!([reg("4"), reg("2")]), json!({})),
    )
    .await;
    let odd_context = post(
        &app,
        &hus,
        condition(
            json!([reg("2")]),
            json!({"encounter": {"reference": hus_enc}, "context": "odd"}),
        ),
    )
    .await;
    let (two, odd) = (
        format!("Condition/{two_registers}"),
        format!("Condition/{odd_context}"),
    );
    assert_eq!(sees(&app, &tt, &pid, &[&two, &odd]).await.1, [true, true]);
    // A prohibition of register 4 covers the record tagged 2 and 4.
    post(
        &app,
        &hus,
        kanta_consent(
            "disclosure-prohibition",
            &pid,
            "2026-11-22T08:00:00+02:00",
            json!({"provision": {"actor": [{"role": {"coding": [{"system": CST, "code": "CST"}]},
                "reference": {"reference": "Organization/org-hus"}}],
                "code": [{"coding": [{"system": "urn:oid:1.2.246.537.5.40150", "code": "4"}]}]}}),
        ),
    )
    .await;
    assert_eq!(sees(&app, &tt, &pid, &[&two, &odd]).await.1, [false, true]);
    // A prohibition of the visit covers the record however its `context` is shaped.
    post(
        &app,
        &hus,
        kanta_consent(
            "disclosure-prohibition",
            &pid,
            "2026-11-22T09:00:00+02:00",
            json!({"provision": {"actor": [{"role": {"coding": [{"system": CST, "code": "CST"}]},
                "reference": {"reference": "Organization/org-hus"}}],
                "data": [{"meaning": "related", "reference": {"reference": hus_enc}}]}}),
        ),
    )
    .await;
    assert_eq!(sees(&app, &tt, &pid, &[&two, &odd]).await.1, [false, false]);
    app.finish().await;
}

/// Low finding: write errors confirmed other registers' record ids — 403 for the same patient's,
/// a 422 "belongs to another patient" for another patient's. Now both answer as a refused update.
pub async fn another_registers_ids_get_one_answer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tt) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
    );
    // Terveystalo's own patient.
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Patient",
            Some(&tt),
            Some(patient("010594Y9032")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let other = v["id"].as_str().unwrap().to_string();
    let (s, same_patient, _) = app
        .send(Method::GET, &format!("/fhir/{hus_cond}"), Some(&hus), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut moved = same_patient.clone();
    moved["subject"] = json!({"reference": format!("Patient/{other}")});
    let id = hus_cond.trim_start_matches("Condition/");
    let mut answers = vec![];
    for body in [same_patient, moved] {
        let (s, v, _) = app
            .send(
                Method::PUT,
                &format!("/fhir/Condition/{id}"),
                Some(&tt),
                Some(body),
            )
            .await;
        answers.push((
            s,
            v["issue"][0]["code"].clone(),
            v["issue"][0]["diagnostics"].clone(),
        ));
    }
    assert_eq!(answers[0].0, StatusCode::FORBIDDEN, "{answers:?}");
    assert_eq!(answers[0], answers[1]);
    app.finish().await;
}

/// Medium finding: one organisation wrote 10,001 consents for a patient, and every other
/// provider's read of that patient then failed (emergency reads included). Now a system's
/// recordings are bounded per patient and writer, and one that changes nothing is refused.
pub async fn a_patients_consents_are_bounded_per_writer(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let (hus, tt, tays) = (
        app.token("clinician").await,
        app.token("clinician-tt").await,
        app.token("clinician-tays").await,
    );
    inform_and_consent(&app, &hus, &pid).await;
    let consent_from = |day: u32| {
        without_recorder(kanta_consent(
            "disclosure-consent",
            &pid,
            "2026-11-23T08:00:00+02:00",
            json!({"provision": {
                "code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}],
                "period": {"start": format!("2026-{:02}-{:02}", 1 + day / 28, 1 + day % 28)}}}),
        ))
    };
    // The same choice again changes nothing: refused, whoever records it.
    let same = without_recorder(kanta_consent(
        "disclosure-consent",
        &pid,
        "2026-11-23T08:00:00+02:00",
        json!({"provision": {"code": [{"coding": [{"system": "urn:kanta:cs:care-domain", "code": "health"}]}]}}),
    ));
    for token in [&hus, &tt] {
        let (s, v, _) = app
            .send(
                Method::POST,
                "/fhir/Consent",
                Some(token),
                Some(same.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    }
    // Terveystalo records changes until it holds the most one organisation may.
    let max = kanta_store::CONSENTS_PER_WRITER_MAX;
    for day in 0..max as u32 {
        let (s, v, _) = app
            .send(
                Method::POST,
                "/fhir/Consent",
                Some(&tt),
                Some(consent_from(day)),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{day}: {v}");
    }
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Consent",
            Some(&tt),
            Some(consent_from(max as u32)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Another organisation still records, and every provider still reads the patient.
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Consent",
            Some(&hus),
            Some(consent_from(max as u32 + 1)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(sees(&app, &tays, &pid, &[&hus_cond]).await.1, [true]);
    let r = app
        .http
        .get(format!("{}/fhir/{hus_cond}", app.base))
        .bearer_auth(&tays)
        .header("x-kanta-professional", "p")
        .header("x-kanta-purpose-of-use", "ETREAT")
        .header("x-kanta-emergency-reason", "tajuton")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.finish().await;
}

/// Low finding: a client holding two roles was audited as the operator for every read, and its
/// reads of patient data were missing from the citizen's disclosure log. Now each record names
/// the role that carried the permit.
pub async fn a_two_role_client_is_audited_by_the_role_it_used(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, _, hus_cond, _, _) = patient_in_two_registers(&app).await;
    let dual = app.token("dual").await;
    let (s, v, _) = app
        .send(Method::GET, &format!("/fhir/{hus_cond}"), Some(&dual), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let rec = store
        .audit_of_patient(key, None, 200)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
        .find(|r| r["action"] == "read" && r["entities"][0] == json!(hus_cond))
        .expect("the read's audit record");
    assert_eq!(rec["basis"]["role"], "clinician", "{rec}");
    assert_eq!(rec["actor"]["org"], "org-hus", "{rec}");
    assert_eq!(rec["actor"]["client_id"], "dual", "{rec}");
    app.finish().await;
}

/// Issue 30: a search reads on past records the disclosure rule refuses only so far — by count and
/// by a deadline (here zero: one read) — and then ends after the last record it kept; with the
/// defaults it reads on and finds the record behind them.
pub async fn the_scan_past_refused_records_is_bounded(b: Backend) {
    for tiny in [true, false] {
        let db = kanta_store::testing::TestDb::new(b).await;
        let app = TestApp::spawn_limits(db, 1 << 20, |l| {
            if tiny {
                l.search_scan_deadline = std::time::Duration::ZERO;
            }
        })
        .await;
        let (pid, _, _, _, _) = patient_in_two_registers(&app).await;
        let (hus, tays) = (
            app.token("clinician").await,
            app.token("clinician-tays").await,
        );
        inform_and_consent(&app, &hus, &pid).await;
        // Ten newer HUS records, then HUS prohibited: Tays's search meets them first, and behind
        // them Terveystalo's record, which Tays may read.
        for day in 10..20 {
            post(
                &app,
                &hus,
                json!({"resourceType": "Condition", "code": {"text": "HUS"},
                    "subject": {"reference": format!("Patient/{pid}")}, "recordedDate": format!("2026-11-{day}")}),
            )
            .await;
        }
        post(
            &app,
            &hus,
            prohibition_of(&pid, "org-hus", "2026-11-22T08:00:00+02:00"),
        )
        .await;
        let (s, v, _) = app
            .send(
                Method::GET,
                &format!("/fhir/Condition?patient=Patient/{pid}&_count=1"),
                Some(&tays),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let found = v["entry"].as_array().map_or(0, Vec::len);
        assert_eq!(found, if tiny { 0 } else { 1 }, "tiny deadline {tiny}: {v}");
        app.finish().await;
    }
}
