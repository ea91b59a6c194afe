//! One telemetry set-up for every service: structured `tracing` (pretty locally, JSON in
//! production), optional OTLP trace export, and W3C trace-context propagation helpers.

use std::sync::OnceLock;

use opentelemetry::{
    global,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{LogFormat, TelemetryConfig};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("bad log filter `{0}`")]
    Filter(String),
    #[error("OTLP exporter: {0}")]
    Otlp(String),
    #[error("a global subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes spans on drop.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The OTLP/HTTP traces URL of `endpoint`. OpenTelemetry's convention: a collector's base address
/// (`http://127.0.0.1:4318`, path empty or `/`) gets `/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// does; an address with a path is the traces URL itself, as `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
/// (The exporter posts to the URL it is given, so a bare base address would send spans to `/`.)
pub fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    if after_scheme.contains('/') { endpoint.to_owned() } else { format!("{trimmed}/v1/traces") }
}

/// The target of the spans made for export only (the HTTP server span, Kafka producer and consumer
/// spans, the database write): the log layer never sees them, and without an exporter no layer
/// wants them, so they cost nothing per request or record.
pub const TRACE_TARGET: &str = "ct_trace";

/// Installs the global subscriber. `RUST_LOG` overrides `config.filter`.
pub fn init(service_name: &'static str, config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let directives = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => config.filter.clone(),
    };
    let filter_with = |extra: &str| {
        EnvFilter::try_new(format!("{directives},{TRACE_TARGET}={extra}"))
            .map_err(|_| TelemetryError::Filter(directives.clone()))
    };
    let (log_filter, export_filter) = (filter_with("off")?, filter_with("info")?);
    let fmt_layer = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let (otel_layer, provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(endpoint))
                .build()
                .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service_name).build())
                .build();
            let tracer = provider.tracer(service_name);
            global::set_tracer_provider(provider.clone());
            (Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(export_filter)), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt_layer.with_filter(log_filter))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// For tests: a quiet subscriber, verbose with `TEST_LOG=1`. With `CT_TEST_LOG_DIR` set (the
/// test command sets it), every log line at info and above goes to a file of its own in that
/// folder, so the whole run's logs can be scanned for secrets afterwards. Safe to call many times.
pub fn init_for_tests() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(dir) = std::env::var_os("CT_TEST_LOG_DIR").filter(|d| !d.is_empty()) {
            let exe = std::env::current_exe().ok();
            let name = exe.as_deref().and_then(std::path::Path::file_stem).and_then(|s| s.to_str()).unwrap_or("test");
            let path = std::path::Path::new(&dir).join(format!("{name}-{}.log", std::process::id()));
            let file = std::fs::create_dir_all(&dir).and_then(|()| std::fs::File::create(&path));
            if let Ok(file) = file {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter("info")
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file))
                    .try_init();
                return;
            }
        }
        let filter = if std::env::var_os("TEST_LOG").is_some() { "info" } else { "off" };
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// Kafka headers or HTTP headers as a W3C trace-context carrier.
pub struct HeaderCarrier<'a>(pub &'a mut Vec<(String, String)>);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// Extracts from `(name, value)` pairs.
pub struct PairsExtractor<'a>(pub &'a [(String, String)]);

impl Extractor for PairsExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The trace id (32 hex chars) of a W3C `traceparent` value, if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace_id, span_id) = (parts.next()?, parts.next()?, parts.next()?);
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2) && hex(trace_id, 32) && hex(span_id, 16) && hex(flags, 2) && trace_id.bytes().any(|b| b != b'0'))
        .then_some(trace_id)
}

/// The propagator used for Kafka headers (W3C trace context).
pub fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

fn remote_context(traceparent: &str) -> Option<opentelemetry::Context> {
    trace_id_of(traceparent)?;
    let pairs = [("traceparent".to_owned(), traceparent.to_owned())];
    Some(propagator().extract(&PairsExtractor(&pairs)))
}

/// Makes `span` (just created, not yet entered) continue the trace of a W3C `traceparent` from a
/// request or a Kafka header. Without an exporting layer, or without a valid value, nothing
/// changes.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    // A disabled span (no exporter) costs no parsing per request or record.
    if span.is_disabled() {
        return;
    }
    if let Some(context) = traceparent.and_then(remote_context) {
        let _ = span.set_parent(context);
    }
}

/// Links `span` to the span a `traceparent` names (a batch's work to each record it covers).
pub fn link(span: &tracing::Span, traceparent: &str) {
    if span.is_disabled() {
        return;
    }
    if let Some(context) = remote_context(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}

/// The W3C `traceparent` of `span`, when spans are exported (an OpenTelemetry layer is installed
/// and the span is sampled); `None` otherwise, and the caller keeps its own trace id.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut pairs = Vec::new();
    propagator().inject_context(&context, &mut HeaderCarrier(&mut pairs));
    pairs.into_iter().find(|(key, _)| key == "traceparent").map(|(_, value)| value)
}

/// The `traceparent` of the current span (see [`traceparent_of`]).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collectors_base_address_gets_the_traces_path() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/v1/traces"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("https://otel.example/custom/path"), "https://otel.example/custom/path");
    }

    #[test]
    fn trace_id_is_read_only_from_valid_traceparents() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(valid), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in ["", "00-xyz-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
