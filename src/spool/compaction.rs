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
                checkpoint::write_snapshot(&*self.storage, at, &snapshot)
            }
            None => match self.replayed(until, keys) {
                Ok(state) => {
                    metrics::counter!("hookfan_spool_checkpoints_total", "taken_from" => "log")
                        .increment(1);
                    // Encoded as it is written: the rebuilt state is the one copy held.
                    checkpoint::write_state(&*self.storage, at, &state)
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
        let files: Vec<u64> = self
            .list()?
            .iter()
            .filter_map(|n| segment::segment_index(n))
            .collect();
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
            self.checkpoint(writer)?;
        }
        self.compact(writer)
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
mod tests {
    use super::super::reader::read_record;
    use super::super::recovery::recover;
    use super::super::storage::{RealDisk, SimDisk};
    use super::super::writer::WriterConfig;
    use super::*;

    const SEGMENT: u64 = 4096;

    fn use_(bytes: u64) -> SegmentUse {
        SegmentUse { events: 1, bytes }
    }

    #[test]
    fn a_step_deletes_below_the_floor_what_holds_nothing_and_copies_the_oldest_cheap_segment() {
        // (what it shows, files, uses, floor, delete, copy)
        type Case<'a> = (
            &'a str,
            Vec<u64>,
            Vec<(u64, SegmentUse)>,
            u64,
            Vec<u64>,
            Vec<u64>,
        );
        let cases: Vec<Case> = vec![
            (
                "no floor: nothing",
                vec![1, 2, 3],
                vec![],
                0,
                vec![],
                vec![],
            ),
            (
                "below the floor only",
                vec![1, 2, 3, 4],
                vec![],
                3,
                vec![1, 2],
                vec![],
            ),
            (
                "a segment that holds an event stays; the cheap one is copied",
                vec![1, 2, 3, 4],
                vec![(1, use_(100))],
                4,
                vec![2, 3],
                vec![1],
            ),
            (
                "a costly segment is not copied; the next cheap one is",
                vec![1, 2, 3, 4],
                vec![(1, use_(2000)), (2, use_(10))],
                4,
                vec![3],
                vec![2],
            ),
            (
                "cheap segments are copied from until the step's bytes are spent",
                vec![1, 2, 3, 4, 5],
                vec![
                    (1, use_(600)),
                    (2, use_(600)),
                    (3, use_(400)),
                    (4, use_(30)),
                ],
                5,
                vec![],
                vec![1, 3],
            ),
            (
                "nothing at or after the floor is copied",
                vec![1, 2, 3],
                vec![(2, use_(1))],
                2,
                vec![1],
                vec![],
            ),
        ];
        for (name, files, uses, floor, delete, copy) in cases {
            assert_eq!(
                plan(&files, &uses, floor, 1024),
                Plan { delete, copy },
                "{name}"
            );
        }
    }

    fn config() -> WriterConfig {
        WriterConfig {
            segment_size: SEGMENT,
            prepared_ahead: 2,
            enqueue_timeout: Duration::from_secs(5),
            rotate_timeout: Duration::from_secs(5),
            barrier_timeout: Duration::from_secs(5),
            prepare_retry: Duration::from_millis(10),
        }
    }

    fn maint_config() -> MaintenanceConfig {
        MaintenanceConfig {
            copy_batch: 1024,
            ..MaintenanceConfig::for_segments(SEGMENT)
        }
    }

    fn body(i: u64) -> Vec<u8> {
        format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(280)).into_bytes()
    }

    /// Appends `n` events (ids and ~300-byte bodies) on route 0, one group each: about a
    /// dozen per 4 KiB segment. Returns their seqs.
    fn append(w: &Writer, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let id = format!("id-{i}");
                let body = body(i);
                let event = Record::Event(EventRecord {
                    webhook_id: Some(&id),
                    received_at_ms: 1_000 + i,
                    api_key: None,
                    signature: "sig",
                    event_type: None,
                    path: None,
                    body: &body,
                    routes: vec![crate::spool::record::RouteDue::new(0, 1_000 + i)].into(),
                });
                let t = w.submit(&[event]).unwrap();
                w.wait(&t).unwrap();
                t.first_lsn
            })
            .collect()
    }

    fn one(w: &Writer, record: Record<'_>) {
        w.wait(&w.submit(&[record]).unwrap()).unwrap();
    }

    /// Route 0 gives up on `seq` (a dead letter).
    fn dies(w: &Writer, seq: u64) {
        let record = Record::Dead {
            route: 0,
            seq,
            attempts: 3,
            error: "400",
            dead_at_ms: 5,
        };
        one(w, record);
    }

    /// Every 40th of `seqs` dies on route 0 and the rest are delivered: a few dead letters
    /// pinning segments nothing else needs. Returns the dead ones, with their index in `seqs`.
    fn every_fortieth_dies(w: &Writer, seqs: &[u64]) -> Vec<(u64, u64)> {
        let mut dead = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            if i % 40 == 0 {
                dies(w, seq);
                dead.push((i as u64, seq));
            } else {
                one(w, Record::Delivered { route: 0, seq });
            }
        }
        dead
    }

    /// A log on a simulated disk (`seed`), opened, with its maintenance (`maint`).
    fn sim_log(seed: u64, maint: MaintenanceConfig) -> (SimDisk, Maintenance, Writer) {
        let disk = SimDisk::new(seed);
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let recovered = recover(&disk).unwrap();
        let m = Maintenance::new(storage.clone(), recovered.checkpoint, maint);
        let w = Writer::start(storage, recovered, config()).unwrap();
        (disk, m, w)
    }

    /// Takes a checkpoint (one must be due); returns the bytes it read from the disk.
    fn checkpoint_reading(disk: &SimDisk, m: &mut Maintenance, w: &Writer) -> u64 {
        let before = disk.bytes_read();
        m.checkpoint(w)
            .unwrap()
            .expect("a new lsn: a checkpoint is taken");
        disk.bytes_read() - before
    }

    /// The newest checkpoint kept holds exactly the writer's state.
    fn assert_newest_holds_the_writers_state(disk: &SimDisk, m: &Maintenance, w: &Writer) {
        let newest = m.kept().last().unwrap();
        let bytes = disk.bytes(&checkpoint::checkpoint_name(newest.lsn));
        assert_holds_the_writers_state(&bytes.unwrap(), w);
    }

    /// The checkpoint file `bytes` holds exactly the writer's state.
    fn assert_holds_the_writers_state(bytes: &[u8], w: &Writer) {
        let written = checkpoint::decode(bytes).unwrap();
        assert_eq!(
            checkpoint::encode(&written.state),
            w.with_state(checkpoint::encode)
        );
    }

    fn segment_files(storage: &dyn Storage) -> Vec<u64> {
        let mut files: Vec<u64> = storage
            .list()
            .unwrap()
            .iter()
            .filter_map(|n| segment::segment_index(n))
            .collect();
        files.sort_unstable();
        files
    }

    #[test]
    fn a_drained_backlog_returns_the_directory_to_a_few_segments() {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Storage> = Arc::new(RealDisk::open(dir.path()).unwrap());
        let recovered = recover(&*disk).unwrap();
        let mut m = Maintenance::new(disk.clone(), recovered.checkpoint, maint_config());
        let w = Writer::start(disk.clone(), recovered, config()).unwrap();
        let seqs = append(&w, 400);
        let peak = segment_files(&*disk).len();
        assert!(peak > 30, "the backlog spans {peak} segments");
        for seq in seqs {
            one(&w, Record::Delivered { route: 0, seq });
        }
        // The dedup window passes.
        one(
            &w,
            Record::ExpireIds {
                before_ms: u64::MAX,
                limit: 1000,
            },
        );
        // Idle from here on: maintenance rounds alone bring the space back.
        for _ in 0..3 {
            m.step(&w).unwrap();
        }
        let files = segment_files(&*disk);
        assert!(
            files.len() <= 4,
            "{} segments left of {peak}: {files:?}",
            files.len()
        );
        let checkpoints = disk
            .list()
            .unwrap()
            .iter()
            .filter(|n| checkpoint::checkpoint_lsn(n).is_some())
            .count();
        assert_eq!(checkpoints, 2);
        w.close();
        let r = recover(&*disk).unwrap();
        assert_eq!(r.state.live_events(), 0);
        assert!(
            r.report.records < 10,
            "replayed {} records",
            r.report.records
        );
    }

    /// Maintenance that rebuilds every checkpoint from the log.
    fn rebuilding() -> MaintenanceConfig {
        MaintenanceConfig {
            snapshot_at_most: 0,
            ..maint_config()
        }
    }

    #[test]
    fn checkpoints_taken_while_the_writer_appends_each_hold_the_writers_state_at_their_lsn() {
        for config in [maint_config(), rebuilding()] {
            checkpoints_taken_while_the_writer_appends(config);
        }
    }

    fn checkpoints_taken_while_the_writer_appends(config: MaintenanceConfig) {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Storage> = Arc::new(RealDisk::open(dir.path()).unwrap());
        let recovered = recover(&*disk).unwrap();
        let mut m = Maintenance::new(disk.clone(), recovered.checkpoint, config);
        let w = Arc::new(Writer::start(disk.clone(), recovered, self::config()).unwrap());
        // Four submitters, so groups are being written while a checkpoint is taken.
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || append(&w, 150))
            })
            .collect();
        let mut taken = Vec::new();
        while submitters.iter().any(|s| !s.is_finished()) {
            taken.extend(m.checkpoint(&w).unwrap());
        }
        for s in submitters {
            s.join().unwrap();
        }
        assert_eq!(m.checkpoints_from_memory(), 0, "the log did not replay");
        assert!(taken.len() >= 2, "{} checkpoints taken", taken.len());
        // With the writer idle: one more (none if the loop's last one already came after the
        // last record), and the newest says what the writer's state says.
        m.checkpoint(&w).unwrap();
        let last = m.kept().last().unwrap();
        assert_eq!(last.lsn, w.with_state(|s| s.next_lsn()));
        let bytes =
            super::super::recovery::read_all(&*disk, &checkpoint::checkpoint_name(last.lsn), None)
                .unwrap();
        assert_holds_the_writers_state(&bytes, &w);
        w.close();
        let r = recover(&*disk).unwrap();
        assert_eq!(r.state.route(0).unwrap().pending_len(), 600);
        assert_eq!(r.report.records, 0, "the checkpoint covers the whole log");
    }

    #[test]
    fn a_large_checkpoint_is_taken_again_only_once_the_log_wrote_several_times_its_size() {
        let amortized = MaintenanceConfig {
            small_checkpoint: 0,
            log_per_checkpoint: 4,
            ..maint_config()
        };
        let (_disk, mut m, w) = sim_log(7, amortized);
        append(&w, 10);
        m.step(&w).unwrap();
        let mut last = m.kept().last().expect("the first one is always worth it");
        let mut taken = 1;
        for _ in 0..300 {
            append(&w, 1);
            let (size, log_at) = (m.newest_size, m.log_at_newest);
            assert!(size > 0);
            m.step(&w).unwrap();
            let newest = m.kept().last().unwrap();
            if newest != last {
                let written = m.log_at_newest - log_at;
                assert!(
                    written >= 4 * size,
                    "a checkpoint of {size} bytes after {written} bytes of log"
                );
                last = newest;
                taken += 1;
            }
        }
        w.close();
        assert!(taken >= 3, "{taken} checkpoints taken");
    }

    #[test]
    fn a_log_that_does_not_replay_is_checkpointed_from_the_writers_state_and_counted() {
        let (disk, mut m, w) = sim_log(5, rebuilding());
        append(&w, 5);
        let first = m.checkpoint(&w).unwrap().unwrap();
        append(&w, 40);
        // A byte flipped in the first group after the checkpoint's segment.
        let damaged = segment::segment_name(first.segment + 1);
        let at = (segment::SEGMENT_HEADER_LEN + segment::GROUP_HEADER_LEN + 20) as u64;
        let byte = disk.bytes(&damaged).unwrap()[at as usize];
        disk.corrupt(&damaged, at, &[byte ^ 0x40]);
        m.checkpoint(&w).unwrap().expect("a second checkpoint");
        assert_eq!(m.checkpoints_from_memory(), 1);
        assert_newest_holds_the_writers_state(&disk, &m, &w);
        w.close();
    }

    #[test]
    fn a_checkpoint_taken_from_a_snapshot_reads_nothing_unless_it_would_copy_too_many_entries() {
        // Five dead letters and a retried event: a snapshot copies six entries.
        for (most, from_snapshot) in [(6, true), (5, false), (usize::MAX, true)] {
            let config = MaintenanceConfig {
                snapshot_at_most: most,
                ..maint_config()
            };
            let (disk, mut m, w) = sim_log(12, config);
            let seqs = append(&w, 20);
            for &seq in &seqs[..5] {
                dies(&w, seq);
            }
            let retry = Record::Retry {
                route: 0,
                seq: seqs[7],
                due_ms: 9_000,
                attempts: 1,
                error: "503",
            };
            one(&w, retry);
            assert_eq!(w.with_state(State::snapshot_cost), 6);
            let read = checkpoint_reading(&disk, &mut m, &w);
            assert_eq!(
                read == 0,
                from_snapshot,
                "at most {most}: read {read} bytes"
            );
            assert_newest_holds_the_writers_state(&disk, &m, &w);
            w.close();
        }
    }

    #[test]
    fn a_checkpoint_rebuilt_from_the_log_reads_of_the_writers_segment_only_what_it_wrote() {
        const LARGE: u64 = 4 << 20;
        let disk = SimDisk::new(11);
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let recovered = recover(&disk).unwrap();
        let mut m = Maintenance::new(
            storage.clone(),
            recovered.checkpoint,
            MaintenanceConfig {
                snapshot_at_most: 0,
                ..MaintenanceConfig::for_segments(LARGE)
            },
        );
        let large = WriterConfig {
            segment_size: LARGE,
            ..config()
        };
        let w = Writer::start(storage, recovered, large).unwrap();
        for _ in 0..3 {
            append(&w, 5);
            let read = checkpoint_reading(&disk, &mut m, &w);
            // Its own checkpoint (the first time none) and five groups of the 4 MiB segment.
            assert!(read < 16 << 10, "a checkpoint read {read} bytes");
        }
        assert_eq!(m.checkpoints_from_memory(), 0);
        assert_newest_holds_the_writers_state(&disk, &m, &w);
        w.close();
    }

    #[test]
    fn dead_letters_pinning_old_segments_are_copied_forward_and_read_back_after_a_restart() {
        let (disk, mut m, w) = sim_log(3, maint_config());
        let seqs = append(&w, 240);
        // Every 40th event dies; the rest are delivered; then the ids expire.
        let dead = every_fortieth_dies(&w, &seqs);
        one(
            &w,
            Record::ExpireIds {
                before_ms: u64::MAX,
                limit: 1000,
            },
        );
        let mut copied = 0;
        for _ in 0..4 {
            copied += m.step(&w).unwrap().copied;
        }
        assert!(copied >= dead.len(), "{copied} copied");
        let files = segment_files(&disk);
        assert!(files.len() <= 5, "{files:?}");
        // Each dead letter reads back from its new place, body and all, after a crash too.
        let after = disk.crash();
        drop(w);
        let r = recover(&after).unwrap();
        let q = r.state.route(0).unwrap();
        assert_eq!(
            q.dead().map(|(seq, _)| seq).collect::<Vec<_>>(),
            dead.iter().map(|d| d.1).collect::<Vec<_>>()
        );
        for (i, seq) in dead {
            let meta = r.state.event(seq).unwrap();
            assert!(files.contains(&meta.location().segment));
            let bytes = read_record(&after, &meta.location()).unwrap();
            let Ok(Record::Event(e)) = Record::decode(&bytes) else {
                panic!("event {seq} does not read back");
            };
            assert_eq!(e.body, &body(i)[..], "event {seq}");
        }
    }

    /// A needed event that no valid group of its segment holds any more (a flipped byte in
    /// its group) is refused when compaction comes to copy it forward, naming the segment,
    /// the event and where it was: never skipped as if it were not needed.
    #[test]
    fn a_needed_event_whose_group_was_damaged_is_refused_when_it_would_be_copied() {
        let (disk, mut m, w) = sim_log(6, maint_config());
        let seqs = append(&w, 240);
        let (_, first_dead) = every_fortieth_dies(&w, &seqs)[0];
        let at = w.with_state(|s| s.event(first_dead).unwrap().location());
        let name = segment::segment_name(at.segment);
        disk.corrupt(&name, at.offset + 8, &[0xA5; 4]);
        let refused = (0..6).find_map(|_| m.step(&w).err());
        match refused {
            Some(LogError::Corrupt { file, offset, why }) => {
                assert_eq!(file, name);
                assert_eq!(offset, at.offset);
                assert_eq!(why, CorruptWhy::EventMissing { seq: first_dead });
            }
            other => panic!("not refused as damage: {other:?}"),
        }
        // Nothing was copied from the damaged segment's groups after the bad one.
        assert_eq!(
            w.with_state(|s| s.event(first_dead).unwrap().location()),
            at,
            "the event still names its place"
        );
    }

    #[test]
    fn stopping_the_maintenance_thread_wakes_it_instead_of_waiting_out_its_interval() {
        let config = MaintenanceConfig {
            interval: Duration::from_secs(3600),
            ..maint_config()
        };
        let (_disk, m, w) = sim_log(5, config);
        let w = Arc::new(w);
        let mut handle = m.spawn(w.clone()).unwrap();
        let started = std::time::Instant::now();
        handle.stop();
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn an_event_kept_only_for_its_id_is_copied_without_its_body() {
        let (disk, mut m, w) = sim_log(4, maint_config());
        let seqs = append(&w, 40);
        for &seq in &seqs {
            one(&w, Record::Delivered { route: 0, seq });
        }
        for _ in 0..4 {
            m.step(&w).unwrap();
        }
        let first = seqs[0];
        let hit = w.with_state(|s| s.dedup_candidate("id-0")).unwrap();
        assert_eq!(hit.seq, first);
        let bytes = read_record(&disk, &hit.location).unwrap();
        let Ok(Record::Event(e)) = Record::decode(&bytes) else {
            panic!("the id does not read back");
        };
        assert_eq!((e.webhook_id, e.body), (Some("id-0"), &b""[..]));
        assert!(hit.location.segment > 1, "moved from the first segment");
    }
}
