//! `ct-runner`: triggered runs. Two parts in one process:
//!
//! - `model.rs`, the `runs` read model: `ct.runs.v1` (requests and decisions written by the read
//!   API, attempts and outcomes written here) folded into `trigger_runs` and `run_transitions`.
//! - `executor.rs`: scans the model for queued runs, takes a run's Postgres advisory lock, writes
//!   `ATTEMPT_STARTED`, waits until the model shows it (so a cancel that reached the log first
//!   wins), calls the trigger's target with `Idempotency-Key: <runId>`, and writes the outcome.
//!   It also writes what the wall clock decides: expired approvals and breached SLAs. Every
//!   decision is a record, so the model stays a function of the log.
//! - `announce.rs`: tells the platform about triggered runs (`ct.run.started`/`ct.run.completed`
//!   through the edge, source `control_tower`) so the health evaluator's run rules cover them.

pub mod announce;
pub mod executor;
pub mod model;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use ct_platform::{
    config::{ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RegistryConfig, TelemetryConfig},
    consumer::ConsumerSettings,
    readmodel::Horizon,
    registry::RegistryClient,
    triggers::TriggersConfig,
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub const DEFAULTS: ct_platform::config::Defaults = ct_platform::config::Defaults {
    base: include_str!("../config.default.toml"),
    dev: include_str!("../config.dev.toml"),
};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub executor: executor::ExecutorConfig,
    pub callbacks: executor::CallbacksConfig,
    pub announce: announce::AnnounceConfig,
    /// How the runner reaches the edge (run announcements).
    pub edge: ct_client::EdgeConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub triggers: TriggersConfig,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    pub name: String,
    pub topic: String,
    pub dlq_topic: String,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Set by a rebuild for its copy; never configured.
    #[serde(skip)]
    pub horizon: Horizon,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = ct_platform::config::load(DEFAULTS, file)?;
        config.triggers.load().map_err(|e| ConfigError::Rule(e.to_string()))?;
        if config.profile == Profile::Production
            && secrecy::ExposeSecret::expose_secret(&config.callbacks.secret).starts_with("dev-")
        {
            return Err(ConfigError::Rule(
                "callbacks.secret: the dev secret is refused under the production profile".into(),
            ));
        }
        if config.profile == Profile::Production && config.edge.has_dev_token() {
            return Err(ConfigError::Rule(
                "edge.producer_token: dev tokens are refused under the production profile".into(),
            ));
        }
        Ok(config)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }

    /// The defaults pointed at `slice`.
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config = Config::defaults();
        config.kafka = slice.kafka.clone();
        config.consumer.name = format!("{}runs", slice.prefix);
        config.consumer.topic = slice.topics.runs.clone();
        config.consumer.dlq_topic = slice.topics.dlq.clone();
        config.executor.poll_interval_ms = 50;
        config.callbacks.backoff_base_ms = 100;
        config.callbacks.backoff_max_ms = 500;
        config.registry.url = slice.registry_url.clone();
        config.postgres = slice.runs_postgres.clone();
        config.postgres.max_connections = 24;
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        // A slice has no edge of its own: a test that starts one sets `edge.url` and turns this on.
        config.announce.enabled = false;
        config.announce.interval_ms = 100;
        config
    }

    pub fn settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            name: self.consumer.name.clone(),
            topic: self.consumer.topic.clone(),
            dlq_topic: self.consumer.dlq_topic.clone(),
            batch_max: self.consumer.batch_max,
            batch_wait: Duration::from_millis(self.consumer.batch_wait_ms),
            backoff_base: Duration::from_millis(self.consumer.backoff_base_ms),
            backoff_max: Duration::from_millis(self.consumer.backoff_max_ms),
            retry_of: None,
            horizon: self.consumer.horizon.clone(),
        }
    }
}

/// Runs the read model, the executor (when enabled) and `/metrics` + `/healthz` until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
    ct_platform::postgres::migrate(&pool, "runs", model::MIGRATIONS).await.context("migrating the runs schema")?;
    let triggers = config.triggers.load().context("loading the triggers")?;
    ct_platform::metrics::serve_operations(config.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    let mut tasks = tokio::task::JoinSet::new();
    if config.executor.enabled {
        let writer = ct_platform::audit::RecordWriter::new(
            &config.kafka,
            RegistryClient::new(&config.registry.url),
            &config.consumer.topic,
            ct_core::runs::RECORD_NAME,
            ct_core::runs::RECORD_SCHEMA_JSON,
            Duration::from_secs(10),
        )
        .context("creating the Kafka producer")?;
        let executor = Arc::new(executor::Executor::new(
            pool.clone(),
            writer,
            triggers,
            config.executor.clone(),
            config.callbacks.clone(),
        )?);
        tasks.spawn(executor::listen(
            pool.clone(),
            model::channel(&config.postgres.schema),
            Arc::clone(&executor.changes),
            shutdown.clone(),
        ));
        if config.announce.enabled {
            tasks.spawn(announce::run(
                pool.clone(),
                config.announce.clone(),
                config.edge.clone(),
                Arc::clone(&executor.changes),
                shutdown.clone(),
            ));
        }
        tasks.spawn(executor::run(executor, shutdown.clone()));
    }
    let pipeline = model::RunsPipeline {
        pool,
        registry: RegistryClient::new(&config.registry.url),
        consumer: config.consumer.name.clone(),
    };
    let outcome = ct_platform::consumer::run(&pipeline, &config.kafka, &config.settings(), shutdown.clone()).await;
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(outcome?)
}
