//! Hot reload of routes.yaml: edits and SIGHUP apply without a restart and without losing
//! an event; a broken file changes nothing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

/// Waits until `/api/routes` satisfies `cond` (a reload is applied off the request path, so
/// there is nothing to await but its visible effect).
async fn until_routes(
    client: &reqwest::Client,
    daemon: &Daemon,
    what: &str,
    cond: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let url = format!("http://{}/api/routes", daemon.admin);
    eventually(Duration::from_secs(15), what, || async {
        let (status, body) = get(client, url.clone()).await;
        assert_eq!(status, 200, "{body}");
        let routes: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        cond(&routes).then_some(routes)
    })
    .await
}

/// Waits until `/metrics` counts a failed reload (an edit and a SIGHUP may each cause one).
async fn until_failed_reload(client: &reqwest::Client, daemon: &Daemon) {
    let metrics_url = format!("http://{}/metrics", daemon.admin);
    eventually(
        Duration::from_secs(15),
        "a failed reload counted",
        || async {
            let (_, body) = get(client, metrics_url.clone()).await;
            let failures = sample(
                &body,
                "hookfan_config_reloads_total",
                r#"outcome="failure""#,
            );
            failures.is_some_and(|n| n >= 1.0)
        },
    )
    .await
}

fn names(routes: &[serde_json::Value]) -> Vec<&str> {
    routes.iter().filter_map(|r| r["name"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_applies_under_load_and_no_acknowledged_event_is_lost() {
    let mut steady = Receiver::start().await;
    let mut added = Receiver::start().await;
    let base = Config::default().route(HttpRoute::new("steady", steady.url()));
    let daemon = Daemon::start(base.clone()).await;
    let client = client();
    let url = daemon.url();

    // Load runs from before the edit until after the reload has been seen (bounded).
    let reloaded = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, url, reloaded) = (client.clone(), url.clone(), reloaded.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut after_reload = 0;
            while after_reload < 30 && acked.len() < 5_000 {
                if reloaded.load(Ordering::Relaxed) {
                    after_reload += 1;
                }
                let id = new_id();
                let answer = post_signed(&client, &url, &id, &event_body("message.new", &id)).await;
                assert_eq!(answer.status, 200, "{answer:?}");
                acked.push(id);
            }
            acked
        })
    };
    daemon.rewrite_config(&base.clone().route(HttpRoute::new("added", added.url())));
    until_routes(&client, &daemon, "the added route", |r| {
        names(r) == ["steady", "added"]
    })
    .await;
    reloaded.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    eprintln!("{} events posted across the reload", acked.len());

    let mut want: HashSet<String> = acked.iter().cloned().collect();
    let after = new_id();
    post_ok(&client, &url, &after, &event_body("message.new", &after)).await;
    want.insert(after.clone());
    let got = steady
        .until_ids(
            &want,
            Duration::from_secs(20),
            "every acknowledged event on the steady route",
        )
        .await;
    eprintln!(
        "steady route: {} requests for {} events",
        got.len(),
        want.len()
    );
    // The new route takes what arrives after the reload.
    added
        .until_ids(
            &HashSet::from([after]),
            Duration::from_secs(20),
            "an event after the reload",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_rejected_and_the_old_routes_keep_delivering() {
    let mut receiver = Receiver::start().await;
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("old", receiver.url()))).await;
    let client = client();
    daemon.write_config_text(
        "apps: [{ api_key: k, api_secret: s }]\nroutes:\n  - name: x\n    htp: {}\n",
    );
    daemon.sighup();
    until_failed_reload(&client, &daemon).await;
    assert_eq!(
        get(&client, format!("http://{}/readyz", daemon.admin))
            .await
            .0,
        200
    );
    let routes = until_routes(&client, &daemon, "the old route", |r| names(r) == ["old"]).await;
    assert_eq!(routes.len(), 1);
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    assert_eq!(
        receiver
            .next("delivery by the old route")
            .await
            .webhook_id(),
        id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_limit_the_running_buffer_budget_cannot_hold_is_refused_at_reload() {
    let old = Receiver::start().await;
    let added = Receiver::start().await;
    let base = Config::default().route(HttpRoute::new("old", old.url()));
    let daemon = Daemon::start(base.clone()).await;
    let client = client();
    // Valid as a file (its own max_buffered_bytes default grows with it), but the running
    // budget of 64 MiB, which only a restart changes, could never hold a 100 MiB body.
    daemon.rewrite_config(
        &base
            .clone()
            .max_body_bytes(100 * 1024 * 1024)
            .route(HttpRoute::new("added", added.url())),
    );
    until_failed_reload(&client, &daemon).await;
    let routes = until_routes(&client, &daemon, "the old routes", |_| true).await;
    assert_eq!(
        names(&routes),
        ["old"],
        "nothing of the refused file applies"
    );
    // The same edit within the budget applies.
    daemon.rewrite_config(&base.route(HttpRoute::new("added", added.url())));
    until_routes(&client, &daemon, "the added route", |r| {
        names(r) == ["old", "added"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_destination_applies_to_events_still_pending() {
    let mut receiver = Receiver::start().await;
    let down = Config::default().route(HttpRoute::new("moving", closed_port_url()));
    let daemon = Daemon::start(down).await;
    let client = client();
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    until_routes(&client, &daemon, "five pending events", |r| {
        r[0]["pending"] == 5
    })
    .await;
    daemon.rewrite_config(&Config::default().route(HttpRoute::new("moving", receiver.url())));
    daemon.sighup();
    receiver
        .until_ids(
            &ids,
            Duration::from_secs(20),
            "the pending events at the new URL",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_route_keeps_its_events_and_resumes_when_it_comes_back() {
    let mut receiver = Receiver::start().await;
    let other = Receiver::start().await;
    let keep = Config::default().route(HttpRoute::new("other", other.url()));
    let daemon = Daemon::start(
        keep.clone()
            .route(HttpRoute::new("leaving", closed_port_url())),
    )
    .await;
    let client = client();
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
        ids.insert(id);
    }
    until_routes(&client, &daemon, "three pending", |r| r[1]["pending"] == 3).await;
    daemon.rewrite_config(&keep);
    daemon.sighup();
    // Removed from the config, its events stay on disk and still show.
    let routes = until_routes(&client, &daemon, "the route removed", |r| {
        r.len() == 2 && r[1]["destination"] == "removed from the config"
    })
    .await;
    assert_eq!(names(&routes), ["other", "leaving"]);
    assert_eq!(routes[1]["pending"], 3, "{routes:?}");
    let metrics = get(&client, format!("http://{}/metrics", daemon.admin))
        .await
        .1;
    assert!(
        metrics.contains(r#"hookfan_route_pending{route="leaving"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hookfan_config_reloads_total{outcome="success"} 1"#),
        "{metrics}"
    );
    // Back under the same name, now pointing at a live receiver.
    daemon.rewrite_config(
        &keep
            .clone()
            .route(HttpRoute::new("leaving", receiver.url())),
    );
    daemon.sighup();
    receiver
        .until_ids(
            &ids,
            Duration::from_secs(20),
            "the removed route's events after it came back",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_routes_pending_events_can_be_dropped_explicitly_but_a_running_routes_cannot() {
    let receiver = Receiver::start().await;
    let keep = Config::default().route(HttpRoute::new("running", receiver.url()));
    let daemon = Daemon::start(
        keep.clone()
            .route(HttpRoute::new("gone", closed_port_url())),
    )
    .await;
    let client = client();
    for _ in 0..2 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    }
    let refused = client
        .delete(format!(
            "http://{}/api/routes/running/pending",
            daemon.admin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        409,
        "a running route's queue is not dropped"
    );
    daemon.rewrite_config(&keep);
    daemon.sighup();
    until_routes(&client, &daemon, "gone removed, 2 pending", |r| {
        r.len() == 2 && r[1]["destination"] == "removed from the config" && r[1]["pending"] == 2
    })
    .await;
    let out = daemon.cli(&["drop-pending", "--route", "gone"]).await;
    assert!(
        out.contains("2 pending events of route \"gone\" dropped"),
        "{out}"
    );
    until_routes(&client, &daemon, "gone forgotten", |r| {
        names(r) == ["running"]
    })
    .await;
}
