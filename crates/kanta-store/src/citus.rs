//! Distributing the schema on Citus (R-X-8, issue 16): where each table lives, in one table in
//! code ([`PLACEMENT`]), and `kanta migrate --citus`, which applies it to a coordinator after the
//! ordinary migrations. The migrations' markers (`[patient]`, `[routing]`, `[reference]`) say the
//! same in prose; a test holds the two together, and the shard-key guard
//! (`tests/shard_keys.rs`) checks the statements against the markers.
//!
//! - `[patient]` tables are distributed by `patient_key`, co-located with `resource`: a citizen's
//!   page, a provider's search within a patient and a write with its audit records each stay on
//!   one shard.
//! - `relation_by_holder` by `holder_key`, co-located too: a guardian's list of children sits on
//!   the guardian's shard.
//! - `[routing]` tables by a column with many values that their look-ups name: the HETU, the
//!   resource id (not the type: a handful of types would put every locator of one type on one
//!   shard), the client, the outbox id, the session's hash.
//! - `[reference]` tables are replicated to every node.
//!
//! The audit tables' append-only triggers run on the shards; Citus refuses to distribute a table
//! with triggers unless `citus.enable_unsafe_triggers` is on, so the command sets it for the
//! database (and for its own session) before distributing. Idempotent: a table already
//! distributed is left as it is.

use sqlx::{Connection as _, PgConnection};
use std::collections::BTreeMap;

/// Where a table lives on Citus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A copy on every node.
    Reference,
    /// Hash-distributed by `column`, co-located with `colocate_with` when given.
    Distributed {
        column: &'static str,
        colocate_with: Option<&'static str>,
    },
}

const fn by(column: &'static str) -> Placement {
    Placement::Distributed {
        column,
        colocate_with: None,
    }
}

const fn by_patient() -> Placement {
    Placement::Distributed {
        column: "patient_key",
        colocate_with: Some("resource"),
    }
}

/// Every table of the migrations, in the order they are distributed: reference tables first,
/// then `resource` (the co-location group's first table), then the rest.
pub const PLACEMENT: &[(&str, Placement)] = &[
    ("api_client", Placement::Reference),
    ("shared_resource", Placement::Reference),
    ("shared_resource_version", Placement::Reference),
    ("shared_token", Placement::Reference),
    ("audit_state", Placement::Reference),
    ("audit_checkpoint", Placement::Reference),
    (
        "resource",
        Placement::Distributed {
            column: "patient_key",
            colocate_with: None,
        },
    ),
    ("resource_version", by_patient()),
    ("resource_token", by_patient()),
    ("person", by_patient()),
    ("relation", by_patient()),
    ("audit_record", by_patient()),
    (
        "relation_by_holder",
        Placement::Distributed {
            column: "holder_key",
            colocate_with: Some("resource"),
        },
    ),
    ("patient_hetu", by("hetu")),
    ("resource_locator", by("id")),
    ("client_assertion_jti", by("client_id")),
    ("audit_outbox", by("id")),
    ("portal_session", by("id_hash")),
    ("portal_login", by("state_hash")),
];

/// Why the schema could not be distributed.
#[derive(Debug, thiserror::Error)]
pub enum CitusError {
    #[error("Citus needs PostgreSQL: {0} is not a PostgreSQL URL")]
    NotPostgres(String),
    #[error(
        "this PostgreSQL server has no Citus extension (it is not among pg_available_extensions): \
         install Citus on the coordinator and every worker, add citus to shared_preload_libraries, \
         and run `kanta migrate --citus` again; on plain PostgreSQL use `kanta migrate` without --citus"
    )]
    NoExtension,
    #[error(
        "the Citus extension could not be created: {0} (is citus in shared_preload_libraries?)"
    )]
    CannotCreate(String),
    #[error("{table}: {message}")]
    Table { table: String, message: String },
    #[error("database: {0}")]
    Database(String),
}

/// What the command did.
#[derive(Debug, Default)]
pub struct Report {
    /// Tables distributed or made reference tables now.
    pub placed: Vec<String>,
    /// Tables that already were.
    pub already: Vec<String>,
    /// Worker nodes known to the coordinator.
    pub workers: i64,
}

fn db(e: sqlx::Error) -> CitusError {
    CitusError::Database(e.to_string())
}

/// Apply [`PLACEMENT`] on the Citus coordinator at `url` (the ordinary migrations have run).
pub async fn distribute(url: &str) -> Result<Report, CitusError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let scheme = url.split(':').next().unwrap_or_default().to_string();
        return Err(CitusError::NotPostgres(scheme));
    }
    let mut c = PgConnection::connect(url).await.map_err(db)?;
    let installed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
            .fetch_one(&mut c)
            .await
            .map_err(db)?;
    if !installed {
        let available: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'citus')",
        )
        .fetch_one(&mut c)
        .await
        .map_err(db)?;
        if !available {
            return Err(CitusError::NoExtension);
        }
        sqlx::query("CREATE EXTENSION IF NOT EXISTS citus")
            .execute(&mut c)
            .await
            .map_err(|e| CitusError::CannotCreate(e.to_string()))?;
    }
    // The audit tables' append-only triggers, on the shards (see the module's comment).
    sqlx::query("SET citus.enable_unsafe_triggers = on")
        .execute(&mut c)
        .await
        .map_err(db)?;
    let dbname: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut c)
        .await
        .map_err(db)?;
    sqlx::query(&format!(
        "ALTER DATABASE \"{}\" SET citus.enable_unsafe_triggers = on",
        dbname.replace('"', "\"\"")
    ))
    .execute(&mut c)
    .await
    .map_err(db)?;
    let workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'",
    )
    .fetch_one(&mut c)
    .await
    .map_err(db)?;
    let mut report = Report {
        workers,
        ..Report::default()
    };
    for (table, placement) in PLACEMENT {
        let placed =
            sqlx::query("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)")
                .bind(*table)
                .fetch_optional(&mut c)
                .await
                .map_err(db)?
                .is_some();
        if placed {
            report.already.push(table.to_string());
            continue;
        }
        let result = match placement {
            Placement::Reference => {
                sqlx::query("SELECT create_reference_table($1)")
                    .bind(*table)
                    .execute(&mut c)
                    .await
            }
            Placement::Distributed {
                column,
                colocate_with,
            } => {
                sqlx::query("SELECT create_distributed_table($1, $2, colocate_with => $3)")
                    .bind(*table)
                    .bind(*column)
                    .bind(colocate_with.unwrap_or("default"))
                    .execute(&mut c)
                    .await
            }
        };
        result.map_err(|e| CitusError::Table {
            table: table.to_string(),
            message: e.to_string(),
        })?;
        report.placed.push(table.to_string());
    }
    Ok(report)
}

/// The PostgreSQL migrations, for reading their markers.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_records.sql"),
    include_str!("../migrations/postgres/0002_audit.sql"),
    include_str!("../migrations/postgres/0003_portal_session.sql"),
    include_str!("../migrations/postgres/0004_section.sql"),
    include_str!("../migrations/postgres/0005_audit_retention.sql"),
    include_str!("../migrations/postgres/0006_client_scopes.sql"),
    include_str!("../migrations/postgres/0007_acting_for.sql"),
    include_str!("../migrations/postgres/0008_audit_outbox.sql"),
    include_str!("../migrations/postgres/0009_body_text.sql"),
];

/// Each table the migrations create, with the marker its comment block gives it (`patient`,
/// `routing`, `reference`, or `unmarked`) and its primary key's columns. The marker leads the
/// comment lines right above `CREATE TABLE`, or follows the table's name there
/// (`audit_record [patient]`). Used by the placement's test and by the shard-key guard.
pub fn marked_tables() -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for text in MIGRATIONS {
        let mut block = String::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(c) = line.strip_prefix("--") {
                block.push_str(c);
                block.push('\n');
                continue;
            }
            if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                let name = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let kind = ["patient", "routing", "reference"]
                    .into_iter()
                    .find(|k| {
                        let tag = format!("[{k}]");
                        block.lines().any(|l| {
                            let l = l.trim();
                            l.starts_with(&tag) || l.starts_with(&format!("{name} {tag}"))
                        })
                    })
                    .unwrap_or("unmarked")
                    .to_string();
                out.insert(name.clone(), (kind.clone(), Vec::new()));
                current = Some((name, kind));
            } else if let Some((name, kind)) = &current {
                let l = line.trim();
                let pk = if let Some(cols) = l.strip_prefix("PRIMARY KEY (") {
                    Some(
                        cols.trim_end_matches([')', ','])
                            .split(',')
                            .map(|c| c.trim().to_string())
                            .collect(),
                    )
                } else if l.contains(" PRIMARY KEY") {
                    Some(vec![l
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string()])
                } else {
                    None
                };
                if let Some(pk) = pk {
                    out.insert(name.clone(), (kind.clone(), pk));
                }
                let _ = kind;
                if l.starts_with(");") {
                    current = None;
                }
            }
            // A comment block is the comment lines right above the statement.
            block.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// The placement covers every table once, agrees with the migrations' markers, and
    /// distributes each table by a column of its primary key (Citus requires it).
    #[test]
    fn the_placement_agrees_with_the_migrations() {
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .count();
        assert_eq!(
            files,
            MIGRATIONS.len(),
            "every migration is read for its markers"
        );
        let tables = marked_tables();
        let placed: BTreeMap<&str, Placement> = PLACEMENT.iter().copied().collect();
        assert_eq!(placed.len(), PLACEMENT.len(), "a table twice");
        assert_eq!(
            tables.keys().map(String::as_str).collect::<Vec<_>>(),
            placed.keys().copied().collect::<Vec<_>>(),
            "every table of the migrations has a placement, and only those"
        );
        for (name, (kind, pk)) in &tables {
            let p = placed[name.as_str()];
            match (kind.as_str(), p) {
                ("reference", Placement::Reference) => {}
                // Unmarked: the shared tables' version and token tables (the prose says
                // `shared_resource*`) and the sessions (their own comment says where they go).
                ("unmarked", _) => {}
                (
                    "patient",
                    Placement::Distributed {
                        column,
                        colocate_with,
                    },
                ) => {
                    assert_eq!(column, "patient_key", "{name}");
                    assert!(
                        colocate_with == Some("resource") || name == "resource",
                        "{name} is co-located with resource"
                    );
                }
                (_, Placement::Distributed { .. }) if kind != "reference" && kind != "patient" => {}
                other => panic!("{name}: marker and placement disagree: {other:?}"),
            }
            // A primary key must contain the distribution column (none: any column will do).
            if let Placement::Distributed { column, .. } = p {
                assert!(
                    pk.is_empty() || pk.iter().any(|c| c == column),
                    "{name}: {column} is not in its primary key {pk:?}"
                );
            }
        }
        // Reference tables come before anything co-located, and resource before its group.
        let first_distributed = PLACEMENT
            .iter()
            .position(|(_, p)| matches!(p, Placement::Distributed { .. }))
            .unwrap();
        assert!(PLACEMENT[first_distributed..]
            .iter()
            .all(|(_, p)| matches!(p, Placement::Distributed { .. })));
        assert_eq!(PLACEMENT[first_distributed].0, "resource");
        // The locator is not distributed by its type (issue 16: a handful of values).
        assert_eq!(placed["resource_locator"], by("id"));
    }
}
