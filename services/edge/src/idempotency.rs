//! Idempotency on `eventId`, in Redis so it holds across edge restarts and instances.
//!
//! A request first claims the id with `SET NX GET` and a short expiry (the delivery timeout plus a
//! margin), produces, then records the result with the long expiry. If the edge dies between
//! claim and result, the claim expires by itself and the producer's retry goes through; the
//! projector's unique `event_id` keeps read models single in that rare case.
//!
//! Every claim carries its request's owner token, and completing or releasing it is a
//! compare-and-act script: a request whose claim expired (and was taken by a retry) can neither
//! release nor overwrite the new owner's claim.

use std::sync::LazyLock;

use redis::{Script, aio::ConnectionManager};
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
    /// The event's content digest ([`ct_core::avro::content_digest`]). Absent in entries written
    /// before digests were content-based (they hashed the raw body, so cannot be compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    /// The request holding the claim; only it may complete or release it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    receipt: Option<Receipt>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead and produce.
    Claimed,
    /// Done before with the same content.
    Duplicate(Receipt),
    /// Another request with the same content is being produced right now.
    InFlight,
    /// Seen before with different content.
    Conflict,
}

/// Records receipts: `KEYS[i]` gets `ARGV[2 + i]` for `ARGV[2]` seconds when it is still claimed by
/// `ARGV[1]`, or no longer held at all (the claim expired and nobody took it: the event is stored,
/// so its receipt is still worth keeping). Returns how many were written.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local written = 0
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  local ours = not held
  if held then
    local ok, entry = pcall(cjson.decode, held)
    ours = ok and type(entry) == 'table' and entry.owner == ARGV[1] and entry.receipt == cjson.null
  end
  if ours then
    redis.call('SET', key, ARGV[2 + i], 'EX', ARGV[2])
    written = written + 1
  end
end
return written
",
    )
});

/// Releases the claims of `KEYS` still held by `ARGV[1]`. Returns how many were released.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local released = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held then
    local ok, entry = pcall(cjson.decode, held)
    if ok and type(entry) == 'table' and entry.owner == ARGV[1] and entry.receipt == cjson.null then
      redis.call('DEL', key)
      released = released + 1
    end
  end
end
return released
",
    )
});

/// A request's owner token: random, so no other request can guess it.
pub fn new_owner() -> String {
    hex::encode(rand::random::<[u8; 16]>())
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

    /// `PING`, bounded by the connection's response timeout (`redis.timeout_ms`).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query_async(&mut self.redis.clone()).await
    }

    /// Claims each `(event_id, digest)` for `owner` in one pipelined round trip: `SET NX GET`
    /// either takes the id or returns what holds it, atomically.
    pub async fn claim_all(&self, items: &[(&str, &str)], owner: &str) -> Result<Vec<Claim>, redis::RedisError> {
        let mut pipeline = redis::pipe();
        for (event_id, digest) in items {
            let entry = Entry { digest: Some((*digest).to_owned()), owner: Some(owner.to_owned()), receipt: None };
            pipeline
                .cmd("SET")
                .arg(self.key(event_id))
                .arg(serde_json::to_string(&entry).expect("entry serialises"))
                .arg("NX")
                .arg("PX")
                .arg(self.pending_ttl_ms)
                .arg("GET");
        }
        let held: Vec<Option<String>> = pipeline.query_async(&mut self.redis.clone()).await?;
        Ok(items.iter().zip(held).map(|((_, digest), held)| Self::judge(digest, held)).collect())
    }

    fn judge(digest: &str, held: Option<String>) -> Claim {
        let Some(held) = held else { return Claim::Claimed };
        match serde_json::from_str::<Entry>(&held) {
            Ok(Entry { digest: Some(theirs), .. }) if theirs != digest => Claim::Conflict,
            Ok(Entry { receipt: Some(receipt), .. }) => Claim::Duplicate(receipt),
            Ok(Entry { receipt: None, .. }) => Claim::InFlight,
            // Not ours to overwrite; refusing is safer than producing twice.
            Err(_) => Claim::Conflict,
        }
    }

    /// Records each produced event's receipt with the long expiry, in one round trip, where the
    /// claim is still `owner`'s (or expired unclaimed). Returns how many were recorded.
    pub async fn complete_all(
        &self,
        items: &[(&str, &str, &Receipt)],
        owner: &str,
    ) -> Result<usize, redis::RedisError> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut invocation = COMPLETE.prepare_invoke();
        invocation.arg(owner).arg(self.done_ttl_s);
        for (event_id, digest, receipt) in items {
            let entry = Entry { digest: Some((*digest).to_owned()), owner: None, receipt: Some((*receipt).clone()) };
            invocation.key(self.key(event_id)).arg(serde_json::to_string(&entry).expect("entry serialises"));
        }
        invocation.invoke_async(&mut self.redis.clone()).await
    }

    /// Gives ids back after a failed produce (or a refused batch), so the producer's retry is not
    /// a conflict; only claims `owner` still holds. Returns how many were released.
    pub async fn release_all(&self, event_ids: &[&str], owner: &str) -> Result<usize, redis::RedisError> {
        if event_ids.is_empty() {
            return Ok(0);
        }
        let mut invocation = RELEASE.prepare_invoke();
        invocation.arg(owner);
        for event_id in event_ids {
            invocation.key(self.key(event_id));
        }
        invocation.invoke_async(&mut self.redis.clone()).await
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

    fn entry(digest: &str, receipt: Option<Receipt>) -> Option<String> {
        Some(serde_json::to_string(&Entry { digest: Some(digest.into()), owner: Some("o".into()), receipt }).unwrap())
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
        // Written before digests were content-based: the raw-body hash cannot be compared.
        let legacy = r#"{"body_sha256":"b","receipt":{"topic":"t","partition":1,"offset":7}}"#;
        assert!(matches!(IdempotencyStore::judge("a", Some(legacy.into())), Claim::Duplicate(_)));
    }
}
