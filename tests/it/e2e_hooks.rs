//! Every kind of Stream hook handled right: synchronous hooks (Before-Message-Send, Custom
//! Commands) proxied to their handler and never stored; their bodies refused on push paths;
//! pending-message callbacks routed by path; a new API key answered 503 until routes.yaml
//! lists it.
//!
//! The handler here is answered by the test itself: each request arrives on a channel with a
//! one-shot for its answer, so a test holds a request exactly as long as it wants (a slow
//! handler) without sleeping.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::harness::*;

// ---------------------------------------------------------------------------
// A hand-answered handler
// ---------------------------------------------------------------------------

/// One request to the handler, waiting for the test's answer.
struct Call {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    answer: oneshot::Sender<Response>,
}

impl Call {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn reply(self, status: u16, content_type: &str, body: impl Into<Bytes>) {
        let response = (
            StatusCode::from_u16(status).expect("status"),
            [(axum::http::header::CONTENT_TYPE, content_type.to_owned())],
            body.into(),
        )
            .into_response();
        let _ = self.answer.send(response);
    }
}

struct Handler {
    addr: SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    server: tokio::task::JoinHandle<()>,
}

impl Handler {
    async fn start() -> Handler {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind handler");
        let addr = listener.local_addr().expect("handler addr");
        let (tx, calls) = mpsc::unbounded_channel();
        let app = Router::new().fallback(handle).with_state(tx);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("handler server");
        });
        Handler {
            addr,
            calls,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn next(&mut self, what: &str) -> Call {
        match tokio::time::timeout(DELIVERY_TIMEOUT, self.calls.recv()).await {
            Ok(Some(call)) => call,
            _ => panic!("the handler got no request within {DELIVERY_TIMEOUT:?}: {what}"),
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    State(tx): State<mpsc::UnboundedSender<Call>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, answered) = oneshot::channel();
    let call = Call {
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        answer,
    };
    if tx.send(call).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    answered
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn payload(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/sync-hooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A `passthrough:` block as top-level YAML lines.
fn passthrough(blocks: &[(&str, String, Option<&str>, Option<u32>)]) -> String {
    let mut y = String::from("passthrough:");
    for (path, url, timeout, concurrency) in blocks {
        y.push_str(&format!("\n  - path: {path}\n    url: \"{url}\""));
        if let Some(t) = timeout {
            y.push_str(&format!("\n    timeout: {t}"));
        }
        if let Some(n) = concurrency {
            y.push_str(&format!("\n    concurrency: {n}"));
        }
    }
    y
}

/// POSTs a signed request in the background, so the test can answer it as the handler.
fn post_in_background(
    url: String,
    id: String,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
) -> tokio::task::JoinHandle<(Answer, Duration)> {
    tokio::spawn(async move {
        let signature = sign(SECRET, &body);
        let sent = if extra.iter().any(|(k, _)| *k == "content-encoding") {
            gzip(&body)
        } else {
            body
        };
        let mut headers: Vec<(&str, &str)> = stream_headers(&id, &signature).to_vec();
        headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let started = Instant::now();
        let answer = post_webhook(&client(), &url, sent, &headers).await;
        (answer, started.elapsed())
    })
}

/// Posts a fresh `message.new` marker to `path` and waits until `receiver` has it and every
/// id in `expected` (a route delivers concurrently, so the marker may overtake an event stored
/// before it); returns everything but the marker.
async fn marker_at(
    daemon: &Daemon,
    path: &str,
    receiver: &mut Receiver,
    expected: &[&str],
) -> Vec<Recorded> {
    let marker = format!("marker-{}", new_id());
    post_ok(
        &client(),
        &daemon.url_path(path),
        &marker,
        &event_body("message.new", &marker),
    )
    .await;
    let ids: HashSet<String> = expected
        .iter()
        .map(|id| id.to_string())
        .chain([marker.clone()])
        .collect();
    let got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "the marker and the expected events")
        .await;
    got.into_iter()
        .filter(|r| r.webhook_id() != marker)
        .collect()
}

// ---------------------------------------------------------------------------
// Synchronous hooks: proxied, never stored
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_hooks_get_their_handlers_answer_byte_for_byte_and_nothing_is_stored() {
    let mut handler = Handler::start().await;
    let mut receiver = Receiver::start().await;
    let config = Config::default()
        .top_level(passthrough(&[
            (
                "/stream/before-message-send",
                handler.url("/bms?app=1"),
                None,
                None,
            ),
            (
                "/stream/custom-commands",
                handler.url("/commands"),
                None,
                None,
            ),
        ]))
        .route(HttpRoute::new("everything", receiver.url()));
    let daemon = Daemon::start(config).await;

    /// One synchronous request: what Stream posts, what the handler answers.
    struct Case {
        /// Path and query on hookfan.
        path: &'static str,
        body: Vec<u8>,
        gzipped: bool,
        status: u16,
        content_type: &'static str,
        reply: Vec<u8>,
        /// Where the handler is asked: path and query.
        handler_path: &'static str,
        query: Option<&'static str>,
    }
    let cases = [
        Case {
            path: "stream/before-message-send",
            body: payload("before_message_send_client_pii.json"),
            gzipped: false,
            status: 200,
            content_type: "application/json",
            reply: payload("before_message_send_modified_response.json"),
            handler_path: "/bms",
            query: Some("app=1"),
        },
        Case {
            path: "stream/before-message-send",
            body: payload("before_message_send_server_side_livestream.json"),
            gzipped: false,
            status: 200,
            content_type: "application/json; charset=utf-8",
            reply: payload("before_message_send_rejected_response.json"),
            handler_path: "/bms",
            query: Some("app=1"),
        },
        Case {
            path: "stream/before-message-send",
            body: payload("before_message_send_thread_reply_with_attachment.json"),
            gzipped: true,
            status: 403,
            content_type: "text/plain",
            reply: b"not today\n".to_vec(),
            handler_path: "/bms",
            query: Some("app=1"),
        },
        Case {
            path: "stream/custom-commands?type=ticket",
            body: payload("custom_command_ticket_first_call.json"),
            gzipped: false,
            status: 200,
            content_type: "application/json",
            reply: payload("custom_command_ticket_form_response.json"),
            handler_path: "/commands",
            query: Some("type=ticket"),
        },
        Case {
            path: "stream/custom-commands?type=weather&unit=%C2%B0C",
            body: payload("custom_command_weather.json"),
            gzipped: false,
            status: 200,
            content_type: "application/vnd.example+json",
            reply: payload("custom_command_error_response.json"),
            handler_path: "/commands",
            query: Some("type=weather&unit=%C2%B0C"),
        },
    ];
    for Case {
        path,
        body,
        gzipped,
        status,
        content_type,
        reply,
        handler_path,
        query,
    } in cases
    {
        let id = new_id();
        let extra = if gzipped {
            vec![("content-encoding", "gzip".to_owned())]
        } else {
            Vec::new()
        };
        let post = post_in_background(daemon.url_path(path), id.clone(), body.clone(), extra);
        let call = handler.next(path).await;
        assert_eq!(call.path, handler_path, "{path}");
        assert_eq!(
            call.query.as_deref(),
            query,
            "{path}: the query string is kept"
        );
        let expected_body = if gzipped { gzip(&body) } else { body.clone() };
        assert_eq!(
            call.body, expected_body,
            "{path}: the exact body as received"
        );
        assert_eq!(call.header("x-webhook-id"), Some(id.as_str()));
        assert_eq!(call.header("x-api-key"), Some(API_KEY));
        assert_eq!(
            call.header("x-signature"),
            Some(sign(SECRET, &body).as_str()),
            "Stream's signature, so the handler verifies as it would without hookfan"
        );
        assert_eq!(
            call.header("content-encoding"),
            gzipped.then_some("gzip"),
            "{path}"
        );
        call.reply(status, content_type, reply.clone());
        let (answer, _) = post.await.unwrap();
        assert_eq!(answer.status, status, "{path}: {answer:?}");
        assert_eq!(
            answer.headers["content-type"], content_type,
            "{path}: the handler's Content-Type"
        );
        assert_eq!(
            answer.body.as_bytes(),
            reply.as_slice(),
            "{path}: the handler's body byte for byte"
        );
    }

    let before_marker = marker_at(&daemon, "marker", &mut receiver, &[]).await;
    assert!(
        before_marker.is_empty(),
        "no synchronous hook may reach a route: {before_marker:?}"
    );
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            "outcome=\"accepted\""
        )
        .await,
        Some(1.0),
        "only the marker was stored"
    );
    for (path, n) in [
        ("/stream/before-message-send", 3.0),
        ("/stream/custom-commands", 2.0),
    ] {
        assert_eq!(
            metric(
                &daemon,
                "hookfan_passthrough_requests_total",
                &format!("path=\"{path}\",outcome=\"answered\"")
            )
            .await,
            Some(n),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_verification_is_refused_and_the_handler_is_never_called() {
    let mut handler = Handler::start().await;
    let config = Config::default()
        .top_level(passthrough(&[("/bms", handler.url("/bms"), None, None)]))
        .file_route("to-file", "events.jsonl");
    let daemon = Daemon::start(config).await;
    let client = client();
    let body = payload("before_message_send_client_pii.json");

    let forged = post_webhook(
        &client,
        &daemon.url_path("bms"),
        body.clone(),
        &stream_headers("forged", &sign("not-the-secret", &body)),
    )
    .await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let signature = sign(SECRET, &body);
    let unknown_key = post_webhook(
        &client,
        &daemon.url_path("bms"),
        body.clone(),
        &[
            ("x-webhook-id", "unknown-key"),
            ("x-api-key", "nobody"),
            ("x-signature", signature.as_str()),
        ],
    )
    .await;
    assert_eq!(unknown_key.status, 503, "{unknown_key:?}");
    // A push event here would be answered by the handler and never stored: refused too.
    let push_id = new_id();
    let push = post_signed(
        &client,
        &daemon.url_path("bms"),
        &push_id,
        &event_body("message.new", &push_id),
    )
    .await;
    assert_eq!(push.status, 422, "{push:?}");

    // The first request the handler ever sees is the genuine one posted after them.
    let post = post_in_background(daemon.url_path("bms"), "genuine".into(), body, Vec::new());
    let call = handler.next("the genuine request").await;
    assert_eq!(call.header("x-webhook-id"), Some("genuine"));
    call.reply(200, "application/json", "{}");
    assert_eq!(post.await.unwrap().0.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_is_down_gets_502_a_slow_one_504_within_its_timeout_and_a_full_one_503() {
    let mut handler = Handler::start().await;
    let config = Config::default()
        .top_level(passthrough(&[
            ("/down", closed_port_url(), None, None),
            ("/slow", handler.url("/slow"), Some("300ms"), None),
            ("/default", handler.url("/default"), None, None),
            ("/narrow", handler.url("/narrow"), Some("30s"), Some(2)),
        ]))
        .file_route("to-file", "events.jsonl");
    let daemon = Daemon::start(config).await;
    let command = payload("custom_command_weather.json");
    let bms = payload("before_message_send_client_pii.json");

    let (down, _) = post_in_background(daemon.url_path("down"), new_id(), bms.clone(), vec![])
        .await
        .unwrap();
    assert_eq!(down.status, 502, "{down:?}");

    // (path, body, the handler's timeout): the default is Stream's deadline for the hook
    // less 100 ms: 900 ms for a Custom Command, 1.4 s for a Before-Message-Send.
    for (path, body, timeout) in [
        ("slow", bms.clone(), Duration::from_millis(300)),
        ("default", command.clone(), Duration::from_millis(900)),
        ("default", bms.clone(), Duration::from_millis(1400)),
    ] {
        let post = post_in_background(daemon.url_path(path), new_id(), body, vec![]);
        let held = handler.next(path).await; // never answered in time
        let (answer, took) = post.await.unwrap();
        drop(held);
        assert_eq!(answer.status, 504, "{path}: {answer:?}");
        assert!(
            took >= timeout && took < timeout + Duration::from_millis(1500),
            "{path}: answered after {took:?}, the timeout is {timeout:?}"
        );
    }

    // Two slots: two held requests fill them, a third is answered 503 at once.
    let first = post_in_background(daemon.url_path("narrow"), new_id(), bms.clone(), vec![]);
    let second = post_in_background(daemon.url_path("narrow"), new_id(), bms.clone(), vec![]);
    let held = [
        handler.next("narrow 1").await,
        handler.next("narrow 2").await,
    ];
    let (third, _) = post_in_background(daemon.url_path("narrow"), new_id(), bms, vec![])
        .await
        .unwrap();
    assert_eq!(third.status, 503, "{third:?}");
    for call in held {
        call.reply(200, "application/json", "{}");
    }
    assert_eq!(first.await.unwrap().0.status, 200);
    assert_eq!(second.await.unwrap().0.status, 200);

    for (path, outcome, n) in [
        ("/down", "unreachable", 1.0),
        ("/slow", "timeout", 1.0),
        ("/default", "timeout", 2.0),
        ("/narrow", "busy", 1.0),
        ("/narrow", "answered", 2.0),
    ] {
        assert_eq!(
            metric(
                &daemon,
                "hookfan_passthrough_requests_total",
                &format!("path=\"{path}\",outcome=\"{outcome}\"")
            )
            .await,
            Some(n),
            "{path} {outcome}"
        );
    }
    // The log is read from the daemon's stderr as it comes: a line may follow its answer.
    let needles = [
        "cannot be reached",
        "did not answer within 300ms",
        "all 2 slots are in flight",
    ];
    let what = format!("a log line with each of {needles:?}");
    poll_until(Duration::from_secs(10), &what, || {
        let logs = daemon.logs();
        needles.iter().all(|n| logs.contains(n)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_synchronous_hooks_do_not_hold_up_push_acknowledgements() {
    const SLOW: usize = 200;
    const SAMPLES: usize = 100;
    let mut handler = Handler::start().await;
    let mut receiver = Receiver::start().await;
    let config = Config::default()
        .top_level(passthrough(&[(
            "/bms",
            handler.url("/bms"),
            Some("60s"),
            Some(256),
        )]))
        .route(HttpRoute::new("everything", receiver.url()));
    let daemon = Daemon::start(config).await;
    let client = client();

    async fn acks(client: &reqwest::Client, daemon: &Daemon, n: usize) -> Vec<Duration> {
        let mut took = Vec::with_capacity(n);
        for _ in 0..n {
            let id = new_id();
            let started = Instant::now();
            post_ok(client, &daemon.url(), &id, &event_body("message.new", &id)).await;
            took.push(started.elapsed());
        }
        took
    }
    let mut usual = acks(&client, &daemon, SAMPLES).await;

    let body = payload("before_message_send_client_pii.json");
    let slow: Vec<_> = (0..SLOW)
        .map(|_| post_in_background(daemon.url_path("bms"), new_id(), body.clone(), vec![]))
        .collect();
    let mut held = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        held.push(handler.next(&format!("slow request {i}")).await);
    }

    let mut during = acks(&client, &daemon, SAMPLES).await;
    let (usual_p90, during_p90) = (percentile(&mut usual, 90.0), percentile(&mut during, 90.0));
    eprintln!("[test] push ack p90: {usual_p90:?} usual, {during_p90:?} with {SLOW} hooks held");
    assert!(
        during_p90 <= usual_p90 * 4 + Duration::from_millis(25),
        "push acknowledgements slowed down by held synchronous hooks: p90 {usual_p90:?} -> {during_p90:?}"
    );

    for call in held {
        call.reply(200, "application/json", "{}");
    }
    for post in slow {
        assert_eq!(post.await.unwrap().0.status, 200);
    }
    let delivered = receiver.next_n(2 * SAMPLES, "every push webhook").await;
    assert_eq!(delivered.len(), 2 * SAMPLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_block_added_or_removed_by_a_reload_applies_without_a_restart() {
    let mut handler = Handler::start().await;
    let config = Config::default().file_route("to-file", "events.jsonl");
    let daemon = Daemon::start(config.clone()).await;
    let client = client();
    let body = payload("before_message_send_client_pii.json");

    let before = post_signed(&client, &daemon.url_path("bms"), &new_id(), &body).await;
    assert_eq!(before.status, 422, "no passthrough yet: {before:?}");

    daemon.rewrite_config(&config.clone().top_level(passthrough(&[(
        "/bms",
        handler.url("/bms"),
        None,
        None,
    )])));
    poll_until(Duration::from_secs(10), "the first reload", || {
        (daemon.logs().matches("config reloaded").count() == 1).then_some(())
    })
    .await;
    let post = post_in_background(daemon.url_path("bms"), new_id(), body.clone(), vec![]);
    handler
        .next("after the reload")
        .await
        .reply(200, "application/json", "{\"message\":{}}");
    let (answer, _) = post.await.unwrap();
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "{\"message\":{}}")
    );

    daemon.rewrite_config(&config);
    poll_until(Duration::from_secs(10), "the second reload", || {
        (daemon.logs().matches("config reloaded").count() == 2).then_some(())
    })
    .await;
    let after = post_signed(&client, &daemon.url_path("bms"), &new_id(), &body).await;
    assert_eq!(after.status, 422, "the block is gone: {after:?}");
}

// ---------------------------------------------------------------------------
// Synchronous hook bodies on push paths
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_hook_posted_to_a_push_path_is_refused_and_nothing_is_stored() {
    let mut receiver = Receiver::start().await;
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("everything", receiver.url()))).await;
    let client = client();

    for (path, fixture) in [
        ("stream", "before_message_send_client_pii.json"),
        ("", "custom_command_ticket_first_call.json"),
    ] {
        let answer = post_signed(
            &client,
            &daemon.url_path(path),
            &new_id(),
            &payload(fixture),
        )
        .await;
        assert_eq!(answer.status, 422, "{fixture}: {answer:?}");
        assert!(
            answer.body.contains("configure a passthrough"),
            "{fixture}: {answer:?}"
        );
    }
    // A pending-message callback has no `type` either, but it is a notification: stored.
    let pending = new_id();
    post_ok(
        &client,
        &daemon.url_path("pending/PassOnPendingMessage"),
        &pending,
        &payload("pending_message_pass_on.json"),
    )
    .await;

    let before_marker = marker_at(&daemon, "marker", &mut receiver, &[&pending]).await;
    let ids: Vec<&str> = before_marker.iter().map(Recorded::webhook_id).collect();
    assert_eq!(ids, [pending.as_str()], "only the pending-message callback");
    for (hook, n) in [("before_message_send", 1.0), ("custom_command", 1.0)] {
        assert_eq!(
            metric(
                &daemon,
                "hookfan_sync_hooks_refused_total",
                &format!("hook=\"{hook}\"")
            )
            .await,
            Some(n),
            "{hook}"
        );
    }
    let what = "a WARN line that names the hook and the block that would handle it";
    poll_until(Duration::from_secs(10), what, || {
        let logs = daemon.logs();
        (logs.contains("the shape of a Before-Message-Send hook")
            && logs.contains("passthrough: [{ path: /stream, url: http://127.0.0.1:3000/stream }]"))
        .then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_message_callbacks_reach_the_handler_path_they_were_posted_to() {
    let mut pending = Receiver::start().await;
    let mut push = Receiver::start().await;
    let config = Config::default()
        .route(
            HttpRoute::new("pending", format!("http://{}/stream-hooks", pending.addr))
                .paths(&["/pending/*"])
                .forward_path(),
        )
        .route(HttpRoute::new("push", push.url()).paths(&["/stream"]));
    let daemon = Daemon::start(config).await;
    let client = client();
    let body = payload("pending_message_pass_on.json");

    let (pass_on, deleted, event) = (new_id(), new_id(), new_id());
    post_ok(
        &client,
        &daemon.url_path("pending/PassOnPendingMessage"),
        &pass_on,
        &body,
    )
    .await;
    post_ok(
        &client,
        &daemon.url_path("pending/DeletedPendingMessage?reason=timeout"),
        &deleted,
        &body,
    )
    .await;
    post_ok(
        &client,
        &daemon.url_path("stream"),
        &event,
        &event_body("message.new", &event),
    )
    .await;

    let got = pending
        .until_ids(
            &HashSet::from([pass_on.clone(), deleted.clone()]),
            DELIVERY_TIMEOUT,
            "both callbacks",
        )
        .await;
    for r in &got {
        let (path, query) = if r.webhook_id() == pass_on {
            ("/stream-hooks/pending/PassOnPendingMessage", None)
        } else {
            (
                "/stream-hooks/pending/DeletedPendingMessage",
                Some("reason=timeout"),
            )
        };
        assert_eq!(r.path, path, "{r:?}");
        assert_eq!(r.query.as_deref(), query, "{r:?}");
        assert_eq!(r.body, body, "the callback's body as sent");
    }
    let before = marker_at(&daemon, "pending/marker", &mut pending, &[]).await;
    assert!(
        before.iter().all(|r| r.webhook_id() != event),
        "a /stream event reached the pending route: {before:?}"
    );
    let before = marker_at(&daemon, "stream", &mut push, &[&event]).await;
    let ids: Vec<&str> = before.iter().map(Recorded::webhook_id).collect();
    assert_eq!(ids, [event.as_str()], "only /stream reaches the push route");
    assert_eq!(
        before[0].path, "/hook",
        "no forward_path: the route's own URL"
    );
}

// ---------------------------------------------------------------------------
// Key rotation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_api_key_is_answered_503_until_a_reload_adds_its_app_then_streams_retries_are_stored_once(
) {
    const NEW_KEY: &str = "rotated-in-key";
    const NEW_SECRET: &str = "rotated-in-secret-never-printed";
    let mut receiver = Receiver::start().await;
    let config = Config::default()
        .single_app()
        .route(HttpRoute::new("everything", receiver.url()));
    let daemon = Daemon::start(config.clone()).await;
    let client = client();

    let id = new_id();
    let body = event_body("message.new", &id);
    let signature = sign(NEW_SECRET, &body);
    let attempt = |n: &'static str| {
        [
            ("x-webhook-id", id.as_str()),
            ("x-webhook-attempt", n),
            ("x-api-key", NEW_KEY),
            ("x-signature", signature.as_str()),
        ]
    };
    for n in ["1", "2"] {
        let answer = post_webhook(&client, &daemon.url(), body.clone(), &attempt(n)).await;
        assert_eq!(answer.status, 503, "attempt {n}: {answer:?}");
        assert_eq!(
            answer
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1"),
            "Stream is told to retry"
        );
    }
    // The log is read from the daemon's stderr as it comes: the line may follow the answer.
    let names_the_key = |l: &str| {
        l.contains("ERROR")
            && l.contains(&format!("\"{NEW_KEY}\""))
            && l.contains("add it to apps:")
    };
    let what = "one ERROR line that names the key and what to do";
    let logs = poll_until(Duration::from_secs(10), what, || {
        let logs = daemon.logs();
        logs.lines().any(names_the_key).then_some(logs)
    })
    .await;
    assert!(!logs.contains(NEW_SECRET));
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            "outcome=\"unknown_api_key\""
        )
        .await,
        Some(2.0)
    );

    // The operator adds the new app; the file is reloaded.
    let mut rotated = config;
    rotated
        .apps
        .push((NEW_KEY.to_owned(), NEW_SECRET.to_owned()));
    daemon.rewrite_config(&rotated);
    poll_until(Duration::from_secs(10), "the reload", || {
        daemon.logs().contains("config reloaded").then_some(())
    })
    .await;

    // Stream's next retries of the same webhook: stored once.
    let third = post_webhook(&client, &daemon.url(), body.clone(), &attempt("3")).await;
    assert_eq!((third.status, third.body.as_str()), (200, "stored\n"));
    let fourth = post_webhook(&client, &daemon.url(), body, &attempt("4")).await;
    assert_eq!(
        (fourth.status, fourth.body.as_str()),
        (200, "duplicate: already stored\n")
    );
    let got = marker_at(&daemon, "marker", &mut receiver, &[&id]).await;
    let ids: Vec<&str> = got.iter().map(Recorded::webhook_id).collect();
    assert_eq!(ids, [id.as_str()], "delivered exactly once");
    assert_eq!(got[0].header("x-api-key"), Some(NEW_KEY));
}
