//! The daemon process: start, wait for its listeners, signal, read its logs, the CLI.

#[allow(unused_imports)]
use super::*;

/// A running (or stopped) `hookfan serve` child process with its own temp dir.
///
/// The child is killed (SIGKILL) when the `Daemon` is dropped.
pub struct Daemon {
    /// Address of the ingest listener of the current child.
    pub addr: SocketAddr,
    /// Address of the admin listener (health, readiness, metrics) of the current child.
    pub admin: SocketAddr,
    pub(crate) config_path: PathBuf,
    /// Extra environment of every child ([`Config::env`]).
    pub(crate) env: Vec<(String, String)>,
    pub(crate) child: Option<Child>,
    /// Number of children started so far (1 after `start`).
    pub(crate) generation: u32,
    /// Every line any child wrote to stdout or stderr, in order.
    pub(crate) logs: Arc<Mutex<String>>,
    // Declared last: the directory outlives the child in `Drop`.
    pub(crate) dir: tempfile::TempDir,
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

    /// Whether the running child holds a listening TCP socket on `port` (from /proc: its
    /// socket inodes against the kernel's tables). Unlike a connection attempt, another
    /// process that happens to bind the same port meanwhile cannot make it true.
    pub fn listens_on(&self, port: u16) -> bool {
        let pid = self.child.as_ref().expect("daemon running").id();
        let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("list the daemon's file descriptors")
            .filter_map(|fd| {
                let target = std::fs::read_link(fd.ok()?.path()).ok()?;
                let target = target.to_str()?;
                Some(
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_string(),
                )
            })
            .collect();
        ["tcp", "tcp6"].iter().any(|table| {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address (hex IP:hex port), st (0A: LISTEN), inode (field 9).
                fields.len() > 9
                    && fields[3] == "0A"
                    && fields[1]
                        .rsplit_once(':')
                        .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                        == Some(port)
                    && inodes.contains(fields[9])
            })
        })
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
        self.signal_and_wait("TERM").await
    }

    /// Sends `SIG<signal>` (`TERM`, `INT`) and waits (at most [`SHUTDOWN_TIMEOUT`]) for the
    /// exit.
    pub async fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.take_child();
        let pid = child.id().to_string();
        eprintln!("[harness] kill -{signal} hookfan (pid {pid})");
        let started = Instant::now();
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -{signal} {pid} failed: {kill}");
        let waiter = tokio::task::spawn_blocking(move || child.wait());
        match timeout(SHUTDOWN_TIMEOUT, waiter).await {
            Ok(joined) => {
                let status = joined.expect("join waiter").expect("wait for hookfan");
                eprintln!(
                    "[harness] hookfan exited after SIG{signal} in {:?}: {status}",
                    started.elapsed()
                );
                status
            }
            Err(_) => {
                // The waiter owns the child; it returns once the kill lands.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!(
                    "hookfan did not exit within {SHUTDOWN_TIMEOUT:?} after SIG{signal} \
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
        eventually(
            Duration::from_secs(10),
            &format!("{id} dead-lettered"),
            || async {
                self.cli(&["dead-letters", "list", "--json"])
                    .await
                    .contains(id)
            },
        )
        .await;
    }

    /// [`Daemon::cli`] whatever its exit status: the command's whole output.
    pub async fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookfan"));
        cmd.args(args).arg("--config").arg(&self.config_path);
        cmd.stdin(Stdio::null()).env("NO_COLOR", "1");
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        remove_inherited_env(&mut cmd);
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
pub(crate) fn log_filter() -> String {
    std::env::var("HOOKFAN_IT_LOG").unwrap_or_else(|_| "info".to_owned())
}

/// `hookfan serve --config PATH` with piped output, the test log filter, no proxy or AWS
/// settings from the environment, and `env` on top.
pub(crate) fn serve_command(config_path: &Path, env: &[(String, String)]) -> Command {
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
    remove_inherited_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Spawns `hookfan serve --config PATH`, drains its stdout and stderr in
/// background threads for its whole life (echoing them), and waits for the
/// `listening on http://ADDR` line.
pub(crate) async fn spawn_serve(
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

/// Removes the inherited `AWS_*` and `OTEL_*` variables: the daemon's AWS and trace
/// settings are exactly what the test gives it ([`Config::env`]).
pub(crate) fn remove_inherited_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("AWS_") || key_text.starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
}

/// Calls `f` for each line (lossy UTF-8) until EOF or a read error.
pub(crate) fn for_each_line(stream: impl Read, mut f: impl FnMut(&str)) {
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
pub(crate) fn parse_after(line: &str, marker: &str) -> Option<SocketAddr> {
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

pub(crate) fn strip_ansi(s: &str) -> String {
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
