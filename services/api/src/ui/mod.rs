//! The dashboards (`/ui/...`): server-rendered HTML pages over the same read models as the JSON
//! API, signed in with a user token that becomes a session cookie ([`crate::auth::Sessions`]).
//!
//! Every asset is in this binary (templates, one stylesheet, one script; charts are SVG drawn
//! here), so a page needs nothing but this server. Every page takes `as_of` (RFC 3339, or a
//! `datetime-local` value read as UTC) and shows what the read models held at that time.

mod charts;
mod pages;
mod tail;

use std::{collections::HashMap, sync::Arc};

use axum::{
    Form, Router,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, SubsecRound, Utc};
use ct_platform::http_error::ApiError;
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use crate::{
    AppState,
    auth::{Caller, Permission},
    routes::bad,
};

pub use tail::Tail;

#[derive(Clone, Deserialize)]
pub struct UiConfig {
    /// Seals the session cookies (at least 32 bytes). A secret: `Debug` never shows it.
    pub session_key: secrecy::SecretString,
    /// How long a sign-in lasts.
    pub session_ttl_s: u64,
    /// Mark the cookie `Secure` (sent over HTTPS only). Off in the dev profile (plain HTTP).
    pub secure_cookie: bool,
    /// How often the live tail asks the events model for new rows while someone watches.
    pub tail_poll_ms: u64,
}

impl std::fmt::Debug for UiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiConfig")
            .field("session_key", &"[redacted]")
            .field("session_ttl_s", &self.session_ttl_s)
            .field("secure_cookie", &self.secure_cookie)
            .field("tail_poll_ms", &self.tail_poll_ms)
            .finish()
    }
}

/// The templates and the live tail, built once.
pub struct Ui {
    templates: Environment<'static>,
    pub tail: Arc<Tail>,
}

impl Ui {
    pub fn new(config: &UiConfig, pool: sqlx::PgPool, shutdown: tokio_util::sync::CancellationToken) -> Ui {
        let mut templates = Environment::new();
        for (name, source) in TEMPLATES {
            templates.add_template(name, source).expect("the dashboards' templates are valid");
        }
        let poll = std::time::Duration::from_millis(config.tail_poll_ms);
        Ui { templates, tail: Arc::new(Tail::new(pool, poll, shutdown)) }
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../ui/templates/layout.html")),
    ("login.html", include_str!("../../ui/templates/login.html")),
    ("error.html", include_str!("../../ui/templates/error.html")),
    ("status.html", include_str!("../../ui/templates/status.html")),
    ("events.html", include_str!("../../ui/templates/events.html")),
    ("event.html", include_str!("../../ui/templates/event.html")),
    ("runs.html", include_str!("../../ui/templates/runs.html")),
    ("run.html", include_str!("../../ui/templates/run.html")),
    ("finance.html", include_str!("../../ui/templates/finance.html")),
    ("ci.html", include_str!("../../ui/templates/ci.html")),
    ("exceptions.html", include_str!("../../ui/templates/exceptions.html")),
    ("exception.html", include_str!("../../ui/templates/exception.html")),
    ("reports.html", include_str!("../../ui/templates/reports.html")),
];

const STYLE: &str = include_str!("../../ui/assets/app.css");
const SCRIPT: &str = include_str!("../../ui/assets/app.js");

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/status") }))
        .route("/ui", get(|| async { Redirect::to("/ui/status") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/assets/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/ui/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/ui/status", get(pages::status))
        .route("/ui/events", get(pages::events))
        .route("/ui/events/{event_id}", get(pages::event))
        .route("/ui/tail", get(tail::stream))
        .route("/ui/runs", get(pages::runs))
        .route("/ui/runs/{run_id}", get(pages::run))
        .route("/ui/finance", get(pages::finance))
        .route("/ui/ci", get(pages::ci))
        .route("/ui/exceptions", get(pages::exceptions))
        .route("/ui/exceptions/{item_id}", get(pages::exception))
        .route("/ui/reports", get(pages::reports))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")];
    (headers, body).into_response()
}

/// What a page answers instead of its content: a redirect to sign in, or an error page.
pub enum Refusal {
    SignIn(String),
    Error(Box<Page>, ApiError),
}

impl From<(Box<Page>, ApiError)> for Refusal {
    fn from((page, error): (Box<Page>, ApiError)) -> Self {
        Refusal::Error(page, error)
    }
}

/// One request to a page: who asks, at which time, with which parameters.
pub struct Page {
    app: Arc<AppState>,
    pub caller: Caller,
    /// The `as_of` asked for, or now.
    pub as_of: DateTime<Utc>,
    /// Whether `as_of` was given (the page shows the past).
    pub travelling: bool,
    pub params: HashMap<String, String>,
    nav: &'static str,
    path: String,
}

impl Page {
    /// Checks the session and the parameters (`as_of` and `known`), else the refusal to send.
    pub fn open(
        app: &Arc<AppState>,
        headers: &HeaderMap,
        params: HashMap<String, String>,
        known: &[&str],
        nav: &'static str,
        path: String,
    ) -> Result<Page, Refusal> {
        let Some(caller) = app.users.session(headers) else {
            return Err(Refusal::SignIn(path));
        };
        let mut page = Page {
            app: app.clone(),
            caller,
            // Microseconds, as Postgres stores times: a time the page computes compares equal to
            // the same time read back.
            as_of: Utc::now().trunc_subsecs(6),
            travelling: false,
            params: HashMap::new(),
            nav,
            path,
        };
        let mut allowed = vec!["as_of"];
        allowed.extend_from_slice(known);
        // Empty form fields mean "not set".
        let params: HashMap<String, String> = params.into_iter().filter(|(_, v)| !v.trim().is_empty()).collect();
        if let Err(error) = crate::routes::reject_unknown(&params, &allowed) {
            return Err(Refusal::Error(Box::new(page), error));
        }
        if let Some(raw) = params.get("as_of") {
            match parse_as_of(raw) {
                Some(at) => (page.as_of, page.travelling) = (at.trunc_subsecs(6), true),
                None => {
                    let error = bad(
                        "as_of",
                        format!("`as_of` must be an RFC 3339 time like 2025-09-25T09:00:00Z, not `{raw}`"),
                    );
                    return Err(Refusal::Error(Box::new(page), error));
                }
            }
        }
        page.params = params;
        Ok(page)
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.app.pool
    }

    pub fn app(&self) -> &AppState {
        &self.app
    }

    pub fn may(&self, permission: Permission) -> bool {
        self.caller.role.allows(permission)
    }

    /// A refusal carrying this page (for its navigation).
    pub fn refuse(self, error: ApiError) -> Refusal {
        Refusal::Error(Box::new(self), error)
    }

    /// The query string that keeps this page's `as_of` in links.
    fn as_of_query(&self) -> String {
        if self.travelling { format!("?as_of={}", encode(&rfc3339(self.as_of))) } else { String::new() }
    }

    fn common(&self) -> Value {
        context! {
            nav => self.nav,
            role => self.caller.role.as_str(),
            may_read_events => self.may(Permission::ReadEvents),
            may_operate => self.may(Permission::Operate),
            may_approve => self.may(Permission::Approve),
            as_of => rfc3339(self.as_of),
            as_of_local => self.as_of.format("%Y-%m-%dT%H:%M").to_string(),
            as_of_text => self.as_of.format("%Y-%m-%d %H:%M UTC").to_string(),
            travelling => self.travelling,
            keep => self.as_of_query(),
            path => self.path.clone(),
            // The page's own filters, kept by the time scrubber's form.
            filters => self.params.iter().filter(|(k, _)| !matches!(k.as_str(), "as_of" | "cursor"))
                .map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        }
    }

    pub fn render(self, template: &str, content: Value) -> Result<Response, Refusal> {
        let ctx = context! { ..content, ..self.common() };
        match self.app.ui.templates.get_template(template).and_then(|t| t.render(ctx)) {
            Ok(html) => Ok(html_response(StatusCode::OK, html)),
            Err(error) => {
                tracing::error!(%error, template, "A dashboard template failed to render.");
                Err(self.refuse(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "render_failed",
                    "the page failed to render",
                )))
            }
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn(path) => Redirect::to(&format!("/ui/login?next={}", encode(&path))).into_response(),
            Refusal::Error(page, error) => {
                let ctx = context! {
                    ..context! { status => error.status.as_u16(), code => error.code, message => error.message.clone(), field => error.field.clone() },
                    ..page.common()
                };
                let html = page
                    .app
                    .ui
                    .templates
                    .get_template("error.html")
                    .and_then(|t| t.render(ctx))
                    .unwrap_or_else(|_| format!("{} {}", error.status, error.message));
                html_response(error.status, html)
            }
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but this server: no other origin for scripts, styles, images or connections.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339, or what a `datetime-local` field sends (`2025-09-25T09:00`, read as UTC).
pub(crate) fn parse_as_of(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
            .map(|naive| naive.and_utc())
    })
}

pub(crate) fn encode(text: &str) -> String {
    ct_platform::registry::encode_segment(text)
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
    #[serde(default)]
    next: String,
}

/// Only a path of the dashboards: never another site.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains("://") { next } else { "/ui/status" }
}

async fn login_form(State(app): State<Arc<AppState>>, Query(params): Query<HashMap<String, String>>) -> Response {
    let next = params.get("next").map_or("/ui/status", |n| safe_next(n)).to_owned();
    login_page(&app, StatusCode::OK, &next, None)
}

fn login_page(app: &AppState, status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let html = app
        .ui
        .templates
        .get_template("login.html")
        .and_then(|t| t.render(context! { next => next, error => error }))
        .unwrap_or_else(|e| format!("sign-in page failed: {e}"));
    html_response(status, html)
}

async fn login(State(app): State<Arc<AppState>>, Form(form): Form<SignIn>) -> Response {
    let next = safe_next(&form.next).to_owned();
    match app.users.sign_in(&form.token) {
        Some((caller, cookie)) => {
            tracing::info!(actor = caller.actor, "Signed in to the dashboards.");
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => login_page(&app, StatusCode::UNAUTHORIZED, &next, Some("unknown token")),
    }
}

async fn logout(State(app): State<Arc<AppState>>) -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(value) = HeaderValue::from_str(&app.users.sessions().clear()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_rfc3339_or_a_local_field_read_as_utc() {
        let expected: DateTime<Utc> = "2025-09-25T09:00:00Z".parse().unwrap();
        assert_eq!(parse_as_of("2025-09-25T09:00:00Z"), Some(expected));
        assert_eq!(parse_as_of("2025-09-25T10:00:00+01:00"), Some(expected));
        assert_eq!(parse_as_of("2025-09-25T09:00"), Some(expected));
        assert_eq!(parse_as_of("yesterday"), None);
    }

    #[test]
    fn sign_in_only_returns_to_a_dashboard_page() {
        assert_eq!(safe_next("/ui/events?source=finance"), "/ui/events?source=finance");
        for other in ["https://elsewhere.example/ui/", "//elsewhere.example", "/events", ""] {
            assert_eq!(safe_next(other), "/ui/status", "{other}");
        }
    }

    #[test]
    fn a_session_lasts_from_a_minute_to_thirty_days() {
        let mut config = crate::Config::defaults();
        assert!(config.validate().is_ok());
        for (ttl, ok) in [(59, false), (60, true), (30 * 86_400, true), (30 * 86_400 + 1, false)] {
            config.ui.session_ttl_s = ttl;
            assert_eq!(config.validate().is_ok(), ok, "{ttl}");
        }
    }

    #[test]
    fn every_template_parses() {
        let mut templates = Environment::new();
        for (name, source) in TEMPLATES {
            templates.add_template(name, source).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
