//! Building a [`State`] back from a checkpoint's parts ([`Restore`]), checking that they
//! hold together ([`Inconsistent`]).

use std::collections::BTreeMap;

use super::super::dedup_index::DedupIndex;
use super::super::record::RouteId;
use super::super::seq_set::Words;
use super::*;

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
    #[error("route {0} is listed twice")]
    Route(RouteId),
    #[error("route {route} holds event {seq} as never attempted, out of their due order")]
    Fresh { route: RouteId, seq: u64 },
    #[error("route {route} lists bucket {index} empty, too large or not after the one before")]
    Bucket { route: RouteId, index: u64 },
    #[error("the checkpoint counts {counted} remembered ids but marks {marked}")]
    IdCount { counted: u64, marked: u64 },
}

/// Builds a [`State`] back from a checkpoint's parts, in the order the checkpoint holds
/// them (routes' names, events with their ids, queues; version 1: the dedup window
/// after the queues), deriving the rest (holders, the dedup index, segment uses) and
/// checking that the parts agree.
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
    ///
    /// `most` bounds `count` by what the input holds: the events listed, or the bytes left
    /// to read when the window is listed with the events.
    pub fn ids_ahead(&mut self, count: u64, most: usize) {
        let s = &mut self.state;
        let count = usize::try_from(count).map_or(most, |n| n.min(most));
        debug_assert_eq!(s.dedup.len(), 0, "sized before the first id");
        s.dedup = DedupIndex::with_room(count + count / 4);
    }

    /// An event still needed; its holders and whether it is remembered are derived.
    /// `due_after_ms` is when its fresh routes are due after its receipt
    /// ([`EventMeta::due_after_ms`]); None (checkpoints of version 1): the due time of the
    /// first route listing it fresh.
    pub fn event(
        &mut self,
        seq: u64,
        location: Location,
        received_at_ms: u64,
        due_after_ms: Option<u32>,
    ) -> Result<(), Inconsistent> {
        if seq >= self.state.next_lsn || self.state.events.contains_key(seq) {
            return Err(Inconsistent::Event(seq));
        }
        if u32::try_from(location.offset).is_err() || due_after_ms == Some(DUE_UNSET) {
            return Err(Inconsistent::Event(seq));
        }
        let meta = EventMeta {
            due_after_ms: due_after_ms.unwrap_or(DUE_UNSET),
            ..EventMeta::new(location, received_at_ms)
        };
        self.state.events.insert(seq, meta);
        Ok(())
    }

    /// Counts `route` among `seq`'s holders. The first route listing an event pending and
    /// never attempted gives it its due time (so that route, and every other one due then,
    /// holds it fresh); `due_ms` is that listing's due time.
    fn hold(&mut self, route: RouteId, seq: u64, due_ms: Option<u64>) -> Result<u64, Inconsistent> {
        hold(&mut self.state.events, route, seq, due_ms)
    }

    /// The queue of `route`, the one of the previous entry most of the time (a checkpoint
    /// lists each route's entries together).
    fn queue(&mut self, route: RouteId) -> &mut RouteQueue {
        self.state.routes.entry(route).or_default()
    }

    /// Starts the listing of `route`'s queue, where a checkpoint lists each route once
    /// (version 2): refused if it was listed before.
    pub fn route(&mut self, route: RouteId) -> Result<(), Inconsistent> {
        match self.state.routes.entry(route) {
            std::collections::hash_map::Entry::Occupied(_) => Err(Inconsistent::Route(route)),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(RouteQueue::default());
                Ok(())
            }
        }
    }

    /// Ends the listing of `route`'s queue: a queue that holds nothing is not kept (the
    /// state keeps none, see `State::release`).
    pub fn route_end(&mut self, route: RouteId) {
        if self
            .state
            .routes
            .get(&route)
            .is_some_and(RouteQueue::is_empty)
        {
            self.state.routes.remove(&route);
        }
    }

    /// Event `seq`, just listed, is remembered for its id, whose fingerprint is
    /// `fingerprint` (version 2 marks them on the events, in seq order): refused if an
    /// earlier event holds that fingerprint, which no state does.
    pub fn remembered(&mut self, fingerprint: u64, seq: u64) -> Result<(), Inconsistent> {
        let s = &mut self.state;
        s.dedup.room_for_one(seq, &s.events);
        let Some(meta) = s.events.get_mut(seq) else {
            return Err(Inconsistent::Id(seq));
        };
        meta.set_remembered(true);
        meta.fingerprint = fingerprint;
        match s.dedup.insert(fingerprint, seq, &s.events) {
            Some(_) => Err(Inconsistent::Id(seq)),
            None => Ok(()),
        }
    }

    /// A bitmap of `route`'s never-attempted events (see [`SeqSet::buckets`]), the route's
    /// first entries, each bucket past the one before; each due at its event's due time,
    /// which must not fall as their seqs grow.
    pub fn fresh(&mut self, route: RouteId, index: u64, words: Words) -> Result<(), Inconsistent> {
        let State { events, routes, .. } = &mut self.state;
        let q = routes.entry(route).or_default();
        if !q.fresh.push_bucket(index, words) {
            return Err(Inconsistent::Bucket { route, index });
        }
        let mut last = q.fresh_last;
        for seq in SeqSet::members(index, &words) {
            let due = hold(events, route, seq, None)?;
            if last.is_some_and(|(_, d)| due < d) {
                return Err(Inconsistent::Fresh { route, seq });
            }
            last = Some((seq, due));
        }
        q.fresh_last = last;
        Ok(())
    }

    /// One of `route`'s pending events with a state of its own, kept as such (version 2:
    /// after the route's fresh ones).
    pub fn other(
        &mut self,
        route: RouteId,
        due_ms: u64,
        seq: u64,
        entry: Entry,
    ) -> Result<(), Inconsistent> {
        self.hold(route, seq, None)?;
        let (q, entry) = self.not_held_yet(route, seq, entry)?;
        q.due_of.insert(seq, due_ms);
        q.other.insert((due_ms, seq), entry);
        Ok(())
    }

    /// `route`'s queue, where `seq` is not pending or dead yet (held twice by one route is
    /// refused, as is a route listed twice), and `entry` with its error text shared.
    fn not_held_yet(
        &mut self,
        route: RouteId,
        seq: u64,
        entry: Entry,
    ) -> Result<(&mut RouteQueue, Entry), Inconsistent> {
        let q = self.queue(route);
        if q.is_pending(seq) || q.dead.contains_key(&seq) {
            return Err(Inconsistent::Held { route, seq });
        }
        let entry = Entry {
            last_error: entry.last_error.map(|e| q.share_error(e)),
            ..entry
        };
        Ok((q, entry))
    }

    /// One of `route`'s pending events, given back to its queue as [`RouteQueue::put`]
    /// places it (version 1 lists every pending event so).
    pub fn pending(
        &mut self,
        route: RouteId,
        due_ms: u64,
        seq: u64,
        entry: Entry,
    ) -> Result<(), Inconsistent> {
        let event_due = self.hold(route, seq, entry.is_fresh().then_some(due_ms))?;
        let (q, entry) = self.not_held_yet(route, seq, entry)?;
        q.put(due_ms, seq, entry, Some(event_due));
        Ok(())
    }

    pub fn dead(&mut self, route: RouteId, seq: u64, dead: DeadEntry) -> Result<(), Inconsistent> {
        self.hold(route, seq, None)?;
        let q = self.queue(route);
        let dead = DeadEntry {
            error: q.share_error(dead.error),
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
                meta.fingerprint = 0;
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

/// Counts `route` among `seq`'s holders in `events` (see [`Restore::hold`]); returns the
/// event's due time.
fn hold(
    events: &mut EventTable,
    route: RouteId,
    seq: u64,
    due_ms: Option<u64>,
) -> Result<u64, Inconsistent> {
    match events.get_mut(seq) {
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
