//! One webhook, one trace, seen in a real collector (Jaeger v2, OTLP/HTTP at the address a user
//! would write, `http://127.0.0.1:<port>`): the edge binary's HTTP server span and Kafka producer
//! span, the projector's consumer span (the producer span's child, messaging conventions) and its
//! database write, all under the caller's trace id, which the projected row keeps.

use std::time::Duration;

use ct_core::signature::ct_signature;
use ct_platform::config::{LogFormat, TelemetryConfig};
use ct_testkit::{Jaeger, ServiceProcess, TestContext, eventually, free_port};
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn edge_config(ctx: &TestContext, slice: &ct_platform::topics::Slice, port: u16, otlp: &str) -> String {
    format!(
        r#"[http]
listen = "127.0.0.1:{port}"
[kafka]
bootstrap_servers = "{kafka}"
[events]
topic = "{topic}"
[registry]
url = "{registry}"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[telemetry]
otlp_endpoint = "{otlp}"
"#,
        kafka = ctx.kafka.bootstrap_servers,
        topic = slice.topics.events,
        registry = slice.registry_url,
        redis = slice.redis.url,
        prefix = slice.redis.key_prefix,
    )
}

/// The spans of the trace as (operation, span id, parent span id, service).
fn spans(trace: &Value) -> Vec<(String, String, Option<String>, String)> {
    let processes = &trace["processes"];
    trace["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|span| {
                    let parent = span["references"]
                        .as_array()
                        .and_then(|refs| refs.iter().find(|r| r["refType"] == "CHILD_OF"))
                        .and_then(|r| r["spanID"].as_str())
                        .map(str::to_owned);
                    let service = processes[span["processID"].as_str().unwrap_or("")]["serviceName"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    (
                        span["operationName"].as_str().unwrap_or("").to_owned(),
                        span["spanID"].as_str().unwrap_or("").to_owned(),
                        parent,
                        service,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_is_one_trace_in_the_collector() {
    let dir = std::env::temp_dir().join(format!("ct-traces-{}", uuid::Uuid::new_v4().simple()));
    let jaeger = Jaeger::start(&dir).await;
    // This test process is the projector: its spans go to the collector too (before anything
    // installs the tests' quiet subscriber).
    let telemetry = TelemetryConfig {
        filter: "info".into(),
        format: LogFormat::Pretty,
        otlp_endpoint: Some(jaeger.otlp_url.clone()),
    };
    let _guard = ct_platform::telemetry::init("ct-projector", &telemetry).expect("telemetry");

    let ctx = TestContext::new();
    let topics = ctx.pipeline_topics().await;
    let (registry_url, stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let slice = ctx.slice(&topics, &registry_url);
    let projector = ct_projector::Config::for_slice(&slice);
    let (postgres, consumer) = (projector.postgres.clone(), projector.consumer.name.clone());
    tokio::spawn(ct_projector::run(projector, stop.clone()));

    let port = free_port();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-edge"));
    let mut edge = ServiceProcess::start(binary, "edge", &edge_config(&ctx, &slice, port, &jaeger.otlp_url), &dir);
    assert!(edge.healthy(port, "/readyz", Duration::from_secs(60)).await, "the edge did not start:\n{}", edge.logs());

    let event_id = format!("evt_trace_{}", ctx.id);
    let body = format!(
        r#"{{"eventId":"{event_id}","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{{"invoiceId":"INV-1","period":"2025-09","total":12.5}}}}"#
    );
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/events"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer dev-token-finance")
        .header("x-ct-signature", ct_signature("dev-webhook-secret", body.as_bytes()))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .body(body)
        .send()
        .await
        .expect("the edge answers");
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);

    let pool = ct_platform::postgres::connect(&postgres).await.expect("postgres");
    let row_trace = eventually(Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT trace_id FROM events WHERE event_id = $1")
            .bind(&event_id)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await
    .expect("the event was projected");
    assert_eq!(row_trace.as_deref(), Some(TRACE_ID), "the row keeps the caller's trace id");

    let http = reqwest::Client::new();
    let publish_name = format!("{} publish", topics.events);
    let process_name = format!("{} process", topics.events);
    let apply_name = format!("{consumer} apply");
    let wanted = ["POST /events", publish_name.as_str(), process_name.as_str(), apply_name.as_str()];
    let found = eventually(Duration::from_secs(60), || async {
        let trace: Value =
            http.get(format!("{}/api/traces/{TRACE_ID}", jaeger.query_url)).send().await.ok()?.json().await.ok()?;
        let spans = spans(&trace["data"][0]);
        wanted.iter().all(|name| spans.iter().any(|s| s.0 == *name)).then_some(spans)
    })
    .await
    .unwrap_or_else(|| panic!("the collector never showed {wanted:?}; edge logs:\n{}", edge.logs()));
    let span = |name: &str| found.iter().find(|s| s.0 == name).expect("listed").clone();
    let (request, publish, apply) = (span("POST /events"), span(&publish_name), span(&apply_name));
    // Each consumer of the topic continues the trace with a process span of its own (the
    // projector's versions model reads it too): the projector's is the parent of its apply span.
    let process = found
        .iter()
        .find(|s| s.0 == process_name && Some(&s.1) == apply.2.as_ref())
        .expect("the projector's apply span is inside a process span of the topic")
        .clone();
    assert_eq!(request.2.as_deref(), Some(CALLER_SPAN), "the request continues the caller's span");
    assert_eq!((request.3.as_str(), publish.3.as_str()), ("ct-edge", "ct-edge"));
    assert_eq!((process.3.as_str(), apply.3.as_str()), ("ct-projector", "ct-projector"));
    assert_eq!(process.2.as_deref(), Some(publish.1.as_str()), "the consumer span is the producer span's child");
    assert_eq!(apply.2.as_deref(), Some(process.1.as_str()), "the database write belongs to the record");
    let publish_parent = found.iter().find(|s| Some(&s.1) == publish.2.as_ref()).expect("the publish span's parent");
    assert_eq!(publish_parent.3, "ct-edge", "the producer span is inside the request");
    stop.cancel();
}
