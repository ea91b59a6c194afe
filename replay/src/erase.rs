//! `ct erase --source <s> --before <t> --reason <why>`: erases one producer's event payloads
//! before a time, through the log. It writes a `ct.v1.Erasure` record (who, when, what, why: the
//! audit) to the audit topic, keyed by the source, and waits until the projector has applied it.
//! The projector keeps each event's row (counts and positions stay true) with the payload
//! replaced by `{"erased": true}`, and erases events of that source read later (a replay, a
//! rebuild, a restore) the same way. The log itself keeps the records until its retention:
//! see the README, "Backups and restore".

use std::{str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use ct_core::{
    Source,
    erasure::{self, Erasure},
};
use ct_platform::{audit::RecordWriter, registry::RegistryClient};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("--source `{0}` is not a producer; known: {1}")]
    UnknownSource(String, String),
    #[error("--reason must say why (a ticket, a request)")]
    NoReason,
    #[error("--before {0} is in the future: only what was received can be erased")]
    FutureBefore(DateTime<Utc>),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("writing the erasure record: {0}")]
    Write(#[from] ct_platform::audit::WriteError),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("encoding the erasure: {0}")]
    Encode(#[from] ct_core::avro::CodecError),
    #[error(
        "the projector did not apply erasure {0} within {1:?}; it is in the log and will be applied when the projector runs"
    )]
    NotApplied(String, Duration),
}

/// What an erasure would touch in the projector's tables.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub source: String,
    pub before: DateTime<Utc>,
    /// Events of the source before the time.
    pub events: i64,
    /// Of those, already erased.
    pub already_erased: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub erasure_id: String,
    pub source: String,
    pub before: DateTime<Utc>,
    /// Events of the source before the time whose payload is now erased.
    pub erased: i64,
}

async fn connect(config: &ct_projector::Config) -> Result<PgPool, sqlx::Error> {
    let mut postgres = config.postgres.clone();
    postgres.extra_schemas.clear();
    postgres.max_connections = 2;
    ct_platform::postgres::connect(&postgres).await
}

/// Checks the request and counts what it touches.
pub async fn plan(
    config: &ct_projector::Config,
    source: &str,
    before: DateTime<Utc>,
    reason: &str,
) -> Result<Plan, EraseError> {
    if Source::from_str(source).is_err() {
        let known: Vec<&str> = Source::SENDERS.iter().map(|s| s.as_str()).collect();
        return Err(EraseError::UnknownSource(source.to_owned(), known.join(", ")));
    }
    if reason.trim().is_empty() {
        return Err(EraseError::NoReason);
    }
    if before > Utc::now() + chrono::Duration::minutes(5) {
        return Err(EraseError::FutureBefore(before));
    }
    let pool = connect(config).await?;
    let (events, already_erased): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE payload = $3) FROM events WHERE source = $1 AND ts < $2",
    )
    .bind(source)
    .bind(before)
    .bind(erasure::erased_payload())
    .fetch_one(&pool)
    .await?;
    Ok(Plan { source: source.to_owned(), before, events, already_erased })
}

/// Writes the erasure to the log and waits (up to `wait`) until the projector has applied it.
pub async fn erase(
    config: &ct_projector::Config,
    plan: &Plan,
    actor: &str,
    reason: &str,
    wait: Duration,
) -> Result<Outcome, EraseError> {
    let erasure = Erasure {
        erasure_id: uuid::Uuid::now_v7().to_string(),
        source: plan.source.clone(),
        before: plan.before,
        actor: actor.to_owned(),
        at: Utc::now(),
        reason: reason.to_owned(),
    };
    let writer = RecordWriter::new(
        &config.kafka,
        RegistryClient::new(&config.registry.url),
        &config.consumer.audit_topic,
        "ct.v1.Erasure",
        erasure::SCHEMA_JSON,
        Duration::from_secs(30),
    )?;
    let datum = erasure::encode(&erasure)?;
    writer.write(&erasure.source, &datum).await?;
    let pool = connect(config).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let applied: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM erasures WHERE erasure_id = $1)")
            .bind(&erasure.erasure_id)
            .fetch_one(&pool)
            .await?;
        if applied {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(EraseError::NotApplied(erasure.erasure_id, wait));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let erased: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE source = $1 AND ts < $2 AND payload = $3")
        .bind(&erasure.source)
        .bind(erasure.before)
        .bind(erasure::erased_payload())
        .fetch_one(&pool)
        .await?;
    Ok(Outcome { erasure_id: erasure.erasure_id, source: erasure.source, before: erasure.before, erased })
}
