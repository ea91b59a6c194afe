//! `ct-load`: open-loop load against the edge (a fixed arrival rate, so latency under overload is
//! honest), HDR latency histograms for the HTTP answer and for event -> visible in the read model,
//! and a zero-loss check at the end: every event that got 202 is in `events` exactly once and no
//! refused one is. Never run by `cargo test`; see `loadtest/README.md`.
#![allow(clippy::print_stdout)]

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use ct_core::signature::ct_signature;
use ct_load::{
    cpu::{self, CpuSample},
    workload::{SOURCES, event_body},
};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::json;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// The same rate for the whole duration.
    Steady,
    /// Five equal steps from a tenth of --rate up to --rate; reports the knee (the highest step
    /// whose HTTP p99 stays under --knee-p99-ms).
    Ramp,
    /// --rate, with a one-second burst at five times the rate every ten seconds.
    Burst,
    /// Steady, and the local broker is SIGKILLed and restarted half-way (deploy/stack.sh); refused
    /// requests are retried with the same eventId, and the zero-loss check must still pass.
    BrokerRestart,
}

#[derive(Debug, Parser)]
#[command(name = "ct-load", about = "Open-loop load tester for the Control Tower edge", version)]
struct Args {
    /// Edge base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    edge: String,
    /// Arrival rate, events per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to send, e.g. 10s, 5m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// HTTP connections (the client's pool); requests beyond them queue in the client.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Share of requests that repeat an earlier accepted request (same eventId, same body).
    #[arg(long, default_value_t = 0.02)]
    duplicates: f64,
    /// Share of requests that are invalid (422) and must never be projected.
    #[arg(long, default_value_t = 0.01)]
    invalid: f64,
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    scenario: Scenario,
    /// HMAC secret of the edge.
    #[arg(long, default_value = "dev-webhook-secret")]
    secret: String,
    /// Read model to check visibility and loss in (empty: skip those checks).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/controltower")]
    postgres_url: String,
    /// Schema of the projector's tables.
    #[arg(long, default_value = "ct_projector")]
    schema: String,
    /// Share of accepted events whose event -> visible latency is measured.
    #[arg(long, default_value_t = 0.01)]
    sample_visible: f64,
    /// How long to wait at the end for every accepted event to become visible.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// The p99 threshold that defines the knee in the ramp scenario.
    #[arg(long, default_value_t = 100.0)]
    knee_p99_ms: f64,
    /// Per-second figures to this CSV file.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// An SVG plot of the per-second throughput and p99 latency to this file.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// Print one JSON object with the figures instead of the table.
    #[arg(long)]
    json: bool,
    /// Instead of posting events, read this read API (e.g. http://127.0.0.1:8090) at --rate:
    /// `GET /events` pages with rotating filters, measuring only the HTTP latency.
    #[arg(long)]
    read_api: Option<String>,
    /// Instead of posting events, GET these URLs in turn at --rate (repeat the flag), measuring
    /// only the HTTP latency; e.g. the registry's `/schemas/ids/1`.
    #[arg(long = "get", value_name = "URL")]
    get: Vec<String>,
    /// Bearer token for --read-api and --get.
    #[arg(long, default_value = "dev-token-maintainer")]
    read_token: String,
    /// Events per request: above 1, events of one source go to `POST /events/batch` in arrays of
    /// this size (`--rate` stays in events per second).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=500))]
    batch: u64,
    /// Maximum requests in flight before the tool counts arrivals as client overload.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: u64,
    /// Pin ct-load to these CPUs (a `taskset` list, e.g. `1`), so it does not take the services'.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    /// Pin every running Control Tower service, Kafka, Postgres and Redis to these CPUs (e.g. `0`).
    #[arg(long, value_name = "LIST")]
    service_cpus: Option<String>,
}

/// Outcome of one logical event (after retries in the broker-restart scenario).
/// Every figure counts events (a batch of 50 counts 50), latencies count requests.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    accepted: AtomicU64,
    duplicates_answered: AtomicU64,
    refused_as_expected: AtomicU64,
    unexpected: AtomicU64,
    retryable_failures: AtomicU64,
    client_overload: AtomicU64,
}

/// One request, generated and signed before the clock starts: while the clock runs, ct-load only
/// sends and counts, so its cost per request stays small next to the pipeline's.
struct Prepared {
    /// When it leaves, from the start of the run.
    due: Duration,
    authorization: HeaderValue,
    signature: HeaderValue,
    body: bytes::Bytes,
    /// Ending in `#dup` for a repeat of an earlier request.
    event_ids: Vec<String>,
    refusal: bool,
}

struct Shared {
    args: Args,
    http: reqwest::Client,
    /// `POST /events` or `/events/batch` on the edge, parsed once.
    ingest_url: reqwest::Url,
    tally: Tally,
    http_latency: Mutex<Histogram<u64>>,
    second_latency: Mutex<Histogram<u64>>,
    accepted_ids: Mutex<Vec<String>>,
    refused_ids: Mutex<Vec<String>>,
    samples: Mutex<HashMap<String, Instant>>,
    in_flight: AtomicU64,
    started: Instant,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

async fn send_once(shared: &Shared, request: &Prepared) -> Result<u16, reqwest::Error> {
    let response = shared
        .http
        .post(shared.ingest_url.clone())
        .header(CONTENT_TYPE, JSON.clone())
        .header(AUTHORIZATION, request.authorization.clone())
        .header("x-ct-signature", request.signature.clone())
        .body(request.body.clone())
        .send()
        .await?;
    let status = response.status().as_u16();
    let answer = response.bytes().await?;
    if status == 202 {
        // The edge's compact JSON; counting the flag avoids parsing every answer.
        let duplicates = answer.windows(DUPLICATE.len()).filter(|window| *window == DUPLICATE).count();
        shared.tally.duplicates_answered.fetch_add(duplicates as u64, Ordering::Relaxed);
    }
    Ok(status)
}

const DUPLICATE: &[u8] = br#""duplicate":true"#;

/// Sends one request (one event, or a batch); retries 5xx/transport errors with the same body and
/// eventIds (what a producer does).
async fn deliver(shared: Arc<Shared>, requests: Arc<Vec<Prepared>>, index: usize, due: Instant, sample: bool) {
    let request = &requests[index];
    let (event_ids, expect_refusal) = (&request.event_ids, request.refusal);
    let mut attempt = 0;
    // The first attempt counts from when it was due, so a client that falls behind shows.
    let mut started = due;
    loop {
        let outcome = send_once(&shared, request).await;
        let micros = started.elapsed().as_micros() as u64;
        let _ = shared.http_latency.lock().expect("histogram").record(micros.max(1));
        let _ = shared.second_latency.lock().expect("histogram").record(micros.max(1));
        match outcome {
            Ok(202) if !expect_refusal => {
                shared.tally.accepted.fetch_add(event_ids.len() as u64, Ordering::Relaxed);
                if sample {
                    shared.samples.lock().expect("samples").insert(event_ids[0].clone(), started);
                }
                shared.accepted_ids.lock().expect("ids").extend(event_ids.iter().cloned());
                break;
            }
            Ok(400..=499) if expect_refusal => {
                shared.tally.refused_as_expected.fetch_add(event_ids.len() as u64, Ordering::Relaxed);
                shared.refused_ids.lock().expect("ids").extend(event_ids.iter().cloned());
                break;
            }
            Ok(status) if (500..=599).contains(&status) || status == 429 => {
                shared.tally.retryable_failures.fetch_add(event_ids.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                shared.tally.retryable_failures.fetch_add(event_ids.len() as u64, Ordering::Relaxed);
            }
            Ok(_) => {
                shared.tally.unexpected.fetch_add(event_ids.len() as u64, Ordering::Relaxed);
                break;
            }
        }
        attempt += 1;
        if shared.args.scenario != Scenario::BrokerRestart || attempt > 120 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        started = Instant::now();
    }
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// One connection's worker: the next request of the schedule, when it is due, until none is left.
async fn send_in_turn(
    shared: Arc<Shared>,
    prepared: Arc<Vec<Prepared>>,
    cursor: Arc<std::sync::atomic::AtomicUsize>,
    mut rng: StdRng,
) {
    loop {
        let index = cursor.fetch_add(1, Ordering::Relaxed);
        let Some(request) = prepared.get(index) else { break };
        let due = shared.started + request.due;
        tokio::time::sleep_until(due.into()).await;
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.tally.sent.fetch_add(request.event_ids.len() as u64, Ordering::Relaxed);
        let repeat = request.event_ids[0].ends_with("#dup");
        let sample = !request.refusal && !repeat && rng.random::<f64>() < shared.args.sample_visible;
        deliver(Arc::clone(&shared), Arc::clone(&prepared), index, due, sample).await;
    }
}

/// When each request leaves, from the start: `--batch` events at `rate_at` events per second.
fn schedule(args: &Args) -> Vec<Duration> {
    let (mut at, end) = (0.0, args.duration.as_secs_f64());
    let mut due = Vec::new();
    while at < end {
        due.push(Duration::from_secs_f64(at));
        at += args.batch as f64 / rate_at(args, Duration::from_secs_f64(at));
    }
    due
}

/// Every request of the run, generated and signed on every core: the same mix as before (a share
/// invalid, a share repeating an earlier request of the same slice), the event numbers congruent
/// to the request's number modulo the sources, so a request holds one source.
fn prepare(args: &Args, run: &str) -> Vec<Prepared> {
    let due = schedule(args);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let slice = due.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let slices: Vec<_> = due
            .chunks(slice)
            .enumerate()
            .map(|(t, dues)| scope.spawn(move || prepare_slice(args, run, t * slice, dues, t as u64)))
            .collect();
        slices.into_iter().flat_map(|s| s.join().expect("a generator thread")).collect()
    })
}

fn prepare_slice(args: &Args, run: &str, first: usize, dues: &[Duration], seed: u64) -> Vec<Prepared> {
    let mut rng = StdRng::seed_from_u64(7 + seed);
    let batch = args.batch;
    let sources = SOURCES.len() as u64;
    let mut prepared: Vec<Prepared> = Vec::with_capacity(dues.len());
    // Earlier fresh requests of this slice, repeated as duplicates.
    let mut fresh: Vec<usize> = Vec::new();
    for (i, due) in dues.iter().enumerate() {
        let n = (first + i + 1) as u64;
        let (source, event_type) = SOURCES[(n % sources) as usize];
        let roll: f64 = rng.random();
        let invalid = roll < args.invalid;
        if !invalid && roll < args.invalid + args.duplicates && !fresh.is_empty() {
            let earlier = &prepared[fresh[rng.random_range(0..fresh.len())]];
            let repeat = Prepared {
                due: *due,
                authorization: earlier.authorization.clone(),
                signature: earlier.signature.clone(),
                body: earlier.body.clone(),
                event_ids: earlier.event_ids.iter().map(|id| format!("{id}#dup")).collect(),
                refusal: false,
            };
            prepared.push(repeat);
            continue;
        }
        let mut events: Vec<(String, String)> = (0..batch)
            .map(|j| {
                let number = (n * batch + j) * sources + n % sources;
                let id = format!("{run}_{number}");
                let (_, body) = event_body(&id, number, &mut rng);
                (id, body)
            })
            .collect();
        if invalid {
            // The first event has an empty payload: the whole request is refused (422), and in a
            // batch none of its valid events may be stored either.
            let id = format!("{run}_bad_{n}");
            let bad = json!({"eventId": id, "type": event_type, "ts": chrono::Utc::now().to_rfc3339(), "source": source, "payload": {}});
            events[0] = (id, bad.to_string());
        }
        let event_ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
        let body = if batch > 1 {
            format!("[{}]", events.into_iter().map(|(_, body)| body).collect::<Vec<_>>().join(","))
        } else {
            events.into_iter().next().expect("one event").1
        };
        if !invalid && fresh.len() < 10_000 {
            fresh.push(prepared.len());
        }
        prepared.push(Prepared {
            due: *due,
            authorization: HeaderValue::from_str(&format!("Bearer dev-token-{source}")).expect("ASCII"),
            signature: HeaderValue::from_str(&ct_signature(&args.secret, body.as_bytes())).expect("ASCII"),
            body: bytes::Bytes::from(body),
            event_ids,
            refusal: invalid,
        });
    }
    prepared
}

/// One read of the API; 200 counts as accepted, anything else as unexpected.
async fn read_once(shared: Arc<Shared>, url: String) {
    let started = Instant::now();
    let outcome = shared.http.get(&url).bearer_auth(&shared.args.read_token).send().await;
    let ok = match outcome {
        Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
        Err(_) => false,
    };
    let micros = started.elapsed().as_micros() as u64;
    let _ = shared.http_latency.lock().expect("histogram").record(micros.max(1));
    let _ = shared.second_latency.lock().expect("histogram").record(micros.max(1));
    let counter = if ok { &shared.tally.accepted } else { &shared.tally.unexpected };
    counter.fetch_add(1, Ordering::Relaxed);
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}

fn rate_at(args: &Args, elapsed: Duration) -> f64 {
    let rate = args.rate as f64;
    match args.scenario {
        Scenario::Steady | Scenario::BrokerRestart => rate,
        Scenario::Ramp => {
            let step = ((elapsed.as_secs_f64() / args.duration.as_secs_f64()) * 5.0).floor().min(4.0);
            rate * (0.1 + 0.225 * step)
        }
        Scenario::Burst => {
            if elapsed.as_secs() % 10 == 9 {
                rate * 5.0
            } else {
                rate
            }
        }
    }
}

/// Two panels over time: requests sent per second (with the target) and the p99 HTTP latency.
/// plotters' errors are generic over the backend; the report only needs their text.
fn drawing_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

fn plot(path: &std::path::Path, per_second: &[(u64, f64, u64, u64)], target: f64) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing_error)?;
    let (top, bottom) = root.split_vertically(350);
    let seconds = per_second.last().map_or(1, |(s, ..)| *s).max(1);
    let rate_max = per_second.iter().map(|(_, r, ..)| *r).fold(target, f64::max) * 1.1;
    let mut rate = ChartBuilder::on(&top)
        .caption("events sent per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0..seconds, 0.0..rate_max)
        .map_err(drawing_error)?;
    rate.configure_mesh().x_desc("second").y_desc("events/s").draw().map_err(drawing_error)?;
    rate.draw_series(LineSeries::new(per_second.iter().map(|(s, r, ..)| (*s, *r)), &BLUE))
        .map_err(drawing_error)?
        .label("achieved")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    rate.draw_series(LineSeries::new([(0, target), (seconds, target)], &RED))
        .map_err(drawing_error)?
        .label("target")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    rate.configure_series_labels().border_style(BLACK).draw().map_err(drawing_error)?;
    let p99_max = per_second.iter().map(|(.., p)| *p as f64 / 1000.0).fold(1.0, f64::max) * 1.1;
    let mut latency = ChartBuilder::on(&bottom)
        .caption("HTTP p99 per second (ms)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0..seconds, 0.0..p99_max)
        .map_err(drawing_error)?;
    latency.configure_mesh().x_desc("second").y_desc("ms").draw().map_err(drawing_error)?;
    latency
        .draw_series(LineSeries::new(per_second.iter().map(|(s, .., p)| (*s, *p as f64 / 1000.0)), &MAGENTA))
        .map_err(drawing_error)?;
    root.present().map_err(drawing_error)?;
    Ok(())
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn visible_poller(
    shared: Arc<Shared>,
    pool: sqlx::PgPool,
    histogram: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicU64>,
) {
    while stop.load(Ordering::Relaxed) == 0 || !shared.samples.lock().expect("samples").is_empty() {
        let pending: Vec<String> = shared.samples.lock().expect("samples").keys().cloned().collect();
        if !pending.is_empty() {
            let found: Vec<String> = sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                .bind(&pending)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            let now = Instant::now();
            let mut samples = shared.samples.lock().expect("samples");
            for id in found {
                if let Some(sent) = samples.remove(&id) {
                    let _ = histogram.lock().expect("histogram").record((now - sent).as_micros() as u64);
                }
            }
        }
        if stop.load(Ordering::Relaxed) > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stack(args: &[&str]) -> anyhow::Result<()> {
    let script = std::env::var("CT_STACK_SCRIPT").unwrap_or_else(|_| "deploy/stack.sh".to_owned());
    // The script's output goes to stderr: stdout carries only the report (`--json`).
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(args)
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running {script}"))?;
    anyhow::ensure!(status.success(), "{script} {args:?} failed");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("ct-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let http =
        reqwest::Client::builder().pool_max_idle_per_host(args.connections).timeout(Duration::from_secs(30)).build()?;
    let pool = if args.postgres_url.is_empty() || !args.get.is_empty() {
        None
    } else {
        let schema = args.schema.clone();
        Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .after_connect(move |conn, _| {
                    let schema = schema.clone();
                    Box::pin(async move {
                        sqlx::Executor::execute(conn, format!("SET search_path TO \"{schema}\"").as_str()).await?;
                        Ok(())
                    })
                })
                .connect(&args.postgres_url)
                .await
                .context("connecting to the read model (pass --postgres-url '' to skip the checks)")?,
        )
    };
    if let Some(cpus) = &args.cpus {
        cpu::pin(std::process::id(), cpus)?;
    }
    if let Some(cpus) = &args.service_cpus {
        let pinned = cpu::pin_services(cpus)?;
        eprintln!("ct-load: pinned {} service processes to CPUs {cpus}", pinned.len());
    }
    let run = format!("load_{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let reading = args.read_api.is_some() || !args.get.is_empty();
    let prepared = if reading {
        Vec::new()
    } else {
        let preparing = Instant::now();
        let prepared = prepare(&args, &run);
        let bytes: usize = prepared.iter().map(|p| p.body.len()).sum();
        eprintln!(
            "ct-load: {} requests prepared and signed in {:.1} s ({} MiB of bodies)",
            prepared.len(),
            preparing.elapsed().as_secs_f64(),
            bytes / (1 << 20)
        );
        prepared
    };
    let prepared = Arc::new(prepared);
    let path = if args.batch > 1 { "/events/batch" } else { "/events" };
    let ingest_url = reqwest::Url::parse(&format!("{}{path}", args.edge.trim_end_matches('/')))
        .with_context(|| format!("--edge {}", args.edge))?;
    let shared = Arc::new(Shared {
        ingest_url,
        http,
        tally: Tally::default(),
        http_latency: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        second_latency: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
        accepted_ids: Mutex::default(),
        refused_ids: Mutex::default(),
        samples: Mutex::default(),
        in_flight: AtomicU64::new(0),
        started: Instant::now(),
        args,
    });
    let visible = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?));
    let stop_poller = Arc::new(AtomicU64::new(0));
    let poller = pool.clone().map(|pool| {
        tokio::spawn(visible_poller(Arc::clone(&shared), pool, Arc::clone(&visible), Arc::clone(&stop_poller)))
    });

    let args = &shared.args;
    let mut per_second: Vec<(u64, f64, u64, u64)> = Vec::new();
    let mut knee: Option<f64> = None;
    let mut step_rate = rate_at(args, Duration::ZERO);
    let mut step_p99 = 0.0_f64;
    let mut restarted = false;
    let mut next = Instant::now();
    let mut n: u64 = 0;
    let mut last_report = Instant::now();
    let mut last_sent = 0;
    let cpu_at_start = CpuSample::now();
    // Open loop on a fixed set of connections (as wrk2 does): each worker takes the next request
    // of the schedule, waits until it is due and sends it; a request that leaves late still
    // counts its latency from when it was due, so falling behind shows instead of hiding.
    let cursor = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..if reading { 0 } else { args.connections })
        .map(|w| {
            let rng = StdRng::seed_from_u64(1_000 + w as u64);
            tokio::spawn(send_in_turn(Arc::clone(&shared), Arc::clone(&prepared), Arc::clone(&cursor), rng))
        })
        .collect();
    while shared.started.elapsed() < args.duration {
        let elapsed = shared.started.elapsed();
        let rate = rate_at(args, elapsed);
        if args.scenario == Scenario::Ramp && (rate - step_rate).abs() > f64::EPSILON {
            if step_p99 < args.knee_p99_ms {
                knee = Some(step_rate);
            }
            step_rate = rate;
            step_p99 = 0.0;
        }
        if args.scenario == Scenario::BrokerRestart && !restarted && elapsed > args.duration / 2 {
            restarted = true;
            tokio::task::spawn_blocking(|| {
                let result = stack(&["down", "kafka", "--kill"]).and_then(|()| stack(&["up"]));
                if let Err(error) = result {
                    eprintln!("ct-load: broker restart failed: {error:#}");
                }
            });
        }
        if reading {
            next += Duration::from_secs_f64(1.0 / rate);
            let now = Instant::now();
            if next > now {
                tokio::time::sleep_until(next.into()).await;
            }
            n += 1;
            let (source, event_type) = SOURCES[(n % SOURCES.len() as u64) as usize];
            if shared.in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                shared.tally.client_overload.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            shared.tally.sent.fetch_add(1, Ordering::Relaxed);
            let url = match (&args.read_api, n % 3) {
                (None, _) => args.get[(n % args.get.len() as u64) as usize].clone(),
                (Some(api), 0) => format!("{api}/events?limit=20"),
                (Some(api), 1) => format!("{api}/events?source={source}&limit=50"),
                (Some(api), _) => format!("{api}/events?type={event_type}&from=2025-01-01T00:00:00Z&limit=20"),
            };
            tokio::spawn(read_once(Arc::clone(&shared), url));
            if last_report.elapsed() >= Duration::from_secs(1) {
                let mut second = shared.second_latency.lock().expect("histogram");
                eprintln!(
                    "[{:>4}s] {} sent  p99 {:.1} ms",
                    elapsed.as_secs(),
                    shared.tally.sent.load(Ordering::Relaxed),
                    ms(&second, 0.99)
                );
                second.reset();
                last_report = Instant::now();
            }
            continue;
        }
        // The connections' workers send; this loop only reports.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_report.elapsed() >= Duration::from_secs(1) {
            let sent = shared.tally.sent.load(Ordering::Relaxed);
            let mut second = shared.second_latency.lock().expect("histogram");
            let p99 = ms(&second, 0.99);
            step_p99 = step_p99.max(p99);
            let achieved = (sent - last_sent) as f64 / last_report.elapsed().as_secs_f64();
            per_second.push((elapsed.as_secs(), achieved, second.len(), (p99 * 1000.0) as u64));
            second.reset();
            drop(second);
            eprintln!(
                "[{:>4}s] {achieved:>8.0}/s sent  {} accepted  {} retryable  {} unexpected  in flight {}  p99 {p99:.1} ms",
                elapsed.as_secs(),
                shared.tally.accepted.load(Ordering::Relaxed),
                shared.tally.retryable_failures.load(Ordering::Relaxed),
                shared.tally.unexpected.load(Ordering::Relaxed),
                shared.in_flight.load(Ordering::Relaxed),
            );
            last_sent = sent;
            last_report = Instant::now();
        }
    }
    for worker in workers {
        worker.await.context("a sending worker")?;
    }
    if args.scenario == Scenario::Ramp && step_p99 < args.knee_p99_ms {
        knee = Some(step_rate);
    }
    let send_seconds = shared.started.elapsed().as_secs_f64();
    let (per_core, parts) = CpuSample::now().since(&cpu_at_start);
    while shared.in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Zero-loss check.
    let accepted: Vec<String> =
        shared.accepted_ids.lock().expect("ids").iter().filter(|id| !id.ends_with("#dup")).cloned().collect();
    let refused: Vec<String> = shared.refused_ids.lock().expect("ids").clone();
    let (mut visible_count, mut refused_visible, mut checked) = (0_i64, 0_i64, false);
    if let Some(pool) = pool.as_ref().filter(|_| args.read_api.is_none() && args.get.is_empty()) {
        checked = true;
        let deadline = Instant::now() + args.settle;
        loop {
            visible_count = 0;
            for chunk in accepted.chunks(10_000) {
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
                    .bind(chunk)
                    .fetch_one(pool)
                    .await?;
                visible_count += n;
            }
            if visible_count == accepted.len() as i64 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        refused_visible = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = ANY($1)")
            .bind(&refused)
            .fetch_one(pool)
            .await?;
    }
    stop_poller.store(2, Ordering::Relaxed);
    if let Some(poller) = poller {
        let _ = poller.await;
    }

    let http = shared.http_latency.lock().expect("histogram").clone();
    let visible = visible.lock().expect("histogram").clone();
    let t = &shared.tally;
    let lost = if checked { accepted.len() as i64 - visible_count } else { 0 };
    let zero_loss = !checked || (lost == 0 && refused_visible == 0);
    let report = json!({
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "target_rate": args.rate,
        "duration_s": send_seconds,
        "sent": t.sent.load(Ordering::Relaxed),
        "achieved_rate": t.sent.load(Ordering::Relaxed) as f64 / send_seconds,
        "accepted_events": accepted.len(),
        "duplicate_answers": t.duplicates_answered.load(Ordering::Relaxed),
        "refused_as_expected": t.refused_as_expected.load(Ordering::Relaxed),
        "retryable_failures": t.retryable_failures.load(Ordering::Relaxed),
        "unexpected": t.unexpected.load(Ordering::Relaxed),
        "client_overload": t.client_overload.load(Ordering::Relaxed),
        "mode": if args.read_api.is_some() { "read-api" } else if !args.get.is_empty() { "get" } else { "ingest" },
        "http_ms": {"p50": ms(&http, 0.5), "p90": ms(&http, 0.9), "p99": ms(&http, 0.99), "p999": ms(&http, 0.999), "max": http.max() as f64 / 1000.0},
        "visible_ms": {"samples": visible.len(), "p50": ms(&visible, 0.5), "p99": ms(&visible, 0.99), "max": visible.max() as f64 / 1000.0},
        "knee_rate": knee,
        "cpu": {"per_core_busy": per_core, "cores_by_part": parts},
        "zero_loss": {"checked": checked, "accepted": accepted.len(), "visible_exactly_once": visible_count, "lost": lost, "refused_but_visible": refused_visible, "passed": zero_loss},
    });
    if let Some(path) = &args.csv {
        let mut csv = String::from("second,achieved_rate,responses,p99_us\n");
        for (s, r, c, p) in &per_second {
            csv.push_str(&format!("{s},{r:.0},{c},{p}\n"));
        }
        std::fs::write(path, csv)?;
    }
    if let Some(path) = &args.svg {
        plot(path, &per_second, args.rate as f64)?;
    }
    if args.json {
        println!("{report}");
    } else {
        println!("scenario        {}", report["scenario"]);
        println!(
            "sent            {} in {:.1} s ({:.0}/s, target {}/s)",
            report["sent"],
            send_seconds,
            report["achieved_rate"].as_f64().unwrap_or(0.0),
            args.rate
        );
        println!(
            "accepted        {} (+{} duplicate answers), refused as expected {}, retryable failures {}, unexpected {}, client overload {}",
            accepted.len(),
            report["duplicate_answers"],
            report["refused_as_expected"],
            report["retryable_failures"],
            report["unexpected"],
            report["client_overload"]
        );
        println!(
            "HTTP latency    p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            ms(&http, 0.5),
            ms(&http, 0.9),
            ms(&http, 0.99),
            ms(&http, 0.999),
            http.max() as f64 / 1000.0
        );
        println!(
            "event->visible  p50 {:.1} ms  p99 {:.1}  max {:.1}  ({} samples)",
            ms(&visible, 0.5),
            ms(&visible, 0.99),
            visible.max() as f64 / 1000.0,
            visible.len()
        );
        if let Some(knee) = knee {
            println!("knee            {knee:.0}/s (highest step with p99 < {} ms)", args.knee_p99_ms);
        }
        let busy: Vec<String> =
            per_core.iter().enumerate().map(|(i, b)| format!("cpu{i} {:.0} %", b * 100.0)).collect();
        println!("cores busy      {}", busy.join("  "));
        let mut by_part: Vec<(&&str, &f64)> = parts.iter().filter(|(_, cores)| **cores >= 0.005).collect();
        by_part.sort_by(|a, b| b.1.total_cmp(a.1));
        let by_part: Vec<String> = by_part.iter().map(|(part, cores)| format!("{part} {cores:.2}")).collect();
        println!("cores by part   {}", by_part.join("  "));
        println!(
            "zero loss       {} ({} accepted, {} visible exactly once, {} lost, {} refused but visible)",
            if !checked {
                "not checked"
            } else if zero_loss {
                "PASSED"
            } else {
                "FAILED"
            },
            accepted.len(),
            visible_count,
            lost,
            refused_visible
        );
    }
    Ok(zero_loss && t.unexpected.load(Ordering::Relaxed) == 0)
}
