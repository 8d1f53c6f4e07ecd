//! The admin listener: health, readiness and Prometheus metrics, on its own address
//! (loopback by default) so that the public webhook port exposes nothing but ingest.
//!
//! - `GET /healthz`: the process is up and serving.
//! - `GET /readyz`: config loaded, listeners bound, spool writer running, data dir writable;
//!   503 with the reason otherwise (for Kubernetes readiness probes).
//! - `GET /metrics`: Prometheus text format (metric names: `telemetry.rs`, docs/metrics.md).

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::spool::Spool;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: PrometheusHandle,
    pub spool: Spool,
    /// Probed by `/readyz` with a small write, so a full or read-only disk shows up.
    pub data_dir: PathBuf,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let result = tokio::task::spawn_blocking(move || ready(&state))
        .await
        .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")));
    match result {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Why hookfan cannot take webhooks now, if it cannot. Blocking: writes a probe file.
fn ready(state: &AdminState) -> Result<(), String> {
    if !state.spool.is_open() {
        return Err("the spool is closed (shutting down)".into());
    }
    let probe = state.data_dir.join(".hookfan-ready-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("data_dir {} is not writable: {e}", state.data_dir.display()))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let spool = state.spool.clone();
    if let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || spool.file_bytes()).await {
        metrics::gauge!("hookfan_spool_disk_bytes").set(bytes as f64);
    }
    state.metrics.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
