//! What every Control Tower service shares: layered config, telemetry, Prometheus metrics,
//! graceful shutdown, and the set-up of Kafka (producer, consumer, admin), Postgres and Redis.
//!
//! Architecture invariant: depends on `ct-core`, never on a service crate.

pub mod audit;
pub mod catalogue;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod health;
pub mod http;
pub mod http_error;
pub mod kafka;
pub mod metrics;
pub mod notify;
pub mod postgres;
pub mod readmodel;
pub mod redis;
pub mod registry;
pub mod relay;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod topics;
pub mod triggers;
