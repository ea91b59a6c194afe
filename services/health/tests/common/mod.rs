//! The health evaluator on the real broker, registry and Postgres for one test, driven by clock
//! records the test writes with the real ticker; and real receivers for its notifications.
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use ct_core::{Envelope, envelope::ParseOptions, redact::Redactor};
use ct_health::{Config, ticker::Ticker};
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{PipelineTopics, TestContext, eventually, wire_event};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub struct Scenario {
    pub ctx: TestContext,
    pub topics: PipelineTopics,
    pub config: Config,
    pub schema_id: u32,
    pub producer: FutureProducer,
    pub ticker: Ticker,
    pub pool: PgPool,
    pub stop: CancellationToken,
    pub registry_url: String,
    _registry: CancellationToken,
}

pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a literal time")
}

impl Scenario {
    pub async fn start() -> Scenario {
        Scenario::start_with(|_| {}).await
    }

    /// Starts the evaluator in this process with the test's slice, after `adjust` changed its
    /// configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Scenario {
        let scenario = Scenario::prepare(adjust).await;
        tokio::spawn(ct_health::run(scenario.config.clone(), scenario.stop.clone()));
        scenario
    }

    /// The test's slice and the evaluator's configuration, without starting it (a test that runs
    /// the binary starts it itself).
    pub async fn prepare(adjust: impl FnOnce(&mut Config)) -> Scenario {
        let ctx = TestContext::new();
        let topics = ctx.pipeline_topics().await;
        let (registry_url, schema_id, registry) =
            ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &topics.events)
                .await
                .expect("registry");
        let mut config = Config::for_slice(&ctx.slice(&topics, &registry_url));
        adjust(&mut config);
        let stop = CancellationToken::new();
        let ticker = Ticker::connect(&ctx.kafka, RegistryClient::new(&registry_url), &config.clock_topics())
            .await
            .expect("ticker");
        let pool = ct_platform::postgres::connect(&ctx.health_postgres()).await.expect("postgres");
        let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
        Scenario { ctx, topics, config, schema_id, producer, ticker, pool, stop, registry_url, _registry: registry }
    }

    /// Writes an event straight to the log (as the edge would have, received `delay_s` after its
    /// `ts`), bypassing the edge's refusals on purpose.
    pub async fn log(&self, body: serde_json::Value, delay_s: i64) {
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

    pub async fn heartbeat(&self, system: &str, ts: &str) {
        let id = format!("hb-{system}-{ts}");
        self.log(
            serde_json::json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": system,
                               "payload": {"systemId": system}}),
            1,
        )
        .await;
    }

    /// Writes the tick of `minute` and waits until the evaluator has evaluated it.
    pub async fn tick(&self, minute: &str) {
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

    /// Acknowledges an alert as the read API does: a `ct.v1.AlertAudit` record on the audit topic.
    pub async fn acknowledge(&self, alert_id: &str) {
        self.act(alert_id, ct_core::alerting::ActionKind::Ack, None).await;
    }

    /// Silences alerts of `rule` between two clock minutes, as `POST /silences` does.
    pub async fn silence(&self, rule: &str, starts_at: &str, ends_at: &str) {
        let spec = ct_core::alerting::SilenceSpec {
            rule: Some(rule.to_owned()),
            system_id: None,
            starts_at: at(starts_at),
            ends_at: at(ends_at),
        };
        self.act(&format!("silence-{rule}"), ct_core::alerting::ActionKind::Silence, Some(spec)).await;
    }

    async fn act(
        &self,
        alert_id: &str,
        kind: ct_core::alerting::ActionKind,
        silence: Option<ct_core::alerting::SilenceSpec>,
    ) {
        let registry = RegistryClient::new(&self.registry_url);
        let subject = format!("{}-{}", self.topics.audit, ct_core::alerting::ACTION_RECORD);
        let schema_id = registry.register(&subject, ct_core::alerting::ACTION_SCHEMA_JSON).await.expect("register");
        let action = ct_core::alerting::Action {
            audit_id: format!("audit-{alert_id}"),
            alert_id: alert_id.to_owned(),
            action: kind,
            actor: "operator:test".into(),
            at: Utc::now(),
            reason: "on it".into(),
            silence,
        };
        let mut value = Vec::new();
        ct_core::avro::wire::write_header(schema_id, &mut value);
        value.extend(ct_core::alerting::encode_action(&action).expect("encode"));
        self.producer
            .send(FutureRecord::to(&self.topics.audit).key(alert_id).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("the broker takes the action");
    }

    pub async fn status(&self, system: &str) -> (String, String, String) {
        sqlx::query_as("SELECT status, reason, message FROM statuses WHERE system_id = $1")
            .bind(system)
            .fetch_one(&self.pool)
            .await
            .expect("a status row for every catalogued system")
    }

    pub async fn history(&self, system: &str) -> Vec<(DateTime<Utc>, String, Option<String>)> {
        sqlx::query_as("SELECT at, status, previous FROM history WHERE system_id = $1 ORDER BY at")
            .bind(system)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}
