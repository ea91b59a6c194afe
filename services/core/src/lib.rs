//! Control Tower's core: the event envelope and taxonomy, "parse, don't validate" constructors,
//! the PII redaction rules, and the Avro codec of `schemas-avro/`.
//!
//! Architecture invariant: this crate does no network or file I/O and does not depend on tokio,
//! rdkafka, sqlx, redis, axum or reqwest (`tests/tidy.rs` enforces it). Services depend on it,
//! never the reverse.

pub mod alerting;
pub mod audit;
pub mod avro;
pub mod catalogue;
pub mod clock;
pub mod digest;
pub mod dlq;
pub mod envelope;
pub mod erasure;
pub mod error;
pub mod event_type;
pub mod health;
pub mod json;
pub mod kpi;
pub mod money;
pub mod payload;
pub mod redact;
pub mod runs;
pub mod samples;
pub mod signature;
pub mod slo;
pub mod source;
pub mod timesheets;
pub mod trend;

pub use envelope::{Envelope, Ingest};
pub use error::{FieldError, Rule};
pub use event_type::EventType;
pub use payload::Payload;
pub use source::Source;
