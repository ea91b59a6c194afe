//! The projector on the real broker, registry, Postgres and Redis: exactly one row per
//! `eventId` whatever the log holds, derived tables and Redis views consistent with the rows,
//! dead letters for garbage, resume after restart, and a rebuild with identical checksums.

use std::{collections::BTreeMap, time::Duration};

use chrono::Duration as ChronoDuration;
use ct_core::{
    Envelope,
    avro::{self, wire},
    envelope::ParseOptions,
    redact::Redactor,
};
use ct_platform::{kafka, registry::RegistryClient};
use ct_projector::{Config, store};
use ct_testkit::{TestContext, eventually};
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Setup {
    ctx: TestContext,
    topic: String,
    dlq: String,
    registry_url: String,
    schema_id: u32,
    producer: FutureProducer,
}

async fn setup() -> Setup {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 3), ("ct.dlq.v1", 1), ("ct.audit.v1", 1)]).await;
    let (registry_url, _) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let schema_id = RegistryClient::new(&registry_url)
        .register(&format!("{}-value", topics[0]), avro::event_schema_json())
        .await
        .expect("register");
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(10)).expect("producer");
    Setup { topic: topics[0].clone(), dlq: topics[1].clone(), ctx, registry_url, schema_id, producer }
}

fn config(s: &Setup, name: &str, schema: &str) -> Config {
    let mut config = Config::defaults();
    config.kafka = s.ctx.kafka.clone();
    config.consumer.name = s.ctx.group(name);
    config.consumer.topic = s.topic.clone();
    config.consumer.dlq_topic = s.dlq.clone();
    // A topic of this test's own (nothing is handed back here), never the shared ct.retry.v1.
    config.consumer.retry_topic = s.dlq.clone();
    config.consumer.audit_topic = s.ctx.topic("ct.audit.v1");
    config.consumer.batch_wait_ms = 20;
    config.registry.url = s.registry_url.clone();
    config.postgres = s.ctx.postgres();
    config.postgres.schema = format!("{}_{schema}", config.postgres.schema);
    config.redis = s.ctx.redis();
    config.redis.key_prefix = format!("{}:{schema}", config.redis.key_prefix);
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config
}

fn start(config: Config) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { ct_projector::run(config, token).await.expect("projector ran") });
    shutdown
}

fn envelope(body: &Value) -> Envelope {
    let redactor = Redactor::new("t");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T10:00:05Z".parse().unwrap(),
        max_future_skew: ChronoDuration::minutes(5),
    };
    Envelope::parse(body, &options).unwrap_or_else(|e| panic!("{body}: {e}")).0
}

async fn produce_event(s: &Setup, body: &Value) {
    let event = envelope(body);
    let mut value = Vec::new();
    wire::write_header(s.schema_id, &mut value);
    avro::encode_event(&event, &mut value).unwrap();
    produce_raw(s, event.source().as_str(), &value).await;
}

async fn produce_raw(s: &Setup, key: &str, value: &[u8]) {
    s.producer
        .send(FutureRecord::to(&s.topic).key(key).payload(value), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// A realistic mix: invoices, heartbeats, a run that starts and completes, errors.
fn events(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let ts = format!("2025-09-27T10:{:02}:{:02}Z", (i / 60) % 60, i % 60);
            match i % 5 {
                0 => json!({"eventId": format!("{prefix}_{i}"), "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                            "payload": {"invoiceId": format!("INV-{i}"), "period": "2025-09", "total": 10.5}}),
                1 => json!({"eventId": format!("{prefix}_{i}"), "type": "system.heartbeat", "ts": ts, "source": "portal",
                            "payload": {"systemId": "portal"}}),
                2 => json!({"eventId": format!("{prefix}_{i}"), "type": "ct.run.started", "ts": ts, "source": "desktop",
                            "correlationId": format!("run_{prefix}_{}", i / 5),
                            "payload": {"runId": format!("run_{prefix}_{}", i / 5), "trigger": "desktop.trigger.contract", "initiator": "staff"}}),
                3 => json!({"eventId": format!("{prefix}_{i}"), "type": "ct.run.completed", "ts": ts, "source": "desktop",
                            "payload": {"runId": format!("run_{prefix}_{}", i / 5), "status": "success", "durationMs": 1200, "metrics": {"docs": 3}}}),
                _ => json!({"eventId": format!("{prefix}_{i}"), "type": "backend.fn.error", "ts": ts, "source": "backend",
                            "payload": {"fnName": "parse", "severity": "high", "stackRef": "gs://l/1"}}),
            }
        })
        .collect()
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn wait_for_events(pool: &sqlx::PgPool, expected: i64) {
    // The table appears once the projector has migrated, so an error here means "not yet".
    let reached = eventually(Duration::from_secs(60), || async {
        let projected: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.ok();
        (projected? >= expected).then_some(())
    })
    .await;
    assert!(reached.is_some(), "projected {} of {expected}", count(pool, "SELECT count(*) FROM events").await);
}

/// The Redis views equal what Postgres implies (polled: the views are written after the commit).
async fn redis_matches_postgres(config: &Config, pool: &sqlx::PgPool) {
    let matched =
        eventually(Duration::from_secs(15), || async { views_differ(config, pool).await.is_none().then_some(()) })
            .await;
    if matched.is_none() {
        panic!("the Redis views never matched Postgres: {:?}", views_differ(config, pool).await);
    }
}

/// What differs between the Redis views and Postgres, if anything.
async fn views_differ(config: &Config, pool: &sqlx::PgPool) -> Option<String> {
    let mut redis = ct_platform::redis::connect(&config.redis).await.unwrap();
    let prefix = &config.redis.key_prefix;
    let systems: Vec<(String, i64)> =
        sqlx::query_as("SELECT system_id, events_total FROM systems").fetch_all(pool).await.unwrap();
    for (system, total) in systems {
        let cached: Option<String> = redis.hget(format!("{prefix}:system:{system}"), "events_total").await.unwrap();
        if cached != Some(total.to_string()) {
            return Some(format!("system {system}: Redis {cached:?}, Postgres {total}"));
        }
    }
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT type, events_total FROM type_counts").fetch_all(pool).await.unwrap();
    let cached: BTreeMap<String, i64> = redis.hgetall(format!("{prefix}:counts")).await.unwrap();
    let counts: BTreeMap<String, i64> = counts.into_iter().collect();
    if cached != counts {
        return Some(format!("counts: Redis {cached:?}, Postgres {counts:?}"));
    }
    let recent: Vec<String> = redis.lrange(format!("{prefix}:recent:finance"), 0, -1).await.unwrap();
    let expected: i64 = count(pool, "SELECT least(count(*), 50) FROM events WHERE source = 'finance'").await;
    (recent.len() as i64 != expected).then(|| format!("recent finance: Redis {}, Postgres {expected}", recent.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_row_per_event_with_dead_letters_restart_and_rebuild() {
    let s = setup().await;
    let live = config(&s, "projector", "live");
    let batch = events("a", 200);
    for body in &batch {
        produce_event(&s, body).await;
    }
    // The log may hold an eventId twice (a producer retry after a lost receipt).
    for body in batch.iter().take(20) {
        produce_event(&s, body).await;
    }
    // Garbage: not Avro at all, and an unknown schema id.
    produce_raw(&s, "x", b"definitely not avro").await;
    let mut unknown = Vec::new();
    wire::write_header(999_999, &mut unknown);
    unknown.extend_from_slice(b"\x02\x04");
    produce_raw(&s, "y", &unknown).await;

    let stop = start(live.clone());
    let pool = ct_platform::postgres::connect(&live.postgres).await.unwrap();
    wait_for_events(&pool, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 200);
    assert_eq!(count(&pool, "SELECT count(DISTINCT event_id) FROM events").await, 200);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM runs WHERE completed_status = 'success' AND started_at IS NOT NULL").await,
        40
    );
    assert_eq!(count(&pool, "SELECT events_total FROM systems WHERE system_id = 'finance'").await, 40);
    assert_eq!(count(&pool, "SELECT sum(events_total)::bigint FROM type_counts").await, 200);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM systems WHERE system_id = 'portal' AND last_heartbeat IS NOT NULL").await,
        1
    );
    redis_matches_postgres(&live, &pool).await;

    // Both garbage records are dead letters with their context (a garbage record may sit after
    // the last event of its partition, in a batch still being closed).
    let mut dead = dead_letters(&s).await;
    for _ in 0..50 {
        if dead.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        dead = dead_letters(&s).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    for headers in &dead {
        assert_eq!(headers.get("ct-dlq-error-class").map(String::as_str), Some("SCHEMA"));
        assert_eq!(headers.get("ct-dlq-original-topic"), Some(&s.topic));
        assert!(headers.contains_key("ct-dlq-original-offset") && headers.contains_key("ct-dlq-error-message"));
    }

    // Stop, write more (with repeats of old ids), restart: it resumes from its stored progress.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for body in events("b", 100).iter().chain(batch.iter().take(5)) {
        produce_event(&s, body).await;
    }
    let stop = start(live.clone());
    wait_for_events(&pool, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM events").await, 300);
    assert_eq!(dead_letters(&s).await.len(), 2, "resuming must not re-read old records");

    // Redis flushed under the projector: the views heal on the next batch.
    let mut redis = ct_platform::redis::connect(&live.redis).await.unwrap();
    let keys: Vec<String> = redis.keys(format!("{}:*", live.redis.key_prefix)).await.unwrap();
    let _: () = redis.del(keys).await.unwrap();
    produce_event(&s, &events("c", 1)[0]).await;
    wait_for_events(&pool, 301).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis_matches_postgres(&live, &pool).await;

    // Rebuild from offset 0 into another schema: identical content.
    let rebuild = config(&s, "rebuild", "rebuild");
    let stop_rebuild = start(rebuild.clone());
    let rebuilt = ct_platform::postgres::connect(&rebuild.postgres).await.unwrap();
    wait_for_events(&rebuilt, 301).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store::checksums(&rebuilt).await.unwrap(), store::checksums(&pool).await.unwrap());
    stop.cancel();
    stop_rebuild.cancel();
}

async fn dead_letters(s: &Setup) -> Vec<BTreeMap<String, String>> {
    use rdkafka::{
        Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        message::Headers,
    };
    let consumer: BaseConsumer =
        kafka::client_config(&s.ctx.kafka).set("group.id", s.ctx.group("dlq-reader")).create().unwrap();
    let (_, high) = consumer.fetch_watermarks(&s.dlq, 0, Duration::from_secs(5)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&s.dlq, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (out.len() as i64) < high && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(
                m.headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
    }
    out
}
