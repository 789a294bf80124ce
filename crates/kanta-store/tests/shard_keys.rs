#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The guard of R-X-8 that runs without Citus (issue 16): every complete SQL statement the store
//! sends that reads or changes a table the migrations mark `[patient]` names the patient
//! (`patient_key = $n`), and no statement mixes a `[patient]` table with a `[routing]` one (a join
//! between tables distributed by different columns). What may fan out is listed below, each with
//! why; an exemption that no longer matches a statement fails too, so the list stays true.
//!
//! Statements assembled from pieces at run time (`search`, `section`) are not seen here; their
//! patient predicate is asserted in their own code (`AND r.patient_key = …`).

use std::collections::BTreeSet;
use std::path::Path;

/// (a piece of the statement, why it may reach every shard)
const MAY_FAN_OUT: &[(&str, &str)] = &[
    (
        "SELECT id FROM resource_token WHERE resource_type = $1 AND system = $2 AND value = $3",
        "a conditional create by an identifier that is not a HETU names no patient (a HETU goes through patient_hetu); rare, provider-side; a routing table by (system, value) would keep it on one shard",
    ),
    (
        "FROM audit_record WHERE seq >= $1 AND seq < $2",
        "verify and export read the whole log in order, off the request path",
    ),
    (
        "UPDATE audit_record SET body = '', pruned_at = $1",
        "the retention job, hourly, oldest first across patients",
    ),
];

/// (a piece of the statement, why it never runs on Citus): the statements the store sends only to a
/// single PostgreSQL server (`PgStore::one_statement_append`, off when the Citus extension is
/// installed), which may mix placements freely.
const SINGLE_SERVER_ONLY: &[(&str, &str)] = &[
    (
        "WITH moved AS (UPDATE audit_state SET tree_size = $1, batch = $2, frontier = $3",
        "the audit writer's one-statement append and drain (issue 15); on Citus the store takes the locked transactions instead",
    ),
    (
        "one_write_replaced AS (DELETE FROM resource_token t USING",
        "a write's rows in one statement (`PgTx::put_one_statement`, issue 15), its tokens named by patient through the VALUES list; on Citus the store writes per table",
    ),
];

fn dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tables whose comment block marks them `[kind]` (the one reader of the markers:
/// `kanta_store::citus::marked_tables`).
fn marked(kind: &str) -> BTreeSet<String> {
    kanta_store::citus::marked_tables()
        .into_iter()
        .filter(|(_, (k, _))| k == kind)
        .map(|(name, _)| name)
        .collect()
}

/// The string literals of Rust source (plain and raw), skipping comments and char literals.
fn literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let (mut i, mut out) = (0, vec![]);
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            i = src[i..].find('\n').map_or(b.len(), |j| i + j);
        } else if b[i..].starts_with(b"r#\"") {
            let end = src[i + 3..].find("\"#").unwrap() + i + 3;
            out.push(src[i + 3..end].to_string());
            i = end + 2;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push(src[i + 1..j].to_string());
            i = j + 1;
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x' or '\x'), not a lifetime.
            let close = src[i + 1..].find('\'').map_or(i + 1, |j| i + 1 + j);
            i = close + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn tables_in(sql: &str) -> BTreeSet<String> {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = BTreeSet::new();
    for w in words.windows(2) {
        if matches!(w[0], "FROM" | "JOIN" | "UPDATE" | "INTO") {
            out.insert(w[1].to_string());
        }
    }
    out
}

#[test]
fn hot_queries_stay_on_one_shard() {
    let patient = marked("patient");
    let routing = marked("routing");
    for t in [
        "resource",
        "resource_version",
        "resource_token",
        "person",
        "relation",
    ] {
        assert!(patient.contains(t), "{t} is a [patient] table: {patient:?}");
    }
    assert!(
        routing.contains("patient_hetu") && routing.contains("resource_locator"),
        "{routing:?}"
    );
    let src = std::fs::read_to_string(dir().join("src/backend.rs")).unwrap();
    let mut unexplained = vec![];
    let mut used = BTreeSet::new();
    let mut single = BTreeSet::new();
    let mut checked = 0;
    for lit in literals(&src) {
        let sql = lit.split_whitespace().collect::<Vec<_>>().join(" ");
        let statement = ["SELECT ", "UPDATE ", "DELETE FROM "]
            .iter()
            .any(|k| sql.contains(k));
        if !statement {
            continue;
        }
        let tables = tables_in(&sql);
        let touches: Vec<&String> = tables.intersection(&patient).collect();
        if touches.is_empty() {
            continue;
        }
        checked += 1;
        if let Some(k) = SINGLE_SERVER_ONLY
            .iter()
            .position(|(piece, _)| sql.contains(piece))
        {
            single.insert(k);
            continue;
        }
        let mixes = tables.iter().any(|t| routing.contains(t));
        // An insert (an upsert too) routes each row by the patient key among its columns.
        let inserts_by_patient = sql.starts_with("INSERT INTO ") && sql.contains("(patient_key,");
        let names_patient = inserts_by_patient || sql.contains("patient_key = $");
        if names_patient && !mixes {
            continue;
        }
        match MAY_FAN_OUT
            .iter()
            .position(|(piece, _)| sql.contains(piece))
        {
            Some(k) if !mixes => {
                used.insert(k);
            }
            _ => unexplained.push(sql),
        }
    }
    assert!(
        checked >= 20,
        "only {checked} statements of [patient] tables found: is the lexer lost?"
    );
    assert!(
        unexplained.is_empty(),
        "statements of [patient] tables that do not name the patient (or join a routing table), and are not listed as allowed to fan out:\n{}",
        unexplained.join("\n")
    );
    for (k, (piece, _)) in MAY_FAN_OUT.iter().enumerate() {
        assert!(
            used.contains(&k),
            "the exemption '{piece}' matches no statement any more: remove it"
        );
    }
    for (k, (piece, _)) in SINGLE_SERVER_ONLY.iter().enumerate() {
        assert!(
            single.contains(&k),
            "the single-server statement '{piece}' matches no statement any more: remove it"
        );
    }
}

#[test]
fn the_lexer_reads_literals_not_chars_or_comments() {
    let src = "let a = '\"'; // \"not this\"\nlet b = \"SELECT 1\"; let c = r#\"raw \"x\" \"#; fn f<'a>() {}";
    assert_eq!(
        literals(src),
        vec!["SELECT 1".to_string(), "raw \"x\" ".to_string()]
    );
}

/// The statements built at run time (issue 30: the guard could not see them): every shape of a
/// FHIR search and of a MyKanta section page names the patient whenever it reads patient data —
/// but a search by identifier without a patient, which is listed here with its reason.
#[test]
fn run_time_statements_stay_on_one_shard() {
    use kanta_domain::ids::PatientKey;
    use kanta_fhir::Scope;
    use kanta_store::{Cursor, SearchQuery, SectionCursor, SectionQuery};
    const SEARCH_FANS_OUT: &str = "an identifier search without a patient (`Task?owner=`'s queue, `Consent?producer=`, an identifier of a non-HETU system): names no patient; listed in ARCHITECTURE.md's hot-path table";
    let patient = marked("patient");
    let routing = marked("routing");
    let mut fans_out = 0;
    let mut checked = 0;
    for scope in [Scope::Patient, Scope::Shared] {
        for with_patient in [true, false] {
            for identifier in [true, false] {
                for after in [true, false] {
                    for ascending in [true, false] {
                        let q = SearchQuery {
                            resource_type: "Observation".into(),
                            patient: with_patient.then_some(PatientKey(7)),
                            identifier: identifier.then(|| ("s".to_string(), "v".to_string())),
                            ascending,
                            count: 20,
                            after: after.then(|| Cursor {
                                effective_at: 1,
                                id: "a".into(),
                            }),
                        };
                        let Some(sql) = kanta_store::search_sql(&q, scope) else {
                            // Never sent: a scan of every patient's data.
                            assert!(scope == Scope::Patient && !with_patient && !identifier);
                            continue;
                        };
                        let tables = tables_in(&sql);
                        assert!(!tables.iter().any(|t| routing.contains(t)), "{sql}");
                        if tables.intersection(&patient).next().is_none() {
                            continue;
                        }
                        checked += 1;
                        if !sql.contains("r.patient_key = $") {
                            assert!(!with_patient && identifier, "{SEARCH_FANS_OUT}: {sql}");
                            fans_out += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!((checked, fans_out), (12, 4));
    for bits in 0u32..64 {
        let on = |b: u32| bits & (1 << b) != 0;
        let q = SectionQuery {
            patient: PatientKey(7),
            section: on(0).then(|| "lab".to_string()),
            since: on(1).then_some(1),
            until: on(2).then_some(2),
            org: on(3).then(|| "org".to_string()),
            only: on(4).then(|| ("Observation".to_string(), "x".to_string())),
            count: 20,
            after: on(5).then(|| SectionCursor {
                effective_at: 1,
                id: "a".into(),
                resource_type: "Observation".into(),
            }),
        };
        let sql = kanta_store::section_sql(&q);
        assert!(sql.contains("WHERE r.patient_key = $2"), "{sql}");
        assert!(
            !tables_in(&sql).iter().any(|t| routing.contains(t)),
            "{sql}"
        );
    }
}
