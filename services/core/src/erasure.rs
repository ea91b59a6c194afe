//! Erasure of one producer's data (`ct erase`): a `ct.v1.Erasure` record on the audit topic says
//! "the payloads of `source`'s events before `before` are gone". The log keeps the records (it is
//! append-only); every read model that holds payloads keeps the event's row, so counts and
//! positions stay true, with the payload replaced by [`erased_payload`], whichever it reads first,
//! the erasure or the event. A rebuild and a restore therefore give the erased rows again.

use std::sync::LazyLock;

use apache_avro::Schema;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::CodecError;

/// Field order must equal `schemas-avro/ct.v1.Erasure.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub erasure_id: String,
    pub source: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub before: DateTime<Utc>,
    pub actor: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub reason: String,
}

impl Erasure {
    /// Does it erase an event of `source` at `ts`?
    pub fn covers(&self, source: &str, ts: DateTime<Utc>) -> bool {
        self.source == source && ts < self.before
    }
}

/// What an erased event's payload becomes.
pub fn erased_payload() -> serde_json::Value {
    serde_json::json!({"erased": true})
}

pub const SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.Erasure.avsc");

static SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(SCHEMA_JSON).expect("schemas-avro/ct.v1.Erasure.avsc is valid Avro"));

pub fn schema() -> &'static Schema {
    &SCHEMA
}

/// The Avro datum (no wire header).
pub fn encode(erasure: &Erasure) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(schema(), erasure)
}

/// Decodes an audit-topic datum written with `writer`: `None` when it is another record type.
pub fn decode(writer: &Schema, datum: &[u8]) -> Result<Option<Erasure>, CodecError> {
    if crate::avro::record_name(writer).as_deref() != Some("ct.v1.Erasure") {
        return Ok(None);
    }
    crate::avro::decode_record(writer, schema(), datum).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erasure() -> Erasure {
        Erasure {
            erasure_id: "0193".to_owned(),
            source: "finance".to_owned(),
            before: "2026-01-01T00:00:00Z".parse().unwrap(),
            actor: "sre".to_owned(),
            at: "2026-11-30T10:00:00Z".parse().unwrap(),
            reason: "request 42".to_owned(),
        }
    }

    #[test]
    fn it_covers_only_its_source_before_its_time() {
        let e = erasure();
        assert!(e.covers("finance", "2025-12-31T23:59:59Z".parse().unwrap()));
        assert!(!e.covers("finance", "2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(!e.covers("portal", "2025-06-01T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn it_round_trips_and_other_audit_records_are_not_erasures() {
        let datum = encode(&erasure()).unwrap();
        assert_eq!(decode(schema(), &datum).unwrap(), Some(erasure()));
        let other = crate::dlq::audit_schema();
        assert_eq!(decode(other, &datum).unwrap(), None);
    }
}
