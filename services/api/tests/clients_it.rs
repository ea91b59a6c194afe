//! The Python, TypeScript and Rust clients (`clients/`) against the real edge: the Python and
//! TypeScript libraries' own tests (the shared conformance vectors, then a send, a duplicate, a
//! refusal with its field, a batch, Standard Webhooks, and a broker stop retried to success) run
//! with this stack's addresses, and the Rust client does the same here; then the read API must
//! list every event they sent, once.
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
async fn the_python_typescript_and_rust_clients_send_through_the_real_edge() {
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

    let rs = prefix("rs");
    rust_client(&s.edge, &rs).await;

    for lang in [&py, &ts, &rs] {
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

async fn rust_client(edge: &str, prefix: &str) {
    use ct_client::{Client, Event, RetryPolicy, Scheme, SendError};
    let client = Client::new(edge, "dev-token-finance", "dev-webhook-secret", "finance");
    let beat = |id: &str| {
        Event::new("system.heartbeat", serde_json::json!({"systemId": "finance"}))
            .unwrap()
            .with_id(format!("{prefix}_{id}"))
    };
    let event = beat("send");
    let first = client.send(&event).await.expect("sent");
    assert!(!first.duplicate);
    let again = client.send(&event).await.expect("sent again");
    assert!(again.duplicate, "the same eventId and bytes are a duplicate");
    assert_eq!((again.partition, again.offset), (first.partition, first.offset));
    let refused = Event::new("system.heartbeat", serde_json::json!({"systemId": "made-up-system"}))
        .unwrap()
        .with_id(format!("{prefix}_refused"));
    match client.send(&refused).await {
        Err(SendError::Refused { status: 422, field: Some(field), .. }) => assert_eq!(field, "payload.systemId"),
        other => panic!("expected a 422 naming payload.systemId, got {other:?}"),
    }
    // The batch from typed payloads (generated from the taxonomy).
    let batch: Vec<Event> = (0..3)
        .map(|n| {
            let invoice = ct_client::payloads::FinanceInvoiceGenerated {
                invoice_id: format!("INV-{n}"),
                period: "2026-03".into(),
                total: ct_client::Money::Major("12.50".into()),
                vat: None,
                currency: None,
                document_ref: None,
            };
            Event::of(&invoice).unwrap().with_id(format!("{prefix}_batch_{n}"))
        })
        .collect();
    let receipts = client.send_batch(&batch).await.expect("batch");
    assert_eq!(
        receipts.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        batch.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>()
    );
    let standard =
        Client::new(edge, "dev-token-finance", "dev-webhook-secret", "finance").with_scheme(Scheme::StandardWebhooks);
    assert!(!standard.send(&beat("sw")).await.expect("standard webhooks").duplicate);

    // The broker stops; the client retries the same bytes until it is back.
    tokio::task::spawn_blocking(|| ct_testkit::stack(&["down", "kafka"])).await.unwrap();
    let restart = tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        tokio::task::spawn_blocking(|| ct_testkit::stack(&["up"])).await.unwrap();
    });
    let patient = Client::new(edge, "dev-token-finance", "dev-webhook-secret", "finance").with_policy(RetryPolicy {
        max_attempts: 30,
        cap: Duration::from_secs(5),
        ..RetryPolicy::default()
    });
    let started = std::time::Instant::now();
    let receipt = patient.send(&beat("outage")).await.expect("retried to success");
    restart.await.unwrap();
    assert!(!receipt.duplicate);
    assert!(started.elapsed() > Duration::from_secs(2), "the broker was down: the first attempts failed");
}
