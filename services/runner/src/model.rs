//! The `runs` read model: `ct.runs.v1` folded into `trigger_runs` (one row per run) and
//! `run_transitions` (every record, applied or ignored and why), in one transaction with the
//! progress. The fold is `ct_core::runs::fold`; records of a run share a partition (keyed by run
//! id), so log order is the order they are folded in, live and in a rebuild.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ct_core::runs::{self, Run, RunRecord, RunStatus};
use ct_platform::{
    consumer::{Advance, BoxFuture, Coordinates, Incoming, Pipeline, ProcessError},
    postgres::Migration,
    readmodel::{Checksums, Copy, ReadModel},
    registry::RegistryClient,
};
use sqlx::{PgPool, Postgres, Row, Transaction, postgres::PgRow};
use tokio_util::sync::CancellationToken;

use crate::Config;

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 0, name: "consumer progress", sql: ct_platform::postgres::PROGRESS_TABLE_SQL },
    Migration { version: 1, name: "runs", sql: include_str!("../migrations/0001_runs.sql") },
    Migration { version: 2, name: "callbacks", sql: include_str!("../migrations/0002_callbacks.sql") },
    Migration {
        version: 3,
        name: "progress and lineage",
        sql: include_str!("../migrations/0003_progress_and_lineage.sql"),
    },
    Migration { version: 4, name: "continuations", sql: include_str!("../migrations/0004_continuations.sql") },
];

/// Postgres refuses a notification payload of 8,000 bytes or more.
const MAX_NOTIFY_BYTES: usize = 7_900;
/// The payload that says "look at every run" (a batch changed too many to list).
pub const EVERY_RUN: &str = "*";

/// The channel on which each committed batch names the runs it changed (comma-separated).
pub fn channel(schema: &str) -> String {
    format!("{schema}.runs")
}

pub const RUN_COLUMNS: &str = "run_id, trigger, status, initiator, reason, inputs, request_hash, correlation_id, attempt, \
     requested_at, decided_by, decided_at, started_at, completed_at, cancel_requested_by, sla_breached, error_class, \
     error, result, on_complete, on_fail, callback_delivered_at, progress, awaiting_continue_since";

/// A run as its row stores it.
pub fn run_from_row(row: &PgRow) -> Run {
    let status: String = row.get("status");
    Run {
        run_id: row.get("run_id"),
        trigger: row.get("trigger"),
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        initiator: row.get("initiator"),
        reason: row.get("reason"),
        inputs: row.get("inputs"),
        request_hash: row.get("request_hash"),
        correlation_id: row.get("correlation_id"),
        attempt: row.get("attempt"),
        requested_at: row.get::<DateTime<Utc>, _>("requested_at"),
        decided_by: row.get("decided_by"),
        decided_at: row.get("decided_at"),
        started_at: row.get("started_at"),
        completed_at: row.get("completed_at"),
        cancel_requested_by: row.get("cancel_requested_by"),
        sla_breached: row.get("sla_breached"),
        error_class: row.get("error_class"),
        error: row.get("error"),
        result: row.get("result"),
        on_complete: row.get("on_complete"),
        on_fail: row.get("on_fail"),
        callback_delivered_at: row.get("callback_delivered_at"),
        progress: row.get("progress"),
        awaiting_continue_since: row.get("awaiting_continue_since"),
    }
}

/// The run `run_id` as the model shows it now.
pub async fn load(pool: &PgPool, run_id: &str) -> Result<Option<Run>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM trigger_runs WHERE run_id = $1"))
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(run_from_row))
}

pub struct RunsPipeline {
    pub pool: PgPool,
    pub registry: RegistryClient,
    pub consumer: String,
}

/// A record of `ct.runs.v1`; another record type there (a newer writer's) is skipped.
pub type Item = Option<RunRecord>;

impl Pipeline for RunsPipeline {
    type Item = Item;

    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Item, ProcessError>> {
        Box::pin(async move { self.registry.decode_record_with(record, runs::decode_record).await })
    }

    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
        Box::pin(async move { Ok(ct_platform::postgres::load_progress(&self.pool, &self.consumer, topic).await?) })
    }

    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Item)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            let mut tx = ct_platform::postgres::begin_batch(&self.pool).await?;
            let mut runs: HashMap<String, Option<Run>> = HashMap::new();
            for (at, record) in items {
                let Some(record) = record else { continue };
                if !runs.contains_key(&record.run_id) {
                    let row =
                        sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM trigger_runs WHERE run_id = $1 FOR UPDATE"))
                            .bind(&record.run_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    runs.insert(record.run_id.clone(), row.as_ref().map(run_from_row));
                }
                let current = runs.get_mut(&record.run_id).expect("inserted above");
                let ignored = match runs::fold(current.as_ref(), record) {
                    Ok(next) => {
                        *current = Some(next);
                        None
                    }
                    Err(runs::Ignored(why)) => Some(why),
                };
                if ignored.is_none()
                    && let Some(report) = record.report.as_deref().and_then(|r| serde_json::from_str(r).ok())
                {
                    apply_lineage(&mut tx, record, &report).await?;
                }
                insert_transition(&mut tx, at, record, ignored.as_deref()).await?;
            }
            let changed: Vec<&str> = runs.keys().map(String::as_str).collect();
            let payload = if changed.iter().map(|id| id.len() + 1).sum::<usize>() < MAX_NOTIFY_BYTES {
                changed.join(",")
            } else {
                EVERY_RUN.to_owned()
            };
            for run in runs.values().flatten() {
                upsert(&mut tx, run).await?;
            }
            // Delivered at commit: the executors waiting for these runs look again.
            sqlx::query("SELECT pg_notify(current_schema() || '.runs', $1)").bind(&payload).execute(&mut *tx).await?;
            ct_platform::postgres::advance_progress(&mut tx, &self.consumer, topic, progress).await?;
            Ok(tx.commit().await?)
        })
    }
}

/// The edges a report adds and withdraws; adds and removals keep the latest record time each,
/// so any order of application gives the same rows.
async fn apply_lineage(
    tx: &mut Transaction<'static, Postgres>,
    record: &RunRecord,
    report: &runs::Report,
) -> Result<(), sqlx::Error> {
    for (input, output) in report.edges() {
        sqlx::query(
            "INSERT INTO lineage_edges (job, source_namespace, source_name, target_namespace, target_name,
                 first_seen_at, added_at, last_run_id)
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7)
             ON CONFLICT (job, source_namespace, source_name, target_namespace, target_name) DO UPDATE SET
                 first_seen_at = LEAST(lineage_edges.first_seen_at, EXCLUDED.first_seen_at),
                 last_run_id = CASE WHEN lineage_edges.added_at IS NULL
                                      OR (EXCLUDED.added_at, EXCLUDED.last_run_id) > (lineage_edges.added_at, lineage_edges.last_run_id)
                                    THEN EXCLUDED.last_run_id ELSE lineage_edges.last_run_id END,
                 added_at = GREATEST(lineage_edges.added_at, EXCLUDED.added_at)",
        )
        .bind(&record.trigger)
        .bind(&input.namespace)
        .bind(&input.name)
        .bind(&output.namespace)
        .bind(&output.name)
        .bind(record.at)
        .bind(&record.run_id)
        .execute(&mut **tx)
        .await?;
    }
    for removed in &report.removed {
        sqlx::query(
            "INSERT INTO lineage_edges (job, source_namespace, source_name, target_namespace, target_name, removed_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (job, source_namespace, source_name, target_namespace, target_name) DO UPDATE SET
                 removed_at = GREATEST(lineage_edges.removed_at, EXCLUDED.removed_at)",
        )
        .bind(&record.trigger)
        .bind(&removed.input.namespace)
        .bind(&removed.input.name)
        .bind(&removed.output.namespace)
        .bind(&removed.output.name)
        .bind(record.at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_transition(
    tx: &mut Transaction<'static, Postgres>,
    at: &Coordinates,
    record: &RunRecord,
    ignored: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO run_transitions (\"partition\", \"offset\", run_id, kind, at, actor, attempt, reason, error_class,
             http_status, duration_ms, ignored_because)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(at.partition)
    .bind(at.offset)
    .bind(&record.run_id)
    .bind(record.kind.as_str())
    .bind(record.at)
    .bind(&record.actor)
    .bind(record.attempt)
    .bind(&record.reason)
    .bind(&record.error_class)
    .bind(record.http_status)
    .bind(record.duration_ms)
    .bind(ignored)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert(tx: &mut Transaction<'static, Postgres>, run: &Run) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO trigger_runs ({RUN_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
                 $23, $24)
         ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, attempt = EXCLUDED.attempt,
             decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, started_at = EXCLUDED.started_at,
             completed_at = EXCLUDED.completed_at, cancel_requested_by = EXCLUDED.cancel_requested_by,
             sla_breached = EXCLUDED.sla_breached, error_class = EXCLUDED.error_class, error = EXCLUDED.error,
             result = EXCLUDED.result, callback_delivered_at = EXCLUDED.callback_delivered_at,
             progress = EXCLUDED.progress, awaiting_continue_since = EXCLUDED.awaiting_continue_since"
    ))
    .bind(&run.run_id)
    .bind(&run.trigger)
    .bind(run.status.as_str())
    .bind(&run.initiator)
    .bind(&run.reason)
    .bind(&run.inputs)
    .bind(&run.request_hash)
    .bind(&run.correlation_id)
    .bind(run.attempt)
    .bind(run.requested_at)
    .bind(&run.decided_by)
    .bind(run.decided_at)
    .bind(run.started_at)
    .bind(run.completed_at)
    .bind(&run.cancel_requested_by)
    .bind(run.sla_breached)
    .bind(&run.error_class)
    .bind(&run.error)
    .bind(&run.result)
    .bind(&run.on_complete)
    .bind(&run.on_fail)
    .bind(run.callback_delivered_at)
    .bind(&run.progress)
    .bind(run.awaiting_continue_since)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Runs the model alone (no executor), for a rebuild's copy.
async fn serve(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&config.postgres).await?;
    ct_platform::postgres::migrate(&pool, "runs", MIGRATIONS).await?;
    let pipeline = RunsPipeline {
        pool,
        registry: RegistryClient::new(&config.registry.url),
        consumer: config.consumer.name.clone(),
    };
    Ok(ct_platform::consumer::run(&pipeline, &config.kafka, &config.settings(), shutdown).await?)
}

/// `ct rebuild runs`.
pub struct RunsModel(pub Config);

impl ReadModel for RunsModel {
    fn name(&self) -> &'static str {
        "runs"
    }

    fn postgres(&self) -> &ct_platform::config::PostgresConfig {
        &self.0.postgres
    }

    fn kafka(&self) -> &ct_platform::config::KafkaConfig {
        &self.0.kafka
    }

    fn consumer(&self) -> &str {
        &self.0.consumer.name
    }

    fn topics(&self) -> Vec<String> {
        vec![self.0.consumer.topic.clone()]
    }

    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(ct_platform::postgres::migrate(pool, "runs", MIGRATIONS))
    }

    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>> {
        Box::pin(async move {
            let mut sums = Checksums::new();
            for (table, order) in [
                ("trigger_runs", "run_id"),
                ("run_transitions", "\"partition\", \"offset\""),
                ("lineage_edges", "job, source_namespace, source_name, target_namespace, target_name"),
            ] {
                let sum: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT md5(string_agg(md5(t::text), '' ORDER BY {order})) FROM {table} t"
                ))
                .fetch_one(pool)
                .await?;
                sums.insert(table.to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
            }
            Ok(sums)
        })
    }

    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>> {
        let mut config = self.0.clone();
        config.consumer.name = copy.consumer;
        config.consumer.horizon = copy.horizon;
        config.postgres.schema = copy.schema;
        Box::pin(async move { serve(config, stop).await.map_err(|e| format!("{e:#}")) })
    }
}
