//! The README's access table is the truth: it must list exactly the read API's operations (from
//! `openapi.yaml`), and every operation, called with each role's token and with none, must answer
//! as the table says: allowed → neither 401 nor 403; not allowed → 401 without a token, 403 with
//! one. Path parameters are ids that do not exist and bodies are `{}`, so an allowed call ends in
//! 400/404/422 at worst and changes nothing.

mod common;

use std::collections::BTreeSet;

use common::stack;
use ct_testkit::repo_root;
use serde_json::Value;

const COLUMNS: [Option<&str>; 5] =
    [None, Some("dev-token-viewer"), Some("dev-token-operator"), Some("dev-token-maintainer"), Some("dev-token-owner")];

/// `(method, path, [no token, viewer, operator, maintainer, owner])` from the README's table.
fn readme_table() -> Vec<(String, String, [bool; 5])> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let start =
        readme.find("| endpoint | no token | viewer | operator | maintainer | owner |").expect("the access table");
    readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 6, "a row of six cells: {line}");
            let (method, path) = cells[0].trim_matches('`').split_once(' ').expect("`METHOD /path`");
            let allowed = std::array::from_fn(|i| match cells[i + 1] {
                "yes" => true,
                "no" => false,
                other => panic!("`{other}` in {line}: write yes or no"),
            });
            (method.to_owned(), path.to_owned(), allowed)
        })
        .collect()
}

fn documented_operations() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("services/api/openapi.yaml")).expect("openapi.yaml");
    let document: Value = serde_norway::from_str(&text).expect("openapi.yaml parses");
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// `{name}` segments replaced by an id that does not exist.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') { "ct-rbac-no-such-id" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_role_as_the_readme_table_says() {
    let table = readme_table();
    let listed: BTreeSet<(String, String)> = table.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(listed.len(), table.len(), "an operation is listed twice");
    let documented = documented_operations();
    assert_eq!(listed, documented, "the README's access table and openapi.yaml list different operations");

    let s = stack().await;
    let mut wrong = Vec::new();
    for (method, path, allowed) in &table {
        for (column, token) in COLUMNS.iter().enumerate() {
            let url = format!("{}{}", s.api, concrete(path));
            let mut request = match method.as_str() {
                "GET" => s.http.get(&url),
                "POST" => s.http.post(&url).header("content-type", "application/json").body("{}"),
                other => panic!("no call for {other}"),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.expect("the API answers").status().as_u16();
            let expected_ok = allowed[column];
            let fine = match (expected_ok, token) {
                (true, _) => status != 401 && status != 403,
                (false, None) => status == 401,
                (false, Some(_)) => status == 403,
            };
            if !fine {
                wrong.push(format!(
                    "{method} {path} as {}: {status} (the table says {})",
                    token.unwrap_or("no token"),
                    if expected_ok { "yes" } else { "no" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "answers that contradict the README:\n{}", wrong.join("\n"));
}
