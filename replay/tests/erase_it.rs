//! `ct erase` and the retention tiers, on the real broker, registry and Postgres: an erasure
//! blanks one producer's payloads before a time whether the projector reads it before or after
//! the events, and a rebuild agrees; rows past their tier leave the model, a late copy of a
//! pruned event stays a duplicate, and a rebuild (which prunes nothing) still compares equal.

use std::time::Duration;

use chrono::Duration as ChronoDuration;
use ct_core::Envelope;
use ct_platform::kafka;
use ct_projector::ProjectorModel;
use ct_replay::{
    erase::{self, EraseError},
    rebuild::rebuild,
};
use ct_testkit::{TestContext, eventually, parse_event, wire_event};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn envelope(body: Value) -> Envelope {
    parse_event(&body)
}

fn invoice(id: &str, ts: &str) -> Envelope {
    envelope(json!({"eventId": id, "type": "finance.invoice.generated", "ts": ts, "source": "finance",
                    "payload": {"invoiceId": format!("INV-{id}"), "period": "2025-09", "total": 10}}))
}

fn heartbeat(id: &str, ts: &str) -> Envelope {
    envelope(
        json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": "portal", "payload": {"systemId": "portal"}}),
    )
}

fn run_started(id: &str, run: &str, ts: &str) -> Envelope {
    envelope(json!({"eventId": id, "type": "ct.run.started", "ts": ts, "source": "desktop",
                    "payload": {"runId": run, "trigger": "desktop.trigger.contract", "initiator": "staff"}}))
}

struct Slice {
    ctx: TestContext,
    config: ct_projector::Config,
    producer: FutureProducer,
    schema_id: u32,
    pool: PgPool,
    stop: CancellationToken,
    _registry: CancellationToken,
}

impl Slice {
    async fn start(adjust: impl FnOnce(&mut ct_projector::Config)) -> Slice {
        let ctx = TestContext::new();
        let t = ctx.pipeline_topics().await;
        let (registry_url, schema_id, registry) =
            ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &t.events).await.unwrap();
        let mut config = ct_projector::Config::for_slice(&ctx.slice(&t, &registry_url));
        adjust(&mut config);
        let stop = CancellationToken::new();
        tokio::spawn(ct_projector::run(config.clone(), stop.clone()));
        let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
        let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
        Slice { ctx, config, producer, schema_id, pool, stop, _registry: registry }
    }

    async fn send(&self, events: &[Envelope]) {
        for event in events {
            let value = wire_event(self.schema_id, event);
            self.producer
                .send(
                    FutureRecord::to(&self.config.consumer.topic).key(event.source().as_str()).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap_or(-1)
    }

    /// Waits until the projector's progress on the events topic reaches its end.
    async fn caught_up(&self) {
        let (kafka, topic) = (self.ctx.kafka.clone(), self.config.consumer.topic.clone());
        let end: i64 = tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer = kafka::client_config(&kafka).create().unwrap();
            kafka::end_offsets(&consumer, &topic, Duration::from_secs(10)).unwrap().into_iter().sum()
        })
        .await
        .unwrap();
        let sql = format!(
            "SELECT COALESCE(sum(next_offset), 0)::bigint FROM consumer_progress WHERE consumer = '{}' AND topic = '{}'",
            self.config.consumer.name, self.config.consumer.topic
        );
        let reached =
            eventually(Duration::from_secs(60), || async { (self.count(&sql).await >= end).then_some(()) }).await;
        assert!(reached.is_some(), "the projector did not reach offset sum {end} within a minute");
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_blanks_a_sources_old_payloads_in_either_order_and_a_rebuild_agrees() {
    let s = Slice::start(|_| {}).await;
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(invoice(&format!("inv_{i}"), &format!("2025-09-27T10:{i:02}:00Z")));
        events.push(heartbeat(&format!("hb_{i}"), &format!("2025-09-27T10:{i:02}:00Z")));
    }
    s.send(&events).await;
    s.caught_up().await;
    let counts_before = s.count("SELECT sum(events_total)::bigint FROM type_counts").await;
    let before = "2025-09-27T10:10:00Z".parse().unwrap();

    // Bad requests are refused before anything is written.
    for (source, reason, when, expected) in [
        ("nobody", "ticket 7", before, "UnknownSource"),
        ("finance", " ", before, "NoReason"),
        ("finance", "ticket 7", chrono::Utc::now() + ChronoDuration::days(1), "FutureBefore"),
    ] {
        let refused = erase::plan(&s.config, source, when, reason).await.unwrap_err();
        assert!(format!("{refused:?}").starts_with(expected), "{source}/{reason:?}: {refused:?}");
    }
    assert!(matches!(erase::plan(&s.config, "nobody", before, "x").await, Err(EraseError::UnknownSource(..))));

    let plan = erase::plan(&s.config, "finance", before, "ticket 7").await.unwrap();
    assert_eq!((plan.events, plan.already_erased), (10, 0));
    let outcome = erase::erase(&s.config, &plan, "sre", "ticket 7", Duration::from_secs(60)).await.unwrap();
    assert_eq!(outcome.erased, 10);
    assert_eq!(s.count("SELECT count(*) FROM events WHERE payload = '{\"erased\": true}'").await, 10);
    assert_eq!(
        s.count("SELECT count(*) FROM events WHERE source = 'finance' AND ts >= '2025-09-27T10:10:00Z' AND payload ? 'invoice_id'").await,
        10,
        "later events of the source keep their payload"
    );
    assert_eq!(s.count("SELECT count(*) FROM events WHERE source = 'portal' AND payload ? 'system_id'").await, 20);
    assert_eq!(s.count("SELECT sum(events_total)::bigint FROM type_counts").await, counts_before, "counts stay true");
    let audit: (String, String) = sqlx::query_as("SELECT actor, reason FROM erasures WHERE erasure_id = $1")
        .bind(&outcome.erasure_id)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(audit, ("sre".to_owned(), "ticket 7".to_owned()));

    // The other order: an event the erasure covers, read after it.
    s.send(&[invoice("inv_late", "2025-09-27T09:00:00Z")]).await;
    s.caught_up().await;
    let late: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_id = 'inv_late'").fetch_one(&s.pool).await.unwrap();
    assert_eq!(late, json!({"erased": true}));

    // A rebuild reads the events and the erasure again, in its own order, and agrees.
    let report = rebuild(&ProjectorModel(s.config.clone()), false, Duration::from_secs(120)).await.unwrap();
    assert!(report.identical, "rebuild differs: {:?}", report.differing_tables);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_past_their_tier_leave_the_model_and_a_late_copy_of_a_pruned_event_stays_a_duplicate() {
    let s = Slice::start(|c| {
        c.retention.events_days = 30;
        c.retention.runs_days = 60;
        c.retention.prune_interval_s = 1;
    })
    .await;
    // Newest event: 2025-09-27. Events before 2025-08-28 and runs last seen before 2025-07-29 go.
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(invoice(&format!("old_{i}"), &format!("2025-06-{:02}T10:00:00Z", i + 1)));
        events.push(invoice(&format!("new_{i}"), &format!("2025-09-{:02}T10:00:00Z", i + 18)));
    }
    events.push(run_started("run_old_e", "run_old", "2025-06-15T10:00:00Z"));
    events.push(run_started("run_mid_e", "run_mid", "2025-08-15T10:00:00Z"));
    events.push(run_started("run_new_e", "run_new", "2025-09-20T10:00:00Z"));
    s.send(&events).await;
    s.caught_up().await;
    let pruned = eventually(Duration::from_secs(30), || async {
        let left = s.count("SELECT count(*) FROM events WHERE ts < '2025-08-28T10:00:00Z'").await;
        let runs = s.count("SELECT count(*) FROM runs").await;
        (left == 0 && runs == 2).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "rows past their tier were not pruned within 30 s");
    assert_eq!(
        s.count("SELECT count(*) FROM events").await,
        11,
        "the ten new invoices and the newer runs' events stay"
    );
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT run_id FROM runs ORDER BY run_id").fetch_all(&s.pool).await.unwrap();
    assert_eq!(runs, ["run_mid", "run_new"]);
    assert_eq!(s.count("SELECT count(*) FROM pruned_events").await, 12);
    let totals = s.count("SELECT events_total FROM type_counts WHERE type = 'finance.invoice.generated'").await;
    assert_eq!(totals, 20, "the counts keep what the log holds");

    // A late copy of a pruned event (a replay, a redelivery) is still a duplicate.
    s.send(&[invoice("old_3", "2025-06-04T10:00:00Z")]).await;
    s.caught_up().await;
    assert_eq!(s.count("SELECT count(*) FROM events WHERE event_id = 'old_3'").await, 0);
    assert_eq!(s.count("SELECT events_total FROM type_counts WHERE type = 'finance.invoice.generated'").await, 20);

    // A rebuild keeps every row (it prunes nothing), and compares only what the tiers keep.
    let report = rebuild(&ProjectorModel(s.config.clone()), false, Duration::from_secs(120)).await.unwrap();
    assert!(report.identical, "rebuild differs: {:?}", report.differing_tables);
}
