//! Ingest: the webhook listener. Reads a bounded body, verifies it ([`verify`]), picks the
//! routes that want it ([`crate::route`]), stores it durably ([`crate::spool`]) and only then
//! answers 200. Requests on a `passthrough:` path are Stream's synchronous hooks: verified
//! the same way, then answered by their handler ([`passthrough`]), never stored.
//!
//! Every refusal is one WARN line saying why (never the secret, never the body), one metric,
//! and a status code Stream understands: 4xx for what a retry cannot fix, 503 with
//! `Retry-After` for what it can.

pub(crate) mod listener;
pub(crate) mod outcome;
pub mod passthrough;
mod refusal;
pub(crate) mod tls;
pub mod verify;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::dedup::Claim;
use crate::live::{Live, LiveView};
use crate::route;
use crate::spool::{now_ms, AppendOutcome, EventRef, Spool, SpoolError, Trace};
use crate::stream::hooks;
use crate::telemetry::otel;
use outcome::{IngestMetrics, Outcome};
use refusal::Refusal;
use verify::{Rejection, VerifiedWebhook, HEADER_WEBHOOK_ID};

/// How long a webhook may wait for its commit before it is answered 503 instead. Stream gives
/// up on an attempt after 6 s; a 503 before that tells it to retry, and the retry is
/// deduplicated if the commit lands after all.
pub const ACK_DEADLINE: Duration = Duration::from_secs(5);
const _: () = assert!(
    ACK_DEADLINE.as_secs() < 6,
    "Stream gives up on an attempt at 6 s"
);

/// What the ingest handler needs; cheap to clone.
#[derive(Clone)]
pub struct IngestState {
    /// The running config, route counters and which routes run; swapped whole on reload.
    pub live: LiveView,
    pub spool: Spool,
    /// Bytes of request bodies in memory, from the first byte read until the commit
    /// answers (in KiB permits): `max_buffered_bytes`.
    pub buffered: Arc<Semaphore>,
    metrics: Arc<IngestMetrics>,
}

impl IngestState {
    pub fn new(live: LiveView, spool: Spool, max_buffered_bytes: usize) -> Self {
        let permits = max_buffered_bytes
            .div_ceil(1024)
            .min(Semaphore::MAX_PERMITS);
        IngestState {
            live,
            spool,
            buffered: Arc::new(Semaphore::new(permits)),
            metrics: Arc::new(IngestMetrics::register()),
        }
    }

    /// Counts the webhook's outcome, and names it on its trace span (when traced).
    fn count(&self, outcome: Outcome) {
        self.metrics.count(outcome);
        tracing::Span::current().record("hookfan.outcome", outcome.label());
    }
}

/// The ingest router: every path, every method (non-POST gets 405).
pub fn router(state: IngestState) -> Router {
    Router::new().fallback(ingest).with_state(state)
}

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn ingest(State(state): State<IngestState>, request: Request) -> Response {
    // One snapshot for the whole request, whatever reloads happen meanwhile.
    let live = state.live.borrow().clone();
    if let Some(hook) = live.passthrough.get(request.uri().path()).cloned() {
        return synchronous(&state, &live, &hook, request).await;
    }
    let started = Instant::now();
    let span = otel::ingest_span(
        request.method().as_str(),
        request.headers(),
        request.uri().path(),
    );
    let response = push(&state, &live, request).instrument(span.clone()).await;
    state
        .metrics
        .ack_seconds
        .record(started.elapsed().as_secs_f64());
    if !span.is_disabled() {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    response
}

/// A request that passed ingest's front half: its head, its body as received, and what
/// verification made of it.
struct Received {
    parts: Parts,
    /// The body exactly as received (still gzipped if it came so).
    raw: bytes::Bytes,
    webhook: VerifiedWebhook,
    /// The body's share of `max_buffered_bytes`, held until it is let go.
    buffered: Buffered,
}

/// The `X-Webhook-Id` a request names, for log lines ("-" for none).
fn logged_id(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(HEADER_WEBHOOK_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The checks every request gets, push or passthrough: `allowed_ips`, POST, room in
/// `max_buffered_bytes`, the body within `request_timeout` and `max_body_bytes`, the
/// signature, `max_event_age`. A refusal is answered, logged and counted here
/// ([`Refusal::answer`]).
async fn receive(
    state: &IngestState,
    live: &Live,
    request: Request,
    body_timeout: Duration,
) -> Result<Received, Response> {
    let (parts, body) = request.into_parts();
    // For log lines: borrowed, since most requests are never logged.
    let path = parts.uri.path();
    let webhook_id = logged_id(&parts.headers);
    let refuse = |refusal: Refusal| refusal.answer(state, path, webhook_id);
    let peer = listener::peer_ip(&parts.extensions);
    if !listener::ip_allowed(live.config.allowed_ips(), peer) {
        return Err(refuse(Refusal::IpNotAllowed { peer }));
    }
    if parts.method != Method::POST {
        return Err(refuse(Refusal::MethodNotAllowed {
            method: parts.method.clone(),
        }));
    }
    let limit = live.config.max_body_bytes();
    // Room for the body before reading it (its Content-Length, else the limit), held until
    // the answer: under overload, push back at once rather than buffer without bound.
    let expected = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .map_or(limit, |n| n.min(limit));
    let kib = u32::try_from(expected.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(permit) = state.buffered.clone().try_acquire_many_owned(kib) else {
        return Err(refuse(Refusal::Overloaded));
    };
    let buffered = Buffered::hold(permit, &state.metrics.buffered_bytes);
    // The head arrived within request_timeout (hyper's deadline); so must the body.
    let raw = match tokio::time::timeout(body_timeout, read_body(body, limit)).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(None)) => return Err(refuse(Refusal::Unreadable)),
        Ok(Err(Some(rejection))) => return Err(refuse(Refusal::Rejected(rejection))),
        Err(_) => {
            return Err(refuse(Refusal::BodyTimeout {
                after: body_timeout,
            }))
        }
    };
    let verifying = tracing::info_span!(target: otel::TARGET, "hookfan.verify").entered();
    let verified = verify::verify(&parts.headers, raw.clone(), live.config.apps(), limit);
    drop(verifying);
    let webhook = match verified {
        Ok(w) => w,
        Err(rejection) => return Err(refuse(Refusal::Rejected(rejection))),
    };
    if let Some(max_age) = live.config.max_event_age() {
        if let Err(rejection) =
            verify::check_age(webhook.created_at(), max_age, std::time::SystemTime::now())
        {
            return Err(refuse(Refusal::Rejected(rejection)));
        }
    }
    Ok(Received {
        parts,
        raw,
        webhook,
        buffered,
    })
}

/// A synchronous hook: verified like a push webhook, then answered by its handler.
async fn synchronous(
    state: &IngestState,
    live: &Live,
    hook: &passthrough::Hook,
    request: Request,
) -> Response {
    let started = Instant::now();
    // The slot comes first: a request that finds none costs no body read.
    let slot = match hook.slot() {
        Ok(slot) => slot,
        Err(busy) => {
            if BUSY_WARNING.due() {
                tracing::warn!(path = %request.uri().path(), "{busy}");
            }
            return busy.into_response();
        }
    };
    // A body slower than Stream's own deadline is useless, and must not hold a slot longer.
    let body_timeout = live
        .config
        .request_timeout()
        .min(hooks::SyncHook::BeforeMessageSend.stream_deadline());
    let received = match receive(state, live, request, body_timeout).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let Received {
        parts,
        raw,
        webhook,
        buffered,
    } = received;
    let (path, webhook_id) = (parts.uri.path(), logged_id(&parts.headers));
    // The slot bounds what a slow handler holds; the push budget is not kept waiting on it.
    drop(buffered);
    // A push event (a string `type`) on a passthrough path would be answered by the handler
    // and never stored: refuse it, as push paths refuse synchronous hooks.
    if let Some(event_type) = webhook.event_type() {
        let event_type = event_type.to_string();
        return Refusal::PushOnPassthrough { event_type }.answer(state, path, webhook_id);
    }
    let peer = listener::peer_ip(&parts.extensions);
    // The handler gets what is left of the deadline once the body is in.
    let deadline = (started, hook.timeout_for(&webhook.body));
    drop(webhook);
    let answer = hook
        .forward(&parts, raw, deadline, peer, live.config.max_body_bytes())
        .await;
    drop(slot);
    match answer {
        Ok(answer) => {
            tracing::debug!(%path, %webhook_id, status = %answer.status(), "passthrough: the handler answered");
            answer
        }
        Err(failure) => {
            tracing::warn!(%path, %webhook_id, "{failure}");
            failure.into_response()
        }
    }
}

/// A push webhook: routed, stored for every route that takes it, then acknowledged.
async fn push(state: &IngestState, live: &Live, request: Request) -> Response {
    let received = match receive(state, live, request, live.config.request_timeout()).await {
        Ok(received) => received,
        Err(refused) => return refused,
    };
    let Received {
        parts,
        webhook,
        buffered: _buffered,
        ..
    } = received;
    let (path, webhook_id) = (parts.uri.path(), logged_id(&parts.headers));
    if webhook.event_type().is_none() {
        if let Some(hook) = hooks::sync_hook_shape(&webhook.body) {
            let refusal = Refusal::SyncHookOnPush {
                hook,
                path: path.to_string(),
            };
            return refusal.answer(state, path, webhook_id);
        }
    }
    let event_type = webhook.event_type().unwrap_or("-");
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("hookfan.event_type", event_type);
        span.record("hookfan.webhook_id", webhook_id);
    }
    // Stored with the event: its deliveries' spans are children of this one.
    let trace = otel::stored_trace(&span);
    let event = EventRef {
        webhook_id: webhook.webhook_id(),
        received_at_ms: now_ms(),
        api_key: webhook.api_key(),
        signature: webhook.signature(),
        event_type: webhook.event_type(),
        body: &webhook.body,
        path: stored_path(&parts.uri),
        trace: trace.as_ref().map(Trace::borrowed),
    };
    let storing = tracing::info_span!(target: otel::TARGET, "hookfan.store", hookfan.routes = tracing::field::Empty);
    match store(live, &state.spool, event).instrument(storing).await {
        Ok(Stored::Unrouted) => {
            state.count(Outcome::Accepted);
            tracing::debug!(%webhook_id, %event_type, %path, "accepted; no route takes this event type and path");
            answer(StatusCode::OK, "accepted: no route matched\n")
        }
        Ok(Stored::Stored { routes }) => {
            state.count(Outcome::Accepted);
            tracing::debug!(%webhook_id, %event_type, routes, "stored");
            answer(StatusCode::OK, "stored\n")
        }
        Ok(Stored::Duplicate) => {
            state.count(Outcome::Duplicate);
            tracing::info!(%webhook_id, %event_type, "duplicate X-Webhook-Id within dedup_window; acknowledged, not stored again");
            answer(StatusCode::OK, "duplicate: already stored\n")
        }
        Err(why) => {
            let event_type = event_type.to_string();
            Refusal::NotStored { why, event_type }.answer(state, path, webhook_id)
        }
    }
}

/// What became of an event handed to [`store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Durably stored for this many routes, whose workers were woken.
    Stored { routes: usize },
    /// Its webhook id was seen within `dedup_window`: nothing stored again.
    Duplicate,
    /// No route takes it (its type, path and body): acknowledged, not stored.
    Unrouted,
}

/// Why [`store`] could not store an event; the sender must try again.
#[derive(Debug, thiserror::Error)]
pub enum NotStored {
    /// The commit did not land within [`ACK_DEADLINE`]: the disk is slower than arrivals.
    #[error("not committed within {ACK_DEADLINE:?} (overloaded disk)")]
    Overloaded,
    /// The spool refused or failed (disk full, I/O error, shutting down).
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    /// Another replica is storing this webhook id right now (shared dedup).
    #[error("another replica is storing this webhook right now")]
    ClaimedElsewhere,
}

/// The back half every received event goes through, from the webhook listener or a source:
/// the routes that take it (its type, path and body), one durable commit for all of them (dedup by
/// webhook id in the same commit; the spool's writer then wakes their workers). Returns only
/// once the event is on disk, or with why it is not.
pub async fn store(live: &Live, spool: &Spool, event: EventRef<'_>) -> Result<Stored, NotStored> {
    let candidate = route::Candidate {
        event_type: event.event_type,
        path: event.request_path(),
        body: event.body,
    };
    let routes = route::select(live.config.routes(), live.config.needed(), &candidate);
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("hookfan.routes", routes.join(","));
    }
    if routes.is_empty() {
        live.unrouted.increment(1);
        return Ok(Stored::Unrouted);
    }
    // Shared dedup (several replicas): claim the id first, confirm once stored.
    let claimed = match (&live.dedup, event.webhook_id) {
        (Some(dedup), Some(id)) => match dedup.claim(id).await {
            Claim::Stored => return Ok(Stored::Duplicate),
            Claim::Pending => return Err(NotStored::ClaimedElsewhere),
            Claim::Claimed => Some((dedup.clone(), id)),
            Claim::Unavailable => None,
        },
        _ => None,
    };
    let targets = with_message_groups(&live.config, &routes, event.body);
    // The deadline is enforced by the spool, against its writer's clock: no timer here.
    let deadline = Instant::now() + ACK_DEADLINE;
    let stored = spool
        .append_grouped(event, &targets, live.config.dedup_window(), Some(deadline))
        .await
        .map_err(|e| match e {
            SpoolError::Late => NotStored::Overloaded,
            e => NotStored::Spool(e),
        });
    if let Some((dedup, id)) = claimed {
        match &stored {
            Ok(_) => dedup.confirm(id).await,
            // A late commit may still land: then a retry is a local duplicate on this replica,
            // or (elsewhere) at worst a duplicate delivery, never a loss.
            Err(_) => dedup.release(id).await,
        }
    }
    match stored? {
        AppendOutcome::Stored { .. } => {
            // (The spool's writer wakes the routes' workers, once per group.)
            for &route in &routes {
                if let Some(routed) = live.routed.get(route) {
                    routed.increment(1);
                }
            }
            Ok(Stored::Stored {
                routes: routes.len(),
            })
        }
        AppendOutcome::Duplicate => Ok(Stored::Duplicate),
    }
}

/// Each route with the event's message group there: on an ordered (FIFO) route, the
/// fingerprint of its rendered `message_group_id`, so that a held event blocks only its own
/// group; 0 elsewhere, and where the template cannot be rendered (the sink dead-letters
/// such an event: it holds nothing back). The body is parsed once, and only for an ordered
/// route.
fn with_message_groups<'a>(
    config: &crate::config::Config,
    routes: &[&'a str],
    body: &[u8],
) -> Vec<(&'a str, u64)> {
    let mut json: Option<Option<serde_json::Value>> = None;
    routes
        .iter()
        .map(|name| {
            let template = config
                .routes()
                .iter()
                .find(|r| r.name == *name)
                .and_then(|r| r.destination.message_group());
            let group = template
                .and_then(|t| {
                    let json = json.get_or_insert_with(|| serde_json::from_slice(body).ok());
                    t.render(json.as_ref()?).ok()
                })
                .map_or(0, |g| crate::spool::message_group_fingerprint(&g));
            (*name, group)
        })
        .collect()
}

/// The path and query to keep with a stored event: None for a bare `/`, the common case.
fn stored_path(uri: &axum::http::Uri) -> Option<&str> {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => Some(pq.as_str()),
        _ => None,
    }
}

/// A share of `max_buffered_bytes`, shown in `hookfan_ingest_buffered_bytes` while held.
struct Buffered {
    _permit: tokio::sync::OwnedSemaphorePermit,
    bytes: f64,
    gauge: metrics::Gauge,
}

impl Buffered {
    fn hold(permit: tokio::sync::OwnedSemaphorePermit, gauge: &metrics::Gauge) -> Self {
        let bytes = permit.num_permits() as f64 * 1024.0;
        gauge.increment(bytes);
        Buffered {
            _permit: permit,
            bytes,
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.gauge.decrement(self.bytes);
    }
}

/// Lets a log line through at most once a second, however often its cause repeats.
struct OncePerSecond(AtomicU64);

impl OncePerSecond {
    const fn new() -> Self {
        OncePerSecond(AtomicU64::new(0))
    }

    fn due(&self) -> bool {
        let now = crate::spool::now_ms() / 1000;
        self.0.swap(now, Ordering::Relaxed) != now
    }
}

static BUSY_WARNING: OncePerSecond = OncePerSecond::new();

/// Reads at most `limit` bytes; `Err(None)` when the client went away mid-body.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Option<Rejection>> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Some(Rejection::TooLarge {
                limit,
                decompressed: false,
            }))
        }
        Err(_) => Err(None),
    }
}
