//! Publishes decided digests, oldest day first: the Markdown and JSON into the archive folder
//! (file names carry the content's SHA-256, so writing one twice is harmless), then a
//! `ct.v1.Digest` record on `ct.digests.v1` keyed by the day (idempotent producer, `acks=all`),
//! then the row marked published together with one notification per channel of `deliver_to`
//! (the platform's notifier sends them, exactly once per day and channel: see `ct_platform::notify`).
//! A crash before the mark publishes the record again: at least once, and readers dedupe on
//! `(day, sha256)`; the notifications are only written with the mark, once. A digest published
//! more than `late_after_s` after it was due (the service was down at 08:00, the clock stalled)
//! says so, in the record and in the messages.
//!
//! Blocked timesheet gates go the same way: a `timesheet.gate.blocked` event through the edge
//! (event id `timesheet-gate-<period>`, so sending it again after a crash is one event), then the
//! gate marked announced together with its notifications to `timesheets.notify_to`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use chrono::{DateTime, NaiveDate, Utc};
use ct_core::digest::{Published, encode_published};
use ct_platform::{
    kafka,
    registry::{RegistryClient, RegistryError},
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::Config;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Publisher {
    pool: PgPool,
    producer: FutureProducer,
    topic: String,
    schema_id: u32,
    archive: Option<PathBuf>,
    late_after: chrono::Duration,
    interval: Duration,
    deliver_to: Vec<String>,
    edge: ct_client::Client,
    gate_notify_to: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("encoding the record: {0}")]
    Codec(#[from] ct_core::avro::CodecError),
    #[error("the edge refused or was unreachable: {0}")]
    Edge(#[from] ct_client::SendError),
    #[error("archive {path}: {source}")]
    Archive { path: PathBuf, source: std::io::Error },
}

/// A blocked, unannounced gate: period, deadline, expected, missing, threshold, decided minute.
type BlockedGate = (String, DateTime<Utc>, i32, Vec<String>, i32, DateTime<Utc>);

/// A decided, unpublished digest.
type Row = (NaiveDate, String, String, String, String, DateTime<Utc>);

impl Publisher {
    pub async fn connect(pool: PgPool, service: &Config) -> Result<Publisher, PublishError> {
        let config = &service.publisher;
        let subject = ct_platform::registry::value_subject(&config.digests_topic);
        let schema_id =
            RegistryClient::new(&service.registry.url).register(&subject, ct_core::digest::RECORD_SCHEMA_JSON).await?;
        Ok(Publisher {
            pool,
            producer: kafka::idempotent_producer(&service.kafka, TIMEOUT)?,
            topic: config.digests_topic.clone(),
            schema_id,
            archive: (!config.archive_dir.is_empty()).then(|| PathBuf::from(&config.archive_dir)),
            late_after: chrono::Duration::seconds(config.late_after_s),
            interval: Duration::from_millis(config.poll_interval_ms),
            deliver_to: config.deliver_to.clone(),
            edge: service.edge.client(ct_client::RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
                timeout: Duration::from_secs(5),
            }),
            gate_notify_to: service.timesheets.notify_to.clone(),
        })
    }

    /// Publishes every decided digest not published yet, then announces blocked gates; returns
    /// how many of both.
    pub async fn drain(&self) -> Result<usize, PublishError> {
        Ok(self.publish_digests().await? + self.announce_gates().await?)
    }

    /// Writes each blocked, unannounced timesheet gate to the log through the edge, then marks it
    /// announced with its notifications, in one transaction.
    async fn announce_gates(&self) -> Result<usize, PublishError> {
        let gates: Vec<BlockedGate> = sqlx::query_as(
            "SELECT period, deadline, expected, missing, threshold, decided_minute FROM timesheet_gates
             WHERE blocked AND announced_at IS NULL ORDER BY week",
        )
        .fetch_all(&self.pool)
        .await?;
        for (period, deadline, expected, missing, threshold, decided_minute) in &gates {
            let payload = serde_json::json!({
                "period": period,
                "deadline": deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "expected": expected,
                "missing": missing.len(),
                "threshold": threshold,
                "missingContractors": missing.join(","),
            });
            let event = ct_client::Event::new("timesheet.gate.blocked", payload)
                .map_err(ct_client::SendError::Invalid)?
                .with_id(format!("timesheet-gate-{period}"))
                .with_ts(decided_minute.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            self.edge.send(&event).await?;
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE timesheet_gates SET announced_at = now() WHERE period = $1")
                .bind(period)
                .execute(&mut *tx)
                .await?;
            let title =
                format!("[GATE] Timesheets for {period}: {} of {expected} missing at the deadline", missing.len());
            let body = format!(
                "The timesheet deadline for {period} passed at {} with {} of {expected} expected timesheets \
                 missing (more than the threshold of {threshold}): {}.\nInvoice generation for the week \
                 should wait (the timesheet.gate.blocked event is on the log).",
                deadline.format("%Y-%m-%d %H:%M UTC"),
                missing.len(),
                missing.join(", "),
            );
            let subject = format!("timesheet-gate-{period}");
            queue_notifications(&mut tx, (&subject, "blocked"), &self.gate_notify_to, &title, &body).await?;
            tx.commit().await?;
            tracing::warn!(%period, missing = missing.len(), "Timesheet gate blocked: announced.");
        }
        Ok(gates.len())
    }

    async fn publish_digests(&self) -> Result<usize, PublishError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT day, time_zone, sha256, json, markdown, due_at FROM digests WHERE published_at IS NULL ORDER BY day",
        )
        .fetch_all(&self.pool)
        .await?;
        for (day, time_zone, sha256, json, markdown, due_at) in &rows {
            let published_at = Utc::now();
            let late = published_at > *due_at + self.late_after;
            let archived = match &self.archive {
                Some(dir) => Some(archive(dir, *day, sha256, json, markdown).await?),
                None => None,
            };
            let record = Published {
                day: day.to_string(),
                time_zone: time_zone.clone(),
                sha256: sha256.clone(),
                json: json.clone(),
                markdown: markdown.clone(),
                due_at: *due_at,
                published_at,
                late,
            };
            let mut value = Vec::new();
            ct_core::avro::wire::write_header(self.schema_id, &mut value);
            value.extend(encode_published(&record)?);
            let key = day.to_string();
            self.producer
                .send(FutureRecord::to(&self.topic).key(&key).payload(&value), TIMEOUT)
                .await
                .map_err(|(error, _)| error)?;
            let mut tx = self.pool.begin().await?;
            sqlx::query("UPDATE digests SET published_at = $2, late = $3, archived = $4 WHERE day = $1")
                .bind(day)
                .bind(published_at)
                .bind(late)
                .bind(archived.as_ref().map(|p| p.display().to_string()))
                .execute(&mut *tx)
                .await?;
            let title = message_title(*day, late, *due_at, published_at);
            queue_notifications(&mut tx, (&format!("digest-{day}"), "daily"), &self.deliver_to, &title, markdown)
                .await?;
            tx.commit().await?;
            metrics::counter!("ct_digest_digests_published_total", "late" => if late { "true" } else { "false" })
                .increment(1);
            if late {
                tracing::warn!(%day, %due_at, %published_at, "Daily digest published late.");
            } else {
                tracing::info!(%day, "Daily digest published.");
            }
        }
        Ok(rows.len())
    }
}

/// One pending notification per channel for the platform's notifier (`ct_platform::notify`);
/// a subject and kind already queued for a channel is not queued again.
async fn queue_notifications(
    tx: &mut sqlx::PgConnection,
    (subject, kind): (&str, &str),
    channels: &[String],
    title: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    for channel in channels {
        sqlx::query(
            "INSERT INTO notifications (subject, kind, channel, title, body, state)
             VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT (subject, kind, channel) DO NOTHING",
        )
        .bind(subject)
        .bind(kind)
        .bind(channel)
        .bind(title)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The subject of a digest's message: the day, and when late, by how much.
fn message_title(day: NaiveDate, late: bool, due_at: DateTime<Utc>, published_at: DateTime<Utc>) -> String {
    if late {
        let format = "%Y-%m-%d %H:%M:%S UTC";
        format!(
            "[LATE] Daily digest for {day} (due {}, published {})",
            due_at.format(format),
            published_at.format(format)
        )
    } else {
        format!("Daily digest for {day}")
    }
}

/// Writes `<day>-<sha256 prefix>.md` and `.json` into `dir` (through a temporary file, so a
/// reader never sees half a digest); answers the Markdown's path.
async fn archive(
    dir: &Path,
    day: NaiveDate,
    sha256: &str,
    json: &str,
    markdown: &str,
) -> Result<PathBuf, PublishError> {
    let base = format!("{day}-{}", &sha256[..sha256.len().min(16)]);
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| PublishError::Archive { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(failed(dir))?;
    for (extension, content) in [("json", json), ("md", markdown)] {
        let path = dir.join(format!("{base}.{extension}"));
        let partial = dir.join(format!(".{base}.{extension}.partial"));
        tokio::fs::write(&partial, content).await.map_err(failed(&partial))?;
        tokio::fs::rename(&partial, &path).await.map_err(failed(&path))?;
    }
    Ok(dir.join(format!("{base}.md")))
}

/// Publishes every `interval` until `shutdown`; failures are logged once and retried.
pub async fn run(publisher: Publisher, shutdown: CancellationToken) {
    let mut failing = false;
    while !shutdown.is_cancelled() {
        match publisher.drain().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("Daily digests are published again.");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Daily digests could not be published; retrying.");
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(publisher.interval) => {}
        }
    }
}
