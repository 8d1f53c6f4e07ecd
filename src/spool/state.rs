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

/// One route's queue. Read it through [`RouteView`].
///
/// Most pending events were never attempted and have no state of their own: they are
/// *fresh*, kept as a bitmap of seqs (about a bit each; a backlog's seqs are dense), due at
/// their event's due time ([`EventMeta::due_ms`]). A seq joins the fresh ones only after
/// the last one that joined, with a due time no earlier, so walking the bitmap by seq walks
/// them in delivery order; new events always qualify (see "Queue order of new events" in
/// the log's documentation). Events with a state of their own (retried, held, replayed, in a
/// message group, or due at another time than their event's) are kept one entry each.
/// Delivery order is (due, seq) across both.
#[derive(Debug, Clone, Default)]
pub struct RouteQueue {
    fresh: SeqSet,
    /// The last seq that joined the fresh ones, with its due time (None once they are
    /// all gone).
    fresh_last: Option<(u64, u64)>,
    /// (due_ms, seq) → state, for the events that are not fresh: their delivery order.
    other: BTreeMap<(u64, u64), Entry>,
    /// seq → its due time, to find an event's place in `other`.
    due_of: BTreeMap<u64, u64>,
    /// seq → why it died.
    dead: BTreeMap<u64, DeadEntry>,
    /// The error text most recently recorded on this route, shared by the entries that
    /// record the same one: while a destination is down, every attempt fails with the same
    /// words (120 bytes for a refused connection), and a backlog of a million events would
    /// otherwise hold a million copies of them per route. How the state stores what it
    /// holds, not part of it.
    recent_error: Option<Arc<str>>,
}

impl RouteQueue {
    /// `error` as entries of this route keep it: the text recorded last if it is the
    /// same, else a new one (which becomes the one recorded last).
    fn error_text(&mut self, error: &str) -> Arc<str> {
        match &self.recent_error {
            Some(recent) if **recent == *error => recent.clone(),
            _ => self.recent_error.insert(Arc::from(error)).clone(),
        }
    }

    /// Takes `seq` out of the pending events: its due time and state.
    fn take(&mut self, seq: u64, events: &Events) -> Option<(u64, Entry)> {
        if self.fresh.remove(seq) {
            if self.fresh.is_empty() {
                self.fresh_last = None;
            }
            let due = events.get(seq).map_or(0, EventMeta::due_ms);
            return Some((due, Entry::default()));
        }
        let due = self.due_of.remove(&seq)?;
        let entry = self.other.remove(&(due, seq))?;
        Some((due, entry))
    }

    /// Puts `seq` among the pending events; `event_due` is its event's due time.
    fn put(&mut self, due: u64, seq: u64, entry: Entry, event_due: Option<u64>) {
        let plain = entry.is_fresh();
        let in_order = self.fresh_last.is_none_or(|(s, d)| seq > s && due >= d);
        if plain && in_order && Some(due) == event_due {
            self.fresh.insert(seq);
            self.fresh_last = Some((seq, due));
        } else {
            self.due_of.insert(seq, due);
            self.other.insert((due, seq), entry);
        }
    }

    fn is_pending(&self, seq: u64) -> bool {
        self.fresh.contains(seq) || self.due_of.contains_key(&seq)
    }

    /// Takes every pending event out; returns their seqs.
    fn take_all(&mut self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.fresh.iter().collect();
        seqs.extend(self.due_of.keys());
        self.fresh = SeqSet::default();
        self.fresh_last = None;
        self.other.clear();
        self.due_of.clear();
        seqs
    }

    fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.other.is_empty() && self.dead.is_empty()
    }
}

/// A route's queue as the state holds it: its pending events in delivery order, its dead
/// letters.
#[derive(Debug, Clone, Copy)]
pub struct RouteView<'a> {
    queue: &'a RouteQueue,
    events: &'a Events,
}

impl<'a> RouteView<'a> {
    /// Pending events in delivery order: (due_ms, seq, state).
    pub fn pending(self) -> impl Iterator<Item = (u64, u64, &'a Entry)> + 'a {
        let events = self.events;
        let mut fresh = self
            .queue
            .fresh
            .iter()
            .map(move |seq| {
                let due = events.get(seq).map_or(0, EventMeta::due_ms);
                (due, seq, &FRESH)
            })
            .peekable();
        let mut other = self
            .queue
            .other
            .iter()
            .map(|(&(due, seq), e)| (due, seq, e))
            .peekable();
        std::iter::from_fn(move || match (fresh.peek(), other.peek()) {
            (Some(f), Some(o)) if (f.0, f.1) > (o.0, o.1) => other.next(),
            (Some(_), _) => fresh.next(),
            (None, _) => other.next(),
        })
    }

    pub fn pending_len(self) -> usize {
        self.queue.fresh.len() as usize + self.queue.other.len()
    }

    /// Dead letters in seq order.
    pub fn dead(self) -> impl Iterator<Item = (u64, &'a DeadEntry)> + 'a {
        self.queue.dead.iter().map(|(&seq, d)| (seq, d))
    }

    pub fn dead_len(self) -> usize {
        self.queue.dead.len()
    }

    /// The oldest pending event (lowest seq, so earliest received), whatever its due time.
    pub fn oldest_pending(self) -> Option<u64> {
        let other = self.queue.due_of.keys().next().copied();
        match (self.queue.fresh.first(), other) {
            (Some(f), Some(o)) => Some(f.min(o)),
            (f, o) => f.or(o),
        }
    }

    pub fn is_pending(self, seq: u64) -> bool {
        self.queue.is_pending(seq)
    }

    pub fn is_dead(self, seq: u64) -> bool {
        self.queue.dead.contains_key(&seq)
    }
}

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

/// Why a restored state does not hold together (a checkpoint's parts contradict each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistent {
    #[error("event {0} is listed twice or at or after the checkpoint's lsn")]
    Event(u64),
    #[error("route {route} holds event {seq}, which is not listed or held there twice")]
    Held { route: RouteId, seq: u64 },
    #[error("event {0} is neither held by a route nor remembered for its id")]
    Unneeded(u64),
    #[error("the dedup window names event {0}, which is not listed or is named twice")]
    Id(u64),
}

/// Builds a [`State`] back from a checkpoint's parts, in the order the checkpoint holds
/// them (routes' names, events, queues, the dedup window), deriving the rest (holders,
/// the dedup index, segment uses) and checking that the parts agree.
pub struct Restore {
    state: State,
    /// Entries of the dedup window naming an event not listed, by fingerprint: refused by
    /// [`Restore::finish`] unless a later entry takes their fingerprint over.
    unlisted_ids: BTreeMap<u64, u64>,
    /// An entry naming an event named already: refused.
    named_twice: Option<u64>,
}

impl Restore {
    pub fn new(keys: [u64; 2], next_lsn: u64, tail_segment: u64) -> Restore {
        let mut state = State::with_keys(keys);
        state.next_lsn = next_lsn;
        state.tail_segment = tail_segment;
        Restore {
            state,
            unlisted_ids: BTreeMap::new(),
            named_twice: None,
        }
    }

    /// The state as restored so far (the parts taken in, nothing derived from them yet).
    pub fn so_far(&self) -> &State {
        &self.state
    }

    pub fn name(&mut self, id: RouteId, name: &str) {
        self.state.names.insert(id, name.to_string());
    }

    /// The dedup window holds `count` ids: the index is sized for them once (at most one
    /// per event listed, so a count no input backs reserves nothing more), not grown by
    /// doubling, which would hold the old table and the new one at once. A quarter more
    /// is room for the ids the log after the checkpoint adds (a checkpoint is taken once
    /// the log since the last one reaches a fraction of its size), so the replay does not
    /// rebuild the index either.
    pub fn ids_ahead(&mut self, count: u64) {
        let s = &mut self.state;
        let most = s.events.len();
        let count = usize::try_from(count).map_or(most, |n| n.min(most));
        debug_assert_eq!(s.dedup.len(), 0, "sized before the first id");
        s.dedup = DedupIndex::with_room(count + count / 4);
    }

    /// An event still needed; its holders and whether it is remembered are derived.
    pub fn event(
        &mut self,
        seq: u64,
        location: Location,
        received_at_ms: u64,
    ) -> Result<(), Inconsistent> {
        if seq >= self.state.next_lsn || self.state.events.contains_key(seq) {
            return Err(Inconsistent::Event(seq));
        }
        if u32::try_from(location.offset).is_err() {
            return Err(Inconsistent::Event(seq));
        }
        let meta = EventMeta {
            due_after_ms: DUE_UNSET,
            ..EventMeta::new(location, received_at_ms)
        };
        self.state.events.insert(seq, meta);
        Ok(())
    }

    /// Counts `route` among `seq`'s holders. The first route listing an event pending and
    /// never attempted gives it its due time (so that route, and every other one due then,
    /// holds it fresh); `due_ms` is that listing's due time.
    fn hold(&mut self, route: RouteId, seq: u64, due_ms: Option<u64>) -> Result<u64, Inconsistent> {
        match self.state.events.get_mut(seq) {
            Some(meta) if meta.holders() < u16::MAX => {
                if let (DUE_UNSET, Some(due)) = (meta.due_after_ms, due_ms) {
                    meta.due_after_ms = due_after(meta.received_at_ms(), due);
                }
                meta.set_holders(meta.holders() + 1);
                Ok(meta.due_ms())
            }
            _ => Err(Inconsistent::Held { route, seq }),
        }
    }

    /// The queue of `route`, the one of the previous entry most of the time (a checkpoint
    /// lists each route's entries together).
    fn queue(&mut self, route: RouteId) -> &mut RouteQueue {
        self.state.routes.entry(route).or_default()
    }

    pub fn pending(
        &mut self,
        route: RouteId,
        due_ms: u64,
        seq: u64,
        entry: Entry,
    ) -> Result<(), Inconsistent> {
        let event_due = self.hold(route, seq, entry.is_fresh().then_some(due_ms))?;
        let q = self.queue(route);
        // Held twice by one route: refused (as is a route listed twice).
        if q.is_pending(seq) || q.dead.contains_key(&seq) {
            return Err(Inconsistent::Held { route, seq });
        }
        let entry = Entry {
            last_error: entry.last_error.map(|e| q.error_text(&e)),
            ..entry
        };
        q.put(due_ms, seq, entry, Some(event_due));
        Ok(())
    }

    pub fn dead(&mut self, route: RouteId, seq: u64, dead: DeadEntry) -> Result<(), Inconsistent> {
        self.hold(route, seq, None)?;
        let q = self.queue(route);
        let dead = DeadEntry {
            error: q.error_text(&dead.error),
            ..dead
        };
        if q.is_pending(seq) || q.dead.insert(seq, dead).is_some() {
            return Err(Inconsistent::Held { route, seq });
        }
        Ok(())
    }

    /// The next entry of the dedup window (oldest first). An entry whose fingerprint a
    /// later one takes over is forgotten (checkpoints written before the window was kept
    /// with the events hold such entries). Its receipt time is the event's own.
    pub fn id(&mut self, _received_at_ms: u64, fingerprint: u64, seq: u64) {
        let s = &mut self.state;
        // Marked as the window is read (in seq order, so the events are walked in order);
        // the index reads an entry's fingerprint from its mark.
        s.dedup.room_for_one(seq, &s.events);
        match s.events.get_mut(seq) {
            Some(meta) if !meta.remembered() => {
                meta.set_remembered(true);
                meta.fingerprint = fingerprint;
                self.unlisted_ids.remove(&fingerprint);
            }
            Some(_) => {
                self.named_twice.get_or_insert(seq);
                return;
            }
            None => {
                self.unlisted_ids.insert(fingerprint, seq);
                return;
            }
        }
        if let Some(old) = s.dedup.insert(fingerprint, seq, &s.events) {
            if let Some(meta) = s.events.get_mut(old) {
                meta.set_remembered(false);
            }
        }
    }

    /// The state, once every part is in.
    pub fn finish(mut self) -> Result<State, Inconsistent> {
        let unlisted = self.unlisted_ids.values().min();
        if let Some(&seq) = self.named_twice.as_ref().or(unlisted) {
            return Err(Inconsistent::Id(seq));
        }
        let s = &mut self.state;
        // Each id the index holds names a listed event marked remembered, and each such
        // event is named once: as many marks as ids.
        debug_assert_eq!(
            s.events.iter().filter(|(_, m)| m.remembered()).count(),
            s.dedup.len()
        );
        s.expiry_from = s
            .events
            .iter()
            .find(|(_, m)| m.remembered())
            .map_or(s.next_lsn, |(seq, _)| seq);
        // Segment uses summed a run of events at a time (events in seq order are mostly in
        // segment order), not one map update per event.
        let mut run: Option<(u64, SegmentUse)> = None;
        let flush = |segments: &mut BTreeMap<u64, SegmentUse>, run: Option<(u64, SegmentUse)>| {
            if let Some((segment, add)) = run {
                let use_ = segments.entry(segment).or_default();
                use_.events += add.events;
                use_.bytes += add.bytes;
            }
        };
        for (seq, meta) in s.events.iter_mut() {
            if meta.due_after_ms == DUE_UNSET {
                meta.due_after_ms = 0;
            }
            if meta.holders() == 0 && !meta.remembered() {
                return Err(Inconsistent::Unneeded(seq));
            }
            let segment = meta.location().segment;
            if run.is_none_or(|(s, _)| s != segment) {
                flush(&mut s.segments, run.take());
                run = Some((segment, SegmentUse::default()));
            }
            if let Some((_, use_)) = &mut run {
                use_.events += 1;
                use_.bytes += copy_cost(meta);
            }
        }
        flush(&mut s.segments, run);
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::test_event as event;
    use super::*;

    const R: RouteId = 0;
    const S: RouteId = 1;

    fn at(lsn: u64) -> Location {
        Location {
            segment: lsn / 100,
            offset: lsn,
            len: 1,
        }
    }

    /// Applies `records` at lsns 1, 2, ...
    fn state(records: &[Record<'_>]) -> State {
        let mut s = State::new();
        for (i, r) in records.iter().enumerate() {
            let lsn = i as u64 + 1;
            s.apply(lsn, at(lsn), r);
        }
        s
    }

    /// Route `r`'s pending seqs in delivery order, and its dead seqs.
    fn queue(s: &State, r: RouteId) -> (Vec<u64>, Vec<u64>) {
        s.route(r).map_or((vec![], vec![]), |q| {
            (
                q.pending().map(|(_, seq, _)| seq).collect(),
                q.dead().map(|(seq, _)| seq).collect(),
            )
        })
    }

    /// A table row: what it shows, the records, then routes R's and S's (pending, dead).
    type Case<'a> = (
        &'a str,
        Vec<Record<'a>>,
        (Vec<u64>, Vec<u64>),
        (Vec<u64>, Vec<u64>),
    );

    /// (fresh, with a state of their own) pending events of route `r`.
    fn stored(s: &State, r: RouteId) -> (u64, usize) {
        s.route(r)
            .map_or((0, 0), |q| (q.queue.fresh.len(), q.queue.other.len()))
    }

    #[test]
    fn an_events_metadata_takes_32_bytes_and_gives_every_field_back_whole() {
        // What every event pending or remembered costs, besides its dedup index entry.
        assert_eq!(std::mem::size_of::<EventMeta>(), 32);
        let location = Location {
            segment: u64::from(u32::MAX - 1),
            offset: u64::from(u32::MAX),
            len: u32::MAX,
        };
        // The year 2100, then each packed field at its largest and back, the others kept.
        let received = 4_102_444_800_000;
        let mut meta = EventMeta::new(location, received);
        assert_eq!(meta.location(), location);
        meta.set_holders(u16::MAX);
        meta.set_remembered(true);
        meta.fingerprint = u64::MAX;
        assert_eq!(
            (meta.received_at_ms(), meta.holders(), meta.remembered()),
            (received, u16::MAX, true)
        );
        meta.set_holders(0);
        assert_eq!(
            (meta.received_at_ms(), meta.holders(), meta.remembered()),
            (received, 0, true)
        );
        meta.set_remembered(false);
        meta.set_holders(7);
        assert_eq!(
            (meta.received_at_ms(), meta.holders(), meta.remembered()),
            (received, 7, false)
        );
        assert_eq!((meta.location(), meta.fingerprint), (location, u64::MAX));
        // Past 4 GiB or 4 billion segments (no segment is that large, the writer prepares
        // none that far): the last one, where a read fails. Past 2109: the last ms.
        let beyond = Location {
            segment: 1 << 33,
            offset: 1 << 33,
            ..location
        };
        let meta = EventMeta::new(beyond, u64::MAX);
        assert_eq!(
            (meta.location().segment, meta.location().offset),
            (u64::from(u32::MAX), u64::from(u32::MAX))
        );
        assert_eq!((meta.received_at_ms(), meta.holders()), (RECEIVED_MAX, 0));
    }

    #[test]
    fn a_restored_dedup_window_names_listed_events_and_a_taken_over_entry_is_passed_over() {
        // An entry whose fingerprint a later one took over (checkpoints written before the
        // window was kept with the events hold these), its event long gone: accepted.
        let mut r = Restore::new([1, 2], 10, 1);
        r.event(5, at(5), 50).unwrap();
        r.id(30, 7, 3);
        r.id(50, 7, 5);
        let s = r.finish().unwrap();
        assert!(s.event(5).unwrap().remembered());
        assert_eq!(s.remembered_ids(), 1);
        assert_eq!(s.id_order().collect::<Vec<_>>(), [(50, 7, 5)]);
        // An id naming an event the checkpoint does not list: refused, naming it.
        let mut r = Restore::new([1, 2], 10, 1);
        r.event(5, at(5), 50).unwrap();
        r.id(50, 7, 5);
        r.id(60, 8, 6);
        assert_eq!(r.finish().unwrap_err(), Inconsistent::Id(6));
        // Two ids naming one event: refused too.
        let mut r = Restore::new([1, 2], 10, 1);
        r.event(5, at(5), 50).unwrap();
        r.id(50, 7, 5);
        r.id(50, 8, 5);
        assert_eq!(r.finish().unwrap_err(), Inconsistent::Id(5));
    }

    #[test]
    fn events_never_attempted_cost_a_bit_and_keep_that_form_through_a_checkpoint() {
        let mut records: Vec<Record> = (0..100)
            .map(|i| event(None, 1_000 + i / 7, &[R, S]))
            .collect();
        records.push(Record::Retry {
            route: R,
            seq: 5,
            due_ms: 9_000,
            attempts: 1,
            error: "503",
        });
        let s = state(&records);
        assert_eq!(stored(&s, R), (99, 1));
        assert_eq!(stored(&s, S), (100, 0));
        let back = super::super::checkpoint::decode(&super::super::checkpoint::encode(&s))
            .unwrap()
            .state;
        assert_eq!(stored(&back, R), (99, 1));
        assert_eq!(stored(&back, S), (100, 0));
        let order = |s: &State| queue(s, R).0;
        assert_eq!(order(&back), order(&s));
        assert_eq!(*order(&s).last().unwrap(), 5, "the retry is due last");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// However its events are kept (fresh bitmap or entries of their own), a route's
        /// queue holds and orders exactly what a plain (due, seq) map would.
        #[test]
        fn a_route_queue_holds_and_orders_what_a_plain_map_would(
            ops in proptest::collection::vec((0u8..4, 0u64..400, 0u64..6, 0u32..2), 0..300)
        ) {
            let mut q = RouteQueue::default();
            let mut events = Events::new();
            let mut model: BTreeMap<(u64, u64), Entry> = BTreeMap::new();
            let mut next_seq = 1;
            let mut clock = 0;
            for (op, pick, step, attempts) in ops {
                let pending: Vec<u64> = model.keys().map(|&(_, s)| s).collect();
                match op {
                    // A new event: the next seq, received no earlier than the last one and
                    // due a little after (or, for this route, at another time).
                    0 | 1 => {
                        clock += step;
                        let mut meta = EventMeta {
                            due_after_ms: (pick % 3) as u32,
                            ..EventMeta::new(at(next_seq), clock)
                        };
                        meta.set_holders(1);
                        events.insert(next_seq, meta);
                        let due = if op == 0 { meta.due_ms() } else { clock + pick % 5 };
                        q.put(due, next_seq, Entry::default(), Some(meta.due_ms()));
                        model.insert((due, next_seq), Entry::default());
                        next_seq += 1;
                    }
                    // A retry (attempted) or replay (not) of an event pending or not: its
                    // own due time.
                    2 if next_seq > 1 => {
                        let seq = 1 + pick % (next_seq - 1);
                        let entry = Entry { attempts, ..Entry::default() };
                        if let Some(key) = model.keys().find(|k| k.1 == seq).copied() {
                            let (due, taken) = q.take(seq, &events).expect("pending");
                            proptest::prop_assert_eq!((due, &taken), (key.0, &model.remove(&key).unwrap()));
                        }
                        let due = pick % 50 + step;
                        let event_due = (attempts == 0).then(|| events.get(seq).unwrap().due_ms());
                        q.put(due, seq, entry.clone(), event_due);
                        model.insert((due, seq), entry);
                    }
                    // An outcome: the event leaves.
                    _ => {
                        if let Some(&seq) = pending.get(pick as usize % pending.len().max(1)) {
                            let key = model.keys().find(|k| k.1 == seq).copied().unwrap();
                            let (due, taken) = q.take(seq, &events).expect("pending");
                            proptest::prop_assert_eq!((due, &taken), (key.0, &model.remove(&key).unwrap()));
                        }
                    }
                }
                let q = RouteView { queue: &q, events: &events };
                let got: Vec<(u64, u64, Entry)> = q.pending().map(|(d, s, e)| (d, s, e.clone())).collect();
                let want: Vec<(u64, u64, Entry)> = model.iter().map(|(&(d, s), e)| (d, s, e.clone())).collect();
                proptest::prop_assert_eq!(got, want);
                proptest::prop_assert_eq!(q.pending_len(), model.len());
                proptest::prop_assert_eq!(q.oldest_pending(), model.keys().map(|k| k.1).min());
                for seq in 1..next_seq {
                    proptest::prop_assert_eq!(q.is_pending(seq), model.keys().any(|k| k.1 == seq));
                }
            }
        }
    }

    #[test]
    fn each_record_changes_the_queues_as_the_table_says() {
        let cases: Vec<Case> = vec![
            (
                "an event is pending on each of its routes",
                vec![event(None, 10, &[R, S]), event(None, 11, &[R])],
                (vec![1, 2], vec![]),
                (vec![1], vec![]),
            ),
            (
                "a delivery removes it from that route only",
                vec![
                    event(None, 10, &[R, S]),
                    Record::Delivered { route: R, seq: 1 },
                ],
                (vec![], vec![]),
                (vec![1], vec![]),
            ),
            (
                "a retry moves it behind what is due earlier",
                vec![
                    event(None, 10, &[R]),
                    event(None, 11, &[R]),
                    Record::Retry {
                        route: R,
                        seq: 1,
                        due_ms: 50,
                        attempts: 1,
                        error: "503",
                    },
                ],
                (vec![2, 1], vec![]),
                (vec![], vec![]),
            ),
            (
                "a hold keeps its place",
                vec![
                    event(None, 10, &[R]),
                    event(None, 11, &[R]),
                    Record::Hold {
                        route: R,
                        seq: 1,
                        not_before_ms: 50,
                        attempts: 1,
                        error: "503",
                    },
                ],
                (vec![1, 2], vec![]),
                (vec![], vec![]),
            ),
            (
                "a dead letter leaves the queue for the dead letters",
                vec![
                    event(None, 10, &[R, S]),
                    Record::Dead {
                        route: R,
                        seq: 1,
                        attempts: 3,
                        error: "400",
                        dead_at_ms: 9,
                    },
                ],
                (vec![], vec![1]),
                (vec![1], vec![]),
            ),
            (
                "a replay puts it back at its due time",
                vec![
                    event(None, 10, &[R]),
                    event(None, 20, &[R]),
                    Record::Dead {
                        route: R,
                        seq: 1,
                        attempts: 3,
                        error: "400",
                        dead_at_ms: 9,
                    },
                    Record::Replay {
                        route: R,
                        seq: 1,
                        due_ms: 30,
                    },
                ],
                (vec![2, 1], vec![]),
                (vec![], vec![]),
            ),
            (
                "a drop forgets the dead letter",
                vec![
                    event(None, 10, &[R]),
                    Record::Dead {
                        route: R,
                        seq: 1,
                        attempts: 3,
                        error: "400",
                        dead_at_ms: 9,
                    },
                    Record::Drop { route: R, seq: 1 },
                ],
                (vec![], vec![]),
                (vec![], vec![]),
            ),
            (
                "dropping a route's pending events keeps its dead letters and other routes",
                vec![
                    event(None, 10, &[R, S]),
                    event(None, 11, &[R]),
                    Record::Dead {
                        route: R,
                        seq: 2,
                        attempts: 3,
                        error: "400",
                        dead_at_ms: 9,
                    },
                    Record::DropPending { route: R },
                ],
                (vec![], vec![2]),
                (vec![1], vec![]),
            ),
            (
                "records about events not in that place change nothing",
                vec![
                    event(None, 10, &[R]),
                    Record::Delivered { route: S, seq: 1 },
                    Record::Replay {
                        route: R,
                        seq: 1,
                        due_ms: 5,
                    },
                    Record::Drop { route: R, seq: 1 },
                    Record::Hold {
                        route: R,
                        seq: 9,
                        not_before_ms: 5,
                        attempts: 1,
                        error: "",
                    },
                    Record::Delivered { route: R, seq: 1 },
                    Record::Delivered { route: R, seq: 1 },
                    Record::Retry {
                        route: R,
                        seq: 1,
                        due_ms: 5,
                        attempts: 1,
                        error: "",
                    },
                ],
                (vec![], vec![]),
                (vec![], vec![]),
            ),
        ];
        for (name, records, want_r, want_s) in cases {
            let s = state(&records);
            assert_eq!(queue(&s, R), want_r, "{name}: route R");
            assert_eq!(queue(&s, S), want_s, "{name}: route S");
        }
    }

    #[test]
    fn an_event_is_needed_until_its_last_route_lets_go_and_its_id_expires() {
        let mut s = state(&[
            event(Some("a"), 10, &[R, S]),
            Record::Delivered { route: R, seq: 1 },
        ]);
        assert_eq!(s.event(1).unwrap().holders(), 1);
        assert_eq!(s.oldest_needed_segment(), Some(0));
        s.apply(3, at(3), &Record::Delivered { route: S, seq: 1 });
        assert!(s.event(1).unwrap().remembered(), "kept for its id");
        assert_eq!(s.dedup_candidate("a").unwrap().seq, 1);
        s.expire_ids(11, 100);
        assert_eq!(s.event(1), None);
        assert_eq!(s.dedup_candidate("a"), None);
        assert_eq!(s.live_events(), 0);
    }

    #[test]
    fn the_dedup_index_names_the_latest_event_of_an_id_and_expiry_keeps_it() {
        let mut s = state(&[event(Some("a"), 10, &[R]), event(Some("a"), 500, &[R])]);
        assert_eq!(s.dedup_candidate("a").unwrap().seq, 2);
        // The first one's entry expires; the second stays remembered.
        s.expire_ids(100, 100);
        assert_eq!(s.dedup_candidate("a").unwrap().seq, 2);
        assert_eq!(s.remembered_ids(), 1);
        assert!(!s.event(1).unwrap().remembered());
        assert_eq!(s.event(1).unwrap().holders(), 1, "still pending on R");
    }

    #[test]
    fn expiry_stops_at_its_limit_and_at_the_first_id_still_in_the_window() {
        let mut s = state(&[
            event(Some("a"), 10, &[]),
            event(Some("b"), 90, &[]),
            event(Some("c"), 20, &[]),
        ]);
        s.expire_ids(50, 100);
        // "c" is older than the cutoff but came after "b": it stays until "b" goes.
        assert_eq!(s.remembered_ids(), 2);
        s.expire_ids(1000, 1);
        assert_eq!(s.remembered_ids(), 1);
    }

    #[test]
    fn routes_are_bound_by_records_and_lsns_advance() {
        let s = state(&[
            Record::Route { id: 4, name: "sqs" },
            Record::Route {
                id: 5,
                name: "http",
            },
        ]);
        assert_eq!(s.route_id("http"), Some(5));
        assert_eq!(s.route_name(4), Some("sqs"));
        assert_eq!(s.next_lsn(), 3);
    }

    #[test]
    fn retry_and_hold_keep_their_attempts_and_errors() {
        let s = state(&[
            event(None, 10, &[R]),
            Record::Hold {
                route: R,
                seq: 1,
                not_before_ms: 99,
                attempts: 2,
                error: "503",
            },
        ]);
        let (due, seq, e) = s.route(R).unwrap().pending().next().unwrap();
        assert_eq!((due, seq, e.attempts, e.not_before_ms), (10, 1, 2, 99));
        assert_eq!(e.last_error.as_deref(), Some("503"));
    }

    #[test]
    fn a_routes_entries_that_failed_the_same_way_share_one_copy_of_the_error_and_keep_it_through_a_checkpoint(
    ) {
        let retry = |seq, error| Record::Retry {
            route: R,
            seq,
            due_ms: 100 + seq,
            attempts: 1,
            error,
        };
        let mut records: Vec<Record> = (0..5).map(|_| event(None, 10, &[R, S])).collect();
        records.extend([
            retry(1, "refused"),
            retry(2, "refused"),
            retry(3, "timed out"),
            retry(4, "refused"),
            Record::Dead {
                route: R,
                seq: 5,
                attempts: 1,
                error: "refused",
                dead_at_ms: 50,
            },
            Record::Retry {
                route: S,
                seq: 1,
                due_ms: 200,
                attempts: 1,
                error: "refused",
            },
        ]);
        let live = state(&records);
        let restored = super::super::checkpoint::decode(&super::super::checkpoint::encode(&live))
            .expect("the checkpoint decodes")
            .state;
        for s in [&live, &restored] {
            let text = |seq| -> Arc<str> {
                let q = s.route(R).unwrap();
                q.pending()
                    .find(|&(_, sq, _)| sq == seq)
                    .map(|(_, _, e)| e.last_error.clone().unwrap())
                    .or_else(|| {
                        q.dead()
                            .find(|&(sq, _)| sq == seq)
                            .map(|(_, d)| d.error.clone())
                    })
                    .unwrap()
            };
            assert!(
                Arc::ptr_eq(&text(1), &text(2)),
                "one copy for a run of one error"
            );
            assert_eq!((&*text(3), &*text(4)), ("timed out", "refused"));
            assert!(Arc::ptr_eq(&text(4), &text(5)), "dead letters share it too");
            let (_, _, other_route) = s
                .route(S)
                .unwrap()
                .pending()
                .find(|&(_, seq, _)| seq == 1)
                .unwrap();
            assert_eq!(other_route.last_error.as_deref(), Some("refused"));
        }
    }
}
