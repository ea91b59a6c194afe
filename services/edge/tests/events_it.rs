//! `POST /events` on the real broker, registry and Redis: each refusal class gets its status
//! and a JSON body naming the field or rule, refused requests write nothing, and accepted
//! events are on the topic, decodable, redacted and idempotent.

mod common;

use chrono::Utc;
use common::{SECRET, TestEdge, event};
use ct_core::{
    EventType,
    payload::Payload,
    signature::{ct_signature, standard_webhooks_signature},
};
use serde_json::{Value, json};

fn code(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["code"].as_str().unwrap_or("<none>"), body["error"]["field"].as_str())
}

#[tokio::test]
async fn every_refusal_class_has_its_status_and_writes_nothing() {
    let edge = TestEdge::start().await;
    let url = format!("{}/events", edge.url);
    let good = event("evt_refusals").to_string();
    let signed = |body: &str| ct_signature(SECRET, body.as_bytes());

    // 415: not JSON.
    let (status, body, _) = TestEdge::answer(
        edge.http
            .post(&url)
            .header("content-type", "text/plain")
            .header("authorization", "Bearer dev-token-finance")
            .body(good.clone()),
    )
    .await;
    assert_eq!((status, code(&body)), (415, ("unsupported_media_type", Some("Content-Type"))));

    // 413: over the size limit.
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300 * 1024));
    let (status, body, _) = edge.send("dev-token-finance", &huge).await;
    assert_eq!((status, code(&body).0), (413, "payload_too_large"));

    // 400: not UTF-8, not JSON.
    let (status, body, _) = TestEdge::answer(
        edge.http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer dev-token-finance")
            .body(vec![0xff, 0xfe, b'{']),
    )
    .await;
    assert_eq!((status, code(&body).0), (400, "invalid_utf8"));
    let (status, body, _) = edge.send("dev-token-finance", "{\"eventId\": ").await;
    assert_eq!((status, code(&body).0), (400, "invalid_json"));

    // 401: missing or unknown token.
    let (status, body, _) = TestEdge::answer(
        edge.http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-ct-signature", signed(&good))
            .body(good.clone()),
    )
    .await;
    assert_eq!((status, code(&body)), (401, ("unauthorized", Some("Authorization"))));
    let (status, body, _) = edge.send("not-a-token", &good).await;
    assert_eq!((status, code(&body).0), (401, "unauthorized"));

    // 403: a token bound to another source.
    let (status, body, _) = edge.send("dev-token-portal", &good).await;
    assert_eq!((status, code(&body)), (403, ("forbidden_source", Some("source"))));
    // `control_tower` is Control Tower's own: a producer may not name it, and its token may send
    // only the types any source may emit.
    let impostor = json!({"eventId": "evt_ct_1", "type": "artifact.pointer.written", "ts": "2025-09-27T10:00:00Z",
        "source": "control_tower", "payload": {"artifactId": "a1", "uri": "/a/1", "contentType": "text/csv",
        "sizeBytes": 1, "sha256": "ab"}})
    .to_string();
    let (status, body, _) = edge.send("dev-token-finance", &impostor).await;
    assert_eq!((status, code(&body)), (403, ("forbidden_source", Some("source"))));
    let not_its_type = good.replace("\"source\":\"finance\"", "\"source\":\"control_tower\"");
    assert_ne!(not_its_type, good, "the sample names its source");
    let (status, body, _) = edge.send("dev-token-control_tower", &not_its_type).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("source"))));

    // 401: bad signature, wrong secret, stale Standard Webhooks timestamp.
    let (status, body, _) = TestEdge::answer(
        edge.http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer dev-token-finance")
            .header("x-ct-signature", ct_signature("wrong-secret", good.as_bytes()))
            .body(good.clone()),
    )
    .await;
    assert_eq!((status, code(&body)), (401, ("invalid_signature", Some("X-CT-Signature"))));
    let stale = Utc::now().timestamp() - 3600;
    let (status, body, _) = TestEdge::answer(
        edge.http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer dev-token-finance")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", stale.to_string())
            .header("webhook-signature", standard_webhooks_signature(SECRET, "msg_1", stale, good.as_bytes()))
            .body(good.clone()),
    )
    .await;
    assert_eq!((status, code(&body)), (401, ("invalid_signature", Some("webhook-timestamp"))));

    // 422: schema rules name the field.
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let invalid = [
        (
            json!({"type": "finance.invoice.generated", "ts": "2025-09-27T10:00:00Z", "source": "finance", "payload": {}}),
            "eventId",
        ),
        (
            json!({"eventId": "e1", "type": "nope.nope", "ts": "2025-09-27T10:00:00Z", "source": "finance", "payload": {}}),
            "type",
        ),
        (
            json!({"eventId": "e1", "type": "finance.invoice.generated", "ts": future, "source": "finance", "payload": {}}),
            "ts",
        ),
        (
            json!({"eventId": "e1", "type": "finance.invoice.generated", "ts": "2025-09-27T10:00:00Z", "source": "finance",
                   "payload": {"invoiceId": "I", "period": "p", "total": "12.345"}}),
            "payload.total",
        ),
        (json!([1, 2]), "$"),
    ];
    for (body, field) in invalid {
        let (status, answer, _) = edge.send("dev-token-finance", &body.to_string()).await;
        assert_eq!((status, code(&answer)), (422, ("validation_failed", Some(field))), "{body}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("rule:"), "{answer}");
    }

    assert!(edge.records().is_empty(), "refused requests must not produce records");
}

#[tokio::test]
async fn accepted_events_are_durable_decodable_redacted_and_idempotent() {
    let edge = TestEdge::start().await;
    let body = json!({"eventId": "evt_pii_1", "type": "backend.fn.error", "ts": "2025-09-27T10:00:00Z", "source": "backend",
        "payload": {"fnName": "timesheetParse", "severity": "high", "stackRef": "gs://logs/1.txt",
                    "stack": "Error at parse (x.js:1)", "message": "failed for jane.doe@example.com", "email": "jane.doe@example.com"}})
    .to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = edge
        .http
        .post(format!("{}/events", edge.url))
        .header("content-type", "application/json")
        .header("authorization", "Bearer dev-token-backend")
        .header("x-ct-signature", ct_signature(SECRET, body.as_bytes()))
        .header("traceparent", traceparent)
        .body(body.clone());
    let (status, first, _) = TestEdge::answer(request).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!((first["eventId"].as_str(), first["duplicate"].as_bool()), (Some("evt_pii_1"), Some(false)));
    assert_eq!(first["topic"], edge.topic);

    // The same request again: 202, same receipt, nothing new written.
    let (status, again, _) = edge.send("dev-token-backend", &body).await;
    assert_eq!(status, 202);
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        (again["partition"].clone(), again["offset"].clone()),
        (first["partition"].clone(), first["offset"].clone())
    );

    // The same eventId with another body: 409.
    let changed = body.replace("timesheetParse", "otherFn");
    let (status, conflict, _) = edge.send("dev-token-backend", &changed).await;
    assert_eq!((status, code(&conflict)), (409, ("event_id_conflict", Some("eventId"))));

    let records = edge.records();
    assert_eq!(records.len(), 1, "one record for one eventId");
    let record = &records[0];
    assert_eq!(
        (record.partition, record.offset),
        (first["partition"].as_i64().unwrap() as i32, first["offset"].as_i64().unwrap())
    );
    assert_eq!(record.key, "backend");
    let header = |name: &str| record.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(header("traceparent").as_deref(), Some(traceparent));
    assert!(header("ct-schema-id").is_some());

    let decoded = edge.registry().decode_event(&record.value).await.expect("decodable through the registry");
    assert_eq!(decoded.event_type(), EventType::BackendFnError);
    assert_eq!(decoded.ingest().trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(decoded.ingest().redactions, 3, "email in text, email field, stack trace");
    let Payload::BackendFnError(error) = decoded.payload() else { panic!("{:?}", decoded.payload()) };
    assert!(error.message.as_deref().unwrap().starts_with("failed for [redacted:email:"), "{error:?}");
    let raw = String::from_utf8_lossy(&record.value);
    assert!(!raw.contains("jane.doe") && !raw.contains("x.js"), "PII or stack trace reached the log");

    let metrics = edge.http.get(format!("{}/metrics", edge.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ct_edge_redactions_total"), "{metrics}");
    assert!(metrics.contains("http_requests_total"));
}

#[tokio::test]
async fn idempotency_holds_across_an_edge_restart() {
    let mut edge = TestEdge::start().await;
    let body = event("evt_restart_1").to_string();
    let (status, first, _) = edge.send("dev-token-finance", &body).await;
    assert_eq!(status, 202, "{first}");
    edge.restart().await;
    let (status, again, _) = edge.send("dev-token-finance", &body).await;
    assert_eq!(
        (status, again["duplicate"].as_bool(), again["offset"].clone()),
        (202, Some(true), first["offset"].clone())
    );
    assert_eq!(edge.records().len(), 1);
}

#[tokio::test]
async fn standard_webhooks_signatures_are_accepted() {
    let edge = TestEdge::start().await;
    let body = event("evt_std_1").to_string();
    let now = Utc::now().timestamp();
    let request = edge
        .http
        .post(format!("{}/events", edge.url))
        .header("content-type", "application/json")
        .header("authorization", "Bearer dev-token-finance")
        .header("webhook-id", "msg_std_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", standard_webhooks_signature(SECRET, "msg_std_1", now, body.as_bytes()))
        .body(body);
    let (status, answer, _) = TestEdge::answer(request).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    // One token a minute after the burst, so a slow machine cannot refill the bucket mid-test.
    let edge = TestEdge::start_with(|c| {
        c.rate_limit.per_minute = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    for i in 0..2 {
        let (status, _, _) = edge.send("dev-token-finance", &event(&format!("evt_rl_{i}")).to_string()).await;
        assert_eq!(status, 202);
    }
    let (status, body, headers) = edge.send("dev-token-finance", &event("evt_rl_2").to_string()).await;
    assert_eq!((status, code(&body).0), (429, "rate_limited"));
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // Another token has its own bucket.
    let portal = json!({"eventId": "evt_rl_portal", "type": "portal.upload.received", "ts": "2025-09-27T10:00:00Z",
        "source": "portal", "payload": {"contractorId": "C1", "fileRef": "gs://u/1.pdf"}});
    assert_eq!(edge.send("dev-token-portal", &portal.to_string()).await.0, 202);
}

#[tokio::test]
async fn the_seed_smoke_test_works_verbatim() {
    let edge = TestEdge::start().await;
    // Deep dive §7.1 with the dev secret and token; only the URL points at this test's edge.
    let script = format!(
        r#"set -e
BODY='{{"eventId":"evt_demo_001","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{{"invoiceId":"INV-2025-0912","period":"2025-09","total":1234.56}}}}'
SECRET="dev-webhook-secret"
SIG=$(printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | xxd -p -c 256)
for attempt in 1 2; do
curl -s -o /dev/null -w '%{{http_code}}\n' {url}/events \
  -H "Authorization: Bearer dev-token-finance" \
  -H "X-CT-Signature: sha256=$SIG" \
  -H "Content-Type: application/json" \
  -d "$BODY"
done"#,
        url = edge.url
    );
    let output = tokio::process::Command::new("bash").arg("-c").arg(script).output().await.expect("bash");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "202\n202\n");
    assert_eq!(edge.records().len(), 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let edge = TestEdge::start().await;
    let (status, body, _) = TestEdge::answer(edge.http.get(format!("{}/healthz", edge.url))).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body, _) = TestEdge::answer(edge.http.get(format!("{}/readyz", edge.url))).await;
    assert_eq!((status, body), (200, json!({"kafka": "ok", "registry": "ok", "redis": "ok"})));
}

#[tokio::test]
async fn the_edge_refuses_to_start_when_its_schema_is_incompatible() {
    let ctx = ct_testkit::TestContext::new();
    let topic = ctx.create_topics(&[("ct.events.v1", 1)]).await.remove(0);
    let registry_url = common::start_registry(&ctx).await;
    // An earlier, unrelated writer schema that the current event schema cannot read.
    let older = r#"{"type":"record","name":"Event","namespace":"ct.v1","fields":[{"name":"legacy","type":"int"}]}"#;
    ct_platform::registry::RegistryClient::new(&registry_url)
        .register(&format!("{topic}-value"), older)
        .await
        .expect("register the older schema");
    let config = common::edge_config(&ctx, &topic, &registry_url);
    let error = ct_edge::Application::build(config).await.err().expect("the edge must refuse to start");
    let message = format!("{error:#}");
    assert!(message.contains("refusing to start") && message.contains("incompatible"), "{message}");
}
