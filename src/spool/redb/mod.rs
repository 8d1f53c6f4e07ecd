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
mod export;
mod seen;
mod writer;

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
pub(crate) use export::{Exported, ExportedEvent};
use seen::SeenIndex;
use writer::*;

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

#[cfg(test)]
mod tests;
