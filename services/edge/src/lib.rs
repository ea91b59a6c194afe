//! `ct-edge`: the edge ingestor. Signed webhooks (and polled events) in; validated, redacted
//! Avro records on `ct.events.v1` out, acknowledged with 202 only after the broker stored them.
//!
//! Architecture invariants: nothing reaches Kafka before redaction (invariant 6); a 202 is sent
//! only after the idempotent `acks=all` producer's delivery report (invariant 1); a full producer
//! queue is a 503 with `Retry-After`, never an unbounded queue.

pub mod auth;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod ingest;
pub mod poller;
pub mod routes;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
pub use config::Config;
use ct_core::{avro, redact::Redactor};
use ct_platform::{kafka, registry::RegistryClient};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

pub struct AppState {
    pub config: Config,
    pub tokens: auth::Tokens,
    pub rate_limit: auth::RateLimit,
    pub ingestor: Arc<ingest::Ingestor>,
    pub registry: Arc<RegistryClient>,
    /// One permit per event being parsed, checked or produced (`events.max_events_in_progress`).
    pub in_progress: Arc<tokio::sync::Semaphore>,
    /// `auth.hmac_secrets`, keyed once.
    pub verifying_keys: ct_core::signature::VerifyingKeys,
}

pub struct Application {
    server: ct_platform::http::Server,
    pollers: Vec<poller::Poller>,
    idempotency: idempotency::IdempotencyStore,
}

impl Application {
    /// Connects to Redis, registers the event schema (refusing to start when the registry calls it
    /// incompatible), creates the producer and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let redis = ct_platform::redis::connect(&config.redis).await.context("connecting to Redis")?;
        let registry = Arc::new(RegistryClient::new(&config.registry.url));
        let subject = ct_platform::registry::value_subject(&config.events.topic);
        let schema_id = registry
            .register(&subject, avro::event_schema_json())
            .await
            .with_context(|| format!("refusing to start: cannot register the event schema under `{subject}`"))?;
        let delivery_timeout = Duration::from_millis(config.events.delivery_timeout_ms);
        let mut kafka_config = config.kafka.clone();
        kafka_config
            .properties
            .entry("queue.buffering.max.messages".to_owned())
            .or_insert_with(|| config.events.max_in_flight_messages.to_string());
        let producer =
            kafka::idempotent_producer(&kafka_config, delivery_timeout).context("creating the Kafka producer")?;
        let systems = config.catalogue.load().context("loading the system catalogue")?;
        let ingestor = Arc::new(ingest::Ingestor {
            producer,
            catalogue: systems.catalogue,
            topic: config.events.topic.clone(),
            schema_id,
            redactor: Redactor::new(config.events.redaction_salt.expose_secret().to_owned()),
            idempotency: idempotency::IdempotencyStore::with_lingers(
                redis.clone(),
                &config.redis.key_prefix,
                &config.events.topic,
                u64::try_from(ingest::pending_ttl(delivery_timeout).as_millis()).unwrap_or(u64::MAX),
                config.idempotency.ttl_s,
                idempotency::Lingers {
                    receipt: std::time::Duration::from_millis(config.idempotency.receipt_linger_ms),
                    claim: std::time::Duration::from_millis(config.idempotency.claim_linger_ms),
                },
            ),
            max_future_skew: chrono::Duration::seconds(config.events.max_future_skew_s),
            metrics: ingest::IngestMetrics::new(),
        });
        let redis_version =
            ingestor.idempotency.require_redis_7().await.map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
        tracing::info!(redis_version, "Idempotency store ready.");
        let in_progress = Arc::new(tokio::sync::Semaphore::new(config.events.max_events_in_progress));
        let pollers = config
            .pollers
            .iter()
            .map(|p| poller::Poller {
                config: p.clone(),
                source: p.source.parse().expect("validated source"),
                ingestor: Arc::clone(&ingestor),
                redis: redis.clone(),
                cursor_key: format!("{}:poller:{}:cursor", config.redis.key_prefix, p.name),
                http: poller::Poller::client(p),
                in_progress: Arc::clone(&in_progress),
            })
            .collect();
        let idempotency = ingestor.idempotency.clone();
        let state = Arc::new(AppState {
            tokens: auth::Tokens::new(&config.auth),
            verifying_keys: ct_core::signature::VerifyingKeys::new(&config.auth.hmac_secrets),
            rate_limit: auth::RateLimit::new(&config.rate_limit),
            ingestor,
            registry,
            in_progress,
            config: config.clone(),
        });
        // The routes check their own, finer limits (per event, per batch) while reading.
        let mut limits = config.http.limits.clone();
        limits.max_request_bytes = config.http.max_batch_bytes.max(config.http.max_body_bytes);
        let server = ct_platform::http::Server::bind(config.http.listen, routes::router(state), &limits)
            .await
            .with_context(|| format!("binding {}", config.http.listen))?;
        tracing::info!(schema_id, subject, "Event schema registered.");
        Ok(Application { server, pollers, idempotency })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "Edge listening.");
        for poller in self.pollers {
            tokio::spawn(poller.run(shutdown.clone()));
        }
        self.server.run(shutdown).await?;
        // Receipts and releases are not waited for by requests: written before the process ends.
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(10), self.idempotency.flush()).await;
        if flushed.is_err() {
            tracing::warn!(
                "Idempotency writes still pending after 10 s at shutdown; their claims expire by themselves."
            );
        }
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}
