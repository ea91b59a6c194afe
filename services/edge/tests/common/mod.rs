//! A real edge on port 0 with its own topic, `_schemas` topic, in-process registry and Redis prefix.
#![allow(dead_code)]

use std::time::Duration;

use ct_core::signature::ct_signature;
use ct_edge::{Application, Config};
use ct_platform::{config::LogFormat, kafka, registry::RegistryClient};
use ct_testkit::TestContext;
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "dev-webhook-secret";

pub struct TestEdge {
    pub ctx: TestContext,
    pub url: String,
    pub topic: String,
    pub registry_url: String,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub partition: i32,
    pub offset: i64,
}

pub async fn start_registry(ctx: &TestContext) -> String {
    ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry").0
}

pub fn edge_config(ctx: &TestContext, topic: &str, registry_url: &str) -> Config {
    let mut config: Config =
        ct_platform::config::extract(ct_platform::config::figment(ct_edge::config::DEFAULTS, None).unwrap()).unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.kafka = ctx.kafka.clone();
    config.events.topic = topic.to_owned();
    config.events.delivery_timeout_ms = 5_000;
    config.registry.url = registry_url.to_owned();
    config.redis = ctx.redis();
    config.rate_limit.per_minute = 60_000;
    config.rate_limit.burst = 10_000;
    config.telemetry.format = LogFormat::Pretty;
    config
}

impl TestEdge {
    pub async fn start() -> TestEdge {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestEdge {
        let ctx = TestContext::new();
        let topic = ctx.create_topics(&[("ct.events.v1", 3)]).await.remove(0);
        let registry_url = start_registry(&ctx).await;
        let mut config = edge_config(&ctx, &topic, &registry_url);
        adjust(&mut config);
        let (url, shutdown) = Self::spawn(config.clone()).await;
        TestEdge { ctx, url, topic, registry_url, config, shutdown, http: reqwest::Client::new() }
    }

    pub async fn spawn(config: Config) -> (String, CancellationToken) {
        let shutdown = CancellationToken::new();
        let app = Application::build(config).await.expect("edge starts");
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        (url, shutdown)
    }

    /// Restarts the edge process (same config, new port).
    pub async fn restart(&mut self) {
        self.shutdown.cancel();
        let (url, shutdown) = Self::spawn(self.config.clone()).await;
        self.url = url;
        self.shutdown = shutdown;
    }

    /// POSTs `body` to `/events` with a producer token and a valid X-CT-Signature.
    pub async fn send(&self, token: &str, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        self.send_to("/events", token, body).await
    }

    /// POSTs `body` to `path` with a producer token and a valid X-CT-Signature.
    pub async fn send_to(&self, path: &str, token: &str, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .header("x-ct-signature", ct_signature(SECRET, body.as_bytes()))
            .body(body.to_owned());
        Self::answer(request).await
    }

    pub async fn answer(request: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = request.send().await.expect("edge answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
    }

    /// Every record on the test topic right now.
    pub fn records(&self) -> Vec<Record> {
        records(&self.ctx, &self.topic)
    }

    pub fn registry(&self) -> RegistryClient {
        RegistryClient::new(&self.registry_url)
    }
}

pub fn records(ctx: &TestContext, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer =
        kafka::client_config(&ctx.kafka).set("group.id", ctx.group("reader")).create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    for partition in metadata.topics()[0].partitions() {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10)).expect("watermarks");
        expected += high - low;
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (out.len() as i64) < expected && std::time::Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = ct_platform::consumer::Incoming::from_message(&message.expect("consume"));
        out.push(Record {
            key: String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned(),
            value: message.value.unwrap_or_default(),
            headers: message.headers,
            partition: message.coordinates.partition,
            offset: message.coordinates.offset,
        });
    }
    assert_eq!(out.len() as i64, expected, "read every record of {topic}");
    out
}

pub fn event(event_id: &str) -> Value {
    serde_json::json!({"eventId": event_id, "type": "finance.invoice.generated", "ts": "2025-09-27T10:00:00Z",
        "source": "finance", "payload": {"invoiceId": "INV-2025-0912", "period": "2025-09", "total": 1234.56}})
}
