//! [`LogSpool`]: the spool's API ([`crate::spool::RedbSpool`]'s methods, arguments, results and
//! guarantees) over the log. See "The facade" in the module documentation for how each
//! method maps onto records and what is kept in memory.
//!
//! Owns: the lock on the directory, the route names' ids, the claims that keep two appends
//! of one webhook id apart, and the ordering of fresh events' due times. Never here: bytes
//! on disk (the writer and maintenance own them), the meaning of records ([`State`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::compaction::{Maintenance, MaintenanceConfig, MaintenanceHandle};
use super::reader::read_record;
use super::record::{EventRecord, Record, RouteDue, RouteId};
use super::recovery::recover;
use super::state::{self, Location, State};
use super::storage::{RealDisk, Storage};
use super::writer::{Submitted, Ticket, Writer, WriterConfig};
use super::LogError;
use crate::clock::Clock;
use crate::spool::dedup_index::Prehashed;
use crate::spool::{
    AppendOutcome, Completion, DeadLetter, DeadLetterAction, DeadLetterShown, DeadState, Due,
    DueItem, EventRef, PendingKey, PendingState, RouteSummary, SpoolError, StoredEvent,
};

mod admin;
mod delivery;

/// The log's directory inside `data_dir` (the redb spool is the file `spool.redb` beside it).
pub const DIR_NAME: &str = "spool";
/// The file a running hookfan holds an exclusive lock on, inside the log's directory.
pub const LOCK_NAME: &str = "LOCK";
/// Most webhook ids one [`Record::ExpireIds`] forgets, so an expiry never makes a big group.
const EXPIRE_LIMIT: u32 = 10_000;
/// An [`Record::ExpireIds`] rides along with an append at most this often.
const EXPIRE_EVERY_MS: u64 = 1_000;
/// How long opening waits for a segment to write to, when the last run left none prepared:
/// the daemon listens once webhooks can be stored, not 503 them while a segment is zeroed.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a [`LogSpool`] is opened: the writer's and maintenance's settings.
#[derive(Debug, Clone)]
pub struct LogSpoolConfig {
    pub writer: WriterConfig,
    pub maintenance: MaintenanceConfig,
    /// Where "now" comes from: dedup windows, the times stamped on outcomes and dead
    /// letters. The system clock but in tests ([`Clock::tokio_from`]). Handed to the
    /// delivery workers by [`LogSpool::clock`], so due times and their reads agree.
    pub clock: Clock,
}

impl Default for LogSpoolConfig {
    fn default() -> LogSpoolConfig {
        LogSpoolConfig::with_segment_size(WriterConfig::default().segment_size)
    }
}

impl LogSpoolConfig {
    /// The default settings for segments of `bytes` (the config's `spool_segment_bytes`).
    pub fn with_segment_size(bytes: u64) -> LogSpoolConfig {
        let writer = WriterConfig {
            segment_size: bytes,
            ..WriterConfig::default()
        };
        let maintenance = MaintenanceConfig::for_segments(writer.segment_size);
        LogSpoolConfig {
            clock: crate::clock::Clock::system(),
            writer,
            maintenance,
        }
    }
}

/// The log-structured spool, with [`crate::spool::RedbSpool`]'s API; cheap to clone. Reads run
/// on the caller's thread (blocking: they read event records back from segments); writes
/// are submissions to the group-commit writer, answered once durable.
#[derive(Clone)]
pub struct LogSpool {
    inner: Arc<Inner>,
}

struct Inner {
    /// The directory (for messages and `path()`).
    path: PathBuf,
    storage: Arc<dyn Storage>,
    /// Checkpoints, compaction; stopped by `close` (before the writer: it submits records).
    maintenance: Mutex<Option<MaintenanceHandle>>,
    writer: Arc<Writer>,
    /// Route name → id, for every route a durable [`Record::Route`] bound (loaded from the
    /// state at open). Readers look names up here, not in the state (a linear scan there).
    routes: Mutex<HashMap<String, RouteId>>,
    /// Held while new routes are bound, so two appends never bind one name twice.
    binding: tokio::sync::Mutex<()>,
    /// Each route's wake-up ([`LogSpool::route_waker`]), by name; given to the writer by
    /// id once the name is bound. Locked after `routes`, never before.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// The fingerprint keys of the log's state (fixed when the log was made).
    keys: [u64; 2],
    /// The fingerprints of the webhook ids whose append is between its dedup check and its
    /// answer. A second append of one waits for the claim to go (woken by the entry's
    /// `Notify`, made by the first to wait), then checks again (and finds it stored). Two
    /// ids of one fingerprint (never seen: 64 keyed bits) would only wait for each other.
    claims: Mutex<HashMap<u64, Option<Arc<Notify>>, BuildHasherDefault<Prehashed>>>,
    clock: Clock,
    /// The due time given to the latest fresh event; held across the submission, so queue
    /// order is submission (lsn) order even when callers' clocks disagree.
    fresh_due: Mutex<u64>,
    /// When an [`Record::ExpireIds`] last rode along with an append (ms since the epoch).
    last_expiry_ms: AtomicU64,
    /// Held by dead-letter actions and `drop_pending`: each picks its records from the
    /// state, then submits them; two at once would count the same letters.
    admin: tokio::sync::Mutex<()>,
    /// Why the last write failed, while no later one succeeded (readiness reports it).
    commit_error: Mutex<Option<String>>,
    closed: AtomicBool,
    /// The directory's lock (real disk only), released by `close`.
    dir_lock: Mutex<Option<File>>,
}

/// A webhook id claimed by one append; dropping it lets the next append of the id check.
/// Dropped before the append's record resolved (the caller went away), it waits for that in
/// a task of its own, so the next append always sees what this one stored.
struct Claim {
    inner: Arc<Inner>,
    fingerprint: u64,
    ticket: Option<Ticket>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let release = {
            let inner = self.inner.clone();
            let fingerprint = self.fingerprint;
            move || {
                let waited = lock(&inner.claims).remove(&fingerprint);
                if let Some(Some(waiters)) = waited {
                    waiters.notify_waiters();
                }
            }
        };
        match self.ticket.take() {
            Some(ticket) if self.inner.writer.resolved() < ticket.end_lsn => {
                let inner = self.inner.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => drop(rt.spawn(async move {
                        let _ = inner.writer.durable(&ticket).await;
                        release();
                    })),
                    Err(_) => {
                        let _ = inner.writer.wait(&ticket);
                        release();
                    }
                }
            }
            _ => release(),
        }
    }
}

/// A log error as the spool's callers know errors.
fn spool_error(e: LogError) -> SpoolError {
    match e {
        LogError::Closed => SpoolError::Closed,
        LogError::Busy => SpoolError::Busy,
        LogError::Late => SpoolError::Late,
        e @ LogError::WriteFailed { .. } => SpoolError::CommitFailed(e.to_string()),
        e => SpoolError::Log(e),
    }
}

fn stored_event(record: &EventRecord<'_>) -> StoredEvent {
    StoredEvent {
        webhook_id: record.webhook_id.map(str::to_string),
        received_at_ms: record.received_at_ms,
        api_key: record.api_key.map(str::to_string),
        signature: record.signature.to_string(),
        event_type: record.event_type.map(str::to_string),
        body: record.body.to_vec(),
        path: record.path.map(str::to_string),
        trace: record.trace.map(super::TraceRef::into_owned),
    }
}

impl LogSpool {
    /// Waits (blocking, at most `timeout`) until the writer holds a segment prepared ahead
    /// of need: for tests that look at spares, which the preparer makes in the background.
    #[cfg(test)]
    pub(crate) fn wait_prepared(&self, timeout: std::time::Duration) -> bool {
        self.inner.writer.wait_prepared(timeout)
    }

    /// Opens (or creates) the log in `<data_dir>/spool/` with the default settings, and
    /// starts its writer and maintenance threads.
    pub fn open(data_dir: &Path) -> Result<LogSpool, SpoolError> {
        LogSpool::open_with(data_dir, LogSpoolConfig::default())
    }

    /// [`LogSpool::open`] with settings (tests use small segments).
    /// A repair cut short is finished first ([`super::repair::finish_interrupted`]), and a
    /// `spool.redb` in `data_dir` imported (see [`super::import`]).
    pub fn open_with(data_dir: &Path, config: LogSpoolConfig) -> Result<LogSpool, SpoolError> {
        let dir = data_dir.join(DIR_NAME);
        let data_dir_error = |source| SpoolError::DataDir {
            path: dir.clone(),
            source,
        };
        // Before anything creates `spool/`: a repair's swap cut short is finished.
        super::repair::finish_interrupted(data_dir).map_err(data_dir_error)?;
        super::import::upgrade(data_dir, &config)?;
        std::fs::create_dir_all(&dir).map_err(data_dir_error)?;
        let lock_file = File::create(dir.join(LOCK_NAME)).map_err(data_dir_error)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::InUse(dir)),
            Err(std::fs::TryLockError::Error(source)) => return Err(data_dir_error(source)),
        }
        let storage = Arc::new(RealDisk::open(&dir).map_err(data_dir_error)?);
        LogSpool::open_in(storage, dir, config, Some(lock_file))
    }

    /// Opens the log in `storage` (a [`super::SimDisk`] in crash tests); `path` only names
    /// it. `dir_lock`: the directory's lock, held until `close`.
    pub fn open_in(
        storage: Arc<dyn Storage>,
        path: PathBuf,
        config: LogSpoolConfig,
        dir_lock: Option<File>,
    ) -> Result<LogSpool, SpoolError> {
        let recovered = recover(&*storage).map_err(spool_error)?;
        let report = &recovered.report;
        if let Some((file, offset, why)) = &report.torn {
            tracing::warn!(%file, offset, why = why.describe(), "spool: a torn last group (never acknowledged) was cut off at open");
        }
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::info!(
            spool = %path.display(),
            segments = report.segments,
            records = report.records,
            checkpoint = ?report.checkpoint,
            checkpoint_ms = ms(report.took.checkpoint),
            replay_ms = ms(report.took.replay),
            check_ms = ms(report.took.check),
            "spool log opened"
        );
        let routes = recovered
            .state
            .route_names()
            .map(|(id, name)| (name.to_string(), id))
            .collect();
        let maintenance = Maintenance::new(
            storage.clone(),
            recovered.checkpoint,
            config.maintenance.clone(),
        );
        let writer = Arc::new(
            Writer::start(storage.clone(), recovered, config.writer.clone())
                .map_err(spool_error)?,
        );
        let waiting = Instant::now();
        if writer.wait_prepared(FIRST_SEGMENT_WAIT) {
            tracing::debug!(
                took_ms = ms(waiting.elapsed()),
                "spool: a segment is ready to write"
            );
        } else {
            tracing::warn!(
                waited_ms = ms(waiting.elapsed()),
                "spool: no segment is prepared to write to yet; webhooks are answered 503 until one is"
            );
        }
        let maintenance = maintenance.spawn(writer.clone()).map_err(spool_error)?;
        let keys = writer.with_state(State::keys);
        Ok(LogSpool {
            inner: Arc::new(Inner {
                path,
                storage,
                maintenance: Mutex::new(Some(maintenance)),
                writer,
                routes: Mutex::new(routes),
                keys,
                binding: tokio::sync::Mutex::new(()),
                wakers: Mutex::new(HashMap::new()),
                claims: Mutex::new(HashMap::default()),
                clock: config.clock,
                fresh_due: Mutex::new(0),
                last_expiry_ms: AtomicU64::new(0),
                admin: tokio::sync::Mutex::new(()),
                commit_error: Mutex::new(None),
                closed: AtomicBool::new(false),
                dir_lock: Mutex::new(dir_lock),
            }),
        })
    }

    /// The clock this spool reads (its config's): the one its delivery workers must read
    /// too, so the due times they record and the reads that find them agree.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Why the last write failed, while no later one has succeeded.
    pub fn commit_error(&self) -> Option<String> {
        lock(&self.inner.commit_error).clone()
    }

    /// The log's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether writes are still taken (false once closed).
    pub fn is_open(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    /// Bytes of the log's files on disk (segments, prepared ones included, and checkpoints).
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        let storage = &self.inner.storage;
        let mut total = 0;
        for name in storage.list()? {
            if name == LOCK_NAME {
                continue;
            }
            // A file compaction removed meanwhile counts for nothing.
            if let Ok(file) = storage.open(&name) {
                total += file.size().unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.inner.writer.with_state(f)
    }

    fn route_id(&self, name: &str) -> Option<RouteId> {
        lock(&self.inner.routes).get(name).copied()
    }

    /// Waits for `ticket`'s records to be durable, keeping `commit_error` up to date.
    async fn settle(&self, ticket: &Ticket) -> Result<(), SpoolError> {
        self.settle_by(ticket, None).await
    }

    /// [`LogSpool::settle`], giving up at `deadline` ([`SpoolError::Late`]).
    async fn settle_by(
        &self,
        ticket: &Ticket,
        deadline: Option<Instant>,
    ) -> Result<(), SpoolError> {
        let durable = match deadline {
            Some(at) => self.inner.writer.durable_by(ticket, at).await,
            None => self.inner.writer.durable(ticket).await,
        };
        match durable {
            Ok(()) => {
                *lock(&self.inner.commit_error) = None;
                Ok(())
            }
            Err(e) => {
                if matches!(e, LogError::WriteFailed { .. }) {
                    tracing::error!(error = %e, "spool write failed; webhooks in it get 503 and Stream will retry them");
                    *lock(&self.inner.commit_error) = Some(e.to_string());
                }
                Err(spool_error(e))
            }
        }
    }

    /// Submits `records` as one, waiting (without blocking a thread) for room in the group
    /// being filled: up to the writer's `enqueue_timeout` (then [`SpoolError::Busy`]), or
    /// without bound when `patient` (outcomes: a full group only delays them).
    async fn submit(&self, records: &[Record<'_>], patient: bool) -> Result<Ticket, SpoolError> {
        let deadline = self.room_deadline(patient, None);
        loop {
            match self.try_submit(records)? {
                Submitted::Queued(ticket) => return Ok(ticket),
                Submitted::Full(taken) => self.wait_for_room(taken, deadline).await?,
            }
        }
    }

    fn try_submit(&self, records: &[Record<'_>]) -> Result<Submitted, SpoolError> {
        if !self.is_open() {
            return Err(SpoolError::Closed);
        }
        self.inner.writer.try_submit(records).map_err(spool_error)
    }

    /// How long a submission waits for room: `enqueue_timeout` (none when `patient`), and
    /// never past `deadline`.
    fn room_deadline(
        &self,
        patient: bool,
        deadline: Option<Instant>,
    ) -> Option<tokio::time::Instant> {
        let room = (!patient).then(|| Instant::now() + self.inner.writer.enqueue_timeout());
        let at = match (room, deadline) {
            (Some(room), Some(deadline)) => Some(room.min(deadline)),
            (room, deadline) => room.or(deadline),
        };
        at.map(tokio::time::Instant::from_std)
    }

    async fn wait_for_room(
        &self,
        taken: u64,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), SpoolError> {
        if self.inner.writer.room(taken, deadline).await {
            Ok(())
        } else {
            Err(SpoolError::Busy)
        }
    }

    /// The ids of `names`, binding the new ones first (one durable submission of
    /// [`Record::Route`]s: a route's first webhook waits for one more sync).
    async fn bind_routes(
        &self,
        names: &[&str],
        deadline: Option<Instant>,
    ) -> Result<Vec<RouteId>, SpoolError> {
        let known = |routes: &HashMap<String, RouteId>| -> Option<Vec<RouteId>> {
            names.iter().map(|n| routes.get(*n).copied()).collect()
        };
        if let Some(ids) = known(&lock(&self.inner.routes)) {
            return Ok(ids);
        }
        let _binding = self.inner.binding.lock().await;
        let (fresh, mut next) = {
            let routes = lock(&self.inner.routes);
            if let Some(ids) = known(&routes) {
                return Ok(ids);
            }
            let mut fresh: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !routes.contains_key(*n))
                .collect();
            fresh.sort_unstable();
            fresh.dedup();
            (fresh, routes.values().max().map_or(0, |m| m + 1))
        };
        let mut bound = Vec::with_capacity(fresh.len());
        let records: Vec<Record<'_>> = fresh
            .iter()
            .map(|name| {
                let id = next;
                next += 1;
                bound.push((name.to_string(), id));
                Record::Route { id, name }
            })
            .collect();
        let ticket = self.submit(&records, false).await?;
        // Late: the names stay unbound here; bound again by the next webhook, to the same
        // ids unless another name took them meanwhile (the later record wins, in lsn order).
        self.settle_by(&ticket, deadline).await?;
        let mut routes = lock(&self.inner.routes);
        let wakers = lock(&self.inner.wakers);
        for (name, id) in &bound {
            if let Some(waker) = wakers.get(name) {
                self.inner.writer.set_waker(*id, waker.clone());
            }
        }
        drop(wakers);
        routes.extend(bound);
        Ok(known(&routes).expect("every name bound"))
    }

    /// The wake-up of `route`'s delivery: notified by the writer once per group that gives
    /// the route an event or a replayed dead letter, after the group is durable. (So no
    /// caller has to wake a route: ingest does not, per webhook.) The same `Notify` for a
    /// name every time.
    pub fn route_waker(&self, route: &str) -> Arc<Notify> {
        let routes = lock(&self.inner.routes);
        let mut wakers = lock(&self.inner.wakers);
        let waker = wakers.entry(route.to_string()).or_default().clone();
        if let Some(&id) = routes.get(route) {
            self.inner.writer.set_waker(id, waker.clone());
        }
        waker
    }

    /// Claims the id whose fingerprint is `fingerprint`: waits until no other append of it
    /// is between its check and its answer.
    async fn claim(&self, fingerprint: u64) -> Claim {
        loop {
            let waiters: Arc<Notify>;
            let released = {
                let mut claims = lock(&self.inner.claims);
                match claims.entry(fingerprint) {
                    Entry::Vacant(free) => {
                        free.insert(None);
                        return Claim {
                            inner: self.inner.clone(),
                            fingerprint,
                            ticket: None,
                        };
                    }
                    Entry::Occupied(mut held) => {
                        waiters = held.get_mut().get_or_insert_with(Default::default).clone();
                    }
                }
                // Made under the lock, so the release (which takes it) cannot come first: a
                // `Notified` sees every `notify_waiters` after it was made.
                waiters.notified()
            };
            released.await;
        }
    }

    /// The record of event `seq`, found at `location`; when compaction moved it and deleted
    /// the segment meanwhile, read again where the state now says. `None`: the state no
    /// longer holds the event.
    fn read_event(&self, seq: u64, location: Location) -> Result<Option<Vec<u8>>, SpoolError> {
        match read_record(&*self.inner.storage, &location) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let Some(moved) = self.with_state(|s| s.event(seq).map(|m| m.location())) else {
                    return Ok(None);
                };
                read_record(&*self.inner.storage, &moved)
                    .map(Some)
                    .map_err(spool_error)
            }
            Err(e) => Err(spool_error(e)),
        }
    }

    /// Event `seq` as stored, read back from its segment.
    fn load_event(&self, seq: u64, location: Location) -> Result<Option<StoredEvent>, SpoolError> {
        let Some(bytes) = self.read_event(seq, location)? else {
            return Ok(None);
        };
        match Record::decode(&bytes) {
            Ok(Record::Event(e)) => Ok(Some(stored_event(&e))),
            _ => Err(SpoolError::Incompatible {
                path: self.inner.path.clone(),
                why: format!("event {seq}'s record does not read back as an event"),
            }),
        }
    }

    /// Whether `id` was stored within `window_ms` of `now`: a fingerprint hit in the state,
    /// confirmed by reading the id stored in its record.
    fn is_duplicate(
        &self,
        id: &str,
        fingerprint: u64,
        window_ms: u64,
        now: u64,
    ) -> Result<bool, SpoolError> {
        let Some(hit) = self.with_state(|s| s.dedup_candidate_at(fingerprint)) else {
            return Ok(false);
        };
        if hit.received_at_ms.saturating_add(window_ms) < now {
            return Ok(false);
        }
        let Some(event) = self.load_event(hit.seq, hit.location)? else {
            return Ok(false);
        };
        Ok(event.webhook_id.as_deref() == Some(id))
    }

    /// Stores `event` for every route in `routes` and marks its webhook id seen, in one
    /// durable record, unless the id was seen within `dedup_window`. Returns once durable.
    pub async fn append(
        &self,
        event: StoredEvent,
        routes: Vec<String>,
        dedup_window: Duration,
    ) -> Result<AppendOutcome, SpoolError> {
        let routes: Vec<(&str, u64)> = routes.iter().map(|r| (r.as_str(), 0)).collect();
        self.append_grouped(event.borrowed(), &routes, dedup_window, None)
            .await
    }

    /// [`LogSpool::append`], each route with the event's message group there: on an ordered
    /// route, the [`message_group_fingerprint`](crate::spool::message_group_fingerprint) of
    /// its message group id (a held event then blocks only its own group); 0 for none.
    /// With a `deadline`, gives up then ([`SpoolError::Late`]; the event may still be
    /// stored after, and a retry is then a duplicate): the ack path's deadline, enforced
    /// without a timer per webhook (see [`Writer::durable_by`]).
    pub async fn append_grouped(
        &self,
        event: EventRef<'_>,
        routes: &[(&str, u64)],
        dedup_window: Duration,
        deadline: Option<Instant>,
    ) -> Result<AppendOutcome, SpoolError> {
        if !self.is_open() {
            return Err(SpoolError::Closed);
        }
        let window_ms = dedup_window.as_millis() as u64;
        let (names, groups): (Vec<&str>, Vec<u64>) = routes.iter().copied().unzip();
        let route_ids = self.bind_routes(&names, deadline).await?;
        let mut claim = match event.webhook_id {
            Some(id) => {
                let fingerprint = state::fingerprint(self.inner.keys, id);
                let claim = self.claim(fingerprint).await;
                if self.is_duplicate(id, fingerprint, window_ms, self.inner.clock.now_ms())? {
                    return Ok(AppendOutcome::Duplicate);
                }
                Some(claim)
            }
            None => None,
        };
        // The due time is chosen and the records queued under one lock (see "Queue order of
        // new events"); when the group being filled is full, the lock is let go while
        // waiting for room, and both are done again.
        let room_deadline = self.room_deadline(false, deadline);
        let ticket = loop {
            let queued = {
                let mut fresh_due = lock(&self.inner.fresh_due);
                let due = event.received_at_ms.max(*fresh_due);
                let dues: Vec<RouteDue> = route_ids
                    .iter()
                    .zip(&groups)
                    .map(|(&route, &group)| RouteDue {
                        route,
                        due_ms: due,
                        group,
                    })
                    .collect();
                let mut records = vec![Record::Event(EventRecord {
                    webhook_id: event.webhook_id,
                    received_at_ms: event.received_at_ms,
                    api_key: event.api_key,
                    signature: event.signature,
                    event_type: event.event_type,
                    path: event.path,
                    trace: event.trace,
                    body: event.body,
                    routes: dues.into(),
                })];
                if let Some(expire) = self.expiry(window_ms) {
                    records.push(expire);
                }
                let queued = self.try_submit(&records)?;
                if let Submitted::Queued(_) = queued {
                    *fresh_due = due;
                }
                queued
            };
            match queued {
                Submitted::Queued(ticket) => break ticket,
                Submitted::Full(taken) => self.wait_for_room(taken, room_deadline).await?,
            }
        };
        if let Some(claim) = &mut claim {
            claim.ticket = Some(ticket);
        }
        self.settle_by(&ticket, deadline).await?;
        Ok(AppendOutcome::Stored {
            seq: ticket.first_lsn,
        })
    }

    /// An [`Record::ExpireIds`] to ride along, at most once per [`EXPIRE_EVERY_MS`]: the ids
    /// older than the window are forgotten (the check in `append` applies the window
    /// exactly; this only reclaims memory and lets compaction free their segments).
    fn expiry(&self, window_ms: u64) -> Option<Record<'static>> {
        let now = self.inner.clock.now_ms();
        let last = self.inner.last_expiry_ms.load(Ordering::Relaxed);
        if now < last.saturating_add(EXPIRE_EVERY_MS) {
            return None;
        }
        self.inner
            .last_expiry_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(Record::ExpireIds {
            before_ms: now.saturating_sub(window_ms),
            limit: EXPIRE_LIMIT,
        })
    }

    /// Writes everything submitted so far, then stops maintenance and the writer and lets go
    /// of the directory. Later writes fail with [`SpoolError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(mut maintenance) = lock(&inner.maintenance).take() {
                maintenance.stop();
            }
            inner.writer.close();
            drop(lock(&inner.dir_lock).take());
        })
        .await;
    }
}
