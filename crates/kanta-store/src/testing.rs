#![allow(clippy::panic)]

//! Fresh databases for tests: a new SQLite file, or a new PostgreSQL database on the server named by
//! `KANTA_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`). A PostgreSQL test
//! that cannot reach its server fails; it is never skipped.

use crate::{connect, Backend, Store};
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated, empty database that belongs to one test.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Database { admin: String, name: String },
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("kanta-test-{tag}"));
                std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("temp dir: {e}"));
                (
                    format!("sqlite://{}", dir.join("kanta.db").display()),
                    Cleanup::File(dir),
                )
            }
            Backend::Postgres => {
                let admin = std::env::var("KANTA_TEST_POSTGRES")
                    .unwrap_or_else(|_| DEFAULT_TEST_POSTGRES.to_string());
                let name = format!("kanta_test_{tag}");
                let pool = sqlx::PgPool::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL for tests is not reachable at KANTA_TEST_POSTGRES ({e}); run the README's test command, which starts it")
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("create test database: {e}"));
                pool.close().await;
                (
                    with_database(&admin, &name),
                    Cleanup::Database { admin, name },
                )
            }
        };
        let store = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {backend:?}: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {backend:?}: {e}"));
        TestDb {
            store,
            url,
            cleanup,
        }
    }

    /// A fresh SQLite database in `dir` (e.g. on a small file system, to run out of space).
    pub async fn sqlite_in(dir: &std::path::Path) -> TestDb {
        let url = format!("sqlite://{}", dir.join("kanta.db").display());
        let store = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect SQLite in {}: {e}", dir.display()));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        TestDb {
            store,
            url,
            cleanup: Cleanup::File(dir.to_path_buf()),
        }
    }

    /// Drop the database (call at the end of a passing test; the test command removes leftovers).
    pub async fn cleanup(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin, name } => {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            }
        }
    }
}

/// Replace the database name in a PostgreSQL URL.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}
