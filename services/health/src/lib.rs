//! `ct-health`: the health evaluator, a read model of `ct.events.v1` and the log's clock
//! (`ct.clock.v1`). Per catalogued system: green/amber/red/unknown with the rule and the sentence
//! that explains it, the history of changes, and each change on `ct.health.v1`.
//!
//! Shape: `facts.rs` (events → pending facts, pure `observe`), `evaluator.rs` (ticks → folded
//! windows → `ct_core::health::evaluate`), `ticker.rs` (the clock's writer, the one reader of the
//! wall clock), `outbox.rs` (changes → `ct.health.v1`). Both consumers run on the platform's
//! runner under one consumer name, so `ct rebuild health` rebuilds both topics' state together.

pub mod alerts;
pub mod evaluator;
pub mod facts;
pub mod outbox;
pub mod slos;
pub mod ticker;

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use ct_core::health::Rules;
use ct_platform::{
    catalogue::CatalogueConfig,
    config::{ConfigError, HttpConfig, KafkaConfig, PostgresConfig, Profile, RegistryConfig, TelemetryConfig},
    consumer::{self, BoxFuture, ConsumerSettings},
    notify,
    postgres::Migration,
    readmodel::{Checksums, Copy, Horizon, ReadModel},
    registry::RegistryClient,
    triggers::TriggersConfig,
};
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const DEFAULTS: ct_platform::config::Defaults =
    ct_platform::config::Defaults { base: include_str!("../config.default.toml"), dev: "" };

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 0, name: "consumer progress", sql: ct_platform::postgres::PROGRESS_TABLE_SQL },
    Migration { version: 1, name: "health", sql: include_str!("../migrations/0001_health.sql") },
    Migration { version: 2, name: "alerts", sql: include_str!("../migrations/0002_alerts.sql") },
    Migration { version: 3, name: "alert actions", sql: include_str!("../migrations/0003_alert_actions.sql") },
    Migration { version: 4, name: "silences", sql: include_str!("../migrations/0004_silences.sql") },
    Migration { version: 5, name: "slos", sql: include_str!("../migrations/0005_slos.sql") },
    Migration { version: 6, name: "quiet hours", sql: include_str!("../migrations/0006_quiet_hours.sql") },
    Migration { version: 7, name: "dlq depth", sql: include_str!("../migrations/0007_dlq_depth.sql") },
    Migration {
        version: 8,
        name: "notification columns",
        sql: include_str!("../migrations/0008_notification_columns.sql"),
    },
    Migration { version: 9, name: "drift", sql: include_str!("../migrations/0009_drift.sql") },
    Migration {
        version: 10,
        name: "tick health offsets",
        sql: include_str!("../migrations/0010_tick_health_offsets.sql"),
    },
    Migration { version: 11, name: "drift table names", sql: include_str!("../migrations/0011_drift_table_names.sql") },
];

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub kafka: KafkaConfig,
    pub consumer: ConsumerConfig,
    pub ticker: TickerConfig,
    pub outbox: OutboxConfig,
    pub rules: Rules,
    pub slos: Vec<ct_core::slo::SloSpec>,
    pub slo_alerts: ct_core::slo::BurnPolicy,
    pub alerts: alerts::AlertsConfig,
    pub notify: notify::NotifyConfig,
    pub catalogue: CatalogueConfig,
    /// The trigger allow-list (unset: the project's `config/triggers.toml`): each trigger's
    /// `sla_s` is the run-SLA alert's limit for the triggered runs of that job.
    #[serde(default)]
    pub triggers: TriggersConfig,
    pub registry: RegistryConfig,
    pub postgres: PostgresConfig,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

/// The systems tier: how long each system's status history is kept, in days back from the
/// evaluator's clock (time from the log). 0 keeps everything.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionConfig {
    pub history_days: u32,
    /// How often history past the tier is deleted (0: never, as in a rebuild's copy).
    pub prune_interval_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerConfig {
    pub name: String,
    pub events_topic: String,
    pub clock_topic: String,
    /// People's actions on alerts (acknowledgements), `ct.v1.AlertAudit` records among others.
    pub audit_topic: String,
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
pub struct TickerConfig {
    pub enabled: bool,
    pub check_interval_ms: u64,
    pub max_catch_up_minutes: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxConfig {
    pub enabled: bool,
    pub health_topic: String,
    pub poll_interval_ms: u64,
}

impl Config {
    /// What the ticker writes and whose offsets its ticks carry.
    pub fn clock_topics(&self) -> ticker::ClockTopics {
        ticker::ClockTopics {
            clock: self.consumer.clock_topic.clone(),
            events: self.consumer.events_topic.clone(),
            audit: self.consumer.audit_topic.clone(),
            health: self.outbox.health_topic.clone(),
        }
    }
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

    pub fn slos(&self) -> slos::Slos {
        slos::Slos { specs: self.slos.clone(), burn: self.slo_alerts.clone() }
    }

    /// What types cannot check: every channel a route names is configured, and the SLOs make
    /// sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.slos().validate().map_err(ConfigError::Rule)?;
        self.alerts.quiet_hours.compile().map_err(ConfigError::Rule)?;
        self.triggers.load().map_err(|e| ConfigError::Rule(format!("triggers: {e}")))?;
        let routes = self.alerts.primary.iter().map(|c| ("alerts.primary", c));
        for (key, channel) in routes.chain(self.alerts.escalation.iter().map(|c| ("alerts.escalation", c))) {
            if !self.notify.channels.contains_key(channel) {
                return Err(ConfigError::Rule(format!(
                    "`{key}` names channel `{channel}`, which `[notify.channels]` does not configure"
                )));
            }
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

    /// The defaults pointed at `slice`, the ticker off (tests write their own ticks).
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config = Config::defaults();
        config.kafka = slice.kafka.clone();
        config.consumer.name = format!("{}health", slice.prefix);
        config.consumer.events_topic = slice.topics.events.clone();
        config.consumer.clock_topic = slice.topics.clock.clone();
        config.consumer.audit_topic = slice.topics.audit.clone();
        config.consumer.dlq_topic = slice.topics.dlq.clone();
        config.consumer.batch_wait_ms = 10;
        config.outbox.health_topic = slice.topics.health.clone();
        config.outbox.poll_interval_ms = 50;
        config.ticker.enabled = false;
        config.notify.poll_interval_ms = 100;
        config.registry.url = slice.registry_url.clone();
        config.postgres = slice.health_postgres.clone();
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        config
    }
}

/// Runs the evaluator (both consumers, the ticker and the outbox relay when enabled, and
/// `/metrics` + `/healthz`) until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
    ct_platform::postgres::migrate(&pool, "health", MIGRATIONS).await.context("migrating the health schema")?;
    let systems = config.catalogue.load().context("loading the system catalogue")?;
    let registry = RegistryClient::new(&config.registry.url);
    let outbox_schema_id = if config.outbox.enabled {
        let subject = ct_platform::registry::value_subject(&config.outbox.health_topic);
        Some(
            registry
                .register(&subject, ct_core::health::CHANGE_SCHEMA_JSON)
                .await
                .context("registering ct.v1.HealthChange")?,
        )
    } else {
        None
    };
    config.validate()?;
    let triggers = config.triggers.load().context("loading the triggers")?;
    let alerting = config.alerts.enabled.then(|| alerts::Alerting {
        config: config.alerts.clone(),
        quiet: config.alerts.quiet_hours.compile().ok().flatten(),
        deliver: config.notify.enabled,
        job_slas: triggers.triggers.iter().map(|(name, spec)| (name.clone(), spec.sla_s as i64)).collect(),
    });
    let evaluator = Arc::new(evaluator::Evaluator {
        systems,
        rules: config.rules,
        consumer: config.consumer.name.clone(),
        events_topic: config.consumer.events_topic.clone(),
        audit_topic: config.consumer.audit_topic.clone(),
        outbox_schema_id,
        alerting,
        slos: config.slos(),
        drift_target_branch: config.alerts.drift_target_branch.clone(),
    });
    ct_platform::metrics::serve_operations(config.http.listen, shutdown.clone())
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    let mut tasks = tokio::task::JoinSet::new();
    if config.retention.prune_interval_s > 0 {
        tasks.spawn(prune_periodically(pool.clone(), config.retention.clone(), shutdown.clone()));
    }
    if config.ticker.enabled {
        let ticker =
            ticker::Ticker::connect(&config.kafka, RegistryClient::new(&config.registry.url), &config.clock_topics())
                .await
                .context("starting the ticker")?;
        tasks.spawn(ticker::run(
            ticker,
            Duration::from_millis(config.ticker.check_interval_ms),
            config.ticker.max_catch_up_minutes,
            shutdown.clone(),
        ));
    }
    if config.notify.enabled {
        let notifier = notify::Notifier::new(pool.clone(), config.notify.clone())?;
        tasks.spawn(notify::run(notifier, shutdown.clone()));
    }
    if config.outbox.enabled {
        let relay = outbox::Relay::new(pool.clone(), &config.kafka, &config.outbox.health_topic)?;
        tasks.spawn(outbox::run(relay, Duration::from_millis(config.outbox.poll_interval_ms), shutdown.clone()));
    }
    let facts = facts::Facts {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        evaluator: Arc::clone(&evaluator),
    };
    let actions = alerts::Actions {
        pool: pool.clone(),
        registry: RegistryClient::new(&config.registry.url),
        evaluator: Arc::clone(&evaluator),
    };
    let clock = ct_platform::clock::ClockPipeline { pool: pool.clone(), registry, model: evaluator };
    let (events_settings, clock_settings, audit_settings) = (
        config.settings(&config.consumer.events_topic),
        config.settings(&config.consumer.clock_topic),
        config.settings(&config.consumer.audit_topic),
    );
    let (events, ticks, audits) = tokio::join!(
        consumer::run(&facts, &config.kafka, &events_settings, shutdown.clone()),
        consumer::run(&clock, &config.kafka, &clock_settings, shutdown.clone()),
        consumer::run(&actions, &config.kafka, &audit_settings, shutdown.clone()),
    );
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    events?;
    ticks?;
    audits?;
    Ok(())
}

/// The evaluator as a read model: `ct rebuild health`.
pub struct HealthModel(pub Config);

/// Tables compared by a rebuild: each with the columns that are decisions (every one, but the
/// delivery columns of `notifications`) and its order. The outbox is not state: a rebuild writes
/// none, and the live one empties as it is published.
const TABLES: &[(&str, &str, &str)] = &[
    ("statuses", "t", "system_id"),
    ("history", "t", "system_id, at"),
    ("clock", "t", "id"),
    ("last_heartbeats", "t", "system_id"),
    ("high_errors", "t", "system_id, event_id"),
    ("intake", "t", "system_id, minute, latency_s"),
    ("ignored", "t", "reason, system_id, source"),
    ("pending_ticks", "t", "clock_offset"),
    ("pending_facts", "t", "\"partition\", \"offset\", system_id"),
    ("alerts", "t", "id"),
    ("notifications", "(subject, kind, channel, at, title, body, held, summarised_at)", "subject, kind, channel, at"),
    ("pending_actions", "t", "\"partition\", \"offset\""),
    ("drift_deployments", "t", "repo, environment"),
    ("drift_branch_heads", "t", "repo, branch"),
    ("alert_actions", "t", "audit_id"),
    ("silences", "t", "id"),
    ("runs", "t", "system_id, run_id"),
    ("slo_minutes", "t", "slo, system_id, job, minute"),
    ("slo_sums", "t", "slo, system_id, job, seconds"),
    ("slo_status", "t", "slo, system_id, job"),
    ("pending_depths", "t", "\"partition\", \"offset\""),
    ("dlq_depth", "t", "id"),
];

pub async fn checksums(pool: &PgPool) -> Result<Checksums, sqlx::Error> {
    checksums_kept(pool, 0).await
}

/// The first instant of history kept, `history_days` back from the evaluator's clock.
async fn history_cutoff(
    pool: &PgPool,
    history_days: u32,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    if history_days == 0 {
        return Ok(None);
    }
    let minute: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT max(minute) FROM clock").fetch_one(pool).await?;
    Ok(minute.map(|m| m - chrono::Duration::days(i64::from(history_days))))
}

/// The checksums of what the systems tier keeps: history past it is out of the model even
/// before a prune deletes it, so a rebuild (which prunes nothing) compares equal.
pub async fn checksums_kept(pool: &PgPool, history_days: u32) -> Result<Checksums, sqlx::Error> {
    let cutoff = history_cutoff(pool, history_days).await?;
    let mut sums = Checksums::new();
    for (table, columns, order) in TABLES {
        let kept = if *table == "history" { "WHERE $1::timestamptz IS NULL OR t.at >= $1" } else { "" };
        let sql = format!("SELECT md5(string_agg(md5({columns}::text), '' ORDER BY {order})) FROM {table} t {kept}");
        let mut query = sqlx::query_scalar::<_, Option<String>>(&sql);
        if *table == "history" {
            query = query.bind(cutoff);
        }
        let sum = query.fetch_one(pool).await?;
        sums.insert((*table).to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
    }
    Ok(sums)
}

/// Deletes the status history past the systems tier every `prune_interval_s`.
async fn prune_periodically(pool: PgPool, retention: RetentionConfig, shutdown: CancellationToken) {
    let interval = Duration::from_secs(retention.prune_interval_s);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let pruned = async {
            let Some(cutoff) = history_cutoff(&pool, retention.history_days).await? else { return Ok(0) };
            sqlx::query("DELETE FROM history WHERE at < $1")
                .bind(cutoff)
                .execute(&pool)
                .await
                .map(|r| r.rows_affected())
        };
        match pruned.await {
            Ok(rows) => {
                metrics::counter!("ct_health_pruned_history_rows_total").increment(rows);
                if rows > 0 {
                    tracing::info!(rows, "Status history past its retention tier deleted.");
                }
            }
            Err::<_, sqlx::Error>(error) => {
                tracing::warn!(%error, "Pruning the history failed; tried again at the next interval.")
            }
        }
    }
}

impl ReadModel for HealthModel {
    fn name(&self) -> &'static str {
        "health"
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
        vec![
            self.0.consumer.events_topic.clone(),
            self.0.consumer.clock_topic.clone(),
            self.0.consumer.audit_topic.clone(),
        ]
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(ct_platform::postgres::migrate(pool, "health", MIGRATIONS))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(checksums_kept(pool, self.0.retention.history_days))
    }

    /// Notifications the history decided were sent (or given up) before the backup: a restored
    /// evaluator must not page anyone about them again.
    fn settle_history<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
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
        config.ticker.enabled = false;
        config.outbox.enabled = false;
        config.retention.prune_interval_s = 0;
        // The copy decides every notification again and sends none.
        config.notify.enabled = false;
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
    fn the_defaults_load_and_name_the_topics_of_design_section_5() {
        let config = Config::defaults();
        assert_eq!(config.consumer.events_topic, "ct.events.v1");
        assert_eq!(config.consumer.clock_topic, "ct.clock.v1");
        assert_eq!(config.outbox.health_topic, "ct.health.v1");
        assert_eq!(config.rules, Rules::default(), "the commented defaults are the seeds' thresholds");
        assert_eq!(config.postgres.schema, "ct_health");
        assert_eq!(config.slos, ct_core::slo::default_slos(), "the commented defaults are the seeds' objectives");
        assert_eq!(config.slo_alerts, ct_core::slo::BurnPolicy::default());
    }
}
