//! What routes receive: bodies, headers, retries, dead letters, dedup,
//! isolation between routes, file routes, event type filters.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::harness::*;

async fn daemon_with_receiver(route: HttpRoute) -> Daemon {
    Daemon::start(Config::default().route(route)).await
}

fn attempts(records: &[Recorded]) -> Vec<&str> {
    records.iter().map(Recorded::attempt).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_byte_identical_with_the_original_headers_and_attempt_1() {
    let mut receiver = Receiver::start().await;
    let daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    // Odd spacing, key order, escapes, number formats and a trailing newline:
    // anything that re-serializes the JSON changes these bytes.
    let body = "{ \"type\" : \"message.new\",\n  \"z\": 1, \"a\": \"caf\\u00e9 é 😀 \\\"q\\\"\",\
                \"n\": 1.50e0, \"created_at\":\"2026-05-08T00:00:00Z\" ,\"nested\":{\"b\":[1, 2 ,3]}}\n"
        .as_bytes()
        .to_vec();
    let id = new_id();
    let sig = sign(SECRET, &body);
    // Stream's own attempt number is not forwarded: hookfan counts its own.
    let headers = [
        ("x-webhook-id", id.as_str()),
        ("x-webhook-attempt", "3"),
        ("x-api-key", API_KEY),
        ("x-signature", sig.as_str()),
    ];
    let answer = post_webhook(
        &client(),
        &daemon.url_path("stream/webhooks?source=it"),
        body.clone(),
        &headers,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let r = receiver.next("the delivery").await;
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook", "delivered to the route URL's path");
    assert_eq!(
        r.body,
        body.as_slice(),
        "the body must be byte-identical: got {:?}",
        String::from_utf8_lossy(&r.body)
    );
    let content_type = r.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type: {content_type:?}"
    );
    assert_eq!(r.header("x-webhook-id"), Some(id.as_str()));
    assert_eq!(r.header("x-webhook-attempt"), Some("1"));
    assert_eq!(r.header("x-api-key"), Some(API_KEY));
    assert_eq!(r.header("x-signature"), Some(sig.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_api_secret_resigns_deliveries_with_that_secret() {
    let mut plain = Receiver::start().await;
    let mut resigned = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("plain", plain.url()))
            .route(HttpRoute::new("resigned", resigned.url()).api_secret("resign_secret")),
    )
    .await;
    let id = new_id();
    let body = event_body("message.new", &id);
    post_ok(&client(), &daemon.url(), &id, &body).await;

    let r = resigned.next("the re-signed delivery").await;
    assert_eq!(r.webhook_id(), id);
    assert_eq!(r.body, body.as_slice());
    let got = r.header("x-signature").unwrap_or("").to_ascii_lowercase();
    assert_eq!(
        got,
        sign("resign_secret", &body),
        "X-Signature must be the HMAC-SHA256 of the body with the route's api_secret"
    );
    let r = plain.next("the plain delivery").await;
    assert_eq!(
        r.header("x-signature"),
        Some(sign(SECRET, &body).as_str()),
        "a route without api_secret forwards the original signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_503_three_times_then_delivers_once() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([503, 503, 503].map(Reply::status));
    let mut daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    let client = client();
    let id = new_id();
    let body = event_body("message.new", &id);
    post_ok(&client, &daemon.url(), &id, &body).await;

    let got = receiver
        .next_n(4, "3 refused attempts and 1 accepted")
        .await;
    for r in &got {
        assert_eq!(r.webhook_id(), id);
        assert_eq!(
            r.body,
            body.as_slice(),
            "every attempt carries the same body"
        );
    }
    assert_eq!(attempts(&got), ["1", "2", "3", "4"]);

    // Nothing more: stop (the 4th delivery is in flight or done, and must be
    // recorded as delivered), start again, and push a marker through.
    daemon.stop_gracefully().await;
    daemon.restart().await;
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(
        before_marker.is_empty(),
        "the event was delivered again after the receiver accepted it: {:?}",
        before_marker
            .iter()
            .map(|r| (r.webhook_id(), r.attempt()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_on_500_408_429_and_502_with_increasing_attempt_numbers() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([
        Reply::status(500),
        Reply::status(408),
        Reply::status(429).retry_after("1"),
        Reply::status(502),
    ]);
    let daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    let id = new_id();
    post_ok(
        &client(),
        &daemon.url(),
        &id,
        &event_body("message.new", &id),
    )
    .await;
    let got = receiver
        .next_n(5, "4 retryable failures and 1 success")
        .await;
    assert!(got.iter().all(|r| r.webhook_id() == id));
    assert_eq!(attempts(&got), ["1", "2", "3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_the_receiver_times_out() {
    let mut receiver = Receiver::start().await;
    // The first answer comes far later than the route's timeout.
    receiver.push_replies([Reply::status(200).delay(Duration::from_secs(3))]);
    let daemon =
        daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url()).timeout("300ms")).await;
    let id = new_id();
    post_ok(
        &client(),
        &daemon.url(),
        &id,
        &event_body("message.new", &id),
    )
    .await;
    let first = receiver.next("the attempt that times out").await;
    let second = receiver.next("the retry after the timeout").await;
    assert_eq!(first.webhook_id(), id);
    assert_eq!(second.webhook_id(), id);
    assert_eq!(attempts(&[first, second]), ["1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_while_the_receiver_is_down_are_all_delivered_when_it_is_back() {
    const N: usize = 20;
    let mut receiver = Receiver::start().await;
    let daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    let client = client();
    receiver.stop().await;
    let mut ids = HashSet::new();
    for _ in 0..N {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    receiver.restart().await;
    let got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "events posted during the outage")
        .await;
    let counts = count_by_id(&got);
    eprintln!(
        "[test] {} deliveries for {N} events after the outage",
        got.len()
    );
    assert!(
        counts.keys().all(|id| ids.contains(id)),
        "unexpected ids: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_400_is_dead_lettered_and_not_retried() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(400)]);
    let mut daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("to-receiver", receiver.url()))
            .file_route("to-file", "events.jsonl"),
    )
    .await;
    let client = client();
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    let r = receiver.next("the attempt answered 400").await;
    assert_eq!(r.webhook_id(), id);
    assert_eq!(r.attempt(), "1");

    daemon.stop_gracefully().await;
    let all = daemon.dead_letters(None).await;
    let entry = all
        .iter()
        .find(|d| d["webhook_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no dead letter with webhook_id {id}; got {all:#?}"));
    assert_eq!(entry["route"], "to-receiver", "{entry}");
    assert_eq!(entry["event_type"], "message.new", "{entry}");
    assert_eq!(
        entry["attempts"].as_u64(),
        Some(1),
        "a 400 is permanent: one attempt; {entry}"
    );
    let error = entry["error"].to_string();
    assert!(
        error.contains("400"),
        "the error must mention the 400: {entry}"
    );

    let for_route = daemon.dead_letters(Some("to-receiver")).await;
    assert!(
        for_route.iter().any(|d| d["webhook_id"] == id.as_str()),
        "--route to-receiver must list it: {for_route:#?}"
    );
    let for_other = daemon.dead_letters(Some("to-file")).await;
    assert!(
        for_other.iter().all(|d| d["webhook_id"] != id.as_str()),
        "--route to-file must not list it: {for_other:#?}"
    );

    daemon.restart().await;
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(
        before_marker.is_empty(),
        "a dead-lettered event must not be retried: {:?}",
        before_marker
            .iter()
            .map(|r| (r.webhook_id(), r.attempt()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_webhook_id_is_acknowledged_every_time_but_delivered_once() {
    let mut receiver = Receiver::start().await;
    let mut daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    let client = client();

    // One after the other.
    let sequential = new_id();
    let body = event_body("message.new", &sequential);
    post_ok(&client, &daemon.url(), &sequential, &body).await;
    post_ok(&client, &daemon.url(), &sequential, &body).await;

    // Eight at the same time.
    let concurrent = new_id();
    let body = event_body("message.new", &concurrent);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, id, body) = (
            client.clone(),
            daemon.url(),
            concurrent.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            post_signed(&client, &url, &id, &body).await
        }));
    }
    for task in tasks {
        let answer = task.await.expect("post task");
        assert_eq!(answer.status, 200, "concurrent duplicate: {answer:?}");
    }

    let ids: HashSet<String> = [sequential.clone(), concurrent.clone()].into();
    let mut got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "both events")
        .await;
    daemon.stop_gracefully().await;
    daemon.restart().await;
    got.extend(post_marker_and_await(&client, &daemon, &mut receiver).await);
    let counts = count_by_id(&got);
    assert_eq!(
        counts.get(&sequential),
        Some(&1),
        "sequential duplicate: {counts:?}"
    );
    assert_eq!(
        counts.get(&concurrent),
        Some(&1),
        "concurrent duplicates: {counts:?}"
    );
    assert_eq!(counts.len(), 2, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_route_and_a_hung_route_do_not_hold_up_a_healthy_route() {
    const N: usize = 30;
    let hung = Blackhole::start().await;
    let mut healthy = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("closed-port", closed_port_url()))
            .route(HttpRoute::new("hung", hung.url()).timeout("5s"))
            .route(HttpRoute::new("healthy", healthy.url())),
    )
    .await;
    let client = client();
    let started = Instant::now();
    let mut ids = HashSet::new();
    for _ in 0..N {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    let got = healthy
        .until_ids(&ids, Duration::from_secs(5), "the healthy route")
        .await;
    eprintln!(
        "[test] healthy route got {} deliveries for {N} events in {:?}",
        got.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_route_appends_one_json_line_per_event() {
    let mut daemon = Daemon::start(Config::default().file_route("to-file", "events.jsonl")).await;
    let path = daemon.dir().join("events.jsonl");
    let client = client();
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
    };
    let started = now();

    let mut expected = BTreeMap::new();
    let plain = new_id();
    let body = event_body("message.new", &plain);
    post_ok(&client, &daemon.url(), &plain, &body).await;
    expected.insert(plain, ("message.new".to_owned(), body));

    let fixture = valid_fixtures()
        .into_iter()
        .find(|f| f.name == "reaction.new")
        .expect("reaction.new fixture");
    let gzipped = new_id();
    let mut headers = stream_headers(&gzipped, &fixture.signature).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = post_webhook(&client, &daemon.url(), fixture.gz.clone(), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.insert(gzipped, ("reaction.new".to_owned(), fixture.body.clone()));

    let moderation = new_id();
    let body = event_body("moderation.flagged", &moderation);
    post_ok(&client, &daemon.url(), &moderation, &body).await;
    expected.insert(moderation, ("moderation.flagged".to_owned(), body));

    let text = read_lines_when(&path, 3).await;
    let finished = now();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per event");
    let mut seen = HashSet::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line is not JSON ({e}): {line}"));
        let id = v["webhook_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no webhook_id string: {line}"));
        let (ty, body) = expected
            .get(id)
            .unwrap_or_else(|| panic!("unexpected webhook_id {id}: {line}"));
        assert!(seen.insert(id.to_owned()), "{id} written twice");
        assert_eq!(v["type"], ty.as_str(), "{line}");
        let event: serde_json::Value = serde_json::from_slice(body).expect("body is JSON");
        assert_eq!(
            v["event"], event,
            "event must be the event JSON object: {line}"
        );
        let received_at = v["received_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no received_at string: {line}"));
        let t = parse_rfc3339(received_at)
            .unwrap_or_else(|| panic!("received_at is not RFC 3339: {received_at:?}"));
        assert!(
            (started - 2..=finished + 2).contains(&t),
            "received_at {received_at} is not the time of receipt \
             (between {started} and {finished} Unix seconds)"
        );
    }

    // After a restart the file is appended to, not rewritten, and nothing
    // already written is written again.
    daemon.stop_gracefully().await;
    daemon.restart().await;
    let after_restart = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &after_restart,
        &event_body("message.new", &after_restart),
    )
    .await;
    let appended = read_lines_when(&path, 4).await;
    assert!(
        appended.starts_with(&text),
        "the lines written before the restart must be kept as they were:\n{appended}"
    );
    let last: serde_json::Value =
        serde_json::from_str(appended.lines().last().expect("4 lines")).expect("JSON line");
    assert_eq!(last["webhook_id"], after_restart.as_str(), "{appended}");
    assert_eq!(appended.lines().count(), 4, "{appended}");
}

/// The file's text once it holds at least `n` complete lines.
async fn read_lines_when(path: &std::path::Path, n: usize) -> String {
    let text = poll_until(
        DELIVERY_TIMEOUT,
        &format!("{n} complete lines in {}", path.display()),
        || {
            let text = std::fs::read_to_string(path).ok()?;
            (text.ends_with('\n') && text.lines().count() >= n).then_some(text)
        },
    )
    .await;
    eprintln!("[test] {}:\n{text}", path.display());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_types_select_routes_by_exact_name_and_glob() {
    let mut filtered = Receiver::start().await;
    let mut catch_all = Receiver::start().await;
    let mut daemon = Daemon::start(
        Config::default()
            .route(
                HttpRoute::new("filtered", filtered.url())
                    .event_types(&["message.new", "moderation.*"]),
            )
            .route(HttpRoute::new("catch-all", catch_all.url())),
    )
    .await;
    let client = client();
    let mut all = HashSet::new();
    let mut matching = HashSet::new();
    for f in valid_fixtures() {
        let id = format!("{}-{}", f.name, new_id());
        let answer = post_webhook(
            &client,
            &daemon.url(),
            f.body.clone(),
            &stream_headers(&id, &f.signature),
        )
        .await;
        assert_eq!(answer.status, 200, "{}: {answer:?}", f.name);
        if f.expected_type == "message.new" || f.expected_type.starts_with("moderation.") {
            matching.insert(id.clone());
        }
        all.insert(id);
    }
    assert_eq!(
        matching.len(),
        2,
        "message.new and moderation.flagged fixtures"
    );
    catch_all
        .until_ids(
            &all,
            DELIVERY_TIMEOUT,
            "every fixture on the catch-all route",
        )
        .await;
    let mut got = filtered
        .until_ids(&matching, DELIVERY_TIMEOUT, "the matching fixtures")
        .await;
    daemon.stop_gracefully().await;
    daemon.restart().await;
    got.extend(post_marker_and_await(&client, &daemon, &mut filtered).await);
    let ids: HashSet<String> = got.iter().map(|r| r.webhook_id().to_owned()).collect();
    assert_eq!(
        ids, matching,
        "the filtered route must get exactly message.new and moderation.*"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_survive_sigterm_and_are_delivered_after_restart() {
    undelivered_events_survive_a_shutdown_by("TERM").await;
}

/// SIGINT (Ctrl-C when run by hand) is a shutdown like SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_shuts_down_like_sigterm_and_keeps_what_was_acknowledged() {
    undelivered_events_survive_a_shutdown_by("INT").await;
}

/// Stores events while the route's receiver is down, then stops the daemon with `signal`:
/// exit code 0, the reason logged, the listener closed; after a restart, what was
/// acknowledged is delivered.
async fn undelivered_events_survive_a_shutdown_by(signal: &str) {
    const N: usize = 10;
    let mut receiver = Receiver::start().await;
    let mut daemon = daemon_with_receiver(HttpRoute::new("to-receiver", receiver.url())).await;
    let client = client();
    receiver.stop().await;
    let mut ids = HashSet::new();
    for _ in 0..N {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    let url = daemon.url();
    let status = daemon.signal_and_wait(signal).await;
    assert!(
        status.success(),
        "exit code 0 after SIG{signal}, got {status}"
    );
    let logs = daemon.logs();
    assert!(
        logs.contains(&format!(
            "SIG{signal} received: no longer accepting webhooks"
        )),
        "the shutdown says why:\n{logs}"
    );
    let id = new_id();
    let after = client
        .post(&url)
        .body(event_body("message.new", &id))
        .send()
        .await;
    assert!(after.is_err(), "the listener is closed: {after:?}");
    receiver.restart().await;
    daemon.restart().await;
    receiver
        .until_ids(
            &ids,
            DELIVERY_TIMEOUT,
            &format!("events acknowledged before SIG{signal}"),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_matching_no_route_is_still_acknowledged_with_200() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("messages-only", receiver.url()).event_types(&["message.new"])),
    )
    .await;
    let client = client();
    let unrouted = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &unrouted,
        &event_body("reaction.new", &unrouted),
    )
    .await;
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(
        before_marker.is_empty(),
        "a reaction.new must not reach a [message.new] route: {before_marker:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_route_receives_nothing() {
    let mut disabled = Receiver::start().await;
    let mut enabled = Receiver::start().await;
    let mut daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("disabled", disabled.url()).enabled(false))
            .route(HttpRoute::new("enabled", enabled.url()).enabled(true)),
    )
    .await;
    let client = client();
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    assert_eq!(
        enabled
            .next("the event on the enabled route")
            .await
            .webhook_id(),
        id
    );
    // Whatever the disabled route would have got has had a restart and a
    // marker's round trip to show up.
    daemon.stop_gracefully().await;
    daemon.restart().await;
    post_marker_and_await(&client, &daemon, &mut enabled).await;
    let got = disabled.drain_now();
    assert!(
        got.is_empty(),
        "a disabled route received requests: {got:?}"
    );
}

#[tokio::test]
async fn deliveries_and_checkpoint_encoding_run_below_the_priority_of_ingest() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .top_level("delivery_nice: 7")
            .route(HttpRoute::new("to-receiver", receiver.url())),
    )
    .await;
    // A delivery has run, so the delivery runtime's threads (workers and blocking pool) exist.
    post_marker_and_await(&client(), &daemon, &mut receiver).await;

    let base = own_nice();
    let threads = daemon.thread_priorities();
    let (deliver, rest): (Vec<_>, Vec<_>) = threads
        .iter()
        .partition(|(name, _)| name.starts_with("hookfan-deliver"));
    // A checkpoint's encoder thread lives only while one is written: seen or not.
    let (encoder, rest): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(name, _)| name.starts_with("hookfan-ckpt"));
    assert!(
        !deliver.is_empty(),
        "no hookfan-deliver thread in {threads:?}"
    );
    let lowered = (base + 7).min(19);
    assert!(
        deliver.iter().all(|(_, nice)| *nice == lowered),
        "every delivery thread runs at nice {lowered}: {threads:?}"
    );
    let encoding = (base + hookfan::spool::compaction::CHECKPOINT_NICE).min(19);
    assert!(
        encoder.iter().all(|(_, nice)| *nice == encoding),
        "a checkpoint is encoded at nice {encoding}: {threads:?}"
    );
    assert!(
        rest.iter().all(|(_, nice)| *nice == base),
        "ingest, the spool writer, its maintenance and the rest keep nice {base}: {threads:?}"
    );
}
