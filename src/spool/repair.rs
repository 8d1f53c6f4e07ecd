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

/// Bytes that are not a valid group where one was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub offset: u64,
    pub len: u64,
    pub why: String,
    /// What the damaged bytes still seem to hold (unverified: their checksum failed), if
    /// they start like a group: (lsn, the record described, its webhook id for an event).
    pub unverified: Vec<(u64, String, Option<String>)>,
    /// No intact group comes after it in the log: it may be the torn last group of a crash
    /// (never acknowledged), or acknowledged records whose number cannot be told.
    pub at_end: bool,
}

/// An event the repaired log does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostEvent {
    pub seq: u64,
    /// What the state knew of it: when received, and each route holding it.
    pub received_at_ms: u64,
    pub routes: Vec<String>,
    /// From the damaged bytes (unverified), when they show it.
    pub webhook_id: Option<String>,
}

/// What [`salvage`] kept and what it could not.
#[derive(Debug)]
pub struct Salvage {
    /// The state rebuilt from the starting checkpoint and every record kept.
    pub state: State,
    /// Locations of intact event records (an event, or the event inside a copy).
    intact: HashSet<Location>,
    /// The checkpoint the state started from.
    pub checkpoint: Option<String>,
    /// Checkpoints that do not decode: (file, offset, why).
    pub damaged_checkpoints: Vec<(String, u64, String)>,
    pub damaged: Vec<Damage>,
    /// lsn ranges `[from, to)` whose records are gone.
    pub lost_lsns: Vec<(u64, u64)>,
    /// Records kept that are about an event whose own record was lost: (lsn, what).
    pub orphans: Vec<(u64, String)>,
    /// Events whose record was lost but a compaction copy of it was kept.
    pub resurrected: Vec<u64>,
    /// Events the state holds whose record is not intact.
    pub lost_events: Vec<LostEvent>,
    /// Routes holding events whose `Route` record (their name) was lost.
    pub unnamed_routes: Vec<RouteId>,
    /// Records applied, and those passed over as void (a later segment declared them so).
    pub records: u64,
    pub void_records: u64,
}

impl Salvage {
    fn lose(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        match self.lost_lsns.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => self.lost_lsns.push((from, to)),
        }
    }

    fn is_lost(&self, lsn: u64) -> bool {
        self.lost_lsns.iter().any(|&(a, b)| (a..b).contains(&lsn))
    }

    /// Whether anything at all was lost or damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.damaged_checkpoints.is_empty()
            && self.unnamed_routes.is_empty()
            && self.lost_lsns.is_empty()
            && self.lost_events.is_empty()
    }
}

/// The intact groups of one segment and the damaged regions between them.
struct Found {
    header: Option<SegmentHeader>,
    /// Offsets of valid group frames of this segment, in file order.
    groups: Vec<u64>,
    /// (offset, length, why).
    damaged: Vec<(u64, u64, BadFrame)>,
}

/// Every valid group frame in a segment's bytes, resynchronising after damage at the next
/// 8-byte boundary holding a valid group of this segment. Pure.
fn find_groups(bytes: &[u8], index: u64) -> Found {
    let mut found = Found {
        header: None,
        groups: Vec::new(),
        damaged: Vec::new(),
    };
    match segment::decode_segment_header(bytes) {
        Ok(h) if h.index == index => found.header = Some(h),
        Ok(_) => found
            .damaged
            .push((0, SEGMENT_HEADER_LEN as u64, BadFrame::Segment)),
        Err(why) => found.damaged.push((0, SEGMENT_HEADER_LEN as u64, why)),
    }
    // The end of the last non-zero byte, rounded up: where damage with nothing valid after
    // it stops.
    let data_end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| (i + 1).div_ceil(ALIGN) * ALIGN)
        .min(bytes.len());
    let mut at = SEGMENT_HEADER_LEN;
    while at < data_end {
        match segment::decode_group(&bytes[at..], index) {
            Ok(g) => {
                found.groups.push(at as u64);
                at += g.header.frame_len();
            }
            Err(why) => {
                let next = segment::find_valid_group(bytes, at + ALIGN, index).map(|n| n as usize);
                let end = next.unwrap_or(data_end);
                found.damaged.push((at as u64, (end - at) as u64, why));
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
        }
    }
    found
}

/// What damaged bytes that start like a group frame seem to hold, record by record, read
/// without their checksum: (lsn, description, webhook id).
fn unverified(bytes: &[u8], state: &State) -> Vec<(u64, String, Option<String>)> {
    let mut out = Vec::new();
    let Some(h) = bytes.get(..GROUP_HEADER_LEN) else {
        return out;
    };
    if h[0..4] != GROUP_MAGIC {
        return out;
    }
    let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[16..24]);
    let first_lsn = u64::from_le_bytes(first);
    let count = u32_at(24);
    let payload_len = u32_at(28) as usize;
    let payload_end = GROUP_HEADER_LEN
        .saturating_add(payload_len)
        .min(bytes.len());
    let mut rest = &bytes[GROUP_HEADER_LEN..payload_end];
    for i in 0..u64::from(count.min(4096)) {
        let Some(len) = rest.get(..RECORD_LEN_BYTES) else {
            break;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(record) = rest.get(RECORD_LEN_BYTES..RECORD_LEN_BYTES.saturating_add(len)) else {
            break;
        };
        rest = &rest[RECORD_LEN_BYTES + len..];
        let lsn = first_lsn.saturating_add(i);
        match Record::decode(record) {
            Ok(r) => {
                let id = match &r {
                    Record::Event(e) | Record::Copy { event: e, .. } => {
                        e.webhook_id.map(str::to_string)
                    }
                    _ => None,
                };
                out.push((lsn, describe(&r, state), id));
            }
            Err(e) => out.push((lsn, format!("a record that does not decode ({e})"), None)),
        }
    }
    out
}

/// A route's name; one whose `Route` record was lost (in a segment compaction deleted,
/// behind a damaged checkpoint) gets a name of its own, so that its events stay apart from
/// every configured route: hookfan keeps them as a removed route's (see the report).
fn route_name(state: &State, id: RouteId) -> String {
    state
        .route_name(id)
        .map_or_else(|| format!("unnamed-route-{id}"), str::to_string)
}

/// One line about a record, for the report.
fn describe(record: &Record<'_>, state: &State) -> String {
    let event = |e: &EventRecord<'_>| {
        let routes: Vec<String> = e
            .routes
            .iter()
            .map(|r| route_name(state, r.route))
            .collect();
        format!(
            "event, webhook id {}, type {}, routes [{}]",
            e.webhook_id.unwrap_or("-"),
            e.event_type.unwrap_or("-"),
            routes.join(", ")
        )
    };
    match record {
        Record::Route { id, name } => format!("route {name:?} bound to id {id}"),
        Record::Event(e) => event(e),
        Record::Copy { seq, event: e } => format!("copy of event {seq}: {}", event(e)),
        Record::Delivered { route, seq } => {
            format!("event {seq} delivered on {}", route_name(state, *route))
        }
        Record::Retry { route, seq, .. } => {
            format!("event {seq} to retry on {}", route_name(state, *route))
        }
        Record::Hold { route, seq, .. } => {
            format!("event {seq} held on {}", route_name(state, *route))
        }
        Record::Dead { route, seq, .. } => {
            format!("event {seq} dead on {}", route_name(state, *route))
        }
        Record::Replay { route, seq, .. } => {
            format!("event {seq} replayed on {}", route_name(state, *route))
        }
        Record::Drop { route, seq } => {
            format!("dead letter {seq} dropped on {}", route_name(state, *route))
        }
        Record::DropPending { route } => {
            format!("pending events of {} dropped", route_name(state, *route))
        }
        Record::ExpireIds { .. } => "dedup window moved".to_string(),
    }
}

/// The event a record is about, if it names one.
fn about(record: &Record<'_>) -> Option<u64> {
    match record {
        Record::Delivered { seq, .. }
        | Record::Retry { seq, .. }
        | Record::Hold { seq, .. }
        | Record::Dead { seq, .. }
        | Record::Replay { seq, .. }
        | Record::Drop { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// Reads every checkpoint and segment in `storage` and keeps what is intact. Reads only.
pub fn salvage(storage: &dyn Storage) -> Result<Salvage, LogError> {
    let names = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?;
    let mut indexes: Vec<u64> = names
        .iter()
        .filter_map(|n| segment::segment_index(n))
        .collect();
    indexes.sort_unstable();
    let mut lsns: Vec<u64> = names
        .iter()
        .filter_map(|n| checkpoint::checkpoint_lsn(n))
        .collect();
    lsns.sort_unstable_by(|a, b| b.cmp(a));

    let mut damaged_checkpoints = Vec::new();
    let mut base = None;
    for lsn in lsns {
        let name = checkpoint::checkpoint_name(lsn);
        let bytes = read_file(storage, &name)?;
        match checkpoint::decode(&bytes) {
            Ok(c) if c.at.lsn == lsn => {
                if base.is_none() {
                    base = Some((name, c));
                }
            }
            Ok(_) => {
                damaged_checkpoints.push((name, 0, checkpoint::BadCheckpoint::Name.to_string()))
            }
            Err((offset, why)) => damaged_checkpoints.push((name, offset, why.to_string())),
        }
    }
    let (state, base_lsn, checkpoint) = match base {
        Some((name, c)) => (c.state, c.at.lsn, Some(name)),
        None => (State::new(), 1, None),
    };
    let mut s = Salvage {
        state,
        intact: HashSet::new(),
        checkpoint,
        damaged_checkpoints,
        damaged: Vec::new(),
        lost_lsns: Vec::new(),
        orphans: Vec::new(),
        resurrected: Vec::new(),
        lost_events: Vec::new(),
        unnamed_routes: Vec::new(),
        records: 0,
        void_records: 0,
    };

    // Each segment's header first: a segment's records at or after the next valid header's
    // `void from` are void when that header says `TAIL_UNTRUSTED`.
    let mut heads = Vec::with_capacity(indexes.len());
    for &index in &indexes {
        let name = segment::segment_name(index);
        let file = storage
            .open(&name)
            .map_err(|e| LogError::io("open", name.as_str(), e))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| LogError::io("read", name.as_str(), e))?;
        heads.push(
            segment::decode_segment_header(&head[..n])
                .ok()
                .filter(|h| h.index == index),
        );
    }

    // The next lsn a complete history needs.
    let mut expected = base_lsn;
    // The last intact group read: (segment, offset).
    let mut last_group: Option<(u64, u64)> = None;
    // Lsns read from damaged bytes, for naming lost events: lsn → webhook id.
    let mut seen_ids: HashMap<u64, String> = HashMap::new();
    for (p, &index) in indexes.iter().enumerate() {
        let name = segment::segment_name(index);
        let bytes = read_file(storage, &name)?;
        if bytes.iter().all(|&b| b == 0) {
            continue; // a prepared spare
        }
        let found = find_groups(&bytes, index);
        for &(offset, len, why) in &found.damaged {
            let unverified = unverified(&bytes[offset as usize..], &s.state);
            for (lsn, _, id) in &unverified {
                if let Some(id) = id {
                    seen_ids.insert(*lsn, id.clone());
                }
            }
            s.damaged.push(Damage {
                file: name.clone(),
                offset,
                len,
                why: why.describe().to_string(),
                unverified,
                at_end: false,
            });
        }
        let cut = heads[p + 1..]
            .iter()
            .flatten()
            .next()
            .filter(|h| h.tail_untrusted())
            .map(|h| h.void_from);
        if let Some(h) = found.header.filter(SegmentHeader::tail_untrusted) {
            // Lsns from `void from` to this segment's start were skipped, not lost.
            s.lose(expected, h.void_from);
            expected = expected.max(h.start_lsn);
        }
        for offset in found.groups {
            last_group = Some((index, offset));
            let Ok(group) = segment::decode_group(&bytes[offset as usize..], index) else {
                continue;
            };
            for ((lsn, bytes), at) in group.records().zip(group.record_offsets()) {
                let location = Location {
                    segment: index,
                    offset: offset + at as u64,
                    len: bytes.len() as u32,
                };
                let record = match Record::decode(bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        s.damaged.push(Damage {
                            file: name.clone(),
                            offset: location.offset,
                            len: u64::from(location.len),
                            why: format!("a record that does not decode ({e})"),
                            unverified: Vec::new(),
                            at_end: false,
                        });
                        if lsn >= expected {
                            s.lose(expected, lsn + 1);
                            expected = lsn + 1;
                        }
                        continue;
                    }
                };
                let inner = match &record {
                    Record::Event(_) => Some(location),
                    Record::Copy { seq, .. } => {
                        let prefix = Record::copy_prefix_len(*seq);
                        Some(Location {
                            segment: index,
                            offset: location.offset + prefix as u64,
                            len: location.len.saturating_sub(prefix as u32),
                        })
                    }
                    _ => None,
                };
                if let Some(inner) = inner {
                    s.intact.insert(inner);
                }
                if cut.is_some_and(|c| lsn >= c) {
                    s.void_records += 1;
                    continue;
                }
                if lsn < expected {
                    // Below the checkpoint (it holds the effect), or an lsn seen twice.
                    continue;
                }
                s.lose(expected, lsn);
                expected = lsn + 1;
                match &record {
                    Record::Copy { seq, event }
                        if s.state.event(*seq).is_none() && s.is_lost(*seq) =>
                    {
                        let inner = inner.unwrap_or(location);
                        s.state.apply(*seq, inner, &Record::Event(event.clone()));
                        s.resurrected.push(*seq);
                    }
                    r => {
                        if let Some(seq) = about(r) {
                            if s.state.event(seq).is_none() && s.is_lost(seq) {
                                s.orphans.push((lsn, describe(r, &s.state)));
                            }
                        }
                    }
                }
                s.state.apply(lsn, location, &record);
                s.records += 1;
            }
        }
    }

    for d in &mut s.damaged {
        let at = (segment::segment_index(&d.file).unwrap_or(0), d.offset);
        d.at_end = last_group.is_none_or(|last| at > last);
    }

    // Every event the state still holds must have an intact record.
    let mut holders: HashMap<u64, Vec<String>> = HashMap::new();
    for (id, q) in s.state.routes() {
        let name = route_name(&s.state, id);
        for (_, seq, _) in q.pending() {
            holders
                .entry(seq)
                .or_default()
                .push(format!("{name} (pending)"));
        }
        for (seq, _) in q.dead() {
            holders
                .entry(seq)
                .or_default()
                .push(format!("{name} (dead letter)"));
        }
    }
    let lost: Vec<LostEvent> = s
        .state
        .events()
        .filter(|(_, m)| !s.intact.contains(&m.location()))
        .map(|(seq, m)| LostEvent {
            seq,
            received_at_ms: m.received_at_ms(),
            routes: holders.remove(&seq).unwrap_or_default(),
            webhook_id: seen_ids.get(&seq).cloned(),
        })
        .collect();
    s.lost_events = lost;
    s.unnamed_routes = s
        .state
        .routes()
        .map(|(id, _)| id)
        .filter(|&id| s.state.route_name(id).is_none())
        .collect();
    Ok(s)
}

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
mod tests {
    use super::super::compaction::{Maintenance, MaintenanceConfig};
    use super::super::segment::{encode_segment_header, test_group as group};
    use super::super::{CorruptWhy, LogError};
    use super::*;

    /// Segment 1 of 1 KiB: its header, the groups, zeros.
    fn segment_of(groups: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = encode_segment_header(&SegmentHeader {
            index: 1,
            flags: 0,
            start_lsn: 1,
            void_from: 1,
        })
        .to_vec();
        for g in groups {
            bytes.extend_from_slice(g);
        }
        bytes.resize(1024, 0);
        bytes
    }

    #[test]
    fn a_damaged_group_is_skipped_and_the_scan_resynchronises_on_the_next_valid_one() {
        let groups = [
            group(1, 1, &[b"a"]),
            group(1, 2, &[b"bbbbbbbbbbbbbbbbbbbbbbbb"]),
            group(1, 3, &[b"c"]),
        ];
        let mut bytes = segment_of(&groups);
        let second = SEGMENT_HEADER_LEN + groups[0].len();
        bytes[second + GROUP_HEADER_LEN + 10] ^= 0x04;
        let found = find_groups(&bytes, 1);
        let third = second + groups[1].len();
        assert_eq!(found.groups, vec![SEGMENT_HEADER_LEN as u64, third as u64]);
        assert_eq!(
            found.damaged,
            vec![(second as u64, groups[1].len() as u64, BadFrame::Checksum)]
        );
    }

    #[test]
    fn damage_with_nothing_valid_after_it_ends_at_the_last_written_byte() {
        let groups = [
            group(1, 1, &[b"a"]),
            group(1, 2, &[b"bbbbbbbbbbbbbbbbbbbbbbbbbbbb"]),
        ];
        let mut bytes = segment_of(&groups);
        let second = SEGMENT_HEADER_LEN + groups[0].len();
        bytes[second + 3] ^= 0x01; // its magic
        let found = find_groups(&bytes, 1);
        assert_eq!(found.groups, vec![SEGMENT_HEADER_LEN as u64]);
        assert_eq!(
            found.damaged,
            vec![(second as u64, groups[1].len() as u64, BadFrame::Magic)]
        );
        // A damaged segment header costs its 40 bytes, not the groups after it.
        bytes[20] ^= 0x01;
        let found = find_groups(&bytes, 1);
        assert_eq!(found.header, None);
        assert_eq!(found.groups.len(), 1);
        assert_eq!(
            found.damaged[0],
            (0, SEGMENT_HEADER_LEN as u64, BadFrame::Checksum)
        );
    }

    #[test]
    fn an_event_that_filled_its_group_is_written_again_with_its_dead_letter_record_apart() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DIR_NAME);
        let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(&dir).unwrap());
        let config = WriterConfig {
            segment_size: 1024,
            prepared_ahead: 1,
            ..WriterConfig::default()
        };
        let w =
            Writer::start(storage.clone(), recover(&*storage).unwrap(), config.clone()).unwrap();
        w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
            .unwrap();
        // The largest body a group takes.
        let seq = (0..1024usize)
            .rev()
            .find_map(|len| {
                let body = vec![b'x'; len];
                let record = Record::Event(EventRecord {
                    webhook_id: Some("big"),
                    received_at_ms: 1,
                    api_key: None,
                    signature: "sig",
                    event_type: None,
                    path: None,
                    body: &body,
                    routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
                });
                let t = w.submit(&[record]).ok()?;
                w.wait(&t).unwrap();
                Some(t.first_lsn)
            })
            .unwrap();
        let dead = Record::Dead {
            route: 0,
            seq,
            attempts: 3,
            error: "400 Bad Request: the handler refused it",
            dead_at_ms: 5,
        };
        w.wait(&w.submit(&[dead]).unwrap()).unwrap();
        w.close();

        let repaired = repair(data.path(), config).unwrap();
        assert!(repaired.salvage.is_clean(), "{}", repaired.report);
        assert_eq!(repaired.kept.routes["r"].dead, 1);
        let r = recover(&ReadOnlyDir::new(&dir)).unwrap();
        let q = r.state.route(0).unwrap();
        let (_, entry) = q.dead().next().unwrap();
        assert_eq!(
            (entry.attempts, &*entry.error),
            (3, "400 Bad Request: the handler refused it")
        );
    }

    #[test]
    fn an_event_the_checkpoint_holds_whose_record_is_damaged_is_named_lost_and_the_rest_kept() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DIR_NAME);
        let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(&dir).unwrap());
        let r = recover(&*storage).unwrap();
        let mut m = Maintenance::new(
            storage.clone(),
            r.checkpoint,
            MaintenanceConfig::for_segments(1024),
        );
        let config = WriterConfig {
            segment_size: 1024,
            prepared_ahead: 1,
            ..WriterConfig::default()
        };
        let w = Writer::start(storage.clone(), r, config.clone()).unwrap();
        w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
            .unwrap();
        let mut seqs = Vec::new();
        for i in 0..10 {
            let id = format!("id-{i}");
            let body = vec![b'x'; 200];
            let record = Record::Event(EventRecord {
                webhook_id: Some(&id),
                received_at_ms: 1,
                api_key: None,
                signature: "sig",
                event_type: Some("message.new"),
                path: None,
                body: &body,
                routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
            });
            let t = w.submit(&[record]).unwrap();
            w.wait(&t).unwrap();
            seqs.push(t.first_lsn);
        }
        m.checkpoint(&w).unwrap().unwrap();
        w.close();
        drop(m);

        // Event id-3's record, in a segment before the checkpoint's: not replayed, but
        // still needed.
        let location = recover(&*storage)
            .unwrap()
            .state
            .event(seqs[3])
            .unwrap()
            .location();
        let name = segment::segment_name(location.segment);
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(location.offset + u64::from(location.len)) as usize - 3] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let Err(LogError::Corrupt { why, .. }) = recover(&ReadOnlyDir::new(&dir)) else {
            panic!("refused");
        };
        assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[3] });

        let repaired = repair(data.path(), config).unwrap();
        let lost = &repaired.salvage.lost_events;
        assert_eq!(lost.len(), 1, "{}", repaired.report);
        assert_eq!(lost[0].seq, seqs[3]);
        assert_eq!(lost[0].webhook_id.as_deref(), Some("id-3"));
        assert_eq!(lost[0].routes, ["r (pending)"]);
        assert!(
            repaired.salvage.lost_lsns.is_empty(),
            "the checkpoint covers them"
        );
        assert!(
            repaired.report.contains("webhook id id-3 on [r (pending)]"),
            "{}",
            repaired.report
        );
        assert_eq!(repaired.kept.routes["r"].pending, 9);
        let r = recover(&ReadOnlyDir::new(&dir)).unwrap();
        assert!(r.state.dedup_candidate("id-4").is_some());
        assert_eq!(r.state.route_name(0), Some("r"));
    }
}
