//! Postgres stops while events flow. The projector's failures are TRANSIENT: after its short
//! in-place retries it dead-letters the batches, the categoriser files them as TRANSIENT, the
//! retry hands them back with backoff, and once Postgres is back they land: every event exactly
//! once in `events`, every dead letter ends `replayed`, none CRITICAL.
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
async fn events_dead_lettered_while_postgres_is_down_land_once_it_is_back() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) = ct_testkit::pipeline::registry(&ctx, &t).await;
    let stop = CancellationToken::new();

    let mut projector = ct_testkit::pipeline::projector_config(&ctx, &t, &registry_url);
    projector.consumer.batch_max = 100;
    projector.consumer.max_attempts = 3;
    projector.consumer.backoff_base_ms = 100;
    // Fail fast while Postgres is down, so the outage outlasts the in-place retries.
    projector.postgres.acquire_timeout_ms = 500;
    let token = stop.clone();
    let projector_task = tokio::spawn(async move { ct_projector::run(projector, token).await });

    let mut categoriser = ct_testkit::pipeline::categoriser_config(&ctx, &t, &registry_url);
    categoriser.retry.backoff_base_ms = 500;
    categoriser.retry.backoff_cap_ms = 4_000;
    categoriser.rules.max_transient_attempts = 12;
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
    tokio::task::spawn_blocking(|| {
        stack(&["down", "postgres"]);
        std::thread::sleep(Duration::from_secs(4));
        stack(&["up"]);
    })
    .await
    .unwrap();
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

    // The failures were TRANSIENT, and every one of them went back to the projector: the items
    // consumer read the transient topic to its end and no item is left parked.
    let transient_end = {
        let (kafka_config, topic) = (ctx.kafka.clone(), t.transient.clone());
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = kafka::client_config(&kafka_config).create().unwrap();
            rdkafka::consumer::Consumer::fetch_watermarks(&consumer, &topic, 0, Duration::from_secs(10)).unwrap().1
        })
        .await
        .unwrap()
    };
    assert!(transient_end > 0, "nothing was dead-lettered: the outage was not observed");
    let settled = eventually(Duration::from_secs(90), || async {
        let read: Option<i64> = sqlx::query_scalar("SELECT next_offset FROM consumer_progress WHERE topic = $1")
            .bind(&t.transient)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
        let unsettled = count("SELECT count(*) FROM dlq_items WHERE state <> 'replayed'").await;
        // The partition ends with a transaction marker, which takes an offset but is never read.
        (read.is_some_and(|next| next + 1 >= transient_end) && unsettled == 0).then_some(())
    })
    .await;
    assert!(settled.is_some(), "dead letters were not all handed back");
    let transient =
        count("SELECT count(*) FROM dlq_items WHERE category = 'TRANSIENT' AND error_class = 'TRANSIENT'").await;
    assert!(transient > 0, "no TRANSIENT items");
    assert_eq!(
        count("SELECT count(*) FROM dlq_items WHERE category <> 'TRANSIENT'").await,
        0,
        "a failure was not TRANSIENT"
    );
    eprintln!("{transient} events were dead-lettered as TRANSIENT during the outage and retried");

    stop.cancel();
    projector_task.await.unwrap().unwrap();
    categoriser_task.await.unwrap().unwrap();
}
