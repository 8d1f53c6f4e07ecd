//! Every refusal of a request, as one type: why it was refused, which knows its status and
//! words to the sender ([`IntoResponse`]), its `outcome` label and its log line. The handler
//! only says which refusal it is, with the facts the log line needs; [`Refusal::answer`]
//! logs, counts and answers it, the same way for every one. (A passthrough's own answers, a
//! busy hook or a handler's failure, are not refusals of the request: `passthrough.rs`.)
//!
//! The words to the sender are one line; the log line says why in more, and what to do when
//! an operator can fix it. Neither ever holds a secret or the body.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::outcome::Outcome;
use super::verify::Rejection;
use super::{IngestState, NotStored, OncePerSecond, ACK_DEADLINE};
use crate::stream::hooks::SyncHook;

/// Why ingest did not take a request. Each variant holds what its log line names.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The sender's address is not in `allowed_ips` (403).
    IpNotAllowed { peer: Option<IpAddr> },
    /// Not a POST (405, with `Allow: POST`).
    MethodNotAllowed { method: Method },
    /// `max_buffered_bytes` of request bodies are in memory already (503: retry).
    Overloaded,
    /// The body did not arrive within `request_timeout`, or a synchronous hook's deadline
    /// (408).
    BodyTimeout { after: Duration },
    /// The body could not be read: the client went away mid-body (400).
    Unreadable,
    /// Verification refused it: signature, key, size, gzip, JSON or age (see [`Rejection`]).
    Rejected(Rejection),
    /// A signed body shaped like a synchronous hook on a push path (422): Stream would take
    /// a generic 200 as the hook's answer.
    SyncHookOnPush { hook: SyncHook, path: String },
    /// A push event (a string `type`) on a passthrough path, where it would never be stored
    /// (422).
    PushOnPassthrough { event_type: String },
    /// Verified and routed, but not stored (503: retry).
    NotStored { why: NotStored, event_type: String },
}

static OVERLOAD_WARNING: OncePerSecond = OncePerSecond::new();
static SYNC_HOOK_WARNING: OncePerSecond = OncePerSecond::new();
static UNKNOWN_KEY_ERROR: OncePerSecond = OncePerSecond::new();

impl Refusal {
    /// The `outcome` label it is counted under in `hookfan_webhooks_received_total`.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Refusal::IpNotAllowed { .. } => Outcome::IpNotAllowed,
            Refusal::MethodNotAllowed { .. } => Outcome::MethodNotAllowed,
            Refusal::Overloaded => Outcome::Overloaded,
            Refusal::BodyTimeout { .. } => Outcome::Timeout,
            Refusal::Unreadable => Outcome::BadRequest,
            Refusal::Rejected(rejection) => rejection.outcome(),
            Refusal::SyncHookOnPush { .. } => Outcome::SyncHook,
            Refusal::PushOnPassthrough { .. } => Outcome::PushOnPassthrough,
            Refusal::NotStored { why, .. } => match why {
                NotStored::Overloaded => Outcome::Overloaded,
                NotStored::ClaimedElsewhere => Outcome::InProgress,
                NotStored::Spool(_) => Outcome::Unavailable,
            },
        }
    }

    /// Logs it (the lines a flood would repeat, at most once a second), counts it, and
    /// answers it. `path` and `webhook_id` are the request's, for the log line.
    pub(crate) fn answer(self, state: &IngestState, path: &str, webhook_id: &str) -> Response {
        state.count(self.outcome());
        if let Refusal::SyncHookOnPush { hook, .. } = &self {
            metrics::counter!("hookfan_sync_hooks_refused_total", "hook" => hook.label())
                .increment(1);
        }
        self.log(path, webhook_id);
        self.into_response()
    }

    fn log(&self, path: &str, webhook_id: &str) {
        match self {
            Refusal::IpNotAllowed { peer } => {
                tracing::warn!(peer = ?peer, %path, %webhook_id, "refused webhook: the sender's IP is not in allowed_ips");
            }
            Refusal::MethodNotAllowed { method } => {
                tracing::warn!(%method, %path, "refused webhook: only POST is accepted");
            }
            Refusal::Overloaded => {
                if OVERLOAD_WARNING.due() {
                    tracing::warn!(%path, %webhook_id, "refused webhook: max_buffered_bytes of request bodies are in memory already (overloaded: the disk commits slower than webhooks arrive); answered 503 so Stream retries");
                }
            }
            Refusal::BodyTimeout { after } => {
                tracing::warn!(%path, %webhook_id, timeout = ?after, "refused webhook: the body did not arrive in time (request_timeout, or a synchronous hook's deadline)");
            }
            Refusal::Unreadable => {
                tracing::warn!(%path, %webhook_id, "refused webhook: the request body could not be read (client disconnected?)");
            }
            // An operator must act (add the app) or webhooks are lost once Stream stops
            // retrying.
            Refusal::Rejected(rejection @ Rejection::UnknownApiKey { .. }) => {
                if UNKNOWN_KEY_ERROR.due() {
                    tracing::error!(%path, %webhook_id, "refused webhook with 503 so Stream retries: {rejection}");
                }
            }
            Refusal::Rejected(rejection) => {
                tracing::warn!(%path, %webhook_id, reason = %rejection, "refused webhook");
            }
            Refusal::SyncHookOnPush { hook, .. } => {
                if SYNC_HOOK_WARNING.due() {
                    tracing::warn!(
                        %path,
                        %webhook_id,
                        hook = hook.name(),
                        "refused: this signed request has no `type` and the shape of a {} hook ({}), which Stream answers from the response; {path} is a push path. To proxy it to your handler, add to routes.yaml: `passthrough: [{{ path: {path}, url: http://127.0.0.1:3000{path} }}]` (your handler's URL)",
                        hook.name(),
                        hook.setting(),
                    );
                }
            }
            Refusal::PushOnPassthrough { event_type } => {
                if SYNC_HOOK_WARNING.due() {
                    tracing::warn!(%path, %webhook_id, %event_type, "refused: a push event arrived on a passthrough path, where it would not be stored; point Stream's webhook_url at a path without a passthrough block");
                }
            }
            Refusal::NotStored { why, event_type } => match why {
                NotStored::Overloaded => {
                    if OVERLOAD_WARNING.due() {
                        tracing::warn!(%webhook_id, %event_type, "webhook not committed within {ACK_DEADLINE:?} (overloaded disk); answered 503 so Stream retries, and the retry is deduplicated if the commit lands");
                    }
                }
                NotStored::ClaimedElsewhere => {
                    tracing::info!(%webhook_id, %event_type, "another replica is storing this webhook right now; answered 503 so Stream retries (the retry is a duplicate once it is stored)");
                }
                NotStored::Spool(e) => {
                    tracing::error!(%webhook_id, %event_type, error = %e, "cannot store webhook; answered 503 so Stream retries");
                }
            },
        }
    }
}

/// 503 with `Retry-After: 1`: Stream retries it.
fn unavailable(text: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        text,
    )
        .into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::IpNotAllowed { .. } => (
                StatusCode::FORBIDDEN,
                "this address may not post webhooks here\n",
            )
                .into_response(),
            Refusal::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "POST")],
                "only POST is accepted\n",
            )
                .into_response(),
            Refusal::Overloaded => unavailable("overloaded: too many webhooks in progress; retry\n"),
            Refusal::BodyTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within request_timeout\n",
            )
                .into_response(),
            Refusal::Unreadable => {
                (StatusCode::BAD_REQUEST, "cannot read the request body\n").into_response()
            }
            Refusal::Rejected(rejection) => rejection.into_response(),
            Refusal::SyncHookOnPush { hook, path } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "this looks like a {} hook, which this path does not answer: configure a passthrough for {path}\n",
                    hook.name()
                ),
            )
                .into_response(),
            Refusal::PushOnPassthrough { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "this is a push event, and this path only proxies synchronous hooks: point Stream's webhook URL at another path\n",
            )
                .into_response(),
            Refusal::NotStored { why, .. } => unavailable(match why {
                NotStored::Overloaded => "not stored in time (overloaded); retry\n",
                NotStored::ClaimedElsewhere => "being stored by another replica; retry\n",
                NotStored::Spool(_) => "cannot store the event right now; retry\n",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolError;

    /// Each refusal's status, `Retry-After` and outcome label: what Stream and the metrics
    /// see. 503 (with `Retry-After`) exactly for what a retry can fix.
    #[tokio::test]
    async fn every_refusal_answers_its_status_words_and_outcome() {
        let table: Vec<(Refusal, u16, &str, &str)> = vec![
            (
                Refusal::IpNotAllowed { peer: None },
                403,
                "ip_not_allowed",
                "this address may not post webhooks here\n",
            ),
            (
                Refusal::MethodNotAllowed {
                    method: Method::GET,
                },
                405,
                "method_not_allowed",
                "only POST is accepted\n",
            ),
            (
                Refusal::Overloaded,
                503,
                "overloaded",
                "overloaded: too many webhooks in progress; retry\n",
            ),
            (
                Refusal::BodyTimeout {
                    after: Duration::from_secs(1),
                },
                408,
                "timeout",
                "the request body did not arrive within request_timeout\n",
            ),
            (
                Refusal::Unreadable,
                400,
                "bad_request",
                "cannot read the request body\n",
            ),
            (
                Refusal::Rejected(Rejection::BadSignature("wrong")),
                401,
                "unauthorized",
                "wrong\n",
            ),
            (
                Refusal::Rejected(Rejection::UnknownApiKey { key: "k".into() }),
                503,
                "unknown_api_key",
                "",
            ),
            (
                Refusal::SyncHookOnPush {
                    hook: SyncHook::BeforeMessageSend,
                    path: "/".into(),
                },
                422,
                "sync_hook",
                "this looks like a Before-Message-Send hook, which this path does not answer: configure a passthrough for /\n",
            ),
            (
                Refusal::PushOnPassthrough {
                    event_type: "message.new".into(),
                },
                422,
                "push_on_passthrough",
                "this is a push event, and this path only proxies synchronous hooks: point Stream's webhook URL at another path\n",
            ),
            (
                Refusal::NotStored {
                    why: NotStored::Overloaded,
                    event_type: "-".into(),
                },
                503,
                "overloaded",
                "not stored in time (overloaded); retry\n",
            ),
            (
                Refusal::NotStored {
                    why: NotStored::ClaimedElsewhere,
                    event_type: "-".into(),
                },
                503,
                "in_progress",
                "being stored by another replica; retry\n",
            ),
            (
                Refusal::NotStored {
                    why: NotStored::Spool(SpoolError::Closed),
                    event_type: "-".into(),
                },
                503,
                "unavailable",
                "cannot store the event right now; retry\n",
            ),
        ];
        for (refusal, status, outcome, words) in table {
            let what = format!("{refusal:?}");
            assert_eq!(refusal.outcome().label(), outcome, "{what}");
            let response = refusal.into_response();
            assert_eq!(response.status().as_u16(), status, "{what}");
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                status == 503,
                "{what}"
            );
            if status == 405 {
                assert_eq!(response.headers()[header::ALLOW], "POST");
            }
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            if words.is_empty() {
                continue; // (verify's own answer, tested there)
            }
            assert_eq!(body, words, "{what}");
        }
    }
}
