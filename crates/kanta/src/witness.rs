//! Publishing signed audit checkpoints to an outside witness over HTTP (R-OPS-4): each new
//! checkpoint note is POSTed (`text/plain`, the C2SP signed-note text) to the configured URL, so that
//! a truncation of the log's tail is detectable against what the witness holds
//! (`kanta audit verify --witness <its latest checkpoint>`).
//!
//! The audit writer never waits for the witness: notes arrive through a bounded channel and a
//! failed or lagging witness only costs notes, which the next checkpoint supersedes (a later
//! checkpoint commits to everything before it). Failures are logged and counted.

use std::time::Duration;
use tokio::sync::mpsc;

/// Start the publisher; returns the sender to put in `AuditConfig::witness_channel`.
pub fn start(url: String) -> Result<mpsc::Sender<String>, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        while let Some(mut note) = rx.recv().await {
            // Only the newest waiting note matters.
            while let Ok(newer) = rx.try_recv() {
                note = newer;
            }
            match http
                .post(&url)
                .header("content-type", "text/plain; charset=utf-8")
                .body(note)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    metrics::counter!("kanta_audit_witness_published_total").increment(1);
                }
                Ok(r) => {
                    metrics::counter!("kanta_audit_witness_failures_total").increment(1);
                    tracing::warn!(status = %r.status(), "the audit witness refused a checkpoint");
                }
                Err(e) => {
                    metrics::counter!("kanta_audit_witness_failures_total").increment(1);
                    tracing::warn!(error = %e, "the audit witness could not be reached");
                }
            }
        }
    });
    Ok(tx)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::routing::post;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn checkpoints_reach_the_witness_and_a_dead_one_blocks_nothing() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let keep = seen.clone();
        let app = axum::Router::new().route(
            "/witness",
            post(move |body: String| {
                let keep = keep.clone();
                async move {
                    keep.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let tx = start(format!("http://{addr}/witness")).unwrap();
        tx.send("kanta.example/audit\n1\nroot\n\n— sig\n".into())
            .await
            .unwrap();
        for _ in 0..500 {
            if !seen.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["kanta.example/audit\n1\nroot\n\n— sig\n"]
        );
        // Nobody listening: the publisher survives the failures: it drains the channel and takes
        // new notes.
        let dead = start("http://127.0.0.1:9/witness".into()).unwrap();
        for i in 0..50 {
            let _ = dead.try_send(format!("note {i}"));
        }
        let mut drained = false;
        for _ in 0..250 {
            if dead.capacity() == dead.max_capacity() {
                drained = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(drained && !dead.is_closed(), "the publisher stopped");
        assert!(dead.try_send("after the failures".into()).is_ok());
    }

    /// The audit writer never waits for the witness (issue 30: the old check timed `try_send`,
    /// which cannot wait): a witness that accepts connections and never answers holds up no
    /// commit, while every batch signs a checkpoint for it. Were the writer to wait for the
    /// witness (a `send().await`, the publisher's 10 s timeout a note), the 200 commits below
    /// would take minutes; the bound is 60 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_audit_writer_never_waits_for_a_hanging_witness() {
        use kanta_store::audit::{AuditConfig, AuditLog, Signer};
        let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = hang.local_addr().unwrap();
        let held = Arc::new(Mutex::new(vec![]));
        let keep = held.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = hang.accept().await {
                keep.lock().unwrap().push(conn);
            }
        });
        let db = kanta_store::testing::TestDb::new(kanta_store::Backend::Sqlite).await;
        let key = Signer::generate_pkcs8().unwrap();
        let log = AuditLog::start(
            db.store.clone(),
            AuditConfig {
                max_batch: 1,
                checkpoint_every: Duration::ZERO,
                signer: Signer::from_pkcs8("kanta.test/audit", &key).unwrap(),
                witness_file: None,
                witness_channel: Some(start(format!("http://{addr}/witness")).unwrap()),
            },
        );
        let commits = async {
            for i in 0..200 {
                let r = kanta_domain::audit::AuditRecord {
                    schema: kanta_domain::audit::AUDIT_SCHEMA,
                    recorded_at: 1_700_000_000_000 + i,
                    patient: Some(kanta_domain::ids::PatientKey(1)),
                    actor: kanta_domain::audit::Actor::System {
                        component: "test".into(),
                    },
                    on_behalf_of: None,
                    action: kanta_domain::audit::Action::Read,
                    entities: vec![],
                    query: None,
                    outcome: kanta_domain::audit::Outcome::Success,
                    request_id: None,
                    basis: None,
                };
                log.commit(vec![r]).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), commits)
            .await
            .expect("the writer waited for the witness");
        assert!(
            !held.lock().unwrap().is_empty(),
            "the witness was reached (and hangs)"
        );
        let head = db.store.audit_head().await.unwrap().0;
        assert_eq!(head, 200);
        db.cleanup().await;
    }
}
