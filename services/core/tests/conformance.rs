//! The clients' conformance vectors (`clients/conformance/vectors.json`, run by the Python,
//! TypeScript and Rust clients too) hold for the edge's own signature code: each vector's headers
//! are what `ct_core::signature` computes, and they verify; one flipped body byte does not.

use ct_core::signature::{self, SignatureHeaders};
use secrecy::SecretString;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/conformance/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the vectors file")).expect("JSON")
}

#[test]
fn every_signature_vector_is_what_the_edge_computes_and_verifies() {
    let vectors = vectors();
    let signatures = vectors["signatures"].as_array().expect("signatures");
    assert!(signatures.len() >= 6);
    for v in signatures {
        let (name, secret, body) =
            (v["name"].as_str().unwrap(), v["secret"].as_str().unwrap(), v["body"].as_str().unwrap());
        let timestamp = v["timestamp"].as_i64().unwrap_or(0);
        let header = |key: &str| v["headers"][key].as_str();
        let computed = match v["scheme"].as_str().unwrap() {
            "ct" => signature::ct_signature(secret, body.as_bytes()),
            "ct-timestamp" => signature::ct_signature_at(secret, timestamp, body.as_bytes()),
            "standard-webhooks" => {
                signature::standard_webhooks_signature(secret, v["id"].as_str().unwrap(), timestamp, body.as_bytes())
            }
            other => panic!("{name}: unknown scheme {other}"),
        };
        let expected = header("X-CT-Signature").or(header("webhook-signature")).unwrap();
        assert_eq!(computed, expected, "{name}");
        let headers = SignatureHeaders {
            ct_signature: header("X-CT-Signature"),
            ct_timestamp: header("X-CT-Timestamp"),
            webhook_id: header("webhook-id"),
            webhook_timestamp: header("webhook-timestamp"),
            webhook_signature: header("webhook-signature"),
        };
        let secrets = [SecretString::from(secret.to_owned())];
        assert_eq!(signature::verify(&headers, body.as_bytes(), &secrets, timestamp, 300, false), Ok(()), "{name}");
        let mut tampered = body.as_bytes().to_vec();
        tampered[10] ^= 1;
        assert!(signature::verify(&headers, &tampered, &secrets, timestamp, 300, false).is_err(), "{name}: tampered");
    }
}
