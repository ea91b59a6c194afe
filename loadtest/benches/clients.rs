//! How many events/s one Python process and one Node process send through their client library
//! (`clients/`) to the edge, one event per request and batches of 100, closed loop; against a
//! bare HTTP loop in the same language sending pre-signed requests (the baseline, same run).
//! The edge runs in this process (release build), on its own topic; the stack must be up.
//!
//!     cargo bench -p ct-load --bench clients        (CT_BENCH_ROUNDS=3, CT_BENCH_SECONDS=5)

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;

use anyhow::Context;
use ct_testkit::bench::{env_or, median};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = env_or("CT_BENCH_ROUNDS", 3);
    let seconds = env_or("CT_BENCH_SECONDS", 5);
    let ctx = ct_testkit::TestContext::new();
    let topics = ctx.create_topics(&[("ct.events.v1", 6)]).await;
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &ctx.topic("_schemas")).await?;
    let mut config: ct_edge::Config =
        ct_platform::config::extract(ct_platform::config::figment(ct_edge::config::DEFAULTS, None)?)?;
    config.http.listen = "127.0.0.1:0".parse()?;
    config.kafka = ctx.kafka.clone();
    config.events.topic = topics[0].clone();
    config.registry.url = registry_url;
    config.redis = ctx.redis();
    config.rate_limit.per_minute = 100_000_000;
    config.rate_limit.burst = 1_000_000;
    let app = ct_edge::Application::build(config).await?;
    let url = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));

    let root = ct_testkit::repo_root();
    let build = tokio::process::Command::new("npm")
        .args(["run", "build"])
        .current_dir(root.join("clients/typescript"))
        .output()
        .await?;
    anyhow::ensure!(build.status.success(), "npm run build: {}", String::from_utf8_lossy(&build.stderr));
    let mut rates: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for round in 0..rounds {
        for (program, script) in [
            (ct_testkit::venv_bin("python"), "loadtest/clients/bench.py"),
            ("node".into(), "loadtest/clients/bench.mjs"),
        ] {
            let prefix = format!("{}_{round}_{}", ctx.id, script.rsplit('.').next().unwrap_or("x"));
            let output = tokio::process::Command::new(&program)
                .args([script, &url, "dev-token-finance", "dev-webhook-secret", &seconds.to_string(), &prefix])
                .env("PYTHONPATH", root.join("clients/python/src"))
                .current_dir(&root)
                .output()
                .await
                .with_context(|| format!("running {script}"))?;
            anyhow::ensure!(output.status.success(), "{script}: {}", String::from_utf8_lossy(&output.stderr));
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let result: serde_json::Value = serde_json::from_str(line)?;
                let key = (
                    result["language"].as_str().unwrap_or("?").to_owned(),
                    result["mode"].as_str().unwrap_or("?").to_owned(),
                );
                println!(
                    "round {round} {:>10} {:<26} {:>9.0} events/s",
                    key.0,
                    key.1,
                    result["events_per_s"].as_f64().unwrap_or(0.0)
                );
                rates.entry(key).or_default().push(result["events_per_s"].as_f64().unwrap_or(0.0));
            }
        }
    }
    println!("\n| language | mode | events/s (median of {rounds}) | vs bare HTTP |");
    println!("|---|---|---|---|");
    for language in ["python", "typescript"] {
        let bare =
            median(rates.get(&(language.into(), "bare HTTP, 1 per request".into())).cloned().unwrap_or_default());
        for ((lang, mode), values) in &rates {
            if lang == language {
                let rate = median(values.clone());
                println!("| {lang} | {mode} | {rate:.0} | {:.2}x |", rate / bare);
            }
        }
    }
    stop.cancel();
    Ok(())
}
