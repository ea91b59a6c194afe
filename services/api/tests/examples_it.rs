//! The example producers (`examples/`): a backend function (TypeScript), a finance integration
//! (Python) and a GitHub Actions step (TypeScript) run against the real stack, and the read API
//! lists what each sent.

mod common;

use std::{path::Path, time::Duration};

use common::stack;
use ct_testkit::{eventually, repo_root, venv_bin};
use serde_json::Value;

async fn run(program: &Path, args: &[&str], env: &[(&str, String)]) -> Vec<Value> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {args:?} failed:\n{stdout}\n{stderr}", program.display());
    stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a receipt: {line}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_example_producers_reach_the_read_api() {
    let s = stack().await;
    let root = repo_root();
    let build = tokio::process::Command::new("npm")
        .args(["run", "build"])
        .current_dir(root.join("clients/typescript"))
        .output()
        .await
        .expect("npm runs");
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let prefix = format!("ex{}", std::process::id());
    let env = |token: &str, name: &str| {
        vec![
            ("CT_EDGE_URL", s.edge.clone()),
            ("CT_TOKEN", token.to_owned()),
            ("CT_WEBHOOK_SECRET", "dev-webhook-secret".to_owned()),
            ("EXAMPLE_PREFIX", format!("{prefix}_{name}")),
            ("PYTHONPATH", root.join("clients/python/src").display().to_string()),
        ]
    };
    let backend =
        run(Path::new("node"), &["examples/backend-ts/producer.mjs"], &env("dev-token-backend", "backend")).await;
    assert_eq!(backend.len(), 2);
    let finance = run(
        &venv_bin("python"),
        &["examples/finance-py/producer.py", "examples/finance-py/payment-provider-webhook.json"],
        &env("dev-token-finance", "finance"),
    )
    .await;
    assert_eq!(finance.len(), 2);
    let mut ci_env = env("dev-token-github", "ci");
    ci_env.extend([
        ("GITHUB_REPOSITORY", "acme/portal".to_owned()),
        ("GITHUB_RUN_ID", "4242".to_owned()),
        ("GITHUB_JOB", "test".to_owned()),
        ("GITHUB_SERVER_URL", "https://github.example".to_owned()),
        ("GITHUB_REF_NAME", "main".to_owned()),
        ("EXAMPLE_EVENT_ID", format!("{prefix}_ci_failed")),
    ]);
    let ci = run(Path::new("node"), &["examples/ci-github/report-failure.mjs"], &ci_env).await;
    assert_eq!(ci.len(), 1);

    let listed = |id: String| {
        let s = &s;
        async move {
            eventually(Duration::from_secs(60), || async {
                let (status, body, _) = s.get(Some("dev-token-maintainer"), &format!("/events/{id}")).await;
                (status == 200).then_some(body)
            })
            .await
            .unwrap_or_else(|| panic!("{id} was accepted but never listed"))
        }
    };
    let error = listed(format!("{prefix}_backend_fn_error")).await;
    assert_eq!(
        (error["type"].as_str(), error["payload"]["severity"].as_str()),
        (Some("backend.fn.error"), Some("high"))
    );
    assert_eq!(error["correlationId"], format!("{prefix}_backend_req_1"));
    listed(format!("{prefix}_backend_heartbeat")).await;
    listed(format!("{prefix}_finance_invoice")).await;
    let payment = listed(format!("{prefix}_finance_payment")).await;
    assert_eq!(payment["payload"]["status_to"], "paid", "{payment}");
    assert_eq!(payment["payload"]["amount_minor"], 123_456, "exact minor units: {payment}");
    assert!(!payment.to_string().contains("someone@example.com"), "the provider's e-mail is not relayed: {payment}");
    let failed = listed(format!("{prefix}_ci_failed")).await;
    assert_eq!(failed["payload"]["repo"], "acme/portal", "{failed}");
    assert_eq!(failed["source"], "github");
}
