//! Pull polling: a producer's endpoint serves pages with a cursor; valid events reach the topic
//! through the same path as pushes, invalid ones are refused, and the cursor advances.

mod common;

use std::{collections::BTreeSet, time::Duration};

use axum::{Json, Router, extract::Query, routing::get};
use common::TestEdge;
use ct_edge::config::PollerConfig;
use redis::AsyncCommands;
use serde_json::{Value, json};

fn heartbeat(id: &str) -> Value {
    json!({"eventId": id, "type": "system.heartbeat", "ts": "2025-09-27T10:00:00Z", "source": "finance",
           "payload": {"systemId": "finance", "version": "1.0.0"}})
}

async fn page(Query(query): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    Json(match query.get("cursor").map(String::as_str) {
        None => json!({"events": [
            heartbeat("evt_poll_1"),
            {"eventId": "evt_poll_bad", "type": "nope.nope", "ts": "2025-09-27T10:00:00Z", "source": "finance", "payload": {}},
            {"eventId": "evt_poll_other", "type": "system.heartbeat", "ts": "2025-09-27T10:00:00Z", "source": "portal",
             "payload": {"systemId": "portal"}},
        ], "next_cursor": "c1"}),
        Some("c1") => json!({"events": [heartbeat("evt_poll_2")], "next_cursor": "c2"}),
        Some(_) => json!({"events": [], "next_cursor": "c2"}),
    })
}

#[tokio::test]
async fn polled_events_take_the_push_path_and_the_cursor_advances() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let producer_url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, Router::new().route("/events", get(page))).await });

    let edge = TestEdge::start_with(|c| {
        c.pollers = vec![PollerConfig {
            name: "ledger".into(),
            url: producer_url.clone(),
            source: "finance".into(),
            interval_ms: 200,
            bearer_token: None,
            timeout_ms: 5_000,
            max_page_bytes: 1024 * 1024,
        }];
    })
    .await;

    let ids = ct_testkit::eventually(Duration::from_secs(20), || async {
        let mut ids = BTreeSet::new();
        for record in edge.records() {
            ids.insert(edge.registry().decode_event(&record.value).await.expect("decodes").event_id().to_owned());
        }
        (ids.len() >= 2).then_some(ids)
    })
    .await
    .expect("polled events on the topic");
    assert_eq!(ids, BTreeSet::from(["evt_poll_1".to_owned(), "evt_poll_2".to_owned()]));

    let mut redis = ct_platform::redis::connect(&edge.config.redis).await.unwrap();
    let cursor: Option<String> =
        redis.get(format!("{}:poller:ledger:cursor", edge.config.redis.key_prefix)).await.unwrap();
    assert_eq!(cursor.as_deref(), Some("c2"));
    // Later polls of the same page change nothing.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(edge.records().len(), 2);
}

/// The `ct_edge_poll_errors_total` of `poller` on the edge's `/metrics`.
async fn poll_errors(edge: &TestEdge, poller: &str) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", edge.url)).await.unwrap().text().await.unwrap();
    let prefix = format!("ct_edge_poll_errors_total{{poller=\"{poller}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_hung_or_oversized_producer_page_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let huge = json!({"events": (0..2_000).map(|i| heartbeat(&format!("evt_huge_{i}"))).collect::<Vec<_>>()});
    let app = Router::new()
        .route("/hang", get(|| async { std::future::pending::<Json<Value>>().await }))
        .route("/huge", get(move || async move { Json(huge) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let poller = |name: &str, path: &str| PollerConfig {
        name: name.into(),
        url: format!("{base}{path}"),
        source: "finance".into(),
        interval_ms: 100,
        bearer_token: None,
        timeout_ms: 300,
        max_page_bytes: 64 * 1024,
    };
    let edge = TestEdge::start_with(|c| c.pollers = vec![poller("hang", "/hang"), poller("huge", "/huge")]).await;

    // Each fetch gives up at its timeout, so the hung producer fails again and again.
    let failing = ct_testkit::eventually(Duration::from_secs(10), || async {
        (poll_errors(&edge, "hang").await >= 3 && poll_errors(&edge, "huge").await >= 3).then_some(())
    })
    .await;
    assert!(failing.is_some(), "both pollers keep failing, bounded in time and size");
    assert!(edge.records().is_empty(), "nothing of an oversized page is taken");
}
