//! The event envelope: what producers send, parsed once into a value that is valid by construction.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::Value;

use crate::{
    error::{FieldError, Rule},
    event_type::EventType,
    json::{Json, Object},
    payload::Payload,
    redact::{RedactionReport, Redactor},
    source::Source,
};

/// Longest `eventId` / `correlationId`.
pub const MAX_ID_LEN: usize = 128;

/// Metadata the edge adds when it accepts an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    pub received_at: DateTime<Utc>,
    pub attempt: i32,
    pub status: String,
    pub redactions: i32,
    pub trace_id: Option<String>,
}

/// An accepted event. Fields are private: the only ways in are [`Envelope::parse`] and the Avro
/// decoder, so a value of this type always satisfies the schema rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub(crate) event_id: String,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) source: Source,
    pub(crate) correlation_id: Option<String>,
    pub(crate) payload: Payload,
    pub(crate) ingest: Ingest,
}

/// What parsing needs besides the JSON.
#[derive(Debug, Clone)]
pub struct ParseOptions<'a> {
    pub redactor: &'a Redactor,
    pub received_at: DateTime<Utc>,
    /// How far in the future `ts` may be (clock skew between producer and edge).
    pub max_future_skew: Duration,
}

/// The value under either spelling; both spellings with different values are refused rather than
/// one silently winning (a `null` under one never hides a value under the other).
fn field<'a, 'j>(map: &'a Object<'j>, camel: &str, snake: &str) -> Result<Option<&'a Json<'j>>, FieldError> {
    let value = match (map.get(camel), map.get(snake).filter(|_| snake != camel)) {
        (Some(a), Some(b)) if a != b => return Err(FieldError::conflicting_spellings(camel, camel, snake)),
        (a, b) => a.or(b),
    };
    Ok(value.filter(|v| !v.is_null()))
}

fn parse_id(name: &str, value: Option<&Json<'_>>) -> Result<Option<String>, FieldError> {
    let Some(value) = value else { return Ok(None) };
    let s = value.as_str().ok_or_else(|| FieldError::wrong_type(name, "a string"))?;
    check_id(name, s)?;
    Ok(Some(s.to_owned()))
}

/// The rule of every id in an event (`eventId`, `correlationId`): 1 to 128 of A-Z, a-z, 0-9 and
/// `_-.:`; `name` is the field the error names.
pub fn check_id(name: &str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(name, Rule::NotEmpty, format!("`{name}` must not be empty")));
    }
    if s.len() > MAX_ID_LEN {
        return Err(FieldError::new(name, Rule::MaxLength, format!("`{name}` is longer than {MAX_ID_LEN} characters")));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(FieldError::new(
            name,
            Rule::Format,
            format!("`{name}` may contain only A-Z, a-z, 0-9, '_', '-', '.', ':'"),
        ));
    }
    Ok(())
}

impl Envelope {
    /// Parses a producer's JSON event: envelope fields, the typed payload, source binding and
    /// timestamp skew, redacting PII on the way. The error names the first invalid field.
    pub fn parse(value: &Value, options: &ParseOptions<'_>) -> Result<(Envelope, RedactionReport), FieldError> {
        Self::parse_json(&Json::from(value), options)
    }

    /// [`Envelope::parse`] of a document read by [`Json::from_slice`], which borrows its strings
    /// from the body instead of building a `serde_json::Value` (the edge's path).
    pub fn parse_json(value: &Json<'_>, options: &ParseOptions<'_>) -> Result<(Envelope, RedactionReport), FieldError> {
        let map = value.as_object().ok_or_else(|| FieldError::wrong_type("$", "a JSON object"))?;
        let event_id =
            parse_id("eventId", field(map, "eventId", "event_id")?)?.ok_or_else(|| FieldError::required("eventId"))?;

        let type_name = field(map, "type", "type")?
            .ok_or_else(|| FieldError::required("type"))?
            .as_str()
            .ok_or_else(|| FieldError::wrong_type("type", "a string"))?;
        let event_type: EventType = type_name
            .parse()
            .map_err(|_| FieldError::new("type", Rule::UnknownValue, format!("unknown event type `{type_name}`")))?;

        let ts_raw = field(map, "ts", "ts")?
            .ok_or_else(|| FieldError::required("ts"))?
            .as_str()
            .ok_or_else(|| FieldError::wrong_type("ts", "an RFC 3339 timestamp string"))?;
        let ts = DateTime::parse_from_rfc3339(ts_raw)
            .map_err(|_| {
                FieldError::new("ts", Rule::Format, "`ts` must be an RFC 3339 timestamp like 2025-09-27T10:00:00Z")
            })?
            .with_timezone(&Utc);
        if ts > options.received_at + options.max_future_skew {
            return Err(FieldError::new(
                "ts",
                Rule::FutureTimestamp,
                format!("`ts` is more than {}s in the future", options.max_future_skew.num_seconds()),
            ));
        }

        let source_raw = field(map, "source", "source")?
            .ok_or_else(|| FieldError::required("source"))?
            .as_str()
            .ok_or_else(|| FieldError::wrong_type("source", "a string"))?;
        // `control_tower` parses too: the edge lets only a token bound to it send it (the
        // platform's own announcements, such as stored artifacts).
        let source = source_raw.parse::<Source>().map_err(|_| {
            let known: Vec<_> = Source::SENDERS.iter().map(|s| s.as_str()).collect();
            FieldError::new("source", Rule::UnknownValue, format!("`source` must be one of {}", known.join(", ")))
        })?;
        if !event_type.accepts_source(source) {
            return Err(FieldError::new(
                "source",
                Rule::SourceMismatch,
                format!("events of type `{event_type}` are not emitted by `{source}`"),
            ));
        }

        let correlation_id = parse_id("correlationId", field(map, "correlationId", "correlation_id")?)?;
        let payload_value = field(map, "payload", "payload")?.ok_or_else(|| FieldError::required("payload"))?;
        let mut report = RedactionReport::default();
        let payload = Payload::parse(event_type, payload_value, options.redactor, &mut report)?;

        let ingest = Ingest {
            received_at: options.received_at,
            attempt: 1,
            status: "accepted".to_owned(),
            redactions: i32::try_from(report.total()).unwrap_or(i32::MAX),
            trace_id: None,
        };
        Ok((Envelope { event_id, ts, source, correlation_id, payload, ingest }, report))
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn ts(&self) -> DateTime<Utc> {
        self.ts
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Records the W3C trace id of the request that carried the event.
    pub fn set_trace_id(&mut self, trace_id: impl Into<String>) {
        self.ingest.trace_id = Some(trace_id.into());
    }

    /// The event as canonical JSON (camelCase envelope, snake_case payload); the projector stores
    /// its `payload` part.
    /// The payload's fields as JSON (snake_case, money in minor units), without the variant tag.
    pub fn payload_json(&self) -> Value {
        let payload = serde_json::to_value(&self.payload).unwrap_or(Value::Null);
        // Externally tagged enum: unwrap the single variant object.
        match payload {
            Value::Object(mut m) if m.len() == 1 => m.values_mut().next().map(Value::take).unwrap_or(Value::Null),
            other => other,
        }
    }

    pub fn to_json(&self) -> Value {
        let payload = self.payload_json();
        serde_json::json!({
            "eventId": self.event_id,
            "type": self.event_type().as_str(),
            "ts": self.ts.to_rfc3339_opts(SecondsFormat::Micros, true),
            "source": self.source.as_str(),
            "correlationId": self.correlation_id,
            "payload": payload,
            "ingest": {
                "receivedAt": self.ingest.received_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "attempt": self.ingest.attempt,
                "status": self.ingest.status,
                "redactions": self.ingest.redactions,
                "traceId": self.ingest.trace_id,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn options(redactor: &Redactor) -> ParseOptions<'_> {
        ParseOptions {
            redactor,
            received_at: "2025-09-27T10:00:05Z".parse().unwrap(),
            max_future_skew: Duration::minutes(5),
        }
    }

    fn seed() -> Value {
        json!({"eventId":"evt_demo_001","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z",
               "source":"finance","payload":{"invoiceId":"INV-2025-0912","period":"2025-09","total":1234.56}})
    }

    #[test]
    fn the_smoke_test_body_parses() {
        let redactor = Redactor::new("s");
        let (event, report) = Envelope::parse(&seed(), &options(&redactor)).unwrap();
        assert_eq!(event.event_id(), "evt_demo_001");
        assert_eq!(event.event_type(), EventType::FinanceInvoiceGenerated);
        assert_eq!(event.source(), Source::Finance);
        assert_eq!(report.total(), 0);
        assert_eq!(event.to_json()["payload"]["total_minor"], 123456);
    }

    #[test]
    fn each_envelope_rule_names_its_field() {
        let redactor = Redactor::new("s");
        type Mutation = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
        let cases: Vec<(Mutation, &str, Rule)> = vec![
            (
                Box::new(|m| {
                    m.remove("eventId");
                }),
                "eventId",
                Rule::Required,
            ),
            (
                Box::new(|m| {
                    m.insert("eventId".into(), json!("has space"));
                }),
                "eventId",
                Rule::Format,
            ),
            (
                Box::new(|m| {
                    m.insert("eventId".into(), json!("x".repeat(129)));
                }),
                "eventId",
                Rule::MaxLength,
            ),
            (
                Box::new(|m| {
                    m.insert("type".into(), json!("nope.nope"));
                }),
                "type",
                Rule::UnknownValue,
            ),
            (
                Box::new(|m| {
                    m.insert("ts".into(), json!("yesterday"));
                }),
                "ts",
                Rule::Format,
            ),
            (
                Box::new(|m| {
                    m.insert("ts".into(), json!("2025-09-27T11:00:00Z"));
                }),
                "ts",
                Rule::FutureTimestamp,
            ),
            (
                Box::new(|m| {
                    m.insert("source".into(), json!("mars"));
                }),
                "source",
                Rule::UnknownValue,
            ),
            (
                Box::new(|m| {
                    m.insert("source".into(), json!("portal"));
                }),
                "source",
                Rule::SourceMismatch,
            ),
            (
                Box::new(|m| {
                    m.insert("correlationId".into(), json!(7));
                }),
                "correlationId",
                Rule::Type,
            ),
            (
                Box::new(|m| {
                    m.remove("payload");
                }),
                "payload",
                Rule::Required,
            ),
            (
                Box::new(|m| {
                    m.insert("payload".into(), json!({"period":"x","total":1}));
                }),
                "payload.invoice_id",
                Rule::Required,
            ),
        ];
        for (mutate, field, rule) in cases {
            let mut body = seed();
            mutate(body.as_object_mut().unwrap());
            let err = Envelope::parse(&body, &options(&redactor)).unwrap_err();
            assert_eq!((err.field.as_str(), err.rule), (field, rule), "{err}");
        }
        assert_eq!(Envelope::parse(&json!([]), &options(&redactor)).unwrap_err().field, "$");
    }

    /// The edge parses the body's bytes ([`Json::from_slice`]); every other caller a
    /// `serde_json::Value`. Both must give the same event, report and error, odd bodies included.
    #[test]
    fn the_borrowed_parse_of_the_bytes_equals_the_parse_of_the_value() {
        let redactor = Redactor::new("s");
        let mut bodies: Vec<String> = EventType::ALL
            .iter()
            .map(|t| {
                let mut sample = crate::samples::sample(*t);
                sample["correlationId"] = json!("corr-1");
                sample["ts"] = json!("2025-09-27T10:00:00Z");
                sample.to_string()
            })
            .collect();
        bodies.extend(
            [
                // A repeated key: the last wins, as in serde_json.
                r#"{"eventId":"e1","eventId":"e2","type":"finance.invoice.generated","ts":"2025-09-27T10:00:00Z","source":"finance","payload":{"invoiceId":"I-1","period":"p","total":1,"total":"2.50"}}"#,
                // Escapes, PII by key and by value, camelCase and snake_case.
                r#"{"event_id":"e3","type":"backend.fn.error","ts":"2025-09-27T10:00:00Z","source":"backend","payload":{"fn_name":"f\u0041\n","severity":"high","message":"mail bob@corp.com","email":"x@y.z","stack":"s"}}"#,
                // Both spellings with equal values: not a conflict.
                r#"{"eventId":"e4","type":"backend.fn.error","ts":"2025-09-27T10:00:00Z","source":"backend","payload":{"fnName":"f","fn_name":"f","severity":"low"}}"#,
                // Both spellings with different values: refused.
                r#"{"eventId":"e5","event_id":"e6","type":"backend.fn.error","ts":"2025-09-27T10:00:00Z","source":"backend","payload":{}}"#,
                r#"{"eventId":"e7","type":"backend.fn.error","ts":"2025-09-27T10:00:00Z","source":"backend","payload":{"fnName":"f","fn_name":"g","severity":"low"}}"#,
                r#"{"eventId":"e8","type":"backend.fn.error","ts":"2025-09-27T10:00:00Z","source":"backend","payload":{"fnName":"f\u0000","severity":"low"}}"#,
                r#"[1,2]"#,
            ]
            .map(str::to_owned),
        );
        // A map field: a repeated key, a nested object kept as its JSON text (keys sorted, as
        // serde_json prints them), PII inside it, and both spellings of an object in another order.
        let run = crate::samples::sample(EventType::RunStarted);
        let envelope = format!(r#""type":{},"ts":"2025-09-27T10:00:00Z","source":{}"#, run["type"], run["source"]);
        bodies.push(format!(
            r#"{{"eventId":"e9",{envelope},"payload":{{"runId":"r1","trigger":"t","initiator":"i",
                "inputs":{{"a":"1","a":"2","n":{{"y":1,"x":[1,"bob@corp.com"]}},"email":"x@y.z"}}}}}}"#
        ));
        // Two faulty keys: the first in key order is named (as serde_json's sorted map gave it).
        let completed = crate::samples::sample(EventType::RunCompleted);
        bodies.push(format!(
            r#"{{"eventId":"e11","type":{},"ts":"2025-09-27T10:00:00Z","source":{},"payload":{{"runId":"r1",
                "status":"success","metrics":{{"b":"x","a":"y"}}}}}}"#,
            completed["type"], completed["source"]
        ));
        bodies.push(format!(
            r#"{{"eventId":"e10",{envelope},"payload":{{"run_id":"r1","runId":"r1","trigger":"t","initiator":"i",
                "durationMs":5,"duration_ms":5,"inputs":{{"b":{{"q":1,"p":2}}}}}}}}"#
        ));
        let mut refused = Vec::new();
        for body in &bodies {
            let value: Value = serde_json::from_str(body).unwrap();
            let from_value = Envelope::parse(&value, &options(&redactor));
            let from_bytes = Envelope::parse_json(&Json::from_slice(body.as_bytes()).unwrap(), &options(&redactor));
            assert_eq!(from_bytes, from_value, "{body}");
            if let Err(e) = from_bytes {
                refused.push((e.field, e.rule));
            }
        }
        let nul = Rule::NoNulCharacter;
        let conflict = Rule::ConflictingSpellings;
        assert_eq!(
            refused,
            [("eventId".into(), conflict), ("payload.fn_name".into(), conflict), ("payload.fn_name".into(), nul)]
                .into_iter()
                .chain([("$".to_owned(), Rule::Type), ("payload.metrics.a".to_owned(), Rule::Type)])
                .collect::<Vec<(String, Rule)>>()
        );
    }
}
