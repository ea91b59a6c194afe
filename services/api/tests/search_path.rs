//! The read API reads every model's schema through one `search_path` (the projector's, then
//! `postgres.extra_schemas` in order), so a table name defined by two models answers from the
//! first one. GET /versions once read the health evaluator's `deployments` instead of the
//! versions model's. This test lists, from each model's migrations, the tables the API's queries
//! name that more than one schema on the path defines: only the known ones, each answering from
//! the schema that is meant to, may be there.

use std::collections::{BTreeMap, BTreeSet};

use ct_platform::postgres::Migration;

/// Table names a model's migrations leave behind (`CREATE TABLE`, `ALTER TABLE a RENAME TO b`).
fn tables(migrations: &[Migration]) -> BTreeSet<String> {
    let mut tables = BTreeSet::new();
    for migration in migrations {
        let sql: String = migration
            .sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let words: Vec<&str> =
            sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
        for (i, word) in words.iter().enumerate() {
            if *word == "table" && i > 0 && words[i - 1] == "create" {
                let name = if words.get(i + 1) == Some(&"if") { words.get(i + 4) } else { words.get(i + 1) };
                tables.extend(name.map(|n| n.to_string()));
            }
            if *word == "rename" && words.get(i + 1) == Some(&"to") && i >= 2 && words[i - 2] == "table" {
                tables.remove(words[i - 1]);
                tables.extend(words.get(i + 2).map(|n| n.to_string()));
            }
        }
    }
    tables
}

/// The Rust files under `dir`, its folders included (the dashboards' `ui/`).
fn sources(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Identifiers after `FROM` or `JOIN` in the API's source.
fn read_by_the_api() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in sources(&ct_testkit::repo_root().join("services/api/src")) {
        let text = std::fs::read_to_string(file).unwrap().to_ascii_lowercase();
        let words: Vec<&str> =
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
        for pair in words.windows(2) {
            if pair[0] == "from" || pair[0] == "join" {
                names.insert(pair[1].to_owned());
            }
        }
    }
    names
}

#[test]
fn every_table_the_read_api_reads_answers_from_the_model_meant() {
    // The API's search_path, in order (its config's defaults).
    let path: [(&str, &[Migration]); 6] = [
        ("ct_projector", ct_projector::store::MIGRATIONS),
        ("ct_dlq", ct_dlq_categoriser::store::MIGRATIONS),
        ("ct_health", ct_health::MIGRATIONS),
        ("ct_runs", ct_runner::model::MIGRATIONS),
        ("ct_digest", ct_digest::MIGRATIONS),
        ("ct_projector_versions", ct_projector::versions::MIGRATIONS),
    ];
    let defaults = ct_api::Config::defaults();
    let configured: Vec<&str> = std::iter::once(defaults.postgres.schema.as_str())
        .chain(defaults.postgres.extra_schemas.iter().map(String::as_str))
        .collect();
    assert_eq!(configured, path.map(|(schema, _)| schema), "this test follows the API's search_path");

    let read = read_by_the_api();
    let mut defined_by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (schema, migrations) in path {
        for table in tables(migrations) {
            defined_by.entry(table).or_default().push(schema);
        }
    }
    assert!(defined_by["drift_deployments"] == ["ct_health"], "the parser follows renames");
    let shared: BTreeMap<&str, &[&str]> = defined_by
        .iter()
        .filter(|(table, schemas)| schemas.len() > 1 && read.contains(*table))
        .map(|(table, schemas)| (table.as_str(), schemas.as_slice()))
        .collect();
    // Known and meant: `clock` is the health evaluator's (silences and alerts as of its clock),
    // `runs` the projector's run list (the evaluator's is internal to its SLOs). Any other table
    // named by the API and defined twice must be renamed.
    let expected: BTreeMap<&str, &[&str]> =
        [("clock", &["ct_health", "ct_digest"][..]), ("runs", &["ct_projector", "ct_health"][..])].into();
    assert_eq!(shared, expected);
}
