//! Time to build one day's digest from the log (`cargo bench -p ct-digest --bench build`; needs
//! `deploy/stack.sh up`).
//!
//! Writes `CT_BENCH_EVENTS` events (default 1,000,000) of one local day, Sunday 29 March 2026
//! (the 23-hour day), to a fresh 6-partition topic, then the tick of 08:00 BST the next morning,
//! when that day's digest is due. Then, `CT_BENCH_ROUNDS` times (default 2), in the same run on
//! the same data:
//! - baseline: reading every record from Kafka with no processing;
//! - digest: a fresh digest model (own schema and group) from offset 0 until the day's digest is
//!   decided: decode, facts stored per batch, then the tick folds them and decides the digest.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ct_core::{Envelope, envelope::ParseOptions, redact::Redactor};
use ct_digest::Config;
use ct_health::ticker::{ClockTopics, Ticker};
use ct_platform::{kafka, registry::RegistryClient, topics::TopicSpec};
use ct_testkit::bench::{env_or, median, produce, read_all};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `i`-th event: spread over the 23 hours of 29 March 2026 in London (00:00 GMT to 23:00 UTC).
fn event(i: usize) -> Envelope {
    let redactor = Redactor::new("bench");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2026-03-30T00:00:00Z".parse().unwrap(),
        max_future_skew: chrono::Duration::minutes(5),
    };
    let second = i % (23 * 3600);
    let ts = format!("2026-03-29T{:02}:{:02}:{:02}Z", second / 3600, second / 60 % 60, second % 60);
    let id = format!("bench_{i}");
    let body = match i % 5 {
        0 => serde_json::json!({"eventId": id, "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                "payload": {"invoiceId": format!("INV-{i}"), "period": "2026-03", "total": 10}}),
        1 => serde_json::json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": "portal",
                "payload": {"systemId": "portal"}}),
        2 => serde_json::json!({"eventId": id, "type": "backend.fn.error", "ts": ts, "source": "backend",
                "payload": {"fnName": format!("fn{}", i % 7), "severity": if i % 10 == 2 { "high" } else { "low" }}}),
        3 => serde_json::json!({"eventId": id, "type": "ci.workflow.failed", "ts": ts, "source": "github",
                "payload": {"repo": format!("repo-{}", i % 5), "runId": i, "job": "build", "url": "https://ci/1"}}),
        _ => serde_json::json!({"eventId": id, "type": "finance.payment.webhook", "ts": ts, "source": "finance",
                "payload": {"invoiceId": format!("INV-{i}"), "statusFrom": "pending", "statusTo": "paid", "amount": 10}}),
    };
    Envelope::parse(&body, &options).expect("valid").0
}

async fn decided(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM digests WHERE day = '2026-03-29'")
        .fetch_one(pool)
        .await
        .is_ok_and(|n| n == 1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_or("CT_BENCH_EVENTS", 1_000_000);
    let rounds = env_or("CT_BENCH_ROUNDS", 2);
    let run_id = std::process::id();
    let kafka_config = ct_testkit::kafka_config();
    let name = |base: &str| format!("bench.{run_id}.{base}");
    let partitions = 6;
    let specs = [
        TopicSpec::new(name("events"), partitions),
        TopicSpec::new(name("clock"), 1),
        TopicSpec::new(name("dlq"), 1),
        TopicSpec::new(name("audit"), 1),
        TopicSpec::new(name("health"), 1),
    ];
    kafka::ensure_topics(&kafka_config, &specs).await.expect("topics");
    let (registry_url, schema_id, stop_registry) =
        ct_registry::spawn_with_event_schema(kafka_config.clone(), &name("_schemas"), &name("events"))
            .await
            .expect("registry");
    produce(&kafka_config, &name("events"), schema_id, events, event).await;
    let topics =
        ClockTopics { clock: name("clock"), events: name("events"), audit: name("audit"), health: name("health") };
    let ticker = Ticker::connect(&kafka_config, RegistryClient::new(&registry_url), &topics).await.expect("ticker");
    let due: DateTime<Utc> = "2026-03-30T07:00:00Z".parse().unwrap();
    ticker.tick(due).await.unwrap();
    println!("wrote {events} events of 2026-03-29 ({partitions} partitions) and the tick of 08:00 BST on the 30th");

    let (mut raw, mut digest, mut digest_s) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let took = tokio::task::spawn_blocking({
            let (k, t) = (kafka_config.clone(), name("events"));
            move || read_all(&k, &t, partitions, events)
        })
        .await
        .unwrap();
        raw.push(events as f64 / took.as_secs_f64());

        let mut config = Config::defaults();
        config.kafka = kafka_config.clone();
        config.consumer.name = format!("bench-{run_id}-{round}-digest");
        config.consumer.events_topic = name("events");
        config.consumer.clock_topic = name("clock");
        config.consumer.dlq_topic = name("dlq");
        config.consumer.audit_topic = name("audit");
        config.consumer.health_topic = name("health");
        config.publisher.enabled = false;
        config.registry.url = registry_url.clone();
        config.postgres.url = ct_testkit::postgres_url();
        config.postgres.schema = format!("bench_{run_id}_{round}_digest");
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        let pool = ct_platform::postgres::connect(&config.postgres).await.unwrap();
        let stop = CancellationToken::new();
        let started = Instant::now();
        tokio::spawn(ct_digest::run(config.clone(), stop.clone()));
        while !decided(&pool).await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.cancel();
        digest_s.push(seconds);
        digest.push(events as f64 / seconds);
        let total: i64 = sqlx::query_scalar("SELECT (json::jsonb -> 'events' ->> 'total')::bigint FROM digests")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(total, events as i64, "the digest counts every event once");
        println!(
            "round {round}: raw read {:.0} events/s; digest decided after {seconds:.1} s ({:.0} events/s)",
            raw[round], digest[round]
        );
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", config.postgres.schema)).execute(&pool).await.unwrap();
    }
    let (raw, digest, seconds) = (median(raw), median(digest), median(digest_s));
    println!(
        "median over {rounds} rounds: raw read {raw:.0} events/s; one day's digest over {events} events in {seconds:.1} s \
         ({digest:.0} events/s, ratio to the raw read {:.3})",
        digest / raw
    );
    stop_registry.cancel();
}
