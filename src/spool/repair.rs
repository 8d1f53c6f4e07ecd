//! `hookfan spool repair`: rebuilds a log that recovery refuses, keeping every intact
//! record, and says what it could not keep. Never silent: every damaged region, every lsn
//! range lost and every event lost (with its webhook id where the damaged bytes still show
//! it) goes into a report file, and the old directory is kept beside the new one.
//!
//! How: ([`salvage`]) the newest checkpoint that decodes is the starting state (damaged ones
//! are listed and ignored); every segment is read, and every group frame whose checksum
//! holds is kept, skipping damaged bytes by looking for the next group magic at each 8-byte
//! boundary (the same resynchronisation recovery's scan uses, but going on after it);
//! records after the checkpoint are applied in lsn order ([`State::apply`] is total, so a
//! record about an event that was lost changes nothing, and is listed). Records a later
//! segment declares void stay void. An event compaction copied forward whose original record
//! was lost comes back from its copy. Then ([`repair`]) the state is written as a fresh log
//! through the log's own writer (routes, each event with its queues' due times, then its
//! retry, hold and dead-letter records) into `<data_dir>/spool.repair/`, read back and
//! compared, and only then swapped in: `spool/` renamed to `spool.corrupt-<secs>`,
//! `spool.repair/` to `spool/`, the data dir synced after each.
//!
//! Runs only with the directory to itself: it takes the log's `LOCK` as a running hookfan
//! does, and refuses when one holds it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::checkpoint;
use super::facade::{DIR_NAME, LOCK_NAME};
use super::reader::read_record;
use super::record::{EventRecord, Record, RouteDue, RouteId};
use super::recovery::recover;
use super::segment::{
    self, BadFrame, SegmentHeader, ALIGN, GROUP_HEADER_LEN, GROUP_MAGIC, RECORD_LEN_BYTES,
    SEGMENT_HEADER_LEN,
};
use super::state::{Location, State};
use super::storage::{RealDisk, Storage};
use super::verify::{read_file, ReadOnlyDir, Totals};
use super::writer::{Ticket, Writer, WriterConfig};
use super::LogError;

/// Where the new log is built, inside the data dir, before it replaces `spool/`.
pub const REPAIR_DIR_NAME: &str = "spool.repair";

/// Written (and synced) into `spool.repair/` once the new log is complete and checked, just
/// before the swap; removed after it. With no `spool/` beside it, the swap was cut short
/// between its two renames, and the repaired log is the one to use ([`finish_interrupted`]).
pub const COMPLETE_MARKER: &str = "REPAIRED";

/// What repair can fail on. The old log is left in place in every case.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error("no spool log at {0}: nothing to repair")]
    NoLog(PathBuf),
    #[error("the spool {0} is in use by a running hookfan: stop it first (repair needs the directory to itself)")]
    InUse(PathBuf),
    #[error("repair could not {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("repair: {0}")]
    Log(#[from] LogError),
    /// The new log did not read back as it was written (a bug, or the disk): nothing was
    /// swapped.
    #[error("the repaired log in {dir} does not read back as written ({why}); the old log is left in place")]
    Mismatch { dir: PathBuf, why: String },
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RepairError {
    let path = path.to_path_buf();
    move |source| RepairError::Io { op, path, source }
}

mod salvage;

use salvage::route_name;
pub use salvage::{salvage, Damage, LostEvent, Salvage};

/// How one event's routes hold it.
enum Held<'s> {
    Pending {
        due: u64,
        entry: &'s super::state::Entry,
    },
    Dead(&'s super::state::DeadEntry),
}

/// Writes what `salvage` kept as a fresh log in `dir` (empty), reading event records from
/// `old`; returns what the new log should hold.
fn write_log(
    dir: &Path,
    old: &dyn Storage,
    salvage: &Salvage,
    config: WriterConfig,
) -> Result<Totals, RepairError> {
    let state = &salvage.state;
    let lost: HashSet<u64> = salvage.lost_events.iter().map(|e| e.seq).collect();
    let mut held: BTreeMap<u64, Vec<(RouteId, Held<'_>)>> = BTreeMap::new();
    for (id, q) in state.routes() {
        for (due, seq, entry) in q.pending() {
            held.entry(seq)
                .or_default()
                .push((id, Held::Pending { due, entry }));
        }
        for (seq, dead) in q.dead() {
            held.entry(seq).or_default().push((id, Held::Dead(dead)));
        }
    }

    let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(dir).map_err(io_error("create", dir))?);
    let writer = Writer::start(storage.clone(), recover(&*storage)?, config)?;
    let mut last: Option<Ticket> = None;
    let mut names: BTreeMap<RouteId, String> = state
        .route_names()
        .map(|(id, name)| (id, name.to_string()))
        .collect();
    for id in &salvage.unnamed_routes {
        names.insert(*id, route_name(state, *id));
    }
    let routes: Vec<Record<'_>> = names
        .iter()
        .map(|(&id, name)| Record::Route { id, name })
        .collect();
    if !routes.is_empty() {
        submit(&writer, &mut last, &routes)?;
    }
    let mut expected = Totals::default();
    for (seq, meta) in state.events() {
        if lost.contains(&seq) {
            continue;
        }
        let bytes = read_record(old, &meta.location())?;
        let Ok(Record::Event(e)) = Record::decode(&bytes) else {
            return Err(RepairError::Mismatch {
                dir: dir.to_path_buf(),
                why: format!("event {seq}'s record does not read back as an event"),
            });
        };
        let queues = held.remove(&seq).unwrap_or_default();
        // Each route's message group comes along, so FIFO holds still block only it.
        let dues: Vec<RouteDue> = queues
            .iter()
            .map(|(route, h)| match h {
                Held::Pending { due, entry } => RouteDue {
                    route: *route,
                    due_ms: *due,
                    group: entry.group,
                },
                Held::Dead(dead) => RouteDue {
                    route: *route,
                    due_ms: e.received_at_ms,
                    group: dead.group,
                },
            })
            .collect();
        let mut records = vec![Record::Event(EventRecord {
            // An event kept only for its id needs no body.
            body: if dues.is_empty() { &[] } else { e.body },
            routes: dues.into(),
            ..e
        })];
        for (route, h) in &queues {
            let name = route_name(state, *route);
            let totals = expected.routes.entry(name).or_default();
            match h {
                Held::Pending { due, entry } => {
                    totals.pending += 1;
                    let error = entry.last_error.as_deref().unwrap_or("");
                    if entry.not_before_ms > 0 {
                        records.push(Record::Hold {
                            route: *route,
                            seq: 0,
                            not_before_ms: entry.not_before_ms,
                            attempts: entry.attempts,
                            error,
                        });
                    } else if entry.attempts > 0 || entry.last_error.is_some() {
                        records.push(Record::Retry {
                            route: *route,
                            seq: 0,
                            due_ms: *due,
                            attempts: entry.attempts,
                            error,
                        });
                    }
                }
                Held::Dead(dead) => {
                    totals.dead += 1;
                    records.push(Record::Dead {
                        route: *route,
                        seq: 0,
                        attempts: dead.attempts,
                        error: &dead.error,
                        dead_at_ms: dead.dead_at_ms,
                    });
                }
            }
        }
        if queues.is_empty() && e.webhook_id.is_none() {
            continue; // nothing needs it (cannot happen: the state keeps only needed events)
        }
        // The queue records name the event by its new seq: the lsn its record gets, the
        // one after the previous submission's (this is the only submitter), checked.
        let new_seq = last.map_or_else(|| writer.with_state(State::next_lsn), |t| t.end_lsn);
        for r in &mut records[1..] {
            set_seq(r, new_seq);
        }
        // One submission (all or nothing); one too large for a group (an event that nearly
        // filled an old segment, plus its queue records) goes as two.
        let ticket = match submit(&writer, &mut last, &records) {
            Err(RepairError::Log(LogError::TooLarge { .. })) => {
                let ticket = submit(&writer, &mut last, &records[..1])?;
                if records.len() > 1 {
                    submit(&writer, &mut last, &records[1..])?;
                }
                ticket
            }
            submitted => submitted?,
        };
        if ticket.first_lsn != new_seq {
            return Err(RepairError::Mismatch {
                dir: dir.to_path_buf(),
                why: format!(
                    "event {seq} was given lsn {} where {new_seq} was expected",
                    ticket.first_lsn
                ),
            });
        }
        expected.events += 1;
    }
    if let Some(t) = &last {
        writer.wait(t)?;
    }
    writer.close();
    storage.sync_dir().map_err(io_error("sync", dir))?;
    Ok(expected)
}

/// Submits `records` to `writer`; while the group being filled is full, waits for the
/// previous submission (`last`) to be durable and tries again.
fn submit(
    writer: &Writer,
    last: &mut Option<Ticket>,
    records: &[Record<'_>],
) -> Result<Ticket, RepairError> {
    loop {
        match writer.submit(records) {
            Ok(t) => {
                *last = Some(t);
                return Ok(t);
            }
            Err(LogError::Busy) => {
                if let Some(t) = last {
                    writer.wait(t)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn set_seq(record: &mut Record<'_>, new: u64) {
    match record {
        Record::Retry { seq, .. } | Record::Hold { seq, .. } | Record::Dead { seq, .. } => {
            *seq = new;
        }
        _ => {}
    }
}

/// What a repair did.
#[derive(Debug)]
pub struct Repaired {
    pub salvage: Salvage,
    /// What the new log holds.
    pub kept: Totals,
    /// Where the old log went.
    pub moved_to: PathBuf,
    pub report_file: PathBuf,
    /// The report's text (also in `report_file`).
    pub report: String,
}

/// Takes the log directory's lock as a running hookfan does; fails when one holds it.
fn lock(dir: &Path) -> Result<File, RepairError> {
    let path = dir.join(LOCK_NAME);
    // Not truncated: an existing lock file is left as it is.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RepairError::InUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error("lock", &path)(e)),
    }
}

/// Finishes a repair whose swap was cut short (a crash between its two renames: the old log
/// already moved aside, the repaired one not yet in its place): with no `spool/` in
/// `data_dir` and a `spool.repair/` holding [`COMPLETE_MARKER`], the repaired log becomes
/// `spool/` (the data dir synced, the marker removed). Returns whether it did. Called by
/// `serve` before it opens the log and by `repair`, so the repaired log is never passed
/// over for an empty one.
pub fn finish_interrupted(data_dir: &Path) -> io::Result<bool> {
    let dir = data_dir.join(DIR_NAME);
    let new_dir = data_dir.join(REPAIR_DIR_NAME);
    if dir.try_exists()? || !new_dir.join(COMPLETE_MARKER).try_exists()? {
        return Ok(false);
    }
    std::fs::rename(&new_dir, &dir)?;
    File::open(data_dir)?.sync_all()?;
    std::fs::remove_file(dir.join(COMPLETE_MARKER))?;
    File::open(&dir)?.sync_all()?;
    tracing::warn!(from = %new_dir.display(), to = %dir.display(), "spool: finished a repair cut short before its swap; the repaired log is now the spool");
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), RepairError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_error("sync", dir))
}

/// The new log's writer settings for the log in `dir`: segments of the size its own are
/// (the size the daemon that wrote it uses), the defaults otherwise.
pub fn writer_config_like(dir: &Path) -> WriterConfig {
    let default = WriterConfig::default();
    let largest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| segment::segment_index(&e.file_name().to_string_lossy()).is_some())
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max();
    let config = WriterConfig {
        segment_size: largest.unwrap_or(default.segment_size),
        prepared_ahead: 1,
        ..default.clone()
    };
    match config.validate() {
        Ok(()) => config,
        Err(_) => default,
    }
}

/// Repairs the log in `<data_dir>/spool/` (see the module documentation). `config`: the
/// new log's writer settings ([`writer_config_like`] the old log, or small segments in
/// tests).
pub fn repair(data_dir: &Path, config: WriterConfig) -> Result<Repaired, RepairError> {
    let dir = data_dir.join(DIR_NAME);
    // A swap cut short is finished first: then the repaired log is the one repaired again.
    finish_interrupted(data_dir).map_err(io_error("finish the swap of", &dir))?;
    if !dir.is_dir() {
        return Err(RepairError::NoLog(dir));
    }
    let _old_lock = lock(&dir)?;
    let new_dir = data_dir.join(REPAIR_DIR_NAME);
    if new_dir.exists() {
        // Left by a repair that stopped before its swap (the old log is still `spool/`).
        std::fs::remove_dir_all(&new_dir).map_err(io_error("remove", &new_dir))?;
    }
    let old = ReadOnlyDir::new(&dir);
    let salvage = salvage(&old)?;

    std::fs::create_dir(&new_dir).map_err(io_error("create", &new_dir))?;
    let _new_lock = lock(&new_dir)?;
    let expected = write_log(&new_dir, &old, &salvage, config)?;
    let reread = recover(&ReadOnlyDir::new(&new_dir))?;
    let kept = Totals::of(&reread.state);
    if (&kept.routes, kept.events) != (&expected.routes, expected.events) {
        return Err(RepairError::Mismatch {
            dir: new_dir,
            why: format!(
                "expected {} events and {:?}, read {} and {:?}",
                expected.events, expected.routes, kept.events, kept.routes
            ),
        });
    }

    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Unused names (a second repair in the same second gets `-2`, ...).
    let (moved_to, report_file) = (1..)
        .map(|n| {
            let at = if n == 1 {
                format!("{secs}")
            } else {
                format!("{secs}-{n}")
            };
            (
                data_dir.join(format!("{DIR_NAME}.corrupt-{at}")),
                data_dir.join(format!("spool-repair-{at}.txt")),
            )
        })
        .find(|(moved_to, report)| !moved_to.exists() && !report.exists())
        .expect("an unused name");
    let report = render(&salvage, &kept, &dir, &moved_to);
    let file = File::create(&report_file).map_err(io_error("create", &report_file))?;
    io::Write::write_all(&mut &file, report.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &report_file))?;
    sync_dir(data_dir)?;
    // From the marker on, the new log is the one to use, even if the swap is cut short.
    let marker = new_dir.join(COMPLETE_MARKER);
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io_error("write", &marker))?;
    sync_dir(&new_dir)?;
    std::fs::rename(&dir, &moved_to).map_err(io_error("rename", &dir))?;
    sync_dir(data_dir)?;
    std::fs::rename(&new_dir, &dir).map_err(io_error("rename", &new_dir))?;
    sync_dir(data_dir)?;
    let marker = dir.join(COMPLETE_MARKER);
    std::fs::remove_file(&marker).map_err(io_error("remove", &marker))?;
    sync_dir(&dir)?;
    Ok(Repaired {
        salvage,
        kept,
        moved_to,
        report_file,
        report,
    })
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// The report file's text.
pub fn render(s: &Salvage, kept: &Totals, dir: &Path, moved_to: &Path) -> String {
    let mut out = String::new();
    let o = &mut out;
    let _ = writeln!(o, "hookfan spool repair of {}", dir.display());
    let _ = writeln!(
        o,
        "the old log is kept in {} (remove it once you are satisfied)",
        moved_to.display()
    );
    let _ = writeln!(
        o,
        "started from: {}",
        s.checkpoint.as_deref().unwrap_or("the start of the log")
    );
    let _ = writeln!(
        o,
        "records applied: {}, void records passed over: {}",
        s.records, s.void_records
    );
    let _ = writeln!(o);
    if s.is_clean() && s.orphans.is_empty() && s.resurrected.is_empty() {
        let _ = writeln!(o, "nothing was damaged and nothing was lost");
    }
    if !s.damaged_checkpoints.is_empty() {
        let _ = writeln!(o, "damaged checkpoints (ignored):");
        for (file, offset, why) in &s.damaged_checkpoints {
            let _ = writeln!(o, "  {file} at byte {offset}: {why}");
        }
    }
    if !s.damaged.is_empty() {
        let _ = writeln!(o, "damaged regions (file, offset, length):");
        for d in &s.damaged {
            let _ = writeln!(
                o,
                "  {} at byte {}, {} bytes: {}",
                d.file, d.offset, d.len, d.why
            );
            if d.at_end {
                let _ = writeln!(o, "    nothing intact follows it: a torn last group (written at a crash, never acknowledged), or the log's last records, whose number cannot be told");
            }
            for (lsn, what, _) in &d.unverified {
                let _ = writeln!(o, "    lsn {lsn} (read without its checksum): {what}");
            }
        }
    }
    if !s.lost_lsns.is_empty() {
        let _ = writeln!(o, "lsn ranges lost (records gone):");
        for (from, to) in &s.lost_lsns {
            let _ = match to - from {
                1 => writeln!(o, "  lsn {from} (1 record)"),
                n => writeln!(o, "  lsn {from}..={} ({n} records)", to - 1),
            };
        }
    }
    if !s.lost_events.is_empty() {
        let _ = writeln!(o, "events lost (their record is damaged or gone):");
        for e in &s.lost_events {
            let _ = writeln!(
                o,
                "  event {} received {} webhook id {} on [{}]",
                e.seq,
                time(e.received_at_ms),
                e.webhook_id.as_deref().unwrap_or("unknown"),
                e.routes.join(", ")
            );
        }
    }
    let named: Vec<&(u64, String, Option<String>)> = s
        .damaged
        .iter()
        .flat_map(|d| &d.unverified)
        .filter(|(lsn, _, id)| id.is_some() && s.is_lost(*lsn))
        .collect();
    if !named.is_empty() {
        let _ = writeln!(
            o,
            "webhook ids of events lost in damaged groups (read without their checksum):"
        );
        for (lsn, _, id) in named {
            let _ = writeln!(o, "  lsn {lsn}: {}", id.as_deref().unwrap_or("-"));
        }
    }
    if !s.unnamed_routes.is_empty() {
        let _ = writeln!(o, "routes whose name was lost (their events are kept under the names below, which no configured route has: hookfan keeps them on disk as a removed route's, undelivered; `hookfan drop-pending --route NAME` forgets them):");
        for id in &s.unnamed_routes {
            let _ = writeln!(o, "  route id {id}: {}", route_name(&s.state, *id));
        }
    }
    if !s.orphans.is_empty() {
        let _ = writeln!(o, "records kept about events that were lost (no effect):");
        for (lsn, what) in &s.orphans {
            let _ = writeln!(o, "  lsn {lsn}: {what}");
        }
    }
    if !s.resurrected.is_empty() {
        let _ = writeln!(o, "events whose record was lost, kept from a compaction copy (pending again on every route they were stored for, so some may be delivered twice):");
        for seq in &s.resurrected {
            let _ = writeln!(o, "  event {seq}");
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "kept: {} events, {} webhook ids remembered",
        kept.events, kept.ids
    );
    for (route, t) in &kept.routes {
        let _ = writeln!(
            o,
            "  route {route}: {} pending, {} dead letters",
            t.pending, t.dead
        );
    }
    out
}

#[cfg(test)]
mod tests;
