//! Signing and posting webhooks the way Stream does.

#[allow(unused_imports)]
use super::*;

/// Lower-case hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).expect("gzip");
    enc.finish().expect("gzip")
}

/// A fresh unique webhook id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A small, valid Stream-like event of type `ty`, unique per `id`.
pub fn event_body(ty: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": ty,
        "created_at": "2026-05-08T00:00:00.000000Z",
        "message": { "id": id, "text": format!("hello from {id}") },
        "user": { "id": "it-user" },
    }))
    .expect("serialize event")
}

/// An HTTP client for posting to the daemon (no proxy, 30 s timeout).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// The answer to one POST.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Sends `method url` with `body` and the given headers (a
/// `Content-Type: application/json` is added unless given).
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let mut req = client.request(method, url).body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// POSTs `body` to `url` with exactly the given headers (plus a JSON
/// content type unless given); panics on a transport error.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    send(client, reqwest::Method::POST, url, body.into(), headers)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"))
}

/// POSTs `body` as Stream would: `X-Webhook-Id: id`, attempt 1, `test_key`,
/// signed with the test secret.
pub async fn post_signed(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) -> Answer {
    let sig = sign(SECRET, body);
    post_webhook(client, url, body, &stream_headers(id, &sig)).await
}

/// POSTs and requires 200.
pub async fn post_ok(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) {
    let answer = post_signed(client, url, id, body).await;
    assert_eq!(
        answer.status, 200,
        "POST {id} must be acknowledged with 200: {answer:?}"
    );
}

/// Stream's headers for one request, attempt 1, app `test_key`.
pub fn stream_headers<'a>(id: &'a str, signature: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("x-webhook-id", id),
        ("x-webhook-attempt", "1"),
        ("x-api-key", API_KEY),
        ("x-signature", signature),
    ]
}

/// Posts a fresh `message.new` marker event, waits until `receiver` gets it, then until the
/// daemon has settled (every enabled route with nothing pending and nothing in flight), and
/// returns everything else the receiver got, before the marker or after it. A "nothing else
/// arrived" check on it cannot pass only because a delivery was still on its way.
pub async fn post_marker_and_await(
    client: &reqwest::Client,
    daemon: &Daemon,
    receiver: &mut Receiver,
) -> Vec<Recorded> {
    let marker = format!("marker-{}", new_id());
    post_ok(
        client,
        &daemon.url_path("marker"),
        &marker,
        &event_body("message.new", &marker),
    )
    .await;
    let mut other = receiver.until_marker(&marker).await;
    let api = format!("http://{}/api/routes", daemon.admin);
    eventually(
        DELIVERY_TIMEOUT,
        "every enabled route settled: nothing pending, nothing in flight",
        || async {
            let (status, body) = get(client, api.clone()).await;
            let routes: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
            status == 200
                && routes
                    .iter()
                    .filter(|r| r["enabled"] == true)
                    .all(|r| r["pending"] == 0 && r["in_flight"] == 0)
        },
    )
    .await;
    other.extend(receiver.drain_now());
    other
}

/// Count of requests per webhook id.
pub fn count_by_id(records: &[Recorded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.webhook_id().to_owned()).or_insert(0) += 1;
    }
    counts
}
