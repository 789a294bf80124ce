#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The storage conformance suite on both backends: every check on a fresh SQLite file and on a
//! fresh PostgreSQL database.

use kanta_store::conformance::checks;
use kanta_store::testing::TestDb;
use kanta_store::Backend;

async fn run_all(backend: Backend) {
    for (name, check) in checks() {
        let db = TestDb::new(backend).await;
        eprintln!("{backend:?}: {name}");
        check(db.store.as_ref()).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn conformance_sqlite() {
    run_all(Backend::Sqlite).await;
}

#[tokio::test]
async fn conformance_postgres() {
    run_all(Backend::Postgres).await;
}
