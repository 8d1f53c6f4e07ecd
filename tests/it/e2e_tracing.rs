//! OpenTelemetry traces, exported to a real OTLP/HTTP collector on loopback (`Collector`):
//! one trace per webhook, under the sender's `traceparent`, its delivery attempts in it
//! (after a `kill -9` too) and the handler given its `traceparent`; nothing secret exported;
//! a collector that never answers slows no acknowledgement; a setting hookfan cannot honour
//! stops it at start. (The SQS attribute: `e2e_aws`.)

use std::time::Duration;

use crate::harness::*;

/// `config` exporting its traces to `endpoint`, in batches every 100 ms.
pub fn traced(config: Config, endpoint: &str) -> Config {
    config
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";

/// A daemon exporting to `endpoint`, one file route, batches sent every 100 ms.
async fn traced_daemon(endpoint: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut config = traced(
        Config::default().file_route("everything", "events.jsonl"),
        endpoint,
    );
    for (key, value) in extra {
        config = config.env(key, value);
    }
    Daemon::start(config).await
}

/// Posts one webhook under the test's trace (`traceparent` with [`TRACE_ID`]).
async fn post_traced(client: &reqwest::Client, daemon: &Daemon, id: &str) {
    let body = event_body("message.new", id);
    let signature = sign(SECRET, &body);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let mut headers = stream_headers(id, &signature).to_vec();
    headers.push(("traceparent", &traceparent));
    let answer = post_webhook(client, &daemon.url(), body, &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// The spans of the test's trace named `name`, once `count` have arrived.
async fn spans_in_trace(collector: &Collector, name: &str, count: usize) -> Vec<OtlpSpan> {
    eventually(
        Duration::from_secs(15),
        &format!("{count} {name} span(s)"),
        || async {
            let found: Vec<OtlpSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.name == name && hex(&s.trace_id) == TRACE_ID)
                .collect();
            (found.len() >= count).then_some(found)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_delivery_attempt_is_a_span_under_the_ingest_span_and_the_handler_continues_the_trace()
{
    let collector = Collector::start().await;
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(503)]);
    let config = Config::default().route(HttpRoute::new("crm", receiver.url()));
    let daemon = Daemon::start(traced(config, &collector.endpoint())).await;
    let id = new_id();
    post_traced(&client(), &daemon, &id).await;

    let tries = receiver.next_n(2, "a 503, then the delivery").await;
    let ingest = spans_in_trace(&collector, "hookfan.ingest", 1)
        .await
        .remove(0);
    let mut attempts = spans_in_trace(&collector, "hookfan.deliver", 2).await;
    attempts.sort_by_key(|s| attribute(s, "hookfan.attempt"));
    for (span, (attempt, outcome, then, status)) in attempts.iter().zip([
        ("1", "retried", Some("retry"), "503"),
        ("2", "delivered", None, "200"),
    ]) {
        assert_eq!(
            span.parent_span_id, ingest.span_id,
            "a child of the ingest span: {span:?}"
        );
        assert_eq!(span.kind, 3, "SPAN_KIND_CLIENT");
        for (key, value) in [
            ("hookfan.route", Some("crm")),
            ("hookfan.destination", Some("http")),
            ("hookfan.attempt", Some(attempt)),
            ("hookfan.outcome", Some(outcome)),
            ("hookfan.then", then),
            ("http.response.status_code", Some(status)),
        ] {
            assert_eq!(attribute(span, key).as_deref(), value, "{key}: {span:?}");
        }
    }
    assert!(attribute(&attempts[0], "hookfan.error").is_some_and(|e| e.contains("503")));
    // The handler got each attempt's own span as its parent, in the sender's trace.
    for (recorded, span) in tries.iter().zip(&attempts) {
        assert_eq!(recorded.webhook_id(), id);
        assert_eq!(
            recorded.header("traceparent"),
            Some(format!("00-{TRACE_ID}-{}-01", hex(&span.span_id)).as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_after_a_kill_9_joins_the_trace_its_webhook_was_stored_in() {
    let collector = Collector::start().await;
    let mut receiver = Receiver::start().await;
    receiver.set_default_reply(Reply::status(503));
    let config = Config::default().route(HttpRoute::new("crm", receiver.url()));
    let mut daemon = Daemon::start(traced(config, &collector.endpoint())).await;
    let id = new_id();
    post_traced(&client(), &daemon, &id).await;
    // kill -9 loses the spans not yet exported: wait for the ingest span (and a failed
    // attempt, so the event is surely stored and pending) before the kill.
    let ingest = spans_in_trace(&collector, "hookfan.ingest", 1)
        .await
        .remove(0);
    spans_in_trace(&collector, "hookfan.deliver", 1).await;
    daemon.kill9();
    receiver.set_default_reply(Reply::status(200));
    daemon.restart().await;

    let span = eventually(
        Duration::from_secs(15),
        "the delivered attempt's span",
        || async {
            collector.spans().into_iter().find(|s| {
                s.name == "hookfan.deliver"
                    && attribute(s, "hookfan.outcome").as_deref() == Some("delivered")
            })
        },
    )
    .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(span.parent_span_id, ingest.span_id, "{span:?}");
    // The handler got that attempt (after the 503s) with its span as the parent.
    let traceparent = format!("00-{TRACE_ID}-{}-01", hex(&span.span_id));
    loop {
        let got = receiver.next("the delivered attempt").await;
        assert_eq!(got.webhook_id(), id);
        if got.header("traceparent") == Some(traceparent.as_str()) {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_one_ingest_span_under_the_senders_traceparent_with_verify_and_store_under_it()
{
    let collector = Collector::start().await;
    let daemon = traced_daemon(&collector.endpoint(), &[]).await;
    let client = client();

    let id = new_id();
    let body = event_body("message.new", &id);
    let signature = sign(SECRET, &body);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let mut headers = stream_headers(&id, &signature).to_vec();
    headers.push(("traceparent", &traceparent));
    headers.push(("tracestate", "congo=t61rcWkgMzE"));
    let answer = post_webhook(&client, &daemon.url(), body.clone(), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let ingest = collector
        .await_spans("hookfan.ingest", "hookfan.webhook_id", &id, 1)
        .await
        .remove(0);
    assert_eq!(hex(&ingest.trace_id), TRACE_ID, "the sender's trace");
    assert_eq!(
        hex(&ingest.parent_span_id),
        PARENT_SPAN_ID,
        "the sender's span is its parent"
    );
    assert_eq!(ingest.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(ingest.kind, 2, "SPAN_KIND_SERVER");
    for (key, value) in [
        ("hookfan.outcome", "accepted"),
        ("hookfan.event_type", "message.new"),
        ("http.response.status_code", "200"),
        ("http.request.method", "POST"),
        ("url.path", "/"),
    ] {
        assert_eq!(
            attribute(&ingest, key).as_deref(),
            Some(value),
            "{key}: {ingest:?}"
        );
    }
    // verify, store and the delivery are its children, in its trace; store names the routes.
    let children = eventually(
        Duration::from_secs(15),
        "verify, store and deliver spans",
        || async {
            let children: Vec<OtlpSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.parent_span_id == ingest.span_id)
                .collect();
            (children.len() >= 3).then_some(children)
        },
    )
    .await;
    let mut names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    // The file route's delivery too.
    assert_eq!(
        names,
        ["hookfan.deliver", "hookfan.store", "hookfan.verify"]
    );
    assert!(children.iter().all(|s| s.trace_id == ingest.trace_id));
    let store = children.iter().find(|s| s.name == "hookfan.store").unwrap();
    assert_eq!(
        attribute(store, "hookfan.routes").as_deref(),
        Some("everything")
    );

    // A webhook without traceparent starts a trace of its own; a duplicate says so.
    let other = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &other,
        &event_body("message.new", &other),
    )
    .await;
    let answer = post_webhook(
        &client,
        &daemon.url(),
        body,
        &stream_headers(&id, &signature),
    )
    .await;
    assert_eq!(answer.status, 200);
    let root = collector
        .await_spans("hookfan.ingest", "hookfan.webhook_id", &other, 1)
        .await
        .remove(0);
    assert!(root.parent_span_id.is_empty(), "{root:?}");
    assert_ne!(hex(&root.trace_id), TRACE_ID);
    let again = collector
        .await_spans("hookfan.ingest", "hookfan.outcome", "duplicate", 1)
        .await
        .remove(0);
    assert_eq!(
        attribute(&again, "hookfan.webhook_id").as_deref(),
        Some(id.as_str())
    );

    // A refused request has its span too, with what was asked and answered.
    let answer = send(
        &client,
        reqwest::Method::GET,
        &daemon.url(),
        Vec::new(),
        &[],
    )
    .await
    .expect("GET");
    assert_eq!(answer.status, 405);
    let refused = collector
        .await_spans("hookfan.ingest", "hookfan.outcome", "method_not_allowed", 1)
        .await
        .remove(0);
    assert_eq!(
        attribute(&refused, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(&refused, "http.response.status_code").as_deref(),
        Some("405")
    );

    // Nothing secret and nothing of the body left the process.
    let exported = String::from_utf8_lossy(&collector.bodies()).into_owned();
    for secret in [
        SECRET,
        signature.as_str(),
        &format!("hello from {id}"),
        API_KEY,
    ] {
        assert!(!exported.contains(secret), "{secret:?} was exported");
    }
    // Trace spans never reach the log lines.
    assert!(
        !daemon.logs().contains("hookfan.ingest"),
        "{}",
        daemon.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_holds_up_no_acknowledgement_and_the_dropped_spans_are_counted(
) {
    let blackhole = Blackhole::start().await;
    let endpoint = format!("http://{}", blackhole.addr);
    let daemon = traced_daemon(
        &endpoint,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
        ],
    )
    .await;
    assert_eq!(
        metric(&daemon, "hookfan_trace_spans_dropped_total", "").await,
        Some(0.0),
        "registered at start"
    );
    let client = client();
    // Four spans a webhook (ingest, verify, store, the file route's delivery), a queue of 4
    // and an export that hangs (10 s): most are dropped, and every webhook is still
    // acknowledged at once. (The median of 30, not any one: a loaded machine may stall one.)
    let mut took = Vec::new();
    for _ in 0..30 {
        let id = new_id();
        let started = std::time::Instant::now();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        took.push(started.elapsed());
    }
    took.sort_unstable();
    assert!(
        took[took.len() / 2] < Duration::from_secs(1),
        "acknowledgements waited for the exporter: {took:?}"
    );
    let dropped = eventually(Duration::from_secs(10), "dropped spans counted", || async {
        metric(&daemon, "hookfan_trace_spans_dropped_total", "")
            .await
            .filter(|&n| n >= 60.0)
    })
    .await;
    // The first spans found room in the queue.
    assert!(dropped < 120.0, "{dropped}");
    let status = daemon.cli(&["status"]).await;
    assert!(status.contains("everything"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_protocol_hookfan_cannot_speak_stops_it_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(
        &config,
        Config::default()
            .file_route("a", "a.jsonl")
            .render(dir.path()),
    )
    .unwrap();
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            "http://127.0.0.1:4317".to_string(),
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
            "grpc".to_string(),
        ),
    ];
    let mut cmd = serve_command(&config, &env);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run hookfan serve");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: hookfan exports traces over OTLP/HTTP"),
        "{stderr}"
    );
}

/// The `tracing:` block alone turns traces on (no `OTEL_*` endpoint), and its ratio applies
/// to new traces only: at 0, a webhook without `traceparent` is not traced, one whose sender
/// sampled it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracing_block_turns_traces_on_and_its_ratio_samples_new_traces_only() {
    let collector = Collector::start().await;
    let config = Config::default()
        .file_route("everything", "events.jsonl")
        .top_level(format!(
            "tracing: {{ endpoint: \"{}\", sample_ratio: 0 }}",
            collector.endpoint()
        ))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let daemon = Daemon::start(config).await;
    let client = client();
    let unsampled = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &unsampled,
        &event_body("message.new", &unsampled),
    )
    .await;
    let sampled = new_id();
    post_traced(&client, &daemon, &sampled).await;

    // Spans leave in the order they end: once the second webhook's are in, the first's
    // would be too.
    let ingest = collector
        .await_spans("hookfan.ingest", "hookfan.webhook_id", &sampled, 1)
        .await
        .remove(0);
    assert_eq!(hex(&ingest.trace_id), TRACE_ID);
    // Nothing of the first webhook's trace (its ingest, verify, store, delivery): every
    // span exported is of the sender's trace.
    let other = collector
        .spans()
        .into_iter()
        .find(|s| hex(&s.trace_id) != TRACE_ID);
    assert!(
        other.is_none(),
        "a new trace at ratio 0 was exported: {other:?}"
    );
}
