//! Postgres pools whose connections work inside one schema.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use sqlx::{Executor, PgPool, Postgres, Transaction, postgres::PgPoolOptions};

use crate::{config::PostgresConfig, consumer::ProcessError};

/// A pool whose every connection has `search_path` set to `config.schema` (created if missing).
pub async fn connect(config: &PostgresConfig) -> Result<PgPool, sqlx::Error> {
    let schema = config.schema.clone();
    if !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') || schema.is_empty() {
        return Err(sqlx::Error::Configuration(format!("invalid schema name `{schema}`").into()));
    }
    let bootstrap = PgPoolOptions::new().max_connections(1).connect(&config.url).await?;
    match bootstrap.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str()).await {
        Ok(_) => {}
        // Two connections creating the same schema at once: the loser sees a unique violation.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(other) => return Err(other),
    }
    bootstrap.close().await;
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                conn.execute(format!("SET search_path TO \"{schema}\"").as_str()).await?;
                Ok(())
            })
        })
        .connect(&config.url)
        .await
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

/// Connection loss, timeouts and pool exhaustion are transient; bad data is permanent.
pub fn classify(error: sqlx::Error) -> ProcessError {
    match &error {
        sqlx::Error::Database(db) => match db.code().as_deref().map(|c| &c[..2]) {
            Some("22" | "23") => ProcessError::Permanent(error.to_string()),
            _ => ProcessError::Transient(error.to_string()),
        },
        _ => ProcessError::Transient(error.to_string()),
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

/// Stores progress inside the caller's transaction, next to the effects it belongs to.
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
