//! Accepted means projected, for any text: arbitrary Unicode (control characters, U+0000,
//! astral planes, combining marks, right-to-left text) in payload strings and map keys, sent
//! through the real edge. Every 202 event becomes visible through the read API and nothing is
//! dead-lettered; everything else is a 422 that names the field.

mod common;

use std::time::Duration;

use common::stack;
use ct_testkit::eventually;
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::TestRunner,
};
use serde_json::json;

const CASES: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_visible_whatever_its_text() {
    let s = stack().await;
    let mut runner = TestRunner::deterministic();
    let text = proptest::string::string_regex("(.|\\PC|[\\x01-\\x1f\\u{7f}-\\u{9f}]){0,24}").unwrap();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for case in 0..CASES {
        let mut message = text.new_tree(&mut runner).unwrap().current();
        if case % 8 == 5 {
            // Somewhere in the text: U+0000, which Postgres cannot store.
            message.insert(message.char_indices().nth(case % 3).map_or(0, |(at, _)| at), '\0');
        }
        let key = text.new_tree(&mut runner).unwrap().current();
        let id = format!("evt_unicode_{case}");
        let event = if case % 2 == 0 {
            json!({"eventId": id, "type": "backend.fn.error", "ts": "2025-09-27T10:00:00Z", "source": "backend",
                   "payload": {"fnName": "parse", "severity": "low", "message": message}})
        } else {
            json!({"eventId": id, "type": "ct.run.started", "ts": "2025-09-27T10:00:00Z", "source": "backend",
                   "payload": {"runId": format!("run_{case}"), "trigger": "t", "initiator": "ops",
                               "inputs": {format!("k{key}"): message}}})
        };
        let body = event.to_string();
        let response = s
            .http
            .post(format!("{}/events", s.edge))
            .header("authorization", "Bearer dev-token-backend")
            .header("x-ct-signature", ct_core::signature::ct_signature("dev-webhook-secret", body.as_bytes()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap();
        match status {
            202 => accepted.push(id),
            422 => {
                let field = answer["error"]["field"].as_str().unwrap_or_default();
                assert!(field.starts_with("payload."), "{answer}");
                assert!(message.contains('\0') || key.contains('\0'), "only U+0000 is refused: {message:?} {key:?}");
                refused += 1;
            }
            other => panic!("{other} for {message:?} / {key:?}: {answer}"),
        }
    }
    assert!(accepted.len() > CASES / 2, "most texts are accepted ({} of {CASES})", accepted.len());
    for id in &accepted {
        let visible = eventually(Duration::from_secs(30), || async {
            (s.get(Some("dev-token-maintainer"), &format!("/events/{id}")).await.0 == 200).then_some(())
        })
        .await;
        assert!(visible.is_some(), "{id} was accepted but never became visible");
    }
    let (status, dead_letters, _) = s.get(Some("dev-token-maintainer"), "/dlq").await;
    assert_eq!(status, 200, "{dead_letters}");
    let items = dead_letters.get("items").unwrap_or(&dead_letters);
    assert_eq!(items.as_array().map(Vec::len), Some(0), "nothing accepted was parked: {dead_letters}");
    assert!(refused >= CASES / 8, "the texts with U+0000 were refused by name ({refused})");
}
