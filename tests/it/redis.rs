//! A Redis server for the shared-dedup tests: Debian's `redis-server`, started on a free
//! loopback port with no persistence, stopped and started again on the same port to simulate
//! an outage. Installed by the first test that needs it when missing ([`ensure_installed`]).
//!
//! Also the other topologies hookfan supports, from the same binary: a TLS-only server with a
//! throwaway CA ([`RedisServer::start_tls`], [`TestPki`]), a three-master cluster
//! ([`RedisCluster`]) and a master with a replica and a sentinel ([`RedisSentinel`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::harness::{eventually, hold_port, poll_until};

pub struct RedisServer {
    port: u16,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
    /// Arguments after the port and persistence ones (TLS, cluster, replication).
    extra: Vec<String>,
    /// Whether the port is the TLS port (`--port 0 --tls-port N`).
    tls: bool,
    /// A sentinel's config file, written before the first start (redis-server rewrites it).
    sentinel_conf: Option<PathBuf>,
    /// While stopped: the port, held for the restart ([`hold_port`]).
    held: Mutex<Option<tokio::net::TcpSocket>>,
}

/// Debian's `redis-server` and `redis-cli`, installed by the test setup when missing.
fn ensure_installed() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        crate::harness::ensure_debian_packages(
            "the shared-dedup tests",
            &[
                ("redis-server", "redis-server"),
                ("redis-cli", "redis-tools"),
            ],
        )
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        RedisServer::start_with(free_port(), Vec::new(), false).await
    }

    async fn start_with(port: u16, extra: Vec<String>, tls: bool) -> RedisServer {
        let server = RedisServer {
            port,
            child: Mutex::new(None),
            dir: tempfile::tempdir().expect("temp dir"),
            extra,
            tls,
            sentinel_conf: None,
            held: Mutex::new(None),
        };
        server.spawn().await;
        server
    }

    /// A server that speaks TLS only, with `pki`'s server certificate; with `mutual`, it also
    /// requires a client certificate signed by `pki`'s CA.
    pub async fn start_tls(pki: &TestPki, mutual: bool) -> RedisServer {
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        let extra = vec![
            "--tls-cert-file".into(),
            path(&pki.server_cert),
            "--tls-key-file".into(),
            path(&pki.server_key),
            "--tls-ca-cert-file".into(),
            path(&pki.ca),
            "--tls-auth-clients".into(),
            if mutual { "yes" } else { "no" }.into(),
        ];
        RedisServer::start_with(free_port(), extra, true).await
    }

    async fn spawn(&self) {
        ensure_installed();
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        if let Some(conf) = &self.sentinel_conf {
            command.arg(conf).arg("--sentinel");
        }
        if self.tls {
            command.args(["--port", "0", "--tls-port", &port]);
        } else {
            command.args(["--port", &port]);
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install it (Debian/Ubuntu: apt-get install redis-server); the shared-dedup tests need it")
            });
        *self.child.lock().unwrap() = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        eventually(
            Duration::from_secs(10),
            &format!("redis-server listens on {addr}"),
            || async { tokio::net::TcpStream::connect(addr).await.is_ok() },
        )
        .await;
        // Listening beside the holder, if there was one: it can go.
        drop(self.held.lock().unwrap().take());
        eprintln!("[redis] listening on {addr}");
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://127.0.0.1:{}/0", self.port)
        } else {
            format!("redis://127.0.0.1:{}/0", self.port)
        }
    }

    /// `redis-cli` against this (plain) server; its output, or a panic naming the command.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// Kills the server; its port refuses connections until [`RedisServer::restart`].
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
            *self.held.lock().unwrap() = hold_port(self.port);
            eprintln!("[redis] stopped");
        }
    }

    /// Starts an empty server on the same port again.
    pub async fn restart(&self) {
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-cli ({e}): it comes with redis-server (Debian: redis-tools)")
        });
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `redis-cli` on `port` until its output satisfies `ok`.
async fn until_cli(
    port: u16,
    args: &[&str],
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) {
    let what = format!("{what} (redis-cli -p {port} {args:?})");
    poll_until(within, &what, || ok(&redis_cli(port, args)).then_some(())).await;
}

/// A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, all signed by
/// that CA, as PEM files in a temp dir.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Every certificate its own name: a leaf named like its issuer looks self-signed to
        // OpenSSL (redis-server), which then refuses the client certificate.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "hookfan test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("leaf key");
            let mut params = CertificateParams::new(names.clone()).expect("leaf params");
            params
                .distinguished_name
                .push(DnType::CommonName, names[0].clone());
            params.extended_key_usages = vec![usage];
            let cert = params
                .signed_by(&key, &ca, &ca_key)
                .expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["hookfan".into()], ExtendedKeyUsagePurpose::ClientAuth);
        TestPki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_cert),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client_cert),
            client_key: write("client.key", client_key),
            _dir: dir,
        }
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55000 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of three masters, no replicas, every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]
            .map(String::from)
            .to_vec();
            nodes.push(RedisServer::start_with(free_cluster_port(), extra, false).await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        nodes[0].cli(&args);
        for node in &nodes {
            until_cli(
                node.port,
                &["cluster", "info"],
                Duration::from_secs(20),
                "cluster_state:ok",
                |out| out.contains("cluster_state:ok"),
            )
            .await;
        }
        eprintln!("[redis] cluster of {addrs:?} is ok");
        RedisCluster { nodes }
    }

    /// The seed list for `dedup.cluster.nodes`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }
}

/// A master, its replica and one sentinel watching them (quorum 1, a master is down after 1 s
/// without an answer), so a failover takes a few seconds.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        let master = RedisServer::start().await;
        let replica = RedisServer::start_with(
            free_port(),
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            false,
        )
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                master.port
            ),
        )
        .expect("write sentinel.conf");
        let sentinel = RedisServer {
            port: free_port(),
            child: Mutex::new(None),
            dir,
            extra: Vec::new(),
            tls: false,
            sentinel_conf: Some(conf),
            held: Mutex::new(None),
        };
        sentinel.spawn().await;
        // The replica has synced, and the sentinel knows it (a failover needs both).
        until_cli(
            replica.port,
            &["info", "replication"],
            Duration::from_secs(20),
            "the replica in sync",
            |out| out.contains("master_link_status:up"),
        )
        .await;
        until_cli(
            sentinel.port,
            &["sentinel", "replicas", SENTINEL_MASTER],
            Duration::from_secs(20),
            "the sentinel to know the replica",
            |out| out.contains(&replica.port.to_string()),
        )
        .await;
        RedisSentinel {
            master,
            replica,
            sentinel,
        }
    }

    /// The sentinel's URL for `dedup.sentinel.nodes`.
    pub fn sentinel_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinel.port)
    }

    /// The port the sentinel names as master now.
    pub fn master_port(&self) -> u16 {
        let out = self
            .sentinel
            .cli(&["sentinel", "get-master-addr-by-name", SENTINEL_MASTER]);
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills the master and waits until the sentinel has promoted the replica.
    pub async fn fail_over(&self) {
        self.master.stop();
        let replica = self.replica.port.to_string();
        until_cli(
            self.sentinel.port,
            &["sentinel", "get-master-addr-by-name", SENTINEL_MASTER],
            Duration::from_secs(30),
            "the sentinel to promote the replica",
            |out| out.lines().nth(1).map(str::trim) == Some(replica.as_str()),
        )
        .await;
        until_cli(
            self.replica.port,
            &["role"],
            Duration::from_secs(30),
            "the replica to be master",
            |out| out.starts_with("master"),
        )
        .await;
        eprintln!("[redis] failed over to 127.0.0.1:{replica}");
    }
}
