//! The command line's work, one function per subcommand. `main.rs` only parses arguments.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use hookfan::config::{self, Config, Placeholders};
use hookfan::ingest::verify::{
    HEADER_API_KEY, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_WEBHOOK_ID,
};
use hookfan::spool::{DeadLetter, DeadLetterAction, Spool, SpoolError};

/// `hookfan serve`: runs until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let (config, text) = config::load_with_text(config_path)?;
    for warning in config.render_warnings(&config_path.display().to_string()) {
        tracing::warn!("{warning}");
    }
    let listener =
        match config.listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (is another process using it?)")
            })?),
            None => None,
        };
    let admin = match config.admin_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on admin_listen {addr} (is another process using it? set admin_listen to another port, or off)")
        })?),
        None => None,
    };
    ignore_file_size_signal().context("cannot handle SIGXFSZ")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let reload = hookfan::reload::Reload::new(config_path.to_path_buf(), text)
        .context("cannot listen for SIGHUP")?;
    Ok(hookfan::server::run(config, Some(reload), listener, admin, shutdown).await?)
}

/// SIGXFSZ: 25 on Linux (x86 and ARM), macOS and the BSDs.
const SIGXFSZ: i32 = 25;

/// Takes over SIGXFSZ before the spool is opened. A write past the file size limit
/// (`RLIMIT_FSIZE`, e.g. `ulimit -f` or a container's limit) sends SIGXFSZ, whose default
/// action kills the process: a full disk would then end hookfan mid-commit. With a handler
/// installed the write fails with EFBIG instead, the commit fails, and ingest answers 503 with
/// `Retry-After` like for any other storage error. The handler only logs; tokio keeps it
/// installed for the life of the process.
fn ignore_file_size_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut xfsz = signal(SignalKind::from_raw(SIGXFSZ))?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            tracing::warn!("SIGXFSZ: the spool file reached the file size limit; writes fail with EFBIG (ignored signal)");
        }
    });
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    // Cancel first: nothing, not even a failing log write, may stand between a signal and
    // the shutdown.
    shutdown.cancel();
    tracing::info!("{name} received: no longer accepting webhooks, draining");
}

/// `hookfan check`: validates the config and prints the route table. With `no_env`, every
/// `${VAR}` stands for a placeholder that passes validation, so a config can be linted
/// without its secrets (CI).
pub fn check(config_path: &Path, no_env: bool) -> anyhow::Result<()> {
    let config = if no_env {
        let (config, held) = config::load_with_placeholders(config_path, Placeholders::All)?;
        println!(
            "{}: OK without the environment ({} ${{VAR}} reference{} taken as set)",
            config_path.display(),
            held.len(),
            if held.len() == 1 { "" } else { "s" }
        );
        config
    } else {
        let config = config::load(config_path)?;
        println!("{}: OK", config_path.display());
        config
    };
    for warning in config.render_warnings(&config_path.display().to_string()) {
        eprintln!("{warning}");
    }
    println!(
        "listen {}  data_dir {}  max_body_bytes {}  dedup_window {}",
        config
            .listen
            .map_or("off".to_string(), |addr| addr.to_string()),
        config.data_dir.display(),
        config.max_body_bytes,
        humantime::format_duration(config.dedup_window)
    );
    let keys: Vec<&str> = config.apps.iter().map(|a| a.api_key()).collect();
    println!("apps (X-Api-Key): {}", keys.join(", "));
    println!();
    let rows: Vec<[String; 6]> = config
        .routes
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                if r.enabled { "yes".into() } else { "no".into() },
                r.filter.describe(),
                r.paths.describe(),
                r.destination.kind().key().into(),
                r.destination.target(),
            ]
        })
        .collect();
    print_table(
        &[
            "ROUTE",
            "ENABLED",
            "EVENT TYPES",
            "PATHS",
            "DESTINATION",
            "TARGET",
        ],
        &rows,
    );
    if !config.passthrough.is_empty() {
        println!();
        let rows: Vec<[String; 4]> = config
            .passthrough
            .iter()
            .map(|p| {
                [
                    p.path.clone(),
                    p.url.to_string(),
                    p.timeout.map_or("Stream's deadline".into(), |t| {
                        humantime::format_duration(t).to_string()
                    }),
                    p.concurrency.to_string(),
                ]
            })
            .collect();
        print_table(&["PASSTHROUGH", "HANDLER", "TIMEOUT", "CONCURRENCY"], &rows);
    }
    Ok(())
}

/// The starter routes.yaml that `hookfan init` writes: the repository's own, so the file a
/// new user starts from is the one the tests check.
pub const STARTER: &str = include_str!("../routes.yaml");

/// `hookfan init`: writes the starter routes.yaml to `config_path`, never over an existing
/// file.
pub fn init(config_path: &Path) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(config_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; hookfan init never overwrites a file: remove it, or pass --config PATH for a new file",
            config_path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create {}", config_path.display()))
        }
    };
    std::io::Write::write_all(&mut file, STARTER.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let dir = config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    println!("wrote {}. Next:", config_path.display());
    println!(
        "  hookfan schema > {}   # editor completion (the file's first line points there)",
        dir.join(config::schema::FILE_NAME).display()
    );
    println!(
        "  STREAM_API_KEY=... STREAM_API_SECRET=... hookfan check --config {}",
        config_path.display()
    );
    Ok(())
}

/// `hookfan schema`: the JSON Schema of routes.yaml.
pub fn schema() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&config::schema::json())?);
    Ok(())
}

/// The config as an operator command (`status`, `dead-letters`, `drop-pending`) reads it:
/// in the operator's shell, which lacks the daemon's secrets. Unset `${VAR}`s become
/// placeholders, except in the keys the command uses: the admin address and token, the
/// data dir, and for `drop-pending` route names and `enabled`.
fn load_for_operator(config_path: &Path, uses_routes: bool) -> anyhow::Result<Config> {
    let (config, held) = config::load_with_placeholders(config_path, Placeholders::ForUnset)?;
    let used = |path: &str| {
        matches!(path, "admin_listen" | "admin_token" | "data_dir")
            || (uses_routes
                && path.starts_with("routes[")
                && (path.ends_with(".name") || path.ends_with(".enabled")))
    };
    if let Some(p) = held.iter().find(|p| used(&p.path)) {
        bail!(
            "{}: {} is ${{{}}}, which is not set in this shell; this command needs it: set it as the daemon has it",
            config_path.display(),
            p.path,
            p.var
        );
    }
    Ok(config)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `hookfan send`: signs a sample event (or a JSON file) with the first app's secret and POSTs
/// it, like Stream's "test webhook" button.
pub async fn send(config_path: &Path, what: &str, to: Option<&str>) -> anyhow::Result<()> {
    let config = config::load(config_path)?;
    let body = if what.ends_with(".json") || Path::new(what).is_file() {
        std::fs::read(what).with_context(|| format!("cannot read {what}"))?
    } else {
        sample_event(what).into_bytes()
    };
    let app = config
        .apps
        .first()
        .context("no app configured to sign with")?;
    let url = match to {
        Some(url) => url.to_string(),
        None => default_url(&config)?,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header(HEADER_WEBHOOK_ID, &id)
        .header(HEADER_ATTEMPT, "1")
        .header(HEADER_API_KEY, app.api_key())
        .header(HEADER_SIGNATURE, app.signing_key().sign(&body))
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("cannot POST to {url} (is hookfan running there?)"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {url} (X-Webhook-Id {id}): {status} {}", text.trim());
    if !status.is_success() {
        bail!("hookfan answered {status}");
    }
    Ok(())
}

fn default_url(config: &Config) -> anyhow::Result<String> {
    let Some(mut addr) = config.listen else {
        bail!("the config has no webhook listener (listen: off, or sources and no apps): give --to URL");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{addr}/"))
}

/// A small event of the given type, shaped like Stream's chat events.
pub fn sample_event(event_type: &str) -> String {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    serde_json::json!({
        "type": event_type,
        "cid": "messaging:hookfan-test",
        "channel_type": "messaging",
        "channel_id": "hookfan-test",
        "message": {
            "id": uuid::Uuid::new_v4().to_string(),
            "text": "Hello from hookfan send",
            "user": { "id": "hookfan" },
        },
        "user": { "id": "hookfan" },
        "created_at": now,
    })
    .to_string()
}

/// Where an operator command reaches the spool: the file itself when no daemon runs, or the
/// running daemon's admin API when one holds the file.
enum Spooled {
    Offline(Spool),
    Live(Admin),
}

async fn reach_spool(config: &Config) -> anyhow::Result<Spooled> {
    let settings = hookfan::spool::LogSpoolConfig::with_segment_size(config.spool_segment_bytes);
    match Spool::open_with(&config.data_dir, settings) {
        Ok(spool) => Ok(Spooled::Offline(spool)),
        Err(SpoolError::InUse(path)) => Admin::new(config)
            .map(Spooled::Live)
            .with_context(|| format!("{} is in use by the running hookfan", path.display())),
        Err(e) => Err(e.into()),
    }
}

/// A client of the running daemon's admin API.
struct Admin {
    base: String,
    token: Option<hookfan::config::Secret>,
    client: reqwest::Client,
}

impl Admin {
    fn new(config: &Config) -> anyhow::Result<Admin> {
        let addr = admin_address(config.admin_listen, &config.data_dir)?;
        Ok(Admin {
            base: format!("http://{addr}"),
            token: config.admin_token.clone(),
            client: reqwest::Client::new(),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method, &url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = &self.token {
            request = request.bearer_auth(String::from_utf8_lossy(token.expose()));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!("cannot reach the admin API at {url} (is hookfan running?)")
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("{url} answered {status}: {}", text.trim());
        }
        response
            .json()
            .await
            .with_context(|| format!("{url} answered something unexpected"))
    }
}

/// The address a local command reaches the running daemon's admin listener at: the
/// configured one (a wildcard address asked on loopback), or, for port 0, the one the daemon
/// recorded in `data_dir` when it bound.
fn admin_address(
    admin_listen: Option<std::net::SocketAddr>,
    data_dir: &Path,
) -> anyhow::Result<std::net::SocketAddr> {
    let mut addr = admin_listen.context(
        "admin_listen is off, so the running daemon cannot be asked: stop it, or enable admin_listen",
    )?;
    if addr.port() == 0 {
        // Bound to a port chosen at start: the daemon recorded it.
        let file = data_dir.join(hookfan::admin::ADDR_FILE);
        let recorded = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "admin_listen has port 0 and {} cannot be read (is hookfan running?)",
                file.display()
            )
        })?;
        addr = recorded
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an address", file.display()))?;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

fn query(route: Option<&str>, ids: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(r) = route {
        parts.push(format!("route={}", urlencode(r)));
    }
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(|id| urlencode(id)).collect();
        parts.push(format!("id={}", list.join(",")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", s)])
        .map(|u| {
            u.query()
                .unwrap_or_default()
                .trim_start_matches("v=")
                .to_string()
        })
        .unwrap_or_default()
}

/// `hookfan dead-letters replay|drop`: one transaction in the spool, offline or through the
/// running daemon.
pub async fn dead_letters_act(
    config_path: &Path,
    action: DeadLetterAction,
    route: Option<&str>,
    webhook_ids: Vec<String>,
) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, false)?;
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

/// `hookfan dead-letters list`, offline or through the running daemon.
pub async fn dead_letters_list(
    config_path: &Path,
    route: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, false)?;
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
    let config = load_for_operator(config_path, true)?;
    let n = match reach_spool(&config).await? {
        Spooled::Offline(spool) => {
            if config.routes.iter().any(|r| r.name == route && r.enabled) {
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

/// `hookfan status`: the route table of the running daemon, from its admin API.
pub async fn status(config_path: &Path) -> anyhow::Result<()> {
    let config = load_for_operator(config_path, false)?;
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
    let rows: Vec<[String; 8]> = routes
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
    let config = load_for_operator(config_path, false)?;
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
    let config = load_for_operator(config_path, false)
        .map_err(|e| anyhow::anyhow!(e.to_string().replace('\n', "; ")))?;
    let addr = admin_address(config.admin_listen, &config.data_dir)?;
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

/// The data dir an offline spool command works on: `--data-dir`, else the config's.
fn spool_data_dir(config_path: &Path, data_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(load_for_operator(config_path, false)?.data_dir),
    }
}

/// `hookfan spool verify`: reports what the log holds and whether hookfan would open it.
/// Changes nothing, takes no lock (it may run beside a live daemon). Fails (exit 1) when
/// hookfan would refuse the log.
pub fn spool_verify(config_path: &Path, data_dir: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let data_dir = spool_data_dir(config_path, data_dir)?;
    let report = hookfan::spool::verify::verify(&data_dir.join(hookfan::spool::facade::DIR_NAME));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.opens() {
        bail!("hookfan would refuse this spool at start; `hookfan spool repair` (with hookfan stopped) keeps every intact record");
    }
    Ok(())
}

/// `hookfan spool repair`: rebuilds the log from every intact record, with hookfan stopped;
/// prints the report of what could not be kept and where it was written.
pub fn spool_repair(config_path: &Path, data_dir: Option<&Path>) -> anyhow::Result<()> {
    let data_dir = spool_data_dir(config_path, data_dir)?;
    let log = hookfan::spool::repair::writer_config_like(
        &data_dir.join(hookfan::spool::facade::DIR_NAME),
    );
    let repaired = hookfan::spool::repair::repair(&data_dir, log)?;
    print!("{}", repaired.report);
    println!();
    println!("report written to {}", repaired.report_file.display());
    println!(
        "the old log was moved to {}; the repaired one is in place",
        repaired.moved_to.display()
    );
    Ok(())
}
