//! SLOs on the real broker, registry and Postgres, driven by clock records: failed runs spend the
//! budget (the system turns amber and says which objective it misses), a fast burn opens an alert
//! while one failure in a quiet system pages nobody, a run past its SLA opens an alert that its
//! completion resolves, and a rebuild gives the same bytes.

mod common;

use std::time::Duration;

use common::Scenario;
use ct_health::HealthModel;
use ct_platform::readmodel;
use serde_json::json;

async fn run(s: &Scenario, source: &str, run_id: &str, started: &str, completed: Option<(&str, &str)>) {
    s.log(
        json!({"eventId": format!("start-{run_id}"), "type": "ct.run.started", "ts": started, "source": source,
               "payload": {"runId": run_id, "trigger": "finance.export.backfill", "initiator": "scheduler"}}),
        1,
    )
    .await;
    if let Some((ts, status)) = completed {
        s.log(
            json!({"eventId": format!("end-{run_id}"), "type": "ct.run.completed", "ts": ts, "source": source,
                   "payload": {"runId": run_id, "status": status}}),
            1,
        )
        .await;
    }
}

type SloRow = (i64, i64, Option<f64>, bool, Option<String>);

async fn slo(s: &Scenario, slo: &str, system: &str, job: &str) -> Option<SloRow> {
    sqlx::query_as(
        "SELECT good, total, budget_remaining, judged, burning FROM slo_status
         WHERE slo = $1 AND system_id = $2 AND job = $3",
    )
    .bind(slo)
    .bind(system)
    .bind(job)
    .fetch_optional(&s.pool)
    .await
    .unwrap()
}

async fn alerts(s: &Scenario) -> Vec<(String, String)> {
    sqlx::query_as("SELECT key, state FROM alerts ORDER BY key").fetch_all(&s.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_spend_the_budget_page_on_a_fast_burn_and_a_late_run_alerts_until_it_completes() {
    let s = Scenario::start().await;
    // Tuesday 3 March 2026, 10:00 London (UTC): finance runs 12 backfills, 3 fail.
    s.heartbeat("finance", "2026-03-03T10:00:00Z").await;
    for n in 0..12 {
        let status = if n < 3 { "failed" } else { "success" };
        run(&s, "finance", &format!("run-{n}"), "2026-03-03T10:00:00Z", Some(("2026-03-03T10:01:00Z", status))).await;
    }
    // The same run reported completed twice counts once.
    s.log(
        json!({"eventId": "end-run-5-again", "type": "ct.run.completed", "ts": "2026-03-03T10:01:30Z",
               "source": "finance", "payload": {"runId": "run-5", "status": "failed"}}),
        1,
    )
    .await;
    // The portal has one run, failed: a burn of 100x, but one event is too few to page anyone.
    run(&s, "portal", "portal-1", "2026-03-03T10:00:00Z", Some(("2026-03-03T10:01:00Z", "failed"))).await;
    // A run that never completes.
    run(&s, "finance", "run-late", "2026-03-03T10:00:00Z", None).await;
    // A triggered run the runner announced (source control_tower): the platform's, late after its
    // trigger's sla_s (contract.regenerate: 5 minutes in config/triggers.toml), not after an hour.
    s.log(
        json!({"eventId": "evt_run_t1_started", "type": "ct.run.started", "ts": "2026-03-03T10:00:00Z",
               "source": "control_tower", "correlationId": "run_t1",
               "payload": {"runId": "run_t1", "trigger": "contract.regenerate", "initiator": "operator"}}),
        1,
    )
    .await;
    s.tick("2026-03-03T10:02:00Z").await;

    let (good, total, remaining, judged, burning) = slo(&s, "run-success", "finance", "").await.expect("a row");
    assert_eq!((good, total, judged), (9, 12, true));
    assert!((remaining.unwrap() - (1.0 - 3.0 / 0.12)).abs() < 1e-9, "3 failures of the 0.12 allowed: {remaining:?}");
    assert_eq!(burning.as_deref(), Some("25.0× over 1h and 25.0× over 5m (alert from 14.4×)"));
    let job = slo(&s, "job-success", "finance", "finance.export.backfill").await.expect("a per-job row");
    assert_eq!((job.0, job.1), (9, 12));
    assert_eq!(job.4.as_deref(), Some("12.5× over 6h and 12.5× over 30m (alert from 6×)"), "under 14.4x: the 6x pair");
    let portal = slo(&s, "run-success", "portal", "").await.expect("a row");
    assert_eq!((portal.0, portal.1, portal.3, portal.4), (0, 1, false, None), "too few to judge or to page");
    assert_eq!(
        slo(&s, "run-success", "website", "").await.map(|r| (r.1, r.2)),
        Some((0, None)),
        "no data: listed, no verdict"
    );

    let (status, reason, message) = s.status("finance").await;
    assert_eq!((status.as_str(), reason.as_str()), ("amber", "slo"));
    assert_eq!(
        message,
        "amber because run-success of finance is 75% over 7 d (objective 99%, 12 events) (and 1 more SLO missed)"
    );
    assert_eq!(
        alerts(&s).await,
        [
            ("slo-burn:job-success:finance:finance.export.backfill".to_owned(), "firing".to_owned()),
            ("slo-burn:run-success:finance".to_owned(), "firing".to_owned()),
        ]
    );

    s.tick("2026-03-03T10:05:00Z").await;
    assert!(!alerts(&s).await.iter().any(|(key, _)| key.starts_with("run-sla")), "5 minutes is within both SLAs");
    s.tick("2026-03-03T10:06:00Z").await;
    assert!(alerts(&s).await.contains(&("run-sla:control_tower:run_t1".to_owned(), "firing".to_owned())));
    let summary: String = sqlx::query_scalar("SELECT summary FROM alerts WHERE key = 'run-sla:control_tower:run_t1'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(
        summary,
        "run run_t1 (contract.regenerate) of control_tower has been running for 6m since 2026-03-03 10:00 UTC (SLA 5m)"
    );

    // An hour after it started, the run that never completed is past its SLA.
    s.tick("2026-03-03T11:00:00Z").await;
    assert!(
        !alerts(&s).await.iter().any(|(key, _)| key.starts_with("run-sla:finance")),
        "59 minutes is within the SLA"
    );
    s.tick("2026-03-03T11:01:00Z").await;
    assert!(alerts(&s).await.contains(&("run-sla:finance:run-late".to_owned(), "firing".to_owned())));
    let summary: String = sqlx::query_scalar("SELECT summary FROM alerts WHERE key = 'run-sla:finance:run-late'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(
        summary,
        "run run-late (finance.export.backfill) of finance has been running for 1h01m since 2026-03-03 10:00 UTC (SLA 1h)"
    );
    s.log(
        json!({"eventId": "end-run-late", "type": "ct.run.completed", "ts": "2026-03-03T11:05:00Z",
               "source": "finance", "payload": {"runId": "run-late", "status": "success"}}),
        1,
    )
    .await;
    s.tick("2026-03-03T11:06:00Z").await;
    assert!(alerts(&s).await.contains(&("run-sla:finance:run-late".to_owned(), "resolved".to_owned())));
    // The fast pair stopped holding (its 5-minute window saw one success); the 3-day pair holds.
    let (good, total, _, _, burning) = slo(&s, "run-success", "finance", "").await.unwrap();
    assert_eq!((good, total), (10, 13));
    assert_eq!(burning.as_deref(), Some("23.1× over 72h and 23.1× over 6h (alert from 1×)"));

    // Rebuilt from offset 0: the same runs, SLO minutes, sums, statuses and alerts.
    let report = readmodel::rebuild(&HealthModel(s.config.clone()), true, Duration::from_secs(120)).await.unwrap();
    assert!(report.identical && report.swapped_out.is_some(), "{report:#?}");
    s.stop.cancel();
}

/// Dead letters parked by the real DLQ categoriser: its depth reaches the evaluator through the
/// audit topic, and a depth over the threshold for 30 minutes of clock time opens one alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_deeper_than_the_threshold_for_half_an_hour_opens_an_alert() {
    use ct_core::dlq::Context;

    let s = Scenario::start_with(|config| config.alerts.policy.dlq_depth_max = 2).await;
    let categoriser = ct_dlq_categoriser::Config::for_slice(&s.ctx.slice(&s.topics, &s.registry_url));
    tokio::spawn(ct_dlq_categoriser::run(categoriser, s.stop.clone()));
    for offset in 0..3 {
        let now = chrono::Utc::now();
        let context = Context {
            stage: "ct-projector".into(),
            step: "decode".into(),
            error_class: "SCHEMA".into(),
            message: "simulated".into(),
            attempt: 1,
            original_topic: s.topics.events.clone(),
            original_partition: 0,
            original_offset: offset,
            first_failure_at: now,
            last_failure_at: now,
        };
        let headers = ct_testkit::dead_letter_headers(&context);
        let record =
            rdkafka::producer::FutureRecord::to(&s.topics.dlq).key("portal").payload("garbage").headers(headers);
        s.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
    // The categoriser parks them and reports the depth on the audit topic.
    let reported = ct_testkit::eventually(Duration::from_secs(60), || async {
        let values = tokio::task::spawn_blocking({
            let (kafka_config, topic) = (s.ctx.kafka.clone(), s.topics.audit.clone());
            move || audit_values(&kafka_config, &topic)
        })
        .await
        .unwrap();
        let registry = ct_platform::registry::RegistryClient::new(&s.registry_url);
        let mut last = None;
        for value in values {
            if let Ok(ct_core::audit::AuditRecord::Depth(depth)) =
                registry.decode_with(&value, ct_core::audit::decode).await
            {
                last = Some(depth.parked);
            }
        }
        (last == Some(3)).then_some(())
    })
    .await;
    assert!(reported.is_some(), "the categoriser never reported 3 parked dead letters");

    s.tick("2026-03-03T11:00:00Z").await;
    let (parked, over_since): (i64, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT parked, over_since FROM dlq_depth").fetch_one(&s.pool).await.unwrap();
    assert_eq!((parked, over_since), (3, Some(common::at("2026-03-03T11:00:00Z"))));
    s.tick("2026-03-03T11:29:00Z").await;
    assert!(alerts(&s).await.iter().all(|(key, _)| key != "dlq-depth"), "29 minutes over is not yet 30");
    s.tick("2026-03-03T11:30:00Z").await;
    assert!(alerts(&s).await.contains(&("dlq-depth".to_owned(), "firing".to_owned())));
    let summary: String =
        sqlx::query_scalar("SELECT summary FROM alerts WHERE key = 'dlq-depth'").fetch_one(&s.pool).await.unwrap();
    assert_eq!(summary, "3 dead letters parked, over 2 since 2026-03-03 11:00 UTC (alert when over 2 for 30m)");
    s.stop.cancel();
}

/// Every value of the (one-partition) audit topic so far.
fn audit_values(kafka_config: &ct_platform::config::KafkaConfig, topic: &str) -> Vec<Vec<u8>> {
    use rdkafka::{
        Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
    };
    let consumer: BaseConsumer = ct_platform::kafka::client_config(kafka_config)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let mut next = 0;
    while next < high {
        let Some(message) = consumer.poll(Duration::from_secs(10)) else { break };
        let message = message.unwrap();
        next = message.offset() + 1;
        values.push(message.payload().unwrap_or_default().to_vec());
    }
    values
}
