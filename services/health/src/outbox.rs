//! Status changes reach `ct.health.v1` through an outbox: the evaluator writes each change in the
//! same transaction as the status; this relay produces the rows in order (idempotent, `acks=all`)
//! and deletes them once acknowledged. A broker outage delays changes, never drops them; a crash
//! between the acknowledgement and the delete produces a row again (at least once: consumers
//! dedupe on `(system_id, last_transition_time)`).

use std::time::Duration;

use ct_platform::{config::KafkaConfig, kafka};
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    topic: String,
}

impl Relay {
    pub fn new(pool: PgPool, kafka: &KafkaConfig, topic: &str) -> Result<Relay, rdkafka::error::KafkaError> {
        Ok(Relay { pool, producer: kafka::idempotent_producer(kafka, TIMEOUT)?, topic: topic.to_owned() })
    }

    /// Produces what the outbox holds, oldest first; returns how many rows were delivered.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut delivered = 0;
        loop {
            let rows: Vec<(i64, String, Vec<u8>)> =
                sqlx::query_as("SELECT id, system_id, value FROM outbox ORDER BY id LIMIT $1")
                    .bind(BATCH)
                    .fetch_all(&self.pool)
                    .await?;
            if rows.is_empty() {
                return Ok(delivered);
            }
            // One producer keeps the order of a key's records (idempotence, in-flight ≤ 5).
            let sends = rows.iter().map(|(_, system, value)| {
                self.producer.send(FutureRecord::to(&self.topic).key(system).payload(value), TIMEOUT)
            });
            for outcome in join_all(sends).await {
                outcome.map_err(|(error, _)| error)?;
            }
            let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&self.pool).await?;
            delivered += rows.len();
            metrics::counter!("ct_health_changes_published_total").increment(rows.len() as u64);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Drains the outbox every `interval` until `shutdown`; failures are logged once and retried.
pub async fn run(relay: Relay, interval: Duration, shutdown: CancellationToken) {
    let mut failing = false;
    while !shutdown.is_cancelled() {
        match relay.drain().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("Health changes are published again.");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Health changes could not be published; retrying.");
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}
