//! The one HTTP layer every server shares (edge, read API, registry, consumers' `/metrics`):
//! a bounded number of connections, a header-read timeout (slow clients are cut off instead of
//! holding a connection), a whole-request timeout, a cap on requests in progress (beyond it: 503
//! at once, never a queue), a body cap from `Content-Length` before anything is read, metric
//! labels bounded to known routes and methods, JSON bodies for 404/405, and, optionally,
//! `/metrics` on a listener of its own.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::{classify::ServerErrorsFailureClass, trace::TraceLayer};

use crate::http_error::ApiError;

/// Limits of one HTTP server (`[http]` of each service; every field has a default).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpLimits {
    /// Serve `/metrics` on this address instead of the public one (e.g. a port only the
    /// Prometheus network reaches). Unset: `/metrics` is on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// A client must send its whole request head within this time, or the connection is closed
    /// (it also bounds how long an idle keep-alive connection is kept).
    pub header_read_timeout_ms: u64,
    /// A request (reading its body included) that takes longer gets 503 `timeout`.
    pub request_timeout_ms: u64,
    /// Open connections; beyond it new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests in progress; beyond it a request gets 503 `overloaded` with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// Largest request body, refused with 413 from `Content-Length` before it is read.
    pub max_request_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            max_connections: 4_096,
            max_concurrent_requests: 1_024,
            max_request_bytes: 1024 * 1024,
        }
    }
}

/// The methods that get a metric label of their own; any other is `other`.
const KNOWN_METHODS: [Method; 7] =
    [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD, Method::OPTIONS];

fn method_label(method: &Method) -> &'static str {
    KNOWN_METHODS.iter().find(|m| *m == method).map_or("other", |m| m.as_str())
}

/// The body of the errors the shared layer itself answers (413, 503, 404, 405).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"code", "message", "field"}}`, as every Control Tower API answers.
    #[default]
    Standard,
    /// `{"error_code", "message"}`, which Confluent's schema registry clients read.
    Confluent,
}

impl ErrorStyle {
    fn render(self, error: ApiError) -> Response {
        match self {
            ErrorStyle::Standard => error.into_response(),
            ErrorStyle::Confluent => {
                let body = serde_json::json!({"error_code": error.status.as_u16(), "message": error.message});
                let mut response = (
                    error.status,
                    [(header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")],
                    body.to_string(),
                )
                    .into_response();
                if let Some(seconds) = error.retry_after_s {
                    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
                }
                response
            }
        }
    }
}

struct Guard {
    limits: HttpLimits,
    in_progress: Arc<Semaphore>,
    style: ErrorStyle,
    metrics: RequestMetrics,
}

/// `(route, method, status)`, each an interned label.
type RequestLabels = (&'static str, &'static str, &'static str);

/// The request metrics' handles by label values, registered on first use: the labels are bounded,
/// so the list stays short, and a handle saves the recorder's lookup by name and labels per request.
#[derive(Default)]
struct RequestMetrics(std::sync::RwLock<Vec<(RequestLabels, metrics::Counter, metrics::Histogram)>>);

impl RequestMetrics {
    /// Counts a request and records its latency: `http_requests_total` by route, method and status,
    /// `http_request_duration_seconds` by route and method.
    fn record(&self, labels: RequestLabels, seconds: f64) {
        let same = |known: &RequestLabels| *known == labels;
        let record = |(_, requests, latency): &(RequestLabels, metrics::Counter, metrics::Histogram)| {
            requests.increment(1);
            latency.record(seconds);
        };
        if let Some(handles) = self.0.read().unwrap_or_else(|p| p.into_inner()).iter().find(|(l, ..)| same(l)) {
            return record(handles);
        }
        let mut all = self.0.write().unwrap_or_else(|p| p.into_inner());
        if all.iter().all(|(l, ..)| !same(l)) {
            let (route, method, status) = labels;
            all.push((
                labels,
                metrics::counter!("http_requests_total", "route" => route, "method" => method, "status" => status),
                metrics::histogram!("http_request_duration_seconds", "route" => route, "method" => method),
            ));
        }
        all.iter().filter(|(l, ..)| same(l)).for_each(record);
    }
}

/// A label value as `&'static str`, so recording a metric allocates nothing: route patterns and
/// status codes are few and fixed, so each distinct value is leaked once.
fn interned(value: &str) -> &'static str {
    static VALUES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    let known = |values: &[&'static str]| values.iter().find(|v| **v == value).copied();
    if let Some(v) = known(&VALUES.read().unwrap_or_else(|p| p.into_inner())) {
        return v;
    }
    let mut values = VALUES.write().unwrap_or_else(|p| p.into_inner());
    known(&values).unwrap_or_else(|| {
        let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
        values.push(leaked);
        leaked
    })
}

/// The whole shared layer as one service around each route: one boxed future per request, not
/// one per concern (axum's `middleware::from_fn` would also box the inner service and its future).
#[derive(Clone)]
struct Shared<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> tower::Service<Request> for Shared<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh one waits for the next.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let guard = Arc::clone(&self.guard);
        Box::pin(async move { Ok(shared(&guard, request, ready).await) })
    }
}

/// Bounded metrics around the body cap, load shedding, the request timeout and JSON 404/405.
async fn shared<S>(guard: &Guard, request: Request, inner: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let started = std::time::Instant::now();
    let route = interned(request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str));
    let method = method_label(request.method());
    let response = json_errors(guarded(guard, request, inner).await, guard.style).await;
    let status = interned(response.status().as_str());
    // Request count and latency by route (the matched pattern, or `unmatched`), method (known
    // ones, or `other`) and status: every label is bounded whatever clients send.
    guard.metrics.record((route, method, status), started.elapsed().as_secs_f64());
    response
}

/// Body cap, load shedding and the request timeout, in that order.
async fn guarded<S>(guard: &Guard, request: Request, mut inner: S) -> Response
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    let limits = &guard.limits;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_request_bytes as u64) {
        return guard.style.render(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {} bytes", limits.max_request_bytes),
        ));
    }
    let Ok(_permit) = guard.in_progress.try_acquire() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        return guard.style.render(ApiError::unavailable("overloaded", "too many requests in progress; retry"));
    };
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    match tokio::time::timeout(timeout, inner.call(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            metrics::counter!("http_requests_timed_out_total").increment(1);
            guard.style.render(ApiError::unavailable(
                "timeout",
                format!("the request took longer than {} ms; retry", timeout.as_millis()),
            ))
        }
    }
}

/// The framework's own answers are not JSON: 404 and 405 have no body, and a request its
/// extractors reject (a path segment that is not UTF-8, a query that does not parse) gets a
/// `text/plain` 400. Clients get the JSON error body like any other, with the framework's words.
async fn json_errors(response: Response, style: ErrorStyle) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if response.status().is_client_error() && plain {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&body).into_owned();
        return style.render(ApiError::new(status, "bad_request", message));
    }
    if response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    let (code, message) = match response.status() {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not take this method"),
        _ => return response,
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = style.render(ApiError::new(response.status(), code, message));
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// `app` with the shared layers (tracing span, bounded metrics, JSON 404/405, body cap, load
/// shedding, timeout). `/metrics` is added by [`Server::bind`].
pub fn layered(app: Router, limits: &HttpLimits, style: ErrorStyle) -> Router {
    let guard = Arc::new(Guard {
        limits: limits.clone(),
        in_progress: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
        style,
        metrics: RequestMetrics::default(),
    });
    let trace = TraceLayer::new_for_http()
        .make_span_with(request_span)
        .on_response(|response: &Response, _latency: Duration, span: &tracing::Span| {
            span.record("http.response.status_code", response.status().as_u16());
        })
        .on_failure(log_failure);
    app.layer(tower::layer::layer_fn(move |inner| Shared { inner, guard: Arc::clone(&guard) })).layer(trace)
}

/// A 5xx answer in the log. A 503 is how a server sheds load or waits for a dependency (counted in
/// `http_requests_total` by status): at debug level, or an overloaded server would also log an
/// error line per refused request. Every other 5xx is an error.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "Answered 503 Service Unavailable.");
        }
        other => tracing::error!(classification = %other, latency_ms, "Request failed."),
    }
}

/// The server span of a request (OpenTelemetry's HTTP conventions; named by the route template,
/// so names stay bounded), continuing the caller's W3C `traceparent` when it sends one.
fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        target: crate::telemetry::TRACE_TARGET,
        "http request",
        otel.name = format!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    let traceparent = request.headers().get("traceparent").and_then(|value| value.to_str().ok());
    crate::telemetry::continue_trace(&span, traceparent);
    span
}

/// A bound server: the public listener (and the metrics listener when configured), not yet serving.
pub struct Server {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    app: Router,
    limits: HttpLimits,
}

impl Server {
    /// Binds `listen` (and `limits.metrics_listen`) and puts `app` behind the shared layers, with
    /// `/metrics` on whichever listener serves it.
    pub async fn bind(listen: SocketAddr, app: Router, limits: &HttpLimits) -> std::io::Result<Server> {
        Self::bind_with_style(listen, app, limits, ErrorStyle::Standard).await
    }

    /// [`Server::bind`] whose own errors (413, 503, 404, 405) take `style`'s shape.
    pub async fn bind_with_style(
        listen: SocketAddr,
        app: Router,
        limits: &HttpLimits,
        style: ErrorStyle,
    ) -> std::io::Result<Server> {
        let handle = crate::metrics::install();
        let listener = TcpListener::bind(listen).await?;
        let (app, metrics) = match limits.metrics_listen {
            Some(address) => (app, Some(TcpListener::bind(address).await?)),
            None => (app.merge(crate::metrics::router(handle)), None),
        };
        Ok(Server { listener, metrics, app: layered(app, limits, style), limits: limits.clone() })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown`, then lets requests in progress finish (for at most the request
    /// timeout).
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        if let Some(listener) = self.metrics {
            let app = layered(crate::metrics::router(crate::metrics::install()), &self.limits, ErrorStyle::Standard);
            tokio::spawn(serve(listener, app, self.limits.clone(), shutdown.clone()));
        }
        serve(self.listener, self.app, self.limits, shutdown).await
    }
}

/// The accept loop: at most `max_connections` open, each with the header-read timeout.
async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Typically out of file descriptors: wait instead of spinning.
                    tracing::warn!(%error, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let drain = Duration::from_millis(limits.request_timeout_ms);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("Connections still open after the drain timeout; closing them.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_interned_once() {
        let first = interned("/events/{event_id}");
        assert!(std::ptr::eq(first, interned(&String::from("/events/{event_id}"))));
        assert_eq!(interned("404"), "404");
    }

    #[test]
    fn method_labels_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"X-ANYTHING-AT-ALL").unwrap()), "other");
    }

    #[test]
    fn limits_default_when_a_service_sets_none() {
        let limits: HttpLimits = serde_json::from_str("{}").unwrap();
        assert_eq!((limits.header_read_timeout_ms, limits.metrics_listen), (5_000, None));
    }
}
