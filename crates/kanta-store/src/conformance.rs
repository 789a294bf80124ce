#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::bool_assert_comparison
)]

//! The storage conformance suite: one set of checks that every [`Store`] implementation must pass.
//! `tests/conformance.rs` runs it against SQLite and against PostgreSQL.
//!
//! Each check takes a freshly migrated, empty store.

use crate::{
    ClientRecord, PendingLogin, SearchQuery, SessionRow, Store, StoreError, WriteOp, WriteRequest,
};
use kanta_domain::hetu::Hetu;
use kanta_domain::ids::OrgId;
use kanta_domain::population::{CustodyAgreement, Person, PersonRecord, Relation, RelationKind};
use kanta_fhir::{check, ErrorKind};
use serde_json::{json, Value};
use time::macros::{date, datetime};
use time::OffsetDateTime;

type Check = fn(&dyn Store) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;

/// Every check, by name.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("create_read_vread_history", |s| {
            Box::pin(create_read_vread_history(s))
        }),
        ("transaction_resolves_urn_uuid_and_is_all_or_nothing", |s| {
            Box::pin(transaction_all_or_nothing(s))
        }),
        ("conditional_create_on_hetu_and_identifier", |s| {
            Box::pin(conditional_create(s))
        }),
        ("duplicate_hetu_patient_is_a_conflict", |s| {
            Box::pin(duplicate_hetu(s))
        }),
        ("if_match_and_update_as_create", |s| Box::pin(if_match(s))),
        ("search_by_patient_sorted_and_paged", |s| {
            Box::pin(search_paged(s))
        }),
        ("references_to_unknown_resources_are_refused", |s| {
            Box::pin(unknown_references(s))
        }),
        ("population_register_import_replaces_per_person", |s| {
            Box::pin(population(s))
        }),
        ("clients_and_assertion_replay", |s| Box::pin(clients(s))),
        ("concurrent_conditional_creates_agree", |s| {
            Box::pin(concurrent_conditional_creates(s))
        }),
        ("one_resource_twice_in_one_transaction", |s| {
            Box::pin(twice_in_one_transaction(s))
        }),
        ("portal_sessions_and_logins", |s| Box::pin(sessions(s))),
        ("sections_filtered_paged_with_service_event", |s| {
            Box::pin(sections(s))
        }),
        ("visits_with_their_documents_newest_first", |s| {
            Box::pin(visits(s))
        }),
        ("only_committed_writes_are_remembered", |s| {
            Box::pin(remembered_locations(s))
        }),
        ("an_update_replaces_identifiers_and_service_event", |s| {
            Box::pin(update_replaces_tokens(s))
        }),
    ]
}

const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);
const HETU_A: &str = "010594Y9032";
const HETU_B: &str = "020516C903K";

fn org() -> OrgId {
    OrgId::new("org-test")
}

fn patient(hetu: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.246.21", "value": hetu}],
           "name": [{"family": "Testinen", "given": ["Testi"]}]})
}

fn observation(subject: &str, when: &str, text: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": text},
           "subject": {"reference": subject}, "effectiveDateTime": when})
}

fn create(v: Value) -> WriteOp {
    WriteOp::Create {
        resource: check(v).expect("valid test resource"),
        if_none_exist: None,
    }
}

/// The conformance suite tests storage, not access: its writer may write patient and shared data.
fn writer() -> kanta_domain::access::Principal {
    use kanta_domain::ids::ClientRole;
    kanta_domain::access::Principal::system(
        "conformance",
        &org(),
        &[ClientRole::Clinician, ClientRole::Operator],
    )
}

fn req(ops: Vec<WriteOp>) -> WriteRequest {
    WriteRequest {
        principal: writer(),
        org: org(),
        ops: ops
            .into_iter()
            .enumerate()
            .map(|(i, o)| (format!("Bundle.entry[{i}]"), None, o))
            .collect(),
        citizen: None,
        centre: None,
        organiser: None,
    }
}

fn req_urls(ops: Vec<(Option<&str>, WriteOp)>) -> WriteRequest {
    WriteRequest {
        principal: writer(),
        org: org(),
        ops: ops
            .into_iter()
            .enumerate()
            .map(|(i, (u, o))| (format!("Bundle.entry[{i}]"), u.map(str::to_string), o))
            .collect(),
        citizen: None,
        centre: None,
        organiser: None,
    }
}

fn kind(e: StoreError) -> ErrorKind {
    match e {
        StoreError::Fhir(f) => f.kind,
        other => panic!("expected a FHIR error, got {other}"),
    }
}

async fn new_patient(s: &dyn Store, hetu: &str) -> String {
    s.write(req(vec![create(patient(hetu))]), NOW)
        .await
        .expect("patient")
        .into_inner()[0]
        .stored
        .id
        .clone()
}

async fn create_read_vread_history(s: &dyn Store) {
    let pid = new_patient(s, HETU_A).await;
    let read = s
        .read("Patient", &pid)
        .await
        .unwrap()
        .into_inner()
        .expect("stored");
    assert_eq!(read.version, 1);
    assert_eq!(read.body["meta"]["versionId"], "1");
    assert_eq!(read.body["meta"]["lastUpdated"], "2026-11-24T12:00:00.000Z");
    assert_eq!(
        read.body["name"][0]["family"], "Testinen",
        "unknown elements are kept losslessly"
    );
    let mut v2 = patient(HETU_A);
    v2["name"][0]["family"] = json!("Korjattu");
    let later = NOW + time::Duration::minutes(5);
    let w = s
        .write(
            req(vec![WriteOp::Update {
                resource: check(v2).unwrap(),
                id: pid.clone(),
                if_match: Some(1),
            }]),
            later,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!((w[0].stored.version, w[0].created), (2, false));
    assert_eq!(
        s.read("Patient", &pid)
            .await
            .unwrap()
            .into_inner()
            .unwrap()
            .body["name"][0]["family"],
        "Korjattu"
    );
    assert_eq!(
        s.vread("Patient", &pid, 1)
            .await
            .unwrap()
            .into_inner()
            .unwrap()
            .body["name"][0]["family"],
        "Testinen"
    );
    assert!(s
        .vread("Patient", &pid, 3)
        .await
        .unwrap()
        .into_inner()
        .is_none());
    let h = s.history("Patient", &pid).await.unwrap().into_inner();
    assert_eq!(h.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
    assert!(s
        .read("Patient", "no-such-id")
        .await
        .unwrap()
        .into_inner()
        .is_none());
    assert!(
        s.read("Observation", &pid)
            .await
            .unwrap()
            .into_inner()
            .is_none(),
        "ids are per type"
    );
    let key = s
        .patient_key_for_hetu(&Hetu::parse(HETU_A).unwrap())
        .await
        .unwrap();
    assert_eq!(key, s.patient_key_of(&pid).await.unwrap());
    assert!(key.is_some());
}

async fn transaction_all_or_nothing(s: &dyn Store) {
    let ops = vec![
        (Some("urn:uuid:p"), create(patient(HETU_A))),
        (
            Some("urn:uuid:e"),
            create(
                json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "urn:uuid:p"}}),
            ),
        ),
        (
            None,
            create(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "Hb"}, "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}}),
            ),
        ),
    ];
    // The Observation comes first in the Bundle but the Patient is written first.
    let mut ops_rev = ops.clone();
    ops_rev.reverse();
    let w = s.write(req_urls(ops_rev), NOW).await.unwrap().into_inner();
    assert_eq!(w.len(), 3);
    let (obs, enc, pat) = (&w[0].stored, &w[1].stored, &w[2].stored);
    assert_eq!(
        obs.body["subject"]["reference"],
        format!("Patient/{}", pat.id)
    );
    assert_eq!(
        obs.body["encounter"]["reference"],
        format!("Encounter/{}", enc.id)
    );
    assert_eq!(obs.patient, pat.patient);
    // The care document is found through its service event (the encounter index), and only for
    // its own patient.
    let key = pat.patient.unwrap();
    let enc_ref = format!("Encounter/{}", enc.id);
    let attached = s
        .attached_to(key, &[enc_ref.clone(), "Encounter/nope".into()])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        attached
            .iter()
            .map(|f| format!("{}/{}", f.resource_type, f.id))
            .collect::<Vec<_>>(),
        [format!("Observation/{}", obs.id)]
    );
    assert!(s
        .attached_to(kanta_domain::ids::PatientKey(key.0 + 1), &[enc_ref])
        .await
        .unwrap()
        .into_inner()
        .is_empty());
    assert!(s
        .attached_to(key, &[])
        .await
        .unwrap()
        .into_inner()
        .is_empty());
    // A bad entry anywhere leaves nothing behind.
    let bad = vec![
        (Some("urn:uuid:p2"), create(patient(HETU_B))),
        (
            None,
            create(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:p2"}, "encounter": {"reference": "urn:uuid:missing"}}),
            ),
        ),
    ];
    assert_eq!(
        kind(s.write(req_urls(bad), NOW).await.unwrap_err()),
        ErrorKind::Unprocessable
    );
    assert!(
        s.patient_key_for_hetu(&Hetu::parse(HETU_B).unwrap())
            .await
            .unwrap()
            .is_none(),
        "rolled back"
    );
    let found = s
        .search(&SearchQuery {
            resource_type: "Patient".into(),
            patient: None,
            identifier: Some(("urn:oid:1.2.246.21".into(), HETU_B.into())),
            ascending: false,
            count: 10,
            after: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(found.resources.is_empty());
}

async fn conditional_create(s: &dyn Store) {
    let first = s
        .write(req(vec![create(patient(HETU_A))]), NOW)
        .await
        .unwrap()
        .into_inner();
    let cond = WriteOp::Create {
        resource: check(patient(HETU_A)).unwrap(),
        if_none_exist: Some(("urn:oid:1.2.246.21".into(), HETU_A.into())),
    };
    let again = s.write(req(vec![cond]), NOW).await.unwrap().into_inner();
    assert_eq!(again[0].stored.id, first[0].stored.id);
    assert!(!again[0].created);
    let mut obs = observation(
        &format!("Patient/{}", first[0].stored.id),
        "2024-01-01",
        "Hb",
    );
    obs["identifier"] = json!([{"system": "urn:lab", "value": "L1"}]);
    let op = || WriteOp::Create {
        resource: check(obs.clone()).unwrap(),
        if_none_exist: Some(("urn:lab".into(), "L1".into())),
    };
    let a = s.write(req(vec![op()]), NOW).await.unwrap().into_inner();
    let b = s.write(req(vec![op()]), NOW).await.unwrap().into_inner();
    assert!(a[0].created && !b[0].created);
    assert_eq!(a[0].stored.id, b[0].stored.id);
}

async fn duplicate_hetu(s: &dyn Store) {
    new_patient(s, HETU_A).await;
    assert_eq!(
        kind(
            s.write(req(vec![create(patient(HETU_A))]), NOW)
                .await
                .unwrap_err()
        ),
        ErrorKind::Conflict
    );
    // The century sign is part of the identity: 010594-9032 is not 010594Y9032.
    new_patient(s, "010594-9032").await;
}

async fn if_match(s: &dyn Store) {
    let pid = new_patient(s, HETU_A).await;
    let upd = |v: Option<i32>| WriteOp::Update {
        resource: check(patient(HETU_A)).unwrap(),
        id: pid.clone(),
        if_match: v,
    };
    assert_eq!(
        kind(s.write(req(vec![upd(Some(7))]), NOW).await.unwrap_err()),
        ErrorKind::PreconditionFailed
    );
    s.write(req(vec![upd(Some(1))]), NOW)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kind(s.write(req(vec![upd(Some(1))]), NOW).await.unwrap_err()),
        ErrorKind::PreconditionFailed
    );
    s.write(req(vec![upd(None)]), NOW)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.read("Patient", &pid)
            .await
            .unwrap()
            .into_inner()
            .unwrap()
            .version,
        3
    );
    // Update-as-create with a client-assigned id, then a second version.
    let obs = observation(&format!("Patient/{pid}"), "2024-01-01", "Hb");
    let put = |v: Value| WriteOp::Update {
        resource: check(v).unwrap(),
        id: "demo-obs-1".into(),
        if_match: None,
    };
    let w = s
        .write(req(vec![put(obs.clone())]), NOW)
        .await
        .unwrap()
        .into_inner();
    assert!(w[0].created);
    assert_eq!(w[0].stored.version, 1);
    let w = s
        .write(req(vec![put(obs)]), NOW)
        .await
        .unwrap()
        .into_inner();
    assert_eq!((w[0].created, w[0].stored.version), (false, 2));
    // Moving a resource to another patient is refused.
    let other = new_patient(s, HETU_B).await;
    let moved = observation(&format!("Patient/{other}"), "2024-01-01", "Hb");
    assert_eq!(
        kind(s.write(req(vec![put(moved)]), NOW).await.unwrap_err()),
        ErrorKind::Unprocessable
    );
}

async fn search_paged(s: &dyn Store) {
    let a = new_patient(s, HETU_A).await;
    let b = new_patient(s, HETU_B).await;
    let mut ops = vec![];
    for day in 1..=25 {
        ops.push(create(observation(
            &format!("Patient/{a}"),
            &format!("2024-01-{day:02}"),
            "Hb",
        )));
    }
    ops.push(create(observation(
        &format!("Patient/{b}"),
        "2024-02-01",
        "other patient",
    )));
    s.write(req(ops), NOW).await.unwrap().into_inner();
    let key = s.patient_key_of(&a).await.unwrap();
    let mut q = SearchQuery {
        resource_type: "Observation".into(),
        patient: key,
        identifier: None,
        ascending: false,
        count: 10,
        after: None,
    };
    let mut dates = vec![];
    loop {
        let page = s.search(&q).await.unwrap().into_inner();
        dates.extend(page.resources.iter().map(|r| {
            r.to_value()["effectiveDateTime"]
                .as_str()
                .unwrap()
                .to_string()
        }));
        match page.next {
            Some(c) => q.after = Some(c),
            None => break,
        }
    }
    assert_eq!(
        dates.len(),
        25,
        "every record once, none of the other patient's"
    );
    assert_eq!(dates.first().map(String::as_str), Some("2024-01-25"));
    assert_eq!(dates.last().map(String::as_str), Some("2024-01-01"));
    q.after = None;
    q.ascending = true;
    q.count = 3;
    let page = s.search(&q).await.unwrap().into_inner();
    assert_eq!(
        page.resources[0].to_value()["effectiveDateTime"],
        "2024-01-01"
    );
    assert!(page.next.is_some());
    let by_hetu = s
        .search(&SearchQuery {
            resource_type: "Patient".into(),
            patient: None,
            identifier: Some(("urn:oid:1.2.246.21".into(), HETU_B.into())),
            ascending: false,
            count: 10,
            after: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_hetu.resources.len(), 1);
    assert_eq!(by_hetu.resources[0].id, b);
}

async fn unknown_references(s: &dyn Store) {
    let pid = new_patient(s, HETU_A).await;
    for v in [
        observation("Patient/nope", "2024-01-01", "x"),
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{pid}")}, "performer": [{"reference": "Organization/nope"}]}),
        json!({"resourceType": "Condition", "code": {"text": "x"}, "subject": {"reference": format!("Patient?identifier=urn:oid:1.2.246.21|{HETU_B}")}}),
    ] {
        assert_eq!(
            kind(s.write(req(vec![create(v)]), NOW).await.unwrap_err()),
            ErrorKind::Unprocessable
        );
    }
    s.write(
        req(vec![create(
            json!({"resourceType": "Organization", "id": "ignored", "name": "HUS"}),
        )]),
        NOW,
    )
    .await
    .unwrap()
    .into_inner();
    let w = s
        .write(req(vec![create(json!({"resourceType": "Condition", "code": {"text": "x"}, "subject": {"reference": format!("Patient?identifier=urn:oid:1.2.246.21|{HETU_A}")}}))]), NOW)
        .await
        .unwrap().into_inner();
    assert_eq!(
        w[0].stored.body["subject"]["reference"],
        format!("Patient/{pid}"),
        "conditional references are made literal"
    );
}

/// The store remembers where committed resources live, and a write consults that memory instead
/// of a query: what a rolled-back write would have stored is never remembered, and what is
/// remembered places a record with its own patient.
async fn remembered_locations(s: &dyn Store) {
    let put = |id: &str, v: Value| WriteOp::Update {
        resource: check(v).unwrap(),
        id: id.to_string(),
        if_match: None,
    };
    let pid = new_patient(s, HETU_A).await;
    // A write that creates a Patient, an Organization and an Observation, and fails at its end.
    let failed = vec![
        put("p-gone", patient(HETU_B)),
        put(
            "org-gone",
            json!({"resourceType": "Organization", "name": "Poissa"}),
        ),
        create(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient/p-gone"}, "performer": [{"reference": "Organization/org-gone"}],
            "encounter": {"reference": "Encounter/nope"}}),
        ),
    ];
    assert_eq!(
        kind(s.write(req(failed), NOW).await.unwrap_err()),
        ErrorKind::Unprocessable
    );
    // Neither the Patient nor the Organization of the rolled-back write is found afterwards.
    for v in [
        observation("Patient/p-gone", "2024-01-01", "x"),
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{pid}")}, "performer": [{"reference": "Organization/org-gone"}]}),
    ] {
        assert_eq!(
            kind(s.write(req(vec![create(v)]), NOW).await.unwrap_err()),
            ErrorKind::Unprocessable,
            "a rolled-back write is not remembered"
        );
    }
    // Committed, the same Organization is found, the second time from memory; records of the
    // patient stay with the patient's key however the location was learnt.
    s.write(
        req(vec![put(
            "org-gone",
            json!({"resourceType": "Organization", "name": "Paikalla"}),
        )]),
        NOW,
    )
    .await
    .unwrap()
    .into_inner();
    let key = s.patient_key_of(&pid).await.unwrap().unwrap();
    for when in ["2024-01-01", "2024-01-02"] {
        let mut v = observation(&format!("Patient/{pid}"), when, "Hb");
        v["performer"] = json!([{"reference": "Organization/org-gone"}]);
        let w = s
            .write(req(vec![create(v)]), NOW)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w[0].stored.patient, Some(key));
    }
    // A conditional Patient and its records in one Bundle, twice: the HETU's mapping places them.
    for _ in 0..2 {
        let cond = WriteOp::Create {
            resource: check(patient(HETU_A)).unwrap(),
            if_none_exist: Some(("urn:oid:1.2.246.21".into(), HETU_A.into())),
        };
        let w = s
            .write(
                req_urls(vec![
                    (Some("urn:uuid:p"), cond),
                    (None, create(observation("urn:uuid:p", "2024-01-03", "Hb"))),
                ]),
                NOW,
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (w[0].stored.id.as_str(), w[0].matched),
            (pid.as_str(), true)
        );
        assert_eq!(w[1].stored.patient, Some(key));
    }
    let found = s
        .search(&SearchQuery {
            resource_type: "Observation".into(),
            patient: Some(key),
            identifier: None,
            ascending: false,
            count: 10,
            after: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.resources.len(), 4);
}

/// What a resource is found by follows its current version: an update's identifiers and service
/// event replace the old ones (the old are no longer found), and a write of many rows keeps each
/// resource's own.
async fn update_replaces_tokens(s: &dyn Store) {
    let pid = new_patient(s, HETU_A).await;
    let key = s.patient_key_of(&pid).await.unwrap().unwrap();
    let mut encounters = vec![];
    for _ in 0..2 {
        let e = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": format!("Patient/{pid}")}});
        encounters.push(
            s.write(req(vec![create(e)]), NOW)
                .await
                .unwrap()
                .into_inner()[0]
                .stored
                .id
                .clone(),
        );
    }
    let obs = |ident: &str, enc: &str| {
        let mut v = observation(&format!("Patient/{pid}"), "2024-01-01", "Hb");
        v["identifier"] = json!([{"system": "urn:test:lab", "value": ident}]);
        v["encounter"] = json!({"reference": format!("Encounter/{enc}")});
        v
    };
    // Five at once, each with its own identifier, all under the first visit.
    let ops = (0..5)
        .map(|k| create(obs(&format!("old-{k}"), &encounters[0])))
        .collect();
    let first = s.write(req(ops), NOW).await.unwrap().into_inner();
    let id = first[2].stored.id.clone();
    s.write(
        req(vec![WriteOp::Update {
            resource: check(obs("new-2", &encounters[1])).unwrap(),
            id: id.clone(),
            if_match: Some(1),
        }]),
        NOW,
    )
    .await
    .unwrap()
    .into_inner();
    let by = |value: &str| SearchQuery {
        resource_type: "Observation".into(),
        patient: Some(key),
        identifier: Some(("urn:test:lab".into(), value.into())),
        ascending: false,
        count: 10,
        after: None,
    };
    let ids = |p: crate::Page| p.resources.into_iter().map(|f| f.id).collect::<Vec<_>>();
    assert!(
        ids(s.search(&by("old-2")).await.unwrap().into_inner()).is_empty(),
        "the old identifier is gone"
    );
    assert_eq!(
        ids(s.search(&by("new-2")).await.unwrap().into_inner()),
        std::slice::from_ref(&id)
    );
    for k in [0, 1, 3, 4] {
        assert_eq!(
            ids(s
                .search(&by(&format!("old-{k}")))
                .await
                .unwrap()
                .into_inner()),
            [first[k].stored.id.clone()],
            "old-{k}"
        );
    }
    let under = |e: &str| {
        let e = format!("Encounter/{e}");
        async move {
            let mut v: Vec<String> = s
                .attached_to(key, &[e])
                .await
                .unwrap()
                .into_inner()
                .into_iter()
                .map(|f| f.id)
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(
        under(&encounters[1]).await,
        std::slice::from_ref(&id),
        "moved to the second visit"
    );
    let mut rest: Vec<String> = [0, 1, 3, 4]
        .iter()
        .map(|&k| first[k].stored.id.clone())
        .collect();
    rest.sort();
    assert_eq!(
        under(&encounters[0]).await,
        rest,
        "and no longer under the first"
    );
}

fn person(hetu: &str, family: &str) -> Person {
    let h = Hetu::parse(hetu).unwrap();
    Person {
        birth_date: h.birth_date(),
        hetu: h,
        family_name: family.into(),
        given_names: "Testi".into(),
        deceased: None,
        non_disclosure: false,
    }
}

async fn population(s: &dyn Store) {
    let child = person(HETU_B, "Lapsi");
    let parent = person(HETU_A, "Vanhempi");
    let rel = Relation {
        kind: RelationKind::Guardian,
        subject: child.hetu.clone(),
        holder: parent.hetu.clone(),
        start: Some(date!(2016 - 05 - 02)),
        end: None,
        custody: Some(CustodyAgreement::Joint),
    };
    let records = vec![
        PersonRecord {
            person: child.clone(),
            relations: vec![rel.clone()],
        },
        PersonRecord {
            person: parent.clone(),
            relations: vec![],
        },
    ];
    let sum = s.import_population(&records, NOW).await.unwrap();
    assert_eq!((sum.persons, sum.relations), (2, 1));
    let got = s.person(&child.hetu).await.unwrap().unwrap();
    assert_eq!(got.person, child);
    assert_eq!(got.relations, vec![rel.clone()]);
    assert_eq!(s.relations_held_by(&parent.hetu).await.unwrap(), vec![rel]);
    // A new snapshot of the child replaces its relations, in both directions.
    let mut moved = child.clone();
    moved.non_disclosure = true;
    s.import_population(
        &[PersonRecord {
            person: moved.clone(),
            relations: vec![],
        }],
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        s.person(&child.hetu)
            .await
            .unwrap()
            .unwrap()
            .person
            .non_disclosure,
        true
    );
    assert!(s.relations_held_by(&parent.hetu).await.unwrap().is_empty());
    // A relation to someone unknown refuses the whole import.
    let stranger = Relation {
        kind: RelationKind::RightToInformation,
        subject: child.hetu.clone(),
        holder: Hetu::parse("030516D9037").unwrap(),
        start: None,
        end: None,
        custody: None,
    };
    let err = s
        .import_population(
            &[PersonRecord {
                person: child.clone(),
                relations: vec![stranger],
            }],
            NOW,
        )
        .await
        .unwrap_err();
    assert_eq!(kind(err), ErrorKind::Unprocessable);
    assert_eq!(
        s.person(&child.hetu)
            .await
            .unwrap()
            .unwrap()
            .person
            .non_disclosure,
        true,
        "rolled back"
    );
    // The register and the record store share patient keys.
    let pid = new_patient(s, HETU_B).await;
    assert_eq!(
        s.patient_key_of(&pid).await.unwrap(),
        s.patient_key_for_hetu(&child.hetu).await.unwrap()
    );
}

async fn clients(s: &dyn Store) {
    let c = ClientRecord {
        client_id: "c1".into(),
        org: org(),
        name: "Test".into(),
        roles: vec!["clinician".into()],
        secret_sha256: Some("ab".into()),
        jwks: None,
        enabled: true,
        scopes: "system/Observation.rs".into(),
    };
    s.upsert_client(&c, NOW).await.unwrap();
    assert_eq!(s.client("c1").await.unwrap(), Some(c.clone()));
    assert_eq!(s.client("c2").await.unwrap(), None);
    // Disabling a client is an update of its row.
    let disabled = ClientRecord {
        enabled: false,
        ..c
    };
    s.upsert_client(&disabled, NOW).await.unwrap();
    assert_eq!(s.client("c1").await.unwrap(), Some(disabled));
    let exp = NOW + time::Duration::minutes(5);
    assert!(s.remember_assertion("c1", "j1", exp, NOW).await.unwrap());
    assert!(
        !s.remember_assertion("c1", "j1", exp, NOW).await.unwrap(),
        "replay"
    );
    assert!(s.remember_assertion("c1", "j2", exp, NOW).await.unwrap());
}

/// Two providers create the same person at once with a conditional create: both get the one Patient.
async fn concurrent_conditional_creates(s: &dyn Store) {
    let op = || WriteOp::Create {
        resource: check(patient(HETU_A)).unwrap(),
        if_none_exist: Some(("urn:oid:1.2.246.21".into(), HETU_A.into())),
    };
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let (a, b, c) = tokio::join!(
            s.write(req(vec![op()]), NOW),
            s.write(req(vec![op()]), NOW),
            s.write(req(vec![op()]), NOW)
        );
        for w in [a, b, c] {
            ids.insert(
                w.expect("a conditional create never conflicts")
                    .into_inner()[0]
                    .stored
                    .id
                    .clone(),
            );
        }
    }
    assert_eq!(ids.len(), 1, "one Patient for one HETU");
}

/// Two PUTs of the same id in one Bundle: two versions, the second current.
async fn twice_in_one_transaction(s: &dyn Store) {
    let pid = new_patient(s, HETU_A).await;
    let put = |text: &str| WriteOp::Update {
        resource: check(observation(&format!("Patient/{pid}"), "2024-01-01", text)).unwrap(),
        id: "twice".into(),
        if_match: None,
    };
    let w = s
        .write(req(vec![put("first"), put("second")]), NOW)
        .await
        .unwrap()
        .into_inner();
    assert_eq!((w[0].stored.version, w[1].stored.version), (1, 2));
    let cur = s
        .read("Observation", "twice")
        .await
        .unwrap()
        .into_inner()
        .unwrap();
    assert_eq!(
        (cur.version, cur.body["code"]["text"].as_str()),
        (2, Some("second"))
    );
    assert_eq!(
        s.history("Observation", "twice")
            .await
            .unwrap()
            .into_inner()
            .len(),
        2
    );
}

/// R-AUTH-4, R-AUTH-5: sessions live in the database; a login under way is taken exactly once;
/// logout from the identity provider ends the sessions it names; pruning ends idle and expired ones.
async fn sessions(s: &dyn Store) {
    let hetu = Hetu::parse(HETU_A).unwrap();
    let key = s.claim_patient_key(&hetu, NOW).await.unwrap();
    assert_eq!(s.claim_patient_key(&hetu, NOW).await.unwrap(), key);
    assert!(
        s.person(&hetu).await.unwrap().is_none(),
        "claiming a key creates no register entry"
    );
    let row = |id: &str, sid: Option<&str>, last: i64| SessionRow {
        id_hash: id.into(),
        patient_key: key,
        hetu: hetu.clone(),
        display_name: "Testi Henkilö".into(),
        acting_for: None,
        csrf_token: format!("csrf-{id}"),
        created_at: 1_000,
        last_active_at: last,
        absolute_expiry: 100_000,
        confirmed: false,
        idp_issuer: "https://idp".into(),
        idp_sub: "sub-1".into(),
        idp_sid: sid.map(str::to_string),
        id_token: Some("eyJ".into()),
    };
    for (id, sid, last) in [
        ("a", Some("sid-1"), 1_000),
        ("b", Some("sid-2"), 5_000),
        ("c", None, 9_000),
    ] {
        s.session_insert(&row(id, sid, last)).await.unwrap();
    }
    assert!(
        s.session_insert(&row("a", None, 1)).await.is_err(),
        "ids are unique"
    );
    assert_eq!(
        s.session_get("a").await.unwrap(),
        Some(row("a", Some("sid-1"), 1_000))
    );
    s.session_touch("a", 2_000).await.unwrap();
    s.session_touch("a", 1_500).await.unwrap(); // never moves back
    s.session_confirm("a").await.unwrap();
    let a = s.session_get("a").await.unwrap().unwrap();
    assert_eq!((a.last_active_at, a.confirmed), (2_000, true));

    let ended = s
        .sessions_end_for_idp("https://idp", Some("sid-2"), Some("sub-1"))
        .await
        .unwrap();
    assert_eq!(
        ended.iter().map(|r| r.id_hash.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(s
        .sessions_end_for_idp("https://other", None, Some("sub-1"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.session_delete("c").await.unwrap().map(|r| r.id_hash),
        Some("c".to_string())
    );
    assert_eq!(s.session_delete("c").await.unwrap(), None);

    // R-MINOR, R-PROXY: a switch of whom one acts for replaces the session (a new id) at once;
    // the old id no longer works, and a session already gone is not replaced.
    let child = Hetu::parse(HETU_B).unwrap();
    let child_key = s.claim_patient_key(&child, NOW).await.unwrap();
    let acting = SessionRow {
        acting_for: Some(crate::ActingFor {
            key: child_key,
            hetu: child.clone(),
            name: "Lapsi Henkilö".into(),
            via: crate::ActingVia::Guardian,
        }),
        ..row("e", None, 2_000)
    };
    assert!(s.session_replace("a", &acting).await.unwrap());
    assert_eq!(s.session_get("a").await.unwrap(), None);
    assert_eq!(s.session_get("e").await.unwrap(), Some(acting.clone()));
    assert!(!s
        .session_replace("a", &row("f", None, 2_000))
        .await
        .unwrap());
    assert_eq!(s.session_get("f").await.unwrap(), None);
    let back = row("a", Some("sid-1"), 2_000);
    assert!(s.session_replace("e", &back).await.unwrap());
    let a = s.session_get("a").await.unwrap().unwrap();
    assert_eq!(a.acting_for, None);
    s.session_confirm("a").await.unwrap();

    s.session_insert(&row("d", None, 50_000)).await.unwrap();
    // Idle before 3_000: a (2_000) goes, d (50_000) stays.
    let gone = s.sessions_prune(3_000, 10_000, 0).await.unwrap();
    assert_eq!(
        gone.iter().map(|r| r.id_hash.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert!(s.session_get("a").await.unwrap().is_none());
    // Past the absolute expiry: d goes too.
    assert_eq!(s.sessions_prune(0, 100_000, 0).await.unwrap().len(), 1);

    let login = PendingLogin {
        state_hash: "st".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        lang: "sv".into(),
        created_at: 7,
    };
    s.login_begin(&login).await.unwrap();
    assert_eq!(s.login_take("st").await.unwrap(), Some(login.clone()));
    assert_eq!(s.login_take("st").await.unwrap(), None, "taken once");
    s.login_begin(&login).await.unwrap();
    s.sessions_prune(0, 0, 8).await.unwrap();
    assert_eq!(
        s.login_take("st").await.unwrap(),
        None,
        "old logins are pruned"
    );
}

fn lab(subject: &str, enc: Option<&str>, when: &str, text: &str) -> Value {
    let mut v = json!({"resourceType": "Observation", "status": "final", "code": {"text": text},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "subject": {"reference": subject}, "effectiveDateTime": when});
    if let Some(e) = enc {
        v["encounter"] = json!({"reference": e});
    }
    v
}

/// R-VIEW-2: a section's page is the patient's own rows of that section, newest first, filtered by
/// time and recording organisation, paged without gaps or repeats (ties included), each row with
/// its service event.
async fn sections(s: &dyn Store) {
    use crate::{SectionCursor, SectionQuery};
    let ops = vec![
        (Some("urn:uuid:p"), create(patient(HETU_A))),
        (
            Some("urn:uuid:e"),
            create(
                json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"}, "subject": {"reference": "urn:uuid:p"},
                       "period": {"start": "2026-03-01T10:00:00+02:00"}}),
            ),
        ),
        (
            None,
            create(lab(
                "urn:uuid:p",
                Some("urn:uuid:e"),
                "2026-03-01T08:00:00+02:00",
                "Hb",
            )),
        ),
        (
            None,
            create(lab("urn:uuid:p", None, "2026-02-01T08:00:00+02:00", "CRP")),
        ),
        // Three at the same instant: the tie is broken by id, then type.
        (
            None,
            create(lab("urn:uuid:p", None, "2026-01-01T08:00:00+02:00", "K")),
        ),
        (
            None,
            create(lab("urn:uuid:p", None, "2026-01-01T08:00:00+02:00", "Na")),
        ),
        (
            None,
            create(lab("urn:uuid:p", None, "2026-01-01T08:00:00+02:00", "Krea")),
        ),
        (
            None,
            create(observation(
                "urn:uuid:p",
                "2026-03-02T08:00:00+02:00",
                "Paino",
            )),
        ),
        (
            None,
            create(
                json!({"resourceType": "Condition", "code": {"text": "J06.9"}, "subject": {"reference": "urn:uuid:p"}, "recordedDate": "2026-03-03"}),
            ),
        ),
    ];
    let w = s.write(req_urls(ops), NOW).await.unwrap().into_inner();
    let key = w[0].stored.patient.unwrap();
    let enc_id = w[1].stored.id.clone();
    // Another organisation records a lab result too; another patient has one.
    let mut other_org = req(vec![create(lab(
        &format!("Patient/{}", w[0].stored.id),
        None,
        "2025-12-01T08:00:00+02:00",
        "TSH",
    ))]);
    other_org.org = OrgId::new("org-other");
    other_org.principal = kanta_domain::access::Principal::system(
        "conformance-other",
        &other_org.org,
        &[kanta_domain::ids::ClientRole::Clinician],
    );
    s.write(other_org, NOW).await.unwrap().into_inner();
    let b = new_patient(s, HETU_B).await;
    s.write(
        req(vec![create(lab(
            &format!("Patient/{b}"),
            None,
            "2026-03-01T08:00:00+02:00",
            "Hb",
        ))]),
        NOW,
    )
    .await
    .unwrap()
    .into_inner();

    let q = |section: Option<&str>| SectionQuery {
        patient: key,
        section: section.map(str::to_string),
        since: None,
        until: None,
        org: None,
        only: None,
        count: 100,
        after: None,
    };
    let texts = |p: &crate::SectionPage| -> Vec<String> {
        p.rows
            .iter()
            .map(|r| {
                r.found.to_value()["code"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let all_lab = s.section(&q(Some("lab"))).await.unwrap().into_inner();
    assert_eq!(all_lab.rows.len(), 6, "{:?}", texts(&all_lab));
    assert_eq!(&texts(&all_lab)[..2], ["Hb", "CRP"]);
    assert_eq!(texts(&all_lab)[5], "TSH");
    assert!(all_lab.next.is_none());
    // The service event comes with the row that points to it, and only with that one.
    let hb = &all_lab.rows[0];
    assert_eq!(
        hb.encounter.as_ref().map(|e| e.id.as_str()),
        Some(enc_id.as_str())
    );
    assert_eq!(
        hb.encounter.as_ref().unwrap().to_value()["class"]["code"],
        "IMP"
    );
    assert!(all_lab.rows[1].encounter.is_none());
    assert_eq!(hb.org.as_deref(), Some("org-test"));
    assert_eq!(hb.section.as_deref(), Some("lab"));
    // Other sections; every section at once.
    assert_eq!(
        texts(
            &s.section(&q(Some("measurements")))
                .await
                .unwrap()
                .into_inner()
        ),
        ["Paino"]
    );
    assert_eq!(
        s.section(&q(Some("diagnoses")))
            .await
            .unwrap()
            .into_inner()
            .rows
            .len(),
        1
    );
    let any = s.section(&q(None)).await.unwrap().into_inner();
    assert_eq!(any.rows.len(), 9, "lab 6, measurement, diagnosis, visit");
    assert_eq!(any.rows[0].found.resource_type, "Condition");
    // Time range: [since, until).
    let mar = |d: &str| kanta_fhir::datetime::millis(kanta_fhir::datetime::parse_start(d).unwrap());
    let in_jan_feb = SectionQuery {
        since: Some(mar("2026-01-01T08:00:00+02:00")),
        until: Some(mar("2026-03-01T08:00:00+02:00")),
        ..q(Some("lab"))
    };
    assert_eq!(
        texts(&s.section(&in_jan_feb).await.unwrap().into_inner()).len(),
        4
    );
    // Organisation.
    let other = SectionQuery {
        org: Some("org-other".into()),
        ..q(Some("lab"))
    };
    assert_eq!(
        texts(&s.section(&other).await.unwrap().into_inner()),
        ["TSH"]
    );
    // One resource (the detail view), only from its own patient.
    let only = SectionQuery {
        only: Some(("Observation".into(), hb.found.id.clone())),
        ..q(Some("lab"))
    };
    assert_eq!(texts(&s.section(&only).await.unwrap().into_inner()), ["Hb"]);
    let not_mine = SectionQuery {
        patient: kanta_domain::ids::PatientKey(key.0 + 1),
        ..only.clone()
    };
    assert!(s
        .section(&not_mine)
        .await
        .unwrap()
        .into_inner()
        .rows
        .is_empty());
    // Paging two at a time visits every row once, in order, across the tie.
    let mut seen = vec![];
    let mut after: Option<SectionCursor> = None;
    loop {
        let page = s
            .section(&SectionQuery {
                count: 2,
                after: after.clone(),
                ..q(Some("lab"))
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(texts(&page));
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, texts(&all_lab));
    // The provider filter's choices.
    let providers = s.section_providers(key, "lab").await.unwrap().into_inner();
    assert_eq!(providers.orgs, ["org-other", "org-test"]);
    assert!(s
        .section_providers(key, "vaccinations")
        .await
        .unwrap()
        .into_inner()
        .orgs
        .is_empty());
}

/// The visits page's query (`Store::visits`): a patient's Encounters newest first, twenty (here
/// two) a page by keyset cursor, each with every care document pointing at it — several on one
/// visit, none of another patient's, none of a visit on another page.
async fn visits(s: &dyn Store) {
    let enc = |when: &str| {
        create(
            json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": "urn:uuid:p"}, "period": {"start": when}}),
        )
    };
    let ops = vec![
        (Some("urn:uuid:p"), create(patient(HETU_A))),
        (Some("urn:uuid:e1"), enc("2026-01-10T09:00:00+02:00")),
        (Some("urn:uuid:e2"), enc("2026-02-10T09:00:00+02:00")),
        (Some("urn:uuid:e3"), enc("2026-03-10T09:00:00+02:00")),
        (
            None,
            create(lab(
                "urn:uuid:p",
                Some("urn:uuid:e3"),
                "2026-03-10T09:10:00+02:00",
                "Hb",
            )),
        ),
        (
            None,
            create(lab(
                "urn:uuid:p",
                Some("urn:uuid:e3"),
                "2026-03-10T09:20:00+02:00",
                "CRP",
            )),
        ),
        (
            None,
            create(lab(
                "urn:uuid:p",
                Some("urn:uuid:e3"),
                "2026-03-10T09:30:00+02:00",
                "K",
            )),
        ),
        (
            None,
            create(lab(
                "urn:uuid:p",
                Some("urn:uuid:e1"),
                "2026-01-10T09:10:00+02:00",
                "TSH",
            )),
        ),
        // A document on no visit is not on the visits page.
        (
            None,
            create(lab("urn:uuid:p", None, "2026-03-11T08:00:00+02:00", "Gluk")),
        ),
    ];
    let w = s.write(req_urls(ops), NOW).await.unwrap().into_inner();
    let key = w[0].stored.patient.unwrap();
    let (e1, e2, e3) = (
        w[1].stored.id.clone(),
        w[2].stored.id.clone(),
        w[3].stored.id.clone(),
    );
    // Another patient's visit and document at the same time.
    let b = new_patient(s, HETU_B).await;
    s.write(
        req(vec![create(json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": format!("Patient/{b}")}, "period": {"start": "2026-03-10T09:00:00+02:00"}}))]),
        NOW,
    )
    .await
    .unwrap()
    .into_inner();
    let text = |f: &crate::Found| {
        f.to_value()["code"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = s.visits(key, 2, None).await.unwrap().into_inner();
    let ids: Vec<&str> = first
        .visits
        .resources
        .iter()
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(ids, [e3.as_str(), e2.as_str()], "newest first, two a page");
    let mut docs: Vec<String> = first.documents.iter().map(text).collect();
    docs.sort();
    assert_eq!(
        docs,
        ["CRP", "Hb", "K"],
        "every document of the page's visits, only those"
    );
    assert!(first.documents.iter().all(|d| d.patient == Some(key)));
    let next = first.visits.next.clone().expect("a second page");
    let second = s.visits(key, 2, Some(next)).await.unwrap().into_inner();
    let ids: Vec<&str> = second
        .visits
        .resources
        .iter()
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(ids, [e1.as_str()]);
    assert_eq!(
        second.documents.iter().map(text).collect::<Vec<_>>(),
        ["TSH"]
    );
    assert!(second.visits.next.is_none());
    // Nothing of the patient's for another key.
    let other = s
        .visits(kanta_domain::ids::PatientKey(key.0 + 1), 10, None)
        .await
        .unwrap()
        .into_inner();
    assert!(other
        .visits
        .resources
        .iter()
        .all(|f| f.patient != Some(key)));
}
