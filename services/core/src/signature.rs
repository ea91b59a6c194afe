//! Webhook signatures over the raw request body, verified in constant time against every
//! currently valid secret (so secrets rotate without downtime).
//!
//! Two schemes are accepted:
//! - Control Tower's `X-CT-Signature: sha256=<hex HMAC-SHA256 of the body>`, or, with
//!   `X-CT-Timestamp: <Unix seconds>`, of `"{timestamp}.{body}"` (the timestamp is then checked
//!   against the tolerance, so a captured request cannot be replayed later; the edge can require it);
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (space-separated
//!   list), with a timestamp tolerance against replay. A `whsec_` secret is base64-decoded first.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature: send X-CT-Signature or the Standard Webhooks headers")]
    Missing,
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signed timestamp is outside the allowed tolerance")]
    Stale,
    #[error("X-CT-Timestamp is required: sign \"{{timestamp}}.{{body}}\" and send the timestamp")]
    MissingTimestamp,
}

/// The signature headers of a request, as received.
#[derive(Debug, Default, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub ct_signature: Option<&'a str>,
    pub ct_timestamp: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
}

fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_").map(|b64| STANDARD.decode(b64)) {
        Some(Ok(bytes)) => bytes,
        _ => secret.as_bytes().to_vec(),
    }
}

fn keyed(secret: &str) -> HmacSha256 {
    HmacSha256::new_from_slice(&key_bytes(secret)).expect("HMAC takes keys of any length")
}

fn mac(secret: &str, parts: &[&[u8]]) -> HmacSha256 {
    mac_with(keyed(secret), parts)
}

fn mac_with(mut mac: HmacSha256, parts: &[&[u8]]) -> HmacSha256 {
    for part in parts {
        mac.update(part);
    }
    mac
}

/// The secrets a server verifies against, each keyed once (HMAC's key schedule costs two SHA-256
/// blocks), so a request costs only its own bytes. Never printed.
#[derive(Clone)]
pub struct VerifyingKeys(Vec<HmacSha256>);

impl VerifyingKeys {
    pub fn new(secrets: &[SecretString]) -> Self {
        Self(secrets.iter().map(|secret| keyed(secret.expose_secret())).collect())
    }
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKeys({} secrets)", self.0.len())
    }
}

/// `sha256=<hex>` for `body` under `secret` (what producers send).
pub fn ct_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, &[body]).finalize().into_bytes()))
}

/// `sha256=<hex>` over `"{timestamp}.{body}"`, sent with `X-CT-Timestamp: <timestamp>`.
pub fn ct_signature_at(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!("sha256={}", hex::encode(mac(secret, &[ts.as_bytes(), b".", body]).finalize().into_bytes()))
}

/// `v1,<base64>` for the Standard Webhooks scheme.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let digest = mac(secret, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(digest))
}

fn timestamp_within(timestamp: &str, now_unix: i64, tolerance_secs: i64) -> Result<i64, SignatureError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed)?;
    if (now_unix - ts).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    Ok(ts)
}

/// Verifies the request against each secret; `now` and `tolerance_secs` bound signed timestamps
/// (`X-CT-Timestamp`, `webhook-timestamp`); `require_ct_timestamp` refuses an `X-CT-Signature`
/// without one. The comparison is constant-time (`Mac::verify_slice`).
pub fn verify(
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    secrets: &[SecretString],
    now_unix: i64,
    tolerance_secs: i64,
    require_ct_timestamp: bool,
) -> Result<(), SignatureError> {
    verify_with(headers, body, &VerifyingKeys::new(secrets), now_unix, tolerance_secs, require_ct_timestamp)
}

/// [`verify`] with keys prepared once ([`VerifyingKeys`]).
pub fn verify_with(
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    keys: &VerifyingKeys,
    now_unix: i64,
    tolerance_secs: i64,
    require_ct_timestamp: bool,
) -> Result<(), SignatureError> {
    if let Some(header) = headers.ct_signature {
        let hex_digest = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let timestamp = match headers.ct_timestamp {
            Some(ts) => Some(timestamp_within(ts, now_unix, tolerance_secs)?.to_string()),
            None if require_ct_timestamp => return Err(SignatureError::MissingTimestamp),
            None => None,
        };
        let signed: Vec<&[u8]> = match &timestamp {
            Some(ts) => vec![ts.as_bytes(), b".", body],
            None => vec![body],
        };
        return keys
            .0
            .iter()
            .any(|key| mac_with(key.clone(), &signed).verify_slice(&expected).is_ok())
            .then_some(())
            .ok_or(SignatureError::Mismatch);
    }
    let (Some(id), Some(timestamp), Some(signatures)) =
        (headers.webhook_id, headers.webhook_timestamp, headers.webhook_signature)
    else {
        return Err(SignatureError::Missing);
    };
    let ts = timestamp_within(timestamp, now_unix, tolerance_secs)?;
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let ts = ts.to_string();
    let matched = keys.0.iter().any(|key| {
        let mac = mac_with(key.clone(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        candidates.iter().any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    });
    matched.then_some(()).ok_or(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"eventId":"evt_demo_001"}"#;

    fn secrets() -> Vec<SecretString> {
        vec!["old-secret".into(), "dev-webhook-secret".into()]
    }

    #[test]
    fn ct_signature_matches_openssl() {
        // printf '%s' "$BODY" | openssl dgst -sha256 -hmac dev-webhook-secret -binary | xxd -p -c 256
        let expected = "sha256=3181bb8e74abd78d07050a3da0e747d2afcb25d3c07a10644a98980dd121f867";
        assert_eq!(ct_signature("dev-webhook-secret", BODY), expected);
        let header = ct_signature("dev-webhook-secret", BODY);
        let h = SignatureHeaders { ct_signature: Some(&header), ..Default::default() };
        assert_eq!(verify(&h, BODY, &secrets(), 0, 300, false), Ok(()));
    }

    #[test]
    fn any_current_secret_verifies_during_rotation() {
        for secret in secrets() {
            let header = ct_signature(secret.expose_secret(), BODY);
            let h = SignatureHeaders { ct_signature: Some(&header), ..Default::default() };
            assert_eq!(verify(&h, BODY, &secrets(), 0, 300, false), Ok(()), "{}", secret.expose_secret());
        }
        let retired = ct_signature("retired", BODY);
        let h = SignatureHeaders { ct_signature: Some(&retired), ..Default::default() };
        assert_eq!(verify(&h, BODY, &secrets(), 0, 300, false), Err(SignatureError::Mismatch));
    }

    #[test]
    fn ct_signature_failures_are_classified() {
        // A digest that is not 32 bytes of hex cannot be an HMAC-SHA256: malformed, not a mismatch.
        let cases = [
            ("sha256=zz", SignatureError::Malformed),
            ("md5=00", SignatureError::Malformed),
            ("sha256=00", SignatureError::Malformed),
        ];
        for (header, expected) in cases {
            let h = SignatureHeaders { ct_signature: Some(header), ..Default::default() };
            assert_eq!(verify(&h, BODY, &secrets(), 0, 300, false), Err(expected), "{header}");
        }
        let tampered = ct_signature("dev-webhook-secret", b"other body");
        let h = SignatureHeaders { ct_signature: Some(&tampered), ..Default::default() };
        assert_eq!(verify(&h, BODY, &secrets(), 0, 300, false), Err(SignatureError::Mismatch));
        assert_eq!(verify(&SignatureHeaders::default(), BODY, &secrets(), 0, 300, false), Err(SignatureError::Missing));
    }

    #[test]
    fn standard_webhooks_with_tolerance() {
        let now = 1_700_000_000;
        let sig = standard_webhooks_signature("dev-webhook-secret", "msg_1", now, BODY);
        let list = format!("v1,bm90LWl0 {sig}");
        let ts = now.to_string();
        let h = SignatureHeaders {
            webhook_id: Some("msg_1"),
            webhook_timestamp: Some(&ts),
            webhook_signature: Some(&list),
            ..Default::default()
        };
        assert_eq!(verify(&h, BODY, &secrets(), now + 10, 300, false), Ok(()));
        assert_eq!(verify(&h, BODY, &secrets(), now + 301, 300, false), Err(SignatureError::Stale));
        assert_eq!(verify(&h, b"tampered", &secrets(), now, 300, false), Err(SignatureError::Mismatch));
        let other_id = SignatureHeaders { webhook_id: Some("msg_2"), ..h };
        assert_eq!(verify(&other_id, BODY, &secrets(), now, 300, false), Err(SignatureError::Mismatch));
    }

    #[test]
    fn ct_signatures_with_a_timestamp_expire() {
        let now = 1_700_000_000;
        let sig = ct_signature_at("dev-webhook-secret", now, BODY);
        let ts = now.to_string();
        let h = SignatureHeaders { ct_signature: Some(&sig), ct_timestamp: Some(&ts), ..Default::default() };
        assert_eq!(verify(&h, BODY, &secrets(), now + 10, 300, true), Ok(()));
        assert_eq!(verify(&h, BODY, &secrets(), now + 301, 300, false), Err(SignatureError::Stale));
        let other_time = (now + 1).to_string();
        let moved = SignatureHeaders { ct_timestamp: Some(&other_time), ..h };
        assert_eq!(verify(&moved, BODY, &secrets(), now, 300, false), Err(SignatureError::Mismatch));
        let bare = ct_signature("dev-webhook-secret", BODY);
        let untimed = SignatureHeaders { ct_signature: Some(&bare), ..Default::default() };
        assert_eq!(verify(&untimed, BODY, &secrets(), now, 300, false), Ok(()));
        assert_eq!(verify(&untimed, BODY, &secrets(), now, 300, true), Err(SignatureError::MissingTimestamp));
    }

    #[test]
    fn whsec_secrets_are_base64_keys() {
        let secret = format!("whsec_{}", STANDARD.encode(b"raw key bytes"));
        let sig = standard_webhooks_signature(&secret, "id", 5, BODY);
        let via_raw = {
            let mut m = HmacSha256::new_from_slice(b"raw key bytes").unwrap();
            m.update(b"id.5.");
            m.update(BODY);
            format!("v1,{}", STANDARD.encode(m.finalize().into_bytes()))
        };
        assert_eq!(sig, via_raw);
    }
}
