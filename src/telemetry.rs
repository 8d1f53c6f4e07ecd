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
//!
//! No exporter is installed yet, so recording is a no-op until one is.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs to stderr, human-readable, coloured only on a terminal.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
