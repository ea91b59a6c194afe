//! `POST /events`: every check in order, each refusal with its own status and JSON body.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::Utc;
use ct_core::signature::{self, SignatureError, SignatureHeaders};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{AppState, error::ApiError, ingest::traceparent_for};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/events", post(post_event))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(mime) = content_type.and_then(|ct| ct.split(';').next()).map(str::trim) else { return false };
    mime.eq_ignore_ascii_case("application/json") || mime.to_ascii_lowercase().ends_with("+json")
}

#[tracing::instrument(skip_all, fields(event_id, source))]
async fn post_event(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    match ingest_request(&app, &headers, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(accepted)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn ingest_request(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let max = app.config.http.max_body_bytes;
    if !is_json(header(headers, "content-type")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        )
        .with_field("Content-Type"));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {max} bytes"),
        )
    };
    if header(headers, "content-length").and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > max) {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, max).await.map_err(|_| too_large())?;
    let text = std::str::from_utf8(&raw).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_utf8", format!("the body is not valid UTF-8: {e}"))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid JSON: {e}"))
    })?;

    let producer = app.tokens.authenticate(header(headers, "authorization")).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown bearer token")
            .with_field("Authorization")
    })?;
    app.rate_limit.check(&producer).map_err(|wait| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests for this token")
            .retry_after(wait)
    })?;
    if let Some(claimed) = value.get("source").and_then(Value::as_str)
        && claimed != producer.source.as_str()
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_source",
            format!("this token may only send events of source `{}`", producer.source),
        )
        .with_field("source"));
    }
    let signature_headers = SignatureHeaders {
        ct_signature: header(headers, "x-ct-signature"),
        webhook_id: header(headers, "webhook-id"),
        webhook_timestamp: header(headers, "webhook-timestamp"),
        webhook_signature: header(headers, "webhook-signature"),
    };
    let auth = &app.config.auth;
    signature::verify(&signature_headers, &raw, &auth.hmac_secrets, Utc::now().timestamp(), auth.signature_tolerance_s)
        .map_err(|e| {
            let field = match (e, signature_headers.ct_signature.is_some()) {
                (_, true) => "X-CT-Signature",
                (SignatureError::Stale, false) => "webhook-timestamp",
                _ => "webhook-signature",
            };
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()).with_field(field)
        })?;

    let (event, _) = app.ingestor.parse(&value)?;
    tracing::Span::current().record("event_id", event.event_id()).record("source", event.source().as_str());
    let body_sha256 = hex::encode(Sha256::digest(&raw));
    let traceparent = traceparent_for(header(headers, "traceparent"));
    let accepted = app.ingestor.accept(event, &body_sha256, &traceparent).await?;
    Ok(json!({
        "eventId": accepted.event_id,
        "topic": accepted.receipt.topic,
        "partition": accepted.receipt.partition,
        "offset": accepted.receipt.offset,
        "duplicate": accepted.duplicate,
    }))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        for ok in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"]
        {
            assert!(is_json(Some(ok)), "{ok}");
        }
        for bad in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("")] {
            assert!(!is_json(bad), "{bad:?}");
        }
    }
}
