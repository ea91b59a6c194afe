//! Pull polling (work order §2): fetch events from a producer's HTTP endpoint on an interval with
//! a cursor, and feed them through the same validation, idempotency and produce path as pushes.
//!
//! Protocol: `GET <url>?cursor=<cursor>` (no `cursor` on the first call) answers
//! `{"events": [...], "next_cursor": "..."}`. The cursor is stored in Redis only after every
//! event of the page was acknowledged by the broker or refused as invalid, so a crash re-fetches
//! the page and idempotency absorbs the repeats.

use std::{sync::Arc, time::Duration};

use ct_core::Source;
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
    #[error("fetching {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
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
            message: format!("bad url {}", self.config.url),
        })?;
        if let Some(cursor) = &cursor {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let mut request = self.http.get(url.clone());
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token.expose_secret());
        }
        let fetch_error = |source| PollError::Fetch { url: url.to_string(), source };
        let page: Page = request
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(fetch_error)?
            .json()
            .await
            .map_err(fetch_error)?;
        let mut accepted = 0;
        for event in &page.events {
            let parsed = match self.ingestor.parse(event) {
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
