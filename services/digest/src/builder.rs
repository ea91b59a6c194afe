//! The clock side of the digest: ticks wait in `pending_ticks` until the events they name are
//! stored; then, in clock order, each tick folds exactly the facts below its offsets into the
//! day counts and decides every digest (and timesheet gate) that became due by its minute. Both consumers call
//! [`Builder::advance`] at the end of their batch transaction, under one lock, so whichever
//! commits last applies what became ready. The state after any batch is a function of the two
//! stored progresses only: a live and a rebuilt digest are the same bytes.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use ct_core::{
    digest::{DayCounts, Digest, Tally, due_at, local_day, metric},
    timesheets::{self, Deadline},
};
use ct_platform::{
    clock::covered,
    consumer::{BoxFuture, ProcessError},
    postgres::classify,
};
use sqlx::{PgConnection, PgPool};

/// What deciding digests needs, shared by both consumers.
pub struct Builder {
    pub zone: Tz,
    pub publish_at: NaiveTime,
    /// The timesheet gate, when contractors are expected.
    pub gate: Option<GateRule>,
    /// The consumer name (progress key of both topics).
    pub consumer: String,
    pub events_topic: String,
    /// The audit topic (dead-letter depth reports and actions).
    pub audit_topic: String,
    /// The status-change topic (`ct.health.v1`).
    pub health_topic: String,
}

/// `[timesheets]` as the builder applies it.
#[derive(Debug, Clone)]
pub struct GateRule {
    pub deadline: Deadline,
    pub expected: BTreeSet<String>,
    pub threshold: usize,
}

/// The stored clock: last minute, next digest day, next gate week.
type ClockState = (DateTime<Utc>, NaiveDate, Option<NaiveDate>);

/// A row of `pending_ticks`: clock offset, minute, and the end offsets of the events, audit and
/// status-change topics.
type PendingTick = (i64, DateTime<Utc>, Vec<i64>, Vec<i64>, Vec<i64>);

impl Builder {
    /// The stored progress of `topic`: both consumers of the model share one consumer name.
    pub async fn stored_progress(&self, pool: &PgPool, topic: &str) -> Result<HashMap<i32, i64>, ProcessError> {
        ct_platform::postgres::load_progress(pool, &self.consumer, topic).await.map_err(classify)
    }

    /// Applies, in clock order, every pending tick whose events are stored.
    pub async fn apply_ready_ticks(&self, tx: &mut PgConnection) -> Result<u32, sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ct-clock'))")
            .execute(&mut *tx)
            .await?;
        let mut state: Option<ClockState> =
            sqlx::query_as("SELECT minute, next_day, next_gate_week FROM clock").fetch_optional(&mut *tx).await?;
        let progress_of = |topic: &str| {
            sqlx::query_as::<_, (i32, i64)>(
                "SELECT \"partition\", next_offset FROM consumer_progress WHERE consumer = $1 AND topic = $2",
            )
            .bind(self.consumer.clone())
            .bind(topic.to_owned())
        };
        let events_progress: HashMap<i32, i64> =
            progress_of(&self.events_topic).fetch_all(&mut *tx).await?.into_iter().collect();
        let audit_progress: HashMap<i32, i64> =
            progress_of(&self.audit_topic).fetch_all(&mut *tx).await?.into_iter().collect();
        let health_progress: HashMap<i32, i64> =
            progress_of(&self.health_topic).fetch_all(&mut *tx).await?.into_iter().collect();
        let mut applied = 0;
        loop {
            let tick: Option<PendingTick> = sqlx::query_as(
                "SELECT clock_offset, minute, events_end, audit_end, health_end FROM pending_ticks
                 ORDER BY clock_offset LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((clock_offset, minute, events_end, audit_end, health_end)) = tick else { break };
            // A minute already applied (a second ticker, a restart): time does not go back.
            if state.is_none_or(|(last, ..)| minute > last) {
                if !covered(&events_end, &events_progress)
                    || !covered(&audit_end, &audit_progress)
                    || !covered(&health_end, &health_progress)
                {
                    break;
                }
                fold(tx, &events_end).await?;
                fold_audit(tx, &audit_end).await?;
                fold_changes(tx, &health_end).await?;
                // The first tick ever: the first digest is the previous local day's.
                let mut next_day = state.map_or_else(
                    || local_day(minute, self.zone).checked_sub_days(Days::new(1)).unwrap_or(NaiveDate::MIN),
                    |(_, next, _)| next,
                );
                while due_at(next_day, self.publish_at, self.zone) <= minute {
                    self.decide(tx, next_day, minute).await?;
                    next_day = next_day.checked_add_days(Days::new(1)).unwrap_or(next_day);
                }
                let mut next_gate_week = state.and_then(|(_, _, week)| week);
                if let Some(gate) = &self.gate {
                    let mut week = next_gate_week.unwrap_or_else(|| gate.deadline.first_week(minute));
                    while gate.deadline.of_week(week) <= minute {
                        decide_gate(tx, gate, week, minute).await?;
                        week = week.checked_add_days(Days::new(7)).unwrap_or(week);
                    }
                    next_gate_week = Some(week);
                }
                sqlx::query(
                    "INSERT INTO clock (minute, next_day, next_gate_week) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE
                         SET minute = EXCLUDED.minute, next_day = EXCLUDED.next_day,
                             next_gate_week = EXCLUDED.next_gate_week",
                )
                .bind(minute)
                .bind(next_day)
                .bind(next_gate_week)
                .execute(&mut *tx)
                .await?;
                state = Some((minute, next_day, next_gate_week));
                applied += 1;
                metrics::counter!("ct_digest_ticks_applied_total").increment(1);
            }
            sqlx::query("DELETE FROM pending_ticks WHERE clock_offset = $1")
                .bind(clock_offset)
                .execute(&mut *tx)
                .await?;
        }
        Ok(applied)
    }

    /// Decides the digest of `day` from its counts, at the tick of `minute`.
    async fn decide(&self, tx: &mut PgConnection, day: NaiveDate, minute: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let counts = digest_counts(tx, day, self.zone).await?;
        let digest = Digest::build(day, self.zone, self.publish_at, &counts);
        let rendered = digest.render();
        sqlx::query(
            "INSERT INTO digests (day, time_zone, sha256, json, markdown, due_at, decided_minute)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (day) DO NOTHING",
        )
        .bind(day)
        .bind(&digest.time_zone)
        .bind(&rendered.sha256)
        .bind(&rendered.json)
        .bind(&rendered.markdown)
        .bind(digest.due_at)
        .bind(minute)
        .execute(&mut *tx)
        .await?;
        metrics::counter!("ct_digest_digests_decided_total").increment(1);
        tracing::info!(%day, sha256 = %rendered.sha256, events = digest.events.total, "Daily digest decided.");
        Ok(())
    }
}

/// Decides the timesheet gate of the week starting `monday` from the timesheets counted by the
/// tick of `minute` (its deadline's first tick).
async fn decide_gate(
    tx: &mut PgConnection,
    gate: &GateRule,
    monday: NaiveDate,
    minute: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let period = timesheets::period(monday);
    let received: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT substr(dimension, length($2) + 2) FROM day_counts
         WHERE metric = $1 AND starts_with(dimension, $2 || '|')",
    )
    .bind(metric::TIMESHEETS_BY_PERIOD)
    .bind(&period)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let decided = timesheets::decide(monday, &gate.deadline, &gate.expected, &received, gate.threshold);
    let as_int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query(
        "INSERT INTO timesheet_gates (period, week, deadline, expected, received, missing, threshold, blocked, decided_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (period) DO NOTHING",
    )
    .bind(&decided.period)
    .bind(monday)
    .bind(decided.deadline)
    .bind(as_int(decided.expected))
    .bind(as_int(decided.received))
    .bind(&decided.missing)
    .bind(as_int(decided.threshold))
    .bind(decided.blocked)
    .bind(minute)
    .execute(&mut *tx)
    .await?;
    metrics::counter!("ct_digest_timesheet_gates_total", "blocked" => if decided.blocked { "true" } else { "false" })
        .increment(1);
    tracing::info!(period = %decided.period, expected = decided.expected, missing = decided.missing.len(),
        blocked = decided.blocked, "Timesheet gate decided.");
    Ok(())
}

/// What the digest of `day` is built from: the day's counts, the dead letters parked at its end
/// (the last depth report of that day or before), and each system's status changes that day and
/// time in each status (from the status in force when the day began).
pub async fn digest_counts(conn: &mut PgConnection, day: NaiveDate, zone: Tz) -> Result<DayCounts, sqlx::Error> {
    let mut counts = day_counts(conn, day).await?;
    let (from, to) = ct_core::digest::day_span(day, zone);
    let changes: Vec<(String, DateTime<Utc>, String)> = sqlx::query_as(
        "(SELECT DISTINCT ON (system_id) system_id, at, status FROM status_changes WHERE at < $1
          ORDER BY system_id, at DESC)
         UNION ALL
         (SELECT system_id, at, status FROM status_changes WHERE at >= $1 AND at < $2)
         ORDER BY system_id, at",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_system: std::collections::BTreeMap<String, Vec<(DateTime<Utc>, String)>> = Default::default();
    for (system_id, at, status) in changes {
        by_system.entry(system_id).or_default().push((at, status));
    }
    for (system_id, changes) in by_system {
        let (before, inside): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(at, _)| *at < from);
        let before = before.last().map(|(_, status)| status.as_str());
        let seconds = ct_core::trend::time_in_status(before, &inside, from, to);
        counts
            .entry(metric::STATUS_CHANGES.to_owned())
            .or_default()
            .insert(system_id.clone(), Tally { count: inside.len() as i64, amount_minor: 0 });
        let by_status = counts.entry(metric::STATUS_SECONDS.to_owned()).or_default();
        for (status, seconds) in seconds {
            by_status.insert(format!("{system_id}|{status}"), Tally { count: seconds, amount_minor: 0 });
        }
    }
    let depth: Option<String> =
        sqlx::query_scalar("SELECT by_category::text FROM dlq_depth WHERE day <= $1 ORDER BY day DESC LIMIT 1")
            .bind(day)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(depth) = depth {
        let by_category: std::collections::BTreeMap<String, i64> = serde_json::from_str(&depth).unwrap_or_default();
        counts.insert(
            metric::DLQ_PARKED.to_owned(),
            by_category.into_iter().map(|(c, n)| (c, Tally { count: n, amount_minor: 0 })).collect(),
        );
    }
    Ok(counts)
}

/// The stored counts of `day`.
pub async fn day_counts(conn: &mut PgConnection, day: NaiveDate) -> Result<DayCounts, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT metric, dimension, count, amount FROM day_counts WHERE day = $1")
            .bind(day)
            .fetch_all(&mut *conn)
            .await?;
    let mut counts = DayCounts::new();
    for (metric, dimension, count, amount_minor) in rows {
        counts.entry(metric).or_default().insert(dimension, Tally { count, amount_minor });
    }
    Ok(counts)
}

/// Moves the status changes below the tick's health offsets into `status_changes`.
async fn fold_changes(tx: &mut PgConnection, health_end: &[i64]) -> Result<(), sqlx::Error> {
    if health_end.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH folded AS (
             DELETE FROM pending_changes p
             USING UNNEST($1::bigint[]) WITH ORDINALITY AS b(end_offset, n)
             WHERE p.\"partition\" = b.n - 1 AND p.\"offset\" < b.end_offset
             RETURNING p.*
         )
         INSERT INTO status_changes (system_id, at, status)
         SELECT DISTINCT ON (system_id, at) system_id, at, status FROM folded
         ORDER BY system_id, at, \"partition\", \"offset\"
         ON CONFLICT DO NOTHING",
    )
    .bind(health_end)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves the audit records below the tick's audit offsets into the day counts (dead letters
/// resolved, each audit id once) and the day's last depth report.
async fn fold_audit(tx: &mut PgConnection, audit_end: &[i64]) -> Result<(), sqlx::Error> {
    if audit_end.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH folded AS (
             DELETE FROM pending_audit p
             USING UNNEST($1::bigint[]) WITH ORDINALITY AS b(end_offset, n)
             WHERE p.\"partition\" = b.n - 1 AND p.\"offset\" < b.end_offset
             RETURNING p.*
         ),
         fresh AS (
             INSERT INTO counted (event_id, day)
             SELECT DISTINCT ON (audit_id) 'audit:' || audit_id, day FROM folded WHERE kind = 'resolved'
             ORDER BY audit_id, \"partition\", \"offset\"
             ON CONFLICT DO NOTHING
             RETURNING event_id
         ),
         resolved AS (
             INSERT INTO day_counts (day, metric, dimension, count, amount)
             SELECT day, $2, outcome, count(DISTINCT audit_id), 0 FROM folded
             WHERE kind = 'resolved' AND 'audit:' || audit_id IN (SELECT event_id FROM fresh)
             GROUP BY day, outcome
             ON CONFLICT (day, metric, dimension) DO UPDATE SET count = day_counts.count + EXCLUDED.count
         )
         INSERT INTO dlq_depth (day, written_at, by_category)
         SELECT DISTINCT ON (day) day, written_at, by_category FROM folded WHERE kind = 'depth'
         ORDER BY day, written_at DESC, \"partition\" DESC, \"offset\" DESC
         ON CONFLICT (day) DO UPDATE SET written_at = EXCLUDED.written_at, by_category = EXCLUDED.by_category
         WHERE EXCLUDED.written_at >= dlq_depth.written_at",
    )
    .bind(audit_end)
    .bind(metric::DLQ_RESOLVED)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves the facts below the tick's offsets into the day counts. Only first copies of events
/// have pending facts (`counting.rs` claims ids in `counted` as it stores them), so the fold is
/// a sum.
async fn fold(tx: &mut PgConnection, events_end: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH folded AS (
             DELETE FROM pending_events f
             USING UNNEST($1::bigint[]) WITH ORDINALITY AS b(end_offset, n)
             WHERE f.\"partition\" = b.n - 1 AND f.\"offset\" < b.end_offset
             RETURNING f.day, f.metrics, f.dimensions, f.amounts
         ),
         facts AS (
             SELECT folded.day, fact.metric, fact.dimension, fact.amount
             FROM folded CROSS JOIN LATERAL UNNEST(folded.metrics, folded.dimensions, folded.amounts)
                 AS fact(metric, dimension, amount)
         )
         INSERT INTO day_counts (day, metric, dimension, count, amount)
         SELECT day, metric, dimension, count(*), sum(amount) FROM facts
         GROUP BY day, metric, dimension
         ON CONFLICT (day, metric, dimension) DO UPDATE
             SET count = day_counts.count + EXCLUDED.count, amount = day_counts.amount + EXCLUDED.amount",
    )
    .bind(events_end)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl ct_platform::clock::Clocked for Builder {
    fn consumer(&self) -> &str {
        &self.consumer
    }

    fn events_topic(&self) -> &str {
        &self.events_topic
    }

    fn audit_topic(&self) -> Option<&str> {
        Some(&self.audit_topic)
    }

    fn health_topic(&self) -> Option<&str> {
        Some(&self.health_topic)
    }

    fn advance<'a>(&'a self, tx: &'a mut PgConnection) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move { self.apply_ready_ticks(tx).await.map(drop) })
    }
}
