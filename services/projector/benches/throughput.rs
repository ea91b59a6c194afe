//! Projector throughput on the real stack (`cargo bench -p ct-projector`; needs `deploy/stack.sh up`).
//!
//! Writes `CT_BENCH_EVENTS` events (default 200,000) to a fresh 6-partition topic, then measures,
//! in the same run and on the same data:
//! - baseline: reading every record from Kafka with no processing;
//! - projector: decode + plan + one Postgres transaction per batch + Redis refresh, into a fresh
//!   schema each round, with the live projector's configuration;
//! - rebuild mode: the same with the settings `ct rebuild` gives its projector.
//!
//! Each is run `CT_BENCH_ROUNDS` times (default 3); medians and the ratio are printed.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use ct_core::{Envelope, avro, envelope::ParseOptions, redact::Redactor};
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::bench::{env_or, median, produce, read_all};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn event(i: usize) -> Envelope {
    let redactor = Redactor::new("bench");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-28T00:00:00Z".parse().unwrap(),
        max_future_skew: ChronoDuration::minutes(5),
    };
    let ts = format!("2025-09-27T{:02}:{:02}:{:02}Z", (i / 3600) % 24, (i / 60) % 60, i % 60);
    let body = match i % 4 {
        0 => {
            json!({"eventId": format!("bench_{i}"), "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                    "payload": {"invoiceId": format!("INV-{i}"), "period": "2025-09", "total": 1234.56}})
        }
        1 => json!({"eventId": format!("bench_{i}"), "type": "system.heartbeat", "ts": ts, "source": "portal",
                    "payload": {"systemId": "portal", "version": "1.0.0"}}),
        2 => json!({"eventId": format!("bench_{i}"), "type": "backend.fn.error", "ts": ts, "source": "backend",
                    "payload": {"fnName": "timesheetParse", "severity": "high", "stackRef": "gs://logs/1.txt"}}),
        _ => json!({"eventId": format!("bench_{i}"), "type": "portal.upload.received", "ts": ts, "source": "portal",
                    "payload": {"contractorId": format!("C{i}"), "fileRef": "gs://uploads/1.pdf", "sizeBytes": 1024}}),
    };
    Envelope::parse(&body, &options).expect("valid").0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_or("CT_BENCH_EVENTS", 200_000);
    let rounds = env_or("CT_BENCH_ROUNDS", 3);
    let run_id = format!("{}", std::process::id());
    let kafka_config = ct_testkit::kafka_config();
    let topic = format!("bench.{run_id}.events");
    let partitions = 6;
    kafka::ensure_topics(
        &kafka_config,
        &[
            ct_platform::topics::TopicSpec::new(&topic, partitions),
            ct_platform::topics::TopicSpec::new(format!("{topic}.dlq"), 1),
            ct_platform::topics::TopicSpec::new(format!("{topic}.audit"), 1),
        ],
    )
    .await
    .expect("topics");
    let (registry_url, stop_registry) =
        ct_registry::spawn_local(kafka_config.clone(), &format!("bench.{run_id}._schemas")).await.expect("registry");
    let schema_id = RegistryClient::new(&registry_url)
        .register(&format!("{topic}-value"), avro::event_schema_json())
        .await
        .unwrap();

    let produce_rate = produce(&kafka_config, &topic, schema_id, events, event).await;
    println!(
        "wrote {events} events to {topic} ({partitions} partitions) at {produce_rate:.0} events/s (encode + acks=all)"
    );

    let mut raw_rates = Vec::new();
    let mut projector_rates = Vec::new();
    let mut rebuild_rates = Vec::new();
    for round in 0..rounds {
        let took = tokio::task::spawn_blocking({
            let (k, t) = (kafka_config.clone(), topic.clone());
            move || read_all(&k, &t, partitions, events)
        })
        .await
        .unwrap();
        raw_rates.push(events as f64 / took.as_secs_f64());

        let live = project(&kafka_config, &registry_url, &topic, &format!("{run_id}_{round}_live"), events, |c| {
            c.consumer.batch_max = env_or("CT_BENCH_BATCH", c.consumer.batch_max);
        })
        .await;
        projector_rates.push(live);
        let rebuild =
            project(&kafka_config, &registry_url, &topic, &format!("{run_id}_{round}_rebuild"), events, |c| {
                let copy = ct_platform::readmodel::Copy {
                    schema: c.postgres.schema.clone(),
                    consumer: c.consumer.name.clone(),
                    horizon: Default::default(),
                };
                *c = c.clone().for_rebuild(copy);
            })
            .await;
        rebuild_rates.push(rebuild);
        println!(
            "round {round}: raw read {:.0} events/s, projector {live:.0} events/s, rebuild mode {rebuild:.0} events/s",
            raw_rates[round]
        );
    }
    let (raw, projector, rebuild) = (median(raw_rates), median(projector_rates), median(rebuild_rates));
    println!(
        "median over {rounds} rounds: raw read {raw:.0} events/s, projector {projector:.0} events/s (ratio {:.3}), rebuild mode {rebuild:.0} events/s (ratio {:.3})",
        projector / raw,
        rebuild / raw
    );
    stop_registry.cancel();
}

/// Runs a projector (configured by `adjust`) over `topic` into a fresh schema until it has read
/// every record; returns events per second. Progress is polled from `consumer_progress` (a
/// `count(*)` of `events` would cost Postgres more than the projector does).
async fn project(
    kafka_config: &ct_platform::config::KafkaConfig,
    registry_url: &str,
    topic: &str,
    name: &str,
    events: usize,
    adjust: impl FnOnce(&mut ct_projector::Config),
) -> f64 {
    let rebuild_mode = name.ends_with("_rebuild");
    let mut config = ct_projector::Config::defaults();
    config.kafka = kafka_config.clone();
    config.consumer.name = format!("bench-{name}");
    config.consumer.topic = topic.to_owned();
    config.consumer.dlq_topic = format!("{topic}.dlq");
    config.consumer.retry_topic = format!("{topic}.dlq");
    config.consumer.audit_topic = format!("{topic}.audit");
    config.registry.url = registry_url.to_owned();
    config.postgres.url = ct_testkit::postgres_url();
    config.postgres.schema = format!("bench_{name}");
    config.redis.url = ct_testkit::redis_url();
    config.redis.key_prefix = format!("bench:{name}");
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    adjust(&mut config);
    let pool = ct_platform::postgres::connect(&config.postgres).await.unwrap();
    let stop = CancellationToken::new();
    let started = Instant::now();
    // As `ct rebuild` does: secondary indexes dropped for the load, built at the end (timed).
    let deferred = if rebuild_mode {
        ct_projector::store::migrate(&pool).await.unwrap();
        Some(ct_platform::readmodel::DeferredIndexes::drop_from(&pool).await.unwrap())
    } else {
        None
    };
    let projector = tokio::spawn(ct_projector::run(config.clone(), stop.clone()));
    loop {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT sum(next_offset)::bigint FROM consumer_progress WHERE consumer = $1")
                .bind(&config.consumer.name)
                .fetch_one(&pool)
                .await
                .ok()
                .flatten();
        if done == Some(events as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(deferred) = deferred {
        deferred.restore(&pool).await.unwrap();
    }
    let took = started.elapsed();
    stop.cancel();
    let _ = projector.await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, events as i64, "the projector wrote every event");
    sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", config.postgres.schema)).execute(&pool).await.unwrap();
    events as f64 / took.as_secs_f64()
}
