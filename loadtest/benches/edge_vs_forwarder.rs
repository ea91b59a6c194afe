//! The edge with every check on against a bare axum → rdkafka forwarder, closed loop
//! (`cargo bench -p ct-load --bench edge_vs_forwarder`; needs `deploy/stack.sh up`).
//!
//! Both servers are child processes of this binary (`CT_BENCH_ROLE`), on the same broker, each
//! producing to a fresh 6-partition topic with the same idempotent `acks=all` producer:
//! - forwarder: the raw body becomes the record, keyed by the Authorization header; no checks;
//! - edge: `ct_edge::run` with its real configuration layered with `CT_` variables: token, HMAC,
//!   schema, redaction, Redis idempotency, Avro; only the per-token rate limit is raised.
//!
//! The client keeps `CT_BENCH_CONNECTIONS` (default 128) requests in flight with fresh signed events
//! of ct-load's mix, for `CT_BENCH_SECONDS` (default 10) after a 2 s warm-up, once with one event
//! per request (`POST /events`) and once with batches (`POST /events/batch`; sizes in
//! `CT_BENCH_BATCH`, default `1,100`). Rounds alternate the targets; `CT_BENCH_ROUNDS` (default 3)
//! medians are printed with the edge/forwarder ratio, each server's CPU, and the edge's peak RSS.
//! Every answer must be a 202.
//!
//! With `CT_BENCH_RATE` (events per second) the loop is open instead: request `i` leaves at
//! `i / rate` (in requests) on whichever connection is free, its latency counted from then, so
//! both targets do the same work and their CPU per event compares like for like, below saturation.
//!
//! With `CT_BENCH_CPUS=<client>:<servers>` (`taskset` lists, e.g. `0:1`) the client is pinned to the
//! first CPUs and both servers to the second, so the load generator does not run on the cores whose
//! time is being measured (Kafka and Redis stay unpinned).
//!
//! With `CT_BENCH_WRAP` set to a command (`valgrind --tool=callgrind`), both servers run under it:
//! with an open loop at a low rate, their instruction counts per event are steadier on a noisy
//! machine than CPU time (`callgrind_annotate` gives the totals).
//!
//! With `CT_BENCH_CLUSTER` set to a cluster's bootstrap servers (`CT_KAFKA_BROKERS=3
//! CT_KAFKA_PORT=19092 deploy/stack.sh up`, then `127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096`),
//! the forwarder is replaced by a second edge producing to that cluster (a topic of 3 replicas,
//! `min.insync.replicas=2`), and the ratio printed is 3 brokers / 1 broker.
#![allow(clippy::print_stdout)]

use std::{
    net::TcpListener,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ct_core::signature::ct_signature;
use ct_load::workload::{SOURCES, event_body};
use hdrhistogram::Histogram;
use rand::{SeedableRng, rngs::StdRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::header::HeaderValue;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROLE: &str = "CT_BENCH_ROLE";
const SECRET: &str = "dev-webhook-secret";
const WARM_UP: Duration = Duration::from_secs(2);
/// Whether the first refused request was printed (the rest are only counted).
static REPORTED: AtomicBool = AtomicBool::new(false);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    match std::env::var(ROLE).as_deref() {
        Ok("edge") => runtime.block_on(edge()),
        Ok("forwarder") => runtime.block_on(forwarder()),
        _ => runtime.block_on(bench()),
    }
}

/// The real edge, configured from `CT_` variables like the `ct-edge` binary.
async fn edge() -> anyhow::Result<()> {
    let config = ct_edge::Config::load(None)?;
    let _telemetry = ct_platform::telemetry::init("ct-edge", &config.telemetry)?;
    ct_edge::run(config, ct_platform::shutdown::on_signal()).await
}

struct Forwarder {
    producer: FutureProducer,
    topic: String,
}

/// The baseline: what any HTTP → Kafka bridge costs, with the edge's producer settings.
async fn forwarder() -> anyhow::Result<()> {
    let kafka = ct_testkit::kafka_config();
    let mut producer_config = kafka.clone();
    producer_config.properties.insert("queue.buffering.max.messages".into(), "100000".into());
    let producer = ct_platform::kafka::idempotent_producer(&producer_config, Duration::from_secs(10))?;
    let state = Arc::new(Forwarder { producer, topic: std::env::var("CT_BENCH_TOPIC")? });
    let app = Router::new()
        .route("/events", post(forward))
        .route("/events/batch", post(forward_batch))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(std::env::var("CT_HTTP__LISTEN")?).await?;
    axum::serve(listener, app).with_graceful_shutdown(ct_platform::shutdown::on_signal().cancelled_owned()).await?;
    Ok(())
}

async fn forward(State(state): State<Arc<Forwarder>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers.get(AUTHORIZATION).map_or(&b""[..], HeaderValue::as_bytes);
    let record = FutureRecord::to(&state.topic).key(key).payload(body.as_ref());
    let delivery = match state.producer.send_result(record) {
        Ok(delivery) => delivery,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    match delivery.await {
        Ok(Ok(delivery)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"topic": state.topic, "partition": delivery.partition, "offset": delivery.offset})),
        )
            .into_response(),
        _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The array's elements become records: no more than splitting is done.
async fn forward_batch(State(state): State<Arc<Forwarder>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let key = headers.get(AUTHORIZATION).map_or(&b""[..], HeaderValue::as_bytes);
    let deliveries: Vec<_> = items
        .iter()
        .map(|item| state.producer.send_result(FutureRecord::to(&state.topic).key(key).payload(item.get())).ok())
        .collect();
    let mut offsets = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match delivery {
            Some(delivery) => match delivery.await {
                Ok(Ok(delivery)) => {
                    offsets.push(serde_json::json!({"partition": delivery.partition, "offset": delivery.offset}))
                }
                _ => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            },
            None => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    (StatusCode::ACCEPTED, Json(serde_json::json!({"events": offsets}))).into_response()
}

/// A child process serving one target.
struct Server {
    name: &'static str,
    url: String,
    child: Child,
}

impl Server {
    async fn spawn(name: &'static str, envs: &[(&str, String)]) -> anyhow::Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = match wrapper() {
            Some(wrapper) => {
                let mut words = wrapper.split_whitespace();
                let mut command = Command::new(words.next().context("CT_BENCH_WRAP is empty")?);
                command.args(words).arg(std::env::current_exe()?);
                command
            }
            None => Command::new(std::env::current_exe()?),
        };
        let child = command
            .env(ROLE, name)
            .env("CT_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("CT_TELEMETRY__FILTER", "warn")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        if let Some((_, servers)) = pinning()? {
            ct_load::cpu::pin(child.id(), &servers)?;
        }
        let server = Server { name, url: format!("http://127.0.0.1:{port}"), child };
        let http = reqwest::Client::new();
        // Under valgrind a server starts many times slower.
        let patience = Duration::from_secs(if wrapper().is_some() { 300 } else { 60 });
        let deadline = Instant::now() + patience;
        while http.get(format!("{}/healthz", server.url)).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the {name} did not answer /healthz within {patience:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(server)
    }

    fn named(mut self, name: &'static str) -> Server {
        self.name = name;
        self
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix(" kB")?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time so far, in seconds (clock ticks are 1/100 s on Linux).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Server {
    /// SIGTERM first, so a server shuts down as it would in production (and valgrind writes its
    /// counts); SIGKILL if it is still there after its patience.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(if wrapper().is_some() { 120 } else { 10 });
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One prepared request: `events` fresh events of one source, signed.
struct Prepared {
    authorization: HeaderValue,
    signature: HeaderValue,
    body: Bytes,
    events: u64,
}

/// `count` requests of `batch` events each (a bare event when `batch` is 1), generated on every
/// core before the round starts.
fn prepare(run: &str, count: usize, batch: usize) -> Vec<Prepared> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let per_thread = count.div_ceil(threads);
    let sources = SOURCES.len();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(t as u64);
                    (t * per_thread..((t + 1) * per_thread).min(count))
                        .map(|request| {
                            // Event numbers congruent modulo the sources keep a request to one source.
                            let events: Vec<(String, String)> = (0..batch)
                                .map(|j| {
                                    let n = ((request * batch + j) * sources + request % sources) as u64;
                                    event_body(&format!("{run}_{n}"), n, &mut rng)
                                })
                                .collect();
                            let token = events[0].0.clone();
                            let body = if batch == 1 {
                                events.into_iter().next().expect("one event").1
                            } else {
                                format!("[{}]", events.into_iter().map(|(_, body)| body).collect::<Vec<_>>().join(","))
                            };
                            Prepared {
                                authorization: HeaderValue::from_str(&format!("Bearer {token}")).expect("ascii"),
                                signature: HeaderValue::from_str(&ct_signature(SECRET, body.as_bytes()))
                                    .expect("ascii"),
                                body: Bytes::from(body),
                                events: batch as u64,
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("generator")).collect()
    })
}

/// A target's name and its rounds.
type TargetRounds = (&'static str, Vec<RoundResult>);

struct RoundResult {
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_cores: f64,
    refused: u64,
}

/// Closed loop: `connections` workers each send their next request as soon as the previous answered.
/// `reuse` sends the prepared requests again when they run out: only for the forwarder, which has
/// no idempotency, so a repeated body costs it what a fresh one does.
async fn drive(
    server: &Server,
    path: &str,
    requests: Vec<Prepared>,
    connections: usize,
    seconds: u64,
    reuse: bool,
    requests_per_s: Option<f64>,
) -> RoundResult {
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build().expect("client");
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let reuse = reuse && !requests.is_empty();
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let deadline = measure_from + Duration::from_secs(seconds);
    let url = format!("{}{path}", server.url);
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (http, requests, next, measured, refused, exhausted, url) = (
            http.clone(),
            Arc::clone(&requests),
            Arc::clone(&next),
            Arc::clone(&measured),
            Arc::clone(&refused),
            Arc::clone(&exhausted),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            loop {
                let mut index = next.fetch_add(1, Ordering::Relaxed);
                let sent = match requests_per_s {
                    Some(rate) => {
                        let due = start + Duration::from_secs_f64(index as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                if sent >= deadline {
                    break;
                }
                if reuse {
                    index %= requests.len();
                }
                let Some(request) = requests.get(index) else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                let answer = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header(AUTHORIZATION, request.authorization.clone())
                    .header("x-ct-signature", request.signature.clone())
                    .body(request.body.clone())
                    .send()
                    .await;
                let accepted = match answer {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => response.bytes().await.is_ok(),
                    Ok(response) => {
                        if !REPORTED.swap(true, Ordering::Relaxed) {
                            let status = response.status();
                            eprintln!("first refusal: {status} {}", response.text().await.unwrap_or_default());
                        }
                        false
                    }
                    Err(error) => {
                        if !REPORTED.swap(true, Ordering::Relaxed) {
                            eprintln!("first failed request: {error}");
                        }
                        false
                    }
                };
                if !accepted {
                    refused.fetch_add(1, Ordering::Relaxed);
                } else if sent >= measure_from {
                    measured.fetch_add(request.events, Ordering::Relaxed);
                    latency.record(sent.elapsed().as_micros() as u64).expect("in range");
                }
            }
            latency
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_at_measure_start = server.cpu_seconds();
    tokio::time::sleep_until(deadline.into()).await;
    let cpu = server.cpu_seconds() - cpu_at_measure_start;
    let mut latency = Histogram::<u64>::new(3).expect("histogram");
    for worker in workers {
        latency.add(worker.await.expect("worker")).expect("same bounds");
    }
    assert!(!exhausted.load(Ordering::Relaxed), "the edge ran out of prepared events; raise CT_BENCH_MAX_RATE");
    RoundResult {
        events_per_s: measured.load(Ordering::Relaxed) as f64 / seconds as f64,
        p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        server_cores: cpu / seconds as f64,
        refused: refused.load(Ordering::Relaxed),
    }
}

/// `CT_BENCH_WRAP`, when set: the command both servers run under (`valgrind --tool=callgrind`).
fn wrapper() -> Option<String> {
    std::env::var("CT_BENCH_WRAP").ok().filter(|w| !w.trim().is_empty())
}

/// `CT_BENCH_CPUS=<client>:<servers>`, when set.
fn pinning() -> anyhow::Result<Option<(String, String)>> {
    let Some(cpus) = std::env::var("CT_BENCH_CPUS").ok().filter(|c| !c.is_empty()) else { return Ok(None) };
    let (client, servers) = cpus.split_once(':').context("CT_BENCH_CPUS: <client CPUs>:<server CPUs>, e.g. 0:1")?;
    Ok(Some((client.to_owned(), servers.to_owned())))
}

async fn bench() -> anyhow::Result<()> {
    if let Some((client, servers)) = pinning()? {
        ct_load::cpu::pin(std::process::id(), &client)?;
        println!("client pinned to CPUs {client}, servers to CPUs {servers}");
    }
    let rounds = env_or("CT_BENCH_ROUNDS", 3) as usize;
    let seconds = env_or("CT_BENCH_SECONDS", 10);
    let connections = env_or("CT_BENCH_CONNECTIONS", 128) as usize;
    let fixed_rate = std::env::var("CT_BENCH_RATE").ok().and_then(|r| r.parse::<f64>().ok());
    // Prepared events per round: enough for this rate over the round, warm-up included.
    let max_rate = env_or("CT_BENCH_MAX_RATE", 100_000);
    let batches: Vec<usize> = std::env::var("CT_BENCH_BATCH")
        .unwrap_or_else(|_| "1,100".into())
        .split(',')
        .map(|b| b.trim().parse().context("CT_BENCH_BATCH: events per request, e.g. 1,100"))
        .collect::<anyhow::Result<_>>()?;
    let ctx = ct_testkit::TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 6), ("forwarded", 6)]).await;
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await?;
    let kafka = ("CT_KAFKA__BOOTSTRAP_SERVERS", ctx.kafka.bootstrap_servers.clone());
    let edge_env = |kafka: (&'static str, String), topic: String, prefix: String| {
        vec![
            kafka,
            ("CT_EVENTS__TOPIC", topic),
            ("CT_REGISTRY__URL", registry_url.clone()),
            ("CT_REDIS__KEY_PREFIX", prefix),
            // Short, so the benchmark's keys leave the dev Redis soon.
            ("CT_IDEMPOTENCY__TTL_S", "900".into()),
            ("CT_RATE_LIMIT__PER_MINUTE", "100000000".into()),
            ("CT_RATE_LIMIT__BURST", "1000000".into()),
        ]
    };
    let cluster = std::env::var("CT_BENCH_CLUSTER").ok().filter(|c| !c.is_empty());
    let baseline = match &cluster {
        Some(bootstrap) => {
            let kafka_3 = ct_platform::config::KafkaConfig {
                bootstrap_servers: bootstrap.clone(),
                properties: Default::default(),
            };
            let topic = ctx.topic("ct.events.v1.3");
            ct_platform::kafka::ensure_topics(&kafka_3, &[ct_platform::topics::TopicSpec::new(topic.clone(), 6)])
                .await?;
            let env = edge_env(
                ("CT_KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone()),
                topic,
                format!("{}3", ctx.redis().key_prefix),
            );
            Server::spawn("edge", &env).await?.named("edge-3-brokers")
        }
        None => Server::spawn("forwarder", &[kafka.clone(), ("CT_BENCH_TOPIC", topics[1].clone())]).await?,
    };
    let forwarder = baseline;
    let edge = Server::spawn("edge", &edge_env(kafka, topics[0].clone(), ctx.redis().key_prefix)).await?;
    let mode = fixed_rate.map_or("closed loop".to_owned(), |rate| format!("open loop at {rate} events/s"));
    println!(
        "{} vs edge: {rounds} rounds of {seconds} s (after {} s warm-up), {connections} connections, {mode}",
        forwarder.name,
        WARM_UP.as_secs()
    );
    let mut peak_rss_kib = 0;
    let mut results: Vec<(usize, Vec<TargetRounds>)> =
        batches.iter().map(|&batch| (batch, vec![(forwarder.name, Vec::new()), ("edge", Vec::new())])).collect();
    for round in 0..rounds {
        for (batch, targets) in &mut results {
            let (batch, path) = (*batch, if *batch == 1 { "/events" } else { "/events/batch" });
            for (server, (_, rounds_of_target)) in [&forwarder, &edge].into_iter().zip(targets.iter_mut()) {
                // An edge needs a fresh eventId per event; the forwarder reuses a smaller set.
                let reuse = server.name == "forwarder";
                let rate = if reuse { max_rate / 4 } else { max_rate };
                let count = (rate * (seconds + WARM_UP.as_secs())) as usize / batch;
                let run = format!("{}_{}_{batch}_{round}", ctx.id, server.name);
                let requests = tokio::task::block_in_place(|| prepare(&run, count, batch));
                let requests_per_s = fixed_rate.map(|rate| rate / batch as f64);
                let result = drive(server, path, requests, connections, seconds, reuse, requests_per_s).await;
                let rss_kib = server.proc_status_kib("VmRSS:");
                if server.name == "edge" {
                    peak_rss_kib = peak_rss_kib.max(server.proc_status_kib("VmHWM:"));
                }
                println!(
                    "round {round} batch {batch:>3} {:>9}: {:>8.0} events/s  p50 {:>6.2} ms  p99 {:>6.2} ms  server {:.2} cores  RSS {:.0} MiB  non-202 {}",
                    server.name,
                    result.events_per_s,
                    result.p50_ms,
                    result.p99_ms,
                    result.server_cores,
                    rss_kib as f64 / 1024.0,
                    result.refused
                );
                assert_eq!(result.refused, 0, "every request of the mix must be accepted by the {}", server.name);
                rounds_of_target.push(result);
            }
        }
    }
    println!(
        "\n| events per request | target | events/s | requests/s | p50 ms | p99 ms | server cores | server CPU µs/event |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (batch, targets) in &results {
        let mut medians = Vec::new();
        for (name, rounds) in targets {
            let rate = median(rounds.iter().map(|r| r.events_per_s).collect());
            let cores = median(rounds.iter().map(|r| r.server_cores).collect());
            println!(
                "| {batch} | {name} | {rate:.0} | {:.0} | {:.2} | {:.2} | {cores:.2} | {:.1} |",
                rate / *batch as f64,
                median(rounds.iter().map(|r| r.p50_ms).collect()),
                median(rounds.iter().map(|r| r.p99_ms).collect()),
                cores * 1e6 / rate
            );
            medians.push(rate);
        }
        if cluster.is_some() {
            println!("| {batch} | 3 brokers / 1 broker | {:.3} | | | | | |", medians[0] / medians[1]);
        } else {
            println!("| {batch} | edge / forwarder | {:.3} | | | | | |", medians[1] / medians[0]);
        }
    }
    println!("\nedge peak RSS (VmHWM): {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    Ok(())
}
