//! The `sqs` and `sns` destinations against moto: what a consumer of the
//! queue receives (body, attributes, FIFO ids and order), SNS fan-out with
//! filter policies, oversize events, and delivery across AWS outages and
//! `kill -9`.
//!
//! Most tests share one moto server (each with its own queues and topics);
//! outages that must keep moto's state go through a [`Gate`] (a TCP
//! forwarder that can be closed), and the outage test that stops moto itself
//! has a server of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};

use crate::harness::*;
use crate::moto::*;

/// How long messages may take to reach a queue once AWS is reachable.
const AWS_DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// An `sqs` route to `queue_url` through `endpoint` (moto or a gate).
fn sqs_route(name: &str, queue_url: &str, endpoint: &str) -> AwsRoute {
    AwsRoute::sqs(name, queue_url)
        .endpoint_url(endpoint)
        .region(REGION)
}

/// An `sns` route to `topic_arn` through `endpoint` (moto or a gate).
fn sns_route(name: &str, topic_arn: &str, endpoint: &str) -> AwsRoute {
    AwsRoute::sns(name, topic_arn)
        .endpoint_url(endpoint)
        .region(REGION)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An event with extra top-level fields (`extra` must be an object). Without a type it
/// carries no `message` either: a body with a `message` and no `type` is a synchronous hook's
/// (Before-Message-Send), which push paths refuse.
fn event_with(ty: Option<&str>, id: &str, extra: Value) -> Vec<u8> {
    let mut event = json!({
        "created_at": "2026-05-08T00:00:00.000000Z",
        "user": { "id": "it-user" },
    });
    let what = json!({ "id": id, "text": format!("hello from {id}") });
    match ty {
        Some(ty) => {
            event["type"] = json!(ty);
            event["message"] = what;
        }
        None => event["untyped"] = what,
    }
    for (k, v) in extra.as_object().expect("extra is an object") {
        event[k] = v.clone();
    }
    serde_json::to_vec(&event).expect("serialize event")
}

/// A `message.new` event whose JSON is about `size` bytes (padded text).
fn event_of_size(id: &str, size: usize) -> Vec<u8> {
    let base = event_with(Some("message.new"), id, json!({ "padding": "" }));
    let pad = size.saturating_sub(base.len());
    event_with(
        Some("message.new"),
        id,
        json!({ "padding": "p".repeat(pad) }),
    )
}

/// Receives (and deletes) until every id in `ids` was received at least
/// once; returns everything received, repeats and other ids included.
/// Panics naming the missing ids when `within` passes.
async fn receive_ids(
    aws: &Aws,
    queue_url: &str,
    ids: &HashSet<String>,
    within: Duration,
    what: &str,
) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut got: Vec<Received> = Vec::new();
    loop {
        let seen: HashSet<&str> = got.iter().map(Received::webhook_id).collect();
        let mut missing: Vec<&String> = ids.iter().filter(|i| !seen.contains(i.as_str())).collect();
        if missing.is_empty() {
            return got;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            missing.sort();
            panic!(
                "{queue_url}: {} of {} messages never arrived within {within:?} ({what}); \
                 missing webhook ids: {missing:?}; received {} messages",
                missing.len(),
                ids.len(),
                got.len()
            );
        }
        got.extend(aws.receive_all(queue_url, missing.len(), left).await);
    }
}

/// Receives (and deletes) until the message with `webhook_id` arrives;
/// returns everything received meanwhile, the marker included.
async fn receive_until_marker(aws: &Aws, queue_url: &str, webhook_id: &str) -> Vec<Received> {
    let deadline = Instant::now() + AWS_DELIVERY_TIMEOUT;
    let mut got: Vec<Received> = Vec::new();
    while !got.iter().any(|m| m.webhook_id() == webhook_id) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{queue_url}: marker {webhook_id} did not arrive within {AWS_DELIVERY_TIMEOUT:?}; \
             received meanwhile: {:?}",
            got.iter().map(Received::webhook_id).collect::<Vec<_>>()
        );
        got.extend(aws.receive_all(queue_url, 1, left).await);
    }
    got
}

/// Messages per `webhook_id` attribute.
fn count_by_webhook_id(messages: &[Received]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in messages {
        *counts.entry(m.webhook_id().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Standard base64 (with `=` padding, no line breaks).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("{c:?} is not a standard base64 character in {text:?}"),
        }
    };
    let bytes = text.as_bytes();
    assert!(
        bytes.len().is_multiple_of(4),
        "base64 text of length {} (not a multiple of 4)",
        bytes.len()
    );
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        assert!(pad <= 2, "bad base64 padding in {text:?}");
        let n = chunk[..4 - pad]
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | value(c) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the body is gzip");
    out
}

/// The attributes a message must carry besides `webhook_id` and
/// `received_at`.
struct Expected {
    event_type: Option<&'static str>,
    api_key: &'static str,
    signature: String,
}

impl Expected {
    fn new(event_type: Option<&'static str>, api_key: &'static str, signature: String) -> Self {
        Expected {
            event_type,
            api_key,
            signature,
        }
    }
}

/// Asserts the five String attributes of `m` (no `event_type` when the
/// expected one is `None`); `received_at` within `received_between` (Unix
/// seconds, 2 s of slack).
fn assert_attributes(m: &Received, id: &str, expected: &Expected, received_between: (i64, i64)) {
    let Expected {
        event_type,
        api_key,
        signature,
    } = expected;
    for (name, (data_type, _)) in &m.attributes {
        assert_eq!(
            data_type, "String",
            "{id}: attribute {name} must be of type String: {m:?}"
        );
    }
    assert_eq!(m.attr("webhook_id"), Some(id), "webhook_id of {m:?}");
    assert_eq!(m.attr("event_type"), *event_type, "event_type of {m:?}");
    assert_eq!(m.attr("api_key"), Some(*api_key), "api_key of {m:?}");
    assert_eq!(
        m.attr("signature"),
        Some(signature.as_str()),
        "signature of {m:?}"
    );
    let received_at = m
        .attr("received_at")
        .unwrap_or_else(|| panic!("{id}: no received_at attribute: {m:?}"));
    let t = parse_rfc3339(received_at)
        .unwrap_or_else(|| panic!("{id}: received_at {received_at:?} is not RFC 3339"));
    let (from, to) = received_between;
    assert!(
        (from - 2..=to + 2).contains(&t),
        "{id}: received_at {received_at} is not the time of receipt \
         (between {from} and {to} Unix seconds)"
    );
    let known = [
        "event_type",
        "webhook_id",
        "api_key",
        "signature",
        "received_at",
    ];
    let extra: Vec<&String> = m
        .attributes
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    if !extra.is_empty() {
        eprintln!("[test] {id}: attributes beyond the five: {extra:?}");
    }
}

// ---------------------------------------------------------------------------
// Body and attributes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_message_is_the_posted_json_byte_for_byte_with_five_string_attributes() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("attrs")).await;
    let mut daemon =
        Daemon::start(aws_config().route(sqs_route("all-events", &queue, &moto.endpoint()))).await;
    let client = client();
    let started = now_secs();

    // id -> (expected body, attributes)
    let mut expected: HashMap<String, (Vec<u8>, Expected)> = HashMap::new();

    // Odd spacing, key order, escapes and a trailing newline: anything that
    // re-serializes the JSON changes these bytes.
    let odd = new_id();
    let body = "{ \"type\" : \"message.new\",\n  \"z\": 1, \"a\": \"caf\\u00e9 é 😀 \\\"q\\\"\",\
                \"n\": 1.50e0, \"created_at\":\"2026-05-08T00:00:00Z\" ,\"nested\":{\"b\":[1, 2 ,3]}}\n"
        .as_bytes()
        .to_vec();
    post_ok(&client, &daemon.url(), &odd, &body).await;
    expected.insert(
        odd.clone(),
        (
            body.clone(),
            Expected::new(Some("message.new"), API_KEY, sign(SECRET, &body)),
        ),
    );

    // Posted gzipped: the message carries the JSON, not the gzip.
    let fixture = valid_fixtures()
        .into_iter()
        .find(|f| f.name == "reaction.new")
        .expect("reaction.new fixture");
    let gzipped = new_id();
    let mut headers = stream_headers(&gzipped, &fixture.signature).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = post_webhook(&client, &daemon.url(), fixture.gz.clone(), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.insert(
        gzipped.clone(),
        (
            fixture.body.clone(),
            Expected::new(Some("reaction.new"), API_KEY, fixture.signature.clone()),
        ),
    );

    // No `type`: no event_type attribute.
    let untyped = new_id();
    let body = event_with(None, &untyped, json!({ "cid": "messaging:untyped" }));
    post_ok(&client, &daemon.url(), &untyped, &body).await;
    expected.insert(
        untyped.clone(),
        (
            body.clone(),
            Expected::new(None, API_KEY, sign(SECRET, &body)),
        ),
    );

    // The other app: its own api_key and signature.
    let other = new_id();
    let body = event_body("user.banned", &other);
    let sig = sign(OTHER_SECRET, &body);
    let answer = post_webhook(
        &client,
        &daemon.url(),
        body.clone(),
        &[
            ("x-webhook-id", other.as_str()),
            ("x-webhook-attempt", "1"),
            ("x-api-key", OTHER_KEY),
            ("x-signature", sig.as_str()),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.insert(
        other.clone(),
        (body, Expected::new(Some("user.banned"), OTHER_KEY, sig)),
    );

    let ids: HashSet<String> = expected.keys().cloned().collect();
    let mut got = receive_ids(&aws, &queue, &ids, AWS_DELIVERY_TIMEOUT, "all four events").await;
    let finished = now_secs();
    // Stopped, the daemon sends nothing more: whatever is left is a repeat.
    daemon.stop_gracefully().await;
    got.extend(aws.drain(&queue).await);
    let counts = count_by_webhook_id(&got);
    assert!(
        counts.values().all(|&n| n == 1) && counts.len() == expected.len(),
        "each event exactly once: {counts:?}"
    );
    for m in &got {
        let id = m.webhook_id();
        let (body, attrs) = &expected[id];
        assert_eq!(
            m.body.as_bytes(),
            body.as_slice(),
            "{id}: the body must be the posted JSON byte for byte; got {:?}",
            m.body
        );
        assert_attributes(m, id, attrs, (started, finished));
        if attrs.event_type.is_none() {
            assert!(
                !m.attributes.contains_key("event_type"),
                "{id}: an event without type must have no event_type attribute: {m:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_a_webhook_was_posted_to_is_a_path_attribute_unless_it_is_the_root() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("paths")).await;
    let daemon =
        Daemon::start(aws_config().route(sqs_route("all-events", &queue, &moto.endpoint()))).await;
    let client = client();
    let callback = std::fs::read(format!(
        "{}/tests/fixtures/sync-hooks/pending_message_pass_on.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("pending-message fixture");

    // (posted to, body, expected path attribute, expected query attribute)
    let (pending, root, queried) = (new_id(), new_id(), new_id());
    let cases = [
        (
            "pending/PassOnPendingMessage",
            &pending,
            callback.clone(),
            Some("/pending/PassOnPendingMessage"),
            None,
        ),
        ("", &root, event_body("message.new", &root), None, None),
        (
            "?app=eu",
            &queried,
            event_body("message.new", &queried),
            None,
            Some("app=eu"),
        ),
    ];
    for (path, id, body, _, _) in &cases {
        post_ok(&client, &daemon.url_path(path), id, body).await;
    }
    let ids: HashSet<String> = cases.iter().map(|c| c.1.clone()).collect();
    let got = receive_ids(&aws, &queue, &ids, AWS_DELIVERY_TIMEOUT, "three events").await;
    for (_, id, body, path, query) in &cases {
        let m = got
            .iter()
            .find(|m| m.webhook_id() == id.as_str())
            .expect("received");
        assert_eq!(m.body.as_bytes(), body.as_slice(), "{id}");
        assert_eq!(m.attr("path"), *path, "{id}: {m:?}");
        assert_eq!(m.attr("query"), *query, "{id}: {m:?}");
        if let Some((data_type, _)) = m.attributes.get("path") {
            assert_eq!(data_type, "String");
        }
    }
}

/// With tracing on, a consumer can continue the webhook's trace: the message carries the
/// delivery attempt's `traceparent` (and the sender's `tracestate`) as attributes. An
/// attempt AWS refuses has AWS's error code on its span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_webhooks_message_carries_its_traceparent_and_tracestate_attributes() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("traced")).await;
    let missing = queue.replace("traced", "never-created");
    let collector = Collector::start().await;
    let config = aws_config()
        .route(sqs_route("all-events", &queue, &moto.endpoint()))
        .route(sqs_route("nowhere", &missing, &moto.endpoint()))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let daemon = Daemon::start(config).await;
    let id = new_id();
    let body = event_body("message.new", &id);
    let signature = sign(SECRET, &body);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sender = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let mut headers = stream_headers(&id, &signature).to_vec();
    headers.extend([
        ("traceparent", sender.as_str()),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ]);
    let answer = post_webhook(&client(), &daemon.url(), body, &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let ids = HashSet::from([id.clone()]);
    let got = receive_ids(&aws, &queue, &ids, AWS_DELIVERY_TIMEOUT, "the traced event").await;
    let message = got.iter().find(|m| m.webhook_id() == id).expect("received");
    assert_eq!(
        message.attr("tracestate"),
        Some("rojo=00f067aa0ba902b7"),
        "{message:?}"
    );
    let traceparent = message
        .attr("traceparent")
        .expect("a traceparent attribute");
    let span = collector
        .await_spans("hookfan.deliver", "hookfan.route", "all-events", 1)
        .await
        .remove(0);
    assert_eq!(span.kind, 4, "SPAN_KIND_PRODUCER");
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", hex(&span.span_id)),
        "the attempt's own span is the consumer's parent"
    );
    let refused = collector
        .await_spans("hookfan.deliver", "hookfan.route", "nowhere", 1)
        .await
        .remove(0);
    let code = attribute(&refused, "error.type").expect("AWS's error code");
    let error = attribute(&refused, "hookfan.error").unwrap_or_default();
    assert!(error.starts_with(&format!("{code}: ")), "{code} / {error}");
    assert_eq!(
        attribute(&refused, "hookfan.outcome").as_deref(),
        Some("retried")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_compressed_body_is_base64_of_gzip_of_the_original_json() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("compressed")).await;
    // No `region` in the route: the one of the environment (AWS_REGION).
    let daemon = Daemon::start(
        aws_config().route(
            AwsRoute::sqs("compressed", &queue)
                .endpoint_url(moto.endpoint())
                .body("stream_compressed"),
        ),
    )
    .await;
    let client = client();
    let mut expected: HashMap<String, Vec<u8>> = HashMap::new();

    let plain = new_id();
    let body =
        b"{\"type\":\"message.new\", \"text\":\"caf\\u00e9 \xc3\xa9\" ,\"n\":1.50e0}\n".to_vec();
    post_ok(&client, &daemon.url(), &plain, &body).await;
    expected.insert(plain, body);

    let fixture = valid_fixtures()
        .into_iter()
        .find(|f| f.name == "message.new")
        .expect("message.new fixture");
    let gzipped = new_id();
    let mut headers = stream_headers(&gzipped, &fixture.signature).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = post_webhook(&client, &daemon.url(), fixture.gz.clone(), &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.insert(gzipped, fixture.body.clone());

    let ids: HashSet<String> = expected.keys().cloned().collect();
    let got = receive_ids(&aws, &queue, &ids, AWS_DELIVERY_TIMEOUT, "both events").await;
    for m in &got {
        let id = m.webhook_id();
        let decoded = gunzip(&base64_decode(&m.body));
        assert_eq!(
            decoded,
            expected[id],
            "{id}: base64 -> gunzip must give the original JSON; got {:?}",
            String::from_utf8_lossy(&decoded)
        );
        assert_eq!(m.attr("event_type"), Some("message.new"), "{m:?}");
    }
}

// ---------------------------------------------------------------------------
// SNS
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_subscription_filter_on_event_type_delivers_only_matching_events_byte_for_byte() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let topic = aws.create_topic(&unique_name("fanout")).await;
    // Raw delivery, filtered on the event_type attribute.
    let filtered = aws.create_queue(&unique_name("filtered")).await;
    let policy = json!({ "event_type": ["message.flagged", { "prefix": "moderation." }] });
    aws.subscribe_queue(&topic, &filtered, true, Some(&policy))
        .await;
    // Envelopes, unfiltered: every event, and the witness that every publish
    // has happened (moto fans out inside Publish).
    let envelopes = aws.create_queue(&unique_name("envelopes")).await;
    aws.subscribe_queue(&topic, &envelopes, false, None).await;

    let mut daemon =
        Daemon::start(aws_config().route(sns_route("to-topic", &topic, &moto.endpoint()))).await;
    let client = client();

    // id -> (body, type)
    let mut posted: HashMap<String, (Vec<u8>, Option<String>)> = HashMap::new();
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
        let ty = (!f.expected_type.is_empty()).then_some(f.expected_type.clone());
        posted.insert(id, (f.body.clone(), ty));
    }
    let flagged = new_id();
    let body = event_body("message.flagged", &flagged);
    post_ok(&client, &daemon.url(), &flagged, &body).await;
    posted.insert(flagged, (body, Some("message.flagged".to_owned())));
    let untyped = new_id();
    let body = event_with(None, &untyped, json!({ "note": "no type" }));
    post_ok(&client, &daemon.url(), &untyped, &body).await;
    posted.insert(untyped, (body, None));

    let matching: HashSet<String> = posted
        .iter()
        .filter(|(_, (_, ty))| {
            ty.as_deref()
                .is_some_and(|t| t == "message.flagged" || t.starts_with("moderation."))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        matching.len(),
        2,
        "message.flagged and the moderation.flagged fixture"
    );

    // Every event, as SNS envelopes whose Message is the body.
    let ids: HashSet<String> = posted.keys().cloned().collect();
    let deadline = Instant::now() + AWS_DELIVERY_TIMEOUT;
    let mut notifications: HashMap<String, usize> = HashMap::new();
    while notifications.len() < ids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = aws.receive_all(&envelopes, ids.len(), left).await;
        assert!(
            !batch.is_empty() || !left.is_zero(),
            "{} of {} notifications arrived within {AWS_DELIVERY_TIMEOUT:?}; missing: {:?}",
            notifications.len(),
            ids.len(),
            ids.iter()
                .filter(|i| !notifications.contains_key(*i))
                .collect::<Vec<_>>()
        );
        for m in batch {
            let envelope: Value = serde_json::from_str(&m.body).unwrap_or_else(|e| {
                panic!("with raw delivery off the body is SNS's JSON envelope ({e}): {m:?}")
            });
            assert_eq!(envelope["Type"], "Notification", "{envelope}");
            assert_eq!(envelope["TopicArn"], topic.as_str(), "{envelope}");
            let id = envelope["MessageAttributes"]["webhook_id"]["Value"]
                .as_str()
                .unwrap_or_else(|| panic!("no webhook_id in the envelope: {envelope}"))
                .to_owned();
            let (body, ty) = posted
                .get(&id)
                .unwrap_or_else(|| panic!("unexpected webhook_id {id}: {envelope}"));
            assert_eq!(
                envelope["Message"].as_str().map(str::as_bytes),
                Some(body.as_slice()),
                "{id}: the envelope's Message must be the posted JSON byte for byte"
            );
            assert_eq!(
                envelope["MessageAttributes"]["event_type"]["Value"].as_str(),
                ty.as_deref(),
                "{id}: event_type attribute in {envelope}"
            );
            *notifications.entry(id).or_insert(0) += 1;
        }
    }

    // Every event is published. Once the daemon has stopped, every Publish
    // call it made has returned, so moto has also fanned each one out to the
    // filtered queue: it holds exactly the matches.
    daemon.stop_gracefully().await;
    let got = aws.drain(&filtered).await;
    let counts = count_by_webhook_id(&got);
    let got_ids: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(
        got_ids, matching,
        "the filter policy must let through exactly message.flagged and moderation.*"
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for m in &got {
        let id = m.webhook_id();
        let (body, ty) = &posted[id];
        assert_eq!(
            m.body.as_bytes(),
            body.as_slice(),
            "{id}: with raw delivery the body must be the posted JSON byte for byte"
        );
        assert_eq!(m.attr("event_type"), ty.as_deref(), "{m:?}");
        assert_eq!(m.attr("api_key"), Some(API_KEY), "{m:?}");
    }
}

// ---------------------------------------------------------------------------
// FIFO
// ---------------------------------------------------------------------------

/// The group of the `i`-th event of the order test: two channels, and
/// events without `cid` (the template's fallback).
fn group_of(i: usize) -> Option<&'static str> {
    match i % 3 {
        0 => Some("messaging:room-a"),
        1 => Some("messaging:room-b"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queue_keeps_each_message_group_in_order_across_an_outage_and_kill_9() {
    const N: usize = 51;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws
        .create_fifo_queue(&format!("{}.fifo", unique_name("order")))
        .await;
    let mut gate = Gate::start(moto.addr()).await;
    let mut daemon = Daemon::start(
        aws_config().route(
            sqs_route("ordered", &queue, &gate.url())
                .message_group_id("{cid|no-channel}")
                .event_types(&["message.new"]),
        ),
    )
    .await;
    let client = client();
    let run = new_id();
    let ids: Vec<String> = (0..N).map(|i| format!("order-{run}-{i:03}")).collect();
    let event = |i: usize| {
        let extra = match group_of(i) {
            Some(cid) => json!({ "cid": cid, "seq": i }),
            None => json!({ "seq": i }),
        };
        (
            ids[i].as_str(),
            event_with(Some("message.new"), &ids[i], extra),
        )
    };

    // Delivered as they come...
    for i in 0..15 {
        let (id, body) = event(i);
        post_ok(&client, &daemon.url(), id, &body).await;
    }
    // ...then retried while SQS is unreachable...
    gate.close().await;
    for i in 15..30 {
        let (id, body) = event(i);
        post_ok(&client, &daemon.url(), id, &body).await;
    }
    // ...across a kill -9 and a restart...
    daemon.kill9();
    daemon.restart().await;
    for i in 30..40 {
        let (id, body) = event(i);
        post_ok(&client, &daemon.url(), id, &body).await;
    }
    // ...and once SQS is back, everything is sent, the held-back events first.
    gate.open().await;
    for i in 40..N {
        let (id, body) = event(i);
        post_ok(&client, &daemon.url(), id, &body).await;
    }

    // Receive only once all are in the queue: moto deduplicates only against
    // messages still in it, unlike SQS (which remembers ids for 5 minutes).
    aws.until_visible(&queue, N, AWS_DELIVERY_TIMEOUT).await;
    let mut got = aws.receive_all(&queue, N, AWS_DELIVERY_TIMEOUT).await;
    daemon.stop_gracefully().await;
    got.extend(aws.drain(&queue).await);

    let counts = count_by_webhook_id(&got);
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "a webhook id reached the FIFO queue more than once: {repeated:?}"
    );
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let got_ids: HashSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(got_ids, expected, "every event exactly once");

    let mut order: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for m in &got {
        let event: Value = serde_json::from_str(&m.body).expect("body is JSON");
        let seq = event["seq"].as_u64().expect("seq") as usize;
        let group = group_of(seq).unwrap_or("no-channel");
        assert_eq!(
            m.system("MessageGroupId"),
            Some(group),
            "event {seq}: MessageGroupId from {{cid|no-channel}}: {m:?}"
        );
        assert_eq!(
            m.system("MessageDeduplicationId"),
            Some(ids[seq].as_str()),
            "event {seq}: MessageDeduplicationId is the webhook id: {m:?}"
        );
        order.entry(group.to_owned()).or_default().push(seq);
    }
    for (group, seqs) in &order {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs, &sorted,
            "group {group} must be received in the order its events were posted"
        );
    }
    assert_eq!(order.len(), 3, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_deduplication_id_is_the_webhook_id_so_two_instances_enqueue_a_webhook_once() {
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws
        .create_fifo_queue(&format!("{}.fifo", unique_name("dedup")))
        .await;
    let config = || {
        aws_config()
            .route(sqs_route("fifo", &queue, &moto.endpoint()).message_group_id("{cid|no-channel}"))
    };
    // Two instances behind one load balancer: Stream's retry of a webhook
    // may reach the other one, whose own dedup has not seen it.
    let first = Daemon::start(config()).await;
    let second = Daemon::start(config()).await;
    let client = client();
    let run = new_id();
    let ids = [
        format!("plain-{run}"),
        // Longer than SQS's 128 characters.
        format!("long-{run}-{}", "x".repeat(200)),
        // A space is not allowed in a deduplication id.
        format!("with spaces {run}"),
    ];
    let bodies: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| event_with(Some("message.new"), id, json!({ "cid": "messaging:dedup" })))
        .collect();
    for (id, body) in ids.iter().zip(&bodies) {
        post_ok(&client, &first.url(), id, body).await;
    }
    aws.until_visible(&queue, ids.len(), AWS_DELIVERY_TIMEOUT)
        .await;
    for (id, body) in ids.iter().zip(&bodies) {
        post_ok(&client, &second.url(), id, body).await;
    }
    // Same group, sent after the repeats: once it is in, so are they.
    let marker = format!("marker-{run}");
    let body = event_with(
        Some("message.new"),
        &marker,
        json!({ "cid": "messaging:dedup" }),
    );
    post_ok(&client, &second.url(), &marker, &body).await;
    // moto, unlike SQS, forgets a deduplication id once its message is deleted: read nothing
    // until the second instance has sent everything (its marker comes after its repeats).
    aws.until_visible(&queue, ids.len() + 1, AWS_DELIVERY_TIMEOUT)
        .await;
    let got = receive_until_marker(&aws, &queue, &marker).await;

    let counts = count_by_webhook_id(&got);
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id:?} was posted to both instances and must be enqueued once: {counts:?}"
        );
    }
    assert_eq!(counts.len(), ids.len() + 1, "{counts:?}");
    for m in &got {
        let id = m.webhook_id();
        let dedup = m
            .system("MessageDeduplicationId")
            .unwrap_or_else(|| panic!("{id}: no MessageDeduplicationId: {m:?}"));
        assert!(
            (1..=128).contains(&dedup.len()) && dedup.chars().all(|c| c.is_ascii_graphic()),
            "{id}: {dedup:?} is not a deduplication id SQS accepts (1-128 letters, digits, \
             punctuation)"
        );
        if id == ids[0] || id == marker {
            assert_eq!(dedup, id, "a valid webhook id is used as it is");
        } else {
            assert_ne!(dedup, id, "{id:?} cannot be used as it is");
        }
        assert_eq!(m.system("MessageGroupId"), Some("messaging:dedup"), "{m:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_fifo_topic_passes_group_order_and_deduplication_ids_to_a_fifo_queue() {
    const N: usize = 12;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let name = unique_name("fifo-topic");
    let topic = aws.create_fifo_topic(&format!("{name}.fifo")).await;
    let queue = aws.create_fifo_queue(&format!("{name}-q.fifo")).await;
    aws.subscribe_queue(&topic, &queue, true, None).await;
    let daemon = Daemon::start(aws_config().route(
        sns_route("to-fifo-topic", &topic, &moto.endpoint()).message_group_id("{channel.cid}"),
    ))
    .await;
    let client = client();
    let run = new_id();
    let ids: Vec<String> = (0..N).map(|i| format!("fifo-topic-{run}-{i:02}")).collect();
    let group = |i: usize| {
        if i.is_multiple_of(2) {
            "messaging:even"
        } else {
            "messaging:odd"
        }
    };
    for (i, id) in ids.iter().enumerate() {
        let body = event_with(
            Some("message.new"),
            id,
            json!({ "channel": { "cid": group(i) }, "seq": i }),
        );
        post_ok(&client, &daemon.url(), id, &body).await;
    }
    aws.until_visible(&queue, N, AWS_DELIVERY_TIMEOUT).await;
    let got = aws.receive_all(&queue, N, AWS_DELIVERY_TIMEOUT).await;
    let counts = count_by_webhook_id(&got);
    assert_eq!(counts.len(), N, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let mut order: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for m in &got {
        let event: Value = serde_json::from_str(&m.body).expect("body is JSON");
        let seq = event["seq"].as_u64().expect("seq") as usize;
        assert_eq!(m.webhook_id(), ids[seq]);
        assert_eq!(
            m.system("MessageGroupId"),
            Some(group(seq)),
            "MessageGroupId from {{channel.cid}}: {m:?}"
        );
        assert_eq!(
            m.system("MessageDeduplicationId"),
            Some(ids[seq].as_str()),
            "{m:?}"
        );
        order.entry(group(seq)).or_default().push(seq);
    }
    for (group, seqs) in &order {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "group {group} out of order: {seqs:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// The numbers in `text` (to find a size in an error message).
fn numbers_in(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_event_is_dead_lettered_and_the_rest_of_its_batch_delivered() {
    // SQS takes up to 1 MiB (moto 5.2.5 checks the body against 1 MiB and
    // refuses the whole batch when one entry is over); SNS up to 256 KiB.
    const HUGE: usize = 1024 * 1024 + 4096;
    const BIG: usize = 300 * 1024;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("sizes")).await;
    let topic = aws.create_topic(&unique_name("sizes")).await;
    let from_topic = aws.create_queue(&unique_name("sizes-sns")).await;
    aws.subscribe_queue(&topic, &from_topic, true, None).await;
    let mut gate = Gate::start(moto.addr()).await;
    let mut daemon = Daemon::start(
        aws_config()
            .max_body_bytes(4 * 1024 * 1024)
            .route(sqs_route("to-sqs", &queue, &gate.url()))
            .route(sns_route("to-sns", &topic, &gate.url())),
    )
    .await;
    let client = client();
    let run = new_id();
    let small = [format!("small-1-{run}"), format!("small-2-{run}")];
    let big = format!("big-{run}");
    let huge = format!("huge-{run}");
    let bodies: HashMap<String, Vec<u8>> = [
        (small[0].clone(), event_body("message.new", &small[0])),
        (big.clone(), event_of_size(&big, BIG)),
        (huge.clone(), event_of_size(&huge, HUGE)),
        (small[1].clone(), event_body("message.new", &small[1])),
    ]
    .into_iter()
    .collect();
    assert!(bodies[&huge].len() > 1024 * 1024);
    assert!(bodies[&big].len() > 256 * 1024 && bodies[&big].len() < 1024 * 1024 - 4096);

    // Held while AWS is unreachable, so that they leave in one batch.
    gate.close().await;
    for id in [&small[0], &big, &huge, &small[1]] {
        post_ok(&client, &daemon.url(), id, &bodies[id]).await;
    }
    gate.open().await;

    let to_sqs: HashSet<String> = [small[0].clone(), big.clone(), small[1].clone()].into();
    let got = receive_ids(
        &aws,
        &queue,
        &to_sqs,
        AWS_DELIVERY_TIMEOUT,
        "the events SQS takes",
    )
    .await;
    for m in &got {
        let id = m.webhook_id();
        assert_eq!(
            m.body.as_bytes(),
            bodies[id].as_slice(),
            "{id}: body byte for byte"
        );
    }
    let to_sns: HashSet<String> = small.iter().cloned().collect();
    let got_sns = receive_ids(
        &aws,
        &from_topic,
        &to_sns,
        AWS_DELIVERY_TIMEOUT,
        "the events SNS takes",
    )
    .await;

    daemon.stop_gracefully().await;
    let sqs_all: Vec<Received> = got.into_iter().chain(aws.drain(&queue).await).collect();
    let sns_all: Vec<Received> = got_sns
        .into_iter()
        .chain(aws.drain(&from_topic).await)
        .collect();
    let sqs_counts = count_by_webhook_id(&sqs_all);
    let sns_counts = count_by_webhook_id(&sns_all);
    assert_eq!(
        sqs_counts.keys().cloned().collect::<HashSet<_>>(),
        to_sqs,
        "SQS gets every event but the one over 1 MiB: {sqs_counts:?}"
    );
    assert_eq!(
        sns_counts.keys().cloned().collect::<HashSet<_>>(),
        to_sns,
        "SNS gets every event but the ones over 256 KiB: {sns_counts:?}"
    );

    let dead = daemon.dead_letters(None).await;
    let find = |route: &str, id: &str| {
        dead.iter()
            .find(|d| d["route"] == route && d["webhook_id"] == id)
            .cloned()
    };
    for (route, id, size) in [
        ("to-sqs", &huge, HUGE),
        ("to-sns", &huge, HUGE),
        ("to-sns", &big, BIG),
    ] {
        let entry = find(route, id)
            .unwrap_or_else(|| panic!("{id} must be dead-lettered on {route}; got {dead:#?}"));
        let error = entry["error"].to_string();
        assert!(
            numbers_in(&error).iter().any(|&n| n as usize >= size),
            "{route}: the error must give the event's size (at least {size} bytes): {entry}"
        );
    }
    for (route, id) in [
        ("to-sqs", &small[0]),
        ("to-sqs", &small[1]),
        ("to-sqs", &big),
        ("to-sns", &small[0]),
        ("to-sns", &small[1]),
    ] {
        assert!(
            find(route, id).is_none(),
            "{id} was delivered on {route} and must not be dead-lettered: {dead:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batches_stay_within_the_1_mib_request_limit() {
    // Five 300 KiB events: at most three fit in one SendMessageBatch, which
    // moto (like SQS) refuses whole when its bodies add up to over 1 MiB.
    const EVENTS: usize = 5;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("batch-bytes")).await;
    let mut gate = Gate::start(moto.addr()).await;
    let daemon = Daemon::start(
        aws_config()
            .max_body_bytes(4 * 1024 * 1024)
            .route(sqs_route("to-sqs", &queue, &gate.url())),
    )
    .await;
    let client = client();
    let mut bodies = HashMap::new();
    gate.close().await;
    for i in 0..EVENTS {
        let id = format!("big-{i}-{}", new_id());
        let body = event_of_size(&id, 300 * 1024);
        post_ok(&client, &daemon.url(), &id, &body).await;
        bodies.insert(id, body);
    }
    gate.open().await;
    let ids: HashSet<String> = bodies.keys().cloned().collect();
    let got = receive_ids(
        &aws,
        &queue,
        &ids,
        AWS_DELIVERY_TIMEOUT,
        "five 300 KiB events",
    )
    .await;
    for m in &got {
        assert_eq!(m.body.as_bytes(), bodies[m.webhook_id()].as_slice());
    }
}

// ---------------------------------------------------------------------------
// Outages and crashes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_posted_while_aws_is_down_are_acknowledged_fast_and_delivered_when_it_is_back() {
    const N: usize = 30;
    let moto = Moto::dedicated().await;
    let queue_name = unique_name("outage");
    let queue = moto.client().await.create_queue(&queue_name).await;
    // Retries every 50-250 ms while moto is down.
    let daemon = Daemon::start(
        aws_config().route(sqs_route("to-sqs", &queue, &moto.endpoint()).backoff("50ms", "250ms")),
    )
    .await;
    let client = client();

    // It works before the outage.
    let before = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &before,
        &event_body("message.new", &before),
    )
    .await;
    receive_ids(
        &moto.client().await,
        &queue,
        &[before].into(),
        AWS_DELIVERY_TIMEOUT,
        "the event before the outage",
    )
    .await;

    moto.stop().await;
    let mut ids = HashSet::new();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for _ in 0..N {
        let id = new_id();
        let t = Instant::now();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        slowest = slowest.max(t.elapsed());
        ids.insert(id);
    }
    eprintln!(
        "[test] {N} events acknowledged during the outage in {:?} (slowest {slowest:?})",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "ingest must not wait for AWS: the slowest POST took {slowest:?}"
    );

    // moto comes back empty: make the queue again at once (same name, same
    // URL) so that the daemon's next retry finds it.
    moto.start().await;
    let aws = moto.client().await;
    let again = aws.create_queue(&queue_name).await;
    assert_eq!(again, queue, "the recreated queue has the same URL");
    assert!(queue.contains(ACCOUNT), "{queue}");
    receive_ids(
        &aws,
        &queue,
        &ids,
        AWS_DELIVERY_TIMEOUT,
        "events posted during the outage",
    )
    .await;
}

/// Where the clients of the crash test post: the `generation`-th daemon.
#[derive(Clone, Debug)]
struct Target {
    generation: u32,
    url: String,
}

/// Posts `ids` one after another; reports each acknowledged id on `acked`.
/// A request that fails (the daemon is gone) is retried against the next
/// daemon, as Stream would.
async fn post_all(
    client: reqwest::Client,
    ids: Vec<String>,
    mut target: watch::Receiver<Target>,
    acked: mpsc::UnboundedSender<String>,
) {
    for id in ids {
        let body = event_body("message.new", &id);
        let sig = sign(SECRET, &body);
        loop {
            let Target { generation, url } = target.borrow_and_update().clone();
            let outcome = send(
                &client,
                reqwest::Method::POST,
                &url,
                body.clone(),
                &stream_headers(&id, &sig),
            )
            .await;
            match outcome {
                Ok(answer) if answer.status == 200 => {
                    let _ = acked.send(id.clone());
                    break;
                }
                Ok(answer) if answer.status != 503 => {
                    panic!("{id}: unexpected answer from daemon #{generation}: {answer:?}")
                }
                _ => {}
            }
            timeout(
                Duration::from_secs(20),
                target.wait_for(|t| t.generation > generation),
            )
            .await
            .unwrap_or_else(|_| panic!("{id} failed and no newer daemon came within 20s"))
            .expect("the test keeps the target sender");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_reaches_the_queue_across_kill_9_mid_delivery() {
    const TOTAL: usize = 200;
    const TASKS: usize = 4;
    const KILL_AFTER_ACKS: usize = 70;
    let moto = Moto::shared().await;
    let aws = moto.client().await;
    let queue = aws.create_queue(&unique_name("crash")).await;
    let mut daemon = Daemon::start(
        aws_config().route(sqs_route("to-sqs", &queue, &moto.endpoint()).concurrency(4)),
    )
    .await;

    let (target, target_rx) = watch::channel(Target {
        generation: 1,
        url: daemon.url(),
    });
    let (acked_tx, mut acked_rx) = mpsc::unbounded_channel();
    let run = new_id();
    let ids: Vec<String> = (0..TOTAL).map(|i| format!("crash-{run}-{i:04}")).collect();
    let client = client();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let mine = ids.iter().skip(t).step_by(TASKS).cloned().collect();
            tokio::spawn(post_all(
                client.clone(),
                mine,
                target_rx.clone(),
                acked_tx.clone(),
            ))
        })
        .collect();
    drop(acked_tx);

    let mut acked: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < KILL_AFTER_ACKS {
        match timeout_at(deadline, acked_rx.recv()).await {
            Ok(Some(id)) => {
                acked.insert(id);
            }
            Ok(None) => panic!("the clients finished after {} acks", acked.len()),
            Err(_) => panic!("only {} requests acknowledged within 20s", acked.len()),
        }
    }
    daemon.kill9();
    daemon.restart().await;
    target.send_replace(Target {
        generation: 2,
        url: daemon.url(),
    });
    for task in tasks {
        timeout_at(deadline + Duration::from_secs(10), task)
            .await
            .expect("the clients finish within 30s")
            .expect("client task");
    }
    while let Ok(id) = acked_rx.try_recv() {
        acked.insert(id);
    }
    assert_eq!(
        acked.len(),
        TOTAL,
        "every request is eventually acknowledged"
    );

    let mut got = receive_ids(
        &aws,
        &queue,
        &acked,
        AWS_DELIVERY_TIMEOUT,
        "every acknowledged event",
    )
    .await;
    daemon.stop_gracefully().await;
    got.extend(aws.drain(&queue).await);
    let counts = count_by_webhook_id(&got);
    let repeats: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    if !repeats.is_empty() {
        eprintln!(
            "[test] {} of {TOTAL} events reached the queue more than once (at-least-once \
             across kill -9): {repeats:?}",
            repeats.len()
        );
        for m in got.iter().filter(|m| counts[m.webhook_id()] > 1) {
            eprintln!(
                "[test]   {} as SQS message {}",
                m.webhook_id(),
                m.message_id
            );
        }
    }
    let unexpected: Vec<&String> = counts.keys().filter(|id| !acked.contains(*id)).collect();
    assert!(unexpected.is_empty(), "unknown webhook ids: {unexpected:?}");
    eprintln!(
        "[test] {} messages, {} distinct webhook ids, for {TOTAL} acknowledged events",
        got.len(),
        counts.len()
    );
}
