//! Opening a log directory: the newest valid checkpoint, then every valid group after it
//! applied, in order; a torn last group cut off, counted and logged; corruption refused with
//! the file and offset. The rules are in the log's module documentation ("Recovery",
//! "Checkpoints"); this file applies them.
//!
//! Reads one segment at a time (the whole file: a later step can stream it). Changes the
//! directory only to remove what was never used: half-written `.seg.tmp` and `.ckpt.tmp`
//! files and zero-filled segments after the last one written (the preparer makes new ones).
//! Segments before the checkpoint's are left to compaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod old_segments;

use old_segments::{check_events, EarlyCheck};

use super::checkpoint::{self, BadCheckpoint, CheckpointAt};
use super::record::Record;
use super::segment::{
    self, BadFrame, GroupAt, ScanEnd, SegmentHeader, SegmentScan, PREPARING_SUFFIX,
    SEGMENT_HEADER_LEN,
};
use super::state::{Location, State};
use super::storage::{SegmentFile, Storage};
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
    /// Segments whose records the state holds, read from the page cache as the last run
    /// left it: after a kill, some of it may never have been synced. The writer syncs them
    /// before it writes (see "Failure" in the log's documentation).
    pub replayed: Vec<u64>,
    /// The last write of the last run that recovery applied, in the newest of them:
    /// (segment, offset, the bytes recovery validated there). After a kill that followed
    /// its failed sync, its pages may be ones Linux marked clean without writing them (no
    /// sync saves those; the writer never writes after a failed sync, so no other write can
    /// be), and the writer writes them again before it syncs: these bytes, not what a
    /// second read would find (such pages may be evicted meanwhile).
    pub last_write: Option<(u64, u64, Vec<u8>)>,
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

/// Removes `names` (files no record needs) from the spool's directory, then syncs the
/// directory once; nothing to do for none.
pub(super) fn remove_files(storage: &dyn Storage, names: &[String]) -> Result<(), LogError> {
    if names.is_empty() {
        return Ok(());
    }
    for name in names {
        storage
            .remove(name)
            .map_err(|e| LogError::io("remove", name.as_str(), e))?;
    }
    storage
        .sync_dir()
        .map_err(|e| LogError::io("sync", "the spool directory", e))
}

/// What recovery starts before the replay, beside the checkpoint's decoding.
#[derive(Default)]
struct Ahead<'a> {
    /// The old segments' check ([`EarlyCheck`]), when it started from the checkpoint used.
    check: Option<EarlyCheck<'a>>,
    /// Segments found all zeros ([`trailing_zeros`]); the others with a zeroed header are
    /// checked in the replay.
    zeros: Vec<u64>,
}

/// The last segments of `indexes` whose header is zeros and which are all zeros, from the
/// newest back to the first that is not (the spares the last run prepared are the newest).
/// What cannot be read is left out: the replay reads it again and reports it.
fn trailing_zeros(storage: &dyn Storage, indexes: &[u64]) -> Vec<u64> {
    let mut zeros = Vec::new();
    for &index in indexes.iter().rev() {
        let name = segment::segment_name(index);
        let zero_header = read_all(storage, &name, Some(SEGMENT_HEADER_LEN))
            .is_ok_and(|h| segment::decode_segment_header(&h) == Err(BadFrame::Zeros));
        if !(zero_header && all_zeros(storage, &name).unwrap_or(false)) {
            break;
        }
        zeros.push(index);
    }
    zeros
}

/// Whether every byte of file `name` is zero: read a MiB at a time into one buffer (a
/// prepared segment is tens of MiB, and every open reads the spares the preparer left).
fn all_zeros(storage: &dyn Storage, name: &str) -> Result<bool, LogError> {
    const WINDOW: usize = 1 << 20;
    let (file, len) = open_segment(storage, name)?;
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

/// Opens segment file `name` and gives its size; one larger than any segment hookfan writes
/// (4 GiB) is refused, not read.
fn open_segment(
    storage: &dyn Storage,
    name: &str,
) -> Result<(Arc<dyn SegmentFile>, u64), LogError> {
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))?;
    if len > u64::from(u32::MAX) {
        return Err(corrupt(name, 0, CorruptWhy::Oversized(len)));
    }
    Ok((file, len))
}

/// [`read_all`] into `buf` (its allocation reused: reading many segments in a row faults in
/// one buffer's pages, not each one's).
fn read_into(
    storage: &dyn Storage,
    name: &str,
    limit: Option<usize>,
    buf: &mut Vec<u8>,
) -> Result<(), LogError> {
    let (file, len) = open_segment(storage, name)?;
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
        // The spares' zero check too: they are read from the disk (the preparer fills them
        // with direct I/O), tens of MiB that need not wait for the decoding.
        let spares = {
            let indexes = indexes.clone();
            scope.spawn(move || trailing_zeros(storage, &indexes))
        };
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
        let ahead = Ahead {
            check: early
                .filter(|(lsn, _)| Some(*lsn) == base_lsn)
                .map(|(_, check)| check),
            zeros: spares.join().unwrap_or_default(),
        };
        let mut r = replay(storage, indexes, removed, base, State::new(), None, ahead)?;
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
    let names = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?;
    let mut indexes = segment::indexes(&names);
    indexes.retain(|i| (from..=until.segment).contains(i));
    let base = base.map(|c| (checkpoint::checkpoint_name(c.at.lsn), c));
    let ahead = Ahead::default();
    Ok(replay(
        storage,
        indexes,
        Vec::new(),
        base,
        empty,
        Some(until),
        ahead,
    )?
    .state)
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
    ahead: Ahead<'_>,
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
                if ahead.zeros.contains(&index) || all_zeros(storage, &name)? {
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
    // The last group applied: its segment, and the bytes its write wrote (the header too,
    // for a segment's first group, written with it).
    let mut last_write: Option<(u64, u64, u64)> = None;
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
            let first = last_end.1 == SEGMENT_HEADER_LEN as u64;
            last_end.1 = offset + g.frame_len() as u64;
            last_write = Some((indexes[i], if first { 0 } else { offset }, last_end.1));
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
            replayed: Vec::new(),
            last_write: None,
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
    // The newest segment replayed is the last one read: `buf` holds it still.
    let last_write = last_write
        .filter(|(segment, _, _)| replayed.last() == Some(segment))
        .and_then(|(segment, from, to)| {
            let bytes = buf.get(from as usize..to as usize)?;
            Some((segment, from, bytes.to_vec()))
        });
    report.took.replay = started.elapsed();
    let checked = Instant::now();
    check_events(storage, &state, &old, &replayed, ahead.check)?;
    report.took.check = checked.elapsed();

    remove_files(storage, &removed)?;
    report.removed = removed.len();
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
        replayed,
        last_write,
    })
}

#[cfg(test)]
mod tests;
