//! Logs and metrics in one place.
//!
//! Log levels: ERROR means data is at risk or an operator must act (a dead letter, a spool
//! that cannot commit); WARN is a refused webhook or a failed delivery attempt (rate-limited
//! per route); INFO is lifecycle. Filter with `RUST_LOG` (default `info`).
//!
//! Metric names (labels carry route names and outcomes, never event ids):
//! - `hookfan_webhooks_received_total{outcome}`: accepted, duplicate, unauthorized,
//!   bad_request, too_large, unavailable, method_not_allowed
//! - `hookfan_ingest_ack_seconds`: time from request to answer
//! - `hookfan_events_routed_total{route}`, `hookfan_events_unrouted_total`
//! - `hookfan_deliveries_total{route,outcome}`: delivered, retried, dead_lettered
//! - `hookfan_delivery_latency_seconds{route}`: receipt to delivered
//! - `hookfan_spool_commits_total`, `hookfan_spool_commit_batch_size`,
//!   `hookfan_spool_commit_seconds`, `hookfan_spool_commit_failures_total`
//! - `hookfan_spool_checkpoints_total{taken_from}`: snapshot, log, memory
//! - `hookfan_spool_disk_bytes`: size of the spool directory (set at each scrape)
//! - `hookfan_spool_dedup_ids`: webhook ids remembered for dedup
//!
//! They are served by the admin listener's `/metrics` (see `admin.rs`); docs/metrics.md
//! documents each one.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable; coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (a pipe whose reader exited) must not panic the task that logged.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Seconds: from a fraction of a millisecond (an acknowledgement) to minutes (a delivery that
/// waited out an outage).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 1800.0, 3600.0,
];
/// Commands per spool commit.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
];

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("hookfan_spool_commit_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed (e.g. a test harness's); then the
            // handle still renders, just nothing recorded elsewhere.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
