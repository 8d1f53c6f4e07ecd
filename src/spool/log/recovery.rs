//! Opening a log directory: every valid group applied to a fresh [`State`], in order; a torn
//! last group cut off, counted and logged; corruption refused with the file and offset. The
//! rules are in the log's module documentation ("Recovery"); this file applies them.
//!
//! Reads one segment at a time (the whole file: a later step can stream it). Changes the
//! directory only to remove what was never used: half-prepared `.seg.tmp` files and
//! zero-filled segments after the last one written (the preparer makes new ones).

use super::record::Record;
use super::segment::{
    self, BadFrame, GroupAt, ScanEnd, SegmentHeader, SegmentScan, PREPARING_SUFFIX,
    SEGMENT_HEADER_LEN,
};
use super::state::{Location, State};
use super::storage::Storage;
use super::{CorruptWhy, LogError};

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Unused files removed (never-finished preparations, zero-filled spares).
    pub removed: usize,
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
}

enum Head {
    Unused,
    Bad(BadFrame),
    Valid(SegmentHeader),
}

fn read_all(storage: &dyn Storage, name: &str, limit: Option<usize>) -> Result<Vec<u8>, LogError> {
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))? as usize;
    let mut buf = vec![0; limit.map_or(len, |l| l.min(len))];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| LogError::io("read", name, e))?;
    buf.truncate(n);
    Ok(buf)
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
    let mut report = RecoveryReport::default();
    let names = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?;
    let mut removed = Vec::new();
    let mut indexes: Vec<u64> = Vec::new();
    for name in names {
        if name.ends_with(PREPARING_SUFFIX) {
            removed.push(name);
        } else if let Some(index) = segment::segment_index(&name) {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();

    // First the headers, so each segment knows what the next valid one declares.
    let mut heads = Vec::with_capacity(indexes.len());
    for &index in &indexes {
        let name = segment::segment_name(index);
        let bytes = read_all(storage, &name, Some(SEGMENT_HEADER_LEN))?;
        heads.push(match segment::decode_segment_header(&bytes) {
            Ok(h) if h.index == index => Head::Valid(h),
            Ok(_) => Head::Bad(BadFrame::Segment),
            Err(BadFrame::Zeros) => Head::Unused,
            Err(why) => Head::Bad(why),
        });
    }
    let used = heads
        .iter()
        .rposition(|h| !matches!(h, Head::Unused))
        .map_or(0, |i| i + 1);
    for &index in &indexes[used..] {
        removed.push(segment::segment_name(index));
    }

    let mut state = State::new();
    // The lsn after the last record applied; None before the first valid segment.
    let mut applied_end: Option<u64> = None;
    // Where the last applied data ended: named when records are found missing after it.
    let mut last_end = (String::new(), 0u64);
    for i in 0..used {
        let name = segment::segment_name(indexes[i]);
        let next_valid = heads[i + 1..used].iter().find_map(|h| match h {
            Head::Valid(h) => Some(*h),
            _ => None,
        });
        // Records at or after `cut` are void: the next valid segment says so.
        let cut = next_valid
            .filter(SegmentHeader::tail_untrusted)
            .map(|h| h.void_from);
        let is_last = i + 1 == used;
        let header = match heads[i] {
            Head::Valid(h) => h,
            Head::Unused | Head::Bad(_) if cut.is_some() => continue,
            Head::Bad(why) if is_last => {
                report.torn = Some((name, 0, why));
                continue;
            }
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
        let end_of_applied = applied_end.get_or_insert(header.start_lsn);
        let bytes = read_all(storage, &name, None)?;
        let SegmentScan::Used { groups, end, .. } = segment::scan(&bytes, indexes[i]) else {
            // The header read a moment ago was valid: the file changed under us.
            return Err(corrupt(&name, 0, CorruptWhy::Frame(BadFrame::Magic)));
        };
        report.segments += 1;
        last_end = (name.clone(), SEGMENT_HEADER_LEN as u64);
        for GroupAt { offset, header: g } in groups {
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
            let group = segment::decode_group(&bytes[offset as usize..], indexes[i])
                .map_err(|why| corrupt(&name, offset, CorruptWhy::Frame(why)))?;
            for ((lsn, record), at) in group.records().zip(group.record_offsets()) {
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
        }
        if let ScanEnd::Bad {
            offset,
            why,
            valid_after,
        } = end
        {
            if is_last && valid_after.is_none() {
                report.torn = Some((name, offset, why));
            } else if cut.is_none() || is_last {
                return Err(corrupt(&name, offset, CorruptWhy::Frame(why)));
            }
        }
    }

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
    let next_lsn = applied_end.unwrap_or(1);
    let next_segment = indexes[..used].last().map_or(1, |i| i + 1);
    Ok(Recovered {
        state,
        report,
        next_segment,
        next_lsn,
    })
}
