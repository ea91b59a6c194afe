//! Prometheus metrics: one recorder per process and a `/metrics` route.

use std::sync::OnceLock;

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for request and produce latencies, in seconds.
const LATENCY_BUCKETS: &[f64] =
    &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often recorded histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global recorder once and returns its handle (later calls get the same one, so
/// tests that start several services in one process share it).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .expect("static buckets are valid");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder exists (a test harness): render from a private one instead.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            // The recorder keeps every histogram sample until it is folded into the buckets, which
            // `install_recorder` leaves to the caller: without this, memory grows with every request
            // between scrapes (and without bound when nothing scrapes). A plain thread, so it runs
            // whichever runtime, if any, installed the recorder.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn the metrics upkeep thread");
            handle
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn router<S: Clone + Send + Sync + 'static>(handle: PrometheusHandle) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response() }
        }),
    )
}

/// Serves `/metrics` and `/healthz` on `listen` until `shutdown`: the HTTP side of a consumer
/// service, which has no API of its own. Installs the recorder first. `/healthz` answers 200
/// while the process runs, with `status: degraded` and the reason of each consumer paused on a
/// dependency (a restart would not help, so it is not a liveness failure).
pub async fn serve_operations(
    listen: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route("/healthz", get(|| async { axum::Json(crate::health::report()) }));
    let server = crate::http::Server::bind(listen, app, &crate::http::HttpLimits::default()).await?;
    tokio::spawn(server.run(shutdown));
    Ok(())
}
