//! The Confluent Schema Registry REST API over the [`Store`].

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State as AxumState},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    compat::{self, Level},
    state::{State, records, schema_hash},
    store::{Store, StoreError},
};

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
}

type Params = Query<HashMap<String, String>>;

/// An error in Confluent's shape: `{"error_code": N, "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    fn subject_not_found(s: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40401, format!("Subject '{s}' not found."))
    }
    fn version_not_found(v: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, 40402, format!("Version {v} not found."))
    }
    fn schema_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, "Schema not found")
    }
    fn invalid_schema(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("Invalid schema: {reason}"))
    }
    fn invalid_version(v: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!(
                "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }
    fn invalid_level(l: &str) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42203, format!("Invalid compatibility level: '{l}'"))
    }
    fn bad_request(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 400, format!("Malformed request: {reason}"))
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "Registry store failure.");
        let code = if matches!(error, StoreError::ReadBackTimeout(..)) { 50002 } else { 50001 };
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, format!("Error in the backend data store: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            json!({"error_code": self.code, "message": self.message}).to_string(),
        )
            .into_response()
    }
}

fn ok(value: impl Serialize) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], serde_json::to_string(&value).unwrap_or_default()).into_response()
}

/// Query booleans as clients send them (`true`, `True`, `TRUE`).
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_request)
}

/// Validates an Avro schema request; returns the schema text.
fn avro_schema(request: SchemaRequest) -> Result<String, ApiError> {
    if let Some(t) = request.schema_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
        return Err(ApiError::invalid_schema(format!("schema type {t} is not supported; only AVRO is")));
    }
    if !request.references.is_empty() {
        return Err(ApiError::invalid_schema("schema references are not supported"));
    }
    apache_avro::Schema::parse_str(&request.schema).map_err(ApiError::invalid_schema)?;
    // apache-avro reads `{"name": "f", "type": "array", "items": ...}` (a complex type named as a
    // string inside a field) as valid; Avro's reference parsers (Java, Python) refuse it, and so
    // do their consumers, so the registry refuses it too.
    let value: Value = serde_json::from_str(&request.schema).map_err(ApiError::invalid_schema)?;
    if let Some(name) = misplaced_complex_type(&value) {
        return Err(ApiError::invalid_schema(format!(
            "`{name}` is not a type name: a complex type is written as an object, e.g. {{\"type\": \"{name}\", ...}}"
        )));
    }
    Ok(request.schema)
}

/// The first complex type (`array`, `map`, `record`, `enum`, `fixed`) written where a schema is
/// expected as a bare name, which no Avro parser but apache-avro accepts.
fn misplaced_complex_type(schema: &Value) -> Option<&str> {
    const COMPLEX: [&str; 6] = ["array", "map", "record", "error", "enum", "fixed"];
    match schema {
        Value::String(name) => COMPLEX.contains(&name.as_str()).then_some(name.as_str()),
        Value::Array(union) => union.iter().find_map(misplaced_complex_type),
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) => match kind.as_str() {
                "record" | "error" => object
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|field| field.get("type").and_then(misplaced_complex_type)),
                "array" => object.get("items").and_then(misplaced_complex_type),
                "map" => object.get("values").and_then(misplaced_complex_type),
                _ => None,
            },
            Some(nested) => misplaced_complex_type(nested),
            None => None,
        },
        _ => None,
    }
}

enum VersionSelector {
    Latest,
    Number(i32),
}

fn parse_version(raw: &str) -> Result<VersionSelector, ApiError> {
    if raw == "latest" || raw == "-1" {
        return Ok(VersionSelector::Latest);
    }
    match raw.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(VersionSelector::Number(n)),
        _ => Err(ApiError::invalid_version(raw)),
    }
}

/// Resolves a version of a subject: (version, schema id, deleted).
fn resolve(
    state: &State,
    subject: &str,
    selector: &VersionSelector,
    include_deleted: bool,
) -> Result<(i32, i32, bool), ApiError> {
    let versions = state.versions(subject, include_deleted);
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(subject));
    }
    let found = match selector {
        VersionSelector::Latest => versions.last().copied(),
        VersionSelector::Number(n) => versions.iter().find(|(v, _)| v == n).copied(),
    };
    let (version, entry) = found.ok_or_else(|| {
        ApiError::version_not_found(&match selector {
            VersionSelector::Latest => "latest".to_owned(),
            VersionSelector::Number(n) => n.to_string(),
        })
    })?;
    Ok((version, entry.id, entry.deleted))
}

fn version_body(state: &State, subject: &str, version: i32, id: i32) -> Value {
    let schema = state.schema(id).map(|s| s.schema.clone()).unwrap_or_default();
    json!({"subject": subject, "version": version, "id": id, "schema": schema})
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/schemas/ids/{id}", get(get_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(get_schema_usages))
        .route("/schemas/types", get(|| async { ok(["AVRO"]) }))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config).delete(delete_subject_config))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_version))
        // Confluent's clients read `error_code` from every error body, unknown routes included.
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed")
        })
        .with_state(state)
}

async fn list_subjects(AxumState(app): AxumState<AppState>, params: Params) -> Response {
    ok(app.store.read(|s| s.subjects(flag(&params, "deleted"))))
}

async fn list_versions(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let versions = app.store.read(|s| s.versions(&subject, flag(&params, "deleted")));
    if versions.is_empty() {
        return Err(ApiError::subject_not_found(&subject));
    }
    Ok(ok(versions.iter().map(|(v, _)| *v).collect::<Vec<_>>()))
}

async fn get_version(
    AxumState(app): AxumState<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let selector = parse_version(&version)?;
    app.store.read(|s| {
        let (version, id, _) = resolve(s, &subject, &selector, flag(&params, "deleted"))?;
        Ok(ok(version_body(s, &subject, version, id)))
    })
}

async fn get_version_schema(
    AxumState(app): AxumState<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let selector = parse_version(&version)?;
    app.store.read(|s| {
        let (_, id, _) = resolve(s, &subject, &selector, flag(&params, "deleted"))?;
        let schema = s.schema(id).map(|x| x.schema.clone()).unwrap_or_default();
        Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response())
    })
}

async fn register(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = avro_schema(parse_body(&body)?)?;
    let hash = schema_hash(&schema).map_err(ApiError::invalid_schema)?;
    let _guard = app.store.lock_writes().await;
    let decision = app.store.read(|s| {
        let live = s.versions(&subject, false);
        if let Some((_, entry)) = live.iter().find(|(_, e)| s.schema(e.id).is_some_and(|x| x.hash == hash)) {
            return Ok(Err(entry.id));
        }
        let existing: Vec<&str> = live.iter().filter_map(|(_, e)| s.schema(e.id).map(|x| x.schema.as_str())).collect();
        let reasons = compat::check(s.effective_level(&subject), &schema, &existing);
        if !reasons.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                409,
                format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {reasons:?}"),
            ));
        }
        let id = s.id_for_hash(&hash).unwrap_or_else(|| s.next_id());
        Ok(Ok((id, s.max_version(&subject) + 1)))
    })?;
    match decision {
        Err(existing_id) => Ok(ok(json!({ "id": existing_id }))),
        Ok((id, version)) => {
            app.store
                .write(&[(
                    records::schema_key(&subject, version),
                    Some(records::schema_value(&subject, version, id, &schema, false)),
                )])
                .await?;
            tracing::info!(subject, version, id, "Schema registered.");
            Ok(ok(json!({ "id": id })))
        }
    }
}

async fn lookup(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = avro_schema(parse_body(&body)?)?;
    let hash = schema_hash(&schema).map_err(ApiError::invalid_schema)?;
    app.store.read(|s| {
        let versions = s.versions(&subject, flag(&params, "deleted"));
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(&subject));
        }
        let (version, entry) = versions
            .iter()
            .rev()
            .find(|(_, e)| s.schema(e.id).is_some_and(|x| x.hash == hash))
            .ok_or_else(ApiError::schema_not_found)?;
        Ok(ok(version_body(s, &subject, *version, entry.id)))
    })
}

async fn delete_subject(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let permanent = flag(&params, "permanent");
    let _guard = app.store.lock_writes().await;
    let writes = app.store.read(|s| {
        let all = s.versions(&subject, true);
        if all.is_empty() {
            return Err(ApiError::subject_not_found(&subject));
        }
        let live: Vec<_> = all.iter().filter(|(_, e)| !e.deleted).collect();
        if permanent {
            if !live.is_empty() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    40405,
                    format!("Subject '{subject}' was not deleted first before being permanently deleted"),
                ));
            }
            let mut writes: Vec<_> = all.iter().map(|(v, _)| (records::schema_key(&subject, *v), None)).collect();
            if s.subject_level(&subject).is_some() {
                writes.push((records::config_key(Some(&subject)), None));
            }
            Ok((writes, all.iter().map(|(v, _)| *v).collect::<Vec<_>>()))
        } else {
            if live.is_empty() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    40404,
                    format!("Subject '{subject}' was soft deleted."),
                ));
            }
            let writes = live
                .iter()
                .map(|(v, e)| {
                    let schema = s.schema(e.id).map(|x| x.schema.as_str()).unwrap_or_default();
                    (records::schema_key(&subject, *v), Some(records::schema_value(&subject, *v, e.id, schema, true)))
                })
                .collect();
            Ok((writes, live.iter().map(|(v, _)| *v).collect()))
        }
    })?;
    app.store.write(&writes.0).await?;
    Ok(ok(writes.1))
}

async fn delete_version(
    AxumState(app): AxumState<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let permanent = flag(&params, "permanent");
    let selector = parse_version(&version)?;
    let _guard = app.store.lock_writes().await;
    let (write, number) = app.store.read(|s| {
        // A numbered version is found even when soft-deleted, to answer 40406 rather than 40402.
        let include_deleted = permanent || matches!(selector, VersionSelector::Number(_));
        let (number, id, deleted) = resolve(s, &subject, &selector, include_deleted)?;
        let key = records::schema_key(&subject, number);
        if permanent {
            if !deleted {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    40407,
                    format!(
                        "Subject '{subject}' Version {number} was not deleted first before being permanently deleted"
                    ),
                ));
            }
            Ok(((key, None), number))
        } else {
            if deleted {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    40406,
                    format!("Subject '{subject}' Version {number} was soft deleted."),
                ));
            }
            let schema = s.schema(id).map(|x| x.schema.as_str()).unwrap_or_default();
            Ok(((key, Some(records::schema_value(&subject, number, id, schema, true))), number))
        }
    })?;
    app.store.write(&[write]).await?;
    Ok(ok(number))
}

async fn get_schema_by_id(AxumState(app): AxumState<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id: i32 = id.parse().map_err(|_| ApiError::schema_not_found())?;
    app.store.read(|s| s.schema(id).map(|x| ok(json!({"schema": x.schema}))).ok_or_else(ApiError::schema_not_found))
}

async fn get_schema_usages(
    AxumState(app): AxumState<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id: i32 = id.parse().map_err(|_| ApiError::schema_not_found())?;
    app.store.read(|s| {
        s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        let usages: Vec<Value> = s
            .usages(id, flag(&params, "deleted"))
            .into_iter()
            .map(|(subject, version)| json!({"subject": subject, "version": version}))
            .collect();
        Ok(ok(usages))
    })
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

fn parse_level(body: &Bytes) -> Result<Level, ApiError> {
    let request: ConfigRequest = parse_body(body)?;
    request.compatibility.parse().map_err(|()| ApiError::invalid_level(&request.compatibility))
}

async fn get_global_config(AxumState(app): AxumState<AppState>) -> Response {
    ok(json!({"compatibilityLevel": app.store.read(|s| s.global_level()).as_str()}))
}

async fn put_global_config(AxumState(app): AxumState<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let level = parse_level(&body)?;
    app.store.write(&[(records::config_key(None), Some(records::config_value(level.as_str())))]).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn get_subject_config(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let (own, global) = app.store.read(|s| (s.subject_level(&subject), s.global_level()));
    match (own, flag(&params, "defaultToGlobal")) {
        (Some(level), _) => Ok(ok(json!({"compatibilityLevel": level.as_str()}))),
        (None, true) => Ok(ok(json!({"compatibilityLevel": global.as_str()}))),
        (None, false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )),
    }
}

async fn put_subject_config(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let level = parse_level(&body)?;
    app.store.write(&[(records::config_key(Some(&subject)), Some(records::config_value(level.as_str())))]).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn delete_subject_config(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let own = app.store.read(|s| s.subject_level(&subject)).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40408,
            format!("Subject '{subject}' does not have subject-level compatibility configured"),
        )
    })?;
    app.store.write(&[(records::config_key(Some(&subject)), None)]).await?;
    Ok(ok(json!({"compatibilityLevel": own.as_str()})))
}

fn compatibility_response(reasons: Vec<String>, verbose: bool) -> Response {
    if verbose {
        ok(json!({"is_compatible": reasons.is_empty(), "messages": reasons}))
    } else {
        ok(json!({"is_compatible": reasons.is_empty()}))
    }
}

async fn check_version(
    AxumState(app): AxumState<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = avro_schema(parse_body(&body)?)?;
    let selector = parse_version(&version)?;
    let reasons = app.store.read(|s| {
        let live = s.versions(&subject, false);
        if live.is_empty() && matches!(selector, VersionSelector::Latest) {
            return Ok::<_, ApiError>(Vec::new());
        }
        let (_, id, _) = resolve(s, &subject, &selector, false)?;
        let old = s.schema(id).map(|x| x.schema.as_str()).unwrap_or_default();
        let level = match s.effective_level(&subject) {
            Level::BackwardTransitive => Level::Backward,
            Level::ForwardTransitive => Level::Forward,
            Level::FullTransitive => Level::Full,
            other => other,
        };
        Ok(compat::check(level, &schema, &[old]))
    })?;
    Ok(compatibility_response(reasons, flag(&params, "verbose")))
}

async fn check_all(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let schema = avro_schema(parse_body(&body)?)?;
    let reasons = app.store.read(|s| {
        let live = s.versions(&subject, false);
        let existing: Vec<&str> = live.iter().filter_map(|(_, e)| s.schema(e.id).map(|x| x.schema.as_str())).collect();
        compat::check(s.effective_level(&subject), &schema, &existing)
    });
    Ok(compatibility_response(reasons, flag(&params, "verbose")))
}
