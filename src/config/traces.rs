//! The `tracing:` block: where OpenTelemetry traces go and how many are sampled. How it
//! combines with the `OTEL_*` environment is `telemetry::otel`'s business.

use super::{Diagnostic, Positions, RawTracing};

/// The `tracing:` block, validated. Only a restart changes it: the exporter starts with the
/// process.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended).
    pub endpoint: Option<reqwest::Url>,
    /// The share of new traces sampled, in 0..=1.
    pub sample_ratio: Option<f64>,
    /// Finished spans waiting for export at most.
    pub queue_size: Option<usize>,
}

pub const MAX_QUEUE_SIZE: u64 = 1_000_000;

pub(super) fn validate(
    raw: Option<RawTracing>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<TracingSettings> {
    let raw = raw?;
    let endpoint = raw.endpoint.and_then(|text| match reqwest::Url::parse(&text) {
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            errs.push(pos.invalid(
                "tracing.endpoint",
                "tracing: endpoint must not hold a user or password (the exporter sends none); give the collector's credentials as OTEL_EXPORTER_OTLP_HEADERS=authorization=...",
            ));
            None
        }
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Some(url)
        }
        _ => {
            errs.push(pos.invalid(
                "tracing.endpoint",
                format!("tracing: endpoint \"{text}\" is not an http(s) base URL like http://otel-collector:4318 (/v1/traces is appended)"),
            ));
            None
        }
    });
    let sample_ratio = raw.sample_ratio.filter(|r| {
        let ok = (0.0..=1.0).contains(r);
        if !ok {
            errs.push(pos.invalid(
                "tracing.sample_ratio",
                "tracing: sample_ratio is the share of traces sampled, from 0 to 1 (like 0.01 for 1%)",
            ));
        }
        ok
    });
    let queue_size = raw.queue_size.filter(|n| {
        let ok = (1..=MAX_QUEUE_SIZE).contains(n);
        if !ok {
            errs.push(pos.invalid(
                "tracing.queue_size",
                format!("tracing: queue_size must be between 1 and {MAX_QUEUE_SIZE}"),
            ));
        }
        ok
    });
    Some(TracingSettings {
        endpoint,
        sample_ratio,
        queue_size: queue_size.map(|n| n as usize),
    })
}
