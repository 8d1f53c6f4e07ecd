//! Stream's own SQS queue as a source, against moto through the real AWS SDK: every native
//! form of every fixture reaches a route byte for byte; what cannot be decoded stays in the
//! queue; a message is deleted only once stored, so `kill -9` loses nothing; a source and the
//! webhook listener feed the same routes, and route by content alike; a sources-only config
//! has no webhook port.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::harness::*;
use crate::moto::*;

/// The `sources:` block for `queue_url` on moto, with a short long-poll and visibility
/// timeout so that a message left in the queue comes back within the test.
fn source_block(name: &str, queue_url: &str, endpoint: &str, visibility: &str) -> String {
    format!(
        "sources:\n  - name: {name}\n    sqs:\n      queue_url: \"{queue_url}\"\n      endpoint_url: \"{endpoint}\"\n      region: \"{REGION}\"\n      wait_time: 1s\n      visibility_timeout: {visibility}"
    )
}

/// One app (the fixtures' secret), a source named `stream-native` on `queue_url` through
/// `endpoint`, and `route`.
fn source_config(queue_url: &str, endpoint: &str, visibility: &str, route: HttpRoute) -> Config {
    aws_config()
        .single_app()
        .top_level(source_block(
            "stream-native",
            queue_url,
            endpoint,
            visibility,
        ))
        .route(route)
}

/// The id inside a delivered event (`message.id`, which `event_body` sets): a message's
/// webhook id is the queue message's, so tests recognise their events by this one.
fn event_id(r: &Recorded) -> String {
    let event: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON event");
    event["message"]["id"]
        .as_str()
        .expect("an event made by event_body")
        .to_string()
}

/// Sends `bodies` to the queue, up to ten per request and within SQS's 1 MiB per request.
async fn send_all(aws: &Aws, queue_url: &str, bodies: &[String]) {
    let mut chunks: Vec<&[String]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, body) in bodies.iter().enumerate() {
        if i > start && (i - start == 10 || bytes + body.len() > 1_000_000) {
            chunks.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += body.len();
    }
    if start < bodies.len() {
        chunks.push(&bodies[start..]);
    }
    for chunk in chunks {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = aws
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap_or_else(|e| panic!("SendMessageBatch {queue_url}: {e:?}"));
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
}

fn fixture_file(case: &str, file: &str) -> String {
    let path = fixtures_dir().join(case).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture's SNS envelope with a fresh `MessageId` (the fixtures all carry the zero id,
/// which the source would rightly take for one notification).
fn sns_envelope(case: &str) -> String {
    let mut envelope: serde_json::Value =
        serde_json::from_str(&fixture_file(case, "sns_notification.txt")).unwrap();
    envelope["MessageId"] = serde_json::json!(new_id());
    envelope.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_native_form_of_every_fixture_reaches_a_route_byte_for_byte_and_the_undecodable_stay_queued(
) {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("native")).await;
    let mut receiver = Receiver::start().await;
    // Native messages carry no signature: the route signs with the app's secret.
    let route = HttpRoute::new("everything", receiver.url()).api_secret(SECRET);
    let daemon = Daemon::start(source_config(&queue, &moto.endpoint(), "2s", route)).await;

    // Every valid fixture in its four native forms: raw JSON, base64, base64(gzip), SNS.
    let fixtures = valid_fixtures();
    let mut bodies = Vec::new();
    for f in &fixtures {
        bodies.push(fixture_file(&f.name, "body.json"));
        bodies.push(fixture_file(&f.name, "sqs_body_uncompressed.txt"));
        bodies.push(fixture_file(&f.name, "sqs_body.txt"));
        bodies.push(sns_envelope(&f.name));
    }
    // And the cases that can never be decoded.
    let undecodable = [
        ("_invalid/bad_base64", "sqs_body.txt"),
        ("_invalid/bad_compression", "sqs_body.txt"),
        ("_invalid/malformed_json", "sqs_body.txt"),
        ("_invalid/empty_body", "sqs_body.txt"),
        ("_invalid/bad_sns_envelope", "sns_notification.txt"),
    ];
    for (case, file) in undecodable {
        bodies.push(fixture_file(case, file));
    }
    send_all(&aws, &queue, &bodies).await;

    // A pushed webhook feeds the same route at once.
    let pushed = new_id();
    post_ok(
        &client(),
        &daemon.url(),
        &pushed,
        &event_body("message.new", &pushed),
    )
    .await;

    let expected = 4 * fixtures.len() + 1;
    let got = receiver
        .next_n(expected, "every native form and the push")
        .await;
    let by_body: HashMap<String, &Fixture> = fixtures
        .iter()
        .map(|f| (String::from_utf8(f.body.clone()).unwrap(), f))
        .collect();
    let mut per_fixture: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        if r.webhook_id() == pushed {
            continue;
        }
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        let f = by_body
            .get(&body)
            .unwrap_or_else(|| panic!("a delivered body is no fixture's: {body}"));
        *per_fixture.entry(f.name.as_str()).or_default() += 1;
        assert_eq!(
            r.header("x-signature"),
            Some(f.signature.as_str()),
            "{}: the route's signature is Stream's own vector's (the body's HMAC with the secret)",
            f.name
        );
        let id = r.webhook_id();
        assert!(
            id.starts_with("sqs:") || id.starts_with("sns:"),
            "{}: the message's id names the event: {id}",
            f.name
        );
    }
    for f in &fixtures {
        assert_eq!(per_fixture.get(f.name.as_str()), Some(&4), "{}", f.name);
    }

    // The undecodable five are counted by reason and never deleted.
    let mut counted = 0.0;
    for reason in [
        "bad_base64",
        "bad_gzip",
        "bad_json",
        "empty",
        "bad_sns_envelope",
    ] {
        let labels = format!("source=\"stream-native\",reason=\"{reason}\"");
        let n = poll_metric(&daemon, "hookfan_source_undecodable_total", &labels).await;
        assert!(n >= 1.0, "{reason}: {n}");
        counted += 1.0;
    }
    assert_eq!(counted, 5.0);
    let mut daemon = daemon;
    daemon.stop_gracefully().await;
    let left = aws
        .until_visible(&queue, undecodable.len(), DELIVERY_TIMEOUT)
        .await;
    assert_eq!(
        left,
        undecodable.len(),
        "exactly the undecodable stay in the queue"
    );
    let logs = daemon.logs();
    let logged = logs
        .matches("cannot decode a message of the source queue")
        .count();
    assert_eq!(
        logged,
        undecodable.len(),
        "each undecodable message is logged once:\n{logs}"
    );
}

/// Waits for `name{labels}` to appear on `/metrics` (it is set as messages are handled).
async fn poll_metric(daemon: &Daemon, name: &str, labels: &str) -> f64 {
    let what = format!("{name}{{{labels}}} to appear");
    eventually(DELIVERY_TIMEOUT, &what, || metric(daemon, name, labels)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_only_config_has_no_webhook_port_and_delivers_from_the_queue() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("sources-only")).await;
    let mut receiver = Receiver::start().await;
    let mut config = aws_config()
        .top_level(source_block(
            "stream-native",
            &queue,
            &moto.endpoint(),
            "30s",
        ))
        .route(HttpRoute::new("everything", receiver.url()).paths(&["/sources/*"]));
    config.apps.clear();
    let daemon = Daemon::start(config).await;
    assert!(
        daemon.addr.ip().is_unspecified(),
        "no webhook listener: {}",
        daemon.addr
    );
    let body = fixture_file("message.new", "sqs_body.txt");
    send_all(&aws, &queue, &[body]).await;
    let got = receiver.next("the queued event").await;
    assert_eq!(
        got.body,
        fixture_file("message.new", "body.json").into_bytes()
    );
    assert_eq!(
        got.path, "/hook",
        "routed by its source path, /sources/stream-native"
    );
    assert_eq!(
        got.header("x-signature"),
        Some(""),
        "hookfan never signs what it could not check"
    );
    assert!(daemon.logs().contains("receiving from sources only"));

    // The operator sees the source's figures in /api/sources and `hookfan status`; the
    // queue's depth is read at start, then every 30 s.
    let depth = poll_metric(
        &daemon,
        "hookfan_source_queue_messages",
        "source=\"stream-native\"",
    )
    .await;
    assert!(depth <= 1.0, "{depth}");
    let (status, body) = get(&client(), format!("http://{}/api/sources", daemon.admin)).await;
    assert_eq!(status, 200, "{body}");
    let sources: serde_json::Value = serde_json::from_str(&body).unwrap();
    let source = &sources[0];
    assert_eq!(source["name"], "stream-native", "{body}");
    assert_eq!(source["queue_url"], queue.as_str());
    assert_eq!(source["running"], true);
    assert_eq!(
        (source["received"].as_u64(), source["stored"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(source["undecodable"], 0);
    assert!(source["queue_messages"].as_u64().is_some(), "{body}");
    let printed = daemon.cli(&["status"]).await;
    let row = printed
        .lines()
        .find(|l| l.starts_with("stream-native"))
        .unwrap_or_else(|| panic!("no source row in `hookfan status`:\n{printed}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..3], ["1", "1"], "received and stored: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queued_message_is_delivered_across_kill_9_mid_consumption() {
    const N: usize = 300;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("kill9")).await;
    let mut receiver = Receiver::start().await;
    let route = HttpRoute::new("everything", receiver.url());
    let mut daemon = Daemon::start(source_config(&queue, &moto.endpoint(), "3s", route)).await;
    let ids: Vec<String> = (0..N).map(|_| new_id()).collect();
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| String::from_utf8(event_body("message.new", id)).unwrap())
        .collect();
    send_all(&aws, &queue, &bodies).await;

    // Some are delivered, then the daemon dies with batches received and not yet deleted.
    let first = receiver.next_n(N / 5, "the first fifth").await;
    daemon.kill9();
    daemon.restart().await;

    // The queued events' own ids (their webhook ids are the messages' ids).
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for r in &first {
        *delivered.entry(event_id(r)).or_default() += 1;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !wanted.iter().all(|id| delivered.contains_key(id)) {
        let r = receiver.next_before(deadline).await.unwrap_or_else(|| {
            let missing = wanted
                .iter()
                .filter(|id| !delivered.contains_key(*id))
                .count();
            panic!("{missing} of {N} queued events never delivered after kill -9")
        });
        *delivered.entry(event_id(&r)).or_default() += 1;
    }
    let repeats: usize = delivered.values().map(|n| n - 1).sum();
    eprintln!("[test] {N} queued events delivered after kill -9, {repeats} repeats");
    // At least once; repeats only for what was in flight when the daemon died (its
    // undeleted batches and their deliveries): at most two receive loops of 10 messages,
    // plus the route's deliveries in flight.
    assert!(repeats <= 40, "{repeats} repeats");
}

/// CPU time the process has used so far (user + system), from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let close = stat.rfind(')').expect("comm in parentheses");
    let fields: Vec<u64> = stat[close + 1..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("a tick count"))
        .collect();
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// Waits until `name{labels}` reaches `at_least`.
async fn until_metric(daemon: &Daemon, name: &str, labels: &str, at_least: f64, within: Duration) {
    let what = format!("{name}{{{labels}}} to reach {at_least}");
    eventually(within, &what, || async {
        metric(daemon, name, labels).await.unwrap_or(0.0) >= at_least
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_source_queue_and_the_destination_loses_nothing_and_backs_off_without_spinning(
) {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("outage")).await;
    let mut gate = Gate::start(moto.addr()).await;
    let mut receiver = Receiver::start().await;
    // A receive cut by the outage may have taken messages whose answer never arrived: they
    // come back after the visibility timeout, kept short here.
    let route = HttpRoute::new("everything", receiver.url());
    let daemon = Daemon::start(source_config(&queue, &gate.url(), "3s", route)).await;
    let event = |id: &String| String::from_utf8(event_body("message.new", id)).unwrap();
    let before: Vec<String> = (0..10).map(|_| new_id()).collect();
    send_all(&aws, &queue, &before.iter().map(event).collect::<Vec<_>>()).await;
    receiver
        .next_n(before.len(), "the events queued before the outage")
        .await;

    // The queue and the destination both go away.
    gate.close().await;
    receiver.stop().await;
    let during: Vec<String> = (0..20).map(|_| new_id()).collect();
    send_all(&aws, &queue, &during.iter().map(event).collect::<Vec<_>>()).await;
    let cpu_before = cpu_time(daemon.pid());
    let started = tokio::time::Instant::now();
    // Three failed receives in a row: backoffs of about 1, 2 and 4 s.
    until_metric(
        &daemon,
        "hookfan_source_errors_total",
        "source=\"stream-native\",call=\"receive\"",
        3.0,
        Duration::from_secs(30),
    )
    .await;
    let (spent, waited) = (cpu_time(daemon.pid()) - cpu_before, started.elapsed());
    eprintln!("[test] {spent:?} of CPU in {waited:?} of outage");
    assert!(
        spent < Duration::from_millis(500),
        "the source spins while its queue is unreachable: {spent:?} of CPU in {waited:?}"
    );

    gate.open().await;
    receiver.restart().await;
    // Within the backoff (at most 30 s) plus the visibility timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut ids = HashSet::new();
    while ids.len() < during.len() {
        let r = receiver.next_before(deadline).await.unwrap_or_else(|| {
            panic!(
                "{} of {} events queued during the outage never arrived",
                during.len() - ids.len(),
                during.len()
            )
        });
        ids.insert(event_id(&r));
    }
    assert_eq!(ids, during.iter().cloned().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_receiving_and_every_message_is_stored_once_space_is_back() {
    const N: usize = 20;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("full-disk")).await;
    let mut receiver = Receiver::start().await;
    let route = HttpRoute::new("everything", receiver.url());
    let daemon = Daemon::start(source_config(&queue, &moto.endpoint(), "2s", route)).await;
    // Every write fails (EFBIG), as on a full copy-on-write filesystem.
    daemon.limit_file_size(Some(0));
    let ids: Vec<String> = (0..N).map(|_| new_id()).collect();
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| {
            serde_json::json!({
                "type": "message.new",
                "message": { "id": id, "text": "x".repeat(200 * 1024) },
            })
            .to_string()
        })
        .collect();
    send_all(&aws, &queue, &bodies).await;
    until_metric(
        &daemon,
        "hookfan_source_messages_total",
        "source=\"stream-native\",outcome=\"not_stored\"",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        metric(
            &daemon,
            "hookfan_source_messages_total",
            "source=\"stream-native\",outcome=\"stored\""
        )
        .await,
        Some(0.0),
        "nothing is stored, so nothing is deleted"
    );

    daemon.limit_file_size(None);
    let got = receiver.next_n(N, "every message once space is back").await;
    let delivered: HashSet<String> = got.iter().map(event_id).collect();
    assert_eq!(delivered, ids.iter().cloned().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_delivered_twice_is_stored_once_and_a_reload_stops_and_starts_a_source() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("reload")).await;
    let mut receiver = Receiver::start().await;
    let without_source = aws_config()
        .single_app()
        .route(HttpRoute::new("everything", receiver.url()));
    // A long poll cut by the stop may still take messages at moto: they return after 2 s.
    let with_source = without_source.clone().top_level(source_block(
        "stream-native",
        &queue,
        &moto.endpoint(),
        "2s",
    ));
    let daemon = Daemon::start(with_source.clone()).await;

    // SNS delivers a notification to the queue twice (at least once): one event.
    let envelope = sns_envelope("message.new");
    send_all(&aws, &queue, &[envelope.clone(), envelope]).await;
    let first = receiver.next("the notification").await;
    assert!(first.webhook_id().starts_with("sns:"), "{first:?}");
    until_metric(
        &daemon,
        "hookfan_source_messages_total",
        "source=\"stream-native\",outcome=\"duplicate\"",
        1.0,
        DELIVERY_TIMEOUT,
    )
    .await;

    // Removed by a reload: the source stops, and what arrives meanwhile stays in the queue.
    daemon.rewrite_config(&without_source);
    poll_until(Duration::from_secs(10), "the source to stop", || {
        daemon.logs().contains("stopping the source").then_some(())
    })
    .await;
    let ids: Vec<String> = (0..5).map(|_| new_id()).collect();
    let bodies: Vec<String> = ids
        .iter()
        .map(|id| String::from_utf8(event_body("message.new", id)).unwrap())
        .collect();
    send_all(&aws, &queue, &bodies).await;
    assert_eq!(
        aws.until_visible(&queue, ids.len(), DELIVERY_TIMEOUT).await,
        ids.len(),
        "a stopped source receives nothing"
    );

    // Back by a reload: everything that waited is delivered.
    daemon.rewrite_config(&with_source);
    let got = receiver.next_n(ids.len(), "what waited in the queue").await;
    let delivered: HashSet<String> = got.iter().map(event_id).collect();
    assert_eq!(delivered, ids.iter().cloned().collect::<HashSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_the_source_queue_are_routed_by_content_like_webhooks() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("source-content")).await;
    let mut receiver = Receiver::start().await;
    let route = HttpRoute::new("live", receiver.url())
        .matching(serde_json::json!({ "channel_type": ["livestream", "gaming"] }));
    let daemon = Daemon::start(source_config(&queue, &moto.endpoint(), "30s", route)).await;
    let event = |id: &str, channel_type: &str| {
        serde_json::json!({
            "type": "message.new",
            "channel_type": channel_type,
            "message": { "id": id, "text": "hi" },
        })
        .to_string()
    };
    let bodies = [
        event("q-live", "livestream"),
        event("q-team", "messaging"),
        event("q-game", "gaming"),
    ];
    send_all(&aws, &queue, &bodies).await;
    let got: HashSet<String> = receiver
        .next_n(2, "the livestream and gaming events")
        .await
        .iter()
        .map(event_id)
        .collect();
    assert_eq!(
        got,
        HashSet::from(["q-live".to_string(), "q-game".to_string()])
    );
    // The third is received, routed nowhere, and deleted from the queue like an unrouted
    // webhook is acknowledged.
    until_metric(
        &daemon,
        "hookfan_source_messages_total",
        "source=\"stream-native\",outcome=\"unrouted\"",
        1.0,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        metric(&daemon, "hookfan_events_routed_total", "route=\"live\"").await,
        Some(2.0)
    );
}
