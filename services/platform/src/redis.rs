//! Redis connections and prefixed keys.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// A reconnecting, multiplexed connection whose every command and connection attempt gives up
/// after `config.timeout_ms`, so a Redis that is down or hung fails calls instead of holding them.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(config.url.as_str())?;
    let timeout = std::time::Duration::from_millis(config.timeout_ms);
    let manager = ConnectionManagerConfig::new()
        .set_response_timeout(timeout)
        .set_connection_timeout(timeout)
        .set_number_of_retries(1)
        .set_max_delay(timeout.as_millis().try_into().unwrap_or(u64::MAX));
    ConnectionManager::new_with_config(client, manager).await
}

/// Builds keys under one prefix, so tests and tenants never collide.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            if !key.is_empty() {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_join_parts_under_the_prefix() {
        assert_eq!(Keys::new("ct").key(&["system", "portal"]), "ct:system:portal");
        assert_eq!(Keys::new("").key(&["a"]), "a");
    }
}
