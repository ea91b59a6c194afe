//! Control Tower's Rust client: build, sign and send events to the edge, with the retry rules
//! every client shares (`clients/conformance/vectors.json`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ct_client::SendError> {
//! use ct_client::{Client, Event};
//! let client = Client::new("http://127.0.0.1:8080", "dev-token-finance", "dev-webhook-secret", "finance");
//! let event = Event::new("system.heartbeat", serde_json::json!({"systemId": "finance"}))?;
//! let receipt = client.send(&event).await?;
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, sync::LazyLock, time::Duration};

// Generated with the taxonomy (clients/taxonomy/generate.py), which checks it is up to date.
#[rustfmt::skip]
pub mod payloads;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

pub use ct_core::signature::{ct_signature, ct_signature_at, standard_webhooks_signature};

/// The taxonomy generated from the edge's OpenAPI document (`clients/taxonomy/generate.py`).
pub const TAXONOMY_JSON: &str = include_str!("../../taxonomy/taxonomy.json");

#[derive(Debug, Deserialize)]
struct Taxonomy {
    #[serde(rename = "eventTypes")]
    event_types: Vec<TypeSpec>,
}

#[derive(Debug, Deserialize)]
struct TypeSpec {
    #[serde(rename = "type")]
    event_type: String,
    fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Deserialize)]
struct FieldSpec {
    required: bool,
    #[serde(default, rename = "enum")]
    allowed: Option<Vec<String>>,
}

static TAXONOMY: LazyLock<Taxonomy> =
    LazyLock::new(|| serde_json::from_str(TAXONOMY_JSON).expect("clients/taxonomy/taxonomy.json is valid"));

/// Every event type the edge takes.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    TAXONOMY.event_types.iter().map(|t| t.event_type.as_str())
}

/// How requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-CT-Signature` of the body.
    Ct,
    /// `X-CT-Signature` of `"{timestamp}.{body}"` with `X-CT-Timestamp` (the default).
    CtTimestamp,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
}

impl std::str::FromStr for Scheme {
    type Err = String;
    fn from_str(text: &str) -> Result<Scheme, String> {
        match text {
            "ct" => Ok(Scheme::Ct),
            "ct-timestamp" => Ok(Scheme::CtTimestamp),
            "standard-webhooks" => Ok(Scheme::StandardWebhooks),
            other => Err(format!("unknown signature scheme `{other}`: ct, ct-timestamp or standard-webhooks")),
        }
    }
}

/// The signature headers of `body`.
pub fn sign(
    scheme: Scheme,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    message_id: &str,
) -> Vec<(&'static str, String)> {
    match scheme {
        Scheme::Ct => vec![("X-CT-Signature", ct_signature(secret, body))],
        Scheme::CtTimestamp => {
            vec![
                ("X-CT-Signature", ct_signature_at(secret, timestamp, body)),
                ("X-CT-Timestamp", timestamp.to_string()),
            ]
        }
        Scheme::StandardWebhooks => vec![
            ("webhook-id", message_id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", standard_webhooks_signature(secret, message_id, timestamp, body)),
        ],
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
    Retry,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::Retry => "retry",
        }
    }
}

/// 2xx accepted; 408, 429 and every 5xx retried; any other status refused.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted,
        408 | 429 | 500.. => Outcome::Retry,
        _ => Outcome::Refused,
    }
}

/// The longest wait after failed attempt `attempt` (1-based), before jitter.
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(31))).min(cap)
}

/// `Retry-After` (seconds or an HTTP date) as a wait, at most `cap`; `None` when not understood.
pub fn retry_after(header: &str, now: DateTime<Utc>, cap: Duration) -> Option<Duration> {
    let text = header.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)).min(cap));
    }
    let when = DateTime::parse_from_rfc2822(text).ok()?;
    Some((when.with_timezone(&Utc) - now).to_std().unwrap_or_default().min(cap))
}

/// Full jitter: uniform in `[0, ceiling]` (uuid's v4 generator is the random source).
fn jitter(ceiling: Duration) -> Duration {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let random = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random % millis.saturating_add(1))
}

/// An amount as the edge takes it: major units as a decimal string (`"1234.56"`, exact) or integer
/// minor units with an optional currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Money {
    Major(String),
    Minor {
        amount_minor: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        currency: Option<String>,
    },
}

/// A typed payload of one event type (`payloads`).
pub trait Payload: serde::Serialize {
    const TYPE: &'static str;
}

/// An event the edge would refuse, caught before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidEvent {
    pub field: String,
    pub message: String,
}

/// One event, as the edge reads it (`payload` keys in camelCase).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub event_type: String,
    pub ts: String,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    pub payload: Map<String, Value>,
}

impl Event {
    /// An event of `event_type` with a new `eventId` and the current time; payload keys in
    /// camelCase or snake_case; required fields and enums checked against the taxonomy.
    pub fn new(event_type: &str, payload: Value) -> Result<Event, InvalidEvent> {
        let invalid = |field: String, message: String| InvalidEvent { field, message };
        let spec = TAXONOMY
            .event_types
            .iter()
            .find(|t| t.event_type == event_type)
            .ok_or_else(|| invalid("type".into(), format!("unknown event type `{event_type}`")))?;
        let Value::Object(fields) = payload else {
            return Err(invalid("payload".into(), "must be a JSON object".into()));
        };
        let wire: Map<String, Value> = fields
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (ct_core::payload::camel_case(&k), v))
            .collect();
        if let Some(unknown) = wire.keys().find(|k| !spec.fields.contains_key(*k)) {
            let known: Vec<&str> = spec.fields.keys().map(String::as_str).collect();
            return Err(invalid(
                format!("payload.{unknown}"),
                format!("{event_type} has no field `{unknown}`; fields: {}", known.join(", ")),
            ));
        }
        for (key, rules) in &spec.fields {
            match wire.get(key) {
                None if rules.required => return Err(invalid(format!("payload.{key}"), "is required".into())),
                Some(value) => {
                    if let Some(allowed) = &rules.allowed {
                        let text = value.as_str().map(str::to_lowercase).unwrap_or_else(|| value.to_string());
                        if !allowed.contains(&text) {
                            return Err(invalid(
                                format!("payload.{key}"),
                                format!("must be one of {}", allowed.join(", ")),
                            ));
                        }
                    }
                }
                None => {}
            }
        }
        Ok(Event {
            event_id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            event_type: event_type.to_owned(),
            ts: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            source: None,
            correlation_id: None,
            payload: wire,
        })
    }

    /// An event from a typed payload (`ct_client::payloads::BackendFnError { .. }`).
    pub fn of<P: Payload>(payload: &P) -> Result<Event, InvalidEvent> {
        let value = serde_json::to_value(payload)
            .map_err(|e| InvalidEvent { field: "payload".into(), message: e.to_string() })?;
        Event::new(P::TYPE, value)
    }

    pub fn with_id(mut self, event_id: impl Into<String>) -> Event {
        self.event_id = event_id.into();
        self
    }

    pub fn with_ts(mut self, ts: impl Into<String>) -> Event {
        self.ts = ts.into();
        self
    }

    pub fn with_source(mut self, source: impl Into<String>) -> Event {
        self.source = Some(source.into());
        self
    }

    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Event {
        self.correlation_id = Some(id.into());
        self
    }

    /// The JSON document the edge reads, with `source` when the event names none.
    pub fn body(&self, source: &str) -> Value {
        let mut body = Map::new();
        body.insert("eventId".into(), self.event_id.clone().into());
        body.insert("type".into(), self.event_type.clone().into());
        body.insert("ts".into(), self.ts.clone().into());
        body.insert("source".into(), self.source.clone().unwrap_or_else(|| source.to_owned()).into());
        if let Some(id) = &self.correlation_id {
            body.insert("correlationId".into(), id.clone().into());
        }
        body.insert("payload".into(), Value::Object(self.payload.clone()));
        Value::Object(body)
    }
}

/// The edge's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub event_id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A 4xx other than 408 and 429: retrying will not help.
    #[error("{status} {}: {message}{}", code.as_deref().unwrap_or("-"), field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Refused { status: u16, code: Option<String>, field: Option<String>, message: String },
    #[error("gave up after {attempts} attempts; last: {last}")]
    RetriesExhausted { attempts: u32, last: String },
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    #[error("the edge's answer is not what its API says: {0}")]
    Protocol(String),
}

/// Retry settings: up to `max_attempts` tries, waits under `min(cap, base * 2^(attempt-1))`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The longest one send keeps retrying the same event: every attempt runs to its timeout and
    /// every wait is at the cap (a `Retry-After` is capped too). The edge remembers an `eventId`
    /// for at least twice this (its `idempotency.ttl_s`), so every retry of this client is
    /// answered as a duplicate.
    pub fn horizon(&self) -> Duration {
        self.timeout.saturating_mul(self.max_attempts) + self.cap.saturating_mul(self.max_attempts.saturating_sub(1))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// How a service of Control Tower reaches its own edge (the `[edge]` section of the read API's
/// and the runner's configuration): their announcements are events of source `control_tower`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EdgeConfig {
    pub url: String,
    /// A token bound to `control_tower` in the edge's `auth.producer_tokens`.
    pub producer_token: SecretString,
    /// One of the edge's `auth.hmac_secrets`.
    pub hmac_secret: SecretString,
}

impl EdgeConfig {
    /// A client sending as `control_tower` with `policy`.
    pub fn client(&self, policy: RetryPolicy) -> Client {
        Client::new(&self.url, self.producer_token.expose_secret(), self.hmac_secret.expose_secret(), "control_tower")
            .with_policy(policy)
    }

    /// True when the token is a dev one (refused under the production profile).
    pub fn has_dev_token(&self) -> bool {
        self.producer_token.expose_secret().starts_with("dev-token-")
    }
}

/// A signed request ready to send, for `--dry-run` style printing.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Sends events of one source to the edge.
pub struct Client {
    base_url: String,
    token: SecretString,
    secret: SecretString,
    source: String,
    pub scheme: Scheme,
    pub policy: RetryPolicy,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base_url", &self.base_url).field("source", &self.source).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(base_url: &str, token: &str, secret: &str, source: &str) -> Client {
        Client {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token: SecretString::from(token.to_owned()),
            secret: SecretString::from(secret.to_owned()),
            source: source.to_owned(),
            scheme: Scheme::CtTimestamp,
            policy: RetryPolicy::default(),
            http: reqwest::Client::new(),
        }
    }

    pub fn with_scheme(mut self, scheme: Scheme) -> Client {
        self.scheme = scheme;
        self
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Client {
        self.policy = policy;
        self
    }

    /// The signed request of one event (as `send` would make its first attempt).
    pub fn prepare(&self, event: &Event) -> Prepared {
        let body = serde_json::to_vec(&event.body(&self.source)).expect("JSON values serialise");
        self.prepared("/events", body, &event.event_id, None)
    }

    /// The signed request of a batch.
    pub fn prepare_batch(&self, batch: &[Event]) -> Prepared {
        let bodies: Vec<Value> = batch.iter().map(|e| e.body(&self.source)).collect();
        let body = serde_json::to_vec(&bodies).expect("JSON values serialise");
        let id = batch.first().map_or_else(String::new, |e| format!("{}-batch", e.event_id));
        self.prepared("/events/batch", body, &id, None)
    }

    fn prepared(&self, path: &str, body: Vec<u8>, message_id: &str, traceparent: Option<&str>) -> Prepared {
        let mut headers = vec![
            ("Authorization", format!("Bearer {}", self.token.expose_secret())),
            ("Content-Type", "application/json".to_owned()),
        ];
        headers.extend(sign(self.scheme, self.secret.expose_secret(), &body, Utc::now().timestamp(), message_id));
        if let Some(traceparent) = traceparent {
            headers.push(("traceparent", traceparent.to_owned()));
        }
        Prepared { url: format!("{}{path}", self.base_url), headers, body }
    }

    pub async fn send(&self, event: &Event) -> Result<Receipt, SendError> {
        self.send_traced(event, None).await
    }

    /// As `send`, with the caller's W3C `traceparent`.
    pub async fn send_traced(&self, event: &Event, traceparent: Option<&str>) -> Result<Receipt, SendError> {
        let body = serde_json::to_vec(&event.body(&self.source)).expect("JSON values serialise");
        let answer = self.post("/events", body, &event.event_id, traceparent).await?;
        serde_json::from_value(answer).map_err(|e| SendError::Protocol(e.to_string()))
    }

    pub async fn send_batch(&self, batch: &[Event]) -> Result<Vec<Receipt>, SendError> {
        let Some(first) = batch.first() else { return Ok(Vec::new()) };
        let bodies: Vec<Value> = batch.iter().map(|e| e.body(&self.source)).collect();
        let body = serde_json::to_vec(&bodies).expect("JSON values serialise");
        let mut answer = self.post("/events/batch", body, &format!("{}-batch", first.event_id), None).await?;
        serde_json::from_value(answer["events"].take()).map_err(|e| SendError::Protocol(e.to_string()))
    }

    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        message_id: &str,
        traceparent: Option<&str>,
    ) -> Result<Value, SendError> {
        let mut last = String::new();
        for attempt in 1..=self.policy.max_attempts {
            // The same bytes every time; only the signature's timestamp moves.
            let prepared = self.prepared(path, body.clone(), message_id, traceparent);
            let mut request = self.http.post(&prepared.url).timeout(self.policy.timeout).body(prepared.body);
            for (name, value) in &prepared.headers {
                request = request.header(*name, value);
            }
            let mut wait = None;
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let header = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let text = response.text().await.unwrap_or_default();
                    let document: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let error = &document["error"];
                    let text_of = |v: &Value| v.as_str().map(str::to_owned);
                    match classify(status) {
                        Outcome::Accepted => return Ok(document),
                        Outcome::Refused => {
                            return Err(SendError::Refused {
                                status,
                                code: text_of(&error["code"]),
                                field: text_of(&error["field"]),
                                message: text_of(&error["message"]).unwrap_or_default(),
                            });
                        }
                        Outcome::Retry => {
                            wait = header.and_then(|h| retry_after(&h, Utc::now(), self.policy.cap));
                            last = format!("HTTP {status} {}", text_of(&error["code"]).unwrap_or_default())
                                .trim()
                                .to_owned();
                        }
                    }
                }
                Err(error) => last = error.to_string(),
            }
            if attempt < self.policy.max_attempts {
                let wait = wait.unwrap_or_else(|| jitter(backoff_ceiling(attempt, self.policy.base, self.policy.cap)));
                tokio::time::sleep(wait).await;
            }
        }
        Err(SendError::RetriesExhausted { attempts: self.policy.max_attempts, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_against_the_taxonomy() {
        assert_eq!(event_types().count(), ct_core::EventType::ALL.len());
        assert!(event_types().all(|t| t.parse::<ct_core::EventType>().is_ok()));
        let e = Event::new("backend.fn.error", serde_json::json!({"fn_name": "parse", "severity": "HIGH"})).unwrap();
        assert_eq!(Value::Object(e.payload.clone()), serde_json::json!({"fnName": "parse", "severity": "HIGH"}));
        assert!(e.event_id.starts_with("evt_") && e.ts.ends_with('Z'));
        let field = |t: &str, p: Value| Event::new(t, p).unwrap_err().field;
        assert_eq!(field("backend.fn.error", serde_json::json!({"severity": "high"})), "payload.fnName");
        assert_eq!(field("system.heartbeat", serde_json::json!({"systemId": "f", "colour": "red"})), "payload.colour");
        assert_eq!(
            field("ct.run.completed", serde_json::json!({"runId": "r", "status": "exploded"})),
            "payload.status"
        );
        assert_eq!(field("made.up", serde_json::json!({})), "type");
    }

    #[test]
    fn typed_payloads_become_checked_events() {
        use crate::payloads::{BackendFnError, FinanceInvoiceGenerated};
        let error = BackendFnError {
            fn_name: "parse".into(),
            severity: "high".into(),
            message: None,
            stack_ref: Some("logs://1".into()),
        };
        let event = Event::of(&error).unwrap();
        assert_eq!(event.event_type, "backend.fn.error");
        assert_eq!(
            Value::Object(event.payload),
            serde_json::json!({"fnName": "parse", "severity": "high", "stackRef": "logs://1"})
        );
        let wrong = BackendFnError { severity: "dire".into(), ..error };
        assert_eq!(Event::of(&wrong).unwrap_err().field, "payload.severity", "enums are checked");
        let invoice = FinanceInvoiceGenerated {
            invoice_id: "INV-1".into(),
            period: "2026-03".into(),
            total: Money::Major("1234.56".into()),
            vat: Some(Money::Minor { amount_minor: 24_691, currency: None }),
            currency: None,
            document_ref: None,
        };
        let payload = Event::of(&invoice).unwrap().payload;
        assert_eq!(payload["total"], "1234.56");
        assert_eq!(payload["vat"], serde_json::json!({"amount_minor": 24_691}));
    }
}
