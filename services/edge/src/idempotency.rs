//! Idempotency on `eventId`, in Redis so it holds across edge restarts and instances.
//!
//! A request first claims the id with `SET NX` and a short expiry (the delivery timeout plus a
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

    pub async fn claim(&self, event_id: &str, body_sha256: &str) -> Result<Claim, redis::RedisError> {
        let mut redis = self.redis.clone();
        let key = self.key(event_id);
        let pending = serde_json::to_string(&Entry { body_sha256: body_sha256.to_owned(), receipt: None })
            .expect("entry serialises");
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&pending)
            .arg("NX")
            .arg("PX")
            .arg(self.pending_ttl_ms)
            .query_async(&mut redis)
            .await?;
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let existing: Option<String> = redis.get(&key).await?;
        let Some(entry) = existing.and_then(|e| serde_json::from_str::<Entry>(&e).ok()) else {
            // Expired between SET and GET: try once more.
            return Box::pin(self.claim(event_id, body_sha256)).await;
        };
        Ok(match (entry.body_sha256 == body_sha256, entry.receipt) {
            (false, _) => Claim::Conflict,
            (true, Some(receipt)) => Claim::Duplicate(receipt),
            (true, None) => Claim::InFlight,
        })
    }

    pub async fn complete(
        &self,
        event_id: &str,
        body_sha256: &str,
        receipt: &Receipt,
    ) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        let entry =
            serde_json::to_string(&Entry { body_sha256: body_sha256.to_owned(), receipt: Some(receipt.clone()) })
                .expect("entry serialises");
        redis.set_ex(self.key(event_id), entry, self.done_ttl_s).await
    }

    /// Gives the id back after a failed produce, so the producer's retry is not a conflict.
    pub async fn release(&self, event_id: &str) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        redis.del(self.key(event_id)).await
    }
}
