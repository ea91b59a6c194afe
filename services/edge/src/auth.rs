//! Producer tokens, each bound to one source, looked up by SHA-256 digest so the comparison does
//! not leak through timing, and the per-token rate limit (charged per event, so a batch of 50
//! costs 50).

use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

use ct_core::Source;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, RateLimitConfig};

type Digest32 = [u8; 32];

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Producer {
    pub source: Source,
    id: Digest32,
}

pub struct Tokens {
    by_digest: HashMap<Digest32, Source>,
}

impl Tokens {
    pub fn new(config: &AuthConfig) -> Self {
        let by_digest = config
            .producer_tokens
            .iter()
            .filter_map(|(token, source)| Some((digest(token), source.parse().ok()?)))
            .collect();
        Self { by_digest }
    }

    /// The producer behind `Authorization: Bearer <token>`.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Producer> {
        // The scheme name is case-insensitive (RFC 6750 via RFC 7235).
        let (scheme, token) = authorization?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        let id = digest(token);
        self.by_digest.get(&id).map(|source| Producer { source: *source, id })
    }
}

/// Token-bucket rate limit per producer token (GCRA, via `governor`).
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<Digest32>>,
}

impl RateLimit {
    pub fn new(config: &RateLimitConfig) -> Self {
        let per_minute = NonZeroU32::new(config.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        Self { limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))) }
    }

    /// Charges `events` to the producer's bucket.
    pub fn check(&self, producer: &Producer, events: u32) -> Result<(), RateRefusal> {
        let events = NonZeroU32::new(events).unwrap_or(NonZeroU32::MIN);
        match self.limiter.check_key_n(&producer.id, events) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                Err(RateRefusal::Wait(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)))
            }
            Err(governor::InsufficientCapacity(burst)) => Err(RateRefusal::LargerThanBurst(burst)),
        }
    }
}

/// Why the rate limit refused a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RateRefusal {
    /// Over the limit now: retry after this many seconds.
    Wait(u64),
    /// More events at once than the burst allows, ever.
    LargerThanBurst(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthConfig {
        AuthConfig {
            hmac_secrets: vec!["s".into()],
            signature_tolerance_s: 300,
            require_signed_timestamp: false,
            producer_tokens: [("dev-token-finance".to_owned(), "finance".to_owned())].into(),
        }
    }

    #[test]
    fn bearer_tokens_map_to_their_source() {
        let tokens = Tokens::new(&auth());
        assert_eq!(tokens.authenticate(Some("Bearer dev-token-finance")).map(|p| p.source), Some(Source::Finance));
        assert_eq!(tokens.authenticate(Some("bearer  dev-token-finance")).map(|p| p.source), Some(Source::Finance));
        for bad in [None, Some("dev-token-finance"), Some("Bearer nope"), Some("Basic dev-token-finance")] {
            assert_eq!(tokens.authenticate(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_burst_is_allowed_then_refused_with_a_wait() {
        let tokens = Tokens::new(&auth());
        let producer = tokens.authenticate(Some("Bearer dev-token-finance")).unwrap();
        let limit = RateLimit::new(&RateLimitConfig { per_minute: 60, burst: 3 });
        for _ in 0..3 {
            assert_eq!(limit.check(&producer, 1), Ok(()));
        }
        assert_eq!(limit.check(&producer, 1), Err(RateRefusal::Wait(1)), "1 s at 1/s");
    }

    #[test]
    fn a_batch_is_charged_per_event_and_may_not_exceed_the_burst() {
        let tokens = Tokens::new(&auth());
        let producer = tokens.authenticate(Some("Bearer dev-token-finance")).unwrap();
        let limit = RateLimit::new(&RateLimitConfig { per_minute: 60, burst: 3 });
        assert_eq!(limit.check(&producer, 4), Err(RateRefusal::LargerThanBurst(3)));
        assert_eq!(limit.check(&producer, 2), Ok(()));
        assert_eq!(limit.check(&producer, 2), Err(RateRefusal::Wait(1)));
    }
}
