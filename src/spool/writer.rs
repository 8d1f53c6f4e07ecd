//! The group-commit writer: one thread that writes and syncs groups, one that prepares
//! segments ahead of it. See "Group commit" and "Failure" in the log's module documentation.
//!
//! Callers [`Writer::submit`] records (encoded on the caller's thread, copied into the group
//! being filled under a short lock) and get a [`Ticket`]: the lsns they were given. They then
//! wait on one shared watermark, "every lsn below N is resolved" ([`Writer::wait`] blocks,
//! [`Writer::durable`] awaits), and look up whether their lsns fell in a failed group. No
//! channel or oneshot per record. The watermark also carries a coarse clock, advanced as
//! groups are published and by a ticker thread every [`CLOCK_TICK`] (so it moves while a
//! sync hangs): an async waiter with a deadline ([`Writer::durable_by`]) checks it there,
//! with no timer of its own.
//!
//! Never on this path: file creation, a size change, a directory sync (the preparer does
//! those), a timer per record.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::record::{Record, RouteId};
use super::recovery::Recovered;
use super::segment::{
    self, Group, GroupHeader, SegmentHeader, FLAG_TAIL_UNTRUSTED, GROUP_HEADER_LEN,
    PREPARING_SUFFIX, SEGMENT_HEADER_LEN,
};
use super::state::{Location, State};
use super::storage::{SegmentFile, Storage};
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

/// What async waiters watch: every lsn below `resolved` is resolved; `clock_ms` is the time
/// since the writer started, in ms, as of the last publish or tick.
#[derive(Debug, Clone, Copy)]
struct Watermark {
    resolved: u64,
    clock_ms: u64,
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

/// What waiters look at.
struct Progress {
    /// Every lsn below this is resolved: durable, or in one of `failures`.
    resolved: u64,
    failures: VecDeque<Failure>,
    /// Failures of lsns below this were forgotten (more than `FAILURES_KEPT` since).
    forgotten_below: u64,
    /// The writer thread has ended.
    stopped: bool,
}

/// Segments ready to be written, by index, in order.
type Ready = VecDeque<(u64, Arc<dyn SegmentFile>)>;

/// Segments prepared ahead, and the preparer's next index.
struct Prepared {
    ready: Ready,
    next_index: u64,
    closed: bool,
    /// The last preparation error, while preparations fail.
    error: Option<Arc<io::Error>>,
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
    resolved_tx: watch::Sender<Watermark>,
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
    /// Bytes written in those groups (headers and padding included).
    pub bytes: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer. Dropping it closes it (what is queued is still written).
pub struct Writer {
    shared: Arc<Shared>,
    resolved_rx: watch::Receiver<Watermark>,
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
        let (ready, next_index) = adopt_spares(
            &*storage,
            &recovered.spares,
            recovered.next_segment,
            &config,
        )?;
        let next_lsn = recovered.next_lsn;
        let (resolved_tx, resolved_rx) = watch::channel(Watermark {
            resolved: next_lsn,
            clock_ms: 0,
        });
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
                resolved: next_lsn,
                failures: VecDeque::new(),
                forgotten_below: 0,
                stopped: false,
            }),
            progressed: Condvar::new(),
            resolved_tx,
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
            resolved_rx,
            taken_rx,
            threads: Mutex::new(vec![writer, preparer, clock]),
        })
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
        let mut progress = lock(&self.shared.progress);
        while progress.resolved < ticket.end_lsn {
            if progress.stopped {
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
        let mut rx = self.resolved_rx.clone();
        rx.wait_for(|w| w.resolved >= ticket.end_lsn)
            .await
            .map_err(|_| LogError::Closed)?;
        Self::outcome(&lock(&self.shared.progress), ticket)
    }

    /// [`Writer::durable`], giving up at `deadline` ([`LogError::Late`]: the records may
    /// still be made durable after). Checked against the watermark's clock: no timer of its
    /// own, at most a [`CLOCK_TICK`] late.
    pub async fn durable_by(&self, ticket: &Ticket, deadline: Instant) -> Result<(), LogError> {
        // Rounded up: the clock (rounded down) reaches it only once the deadline has passed.
        let by = deadline.saturating_duration_since(self.shared.started);
        let by_ms = u64::try_from(by.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let mut rx = self.resolved_rx.clone();
        let resolved = rx
            .wait_for(|w| w.resolved >= ticket.end_lsn || w.clock_ms >= by_ms)
            .await
            .map_err(|_| LogError::Closed)?
            .resolved;
        if resolved < ticket.end_lsn {
            return Err(LogError::Late);
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
        lock(&self.shared.progress).resolved
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

/// Why a group failed.
enum GroupError {
    /// Before anything was written (no segment could be had).
    NotWritten(io::Error),
    /// The write or the sync failed: some of the group may be on disk.
    Written(io::Error),
}

/// The segment being written.
struct Current {
    index: u64,
    file: Arc<dyn SegmentFile>,
    /// Where the next group goes; 0 until the header (with the first group) is written.
    offset: u64,
    flags: u8,
    void_from: u64,
}

/// The writer's metrics (docs/metrics.md), registered once when it starts.
struct WriterMetrics {
    commits: metrics::Counter,
    batch_size: metrics::Histogram,
    seconds: metrics::Histogram,
    failures: metrics::Counter,
    dedup_ids: metrics::Gauge,
}

impl WriterMetrics {
    fn register() -> WriterMetrics {
        WriterMetrics {
            commits: metrics::counter!("hookfan_spool_commits_total"),
            batch_size: metrics::histogram!("hookfan_spool_commit_batch_size"),
            seconds: metrics::histogram!("hookfan_spool_commit_seconds"),
            failures: metrics::counter!("hookfan_spool_commit_failures_total"),
            dedup_ids: metrics::gauge!("hookfan_spool_dedup_ids"),
        }
    }
}

struct WriterThread {
    shared: Arc<Shared>,
    metrics: WriterMetrics,
    /// Routes the group being applied gives something to deliver (woken once it is
    /// published), and which of them are listed already.
    woken: Vec<RouteId>,
    listed: Vec<bool>,
    current: Option<Current>,
    /// The lsn after the last durable group's records.
    trusted_end: u64,
    /// The next segment must say `TAIL_UNTRUSTED` (after a failure, or at start).
    untrusted_tail: bool,
}

impl WriterThread {
    fn run(&mut self) {
        let mut spare: Vec<u8> = vec![0; PREFIX];
        loop {
            let (mut buf, first_lsn, count) = {
                let mut fill = lock(&self.shared.fill);
                while fill.count == 0 && !fill.closed {
                    fill = self
                        .shared
                        .filled
                        .wait(fill)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if fill.count == 0 {
                    break;
                }
                let buf = std::mem::replace(&mut fill.buf, std::mem::take(&mut spare));
                let taken = (buf, fill.first_lsn, fill.count);
                fill.first_lsn += u64::from(fill.count);
                fill.count = 0;
                taken
            };
            self.shared.room.notify_all();
            self.shared.taken_tx.send_modify(|taken| *taken += 1);
            let end_lsn = first_lsn + u64::from(count);
            let started = Instant::now();
            let written = self.write_group(&mut buf, first_lsn, count);
            if written.is_ok() {
                self.metrics.commits.increment(1);
                self.metrics.batch_size.record(f64::from(count));
                self.metrics.seconds.record(started.elapsed().as_secs_f64());
            } else {
                self.metrics.failures.increment(1);
            }
            match written {
                Ok(()) => {
                    self.publish(end_lsn, None);
                    self.wake();
                }
                Err(GroupError::NotWritten(e)) => {
                    // No byte of the group reached a file: it cannot come back. Its lsns are
                    // skipped, so the next segment must declare the gap (and the current one,
                    // full, is not written again: a group after the gap would break its chain).
                    self.current = None;
                    self.untrusted_tail = true;
                    tracing::error!(error = %e, first_lsn, end_lsn, "spool: no segment to write a group to; its records are answered as failed");
                    self.publish(
                        end_lsn,
                        Some(Failure {
                            first_lsn,
                            end_lsn,
                            voided: true,
                            error: Arc::new(e),
                        }),
                    );
                }
                Err(GroupError::Written(e)) => {
                    tracing::error!(error = %e, first_lsn, end_lsn, "spool: a group could not be made durable; its records are answered as failed and writing goes on in a fresh segment");
                    let voided = self.barrier();
                    self.publish(
                        end_lsn,
                        Some(Failure {
                            first_lsn,
                            end_lsn,
                            voided,
                            error: Arc::new(e),
                        }),
                    );
                }
            }
            buf.clear();
            buf.resize(PREFIX, 0);
            spare = buf;
        }
        let mut progress = lock(&self.shared.progress);
        progress.stopped = true;
        drop(progress);
        self.shared.progressed.notify_all();
    }

    /// Seals, writes and syncs one group (`buf`: `PREFIX` bytes of room, then the payload),
    /// then applies it to the state.
    fn write_group(
        &mut self,
        buf: &mut Vec<u8>,
        first_lsn: u64,
        count: u32,
    ) -> Result<(), GroupError> {
        let payload_len = buf.len() - PREFIX;
        let frame_len = segment::frame_len(payload_len);
        let fits = |c: &Current| {
            let header = if c.offset == 0 { SEGMENT_HEADER_LEN } else { 0 };
            c.offset + (header + frame_len) as u64 <= self.shared.config.segment_size
        };
        if !self.current.as_ref().is_some_and(fits) {
            self.rotate().map_err(GroupError::NotWritten)?;
        }
        let current = self.current.as_mut().expect("rotate sets a segment");
        segment::seal_group(buf, SEGMENT_HEADER_LEN, current.index, first_lsn, count);
        let (start, at) = if current.offset == 0 {
            let header = SegmentHeader {
                index: current.index,
                flags: current.flags,
                start_lsn: first_lsn,
                void_from: current.void_from,
            };
            buf[..SEGMENT_HEADER_LEN].copy_from_slice(&segment::encode_segment_header(&header));
            (0, 0)
        } else {
            (SEGMENT_HEADER_LEN, current.offset)
        };
        let written = current
            .file
            .write_at(&buf[start..], at)
            .and_then(|()| current.file.sync_data());
        if let Err(e) = written {
            // Never write to this segment again: its pages are not to be trusted.
            self.current = None;
            self.untrusted_tail = true;
            return Err(GroupError::Written(e));
        }
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
        self.shared
            .records
            .fetch_add(u64::from(count), Ordering::Relaxed);
        self.shared
            .bytes
            .fetch_add((buf.len() - start) as u64, Ordering::Relaxed);
        let group_offset = at + (SEGMENT_HEADER_LEN - start) as u64;
        current.offset = at + (buf.len() - start) as u64;
        self.trusted_end = first_lsn + u64::from(count);
        // Apply what is now durable.
        let header = GroupHeader {
            segment: current.index,
            first_lsn,
            count,
            payload_len: payload_len as u32,
        };
        let group = Group {
            header,
            payload: &buf[PREFIX..PREFIX + payload_len],
        };
        let segment_index = current.index;
        let mut state = lock(&self.shared.state);
        for ((lsn, bytes), offset) in group.records().zip(group.record_offsets()) {
            match Record::decode(bytes) {
                Ok(record) => {
                    let location = Location {
                        segment: segment_index,
                        offset: group_offset + offset as u64,
                        len: bytes.len() as u32,
                    };
                    state.apply(lsn, location, &record);
                    match &record {
                        Record::Event(event) => {
                            for due in event.routes.iter() {
                                list(&mut self.woken, &mut self.listed, due.route);
                            }
                        }
                        Record::Replay { route, .. } => {
                            list(&mut self.woken, &mut self.listed, *route)
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, lsn, "spool: a record the writer encoded does not decode (a bug)")
                }
            }
        }
        self.metrics.dedup_ids.set(state.remembered_ids() as f64);
        Ok(())
    }

    /// Moves to the next prepared segment.
    fn rotate(&mut self) -> io::Result<()> {
        let (index, file) = self.take_prepared()?;
        let flags = if self.untrusted_tail {
            FLAG_TAIL_UNTRUSTED
        } else {
            0
        };
        self.untrusted_tail = false;
        self.current = Some(Current {
            index,
            file,
            offset: 0,
            flags,
            void_from: self.trusted_end,
        });
        Ok(())
    }

    fn take_prepared(&self) -> io::Result<(u64, Arc<dyn SegmentFile>)> {
        let deadline = Instant::now() + self.shared.config.rotate_timeout;
        let mut prepared = lock(&self.shared.prepared);
        loop {
            if let Some(next) = prepared.ready.pop_front() {
                drop(prepared);
                self.shared.prepared_changed.notify_all();
                return Ok(next);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A full disk may clear up: wait for it. Any other preparation error (EIO: the
            // disk is gone) fails the group at once.
            let failing = prepared
                .error
                .as_ref()
                .is_some_and(|e| e.kind() != io::ErrorKind::StorageFull);
            if left.is_zero() || prepared.closed || failing {
                return Err(match &prepared.error {
                    Some(e) => io::Error::new(e.kind(), format!("no segment prepared: {e}")),
                    None => io::Error::other("no segment prepared in time"),
                });
            }
            prepared = self
                .shared
                .prepared_changed
                .wait_timeout(prepared, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// After a failed group: a fresh segment whose header declares the failed records void,
    /// made durable with an empty group. True once it is durable.
    fn barrier(&mut self) -> bool {
        // A segment that cannot be had is waited for (up to `barrier_timeout`); a write or
        // sync that fails again costs a segment, at most `BARRIER_TRIES` of them.
        let deadline = Instant::now() + self.shared.config.barrier_timeout;
        let mut tries = 0;
        while tries < BARRIER_TRIES {
            // The next records to be written take lsns from here on.
            let next_lsn = {
                let fill = lock(&self.shared.fill);
                fill.first_lsn
            };
            if self.rotate().is_err() {
                if Instant::now() >= deadline || self.preparation_failing_for_good() {
                    return false;
                }
                continue;
            }
            let mut buf = vec![0; PREFIX];
            match self.write_group(&mut buf, next_lsn, 0) {
                Ok(()) => return true,
                Err(GroupError::NotWritten(_)) => {}
                Err(GroupError::Written(e)) => {
                    tries += 1;
                    tracing::error!(error = %e, "spool: the barrier after a failed group could not be written either; trying a fresh segment")
                }
            }
        }
        false
    }

    /// The preparer fails with something other than a full disk (EIO: the disk is gone):
    /// waiting for a segment would only delay the answer.
    fn preparation_failing_for_good(&self) -> bool {
        lock(&self.shared.prepared)
            .error
            .as_ref()
            .is_some_and(|e| e.kind() != io::ErrorKind::StorageFull)
    }

    /// Wakes the routes the group just published gave something to deliver.
    fn wake(&mut self) {
        if self.woken.is_empty() {
            return;
        }
        let wakers = lock(&self.shared.wakers);
        for &route in &self.woken {
            self.listed[route as usize] = false;
            if let Some(Some(waker)) = wakers.get(route as usize) {
                waker.notify_one();
            }
        }
        self.woken.clear();
    }

    fn publish(&self, resolved: u64, failure: Option<Failure>) {
        let mut progress = lock(&self.shared.progress);
        if let Some(f) = failure {
            if progress.failures.len() == FAILURES_KEPT {
                if let Some(old) = progress.failures.pop_front() {
                    progress.forgotten_below = old.end_lsn;
                }
            }
            progress.failures.push_back(f);
        }
        progress.resolved = resolved;
        drop(progress);
        self.shared.progressed.notify_all();
        let clock_ms = self.shared.clock_ms();
        self.shared
            .resolved_tx
            .send_replace(Watermark { resolved, clock_ms });
    }
}

impl Shared {
    fn clock_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Adds `route` to `woken` unless `listed` says it is there.
fn list(woken: &mut Vec<RouteId>, listed: &mut Vec<bool>, route: RouteId) {
    let i = route as usize;
    if listed.len() <= i {
        listed.resize(i + 1, false);
    }
    if !listed[i] {
        listed[i] = true;
        woken.push(route);
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

/// The clock: moves the watermark's clock every [`CLOCK_TICK`] until the writer closes.
fn clock_loop(shared: &Shared) {
    while !shared.closing.load(Ordering::Relaxed) {
        std::thread::park_timeout(CLOCK_TICK);
        let clock_ms = shared.clock_ms();
        shared.resolved_tx.send_modify(|w| w.clock_ms = clock_ms);
    }
}

/// The preparer: keeps `prepared_ahead` zero-filled segments ready.
fn prepare_loop(shared: &Shared) {
    loop {
        let index = {
            let mut prepared = lock(&shared.prepared);
            while prepared.ready.len() >= shared.config.prepared_ahead && !prepared.closed {
                prepared = shared
                    .prepared_changed
                    .wait(prepared)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if prepared.closed {
                return;
            }
            prepared.next_index
        };
        match prepare(&*shared.storage, index, shared.config.segment_size) {
            Ok(file) => {
                let mut prepared = lock(&shared.prepared);
                prepared.ready.push_back((index, file));
                prepared.next_index = index + 1;
                prepared.error = None;
                drop(prepared);
                shared.prepared_changed.notify_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, index, "spool: could not prepare a segment; retrying");
                let mut prepared = lock(&shared.prepared);
                prepared.error = Some(Arc::new(e));
                drop(prepared);
                shared.prepared_changed.notify_all();
                let prepared = lock(&shared.prepared);
                if prepared.closed {
                    return;
                }
                let _ = shared
                    .prepared_changed
                    .wait_timeout(prepared, shared.config.prepare_retry);
            }
        }
    }
}

/// The spares the last run prepared (see [`Recovered::spares`]) that are the writer's next
/// segments, `next` on, of the configured size, as many as it keeps prepared: taken as they
/// are (zero-filled, synced and renamed by the preparer that made them). The others are
/// removed. Returns the segments taken and the index the preparer goes on from.
fn adopt_spares(
    storage: &dyn Storage,
    spares: &[u64],
    next: u64,
    config: &WriterConfig,
) -> Result<(Ready, u64), LogError> {
    let mut ready = VecDeque::new();
    let mut next_index = next;
    let mut stale = Vec::new();
    for &index in spares {
        let name = segment::segment_name(index);
        let taken = if index == next_index && ready.len() < config.prepared_ahead {
            let file = storage
                .open(&name)
                .map_err(|e| LogError::io("open", name.as_str(), e))?;
            let size = file
                .size()
                .map_err(|e| LogError::io("stat", name.as_str(), e))?;
            (size == config.segment_size).then_some(file)
        } else {
            None
        };
        match taken {
            Some(file) => {
                ready.push_back((index, file));
                next_index = index + 1;
            }
            None => stale.push(name),
        }
    }
    if !stale.is_empty() {
        for name in &stale {
            storage
                .remove(name)
                .map_err(|e| LogError::io("remove", name.as_str(), e))?;
        }
        storage
            .sync_dir()
            .map_err(|e| LogError::io("sync", "the spool directory", e))?;
    }
    Ok((ready, next_index))
}

/// Creates segment `index`: `<index>.seg.tmp`, zero-filled to `size` and synced, renamed,
/// and the directory synced.
fn prepare(storage: &dyn Storage, index: u64, size: u64) -> io::Result<Arc<dyn SegmentFile>> {
    // The state keeps a segment index in 32 bits (see `EventMeta`).
    if index >= u64::from(u32::MAX) {
        return Err(io::Error::other(format!(
            "segment index {index} is past the last one hookfan writes ({})",
            u32::MAX - 1
        )));
    }
    let name = segment::segment_name(index);
    let tmp = format!("{index:020}{PREPARING_SUFFIX}");
    match storage.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = storage.create(&tmp)?;
    file.zero_fill(size)?;
    storage.rename(&tmp, &name)?;
    storage.sync_dir()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::super::record::EventRecord;
    use super::super::recovery::recover;
    use super::super::storage::{Fault, FaultOp, SimDisk};
    use super::*;

    fn config() -> WriterConfig {
        WriterConfig {
            segment_size: 4096,
            prepared_ahead: 2,
            enqueue_timeout: Duration::from_secs(5),
            rotate_timeout: Duration::from_secs(5),
            barrier_timeout: Duration::from_secs(5),
            prepare_retry: Duration::from_millis(10),
        }
    }

    fn event(id: &str) -> Record<'_> {
        Record::Event(EventRecord {
            webhook_id: Some(id),
            received_at_ms: 1,
            api_key: None,
            signature: "sig",
            event_type: Some("message.new"),
            path: None,
            body: &[b'x'; 300],
            routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
        })
    }

    fn start(disk: &SimDisk) -> Writer {
        let recovered = recover(disk).unwrap();
        Writer::start(Arc::new(disk.clone()), recovered, config()).unwrap()
    }

    #[test]
    fn acknowledged_records_are_in_the_state_and_survive_a_crash() {
        let disk = SimDisk::new(1);
        let w = start(&disk);
        w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
            .unwrap();
        let mut tickets = Vec::new();
        for i in 0..40 {
            let id = format!("id-{i}");
            let t = w.submit(&[event(&id)]).unwrap();
            w.wait(&t).unwrap();
            tickets.push(t);
        }
        assert_eq!(w.with_state(|s| s.route(0).unwrap().pending_len()), 40);
        let after = disk.crash();
        drop(w);
        let recovered = recover(&after).unwrap();
        assert_eq!(recovered.state.route(0).unwrap().pending_len(), 40);
        assert!(
            recovered.report.segments > 2,
            "40 × 300 bytes span segments of 4 KiB"
        );
        assert_eq!(recovered.next_lsn, tickets.last().unwrap().end_lsn);
    }

    #[test]
    fn concurrent_submissions_share_groups_and_all_resolve() {
        let disk = SimDisk::new(2);
        let w = Arc::new(start(&disk));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let id = format!("{t}-{i}");
                        w.wait(&w.submit(&[event(&id)]).unwrap()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.resolved(), 201);
        assert_eq!(w.with_state(|s| s.live_events()), 200);
    }

    #[test]
    fn a_failed_sync_fails_its_group_and_writing_goes_on_in_a_fresh_segment() {
        for fault in [FaultOp::Sync, FaultOp::Write] {
            let disk = SimDisk::new(3);
            let w = start(&disk);
            w.wait(&w.submit(&[event("a")]).unwrap()).unwrap();
            disk.inject(fault, Fault::Io);
            let failed = w.submit(&[event("b")]).unwrap();
            match w.wait(&failed) {
                Err(LogError::WriteFailed { voided: true, .. }) => {}
                other => panic!("{fault:?}: {other:?}"),
            }
            w.wait(&w.submit(&[event("c")]).unwrap()).unwrap();
            let after = disk.crash();
            drop(w);
            let r = recover(&after).unwrap();
            let ids: Vec<u64> = r.state.route(0).unwrap().pending().map(|p| p.1).collect();
            assert_eq!(ids, vec![1, 3], "{fault:?}: b is void, a and c are kept");
            assert_eq!(r.next_lsn, 4);
        }
    }

    #[test]
    fn while_no_segment_can_be_prepared_groups_fail_and_writing_resumes_once_space_is_back() {
        let disk = SimDisk::new(7);
        let recovered = recover(&disk).unwrap();
        let config = WriterConfig {
            prepared_ahead: 1,
            rotate_timeout: Duration::from_millis(50),
            ..config()
        };
        let w = Writer::start(Arc::new(disk.clone()), recovered, config).unwrap();
        w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
            .unwrap();
        // The disk is full: every preparation fails for a while.
        for _ in 0..1000 {
            disk.inject(FaultOp::Create, Fault::NoSpace);
        }
        let mut failed = 0;
        let mut ok = 0;
        for i in 0..40 {
            let id = format!("id-{i}");
            match w.wait(&w.submit(&[event(&id)]).unwrap()) {
                Ok(()) => ok += 1,
                Err(LogError::WriteFailed { voided: true, .. }) => failed += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(failed > 0, "segments ran out ({ok} stored first)");
        // Space is back.
        disk.clear_faults();
        let mut stored = ok;
        for i in 40..60 {
            let id = format!("id-{i}");
            w.wait(&w.submit(&[event(&id)]).unwrap()).unwrap();
            stored += 1;
        }
        let after = disk.crash();
        drop(w);
        let r = recover(&after).unwrap();
        assert_eq!(r.state.route(0).unwrap().pending_len(), stored);
    }

    #[test]
    fn settings_the_writer_cannot_work_with_are_refused_before_it_starts() {
        for (segment_size, prepared_ahead) in [(100, 1), (u64::from(u32::MAX) + 1, 1), (4096, 0)] {
            let disk = SimDisk::new(8);
            let config = WriterConfig {
                segment_size,
                prepared_ahead,
                ..config()
            };
            let started = Writer::start(Arc::new(disk.clone()), recover(&disk).unwrap(), config);
            assert!(
                matches!(started, Err(LogError::BadConfig(_))),
                "{segment_size} {prepared_ahead}"
            );
        }
    }

    #[test]
    fn a_submission_larger_than_a_segment_is_refused() {
        let disk = SimDisk::new(4);
        let w = start(&disk);
        let body = vec![0u8; 5000];
        let big = Record::Event(EventRecord {
            webhook_id: None,
            received_at_ms: 1,
            api_key: None,
            signature: "",
            event_type: None,
            path: None,
            body: &body,
            routes: vec![].into(),
        });
        assert!(matches!(w.submit(&[big]), Err(LogError::TooLarge { .. })));
    }

    #[test]
    fn after_close_submissions_are_refused() {
        let disk = SimDisk::new(5);
        let w = start(&disk);
        let t = w.submit(&[event("a")]).unwrap();
        w.close();
        w.wait(&t).unwrap();
        assert!(matches!(w.submit(&[event("b")]), Err(LogError::Closed)));
    }

    #[tokio::test]
    async fn an_async_waiter_wakes_on_the_shared_watermark() {
        let disk = SimDisk::new(6);
        let w = start(&disk);
        let t = w.submit(&[event("a"), event("b")]).unwrap();
        assert_eq!(t.end_lsn - t.first_lsn, 2);
        w.durable(&t).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiter_with_a_deadline_is_answered_late_once_the_clock_passes_it() {
        let disk = SimDisk::new(7);
        let w = start(&disk);
        // Durable in time: answered as usual.
        let far = Instant::now() + Duration::from_secs(60);
        let t = w.submit(&[event("a")]).unwrap();
        w.durable_by(&t, far).await.unwrap();
        // Records that no group will resolve (lsns not given yet) while nothing is
        // published: only the clock thread moves the watermark, and the waiter gives up at
        // its deadline, not before.
        let ahead = Ticket {
            first_lsn: t.end_lsn + 10,
            end_lsn: t.end_lsn + 11,
        };
        // (A waiter that never gives up fails the test, not hangs it.)
        let bounded = |deadline| {
            tokio::time::timeout(Duration::from_secs(30), w.durable_by(&ahead, deadline))
        };
        let deadline = Instant::now() + 3 * CLOCK_TICK;
        assert!(matches!(bounded(deadline).await, Ok(Err(LogError::Late))));
        assert!(Instant::now() >= deadline);
        // A deadline already past: answered by the next tick at the latest.
        assert!(matches!(
            bounded(Instant::now()).await,
            Ok(Err(LogError::Late))
        ));
        w.close();
    }
}
