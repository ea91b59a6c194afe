//! `dlq_items` in Postgres (with the consumer's progress, one transaction per batch) and the
//! DLQ depth per category in Redis: a cache of Postgres rewritten whole after each commit.

use std::collections::BTreeMap;

use ct_core::dlq::{Audit, Category, Outcome};
use ct_platform::{
    consumer::{Advance, ProcessError},
    postgres::{Migration, classify},
    redis::Keys,
};
use redis::aio::ConnectionManager;
use sqlx::{PgPool, Postgres, Transaction};

use crate::items::{Change, Parked};

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "consumer progress", sql: ct_platform::postgres::PROGRESS_TABLE_SQL },
    Migration { version: 2, name: "dlq items", sql: include_str!("../migrations/0002_dlq_items.sql") },
    Migration {
        version: 3,
        name: "dlq items paged by first failure",
        sql: include_str!("../migrations/0003_dlq_items_first_failure_order.sql"),
    },
    Migration {
        version: 4,
        name: "dlq items event id",
        sql: include_str!("../migrations/0004_dlq_items_event_id.sql"),
    },
];

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    ct_platform::postgres::migrate(pool, "dlq", MIGRATIONS).await
}

/// Applies `changes` and the progress in one transaction.
pub async fn apply(
    pool: &PgPool,
    consumer: &str,
    topic: &str,
    changes: &[Change],
    progress: &[Advance],
) -> Result<(), ProcessError> {
    let mut tx = ct_platform::postgres::begin_batch(pool).await?;
    lock_items(&mut tx, changes).await?;
    for change in changes {
        match change {
            Change::Parked(item) => park(&mut tx, item).await?,
            Change::HandedBack { item_id, attempt, origin, at } => {
                sqlx::query(
                    "INSERT INTO dlq_handbacks (item_id, attempt, origin, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(item_id)
                .bind(attempt)
                .bind(origin)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE dlq_items SET state = 'replayed', state_changed_at = $3, state_actor = $4, state_reason = NULL
                     WHERE id = $1 AND attempts <= $2 AND state = 'parked'",
                )
                .bind(item_id)
                .bind(attempt)
                .bind(at)
                .bind(origin)
                .execute(&mut *tx)
                .await?;
            }
            Change::Audited(audit) => record_audit(&mut tx, audit).await?,
        }
    }
    ct_platform::postgres::advance_progress(&mut tx, consumer, topic, progress).await?;
    Ok(tx.commit().await?)
}

/// Locks the batch's items for this transaction. The category topics, the retry topic and the
/// audit topic are applied by concurrent transactions; without the lock, an item's insert and its
/// hand-back could each miss the other's uncommitted row and leave it parked forever. Locks are
/// taken in one order (by key), so two batches cannot deadlock.
async fn lock_items(tx: &mut Transaction<'_, Postgres>, changes: &[Change]) -> Result<(), sqlx::Error> {
    const LOCK_SPACE: i32 = 0x0d1c; // the (int, int) advisory key space is apart from the bigint one
    let ids: Vec<&str> = changes.iter().map(Change::item_id).collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, key)
         FROM (SELECT DISTINCT hashtext(id) AS key FROM unnest($2::text[]) AS id ORDER BY key) AS keys",
    )
    .bind(LOCK_SPACE)
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts the item, or updates it when this is a later attempt of it. Duplicates of one
/// attempt (a stage that crashed after dead-lettering re-sends it) change nothing.
async fn park(tx: &mut Transaction<'_, Postgres>, item: &Parked) -> Result<(), sqlx::Error> {
    let c = &item.context;
    sqlx::query(
        "INSERT INTO dlq_items (id, category, rule, stage, step, error_class, error_message, attempts,
             first_failure_at, last_failure_at, original_topic, original_partition, original_offset,
             source, record_key, record_value, headers, dlq_topic, dlq_partition, dlq_offset, state, state_changed_at,
             event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
             CASE WHEN EXISTS (SELECT 1 FROM dlq_handbacks h WHERE h.item_id = $1 AND h.attempt >= $8)
                  THEN 'replayed' ELSE 'parked' END,
             $10, $21)
         ON CONFLICT (id) DO UPDATE SET
             category = EXCLUDED.category, rule = EXCLUDED.rule, step = EXCLUDED.step,
             error_class = EXCLUDED.error_class, error_message = EXCLUDED.error_message,
             attempts = EXCLUDED.attempts, last_failure_at = EXCLUDED.last_failure_at,
             headers = EXCLUDED.headers, dlq_topic = EXCLUDED.dlq_topic,
             dlq_partition = EXCLUDED.dlq_partition, dlq_offset = EXCLUDED.dlq_offset,
             state = EXCLUDED.state, state_changed_at = EXCLUDED.state_changed_at,
             state_actor = NULL, state_reason = NULL
         WHERE EXCLUDED.attempts > dlq_items.attempts",
    )
    .bind(&item.id)
    .bind(item.category.as_str())
    .bind(&item.rule)
    .bind(&c.stage)
    .bind(&c.step)
    .bind(&c.error_class)
    .bind(&c.message)
    .bind(i32::try_from(c.attempt).unwrap_or(i32::MAX))
    .bind(c.first_failure_at)
    .bind(c.last_failure_at)
    .bind(&c.original_topic)
    .bind(c.original_partition)
    .bind(c.original_offset)
    .bind(&item.source)
    .bind(&item.key)
    .bind(&item.value)
    .bind(&item.headers)
    .bind(&item.at.topic)
    .bind(item.at.partition)
    .bind(item.at.offset)
    .bind(&item.event_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records the audit and applies it. Only a skip or replay of the attempt the SRE saw (or a
/// later one) counts: a failure after the replay re-parks the item.
async fn record_audit(tx: &mut Transaction<'_, Postgres>, audit: &Audit) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dlq_audit (audit_id, item_id, action, outcome, actor, at, reason, detail, attempt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(&audit.audit_id)
    .bind(&audit.item_id)
    .bind(audit.action.as_str())
    .bind(audit.outcome.as_str())
    .bind(&audit.actor)
    .bind(audit.at)
    .bind(&audit.reason)
    .bind(&audit.detail)
    .bind(audit.attempt)
    .execute(&mut **tx)
    .await?;
    let (state, reason) = match audit.outcome {
        Outcome::Replayed => ("replayed", audit.reason.clone()),
        Outcome::Skipped => ("skipped", audit.reason.clone()),
        Outcome::Reparked => {
            ("parked", format!("replay refused: {}", audit.detail.as_deref().unwrap_or("re-validation failed")))
        }
    };
    sqlx::query(
        "UPDATE dlq_items SET state = $3, state_actor = $4, state_reason = $5, state_changed_at = $6
         WHERE id = $1 AND attempts <= $2 AND (state <> 'skipped' OR $3 = 'skipped')",
    )
    .bind(&audit.item_id)
    .bind(audit.attempt)
    .bind(state)
    .bind(&audit.actor)
    .bind(reason)
    .bind(audit.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Parked items per category.
pub type Depth = BTreeMap<Category, i64>;

/// Parked items per category (zero included).
pub async fn depth(pool: &PgPool) -> Result<Depth, ProcessError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT category, count(*) FROM dlq_items WHERE state = 'parked' GROUP BY category")
            .fetch_all(pool)
            .await
            .map_err(classify)?;
    let mut depth: BTreeMap<Category, i64> = Category::ALL.into_iter().map(|c| (c, 0)).collect();
    for (category, count) in rows {
        if let Ok(category) = category.parse() {
            depth.insert(category, count);
        }
    }
    Ok(depth)
}

/// Writes the depth to Redis (`<prefix>:dlq:depth`, a hash category -> count) and the
/// `ct_dlq_depth` gauge.
pub async fn publish_depth(
    redis: &mut ConnectionManager,
    keys: &Keys,
    depth: &BTreeMap<Category, i64>,
) -> Result<(), redis::RedisError> {
    for (category, count) in depth {
        metrics::gauge!("ct_dlq_depth", "category" => category.lowercase()).set(*count as f64);
    }
    let fields: Vec<(&str, i64)> = depth.iter().map(|(c, n)| (c.lowercase(), *n)).collect();
    redis::cmd("HSET").arg(keys.key(&["dlq", "depth"])).arg(&fields).query_async(redis).await
}

/// Checksum of each table's content (order-independent), to compare a rebuild with the live
/// tables. Every column comes from the log, so all of them count.
pub async fn checksums(pool: &PgPool) -> Result<ct_platform::readmodel::Checksums, sqlx::Error> {
    let tables: [(&str, &str); 3] = [
        ("dlq_items", "SELECT md5(string_agg(md5(i::text), '' ORDER BY id)) FROM dlq_items i"),
        (
            "dlq_handbacks",
            "SELECT md5(string_agg(md5(h::text), '' ORDER BY item_id, attempt, origin)) FROM dlq_handbacks h",
        ),
        ("dlq_audit", "SELECT md5(string_agg(md5(a::text), '' ORDER BY audit_id)) FROM dlq_audit a"),
    ];
    let mut out = ct_platform::readmodel::Checksums::new();
    for (table, sql) in tables {
        let sum: Option<String> = sqlx::query_scalar(sql).fetch_one(pool).await?;
        out.insert(table.to_owned(), sum.unwrap_or_else(|| "empty".to_owned()));
    }
    Ok(out)
}
