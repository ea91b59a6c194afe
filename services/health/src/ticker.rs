//! The clock's writer: one `ct.clock.v1` record per wall-clock minute, carrying the events
//! topic's end offsets at that moment. The only place in the evaluator that reads the wall clock.
//! Idempotent by design: ticks are keyed by minute, the evaluator skips a minute it has already
//! evaluated, and after a restart the ticker continues from the last tick in the topic.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use ct_core::clock::{self, Tick};
use ct_platform::{config::KafkaConfig, kafka, registry::RegistryClient};
use rdkafka::{
    Message,
    consumer::BaseConsumer,
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("registry: {0}")]
    Registry(#[from] ct_platform::registry::RegistryError),
    #[error("encoding the tick: {0}")]
    Codec(#[from] ct_core::avro::CodecError),
    #[error("the clock topic `{topic}` has {partitions} partitions; ticks need one, in order")]
    Partitions { topic: String, partitions: i32 },
}

/// The topic ticks go to, and the topics whose end offsets each tick carries.
#[derive(Debug, Clone)]
pub struct ClockTopics {
    pub clock: String,
    pub events: String,
    /// Empty: none (ticks then carry no audit offsets).
    pub audit: String,
    /// The status-change topic (the outbox's); empty: none.
    pub health: String,
}

pub struct Ticker {
    kafka: KafkaConfig,
    /// Asks the broker for end offsets each minute (one client for the ticker's life).
    offsets: std::sync::Arc<BaseConsumer>,
    producer: FutureProducer,
    registry: RegistryClient,
    schema_id: u32,
    topics: ClockTopics,
}

impl Ticker {
    /// Registers the tick schema under the clock topic's subject and checks the topic.
    pub async fn connect(
        kafka: &KafkaConfig,
        registry: RegistryClient,
        topics: &ClockTopics,
    ) -> Result<Ticker, TickError> {
        let clock_topic = topics.clock.as_str();
        let partitions = kafka::partition_count_async(kafka, clock_topic, TIMEOUT).await?.unwrap_or(0);
        if partitions != 1 {
            return Err(TickError::Partitions { topic: clock_topic.to_owned(), partitions });
        }
        let subject = ct_platform::registry::value_subject(clock_topic);
        let schema_id = registry.register(&subject, clock::TICK_SCHEMA_JSON).await?;
        Ok(Ticker {
            kafka: kafka.clone(),
            offsets: std::sync::Arc::new(kafka::client_config(kafka).create()?),
            producer: kafka::idempotent_producer(kafka, TIMEOUT)?,
            registry,
            schema_id,
            topics: topics.clone(),
        })
    }

    /// Writes the tick of `minute` with the end offsets of the audit and events topics as they
    /// are now, once the broker acknowledged it.
    pub async fn tick(&self, minute: DateTime<Utc>) -> Result<Tick, TickError> {
        let (offsets, topics) = (std::sync::Arc::clone(&self.offsets), self.topics.clone());
        let (audit_end, health_end, events_end) = blocking(move || {
            let ends = |topic: &str| {
                if topic.is_empty() { Ok(Vec::new()) } else { kafka::end_offsets(&offsets, topic, TIMEOUT) }
            };
            // Events last: whatever the other topics hold by now was decided from events below it.
            Ok::<_, rdkafka::error::KafkaError>((
                ends(&topics.audit)?,
                ends(&topics.health)?,
                kafka::end_offsets(&offsets, &topics.events, TIMEOUT)?,
            ))
        })
        .await?;
        let tick = Tick {
            minute: clock::minute_of(minute),
            events_topic: self.topics.events.clone(),
            events_end,
            written_at: Utc::now(),
            audit_topic: self.topics.audit.clone(),
            audit_end,
            health_topic: self.topics.health.clone(),
            health_end,
        };
        let mut value = Vec::new();
        ct_core::avro::wire::write_header(self.schema_id, &mut value);
        value.extend(clock::encode_tick(&tick)?);
        let key = tick.key();
        self.producer
            .send(FutureRecord::to(&self.topics.clock).partition(0).key(&key).payload(&value), TIMEOUT)
            .await
            .map_err(|(error, _)| error)?;
        Ok(tick)
    }

    /// The minute of the last tick in the clock topic.
    pub async fn last_minute(&self) -> Result<Option<DateTime<Utc>>, TickError> {
        let (kafka, topic) = (self.kafka.clone(), self.topics.clock.clone());
        let Some(message) = blocking(move || kafka::last_record(&kafka, &topic, 0, TIMEOUT)).await? else {
            return Ok(None);
        };
        let Some(value) = message.payload() else { return Ok(None) };
        Ok(Some(self.registry.decode_with(value, clock::decode_tick).await?.minute))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// The minutes to write after `last` when the wall clock says `now`: each missed minute up to
/// `max_catch_up`, then only the current one.
pub fn due(last: Option<DateTime<Utc>>, now: DateTime<Utc>, max_catch_up: i64) -> Vec<DateTime<Utc>> {
    let now = clock::minute_of(now);
    match last {
        Some(last) if last >= now => Vec::new(),
        Some(last) if (now - last).num_minutes() <= max_catch_up => {
            (1..=(now - last).num_minutes()).map(|m| last + TimeDelta::minutes(m)).collect()
        }
        _ => vec![now],
    }
}

/// Writes a tick for every new minute until `shutdown`; a failure is logged and retried.
pub async fn run(ticker: Ticker, check_interval: Duration, max_catch_up: i64, shutdown: CancellationToken) {
    let mut last = None;
    let mut known = false;
    let mut failing = false;
    while !shutdown.is_cancelled() {
        let outcome = async {
            if !known {
                last = ticker.last_minute().await?;
                known = true;
            }
            for minute in due(last, Utc::now(), max_catch_up) {
                ticker.tick(minute).await?;
                last = Some(minute);
                metrics::counter!("ct_health_ticks_written_total").increment(1);
            }
            Ok::<_, TickError>(())
        }
        .await;
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("The ticker writes ticks again.");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "The ticker could not write a tick; it keeps trying.");
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(check_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn missed_minutes_are_written_one_by_one_up_to_the_limit() {
        assert_eq!(due(None, at("2026-03-03T11:16:42Z"), 60), vec![at("2026-03-03T11:16:00Z")]);
        assert_eq!(due(Some(at("2026-03-03T11:16:00Z")), at("2026-03-03T11:16:59Z"), 60), Vec::<DateTime<Utc>>::new());
        assert_eq!(
            due(Some(at("2026-03-03T11:14:00Z")), at("2026-03-03T11:16:01Z"), 60),
            vec![at("2026-03-03T11:15:00Z"), at("2026-03-03T11:16:00Z")]
        );
        assert_eq!(
            due(Some(at("2026-03-03T08:00:00Z")), at("2026-03-03T11:16:01Z"), 60),
            vec![at("2026-03-03T11:16:00Z")]
        );
        assert_eq!(
            due(Some(at("2026-03-03T12:00:00Z")), at("2026-03-03T11:16:01Z"), 60),
            Vec::<DateTime<Utc>>::new(),
            "a clock set back"
        );
    }
}
