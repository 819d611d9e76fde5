//! The KQL conformance suite: every case under `test_data/kql/*.kql` is a query, and the table
//! (or the error) it must produce. Adding a case is adding text to a file.
//!
//! Format:
//! ```text
//! === name of the case
//! query (one or more lines)
//! ---                  (or `--- unordered`, or `--- error`)
//! name:type, name:type
//! cell, cell
//! ```
//! Cells: strings quoted as JSON, `null`, numbers, ISO datetimes, `d.hh:mm:ss` timespans,
//! dynamic as compact JSON. For `--- error`, the lines are substrings the error must contain
//! (`line 1, position 9` checks the position).

use std::path::Path;
use std::sync::Arc;

use fleetpilot_emulator::kql::{self, MapCatalog, Options, Table};

struct Case {
    file: String,
    name: String,
    query: String,
    mode: String,
    expect: Vec<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/kql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kql"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for block in text.split("\n=== ").map(|b| b.trim_start_matches("=== ")) {
            if block.trim().is_empty() || block.starts_with("#") && !block.contains("\n---") {
                continue;
            }
            let (name, rest) = block.split_once('\n').unwrap_or((block, ""));
            let mut query = Vec::new();
            let mut lines = rest.lines();
            let mut mode = String::new();
            for line in lines.by_ref() {
                if line.starts_with("---") {
                    mode = line.trim_start_matches('-').trim().to_string();
                    break;
                }
                query.push(line);
            }
            let expect: Vec<String> =
                lines.map(str::trim_end).filter(|l| !l.is_empty() && !l.starts_with("# ")).map(str::to_string).collect();
            out.push(Case { file: file.clone(), name: name.trim().to_string(), query: query.join("\n"), mode, expect });
        }
    }
    out
}

/// The tables every case can read (`test_data/kql/fixtures/*.kql`, one table per file).
pub fn fixtures() -> MapCatalog {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/kql/fixtures");
    let mut catalog = MapCatalog::default();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let query = std::fs::read_to_string(&path).unwrap();
        let table = kql::run(&query, &catalog, &options()).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        catalog.0.insert(name, Arc::new(table));
    }
    catalog
}

/// `now()` is fixed for the suite: 2024-01-10T00:00:00Z.
pub fn options() -> Options {
    Options { now: kql::value::parse_datetime("2024-01-10").unwrap(), ..Options::default() }
}

fn check(case: &Case, catalog: &MapCatalog) -> Result<(), String> {
    let result = kql::run(&case.query, catalog, &options());
    match (case.mode.as_str(), result) {
        ("error", Err(e)) => {
            let shown = format!("{e}");
            for want in &case.expect {
                if !shown.contains(want.as_str()) {
                    return Err(format!("error {shown:?} does not contain {want:?}"));
                }
            }
            Ok(())
        }
        ("error", Ok(t)) => Err(format!("expected an error, got:\n{}", t.to_test_text())),
        (_, Err(e)) => Err(format!("unexpected error: {e}")),
        (mode, Ok(t)) => compare(&t, &case.expect, mode == "unordered"),
    }
}

fn compare(table: &Table, expect: &[String], unordered: bool) -> Result<(), String> {
    let text = table.to_test_text();
    let mut got: Vec<String> = text.lines().map(str::to_string).collect();
    let mut want: Vec<String> = expect.to_vec();
    if unordered && got.len() > 1 && want.len() > 1 {
        got[1..].sort();
        want[1..].sort();
    }
    if got == want { Ok(()) } else { Err(format!("expected:\n{}\ngot:\n{}", want.join("\n"), got.join("\n"))) }
}

#[test]
fn kql_conformance_suite() {
    let catalog = fixtures();
    let cases = cases();
    let only = std::env::var("KQL_CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in &cases {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        ran += 1;
        if let Err(e) = check(case, &catalog) {
            failures.push(format!("--- {} :: {}\n{}\n{e}", case.file, case.name, case.query));
        }
    }
    assert!(failures.is_empty(), "{} of {ran} KQL cases failed:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(only.is_some() || cases.len() >= 200, "the suite has {} cases; it should have at least 200", cases.len());
}
