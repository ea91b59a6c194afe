//! `/metrics/kpi` and `/reports/weekly` over the real pipeline: KPI events through the edge into
//! ct-digest's model, status history from the health evaluator's ticks, served to every role.

mod common;

use std::time::Duration;

use ct_testkit::eventually;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpis_pair_their_events_and_bucket_them_by_local_day_and_week() {
    let s = common::stack().await;
    let stop = tokio_util::sync::CancellationToken::new();
    s.spawn_digest(&stop).await;
    let viewer = Some("dev-token-viewer");

    for (query, field) in [("?asOf=yesterday", "asOf"), ("?bucket=month", "bucket"), ("?from=2026-11-01", "from")] {
        let (status, body, _) = s.get(viewer, &format!("/metrics/kpi{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    assert_eq!(s.get(None, "/metrics/kpi").await.0, 401);

    let events = [
        // Contract K1: triggered, documents 30 min later, a second set later (not a second lead time).
        (
            "k1",
            "desktop",
            "desktop.trigger.contract",
            "2026-11-20T09:00:00Z",
            None,
            json!({"contractorId": "C1", "contractId": "K1"}),
        ),
        (
            "k1d",
            "backend",
            "contract.docs.generated",
            "2026-11-20T09:30:00Z",
            None,
            json!({"contractorId": "C1", "contractId": "K1", "documentCount": 3}),
        ),
        (
            "k1e",
            "backend",
            "contract.docs.generated",
            "2026-11-20T10:00:00Z",
            None,
            json!({"contractorId": "C1", "contractId": "K1"}),
        ),
        // Contract K2: two hours, inside the last 7 days.
        (
            "k2",
            "desktop",
            "desktop.trigger.contract",
            "2026-11-25T09:00:00Z",
            None,
            json!({"contractorId": "C2", "contractId": "K2"}),
        ),
        (
            "k2d",
            "backend",
            "contract.docs.generated",
            "2026-11-25T11:00:00Z",
            None,
            json!({"contractorId": "C2", "contractId": "K2"}),
        ),
        // A timesheet and its invoice three days later, by correlation id; an invoice without one.
        (
            "t1",
            "backend",
            "excel.timesheet.ingested",
            "2026-11-02T10:00:00Z",
            Some("flow-1"),
            json!({"contractorId": "C1", "period": "2026-W44", "items": []}),
        ),
        (
            "i1",
            "finance",
            "finance.invoice.generated",
            "2026-11-05T10:00:00Z",
            Some("flow-1"),
            json!({"invoiceId": "INV-1", "period": "2026-11", "total": 10}),
        ),
        (
            "i2",
            "finance",
            "finance.invoice.generated",
            "2026-11-05T11:00:00Z",
            None,
            json!({"invoiceId": "INV-2", "period": "2026-11", "total": 10}),
        ),
        // Runs: desktop one failed of two, backend one success.
        (
            "r1",
            "desktop",
            "ct.run.completed",
            "2026-11-26T08:00:00Z",
            None,
            json!({"runId": "r1", "status": "success"}),
        ),
        ("r2", "desktop", "ct.run.completed", "2026-11-27T08:00:00Z", None, json!({"runId": "r2", "status": "failed"})),
        (
            "r3",
            "backend",
            "ct.run.completed",
            "2026-11-10T08:00:00Z",
            None,
            json!({"runId": "r3", "status": "success"}),
        ),
    ];
    for (id, source, event_type, ts, correlation, payload) in events {
        let mut event =
            json!({"eventId": format!("kpi_{id}"), "type": event_type, "ts": ts, "source": source, "payload": payload});
        if let Some(correlation) = correlation {
            event["correlationId"] = json!(correlation);
        }
        assert_eq!(s.post(&format!("dev-token-{source}"), &event).await, 202, "{event}");
    }

    let as_of = "2026-11-30T12:00:00Z";
    let report = eventually(Duration::from_secs(60), || async {
        let (status, body, _) = s.get(viewer, &format!("/metrics/kpi?asOf={as_of}")).await;
        (status == 200 && body["windows"][1]["jobFailureRate"]["runs"] == 3).then_some(body)
    })
    .await
    .expect("the KPI events are counted");
    let (week, month) = (&report["windows"][0], &report["windows"][1]);
    assert_eq!((week["days"].as_i64(), month["days"].as_i64()), (Some(7), Some(30)));
    assert_eq!(month["contractLeadTime"], json!({"count": 2, "p50Seconds": 1800.0, "p95Seconds": 7200.0}));
    assert_eq!(week["contractLeadTime"], json!({"count": 1, "p50Seconds": 7200.0, "p95Seconds": 7200.0}));
    assert_eq!(month["invoiceCycleTime"], json!({"count": 1, "p50Seconds": 259200.0, "p95Seconds": 259200.0}));
    assert_eq!(week["invoiceCycleTime"], json!({"count": 0, "p50Seconds": null, "p95Seconds": null}));
    assert_eq!(month["jobFailureRate"], json!({"runs": 3, "failed": 1, "rate": 1.0 / 3.0}));
    assert_eq!(week["jobFailureRateBySubsystem"], json!({"desktop": {"runs": 2, "failed": 1, "rate": 0.5}}));
    assert_eq!(report["timesheetCompliance4Weeks"], json!({"weeks": 0, "complete": 0, "rate": null}));
    let days = report["buckets"].as_array().unwrap();
    assert_eq!((days.len(), days[29]["start"].as_str()), (30, Some("2026-11-30")));
    let day = |start: &str| days.iter().find(|b| b["start"] == start).unwrap_or_else(|| panic!("no bucket {start}"));
    assert_eq!(day("2026-11-20")["contractLeadTime"]["count"], 1);
    assert_eq!(day("2026-11-27")["jobFailureRate"], json!({"runs": 1, "failed": 1, "rate": 1.0}));

    let (status, weekly, _) = s.get(viewer, &format!("/metrics/kpi?asOf={as_of}&bucket=week")).await;
    assert_eq!(status, 200, "{weekly}");
    let weeks = weekly["buckets"].as_array().unwrap();
    assert_eq!((weeks.len(), weeks[11]["start"].as_str()), (12, Some("2026-11-30")));
    assert_eq!(weeks[10]["start"], "2026-11-23");
    assert_eq!(weeks[10]["contractLeadTime"]["count"], 1);
    assert_eq!(weeks[10]["jobFailureRate"]["runs"], 2);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_trend_splits_each_systems_time_by_status() {
    let s = common::stack().await;
    let viewer = Some("dev-token-viewer");
    for (query, field) in [
        ("?week=2026-W99", "week"),
        ("?month=2026-13", "month"),
        ("?week=2026-W47&month=2026-11", "month"),
        ("?week=2099-W01", "week"),
        ("?year=2026", "year"),
    ] {
        let (status, body, _) = s.get(viewer, &format!("/reports/weekly{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    // A heartbeat of each system, then the evaluator's first tick, Tuesday of week 48 at noon:
    // before it every system is unknown, from it on each has the status the tick gave it.
    for system in ["portal", "backend", "finance", "desktop", "github", "website"] {
        let heartbeat = json!({"eventId": format!("hb_{system}"), "type": "system.heartbeat",
                               "ts": "2026-11-24T11:59:00Z", "source": system, "payload": {"systemId": system}});
        assert_eq!(s.post(&format!("dev-token-{system}"), &heartbeat).await, 202);
    }
    s.tick("2026-11-24T12:00:00Z").await;
    let report = eventually(Duration::from_secs(60), || async {
        let (status, body, _) = s.get(viewer, "/reports/weekly?week=2026-W48").await;
        let evaluated = body["systems"].as_array().is_some_and(|systems| {
            systems.iter().all(|system| system["seconds"].as_object().is_some_and(|s| s.len() > 1))
        });
        (status == 200 && evaluated).then_some(body)
    })
    .await
    .expect("every system has a status from the tick on");
    assert_eq!(report["period"], "2026-W48");
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("2026-11-23T00:00:00Z"), Some("2026-11-30T00:00:00Z"))
    );
    for system in report["systems"].as_array().unwrap() {
        let seconds = system["seconds"].as_object().unwrap();
        assert_eq!(seconds["unknown"], 36 * 3600, "{system}");
        assert_eq!(seconds.values().map(|s| s.as_i64().unwrap()).sum::<i64>(), 7 * 86_400, "{system}");
        let shares: f64 = system["shares"].as_object().unwrap().values().map(|s| s.as_f64().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{system}");
    }
    let (status, month, _) = s.get(viewer, "/reports/weekly?month=2026-11").await;
    assert_eq!((status, month["period"].as_str()), (200, Some("2026-11")), "{month}");
    let october = s.get(viewer, "/reports/weekly?month=2026-10").await.1;
    let portal = october["systems"].as_array().unwrap().iter().find(|system| system["systemId"] == "portal").unwrap();
    assert_eq!(portal["seconds"], json!({"unknown": 31 * 86_400 + 3600}), "October 2026 has 745 hours in London");
}
