//! `hookfan drain`: a replica about to be retired stops taking webhooks (its port refuses
//! connections, `/readyz` turns 503 so the load balancer moves traffic), delivers everything it
//! acknowledged, and says when its spool is empty.

use std::collections::HashSet;

use crate::harness::*;

/// Sends `n` webhooks, each acknowledged (so stored) before the next; returns their ids.
async fn acknowledged(daemon: &Daemon, n: usize) -> HashSet<String> {
    let client = client();
    let mut ids = HashSet::new();
    for _ in 0..n {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    ids
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn assert_refuses_webhooks(daemon: &Daemon) {
    // Its own socket, not a connection attempt: once closed, the port is free, and a test
    // running beside this one may bind it.
    assert!(
        !daemon.listens_on(daemon.addr.port()),
        "a drained replica closes its webhook port"
    );
    let (status, body) = get(&client(), format!("http://{}/readyz", daemon.admin)).await;
    assert_eq!(status, 503, "readyz while draining: {body}");
    assert!(body.contains("draining"), "readyz says why: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_webhooks_and_exits_0_only_once_the_backlog_is_delivered() {
    let mut handler = Receiver::start().await;
    // The handler is down: every acknowledged webhook waits in the spool.
    handler.stop().await;
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("handler", handler.url()))).await;
    let ids = acknowledged(&daemon, 20).await;
    assert!(
        daemon.listens_on(daemon.addr.port()),
        "before the drain, the webhook port is the daemon's"
    );

    // With the backlog stuck, the drain gives up at its deadline, says what is left, and the
    // replica stays drained.
    let out = daemon.cli_output(&["drain", "--timeout", "2s"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a drain past its deadline fails: {stderr}"
    );
    assert!(
        stderr.contains("drain deadline (2s) reached with 20 events pending (handler: 20)"),
        "says what is left: {stderr}"
    );
    assert!(
        text(&out.stdout).contains("20 pending (handler: 20)"),
        "progress is printed: {}",
        text(&out.stdout)
    );
    assert_refuses_webhooks(&daemon).await;

    // The handler comes back: the drain waits for every delivery and then exits 0.
    handler.restart().await;
    let out = daemon.cli_output(&["drain", "--timeout", "15s"]).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "drain with a healthy handler: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("nothing pending, no dead letters"),
        "says the spool is empty: {stdout}"
    );
    // Everything acknowledged before the drain was delivered by the time it returned (the
    // handler answers 200 to everything since its restart).
    let delivered: HashSet<String> = handler
        .drain_now()
        .iter()
        .map(|r| r.webhook_id().to_owned())
        .collect();
    assert_eq!(delivered, ids, "every acknowledged event delivered");
    assert_refuses_webhooks(&daemon).await;
    let status = daemon.cli(&["status"]).await;
    assert!(
        status.starts_with("DRAINING (hookfan drain): webhooks are refused, deliveries go on\n"),
        "status says the replica is drained: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_does_not_call_a_spool_with_dead_letters_empty() {
    let handler = Receiver::start().await;
    // 400 is permanent: the events become dead letters at once.
    handler.set_default_reply(Reply::status(400));
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("handler", handler.url()))).await;
    let ids = acknowledged(&daemon, 3).await;
    assert!(daemon.listens_on(daemon.addr.port()));
    for id in &ids {
        daemon.until_dead_lettered(id).await;
    }

    let out = daemon.cli_output(&["drain", "--timeout", "10s"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing is pending, but 3 dead letters remain in the spool (handler: 3)"),
        "names what is left and what to do: {stderr}"
    );

    // Once they are dealt with, the spool is empty.
    daemon.cli(&["dead-letters", "drop"]).await;
    let stdout = daemon.cli(&["drain", "--timeout", "10s"]).await;
    assert!(
        stdout.contains("nothing pending, no dead letters"),
        "{stdout}"
    );
}
