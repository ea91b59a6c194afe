//! `ct dlq`: 1,000 dead letters the projector could not apply plus 20 that are garbage. A dry
//! run changes nothing; the real replay at `--rate 200` hands the 1,000 back (each lands exactly
//! once in `events`) and re-parks the garbage instead of looping; skip, list, show and the
//! one-line errors of bad arguments. The binary runs as an SRE would run it.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use ct_core::dlq::{Context, header};
use ct_platform::kafka;
use ct_testkit::{PipelineTopics, TestContext, eventually, sample_event, wire_event};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const VALID: usize = 1_000;
const GARBAGE: usize = 20;

struct Cli {
    env: Vec<(String, String)>,
}

impl Cli {
    fn new(ctx: &TestContext, t: &PipelineTopics, registry_url: &str) -> Cli {
        let postgres = ctx.dlq_postgres();
        let env = [
            ("CT_KAFKA__BOOTSTRAP_SERVERS", ctx.kafka.bootstrap_servers.as_str()),
            ("CT_TOPICS__DLQ", &t.dlq),
            ("CT_TOPICS__SCHEMA", &t.schema),
            ("CT_TOPICS__TRANSIENT", &t.transient),
            ("CT_TOPICS__CRITICAL", &t.critical),
            ("CT_TOPICS__RETRY", &t.retry),
            ("CT_TOPICS__AUDIT", &t.audit),
            ("CT_REGISTRY__URL", registry_url),
            ("CT_POSTGRES__URL", &postgres.url),
            ("CT_POSTGRES__SCHEMA", &postgres.schema),
            ("CT_ACTOR", "sre-test"),
        ];
        Cli { env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ct"));
        command.args(args).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).env_remove("CT_CONFIG");
        tokio::task::spawn_blocking(move || command.output().expect("run ct")).await.unwrap()
    }

    async fn json(&self, args: &[&str], expected_code: i32) -> Value {
        let output = self.run(args).await;
        assert_eq!(
            output.status.code(),
            Some(expected_code),
            "ct {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("ct {args:?} printed no JSON ({e})"))
    }
}

/// What the projector writes when it cannot apply a record: the original bytes, the context.
fn dead_letter_headers(stage: &str, events_topic: &str, offset: i64) -> OwnedHeaders {
    let now = chrono::Utc::now();
    let context = Context {
        stage: stage.to_owned(),
        step: "apply".into(),
        error_class: "CRITICAL".into(),
        message: "check constraint violated (simulated)".into(),
        attempt: 1,
        original_topic: events_topic.to_owned(),
        original_partition: 0,
        original_offset: offset,
        first_failure_at: now,
        last_failure_at: now,
    };
    context
        .headers()
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value.as_str()) }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_hands_back_valid_items_once_and_reparks_the_rest() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &t.events).await.unwrap();
    let stop = CancellationToken::new();

    let projector = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
    let stage = projector.consumer.name.clone();
    tokio::spawn(ct_projector::run(projector, stop.clone()));

    let categoriser = ct_dlq_categoriser::Config::for_slice(&ctx.slice(&t, &registry_url));
    tokio::spawn(ct_dlq_categoriser::run(categoriser, stop.clone()));

    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
    for i in 0..VALID + GARBAGE {
        let value =
            if i < VALID { wire_event(schema_id, &sample_event(i)) } else { b"\x00\x00\x00\x00\x09not avro".to_vec() };
        let record = FutureRecord::to(&t.dlq)
            .key("finance")
            .payload(&value)
            .headers(dead_letter_headers(&stage, &t.events, i as i64));
        producer.send_result(record).map_err(|(e, _)| e).unwrap();
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).unwrap();

    let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.unwrap_or(-1) }
    };
    let parked = eventually(Duration::from_secs(60), || async {
        (count("SELECT count(*) FROM dlq_items WHERE state = 'parked' AND category = 'CRITICAL'").await
            == (VALID + GARBAGE) as i64)
            .then_some(())
    })
    .await;
    assert!(parked.is_some(), "the dead letters were not all parked as CRITICAL");
    let cli = Cli::new(&ctx, &t, &registry_url);

    // A dry run prints the plan and changes nothing.
    let plan = cli.json(&["dlq", "replay", "--category", "critical", "--dry-run", "--json"], 0).await;
    assert_eq!(
        (plan["items"].as_u64(), plan["dryRun"].as_bool()),
        (Some((VALID + GARBAGE) as u64), Some(true)),
        "{plan}"
    );
    assert_eq!(plan["byCategoryAndStage"][format!("CRITICAL/{stage}")], (VALID + GARBAGE) as u64, "{plan}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count("SELECT count(*) FROM dlq_items WHERE state = 'parked'").await, (VALID + GARBAGE) as i64);
    assert_eq!(count("SELECT count(*) FROM dlq_audit").await, 0);
    assert_eq!(count("SELECT count(*) FROM events").await, 0);

    // Without --yes and without a terminal to ask on, nothing changes.
    assert_eq!(cli.run(&["dlq", "replay", "--category", "critical"]).await.status.code(), Some(1));

    // The replay: at most 200 items/s, the garbage re-parked (exit code 3).
    let started = Instant::now();
    let report = cli
        .json(&["dlq", "replay", "--category", "critical", "--rate", "200", "--yes", "--json", "--reason", "fixed"], 3)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("replayed {} items at --rate 200 in {seconds:.2} s (report: {} s)", VALID + GARBAGE, report["seconds"]);
    assert_eq!((report["replayed"].as_u64(), report["reparked"].as_u64()), (Some(VALID as u64), Some(GARBAGE as u64)));
    assert!(
        report["seconds"].as_f64().unwrap() >= (VALID + GARBAGE - 1) as f64 / 200.0,
        "the rate limit was not held: {report}"
    );

    let reparked_sql = "SELECT count(*) FROM dlq_items WHERE state = 'parked' AND state_reason LIKE 'replay refused%'";
    let landed = eventually(Duration::from_secs(60), || async {
        let replayed =
            count("SELECT count(*) FROM dlq_items WHERE state = 'replayed' AND state_actor = 'sre-test'").await;
        (count("SELECT count(*) FROM events").await == VALID as i64
            && replayed == VALID as i64
            && count(reparked_sql).await == GARBAGE as i64
            && count("SELECT count(*) FROM dlq_audit").await == (VALID + GARBAGE) as i64)
            .then_some(())
    })
    .await;
    assert!(
        landed.is_some(),
        "{} events landed, {} items re-parked",
        count("SELECT count(*) FROM events").await,
        count(reparked_sql).await
    );
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM events").await, VALID as i64);

    // Replaying again takes only the parked garbage, which is re-parked again: no loop, no doubles.
    let again = cli.json(&["dlq", "replay", "--yes", "--json", "--rate", "1000"], 3).await;
    assert_eq!((again["replayed"].as_u64(), again["reparked"].as_u64()), (Some(0), Some(GARBAGE as u64)), "{again}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count("SELECT count(*) FROM events").await, VALID as i64);

    // list, show, skip.
    let listed = cli.json(&["dlq", "list", "--state", "parked", "--json"], 0).await;
    assert_eq!(listed.as_array().unwrap().len(), GARBAGE, "{listed}");
    let garbage_id = listed[0]["id"].as_str().unwrap().to_owned();
    let shown = cli.json(&["dlq", "show", &garbage_id, "--json"], 0).await;
    assert!(shown["decoded"]["error"].is_string(), "{shown}");
    assert_eq!(shown["headers"][header::STAGE], stage.as_str());
    assert_eq!(shown["audit"].as_array().unwrap().len(), 2, "two replays re-parked it: {shown}");
    let replayed_id = format!("{stage}:{}:0:0", t.events);
    let shown = cli.json(&["dlq", "show", &replayed_id, "--json"], 0).await;
    assert_eq!(shown["decoded"]["event"]["eventId"], "f_0", "{shown}");
    assert_eq!(shown["state"], "replayed");

    let skipped =
        cli.json(&["dlq", "skip", "--id", &garbage_id, "--reason", "garbage from a test", "--yes", "--json"], 0).await;
    assert_eq!(skipped["skipped"], 1, "{skipped}");
    let gone = eventually(Duration::from_secs(30), || async {
        (count("SELECT count(*) FROM dlq_items WHERE state = 'skipped'").await == 1).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the skip was not applied");
    assert_eq!(
        cli.json(&["dlq", "list", "--state", "parked", "--json"], 0).await.as_array().unwrap().len(),
        GARBAGE - 1
    );
    let missing = cli.run(&["dlq", "show", "nope:x:0:0"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter `nope:x:0:0`"));
    stop.cancel();
}

#[tokio::test]
async fn every_command_explains_itself_and_bad_arguments_are_one_line_with_code_2() {
    let cli = Cli { env: Vec::new() };
    for args in [
        vec!["--help"],
        vec!["dlq", "--help"],
        vec!["dlq", "list", "--help"],
        vec!["dlq", "show", "--help"],
        vec!["dlq", "replay", "--help"],
        vec!["dlq", "skip", "--help"],
        vec!["rebuild", "projector", "--help"],
    ] {
        let output = cli.run(&args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Usage: ct"), "{args:?}: {help}");
    }
    for (args, mentions) in [
        (vec!["dlq", "replay", "--rate", "0"], "--rate"),
        (vec!["dlq", "list", "--category", "weird"], "weird"),
        (vec!["dlq", "replay", "--from", "yesterday"], "yesterday"),
        (vec!["dlq", "skip", "--yes"], "--reason"),
        (vec!["dlq", "show"], "<ID>"),
        (vec!["dlq", "frobnicate"], "frobnicate"),
    ] {
        let output = cli.run(&args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("ct: ") && stderr.contains(mentions), "{args:?}: {stderr}");
    }
}
