//! Pull polling (work order §2): fetch events from a producer's HTTP endpoint on an interval with
//! a cursor, and feed them through the same validation, idempotency and produce path as pushes.
//!
//! Protocol: `GET <url>?cursor=<cursor>` (no `cursor` on the first call) answers
//! `{"events": [...], "next_cursor": "..."}`. The cursor is stored in Redis only after every
//! event of the page was acknowledged by the broker or refused as invalid, so a crash re-fetches
//! the page and idempotency absorbs the repeats.

use std::{sync::Arc, time::Duration};

use ct_core::{Source, json::Json};
use redis::{AsyncCommands, aio::ConnectionManager};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{config::PollerConfig, ingest::Ingestor};

#[derive(Deserialize)]
struct Page {
    events: Vec<Value>,
    next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("fetching the page: {0}")]
    Fetch(#[source] reqwest::Error),
    #[error("the page is larger than {0} bytes")]
    PageTooLarge(usize),
    #[error("the page is not JSON of the polling protocol: {0}")]
    BadPage(serde_json::Error),
    #[error("the edge is at its limit of events in progress")]
    Overloaded,
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("event {event_id} not accepted: {message}")]
    Retryable { event_id: String, message: String },
}

pub struct Poller {
    pub config: PollerConfig,
    pub source: Source,
    pub ingestor: Arc<Ingestor>,
    pub redis: ConnectionManager,
    pub cursor_key: String,
    pub http: reqwest::Client,
    /// The edge's admission: polled events wait for permits like pushed ones.
    pub in_progress: Arc<tokio::sync::Semaphore>,
}

impl Poller {
    /// An HTTP client bounded in time (`timeout_ms`, connecting included).
    pub fn client(config: &PollerConfig) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .build()
            .expect("a plain HTTP client builds")
    }
}

impl Poller {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            match self.poll_once().await {
                Ok(accepted) if accepted > 0 => tracing::info!(poller = %self.config.name, accepted, "Polled events."),
                Ok(_) => {}
                Err(error) => {
                    metrics::counter!("ct_edge_poll_errors_total", "poller" => self.config.name.clone()).increment(1);
                    tracing::warn!(poller = %self.config.name, %error, "Polling failed; retrying next interval.");
                }
            }
        }
    }

    /// Fetches one page, ingests it, and advances the cursor. Returns how many were accepted.
    pub async fn poll_once(&self) -> Result<usize, PollError> {
        let mut redis = self.redis.clone();
        let cursor: Option<String> = redis.get(&self.cursor_key).await?;
        let mut url = url::Url::parse(&self.config.url).map_err(|_| PollError::Retryable {
            event_id: String::new(),
            message: "pollers.url is not a valid URL".to_owned(),
        })?;
        if let Some(cursor) = &cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let mut request = self.http.get(url.clone());
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose_secret());
        }
        let mut response =
            request.send().await.and_then(|r| r.error_for_status()).map_err(|e| PollError::Fetch(e.without_url()))?;
        let max = self.config.max_page_bytes;
        if response.content_length().is_some_and(|length| length > max as u64) {
            return Err(PollError::PageTooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| PollError::Fetch(e.without_url()))? {
            if body.len() + chunk.len() > max {
                return Err(PollError::PageTooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        let page: Page = serde_json::from_slice(&body).map_err(PollError::BadPage)?;
        let permits = u32::try_from(page.events.len()).unwrap_or(u32::MAX).clamp(1, 1_000);
        let wait = Duration::from_millis(self.config.timeout_ms);
        let _admitted = match tokio::time::timeout(wait, self.in_progress.acquire_many(permits)).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(PollError::Overloaded),
        };
        let mut accepted = 0;
        for event in &page.events {
            let parsed = match self.ingestor.parse(&Json::from(event)) {
                Ok((parsed, _)) if parsed.source() == self.source => parsed,
                Ok((parsed, _)) => {
                    self.refuse(event, &format!("source `{}` is not this poller's `{}`", parsed.source(), self.source));
                    continue;
                }
                Err(error) => {
                    self.refuse(event, &format!("{}: {}", error.field.unwrap_or_default(), error.message));
                    continue;
                }
            };
            let event_id = parsed.event_id().to_owned();
            let traceparent = crate::ingest::traceparent_for(None);
            match self.ingestor.accept(parsed, &traceparent).await {
                Ok(a) if !a.duplicate => accepted += 1,
                Ok(_) => {}
                Err(error) if error.status.is_server_error() => {
                    return Err(PollError::Retryable { event_id, message: error.message });
                }
                Err(error) => self.refuse(event, &error.message),
            }
        }
        if let Some(next) = page.next_cursor {
            let _: () = redis.set(&self.cursor_key, next).await?;
        }
        Ok(accepted)
    }

    fn refuse(&self, event: &Value, reason: &str) {
        metrics::counter!("ct_edge_poll_refused_total", "poller" => self.config.name.clone()).increment(1);
        let event_id = event.get("eventId").and_then(Value::as_str).unwrap_or("?");
        tracing::warn!(poller = %self.config.name, event_id, reason, "Refused a polled event.");
    }
}
