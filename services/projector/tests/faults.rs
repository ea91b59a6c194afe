//! Exactly once under faults: the log holds every event twice, the projector process is
//! SIGKILLed several times mid-stream and restarted, Postgres is restarted once and Redis is
//! flushed once; at the end every event is in `events` exactly once, the derived tables agree
//! with the rows, and the Redis views equal what Postgres implies.
//!
//! One test in its own binary (it restarts the shared Postgres); cargo runs test binaries one
//! at a time.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ct_core::avro;
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{TestContext, eventually, sample_event as event, stack, wire_event};
use rdkafka::producer::FutureRecord;
use redis::AsyncCommands;

const EVENTS: usize = 4_000;

struct Projector {
    env: Vec<(String, String)>,
}

impl Projector {
    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ct-projector"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ct-projector")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_through_kills_a_postgres_restart_and_a_redis_flush() {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 3), ("ct.dlq.v1", 1), ("ct.audit.v1", 1)]).await;
    let (registry_url, _stop) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let schema_id = RegistryClient::new(&registry_url)
        .register(&format!("{}-value", topics[0]), avro::event_schema_json())
        .await
        .unwrap();
    let postgres = ctx.postgres();
    let redis_config = ctx.redis();
    let projector = Projector {
        env: vec![
            ("CT_KAFKA__BOOTSTRAP_SERVERS".into(), ctx.kafka.bootstrap_servers.clone()),
            ("CT_CONSUMER__NAME".into(), ctx.group("projector")),
            ("CT_CONSUMER__TOPIC".into(), topics[0].clone()),
            ("CT_CONSUMER__DLQ_TOPIC".into(), topics[1].clone()),
            ("CT_CONSUMER__RETRY_TOPIC".into(), topics[1].clone()),
            ("CT_CONSUMER__AUDIT_TOPIC".into(), topics[2].clone()),
            ("CT_CONSUMER__BATCH_MAX".into(), "300".into()),
            ("CT_REGISTRY__URL".into(), registry_url.clone()),
            ("CT_POSTGRES__URL".into(), postgres.url.clone()),
            ("CT_POSTGRES__SCHEMA".into(), postgres.schema.clone()),
            ("CT_REDIS__URL".into(), redis_config.url.clone()),
            ("CT_REDIS__KEY_PREFIX".into(), redis_config.key_prefix.clone()),
            ("CT_HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        ],
    };

    // Every event twice, in two passes, produced while the projector is being killed.
    let producer_task = {
        let kafka_config = ctx.kafka.clone();
        let topic = topics[0].clone();
        tokio::spawn(async move {
            let producer = kafka::idempotent_producer(&kafka_config, Duration::from_secs(30)).unwrap();
            for pass in 0..2 {
                for i in 0..EVENTS {
                    let event = event(i);
                    let value = wire_event(schema_id, &event);
                    producer
                        .send(
                            FutureRecord::to(&topic).key(event.source().as_str()).payload(&value),
                            Duration::from_secs(30),
                        )
                        .await
                        .map_err(|(e, _)| e)
                        .unwrap();
                    if i % 500 == 0 {
                        tokio::time::sleep(Duration::from_millis(100 + 50 * pass)).await;
                    }
                }
            }
        })
    };

    let mut child = projector.spawn();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        child.kill().expect("SIGKILL the projector");
        child.wait().unwrap();
        child = projector.spawn();
    }
    producer_task.await.unwrap();

    tokio::task::spawn_blocking(|| {
        stack(&["down", "postgres"]);
        std::thread::sleep(Duration::from_secs(3));
        stack(&["up"]);
    })
    .await
    .unwrap();

    let mut redis = ct_platform::redis::connect(&redis_config).await.unwrap();
    let keys: Vec<String> = redis.keys(format!("{}:*", redis_config.key_prefix)).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis.del(keys).await.unwrap();
    }

    let pool = ct_platform::postgres::connect(&postgres).await.unwrap();
    let done = eventually(Duration::from_secs(120), || async {
        let progressed: Option<i64> = sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM consumer_progress")
            .fetch_one(&pool)
            .await
            .ok()
            .flatten();
        (progressed == Some(2 * EVENTS as i64)).then_some(())
    })
    .await;
    assert!(done.is_some(), "the projector did not reach the end of the log");
    // One more event after the flush so the views refresh.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = projector.spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    assert_eq!(count("SELECT count(*) FROM events").await, EVENTS as i64);
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events").await, EVENTS as i64);
    assert_eq!(count("SELECT sum(events_total)::bigint FROM type_counts").await, EVENTS as i64);
    assert_eq!(count("SELECT sum(events_total)::bigint FROM systems").await, EVENTS as i64);

    let systems: Vec<(String, i64)> =
        sqlx::query_as("SELECT system_id, events_total FROM systems").fetch_all(&pool).await.unwrap();
    for (system, total) in systems {
        let cached: Option<String> =
            redis.hget(format!("{}:system:{system}", redis_config.key_prefix), "events_total").await.unwrap();
        assert_eq!(cached, Some(total.to_string()), "Redis view of {system}");
    }
    let counts: BTreeMap<String, i64> = redis.hgetall(format!("{}:counts", redis_config.key_prefix)).await.unwrap();
    let expected: Vec<(String, i64)> =
        sqlx::query_as("SELECT type, events_total FROM type_counts").fetch_all(&pool).await.unwrap();
    assert_eq!(counts, expected.into_iter().collect::<BTreeMap<_, _>>());
    child.kill().unwrap();
    child.wait().unwrap();
}
