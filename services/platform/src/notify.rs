//! Delivers notifications a service decided (rows of its `notifications` table in state
//! `pending`) to Slack incoming webhooks and to email over SMTP (`lettre`), oldest first, with
//! retries and capped exponential backoff: a receiver that is down delays a notification, never
//! drops it. Each row is locked (`FOR UPDATE SKIP LOCKED`) while it is sent and marked
//! `delivered` in the same transaction, so instances and restarts never send one row twice; only a
//! crash between the receiver's acceptance and that commit sends it again (the email keeps one
//! `Message-ID` built from the row's subject, kind and channel, so a mail system drops the copy).
//!
//! Used by the health evaluator (alerts) and the digest (daily digests). The table is the
//! service's own (in its schema), [`NOTIFICATIONS_TABLE_SQL`] or one with at least its columns;
//! the service inserts its rows in the transaction that decides them, so a decision is never
//! without its notifications.

use std::{collections::BTreeMap, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub enabled: bool,
    pub poll_interval_ms: u64,
    /// A failed delivery is retried after this delay, doubling up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long one send may take before it counts as failed.
    pub timeout_ms: u64,
    /// Named channels, referred to by `[alerts].primary` and `.escalation`.
    pub channels: BTreeMap<String, ChannelConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelConfig {
    /// A Slack incoming webhook (the URL is the secret).
    Slack { webhook_url: SecretString },
    /// SMTP: `smtp://host:port` (plain, e.g. a local relay), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://user:password@host` (TLS): the URL may hold credentials.
    Email { smtp_url: SecretString, from: String, to: Vec<String> },
}

/// The table the notifier reads and writes, as a service's migration. `subject` is what the
/// notification is about (an alert id, a digest's day), `kind` what happened to it (`firing`,
/// `resolved`, `daily`); one notification per subject, kind and channel.
pub const NOTIFICATIONS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS notifications (
    id              BIGSERIAL PRIMARY KEY,
    subject         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,              -- pending | delivered | suppressed
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    last_error      TEXT,
    UNIQUE (subject, kind, channel)
);";

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("channel `{0}`: {1}")]
    Channel(String, String),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
}

enum Channel {
    Slack { http: reqwest::Client, url: SecretString },
    Email { transport: Box<AsyncSmtpTransport<Tokio1Executor>>, from: Mailbox, to: Vec<Mailbox> },
}

pub struct Notifier {
    pool: PgPool,
    channels: BTreeMap<String, Channel>,
    config: NotifyConfig,
}

impl Notifier {
    /// Builds every channel; a bad address or URL is refused here, naming the channel.
    pub fn new(pool: PgPool, config: NotifyConfig) -> Result<Notifier, NotifyError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut channels = BTreeMap::new();
        for (name, channel) in &config.channels {
            let bad = |what: String| NotifyError::Channel(name.clone(), what);
            let built = match channel {
                ChannelConfig::Slack { webhook_url } => Channel::Slack {
                    http: reqwest::Client::builder().timeout(timeout).build().map_err(|e| bad(e.to_string()))?,
                    url: webhook_url.clone(),
                },
                ChannelConfig::Email { smtp_url, from, to } => Channel::Email {
                    transport: Box::new(
                        AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose_secret())
                            .map_err(|_| bad("`smtp_url` is not an smtp:// or smtps:// URL".into()))?
                            .timeout(Some(timeout))
                            .build(),
                    ),
                    from: from.parse().map_err(|_| bad(format!("`from` is not an address: {from}")))?,
                    to: to
                        .iter()
                        .map(|a| {
                            a.parse().map_err(|_| bad(format!("`to` holds something that is not an address: {a}")))
                        })
                        .collect::<Result<_, _>>()?,
                },
            };
            channels.insert(name.clone(), built);
        }
        Ok(Notifier { pool, channels, config })
    }

    /// Whether every channel a route names exists.
    pub fn knows(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// Delivers what is due; returns how many were delivered.
    pub async fn deliver_due(&self) -> Result<usize, NotifyError> {
        let mut delivered = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let row: Option<(i64, String, String, String, String, String, i32)> = sqlx::query_as(
                "SELECT id, subject, kind, channel, title, body, attempts FROM notifications
                 WHERE state = 'pending' AND next_attempt_at <= now()
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((id, subject, kind, channel, title, body, attempts)) = row else { return Ok(delivered) };
            match self.send(&channel, &subject, &kind, &title, &body).await {
                Ok(()) => {
                    sqlx::query(
                        "UPDATE notifications SET state = 'delivered', delivered_at = now(), attempts = attempts + 1
                         WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    delivered += 1;
                    metrics::counter!("ct_notifications_delivered_total", "channel" => channel).increment(1);
                }
                Err(reason) => {
                    let delay = backoff(&self.config, attempts);
                    sqlx::query(
                        "UPDATE notifications SET attempts = attempts + 1, last_error = $2,
                             next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&reason)
                    .bind(delay.as_secs_f64())
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    metrics::counter!("ct_notification_failures_total", "channel" => channel.clone()).increment(1);
                    tracing::warn!(notification = id, %channel, attempt = attempts + 1, error = %reason,
                        retry_in_ms = delay.as_millis() as u64, "Notification not delivered; it will be retried.");
                }
            }
        }
    }

    async fn send(&self, channel: &str, subject: &str, kind: &str, title: &str, body: &str) -> Result<(), String> {
        match self.channels.get(channel) {
            None => Err(format!("no channel `{channel}` is configured")),
            Some(Channel::Slack { http, url }) => {
                let text = format!("*{title}*\n{body}");
                let response = http
                    .post(url.expose_secret())
                    .json(&json!({"text": text}))
                    .send()
                    .await
                    .map_err(|e| format!("Slack webhook: {}", e.without_url()))?;
                match response.status() {
                    status if status.is_success() => Ok(()),
                    status => Err(format!("Slack webhook answered {status}")),
                }
            }
            Some(Channel::Email { transport, from, to }) => {
                let mut message = Message::builder()
                    .from(from.clone())
                    .subject(title)
                    .message_id(Some(format!("<{}.{kind}.{channel}@control-tower>", subject.replace(['@', ':'], "."))))
                    .header(ContentType::TEXT_PLAIN);
                for address in to {
                    message = message.to(address.clone());
                }
                let message = message.body(body.to_owned()).map_err(|e| format!("email: {e}"))?;
                transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
            }
        }
    }
}

/// The delay before attempt `attempts + 1`: base doubling, capped.
fn backoff(config: &NotifyConfig, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 20)).unwrap_or(20);
    let millis = config.backoff_base_ms.saturating_mul(1u64 << exponent).min(config.backoff_max_ms);
    Duration::from_millis(millis)
}

/// Delivers until `shutdown`. With no channel configured nothing can be due, so it does not poll.
pub async fn run(notifier: Notifier, shutdown: CancellationToken) {
    if notifier.channels.is_empty() {
        tracing::info!("No notification channel configured: the notifier does not run.");
        return;
    }
    let interval = Duration::from_millis(notifier.config.poll_interval_ms);
    let mut failing = false;
    while !shutdown.is_cancelled() {
        match notifier.deliver_due().await {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("The notifier reaches Postgres again.");
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "The notifier cannot read its notifications; retrying.");
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = NotifyConfig {
            enabled: true,
            poll_interval_ms: 100,
            backoff_base_ms: 1000,
            backoff_max_ms: 60_000,
            timeout_ms: 10_000,
            channels: BTreeMap::new(),
        };
        let delays: Vec<u64> = (0..8).map(|a| backoff(&config, a).as_millis() as u64).collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    }
}
