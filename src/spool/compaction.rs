//! Space comes back: checkpoints taken, segments no one needs deleted, the few records still
//! needed in an old segment copied forward so it can go. The rules are in the log's module
//! documentation ("Checkpoints", "Compaction"); this file is their code.
//!
//! [`plan`] is the pure decision (which segments to delete, which one to copy forward);
//! [`Maintenance`] is the thin shell that takes the writer's state, writes checkpoints,
//! lists and removes files and submits [`Record::Copy`]s through the writer like any
//! other records. [`Maintenance::spawn`] runs it on its own thread.
//!
//! Never here: anything on the ack path. A checkpoint does not hold the state's lock: it is
//! rebuilt from the log (see [`Maintenance::checkpoint`]); file creation, directory syncs
//! and removals happen on the maintenance thread. Copies are submitted in bounded batches,
//! one segment per step.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::checkpoint::{self, BadCheckpoint, CheckpointAt};
use super::reader;
use super::record::{EventRecord, Record, RouteDues};
use super::recovery;
use super::segment::{self, Group, SegmentScan};
use super::state::{Location, SegmentUse, State};
use super::storage::Storage;
use super::writer::Writer;
use super::{CorruptWhy, LogError};
use crate::priority;

/// The records of events in a segment's valid groups: (seq, where its event record is, its
/// bytes). An event record's seq is its lsn; a [`Record::Copy`] names its seq and holds the
/// event record after its prefix. Pure; what is not a valid group is not looked at.
pub fn events_in(bytes: &[u8], index: u64) -> impl Iterator<Item = (u64, Location, &[u8])> {
    let groups = match segment::scan(bytes, index) {
        SegmentScan::Used { groups, .. } => groups,
        _ => Vec::new(),
    };
    groups
        .into_iter()
        .flat_map(move |g| group_events(g.group(bytes), g.offset, index))
}

/// [`events_in`] of one group, at `offset` in segment `index`.
pub fn group_events(
    group: Group<'_>,
    offset: u64,
    index: u64,
) -> impl Iterator<Item = (u64, Location, &[u8])> {
    group
        .records()
        .zip(group.record_offsets())
        .filter_map(move |((lsn, record), at)| {
            let offset = offset + at as u64;
            match Record::decode(record) {
                Ok(Record::Event(_)) => {
                    let location = Location {
                        segment: index,
                        offset,
                        len: record.len() as u32,
                    };
                    Some((lsn, location, record))
                }
                Ok(Record::Copy { seq, .. }) => {
                    let prefix = Record::copy_prefix_len(seq);
                    let location = Location {
                        segment: index,
                        offset: offset + prefix as u64,
                        len: (record.len() - prefix) as u32,
                    };
                    Some((seq, location, &record[prefix..]))
                }
                _ => None,
            }
        })
}

/// What one compaction step does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Segment files below the floor that hold nothing needed.
    pub delete: Vec<u64>,
    /// Segments below the floor to copy the events still needed from, oldest first: each
    /// costs at most `copy_at_most` bytes to copy, and all of them together too (the step's
    /// bound).
    pub copy: Vec<u64>,
}

/// Decides a compaction step. `files`: the segment files present; `uses`: the segments that
/// hold events still needed; `floor`: no segment at or after it is touched (see
/// [`Maintenance::floor`]).
pub fn plan(files: &[u64], uses: &[(u64, SegmentUse)], floor: u64, copy_at_most: u64) -> Plan {
    let needed = |s: u64| uses.iter().any(|(u, _)| *u == s);
    let mut budget = copy_at_most;
    let mut copy = Vec::new();
    for &(segment, use_) in uses.iter().filter(|(s, _)| *s < floor) {
        if use_.bytes <= budget {
            budget -= use_.bytes;
            copy.push(segment);
        }
    }
    Plan {
        delete: files
            .iter()
            .copied()
            .filter(|&s| s < floor && !needed(s))
            .collect(),
        copy,
    }
}

/// Nice steps below the maintenance thread at which a checkpoint is encoded and written, on a
/// thread of its own (`hookfan-ckpt`, see [`crate::priority::below`]). A checkpoint encodes
/// the whole state: with a large backlog that is a few hundred ms of CPU, which on a small
/// machine was taken from the threads answering webhooks (the half-rate p99 rose to tens of
/// ms at each checkpoint). At 10 steps it gets about a tenth of a contended core: under a
/// saturating load a checkpoint takes longer, and the log it lets go of a little later. The
/// maintenance thread itself keeps its priority: it takes the writer's locks.
pub const CHECKPOINT_NICE: i32 = 10;

/// The name of the thread a checkpoint is encoded on.
const ENCODER: &str = "hookfan-ckpt";

/// How maintenance works.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// A checkpoint is taken once this many records were applied since the last one.
    pub checkpoint_every: u64,
    /// A checkpoint larger than `small_checkpoint` is taken only once the log written since
    /// the newest one is this many times its size: what checkpoints write stays a fraction
    /// (1 / this) of what the log writes, however large the state.
    pub log_per_checkpoint: u64,
    /// Checkpoints up to this size are cheap: taken whenever one is wanted.
    pub small_checkpoint: u64,
    /// A checkpoint is encoded from a snapshot of the writer's state
    /// ([`State::snapshot`]) when taking it copies at most this many entries (events
    /// retried, held or dead) under the writer's lock; otherwise the state is rebuilt from
    /// the log (see [`Maintenance::checkpoint`]).
    pub snapshot_at_most: usize,
    /// A segment below the floor is copied forward once what it still holds costs at most
    /// this many bytes (a quarter of a segment: copying never writes more than it frees).
    pub copy_at_most: u64,
    /// Bytes of copies per submission (bounded by the writer's group limit too), so copies
    /// never fill a group that webhooks wait on.
    pub copy_batch: usize,
    /// How often the maintenance thread looks.
    pub interval: Duration,
}

impl MaintenanceConfig {
    /// Defaults for segments of `segment_size` bytes.
    pub fn for_segments(segment_size: u64) -> MaintenanceConfig {
        MaintenanceConfig {
            checkpoint_every: 64 << 10,
            log_per_checkpoint: 4,
            small_checkpoint: 1 << 20,
            snapshot_at_most: 32 << 10,
            copy_at_most: segment_size / 4,
            copy_batch: 256 << 10,
            interval: Duration::from_secs(1),
        }
    }
}

/// What a compaction step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    pub deleted: usize,
    /// Events copied forward.
    pub copied: usize,
}

/// Checkpoints and compaction, for one log. See the module documentation.
pub struct Maintenance {
    storage: Arc<dyn Storage>,
    /// Checkpoints kept on disk, oldest first: at most two.
    kept: VecDeque<CheckpointAt>,
    config: MaintenanceConfig,
    /// Checkpoints taken from the writer's state because the log did not replay.
    from_memory: u64,
    /// The newest checkpoint's size in bytes, and the writer's bytes written when it was taken
    /// (see [`MaintenanceConfig::log_per_checkpoint`]).
    newest_size: u64,
    log_at_newest: u64,
}

impl Maintenance {
    /// `recovered`: the checkpoint recovery started from (kept until two newer ones exist).
    pub fn new(
        storage: Arc<dyn Storage>,
        recovered: Option<CheckpointAt>,
        config: MaintenanceConfig,
    ) -> Maintenance {
        let newest_size = recovered.map_or(0, |at| {
            let name = checkpoint::checkpoint_name(at.lsn);
            storage.open(&name).and_then(|f| f.size()).unwrap_or(0)
        });
        Maintenance {
            storage,
            kept: recovered.into_iter().collect(),
            config,
            from_memory: 0,
            newest_size,
            log_at_newest: 0,
        }
    }

    /// The checkpoints kept, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = CheckpointAt> + '_ {
        self.kept.iter().copied()
    }

    /// Checkpoints taken from the writer's state because the log since the last one did not
    /// replay (see [`Maintenance::checkpoint`]); 0 on a sound log.
    pub fn checkpoints_from_memory(&self) -> u64 {
        self.from_memory
    }

    /// No segment at or after this is deleted or copied from: the replay segment of the
    /// older of the two checkpoints kept (0, nothing, while fewer than two exist). So if the
    /// newest checkpoint is found damaged, the older one plus the log after it still cover
    /// everything.
    pub fn floor(&self) -> u64 {
        if self.kept.len() < 2 {
            return 0;
        }
        self.kept.front().map_or(0, |c| c.segment)
    }

    /// Takes a checkpoint of the writer's state (unless the newest is already at its lsn),
    /// then removes every other checkpoint but the one before it. Returns where it stands.
    ///
    /// The state is never encoded under the writer's lock (encoding a large one would
    /// stall every acknowledgement meanwhile). Usually a [`State::snapshot`] is taken under
    /// it, which shares the bulk of the state (event pages, bitmaps) and copies only the
    /// entries of events retried, held or dead; it is encoded after, while the writer goes
    /// on. When those entries are many (more than `snapshot_at_most`: a route failing with
    /// a large backlog), copying them would stall the writer instead, and the state is
    /// rebuilt here, from the newest checkpoint kept and the log after it up to where the
    /// writer stood, by recovery's own rules ([`recovery::replay_until`]), at the price of
    /// a second copy of the state in memory meanwhile. Such a checkpoint is also a check
    /// that the log since the last one replays. If it does not (damage), the error is
    /// logged and the checkpoint is taken from a snapshot after all, which puts the damage
    /// behind it.
    pub fn checkpoint(&mut self, writer: &Writer) -> Result<Option<CheckpointAt>, LogError> {
        let most = self.config.snapshot_at_most;
        let (until, keys, snapshot) = writer.with_state(|s| {
            let snapshot = (s.snapshot_cost() <= most).then(|| s.snapshot());
            (recovery::Until::of(s), s.keys(), snapshot)
        });
        let mut at = until.at();
        if self.kept.back().is_some_and(|c| c.lsn >= at.lsn) {
            return Ok(None);
        }
        let log_at = writer.stats().bytes;
        let written = match snapshot {
            Some(snapshot) => {
                metrics::counter!("hookfan_spool_checkpoints_total", "taken_from" => "snapshot")
                    .increment(1);
                priority::below(ENCODER, CHECKPOINT_NICE, || {
                    checkpoint::write_snapshot(&*self.storage, at, &snapshot)
                })
            }
            // Rebuilt and encoded as it is written: the rebuilt state is the one copy held.
            None => match priority::below(ENCODER, CHECKPOINT_NICE, || {
                self.replayed(until, keys)
                    .map(|state| checkpoint::write_state(&*self.storage, at, &state))
            }) {
                Ok(written) => {
                    metrics::counter!("hookfan_spool_checkpoints_total", "taken_from" => "log")
                        .increment(1);
                    written
                }
                Err(e) => {
                    self.from_memory += 1;
                    metrics::counter!("hookfan_spool_checkpoints_total", "taken_from" => "memory")
                        .increment(1);
                    tracing::error!(
                        error = %e,
                        lsn = at.lsn,
                        "spool: the log since the last checkpoint does not replay; this checkpoint is taken from a snapshot of the writer's state instead"
                    );
                    let (now, snapshot) =
                        writer.with_state(|s| (CheckpointAt::of(s), s.snapshot()));
                    at = now;
                    checkpoint::write_snapshot(&*self.storage, at, &snapshot)
                }
            },
        };
        self.newest_size =
            written.map_err(|e| LogError::io("write", checkpoint::checkpoint_name(at.lsn), e))?;
        self.log_at_newest = log_at;
        self.kept.push_back(at);
        while self.kept.len() > 2 {
            self.kept.pop_front();
        }
        let stale: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|n| {
                checkpoint::checkpoint_lsn(n).is_some_and(|l| self.kept.iter().all(|c| c.lsn != l))
            })
            .collect();
        self.remove(&stale)?;
        Ok(Some(at))
    }

    /// The state at `until` (where the writer stood), rebuilt from the newest kept
    /// checkpoint that decodes (none kept: the whole log, from an empty state with the
    /// writer's fingerprint `keys`) and the log after it.
    fn replayed(&self, until: recovery::Until, keys: [u64; 2]) -> Result<State, LogError> {
        let mut base = None;
        let mut damaged = None;
        for kept in self.kept.iter().rev() {
            let name = checkpoint::checkpoint_name(kept.lsn);
            match checkpoint::read(&*self.storage, &name)? {
                Ok(c) if c.at == *kept => {
                    base = Some(c);
                    break;
                }
                Ok(_) => damaged = Some((name, 0, BadCheckpoint::Name)),
                Err((offset, why)) => damaged = Some((name, offset, why)),
            }
        }
        if let (None, Some((file, offset, why))) = (&base, damaged) {
            return Err(LogError::Corrupt {
                file,
                offset,
                why: CorruptWhy::Checkpoint(why),
            });
        }
        let state = recovery::replay_until(&*self.storage, base, State::with_keys(keys), until)?;
        let at = until.at();
        if CheckpointAt::of(&state) != at {
            // Not reached by a log recovery accepts: a record applied twice or not at all.
            return Err(LogError::Corrupt {
                file: segment::segment_name(at.segment),
                offset: 0,
                why: CorruptWhy::Missing {
                    expected: at.lsn,
                    found: state.next_lsn(),
                },
            });
        }
        Ok(state)
    }

    fn list(&self) -> Result<Vec<String>, LogError> {
        self.storage
            .list()
            .map_err(|e| LogError::io("list", "the spool directory", e))
    }

    /// Removes `names` and syncs the directory once.
    fn remove(&self, names: &[String]) -> Result<(), LogError> {
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            match self.storage.remove(name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io("remove", name.as_str(), e)),
            }
        }
        self.storage
            .sync_dir()
            .map_err(|e| LogError::io("sync", "the spool directory", e))
    }

    /// One bounded step: copies forward the events still needed from the cheap segments
    /// below the floor (at most `copy_at_most` bytes in all), then deletes the segments below
    /// the floor that hold nothing needed (those copied from among them).
    pub fn compact(&mut self, writer: &Writer) -> Result<Compacted, LogError> {
        let floor = self.floor();
        if floor == 0 {
            return Ok(Compacted::default());
        }
        let mut done = Compacted::default();
        let copied = {
            let uses: Vec<_> = writer.with_state(|s| {
                s.segment_uses()
                    .take_while(|(seg, _)| *seg < floor)
                    .collect()
            });
            let step = plan(&[], &uses, floor, self.config.copy_at_most);
            let mut copied = 0;
            for segment in step.copy {
                copied += self.copy_forward(writer, segment)?;
            }
            copied
        };
        done.copied = copied;
        // Deletions after the copies, so the segment copied from goes in the same step. A
        // segment that holds nothing needed never will again (locations only move forward).
        let files = segment::indexes(&self.list()?);
        let uses: Vec<_> = writer.with_state(|s| {
            s.segment_uses()
                .take_while(|(seg, _)| *seg < floor)
                .collect()
        });
        let step = plan(&files, &uses, floor, self.config.copy_at_most);
        let names: Vec<String> = step
            .delete
            .iter()
            .map(|&s| segment::segment_name(s))
            .collect();
        self.remove(&names)?;
        done.deleted = names.len();
        Ok(done)
    }

    /// Copies forward every event still needed from segment `index`; returns how many.
    ///
    /// The segment is read a window at a time ([`reader::for_each_group`]), and the state's
    /// lock is taken once per group to pick that group's needed events, never across the
    /// whole segment: ingest's dedup checks and the writer's applies wait at most for one
    /// group's lookups. What is held meanwhile is at most one window and one batch of
    /// copies (`copy_batch`). The events a segment needs only ever decrease while it is
    /// read (nothing new is written below the floor; only this thread copies), so the count
    /// checked at the end, under one lock, is exact: a needed event no valid group holds is
    /// damage where an acknowledged record lives.
    fn copy_forward(&self, writer: &Writer, index: u64) -> Result<usize, LogError> {
        let limit = self.config.copy_batch.min(writer.max_payload()).max(1);
        // The records of the copies to submit, owned (the window moves on): (seq, whether
        // a route holds it, its Event record's bytes).
        let mut batch: Vec<(u64, bool, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0;
        let mut copied = 0;
        // Every event found needed, by seq (to check the count at the end).
        let mut found: Vec<u64> = Vec::new();
        reader::for_each_group(&*self.storage, index, |offset, group| {
            let live: Vec<(u64, bool, &[u8])> = writer.with_state(|s| {
                group_events(group, offset, index)
                    .filter_map(|(seq, location, record)| {
                        let meta = s.event(seq).filter(|m| m.location() == location)?;
                        Some((seq, meta.holders() > 0, record))
                    })
                    .collect()
            });
            for (seq, held, record) in live {
                found.push(seq);
                let Ok(Record::Event(event)) = Record::decode(record) else {
                    continue;
                };
                let len = copy_of(seq, event, held).encode().len() + segment::RECORD_LEN_BYTES;
                if len > writer.max_payload() {
                    // An event within a few bytes of the group limit: its copy cannot be
                    // written. It pins its segment until its routes let go of it.
                    tracing::warn!(
                        seq,
                        segment = index,
                        "spool: an event too large to copy forward stays in its segment"
                    );
                    continue;
                }
                if !batch.is_empty() && batch_bytes + len > limit {
                    copied += submit_copies(writer, &batch)?;
                    batch.clear();
                    batch_bytes = 0;
                }
                batch_bytes += len;
                batch.push((seq, held, record.to_vec()));
            }
            Ok(true)
        })?;
        if !batch.is_empty() {
            copied += submit_copies(writer, &batch)?;
        }
        let missing = writer.with_state(|s| {
            let expected = s
                .segment_uses()
                .find(|(seg, _)| *seg == index)
                .map_or(0, |(_, u)| u.events as usize);
            let still_here = |seq: u64| s.event(seq).is_some_and(|m| m.location().segment == index);
            let here = found.iter().filter(|&&seq| still_here(seq)).count();
            // The state says more events are here than valid groups hold: name the first
            // one not found (a walk of every event, on this error path only).
            (here < expected)
                .then(|| {
                    found.sort_unstable();
                    s.events().find(|(seq, m)| {
                        m.location().segment == index && found.binary_search(seq).is_err()
                    })
                })
                .flatten()
                .map(|(seq, m)| (seq, m.location().offset))
        });
        if let Some((seq, offset)) = missing {
            // Damage where an acknowledged record lives.
            return Err(LogError::Corrupt {
                file: segment::segment_name(index),
                offset,
                why: CorruptWhy::EventMissing { seq },
            });
        }
        Ok(copied)
    }

    /// One maintenance round: a checkpoint when one would let the floor rise (fewer than
    /// two kept, or the log moved to a later segment since the newest) or enough was applied
    /// since the last one, and it is worth its cost (small, or the log written since the
    /// newest is [`MaintenanceConfig::log_per_checkpoint`] times its size); then one
    /// compaction step.
    ///
    /// When nothing was applied since the newest checkpoint but the floor still lags it (an
    /// idle log after a drain), a no-op record (`ExpireIds` of nothing) is written first, so
    /// that a second checkpoint can be taken and the segments before the newest one go.
    pub fn step(&mut self, writer: &Writer) -> Result<Compacted, LogError> {
        let (next_lsn, tail) = writer.with_state(|s| (s.next_lsn(), s.tail_segment()));
        let newest = self.kept.back().copied();
        let since = next_lsn.saturating_sub(newest.map_or(1, |c| c.lsn));
        let lagging = newest.is_some_and(|n| self.kept.len() < 2 || self.floor() < n.segment);
        let moved = newest.is_some_and(|n| tail > n.segment);
        let wanted = if since == 0 {
            lagging
        } else {
            since >= self.config.checkpoint_every || self.kept.len() < 2 || moved || lagging
        };
        if wanted && self.worth_it(writer) {
            if since == 0 {
                let marker = Record::ExpireIds {
                    before_ms: 0,
                    limit: 0,
                };
                writer.wait(&writer.submit(&[marker])?)?;
            }
            let started = std::time::Instant::now();
            if let Some(at) = self.checkpoint(writer)? {
                tracing::debug!(
                    lsn = at.lsn,
                    bytes = self.newest_size,
                    took_ms = started.elapsed().as_millis() as u64,
                    "spool: checkpoint taken"
                );
            }
        }
        let started = std::time::Instant::now();
        let done = self.compact(writer)?;
        if done != Compacted::default() {
            tracing::debug!(
                deleted = done.deleted,
                copied = done.copied,
                took_ms = started.elapsed().as_millis() as u64,
                "spool: compaction step"
            );
        }
        Ok(done)
    }

    /// Whether a checkpoint now is worth what it writes (see [`Maintenance::step`]).
    fn worth_it(&self, writer: &Writer) -> bool {
        let written = writer.stats().bytes.saturating_sub(self.log_at_newest);
        self.newest_size <= self.config.small_checkpoint
            || written
                >= self
                    .config
                    .log_per_checkpoint
                    .saturating_mul(self.newest_size)
    }

    /// Runs [`Maintenance::step`] every `interval` on its own thread until the handle is
    /// stopped or dropped. Errors are logged, and the next round tries again.
    pub fn spawn(mut self, writer: Arc<Writer>) -> Result<MaintenanceHandle, LogError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let interval = self.config.interval;
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("hookfan-spool-maint".into())
                .spawn(move || loop {
                    {
                        let (stopped, wake) = &*stop;
                        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                        let (guard, _) = wake
                            .wait_timeout_while(guard, interval, |s| !*s)
                            .unwrap_or_else(PoisonError::into_inner);
                        if *guard {
                            return;
                        }
                    }
                    if let Err(e) = self.step(&writer) {
                        tracing::error!(error = %e, "spool: checkpoint or compaction failed; trying again later");
                    }
                })
                .map_err(|e| LogError::io("start", "the spool maintenance", e))?
        };
        Ok(MaintenanceHandle {
            stop,
            thread: Some(thread),
        })
    }
}

/// The [`Record::Copy`] of event `seq`: with its body and routes if a route holds it, else
/// only what keeps its id remembered.
fn copy_of(seq: u64, event: EventRecord<'_>, held: bool) -> Record<'_> {
    let event = if held {
        event
    } else {
        EventRecord {
            webhook_id: event.webhook_id,
            received_at_ms: event.received_at_ms,
            api_key: None,
            signature: "",
            event_type: None,
            path: None,
            trace: None,
            body: &[],
            routes: RouteDues::List(Default::default()),
        }
    };
    Record::Copy { seq, event }
}

/// Submits the copies of `batch` ((seq, held, Event record bytes) each) in one submission,
/// and waits until they are durable.
fn submit_copies(writer: &Writer, batch: &[(u64, bool, Vec<u8>)]) -> Result<usize, LogError> {
    let copies: Vec<Record<'_>> = batch
        .iter()
        .filter_map(|(seq, held, bytes)| match Record::decode(bytes) {
            Ok(Record::Event(event)) => Some(copy_of(*seq, event, *held)),
            _ => None,
        })
        .collect();
    let ticket = writer.submit(&copies)?;
    writer.wait(&ticket)?;
    Ok(copies.len())
}

/// The maintenance thread; stopping (or dropping) it waits for the round in progress.
pub struct MaintenanceHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl MaintenanceHandle {
    pub fn stop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MaintenanceHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
