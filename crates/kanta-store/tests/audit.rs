#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The audit log on both backends: group commit, append-only storage, and `verify` detecting every
//! kind of tampering (R-OPS-4).

use kanta_domain::audit::{Action, Actor, AuditRecord, Outcome};
use kanta_domain::ids::PatientKey;
use kanta_domain::merkle;
use kanta_store::audit::{self, AuditConfig, AuditLog, Signer};
use kanta_store::testing::TestDb;
use kanta_store::Backend;
use std::time::Duration;

const NAME: &str = "kanta.test/audit";

fn record(i: i64) -> AuditRecord {
    AuditRecord {
        schema: kanta_domain::audit::AUDIT_SCHEMA,
        recorded_at: 1_700_000_000_000 + i,
        patient: Some(PatientKey(1 + i % 7)),
        actor: Actor::System {
            component: "test".into(),
        },
        on_behalf_of: None,
        action: Action::Read,
        entities: vec![format!("Observation/{i}")],
        query: None,
        outcome: Outcome::Success,
        request_id: Some(format!("req-{i}")),
        basis: None,
    }
}

fn signer(pkcs8: &[u8]) -> Signer {
    Signer::from_pkcs8(NAME, pkcs8).unwrap()
}

/// Fill a log through the writer: `n` concurrent single-record commits, checkpoint after each batch.
async fn filled(backend: Backend, n: i64) -> (TestDb, Vec<u8>, Vec<u8>) {
    let db = TestDb::new(backend).await;
    let key = Signer::generate_pkcs8().unwrap();
    let public = signer(&key).public_key();
    let log = AuditLog::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 1000,
            checkpoint_every: Duration::ZERO,
            signer: signer(&key),
            witness_file: None,
            witness_channel: None,
        },
    );
    let mut tasks = vec![];
    for i in 0..n {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.commit(vec![record(i)]).await.unwrap()
        }));
    }
    let mut seqs = vec![];
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.count(), 1);
        seqs.push(r.first_seq());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..n as u64).collect::<Vec<_>>(),
        "every record got its own leaf"
    );
    // Let the writer finish its last checkpoint (a slow machine gets 30 s; never a silent give-up).
    let mut done = false;
    for _ in 0..3000 {
        if db
            .store
            .checkpoints()
            .await
            .unwrap()
            .last()
            .map(|c| c.tree_size)
            == Some(n as u64)
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(done, "no checkpoint of all {n} records within 30 s");
    (db, key, public)
}

async fn group_commit_and_verify(backend: Backend) {
    let (db, _key, public) = filled(backend, 300).await;
    let report = audit::verify(db.store.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 300);
    assert!(report.checkpoints_verified >= 1);
    let stored = db.store.audit_range(0, 300).await.unwrap();
    let leaves: Vec<_> = stored.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(
        db.store.audit_head().await.unwrap(),
        (300, merkle::root(&leaves))
    );
    let batches: std::collections::BTreeSet<u64> = stored.iter().map(|r| r.batch).collect();
    eprintln!(
        "{backend:?}: 300 concurrent commits in {} batches",
        batches.len()
    );
    // Inclusion proofs verify against the signed root.
    let p = audit::prove(db.store.as_ref(), 123).await.unwrap().unwrap();
    let (size, root) = audit::open_checkpoint(&p.checkpoint, NAME, &public).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let proof: Vec<merkle::Hash> = p
        .proof
        .iter()
        .map(|h| b64.decode(h).unwrap().try_into().unwrap())
        .collect();
    assert!(merkle::verify_inclusion(
        123,
        size,
        &leaves[123],
        &proof,
        &root
    ));
    // A wrong key does not verify.
    let other = signer(&Signer::generate_pkcs8().unwrap()).public_key();
    assert!(!audit::verify(db.store.as_ref(), NAME, &other, None)
        .await
        .unwrap()
        .ok());
    db.cleanup().await;
}

/// Raw SQL as the database owner, with the append-only triggers switched off: what an intruder
/// with full database rights could do. `verify` must notice each change.
async fn tamper(db: &TestDb, backend: Backend, sql: &[&str]) {
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("ALTER TABLE audit_record DISABLE TRIGGER USER")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
                .execute(&pool)
                .await
                .unwrap();
            for s in sql {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            for t in [
                "audit_record_no_update",
                "audit_record_no_delete",
                "audit_checkpoint_no_update",
                "audit_checkpoint_no_delete",
            ] {
                sqlx::query(&format!("DROP TRIGGER IF EXISTS {t}"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            for s in sql {
                sqlx::query(s).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

async fn append_only_and_tamper_evident(backend: Backend) {
    // The triggers refuse changes.
    let (db, _, _) = filled(backend, 5).await;
    let refused = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let u = sqlx::query("UPDATE audit_record SET body = 'x' WHERE seq = 1")
                .execute(&pool)
                .await;
            let d = sqlx::query("DELETE FROM audit_record WHERE seq = 1")
                .execute(&pool)
                .await;
            let t = sqlx::query("TRUNCATE audit_record").execute(&pool).await;
            u.is_err() && d.is_err() && t.is_err()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let u = sqlx::query("UPDATE audit_record SET body = 'x' WHERE seq = 1")
                .execute(&pool)
                .await;
            let d = sqlx::query("DELETE FROM audit_record WHERE seq = 1")
                .execute(&pool)
                .await;
            u.is_err() && d.is_err()
        }
    };
    assert!(refused, "audit rows must not be updatable or deletable");
    db.cleanup().await;

    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("bit flip", vec!["UPDATE audit_record SET body = replace(body, 'Observation', 'Observatiom') WHERE seq = 3"], "changed"),
        ("delete", vec!["DELETE FROM audit_record WHERE seq = 4"], "missing"),
        ("reorder", vec![
            "UPDATE audit_record SET seq = -1 WHERE seq = 2",
            "UPDATE audit_record SET seq = 2 WHERE seq = 5",
            "UPDATE audit_record SET seq = 5 WHERE seq = -1",
        ], "checkpoint"),
        ("insert", vec!["UPDATE audit_record SET seq = seq + 1000 WHERE seq >= 9", "UPDATE audit_record SET seq = seq - 999 WHERE seq >= 1000", "INSERT INTO audit_record (patient_key, seq, recorded_at, batch, leaf_hash, body) SELECT patient_key, 9, recorded_at, batch, leaf_hash, body FROM audit_record WHERE seq = 8"], "checkpoint"),
        ("truncate the tail", vec!["DELETE FROM audit_record WHERE seq >= 15"], "removed from the end"),
        ("truncate tail and checkpoints", vec!["DELETE FROM audit_record WHERE seq >= 15", "DELETE FROM audit_checkpoint WHERE tree_size > 15"], "head"),
    ];
    for (what, sql, expect) in cases {
        let (db, _, public) = filled(backend, 20).await;
        let before = audit::verify(db.store.as_ref(), NAME, &public, None)
            .await
            .unwrap();
        assert!(before.ok(), "{what}: {before:?}");
        tamper(&db, backend, &sql).await;
        let after = audit::verify(db.store.as_ref(), NAME, &public, None)
            .await
            .unwrap();
        assert!(!after.ok(), "{backend:?} {what}: tampering went unnoticed");
        assert!(
            after.problems.iter().any(|p| p.contains(expect)),
            "{backend:?} {what}: {:?}",
            after.problems
        );
        db.cleanup().await;
    }
}

/// On PostgreSQL the server's role (sql/app-role.sql) can insert and read audit rows but not change
/// or remove them, even before the triggers are consulted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_app_role_cannot_update_or_delete_audit_rows() {
    let (db, _, _) = filled(Backend::Postgres, 3).await;
    let role = format!("kanta_app_{}", uuid_like());
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(&format!("CREATE ROLE {role} NOLOGIN"))
        .execute(&pool)
        .await
        .unwrap();
    // Granted as `kanta migrate --app-role` grants it, by the owner.
    kanta_store::connect(&db.url)
        .await
        .unwrap()
        .grant_app_role(&role)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query(&format!("SET ROLE {role}"))
        .execute(&mut *conn)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_record")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 3);
    for stmt in [
        "UPDATE audit_record SET body = 'x'",
        "DELETE FROM audit_record",
        "TRUNCATE audit_record",
        "DELETE FROM audit_checkpoint",
    ] {
        let e = sqlx::query(stmt)
            .execute(&mut *conn)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("permission denied"), "{stmt}: {e}");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    drop(conn);
    sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(&format!("DROP ROLE {role}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    db.cleanup().await;
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(kanta_store::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(kanta_store::Backend::Postgres).await } )* }
    };
}

/// Retention (R-X-2: at least three years of access history): records past three years are emptied by the job and keep their place in the
/// tree (the log still verifies); younger ones cannot be emptied, nothing can be deleted, and an
/// early emptying slipped past the database shows in `verify`.
async fn retention_keeps_the_tree(backend: Backend) {
    // Twenty records from November 2023 (over three years old), then three from now.
    let (db, key, public) = filled(backend, 20).await;
    // "Now" as the database's triggers see it.
    let now_ms: i64 = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let t = sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            t
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            let t = sqlx::query_scalar("SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            t
        }
    };
    let log = AuditLog::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 1000,
            checkpoint_every: Duration::ZERO,
            signer: signer(&key),
            witness_file: None,
            witness_channel: None,
        },
    );
    for i in 20..23 {
        let mut r = record(i);
        r.recorded_at = now_ms;
        log.commit(vec![r]).await.unwrap();
    }
    let mut done = false;
    for _ in 0..3000 {
        let last = db
            .store
            .checkpoints()
            .await
            .unwrap()
            .last()
            .map(|c| c.tree_size);
        if last == Some(23) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(done, "no checkpoint of all 23 records within 30 s");
    // Retention runs as the owner (`kanta audit prune` from cron): the server's role may not
    // change audit rows at all.
    let owner = kanta_store::connect(&db.url).await.unwrap();
    assert!(
        audit::prune(owner.as_ref(), 365, now_ms).await.is_err(),
        "less than three years is refused"
    );
    assert_eq!(
        audit::prune(owner.as_ref(), 1096, now_ms).await.unwrap(),
        20
    );
    assert_eq!(
        audit::prune(owner.as_ref(), 1096, now_ms).await.unwrap(),
        0,
        "once"
    );
    if backend == Backend::Postgres {
        assert!(
            audit::prune(db.store.as_ref(), 1096, now_ms).await.is_err(),
            "the server's role cannot prune"
        );
    }
    let report = audit::verify(db.store.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.pruned), (23, 20));
    let range = db.store.audit_range(0, 23).await.unwrap();
    assert!(range[..20]
        .iter()
        .all(|r| r.body.is_empty() && r.pruned_at == Some(now_ms)));
    assert!(range[20..]
        .iter()
        .all(|r| !r.body.is_empty() && r.pruned_at.is_none()));

    // The database refuses: emptying a young record, changing an emptied one, deleting any.
    let attempts = [
        "UPDATE audit_record SET body = '', pruned_at = 1 WHERE seq = 21",
        "UPDATE audit_record SET batch = batch + 1 WHERE seq = 1",
        "UPDATE audit_record SET pruned_at = NULL WHERE seq = 1",
        "DELETE FROM audit_record WHERE seq = 0",
    ];
    for sql in attempts {
        let refused = match backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                let r = sqlx::query(sql).execute(&pool).await.is_err();
                pool.close().await;
                r
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                let r = sqlx::query(sql).execute(&pool).await.is_err();
                pool.close().await;
                r
            }
        };
        assert!(refused, "{backend:?}: {sql} was allowed");
    }
    // Past the database (triggers dropped): an early emptying is reported.
    tamper(
        &db,
        backend,
        &["UPDATE audit_record SET body = '', pruned_at = recorded_at + 1 WHERE seq = 21"],
    )
    .await;
    let after = audit::verify(db.store.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(
        after
            .problems
            .iter()
            .any(|p| p.contains("before its retention ended")),
        "{after:?}"
    );
    db.cleanup().await;
}

/// A log that mixes version-1 records (written before the access decision: no `schema`, no
/// `basis`) with version-2 ones verifies, keeps each leaf over the bytes as written, and reads the
/// old records as version 1 without a basis (issue 17). The version-1 bytes enter through the
/// outbox, whose bodies become leaves as they are (never re-encoded).
async fn a_log_of_version_1_and_2_records_verifies(backend: Backend) {
    let (db, key, public) = filled(backend, 10).await;
    let v1 = r#"{"recorded_at":1700000000100,"patient":3,"actor":{"kind":"citizen","person":3},"on_behalf_of":null,"action":"read","entities":["Observation/old"],"query":null,"outcome":"success","request_id":"req-v1"}"#;
    let insert =
        "INSERT INTO audit_outbox (patient_key, recorded_at, body) VALUES (3, 1700000000100, $1)";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(insert).bind(v1).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(insert).bind(v1).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
    assert_eq!(
        db.store.audit_pending().await.unwrap(),
        1,
        "waiting in the outbox"
    );
    let drained = audit::drain_outbox(db.store.as_ref()).await.unwrap();
    assert_eq!(drained, 1);
    assert_eq!(db.store.audit_pending().await.unwrap(), 0);
    // More version-2 records after it, and a checkpoint over all.
    let log = AuditLog::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 1000,
            checkpoint_every: Duration::ZERO,
            signer: signer(&key),
            witness_file: None,
            witness_channel: None,
        },
    );
    log.commit(vec![record(100), record(101)]).await.unwrap();
    let mut signed = false;
    for _ in 0..3000 {
        if db
            .store
            .checkpoints()
            .await
            .unwrap()
            .last()
            .map(|c| c.tree_size)
            == Some(13)
        {
            signed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(signed, "no checkpoint over the mixed log");
    let report = audit::verify(db.store.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.pending), (13, 0));
    let stored = db.store.audit_range(10, 13).await.unwrap();
    assert_eq!(stored[0].body, v1, "the version-1 bytes as written");
    assert_eq!(stored[0].leaf_hash, merkle::leaf_hash(v1.as_bytes()));
    let old: AuditRecord = serde_json::from_str(&stored[0].body).unwrap();
    assert_eq!((old.schema, old.basis), (1, None));
    let new: AuditRecord = serde_json::from_str(&stored[1].body).unwrap();
    assert_eq!(new.schema, kanta_domain::audit::AUDIT_SCHEMA);
    // The patient's history reads both.
    let of_3 = db
        .store
        .audit_of_patient(PatientKey(3), None, 100)
        .await
        .unwrap();
    assert!(of_3.iter().any(|r| r.body == v1), "{of_3:?}");
    db.cleanup().await;
}

/// Sign a checkpoint of (size, root) with a fresh key and verify the whole log against it.
async fn checkpoint_and_verify(
    store: &dyn kanta_store::Store,
    size: u64,
    root: merkle::Hash,
) -> audit::VerifyReport {
    let key = Signer::generate_pkcs8().unwrap();
    audit::checkpoint_now(store, &signer(&key), None, size, root)
        .await
        .unwrap();
    let report = audit::verify(store, NAME, &signer(&key).public_key(), None)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    report
}

/// Two instances on one database, as behind a load balancer (issue 15): each writer appends after
/// the head it remembers, in one statement on PostgreSQL; when the other instance moved the head,
/// that statement applies nothing and the locked transaction takes over. In turn and concurrently:
/// one tree, every sequence number exactly once, and the log verifies.
async fn two_instances_append_to_one_tree(backend: Backend) {
    let db = TestDb::new(backend).await;
    let a = db.store.clone();
    let b = kanta_store::connect(&db.url).await.unwrap();
    let mut next = 0i64;
    let mut batch = |n: i64| {
        let r: Vec<AuditRecord> = (next..next + n).map(record).collect();
        next += n;
        r
    };
    // In turn: a fresh head, a remembered one, the other's fresh head, then each finds its own
    // head moved by the other.
    let mut got = vec![];
    for (store, n) in [
        (&a, 3),
        (&a, 1),
        (&b, 2),
        (&a, 1),
        (&b, 1),
        (&b, 2),
        (&a, 2),
    ] {
        let app = store.append_audit(&batch(n)).await.unwrap();
        got.push((app.first_seq, n as u64));
    }
    let mut at = 0;
    for (first, n) in &got {
        assert_eq!(
            *first, at,
            "in turn, each batch starts where the last ended: {got:?}"
        );
        at += n;
    }
    // Concurrently: 40 batches of 1 to 3 records, alternating between the two instances.
    let mut tasks = vec![];
    for i in 0..40i64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let records = batch(1 + i % 3);
        tasks.push(tokio::spawn(async move {
            let n = records.len() as u64;
            let app = store.append_audit(&records).await.unwrap();
            (app.first_seq, n)
        }));
    }
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_unstable();
    let mut at = 0;
    for (first, n) in &got {
        assert_eq!(*first, at, "no gap and no overlap between batches: {got:?}");
        at += n;
    }
    let total = next as u64;
    assert_eq!(at, total);
    let stored = a.audit_range(0, total).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (0..total).collect::<Vec<_>>(),
        "every sequence number once"
    );
    let leaves: Vec<_> = stored.iter().map(|r| r.leaf_hash).collect();
    let (size, root) = b.audit_head().await.unwrap();
    assert_eq!((size, root), (total, merkle::root(&leaves)));
    let report = checkpoint_and_verify(a.as_ref(), size, root).await;
    assert_eq!(report.records, total);
    db.cleanup().await;
}

both!(
    group_commit_and_verify,
    append_only_and_tamper_evident,
    retention_keeps_the_tree,
    a_log_of_version_1_and_2_records_verifies
);

/// The one-statement drain of a write's outbox records applies only while they are all still there:
/// after another instance's writer took them (its recovery pass), the drain finds nothing, even
/// when this writer's remembered head is current, and no record becomes a leaf twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_drain_never_appends_what_another_writer_took() {
    let db = TestDb::new(Backend::Postgres).await;
    let (a, b) = (
        db.store.clone(),
        kanta_store::connect(&db.url).await.unwrap(),
    );
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let outbox = |from: i64, n: i64| {
        let pool = pool.clone();
        async move {
            let mut rows = vec![];
            for i in from..from + n {
                let r = record(i);
                let body = String::from_utf8(r.canonical_bytes()).unwrap();
                let patient = r.patient.map_or(0, |k| k.0);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO audit_outbox (patient_key, recorded_at, body) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(patient)
                .bind(r.recorded_at)
                .bind(&body)
                .fetch_one(&pool)
                .await
                .unwrap();
                rows.push(kanta_store::PendingAudit {
                    id,
                    patient,
                    recorded_at: r.recorded_at,
                    body,
                });
            }
            rows
        }
    };
    a.append_audit(&[record(0), record(1)]).await.unwrap();
    let taken = outbox(2, 3).await;
    // Another instance's recovery pass takes them.
    let d = b.audit_drain(None).await.unwrap();
    assert_eq!(d.seqs.len(), 3);
    // This writer's head moves on past them (its remembered one was stale: the locked way).
    assert_eq!(a.append_audit(&[record(5)]).await.unwrap().first_seq, 5);
    // Its head is current now, and the records it would drain are gone: nothing happens.
    let again = a.audit_drain_rows(&taken).await.unwrap();
    assert!(again.seqs.is_empty(), "{again:?}");
    // That attempt forgot the head (it cannot tell a moved head from records taken); an append
    // takes the locked way and remembers it again. Records still there are then drained in one
    // statement, after the others.
    assert_eq!(a.append_audit(&[record(6)]).await.unwrap().first_seq, 6);
    let fresh = outbox(7, 2).await;
    let d = a.audit_drain_rows(&fresh).await.unwrap();
    assert_eq!(d.seqs, vec![(fresh[0].id, 7), (fresh[1].id, 8)]);
    assert_eq!(a.audit_pending().await.unwrap(), 0);
    let stored = a.audit_range(0, 100).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..9).collect::<Vec<_>>());
    let bodies: std::collections::BTreeSet<&str> = stored.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies.len(), 9, "no record twice");
    let (size, root) = a.audit_head().await.unwrap();
    checkpoint_and_verify(a.as_ref(), size, root).await;
    pool.close().await;
    db.cleanup().await;
}

/// Several instances share one database only on PostgreSQL (SQLite is the one-process demo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_append_to_one_tree() {
    two_instances_append_to_one_tree(Backend::Postgres).await
}

/// A backup taken while the log grows restores to a log that verifies and is a prefix of the live
/// one (R-OPS-4): same leaves, and a consistency proof from the backup's root to the live root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_restores_to_a_verifiable_prefix() {
    let (db, key, public) = filled(Backend::Sqlite, 40).await;
    let dir = std::env::temp_dir().join(format!("kanta-backup-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let backup = dir.join("backup.db");
    db.store.backup_to(backup.to_str().unwrap()).await.unwrap();
    // The live log goes on.
    let log = AuditLog::start(
        db.store.clone(),
        AuditConfig {
            max_batch: 1000,
            checkpoint_every: Duration::ZERO,
            signer: signer(&key),
            witness_file: None,
            witness_channel: None,
        },
    );
    for i in 40..70 {
        log.commit(vec![record(i)]).await.unwrap();
    }
    let restored = kanta_store::connect(&format!("sqlite://{}", backup.display()))
        .await
        .unwrap();
    restored.migrate().await.unwrap();
    let r = audit::verify(restored.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(r.ok() && r.records == 40, "{r:?}");
    let live = audit::verify(db.store.as_ref(), NAME, &public, None)
        .await
        .unwrap();
    assert!(live.ok() && live.records == 70, "{live:?}");
    let old: Vec<merkle::Hash> = restored
        .audit_range(0, 40)
        .await
        .unwrap()
        .iter()
        .map(|r| r.leaf_hash)
        .collect();
    let all: Vec<merkle::Hash> = db
        .store
        .audit_range(0, 70)
        .await
        .unwrap()
        .iter()
        .map(|r| r.leaf_hash)
        .collect();
    assert_eq!(old[..], all[..40], "the backup is a prefix of the live log");
    let proof = merkle::consistency_proof(40, &all);
    assert!(merkle::verify_consistency(
        40,
        70,
        &restored.audit_head().await.unwrap().1,
        &db.store.audit_head().await.unwrap().1,
        &proof
    ));
    let _ = std::fs::remove_dir_all(&dir);
    db.cleanup().await;
}
