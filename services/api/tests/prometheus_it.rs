//! Prometheus (the Debian package) against the services: the rules shipped in `deploy/prometheus/`
//! pass `promtool check rules` and `promtool test rules`, and a real Prometheus scrapes every
//! service's `/metrics` (edge, registry, read API, projector, DLQ categoriser, health evaluator,
//! runner), loads those rules, and sees an event the edge accepted.

mod common;

use std::{path::Path, process::Command, time::Duration};

use common::stack;
use ct_testkit::{eventually, free_port, repo_root};
use serde_json::{Value, json};

fn promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs (deploy/bootstrap.sh installs Debian's prometheus package)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// Kills Prometheus when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_shipped_rules_and_configuration_pass_promtool() {
    let dir = repo_root().join("deploy/prometheus");
    assert!(promtool(&["check", "rules", "rules.yml"], &dir).contains("SUCCESS: 10 rules found"));
    promtool(&["test", "rules", "rules.test.yml"], &dir);
    promtool(&["check", "config", "prometheus.yml"], &dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_loads_the_rules() {
    let s = stack().await;
    let mut runner = ct_runner::Config::for_slice(&s.ctx.slice(&s.topics, &s.registry));
    let runner_metrics = format!("127.0.0.1:{}", free_port());
    runner.http.listen = runner_metrics.parse().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_runner = stop.clone().drop_guard();
    tokio::spawn(ct_runner::run(runner, stop));
    let mut targets = s.metrics.clone();
    targets.push(("ct-runner", runner_metrics));

    let dir = std::env::temp_dir().join(format!("ct-prometheus-{}", s.ctx.id));
    std::fs::create_dir_all(&dir).unwrap();
    let jobs: String = targets
        .iter()
        .map(|(job, address)| format!("  - job_name: {job}\n    static_configs: [{{targets: [\"{address}\"]}}]\n"))
        .collect();
    let rules = repo_root().join("deploy/prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n{jobs}",
        rules.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus runs (deploy/bootstrap.sh installs Debian's prometheus package)"),
    );
    let status = s
        .post(
            "dev-token-finance",
            &json!({"eventId": format!("evt_prom_{}", s.ctx.id),
        "type": "finance.invoice.generated", "ts": "2025-09-27T10:00:00Z", "source": "finance",
        "payload": {"invoiceId": "INV-P", "period": "2025-09", "total": 1}}),
        )
        .await;
    assert_eq!(status, 202);

    let api = |path: String| {
        let http = s.http.clone();
        async move {
            let answer: Value =
                http.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok()?.json().await.ok()?;
            Some(answer["data"].clone())
        }
    };
    let up = eventually(Duration::from_secs(60), || async {
        let data = api("/api/v1/targets".into()).await?;
        let active = data["activeTargets"].as_array()?.clone();
        let healthy: Vec<String> = active
            .iter()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["job"].as_str().map(str::to_owned))
            .collect();
        (healthy.len() == targets.len()).then_some(healthy)
    })
    .await
    .unwrap_or_else(|| panic!("not every target is up; Prometheus log:\n{}", prometheus_log(&dir)));
    let mut expected: Vec<String> = targets.iter().map(|(job, _)| (*job).to_owned()).collect();
    let mut up = up;
    expected.sort();
    up.sort();
    assert_eq!(up, expected);

    let accepted = eventually(Duration::from_secs(30), || async {
        let data = api("/api/v1/query?query=sum(ct_edge_events_accepted_total)".into()).await?;
        let value: f64 = data["result"][0]["value"][1].as_str()?.parse().ok()?;
        (value >= 1.0).then_some(value)
    })
    .await;
    assert!(accepted.is_some(), "the edge's accepted events never reached Prometheus");

    let groups = eventually(Duration::from_secs(30), || async {
        let data = api("/api/v1/rules".into()).await?;
        let groups = data["groups"].as_array()?.clone();
        let healthy =
            groups.iter().all(|g| g["rules"].as_array().is_some_and(|r| r.iter().all(|r| r["health"] == "ok")));
        (groups.len() == 2 && healthy).then_some(groups.len())
    })
    .await;
    assert_eq!(groups, Some(2), "both rule groups load and evaluate; log:\n{}", prometheus_log(&dir));
}

fn prometheus_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}
