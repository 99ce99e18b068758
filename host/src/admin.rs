//! The running host's admin endpoint: `/healthz` (the process lives: always 200), `/readyz`
//! (200 while every service's relay and consumer run and no route is unhealthy, else 503 with
//! the reasons), `/routes` (each route's component version, load time, last reload error and
//! health, as JSON) and `/metrics` (Prometheus text).
//!
//! Read-only: nothing here changes the host. Off unless `[admin] listen` is set.

use crate::engine::StatusHandle;
use crate::telemetry;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;

/// The process-wide Prometheus recorder (metrics has one global recorder per process).
fn prometheus() -> &'static Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(telemetry::INVOCATION_SECONDS.to_owned()),
                telemetry::INVOCATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then /metrics says so.
        metrics::set_global_recorder(recorder).ok().map(|_| handle)
    })
}

/// Binds `addr` and serves until `stop` is cancelled.
///
/// # Errors
/// If the address cannot be bound (in use, not local).
pub async fn serve(
    addr: SocketAddr,
    status: StatusHandle,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let _ = prometheus();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the admin endpoint on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/routes", get(routes))
        .route("/metrics", get(metrics_text))
        .with_state(status);
    tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%bound, "admin endpoint listening");
    Ok(bound)
}

async fn readyz(State(status): State<StatusHandle>) -> (axum::http::StatusCode, String) {
    match status.readiness() {
        Ok(()) => (axum::http::StatusCode::OK, "ready\n".to_owned()),
        Err(problems) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            problems.join("\n") + "\n",
        ),
    }
}

async fn routes(State(status): State<StatusHandle>) -> axum::Json<Vec<crate::engine::RouteStatus>> {
    axum::Json(status.routes())
}

async fn metrics_text() -> String {
    match prometheus() {
        Some(h) => h.render(),
        None => "# another metrics recorder owns this process\n".to_owned(),
    }
}
