//! What the log means: the state rebuilt by applying its records in lsn order. Pure: no I/O,
//! no clock (times come in records and arguments).
//!
//! Per route: the pending events in delivery order (due time, then seq), each with its
//! attempts, last error and hold time; and the dead letters. Across routes: each event still
//! needed (where its record is, how many routes hold it, whether the dedup window still
//! remembers its id), and the dedup index. The dedup window is the remembered events in seq
//! order: expiry forgets them from the oldest.
//!
//! [`State::apply`] is total and deterministic: a record that names an event or a route the
//! state does not hold in the right place (a delivery recorded twice, a replay of a letter
//! already replayed) changes nothing, as the redb spool did. So replaying the log after a
//! crash, or a later checkpoint plus the log after it, always gives the same state.
//!
//! Compaction's view: for each segment, how many events still needed have their record there
//! and what copying them forward would cost ([`State::segment_uses`]); the segment of the
//! last record applied ([`State::tail_segment`]), where a checkpoint's replay starts. A
//! [`Record::Copy`] moves an event's location forward and changes nothing else.
//!
//! Memory, measured by `examples/spool_memory.rs`: about 45 bytes per event pending on 3
//! routes, 491 once each of those routes has attempted it and failed (a destination
//! refusing connections), and 50 per event delivered but remembered for its id; none of it
//! grows with body sizes. Per event: its metadata (32 bytes, in pages of 64 seqs:
//! `event_table.rs`) and, while its id is remembered, a dedup index entry (its seq in 32
//! bits: `dedup_index.rs`). Per route, a pending event never attempted is a bit in a bitmap
//! ([`RouteQueue`]); one with a state of its own (retried, held, replayed, in a message
//! group) costs about 150 bytes (its entry in two B-trees), and a dead letter too. Their
//! error texts are shared: a route's entries that failed the same way in a row hold one
//! copy ([`RouteQueue::error_text`]; a copy each was 959 bytes per event above).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::sync::Arc;

use super::dedup_index::DedupIndex;
use super::event_table::EventTable;
use super::record::{Record, RouteId};
use super::segment::ALIGN;
use crate::spool::seq_set::SeqSet;

mod restore;
mod route_queue;

pub use restore::{Inconsistent, Restore};
pub use route_queue::{RouteQueue, RouteView};

/// Where a record's bytes are: segment index and byte offset in that segment's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// A route's delivery state of one pending event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Attempts made so far; the next one is `attempts + 1`.
    pub attempts: u32,
    /// Shared with the route's other entries that failed the same way (see
    /// [`RouteQueue::error_text`]).
    pub last_error: Option<Arc<str>>,
    /// Ordered routes: not before this time (ms since the epoch; 0: not held).
    pub not_before_ms: u64,
    /// Ordered routes: the fingerprint of the event's message group (0: none, the whole
    /// route), from its event record; kept through retries, holds and dead letters.
    pub group: u64,
}

/// Why and when a route gave up on an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadEntry {
    pub attempts: u32,
    /// Shared as [`Entry::last_error`] is.
    pub error: Arc<str>,
    pub dead_at_ms: u64,
    /// The pending entry's message group, given back by a replay.
    pub group: u64,
}

impl Entry {
    /// Never attempted, not held, in no message group: no state of its own.
    fn is_fresh(&self) -> bool {
        *self == FRESH
    }
}

/// The state of every fresh event: never attempted, not held, in no message group.
static FRESH: Entry = Entry {
    attempts: 0,
    last_error: None,
    not_before_ms: 0,
    group: 0,
};

/// Events by seq: every event the state still needs.
type Events = EventTable;

/// An event the state still needs: 32 bytes, every field packed to what it can hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    /// Its webhook id's fingerprint, while it is remembered.
    pub fingerprint: u64,
    /// Its receipt time (ms since the epoch, the low [`RECEIVED_BITS`] bits: until the year
    /// 2109), the routes holding it (pending or dead; 16 bits) and whether its webhook id is
    /// in the dedup index (within the window; the top bit).
    when_and_who: u64,
    /// Where its record is ([`EventMeta::location`]). A segment index, and an offset and a
    /// length within a segment, fit 32 bits: segments are at most 4 GiB (the writer's config
    /// and recovery refuse larger ones), and the writer prepares no segment past index
    /// `u32::MAX - 1` (4 billion segments: 4 PiB written at the smallest size).
    segment: u32,
    offset: u32,
    len: u32,
    /// Its due time (the one its record gave its first route) minus its receipt time: a
    /// route's fresh events are due then (see [`RouteQueue`]). How the state stores what
    /// it holds, not part of it: a state restored from a checkpoint may differ here.
    due_after_ms: u32,
}

/// Bits of [`EventMeta`]'s receipt time: ms since the epoch up to 2^42, the year 2109. A
/// later time (a clock gone wrong) is kept as the last one.
const RECEIVED_BITS: u32 = 42;
const RECEIVED_MAX: u64 = (1 << RECEIVED_BITS) - 1;
const HOLDERS_SHIFT: u32 = RECEIVED_BITS;
const REMEMBERED: u64 = 1 << 63;

impl std::fmt::Debug for EventMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventMeta")
            .field("location", &self.location())
            .field("received_at_ms", &self.received_at_ms())
            .field("due_after_ms", &self.due_after_ms)
            .field("holders", &self.holders())
            .field("remembered", &self.remembered())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl EventMeta {
    /// An event at `location` received then, held by no route yet, not remembered.
    pub fn new(location: Location, received_at_ms: u64) -> EventMeta {
        let (segment, offset, len) = packed(location);
        EventMeta {
            fingerprint: 0,
            when_and_who: received_at_ms.min(RECEIVED_MAX),
            segment,
            offset,
            len,
            due_after_ms: 0,
        }
    }

    /// When it was received (ms since the epoch).
    pub fn received_at_ms(&self) -> u64 {
        self.when_and_who & RECEIVED_MAX
    }

    /// How many routes hold it (pending or dead).
    pub fn holders(&self) -> u16 {
        (self.when_and_who >> HOLDERS_SHIFT) as u16
    }

    pub fn set_holders(&mut self, holders: u16) {
        self.when_and_who = (self.when_and_who & !(u64::from(u16::MAX) << HOLDERS_SHIFT))
            | (u64::from(holders) << HOLDERS_SHIFT);
    }

    /// Its webhook id is in the dedup index (within the window).
    pub fn remembered(&self) -> bool {
        self.when_and_who & REMEMBERED != 0
    }

    pub fn set_remembered(&mut self, remembered: bool) {
        if remembered {
            self.when_and_who |= REMEMBERED;
        } else {
            self.when_and_who &= !REMEMBERED;
        }
    }

    /// Where its record is.
    pub fn location(&self) -> Location {
        Location {
            segment: u64::from(self.segment),
            offset: u64::from(self.offset),
            len: self.len,
        }
    }

    fn set_location(&mut self, location: Location) {
        (self.segment, self.offset, self.len) = packed(location);
    }

    /// When its fresh routes are due, after its receipt (see [`EventMeta::due_ms`]).
    pub fn due_after_ms(&self) -> u32 {
        self.due_after_ms
    }

    /// When its fresh routes are due.
    pub fn due_ms(&self) -> u64 {
        self.received_at_ms() + u64::from(self.due_after_ms)
    }
}

/// `location` as [`EventMeta`] keeps it. A segment index or an offset past 32 bits is in
/// no segment hookfan writes or reads (see [`EventMeta`]); were one to come, it is kept as
/// the last one, where a read fails rather than finds another record.
fn packed(location: Location) -> (u32, u32, u32) {
    let segment = u32::try_from(location.segment).unwrap_or(u32::MAX);
    let offset = u32::try_from(location.offset).unwrap_or(u32::MAX);
    (segment, offset, location.len)
}

/// What copying the event forward would write (see [`SegmentUse::bytes`]).
fn copy_cost(meta: &EventMeta) -> u64 {
    if meta.holders() > 0 {
        u64::from(meta.len)
    } else {
        ID_ONLY_COST
    }
}

/// Adds `meta` to (or takes it from) its segment's use in `segments`.
fn account(segments: &mut BTreeMap<u64, SegmentUse>, meta: &EventMeta, add: bool) {
    let cost = copy_cost(meta);
    let segment = u64::from(meta.segment);
    let use_ = segments.entry(segment).or_default();
    if add {
        use_.events += 1;
        use_.bytes += cost;
    } else {
        use_.events = use_.events.saturating_sub(1);
        use_.bytes = use_.bytes.saturating_sub(cost);
        if use_.events == 0 {
            segments.remove(&segment);
        }
    }
}

/// While a checkpoint is restored: no route has given the event its due time yet.
const DUE_UNSET: u32 = u32::MAX;

/// `due - received`, if it fits (else 0: routes due at another time are not fresh).
fn due_after(received_at_ms: u64, due_ms: u64) -> u32 {
    due_ms
        .checked_sub(received_at_ms)
        .and_then(|d| u32::try_from(d).ok())
        .filter(|&d| d != DUE_UNSET)
        .unwrap_or(0)
}

/// A candidate duplicate: the remembered event whose id has the same fingerprint. The caller
/// confirms it by reading the id stored at `location` (fingerprints can collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupHit {
    pub seq: u64,
    pub received_at_ms: u64,
    pub location: Location,
}

/// What copying an event no route holds any more (kept only for its id) forward costs, in
/// [`SegmentUse::bytes`]: it is copied without its body.
pub const ID_ONLY_COST: u64 = 64;

/// What of one segment is still needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentUse {
    /// Events whose record is in this segment.
    pub events: u32,
    /// What copying them forward would write: each held event's record length, and
    /// [`ID_ONLY_COST`] for each one kept only for its id.
    pub bytes: u64,
}

/// A [`State`]'s parts that a checkpoint encodes, as they were when it was taken, while the
/// state goes on changing: its event pages and the bitmaps of its routes' never-attempted
/// events are shared with the state, each copied only when the state first changes it; the
/// entries of events retried, held or dead are copied ([`State::snapshot_cost`]). The dedup
/// index is left out: a checkpoint lists the window from the events themselves, and its
/// reader rebuilds the index.
#[derive(Debug)]
pub struct Snapshot(State);

impl Snapshot {
    /// The parts, to encode (the dedup index is empty: not a state to apply records to).
    pub(super) fn parts(&self) -> &State {
        &self.0
    }
}

/// The log's meaning. See the module documentation.
#[derive(Debug, Clone)]
pub struct State {
    names: BTreeMap<RouteId, String>,
    routes: HashMap<RouteId, RouteQueue>,
    /// seq → event, for every event some route holds or the dedup window remembers.
    events: EventTable,
    /// Segment → the events of `events` located there (only segments with some).
    segments: BTreeMap<u64, SegmentUse>,
    /// Keys of the fingerprint hash: random per log, and kept in checkpoints, since the
    /// fingerprints a checkpoint holds must mean the same after a restart.
    keys: [u64; 2],
    /// Fingerprint of a webhook id → its event: the remembered events (each holds its
    /// fingerprint, which the index reads). The window is their seq order (the order they
    /// were applied): expiry walks them from the oldest.
    dedup: DedupIndex,
    /// No event before this seq is remembered: where expiry's walk starts.
    expiry_from: u64,
    /// The lsn after the last record applied.
    next_lsn: u64,
    /// The segment of the last record applied (0: none yet). Every later record is in it or
    /// in a later one.
    tail_segment: u64,
    /// Where the groups of the records applied in `tail_segment` end (0: none applied since
    /// this state was built, by a checkpoint's restore or from empty). Not kept in
    /// checkpoints: it bounds how much of the tail segment a checkpoint's replay reads.
    tail_end: u64,
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl State {
    /// An empty state with fresh random fingerprint keys.
    pub fn new() -> State {
        State::with_keys(rand::random())
    }

    /// The parts a checkpoint encodes, taken now. Under the writer's lock this costs a copy
    /// of the maps' entries, not of what they hold: see [`Snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(State {
            names: self.names.clone(),
            routes: self.routes.clone(),
            events: self.events.clone(),
            segments: self.segments.clone(),
            keys: self.keys,
            dedup: DedupIndex::new(),
            expiry_from: self.expiry_from,
            next_lsn: self.next_lsn,
            tail_segment: self.tail_segment,
            tail_end: self.tail_end,
        })
    }

    /// The entries [`State::snapshot`] copies one by one: events retried, held or dead,
    /// over all routes. (Event pages and never-attempted events' bitmaps are shared.)
    pub fn snapshot_cost(&self) -> usize {
        self.routes
            .values()
            .map(|q| q.other.len() + q.dead.len())
            .sum()
    }

    /// An empty state whose fingerprints use `keys` (a checkpoint's).
    pub fn with_keys(keys: [u64; 2]) -> State {
        State {
            names: BTreeMap::new(),
            routes: HashMap::new(),
            events: EventTable::new(),
            segments: BTreeMap::new(),
            keys,
            dedup: DedupIndex::new(),
            expiry_from: 0,
            next_lsn: 1,
            tail_segment: 0,
            tail_end: 0,
        }
    }

    /// The lsn after the last record applied (1 for an empty log).
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Applies record `lsn`, whose bytes are at `location`. Records must come in lsn order.
    pub fn apply(&mut self, lsn: u64, location: Location, record: &Record<'_>) {
        self.next_lsn = self.next_lsn.max(lsn + 1);
        // Groups are aligned and padded to ALIGN: the record's group ends at the next
        // multiple after it.
        let end = (location.offset + u64::from(location.len)).next_multiple_of(ALIGN as u64);
        match location.segment.cmp(&self.tail_segment) {
            Ordering::Greater => (self.tail_segment, self.tail_end) = (location.segment, end),
            Ordering::Equal => self.tail_end = self.tail_end.max(end),
            Ordering::Less => {}
        }
        match record {
            Record::Route { id, name } => {
                self.names.insert(*id, (*name).to_string());
            }
            Record::Event(e) => {
                let due_after_ms = e
                    .routes
                    .iter()
                    .next()
                    .map_or(0, |r| due_after(e.received_at_ms, r.due_ms));
                let event_due = e.received_at_ms + u64::from(due_after_ms);
                let mut holders: u16 = 0;
                for r in e.routes.iter() {
                    let q = self.routes.entry(r.route).or_default();
                    if !q.is_pending(lsn) {
                        let entry = Entry {
                            group: r.group,
                            ..Entry::default()
                        };
                        q.put(r.due_ms, lsn, entry, Some(event_due));
                        holders = holders.saturating_add(1);
                    }
                }
                let fingerprint = e.webhook_id.map(|id| self.fingerprint(id));
                let remembered = fingerprint.is_some();
                if remembered {
                    self.dedup.room_for_one(lsn, &self.events);
                }
                if holders > 0 || remembered {
                    let mut meta = EventMeta {
                        due_after_ms,
                        fingerprint: fingerprint.unwrap_or(0),
                        ..EventMeta::new(location, e.received_at_ms)
                    };
                    meta.set_holders(holders);
                    meta.set_remembered(remembered);
                    self.insert_event(lsn, meta);
                }
                if let Some(fp) = fingerprint {
                    // A fingerprint names the latest event with it; the earlier one is
                    // forgotten (a webhook id sent again after the window, or a collision).
                    if let Some(old) = self.dedup.insert(fp, lsn, &self.events) {
                        self.forget_id(old);
                    }
                }
            }
            Record::ExpireIds { before_ms, limit } => {
                self.expire_ids(*before_ms, *limit as usize);
            }
            Record::Copy { seq, .. } => {
                let prefix = Record::copy_prefix_len(*seq);
                let moved = Location {
                    segment: location.segment,
                    offset: location.offset + prefix as u64,
                    len: location.len.saturating_sub(prefix as u32),
                };
                self.change_event(*seq, |meta| meta.set_location(moved));
            }
            Record::Delivered { route, seq } => {
                if self
                    .queue(*route)
                    .and_then(|(q, events)| q.take(*seq, events))
                    .is_some()
                {
                    self.release(*route, *seq);
                }
            }
            Record::Retry {
                route,
                seq,
                due_ms,
                attempts,
                error,
            } => {
                if let Some((q, events)) = self.queue(*route) {
                    if let Some((_, old)) = q.take(*seq, events) {
                        let entry = Entry {
                            attempts: *attempts,
                            last_error: Some(q.error_text(error)),
                            not_before_ms: 0,
                            group: old.group,
                        };
                        q.put(*due_ms, *seq, entry, None);
                    }
                }
            }
            Record::Hold {
                route,
                seq,
                not_before_ms,
                attempts,
                error,
            } => {
                if let Some((q, events)) = self.queue(*route) {
                    if let Some((due, old)) = q.take(*seq, events) {
                        let entry = Entry {
                            attempts: *attempts,
                            last_error: Some(q.error_text(error)),
                            not_before_ms: *not_before_ms,
                            group: old.group,
                        };
                        q.put(due, *seq, entry, None);
                    }
                }
            }
            Record::Dead {
                route,
                seq,
                attempts,
                error,
                dead_at_ms,
            } => {
                if let Some((q, events)) = self.queue(*route) {
                    if let Some((_, old)) = q.take(*seq, events) {
                        let dead = DeadEntry {
                            attempts: *attempts,
                            error: q.error_text(error),
                            dead_at_ms: *dead_at_ms,
                            group: old.group,
                        };
                        q.dead.insert(*seq, dead);
                    }
                }
            }
            Record::Replay { route, seq, due_ms } => {
                if let Some((q, events)) = self.queue(*route) {
                    if let Some(dead) = q.dead.remove(seq) {
                        let entry = Entry {
                            group: dead.group,
                            ..Entry::default()
                        };
                        let event_due = events.get(*seq).map(EventMeta::due_ms);
                        q.put(*due_ms, *seq, entry, event_due);
                    }
                }
            }
            Record::Drop { route, seq } => {
                if self
                    .queue(*route)
                    .and_then(|(q, _)| q.dead.remove(seq))
                    .is_some()
                {
                    self.release(*route, *seq);
                }
            }
            Record::DropPending { route } => {
                let Some(q) = self.routes.get_mut(route) else {
                    return;
                };
                for seq in q.take_all() {
                    self.release(*route, seq);
                }
            }
        }
    }

    /// A route's queue, and the events (where its fresh events' due times are).
    fn queue(&mut self, route: RouteId) -> Option<(&mut RouteQueue, &Events)> {
        let events = &self.events;
        self.routes.get_mut(&route).map(|q| (q, events))
    }

    /// `route` let go of `seq`.
    fn release(&mut self, route: RouteId, seq: u64) {
        if self.routes.get(&route).is_some_and(RouteQueue::is_empty) {
            self.routes.remove(&route);
        }
        self.change_event(seq, |meta| {
            meta.set_holders(meta.holders().saturating_sub(1))
        });
    }

    /// The dedup index no longer names `seq`.
    fn forget_id(&mut self, seq: u64) {
        self.change_event(seq, |meta| meta.set_remembered(false));
    }

    fn insert_event(&mut self, seq: u64, meta: EventMeta) {
        self.account(&meta, true);
        self.events.insert(seq, meta);
    }

    /// Changes event `seq` (if the state holds it) and forgets it once nothing needs it; the
    /// only way `events` changes after an insert, so `segments` follows.
    fn change_event(&mut self, seq: u64, change: impl FnOnce(&mut EventMeta)) {
        let Some(meta) = self.events.get(seq).copied() else {
            return;
        };
        self.account(&meta, false);
        let mut meta = meta;
        change(&mut meta);
        if meta.holders() == 0 && !meta.remembered() {
            self.events.remove(seq);
        } else {
            self.account(&meta, true);
            self.events.insert(seq, meta);
        }
    }

    /// Adds `meta` to (or takes it from) its segment's use.
    fn account(&mut self, meta: &EventMeta, add: bool) {
        account(&mut self.segments, meta, add);
    }

    /// [`fingerprint`] under this log's keys.
    fn fingerprint(&self, webhook_id: &str) -> u64 {
        fingerprint(self.keys, webhook_id)
    }

    /// The remembered event whose id may be `webhook_id`, to be confirmed against the id
    /// stored at its location, and checked against the window by the caller.
    pub fn dedup_candidate(&self, webhook_id: &str) -> Option<DedupHit> {
        self.dedup_candidate_at(self.fingerprint(webhook_id))
    }

    /// [`State::dedup_candidate`] of the id whose [`fingerprint`] (with this state's
    /// [`State::keys`]) is `fingerprint`, computed by the caller outside any lock.
    pub fn dedup_candidate_at(&self, fingerprint: u64) -> Option<DedupHit> {
        let seq = self.dedup.get(fingerprint, &self.events)?;
        let meta = self.events.get(seq)?;
        Some(DedupHit {
            seq,
            received_at_ms: meta.received_at_ms(),
            location: meta.location(),
        })
    }

    /// Forgets webhook ids received before `cutoff_ms` (now minus the dedup window), at
    /// most `limit` of them. The log does it through [`Record::ExpireIds`], so that what is
    /// forgotten stays forgotten after a restart (compaction may delete what only an id
    /// kept). Ids go in seq order (the order they were applied): one received out of
    /// order stays until those before it go, remembered longer, never shorter.
    pub fn expire_ids(&mut self, cutoff_ms: u64, limit: usize) {
        let mut forgotten = 0;
        while forgotten < limit {
            let Some((seq, meta)) = self.events.first_from(self.expiry_from) else {
                break;
            };
            if meta.remembered() {
                if meta.received_at_ms() >= cutoff_ms {
                    break;
                }
                let fp = meta.fingerprint;
                self.dedup.remove(fp, &self.events);
                self.forget_id(seq);
                forgotten += 1;
            }
            self.expiry_from = seq + 1;
        }
    }

    /// Webhook ids remembered.
    pub fn remembered_ids(&self) -> usize {
        self.dedup.len()
    }

    /// The id of route `name`, if a record bound it.
    pub fn route_id(&self, name: &str) -> Option<RouteId> {
        self.names
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| *id)
    }

    pub fn route_name(&self, id: RouteId) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Every route bound so far, by id.
    pub fn route_names(&self) -> impl Iterator<Item = (RouteId, &str)> {
        self.names.iter().map(|(id, n)| (*id, n.as_str()))
    }

    /// A route's queue (`None`: it holds nothing).
    pub fn route(&self, id: RouteId) -> Option<RouteView<'_>> {
        let events = &self.events;
        self.routes
            .get(&id)
            .map(|queue| RouteView { queue, events })
    }

    /// An event still needed.
    pub fn event(&self, seq: u64) -> Option<&EventMeta> {
        self.events.get(seq)
    }

    /// Events still needed.
    pub fn live_events(&self) -> usize {
        self.events.len()
    }

    /// The oldest segment that holds an event still needed: every segment before it holds
    /// only records whose effect the state already carries (compaction's bound, together with
    /// the checkpoints).
    pub fn oldest_needed_segment(&self) -> Option<u64> {
        self.segments.keys().next().copied()
    }

    /// Segments that hold events still needed, oldest first, with what each holds.
    pub fn segment_uses(&self) -> impl Iterator<Item = (u64, SegmentUse)> + '_ {
        self.segments.iter().map(|(&s, &u)| (s, u))
    }

    /// Events still needed, by seq.
    pub fn events(&self) -> impl Iterator<Item = (u64, &EventMeta)> {
        self.events.iter()
    }

    /// Routes that hold anything, by id.
    pub fn routes(&self) -> impl Iterator<Item = (RouteId, RouteView<'_>)> {
        let mut ids: Vec<RouteId> = self.routes.keys().copied().collect();
        ids.sort_unstable();
        let events = &self.events;
        ids.into_iter().map(move |id| {
            let queue = &self.routes[&id];
            (id, RouteView { queue, events })
        })
    }

    /// The dedup window's entries, oldest first: (received_at_ms, fingerprint, seq).
    pub fn id_order(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.events
            .iter()
            .filter(|(_, m)| m.remembered())
            .map(|(seq, m)| (m.received_at_ms(), m.fingerprint, seq))
    }

    /// The fingerprint keys (kept in checkpoints).
    pub fn keys(&self) -> [u64; 2] {
        self.keys
    }

    /// The segment of the last record applied (0: none).
    pub fn tail_segment(&self) -> u64 {
        self.tail_segment
    }

    /// Where the data of the tail segment ends, as far as the records applied to this state
    /// show: every record it holds there lies before this offset. None: no record was applied
    /// since it was restored (the records there are known only to its checkpoint).
    pub fn tail_end(&self) -> Option<u64> {
        (self.tail_end > 0).then_some(self.tail_end)
    }
}

/// The fingerprint of `webhook_id` under `keys` (a log's [`State::keys`]): SipHash-2-4,
/// keyed, so ids chosen by a sender cannot be made to collide. `std::hash::SipHasher` is
/// deprecated only in favour of `DefaultHasher`, whose algorithm may change between
/// releases; fingerprints kept in a checkpoint need one that does not (the algorithm's own
/// output, over the id's bytes).
#[allow(deprecated)]
pub fn fingerprint(keys: [u64; 2], webhook_id: &str) -> u64 {
    let mut hasher = std::hash::SipHasher::new_with_keys(keys[0], keys[1]);
    hasher.write(webhook_id.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests;
