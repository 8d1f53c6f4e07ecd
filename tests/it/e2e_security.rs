//! The public endpoint's defences, from outside: `allowed_ips`, `max_event_age`, TLS with
//! certificate renewal, slow and abusive clients, and secrets that never reach a log line,
//! an API answer or a command's output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::harness::*;

/// A signed `message.new` whose `created_at` is `created_at` (any JSON value), unique per id.
fn event_created_at(id: &str, created_at: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "message.new",
        "created_at": created_at,
        "message": { "id": id, "text": "hello" },
    }))
    .unwrap()
}

fn rfc3339_ago(ago: Duration) -> serde_json::Value {
    humantime::format_rfc3339_micros(SystemTime::now() - ago)
        .to_string()
        .into()
}

fn nanos_ago(ago: Duration) -> serde_json::Value {
    let at = SystemTime::now() - ago;
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos.into()
}

/// Posts a fresh marker event to `url`, waits until `receiver` gets it and `daemon` has nothing
/// left to deliver, and returns the webhook ids received meanwhile (marker excluded), sorted.
/// Deliveries run concurrently, so the marker may overtake an event stored just before it:
/// waiting for an empty queue (a row leaves it only once its delivery is recorded, after the
/// receiver answered) catches those too.
async fn received_before_marker(
    daemon: &Daemon,
    client: &reqwest::Client,
    url: &str,
    receiver: &mut Receiver,
) -> Vec<String> {
    let marker = format!("marker-{}", new_id());
    let body = event_created_at(&marker, rfc3339_ago(Duration::ZERO));
    post_ok(client, url, &marker, &body).await;
    let mut got = receiver.until_marker(&marker).await;
    eventually(
        Duration::from_secs(10),
        "every delivery is recorded",
        || async {
            let (_, text) = get(client, format!("http://{}/metrics", daemon.admin)).await;
            let pending: f64 = text
                .lines()
                .filter(|l| l.starts_with("hookfan_route_pending{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            pending == 0.0
        },
    )
    .await;
    got.extend(receiver.drain_now());
    let mut ids: Vec<String> = got.iter().map(|r| r.webhook_id().to_string()).collect();
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// allowed_ips

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_outside_allowed_ips_gets_403_and_nothing_is_stored_until_it_is_allowed() {
    let mut receiver = Receiver::start().await;
    let base = Config::default().route(HttpRoute::new("all", receiver.url()));
    let daemon = Daemon::start(
        base.clone()
            .top_level("allowed_ips: [10.0.0.0/8, \"2001:db8::/32\"]"),
    )
    .await;
    let client = client();

    let refused = post_signed(
        &client,
        &daemon.url(),
        "from-loopback",
        &event_body("message.new", "x"),
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.body, "this address may not post webhooks here\n");
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            "outcome=\"ip_not_allowed\""
        )
        .await,
        Some(1.0)
    );
    eventually(
        Duration::from_secs(10),
        "the refusal is logged with its reason",
        || async {
            daemon
                .logs()
                .contains("refused webhook: the sender's IP is not in allowed_ips")
        },
    )
    .await;

    // Allowing loopback takes a reload, not a restart.
    daemon.rewrite_config(&base.top_level("allowed_ips: [10.0.0.0/8, 127.0.0.1]"));
    eventually(
        Duration::from_secs(10),
        "the reload allows 127.0.0.1",
        || async {
            let id = new_id();
            post_signed(&client, &daemon.url(), &id, &event_body("message.new", &id))
                .await
                .status
                == 200
        },
    )
    .await;
    let got = received_before_marker(&daemon, &client, &daemon.url(), &mut receiver).await;
    assert!(
        !got.contains(&"from-loopback".to_string()),
        "a refused event is never delivered: {got:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// max_event_age

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_event_age_refuses_old_signed_events_with_401_and_takes_fresh_ones() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .top_level("max_event_age: 1h")
            .route(HttpRoute::new("all", receiver.url())),
    )
    .await;
    let client = client();
    let url = daemon.url();

    let two_hours = Duration::from_secs(2 * 3600);
    for (id, created_at) in [
        ("old-rfc3339", rfc3339_ago(two_hours)),
        ("old-nanos", nanos_ago(two_hours)),
    ] {
        let answer = post_signed(&client, &url, id, &event_created_at(id, created_at)).await;
        assert_eq!(answer.status, 401, "{id}: {answer:?}");
        assert!(
            answer.body.contains("more than max_event_age (1h)"),
            "{id}: {answer:?}"
        );
        assert!(answer.body.contains("possible replay"), "{id}: {answer:?}");
    }
    // Stream's own vector was signed in May 2026: a replay of it today is refused.
    let fixture = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/stream-webhooks/message.new/body.json"),
    )
    .unwrap();
    assert_eq!(
        post_signed(&client, &url, "old-fixture", &fixture)
            .await
            .status,
        401
    );

    let minute = Duration::from_secs(60);
    for (id, body) in [
        (
            "fresh-rfc3339",
            event_created_at("fresh-rfc3339", rfc3339_ago(minute)),
        ),
        (
            "fresh-nanos",
            event_created_at("fresh-nanos", nanos_ago(minute)),
        ),
        // A clock a little ahead of ours is not a replay.
        (
            "from-the-future",
            event_created_at("from-the-future", rfc3339_ago(Duration::ZERO)),
        ),
        // No created_at to judge by: a replayed body cannot gain one, so it passes.
        ("no-created-at", br#"{"type":"message.new"}"#.to_vec()),
    ] {
        let answer = post_signed(&client, &url, id, &body).await;
        assert_eq!(answer.status, 200, "{id}: {answer:?}");
    }
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            "outcome=\"too_old\""
        )
        .await,
        Some(3.0)
    );
    assert_eq!(
        received_before_marker(&daemon, &client, &daemon.url(), &mut receiver).await,
        [
            "fresh-nanos",
            "fresh-rfc3339",
            "from-the-future",
            "no-created-at"
        ],
        "exactly the fresh events are stored and delivered"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Cert {
    pem: String,
    key: String,
}

fn new_cert() -> Cert {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a certificate");
    Cert {
        pem: made.cert.pem(),
        key: made.key_pair.serialize_pem(),
    }
}

/// Writes `contents` to `path` the way renewal tools do: a temp file, then a rename.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client that trusts only `cert`.
fn trusting(cert: &Cert) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_picks_up_a_renewed_certificate_without_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let first = new_cert();
    replace_file(&cert_path, &first.pem);
    replace_file(&key_path, &first.key);
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .top_level(format!("tls: {{ cert: {cert_path:?}, key: {key_path:?} }}"))
            .route(HttpRoute::new("all", receiver.url())),
    )
    .await;
    let https = format!("https://{}/", daemon.addr);

    let answer = post_signed(
        &trusting(&first),
        &https,
        "over-tls",
        &event_body("message.new", "a"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let plain = client()
        .post(daemon.url())
        .body(event_body("message.new", "plain"))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP on the TLS port gets no answer: {plain:?}"
    );

    // Renewal: new files in place; new handshakes get the new certificate.
    let second = new_cert();
    replace_file(&key_path, &second.key);
    replace_file(&cert_path, &second.pem);
    let renewed = trusting(&second);
    eventually(
        Duration::from_secs(10),
        "the renewed certificate is served",
        || async { renewed.post(&https).body("{}").send().await.is_ok() },
    )
    .await;
    assert!(
        trusting(&first)
            .post(&https)
            .body("{}")
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );

    // A broken renewal keeps the working certificate and says why.
    replace_file(&cert_path, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    eventually(
        Duration::from_secs(10),
        "the failed reload is logged",
        || async {
            daemon
                .logs()
                .contains("still serving the previous certificate")
        },
    )
    .await;
    assert_eq!(
        metric(&daemon, "hookfan_tls_reloads_total", "outcome=\"failure\"").await,
        Some(1.0)
    );
    let answer = post_signed(
        &renewed,
        &https,
        "after-renewal",
        &event_body("message.new", "b"),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        received_before_marker(&daemon, &renewed, &https, &mut receiver).await,
        ["after-renewal", "over-tls"]
    );
}

/// Runs `hookfan serve` on `yaml` and expects it to refuse to start: (exit code, stderr).
async fn serve_expecting_failure(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .env("NO_COLOR", "1");
    let out = timeout(
        STARTUP_TIMEOUT,
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("hookfan must exit on its own when it cannot start")
    .unwrap()
    .unwrap();
    assert!(
        !dir.path().join("data").join("spool.redb").exists(),
        "nothing is created before the certificate is checked"
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_mismatched_certificate_stops_startup_naming_the_file() {
    let certs = tempfile::tempdir().unwrap();
    let (one, two) = (new_cert(), new_cert());
    let dir = certs.path();
    std::fs::write(dir.join("cert.pem"), &one.pem).unwrap();
    std::fs::write(dir.join("other-key.pem"), &two.key).unwrap();
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    let config = |cert: &str, key: &str| {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: \"off\"\ntls: {{ cert: {:?}, key: {:?} }}\napps: [{{ api_key: k, api_secret: s }}]\nroutes: [{{ name: a, event_types: [], file: {{ path: a.jsonl }} }}]\n",
            dir.join(cert),
            dir.join(key)
        )
    };
    for (cert, key, expected) in [
        ("missing.pem", "other-key.pem", "tls: cannot read "),
        ("empty.pem", "other-key.pem", "no certificate in it"),
        ("cert.pem", "empty.pem", "no private key in it"),
        (
            "cert.pem",
            "other-key.pem",
            "does not belong to the certificate",
        ),
    ] {
        let (code, stderr) = serve_expecting_failure(&config(cert, key)).await;
        assert_ne!(code, Some(0), "{cert}/{key}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{cert}/{key}: expected {expected:?} in:\n{stderr}"
        );
        let named = if expected.contains("private key") {
            key
        } else {
            cert
        };
        assert!(
            stderr.contains(named),
            "{cert}/{key}: the file is named in:\n{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Slow and abusive clients

/// Reads from `stream` until the peer closes it (or `within` passes); what was read.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<String, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => {
                return Err(format!(
                    "still open after {within:?}; read {:?}",
                    String::from_utf8_lossy(&out)
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Legitimate, signed webhooks get 200, promptly: of several in a row, every one is stored
/// and the median waits under a second (a commit takes milliseconds; the median, not the
/// slowest, so that one fsync stall on a loaded CI machine is not taken for the attack).
async fn legitimate_sender_is_served(daemon: &Daemon) {
    let client = client();
    let mut waited = Vec::new();
    for _ in 0..9 {
        let id = new_id();
        let started = Instant::now();
        let answer =
            post_signed(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        waited.push(started.elapsed());
    }
    waited.sort();
    assert!(
        waited[waited.len() / 2] < Duration::from_secs(1),
        "the legitimate sender waited {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_at_request_timeout_while_others_are_served() {
    let daemon = Daemon::start(
        Config::default()
            .top_level("request_timeout: 1s")
            .file_route("all", "events.jsonl"),
    )
    .await;
    // Headers trickled one line at a time, never finished.
    let mut slow = TcpStream::connect(daemon.addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: hookfan\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        unreachable!()
    });
    legitimate_sender_is_served(&daemon).await;
    let lines = timeout(Duration::from_secs(10), trickle)
        .await
        .expect("the slow client is disconnected within request_timeout (plus slack)")
        .unwrap();
    assert!(lines < 30, "the connection lived for {lines} header lines");

    // A body that stops arriving gets 408.
    let mut stalled = TcpStream::connect(daemon.addr).await.unwrap();
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: hookfan\r\nContent-Length: 1000\r\n\r\n{\"type\":")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            "outcome=\"timeout\""
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_get_431_and_an_endless_body_413() {
    let daemon = Daemon::start(
        Config::default()
            .max_body_bytes(64 * 1024)
            .file_route("all", "events.jsonl"),
    )
    .await;
    let mut huge = TcpStream::connect(daemon.addr).await.unwrap();
    let filler = "a".repeat(64 * 1024);
    huge.write_all(
        format!("POST / HTTP/1.1\r\nHost: hookfan\r\nX-Filler: {filler}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap_or_default();
    let answer = read_until_closed(&mut huge, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A chunked body that never ends: refused once it passes max_body_bytes.
    let before = daemon.rss_kib();
    let mut endless = TcpStream::connect(daemon.addr).await.unwrap();
    endless
        .write_all(b"POST / HTTP/1.1\r\nHost: hookfan\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(0x1000));
    let mut sent = 0usize;
    // Bounded in time too: a daemon that stopped reading without closing would otherwise
    // leave this write waiting forever.
    tokio::time::timeout(Duration::from_secs(60), async {
        while sent < 64 * 1024 * 1024 {
            if endless.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 0x1000;
        }
    })
    .await
    .expect("hookfan neither read nor closed an endless body within 60 s");
    assert!(
        sent < 64 * 1024 * 1024,
        "hookfan kept reading an endless body"
    );
    let grown = daemon.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "memory grew by {grown} KiB on an endless body"
    );
    eventually(
        Duration::from_secs(10),
        "the endless body is counted as too large",
        || async {
            metric(
                &daemon,
                "hookfan_webhooks_received_total",
                "outcome=\"too_large\"",
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    legitimate_sender_is_served(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_costs_little_memory_and_the_sender_is_still_served() {
    let daemon = Daemon::start(
        Config::default()
            .top_level("request_timeout: 6s")
            .file_route("all", "events.jsonl"),
    )
    .await;
    legitimate_sender_is_served(&daemon).await;
    let before = daemon.rss_kib();
    let mut idle = Vec::new();
    for _ in 0..500 {
        let mut c = TcpStream::connect(daemon.addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        idle.push(c);
    }
    legitimate_sender_is_served(&daemon).await;
    let grown = daemon.rss_kib().saturating_sub(before);
    eprintln!("500 idle connections: RSS grew by {grown} KiB");
    assert!(grown < 32 * 1024, "500 idle connections cost {grown} KiB");
    // request_timeout closes every one of them.
    for mut c in idle {
        read_until_closed(&mut c, Duration::from_secs(10))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_new_connections_wait_for_a_free_slot() {
    let daemon = Daemon::start(
        Config::default()
            .top_level("max_connections: 4")
            .top_level("request_timeout: 1s")
            .file_route("all", "events.jsonl"),
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(daemon.addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        idle.push(c);
    }
    // The fifth connection is queued by the kernel and served once request_timeout frees a slot.
    let id = new_id();
    let answer = post_signed(
        &client(),
        &daemon.url(),
        &id,
        &event_body("message.new", &id),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        metric(&daemon, "hookfan_ingest_connection_limit_reached_total", "")
            .await
            .is_some_and(|n| n >= 1.0),
        "reaching the limit is counted"
    );
    eventually(Duration::from_secs(10), "the limit is logged", || async {
        daemon.logs().contains("max_connections reached")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_max_buffered_bytes_are_in_memory_the_next_webhook_gets_503_at_once() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .max_body_bytes(64 * 1024)
            .top_level("max_buffered_bytes: 131072")
            .route(HttpRoute::new("all", receiver.url())),
    )
    .await;
    // Two webhooks of 64 KiB announced and half sent: the whole budget is taken.
    let mut pending = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(daemon.addr).await.unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nHost: hookfan\r\nContent-Length: 65536\r\n\r\n")
            .await
            .unwrap();
        c.write_all(&[b' '; 32 * 1024]).await.unwrap();
        pending.push(c);
    }
    eventually(
        Duration::from_secs(10),
        "both bodies are being buffered",
        || async { metric(&daemon, "hookfan_ingest_buffered_bytes", "").await == Some(131072.0) },
    )
    .await;
    let client = client();
    let id = new_id();
    let body = event_created_at(&id, rfc3339_ago(Duration::ZERO));
    let answer = post_signed(&client, &daemon.url(), &id, &body).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert!(answer.body.contains("overloaded"), "{answer:?}");
    eventually(Duration::from_secs(10), "the refusal is logged", || async {
        daemon.logs().contains("max_buffered_bytes")
    })
    .await;
    // Room again once they go away: Stream's retry is taken and delivered.
    drop(pending);
    eventually(Duration::from_secs(10), "the retry is taken", || async {
        post_signed(
            &client,
            &daemon.url(),
            &id,
            &event_created_at(&id, rfc3339_ago(Duration::ZERO)),
        )
        .await
        .status
            == 200
    })
    .await;
    assert_eq!(
        received_before_marker(&daemon, &client, &daemon.url(), &mut receiver).await,
        [id]
    );
    assert!(metric(
        &daemon,
        "hookfan_webhooks_received_total",
        "outcome=\"overloaded\""
    )
    .await
    .is_some_and(|n| n >= 1.0));
}

// ---------------------------------------------------------------------------------------------
// Secrets

const APP_SECRET: &str = "app-secret-4f1d9c-must-never-show";
const ROUTE_SECRET: &str = "route-secret-77ab02-must-never-show";
const ADMIN_TOKEN: &str = "admin-token-c3e8d1-must-never-show";
/// In a destination URL's user info (HTTP basic auth to the handler).
const URL_PASSWORD: &str = "url-password-5b90e4-must-never-show";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_api_answers_or_command_output() {
    let receiver = Receiver::start().await;
    let mut config = Config::default()
        .route(
            HttpRoute::new(
                "crm",
                format!("http://hookfan:{URL_PASSWORD}@{}/hook", receiver.addr),
            )
            .api_secret(ROUTE_SECRET),
        )
        .file_route("audit", "events.jsonl");
    config.apps = vec![(API_KEY.to_owned(), APP_SECRET.to_owned())];
    config.admin_token = Some(ADMIN_TOKEN.to_owned());
    let daemon = Daemon::start(config.clone()).await;
    let client = client();
    let mut seen = Vec::new();

    // Refusals of every kind, including a signature made with a near-miss secret.
    for (secret, key) in [(APP_SECRET, "unknown-key"), ("app-secret-4f1d9c", API_KEY)] {
        let body = event_body("message.new", "x");
        let sig = sign(secret, &body);
        seen.push(format!(
            "{:?}",
            post_webhook(
                &client,
                &daemon.url(),
                body,
                &[("x-api-key", key), ("x-signature", &sig)]
            )
            .await
        ));
    }
    let body = event_body("message.new", "ok");
    let sig = sign(APP_SECRET, &body);
    let answer = post_webhook(&client, &daemon.url(), body, &stream_headers("ok", &sig)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // The admin API, with and without the token.
    let admin = format!("http://{}", daemon.admin);
    for path in [
        "/api/routes",
        "/api/config",
        "/api/dead-letters",
        "/metrics",
    ] {
        for token in [Some(ADMIN_TOKEN), Some("wrong"), None] {
            let mut request = client.get(format!("{admin}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            seen.push(format!("{} {:?}", response.status(), response.headers()));
            seen.push(response.text().await.unwrap());
        }
    }
    // Operator commands.
    seen.push(daemon.cli(&["check"]).await);
    seen.push(daemon.cli(&["status"]).await);
    // A reload that fails next to the secrets, and one that succeeds.
    daemon.write_config_text(&format!(
        "apps:\n  - api_key: {API_KEY}\n    api_secret: {APP_SECRET}\n    api_scret: {APP_SECRET}\nroutes: []\n"
    ));
    eventually(
        Duration::from_secs(10),
        "the failed reload is logged",
        || async {
            daemon
                .logs()
                .contains("config reload (file changed) failed")
        },
    )
    .await;
    daemon.rewrite_config(&config);
    eventually(
        Duration::from_secs(10),
        "the good config is reloaded",
        || async { daemon.logs().contains("config reloaded (file changed)") },
    )
    .await;

    let mut everything = seen.join("\n");
    everything.push_str(&daemon.logs());
    for secret in [APP_SECRET, ROUTE_SECRET, ADMIN_TOKEN, URL_PASSWORD] {
        assert!(
            !everything.contains(secret),
            "{secret} appeared in:\n{}",
            everything
                .lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        everything.contains("crm"),
        "the output checked is real: {everything}"
    );
}
