//! Edge → Kafka → projector → Postgres → read API, all real: the deep dive's smoke test §7.1 +
//! §7.2, roles, bad parameters, 404s, and cursor pages that stay stable under inserts.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::stack;
use ct_testkit::eventually;
use serde_json::{Value, json};

fn invoice(id: &str, ts: &str) -> Value {
    json!({"eventId": id, "type": "finance.invoice.generated", "ts": ts, "source": "finance",
           "payload": {"invoiceId": "INV-2025-0912", "period": "2025-09", "total": 1234.56}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_test_roles_parameters_and_pages() {
    let s = stack().await;

    // §7.1: post the same event twice; §7.2: it is listed exactly once.
    let seed = invoice("evt_demo_001", "2025-09-27T10:00:00Z");
    assert_eq!(s.post("dev-token-finance", &seed).await, 202);
    assert_eq!(s.post("dev-token-finance", &seed).await, 202);
    let listed = s.wait_events("source=finance&type=finance.invoice.generated&from=2025-09-27T00:00:00Z", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, again, _) = s
        .get(
            Some("dev-token-maintainer"),
            "/events?source=finance&type=finance.invoice.generated&from=2025-09-27T00:00:00Z",
        )
        .await;
    assert_eq!(again.as_array().unwrap().len(), 1, "{again}");
    assert_eq!(listed[0]["eventId"], "evt_demo_001");
    assert_eq!(listed[0]["payload"]["total_minor"], 123_456);

    // Roles: events need maintainer+, status endpoints any role, no token is 401.
    assert_eq!(s.get(Some("dev-token-viewer"), "/events").await.0, 403);
    assert_eq!(s.get(Some("dev-token-operator"), "/events").await.0, 403);
    assert_eq!(s.get(Some("dev-token-owner"), "/events").await.0, 200);
    assert_eq!(s.get(None, "/events").await.0, 401);
    for path in ["/systems", "/health", "/runs"] {
        assert_eq!(s.get(Some("dev-token-viewer"), path).await.0, 200, "{path}");
    }

    // Bad parameters name the parameter; unknown ids are 404.
    for (query, field) in [
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("source=mars", "source"),
        ("type=nope", "type"),
        ("cursor=garbage", "cursor"),
        ("correlation_id=a%00b", "correlation_id"),
        ("colour=blue", "colour"),
        ("from=2025-09-28T00:00:00Z&to=2025-09-27T00:00:00Z", "to"),
    ] {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), &format!("/events?{query}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    assert_eq!(s.get(Some("dev-token-maintainer"), "/events/evt_nope").await.0, 404);
    let (status, body, _) = s.get(Some("dev-token-maintainer"), "/events/evt%FFnope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert_eq!(s.get(Some("dev-token-maintainer"), "/events/evt%00nope").await.0, 404);
    assert_eq!(s.get(Some("dev-token-maintainer"), "/dlq?source=a%00b").await.0, 400);
    assert_eq!(s.get(Some("dev-token-viewer"), "/runs/run_nope").await.0, 404);
    let (status, one, _) = s.get(Some("dev-token-maintainer"), "/events/evt_demo_001").await;
    assert_eq!((status, one["eventId"].as_str()), (200, Some("evt_demo_001")));

    // Pages of 10 over 25 events, newest first, with inserts between pages.
    for i in 0..25 {
        let body = invoice(&format!("evt_page_{i:02}"), &format!("2025-09-28T10:00:{i:02}Z"));
        assert_eq!(s.post("dev-token-finance", &body).await, 202);
    }
    s.wait_events("from=2025-09-28T00:00:00Z", 25).await;
    let mut seen = Vec::new();
    let mut path = "/events?from=2025-09-28T00:00:00Z&limit=10".to_owned();
    for page in 0.. {
        let (status, body, headers) = s.get(Some("dev-token-maintainer"), &path).await;
        assert_eq!(status, 200);
        seen.extend(body.as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap().to_owned()));
        if page == 0 {
            // A newer event arrives while the client pages: it must not shift later pages.
            assert_eq!(s.post("dev-token-finance", &invoice("evt_page_late", "2025-09-28T11:00:00Z")).await, 202);
            s.wait_events("from=2025-09-28T10:59:00Z", 1).await;
        }
        match headers.get("x-next-cursor") {
            Some(cursor) => {
                path = format!("/events?from=2025-09-28T00:00:00Z&limit=10&cursor={}", cursor.to_str().unwrap())
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("evt_page_{i:02}")).collect();
    assert_eq!(seen, expected, "pages are disjoint, complete and newest first");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);

    // Runs and their correlated events.
    let started = json!({"eventId": "evt_run_1", "type": "ct.run.started", "ts": "2025-09-27T11:00:00Z", "source": "desktop",
        "correlationId": "run_42", "payload": {"runId": "run_42", "trigger": "desktop.trigger.contract", "initiator": "staff-1"}});
    let completed = json!({"eventId": "evt_run_2", "type": "ct.run.completed", "ts": "2025-09-27T11:00:05Z", "source": "desktop",
        "correlationId": "run_42", "payload": {"runId": "run_42", "status": "success", "durationMs": 5000, "metrics": {"documentsGenerated": 3}}});
    assert_eq!(s.post("dev-token-desktop", &started).await, 202);
    assert_eq!(s.post("dev-token-desktop", &completed).await, 202);
    let run = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), "/runs/run_42").await;
        (status == 200 && body["status"] == "success").then_some(body)
    })
    .await
    .expect("run projected");
    assert_eq!(run["metrics"]["documentsGenerated"], 3);
    assert_eq!(run["events"].as_array().map(Vec::len), Some(2));
    let (_, viewer_run, _) = s.get(Some("dev-token-viewer"), "/runs/run_42").await;
    assert!(viewer_run.get("events").is_none(), "viewers do not see events");
    // Exactly the catalogued systems, in catalogue order, seen or not.
    let (_, systems, _) = s.get(Some("dev-token-viewer"), "/systems").await;
    let ids: Vec<&str> = systems.as_array().unwrap().iter().map(|s| s["systemId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["portal", "backend", "finance", "desktop", "github", "website"], "{systems}");
}

/// Statuses come from the health evaluator, driven by the log's clock: a heartbeat through the
/// edge, then a tick, and `/health`, `/systems` and the history say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_the_evaluators_statuses_with_reasons_and_history() {
    let s = stack().await;
    let (_, before, _) = s.get(Some("dev-token-viewer"), "/health").await;
    assert_eq!(before["status"], "unknown", "{before}");
    assert_eq!(before["systems"][2]["reason"], serde_json::Value::Null, "{before}");
    let heartbeat = json!({"eventId": "evt_hb_fin", "type": "system.heartbeat", "ts": "2026-03-03T11:00:00Z",
        "source": "finance", "payload": {"systemId": "finance"}});
    assert_eq!(s.post("dev-token-finance", &heartbeat).await, 202);
    s.tick("2026-03-03T11:05:00Z").await;
    let health = eventually(Duration::from_secs(30), || async {
        let (_, health, _) = s.get(Some("dev-token-viewer"), "/health").await;
        (health["status"] == "green").then_some(health)
    })
    .await
    .expect("the tick is evaluated");
    let finance = &health["systems"][2];
    assert_eq!(finance["systemId"], "finance");
    assert_eq!(finance["message"], "green because last heartbeat at 2026-03-03 11:00 UTC");
    assert_eq!(finance["lastTransitionTime"], "2026-03-03T11:05:00Z");
    assert_eq!(health["systems"][0]["status"], "unknown", "the portal sent nothing: {health}");
    assert_eq!(health["evaluatedAt"], "2026-03-03T11:05:00Z");

    s.tick("2026-03-03T11:16:00Z").await;
    let history = eventually(Duration::from_secs(30), || async {
        let (_, history, _) = s.get(Some("dev-token-viewer"), "/systems/finance/history?limit=1").await;
        (history[0]["status"] == "amber").then_some(history)
    })
    .await
    .expect("the gap turns finance amber");
    assert_eq!(history[0]["previous"], "green");
    assert_eq!(history[0]["reason"], "heartbeat");
    // `/systems` joins the projector's row (last heartbeat) to the evaluator's status: two
    // consumers of the log, each at its own pace.
    let systems = eventually(Duration::from_secs(30), || async {
        let (_, systems, _) = s.get(Some("dev-token-viewer"), "/systems").await;
        (systems[2]["lastHeartbeat"] == "2026-03-03T11:00:00Z").then_some(systems)
    })
    .await
    .expect("the projector records finance's heartbeat");
    assert_eq!(systems[2]["status"], "amber");
    assert_eq!(systems[2]["statuspage"], "degraded_performance");
    assert_eq!(systems[2]["lastHeartbeat"], "2026-03-03T11:00:00Z");
    let (_, page, headers) = s.get(Some("dev-token-viewer"), "/systems/finance/history?limit=1").await;
    let cursor = headers["x-next-cursor"].to_str().unwrap();
    let (_, older, _) =
        s.get(Some("dev-token-viewer"), &format!("/systems/finance/history?limit=1&cursor={cursor}")).await;
    assert_eq!((page[0]["status"].as_str(), older[0]["status"].as_str()), (Some("amber"), Some("green")));
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/systems/made-up/history").await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("systemId")));

    // SLOs: the heartbeat's time slices so far (11:05 green, 11:16 amber), too few to judge.
    let (status, slos, _) = s.get(Some("dev-token-viewer"), "/slos?system=finance&slo=heartbeat").await;
    assert_eq!(status, 200, "{slos}");
    assert_eq!(slos.as_array().map(Vec::len), Some(1), "{slos}");
    assert_eq!((slos[0]["good"].as_i64(), slos[0]["total"].as_i64()), (Some(1), Some(2)), "{slos}");
    assert_eq!((slos[0]["budgeting"].as_str(), slos[0]["judged"].as_bool()), (Some("time_slices"), Some(false)));
    assert_eq!(slos[0]["objective"], 0.995);
    let names: Vec<&str> = systems[2]["slos"].as_array().unwrap().iter().map(|s| s["slo"].as_str().unwrap()).collect();
    assert_eq!(names, ["heartbeat", "intake-latency", "run-success"], "per-job SLOs appear with their first job");
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/slos?system=made-up").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("system")));
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/slos?slo=no%20such").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("slo")));

    // Three high-severity errors of the backend within ten minutes: one alert, listed.
    for i in 0..3 {
        let error = json!({"eventId": format!("evt_err_{i}"), "type": "backend.fn.error", "ts": "2026-03-03T11:17:00Z",
            "source": "backend", "payload": {"fnName": "parse", "severity": "high"}});
        assert_eq!(s.post("dev-token-backend", &error).await, 202);
    }
    s.tick("2026-03-03T11:18:00Z").await;
    let alerts = eventually(Duration::from_secs(30), || async {
        let (_, alerts, _) = s.get(Some("dev-token-viewer"), "/alerts?state=firing&system=backend").await;
        (alerts.as_array().is_some_and(|a| !a.is_empty())).then_some(alerts)
    })
    .await
    .expect("the error burst opens an alert");
    assert_eq!(alerts[0]["key"], "fn-errors:backend", "{alerts}");
    assert_eq!(alerts[0]["firedAt"], "2026-03-03T11:18:00Z");
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/alerts?state=sleeping").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("state")));

    // Acknowledging: operators and above, with a reason; applied at the next tick.
    let id = alerts[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/alerts/{id}/ack");
    let (status, _) = s.post_api("dev-token-viewer", &path, &json!({"reason": "mine"})).await;
    assert_eq!(status, 403, "viewers only read");
    let (status, body) = s.post_api("dev-token-operator", &path, &json!({})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("reason")), "{body}");
    let (status, body) = s.post_api("dev-token-operator", "/alerts/nope/ack", &json!({"reason": "x"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("alertId")), "{body}");
    let (status, body) = s.post_api("dev-token-operator", &path, &json!({"reason": "looking at the parser"})).await;
    assert_eq!((status, body["alertId"].as_str()), (202, Some(id.as_str())), "{body}");
    s.tick("2026-03-03T11:19:00Z").await;
    let acknowledged = eventually(Duration::from_secs(30), || async {
        let (_, alerts, _) = s.get(Some("dev-token-viewer"), "/alerts?state=acknowledged").await;
        (alerts.as_array().is_some_and(|a| a.len() == 1)).then_some(alerts)
    })
    .await
    .expect("the acknowledgement is applied at the next tick");
    assert_eq!(acknowledged[0]["acknowledgedAt"], "2026-03-03T11:19:00Z");
    let (status, body) = s.post_api("dev-token-operator", &path, &json!({"reason": "again"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("alert_not_firing")), "{body}");

    // Silences: operators and above, a matcher, an end in the future, a reason.
    let ends = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) =
        s.post_api("dev-token-operator", "/silences", &json!({"endsAt": ends, "reason": "deploy"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("rule")), "{body}");
    let (status, body) = s
        .post_api(
            "dev-token-operator",
            "/silences",
            &json!({"system": "backend", "endsAt": "soon", "reason": "deploy"}),
        )
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("endsAt")), "{body}");
    let (status, body) = s
        .post_api("dev-token-operator", "/silences", &json!({"system": "nope", "endsAt": ends, "reason": "deploy"}))
        .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("system")), "{body}");
    let (status, _) =
        s.post_api("dev-token-viewer", "/silences", &json!({"system": "backend", "endsAt": ends, "reason": "x"})).await;
    assert_eq!(status, 403);
    let (status, body) = s
        .post_api(
            "dev-token-operator",
            "/silences",
            &json!({"rule": "fn_errors", "system": "backend", "endsAt": ends, "reason": "deploy"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["silenceId"].as_str().is_some_and(|id| id.starts_with("silence_")), "{body}");

    // Listed once applied (it starts at the API's now, after the test clock: pending), then
    // expired early by an operator with a reason.
    let silence_id = body["silenceId"].as_str().unwrap().to_owned();
    s.tick("2026-03-03T11:20:00Z").await;
    let listed = eventually(Duration::from_secs(30), || async {
        let (_, listed, _) = s.get(Some("dev-token-viewer"), "/silences?state=pending").await;
        (listed.as_array().is_some_and(|a| a.len() == 1)).then_some(listed)
    })
    .await
    .expect("the silence is applied at the next tick");
    assert_eq!((listed[0]["id"].as_str(), listed[0]["rule"].as_str()), (Some(silence_id.as_str()), Some("fn_errors")));
    assert_eq!(listed[0]["reason"], "deploy", "reasons are kept as written");
    let (status, body, _) = s.get(Some("dev-token-viewer"), "/silences?state=sleeping").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("state")));
    let expire = format!("/silences/{silence_id}/expire");
    let (status, _) = s.post_api("dev-token-viewer", &expire, &json!({"reason": "done"})).await;
    assert_eq!(status, 403);
    let (status, body) = s.post_api("dev-token-operator", &expire, &json!({})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("reason")), "{body}");
    let (status, body) = s.post_api("dev-token-operator", "/silences/nope/expire", &json!({"reason": "x"})).await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("silenceId")), "{body}");
    let (status, body) = s.post_api("dev-token-operator", &expire, &json!({"reason": "deploy done"})).await;
    assert_eq!(status, 202, "{body}");
    s.tick("2026-03-03T11:21:00Z").await;
    let expired = eventually(Duration::from_secs(30), || async {
        let (_, listed, _) = s.get(Some("dev-token-viewer"), "/silences?state=expired").await;
        (listed.as_array().is_some_and(|a| a.len() == 1)).then_some(listed)
    })
    .await
    .expect("the expiry is applied at the next tick");
    assert_eq!(expired[0]["endsAt"], "2026-03-03T11:21:00Z");
    let (status, body) = s.post_api("dev-token-operator", &expire, &json!({"reason": "again"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("silence_expired")), "{body}");
}

/// `/runs` pages on a key that never changes: a run first known by its completion keeps its place
/// when its start arrives between two pages (it neither repeats nor vanishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pages_hold_when_a_run_learns_its_start_between_pages() {
    let s = stack().await;
    let completed = |run: &str, ts: &str| {
        json!({"eventId": format!("evt_done_{run}"), "type": "ct.run.completed", "ts": ts, "source": "desktop",
            "payload": {"runId": run, "status": "success", "durationMs": 1000}})
    };
    for (run, ts) in
        [("run_a", "2025-09-29T12:00:03Z"), ("run_b", "2025-09-29T12:00:02Z"), ("run_c", "2025-09-29T12:00:01Z")]
    {
        assert_eq!(s.post("dev-token-desktop", &completed(run, ts)).await, 202);
    }
    eventually(Duration::from_secs(30), || async {
        let (_, runs, _) = s.get(Some("dev-token-viewer"), "/runs").await;
        (runs.as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await
    .expect("three runs projected");

    let mut seen = Vec::new();
    let mut path = "/runs?limit=1".to_owned();
    for page in 0.. {
        let (status, body, headers) = s.get(Some("dev-token-viewer"), &path).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body.as_array().unwrap().iter().map(|r| r["runId"].as_str().unwrap().to_owned()));
        if page == 0 {
            // run_c's start arrives late, with a timestamp newer than every other run's.
            let started = json!({"eventId": "evt_start_c", "type": "ct.run.started", "ts": "2025-09-29T12:00:30Z",
                "source": "desktop", "payload": {"runId": "run_c", "trigger": "desktop.trigger.contract", "initiator": "staff-1"}});
            assert_eq!(s.post("dev-token-desktop", &started).await, 202);
            eventually(Duration::from_secs(30), || async {
                let (_, run, _) = s.get(Some("dev-token-viewer"), "/runs/run_c").await;
                run["startedAt"].is_string().then_some(())
            })
            .await
            .expect("run_c's start projected");
        }
        match headers.get("x-next-cursor") {
            Some(cursor) => path = format!("/runs?limit=1&cursor={}", cursor.to_str().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["run_a", "run_b", "run_c"], "every run exactly once, in listing order");
}

/// `GET /events/{id}/lineage`: a run's events through the edge, then a dead-letter hop of one of
/// them (as the projector would park it, the original record's bytes with its context), and the
/// lineage names the rows, the hop (found by the eventId the categoriser decoded), the run and
/// the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_follows_an_event_to_its_rows_dead_letters_and_runs() {
    use rdkafka::{
        Message, Offset, TopicPartitionList,
        consumer::{BaseConsumer, Consumer},
        producer::{FutureProducer, FutureRecord},
    };
    let s = stack().await;
    let started = json!({"eventId": "evt_lin_1", "type": "ct.run.started", "ts": "2026-03-03T10:00:00Z", "source": "desktop",
        "correlationId": "run_lin", "payload": {"runId": "run_lin", "trigger": "contract.regenerate", "initiator": "staff-1"}});
    assert_eq!(s.post("dev-token-desktop", &started).await, 202);
    let event = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), "/events/evt_lin_1").await;
        (status == 200).then_some(body)
    })
    .await
    .expect("projected");
    let (topic, partition, offset) = (
        event["log"]["topic"].as_str().unwrap().to_owned(),
        event["log"]["partition"].as_i64().unwrap() as i32,
        event["log"]["offset"].as_i64().unwrap(),
    );
    // The record's bytes, parked as the projector parks a record it cannot apply.
    let kafka = s.ctx.kafka.clone();
    let (topic2, value) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ct_platform::kafka::client_config(&kafka)
            .set("group.id", "lineage-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, partition, Offset::Offset(offset)).unwrap();
        consumer.assign(&assignment).unwrap();
        let message = consumer.poll(Duration::from_secs(10)).expect("the record").unwrap();
        (topic.clone(), message.payload().unwrap().to_vec())
    })
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let context = ct_core::dlq::Context {
        stage: "ct-projector".into(),
        step: "apply".into(),
        error_class: "SCHEMA".into(),
        message: "simulated".into(),
        attempt: 1,
        // Another position than the projected row's (as for an event projected from a replay):
        // only the eventId the categoriser decodes from the bytes links the two.
        original_topic: topic2.clone(),
        original_partition: partition,
        original_offset: offset + 1000,
        first_failure_at: now,
        last_failure_at: now,
    };
    let headers = ct_testkit::dead_letter_headers(&context);
    let producer: FutureProducer =
        ct_platform::kafka::idempotent_producer(&s.ctx.kafka, Duration::from_secs(10)).unwrap();
    producer
        .send(FutureRecord::to(&s.topics.dlq).key("desktop").payload(&value).headers(headers), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    let lineage = eventually(Duration::from_secs(30), || async {
        let (status, body, _) = s.get(Some("dev-token-maintainer"), "/events/evt_lin_1/lineage").await;
        (status == 200 && body["deadLetters"].as_array().is_some_and(|d| !d.is_empty())).then_some(body)
    })
    .await
    .expect("the hop is listed");
    assert_eq!(lineage["ingest"]["verdict"], "accepted");
    assert_eq!(lineage["log"]["offset"], offset);
    let tables: Vec<&str> =
        lineage["readModels"].as_array().unwrap().iter().map(|r| r["table"].as_str().unwrap()).collect();
    assert_eq!(tables, ["events", "type_counts", "systems", "runs"]);
    let hop = &lineage["deadLetters"][0];
    assert_eq!(hop["id"], format!("ct-projector:{topic2}:{partition}:{}", offset + 1000));
    assert_eq!((hop["category"].as_str(), hop["state"].as_str()), (Some("SCHEMA"), Some("parked")));
    assert_eq!(lineage["correlatedRuns"][0]["runId"], "run_lin");
    assert_eq!(lineage["correlatedRuns"][0]["status"], "running");
    assert_eq!(lineage["traceId"], event["ingest"]["traceId"]);
    assert_eq!(s.get(Some("dev-token-operator"), "/events/evt_lin_1/lineage").await.0, 403);
    let (status, body, _) = s.get(Some("dev-token-maintainer"), "/events/nope/lineage").await;
    assert_eq!((status, body["error"]["field"].as_str()), (404, Some("eventId")));
}
