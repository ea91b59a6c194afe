//! Topic-to-topic stages, exactly once: read a record, let a [`Router`] say where it goes (and
//! from when), write it there, and commit the input offsets **in the same Kafka transaction**
//! (read-process-write, KIP-98). A crash between the write and the commit aborts both, so every
//! input record lands exactly once in its output topic as seen by `read_committed` readers.
//!
//! Used by the DLQ categoriser (`ct.dlq.v1` -> category topics) and the transient retry
//! (`ct.dlq.transient.v1` -> `ct.retry.v1` once due). Progress lives in the consumer group's
//! committed offsets, which is what Kafka transactions commit; read models use the Postgres
//! progress of [`crate::consumer`] instead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::KafkaConfig,
    consumer::{self, Incoming},
    kafka,
};

/// Where one record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Write the record (same key and value) to `topic`, with its headers plus `headers`
    /// (a header of the same name is replaced).
    Forward { topic: String, headers: Vec<(String, String)> },
    /// Not before `at`: the relay commits what it has, waits, and asks again.
    NotBefore(DateTime<Utc>),
}

pub trait Router: Send + Sync {
    fn route(&self, record: &Incoming, now: DateTime<Utc>) -> Route;
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Consumer group (holds the committed progress) and transactional id prefix.
    pub name: String,
    pub input_topic: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub transaction_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
    #[error("consumer group metadata unavailable")]
    NoGroupMetadata,
}

/// Runs the relay until `shutdown`. A failed transaction is aborted and the relay restarts from
/// the committed offsets after a backoff, so a broker outage delays records but loses none.
pub async fn run(
    kafka_config: &KafkaConfig,
    settings: &RelaySettings,
    router: &dyn Router,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match relay(kafka_config, settings, router, &shutdown).await {
            Ok(()) => return,
            Err(error) => {
                metrics::counter!("ct_relay_restarts_total", "relay" => settings.name.clone()).increment(1);
                tracing::warn!(relay = %settings.name, %error, ?backoff, "Relay transaction failed; restarting from committed offsets.");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

struct Transaction {
    producer: FutureProducer,
    timeout: Duration,
}

impl Transaction {
    /// Runs a blocking transactional call off the async threads.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FutureProducer, Duration) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, KafkaError> {
        let (producer, timeout) = (self.producer.clone(), self.timeout);
        tokio::task::spawn_blocking(move || f(&producer, timeout)).await.expect("transactional call panicked")
    }
}

async fn relay(
    kafka_config: &KafkaConfig,
    settings: &RelaySettings,
    router: &dyn Router,
    shutdown: &CancellationToken,
) -> Result<(), RelayError> {
    let consumer: StreamConsumer = kafka::client_config(kafka_config)
        .set("group.id", &settings.name)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()?;
    let partitions = kafka::partition_count_async(kafka_config, &settings.input_topic, Duration::from_secs(10))
        .await?
        .ok_or_else(|| RelayError::NoPartitions(settings.input_topic.clone()))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(&settings.input_topic, partition, Offset::Stored)?;
    }
    consumer.assign(&assignment)?;
    let group = consumer.group_metadata().ok_or(RelayError::NoGroupMetadata)?;

    let producer: FutureProducer = kafka::client_config(kafka_config)
        .set("transactional.id", format!("{}:{}", settings.name, settings.input_topic))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transaction.timeout.ms", settings.transaction_timeout.as_millis().to_string())
        .create()?;
    let tx = Transaction { producer, timeout: Duration::from_secs(30) };
    // Fences any older instance with the same transactional id and aborts what it left open.
    tx.call(|p, t| p.init_transactions(t)).await?;
    tracing::info!(relay = %settings.name, topic = %settings.input_topic, "Relay started.");

    let group = std::sync::Arc::new(group);
    while let Some(batch) =
        consumer::next_batch(&consumer, &settings.name, settings.batch_max, settings.batch_wait, shutdown).await
    {
        tx.producer.begin_transaction()?;
        let mut offsets = TopicPartitionList::new();
        let mut open = 0_usize;
        for record in &batch {
            loop {
                match router.route(record, Utc::now()) {
                    Route::Forward { topic, headers } => {
                        send(&tx.producer, record, &topic, &headers)?;
                        metrics::counter!("ct_relay_records_total", "relay" => settings.name.clone(), "topic" => topic)
                            .increment(1);
                        break;
                    }
                    Route::NotBefore(at) => {
                        // Commit what is done so far, so waiting holds no transaction open.
                        if open > 0 {
                            commit(&tx, &offsets, &group).await?;
                            tx.producer.begin_transaction()?;
                            open = 0;
                        }
                        let wait = (at - Utc::now()).to_std().unwrap_or_default();
                        tracing::debug!(relay = %settings.name, ?wait, "Waiting until the next record is due.");
                        tokio::select! {
                            () = shutdown.cancelled() => {
                                tx.call(|p, t| p.abort_transaction(t)).await?;
                                return Ok(());
                            }
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            let c = &record.coordinates;
            offsets.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.offset + 1))?;
            open += 1;
        }
        commit(&tx, &offsets, &group).await?;
    }
    Ok(())
}

async fn commit(
    tx: &Transaction,
    offsets: &TopicPartitionList,
    group: &std::sync::Arc<rdkafka::consumer::ConsumerGroupMetadata>,
) -> Result<(), KafkaError> {
    let (offsets, group) = (offsets.clone(), std::sync::Arc::clone(group));
    let result = tx
        .call(move |p, t| {
            p.send_offsets_to_transaction(&offsets, &group, t)?;
            p.commit_transaction(t)
        })
        .await;
    if result.is_err() {
        let _ = tx.call(|p, t| p.abort_transaction(t)).await;
    }
    result
}

fn send(
    producer: &FutureProducer,
    record: &Incoming,
    topic: &str,
    extra: &[(String, String)],
) -> Result<(), KafkaError> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in record.headers.iter().filter(|(key, _)| !extra.iter().any(|(k, _)| k == key)).chain(extra) {
        headers = headers.insert(Header { key, value: Some(value.as_str()) });
    }
    let mut out = FutureRecord::to(topic).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        out = out.payload(value.as_slice());
    }
    // The delivery is confirmed by commit_transaction, which fails if any send failed.
    producer.send_result(out).map(drop).map_err(|(error, _)| error)
}
