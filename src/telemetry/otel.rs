//! OpenTelemetry traces: off unless the standard `OTEL_*` environment asks for them, then
//! exported over OTLP/HTTP (protobuf) by the official SDK's batch processor, on its own
//! thread.
//!
//! Spans are `tracing` spans of target [`TARGET`]: the OpenTelemetry layer takes only those,
//! and the log layer never sees them, so with tracing off every such span is disabled at its
//! callsite (an atomic load). Exporting never slows an acknowledgement: a finished span is
//! handed to a bounded queue, and when the queue is full it is dropped and counted
//! (`hookfan_trace_spans_dropped_total`); an export that fails is counted too
//! (`hookfan_trace_export_failed_spans_total`) and logged at most once a minute.
//!
//! Pure core: [`wanted`] decides from the environment (a lookup function) and routes.yaml's
//! `tracing:` block.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use bytes::Bytes;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracingSettings;
use crate::spool::Trace;

/// The `tracing` target of every span exported as OpenTelemetry, and only of those.
pub const TARGET: &str = "hookfan::otel";

/// Spans dropped because the export queue was full.
pub const SPANS_DROPPED: &str = "hookfan_trace_spans_dropped_total";
/// Spans in exports that failed (collector down, refused, timed out).
pub const EXPORT_FAILED: &str = "hookfan_trace_export_failed_spans_total";

/// The OpenTelemetry default queue size (`OTEL_BSP_MAX_QUEUE_SIZE`).
const DEFAULT_QUEUE: usize = 2048;
/// The OpenTelemetry default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read (its body is a small protobuf).
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// What the environment and the config ask of tracing.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    Off,
    /// Export over OTLP/HTTP; the exporter reads what is not given here (the endpoint,
    /// headers, timeout, the sampler) from the same environment.
    Otlp {
        /// `tracing.queue_size`, else `OTEL_BSP_MAX_QUEUE_SIZE`, else the default.
        queue: usize,
        /// The traces URL from `tracing.endpoint` (its `/v1/traces`).
        endpoint: Option<String>,
        /// `tracing.sample_ratio`: parent-based, this share of new traces.
        sample_ratio: Option<f64>,
    },
}

/// An `OTEL_*` setting hookfan cannot honour: the daemon does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtelError {
    #[error("{var}={value}: hookfan exports traces over OTLP/HTTP with protobuf only; set it to http/protobuf, or unset it")]
    Protocol { var: &'static str, value: String },
    #[error("OTEL_TRACES_EXPORTER={0}: hookfan exports traces with otlp, or none")]
    Exporter(String),
    #[error("OTEL_BSP_MAX_QUEUE_SIZE={0}: not a number of spans from 1 up")]
    Queue(String),
    #[error("cannot start the OTLP trace exporter: {0}")]
    Start(String),
}

/// Whether to trace, from the environment (`env` looks a variable up) and the config's
/// `tracing:` block: on with the block, or when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, or `OTEL_TRACES_EXPORTER=otlp`; off with
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`, whatever else is set (the
/// operator's switch, without editing the file). The block's settings win over the
/// environment's.
pub fn wanted(
    env: impl Fn(&str) -> Option<String>,
    block: Option<&TracingSettings>,
) -> Result<Wanted, OtelError> {
    let set = |name: &str| {
        env(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(Wanted::Off);
    }
    let exporter = set("OTEL_TRACES_EXPORTER");
    match exporter.as_deref() {
        Some("none") => return Ok(Wanted::Off),
        Some("otlp") | None => {}
        Some(other) => return Err(OtelError::Exporter(other.to_string())),
    }
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if block.is_none() && exporter.is_none() && endpoint.is_none() {
        return Ok(Wanted::Off);
    }
    // The traces' own setting wins over the general one.
    let protocol = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|var| set(var).map(|value| (var, value)));
    if let Some((var, value)) = protocol {
        if value != "http/protobuf" {
            return Err(OtelError::Protocol { var, value });
        }
    }
    let queue = match (
        block.and_then(|b| b.queue_size),
        set("OTEL_BSP_MAX_QUEUE_SIZE"),
    ) {
        (Some(n), _) => n,
        (None, None) => DEFAULT_QUEUE,
        (None, Some(text)) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(OtelError::Queue(text)),
        },
    };
    Ok(Wanted::Otlp {
        queue,
        endpoint: block
            .and_then(|b| b.endpoint.as_ref())
            .map(|base| format!("{}/v1/traces", base.as_str().trim_end_matches('/'))),
        sample_ratio: block.and_then(|b| b.sample_ratio),
    })
}

/// The running exporter: shut it down (bounded) as the process ends.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts the exporter `wanted` asks for, and returns the tracer for the log layer;
    /// None when tracing is off.
    pub fn start(wanted: &Wanted) -> Result<Option<(Tracing, SdkTracer)>, OtelError> {
        let Wanted::Otlp {
            queue,
            endpoint,
            sample_ratio,
        } = wanted
        else {
            return Ok(None);
        };
        let queue = *queue;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(OtlpHttp::new()?);
        if let Some(endpoint) = endpoint {
            exporter = exporter.with_endpoint(endpoint);
        }
        let exporter = exporter
            .build()
            .map_err(|e| OtelError::Start(e.to_string()))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: exporter,
            queued: queued.clone(),
            warned: Mutex::new(None),
        };
        // The SDK reads the rest of OTEL_BSP_* (the delay and the batch size).
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(queue)
                    .build(),
            )
            .build();
        // The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; "hookfan" only when
        // neither names the service (the SDK's own default is "unknown_service").
        let mut resource = Resource::builder();
        let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
                a.split(',')
                    .any(|kv| kv.trim().starts_with("service.name="))
            });
        if !named {
            resource = resource.with_service_name("hookfan");
        }
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batch,
                queued,
                cap: queue,
            })
            .with_resource(resource.build());
        // Else the SDK's from OTEL_TRACES_SAMPLER (default: parent-based, always on).
        if let Some(ratio) = sample_ratio {
            provider = provider.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(*ratio),
            )));
        }
        let provider = provider.build();
        let tracer = provider.tracer("hookfan");
        Ok(Some((Tracing { provider }, tracer)))
    }

    /// Exports what is queued, waiting at most `timeout` (a collector that hangs must not
    /// hold the shutdown).
    pub fn shutdown(self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!("traces: the exporter did not finish within {timeout:?} ({e}); spans still queued are lost");
        }
    }
}

/// Registers the trace metrics at 0, so they show before anything is dropped (tracing on
/// only). After the metrics recorder is installed ([`super::metrics_handle`]).
pub fn register_metrics() {
    metrics::counter!(SPANS_DROPPED).absolute(0);
    metrics::counter!(EXPORT_FAILED).absolute(0);
}

/// The span of one push webhook's ingest: a child of the sender's `traceparent` when it
/// sent one. Disabled, and free, when tracing is off. Its fields are recorded as the
/// request goes; never a secret, a signature, the body or the query.
pub fn ingest_span(method: &str, headers: &HeaderMap, path: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "hookfan.ingest",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = path,
        http.response.status_code = Empty,
        hookfan.outcome = Empty,
        hookfan.event_type = Empty,
        hookfan.webhook_id = Empty,
    );
    if !span.is_disabled() && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails only for a disabled span.
        let _ = span.set_parent(parent);
    }
    span
}

/// The trace context to store with an event: `span`'s (the ingest span), so that each of
/// its delivery attempts, after a restart too, is a child of it. None when tracing is off.
/// A `tracestate` over [`Trace::MAX_STATE`] bytes is not kept (W3C lets a vendor drop it).
pub fn stored_trace(span: &tracing::Span) -> Option<Trace> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let held = context.span();
    let sc = held.span_context();
    if !sc.is_valid() {
        return None;
    }
    let state = sc.trace_state().header();
    Some(Trace {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
        state: if state.len() <= Trace::MAX_STATE {
            state
        } else {
            String::new()
        },
    })
}

/// The span of one delivery attempt of one event: a child of the span its webhook was
/// stored under (`trace`), or a root for an event stored with tracing off. Its kind follows
/// the destination (`http` a client, `sqs` and `sns` a producer). The outcome is recorded on
/// it ([`record_delivery`]); the HTTP destination records the answer's status.
pub fn delivery_span(
    route: &str,
    destination: &'static str,
    attempt: u32,
    trace: Option<&Trace>,
) -> tracing::Span {
    let kind = match destination {
        "http" => "client",
        "sqs" | "sns" => "producer",
        _ => "internal",
    };
    let span = tracing::info_span!(
        target: TARGET,
        "hookfan.deliver",
        otel.kind = kind,
        otel.status_code = Empty,
        hookfan.route = route,
        hookfan.destination = destination,
        hookfan.attempt = attempt,
        hookfan.outcome = Empty,
        hookfan.then = Empty,
        hookfan.error = Empty,
        error.type = Empty,
        http.response.status_code = Empty,
    );
    if let (false, Some(t)) = (span.is_disabled(), trace) {
        let parent = SpanContext::new(
            TraceId::from_bytes(t.trace_id),
            SpanId::from_bytes(t.span_id),
            TraceFlags::new(t.flags),
            true,
            t.state.parse::<TraceState>().unwrap_or_default(),
        );
        // Fails only for a disabled span.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
    span
}

/// How a delivery attempt ended, on its span: `outcome` is `delivered`, `retried` or
/// `dead_lettered` (as in `hookfan_deliveries_total`), `then` what follows (`retry`, `hold`,
/// `dead_letter`), `error` the destination's answer or the failure.
pub fn record_delivery(
    span: &tracing::Span,
    outcome: &str,
    then: Option<&str>,
    error: Option<&str>,
) {
    if span.is_disabled() {
        return;
    }
    span.record("hookfan.outcome", outcome);
    if let Some(then) = then {
        span.record("hookfan.then", then);
    }
    if let Some(error) = error {
        span.record("hookfan.error", error);
        span.record("otel.status_code", "error");
    }
}

/// The destination's own name for how an attempt failed (AWS's error code), on the
/// attempt's span as `error.type`.
pub fn record_error_type(span: &tracing::Span, error_type: &str) {
    if !span.is_disabled() {
        span.record("error.type", error_type);
    }
}

/// What a delivery sends on, for the receiver to continue the trace: W3C `traceparent`
/// and `tracestate` (None when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// `span`'s [`Propagation`], so the receiver's span is a child of the delivery attempt.
/// None when tracing is off.
pub fn propagation(span: &tracing::Span) -> Option<Propagation> {
    if span.is_disabled() {
        return None;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut fields);
    Some(Propagation {
        traceparent: fields.remove("traceparent")?,
        tracestate: fields.remove("tracestate").filter(|s| !s.is_empty()),
    })
}

/// Counts the spans between [`Bounded`] and the start of their export, so a full queue
/// drops (and counts) a span before the SDK's channel would drop it silently.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    cap: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(SPANS_DROPPED).increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what leaves the queue and what fails.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    warned: Mutex<Option<Instant>>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            metrics::counter!(EXPORT_FAILED).increment(spans as u64);
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                tracing::warn!("traces: an export of {spans} span(s) failed ({e}); they are lost (logged at most once a minute, counted in {EXPORT_FAILED})");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: this crate's reqwest, on a runtime of its own. The SDK
/// exports on a thread of its own with no runtime, so the request runs to its end there.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl OtlpHttp {
    fn new() -> Result<Self, OtelError> {
        let start = |e: &dyn std::fmt::Display| OtelError::Start(e.to_string());
        let timeout = [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|var| std::env::var(var).ok()?.trim().parse::<u64>().ok())
        .map_or(EXPORT_TIMEOUT, Duration::from_millis);
        Ok(OtlpHttp {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| start(&e))?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| start(&e))?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        self.runtime.block_on(async {
            let mut answer = self.client.execute(request).await?;
            let (status, headers) = (answer.status(), answer.headers().clone());
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err("the collector's answer is over 4 MiB".into());
                }
                body.extend_from_slice(&chunk);
            }
            let mut response = Response::builder().status(status).body(Bytes::from(body))?;
            *response.headers_mut() = headers;
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Variables set, and what `wanted` must make of them.
    type Case<'a> = (&'a [(&'a str, &'a str)], Result<Wanted, OtelError>);

    fn wanted_with(vars: &[(&str, &str)]) -> Result<Wanted, OtelError> {
        wanted_from(vars, None)
    }

    fn wanted_from(
        vars: &[(&str, &str)],
        block: Option<&TracingSettings>,
    ) -> Result<Wanted, OtelError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        wanted(env, block)
    }

    const ON: Result<Wanted, OtelError> = Ok(Wanted::Otlp {
        queue: DEFAULT_QUEUE,
        endpoint: None,
        sample_ratio: None,
    });

    #[test]
    fn tracing_is_off_unless_an_endpoint_or_the_otlp_exporter_is_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let cases: &[Case] = &[
            (&[], Ok(Wanted::Off)),
            (&[("OTEL_SERVICE_NAME", "x")], Ok(Wanted::Off)),
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")], Ok(Wanted::Off)),
            (&[endpoint], ON),
            (
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces")],
                ON,
            ),
            (&[("OTEL_TRACES_EXPORTER", "otlp")], ON),
            (
                &[endpoint, ("OTEL_TRACES_EXPORTER", "none")],
                Ok(Wanted::Off),
            ),
            (&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")], Ok(Wanted::Off)),
            (&[endpoint, ("OTEL_SDK_DISABLED", "false")], ON),
            (
                &[endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "16")],
                Ok(Wanted::Otlp {
                    queue: 16,
                    endpoint: None,
                    sample_ratio: None,
                }),
            ),
        ];
        for (vars, expect) in cases {
            assert_eq!(&wanted_with(vars), expect, "{vars:?}");
        }
    }

    #[test]
    fn the_config_block_turns_tracing_on_and_wins_over_the_environment_but_not_its_off_switch() {
        let block = TracingSettings {
            endpoint: Some("http://collector:4318/otel/".parse().unwrap()),
            sample_ratio: Some(0.01),
            queue_size: Some(64),
        };
        let from_block = Ok(Wanted::Otlp {
            queue: 64,
            endpoint: Some("http://collector:4318/otel/v1/traces".into()),
            sample_ratio: Some(0.01),
        });
        assert_eq!(wanted_from(&[], Some(&block)), from_block);
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
        ];
        assert_eq!(wanted_from(&env, Some(&block)), from_block);
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(wanted_from(&[off], Some(&block)), Ok(Wanted::Off));
        }
        // An empty block: on, everything else from the environment or the defaults.
        let empty = TracingSettings {
            endpoint: None,
            sample_ratio: None,
            queue_size: None,
        };
        assert_eq!(wanted_from(&[], Some(&empty)), ON);
    }

    #[test]
    fn what_hookfan_cannot_honour_stops_it_with_the_variable_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            wanted_with(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Err(OtelError::Protocol {
                var: "OTEL_EXPORTER_OTLP_PROTOCOL",
                value: "grpc".into()
            })
        );
        // The traces' own protocol wins over the general one, both ways.
        assert_eq!(
            wanted_with(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ]),
            ON
        );
        assert!(matches!(
            wanted_with(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
            ]),
            Err(OtelError::Protocol {
                var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                ..
            })
        ));
        assert_eq!(
            wanted_with(&[("OTEL_TRACES_EXPORTER", "zipkin")]),
            Err(OtelError::Exporter("zipkin".into()))
        );
        for bad in ["0", "lots"] {
            assert_eq!(
                wanted_with(&[endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", bad)]),
                Err(OtelError::Queue(bad.into()))
            );
        }
    }
}
