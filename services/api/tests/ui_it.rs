//! The dashboards in a real browser: the whole pipeline with the golden dataset, a dead letter,
//! health ticks and a daily digest, then Debian's Chromium driven by Playwright
//! (`tests/ui/dashboards.py`) signs in, opens every page, filters, watches the live tail
//! receive an event posted meanwhile, triggers a run from the runs page (a refused input first),
//! checks what a viewer sees, moves `as_of`, and records every
//! request the browser made (all to 127.0.0.1). Screenshots go to `target/ui-screenshots/`.

// The browser's timings (first render, 202 to the live tail) are printed for the reader.
#![allow(clippy::print_stdout)]

mod common;

use std::{process::Command, time::Duration};

use ct_testkit::{eventually, repo_root, venv_bin};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_the_golden_dataset_in_chromium() {
    let s = common::stack().await;
    let stop = tokio_util::sync::CancellationToken::new();
    s.spawn_digest(&stop).await;
    // The runs model, so a run triggered from the page is listed and has a page of its own.
    let runner = ct_runner::Config::for_slice(&s.ctx.slice(&s.topics, &s.registry));
    tokio::spawn(ct_runner::run(runner, stop.clone()));

    // The golden dataset through the real edge.
    let requests: Vec<Value> = std::fs::read_to_string(repo_root().join("testdata/golden/requests.jsonl"))
        .expect("testdata/golden/requests.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // Retries of a request are accepted again as duplicates: count each event once.
    let mut accepted = std::collections::BTreeSet::new();
    for request in &requests {
        if s.post(request["token"].as_str().unwrap(), &request["body"]).await == 202 {
            accepted.insert(request["body"]["eventId"].as_str().unwrap_or_default().to_owned());
        }
    }
    let accepted = accepted.len() as i64;
    // A record that is not Avro: the projector dead-letters it (the exceptions page's item).
    let producer: FutureProducer = ct_platform::kafka::client_config(&s.ctx.kafka).create().expect("producer");
    producer
        .send(
            FutureRecord::to(&s.events_topic).key("portal").payload("not avro {\"at\": all}"),
            Duration::from_secs(10),
        )
        .await
        .expect("the garbage record is written");
    let pool = ct_platform::postgres::connect(&s.postgres).await.unwrap();
    let projected = eventually(Duration::from_secs(90), || async {
        let n: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await.ok();
        (n == Some(accepted)).then_some(())
    })
    .await;
    assert!(projected.is_some(), "the golden dataset ({accepted} events) was not projected");
    let (viewer, maintainer) = (Some("dev-token-viewer"), Some("dev-token-maintainer"));
    let parked = eventually(Duration::from_secs(60), || async {
        let items = s.get(maintainer, "/dlq").await.1;
        items.as_array().is_some_and(|a| a.len() == 1).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the garbage record was not parked as a dead letter");

    // The clock over the dataset's days: the evaluator's statuses and, at 08:00 London, digests.
    for minute in [
        "2025-09-22T06:00:00Z",
        "2025-09-22T12:00:00Z",
        "2025-09-23T07:00:00Z",
        "2025-09-23T18:00:00Z",
        "2025-09-24T07:00:00Z",
        "2025-09-25T07:00:00Z",
        "2025-09-25T09:00:00Z",
    ] {
        s.tick(minute).await;
    }
    let decided = eventually(Duration::from_secs(60), || async {
        let (status, body, _) = s.get(viewer, "/reports/daily?date=2025-09-24").await;
        let history = s.get(viewer, "/systems/portal/history").await.1;
        (status == 200 && history.as_array().is_some_and(|h| !h.is_empty())).then_some(body)
    })
    .await;
    assert!(decided.is_some(), "no digest of the 24th or no status history");

    let shots = repo_root().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = repo_root().join("services/api/tests/ui/dashboards.py");
    let (api, edge) = (s.api.clone(), s.edge.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(venv_bin("python"))
            .arg(script)
            .env("CT_UI_URL", api)
            .env("CT_EDGE_URL", edge)
            .env("CT_HMAC_SECRET", "dev-webhook-secret")
            .env("CT_SCREENSHOTS", &shots)
            .env("CT_AS_OF", "2025-09-25T09:00:00Z")
            .output()
            .expect("the venv's python runs (deploy/bootstrap.sh installs Playwright)")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}");
    assert!(output.status.success(), "the browser checks failed:\n{stdout}\n{stderr}");
    for page in ["login", "status", "events", "event", "runs", "finance", "ci", "exceptions", "exception", "reports"] {
        let path = repo_root().join(format!("target/ui-screenshots/{page}.png"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or blank ({size} bytes)", path.display());
    }
    stop.cancel();
}
