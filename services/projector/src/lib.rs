//! `ct-projector`: builds the read models from `ct.events.v1`.
//!
//! Shape (same for every consumer): `config` (below), `handler.rs` (pure: decoded events ->
//! intended writes), `store.rs` (Postgres + Redis), and the shared consumer loop of
//! `ct_platform::consumer`, which stores progress only inside the write transaction.
//!
//! Architecture invariant: one event, one effect: `events.event_id` is unique and every derived
//! change (runs, systems, counts) is applied only for rows this batch actually inserted.

pub mod daily_counts;
pub mod erasures;
pub mod handler;
pub mod store;
pub mod versions;

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use ct_platform::{
    config::{
        ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RedisConfig, RegistryConfig, TelemetryConfig,
    },
    consumer::{self, Advance, BoxFuture, ConsumerSettings, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::classify,
    readmodel::{Checksums, Copy, Horizon, ReadModel},
    redis::Keys,
    registry::RegistryClient,
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Compiled-in defaults (no credentials: nothing differs between profiles).
pub const DEFAULTS: ct_platform::config::Defaults =
    ct_platform::config::Defaults { base: include_str!("../config.default.toml"), dev: "" };

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub views: ViewsConfig,
    pub daily_counts: DailyCountsConfig,
    pub versions: VersionsConfig,
    pub retention: RetentionConfig,
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
    /// Where `ct erase` writes its erasures (`ct.v1.Erasure`, beside other audit records).
    pub audit_topic: String,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    /// While a dependency is down: retries from this delay, doubling, jittered...
    pub backoff_base_ms: u64,
    /// ...up to this one, for as long as the outage lasts.
    pub backoff_max_ms: u64,
    /// Members of the consumer group in this process (the group spreads the partitions between
    /// them and every other instance's).
    pub parallelism: u32,
    /// Set by a rebuild for its copy; never configured.
    #[serde(skip)]
    pub horizon: Horizon,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VersionsConfig {
    /// Also run the `versions` read model (its own group and schema) in this process.
    pub enabled: bool,
    /// The branch deployments should follow: a deployment drifts when its head is another commit.
    pub target_branch: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DailyCountsConfig {
    /// Also run the `daily-counts` read model (its own group and schema) in this process.
    pub enabled: bool,
}

/// The retention tiers of `store::Retention`, and how often rows past them are deleted.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionConfig {
    pub events_days: u32,
    pub runs_days: u32,
    /// 0: never (a rebuild's copy; its comparisons leave pruned rows out anyway).
    pub prune_interval_s: u64,
}

impl RetentionConfig {
    pub fn tiers(&self) -> store::Retention {
        store::Retention { events_days: self.events_days, runs_days: self.runs_days }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ViewsConfig {
    /// Keep the Redis hot views. A rebuild turns them off: its views would be thrown away.
    pub enabled: bool,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        ct_platform::config::load(DEFAULTS, file)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }

    /// The settings of the main consumer (`consumer.topic`).
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

    /// The settings of the consumer of `consumer.retry_topic`: the same stage, taking only the
    /// records handed back to it.
    pub fn retry_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            topic: self.consumer.retry_topic.clone(),
            retry_of: Some(self.consumer.name.clone()),
            ..self.settings()
        }
    }

    /// The settings of the erasures consumer (`consumer.audit_topic`). A group of its own
    /// (`<name>.erasures`): a member on another topic in the events group would make every start
    /// a longer rebalance for the events consumers. Its progress is stored under `consumer.name`
    /// (the pipeline's key), so a rebuild and a fresh build wait for it like for the events.
    pub fn erasure_settings(&self) -> ConsumerSettings {
        ConsumerSettings {
            name: format!("{}.erasures", self.consumer.name),
            topic: self.consumer.audit_topic.clone(),
            ..self.settings()
        }
    }
}

impl Config {
    /// The defaults pointed at `slice` (its topics, consumer name, schema, prefix, registry),
    /// metrics on port 0: how tests (and anything else that runs services side by side) start it.
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config = Config::defaults();
        config.kafka = slice.kafka.clone();
        config.consumer.name = format!("{}projector", slice.prefix);
        config.consumer.topic = slice.topics.events.clone();
        config.consumer.audit_topic = slice.topics.audit.clone();
        config.consumer.dlq_topic = slice.topics.dlq.clone();
        config.consumer.retry_topic = slice.topics.retry.clone();
        config.consumer.batch_wait_ms = 10;
        config.registry.url = slice.registry_url.clone();
        config.postgres = slice.postgres.clone();
        config.redis = slice.redis.clone();
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        config
    }

    /// What a rebuild's copy of the projector does differently from the live one: no Redis views
    /// (they would be thrown away; the live projector's heal from the swapped-in tables), and,
    /// reading history rather than following the head, big batches and two members side by side.
    pub fn for_rebuild(mut self, copy: Copy) -> Config {
        self.views.enabled = false;
        self.daily_counts.enabled = false;
        self.versions.enabled = false;
        self.retention.prune_interval_s = 0;
        self.consumer.batch_max = self.consumer.batch_max.max(REBUILD_BATCH);
        self.consumer.parallelism = self.consumer.parallelism.max(REBUILD_PARALLELISM);
        self.consumer.name = copy.consumer;
        self.consumer.horizon = copy.horizon;
        self.postgres.schema = copy.schema;
        self.postgres.extra_schemas.clear();
        self.http.listen = "127.0.0.1:0".parse().expect("literal address");
        self
    }
}

const REBUILD_BATCH: usize = 10_000;
const REBUILD_PARALLELISM: u32 = 2;

/// The projector's tables as a read model: `ct rebuild projector`.
pub struct ProjectorModel(pub Config);

impl ReadModel for ProjectorModel {
    fn name(&self) -> &'static str {
        "projector"
    }

    fn postgres(&self) -> &PostgresConfig {
        &self.0.postgres
    }

    fn kafka(&self) -> &ct_platform::config::KafkaConfig {
        &self.0.kafka
    }

    fn consumer(&self) -> &str {
        &self.0.consumer.name
    }

    fn topics(&self) -> Vec<String> {
        // Everything handed back through the retry topic is also in the events topic.
        vec![self.0.consumer.topic.clone(), self.0.consumer.audit_topic.clone()]
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(store::migrate(pool))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        let retention = self.0.retention.tiers();
        Box::pin(async move { store::checksums_kept(pool, &retention).await })
    }

    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>> {
        let config = self.0.clone().for_rebuild(copy);
        Box::pin(async move { run(config, stop).await.map_err(|e| format!("{e:#}")) })
    }
}

/// The projector's pipeline: decode through the registry, plan, write Postgres, refresh Redis.
pub struct Projector {
    pool: PgPool,
    registry: RegistryClient,
    views: Option<store::Views>,
    /// A refresh failed (Redis down): the next one rebuilds every view. Kept here because the
    /// marker key cannot be removed from a Redis that does not answer.
    views_stale: Arc<std::sync::atomic::AtomicBool>,
    consumer: String,
}

impl Pipeline for Projector {
    type Item = handler::Effect;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<handler::Effect, ProcessError>> {
        Box::pin(async move {
            let value =
                record.value.as_deref().ok_or_else(|| ProcessError::Record("the record has no value".to_owned()))?;
            let event = self.registry.decode_event(value).await?;
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
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(self.apply_batch(items, topic, progress))
    }
}

impl Projector {
    async fn apply_batch(
        &self,
        items: &[(Coordinates, handler::Effect)],
        topic: &str,
        progress: &[Advance],
    ) -> Result<(), ProcessError> {
        let effects = handler::plan(items);
        let touched = store::apply(&self.pool, &self.consumer, topic, &effects, progress).await?;
        // Redis is a cache of what just committed: a failure here is logged and healed on the
        // next batch or start, never a reason to re-apply the batch.
        if let Some(views) = &self.views {
            use std::sync::atomic::Ordering;
            let refreshed = if self.views_stale.swap(false, Ordering::SeqCst) {
                views.rebuild(&self.pool).await
            } else {
                views.refresh(&self.pool, &touched).await
            };
            if let Err(error) = refreshed {
                self.views_stale.store(true, Ordering::SeqCst);
                metrics::counter!("ct_projector_view_refresh_errors_total").increment(1);
                tracing::warn!(%error, "Redis views not refreshed; they are rebuilt on the next refresh.");
                let mut redis = views.redis.clone();
                let _: Result<(), _> =
                    redis::cmd("DEL").arg(views.keys.key(&["views", "ready"])).query_async(&mut redis).await;
            }
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
            views_stale: Arc::new(std::sync::atomic::AtomicBool::new(false)),
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
    // Derived rows merge order-independently (see `store.rs`), so the members of the group may
    // apply their partitions in parallel.
    let mut settings: Vec<ConsumerSettings> = vec![config.settings(); config.consumer.parallelism.max(1) as usize];
    settings.push(config.retry_settings());
    if config.daily_counts.enabled {
        tokio::spawn(daily_counts::run(config.clone(), shutdown.clone()));
    }
    if config.versions.enabled {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = versions::run(config, shutdown).await {
                tracing::error!(error = format!("{error:#}"), "The versions read model stopped.");
            }
        });
    }
    if config.retention.prune_interval_s > 0 {
        tokio::spawn(prune_periodically(Arc::clone(&projector), config.retention.clone(), shutdown.clone()));
    }
    let erasures = erasures::Erasures {
        pool: projector.pool().clone(),
        registry: RegistryClient::new(&config.registry.url),
        consumer: config.consumer.name.clone(),
        views_stale: Arc::clone(&projector.views_stale),
    };
    let erasure_settings = config.erasure_settings();
    let consumers =
        settings.iter().map(|s| Box::pin(consumer::run(projector.as_ref(), &config.kafka, s, shutdown.clone())));
    futures::future::try_join(
        futures::future::try_join_all(consumers),
        consumer::run(&erasures, &config.kafka, &erasure_settings, shutdown.clone()),
    )
    .await?;
    Ok(())
}

/// Deletes rows past their retention tier every `prune_interval_s` (see `store::prune`).
async fn prune_periodically(projector: Arc<Projector>, retention: RetentionConfig, shutdown: CancellationToken) {
    let interval = Duration::from_secs(retention.prune_interval_s);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store::prune(projector.pool(), &retention.tiers()).await {
            Ok(pruned) => {
                metrics::counter!("ct_projector_pruned_rows_total", "table" => "events").increment(pruned.events);
                metrics::counter!("ct_projector_pruned_rows_total", "table" => "runs").increment(pruned.runs);
                if pruned != store::Pruned::default() {
                    tracing::info!(
                        events = pruned.events,
                        runs = pruned.runs,
                        "Rows past their retention tier deleted."
                    );
                    projector.views_stale.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            Err(error) => tracing::warn!(%error, "Pruning failed; tried again at the next interval."),
        }
    }
}
