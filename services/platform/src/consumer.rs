//! The consumer shape every Control Tower consumer shares: read a topic in its own group, decode,
//! hand a batch to a [`Pipeline`] that applies it **and the consumer's progress in one
//! transaction**, and resume from that stored progress (never from Kafka's committed offsets).
//!
//! Errors are classified: a record that cannot be decoded or fails validation is permanent and
//! goes to the dead-letter topic with its original bytes and context; a dependency failure is
//! transient and retried in place with exponential backoff, a bounded number of times. What
//! happens then is the consumer's choice ([`OnExhausted`]): stop (and say so in logs and
//! `ct_consumer_stopped_total`) rather than skip data, or dead-letter the batch as TRANSIENT so
//! the categoriser's retry hands it back later through `ct.retry.v1` while the stage moves on.
//!
//! A consumer of `ct.retry.v1` ([`ConsumerSettings::retry_of`]) takes only the records whose
//! `ct-retry-stage` names it; a record that fails again is dead-lettered with attempt + 1 and
//! its original coordinates, so every attempt of one record updates one DLQ item.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    time::{Duration, Instant},
};

use chrono::Utc;
use ct_core::dlq::{Context, header};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;

use crate::{config::KafkaConfig, kafka};

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Coordinates {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record as read, before decoding.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub coordinates: Coordinates,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    /// The record's timestamp (milliseconds since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A dependency failed (database down, timeout): retry later, do not skip.
    #[error("transient: {0}")]
    Transient(String),
    /// The data itself cannot be processed: dead-letter it.
    #[error("permanent: {0}")]
    Permanent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("topic {0} has no partitions")]
    NoPartitions(String),
}

/// A boxed `Send` future. The pipeline's methods return these (rather than `impl Future`) so
/// that `Send` is proven in each implementation, where lifetimes are concrete; with sqlx inside,
/// the compiler cannot prove it for every lifetime at the spawn site.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a consumer does with its records.
pub trait Pipeline: Send + Sync + 'static {
    type Item: Send + Sync;

    /// Decodes and validates one record. `Err` is permanent: the record is dead-lettered.
    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Self::Item, String>>;

    /// The stored progress: partition -> next offset to read.
    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>>;

    /// Applies `items` and stores `progress` (partition of `topic` -> next offset) in one
    /// transaction.
    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Self::Item)],
        topic: &'a str,
        progress: &'a BTreeMap<i32, i64>,
    ) -> BoxFuture<'a, Result<(), ProcessError>>;
}

/// What a consumer does when a transient failure outlasts its in-place retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Stop the consumer: nothing is skipped, an operator (or the supervisor) restarts it.
    Stop,
    /// Dead-letter the batch as TRANSIENT (retried later via `ct.retry.v1`) and go on.
    DeadLetter,
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer name: the consumer group and the key of its stored progress.
    pub name: String,
    pub topic: String,
    pub dlq_topic: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub on_exhausted: OnExhausted,
    /// Set when `topic` is the retry topic: only records whose `ct-retry-stage` equals this
    /// stage name are taken; the others belong to other stages and are passed over.
    pub retry_of: Option<String>,
    /// This consumer reads the partitions `p` with `p % shard.count == shard.index`. Several
    /// shards of one consumer apply in parallel (each its own transactions); correct only for
    /// pipelines whose effects do not depend on the order across partitions.
    pub shard: Shard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `count` shards covering every partition.
    pub fn split(count: u32) -> impl Iterator<Item = Shard> {
        let count = count.max(1);
        (0..count).map(move |index| Shard { index, count })
    }

    pub fn owns(self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p % self.count.max(1) == self.index)
    }
}

impl Incoming {
    /// Copies a Kafka message (key, value, headers as text, coordinates).
    pub fn from_message<M: Message>(message: &M) -> Incoming {
        incoming(message)
    }
}

fn incoming<M: Message>(message: &M) -> Incoming {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                .collect()
        })
        .unwrap_or_default();
    Incoming {
        coordinates: Coordinates {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}

/// Runs a consumer until `shutdown`; returns `Err` when it had to stop.
pub async fn run<P: Pipeline>(
    pipeline: &P,
    kafka_config: &KafkaConfig,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let consumer: StreamConsumer = kafka::consumer(kafka_config, &settings.name)?;
    let dlq = DeadLetters::new(kafka_config, settings)?;
    let partitions = kafka::partition_count_async(kafka_config, &settings.topic, Duration::from_secs(10))
        .await?
        .ok_or_else(|| ConsumerError::NoPartitions(settings.topic.clone()))?;
    let progress = retry(settings, "load progress", || pipeline.load_progress(&settings.topic)).await?;
    let mut assignment = TopicPartitionList::new();
    for partition in (0..partitions).filter(|p| settings.shard.owns(*p)) {
        let offset = progress.get(&partition).map_or(Offset::Beginning, |next| Offset::Offset(*next));
        assignment.add_partition_offset(&settings.topic, partition, offset)?;
    }
    consumer.assign(&assignment)?;
    tracing::info!(consumer = %settings.name, topic = %settings.topic, shard = ?settings.shard, ?progress, "Consumer resumed from stored progress.");

    // Progress of records that were dead-lettered while the store was down: it is written with
    // the next batch that commits. Until then a crash re-reads them, which is safe because
    // applying is idempotent and dead letters are deduplicated on their original coordinates.
    let mut unsaved = BTreeMap::new();
    // Two batches in flight: while one is applied (Postgres works on its own core), the next is
    // read and decoded. They are still applied one after the other, in order.
    let mut ready: Option<Prepared<P::Item>> = None;
    loop {
        let next = async {
            match next_batch(&consumer, &settings.name, settings.batch_max, settings.batch_wait, &shutdown).await {
                Some(batch) => prepare(pipeline, &dlq, settings, batch).await.map(Some),
                None => Ok(None),
            }
        };
        let next = match ready.take() {
            None => next.await?,
            Some(prepared) => {
                let (applied, next) = tokio::join!(commit(pipeline, &dlq, settings, prepared, &mut unsaved), next);
                applied?;
                next?
            }
        };
        match next {
            Some(prepared) => ready = Some(prepared),
            None => return Ok(()),
        }
    }
}

/// Reads up to `max` records, waiting at most `wait` once the first has arrived; `None` when
/// `shutdown` is cancelled. Read errors (broker transport, rebalance notices) are logged, never
/// a reason to drop what was read.
pub async fn next_batch(
    consumer: &StreamConsumer,
    name: &str,
    max: usize,
    wait: Duration,
    shutdown: &CancellationToken,
) -> Option<Vec<Incoming>> {
    let mut batch = Vec::with_capacity(max);
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep_until(deadline), if !batch.is_empty() => break,
            message = consumer.recv() => match message {
                Ok(message) => batch.push(incoming(&message)),
                Err(error) => tracing::warn!(consumer = name, %error, "Kafka read error."),
            },
        }
    }
    Some(batch)
}

/// A batch read and decoded, waiting to be applied.
struct Prepared<Item> {
    batch: Vec<Incoming>,
    items: Vec<(Coordinates, Item)>,
    progress: BTreeMap<i32, i64>,
    started: Instant,
}

/// Decodes a batch; records that cannot be decoded are dead-lettered (SCHEMA) here.
async fn prepare<P: Pipeline>(
    pipeline: &P,
    dlq: &DeadLetters,
    settings: &ConsumerSettings,
    batch: Vec<Incoming>,
) -> Result<Prepared<P::Item>, ConsumerError> {
    let started = Instant::now();
    let mut progress = BTreeMap::new();
    let mut items = Vec::with_capacity(batch.len());
    for record in &batch {
        progress.insert(record.coordinates.partition, record.coordinates.offset + 1);
        if let Some(stage) = &settings.retry_of
            && record.header(header::RETRY_STAGE) != Some(stage.as_str())
        {
            continue;
        }
        match pipeline.decode(record).await {
            Ok(item) => items.push((record.coordinates.clone(), item)),
            Err(reason) => {
                retry(settings, "dead-letter", || dlq.send(record, "decode", "SCHEMA", &reason)).await?;
            }
        }
    }
    Ok(Prepared { batch, items, progress, started })
}

/// Applies a prepared batch with its progress (and any progress left unsaved by an earlier batch
/// that was dead-lettered while the store was down).
async fn commit<P: Pipeline>(
    pipeline: &P,
    dlq: &DeadLetters,
    settings: &ConsumerSettings,
    prepared: Prepared<P::Item>,
    unsaved: &mut BTreeMap<i32, i64>,
) -> Result<(), ConsumerError> {
    let Prepared { batch, items, progress: batch_progress, started } = prepared;
    let mut progress = std::mem::take(unsaved);
    progress.extend(batch_progress);
    let topic = settings.topic.as_str();
    match retry(settings, "apply", || pipeline.apply(&items, topic, &progress)).await {
        Ok(()) => {}
        Err(ConsumerError::GaveUp { last, .. }) if last.starts_with("permanent") => {
            // One item poisons the batch: apply one at a time and dead-letter the bad ones.
            for index in 0..items.len() {
                let coordinates = &items[index].0;
                let single = BTreeMap::from([(coordinates.partition, coordinates.offset + 1)]);
                if let Err(error) =
                    retry(settings, "apply", || pipeline.apply(&items[index..=index], topic, &single)).await
                {
                    let record = batch.iter().find(|r| &r.coordinates == coordinates).expect("item from batch");
                    let (class, reason) = match &error {
                        ConsumerError::GaveUp { last, .. } if last.starts_with("transient") => ("TRANSIENT", last),
                        ConsumerError::GaveUp { last, .. } => ("CRITICAL", last),
                        other => ("CRITICAL", &other.to_string()),
                    };
                    retry(settings, "dead-letter", || dlq.send(record, "apply", class, reason)).await?;
                }
            }
            retry(settings, "apply", || pipeline.apply(&[], topic, &progress)).await?;
        }
        Err(ConsumerError::GaveUp { last, .. }) if settings.on_exhausted == OnExhausted::DeadLetter => {
            // Sent concurrently: one delivery round trip for the batch, not one per record.
            let last = last.as_str();
            let sends = items.iter().map(|(coordinates, _)| {
                let record = batch.iter().find(|r| &r.coordinates == coordinates).expect("item from batch");
                retry(settings, "dead-letter", move || dlq.send(record, "apply", "TRANSIENT", last))
            });
            futures::future::try_join_all(sends).await?;
            tracing::warn!(consumer = %settings.name, records = items.len(), error = %last, "Store unavailable; batch dead-lettered as TRANSIENT for a later retry.");
            *unsaved = progress;
        }
        Err(other) => {
            metrics::counter!("ct_consumer_stopped_total", "consumer" => settings.name.clone()).increment(1);
            tracing::error!(consumer = %settings.name, error = %other, "Consumer stopped: a dependency stayed unavailable.");
            return Err(other);
        }
    }
    metrics::counter!("ct_consumer_records_total", "consumer" => settings.name.clone()).increment(batch.len() as u64);
    metrics::histogram!("ct_consumer_batch_duration_seconds", "consumer" => settings.name.clone())
        .record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Retries transient failures with exponential backoff; permanent ones return at once.
async fn retry<T, F, Fut>(settings: &ConsumerSettings, what: &str, mut attempt: F) -> Result<T, ConsumerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProcessError>>,
{
    let mut delay = settings.backoff_base;
    for n in 1..=settings.max_attempts {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(ProcessError::Permanent(reason)) => {
                return Err(ConsumerError::GaveUp { attempts: n, last: format!("permanent: {reason}") });
            }
            Err(ProcessError::Transient(reason)) if n < settings.max_attempts => {
                metrics::counter!("ct_consumer_retries_total", "consumer" => settings.name.clone()).increment(1);
                tracing::warn!(consumer = %settings.name, what, attempt = n, error = %reason, ?delay, "Transient failure; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(ProcessError::Transient(reason)) => {
                return Err(ConsumerError::GaveUp { attempts: n, last: format!("transient: {reason}") });
            }
        }
    }
    unreachable!("max_attempts is at least 1")
}

/// Produces dead letters: the original key and bytes, the context in headers.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    stage: String,
}

impl DeadLetters {
    pub fn new(kafka_config: &KafkaConfig, settings: &ConsumerSettings) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: kafka::idempotent_producer(kafka_config, Duration::from_secs(30))?,
            topic: settings.dlq_topic.clone(),
            stage: settings.name.clone(),
        })
    }

    /// Dead-letters `record`. A record that came back through `ct.retry.v1` keeps its original
    /// coordinates and first failure time, and counts as the next attempt.
    pub async fn send(
        &self,
        record: &Incoming,
        step: &str,
        error_class: &str,
        message: &str,
    ) -> Result<(), ProcessError> {
        let c = &record.coordinates;
        // A record handed back through the retry topic carries its original context.
        let previous = Context::from_headers(|name| record.header(name), (&c.topic, c.partition, c.offset), Utc::now());
        let attempt = record.header(header::RETRY_ATTEMPT).and_then(|a| a.parse::<u32>().ok()).map_or(1, |a| a + 1);
        let now = Utc::now();
        let context = Context {
            stage: self.stage.clone(),
            step: step.to_owned(),
            error_class: error_class.to_owned(),
            message: message.to_owned(),
            attempt,
            first_failure_at: if record.header(header::FIRST_FAILURE_AT).is_some() {
                previous.first_failure_at
            } else {
                now
            },
            last_failure_at: now,
            ..previous
        };
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            if !key.starts_with(header::PREFIX) && !key.starts_with("ct-retry-") {
                headers = headers.insert(Header { key, value: Some(value.as_str()) });
            }
        }
        for (key, value) in context.headers() {
            headers = headers.insert(Header { key, value: Some(value.as_str()) });
        }
        let mut out = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_slice());
        }
        self.producer
            .send(out, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| ProcessError::Transient(e.to_string()))?;
        metrics::counter!("ct_consumer_dead_letters_total", "consumer" => self.stage.clone(), "class" => error_class.to_owned())
            .increment(1);
        tracing::warn!(stage = %self.stage, topic = %c.topic, partition = c.partition, offset = c.offset, attempt = context.attempt, error = message, "Record dead-lettered.");
        Ok(())
    }
}

#[cfg(test)]
mod shard_tests {
    use super::Shard;

    #[test]
    fn shards_split_the_partitions_between_them() {
        let owners: Vec<Vec<i32>> = Shard::split(2).map(|shard| (0..6).filter(|p| shard.owns(*p)).collect()).collect();
        assert_eq!(owners, [vec![0, 2, 4], vec![1, 3, 5]]);
        assert!((0..6).all(|p| Shard::ALL.owns(p)));
    }
}
