//! Postgres stops while events flow, with the default settings. An outage is a dependency fault,
//! not bad data: the projector and the categoriser pause, say so in `/healthz`, resume by
//! themselves once Postgres is back, and nothing at all is dead-lettered: every event exactly
//! once in `events`, the dead-letter topic empty, no `dlq_items` row.
//!
//! One test in its own binary (it restarts the shared Postgres); cargo runs test binaries one
//! at a time.

use std::time::Duration;

use ct_platform::kafka;
use ct_testkit::{TestContext, eventually, sample_event, stack, wire_event};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_pauses_the_consumers_and_dead_letters_nothing() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &t.events).await.unwrap();
    let stop = CancellationToken::new();

    let mut projector = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    projector.consumer.batch_max = 100;
    let token = stop.clone();
    let projector_task = tokio::spawn(async move { ct_projector::run(projector, token).await });

    let categoriser = ct_dlq_categoriser::Config::for_slice(&ctx.slice(&t, &registry_url));
    let token = stop.clone();
    let categoriser_task = tokio::spawn(async move { ct_dlq_categoriser::run(categoriser, token).await });

    // Events flow for about 9 s; Postgres is down from about 2 s to about 6 s.
    let producer_task = {
        let (kafka_config, topic) = (ctx.kafka.clone(), t.events.clone());
        tokio::spawn(async move {
            let producer = kafka::idempotent_producer(&kafka_config, Duration::from_secs(30)).unwrap();
            for i in 0..EVENTS {
                let event = sample_event(i);
                let value = wire_event(schema_id, &event);
                let record = FutureRecord::to(&topic).key(event.source().as_str()).payload(&value);
                producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(|| stack(&["down", "postgres"])).await.unwrap();
    // The pause shows in the process's health report while Postgres is down.
    let paused = eventually(Duration::from_secs(30), || async {
        let report = ct_platform::health::report();
        report.paused.values().any(|outage| outage.dependency == "postgres").then_some(report)
    })
    .await;
    tokio::task::spawn_blocking(|| {
        std::thread::sleep(Duration::from_secs(4));
        stack(&["up"]);
    })
    .await
    .unwrap();
    let report = paused.expect("no consumer reported a pause on postgres");
    assert_eq!(report.status, "degraded");
    producer_task.await.unwrap();

    let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or(-1) }
    };
    let landed = eventually(Duration::from_secs(120), || async {
        (count("SELECT count(*) FROM events").await == EVENTS as i64).then_some(())
    })
    .await;
    assert!(landed.is_some(), "only {} of {EVENTS} events landed", count("SELECT count(*) FROM events").await);
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events").await, EVENTS as i64);
    assert_eq!(
        count("SELECT sum(events_total)::bigint FROM type_counts").await,
        EVENTS as i64,
        "an effect was doubled"
    );

    // Nothing was dead-lettered: the stages' DLQ topic is empty, and so is dlq_items.
    let dead_letters = {
        let (kafka_config, topic) = (ctx.kafka.clone(), t.dlq.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = kafka::client_config(&kafka_config).create().unwrap();
            rdkafka::consumer::Consumer::fetch_watermarks(&consumer, &topic, 0, Duration::from_secs(10)).unwrap().1
        })
        .await
        .unwrap()
    };
    assert_eq!(dead_letters, 0, "an outage dead-lettered good events");
    assert_eq!(count("SELECT count(*) FROM dlq_items").await, 0);
    // Every consumer resumed by itself.
    let resumed =
        eventually(Duration::from_secs(30), || async { (ct_platform::health::report().status == "ok").then_some(()) })
            .await;
    assert!(resumed.is_some(), "still paused: {:?}", ct_platform::health::report());

    stop.cancel();
    projector_task.await.unwrap().unwrap();
    categoriser_task.await.unwrap().unwrap();
}
