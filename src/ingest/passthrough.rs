//! Passthrough: Stream's synchronous hooks (Before-Message-Send, Custom Commands), proxied.
//!
//! Stream waits for these hooks' answers and uses them (the message as it will be sent, an
//! error that rejects it, a command's reply), so they must never be acknowledged as events. A
//! request on a `passthrough:` path goes through ingest's front half exactly like a push
//! webhook (`allowed_ips`, the body limits and deadline, the signature, `max_event_age`), and
//! is then forwarded at once to its handler with the exact body, Stream's headers and the
//! original query string. The handler's status, `Content-Type` and body go back to Stream
//! verbatim. Nothing is stored.
//!
//! Bounded: each path has `concurrency` slots, taken before the body is read; a request that
//! finds none is answered 503 at once, so a slow handler holds at most `concurrency`
//! connections and bodies and cannot starve push webhooks. Each forward ends within the
//! path's `timeout` (504). A handler that cannot be reached is a 502. Each failure is one
//! WARN line and one count; latency is a histogram per path.
//!
//! Never: writes to the spool, retries (Stream's deadline is shorter than any retry), or
//! follows redirects.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;
use crate::stream::hooks::{self, SyncHook};

/// The longest default timeout (Before-Message-Send's), for connecting.
const MAX_DEFAULT_TIMEOUT: Duration = SyncHook::BeforeMessageSend.handler_timeout();

/// The passthrough handlers of one config snapshot, by exact path.
#[derive(Default)]
pub struct Passthroughs {
    by_path: HashMap<String, Arc<Hook>>,
}

impl Passthroughs {
    /// One handler per `passthrough:` block. A block whose settings did not change keeps its
    /// client (and connection pool) and its slots, so a reload neither drops connections nor
    /// lets more requests in flight than `concurrency`.
    pub fn build(
        blocks: &[config::Passthrough],
        previous: Option<&Passthroughs>,
    ) -> Result<Passthroughs, reqwest::Error> {
        let mut by_path = HashMap::new();
        for block in blocks {
            let kept = previous
                .and_then(|p| p.by_path.get(&block.path))
                .filter(|hook| hook.config == *block)
                .cloned();
            let hook = match kept {
                Some(hook) => hook,
                None => Arc::new(Hook::new(block.clone())?),
            };
            by_path.insert(block.path.clone(), hook);
        }
        Ok(Passthroughs { by_path })
    }

    /// The handler of this exact request path, if it is a passthrough path.
    pub fn get(&self, path: &str) -> Option<&Arc<Hook>> {
        self.by_path.get(path)
    }
}

/// One passthrough path: its handler's client, its slots and its metric handles.
pub struct Hook {
    config: config::Passthrough,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    metrics: HookMetrics,
}

/// Registered once per path, not built per request.
struct HookMetrics {
    answered: metrics::Counter,
    unreachable: metrics::Counter,
    timeout: metrics::Counter,
    busy: metrics::Counter,
    bad_response: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Hook {
    fn new(config: config::Passthrough) -> Result<Hook, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(config.concurrency)
            .connect_timeout(config.timeout.unwrap_or(MAX_DEFAULT_TIMEOUT))
            .user_agent(concat!("hookfan/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let path = config.path.clone();
        let counter = |outcome: &'static str| metrics::counter!("hookfan_passthrough_requests_total", "path" => path.clone(), "outcome" => outcome);
        let metrics = HookMetrics {
            answered: counter("answered"),
            unreachable: counter("unreachable"),
            timeout: counter("timeout"),
            busy: counter("busy"),
            bad_response: counter("bad_response"),
            seconds: metrics::histogram!("hookfan_passthrough_seconds", "path" => path.clone()),
        };
        Ok(Hook {
            slots: Arc::new(Semaphore::new(config.concurrency)),
            config,
            client,
            metrics,
        })
    }

    /// A slot for one request, or `Busy` when `concurrency` are in flight already.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, Failure> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.busy.increment(1);
            Failure::Busy {
                path: self.config.path.clone(),
                concurrency: self.config.concurrency,
            }
        })
    }

    /// How long the handler gets for this body: the path's `timeout`, or Stream's own
    /// deadline for the hook the body is, less the hop.
    pub fn timeout_for(&self, body: &[u8]) -> Duration {
        self.config.timeout.unwrap_or_else(|| {
            hooks::sync_hook_shape(body)
                .map_or(hooks::DEFAULT_HANDLER_TIMEOUT, SyncHook::handler_timeout)
        })
    }

    /// Forwards a verified request and returns the handler's answer, or why there is none
    /// within `timeout` of the request's `arrival`. `raw` is the body exactly as received
    /// (still gzipped if it came so).
    pub async fn forward(
        &self,
        parts: &Parts,
        raw: Bytes,
        (arrival, timeout): (Instant, Duration),
        peer: Option<IpAddr>,
        limit: usize,
    ) -> Result<Response, Failure> {
        let started = Instant::now();
        let left = timeout
            .saturating_sub(arrival.elapsed())
            .max(Duration::from_millis(1));
        let url = target(&self.config.url, parts.uri.query());
        let request = self
            .client
            .post(url)
            .headers(forwarded_headers(&parts.headers, peer))
            .body(raw);
        let answer = tokio::time::timeout(left, async {
            let response = request
                .send()
                .await
                .map_err(|e| self.send_failed(e, timeout))?;
            read_answer(response, limit).await
        })
        .await;
        self.metrics.seconds.record(started.elapsed().as_secs_f64());
        let failure = match answer {
            Ok(Ok(answer)) => {
                self.metrics.answered.increment(1);
                return Ok(answer);
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Timeout {
                url: self.config.url.to_string(),
                timeout,
            },
        };
        match failure {
            Failure::Timeout { .. } => self.metrics.timeout.increment(1),
            Failure::Unreachable { .. } => self.metrics.unreachable.increment(1),
            Failure::BadResponse { .. } => self.metrics.bad_response.increment(1),
            Failure::Busy { .. } => {}
        }
        Err(failure)
    }

    fn send_failed(&self, e: reqwest::Error, timeout: Duration) -> Failure {
        let url = self.config.url.to_string();
        if e.is_timeout() {
            Failure::Timeout { url, timeout }
        } else {
            Failure::Unreachable {
                url,
                why: error_chain(&e),
            }
        }
    }
}

/// Why a passthrough request got no answer from its handler. Each is one status code for
/// Stream and one WARN line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Every slot of the path is taken: the handler is slower than requests arrive.
    #[error("passthrough {path}: all {concurrency} slots are in flight (the handler is slow); answered 503")]
    Busy { path: String, concurrency: usize },
    /// The handler could not be reached, or dropped the connection.
    #[error("passthrough handler {url} cannot be reached: {why}; answered 502")]
    Unreachable { url: String, why: String },
    /// The handler did not answer within the path's `timeout`.
    #[error("passthrough handler {url} did not answer within {} of the request's arrival; answered 504", humantime::format_duration(*.timeout))]
    Timeout { url: String, timeout: Duration },
    /// The handler's answer cannot be passed on (too large, broken mid-body).
    #[error(
        "passthrough handler {url} sent an answer that cannot be passed on: {why}; answered 502"
    )]
    BadResponse { url: String, why: String },
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Failure::Busy { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the hook handler is busy; retry\n",
            ),
            Failure::Unreachable { .. } | Failure::BadResponse { .. } => {
                (StatusCode::BAD_GATEWAY, "the hook handler failed\n")
            }
            Failure::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "the hook handler did not answer in time\n",
            ),
        };
        (status, text).into_response()
    }
}

/// The handler's URL with the request's query string added to its own.
fn target(url: &reqwest::Url, query: Option<&str>) -> reqwest::Url {
    crate::sinks::http::forwarded_url(url, "/", query)
}

/// Headers that belong to one connection (RFC 9110 7.6.1), or that the client sets itself.
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Stream's headers as received (signature, key, webhook id, content type and encoding, ...),
/// less the per-connection ones, plus `X-Forwarded-For`. (Public for the ingest fuzz target.)
pub fn forwarded_headers(received: &HeaderMap, peer: Option<IpAddr>) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(received.len() + 1);
    for (name, value) in received {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(peer) = peer {
        let forwarded = match received
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(before) => format!("{before}, {peer}"),
            None => peer.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded) {
            out.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    out
}

/// The handler's status, `Content-Type` (and `Content-Encoding`) and body, read whole but
/// never more than `limit` bytes.
async fn read_answer(mut response: reqwest::Response, limit: usize) -> Result<Response, Failure> {
    let url = response.url().to_string();
    let status = response.status();
    let mut kept = HeaderMap::new();
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(value) = response.headers().get(&name) {
            kept.insert(name, value.clone());
        }
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Failure::BadResponse {
            url,
            why: format!("its body is larger than max_body_bytes ({limit} bytes)"),
        });
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::BadResponse {
                        url,
                        why: format!("its body is larger than max_body_bytes ({limit} bytes)"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Failure::BadResponse {
                    url,
                    why: error_chain(&e),
                })
            }
        }
    }
    Ok((status, kept, body).into_response())
}

/// reqwest's error with its causes, which carry the useful part ("connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_is_added_to_the_handlers_own() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        // (handler url, request query, forwarded to)
        let table = [
            ("http://h/cmd", None, "http://h/cmd"),
            ("http://h/cmd", Some(""), "http://h/cmd"),
            (
                "http://h/cmd",
                Some("type=giphy"),
                "http://h/cmd?type=giphy",
            ),
            (
                "http://h/cmd?app=1",
                Some("type=giphy"),
                "http://h/cmd?app=1&type=giphy",
            ),
            (
                "http://h/cmd",
                Some("type=a%20b&x=%2F"),
                "http://h/cmd?type=a%20b&x=%2F",
            ),
        ];
        for (handler, query, want) in table {
            assert_eq!(
                target(&url(handler), query).as_str(),
                want,
                "{handler} {query:?}"
            );
        }
    }

    #[test]
    fn streams_headers_are_forwarded_and_per_connection_ones_are_not() {
        let mut received = HeaderMap::new();
        for (name, value) in [
            ("x-signature", "ab"),
            ("x-api-key", "key"),
            ("x-webhook-id", "id-1"),
            ("x-webhook-attempt", "1"),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("connection", "keep-alive"),
            ("host", "hookfan:8080"),
            ("content-length", "12"),
            ("transfer-encoding", "chunked"),
        ] {
            received.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let out = forwarded_headers(&received, Some("203.0.113.7".parse().unwrap()));
        for kept in [
            "x-signature",
            "x-api-key",
            "x-webhook-id",
            "x-webhook-attempt",
            "content-type",
            "content-encoding",
        ] {
            assert_eq!(out.get(kept), received.get(kept), "{kept}");
        }
        for dropped in ["connection", "host", "content-length", "transfer-encoding"] {
            assert!(out.get(dropped).is_none(), "{dropped}");
        }
        assert_eq!(out["x-forwarded-for"], "203.0.113.7");
    }

    #[test]
    fn failures_answer_with_their_status() {
        let url = "http://h".to_string();
        let table = [
            (
                Failure::Busy {
                    path: "/p".into(),
                    concurrency: 1,
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Failure::Unreachable {
                    url: url.clone(),
                    why: "refused".into(),
                },
                StatusCode::BAD_GATEWAY,
            ),
            (
                Failure::Timeout {
                    url: url.clone(),
                    timeout: Duration::from_secs(1),
                },
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (
                Failure::BadResponse {
                    url,
                    why: "too large".into(),
                },
                StatusCode::BAD_GATEWAY,
            ),
        ];
        for (failure, status) in table {
            assert_eq!(failure.into_response().status(), status);
        }
    }
}
