//! The admin listener, on its own address (loopback by default) so that the public webhook
//! port exposes nothing but ingest.
//!
//! Open to anyone who can reach it (probes and scrapers):
//! - `GET /healthz`: the process is up and serving.
//! - `GET /readyz`: spool writer running and data dir writable, not draining; 503 with the
//!   reason otherwise.
//! - `GET /metrics`: Prometheus text format (names in `telemetry.rs` and docs/metrics.md).
//!
//! Behind `admin_token` (as `Authorization: Bearer …`) when one is configured:
//! - `GET /api/routes`: each route, its destination (no secrets), pending, oldest pending age,
//!   in flight, delivered/failed since start, dead letters, last error.
//! - `GET /api/routes/{name}/failures`: a running route's last failed attempts (at most
//!   [`crate::deliver::RECENT_FAILURES`], newest first): when, webhook id, type, attempt, the
//!   destination's answer, and what became of the event; 404 for a route not running.
//! - `GET /api/dead-letters/{route}/{seq}`: one dead letter with its event as stored (path,
//!   API key, the body as text, or base64 when it is not UTF-8); 404 when there is none.
//! - `GET /api/dead-letters[?route=R]`, `POST /api/dead-letters/replay` (JSON
//!   `{"route"?, "ids"?}`; an empty body means all), `DELETE /api/dead-letters[?route=R][&id=A,B]`.
//!   A selection with an unknown key, or a replay body that is not such JSON, is refused with 400.
//! - `POST /api/drain`: starts a drain (`crate::drain`; idempotent); `GET /api/drain`: whether
//!   events may still come in. Both answer [`DrainStatus`].
//! - `GET /api/config`: the running config as JSON, every secret masked (`config_view`).
//! - `POST /api/explain[?path=/p]`: the body is an event (gzip accepted); answers which routes
//!   of the running config take it and, for the others, the first reason why not
//!   ([`crate::route::explain`], as `hookfan explain --json`). Verifies and stores nothing;
//!   400 for a body that is not a JSON object, 413 over `max_body_bytes`.
//!
//! Open, like the probes: the web console's static assets at `/` and `/console/...`
//! (`console`); they hold no data, and the console reads everything through `/api`.

mod config_view;
pub(crate) mod console;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::deliver::{RecentFailure, RouteStats};
use crate::live::LiveView;
use crate::spool::{now_ms, DeadLetterAction, DeadLetterShown, Spool};

/// In `data_dir`: the address the admin listener is bound to, for operator commands (which
/// cannot know the port when `admin_listen` asks for port 0).
pub const ADDR_FILE: &str = "admin.addr";

#[derive(Clone)]
pub struct AdminState {
    pub metrics: PrometheusHandle,
    pub spool: Spool,
    /// The running config, route counters and which routes run; swapped whole on reload.
    pub live: LiveView,
    /// Every source's counters since start.
    pub sources: crate::sources::Registry,
    pub drain: crate::drain::Drain,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/routes", get(routes))
        .route("/api/sources", get(sources))
        .route("/api/dead-letters", get(list_dead).delete(drop_dead))
        .route("/api/dead-letters/replay", post(replay_dead))
        .route("/api/dead-letters/{route}/{seq}", get(get_dead))
        .route("/api/drain", get(drain_status).post(start_drain))
        .route("/api/config", get(config_view::get_config))
        .route(
            "/api/explain",
            // Up to the largest max_body_bytes a config may set; the handler applies the
            // running one (413 with its words).
            post(explain).layer(axum::extract::DefaultBodyLimit::max(
                crate::config::MAX_BODY_LIMIT as usize,
            )),
        )
        .route(
            "/api/routes/{name}/pending",
            axum::routing::delete(drop_pending),
        )
        .route("/api/routes/{name}/failures", get(recent_failures))
        .route_layer(axum::middleware::from_fn_with_state(
            state.live.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(console::router())
        .merge(api)
        .with_state(state)
}

async fn require_token(State(live): State<LiveView>, request: Request, next: Next) -> Response {
    let token = live.borrow().config.admin_token().cloned();
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.expose())) {
        next.run(request).await
    } else {
        tracing::warn!(path = %request.uri().path(), "admin API request without the right bearer token");
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "admin_token required: send Authorization: Bearer <token>\n",
        )
            .into_response()
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.drain.is_requested() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: draining (hookfan drain): webhooks are refused, deliveries go on\n"
                .to_string(),
        );
    }
    let data_dir = state.live.borrow().config.data_dir().to_path_buf();
    let spool = state.spool.clone();
    let result = tokio::task::spawn_blocking(move || ready(&spool, data_dir))
        .await
        .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")));
    let degraded = state
        .live
        .borrow()
        .dedup
        .as_ref()
        .is_some_and(|d| d.degraded());
    match result {
        // Still ready: a webhook is never refused because dedup is down.
        Ok(()) if degraded => (
            StatusCode::OK,
            "ready; degraded: shared dedup (Redis) is unavailable, each replica deduplicates on its own\n".to_string(),
        ),
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Why hookfan cannot take webhooks now, if it cannot. Blocking: writes a probe file.
fn ready(spool: &Spool, data_dir: PathBuf) -> Result<(), String> {
    if !spool.is_open() {
        return Err("the spool is closed (shutting down)".into());
    }
    if let Some(error) = spool.commit_error() {
        return Err(format!(
            "the spool cannot commit ({error}); webhooks get 503 until a commit succeeds \
             (after an I/O error such as a full disk, free space: hookfan reopens the spool \
             by itself, at most once a second)"
        ));
    }
    let probe = data_dir.join(".hookfan-ready-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("data_dir {} is not writable: {e}", data_dir.display()))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let spool = state.spool.clone();
    let live = state.live.borrow().clone();
    // Backlog gauges come from the spool's maintained per-route counts: O(routes) per scrape.
    let gauges = tokio::task::spawn_blocking(move || -> Result<(), crate::spool::SpoolError> {
        metrics::gauge!("hookfan_spool_disk_bytes").set(spool.file_bytes().unwrap_or(0) as f64);
        let now = now_ms();
        let mut names: Vec<String> = live
            .config
            .routes()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        for name in spool.routes_on_disk()? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let s = spool.route_summary(&name)?;
            let age = s
                .oldest_pending_received_ms
                .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            metrics::gauge!("hookfan_route_pending", "route" => name.clone()).set(s.pending as f64);
            metrics::gauge!("hookfan_route_oldest_pending_age_seconds", "route" => name.clone())
                .set(age);
            metrics::gauge!("hookfan_route_dead_letters", "route" => name)
                .set(s.dead_letters as f64);
        }
        Ok(())
    })
    .await;
    if let Ok(Err(e)) = gauges {
        tracing::warn!(error = %e, "cannot read backlog gauges from the spool");
    }
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// One row of `GET /api/routes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RouteStatus {
    pub name: String,
    pub enabled: bool,
    pub event_types: String,
    pub destination: String,
    pub target: String,
    pub pending: u64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub in_flight: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead_letters: u64,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    /// Its destination's `rate_limit` (`50/s, burst 50`), when paced.
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// Events handed to the destination in the last whole second (retries included).
    #[serde(default)]
    pub sent_per_second: u64,
}

/// One source in `GET /api/sources`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub queue_url: String,
    /// False for a source removed from the config since start.
    pub running: bool,
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub unrouted: u64,
    pub undecodable: u64,
    pub in_flight: i64,
    /// The queue's ApproximateNumberOfMessages when last read (every 30 s).
    pub queue_messages: Option<u64>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
}

/// `GET /api/sources`: configured sources in file order, then removed ones that ran.
async fn sources(State(state): State<AdminState>) -> Response {
    let live = state.live.borrow().clone();
    let configured = live
        .config
        .sources()
        .iter()
        .map(|s| (s.name.clone(), s.sqs.queue_url.clone(), true));
    let removed: Vec<(String, String, bool)> = state
        .sources
        .names()
        .into_iter()
        .filter(|n| !live.config.sources().iter().any(|s| &s.name == n))
        .map(|n| (n, "-".to_string(), false))
        .collect();
    let rows: Vec<SourceStatus> = configured
        .chain(removed)
        .map(|(name, queue_url, running)| {
            let stats = state.sources.get(&name);
            let load =
                |f: fn(&crate::sources::sqs::SourceStats) -> u64| stats.as_deref().map_or(0, f);
            let last = stats.as_ref().and_then(|s| {
                s.last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            });
            SourceStatus {
                received: load(|s| s.received.load(Ordering::Relaxed)),
                stored: load(|s| s.stored.load(Ordering::Relaxed)),
                duplicates: load(|s| s.duplicates.load(Ordering::Relaxed)),
                unrouted: load(|s| s.unrouted.load(Ordering::Relaxed)),
                undecodable: load(|s| s.undecodable.load(Ordering::Relaxed)),
                in_flight: stats
                    .as_ref()
                    .map_or(0, |s| s.in_flight.load(Ordering::Relaxed)),
                queue_messages: stats
                    .as_ref()
                    .and_then(|s| u64::try_from(s.queue_messages.load(Ordering::Relaxed)).ok()),
                last_error: last.as_ref().map(|(e, _)| e.clone()),
                last_error_at: last.map(|(_, at)| {
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(at),
                    )
                    .to_string()
                }),
                name,
                queue_url,
                running,
            }
        })
        .collect();
    axum::Json(rows).into_response()
}

/// `GET` and `POST /api/drain`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct DrainStatus {
    /// A drain was asked for.
    pub draining: bool,
    /// Events may still come in: the webhook listener or a source has not stopped yet.
    pub accepting: bool,
}

fn drain_status_of(drain: &crate::drain::Drain) -> Json<DrainStatus> {
    Json(DrainStatus {
        draining: drain.is_requested(),
        accepting: drain.accepting(),
    })
}

async fn drain_status(State(state): State<AdminState>) -> Json<DrainStatus> {
    drain_status_of(&state.drain)
}

async fn start_drain(State(state): State<AdminState>) -> Json<DrainStatus> {
    state.drain.request();
    drain_status_of(&state.drain)
}

/// Why an admin API request was refused or failed. It answers for itself (axum's
/// `IntoResponse`), with its log line: a handler returns it and does nothing else.
#[derive(Debug)]
enum ApiError {
    /// 400: the request cannot be understood; nothing was changed.
    BadRequest(String),
    /// 404: what the request names is not there.
    NotFound(String),
    /// 409: the request is understood but would break a running route.
    Conflict(String),
    /// 500: the spool (or the task reading it) failed. Logged with its cause; the client is
    /// told only that it failed.
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(why) => {
                tracing::warn!(why = %why, "admin API request refused");
                (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
            }
            ApiError::NotFound(why) => {
                tracing::info!(why = %why, "admin API request for nothing there");
                (StatusCode::NOT_FOUND, format!("{why}\n")).into_response()
            }
            ApiError::Conflict(why) => (StatusCode::CONFLICT, format!("{why}\n")).into_response(),
            ApiError::Internal(error) => {
                tracing::error!(error = %error, "admin API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "spool error; see the log\n",
                )
                    .into_response()
            }
        }
    }
}

impl From<crate::spool::SpoolError> for ApiError {
    fn from(e: crate::spool::SpoolError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainQuery {
    path: Option<String>,
}

async fn explain(
    State(state): State<AdminState>,
    query: Result<Query<ExplainQuery>, QueryRejection>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("bad query (only ?path=/p): {e}")))?;
    let path = query.path.unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        return Err(ApiError::BadRequest(format!(
            "path {path:?} must start with / (the request path, without its query)"
        )));
    }
    let config = state.live.borrow().config.clone();
    let event = match crate::route::read_event(&headers, body, config.max_body_bytes()) {
        Ok(event) => event,
        Err(e @ crate::route::NotAnEvent::TooLarge { .. }) => {
            return Ok(
                (StatusCode::PAYLOAD_TOO_LARGE, format!("the event is {e}\n")).into_response(),
            )
        }
        Err(e) => return Err(ApiError::BadRequest(format!("not an event: {e}"))),
    };
    Ok(Json(crate::route::explain(config.routes(), Some(&event), &path)).into_response())
}

async fn routes(State(state): State<AdminState>) -> Result<Json<Vec<RouteStatus>>, ApiError> {
    let live = state.live.borrow().clone();
    let spool = state.spool.clone();
    let configured: Vec<String> = live
        .config
        .routes()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let read = tokio::task::spawn_blocking(move || {
        // Routes removed from the config still show while the spool holds events for them.
        let removed: Vec<String> = spool
            .routes_on_disk()?
            .into_iter()
            .filter(|n| !configured.contains(n))
            .collect();
        let summaries = configured
            .iter()
            .chain(&removed)
            .map(|n| spool.route_summary(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, crate::spool::SpoolError>((removed, summaries))
    })
    .await;
    let (removed, summaries) = read??;
    let now = now_ms();
    // Configured routes first, in file order, then removed routes that still hold events.
    let described: Vec<(String, bool, String, String, String, Option<String>)> = live
        .config
        .routes()
        .iter()
        .map(|r| {
            let d = &r.destination;
            (
                r.name.clone(),
                r.enabled,
                r.filter.describe(),
                d.kind().to_string(),
                d.target(),
                d.rate_limit().map(|l| l.describe()),
            )
        })
        .chain(removed.into_iter().map(|name| {
            (
                name,
                false,
                "-".into(),
                "removed from the config".into(),
                "-".into(),
                None,
            )
        }))
        .collect();
    let rows: Vec<RouteStatus> = described
        .into_iter()
        .zip(summaries)
        .map(
            |((name, enabled, event_types, destination, target, rate_limit), summary)| {
                let stats = live.stats.get(&name);
                let load = |f: fn(&RouteStats) -> u64| stats.map_or(0, |s| f(s));
                let last = stats.and_then(|s| s.last_error());
                RouteStatus {
                    pending: summary.pending,
                    oldest_pending_age_seconds: summary
                        .oldest_pending_received_ms
                        .map(|t| now.saturating_sub(t) as f64 / 1000.0),
                    in_flight: load(|s| s.in_flight.load(Ordering::Relaxed)),
                    delivered: load(|s| s.delivered.load(Ordering::Relaxed)),
                    failed: load(|s| s.failed.load(Ordering::Relaxed)),
                    dead_letters: summary.dead_letters,
                    last_error_at: last.as_ref().map(|(_, at)| rfc3339(*at)),
                    last_error: last.map(|(e, _)| e),
                    rate_limit,
                    sent_per_second: stats.map_or(0, |s| s.sent_last_second(now)),
                    name,
                    enabled,
                    event_types,
                    destination,
                    target,
                }
            },
        )
        .collect();
    Ok(Json(rows))
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// `DELETE /api/routes/{name}/pending`: forget the pending events of a route that does not
/// run (removed from the config, or disabled). 409 for a running route.
async fn drop_pending(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let running = state.live.borrow().running.contains(&name);
    if running {
        return Err(ApiError::Conflict(format!(
            "route {name:?} is running: disable or remove it in routes.yaml first"
        )));
    }
    let n = state.spool.drop_pending(&name).await?;
    tracing::warn!(route = %name, count = n, "pending events of a stopped route dropped on request");
    Ok(Json(serde_json::json!({ "dropped": n })))
}

/// Which dead letters a request means. Unknown keys are refused: a mistyped `?rout=orders`
/// must not widen a delete to every route's letters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    route: Option<String>,
    /// Comma-separated webhook ids (DELETE), or a list (POST body).
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ids: Vec<String>,
}

impl Selection {
    fn ids(&self) -> Vec<String> {
        let mut ids = self.ids.clone();
        if let Some(list) = &self.id {
            ids.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        ids
    }
}

/// The selection in a query string, or why it is not one.
fn query_selection(query: Result<Query<Selection>, QueryRejection>) -> Result<Selection, ApiError> {
    query
        .map(|Query(sel)| sel)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

async fn list_dead(
    State(state): State<AdminState>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<Response, ApiError> {
    let sel = query_selection(query)?;
    let spool = state.spool.clone();
    let letters =
        tokio::task::spawn_blocking(move || spool.dead_letters(sel.route.as_deref())).await??;
    Ok(Json(letters).into_response())
}

async fn get_dead(
    State(state): State<AdminState>,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<Json<DeadLetterShown>, ApiError> {
    let Path((route, seq)) = path.map_err(|e| {
        ApiError::BadRequest(format!(
            "a dead letter is /api/dead-letters/<route>/<seq>: {e}"
        ))
    })?;
    let spool = state.spool.clone();
    let name = route.clone();
    let found = tokio::task::spawn_blocking(move || spool.dead_letter(&name, seq)).await??;
    match found {
        Some(shown) => Ok(Json(shown)),
        None => Err(ApiError::NotFound(format!(
            "route {route:?} has no dead letter {seq}"
        ))),
    }
}

/// A running route's most recent failed attempts, newest first (since the daemon started).
async fn recent_failures(
    State(state): State<AdminState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<RecentFailure>>, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let live = state.live.borrow().clone();
    match live.stats.get(&name) {
        Some(stats) if live.running.contains(&name) => Ok(Json(stats.recent_failures())),
        _ => Err(ApiError::NotFound(format!(
            "no route named {name:?} is running"
        ))),
    }
}

/// An empty body replays every dead letter; any other body must be a JSON selection, whatever
/// its `Content-Type` says, so that a body that was meant to narrow the replay never widens it.
async fn replay_dead(
    State(state): State<AdminState>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sel = if body.iter().all(u8::is_ascii_whitespace) {
        Selection::default()
    } else {
        serde_json::from_slice::<Selection>(&body).map_err(|e| {
            ApiError::BadRequest(format!("the body is not a dead-letter selection: {e}"))
        })?
    };
    act(&state, DeadLetterAction::Replay, sel).await
}

async fn drop_dead(
    State(state): State<AdminState>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(&state, DeadLetterAction::Drop, query_selection(query)?).await
}

async fn act(
    state: &AdminState,
    action: DeadLetterAction,
    sel: Selection,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ids = sel.ids();
    let n = state
        .spool
        .dead_letter_action(action, sel.route.as_deref(), ids)
        .await?;
    let (verb, key) = match action {
        DeadLetterAction::Replay => ("replayed", "replayed"),
        DeadLetterAction::Drop => ("dropped", "dropped"),
    };
    tracing::info!(
        route = sel.route.as_deref().unwrap_or("*"),
        count = n,
        "dead letters {verb}"
    );
    Ok(Json(serde_json::json!({ key: n })))
}
