#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! ARCHITECTURE.md stays true: every file, folder and module it names exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `code span` of the text.
fn spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "target" || name == "node_modules" || name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `a/{x,y}.ftl` → `a/x.ftl`, `a/y.ftl` (one brace group).
fn expand(span: &str) -> Vec<String> {
    match (span.find('{'), span.find('}')) {
        (Some(a), Some(b)) if a < b => span[a + 1..b]
            .split(',')
            .map(|alt| format!("{}{alt}{}", &span[..a], &span[b + 1..]))
            .collect(),
        _ => vec![span.to_string()],
    }
}

#[test]
fn the_files_and_modules_it_names_exist() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut files = vec![];
    all_files(&root().join("crates"), &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let mut problems = vec![];
    let mut checked = 0;
    for span in spans(&text) {
        let span = span.trim_end_matches('/');
        if span.starts_with("crates/") && !span.contains('*') && !span.contains(' ') {
            for path in expand(span) {
                checked += 1;
                if !root().join(&path).exists() {
                    problems.push(format!("{path} does not exist"));
                }
            }
        } else if span.ends_with(".rs") && !span.contains('/') && !span.contains(' ') {
            checked += 1;
            if !names.iter().any(|n| n == span) {
                problems.push(format!("no file {span} under crates/"));
            }
        }
    }
    // The module names of the access decision and the store's parts, as the map names them.
    let lib = std::fs::read_to_string(root().join("crates/kanta-store/src/lib.rs")).unwrap();
    for part in ["Records", "Register", "Sessions", "AuditStore", "Clients"] {
        if text.contains(&format!("`{part}`")) && !lib.contains(&format!("pub trait {part}:")) {
            problems.push(format!("the store has no part {part}"));
        }
    }
    assert!(
        checked > 20,
        "only {checked} paths found: is the map still in ARCHITECTURE.md?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
