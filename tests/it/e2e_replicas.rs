//! Several replicas behind a load balancer, sharing dedup on Redis: Stream's retries of one
//! webhook may land on any replica, and the handler still gets it once; Redis going away never
//! fails a webhook.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::harness::*;
use crate::redis::RedisServer;

fn replica_config(redis: &RedisServer, receiver: &Receiver) -> Config {
    Config::default()
        .top_level(format!(
            "dedup:\n  backend: redis\n  url: \"{}\"\n  key_prefix: \"it:{}:\"",
            redis.url(),
            new_id()
        ))
        .route(HttpRoute::new("everything", receiver.url()))
}

/// Waits until the replica has reached Redis.
async fn until_shared(daemon: &Daemon) {
    poll_until(
        Duration::from_secs(15),
        "the replica to reach Redis",
        || {
            daemon
                .logs()
                .contains("webhook ids are shared with the other replicas")
                .then_some(())
        },
    )
    .await;
}

/// Two replicas sharing `redis`, each with its own spool, both delivering to `receiver`, once
/// both have reached Redis.
async fn two_replicas(redis: &RedisServer, receiver: &Receiver) -> (Daemon, Daemon) {
    let config = replica_config(redis, receiver);
    let (a, b) = (
        Daemon::start(config.clone()).await,
        Daemon::start(config).await,
    );
    until_shared(&a).await;
    until_shared(&b).await;
    (a, b)
}

/// Posts like Stream: a 503 is retried (after a short pause) until the answer is 200.
async fn post_until_acknowledged(url: &str, id: &str, body: &[u8]) -> Answer {
    let client = client();
    for _ in 0..100 {
        let answer = post_signed(&client, url, id, body).await;
        match answer.status {
            200 => return answer,
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{id}: answered {other}: {answer:?}"),
        }
    }
    panic!("{id}: still 503 after 100 attempts")
}

fn ids_of(records: &[Recorded]) -> HashMap<String, usize> {
    count_by_id(records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_sent_to_two_replicas_is_delivered_once() {
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let (a, b) = two_replicas(&redis, &receiver).await;

    // At the same moment on both replicas.
    let concurrent = new_id();
    let body = event_body("message.new", &concurrent);
    let (url_a, url_b) = (a.url(), b.url());
    let (on_a, on_b) = tokio::join!(
        post_until_acknowledged(&url_a, &concurrent, &body),
        post_until_acknowledged(&url_b, &concurrent, &body),
    );
    let answers = [on_a.body.as_str(), on_b.body.as_str()];
    assert!(
        answers.contains(&"stored\n") && answers.contains(&"duplicate: already stored\n"),
        "one replica stores it, the other finds it stored: {answers:?}"
    );

    // Stream-style retries, one on each replica.
    let retried = new_id();
    let body = event_body("message.new", &retried);
    assert_eq!(
        post_until_acknowledged(&a.url(), &retried, &body)
            .await
            .body,
        "stored\n"
    );
    assert_eq!(
        post_until_acknowledged(&b.url(), &retried, &body)
            .await
            .body,
        "duplicate: already stored\n"
    );

    let got = receiver
        .until_ids(
            &HashSet::from([concurrent.clone(), retried.clone()]),
            DELIVERY_TIMEOUT,
            "both webhooks",
        )
        .await;
    let counts = ids_of(&got);
    assert_eq!(counts.get(&concurrent), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&retried), Some(&1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_spread_over_two_replicas_with_repeats_nothing_is_lost_or_duplicated() {
    const N: usize = 200;
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let (a, b) = two_replicas(&redis, &receiver).await;
    let replicas = [a, b];
    let ids: Vec<String> = (0..N).map(|_| new_id()).collect();
    let mut posts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let body = event_body("message.new", id);
        let first = replicas[i % 2].url();
        let id2 = id.clone();
        let body2 = body.clone();
        posts.push(tokio::spawn(async move {
            post_until_acknowledged(&first, &id2, &body2).await;
        }));
        // One in ten is retried on the other replica, at the same time.
        if i % 10 == 0 {
            let other = replicas[(i + 1) % 2].url();
            let id3 = id.clone();
            posts.push(tokio::spawn(async move {
                post_until_acknowledged(&other, &id3, &body).await;
            }));
        }
    }
    for p in posts {
        p.await.expect("post task");
    }
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    let got = receiver
        .until_ids(&wanted, Duration::from_secs(30), "every webhook")
        .await;
    let counts = ids_of(&got);
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    assert_eq!(counts.len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_no_webhook_and_shared_dedup_resumes_when_it_is_back() {
    let redis = RedisServer::start().await;
    let mut receiver = Receiver::start().await;
    let (a, b) = two_replicas(&redis, &receiver).await;
    let client = client();

    let mut ids = Vec::new();
    for i in 0..60 {
        if i == 20 {
            redis.stop();
        }
        let id = new_id();
        let daemon = if i % 2 == 0 { &a } else { &b };
        let answer =
            post_signed(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        assert_eq!(
            answer.status,
            200,
            "webhook {i} while Redis is {}: {answer:?}",
            if i < 20 { "up" } else { "down" }
        );
        ids.push(id);
    }
    for daemon in [&a, &b] {
        let unavailable = metric(
            daemon,
            "hookfan_dedup_claims_total",
            "outcome=\"unavailable\"",
        )
        .await
        .unwrap_or(0.0);
        assert!(unavailable >= 1.0, "the fallback is counted: {unavailable}");
        let (status, body) = get(&client, format!("http://{}/readyz", daemon.admin)).await;
        assert_eq!(status, 200, "still ready: {body}");
        assert!(body.contains("degraded"), "{body}");
        assert_eq!(
            metric(daemon, "hookfan_dedup_backend_up", "").await,
            Some(0.0)
        );
    }
    let got = receiver
        .until_ids(
            &ids.iter().cloned().collect(),
            Duration::from_secs(30),
            "every webhook",
        )
        .await;
    assert!(ids_of(&got).values().all(|&n| n == 1));

    // Back: once the replicas reach it again, a retry on the other replica is a duplicate.
    redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    retry_after_reconnect(&a, &b, new_id(), deadline).await;
    let (status, body) = get(&client, format!("http://{}/readyz", a.admin)).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
}

/// Posts fresh ids to A then B until B answers duplicate (shared dedup is back).
async fn retry_after_reconnect(
    a: &Daemon,
    b: &Daemon,
    mut id: String,
    deadline: tokio::time::Instant,
) {
    loop {
        let body = event_body("message.new", &id);
        post_until_acknowledged(&a.url(), &id, &body).await;
        let second = post_until_acknowledged(&b.url(), &id, &body).await;
        if second.body == "duplicate: already stored\n" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shared dedup did not resume: {second:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        id = new_id();
    }
}

/// A TCP proxy in front of Redis whose answers can be held back: a replica behind it sends its
/// claim, Redis takes it, and the replica waits for the answer for as long as the test likes.
struct HoldingProxy {
    addr: std::net::SocketAddr,
    hold: tokio::sync::watch::Sender<bool>,
}

impl HoldingProxy {
    async fn start(upstream: &str) -> HoldingProxy {
        let upstream: std::net::SocketAddr = upstream
            .trim_start_matches("redis://")
            .trim_end_matches("/0")
            .parse()
            .expect("a redis://host:port/0 URL");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(upstream)
                    .await
                    .expect("connect to Redis");
                tokio::spawn(Self::pipe(client, server, held.clone()));
            }
        });
        HoldingProxy { addr, hold }
    }

    /// Requests go on reaching Redis; from now on its answers wait in the proxy.
    fn hold(&self) {
        self.hold.send_replace(true);
    }

    fn release(&self) {
        self.hold.send_replace(false);
    }

    fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    async fn pipe(
        client: tokio::net::TcpStream,
        server: tokio::net::TcpStream,
        mut held: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let requests = tokio::io::copy(&mut client_read, &mut server_write);
        let answers = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                let _ = held.wait_for(|held| !*held).await;
                client_write.write_all(&buf[..n]).await?;
            }
        };
        // Either side closing ends the connection (a killed replica's answers are never sent).
        tokio::select! {
            _ = requests => {}
            _ = answers => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_while_holding_a_claim_loses_nothing_and_its_id_is_taken_over_once_the_claim_expires(
) {
    let redis = RedisServer::start().await;
    let proxy = HoldingProxy::start(&redis.url()).await;
    let mut receiver = Receiver::start().await;
    let prefix = format!("it:{}:", new_id());
    let config = |url: &str| {
        Config::default()
            .top_level(format!(
                "dedup:\n  backend: redis\n  url: \"{url}\"\n  key_prefix: \"{prefix}\"\n  timeout: 2s\n  pending_ttl: 6s"
            ))
            .route(HttpRoute::new("everything", receiver.url()))
    };
    // A reaches Redis through the proxy, B directly.
    let mut a = Daemon::start(config(&proxy.url())).await;
    let b = Daemon::start(config(&redis.url())).await;
    until_shared(&a).await;
    until_shared(&b).await;
    let client = client();

    // Acknowledged by A before it dies: delivered whatever happens next.
    let mut acked = HashSet::new();
    for _ in 0..10 {
        let id = new_id();
        post_ok(&client, &a.url(), &id, &event_body("message.new", &id)).await;
        acked.insert(id);
    }

    // A claims `held` on Redis and waits for the answer, which the proxy keeps back; A dies
    // there, holding a pending claim and having stored nothing.
    proxy.hold();
    let held = new_id();
    let body = event_body("message.new", &held);
    let request = tokio::spawn({
        let (url, id, body, client) = (a.url(), held.clone(), body.clone(), client.clone());
        async move {
            let signature = sign(SECRET, &body);
            let headers = stream_headers(&id, &signature);
            send(&client, reqwest::Method::POST, &url, body.clone(), &headers).await
        }
    });
    let key = format!("{prefix}{held}");
    poll_until(Duration::from_secs(10), "A's claim on Redis", || {
        (redis.cli(&["GET", &key]).trim() == "pending").then_some(())
    })
    .await;
    a.kill9();
    let answer = request.await.expect("request task");
    assert!(
        answer.as_ref().map_or(true, |a| a.status != 200),
        "a replica killed before storing never acknowledges: {answer:?}"
    );

    // Stream retries on B: 503 while the dead replica's claim lasts, then B takes the id over.
    let first = post_signed(&client, &b.url(), &held, &body).await;
    assert_eq!(first.status, 503, "the claim is still pending: {first:?}");
    assert!(
        first.headers.contains_key("retry-after"),
        "503 tells Stream when to retry: {first:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let answer = post_signed(&client, &b.url(), &held, &body).await;
        match answer.status {
            200 => break answer,
            503 => assert!(
                tokio::time::Instant::now() < deadline,
                "B never took over the expired claim: {answer:?}"
            ),
            _ => panic!("B answered {answer:?}"),
        }
        // Like Stream's retries: a while apart.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        stored.body, "stored\n",
        "B stores it once the claim expired"
    );

    // A comes back on its volume: what it acknowledged is delivered; `held` was never its.
    proxy.release();
    a.restart().await;
    let mut wanted = acked.clone();
    wanted.insert(held.clone());
    let got = receiver
        .until_ids(
            &wanted,
            Duration::from_secs(30),
            "every acknowledged webhook",
        )
        .await;
    assert_eq!(
        ids_of(&got).get(&held),
        Some(&1),
        "the id the dead replica claimed is delivered once, by B"
    );
}
