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
