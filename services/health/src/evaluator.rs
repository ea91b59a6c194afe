//! The clock side of the evaluator: ticks wait in `pending_ticks` until the events they name are
//! stored; then, in clock order, each tick folds in exactly the facts below its offsets and
//! evaluates every catalogued system at its minute (`ct_core::health::evaluate`). Both consumers
//! call [`Evaluator::advance`] at the end of their batch transaction, under one lock, so whichever
//! commits last evaluates what became ready. The state after any batch is a function of the two
//! stored progresses only: live and rebuilt statuses, reasons and history are the same bytes.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use ct_core::health::{self, Change, Facts, Intake, Rules, Status};
use ct_platform::{
    catalogue::Systems,
    clock::covered,
    consumer::{Advance, BoxFuture, ProcessError},
    postgres::classify,
};
use sqlx::{PgConnection, PgPool};

use crate::slos::{Completed, Slos};

/// What evaluating needs, shared by both consumers.
pub struct Evaluator {
    pub systems: Systems,
    pub rules: Rules,
    /// The consumer name (progress key of both topics).
    pub consumer: String,
    pub events_topic: String,
    pub audit_topic: String,
    /// The registry id of `ct.v1.HealthChange` when changes go to the outbox (never in a rebuild).
    pub outbox_schema_id: Option<u32>,
    /// Alerts, decided at each tick after the statuses.
    pub alerting: Option<crate::alerts::Alerting>,
    pub slos: Slos,
    /// The branch whose head deployments should run (the drift rule).
    pub drift_target_branch: String,
}

const WINDOW: Duration = Duration::hours(24);

/// A row of `pending_ticks`: clock offset, minute, events end offsets, written at, audit end offsets.
type PendingTick = (i64, DateTime<Utc>, Vec<i64>, DateTime<Utc>, Vec<i64>);

impl Evaluator {
    /// The stored progress of `topic`: every consumer of the model shares one consumer name.
    pub async fn stored_progress(&self, pool: &PgPool, topic: &str) -> Result<HashMap<i32, i64>, ProcessError> {
        ct_platform::postgres::load_progress(pool, &self.consumer, topic).await.map_err(classify)
    }

    /// Ends the batch transaction of any of the model's consumers (`ct_platform::clock::finish`).
    pub async fn finish(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        topic: &str,
        progress: &[Advance],
    ) -> Result<(), ProcessError> {
        ct_platform::clock::finish(self, tx, topic, progress).await
    }

    /// Evaluates, in clock order, every pending tick whose events are stored. Runs inside a batch
    /// transaction, after its progress was advanced.
    pub async fn apply_ready_ticks(&self, tx: &mut PgConnection) -> Result<u32, sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ct-clock'))")
            .execute(&mut *tx)
            .await?;
        let mut last: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT minute FROM clock").fetch_optional(&mut *tx).await?;
        let progress = |topic: &str| {
            sqlx::query_as::<_, (i32, i64)>(
                "SELECT \"partition\", next_offset FROM consumer_progress WHERE consumer = $1 AND topic = $2",
            )
            .bind(self.consumer.clone())
            .bind(topic.to_owned())
        };
        let events_progress: HashMap<i32, i64> =
            progress(&self.events_topic).fetch_all(&mut *tx).await?.into_iter().collect();
        let audit_progress: HashMap<i32, i64> =
            progress(&self.audit_topic).fetch_all(&mut *tx).await?.into_iter().collect();
        let mut evaluated = 0;
        loop {
            let tick: Option<PendingTick> = sqlx::query_as(
                "SELECT clock_offset, minute, events_end, written_at, audit_end FROM pending_ticks
                 ORDER BY clock_offset LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((clock_offset, minute, events_end, written_at, audit_end)) = tick else { break };
            // A minute already evaluated (a second ticker, a restart): time does not go back.
            if last.is_none_or(|last| minute > last) {
                if !covered(&events_end, &events_progress) || !covered(&audit_end, &audit_progress) {
                    break;
                }
                let completed = self.fold(tx, minute, &events_end).await?;
                if let Some(alerting) = &self.alerting {
                    alerting.apply_actions(tx, minute, &audit_end).await?;
                }
                self.evaluate(tx, minute, last, &completed).await?;
                sqlx::query(
                    "INSERT INTO clock (minute, ticks) VALUES ($1, 1)
                     ON CONFLICT (id) DO UPDATE SET minute = EXCLUDED.minute, ticks = clock.ticks + 1",
                )
                .bind(minute)
                .execute(&mut *tx)
                .await?;
                last = Some(minute);
                evaluated += 1;
                metrics::counter!("ct_health_ticks_evaluated_total").increment(1);
                let delay = (Utc::now() - written_at).to_std().unwrap_or_default();
                metrics::histogram!("ct_health_tick_delay_seconds").record(delay.as_secs_f64());
            }
            sqlx::query("DELETE FROM pending_ticks WHERE clock_offset = $1")
                .bind(clock_offset)
                .execute(&mut *tx)
                .await?;
        }
        Ok(evaluated)
    }

    /// Moves the facts below the tick's offsets into the windows the rules read; answers the runs
    /// whose first completion it folded.
    async fn fold(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        events_end: &[i64],
    ) -> Result<Vec<Completed>, sqlx::Error> {
        let completed: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "WITH folded AS (
                 DELETE FROM pending_facts f
                 USING UNNEST($2::bigint[]) WITH ORDINALITY AS b(end_offset, n)
                 WHERE f.\"partition\" = b.n - 1 AND f.\"offset\" < b.end_offset
                 RETURNING f.*
             ),
             beats AS (
                 INSERT INTO last_heartbeats (system_id, ts)
                 SELECT system_id, max(ts) FROM folded WHERE heartbeat GROUP BY system_id
                 ON CONFLICT (system_id) DO UPDATE SET ts = GREATEST(last_heartbeats.ts, EXCLUDED.ts)
             ),
             errors AS (
                 INSERT INTO high_errors (system_id, event_id, ts)
                 SELECT DISTINCT ON (system_id, event_id) system_id, event_id, ts FROM folded
                 WHERE high_error AND ts > $1 - interval '24 hours'
                 ORDER BY system_id, event_id, \"partition\", \"offset\"
                 ON CONFLICT DO NOTHING
             ),
             latencies AS (
                 INSERT INTO intake (system_id, minute, latency_s, events)
                 SELECT system_id, $1, latency_s, count(*) FROM folded GROUP BY system_id, latency_s
                 ON CONFLICT (system_id, minute, latency_s) DO UPDATE SET events = intake.events + EXCLUDED.events
             ),
             -- The latest deployment per repository and environment, and head per branch, by ts.
             heads AS (
                 INSERT INTO drift_branch_heads (repo, branch, commit_sha, at)
                 SELECT DISTINCT ON (repo, scope) repo, scope, commit_sha, ts FROM folded WHERE version_kind = 'head'
                 ORDER BY repo, scope, ts DESC, \"partition\" DESC, \"offset\" DESC
                 ON CONFLICT (repo, branch) DO UPDATE SET commit_sha = EXCLUDED.commit_sha, at = EXCLUDED.at
                 WHERE EXCLUDED.at >= drift_branch_heads.at
             ),
             deploys AS (
                 INSERT INTO drift_deployments (repo, environment, system_id, deployed_commit, deployed_at)
                 SELECT DISTINCT ON (repo, scope) repo, scope, system_id, commit_sha, ts FROM folded
                 WHERE version_kind = 'deploy'
                 ORDER BY repo, scope, ts DESC, \"partition\" DESC, \"offset\" DESC
                 ON CONFLICT (repo, environment) DO UPDATE SET system_id = EXCLUDED.system_id,
                     deployed_commit = EXCLUDED.deployed_commit, deployed_at = EXCLUDED.deployed_at
                 WHERE EXCLUDED.deployed_at >= drift_deployments.deployed_at
             ),
             -- The first completion of a run counts (a duplicate report of it does not): a run
             -- already completed is not updated, so only new completions come back.
             runs_seen AS (
                 INSERT INTO runs (system_id, run_id, job, started_at, completed_at, status)
                 SELECT system_id, run_id,
                        min(job),
                        min(ts) FILTER (WHERE run_status = 'started'),
                        (array_agg(ts ORDER BY \"partition\", \"offset\") FILTER (WHERE run_status <> 'started'))[1],
                        (array_agg(run_status ORDER BY \"partition\", \"offset\") FILTER (WHERE run_status <> 'started'))[1]
                 FROM folded WHERE run_id IS NOT NULL GROUP BY system_id, run_id
                 ON CONFLICT (system_id, run_id) DO UPDATE SET
                     job = COALESCE(runs.job, EXCLUDED.job),
                     started_at = COALESCE(runs.started_at, EXCLUDED.started_at),
                     completed_at = EXCLUDED.completed_at,
                     status = EXCLUDED.status
                 WHERE runs.completed_at IS NULL
                 RETURNING system_id, job, status, completed_at
             )
             SELECT system_id, job, status FROM runs_seen WHERE completed_at IS NOT NULL
             ORDER BY system_id, job, status",
        )
        .bind(minute)
        .bind(events_end)
        .fetch_all(&mut *tx)
        .await?;
        // Drift, after this fold's deployments and heads: since the later of the two that first
        // made them differ, for as long as they keep differing.
        sqlx::query(
            "UPDATE drift_deployments d SET head_commit = h.commit_sha, head_at = h.at,
                 drift_since = CASE WHEN h.commit_sha IS NULL OR h.commit_sha = d.deployed_commit THEN NULL
                                    ELSE COALESCE(d.drift_since, GREATEST(d.deployed_at, h.at)) END
             FROM (SELECT x.repo, x.environment, b.commit_sha, b.at FROM drift_deployments x
                   LEFT JOIN drift_branch_heads b ON b.repo = x.repo AND b.branch = $1) h
             WHERE h.repo = d.repo AND h.environment = d.environment
               AND (d.head_commit IS DISTINCT FROM h.commit_sha OR d.head_at IS DISTINCT FROM h.at
                    OR (d.drift_since IS NULL) <> (h.commit_sha IS NULL OR h.commit_sha = d.deployed_commit))",
        )
        .bind(&self.drift_target_branch)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM high_errors WHERE ts <= $1").bind(minute - WINDOW).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM intake WHERE minute <= $1").bind(minute - WINDOW).execute(&mut *tx).await?;
        let longest = self.slos.windows().last().copied().unwrap_or(0).max(WINDOW.num_seconds());
        sqlx::query("DELETE FROM runs WHERE completed_at <= $1")
            .bind(minute - Duration::seconds(longest))
            .execute(&mut *tx)
            .await?;
        Ok(completed.into_iter().map(|(system_id, job, status)| Completed { system_id, job, status }).collect())
    }

    /// Every catalogued system at `minute`; a change of status is a history row and, when the
    /// outbox is on, a `ct.health.v1` record to produce.
    async fn evaluate(
        &self,
        tx: &mut PgConnection,
        minute: DateTime<Utc>,
        last: Option<DateTime<Utc>>,
        completed: &[Completed],
    ) -> Result<(), sqlx::Error> {
        let beats: HashMap<String, DateTime<Utc>> = sqlx::query_as("SELECT system_id, ts FROM last_heartbeats")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let errors: HashMap<String, i64> =
            sqlx::query_as("SELECT system_id, count(*) FROM high_errors WHERE ts > $1 AND ts <= $2 GROUP BY system_id")
                .bind(minute - WINDOW)
                .bind(minute)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let mut latencies: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT system_id, latency_s, sum(events)::bigint FROM intake WHERE minute > $1 AND minute <= $2
             GROUP BY system_id, latency_s ORDER BY system_id, latency_s",
        )
        .bind(minute - WINDOW)
        .bind(minute)
        .fetch_all(&mut *tx)
        .await?;
        for (system_id, latency_s, events) in rows {
            latencies.entry(system_id).or_default().push((latency_s, events.max(0) as u64));
        }
        let previous: HashMap<String, String> =
            sqlx::query_as("SELECT system_id, status FROM statuses").fetch_all(&mut *tx).await?.into_iter().collect();
        let catalogue = &self.systems.catalogue;
        let mut facts: Vec<Facts> = catalogue
            .systems
            .iter()
            .map(|spec| Facts {
                last_heartbeat: beats.get(&spec.id).copied(),
                high_errors_24h: errors.get(&spec.id).copied().unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
                intake: latencies.get(&spec.id).and_then(|h| Intake::from_histogram(h)),
                missed_slos: Vec::new(),
            })
            .collect();

        // SLOs first: a missed objective is one of the status rules.
        let judged: BTreeMap<String, bool> = catalogue
            .systems
            .iter()
            .zip(&facts)
            .filter(|(spec, _)| health::heartbeat_judges(spec, &self.systems.calendar, minute))
            .filter_map(|(spec, facts)| {
                let verdict = health::heartbeat_verdict(spec, &self.systems.calendar, facts, minute);
                (verdict.status != Status::Unknown).then(|| (spec.id.clone(), verdict.status == Status::Green))
            })
            .collect();
        let tick_intake: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT system_id, latency_s, events FROM intake WHERE minute = $1 ORDER BY 1, 2")
                .bind(minute)
                .fetch_all(&mut *tx)
                .await?;
        let mut buckets = self.slos.event_buckets(catalogue, &tick_intake, completed);
        buckets.extend(self.slos.heartbeat_buckets(catalogue, &judged));
        self.slos.record(tx, minute, last, &buckets).await?;
        let reports = self.slos.report(tx, catalogue, minute).await?;
        for (spec, facts) in catalogue.systems.iter().zip(facts.iter_mut()) {
            facts.missed_slos =
                reports.iter().filter(|r| r.system_id == spec.id).filter_map(|r| r.missed.clone()).collect();
        }
        let mut now = Vec::with_capacity(catalogue.systems.len());

        for (spec, facts) in catalogue.systems.iter().zip(&facts) {
            let verdict = health::evaluate(spec, &self.systems.calendar, &self.rules, facts, minute);
            let before = previous.get(&spec.id).and_then(|s| Status::parse(s));
            now.push((spec.id.clone(), verdict.status, verdict.message.clone()));
            metrics::gauge!("ct_health_status", "system" => spec.id.clone()).set(match verdict.status {
                Status::Green => 0.0,
                Status::Unknown => 1.0,
                Status::Amber => 2.0,
                Status::Red => 3.0,
            });
            if before == Some(verdict.status) {
                sqlx::query("UPDATE statuses SET reason = $2, message = $3, evaluated_at = $4 WHERE system_id = $1")
                    .bind(&spec.id)
                    .bind(verdict.rule)
                    .bind(&verdict.message)
                    .bind(minute)
                    .execute(&mut *tx)
                    .await?;
                continue;
            }
            sqlx::query(
                "INSERT INTO statuses (system_id, status, reason, message, last_transition_time, evaluated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (system_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,
                     message = EXCLUDED.message, last_transition_time = EXCLUDED.last_transition_time,
                     evaluated_at = EXCLUDED.evaluated_at",
            )
            .bind(&spec.id)
            .bind(verdict.status.as_str())
            .bind(verdict.rule)
            .bind(&verdict.message)
            .bind(minute)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO history (system_id, at, status, previous, reason, message) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&spec.id)
            .bind(minute)
            .bind(verdict.status.as_str())
            .bind(before.map(Status::as_str))
            .bind(verdict.rule)
            .bind(&verdict.message)
            .execute(&mut *tx)
            .await?;
            tracing::info!(system = %spec.id, status = verdict.status.as_str(), reason = verdict.rule,
                message = %verdict.message, at = %minute, "System status changed.");
            if let Some(schema_id) = self.outbox_schema_id {
                let change = Change {
                    system_id: spec.id.clone(),
                    status: verdict.status.into(),
                    previous: before.map(Into::into),
                    statuspage: verdict.status.statuspage().to_owned(),
                    reason: verdict.rule.to_owned(),
                    message: verdict.message.clone(),
                    last_transition_time: minute,
                };
                let mut value = Vec::new();
                ct_core::avro::wire::write_header(schema_id, &mut value);
                value.extend(health::encode_change(&change).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
                sqlx::query("INSERT INTO outbox (system_id, value) VALUES ($1, $2)")
                    .bind(&spec.id)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(alerting) = &self.alerting {
            alerting.evaluate(tx, minute, &now, &reports).await?;
        }
        Ok(())
    }
}

/// Whether the events consumer has stored every record below `events_end` (a partition empty
/// at the tick needs nothing).
impl ct_platform::clock::Clocked for Evaluator {
    fn consumer(&self) -> &str {
        &self.consumer
    }

    fn events_topic(&self) -> &str {
        &self.events_topic
    }

    fn audit_topic(&self) -> Option<&str> {
        Some(&self.audit_topic)
    }

    fn advance<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move { self.apply_ready_ticks(tx).await.map(drop) })
    }
}
