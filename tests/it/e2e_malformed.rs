//! Malformed requests against the daemon: what needs a process. The whole table of malformed
//! requests and their status codes runs in process against the ingest router
//! (`src/ingest/tests.rs`); here a sample of each kind of refusal goes through a real socket,
//! the daemon survives them, nothing refused is delivered, and bodies that are valid JSON
//! however odd (10k levels of nesting or `1e999` outside `type`) are delivered byte for byte.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::harness::*;

/// The daemon's `max_body_bytes` in this test.
const MAX_BODY: usize = 32 * 1024;

/// A signed, valid event of exactly `len` bytes (`len` must leave room for the JSON).
fn event_of_len(len: usize) -> Vec<u8> {
    let base = br#"{"type":"message.new","padding":""}"#.len();
    let mut body = format!(
        r#"{{"type":"message.new","padding":"{}"}}"#,
        "p".repeat(len - base)
    );
    body.truncate(len);
    assert_eq!(body.len(), len);
    body.into_bytes()
}

/// One malformed request.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    body: Vec<u8>,
    /// Headers as raw bytes (repeats allowed); `X-Webhook-Id` is added.
    headers: Vec<(&'static str, Vec<u8>)>,
    status: u16,
}

/// A POST of `body` with `X-Api-Key: test_key`, signed over `signed_body`, plus `extra`.
fn signed(
    name: &'static str,
    body: Vec<u8>,
    signed_body: &[u8],
    extra: Vec<(&'static str, Vec<u8>)>,
    status: u16,
) -> Case {
    let mut headers = vec![
        ("x-api-key", API_KEY.as_bytes().to_vec()),
        ("x-signature", sign(SECRET, signed_body).into_bytes()),
    ];
    headers.extend(extra);
    Case {
        name,
        method: reqwest::Method::POST,
        body,
        headers,
        status,
    }
}

/// A POST whose body is signed correctly: only the body itself is wrong.
fn bad_body(name: &'static str, body: Vec<u8>, status: u16) -> Case {
    let sig = body.clone();
    signed(name, body, &sig, Vec::new(), status)
}

/// A POST of a valid event with exactly the given auth headers.
fn bad_auth(name: &'static str, headers: Vec<(&'static str, Vec<u8>)>) -> Case {
    Case {
        name,
        method: reqwest::Method::POST,
        body: event_body("message.new", name),
        headers,
        status: 401,
    }
}

/// A sample of the table (the whole table runs in process, `src/ingest/tests.rs`): one of
/// each kind of refusal, and the odd but valid bodies that must be delivered intact.
fn cases() -> Vec<Case> {
    let event = event_body("message.new", "malformed");
    let good_sig = sign(SECRET, &event).into_bytes();
    let key = || ("x-api-key", API_KEY.as_bytes().to_vec());
    let mut nested = b"{\"type\":\"message.new\",\"deep\":".to_vec();
    nested.extend(std::iter::repeat_n(b'[', 10_000));
    nested.extend(std::iter::repeat_n(b']', 10_000));
    nested.push(b'}');
    let bomb = gzip(&event_of_len(MAX_BODY * 64));
    vec![
        bad_auth(
            "signature of another body",
            vec![key(), ("x-signature", sign(SECRET, b"{}").into_bytes())],
        ),
        Case {
            status: 503,
            ..bad_auth(
                "unknown X-Api-Key",
                vec![
                    ("x-api-key", b"nobody".to_vec()),
                    ("x-signature", good_sig.clone()),
                ],
            )
        },
        bad_body(
            "truncated object",
            b"{\"type\":\"message.new\"".to_vec(),
            400,
        ),
        // Valid JSON grammar outside `type`: forwarded byte for byte (the consumer's parser
        // decides); hookfan must survive it and deliver it intact.
        bad_body("10k levels of [ in a field (valid JSON)", nested, 200),
        bad_body(
            "1e999 in a field (valid JSON)",
            b"{\"type\":\"message.new\",\"n\":1e999}".to_vec(),
            200,
        ),
        bad_body(
            "one byte over max_body_bytes",
            event_of_len(MAX_BODY + 1),
            413,
        ),
        signed(
            "gzip bomb (64 x max_body_bytes inflated)",
            bomb,
            &event_of_len(MAX_BODY * 64),
            vec![("content-encoding", b"gzip".to_vec())],
            413,
        ),
        Case {
            name: "GET",
            method: reqwest::Method::GET,
            body: Vec::new(),
            headers: Vec::new(),
            status: 405,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_request_gets_its_status_code_and_nothing_is_stored() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .max_body_bytes(MAX_BODY as u64)
            .route(HttpRoute::new("to-receiver", receiver.url())),
    )
    .await;
    let http = client();
    let mut wrong = Vec::new();
    // Cases that must be accepted: webhook id -> body.
    let mut accepted = std::collections::HashMap::new();
    for case in cases() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let id = format!("malformed-{}", new_id());
        headers.insert("x-webhook-id", HeaderValue::from_str(&id).unwrap());
        for (name, value) in &case.headers {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).expect("a header value without control bytes"),
            );
        }
        let answer = http
            .request(case.method.clone(), daemon.url_path("webhooks"))
            .headers(headers)
            .body(case.body.clone())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer (did hookfan crash?): {e}", case.name));
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        eprintln!("[malformed] {:<45} -> {status} {}", case.name, text.trim());
        if case.status == 200 {
            accepted.insert(id.clone(), case.body.clone());
        }
        if status != case.status {
            wrong.push(format!(
                "{}: expected {}, got {status} ({})",
                case.name,
                case.status,
                text.trim()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "wrong status codes:\n{}",
        wrong.join("\n")
    );

    // The positive control: a body of exactly max_body_bytes is accepted and delivered.
    let at_limit_id = format!("at-limit-{}", new_id());
    post_ok(&http, &daemon.url(), &at_limit_id, &event_of_len(MAX_BODY)).await;
    accepted.insert(at_limit_id, event_of_len(MAX_BODY));
    let ids: std::collections::HashSet<String> = accepted.keys().cloned().collect();
    let got = receiver
        .until_ids(&ids, DELIVERY_TIMEOUT, "the accepted cases")
        .await;
    for r in &got {
        let body = accepted
            .get(r.webhook_id())
            .unwrap_or_else(|| panic!("a refused request was delivered: {r:?}"));
        assert_eq!(r.body, body.as_slice(), "delivered intact");
    }
    let expected = accepted.len() as u64 + 1;

    // Nothing else was stored: after a marker, the receiver has had nothing else, and the
    // route delivered exactly those and the marker, and holds nothing more.
    let before = post_marker_and_await(&http, &daemon, &mut receiver).await;
    let ids: Vec<&str> = before.iter().map(Recorded::webhook_id).collect();
    assert!(ids.is_empty(), "deliveries of refused requests: {ids:?}");
    let api = format!("http://{}/api/routes", daemon.admin);
    let what = format!("the accepted cases and the marker delivered ({expected}), no more");
    eventually(DELIVERY_TIMEOUT, &what, || async {
        let (status, routes) = get(&http, api.clone()).await;
        assert_eq!(status, 200, "{routes}");
        let routes: serde_json::Value = serde_json::from_str(&routes).expect("JSON");
        let route = routes.as_array().expect("a list of routes")[0].clone();
        assert_eq!(route["dead_letters"], 0, "{route}");
        assert!(
            route["delivered"].as_u64() <= Some(expected),
            "the route must deliver the accepted cases and the marker only ({expected}): {route}"
        );
        route["delivered"] == expected && route["pending"] == 0
    })
    .await;
    let (status, _) = get(&http, format!("http://{}/healthz", daemon.admin)).await;
    assert_eq!(status, 200, "hookfan survived every case");
}
