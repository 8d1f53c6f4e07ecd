//! The web console on the admin port: its assets and `GET /api/config` over HTTP, then the
//! whole console in headless Chromium (`browser`): sign in with the admin token, watch a
//! backlog grow, open a dead letter, replay it and see it delivered, see a reload of
//! routes.yaml appear by itself. Each page's screenshot goes to target/console-screenshots/.

use crate::browser::Browser;
use crate::harness::*;

const TOKEN: &str = "console-admin-token-value";
const RESIGN: &str = "console-resign-secret-value";
/// WebDriver's codes for the Enter and Escape keys.
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";

/// Every secret the console's daemon is configured with.
fn secrets() -> [&'static str; 4] {
    [SECRET, OTHER_SECRET, TOKEN, RESIGN]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_without_the_token_and_its_data_only_with_it() {
    let daemon = Daemon::start(Config {
        admin_token: Some(TOKEN.into()),
        ..Config::default().route(HttpRoute::new("resigned", closed_port_url()).api_secret(RESIGN))
    })
    .await;
    let client = client();
    let admin = format!("http://{}", daemon.admin);
    let page = client.get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'self'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/console/app.js""#), "{html}");
    let script = client
        .get(format!("{admin}/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    assert_eq!(get(&client, format!("{admin}/api/config")).await.0, 401);
    let answer = client
        .get(format!("{admin}/api/config"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.text().await.unwrap();
    for secret in secrets() {
        assert!(
            !text.contains(secret),
            "GET /api/config shows {secret}: {text}"
        );
    }
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["admin_token"], "***");
    assert_eq!(config["apps"][0]["api_key"], API_KEY);
    assert_eq!(config["apps"][0]["api_secret"], "***");
    assert_eq!(config["routes"][0]["name"], "resigned");
    assert_eq!(config["routes"][0]["http"]["api_secret"], "***");
    assert!(
        !daemon.logs().contains(TOKEN),
        "the token must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_console_shows_a_backlog_and_replays_a_dead_letter_until_delivered() {
    // `orders` refuses its first event (400: dead-lettered at once), then takes everything;
    // `backlog` answers 503 to everything, so its pending count only grows.
    let mut orders = Receiver::start().await;
    orders.push_replies([Reply::status(400)]);
    let backlog = Receiver::start().await;
    backlog.set_default_reply(Reply::status(503));
    let config = Config {
        admin_token: Some(TOKEN.into()),
        ..Config::default()
            .route(HttpRoute::new("orders", orders.url()).api_secret(RESIGN))
            .route(HttpRoute::new("backlog", backlog.url()))
    };
    let daemon = Daemon::start(config.clone()).await;
    let client = client();
    let dead = new_id();
    post_ok(
        &client,
        &daemon.url(),
        &dead,
        &event_body("message.new", &dead),
    )
    .await;
    assert_eq!(orders.next("the refused attempt").await.webhook_id(), dead);
    daemon.until_dead_lettered(&dead).await;

    let browser = Browser::start().await;
    let console = format!("http://{}/", daemon.admin);
    browser.goto(&console).await;

    // Signed out: the sign-in page, then the routes with the right token.
    browser.wait_for("#token", "the sign-in page").await;
    browser.screenshot("sign-in").await;
    browser.type_into("#token", "not-the-token").await;
    browser.click("#sign-in").await;
    browser
        .wait_text("form.sign-in .error", "a wrong token is refused", |t| {
            t.contains("refused")
        })
        .await;
    browser.type_into("#token", TOKEN).await;
    browser.click("#sign-in").await;
    let pending = r#"tr[data-route="backlog"] td.pending"#;
    browser
        .wait_text(pending, "backlog holds the first event", |t| t == "1")
        .await;
    browser
        .wait_text(
            r#"tr[data-route="orders"] td.dead"#,
            "orders has one dead letter",
            |t| t == "1",
        )
        .await;
    browser
        .wait_text(
            r#"tr[data-route="backlog"] td.last-error"#,
            "backlog's last error",
            |t| t.contains("503"),
        )
        .await;
    // The backlog grows while the page is open, without a reload.
    for _ in 0..2 {
        let id = new_id();
        post_ok(&client, &daemon.url(), &id, &event_body("message.new", &id)).await;
    }
    browser
        .wait_text(pending, "the backlog grows on screen", |t| t == "3")
        .await;
    orders.next_n(2, "orders takes the later events").await;
    // Charts are computed in the page: a route retrying 503s fails several times a second.
    browser
        .wait_text(
            r#"tr[data-route="backlog"] td.failed .rate"#,
            "backlog's failed/s",
            |t| t.ends_with("/s") && !t.starts_with('–') && t != "0.0/s",
        )
        .await;
    browser
        .wait_for(
            r#"tr[data-route="backlog"] td.failed svg polyline"#,
            "backlog's failed/s chart",
        )
        .await;
    browser
        .wait_until(
            r#"const l = document.querySelector('tr[data-route="backlog"] td.failed polyline');
               return !!l && l.getAttribute("points").split(" ").length >= 4;"#,
            "four points of backlog's failed/s chart",
        )
        .await;
    browser.screenshot("routes").await;

    // One route's page: its state and its dead letter.
    browser.click(r#"tr[data-route="orders"] td.name a"#).await;
    let row = format!(r#"tr[data-webhook-id="{dead}"]"#);
    browser
        .wait_for(&row, "the route page lists its dead letter")
        .await;
    // Its recent failed attempt: the destination's answer, and that it was dead-lettered.
    let failed = format!(r#".recent-failures tr[data-webhook-id="{dead}"]"#);
    let attempt = browser
        .wait_text(&failed, "the route page lists its failed attempt", |t| {
            t.contains("Dead letter")
        })
        .await;
    assert!(attempt.contains("HTTP 400"), "{attempt}");
    browser.screenshot("route").await;

    // The dead letters page: open the letter, replay it (orders now answers 200).
    browser.click(r#"a[data-nav="dead-letters"]"#).await;
    browser
        .wait_text("main h1", "the dead letters page", |t| t == "Dead letters")
        .await;
    browser
        .wait_text(".summary", "the dead letters page", |t| {
            t.starts_with("1 of 1 dead letter")
        })
        .await;
    browser.screenshot("dead-letters").await;
    browser.click(&format!("{row} button.view")).await;
    // Its body as received, read from the spool, indented; its record beside it.
    let hello = format!(r#""text": "hello from {dead}""#);
    let body = browser
        .wait_text("#letter-json", "the letter's body", |t| t.contains(&hello))
        .await;
    assert!(body.contains(r#""type": "message.new""#), "{body}");
    browser
        .wait_text("#letter-body-note", "what the body is", |t| {
            t.ends_with("bytes of JSON, as received (indented here; nothing else changed).")
        })
        .await;
    let facts = browser
        .wait_text("#letter-facts", "the letter's record", |t| {
            t.contains("Posted to")
        })
        .await;
    for fact in ["orders", dead.as_str(), "message.new", "400", API_KEY] {
        assert!(facts.contains(fact), "{fact}: {facts}");
    }
    browser.screenshot("dead-letter").await;
    browser.click("#letter-replay").await;
    browser
        .wait_text("#confirm-text", "the confirmation states how many", |t| {
            t.starts_with("Replay 1 dead letter (orders: 1)?")
        })
        .await;
    browser.screenshot("confirm-replay").await;
    browser.click("#confirm-ok").await;
    let replayed = orders.next("the replayed dead letter").await;
    assert_eq!(
        (replayed.webhook_id(), replayed.attempt()),
        (dead.as_str(), "1")
    );
    browser
        .wait_text("#status", "the console says what it did", |t| {
            t == "1 dead letter replayed."
        })
        .await;
    browser
        .wait_gone(&row, "the replayed letter leaves the list")
        .await;
    browser.click(r#"a[data-nav="routes"]"#).await;
    browser
        .wait_text(
            r#"tr[data-route="orders"] td.dead"#,
            "orders has no dead letter left",
            |t| t == "0",
        )
        .await;

    // Sources (none here) and the running config, secrets masked.
    browser.click(r#"a[data-nav="sources"]"#).await;
    browser
        .wait_text("main", "the sources page", |t| {
            t.contains("No sources configured.")
        })
        .await;
    browser.screenshot("sources").await;
    browser.click(r#"a[data-nav="config"]"#).await;
    let shown = browser
        .wait_text("#config-json", "the running config", |t| {
            t.contains(r#""name": "orders""#)
        })
        .await;
    let page = browser.text("body").await.unwrap_or_default();
    for secret in secrets() {
        assert!(
            !shown.contains(secret) && !page.contains(secret),
            "{secret} shown"
        );
    }
    browser.screenshot("config").await;

    // A reload of routes.yaml shows up by itself.
    daemon.rewrite_config(
        &config
            .clone()
            .route(HttpRoute::new("added-later", orders.url())),
    );
    browser
        .wait_text(
            r#"table.config-routes tr[data-route="added-later"]"#,
            "the reloaded config appears without a page reload",
            |_| true,
        )
        .await;
    browser.click(r#"a[data-nav="routes"]"#).await;
    browser
        .wait_for(
            r#"tr[data-route="added-later"]"#,
            "the new route in the routes table",
        )
        .await;
    assert!(
        !daemon.logs().contains(TOKEN),
        "the token must never be logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_dropping_all_matching_dead_letters_drops_exactly_those_counted() {
    // Every attempt is refused: each event becomes a dead letter at once.
    let mut receiver = Receiver::start().await;
    receiver.set_default_reply(Reply::status(400));
    let daemon =
        Daemon::start(Config::default().route(HttpRoute::new("refusing", receiver.url()))).await;
    let client = client();
    let (keep, drop_a, drop_b) = (new_id(), new_id(), new_id());
    for (id, ty) in [
        (&keep, "message.new"),
        (&drop_a, "reaction.new"),
        (&drop_b, "reaction.deleted"),
    ] {
        post_ok(&client, &daemon.url(), id, &event_body(ty, id)).await;
        daemon.until_dead_lettered(id).await;
    }
    receiver.next_n(3, "the three refused attempts").await;

    // No admin_token here: the console opens straight on its pages.
    let browser = Browser::start().await;
    browser
        .goto(&format!("http://{}/#/dead-letters", daemon.admin))
        .await;
    browser
        .wait_text(".summary", "every letter listed", |t| {
            t.starts_with("3 of 3 dead letters")
        })
        .await;
    browser.type_into("#filter-type", "reaction").await;
    browser
        .wait_text(".summary", "the type filter", |t| {
            t.starts_with("2 of 3 dead letters")
        })
        .await;
    // By keyboard: Escape in the confirmation changes nothing; Enter on its button drops.
    let confirm_open = "return document.getElementById('confirm').open;";
    browser.press("#drop-matching", ENTER).await;
    browser
        .wait_text("#confirm-text", "the count in the confirmation", |t| {
            t.starts_with("Drop 2 dead letters (refusing: 2)?")
        })
        .await;
    browser.press("#confirm-cancel", ESCAPE).await;
    browser
        .wait_until(
            &confirm_open.replace("return", "return !"),
            "Escape closes the confirmation",
        )
        .await;
    assert!(daemon
        .cli(&["dead-letters", "list", "--json"])
        .await
        .contains(&drop_a));
    browser.press("#drop-matching", ENTER).await;
    browser
        .wait_until(confirm_open, "the confirmation again")
        .await;
    browser.press("#confirm-ok", ENTER).await;
    browser
        .wait_text("#status", "what was done", |t| {
            t == "2 dead letters dropped."
        })
        .await;
    browser
        .wait_text(".summary", "the kept letter remains", |t| {
            t.starts_with("0 of 1 dead letter")
        })
        .await;
    let listed = daemon.cli(&["dead-letters", "list", "--json"]).await;
    assert!(listed.contains(&keep), "{listed}");
    assert!(
        !listed.contains(&drop_a) && !listed.contains(&drop_b),
        "{listed}"
    );
}
