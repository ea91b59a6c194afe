//! The failure drill on three brokers (`CT_KAFKA_BROKERS=3 deploy/stack.sh up` on its own ports):
//! under a steady load of single events through the edge, the leader of the events topic's
//! busiest partition is SIGKILLed, started again, then another broker is killed and started.
//! Every event the edge acknowledged is projected exactly once, the edge never answers 500 (only
//! 202, or 503 with `Retry-After` that producers retry with the same `eventId`), and it recovers
//! by itself. Prints the 503 window of each failover.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ct_core::signature::ct_signature;
use ct_platform::config::KafkaConfig;
use ct_testkit::{TestContext, eventually, repo_root};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// The cluster's first port; nodes use 19092/19094/19096 (controllers on the next ports), apart
/// from the single broker every other test uses.
const FIRST_PORT: u16 = 19092;

fn cluster(args: &[&str]) {
    let status = Command::new("bash")
        .arg(repo_root().join("deploy/stack.sh"))
        .args(args)
        .env("CT_KAFKA_BROKERS", "3")
        .env("CT_KAFKA_PORT", FIRST_PORT.to_string())
        .status()
        .expect("stack.sh runs");
    assert!(status.success(), "CT_KAFKA_BROKERS=3 deploy/stack.sh {args:?} failed");
}

/// The leader of the partition of `topic` holding the most records.
fn busiest_leader(kafka: &KafkaConfig, topic: &str) -> (i32, i32) {
    let consumer: BaseConsumer = ct_platform::kafka::client_config(kafka).create().expect("client");
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let partitions = metadata.topics()[0].partitions();
    partitions
        .iter()
        .map(|p| {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks");
            (high, p.id(), p.leader())
        })
        .max()
        .map(|(_, partition, leader)| (partition, leader))
        .expect("the topic has partitions")
}

#[derive(Default)]
struct Tally {
    /// Answers by status code.
    statuses: BTreeMap<u16, u64>,
    /// 503s without `Retry-After`.
    unavailable_without_retry_after: u64,
    /// When 503s were answered (since the start).
    unavailable_at: Vec<Duration>,
    accepted: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_and_another_broker_killed_under_load_lose_and_duplicate_nothing() {
    cluster(&["up"]);
    let mut ctx = TestContext::new();
    ctx.kafka = KafkaConfig {
        bootstrap_servers: (0..3).map(|i| format!("127.0.0.1:{}", FIRST_PORT + 2 * i)).collect::<Vec<_>>().join(","),
        properties: Default::default(),
    };
    let topics = ctx.pipeline_topics().await;
    let (registry_url, stop) =
        ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.expect("registry");
    let slice = ctx.slice(&topics, &registry_url);
    let edge = ct_edge::Application::build(ct_edge::Config::for_slice(&slice)).await.expect("edge");
    let edge_url = format!("http://{}", edge.local_addr());
    tokio::spawn(edge.run_until_stopped(stop.clone()));
    let projector = ct_projector::Config::for_slice(&slice);
    let postgres = projector.postgres.clone();
    tokio::spawn(ct_projector::run(projector, stop.clone()));

    // The load: four producers sending one event per request, each retrying a 503 after its
    // Retry-After with the same bytes, as the README tells producers to.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let loading = tokio_util::sync::CancellationToken::new();
    let mut producers = tokio::task::JoinSet::new();
    for producer in 0..4 {
        let (tally, loading, url, id) = (Arc::clone(&tally), loading.clone(), edge_url.clone(), ctx.id.clone());
        producers.spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut n = 0;
            while !loading.is_cancelled() {
                n += 1;
                let event_id = format!("evt_drill_{id}_{producer}_{n}");
                let body = format!(
                    r#"{{"eventId":"{event_id}","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{{"invoiceId":"INV-{n}","period":"2025-09","total":{n}}}}}"#
                );
                loop {
                    let answer = http
                        .post(format!("{url}/events"))
                        .header("content-type", "application/json")
                        .header("authorization", "Bearer dev-token-finance")
                        .header("x-ct-signature", ct_signature("dev-webhook-secret", body.as_bytes()))
                        .body(body.clone())
                        .send()
                        .await;
                    let Ok(answer) = answer else { continue };
                    let status = answer.status().as_u16();
                    let retry_after = answer.headers().get("retry-after").is_some();
                    let retry = {
                        let mut t = tally.lock().unwrap();
                        *t.statuses.entry(status).or_default() += 1;
                        match status {
                            202 => {
                                t.accepted.push(event_id.clone());
                                false
                            }
                            503 => {
                                t.unavailable_at.push(started.elapsed());
                                if !retry_after {
                                    t.unavailable_without_retry_after += 1;
                                }
                                true
                            }
                            _ => false,
                        }
                    };
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    tokio::time::sleep(Duration::from_secs(8)).await;
    let (partition, leader) = busiest_leader(&ctx.kafka, &topics.events);
    let first_kill = started.elapsed();
    eprintln!("drill: SIGKILL node {leader}, leader of {} partition {partition}", topics.events);
    cluster(&["down", "kafka-node", &leader.to_string(), "--kill"]);
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster(&["up"]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let other = (1..=3).find(|n| *n != leader).expect("another node");
    let second_kill = started.elapsed();
    eprintln!("drill: SIGKILL node {other}");
    cluster(&["down", "kafka-node", &other.to_string(), "--kill"]);
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster(&["up"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    loading.cancel();
    while producers.join_next().await.is_some() {}

    let tally = Arc::try_unwrap(tally).ok().expect("producers ended").into_inner().unwrap();
    // How long after a kill producers still got 503s (each waits 1 s and retries).
    let window = |from: Duration, to: Duration| {
        let hits: Vec<&Duration> = tally.unavailable_at.iter().filter(|at| **at >= from && **at < to).collect();
        match hits.last() {
            Some(last) => {
                format!("{} answers, the last {:.1} s after the kill", hits.len(), (**last - from).as_secs_f64())
            }
            None => "none".to_owned(),
        }
    };
    eprintln!(
        "drill: answers {:?}; 503 after the leader kill: {}; after the second kill: {}",
        tally.statuses,
        window(first_kill, second_kill),
        window(second_kill, started.elapsed())
    );
    assert!(tally.accepted.len() > 500, "too little load to mean anything: {:?}", tally.statuses);
    assert!(
        tally.statuses.keys().all(|status| [202, 503].contains(status)),
        "the edge answered only 202 or 503: {:?}",
        tally.statuses
    );
    assert_eq!(tally.unavailable_without_retry_after, 0, "every 503 says when to retry");

    // Every acknowledged event is projected, once.
    let pool = ct_platform::postgres::connect(&postgres).await.expect("postgres");
    let expected = tally.accepted.len() as i64;
    let projected = eventually(Duration::from_secs(120), || async {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
            .bind(&tally.accepted)
            .fetch_one(&pool)
            .await
            .ok()?;
        (count == expected).then_some(count)
    })
    .await;
    assert_eq!(projected, Some(expected), "every acknowledged event is projected");
    let counted: i64 = sqlx::query_scalar("SELECT events_total FROM systems WHERE system_id = 'finance'")
        .fetch_one(&pool)
        .await
        .expect("the finance counter");
    assert_eq!(counted, expected, "no event was counted twice (and none that was refused)");
    stop.cancel();
    cluster(&["down", "kafka"]);
}
