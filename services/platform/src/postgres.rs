//! Postgres pools whose connections work inside one schema.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use sqlx::{Executor, PgPool, Postgres, Transaction, postgres::PgPoolOptions};

use crate::{
    config::PostgresConfig,
    consumer::{Advance, ProcessError},
};

/// A pool whose every connection has `search_path` set to `config.schema` (created if missing),
/// then `config.extra_schemas`.
pub async fn connect(config: &PostgresConfig) -> Result<PgPool, sqlx::Error> {
    let schema = config.schema.clone();
    for name in std::iter::once(&schema).chain(&config.extra_schemas) {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || name.is_empty() {
            return Err(sqlx::Error::Configuration(format!("invalid schema name `{name}`").into()));
        }
    }
    let bootstrap = PgPoolOptions::new().max_connections(1).connect(&config.url).await?;
    match bootstrap.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str()).await {
        Ok(_) => {}
        // Two connections creating the same schema at once: the loser sees a unique violation.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(other) => return Err(other),
    }
    bootstrap.close().await;
    let search_path: Vec<String> =
        std::iter::once(&schema).chain(&config.extra_schemas).map(|s| format!("\"{s}\"")).collect();
    let set_search_path = format!(
        "SET search_path TO {}; SET statement_timeout = {}",
        search_path.join(", "),
        config.statement_timeout_ms
    );
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .after_connect(move |conn, _meta| {
            let set_search_path = set_search_path.clone();
            Box::pin(async move {
                conn.execute(set_search_path.as_str()).await?;
                Ok(())
            })
        })
        .connect(&config.url)
        .await
}

/// Begins the transaction of a consumer's batch (effects and progress). It first takes the
/// schema's swap lock in shared mode, so a batch runs either wholly before a rebuild's swap or
/// wholly after it ([`crate::readmodel`] takes the lock exclusively); the key is the schema's
/// name, which the swapped-in schema keeps.
pub async fn begin_batch(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext(current_schema() || '.ct-swap'))")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// One migration script of a service.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Applies `owner`'s migrations, once each, recorded in `<owner>_migrations`. One advisory lock
/// per schema serialises every service's migrations, so services that share a table created
/// `IF NOT EXISTS` (the progress table) can start together.
pub async fn migrate(pool: &PgPool, owner: &str, migrations: &[Migration]) -> Result<(), sqlx::Error> {
    let table = format!("{owner}_migrations");
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.ct-migrations'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .execute(&mut *tx)
    .await?;
    for migration in migrations {
        let done: Option<i32> = sqlx::query_scalar(&format!("SELECT version FROM {table} WHERE version = $1"))
            .bind(migration.version)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_none() {
            // A multi-statement script goes through the simple query protocol.
            tx.execute(migration.sql).await?;
            sqlx::query(&format!("INSERT INTO {table} (version, name) VALUES ($1, $2)"))
                .bind(migration.version)
                .bind(migration.name)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

/// Bad data (SQLSTATE classes 22 data exception and 23 integrity violation) is the record's
/// fault; anything else (connection loss, timeouts, pool exhaustion, a server shutting down,
/// serialisation failures) is Postgres being unavailable.
pub fn classify(error: sqlx::Error) -> ProcessError {
    match &error {
        sqlx::Error::Database(db) if matches!(db.code().as_deref().map(|c| &c[..2]), Some("22" | "23")) => {
            ProcessError::Record(error.to_string())
        }
        _ => ProcessError::dependency("postgres", error),
    }
}

impl From<sqlx::Error> for ProcessError {
    fn from(error: sqlx::Error) -> Self {
        classify(error)
    }
}

/// A consumer's stored progress on `topic`: partition -> next offset to read.
pub async fn load_progress(pool: &PgPool, consumer: &str, topic: &str) -> Result<HashMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT partition, next_offset FROM consumer_progress WHERE consumer = $1 AND topic = $2")
            .bind(consumer)
            .bind(topic)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Advances progress inside the caller's transaction, next to the effects it belongs to,
/// compare-and-set: each partition must still hold `from`, otherwise another member of the
/// consumer group advanced it and the whole transaction must be dropped
/// ([`ProcessError::ProgressMoved`]).
pub async fn advance_progress(
    tx: &mut Transaction<'_, Postgres>,
    consumer: &str,
    topic: &str,
    progress: &[Advance],
) -> Result<(), ProcessError> {
    for advance in progress {
        let changed = match advance.from {
            Some(from) => sqlx::query(
                "UPDATE consumer_progress SET next_offset = $4
                 WHERE consumer = $1 AND topic = $2 AND partition = $3 AND next_offset = $5",
            )
            .bind(consumer)
            .bind(topic)
            .bind(advance.partition)
            .bind(advance.to)
            .bind(from)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
            None => sqlx::query(
                "INSERT INTO consumer_progress (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer, topic, partition) DO NOTHING",
            )
            .bind(consumer)
            .bind(topic)
            .bind(advance.partition)
            .bind(advance.to)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        };
        if changed != 1 {
            return Err(ProcessError::ProgressMoved { partition: advance.partition });
        }
    }
    Ok(())
}

/// Sets progress unconditionally (a rebuild's swap carries the live position over).
pub async fn store_progress(
    tx: &mut Transaction<'_, Postgres>,
    consumer: &str,
    topic: &str,
    progress: &BTreeMap<i32, i64>,
) -> Result<(), sqlx::Error> {
    for (partition, next_offset) in progress {
        sqlx::query(
            "INSERT INTO consumer_progress (consumer, topic, partition, next_offset) VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
        )
        .bind(consumer)
        .bind(topic)
        .bind(partition)
        .bind(next_offset)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The progress table every consumer of a schema shares; each service's first migration
/// includes this statement.
pub const PROGRESS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS consumer_progress (
    consumer     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    \"partition\"  INT NOT NULL,
    next_offset  BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, \"partition\")
)";
