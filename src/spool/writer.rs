//! The group-commit writer: one thread that writes and syncs groups ([`thread`]), one that
//! prepares segments ahead of it ([`preparer`]); this file is their shared state and the
//! API the facade calls. See "Group commit" and "Failure" in the log's module documentation.
//!
//! Callers [`Writer::submit`] records (encoded on the caller's thread, copied into the group
//! being filled under a short lock) and get a [`Ticket`]: the lsns they were given. They then
//! wait on one shared watermark, "every lsn below N is resolved" ([`Writer::wait`] blocks,
//! [`Writer::durable`] awaits), and look up whether their lsns fell in a failed group (only
//! when some group ever failed at or after their first lsn). No channel or oneshot per
//! record: an async waiter leaves its task's waker in one list with the lsn it waits for,
//! and a published group wakes only the waiters it resolves, not every waiter (at 64
//! webhooks in flight, most wait for a later group). A coarse clock moves as groups are
//! published and on a ticker thread every [`CLOCK_TICK`] (so it moves while a sync hangs),
//! and each tick wakes the waiters whose deadline it has reached
//! ([`Writer::durable_by`]): no timer per waiter.
//!
//! Never on this path: file creation, a size change, a directory sync (the preparer does
//! those), a timer per record.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::record::{Record, RouteId};
use super::recovery::Recovered;
use super::segment::{self, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::state::State;
use super::storage::Storage;
use super::LogError;

/// Bytes kept free at the start of each group buffer: room for a segment header and the
/// group header, so a segment's first group and its header go out in one write.
const PREFIX: usize = SEGMENT_HEADER_LEN + GROUP_HEADER_LEN;
/// Failed groups remembered for waiters that have not looked yet.
const FAILURES_KEPT: usize = 1024;
/// Capacity a thread's scratch buffer for framing records keeps between submissions.
const SCRATCH_KEPT: usize = 64 << 10;
/// Fresh segments tried for a barrier after a failure before giving up.
const BARRIER_TRIES: usize = 3;
/// How often the watermark's clock moves when no group is published: how late past its
/// deadline a [`Writer::durable_by`] may return.
pub const CLOCK_TICK: Duration = Duration::from_millis(100);

/// What waiters look at: async ones without a lock, blocking ones under [`Progress`]'s
/// lock. Every lsn below `resolved` is resolved (durable, or in a failed group);
/// `failed_end` is past every lsn of every failed group (0: none ever failed), so a ticket
/// whose first lsn is at or past it is durable; `clock_ms` is the time since the writer
/// started, in ms, as of the last publish or tick. Their wakers wait in `waiting`.
struct Watermark {
    resolved: AtomicU64,
    failed_end: AtomicU64,
    clock_ms: AtomicU64,
    /// The writer thread has ended.
    stopped: AtomicBool,
    /// Each async waiter's waker.
    waiting: Mutex<Vec<Waiting>>,
}

/// An async waiter: its task's waker, the lsn it waits for (its ticket's end) and when it
/// gives up (on [`Watermark::clock_ms`]; `u64::MAX`: never).
struct Waiting {
    end_lsn: u64,
    by_ms: u64,
    waker: Waker,
}

/// Which waiters [`Watermark::wake`] wakes.
#[derive(Clone, Copy)]
enum Wake {
    /// Those the watermark now resolves.
    Resolved,
    /// Those whose deadline the clock has reached.
    Late,
    /// Every one (the writer stopped).
    All,
}

impl Watermark {
    /// Wakes the waiters `which` names, outside the list's lock. `ready` is the caller's
    /// scratch list.
    fn wake(&self, which: Wake, ready: &mut Vec<Waker>) {
        let resolved = self.resolved.load(Ordering::Acquire);
        let clock_ms = self.clock_ms.load(Ordering::Relaxed);
        {
            let mut waiting = lock(&self.waiting);
            let mut i = 0;
            while i < waiting.len() {
                let w = &waiting[i];
                let due = match which {
                    Wake::Resolved => w.end_lsn <= resolved,
                    Wake::Late => w.by_ms <= clock_ms,
                    Wake::All => true,
                };
                if due {
                    ready.push(waiting.swap_remove(i).waker);
                } else {
                    i += 1;
                }
            }
        }
        for waker in ready.drain(..) {
            waker.wake();
        }
    }
}

/// How the writer works.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Size of each segment file (zero-filled ahead).
    pub segment_size: u64,
    /// Segments kept prepared ahead of the one being written.
    pub prepared_ahead: usize,
    /// How long a submission waits for room in a full group before [`LogError::Busy`].
    pub enqueue_timeout: Duration,
    /// How long the writer waits for a prepared segment before failing a group.
    pub rotate_timeout: Duration,
    /// After a failed group, how long the writer keeps trying to make its barrier durable
    /// (waiting for a segment while the disk is full) before answering its waiters
    /// `voided: false`.
    pub barrier_timeout: Duration,
    /// After a failed preparation, the preparer tries again after this long.
    pub prepare_retry: Duration,
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig {
            segment_size: 32 << 20,
            prepared_ahead: 2,
            enqueue_timeout: Duration::from_secs(2),
            rotate_timeout: Duration::from_secs(2),
            barrier_timeout: Duration::from_secs(5),
            prepare_retry: Duration::from_secs(1),
        }
    }
}

impl WriterConfig {
    /// Segments must hold a header and a group with some payload, and a payload length must
    /// fit its u32 field; at least one segment is prepared ahead.
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_size < 4 * PREFIX as u64 {
            return Err(LogError::BadConfig("segment_size below 320 bytes"));
        }
        if self.segment_size > u64::from(u32::MAX) {
            return Err(LogError::BadConfig("segment_size above 4 GiB"));
        }
        if self.prepared_ahead == 0 {
            return Err(LogError::BadConfig("prepared_ahead must be at least 1"));
        }
        Ok(())
    }

    /// The most payload bytes one group (so one submission) can hold.
    pub fn max_payload(&self) -> usize {
        (self.segment_size as usize).saturating_sub(PREFIX + segment::ALIGN)
    }
}

/// The lsns one submission was given: `first_lsn..end_lsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub first_lsn: u64,
    pub end_lsn: u64,
}

/// What [`Writer::try_submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// In the group being filled, with these lsns.
    Queued(Ticket),
    /// Not taken: the group being filled has no room. The number is the writer's count of
    /// groups taken so far, for [`Writer::room`].
    Full(u64),
}

/// The group being filled.
struct Fill {
    /// `PREFIX` bytes of room, then the records pushed so far.
    buf: Vec<u8>,
    /// The lsn of the first record in `buf`.
    first_lsn: u64,
    count: u32,
    closed: bool,
}

struct Failure {
    first_lsn: u64,
    end_lsn: u64,
    voided: bool,
    error: Arc<io::Error>,
}

/// The failed groups waiters look up. Its lock is also the one under which the writer
/// stores [`Watermark::resolved`] and [`Watermark::stopped`], so a blocking waiter that
/// checks them under it and then waits on `progressed` cannot miss a change.
struct Progress {
    failures: VecDeque<Failure>,
    /// Failures of lsns below this were forgotten (more than `FAILURES_KEPT` since).
    forgotten_below: u64,
}

struct Shared {
    storage: Arc<dyn Storage>,
    config: WriterConfig,
    fill: Mutex<Fill>,
    /// The writer waits here for records.
    filled: Condvar,
    /// Submitters wait here for room.
    room: Condvar,
    progress: Mutex<Progress>,
    progressed: Condvar,
    watermark: Watermark,
    /// When the writer started: the origin of [`Watermark::clock_ms`].
    started: Instant,
    /// Groups the writer has taken from `fill` (room made): async submitters wait on it.
    taken_tx: watch::Sender<u64>,
    state: Mutex<State>,
    prepared: Mutex<Prepared>,
    /// Both the writer (a segment is ready) and the preparer (one was taken) wait here.
    prepared_changed: Condvar,
    /// Groups made durable (one write and one fdatasync each), their records and bytes.
    groups: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    /// Set by [`Writer::close`]: the clock thread stops.
    closing: AtomicBool,
    /// Each route's wake-up, by route id ([`Writer::set_waker`]): notified once per group
    /// that gives the route something new to deliver (an event, a replayed dead letter),
    /// after the group is published.
    wakers: Mutex<Vec<Option<Arc<Notify>>>>,
}

/// What the writer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Groups made durable: one write and one fdatasync each.
    pub groups: u64,
    pub records: u64,
    /// Bytes of those groups (headers and the frames' padding included; not the zeros a
    /// write runs on with to its page's end).
    pub bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer. Dropping it closes it (what is queued is still written).
pub struct Writer {
    shared: Arc<Shared>,
    taken_rx: watch::Receiver<u64>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer after recovery, in `storage`.
    pub fn start(
        storage: Arc<dyn Storage>,
        recovered: Recovered,
        config: WriterConfig,
    ) -> Result<Writer, LogError> {
        config.validate()?;
        // What recovery read may be in the page cache only (the last run was killed before
        // its sync): made durable before anything is written after it, so a power cut later
        // cannot take it from under the records that follow (a gap recovery would refuse).
        // The last write recovery applied is written again first: pages a failed sync left
        // clean but unwritten (the run was killed before its barrier) no sync would save.
        if let Some((index, offset, bytes)) = &recovered.last_write {
            let name = segment::segment_name(*index);
            storage
                .open(&name)
                .and_then(|file| file.write_at(bytes, *offset))
                .map_err(|e| LogError::io("rewrite", name.as_str(), e))?;
        }
        for &index in &recovered.replayed {
            let name = segment::segment_name(index);
            storage
                .open(&name)
                .and_then(|file| file.sync_data())
                .map_err(|e| LogError::io("sync", name.as_str(), e))?;
        }
        let (ready, next_index) = adopt_spares(
            &*storage,
            &recovered.spares,
            recovered.next_segment,
            &config,
        )?;
        let next_lsn = recovered.next_lsn;
        let (taken_tx, taken_rx) = watch::channel(0);
        let mut buf = Vec::with_capacity(64 << 10);
        buf.resize(PREFIX, 0);
        let shared = Arc::new(Shared {
            storage,
            config,
            fill: Mutex::new(Fill {
                buf,
                first_lsn: next_lsn,
                count: 0,
                closed: false,
            }),
            filled: Condvar::new(),
            room: Condvar::new(),
            progress: Mutex::new(Progress {
                failures: VecDeque::new(),
                forgotten_below: 0,
            }),
            progressed: Condvar::new(),
            watermark: Watermark {
                resolved: AtomicU64::new(next_lsn),
                failed_end: AtomicU64::new(0),
                clock_ms: AtomicU64::new(0),
                stopped: AtomicBool::new(false),
                waiting: Mutex::new(Vec::new()),
            },
            started: Instant::now(),
            taken_tx,
            state: Mutex::new(recovered.state),
            prepared: Mutex::new(Prepared {
                ready,
                next_index,
                closed: false,
                error: None,
            }),
            prepared_changed: Condvar::new(),
            groups: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            wakers: Mutex::new(Vec::new()),
        });
        let preparer = {
            let shared = shared.clone();
            spawn("hookfan-spool-prep", "the segment preparer", move || {
                prepare_loop(&shared)
            })?
        };
        let writer = {
            let mut w = WriterThread {
                shared: shared.clone(),
                metrics: WriterMetrics::register(),
                woken: Vec::new(),
                listed: Vec::new(),
                ready: Vec::new(),
                current: None,
                trusted_end: next_lsn,
                // The tail the recovery cut (if any) stays cut: see "Failure" in mod.rs.
                untrusted_tail: true,
            };
            spawn("hookfan-spool-w", "the spool writer", move || w.run())?
        };
        let clock = {
            let shared = shared.clone();
            spawn("hookfan-spool-clk", "the spool clock", move || {
                clock_loop(&shared)
            })?
        };
        Ok(Writer {
            shared,
            taken_rx,
            threads: Mutex::new(vec![writer, preparer, clock]),
        })
    }

    /// Waits, at most `timeout`, until a segment is prepared for the first group: a log
    /// whose last run left no spare (a new one, or one killed while it prepared them)
    /// has none until the preparer has zero-filled one, and the first groups would wait
    /// for it, past [`WriterConfig::rotate_timeout`] on a busy disk. False if none came
    /// (a preparation failed, or none came in time: groups then wait or fail as they would
    /// anyway).
    pub fn wait_prepared(&self, timeout: Duration) -> bool {
        // A deadline past what an Instant holds is none.
        let deadline = Instant::now().checked_add(timeout);
        let mut prepared = lock(&self.shared.prepared);
        let first = prepared.next_index;
        loop {
            // Ready, or already taken by the writer (the index moved on).
            if !prepared.ready.is_empty() || prepared.next_index != first {
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) || prepared.closed || prepared.error.is_some() {
                return false;
            }
            let changed = &self.shared.prepared_changed;
            prepared = match left {
                Some(left) => {
                    changed
                        .wait_timeout(prepared, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => changed
                    .wait(prepared)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Calls `then` with `records` framed for a group's payload; refused when no group could
    /// hold them. They are framed in this thread's scratch buffer, outside the fill lock,
    /// and copied into the group by `then`: an append allocates nothing here (a body of a
    /// KiB or more is a large allocation, which also makes glibc consolidate its fast bins).
    fn with_encoded<R>(
        &self,
        records: &[Record<'_>],
        then: impl FnOnce(&[u8]) -> Result<R, LogError>,
    ) -> Result<R, LogError> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            // Not re-entered (`then` only copies), but never panic if it were.
            let mut fresh = Vec::new();
            let mut borrowed = scratch.try_borrow_mut().ok();
            let encoded = borrowed.as_deref_mut().unwrap_or(&mut fresh);
            encoded.clear();
            for r in records {
                segment::push_record(encoded, |out| r.encode_into(out));
            }
            let max = self.shared.config.max_payload();
            let result = if encoded.len() > max {
                Err(LogError::TooLarge {
                    bytes: encoded.len(),
                    max,
                })
            } else {
                then(encoded)
            };
            // A large submission (a batch of copies, a big body) does not stay allocated.
            if encoded.capacity() > SCRATCH_KEPT {
                *encoded = Vec::new();
            }
            result
        })
    }

    /// Appends encoded records to the group being filled (room checked by the caller).
    fn push(&self, mut fill: MutexGuard<'_, Fill>, encoded: &[u8], count: usize) -> Ticket {
        let first_lsn = fill.first_lsn + u64::from(fill.count);
        fill.buf.extend_from_slice(encoded);
        fill.count += count as u32;
        let was_empty = fill.count as usize == count;
        drop(fill);
        if was_empty {
            self.shared.filled.notify_one();
        }
        Ticket {
            first_lsn,
            end_lsn: first_lsn + count as u64,
        }
    }

    /// Adds `records` to the group being filled, contiguously (one submission is never split
    /// across groups), without waiting: [`Submitted::Full`] when the group has no room for
    /// them (then [`Writer::room`] waits for the writer to take it). For async callers.
    pub fn try_submit(&self, records: &[Record<'_>]) -> Result<Submitted, LogError> {
        self.with_encoded(records, |encoded| {
            let fill = lock(&self.shared.fill);
            if fill.closed {
                return Err(LogError::Closed);
            }
            if fill.buf.len() - PREFIX + encoded.len() > self.shared.config.max_payload() {
                return Ok(Submitted::Full(*self.taken_rx.borrow()));
            }
            Ok(Submitted::Queued(self.push(fill, encoded, records.len())))
        })
    }

    /// Waits until the writer has taken a group since [`Submitted::Full`] said `taken` (so
    /// there is room again), or `deadline` passes (false), or the writer closes.
    pub async fn room(&self, taken: u64, deadline: Option<tokio::time::Instant>) -> bool {
        let mut rx = self.taken_rx.clone();
        let wait = rx.wait_for(|now| *now > taken);
        match deadline {
            Some(at) => matches!(tokio::time::timeout_at(at, wait).await, Ok(Ok(_))),
            None => wait.await.is_ok(),
        }
    }

    /// How long a submission may wait for room before [`LogError::Busy`].
    pub fn enqueue_timeout(&self) -> Duration {
        self.shared.config.enqueue_timeout
    }

    /// Like [`Writer::try_submit`], but blocks the thread for room up to `enqueue_timeout`
    /// (then [`LogError::Busy`]). For threads (maintenance, tests).
    pub fn submit(&self, records: &[Record<'_>]) -> Result<Ticket, LogError> {
        self.with_encoded(records, |encoded| {
            let max = self.shared.config.max_payload();
            let deadline = Instant::now() + self.shared.config.enqueue_timeout;
            let mut fill = lock(&self.shared.fill);
            loop {
                if fill.closed {
                    return Err(LogError::Closed);
                }
                if fill.buf.len() - PREFIX + encoded.len() <= max {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(LogError::Busy);
                }
                fill = self
                    .shared
                    .room
                    .wait_timeout(fill, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            Ok(self.push(fill, encoded, records.len()))
        })
    }

    /// The outcome of a resolved ticket.
    fn outcome(progress: &Progress, ticket: &Ticket) -> Result<(), LogError> {
        if ticket.first_lsn < progress.forgotten_below {
            return Err(LogError::WriteFailed {
                voided: false,
                source: Arc::new(io::Error::other(
                    "the outcome was forgotten after too many failures",
                )),
            });
        }
        match progress
            .failures
            .iter()
            .find(|f| f.first_lsn < ticket.end_lsn && ticket.first_lsn < f.end_lsn)
        {
            Some(f) => Err(LogError::WriteFailed {
                voided: f.voided,
                source: f.error.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Blocks until the ticket's records are durable (Ok) or failed.
    pub fn wait(&self, ticket: &Ticket) -> Result<(), LogError> {
        let mark = &self.shared.watermark;
        let mut progress = lock(&self.shared.progress);
        while mark.resolved.load(Ordering::Acquire) < ticket.end_lsn {
            if mark.stopped.load(Ordering::Acquire) {
                return Err(LogError::Closed);
            }
            progress = self
                .shared
                .progressed
                .wait(progress)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Self::outcome(&progress, ticket)
    }

    /// Waits, without blocking a thread, until the ticket's records are durable or failed.
    pub async fn durable(&self, ticket: &Ticket) -> Result<(), LogError> {
        self.settled(ticket, u64::MAX).await
    }

    /// [`Writer::durable`], giving up at `deadline` ([`LogError::Late`]: the records may
    /// still be made durable after). Checked against the watermark's clock: no timer of its
    /// own, at most a [`CLOCK_TICK`] late.
    pub async fn durable_by(&self, ticket: &Ticket, deadline: Instant) -> Result<(), LogError> {
        // Rounded up: the clock (rounded down) reaches it only once the deadline has passed.
        let by = deadline.saturating_duration_since(self.shared.started);
        let by_ms = u64::try_from(by.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self.settled(ticket, by_ms).await
    }

    /// Waits until the ticket is resolved (then its outcome), or the clock reaches `by_ms`
    /// ([`LogError::Late`]), or the writer has stopped without resolving it.
    async fn settled(&self, ticket: &Ticket, by_ms: u64) -> Result<(), LogError> {
        let mark = &self.shared.watermark;
        let looked = |mark: &Watermark| {
            if mark.resolved.load(Ordering::Acquire) >= ticket.end_lsn {
                Some(Ok(()))
            } else if mark.clock_ms.load(Ordering::Relaxed) >= by_ms {
                Some(Err(LogError::Late))
            } else if mark.stopped.load(Ordering::Acquire) {
                Some(Err(LogError::Closed))
            } else {
                None
            }
        };
        std::future::poll_fn(|cx| {
            if let Some(done) = looked(mark) {
                return Poll::Ready(done);
            }
            let mut waiting = lock(&mark.waiting);
            // Again under the list's lock: a publish stores the watermark before it takes
            // the lock to wake, so either this sees it or that sees this waker.
            if let Some(done) = looked(mark) {
                return Poll::Ready(done);
            }
            waiting.push(Waiting {
                end_lsn: ticket.end_lsn,
                by_ms,
                waker: cx.waker().clone(),
            });
            Poll::Pending
        })
        .await?;
        if ticket.first_lsn >= mark.failed_end.load(Ordering::Acquire) {
            // No group at or after the ticket's first lsn ever failed.
            return Ok(());
        }
        Self::outcome(&lock(&self.shared.progress), ticket)
    }

    /// Groups, records and bytes made durable so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
            records: self.shared.records.load(Ordering::Relaxed),
            bytes: self.shared.bytes.load(Ordering::Relaxed),
        }
    }

    /// The most payload bytes one submission can hold.
    pub fn max_payload(&self) -> usize {
        self.shared.config.max_payload()
    }

    /// Every lsn below this is resolved.
    pub fn resolved(&self) -> u64 {
        self.shared.watermark.resolved.load(Ordering::Acquire)
    }

    /// Reads the state the writer keeps (every durable record applied).
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.shared.state))
    }

    /// Sets route `id`'s wake-up: from the next group on, every published group that gives
    /// the route an event or a replayed dead letter notifies it once (whatever the number of
    /// its records), from the writer's thread.
    pub fn set_waker(&self, id: RouteId, waker: Arc<Notify>) {
        let mut wakers = lock(&self.shared.wakers);
        let i = id as usize;
        if wakers.len() <= i {
            wakers.resize(i + 1, None);
        }
        wakers[i] = Some(waker);
    }

    /// Stops taking records, writes what is queued, and waits for both threads.
    pub fn close(&self) {
        lock(&self.shared.fill).closed = true;
        self.shared.closing.store(true, Ordering::Relaxed);
        self.shared.filled.notify_all();
        self.shared.room.notify_all();
        // Async submitters waiting for room look again, and find the writer closed.
        self.shared.taken_tx.send_modify(|taken| *taken += 1);
        // The writer first (it may still need a prepared segment), then the preparer.
        let mut threads = std::mem::take(&mut *lock(&self.threads)).into_iter();
        if let Some(writer) = threads.next() {
            let _ = writer.join();
        }
        lock(&self.shared.prepared).closed = true;
        self.shared.prepared_changed.notify_all();
        for t in threads {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Starts one of the writer's threads, named `name`; `what` names it in an error.
fn spawn(
    name: &str,
    what: &'static str,
    run: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, LogError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(|e| LogError::io("start", what, e))
}

/// The clock: moves the watermark's clock every [`CLOCK_TICK`], and wakes the async waiters
/// whose deadline it has reached, until the writer closes.
fn clock_loop(shared: &Shared) {
    let mut ready = Vec::new();
    while !shared.closing.load(Ordering::Relaxed) {
        std::thread::park_timeout(CLOCK_TICK);
        let mark = &shared.watermark;
        mark.clock_ms.store(shared.clock_ms(), Ordering::Relaxed);
        mark.wake(Wake::Late, &mut ready);
    }
}

mod preparer;
mod thread;

use preparer::{adopt_spares, prepare_loop, Prepared};
use thread::{WriterMetrics, WriterThread};

#[cfg(test)]
mod tests;
