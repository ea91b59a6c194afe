//! The golden run (mission-control-status: golden datasets and golden-run assertions): the
//! committed requests of `testdata/golden/requests.jsonl` go through the real edge, the
//! projector builds the read models, and their content must equal `testdata/golden/expected.json`
//! table by table (checksum first, then a readable diff of the rows that differ).
//! `CT_GOLDEN_UPDATE=1` rewrites the expected file after a deliberate change.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::stack;
use ct_testkit::{eventually, repo_root};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Each table as JSON rows in a stable order, without the columns that record *when* or *where*
/// something was processed (received time, trace id, log coordinates).
const SNAPSHOT: &[(&str, &str)] = &[
    (
        "events",
        "SELECT jsonb_build_object('event_id', event_id, 'type', type, 'source', source, 'ts', ts, 'correlation_id', correlation_id, 'payload', payload) FROM events ORDER BY event_id",
    ),
    ("runs", "SELECT to_jsonb(r) FROM runs r ORDER BY run_id"),
    ("systems", "SELECT to_jsonb(s) FROM systems s ORDER BY system_id"),
    ("type_counts", "SELECT to_jsonb(c) FROM type_counts c ORDER BY type"),
];

fn key(row: &Value) -> String {
    ["event_id", "run_id", "system_id", "type"]
        .iter()
        .find_map(|k| row.get(*k).and_then(Value::as_str))
        .unwrap_or("?")
        .to_owned()
}

fn checksum(rows: &[Value]) -> String {
    let mut hasher = Sha256::new();
    for row in rows {
        hasher.update(row.to_string().as_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}

/// What differs, row by row, for a human.
fn diff(table: &str, expected: &[Value], actual: &[Value]) -> String {
    let index = |rows: &[Value]| rows.iter().map(|r| (key(r), r.clone())).collect::<BTreeMap<_, _>>();
    let (expected, actual) = (index(expected), index(actual));
    let mut lines = Vec::new();
    for (k, row) in &expected {
        match actual.get(k) {
            None => lines.push(format!("  {table}: missing {k}: {row}")),
            Some(other) if other != row => {
                lines.push(format!("  {table}: {k} differs\n    expected {row}\n    actual   {other}"))
            }
            Some(_) => {}
        }
    }
    lines.extend(
        actual
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| format!("  {table}: unexpected {k}: {}", actual[k])),
    );
    let total = lines.len();
    lines.truncate(15);
    format!("{total} row(s) differ in {table}:\n{}", lines.join("\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_dataset_projects_to_the_expected_read_models() {
    let dir = repo_root().join("testdata/golden");
    let requests: Vec<Value> = std::fs::read_to_string(dir.join("requests.jsonl"))
        .expect("testdata/golden/requests.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let s = stack().await;
    let mut accepted = std::collections::BTreeSet::new();
    for request in &requests {
        let token = request["token"].as_str().unwrap();
        let status = s.post(token, &request["body"]).await;
        assert_eq!(u64::from(status), request["expect"].as_u64().unwrap(), "{}", request["body"]);
        if status == 202 {
            accepted.insert(request["body"]["eventId"].as_str().unwrap().to_owned());
        }
    }
    let pool = ct_platform::postgres::connect(&s.postgres).await.unwrap();
    let projected = eventually(Duration::from_secs(60), || async {
        let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.ok();
        (n == Some(accepted.len() as i64)).then_some(())
    })
    .await;
    assert!(projected.is_some(), "the projector did not reach {} events", accepted.len());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut actual = serde_json::Map::new();
    for (table, sql) in SNAPSHOT {
        let rows: Vec<Value> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        actual.insert((*table).to_owned(), json!({"checksum": checksum(&rows), "rows": rows}));
    }
    let expected_path = dir.join("expected.json");
    if std::env::var_os("CT_GOLDEN_UPDATE").is_some() {
        std::fs::write(&expected_path, serde_json::to_string_pretty(&Value::Object(actual)).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).expect("testdata/golden/expected.json")).unwrap();
    let mut failures = Vec::new();
    let rows = |v: &Value| v["rows"].as_array().cloned().unwrap_or_default();
    for (table, _) in SNAPSHOT {
        // The checksum is recomputed from the expected rows, so an edit of the file is seen too.
        let (want, got) = (rows(&expected[table]), rows(&actual[*table]));
        if checksum(&want) != checksum(&got) {
            failures.push(diff(table, &want, &got));
        }
    }
    assert!(failures.is_empty(), "the read models differ from the golden file:\n{}", failures.join("\n"));
    assert_eq!(accepted.len(), expected["events"]["rows"].as_array().map_or(0, Vec::len));
}
