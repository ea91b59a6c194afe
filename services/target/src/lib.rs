//! `ct-target`: what a trigger calls, for tests and `deploy/run.sh`. Any `POST` path is a call:
//! it is recorded, then (in this order) fails while failures are owed (`500`, no effect), applies
//! the effect once per `Idempotency-Key` (a repeated key gets the first answer again and no new
//! effect), hangs while hangs are owed, and answers `200 {"ok": true, "metrics": {...}}`.
//! A path ending in `/cancel` records a cancel and applies nothing.
//!
//! `POST /_control {"fail": n, "failStatus": 500, "hangMs": m, "hangs": k, "accepts": a}` sets
//! what is owed (`accepts`: answer 202 after the effect, to be continued);
//! `GET /_calls` lists the calls, `GET /_effects` the effects per key.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ct_platform::config::{ConfigError, HttpConfig, Profile, TelemetryConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub const DEFAULTS: ct_platform::config::Defaults =
    ct_platform::config::Defaults { base: include_str!("../config.default.toml"), dev: "" };

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub profile: Profile,
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        ct_platform::config::load(DEFAULTS, file)
    }

    pub fn defaults() -> Config {
        ct_platform::config::defaults(DEFAULTS)
    }
}

/// What the next calls will meet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Owed {
    pub fail: u32,
    pub fail_status: Option<u16>,
    pub hang_ms: u64,
    pub hangs: u32,
    /// The next this many effects answer 202 (the caller is to be continued later).
    pub accepts: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub attempt: Option<String>,
    pub body: Value,
    pub at: chrono::DateTime<chrono::Utc>,
    /// `failed`, `effect`, `replayed` (a key seen before) or `cancel`.
    pub outcome: String,
}

#[derive(Default)]
pub struct TargetState {
    owed: Owed,
    calls: Vec<Call>,
    effects: BTreeMap<String, u32>,
    answers: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<TargetState>>;

pub fn router() -> Router {
    let state: Shared = Arc::default();
    Router::new()
        .route("/_control", post(control))
        .route("/_calls", get(calls))
        .route("/_effects", get(effects))
        .fallback(call)
        .with_state(state)
}

async fn control(State(state): State<Shared>, Json(owed): Json<Owed>) -> Json<Owed> {
    state.lock().await.owed = owed.clone();
    Json(owed)
}

async fn calls(State(state): State<Shared>) -> Json<Vec<Call>> {
    Json(state.lock().await.calls.clone())
}

async fn effects(State(state): State<Shared>) -> Json<BTreeMap<String, u32>> {
    Json(state.lock().await.effects.clone())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn call(State(state): State<Shared>, request: Request) -> Response {
    if request.method() != axum::http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": "POST only"}))).into_response();
    }
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let key = header(&headers, "idempotency-key");
    let mut call = Call {
        path: path.clone(),
        idempotency_key: key.clone(),
        attempt: header(&headers, "x-ct-attempt"),
        body,
        at: chrono::Utc::now(),
        outcome: String::new(),
    };
    let (answer, hang) = {
        let mut target = state.lock().await;
        if path.ends_with("/cancel") {
            call.outcome = "cancel".into();
            target.calls.push(call);
            return Json(json!({"ok": true})).into_response();
        }
        if target.owed.fail > 0 {
            target.owed.fail -= 1;
            call.outcome = "failed".into();
            target.calls.push(call);
            let status =
                StatusCode::from_u16(target.owed.fail_status.unwrap_or(500)).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, Json(json!({"error": "told to fail"}))).into_response();
        }
        let answer = match key.as_ref().and_then(|k| target.answers.get(k)) {
            Some(answer) => {
                call.outcome = "replayed".into();
                answer.clone()
            }
            None => {
                call.outcome = "effect".into();
                let effect = key.clone().unwrap_or_else(|| format!("no-key-{}", target.calls.len()));
                *target.effects.entry(effect.clone()).or_default() += 1;
                let answer = json!({"ok": true, "effect": effect, "metrics": {"documentsGenerated": 1}});
                if let Some(key) = &key {
                    target.answers.insert(key.clone(), answer.clone());
                }
                answer
            }
        };
        target.calls.push(call);
        if target.owed.accepts > 0 {
            target.owed.accepts -= 1;
            return (StatusCode::ACCEPTED, Json(json!({"accepted": true}))).into_response();
        }
        let hang = (target.owed.hangs > 0).then(|| {
            target.owed.hangs -= 1;
            Duration::from_millis(target.owed.hang_ms)
        });
        (answer, hang)
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    Json(answer).into_response()
}

pub struct Application {
    server: ct_platform::http::Server,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let server = ct_platform::http::Server::bind(config.http.listen, router(), &config.http.limits).await?;
        Ok(Application { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "Test target listening.");
        self.server.run(shutdown).await?;
        Ok(())
    }
}

pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Application::build(config).await?.run_until_stopped(shutdown).await
}
