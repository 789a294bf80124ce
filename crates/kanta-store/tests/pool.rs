#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The PostgreSQL pool pings a connection only after it sat idle (issue 15: a ping before every
//! statement was a sixth of a read's CPU). What that must not cost: after the server dropped every
//! connection (a restart, a failover) and a quiet second, the next request still succeeds: the
//! dead connections are found by their ping and replaced, not used.

use kanta_store::testing::TestDb;
use kanta_store::Backend;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dropped_connections_are_replaced_after_a_quiet_spell() {
    let db = TestDb::new(Backend::Postgres).await;
    // Open a few pooled connections.
    let mut reads = vec![];
    for _ in 0..4 {
        let store = db.store.clone();
        reads.push(tokio::spawn(async move { store.audit_head().await }));
    }
    for r in reads {
        r.await.unwrap().unwrap();
    }
    // The server ends every connection to the database, as a restart would.
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    assert!(
        ended.iter().any(|e| *e),
        "the store held connections to end"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..8 {
        db.store
            .audit_head()
            .await
            .expect("a dead idle connection is pinged and replaced, not used");
    }
    db.cleanup().await;
}
