//! Kafka clients configured the one way this project uses them: idempotent producers with
//! `acks=all`, consumers that never auto-commit, and an admin that creates topics explicitly.

use std::time::Duration;

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord},
};

use crate::{config::KafkaConfig, topics::TopicSpec};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("Kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic { topic: String, code: RDKafkaErrorCode },
    #[error("topic {topic} exists with {actual} partitions, {expected} expected")]
    PartitionMismatch { topic: String, expected: i32, actual: i32 },
    #[error("topic {topic} was not served with a leader for every partition within {waited:?}")]
    NotServed { topic: String, waited: Duration },
    #[error("round trip failed: {0}")]
    RoundTrip(String),
}

pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// An idempotent producer with `acks=all`: a delivery report means the record is durable in the
/// log, so it is safe to acknowledge upstream.
pub fn idempotent_producer(kafka: &KafkaConfig, delivery_timeout: Duration) -> Result<FutureProducer, KafkaError> {
    let mut config = client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("message.timeout.ms", delivery_timeout.as_millis().to_string());
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.create()
}

/// A consumer in `group` that reads committed data from the earliest offset and never commits
/// on its own: progress is stored only after the work is done.
pub fn consumer(kafka: &KafkaConfig, group: &str) -> Result<StreamConsumer, KafkaError> {
    consumer_config(kafka, group).create()
}

/// Records of `topic` not yet committed by `group` (a partition without a committed offset counts
/// from its beginning). Blocking: metadata, watermarks and committed offsets are fetched.
pub fn group_lag(kafka: &KafkaConfig, group: &str, topic: &str) -> Result<i64, KafkaError> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = client_config(kafka).set("group.id", group).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, partition.id());
    }
    let committed = consumer.committed_offsets(partitions, timeout)?;
    let mut lag = 0;
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, element.partition(), timeout)?;
        let at = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        lag += (high - at).max(0);
    }
    Ok(lag)
}

/// The end offset (high watermark) of every partition of `topic`, by partition number, asked
/// through `consumer` (any client of the cluster, kept by the caller). Blocking.
pub fn end_offsets(consumer: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<i64>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut partitions: Vec<i32> =
        metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()).map(|p| p.id()).collect();
    partitions.sort_unstable();
    partitions.into_iter().map(|p| consumer.fetch_watermarks(topic, p, timeout).map(|(_, high)| high)).collect()
}

/// The offset after the last committed record of one partition (what a consumer's progress
/// reaches once it has read everything), `None` when it holds none. Below the end offset when
/// the partition ends in transaction markers or aborted records. Blocking.
pub fn end_of_records(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<i64>, KafkaError> {
    let consumer: BaseConsumer = client_config(kafka)
        .set("group.id", "ct-end-of-records")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    let mut window = 16;
    loop {
        let from = (high - window).max(low);
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => last = Some(message.offset() + 1),
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(error),
                None if std::time::Instant::now() > deadline => {
                    return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut));
                }
                None => {}
            }
        }
        if last.is_some() || from == low {
            return Ok(last);
        }
        window *= 16;
    }
}

/// The last record of one partition, if it has any. Blocking.
pub fn last_record(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<rdkafka::message::OwnedMessage>, KafkaError> {
    // librdkafka polls only with a group id; nothing is committed under it.
    let consumer: BaseConsumer =
        client_config(kafka).set("group.id", "ct-last-record").set("enable.auto.commit", "false").create()?;
    let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(high - 1))?;
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => return Ok(Some(message.detach())),
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut))
}

/// A member of `group` whose partitions the group assigns (cooperative-sticky, so a rebalance
/// moves only the partitions that change owner), with `context` told of every rebalance.
pub fn group_consumer<C: ConsumerContext + 'static>(
    kafka: &KafkaConfig,
    group: &str,
    context: C,
) -> Result<StreamConsumer<C>, KafkaError> {
    let mut config = consumer_config(kafka, group);
    config.set("partition.assignment.strategy", "cooperative-sticky");
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config.create_with_context(context)
}

fn consumer_config(kafka: &KafkaConfig, group: &str) -> ClientConfig {
    let mut config = client_config(kafka);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // Under load a fetch waits for 16 KiB (a few ms at thousands of events per second)
        // instead of returning each record alone: fewer, fuller fetches for the consumer and the
        // broker. When little arrives, it returns after 250 ms at the latest.
        .set("fetch.min.bytes", "16384")
        .set("fetch.wait.max.ms", "250");
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

pub fn admin(kafka: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    client_config(kafka).create()
}

/// Partition count of `topic`, or `None` when it does not exist.
pub fn partition_count(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<Option<i32>, KafkaError> {
    let consumer: BaseConsumer = client_config(kafka).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
}

/// [`partition_count`] off the async workers: the metadata request blocks for up to `timeout`.
pub async fn partition_count_async(
    kafka: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, KafkaError> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    match tokio::task::spawn_blocking(move || partition_count(&kafka, &topic, timeout)).await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// The broker answers a metadata request.
pub fn ping(kafka: &KafkaConfig, timeout: Duration) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = client_config(kafka).create()?;
    Ok(consumer.fetch_metadata(None, timeout)?.brokers().len())
}

/// Creates the topics that are missing; checks the partition count of those that exist.
/// Returns the names it created. On a cluster of three brokers or more a topic gets three
/// replicas and `min.insync.replicas = 2` (unless its spec says otherwise), so an `acks=all`
/// write survives one broker; on fewer brokers, one replica per broker.
pub async fn ensure_topics(kafka: &KafkaConfig, specs: &[TopicSpec]) -> Result<Vec<String>, KafkaSetupError> {
    let admin = admin(kafka)?;
    let brokers = {
        let kafka = kafka.clone();
        tokio::task::spawn_blocking(move || ping(&kafka, Duration::from_secs(10)))
            .await
            .expect("metadata request panicked")?
    };
    let replicas = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            let mut topic = NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(replicas));
            if replicas >= 3 && !spec.config.contains_key("min.insync.replicas") {
                topic = topic.set("min.insync.replicas", "2");
            }
            spec.config.iter().fold(topic, |topic, (key, value)| topic.set(key, value))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaSetupError::CreateTopic { topic, code }),
        }
    }
    for spec in specs {
        let actual = wait_until_served(kafka, &spec.name, TOPIC_VISIBLE_TIMEOUT).await?;
        if actual != spec.partitions {
            return Err(KafkaSetupError::PartitionMismatch {
                topic: spec.name.clone(),
                expected: spec.partitions,
                actual,
            });
        }
    }
    Ok(created)
}

const TOPIC_VISIBLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the broker serves `topic` with a leader for every partition and returns its
/// partition count. The controller acknowledges a creation before the broker's metadata cache
/// knows the topic; a client that looks it up in that window gets `UnknownPartition` (this is
/// what Kafka's own tests wait out with `waitForTopicCreated`).
async fn wait_until_served(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<i32, KafkaSetupError> {
    let consumer: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(client_config(kafka).create()?);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // A metadata request blocks its thread: keep it off the async workers.
        let metadata = {
            let (consumer, topic) = (std::sync::Arc::clone(&consumer), topic.to_owned());
            tokio::task::spawn_blocking(move || consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)))
                .await
                .expect("metadata request panicked")
        };
        let served = metadata.as_ref().ok().and_then(|metadata| {
            metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none()).and_then(|t| {
                let partitions = t.partitions();
                let led = !partitions.is_empty() && partitions.iter().all(|p| p.error().is_none() && p.leader() >= 0);
                led.then(|| i32::try_from(partitions.len()).unwrap_or(i32::MAX))
            })
        });
        if let Some(count) = served {
            return Ok(count);
        }
        if std::time::Instant::now() >= deadline {
            return Err(KafkaSetupError::NotServed { topic: topic.to_owned(), waited: timeout });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces one unique record with the idempotent producer and reads it back: proof that the
/// broker accepts, stores and serves data, not just connections.
pub async fn round_trip(kafka: &KafkaConfig, timeout: Duration) -> Result<Duration, KafkaSetupError> {
    const TOPIC: &str = "_ct.roundtrip";
    let started = std::time::Instant::now();
    ensure_topics(
        kafka,
        &[TopicSpec {
            name: TOPIC.to_owned(),
            partitions: 1,
            config: [("retention.ms".to_owned(), "3600000".to_owned())].into(),
        }],
    )
    .await?;
    let producer = idempotent_producer(kafka, timeout)?;
    let token = uuid::Uuid::new_v4().to_string();
    let delivery = producer
        .send(FutureRecord::to(TOPIC).key("roundtrip").payload(&token), timeout)
        .await
        .map_err(|(e, _)| KafkaSetupError::RoundTrip(format!("produce: {e}")))?;
    let (partition, offset) = (delivery.partition, delivery.offset);
    let consumer: BaseConsumer = client_config(kafka).set("group.id", "ct-roundtrip").create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let deadline = started + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message?;
            if message.payload() == Some(token.as_bytes()) {
                return Ok(started.elapsed());
            }
        }
    }
    Err(KafkaSetupError::RoundTrip(format!("record {partition}/{offset} not read back within {timeout:?}")))
}
