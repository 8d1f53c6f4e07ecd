//! A local AWS (moto's server, SQS and SNS) for the `sqs` and `sns` end-to-end
//! tests, and the SDK helpers the tests read it with.
//!
//! moto is installed by the tests themselves, once per target dir: a venv at
//! `<target dir>/moto-venv-5.2.5` with `pip install 'moto[server]==5.2.5'`,
//! guarded against parallel tests and parallel test binaries by a lock file
//! and marked done by a marker file written after a successful install.
//!
//! Each server runs under a tiny `sh` supervisor whose standard input is a
//! pipe from this process: when the test binary exits for any reason (even
//! SIGKILL) the pipe closes and the supervisor kills moto, so the shared
//! per-binary server (a static, never dropped) does not outlive the tests.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};

use crate::harness::{eventually, hold_port, port_sharing_socket};

/// What the tests install, and the venv's name.
pub const MOTO_SPEC: &str = "moto[server]==5.2.5";
const MOTO_VERSION: &str = "5.2.5";
/// moto's default account; queue URLs and ARNs carry it.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// moto accepts any credentials; these are the conventional ones.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";

/// How long a moto server may take to answer after it is spawned.
const MOTO_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped moto server may take to exit.
const MOTO_STOP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Installation
// ---------------------------------------------------------------------------

/// `$CARGO_TARGET_DIR` (when set, relative to the package root) or
/// `<package root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Runs `cmd`, panicking with the command, its exit status and its output
/// when it cannot be started or fails.
/// An exclusive lock on `path` (created if missing), held until the file drops: one test binary
/// installs into target/ at a time, the others wait and then find the install done.
pub(crate) fn install_lock(path: &Path) -> File {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    lock
}

pub(crate) fn run_or_panic(mut cmd: Command, hint: &str) {
    let described = format!("{cmd:?}");
    eprintln!("[moto] running {described}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {described}: {e}. {hint}"));
    if !out.status.success() {
        let tail = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        panic!(
            "{described} failed ({}). {hint}\n--- stderr (last lines) ---\n{}\n\
             --- stdout (last lines) ---\n{}",
            out.status,
            tail(&out.stderr),
            tail(&out.stdout)
        );
    }
}

/// Installs moto into its venv unless a previous run did; returns the path
/// of `moto_server`. Safe to call from parallel tests and test binaries.
fn moto_server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(install_moto).clone()
}

fn install_moto() -> PathBuf {
    let parent = target_dir();
    std::fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let venv = parent.join(format!("moto-venv-{MOTO_VERSION}"));
    let bin = venv.join("bin").join("moto_server");
    let marker = venv.join(".hookfan-installed");

    // Blocks while another test binary installs; released when `lock` drops.
    let lock = install_lock(&parent.join(format!("moto-venv-{MOTO_VERSION}.lock")));

    let installed = std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == MOTO_SPEC);
    if installed && bin.is_file() {
        return bin;
    }
    eprintln!(
        "[moto] installing {MOTO_SPEC} into {} (once per target dir)",
        venv.display()
    );
    if venv.exists() {
        // A half-made venv from an interrupted install.
        std::fs::remove_dir_all(&venv)
            .unwrap_or_else(|e| panic!("remove the unfinished {}: {e}", venv.display()));
    }
    let started = Instant::now();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&venv);
    run_or_panic(
        cmd,
        "The SQS/SNS tests need python3 with the venv module \
         (Debian/Ubuntu: apt-get install python3-venv).",
    );
    let mut cmd = Command::new(venv.join("bin").join("pip"));
    cmd.args([
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        MOTO_SPEC,
    ]);
    run_or_panic(
        cmd,
        "The SQS/SNS tests need moto from PyPI (pip must reach the package index).",
    );
    assert!(
        bin.is_file(),
        "pip installed {MOTO_SPEC} but {} does not exist",
        bin.display()
    );
    std::fs::write(&marker, format!("{MOTO_SPEC}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", marker.display()));
    eprintln!("[moto] installed in {:?}", started.elapsed());
    drop(lock);
    bin
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// Starts moto (`$1`) on 127.0.0.1:`$2`, logging to `$3`, and kills it as
/// soon as this script's standard input (a pipe from the test process)
/// reaches EOF. Exits with moto's status when moto exits by itself.
const SUPERVISOR: &str = r#"
"$1" -H 127.0.0.1 -p "$2" >>"$3" 2>&1 </dev/null &
moto=$!
exec 3<&0
( read -r _ <&3; kill "$moto" 2>/dev/null ) &
watcher=$!
wait "$moto"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

struct Running {
    supervisor: Child,
    /// Dropping it closes the pipe, which stops moto.
    stdin: Option<ChildStdin>,
}

/// A moto server on 127.0.0.1. Killed when dropped.
pub struct Moto {
    port: u16,
    log: PathBuf,
    running: Mutex<Option<Running>>,
    /// While stopped: the port, held for the restart ([`hold_port`]).
    held: Mutex<Option<tokio::net::TcpSocket>>,
}

impl Moto {
    /// The server shared by every test of this binary (started on first use).
    /// Tests sharing it must use their own uniquely named queues and topics
    /// ([`unique_name`]).
    pub async fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        blocking(|| SHARED.get_or_init(Moto::spawn_new)).await
    }

    /// A server of the calling test's own, which it can [`Moto::stop`] and
    /// [`Moto::start`] again on the same port.
    pub async fn dedicated() -> Moto {
        blocking(Moto::spawn_new).await
    }

    fn spawn_new() -> Moto {
        let bin = moto_server_bin();
        let logs = target_dir().join("moto-logs");
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("create {}: {e}", logs.display()));
        remove_old_logs(&logs);
        // A port that was free a moment ago may be taken before moto binds
        // it; then moto exits and another port is tried.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let log = logs.join(format!("moto-{port}.log"));
            let _ = std::fs::remove_file(&log);
            let moto = Moto {
                port,
                log,
                running: Mutex::new(None),
                held: Mutex::new(None),
            };
            match moto.spawn(&bin) {
                Ok(()) => return moto,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "moto_server did not start on any of 3 ports:\n{}",
            failures.join("\n")
        );
    }

    /// Spawns the supervisor on `self.port` and waits until moto answers.
    fn spawn(&self, bin: &Path) -> Result<(), String> {
        let mut guard = self.running.lock().unwrap();
        assert!(guard.is_none(), "moto on port {} is running", self.port);
        let started = Instant::now();
        let mut supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("moto-supervisor")
            .arg(bin)
            .arg(self.port.to_string())
            .arg(&self.log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh for moto_server: {e}"));
        let stdin = supervisor.stdin.take();
        let mut running = Running { supervisor, stdin };
        let deadline = started + MOTO_STARTUP_TIMEOUT;
        loop {
            if answers(self.port) {
                eprintln!(
                    "[moto] listening on {} after {:?} (log: {})",
                    self.endpoint(),
                    started.elapsed(),
                    self.log.display()
                );
                *guard = Some(running);
                // Listening beside the holder, if there was one: it can go.
                drop(self.held.lock().unwrap().take());
                return Ok(());
            }
            if let Some(status) = running.supervisor.try_wait().expect("try_wait moto") {
                return Err(format!(
                    "moto_server on port {} exited with {status} before answering; \
                     its log {}:\n{}",
                    self.port,
                    self.log.display(),
                    log_tail(&self.log)
                ));
            }
            if Instant::now() >= deadline {
                shut_down(&mut running, self.port);
                return Err(format!(
                    "moto_server on port {} did not answer GET /moto-api/ within \
                     {MOTO_STARTUP_TIMEOUT:?}; its log {}:\n{}",
                    self.port,
                    self.log.display(),
                    log_tail(&self.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server and waits until it has exited: its port refuses
    /// connections, and everything it held (queues, topics, messages) is
    /// gone. Needs the multi-thread runtime (it blocks in place).
    pub async fn stop(&self) {
        tokio::task::block_in_place(|| {
            let mut running = self
                .running
                .lock()
                .unwrap()
                .take()
                .expect("moto is not running");
            shut_down(&mut running, self.port);
            *self.held.lock().unwrap() = hold_port(self.port);
            eprintln!("[moto] {} stopped", self.endpoint());
        })
    }

    /// Starts a fresh (empty) server on the same port again.
    pub async fn start(&self) {
        tokio::task::block_in_place(|| {
            let bin = moto_server_bin();
            // The port was just released; only another process taking it
            // meanwhile makes this fail. Try briefly.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match self.spawn(&bin) {
                    Ok(()) => return,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("[moto] restarting on port {}: {e}; retrying", self.port);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("could not start moto again: {e}"),
                }
            }
        })
    }

    /// SDK clients for this server (build them per test: a client belongs
    /// to the runtime it was first used on).
    pub async fn client(&self) -> Aws {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "hookfan-it",
            ))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            .load()
            .await;
        Aws {
            sqs: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let running = self.running.get_mut().map(Option::take);
        if let Ok(Some(mut running)) = running {
            shut_down(&mut running, self.port);
        }
    }
}

/// Closes the supervisor's stdin (which makes it kill moto) and reaps it.
fn shut_down(running: &mut Running, port: u16) {
    drop(running.stdin.take());
    let deadline = Instant::now() + MOTO_STOP_TIMEOUT;
    loop {
        match running.supervisor.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = running.supervisor.kill();
                let _ = running.supervisor.wait();
                panic!(
                    "moto on port {port} did not exit within {MOTO_STOP_TIMEOUT:?} after its \
                     supervisor's stdin closed"
                );
            }
        }
    }
    // moto is the supervisor's child and is reaped by it; make sure the port
    // is closed before callers rely on an outage.
    let deadline = Instant::now() + MOTO_STOP_TIMEOUT;
    while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
        assert!(
            Instant::now() < deadline,
            "port {port} still accepts connections {MOTO_STOP_TIMEOUT:?} after moto was stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs blocking `f` off the async runtime, re-raising its panic.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Whether `GET /moto-api/` on the port answers 200.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Removes the logs of servers started over an hour ago (earlier runs).
fn remove_old_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `prefix-<32 hex>`: a queue or topic name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A daemon config whose process has moto's credentials and region ([`daemon_aws_env`]).
pub fn aws_config() -> crate::harness::Config {
    daemon_aws_env()
        .into_iter()
        .fold(crate::harness::Config::default(), |c, (k, v)| c.env(k, v))
}

/// The environment that gives `hookfan serve` moto's credentials and region
/// (and nothing from the developer's own AWS setup).
pub fn daemon_aws_env() -> [(&'static str, &'static str); 6] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ]
}

// ---------------------------------------------------------------------------
// SDK helpers
// ---------------------------------------------------------------------------

/// One SQS message as a consumer receives it.
#[derive(Clone, Debug)]
pub struct Received {
    pub message_id: String,
    pub body: String,
    /// Message attributes: name -> (DataType, StringValue).
    pub attributes: HashMap<String, (String, Option<String>)>,
    /// System attributes (`MessageGroupId`, `MessageDeduplicationId`, ...).
    pub system: HashMap<String, String>,
}

impl Received {
    /// The value of a `String` message attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(|(_, v)| v.as_deref())
    }

    /// The `webhook_id` message attribute, which every message must carry.
    pub fn webhook_id(&self) -> &str {
        self.attr("webhook_id")
            .unwrap_or_else(|| panic!("message without a webhook_id attribute: {self:?}"))
    }

    pub fn system(&self, name: &str) -> Option<&str> {
        self.system.get(name).map(String::as_str)
    }
}

/// SQS and SNS clients for one moto server.
pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Aws {
    /// Creates a standard queue; returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        let out = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {}", sqs_error(e)));
        out.queue_url().expect("CreateQueue gives a URL").to_owned()
    }

    /// Creates a FIFO queue (`name` must end with `.fifo`) without
    /// content-based deduplication; returns its URL.
    pub async fn create_fifo_queue(&self, name: &str) -> String {
        assert!(name.ends_with(".fifo"), "a FIFO queue name ends with .fifo");
        let out = self
            .sqs
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name}: {}", sqs_error(e)));
        out.queue_url().expect("CreateQueue gives a URL").to_owned()
    }

    pub async fn queue_arn(&self, queue_url: &str) -> String {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes {queue_url}: {}", sqs_error(e)));
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .unwrap_or_else(|| panic!("no QueueArn for {queue_url}: {out:?}"))
            .clone()
    }

    /// `ApproximateNumberOfMessages`: visible messages (moto counts exactly).
    pub async fn visible_count(&self, queue_url: &str) -> usize {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetQueueAttributes {queue_url}: {}", sqs_error(e)));
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no ApproximateNumberOfMessages for {queue_url}: {out:?}"))
    }

    /// Polls [`Aws::visible_count`] until it is at least `n` (or `within`
    /// passes, which panics); returns the last count.
    pub async fn until_visible(&self, queue_url: &str, n: usize, within: Duration) -> usize {
        let what = format!("{queue_url} holds {n} messages");
        eventually(within, &what, || async {
            let count = self.visible_count(queue_url).await;
            (count >= n).then_some(count)
        })
        .await
    }

    /// Creates a standard topic; returns its ARN.
    pub async fn create_topic(&self, name: &str) -> String {
        let out = self
            .sns
            .create_topic()
            .name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTopic {name}: {}", sns_error(e)));
        out.topic_arn()
            .expect("CreateTopic gives an ARN")
            .to_owned()
    }

    /// Creates a FIFO topic (`name` must end with `.fifo`); returns its ARN.
    pub async fn create_fifo_topic(&self, name: &str) -> String {
        assert!(name.ends_with(".fifo"), "a FIFO topic name ends with .fifo");
        let out = self
            .sns
            .create_topic()
            .name(name)
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false")
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateTopic {name}: {}", sns_error(e)));
        out.topic_arn()
            .expect("CreateTopic gives an ARN")
            .to_owned()
    }

    /// Subscribes the queue to the topic; `filter_policy` applies to the
    /// message attributes. Returns the subscription ARN.
    pub async fn subscribe_queue(
        &self,
        topic_arn: &str,
        queue_url: &str,
        raw_message_delivery: bool,
        filter_policy: Option<&serde_json::Value>,
    ) -> String {
        let queue_arn = self.queue_arn(queue_url).await;
        let mut req = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .return_subscription_arn(true)
            .attributes("RawMessageDelivery", raw_message_delivery.to_string());
        if let Some(policy) = filter_policy {
            req = req
                .attributes("FilterPolicyScope", "MessageAttributes")
                .attributes("FilterPolicy", policy.to_string());
        }
        let out = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("Subscribe {queue_arn} to {topic_arn}: {}", sns_error(e)));
        out.subscription_arn()
            .expect("Subscribe gives an ARN")
            .to_owned()
    }

    /// Receives (and deletes) messages until `expected` were received or
    /// `within` passes; returns them in receive order (possibly fewer than
    /// `expected`: the caller asserts, naming what is missing).
    pub async fn receive_all(
        &self,
        queue_url: &str,
        expected: usize,
        within: Duration,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            // Long-poll at most 1 s, and never past the deadline.
            let wait = if left >= Duration::from_secs(1) { 1 } else { 0 };
            got.extend(self.receive_batch(queue_url, wait).await);
            if wait == 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        eprintln!(
            "[moto] received {} of {expected} expected messages from {queue_url}",
            got.len()
        );
        got
    }

    /// Receives (and deletes) whatever is visible now, until a receive comes
    /// back empty.
    pub async fn drain(&self, queue_url: &str) -> Vec<Received> {
        let mut got = Vec::new();
        loop {
            let batch = self.receive_batch(queue_url, 0).await;
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    }

    /// One ReceiveMessage (up to 10, all attributes), then a delete of what
    /// it returned.
    async fn receive_batch(&self, queue_url: &str, wait_seconds: i32) -> Vec<Received> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage {queue_url}: {}", sqs_error(e)));
        let messages = out.messages();
        if messages.is_empty() {
            return Vec::new();
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().expect("a receipt handle"))
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let deleted = self
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteMessageBatch {queue_url}: {}", sqs_error(e)));
        assert!(
            deleted.failed().is_empty(),
            "DeleteMessageBatch {queue_url} failed for {:?}",
            deleted.failed()
        );
        messages
            .iter()
            .map(|m| Received {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                attributes: m
                    .message_attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    (
                                        v.data_type().to_owned(),
                                        v.string_value().map(str::to_owned),
                                    ),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                system: m
                    .attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

fn sqs_error<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
}

fn sns_error<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_sns::error::DisplayErrorContext(e).to_string()
}

// ---------------------------------------------------------------------------
// Gate
// ---------------------------------------------------------------------------

/// A TCP forwarder on 127.0.0.1 in front of a server, which a test can close
/// (every connection is cut and new ones are refused) and open again on the
/// same port: an outage of the server that keeps the server's state.
pub struct Gate {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    /// While closed: the port, bound but not listening, so connections are refused.
    held: Option<tokio::net::TcpSocket>,
}

impl Gate {
    pub async fn start(upstream: SocketAddr) -> Gate {
        let socket = port_sharing_socket();
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind gate");
        let listener = socket.listen(1024).expect("listen gate");
        let addr = listener.local_addr().expect("gate addr");
        Gate {
            addr,
            upstream,
            task: Some(tokio::spawn(forward(listener, upstream))),
            held: None,
        }
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every connection and refuses new ones; the port stays the gate's.
    pub async fn close(&mut self) {
        let task = self.task.take().expect("the gate is open");
        // Held before the listener closes, so nothing else can be given the port meanwhile.
        let held = port_sharing_socket();
        held.bind(self.addr)
            .unwrap_or_else(|e| panic!("could not hold the gate's port {}: {e}", self.addr));
        task.abort();
        let _ = task.await;
        self.held = Some(held);
        eprintln!("[gate] {} closed", self.addr);
    }

    /// Accepts again on the same port.
    pub async fn open(&mut self) {
        let held = self.held.take().expect("the gate is closed");
        let listener = held
            .listen(1024)
            .unwrap_or_else(|e| panic!("could not listen again on the gate's {}: {e}", self.addr));
        self.task = Some(tokio::spawn(forward(listener, self.upstream)));
        eprintln!("[gate] {} open", self.addr);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Accepts and pipes each connection to `upstream`. The connection tasks
/// live in a `JoinSet` owned by this task, so aborting it cuts them all.
async fn forward(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
