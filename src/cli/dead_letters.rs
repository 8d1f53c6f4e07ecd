//! `hookfan dead-letters list|show|replay|drop` and `drop-pending`: through the running daemon's admin API, or on the spool when it is stopped.

use super::*;

/// `hookfan dead-letters replay|drop`: one transaction in the spool, offline or through the
/// running daemon.
pub async fn dead_letters_act(
    config_path: &Path,
    action: DeadLetterAction,
    route: Option<&str>,
    webhook_ids: Vec<String>,
) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])?;
    let (n, later) = match reach_spool(&config).await? {
        Spooled::Offline(spool) => {
            let n = spool.dead_letter_action(action, route, webhook_ids).await;
            spool.close().await;
            (n?, " (delivered when hookfan next runs)")
        }
        Spooled::Live(admin) => {
            let answer: serde_json::Value = match action {
                DeadLetterAction::Replay => {
                    let body = serde_json::json!({ "route": route, "ids": webhook_ids });
                    admin
                        .call(
                            reqwest::Method::POST,
                            "/api/dead-letters/replay",
                            Some(body),
                        )
                        .await?
                }
                DeadLetterAction::Drop => {
                    let path = format!("/api/dead-letters{}", query(route, &webhook_ids));
                    admin.call(reqwest::Method::DELETE, &path, None).await?
                }
            };
            let n = answer["replayed"]
                .as_u64()
                .or(answer["dropped"].as_u64())
                .unwrap_or(0);
            (n, "")
        }
    };
    let verb = match action {
        DeadLetterAction::Replay => "replayed",
        DeadLetterAction::Drop => "dropped",
    };
    let later = if action == DeadLetterAction::Replay {
        later
    } else {
        ""
    };
    println!(
        "{n} dead letter{} {verb}{later}",
        if n == 1 { "" } else { "s" }
    );
    Ok(())
}

/// `hookfan dead-letters show --id X`: the dead letters of webhook id X (one per route that
/// gave up on it) with their events as received, offline or through the running daemon.
pub async fn dead_letters_show(
    config_path: &Path,
    route: Option<&str>,
    id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])?;
    let of_id = |l: &&DeadLetter| l.webhook_id.as_deref() == Some(id);
    let shown: Vec<DeadLetterShown> = match reach_spool(&config).await? {
        Spooled::Offline(spool) => {
            let read = || -> Result<Vec<DeadLetterShown>, SpoolError> {
                let letters = spool.dead_letters(route)?;
                let mut shown = Vec::new();
                for l in letters.iter().filter(of_id) {
                    shown.extend(spool.dead_letter(&l.route, l.seq)?);
                }
                Ok(shown)
            };
            let shown = read();
            spool.close().await;
            shown?
        }
        Spooled::Live(admin) => {
            let path = format!("/api/dead-letters{}", query(route, &[]));
            let letters: Vec<DeadLetter> = admin.call(reqwest::Method::GET, &path, None).await?;
            let mut shown = Vec::new();
            for l in letters.iter().filter(of_id) {
                let path = format!("/api/dead-letters/{}/{}", urlencode(&l.route), l.seq);
                // Replayed or dropped since the listing: not a dead letter any more.
                shown.extend(admin.call_if_found(reqwest::Method::GET, &path).await?);
            }
            shown
        }
    };
    if shown.is_empty() {
        let on = route.map_or(String::new(), |r| format!(" on route {r}"));
        bail!("no dead letter with webhook id {id}{on}");
    }
    for s in &shown {
        if json {
            println!("{}", serde_json::to_string(s)?);
            continue;
        }
        let l = &s.letter;
        let when = |ms: u64| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        };
        println!("route:       {}", l.route);
        println!("webhook id:  {id}");
        println!("event type:  {}", l.event_type.as_deref().unwrap_or("-"));
        println!("posted to:   {}", s.path.as_deref().unwrap_or("/"));
        println!("received:    {}", when(l.received_at_ms));
        println!(
            "dead since:  {} after {} attempt(s)",
            when(l.dead_at_ms),
            l.attempts
        );
        println!("last error:  {}", l.error);
        match (&s.body, &s.body_base64) {
            (Some(body), _) => println!("body:\n{body}"),
            (None, Some(b64)) => println!("body (not text; base64):\n{b64}"),
            (None, None) => println!("body:        gone from the spool"),
        }
        println!();
    }
    Ok(())
}

/// `hookfan dead-letters list`, offline or through the running daemon.
pub async fn dead_letters_list(
    config_path: &Path,
    route: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])?;
    let letters: Vec<DeadLetter> = match reach_spool(&config).await? {
        Spooled::Offline(spool) => {
            let letters = spool.dead_letters(route);
            spool.close().await;
            letters?
        }
        Spooled::Live(admin) => {
            let path = format!("/api/dead-letters{}", query(route, &[]));
            admin.call(reqwest::Method::GET, &path, None).await?
        }
    };
    if json {
        for l in &letters {
            println!("{}", serde_json::to_string(l)?);
        }
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    let rows: Vec<[String; 6]> = letters
        .iter()
        .map(|l| {
            [
                l.route.clone(),
                l.webhook_id.clone().unwrap_or_else(|| "-".into()),
                l.event_type.clone().unwrap_or_else(|| "-".into()),
                l.attempts.to_string(),
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(l.dead_at_ms))
                    .to_string(),
                l.error.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "ROUTE",
            "WEBHOOK ID",
            "TYPE",
            "ATTEMPTS",
            "DEAD SINCE",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(())
}

/// `hookfan drop-pending --route NAME`: forgets the pending events of a route that does not
/// run, offline or through the running daemon.
pub async fn drop_pending(config_path: &Path, route: &str) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &["name", "enabled"])?;
    let n = match reach_spool(&config).await? {
        Spooled::Offline(spool) => {
            if config.routes().iter().any(|r| r.name == route && r.enabled) {
                spool.close().await;
                bail!(
                    "route {route:?} is enabled in {}: disable or remove it first",
                    config_path.display()
                );
            }
            let n = spool.drop_pending(route).await;
            spool.close().await;
            n?
        }
        Spooled::Live(admin) => {
            let path = format!("/api/routes/{}/pending", urlencode(route));
            let answer: serde_json::Value =
                admin.call(reqwest::Method::DELETE, &path, None).await?;
            answer["dropped"].as_u64().unwrap_or(0)
        }
    };
    println!(
        "{n} pending event{} of route {route:?} dropped",
        if n == 1 { "" } else { "s" }
    );
    Ok(())
}
