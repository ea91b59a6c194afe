//! Exactly once from `ct.dlq.v1` to the category topics, through crashes: the categoriser
//! process is SIGKILLed several times while it works through 3,000 dead letters in small
//! transactions; a `read_committed` reader then finds each dead letter exactly once in its
//! category topic, and `dlq_items` holds one row per dead letter.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ct_core::dlq::{Context, header};
use ct_platform::kafka;
use ct_testkit::{PipelineTopics, TestContext, eventually};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    producer::FutureRecord,
};

const DEAD_LETTERS: i64 = 3_000;

struct Categoriser {
    env: Vec<(String, String)>,
}

impl Categoriser {
    fn new(ctx: &TestContext, t: &PipelineTopics) -> Categoriser {
        let (postgres, redis) = (ctx.postgres(), ctx.redis());
        let env = [
            ("CT_KAFKA__BOOTSTRAP_SERVERS", ctx.kafka.bootstrap_servers.clone()),
            ("CT_TOPICS__DLQ", t.dlq.clone()),
            ("CT_TOPICS__SCHEMA", t.schema.clone()),
            ("CT_TOPICS__TRANSIENT", t.transient.clone()),
            ("CT_TOPICS__CRITICAL", t.critical.clone()),
            ("CT_TOPICS__RETRY", t.retry.clone()),
            ("CT_TOPICS__AUDIT", t.audit.clone()),
            ("CT_CATEGORISER__NAME", ctx.group("categoriser")),
            ("CT_CATEGORISER__BATCH_MAX", "20".to_owned()),
            ("CT_RETRY__NAME", ctx.group("retry")),
            ("CT_ITEMS__NAME", ctx.group("dlq-items")),
            ("CT_POSTGRES__URL", postgres.url),
            ("CT_POSTGRES__SCHEMA", postgres.schema),
            ("CT_REDIS__URL", redis.url),
            ("CT_REDIS__KEY_PREFIX", redis.key_prefix),
            ("CT_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ];
        Categoriser { env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ct-dlq-categoriser"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ct-dlq-categoriser")
    }
}

/// Original offset -> how many times it was read, over the category topics, committed only.
fn committed_copies(
    kafka_config: &ct_platform::config::KafkaConfig,
    group: &str,
    t: &PipelineTopics,
) -> BTreeMap<i64, usize> {
    let consumer: BaseConsumer = kafka::client_config(kafka_config)
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in [&t.schema, &t.transient, &t.critical] {
        assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut copies = BTreeMap::new();
    let mut idle = 0;
    while idle < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(message) => {
                idle = 0;
                let message = message.unwrap();
                let offset = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == header::ORIGINAL_OFFSET))
                    .and_then(|h| std::str::from_utf8(h.value.unwrap_or_default()).ok()?.parse().ok())
                    .expect("every categorised record names its original offset");
                *copies.entry(offset).or_insert(0) += 1;
            }
            None => idle += 1,
        }
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dead_letter_is_categorised_exactly_once_through_crashes() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    // Dead letters keep arriving for about 6 s while the categoriser is killed and restarted.
    let producer_task = {
        let (kafka_config, t) = (ctx.kafka.clone(), t.clone());
        tokio::spawn(async move {
            let producer = kafka::idempotent_producer(&kafka_config, Duration::from_secs(30)).unwrap();
            for offset in 0..DEAD_LETTERS {
                let now = chrono::Utc::now();
                let context = Context {
                    stage: "ct-projector".into(),
                    step: if offset % 2 == 0 { "decode" } else { "apply" }.into(),
                    error_class: if offset % 2 == 0 { "SCHEMA" } else { "CRITICAL" }.into(),
                    message: "simulated".into(),
                    attempt: 1,
                    original_topic: t.events.clone(),
                    original_partition: 0,
                    original_offset: offset,
                    first_failure_at: now,
                    last_failure_at: now,
                };
                let headers = ct_testkit::dead_letter_headers(&context);
                let record = FutureRecord::to(&t.dlq).key("portal").payload("garbage").headers(headers);
                producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
                if offset % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    };

    let categoriser = Categoriser::new(&ctx, &t);
    let mut child = categoriser.spawn();
    let mut kills = 0;
    while !producer_task.is_finished() {
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        child.kill().expect("SIGKILL the categoriser");
        child.wait().unwrap();
        kills += 1;
        child = categoriser.spawn();
    }
    producer_task.await.unwrap();
    assert!(kills >= 3, "the categoriser was killed only {kills} times while dead letters arrived");

    let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
    let items = eventually(Duration::from_secs(90), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dlq_items").fetch_one(&pool).await.ok()?;
        (rows == DEAD_LETTERS).then_some(rows)
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(items.is_some(), "dlq_items never held one row per dead letter");

    let copies = tokio::task::spawn_blocking({
        let (kafka_config, group, t) = (ctx.kafka.clone(), ctx.group("reader"), t.clone());
        move || committed_copies(&kafka_config, &group, &t)
    })
    .await
    .unwrap();
    assert_eq!(copies.len() as i64, DEAD_LETTERS, "some dead letters were never categorised");
    let doubled: Vec<_> = copies.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "categorised more than once: {doubled:?}");
    let schema: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dlq_items WHERE category = 'SCHEMA'").fetch_one(&pool).await.unwrap();
    assert_eq!(schema, DEAD_LETTERS / 2);
}
