#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Starting the binary: what it refuses, what it warns about, and the files it leaves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const KANTA: &str = env!("CARGO_BIN_EXE_kanta");

fn data_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kanta-startup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Outside the demo, a short or trivial token secret stops the server at start.
#[test]
fn a_weak_token_secret_is_refused() {
    let dir = data_dir("secret");
    for secret in ["", "x", "hunter2", &"a".repeat(64)] {
        let out = Command::new(KANTA)
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("KANTA_TOKEN_SECRET", secret)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {secret:?}");
        assert!(
            err.contains("at least 32") || err.contains("required"),
            "{secret:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 29: every stand-in only with `--demo`. `test_idp = true` or `test_mandates = true` outside
/// the demo stops the server at start (they let anyone log in as anyone, or record mandates),
/// rather than a log line.
#[test]
fn a_stand_in_outside_the_demo_stops_the_server() {
    for flag in ["test_idp", "test_mandates"] {
        let dir = data_dir(flag);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("kanta.toml");
        std::fs::write(&cfg, format!("{flag} = true\n")).unwrap();
        let out = Command::new(KANTA)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env(
                "KANTA_TOKEN_SECRET",
                "0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
            )
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: started");
        assert!(err.contains("runs only with --demo"), "{flag}: {err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `--demo` beyond loopback warns loudly; the demo's secrets, the audit signing key and the
/// SQLite database are readable by their owner only.
#[test]
fn the_demo_off_loopback_warns_and_files_are_private() {
    let dir = data_dir("demo");
    let mut child = Command::new(KANTA)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--demo", "--listen", "0.0.0.0:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut warned = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            warned |= line.contains("WARNING: --demo");
            if line.contains("kanta is listening") {
                let _ = tx.send(warned);
                return;
            }
        }
        let _ = tx.send(warned);
    });
    let warned = rx.recv_timeout(Duration::from_secs(120)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning for --demo on 0.0.0.0");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["demo-token-secret", "audit-signing-key.pk8", "kanta.db"] {
            let mode = std::fs::metadata(dir.join(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"))
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// R-RX-3: `kanta medicines check` imports the demo dataset, and refuses a broken file naming the
/// line (exit status 1, nothing half-read).
#[test]
fn the_medicines_importer_checks_a_file() {
    let dir = data_dir("medicines");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(KANTA)
        .arg("--data-dir")
        .arg(&dir)
        .args(["medicines", "check"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("products in") && said.contains("2026-01-01"),
        "{said}"
    );
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "# kanta-medicines 1\n# valid-from: 2026-12-15\nVNR;NAME;STRENGTH;FORM;PACKAGE_SIZE;UNIT;ATC;SUBSTITUTION_GROUP;PRICE_EUR;REIMBURSEMENT;STATUS\n401011;X;1 mg;tabletti;30;tabl;C10AA05;;1,00;;R\n40101;Y;1 mg;tabletti;30;tabl;C10AA05;;1,00;;R\n",
    )
    .unwrap();
    let out = Command::new(KANTA)
        .arg("--data-dir")
        .arg(&dir)
        .args(["medicines", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("line 5") && err.contains("six digits"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 30 (R-OPS-4): production PostgreSQL as the README says. The server never migrates on
/// PostgreSQL: on a database that is not migrated it refuses, naming `kanta migrate`; the owner
/// migrates and grants the server's role (`kanta migrate --app-role`); then the server starts as
/// that role, which can create no table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_as_the_least_privilege_role() {
    use kanta_store::testing::{as_app_role, ensure_app_role, with_database, APP_ROLE};
    let admin = std::env::var("KANTA_TEST_POSTGRES")
        .unwrap_or_else(|_| kanta_store::testing::DEFAULT_TEST_POSTGRES.to_string());
    let name = format!("kanta_test_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    ensure_app_role(&admin).await;
    let owner = with_database(&admin, &name);
    let app = as_app_role(&owner);
    let serve = |url: &str| {
        Command::new(KANTA)
            .args(["--database", url, "serve", "--listen", "127.0.0.1:0"])
            .env(
                "KANTA_TOKEN_SECRET",
                "0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Not migrated: refused with what to run, as the owner too.
    for url in [&owner, &app] {
        let out = serve(url).wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("schema is behind") && err.contains("kanta migrate"),
            "{err}"
        );
    }
    let out = Command::new(KANTA)
        .args(["--database", &owner, "migrate", "--app-role", APP_ROLE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As the role: it starts and listens.
    let mut child = serve(&app);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("kanta is listening") {
                let _ = tx.send(true);
                return;
            }
        }
        let _ = tx.send(false);
    });
    let listened = rx.recv_timeout(Duration::from_secs(30)).unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(listened, "the server did not start as {APP_ROLE}");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// `kanta migrate --citus` (R-X-8, issue 16) on a server without Citus: the ordinary migrations
/// run, then a clear refusal naming the extension and the way on, and a failing exit; on SQLite
/// it refuses before touching anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_citus_refuses_without_the_extension() {
    let db = kanta_store::testing::TestDb::new(kanta_store::Backend::Postgres).await;
    let out = Command::new(KANTA)
        .args(["--database", &db.url, "migrate", "--citus"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        // Either no Citus at all, or installed but not preloaded: both say what to do.
        err.contains("Citus extension") && err.contains("shared_preload_libraries"),
        "{err}"
    );
    assert!(
        !err.contains(&db.url),
        "the URL (and its password) is not repeated: {err}"
    );
    // The ordinary migrations ran: the schema is there for plain PostgreSQL.
    let out = Command::new(KANTA)
        .args(["--database", &db.url, "migrate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.cleanup().await;

    let dir = data_dir("citus-sqlite");
    let out = Command::new(KANTA)
        .arg("--data-dir")
        .arg(&dir)
        .args(["migrate", "--citus"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("PostgreSQL coordinator"),
        "{err}"
    );
    assert!(!dir.join("kanta.db").exists(), "nothing was created");
    let _ = std::fs::remove_dir_all(&dir);
}
