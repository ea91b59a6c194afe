//! Postgres read models and the Redis hot views.
//!
//! Postgres is the projector's truth: each batch writes its new `events` rows, what they imply
//! for `runs`, `systems` and `type_counts`, and the consumer's progress in **one transaction**.
//! Redis is a cache of Postgres: after a commit, the touched views are recomputed from Postgres
//! and written whole (idempotent); when the views' marker key is missing (Redis flushed or new)
//! every view is rebuilt. Redis therefore always converges to what Postgres implies.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use ct_platform::{
    consumer::{Advance, ProcessError},
    postgres::{Migration, classify},
    redis::Keys,
};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::handler::{Effect, RunEffect};

/// Recent events kept per source in Redis.
pub const RECENT_PER_SOURCE: i64 = 50;

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "read models", sql: include_str!("../migrations/0001_read_models.sql") },
    Migration { version: 2, name: "runs listed_at", sql: include_str!("../migrations/0002_runs_listed_at.sql") },
    Migration {
        version: 3,
        name: "erasures and retention",
        sql: include_str!("../migrations/0003_erasures_and_retention.sql"),
    },
    Migration {
        version: 4,
        name: "events by log position; finance events by time",
        sql: include_str!("../migrations/0004_events_log_position.sql"),
    },
];

/// Applies the migrations this service owns (see [`ct_platform::postgres::migrate`]).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    ct_platform::postgres::migrate(pool, "projector", MIGRATIONS).await
}

/// What a committed batch touched, for the Redis refresh.
#[derive(Debug, Default)]
pub struct Touched {
    pub systems: BTreeSet<String>,
    pub types: BTreeSet<String>,
    pub sources: BTreeSet<String>,
}

/// Writes one batch and the progress in one transaction.
pub async fn apply(
    pool: &PgPool,
    consumer: &str,
    topic: &str,
    effects: &[&Effect],
    progress: &[Advance],
) -> Result<Touched, ProcessError> {
    let mut tx = ct_platform::postgres::begin_batch(pool).await?;
    // Safe without waiting for the WAL flush: the effects and the progress commit together, so a
    // crash that loses the last commits loses both, and the projector re-reads those records.
    sqlx::query("SET LOCAL synchronous_commit TO OFF").execute(&mut *tx).await?;
    let inserted = insert_events(&mut tx, effects).await?;
    let new: Vec<&Effect> = effects.iter().copied().filter(|e| inserted.contains(e.row.event_id.as_str())).collect();
    // Rows shared between transactions (runs, systems, type counts) are always updated in key
    // order, so parallel shards of the projector wait on each other but never deadlock.
    let mut runs: Vec<&RunEffect> = new.iter().filter_map(|effect| effect.run.as_ref()).collect();
    runs.sort_by(|a, b| a.run_id().cmp(b.run_id()));
    for run in runs {
        apply_run(&mut tx, run).await?;
    }
    let touched = apply_systems_and_counts(&mut tx, &new).await?;
    ct_platform::postgres::advance_progress(&mut tx, consumer, topic, progress).await?;
    tx.commit().await?;
    Ok(touched)
}

async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    effects: &[&Effect],
) -> Result<HashSet<String>, sqlx::Error> {
    if effects.is_empty() {
        return Ok(HashSet::new());
    }
    let mut ids = Vec::with_capacity(effects.len());
    let (mut types, mut sources, mut ts, mut correlation, mut payloads) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut received, mut traces, mut topics, mut partitions, mut offsets) = (vec![], vec![], vec![], vec![], vec![]);
    for e in effects {
        let r = &e.row;
        ids.push(r.event_id.as_str());
        types.push(r.event_type);
        sources.push(r.source);
        ts.push(r.ts);
        correlation.push(r.correlation_id.as_deref());
        payloads.push(&r.payload);
        received.push(r.received_at);
        traces.push(r.trace_id.as_deref());
        topics.push(r.topic.as_str());
        partitions.push(r.partition);
        offsets.push(r.offset);
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        // An erasure read before the event blanks its payload here (see `erasures.rs`); a pruned
        // event's id makes a late copy of it a duplicate (see `prune`).
        r#"INSERT INTO events (event_id, type, source, ts, correlation_id, payload, received_at, trace_id, topic, "partition", "offset")
           SELECT u.event_id, u.type, u.source, u.ts, u.correlation_id,
                  CASE WHEN EXISTS (SELECT 1 FROM erasures e WHERE e.source = u.source AND u.ts < e.before)
                       THEN '{"erased": true}'::jsonb ELSE u.payload END,
                  u.received_at, u.trace_id, u.topic, u."partition", u."offset"
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::jsonb[],
                       $7::timestamptz[], $8::text[], $9::text[], $10::int[], $11::bigint[])
                AS u(event_id, type, source, ts, correlation_id, payload, received_at, trace_id, topic, "partition", "offset")
           WHERE NOT EXISTS (SELECT 1 FROM pruned_events p WHERE p.event_id = u.event_id)
           ON CONFLICT (event_id) DO NOTHING
           RETURNING event_id"#,
    )
    .bind(&ids)
    .bind(&types)
    .bind(&sources)
    .bind(&ts)
    .bind(&correlation)
    .bind(&payloads)
    .bind(&received)
    .bind(&traces)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(&mut **tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// Run rows merge order-independently, so a rebuild gives the same rows whatever the
/// interleaving of partitions: the earliest start and the latest completion win. `listed_at`
/// (the paging key) is set once, by the run's first event in its partition's order.
async fn apply_run(tx: &mut Transaction<'_, Postgres>, run: &RunEffect) -> Result<(), sqlx::Error> {
    match run {
        RunEffect::Started { run_id, trigger, initiator, inputs, at } => {
            sqlx::query(
                "INSERT INTO runs (run_id, trigger, initiator, inputs, started_at, listed_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (run_id) DO UPDATE SET trigger = EXCLUDED.trigger, initiator = EXCLUDED.initiator,
                     inputs = EXCLUDED.inputs, started_at = EXCLUDED.started_at
                 WHERE runs.started_at IS NULL OR EXCLUDED.started_at < runs.started_at",
            )
            .bind(run_id)
            .bind(trigger)
            .bind(initiator)
            .bind(inputs)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        RunEffect::Completed { run_id, status, duration_ms, metrics, at } => {
            sqlx::query(
                "INSERT INTO runs (run_id, completed_status, duration_ms, metrics, ended_at, listed_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (run_id) DO UPDATE SET completed_status = EXCLUDED.completed_status,
                     duration_ms = EXCLUDED.duration_ms, metrics = EXCLUDED.metrics, ended_at = EXCLUDED.ended_at
                 WHERE runs.ended_at IS NULL OR EXCLUDED.ended_at > runs.ended_at",
            )
            .bind(run_id)
            .bind(status)
            .bind(duration_ms)
            .bind(metrics)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct SystemDelta {
    events: i64,
    last: Option<(DateTime<Utc>, String, &'static str)>,
    heartbeat: Option<DateTime<Utc>>,
}

async fn apply_systems_and_counts(tx: &mut Transaction<'_, Postgres>, new: &[&Effect]) -> Result<Touched, sqlx::Error> {
    let mut systems: BTreeMap<String, SystemDelta> = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
    let mut touched = Touched::default();
    for effect in new {
        let row = &effect.row;
        *counts.entry(row.event_type).or_default() += 1;
        touched.sources.insert(row.source.to_owned());
        let delta = systems.entry(row.source.to_owned()).or_default();
        delta.events += 1;
        if delta.last.as_ref().is_none_or(|(ts, id, _)| (row.ts, &row.event_id) > (*ts, id)) {
            delta.last = Some((row.ts, row.event_id.clone(), row.event_type));
        }
        if let Some(system) = &effect.heartbeat_of {
            let delta = systems.entry(system.clone()).or_default();
            delta.heartbeat = delta.heartbeat.max(Some(row.ts));
        }
    }
    for (system_id, delta) in &systems {
        let (last_at, last_id, last_type) = match &delta.last {
            Some((at, id, t)) => (Some(*at), Some(id.as_str()), Some(*t)),
            None => (None, None, None),
        };
        sqlx::query(
            "INSERT INTO systems (system_id, events_total, last_event_at, last_event_id, last_event_type, last_heartbeat)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (system_id) DO UPDATE SET
               events_total = systems.events_total + EXCLUDED.events_total,
               last_heartbeat = GREATEST(systems.last_heartbeat, EXCLUDED.last_heartbeat),
               last_event_at = CASE WHEN EXCLUDED.last_event_at IS NOT NULL AND (systems.last_event_at IS NULL
                   OR (EXCLUDED.last_event_at, EXCLUDED.last_event_id) > (systems.last_event_at, systems.last_event_id))
                   THEN EXCLUDED.last_event_at ELSE systems.last_event_at END,
               last_event_type = CASE WHEN EXCLUDED.last_event_at IS NOT NULL AND (systems.last_event_at IS NULL
                   OR (EXCLUDED.last_event_at, EXCLUDED.last_event_id) > (systems.last_event_at, systems.last_event_id))
                   THEN EXCLUDED.last_event_type ELSE systems.last_event_type END,
               last_event_id = CASE WHEN EXCLUDED.last_event_at IS NOT NULL AND (systems.last_event_at IS NULL
                   OR (EXCLUDED.last_event_at, EXCLUDED.last_event_id) > (systems.last_event_at, systems.last_event_id))
                   THEN EXCLUDED.last_event_id ELSE systems.last_event_id END",
        )
        .bind(system_id)
        .bind(delta.events)
        .bind(last_at)
        .bind(last_id)
        .bind(last_type)
        .bind(delta.heartbeat)
        .execute(&mut **tx)
        .await?;
        touched.systems.insert(system_id.clone());
    }
    for (event_type, count) in &counts {
        sqlx::query(
            "INSERT INTO type_counts (type, events_total) VALUES ($1, $2)
             ON CONFLICT (type) DO UPDATE SET events_total = type_counts.events_total + EXCLUDED.events_total",
        )
        .bind(event_type)
        .bind(count)
        .execute(&mut **tx)
        .await?;
        touched.types.insert((*event_type).to_owned());
    }
    Ok(touched)
}

/// `systems` as read back: id, events, last event (at, id, type), last heartbeat.
type SystemRow = (String, i64, Option<DateTime<Utc>>, Option<String>, Option<String>, Option<DateTime<Utc>>);

/// The Redis views, recomputed from Postgres.
pub struct Views {
    pub redis: ConnectionManager,
    pub keys: Keys,
}

impl Views {
    fn marker(&self) -> String {
        self.keys.key(&["views", "ready"])
    }

    /// Refreshes what `touched` names, or everything when the marker is missing.
    pub async fn refresh(&self, pool: &PgPool, touched: &Touched) -> Result<(), ProcessError> {
        let mut redis = self.redis.clone();
        let nothing_touched = touched.systems.is_empty() && touched.types.is_empty() && touched.sources.is_empty();
        let ready: bool = redis::cmd("EXISTS").arg(self.marker()).query_async(&mut redis).await.map_err(transient)?;
        if ready && nothing_touched {
            Ok(())
        } else if ready {
            self.write(pool, Some(touched)).await
        } else {
            tracing::info!(prefix = self.keys.prefix(), "Rebuilding the Redis views from Postgres.");
            self.write(pool, None).await
        }
    }

    /// Rebuilds every view from Postgres.
    pub async fn rebuild(&self, pool: &PgPool) -> Result<(), ProcessError> {
        self.write(pool, None).await
    }

    async fn write(&self, pool: &PgPool, only: Option<&Touched>) -> Result<(), ProcessError> {
        // Members of the consumer group refresh concurrently. Reading Postgres and writing Redis
        // under one lock per prefix means a refresh that writes later also read later, so the
        // views never go back to an older state (last writer wins, and it read the newest).
        let mut tx = pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(self.keys.key(&["views", "lock"]))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let systems: Vec<SystemRow> = sqlx::query_as(
            "SELECT system_id, events_total, last_event_at, last_event_id, last_event_type, last_heartbeat FROM systems
                 WHERE $1::text[] IS NULL OR system_id = ANY($1)",
        )
        .bind(only.map(|t| t.systems.iter().cloned().collect::<Vec<_>>()))
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT type, events_total FROM type_counts WHERE $1::text[] IS NULL OR type = ANY($1)")
                .bind(only.map(|t| t.types.iter().cloned().collect::<Vec<_>>()))
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
        let sources: Vec<String> = match only {
            Some(t) => t.sources.iter().cloned().collect(),
            None => {
                sqlx::query_scalar("SELECT DISTINCT source FROM events").fetch_all(&mut *tx).await.map_err(classify)?
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        if only.is_none() {
            // SCAN, not KEYS: a full rebuild must not block Redis for every other client.
            let mut redis = self.redis.clone();
            let mut stale: Vec<String> = Vec::new();
            let mut cursor = 0_u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}:*", self.keys.prefix()))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut redis)
                    .await
                    .map_err(transient)?;
                stale.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            for key in stale.iter().filter(|k| {
                k.starts_with(&self.keys.key(&["system", ""]))
                    || k.starts_with(&self.keys.key(&["recent", ""]))
                    || *k == &self.keys.key(&["counts"])
            }) {
                pipe.del(key);
            }
        }
        for (system_id, total, last_at, last_id, last_type, heartbeat) in &systems {
            let key = self.keys.key(&["system", system_id]);
            pipe.del(&key);
            let fmt = |t: &Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
            pipe.hset_multiple(
                &key,
                &[
                    ("events_total", total.to_string()),
                    ("last_event_at", fmt(last_at)),
                    ("last_event_id", last_id.clone().unwrap_or_default()),
                    ("last_event_type", last_type.clone().unwrap_or_default()),
                    ("last_heartbeat", fmt(heartbeat)),
                ],
            );
        }
        for (event_type, total) in &counts {
            pipe.hset(self.keys.key(&["counts"]), event_type, total);
        }
        for source in &sources {
            let recent: Vec<Value> = sqlx::query_scalar(
                "SELECT jsonb_build_object('eventId', event_id, 'type', type, 'ts', ts, 'payload', payload)
                 FROM events WHERE source = $1 ORDER BY ts DESC, event_id DESC LIMIT $2",
            )
            .bind(source)
            .bind(RECENT_PER_SOURCE)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
            let key = self.keys.key(&["recent", source]);
            pipe.del(&key);
            if !recent.is_empty() {
                pipe.rpush(&key, recent.iter().map(Value::to_string).collect::<Vec<_>>());
            }
        }
        // Only a full rebuild marks the views ready. A partial refresh that set the marker could
        // resurrect it right after a flush (EXISTS, flush, then this write) and leave the
        // untouched views missing for good.
        if only.is_none() {
            pipe.set(self.marker(), json!({"rebuilt": true}).to_string());
        }
        let mut redis = self.redis.clone();
        pipe.query_async::<()>(&mut redis).await.map_err(transient)?;
        tx.commit().await.map_err(classify)?;
        Ok(())
    }
}

fn transient(error: redis::RedisError) -> ProcessError {
    ProcessError::dependency("redis", error)
}

/// Checksum of each read-model table's content (order-independent), to compare a rebuild with
/// the live tables. Columns that record *when* something was processed are not part of it.
pub async fn checksums(pool: &PgPool) -> Result<ct_platform::readmodel::Checksums, sqlx::Error> {
    checksums_kept(pool, &Retention::KEEP_ALL).await
}

/// The checksums of what `retention` keeps: rows past their tier are out of the model even
/// before a prune deletes them, so a rebuild (which prunes nothing) compares equal.
pub async fn checksums_kept(
    pool: &PgPool,
    retention: &Retention,
) -> Result<ct_platform::readmodel::Checksums, sqlx::Error> {
    let (events_cutoff, runs_cutoff) = retention.cutoffs_in(pool).await?;
    // (table, query, the cutoff it is bound to, if any)
    type Kept = Option<Option<DateTime<Utc>>>;
    let tables: [(&'static str, &str, Kept); 4] = [
        (
            "events",
            "SELECT md5(string_agg(md5(row(event_id, type, source, ts, correlation_id, payload, received_at, trace_id)::text), '' ORDER BY event_id))
             FROM events WHERE $1::timestamptz IS NULL OR ts >= $1",
            Some(events_cutoff),
        ),
        (
            "runs",
            "SELECT md5(string_agg(md5(r::text), '' ORDER BY run_id)) FROM runs r
             WHERE $1::timestamptz IS NULL OR COALESCE(ended_at, started_at, listed_at) >= $1",
            Some(runs_cutoff),
        ),
        ("systems", "SELECT md5(string_agg(md5(s::text), '' ORDER BY system_id)) FROM systems s", None),
        ("type_counts", "SELECT md5(string_agg(md5(c::text), '' ORDER BY type)) FROM type_counts c", None),
    ];
    let mut out = BTreeMap::new();
    for (table, sql, cutoff) in tables {
        let mut query = sqlx::query(sql);
        if let Some(cutoff) = cutoff {
            query = query.bind(cutoff);
        }
        let sum: Option<String> = query.fetch_one(pool).await?.try_get(0)?;
        out.insert(table.to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
    }
    Ok(out)
}

/// How long the read models keep rows (work order §10's tiers), counted back from the newest
/// event's `ts` in the model: time from the log, so a rebuild keeps the same rows. `0` keeps
/// everything. A row past its tier is out of the model at once (the checksums leave it out) and
/// deleted by the next [`prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Retention {
    pub events_days: u32,
    pub runs_days: u32,
}

impl Retention {
    pub const KEEP_ALL: Retention = Retention { events_days: 0, runs_days: 0 };

    /// The first kept instant of each tier (`None`: everything is kept), given the newest event.
    pub fn cutoffs(&self, newest: Option<DateTime<Utc>>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let back =
            |days: u32| newest.filter(|_| days > 0).map(|newest| newest - chrono::Duration::days(i64::from(days)));
        (back(self.events_days), back(self.runs_days))
    }

    async fn cutoffs_in(&self, pool: &PgPool) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>), sqlx::Error> {
        let newest: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT max(ts) FROM events").fetch_one(pool).await?;
        Ok(self.cutoffs(newest))
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub runs: u64,
}

/// Deletes the rows past their tier, a few thousand per transaction. A pruned event leaves its
/// id in `pruned_events`, so a late copy of it (a replay, a redelivery) is still a duplicate:
/// one event, one effect, also past the tier. Each transaction holds the schema's swap lock
/// exclusively, so no batch is between its duplicate check and its insert meanwhile.
pub async fn prune(pool: &PgPool, retention: &Retention) -> Result<Pruned, sqlx::Error> {
    let (events_cutoff, runs_cutoff) = retention.cutoffs_in(pool).await?;
    let mut pruned = Pruned::default();
    let steps: [(Option<DateTime<Utc>>, &str, &mut u64); 2] = [
        (
            events_cutoff,
            "WITH gone AS (DELETE FROM events WHERE event_id IN
                 (SELECT event_id FROM events WHERE NOT ($1::timestamptz IS NULL OR ts >= $1) LIMIT 5000)
                 RETURNING event_id)
             INSERT INTO pruned_events (event_id) SELECT event_id FROM gone ON CONFLICT DO NOTHING",
            &mut pruned.events,
        ),
        (
            runs_cutoff,
            "DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs
                 WHERE NOT ($1::timestamptz IS NULL OR COALESCE(ended_at, started_at, listed_at) >= $1) LIMIT 5000)",
            &mut pruned.runs,
        ),
    ];
    for (cutoff, sql, counter) in steps {
        if cutoff.is_none() {
            continue;
        }
        loop {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ct-swap'))")
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query(sql).bind(cutoff).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            *counter += done;
            if done == 0 {
                break;
            }
        }
    }
    Ok(pruned)
}
