//! Redis connections and prefixed keys.

use redis::aio::ConnectionManager;

use crate::config::RedisConfig;

/// A reconnecting, multiplexed connection.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(config.url.as_str())?;
    ConnectionManager::new(client).await
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
