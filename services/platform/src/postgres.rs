//! Postgres pools whose connections work inside one schema.

use std::time::Duration;

use sqlx::{Executor, PgPool, postgres::PgPoolOptions};

use crate::config::PostgresConfig;

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
        .acquire_timeout(Duration::from_secs(10))
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
