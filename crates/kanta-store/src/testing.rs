#![allow(clippy::panic)]

//! Fresh databases for tests: a new SQLite file, or a new PostgreSQL database on the server named by
//! `KANTA_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`). A PostgreSQL test
//! that cannot reach its server fails; it is never skipped.

use crate::{connect, Backend, Store};
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A migrated, empty database that belongs to one test. On PostgreSQL `store` is connected as the
/// production's least-privilege role (`APP_ROLE`, granted by `sql/app-role.sql` exactly as
/// `kanta migrate --app-role` does), so a missing grant fails the suite; `url` is the owner's,
/// for the few tests that act as the owner on purpose: tampering with the audit tables (the role
/// may not touch them, which is the point), retention (`kanta audit prune` runs as the owner),
/// migrations, and the benchmark's raw floors.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The owner's URL.
    pub url: String,
    /// The server's URL: the least-privilege role on PostgreSQL, the file on SQLite.
    pub app_url: String,
    cleanup: Cleanup,
}

/// The role PostgreSQL tests run the store as (created once per server, with `APP_PASSWORD`).
pub const APP_ROLE: &str = "kanta_test_app";
const APP_PASSWORD: &str = "kanta-test-app";

/// Create the test role once per process (concurrent `CREATE ROLE`s of one name collide).
pub async fn ensure_app_role(admin: &str) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let pool = sqlx::PgPool::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"));
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(APP_ROLE)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("look up the test role: {e}"));
        if !exists {
            // Another test binary may create it between the look-up and here: that is fine.
            let _ = sqlx::query(&format!(
                "CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'"
            ))
            .execute(&pool)
            .await;
        }
        pool.close().await;
    })
    .await;
}

/// `url` with the user and password replaced by the test role's.
pub fn as_app_role(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let host = match rest.find('@') {
        Some(at) if rest[..at].find('/').is_none() => &rest[at + 1..],
        _ => rest,
    };
    format!("{}{APP_ROLE}:{APP_PASSWORD}@{host}", &url[..scheme_end])
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
        let owner = connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {backend:?}: {e}"));
        owner
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate {backend:?}: {e}"));
        let (store, app_url) = match (&cleanup, backend) {
            (Cleanup::Database { admin, .. }, Backend::Postgres) => {
                ensure_app_role(admin).await;
                owner
                    .grant_app_role(APP_ROLE)
                    .await
                    .unwrap_or_else(|e| panic!("grant the test role: {e}"));
                drop(owner);
                let app_url = as_app_role(&url);
                let store = connect(&app_url)
                    .await
                    .unwrap_or_else(|e| panic!("connect as {APP_ROLE}: {e}"));
                store
                    .check_schema()
                    .await
                    .unwrap_or_else(|e| panic!("schema check as {APP_ROLE}: {e}"));
                (store, app_url)
            }
            _ => (owner, url.clone()),
        };
        TestDb {
            store,
            url,
            app_url,
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
            app_url: url.clone(),
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
