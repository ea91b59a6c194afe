//! The Python and TypeScript clients (`clients/`) against the real edge: each library's own
//! tests (the shared conformance vectors, then a send, a duplicate, a refusal with its field, a
//! batch, Standard Webhooks, and a broker stop retried to success) run with this stack's
//! addresses; then the read API must list every event they sent, once.
//!
//! One test in its own binary: it stops and restarts the shared Kafka.

mod common;

use std::time::Duration;

use common::stack;
use ct_testkit::{eventually, repo_root, venv_bin};

async fn run(program: &std::path::Path, args: &[&str], dir: &std::path::Path, env: &[(&str, String)]) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {args:?} failed:\n{report}", program.display());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_typescript_clients_send_through_the_real_edge() {
    let s = stack().await;
    let root = repo_root();
    let env = |prefix: &str| {
        vec![
            ("CT_EDGE_URL", s.edge.clone()),
            ("CT_EDGE_TOKEN", "dev-token-finance".to_owned()),
            ("CT_EDGE_SECRET", "dev-webhook-secret".to_owned()),
            ("CT_EVENT_PREFIX", prefix.to_owned()),
            ("CT_STACK_SCRIPT", root.join("deploy/stack.sh").display().to_string()),
            ("PYTHONPATH", root.join("clients/python/src").display().to_string()),
        ]
    };
    let prefix = |lang: &str| format!("{lang}_{}", std::process::id());
    let py = prefix("py");
    let report = run(
        &venv_bin("python"),
        &["-m", "unittest", "discover", "-v", "-s", "tests"],
        &root.join("clients/python"),
        &env(&py),
    )
    .await;
    assert!(!report.contains("skipped"), "no Python test may skip here:\n{report}");
    let ts = prefix("ts");
    let report = run(std::path::Path::new("npm"), &["test"], &root.join("clients/typescript"), &env(&ts)).await;
    assert!(report.contains("# skipped 0") && report.contains("# fail 0"), "{report}");

    for lang in [&py, &ts] {
        let mut ids: Vec<String> = ["send", "sw", "outage", "batch_0", "batch_1", "batch_2"]
            .iter()
            .map(|suffix| format!("{lang}_{suffix}"))
            .collect();
        ids.sort();
        for id in ids {
            let found = eventually(Duration::from_secs(60), || async {
                let (status, body, _) = s.get(Some("dev-token-maintainer"), &format!("/events/{id}")).await;
                (status == 200).then_some(body)
            })
            .await;
            let body = found.unwrap_or_else(|| panic!("{id} was accepted but never listed"));
            assert_eq!(body["eventId"], id.as_str());
        }
        let (status, _, _) = s.get(Some("dev-token-maintainer"), &format!("/events/{lang}_refused")).await;
        assert_eq!(status, 404, "a refused event is not stored");
    }
}
