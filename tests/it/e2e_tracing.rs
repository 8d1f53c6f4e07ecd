//! OpenTelemetry traces, exported to a real OTLP/HTTP collector on loopback (`Collector`):
//! one trace per webhook, under the sender's `traceparent`; nothing secret exported; a
//! collector that never answers slows no acknowledgement; a setting hookfan cannot honour
//! stops it at start.

use std::time::Duration;

use crate::harness::*;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";

/// A daemon exporting to `endpoint`, one file route, batches sent every 100 ms.
async fn traced_daemon(endpoint: &str, extra: &[(&str, &str)]) -> Daemon {
    let mut config = Config::default()
        .file_route("everything", "events.jsonl")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (key, value) in extra {
        config = config.env(key, value);
    }
    Daemon::start(config).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    // verify and store are its children, in its trace; store names the routes.
    let children = eventually(
        Duration::from_secs(15),
        "verify and store spans",
        || async {
            let children: Vec<OtlpSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.parent_span_id == ingest.span_id)
                .collect();
            (children.len() >= 2).then_some(children)
        },
    )
    .await;
    let mut names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["hookfan.store", "hookfan.verify"]);
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
    // Three spans a webhook, a queue of 4 and an export that hangs (10 s): most are dropped,
    // and every webhook is still acknowledged.
    for _ in 0..30 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    }
    let dropped = eventually(Duration::from_secs(10), "dropped spans counted", || async {
        metric(&daemon, "hookfan_trace_spans_dropped_total", "")
            .await
            .filter(|&n| n >= 60.0)
    })
    .await;
    assert!(dropped <= 90.0, "{dropped}");
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
