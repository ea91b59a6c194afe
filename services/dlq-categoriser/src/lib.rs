//! `ct-dlq-categoriser`: makes dead letters understandable and replayable.
//!
//! Three loops in one service:
//! - **categorise** (`ct.dlq.v1` -> `ct.dlq.{schema,transient,critical}.v1`): the rules of the
//!   configuration choose the category; a Kafka transaction writes the record and commits the
//!   input offset together ([`ct_platform::relay`]), so each dead letter is categorised once;
//! - **retry** (`ct.dlq.transient.v1` -> `ct.retry.v1`): hands a transient item back to its
//!   stage once its backoff has passed, in the same transactional way;
//! - **items** (category topics, `ct.retry.v1`, `ct.audit.v1` -> `dlq_items`): the read model
//!   of the read API and the SRE CLI, in the shared consumer shape (`items.rs` says what each
//!   record means, `store.rs` writes it with the progress in one transaction), and the DLQ depth
//!   per category in Redis and `/metrics`.
//!
//! Architecture invariant: this service never dead-letters into its own input for an outage: a
//! dependency that does not answer pauses the items consumer (as every consumer); only records
//! at fault (an audit record that does not decode) are dead-lettered.

pub mod items;
pub mod routing;
pub mod store;

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use ct_core::dlq::Rules;
use ct_platform::{
    config::{
        ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RedisConfig, RegistryConfig, TelemetryConfig,
    },
    consumer::{self, Advance, BoxFuture, ConsumerSettings, Coordinates, Incoming, Pipeline, ProcessError},
    readmodel::{Checksums, Copy, Horizon, ReadModel},
    redis::Keys,
    registry::RegistryClient,
    relay::{self, RelaySettings},
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::items::Change;

/// Compiled-in defaults (no credentials: nothing differs between profiles).
pub const DEFAULTS: ct_platform::config::Defaults =
    ct_platform::config::Defaults { base: include_str!("../config.default.toml"), dev: "" };

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub categoriser: RelayConfig,
    pub retry: RetryConfig,
    pub rules: Rules,
    pub items: ItemsConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Topics {
    pub dlq: String,
    pub schema: String,
    pub transient: String,
    pub critical: String,
    pub retry: String,
    pub audit: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelayConfig {
    pub name: String,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RetryConfig {
    pub name: String,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemsConfig {
    pub name: String,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    /// While a dependency is down: retries from this delay, doubling, jittered, up to
    /// `backoff_max_ms`, for as long as the outage lasts.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Set by a rebuild for its copy; never configured.
    #[serde(skip)]
    pub horizon: Horizon,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        ct_platform::config::load(DEFAULTS, file)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }

    /// The defaults pointed at `slice` (its topics, consumer names, schema, prefix, registry),
    /// metrics on port 0.
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config = Config::defaults();
        let t = &slice.topics;
        config.kafka = slice.kafka.clone();
        config.topics = Topics {
            dlq: t.dlq.clone(),
            schema: t.schema.clone(),
            transient: t.transient.clone(),
            critical: t.critical.clone(),
            retry: t.retry.clone(),
            audit: t.audit.clone(),
        };
        config.categoriser.name = format!("{}categoriser", slice.prefix);
        config.retry.name = format!("{}retry", slice.prefix);
        config.items.name = format!("{}dlq-items", slice.prefix);
        config.registry.url = slice.registry_url.clone();
        config.postgres = slice.dlq_postgres.clone();
        config.redis = slice.redis.clone();
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        config
    }

    /// The topics the items consumer reads, one consumer each.
    fn item_topics(&self) -> [&str; 5] {
        [&self.topics.schema, &self.topics.transient, &self.topics.critical, &self.topics.retry, &self.topics.audit]
    }

    fn item_settings(&self, topic: &str) -> ConsumerSettings {
        ConsumerSettings {
            name: self.items.name.clone(),
            topic: topic.to_owned(),
            dlq_topic: self.topics.dlq.clone(),
            batch_max: self.items.batch_max,
            batch_wait: Duration::from_millis(self.items.batch_wait_ms),
            backoff_base: Duration::from_millis(self.items.backoff_base_ms),
            backoff_max: Duration::from_millis(self.items.backoff_max_ms),
            retry_of: None,
            horizon: self.items.horizon.clone(),
        }
    }
}

/// The `dlq_items` pipeline.
pub struct DlqItems {
    pool: PgPool,
    registry: RegistryClient,
    /// Where the depth per category is published; a rebuild copy publishes nothing.
    redis: Option<Mutex<redis::aio::ConnectionManager>>,
    /// The depth as `ct.v1.DlqDepth` records on the audit topic, written when it changes (the
    /// health evaluator alerts on it); with the last one written.
    depth_log: Option<(ct_platform::audit::RecordWriter, Mutex<Option<store::Depth>>)>,
    keys: Keys,
    topics: Topics,
    consumer: String,
}

impl Pipeline for DlqItems {
    type Item = Option<Change>;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Option<Change>, ProcessError>> {
        Box::pin(async move {
            let topic = record.coordinates.topic.as_str();
            if topic == self.topics.retry {
                Ok(items::handed_back(record))
            } else if topic == self.topics.audit {
                let value = record
                    .value
                    .as_deref()
                    .ok_or_else(|| ProcessError::Record("the audit record has no value".to_owned()))?;
                // The audit topic also carries other record types (alert actions): only the
                // dead-letter audits are this model's.
                let audit = self.registry.decode_with(value, ct_core::dlq::decode_dlq_audit).await?;
                Ok(audit.map(Change::Audited))
            } else {
                let mut change = items::parked(record);
                if let (Change::Parked(item), Some(value)) = (&mut change, record.value.as_deref()) {
                    // Only events decode as one; anything else (garbage, other record types) has
                    // no eventId. An unreachable registry pauses like any dependency.
                    item.event_id = match self.registry.decode_event(value).await.map_err(ProcessError::from) {
                        Ok(event) => Some(event.event_id().to_owned()),
                        Err(ProcessError::Record(_)) => None,
                        Err(other) => return Err(other),
                    };
                }
                Ok(Some(change))
            }
        })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move {
            ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await.map_err(ProcessError::from)
        })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Option<Change>)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let changes: Vec<Change> = items.iter().filter_map(|(_, change)| change.clone()).collect();
            store::apply(&self.pool, &self.consumer, topic, &changes, progress).await?;
            if !changes.is_empty() && self.redis.is_some() {
                self.refresh_depth().await;
            }
            Ok(())
        })
    }
}

impl DlqItems {
    /// Connects; with `publish_depth` also to Redis, where the depth per category goes.
    pub async fn connect(config: &Config, publish_depth: bool) -> anyhow::Result<DlqItems> {
        let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
        store::migrate(&pool).await.context("migrating dlq_items")?;
        let redis = if publish_depth {
            Some(Mutex::new(ct_platform::redis::connect(&config.redis).await.context("connecting to Redis")?))
        } else {
            None
        };
        let depth_log = if publish_depth {
            let writer = ct_platform::audit::RecordWriter::new(
                &config.kafka,
                RegistryClient::new(&config.registry.url),
                &config.topics.audit,
                ct_core::dlq::DEPTH_RECORD,
                ct_core::dlq::DEPTH_SCHEMA_JSON,
                Duration::from_secs(30),
            )
            .context("creating the depth producer")?;
            Some((writer, Mutex::new(None)))
        } else {
            None
        };
        let items = DlqItems {
            pool,
            registry: RegistryClient::new(&config.registry.url),
            redis,
            depth_log,
            keys: Keys::new(config.redis.key_prefix.clone()),
            topics: config.topics.clone(),
            consumer: config.items.name.clone(),
        };
        if items.redis.is_some() {
            items.refresh_depth().await;
        }
        Ok(items)
    }

    /// Redis, the gauge and the log follow Postgres; a failure here is healed by the next batch.
    async fn refresh_depth(&self) {
        let Some(redis) = &self.redis else { return };
        let depth = match store::depth(&self.pool).await {
            Ok(depth) => depth,
            Err(error) => {
                tracing::warn!(%error, "DLQ depth not read; the next batch retries.");
                return;
            }
        };
        if let Err(error) = store::publish_depth(&mut *redis.lock().await, &self.keys, &depth).await {
            tracing::warn!(%error, "DLQ depth not refreshed in Redis; the next batch retries.");
        }
        let Some((writer, last)) = &self.depth_log else { return };
        let mut last = last.lock().await;
        if last.as_ref() == Some(&depth) {
            return;
        }
        let report = ct_core::dlq::Depth {
            written_at: chrono::Utc::now(),
            parked: depth.values().sum(),
            by_category: depth.iter().map(|(c, n)| (c.lowercase().to_owned(), *n)).collect(),
        };
        let written = match ct_core::dlq::encode_depth(&report) {
            Ok(datum) => writer.write("dlq-depth", &datum).await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match written {
            Ok(()) => *last = Some(depth),
            Err(error) => {
                tracing::warn!(%error, "DLQ depth not written to the log; retried after the next batch or within a minute.")
            }
        }
    }
}

/// A failed depth write is retried even when no batch comes (a quiet DLQ would otherwise leave
/// the health evaluator with a stale depth); an unchanged depth writes nothing.
async fn refresh_depth_every_minute(items: &DlqItems, shutdown: &CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => items.refresh_depth().await,
        }
    }
}

/// Runs the three loops (and `/metrics`, `/healthz`) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let items = Arc::new(DlqItems::connect(&config, true).await?);
    ct_platform::metrics::serve_operations(config.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;

    let categorise = routing::Categorise { rules: config.rules.clone(), topics: config.topics.clone() };
    let categorise_settings = RelaySettings {
        name: config.categoriser.name.clone(),
        input_topic: config.topics.dlq.clone(),
        batch_max: config.categoriser.batch_max,
        batch_wait: Duration::from_millis(config.categoriser.batch_wait_ms),
        transaction_timeout: Duration::from_secs(60),
    };
    let retry = routing::RetryWhenDue {
        retry_topic: config.topics.retry.clone(),
        base: Duration::from_millis(config.retry.backoff_base_ms),
        cap: Duration::from_millis(config.retry.backoff_cap_ms),
    };
    let retry_settings = RelaySettings {
        name: config.retry.name.clone(),
        input_topic: config.topics.transient.clone(),
        batch_max: config.categoriser.batch_max,
        batch_wait: Duration::from_millis(config.categoriser.batch_wait_ms),
        transaction_timeout: Duration::from_secs(60),
    };
    let item_settings: Vec<ConsumerSettings> = config.item_topics().iter().map(|t| config.item_settings(t)).collect();
    let item_loops = run_item_consumers(items.as_ref(), &config.kafka, &item_settings, &shutdown);
    tokio::select! {
        () = relay::run(&config.kafka, &categorise_settings, &categorise, shutdown.clone()) => {}
        () = relay::run(&config.kafka, &retry_settings, &retry, shutdown.clone()) => {}
        () = refresh_depth_every_minute(&items, &shutdown) => {}
        result = item_loops => result?,
    }
    shutdown.cancel();
    Ok(())
}

/// `dlq_items` (with `dlq_audit`, `dlq_handbacks`) as a read model: `ct rebuild dlq-items`.
pub struct DlqItemsModel(pub Config);

impl ReadModel for DlqItemsModel {
    fn name(&self) -> &'static str {
        "dlq-items"
    }

    fn postgres(&self) -> &PostgresConfig {
        &self.0.postgres
    }

    fn kafka(&self) -> &ct_platform::config::KafkaConfig {
        &self.0.kafka
    }

    fn consumer(&self) -> &str {
        &self.0.items.name
    }

    fn topics(&self) -> Vec<String> {
        self.0.item_topics().iter().map(|t| (*t).to_owned()).collect()
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(store::migrate(pool))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(store::checksums(pool))
    }

    /// Only the items consumers run in a copy: the categorise and retry relays are the live
    /// service's, and the depth in Redis stays the live model's.
    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>> {
        let mut config = self.0.clone();
        config.items.name = copy.consumer;
        config.items.horizon = copy.horizon;
        config.items.batch_max = config.items.batch_max.max(5_000);
        config.postgres.schema = copy.schema;
        config.postgres.extra_schemas.clear();
        Box::pin(async move {
            let items = DlqItems::connect(&config, false).await.map_err(|e| format!("{e:#}"))?;
            let settings: Vec<ConsumerSettings> =
                config.item_topics().iter().map(|t| config.item_settings(t)).collect();
            run_item_consumers(&items, &config.kafka, &settings, &stop).await.map_err(|e| format!("{e:#}"))
        })
    }
}

/// Runs one items consumer per topic; the first to stop with an error stops them all.
async fn run_item_consumers(
    items: &DlqItems,
    kafka: &KafkaConfig,
    settings: &[ConsumerSettings],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut loops: Vec<_> =
        settings.iter().map(|s| Box::pin(consumer::run(items, kafka, s, shutdown.clone()))).collect();
    while !loops.is_empty() {
        let (result, _, rest) = futures::future::select_all(loops).await;
        result?;
        loops = rest;
    }
    Ok(())
}
