//! Logs and metrics in one place.
//!
//! Log levels: ERROR means data is at risk or an operator must act (a dead letter, a spool
//! that cannot commit); WARN is a refused webhook or a failed delivery attempt (rate-limited
//! per route); INFO is lifecycle. Filter with `RUST_LOG` (default `info`).
//!
//! Metrics are registered where they are counted (labels carry route names, paths from the
//! config and outcomes, never event ids), recorded by the Prometheus recorder installed here,
//! and served by the admin listener's `/metrics` (see `admin.rs`). docs/metrics.md documents
//! each one; a test below fails when the code names a metric it does not list, or the
//! reverse.

pub mod otel;

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable; coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`). With a `tracer`, the spans of
/// [`otel::TARGET`] (and only those) go to OpenTelemetry; they never reach the log lines,
/// and `RUST_LOG` does not filter them.
pub fn init_logging(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let _ = subscriber(format, tracer).try_init();
}

/// The subscriber [`init_logging`] installs.
fn subscriber(
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> tracing::Dispatch {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // A closed stderr (a pipe whose reader exited) must not panic the task that logged.
        .log_internal_errors(false);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    // One EnvFilter with the trace spans' target off (the most specific directive wins over
    // any RUST_LOG), not EnvFilter.and(filter_fn): a filter_fn has no level hint, so the
    // pair had none, and the global max level fell to TRACE, sending every debug and trace
    // callsite of every crate through its interest check.
    let logs = filter.add_directive(
        format!("{}=off", otel::TARGET)
            .parse()
            .expect("a valid directive"),
    );
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_filter(Targets::new().with_target(otel::TARGET, tracing::Level::INFO))
    });
    // Without a tracer, no layer stands for it: an `Option` layer that is `None` lets every
    // callsite its level allows reach the registry, so each trace span would still be built
    // there (and dropped by the log layer's filter) for every webhook.
    let logged = tracing_subscriber::registry().with(fmt.with_filter(logs));
    match traces {
        Some(traces) => logged.with(traces).into(),
        None => logged.into(),
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use opentelemetry::trace::TracerProvider as _;

    use super::{otel, subscriber, LogFormat};

    /// Whether the ingest span of a webhook is built under the subscriber `init_logging`
    /// would install with `tracer`.
    fn ingest_span_built(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> bool {
        let dispatch = subscriber(LogFormat::Text, tracer);
        tracing::dispatcher::with_default(&dispatch, || {
            let headers = axum::http::HeaderMap::new();
            !otel::ingest_span("POST", &headers, "/").is_disabled()
        })
    }

    /// One test, in this order: whether a callsite is wanted is cached for every live
    /// dispatcher at once, so a tracer's subscriber alive in a parallel test would make
    /// the tracing-off one build spans too.
    #[test]
    fn with_tracing_off_no_trace_span_is_built_and_with_a_tracer_they_are() {
        assert!(
            !ingest_span_built(None),
            "without a tracer, a webhook's trace spans must cost one disabled callsite check"
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        assert!(ingest_span_built(Some(provider.tracer("test"))));
    }

    /// The names of the `"hookfan_…"` string literals in `text`.
    fn literal_names(text: &str, into: &mut BTreeSet<String>) {
        let opening = concat!('"', "hookfan_");
        for (at, _) in text.match_indices(opening) {
            let rest = &text[at + 1..];
            let len = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(rest.len());
            if rest[len..].starts_with('"') && len > "hookfan_".len() {
                into.insert(rest[..len].to_string());
            }
        }
    }

    fn sources(dir: &Path, into: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("list src/") {
            let path = entry.expect("an entry of src/").path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|x| x == "rs") {
                literal_names(
                    &std::fs::read_to_string(&path).expect("read a source"),
                    into,
                );
            }
        }
    }

    #[test]
    fn docs_metrics_md_lists_exactly_the_metrics_the_code_names() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut in_code = BTreeSet::new();
        sources(&root.join("src"), &mut in_code);
        let docs = std::fs::read_to_string(root.join("docs/metrics.md")).expect("read the docs");
        let in_docs: BTreeSet<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `hookfan_"))
            .filter_map(|l| l.split('`').next())
            .map(|name| format!("hookfan_{name}"))
            .collect();
        assert!(
            in_code.len() > 20,
            "the scan found the metrics: {in_code:?}"
        );
        let undocumented: Vec<_> = in_code.difference(&in_docs).collect();
        let unknown: Vec<_> = in_docs.difference(&in_code).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "named in src/ but not in docs/metrics.md: {undocumented:?}; \
             in docs/metrics.md but named nowhere in src/: {unknown:?}"
        );
    }
}
