//! Pacing (`rate_limit:`) end to end, against a real HTTP handler: a backlog drains at the
//! route's rate after one burst, a reload to a higher rate speeds the drain up without a
//! restart, and `kill -9` in the middle of a paced drain loses nothing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Posts `n` events to `url` (16 at a time, so they are stored well ahead of a 100/s
/// drain), on a task of its own: the test meanwhile takes the deliveries as they come, so the
/// times it sees are theirs. Returns the task, which gives the ids.
fn post_events(url: String, prefix: &str, n: usize) -> tokio::task::JoinHandle<Vec<String>> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:04}")).collect();
    tokio::spawn(async move { post_all(url, ids).await })
}

async fn post_all(url: String, ids: Vec<String>) -> Vec<String> {
    let client = client();
    for chunk in ids.chunks(16) {
        let mut posts = tokio::task::JoinSet::new();
        for id in chunk {
            let (client, url, id) = (client.clone(), url.clone(), id.clone());
            posts.spawn(async move {
                post_ok(&client, &url, &id, &event_body("message.new", &id)).await
            });
        }
        while let Some(done) = posts.join_next().await {
            done.expect("a post panicked");
        }
    }
    ids
}

/// Receives until `n` distinct ids arrived; returns each first arrival and when the receiver
/// read it, in order.
async fn arrivals(receiver: &mut Receiver, n: usize, within: Duration) -> Vec<(String, Instant)> {
    let mut seen = HashSet::new();
    let mut got = Vec::new();
    while seen.len() < n {
        let r = receiver.next_within(within, "a paced delivery").await;
        let id = r.webhook_id().to_string();
        if seen.insert(id.clone()) {
            got.push((id, r.at));
        }
    }
    got
}

/// How much later than its send an HTTP delivery may reach the receiver on a busy 2-core
/// machine (the test suite runs beside it): the receiver sees sends a second apart at most
/// this much closer together. 50 ms was seen to be too little under a parallel build.
const DELIVERY_JITTER: Duration = Duration::from_millis(250);

/// The most arrivals in any one-second window of sends: arrivals within a second less
/// [`DELIVERY_JITTER`] of each other. (The send times themselves are checked exactly, on a
/// paused clock, in `deliver::tests`.)
fn busiest_second(times: &[Instant]) -> usize {
    let window = Duration::from_secs(1) - DELIVERY_JITTER;
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_at_the_routes_rate_after_one_burst() {
    let mut receiver = Receiver::start().await;
    let config = Config::default().route(
        HttpRoute::new("crm", receiver.url())
            .concurrency(16)
            .rate_limit("100/s", Some(100)),
    );
    let daemon = Daemon::start(config).await;
    let posting = post_events(daemon.url(), "paced", 600);
    let got = arrivals(&mut receiver, 600, Duration::from_secs(5)).await;
    let ids = posting.await.expect("posting");
    let times: Vec<Instant> = got.iter().map(|(_, t)| *t).collect();
    let took = times[599].duration_since(times[0]);
    // 5 s at the rate; a starved daemon can only be slower (tokens beyond the burst are not
    // kept), hence the slack above.
    assert!(
        took >= Duration::from_millis(4800) && took <= Duration::from_secs(7),
        "600 events behind 100/s with a burst of 100 took {took:?}"
    );
    let busiest = busiest_second(&times);
    assert!(busiest <= 200, "{busiest} arrived in one second");
    let arrived: HashSet<String> = got.into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        arrived,
        ids.into_iter().collect::<HashSet<_>>(),
        "none lost"
    );

    // The admin API shows the limit and the rate.
    let (_, body) = get(&client(), format!("http://{}/api/routes", daemon.admin)).await;
    let routes: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(routes[0]["rate_limit"], "100/s, burst 100", "{routes}");
    let status = daemon.cli(&["status"]).await;
    assert!(
        status.contains("(limit 100/s, burst 100)"),
        "hookfan status shows the limit:\n{status}"
    );
    let throttled = metric(
        &daemon,
        "hookfan_delivery_throttled_seconds_total",
        "route=\"crm\"",
    )
    .await
    .unwrap_or(0.0);
    // Held back while more was due than tokens: most of the drain when the posts outrun it,
    // less on a machine so busy that they do not (the queue then runs dry at times).
    assert!(
        throttled >= 0.5 && throttled <= took.as_secs_f64() + 0.5,
        "throttled for {throttled} s of a {took:?} paced drain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_higher_rate_speeds_the_drain_up_without_a_restart() {
    let mut receiver = Receiver::start().await;
    let url = receiver.url();
    let route = |rate: &str| {
        HttpRoute::new("crm", url.clone())
            .concurrency(16)
            .rate_limit(rate, Some(100))
    };
    let daemon = Daemon::start(Config::default().route(route("100/s"))).await;
    let posting = post_events(daemon.url(), "reload", 600);
    let first = arrivals(&mut receiver, 150, Duration::from_secs(5)).await;
    posting.await.expect("posting");
    let reloaded_at = Instant::now();
    daemon.rewrite_config(&Config::default().route(route("400/s")));
    daemon.sighup();
    let rest = arrivals(&mut receiver, 450, Duration::from_secs(5)).await;
    let took = rest.last().unwrap().1.duration_since(reloaded_at);
    // At 100/s the other 450 would take 4.5 s; at 400/s about 1 s, plus the reload.
    assert!(
        took < Duration::from_millis(2500),
        "the last 450 took {took:?} after the reload to 400/s"
    );
    let all: HashSet<String> = first
        .iter()
        .chain(&rest)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        all.len() >= 600,
        "every event delivered ({} distinct)",
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_paced_drain_loses_nothing() {
    let mut receiver = Receiver::start().await;
    let config = Config::default().route(
        HttpRoute::new("crm", receiver.url())
            .concurrency(4)
            .rate_limit("100/s", Some(20)),
    );
    let mut daemon = Daemon::start(config).await;
    let ids = post_events(daemon.url(), "killed", 300)
        .await
        .expect("posting");
    let before = arrivals(&mut receiver, 100, Duration::from_secs(5)).await;
    daemon.kill9();
    daemon.restart().await;
    let mut seen: HashSet<String> = before.into_iter().map(|(id, _)| id).collect();
    let wanted: HashSet<String> = ids.into_iter().collect();
    let missing: HashSet<String> = wanted.difference(&seen).cloned().collect();
    for r in receiver
        .until_ids(&missing, Duration::from_secs(15), "after the restart")
        .await
    {
        seen.insert(r.webhook_id().to_string());
    }
    assert!(
        wanted.is_subset(&seen),
        "every acknowledged event delivered"
    );
}
