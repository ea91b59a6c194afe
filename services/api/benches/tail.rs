//! Event → visible in the dashboards' live tail (`cargo bench -p ct-api --bench tail`; needs
//! `deploy/stack.sh up`).
//!
//! The whole pipeline in this process (registry, edge, projector, DLQ categoriser, health
//! evaluator, read API; each on this run's own topics and schema), one signed-in live tail open
//! on `/ui/tail`, and `CT_BENCH_RATE` events per second (default 1,000), one per request, for
//! `CT_BENCH_SECONDS` (default 30). For each event: the time from its `202` to its row arriving
//! on the tail. Prints p50, p95, p99 and max, and how many arrived.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ct_testkit::bench::env_or;
use serde_json::json;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rate = env_or("CT_BENCH_RATE", 1_000);
    let seconds = env_or("CT_BENCH_SECONDS", 30);
    let s = common::stack().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = common::session_cookie(&s.api, "dev-token-viewer").await;
    // Warm the pipeline (schemas registered, consumers assigned) before measuring.
    let warm = json!({"eventId": "tail_warm", "type": "system.heartbeat", "ts": "2026-11-30T10:00:00Z",
                      "source": "portal", "payload": {"systemId": "portal"}});
    anyhow::ensure!(s.post("dev-token-portal", &warm).await == 202, "warm-up event refused");
    s.wait_events("source=portal", 1).await;

    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tail = http.get(format!("{}/ui/tail", s.api)).header("cookie", &cookie).send().await?;
    anyhow::ensure!(tail.status().is_success(), "tail: {}", tail.status());
    let seen = arrived.clone();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = tail.chunk().await {
            let now = Instant::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                for line in message.lines().filter_map(|l| l.strip_prefix("data:")) {
                    if let Ok(event) = serde_json::from_str::<serde_json::Value>(line.trim())
                        && let Some(id) = event["eventId"].as_str()
                    {
                        seen.lock().unwrap().insert(id.to_owned(), now);
                    }
                }
            }
        }
    });
    // The tail's poller marks where "new" begins on its first read.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let accepted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = rate * seconds;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let s = Arc::new(s);
    for i in 0..total {
        ticker.tick().await;
        let permit = limit.clone().acquire_owned().await?;
        let (s, accepted) = (s.clone(), accepted.clone());
        tokio::spawn(async move {
            let id = format!("tail_{i}");
            let event = json!({"eventId": id, "type": "system.heartbeat", "ts": "2026-11-30T10:00:00Z",
                               "source": "portal", "payload": {"systemId": "portal"}});
            if s.post("dev-token-portal", &event).await == 202 {
                accepted.lock().unwrap().insert(id, Instant::now());
            }
            drop(permit);
        });
    }
    let offered = started.elapsed().as_secs_f64();
    let _ = limit.acquire_many(256).await?;
    // Everything accepted has 10 s to reach the tail.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && arrived.lock().unwrap().len() < accepted.lock().unwrap().len() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = accepted.lock().unwrap().clone();
    let arrived = arrived.lock().unwrap().clone();
    let mut delays: Vec<f64> = accepted
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|seen| seen.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "{total} events offered in {offered:.1} s ({:.0}/s), {} accepted, {} seen on the tail",
        total as f64 / offered,
        accepted.len(),
        delays.len()
    );
    anyhow::ensure!(!delays.is_empty(), "nothing reached the tail");
    println!(
        "202 → visible in the live tail: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );
    Ok(())
}
