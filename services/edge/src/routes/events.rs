//! `POST /events` and `POST /events/batch`: every check in order, each refusal with its own status
//! and JSON body; in a batch the field is prefixed with the event's index (`[3].payload.total`).

use std::{collections::HashSet, sync::Arc};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use chrono::Utc;
use ct_core::{
    json,
    signature::{self, SignatureError, SignatureHeaders},
};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    AppState,
    auth::{Producer, RateRefusal},
    error::ApiError,
    ingest::{Accepted, traceparent_for},
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/events", post(post_event)).route("/events/batch", post(post_batch))
}

// Header names built once: looking a header up by `&str` parses and lowercases the name per request.
static X_CT_SIGNATURE: HeaderName = HeaderName::from_static("x-ct-signature");
static X_CT_TIMESTAMP: HeaderName = HeaderName::from_static("x-ct-timestamp");
static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(mime) = content_type.and_then(|ct| ct.split(';').next()).map(str::trim) else { return false };
    mime.eq_ignore_ascii_case("application/json") || mime.to_ascii_lowercase().ends_with("+json")
}

// The whole request, not the `HeaderMap` extractor: that one clones every header per request.
#[tracing::instrument(skip_all, fields(event_id, source))]
async fn post_event(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match ingest_one(&app, &parts.headers, body).await {
        Ok(accepted) => (StatusCode::ACCEPTED, Json(AcceptedBody::from(&accepted))).into_response(),
        Err(error) => error.into_response(),
    }
}

#[tracing::instrument(skip_all, fields(events, source))]
async fn post_batch(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match ingest_batch(&app, &parts.headers, body).await {
        Ok(accepted) => {
            let events = accepted.iter().map(AcceptedBody::from).collect();
            (StatusCode::ACCEPTED, Json(BatchBody { events })).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// The 202 body of one event (OpenAPI `Accepted`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedBody<'a> {
    event_id: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
    duplicate: bool,
}

impl<'a> From<&'a Accepted> for AcceptedBody<'a> {
    fn from(accepted: &'a Accepted) -> Self {
        Self {
            event_id: &accepted.event_id,
            topic: &accepted.receipt.topic,
            partition: accepted.receipt.partition,
            offset: accepted.receipt.offset,
            duplicate: accepted.duplicate,
        }
    }
}

/// The 202 body of a batch: one OpenAPI `Accepted` per event, in request order.
#[derive(Serialize)]
struct BatchBody<'a> {
    events: Vec<AcceptedBody<'a>>,
}

fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not valid JSON: {e}"))
}

/// Content type, size and UTF-8: the checks before anything is parsed.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    if !is_json(header(headers, &header::CONTENT_TYPE)) {
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
    if header(headers, &header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > max) {
        return Err(too_large());
    }
    let raw = axum::body::to_bytes(body, max).await.map_err(|_| too_large())?;
    std::str::from_utf8(&raw).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_utf8", format!("the body is not valid UTF-8: {e}"))
    })?;
    Ok(raw)
}

/// The producer behind the bearer token: checked first, before the body is read.
fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<Producer, ApiError> {
    app.tokens.authenticate(header(headers, &header::AUTHORIZATION)).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or unknown bearer token")
            .with_field("Authorization")
    })
}

/// Charges `events` to the producer's rate limit.
fn charge(app: &AppState, producer: &Producer, events: u32) -> Result<(), ApiError> {
    app.rate_limit.check(producer, events).map_err(|refusal| match refusal {
        RateRefusal::Wait(seconds) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many events for this token")
                .retry_after(seconds)
        }
        RateRefusal::LargerThanBurst(burst) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_exceeds_burst",
            format!("{events} events in one request exceed this token's burst of {burst}; send smaller batches"),
        ),
    })
}

/// A token speaks for one source only.
fn check_source(event: &json::Json<'_>, producer: &Producer, field: impl FnOnce() -> String) -> Result<(), ApiError> {
    match event.get("source").and_then(json::Json::as_str) {
        Some(claimed) if claimed != producer.source.as_str() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_source",
            format!("this token may only send events of source `{}`", producer.source),
        )
        .with_field(field())),
        _ => Ok(()),
    }
}

fn verify_signature(app: &AppState, headers: &HeaderMap, raw: &[u8]) -> Result<(), ApiError> {
    let signature_headers = SignatureHeaders {
        ct_signature: header(headers, &X_CT_SIGNATURE),
        ct_timestamp: header(headers, &X_CT_TIMESTAMP),
        webhook_id: header(headers, &WEBHOOK_ID),
        webhook_timestamp: header(headers, &WEBHOOK_TIMESTAMP),
        webhook_signature: header(headers, &WEBHOOK_SIGNATURE),
    };
    let auth = &app.config.auth;
    signature::verify_with(
        &signature_headers,
        raw,
        &app.verifying_keys,
        Utc::now().timestamp(),
        auth.signature_tolerance_s,
        auth.require_signed_timestamp,
    )
    .map_err(|e| {
        let field = match (e, signature_headers.ct_signature.is_some()) {
            (SignatureError::Stale | SignatureError::MissingTimestamp, true) => "X-CT-Timestamp",
            (_, true) => "X-CT-Signature",
            (SignatureError::Stale, false) => "webhook-timestamp",
            _ => "webhook-signature",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()).with_field(field)
    })
}

/// Waits for `events` of the `events.max_events_in_progress` permits; 503 after the delivery timeout.
/// Taken after the token and rate-limit checks, so unauthenticated floods never hold permits.
async fn admit(app: &AppState, events: usize) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    let permits = u32::try_from(events).unwrap_or(u32::MAX);
    // Below the limit no timer is armed: arming and dropping one per request costs more than the
    // permit itself.
    if let Ok(permit) = app.in_progress.try_acquire_many(permits) {
        return Ok(permit);
    }
    let wait = std::time::Duration::from_millis(app.config.events.delivery_timeout_ms);
    match tokio::time::timeout(wait, app.in_progress.acquire_many(permits)).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => {
            metrics::counter!("ct_edge_backpressure_total", "reason" => "events_in_progress").increment(1);
            Err(ApiError::unavailable("overloaded", "the edge is at its limit of events in progress; retry"))
        }
    }
}

/// The checks run in this order for single events and batches alike: token, body (type, size,
/// UTF-8), signature, JSON and shape, rate limit, admission, source, validation.
async fn ingest_one(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Accepted, ApiError> {
    let producer = authenticate(app, headers)?;
    let raw = read_body(headers, body, app.config.http.max_body_bytes).await?;
    verify_signature(app, headers, &raw)?;
    let value = json::Json::from_slice(&raw).map_err(|e| invalid_json(&e))?;
    charge(app, &producer, 1)?;
    let _permit = admit(app, 1).await?;
    check_source(&value, &producer, || "source".to_owned())?;

    let (event, _) = app.ingestor.parse(&value)?;
    tracing::Span::current().record("event_id", event.event_id()).record("source", event.source().as_str());
    // The request's span when spans are exported (it continues the caller's trace), otherwise the
    // caller's traceparent or a new one: the record's trace id either way.
    let traceparent =
        ct_platform::telemetry::current_traceparent().unwrap_or_else(|| traceparent_for(header(headers, &TRACEPARENT)));
    app.ingestor.accept(event, &traceparent).await
}

/// `[3].payload.total`: the field of the 4th event of a batch.
fn item_field(index: usize, field: Option<&str>) -> String {
    match field {
        Some(field) if !field.is_empty() => format!("[{index}].{field}"),
        _ => format!("[{index}]"),
    }
}

fn in_batch(index: usize, mut error: ApiError) -> ApiError {
    error.field = Some(item_field(index, error.field.as_deref()));
    error
}

/// `POST /events/batch`: a JSON array of events from one source, checked like single events
/// and accepted all together or not at all (see [`crate::ingest::Ingestor::accept_all`]).
async fn ingest_batch(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<Accepted>, ApiError> {
    let producer = authenticate(app, headers)?;
    let raw = read_body(headers, body, app.config.http.max_batch_bytes).await?;
    verify_signature(app, headers, &raw)?;
    // Each event's own bytes are kept, so an oversized one is named before anything is parsed.
    let items: Vec<&RawValue> = serde_json::from_slice(&raw).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&raw).is_ok() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the body must be a JSON array of events (rule: batch_is_array)",
            )
        } else {
            invalid_json(&e)
        }
    })?;
    let max = app.config.events.max_batch_events;
    if items.is_empty() || items.len() > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("a batch holds 1 to {max} events, this one {} (rule: batch_size)", items.len()),
        ));
    }
    let per_event_max = app.config.http.max_body_bytes;
    if let Some(index) = items.iter().position(|item| item.get().len() > per_event_max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an event is larger than {per_event_max} bytes"),
        )
        .with_field(item_field(index, None)));
    }
    charge(app, &producer, u32::try_from(items.len()).unwrap_or(u32::MAX))?;
    let _permit = admit(app, items.len()).await?;
    let values = items
        .iter()
        .map(|item| json::Json::from_slice(item.get().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_json(&e))?;
    for (index, value) in values.iter().enumerate() {
        check_source(value, &producer, || item_field(index, Some("source")))?;
    }

    // The request's span when spans are exported (it continues the caller's trace), otherwise the
    // caller's traceparent or a new one: the record's trace id either way.
    let traceparent =
        ct_platform::telemetry::current_traceparent().unwrap_or_else(|| traceparent_for(header(headers, &TRACEPARENT)));
    let mut candidates = Vec::with_capacity(items.len());
    for (index, value) in values.iter().enumerate() {
        let (event, _) = app.ingestor.parse(value).map_err(|e| in_batch(index, e))?;
        candidates.push(app.ingestor.candidate(event, &traceparent)?);
    }
    let mut seen = HashSet::with_capacity(candidates.len());
    if let Some(index) = candidates.iter().position(|c| !seen.insert(c.event.event_id())) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "this eventId appears earlier in the same batch (rule: unique_in_batch)",
        )
        .with_field(item_field(index, Some("eventId"))));
    }
    tracing::Span::current().record("events", candidates.len()).record("source", producer.source.as_str());
    app.ingestor.accept_all(candidates, &traceparent).await.map_err(|refused| match refused.index {
        Some(index) => in_batch(index, refused.error),
        None => refused.error,
    })
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
