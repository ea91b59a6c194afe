//! Health evaluator throughput and tick delay on the real stack
//! (`cargo bench -p ct-health --bench evaluator`; needs `deploy/stack.sh up`).
//!
//! Writes `CT_BENCH_EVENTS` events (default 200,000; a mix of invoices, heartbeats, function
//! errors and uploads over one day) to a fresh 6-partition topic and one clock tick after them,
//! then measures, in the same run and on the same data, `CT_BENCH_ROUNDS` times (default 3):
//! - baseline: reading every record from Kafka with no processing;
//! - evaluator: a fresh evaluator (own schema and group) from offset 0 until the tick is
//!   evaluated: decode, facts stored per batch, then the tick folds them all and evaluates.
//!
//! Then the tick delay: with the evaluator caught up, `CT_BENCH_TICKS` (default 20) more ticks,
//! each timed from the ticker's acknowledged write to the evaluated minute in Postgres.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ct_core::{Envelope, envelope::ParseOptions, redact::Redactor};
use ct_health::{Config, ticker::Ticker};
use ct_platform::{kafka, registry::RegistryClient, topics::TopicSpec};
use ct_testkit::bench::{env_or, median, produce, read_all};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `i`-th event: ts spread over 2025-09-27, received at the end of that day.
fn event(i: usize) -> Envelope {
    let redactor = Redactor::new("bench");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-28T00:00:00Z".parse().unwrap(),
        max_future_skew: chrono::Duration::minutes(5),
    };
    let second = i % 86_400;
    let ts = format!("2025-09-27T{:02}:{:02}:{:02}Z", second / 3600, second / 60 % 60, second % 60);
    let id = format!("bench_{i}");
    let body = match i % 4 {
        0 => serde_json::json!({"eventId": id, "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                "payload": {"invoiceId": format!("INV-{i}"), "period": "2025-09", "total": 10}}),
        1 => serde_json::json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": "portal",
                "payload": {"systemId": "portal"}}),
        2 => serde_json::json!({"eventId": id, "type": "backend.fn.error", "ts": ts, "source": "backend",
                "payload": {"fnName": "parse", "severity": if i % 8 == 2 { "high" } else { "low" }}}),
        _ => serde_json::json!({"eventId": id, "type": "portal.upload.received", "ts": ts, "source": "portal",
                "payload": {"contractorId": format!("C{i}"), "fileRef": "gs://uploads/1.pdf", "sizeBytes": 1024}}),
    };
    Envelope::parse(&body, &options).expect("valid").0
}

async fn evaluated(pool: &sqlx::PgPool, minute: DateTime<Utc>) -> bool {
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT minute FROM clock").fetch_optional(pool).await.ok().flatten();
    last == Some(minute)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_or("CT_BENCH_EVENTS", 200_000);
    let rounds = env_or("CT_BENCH_ROUNDS", 3);
    let ticks = env_or("CT_BENCH_TICKS", 20);
    let run_id = std::process::id();
    let kafka_config = ct_testkit::kafka_config();
    let name = |base: &str| format!("bench.{run_id}.{base}");
    let partitions = 6;
    let specs = [
        TopicSpec::new(name("events"), partitions),
        TopicSpec::new(name("clock"), 1),
        TopicSpec::new(name("dlq"), 1),
        TopicSpec::new(name("health"), 1),
        TopicSpec::new(name("audit"), 1),
    ];
    kafka::ensure_topics(&kafka_config, &specs).await.expect("topics");
    let (registry_url, schema_id, stop_registry) =
        ct_registry::spawn_with_event_schema(kafka_config.clone(), &name("_schemas"), &name("events"))
            .await
            .expect("registry");

    produce(&kafka_config, &name("events"), schema_id, events, event).await;
    let topics = ct_health::ticker::ClockTopics {
        clock: name("clock"),
        events: name("events"),
        audit: name("audit"),
        health: String::new(),
    };
    let ticker = Ticker::connect(&kafka_config, RegistryClient::new(&registry_url), &topics).await.expect("ticker");
    let first: DateTime<Utc> = "2025-09-28T00:00:00Z".parse().unwrap();
    ticker.tick(first).await.unwrap();
    println!("wrote {events} events ({partitions} partitions) and one tick");

    let mut raw_rates = Vec::new();
    let mut evaluator_rates = Vec::new();
    let mut last_config = None;
    for round in 0..rounds {
        let took = tokio::task::spawn_blocking({
            let (k, t) = (kafka_config.clone(), name("events"));
            move || read_all(&k, &t, partitions, events)
        })
        .await
        .unwrap();
        raw_rates.push(events as f64 / took.as_secs_f64());

        let mut config = Config::defaults();
        config.kafka = kafka_config.clone();
        config.consumer.name = format!("bench-{run_id}-{round}-health");
        config.consumer.events_topic = name("events");
        config.consumer.clock_topic = name("clock");
        config.consumer.dlq_topic = name("dlq");
        config.consumer.audit_topic = name("audit");
        config.outbox.health_topic = name("health");
        config.ticker.enabled = false;
        config.registry.url = registry_url.clone();
        config.postgres.url = ct_testkit::postgres_url();
        config.postgres.schema = format!("bench_{run_id}_{round}_health");
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        let pool = ct_platform::postgres::connect(&config.postgres).await.unwrap();
        let stop = CancellationToken::new();
        let started = Instant::now();
        tokio::spawn(ct_health::run(config.clone(), stop.clone()));
        while !evaluated(&pool, first).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rate = events as f64 / started.elapsed().as_secs_f64();
        evaluator_rates.push(rate);
        println!("round {round}: raw read {:.0} events/s, evaluator {rate:.0} events/s", raw_rates[round]);
        if round + 1 < rounds {
            stop.cancel();
        } else {
            last_config = Some((pool, stop));
        }
    }
    let (raw, evaluator) = (median(raw_rates), median(evaluator_rates));
    println!(
        "median over {rounds} rounds: raw read {raw:.0} events/s, evaluator {evaluator:.0} events/s (ratio {:.3})",
        evaluator / raw
    );

    // Tick delay with the last evaluator caught up and idle.
    let (pool, stop) = last_config.expect("one round");
    let mut delays = Vec::new();
    for k in 1..=ticks {
        let minute = first + chrono::Duration::minutes(k as i64);
        let written = ticker.tick(minute).await.unwrap();
        let since = Instant::now();
        while !evaluated(&pool, minute).await {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(since.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(written.minute, minute);
    }
    let max = delays.iter().copied().fold(0.0, f64::max);
    println!(
        "tick delay (written and acknowledged -> evaluated, {ticks} ticks): median {:.1} ms, max {max:.1} ms",
        median(delays)
    );
    stop.cancel();
    stop_registry.cancel();
}
