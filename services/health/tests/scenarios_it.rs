//! The health evaluator on the real broker, registry and Postgres, driven by clock records (the
//! test writes the ticks with the real ticker, at the minutes it chooses), so hours of business
//! time pass in seconds. Statuses, reasons and history are read from the evaluator's schema, the
//! changes from `ct.health.v1`, and a rebuild must give the same bytes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ct_core::{Envelope, envelope::ParseOptions, health::StatusSymbol, redact::Redactor};
use ct_health::{Config, HealthModel, ticker::Ticker};
use ct_platform::{kafka, readmodel, registry::RegistryClient};
use ct_testkit::{PipelineTopics, TestContext, eventually, wire_event};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

struct Scenario {
    ctx: TestContext,
    topics: PipelineTopics,
    config: Config,
    schema_id: u32,
    producer: FutureProducer,
    ticker: Ticker,
    pool: PgPool,
    stop: CancellationToken,
    registry_url: String,
    _registry: CancellationToken,
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a literal time")
}

impl Scenario {
    async fn start() -> Scenario {
        let ctx = TestContext::new();
        let topics = ctx.pipeline_topics().await;
        let (registry_url, schema_id, registry) =
            ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &topics.events)
                .await
                .expect("registry");
        let config = Config::for_slice(&ctx.slice(&topics, &registry_url));
        let stop = CancellationToken::new();
        tokio::spawn(ct_health::run(config.clone(), stop.clone()));
        let ticker = Ticker::connect(&ctx.kafka, RegistryClient::new(&registry_url), &topics.clock, &topics.events)
            .await
            .expect("ticker");
        let pool = ct_platform::postgres::connect(&ctx.health_postgres()).await.expect("postgres");
        let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
        Scenario { ctx, topics, config, schema_id, producer, ticker, pool, stop, registry_url, _registry: registry }
    }

    /// Writes an event straight to the log (as the edge would have, received `delay_s` after its
    /// `ts`), bypassing the edge's refusals on purpose.
    async fn log(&self, body: serde_json::Value, delay_s: i64) {
        let ts: DateTime<Utc> = body["ts"].as_str().unwrap().parse().unwrap();
        let redactor = Redactor::new("t");
        let options = ParseOptions {
            redactor: &redactor,
            received_at: ts + chrono::Duration::seconds(delay_s),
            max_future_skew: chrono::Duration::minutes(5),
        };
        let event: Envelope = Envelope::parse(&body, &options).expect("a valid event").0;
        let value = wire_event(self.schema_id, &event);
        self.producer
            .send(
                FutureRecord::to(&self.topics.events).key(event.source().as_str()).payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("the broker takes the event");
    }

    async fn heartbeat(&self, system: &str, ts: &str) {
        let id = format!("hb-{system}-{ts}");
        self.log(
            json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": system, "payload": {"systemId": system}}),
            1,
        )
        .await;
    }

    /// Writes the tick of `minute` and waits until the evaluator has evaluated it.
    async fn tick(&self, minute: &str) {
        let minute = at(minute);
        self.ticker.tick(minute).await.expect("tick written");
        let evaluated = eventually(Duration::from_secs(60), || async {
            let last: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT minute FROM clock").fetch_optional(&self.pool).await.ok().flatten();
            (last == Some(minute)).then_some(())
        })
        .await;
        assert!(evaluated.is_some(), "the tick of {minute} was not evaluated within a minute");
    }

    async fn status(&self, system: &str) -> (String, String, String) {
        sqlx::query_as("SELECT status, reason, message FROM statuses WHERE system_id = $1")
            .bind(system)
            .fetch_one(&self.pool)
            .await
            .expect("a status row for every catalogued system")
    }

    async fn history(&self, system: &str) -> Vec<(DateTime<Utc>, String, Option<String>)> {
        sqlx::query_as("SELECT at, status, previous FROM history WHERE system_id = $1 ORDER BY at")
            .bind(system)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Every record of the test's `ct.health.v1` for `system`, once the outbox is empty.
    async fn published(&self, system: &str) -> Vec<ct_core::health::Change> {
        let drained = eventually(Duration::from_secs(30), || async {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&self.pool).await.ok()?;
            (left == 0).then_some(())
        })
        .await;
        assert!(drained.is_some(), "the outbox was not published");
        let consumer: BaseConsumer = kafka::client_config(&self.ctx.kafka)
            .set("group.id", self.ctx.group("health-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let (_, high) = consumer.fetch_watermarks(&self.topics.health, 0, Duration::from_secs(10)).unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topics.health, 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();
        let registry = RegistryClient::new(&self.registry_url);
        let mut changes = Vec::new();
        let mut read = 0;
        while read < high {
            let Some(message) = consumer.poll(Duration::from_secs(10)) else { panic!("ct.health.v1 ended early") };
            let message = message.unwrap();
            read = message.offset() + 1;
            let change =
                registry.decode_with(message.payload().unwrap(), ct_core::health::decode_change).await.unwrap();
            if change.system_id == system {
                changes.push(change);
            }
        }
        changes
    }
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

    // Each change once on ct.health.v1, with Statuspage's word and the reason.
    let published = s.published("finance").await;
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
