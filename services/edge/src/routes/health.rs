//! `GET /healthz` (the process is up) and `GET /readyz` (broker and registry reachable).

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
    let status = if kafka.is_ok() && registry.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let describe = |r: &Result<(), String>| r.as_ref().map_or_else(|e| format!("error: {e}"), |()| "ok".to_owned());
    (status, Json(json!({"kafka": describe(&kafka), "registry": describe(&registry)})))
}
