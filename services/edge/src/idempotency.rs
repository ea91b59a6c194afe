//! Idempotency on `eventId`, in Redis so it holds across edge restarts and instances.
//!
//! A request first claims the id with `SET NX GET` and a short expiry (the delivery timeout plus a
//! margin), produces, then records the result with the long expiry. If the edge dies between
//! claim and result, the claim expires by itself and the producer's retry goes through; the
//! projector's unique `event_id` keeps read models single in that rare case.

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

/// What a finished request answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    body_sha256: String,
    receipt: Option<Receipt>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead and produce.
    Claimed,
    /// Done before with the same body.
    Duplicate(Receipt),
    /// Another request with the same body is being produced right now.
    InFlight,
    /// Seen before with a different body.
    Conflict,
}

#[derive(Clone)]
pub struct IdempotencyStore {
    redis: ConnectionManager,
    prefix: String,
    pending_ttl_ms: u64,
    done_ttl_s: u64,
}

impl IdempotencyStore {
    pub fn new(redis: ConnectionManager, prefix: &str, pending_ttl_ms: u64, done_ttl_s: u64) -> Self {
        Self { redis, prefix: format!("{prefix}:idem:"), pending_ttl_ms, done_ttl_s }
    }

    fn key(&self, event_id: &str) -> String {
        format!("{}{event_id}", self.prefix)
    }

    fn pending_entry(body_sha256: &str) -> String {
        serde_json::to_string(&Entry { body_sha256: body_sha256.to_owned(), receipt: None }).expect("entry serialises")
    }

    /// `SET NX GET` needs Redis 7.0 or newer; an older server would fail every claim, so the edge
    /// refuses to start instead. Returns the server's version.
    pub async fn require_redis_7(&self) -> Result<String, String> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|e| format!("INFO server failed: {e}"))?;
        let version = redis_version(&info).ok_or("INFO server has no redis_version")?;
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major < 7 {
            return Err(format!("Redis {version} is too old: idempotency needs Redis 7.0 or newer (SET NX GET)"));
        }
        Ok(version.to_owned())
    }

    /// Claims each `(event_id, body_sha256)` in one pipelined round trip: `SET NX GET` either
    /// takes the id or returns what holds it, atomically.
    pub async fn claim_all(&self, items: &[(&str, &str)]) -> Result<Vec<Claim>, redis::RedisError> {
        let mut pipeline = redis::pipe();
        for (event_id, body_sha256) in items {
            pipeline
                .cmd("SET")
                .arg(self.key(event_id))
                .arg(Self::pending_entry(body_sha256))
                .arg("NX")
                .arg("PX")
                .arg(self.pending_ttl_ms)
                .arg("GET");
        }
        let held: Vec<Option<String>> = pipeline.query_async(&mut self.redis.clone()).await?;
        Ok(items.iter().zip(held).map(|((_, body_sha256), held)| Self::judge(body_sha256, held)).collect())
    }

    fn judge(body_sha256: &str, held: Option<String>) -> Claim {
        let Some(held) = held else { return Claim::Claimed };
        match serde_json::from_str::<Entry>(&held) {
            Ok(entry) if entry.body_sha256 != body_sha256 => Claim::Conflict,
            Ok(Entry { receipt: Some(receipt), .. }) => Claim::Duplicate(receipt),
            Ok(Entry { receipt: None, .. }) => Claim::InFlight,
            // Not ours to overwrite; refusing is safer than producing twice.
            Err(_) => Claim::Conflict,
        }
    }

    /// Records each produced event's receipt with the long expiry, in one round trip.
    pub async fn complete_all(&self, items: &[(&str, &str, &Receipt)]) -> Result<(), redis::RedisError> {
        let mut pipeline = redis::pipe();
        for (event_id, body_sha256, receipt) in items {
            let entry = serde_json::to_string(&Entry {
                body_sha256: (*body_sha256).to_owned(),
                receipt: Some((*receipt).clone()),
            })
            .expect("entry serialises");
            pipeline.set_ex(self.key(event_id), entry, self.done_ttl_s).ignore();
        }
        pipeline.query_async(&mut self.redis.clone()).await
    }

    /// Gives ids back after a failed produce (or a refused batch), so the producer's retry is not
    /// a conflict.
    pub async fn release_all(&self, event_ids: &[&str]) -> Result<(), redis::RedisError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = event_ids.iter().map(|id| self.key(id)).collect();
        self.redis.clone().del(keys).await
    }
}

fn redis_version(info: &str) -> Option<&str> {
    info.lines().find_map(|line| line.strip_prefix("redis_version:")).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info), Some("7.0.15"));
        assert_eq!(redis_version("# Server\r\n"), None);
    }

    fn entry(body_sha256: &str, receipt: Option<Receipt>) -> Option<String> {
        Some(serde_json::to_string(&Entry { body_sha256: body_sha256.into(), receipt }).unwrap())
    }

    #[test]
    fn what_holds_an_id_decides_the_claim() {
        let receipt = Receipt { topic: "t".into(), partition: 1, offset: 7 };
        assert_eq!(IdempotencyStore::judge("a", None), Claim::Claimed);
        assert_eq!(IdempotencyStore::judge("a", entry("a", Some(receipt.clone()))), Claim::Duplicate(receipt.clone()));
        assert_eq!(IdempotencyStore::judge("a", entry("a", None)), Claim::InFlight);
        assert_eq!(IdempotencyStore::judge("a", entry("b", Some(receipt))), Claim::Conflict);
        assert_eq!(IdempotencyStore::judge("a", entry("b", None)), Claim::Conflict);
        assert_eq!(IdempotencyStore::judge("a", Some("not json".into())), Claim::Conflict);
    }
}
