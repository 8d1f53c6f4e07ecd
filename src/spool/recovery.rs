//! Opening a log directory: the newest valid checkpoint, then every valid group after it
//! applied, in order; a torn last group cut off, counted and logged; corruption refused with
//! the file and offset. The rules are in the log's module documentation ("Recovery",
//! "Checkpoints"); this file applies them.
//!
//! Reads one segment at a time (the whole file: a later step can stream it). Changes the
//! directory only to remove what was never used: half-written `.seg.tmp` and `.ckpt.tmp`
//! files and zero-filled segments after the last one written (the preparer makes new ones).
//! Segments before the checkpoint's are left to compaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::checkpoint::{self, BadCheckpoint, CheckpointAt};
use super::compaction::group_events;
use super::reader;
use super::record::Record;
use super::segment::{
    self, BadFrame, GroupAt, ScanEnd, SegmentHeader, SegmentScan, PREPARING_SUFFIX,
    SEGMENT_HEADER_LEN,
};
use super::state::{Location, State};
use super::storage::Storage;
use super::{CorruptWhy, LogError};

/// What recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segments read (with anything written).
    pub segments: usize,
    pub groups: u64,
    pub records: u64,
    /// The torn last group that was cut off, if any: (file, offset, why).
    pub torn: Option<(String, u64, BadFrame)>,
    /// Records skipped because a later segment declared them void (a failed group whose
    /// bytes landed anyway).
    pub void_records: u64,
    /// Unused files removed (never-finished preparations). Zero-filled spares are left to
    /// the writer ([`Recovered::spares`]).
    pub removed: usize,
    /// The checkpoint the state started from (its file name), if any.
    pub checkpoint: Option<String>,
    /// Newer checkpoints that were damaged and passed over (an older one plus the log still
    /// present covered them): (file, offset, why).
    pub damaged_checkpoints: Vec<(String, u64, BadCheckpoint)>,
    /// How long each step of the open took, for the log line that reports it.
    pub took: OpenSteps,
}

/// The time an open spent on each step: reading the checkpoint (decoding it and rebuilding
/// the state), replaying the log after it, and checking the older segments that still hold
/// needed events.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenSteps {
    pub checkpoint: Duration,
    pub replay: Duration,
    pub check: Duration,
}

/// An opened log: its state and where the writer goes on.
#[derive(Debug)]
pub struct Recovered {
    pub state: State,
    pub report: RecoveryReport,
    /// The index the writer's first new segment takes.
    pub next_segment: u64,
    /// The lsn the writer's first record takes.
    pub next_lsn: u64,
    /// Where the checkpoint the state started from stands, if any.
    pub checkpoint: Option<CheckpointAt>,
    /// Segments the last run prepared and never wrote (all zeros, after every one used),
    /// left in place: the writer takes those that are its next ones as prepared, and
    /// removes the others, so a restart does not zero-fill them again before its first
    /// write.
    pub spares: Vec<u64>,
}

enum Head {
    Unused,
    Bad(BadFrame),
    Valid(SegmentHeader),
}

pub(super) fn read_all(
    storage: &dyn Storage,
    name: &str,
    limit: Option<usize>,
) -> Result<Vec<u8>, LogError> {
    let mut buf = Vec::new();
    read_into(storage, name, limit, &mut buf)?;
    Ok(buf)
}

/// Whether every byte of file `name` is zero: read a MiB at a time into one buffer (a
/// prepared segment is tens of MiB, and every open reads the spares the preparer left).
fn all_zeros(storage: &dyn Storage, name: &str) -> Result<bool, LogError> {
    const WINDOW: usize = 1 << 20;
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))?;
    let mut buf = vec![0u8; WINDOW];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from(len - offset).map_or(WINDOW, |left| left.min(WINDOW));
        let n = file
            .read_at(&mut buf[..want], offset)
            .map_err(|e| LogError::io("read", name, e))?;
        if n == 0 {
            // Shorter than its size said a moment ago: what was read was zeros.
            break;
        }
        // A word at a time, without an early exit inside a window (so it vectorises).
        let window = &buf[..n];
        let words = window.chunks_exact(8);
        let rest = words.remainder().iter().fold(0u8, |a, &b| a | b);
        let ored = words.fold(0u64, |a, w| {
            a | u64::from_le_bytes(w.try_into().expect("8 bytes"))
        });
        if ored != 0 || rest != 0 {
            return Ok(false);
        }
        offset += n as u64;
    }
    Ok(true)
}

/// [`read_all`] into `buf` (its allocation reused: reading many segments in a row faults in
/// one buffer's pages, not each one's).
fn read_into(
    storage: &dyn Storage,
    name: &str,
    limit: Option<usize>,
    buf: &mut Vec<u8>,
) -> Result<(), LogError> {
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))?;
    if len > u64::from(u32::MAX) {
        return Err(corrupt(name, 0, CorruptWhy::Oversized(len)));
    }
    let len = len as usize;
    let want = limit.map_or(len, |l| l.min(len));
    if buf.len() < want {
        *buf = vec![0; want];
    } else {
        buf.truncate(want);
    }
    let n = file
        .read_at(buf, 0)
        .map_err(|e| LogError::io("read", name, e))?;
    buf.truncate(n);
    Ok(())
}

fn corrupt(file: &str, offset: u64, why: CorruptWhy) -> LogError {
    LogError::Corrupt {
        file: file.to_string(),
        offset,
        why,
    }
}

/// Opens the log in `storage`. See the module documentation.
pub fn recover(storage: &dyn Storage) -> Result<Recovered, LogError> {
    let names = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?;
    let mut removed = Vec::new();
    let mut indexes: Vec<u64> = Vec::new();
    let mut checkpoints: Vec<u64> = Vec::new();
    for name in names {
        if name.ends_with(PREPARING_SUFFIX) || name.ends_with(checkpoint::WRITING_SUFFIX) {
            removed.push(name);
        } else if let Some(index) = segment::segment_index(&name) {
            indexes.push(index);
        } else if let Some(lsn) = checkpoint::checkpoint_lsn(&name) {
            checkpoints.push(lsn);
        }
    }
    indexes.sort_unstable();
    checkpoints.sort_unstable_by(|a, b| b.cmp(a));

    let mut damaged = Vec::new();
    let result = std::thread::scope(|scope| {
        // The newest checkpoint that decodes; the damaged ones newer than it are remembered.
        // The old segments' check starts as soon as the first one read has its events in,
        // beside the rest of the decoding and the replay; its findings are used only if
        // that checkpoint is the one the state starts from.
        let mut base = None;
        let mut early: Option<(u64, EarlyCheck)> = None;
        let started = Instant::now();
        for lsn in checkpoints {
            let name = checkpoint::checkpoint_name(lsn);
            let mut start_check = |state: &State, at: CheckpointAt| {
                if early.is_none() {
                    let check = EarlyCheck::start(scope, storage, state, at.segment, &indexes);
                    early = Some((at.lsn, check));
                }
            };
            match checkpoint::read_watching(storage, &name, &mut start_check)? {
                Ok(c) if c.at.lsn == lsn => {
                    base = Some((name, c));
                    break;
                }
                Ok(_) => damaged.push((name, 0, BadCheckpoint::Name)),
                Err((offset, why)) => damaged.push((name, offset, why)),
            }
        }
        let checkpoint_took = started.elapsed();
        let base_lsn = base.as_ref().map(|(_, c)| c.at.lsn);
        let early = early
            .filter(|(lsn, _)| Some(*lsn) == base_lsn)
            .map(|(_, check)| check);
        let mut r = replay(storage, indexes, removed, base, State::new(), None, early)?;
        r.report.took.checkpoint = checkpoint_took;
        Ok(r)
    });
    let Some((file, offset, why)) = damaged.first().cloned() else {
        return result;
    };
    // A damaged checkpoint is passed over only when an older one (or none) plus the log
    // still present gives a state at least as new as the damaged one's: otherwise records
    // it covered are gone, and the damage is what to report.
    let refused = LogError::Corrupt {
        file,
        offset,
        why: CorruptWhy::Checkpoint(why),
    };
    match result {
        Ok(mut r) => {
            let newest = damaged
                .iter()
                .filter_map(|(name, _, _)| checkpoint::checkpoint_lsn(name))
                .max()
                .unwrap_or(0);
            if r.next_lsn < newest {
                return Err(refused);
            }
            for (file, offset, why) in &damaged {
                tracing::warn!(file, offset, %why, "spool: passed over a damaged checkpoint (an older one and the log after it cover it)");
            }
            r.report.damaged_checkpoints = damaged;
            Ok(r)
        }
        Err(LogError::Corrupt {
            why: CorruptWhy::Missing { .. } | CorruptWhy::EventMissing { .. },
            ..
        }) => Err(refused),
        Err(e) => Err(e),
    }
}

/// Where a bounded replay ([`replay_until`]) stops: where the writer stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Until {
    /// The writer had applied every record before this lsn.
    pub lsn: u64,
    /// Its [`State::tail_segment`]: no later segment is read.
    pub segment: u64,
    /// Its [`State::tail_end`]: no more of that segment is read (None: all of it).
    pub end: Option<u64>,
}

impl Until {
    /// Where the writer whose state is `s` stands.
    pub fn of(s: &State) -> Until {
        Until {
            lsn: s.next_lsn(),
            segment: s.tail_segment(),
            end: s.tail_end(),
        }
    }

    /// The checkpoint a replay to here makes.
    pub fn at(&self) -> checkpoint::CheckpointAt {
        checkpoint::CheckpointAt {
            lsn: self.lsn,
            segment: self.segment,
        }
    }
}

/// The state at `until.lsn` (the writer has applied every record before it), rebuilt from
/// `base` (a checkpoint; none: `empty` and the whole log) and the segments from its own up
/// to the writer's tail segment, while the writer goes on appending. Of that tail segment
/// only what the writer had applied is read (a segment is tens of MiB, mostly not yet
/// written while the log is quiet).
///
/// This is how checkpoints are taken (see [`super::compaction`]): the state recovery would
/// rebuild, by recovery's own rules, with no lock on the writer's state. Records at or after
/// `until` are not looked at (the group the writer is writing may be half there), nothing
/// is removed, and the events of segments before the base's are not read again (recovery
/// checked them, and compaction reads them before it copies). Damage is refused as recovery
/// refuses it.
pub fn replay_until(
    storage: &dyn Storage,
    base: Option<checkpoint::Checkpoint>,
    empty: State,
    until: Until,
) -> Result<State, LogError> {
    let from = base.as_ref().map_or(0, |c| c.at.segment);
    let mut indexes: Vec<u64> = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?
        .iter()
        .filter_map(|n| segment::segment_index(n))
        .filter(|i| (from..=until.segment).contains(i))
        .collect();
    indexes.sort_unstable();
    let base = base.map(|c| (checkpoint::checkpoint_name(c.at.lsn), c));
    Ok(replay(storage, indexes, Vec::new(), base, empty, Some(until), None)?.state)
}

/// Applies the log after `base` (the checkpoint to start from, with its file name; none:
/// `empty` and the whole log) to its state, checks that every event still needed is where
/// the state says, and removes the `unused` files.
///
/// With `until` (see [`replay_until`]): stops before the first record at or after its lsn,
/// which must be reached; checks and removes nothing.
fn replay(
    storage: &dyn Storage,
    all_indexes: Vec<u64>,
    removed: Vec<String>,
    base: Option<(String, checkpoint::Checkpoint)>,
    empty: State,
    until: Option<Until>,
    early: Option<EarlyCheck<'_>>,
) -> Result<Recovered, LogError> {
    // The one segment read only in part, and how much of it.
    let started = Instant::now();
    let read_limit = until.and_then(|u| Some((u.segment, usize::try_from(u.end?).ok()?)));
    let until = until.map(|u| u.lsn);
    let mut report = RecoveryReport::default();
    let (mut state, at) = match base {
        Some((name, c)) => {
            report.checkpoint = Some(name);
            (c.state, Some(c.at))
        }
        None => (empty, None),
    };
    // Replay starts in the checkpoint's segment; the ones before hold only records the
    // checkpoint covers, and are read only for the events still needed there.
    let base_lsn = at.map_or(1, |a| a.lsn);
    let replay_from = at.map_or(0, |a| a.segment);
    let (old, indexes): (Vec<u64>, Vec<u64>) =
        all_indexes.into_iter().partition(|&i| i < replay_from);

    // First the headers, so each segment knows what the next valid one declares.
    let mut heads = Vec::with_capacity(indexes.len());
    for &index in &indexes {
        let name = segment::segment_name(index);
        let bytes = read_all(storage, &name, Some(SEGMENT_HEADER_LEN))?;
        heads.push(match segment::decode_segment_header(&bytes) {
            Ok(h) if h.index == index => Head::Valid(h),
            Ok(_) => Head::Bad(BadFrame::Segment),
            // Unused only if all of it is zeros: a zeroed header over written groups is
            // damage, not a spare to remove.
            Err(BadFrame::Zeros) => {
                if all_zeros(storage, &name)? {
                    Head::Unused
                } else {
                    Head::Bad(BadFrame::Zeros)
                }
            }
            Err(why) => Head::Bad(why),
        });
    }
    let used = heads
        .iter()
        .rposition(|h| !matches!(h, Head::Unused))
        .map_or(0, |i| i + 1);
    let spares = indexes[used..].to_vec();

    // The newest segment with a valid header. Segments after it have none (zeros, or a
    // header cut short): they are the torn tail, written by the last write (a failed group's
    // segment, a barrier in flight), never acknowledged, unless one holds more than one
    // valid group, which only acknowledged writes make.
    let last_valid = heads[..used]
        .iter()
        .rposition(|h| matches!(h, Head::Valid(_)));
    let tail_from = last_valid.map_or(0, |i| i + 1);
    for i in tail_from..used {
        let name = segment::segment_name(indexes[i]);
        let bytes = read_all(storage, &name, None)?;
        if segment::valid_groups(&bytes, indexes[i], 2) >= 2 {
            let why = match heads[i] {
                Head::Bad(why) => why,
                _ => BadFrame::Zeros,
            };
            return Err(corrupt(&name, 0, CorruptWhy::Frame(why)));
        }
        if report.torn.is_none() {
            let why = match heads[i] {
                Head::Bad(why) => why,
                _ => BadFrame::Zeros,
            };
            report.torn = Some((name, 0, why));
        }
    }

    // The lsn after the last record applied (or passed over, being below the checkpoint's);
    // None before the first valid segment.
    let mut applied_end: Option<u64> = None;
    // Where the last applied data ended: named when records are found missing after it.
    let mut last_end = (String::new(), 0u64);
    // Bounded: whether `until` was reached.
    let mut reached = until.is_some_and(|u| u <= base_lsn);
    // One buffer for every segment read whole (each is faulted in once, not per segment).
    let mut buf = Vec::new();
    'segments: for i in 0..tail_from {
        let name = segment::segment_name(indexes[i]);
        let next_valid = heads[i + 1..used].iter().find_map(|h| match h {
            Head::Valid(h) => Some(*h),
            _ => None,
        });
        // Records at or after `cut` are void: the next valid segment says so.
        let cut = next_valid
            .filter(SegmentHeader::tail_untrusted)
            .map(|h| h.void_from);
        let is_last = i + 1 == tail_from;
        let header = match heads[i] {
            Head::Valid(h) => h,
            Head::Unused | Head::Bad(_) if cut.is_some() => continue,
            Head::Unused => return Err(corrupt(&name, 0, CorruptWhy::Frame(BadFrame::Zeros))),
            Head::Bad(why) => return Err(corrupt(&name, 0, CorruptWhy::Frame(why))),
        };
        if let Some(end) = applied_end {
            let (expected, found) = if header.tail_untrusted() {
                (end, header.void_from)
            } else {
                (end, header.start_lsn)
            };
            if expected != found {
                let (file, offset) = &last_end;
                return Err(corrupt(
                    file,
                    *offset,
                    CorruptWhy::Missing { expected, found },
                ));
            }
        }
        if header.start_lsn < header.void_from {
            return Err(corrupt(
                &name,
                0,
                CorruptWhy::Missing {
                    expected: header.void_from,
                    found: header.start_lsn,
                },
            ));
        }
        if applied_end.is_none() {
            // The first segment replayed must hold the checkpoint's lsn (or start the log),
            // and be the checkpoint's own segment: records after it are there.
            let start = if header.tail_untrusted() {
                header.void_from
            } else {
                header.start_lsn
            };
            if start > base_lsn || (at.is_some_and(|a| a.lsn > 1) && indexes[i] != replay_from) {
                return Err(corrupt(
                    &name,
                    0,
                    CorruptWhy::Missing {
                        expected: base_lsn,
                        found: start,
                    },
                ));
            }
        }
        let end_of_applied = applied_end.get_or_insert(header.start_lsn);
        let limit = read_limit.and_then(|(s, n)| (s == indexes[i]).then_some(n));
        read_into(storage, &name, limit, &mut buf)?;
        let bytes = &buf[..];
        let SegmentScan::Used { groups, end, .. } = segment::scan(bytes, indexes[i]) else {
            // The header read a moment ago was valid: the file changed under us.
            return Err(corrupt(&name, 0, CorruptWhy::Frame(BadFrame::Magic)));
        };
        report.segments += 1;
        last_end = (name.clone(), SEGMENT_HEADER_LEN as u64);
        for found in groups {
            let GroupAt { offset, header: g } = found;
            match cut {
                Some(cut) if g.end_lsn() > cut => {
                    if g.first_lsn < cut {
                        return Err(corrupt(&name, offset, CorruptWhy::VoidInsideGroup(cut)));
                    }
                    report.void_records += u64::from(g.count);
                    continue;
                }
                _ => {}
            }
            if until.is_some_and(|u| g.first_lsn >= u) {
                reached = true;
                break 'segments;
            }
            // Checked by the scan.
            let group = found.group(bytes);
            for ((lsn, record), at) in group.records().zip(group.record_offsets()) {
                if lsn < base_lsn {
                    // The checkpoint holds its effect already.
                    continue;
                }
                if until.is_some_and(|u| lsn >= u) {
                    break;
                }
                let location = Location {
                    segment: indexes[i],
                    offset: offset + at as u64,
                    len: record.len() as u32,
                };
                let record = Record::decode(record)
                    .map_err(|e| corrupt(&name, location.offset, CorruptWhy::Record(e)))?;
                state.apply(lsn, location, &record);
                report.records += 1;
            }
            report.groups += 1;
            *end_of_applied = g.end_lsn();
            last_end.1 = offset + g.frame_len() as u64;
            if until.is_some_and(|u| g.end_lsn() >= u) {
                // What follows may be a group the writer is writing now.
                reached = true;
                break 'segments;
            }
        }
        if let ScanEnd::Bad {
            offset,
            why,
            valid_after,
        } = end
        {
            if is_last && valid_after.is_none() {
                // A torn group here comes before any torn segment after it.
                report.torn = Some((name, offset, why));
            } else if cut.is_none() || is_last {
                return Err(corrupt(&name, offset, CorruptWhy::Frame(why)));
            }
        }
    }

    if let Some(until) = until {
        if !reached {
            let (file, offset) = &last_end;
            return Err(corrupt(
                file,
                *offset,
                CorruptWhy::Missing {
                    expected: until,
                    found: applied_end.unwrap_or(base_lsn),
                },
            ));
        }
        return Ok(Recovered {
            state,
            report,
            next_segment: 0,
            next_lsn: until,
            checkpoint: at,
            spares: Vec::new(),
        });
    }
    if let Some(at) = at.filter(|a| a.lsn > 1) {
        match applied_end {
            None => {
                let name = segment::segment_name(at.segment);
                let found = 0;
                return Err(corrupt(
                    &name,
                    0,
                    CorruptWhy::Missing {
                        expected: at.lsn,
                        found,
                    },
                ));
            }
            Some(end) if end < at.lsn => {
                let (file, offset) = &last_end;
                return Err(corrupt(
                    file,
                    *offset,
                    CorruptWhy::Missing {
                        expected: at.lsn,
                        found: end,
                    },
                ));
            }
            Some(_) => {}
        }
    }
    let replayed: Vec<u64> = indexes[..tail_from].to_vec();
    report.took.replay = started.elapsed();
    let checked = Instant::now();
    check_events(storage, &state, &old, &replayed, early)?;
    report.took.check = checked.elapsed();

    if !removed.is_empty() {
        for name in &removed {
            storage
                .remove(name)
                .map_err(|e| LogError::io("remove", name.as_str(), e))?;
        }
        storage
            .sync_dir()
            .map_err(|e| LogError::io("sync", "the spool directory", e))?;
        report.removed = removed.len();
    }
    if let Some((file, offset, why)) = &report.torn {
        tracing::warn!(
            file,
            offset,
            why = why.describe(),
            "spool: cut off a torn last group (written at the crash, never acknowledged)"
        );
    }
    if report.void_records > 0 {
        tracing::info!(
            records = report.void_records,
            "spool: skipped records of groups that had failed before the restart"
        );
    }
    let next_lsn = applied_end.unwrap_or(base_lsn).max(base_lsn);
    let next_segment = indexes[..used]
        .last()
        .or(old.last())
        .map_or(1, |i| i + 1)
        .max(replay_from + 1);
    Ok(Recovered {
        state,
        report,
        next_segment,
        next_lsn,
        checkpoint: at,
        spares,
    })
}

/// Every event still needed must have its record where the state says. In a replayed
/// segment (read whole, every group checked) its segment must be one of them; in an older
/// one (not replayed), the segment is read (a window at a time, up to its last needed
/// record) and the record must be in a valid group, as an event of that seq (or its copy).
/// Catches a segment deleted, or damaged where a needed record lives.
///
/// Most of that reading was done beside the replay ([`EarlyCheck`], for the events the
/// checkpoint listed): an event it found needs nothing more. The others (none, unless the
/// early check failed somewhere or the log moved an event into an old segment) are checked
/// here, segment by segment; the error of the lowest segment is the one reported.
fn check_events(
    storage: &dyn Storage,
    state: &State,
    old: &[u64],
    replayed: &[u64],
    early: Option<EarlyCheck<'_>>,
) -> Result<(), LogError> {
    let found = early.map(EarlyCheck::join).unwrap_or_default();
    let first_replayed = replayed.first().copied().unwrap_or(u64::MAX);
    let mut unchecked: BTreeMap<u64, Vec<Needed>> = BTreeMap::new();
    for (seq, meta) in state.events() {
        let location = meta.location();
        let segment = location.segment;
        let missing = if segment >= first_replayed {
            replayed.binary_search(&segment).is_err()
        } else {
            // Not listed: the segment is gone. (The state's offsets fit 32 bits.)
            let listed = old.binary_search(&segment).is_ok();
            match u32::try_from(location.offset) {
                Ok(offset) if listed => {
                    let needed = Needed {
                        seq,
                        offset,
                        len: location.len,
                    };
                    if !found.get(&segment).is_some_and(|f| f.holds(needed)) {
                        unchecked.entry(segment).or_default().push(needed);
                    }
                    false
                }
                _ => true,
            }
        };
        if missing {
            let name = segment::segment_name(segment);
            return Err(corrupt(
                &name,
                location.offset,
                CorruptWhy::EventMissing { seq },
            ));
        }
    }
    drop(found);
    let mut unchecked: Vec<(u64, Vec<Needed>)> = unchecked.into_iter().collect();
    let results = on_threads(
        &mut unchecked,
        threads(0),
        |chunk: &mut [(u64, Vec<Needed>)]| -> Result<(), LogError> {
            for (segment, events) in chunk {
                check_segment(storage, *segment, events)?;
            }
            Ok(())
        },
    );
    results.into_iter().collect()
}

/// The threads to split reading over: one per core (at most four), less `busy`, at least one.
fn threads(busy: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .saturating_sub(busy)
        .max(1)
}

/// Runs `work` over `items` split into `threads` chunks, each on a thread of its own;
/// returns each chunk's result in order.
fn on_threads<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    work: impl Fn(&mut [T]) -> R + Sync,
) -> Vec<R> {
    let per = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = items
            .chunks_mut(per)
            .map(|chunk| scope.spawn(move || work(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The old segments' check, started as soon as the checkpoint is read, on the events it
/// lists there, while the log after it is replayed: most of an open's reading with a large
/// backlog, done on the cores the replay leaves free. The replay can only take events out
/// of the old segments (a new event, or a copy of one, is written after the checkpoint), so
/// what this finds is what [`check_events`] would look for, and it looks again only for
/// what this could not confirm.
pub(super) struct EarlyCheck<'scope> {
    workers: Vec<std::thread::ScopedJoinHandle<'scope, Vec<(u64, Checked)>>>,
}

/// What the early check found in one old segment.
struct Checked {
    /// Every event listed was found (else nothing is taken as found there).
    whole: bool,
    /// The events listed, by offset.
    events: Vec<Needed>,
}

impl Checked {
    /// `needed` was found where it is said to be.
    fn holds(&self, needed: Needed) -> bool {
        self.whole
            && self
                .events
                .binary_search_by_key(&needed.offset, |n| n.offset)
                .is_ok_and(|i| self.events[i] == needed)
    }
}

impl<'scope> EarlyCheck<'scope> {
    /// Starts checking, on threads of `scope`, the events `state` (a checkpoint's, which
    /// replays from segment `replay_from`) places in the segments of `indexes` before
    /// `replay_from`.
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        storage: &'env dyn Storage,
        state: &State,
        replay_from: u64,
        indexes: &[u64],
    ) -> EarlyCheck<'scope> {
        // Events come in seq order, mostly segment after segment.
        let mut lists: BTreeMap<u64, Vec<Needed>> = BTreeMap::new();
        let mut current: Option<(u64, Vec<Needed>)> = None;
        for (seq, meta) in state.events() {
            let location = meta.location();
            let segment = location.segment;
            let Ok(offset) = u32::try_from(location.offset) else {
                continue;
            };
            if segment >= replay_from || indexes.binary_search(&segment).is_err() {
                continue;
            }
            if current.as_ref().is_none_or(|(s, _)| *s != segment) {
                if let Some((s, list)) = current.take() {
                    lists.entry(s).or_default().extend(list);
                }
                current = Some((segment, lists.remove(&segment).unwrap_or_default()));
            }
            if let Some((_, list)) = &mut current {
                list.push(Needed {
                    seq,
                    offset,
                    len: location.len,
                });
            }
        }
        if let Some((s, list)) = current {
            lists.entry(s).or_default().extend(list);
        }
        let lists: Vec<(u64, Vec<Needed>)> = lists.into_iter().collect();
        // The replay keeps one core busy.
        let threads = threads(1);
        let per = lists.len().div_ceil(threads).max(1);
        let mut lists = lists.into_iter().peekable();
        let mut workers = Vec::new();
        while lists.peek().is_some() {
            let chunk: Vec<_> = lists.by_ref().take(per).collect();
            workers.push(scope.spawn(move || {
                chunk
                    .into_iter()
                    .map(|(segment, mut events)| {
                        let whole = check_segment(storage, segment, &mut events).is_ok();
                        (segment, Checked { whole, events })
                    })
                    .collect()
            }));
        }
        EarlyCheck { workers }
    }

    /// What the check found, by segment, once it is done.
    fn join(self) -> BTreeMap<u64, Checked> {
        self.workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }
}

/// Checks that each of `events` (sorted by offset in place) is a record of a valid group in
/// `segment` (its event record, or a copy of it), in order; stops at the first one missing.
fn check_segment(
    storage: &dyn Storage,
    segment: u64,
    events: &mut [Needed],
) -> Result<(), LogError> {
    // Both in offset order, walked together; the reading stops once every needed event
    // was found, or one was passed over (missing).
    if !events.is_sorted_by_key(|n| n.offset) {
        events.sort_unstable_by_key(|n| n.offset);
    }
    let mut needed = events.iter().peekable();
    let mut passed = None;
    reader::for_each_group(storage, segment, |offset, group| {
        for (seq, location, _) in group_events(group, offset, segment) {
            let at = u64::from;
            match needed.peek() {
                Some(n) if (at(n.offset), n.seq, n.len) == (location.offset, seq, location.len) => {
                    needed.next();
                }
                Some(n) if at(n.offset) <= location.offset => {
                    passed = Some(**n);
                    return Ok(false);
                }
                Some(_) => {}
                None => return Ok(false),
            }
        }
        Ok(true)
    })?;
    if let Some(n) = passed.or_else(|| needed.next().copied()) {
        return Err(corrupt(
            &segment::segment_name(segment),
            u64::from(n.offset),
            CorruptWhy::EventMissing { seq: n.seq },
        ));
    }
    Ok(())
}

/// A needed event's record in an old segment, as the state places it: 16 bytes, since a
/// restart with a large backlog lists every pending event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needed {
    seq: u64,
    offset: u32,
    len: u32,
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::compaction::{Maintenance, MaintenanceConfig};
    use super::super::record::EventRecord;
    use super::super::segment::{segment_name, GROUP_HEADER_LEN};
    use super::super::storage::{Fault, FaultOp, SegmentFile, SimDisk};
    use super::super::writer::{Writer, WriterConfig};
    use super::*;

    const SEGMENT: u64 = 1024;

    fn config() -> WriterConfig {
        WriterConfig {
            segment_size: SEGMENT,
            prepared_ahead: 1,
            enqueue_timeout: Duration::from_secs(5),
            rotate_timeout: Duration::from_secs(5),
            barrier_timeout: Duration::from_secs(5),
            prepare_retry: Duration::from_millis(1),
        }
    }

    /// A log of `n` events of 200 bytes each, one group each, on route 0: about four per
    /// 1 KiB segment. Returns the disk as a clean shutdown leaves it.
    fn log_of(n: usize) -> SimDisk {
        let disk = SimDisk::new(9);
        let w = Writer::start(Arc::new(disk.clone()), recover(&disk).unwrap(), config()).unwrap();
        append(&w, n);
        w.close();
        disk
    }

    fn pending(r: &Recovered) -> usize {
        r.state.route(0).map_or(0, |q| q.pending_len())
    }

    fn corrupt_at(result: Result<Recovered, LogError>) -> (String, u64, CorruptWhy) {
        match result {
            Err(LogError::Corrupt { file, offset, why }) => (file, offset, why),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_directory_opens_as_an_empty_log() {
        let r = recover(&SimDisk::new(1)).unwrap();
        assert_eq!(
            (r.next_lsn, r.next_segment, r.state.live_events()),
            (1, 1, 0)
        );
    }

    #[test]
    fn every_acknowledged_event_is_back_after_a_clean_shutdown() {
        let disk = log_of(20);
        let r = recover(&disk).unwrap();
        assert_eq!(pending(&r), 20);
        assert_eq!(r.next_lsn, 21);
        assert_eq!(r.report.torn, None);
        assert!(r.report.segments >= 5);
    }

    #[test]
    fn a_byte_flipped_in_a_sealed_segment_is_refused_naming_the_file_and_offset() {
        let disk = log_of(20);
        let name = segment_name(1);
        let at = (SEGMENT_HEADER_LEN + GROUP_HEADER_LEN + 30) as u64;
        let byte = disk.bytes(&name).unwrap()[at as usize];
        disk.corrupt(&name, at, &[byte ^ 0x01]);
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!(file, name);
        assert_eq!(
            offset, SEGMENT_HEADER_LEN as u64,
            "the group that holds the byte"
        );
        assert_eq!(why, CorruptWhy::Frame(BadFrame::Checksum));
        // The operator's message names both.
        let message = recover(&disk).unwrap_err().to_string();
        assert!(
            message.contains(&name) && message.contains("at byte 40"),
            "{message}"
        );
    }

    /// `disk`, whose file `name` claims to be 5 GiB long.
    struct Oversized {
        disk: SimDisk,
        name: String,
    }

    struct Claims5GiB(Arc<dyn SegmentFile>);

    impl SegmentFile for Claims5GiB {
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            self.0.write_at(buf, offset)
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.0.read_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.0.sync_data()
        }
        fn size(&self) -> io::Result<u64> {
            Ok(5 << 30)
        }
        fn zero_fill(&self, len: u64) -> io::Result<()> {
            self.0.zero_fill(len)
        }
    }

    impl Storage for Oversized {
        fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
            self.disk.create(name)
        }
        fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
            let file = self.disk.open(name)?;
            Ok(if name == self.name {
                Arc::new(Claims5GiB(file))
            } else {
                file
            })
        }
        fn list(&self) -> io::Result<Vec<String>> {
            self.disk.list()
        }
        fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            self.disk.rename(from, to)
        }
        fn remove(&self, name: &str) -> io::Result<()> {
            self.disk.remove(name)
        }
        fn sync_dir(&self) -> io::Result<()> {
            self.disk.sync_dir()
        }
    }

    #[test]
    fn a_segment_file_larger_than_hookfan_writes_is_refused_not_read() {
        let disk = log_of(20);
        let name = segment_name(2);
        let oversized = Oversized {
            disk,
            name: name.clone(),
        };
        let (file, offset, why) = corrupt_at(recover(&oversized));
        assert_eq!((file, offset), (name, 0));
        assert_eq!(why, CorruptWhy::Oversized(5 << 30));
    }

    #[test]
    fn a_byte_flipped_in_a_sealed_segments_header_is_refused() {
        let disk = log_of(20);
        let name = segment_name(2);
        disk.corrupt(&name, 17, &[0xee]);
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!((file, offset), (name, 0));
        assert_eq!(why, CorruptWhy::Frame(BadFrame::Checksum));
    }

    #[test]
    fn a_bad_group_in_the_newest_segment_with_a_valid_one_after_it_is_corruption_not_a_tear() {
        let disk = log_of(20);
        let names = disk.list().unwrap();
        let newest = names
            .iter()
            .filter_map(|n| segment::segment_index(n))
            .filter(|&i| {
                !disk
                    .bytes(&segment_name(i))
                    .unwrap()
                    .iter()
                    .all(|&b| b == 0)
            })
            .max()
            .unwrap();
        let name = segment_name(newest);
        let bytes = disk.bytes(&name).unwrap();
        let SegmentScan::Used { groups, .. } = segment::scan(&bytes, newest) else {
            panic!("used");
        };
        assert!(groups.len() >= 2, "the newest segment holds two groups");
        let at = groups[0].offset + GROUP_HEADER_LEN as u64 + 10;
        disk.corrupt(&name, at, &[bytes[at as usize] ^ 0x80]);
        let (file, offset, _) = corrupt_at(recover(&disk));
        assert_eq!((file, offset), (name, groups[0].offset));
    }

    #[test]
    fn a_torn_last_group_is_cut_and_counted_and_stays_cut_after_more_writes() {
        let disk = log_of(6);
        // Tear the newest segment's last group: keep its first 50 bytes.
        let r = recover(&disk).unwrap();
        let newest = r.next_segment - 1;
        let name = segment_name(newest);
        let bytes = disk.bytes(&name).unwrap();
        let SegmentScan::Used { groups, .. } = segment::scan(&bytes, newest) else {
            panic!("used");
        };
        let last = groups.last().unwrap();
        let tail = last.offset + 50;
        disk.corrupt(&name, tail, &vec![0; last.header.frame_len() - 50]);
        let r = recover(&disk).unwrap();
        assert_eq!(pending(&r), 5);
        assert_eq!(
            r.report.torn,
            Some((name.clone(), last.offset, BadFrame::Checksum))
        );

        // Writing goes on in a new segment; the cut tail is now in a sealed one.
        let w = Writer::start(Arc::new(disk.clone()), r, config()).unwrap();
        w.wait(&w.submit(&[Record::Delivered { route: 0, seq: 1 }]).unwrap())
            .unwrap();
        w.close();
        let r = recover(&disk).unwrap();
        assert_eq!(pending(&r), 4);
        assert_eq!(r.report.torn, None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Every byte of a sealed segment counts: header, records, padding, the zeros after.
        #[test]
        fn a_byte_changed_anywhere_in_a_sealed_segment_is_refused_naming_that_segment(
            segment_pick in 0usize..100,
            offset in 0u64..SEGMENT,
            xor in 1u8..=255,
        ) {
            let disk = log_of(20);
            let newest = recover(&disk).unwrap().next_segment - 1;
            // Sealed: every segment before the newest.
            let index = 1 + (segment_pick as u64 % (newest - 1));
            let name = segment_name(index);
            let byte = disk.bytes(&name).unwrap()[offset as usize];
            disk.corrupt(&name, offset, &[byte ^ xor]);
            match recover(&disk) {
                Err(LogError::Corrupt { file, offset: at, .. }) => {
                    proptest::prop_assert_eq!(&file, &name);
                    proptest::prop_assert!(at <= offset, "names {} for a change at {}", at, offset);
                }
                other => proptest::prop_assert!(false, "{:?}", other.map(|r| r.report)),
            }
        }
    }

    #[test]
    fn segments_whose_header_never_landed_after_the_newest_valid_one_are_a_torn_tail() {
        // A group failed in a fresh segment (nothing of it landed), then the barrier in the
        // next one was cut by the crash: a zeroed segment, then a torn header.
        let disk = log_of(6);
        let next = recover(&disk).unwrap().next_segment;
        for (index, bytes) in [(next, vec![0u8; 64]), (next + 1, b"HFSG\x01\x01".to_vec())] {
            let name = segment_name(index);
            // In place of the spare the last run prepared, if any.
            let _ = disk.remove(&name);
            let f = disk.create(&name).unwrap();
            f.zero_fill(SEGMENT).unwrap();
            f.write_at(&bytes, 0).unwrap();
            f.sync_data().unwrap();
        }
        disk.sync_dir().unwrap();
        let r = recover(&disk).unwrap();
        assert_eq!(pending(&r), 6);
        assert_eq!(
            r.report.torn,
            Some((segment_name(next), 0, BadFrame::Zeros))
        );
        // The writer goes on after them, and the next recovery accepts them before it.
        let w = Writer::start(Arc::new(disk.clone()), r, config()).unwrap();
        w.wait(&w.submit(&[Record::Delivered { route: 0, seq: 1 }]).unwrap())
            .unwrap();
        w.close();
        let r = recover(&disk).unwrap();
        assert_eq!((pending(&r), r.report.torn), (5, None));
    }

    #[test]
    fn a_newest_segment_whose_header_is_gone_but_holds_acknowledged_groups_is_refused() {
        let disk = log_of(20);
        let newest = recover(&disk).unwrap().next_segment - 1;
        let name = segment_name(newest);
        disk.corrupt(&name, 0, &[0; SEGMENT_HEADER_LEN]);
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!(
            (file, offset, why),
            (name, 0, CorruptWhy::Frame(BadFrame::Zeros))
        );
    }

    #[test]
    fn a_missing_sealed_segment_is_refused_as_missing_records() {
        let disk = log_of(20);
        disk.remove(&segment_name(2)).unwrap();
        let (file, _, why) = corrupt_at(recover(&disk));
        assert_eq!(file, segment_name(1));
        assert!(matches!(why, CorruptWhy::Missing { .. }), "{why:?}");
    }

    #[test]
    fn half_prepared_and_spare_segments_are_removed_at_open() {
        let disk = log_of(3);
        disk.create("00000000000000000099.seg.tmp").unwrap();
        disk.sync_dir().unwrap();
        let r = recover(&disk).unwrap();
        assert!(r.report.removed >= 1);
        let names = disk.list().unwrap();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        assert_eq!(pending(&r), 3);
    }

    /// A spare is told from a segment whose header is gone by a byte anywhere in it, read a
    /// window at a time.
    #[test]
    fn a_file_is_all_zeros_only_if_no_byte_in_any_window_is_set() {
        const MIB: u64 = 1 << 20;
        let disk = SimDisk::new(5);
        let f = disk.create("spare").unwrap();
        f.zero_fill(3 * MIB + 100).unwrap();
        assert!(all_zeros(&disk, "spare").unwrap());
        for at in [0, MIB - 1, MIB, 2 * MIB + 7, 3 * MIB + 99] {
            f.write_at(&[1], at).unwrap();
            assert!(!all_zeros(&disk, "spare").unwrap(), "a byte set at {at}");
            f.write_at(&[0], at).unwrap();
        }
        assert!(all_zeros(&disk, "spare").unwrap());
        let empty = disk.create("empty").unwrap();
        empty.zero_fill(0).unwrap();
        assert!(all_zeros(&disk, "empty").unwrap());
    }

    /// A restart writes first into the segment the last run prepared and never used, rather
    /// than preparing one again before its first write; spares it does not need (more than
    /// it keeps prepared, or of another size) are removed.
    #[test]
    fn a_restart_writes_into_the_spare_the_last_run_prepared_and_removes_the_others() {
        let disk = log_of(3);
        let r = recover(&disk).unwrap();
        let next = r.next_segment;
        for s in &r.spares {
            disk.remove(&segment_name(*s)).unwrap();
        }
        // Two in order (the writer keeps one prepared), then one of another size.
        for (index, size) in [
            (next, SEGMENT),
            (next + 1, SEGMENT),
            (next + 2, SEGMENT / 2),
        ] {
            let f = disk.create(&segment_name(index)).unwrap();
            f.zero_fill(size).unwrap();
            f.sync_data().unwrap();
        }
        disk.sync_dir().unwrap();
        let r = recover(&disk).unwrap();
        assert_eq!(r.spares, vec![next, next + 1, next + 2]);

        // No segment can be prepared meanwhile: the first write goes to the spare, or fails.
        disk.inject(FaultOp::Create, Fault::Io);
        let config = WriterConfig {
            rotate_timeout: Duration::from_millis(300),
            prepare_retry: Duration::from_secs(10),
            ..config()
        };
        let w = Writer::start(Arc::new(disk.clone()), r, config).unwrap();
        let names = disk.list().unwrap();
        assert!(names.contains(&segment_name(next)), "{names:?}");
        assert!(!names.contains(&segment_name(next + 1)), "{names:?}");
        assert!(!names.contains(&segment_name(next + 2)), "{names:?}");
        let seqs = append(&w, 1);
        w.close();
        let r = recover(&disk).unwrap();
        assert_eq!(r.state.event(seqs[0]).unwrap().location().segment, next);
        assert_eq!(pending(&r), 4);
    }

    /// A writer with maintenance on `disk`, from what recovery finds.
    fn open(disk: &SimDisk) -> (Writer, Maintenance) {
        let r = recover(disk).unwrap();
        let storage: Arc<dyn Storage> = Arc::new(disk.clone());
        let m = Maintenance::new(
            storage.clone(),
            r.checkpoint,
            MaintenanceConfig::for_segments(SEGMENT),
        );
        (Writer::start(storage, r, config()).unwrap(), m)
    }

    fn append(w: &Writer, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                let id = format!("id-{i}");
                let body = vec![b'x'; 200];
                let record = Record::Event(EventRecord {
                    webhook_id: Some(&id),
                    received_at_ms: 1,
                    api_key: None,
                    signature: "sig",
                    event_type: None,
                    path: None,
                    body: &body,
                    routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
                });
                let t = w.submit(&[record]).unwrap();
                w.wait(&t).unwrap();
                t.first_lsn
            })
            .collect()
    }

    fn deliver(w: &Writer, seq: u64) {
        w.wait(&w.submit(&[Record::Delivered { route: 0, seq }]).unwrap())
            .unwrap();
    }

    fn pending_seqs(r: &Recovered) -> Vec<u64> {
        r.state
            .route(0)
            .map_or(vec![], |q| q.pending().map(|p| p.1).collect())
    }

    fn checkpoints(disk: &SimDisk) -> Vec<String> {
        let mut names: Vec<String> = disk
            .list()
            .unwrap()
            .into_iter()
            .filter(|n| checkpoint::checkpoint_lsn(n).is_some())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_restart_replays_only_the_log_after_the_checkpoint() {
        let disk = SimDisk::new(21);
        let (w, mut m) = open(&disk);
        let seqs = append(&w, 20);
        let at = m.checkpoint(&w).unwrap().unwrap();
        for &seq in &seqs[..3] {
            deliver(&w, seq);
        }
        w.close();
        let r = recover(&disk).unwrap();
        assert_eq!(
            r.report.checkpoint,
            Some(checkpoint::checkpoint_name(at.lsn))
        );
        assert_eq!(r.report.records, 3, "only the deliveries after it");
        assert_eq!(pending_seqs(&r), seqs[3..].to_vec());
        assert_eq!(r.state.dedup_candidate("id-7").unwrap().seq, seqs[7]);
        // The same state as the whole log gives.
        disk.remove(&checkpoint::checkpoint_name(at.lsn)).unwrap();
        let whole = recover(&disk).unwrap();
        assert_eq!(whole.report.checkpoint, None);
        assert_eq!(pending_seqs(&whole), pending_seqs(&r));
        assert_eq!(whole.next_lsn, r.next_lsn);
    }

    /// A log whose early segments compaction deleted: 40 events, all but the last two
    /// delivered, maintenance rounds until two checkpoints stand and segments went.
    fn compacted() -> (SimDisk, Vec<u64>) {
        let disk = SimDisk::new(22);
        let (w, mut m) = open(&disk);
        let seqs = append(&w, 40);
        for &seq in &seqs[..38] {
            deliver(&w, seq);
        }
        w.wait(
            &w.submit(&[Record::ExpireIds {
                before_ms: u64::MAX,
                limit: 100,
            }])
            .unwrap(),
        )
        .unwrap();
        let mut deleted = 0;
        for _ in 0..4 {
            deleted += m.step(&w).unwrap().deleted;
        }
        assert!(deleted > 5, "{deleted} segments deleted");
        assert!(disk.open(&segment_name(1)).is_err());
        w.close();
        (disk, seqs)
    }

    #[test]
    fn a_damaged_newest_checkpoint_is_passed_over_when_the_older_one_and_the_log_cover_it() {
        let (disk, seqs) = compacted();
        let names = checkpoints(&disk);
        assert_eq!(names.len(), 2);
        let newest = names[1].clone();
        // Flipped, not overwritten: the body holds random fingerprint keys, so a fixed value
        // is already there one time in 256.
        let byte = disk.bytes(&newest).unwrap()[60];
        disk.corrupt(&newest, 60, &[byte ^ 0xff]);
        let r = recover(&disk).unwrap();
        assert_eq!(r.report.checkpoint.as_ref(), Some(&names[0]));
        assert_eq!(
            r.report.damaged_checkpoints,
            vec![(newest, 40, BadCheckpoint::Checksum)]
        );
        assert_eq!(pending_seqs(&r), seqs[38..].to_vec());
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_naming_it_when_the_log_it_covered_is_gone() {
        let (disk, _) = compacted();
        let names = checkpoints(&disk);
        for name in &names {
            let byte = disk.bytes(name).unwrap()[60];
            disk.corrupt(name, 60, &[byte ^ 0xff]);
        }
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!((file, offset), (names[1].clone(), 40));
        assert_eq!(why, CorruptWhy::Checkpoint(BadCheckpoint::Checksum));
        let message = recover(&disk).unwrap_err().to_string();
        assert!(
            message.contains(&names[1]) && message.contains("at byte 40"),
            "{message}"
        );
    }

    #[test]
    fn a_needed_event_in_a_segment_before_the_checkpoint_must_still_be_there_intact() {
        let disk = SimDisk::new(23);
        let (w, mut m) = open(&disk);
        let seqs = append(&w, 30);
        // The first event stays pending; the rest are delivered; replay starts well after it.
        for &seq in &seqs[1..] {
            deliver(&w, seq);
        }
        for _ in 0..3 {
            m.step(&w).unwrap();
        }
        w.close();
        let r = recover(&disk).unwrap();
        let location = r.state.event(seqs[0]).unwrap().location();
        assert_eq!(location.segment, 1);
        assert!(
            r.checkpoint.unwrap().segment > 1,
            "segment 1 is not replayed"
        );
        assert_eq!(pending_seqs(&r), vec![seqs[0]]);

        // A byte of its record flipped: its group no longer checks.
        let name = segment_name(1);
        let byte = disk.bytes(&name).unwrap()[location.offset as usize + 10];
        disk.corrupt(&name, location.offset + 10, &[byte ^ 1]);
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!((file.as_str(), offset), (name.as_str(), location.offset));
        assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });

        // Its segment gone.
        disk.remove(&name).unwrap();
        let (file, _, why) = corrupt_at(recover(&disk));
        assert_eq!(file, name);
        assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });
    }

    /// The old segments are checked against the checkpoint's events while the log is
    /// replayed; what the log delivered since is not needed, and damage there is no refusal.
    #[test]
    fn damage_in_an_old_segment_where_only_events_delivered_since_the_checkpoint_lived_is_no_refusal(
    ) {
        let disk = SimDisk::new(24);
        let (w, mut m) = open(&disk);
        let seqs = append(&w, 30);
        for &seq in &seqs[2..] {
            deliver(&w, seq);
        }
        for _ in 0..3 {
            m.step(&w).unwrap();
        }
        // Pending at the checkpoint, delivered after it, and its id forgotten (with every
        // other one): only the event still pending is needed.
        deliver(&w, seqs[1]);
        w.wait(
            &w.submit(&[Record::ExpireIds {
                before_ms: u64::MAX,
                limit: 100,
            }])
            .unwrap(),
        )
        .unwrap();
        w.close();
        let r = recover(&disk).unwrap();
        assert!(
            r.checkpoint.unwrap().segment > 1,
            "segment 1 is not replayed"
        );
        let location = |seq| r.state.event(seq).map(|m| m.location());
        assert_eq!(location(seqs[0]).unwrap().segment, 1);
        assert_eq!(
            location(seqs[1]),
            None,
            "delivered and forgotten: not needed"
        );
        assert_eq!(pending_seqs(&r), vec![seqs[0]]);

        // The record of the event delivered since, after the one still needed, damaged.
        let name = segment_name(1);
        let offset = disk
            .bytes(&name)
            .unwrap()
            .windows(b"id-1".len() + 1)
            .position(|w| w[..4] == *b"id-1" && !w[4].is_ascii_digit())
            .expect("the record of id-1") as u64;
        assert!(offset > location(seqs[0]).unwrap().offset);
        disk.corrupt(&name, offset, b"XX");
        let r = recover(&disk).unwrap();
        assert_eq!(pending_seqs(&r), vec![seqs[0]]);

        // Damage in the one still needed is refused as before.
        let at = r.state.event(seqs[0]).unwrap().location().offset;
        disk.corrupt(&name, at + 10, b"XX");
        let (file, offset, why) = corrupt_at(recover(&disk));
        assert_eq!((file.as_str(), offset), (name.as_str(), at));
        assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });
    }
}
