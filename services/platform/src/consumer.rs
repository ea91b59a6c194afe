//! The one way to build a consumer: read a topic as a member of the consumer's group, decode,
//! hand a batch to a [`Pipeline`] that applies it **and the consumer's progress in one
//! transaction**, and resume from that stored progress (never from Kafka's committed offsets,
//! which are only written afterwards, for lag tools).
//!
//! Faults are told apart (design invariant 9). [`ProcessError::Record`]: the record itself cannot
//! be processed; it alone goes to the dead-letter topic with its original bytes and context.
//! [`ProcessError::Dependency`]: Postgres, Redis, the registry or the broker did not answer; the
//! consumer pauses (its partitions stop fetching, the group membership is kept), retries with
//! capped exponential backoff and jitter, says so once in the log, in `/healthz` and in the
//! `ct_consumer_paused` gauge, and resumes by itself. Nothing is dead-lettered for an outage.
//!
//! Scale-out: every instance of a consumer joins the group named after it; the group spreads the
//! partitions (cooperative-sticky). On the first record of a newly assigned partition the runner
//! loads the stored progress and seeks there. Progress is written compare-and-set
//! ([`Advance::from`]): a batch whose partition another instance advanced meanwhile (a rebalance
//! moved it) fails as a whole with [`ProcessError::ProgressMoved`], is discarded, and the
//! partition is read again from the stored progress. So nothing is applied twice and nothing is
//! skipped across rebalances.
//!
//! A consumer of `ct.retry.v1` ([`ConsumerSettings::retry_of`]) takes only the records whose
//! `ct-retry-stage` names it; a record that fails again is dead-lettered with attempt + 1 and
//! its original coordinates, so every attempt of one record updates one DLQ item.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use ct_core::dlq::{Context, header};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{config::KafkaConfig, health, kafka, readmodel::Horizon};

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

/// Why decoding or applying failed: whose fault it is decides what the runner does.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record cannot be processed whatever is retried: dead-letter this record alone.
    #[error("{0}")]
    Record(String),
    /// A dependency did not answer (`postgres`, `redis`, `registry`, `kafka`): pause and retry.
    #[error("{dependency} unavailable: {message}")]
    Dependency { dependency: &'static str, message: String },
    /// Another instance advanced this partition's stored progress (a rebalance moved it): the
    /// batch was not applied and is read again from the stored progress.
    #[error("the stored progress of partition {partition} moved under this consumer")]
    ProgressMoved { partition: i32 },
}

impl ProcessError {
    pub fn dependency(dependency: &'static str, error: impl std::fmt::Display) -> Self {
        ProcessError::Dependency { dependency, message: error.to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// A boxed `Send` future. The pipeline's methods return these (rather than `impl Future`) so
/// that `Send` is proven in each implementation, where lifetimes are concrete; with sqlx inside,
/// the compiler cannot prove it for every lifetime at the spawn site.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How far a batch moves one partition's stored progress: from `from` (the next offset the
/// store must hold now; `None`: no row yet) to `to`. Stores write it compare-and-set
/// (`ct_platform::postgres::advance_progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

/// What a consumer does with its records.
pub trait Pipeline: Send + Sync + 'static {
    type Item: Send + Sync;

    /// Decodes and validates one record.
    fn decode<'a>(&'a self, record: &'a Incoming) -> BoxFuture<'a, Result<Self::Item, ProcessError>>;

    /// The stored progress: partition -> next offset to read.
    fn load_progress<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>>;

    /// Applies `items` and advances the progress of `topic` in one transaction; nothing of it
    /// when any advance finds another offset stored ([`ProcessError::ProgressMoved`]).
    fn apply<'a>(
        &'a self,
        items: &'a [(Coordinates, Self::Item)],
        topic: &'a str,
        progress: &'a [Advance],
    ) -> BoxFuture<'a, Result<(), ProcessError>>;
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Consumer name: the consumer group and the key of its stored progress.
    pub name: String,
    pub topic: String,
    pub dlq_topic: String,
    pub batch_max: usize,
    pub batch_wait: Duration,
    /// While a dependency is down, attempts are spaced from `backoff_base` doubling up to
    /// `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Set when `topic` is the retry topic: only records whose `ct-retry-stage` equals this
    /// stage name are taken; the others belong to other stages and are passed over.
    pub retry_of: Option<String>,
    /// A rebuild copy reads nothing at or beyond it (unset: no bound).
    pub horizon: Horizon,
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

/// Records and rebalances, in the order the reader saw them.
enum Delivery {
    Record {
        record: Incoming,
        epoch: u64,
    },
    /// Partitions this member gained or lost: their position is unknown until the next record.
    Moved(Vec<i32>),
}

/// Told of every rebalance by librdkafka (inside the reader's poll).
#[derive(Default)]
struct GroupContext {
    moved: Mutex<Vec<i32>>,
    /// Set while the reader holds its partitions paused; a partition assigned meanwhile is
    /// paused at once, before it fetches anything.
    paused: AtomicBool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let tpl = match rebalance {
            Rebalance::Assign(tpl) => {
                if self.paused.load(Ordering::SeqCst)
                    && let Err(error) = consumer.pause(tpl)
                {
                    tracing::warn!(%error, "Could not pause newly assigned partitions.");
                }
                tpl
            }
            Rebalance::Revoke(tpl) => tpl,
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Rebalance failed.");
                return;
            }
        };
        let partitions = tpl.elements().into_iter().map(|element| element.partition());
        self.moved.lock().unwrap_or_else(|p| p.into_inner()).extend(partitions);
        tracing::info!(?rebalance, "Partitions rebalanced.");
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// How long the runner may stay behind before the reader pauses the partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

/// Asks the reader to move a partition to an offset (`None`: its beginning); records it reads
/// afterwards carry `epoch`.
struct Seek {
    partition: i32,
    offset: Option<i64>,
    epoch: u64,
}

/// Polls the consumer and hands records to the runner through `out`. When the runner falls
/// behind, `out` fills and the reader waits; when it stays behind for `PAUSE_AFTER` (a dependency
/// is down), the reader pauses every assigned partition, so nothing more is fetched, and keeps
/// polling, which keeps it in the group and answers rebalances. It resumes them once `out` has
/// room again.
async fn read(
    consumer: Arc<GroupConsumer>,
    topic: String,
    out: mpsc::Sender<Delivery>,
    mut seeks: mpsc::UnboundedReceiver<Seek>,
    shutdown: CancellationToken,
) {
    let mut epochs: HashMap<i32, u64> = HashMap::new();
    let mut backlog: VecDeque<Delivery> = VecDeque::new();
    let mut behind_since: Option<tokio::time::Instant> = None;
    loop {
        while let Some(delivery) = backlog.pop_front() {
            match out.try_send(delivery) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(delivery)) => {
                    backlog.push_front(delivery);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        // While the runner keeps up, read. While it is behind, wait for room: librdkafka's own
        // queue bounds what is fetched meanwhile. Once it has been behind for `PAUSE_AFTER` (a
        // dependency is down), pause the partitions and poll again, so the member stays in its
        // group and answers rebalances. Pausing makes librdkafka drop what it prefetched, so it
        // is kept for long stalls only.
        let mut paused = consumer.context().paused.load(Ordering::SeqCst);
        if backlog.is_empty() {
            behind_since = None;
            if paused {
                set_paused(&consumer, false);
                paused = false;
            }
        } else if !paused && behind_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= PAUSE_AFTER {
            set_paused(&consumer, true);
            paused = true;
        }
        let reading = backlog.is_empty() || paused;
        tokio::select! {
            () = tokio::time::sleep(PAUSE_AFTER), if !reading => {}
            () = shutdown.cancelled() => return,
            Some(seek) = seeks.recv() => {
                epochs.insert(seek.partition, seek.epoch);
                backlog.retain(|d| !matches!(d, Delivery::Record { record, .. } if record.coordinates.partition == seek.partition));
                let offset = seek.offset.map_or(Offset::Beginning, Offset::Offset);
                let (consumer, topic) = (Arc::clone(&consumer), topic.clone());
                // Blocking until librdkafka confirms: from then on it drops what it had fetched
                // from the old position, so every record read later is from the new one.
                let done = tokio::task::spawn_blocking(move || consumer.seek(&topic, seek.partition, offset, Duration::from_secs(10))).await;
                if let Ok(Err(error)) = done {
                    // Typically revoked meanwhile; its new owner seeks for itself.
                    tracing::info!(partition = seek.partition, %error, "Seek not done.");
                }
            }
            permit = out.reserve(), if !backlog.is_empty() => {
                if let (Ok(permit), Some(delivery)) = (permit, backlog.pop_front()) {
                    permit.send(delivery);
                }
            }
            message = consumer.recv(), if reading => {
                let moved = std::mem::take(&mut *consumer.context().moved.lock().unwrap_or_else(|p| p.into_inner()));
                if !moved.is_empty() {
                    backlog.push_back(Delivery::Moved(moved));
                }
                match message {
                    Ok(message) => {
                        let epoch = epochs.get(&message.partition()).copied().unwrap_or_default();
                        backlog.push_back(Delivery::Record { record: incoming(&message), epoch });
                    }
                    Err(error) => tracing::warn!(topic = %topic, %error, "Kafka read error."),
                }
            }
        }
    }
}

fn set_paused(consumer: &GroupConsumer, paused: bool) {
    consumer.context().paused.store(paused, Ordering::SeqCst);
    let assignment = match consumer.assignment() {
        Ok(assignment) => assignment,
        Err(error) => return tracing::warn!(%error, "Could not read the assignment."),
    };
    let result = if paused { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
    if let Err(error) = result {
        tracing::warn!(%error, paused, "Could not pause or resume the partitions.");
    }
}

/// Where the runner stands on each partition it has synchronised with the store.
#[derive(Default)]
struct Positions {
    /// Bumped by every seek; records read before it are stale.
    epochs: HashMap<i32, u64>,
    /// The next offset the store holds once every batch read so far is applied (`None`: no
    /// progress stored yet). Absent: not synchronised since the partition was assigned.
    next: HashMap<i32, Option<i64>>,
    /// Partitions stopped at the horizon: the first offset not taken.
    held: HashMap<i32, i64>,
}

/// How often partitions held at a horizon look whether it moved.
const HELD_RECHECK: Duration = Duration::from_millis(100);

/// The consumer was asked to stop.
struct Stopped;

/// Runs a consumer until `shutdown`. It never stops for a dependency; it returns `Err` only when
/// its Kafka clients cannot be created.
pub async fn run<P: Pipeline>(
    pipeline: &P,
    kafka_config: &KafkaConfig,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    static MEMBERS: AtomicU64 = AtomicU64::new(0);
    let member = format!("{} ({}) #{}", settings.name, settings.topic, MEMBERS.fetch_add(1, Ordering::Relaxed));
    let consumer: Arc<GroupConsumer> =
        Arc::new(kafka::group_consumer(kafka_config, &settings.name, GroupContext::default())?);
    consumer.subscribe(&[&settings.topic])?;
    let (out, mut deliveries) = mpsc::channel(settings.batch_max.max(1) * 2);
    let (seeks, seek_requests) = mpsc::unbounded_channel();
    let reader_stop = shutdown.child_token();
    let reader =
        tokio::spawn(read(Arc::clone(&consumer), settings.topic.clone(), out, seek_requests, reader_stop.clone()));
    let runner = Runner {
        pipeline,
        settings,
        member,
        dlq: DeadLetters::new(kafka_config, settings)?,
        consumer: Arc::clone(&consumer),
        seeks,
        shutdown: shutdown.clone(),
    };
    tracing::info!(consumer = %settings.name, topic = %settings.topic, "Consumer joined its group.");
    let _ = runner.run(&mut deliveries).await;
    reader_stop.cancel();
    let _ = reader.await;
    health::resumed(&runner.member);
    Ok(())
}

struct Runner<'a, P: Pipeline> {
    pipeline: &'a P,
    settings: &'a ConsumerSettings,
    /// This runner's name in `/healthz`.
    member: String,
    dlq: DeadLetters,
    consumer: Arc<GroupConsumer>,
    seeks: mpsc::UnboundedSender<Seek>,
    shutdown: CancellationToken,
}

/// A batch read and decoded, waiting to be applied.
struct Prepared<Item> {
    records: Vec<Incoming>,
    items: Vec<(Coordinates, Item)>,
    progress: Vec<Advance>,
    /// The epoch of each partition when it was read: a seek since then makes its part stale.
    epochs: BTreeMap<i32, u64>,
    started: Instant,
    /// The `traceparent` of each item's consumer span, when spans are exported.
    traces: Vec<String>,
}

impl<P: Pipeline> Runner<'_, P> {
    async fn run(&self, deliveries: &mut mpsc::Receiver<Delivery>) -> Result<(), Stopped> {
        let mut positions = Positions::default();
        // Two batches in flight: while one is applied (Postgres works on its own core), the next
        // is read and decoded. They are still applied one after the other, in order.
        let mut ready: Option<Prepared<P::Item>> = None;
        loop {
            let next = async {
                let records = self.next_batch(deliveries, &mut positions).await?;
                self.prepare(records, &mut positions).await
            };
            let (applied, next) = match ready.take() {
                None => (Ok(()), next.await?),
                Some(prepared) => {
                    let (applied, next) = tokio::join!(self.commit(prepared), next);
                    (applied?, next?)
                }
            };
            let mut next = next;
            if let Err(moved) = applied {
                // Read those partitions again from what the store holds, and drop what was
                // already read of them.
                self.resync(&moved, &mut positions).await?;
                next.retain_current(&positions.epochs);
            }
            ready = Some(next);
        }
    }

    /// Waits for the first record, then reads until `batch_max` records or `batch_wait`.
    async fn next_batch(
        &self,
        deliveries: &mut mpsc::Receiver<Delivery>,
        positions: &mut Positions,
    ) -> Result<Vec<Incoming>, Stopped> {
        let mut batch = Vec::with_capacity(self.settings.batch_max);
        let mut deadline = None;
        while batch.len() < self.settings.batch_max {
            let delivery = tokio::select! {
                () = self.shutdown.cancelled() => return Err(Stopped),
                () = sleep_until(deadline) => break,
                () = tokio::time::sleep(HELD_RECHECK), if !positions.held.is_empty() => {
                    self.release_held(positions);
                    continue;
                }
                delivery = deliveries.recv() => delivery.ok_or(Stopped)?,
            };
            match delivery {
                Delivery::Moved(partitions) => {
                    // What this batch read of them is dropped: a partition given back is read
                    // again from the stored progress, which this batch has not moved, so its
                    // records would be in the batch twice; one given away is its new owner's.
                    batch.retain(|record: &Incoming| !partitions.contains(&record.coordinates.partition));
                    for partition in partitions {
                        positions.next.remove(&partition);
                        positions.held.remove(&partition);
                    }
                }
                Delivery::Record { record, epoch } => {
                    let partition = record.coordinates.partition;
                    if epoch < positions.epochs.get(&partition).copied().unwrap_or_default() {
                        continue;
                    }
                    // A rebuild copy stops at its horizon; what lies beyond is read again (by a
                    // seek) once the horizon moves past it.
                    if positions.held.contains_key(&partition) {
                        continue;
                    }
                    if !self.settings.horizon.allows(&record.coordinates) {
                        positions.held.insert(partition, record.coordinates.offset);
                        continue;
                    }
                    if !positions.next.contains_key(&partition) && !self.synchronise(&record, positions).await? {
                        continue;
                    }
                    batch.push(record);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.batch_wait);
                }
            }
        }
        Ok(batch)
    }

    /// First record of a partition since it was assigned: resume from the stored progress.
    /// Returns whether `record` is where the store stands (otherwise the reader seeks there).
    async fn synchronise(&self, record: &Incoming, positions: &mut Positions) -> Result<bool, Stopped> {
        let partition = record.coordinates.partition;
        let topic = self.settings.topic.as_str();
        let stored = self.patiently(|| self.pipeline.load_progress(topic)).await?;
        let stored = match stored {
            Ok(stored) => stored.get(&partition).copied(),
            Err(error) => {
                tracing::error!(consumer = %self.settings.name, %error, "Stored progress unreadable; reading the partition from its beginning.");
                None
            }
        };
        positions.next.insert(partition, stored);
        if stored == Some(record.coordinates.offset) {
            return Ok(true);
        }
        self.seek(partition, stored, positions);
        tracing::info!(consumer = %self.settings.name, topic, partition, ?stored, "Partition resumed from stored progress.");
        Ok(false)
    }

    /// Reads again, from where they stopped, the partitions the horizon now allows.
    fn release_held(&self, positions: &mut Positions) {
        let topic = &self.settings.topic;
        let released: Vec<(i32, i64)> = positions
            .held
            .iter()
            .filter(|(partition, offset)| {
                self.settings.horizon.allows(&Coordinates {
                    topic: topic.clone(),
                    partition: **partition,
                    offset: **offset,
                })
            })
            .map(|(p, o)| (*p, *o))
            .collect();
        for (partition, offset) in released {
            positions.held.remove(&partition);
            // Only the read position moves back; what the store holds is unchanged.
            let next = positions.next.get(&partition).copied();
            self.seek(partition, Some(offset), positions);
            match next {
                Some(next) => positions.next.insert(partition, next),
                None => positions.next.remove(&partition),
            };
        }
    }

    fn seek(&self, partition: i32, offset: Option<i64>, positions: &mut Positions) {
        let epoch = positions.epochs.entry(partition).or_default();
        *epoch += 1;
        positions.next.insert(partition, offset);
        let _ = self.seeks.send(Seek { partition, offset, epoch: *epoch });
    }

    async fn resync(&self, partitions: &[i32], positions: &mut Positions) -> Result<(), Stopped> {
        let topic = self.settings.topic.as_str();
        let stored = match self.patiently(|| self.pipeline.load_progress(topic)).await? {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(consumer = %self.settings.name, %error, "Stored progress unreadable.");
                HashMap::new()
            }
        };
        for partition in partitions {
            self.seek(*partition, stored.get(partition).copied(), positions);
        }
        metrics::counter!("ct_consumer_progress_conflicts_total", "consumer" => self.settings.name.clone())
            .increment(1);
        tracing::info!(consumer = %self.settings.name, topic, ?partitions, "Progress moved by another member; partitions read again from the stored progress.");
        Ok(())
    }

    /// Decodes a batch; records at fault are dead-lettered (SCHEMA) here.
    async fn prepare(&self, records: Vec<Incoming>, positions: &mut Positions) -> Result<Prepared<P::Item>, Stopped> {
        let started = Instant::now();
        let mut progress: BTreeMap<i32, Advance> = BTreeMap::new();
        let mut items = Vec::with_capacity(records.len());
        let mut traces = Vec::new();
        for record in &records {
            let c = &record.coordinates;
            let next = positions.next.get(&c.partition).copied().flatten();
            progress
                .entry(c.partition)
                .or_insert(Advance { partition: c.partition, from: next, to: c.offset + 1 })
                .to = c.offset + 1;
            positions.next.insert(c.partition, Some(c.offset + 1));
            if let Some(stage) = &self.settings.retry_of
                && record.header(header::RETRY_STAGE) != Some(stage.as_str())
            {
                continue;
            }
            // The consumer span of the record (messaging conventions), a child of its producer's.
            let span = tracing::info_span!(
                target: crate::telemetry::TRACE_TARGET,
                "process",
                otel.name = format!("{} process", c.topic),
                otel.kind = "consumer",
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = %c.topic,
                messaging.destination.partition.id = c.partition,
                messaging.kafka.offset = c.offset,
                messaging.consumer.group.name = %self.settings.name,
            );
            crate::telemetry::continue_trace(&span, record.header("traceparent"));
            match self.patiently(|| self.pipeline.decode(record)).instrument(span.clone()).await? {
                Ok(item) => {
                    traces.extend(crate::telemetry::traceparent_of(&span));
                    items.push((c.clone(), item));
                }
                Err(error) => self.dead_letter(record, "decode", "SCHEMA", &error.to_string()).await?,
            }
        }
        let epochs = progress.keys().map(|p| (*p, positions.epochs.get(p).copied().unwrap_or_default())).collect();
        Ok(Prepared { records, items, progress: progress.into_values().collect(), epochs, started, traces })
    }

    /// Applies a prepared batch with its progress. `Err` names the partitions whose stored
    /// progress another member moved: nothing of the batch was applied.
    async fn commit(&self, prepared: Prepared<P::Item>) -> Result<Result<(), Vec<i32>>, Stopped> {
        let Prepared { records, items, progress, epochs, started, traces } = prepared;
        if progress.is_empty() {
            return Ok(Ok(()));
        }
        let topic = self.settings.topic.as_str();
        // One database transaction for the batch: a child of its first record's consumer span,
        // linked to the others'.
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "apply",
            otel.name = format!("{} apply", self.settings.name),
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = "apply batch",
            messaging.batch.message_count = items.len(),
        );
        if let Some((first, others)) = traces.split_first() {
            crate::telemetry::continue_trace(&span, Some(first));
            others.iter().for_each(|other| crate::telemetry::link(&span, other));
        }
        match self.patiently(|| self.pipeline.apply(&items, topic, &progress)).instrument(span).await? {
            Ok(()) => {}
            Err(ProcessError::Record(_)) => {
                // One item poisons the batch: apply one at a time and dead-letter the bad ones.
                let mut at: BTreeMap<i32, Option<i64>> = progress.iter().map(|a| (a.partition, a.from)).collect();
                for index in 0..items.len() {
                    let coordinates = &items[index].0;
                    let advance = [Advance {
                        partition: coordinates.partition,
                        from: at[&coordinates.partition],
                        to: coordinates.offset + 1,
                    }];
                    match self.patiently(|| self.pipeline.apply(&items[index..=index], topic, &advance)).await? {
                        Ok(()) => {}
                        Err(ProcessError::Record(reason)) => {
                            let record =
                                records.iter().find(|r| &r.coordinates == coordinates).expect("item from batch");
                            self.dead_letter(record, "apply", "CRITICAL", &reason).await?;
                            if let Err(error) = self.patiently(|| self.pipeline.apply(&[], topic, &advance)).await? {
                                return Ok(Err(moved(&error, &epochs)));
                            }
                        }
                        Err(error) => return Ok(Err(moved(&error, &epochs))),
                    }
                    at.insert(coordinates.partition, Some(coordinates.offset + 1));
                }
                let rest: Vec<Advance> = progress
                    .iter()
                    .filter(|a| at[&a.partition] != Some(a.to))
                    .map(|a| Advance { from: at[&a.partition], ..*a })
                    .collect();
                if let Err(error) = self.patiently(|| self.pipeline.apply(&[], topic, &rest)).await? {
                    return Ok(Err(moved(&error, &epochs)));
                }
            }
            Err(error) => return Ok(Err(moved(&error, &epochs))),
        }
        // For lag tools only (`kafka-consumer-groups --describe`): the stored progress decides.
        let mut offsets = TopicPartitionList::new();
        for advance in &progress {
            let _ = offsets.add_partition_offset(topic, advance.partition, Offset::Offset(advance.to));
        }
        let _ = self.consumer.commit(&offsets, CommitMode::Async);
        metrics::counter!("ct_consumer_records_total", "consumer" => self.settings.name.clone())
            .increment(records.len() as u64);
        metrics::histogram!("ct_consumer_batch_duration_seconds", "consumer" => self.settings.name.clone())
            .record(started.elapsed().as_secs_f64());
        Ok(Ok(()))
    }

    async fn dead_letter(&self, record: &Incoming, step: &str, class: &str, reason: &str) -> Result<(), Stopped> {
        match self.patiently(|| self.dlq.send(record, step, class, reason)).await? {
            Ok(()) => Ok(()),
            // The dead-letter producer reports only dependency faults; none is left here.
            Err(error) => {
                tracing::error!(consumer = %self.settings.name, %error, "Dead letter not written.");
                Ok(())
            }
        }
    }

    /// Runs `attempt` until it succeeds or fails for a reason other than a dependency. While a
    /// dependency is down the consumer is paused: it retries with capped exponential backoff and
    /// jitter, logs once when it pauses and once when it resumes, and shows in `/healthz`.
    async fn patiently<T, F, Fut>(&self, mut attempt: F) -> Result<Result<T, ProcessError>, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProcessError>>,
    {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.settings.backoff_base)
            .with_max_delay(self.settings.backoff_max)
            .with_jitter()
            .without_max_times()
            .build();
        let mut failed = false;
        loop {
            match attempt().await {
                Err(ProcessError::Dependency { dependency, message }) => {
                    failed = true;
                    metrics::counter!("ct_consumer_dependency_failures_total", "consumer" => self.settings.name.clone(), "dependency" => dependency)
                        .increment(1);
                    if health::paused(&self.member, dependency, &message) {
                        tracing::warn!(consumer = %self.member, dependency, error = %message, "Consumer paused: a dependency is unavailable; retrying until it answers.");
                    }
                    let delay = delays.next().unwrap_or(self.settings.backoff_max);
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Err(Stopped),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                other => {
                    if failed && let Some(outage) = health::resumed(&self.member) {
                        let paused_for = (Utc::now() - outage.since).to_std().unwrap_or_default();
                        tracing::info!(consumer = %self.member, dependency = %outage.dependency, ?paused_for, "Consumer resumed: the dependency answers again.");
                    }
                    return Ok(other);
                }
            }
        }
    }
}

impl<Item> Prepared<Item> {
    /// Drops the records of partitions sought since this batch was read.
    fn retain_current(&mut self, epochs: &HashMap<i32, u64>) {
        let current = |partition: &i32, epoch: &u64| epochs.get(partition).copied().unwrap_or_default() == *epoch;
        let stale: Vec<i32> = self.epochs.iter().filter(|(p, e)| !current(p, e)).map(|(p, _)| *p).collect();
        if stale.is_empty() {
            return;
        }
        self.records.retain(|r| !stale.contains(&r.coordinates.partition));
        self.items.retain(|(c, _)| !stale.contains(&c.partition));
        self.progress.retain(|a| !stale.contains(&a.partition));
        self.epochs.retain(|p, _| !stale.contains(p));
    }
}

/// The partitions to read again after `error` (any that was not a dependency's).
fn moved(error: &ProcessError, epochs: &BTreeMap<i32, u64>) -> Vec<i32> {
    if !matches!(error, ProcessError::ProgressMoved { .. }) {
        tracing::error!(%error, "Batch refused by the store for a reason that is neither the record's nor a dependency's; reading it again.");
    }
    epochs.keys().copied().collect()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
            .map_err(|(e, _)| ProcessError::dependency("kafka", e))?;
        metrics::counter!("ct_consumer_dead_letters_total", "consumer" => self.stage.clone(), "class" => error_class.to_owned())
            .increment(1);
        tracing::warn!(stage = %self.stage, topic = %c.topic, partition = c.partition, offset = c.offset, attempt = context.attempt, error = message, "Record dead-lettered.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored progress only: what `next_batch` asks a pipeline for.
    struct StoredAt(HashMap<i32, i64>);

    impl Pipeline for StoredAt {
        type Item = ();

        fn decode<'a>(&'a self, _record: &'a Incoming) -> BoxFuture<'a, Result<(), ProcessError>> {
            Box::pin(async { Ok(()) })
        }

        fn load_progress<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<HashMap<i32, i64>, ProcessError>> {
            Box::pin(async { Ok(self.0.clone()) })
        }

        fn apply<'a>(
            &'a self,
            _items: &'a [(Coordinates, ())],
            _topic: &'a str,
            _progress: &'a [Advance],
        ) -> BoxFuture<'a, Result<(), ProcessError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn record(partition: i32, offset: i64) -> Delivery {
        let coordinates = Coordinates { topic: "t".into(), partition, offset };
        let record = Incoming { coordinates, key: None, value: None, headers: Vec::new(), timestamp_ms: None };
        Delivery::Record { record, epoch: 0 }
    }

    /// A partition revoked and given back while a batch is collected is read again from the
    /// stored progress, which the batch has not moved: each record must be in the batch once.
    #[tokio::test]
    async fn a_partition_given_back_during_a_batch_is_in_it_once() {
        // The Kafka clients are created, never connected: nothing here reads or sends.
        let kafka = KafkaConfig { bootstrap_servers: "127.0.0.1:1".into(), properties: Default::default() };
        let settings = ConsumerSettings {
            name: "unit".into(),
            topic: "t".into(),
            dlq_topic: "t.dlq".into(),
            batch_max: 100,
            batch_wait: Duration::from_millis(50),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(10),
            retry_of: None,
            horizon: Horizon::default(),
        };
        let pipeline = StoredAt(HashMap::from([(0, 5), (1, 40)]));
        let (seeks, _seek_requests) = mpsc::unbounded_channel();
        let runner = Runner {
            pipeline: &pipeline,
            settings: &settings,
            member: "unit".into(),
            dlq: DeadLetters::new(&kafka, &settings).expect("a producer object"),
            consumer: Arc::new(
                kafka::group_consumer(&kafka, "unit", GroupContext::default()).expect("a consumer object"),
            ),
            seeks,
            shutdown: CancellationToken::new(),
        };
        let (out, mut deliveries) = mpsc::channel(16);
        for delivery in [
            record(0, 5),
            record(1, 40),
            record(0, 6),
            Delivery::Moved(vec![0]),
            record(0, 5),
            record(0, 6),
            record(1, 41),
        ] {
            out.send(delivery).await.expect("room for every delivery");
        }
        let mut positions = Positions::default();
        let Ok(batch) = runner.next_batch(&mut deliveries, &mut positions).await else {
            panic!("the runner was not asked to stop");
        };
        let read: Vec<(i32, i64)> = batch.iter().map(|r| (r.coordinates.partition, r.coordinates.offset)).collect();
        assert_eq!(read, vec![(1, 40), (0, 5), (0, 6), (1, 41)]);
    }
}
