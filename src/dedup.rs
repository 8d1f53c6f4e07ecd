//! Dedup shared by several replicas, on Redis: Stream's retries of one webhook may land on
//! different hookfan replicas behind a load balancer, and each replica's spool only knows its
//! own webhook ids.
//!
//! # The claim protocol
//! For a webhook with an `X-Webhook-Id`, before it is stored ([`crate::ingest::store`]):
//!
//! 1. **claim**: `SET <prefix><id> pending NX PX <pending_ttl>`. Taken: go on. Not taken: read
//!    the key: `stored` means another replica has it (answer 200 duplicate, store nothing);
//!    `pending` means another replica is storing it right now (answer 503 with `Retry-After`;
//!    if that replica dies, the claim expires after `pending_ttl` and a later retry of Stream's
//!    takes it).
//! 2. **store** in the local spool, fsync and all, exactly as without Redis (the local dedup of
//!    the spool still applies).
//! 3. **confirm**: `SET <prefix><id> stored PX <dedup_window>`, then answer 200.
//!
//! Failure cases, none of which loses an acknowledged webhook or acknowledges one that is not
//! stored: a store that fails releases the claim (`DEL` if still `pending`) and answers 503; a
//! confirm that fails leaves the claim `pending` until it expires, after which a retry landing
//! on another replica is stored there too (a duplicate delivery, never a loss); a crash between
//! 1 and 3 is the same. Redis unreachable or slower than `timeout`: the replica falls back to
//! its local dedup (never a 5xx for a genuine webhook because dedup is down), counts it, warns
//! at most every 10 s, and reports it on `/readyz` (still 200) and in
//! `hookfan_dedup_backend_up`; the connection is retried in the background and shared dedup
//! resumes by itself.
//!
//! # Topologies
//! One protocol, three ways to reach Redis ([`RedisTopology`]), each a [`Backend`] that makes a
//! [`Connection`]; every command goes through [`SharedDedup::call`], so timeouts, fallback,
//! warnings and metrics are the same for all three:
//! - **one server** (`url:`): a [`ConnectionManager`], which reconnects by itself;
//! - **Redis Cluster** (`cluster: { nodes }`): the cluster client learns the slots from the
//!   seeds and follows `MOVED`; each command names one key, so any command goes to one node;
//! - **Sentinel** (`sentinel: { master, nodes }`): the sentinels name the master; a call that
//!   fails drops the connection and asks the sentinels again in the background, so a failover
//!   (the old master gone, or back as a read-only replica) is followed by itself.
//!
//! `rediss://` everywhere, with `dedup.tls`'s CA and client certificate when given (read and
//! checked once, at startup). The TLS handshake takes rustls's process-wide crypto provider,
//! which [`crate::server::run`] installs before anything connects.
//!
//! Never: blocks ingest longer than `timeout` per call, or stores anything but ids.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, RedisResult, TlsCertificates};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{RedisDedup, RedisTls, RedisTopology, SentinelDedup};

/// Why shared dedup cannot be set up at startup (Redis being down is not one: that is a
/// fallback, not an error).
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    /// A `dedup.tls` file is missing or holds no usable PEM.
    #[error("dedup: tls.{key}: {path}: {why}")]
    Tls {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
    /// The redis client refused the validated config (a URL is never part of the message).
    #[error("dedup: the Redis client cannot be built: {0:?}")]
    Client(redis::ErrorKind),
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This replica holds the claim: store, then [`SharedDedup::confirm`].
    Claimed,
    /// Another replica stored the webhook within the dedup window.
    Stored,
    /// Another replica is storing it now.
    Pending,
    /// Redis could not be asked: fall back to the local dedup.
    Unavailable,
}

/// How this process reaches Redis: what [`RedisTopology`] builds, before any I/O.
enum Backend {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// `&mut` to ask the sentinels, hence the lock (held only while connecting).
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// One live connection of any kind; clones share it.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    /// To the master the sentinels named when it was made.
    Sentinel(ConnectionManager),
}

impl Backend {
    fn new(config: &RedisDedup) -> Result<Backend, DedupError> {
        let certs = config.tls.as_ref().map(certificates).transpose()?;
        let client = |e: redis::RedisError| DedupError::Client(e.kind());
        Ok(match &config.topology {
            RedisTopology::Single(url) => Backend::Single(
                match certs {
                    Some(certs) => redis::Client::build_with_tls(url.expose_str(), certs),
                    None => redis::Client::open(url.expose_str()),
                }
                .map_err(client)?,
            ),
            RedisTopology::Cluster(nodes) => {
                let mut builder =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(|n| n.expose_str()));
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                Backend::Cluster(builder.build().map_err(client)?)
            }
            RedisTopology::Sentinel(sentinel) => Backend::Sentinel(tokio::sync::Mutex::new(
                sentinel_client(sentinel, certs).map_err(client)?,
            )),
        })
    }

    async fn connect(&self) -> RedisResult<Connection> {
        Ok(match self {
            Backend::Single(client) => {
                Connection::Single(ConnectionManager::new(client.clone()).await?)
            }
            Backend::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
            Backend::Sentinel(sentinels) => {
                let master = sentinels.lock().await.async_get_client().await?;
                Connection::Sentinel(ConnectionManager::new(master).await?)
            }
        })
    }

    /// For the logs: what was reached.
    fn name(&self) -> &'static str {
        match self {
            Backend::Single(_) => "Redis",
            Backend::Cluster(_) => "the Redis cluster",
            Backend::Sentinel(_) => "the Redis master the sentinels name",
        }
    }
}

impl Connection {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Connection::Single(conn) | Connection::Sentinel(conn) => cmd.query_async(conn).await,
            Connection::Cluster(conn) => cmd.query_async(conn).await,
        }
    }

    /// Whether a failed call should drop this connection and find the server again: only a
    /// sentinel-named master may have moved (the other kinds reconnect by themselves).
    fn rediscovers(&self) -> bool {
        matches!(self, Connection::Sentinel(_))
    }
}

fn sentinel_client(
    config: &SentinelDedup,
    certs: Option<TlsCertificates>,
) -> RedisResult<SentinelClient> {
    let infos = config
        .nodes
        .iter()
        .map(|n| n.expose_str().into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    // Validation made sure every sentinel has the same credentials and scheme.
    let first = infos[0].clone();
    let tls = matches!(first.addr(), redis::ConnectionAddr::TcpTls { .. });
    let mut builder = SentinelClientBuilder::new(
        infos.into_iter().map(|i| i.addr().clone()),
        &config.master,
        SentinelServerType::Master,
    )?
    .set_client_to_redis_db(config.db);
    if let Some(user) = first.redis_settings().username() {
        builder = builder.set_client_to_sentinel_username(user);
    }
    if let Some(password) = first.redis_settings().password() {
        builder = builder.set_client_to_sentinel_password(password);
    }
    if let Some(user) = &config.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &config.password {
        builder = builder.set_client_to_redis_password(password.expose_str());
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
        if let Some(certs) = certs {
            builder = builder
                .set_client_to_sentinel_certificates(certs.clone())
                .set_client_to_redis_certificates(certs);
        }
    }
    builder.build()
}

/// Reads `dedup.tls`'s files and checks each holds what it should, so a wrong file stops
/// startup with its name rather than failing every handshake later.
fn certificates(tls: &RedisTls) -> Result<TlsCertificates, DedupError> {
    fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, DedupError> {
        std::fs::read(path).map_err(|e| DedupError::Tls {
            key,
            path: path.to_path_buf(),
            why: format!("cannot read it: {e}"),
        })
    }
    fn certs(key: &'static str, path: &Path) -> Result<Vec<u8>, DedupError> {
        let pem = read(key, path)?;
        let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match parsed {
            Ok(list) if !list.is_empty() => Ok(pem),
            _ => Err(DedupError::Tls {
                key,
                path: path.to_path_buf(),
                why: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
            }),
        }
    }
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|path| certs("ca_file", path))
        .transpose()?;
    let client_tls = match &tls.client {
        Some((cert, key)) => {
            let client_cert = certs("cert_file", cert)?;
            let client_key = read("key_file", key)?;
            if PrivateKeyDer::from_pem_slice(&client_key).is_err() {
                return Err(DedupError::Tls {
                    key: "key_file",
                    path: key.clone(),
                    why: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string(),
                });
            }
            Some(redis::ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        None => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// The shared dedup of one process; cheap to share behind an `Arc`.
pub struct SharedDedup {
    backend: Backend,
    /// None until a connection succeeds, and again after a sentinel-named master failed; the
    /// number tells connections apart, so a late failure of an old one never drops a new one.
    conn: RwLock<Option<(u64, Connection)>>,
    /// Numbers the connections (see `conn`).
    generation: AtomicU64,
    /// Whether the background connect loop runs, so a burst of failures starts one.
    connecting: AtomicBool,
    prefix: String,
    timeout: Duration,
    pending_ttl: Duration,
    window: Duration,
    /// Whether the last call failed (then dedup is local only).
    degraded: AtomicBool,
    /// When the last fallback WARN was logged (ms since start), to log at most every 10 s.
    warned_at: AtomicU64,
    started: Instant,
}

/// At most one fallback warning this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl SharedDedup {
    /// Validated config in; reads `dedup.tls`'s files, no network I/O yet (see
    /// [`SharedDedup::connect`]).
    pub fn new(config: &RedisDedup, window: Duration) -> Result<Arc<SharedDedup>, DedupError> {
        let backend = Backend::new(config)?;
        metrics::gauge!("hookfan_dedup_backend_up").set(0.0);
        for outcome in ["claimed", "stored", "pending", "unavailable"] {
            metrics::counter!("hookfan_dedup_claims_total", "outcome" => outcome).increment(0);
        }
        metrics::counter!("hookfan_dedup_errors_total").increment(0);
        Ok(Arc::new(SharedDedup {
            backend,
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            connecting: AtomicBool::new(false),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            pending_ttl: config.pending_ttl,
            window,
            degraded: AtomicBool::new(true),
            warned_at: AtomicU64::new(0),
            started: Instant::now(),
        }))
    }

    /// Connects in the background, retrying every second until it succeeds; ingest meanwhile
    /// uses its local dedup. Does nothing while a connect loop already runs.
    pub fn connect(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let attempt = tokio::time::timeout(
                    this.timeout.max(Duration::from_secs(1)),
                    this.backend.connect(),
                )
                .await;
                match attempt {
                    Ok(Ok(conn)) => {
                        let generation = this.generation.fetch_add(1, Ordering::Relaxed) + 1;
                        *this
                            .conn
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some((generation, conn));
                        this.connecting.store(false, Ordering::Release);
                        this.degraded.store(false, Ordering::Relaxed);
                        metrics::gauge!("hookfan_dedup_backend_up").set(1.0);
                        tracing::info!(
                            "shared dedup: connected to {}; webhook ids are shared with the other replicas",
                            this.backend.name()
                        );
                        return;
                    }
                    Ok(Err(e)) => this.failed(&format!("cannot connect: {e}")),
                    Err(_) => this.failed("cannot connect: timed out"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Whether the last call to Redis failed (dedup is local only meanwhile).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn conn(&self) -> Option<(u64, Connection)> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs one command within `timeout`; None (and a fallback counted) when it fails.
    async fn call<T: redis::FromRedisValue>(self: &Arc<Self>, cmd: &redis::Cmd) -> Option<T> {
        let Some((generation, mut conn)) = self.conn() else {
            self.failed("not connected yet");
            return None;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, conn.query::<T>(cmd)).await;
        metrics::histogram!("hookfan_dedup_seconds").record(started.elapsed().as_secs_f64());
        let why = match result {
            Ok(Ok(value)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    metrics::gauge!("hookfan_dedup_backend_up").set(1.0);
                    tracing::info!(
                        "shared dedup: Redis answers again; dedup is shared across replicas"
                    );
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ),
        };
        self.failed(&why);
        if conn.rediscovers() {
            self.rediscover(generation);
        }
        None
    }

    /// Drops connection `generation` (if still the current one) and finds the server again.
    fn rediscover(self: &Arc<Self>, generation: u64) {
        {
            let mut conn = self
                .conn
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if conn.as_ref().map(|(g, _)| *g) != Some(generation) {
                return;
            }
            *conn = None;
        }
        self.connect();
    }

    fn failed(&self, why: &str) {
        metrics::counter!("hookfan_dedup_errors_total").increment(1);
        metrics::gauge!("hookfan_dedup_backend_up").set(0.0);
        self.degraded.store(true, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.warned_at.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64 {
            self.warned_at.store(now.max(1), Ordering::Relaxed);
            tracing::warn!(error = %why, "shared dedup: Redis is unavailable; each replica deduplicates on its own meanwhile (a retry landing on another replica may be delivered twice)");
        }
    }

    /// Step 1: claims `id` for this replica (see the module docs).
    pub async fn claim(self: &Arc<Self>, id: &str) -> Claim {
        let key = self.key(id);
        let outcome = self.try_claim(&key).await;
        let label = match outcome {
            Claim::Claimed => "claimed",
            Claim::Stored => "stored",
            Claim::Pending => "pending",
            Claim::Unavailable => "unavailable",
        };
        metrics::counter!("hookfan_dedup_claims_total", "outcome" => label).increment(1);
        outcome
    }

    async fn try_claim(self: &Arc<Self>, key: &str) -> Claim {
        // A key that expires between the SET and the GET is claimed on the second try.
        for _ in 0..2 {
            let mut set = redis::cmd("SET");
            set.arg(key)
                .arg("pending")
                .arg("NX")
                .arg("PX")
                .arg(self.pending_ttl.as_millis() as u64);
            match self.call::<Option<String>>(&set).await {
                None => return Claim::Unavailable,
                Some(Some(_)) => return Claim::Claimed,
                Some(None) => {}
            }
            let mut get = redis::cmd("GET");
            get.arg(key);
            match self.call::<Option<String>>(&get).await {
                None => return Claim::Unavailable,
                Some(Some(value)) if value == "stored" => return Claim::Stored,
                Some(Some(_)) => return Claim::Pending,
                Some(None) => continue,
            }
        }
        Claim::Pending
    }

    /// Step 3: the webhook is stored; remember it for the dedup window.
    pub async fn confirm(self: &Arc<Self>, id: &str) {
        let mut set = redis::cmd("SET");
        set.arg(self.key(id))
            .arg("stored")
            .arg("PX")
            .arg(self.window.as_millis().max(1) as u64);
        let _: Option<()> = self.call(&set).await;
    }

    /// The store failed: let another attempt claim the id at once.
    pub async fn release(self: &Arc<Self>, id: &str) {
        let mut eval = redis::cmd("EVAL");
        eval.arg("if redis.call('GET', KEYS[1]) == 'pending' then return redis.call('DEL', KEYS[1]) else return 0 end")
            .arg(1)
            .arg(self.key(id));
        let _: Option<i64> = self.call(&eval).await;
    }
}
