//! Bounds on what clients send (issue "bounded inputs and secrets", in part).

use super::*;

/// A client's `x-request-id` is echoed, logged and kept in the append-only audit log: one that is
/// too long or carries other characters is replaced by a fresh one.
pub async fn request_ids_are_bounded(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = p["id"].as_str().unwrap().to_string();
    let long = "a".repeat(200_000);
    for (sent, kept) in [
        ("req-1.ok_A", true),
        (long.as_str(), false),
        ("tab\there", false),
        ("semi;colon", false),
        (&"b".repeat(65)[..], false),
    ] {
        let r = app
            .http
            .get(format!("{}/fhir/Patient/{id}", app.base))
            .bearer_auth(&t)
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(
            echoed.len() <= kanta_web::MAX_REQUEST_ID,
            "{}",
            echoed.len()
        );
        assert_eq!(echoed == sent, kept, "{}", &sent[..sent.len().min(20)]);
    }
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(&id).await.unwrap().unwrap();
    for r in store.audit_of_patient(key, None, 100).await.unwrap() {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let rid = v["request_id"].as_str().unwrap_or("");
        assert!(
            rid.len() <= kanta_web::MAX_REQUEST_ID,
            "stored {}",
            rid.len()
        );
    }
    app.finish().await;
}

/// `.` and `..` match R4's id pattern but URLs lose them as dot segments: refused. A base URL
/// written with a trailing slash takes transactions too.
pub async fn dot_ids_and_trailing_slash(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    for dots in [".", ".."] {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": dots, "identifier": [{"system": "urn:oid:1.2.246.21", "value": HETU}]},
             "request": {"method": "PUT", "url": format!("Patient/{dots}")}}]});
        let (s, v, _) = app
            .send(Method::POST, "/fhir/", Some(&t), Some(bundle))
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
            "{dots}: {s} {v}"
        );
        assert_eq!(v["resourceType"], "OperationOutcome");
    }
    let (s, v, _) = app
        .send(Method::POST, "/fhir/", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::OK, Some("transaction-response")),
        "{v}"
    );
    app.finish().await;
}

/// Bundle entries, references per resource and search values have documented bounds, each
/// answered with an OperationOutcome naming it.
pub async fn bundles_references_and_searches_are_bounded(b: Backend) {
    let app = TestApp::spawn_with(b, 8 << 20).await;
    let t = app.token("clinician").await;
    let (_, p, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    let pid = p["id"].as_str().unwrap().to_string();
    let obs = |n: usize| {
        let performers: Vec<Value> = (0..n)
            .map(|_| json!({"reference": format!("Patient/{pid}")}))
            .collect();
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{pid}")}, "performer": performers})
    };
    let max = kanta_web::Limits::default();
    let entries: Vec<Value> = (0..=max.max_bundle_entries)
        .map(|_| json!({"resource": obs(0), "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    let big = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let (s, v, _) = app.send(Method::POST, "/fhir", Some(&t), Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v.to_string().contains("max_bundle_entries"), "{v}");
    // References: the subject plus the performers.
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Observation",
            Some(&t),
            Some(obs(max.max_references_per_resource)),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("max_references_per_resource"), "{v}");
    let (s, v, _) = app
        .send(
            Method::POST,
            "/fhir/Observation",
            Some(&t),
            Some(obs(max.max_references_per_resource - 1)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // A search value that would fill the audit log.
    let long = "9".repeat(max.max_search_value + 1);
    let (s, v, _) = app
        .send(
            Method::GET,
            &format!("/fhir/Observation?patient=Patient/{pid}&_count={long}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["resourceType"], "OperationOutcome");
    app.finish().await;
}

/// A conditional create that finds the existing Patient read it: its audit record says read.
pub async fn a_conditional_create_that_finds_is_a_read(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    let (s, first, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, second, _) = app
        .send(Method::POST, "/fhir", Some(&t), Some(visit(HETU, None)))
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(second["entry"][0]["response"]["status"], "200 OK");
    let pid = second["entry"][0]["resource"]["id"].as_str().unwrap();
    let store = &app.db.as_ref().unwrap().store;
    let key = store.patient_key_of(pid).await.unwrap().unwrap();
    let records: Vec<Value> = store
        .audit_of_patient(key, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    // Newest first: the second Bundle's records.
    let newest = records[0]["request_id"].clone();
    let second_bundle: Vec<&Value> = records
        .iter()
        .filter(|r| r["request_id"] == newest)
        .collect();
    let read = second_bundle
        .iter()
        .find(|r| r["action"] == "read")
        .expect("the matched Patient audited as read");
    assert_eq!(read["entities"], json!([format!("Patient/{pid}")]));
    let created = second_bundle
        .iter()
        .find(|r| r["action"] == "create")
        .unwrap();
    assert!(!created["entities"]
        .to_string()
        .contains(&format!("Patient/{pid}")));
    app.finish().await;
}

/// A path that is not UTF-8 once decoded gets an OperationOutcome, not plain text. (A query
/// string is decoded leniently, invalid bytes becoming U+FFFD, so it needs no such answer.)
pub async fn malformed_paths_get_an_operation_outcome(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.token("clinician").await;
    for path in [
        "/fhir/Patient/%FF%FE",
        "/fhir/%C3%28",
        "/fhir/Patient/x/_history/%FF",
    ] {
        let (s, v, h) = app.send(Method::GET, path, Some(&t), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["resourceType"], "OperationOutcome", "{path}: {v}");
        assert!(h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json"));
    }
    app.finish().await;
}

/// A request whose headers never finish is closed after the header read timeout (slow-loris),
/// instead of holding a connection open indefinitely.
pub async fn half_sent_headers_are_closed(b: Backend) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn(b).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    // Well past the 2 s timeout of the test app: the server must have closed by then.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue, // a 408 before closing is fine
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the half-sent request was not closed");
    // A complete request on a new connection is still served.
    let (s, _, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    app.finish().await;
}

/// Issue 30: a body that trickles in is answered 408 once the body deadline passes (2 s here),
/// and the connections served at once are capped (64 here): held ones (headers half-sent) keep a
/// new request waiting only until the header deadline closes them.
pub async fn slow_bodies_and_idle_connections_are_bounded(b: Backend) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn(b).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut got = Vec::new();
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        return got;
                    }
                }
            }
        }
    })
    .await
    .expect("the trickling body was neither answered nor closed");
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    // 64 connections holding half-sent headers: a new request waits, and is served once the
    // header deadline has closed them.
    let mut held = vec![];
    for _ in 0..64 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        held.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (s, _, _) = app.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1000),
        "served past the cap of connections at once"
    );
    drop(held);
    app.finish().await;
}
