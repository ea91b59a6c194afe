//! Scale-out through the consumer group: three `ct-projector` processes share the partitions of
//! one topic; under load one is SIGKILLed and a fourth started. Afterwards every event is in
//! `events` exactly once, the derived tables agree with the rows, and the Redis views equal what
//! Postgres implies.
//!
//! One test in its own binary: it runs four projector processes.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ct_core::avro;
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{TestContext, eventually, sample_event as event, wire_event};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::FutureRecord,
};
use redis::AsyncCommands;

const EVENTS: usize = 6_000;
const PARTITIONS: i32 = 6;

struct Projector {
    config_file: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Projector {
    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ct-projector"))
            .arg("--config")
            .arg(&self.config_file)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ct-projector")
    }
}

/// Members of `group` as the broker sees them.
fn members(kafka_config: &ct_platform::config::KafkaConfig, group: &str) -> usize {
    let consumer: BaseConsumer = kafka::client_config(kafka_config).create().expect("client");
    consumer
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()
        .and_then(|list| list.groups().first().map(|g| g.members().len()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_share_the_partitions_and_a_killed_one_loses_nothing() {
    let ctx = TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", PARTITIONS), ("ct.dlq.v1", 1), ("ct.audit.v1", 1)]).await;
    let (registry_url, _stop) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let schema_id = RegistryClient::new(&registry_url)
        .register(&format!("{}-value", topics[0]), avro::event_schema_json())
        .await
        .unwrap();
    let postgres = ctx.postgres();
    let redis_config = ctx.redis();
    // A killed member's partitions move after the session timeout: the broker's minimum here,
    // rather than librdkafka's 45 s default.
    let dir = std::env::temp_dir().join(format!("ct-scale-out-{}", ctx.id));
    std::fs::create_dir_all(&dir).unwrap();
    let config_file = dir.join("projector.toml");
    std::fs::write(
        &config_file,
        "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n",
    )
    .unwrap();
    let group = ctx.group("projector");
    let projector = Projector {
        config_file,
        env: vec![
            ("CT_KAFKA__BOOTSTRAP_SERVERS".into(), ctx.kafka.bootstrap_servers.clone()),
            ("CT_CONSUMER__NAME".into(), group.clone()),
            ("CT_CONSUMER__TOPIC".into(), topics[0].clone()),
            ("CT_CONSUMER__DLQ_TOPIC".into(), topics[1].clone()),
            ("CT_CONSUMER__RETRY_TOPIC".into(), topics[1].clone()),
            ("CT_CONSUMER__AUDIT_TOPIC".into(), topics[2].clone()),
            ("CT_CONSUMER__BATCH_MAX".into(), "200".into()),
            ("CT_REGISTRY__URL".into(), registry_url.clone()),
            ("CT_POSTGRES__URL".into(), postgres.url.clone()),
            ("CT_POSTGRES__SCHEMA".into(), postgres.schema.clone()),
            ("CT_REDIS__URL".into(), redis_config.url.clone()),
            ("CT_REDIS__KEY_PREFIX".into(), redis_config.key_prefix.clone()),
            ("CT_HTTP__LISTEN".into(), "127.0.0.1:0".into()),
        ],
    };

    let mut children: Vec<Child> = (0..3).map(|_| projector.spawn()).collect();
    // Each process is two members (the events topic and the retry topic).
    let joined = eventually(Duration::from_secs(60), || async {
        let kafka_config = ctx.kafka.clone();
        let group = group.clone();
        let n = tokio::task::spawn_blocking(move || members(&kafka_config, &group)).await.unwrap();
        (n >= 6).then_some(n)
    })
    .await;
    assert!(joined.is_some(), "three projectors did not all join the group");

    // Every event once, a tenth of them twice (a producer's retry), over about 12 s.
    let producer_task = {
        let kafka_config = ctx.kafka.clone();
        let topic = topics[0].clone();
        tokio::spawn(async move {
            let producer = kafka::idempotent_producer(&kafka_config, Duration::from_secs(30)).unwrap();
            let mut sent = 0_i64;
            for i in 0..EVENTS {
                let event = event(i);
                let value = wire_event(schema_id, &event);
                for _ in 0..if i % 10 == 0 { 2 } else { 1 } {
                    // Keyed by event so the load spreads over every partition.
                    let key = format!("{i}");
                    producer
                        .send(FutureRecord::to(&topic).key(&key).payload(&value), Duration::from_secs(30))
                        .await
                        .map_err(|(e, _)| e)
                        .unwrap();
                    sent += 1;
                }
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            sent
        })
    };

    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut killed = children.remove(1);
    killed.kill().expect("SIGKILL a projector");
    killed.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    children.push(projector.spawn());
    let sent = producer_task.await.unwrap();

    let pool = ct_platform::postgres::connect(&postgres).await.unwrap();
    let done = eventually(Duration::from_secs(120), || async {
        let progressed: Option<i64> =
            sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM consumer_progress WHERE topic = $1")
                .bind(&topics[0])
                .fetch_one(&pool)
                .await
                .ok()
                .flatten();
        (progressed == Some(sent)).then_some(())
    })
    .await;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap() }
    };
    assert!(done.is_some(), "the group did not reach the end of the log ({sent} records)");
    assert_eq!(count("SELECT count(*) FROM events").await, EVENTS as i64);
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events").await, EVENTS as i64);
    assert_eq!(
        count("SELECT sum(events_total)::bigint FROM type_counts").await,
        EVENTS as i64,
        "an effect was doubled"
    );
    assert_eq!(count("SELECT sum(events_total)::bigint FROM systems").await, EVENTS as i64);
    assert_eq!(
        count("SELECT count(DISTINCT \"partition\") FROM events").await,
        i64::from(PARTITIONS),
        "the load did not reach every partition"
    );

    // The Redis views equal what Postgres implies (each member refreshes what it touched).
    let mut redis = ct_platform::redis::connect(&redis_config).await.unwrap();
    let systems: Vec<(String, i64)> =
        sqlx::query_as("SELECT system_id, events_total FROM systems").fetch_all(&pool).await.unwrap();
    let views_agree = eventually(Duration::from_secs(20), || {
        let mut redis = redis.clone();
        let systems = systems.clone();
        let prefix = redis_config.key_prefix.clone();
        async move {
            for (system, total) in &systems {
                let cached: Option<String> =
                    redis.hget(format!("{prefix}:system:{system}"), "events_total").await.ok()?;
                if cached != Some(total.to_string()) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(views_agree.is_some(), "the Redis system views differ from Postgres");
    let counts: BTreeMap<String, i64> = redis.hgetall(format!("{}:counts", redis_config.key_prefix)).await.unwrap();
    let expected: Vec<(String, i64)> =
        sqlx::query_as("SELECT type, events_total FROM type_counts").fetch_all(&pool).await.unwrap();
    assert_eq!(counts, expected.into_iter().collect::<BTreeMap<_, _>>());

    for mut child in children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}
