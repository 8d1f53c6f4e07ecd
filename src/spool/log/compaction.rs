//! Space comes back: checkpoints taken, segments no one needs deleted, the few records still
//! needed in an old segment copied forward so it can go. The rules are in the log's module
//! documentation ("Checkpoints", "Compaction"); this file is their code.
//!
//! [`plan`] is the pure decision (which segments to delete, which one to copy forward);
//! [`Maintenance`] is the thin shell that takes the writer's state, writes checkpoints,
//! lists and removes files and submits [`Record::Copy`]s through the writer like any
//! other records. [`Maintenance::spawn`] runs it on its own thread.
//!
//! Never here: anything on the ack path. A checkpoint holds the state's lock only while it
//! encodes the state (no I/O under it); file creation, directory syncs and removals happen
//! on the maintenance thread. Copies are submitted in bounded batches, one segment per step.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::checkpoint::{self, CheckpointAt};
use super::record::{EventRecord, Record, RouteDues};
use super::segment::{self, SegmentScan};
use super::state::{Location, SegmentUse};
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
    groups.into_iter().flat_map(move |g| {
        let group = segment::decode_group(&bytes[g.offset as usize..], index).ok();
        group.into_iter().flat_map(move |group| {
            group
                .records()
                .zip(group.record_offsets())
                .filter_map(move |((lsn, record), at)| {
                    let offset = g.offset + at as u64;
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
        })
    })
}

/// What one compaction step does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Segment files below the floor that hold nothing needed.
    pub delete: Vec<u64>,
    /// The oldest segment below the floor whose events still needed cost at most
    /// `copy_at_most` bytes to copy forward.
    pub copy: Option<u64>,
}

/// Decides a compaction step. `files`: the segment files present; `uses`: the segments that
/// hold events still needed; `floor`: no segment at or after it is touched (see
/// [`Maintenance::floor`]).
pub fn plan(files: &[u64], uses: &[(u64, SegmentUse)], floor: u64, copy_at_most: u64) -> Plan {
    let needed = |s: u64| uses.iter().any(|(u, _)| *u == s);
    Plan {
        delete: files
            .iter()
            .copied()
            .filter(|&s| s < floor && !needed(s))
            .collect(),
        copy: uses
            .iter()
            .find(|(s, u)| *s < floor && u.bytes <= copy_at_most)
            .map(|(s, _)| *s),
    }
}

/// How maintenance works.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// A checkpoint is taken once this many records were applied since the last one.
    pub checkpoint_every: u64,
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
}

impl Maintenance {
    /// `recovered`: the checkpoint recovery started from (kept until two newer ones exist).
    pub fn new(
        storage: Arc<dyn Storage>,
        recovered: Option<CheckpointAt>,
        config: MaintenanceConfig,
    ) -> Maintenance {
        Maintenance {
            storage,
            kept: recovered.into_iter().collect(),
            config,
        }
    }

    /// The checkpoints kept, oldest first.
    pub fn kept(&self) -> impl Iterator<Item = CheckpointAt> + '_ {
        self.kept.iter().copied()
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

    /// Records applied since the newest checkpoint.
    fn since_checkpoint(&self, writer: &Writer) -> u64 {
        let last = self.kept.back().map_or(1, |c| c.lsn);
        writer.with_state(|s| s.next_lsn()).saturating_sub(last)
    }

    /// Takes a checkpoint of the writer's state (unless the newest is already at its lsn),
    /// then removes every other checkpoint but the one before it. Returns where it stands.
    pub fn checkpoint(&mut self, writer: &Writer) -> Result<Option<CheckpointAt>, LogError> {
        // Encoded under the state's lock (the writer waits to apply its next group meanwhile);
        // written without it.
        let (at, bytes) = writer.with_state(|s| {
            let at = CheckpointAt {
                lsn: s.next_lsn(),
                segment: s.tail_segment(),
            };
            let fresh = self.kept.back().is_none_or(|c| c.lsn < at.lsn);
            (at, fresh.then(|| checkpoint::encode(s)))
        });
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let name = checkpoint::checkpoint_name(at.lsn);
        checkpoint::write(&*self.storage, at.lsn, &bytes)
            .map_err(|e| LogError::io("write", name, e))?;
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

    /// One bounded step: deletes the segments below the floor that hold nothing needed, and
    /// copies forward the events still needed from one segment below it (then deletes that
    /// one too).
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
            match step.copy {
                Some(seg) => Some(self.copy_forward(writer, seg)?),
                None => None,
            }
        };
        done.copied = copied.unwrap_or(0);
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
    fn copy_forward(&self, writer: &Writer, index: u64) -> Result<usize, LogError> {
        let name = segment::segment_name(index);
        let file = self
            .storage
            .open(&name)
            .map_err(|e| LogError::io("open", name.as_str(), e))?;
        let size = file
            .size()
            .map_err(|e| LogError::io("stat", name.as_str(), e))?;
        let mut bytes = vec![0; size as usize];
        let n = file
            .read_at(&mut bytes, 0)
            .map_err(|e| LogError::io("read", name.as_str(), e))?;
        bytes.truncate(n);
        // Which of its records the state still needs, each with whether a route holds it
        // (else only its id is kept, and its body is not copied).
        let (live, expected) = writer.with_state(|s| {
            let live: Vec<(u64, &[u8], bool)> = events_in(&bytes, index)
                .filter_map(|(seq, location, record)| {
                    let meta = s.event(seq).filter(|m| m.location == location)?;
                    Some((seq, record, meta.holders > 0))
                })
                .collect();
            let expected = s
                .segment_uses()
                .find(|(seg, _)| *seg == index)
                .map_or(0, |(_, u)| u.events as usize);
            (live, expected)
        });
        if live.len() < expected {
            // The state says more events are here than valid groups hold: damage where an
            // acknowledged record lives.
            return Err(LogError::Corrupt {
                file: name,
                offset: 0,
                why: CorruptWhy::EventMissing { seq: 0 },
            });
        }
        let limit = self.config.copy_batch.min(writer.max_payload()).max(1);
        let mut batch: Vec<Record<'_>> = Vec::new();
        let mut batch_bytes = 0;
        let mut copied = 0;
        for (seq, record, held) in &live {
            let Ok(Record::Event(event)) = Record::decode(record) else {
                continue;
            };
            let event = if *held {
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
            let copy = Record::Copy { seq: *seq, event };
            let len = copy.encode().len() + segment::RECORD_LEN_BYTES;
            if !batch.is_empty() && batch_bytes + len > limit {
                copied += submit_copies(writer, &batch)?;
                batch.clear();
                batch_bytes = 0;
            }
            batch_bytes += len;
            batch.push(copy);
        }
        if !batch.is_empty() {
            copied += submit_copies(writer, &batch)?;
        }
        Ok(copied)
    }

    /// One maintenance round: a checkpoint if enough was applied since the last one (or if
    /// compaction waits for a second one), then one compaction step.
    pub fn step(&mut self, writer: &Writer) -> Result<Compacted, LogError> {
        let since = self.since_checkpoint(writer);
        if since >= self.config.checkpoint_every || (self.kept.len() < 2 && since > 0) {
            self.checkpoint(writer)?;
        }
        self.compact(writer)
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

fn submit_copies(writer: &Writer, copies: &[Record<'_>]) -> Result<usize, LogError> {
    let ticket = writer.submit(copies)?;
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
