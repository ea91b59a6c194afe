//! Every event type goes through its schema and back unchanged, and the Rust types agree with
//! `schemas-avro/` (union order, type names).

use apache_avro::Schema;
use chrono::Duration;
use ct_core::{
    Envelope, EventType,
    avro::{decode_event, encode_event, event_schema, parse_schema, wire},
    envelope::ParseOptions,
    redact::Redactor,
};
use serde_json::Value;

use ct_core::samples::sample;

fn parse(body: &Value) -> Envelope {
    let redactor = Redactor::new("test");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T10:00:01Z".parse().unwrap(),
        max_future_skew: Duration::minutes(5),
    };
    Envelope::parse(body, &options).unwrap_or_else(|e| panic!("{body}: {e}")).0
}

#[test]
fn every_event_type_round_trips_through_its_schema() {
    for t in EventType::ALL {
        let mut event = parse(&sample(t));
        event.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
        let mut datum = Vec::new();
        encode_event(&event, &mut datum).unwrap_or_else(|e| panic!("{t}: {e}"));
        let decoded = decode_event(event_schema(), &datum).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(decoded, event, "{t}");
    }
}

#[test]
fn union_branches_follow_the_taxonomy_order() {
    let Schema::Record(record) = event_schema() else { panic!("Event is a record") };
    let payload = record.fields.iter().find(|f| f.name == "payload").expect("payload field");
    let Schema::Union(union) = &payload.schema else { panic!("payload is a union") };
    let branch_names: Vec<String> = union
        .variants()
        .iter()
        .map(|s| match s {
            Schema::Record(r) => r.name.fullname(None),
            other => panic!("non-record branch {other:?}"),
        })
        .collect();
    let expected: Vec<String> = EventType::ALL.iter().map(|t| t.avro_record().to_owned()).collect();
    assert_eq!(branch_names, expected);
}

#[test]
fn an_older_writer_schema_is_resolved_against_the_current_one() {
    // A writer that predates `ingest.redactions` and `ingest.trace_id`: BACKWARD evolution.
    let old = event_schema_json_without(&["redactions", "trace_id"]);
    let writer = parse_schema(&old).unwrap();
    let event = parse(&sample(EventType::SystemHeartbeat));
    let mut datum = Vec::new();
    #[derive(serde::Serialize)]
    struct OldIngest {
        received_at: i64,
        attempt: i32,
        status: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Old<'a> {
        event_id: &'a str,
        #[serde(rename = "type")]
        t: &'a str,
        ts: i64,
        source: ct_core::Source,
        correlation_id: Option<&'a str>,
        payload: &'a ct_core::Payload,
        ingest: OldIngest,
    }
    let old_record = Old {
        event_id: event.event_id(),
        t: event.event_type().as_str(),
        ts: event.ts().timestamp_micros(),
        source: event.source(),
        correlation_id: event.correlation_id(),
        payload: event.payload(),
        ingest: OldIngest {
            received_at: event.ingest().received_at.timestamp_micros(),
            attempt: 1,
            status: "accepted",
        },
    };
    apache_avro::write_avro_datum_ref(&writer, &old_record, &mut datum).unwrap();
    let decoded = decode_event(&writer, &datum).unwrap();
    assert_eq!(decoded.event_id(), event.event_id());
    assert_eq!(decoded.ingest().redactions, 0);
    assert_eq!(decoded.ingest().trace_id, None);
}

fn event_schema_json_without(ingest_fields: &[&str]) -> String {
    let mut schema: Value = serde_json::from_str(ct_core::avro::event_schema_json()).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    let ingest = fields.iter_mut().find(|f| f["name"] == "ingest").unwrap();
    ingest["type"]["fields"].as_array_mut().unwrap().retain(|f| !ingest_fields.contains(&f["name"].as_str().unwrap()));
    schema.to_string()
}

#[test]
fn confluent_framing_carries_the_schema_id() {
    let event = parse(&sample(EventType::CiWorkflowFailed));
    let mut record = Vec::new();
    wire::write_header(42, &mut record);
    encode_event(&event, &mut record).unwrap();
    let (id, datum) = wire::split(&record).unwrap();
    assert_eq!(id, 42);
    assert_eq!(decode_event(event_schema(), datum).unwrap(), event);
}
