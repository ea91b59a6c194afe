//! Any Kafka tool can read our topics: Confluent's Python client registers a schema in our
//! registry and produces to our broker, and our Rust decoder reads the record; the reverse way,
//! a record our code wrote is decoded by Confluent's `AvroDeserializer` through our registry.
//! The client runs from the virtualenv that `deploy/bootstrap.sh` creates.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use ct_core::{
    Envelope, EventType,
    avro::{self, wire},
    envelope::ParseOptions,
    payload::Payload,
    redact::Redactor,
};
use ct_platform::{
    kafka,
    registry::{RegistryClient, value_subject},
};
use ct_testkit::{TestContext, repo_root};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    producer::FutureRecord,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Runs the Python side without blocking the runtime that serves the registry it talks to.
async fn run_python(args: &[&str]) -> String {
    let script = repo_root().join("services/registry/tests/interop.py");
    let run =
        tokio::process::Command::new(ct_testkit::venv_bin("python")).arg(script).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("interop.py finished within 120 s")
        .expect("run interop.py");
    assert!(output.status.success(), "interop.py {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf8")
}

async fn start_registry(ctx: &TestContext) -> (String, CancellationToken) {
    ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry")
}

async fn first_record(ctx: &TestContext, topic: &str) -> Vec<u8> {
    let consumer: StreamConsumer = kafka::consumer(&ctx.kafka, &ctx.group(topic)).expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let message =
        tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a record").expect("consume");
    message.payload().expect("value").to_vec()
}

#[tokio::test]
async fn confluent_python_client_and_our_codec_read_each_other() {
    let ctx = TestContext::new();
    let (registry_url, shutdown) = start_registry(&ctx).await;
    let topics = ctx.create_topics(&[("py-to-rust", 1), ("rust-to-py", 1)]).await;
    let (py_to_rust, rust_to_py) = (&topics[0], &topics[1]);

    // Python registers our event schema (auto-register) and produces; Rust decodes.
    let schema_file = std::env::temp_dir().join(format!("ct-event-{}.avsc", ctx.id));
    std::fs::write(&schema_file, avro::event_schema_json()).expect("write schema");
    run_python(&[
        "produce",
        "--registry",
        &registry_url,
        "--bootstrap",
        &ctx.kafka.bootstrap_servers,
        "--topic",
        py_to_rust,
        "--schema-file",
        schema_file.to_str().unwrap(),
        "--event-id",
        "evt_python_1",
    ])
    .await;
    let client = RegistryClient::new(&registry_url);
    let decoded = client.decode_event(&first_record(&ctx, py_to_rust).await).await.expect("our decoder reads it");
    assert_eq!(decoded.event_id(), "evt_python_1");
    assert_eq!(decoded.event_type(), EventType::CiWorkflowFailed);
    let Payload::CiWorkflowFailed(ci) = decoded.payload() else { panic!("payload {:?}", decoded.payload()) };
    assert_eq!((ci.repo.as_str(), ci.run_id, ci.branch.as_deref()), ("swan-portal", 1_234_567, Some("main")));
    assert_eq!(decoded.ts().to_rfc3339(), "2025-09-27T10:00:00+00:00");

    // Rust registers and produces; Python's AvroDeserializer decodes through our registry.
    let id = client.register(&value_subject(rust_to_py), avro::event_schema_json()).await.expect("register");
    let redactor = Redactor::new("interop");
    let body = json!({"eventId":"evt_rust_1","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z",
        "source":"finance","payload":{"invoiceId":"INV-2025-0912","period":"2025-09","total":1234.56}});
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T10:00:01Z".parse().unwrap(),
        max_future_skew: ChronoDuration::minutes(5),
    };
    let (event, _): (Envelope, _) = Envelope::parse(&body, &options).expect("valid event");
    let mut value = Vec::new();
    wire::write_header(id, &mut value);
    avro::encode_event(&event, &mut value).expect("encode");
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
    producer
        .send(FutureRecord::to(rust_to_py).key("finance").payload(&value), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    let printed = run_python(&[
        "consume",
        "--registry",
        &registry_url,
        "--bootstrap",
        &ctx.kafka.bootstrap_servers,
        "--topic",
        rust_to_py,
    ])
    .await;
    let seen: Value = serde_json::from_str(printed.trim()).expect("python printed JSON");
    assert_eq!(seen["event_id"], "evt_rust_1");
    assert_eq!(seen["type"], "finance.invoice.generated");
    assert_eq!(seen["source"], "finance");
    assert_eq!(seen["payload"]["invoice_id"], "INV-2025-0912");
    assert_eq!(seen["payload"]["total_minor"], 123_456);
    assert_eq!(seen["payload"]["currency"], "GBP");
    shutdown.cancel();
}

/// Every method `SchemaRegistryClient` offers (the script fails on any it does not call), on Avro
/// schemas with references, modes and configs included.
#[tokio::test]
async fn confluent_python_client_works_for_every_method() {
    let ctx = TestContext::new();
    let (registry_url, shutdown) = start_registry(&ctx).await;
    let script = repo_root().join("services/registry/tests/client_methods.py");
    let run = tokio::process::Command::new(ct_testkit::venv_bin("python"))
        .arg(script)
        .args([registry_url.as_str(), &format!("t{}", ctx.id)])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run).await.expect("finished in 120 s").expect("runs");
    assert!(output.status.success(), "client_methods.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let called = String::from_utf8_lossy(&output.stdout);
    assert!(called.contains("get_referenced_by") && called.contains("update_global_mode"), "{called}");
    shutdown.cancel();
}
