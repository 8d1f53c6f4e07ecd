//! The previous spool (hookfan before the log, issue 21): one redb database file. Kept only
//! so that a data_dir it wrote is imported once into the log ([`super::import`], which reads
//! it through [`RedbSpool::export`]), and so that tests can write such a file. The daemon
//! never serves from it. What follows is its design, as it was.
//!
//! # Design
//! One [redb](https://docs.rs/redb) database file, `<data_dir>/spool.redb`. redb is an embedded,
//! copy-on-write B-tree store with ACID transactions: a write transaction committed with
//! `Durability::Immediate` is on disk (fsynced) when `commit()` returns, and a crash at any
//! moment leaves the file at the last committed transaction.
//!
//! Tables:
//!
//! | table          | key                       | value                      |
//! |----------------|---------------------------|----------------------------|
//! | `events`       | seq                       | [`StoredEvent`] (postcard) |
//! | `refs`         | seq                       | routes still holding it    |
//! | `pending`      | (route, due_ms, seq)      | [`PendingState`]           |
//! | `dead`         | (route, seq)              | [`DeadState`]              |
//! | `seen_by_time` | (received_ms, webhook id) | ()                         |
//! | `meta`         | name                      | u64 (schema version)       |
//!
//! An event is stored once however many routes take it; each route holds it through one
//! `pending` row (keyed by when it is next due, so a route's worker reads what is due in order
//! and a failing event moves *behind* the events after it) or one `dead` row. `refs` counts
//! those rows; when it reaches zero the event is deleted and its pages are reused.
//!
//! # Dedup
//! Webhook ids are random UUIDs. A table keyed by id would take each new id into a random leaf
//! page, and a copy-on-write B-tree rewrites every leaf it touches: with a batch of ids that is
//! one 4 KiB page per webhook, which cost the writer about half its throughput (measured with
//! `examples/bench_spool.rs`). So the only durable record of an id is `seen_by_time`, whose
//! key starts with the time and so grows at its right edge. The writer finds an id through
//! [`SeenIndex`], an in-memory map from a 64-bit fingerprint of the id to the time of its row,
//! rebuilt from `seen_by_time` at open; every hit is confirmed by reading that exact row, so
//! no entry of the map can make a webhook a false duplicate.
//! It costs 17 bytes per slot of a hash table kept at most 7/8 full, about 35 bytes per id
//! remembered on average (`dedup_window` × the webhook rate); a failed transaction's changes
//! to it are undone.
//!
//! # Group commit
//! All writes go through one writer thread that takes every command waiting in its queue,
//! applies them in one write transaction, commits once (one fsync), then answers each. Under
//! load, many webhooks share an fsync; with none waiting, a lone webhook is committed at once.
//!
//! # Invariants
//! - **An append answers `Stored` only after its transaction is committed durably.**
//! - **A webhook id is marked seen in the same transaction that stores its event**, so a
//!   crash never leaves one without the other.
//! - **An event row lives exactly as long as some route's `pending` or `dead` row names it.**
//! - Readers never block the writer (redb MVCC); only the writer thread opens write
//!   transactions.

pub(super) mod codec;
mod counts;
mod seen;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use tokio::sync::{mpsc, oneshot};

use counts::{Change, Counts};
use seen::SeenIndex;

use super::{
    now_ms, AppendOutcome, Completion, DeadLetter, DeadLetterAction, DeadState, Due, DueItem,
    PendingKey, PendingState, RouteSummary, SpoolError, StoredEvent,
};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const REFS: TableDefinition<u64, u32> = TableDefinition::new("refs");
const PENDING: TableDefinition<(&str, u64, u64), &[u8]> = TableDefinition::new("pending");
const DEAD: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("dead");
/// The id → time table of schema version 1, dropped when such a file is opened (see Dedup).
pub(in crate::spool) const SEEN_V1: TableDefinition<&str, u64> = TableDefinition::new("seen");
const SEEN_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("seen_by_time");
pub(in crate::spool) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// 2: webhook ids are kept only in `seen_by_time` (version 1 also had `seen`).
const SCHEMA_VERSION: u64 = 2;
pub const FILE_NAME: &str = "spool.redb";

/// Most commands applied in one transaction; bounds the latency of a single commit.
const MAX_BATCH: usize = 4096;
/// redb's page cache (reads and the write buffer together). Small on purpose: the spool's hot
/// pages are the two ends of each table (appends at the tail, deliveries at the head) and the
/// B-tree's upper levels, and the kernel's page cache holds the rest. Measured (BENCHMARKS.md,
/// 2026-12-03): 4 MiB instead of 16 MiB cut peak RSS in the SQS drain from 63 to 39 MiB and with
/// 1M pending from 106 to 69 MiB; ingest, drain and restart times moved only within run-to-run noise.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Capacity of the writer's queue: when full, ingest waits, then answers 503.
const QUEUE_CAPACITY: usize = 8192;
/// How long ingest waits for room in a full writer queue before answering 503.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed commit, the writer reopens the database at most this often.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reopen waits for readers to let go of the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(2);
/// Most expired webhook ids forgotten per transaction, so a sweep never stalls ingest.
const SWEEP_LIMIT: usize = 10_000;

/// The open database, shared by readers and the writer. After an I/O error redb refuses
/// every later write until the database is reopened, so the writer replaces it; `None` while
/// a reopen has not succeeded yet.
type SharedDb = Arc<RwLock<Option<Arc<Database>>>>;

fn storage(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Storage(e.into())
}

enum Command {
    /// A new event, already encoded by the caller: the writer thread only inserts bytes.
    Append {
        encoded: Vec<u8>,
        webhook_id: Option<String>,
        received_at_ms: u64,
        routes: Vec<String>,
        dedup_window_ms: u64,
        reply: oneshot::Sender<Result<AppendOutcome, SpoolError>>,
    },
    /// Outcomes of one delivered batch of a route: applied together, answered once.
    Complete {
        route: String,
        outcomes: Vec<(PendingKey, Completion)>,
        reply: oneshot::Sender<Result<(), SpoolError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    /// Forget every pending event of a route (one that no longer runs).
    DropPending {
        route: String,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
    /// Replay or drop dead letters of one route (or all), optionally only some webhook ids.
    DeadLetters {
        action: DeadLetterAction,
        route: Option<String>,
        webhook_ids: Vec<String>,
        reply: oneshot::Sender<Result<u64, SpoolError>>,
    },
}

impl Command {
    /// Answers the command with an error (a Close is simply acknowledged).
    fn fail(self, error: &dyn Fn() -> SpoolError) {
        match self {
            Command::Append { reply, .. } => drop(reply.send(Err(error()))),
            Command::Complete { reply, .. } => drop(reply.send(Err(error()))),
            Command::DeadLetters { reply, .. } => drop(reply.send(Err(error()))),
            Command::DropPending { reply, .. } => drop(reply.send(Err(error()))),
            Command::Close { reply } => drop(reply.send(())),
        }
    }
}

/// A handle on the spool; cheap to clone. Reads run on the caller's thread (use
/// `spawn_blocking` from async code); writes are queued to the writer thread.
#[derive(Clone)]
pub struct RedbSpool {
    db: SharedDb,
    path: Arc<PathBuf>,
    commands: mpsc::Sender<Command>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// The error of the writer's last commit, if it failed (`None` once a commit succeeds).
    /// Readiness reports it. The writer reopens the database on its next batch (at most once
    /// a second), so the spool recovers by itself once the cause (a full disk) is gone.
    commit_error: Arc<Mutex<Option<String>>>,
    /// Each route's backlog figures, counted at open (in the background) and kept by the
    /// writer after each commit.
    counts: Arc<SharedCounts>,
    /// The thread counting the backlog at open; joined by `close`.
    counter: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Each route's backlog figures, shared by the writer (which keeps them) and readers.
///
/// The walk that builds them reads the snapshot taken at open, before the writer starts, on a
/// thread of its own: ingest and deliveries start at once, whatever the backlog. Until the walk
/// is done the writer queues its changes here (all of them come after the snapshot); the walk
/// applies them when it ends. Readers wait for it.
struct SharedCounts {
    state: Mutex<CountState>,
    ready: Condvar,
}

enum CountState {
    /// The walk is running; the writer's changes since the snapshot wait, in commit order.
    Walking(Vec<Change>),
    Ready(Counts),
    Failed(String),
}

impl SharedCounts {
    fn walking() -> SharedCounts {
        SharedCounts {
            state: Mutex::new(CountState::Walking(Vec::new())),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CountState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writer, after a commit.
    fn apply(&self, changes: Vec<Change>) {
        match &mut *self.lock() {
            CountState::Walking(queued) => queued.extend(changes),
            CountState::Ready(counts) => counts.apply(changes),
            CountState::Failed(_) => {}
        }
    }

    /// The walk, when it ends: its counts plus every change committed meanwhile.
    fn finish(&self, walked: Result<Counts, SpoolError>) {
        let mut state = self.lock();
        let queued = match &mut *state {
            CountState::Walking(queued) => std::mem::take(queued),
            _ => Vec::new(),
        };
        *state = match walked {
            Ok(mut counts) => {
                counts.apply(queued);
                CountState::Ready(counts)
            }
            Err(e) => {
                tracing::error!(error = %e, "spool: counting the backlog at open failed; backlog figures are unknown until restart");
                CountState::Failed(e.to_string())
            }
        };
        drop(state);
        self.ready.notify_all();
    }

    /// Reads the counts, waiting for the walk at open if it is still running. Blocking.
    fn read<T>(&self, f: impl FnOnce(&Counts) -> T) -> Result<T, SpoolError> {
        let mut state = self.lock();
        while matches!(*state, CountState::Walking(_)) {
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match &*state {
            CountState::Ready(counts) => Ok(f(counts)),
            CountState::Failed(why) => Err(SpoolError::CountFailed(why.clone())),
            CountState::Walking(_) => unreachable!("waited above"),
        }
    }
}

impl RedbSpool {
    /// Opens (or creates) the spool in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<RedbSpool, SpoolError> {
        std::fs::create_dir_all(data_dir).map_err(|source| SpoolError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let existed = path.exists();
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => SpoolError::InUse(path.clone()),
                // An existing file too short for a header, or with a foreign header, is not a
                // spool: say so (and what to do), and leave it alone.
                redb::DatabaseError::Storage(redb::StorageError::Io(source))
                    if existed
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                        ) =>
                {
                    SpoolError::Incompatible {
                        path: path.clone(),
                        why: format!("cannot be opened as a spool ({source})"),
                    }
                }
                redb::DatabaseError::Storage(redb::StorageError::Io(source)) => {
                    SpoolError::DataDir {
                        path: path.clone(),
                        source,
                    }
                }
                other => SpoolError::Incompatible {
                    path: path.clone(),
                    why: format!("cannot be opened as a spool ({other})"),
                },
            })?;
        init_schema(&db, &path, existed)?;
        let db = Arc::new(db);
        let shared: SharedDb = Arc::new(RwLock::new(Some(db.clone())));
        let next_seq = {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let last = events.last().map_err(storage)?;
            last.map_or(1, |(k, _)| k.value() + 1)
        };
        let seen = load_seen(&db)?;
        // The snapshot the walk counts: taken before the writer starts, so every later change
        // is one the writer hands to `counts`.
        let snapshot = db.begin_read().map_err(storage)?;
        let counts = Arc::new(SharedCounts::walking());
        let counter = {
            let counts = counts.clone();
            std::thread::Builder::new()
                .name("hookfan-spool-count".into())
                .spawn(move || {
                    let started = Instant::now();
                    let walked = count_rows(&snapshot);
                    drop(snapshot);
                    tracing::debug!(took = ?started.elapsed(), "spool: backlog counted");
                    counts.finish(walked);
                })
                .map_err(|source| SpoolError::DataDir {
                    path: path.clone(),
                    source,
                })?
        };
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let commit_error = Arc::new(Mutex::new(None));
        let writer = Writer {
            db: shared.clone(),
            path: path.clone(),
            broken_since: None,
            commit_error: commit_error.clone(),
            counts: counts.clone(),
            next_seq,
            last_sweep: Instant::now(),
            dedup_window_ms: u64::MAX,
            seen,
            last_fresh_due_ms: 0,
        };
        let handle = std::thread::Builder::new()
            .name("hookfan-spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| SpoolError::DataDir {
                path: path.clone(),
                source,
            })?;
        drop(db);
        Ok(RedbSpool {
            db: shared,
            path: Arc::new(path),
            commands: tx,
            writer: Arc::new(Mutex::new(Some(handle))),
            commit_error,
            counts,
            counter: Arc::new(Mutex::new(Some(counter))),
        })
    }

    /// Why the last commit failed, while no later commit has succeeded.
    pub fn commit_error(&self) -> Option<String> {
        self.commit_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current database, for one read.
    fn db(&self) -> Result<Arc<Database>, SpoolError> {
        let slot = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone()
            .ok_or_else(|| SpoolError::Recovering(self.commit_error().unwrap_or_default()))
    }

    /// Whether the writer still takes commands (false once closed).
    pub fn is_open(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Size of the spool file on disk.
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        std::fs::metadata(self.path.as_ref()).map(|m| m.len())
    }

    async fn send(&self, cmd: Command) -> Result<(), SpoolError> {
        match self.commands.send_timeout(cmd, ENQUEUE_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(SpoolError::Busy),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(SpoolError::Closed),
        }
    }

    /// Stores `event` for every route in `routes` and marks its webhook id seen, in one durable
    /// commit, unless the id was seen within `dedup_window`. Returns once committed.
    pub async fn append(
        &self,
        event: StoredEvent,
        routes: Vec<String>,
        dedup_window: Duration,
    ) -> Result<AppendOutcome, SpoolError> {
        let (reply, answer) = oneshot::channel();
        // Encoded here, on the caller's thread, so the single writer thread does not have to.
        let encoded = event.encode()?;
        self.send(Command::Append {
            encoded,
            webhook_id: event.webhook_id,
            received_at_ms: event.received_at_ms,
            routes,
            dedup_window_ms: dedup_window.as_millis() as u64,
            reply,
        })
        .await?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Records how a delivery attempt ended. Returns once committed.
    pub async fn complete(
        &self,
        route: &str,
        key: PendingKey,
        completion: Completion,
    ) -> Result<(), SpoolError> {
        self.complete_batch(route, vec![(key, completion)]).await
    }

    /// Records how the attempts of one batch of `route` ended: one command for the writer and
    /// one answer, in the same commit (itself shared with whatever else is queued). Returns
    /// once committed.
    pub async fn complete_batch(
        &self,
        route: &str,
        outcomes: Vec<(PendingKey, Completion)>,
    ) -> Result<(), SpoolError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        // Completions wait for room rather than fail: they are never dropped.
        self.commands
            .send(Command::Complete {
                route: route.to_string(),
                outcomes,
                reply,
            })
            .await
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Commits everything queued so far, then stops the writer. Later writes fail with
    /// [`SpoolError::Closed`].
    pub async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_ok() {
            let _ = answer.await;
        }
        let handle = self.writer.lock().expect("writer handle lock").take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // The walk holds a read snapshot of the file: done before the file can be reopened.
        let counter = self.counter.lock().expect("counter handle lock").take();
        if let Some(counter) = counter {
            let _ = tokio::task::spawn_blocking(move || counter.join()).await;
        }
    }

    /// Up to `limit` events of `route` due at `now_ms`, oldest due first, skipping `in_flight`.
    /// On an `ordered` route an event held back until later, or one still in flight, stops the
    /// read there.
    /// Blocking: reads the file.
    pub fn due(
        &self,
        route: &str,
        now_ms: u64,
        in_flight: &HashSet<u64>,
        limit: usize,
        ordered: bool,
    ) -> Result<Due, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let pending = txn.open_table(PENDING).map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut due = Due::default();
        for row in pending
            .range((route, 0u64, 0u64)..=(route, u64::MAX, u64::MAX))
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let (_, due_ms, seq) = k.value();
            if in_flight.contains(&seq) {
                // An ordered route delivers nothing behind an event whose outcome is not yet
                // known: it may turn out to be a hold that keeps its place at the head.
                if ordered {
                    break;
                }
                continue;
            }
            if due_ms > now_ms {
                due.next_due_ms = Some(due_ms);
                break;
            }
            if due.items.len() == limit {
                due.next_due_ms = Some(due_ms);
                break;
            }
            let state = PendingState::decode(v.value())?;
            if state.not_before_ms > now_ms {
                if ordered {
                    due.next_due_ms = Some(state.not_before_ms);
                    break;
                }
                continue;
            }
            let Some(bytes) = events.get(seq).map_err(storage)? else {
                return Err(SpoolError::Incompatible {
                    path: self.path.to_path_buf(),
                    why: format!("pending event {seq} of route {route} has no stored body"),
                });
            };
            let event = StoredEvent::decode(bytes.value())?;
            due.items.push(DueItem {
                key: PendingKey { due_ms, seq },
                state,
                event: Arc::new(event),
            });
        }
        Ok(due)
    }

    /// How many events `route` still has to deliver. Blocking; walks the route's queue.
    pub fn pending_count(&self, route: &str) -> Result<u64, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let pending = txn.open_table(PENDING).map_err(storage)?;
        let mut n = 0;
        for row in pending
            .range((route, 0u64, 0u64)..=(route, u64::MAX, u64::MAX))
            .map_err(storage)?
        {
            row.map_err(storage)?;
            n += 1;
        }
        Ok(n)
    }

    /// What `route` holds: pending events, when the oldest of them was received, and dead
    /// letters. From the maintained counts plus one event read: O(1) in the backlog. Blocking.
    pub fn route_summary(&self, route: &str) -> Result<RouteSummary, SpoolError> {
        // The oldest event may be delivered between reading the counts and reading it; then
        // read the counts again.
        for _ in 0..3 {
            let (pending, oldest_seq, dead_letters) =
                self.counts.read(|counts| match counts.get(route) {
                    Some(r) => (r.pending.len(), r.pending.first(), r.dead),
                    None => (0, None, 0),
                })?;
            let mut summary = RouteSummary {
                pending,
                oldest_pending_received_ms: None,
                dead_letters,
            };
            let Some(seq) = oldest_seq else {
                return Ok(summary);
            };
            let txn = self.db()?.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            if let Some(bytes) = events.get(seq).map_err(storage)? {
                summary.oldest_pending_received_ms =
                    Some(StoredEvent::decode(bytes.value())?.received_at_ms);
                return Ok(summary);
            }
        }
        self.scan_summary(route)
    }

    /// [`RedbSpool::route_summary`] by walking the route's rows (keys only, plus one event).
    fn scan_summary(&self, route: &str) -> Result<RouteSummary, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let pending = txn.open_table(PENDING).map_err(storage)?;
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut summary = RouteSummary::default();
        let mut oldest_seq = None::<u64>;
        for row in pending
            .range((route, 0u64, 0u64)..=(route, u64::MAX, u64::MAX))
            .map_err(storage)?
        {
            let (k, _) = row.map_err(storage)?;
            let seq = k.value().2;
            summary.pending += 1;
            oldest_seq = Some(oldest_seq.map_or(seq, |s| s.min(seq)));
        }
        if let Some(seq) = oldest_seq {
            if let Some(bytes) = events.get(seq).map_err(storage)? {
                summary.oldest_pending_received_ms =
                    Some(StoredEvent::decode(bytes.value())?.received_at_ms);
            }
        }
        for row in dead
            .range((route, 0u64)..=(route, u64::MAX))
            .map_err(storage)?
        {
            row.map_err(storage)?;
            summary.dead_letters += 1;
        }
        Ok(summary)
    }

    /// Every route name that holds pending events or dead letters, including routes no longer
    /// in the config. From the maintained counts.
    pub fn routes_on_disk(&self) -> Result<Vec<String>, SpoolError> {
        self.counts.read(Counts::route_names)
    }

    /// Number of stored event bodies (each counted once, whatever its routes).
    pub fn stored_events(&self) -> Result<u64, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        events.len().map_err(storage)
    }

    /// Replays (back into the queue, due now, attempts from 1) or drops the dead letters of
    /// `route` (all routes if None), only those with the given webhook ids if any are given.
    /// One transaction: a crash leaves all of them or none moved. Returns how many.
    pub async fn dead_letter_action(
        &self,
        action: DeadLetterAction,
        route: Option<&str>,
        webhook_ids: Vec<String>,
    ) -> Result<u64, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::DeadLetters {
            action,
            route: route.map(str::to_string),
            webhook_ids,
            reply,
        })
        .await?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Forgets every pending event of `route`, in one transaction. Only for a route that is not
    /// running (removed from the config or disabled): the caller checks. Returns how many.
    pub async fn drop_pending(&self, route: &str) -> Result<u64, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::DropPending {
            route: route.to_string(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Dead letters, of one route or all. Blocking.
    pub fn dead_letters(&self, route: Option<&str>) -> Result<Vec<DeadLetter>, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let dead = txn.open_table(DEAD).map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let rows = match route {
            Some(r) => dead.range((r, 0u64)..=(r, u64::MAX)),
            None => dead.range::<(&str, u64)>(..),
        }
        .map_err(storage)?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(storage)?;
            let (route, seq) = k.value();
            let state = DeadState::decode(v.value())?;
            let event = match events.get(seq).map_err(storage)? {
                Some(bytes) => Some(StoredEvent::decode(bytes.value())?),
                None => None,
            };
            out.push(DeadLetter {
                route: route.to_string(),
                seq,
                webhook_id: event.as_ref().and_then(|e| e.webhook_id.clone()),
                event_type: event.as_ref().and_then(|e| e.event_type.clone()),
                received_at_ms: event.as_ref().map_or(0, |e| e.received_at_ms),
                dead_at_ms: state.dead_at_ms,
                attempts: state.attempts,
                error: state.error,
            });
        }
        Ok(out)
    }
}

fn init_schema(db: &Database, path: &Path, existed: bool) -> Result<(), SpoolError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let version = meta
            .get("schema_version")
            .map_err(storage)?
            .map(|v| v.value());
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(1) => {
                // Version 1 kept each id twice; `seen_by_time` has them all.
                txn.delete_table(SEEN_V1).map_err(storage)?;
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(storage)?;
                tracing::info!(spool = %path.display(), "spool upgraded from schema version 1 to 2 (webhook ids kept once)");
            }
            Some(other) => {
                return Err(SpoolError::Incompatible {
                    path: path.to_path_buf(),
                    why: format!(
                        "spool schema version {other}, this hookfan reads version {SCHEMA_VERSION}"
                    ),
                })
            }
            None if existed && meta.len().map_err(storage)? == 0 && has_foreign_tables(&txn)? => {
                return Err(SpoolError::Incompatible {
                    path: path.to_path_buf(),
                    why: "the file is a redb database but not a hookfan spool".into(),
                })
            }
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(storage)?;
            }
        }
        // Create every table so readers never meet a missing one.
        txn.open_table(EVENTS).map_err(storage)?;
        txn.open_table(REFS).map_err(storage)?;
        txn.open_table(PENDING).map_err(storage)?;
        txn.open_table(DEAD).map_err(storage)?;
        txn.open_table(SEEN_BY_TIME).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;
    Ok(())
}

/// Every remembered webhook id, from `seen_by_time`, for the writer's index.
fn load_seen(db: &Database) -> Result<SeenIndex, SpoolError> {
    let started = Instant::now();
    let txn = db.begin_read().map_err(storage)?;
    let rows = txn.open_table(SEEN_BY_TIME).map_err(storage)?;
    let mut seen = SeenIndex::with_capacity(rows.len().map_err(storage)? as usize);
    for row in rows.iter().map_err(storage)? {
        let (k, _) = row.map_err(storage)?;
        let (at, id) = k.value();
        seen.load(id, at);
    }
    tracing::debug!(ids = seen.len(), took = ?started.elapsed(), "spool: webhook ids loaded");
    Ok(seen)
}

/// Counts every route's `pending` and `dead` rows in `txn`: one walk of their keys, at open.
fn count_rows(txn: &ReadTransaction) -> Result<Counts, SpoolError> {
    let pending = txn.open_table(PENDING).map_err(storage)?;
    let dead = txn.open_table(DEAD).map_err(storage)?;
    let mut counts = Counts::default();
    for row in pending.iter().map_err(storage)? {
        let (k, _) = row.map_err(storage)?;
        let (route, _, seq) = k.value();
        counts.add_pending(route, seq);
    }
    for row in dead.iter().map_err(storage)? {
        let (k, _) = row.map_err(storage)?;
        counts.add_dead(k.value().0);
    }
    Ok(counts)
}

fn has_foreign_tables(txn: &redb::WriteTransaction) -> Result<bool, SpoolError> {
    use redb::TableHandle;
    let ours = [
        "events",
        "refs",
        "pending",
        "dead",
        "seen", // schema version 1
        "seen_by_time",
        "meta",
    ];
    Ok(txn
        .list_tables()
        .map_err(storage)?
        .any(|t| !ours.contains(&t.name())))
}

/// The writer thread's state.
struct Writer {
    db: SharedDb,
    path: PathBuf,
    /// Set by a failed commit: the next batch first reopens the database.
    broken_since: Option<Instant>,
    /// Shared with [`RedbSpool::commit_error`].
    commit_error: Arc<Mutex<Option<String>>>,
    /// Shared with readers; changed only here, after a commit.
    counts: Arc<SharedCounts>,
    next_seq: u64,
    last_sweep: Instant,
    /// The dedup window of the latest append: ids older than this are swept.
    dedup_window_ms: u64,
    /// Where each remembered webhook id's `seen_by_time` row is; loaded at open.
    seen: SeenIndex,
    /// The due time given to the latest new event. New events get
    /// `max(received_at, this)`, so their queue order is their commit order even when
    /// concurrent requests read the clock out of order (ordered routes rely on it).
    last_fresh_due_ms: u64,
}

/// The answer to an applied command, sent once its transaction is committed (or failed).
enum Reply {
    Append(
        oneshot::Sender<Result<AppendOutcome, SpoolError>>,
        AppendOutcome,
    ),
    Complete(oneshot::Sender<Result<(), SpoolError>>),
    Count(oneshot::Sender<Result<u64, SpoolError>>, u64),
}

impl Reply {
    fn ok(self) {
        match self {
            Reply::Append(tx, outcome) => drop(tx.send(Ok(outcome))),
            Reply::Complete(tx) => drop(tx.send(Ok(()))),
            Reply::Count(tx, n) => drop(tx.send(Ok(n))),
        }
    }

    fn fail(self, error: &dyn Fn() -> SpoolError) {
        match self {
            Reply::Append(tx, _) => drop(tx.send(Err(error()))),
            Reply::Complete(tx) => drop(tx.send(Err(error()))),
            Reply::Count(tx, _) => drop(tx.send(Err(error()))),
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut closing = None;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            // Commands after a Close are refused; the ones before it are committed.
            if let Some(at) = batch
                .iter()
                .position(|c| matches!(c, Command::Close { .. }))
            {
                for cmd in batch.drain(at + 1..) {
                    refuse(cmd);
                }
                if let Some(Command::Close { reply }) = batch.pop() {
                    closing = Some(reply);
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            if let Some(reply) = closing.take() {
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    refuse(cmd);
                }
                let _ = reply.send(());
                return;
            }
        }
    }

    fn commit_batch(&mut self, batch: Vec<Command>) {
        if let Err(e) = self.recover() {
            let msg = e.to_string();
            let fail = || SpoolError::Recovering(msg.clone());
            for cmd in batch {
                cmd.fail(&fail);
            }
            return;
        }
        let started = Instant::now();
        let first_seq = self.next_seq;
        let n = batch.len();
        let mut replies = Vec::with_capacity(n);
        let result = self.apply(batch, &mut replies);
        match result {
            Ok(()) => {
                metrics::counter!("hookfan_spool_commits_total").increment(1);
                metrics::histogram!("hookfan_spool_commit_batch_size").record(n as f64);
                metrics::histogram!("hookfan_spool_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::gauge!("hookfan_spool_dedup_ids").set(self.seen.len() as f64);
                self.set_commit_error(None);
                for r in replies {
                    r.ok();
                }
            }
            Err((e, unapplied)) => {
                self.next_seq = first_seq;
                self.broken_since.get_or_insert_with(Instant::now);
                metrics::counter!("hookfan_spool_commit_failures_total").increment(1);
                tracing::error!(error = %e, commands = n, "spool commit failed; webhooks in it get 503 and Stream will retry them");
                let msg = e.to_string();
                self.set_commit_error(Some(msg.clone()));
                let fail = || SpoolError::CommitFailed(msg.clone());
                for r in replies {
                    r.fail(&fail);
                }
                for cmd in unapplied {
                    cmd.fail(&fail);
                }
            }
        }
    }

    /// After a failed commit, reopens the database (at most once per [`REOPEN_INTERVAL`]):
    /// redb refuses every write after an I/O error until then. The file holds exactly the
    /// commits that succeeded, so nothing acknowledged is affected. `Err` while not reopened.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let Some(since) = self.broken_since else {
            return Ok(());
        };
        let last_error = || {
            self.commit_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default()
        };
        if since.elapsed() < REOPEN_INTERVAL {
            return Err(SpoolError::Recovering(last_error()));
        }
        self.broken_since = Some(Instant::now());
        let mut slot = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // redb allows one `Database` per file: readers must let go of the old one first. No
        // new reader can start while this lock is held.
        if let Some(old) = slot.take() {
            let deadline = Instant::now() + REOPEN_WAIT;
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *slot = Some(still_shared);
                        return Err(SpoolError::Recovering(last_error()));
                    }
                }
            }
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&self.path)
            .map_err(|e| {
                tracing::warn!(error = %e, "spool: reopening after a failed commit did not work yet; retrying with the next webhook");
                storage(e)
            })?;
        // The sequence continues after the last event that was committed.
        let next_seq = {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let last = events.last().map_err(storage)?;
            last.map_or(1, |(k, _)| k.value() + 1)
        };
        self.next_seq = self.next_seq.max(next_seq);
        *slot = Some(Arc::new(db));
        drop(slot);
        self.broken_since = None;
        tracing::info!(spool = %self.path.display(), "spool reopened after a failed commit; taking webhooks again");
        Ok(())
    }

    fn set_commit_error(&self, error: Option<String>) {
        *self
            .commit_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Applies `batch` in one transaction. On failure, returns the error and the commands
    /// that were not yet turned into replies, so every caller still gets an answer.
    fn apply(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), (SpoolError, Vec<Command>)> {
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(db) = db else {
            return Err((SpoolError::Recovering(String::new()), batch));
        };
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return Err((storage(e), batch)),
        };
        let now = now_ms();
        let mut iter = batch.into_iter();
        let applied = (|| -> Result<Vec<Change>, SpoolError> {
            let mut t = Tables {
                changes: Vec::new(),
                events: txn.open_table(EVENTS).map_err(storage)?,
                refs: txn.open_table(REFS).map_err(storage)?,
                pending: txn.open_table(PENDING).map_err(storage)?,
                dead: txn.open_table(DEAD).map_err(storage)?,
                seen_by_time: txn.open_table(SEEN_BY_TIME).map_err(storage)?,
            };
            for cmd in iter.by_ref() {
                match cmd {
                    Command::Append {
                        encoded,
                        webhook_id,
                        received_at_ms,
                        routes,
                        dedup_window_ms,
                        reply,
                    } => {
                        let new = NewEvent {
                            encoded: &encoded,
                            webhook_id: webhook_id.as_deref(),
                            received_at_ms,
                        };
                        // Each reply is kept even when its command fails: on failure every
                        // reply gets the batch's error (a dropped one would read as Closed).
                        let outcome = self.append(&mut t, new, &routes, dedup_window_ms, now);
                        let placeholder = AppendOutcome::Duplicate;
                        replies.push(Reply::Append(
                            reply,
                            *outcome.as_ref().unwrap_or(&placeholder),
                        ));
                        outcome?;
                    }
                    Command::Complete {
                        route,
                        outcomes,
                        reply,
                    } => {
                        let done = outcomes.into_iter().try_for_each(|(key, completion)| {
                            complete(&mut t, &route, key, completion, now)
                        });
                        replies.push(Reply::Complete(reply));
                        done?;
                    }
                    Command::DeadLetters {
                        action,
                        route,
                        webhook_ids,
                        reply,
                    } => {
                        let n = dead_letters(&mut t, action, route.as_deref(), &webhook_ids, now);
                        replies.push(Reply::Count(reply, *n.as_ref().unwrap_or(&0)));
                        n?;
                    }
                    Command::DropPending { route, reply } => {
                        let n = drop_pending(&mut t, &route);
                        replies.push(Reply::Count(reply, *n.as_ref().unwrap_or(&0)));
                        n?;
                    }
                    Command::Close { reply } => drop(reply.send(())),
                }
            }
            if self.last_sweep.elapsed() >= Duration::from_secs(1) {
                self.last_sweep = Instant::now();
                sweep_seen(&mut t, &mut self.seen, now, self.dedup_window_ms)?;
            }
            Ok(t.changes)
        })();
        let rest: Vec<Command> = iter.collect();
        let changes = match applied {
            Ok(changes) => changes,
            Err(e) => {
                self.seen.rolled_back();
                return Err((e, rest));
            }
        };
        if let Err(e) = txn.commit() {
            self.seen.rolled_back();
            return Err((storage(e), rest));
        }
        self.seen.committed();
        self.counts.apply(changes);
        Ok(())
    }

    fn append(
        &mut self,
        t: &mut Tables<'_>,
        event: NewEvent<'_>,
        routes: &[String],
        dedup_window_ms: u64,
        now: u64,
    ) -> Result<AppendOutcome, SpoolError> {
        self.dedup_window_ms = dedup_window_ms;
        if let Some(id) = event.webhook_id {
            let fingerprint = self.seen.fingerprint(id);
            // A hit counts only when the row is there: the map may name an id whose commit
            // failed, or another id with the same fingerprint.
            if let Some(at) = self.seen.get(fingerprint) {
                if t.seen_by_time.get((at, id)).map_err(storage)?.is_some() {
                    if at.saturating_add(dedup_window_ms) >= now {
                        return Ok(AppendOutcome::Duplicate);
                    }
                    t.seen_by_time.remove((at, id)).map_err(storage)?;
                }
            }
            t.seen_by_time
                .insert((event.received_at_ms, id), ())
                .map_err(storage)?;
            self.seen.insert(fingerprint, event.received_at_ms);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        t.events.insert(seq, event.encoded).map_err(storage)?;
        t.refs.insert(seq, routes.len() as u32).map_err(storage)?;
        let fresh = PendingState::default().encode()?;
        let due = event.received_at_ms.max(self.last_fresh_due_ms);
        self.last_fresh_due_ms = due;
        for route in routes {
            t.pending
                .insert((route.as_str(), due, seq), fresh.as_slice())
                .map_err(storage)?;
            t.changes.push(Change::AddPending(route.clone(), seq));
        }
        Ok(AppendOutcome::Stored { seq })
    }
}

/// What the writer needs of a new event: its encoding and the fields it indexes.
struct NewEvent<'a> {
    encoded: &'a [u8],
    webhook_id: Option<&'a str>,
    received_at_ms: u64,
}

struct Tables<'t> {
    /// What the transaction changes in each route's counts, applied once it is committed.
    changes: Vec<Change>,
    events: redb::Table<'t, u64, &'static [u8]>,
    refs: redb::Table<'t, u64, u32>,
    pending: redb::Table<'t, (&'static str, u64, u64), &'static [u8]>,
    dead: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    seen_by_time: redb::Table<'t, (u64, &'static str), ()>,
}

fn complete(
    t: &mut Tables<'_>,
    route: &str,
    key: PendingKey,
    completion: Completion,
    now: u64,
) -> Result<(), SpoolError> {
    let removed = t
        .pending
        .remove((route, key.due_ms, key.seq))
        .map_err(storage)?
        .is_some();
    if !removed {
        // Already completed (e.g. twice after a restart race); nothing to do.
        return Ok(());
    }
    match completion {
        Completion::Delivered => {
            t.changes
                .push(Change::RemovePending(route.to_string(), key.seq));
            release(t, key.seq)?;
        }
        Completion::Retry {
            due_ms,
            attempts,
            error,
        } => {
            let state = PendingState {
                attempts,
                last_error: Some(error),
                not_before_ms: 0,
            };
            t.pending
                .insert((route, due_ms, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
        }
        Completion::Hold {
            not_before_ms,
            attempts,
            error,
        } => {
            let state = PendingState {
                attempts,
                last_error: Some(error),
                not_before_ms,
            };
            t.pending
                .insert((route, key.due_ms, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
        }
        Completion::Dead { attempts, error } => {
            let state = DeadState {
                attempts,
                error,
                dead_at_ms: now,
            };
            t.dead
                .insert((route, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
            t.changes
                .push(Change::RemovePending(route.to_string(), key.seq));
            t.changes.push(Change::AddDead(route.to_string()));
        }
    }
    Ok(())
}

/// Replays or drops the dead letters of `route` (all routes if None) whose webhook id is in
/// `webhook_ids` (all if empty). Returns how many.
fn dead_letters(
    t: &mut Tables<'_>,
    action: DeadLetterAction,
    route: Option<&str>,
    webhook_ids: &[String],
    now: u64,
) -> Result<u64, SpoolError> {
    let rows = match route {
        Some(r) => t.dead.range((r, 0u64)..=(r, u64::MAX)),
        None => t.dead.range::<(&str, u64)>(..),
    }
    .map_err(storage)?;
    let mut selected: Vec<(String, u64)> = Vec::new();
    for row in rows {
        let (k, _) = row.map_err(storage)?;
        let (route, seq) = k.value();
        if !webhook_ids.is_empty() {
            let id = match t.events.get(seq).map_err(storage)? {
                Some(bytes) => StoredEvent::decode(bytes.value())?.webhook_id,
                None => None,
            };
            if !id.is_some_and(|id| webhook_ids.contains(&id)) {
                continue;
            }
        }
        selected.push((route.to_string(), seq));
    }
    let fresh = PendingState::default().encode()?;
    for (route, seq) in &selected {
        t.dead.remove((route.as_str(), *seq)).map_err(storage)?;
        t.changes.push(Change::RemoveDead(route.clone()));
        match action {
            DeadLetterAction::Replay => {
                t.pending
                    .insert((route.as_str(), now, *seq), fresh.as_slice())
                    .map_err(storage)?;
                t.changes.push(Change::AddPending(route.clone(), *seq));
            }
            DeadLetterAction::Drop => release(t, *seq)?,
        }
    }
    Ok(selected.len() as u64)
}

/// Removes every pending row of `route`, releasing its events. Returns how many.
fn drop_pending(t: &mut Tables<'_>, route: &str) -> Result<u64, SpoolError> {
    let keys: Vec<(u64, u64)> = t
        .pending
        .range((route, 0u64, 0u64)..=(route, u64::MAX, u64::MAX))
        .map_err(storage)?
        .map(|row| row.map(|(k, _)| (k.value().1, k.value().2)))
        .collect::<Result<_, _>>()
        .map_err(storage)?;
    for (due, seq) in &keys {
        t.pending.remove((route, *due, *seq)).map_err(storage)?;
        t.changes
            .push(Change::RemovePending(route.to_string(), *seq));
        release(t, *seq)?;
    }
    Ok(keys.len() as u64)
}

/// One route let go of event `seq`; delete it when no route holds it any more.
fn release(t: &mut Tables<'_>, seq: u64) -> Result<(), SpoolError> {
    let left = t
        .refs
        .get(seq)
        .map_err(storage)?
        .map_or(0, |v| v.value())
        .saturating_sub(1);
    if left == 0 {
        t.refs.remove(seq).map_err(storage)?;
        t.events.remove(seq).map_err(storage)?;
    } else {
        t.refs.insert(seq, left).map_err(storage)?;
    }
    Ok(())
}

/// Forgets webhook ids received more than `window_ms` ago. The check in `append` applies the
/// window exactly; this only reclaims their space.
fn sweep_seen(
    t: &mut Tables<'_>,
    seen: &mut SeenIndex,
    now: u64,
    window_ms: u64,
) -> Result<(), SpoolError> {
    let cutoff = now.saturating_sub(window_ms);
    let expired: Vec<(u64, String)> = t
        .seen_by_time
        .range::<(u64, &str)>(..(cutoff, ""))
        .map_err(storage)?
        .take(SWEEP_LIMIT)
        .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()
        .map_err(storage)?;
    for (at, id) in expired {
        t.seen_by_time.remove((at, id.as_str())).map_err(storage)?;
        seen.forget(&id, at);
    }
    seen.shrink_if_sparse();
    Ok(())
}

fn refuse(cmd: Command) {
    cmd.fail(&|| SpoolError::Closed);
}

/// An event of a redb spool that some route still holds, as [`RedbSpool::export`] reads it.
pub(crate) struct ExportedEvent {
    pub event: StoredEvent,
    /// The routes holding it in their queue: (route, due_ms, state).
    pub pending: Vec<(String, u64, PendingState)>,
    /// The routes holding it as a dead letter.
    pub dead: Vec<(String, DeadState)>,
}

/// What [`RedbSpool::export`] hands over, in this order: every held event, then the ids.
pub(crate) enum Exported {
    /// An event some route holds; events come in seq order.
    Event(ExportedEvent),
    /// A remembered webhook id whose event no route holds any more; oldest first.
    Id {
        received_at_ms: u64,
        webhook_id: String,
    },
}

impl RedbSpool {
    /// Reads what the redb spool file at `path` holds that a new spool must carry (the log's
    /// import, `import.rs`), in one read transaction, handing each item to `visit`: the
    /// events some route holds, with every route's queue entry or dead letter, then the
    /// remembered ids of events no route holds. Schema versions 1 and 2 are read; redb's
    /// lock is held meanwhile (a running hookfan on the file makes it
    /// [`SpoolError::InUse`]). A file that is not a spool this version reads, or that fails
    /// to read, is [`SpoolError::Incompatible`], naming it; `visit`'s errors pass through.
    pub(crate) fn export(
        path: &Path,
        mut visit: impl FnMut(Exported) -> Result<(), SpoolError>,
    ) -> Result<(), SpoolError> {
        let unreadable = |e: &dyn std::fmt::Display| SpoolError::Incompatible {
            path: path.to_path_buf(),
            why: format!("cannot be read to import it ({e})"),
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .open(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => SpoolError::InUse(path.to_path_buf()),
                redb::DatabaseError::Storage(redb::StorageError::Io(source))
                    if !matches!(
                        source.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    SpoolError::DataDir {
                        path: path.to_path_buf(),
                        source,
                    }
                }
                other => unreadable(&other),
            })?;
        let txn = db.begin_read().map_err(|e| unreadable(&e))?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta
                .get("schema_version")
                .map_err(|e| unreadable(&e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(unreadable(&e)),
        };
        match version {
            Some(1 | SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(SpoolError::Incompatible {
                    path: path.to_path_buf(),
                    why: format!("spool schema version {other}, this hookfan imports versions 1 and {SCHEMA_VERSION}"),
                })
            }
            None => {
                // No version: an empty file (a first start cut before its schema was
                // written) has no tables at all; anything else is not a spool.
                let tables = txn.list_tables().map_err(|e| unreadable(&e))?.count();
                if tables > 0 {
                    return Err(SpoolError::Incompatible {
                        path: path.to_path_buf(),
                        why: "the file is a redb database but not a hookfan spool".into(),
                    });
                }
                return Ok(());
            }
        }
        let events = txn.open_table(EVENTS).map_err(|e| unreadable(&e))?;
        let pending = txn.open_table(PENDING).map_err(|e| unreadable(&e))?;
        let dead = txn.open_table(DEAD).map_err(|e| unreadable(&e))?;
        let seen = txn.open_table(SEEN_BY_TIME).map_err(|e| unreadable(&e))?;

        // Who holds each event, by seq: its queue entries and its dead letters (keys and
        // small states only; bodies are read one at a time below).
        type Holders = (Vec<(String, u64, PendingState)>, Vec<(String, DeadState)>);
        let mut held: std::collections::BTreeMap<u64, Holders> = Default::default();
        for row in pending.iter().map_err(|e| unreadable(&e))? {
            let (k, v) = row.map_err(|e| unreadable(&e))?;
            let (route, due_ms, seq) = k.value();
            let state = PendingState::decode(v.value()).map_err(|e| unreadable(&e))?;
            held.entry(seq)
                .or_default()
                .0
                .push((route.to_string(), due_ms, state));
        }
        for row in dead.iter().map_err(|e| unreadable(&e))? {
            let (k, v) = row.map_err(|e| unreadable(&e))?;
            let (route, seq) = k.value();
            let state = DeadState::decode(v.value()).map_err(|e| unreadable(&e))?;
            held.entry(seq)
                .or_default()
                .1
                .push((route.to_string(), state));
        }

        let mut held_ids: HashSet<(u64, String)> = HashSet::new();
        for (seq, (pending, dead)) in held {
            let Some(bytes) = events.get(seq).map_err(|e| unreadable(&e))? else {
                return Err(unreadable(&format_args!(
                    "event {seq} is held by a route but has no stored body"
                )));
            };
            let event = StoredEvent::decode(bytes.value()).map_err(|e| unreadable(&e))?;
            if let Some(id) = &event.webhook_id {
                held_ids.insert((event.received_at_ms, id.clone()));
            }
            visit(Exported::Event(ExportedEvent {
                event,
                pending,
                dead,
            }))?;
        }
        for row in seen.iter().map_err(|e| unreadable(&e))? {
            let (k, _) = row.map_err(|e| unreadable(&e))?;
            let (received_at_ms, id) = k.value();
            if held_ids.contains(&(received_at_ms, id.to_string())) {
                continue;
            }
            visit(Exported::Id {
                received_at_ms,
                webhook_id: id.to_string(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
