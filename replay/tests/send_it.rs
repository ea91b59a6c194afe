//! `ct send` (the real binary) against the real edge: one event from flags (then the same again:
//! a duplicate), JSON lines from stdin in batches, a refusal that names its field (exit 1), and a
//! `--dry-run` whose curl command, run by bash, is accepted by the edge.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use ct_testkit::TestContext;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

async fn edge(ctx: &TestContext, stop: &CancellationToken) -> String {
    let topics = ctx.pipeline_topics().await;
    let (registry_url, registry_stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let mut config: ct_edge::Config =
        ct_platform::config::extract(ct_platform::config::figment(ct_edge::config::DEFAULTS, None).unwrap()).unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.kafka = ctx.kafka.clone();
    config.events.topic = topics.events.clone();
    config.registry.url = registry_url;
    config.redis = ctx.redis();
    let app = ct_edge::Application::build(config).await.expect("edge");
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let stop = stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        registry_stop.cancel();
    });
    url
}

fn ct(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ct"))
        .arg("send")
        .args(args)
        .env("CT_EDGE_URL", url)
        .env("CT_SOURCE", "finance")
        .env("CT_TOKEN", "dev-token-finance")
        .env("CT_WEBHOOK_SECRET", "dev-webhook-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ct runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn receipts(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON receipt")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ct_send_sends_batches_refuses_and_prints_a_curl_that_works() {
    let ctx = TestContext::new();
    let stop = CancellationToken::new();
    let url = edge(&ctx, &stop).await;
    let url2 = url.clone();
    let flags = [
        "--type",
        "system.heartbeat",
        "--payload",
        r#"{"system_id":"finance"}"#,
        "--event-id",
        "send_it_1",
        "--ts",
        "2026-03-03T11:00:00Z",
    ];
    let first = tokio::task::spawn_blocking(move || ct(&url2, &flags, None)).await.unwrap();
    let first = receipts(&first);
    assert_eq!((first[0]["eventId"].as_str(), first[0]["duplicate"].as_bool()), (Some("send_it_1"), Some(false)));
    let url2 = url.clone();
    let again = tokio::task::spawn_blocking(move || ct(&url2, &flags, None)).await.unwrap();
    assert_eq!(receipts(&again)[0]["duplicate"], true, "the same id and body again");

    let lines: String = (0..5)
        .map(|n| {
            format!(
                "{{\"eventId\":\"send_it_line_{n}\",\"type\":\"finance.invoice.generated\",\"ts\":\"2026-03-03T11:00:00Z\",\
                 \"payload\":{{\"invoiceId\":\"INV-{n}\",\"period\":\"2026-03\",\"total\":\"10.00\"}}}}\n"
            )
        })
        .collect();
    let url2 = url.clone();
    let batched =
        tokio::task::spawn_blocking(move || ct(&url2, &["--stdin", "--batch", "2"], Some(&lines))).await.unwrap();
    let batched = receipts(&batched);
    let ids: Vec<&str> = batched.iter().map(|r| r["eventId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["send_it_line_0", "send_it_line_1", "send_it_line_2", "send_it_line_3", "send_it_line_4"]);

    let url2 = url.clone();
    let refused = tokio::task::spawn_blocking(move || {
        ct(&url2, &["--type", "system.heartbeat", "--payload", r#"{"systemId":"made-up-system"}"#], None)
    })
    .await
    .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused: 422") && stderr.contains("(field payload.systemId)"), "{stderr}");
    let url2 = url.clone();
    let invalid =
        tokio::task::spawn_blocking(move || ct(&url2, &["--type", "backend.fn.error", "--payload", "{}"], None))
            .await
            .unwrap();
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("payload.fnName: is required"), "checked before sending");

    let url2 = url.clone();
    let dry = tokio::task::spawn_blocking(move || {
        ct(
            &url2,
            &[
                "--type",
                "system.heartbeat",
                "--payload",
                r#"{"systemId":"finance"}"#,
                "--event-id",
                "send_it_curl",
                "--dry-run",
            ],
            None,
        )
    })
    .await
    .unwrap();
    assert!(dry.status.success());
    let command = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(!command.contains("dev-token-finance"), "the token stays in $CT_TOKEN: {command}");
    let answer = tokio::task::spawn_blocking(move || {
        Command::new("bash").arg("-c").arg(&command).env("CT_TOKEN", "dev-token-finance").output().unwrap()
    })
    .await
    .unwrap();
    let answer: Value = serde_json::from_slice(&answer.stdout).expect("the edge's JSON answer");
    assert_eq!((answer["eventId"].as_str(), answer["duplicate"].as_bool()), (Some("send_it_curl"), Some(false)));
    stop.cancel();
}
