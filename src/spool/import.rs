//! Upgrading a data_dir that holds a redb spool (issue 21's "Upgrading"): at open, a
//! `<data_dir>/spool.redb` is imported into the log once (its pending events, dead letters
//! and remembered webhook ids), then renamed aside; or the open is refused with a message
//! that says what to do. It is never ignored.
//!
//! # Steps ([`upgrade`], from [`super::LogSpool::open_with`], before the log is opened)
//! 1. With no `spool.redb`, nothing to do. Otherwise `data_dir` itself is locked (`flock`
//!    on the directory) for the whole upgrade, so two hookfans never import at once.
//! 2. `spool/` is looked at (see "After a crash"); a `spool.import/` left by a crash is
//!    removed, and the log is written afresh into `spool.import/` by the log's own
//!    [`Writer`] on the real disk, so its records are exactly the daemon's:
//!    - every event some route holds, in the redb spool's seq order (so each route's queue
//!      order, due time then seq, is kept: ordered routes rely on it), as a
//!      [`Record::Event`] with its body, headers' fields and path, listing each route that
//!      holds it with its due time (and no message group: the redb spool held a FIFO
//!      route whole, and group 0 keeps exactly that for these events); followed, in the
//!      same submission, by a
//!      [`Record::Retry`] (attempts, last error, same due time) or a [`Record::Hold`]
//!      (its not-before time) for each queue entry already attempted, and a
//!      [`Record::Dead`] (attempts, error, dead_at) for each dead letter: what
//!      `complete_batch` writes;
//!    - then each webhook id the redb spool remembers whose event no route holds any more,
//!      as an event of that id and received time with no routes and an empty body, so a
//!      Stream retry arriving just after the upgrade is still a duplicate;
//!    - route names bound by [`Record::Route`]s, each before the first event naming it.
//!
//!    Records go in batches of at most 1 MiB (and never more than a group holds:
//!    [`Writer::max_payload`]); an event and its records are never split. Memory: the
//!    redb side keeps every queue entry's key and state while it reads (no bodies: events
//!    are read and submitted one at a time), and two batches at most are in flight.
//! 3. A marker file `IMPORTED` is written in `spool.import/` (from which file, the counts,
//!    when, and the redb file's identity: inode, size, modification time), synced, and
//!    the directory synced; the writer is closed; `spool.import/` is renamed `spool/` and
//!    `data_dir` synced; `spool.redb` is renamed `spool.redb.imported` (or `.imported.2`,
//!    ... when taken) and `data_dir` synced. One INFO line gives the counts.
//!
//! # After a crash
//! The marker is written only once every record is durable ([`write_import`]; a test cuts
//! the power of a simulated disk before each of an import's writes and syncs in turn and
//! finds either no marker or the whole import). The import is one rename from invisible to
//! done, so a crash anywhere leaves one of:
//! - a `spool.import/`, with or without a marker, and no `spool/`: removed, the import is
//!   done again from the start (nothing imported twice);
//! - `spool/` with the marker beside `spool.redb`: only the last rename was left, and it is
//!   done, provided the file is still the one imported (same identity). Otherwise the
//!   operator put another spool.redb back beside an imported log: refused as below.
//! - `spool/` holding log data (a segment with records, a checkpoint) and no marker beside
//!   `spool.redb`: never an import's state (an import's `spool/` is its `spool.import/`,
//!   renamed once the marker is in it). An old spool was put back next to a new one:
//!   refused with [`SpoolError::RedbBesideLog`] (drain it with the previous hookfan
//!   version, or move it aside). A `spool/` with no data (a hookfan ran once on an empty
//!   data_dir, prepared segments only) is removed, once its lock shows no hookfan uses it,
//!   and the import goes on.
//!
//! A `spool.redb` that redb cannot open, or of a schema this version does not read, is
//! refused with [`SpoolError::Incompatible`] naming it. The redb file is only read (redb may
//! finish its own crash recovery in it at open), then renamed; nothing is deleted.
//!
//! Owns: the upgrade's files (`spool.import/`, the marker, the renames). Never here: what a
//! record means ([`super::State`]), how the redb spool's tables are read
//! (`RedbSpool::export` in `redb/mod.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::checkpoint;
use super::facade::{LogSpoolConfig, DIR_NAME, LOCK_NAME};
use super::record::{EventRecord, Record, RouteDue, RouteId};
use super::recovery::recover;
use super::segment::{self, SEGMENT_HEADER_LEN};
use super::storage::{RealDisk, Storage};
use super::writer::{Ticket, Writer};
use super::LogError;
use crate::spool::redb::{Exported, ExportedEvent, RedbSpool, FILE_NAME};
use crate::spool::SpoolError;

/// The directory the log is written into before it becomes `spool/`.
pub const IMPORT_DIR: &str = "spool.import";
/// The file, in the imported log's directory, that says the import is complete.
pub const MARKER: &str = "IMPORTED";
/// The marker while it is written, before it is renamed to [`MARKER`].
const MARKER_TMP: &str = "IMPORTED.tmp";
/// What `spool.redb` is renamed to once imported (a number is added when it is taken).
pub const IMPORTED_NAME: &str = "spool.redb.imported";
/// Most bytes of records in one submission.
const BATCH_BYTES: usize = 1 << 20;
/// The marker's line giving the redb file's identity.
const IDENTITY_KEY: &str = "file: ";

/// What an import carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Events some route holds.
    pub events: u64,
    /// Queue entries of those events (one per route holding one pending).
    pub pending: u64,
    pub dead_letters: u64,
    /// Remembered ids of events no route holds any more.
    pub ids: u64,
}

/// Imports `<data_dir>/spool.redb` into `<data_dir>/spool/` if it is there (see the module
/// documentation). `Ok(Some)`: imported now; `Ok(None)`: nothing to import (none there, or
/// only the last rename of an earlier import was left, and it is done now).
pub fn upgrade(data_dir: &Path, config: &LogSpoolConfig) -> Result<Option<Imported>, SpoolError> {
    let redb = data_dir.join(FILE_NAME);
    let data_dir_error = |source| SpoolError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    if !redb.try_exists().map_err(data_dir_error)? {
        return Ok(None);
    }
    let _lock = lock_data_dir(data_dir)?;
    // Another hookfan may have finished the upgrade between the look and the lock.
    if !redb.try_exists().map_err(data_dir_error)? {
        return Ok(None);
    }
    let log = data_dir.join(DIR_NAME);
    match look_at(&log).map_err(|source| SpoolError::DataDir {
        path: log.clone(),
        source,
    })? {
        LogDir::Absent => {}
        LogDir::Imported { marker } => {
            if marker_identity(&marker) != Some(identity(&redb).map_err(data_dir_error)?) {
                return Err(SpoolError::RedbBesideLog { redb, log });
            }
            let aside = rename_aside(data_dir, &redb).map_err(data_dir_error)?;
            tracing::info!(from = %redb.display(), to = %aside.display(), "spool: finished an earlier import of the redb spool (it was imported; now renamed aside)");
            return Ok(None);
        }
        LogDir::HoldsData => return Err(SpoolError::RedbBesideLog { redb, log }),
        LogDir::NoData => discard_unused_log(&log)?,
    }
    let import_dir = data_dir.join(IMPORT_DIR);
    let started = Instant::now();
    let imported = match import_into(&import_dir, &redb, config) {
        Ok(imported) => imported,
        Err(e) => {
            // Removed again at the next attempt anyway; leave nothing half-done meanwhile.
            let _ = std::fs::remove_dir_all(&import_dir);
            return Err(e);
        }
    };
    std::fs::rename(&import_dir, &log).map_err(data_dir_error)?;
    sync_dir(data_dir).map_err(data_dir_error)?;
    let aside = rename_aside(data_dir, &redb).map_err(data_dir_error)?;
    tracing::info!(
        from = %redb.display(),
        to = %aside.display(),
        events = imported.events,
        pending = imported.pending,
        dead_letters = imported.dead_letters,
        ids = imported.ids,
        took = ?started.elapsed(),
        "spool: imported the redb spool into the log"
    );
    Ok(Some(imported))
}

/// Locks `data_dir` for the upgrade (an exclusive `flock` on the directory, released when
/// the file is dropped).
fn lock_data_dir(data_dir: &Path) -> Result<File, SpoolError> {
    let data_dir_error = |source| SpoolError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    let dir = File::open(data_dir).map_err(data_dir_error)?;
    match dir.try_lock() {
        Ok(()) => Ok(dir),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::InUse(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(data_dir_error(source)),
    }
}

/// What `spool/` holds, beside a `spool.redb`.
enum LogDir {
    Absent,
    /// An import's result (the marker's path).
    Imported {
        marker: PathBuf,
    },
    /// A segment with records, or a checkpoint, and no marker.
    HoldsData,
    /// Nothing but prepared segments (zeros), temporary files, the lock.
    NoData,
}

fn look_at(log: &Path) -> io::Result<LogDir> {
    let entries = match std::fs::read_dir(log) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(LogDir::Absent),
        Err(e) => return Err(e),
    };
    let marker = log.join(MARKER);
    if marker.try_exists()? {
        return Ok(LogDir::Imported { marker });
    }
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if checkpoint::checkpoint_lsn(name).is_some() {
            return Ok(LogDir::HoldsData);
        }
        if segment::segment_index(name).is_some() && !all_zeros(&log.join(name))? {
            return Ok(LogDir::HoldsData);
        }
    }
    Ok(LogDir::NoData)
}

/// Whether the file holds only zeros (a prepared segment never written to): its header
/// first, the rest only when the header is zeros.
fn all_zeros(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        let want = if first { SEGMENT_HEADER_LEN } else { buf.len() };
        first = false;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Removes a `spool/` that holds no data, once its lock shows no hookfan uses it.
fn discard_unused_log(log: &Path) -> Result<(), SpoolError> {
    let error = |source| SpoolError::DataDir {
        path: log.to_path_buf(),
        source,
    };
    let lock = match File::options().write(true).open(log.join(LOCK_NAME)) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(error(e)),
    };
    if let Some(lock) = &lock {
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::InUse(log.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(error(source)),
        }
    }
    tracing::info!(spool = %log.display(), "spool: removing a log that holds no events, to import the redb spool beside it");
    std::fs::remove_dir_all(log).map_err(error)
}

/// The redb file's identity as the marker keeps it: what a copy, or the file changed by a
/// hookfan run, does not share with the file that was imported.
fn identity(path: &Path) -> io::Result<String> {
    let m = std::fs::metadata(path)?;
    Ok(format!(
        "inode {} size {} modified {}.{:09}",
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// The identity a marker names (None: unreadable, or none).
fn marker_identity(marker: &Path) -> Option<String> {
    let text = std::fs::read_to_string(marker).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(IDENTITY_KEY))
        .map(str::to_string)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `redb` to the first free of `spool.redb.imported`, `.imported.2`, ..., and syncs
/// `data_dir`. Returns the new path.
fn rename_aside(data_dir: &Path, redb: &Path) -> io::Result<PathBuf> {
    let mut aside = data_dir.join(IMPORTED_NAME);
    let mut n = 1;
    while aside.try_exists()? {
        n += 1;
        aside = data_dir.join(format!("{IMPORTED_NAME}.{n}"));
    }
    std::fs::rename(redb, &aside)?;
    sync_dir(data_dir)?;
    Ok(aside)
}

/// Writes the log of `redb`'s contents into `dir` (emptied first), with its marker.
fn import_into(dir: &Path, redb: &Path, config: &LogSpoolConfig) -> Result<Imported, SpoolError> {
    let dir_error = |source| SpoolError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "spool: removed an import cut short by a crash; importing again")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(dir_error(e)),
    }
    let storage = Arc::new(RealDisk::open(dir).map_err(dir_error)?);
    write_import(
        storage,
        config,
        |add| RedbSpool::export(redb, add),
        |counts| {
            // The redb database is closed: its identity no longer changes.
            let identity = identity(redb)?;
            Ok(format!(
                "hookfan imported {} into this spool at {}\n{IDENTITY_KEY}{identity}\nevents: {}\npending: {}\ndead_letters: {}\nids: {}\n",
                redb.display(),
                humantime::format_rfc3339_seconds(SystemTime::now()),
                counts.events,
                counts.pending,
                counts.dead_letters,
                counts.ids,
            ))
        },
    )
    .map_err(|e| match e {
        ImportError::Spool(e) => e,
        ImportError::Marker(source) => dir_error(source),
    })
}

/// Why [`write_import`] failed.
enum ImportError {
    Spool(SpoolError),
    /// Writing the marker (or making out its text).
    Marker(io::Error),
}

/// Writes the log of what `export` yields into `storage` (an empty directory) with the
/// log's own [`Writer`], waits until all of it is durable, then writes the marker
/// `marker(counts)` and syncs it and the directory. So a marker found after a crash always
/// has the whole import behind it, and an import answered Ok always left its marker
/// (proven over a simulated disk, cut before each write and sync, by
/// `tests::a_power_cut_at_any_point_of_an_import_leaves_no_marker_or_all_of_it_behind_one`).
fn write_import(
    storage: Arc<dyn Storage>,
    config: &LogSpoolConfig,
    export: impl FnOnce(&mut dyn FnMut(Exported) -> Result<(), SpoolError>) -> Result<(), SpoolError>,
    marker: impl FnOnce(&Imported) -> io::Result<String>,
) -> Result<Imported, ImportError> {
    let recovered = recover(&*storage).map_err(|e| ImportError::Spool(SpoolError::Log(e)))?;
    let next_lsn = recovered.next_lsn;
    let writer = Writer::start(storage.clone(), recovered, config.writer.clone())
        .map_err(|e| ImportError::Spool(SpoolError::Log(e)))?;
    let mut import = Importer {
        max_bytes: BATCH_BYTES.min(writer.max_payload()),
        writer: &writer,
        routes: HashMap::new(),
        next_lsn,
        batch: Vec::new(),
        batch_bytes: 0,
        batch_first_lsn: next_lsn,
        in_flight: None,
        counts: Imported::default(),
    };
    export(&mut |item| import.add(item)).map_err(ImportError::Spool)?;
    import.finish().map_err(ImportError::Spool)?;
    let counts = import.counts;
    // Written whole under another name, then renamed: another thread's directory sync can
    // make a name durable before this file's own sync, so a marker created under its final
    // name could be found after a power cut with its text cut short.
    let written = marker(&counts).and_then(|text| {
        let file = storage.create(MARKER_TMP)?;
        file.write_at(text.as_bytes(), 0)?;
        file.sync_data()?;
        storage.rename(MARKER_TMP, MARKER)?;
        storage.sync_dir()
    });
    writer.close();
    written.map_err(ImportError::Marker)?;
    Ok(counts)
}

/// One event's records, or a route's binding, or an id: never split across submissions.
enum Unit {
    Route {
        id: RouteId,
        name: String,
    },
    Event {
        /// The lsn its [`Record::Event`] gets, which the records after it name.
        seq: u64,
        exported: Box<ExportedEvent>,
        /// Route ids of `exported.pending`, then of `exported.dead`.
        ids: Vec<RouteId>,
    },
    Id {
        received_at_ms: u64,
        webhook_id: String,
    },
}

impl Unit {
    fn records(&self) -> Vec<Record<'_>> {
        match self {
            Unit::Route { id, name } => vec![Record::Route { id: *id, name }],
            Unit::Event { seq, exported, ids } => {
                let e = &exported.event;
                let (pending_ids, dead_ids) = ids.split_at(exported.pending.len());
                // A dead letter's route is listed too (due when received) and the Dead
                // record follows: as the log itself would have recorded it.
                // No message group: on a FIFO route an imported event blocks, and waits
                // for, every group, as the redb spool held the whole route.
                let dues: Vec<RouteDue> = pending_ids
                    .iter()
                    .zip(&exported.pending)
                    .map(|(&id, (_, due_ms, _))| RouteDue::new(id, *due_ms))
                    .chain(
                        dead_ids
                            .iter()
                            .map(|&id| RouteDue::new(id, e.received_at_ms)),
                    )
                    .collect();
                let mut records = vec![Record::Event(EventRecord {
                    webhook_id: e.webhook_id.as_deref(),
                    received_at_ms: e.received_at_ms,
                    api_key: e.api_key.as_deref(),
                    signature: &e.signature,
                    event_type: e.event_type.as_deref(),
                    path: e.path.as_deref(),
                    trace: None,
                    body: &e.body,
                    routes: dues.into(),
                })];
                for (&route, (_, due_ms, state)) in pending_ids.iter().zip(&exported.pending) {
                    let error = state.last_error.as_deref().unwrap_or_default();
                    if state.not_before_ms > 0 {
                        records.push(Record::Hold {
                            route,
                            seq: *seq,
                            not_before_ms: state.not_before_ms,
                            attempts: state.attempts,
                            error,
                        });
                    } else if state.attempts > 0 || state.last_error.is_some() {
                        records.push(Record::Retry {
                            route,
                            seq: *seq,
                            due_ms: *due_ms,
                            attempts: state.attempts,
                            error,
                        });
                    }
                }
                for (&route, (_, dead)) in dead_ids.iter().zip(&exported.dead) {
                    records.push(Record::Dead {
                        route,
                        seq: *seq,
                        attempts: dead.attempts,
                        error: &dead.error,
                        dead_at_ms: dead.dead_at_ms,
                    });
                }
                records
            }
            Unit::Id {
                received_at_ms,
                webhook_id,
            } => vec![Record::Event(EventRecord {
                webhook_id: Some(webhook_id.as_str()),
                received_at_ms: *received_at_ms,
                api_key: None,
                signature: "",
                event_type: None,
                path: None,
                trace: None,
                body: &[],
                routes: Vec::new().into(),
            })],
        }
    }
}

/// Turns what the redb spool holds into batches of records for the writer. It is the log's
/// only writer, so it knows the lsn each record gets (checked against each ticket).
struct Importer<'w> {
    writer: &'w Writer,
    max_bytes: usize,
    routes: HashMap<String, RouteId>,
    /// The lsn the next record added gets.
    next_lsn: u64,
    batch: Vec<Unit>,
    batch_bytes: usize,
    batch_first_lsn: u64,
    /// The batch submitted last, not yet known durable: the writer writes it while the
    /// next one is built.
    in_flight: Option<Ticket>,
    counts: Imported,
}

impl Importer<'_> {
    fn add(&mut self, item: Exported) -> Result<(), SpoolError> {
        match item {
            Exported::Event(exported) => {
                let names = exported
                    .pending
                    .iter()
                    .map(|(route, _, _)| route)
                    .chain(exported.dead.iter().map(|(route, _)| route));
                let mut ids = Vec::with_capacity(exported.pending.len() + exported.dead.len());
                for name in names {
                    let id = match self.routes.get(name) {
                        Some(&id) => id,
                        None => {
                            let id = self.routes.len() as RouteId;
                            self.routes.insert(name.clone(), id);
                            self.push(Unit::Route {
                                id,
                                name: name.clone(),
                            })?;
                            id
                        }
                    };
                    ids.push(id);
                }
                self.counts.events += 1;
                self.counts.pending += exported.pending.len() as u64;
                self.counts.dead_letters += exported.dead.len() as u64;
                self.push(Unit::Event {
                    seq: self.next_lsn,
                    exported,
                    ids,
                })
            }
            Exported::Id {
                received_at_ms,
                webhook_id,
            } => {
                self.counts.ids += 1;
                self.push(Unit::Id {
                    received_at_ms,
                    webhook_id,
                })
            }
        }
    }

    /// Adds `unit` to the batch, submitting the batch first when `unit` would not fit.
    fn push(&mut self, unit: Unit) -> Result<(), SpoolError> {
        let (count, bytes) = {
            let records = unit.records();
            let mut encoded = Vec::new();
            for r in &records {
                segment::push_record(&mut encoded, |out| r.encode_into(out));
            }
            (records.len() as u64, encoded.len())
        };
        if !self.batch.is_empty() && self.batch_bytes + bytes > self.max_bytes {
            self.submit()?;
        }
        if let Unit::Event { seq, .. } = &unit {
            debug_assert_eq!(*seq, self.next_lsn);
        }
        self.next_lsn += count;
        self.batch_bytes += bytes;
        self.batch.push(unit);
        Ok(())
    }

    /// Submits the batch, then waits for the one before it.
    fn submit(&mut self) -> Result<(), SpoolError> {
        let records: Vec<Record<'_>> = self.batch.iter().flat_map(Unit::records).collect();
        let ticket = loop {
            match self.writer.submit(&records) {
                // The group being filled is full: the previous batch is still being written.
                Err(LogError::Busy) => continue,
                submitted => break submitted.map_err(SpoolError::Log)?,
            }
        };
        drop(records);
        let previous = self.in_flight.replace(ticket);
        if let Some(previous) = &previous {
            // A failed group (its lsns are skipped) shows here first.
            self.writer.wait(previous).map_err(SpoolError::Log)?;
        }
        if ticket.first_lsn != self.batch_first_lsn || ticket.end_lsn != self.next_lsn {
            return Err(SpoolError::CommitFailed(
                "the import's records did not get the lsns it gave them".into(),
            ));
        }
        self.batch.clear();
        self.batch_bytes = 0;
        self.batch_first_lsn = self.next_lsn;
        Ok(())
    }

    /// Submits what is left and waits until everything is durable.
    fn finish(&mut self) -> Result<(), SpoolError> {
        if !self.batch.is_empty() {
            self.submit()?;
        }
        if let Some(last) = self.in_flight.take() {
            self.writer.wait(&last).map_err(SpoolError::Log)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
