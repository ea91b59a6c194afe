//! The dashboards' data requests over a large read model (`cargo bench -p ct-api --bench pages`;
//! needs `deploy/stack.sh up`).
//!
//! Fills fixed schemas (`bench_pages*`, kept between runs: filling takes minutes) with
//! `CT_BENCH_EVENTS` events (default 5,000,000) over the 60 days before 2026-11-01, a status
//! change per system every 30 minutes, 5,000 dead letters, 60 digests and 50,000 runs; then
//! starts the read API on them, signs in, and asks each page `CT_BENCH_REQUESTS` times (default
//! 100, after 5 warm-ups), one request at a time. Prints p50, p95 and max per page, beside two
//! baselines of the same run: `/healthz` (the HTTP path alone) and `GET /events?limit=50` (the
//! JSON API's newest-events query).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use ct_testkit::bench::{env_or, median};
use tokio_util::sync::CancellationToken;

const END: &str = "2026-11-01T00:00:00Z";
const SCHEMA: &str = "bench_pages";

fn postgres(schema: &str, extra: &[&str]) -> ct_platform::config::PostgresConfig {
    let mut config = ct_api::Config::defaults().postgres;
    config.url = ct_testkit::postgres_url();
    config.schema = schema.to_owned();
    config.extra_schemas = extra.iter().map(|s| (*s).to_owned()).collect();
    config.statement_timeout_ms = 600_000;
    config
}

async fn fill(events: i64, systems: &[String]) -> anyhow::Result<()> {
    let pool = ct_platform::postgres::connect(&postgres(SCHEMA, &[])).await?;
    ct_platform::postgres::migrate(&pool, "projector", ct_projector::store::MIGRATIONS).await?;
    let have: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await?;
    if have == events {
        println!("reusing {events} events in schema {SCHEMA}");
        return Ok(());
    }
    println!("filling {SCHEMA} with {events} events (once; kept for the next runs)");
    let started = Instant::now();
    sqlx::query("TRUNCATE events, runs").execute(&pool).await?;
    // Event i at END - (N - i) * 60 days / N. The mix, per 200 events: 1 invoice generated, 1
    // payment (of the invoice generated 260,000 events, about 3 days, earlier), 1 CI failure,
    // 4 function errors, 8 contract triggers (with correlation ids), 20 uploads, 20 form
    // submissions and 145 heartbeats.
    sqlx::query(
        r#"INSERT INTO events (event_id, type, source, ts, correlation_id, payload, received_at, trace_id, topic, "partition", "offset")
           SELECT 'bench_' || i, k.type, k.source, t.ts,
                  CASE WHEN k.type = 'desktop.trigger.contract' THEN 'corr-' || (i / 100) END,
                  CASE k.type
                    WHEN 'finance.invoice.generated' THEN jsonb_build_object('invoice_id', 'INV-' || i, 'total_minor', 10000 + i % 997, 'currency', 'GBP', 'period', '2026-10')
                    WHEN 'finance.payment.webhook' THEN jsonb_build_object('invoice_id', 'INV-' || (i - 260001), 'status_from', 'pending', 'status_to', 'paid', 'amount_minor', 10000)
                    WHEN 'ci.workflow.failed' THEN jsonb_build_object('repo', 'repo-' || (i % 7), 'run_id', i, 'job', 'build', 'url', 'https://ci.example/' || i, 'branch', 'main')
                    ELSE jsonb_build_object('system_id', k.source, 'n', i)
                  END,
                  t.ts + interval '20 milliseconds', NULL, 'ct.events.v1', (i % 6)::int, i / 6
           FROM generate_series(1, $1::bigint) AS i
           CROSS JOIN LATERAL (SELECT $2::timestamptz - ($1 - i) * (interval '60 days' / $1) AS ts) t
           CROSS JOIN LATERAL (SELECT
                  CASE WHEN i % 200 = 0 THEN 'finance.invoice.generated' WHEN i % 200 = 1 THEN 'finance.payment.webhook'
                       WHEN i % 200 = 2 THEN 'ci.workflow.failed' WHEN i % 200 < 7 THEN 'backend.fn.error'
                       WHEN i % 200 < 15 THEN 'desktop.trigger.contract' WHEN i % 200 < 35 THEN 'portal.upload.received'
                       WHEN i % 200 < 55 THEN 'website.form.submitted' ELSE 'system.heartbeat' END AS type,
                  CASE WHEN i % 200 < 2 THEN 'finance' WHEN i % 200 = 2 THEN 'github' WHEN i % 200 < 7 THEN 'backend'
                       WHEN i % 200 < 15 THEN 'desktop' WHEN i % 200 < 35 THEN 'portal' WHEN i % 200 < 55 THEN 'website'
                       ELSE (ARRAY['portal', 'backend', 'website', 'desktop', 'finance'])[i % 5 + 1] END AS source) k"#,
    )
    .bind(events)
    .bind(END.parse::<chrono::DateTime<chrono::Utc>>()?)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO runs (run_id, trigger, initiator, inputs, started_at, completed_status, duration_ms, metrics, ended_at, listed_at)
         SELECT 'run_' || i, 'desktop.trigger.contract', 'staff', '{}'::jsonb, t, CASE WHEN i % 9 = 0 THEN 'failed' ELSE 'success' END,
                1000 + i % 5000, '{}'::jsonb, t + (1000 + i % 5000) * interval '1 millisecond', t
         FROM generate_series(1, 50000) i, LATERAL (SELECT $1::timestamptz - i * interval '100 seconds' AS t) x",
    )
    .bind(END.parse::<chrono::DateTime<chrono::Utc>>()?)
    .execute(&pool)
    .await?;
    // As autovacuum would after a while: statistics, and the visibility map index-only scans use.
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;
    sqlx::query("VACUUM ANALYZE runs").execute(&pool).await?;

    let health = ct_platform::postgres::connect(&postgres(&format!("{SCHEMA}_health"), &[])).await?;
    ct_platform::postgres::migrate(&health, "health", ct_health::MIGRATIONS).await?;
    sqlx::query("TRUNCATE history").execute(&health).await?;
    sqlx::query(
        "INSERT INTO history (system_id, at, status, previous, reason, message)
         SELECT s, $1::timestamptz - i * interval '30 minutes',
                (ARRAY['green', 'green', 'amber', 'green', 'red'])[(i + length(s)) % 5 + 1], NULL, 'bench', 'bench change'
         FROM unnest($2::text[]) s, generate_series(1, 2880) i",
    )
    .bind(END.parse::<chrono::DateTime<chrono::Utc>>()?)
    .bind(systems)
    .execute(&health)
    .await?;

    let dlq = ct_platform::postgres::connect(&postgres(&format!("{SCHEMA}_dlq"), &[])).await?;
    ct_dlq_categoriser::store::migrate(&dlq).await?;
    sqlx::query("TRUNCATE dlq_items").execute(&dlq).await?;
    sqlx::query(
        "INSERT INTO dlq_items (id, category, rule, stage, step, error_class, error_message, attempts, first_failure_at,
            last_failure_at, original_topic, original_partition, original_offset, source, headers, dlq_topic,
            dlq_partition, dlq_offset, state, state_changed_at, event_id)
         SELECT 'item-' || i, (ARRAY['SCHEMA', 'TRANSIENT', 'CRITICAL'])[i % 3 + 1], 'rule-' || (i % 4), 'ct-projector',
                'decode', 'Error' || (i % 11), 'bench failure', 1 + i % 4, t, t, 'ct.events.v1', i % 6, i, 'portal',
                '{}'::jsonb, 'ct.dlq.v1', 0, i, CASE WHEN i % 4 = 0 THEN 'replayed' ELSE 'parked' END,
                t + interval '1 hour', 'bench_' || (i * 997)
         FROM generate_series(1, 5000) i, LATERAL (SELECT $1::timestamptz - i * interval '17 minutes' AS t) x",
    )
    .bind(END.parse::<chrono::DateTime<chrono::Utc>>()?)
    .execute(&dlq)
    .await?;

    let digest = ct_platform::postgres::connect(&postgres(&format!("{SCHEMA}_digest"), &[])).await?;
    ct_platform::postgres::migrate(&digest, "digest", ct_digest::MIGRATIONS).await?;
    sqlx::query("TRUNCATE digests").execute(&digest).await?;
    sqlx::query(
        "INSERT INTO digests (day, time_zone, sha256, json, markdown, due_at, decided_minute, published_at, late, archived)
         SELECT d::date, 'Europe/London', md5(d::text) || md5(d::text), '{}',
                '# Daily digest for ' || d::date || E'\n\n| source | events |\n|---|---|\n| portal | 1000 |\n',
                d + interval '1 day 8 hours', d + interval '1 day 8 hours', d + interval '1 day 8 hours', false, NULL
         FROM generate_series($1::timestamptz - interval '60 days', $1::timestamptz - interval '1 day', interval '1 day') d",
    )
    .bind(END.parse::<chrono::DateTime<chrono::Utc>>()?)
    .execute(&digest)
    .await?;
    let runs = ct_platform::postgres::connect(&postgres(&format!("{SCHEMA}_runs"), &[])).await?;
    ct_platform::postgres::migrate(&runs, "runs", ct_runner::model::MIGRATIONS).await?;
    println!("filled in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events = env_or("CT_BENCH_EVENTS", 5_000_000) as i64;
    let requests: usize = env_or("CT_BENCH_REQUESTS", 100);
    let mut config = ct_api::Config::defaults();
    let systems: Vec<String> = config.catalogue.load()?.catalogue.systems.iter().map(|s| s.id.clone()).collect();
    fill(events, &systems).await?;

    config.http.listen = "127.0.0.1:0".parse()?;
    let extra =
        [format!("{SCHEMA}_dlq"), format!("{SCHEMA}_health"), format!("{SCHEMA}_runs"), format!("{SCHEMA}_digest")];
    config.postgres = postgres(SCHEMA, &extra.iter().map(String::as_str).collect::<Vec<_>>());
    config.postgres.statement_timeout_ms = 5_000;
    let app = ct_api::Application::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = common::session_cookie(&base, "dev-token-maintainer").await;

    let at = format!("as_of={END}");
    let pages: Vec<(&str, String, bool)> = vec![
        ("baseline: GET /healthz", "/healthz".into(), false),
        ("baseline: GET /events?limit=50 (JSON)", "/events?limit=50".into(), false),
        ("status (24 h timelines)", format!("/ui/status?{at}"), true),
        ("status (30 d timelines)", format!("/ui/status?{at}&range=30d"), true),
        ("events (newest 50 + 24 h timeline)", format!("/ui/events?{at}"), true),
        ("events ?source=finance", format!("/ui/events?{at}&source=finance"), true),
        ("events ?type=ci.workflow.failed", format!("/ui/events?{at}&type=ci.workflow.failed"), true),
        ("events ?q=<event id>", format!("/ui/events?{at}&q=bench_4000007"), true),
        ("events ?correlation_id", format!("/ui/events?{at}&correlation_id=corr-40000"), true),
        ("event drill-down", format!("/ui/events/bench_4000002?{at}"), true),
        ("runs", format!("/ui/runs?{at}"), true),
        ("finance (30 days)", format!("/ui/finance?{at}"), true),
        ("ci (7 days)", format!("/ui/ci?{at}"), true),
        ("exceptions (14 days)", format!("/ui/exceptions?{at}"), true),
        ("reports", format!("/ui/reports?{at}"), true),
    ];
    println!("{events} events; {requests} requests per page, one at a time, after 5 warm-ups\n");
    println!("{:<42} {:>9} {:>9} {:>9} {:>9}", "page", "p50 ms", "p95 ms", "max ms", "bytes");
    for (name, path, page) in pages {
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for round in 0..requests + 5 {
            let mut request = http.get(format!("{base}{path}"));
            request =
                if page { request.header("cookie", &cookie) } else { request.bearer_auth("dev-token-maintainer") };
            let started = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(status.is_success(), "{path}: {status}: {}", String::from_utf8_lossy(&body));
            if round >= 5 {
                times.push(took);
                bytes = body.len();
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<42} {:>9.1} {:>9.1} {:>9.1} {bytes:>9}",
            median(times.clone()),
            percentile(&times, 0.95),
            times[times.len() - 1]
        );
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
