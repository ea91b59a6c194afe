//! `GET /healthz` (the process is up) and `GET /readyz` (broker, registry and Redis reachable).
//! Readiness names each dependency and its state, never its address.

use std::{sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use rdkafka::producer::Producer;
use serde_json::json;

use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) })).route("/readyz", get(ready))
}

async fn ready(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let producer = app.ingestor.producer.clone();
    let kafka = tokio::task::spawn_blocking(move || {
        producer.client().fetch_metadata(None, Duration::from_secs(2)).map(|m| m.brokers().len())
    })
    .await;
    let kafka = match kafka {
        Ok(Ok(brokers)) if brokers > 0 => Ok(()),
        Ok(Ok(_)) => Err("no brokers".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let registry = app.registry.ping().await.map_err(|e| e.to_string());
    let redis = app.ingestor.idempotency.ping().await.map_err(|e| e.to_string());
    for (dependency, result) in [("kafka", &kafka), ("registry", &registry), ("redis", &redis)] {
        if let Err(error) = result {
            tracing::warn!(dependency, %error, "Readiness: dependency unavailable.");
        }
    }
    let status = if kafka.is_ok() && registry.is_ok() && redis.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // The details (with addresses) go to the log; the answer says only which dependency.
    let describe = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "error: unavailable" };
    (status, Json(json!({"kafka": describe(&kafka), "registry": describe(&registry), "redis": describe(&redis)})))
}
