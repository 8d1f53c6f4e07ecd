//! Durability under load: `kill -9` and `SIGTERM` while Stream-like clients
//! keep posting. Every request answered 200 must reach the receiver.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};

use crate::harness::*;

/// Requests in one run, all with distinct ids.
const TOTAL: usize = 300;
/// Concurrent posting tasks.
const TASKS: usize = 8;
/// The daemon is stopped once this many requests were acknowledged.
const STOP_AFTER_ACKS: usize = 100;
/// How long a client waits for the next daemon after a failed request.
const NEXT_DAEMON_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the clients post: the `generation`-th daemon's URL.
#[derive(Clone, Debug)]
struct Target {
    generation: u32,
    url: String,
}

/// Posts `ids` one after another. A request that gets 200 is reported on
/// `acked`. One that fails (connection error, or 503 while the daemon shuts
/// down) is not acknowledged: like Stream, the client retries it, against the
/// next daemon once the test publishes one.
async fn post_all(
    client: reqwest::Client,
    ids: Vec<String>,
    mut target: watch::Receiver<Target>,
    acked: mpsc::UnboundedSender<(String, u32)>,
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
            let failure = match outcome {
                Ok(answer) if answer.status == 200 => {
                    let _ = acked.send((id.clone(), generation));
                    break;
                }
                Ok(answer) if answer.status == 503 => {
                    assert!(
                        answer.headers.contains_key("retry-after"),
                        "{id}: a 503 must carry Retry-After: {answer:?}"
                    );
                    format!("503 {answer:?}")
                }
                Ok(answer) => {
                    panic!("{id}: unexpected answer from daemon #{generation}: {answer:?}")
                }
                Err(e) => format!("{e:?}"),
            };
            timeout(
                NEXT_DAEMON_TIMEOUT,
                target.wait_for(|t| t.generation > generation),
            )
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{id} failed against daemon #{generation} ({failure}) and no newer daemon \
                     came within {NEXT_DAEMON_TIMEOUT:?}"
                )
            })
            .expect("the test keeps the target sender");
        }
    }
}

struct Load {
    target: watch::Sender<Target>,
    acked_rx: mpsc::UnboundedReceiver<(String, u32)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Acknowledged ids, with the generation of the daemon that acked them.
    acked: Vec<(String, u32)>,
    deadline: Instant,
}

impl Load {
    fn start(daemon: &Daemon, prefix: &str) -> Load {
        let (target, target_rx) = watch::channel(Target {
            generation: 1,
            url: daemon.url_path("webhooks"),
        });
        let (acked_tx, acked_rx) = mpsc::unbounded_channel();
        let client = client();
        let run = new_id();
        let ids: Vec<String> = (0..TOTAL)
            .map(|i| format!("{prefix}-{run}-{i:04}"))
            .collect();
        let tasks = (0..TASKS)
            .map(|t| {
                let mine: Vec<String> = ids.iter().skip(t).step_by(TASKS).cloned().collect();
                tokio::spawn(post_all(
                    client.clone(),
                    mine,
                    target_rx.clone(),
                    acked_tx.clone(),
                ))
            })
            .collect();
        Load {
            target,
            acked_rx,
            tasks,
            acked: Vec::new(),
            deadline: Instant::now() + Duration::from_secs(60),
        }
    }

    /// Waits until at least `n` requests were acknowledged.
    async fn until_acked(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked.len() < n {
            match timeout_at(deadline, self.acked_rx.recv()).await {
                Ok(Some(ack)) => self.acked.push(ack),
                Ok(None) => panic!("the load finished after only {} acks", self.acked.len()),
                Err(_) => panic!(
                    "only {} of {n} requests acknowledged within 20s",
                    self.acked.len()
                ),
            }
        }
    }

    /// Points the clients at the restarted daemon.
    fn retarget(&self, daemon: &Daemon, generation: u32) {
        self.target.send_replace(Target {
            generation,
            url: daemon.url_path("webhooks"),
        });
    }

    /// Waits for every client to finish; returns all acknowledged ids.
    async fn finish(mut self) -> Vec<(String, u32)> {
        loop {
            match timeout_at(self.deadline, self.acked_rx.recv()).await {
                Ok(Some(ack)) => self.acked.push(ack),
                Ok(None) => break,
                Err(_) => panic!(
                    "the load did not finish in time: {} of {TOTAL} acknowledged",
                    self.acked.len()
                ),
            }
        }
        for task in self.tasks {
            task.await
                .expect("a posting task failed (see its panic above)");
        }
        self.acked
    }
}

/// What the receiver got up to now (call right after the daemon stopped);
/// requires that some acknowledged ids had not reached it yet: those can only
/// be delivered from the spool by the next daemon.
fn undelivered_at_stop(receiver: &mut Receiver, load: &Load, seen: &mut Vec<Recorded>) {
    seen.extend(receiver.drain_now());
    let received: HashSet<&str> = seen.iter().map(Recorded::webhook_id).collect();
    let undelivered = load
        .acked
        .iter()
        .filter(|(id, _)| !received.contains(id.as_str()))
        .count();
    eprintln!(
        "[test] at the stop: {} acknowledged, {} requests received, {undelivered} acknowledged \
         but not yet received",
        load.acked.len(),
        seen.len()
    );
    assert!(
        undelivered > 0,
        "test setup: the slow receiver should have left acknowledged events undelivered \
         at the stop, so that the restart has to deliver them from the spool"
    );
}

/// Every acknowledged id must reach the receiver (`seen`: what it got
/// before); returns how many deliveries were duplicates.
async fn assert_all_acked_delivered(
    receiver: &mut Receiver,
    acked: &[(String, u32)],
    seen: Vec<Recorded>,
    what: &str,
) -> usize {
    let ids: HashSet<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids.len(),
        acked.len(),
        "an id was acknowledged twice by the clients' own bookkeeping"
    );
    let by_first = acked.iter().filter(|(_, g)| *g == 1).count();
    let already: HashSet<&str> = seen.iter().map(Recorded::webhook_id).collect();
    let missing: HashSet<String> = ids
        .iter()
        .filter(|id| !already.contains(id.as_str()))
        .cloned()
        .collect();
    let mut got = seen.clone();
    got.extend(
        receiver
            .until_ids(&missing, Duration::from_secs(20), what)
            .await,
    );
    got.extend(receiver.drain_now());
    let counts = count_by_id(&got);
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    let foreign: Vec<&String> = counts.keys().filter(|id| !ids.contains(*id)).collect();
    eprintln!(
        "[test] {what}: {} acknowledged ({by_first} by the first daemon), {} deliveries, \
         {duplicates} duplicate deliveries",
        ids.len(),
        got.len()
    );
    assert!(foreign.is_empty(), "deliveries of unknown ids: {foreign:?}");
    for r in &got {
        assert_eq!(
            r.body,
            event_body("message.new", r.webhook_id()).as_slice(),
            "{}: delivered body differs from the posted one",
            r.webhook_id()
        );
    }
    duplicates
}

/// Before the stop the receiver takes 200 ms per request (at most 4 in
/// flight), so at the stop some deliveries are in flight and most
/// acknowledged events are still queued in the spool.
const SLOW: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_request_is_delivered_despite_kill_9_under_load() {
    let mut receiver = Receiver::start().await;
    receiver.set_default_reply(Reply::status(200).delay(SLOW));
    let mut daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    let mut load = Load::start(&daemon, "kill9");
    load.until_acked(STOP_AFTER_ACKS).await;
    daemon.kill9();
    let mut seen = Vec::new();
    undelivered_at_stop(&mut receiver, &load, &mut seen);
    receiver.set_default_reply(Reply::status(200));
    daemon.restart().await;
    load.retarget(&daemon, 2);
    let acked = load.finish().await;
    assert_eq!(
        acked.len(),
        TOTAL,
        "every request is eventually acknowledged"
    );
    assert_all_acked_delivered(&mut receiver, &acked, seen, "kill -9 under load").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_every_acknowledged_event_is_delivered() {
    let mut receiver = Receiver::start().await;
    receiver.set_default_reply(Reply::status(200).delay(SLOW));
    let mut daemon = Daemon::start(
        // A timeout far over the receiver's 200 ms: on a loaded machine no attempt times out
        // (the receiver records each arrival, so a retry would count as a duplicate).
        Config::default().route(HttpRoute::new("to-receiver", receiver.url()).timeout("30s")),
    )
    .await;
    let mut load = Load::start(&daemon, "sigterm");
    load.until_acked(STOP_AFTER_ACKS).await;
    let status = daemon.sigterm_and_wait().await;
    assert!(
        status.success(),
        "SIGTERM under load must end with exit code 0, got {status}"
    );
    let mut seen = Vec::new();
    undelivered_at_stop(&mut receiver, &load, &mut seen);
    receiver.set_default_reply(Reply::status(200));
    daemon.restart().await;
    load.retarget(&daemon, 2);
    let acked = load.finish().await;
    assert_eq!(
        acked.len(),
        TOTAL,
        "every request is eventually acknowledged"
    );
    let duplicates =
        assert_all_acked_delivered(&mut receiver, &acked, seen, "SIGTERM under load").await;
    // Every delivery in flight at the SIGTERM was answered within the grace (10 s against the
    // receiver's 200 ms) and its outcome committed before the exit: none is sent again (and
    // none timed out before: see the route's timeout).
    assert_eq!(
        duplicates, 0,
        "a graceful stop sent events again that it had delivered"
    );
}
