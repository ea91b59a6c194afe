//! Avro through the Confluent wire format, per event (`cargo bench -p ct-core --bench codec`).
//! Pure CPU: no broker, no registry.
//!
//! On the same events in the same run, interleaved, `CT_BENCH_ROUNDS` (default 7) rounds of
//! `CT_BENCH_EVENTS` (default 100,000) events each, medians printed in ns per event:
//! - encode: the 5-byte header and the datum, serde straight into Avro (what the edge does);
//! - baseline: apache-avro's generic path, `to_avro_datum` of an `apache_avro::types::Value`
//!   (validation, then encoding), with the Value already built; the clone it needs is timed
//!   separately and subtracted, so the baseline is a lower bound of that path;
//! - decode: header split and the datum into an `Envelope`, writer schema cached (the consumers);
//! - baseline: `from_avro_datum` into a Value alone, the standard reader that rebuilds the
//!   writer's name table on every call.
//!
//! Two workloads: a typical event (`finance.invoice.generated`, the seeds' smoke test) and the
//! whole taxonomy in turn.
//!
//! A second table times reading a request body (the producer's JSON bytes) into a document, and
//! dropping it: `ct_core::json::Json` (what the edge does) against `serde_json::Value` (what it did
//! before), interleaved in the same rounds; and the whole parse into an `Envelope` through `Json`,
//! redaction included.
#![allow(clippy::print_stdout)]

use std::{hint::black_box, io::Cursor, time::Instant};

use chrono::Duration;
use ct_core::{
    Envelope, EventType,
    avro::{self, wire},
    envelope::ParseOptions,
    json::Json,
    redact::Redactor,
    samples::sample,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn parse(t: EventType) -> Envelope {
    let redactor = Redactor::new("bench");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T10:00:01Z".parse().expect("time"),
        max_future_skew: Duration::minutes(5),
    };
    let mut event = Envelope::parse(&sample(t), &options).expect("valid sample").0;
    event.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
    event
}

/// ns per event of `f` over `n` events taken in turn from `items`.
fn per_event<T>(items: &[T], n: usize, mut f: impl FnMut(&T)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        f(&items[i % items.len()]);
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

struct Workload {
    name: &'static str,
    events: Vec<Envelope>,
    records: Vec<Vec<u8>>,
    values: Vec<apache_avro::types::Value>,
}

impl Workload {
    fn new(name: &'static str, types: &[EventType]) -> Self {
        let events: Vec<Envelope> = types.iter().map(|t| parse(*t)).collect();
        let records = events
            .iter()
            .map(|e| {
                let mut record = Vec::new();
                wire::write_header(1, &mut record);
                avro::encode_event(e, &mut record).expect("encode");
                record
            })
            .collect::<Vec<_>>();
        let values = records
            .iter()
            .map(|r| {
                let (_, datum) = wire::split(r).expect("wire");
                apache_avro::from_avro_datum(avro::event_schema(), &mut Cursor::new(datum), None).expect("decode")
            })
            .collect();
        Self { name, events, records, values }
    }
}

/// Reading a body into a document both ways (what changed), and the whole parse into an
/// `Envelope` through `Json` (what the edge does per event).
fn parse_table(rounds: usize, n: usize) {
    let redactor = Redactor::new("bench");
    let options = ParseOptions {
        redactor: &redactor,
        received_at: "2025-09-27T10:00:01Z".parse().expect("time"),
        max_future_skew: Duration::minutes(5),
    };
    let workloads: [(&str, &[EventType]); 2] = [
        ("typical (finance.invoice.generated)", &[EventType::FinanceInvoiceGenerated]),
        ("every event type in turn", &EventType::ALL),
    ];
    println!("\nrequest body → document, and body → Envelope (redaction included), medians in ns per event\n");
    println!("| workload | body bytes | read into Json | read into serde_json::Value | ratio | whole parse |");
    println!("|---|---|---|---|---|---|");
    for (name, types) in workloads {
        let bodies: Vec<Vec<u8>> = types.iter().map(|t| sample(*t).to_string().into_bytes()).collect();
        let mut samples: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            samples[0].push(per_event(&bodies, n, |body| {
                black_box(Json::from_slice(body).expect("json"));
            }));
            samples[1].push(per_event(&bodies, n, |body| {
                black_box(serde_json::from_slice::<serde_json::Value>(body).expect("json"));
            }));
            samples[2].push(per_event(&bodies, n, |body| {
                let json = Json::from_slice(body).expect("json");
                black_box(Envelope::parse_json(&json, &options).expect("valid"));
            }));
        }
        let [borrowed, value, whole] = samples.map(median);
        let bytes = bodies.iter().map(Vec::len).sum::<usize>() / bodies.len();
        println!("| {name} | {bytes} | {borrowed:.0} | {value:.0} | {:.2}x | {whole:.0} |", value / borrowed);
    }
}

fn main() {
    let rounds = env_or("CT_BENCH_ROUNDS", 7);
    let n = env_or("CT_BENCH_EVENTS", 100_000);
    let schema = avro::event_schema();
    let workloads = [
        Workload::new("typical (finance.invoice.generated)", &[EventType::FinanceInvoiceGenerated]),
        Workload::new("every event type in turn", &EventType::ALL),
    ];
    println!("codec: {rounds} rounds of {n} events, medians in ns per event\n");
    println!(
        "| workload | bytes | encode | baseline: Value path | ratio | decode | baseline: from_avro_datum | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for w in &workloads {
        let mut samples: [Vec<f64>; 5] = Default::default();
        let mut out = Vec::with_capacity(512);
        for _ in 0..rounds {
            samples[0].push(per_event(&w.events, n, |e| {
                out.clear();
                wire::write_header(1, &mut out);
                avro::encode_event(e, &mut out).expect("encode");
                black_box(&out);
            }));
            samples[1].push(per_event(&w.values, n, |v| {
                black_box(apache_avro::to_avro_datum(schema, v.clone()).expect("encode"));
            }));
            samples[2].push(per_event(&w.values, n, |v| {
                black_box(v.clone());
            }));
            samples[3].push(per_event(&w.records, n, |r| {
                let (_, datum) = wire::split(r).expect("wire");
                black_box(avro::decode_event_from(schema, true, datum).expect("decode"));
            }));
            samples[4].push(per_event(&w.records, n, |r| {
                let (_, datum) = wire::split(r).expect("wire");
                black_box(apache_avro::from_avro_datum(schema, &mut Cursor::new(datum), None).expect("decode"));
            }));
        }
        let [encode, value_path, clone, decode, standard] = samples.map(median);
        let value_path = value_path - clone;
        let bytes = w.records.iter().map(Vec::len).sum::<usize>() / w.records.len();
        println!(
            "| {} | {bytes} | {encode:.0} | {value_path:.0} | {:.1}x | {decode:.0} | {standard:.0} | {:.1}x |",
            w.name,
            value_path / encode,
            standard / decode
        );
    }
    parse_table(rounds, n);
}
