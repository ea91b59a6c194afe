//! Blue/green rebuild of the projector's read models.
//!
//! 1. A second projector (its own consumer name, schema and Redis prefix) reads `ct.events.v1`
//!    from offset 0 into a fresh schema beside the live one, which keeps serving.
//! 2. When the rebuild has reached the live projector's progress, the per-table checksums are
//!    compared (they must be equal when both stand at the same offsets).
//! 3. `--swap`: in one transaction that holds the live progress table locked (so the live
//!    projector's next batch waits), the schemas are renamed (`live` -> `live_old_<ts>`,
//!    rebuild -> `live`) and the live consumer's progress is copied over. The live projector and
//!    the read API keep their connections; by name they now reach the rebuilt tables. Events the
//!    rebuild already holds are no-ops for the live projector (`ON CONFLICT DO NOTHING`, effects
//!    only for new rows), so nothing is applied twice and nothing is skipped.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use ct_projector::{Config, store};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// The live projector's configuration (schema, consumer name, topic, connections).
    pub live: Config,
    pub swap: bool,
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct RebuildReport {
    pub live_schema: String,
    pub rebuild_schema: String,
    pub events: i64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub live_checksums: BTreeMap<&'static str, String>,
    pub rebuild_checksums: BTreeMap<&'static str, String>,
    /// Both stood at the same offsets when compared, so equal checksums are expected.
    pub compared_at_same_offsets: bool,
    pub identical: bool,
    /// The schema that holds the old tables after a swap (kept for rollback).
    pub swapped_out: Option<String>,
}

fn valid_schema(name: &str) -> anyhow::Result<&str> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        bail!("invalid schema name `{name}`");
    }
    Ok(name)
}

async fn progress(pool: &PgPool, schema: &str, consumer: &str, topic: &str) -> anyhow::Result<BTreeMap<i32, i64>> {
    let sql = format!(
        "SELECT partition, next_offset FROM \"{}\".consumer_progress WHERE consumer = $1 AND topic = $2",
        valid_schema(schema)?
    );
    let rows: Vec<(i32, i64)> =
        sqlx::query_as(&sql).bind(consumer).bind(topic).fetch_all(pool).await.unwrap_or_default();
    Ok(rows.into_iter().collect())
}

fn reached(rebuild: &BTreeMap<i32, i64>, target: &BTreeMap<i32, i64>) -> bool {
    target.iter().all(|(p, offset)| rebuild.get(p).is_some_and(|r| r >= offset))
}

/// What a rebuild's projector does differently from the live one.
pub fn rebuild_settings(config: &mut ct_projector::Config) {
    // A rebuild runs while things may be down; it waits rather than send the log to the DLQ.
    config.consumer.on_exhausted = ct_platform::consumer::OnExhausted::Stop;
    // The rebuilt schema is what gets swapped in; Redis views of it would be thrown away (the
    // live projector's views heal from the swapped-in tables), so none are built.
    config.views.enabled = false;
    // Reading history, not following the head: bigger batches, fewer transactions, and the
    // partitions applied by two consumers side by side.
    config.consumer.batch_max = config.consumer.batch_max.max(REBUILD_BATCH);
    config.consumer.parallelism = config.consumer.parallelism.max(REBUILD_PARALLELISM);
}

const REBUILD_BATCH: usize = 10_000;
const REBUILD_PARALLELISM: u32 = 2;

/// The secondary indexes of a schema, dropped for a bulk load and created again after it (as
/// `pg_restore` does): maintaining them row by row costs more than building them once.
pub struct DeferredIndexes {
    definitions: Vec<String>,
}

impl DeferredIndexes {
    /// Creates the projector's tables in `schema` (its migrations) and drops their non-unique
    /// indexes; unique ones stay, because inserts rely on them (`ON CONFLICT`).
    pub async fn drop_from(config: &ct_projector::Config) -> anyhow::Result<DeferredIndexes> {
        let pool = ct_platform::postgres::connect(&config.postgres).await?;
        store::migrate(&pool).await?;
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT quote_ident(i.relname), pg_get_indexdef(i.oid)
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND NOT x.indisunique AND NOT x.indisprimary
             ORDER BY i.relname",
        )
        .fetch_all(&pool)
        .await?;
        for (name, _) in &indexes {
            sqlx::query(&format!("DROP INDEX {name}")).execute(&pool).await?;
        }
        pool.close().await;
        Ok(DeferredIndexes { definitions: indexes.into_iter().map(|(_, definition)| definition).collect() })
    }

    /// Creates the indexes again (the definitions name their schema).
    pub async fn restore(self, pool: &PgPool) -> anyhow::Result<()> {
        for definition in &self.definitions {
            sqlx::query(definition).execute(pool).await.with_context(|| format!("restoring `{definition}`"))?;
        }
        Ok(())
    }
}

pub async fn rebuild(options: RebuildOptions) -> anyhow::Result<RebuildReport> {
    let live = &options.live;
    let live_schema = valid_schema(&live.postgres.schema)?.to_owned();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let mut target = live.clone();
    target.consumer.name = format!("{}-rebuild-{stamp}", live.consumer.name);
    rebuild_settings(&mut target);
    target.postgres.schema = format!("{live_schema}_rebuild_{stamp}");
    target.redis.key_prefix = format!("{}:rebuild:{stamp}", live.redis.key_prefix);
    target.http.listen = "127.0.0.1:0".parse().expect("literal address");
    let rebuild_schema = target.postgres.schema.clone();

    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&live.postgres.url)
        .await
        .context("connecting to Postgres")?;
    let stop = CancellationToken::new();
    let started = std::time::Instant::now();
    let deferred = DeferredIndexes::drop_from(&target).await.context("preparing the rebuild schema")?;
    let runner = tokio::spawn(ct_projector::run(target.clone(), stop.clone()));

    // Catch up with where the live projector stands now.
    let deadline = tokio::time::Instant::now() + options.timeout;
    let goal = progress(&admin, &live_schema, &live.consumer.name, &live.consumer.topic).await?;
    loop {
        if runner.is_finished() {
            let outcome = runner.await;
            bail!("the rebuild projector stopped: {outcome:?}");
        }
        let now = progress(&admin, &rebuild_schema, &target.consumer.name, &live.consumer.topic).await?;
        if reached(&now, &goal) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            stop.cancel();
            bail!("the rebuild did not reach the live progress {goal:?} within {:?} (at {now:?})", options.timeout);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The history is in; the indexes are built once, before anything reads the rebuilt tables.
    deferred.restore(&admin).await?;
    let seconds = started.elapsed().as_secs_f64();

    let mut swapped_out = None;
    let (live_sums, rebuild_sums, same_offsets) = if options.swap {
        let (sums, same, old) =
            swap(&admin, live, &target, &live_schema, &rebuild_schema, &stamp, deadline, &stop, runner).await?;
        swapped_out = Some(old);
        sums.map_or((BTreeMap::new(), BTreeMap::new(), same), |(a, b)| (a, b, same))
    } else {
        stop.cancel();
        let _ = runner.await;
        let live_pool = schema_pool(live, &live_schema).await?;
        let rebuild_pool = schema_pool(live, &rebuild_schema).await?;
        let same = progress(&admin, &live_schema, &live.consumer.name, &live.consumer.topic).await?
            == progress(&admin, &rebuild_schema, &target.consumer.name, &live.consumer.topic).await?;
        (store::checksums(&live_pool).await?, store::checksums(&rebuild_pool).await?, same)
    };
    let events: i64 = {
        let schema = if options.swap { &live_schema } else { &rebuild_schema };
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".events")).fetch_one(&admin).await?
    };
    Ok(RebuildReport {
        identical: live_sums == rebuild_sums,
        live_schema,
        rebuild_schema,
        events,
        seconds,
        events_per_second: events as f64 / seconds.max(f64::EPSILON),
        live_checksums: live_sums,
        rebuild_checksums: rebuild_sums,
        compared_at_same_offsets: same_offsets,
        swapped_out,
    })
}

async fn schema_pool(live: &Config, schema: &str) -> anyhow::Result<PgPool> {
    let mut config = live.postgres.clone();
    config.schema = schema.to_owned();
    config.max_connections = 2;
    Ok(ct_platform::postgres::connect(&config).await?)
}

type Sums = Option<(BTreeMap<&'static str, String>, BTreeMap<&'static str, String>)>;

/// Locks the live progress (pausing the live projector), lets the rebuild reach it, stops the
/// rebuild, compares, renames and commits.
#[allow(clippy::too_many_arguments)]
async fn swap(
    admin: &PgPool,
    live: &Config,
    target: &Config,
    live_schema: &str,
    rebuild_schema: &str,
    stamp: &str,
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
    runner: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<(Sums, bool, String)> {
    let old = format!("{live_schema}_old_{stamp}");
    let mut tx = admin.begin().await?;
    // Pause the live projector: its batch transaction starts by inserting into `events`, so this
    // lock waits for a batch in flight to commit and makes the next one wait (nothing fails).
    // Once the swap commits, the waiting INSERT resolves `events` by name again and lands in the
    // swapped-in schema; locking only the progress table would let a batch that had already
    // inserted finish into the old schema (a test caught exactly that).
    sqlx::query(&format!("LOCK TABLE \"{live_schema}\".events IN EXCLUSIVE MODE")).execute(&mut *tx).await?;
    sqlx::query(&format!("LOCK TABLE \"{live_schema}\".consumer_progress IN EXCLUSIVE MODE")).execute(&mut *tx).await?;
    let live_at: BTreeMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(&format!(
        "SELECT partition, next_offset FROM \"{live_schema}\".consumer_progress WHERE consumer = $1 AND topic = $2"
    ))
    .bind(&live.consumer.name)
    .bind(&live.consumer.topic)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    while !reached(&progress(admin, rebuild_schema, &target.consumer.name, &live.consumer.topic).await?, &live_at) {
        if tokio::time::Instant::now() > deadline || runner.is_finished() {
            tx.rollback().await?;
            stop.cancel();
            bail!("the rebuild could not catch up with the live projector (at {live_at:?}) before the timeout");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let _ = runner.await;
    let rebuild_at = progress(admin, rebuild_schema, &target.consumer.name, &live.consumer.topic).await?;
    let same = rebuild_at == live_at;
    let sums = if same {
        let live_pool = schema_pool(live, live_schema).await?;
        let rebuild_pool = schema_pool(live, rebuild_schema).await?;
        Some((store::checksums(&live_pool).await?, store::checksums(&rebuild_pool).await?))
    } else {
        None
    };
    sqlx::query(&format!("ALTER SCHEMA \"{live_schema}\" RENAME TO \"{old}\"")).execute(&mut *tx).await?;
    sqlx::query(&format!("ALTER SCHEMA \"{rebuild_schema}\" RENAME TO \"{live_schema}\"")).execute(&mut *tx).await?;
    // Carry the live consumer's position over, so a restart of it resumes rather than restarts.
    for (partition, next) in &live_at {
        sqlx::query(&format!(
            "INSERT INTO \"{live_schema}\".consumer_progress (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
        ))
        .bind(&live.consumer.name)
        .bind(&live.consumer.topic)
        .bind(partition)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((sums, same, old))
}
