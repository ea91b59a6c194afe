//! The smallest read model: `daily_counts` counts each event once per source and UTC day however
//! often the log holds it, in a schema of its own, and rebuilds and swaps like any read model.

use std::time::Duration;

use ct_platform::{kafka, readmodel};
use ct_projector::daily_counts::DailyCountsModel;
use ct_testkit::{TestContext, eventually, sample_event, wire_event};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_counts_count_each_event_once_and_rebuild_identically() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &t.events).await.unwrap();
    let mut config = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    config.daily_counts.enabled = true;
    let stop = CancellationToken::new();
    tokio::spawn(ct_projector::run(config.clone(), stop.clone()));

    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
    for i in (0..EVENTS).chain(0..EVENTS / 3) {
        let event = sample_event(i);
        let value = wire_event(schema_id, &event);
        producer
            .send_result(FutureRecord::to(&t.events).key(event.source().as_str()).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();

    let model = DailyCountsModel::of(config.clone());
    let pool = ct_platform::postgres::connect(&ct_platform::config::PostgresConfig {
        extra_schemas: Vec::new(),
        statement_timeout_ms: 60_000,
        ..readmodel::ReadModel::postgres(&model).clone()
    })
    .await
    .unwrap();
    let total = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<i64>>("SELECT sum(events)::bigint FROM daily_counts")
                .fetch_one(&pool)
                .await
                .ok()
                .flatten()
        }
    };
    let counted =
        eventually(Duration::from_secs(60), || async { (total().await == Some(EVENTS as i64)).then_some(()) }).await;
    assert!(counted.is_some(), "counted {:?} of {EVENTS} (duplicates must not count)", total().await);
    let sources: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT source) FROM daily_counts").fetch_one(&pool).await.unwrap();
    assert_eq!(sources, 3, "sample events come from three sources");
    // The projector's own tables are elsewhere: this schema holds only the model's.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(tables, ["consumer_progress", "daily_counts", "daily_counts_migrations", "seen"]);

    let report = readmodel::rebuild(&model, true, Duration::from_secs(60)).await.unwrap();
    assert!(report.identical && report.swapped_out.is_some(), "{report:?}");
    assert_eq!(total().await, Some(EVENTS as i64));
    stop.cancel();
}
