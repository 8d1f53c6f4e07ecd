//! The admin listener (health, readiness, metrics), dead-letter replay and `hookfan status`,
//! from outside.

use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_on_the_admin_port_and_not_on_the_webhook_port() {
    let daemon = Daemon::start(Config::default().file_route("to-file", "events.jsonl")).await;
    let client = client();
    assert_eq!(
        get(&client, format!("http://{}/healthz", daemon.admin)).await,
        (200, "ok\n".into())
    );
    assert_eq!(
        get(&client, format!("http://{}/readyz", daemon.admin)).await,
        (200, "ready\n".into())
    );
    // The public port takes webhooks only: a GET there is refused, whatever the path.
    assert_eq!(
        get(&client, format!("{}/metrics", daemon.url())).await.0,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_with_the_reason_when_the_data_dir_cannot_be_written() {
    let daemon = Daemon::start(Config::default().file_route("to-file", "events.jsonl")).await;
    let client = client();
    // Tests may run as root, whom file modes do not stop: block the probe's own path instead.
    let probe = daemon.dir().join("data").join(".hookfan-ready-probe");
    std::fs::create_dir(&probe).expect("block the readiness probe");
    let (status, body) = get(&client, format!("http://{}/readyz", daemon.admin)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is not writable"), "{body}");
    std::fs::remove_dir(&probe).unwrap();
    assert_eq!(
        get(&client, format!("http://{}/readyz", daemon.admin))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_of_ingest_and_delivery() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("to-receiver", receiver.url()).event_types(&["reaction.*"]))
            .route(
                HttpRoute::new("chat-only", closed_port_url())
                    .event_types(&["message.*"])
                    .enabled(false),
            ),
    )
    .await;
    let client = client();
    // First event: 503 (retried), then delivered. Second: 400 (dead-lettered).
    receiver.push_replies([Reply::status(503)]);
    let first = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &first,
        &event_body("reaction.new", &first),
    )
    .await;
    receiver.next_n(2, "the 503 and the retry").await;
    receiver.push_replies([Reply::status(400)]);
    let second = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &second,
        &event_body("reaction.new", &second),
    )
    .await;
    receiver.next("the attempt answered 400").await;
    // An event no enabled route takes (chat-only is disabled): acknowledged, not stored.
    let unrouted = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &unrouted,
        &event_body("message.new", &unrouted),
    )
    .await;
    // A duplicate, a forged signature, a GET.
    post_ok(
        &client,
        &daemon.url(),
        &first,
        &event_body("reaction.new", &first),
    )
    .await;
    let forged = post_webhook(
        &client,
        &daemon.url(),
        b"{}",
        &stream_headers("x", &"0".repeat(64)),
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(get(&client, daemon.url()).await.0, 405);

    // Outcomes are counted once the spool has recorded them, a moment after the receiver
    // answered; nothing can be awaited from outside, so poll the scrape with a deadline. A
    // scrape reads the backlog gauges before it renders the counters, so one scrape can
    // show the dead letter counted and not yet in the gauge: wait for both.
    let url = format!("http://{}/metrics", daemon.admin);
    let metrics = eventually(Duration::from_secs(10), "a dead letter counted", || async {
        let (status, body) = get(&client, url.clone()).await;
        assert_eq!(status, 200);
        let dead = r#"route="to-receiver",outcome="dead_lettered""#;
        let gauge = r#"route="to-receiver""#;
        (sample(&body, "hookfan_deliveries_total", dead) == Some(1.0)
            && sample(&body, "hookfan_route_dead_letters", gauge) == Some(1.0))
        .then_some(body)
    })
    .await;
    let expect = [
        (
            "hookfan_webhooks_received_total",
            r#"outcome="accepted""#,
            3.0,
        ),
        (
            "hookfan_webhooks_received_total",
            r#"outcome="duplicate""#,
            1.0,
        ),
        (
            "hookfan_webhooks_received_total",
            r#"outcome="unauthorized""#,
            1.0,
        ),
        (
            "hookfan_webhooks_received_total",
            r#"outcome="method_not_allowed""#,
            1.0,
        ),
        ("hookfan_events_routed_total", r#"route="to-receiver""#, 2.0),
        (
            "hookfan_deliveries_total",
            r#"route="to-receiver",outcome="retried""#,
            1.0,
        ),
        (
            "hookfan_deliveries_total",
            r#"route="to-receiver",outcome="delivered""#,
            1.0,
        ),
        (
            "hookfan_deliveries_total",
            r#"route="to-receiver",outcome="dead_lettered""#,
            1.0,
        ),
        ("hookfan_ingest_ack_seconds_count", "", 6.0),
        ("hookfan_events_unrouted_total", "", 1.0),
        // Present from the start at 0: a commit fails only on a full or broken disk.
        ("hookfan_spool_commit_failures_total", "", 0.0),
        ("hookfan_config_reloads_total", r#"outcome="failure""#, 0.0),
        (
            "hookfan_delivery_latency_seconds_count",
            r#"route="to-receiver""#,
            1.0,
        ),
    ];
    for (name, labels, want) in expect {
        assert_eq!(
            sample(&metrics, name, labels),
            Some(want),
            "{name}{{{labels}}} in:\n{metrics}"
        );
    }
    for name in [
        "hookfan_spool_commits_total",
        "hookfan_spool_commit_batch_size_count",
        "hookfan_spool_commit_seconds_count",
        "hookfan_spool_disk_bytes",
    ] {
        assert!(
            sample(&metrics, name, "").is_some_and(|v| v > 0.0),
            "{name} in:\n{metrics}"
        );
    }
    for (name, labels, want) in [
        ("hookfan_route_pending", r#"route="to-receiver""#, 0.0),
        ("hookfan_route_dead_letters", r#"route="to-receiver""#, 1.0),
        (
            "hookfan_route_oldest_pending_age_seconds",
            r#"route="to-receiver""#,
            0.0,
        ),
        ("hookfan_route_pending", r#"route="chat-only""#, 0.0),
    ] {
        assert_eq!(
            sample(&metrics, name, labels),
            Some(want),
            "{name}{{{labels}}} in:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains(&first) && !metrics.contains(&second),
        "no webhook ids in labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_is_delivered_once_from_attempt_one() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(400)]);
    let mut daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    let client = client();
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    assert_eq!(
        receiver.next("the attempt answered 400").await.webhook_id(),
        id
    );
    daemon.stop_gracefully().await;
    assert_eq!(daemon.dead_letters(None).await.len(), 1);

    // The handler is fixed (the receiver now answers 200); replay only this route's letters.
    let out = daemon
        .cli(&[
            "dead-letters",
            "replay",
            "--route",
            "to-receiver",
            "--id",
            &id,
        ])
        .await;
    assert!(out.contains("1 dead letter replayed"), "{out}");
    assert!(daemon.dead_letters(None).await.is_empty());

    daemon.restart().await;
    let again = receiver.next("the replayed event").await;
    assert_eq!(again.webhook_id(), id);
    assert_eq!(again.attempt(), "1", "a replay starts again at attempt 1");
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(
        before_marker.is_empty(),
        "delivered once: {} more",
        before_marker.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_dead_letters_are_gone_and_never_delivered() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(422), Reply::status(422)]);
    let mut daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    let client = client();
    for _ in 0..2 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    }
    receiver.next_n(2, "two attempts answered 422").await;
    daemon.stop_gracefully().await;
    let out = daemon.cli(&["dead-letters", "drop"]).await;
    assert!(out.contains("2 dead letters dropped"), "{out}");
    assert!(daemon.dead_letters(None).await.is_empty());
    daemon.restart().await;
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(
        before_marker.is_empty(),
        "dropped letters must not be delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token_when_one_is_set_and_probes_never_do() {
    let daemon = Daemon::start(Config {
        admin_token: Some("admin-secret-token".into()),
        ..Config::default().file_route("to-file", "events.jsonl")
    })
    .await;
    let client = client();
    let api = format!("http://{}/api/routes", daemon.admin);
    assert_eq!(get(&client, api.clone()).await.0, 401);
    let wrong = client.get(&api).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = client
        .get(&api)
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    for open in ["healthz", "readyz", "metrics"] {
        assert_eq!(
            get(&client, format!("http://{}/{open}", daemon.admin))
                .await
                .0,
            200,
            "/{open}"
        );
    }
    // The CLI reads the token from the config.
    let status = daemon.cli(&["status"]).await;
    assert!(status.contains("to-file"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_shows_backlog_progress_and_errors_without_secrets() {
    let mut receiver = Receiver::start().await;
    let daemon = Daemon::start(
        Config::default()
            .route(HttpRoute::new("healthy", receiver.url()).api_secret("resign-secret-value"))
            .route(HttpRoute::new("down", closed_port_url()))
            .route(
                HttpRoute::new("chat-only", closed_port_url())
                    .event_types(&["message.*"])
                    .enabled(false),
            ),
    )
    .await;
    let client = client();
    for _ in 0..3 {
        let id = new_id();
        post_ok(
            &client,
            &daemon.url(),
            &id,
            &event_body("reaction.new", &id),
        )
        .await;
    }
    receiver.next_n(3, "the healthy route's deliveries").await;
    let url = format!("http://{}/api/routes", daemon.admin);
    let what = "the healthy route done and the down one failing";
    let (body, routes) = eventually(Duration::from_secs(10), what, || async {
        let (status, body) = get(&client, url.clone()).await;
        assert_eq!(status, 200, "{body}");
        let routes: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let healthy_done = routes[0]["delivered"] == 3 && routes[0]["pending"] == 0;
        let down_failing = routes[1]["failed"].as_u64().unwrap_or(0) >= 1;
        (healthy_done && down_failing).then_some((body, routes))
    })
    .await;
    assert!(
        !body.contains("resign-secret-value") && !body.contains(SECRET),
        "{body}"
    );
    assert_eq!(routes[0]["name"], "healthy");
    assert_eq!(routes[0]["destination"], "http");
    assert_eq!(routes[0]["target"], receiver.url());
    assert_eq!(routes[0]["dead_letters"], 0);
    assert_eq!(routes[1]["name"], "down");
    assert_eq!(routes[1]["pending"], 3, "{body}");
    assert!(
        routes[1]["oldest_pending_age_seconds"].as_f64().is_some(),
        "{body}"
    );
    assert!(
        routes[1]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(routes[1]["last_error_at"].as_str().is_some(), "{body}");
    assert_eq!(routes[2]["enabled"], false);
    assert_eq!(routes[2]["pending"], 0);

    let table = daemon.cli(&["status"]).await;
    assert!(
        table.contains("ROUTE") && table.contains("PENDING"),
        "{table}"
    );
    let down = table
        .lines()
        .find(|l| l.starts_with("down "))
        .expect("a row for down");
    assert!(down.split_whitespace().nth(1) == Some("3"), "{table}");
    assert!(table.contains("chat-only (disabled)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_while_the_daemon_runs_is_delivered_once() {
    let (mut receiver, daemon, client, id) = one_dead_letter().await;
    let out = daemon.cli(&["dead-letters", "replay", "--id", &id]).await;
    assert!(out.contains("1 dead letter replayed"), "{out}");
    let again = receiver.next("the replayed event, without a restart").await;
    assert_eq!((again.webhook_id(), again.attempt()), (id.as_str(), "1"));
    let before_marker = post_marker_and_await(&client, &daemon, &mut receiver).await;
    assert!(before_marker.is_empty(), "delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dead_letter_is_shown_with_its_body_as_received() {
    let (_receiver, daemon, client, id) = one_dead_letter().await;
    let letters = daemon.dead_letters(None).await;
    let seq = letters[0]["seq"].as_u64().expect("a seq");
    let api = format!("http://{}/api/dead-letters", daemon.admin);
    let one = client
        .get(format!("{api}/to-receiver/{seq}"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status().as_u16(), 200);
    let letter: serde_json::Value = one.json().await.unwrap();
    // The listing's fields, then the event as stored: the body byte for byte.
    for field in [
        "route",
        "seq",
        "webhook_id",
        "event_type",
        "attempts",
        "error",
    ] {
        assert_eq!(letter[field], letters[0][field], "{field}: {letter}");
    }
    let body = event_body("message.new", &id);
    assert_eq!(letter["body"], String::from_utf8(body).unwrap(), "{letter}");
    assert_eq!(letter["body_base64"], serde_json::Value::Null);
    assert_eq!(letter["api_key"], API_KEY);
    assert!(
        letter["error"].as_str().unwrap().contains("400"),
        "{letter}"
    );

    // Nothing there: 404, naming what was asked for; a seq that is not a number: 400.
    for (path, status, says) in [
        (format!("to-receiver/{}", seq + 1), 404, "no dead letter"),
        (format!("no-such-route/{seq}"), 404, "no dead letter"),
        (
            "to-receiver/first".to_string(),
            400,
            "/api/dead-letters/<route>/<seq>",
        ),
    ] {
        let answer = client.get(format!("{api}/{path}")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let why = answer.text().await.unwrap();
        assert!(why.contains(says), "{path}: {why}");
    }
    // The CLI shows it through the same API, the body as received.
    let out = daemon.cli(&["dead-letters", "show", "--id", &id]).await;
    assert!(out.contains("route:       to-receiver"), "{out}");
    assert!(out.contains(&format!("hello from {id}")), "{out}");
    // Replayed, it is no dead letter any more.
    let out = daemon.cli(&["dead-letters", "replay", "--id", &id]).await;
    assert!(out.contains("1 dead letter replayed"), "{out}");
    let gone = client
        .get(format!("{api}/to-receiver/{seq}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routes_recent_failed_attempts_show_the_destinations_answers_newest_first() {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(503), Reply::status(429), Reply::status(400)]);
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    let client = client();
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    receiver.next_n(3, "three attempts").await;
    daemon.until_dead_lettered(&id).await;

    let api = format!("http://{}/api/routes", daemon.admin);
    let answer = client
        .get(format!("{api}/to-receiver/failures"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let failures: Vec<serde_json::Value> = answer.json().await.unwrap();
    let seen: Vec<(u64, &str, bool)> = failures
        .iter()
        .map(|f| {
            assert_eq!(f["webhook_id"], id.as_str(), "{f}");
            assert_eq!(f["event_type"], "message.new", "{f}");
            let error = f["error"].as_str().unwrap();
            let status = ["400", "429", "503"][3 - f["attempt"].as_u64().unwrap() as usize];
            (
                f["attempt"].as_u64().unwrap(),
                f["then"]["kind"].as_str().unwrap(),
                error.contains(status) && error.contains("receiver says hi"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (3, "dead_letter", true),
            (2, "retry", true),
            (1, "retry", true)
        ],
        "{failures:?}"
    );
    let missing = client
        .get(format!("{api}/no-such-route/failures"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert!(missing.text().await.unwrap().contains("no-such-route"));
}

/// A running daemon whose route `to-receiver` has dead-lettered one event (the receiver
/// answered its attempt 400, and answers 200 from then on): the receiver, the daemon, a client
/// and the event's webhook id.
async fn one_dead_letter() -> (Receiver, Daemon, reqwest::Client, String) {
    let mut receiver = Receiver::start().await;
    receiver.push_replies([Reply::status(400)]);
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    let client = client();
    let id = new_id();
    post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    receiver.next("the attempt answered 400").await;
    daemon.until_dead_lettered(&id).await;
    (receiver, daemon, client, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_request_that_cannot_be_understood_is_refused_and_changes_nothing() {
    let (_receiver, daemon, client, id) = one_dead_letter().await;
    let api = format!("http://{}/api/dead-letters", daemon.admin);

    // A mistyped key must not widen the delete to every route's letters.
    let typo = client
        .delete(format!("{api}?rout=to-receiver"))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status().as_u16(), 400);
    let why = typo.text().await.unwrap();
    assert!(why.contains("unknown field `rout`"), "{why}");

    // A replay body is read as JSON whatever its Content-Type: one meant to narrow the replay
    // (here to a route with no letters) never replays everything.
    let narrowed = client
        .post(format!("{api}/replay"))
        .body(r#"{"route": "another-route"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(narrowed.status().as_u16(), 200);
    assert_eq!(narrowed.text().await.unwrap(), r#"{"replayed":0}"#);
    for bad in [
        r#"{"route": "to-receiver", "idz": ["x"]}"#,
        "route=to-receiver",
    ] {
        let refused = client
            .post(format!("{api}/replay"))
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 400, "{bad}");
        let why = refused.text().await.unwrap();
        assert!(why.contains("not a dead-letter selection"), "{bad}: {why}");
    }
    let left = daemon.dead_letters(None).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["webhook_id"], id.as_str(), "{left:?}");

    // Spelled right, the same delete takes the route's letter.
    let dropped = client
        .delete(format!("{api}?route=to-receiver"))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.text().await.unwrap(), r#"{"dropped":1}"#);
    assert!(daemon.dead_letters(None).await.is_empty());
}

/// `hookfan status` in an operator's shell, which has the config but not the daemon's
/// environment: `${STREAM_API_SECRET}` is set for the daemon only, `${HOOKFAN_ADMIN_TOKEN}`
/// for the daemon and, in the second run, for the operator.
fn status_in_a_shell(daemon: &Daemon, admin_token: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookfan"));
    cmd.arg("status")
        .arg("--config")
        .arg(daemon.dir().join("routes.yaml"))
        .env_remove("STREAM_API_SECRET")
        .env_remove("HOOKFAN_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for var in ["http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env_remove(var);
    }
    if let Some(token) = admin_token {
        cmd.env("HOOKFAN_ADMIN_TOKEN", token);
    }
    let out = cmd.output().expect("run hookfan status");
    eprintln!(
        "[status] {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_only_the_admin_settings_not_the_stream_secret() {
    let mut config = Config::default()
        .single_app()
        .env("STREAM_API_SECRET", SECRET)
        .env("HOOKFAN_ADMIN_TOKEN", "admin-token-for-status")
        .file_route("to-file", "events.jsonl");
    config.apps[0].1 = "${STREAM_API_SECRET}".into();
    config.admin_token = Some("${HOOKFAN_ADMIN_TOKEN}".into());
    let daemon = Daemon::start(config).await;

    // Without the admin token it cannot ask, and says which variable it needs.
    let out = tokio::task::block_in_place(|| status_in_a_shell(&daemon, None));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("admin_token is ${HOOKFAN_ADMIN_TOKEN}, which is not set in this shell"),
        "{stderr}"
    );
    assert!(!stderr.contains("STREAM_API_SECRET"), "{stderr}");

    // With it, and still without STREAM_API_SECRET, it prints the route table.
    let out =
        tokio::task::block_in_place(|| status_in_a_shell(&daemon, Some("admin-token-for-status")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ROUTE"), "{stdout}");
    assert!(stdout.contains("to-file"), "{stdout}");
}
