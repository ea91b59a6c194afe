//! `/versions` and `/versions/{repo}/history`: the `versions` read model the projector keeps
//! (schema `<projector schema>_versions`): per repository and environment the deployed commit,
//! the target branch's head, and whether and since when they differ. The API decides nothing.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use ct_platform::http_error::ApiError;
use sqlx::Row;

use crate::{
    AppState,
    auth::Permission,
    health::rows_or_none,
    routes::{cursor_param, limit_param, page, reject_unknown, split_page},
    views::{BranchHead, Version, VersionChange},
};

/// `GET /versions`: every repository and environment with a deployment, by repository.
pub async fn list(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &[])?;
    let rows = rows_or_none(
        sqlx::query(
            "SELECT d.repo, d.environment, d.commit, d.tag, d.deployed_at, d.target_branch, d.drift_since,
                    h.commit AS head_commit, h.ahead, h.behind, h.updated_at
             FROM deployments d LEFT JOIN branch_heads h ON h.repo = d.repo AND h.branch = d.target_branch
             ORDER BY d.repo, d.environment",
        ),
        &app.pool,
    )
    .await?;
    let versions: Vec<Version> = rows
        .iter()
        .map(|row| Version {
            repo: row.get("repo"),
            environment: row.get("environment"),
            commit: row.get("commit"),
            tag: row.get("tag"),
            deployed_at: row.get("deployed_at"),
            target_branch: row.get("target_branch"),
            head: row.get::<Option<String>, _>("head_commit").map(|commit| BranchHead {
                commit,
                ahead: row.get("ahead"),
                behind: row.get("behind"),
                updated_at: row.get("updated_at"),
            }),
            drifting: row.get::<Option<chrono::DateTime<chrono::Utc>>, _>("drift_since").is_some(),
            drift_since: row.get("drift_since"),
        })
        .collect();
    Ok(Json(versions).into_response())
}

/// `GET /versions/{repo}/history`: the repository's deployments and branch updates, newest first.
pub async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(repo): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    app.users.authorize(&headers, Permission::ReadStatus)?;
    reject_unknown(&params, &["limit", "cursor"])?;
    let limit = limit_param(&params)?;
    let cursor = cursor_param(&params)?;
    let rows = rows_or_none(
        sqlx::query(
            "SELECT event_id, at, kind, target, commit, tag, ahead, behind FROM version_history
             WHERE repo = $1 AND ($2::timestamptz IS NULL OR (at, event_id) < ($2, $3))
             ORDER BY at DESC, event_id DESC LIMIT $4",
        )
        .bind(&repo)
        .bind(cursor.as_ref().map(|c| c.at))
        .bind(cursor.as_ref().map(|c| c.id.clone()))
        .bind(limit + 1),
        &app.pool,
    )
    .await?;
    if rows.is_empty() && cursor.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no deployment or branch update of repository `{repo}`"),
        )
        .with_field("repo"));
    }
    let (rows, next) = split_page(&rows, limit, "at", "event_id");
    let changes = rows
        .iter()
        .map(|row| {
            let kind: String = row.get("kind");
            let target: String = row.get("target");
            let deploy = kind == "deploy";
            VersionChange {
                at: row.get("at"),
                event_id: row.get("event_id"),
                kind,
                environment: deploy.then(|| target.clone()),
                branch: (!deploy).then_some(target),
                commit: row.get("commit"),
                tag: row.get("tag"),
                ahead: row.get("ahead"),
                behind: row.get("behind"),
            }
        })
        .collect();
    let path = format!("/versions/{}/history", ct_platform::registry::encode_segment(&repo));
    Ok(page(changes, next, &path, &params))
}
