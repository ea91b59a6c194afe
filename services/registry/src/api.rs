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
    canonical,
    compat::{self, Level},
    state::{Mode, Reference, State, StoredSchema, guid, identity, records},
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
    fn invalid_mode(m: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42204,
            format!("Invalid mode: '{m}'; one of READWRITE, READONLY, READONLY_OVERRIDE, IMPORT"),
        )
    }
    fn not_permitted(reason: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, 42205, reason.to_string())
    }
    fn read_only(subject: &str) -> Self {
        Self::not_permitted(format!("Subject '{subject}' is in read-only mode"))
    }
    fn referenced(subject: &str, version: i32) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42206,
            format!("One or more references exist to the schema {{subject={subject},version={version}}}"),
        )
    }
    fn mode_not_configured(subject: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40409,
            format!("Subject '{subject}' does not have subject-level mode configured"),
        )
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
    references: Vec<Reference>,
    /// IMPORT mode only: the id and version to register under.
    #[serde(default)]
    id: Option<i32>,
    #[serde(default)]
    version: Option<i32>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(ApiError::bad_request)
}

/// A schema request, validated against the current state.
struct Prepared {
    stored: StoredSchema,
    /// Self-contained text (references written in place): what compatibility reads.
    resolved: String,
}

/// Validates an Avro schema request with its references and computes its canonical text and
/// identity. References to version `-1` mean the subject's latest version at this moment.
fn prepare(state: &State, request: &SchemaRequest) -> Result<Prepared, ApiError> {
    if let Some(t) = request.schema_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("AVRO")) {
        return Err(ApiError::invalid_schema(format!("schema type {t} is not supported; only AVRO is")));
    }
    let value: Value = serde_json::from_str(&request.schema).map_err(ApiError::invalid_schema)?;
    // apache-avro reads `{"name": "f", "type": "array", "items": ...}` (a complex type named as a
    // string inside a field) as valid; Avro's reference parsers (Java, Python) refuse it, and so
    // do their consumers, so the registry refuses it too.
    if let Some(reason) = unreadable_by_reference_parsers(&value) {
        return Err(ApiError::invalid_schema(reason));
    }
    let mut references = Vec::with_capacity(request.references.len());
    for reference in &request.references {
        let version = match reference.version {
            -1 => state.versions(&reference.subject, false).last().map(|(v, _)| *v).unwrap_or(-1),
            v => v,
        };
        references.push(Reference { version, ..reference.clone() });
    }
    let definitions = state.referenced_definitions(&references).map_err(ApiError::invalid_schema)?;
    let resolved = canonical::inline(&canonical::canonical(&value), &definitions);
    apache_avro::Schema::parse(&resolved).map_err(ApiError::invalid_schema)?;
    let (schema, hash) = identity(&request.schema, &references, true).map_err(ApiError::invalid_schema)?;
    Ok(Prepared {
        stored: StoredSchema { schema, schema_type: None, references, hash },
        resolved: canonical::to_text(&resolved),
    })
}

/// The first construct that apache-avro accepts but Avro's reference parsers (Java, Python)
/// refuse: a complex type (`array`, `map`, `record`, `enum`, `fixed`) written as a bare name, a
/// schema object whose `type` is itself a schema rather than a name, or one whose `type` names a
/// defined type (Python's parser refuses it, Java's accepts it).
fn unreadable_by_reference_parsers(schema: &Value) -> Option<String> {
    const COMPLEX: [&str; 6] = ["array", "map", "record", "error", "enum", "fixed"];
    match schema {
        Value::String(name) => COMPLEX.contains(&name.as_str()).then(|| {
            format!("`{name}` is not a type name: a complex type is written as an object, e.g. {{\"type\": \"{name}\", ...}}")
        }),
        Value::Array(union) => union.iter().find_map(unreadable_by_reference_parsers),
        Value::Object(object) => match object.get("type") {
            Some(Value::String(kind)) => match kind.as_str() {
                "record" | "error" => object
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|field| field.get("type").and_then(unreadable_by_reference_parsers)),
                "array" => object.get("items").and_then(unreadable_by_reference_parsers),
                "map" => object.get("values").and_then(unreadable_by_reference_parsers),
                "enum" | "fixed" => None,
                primitive if canonical::is_primitive(primitive) => None,
                name => Some(format!("`{{\"type\": \"{name}\"}}` is not a schema: a named type is used by its name, \"{name}\"")),
            },
            Some(nested) => Some(format!("`type` must be a type name, not {nested}: write the inner schema itself")),
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

/// `{subject, version, id, guid, schema}`, with `references` and `schemaType` when they apply.
fn version_body(state: &State, subject: &str, version: i32, id: i32) -> Value {
    let mut body = json!({"subject": subject, "version": version, "id": id});
    if let Some(stored) = state.schema(id) {
        body["guid"] = json!(guid(&stored.hash));
        schema_fields(stored, &mut body);
    }
    body
}

fn schema_fields(stored: &StoredSchema, body: &mut Value) {
    body["schema"] = json!(stored.schema);
    if !stored.references.is_empty() {
        body["references"] = json!(stored.references);
    }
    if let Some(kind) = &stored.schema_type {
        body["schemaType"] = json!(kind);
    }
}

/// `offset` and `limit` (`-1`: no limit) as Confluent's listing routes take them.
fn page<T>(items: Vec<T>, params: &HashMap<String, String>) -> Result<Vec<T>, ApiError> {
    let number = |name: &str, default: i64| -> Result<i64, ApiError> {
        params.get(name).map_or(Ok(default), |raw| {
            raw.parse::<i64>().map_err(|_| ApiError::bad_request(format!("`{name}` must be an integer, not `{raw}`")))
        })
    };
    let offset = usize::try_from(number("offset", 0)?.max(0)).unwrap_or(usize::MAX);
    let limit = number("limit", -1)?;
    let items = items.into_iter().skip(offset);
    Ok(if limit < 0 { items.collect() } else { items.take(usize::try_from(limit).unwrap_or(usize::MAX)).collect() })
}

/// The first of several spellings of a query parameter (Confluent's and its clients' differ).
fn param<'a>(params: &'a HashMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| params.get(*n)).map(String::as_str)
}

fn any_flag(params: &HashMap<String, String>, names: &[&str]) -> bool {
    names.iter().any(|n| flag(params, n))
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/contexts", get(|| async { ok(["."]) }))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/metadata", get(latest_with_metadata))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(get_referenced_by))
        .route("/schemas", get(list_schemas))
        .route("/schemas/ids/{id}", get(get_schema_by_id))
        .route("/schemas/ids/{id}/schema", get(get_raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(get_schema_subjects))
        .route("/schemas/ids/{id}/versions", get(get_schema_usages))
        .route("/schemas/guids/{guid}", get(get_schema_by_guid))
        .route("/schemas/types", get(|| async { ok(["AVRO"]) }))
        .route("/config", get(get_global_config).put(put_global_config).delete(delete_global_config))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config).delete(delete_subject_config))
        .route("/mode", get(get_global_mode).put(put_global_mode))
        .route("/mode/{subject}", get(get_subject_mode).put(put_subject_mode).delete(delete_subject_mode))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check_version))
        // Confluent's clients read `error_code` from every error body, unknown routes included.
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 405, "HTTP 405 Method Not Allowed")
        })
        .with_state(state)
}

async fn list_subjects(AxumState(app): AxumState<AppState>, params: Params) -> Result<Response, ApiError> {
    let prefix = param(&params, &["subjectPrefix", "subject"]).unwrap_or_default();
    let deleted_only = any_flag(&params, &["deletedOnly", "deleted_only"]);
    let subjects = app.store.read(|s| {
        let live = s.subjects(false);
        let subjects = if deleted_only {
            s.subjects(true).into_iter().filter(|x| !live.contains(x)).collect()
        } else {
            s.subjects(flag(&params, "deleted"))
        };
        subjects.into_iter().filter(|x| x.starts_with(prefix)).collect::<Vec<_>>()
    });
    Ok(ok(page(subjects, &params)?))
}

async fn list_versions(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let deleted_only = any_flag(&params, &["deletedOnly", "deleted_only"]);
    let all = app.store.read(|s| s.versions(&subject, true));
    if all.is_empty() || (!deleted_only && !flag(&params, "deleted") && all.iter().all(|(_, e)| e.deleted)) {
        return Err(ApiError::subject_not_found(&subject));
    }
    let versions: Vec<i32> = all
        .iter()
        .filter(|(_, e)| if deleted_only { e.deleted } else { flag(&params, "deleted") || !e.deleted })
        .map(|(v, _)| *v)
        .collect();
    Ok(ok(page(versions, &params)?))
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

async fn latest_with_metadata(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    // Schemas here carry no metadata, so a request for any key matches nothing.
    if params.contains_key("key") {
        return Err(ApiError::schema_not_found());
    }
    app.store.read(|s| {
        let (version, id, _) = resolve(s, &subject, &VersionSelector::Latest, flag(&params, "deleted"))?;
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

async fn get_referenced_by(
    AxumState(app): AxumState<AppState>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    let selector = parse_version(&version)?;
    let ids = app.store.read(|s| {
        let (version, _, _) = resolve(s, &subject, &selector, true)?;
        Ok::<_, ApiError>(s.referenced_by(&subject, version))
    })?;
    Ok(ok(page(ids, &params)?))
}

/// What a registration decided: an existing id, or a new version to write.
enum Registration {
    Existing(i32),
    New { id: i32, version: i32, stored: StoredSchema },
}

async fn register(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SchemaRequest = parse_body(&body)?;
    let _guard = app.store.lock_writes().await;
    let decision = app.store.read(|s| {
        let mode = s.effective_mode(&subject);
        if mode.read_only() {
            return Err(ApiError::read_only(&subject));
        }
        // As Confluent: a non-positive id is no id.
        let requested_id = request.id.filter(|id| *id > 0);
        let prepared = prepare(s, &request)?;
        let hash = prepared.stored.hash;
        let live = s.versions(&subject, false);
        if let Some((_, entry)) = live.iter().find(|(_, e)| s.schema(e.id).is_some_and(|x| x.hash == hash)) {
            return match requested_id {
                Some(id) if id != entry.id => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42207,
                    format!("Schema already registered with id {} instead of input id {id}", entry.id),
                )),
                _ => Ok(Registration::Existing(entry.id)),
            };
        }
        if mode == Mode::Import {
            let id = requested_id
                .ok_or_else(|| ApiError::not_permitted(format!("Subject '{subject}' is in IMPORT mode: give the schema's id")))?;
            if s.schema(id).is_some_and(|x| x.hash != hash) {
                return Err(ApiError::not_permitted(format!("Overwrite new schema with id {id} is not permitted.")));
            }
            let version = request.version.unwrap_or_else(|| s.max_version(&subject) + 1);
            if version < 1 || s.versions(&subject, true).iter().any(|(v, _)| *v == version) {
                return Err(ApiError::not_permitted(format!("Subject '{subject}' already has version {version}")));
            }
            // Imports copy another registry's history as it is: no compatibility check.
            return Ok(Registration::New { id, version, stored: prepared.stored });
        }
        // Outside IMPORT an id or version may be given only if it is the one the registry picks.
        let id = s.id_for_hash(&hash).unwrap_or_else(|| s.next_id());
        let version = s.max_version(&subject) + 1;
        if requested_id.is_some_and(|r| r != id) || request.version.is_some_and(|v| v != version) {
            return Err(ApiError::not_permitted(format!(
                "Subject '{subject}' is not in IMPORT mode: it would get id {id} and version {version}"
            )));
        }
        let existing: Vec<String> = live.iter().filter_map(|(_, e)| s.resolved_text(e.id)).collect();
        let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
        let reasons = compat::check(s.effective_level(&subject), &prepared.resolved, &existing);
        if !reasons.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                409,
                format!("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {reasons:?}"),
            ));
        }
        Ok(Registration::New { id, version, stored: prepared.stored })
    })?;
    match decision {
        Registration::Existing(id) => Ok(ok(json!({ "id": id }))),
        Registration::New { id, version, stored } => {
            app.store
                .write(&[(
                    records::schema_key(&subject, version),
                    Some(records::schema_value(&subject, version, id, &stored, false)),
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
    let request: SchemaRequest = parse_body(&body)?;
    app.store.read(|s| {
        let versions = s.versions(&subject, flag(&params, "deleted"));
        if versions.is_empty() {
            return Err(ApiError::subject_not_found(&subject));
        }
        let hash = prepare(s, &request)?.stored.hash;
        let (version, entry) = versions
            .iter()
            .rev()
            .find(|(_, e)| s.schema(e.id).is_some_and(|x| x.hash == hash))
            .ok_or_else(ApiError::schema_not_found)?;
        Ok(ok(version_body(s, &subject, *version, entry.id)))
    })
}

/// Refuses to delete `versions` of `subject` while another live schema references one of them.
fn check_unreferenced(state: &State, subject: &str, versions: impl IntoIterator<Item = i32>) -> Result<(), ApiError> {
    match versions.into_iter().find(|v| !state.referenced_by(subject, *v).is_empty()) {
        Some(version) => Err(ApiError::referenced(subject, version)),
        None => Ok(()),
    }
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
        if s.effective_mode(&subject).read_only() {
            return Err(ApiError::read_only(&subject));
        }
        let live: Vec<_> = all.iter().filter(|(_, e)| !e.deleted).collect();
        check_unreferenced(s, &subject, all.iter().map(|(v, _)| *v))?;
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
            if s.subject_mode(&subject).is_some() {
                writes.push((records::mode_key(Some(&subject)), None));
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
                .filter_map(|(v, e)| {
                    let stored = s.schema(e.id)?;
                    Some((
                        records::schema_key(&subject, *v),
                        Some(records::schema_value(&subject, *v, e.id, stored, true)),
                    ))
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
        if s.effective_mode(&subject).read_only() {
            return Err(ApiError::read_only(&subject));
        }
        check_unreferenced(s, &subject, [number])?;
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
            let stored = s.schema(id).ok_or_else(ApiError::schema_not_found)?;
            Ok(((key, Some(records::schema_value(&subject, number, id, stored, true))), number))
        }
    })?;
    app.store.write(&[write]).await?;
    Ok(ok(number))
}

fn parse_id(raw: &str) -> Result<i32, ApiError> {
    raw.parse().map_err(|_| ApiError::schema_not_found())
}

async fn get_schema_by_id(AxumState(app): AxumState<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    app.store.read(|s| {
        let stored = s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        let mut body = json!({"guid": guid(&stored.hash)});
        schema_fields(stored, &mut body);
        Ok(ok(body))
    })
}

async fn get_raw_schema_by_id(
    AxumState(app): AxumState<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    app.store.read(|s| {
        let stored = s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], stored.schema.clone()).into_response())
    })
}

async fn get_schema_by_guid(
    AxumState(app): AxumState<AppState>,
    Path(guid_text): Path<String>,
) -> Result<Response, ApiError> {
    app.store.read(|s| {
        let id = s.id_for_guid(&guid_text).ok_or_else(ApiError::schema_not_found)?;
        let stored = s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        let mut body = json!({"id": id, "guid": guid_text});
        schema_fields(stored, &mut body);
        Ok(ok(body))
    })
}

async fn list_schemas(AxumState(app): AxumState<AppState>, params: Params) -> Result<Response, ApiError> {
    let prefix = param(&params, &["subjectPrefix"]).unwrap_or_default();
    let latest_only = flag(&params, "latestOnly");
    let bodies = app.store.read(|s| {
        let mut rows = s.all_versions(flag(&params, "deleted"));
        rows.retain(|(subject, _, _)| subject.starts_with(prefix));
        if latest_only {
            // Rows are sorted by subject then version: keep each subject's last.
            let mut latest: Vec<(String, i32, i32)> = Vec::new();
            for row in rows {
                match latest.last_mut() {
                    Some(last) if last.0 == row.0 => *last = row,
                    _ => latest.push(row),
                }
            }
            rows = latest;
        }
        rows.into_iter().map(|(subject, version, id)| version_body(s, &subject, version, id)).collect::<Vec<_>>()
    });
    Ok(ok(page(bodies, &params)?))
}

async fn get_schema_subjects(
    AxumState(app): AxumState<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let subjects = app.store.read(|s| {
        s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        let mut subjects: Vec<String> = s
            .usages(id, flag(&params, "deleted"))
            .into_iter()
            .map(|(subject, _)| subject)
            .filter(|subject| params.get("subject").is_none_or(|wanted| wanted == subject))
            .collect();
        subjects.dedup();
        Ok::<_, ApiError>(subjects)
    })?;
    Ok(ok(page(subjects, &params)?))
}

async fn get_schema_usages(
    AxumState(app): AxumState<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let usages = app.store.read(|s| {
        s.schema(id).ok_or_else(ApiError::schema_not_found)?;
        Ok::<_, ApiError>(
            s.usages(id, flag(&params, "deleted"))
                .into_iter()
                .filter(|(subject, _)| params.get("subject").is_none_or(|wanted| wanted == subject))
                .map(|(subject, version)| json!({"subject": subject, "version": version}))
                .collect::<Vec<_>>(),
        )
    })?;
    Ok(ok(page(usages, &params)?))
}

#[derive(Deserialize)]
struct ConfigRequest {
    /// Confluent's clients send either spelling (`set_compatibility`, `set_config`).
    #[serde(alias = "compatibilityLevel")]
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

/// Back to the default level (BACKWARD); answers the level that was set.
async fn delete_global_config(AxumState(app): AxumState<AppState>) -> Result<Response, ApiError> {
    let previous = app.store.read(State::global_level);
    app.store.write(&[(records::config_key(None), None)]).await?;
    Ok(ok(json!({"compatibilityLevel": previous.as_str()})))
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

#[derive(Deserialize)]
struct ModeRequest {
    mode: String,
}

async fn get_global_mode(AxumState(app): AxumState<AppState>) -> Response {
    ok(json!({"mode": app.store.read(State::global_mode).as_str()}))
}

/// Sets `subject`'s mode (`None`: the global one). IMPORT is refused where versions exist unless
/// `force=true`, since imported ids could then collide with ids already handed out.
async fn set_mode(
    app: &AppState,
    subject: Option<&str>,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let request: ModeRequest = parse_body(body)?;
    let mode = Mode::parse(&request.mode).ok_or_else(|| ApiError::invalid_mode(&request.mode))?;
    let _guard = app.store.lock_writes().await;
    if mode == Mode::Import && !flag(params, "force") {
        let occupied = app.store.read(|s| match subject {
            Some(subject) => !s.versions(subject, true).is_empty(),
            None => !s.subjects(true).is_empty(),
        });
        if occupied {
            return Err(ApiError::not_permitted("Cannot import since found existing subjects (use force=true)"));
        }
    }
    app.store.write(&[(records::mode_key(subject), Some(records::mode_value(mode)))]).await?;
    Ok(ok(json!({"mode": mode.as_str()})))
}

async fn put_global_mode(
    AxumState(app): AxumState<AppState>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_mode(&app, None, &params, &body).await
}

async fn get_subject_mode(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let (own, global) = app.store.read(|s| (s.subject_mode(&subject), s.global_mode()));
    match (own, flag(&params, "defaultToGlobal")) {
        (Some(mode), _) => Ok(ok(json!({"mode": mode.as_str()}))),
        (None, true) => Ok(ok(json!({"mode": global.as_str()}))),
        (None, false) => Err(ApiError::mode_not_configured(&subject)),
    }
}

async fn put_subject_mode(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_mode(&app, Some(&subject), &params, &body).await
}

async fn delete_subject_mode(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    let own = app.store.read(|s| s.subject_mode(&subject)).ok_or_else(|| ApiError::mode_not_configured(&subject))?;
    app.store.write(&[(records::mode_key(Some(&subject)), None)]).await?;
    Ok(ok(json!({"mode": own.as_str()})))
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
    let request: SchemaRequest = parse_body(&body)?;
    let selector = parse_version(&version)?;
    let reasons = app.store.read(|s| {
        let prepared = prepare(s, &request)?;
        let live = s.versions(&subject, false);
        if live.is_empty() && matches!(selector, VersionSelector::Latest) {
            return Ok::<_, ApiError>(Vec::new());
        }
        let (_, id, _) = resolve(s, &subject, &selector, false)?;
        let old = s.resolved_text(id).unwrap_or_default();
        let level = match s.effective_level(&subject) {
            Level::BackwardTransitive => Level::Backward,
            Level::ForwardTransitive => Level::Forward,
            Level::FullTransitive => Level::Full,
            other => other,
        };
        Ok(compat::check(level, &prepared.resolved, &[old.as_str()]))
    })?;
    Ok(compatibility_response(reasons, flag(&params, "verbose")))
}

async fn check_all(
    AxumState(app): AxumState<AppState>,
    Path(subject): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: SchemaRequest = parse_body(&body)?;
    let reasons = app.store.read(|s| {
        let prepared = prepare(s, &request)?;
        let live = s.versions(&subject, false);
        let existing: Vec<String> = live.iter().filter_map(|(_, e)| s.resolved_text(e.id)).collect();
        let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
        Ok::<_, ApiError>(compat::check(s.effective_level(&subject), &prepared.resolved, &existing))
    })?;
    Ok(compatibility_response(reasons, flag(&params, "verbose")))
}
