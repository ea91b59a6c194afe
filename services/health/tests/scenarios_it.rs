//! The health evaluator on the real broker, registry and Postgres, driven by clock records (the
//! test writes the ticks with the real ticker, at the minutes it chooses), so hours of business
//! time pass in seconds. Statuses, reasons and history are read from the evaluator's schema, the
//! changes from `ct.health.v1`, and a rebuild must give the same bytes.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Scenario, at};
use ct_core::health::StatusSymbol;
use ct_health::HealthModel;
use ct_platform::{kafka, readmodel, registry::RegistryClient};
use ct_testkit::eventually;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::json;

/// Every record of the test's `ct.health.v1` for `system`, once the outbox is empty.
async fn published(s: &Scenario, system: &str) -> Vec<ct_core::health::Change> {
    let drained = eventually(Duration::from_secs(30), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&s.pool).await.ok()?;
        (left == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox was not published");
    let consumer: BaseConsumer = kafka::client_config(&s.ctx.kafka)
        .set("group.id", s.ctx.group("health-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = consumer.fetch_watermarks(&s.topics.health, 0, Duration::from_secs(10)).unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&s.topics.health, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let registry = RegistryClient::new(&s.registry_url);
    let mut changes = Vec::new();
    let mut read = 0;
    while read < high {
        let Some(message) = consumer.poll(Duration::from_secs(10)) else { panic!("ct.health.v1 ended early") };
        let message = message.unwrap();
        read = message.offset() + 1;
        let change = registry.decode_with(message.payload().unwrap(), ct_core::health::decode_change).await.unwrap();
        if change.system_id == system {
            changes.push(change);
        }
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekday_gap_turns_amber_after_the_grace_then_red_and_a_resumed_heartbeat_turns_it_green() {
    let s = Scenario::start().await;
    // Tuesday 3 March 2026 (London is on UTC until the end of March).
    s.heartbeat("finance", "2026-03-03T10:55:00Z").await;
    s.heartbeat("finance", "2026-03-03T11:00:00Z").await;
    s.heartbeat("backend", "2026-03-03T11:00:00Z").await;
    // A heartbeat for finance from the portal, written past the edge (which refuses it): ignored.
    s.log(
        json!({"eventId": "forged", "type": "system.heartbeat", "ts": "2026-03-03T11:20:00Z", "source": "portal",
               "payload": {"systemId": "finance"}}),
        1,
    )
    .await;
    s.tick("2026-03-03T11:00:00Z").await;
    let (status, reason, message) = s.status("finance").await;
    assert_eq!((status.as_str(), reason.as_str()), ("green", "heartbeat"));
    assert_eq!(message, "green because last heartbeat at 2026-03-03 11:00 UTC");
    assert_eq!(s.status("website").await.0, "unknown", "no data is unknown, never green");

    s.tick("2026-03-03T11:15:00Z").await;
    assert_eq!(s.status("finance").await.0, "green", "a gap of exactly period + grace is allowed");
    s.tick("2026-03-03T11:16:00Z").await;
    let (status, reason, message) = s.status("finance").await;
    assert_eq!((status.as_str(), reason.as_str()), ("amber", "heartbeat"));
    assert_eq!(
        message,
        "amber because no heartbeat for 16m of business time since 2026-03-03 11:00 UTC (amber after 15m)"
    );
    s.tick("2026-03-03T12:00:00Z").await;
    assert_eq!(s.status("finance").await.0, "amber", "red only after 1 h");
    s.tick("2026-03-03T12:01:00Z").await;
    assert_eq!(s.status("finance").await.0, "red");

    // Three high-severity errors of the backend.
    for i in 0..3 {
        s.log(
            json!({"eventId": format!("err-{i}"), "type": "backend.fn.error", "ts": "2026-03-03T12:02:00Z",
                   "source": "backend", "payload": {"fnName": "parse", "severity": "high"}}),
            2,
        )
        .await;
    }
    s.heartbeat("finance", "2026-03-03T12:05:00Z").await;
    s.tick("2026-03-03T12:05:00Z").await;
    let (status, _, message) = s.status("finance").await;
    assert_eq!(status, "green", "{message}");
    let (status, reason, message) = s.status("backend").await;
    // The backend's heartbeat gap (65 min) is red too; the worst rule wins, heartbeat first.
    assert_eq!((status.as_str(), reason.as_str()), ("red", "heartbeat"), "{message}");

    let history = s.history("finance").await;
    let seen: Vec<(DateTime<Utc>, &str, Option<&str>)> =
        history.iter().map(|(at, status, previous)| (*at, status.as_str(), previous.as_deref())).collect();
    assert_eq!(
        seen,
        [
            (at("2026-03-03T11:00:00Z"), "green", None),
            (at("2026-03-03T11:16:00Z"), "amber", Some("green")),
            (at("2026-03-03T12:01:00Z"), "red", Some("amber")),
            (at("2026-03-03T12:05:00Z"), "green", Some("red")),
        ]
    );
    let ignored: i64 =
        sqlx::query_scalar("SELECT records FROM ignored WHERE reason = 'not_owner' AND system_id = 'finance'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(ignored, 1, "the forged heartbeat is counted, not believed");
    // Red opened one alert; green again resolved it (no channel is configured: nobody is told).
    type AlertRow = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let alerts: Vec<AlertRow> = sqlx::query_as(
        "SELECT key, state, fired_at, resolved_at FROM alerts WHERE key LIKE 'system-red:%' ORDER BY key",
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        alerts,
        [
            ("system-red:backend".to_owned(), "firing".to_owned(), at("2026-03-03T12:01:00Z"), None),
            (
                "system-red:finance".to_owned(),
                "resolved".to_owned(),
                at("2026-03-03T12:01:00Z"),
                Some(at("2026-03-03T12:05:00Z"))
            ),
        ]
    );

    // Each change once on ct.health.v1, with Statuspage's word and the reason.
    let published = published(&s, "finance").await;
    let statuses: Vec<StatusSymbol> = published.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [StatusSymbol::Green, StatusSymbol::Amber, StatusSymbol::Red, StatusSymbol::Green]);
    assert_eq!(published[2].statuspage, "major_outage");
    assert_eq!(published[1].last_transition_time, at("2026-03-03T11:16:00Z"));

    // Rebuilt from offset 0 of both topics: the same statuses, reasons and history, byte for byte.
    let report = readmodel::rebuild(&HealthModel(s.config.clone()), true, Duration::from_secs(120)).await.unwrap();
    assert!(report.identical && report.swapped_out.is_some(), "{report:#?}");
    assert_eq!(s.history("finance").await, history, "the swapped-in schema holds the same history");
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_gap_at_night_or_over_a_weekend_changes_nothing() {
    let s = Scenario::start().await;
    // Tuesday 3 March 2026, 01:00: hours without a heartbeat before the office opens.
    s.heartbeat("desktop", "2026-03-03T01:00:00Z").await;
    for minute in ["2026-03-03T02:00:00Z", "2026-03-03T05:00:00Z", "2026-03-03T09:00:00Z", "2026-03-03T09:15:00Z"] {
        s.tick(minute).await;
        assert_eq!(s.status("desktop").await.0, "green", "at {minute}");
    }
    s.tick("2026-03-03T09:16:00Z").await;
    assert_eq!(s.status("desktop").await.0, "amber", "16 minutes of business time");

    // Friday 17:29, then the weekend: 1 minute of business time until Monday 09:00.
    s.heartbeat("desktop", "2026-03-06T17:29:00Z").await;
    s.tick("2026-03-06T17:29:00Z").await;
    assert_eq!(s.status("desktop").await.0, "green");
    for minute in ["2026-03-07T11:00:00Z", "2026-03-07T15:00:00Z", "2026-03-08T23:59:00Z", "2026-03-09T09:14:00Z"] {
        s.tick(minute).await;
        assert_eq!(s.status("desktop").await.0, "green", "at {minute}");
    }
    s.tick("2026-03-09T09:15:00Z").await;
    assert_eq!(s.status("desktop").await.0, "amber", "1 + 15 = 16 minutes of business time");
    // A tick for a minute already evaluated (a second ticker) changes nothing.
    s.ticker.tick(at("2026-03-07T11:00:00Z")).await.unwrap();
    s.tick("2026-03-09T09:16:00Z").await;
    let history = s.history("desktop").await;
    assert_eq!(history.len(), 4, "green, amber, green, amber: {history:?}");
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_past_the_systems_tier_leaves_the_model_and_a_rebuild_still_compares_equal() {
    let s = Scenario::start_with(|c| {
        c.retention.history_days = 1;
        c.retention.prune_interval_s = 1;
    })
    .await;
    s.heartbeat("finance", "2026-03-03T10:55:00Z").await;
    s.tick("2026-03-03T11:00:00Z").await;
    s.tick("2026-03-03T11:16:00Z").await;
    assert_eq!(s.history("finance").await.len(), 2, "green, then amber");
    // Two days of clock later (a Thursday): finance is red, and Tuesday's history is past the tier.
    s.tick("2026-03-05T11:00:00Z").await;
    let pruned = eventually(Duration::from_secs(30), || async {
        let history = s.history("finance").await;
        (history.len() == 1).then_some(history)
    })
    .await
    .expect("the history past the tier was not pruned within 30 s");
    assert_eq!(pruned[0].0, at("2026-03-05T11:00:00Z"));
    assert_eq!(pruned[0].1, "red");
    let report = readmodel::rebuild(&HealthModel(s.config.clone()), false, Duration::from_secs(120)).await.unwrap();
    assert!(
        report.identical,
        "the rebuild keeps all history but compares what the tier keeps: {:?}",
        report.differing_tables
    );
}
