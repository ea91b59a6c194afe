//! Trigger acknowledgement latency and run throughput on the real stack
//! (`cargo bench -p ct-runner --bench triggers`; needs `deploy/stack.sh up`).
//!
//! Everything in this process (registry, read API, runner, `ct-target`), each on its own topics
//! and schemas. Measured in the same run:
//! - latency at a fixed arrival rate (`CT_BENCH_RATE`, default 100/s, for `CT_BENCH_SECONDS`,
//!   default 20): the baseline `GET /triggers` (token check and JSON, no write), then
//!   `POST /triggers/portal.notify.retry` without and with an `Idempotency-Key`;
//! - run throughput: `CT_BENCH_RUNS` (default 1,000) triggers sent by 16 clients, timed until the
//!   read model shows every run `success`; the baseline is the same number of calls sent straight
//!   to the target by 16 clients.
#![allow(clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ct_testkit::{TestContext, bench::env_or};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OPERATOR: &str = "dev-token-operator";

struct Rig {
    api: String,
    target: String,
    http: reqwest::Client,
    pool: sqlx::PgPool,
    _stop: CancellationToken,
}

async fn rig() -> Rig {
    let ctx = TestContext::new();
    let topics = ctx.pipeline_topics().await;
    let (registry_url, stop) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await.unwrap();
    let mut target = ct_target::Config::defaults();
    target.http.listen = "127.0.0.1:0".parse().unwrap();
    target.http.limits.max_concurrent_requests = 4096;
    let target_app = ct_target::Application::build(target).await.unwrap();
    let target_url = format!("http://{}", target_app.local_addr());
    tokio::spawn(target_app.run_until_stopped(stop.clone()));
    let mut triggers = (*ct_platform::triggers::TriggersConfig::default().load().unwrap()).clone();
    for spec in triggers.triggers.values_mut() {
        if let Some(own) = spec.target.as_mut() {
            own.url = own.url.replace("http://127.0.0.1:8095", &target_url);
        }
        spec.rate_limit.per_minute = 1_000_000;
        spec.rate_limit.burst = 100_000;
    }
    let triggers = Arc::new(triggers);
    let mut runner = ct_runner::Config::for_slice(&ctx.slice(&topics, &registry_url));
    runner.executor.max_concurrent = 64;
    runner.triggers.preloaded = Some(Arc::clone(&triggers));
    let pool = ct_platform::postgres::connect(&runner.postgres).await.unwrap();
    tokio::spawn(ct_runner::run(runner, stop.clone()));
    let mut api = ct_api::Config::defaults();
    api.http.listen = "127.0.0.1:0".parse().unwrap();
    api.kafka = ctx.kafka.clone();
    api.registry.url = registry_url;
    api.runs.topic = topics.runs.clone();
    api.postgres = ctx.postgres();
    api.triggers.preloaded = Some(triggers);
    let api_app = ct_api::Application::build(api).await.unwrap();
    let api_url = format!("http://{}", api_app.local_addr());
    tokio::spawn(api_app.run_until_stopped(stop.clone()));
    Rig { api: api_url, target: target_url, http: reqwest::Client::new(), pool, _stop: stop }
}

/// Sends `request(i)` at `rate` per second for `seconds`, open loop; latency histogram in µs.
async fn at_rate<F, Fut>(rate: u64, seconds: u64, request: F) -> (Histogram<u64>, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let request = Arc::new(request);
    let mut interval = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..rate * seconds {
        interval.tick().await;
        let (histogram, failures, request) = (histogram.clone(), failures.clone(), request.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let status = request(i).await;
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            histogram.lock().await.record(micros).unwrap();
            if !(200..300).contains(&status) {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let histogram = histogram.lock().await.clone();
    (histogram, failures.load(std::sync::atomic::Ordering::Relaxed))
}

fn report(name: &str, (histogram, failures): &(Histogram<u64>, usize)) -> f64 {
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<44} n={:<6} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  non-2xx {failures}",
        histogram.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    ms(0.5)
}

/// `n` calls of `call(i)` by 16 clients; elapsed time.
async fn closed_loop<F, Fut>(n: u64, call: F) -> Duration
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let call = Arc::new(call);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (next, call) = (next.clone(), call.clone());
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                call(i).await;
            }
        });
    }
    while clients.join_next().await.is_some() {}
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let rate = env_or("CT_BENCH_RATE", 100) as u64;
    let seconds = env_or("CT_BENCH_SECONDS", 20) as u64;
    let runs = env_or("CT_BENCH_RUNS", 1000) as u64;
    let rig = rig().await;
    let http = rig.http.clone();
    let api = rig.api.clone();
    // Warm up: schemas registered, connections open.
    let warm = http
        .post(format!("{api}/triggers/portal.notify.retry"))
        .bearer_auth(OPERATOR)
        .json(&json!({"uploadId": "warm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 202);
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!("rate {rate}/s for {seconds} s each");
    let (h, a) = (http.clone(), api.clone());
    let baseline = report(
        "GET /triggers (baseline)",
        &at_rate(rate, seconds, move |_| {
            let (h, a) = (h.clone(), a.clone());
            async move { h.get(format!("{a}/triggers")).bearer_auth(OPERATOR).send().await.unwrap().status().as_u16() }
        })
        .await,
    );
    let (h, a) = (http.clone(), api.clone());
    let plain = report(
        "POST /triggers/{name}",
        &at_rate(rate, seconds, move |i| {
            let (h, a) = (h.clone(), a.clone());
            async move {
                let body = json!({"uploadId": format!("U{i}")});
                let url = format!("{a}/triggers/portal.notify.retry");
                h.post(url).bearer_auth(OPERATOR).json(&body).send().await.unwrap().status().as_u16()
            }
        })
        .await,
    );
    let (h, a) = (http.clone(), api.clone());
    let keyed = report(
        "POST /triggers/{name} with Idempotency-Key",
        &at_rate(rate, seconds, move |i| {
            let (h, a) = (h.clone(), a.clone());
            async move {
                let body = json!({"uploadId": format!("K{i}")});
                let url = format!("{a}/triggers/portal.notify.retry");
                let request = h.post(url).bearer_auth(OPERATOR).header("idempotency-key", format!("bench-{i}"));
                request.json(&body).send().await.unwrap().status().as_u16()
            }
        })
        .await,
    );
    println!("p50 ratio to the baseline: plain {:.1}x, keyed {:.1}x", plain / baseline, keyed / baseline);

    // Let the latency phases' runs finish before timing throughput.
    let done = |pool: sqlx::PgPool| async move {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM trigger_runs WHERE status IN ('queued', 'running')")
            .fetch_one(&pool)
            .await
            .unwrap();
        open
    };
    while done(rig.pool.clone()).await > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (h, t) = (http.clone(), rig.target.clone());
    let direct = closed_loop(runs, move |i| {
        let (h, t) = (h.clone(), t.clone());
        async move {
            let body = json!({"runId": format!("direct-{i}")});
            let response = h.post(format!("{t}/portal/notify-retry")).header("idempotency-key", format!("direct-{i}"));
            assert!(response.json(&body).send().await.unwrap().status().is_success());
        }
    })
    .await;
    let started = Instant::now();
    let (h, a) = (http.clone(), api.clone());
    closed_loop(runs, move |i| {
        let (h, a) = (h.clone(), a.clone());
        async move {
            let body = json!({"uploadId": format!("T{i}")});
            let url = format!("{a}/triggers/portal.notify.retry");
            assert_eq!(h.post(url).bearer_auth(OPERATOR).json(&body).send().await.unwrap().status(), 202);
        }
    })
    .await;
    let triggered = started.elapsed();
    while done(rig.pool.clone()).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed = started.elapsed();
    let per_s = |d: Duration| runs as f64 / d.as_secs_f64();
    println!(
        "{runs} calls straight to the target: {:.0}/s; {runs} runs: triggered at {:.0}/s, completed at {:.0}/s ({:.2} of the direct rate)",
        per_s(direct),
        per_s(triggered),
        per_s(completed),
        per_s(completed) / per_s(direct)
    );
}
