//! Dependencies down, default settings. The projector starts with a cold schema cache while the
//! registry is down: it pauses (the registry named in its health report) instead of parking good
//! events as SCHEMA, and resumes when the registry is back. Redis goes down next: the views are a
//! cache, so events keep landing and the views heal afterwards. Through both, a garbage record in
//! the middle of the load is the only dead letter, and every event lands exactly once.
//!
//! One test in its own binary (it stops the shared Redis); cargo runs test binaries one at a time.

use std::{net::SocketAddr, time::Duration};

use ct_core::avro;
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{TestContext, eventually, free_port, sample_event, stack, wire_event};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Message},
    producer::{FutureProducer, FutureRecord},
};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 600;

/// A registry on `port` over `topic` (its whole state), until the returned token is cancelled.
async fn registry(ctx: &TestContext, port: u16, topic: &str) -> CancellationToken {
    let mut config: ct_registry::Config = ct_registry::Config::load(None).unwrap();
    config.kafka = ctx.kafka.clone();
    config.registry.topic = topic.to_owned();
    config.http.listen = SocketAddr::from(([127, 0, 0, 1], port));
    let stop = CancellationToken::new();
    let app = ct_registry::Application::build(&config, stop.clone()).await.expect("registry starts");
    tokio::spawn(app.run_until_stopped(stop.clone()));
    stop
}

async fn produce(producer: &FutureProducer, topic: &str, schema_id: u32, range: std::ops::Range<usize>) {
    for i in range {
        let event = sample_event(i);
        let value = wire_event(schema_id, &event);
        producer
            .send(FutureRecord::to(topic).key(event.source().as_str()).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

fn end_of(ctx: &TestContext, topic: &str) -> i64 {
    let consumer: BaseConsumer = kafka::client_config(&ctx.kafka).create().unwrap();
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_redis_outages_pause_or_degrade_and_only_the_poison_record_is_dead_lettered() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let schemas = ctx.topic("_schemas");
    ctx.create_topics(&[("_schemas", 1)]).await;
    let port = free_port();
    let registry_url = format!("http://127.0.0.1:{port}");
    let stop_registry = registry(&ctx, port, &schemas).await;
    let schema_id = RegistryClient::new(&registry_url)
        .register(&ct_platform::registry::value_subject(&t.events), avro::event_schema_json())
        .await
        .unwrap();
    // The registry goes away before the projector ever asked it anything.
    stop_registry.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
    produce(&producer, &t.events, schema_id, 0..EVENTS / 2).await;
    let garbage = b"\x00\x00\x00\x00\x01not avro at all".to_vec();
    producer.send(FutureRecord::to(&t.events).key("finance").payload(&garbage), Duration::from_secs(30)).await.unwrap();
    produce(&producer, &t.events, schema_id, EVENTS / 2..EVENTS * 2 / 3).await;

    let config = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    let stop = CancellationToken::new();
    tokio::spawn(ct_projector::run(config.clone(), stop.clone()));
    let paused = eventually(Duration::from_secs(30), || async {
        let report = ct_platform::health::report();
        report.paused.values().any(|outage| outage.dependency == "registry").then_some(())
    })
    .await;
    assert!(paused.is_some(), "the projector did not pause on the registry: {:?}", ct_platform::health::report());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(end_of(&ctx, &t.dlq), 0, "good events were dead-lettered while the registry was down");

    // The registry comes back on the same address, from its topic.
    let _registry = registry(&ctx, port, &schemas).await;
    let pool = ct_platform::postgres::connect(&config.postgres).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or(-1) }
    };
    let landed = eventually(Duration::from_secs(60), || async {
        (count("SELECT count(*) FROM events").await == (EVENTS * 2 / 3) as i64).then_some(())
    })
    .await;
    assert!(landed.is_some(), "after the registry returned: {} events", count("SELECT count(*) FROM events").await);

    // Redis down: the views are a cache of Postgres, so events keep landing.
    tokio::task::spawn_blocking(|| stack(&["down", "redis"])).await.unwrap();
    produce(&producer, &t.events, schema_id, EVENTS * 2 / 3..EVENTS).await;
    let landed = eventually(Duration::from_secs(60), || async {
        (count("SELECT count(*) FROM events").await == EVENTS as i64).then_some(())
    })
    .await;
    tokio::task::spawn_blocking(|| stack(&["up"])).await.unwrap();
    assert!(landed.is_some(), "while Redis was down: {} events", count("SELECT count(*) FROM events").await);

    // One more event after Redis returned: the views heal and equal what Postgres implies.
    produce(&producer, &t.events, schema_id, 0..1).await;
    let redis = ct_platform::redis::connect(&config.redis).await.unwrap();
    let expected: i64 = count("SELECT sum(events_total)::bigint FROM type_counts").await;
    let healed = eventually(Duration::from_secs(30), || {
        let mut redis = redis.clone();
        let key = format!("{}:counts", config.redis.key_prefix);
        async move {
            let counts: std::collections::HashMap<String, i64> = redis.hgetall(key).await.ok()?;
            (counts.values().sum::<i64>() == expected).then_some(())
        }
    })
    .await;
    assert!(healed.is_some(), "the Redis views did not heal");

    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events").await, EVENTS as i64);
    assert_eq!(expected, EVENTS as i64, "an effect was doubled or lost");
    assert_eq!(end_of(&ctx, &t.dlq), 1, "only the poison record is a dead letter");
    let consumer: BaseConsumer =
        kafka::client_config(&ctx.kafka).set("group.id", ctx.group("dlq-reader")).create().unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(&t.dlq, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let message = consumer.poll(Duration::from_secs(10)).expect("the dead letter").unwrap();
    let class = message
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "ct-dlq-error-class").and_then(|h| h.value.map(<[u8]>::to_vec)));
    assert_eq!(class.as_deref(), Some(b"SCHEMA".as_slice()));
    assert_eq!(message.payload(), Some(garbage.as_slice()));
    stop.cancel();
}
