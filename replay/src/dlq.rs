//! `ct dlq`: list, show, replay and skip dead letters.
//!
//! Items are read from `dlq_items` (the categoriser's read model). Changing one never touches
//! Postgres directly: a replay hands the record back to its stage through the retry topic, and
//! every replay and skip writes an audit record to `ct.audit.v1`, from which the categoriser
//! updates the item. So the log stays the only source of truth, and the audit trail is on it.

use std::{collections::BTreeMap, num::NonZeroU32, time::Duration};

use anyhow::Context as _;
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
pub use ct_core::dlq::Plan;
use ct_core::dlq::{Action, Audit, Category, Outcome, PlanItem, encode_audit, header};
use ct_dlq_categoriser::Config;
use ct_platform::registry::{RegistryClient, value_subject};
use governor::{Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Row, postgres::PgRow};

/// Which items a command applies to. Empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Vec<String>,
    pub category: Option<Category>,
    pub stage: Option<String>,
    pub source: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `parked`, `replayed`, `skipped`; `None` is any state.
    pub state: Option<String>,
    pub limit: Option<i64>,
}

/// One item as listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub id: String,
    pub category: String,
    pub rule: String,
    pub stage: String,
    pub step: String,
    pub error_class: String,
    pub error: String,
    pub attempts: i32,
    pub first_failure_at: String,
    pub last_failure_at: String,
    pub source: Option<String>,
    pub state: String,
    pub state_reason: Option<String>,
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub value: Option<Vec<u8>>,
    #[serde(skip)]
    pub headers: Value,
}

fn time(row: &PgRow, column: &str) -> String {
    row.get::<DateTime<Utc>, _>(column).to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Item {
    fn from_row(row: &PgRow) -> Item {
        Item {
            id: row.get("id"),
            category: row.get("category"),
            rule: row.get("rule"),
            stage: row.get("stage"),
            step: row.get("step"),
            error_class: row.get("error_class"),
            error: row.get("error_message"),
            attempts: row.get("attempts"),
            first_failure_at: time(row, "first_failure_at"),
            last_failure_at: time(row, "last_failure_at"),
            source: row.get("source"),
            state: row.get("state"),
            state_reason: row.get("state_reason"),
            key: row.get("record_key"),
            value: row.get("record_value"),
            headers: row.get("headers"),
        }
    }
}

/// What the CLI needs: the categoriser's configuration (topics, registry, Postgres schema).
pub struct Dlq {
    pub config: Config,
    pub pool: PgPool,
    pub registry: RegistryClient,
}

impl Dlq {
    pub async fn connect(config: Config) -> anyhow::Result<Dlq> {
        let pool = ct_platform::postgres::connect(&config.postgres).await.with_context(|| {
            format!("connecting to Postgres at {}", ct_platform::config::redacted_url(&config.postgres.url))
        })?;
        let registry = RegistryClient::new(&config.registry.url);
        Ok(Dlq { config, pool, registry })
    }

    /// The selected items, oldest failure first (the order a replay uses).
    pub async fn select(&self, selection: &Selection) -> anyhow::Result<Vec<Item>> {
        let rows = sqlx::query(
            "SELECT * FROM dlq_items
             WHERE (cardinality($1::text[]) = 0 OR id = ANY($1))
               AND ($2::text IS NULL OR category = $2) AND ($3::text IS NULL OR stage = $3)
               AND ($4::text IS NULL OR source = $4) AND ($5::text IS NULL OR state = $5)
               AND ($6::timestamptz IS NULL OR last_failure_at >= $6) AND ($7::timestamptz IS NULL OR last_failure_at < $7)
             ORDER BY last_failure_at, id
             LIMIT $8",
        )
        .bind(&selection.ids)
        .bind(selection.category.map(Category::as_str))
        .bind(&selection.stage)
        .bind(&selection.source)
        .bind(&selection.state)
        .bind(selection.from)
        .bind(selection.to)
        .bind(selection.limit.unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => anyhow::anyhow!(
                "no dlq_items table in schema `{}`: is ct-dlq-categoriser running against this database?",
                self.config.postgres.schema
            ),
            _ => anyhow::Error::new(e).context("reading dlq_items"),
        })?;
        let found: Vec<Item> = rows.iter().map(Item::from_row).collect();
        if let Some(missing) = selection.ids.iter().find(|id| !found.iter().any(|item| &item.id == *id)) {
            anyhow::bail!("no dead letter `{missing}` matches the selection");
        }
        Ok(found)
    }

    /// One item in full: context, headers, the record decoded with the current schema (or why it
    /// cannot be), and its audit trail.
    pub async fn show(&self, id: &str) -> anyhow::Result<Value> {
        let selection = Selection { ids: vec![id.to_owned()], ..Selection::default() };
        let item = self.select(&selection).await?.remove(0);
        let decoded = match item.value.as_deref() {
            None => json!({"error": "the record has no value"}),
            Some(value) => match self.registry.decode_event(value).await {
                Ok(event) => json!({"event": event.to_json()}),
                Err(error) => json!({"error": error.to_string()}),
            },
        };
        let audit: Vec<Value> = sqlx::query(
            "SELECT action, outcome, actor, at, reason, detail FROM dlq_audit WHERE item_id = $1 ORDER BY at, audit_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            json!({"action": row.get::<String, _>("action"), "outcome": row.get::<String, _>("outcome"),
                   "actor": row.get::<String, _>("actor"), "at": time(row, "at"),
                   "reason": row.get::<String, _>("reason"), "detail": row.get::<Option<String>, _>("detail")})
        })
        .collect();
        let mut out = serde_json::to_value(&item)?;
        out["headers"] = item.headers.clone();
        out["keyBase64"] = json!(item.key.as_ref().map(|k| STANDARD.encode(k)));
        out["valueBase64"] = json!(item.value.as_ref().map(|v| STANDARD.encode(v)));
        out["decoded"] = decoded;
        out["audit"] = Value::Array(audit);
        Ok(out)
    }
}

/// What a replay or skip of `items` would do, printed by `--dry-run` and before asking.
pub fn plan(dlq: &Dlq, action: Action, items: &[Item], dry_run: bool) -> Plan {
    let items = items.iter().map(|i| PlanItem { id: &i.id, category: &i.category, stage: &i.stage });
    ct_core::dlq::plan(action, items, &dlq.config.topics.retry, &dlq.config.topics.audit, dry_run)
}

/// The outcome of a replay or skip.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub replayed: usize,
    pub reparked: usize,
    pub skipped: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// id -> why the record failed re-validation.
    pub reparked_items: BTreeMap<String, String>,
}

pub struct Change<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    /// Items per second at most.
    pub rate: NonZeroU32,
    pub show_progress: bool,
}

struct Writer {
    producer: FutureProducer,
    audit_schema_id: u32,
    audit_topic: String,
}

impl Writer {
    async fn new(dlq: &Dlq) -> anyhow::Result<Writer> {
        let audit_topic = dlq.config.topics.audit.clone();
        let audit_schema_id = dlq
            .registry
            .register(&value_subject(&audit_topic), ct_core::dlq::AUDIT_SCHEMA_JSON)
            .await
            .with_context(|| format!("registering the audit schema at {}", dlq.registry.base_url()))?;
        let producer = ct_platform::kafka::idempotent_producer(&dlq.config.kafka, Duration::from_secs(30))?;
        Ok(Writer { producer, audit_schema_id, audit_topic })
    }

    async fn audit(&self, audit: &Audit) -> anyhow::Result<()> {
        let mut value = Vec::new();
        ct_core::avro::wire::write_header(self.audit_schema_id, &mut value);
        value.extend(encode_audit(audit)?);
        let record = FutureRecord::to(&self.audit_topic).key(&audit.item_id).payload(&value);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .context("writing the audit record")?;
        Ok(())
    }

    /// Hands the item's record back to its stage.
    async fn hand_back(&self, topic: &str, item: &Item) -> anyhow::Result<()> {
        let attempt = item.attempts.to_string();
        let mut headers = OwnedHeaders::new();
        if let Value::Object(stored) = &item.headers {
            for (key, value) in stored {
                if !key.starts_with("ct-retry-") {
                    headers = headers.insert(Header { key, value: value.as_str() });
                }
            }
        }
        for (key, value) in [
            (header::RETRY_STAGE, item.stage.as_str()),
            (header::RETRY_ATTEMPT, &attempt),
            (header::RETRY_ORIGIN, "replay"),
        ] {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let mut record = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &item.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &item.value {
            record = record.payload(value.as_slice());
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .context("writing to the retry topic")?;
        Ok(())
    }
}

fn progress_bar(items: usize, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(items as u64),
        if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}") {
        bar.set_style(style);
    }
    bar
}

fn audit_of(item: &Item, action: Action, outcome: Outcome, change: &Change<'_>, detail: Option<String>) -> Audit {
    Audit {
        audit_id: uuid::Uuid::now_v7().to_string(),
        item_id: item.id.clone(),
        action,
        outcome,
        actor: change.actor.to_owned(),
        at: Utc::now(),
        reason: change.reason.to_owned(),
        detail,
        attempt: item.attempts,
    }
}

/// Why `item` cannot go back to its stage as it is, if it cannot: the record is re-validated
/// against the current schema, as the stage's own decode would.
async fn refusal(dlq: &Dlq, item: &Item) -> Option<String> {
    if item.stage == "unknown" {
        return Some("the dead letter names no stage to hand it back to".to_owned());
    }
    match item.value.as_deref() {
        None => Some("the record has no value".to_owned()),
        Some(value) => dlq.registry.decode_event(value).await.err().map(|e| e.to_string()),
    }
}

/// Replays or skips `items`, at most `change.rate` per second, each with its audit record.
///
/// A replay hands each valid record back to its stage and re-parks the others (the reason goes
/// into the audit); a skip marks each item skipped (a tombstone with the reason).
pub async fn apply(dlq: &Dlq, action: Action, items: &[Item], change: &Change<'_>) -> anyhow::Result<Report> {
    let writer = Writer::new(dlq).await?;
    let limiter = RateLimiter::direct(Quota::per_second(change.rate).allow_burst(NonZeroU32::MIN));
    let bar = progress_bar(items.len(), change.show_progress);
    let started = std::time::Instant::now();
    let mut report = Report::default();
    for item in items {
        limiter.until_ready().await;
        let (outcome, detail) = match action {
            Action::Skip => (Outcome::Skipped, None),
            Action::Replay => match refusal(dlq, item).await {
                None => {
                    writer.hand_back(&dlq.config.topics.retry, item).await?;
                    (Outcome::Replayed, None)
                }
                Some(reason) => (Outcome::Reparked, Some(reason)),
            },
        };
        writer.audit(&audit_of(item, action, outcome, change, detail.clone())).await?;
        match outcome {
            Outcome::Replayed => report.replayed += 1,
            Outcome::Skipped => report.skipped += 1,
            Outcome::Reparked => {
                report.reparked += 1;
                report.reparked_items.insert(item.id.clone(), detail.unwrap_or_default());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    finish(&mut report, started);
    Ok(report)
}

fn finish(report: &mut Report, started: std::time::Instant) {
    report.seconds = started.elapsed().as_secs_f64();
    let done = report.replayed + report.reparked + report.skipped;
    report.per_second = if report.seconds > 0.0 { done as f64 / report.seconds } else { 0.0 };
}
