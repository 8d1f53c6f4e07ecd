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
//! Never: blocks ingest longer than `timeout` per call, or stores anything but ids.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::config::RedisDedup;

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

/// The shared dedup of one process; cheap to share behind an `Arc`.
pub struct SharedDedup {
    client: redis::Client,
    /// None until the first connection succeeds; the manager reconnects by itself after.
    conn: RwLock<Option<ConnectionManager>>,
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
    /// Validated config in; no I/O yet (see [`SharedDedup::connect`]).
    pub fn new(
        config: &RedisDedup,
        window: Duration,
    ) -> Result<Arc<SharedDedup>, redis::RedisError> {
        let client = redis::Client::open(config.url.expose_str())?;
        metrics::gauge!("hookfan_dedup_backend_up").set(0.0);
        for outcome in ["claimed", "stored", "pending", "unavailable"] {
            metrics::counter!("hookfan_dedup_claims_total", "outcome" => outcome).increment(0);
        }
        metrics::counter!("hookfan_dedup_errors_total").increment(0);
        Ok(Arc::new(SharedDedup {
            client,
            conn: RwLock::new(None),
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
    /// uses its local dedup.
    pub fn connect(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let attempt = tokio::time::timeout(
                    this.timeout.max(Duration::from_secs(1)),
                    ConnectionManager::new(this.client.clone()),
                )
                .await;
                match attempt {
                    Ok(Ok(conn)) => {
                        *this
                            .conn
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn);
                        this.degraded.store(false, Ordering::Relaxed);
                        metrics::gauge!("hookfan_dedup_backend_up").set(1.0);
                        tracing::info!("shared dedup: connected to Redis; webhook ids are shared with the other replicas");
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

    fn conn(&self) -> Option<ConnectionManager> {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs one command within `timeout`; None (and a fallback counted) when it fails.
    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let Some(mut conn) = self.conn() else {
            self.failed("not connected yet");
            return None;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        metrics::histogram!("hookfan_dedup_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(value)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    metrics::gauge!("hookfan_dedup_backend_up").set(1.0);
                    tracing::info!(
                        "shared dedup: Redis answers again; dedup is shared across replicas"
                    );
                }
                Some(value)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed(&format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ));
                None
            }
        }
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
    pub async fn claim(&self, id: &str) -> Claim {
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

    async fn try_claim(&self, key: &str) -> Claim {
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
    pub async fn confirm(&self, id: &str) {
        let mut set = redis::cmd("SET");
        set.arg(self.key(id))
            .arg("stored")
            .arg("PX")
            .arg(self.window.as_millis().max(1) as u64);
        let _: Option<()> = self.call(&set).await;
    }

    /// The store failed: let another attempt claim the id at once.
    pub async fn release(&self, id: &str) {
        let mut eval = redis::cmd("EVAL");
        eval.arg("if redis.call('GET', KEYS[1]) == 'pending' then return redis.call('DEL', KEYS[1]) else return 0 end")
            .arg(1)
            .arg(self.key(id));
        let _: Option<i64> = self.call(&eval).await;
    }
}
