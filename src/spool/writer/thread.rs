//! The writer thread: takes the group being filled, frames it, writes it with one write,
//! makes it durable with one fdatasync, applies its records to the state and publishes the
//! watermark; after a failure, a barrier in a fresh segment (see "Failure" in the log's
//! module documentation).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use super::super::record::{Record, RouteId};
use super::super::segment::{
    self, Group, GroupHeader, SegmentHeader, FLAG_TAIL_UNTRUSTED, SEGMENT_HEADER_LEN,
};
use super::super::state::Location;
use super::super::storage::SegmentFile;
use super::{lock, Failure, Shared, Wake, BARRIER_TRIES, FAILURES_KEPT, PREFIX};

/// The page size writes are rounded up to (see `write_group`): 4 KiB, the page of every
/// common platform, a multiple of the disk blocks the page cache reads.
const PAGE: u64 = 4096;

/// Why a group failed.
enum GroupError {
    /// Before anything was written (no segment could be had).
    NotWritten(io::Error),
    /// The write or the sync failed: some of the group may be on disk.
    Written(io::Error),
}

/// The segment being written.
pub(super) struct Current {
    index: u64,
    file: Arc<dyn SegmentFile>,
    /// Where the next group goes; 0 until the header (with the first group) is written.
    offset: u64,
    flags: u8,
    void_from: u64,
}

/// The writer's metrics (docs/metrics.md), registered once when it starts.
pub(super) struct WriterMetrics {
    commits: metrics::Counter,
    batch_size: metrics::Histogram,
    seconds: metrics::Histogram,
    failures: metrics::Counter,
    dedup_ids: metrics::Gauge,
}

impl WriterMetrics {
    pub(super) fn register() -> WriterMetrics {
        WriterMetrics {
            commits: metrics::counter!("hookfan_spool_commits_total"),
            batch_size: metrics::histogram!("hookfan_spool_commit_batch_size"),
            seconds: metrics::histogram!("hookfan_spool_commit_seconds"),
            failures: metrics::counter!("hookfan_spool_commit_failures_total"),
            dedup_ids: metrics::gauge!("hookfan_spool_dedup_ids"),
        }
    }
}

pub(super) struct WriterThread {
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: WriterMetrics,
    /// Routes the group being applied gives something to deliver (woken once it is
    /// published), and which of them are listed already.
    pub(super) woken: Vec<RouteId>,
    pub(super) listed: Vec<bool>,
    /// The wakers of the async waiters a publish resolves, woken outside the list's lock.
    pub(super) ready: Vec<std::task::Waker>,
    pub(super) current: Option<Current>,
    /// The lsn after the last durable group's records.
    pub(super) trusted_end: u64,
    /// The next segment must say `TAIL_UNTRUSTED` (after a failure, or at start).
    pub(super) untrusted_tail: bool,
}

impl WriterThread {
    pub(super) fn run(&mut self) {
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
        let mark = &self.shared.watermark;
        let progress = lock(&self.shared.progress);
        mark.stopped.store(true, Ordering::Release);
        drop(progress);
        self.shared.progressed.notify_all();
        mark.wake(Wake::All, &mut self.ready);
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
        // Whole pages: the write runs on, with zeros, to the end of its last page (the file
        // holds zeros there already). A write that ends inside a page the page cache does
        // not hold (a segment zero-filled with direct I/O, or evicted since) would first read
        // that page from the disk, on the ack path.
        let len = buf.len();
        let end = at + (len - start) as u64;
        let padded_end = end
            .next_multiple_of(PAGE)
            .min(self.shared.config.segment_size);
        buf.resize(len + (padded_end.max(end) - end) as usize, 0);
        let written = current
            .file
            .write_at(&buf[start..], at)
            .and_then(|()| current.file.sync_data());
        buf.truncate(len);
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
        // Decoded (and the routes to wake listed) before the state's lock is taken: ingest's
        // dedup check waits on that lock, so it is held only while the records are applied.
        let mut decoded = Vec::with_capacity(count as usize);
        for ((lsn, bytes), offset) in group.records().zip(group.record_offsets()) {
            match Record::decode(bytes) {
                Ok(record) => {
                    let location = Location {
                        segment: segment_index,
                        offset: group_offset + offset as u64,
                        len: bytes.len() as u32,
                    };
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
                    decoded.push((lsn, location, record));
                }
                Err(e) => {
                    tracing::error!(error = %e, lsn, "spool: a record the writer encoded does not decode (a bug)")
                }
            }
        }
        let mut state = lock(&self.shared.state);
        for (lsn, location, record) in &decoded {
            state.apply(*lsn, *location, record);
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

    fn publish(&mut self, resolved: u64, failure: Option<Failure>) {
        let mark = &self.shared.watermark;
        let mut progress = lock(&self.shared.progress);
        if let Some(f) = failure {
            mark.failed_end.fetch_max(f.end_lsn, Ordering::AcqRel);
            if progress.failures.len() == FAILURES_KEPT {
                if let Some(old) = progress.failures.pop_front() {
                    progress.forgotten_below = old.end_lsn;
                }
            }
            progress.failures.push_back(f);
        }
        // Under the progress lock (see `Progress`).
        mark.clock_ms
            .store(self.shared.clock_ms(), Ordering::Relaxed);
        mark.resolved.store(resolved, Ordering::Release);
        drop(progress);
        // The acknowledgements first, then the blocking waiters (maintenance, tests).
        mark.wake(Wake::Resolved, &mut self.ready);
        self.shared.progressed.notify_all();
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
