//! `ct rebuild dlq-items --swap`: the dead-letter read model is rebuilt from its topics and
//! swapped in its own schema only. The projector's schema is untouched, and the categoriser and
//! the read API keep working across the swap.

use std::time::Duration;

use ct_dlq_categoriser::DlqItemsModel;
use ct_platform::kafka;
use ct_replay::rebuild::rebuild;
use ct_testkit::{TestContext, eventually, sample_event, wire_event};
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const VALID: usize = 200;
const GARBAGE: i64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_items_swap_touches_only_its_schema_while_the_pipeline_keeps_working() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &t.events).await.unwrap();
    let stop = CancellationToken::new();
    let projector = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    tokio::spawn(ct_projector::run(projector.clone(), stop.clone()));
    let categoriser = ct_dlq_categoriser::Config::for_slice(&ctx.slice(&t, &registry_url));
    tokio::spawn(ct_dlq_categoriser::run(categoriser.clone(), stop.clone()));
    let mut api = ct_api::Config::defaults();
    api.http.listen = "127.0.0.1:0".parse().unwrap();
    api.postgres = ctx.postgres();
    let api_app = ct_api::Application::build(api).await.unwrap();
    let api_url = format!("http://{}", api_app.local_addr());
    tokio::spawn(api_app.run_until_stopped(stop.clone()));

    // Good events and garbage: the projector dead-letters the garbage (SCHEMA), the categoriser
    // files it, the items consumer parks it.
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
    let send_garbage = |n: i64| {
        let (producer, topic) = (producer.clone(), t.events.clone());
        async move {
            let value = format!("\x00\x00\x00\x00\x09garbage {n}").into_bytes();
            producer
                .send(FutureRecord::to(&topic).key("finance").payload(&value), Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    };
    for i in 0..VALID {
        let value = wire_event(schema_id, &sample_event(i));
        producer.send_result(FutureRecord::to(&t.events).key("portal").payload(&value)).map_err(|(e, _)| e).unwrap();
    }
    for n in 0..GARBAGE {
        send_garbage(n).await;
    }
    let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or(-1) }
    };
    let parked = eventually(Duration::from_secs(60), || async {
        (count("SELECT count(*) FROM dlq_items").await == GARBAGE
            && count("SELECT count(*) FROM events").await == VALID as i64)
            .then_some(())
    })
    .await;
    assert!(parked.is_some(), "dead letters not parked: {}", count("SELECT count(*) FROM dlq_items").await);
    let projector_pool = ct_platform::postgres::connect(&projector.postgres).await.unwrap();
    let projector_before = ct_projector::store::checksums(&projector_pool).await.unwrap();

    let report = rebuild(&DlqItemsModel(categoriser.clone()), true, Duration::from_secs(90)).await.unwrap();
    assert!(report.identical, "{report:?}");
    assert_eq!(report.rebuild_checksums.len(), 3, "{report:?}");
    let old = report.swapped_out.clone().unwrap_or_else(|| panic!("not swapped: {report:?}"));
    assert!(old.starts_with(&format!("{}_old_", categoriser.postgres.schema)), "{old}");

    // Only the dead-letter schema moved.
    let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(format!("{}%", projector.postgres.schema))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        !schemas.iter().any(|s| s.starts_with(&format!("{}_old_", projector.postgres.schema))),
        "the projector's schema was swapped too: {schemas:?}"
    );
    assert_eq!(ct_projector::store::checksums(&projector_pool).await.unwrap(), projector_before);

    // The read API answers from the swapped-in tables, and the categoriser fills them.
    let http = reqwest::Client::new();
    let listed = |http: reqwest::Client| {
        let url = format!("{api_url}/dlq?limit=500");
        async move {
            let response = http.get(url).bearer_auth("dev-token-maintainer").send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            Some(response.json::<Value>().await.ok()?.as_array()?.len() as i64)
        }
    };
    assert_eq!(listed(http.clone()).await, Some(GARBAGE), "GET /dlq after the swap");
    send_garbage(GARBAGE).await;
    let grew = eventually(Duration::from_secs(60), || async {
        (listed(http.clone()).await == Some(GARBAGE + 1)).then_some(())
    })
    .await;
    assert!(grew.is_some(), "the categoriser stopped filling dlq_items after the swap");
    stop.cancel();
}
