//! `POST /events/batch` on the real broker, registry and Redis: a batch is accepted as a whole,
//! each event once, answered in order; every refusal names the event by its index and writes
//! nothing; retrying a batch is safe.

mod common;

use common::{TestEdge, event};
use ct_core::signature::ct_signature;
use serde_json::{Value, json};

const BATCH: &str = "/events/batch";

fn code(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["code"].as_str().unwrap_or("<none>"), body["error"]["field"].as_str())
}

fn batch(ids: &[&str]) -> String {
    Value::Array(ids.iter().map(|id| event(id)).collect()).to_string()
}

fn ids_on_topic(edge: &TestEdge) -> Vec<String> {
    edge.records()
        .iter()
        .map(|r| {
            let (_, datum) = ct_core::avro::wire::split(&r.value).unwrap();
            ct_core::avro::decode_event(ct_core::avro::event_schema(), datum).unwrap().event_id().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_batch_is_accepted_in_order_once_and_a_retry_answers_duplicates() {
    let edge = TestEdge::start().await;
    let body = batch(&["evt_b1", "evt_b2", "evt_b3"]);
    let (status, first, _) = edge.send_to(BATCH, "dev-token-finance", &body).await;
    assert_eq!(status, 202, "{first}");
    let answered: Vec<&str> =
        first["events"].as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap()).collect();
    assert_eq!(answered, ["evt_b1", "evt_b2", "evt_b3"]);
    assert!(
        first["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["duplicate"] == false && e["topic"] == edge.topic.as_str())
    );

    let (status, again, _) = edge.send_to(BATCH, "dev-token-finance", &body).await;
    assert_eq!(status, 202);
    for (a, b) in first["events"].as_array().unwrap().iter().zip(again["events"].as_array().unwrap()) {
        assert_eq!((a["partition"].clone(), a["offset"].clone()), (b["partition"].clone(), b["offset"].clone()));
        assert_eq!(b["duplicate"], true);
    }
    // A single POST of an event with the same bytes is the same event.
    let (status, single, _) = edge.send("dev-token-finance", &event("evt_b2").to_string()).await;
    assert_eq!(
        (status, single["duplicate"].clone(), single["offset"].clone()),
        (202, json!(true), first["events"][1]["offset"].clone())
    );

    let mut ids = ids_on_topic(&edge);
    ids.sort();
    assert_eq!(ids, ["evt_b1", "evt_b2", "evt_b3"], "each event is on the topic exactly once");
}

#[tokio::test]
async fn every_batch_refusal_names_the_event_and_writes_nothing() {
    let edge = TestEdge::start_with(|c| {
        c.events.max_batch_events = 4;
        c.http.max_body_bytes = 2048;
        c.rate_limit.burst = 3;
        // Refills faster than requests arrive; only the burst's size matters here.
        c.rate_limit.per_minute = 60_000_000;
    })
    .await;
    let send = |body: String| {
        let edge = &edge;
        async move { edge.send_to(BATCH, "dev-token-finance", &body).await }
    };

    let (status, body, _) = send(r#"[{"eventId": "#.to_owned()).await;
    assert_eq!((status, code(&body).0), (400, "invalid_json"));
    let (status, body, _) = send(event("evt_x").to_string()).await;
    assert_eq!((status, code(&body).0), (422, "validation_failed"));
    assert!(body["error"]["message"].as_str().unwrap().contains("batch_is_array"), "{body}");
    let (status, body, _) = send("[]".into()).await;
    assert_eq!((status, code(&body).0), (422, "validation_failed"));
    assert!(body["error"]["message"].as_str().unwrap().contains("batch_size"), "{body}");
    let (status, body, _) = send(batch(&["a1", "a2", "a3", "a4", "a5"])).await;
    assert_eq!((status, code(&body).0), (422, "validation_failed"), "{body}");
    let (status, body, _) = send(batch(&["a1", "a2", "a3", "a4"])).await;
    assert_eq!((status, code(&body).0), (413, "batch_exceeds_burst"), "more events than the burst");

    // Each event keeps the single-event size limit, so no batch can carry a record /events refuses.
    let mut oversized = vec![event("evt_small"), event("evt_big")];
    oversized[1]["payload"]["pad"] = json!("x".repeat(3000));
    let (status, body, _) = send(Value::Array(oversized).to_string()).await;
    assert_eq!((status, code(&body)), (413, ("payload_too_large", Some("[1]"))), "{body}");

    let mut bad_payload = vec![event("evt_ok1"), event("evt_bad")];
    bad_payload[1]["payload"]["total"] = json!("lots");
    let (status, body, _) = send(Value::Array(bad_payload).to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("[1].payload.total"))), "{body}");

    let mut other_source = vec![event("evt_ok2"), event("evt_ok3")];
    other_source[1]["source"] = json!("portal");
    let (status, body, _) = send(Value::Array(other_source).to_string()).await;
    assert_eq!((status, code(&body)), (403, ("forbidden_source", Some("[1].source"))));

    let (status, body, _) = send(batch(&["evt_twice", "evt_twice"])).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("[1].eventId"))));

    let body = batch(&["evt_s1", "evt_s2"]);
    let (status, answer, _) = TestEdge::answer(
        edge.http
            .post(format!("{}{BATCH}", edge.url))
            .header("content-type", "application/json")
            .header("authorization", "Bearer dev-token-finance")
            .header("x-ct-signature", ct_signature("not-the-secret", body.as_bytes()))
            .body(body),
    )
    .await;
    assert_eq!((status, code(&answer)), (401, ("invalid_signature", Some("X-CT-Signature"))));
    assert!(edge.records().is_empty(), "no refused batch wrote anything");

    // evt_c2 is taken with another body: the whole batch is a 409 naming it, and evt_c1's claim is
    // released, so sending evt_c1 afterwards succeeds.
    let mut taken = event("evt_c2");
    taken["payload"]["total"] = json!(1.0);
    assert_eq!(edge.send("dev-token-finance", &taken.to_string()).await.0, 202);
    let (status, body, _) = send(batch(&["evt_c1", "evt_c2"])).await;
    assert_eq!((status, code(&body)), (409, ("event_id_conflict", Some("[1].eventId"))));
    assert_eq!(ids_on_topic(&edge), ["evt_c2"], "the conflicting batch wrote nothing");
    let (status, body, _) = send(batch(&["evt_c1"])).await;
    assert_eq!((status, body["events"][0]["duplicate"].clone()), (202, json!(false)), "{body}");
}
