//! Acknowledged records survive a broker crash: produce with `acks=all`, SIGKILL the broker,
//! start it again with `deploy/stack.sh up`, and read every acknowledged record back.
//!
//! This binary holds one test only, and cargo runs test binaries one after another, so stopping
//! the shared broker here does not disturb other tests.

use std::{collections::BTreeSet, process::Command, time::Duration};

use ct_platform::kafka;
use ct_testkit::{TestContext, repo_root};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::FutureRecord,
};

fn stack(args: &[&str]) {
    let status =
        Command::new("bash").arg(repo_root().join("deploy/stack.sh")).args(args).status().expect("run deploy/stack.sh");
    assert!(status.success(), "deploy/stack.sh {args:?} failed");
}

#[tokio::test]
async fn acknowledged_records_survive_a_broker_crash() {
    let ctx = TestContext::new();
    let topic = ctx.create_topics(&[("durable", 3)]).await.remove(0);
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
    let sends = (0..300).map(|i| {
        let producer = &producer;
        let topic = &topic;
        async move {
            let key = format!("k{}", i % 7);
            let value = format!("v{i}");
            producer
                .send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(10))
                .await
                .map(|_| value)
        }
    });
    let acknowledged: BTreeSet<String> =
        futures::future::join_all(sends).await.into_iter().map(|r| r.expect("acknowledged")).collect();
    assert_eq!(acknowledged.len(), 300);
    drop(producer);

    stack(&["down", "kafka", "--kill"]);
    assert!(kafka::ping(&ctx.kafka, Duration::from_secs(2)).is_err(), "broker should be down");
    stack(&["up"]);

    let consumer: BaseConsumer =
        kafka::client_config(&ctx.kafka).set("group.id", ctx.group("durable")).create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment.add_partition_offset(&topic, partition, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut read = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while read.len() < acknowledged.len() && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("consume after restart");
            read.insert(String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf8"));
        }
    }
    let lost: Vec<_> = acknowledged.difference(&read).collect();
    assert!(lost.is_empty(), "{} acknowledged records lost after the crash: {lost:?}", lost.len());
    assert_eq!(read, acknowledged);
}
