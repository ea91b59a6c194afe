//! What the benchmarks (`cargo bench`, against the real stack) share: settings from the
//! environment, medians, writing a topic full of events, and the raw-read baseline every
//! consumer is compared with in the same run.

use std::time::{Duration, Instant};

use ct_core::Envelope;
use ct_platform::{config::KafkaConfig, kafka};
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::FutureRecord,
};

/// The number in environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes `count` events (`event(i)`) to `topic` in the Confluent wire format under `schema_id`,
/// keyed by source, waiting for every acknowledgement; returns events per second.
pub async fn produce(
    kafka_config: &KafkaConfig,
    topic: &str,
    schema_id: u32,
    count: usize,
    event: impl Fn(usize) -> Envelope,
) -> f64 {
    let producer = kafka::idempotent_producer(kafka_config, Duration::from_secs(60)).expect("producer");
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..count {
        let event = event(i);
        let value = crate::wire_event(schema_id, &event);
        loop {
            match producer.send_result(FutureRecord::to(topic).key(event.source().as_str()).payload(&value)) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if pending.len() >= 10_000 {
            for delivery in pending.drain(..) {
                delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
            }
        }
    }
    for delivery in pending.drain(..) {
        delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// The baseline: how long reading `expected` records of `topic` from the beginning takes, with
/// no processing. Blocking.
pub fn read_all(kafka_config: &KafkaConfig, topic: &str, partitions: i32, expected: usize) -> Duration {
    let consumer: BaseConsumer = kafka::client_config(kafka_config)
        .set("group.id", format!("bench-raw-{}", std::process::id()))
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut n = 0;
    while n < expected {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            message.expect("consume");
            n += 1;
        }
    }
    started.elapsed()
}
