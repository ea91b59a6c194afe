//! `ct-projector`: builds the read models from `ct.events.v1`.
//!
//! Shape (same for every consumer): `config` (below), `handler.rs` (pure: decoded events ->
//! intended writes), `store.rs` (Postgres + Redis), and the shared consumer loop of
//! `ct_platform::consumer`, which stores progress only inside the write transaction.
//!
//! Architecture invariant: one event, one effect: `events.event_id` is unique and every derived
//! change (runs, systems, counts) is applied only for rows this batch actually inserted.

pub mod handler;
pub mod store;

use std::{collections::BTreeMap, collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use ct_platform::{
    config::{
        ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RedisConfig, RegistryConfig, TelemetryConfig,
    },
    consumer::{self, BoxFuture, ConsumerSettings, Coordinates, Incoming, OnExhausted, Pipeline, ProcessError, Shard},
    postgres::classify,
    redis::Keys,
    registry::RegistryClient,
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_CONFIG: &str = include_str!("../config.default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub views: ViewsConfig,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    pub name: String,
    pub topic: String,
    pub dlq_topic: String,
    /// Records the categoriser hands back for another attempt (only those for this stage).
    pub retry_topic: String,
    pub on_exhausted: OnExhausted,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    /// Consumers applying `topic` in parallel, each on its share of the partitions.
    pub parallelism: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ViewsConfig {
    /// Keep the Redis hot views. A rebuild turns them off: its views would be thrown away.
    pub enabled: bool,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        ct_platform::config::load(DEFAULT_CONFIG, file)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULT_CONFIG)
    }

    /// The settings of the main consumer (`consumer.topic`).
    pub fn settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            name: self.consumer.name.clone(),
            topic: self.consumer.topic.clone(),
            dlq_topic: self.consumer.dlq_topic.clone(),
            batch_max: self.consumer.batch_max,
            batch_wait: Duration::from_millis(self.consumer.batch_wait_ms),
            max_attempts: self.consumer.max_attempts.max(1),
            backoff_base: Duration::from_millis(self.consumer.backoff_base_ms),
            on_exhausted: self.consumer.on_exhausted,
            retry_of: None,
            shard: Shard::ALL,
        }
    }

    /// The settings of the consumer of `consumer.retry_topic`: the same stage, taking only the
    /// records handed back to it.
    pub fn retry_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            topic: self.consumer.retry_topic.clone(),
            retry_of: Some(self.consumer.name.clone()),
            ..self.settings()
        }
    }
}

/// The projector's pipeline: decode through the registry, plan, write Postgres, refresh Redis.
pub struct Projector {
    pool: PgPool,
    registry: RegistryClient,
    views: Option<store::Views>,
    consumer: String,
}

impl Pipeline for Projector {
    type Item = handler::Effect;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<handler::Effect, String>> {
        Box::pin(async move {
            let value = record.value.as_deref().ok_or("the record has no value")?;
            let event = self.registry.decode_event(value).await.map_err(|e| e.to_string())?;
            Ok(handler::effect(&record.coordinates, &event))
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move {
            ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await.map_err(classify)
        })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, handler::Effect)],
        topic: &'a str,
        progress: &'a BTreeMap<i32, i64>,
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(self.apply_batch(items, topic, progress))
    }
}

impl Projector {
    async fn apply_batch(
        &self,
        items: &[(Coordinates, handler::Effect)],
        topic: &str,
        progress: &BTreeMap<i32, i64>,
    ) -> Result<(), ProcessError> {
        let effects = handler::plan(items);
        let touched = store::apply(&self.pool, &self.consumer, topic, &effects, progress).await.map_err(classify)?;
        // Redis is a cache of what just committed: a failure here is logged and healed on the
        // next batch or start, never a reason to re-apply the batch.
        if let Some(views) = &self.views
            && let Err(error) = views.refresh(&self.pool, &touched).await
        {
            metrics::counter!("ct_projector_view_refresh_errors_total").increment(1);
            tracing::warn!(%error, "Redis views not refreshed; they are rebuilt on the next refresh.");
            let mut redis = views.redis.clone();
            let _: Result<(), _> =
                redis::cmd("DEL").arg(views.keys.key(&["views", "ready"])).query_async(&mut redis).await;
        }
        Ok(())
    }
}

impl Projector {
    pub async fn connect(config: &Config) -> anyhow::Result<Projector> {
        let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
        store::migrate(&pool).await.context("migrating the read models")?;
        let views = if config.views.enabled {
            let redis = ct_platform::redis::connect(&config.redis).await.context("connecting to Redis")?;
            let views = store::Views { redis, keys: Keys::new(config.redis.key_prefix.clone()) };
            views.refresh(&pool, &store::Touched::default()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(views)
        } else {
            None
        };
        Ok(Projector {
            pool,
            registry: RegistryClient::new(&config.registry.url),
            views,
            consumer: config.consumer.name.clone(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Runs the projector (and its `/metrics` endpoint) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let projector = Arc::new(Projector::connect(&config).await?);
    ct_platform::metrics::serve_operations(config.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    // Derived rows merge order-independently (see `store.rs`), so shards of the partitions may
    // apply in parallel.
    let mut settings: Vec<ConsumerSettings> = Shard::split(config.consumer.parallelism)
        .map(|shard| ConsumerSettings { shard, ..config.settings() })
        .collect();
    settings.push(config.retry_settings());
    let consumers =
        settings.iter().map(|s| Box::pin(consumer::run(projector.as_ref(), &config.kafka, s, shutdown.clone())));
    futures::future::try_join_all(consumers).await?;
    Ok(())
}
