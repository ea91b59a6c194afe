//! `ct digest show|regenerate` against a live digest model: the decided digest printed as it was
//! decided, and a day regenerated from its counts after a late event differs without changing it.

use std::{process::Command, time::Duration};

use chrono::{DateTime, Utc};
use ct_health::ticker::{ClockTopics, Ticker};
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{TestContext, eventually, parse_event, wire_event};
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};

fn ct(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_ct")).args(args).arg("--config").arg(config).output().expect("ct runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_decided_digest_and_regenerate_shows_what_late_events_changed() {
    let ctx = TestContext::new();
    let topics = ctx.pipeline_topics().await;
    let (registry_url, schema_id, _registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &topics.events)
            .await
            .expect("registry");
    let mut config = ct_digest::Config::for_slice(&ctx.slice(&topics, &registry_url));
    config.publisher.enabled = false;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(ct_digest::run(config.clone(), stop.clone()));
    let ticker = Ticker::connect(
        &ctx.kafka,
        RegistryClient::new(&registry_url),
        &ClockTopics {
            clock: topics.clock.clone(),
            events: topics.events.clone(),
            audit: String::new(),
            health: String::new(),
        },
    )
    .await
    .expect("ticker");
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
    let log = |id: &str| {
        let event = parse_event(&json!({"eventId": id, "type": "system.heartbeat", "ts": "2025-09-24T10:00:00Z",
                                        "source": "portal", "payload": {"systemId": "portal"}}));
        let value = wire_event(schema_id, &event);
        let (producer, topic) = (producer.clone(), topics.events.clone());
        async move {
            producer
                .send(FutureRecord::to(&topic).key("portal").payload(&value), Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .expect("the broker takes the event");
        }
    };
    let pool = ct_platform::postgres::connect(&config.postgres).await.expect("postgres");
    let tick = |minute: &'static str| {
        let (ticker, pool) = (&ticker, pool.clone());
        async move {
            let minute: DateTime<Utc> = minute.parse().unwrap();
            ticker.tick(minute).await.expect("tick");
            eventually(Duration::from_secs(60), || async {
                let last: Option<DateTime<Utc>> =
                    sqlx::query_scalar("SELECT minute FROM clock").fetch_optional(&pool).await.ok().flatten();
                (last == Some(minute)).then_some(())
            })
            .await
            .expect("the tick is applied");
        }
    };
    log("cli_1").await;
    log("cli_2").await;
    tick("2025-09-25T07:00:00Z").await;
    log("cli_late").await;
    tick("2025-09-25T07:01:00Z").await;

    let file = std::env::temp_dir().join(format!("ct-digest-cli-{}.toml", ctx.id));
    std::fs::write(&file, format!("[postgres]\nschema = \"{}\"\n", config.postgres.schema)).unwrap();
    let decided: (String, String) = sqlx::query_as("SELECT markdown, sha256 FROM digests WHERE day = '2025-09-24'")
        .fetch_one(&pool)
        .await
        .expect("the 24th was decided");

    let (code, stdout, stderr) = ct(&file, &["digest", "show"]);
    assert_eq!((code, stdout.as_str()), (0, decided.0.as_str()), "{stderr}");
    let (code, stdout, _) = ct(&file, &["--json", "digest", "show", "--date", "2025-09-24"]);
    let shown: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((code, shown["sha256"].as_str()), (0, Some(decided.1.as_str())));
    assert_eq!(shown["published"], false);
    let (code, _, stderr) = ct(&file, &["digest", "show", "--date", "2025-09-30"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no digest of 2025-09-30 was decided"), "{stderr}");
    let (code, _, stderr) = ct(&file, &["digest", "show", "--date", "24/09/2025"]);
    assert_eq!(code, 2, "{stderr}");

    // The late event is in the 24th's counts: regenerating gives 3 events, and says it differs.
    let (code, stdout, stderr) = ct(&file, &["digest", "regenerate", "--date", "2025-09-24"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("3 new events."), "{stdout}");
    assert!(stderr.contains("differs from the decided digest"), "{stderr}");
    let (_, stdout, _) = ct(&file, &["--json", "digest", "regenerate", "--date", "2025-09-24"]);
    let regenerated: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (regenerated["differs"].as_bool(), regenerated["decided_sha256"].as_str()),
        (Some(true), Some(decided.1.as_str()))
    );
    let still: String =
        sqlx::query_scalar("SELECT sha256 FROM digests WHERE day = '2025-09-24'").fetch_one(&pool).await.unwrap();
    assert_eq!(still, decided.1, "regenerating writes nothing");
    stop.cancel();
    let _ = std::fs::remove_file(&file);
}
