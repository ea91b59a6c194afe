//! `ct-registry`: a Confluent-Schema-Registry-compatible REST service whose whole state is the
//! compacted `_schemas` topic. On start it reads the topic from the beginning, then serves;
//! restarts and second instances therefore see the same subjects, versions and ids.
//!
//! Architecture invariant: the only writer of the state is the topic reader (`store.rs`); HTTP
//! handlers decide, produce, and wait for their record to come back.

pub mod api;
pub mod canonical;
pub mod compat;
pub mod state;
pub mod store;

use std::{net::SocketAddr, path::Path, time::Duration};

use ct_platform::config::{ConfigError, KafkaConfig, Profile, TelemetryConfig};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Compiled-in defaults (no credentials: nothing differs between profiles).
pub const DEFAULTS: ct_platform::config::Defaults =
    ct_platform::config::Defaults { base: include_str!("../config.default.toml"), dev: "" };

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub registry: RegistrySettings,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    #[serde(flatten)]
    pub limits: ct_platform::http::HttpLimits,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegistrySettings {
    pub topic: String,
    pub timeout_ms: u64,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        ct_platform::config::load(DEFAULTS, file)
    }
}

/// A registry bound to its listener and loaded from the log, ready to serve.
pub struct Application {
    server: ct_platform::http::Server,
}

impl Application {
    pub async fn build(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Application> {
        let timeout = Duration::from_millis(config.registry.timeout_ms);
        let store = store::Store::open(&config.kafka, &config.registry.topic, timeout, shutdown).await?;
        let server = ct_platform::http::Server::bind_with_style(
            config.http.listen,
            api::router(api::AppState { store }),
            &config.http.limits,
            ct_platform::http::ErrorStyle::Confluent,
        )
        .await?;
        Ok(Application { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "Schema registry listening.");
        self.server.run(shutdown).await?;
        Ok(())
    }
}

/// Builds and serves until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(&config, shutdown.clone()).await?.run_until_stopped(shutdown).await
}

/// Starts a registry on an ephemeral port over `topic` (created compacted if missing), for tests
/// and tools that need a real registry in-process. Returns its base URL and its stop token.
/// [`spawn_local`] on `schemas_topic`, with the event schema registered for `events_topic`: the
/// URL, the schema id and the stop token (how tests of several services start their registry).
pub async fn spawn_with_event_schema(
    kafka: KafkaConfig,
    schemas_topic: &str,
    events_topic: &str,
) -> anyhow::Result<(String, u32, CancellationToken)> {
    let (url, stop) = spawn_local(kafka, schemas_topic).await?;
    let schema_id = ct_platform::registry::RegistryClient::new(&url)
        .register(&ct_platform::registry::value_subject(events_topic), ct_core::avro::event_schema_json())
        .await?;
    Ok((url, schema_id, stop))
}

pub async fn spawn_local(kafka: KafkaConfig, topic: &str) -> anyhow::Result<(String, CancellationToken)> {
    let spec = ct_platform::topics::TopicSpec {
        name: topic.to_owned(),
        partitions: 1,
        config: [("cleanup.policy".to_owned(), "compact".to_owned())].into(),
    };
    ct_platform::kafka::ensure_topics(&kafka, std::slice::from_ref(&spec)).await?;
    let mut config: Config = ct_platform::config::extract(ct_platform::config::figment(DEFAULTS, None)?)?;
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.kafka = kafka;
    config.registry.topic = spec.name;
    let shutdown = CancellationToken::new();
    let app = Application::build(&config, shutdown.clone()).await?;
    let url = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Ok((url, shutdown))
}
