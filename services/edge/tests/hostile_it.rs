//! Odd bytes, cosmetic differences and replays at the edge, on the real broker, registry and
//! Redis: text the read models cannot store is refused by name, "the same event" is decided on
//! the parsed event (whatever the whitespace, key order, spelling or door), two spellings never
//! lose a value, a batch is checked in the same order as a single event, map keys are redacted,
//! and a signed timestamp stops replays.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{SECRET, TestEdge, event};
use ct_core::{
    avro,
    payload::Payload,
    signature::{ct_signature, ct_signature_at},
};
use ct_edge::idempotency::{Claim, IdempotencyStore, Lingers, Receipt};
use serde_json::{Value, json};

fn code(body: &Value) -> (&str, Option<&str>) {
    (body["error"]["code"].as_str().unwrap_or("<none>"), body["error"]["field"].as_str())
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn decoded(edge: &TestEdge) -> Vec<ct_core::Envelope> {
    edge.records()
        .iter()
        .map(|r| {
            let (_, datum) = avro::wire::split(&r.value).unwrap();
            avro::decode_event(avro::event_schema(), datum).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn text_the_stores_cannot_hold_is_refused_by_name() {
    let edge = TestEdge::start().await;
    let nul_value = json!({"eventId": "evt_nul1", "type": "artifact.pointer.written", "ts": "2025-09-27T10:00:00Z",
        "source": "backend", "payload": {"artifactId": "a1", "uri": "s3://b/k\u{0}x"}});
    let (status, body, _) = edge.send("dev-token-backend", &nul_value.to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("payload.uri"))), "{body}");
    assert!(message(&body).contains("no_nul_character"), "{body}");

    let nul_key = json!({"eventId": "evt_nul2", "type": "ct.run.started", "ts": "2025-09-27T10:00:00Z",
        "source": "backend", "payload": {"runId": "r1", "trigger": "t", "initiator": "ops",
        "inputs": {"k\u{0}": "v"}}});
    let (status, body, _) = edge.send("dev-token-backend", &nul_key.to_string()).await;
    assert_eq!((status, code(&body).0), (422, "validation_failed"), "{body}");
    assert!(code(&body).1.unwrap().starts_with("payload.inputs."), "{body}");

    let in_batch = json!([event("evt_nul3"), {"eventId": "evt_nul4", "type": "finance.invoice.generated",
        "ts": "2025-09-27T10:00:00Z", "source": "finance",
        "payload": {"invoiceId": "INV\u{0}1", "period": "2025-09", "total": 1}}]);
    let (status, body, _) = edge.send_to("/events/batch", "dev-token-finance", &in_batch.to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("[1].payload.invoice_id"))), "{body}");
    assert!(edge.records().is_empty(), "nothing refused reached the log");
}

#[tokio::test]
async fn the_same_event_reserialised_is_a_duplicate_whatever_the_door() {
    let edge = TestEdge::start().await;
    let compact = r#"{"eventId":"evt_same","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{"invoiceId":"INV-1","period":"2025-09","total":1234.56}}"#;
    let (status, first, _) = edge.send("dev-token-finance", compact).await;
    assert_eq!((status, first["duplicate"].clone()), (202, json!(false)), "{first}");

    // Pretty-printed, keys in another order, snake_case spellings, another number format.
    let reserialised = "{\n  \"source\": \"finance\",\n  \"payload\": {\"total\": 1234.560, \"period\": \"2025-09\",\n    \"invoice_id\": \"INV-1\"},\n  \"ts\": \"2025-09-27T11:00:00+01:00\",\n  \"type\": \"finance.invoice.generated\",\n  \"event_id\": \"evt_same\"\n}\n";
    let (status, again, _) = edge.send("dev-token-finance", reserialised).await;
    assert_eq!(
        (status, again["duplicate"].clone(), again["offset"].clone()),
        (202, json!(true), first["offset"].clone())
    );

    // The same event as an item of a batch.
    let batch = format!("[ {compact} ]");
    let (status, body, _) = edge.send_to("/events/batch", "dev-token-finance", &batch).await;
    assert_eq!((status, body["events"][0]["duplicate"].clone()), (202, json!(true)), "{body}");

    // A changed payload is still a conflict.
    let changed = compact.replace("1234.56", "1234.57");
    let (status, body, _) = edge.send("dev-token-finance", &changed).await;
    assert_eq!((status, code(&body)), (409, ("event_id_conflict", Some("eventId"))));
    assert_eq!(decoded(&edge).len(), 1, "one record for every form of the event");
}

#[tokio::test]
async fn two_spellings_with_different_values_are_refused() {
    let edge = TestEdge::start().await;
    let both = json!({"eventId": "evt_sp1", "type": "excel.timesheet.ingested", "ts": "2025-09-27T10:00:00Z",
        "source": "backend", "payload": {"contractorId": "C1", "period": "2025-W36", "items": [],
        "total_hours": null, "totalHours": 37.5}});
    let (status, body, _) = edge.send("dev-token-backend", &both.to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("payload.total_hours"))), "{body}");
    assert!(message(&body).contains("conflicting_spellings"), "{body}");

    let ids = json!({"eventId": "evt_sp2", "event_id": "evt_sp3", "type": "finance.invoice.generated",
        "ts": "2025-09-27T10:00:00Z", "source": "finance",
        "payload": {"invoiceId": "I", "period": "2025-09", "total": 1}});
    let (status, body, _) = edge.send("dev-token-finance", &ids.to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("eventId"))), "{body}");

    // The same value under both spellings is no contradiction.
    let agreeing = json!({"eventId": "evt_sp4", "type": "excel.timesheet.ingested", "ts": "2025-09-27T10:00:00Z",
        "source": "backend", "payload": {"contractorId": "C1", "contractor_id": "C1", "period": "2025-W36",
        "items": [], "totalHours": 37.5}});
    assert_eq!(edge.send("dev-token-backend", &agreeing.to_string()).await.0, 202);
    let stored = decoded(&edge);
    let Payload::ExcelTimesheetIngested(timesheet) = stored[0].payload() else { panic!("timesheet") };
    assert_eq!(timesheet.total_hours_centi, Some(3750));
}

#[tokio::test]
async fn a_batch_checks_the_token_and_signature_before_its_shape() {
    let edge = TestEdge::start().await;
    let url = format!("{}/events/batch", edge.url);
    let unauthenticated = edge.http.post(&url).header("content-type", "application/json").body("[]");
    let (status, body, _) = TestEdge::answer(unauthenticated).await;
    assert_eq!((status, code(&body)), (401, ("unauthorized", Some("Authorization"))), "{body}");

    let unsigned =
        edge.http.post(&url).header("content-type", "application/json").bearer_auth("dev-token-finance").body("[]");
    let (status, body, _) = TestEdge::answer(unsigned).await;
    assert_eq!((status, code(&body).0), (401, "invalid_signature"), "{body}");

    let (status, body, _) = edge.send_to("/events/batch", "dev-token-finance", "[]").await;
    assert_eq!((status, code(&body).0), (422, "validation_failed"), "signed and authenticated: the shape: {body}");

    // A single event: an unauthenticated body that is not JSON is a 401, not a 400.
    let garbage = edge.http.post(format!("{}/events", edge.url)).header("content-type", "application/json").body("{");
    assert_eq!(TestEdge::answer(garbage).await.0, 401);
}

#[tokio::test]
async fn map_keys_are_redacted_like_values() {
    let edge = TestEdge::start().await;
    let run = json!({"eventId": "evt_keys", "type": "ct.run.started", "ts": "2025-09-27T10:00:00Z",
        "source": "backend", "payload": {"runId": "r1", "trigger": "contract.regenerate", "initiator": "ops",
        "inputs": {"bob@corp.com": "notify", "contractId": "C-1"}}});
    assert_eq!(edge.send("dev-token-backend", &run.to_string()).await.0, 202);
    let stored = decoded(&edge);
    let Payload::RunStarted(run) = stored[0].payload() else { panic!("run started") };
    assert!(run.inputs.keys().all(|k| !k.contains("bob@corp.com")), "{:?}", run.inputs);
    assert!(run.inputs.keys().any(|k| k.starts_with("[redacted:email:")), "{:?}", run.inputs);
    assert_eq!(run.inputs.get("contractId").map(String::as_str), Some("C-1"));
}

#[tokio::test]
async fn a_signed_timestamp_stops_replays_when_required() {
    let edge = TestEdge::start_with(|c| c.auth.require_signed_timestamp = true).await;
    let body = event("evt_ts").to_string();
    let post = |signature: String, timestamp: Option<i64>| {
        let mut request = edge
            .http
            .post(format!("{}/events", edge.url))
            .header("content-type", "application/json")
            .bearer_auth("dev-token-finance")
            .header("x-ct-signature", signature)
            .body(body.clone());
        if let Some(timestamp) = timestamp {
            request = request.header("x-ct-timestamp", timestamp.to_string());
        }
        TestEdge::answer(request)
    };
    let (status, answer, _) = post(ct_signature(SECRET, body.as_bytes()), None).await;
    assert_eq!((status, code(&answer)), (401, ("invalid_signature", Some("X-CT-Timestamp"))), "{answer}");

    let captured_at = Utc::now().timestamp() - 3600;
    let (status, answer, _) = post(ct_signature_at(SECRET, captured_at, body.as_bytes()), Some(captured_at)).await;
    assert_eq!((status, code(&answer)), (401, ("invalid_signature", Some("X-CT-Timestamp"))), "{answer}");

    // Moving the timestamp of a captured request breaks its signature.
    let now = Utc::now().timestamp();
    let (status, answer, _) = post(ct_signature_at(SECRET, captured_at, body.as_bytes()), Some(now)).await;
    assert_eq!((status, code(&answer)), (401, ("invalid_signature", Some("X-CT-Signature"))), "{answer}");

    let (status, answer, _) = post(ct_signature_at(SECRET, now, body.as_bytes()), Some(now)).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test]
async fn an_expired_claim_cannot_touch_the_next_owners_claim() {
    let ctx = ct_testkit::TestContext::new();
    let redis = ct_platform::redis::connect(&ctx.redis()).await.unwrap();
    let prefix = ctx.topic("idem");
    let store = IdempotencyStore::new(redis, &prefix, "t", 200, 60);
    let receipt = |offset| Receipt { topic: "t".into(), partition: 0, offset };

    // A claims, stalls past its claim's expiry; B claims the same event.
    assert_eq!(store.claim_all(&[("evt_1", "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.claim_all(&[("evt_1", "d")], "owner-b").await.unwrap(), [Claim::Claimed]);

    // A's late release and completion leave B's claim alone.
    assert_eq!(store.release_all(&["evt_1"], "owner-a").await.unwrap(), 0);
    assert_eq!(store.complete_all(&[("evt_1", "d", &receipt(1))], "owner-a").await.unwrap(), 0);
    assert_eq!(store.claim_all(&[("evt_1", "d")], "owner-c").await.unwrap(), [Claim::InFlight], "still B's");

    // B completes; a retry is a duplicate with B's receipt.
    assert_eq!(store.complete_all(&[("evt_1", "d", &receipt(2))], "owner-b").await.unwrap(), 1);
    assert_eq!(store.claim_all(&[("evt_1", "d")], "owner-d").await.unwrap(), [Claim::Duplicate(receipt(2))]);
    assert_eq!(store.release_all(&["evt_1"], "owner-b").await.unwrap(), 0, "a receipt is never released");

    // A claim that expired unclaimed still gets its receipt recorded.
    assert_eq!(store.claim_all(&[("evt_2", "d")], "owner-e").await.unwrap(), [Claim::Claimed]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.complete_all(&[("evt_2", "d", &receipt(3))], "owner-e").await.unwrap(), 1);
    assert_eq!(store.claim_all(&[("evt_2", "d")], "owner-f").await.unwrap(), [Claim::Duplicate(receipt(3))]);
}

/// The request path does not wait for receipts and releases: a claim submitted after them, even
/// one that shares their round trip, already sees them.
#[tokio::test]
async fn receipts_and_releases_not_waited_for_come_before_the_next_claim() {
    let ctx = ct_testkit::TestContext::new();
    let redis = ct_platform::redis::connect(&ctx.redis()).await.unwrap();
    let store = IdempotencyStore::new(redis, &ctx.topic("idem"), "t", 60_000, 60);
    let receipt = |offset| Receipt { topic: "t".into(), partition: 2, offset };
    for round in 0..50 {
        let (done, given_back) = (format!("evt_done_{round}"), format!("evt_back_{round}"));
        let claims = store.claim_all(&[(done.as_str(), "d"), (given_back.as_str(), "d")], "owner-a").await.unwrap();
        assert_eq!(claims, [Claim::Claimed, Claim::Claimed]);
        store.complete_later(&[(done.as_str(), "d", &receipt(round))], "owner-a");
        store.release_later(&[given_back.as_str()], "owner-a");
        let retried = store.claim_all(&[(done.as_str(), "d"), (given_back.as_str(), "d")], "owner-b").await.unwrap();
        assert_eq!(retried, [Claim::Duplicate(receipt(round)), Claim::Claimed], "round {round}");
    }
}

/// What `flush` returns after is in Redis for every other connection too (the edge flushes at
/// shutdown, after its last request).
#[tokio::test]
async fn a_flush_waits_for_the_receipts_not_waited_for() {
    let ctx = ct_testkit::TestContext::new();
    let prefix = ctx.topic("idem");
    let connect = || async { ct_platform::redis::connect(&ctx.redis()).await.unwrap() };
    let edge = IdempotencyStore::new(connect().await, &prefix, "t", 60_000, 60);
    let receipt = |offset| Receipt { topic: "t".into(), partition: 1, offset };
    let ids: Vec<String> = (0..200).map(|i| format!("evt_flush_{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(edge.claim_all(&[(id.as_str(), "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
        edge.complete_later(&[(id.as_str(), "d", &receipt(i as i64))], "owner-a");
    }
    edge.flush().await;
    let other = IdempotencyStore::new(connect().await, &prefix, "t", 60_000, 60);
    for (i, id) in ids.iter().enumerate() {
        let seen = other.claim_all(&[(id.as_str(), "d")], "owner-b").await.unwrap();
        assert_eq!(seen, [Claim::Duplicate(receipt(i as i64))], "{id}");
    }
}

/// A receipt nobody waits for waits for the next claim's round trip (up to the linger), goes
/// alone when no claim comes, and a flush does not wait for the linger.
#[tokio::test]
async fn receipts_linger_for_a_claim_and_go_alone_when_none_comes() {
    let ctx = ct_testkit::TestContext::new();
    let prefix = ctx.topic("idem");
    let prefix = prefix.as_str();
    let connect = || async { ct_platform::redis::connect(&ctx.redis()).await.unwrap() };
    let store = |linger_ms| async move {
        IdempotencyStore::with_lingers(
            connect().await,
            prefix,
            "t",
            60_000,
            60,
            Lingers { receipt: Duration::from_millis(linger_ms), claim: Duration::ZERO },
        )
    };
    let (patient, quick, other) = (store(60_000).await, store(100).await, store(0).await);
    let receipt = |offset| Receipt { topic: "t".into(), partition: 3, offset };
    let seen_elsewhere = |id: &'static str| {
        let other = other.clone();
        async move { other.claim_all(&[(id, "d")], "owner-other").await.unwrap().remove(0) }
    };

    // Held while no claim comes...
    assert_eq!(patient.claim_all(&[("evt_held", "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
    patient.complete_later(&[("evt_held", "d", &receipt(1))], "owner-a");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen_elsewhere("evt_held").await, Claim::InFlight, "the receipt waits for a claim");
    // ...and written, first, in the next claim's round trip.
    assert_eq!(patient.claim_all(&[("evt_next", "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
    assert_eq!(seen_elsewhere("evt_held").await, Claim::Duplicate(receipt(1)));
    // A held receipt and a retry of its own event share a round trip: the receipt goes first.
    assert_eq!(patient.claim_all(&[("evt_retried", "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
    patient.complete_later(&[("evt_retried", "d", &receipt(9))], "owner-a");
    let retried = patient.claim_all(&[("evt_retried", "d")], "owner-b").await.unwrap();
    assert_eq!(retried, [Claim::Duplicate(receipt(9))]);

    // A flush does not wait for the linger.
    patient.complete_later(&[("evt_next", "d", &receipt(2))], "owner-a");
    tokio::time::timeout(Duration::from_secs(5), patient.flush()).await.expect("a flush sends at once");
    assert_eq!(seen_elsewhere("evt_next").await, Claim::Duplicate(receipt(2)));

    // With no claim to ride with, a receipt goes alone at the end of the linger.
    assert_eq!(quick.claim_all(&[("evt_alone", "d")], "owner-q").await.unwrap(), [Claim::Claimed]);
    quick.complete_later(&[("evt_alone", "d", &receipt(3))], "owner-q");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(seen_elsewhere("evt_alone").await, Claim::Duplicate(receipt(3)));
}

/// A claim that finds the writer idle waits for the claim linger, and what comes meanwhile shares
/// its round trip; a flush sends it at once.
#[tokio::test]
async fn a_claim_on_an_idle_writer_lingers_for_others_to_share_its_round_trip() {
    let ctx = ct_testkit::TestContext::new();
    let prefix = ctx.topic("idem");
    let connect = || async { ct_platform::redis::connect(&ctx.redis()).await.unwrap() };
    let claim_linger = Duration::from_secs(3);
    let lingers = Lingers { receipt: Duration::from_secs(60), claim: claim_linger };
    let store = IdempotencyStore::with_lingers(connect().await, &prefix, "t", 60_000, 60, lingers);
    let other = IdempotencyStore::new(connect().await, &prefix, "t", 60_000, 60);
    let receipt = Receipt { topic: "t".into(), partition: 0, offset: 4 };

    let started = std::time::Instant::now();
    assert_eq!(store.claim_all(&[("evt_first", "d")], "owner-a").await.unwrap(), [Claim::Claimed]);
    assert!(started.elapsed() >= claim_linger, "a lone claim waited {:?}", started.elapsed());

    // A receipt submitted while the next claim lingers goes in that claim's round trip (alone, it
    // would wait a minute for one).
    let lingering = tokio::spawn({
        let store = store.clone();
        async move { store.claim_all(&[("evt_second", "d")], "owner-b").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.complete_later(&[("evt_first", "d", &receipt)], "owner-a");
    assert_eq!(lingering.await.unwrap(), [Claim::Claimed]);
    assert_eq!(other.claim_all(&[("evt_first", "d")], "owner-c").await.unwrap(), [Claim::Duplicate(receipt)]);

    // A flush does not wait for a lingering claim.
    let flushed = std::time::Instant::now();
    let lingering = tokio::spawn({
        let store = store.clone();
        async move { store.claim_all(&[("evt_third", "d")], "owner-d").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(2), store.flush()).await.expect("a flush sends at once");
    assert_eq!(lingering.await.unwrap(), [Claim::Claimed]);
    assert!(flushed.elapsed() < claim_linger, "the flush took the claim along: {:?}", flushed.elapsed());
}

/// Concurrent requests share the store's round trips: claims, receipts and releases of many
/// requests travel in one pipeline, and each request still gets exactly its own answers.
#[tokio::test]
async fn concurrent_requests_get_their_own_answers_from_shared_round_trips() {
    let ctx = ct_testkit::TestContext::new();
    let redis = ct_platform::redis::connect(&ctx.redis()).await.unwrap();
    let store = IdempotencyStore::new(redis, &ctx.topic("idem"), "t", 10_000, 60);
    let receipt = |offset: i64| Receipt { topic: "t".into(), partition: (offset % 6) as i32, offset };
    let events: Vec<(String, String)> = (0..300).map(|i| (format!("evt_{i}"), format!("digest-{i}"))).collect();

    let claims = futures::future::join_all(events.iter().enumerate().map(|(i, (id, digest))| {
        let store = store.clone();
        async move { store.claim_all(&[(id.as_str(), digest.as_str())], &format!("owner-{i}")).await.unwrap() }
    }))
    .await;
    assert!(claims.iter().all(|claim| claim == &[Claim::Claimed]), "{claims:?}");

    // Even events complete, odd ones are released, all at once; a stranger's release touches nothing.
    let settled = futures::future::join_all(events.iter().enumerate().map(|(i, (id, digest))| {
        let store = store.clone();
        async move {
            let owner = format!("owner-{i}");
            let stranger = store.release_all(&[id.as_str()], "stranger").await.unwrap();
            let mine = if i % 2 == 0 {
                store.complete_all(&[(id.as_str(), digest.as_str(), &receipt(i as i64))], &owner).await.unwrap()
            } else {
                store.release_all(&[id.as_str()], &owner).await.unwrap()
            };
            (stranger, mine)
        }
    }))
    .await;
    assert!(settled.iter().all(|answer| *answer == (0, 1)), "{settled:?}");

    let again = futures::future::join_all(events.iter().map(|(id, digest)| {
        let store = store.clone();
        async move { store.claim_all(&[(id.as_str(), digest.as_str())], "owner-late").await.unwrap() }
    }))
    .await;
    for (i, claim) in again.iter().enumerate() {
        let expected = if i % 2 == 0 { Claim::Duplicate(receipt(i as i64)) } else { Claim::Claimed };
        assert_eq!(claim, &[expected], "event {i}");
    }
    let conflict = store.claim_all(&[("evt_0", "another body")], "owner-x").await.unwrap();
    assert_eq!(conflict, [Claim::Conflict]);
}

/// A heartbeat speaks for a system: a made-up `systemId` (a burst of them once made `/health`
/// red with 265 systems) is refused by name, and so is another source's system.
#[tokio::test]
async fn heartbeats_speak_only_for_catalogued_systems_of_their_own_source() {
    let edge = TestEdge::start().await;
    let heartbeat = |id: &str, system: &str| {
        json!({"eventId": id, "type": "system.heartbeat", "ts": Utc::now().to_rfc3339(), "source": "finance",
            "payload": {"systemId": system}})
    };
    let (status, body, _) = edge.send("dev-token-finance", &heartbeat("evt_hb_made_up", "etl-42").to_string()).await;
    assert_eq!((status, code(&body)), (422, ("validation_failed", Some("payload.systemId"))), "{body}");
    assert!(message(&body).contains("unknown_system"), "{body}");
    let (status, body, _) = edge.send("dev-token-finance", &heartbeat("evt_hb_other", "portal").to_string()).await;
    assert_eq!((status, code(&body)), (403, ("forbidden_system", Some("payload.systemId"))), "{body}");
    let batch = json!([heartbeat("evt_hb_own", "finance"), heartbeat("evt_hb_other2", "portal")]);
    let (status, body, _) = edge.send_to("/events/batch", "dev-token-finance", &batch.to_string()).await;
    assert_eq!((status, code(&body)), (403, ("forbidden_system", Some("[1].payload.systemId"))), "{body}");
    assert!(edge.records().is_empty(), "nothing refused reached the log");
    let (status, body, _) = edge.send("dev-token-finance", &heartbeat("evt_hb_own", "finance").to_string()).await;
    assert_eq!(status, 202, "{body}");
}
