//! The Prescription Centre over HTTP (issue 13; R-RX-1, R-RX-2, R-ACT-1, R-ACT-11): a prescriber
//! writes, a pharmacy finds, reserves and dispenses in parts, the prescriber's unit answers a
//! renewal request; corrections and cancellations; and exactly-once dispensing under contention.

use super::*;

/// The patient and the organisations the tasks name; returns the patient id.
async fn setup(app: &TestApp) -> String {
    let op = app.token("operator").await;
    for (id, name) in [
        ("org-hus", "HUS"),
        ("org-apteekki", "Apteekki"),
        ("org-apteekki-2", "Toinen apteekki"),
        ("org-kanta-operator", "Kanta"),
    ] {
        let (s, v, _) = app
            .send(
                Method::PUT,
                &format!("/fhir/Organization/{id}"),
                Some(&op),
                Some(json!({"resourceType": "Organization", "id": id, "name": name})),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let t = app.token("clinician").await;
    let (s, v, _) = app
        .send(Method::POST, "/fhir/Patient", Some(&t), Some(patient(HETU)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn part(rx: &Value, name: &str) -> Value {
    rx["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:kanta:ext:prescription-state")
        .unwrap()["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == name)
        .map(|p| {
            p.as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.starts_with("value"))
                .unwrap()
                .1
                .clone()
        })
        .unwrap_or(Value::Null)
}

fn task(pid: &str, rx: &str, code: &str, status: &str, owner: Option<&str>) -> Value {
    let mut t = json!({"resourceType": "Task", "status": status, "intent": "order",
        "code": {"coding": [{"system": "urn:kanta:cs:prescription-task", "code": code}]},
        "focus": {"reference": format!("MedicationRequest/{rx}")},
        "for": {"reference": format!("Patient/{pid}")}, "authoredOn": "2026-11-24T12:00:00Z"});
    if let Some(o) = owner {
        t["owner"] = json!({"reference": format!("Organization/{o}")});
    }
    t
}

async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let (s, v, _) = app.send(Method::GET, path, Some(token), None).await;
    (s, v)
}

async fn post_to(app: &TestApp, token: &str, t: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = app
        .send(Method::POST, &format!("/fhir/{t}"), Some(token), Some(body))
        .await;
    (s, v)
}

async fn put_to(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let (s, v, _) = app.send(Method::PUT, path, Some(token), Some(body)).await;
    (s, v)
}

fn says(v: &Value, what: &str) -> bool {
    v["issue"][0]["diagnostics"]
        .as_str()
        .is_some_and(|d| d.contains(what))
}

/// Done means (issue 13): a prescriber writes a prescription, a pharmacy finds it, reserves it and
/// dispenses it in two parts (one a substitute, with its price difference), the prescriber's
/// system answers a renewal request with a new prescription; corrections and cancellations
/// behave as the rules say.
pub async fn prescriber_pharmacy_and_renewal(b: Backend) {
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let doc = app.token("clinician").await;
    let ph = app.token("pharmacy").await;
    let ph2 = app.token("pharmacy-2").await;

    // Checked against the medicines database, with the place of each fault.
    let mut bad = prescription(&me, "999999", 3);
    let (s, v) = post_to(&app, &doc, "MedicationRequest", bad.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "not in the medicines database"), "{v}");
    bad = prescription(&me, "401011", 3);
    bad["dosageInstruction"] = json!([]);
    let (s, v) = post_to(&app, &doc, "MedicationRequest", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "dose instructions"), "{v}");
    // A pharmacy does not prescribe.
    let (s, _) = post_to(
        &app,
        &ph,
        "MedicationRequest",
        prescription(&me, "401011", 3),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Three packages of 30: 90 tablets, valid two years.
    let (s, rx) = post_to(
        &app,
        &doc,
        "MedicationRequest",
        prescription(&me, "401011", 3),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{rx}");
    let id = rx["id"].as_str().unwrap().to_string();
    assert_eq!(part(&rx, "remaining"), json!(90));
    assert_eq!(part(&rx, "validUntil"), json!("2028-11-01T22:00:00.000Z"));
    let rx_path = format!("/fhir/MedicationRequest/{id}");

    // The pharmacy finds it among the patient's prescriptions.
    let (s, found) = get(&app, &ph, &format!("/fhir/MedicationRequest?patient={me}")).await;
    assert_eq!(s, StatusCode::OK, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], json!(id));

    // It reserves it: the other pharmacy sees the reservation and can neither reserve nor dispense.
    let (s, res) = post_to(
        &app,
        &ph,
        "Task",
        task(&pid, &id, "reservation", "in-progress", None),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{res}");
    assert_eq!(
        res["owner"]["reference"],
        json!("Organization/org-apteekki")
    );
    assert!(res["executionPeriod"]["end"].is_string());
    let (_, now) = get(&app, &ph2, &rx_path).await;
    assert_eq!(
        part(&now, "reservedBy")["reference"],
        json!("Organization/org-apteekki")
    );
    let (s, v) = post_to(
        &app,
        &ph2,
        "Task",
        task(&pid, &id, "reservation", "in-progress", None),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = post_to(
        &app,
        &ph2,
        "MedicationDispense",
        dispensation(&me, &id, "401011", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(says(&v, "reserved-elsewhere"), "{v}");

    // Substitution only within the substitution group.
    let (s, v) = post_to(
        &app,
        &ph,
        "MedicationDispense",
        dispensation(&me, &id, "402001", 1),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "substitution group"), "{v}");

    // First part: one package of the cheaper substitute, with its price and the difference.
    let (s, d1) = post_to(
        &app,
        &ph,
        "MedicationDispense",
        dispensation(&me, &id, "401012", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d1}");
    let ext = |v: &Value, url: &str| {
        v["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == url)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        ext(&d1, "urn:kanta:ext:retail-price")["valueMoney"]["value"],
        json!(5.9)
    );
    assert_eq!(
        ext(&d1, "urn:kanta:ext:price-difference")["valueMoney"]["value"],
        json!(-0.55)
    );
    let (_, now) = get(&app, &ph, &rx_path).await;
    assert_eq!(part(&now, "remaining"), json!(60));
    assert_eq!(
        part(&now, "reservedBy"),
        Value::Null,
        "dispensing ends the reservation"
    );
    assert_eq!(now["meta"]["versionId"], json!("3"));

    // Second part: the rest. Then nothing remains, and a third is refused.
    let (s, d2) = post_to(
        &app,
        &ph2,
        "MedicationDispense",
        dispensation(&me, &id, "401011", 2),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{d2}");
    let (_, now) = get(&app, &ph, &rx_path).await;
    assert_eq!(
        (part(&now, "remaining"), now["status"].clone()),
        (json!(0), json!("completed"))
    );
    let (s, v) = post_to(
        &app,
        &ph,
        "MedicationDispense",
        dispensation(&me, &id, "401011", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // More than remains is refused, never below zero; a cancelled dispensation gives back.
    let d2_id = d2["id"].as_str().unwrap().to_string();
    let mut cancel = d2.clone();
    cancel["status"] = json!("cancelled");
    let (s, v) = put_to(
        &app,
        &ph,
        &format!("/fhir/MedicationDispense/{d2_id}"),
        cancel.clone(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "another pharmacy's dispensation: {v}"
    );
    let (s, v) = put_to(
        &app,
        &ph2,
        &format!("/fhir/MedicationDispense/{d2_id}"),
        cancel.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = put_to(
        &app,
        &ph2,
        &format!("/fhir/MedicationDispense/{d2_id}"),
        cancel,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "cancelled once: {v}");
    let (_, now) = get(&app, &ph, &rx_path).await;
    assert_eq!(
        (part(&now, "remaining"), now["status"].clone()),
        (json!(60), json!("active"))
    );
    let (s, v) = post_to(
        &app,
        &ph,
        "MedicationDispense",
        dispensation(&me, &id, "401011", 3),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(says(&v, "exceeds-remaining"), "{v}");
    let (s, history) = get(
        &app,
        &ph,
        &format!("/fhir/MedicationDispense?prescription=MedicationRequest/{id}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{history}");
    assert_eq!(history["entry"].as_array().map_or(0, Vec::len), 2);

    // A correction states its justification and never goes below what was dispensed.
    let mut corr = now.clone();
    corr["dispenseRequest"]["quantity"]["value"] = json!(2);
    let (s, v) = put_to(&app, &doc, &rx_path, corr.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "justification"), "{v}");
    corr["extension"] =
        json!([{"url": "urn:kanta:ext:correction-justification", "valueString": "määrä korjattu"}]);
    corr["dispenseRequest"]["quantity"]["value"] = json!(2);
    let (s, v) = put_to(&app, &doc, &rx_path, corr.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(part(&v, "remaining"), json!(30));
    // Another organisation cannot correct it.
    let tays = app.token("clinician-tays").await;
    let (s, _) = put_to(&app, &tays, &rx_path, corr).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A renewal request from the pharmacy goes to the prescriber's unit's queue.
    let (s, req) = post_to(
        &app,
        &ph,
        "Task",
        task(&pid, &id, "renewal-request", "requested", None),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{req}");
    assert_eq!(req["owner"]["reference"], json!("Organization/org-hus"));
    let req_id = req["id"].as_str().unwrap().to_string();
    let (s, _) = get(&app, &ph, &format!("/fhir/Task/{req_id}")).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the unit's queue is the unit's (as if absent)"
    );
    let (s, _) = get(&app, &ph, "/fhir/Task?owner=Organization/org-hus").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, queue) = get(
        &app,
        &doc,
        "/fhir/Task?owner=Organization/org-hus&code=renewal-request&status=requested",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{queue}");
    assert_eq!(queue["entry"][0]["resource"]["id"], json!(req_id));
    // The unit renews: a new prescription, and the request completed with it.
    let mut renewed = prescription(&me, "401011", 3);
    renewed["authoredOn"] = json!("2026-11-24");
    renewed["priorPrescription"] = json!({"reference": format!("MedicationRequest/{id}")});
    let (s, new_rx) = post_to(&app, &doc, "MedicationRequest", renewed).await;
    let new_rx_id = new_rx["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(s, StatusCode::CREATED, "{new_rx}");
    let mut answer = req.clone();
    answer["status"] = json!("completed");
    let (s, v) = put_to(&app, &doc, &format!("/fhir/Task/{req_id}"), answer.clone()).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "answered with the new prescription: {v}"
    );
    answer["output"] = json!([{"type": {"text": "renewed"}, "valueReference": {"reference": format!("MedicationRequest/{}", new_rx["id"].as_str().unwrap())}}]);
    let (s, v) = put_to(&app, &doc, &format!("/fhir/Task/{req_id}"), answer.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = put_to(&app, &doc, &format!("/fhir/Task/{req_id}"), answer).await;
    assert_eq!(s, StatusCode::CONFLICT, "answered once: {v}");
    let (_, queue) = get(
        &app,
        &doc,
        "/fhir/Task?owner=Organization/org-hus&code=renewal-request&status=requested",
    )
    .await;
    assert!(
        queue["entry"].as_array().is_none_or(Vec::is_empty),
        "{queue}"
    );

    // Cancelled at the patient's request: nothing more is dispensed or renewed.
    let (_, now) = get(&app, &doc, &rx_path).await;
    let mut cancelled = now.clone();
    cancelled["status"] = json!("cancelled");
    let (s, v) = put_to(&app, &doc, &rx_path, cancelled.clone()).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a cancellation states its reason: {v}"
    );
    cancelled["statusReason"] = json!({"coding": [{"system": "urn:kanta:cs:prescription-cancellation", "code": "patient-request"}]});
    let (s, v) = put_to(&app, &doc, &rx_path, cancelled).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = post_to(
        &app,
        &ph,
        "MedicationDispense",
        dispensation(&me, &id, "401011", 1),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(says(&v, "cancelled"), "{v}");
    let (s, _) = post_to(
        &app,
        &ph,
        "Task",
        task(&pid, &id, "renewal-request", "requested", None),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Renewal prohibited by the prescriber: no renewal request.
    let mut no_renewal = prescription(&me, "402001", 1);
    no_renewal["extension"] =
        json!([{"url": "urn:kanta:ext:renewal-prohibited", "valueBoolean": true}]);
    let (s, nr) = post_to(&app, &doc, "MedicationRequest", no_renewal).await;
    assert_eq!(s, StatusCode::CREATED, "{nr}");
    let (s, v) = post_to(
        &app,
        &ph,
        "Task",
        task(
            &pid,
            nr["id"].as_str().unwrap(),
            "renewal-request",
            "requested",
            None,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(says(&v, "renewal-prohibited"), "{v}");
    // Tasks are filed by whom the rules say: a review request is the patient's (MyKanta), a
    // unit and the operator file none; the operator's queue is its own and empty here.
    for (who, code) in [
        ("pharmacy", "review-request"),
        ("clinician", "renewal-request"),
        ("operator", "renewal-request"),
        ("clinician", "reservation"),
    ] {
        let t = app.token(who).await;
        let (s, v) = post_to(
            &app,
            &t,
            "Task",
            task(
                &pid,
                nr["id"].as_str().unwrap(),
                code,
                if code == "reservation" {
                    "in-progress"
                } else {
                    "requested"
                },
                None,
            ),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who} {code}: {v}");
    }
    let op = app.token("operator").await;
    let (s, queue) = get(
        &app,
        &op,
        "/fhir/Task?owner=Organization/org-kanta-operator",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{queue}");
    assert!(
        queue["entry"].as_array().is_none_or(Vec::is_empty),
        "{queue}"
    );
    // One open renewal request at a time.
    let (s, _) = post_to(
        &app,
        &ph,
        "Task",
        task(&pid, &new_rx_id, "renewal-request", "requested", None),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = post_to(
        &app,
        &ph2,
        "Task",
        task(&pid, &new_rx_id, "renewal-request", "requested", None),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // The server keeps the state: what a client sends of it is not taken.
    let (_, mut forged) = get(
        &app,
        &doc,
        &format!("/fhir/MedicationRequest/{}", nr["id"].as_str().unwrap()),
    )
    .await;
    forged["extension"] = json!([{"url": "urn:kanta:ext:correction-justification", "valueString": "x"},
        {"url": "urn:kanta:ext:prescription-state", "extension": [{"url": "dispensed", "valueUnsignedInt": 0}, {"url": "total", "valueUnsignedInt": 999}]}]);
    let (s, v) = put_to(
        &app,
        &doc,
        &format!("/fhir/MedicationRequest/{}", nr["id"].as_str().unwrap()),
        forged,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(part(&v, "total"), json!(30));
    app.finish().await;
}

/// R-RX-2: eight pharmacies' systems dispense one package each of a prescription of three at the
/// same moment: exactly three succeed, the others get 409, and what was dispensed is exactly
/// what the prescription allowed (no over-dispensing).
pub async fn dispensing_is_exactly_once_under_contention(b: Backend) {
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let doc = app.token("clinician").await;
    for packages in [1u32, 3] {
        let (s, rx) = post_to(
            &app,
            &doc,
            "MedicationRequest",
            prescription(&me, "401011", packages),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{rx}");
        let id = rx["id"].as_str().unwrap().to_string();
        let tokens = [app.token("pharmacy").await, app.token("pharmacy-2").await];
        let mut all = vec![];
        for k in 0..8 {
            let req = app
                .http
                .post(format!("{}/fhir/MedicationDispense", app.base))
                .bearer_auth(&tokens[k % 2])
                .header("content-type", "application/fhir+json")
                .body(dispensation(&me, &id, "401011", 1).to_string());
            all.push(tokio::spawn(
                async move { req.send().await.unwrap().status() },
            ));
        }
        let mut statuses = vec![];
        for t in all {
            statuses.push(t.await.unwrap());
        }
        let won = statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        let lost = statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!(
            (won, lost),
            (packages as usize, 8 - packages as usize),
            "{statuses:?}"
        );
        let (_, now) = get(&app, &doc, &format!("/fhir/MedicationRequest/{id}")).await;
        assert_eq!(part(&now, "dispensed"), json!(30 * packages));
        assert_eq!(part(&now, "remaining"), json!(0));
        let ph = app.token("pharmacy").await;
        let (_, history) = get(
            &app,
            &ph,
            &format!("/fhir/MedicationDispense?prescription=MedicationRequest/{id}"),
        )
        .await;
        assert_eq!(
            history["entry"].as_array().map_or(0, Vec::len),
            packages as usize
        );
    }
    app.finish().await;
}

/// Bundles: two dispensations of one prescription in one transaction make one new version of it
/// (what remains falls by both); a prescription corrected and dispensed in one Bundle is refused
/// whole (its entry and its new state would be two versions of one number); nothing is half-written.
pub async fn prescription_bundles(b: Backend) {
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let doc = app.token("clinician").await;
    let ph = app.token("pharmacy").await;
    let (_, rx) = post_to(
        &app,
        &doc,
        "MedicationRequest",
        prescription(&me, "401011", 3),
    )
    .await;
    let id = rx["id"].as_str().unwrap().to_string();
    let entry = |r: Value| json!({"resource": r, "request": {"method": "POST", "url": "MedicationDispense"}});
    let two = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(dispensation(&me, &id, "401011", 1)), entry(dispensation(&me, &id, "401021", 1))]});
    let (s, v, _) = app.send(Method::POST, "/fhir", Some(&ph), Some(two)).await;
    // 401021 is not in this test database: the whole Bundle is refused, nothing dispensed.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (_, now) = get(&app, &ph, &format!("/fhir/MedicationRequest/{id}")).await;
    assert_eq!(
        (part(&now, "remaining"), now["meta"]["versionId"].clone()),
        (json!(90), json!("1"))
    );
    let two = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(dispensation(&me, &id, "401011", 1)), entry(dispensation(&me, &id, "401012", 1))]});
    let (s, v, _) = app.send(Method::POST, "/fhir", Some(&ph), Some(two)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["entry"].as_array().unwrap().len(),
        2,
        "the derived version is not an entry: {v}"
    );
    let (_, now) = get(&app, &ph, &format!("/fhir/MedicationRequest/{id}")).await;
    assert_eq!(
        (part(&now, "remaining"), now["meta"]["versionId"].clone()),
        (json!(30), json!("2"))
    );
    // Corrected and dispensed at once: refused whole, by the rule that says so — sent by a
    // hospital's system that may do both (clinician and pharmacy), so that no role refuses it
    // first (issue 30: the clinician's role refusal made the test pass).
    let both_roles = app.token("hospital-pharmacy").await;
    let mut corr = now.clone();
    corr["extension"] =
        json!([{"url": "urn:kanta:ext:correction-justification", "valueString": "x"}]);
    let both = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": corr, "request": {"method": "PUT", "url": format!("MedicationRequest/{id}")}},
        entry(dispensation(&me, &id, "401011", 1))]});
    let (s, v, _) = app
        .send(Method::POST, "/fhir", Some(&both_roles), Some(both))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        says(
            &v,
            "is written by this request and dispensed or reserved in it"
        ),
        "{v}"
    );
    let (_, after) = get(&app, &ph, &format!("/fhir/MedicationRequest/{id}")).await;
    assert_eq!(after["meta"]["versionId"], json!("2"), "nothing written");
    app.finish().await;
}

/// What the server stamps is the server's: a client's price on a dispensation is replaced (or
/// dropped when no quantity is given); a cancellation changes nothing but the status and its
/// reason; a correction keeps the date the validity runs from.
pub async fn the_server_keeps_its_own(b: Backend) {
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let doc = app.token("clinician").await;
    let ph = app.token("pharmacy").await;
    // A treatment time of 90 days.
    let mut days = prescription(&me, "401011", 1);
    days["dispenseRequest"] = json!({"expectedSupplyDuration": {"value": 90, "unit": "d"}});
    // Issue 30: a status the server would store as something else is refused, not changed.
    let mut done = days.clone();
    done["status"] = json!("completed");
    let (s, v) = post_to(&app, &doc, "MedicationRequest", done).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "'active' now, not 'completed'"), "{v}");
    let (s, rx) = post_to(&app, &doc, "MedicationRequest", days).await;
    assert_eq!(s, StatusCode::CREATED, "{rx}");
    let id = rx["id"].as_str().unwrap().to_string();
    let forged = json!([{"url": "urn:kanta:ext:retail-price", "valueMoney": {"value": 0.01, "currency": "EUR"}},
        {"url": "urn:kanta:ext:dispensed-amount", "valueUnsignedInt": 1}]);
    let mut md = dispensation(&me, &id, "401011", 1);
    md.as_object_mut().unwrap().remove("quantity");
    md["daysSupply"] = json!({"value": 30, "unit": "d"});
    md["extension"] = forged.clone();
    let (s, d) = post_to(&app, &ph, "MedicationDispense", md).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let urls: Vec<&str> = d["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["url"].as_str())
        .collect();
    assert!(
        !urls.contains(&"urn:kanta:ext:retail-price"),
        "no quantity, no price: {d}"
    );
    assert!(
        d["extension"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["url"] == "urn:kanta:ext:dispensed-amount" && e["valueUnsignedInt"] == 30),
        "{d}"
    );
    let (_, now) = get(&app, &ph, &format!("/fhir/MedicationRequest/{id}")).await;
    assert_eq!(part(&now, "remaining"), json!(60));
    let mut md = dispensation(&me, &id, "401011", 1);
    md["daysSupply"] = json!({"value": 30, "unit": "d"});
    md["extension"] = forged;
    let (s, d) = post_to(&app, &ph, "MedicationDispense", md).await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let price = d["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "urn:kanta:ext:retail-price")
        .unwrap();
    assert_eq!(
        price["valueMoney"]["value"],
        json!(6.45),
        "the database's price, not the client's: {d}"
    );
    // A correction keeps its date; a cancellation keeps the rest as prescribed.
    let mut moved = now.clone();
    moved["authoredOn"] = json!("2026-11-20");
    moved["extension"] =
        json!([{"url": "urn:kanta:ext:correction-justification", "valueString": "x"}]);
    let (s, v) = put_to(&app, &doc, &format!("/fhir/MedicationRequest/{id}"), moved).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut cancel = now.clone();
    cancel["status"] = json!("cancelled");
    cancel["statusReason"] =
        json!({"coding": [{"system": "urn:kanta:cs:prescription-cancellation", "code": "other"}]});
    cancel["dosageInstruction"] = json!([{"text": "muutettu"}]);
    let (s, v) = put_to(&app, &doc, &format!("/fhir/MedicationRequest/{id}"), cancel).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["dosageInstruction"][0]["text"],
        json!("1 tabletti illalla"),
        "{v}"
    );
    assert_eq!(v["status"], json!("cancelled"));
    app.finish().await;
}

/// Issue 30: a write happens once. On PostgreSQL a dispensation whose audit drain fails after its
/// transaction committed was answered 503 and stored all the same, and the pharmacy's retry
/// dispensed again. Now a committed write answers its result (its audit records are durable in the
/// outbox and become leaves at the writer's next tick), and a retried create naming the same
/// pharmacy identifier returns the first result; on both backends.
pub async fn a_write_happens_once(b: Backend) {
    use std::sync::atomic::Ordering::SeqCst;
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let (doc, ph) = (app.token("clinician").await, app.token("pharmacy").await);
    let (s, rx) = post_to(
        &app,
        &doc,
        "MedicationRequest",
        prescription(&me, "401011", 2),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{rx}");
    let rx_id = rx["id"].as_str().unwrap().to_string();
    let mut d = dispensation(&me, &rx_id, "401011", 1);
    d["identifier"] =
        json!([{"system": "urn:kanta:ns:dispensation:org-apteekki", "value": "2026-000017"}]);
    // Every batch of the audit writer fails from now on (on SQLite a write's records commit inside
    // its own transaction and never reach the writer).
    app.audit
        .faults()
        .from
        .store(app.audit.faults().batches() + 1, SeqCst);
    let (s, first) = post_to(&app, &ph, "MedicationDispense", d.clone()).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a committed write answers its result: {first}"
    );
    let first_id = first["id"].as_str().unwrap().to_string();
    app.audit.faults().from.store(0, SeqCst);
    // The retry (the pharmacy did not hear, or heard late) returns the first dispensation.
    let (s, again) = post_to(&app, &ph, "MedicationDispense", d.clone()).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], json!(first_id));
    let (_, now) = get(&app, &doc, &format!("/fhir/MedicationRequest/{rx_id}")).await;
    assert_eq!(part(&now, "remaining"), json!(30), "dispensed once: {now}");
    let (_, found) = get(&app, &ph, &format!("/fhir/MedicationDispense?patient={me}")).await;
    assert_eq!(found["entry"].as_array().map_or(0, Vec::len), 1, "{found}");
    // Another pharmacy's identifier is not this one's retry; another value is a new dispensation.
    let mut other = d.clone();
    other["identifier"][0]["value"] = json!("2026-000018");
    let (s, v) = post_to(&app, &ph, "MedicationDispense", other).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The first dispensation's record of creation becomes a leaf (the writer's next tick).
    let store = app.db.as_ref().unwrap().store.clone();
    let key = store.patient_key_of(&pid).await.unwrap().unwrap();
    let created = |records: &[kanta_store::StoredAudit]| {
        records
            .iter()
            .filter(|r| {
                r.body.contains("\"action\":\"create\"")
                    && r.body.contains(&format!("MedicationDispense/{first_id}"))
            })
            .count()
    };
    let mut leaves = 0;
    for _ in 0..100 {
        leaves = created(&store.audit_of_patient(key, None, 500).await.unwrap());
        // Caught up: the leaf made, the outbox empty, and the alarm cleared by the writer's pass
        // that found it so.
        if leaves > 0 && store.audit_pending().await.unwrap() == 0 && !app.audit.is_behind() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(leaves, 1, "the dispensation's record of creation, once");
    assert!(!app.audit.is_behind());
    app.finish().await;
}

/// `n` requests sent at once; their statuses.
async fn at_once(
    app: &TestApp,
    reqs: Vec<(String, String, reqwest::Method, String)>,
) -> Vec<StatusCode> {
    let mut all = vec![];
    for (token, path, method, body) in reqs {
        let req = app
            .http
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .header("x-kanta-professional", "urn:oid:1.2.246.537.26|100")
            .header("x-kanta-purpose-of-use", "TREAT")
            .body(body);
        all.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    let mut out = vec![];
    for t in all {
        out.push(t.await.unwrap());
    }
    out
}

/// Issue 30: the Prescription Centre under racing writes (R-RX-1, R-ACT-11): of racing
/// reservations one holds; of racing renewal requests one is open; a cancellation happens once,
/// however often it is sent at once; and Bundles that dispense two prescriptions in opposite
/// orders at once — which PostgreSQL may break as a deadlock — each answer success or 409
/// (nothing stored, retry), never 500, with every package dispensed once.
pub async fn racing_prescription_centre_writes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let pid = setup(&app).await;
    let me = format!("Patient/{pid}");
    let doc = app.token("clinician").await;
    let (ph, ph2) = (app.token("pharmacy").await, app.token("pharmacy-2").await);
    let new_rx = |packages: u32| {
        let (app, doc, me) = (&app, doc.clone(), me.clone());
        async move {
            let (s, rx) = post_to(
                app,
                &doc,
                "MedicationRequest",
                prescription(&me, "401011", packages),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{rx}");
            rx["id"].as_str().unwrap().to_string()
        }
    };
    let count =
        |statuses: &[StatusCode], s: StatusCode| statuses.iter().filter(|x| **x == s).count();
    // Reservations: two pharmacies, four each, at once.
    let rx = new_rx(2).await;
    let reqs = (0..8)
        .map(|k| {
            let t = if k % 2 == 0 { ph.clone() } else { ph2.clone() };
            let body = task(
                &pid,
                &rx,
                "reservation",
                "in-progress",
                Some(if k % 2 == 0 {
                    "org-apteekki"
                } else {
                    "org-apteekki-2"
                }),
            );
            (
                t,
                "/fhir/Task".to_string(),
                reqwest::Method::POST,
                body.to_string(),
            )
        })
        .collect();
    let statuses = at_once(&app, reqs).await;
    // One pharmacy holds it (its own further reservations renew its hold); the other's are all
    // refused.
    let by = |parity: usize| -> Vec<StatusCode> {
        statuses
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 2 == parity)
            .map(|(_, s)| *s)
            .collect()
    };
    let (first, second) = (by(0), by(1));
    let holds = |v: &[StatusCode]| v.iter().all(|s| *s == StatusCode::CREATED);
    let refused = |v: &[StatusCode]| v.iter().all(|s| *s == StatusCode::CONFLICT);
    assert!(
        (holds(&first) && refused(&second)) || (holds(&second) && refused(&first)),
        "one pharmacy holds the reservation: {statuses:?}"
    );
    let (_, now) = get(&app, &doc, &format!("/fhir/MedicationRequest/{rx}")).await;
    assert!(!part(&now, "reservedBy").is_null(), "{now}");
    // Renewal requests: eight at once from the pharmacy for its customer; one is open.
    let rx = new_rx(1).await;
    let reqs = (0..8)
        .map(|_| {
            let body = task(&pid, &rx, "renewal-request", "requested", None);
            (
                ph.clone(),
                "/fhir/Task".to_string(),
                reqwest::Method::POST,
                body.to_string(),
            )
        })
        .collect();
    let statuses = at_once(&app, reqs).await;
    assert_eq!(count(&statuses, StatusCode::CREATED), 1, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::CONFLICT), 7, "{statuses:?}");
    let (_, queue) = get(&app, &doc, "/fhir/Task?owner=Organization/org-hus").await;
    let open = queue["entry"].as_array().map_or(0, |e| {
        e.iter()
            .filter(|e| {
                e["resource"]["focus"]["reference"] == json!(format!("MedicationRequest/{rx}"))
            })
            .count()
    });
    assert_eq!(open, 1, "{queue}");
    // A cancellation, four times at once: one new version; then once more: refused.
    let rx = new_rx(1).await;
    let (_, current) = get(&app, &doc, &format!("/fhir/MedicationRequest/{rx}")).await;
    let mut cancel = current.clone();
    cancel["status"] = json!("cancelled");
    cancel["statusReason"] = json!({"coding": [{"system": "urn:kanta:cs:prescription-cancellation", "code": "patient-request"}]});
    let reqs = (0..4)
        .map(|_| {
            (
                doc.clone(),
                format!("/fhir/MedicationRequest/{rx}"),
                reqwest::Method::PUT,
                cancel.to_string(),
            )
        })
        .collect();
    let statuses = at_once(&app, reqs).await;
    assert_eq!(
        count(&statuses, StatusCode::OK),
        1,
        "cancelled once: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| s.is_success() || s.is_client_error()),
        "{statuses:?}"
    );
    let (s, v) = put_to(
        &app,
        &doc,
        &format!("/fhir/MedicationRequest/{rx}"),
        cancel.clone(),
    )
    .await;
    assert!(s.is_client_error(), "a second cancellation: {s} {v}");
    let (_, history) = get(
        &app,
        &doc,
        &format!("/fhir/MedicationRequest/{rx}/_history"),
    )
    .await;
    let cancelled = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["status"] == "cancelled")
        .count();
    assert_eq!(cancelled, 1, "{history}");
    // Crossing Bundles: A then B, and B then A, at once, repeatedly.
    let (a, b2) = (new_rx(3).await, new_rx(3).await);
    let entry = |r: Value| json!({"resource": r, "request": {"method": "POST", "url": "MedicationDispense"}});
    let bundle = |first: &str, second: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            entry(dispensation(&me, first, "401011", 1)),
            entry(dispensation(&me, second, "401011", 1))]})
        .to_string()
    };
    let mut won = 0;
    for _ in 0..3 {
        let reqs = vec![
            (
                ph.clone(),
                "/fhir".to_string(),
                reqwest::Method::POST,
                bundle(&a, &b2),
            ),
            (
                ph.clone(),
                "/fhir".to_string(),
                reqwest::Method::POST,
                bundle(&b2, &a),
            ),
        ];
        let statuses = at_once(&app, reqs).await;
        for s in &statuses {
            assert!(
                *s == StatusCode::OK || *s == StatusCode::CONFLICT,
                "success or 409, never a 500: {statuses:?}"
            );
        }
        won += count(&statuses, StatusCode::OK);
    }
    for id in [&a, &b2] {
        let (_, now) = get(&app, &doc, &format!("/fhir/MedicationRequest/{id}")).await;
        assert_eq!(part(&now, "dispensed"), json!(30 * won), "{now}");
    }
    app.finish().await;
}
