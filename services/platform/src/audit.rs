//! Writing typed records to a topic that holds several record types (the audit topic, with
//! TopicRecordNameStrategy): the subject is `<topic>-<record name>`, registered at the first
//! write, and each value is in the Confluent wire format. The read API writes alert actions
//! with it, the DLQ categoriser its depth reports.

use std::time::Duration;

use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
};
use tokio::sync::OnceCell;

use crate::{
    config::KafkaConfig,
    registry::{RegistryClient, RegistryError},
};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("registering the schema: {0}")]
    Registry(#[from] RegistryError),
    #[error("producing the record: {0}")]
    Kafka(#[from] KafkaError),
}

pub struct RecordWriter {
    producer: FutureProducer,
    registry: RegistryClient,
    topic: String,
    subject: String,
    schema_json: &'static str,
    schema_id: OnceCell<u32>,
    timeout: Duration,
}

impl RecordWriter {
    /// An idempotent producer (`acks=all`) that gives up on a record after `timeout`.
    pub fn new(
        kafka: &KafkaConfig,
        registry: RegistryClient,
        topic: &str,
        record_name: &str,
        schema_json: &'static str,
        timeout: Duration,
    ) -> Result<RecordWriter, KafkaError> {
        Ok(RecordWriter {
            producer: crate::kafka::idempotent_producer(kafka, timeout)?,
            registry,
            topic: topic.to_owned(),
            subject: format!("{topic}-{record_name}"),
            schema_json,
            schema_id: OnceCell::new(),
            timeout,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `datum` (the Avro encoding of one record of the writer's schema) under `key`, and
    /// returns once the broker has acknowledged it.
    pub async fn write(&self, key: &str, datum: &[u8]) -> Result<(), WriteError> {
        let schema_id =
            *self.schema_id.get_or_try_init(|| self.registry.register(&self.subject, self.schema_json)).await?;
        let mut value = Vec::with_capacity(datum.len() + 5);
        ct_core::avro::wire::write_header(schema_id, &mut value);
        value.extend_from_slice(datum);
        self.producer
            .send(FutureRecord::to(&self.topic).key(key).payload(&value), self.timeout)
            .await
            .map_err(|(error, _)| error)?;
        Ok(())
    }
}
