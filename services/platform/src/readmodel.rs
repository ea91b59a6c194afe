//! Read models own their state (design invariant 8): each has its own Postgres schema, its
//! migrations and its progress rows, and one generic procedure rebuilds any of them from the log.
//!
//! A read model is a [`Pipeline`](crate::consumer::Pipeline) run by [`consumer::run`] (live), and
//! a [`ReadModel`] that tells this module what it needs to rebuild and swap it:
//!
//! - **rebuild**: a copy of the model (its own schema `<live>_rebuild_<time>` and consumer name)
//!   reads its topics from offset 0 beside the live one, which keeps serving;
//! - **swap**: the live model's progress table is locked (its next batch waits), the copy is
//!   brought to exactly the live progress (a [`Horizon`] stops it there), every table's checksum is
//!   compared, and only when all are equal are the schemas renamed (the live one is kept as
//!   `<live>_old_<time>`) and the live progress carried over. Otherwise nothing changes and the
//!   tables that differ are named. The live model keeps its connections; by name they reach the
//!   swapped-in tables. No batch straddles the rename: each holds the schema's swap lock (shared)
//!   for its whole transaction, and the swap holds it exclusively.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Serialize;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{KafkaConfig, PostgresConfig},
    consumer::{BoxFuture, Coordinates},
};

/// One checksum per table, over the content only (never over when a row was processed).
pub type Checksums = BTreeMap<String, String>;

/// How far a rebuild copy may read: none of its topics' records at or after the offsets set here.
/// Unset, it reads everything. Topics not named are never bounded.
#[derive(Debug, Clone, Default)]
pub struct Horizon(Arc<RwLock<Option<Bounds>>>);

/// Topic -> partition -> first offset not to read.
type Bounds = HashMap<String, HashMap<i32, i64>>;

impl Horizon {
    /// Bounds `topic` to `offsets` (partition -> first offset not to read; absent: none).
    pub fn set(&self, topic: &str, offsets: HashMap<i32, i64>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(topic.to_owned(), offsets);
    }

    /// May the record at `at` be read?
    pub fn allows(&self, at: &Coordinates) -> bool {
        match self.0.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|h| h.get(&at.topic)) {
            None => true,
            Some(offsets) => offsets.get(&at.partition).is_some_and(|end| at.offset < *end),
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// A copy of a read model for a rebuild.
#[derive(Debug, Clone)]
pub struct Copy {
    /// The fresh schema it writes.
    pub schema: String,
    /// Its consumer name (group and progress key), apart from the live one.
    pub consumer: String,
    pub horizon: Horizon,
}

/// What the rebuild needs to know of a read model; each read model implements it beside its
/// pipeline.
pub trait ReadModel: Send + Sync {
    /// The name `ct rebuild <name>` takes.
    fn name(&self) -> &'static str;
    /// The live model's Postgres configuration; `schema` is the model's own.
    fn postgres(&self) -> &PostgresConfig;
    /// The cluster its topics are on.
    fn kafka(&self) -> &KafkaConfig;
    /// The live consumer name (group and progress key).
    fn consumer(&self) -> &str;
    /// The input topics whose progress a copy must reach before it can be compared.
    fn topics(&self) -> Vec<String>;
    /// Creates the model's tables in the schema of `pool`.
    fn migrate<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>>;
    /// The checksum of each table in the schema of `pool`.
    fn checksums<'a>(&'a self, pool: &'a PgPool) -> BoxFuture<'a, Result<Checksums, sqlx::Error>>;
    /// After [`build_fresh`] (a restore): settles what the history decided that the service
    /// must not do again once it starts (notifications sent before the backup). Default: nothing.
    fn settle_history<'a>(&'a self, _pool: &'a PgPool) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async { Ok(()) })
    }
    /// Runs `copy` until `stop`: the same pipeline in its own schema and group, with rebuild
    /// settings (no cache side effects, large batches), never past `copy.horizon`.
    fn run_copy(&self, copy: Copy, stop: CancellationToken) -> BoxFuture<'static, Result<(), String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("invalid schema name `{0}`")]
    SchemaName(String),
    #[error("the rebuild copy stopped: {0}")]
    CopyStopped(String),
    #[error("the rebuild did not reach the live progress in time: {0}")]
    Timeout(String),
    #[error("the live read model has consumed nothing yet: there is nothing to compare a rebuild with")]
    NothingConsumed,
    #[error(
        "schema `{0}` already holds this read model's progress: --fresh builds only an empty model (after `ct import`)"
    )]
    NotEmpty(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub model: String,
    pub live_schema: String,
    pub rebuild_schema: String,
    /// Records the copy consumed (sum of its progress).
    pub records: i64,
    pub seconds: f64,
    pub records_per_second: f64,
    pub live_checksums: Checksums,
    pub rebuild_checksums: Checksums,
    /// Tables whose checksums differ (empty: identical).
    pub differing_tables: Vec<String>,
    pub identical: bool,
    /// The schema holding the old tables after a swap (kept for rollback).
    pub swapped_out: Option<String>,
    /// Why a requested swap was refused.
    pub refused: Option<String>,
}

fn valid_schema(name: &str) -> Result<&str, RebuildError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(RebuildError::SchemaName(name.to_owned()));
    }
    Ok(name)
}

/// Progress per topic and partition of `consumer` in `schema` (`None`: the table is missing).
async fn progress<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    schema: &str,
    consumer: &str,
) -> Result<BTreeMap<(String, i32), i64>, RebuildError> {
    let sql = format!(
        "SELECT topic, partition, next_offset FROM \"{}\".consumer_progress WHERE consumer = $1",
        valid_schema(schema)?
    );
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(&sql).bind(consumer).fetch_all(executor).await?;
    Ok(rows.into_iter().map(|(topic, partition, next)| ((topic, partition), next)).collect())
}

/// The part of `progress` on `topics`.
fn on(topics: &[String], progress: &BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), i64> {
    progress.iter().filter(|((topic, _), _)| topics.contains(topic)).map(|(k, v)| (k.clone(), *v)).collect()
}

fn reached(copy: &BTreeMap<(String, i32), i64>, target: &BTreeMap<(String, i32), i64>) -> bool {
    target.iter().all(|(key, offset)| copy.get(key).is_some_and(|c| c >= offset))
}

fn bound(horizon: &Horizon, topics: &[String], target: &BTreeMap<(String, i32), i64>) {
    for topic in topics {
        let offsets = target.iter().filter(|((t, _), _)| t == topic).map(|((_, p), o)| (*p, *o)).collect();
        horizon.set(topic, offsets);
    }
}

async fn schema_pool(live: &PostgresConfig, schema: &str) -> Result<PgPool, RebuildError> {
    let mut config = live.clone();
    config.schema = schema.to_owned();
    config.extra_schemas.clear();
    config.max_connections = 2;
    Ok(crate::postgres::connect(&config).await?)
}

/// Rebuilds `model` from offset 0 beside the live one, compares, and with `swap` swaps it in
/// when (and only when) every table is identical at the same offsets.
pub async fn rebuild(model: &dyn ReadModel, swap: bool, timeout: Duration) -> Result<RebuildReport, RebuildError> {
    let live = model.postgres();
    let live_schema = valid_schema(&live.schema)?.to_owned();
    let topics = model.topics();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let copy = Copy {
        schema: format!("{live_schema}_rebuild_{stamp}"),
        consumer: format!("{}-rebuild-{stamp}", model.consumer()),
        horizon: Horizon::default(),
    };
    let admin = PgPoolOptions::new().max_connections(2).connect(&live.url).await?;
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;

    // First the history up to where the live model stands now, and not beyond (so that, when
    // swapping, the copy can stop exactly where the paused live model stands).
    let goal = on(&topics, &progress(&admin, &live_schema, model.consumer()).await?);
    if goal.is_empty() {
        return Err(RebuildError::NothingConsumed);
    }
    bound(&copy.horizon, &topics, &goal);
    let rebuild_pool = schema_pool(live, &copy.schema).await?;
    model.migrate(&rebuild_pool).await?;
    let deferred = DeferredIndexes::drop_from(&rebuild_pool).await?;
    let stop = CancellationToken::new();
    let runner = tokio::spawn(model.run_copy(copy.clone(), stop.clone()));
    let outcome = catch_up(&admin, &copy, &topics, &goal, deadline, &runner).await;
    if let Err(error) = outcome {
        stop.cancel();
        let _ = runner.await;
        return Err(error);
    }
    // The history is in; the indexes are built once, before anything reads the copy.
    deferred.restore(&rebuild_pool).await?;

    let mut report = RebuildReport {
        model: model.name().to_owned(),
        live_schema: live_schema.clone(),
        rebuild_schema: copy.schema.clone(),
        records: 0,
        seconds: 0.0,
        records_per_second: 0.0,
        live_checksums: Checksums::new(),
        rebuild_checksums: Checksums::new(),
        differing_tables: Vec::new(),
        identical: false,
        swapped_out: None,
        refused: None,
    };
    let finish = |report: &mut RebuildReport, at: &BTreeMap<(String, i32), i64>| {
        report.records = at.values().sum();
        report.seconds = started.elapsed().as_secs_f64();
        report.records_per_second = report.records as f64 / report.seconds.max(f64::EPSILON);
        report.differing_tables = report
            .live_checksums
            .iter()
            .chain(report.rebuild_checksums.iter())
            .filter(|(table, _)| report.live_checksums.get(*table) != report.rebuild_checksums.get(*table))
            .map(|(table, _)| table.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        report.identical = report.differing_tables.is_empty();
    };

    let live_pool = schema_pool(live, &live_schema).await?;
    if !swap {
        stop.cancel();
        let _ = runner.await;
        report.live_checksums = model.checksums(&live_pool).await?;
        report.rebuild_checksums = model.checksums(&rebuild_pool).await?;
        finish(&mut report, &goal);
        return Ok(report);
    }

    // Pause the live model: every batch transaction holds the schema's swap lock in shared mode
    // from its first statement (`postgres::begin_batch`), so this waits for the one in flight and
    // holds the next until the swap is over. Then bring the copy to exactly the same offsets.
    let mut tx = admin.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '.ct-swap'))")
        .bind(&live_schema)
        .execute(&mut *tx)
        .await?;
    let live_at = progress(&mut *tx, &live_schema, model.consumer()).await?;
    let target = on(&topics, &live_at);
    bound(&copy.horizon, &topics, &target);
    let outcome = catch_up(&admin, &copy, &topics, &target, deadline, &runner).await;
    stop.cancel();
    let _ = runner.await;
    outcome?;
    let copy_at = on(&topics, &progress(&admin, &copy.schema, &copy.consumer).await?);
    report.live_checksums = model.checksums(&live_pool).await?;
    report.rebuild_checksums = model.checksums(&rebuild_pool).await?;
    finish(&mut report, &copy_at);
    if copy_at != target {
        report.refused = Some(format!("the copy stands at {copy_at:?}, the live model at {target:?}"));
    } else if !report.identical {
        report.refused = Some(format!("tables differ: {}", report.differing_tables.join(", ")));
    }
    if report.refused.is_some() {
        tx.rollback().await?;
        return Ok(report);
    }
    let old = format!("{live_schema}_old_{stamp}");
    sqlx::query(&format!("ALTER SCHEMA \"{live_schema}\" RENAME TO \"{old}\"")).execute(&mut *tx).await?;
    sqlx::query(&format!("ALTER SCHEMA \"{}\" RENAME TO \"{live_schema}\"", copy.schema)).execute(&mut *tx).await?;
    // Carry the live consumer's position over (every topic, the retry topic included), so it
    // resumes rather than restarts.
    for ((topic, partition), next) in &live_at {
        sqlx::query(&format!(
            "INSERT INTO \"{live_schema}\".consumer_progress (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
        ))
        .bind(model.consumer())
        .bind(topic)
        .bind(partition)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    report.swapped_out = Some(old);
    Ok(report)
}

/// What [`build_fresh`] did.
#[derive(Debug, Clone, Serialize)]
pub struct FreshReport {
    pub model: String,
    pub schema: String,
    /// Records consumed (the sum of the end offsets it was built to).
    pub records: i64,
    pub seconds: f64,
    pub checksums: Checksums,
}

/// Builds an empty read model (its service stopped, e.g. after a restore) in its live schema,
/// under its live consumer name, from offset 0 to the current end of its topics, with the
/// rebuild settings (no cache or outbox side effects), then stops. The service started
/// afterwards resumes from there instead of replaying the history with its side effects.
pub async fn build_fresh(model: &dyn ReadModel, timeout: Duration) -> Result<FreshReport, RebuildError> {
    let live = model.postgres();
    let schema = valid_schema(&live.schema)?.to_owned();
    let admin = PgPoolOptions::new().max_connections(2).connect(&live.url).await?;
    let pool = schema_pool(live, &schema).await?;
    model.migrate(&pool).await?;
    if !progress(&admin, &schema, model.consumer()).await?.is_empty() {
        return Err(RebuildError::NotEmpty(schema));
    }
    let topics = model.topics();
    let consumer: rdkafka::consumer::BaseConsumer = crate::kafka::client_config(model.kafka()).create()?;
    // The goal is the offset after each partition's last record: a partition that ends in a
    // transaction marker has its end offset one past where any consumer's progress can stand.
    let ends = {
        let (topics, kafka) = (topics.clone(), model.kafka().clone());
        tokio::task::spawn_blocking(move || {
            let mut ends = BTreeMap::new();
            let timeout = Duration::from_secs(30);
            for topic in &topics {
                let partitions = crate::kafka::end_offsets(&consumer, topic, timeout)?.len();
                for partition in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
                    if let Some(end) = crate::kafka::end_of_records(&kafka, topic, partition, timeout)? {
                        ends.insert((topic.clone(), partition), end);
                    }
                }
            }
            Ok::<_, rdkafka::error::KafkaError>(ends)
        })
        .await
        .expect("watermark requests panicked")?
    };
    let copy = Copy { schema: schema.clone(), consumer: model.consumer().to_owned(), horizon: Horizon::default() };
    bound(&copy.horizon, &topics, &ends);
    let started = std::time::Instant::now();
    let deferred = DeferredIndexes::drop_from(&pool).await?;
    let stop = CancellationToken::new();
    let runner = tokio::spawn(model.run_copy(copy.clone(), stop.clone()));
    let outcome = catch_up(&admin, &copy, &topics, &ends, tokio::time::Instant::now() + timeout, &runner).await;
    stop.cancel();
    let _ = runner.await;
    // The indexes come back whatever happened: a failed build leaves a usable (if partial)
    // schema, which an operator drops before trying again.
    deferred.restore(&pool).await?;
    outcome?;
    model.settle_history(&pool).await?;
    Ok(FreshReport {
        model: model.name().to_owned(),
        schema,
        records: ends.values().sum(),
        seconds: started.elapsed().as_secs_f64(),
        checksums: model.checksums(&pool).await?,
    })
}

/// The secondary indexes of a schema, dropped for a bulk load and created again after it (as
/// `pg_restore` does): maintaining them row by row costs more than building them once.
pub struct DeferredIndexes {
    definitions: Vec<String>,
}

impl DeferredIndexes {
    /// Drops the non-unique indexes of the schema of `pool`; unique ones stay, because inserts
    /// rely on them (`ON CONFLICT`).
    pub async fn drop_from(pool: &PgPool) -> Result<DeferredIndexes, sqlx::Error> {
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(i.relname), pg_get_indexdef(i.oid)
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             WHERE n.nspname = current_schema() AND NOT x.indisunique AND NOT x.indisprimary
             ORDER BY i.relname",
        )
        .fetch_all(pool)
        .await?;
        for (name, _) in &indexes {
            sqlx::query(&format!("DROP INDEX {name}")).execute(pool).await?;
        }
        Ok(DeferredIndexes { definitions: indexes.into_iter().map(|(_, definition)| definition).collect() })
    }

    /// Creates the indexes again (the definitions name their schema).
    pub async fn restore(self, pool: &PgPool) -> Result<(), sqlx::Error> {
        for definition in &self.definitions {
            sqlx::query(definition).execute(pool).await?;
        }
        Ok(())
    }
}

async fn catch_up(
    admin: &PgPool,
    copy: &Copy,
    topics: &[String],
    target: &BTreeMap<(String, i32), i64>,
    deadline: tokio::time::Instant,
    runner: &tokio::task::JoinHandle<Result<(), String>>,
) -> Result<(), RebuildError> {
    loop {
        if runner.is_finished() {
            return Err(RebuildError::CopyStopped("the copy ended before it caught up".to_owned()));
        }
        // The copy creates its progress table when it starts; until then it has read nothing.
        let at = progress(admin, &copy.schema, &copy.consumer).await.map(|p| on(topics, &p)).unwrap_or_default();
        if reached(&at, target) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RebuildError::Timeout(format!("the copy is at {at:?}, the target {target:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(topic: &str, partition: i32, offset: i64) -> Coordinates {
        Coordinates { topic: topic.to_owned(), partition, offset }
    }

    #[test]
    fn a_horizon_bounds_only_its_topics() {
        let horizon = Horizon::default();
        assert!(horizon.allows(&at("events", 0, 1_000_000)));
        horizon.set("events", [(0, 10)].into());
        assert!(horizon.allows(&at("events", 0, 9)));
        assert!(!horizon.allows(&at("events", 0, 10)));
        assert!(!horizon.allows(&at("events", 1, 0)), "a partition the live model never read");
        assert!(horizon.allows(&at("retry", 0, 99)));
        horizon.set("events", [(0, 20)].into());
        assert!(horizon.allows(&at("events", 0, 15)));
    }

    #[test]
    fn reached_means_every_target_partition() {
        let target: BTreeMap<(String, i32), i64> = [(("e".into(), 0), 5), (("e".into(), 1), 3)].into();
        let mut copy = BTreeMap::from([(("e".to_owned(), 0), 5)]);
        assert!(!reached(&copy, &target));
        copy.insert(("e".into(), 1), 3);
        assert!(reached(&copy, &target));
    }
}
