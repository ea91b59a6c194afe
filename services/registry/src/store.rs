//! The `_schemas` topic as the registry's store: a reader task applies every record to the
//! in-memory [`State`]; writes are produced to the topic and become visible only when the
//! reader has applied them (read-your-writes through the log, like Confluent's and Karapace's).

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use ct_platform::{config::KafkaConfig, kafka};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio_util::sync::CancellationToken;

use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the write at offset {0} was not read back within {1:?}")]
    ReadBackTimeout(i64, Duration),
    #[error("the store is shut down")]
    Closed,
}

pub struct Store {
    state: RwLock<State>,
    applied: watch::Receiver<i64>,
    producer: FutureProducer,
    topic: String,
    write_lock: Mutex<()>,
    timeout: Duration,
}

impl Store {
    /// Reads `topic` from the beginning and returns once the state has caught up with the end
    /// of the log as it was at start-up.
    pub async fn open(
        kafka_config: &KafkaConfig,
        topic: &str,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> Result<Arc<Store>, StoreError> {
        let producer = kafka::idempotent_producer(kafka_config, timeout)?;
        let consumer: StreamConsumer = kafka::client_config(kafka_config)
            .set("group.id", format!("ct-registry-reader-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&assignment)?;
        let (_, high) = consumer.fetch_watermarks(topic, 0, timeout)?;

        let (applied_tx, applied_rx) = watch::channel(0_i64);
        let store = Arc::new(Store {
            state: RwLock::new(State::default()),
            applied: applied_rx,
            producer,
            topic: topic.to_owned(),
            write_lock: Mutex::new(()),
            timeout,
        });
        tokio::spawn(read_loop(Arc::clone(&store), consumer, applied_tx, shutdown));
        store.wait_applied(high).await?;
        tracing::info!(topic, records = high, "Registry state loaded from the log.");
        Ok(store)
    }

    /// Runs `f` on the current state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Serialises the decide-then-write sections of this instance.
    pub async fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Produces `records` (key, value or tombstone) and waits until the state has applied them.
    pub async fn write(&self, records: &[(String, Option<String>)]) -> Result<(), StoreError> {
        let mut last = -1;
        for (key, value) in records {
            let mut record = FutureRecord::to(&self.topic).key(key.as_bytes()).partition(0);
            if let Some(value) = value {
                record = record.payload(value.as_bytes());
            }
            let delivery = self.producer.send(record, self.timeout).await.map_err(|(e, _)| StoreError::Kafka(e))?;
            last = delivery.offset;
        }
        self.wait_applied(last + 1).await
    }

    async fn wait_applied(&self, next_offset: i64) -> Result<(), StoreError> {
        let mut applied = self.applied.clone();
        let wait = applied.wait_for(|applied| *applied >= next_offset);
        match tokio::time::timeout(self.timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::ReadBackTimeout(next_offset - 1, self.timeout)),
        }
    }
}

async fn read_loop(
    store: Arc<Store>,
    consumer: StreamConsumer,
    applied: watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return,
            message = consumer.recv() => message,
        };
        match message {
            Ok(message) => {
                let key = message.key().unwrap_or_default();
                let result =
                    store.state.write().unwrap_or_else(|poisoned| poisoned.into_inner()).apply(key, message.payload());
                if let Err(error) = result {
                    metrics::counter!("ct_registry_records_skipped_total").increment(1);
                    tracing::warn!(offset = message.offset(), %error, "Skipped a `_schemas` record that is not ours to read.");
                }
                applied.send_replace(message.offset() + 1);
            }
            Err(error) => {
                tracing::warn!(%error, "Reading `_schemas` failed; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
