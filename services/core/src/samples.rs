//! One valid JSON body per event type, with every optional field that type has: shared by the
//! schema round-trip tests and the codec benchmark so both exercise the whole taxonomy. The bodies
//! are the records' `ct.example` in `schemas-avro/`.

use serde_json::{Value, json};

use crate::EventType;

include!(concat!(env!("OUT_DIR"), "/samples.rs"));

/// A valid body of type `t` (id `evt_<type>`), as a producer would send it.
pub fn sample(t: EventType) -> Value {
    let (_, source, payload) =
        EXAMPLES.iter().find(|(each, _, _)| *each == t).expect("build.rs gives every type its ct.example");
    let payload: Value = serde_json::from_str(payload).expect("build.rs wrote the example as JSON");
    json!({"eventId": format!("evt_{}", t.as_str()), "type": t.as_str(), "ts": "2025-09-27T10:00:00.123456Z",
           "source": source, "correlationId": "run_1", "payload": payload})
}
