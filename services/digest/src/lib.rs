//! `ct-digest`: the daily digest, a read model of `ct.events.v1` and the log's clock
//! (`ct.clock.v1`). Each event counts on its local day; at the first tick at or after the due time
//! (08:00 Europe/London the next morning by default) the day's digest is decided from those
//! counts (`ct_core::digest`), stored with the SHA-256 of its content, and published
//! (`publisher.rs`: `ct.digests.v1` and the archive folder).
//!
//! Shape: `counting.rs` (events → pending facts), `builder.rs` (ticks → folded counts → digests;
//! its clock consumer is `ct_platform::clock::ClockPipeline`),
//! `publisher.rs` (decided digests → topic and files). Both consumers run on the platform's
//! runner under one consumer name, so `ct rebuild digest` rebuilds both topics' state together.

pub mod builder;
pub mod counting;
pub mod dead_letters;
pub mod publisher;
pub mod statuses;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use chrono::NaiveTime;
use chrono_tz::Tz;
use ct_platform::{
    config::{ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RegistryConfig, TelemetryConfig},
    consumer::{self, BoxFuture, ConsumerSettings},
    notify::{self, NotifyConfig},
    postgres::Migration,
    readmodel::{Checksums, Copy, Horizon, ReadModel},
    registry::RegistryClient,
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const DEFAULTS: ct_platform::config::Defaults = ct_platform::config::Defaults {
    base: include_str!("../config.default.toml"),
    dev: include_str!("../config.dev.toml"),
};

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 0, name: "consumer progress", sql: ct_platform::postgres::PROGRESS_TABLE_SQL },
    Migration { version: 1, name: "digest", sql: include_str!("../migrations/0001_digest.sql") },
    Migration { version: 2, name: "notifications", sql: ct_platform::notify::NOTIFICATIONS_TABLE_SQL },
    Migration { version: 3, name: "timesheet gate", sql: include_str!("../migrations/0003_timesheet_gate.sql") },
    Migration { version: 4, name: "kpi marks", sql: include_str!("../migrations/0004_kpi_marks.sql") },
    Migration { version: 5, name: "dead letters", sql: include_str!("../migrations/0005_dead_letters.sql") },
    Migration { version: 6, name: "status changes", sql: include_str!("../migrations/0006_status_changes.sql") },
    Migration {
        version: 7,
        name: "counted when stored",
        sql: include_str!("../migrations/0007_counted_when_stored.sql"),
    },
    Migration { version: 8, name: "pending events", sql: include_str!("../migrations/0008_pending_events.sql") },
];

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub digest: DigestConfig,
    pub publisher: PublisherConfig,
    pub notify: NotifyConfig,
    pub timesheets: TimesheetsConfig,
    /// How blocked timesheet gates reach the log (`timesheet.gate.blocked`, source `control_tower`).
    pub edge: ct_client::EdgeConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    pub name: String,
    pub events_topic: String,
    pub clock_topic: String,
    /// Dead-letter depth reports and actions (`ct.v1.DlqDepth`, `ct.v1.DlqAudit`).
    pub audit_topic: String,
    /// Status changes (`ct.v1.HealthChange`, the health evaluator's outbox).
    pub health_topic: String,
    pub dlq_topic: String,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Set by a rebuild for its copy; never configured.
    #[serde(skip)]
    pub horizon: Horizon,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DigestConfig {
    /// An IANA time zone name.
    pub time_zone: String,
    /// Local time of day, `HH:MM`.
    pub publish_at: String,
}

impl DigestConfig {
    pub fn zone(&self) -> Result<Tz, ConfigError> {
        self.time_zone.parse().map_err(|_| {
            ConfigError::Rule(format!("`digest.time_zone` = {:?} is not an IANA time zone", self.time_zone))
        })
    }

    pub fn publish_time(&self) -> Result<NaiveTime, ConfigError> {
        NaiveTime::parse_from_str(&self.publish_at, "%H:%M").map_err(|_| {
            ConfigError::Rule(format!("`digest.publish_at` = {:?} is not a local time HH:MM", self.publish_at))
        })
    }
}

/// `[timesheets]`: the timesheet gate (`ct_core::timesheets`).
#[derive(Debug, Clone, Deserialize)]
pub struct TimesheetsConfig {
    /// Contractor ids expected to send a timesheet every ISO week; empty turns the gate off.
    pub expected: Vec<String>,
    /// `Mon` .. `Sun` of the week after.
    pub deadline_weekday: String,
    /// Local time, `HH:MM`, in `digest.time_zone`.
    pub deadline_at: String,
    /// The gate blocks when more than this many are missing.
    pub threshold: usize,
    /// Channel names of `[notify.channels]` told when a gate blocks (the admins').
    pub notify_to: Vec<String>,
}

impl TimesheetsConfig {
    /// The gate's rule, `None` when nobody is expected.
    pub fn rule(&self, zone: Tz) -> Result<Option<builder::GateRule>, ConfigError> {
        if self.expected.is_empty() {
            return Ok(None);
        }
        let weekday: chrono::Weekday = self.deadline_weekday.parse().map_err(|_| {
            ConfigError::Rule(format!("`timesheets.deadline_weekday` = {:?} is not a weekday", self.deadline_weekday))
        })?;
        let at = NaiveTime::parse_from_str(&self.deadline_at, "%H:%M").map_err(|_| {
            ConfigError::Rule(format!("`timesheets.deadline_at` = {:?} is not a local time HH:MM", self.deadline_at))
        })?;
        Ok(Some(builder::GateRule {
            deadline: ct_core::timesheets::Deadline { weekday, at, zone },
            expected: self.expected.iter().cloned().collect(),
            threshold: self.threshold,
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PublisherConfig {
    pub enabled: bool,
    pub digests_topic: String,
    /// "" writes no files.
    pub archive_dir: String,
    pub late_after_s: i64,
    pub poll_interval_ms: u64,
    /// Channel names of `[notify.channels]` each published digest is delivered to, once.
    pub deliver_to: Vec<String>,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = ct_platform::config::load(DEFAULTS, file)?;
        config.validate()?;
        Ok(config)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.digest.zone()?;
        self.digest.publish_time()?;
        if self.publisher.late_after_s < 0 {
            return Err(ConfigError::Rule("`publisher.late_after_s` must not be negative".into()));
        }
        for (key, channels) in
            [("publisher.deliver_to", &self.publisher.deliver_to), ("timesheets.notify_to", &self.timesheets.notify_to)]
        {
            if let Some(channel) = channels.iter().find(|c| !self.notify.channels.contains_key(*c)) {
                return Err(ConfigError::Rule(format!(
                    "`{key}` names channel `{channel}`, which `[notify.channels]` does not configure"
                )));
            }
        }
        let gate = self.timesheets.rule(self.digest.zone()?)?;
        if self.profile == Profile::Production && gate.is_some() && self.edge.has_dev_token() {
            return Err(ConfigError::Rule(
                "edge.producer_token: dev tokens are refused under the production profile".into(),
            ));
        }
        Ok(())
    }

    fn settings(&self, topic: &str) -> ConsumerSettings {
        ConsumerSettings {
            name: self.consumer.name.clone(),
            topic: topic.to_owned(),
            dlq_topic: self.consumer.dlq_topic.clone(),
            batch_max: self.consumer.batch_max,
            batch_wait: Duration::from_millis(self.consumer.batch_wait_ms),
            backoff_base: Duration::from_millis(self.consumer.backoff_base_ms),
            backoff_max: Duration::from_millis(self.consumer.backoff_max_ms),
            retry_of: None,
            horizon: self.consumer.horizon.clone(),
        }
    }

    /// The defaults pointed at `slice`, writing no files.
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config = Config::defaults();
        config.kafka = slice.kafka.clone();
        config.consumer.name = format!("{}digest", slice.prefix);
        config.consumer.events_topic = slice.topics.events.clone();
        config.consumer.clock_topic = slice.topics.clock.clone();
        config.consumer.audit_topic = slice.topics.audit.clone();
        config.consumer.health_topic = slice.topics.health.clone();
        config.consumer.dlq_topic = slice.topics.dlq.clone();
        config.consumer.batch_wait_ms = 10;
        config.publisher.poll_interval_ms = 50;
        config.notify.poll_interval_ms = 100;
        config.publisher.archive_dir = String::new();
        config.registry.url = slice.registry_url.clone();
        config.postgres = slice.digest_postgres.clone();
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        config
    }
}

/// Runs the digest builder (both consumers, the publisher when enabled, and `/metrics` +
/// `/healthz`) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate()?;
    let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
    ct_platform::postgres::migrate(&pool, "digest", MIGRATIONS).await.context("migrating the digest schema")?;
    let builder = Arc::new(builder::Builder {
        zone: config.digest.zone()?,
        publish_at: config.digest.publish_time()?,
        gate: config.timesheets.rule(config.digest.zone()?)?,
        consumer: config.consumer.name.clone(),
        events_topic: config.consumer.events_topic.clone(),
        audit_topic: config.consumer.audit_topic.clone(),
        health_topic: config.consumer.health_topic.clone(),
    });
    ct_platform::metrics::serve_operations(config.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    let mut tasks = tokio::task::JoinSet::new();
    if config.publisher.enabled {
        let publisher = publisher::Publisher::connect(pool.clone(), &config).await.context("starting the publisher")?;
        tasks.spawn(publisher::run(publisher, shutdown.clone()));
        if config.notify.enabled {
            let notifier = notify::Notifier::new(pool.clone(), config.notify.clone())?;
            tasks.spawn(notify::run(notifier, shutdown.clone()));
        }
    }
    let counting = counting::Counting {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        builder: Arc::clone(&builder),
    };
    let clock = ct_platform::clock::ClockPipeline {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        model: Arc::clone(&builder),
    };
    let dead_letters = dead_letters::DeadLetters {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        builder: Arc::clone(&builder),
    };
    let statuses = statuses::Statuses {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        builder: Arc::clone(&builder),
    };
    let (events_settings, clock_settings, audit_settings, health_settings) = (
        config.settings(&config.consumer.events_topic),
        config.settings(&config.consumer.clock_topic),
        config.settings(&config.consumer.audit_topic),
        config.settings(&config.consumer.health_topic),
    );
    let (events, ticks, audit, changes) = tokio::join!(
        consumer::run(&counting, &config.kafka, &events_settings, shutdown.clone()),
        consumer::run(&clock, &config.kafka, &clock_settings, shutdown.clone()),
        consumer::run(&dead_letters, &config.kafka, &audit_settings, shutdown.clone()),
        consumer::run(&statuses, &config.kafka, &health_settings, shutdown.clone()),
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    events?;
    ticks?;
    audit?;
    changes?;
    Ok(())
}

/// The digest as a read model: `ct rebuild digest`.
pub struct DigestModel(pub Config);

/// Tables compared by a rebuild, each with the columns that are decisions and its order. The
/// delivery columns of `digests` (when it was published, late, archived) are not state of the log.
const TABLES: &[(&str, &str, &str)] = &[
    ("pending_events", "t", "\"partition\", \"offset\""),
    ("pending_ticks", "t", "clock_offset"),
    ("pending_audit", "t", "\"partition\", \"offset\""),
    ("dlq_depth", "t", "day"),
    ("pending_changes", "t", "\"partition\", \"offset\""),
    ("status_changes", "t", "system_id, at"),
    ("clock", "t", "id"),
    ("counted", "t", "event_id"),
    ("day_counts", "t", "day, metric, dimension"),
    ("digests", "(day, time_zone, sha256, json, markdown, due_at, decided_minute)", "day"),
    ("kpi_marks", "t", "event_id"),
    (
        "timesheet_gates",
        "(period, week, deadline, expected, received, missing, threshold, blocked, decided_minute)",
        "period",
    ),
];

pub async fn checksums(pool: &PgPool) -> Result<Checksums, sqlx::Error> {
    let mut sums = Checksums::new();
    for (table, columns, order) in TABLES {
        let sql = format!("SELECT md5(string_agg(md5({columns}::text), '' ORDER BY {order})) FROM {table} t");
        let sum: Option<String> = sqlx::query_scalar(&sql).fetch_one(pool).await?;
        sums.insert((*table).to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
    }
    Ok(sums)
}

impl ReadModel for DigestModel {
    fn name(&self) -> &'static str {
        "digest"
    }

    fn postgres(&self) -> &PostgresConfig {
        &self.0.postgres
    }

    fn kafka(&self) -> &KafkaConfig {
        &self.0.kafka
    }

    fn consumer(&self) -> &str {
        &self.0.consumer.name
    }

    fn topics(&self) -> Vec<String> {
        vec![
            self.0.consumer.events_topic.clone(),
            self.0.consumer.clock_topic.clone(),
            self.0.consumer.audit_topic.clone(),
            self.0.consumer.health_topic.clone(),
        ]
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(ct_platform::postgres::migrate(pool, "digest", MIGRATIONS))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(checksums(pool))
    }

    /// Digests decided before a restore were published and delivered then: a restored service
    /// must not send them again.
    fn settle_history<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("UPDATE digests SET published_at = decided_minute, late = false WHERE published_at IS NULL")
                .execute(pool)
                .await?;
            sqlx::query("UPDATE timesheet_gates SET announced_at = decided_minute WHERE announced_at IS NULL")
                .execute(pool)
                .await?;
            sqlx::query(
                "UPDATE notifications SET state = 'suppressed', last_error = 'decided before a restore' \
                 WHERE state = 'pending'",
            )
            .execute(pool)
            .await
            .map(drop)
        })
    }

    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>> {
        let mut config = self.0.clone();
        config.publisher.enabled = false;
        config.consumer.name = copy.consumer;
        config.consumer.horizon = copy.horizon;
        config.consumer.batch_max = config.consumer.batch_max.max(10_000);
        config.postgres.schema = copy.schema;
        config.postgres.extra_schemas.clear();
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        Box::pin(async move { run(config, stop).await.map_err(|e| format!("{e:#}")) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_load_and_publish_at_eight_in_london() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert_eq!(config.digest.zone().unwrap(), chrono_tz::Europe::London);
        assert_eq!(config.digest.publish_time().unwrap(), NaiveTime::from_hms_opt(8, 0, 0).unwrap());
        assert_eq!(config.publisher.digests_topic, "ct.digests.v1");
        assert_eq!(config.postgres.schema, "ct_digest");
    }

    #[test]
    fn a_bad_zone_or_time_is_refused_naming_the_key() {
        let mut config = Config::defaults();
        config.digest.time_zone = "Europe/Londn".into();
        assert!(config.validate().unwrap_err().to_string().contains("digest.time_zone"));
        let mut config = Config::defaults();
        config.digest.publish_at = "8am".into();
        assert!(config.validate().unwrap_err().to_string().contains("digest.publish_at"));
    }
}
