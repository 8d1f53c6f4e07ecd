//! Shared machinery for the end-to-end tests: the daemon process, a
//! programmable HTTP receiver, signing and posting helpers, and the Stream
//! webhook fixtures.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Secret of the default app; also the one every fixture is signed with.
pub const SECRET: &str = "test_secret_do_not_use_in_production";
pub const API_KEY: &str = "test_key";
pub const OTHER_KEY: &str = "other_key";
pub const OTHER_SECRET: &str = "other_secret";

/// How long the daemon may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a delivery may take to reach a receiver once it is possible.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `SIGTERM` may take (shutdown_grace is 10 s in the default config).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the `dead-letters` CLI may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

const LISTENING: &str = "ingest listening on http://";
const LISTENING_TLS: &str = "ingest listening on https://";
/// How the daemon announces that it has no webhook listener (sources only).
const SOURCES_ONLY: &str = "receiving from sources only";
/// How the daemon announces its admin listener.
const ADMIN_LISTENING: &str = "admin listening on http://";
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// An `http` route of the config file.
#[derive(Clone, Debug)]
pub struct HttpRoute {
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: Option<bool>,
    pub timeout: String,
    pub concurrency: u32,
    pub api_secret: Option<String>,
    pub max_age: String,
    pub initial_backoff: String,
    pub max_backoff: String,
    /// `paths:` (None: the key is left out, every path).
    pub paths: Option<Vec<String>>,
    pub forward_path: bool,
}

impl HttpRoute {
    pub fn new(name: &str, url: impl Into<String>) -> Self {
        HttpRoute {
            name: name.to_owned(),
            url: url.into(),
            event_types: Vec::new(),
            enabled: None,
            timeout: "2s".to_owned(),
            concurrency: 4,
            api_secret: None,
            max_age: "1h".to_owned(),
            initial_backoff: "10ms".to_owned(),
            max_backoff: "100ms".to_owned(),
            paths: None,
            forward_path: false,
        }
    }

    pub fn paths(mut self, paths: &[&str]) -> Self {
        self.paths = Some(paths.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    /// `forward_path: true`: the request's path and query are appended to `url`.
    pub fn forward_path(mut self) -> Self {
        self.forward_path = true;
        self
    }

    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    pub fn api_secret(mut self, secret: &str) -> Self {
        self.api_secret = Some(secret.to_owned());
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = timeout.to_owned();
        self
    }
}

/// Which AWS destination an [`AwsRoute`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsKind {
    Sqs,
    Sns,
}

/// An `sqs` or `sns` route of the config file.
#[derive(Clone, Debug)]
pub struct AwsRoute {
    pub kind: AwsKind,
    pub name: String,
    pub event_types: Vec<String>,
    /// `queue_url` (sqs) or `topic_arn` (sns).
    pub target: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub message_group_id: Option<String>,
    /// `raw` or `stream_compressed`; `None` leaves the key out.
    pub body: Option<String>,
    pub concurrency: Option<u32>,
    pub max_age: String,
    pub initial_backoff: String,
    pub max_backoff: String,
}

impl AwsRoute {
    fn new(kind: AwsKind, name: &str, target: impl Into<String>) -> Self {
        AwsRoute {
            kind,
            name: name.to_owned(),
            event_types: Vec::new(),
            target: target.into(),
            region: None,
            endpoint_url: None,
            message_group_id: None,
            body: None,
            concurrency: None,
            max_age: "1h".to_owned(),
            initial_backoff: "20ms".to_owned(),
            max_backoff: "200ms".to_owned(),
        }
    }

    /// An `sqs` route to `queue_url`.
    pub fn sqs(name: &str, queue_url: impl Into<String>) -> Self {
        AwsRoute::new(AwsKind::Sqs, name, queue_url)
    }

    /// An `sns` route to `topic_arn`.
    pub fn sns(name: &str, topic_arn: impl Into<String>) -> Self {
        AwsRoute::new(AwsKind::Sns, name, topic_arn)
    }

    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    pub fn message_group_id(mut self, template: &str) -> Self {
        self.message_group_id = Some(template.to_owned());
        self
    }

    pub fn body(mut self, format: &str) -> Self {
        self.body = Some(format.to_owned());
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    pub fn backoff(mut self, initial: &str, max: &str) -> Self {
        self.initial_backoff = initial.to_owned();
        self.max_backoff = max.to_owned();
        self
    }
}

/// A route of the config file.
#[derive(Clone, Debug)]
pub enum Route {
    Http(HttpRoute),
    Aws(AwsRoute),
    /// A `file` route; `file_name` is relative to the daemon's temp dir.
    File {
        name: String,
        event_types: Vec<String>,
        file_name: String,
    },
}

impl From<HttpRoute> for Route {
    fn from(r: HttpRoute) -> Self {
        Route::Http(r)
    }
}

impl From<AwsRoute> for Route {
    fn from(r: AwsRoute) -> Self {
        Route::Aws(r)
    }
}

/// The daemon's config file, rendered to YAML inside the daemon's temp dir.
#[derive(Clone, Debug)]
pub struct Config {
    pub apps: Vec<(String, String)>,
    pub max_body_bytes: u64,
    pub dedup_window: String,
    pub shutdown_grace: String,
    pub routes: Vec<Route>,
    /// Extra environment variables of the daemon process (every start).
    pub env: Vec<(String, String)>,
    /// `admin_token`, when the test wants the admin API locked.
    pub admin_token: Option<String>,
    /// Raw top-level YAML lines (`tls:`, `allowed_ips:`, ...), written before `apps:`.
    pub top_level: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            apps: vec![
                (API_KEY.to_owned(), SECRET.to_owned()),
                (OTHER_KEY.to_owned(), OTHER_SECRET.to_owned()),
            ],
            max_body_bytes: 1_048_576,
            dedup_window: "10m".to_owned(),
            shutdown_grace: "10s".to_owned(),
            admin_token: None,
            top_level: Vec::new(),
            routes: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Config {
    /// Only the `test_key` app.
    pub fn single_app(mut self) -> Self {
        self.apps.truncate(1);
        self
    }

    pub fn max_body_bytes(mut self, n: u64) -> Self {
        self.max_body_bytes = n;
        self
    }

    pub fn route(mut self, route: impl Into<Route>) -> Self {
        self.routes.push(route.into());
        self
    }

    /// Adds a raw top-level YAML line, such as `max_event_age: 1h`.
    pub fn top_level(mut self, yaml: impl Into<String>) -> Self {
        self.top_level.push(yaml.into());
        self
    }

    /// Sets `key=value` in the daemon's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn file_route(mut self, name: &str, file_name: &str) -> Self {
        self.routes.push(Route::File {
            name: name.to_owned(),
            event_types: Vec::new(),
            file_name: file_name.to_owned(),
        });
        self
    }

    /// The YAML text; `dir` is the daemon's temp dir.
    pub fn render(&self, dir: &Path) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("quote string");
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut y = String::new();
        let data_dir = dir.join("data");
        if self.apps.is_empty() {
            // A webhook listener needs apps; without, the config runs on sources only.
            writeln!(y, "listen: off").unwrap();
        } else {
            writeln!(y, "listen: \"127.0.0.1:0\"").unwrap();
        }
        writeln!(y, "admin_listen: \"127.0.0.1:0\"").unwrap();
        if let Some(token) = &self.admin_token {
            writeln!(y, "admin_token: {}", q(token)).unwrap();
        }
        writeln!(y, "data_dir: {}", q(&data_dir.to_string_lossy())).unwrap();
        writeln!(y, "max_body_bytes: {}", self.max_body_bytes).unwrap();
        writeln!(y, "dedup_window: {}", q(&self.dedup_window)).unwrap();
        writeln!(y, "shutdown_grace: {}", q(&self.shutdown_grace)).unwrap();
        for line in &self.top_level {
            writeln!(y, "{line}").unwrap();
        }
        writeln!(y, "apps:").unwrap();
        for (key, secret) in &self.apps {
            writeln!(y, "  - api_key: {}", q(key)).unwrap();
            writeln!(y, "    api_secret: {}", q(secret)).unwrap();
        }
        if self.routes.is_empty() {
            writeln!(y, "routes: []").unwrap();
        } else {
            writeln!(y, "routes:").unwrap();
        }
        for route in &self.routes {
            match route {
                Route::Http(r) => {
                    writeln!(y, "  - name: {}", q(&r.name)).unwrap();
                    writeln!(y, "    event_types: {}", list(&r.event_types)).unwrap();
                    if let Some(enabled) = r.enabled {
                        writeln!(y, "    enabled: {enabled}").unwrap();
                    }
                    if let Some(paths) = &r.paths {
                        writeln!(y, "    paths: {}", list(paths)).unwrap();
                    }
                    writeln!(y, "    http:").unwrap();
                    if r.forward_path {
                        writeln!(y, "      forward_path: true").unwrap();
                    }
                    writeln!(y, "      url: {}", q(&r.url)).unwrap();
                    writeln!(y, "      timeout: {}", q(&r.timeout)).unwrap();
                    writeln!(y, "      concurrency: {}", r.concurrency).unwrap();
                    if let Some(secret) = &r.api_secret {
                        writeln!(y, "      api_secret: {}", q(secret)).unwrap();
                    }
                    writeln!(
                        y,
                        "      retry: {{ max_age: {}, initial_backoff: {}, max_backoff: {} }}",
                        q(&r.max_age),
                        q(&r.initial_backoff),
                        q(&r.max_backoff)
                    )
                    .unwrap();
                }
                Route::Aws(r) => {
                    let (kind, target_key) = match r.kind {
                        AwsKind::Sqs => ("sqs", "queue_url"),
                        AwsKind::Sns => ("sns", "topic_arn"),
                    };
                    writeln!(y, "  - name: {}", q(&r.name)).unwrap();
                    writeln!(y, "    event_types: {}", list(&r.event_types)).unwrap();
                    writeln!(y, "    {kind}:").unwrap();
                    writeln!(y, "      {target_key}: {}", q(&r.target)).unwrap();
                    let optional = [
                        ("region", &r.region),
                        ("endpoint_url", &r.endpoint_url),
                        ("message_group_id", &r.message_group_id),
                        ("body", &r.body),
                    ];
                    for (key, value) in optional {
                        if let Some(value) = value {
                            writeln!(y, "      {key}: {}", q(value)).unwrap();
                        }
                    }
                    if let Some(n) = r.concurrency {
                        writeln!(y, "      concurrency: {n}").unwrap();
                    }
                    writeln!(
                        y,
                        "      retry: {{ max_age: {}, initial_backoff: {}, max_backoff: {} }}",
                        q(&r.max_age),
                        q(&r.initial_backoff),
                        q(&r.max_backoff)
                    )
                    .unwrap();
                }
                Route::File {
                    name,
                    event_types,
                    file_name,
                } => {
                    writeln!(y, "  - name: {}", q(name)).unwrap();
                    writeln!(y, "    event_types: {}", list(event_types)).unwrap();
                    let path = dir.join(file_name);
                    writeln!(y, "    file: {{ path: {} }}", q(&path.to_string_lossy())).unwrap();
                }
            }
        }
        y
    }
}

// ---------------------------------------------------------------------------
// Daemon
// ---------------------------------------------------------------------------

/// A running (or stopped) `hookfan serve` child process with its own temp dir.
///
/// The child is killed (SIGKILL) when the `Daemon` is dropped.
pub struct Daemon {
    /// Address of the ingest listener of the current child.
    pub addr: SocketAddr,
    /// Address of the admin listener (health, readiness, metrics) of the current child.
    pub admin: SocketAddr,
    config_path: PathBuf,
    /// Extra environment of every child ([`Config::env`]).
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Number of children started so far (1 after `start`).
    generation: u32,
    /// Every line any child wrote to stdout or stderr, in order.
    logs: Arc<Mutex<String>>,
    // Declared last: the directory outlives the child in `Drop`.
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Writes `config` into a fresh temp dir and starts the daemon on it.
    pub async fn start(config: Config) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("hookfan-it-")
            .tempdir()
            .expect("create temp dir");
        let config_path = dir.path().join("routes.yaml");
        let yaml = config.render(dir.path());
        std::fs::write(&config_path, &yaml).expect("write config");
        eprintln!("[harness] config {}:\n{yaml}", config_path.display());
        let logs = Arc::new(Mutex::new(String::new()));
        let (child, addr, admin) = spawn_serve(&config_path, &config.env, 1, &logs).await;
        Daemon {
            logs,
            addr,
            admin,
            config_path,
            env: config.env,
            child: Some(child),
            generation: 1,
            dir,
        }
    }

    /// Everything the daemon's children have written to stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The daemon's temp dir (config, spool under `data/`, route files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://ADDR` of the current child.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR/<path>`, path without leading slash.
    pub fn url_path(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path)
    }

    fn take_child(&mut self) -> Child {
        self.child
            .take()
            .expect("the daemon is not running (already killed or stopped)")
    }

    /// `kill -9` the daemon and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.take_child();
        eprintln!("[harness] kill -9 hookfan (pid {})", child.id());
        child.kill().expect("SIGKILL hookfan");
        let status = child.wait().expect("reap hookfan");
        eprintln!("[harness] hookfan killed: {status}");
    }

    /// Replaces the running daemon's config file (a reload follows within about a second,
    /// or at once with [`Daemon::sighup`]). `config.env` is ignored: the process keeps its own.
    pub fn rewrite_config(&self, config: &Config) {
        let yaml = config.render(self.dir.path());
        eprintln!(
            "[harness] new config {}:\n{yaml}",
            self.config_path.display()
        );
        std::fs::write(&self.config_path, yaml).expect("rewrite config");
    }

    /// Writes `text` as the config file as is (to test broken files).
    pub fn write_config_text(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Sends SIGHUP (reload the config).
    pub fn sighup(&self) {
        let pid = self
            .child
            .as_ref()
            .expect("daemon running")
            .id()
            .to_string();
        let status = Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("run kill -HUP");
        assert!(status.success(), "kill -HUP {pid} failed");
    }

    /// Sends SIGTERM and waits (at most [`SHUTDOWN_TIMEOUT`]) for the exit.
    pub async fn sigterm_and_wait(&mut self) -> ExitStatus {
        let mut child = self.take_child();
        let pid = child.id().to_string();
        eprintln!("[harness] kill -TERM hookfan (pid {pid})");
        let started = Instant::now();
        let kill = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill -TERM");
        assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
        let waiter = tokio::task::spawn_blocking(move || child.wait());
        match timeout(SHUTDOWN_TIMEOUT, waiter).await {
            Ok(joined) => {
                let status = joined.expect("join waiter").expect("wait for hookfan");
                eprintln!(
                    "[harness] hookfan exited after SIGTERM in {:?}: {status}",
                    started.elapsed()
                );
                status
            }
            Err(_) => {
                // The waiter owns the child; it returns once the kill lands.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!(
                    "hookfan did not exit within {SHUTDOWN_TIMEOUT:?} after SIGTERM \
                     (shutdown_grace is 10s); it was SIGKILLed"
                );
            }
        }
    }

    /// SIGTERM, and require exit code 0.
    pub async fn stop_gracefully(&mut self) {
        let status = self.sigterm_and_wait().await;
        assert!(
            status.success(),
            "hookfan must exit with code 0 after SIGTERM, got {status}"
        );
    }

    /// Starts a new child on the same config and data dir (new ingest port).
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() needs the daemon stopped first (kill9 or sigterm_and_wait)"
        );
        self.generation += 1;
        let (child, addr, admin) =
            spawn_serve(&self.config_path, &self.env, self.generation, &self.logs).await;
        self.admin = admin;
        self.child = Some(child);
        self.addr = addr;
    }

    /// `hookfan dead-letters list --config PATH --json [--route NAME]`, parsed
    /// line by line. The daemon must be stopped (the spool is locked while it
    /// runs); the command must exit 0.
    pub async fn dead_letters(&self, route: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["dead-letters", "list", "--json"];
        if let Some(route) = route {
            args.extend(["--route", route]);
        }
        let stdout = self.cli(&args).await;
        stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("dead-letters --json printed a line that is not JSON ({e}): {l:?}")
                })
            })
            .collect()
    }

    /// Runs `hookfan ARGS --config PATH` (on the spool file when the daemon is stopped, through
    /// its admin API when it runs), requires exit 0 and returns its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hookfan {args:?} must exit 0, got {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Waits until the running daemon lists `id` as a dead letter (it is recorded just after the
    /// destination's answer, so there is nothing to await but the listing).
    pub async fn until_dead_lettered(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = self.cli(&["dead-letters", "list", "--json"]).await;
            if listed.contains(id) {
                return;
            }
            assert!(Instant::now() < deadline, "not dead-lettered: {listed}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Daemon::cli`] whatever its exit status: the command's whole output.
    pub async fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
        cmd.args(args).arg("--config").arg(&self.config_path);
        cmd.stdin(Stdio::null()).env("NO_COLOR", "1");
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        remove_aws_env(&mut cmd);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let described = format!("{cmd:?}");
        let out = timeout(
            CLI_TIMEOUT,
            tokio::task::spawn_blocking(move || cmd.output()),
        )
        .await
        .unwrap_or_else(|_| panic!("{described} did not finish within {CLI_TIMEOUT:?}"))
        .expect("join dead-letters")
        .unwrap_or_else(|e| panic!("run {described}: {e}"));
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            eprintln!("[hookfan cli] {line}");
        }
        eprintln!(
            "[harness] {described} -> {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `RUST_LOG` given to the daemon (`HOOKFAN_IT_LOG` overrides it).
fn log_filter() -> String {
    std::env::var("HOOKFAN_IT_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// `hookfan serve --config PATH` with piped output, the test log filter, no proxy or AWS
/// settings from the environment, and `env` on top.
fn serve_command(config_path: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
    cmd.arg("serve")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", log_filter());
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    remove_aws_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Spawns `hookfan serve --config PATH`, drains its stdout and stderr in
/// background threads for its whole life (echoing them), and waits for the
/// `listening on http://ADDR` line.
async fn spawn_serve(
    config_path: &Path,
    env: &[(String, String)],
    generation: u32,
    logs: &Arc<Mutex<String>>,
) -> (Child, SocketAddr, SocketAddr) {
    let mut cmd = serve_command(config_path, env);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    eprintln!(
        "[harness] started hookfan #{generation} (pid {})",
        child.id()
    );

    let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
    // The admin listener is announced before the ingest listener.
    let admin = Arc::new(Mutex::new(None::<SocketAddr>));
    let admin_seen = admin.clone();
    let stderr = child.stderr.take().expect("piped stderr");
    let (err_log, out_log) = (logs.clone(), logs.clone());
    std::thread::Builder::new()
        .name(format!("hookfan-{generation}-stderr"))
        .spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for_each_line(stderr, |line| {
                eprintln!("[hookfan] {line}");
                let mut log = err_log.lock().unwrap();
                log.push_str(line);
                log.push('\n');
                drop(log);
                if let Some(addr) = parse_after(line, ADMIN_LISTENING) {
                    *admin_seen.lock().unwrap() = Some(addr);
                }
                if addr_tx.is_some() {
                    if let Some(addr) = parse_listening_line(line) {
                        let _ = addr_tx.take().expect("checked").send(addr);
                    } else if line.contains(SOURCES_ONLY) {
                        // No webhook listener: `Daemon::addr` is unspecified.
                        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
                        let _ = addr_tx.take().expect("checked").send(unspecified);
                    }
                }
            });
        })
        .expect("spawn stderr thread");
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::Builder::new()
        .name(format!("hookfan-{generation}-stdout"))
        .spawn(move || {
            for_each_line(stdout, |line| {
                eprintln!("[hookfan stdout] {line}");
                let mut log = out_log.lock().unwrap();
                log.push_str(line);
                log.push('\n');
            })
        })
        .expect("spawn stdout thread");

    match timeout(STARTUP_TIMEOUT, addr_rx).await {
        Ok(Ok(addr)) => {
            eprintln!("[harness] hookfan #{generation} listening on {addr}");
            let admin = admin
                .lock()
                .unwrap()
                .expect("the admin listener is announced before the ingest listener");
            (child, addr, admin)
        }
        Ok(Err(_)) => {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "hookfan #{generation} closed stderr without logging `{LISTENING}ADDR` \
                 (exit: {status:?}); see the [hookfan] lines above"
            );
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hookfan #{generation} did not log `{LISTENING}ADDR` within {STARTUP_TIMEOUT:?}; \
                 see the [hookfan] lines above"
            );
        }
    }
}

/// Removes the inherited `AWS_*` variables: the daemon's AWS environment is
/// exactly what the test gives it ([`Config::env`]).
fn remove_aws_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
}

/// Calls `f` for each line (lossy UTF-8) until EOF or a read error.
fn for_each_line(stream: impl Read, mut f: impl FnMut(&str)) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                f(line.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Extracts ADDR from a line containing `ingest listening on http://ADDR` (or `https://`
/// when the config has `tls:`).
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    parse_after(line, LISTENING).or_else(|| parse_after(line, LISTENING_TLS))
}

/// Extracts the address that follows `marker` in `line`.
fn parse_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    let start = line.find(marker)? + marker.len();
    let token: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    token
        .trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == ']'))
        .parse()
        .ok()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Receiver
// ---------------------------------------------------------------------------

/// One request as a receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// The query string, when the request had one.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("header {name} is not ASCII: {v:?}"))
        })
    }

    /// `X-Webhook-Id`, which every delivery must carry.
    pub fn webhook_id(&self) -> &str {
        self.header("x-webhook-id")
            .unwrap_or_else(|| panic!("delivery without X-Webhook-Id: {self:?}"))
    }

    /// `X-Webhook-Attempt`, which every delivery must carry.
    pub fn attempt(&self) -> &str {
        self.header("x-webhook-attempt")
            .unwrap_or_else(|| panic!("delivery without X-Webhook-Attempt: {self:?}"))
    }
}

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    /// Wait this long before answering (to keep deliveries in flight).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

struct ReceiverState {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    tx: mpsc::UnboundedSender<Recorded>,
}

/// An HTTP server on 127.0.0.1 that records every request and answers from a
/// script (a queue of replies, then a default reply). It can be stopped and
/// started again on the same port to simulate an outage.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    rx: mpsc::UnboundedReceiver<Recorded>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// While stopped: the port, bound but not listening. Connections to it are refused, and
    /// no other socket can be given it: a daemon started meanwhile on `127.0.0.1:0` once got
    /// this very port, and delivered the route's events to itself.
    held: Option<tokio::net::TcpSocket>,
}

impl Receiver {
    /// Starts a receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ReceiverState {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            tx,
        });
        let server = Some(serve_receiver(listener, state.clone()));
        Receiver {
            addr,
            state,
            rx,
            server,
            held: None,
        }
    }

    /// `http://ADDR/hook`
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Queues replies for the next requests (in order); then the default.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn set_default_reply(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Stops accepting and closes every connection (idle keep-alive ones
    /// included); the port refuses connections until [`Receiver::restart`], and stays this
    /// receiver's meanwhile.
    pub async fn stop(&mut self) {
        let (stop_tx, handle) = self.server.take().expect("receiver is not running");
        let _ = stop_tx.send(());
        timeout(Duration::from_secs(10), handle)
            .await
            .expect("receiver did not shut down within 10s")
            .expect("receiver task panicked");
        // Taken back the moment the listener is closed. SO_REUSEADDR lets the bind succeed
        // beside the closed connections' TIME_WAIT; it does not let an automatic (port 0)
        // bind share the port.
        let held = tokio::net::TcpSocket::new_v4().expect("a socket to hold the port");
        held.set_reuseaddr(true).expect("SO_REUSEADDR");
        held.bind(self.addr).unwrap_or_else(|e| {
            panic!(
                "could not hold the stopped receiver's port {}: {e}",
                self.addr
            )
        });
        self.held = Some(held);
        eprintln!("[harness] receiver {} stopped", self.addr);
    }

    /// Starts serving again on the same port.
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "receiver is already running");
        let held = self.held.take().expect("a stopped receiver holds its port");
        let listener = held
            .listen(1024)
            .unwrap_or_else(|e| panic!("could not listen again on {}: {e}", self.addr));
        self.server = Some(serve_receiver(listener, self.state.clone()));
        eprintln!("[harness] receiver {} started again", self.addr);
    }

    /// The next recorded request, waiting at most `within`.
    pub async fn next_within(&mut self, within: Duration, what: &str) -> Recorded {
        match timeout(within, self.rx.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => unreachable!("the receiver state holds a sender"),
            Err(_) => panic!(
                "receiver {}: no request within {within:?} while waiting for {what}",
                self.addr
            ),
        }
    }

    /// The next recorded request, waiting at most [`DELIVERY_TIMEOUT`].
    pub async fn next(&mut self, what: &str) -> Recorded {
        self.next_within(DELIVERY_TIMEOUT, what).await
    }

    /// Exactly the next `n` requests.
    pub async fn next_n(&mut self, n: usize, what: &str) -> Vec<Recorded> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => got.push(r),
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => panic!(
                    "receiver {}: got {} of {n} requests within {DELIVERY_TIMEOUT:?} \
                     while waiting for {what}; ids so far: {:?}",
                    self.addr,
                    got.len(),
                    got.iter()
                        .map(|r| r.header("x-webhook-id"))
                        .collect::<Vec<_>>()
                ),
            }
        }
        got
    }

    /// Receives until every id in `ids` has been seen at least once (or
    /// `within` passes, which fails naming the missing ids). Returns every
    /// request received meanwhile, including ones with other ids and repeats.
    pub async fn until_ids(
        &mut self,
        ids: &HashSet<String>,
        within: Duration,
        what: &str,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + within;
        let mut missing: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut got = Vec::new();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    if let Some(id) = r.header("x-webhook-id") {
                        missing.remove(id);
                    }
                    got.push(r);
                }
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => {
                    let mut missing: Vec<&str> = missing.into_iter().collect();
                    missing.sort_unstable();
                    panic!(
                        "receiver {}: {} of {} ids never arrived within {within:?} ({what}); \
                         missing: {:?}",
                        self.addr,
                        missing.len(),
                        ids.len(),
                        missing
                    );
                }
            }
        }
        got
    }

    /// Receives until a request with `X-Webhook-Id: id` arrives; returns the
    /// requests received before it (the marker itself is not included).
    pub async fn until_marker(&mut self, id: &str) -> Vec<Recorded> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) if r.header("x-webhook-id") == Some(id) => return before,
                Ok(Some(r)) => before.push(r),
                Ok(None) => unreachable!("the receiver state holds a sender"),
                Err(_) => panic!(
                    "receiver {}: marker {id} did not arrive within {DELIVERY_TIMEOUT:?}; \
                     received meanwhile: {:?}",
                    self.addr,
                    before
                        .iter()
                        .map(|r| r.header("x-webhook-id"))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Requests already received and not yet consumed (does not wait).
    pub fn drain_now(&mut self) -> Vec<Recorded> {
        let mut got = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            got.push(r);
        }
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some((stop_tx, handle)) = self.server.take() {
            let _ = stop_tx.send(());
            handle.abort();
        }
    }
}

fn serve_receiver(
    listener: tokio::net::TcpListener,
    state: Arc<ReceiverState>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = Router::new().fallback(receive).with_state(state);
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
            .expect("receiver server");
    });
    (stop_tx, handle)
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| state.default.lock().unwrap().clone());
    let _ = state.tx.send(Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = (status, "receiver says hi").into_response();
    if let Some(value) = reply.retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&value).expect("Retry-After value"),
        );
    }
    response
}

/// A TCP listener that accepts connections and never answers (a hung
/// destination). Stops when dropped.
pub struct Blackhole {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind blackhole");
        let addr = listener.local_addr().expect("blackhole addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Blackhole { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hook")
}

// ---------------------------------------------------------------------------
// Signing and posting
// ---------------------------------------------------------------------------

/// Lower-case hex HMAC-SHA256 of `body` with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body).expect("gzip");
    enc.finish().expect("gzip")
}

/// A fresh unique webhook id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A small, valid Stream-like event of type `ty`, unique per `id`.
pub fn event_body(ty: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": ty,
        "created_at": "2026-05-08T00:00:00.000000Z",
        "message": { "id": id, "text": format!("hello from {id}") },
        "user": { "id": "it-user" },
    }))
    .expect("serialize event")
}

/// An HTTP client for posting to the daemon (no proxy, 30 s timeout).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// The answer to one POST.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// Sends `method url` with `body` and the given headers (a
/// `Content-Type: application/json` is added unless given).
pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let mut req = client.request(method, url).body(body);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// POSTs `body` to `url` with exactly the given headers (plus a JSON
/// content type unless given); panics on a transport error.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    send(client, reqwest::Method::POST, url, body.into(), headers)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"))
}

/// POSTs `body` as Stream would: `X-Webhook-Id: id`, attempt 1, `test_key`,
/// signed with the test secret.
pub async fn post_signed(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) -> Answer {
    let sig = sign(SECRET, body);
    post_webhook(client, url, body, &stream_headers(id, &sig)).await
}

/// POSTs and requires 200.
pub async fn post_ok(client: &reqwest::Client, url: &str, id: &str, body: &[u8]) {
    let answer = post_signed(client, url, id, body).await;
    assert_eq!(
        answer.status, 200,
        "POST {id} must be acknowledged with 200: {answer:?}"
    );
}

/// Stream's headers for one request, attempt 1, app `test_key`.
pub fn stream_headers<'a>(id: &'a str, signature: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("x-webhook-id", id),
        ("x-webhook-attempt", "1"),
        ("x-api-key", API_KEY),
        ("x-signature", signature),
    ]
}

/// Posts a fresh `message.new` marker event and waits until `receiver` gets
/// it; returns what the receiver got before the marker.
pub async fn post_marker_and_await(
    client: &reqwest::Client,
    daemon: &Daemon,
    receiver: &mut Receiver,
) -> Vec<Recorded> {
    let marker = format!("marker-{}", new_id());
    post_ok(
        client,
        &daemon.url_path("marker"),
        &marker,
        &event_body("message.new", &marker),
    )
    .await;
    receiver.until_marker(&marker).await
}

/// Count of requests per webhook id.
pub fn count_by_id(records: &[Recorded]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in records {
        *counts.entry(r.webhook_id().to_owned()).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// One case of `tests/fixtures/stream-webhooks`.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub body: Vec<u8>,
    pub gz: Vec<u8>,
    pub signature: String,
    /// `type` from expected.json ("" when the case has none).
    pub expected_type: String,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stream-webhooks")
}

fn load_fixture(dir: &Path) -> Fixture {
    let read = |f: &str| {
        let p = dir.join(f);
        std::fs::read(&p).unwrap_or_else(|e| panic!("read fixture {}: {e}", p.display()))
    };
    let expected: serde_json::Value =
        serde_json::from_slice(&read("expected.json")).expect("expected.json is JSON");
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        body: read("body.json"),
        gz: read("body.gz"),
        signature: String::from_utf8(read("signature.txt"))
            .expect("signature.txt is text")
            .trim()
            .to_owned(),
        expected_type: expected["type"].as_str().unwrap_or("").to_owned(),
    }
}

fn fixtures_in(dir: &Path) -> Vec<Fixture> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_fixture(d)).collect()
}

/// Every valid case (the directories not starting with `_`).
pub fn valid_fixtures() -> Vec<Fixture> {
    let all = fixtures_in(&fixtures_dir());
    assert!(
        all.len() >= 10,
        "expected the Stream fixtures in {}, found {}",
        fixtures_dir().display(),
        all.len()
    );
    all
}

/// Every case under `_invalid/`.
pub fn invalid_fixtures() -> Vec<Fixture> {
    fixtures_in(&fixtures_dir().join("_invalid"))
}

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// Makes sure each `(program, package)` is there (a command on PATH, or a path with a `/`):
/// missing ones are installed with apt-get, as root, under an install lock shared by the test
/// binaries; without root or apt-get, a panic that names the packages. `who` says which tests
/// need them. Callers run it once per process.
pub fn ensure_debian_packages(who: &str, wanted: &[(&str, &str)]) {
    let present = |program: &str| {
        if program.contains('/') {
            Path::new(program).exists()
        } else {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        }
    };
    let missing = || -> Vec<&str> {
        wanted
            .iter()
            .filter(|(program, _)| !present(program))
            .map(|(_, package)| *package)
            .collect()
    };
    if missing().is_empty() {
        return;
    }
    let parent = crate::moto::target_dir();
    std::fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let _lock = crate::moto::install_lock(&parent.join("debian-packages.lock"));
    let packages = missing();
    if packages.is_empty() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    assert!(
        root && present("apt-get"),
        "{who} need Debian's {packages:?}: install them (apt-get install {}); as root with apt-get, the tests install them themselves",
        packages.join(" ")
    );
    eprintln!("[harness] installing {packages:?} with apt-get for {who}");
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    crate::moto::run_or_panic(update, "apt-get update failed");
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    crate::moto::run_or_panic(install, "apt-get install failed");
    let still = missing();
    assert!(
        still.is_empty(),
        "{still:?} still missing after apt-get install"
    );
}

/// What a check passed to [`eventually`] answers: `true`, or `Some(value)`, once it holds.
pub trait Settled<T> {
    fn settled(self) -> Option<T>;
}

impl Settled<()> for bool {
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Settled<T> for Option<T> {
    fn settled(self) -> Option<T> {
        self
    }
}

/// The one way the tests wait for what they cannot await (a figure on `/metrics` or
/// `/api`, a log line, a file): runs `check` every 20 ms until it holds, and returns what it
/// answered; panics naming `what` once `within` has passed. A check may assert what must hold
/// on every look.
pub async fn eventually<T, F, Fut, S>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = S>,
    S: Settled<T>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await.settled() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`], for a check that needs no awaiting.
pub async fn poll_until<T>(within: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    eventually(within, what, || std::future::ready(cond())).await
}

/// Seconds since the Unix epoch of an RFC 3339 UTC date-time (`...Z`), or `None`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// An outage of the receiver is a refused connection, and its port stays its own until it is
/// back, so nothing else started meanwhile can answer on its URL.
#[tokio::test]
async fn a_stopped_receiver_refuses_connections_keeps_its_port_and_serves_again_on_restart() {
    let mut receiver = Receiver::start().await;
    receiver.stop().await;
    let refused = tokio::net::TcpStream::connect(receiver.addr).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    assert_eq!(
        other.bind(receiver.addr).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AddrInUse),
        "the stopped receiver's port is still bound"
    );
    receiver.restart().await;
    let answer = reqwest::Client::new()
        .post(receiver.url())
        .body("back")
        .send()
        .await
        .expect("the receiver answers again");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        receiver.next("the request after restart").await.body,
        "back"
    );
}

#[test]
fn listening_line_is_parsed_up_to_whitespace() {
    let line = "2026-05-08T00:00:00Z  INFO hookfan: ingest listening on http://127.0.0.1:41234";
    assert_eq!(
        parse_listening_line(line),
        Some("127.0.0.1:41234".parse().unwrap())
    );
    let line = "\u{1b}[2mx\u{1b}[0m ingest listening on http://127.0.0.1:5/ spool=/tmp";
    assert_eq!(
        parse_listening_line(line),
        Some("127.0.0.1:5".parse().unwrap())
    );
    assert_eq!(parse_listening_line("metrics ready"), None);
    assert_eq!(
        parse_listening_line("INFO hookfan::server: admin listening on http://127.0.0.1:9/"),
        None,
        "the admin listener is not the ingest listener"
    );
}

/// GETs `url` (5 s timeout) and returns the status and body.
pub async fn get(client: &reqwest::Client, url: String) -> (u16, String) {
    let response = client
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("response body"))
}

/// The value of the first sample of `name` with exactly these labels, from Prometheus text.
pub fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of `name{labels}` on the daemon's `/metrics` now (None when absent).
pub async fn metric(daemon: &Daemon, name: &str, labels: &str) -> Option<f64> {
    let (status, text) = get(&client(), format!("http://{}/metrics", daemon.admin)).await;
    assert_eq!(status, 200, "GET /metrics: {text}");
    sample(&text, name, labels)
}

// ---------------------------------------------------------------------------
// Fault injection (e2e_faults)
// ---------------------------------------------------------------------------

/// The nice value in a `/proc/.../stat` line: `pid (comm) state ...`, where comm may hold
/// spaces; nice is field 19, the 17th after the closing parenthesis.
fn nice_in_stat(stat: &str) -> i32 {
    let close = stat.rfind(')').expect("comm in parentheses");
    stat[close + 1..]
        .split_whitespace()
        .nth(16)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no nice value in {stat}"))
}

/// The nice value of the calling thread (a daemon started from it inherits it).
pub fn own_nice() -> i32 {
    nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").expect("read own stat"))
}

impl Daemon {
    /// The pid of the running child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Sets the running child's soft file size limit (`RLIMIT_FSIZE`) with util-linux
    /// `prlimit --pid`; `None` raises it back to the hard limit. Only the soft limit is
    /// touched, so raising it again needs no privilege.
    pub fn limit_file_size(&self, bytes: Option<u64>) {
        let pid = self.pid().to_string();
        let soft = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
        let out = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={soft}:")])
            .output()
            .unwrap_or_else(|e| {
                panic!("run prlimit (util-linux) to limit the spool's file size: {e}")
            });
        assert!(
            out.status.success(),
            "prlimit --pid {pid} --fsize={soft}: failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("[harness] hookfan (pid {pid}) file size limit: {soft}");
    }

    /// Peak resident memory of the running child (`VmHWM` in /proc/PID/status), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident memory of the running child now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Every thread of the running child: its name and its nice value (/proc/PID/task/*/stat).
    pub fn thread_priorities(&self) -> Vec<(String, i32)> {
        let dir = format!("/proc/{}/task", self.pid());
        let tasks = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}"));
        let mut threads = Vec::new();
        for task in tasks.flatten() {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
            threads.push((stat[open + 1..close].to_string(), nice_in_stat(&stat)));
        }
        threads
    }

    /// A `<field> N kB` line of the running child's /proc/PID/status.
    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} line in {path}"))
    }

    /// `<dir>/data/spool`: the spool's log (segments, checkpoints).
    pub fn spool_dir(&self) -> PathBuf {
        self.dir().join("data").join("spool")
    }

    /// Runs `hookfan serve` once more on this daemon's config while the daemon is stopped, and
    /// returns how it ended: for startups that must fail. Panics if it is still running
    /// after `within` (it is then killed), or if it got as far as listening.
    pub async fn serve_expecting_exit(&self, within: Duration) -> std::process::Output {
        assert!(self.child.is_none(), "stop the daemon first");
        let mut cmd = serve_command(&self.config_path, &self.env);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id().to_string();
        let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
        let out = match timeout(within, waiter).await {
            Ok(joined) => joined.expect("join").expect("wait for hookfan serve"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("hookfan serve was expected to exit, but still ran after {within:?}");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            eprintln!("[hookfan once] {line}");
        }
        assert!(
            !stderr.contains(LISTENING),
            "hookfan started listening although it should have refused to start"
        );
        out
    }
}

/// The `p`-th percentile (0..=100) of `samples` (sorted in place); zero when empty.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

impl Receiver {
    /// The next recorded request, or `None` once `deadline` passes (never panics).
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Recorded> {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(r)) => Some(r),
            Ok(None) => unreachable!("the receiver state holds a sender"),
            Err(_) => None,
        }
    }
}
