//! The edge's typed configuration (defaults in `config.default.toml`).

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use ct_core::Source;
use ct_platform::config::{ConfigError, KafkaConfig, Profile, RedisConfig, RegistryConfig, TelemetryConfig};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Compiled-in defaults; the dev credentials (`config.dev.toml`) only under the dev profile.
pub const DEFAULTS: ct_platform::config::Defaults = ct_platform::config::Defaults {
    base: include_str!("../config.default.toml"),
    dev: include_str!("../config.dev.toml"),
};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub events: EventsConfig,
    pub registry: RegistryConfig,
    pub redis: RedisConfig,
    pub idempotency: IdempotencyConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub pollers: Vec<PollerConfig>,
    /// The system catalogue (unset: the one the project ships): who may send whose heartbeats.
    #[serde(default)]
    pub catalogue: ct_platform::catalogue::CatalogueConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub max_batch_bytes: usize,
    #[serde(flatten)]
    pub limits: ct_platform::http::HttpLimits,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventsConfig {
    pub topic: String,
    pub delivery_timeout_ms: u64,
    pub max_in_flight_messages: u32,
    pub max_future_skew_s: i64,
    pub redaction_salt: SecretString,
    pub max_batch_events: usize,
    pub max_events_in_progress: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencyConfig {
    pub ttl_s: u64,
    /// How long receipts may wait for a claim to share its Redis round trip.
    pub receipt_linger_ms: u64,
    /// How long a claim that finds the Redis writer idle waits for others to share its round trip.
    pub claim_linger_ms: u64,
}

#[derive(Clone, Deserialize)]
pub struct AuthConfig {
    pub hmac_secrets: Vec<SecretString>,
    pub signature_tolerance_s: i64,
    /// Refuse `X-CT-Signature` without a signed `X-CT-Timestamp` (replay protection).
    #[serde(default)]
    pub require_signed_timestamp: bool,
    /// Token -> source. The tokens are secrets: `Debug` shows only how many there are.
    pub producer_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hmac_secrets", &self.hmac_secrets)
            .field("signature_tolerance_s", &self.signature_tolerance_s)
            .field("require_signed_timestamp", &self.require_signed_timestamp)
            .field("producer_tokens", &format_args!("[{} redacted]", self.producer_tokens.len()))
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitConfig {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PollerConfig {
    pub name: String,
    pub url: String,
    pub source: String,
    pub interval_ms: u64,
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// A fetch that takes longer (connecting and reading the page) fails and is retried next interval.
    #[serde(default = "default_poll_timeout_ms")]
    pub timeout_ms: u64,
    /// A page larger than this is refused unread beyond the limit.
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: usize,
}

fn default_poll_timeout_ms() -> u64 {
    10_000
}

fn default_max_page_bytes() -> usize {
    4 * 1024 * 1024
}

pub const DEV_SECRET: &str = "dev-webhook-secret";
pub const DEV_TOKEN_PREFIX: &str = "dev-token-";
pub const DEV_REDACTION_SALT: &str = "dev-redaction-salt";

impl Config {
    /// The dev defaults on a test's slice: its broker, events topic, Redis and registry, port 0,
    /// and a rate limit no test reaches.
    pub fn for_slice(slice: &ct_platform::topics::Slice) -> Config {
        let mut config: Config =
            ct_platform::config::extract(ct_platform::config::figment(DEFAULTS, None).expect("no file to miss"))
                .expect("the defaults are valid");
        config.http.listen = "127.0.0.1:0".parse().expect("literal address");
        config.kafka = slice.kafka.clone();
        config.events.topic = slice.topics.events.clone();
        config.registry.url = slice.registry_url.clone();
        config.redis = slice.redis.clone();
        config.rate_limit.per_minute = 60_000;
        config.rate_limit.burst = 10_000;
        config
    }

    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = ct_platform::config::load(DEFAULTS, file)?;
        config.validate()?;
        Ok(config)
    }

    /// Rules the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rule = |message: String| Err(ConfigError::Rule(message));
        if self.auth.hmac_secrets.is_empty() {
            return rule("auth.hmac_secrets must list at least one secret".into());
        }
        for (token, source) in &self.auth.producer_tokens {
            // A token may be bound to `control_tower` too: Control Tower's own announcements.
            match source.parse::<Source>() {
                Ok(_) => {}
                Err(_) => return rule(format!("auth.producer_tokens: token bound to unknown source `{source}`")),
            }
            if token.len() < 8 {
                return rule("auth.producer_tokens: tokens must be at least 8 characters".into());
            }
        }
        for poller in &self.pollers {
            if !matches!(poller.source.parse::<Source>(), Ok(s) if Source::PRODUCERS.contains(&s)) {
                return rule(format!("pollers.{}: unknown source `{}`", poller.name, poller.source));
            }
            if poller.interval_ms < 100 {
                return rule(format!("pollers.{}: interval_ms must be at least 100", poller.name));
            }
        }
        if self.events.max_batch_events == 0 || self.events.max_events_in_progress < self.events.max_batch_events {
            return rule("events.max_events_in_progress must be at least events.max_batch_events (> 0)".into());
        }
        let pending_s = (self.events.delivery_timeout_ms / 1000) + 5;
        if self.idempotency.ttl_s <= pending_s {
            return rule(format!(
                "idempotency.ttl_s must be longer than a claim lives (events.delivery_timeout_ms + 5 s = {pending_s} s)"
            ));
        }
        // A receipt held longer than its claim lives could find the claim expired and taken by a
        // retry through another instance; a second is already far past any round trip.
        if self.idempotency.receipt_linger_ms > 1_000 {
            return rule("idempotency.receipt_linger_ms must be at most 1000 (a claim must outlive it)".into());
        }
        if self.idempotency.claim_linger_ms > 100 {
            return rule("idempotency.claim_linger_ms must be at most 100 (every request waits for it)".into());
        }
        if self.rate_limit.per_minute == 0 || self.rate_limit.burst == 0 {
            return rule("rate_limit.per_minute and rate_limit.burst must be positive".into());
        }
        if self.events.redaction_salt.expose_secret().is_empty() {
            return rule("events.redaction_salt must be set".into());
        }
        if self.profile == Profile::Production {
            if self.auth.hmac_secrets.iter().any(|s| s.expose_secret() == DEV_SECRET) {
                return rule("the dev HMAC secret is refused under the production profile".into());
            }
            if self.auth.producer_tokens.keys().any(|t| t.starts_with(DEV_TOKEN_PREFIX)) {
                return rule("dev producer tokens are refused under the production profile".into());
            }
            if self.auth.producer_tokens.is_empty() && self.pollers.is_empty() {
                return rule("auth.producer_tokens must list at least one token in production".into());
            }
            if self.events.redaction_salt.expose_secret() == DEV_REDACTION_SALT {
                return rule("the dev redaction salt is refused under the production profile".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        ct_platform::config::extract(ct_platform::config::figment(DEFAULTS, None).unwrap()).unwrap()
    }

    #[test]
    fn defaults_are_valid_for_dev() {
        let config = defaults();
        config.validate().unwrap();
        assert_eq!(config.auth.producer_tokens.len(), 7, "six producers and Control Tower's own");
        assert_eq!(config.http.max_body_bytes, 256 * 1024);
    }

    #[test]
    fn the_idempotency_window_outlasts_every_retry_of_a_client() {
        let config = defaults();
        let horizon = ct_client::RetryPolicy::default().horizon();
        assert_eq!(horizon, std::time::Duration::from_secs(290));
        assert!(config.idempotency.ttl_s >= 2 * horizon.as_secs(), "the rule in config.default.toml");

        let mut config = defaults();
        config.idempotency.ttl_s = 15;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("idempotency.ttl_s must be longer than a claim lives"), "{error}");

        let mut config = defaults();
        config.idempotency.receipt_linger_ms = 5_000;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("idempotency.receipt_linger_ms must be at most 1000"), "{error}");

        let mut config = defaults();
        config.idempotency.claim_linger_ms = 250;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("idempotency.claim_linger_ms must be at most 100"), "{error}");
    }

    #[test]
    fn production_refuses_dev_credentials() {
        let mut config = defaults();
        config.profile = Profile::Production;
        assert!(config.validate().unwrap_err().to_string().contains("dev HMAC secret"));
        config.auth.hmac_secrets = vec!["a-real-secret".into()];
        assert!(config.validate().unwrap_err().to_string().contains("dev producer tokens"));
        config.auth.producer_tokens = [("prod-token-123".to_owned(), "finance".to_owned())].into();
        assert!(config.validate().unwrap_err().to_string().contains("dev redaction salt"));
        config.events.redaction_salt = "a-real-salt".into();
        config.validate().unwrap();
        let printed = format!("{config:?}");
        for secret in ["a-real-secret", "prod-token-123", "a-real-salt"] {
            assert!(!printed.contains(secret), "{secret} printed by Debug");
        }
    }

    #[test]
    fn tokens_must_name_a_known_source() {
        let mut config = defaults();
        config.auth.producer_tokens.insert("token-for-mars".into(), "mars".into());
        assert!(config.validate().unwrap_err().to_string().contains("mars"));
    }

    #[test]
    fn a_whole_batch_must_fit_in_the_events_in_progress() {
        let mut config = defaults();
        config.events.max_events_in_progress = config.events.max_batch_events - 1;
        assert!(config.validate().unwrap_err().to_string().contains("max_events_in_progress"));
    }
}
