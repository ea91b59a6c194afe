//! The log's clock (design invariant 10): a `ct.clock.v1` record per minute. A tick also carries
//! how far the events topic reached when it was written, so an evaluator can wait until it has
//! stored exactly those events and use nothing beyond them: the same ticks over the same log give
//! the same statuses, live or rebuilt, however the two topics interleave when read.

use std::sync::LazyLock;

use apache_avro::Schema;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::CodecError;

/// Field order must equal `schemas-avro/ct.v1.ClockTick.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub minute: DateTime<Utc>,
    pub events_topic: String,
    /// End offset of each partition of `events_topic`, by partition number.
    pub events_end: Vec<i64>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub written_at: DateTime<Utc>,
    /// The audit topic whose offsets follow ("" when the ticker knows none).
    #[serde(default)]
    pub audit_topic: String,
    /// End offset of each partition of `audit_topic`, by partition number.
    #[serde(default)]
    pub audit_end: Vec<i64>,
    /// The status-change topic whose offsets follow ("" when the ticker knows none).
    #[serde(default)]
    pub health_topic: String,
    /// End offset of each partition of `health_topic`, by partition number.
    #[serde(default)]
    pub health_end: Vec<i64>,
}

impl Tick {
    /// The record key: the minute, e.g. `2026-03-03T11:16Z` (design §5: keyed by tick minute).
    pub fn key(&self) -> String {
        self.minute.format("%Y-%m-%dT%H:%MZ").to_string()
    }
}

/// The start of the minute holding `at`.
pub fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

pub const TICK_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.ClockTick.avsc");

static TICK_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(TICK_SCHEMA_JSON).expect("schemas-avro/ct.v1.ClockTick.avsc is valid Avro"));

pub fn tick_schema() -> &'static Schema {
    &TICK_SCHEMA
}

pub fn encode_tick(tick: &Tick) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(tick_schema(), tick)
}

pub fn decode_tick(writer: &Schema, datum: &[u8]) -> Result<Tick, CodecError> {
    crate::avro::decode_record(writer, tick_schema(), datum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_are_keyed_by_minute() {
        let tick = Tick {
            minute: minute_of("2026-03-03T11:16:42.5Z".parse().unwrap()),
            events_topic: "ct.events.v1".into(),
            events_end: vec![10, 0, 7],
            written_at: "2026-03-03T11:17:00.001Z".parse().unwrap(),
            audit_topic: "ct.audit.v1".into(),
            audit_end: vec![4],
            health_topic: "ct.health.v1".into(),
            health_end: vec![2],
        };
        assert_eq!(tick.key(), "2026-03-03T11:16Z");
        assert_eq!(decode_tick(tick_schema(), &encode_tick(&tick).unwrap()).unwrap(), tick);
    }

    #[test]
    fn ticks_written_before_the_audit_offsets_read_as_none() {
        let old = r#"{"type": "record", "name": "ClockTick", "namespace": "ct.v1", "fields": [
            {"name": "minute", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "events_topic", "type": "string"},
            {"name": "events_end", "type": {"type": "array", "items": "long"}},
            {"name": "written_at", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}"#;
        let old = Schema::parse_str(old).unwrap();
        #[derive(Serialize)]
        struct OldTick {
            #[serde(with = "chrono::serde::ts_microseconds")]
            minute: DateTime<Utc>,
            events_topic: String,
            events_end: Vec<i64>,
            #[serde(with = "chrono::serde::ts_microseconds")]
            written_at: DateTime<Utc>,
        }
        let at: DateTime<Utc> = "2026-03-03T11:16:00Z".parse().unwrap();
        let datum = crate::avro::encode_record(
            &old,
            &OldTick { minute: at, events_topic: "e".into(), events_end: vec![1], written_at: at },
        )
        .unwrap();
        let tick = decode_tick(&old, &datum).unwrap();
        assert_eq!((tick.audit_topic.as_str(), tick.audit_end.len()), ("", 0));
    }
}
