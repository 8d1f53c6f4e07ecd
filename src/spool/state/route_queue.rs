//! One route's queue ([`RouteQueue`]): its pending events in delivery order, fresh ones as a
//! bitmap, and its dead letters; read through [`RouteView`].

use super::*;

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
    pub(super) fresh: SeqSet,
    /// The last seq that joined the fresh ones, with its due time (None once they are
    /// all gone).
    pub(super) fresh_last: Option<(u64, u64)>,
    /// (due_ms, seq) → state, for the events that are not fresh: their delivery order.
    pub(super) other: BTreeMap<(u64, u64), Entry>,
    /// seq → its due time, to find an event's place in `other`.
    pub(super) due_of: BTreeMap<u64, u64>,
    /// seq → why it died.
    pub(super) dead: BTreeMap<u64, DeadEntry>,
    /// The error text most recently recorded on this route, shared by the entries that
    /// record the same one: while a destination is down, every attempt fails with the same
    /// words (120 bytes for a refused connection), and a backlog of a million events would
    /// otherwise hold a million copies of them per route. How the state stores what it
    /// holds, not part of it.
    pub(super) recent_error: Option<Arc<str>>,
}

impl RouteQueue {
    /// `error` as entries of this route keep it: the text recorded last if it is the
    /// same, else a new one (which becomes the one recorded last).
    pub(super) fn error_text(&mut self, error: &str) -> Arc<str> {
        match &self.recent_error {
            Some(recent) if **recent == *error => recent.clone(),
            _ => self.recent_error.insert(Arc::from(error)).clone(),
        }
    }

    /// `error`, or the text recorded last if it is the same (which `error` becomes
    /// otherwise): as [`RouteQueue::error_text`], for a text already shared.
    pub(super) fn share_error(&mut self, error: Arc<str>) -> Arc<str> {
        match &self.recent_error {
            // By address first: a checkpoint's entries name one text by number.
            Some(recent) if Arc::ptr_eq(recent, &error) || **recent == *error => recent.clone(),
            _ => self.recent_error.insert(error).clone(),
        }
    }

    /// Takes `seq` out of the pending events: its due time and state.
    pub(super) fn take(&mut self, seq: u64, events: &Events) -> Option<(u64, Entry)> {
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
    pub(super) fn put(&mut self, due: u64, seq: u64, entry: Entry, event_due: Option<u64>) {
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

    pub(super) fn is_pending(&self, seq: u64) -> bool {
        self.fresh.contains(seq) || self.due_of.contains_key(&seq)
    }

    /// Takes every pending event out; returns their seqs.
    pub(super) fn take_all(&mut self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.fresh.iter().collect();
        seqs.extend(self.due_of.keys());
        self.fresh = SeqSet::default();
        self.fresh_last = None;
        self.other.clear();
        self.due_of.clear();
        seqs
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.other.is_empty() && self.dead.is_empty()
    }
}

/// A route's queue as the state holds it: its pending events in delivery order, its dead
/// letters.
#[derive(Debug, Clone, Copy)]
pub struct RouteView<'a> {
    pub(super) queue: &'a RouteQueue,
    pub(super) events: &'a Events,
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
        let mut other = self.others().peekable();
        std::iter::from_fn(move || match (fresh.peek(), other.peek()) {
            (Some(f), Some(o)) if (f.0, f.1) > (o.0, o.1) => other.next(),
            (Some(_), _) => fresh.next(),
            (None, _) => other.next(),
        })
    }

    /// The pending events never attempted (see [`RouteQueue`]): each due at its event's due
    /// time, which grows with their seqs.
    pub fn fresh(self) -> &'a SeqSet {
        &self.queue.fresh
    }

    /// The pending events with a state of their own, in delivery order: (due_ms, seq, state).
    pub fn others(self) -> impl ExactSizeIterator<Item = (u64, u64, &'a Entry)> + 'a {
        self.queue
            .other
            .iter()
            .map(|(&(due, seq), e)| (due, seq, e))
    }

    pub fn pending_len(self) -> usize {
        self.queue.fresh.len() as usize + self.queue.other.len()
    }

    /// Dead letters in seq order.
    pub fn dead(self) -> impl Iterator<Item = (u64, &'a DeadEntry)> + 'a {
        self.queue.dead.iter().map(|(&seq, d)| (seq, d))
    }

    /// Dead letter `seq`, if the route gave up on it.
    pub fn dead_letter(self, seq: u64) -> Option<&'a DeadEntry> {
        self.queue.dead.get(&seq)
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
