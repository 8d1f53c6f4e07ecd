//! Shared dedup on every kind of Redis hookfan supports, each a real redis-server on loopback:
//! TLS with a private CA and a client certificate (`rediss://` + `dedup.tls`), a three-master
//! Redis Cluster (`dedup.cluster`), and a master found through Sentinel (`dedup.sentinel`),
//! followed through a failover. The same webhook sent to two replicas is delivered once.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::*;
use crate::redis::{RedisCluster, RedisSentinel, RedisServer, TestPki, SENTINEL_MASTER};

/// Two replicas with `dedup` (the YAML under `dedup:`, indented by two), delivering to
/// `receiver`, once both have reached Redis.
async fn two_replicas(dedup: &str, receiver: &Receiver) -> (Daemon, Daemon) {
    let config = Config::default()
        .top_level(format!(
            "dedup:\n  backend: redis\n  key_prefix: \"it:{}:\"\n{dedup}",
            new_id()
        ))
        .route(HttpRoute::new("everything", receiver.url()));
    let (a, b) = (
        Daemon::start(config.clone()).await,
        Daemon::start(config).await,
    );
    for daemon in [&a, &b] {
        until_connected(daemon, 1).await;
    }
    (a, b)
}

/// Waits until `daemon` has connected to Redis `times` times in all.
async fn until_connected(daemon: &Daemon, times: usize) {
    poll_until(
        Duration::from_secs(30),
        "the replica to reach Redis",
        || {
            (daemon
                .logs()
                .matches("webhook ids are shared with the other replicas")
                .count()
                >= times)
                .then_some(())
        },
    )
    .await;
}

/// Sends one new webhook to `a`, then the same to `b` (a retry of Stream's landing on the
/// other replica): `a` stores it, `b` finds it stored. Returns its id.
async fn once_across(a: &Daemon, b: &Daemon) -> String {
    let client = client();
    let id = new_id();
    let body = event_body("message.new", &id);
    let first = post_signed(&client, &a.url(), &id, &body).await;
    assert_eq!(
        (first.status, first.body.as_str()),
        (200, "stored\n"),
        "{first:?}"
    );
    let retry = post_signed(&client, &b.url(), &id, &body).await;
    assert_eq!(
        (retry.status, retry.body.as_str()),
        (200, "duplicate: already stored\n"),
        "the other replica finds it stored on Redis: {retry:?}"
    );
    id
}

/// Both replicas say shared dedup is up: the gauge, and `/readyz` without `degraded`.
async fn assert_shared(replicas: [&Daemon; 2]) {
    for daemon in replicas {
        assert_eq!(
            metric(daemon, "hookfan_dedup_backend_up", "").await,
            Some(1.0)
        );
        let (status, body) = get(&client(), format!("http://{}/readyz", daemon.admin)).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("degraded"), "{body}");
    }
}

/// Each of `ids` reaches the receiver exactly once.
async fn assert_delivered_once(receiver: &mut Receiver, ids: &[String]) {
    let wanted: HashSet<String> = ids.iter().cloned().collect();
    let got = receiver
        .until_ids(&wanted, DELIVERY_TIMEOUT, "every webhook")
        .await;
    let counts = count_by_id(&got);
    for id in ids {
        assert_eq!(counts.get(id), Some(&1), "{id}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_and_a_client_certificate_shares_dedup() {
    let pki = TestPki::new();
    // Mutual TLS: the server refuses a client without a certificate signed by the CA.
    let redis = RedisServer::start_tls(&pki, true).await;
    let mut receiver = Receiver::start().await;
    let dedup = format!(
        "  url: \"{}\"\n  tls:\n    ca_file: \"{}\"\n    cert_file: \"{}\"\n    key_file: \"{}\"",
        redis.url(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    assert!(redis.url().starts_with("rediss://"));
    let (a, b) = two_replicas(&dedup, &receiver).await;
    let id = once_across(&a, &b).await;
    assert_shared([&a, &b]).await;
    assert_delivered_once(&mut receiver, &[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_to_a_server_whose_ca_is_not_trusted_never_connects_and_falls_back_to_local_dedup() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(&pki, false).await;
    let receiver = Receiver::start().await;
    // No dedup.tls: the system's roots do not know the throwaway CA.
    let config = Config::default()
        .top_level(format!(
            "dedup:\n  backend: redis\n  url: \"{}\"",
            redis.url()
        ))
        .route(HttpRoute::new("everything", receiver.url()));
    let daemon = Daemon::start(config).await;
    poll_until(
        Duration::from_secs(15),
        "a warning about the certificate",
        || {
            let logs = daemon.logs();
            (logs.contains("shared dedup: Redis is unavailable") && logs.contains("cannot connect"))
                .then_some(())
        },
    )
    .await;
    let id = new_id();
    let answer = post_signed(
        &client(),
        &daemon.url(),
        &id,
        &event_body("message.new", &id),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "never a 5xx because dedup is down: {answer:?}"
    );
    assert_eq!(
        metric(&daemon, "hookfan_dedup_backend_up", "").await,
        Some(0.0)
    );
    assert!(
        !daemon.logs().contains("webhook ids are shared"),
        "an untrusted certificate is never accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_of_three_masters_shares_dedup_across_its_slots() {
    let cluster = RedisCluster::start().await;
    let mut receiver = Receiver::start().await;
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    // One seed is enough: the client learns the other masters from it.
    let (a, b) = two_replicas(&format!("  cluster:\n    nodes: [{}]", nodes[0]), &receiver).await;
    // Ids until their keys have landed on every master's slots. A key's master is its hash
    // slot's: with 12 ids one master gets none about once in 40 runs, so go on (up to 60
    // ids, when that chance is 1 in 10^10) rather than count on 12.
    let keys_per_node = || -> Vec<usize> {
        cluster
            .nodes
            .iter()
            .map(|n| n.cli(&["dbsize"]).trim().parse().expect("dbsize"))
            .collect()
    };
    let mut ids = Vec::new();
    while ids.len() < 60 && (ids.len() < 12 || keys_per_node().contains(&0)) {
        ids.push(once_across(&a, &b).await);
    }
    let spread = keys_per_node();
    assert!(
        spread.iter().all(|n| *n > 0),
        "the claims are spread over the masters: {spread:?} after {} ids",
        ids.len()
    );
    assert_shared([&a, &b]).await;
    assert_delivered_once(&mut receiver, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_found_through_sentinel_shares_dedup_and_is_followed_through_a_failover() {
    let redis = RedisSentinel::start().await;
    let mut receiver = Receiver::start().await;
    let (a, b) = two_replicas(
        &format!(
            "  sentinel:\n    master: {SENTINEL_MASTER}\n    nodes: [\"{}\"]",
            redis.sentinel_url()
        ),
        &receiver,
    )
    .await;
    let mut ids = vec![once_across(&a, &b).await];
    assert_shared([&a, &b]).await;
    let old_master = redis.master_port();

    redis.fail_over().await;
    assert_ne!(redis.master_port(), old_master);
    // Webhooks keep being acknowledged; the first failures make each replica ask the
    // sentinel again, and it names the promoted replica.
    let client = client();
    for daemon in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while daemon
            .logs()
            .matches("webhook ids are shared with the other replicas")
            .count()
            < 2
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replica did not follow the failover: {}",
                daemon.logs()
            );
            let id = new_id();
            let answer =
                post_signed(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
            assert_eq!(answer.status, 200, "during the failover: {answer:?}");
            ids.push(id);
            // Paced like light traffic: each webhook is what makes a replica notice the
            // failover, and a flood would only fill the spool.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ids.push(once_across(&a, &b).await);
    ids.push(once_across(&b, &a).await);
    assert_shared([&a, &b]).await;
    assert_delivered_once(&mut receiver, &ids).await;
}
