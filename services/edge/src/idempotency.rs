//! Idempotency on `eventId`, in Redis so it holds across edge restarts and instances.
//!
//! A request first claims the id with `SET NX GET` and a short expiry (the delivery timeout plus a
//! margin), produces, then records the result with the long expiry (`idempotency.ttl_s`: the
//! window in which a retry is answered as a duplicate). If the edge dies between claim and
//! result, the claim expires by itself and the producer's retry goes through; the read models'
//! unique `event_id` keeps them single in that rare case, and for retries after the window.
//!
//! Every claim carries its request's owner token, and completing or releasing it is a
//! compare-and-act script: a request whose claim expired (and was taken by a retry) can neither
//! release nor overwrite the new owner's claim.
//!
//! Entries are binary, so a remembered event costs little more than its key (ARCHITECTURE.md
//! gives the bytes per event): a claim is `P`, the 16-byte fingerprint of the content digest and
//! the owner; a receipt is `D`, the fingerprint, the partition (4 bytes) and the offset (8 bytes),
//! big-endian. The topic is the edge's own and is not stored.
//!
//! Every request's commands go through one writer task, which sends what is waiting as one
//! pipeline per round trip: at thousands of events per second, claims and receipts of many
//! requests share a write and a read instead of costing two each.
//!
//! A request waits for its claim, but not for its receipt or release
//! ([`IdempotencyStore::complete_later`], [`IdempotencyStore::release_later`]). The writer runs
//! one round trip at a time on one connection, with a round trip's receipts and releases before
//! its claims, so a claim finds every receipt and release submitted before it to the same writer
//! (unless that round trip failed: then they are logged, as they always were): a retry through
//! the same edge after a 202 is answered as a duplicate. A receipt that is all the writer has
//! waits up to `idempotency.receipt_linger_ms` (5 ms) for a claim to share its round trip, so under
//! load receipts cost no write of their own. Through another edge instance, a retry in the
//! meantime (the linger and the round trip) gets 503 `in_flight` and is retried. Claims that queue
//! while a round trip is out go together in the next; a claim that finds the writer idle waits up
//! to `idempotency.claim_linger_ms` (1 ms) for others, so at a few thousand events per second
//! requests do not each cost Redis a round trip.
//! At shutdown the edge waits for the writer ([`IdempotencyStore::flush`]) after the last request.
//! Waiting per request would change nothing else but the request's latency and CPU: a receipt
//! that cannot be written was only ever logged (the record is durable either way).

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

/// What a finished request answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
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

/// Why the store could not answer (Redis down, timed out or refusing).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

const CLAIM_TAG: u8 = b'P';
const RECEIPT_TAG: u8 = b'D';
const FINGERPRINT_LEN: usize = 16;
/// A receipt: tag, fingerprint, partition, offset.
const RECEIPT_LEN: usize = 1 + FINGERPRINT_LEN + 4 + 8;

/// 16 bytes of the content digest: enough to tell two bodies of one `eventId` apart, at a quarter
/// of the digest's hex text. The edge's digests are SHA-256 hex, so their first 16 bytes are taken
/// as they are (no hashing per event); any other text is hashed first.
fn fingerprint(digest: &str) -> [u8; FINGERPRINT_LEN] {
    let mut fingerprint = [0; FINGERPRINT_LEN];
    let leading_hex = digest.get(..2 * FINGERPRINT_LEN).map(|hex| hex::decode_to_slice(hex, &mut fingerprint));
    if !matches!(leading_hex, Some(Ok(()))) {
        fingerprint.copy_from_slice(&Sha256::digest(digest.as_bytes())[..FINGERPRINT_LEN]);
    }
    fingerprint
}

fn claim_entry(digest: &str, owner: &str) -> Vec<u8> {
    let mut entry = Vec::with_capacity(1 + FINGERPRINT_LEN + owner.len());
    entry.push(CLAIM_TAG);
    entry.extend_from_slice(&fingerprint(digest));
    entry.extend_from_slice(owner.as_bytes());
    entry
}

fn receipt_entry(digest: &str, receipt: &Receipt) -> Vec<u8> {
    let mut entry = Vec::with_capacity(RECEIPT_LEN);
    entry.push(RECEIPT_TAG);
    entry.extend_from_slice(&fingerprint(digest));
    entry.extend_from_slice(&receipt.partition.to_be_bytes());
    entry.extend_from_slice(&receipt.offset.to_be_bytes());
    entry
}

/// Entries of the edge before they were binary: JSON, read until they expire (they were written
/// with the old 7-day window).
#[derive(Deserialize)]
struct LegacyEntry {
    #[serde(default)]
    digest: Option<String>,
    receipt: Option<Receipt>,
}

/// Records receipts: `KEYS[i]` gets `ARGV[2i + 1]` for `ARGV[1]` seconds when it is still claimed
/// by owner `ARGV[2i]`, or no longer held at all (the claim expired and nobody took it: the event
/// is stored, so its receipt is still worth keeping). Returns 1 or 0 per key.
static COMPLETE: &str = r"
local written = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  written[i] = 0
  if (not held) or (string.byte(held, 1) == 80 and string.sub(held, 18) == ARGV[2 * i]) then
    redis.call('SET', key, ARGV[2 * i + 1], 'EX', ARGV[1])
    written[i] = 1
  end
end
return written
";

/// Releases each claim `KEYS[i]` still held by owner `ARGV[i]`. Returns 1 or 0 per key.
static RELEASE: &str = r"
local released = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  released[i] = 0
  if held and string.byte(held, 1) == 80 and string.sub(held, 18) == ARGV[i] then
    redis.call('DEL', key)
    released[i] = 1
  end
end
return released
";

/// A request's owner token: random, so no other request can guess it.
pub fn new_owner() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One request's commands, waiting for the writer's next round trip.
enum Op {
    /// `SET key entry NX PX <pending> GET` per key; answers what held each key.
    Claim { entries: Vec<(String, Vec<u8>)>, reply: Reply<Vec<Option<Vec<u8>>>> },
    /// The `COMPLETE` script's keys with their owner and receipt entry; answers how many were
    /// written, or logs a failure when nobody waits.
    Complete { entries: Vec<(String, Vec<u8>)>, owner: String, reply: Option<Reply<usize>> },
    /// The `RELEASE` script's keys; answers how many were released, or logs a failure when
    /// nobody waits.
    Release { keys: Vec<String>, owner: String, reply: Option<Reply<usize>> },
    /// Answered once every command submitted before it has had its round trip.
    Flush { reply: oneshot::Sender<()> },
}

/// Keys in one pipeline at most: bounds a round trip's size (a batch request's keys stay together).
const MAX_KEYS_PER_ROUND_TRIP: usize = 4096;

/// How long the writer holds commands for others to share their round trip, like a Kafka
/// producer's `linger.ms` (`idempotency.receipt_linger_ms`, `idempotency.claim_linger_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lingers {
    /// Receipts not waited for, when they are all the writer has, wait this long for a command
    /// that is waited for (a claim) to share its round trip.
    pub receipt: Duration,
    /// A claim that finds the writer idle waits this long for other claims to share its round
    /// trip; a claim that queued while a round trip was out goes with the next one at once.
    pub claim: Duration,
}

/// A 5 ms receipt linger and no claim linger: what [`IdempotencyStore::new`] uses. The edge's
/// configuration sets both (`idempotency.claim_linger_ms` defaults to 1 ms there).
impl Default for Lingers {
    fn default() -> Self {
        Self { receipt: Duration::from_millis(5), claim: Duration::ZERO }
    }
}

#[derive(Clone, Copy)]
struct WriterSettings {
    pending_ttl_ms: u64,
    done_ttl_s: u64,
    lingers: Lingers,
}

#[derive(Clone)]
pub struct IdempotencyStore {
    redis: ConnectionManager,
    writer: mpsc::UnboundedSender<Op>,
    prefix: String,
    topic: String,
}

impl IdempotencyStore {
    /// A store for the receipts of `topic`'s records, under `<prefix>:idem:`; starts its writer
    /// task, which ends when the last clone of the store is dropped.
    pub fn new(redis: ConnectionManager, prefix: &str, topic: &str, pending_ttl_ms: u64, done_ttl_s: u64) -> Self {
        Self::with_lingers(redis, prefix, topic, pending_ttl_ms, done_ttl_s, Lingers::default())
    }

    /// [`IdempotencyStore::new`] whose writer holds commands for others to share their round
    /// trip as `lingers` says.
    pub fn with_lingers(
        redis: ConnectionManager,
        prefix: &str,
        topic: &str,
        pending_ttl_ms: u64,
        done_ttl_s: u64,
        lingers: Lingers,
    ) -> Self {
        let (writer, ops) = mpsc::unbounded_channel();
        let settings = WriterSettings { pending_ttl_ms, done_ttl_s, lingers };
        tokio::spawn(write_loop(redis.clone(), ops, settings));
        Self { redis, writer, prefix: format!("{prefix}:idem:"), topic: topic.to_owned() }
    }

    fn key(&self, event_id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + event_id.len());
        key.push_str(&self.prefix);
        key.push_str(event_id);
        key
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

    async fn submit<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(op(reply)).map_err(|_| StoreError("the idempotency writer stopped".into()))?;
        answer.await.map_err(|_| StoreError("the idempotency writer stopped".into()))?
    }

    /// Claims each `(event_id, digest)` for `owner` in one round trip: `SET NX GET` either takes
    /// the id or returns what holds it, atomically.
    pub async fn claim_all(&self, items: &[(&str, &str)], owner: &str) -> Result<Vec<Claim>, StoreError> {
        let entries = items.iter().map(|(event_id, digest)| (self.key(event_id), claim_entry(digest, owner))).collect();
        let held = self.submit(|reply| Op::Claim { entries, reply }).await?;
        Ok(items.iter().zip(held).map(|((_, digest), held)| judge(&self.topic, digest, held.as_deref())).collect())
    }

    fn receipts(&self, items: &[(&str, &str, &Receipt)]) -> Vec<(String, Vec<u8>)> {
        items.iter().map(|(event_id, digest, receipt)| (self.key(event_id), receipt_entry(digest, receipt))).collect()
    }

    /// Records each produced event's receipt with the long expiry, in one round trip, where the
    /// claim is still `owner`'s (or expired unclaimed). Returns how many were recorded.
    pub async fn complete_all(&self, items: &[(&str, &str, &Receipt)], owner: &str) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let entries = self.receipts(items);
        self.submit(|reply| Op::Complete { entries, owner: owner.to_owned(), reply: Some(reply) }).await
    }

    /// [`IdempotencyStore::complete_all`] without waiting: the writer logs a failure. A claim of
    /// these ids submitted later finds the receipts.
    pub fn complete_later(&self, items: &[(&str, &str, &Receipt)], owner: &str) {
        if items.is_empty() {
            return;
        }
        let op = Op::Complete { entries: self.receipts(items), owner: owner.to_owned(), reply: None };
        if self.writer.send(op).is_err() {
            tracing::warn!(events = items.len(), "The idempotency writer stopped; receipts not recorded.");
        }
    }

    /// Waits until every command submitted before has had its round trip (the receipts and
    /// releases not waited for included): the edge's last step at shutdown.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.writer.send(Op::Flush { reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// Gives ids back after a failed produce (or a refused batch), so the producer's retry is not
    /// a conflict; only claims `owner` still holds. Returns how many were released.
    pub async fn release_all(&self, event_ids: &[&str], owner: &str) -> Result<usize, StoreError> {
        if event_ids.is_empty() {
            return Ok(0);
        }
        let keys = event_ids.iter().map(|event_id| self.key(event_id)).collect();
        self.submit(|reply| Op::Release { keys, owner: owner.to_owned(), reply: Some(reply) }).await
    }

    /// [`IdempotencyStore::release_all`] without waiting: the writer logs a failure, and the
    /// claims expire by themselves. A retry's claim is sent after the release.
    pub fn release_later(&self, event_ids: &[&str], owner: &str) {
        if event_ids.is_empty() {
            return;
        }
        let keys = event_ids.iter().map(|event_id| self.key(event_id)).collect();
        if self.writer.send(Op::Release { keys, owner: owner.to_owned(), reply: None }).is_err() {
            tracing::warn!(events = event_ids.len(), "The idempotency writer stopped; claims expire by themselves.");
        }
    }
}

/// What a claim found under the key decides: go, duplicate, in flight or conflict.
fn judge(topic: &str, digest: &str, held: Option<&[u8]>) -> Claim {
    let Some(held) = held else { return Claim::Claimed };
    let ours = fingerprint(digest);
    match held.split_first() {
        Some((&CLAIM_TAG, rest)) if rest.len() >= FINGERPRINT_LEN => {
            if rest[..FINGERPRINT_LEN] == ours {
                Claim::InFlight
            } else {
                Claim::Conflict
            }
        }
        Some((&RECEIPT_TAG, rest)) if held.len() == RECEIPT_LEN => {
            let (theirs, position) = rest.split_at(FINGERPRINT_LEN);
            if theirs != ours {
                return Claim::Conflict;
            }
            let (partition, offset) = position.split_at(4);
            Claim::Duplicate(Receipt {
                topic: topic.to_owned(),
                partition: i32::from_be_bytes(partition.try_into().expect("4 bytes")),
                offset: i64::from_be_bytes(offset.try_into().expect("8 bytes")),
            })
        }
        Some((b'{', _)) => match serde_json::from_slice::<LegacyEntry>(held) {
            Ok(LegacyEntry { digest: Some(theirs), .. }) if theirs != digest => Claim::Conflict,
            Ok(LegacyEntry { receipt: Some(receipt), .. }) => Claim::Duplicate(receipt),
            Ok(LegacyEntry { receipt: None, .. }) => Claim::InFlight,
            Err(_) => Claim::Conflict,
        },
        // Not ours to overwrite; refusing is safer than producing twice.
        _ => Claim::Conflict,
    }
}

/// Sends what is waiting as one pipeline, answers each request, and goes again: while one round
/// trip is out, the next one fills up.
///
/// A round trip of receipts alone would cost a write and a read for commands nobody waits for.
/// So when receipts not waited for are all there is, the writer holds them up to the receipt
/// linger for a claim (or anything else waited for) to join them: under load one comes within a
/// millisecond and they share its round trip; when idle, they go alone at the linger's end.
///
/// Under load, claims share round trips by themselves: those submitted while one is out go
/// together in the next. At a few thousand events per second there is seldom one out, and each
/// claim would cost a write and a read (and two wake-ups) of its own; so a claim that finds the
/// writer idle waits up to the claim linger for others. A flush, a release or a receipt that is
/// waited for goes at once.
async fn write_loop(mut redis: ConnectionManager, mut ops: mpsc::UnboundedReceiver<Op>, settings: WriterSettings) {
    let mut round = Round { batch: Vec::new(), keys: 0 };
    loop {
        // Commands that queued during the last round trip have waited already; only a round
        // begun by an idle writer lingers for claims.
        let (first, idle) = match ops.try_recv() {
            Ok(op) => (op, false),
            Err(mpsc::error::TryRecvError::Empty) => match ops.recv().await {
                Some(op) => (op, true),
                None => break,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let started = tokio::time::Instant::now();
        let lingers = Lingers { claim: if idle { settings.lingers.claim } else { Duration::ZERO }, ..settings.lingers };
        // When the round goes: the earliest deadline of what it holds.
        let mut until = round.take(first, started, &lingers);
        loop {
            while !round.is_full() {
                let Ok(op) = ops.try_recv() else { break };
                until = until.min(round.take(op, started, &lingers));
            }
            if round.is_full() || until <= tokio::time::Instant::now() {
                break;
            }
            match tokio::time::timeout_at(until, ops.recv()).await {
                Ok(Some(op)) => until = until.min(round.take(op, started, &lingers)),
                // Closed (the edge is stopping) or the linger is over: send what there is.
                Ok(None) | Err(_) => break,
            }
        }
        let answers = round_trip(&mut redis, &round.batch, settings.pending_ttl_ms, settings.done_ttl_s).await;
        answer(round.batch.drain(..), answers);
        round.keys = 0;
    }
}

/// The commands gathered for the next round trip.
struct Round {
    batch: Vec<Op>,
    keys: usize,
}

impl Round {
    /// Adds `op` to a round begun at `started`; returns the latest the round may go for its sake.
    fn take(&mut self, op: Op, started: tokio::time::Instant, lingers: &Lingers) -> tokio::time::Instant {
        self.keys += op.keys();
        let until = match &op {
            Op::Complete { reply: None, .. } => started + lingers.receipt,
            Op::Claim { .. } => started + lingers.claim,
            _ => started,
        };
        self.batch.push(op);
        until
    }

    fn is_full(&self) -> bool {
        self.keys >= MAX_KEYS_PER_ROUND_TRIP
    }
}

impl Op {
    fn keys(&self) -> usize {
        match self {
            Op::Claim { entries, .. } | Op::Complete { entries, .. } => entries.len(),
            Op::Release { keys, .. } => keys.len(),
            Op::Flush { .. } => 0,
        }
    }
}

/// What one round trip answered: per claimed key what held it, per completed and released key
/// whether it was written.
struct Answers {
    held: std::vec::IntoIter<Option<Vec<u8>>>,
    completed: std::vec::IntoIter<i64>,
    released: std::vec::IntoIter<i64>,
}

async fn round_trip(
    redis: &mut ConnectionManager,
    batch: &[Op],
    pending_ttl_ms: u64,
    done_ttl_s: u64,
) -> Result<Answers, StoreError> {
    let mut pipeline = redis::pipe();
    let (mut complete, mut release) = (redis::cmd("EVAL"), redis::cmd("EVAL"));
    let (mut complete_keys, mut release_keys): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let (mut complete_args, mut release_args): (Vec<&[u8]>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    let mut claims = Vec::new();
    for op in batch {
        match op {
            Op::Claim { entries, .. } => claims.extend(entries),
            Op::Complete { entries, owner, .. } => {
                for (key, entry) in entries {
                    complete_keys.push(key);
                    complete_args.extend([owner.as_bytes(), entry.as_slice()]);
                }
            }
            Op::Release { keys, owner, .. } => {
                for key in keys {
                    release_keys.push(key);
                    release_args.push(owner.as_bytes());
                }
            }
            Op::Flush { .. } => {}
        }
    }
    if claims.is_empty() && complete_keys.is_empty() && release_keys.is_empty() {
        return Ok(Answers {
            held: Vec::new().into_iter(),
            completed: Vec::new().into_iter(),
            released: Vec::new().into_iter(),
        });
    }
    // Receipts and releases go before the claims. They act only on claims answered in earlier
    // round trips, so a claim in this one (submitted before or after them) cannot be theirs; run
    // first, they keep the promise that a claim finds every receipt and release submitted before it.
    // EVAL with the script's text, not EVALSHA: a Redis that restarted answers it all the same,
    // and the text is sent once per round trip, not per event.
    if !complete_keys.is_empty() {
        complete.arg(COMPLETE).arg(complete_keys.len()).arg(&complete_keys).arg(done_ttl_s).arg(&complete_args);
        pipeline.add_command(complete);
    }
    if !release_keys.is_empty() {
        release.arg(RELEASE).arg(release_keys.len()).arg(&release_keys).arg(&release_args);
        pipeline.add_command(release);
    }
    for (key, entry) in &claims {
        pipeline.cmd("SET").arg(key).arg(entry).arg("NX").arg("PX").arg(pending_ttl_ms).arg("GET");
    }
    let replies: Vec<redis::Value> = pipeline.query_async(redis).await?;
    let mut replies = replies.into_iter();
    let mut flags = |sent: bool| -> Result<Vec<i64>, StoreError> {
        if !sent {
            return Ok(Vec::new());
        }
        let reply = replies.next().ok_or_else(|| StoreError("a script's reply is missing".into()))?;
        Ok(redis::from_redis_value(&reply)?)
    };
    let completed = flags(!complete_keys.is_empty())?;
    let released = flags(!release_keys.is_empty())?;
    let held = replies.map(|reply| redis::from_redis_value(&reply)).collect::<Result<Vec<Option<Vec<u8>>>, _>>()?;
    if held.len() != claims.len() {
        return Err(StoreError(format!("{} claims sent, {} answered", claims.len(), held.len())));
    }
    Ok(Answers { held: held.into_iter(), completed: completed.into_iter(), released: released.into_iter() })
}

/// What a receipt or release nobody waits for did, or why it failed.
fn settle(reply: Option<Reply<usize>>, outcome: Result<usize, StoreError>, what: &'static str) {
    match (reply, outcome) {
        (Some(reply), outcome) => drop(reply.send(outcome)),
        (None, Ok(_)) => {}
        // The records are durable; only duplicate detection for these ids is weakened (claims
        // not released expire by themselves).
        (None, Err(error)) => tracing::warn!(%error, what, "Could not write to the idempotency store."),
    }
}

fn answer(batch: impl Iterator<Item = Op>, answers: Result<Answers, StoreError>) {
    let mut answers = match answers {
        Ok(answers) => answers,
        Err(error) => {
            for op in batch {
                match op {
                    Op::Claim { reply, .. } => drop(reply.send(Err(error.clone()))),
                    Op::Complete { reply, .. } => settle(reply, Err(error.clone()), "receipts"),
                    Op::Release { reply, .. } => settle(reply, Err(error.clone()), "releases"),
                    Op::Flush { reply } => drop(reply.send(())),
                }
            }
            return;
        }
    };
    let count =
        |flags: &mut std::vec::IntoIter<i64>, n: usize| flags.by_ref().take(n).filter(|flag| *flag == 1).count();
    for op in batch {
        // A request that gave up waiting no longer listens; nothing to do then.
        match op {
            Op::Claim { entries, reply } => drop(reply.send(Ok(answers.held.by_ref().take(entries.len()).collect()))),
            Op::Complete { entries, reply, .. } => {
                settle(reply, Ok(count(&mut answers.completed, entries.len())), "receipts");
            }
            Op::Release { keys, reply, .. } => settle(reply, Ok(count(&mut answers.released, keys.len())), "releases"),
            Op::Flush { reply } => drop(reply.send(())),
        }
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

    #[test]
    fn what_holds_an_id_decides_the_claim() {
        let receipt = Receipt { topic: "t".into(), partition: 1, offset: 7 };
        let judge = |digest: &str, held: Option<Vec<u8>>| judge("t", digest, held.as_deref());
        assert_eq!(judge("a", None), Claim::Claimed);
        assert_eq!(judge("a", Some(receipt_entry("a", &receipt))), Claim::Duplicate(receipt.clone()));
        assert_eq!(judge("a", Some(claim_entry("a", "o"))), Claim::InFlight);
        assert_eq!(judge("a", Some(receipt_entry("b", &receipt))), Claim::Conflict);
        assert_eq!(judge("a", Some(claim_entry("b", "o"))), Claim::Conflict);
        assert_eq!(judge("a", Some(b"not json".to_vec())), Claim::Conflict);
        assert_eq!(judge("a", Some(b"D-too-short".to_vec())), Claim::Conflict);
        // JSON entries of the edge before entries were binary.
        let legacy = br#"{"digest":"a","owner":null,"receipt":{"topic":"t","partition":1,"offset":7}}"#;
        assert_eq!(judge("a", Some(legacy.to_vec())), Claim::Duplicate(receipt.clone()));
        assert_eq!(judge("b", Some(legacy.to_vec())), Claim::Conflict);
        assert_eq!(judge("a", Some(br#"{"digest":"a","owner":"o","receipt":null}"#.to_vec())), Claim::InFlight);
        let hashed_raw_body = br#"{"body_sha256":"b","receipt":{"topic":"t","partition":1,"offset":7}}"#;
        assert!(matches!(judge("a", Some(hashed_raw_body.to_vec())), Claim::Duplicate(_)));
    }

    #[test]
    fn entries_are_compact_and_fixed_where_they_last() {
        let receipt = Receipt { topic: "ct.events.v1".into(), partition: 5, offset: i64::MAX };
        let entry = receipt_entry(&"f".repeat(64), &receipt);
        assert_eq!(entry.len(), RECEIPT_LEN);
        assert_eq!(RECEIPT_LEN, 29, "what a remembered event stores besides its key");
        assert_eq!(&entry[17..21], &5i32.to_be_bytes());
        assert_eq!(claim_entry("d", "owner").len(), 1 + 16 + 5);
        assert_ne!(fingerprint("a"), fingerprint("b"));
        let digest = "00112233445566778899aabbccddeeff".repeat(2);
        assert_eq!(fingerprint(&digest), hex::decode("00112233445566778899aabbccddeeff").unwrap()[..]);
    }
}
