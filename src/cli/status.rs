//! `hookfan status`, `drain` and `healthcheck`: the running daemon, through its admin API.

use super::*;

/// `hookfan status`: the route table of the running daemon, from its admin API.
pub async fn status(config_path: &Path) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])?;
    let admin = Admin::new(&config)?;
    let routes: Vec<hookfan::admin::RouteStatus> = admin
        .call(reqwest::Method::GET, "/api/routes", None)
        .await?;
    let drain: Option<hookfan::admin::DrainStatus> = admin
        .call(reqwest::Method::GET, "/api/drain", None)
        .await
        .ok();
    if let Some(drain) = drain.filter(|d| d.draining) {
        println!(
            "DRAINING (hookfan drain): webhooks are refused, deliveries go on{}\n",
            if drain.accepting {
                "; ingest and sources still finishing"
            } else {
                ""
            }
        );
    }
    let rows: Vec<[String; 9]> = routes
        .iter()
        .map(|r| {
            let age = r.oldest_pending_age_seconds.map_or("-".to_string(), |s| {
                humantime::format_duration(Duration::from_secs(s as u64)).to_string()
            });
            [
                if r.enabled {
                    r.name.clone()
                } else {
                    format!("{} (disabled)", r.name)
                },
                r.pending.to_string(),
                age,
                r.in_flight.to_string(),
                r.delivered.to_string(),
                r.failed.to_string(),
                r.dead_letters.to_string(),
                match &r.rate_limit {
                    Some(limit) => format!("{}/s (limit {limit})", r.sent_per_second),
                    None => format!("{}/s", r.sent_per_second),
                },
                match (&r.last_error, &r.last_error_at) {
                    (Some(e), Some(at)) => format!("{at} {e}"),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    print_table(
        &[
            "ROUTE",
            "PENDING",
            "OLDEST",
            "IN FLIGHT",
            "DELIVERED",
            "FAILED",
            "DEAD",
            "RATE",
            "LAST ERROR",
        ],
        &rows,
    );
    let sources: Vec<hookfan::admin::SourceStatus> = admin
        .call(reqwest::Method::GET, "/api/sources", None)
        .await?;
    if !sources.is_empty() {
        println!();
        let rows: Vec<[String; 8]> = sources
            .iter()
            .map(|s| {
                [
                    if s.running {
                        s.name.clone()
                    } else {
                        format!("{} (removed)", s.name)
                    },
                    s.received.to_string(),
                    s.stored.to_string(),
                    s.duplicates.to_string(),
                    s.undecodable.to_string(),
                    s.in_flight.to_string(),
                    s.queue_messages.map_or("-".into(), |n| n.to_string()),
                    match (&s.last_error, &s.last_error_at) {
                        (Some(e), Some(at)) => format!("{at} {e}"),
                        _ => "-".into(),
                    },
                ]
            })
            .collect();
        print_table(
            &[
                "SOURCE",
                "RECEIVED",
                "STORED",
                "DUPLICATES",
                "UNDECODABLE",
                "IN FLIGHT",
                "QUEUED",
                "LAST ERROR",
            ],
            &rows,
        );
    }
    Ok(())
}

/// How often `hookfan drain` reads the route counts.
const DRAIN_POLL: Duration = Duration::from_secs(1);
/// How often `hookfan drain` prints progress when nothing changes.
const DRAIN_QUIET: Duration = Duration::from_secs(10);

/// `hookfan drain`: stops the running daemon taking webhooks (its listener closes, sources
/// stop, `/readyz` turns 503), then waits until every event is delivered. Ok only when nothing
/// can come in any more and nothing is pending or dead: the spool may then be retired.
pub async fn drain(config_path: &Path, deadline: Duration) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])?;
    let admin = Admin::new(&config)?;
    let started = tokio::time::Instant::now();
    let _: hookfan::admin::DrainStatus = admin
        .call(reqwest::Method::POST, "/api/drain", None)
        .await
        .context("cannot start the drain")?;
    println!(
        "draining {}: webhooks are refused and sources stop; waiting up to {} for deliveries",
        admin.base,
        humantime::format_duration(deadline)
    );
    let mut tick = tokio::time::interval(DRAIN_POLL);
    let mut last: Option<(u64, tokio::time::Instant)> = None;
    let mut warned_stuck = std::collections::BTreeSet::new();
    loop {
        tick.tick().await;
        let status: hookfan::admin::DrainStatus =
            admin.call(reqwest::Method::GET, "/api/drain", None).await?;
        let routes: Vec<hookfan::admin::RouteStatus> = admin
            .call(reqwest::Method::GET, "/api/routes", None)
            .await?;
        let progress = DrainProgress::of(&routes);
        for (name, pending) in progress.stuck(&routes) {
            if warned_stuck.insert(name.clone()) {
                println!("  route {name} is not running (disabled, or removed from the config): its {pending} pending events are not delivered while it is not; enable it (and reload), or forget them with `hookfan drop-pending --route {name}`");
            }
        }
        if !status.accepting && progress.pending == 0 {
            if progress.dead > 0 {
                bail!(
                    "nothing is pending, but {} dead letters remain in the spool ({}): replay them (`hookfan dead-letters replay`) and drain again, or drop them (`hookfan dead-letters drop`), before retiring this spool",
                    progress.dead,
                    progress.dead_by_route
                );
            }
            println!(
                "drained in {}: nothing pending, no dead letters; the spool can be retired (stop hookfan, then remove its data_dir)",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            );
            return Ok(());
        }
        let changed = last
            .is_none_or(|(pending, at)| pending != progress.pending || at.elapsed() >= DRAIN_QUIET);
        if changed {
            println!(
                "  {} pending{}{}",
                progress.pending,
                if progress.pending > 0 {
                    format!(" ({})", progress.pending_by_route)
                } else {
                    String::new()
                },
                if status.accepting {
                    "; ingest and sources still finishing"
                } else {
                    ""
                }
            );
            last = Some((progress.pending, tokio::time::Instant::now()));
        }
        if started.elapsed() >= deadline {
            bail!(
                "drain deadline ({}) reached with {} events pending ({}); hookfan still refuses webhooks and goes on delivering: run `hookfan drain` again to wait longer, or restart hookfan to take webhooks again",
                humantime::format_duration(deadline),
                progress.pending,
                progress.pending_by_route
            );
        }
    }
}

/// What a drain waits for, summed over routes.
struct DrainProgress {
    pending: u64,
    dead: u64,
    /// `name: n, ...` for the routes with pending events.
    pending_by_route: String,
    dead_by_route: String,
}

impl DrainProgress {
    fn of(routes: &[hookfan::admin::RouteStatus]) -> DrainProgress {
        let by = |f: fn(&hookfan::admin::RouteStatus) -> u64| {
            routes
                .iter()
                .filter(|r| f(r) > 0)
                .map(|r| format!("{}: {}", r.name, f(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        DrainProgress {
            pending: routes.iter().map(|r| r.pending).sum(),
            dead: routes.iter().map(|r| r.dead_letters).sum(),
            pending_by_route: by(|r| r.pending),
            dead_by_route: by(|r| r.dead_letters),
        }
    }

    /// Routes holding pending events that no worker delivers.
    fn stuck(&self, routes: &[hookfan::admin::RouteStatus]) -> Vec<(String, u64)> {
        routes
            .iter()
            .filter(|r| r.pending > 0 && !r.enabled)
            .map(|r| (r.name.clone(), r.pending))
            .collect()
    }
}

/// How long `hookfan healthcheck` waits for `/readyz`: below the 5 s a container HEALTHCHECK
/// or probe usually allows, so the reason is printed before the runtime gives up on it.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(4);

/// `hookfan healthcheck`: Ok when `GET /readyz` on the running daemon's admin listener answers
/// 200; otherwise an error that is one line saying why. For container HEALTHCHECKs (distroless
/// images have no curl). Reads the config as the other operator commands do, so the app
/// secrets need not be in the environment.
pub async fn healthcheck(config_path: &Path) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, &[])
        .map_err(|e| anyhow::anyhow!(e.to_string().replace('\n', "; ")))?;
    let addr = admin_address(config.admin_listen(), config.data_dir())?;
    let url = format!("http://{addr}/readyz");
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(HEALTHCHECK_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            let why = if e.is_timeout() {
                format!(
                    "no answer within {}",
                    humantime::format_duration(HEALTHCHECK_TIMEOUT)
                )
            } else if e.is_connect() {
                "connection refused or unreachable".to_string()
            } else {
                e.to_string()
            };
            anyhow::anyhow!("cannot reach {url}: {why} (is hookfan running, with this config?)")
        })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if status != reqwest::StatusCode::OK {
        bail!("{url} answered {status}: {body}");
    }
    println!("{url}: {body}");
    Ok(())
}
