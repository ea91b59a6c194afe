//! `POST /api/v1/artifacts` and `GET /api/v1/artifacts/{id}`: a content-addressed store in a
//! folder (`artifacts.root`): the bytes under `sha256/<2 hex>/<64 hex>`, their content type and
//! size beside them, written once (temporary file, then rename) so a repeat upload is the same
//! artifact. Each stored artifact is announced as an `artifact.pointer.written` event sent
//! through the edge like any producer's (source `control_tower`, a token bound to it; event id
//! from the digest and the run, `ts` the first storage time, so a repeat is the edge's
//! duplicate), carrying the pointer, never the bytes.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use ct_platform::http_error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{AppState, auth::Permission};

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactsConfig {
    /// The store's folder (created when missing).
    pub root: PathBuf,
    /// The largest artifact; the HTTP layer's `http.max_request_bytes` must allow it too.
    pub max_bytes: usize,
}

/// What the store keeps beside the bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    content_type: String,
    size_bytes: u64,
    /// When the bytes were first stored: the announcement's `ts`, so a repeat sends the same body.
    stored_at: String,
}

pub struct Store {
    config: ArtifactsConfig,
    events: ct_client::Client,
}

impl Store {
    /// `edge`: where `artifact.pointer.written` events go, as source `control_tower`.
    pub fn new(config: ArtifactsConfig, edge: &ct_client::EdgeConfig) -> Store {
        let events = edge.client(ct_client::RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
        });
        Store { config, events }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.config.root.join("sha256").join(&sha256[..2]).join(sha256)
    }
}

/// One announcement per artifact and run: a repeat upload is the edge's duplicate, the same bytes
/// under another run are announced again for that run.
fn announcement_id(sha256: &str, run_id: Option<&str>) -> String {
    let mut digest = Sha256::new();
    digest.update(sha256.as_bytes());
    digest.update([0]);
    digest.update(run_id.unwrap_or_default().as_bytes());
    format!("evt_art_{}", &hex::encode(digest.finalize())[..32])
}

fn id_of(sha256: &str) -> String {
    format!("art_{sha256}")
}

/// The digest an artifact id names, when it is one.
fn sha256_of(id: &str) -> Option<&str> {
    id.strip_prefix("art_")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "{what}");
    ApiError::unavailable("unavailable", format!("the artifact store is unavailable; retry ({what}: {error})"))
}

/// Writes `bytes` under `path` once: into a temporary file beside it, then renamed.
async fn write_once(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if tokio::fs::try_exists(path).await? {
        return Ok(());
    }
    let folder = path.parent().expect("a store path has a folder");
    tokio::fs::create_dir_all(folder).await?;
    let temporary = folder.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, path).await
}

/// `POST /api/v1/artifacts` (operator and above): the body is the artifact; `Content-Type` is
/// kept; `X-CT-Run-Id` ties the announcement to a run (its correlation id).
pub async fn upload(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    app.users.actor(&headers, Permission::Operate)?;
    let store = &app.artifacts;
    if body.is_empty() {
        return Err(crate::health::invalid("body", "an artifact has at least one byte"));
    }
    if body.len() > store.config.max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an artifact is at most {} bytes", store.config.max_bytes),
        )
        .with_field("body"));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let run_id = headers
        .get("x-ct-run-id")
        .map(|value| {
            // It becomes the announcement's correlation id, so it follows that rule.
            value
                .to_str()
                .ok()
                .filter(|text| ct_core::envelope::check_id("X-CT-Run-Id", text).is_ok())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_header",
                        "`X-CT-Run-Id` must be 1 to 128 of A-Z, a-z, 0-9, '_', '-', '.', ':'",
                    )
                    .with_field("X-CT-Run-Id")
                })
        })
        .transpose()?;
    let sha256 = hex::encode(Sha256::digest(&body));
    let path = store.path(&sha256);
    let stored_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let meta = Meta { content_type, size_bytes: body.len() as u64, stored_at };
    let meta_text = serde_json::to_vec(&meta).expect("metadata serialises");
    write_once(&path, &body).await.map_err(|e| unavailable("Storing an artifact failed.", e))?;
    write_once(&path.with_extension("json"), &meta_text)
        .await
        .map_err(|e| unavailable("Storing an artifact failed.", e))?;
    // What the store holds (a repeat upload keeps the first content type).
    let stored: Meta = serde_json::from_slice(
        &tokio::fs::read(path.with_extension("json"))
            .await
            .map_err(|e| unavailable("Reading an artifact failed.", e))?,
    )
    .map_err(|e| unavailable("An artifact's metadata is unreadable.", e))?;
    let artifact_id = id_of(&sha256);
    let uri = format!("/api/v1/artifacts/{artifact_id}");
    let payload = json!({"artifactId": artifact_id, "uri": uri, "contentType": stored.content_type,
        "sizeBytes": stored.size_bytes, "sha256": sha256});
    let mut event = ct_client::Event::new("artifact.pointer.written", payload)
        .map_err(|e| unavailable("The artifact event is invalid.", e))?
        .with_id(announcement_id(&sha256, run_id.as_deref()))
        .with_ts(stored.stored_at.clone());
    if let Some(run_id) = &run_id {
        event = event.with_correlation_id(run_id.clone());
    }
    let receipt = store.events.send(&event).await.map_err(|e| unavailable("Announcing an artifact failed.", e))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, HeaderValue::from_str(&uri).expect("an id is a valid header"))],
        Json(json!({
            "artifactId": artifact_id,
            "sha256": sha256,
            "sizeBytes": stored.size_bytes,
            "contentType": stored.content_type,
            "uri": uri,
            "eventId": receipt.event_id,
        })),
    )
        .into_response())
}

/// `GET /api/v1/artifacts/{id}` (maintainer and owner): the bytes, with their content type and
/// `X-Checksum-SHA256`.
pub async fn download(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(artifact_id): Path<String>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadEvents)?;
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no artifact `{artifact_id}`"))
            .with_field("artifactId")
    };
    let sha256 = sha256_of(&artifact_id).ok_or_else(not_found)?;
    let path = app.artifacts.path(sha256);
    let meta: Meta = match tokio::fs::read(path.with_extension("json")).await {
        Ok(text) => {
            serde_json::from_slice(&text).map_err(|e| unavailable("An artifact's metadata is unreadable.", e))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(error) => return Err(unavailable("Reading an artifact failed.", error)),
    };
    let bytes = tokio::fs::read(&path).await.map_err(|e| unavailable("Reading an artifact failed.", e))?;
    let content_type =
        HeaderValue::from_str(&meta.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let checksum = HeaderValue::from_str(sha256).expect("hex is a valid header");
    Ok((
        [(header::CONTENT_TYPE, content_type), (header::HeaderName::from_static("x-checksum-sha256"), checksum)],
        bytes,
    )
        .into_response())
}
