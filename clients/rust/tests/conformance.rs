//! The shared conformance vectors (`clients/conformance/vectors.json`).

use std::time::Duration;

use ct_client::{Outcome, Scheme, backoff_ceiling, classify, retry_after, sign};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_signature_vector() {
    for v in vectors()["signatures"].as_array().unwrap() {
        let scheme: Scheme = v["scheme"].as_str().unwrap().parse().unwrap();
        let headers = sign(
            scheme,
            v["secret"].as_str().unwrap(),
            v["body"].as_str().unwrap().as_bytes(),
            v["timestamp"].as_i64().unwrap_or(0),
            v["id"].as_str().unwrap_or(""),
        );
        let got: serde_json::Map<String, Value> =
            headers.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
        assert_eq!(Value::Object(got), v["headers"], "{}", v["name"]);
    }
}

#[test]
fn retry_after_backoff_and_answers() {
    let v = vectors();
    let cap = Duration::from_secs(30);
    for r in v["retryAfter"].as_array().unwrap() {
        let now = chrono::DateTime::from_timestamp(r["nowUnix"].as_i64().unwrap(), 0).unwrap();
        let got = retry_after(r["header"].as_str().unwrap(), now, cap).map(|d| d.as_millis() as u64);
        assert_eq!(got, r["expectedMs"].as_u64(), "{}", r["header"]);
    }
    for b in v["backoffCeilingMs"].as_array().unwrap() {
        let ceiling = backoff_ceiling(
            b["attempt"].as_u64().unwrap() as u32,
            Duration::from_millis(b["baseMs"].as_u64().unwrap()),
            Duration::from_millis(b["capMs"].as_u64().unwrap()),
        );
        assert_eq!(ceiling.as_millis() as u64, b["expectedMs"].as_u64().unwrap());
    }
    for a in v["answers"].as_array().unwrap() {
        let outcome: Outcome = classify(a["status"].as_u64().unwrap() as u16);
        assert_eq!(outcome.as_str(), a["outcome"].as_str().unwrap(), "{}", a["status"]);
    }
}
