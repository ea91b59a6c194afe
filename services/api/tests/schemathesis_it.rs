//! Schemathesis (from PyPI, installed by the test command into `.state/venv`) generates requests
//! from each of the three OpenAPI documents and sends them to the real services: the edge (with
//! a hook that signs bodies, `testdata/schemathesis/hooks.py`), the read API and the schema
//! registry. No answer may be a 5xx, and every answer's status, content type, headers and body
//! must be what the document says. Each document gets a bounded time budget.

mod common;

use std::time::Duration;

use common::stack;
use ct_testkit::repo_root;

/// The checks that make "no 5xx and no answer that contradicts the document".
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

fn budget_s() -> u64 {
    std::env::var("CT_SCHEMATHESIS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45)
}

async fn run(name: &str, document: &str, url: &str, header: Option<&str>, phases: &str) -> (bool, String) {
    let mut command = tokio::process::Command::new(ct_testkit::venv_bin("st"));
    command
        .arg("run")
        .arg(repo_root().join(document))
        .args(["--url", url, "--checks", CHECKS, "--workers", "2", "--max-time", &budget_s().to_string()])
        .args([
            "--phases",
            phases,
            "--request-timeout",
            "10",
            "--suppress-health-check",
            "all",
            "--warnings",
            "off",
            "--no-color",
        ])
        .env("PYTHONPATH", repo_root().join("testdata/schemathesis"))
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .kill_on_drop(true);
    if let Some(header) = header {
        command.args(["--header", header]);
    }
    let budget = Duration::from_secs(budget_s() * 4 + 120);
    let output = tokio::time::timeout(budget, command.output()).await.expect("schemathesis finishes").expect("runs");
    let report = format!(
        "== {name} ({document}) ==\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_openapi_document_holds_under_generated_requests() {
    let s = stack().await;
    let every_phase = "examples,coverage,fuzzing,stateful";
    let runs = [
        (
            "edge",
            "services/edge/openapi.yaml",
            s.edge.as_str(),
            Some("Authorization: Bearer dev-token-finance"),
            every_phase,
        ),
        (
            "read API",
            "services/api/openapi.yaml",
            s.api.as_str(),
            Some("Authorization: Bearer dev-token-owner"),
            every_phase,
        ),
        ("registry", "services/registry/openapi.yaml", s.registry.as_str(), None, every_phase),
    ];
    let mut failures = Vec::new();
    for (name, document, url, header, phases) in runs {
        let (passed, report) = run(name, document, url, header, phases).await;
        if !passed {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
