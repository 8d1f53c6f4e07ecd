//! `hookfan spool verify`: what a log directory holds and whether hookfan would open it,
//! without changing anything. Every checkpoint decoded, every segment scanned, then
//! recovery itself run over a read-only view of the directory ([`ReadOnlyDir`]), so the
//! verdict is exactly the one `hookfan serve` would reach, with the same error.
//!
//! Never here: a write, a creation, a removal or a rename in the directory (recovery's
//! removals of spare segments and `.tmp` files are only listed, as "would remove"); no
//! lock is taken, so it may run beside a live daemon (whose newest group may then read as
//! a torn tail: a group being written).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use super::checkpoint;
use super::recovery::recover;
use super::segment::{self, ScanEnd, SegmentScan};
use super::storage::{SegmentFile, Storage};
use super::LogError;

/// A log directory seen read-only: files are opened for reading only, creations and renames
/// fail, and removals are only remembered (recovery removes what was never used; verify
/// reports it instead).
pub struct ReadOnlyDir {
    dir: PathBuf,
    /// What recovery asked to remove, in order.
    would_remove: Mutex<Vec<String>>,
}

impl ReadOnlyDir {
    pub fn new(dir: &Path) -> ReadOnlyDir {
        ReadOnlyDir {
            dir: dir.to_path_buf(),
            would_remove: Mutex::new(Vec::new()),
        }
    }

    /// The files recovery would have removed.
    pub fn would_remove(&self) -> Vec<String> {
        self.would_remove
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "read-only view of the spool",
    )
}

impl Storage for ReadOnlyDir {
    fn create(&self, _name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        Err(read_only())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(Arc::new(ReadOnlyFile(File::open(self.dir.join(name))?)))
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn rename(&self, _from: &str, _to: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.would_remove
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(name.to_string());
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

struct ReadOnlyFile(File);

impl SegmentFile for ReadOnlyFile {
    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        super::storage::read_full_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        Err(read_only())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn zero_fill(&self, _len: u64) -> io::Result<()> {
        Err(read_only())
    }

    fn truncate(&self, _len: u64) -> io::Result<()> {
        Err(read_only())
    }
}

/// Reads all of `name` in `storage`.
pub(super) fn read_file(storage: &dyn Storage, name: &str) -> Result<Vec<u8>, LogError> {
    let file = storage
        .open(name)
        .map_err(|e| LogError::io("open", name, e))?;
    let len = file.size().map_err(|e| LogError::io("stat", name, e))? as usize;
    let mut buf = vec![0; len];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| LogError::io("read", name, e))?;
    buf.truncate(n);
    Ok(buf)
}

/// One checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    pub file: String,
    /// From its name.
    pub lsn: u64,
    /// The segment replay starts in (valid ones only).
    pub segment: Option<u64>,
    /// None: valid. Some: where and why it does not decode.
    pub damaged: Option<(u64, String)>,
}

/// How a segment's data ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentEnd {
    /// Zeros after the last valid group.
    Clean,
    /// Bytes at `offset` are not the next valid group.
    Bad {
        offset: u64,
        why: String,
        /// A valid group of this segment further on (proof the bad bytes were synced).
        valid_after: Option<u64>,
    },
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentStatus {
    /// Zero-filled, never written: a prepared spare.
    Spare,
    /// Its header is not valid.
    BadHeader { why: String },
    Used {
        start_lsn: u64,
        /// `TAIL_UNTRUSTED`: records of earlier segments at or after `void_from` are void.
        tail_untrusted: bool,
        void_from: u64,
        groups: usize,
        records: u64,
        /// Header and every valid group.
        bytes_used: u64,
        end: SegmentEnd,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentReport {
    pub file: String,
    pub index: u64,
    pub size: u64,
    pub status: SegmentStatus,
}

/// What a route holds after recovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteTotals {
    pub pending: u64,
    pub dead: u64,
}

/// What the log holds once recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// By route name (`#id` for a route whose name record is missing).
    pub routes: BTreeMap<String, RouteTotals>,
    /// Events still needed (pending, dead or remembered for their id).
    pub events: u64,
    /// Webhook ids the dedup window remembers.
    pub ids: u64,
    /// The lsn the next record would take.
    pub next_lsn: u64,
}

impl Totals {
    pub fn of(state: &super::State) -> Totals {
        let routes = state
            .routes()
            .map(|(id, q)| {
                let name = state
                    .route_name(id)
                    .map_or_else(|| format!("#{id}"), str::to_string);
                let totals = RouteTotals {
                    pending: q.pending_len() as u64,
                    dead: q.dead_len() as u64,
                };
                (name, totals)
            })
            .collect();
        Totals {
            routes,
            events: state.live_events() as u64,
            ids: state.remembered_ids() as u64,
            next_lsn: state.next_lsn(),
        }
    }
}

/// What recovery concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// hookfan opens it.
    Opens {
        totals: Totals,
        /// The checkpoint the state starts from.
        checkpoint: Option<String>,
        /// Damaged checkpoints recovery passes over: (file, offset, why).
        passed_over: Vec<(String, u64, String)>,
        /// The torn last group that would be cut: (file, offset, why).
        torn: Option<(String, u64, String)>,
        /// Records void (a later segment says so).
        void_records: u64,
        /// Files recovery would remove (never used).
        would_remove: Vec<String>,
        /// Zero-filled segments after the last one used, which recovery keeps: the writer
        /// takes them as its next segments (those of the configured size; it removes others).
        kept_spares: Vec<String>,
    },
    /// hookfan refuses it: the error it would give, and the file and offset named when it
    /// is corruption.
    Refused {
        error: String,
        file: Option<String>,
        offset: Option<u64>,
    },
}

/// `hookfan spool verify`'s report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub dir: PathBuf,
    /// False: no log there yet (hookfan would start an empty one).
    pub exists: bool,
    pub checkpoints: Vec<CheckpointReport>,
    pub segments: Vec<SegmentReport>,
    /// Files that are neither (`LOCK`, `.tmp` files, anything else).
    pub other_files: Vec<String>,
    pub verdict: Verdict,
}

impl VerifyReport {
    /// Whether hookfan would open the log.
    pub fn opens(&self) -> bool {
        matches!(self.verdict, Verdict::Opens { .. })
    }
}

/// Looks at the log in `dir` (`<data_dir>/spool`) without changing anything.
pub fn verify(dir: &Path) -> VerifyReport {
    if !dir.is_dir() {
        return VerifyReport {
            dir: dir.to_path_buf(),
            exists: false,
            checkpoints: Vec::new(),
            segments: Vec::new(),
            other_files: Vec::new(),
            verdict: Verdict::Opens {
                totals: Totals {
                    next_lsn: 1,
                    ..Totals::default()
                },
                checkpoint: None,
                passed_over: Vec::new(),
                torn: None,
                void_records: 0,
                would_remove: Vec::new(),
                kept_spares: Vec::new(),
            },
        };
    }
    let storage = ReadOnlyDir::new(dir);
    let mut names = storage.list().unwrap_or_default();
    names.sort();
    let mut checkpoints = Vec::new();
    let mut segments = Vec::new();
    let mut other_files = Vec::new();
    for name in names {
        if let Some(lsn) = checkpoint::checkpoint_lsn(&name) {
            checkpoints.push(look_at_checkpoint(&storage, name, lsn));
        } else if let Some(index) = segment::segment_index(&name) {
            segments.push(look_at_segment(&storage, name, index));
        } else {
            other_files.push(name);
        }
    }
    let verdict = match recover(&storage) {
        Ok(r) => Verdict::Opens {
            totals: Totals::of(&r.state),
            checkpoint: r.report.checkpoint,
            passed_over: r
                .report
                .damaged_checkpoints
                .into_iter()
                .map(|(f, o, why)| (f, o, why.to_string()))
                .collect(),
            torn: r
                .report
                .torn
                .map(|(f, o, why)| (f, o, why.describe().to_string())),
            void_records: r.report.void_records,
            would_remove: storage.would_remove(),
            kept_spares: r.spares.iter().map(|&i| segment::segment_name(i)).collect(),
        },
        Err(e) => {
            let (file, offset) = match &e {
                LogError::Corrupt { file, offset, .. } => (Some(file.clone()), Some(*offset)),
                _ => (None, None),
            };
            Verdict::Refused {
                error: e.to_string(),
                file,
                offset,
            }
        }
    };
    VerifyReport {
        dir: dir.to_path_buf(),
        exists: true,
        checkpoints,
        segments,
        other_files,
        verdict,
    }
}

fn look_at_checkpoint(storage: &dyn Storage, file: String, lsn: u64) -> CheckpointReport {
    let (segment, damaged) = match read_file(storage, &file) {
        Err(e) => (None, Some((0, e.to_string()))),
        Ok(bytes) => match checkpoint::decode(&bytes) {
            Ok(c) if c.at.lsn == lsn => (Some(c.at.segment), None),
            Ok(_) => (None, Some((0, checkpoint::BadCheckpoint::Name.to_string()))),
            Err((offset, why)) => (None, Some((offset, why.to_string()))),
        },
    };
    CheckpointReport {
        file,
        lsn,
        segment,
        damaged,
    }
}

fn look_at_segment(storage: &dyn Storage, file: String, index: u64) -> SegmentReport {
    let bytes = match read_file(storage, &file) {
        Ok(bytes) => bytes,
        Err(e) => {
            return SegmentReport {
                file,
                index,
                size: 0,
                status: SegmentStatus::BadHeader { why: e.to_string() },
            }
        }
    };
    let status = match segment::scan(&bytes, index) {
        SegmentScan::Unused if bytes.iter().all(|&b| b == 0) => SegmentStatus::Spare,
        SegmentScan::Unused => SegmentStatus::BadHeader {
            why: segment::BadFrame::Zeros.describe().to_string(),
        },
        SegmentScan::BadHeader(why) => SegmentStatus::BadHeader {
            why: why.describe().to_string(),
        },
        SegmentScan::Used {
            header,
            groups,
            end,
        } => SegmentStatus::Used {
            start_lsn: header.start_lsn,
            tail_untrusted: header.tail_untrusted(),
            void_from: header.void_from,
            groups: groups.len(),
            records: groups.iter().map(|g| u64::from(g.header.count)).sum(),
            bytes_used: groups
                .last()
                .map_or(segment::SEGMENT_HEADER_LEN as u64, |g| {
                    g.offset + g.header.frame_len() as u64
                }),
            end: match end {
                ScanEnd::Clean { .. } => SegmentEnd::Clean,
                ScanEnd::Bad {
                    offset,
                    why,
                    valid_after,
                } => SegmentEnd::Bad {
                    offset,
                    why: why.describe().to_string(),
                    valid_after,
                },
            },
        },
    };
    SegmentReport {
        file,
        index,
        size: bytes.len() as u64,
        status,
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "spool {}", self.dir.display())?;
        if !self.exists {
            return writeln!(
                f,
                "no log here yet: hookfan starts an empty one (nothing to verify)"
            );
        }
        let (refused_file, refused_offset) = match &self.verdict {
            Verdict::Refused { file, offset, .. } => (file.as_deref(), *offset),
            Verdict::Opens { .. } => (None, None),
        };
        let torn = match &self.verdict {
            Verdict::Opens { torn, .. } => torn.as_ref(),
            Verdict::Refused { .. } => None,
        };
        writeln!(f, "checkpoints: {}", self.checkpoints.len())?;
        for c in &self.checkpoints {
            match (&c.damaged, c.segment) {
                (None, Some(segment)) => writeln!(
                    f,
                    "  {}  lsn {}  replay from segment {}  valid",
                    c.file, c.lsn, segment
                )?,
                (Some((offset, why)), _) => {
                    let verdict = if refused_file == Some(c.file.as_str()) {
                        "REFUSED"
                    } else {
                        "passed over (an older one and the log cover it)"
                    };
                    writeln!(
                        f,
                        "  {}  lsn {}  DAMAGED at byte {offset}: {why}; {verdict}",
                        c.file, c.lsn
                    )?
                }
                (None, None) => writeln!(f, "  {}  lsn {}", c.file, c.lsn)?,
            }
        }
        writeln!(f, "segments: {}", self.segments.len())?;
        for s in &self.segments {
            let refused_here = refused_file == Some(s.file.as_str());
            let line = match &s.status {
                SegmentStatus::Spare => "spare (zero-filled, never written)".to_string(),
                SegmentStatus::BadHeader { why } => format!("header not valid: {why}"),
                SegmentStatus::Used {
                    start_lsn,
                    tail_untrusted,
                    void_from,
                    groups,
                    records,
                    bytes_used,
                    end,
                } => {
                    let mut line = format!(
                        "start lsn {start_lsn}  {groups} groups  {records} records  {bytes_used} of {} bytes used",
                        s.size
                    );
                    if *tail_untrusted && void_from < start_lsn {
                        line += &format!(
                            "  (records {void_from}..={} of earlier segments are void: failed writes)",
                            start_lsn - 1
                        );
                    }
                    match end {
                        SegmentEnd::Clean => line += "  clean end",
                        SegmentEnd::Bad {
                            offset,
                            why,
                            valid_after,
                        } => {
                            line += &format!("  bad bytes at {offset}: {why}");
                            if let Some(after) = valid_after {
                                line += &format!(" (a valid group follows at {after})");
                            }
                            if torn.is_some_and(|t| t.0 == s.file) {
                                line += "; a torn tail, cut at open";
                            } else if !refused_here {
                                line += "; passed over at open (void, or before the checkpoint)";
                            }
                        }
                    }
                    line
                }
            };
            write!(f, "  {}  {line}", s.file)?;
            if refused_here {
                write!(
                    f,
                    "  REFUSED at byte {}",
                    refused_offset.unwrap_or_default()
                )?;
            }
            writeln!(f)?;
        }
        if !self.other_files.is_empty() {
            writeln!(f, "other files: {}", self.other_files.join(", "))?;
        }
        match &self.verdict {
            Verdict::Opens {
                totals,
                checkpoint,
                passed_over,
                torn,
                void_records,
                would_remove,
                kept_spares,
            } => {
                writeln!(
                    f,
                    "recovery: hookfan opens this log (from {})",
                    checkpoint.as_deref().unwrap_or("the start of the log")
                )?;
                for (file, offset, why) in passed_over {
                    writeln!(
                        f,
                        "  passes over damaged checkpoint {file} (byte {offset}: {why})"
                    )?;
                }
                if let Some((file, offset, why)) = torn {
                    writeln!(f, "  cuts a torn last group in {file} at byte {offset} ({why}): it was never acknowledged; if a hookfan is running on this directory it may be the group being written")?;
                }
                if *void_records > 0 {
                    writeln!(f, "  skips {void_records} void records (failed writes)")?;
                }
                if !would_remove.is_empty() {
                    writeln!(
                        f,
                        "  would remove unused files: {}",
                        would_remove.join(", ")
                    )?;
                }
                if !kept_spares.is_empty() {
                    writeln!(
                        f,
                        "  keeps {} spare segment(s) for the writer's next: {}",
                        kept_spares.len(),
                        kept_spares.join(", ")
                    )?;
                }
                writeln!(
                    f,
                    "totals: {} events kept, {} webhook ids remembered, next lsn {}",
                    totals.events, totals.ids, totals.next_lsn
                )?;
                for (route, t) in &totals.routes {
                    writeln!(
                        f,
                        "  route {route}: {} pending, {} dead letters",
                        t.pending, t.dead
                    )?;
                }
                Ok(())
            }
            Verdict::Refused { error, file, .. } => {
                writeln!(f, "recovery: REFUSED: {error}")?;
                if file.is_none() {
                    writeln!(f, "(if a hookfan is running on this directory, a file it removed meanwhile reads as missing: run verify again)")?;
                }
                writeln!(f, "run `hookfan spool repair` (with hookfan stopped) to keep every intact record and report what could not be kept")
            }
        }
    }
}

#[cfg(test)]
mod tests;
