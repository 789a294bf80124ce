//! Concurrency and transactions (issue 17): `If-Match` under concurrent updates, its edge cases,
//! inside a transaction, and a transaction that fails in its middle leaving nothing of itself.

use super::*;

fn put_req(
    app: &TestApp,
    t: &str,
    path: &str,
    body: &Value,
    etag: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = app
        .http
        .put(format!("{}{path}", app.base))
        .bearer_auth(t)
        .header("content-type", "application/fhir+json")
        .body(body.to_string());
    if let Some(e) = etag {
        r = r.header("if-match", e);
    }
    r
}

/// Eight updates of the same version at once: exactly one wins, the others get 412, and the
/// stored history has the winner's version and no other (no lost update).
pub async fn concurrent_updates_of_one_version(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = p["id"].as_str().unwrap().to_string();
    let path = format!("/fhir/Patient/{id}");
    let mut tasks = vec![];
    for k in 0..8 {
        let mut v = patient(HETU);
        v["id"] = json!(id);
        v["name"][0]["family"] = json!(format!("Writer{k}"));
        let req = put_req(&app, &t, &path, &v, Some("W/\"1\""));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (k, r.status())
        }));
    }
    let mut winners = vec![];
    for task in tasks {
        let (k, s) = task.await.unwrap();
        match s {
            StatusCode::OK => winners.push(k),
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("writer {k}: {other}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one update of version 1 wins: {winners:?}"
    );
    let (_, cur, _) = app.send(Method::GET, &path, Some(&t), None).await;
    assert_eq!(cur["meta"]["versionId"], "2");
    assert_eq!(cur["name"][0]["family"], format!("Writer{}", winners[0]));
    let (_, hist, _) = app
        .send(Method::GET, &format!("{path}/_history"), Some(&t), None)
        .await;
    assert_eq!(hist["total"], 2, "{hist}");
    app.finish().await;
}

/// A malformed `If-Match` is a 400; `If-Match` on a resource that does not exist creates nothing;
/// a stale `ifMatch` inside a transaction fails the whole Bundle.
pub async fn if_match_edge_cases(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    let path = format!("/fhir/Patient/{id}");
    let mut v = patient(HETU);
    v["id"] = json!(id);
    for bad in [
        "garbage",
        "W/\"x\"",
        "W/\"\"",
        "\"1",
        "W/\"1",
        "1",
        "W/\"0\"",
        "W/\"-1\"",
        "W/\"1\" x",
    ] {
        let r = put_req(&app, &t, &path, &v, Some(bad))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "If-Match {bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["resourceType"],
            "OperationOutcome"
        );
    }
    // Not stored yet: no version can match; nothing is created.
    let mut ghost = patient(CHILD);
    ghost["id"] = json!("ghost-1");
    let r = put_req(&app, &t, "/fhir/Patient/ghost-1", &ghost, Some("W/\"1\""))
        .send()
        .await
        .unwrap();
    assert!(
        !r.status().is_success(),
        "If-Match on a missing resource: {}",
        r.status()
    );
    let (s, _, _) = app
        .send(Method::GET, "/fhir/Patient/ghost-1", Some(&t), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Version 1 → 2 outside; a transaction naming version 1 fails whole.
    assert_eq!(
        put_req(&app, &t, &path, &v, Some("W/\"1\""))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let mut stale = v.clone();
    stale["name"][0]["family"] = json!("Stale");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Encounter", "id": "tx-enc-1", "status": "finished", "class": {"code": "AMB"},
          "subject": {"reference": format!("Patient/{id}")}}, "request": {"method": "PUT", "url": "Encounter/tx-enc-1"}},
        {"resource": stale, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"1\""}},
    ]});
    let (s, oo, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(bundle))
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{oo}");
    let (_, cur, _) = app.send(Method::GET, &path, Some(&t), None).await;
    assert_eq!(
        (
            cur["meta"]["versionId"].as_str(),
            cur["name"][0]["family"].as_str()
        ),
        (Some("2"), Some("Virtanen"))
    );
    let (s, _, _) = app
        .send(Method::GET, "/fhir/Encounter/tx-enc-1", Some(&t), None)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "an entry of the failed Bundle was kept"
    );
    app.finish().await;
}

/// A transaction that fails in its middle (a duplicate HETU, a stale version) leaves no entry of
/// itself, whatever came before the failing one: every entry is looked for afterwards.
pub async fn a_bundle_failing_midway_leaves_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, _, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for (case, failing) in [
        // A second Patient with an existing HETU, without a condition: 409.
        (
            "duplicate",
            json!({"resource": patient(HETU), "request": {"method": "POST", "url": "Patient"}}),
        ),
        // A version that is not the current one.
        (
            "stale",
            json!({"resource": {"resourceType": "Encounter", "id": "mid-enc", "status": "finished", "class": {"code": "AMB"},
              "subject": {"reference": "Patient/mid-p"}}, "request": {"method": "PUT", "url": "Encounter/mid-enc", "ifMatch": "W/\"7\""}}),
        ),
    ] {
        let mut child = patient(CHILD);
        child["id"] = json!("mid-p");
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": child, "request": {"method": "PUT", "url": "Patient/mid-p"}},
            {"resource": {"resourceType": "Encounter", "id": "mid-enc-0", "status": "finished", "class": {"code": "AMB"},
              "subject": {"reference": "Patient/mid-p"}}, "request": {"method": "PUT", "url": "Encounter/mid-enc-0"}},
            {"resource": {"resourceType": "Observation", "id": "mid-obs", "status": "final", "code": {"text": "B -Hb"},
              "subject": {"reference": "Patient/mid-p"}, "encounter": {"reference": "Encounter/mid-enc-0"}},
              "request": {"method": "PUT", "url": "Observation/mid-obs"}},
            failing,
            {"resource": {"resourceType": "Condition", "id": "mid-cond", "code": {"text": "J06.9"},
              "subject": {"reference": "Patient/mid-p"}}, "request": {"method": "PUT", "url": "Condition/mid-cond"}},
        ]});
        let (s, oo, _) = app
            .send(Method::POST, "/fhir", Some(&t), Some(bundle))
            .await;
        assert!(
            s == StatusCode::CONFLICT || s == StatusCode::PRECONDITION_FAILED,
            "{case}: {s} {oo}"
        );
        assert_eq!(oo["resourceType"], "OperationOutcome");
        for path in [
            "/fhir/Patient/mid-p",
            "/fhir/Encounter/mid-enc-0",
            "/fhir/Observation/mid-obs",
            "/fhir/Encounter/mid-enc",
            "/fhir/Condition/mid-cond",
        ] {
            let (s, _, _) = app.send(Method::GET, path, Some(&t), None).await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "{case}: {path} survived the failed Bundle"
            );
        }
        let (_, found, _) = app
            .send(
                Method::GET,
                &format!("/fhir/Patient?identifier=urn:oid:1.2.246.21|{CHILD}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(
            found["entry"].as_array().map(Vec::len),
            Some(0),
            "{case}: {found}"
        );
    }
    app.finish().await;
}

/// R-OPS-4: the archivist view and the operator's log-data export fail closed when the audit log
/// cannot be written (503, nothing of the answer sent), and work again when it can.
pub async fn archivist_and_export_fail_closed(b: Backend) {
    use std::sync::atomic::Ordering::SeqCst;
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (_, resp, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    let obs = resp["entry"][2]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let arch = app.token("archivist").await;
    let op = app.token("operator").await;
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueIdentifier": {"system": "urn:oid:1.2.246.21", "value": HETU}}]});
    let look = format!("/archivist/documents/Observation/{obs}");
    let faults = app.audit.faults();
    for (what, method, path, token, body) in [
        ("archivist", Method::GET, look.as_str(), arch.as_str(), None),
        (
            "export",
            Method::POST,
            "/operator/audit/export",
            op.as_str(),
            Some(params.clone()),
        ),
    ] {
        faults.from.store(faults.batches() + 1, SeqCst);
        let (s, v, _) = app
            .send(method.clone(), path, Some(token), body.clone())
            .await;
        faults.from.store(0, SeqCst);
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{what}: {v}");
        assert_eq!(v["resourceType"], "OperationOutcome", "{what}: {v}");
        assert!(
            !v.to_string().contains("Observation/"),
            "{what} leaked: {v}"
        );
        let (s, v, _) = app.send(method, path, Some(token), body).await;
        assert_eq!(s, StatusCode::OK, "{what} after the log recovered: {v}");
    }
    app.finish().await;
}
