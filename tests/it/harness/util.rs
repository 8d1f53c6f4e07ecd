//! Small utilities: waits (`eventually`), ports, metrics parsing.

#[allow(unused_imports)]
use super::*;

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

/// A socket for a test server of ours that stops and starts again on its port. Every socket of
/// that server has SO_REUSEPORT, so the one that holds the port while the server is down can
/// bind it before the listener closes (and beside its connections in TIME_WAIT): the port is
/// never free in between. No socket without SO_REUSEPORT can be given the port meanwhile: not
/// an automatic bind, not a connect's ephemeral port, not a bind with SO_REUSEADDR (such as
/// hookfan's listeners). Not SO_REUSEADDR itself: with it, a socket with SO_REUSEADDR could bind
/// the port beside the holder, which does not listen.
pub fn port_sharing_socket() -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().expect("a test server socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket
}

/// Holds 127.0.0.1:`port` while a server process that had it (redis-server, moto) is down: a
/// socket bound to it with SO_REUSEADDR, not listening, so connections are refused and neither
/// an automatic bind nor a connect's ephemeral port can take it. The server, which sets
/// SO_REUSEADDR itself, can still bind and listen beside it when it starts again; drop the
/// holder once it answers. `None` (and a line on stderr) when the port cannot be held: the
/// restart then finds out for itself whether the port is still free.
pub fn hold_port(port: u16) -> Option<tokio::net::TcpSocket> {
    let held = tokio::net::TcpSocket::new_v4().and_then(|socket| {
        socket.set_reuseaddr(true)?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(socket)
    });
    held.map_err(|e| {
        eprintln!("[harness] could not hold port {port} while its server is down: {e}")
    })
    .ok()
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
    let reusing = tokio::net::TcpSocket::new_v4().expect("socket");
    reusing.set_reuseaddr(true).expect("SO_REUSEADDR");
    assert_eq!(
        reusing.bind(receiver.addr).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AddrInUse),
        "not even a socket with SO_REUSEADDR (as hookfan's listeners have) can take the port"
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
