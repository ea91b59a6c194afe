//! The Avro codec of `schemas-avro/` and the Confluent wire format.
//!
//! `schemas-avro/` holds one `.avsc` per named type; [`compose`] inlines the referenced types into
//! one self-contained schema per topic value (what is registered under `<topic>-value`).
//! Events are encoded through serde straight into Avro binary by [`binary`], positionally, without
//! walking the schema (the event types mirror it; a test holds the bytes equal to apache-avro's
//! schema-aware `write_avro_datum_ref`), not through `apache_avro::types::Value`. Each named type
//! is used once, because that schema-aware encoder cannot follow references to an already
//! defined name.

use std::{collections::HashSet, io::Cursor, sync::LazyLock};

use apache_avro::{Schema, from_avro_datum, from_avro_datum_schemata, from_value};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    envelope::{Envelope, Ingest},
    payload::Payload,
    source::Source,
};

pub mod binary;

include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("schema file for `{0}` is missing")]
    MissingSchema(String),
    #[error("schema `{name}` is not valid JSON: {source}")]
    SchemaJson { name: String, source: serde_json::Error },
    #[error("invalid Avro schema: {0}")]
    Schema(#[source] Box<apache_avro::Error>),
    #[error("Avro encoding failed: {0}")]
    Encode(#[source] Box<apache_avro::Error>),
    #[error("Avro encoding failed: {0}")]
    Binary(#[from] binary::BinaryError),
    #[error("Avro decoding failed: {0}")]
    Decode(#[source] Box<apache_avro::Error>),
    #[error("record is inconsistent: {0}")]
    Inconsistent(String),
    #[error("not in the Confluent wire format: {0}")]
    Wire(&'static str),
}

fn file(name: &str) -> Result<Value, CodecError> {
    let (_, text) =
        SCHEMA_FILES.iter().find(|(n, _)| *n == name).ok_or_else(|| CodecError::MissingSchema(name.to_owned()))?;
    serde_json::from_str(text).map_err(|source| CodecError::SchemaJson { name: name.to_owned(), source })
}

fn full_name(object: &serde_json::Map<String, Value>) -> Option<String> {
    let name = object.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    Some(match object.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_owned(),
    })
}

fn inline(value: &mut Value, defined: &mut HashSet<String>) -> Result<(), CodecError> {
    match value {
        Value::String(name) if SCHEMA_FILES.iter().any(|(n, _)| n == name) && !defined.contains(name.as_str()) => {
            *value = file(name)?;
            inline(value, defined)
        }
        Value::Array(branches) => branches.iter_mut().try_for_each(|b| inline(b, defined)),
        Value::Object(object) => {
            // `ct.*` attributes feed the generators (build.rs); the registered schema leaves them out.
            object.retain(|key, _| !key.starts_with("ct."));
            if let Some(name) = full_name(object) {
                defined.insert(name);
            }
            if let Some(Value::Array(fields)) = object.get_mut("fields") {
                for field in fields {
                    if let Some(field) = field.as_object_mut() {
                        field.retain(|key, _| !key.starts_with("ct."));
                    }
                    if let Some(t) = field.get_mut("type") {
                        inline(t, defined)?;
                    }
                }
            }
            for key in ["type", "items", "values"] {
                if let Some(inner) = object.get_mut(key).filter(|v| !v.is_string() || !is_primitive(v)) {
                    inline(inner, defined)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn is_primitive(v: &Value) -> bool {
    matches!(
        v.as_str(),
        Some(
            "null"
                | "boolean"
                | "int"
                | "long"
                | "float"
                | "double"
                | "bytes"
                | "string"
                | "record"
                | "enum"
                | "fixed"
                | "array"
                | "map"
        )
    )
}

/// The self-contained JSON schema of the named root type, with every referenced type inlined.
pub fn compose(root: &str) -> Result<String, CodecError> {
    let mut value = file(root)?;
    inline(&mut value, &mut HashSet::new())?;
    Ok(value.to_string())
}

static EVENT_SCHEMA_JSON: LazyLock<String> =
    LazyLock::new(|| compose("ct.v1.Event").expect("schemas-avro/ct.v1.Event.avsc composes"));
static EVENT_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(&EVENT_SCHEMA_JSON).expect("schemas-avro/ct.v1.Event.avsc is valid Avro"));

/// The value schema of `ct.events.v1` as registered (self-contained JSON).
pub fn event_schema_json() -> &'static str {
    &EVENT_SCHEMA_JSON
}

pub fn event_schema() -> &'static Schema {
    &EVENT_SCHEMA
}

pub fn parse_schema(json: &str) -> Result<Schema, CodecError> {
    Schema::parse_str(json).map_err(|e| CodecError::Schema(Box::new(e)))
}

fn micros(ts: DateTime<Utc>) -> i64 {
    ts.timestamp_micros()
}

fn from_micros(field: &str, micros: i64) -> Result<DateTime<Utc>, CodecError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| CodecError::Inconsistent(format!("{field} out of range")))
}

/// Field order must equal `ct.v1.Event`'s.
#[derive(Serialize)]
struct EventRecordRef<'a> {
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    ts: i64,
    source: Source,
    correlation_id: Option<&'a str>,
    payload: &'a Payload,
    ingest: IngestRecordRef<'a>,
}

#[derive(Serialize)]
struct IngestRecordRef<'a> {
    received_at: i64,
    attempt: i32,
    status: &'a str,
    redactions: i32,
    trace_id: Option<&'a str>,
}

#[derive(Deserialize)]
struct EventRecord {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    ts: i64,
    source: Source,
    correlation_id: Option<String>,
    payload: Payload,
    ingest: IngestRecord,
}

#[derive(Deserialize)]
struct IngestRecord {
    received_at: i64,
    attempt: i32,
    status: String,
    redactions: i32,
    trace_id: Option<String>,
}

impl<'a> EventRecordRef<'a> {
    fn of(event: &'a Envelope) -> Self {
        EventRecordRef {
            event_id: &event.event_id,
            event_type: event.event_type().as_str(),
            ts: micros(event.ts),
            source: event.source,
            correlation_id: event.correlation_id.as_deref(),
            payload: &event.payload,
            ingest: IngestRecordRef {
                received_at: micros(event.ingest.received_at),
                attempt: event.ingest.attempt,
                status: &event.ingest.status,
                redactions: event.ingest.redactions,
                trace_id: event.ingest.trace_id.as_deref(),
            },
        }
    }
}

/// Appends the Avro binary datum of `event` (no wire header) to `out`.
pub fn encode_event(event: &Envelope, out: &mut Vec<u8>) -> Result<(), CodecError> {
    Ok(binary::write(&EventRecordRef::of(event), out)?)
}

/// What "the same event" means for idempotency: the SHA-256 (hex) of the event's Avro encoding with
/// the edge's ingest metadata blanked, i.e. of the parsed, validated and redacted event. Two
/// bodies that differ only in whitespace, key order, spelling or number format have one digest,
/// whichever door (`/events`, a batch item, a polled page) they came through.
pub fn content_digest(event: &Envelope) -> Result<String, CodecError> {
    use sha2::Digest as _;
    let mut record = EventRecordRef::of(event);
    record.ingest = IngestRecordRef { received_at: 0, attempt: 0, status: "", redactions: 0, trace_id: None };
    let mut bytes = Vec::with_capacity(256);
    binary::write(&record, &mut bytes)?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// Appends the Avro datum of `event` to `out` and returns its [`content_digest`], from that one
/// encoding: `ingest` is the record's last field, so the digest is the hash of the bytes before
/// it followed by the blanked ingest's five zero bytes (the edge encodes each event once).
pub fn encode_event_with_digest(event: &Envelope, out: &mut Vec<u8>) -> Result<String, CodecError> {
    use sha2::Digest as _;
    /// `received_at` 0, `attempt` 0, `status` "", `redactions` 0, `trace_id` null: one byte each.
    const BLANK_INGEST: [u8; 5] = [0; 5];
    let start = out.len();
    encode_event(event, out)?;
    let body_end = out.len().checked_sub(ingest_encoded_len(&event.ingest)).filter(|end| *end >= start);
    let body_end = body_end.ok_or_else(|| CodecError::Inconsistent("the ingest is longer than the record".into()))?;
    let mut hasher = sha2::Sha256::new();
    hasher.update(&out[start..body_end]);
    hasher.update(BLANK_INGEST);
    Ok(hex::encode(hasher.finalize()))
}

/// Bytes of the Avro encoding of `ingest` (zig-zag varints, length-prefixed strings, a union
/// index), as `encode_event` writes it.
fn ingest_encoded_len(ingest: &Ingest) -> usize {
    fn varint(value: i64) -> usize {
        let zigzag = ((value << 1) ^ (value >> 63)) as u64;
        (64 - zigzag.max(1).leading_zeros() as usize).div_ceil(7)
    }
    let text = |s: &str| varint(s.len() as i64) + s.len();
    varint(micros(ingest.received_at))
        + varint(i64::from(ingest.attempt))
        + text(&ingest.status)
        + varint(i64::from(ingest.redactions))
        + 1
        + ingest.trace_id.as_deref().map_or(0, text)
}

/// The Avro datum (no wire header) of a record that is not an event (audits, clock ticks, health
/// changes): rare records, so apache-avro's `Value` path is fine. `value`'s serde field order must
/// equal `schema`'s.
pub fn encode_record<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, CodecError> {
    let value = apache_avro::to_value(value).map_err(|e| CodecError::Encode(Box::new(e)))?;
    let value = value.resolve(schema).map_err(|e| CodecError::Encode(Box::new(e)))?;
    apache_avro::to_avro_datum(schema, value).map_err(|e| CodecError::Encode(Box::new(e)))
}

/// The full name of a record schema (`ct.v1.DlqAudit`), `None` for any other schema.
pub fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(record) => Some(record.name.fullname(None)),
        _ => None,
    }
}

/// Decodes a datum written with `writer`, resolved against `reader` (the current schema).
pub fn decode_record<T: serde::de::DeserializeOwned>(
    writer: &Schema,
    reader: &Schema,
    datum: &[u8],
) -> Result<T, CodecError> {
    let value =
        from_avro_datum(writer, &mut Cursor::new(datum), Some(reader)).map_err(|e| CodecError::Decode(Box::new(e)))?;
    from_value(&value).map_err(|e| CodecError::Decode(Box::new(e)))
}

/// Decodes an Avro datum written with `writer` into an [`Envelope`], resolving it against the
/// current `ct.v1.Event` schema.
pub fn decode_event(writer: &Schema, datum: &[u8]) -> Result<Envelope, CodecError> {
    decode_event_from(writer, writer == event_schema(), datum)
}

/// [`decode_event`] for callers that already know whether `writer` is the current schema
/// (comparing two schemas costs more than decoding a small record; cache it per schema id).
pub fn decode_event_from(writer: &Schema, writer_is_current: bool, datum: &[u8]) -> Result<Envelope, CodecError> {
    let reader_schema = if writer_is_current { None } else { Some(event_schema()) };
    // `from_avro_datum` rebuilds the writer's name table (hashing every named type) on every call,
    // a tenth of the projector's CPU. Our composed schemas inline every named type and hold no
    // references, so the empty name table of `from_avro_datum_schemata` decodes them; a foreign
    // writer schema with references falls back to the full path.
    let value = from_avro_datum_schemata(writer, Vec::new(), &mut Cursor::new(datum), reader_schema)
        .or_else(|_| from_avro_datum(writer, &mut Cursor::new(datum), reader_schema))
        .map_err(|e| CodecError::Decode(Box::new(e)))?;
    let record: EventRecord = from_value(&value).map_err(|e| CodecError::Decode(Box::new(e)))?;
    if record.event_type != record.payload.event_type().as_str() {
        return Err(CodecError::Inconsistent(format!(
            "type `{}` but payload of `{}`",
            record.event_type,
            record.payload.event_type()
        )));
    }
    Ok(Envelope {
        event_id: record.event_id,
        ts: from_micros("ts", record.ts)?,
        source: record.source,
        correlation_id: record.correlation_id,
        payload: record.payload,
        ingest: Ingest {
            received_at: from_micros("ingest.received_at", record.ingest.received_at)?,
            attempt: record.ingest.attempt,
            status: record.ingest.status,
            redactions: record.ingest.redactions,
            trace_id: record.ingest.trace_id,
        },
    })
}

/// The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro datum.
pub mod wire {
    use super::CodecError;

    pub const MAGIC: u8 = 0;
    pub const HEADER_LEN: usize = 5;

    /// Writes the 5-byte header for `schema_id`; append the datum after it.
    pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
        out.push(MAGIC);
        out.extend_from_slice(&schema_id.to_be_bytes());
    }

    /// Splits a record value into its schema id and Avro datum.
    pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::Wire("shorter than the 5-byte header"));
        }
        if bytes[0] != MAGIC {
            return Err(CodecError::Wire("magic byte is not 0"));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok((id, &bytes[HEADER_LEN..]))
    }
}

#[cfg(test)]
mod tests {
    use super::Envelope;

    #[test]
    fn the_one_encoding_gives_the_same_digest_as_the_blanked_encoding() {
        let redactor = crate::redact::Redactor::new("digest");
        let options = crate::envelope::ParseOptions {
            redactor: &redactor,
            received_at: chrono::Utc::now(),
            max_future_skew: chrono::Duration::days(36_500),
        };
        let mut traced: Vec<Envelope> = crate::EventType::ALL
            .into_iter()
            .map(|t| Envelope::parse(&crate::samples::sample(t), &options).expect("samples are valid").0)
            .collect();
        for (i, event) in traced.iter_mut().enumerate() {
            if i % 2 == 0 {
                event.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
            }
        }
        for event in &traced {
            let mut out = vec![9, 9];
            let digest = super::encode_event_with_digest(event, &mut out).unwrap();
            assert_eq!(digest, super::content_digest(event).unwrap(), "{}", event.event_id());
            let mut plain = Vec::new();
            super::encode_event(event, &mut plain).unwrap();
            assert_eq!(&out[2..], &plain[..], "the datum is unchanged");
        }
    }

    use super::*;

    /// The positional writer and apache-avro's schema-aware one give the same bytes for every
    /// event type, with and without the optional envelope fields.
    #[test]
    fn events_encode_as_the_schema_says() {
        let redactor = crate::redact::Redactor::new("binary");
        let options = crate::envelope::ParseOptions {
            redactor: &redactor,
            // Whole microseconds, as the record keeps them, so the decoded event compares equal.
            received_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            max_future_skew: chrono::Duration::days(36_500),
        };
        let mut multi_block = 0;
        for t in crate::EventType::ALL {
            for traced in [false, true] {
                for correlated in [false, true] {
                    let mut sample = crate::samples::sample(t);
                    if !correlated {
                        sample.as_object_mut().unwrap().remove("correlationId");
                    }
                    // Maps longer than a block (apache-avro writes blocks of 1,025 items).
                    if let Some(payload) = sample["payload"].as_object_mut() {
                        for (key, value) in [("inputs", "v"), ("metrics", "7")] {
                            if payload.contains_key(key) {
                                let entries = (0..2100).map(|i| (format!("k{i:05}"), serde_json::json!(value)));
                                let entries = entries
                                    .map(|(k, v)| if key == "metrics" { (k, serde_json::json!(7)) } else { (k, v) });
                                payload.insert(key.to_owned(), Value::Object(entries.collect()));
                            }
                        }
                    }
                    let mut event = Envelope::parse(&sample, &options).expect("samples are valid").0;
                    if traced {
                        event.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
                    }
                    let mut expected = Vec::new();
                    apache_avro::write_avro_datum_ref(event_schema(), &EventRecordRef::of(&event), &mut expected)
                        .unwrap();
                    let mut positional = Vec::new();
                    encode_event(&event, &mut positional).unwrap();
                    assert_eq!(positional, expected, "{t}, traced {traced}, correlated {correlated}");
                    multi_block += usize::from(positional.len() > 2100 * 6);
                    assert_eq!(decode_event(event_schema(), &positional).unwrap(), event);
                }
            }
        }
        assert!(multi_block > 0, "some event type has a map written in several blocks");
    }

    #[test]
    fn the_event_schema_composes_and_names_each_type_once() {
        let json = event_schema_json();
        for (name, _) in SCHEMA_FILES {
            let short = name.rsplit('.').next().unwrap();
            let definitions = json.matches(&format!("\"name\":\"{short}\"")).count();
            assert_eq!(definitions, 1, "{name} defined {definitions} times");
        }
        assert!(matches!(event_schema(), Schema::Record(_)));
    }

    #[test]
    fn wire_header_round_trips_and_rejects_garbage() {
        let mut out = Vec::new();
        wire::write_header(0x0102_0304, &mut out);
        out.extend_from_slice(b"datum");
        assert_eq!(wire::split(&out).unwrap(), (0x0102_0304, &b"datum"[..]));
        assert!(matches!(wire::split(b"\x01\0\0\0\x01x"), Err(CodecError::Wire("magic byte is not 0"))));
        assert!(matches!(wire::split(b"\0\0"), Err(CodecError::Wire(_))));
    }
}
