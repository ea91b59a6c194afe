//! The real broker: an idempotent `acks=all` producer, a consumer group that commits only what
//! it processed, and a restarted consumer that resumes exactly after its last commit.

use std::time::Duration;

use ct_platform::kafka;
use ct_testkit::TestContext;
use rdkafka::{
    Message,
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::FutureRecord,
};

async fn produce(ctx: &TestContext, topic: &str, values: std::ops::Range<u32>) {
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
    for i in values {
        let value = format!("record-{i}");
        producer
            .send(FutureRecord::to(topic).key("k").payload(&value), Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }
}

async fn consume(consumer: &StreamConsumer, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a record within 30 s")
            .expect("consume");
        seen.push(String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf8"));
        consumer.store_offset_from_message(&message).expect("store offset");
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    seen
}

#[tokio::test]
async fn consumer_resumes_after_its_last_commit() {
    let ctx = TestContext::new();
    let topic = ctx.create_topics(&[("resume", 1)]).await.remove(0);
    let group = ctx.group("resume");
    produce(&ctx, &topic, 0..10).await;

    let first = kafka::consumer(&ctx.kafka, &group).expect("consumer");
    first.subscribe(&[&topic]).expect("subscribe");
    let got = consume(&first, 10).await;
    assert_eq!(got, (0..10).map(|i| format!("record-{i}")).collect::<Vec<_>>());
    drop(first);

    produce(&ctx, &topic, 10..15).await;
    let second = kafka::consumer(&ctx.kafka, &group).expect("consumer");
    second.subscribe(&[&topic]).expect("subscribe");
    let resumed = consume(&second, 5).await;
    assert_eq!(resumed, (10..15).map(|i| format!("record-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn ensure_topics_is_idempotent_and_checks_partitions() {
    let ctx = TestContext::new();
    let spec = ct_platform::topics::TopicSpec::new(ctx.topic("twice"), 3);
    let created = kafka::ensure_topics(&ctx.kafka, std::slice::from_ref(&spec)).await.expect("create");
    assert_eq!(created, vec![spec.name.clone()]);
    let again = kafka::ensure_topics(&ctx.kafka, std::slice::from_ref(&spec)).await.expect("again");
    assert!(again.is_empty());
    let wrong = ct_platform::topics::TopicSpec::new(spec.name.clone(), 5);
    let err = kafka::ensure_topics(&ctx.kafka, &[wrong]).await.unwrap_err();
    assert!(matches!(err, kafka::KafkaSetupError::PartitionMismatch { expected: 5, actual: 3, .. }), "{err}");
}

#[tokio::test]
async fn round_trip_reads_back_what_it_wrote() {
    let ctx = TestContext::new();
    let took = kafka::round_trip(&ctx.kafka, Duration::from_secs(30)).await.expect("round trip");
    assert!(took < Duration::from_secs(30));
}
