//! `ct rebuild projector`: a rebuild from offset 0 equals the live tables; a swap under load
//! loses nothing (the live projector keeps writing into the swapped-in schema); a corrupted live
//! row makes the swap refuse, naming the table, and change nothing.

use std::time::Duration;

use ct_core::{
    Envelope,
    avro::{self, wire},
};
use ct_platform::{kafka, registry::RegistryClient};
use ct_projector::ProjectorModel;
use ct_replay::rebuild::rebuild;
use ct_testkit::{TestContext, eventually, parse_event};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn event(i: usize) -> Envelope {
    let ts = format!("2025-09-27T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60);
    let body = match i % 4 {
        0 => json!({"eventId": format!("r_{i}"), "type": "ct.run.started", "ts": ts, "source": "desktop",
                    "payload": {"runId": format!("run_{}", i / 4), "trigger": "desktop.trigger.contract", "initiator": "staff"}}),
        1 => json!({"eventId": format!("r_{i}"), "type": "ct.run.completed", "ts": ts, "source": "desktop",
                    "payload": {"runId": format!("run_{}", i / 4), "status": "failed"}}),
        2 => {
            json!({"eventId": format!("r_{i}"), "type": "system.heartbeat", "ts": ts, "source": "portal", "payload": {"systemId": "portal"}})
        }
        _ => json!({"eventId": format!("r_{i}"), "type": "finance.payment.webhook", "ts": ts, "source": "finance",
                    "payload": {"invoiceId": format!("INV-{i}"), "statusFrom": "pending", "statusTo": "paid"}}),
    };
    parse_event(&body)
}

async fn produce(producer: &FutureProducer, topic: &str, schema_id: u32, range: std::ops::Range<usize>) {
    for i in range {
        let event = event(i);
        let mut value = Vec::new();
        wire::write_header(schema_id, &mut value);
        avro::encode_event(&event, &mut value).unwrap();
        producer
            .send(FutureRecord::to(topic).key(event.source().as_str()).payload(&value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_equals_live_and_a_swap_under_load_loses_nothing() {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 3), ("ct.dlq.v1", 1), ("ct.audit.v1", 1)]).await;
    let (registry_url, _stop_registry) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let schema_id = RegistryClient::new(&registry_url)
        .register(&format!("{}-value", topics[0]), avro::event_schema_json())
        .await
        .unwrap();
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(10)).unwrap();

    let mut live = ct_projector::Config::defaults();
    live.kafka = ctx.kafka.clone();
    live.consumer.name = ctx.group("projector");
    live.consumer.topic = topics[0].clone();
    live.consumer.dlq_topic = topics[1].clone();
    live.consumer.retry_topic = topics[1].clone();
    live.consumer.audit_topic = topics[2].clone();
    live.consumer.batch_wait_ms = 20;
    live.registry.url = registry_url;
    live.postgres = ctx.postgres();
    live.redis = ctx.redis();
    live.http.listen = "127.0.0.1:0".parse().unwrap();
    let stop_live = CancellationToken::new();
    tokio::spawn(ct_projector::run(live.clone(), stop_live.clone()));

    produce(&producer, &topics[0], schema_id, 0..400).await;
    produce(&producer, &topics[0], schema_id, 0..50).await; // duplicates in the log
    let pool = ct_platform::postgres::connect(&live.postgres).await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async { (count(&pool).await == 400).then_some(()) }).await.is_some()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A rebuild beside the idle live projector: same offsets, identical tables.
    let model = ProjectorModel(live.clone());
    let report = rebuild(&model, false, Duration::from_secs(60)).await.unwrap();
    assert!(report.identical, "{report:?}");
    assert_eq!(report.records, 450, "every record of the log, duplicates included");
    assert_eq!(report.rebuild_checksums.len(), 4);

    // A corrupted live row: the swap compares at the same offsets, refuses, and names the table.
    sqlx::query("UPDATE runs SET initiator = 'tampered' WHERE run_id = 'run_3'").execute(&pool).await.unwrap();
    let report = rebuild(&model, true, Duration::from_secs(60)).await.unwrap();
    assert_eq!(report.differing_tables, ["runs"], "{report:?}");
    assert!(report.refused.as_deref().is_some_and(|r| r.contains("runs")), "{report:?}");
    assert!(report.swapped_out.is_none());
    let initiator: String =
        sqlx::query_scalar("SELECT initiator FROM runs WHERE run_id = 'run_3'").fetch_one(&pool).await.unwrap();
    assert_eq!(initiator, "tampered", "a refused swap changes nothing");
    sqlx::query("UPDATE runs SET initiator = 'staff' WHERE run_id = 'run_3'").execute(&pool).await.unwrap();

    // A swap while events keep arriving.
    let writer = {
        let (producer, topic) = (producer.clone(), topics[0].clone());
        tokio::spawn(async move { produce(&producer, &topic, schema_id, 400..700).await })
    };
    let report = rebuild(&model, true, Duration::from_secs(60)).await.unwrap();
    assert!(report.identical, "{report:?}");
    let old = report.swapped_out.clone().unwrap_or_else(|| panic!("not swapped: {report:?}"));
    writer.await.unwrap();
    produce(&producer, &topics[0], schema_id, 700..750).await;
    // The live projector (same connections, same schema name) now fills the rebuilt tables.
    let all = eventually(Duration::from_secs(30), || async { (count(&pool).await == 750).then_some(()) }).await;
    assert!(all.is_some(), "after the swap the live schema holds {} of 750 events", count(&pool).await);
    let unique: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(unique, 750);
    let runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE completed_status = 'failed' AND started_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(runs, 750 / 4 + 1, "every run has its start and its end exactly once");
    let old_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&old)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(old_exists, "the old tables are kept for rollback");
    // The rebuild dropped its secondary indexes for the load; the swapped-in tables have them all.
    let indexes = |schema: String| {
        let pool = pool.clone();
        async move {
            let names: Vec<String> =
                sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 ORDER BY 1")
                    .bind(schema)
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            names
        }
    };
    let live_indexes = indexes(live.postgres.schema.clone()).await;
    assert!(live_indexes.contains(&"events_source_ts".to_owned()), "{live_indexes:?}");
    assert_eq!(live_indexes, indexes(old).await, "the rebuilt schema has the indexes of the original");
    stop_live.cancel();
}
