//! The whole pipeline in-process for one test: registry, edge, projector, DLQ categoriser, health
//! evaluator (its ticker off: tests write ticks with [`Stack::tick`]) and read API, each on this
//! test's own topics, Postgres schema and Redis prefix.
#![allow(dead_code)]

use std::time::Duration;

use ct_core::signature::ct_signature;
use ct_platform::config::PostgresConfig;
use ct_testkit::{TestContext, eventually};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct Stack {
    pub edge: String,
    pub registry: String,
    pub api: String,
    pub http: reqwest::Client,
    pub postgres: PostgresConfig,
    pub ctx: TestContext,
    /// This test's `ct.events.v1`.
    pub events_topic: String,
    pub topics: ct_testkit::PipelineTopics,
    /// Each service's `/metrics` address (`host:port`), by job name.
    pub metrics: Vec<(&'static str, String)>,
    _stop: CancellationToken,
}

pub async fn stack() -> Stack {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");

    let edge = ct_edge::Config::for_slice(&ctx.slice(&t, &registry_url));
    let edge_app = ct_edge::Application::build(edge).await.expect("edge");
    let edge_url = format!("http://{}", edge_app.local_addr());
    tokio::spawn(edge_app.run_until_stopped(stop.clone()));

    // The consumers' /metrics on ports of their own, for the Prometheus test.
    let operations = |name: &'static str| {
        let address: std::net::SocketAddr = ([127, 0, 0, 1], ct_testkit::free_port()).into();
        (name, address)
    };
    let (projector_ops, health_ops, categoriser_ops) =
        (operations("ct-projector"), operations("ct-health"), operations("ct-dlq-categoriser"));
    let mut projector = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    projector.http.listen = projector_ops.1;
    let token = stop.clone();
    let schema = projector.postgres.clone();
    tokio::spawn(async move { ct_projector::run(projector, token).await.expect("projector") });

    let mut health = ct_health::Config::for_slice(&ctx.slice(&t, &registry_url));
    health.http.listen = health_ops.1;
    let token = stop.clone();
    tokio::spawn(async move { ct_health::run(health, token).await.expect("health evaluator") });

    let mut categoriser = ct_dlq_categoriser::Config::for_slice(&ctx.slice(&t, &registry_url));
    categoriser.http.listen = categoriser_ops.1;
    let token = stop.clone();
    tokio::spawn(async move { ct_dlq_categoriser::run(categoriser, token).await.expect("categoriser") });

    let mut api = ct_api::Config::defaults();
    api.http.listen = "127.0.0.1:0".parse().unwrap();
    api.kafka = ctx.kafka.clone();
    api.registry.url = registry_url.clone();
    api.actions.audit_topic = t.audit.clone();
    api.runs.topic = t.runs.clone();
    api.edge.url = edge_url.clone();
    api.artifacts.root = std::env::temp_dir().join(format!("ct-artifacts-{}", ctx.id));
    let schema_for_test = schema.clone();
    api.postgres = schema;
    // The API may start before the projector created the tables; both use the same schema.
    let api_app = ct_api::Application::build(api).await.expect("api");
    let api_url = format!("http://{}", api_app.local_addr());
    tokio::spawn(api_app.run_until_stopped(stop.clone()));
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let metrics = vec![
        ("ct-edge", host(&edge_url)),
        ("ct-registry", host(&registry_url)),
        ("ct-api", host(&api_url)),
        (projector_ops.0, projector_ops.1.to_string()),
        (health_ops.0, health_ops.1.to_string()),
        (categoriser_ops.0, categoriser_ops.1.to_string()),
    ];
    Stack {
        metrics,
        edge: edge_url,
        registry: registry_url,
        api: api_url,
        http: reqwest::Client::new(),
        postgres: schema_for_test,
        ctx,
        events_topic: t.events.clone(),
        topics: t,
        _stop: stop,
    }
}

/// Signs in to the dashboards of the read API at `api` with `token`: the `Cookie` header value
/// of the session.
pub async fn session_cookie(api: &str, token: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signed_in = http.post(format!("{api}/ui/login")).form(&[("token", token)]).send().await.unwrap();
    let set_cookie = signed_in.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    assert!(cookie.starts_with("ct_session="), "signing in with {token} set no session: {set_cookie:?}");
    cookie
}

impl Stack {
    /// Starts ct-digest on this stack's topics and schemas (with a digests topic of its own)
    /// until `stop`: what the reports, KPIs and dashboards read.
    pub async fn spawn_digest(&self, stop: &CancellationToken) {
        let digests = self.ctx.create_topics(&[("ct.digests.v1", 1)]).await.remove(0);
        let mut config = ct_digest::Config::for_slice(&self.ctx.slice(&self.topics, &self.registry));
        config.publisher.digests_topic = digests;
        tokio::spawn(ct_digest::run(config, stop.clone()));
    }

    pub async fn post(&self, token: &str, body: &Value) -> u16 {
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

    /// `POST` a JSON body to the read API: status and body.
    pub async fn post_api(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.api)).bearer_auth(token).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.get(format!("{}{path}", self.api));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, response.json().await.unwrap_or(Value::Null), headers)
    }

    /// Writes the clock tick of `minute` (as the evaluator's ticker would).
    pub async fn tick(&self, minute: &str) {
        let registry = ct_platform::registry::RegistryClient::new(&self.registry);
        let topics = ct_health::ticker::ClockTopics {
            clock: self.topics.clock.clone(),
            events: self.topics.events.clone(),
            audit: self.topics.audit.clone(),
            health: self.topics.health.clone(),
        };
        let ticker = ct_health::ticker::Ticker::connect(&self.ctx.kafka, registry, &topics).await.expect("ticker");
        ticker.tick(minute.parse().expect("a literal minute")).await.expect("tick written");
    }

    pub async fn wait_events(&self, query: &str, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(30), || async {
            let (status, body, _) = self.get(Some("dev-token-maintainer"), &format!("/events?{query}")).await;
            (status == 200 && body.as_array().is_some_and(|a| a.len() >= n)).then(|| body.as_array().unwrap().clone())
        })
        .await
        .unwrap_or_else(|| panic!("{n} events for {query} never appeared"))
    }
}
