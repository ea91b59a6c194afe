//! Edge → Kafka → projector → Postgres → read API, all real: the deep dive's smoke test §7.1 +
//! §7.2, roles, bad parameters, 404s, and cursor pages that stay stable under inserts.

use std::{collections::BTreeSet, time::Duration};

use ct_core::signature::ct_signature;
use ct_testkit::{TestContext, eventually};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Stack {
    edge: String,
    api: String,
    http: reqwest::Client,
    _stop: CancellationToken,
}

async fn stack() -> Stack {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 3), ("ct.dlq.v1", 1)]).await;
    let (registry_url, stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");

    let mut edge: ct_edge::Config =
        ct_platform::config::extract(ct_platform::config::figment(ct_edge::config::DEFAULT_CONFIG, None).unwrap())
            .unwrap();
    edge.http.listen = "127.0.0.1:0".parse().unwrap();
    edge.kafka = ctx.kafka.clone();
    edge.events.topic = topics[0].clone();
    edge.registry.url = registry_url.clone();
    edge.redis = ctx.redis();
    edge.rate_limit.per_minute = 60_000;
    edge.rate_limit.burst = 10_000;
    let edge_app = ct_edge::Application::build(edge).await.expect("edge");
    let edge_url = format!("http://{}", edge_app.local_addr());
    tokio::spawn(edge_app.run_until_stopped(stop.clone()));

    let mut projector = ct_projector::Config::defaults();
    projector.kafka = ctx.kafka.clone();
    projector.consumer.name = ctx.group("projector");
    projector.consumer.topic = topics[0].clone();
    projector.consumer.dlq_topic = topics[1].clone();
    projector.consumer.batch_wait_ms = 10;
    projector.registry.url = registry_url;
    projector.postgres = ctx.postgres();
    projector.redis = ctx.redis();
    projector.http.listen = "127.0.0.1:0".parse().unwrap();
    let token = stop.clone();
    let schema = projector.postgres.clone();
    tokio::spawn(async move { ct_projector::run(projector, token).await.expect("projector") });

    let mut api = ct_api::Config::defaults();
    api.http.listen = "127.0.0.1:0".parse().unwrap();
    api.postgres = schema;
    // The API may start before the projector created the tables; both use the same schema.
    let api_app = ct_api::Application::build(api).await.expect("api");
    let api_url = format!("http://{}", api_app.local_addr());
    tokio::spawn(api_app.run_until_stopped(stop.clone()));
    Stack { edge: edge_url, api: api_url, http: reqwest::Client::new(), _stop: stop }
}

impl Stack {
    async fn post(&self, token: &str, body: &Value) -> u16 {
        let body = body.to_string();
        self.http
            .post(format!("{}/events", self.edge))
            .header("authorization", format!("Bearer {token}"))
            .header("x-ct-signature", ct_signature("dev-webhook-secret", body.as_bytes()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.get(format!("{}{path}", self.api));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, response.json().await.unwrap_or(Value::Null), headers)
    }

    async fn wait_events(&self, query: &str, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(30), || async {
            let (status, body, _) = self.get(Some("dev-token-maintainer"), &format!("/events?{query}")).await;
            (status == 200 && body.as_array().is_some_and(|a| a.len() >= n)).then(|| body.as_array().unwrap().clone())
        })
        .await
        .unwrap_or_else(|| panic!("{n} events for {query} never appeared"))
    }
}

fn invoice(id: &str, ts: &str) -> Value {
    json!({"eventId": id, "type": "finance.invoice.generated", "ts": ts, "source": "finance",
           "payload": {"invoiceId": "INV-2025-0912", "period": "2025-09", "total": 1234.56}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_roles_parameters_and_pages() {
    let s = stack().await;

    // §7.1: post the same event twice; §7.2: it is listed exactly once.
    let seed = invoice("evt_demo_001", "2025-09-27T10:00:00Z");
    assert_eq!(s.post("dev-token-finance", &seed).await, 202);
    assert_eq!(s.post("dev-token-finance", &seed).await, 202);
    let listed = s.wait_events("source=finance&type=finance.invoice.generated&from=2025-09-27T00:00:00Z", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, again, _) = s
        .get(
            Some("dev-token-maintainer"),
            "/events?source=finance&type=finance.invoice.generated&from=2025-09-27T00:00:00Z",
        )
        .await;
    assert_eq!(again.as_array().unwrap().len(), 1, "{again}");
    assert_eq!(listed[0]["eventId"], "evt_demo_001");
    assert_eq!(listed[0]["payload"]["total_minor"], 123_456);

    // Roles: events need maintainer+, status endpoints any role, no token is 401.
    assert_eq!(s.get(Some("dev-token-viewer"), "/events").await.0, 403);
    assert_eq!(s.get(Some("dev-token-operator"), "/events").await.0, 403);
    assert_eq!(s.get(Some("dev-token-owner"), "/events").await.0, 200);
    assert_eq!(s.get(None, "/events").await.0, 401);
    for path in ["/systems", "/health", "/runs"] {
        assert_eq!(s.get(Some("dev-token-viewer"), path).await.0, 200, "{path}");
    }

    // Bad parameters name the parameter; unknown ids are 404.
    for (query, field) in [
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("source=mars", "source"),
        ("type=nope", "type"),
        ("cursor=garbage", "cursor"),
        ("colour=blue", "colour"),
        ("from=2025-09-28T00:00:00Z&to=2025-09-27T00:00:00Z", "to"),
    ] {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), &format!("/events?{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    assert_eq!(s.get(Some("dev-token-maintainer"), "/events/evt_nope").await.0, 404);
    assert_eq!(s.get(Some("dev-token-viewer"), "/runs/run_nope").await.0, 404);
    let (status, one, _) = s.get(Some("dev-token-maintainer"), "/events/evt_demo_001").await;
    assert_eq!((status, one["eventId"].as_str()), (200, Some("evt_demo_001")));

    // Pages of 10 over 25 events, newest first, with inserts between pages.
    for i in 0..25 {
        let body = invoice(&format!("evt_page_{i:02}"), &format!("2025-09-28T10:00:{i:02}Z"));
        assert_eq!(s.post("dev-token-finance", &body).await, 202);
    }
    s.wait_events("from=2025-09-28T00:00:00Z", 25).await;
    let mut seen = Vec::new();
    let mut path = "/events?from=2025-09-28T00:00:00Z&limit=10".to_owned();
    for page in 0.. {
        let (status, body, headers) = s.get(Some("dev-token-maintainer"), &path).await;
        assert_eq!(status, 200);
        seen.extend(body.as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap().to_owned()));
        if page == 0 {
            // A newer event arrives while the client pages: it must not shift later pages.
            assert_eq!(s.post("dev-token-finance", &invoice("evt_page_late", "2025-09-28T11:00:00Z")).await, 202);
            s.wait_events("from=2025-09-28T10:59:00Z", 1).await;
        }
        match headers.get("x-next-cursor") {
            Some(cursor) => {
                path = format!("/events?from=2025-09-28T00:00:00Z&limit=10&cursor={}", cursor.to_str().unwrap())
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("evt_page_{i:02}")).collect();
    assert_eq!(seen, expected, "pages are disjoint, complete and newest first");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);

    // Runs and their correlated events.
    let started = json!({"eventId": "evt_run_1", "type": "ct.run.started", "ts": "2025-09-27T11:00:00Z", "source": "desktop",
        "correlationId": "run_42", "payload": {"runId": "run_42", "trigger": "desktop.trigger.contract", "initiator": "staff-1"}});
    let completed = json!({"eventId": "evt_run_2", "type": "ct.run.completed", "ts": "2025-09-27T11:00:05Z", "source": "desktop",
        "correlationId": "run_42", "payload": {"runId": "run_42", "status": "success", "durationMs": 5000, "metrics": {"documentsGenerated": 3}}});
    assert_eq!(s.post("dev-token-desktop", &started).await, 202);
    assert_eq!(s.post("dev-token-desktop", &completed).await, 202);
    let run = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), "/runs/run_42").await;
        (status == 200 && body["status"] == "success").then_some(body)
    })
    .await
    .expect("run projected");
    assert_eq!(run["metrics"]["documentsGenerated"], 3);
    assert_eq!(run["events"].as_array().map(Vec::len), Some(2));
    let (_, viewer_run, _) = s.get(Some("dev-token-viewer"), "/runs/run_42").await;
    assert!(viewer_run.get("events").is_none(), "viewers do not see events");
    let (_, health, _) = s.get(Some("dev-token-viewer"), "/health").await;
    assert!(health["systems"]["finance"].is_string(), "{health}");
}
