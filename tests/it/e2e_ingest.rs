//! What the ingest endpoint answers: signatures, apps, bodies, limits.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;

use crate::harness::*;

/// The default config with one catch-all file route (hookfan refuses to
/// start without routes).
fn with_file_route() -> Config {
    Config::default().file_route("to-file", "events.jsonl")
}

/// A daemon with one catch-all HTTP route to a fresh receiver.
async fn daemon_with_receiver(config: Config) -> (Daemon, Receiver) {
    let receiver = Receiver::start().await;
    let daemon = Daemon::start(config.route(HttpRoute::new("to-receiver", receiver.url()))).await;
    (daemon, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_valid_fixture_is_accepted_plain_and_gzipped_and_delivered_uncompressed() {
    let (daemon, mut receiver) = daemon_with_receiver(Config::default()).await;
    let client = client();
    let fixtures = valid_fixtures();
    let mut expected = BTreeMap::new();
    for f in &fixtures {
        for gzipped in [false, true] {
            let id = format!(
                "{}-{}-{}",
                f.name,
                if gzipped { "gz" } else { "plain" },
                new_id()
            );
            let mut headers = stream_headers(&id, &f.signature).to_vec();
            let body = if gzipped {
                headers.push(("content-encoding", "gzip"));
                f.gz.clone()
            } else {
                f.body.clone()
            };
            let answer = post_webhook(&client, &daemon.url(), body, &headers).await;
            assert_eq!(
                answer.status,
                200,
                "fixture {} ({}) must be accepted: {answer:?}",
                f.name,
                if gzipped { "gzip" } else { "plain" }
            );
            expected.insert(id, f);
        }
    }
    let ids: HashSet<String> = expected.keys().cloned().collect();
    let got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "every fixture, plain and gzip")
        .await;
    for r in &got {
        let f = expected[r.webhook_id()];
        assert_eq!(
            r.body,
            f.body.as_slice(),
            "{}: the delivered body must be the uncompressed original bytes",
            r.webhook_id()
        );
        assert_eq!(r.header("x-signature"), Some(f.signature.as_str()));
        assert_eq!(
            r.header("content-encoding"),
            None,
            "deliveries are not compressed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fixtures_get_their_documented_status_and_signed_ones_are_delivered() {
    let (daemon, mut receiver) = daemon_with_receiver(Config::default()).await;
    let client = client();
    let cases = invalid_fixtures();
    let names: HashSet<&str> = cases.iter().map(|f| f.name.as_str()).collect();
    let expected_status = [
        ("tampered_body", 401),
        ("bad_compression", 400),
        ("empty_body", 400),
        ("malformed_json", 400),
        ("missing_type", 200),
        ("unknown_type", 200),
        ("bad_base64", 200),
        ("bad_sns_envelope", 200),
    ];
    let known: HashSet<&str> = expected_status.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, known,
        "the _invalid fixture cases changed; give every case its expected status here"
    );

    let mut accepted = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, status) in expected_status {
        let f = cases
            .iter()
            .find(|f| f.name == name)
            .expect("checked above");
        let id = format!("{name}-{}", new_id());
        let mut headers = stream_headers(&id, &f.signature).to_vec();
        let body = if name == "bad_compression" {
            headers.push(("content-encoding", "gzip"));
            f.gz.clone()
        } else {
            f.body.clone()
        };
        let answer = post_webhook(&client, &daemon.url(), body, &headers).await;
        eprintln!("[test] {name}: {} {:?}", answer.status, answer.body);
        if answer.status != status {
            failures.push(format!(
                "{name}: expected {status}, got {} ({:?})",
                answer.status, answer.body
            ));
        }
        if status == 200 {
            accepted.insert(id, f);
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );

    // missing_type / unknown_type (and the two whose defects are only in the
    // SQS/SNS files) reach the catch-all route, byte for byte.
    let ids: HashSet<String> = accepted.keys().cloned().collect();
    let got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "the accepted _invalid cases")
        .await;
    for r in got {
        let f = accepted
            .get(r.webhook_id())
            .unwrap_or_else(|| panic!("unexpected delivery {:?}", r.webhook_id()));
        assert_eq!(
            r.body,
            f.body.as_slice(),
            "{}: body must be unchanged",
            f.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_with_different_secrets_are_picked_by_x_api_key() {
    let (daemon, mut receiver) = daemon_with_receiver(Config::default()).await;
    let client = client();
    let url = daemon.url();

    // other_key + other_secret: accepted and delivered with the original
    // key and signature.
    let id = new_id();
    let body = event_body("message.new", &id);
    let sig = sign(OTHER_SECRET, &body);
    let headers = [
        ("x-webhook-id", id.as_str()),
        ("x-webhook-attempt", "1"),
        ("x-api-key", OTHER_KEY),
        ("x-signature", sig.as_str()),
    ];
    let answer = post_webhook(&client, &url, body.clone(), &headers).await;
    assert_eq!(
        answer.status, 200,
        "other_key signed with other_secret: {answer:?}"
    );
    let r = receiver.next("the other_key event").await;
    assert_eq!(r.webhook_id(), id);
    assert_eq!(r.header("x-api-key"), Some(OTHER_KEY));
    assert_eq!(r.header("x-signature"), Some(sig.as_str()));

    // test_key + test_secret: accepted.
    let id = new_id();
    let body = event_body("message.new", &id);
    let answer = post_signed(&client, &url, &id, &body).await;
    assert_eq!(
        answer.status, 200,
        "test_key signed with its secret: {answer:?}"
    );

    // Secrets swapped between the apps: refused.
    let id = new_id();
    let body = event_body("message.new", &id);
    let sig = sign(OTHER_SECRET, &body);
    let answer = post_webhook(
        &client,
        &url,
        body.clone(),
        &[
            ("x-webhook-id", id.as_str()),
            ("x-api-key", API_KEY),
            ("x-signature", sig.as_str()),
        ],
    )
    .await;
    assert_eq!(
        answer.status, 401,
        "test_key signed with other_secret: {answer:?}"
    );
    let sig = sign(SECRET, &body);
    let answer = post_webhook(
        &client,
        &url,
        body,
        &[
            ("x-webhook-id", id.as_str()),
            ("x-api-key", OTHER_KEY),
            ("x-signature", sig.as_str()),
        ],
    )
    .await;
    assert_eq!(
        answer.status, 401,
        "other_key signed with test_secret: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upper_case_hex_signature_is_accepted() {
    let (daemon, mut receiver) = daemon_with_receiver(Config::default()).await;
    let client = client();
    let id = new_id();
    let body = event_body("message.new", &id);
    let sig = sign(SECRET, &body).to_uppercase();
    let answer = post_webhook(&client, &daemon.url(), body, &stream_headers(&id, &sig)).await;
    assert_eq!(answer.status, 200, "upper-case hex signature: {answer:?}");
    assert_eq!(receiver.next("the event").await.webhook_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_is_answered_503_so_that_stream_retries() {
    let daemon = Daemon::start(with_file_route()).await;
    let id = new_id();
    let body = event_body("message.new", &id);
    let sig = sign(SECRET, &body);
    let answer = post_webhook(
        &client(),
        &daemon.url(),
        body,
        &[
            ("x-webhook-id", id.as_str()),
            ("x-api-key", "nobody_key"),
            ("x-signature", sig.as_str()),
        ],
    )
    .await;
    // A key rotated in at Stream before routes.yaml lists it (e2e_hooks covers the rotation).
    assert_eq!(answer.status, 503, "unknown X-Api-Key: {answer:?}");
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_malformed_signature_is_rejected_with_401() {
    let daemon = Daemon::start(with_file_route()).await;
    let client = client();
    let id = new_id();
    let body = event_body("message.new", &id);
    let answer = post_webhook(
        &client,
        &daemon.url(),
        body.clone(),
        &[("x-webhook-id", id.as_str()), ("x-api-key", API_KEY)],
    )
    .await;
    assert_eq!(answer.status, 401, "missing X-Signature: {answer:?}");
    for bad in ["", "not-hex", "abcd", &sign(SECRET, b"something else")] {
        let answer = post_webhook(
            &client,
            &daemon.url(),
            body.clone(),
            &[
                ("x-webhook-id", id.as_str()),
                ("x-api-key", API_KEY),
                ("x-signature", bad),
            ],
        )
        .await;
        assert_eq!(answer.status, 401, "X-Signature {bad:?}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_api_key_uses_the_only_configured_app() {
    let (daemon, mut receiver) = daemon_with_receiver(Config::default().single_app()).await;
    let id = new_id();
    let body = event_body("message.new", &id);
    let sig = sign(SECRET, &body);
    let answer = post_webhook(
        &client(),
        &daemon.url(),
        body,
        &[("x-webhook-id", id.as_str()), ("x-signature", sig.as_str())],
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "no X-Api-Key with a single app: {answer:?}"
    );
    assert_eq!(receiver.next("the event").await.webhook_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_post_methods_are_answered_405() {
    let daemon = Daemon::start(with_file_route()).await;
    let client = client();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let answer = send(
            &client,
            method.clone(),
            &daemon.url_path("hook"),
            Vec::new(),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {}: {e:?}", daemon.url()));
        assert_eq!(answer.status, 405, "{method}: {answer:?}");
    }
}

/// `{"type":"message.new",...}` followed by spaces up to exactly `len` bytes.
fn padded_json(id: &str, len: usize) -> Vec<u8> {
    let mut body = event_body("message.new", id);
    assert!(body.len() < len);
    body.resize(len, b' ');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_exactly_at_max_body_bytes_is_accepted_and_one_byte_over_is_413() {
    const MAX: usize = 4096;
    let (daemon, mut receiver) =
        daemon_with_receiver(Config::default().max_body_bytes(MAX as u64)).await;
    let client = client();

    let at_limit = new_id();
    let body = padded_json(&at_limit, MAX);
    let answer = post_signed(&client, &daemon.url(), &at_limit, &body).await;
    assert_eq!(
        answer.status, 200,
        "body of exactly max_body_bytes: {answer:?}"
    );

    let over = new_id();
    let answer = post_signed(&client, &daemon.url(), &over, &padded_json(&over, MAX + 1)).await;
    assert_eq!(
        answer.status, 413,
        "body one byte over max_body_bytes: {answer:?}"
    );

    // The same limits apply to the decompressed size of a gzip body.
    let gz_at_limit = new_id();
    let gz_body = padded_json(&gz_at_limit, MAX);
    let sig = sign(SECRET, &gz_body);
    let mut headers = stream_headers(&gz_at_limit, &sig).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = post_webhook(&client, &daemon.url(), gzip(&gz_body), &headers).await;
    assert_eq!(
        answer.status, 200,
        "gzip body inflating to exactly the limit: {answer:?}"
    );

    let gz_over = new_id();
    let body = padded_json(&gz_over, MAX + 1);
    let compressed = gzip(&body);
    assert!(compressed.len() < MAX);
    let sig = sign(SECRET, &body);
    let mut headers = stream_headers(&gz_over, &sig).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = post_webhook(&client, &daemon.url(), compressed, &headers).await;
    assert_eq!(
        answer.status, 413,
        "gzip body inflating one byte over the limit: {answer:?}"
    );

    let ids: HashSet<String> = [at_limit.clone(), gz_at_limit.clone()].into();
    for r in receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "the bodies at the limit")
        .await
    {
        assert_eq!(
            r.body.len(),
            MAX,
            "{} delivered with its padding",
            r.webhook_id()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_is_refused_with_413() {
    const MAX: u64 = 65_536;
    let daemon = Daemon::start(with_file_route().max_body_bytes(MAX)).await;
    let id = new_id();
    // 50 MiB of zeros, ~240 KB compressed, correctly signed over the
    // uncompressed bytes so that only its size can be the reason to refuse.
    let (bomb, sig) = tokio::task::spawn_blocking(|| {
        let zeros = vec![0u8; 1 << 20];
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut mac = HmacSha256::new(SECRET);
        for _ in 0..50 {
            enc.write_all(&zeros).expect("gzip");
            mac.update(&zeros);
        }
        (enc.finish().expect("gzip"), mac.hex())
    })
    .await
    .expect("build the bomb");
    eprintln!("[test] gzip bomb: {} bytes compressed", bomb.len());
    let mut headers = stream_headers(&id, &sig).to_vec();
    headers.push(("content-encoding", "gzip"));
    let answer = send(
        &client(),
        reqwest::Method::POST,
        &daemon.url(),
        bomb,
        &headers,
    )
    .await
    .unwrap_or_else(|e| {
        panic!("the daemon must answer 413 to a gzip bomb, the request failed instead: {e:?}")
    });
    assert_eq!(answer.status, 413, "gzip bomb: {answer:?}");

    // And it is still serving.
    let id = new_id();
    post_ok(
        &client(),
        &daemon.url(),
        &id,
        &event_body("message.new", &id),
    )
    .await;
}

/// Incremental HMAC-SHA256 for bodies too large to build twice.
struct HmacSha256(hmac::Hmac<sha2::Sha256>);

impl HmacSha256 {
    fn new(secret: &str) -> Self {
        use hmac::Mac as _;
        HmacSha256(hmac::Hmac::new_from_slice(secret.as_bytes()).expect("any key length"))
    }

    fn update(&mut self, data: &[u8]) {
        use hmac::Mac as _;
        self.0.update(data);
    }

    fn hex(self) -> String {
        use hmac::Mac as _;
        hex::encode(self.0.finalize().into_bytes())
    }
}
