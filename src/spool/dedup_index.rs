//! The dedup index: the remembered events, found by their webhook id's fingerprint. Pure.
//!
//! An entry is the event's seq alone, kept as 32 bits from a base: the remembered ids lie
//! within the dedup window, far fewer than 4 billion seqs apart (a million ids span a few
//! million). Its fingerprint is read from the event's metadata, which holds it anyway
//! (expiry removes an id by it), so a slot costs 5 bytes (the offset and hashbrown's
//! control byte) where a map from fingerprint to seq costs 17. At a million ids the table
//! has 2^21 slots: 10.5 MiB instead of 36, and half as much again while it grows, when the
//! old table and the new one are both held. Should the ids ever span more than 32 bits of
//! seqs, the table is rebuilt with whole seqs (9 bytes a slot), until a later rebuild (when
//! it grows) finds that they fit again.
//!
//! The price: finding an entry reads the metadata of each candidate whose 7 control bits
//! match (one, nearly always). Growing must not read each entry's metadata in slot order
//! (random seqs: 10 times slower than a map's rehash, 0.3 s at a million ids, under the
//! writer's lock); the table is rebuilt instead from a walk of the event table in seq order,
//! with the fingerprints at hand ([`DedupIndex::room_for_one`]), as fast as the map grew.

use hashbrown::hash_table::{Entry, HashTable};

use super::event_table::EventTable;

/// The remembered events by fingerprint. Every seq it holds must be in the [`EventTable`]
/// passed to it, with the fingerprint it was inserted under: the table's hash of an entry
/// is read from there.
#[derive(Debug, Clone)]
pub struct DedupIndex {
    seqs: Slots,
    /// What `seqs` could hold when it was built. Removals leave tombstones that lower what
    /// it can take before it must be rebuilt, not this.
    built_for: usize,
}

/// The table's entries: offsets from a base while every seq fits, whole seqs otherwise.
#[derive(Debug, Clone)]
enum Slots {
    Narrow { base: u64, offsets: HashTable<u32> },
    Wide(HashTable<u64>),
}

impl Default for DedupIndex {
    fn default() -> Self {
        DedupIndex::with_room(0)
    }
}

impl Slots {
    /// A table with room for `n` entries from `first` to `last`.
    fn for_span(n: usize, first: u64, last: u64) -> Slots {
        if last - first <= u64::from(u32::MAX) {
            Slots::Narrow {
                base: first,
                offsets: HashTable::with_capacity(n),
            }
        } else {
            Slots::Wide(HashTable::with_capacity(n))
        }
    }

    /// Whether `seq` can be held as it is.
    fn holds(&self, seq: u64) -> bool {
        match self {
            Slots::Narrow { base, .. } => seq
                .checked_sub(*base)
                .is_some_and(|o| o <= u64::from(u32::MAX)),
            Slots::Wide(_) => true,
        }
    }

    fn len(&self) -> usize {
        match self {
            Slots::Narrow { offsets, .. } => offsets.len(),
            Slots::Wide(seqs) => seqs.len(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Slots::Narrow { offsets, .. } => offsets.capacity(),
            Slots::Wide(seqs) => seqs.capacity(),
        }
    }
}

/// The fingerprint of event `seq`, its hash in the index.
fn fingerprint(events: &EventTable, seq: u64) -> u64 {
    let meta = events.get(seq);
    debug_assert!(
        meta.is_some(),
        "the dedup index names event {seq}, not listed"
    );
    meta.map_or(0, |m| m.fingerprint)
}

impl DedupIndex {
    pub fn new() -> DedupIndex {
        DedupIndex::default()
    }

    /// The remembered event whose id has fingerprint `fp`.
    pub fn get(&self, fp: u64, events: &EventTable) -> Option<u64> {
        match &self.seqs {
            Slots::Narrow { base, offsets } => offsets
                .find(fp, |&o| fingerprint(events, base + u64::from(o)) == fp)
                .map(|&o| base + u64::from(o)),
            Slots::Wide(seqs) => seqs
                .find(fp, |&seq| fingerprint(events, seq) == fp)
                .copied(),
        }
    }

    /// An empty index with room for `n` entries.
    pub fn with_room(n: usize) -> DedupIndex {
        let seqs = Slots::for_span(n, 0, 0);
        DedupIndex {
            built_for: seqs.capacity(),
            seqs,
        }
    }

    /// Makes sure the next [`DedupIndex::insert`], of `seq`, finds a free slot and can hold
    /// `seq`, rebuilding the table if not: twice the size when it is full, from the lowest
    /// remembered seq when `seq` is more than 32 bits past its base. The rebuild lists the
    /// events `events` marks remembered, so it must be called when those are exactly the
    /// ones the index names (between two records, not while one is half applied).
    ///
    /// Tombstones count as used: a removal leaves one only where its probe group has no
    /// free slot, so they build up only in a table near its 7/8 load, which was close to
    /// doubling anyway. (hashbrown rebuilds in place a table at most half full that
    /// tombstones filled; below half load, a group of 16 slots with none free is too rare
    /// for that case to be worth a branch here.)
    pub fn room_for_one(&mut self, seq: u64, events: &EventTable) {
        let len = self.seqs.len();
        let full = len >= self.seqs.capacity();
        if !full && self.seqs.holds(seq) {
            return;
        }
        let room = if full {
            (self.built_for + 1).max(len + 1)
        } else {
            self.built_for
        };
        let mut remembered = events.iter().filter(|(_, m)| m.remembered()).peekable();
        let first = remembered.peek().map_or(seq, |(s, _)| *s).min(seq);
        let last = events.last_seq().map_or(seq, |last| last.max(seq));
        let mut seqs = Slots::for_span(room, first, last);
        for (seq, meta) in remembered {
            match &mut seqs {
                Slots::Narrow { base, offsets } => {
                    let base = *base;
                    offsets.insert_unique(meta.fingerprint, (seq - base) as u32, |&o| {
                        fingerprint(events, base + u64::from(o))
                    });
                }
                Slots::Wide(seqs) => {
                    seqs.insert_unique(meta.fingerprint, seq, |&s| fingerprint(events, s));
                }
            }
        }
        debug_assert_eq!(seqs.len(), len, "the index and the marks disagree");
        *self = DedupIndex {
            built_for: seqs.capacity(),
            seqs,
        };
    }

    /// Names `seq` for fingerprint `fp` (which `events` must already give it), and returns
    /// the event it named before, if any. After [`DedupIndex::room_for_one`] for `seq`,
    /// never grows the table; otherwise it may, reading every entry's metadata (and, for a
    /// seq the table cannot hold as it is, holding whole seqs from then on).
    pub fn insert(&mut self, fp: u64, seq: u64, events: &EventTable) -> Option<u64> {
        debug_assert_eq!(fingerprint(events, seq), fp);
        if !self.seqs.holds(seq) {
            self.widen(events);
        }
        match &mut self.seqs {
            Slots::Narrow { base, offsets } => {
                let base = *base;
                let at = |o: u32| base + u64::from(o);
                match offsets.entry(
                    fp,
                    |&o| fingerprint(events, at(o)) == fp,
                    |&o| fingerprint(events, at(o)),
                ) {
                    Entry::Occupied(mut e) => {
                        Some(at(std::mem::replace(e.get_mut(), (seq - base) as u32)))
                    }
                    Entry::Vacant(e) => {
                        e.insert((seq - base) as u32);
                        None
                    }
                }
            }
            Slots::Wide(seqs) => match seqs.entry(
                fp,
                |&s| fingerprint(events, s) == fp,
                |&s| fingerprint(events, s),
            ) {
                Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), seq)),
                Entry::Vacant(e) => {
                    e.insert(seq);
                    None
                }
            },
        }
    }

    /// Holds whole seqs from now on, keeping every entry (the slow way: each entry's
    /// metadata read in slot order).
    fn widen(&mut self, events: &EventTable) {
        let Slots::Narrow { base, offsets } = &self.seqs else {
            return;
        };
        let mut seqs = HashTable::with_capacity(offsets.capacity());
        for &o in offsets {
            let seq = base + u64::from(o);
            seqs.insert_unique(fingerprint(events, seq), seq, |&s| fingerprint(events, s));
        }
        self.seqs = Slots::Wide(seqs);
    }

    /// Forgets fingerprint `fp`; returns the event it named.
    pub fn remove(&mut self, fp: u64, events: &EventTable) -> Option<u64> {
        match &mut self.seqs {
            Slots::Narrow { base, offsets } => {
                let base = *base;
                let found = offsets
                    .find_entry(fp, |&o| fingerprint(events, base + u64::from(o)) == fp)
                    .ok()?;
                Some(base + u64::from(found.remove().0))
            }
            Slots::Wide(seqs) => {
                let found = seqs
                    .find_entry(fp, |&seq| fingerprint(events, seq) == fp)
                    .ok()?;
                Some(found.remove().0)
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }
}

/// The hasher of a map whose keys are already fingerprints: it passes them through. The
/// facade's map of claimed ids uses it, and so does the redb spool's seen index.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach this map; kept total for any other use.
        for b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::state::{EventMeta, Location};

    /// An event remembered with fingerprint `fp`.
    fn remembered(fp: u64) -> EventMeta {
        let location = Location {
            segment: 1,
            offset: 0,
            len: 1,
        };
        let mut meta = EventMeta::new(location, 0);
        meta.set_remembered(true);
        meta.fingerprint = fp;
        meta
    }

    fn table(events: &[(u64, u64)]) -> EventTable {
        let mut t = EventTable::new();
        for &(seq, fp) in events {
            t.insert(seq, remembered(fp));
        }
        t
    }

    #[test]
    fn an_id_is_found_by_its_fingerprint_and_a_later_event_with_it_takes_its_place() {
        let events = table(&[(1, 0xa), (2, 0xb), (3, 0xa)]);
        let mut index = DedupIndex::new();
        assert_eq!(index.insert(0xa, 1, &events), None);
        assert_eq!(index.insert(0xb, 2, &events), None);
        assert_eq!(index.get(0xa, &events), Some(1));
        assert_eq!(index.get(0xc, &events), None);
        assert_eq!(index.insert(0xa, 3, &events), Some(1), "the earlier event");
        assert_eq!(index.get(0xa, &events), Some(3));
        assert_eq!(index.len(), 2);
        assert_eq!(index.remove(0xa, &events), Some(3));
        assert_eq!(index.remove(0xa, &events), None);
        assert_eq!((index.len(), index.get(0xb, &events)), (1, Some(2)));
    }

    #[test]
    fn fingerprints_that_share_their_hash_bits_are_told_apart_by_the_events_metadata() {
        // Same low bits (the slot) and same top 7 bits (the control byte).
        let (a, b) = (0x8000_0000_0000_0001, 0x8000_0001_0000_0001);
        let events = table(&[(1, a), (2, b)]);
        let mut index = DedupIndex::new();
        index.insert(a, 1, &events);
        index.insert(b, 2, &events);
        assert_eq!(index.get(a, &events), Some(1));
        assert_eq!(index.get(b, &events), Some(2));
    }

    fn fingerprints(n: u64) -> Vec<(u64, u64)> {
        (1..=n)
            .map(|s| (s, s.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect()
    }

    #[test]
    fn growing_keeps_every_entry_findable() {
        let pairs = fingerprints(10_000);
        let events = table(&pairs);
        let mut index = DedupIndex::new();
        for &(seq, fp) in &pairs {
            index.insert(fp, seq, &events);
        }
        assert!(pairs
            .iter()
            .all(|&(seq, fp)| index.get(fp, &events) == Some(seq)));
    }

    #[test]
    fn room_is_made_by_doubling_when_full_and_churn_below_that_never_grows_the_table() {
        let pairs = fingerprints(10_000);
        let mut events = EventTable::new();
        let mut index = DedupIndex::new();
        let mut sizes = Vec::new();
        for &(seq, fp) in &pairs {
            index.room_for_one(seq, &events);
            events.insert(seq, remembered(fp));
            let capacity = index.seqs.capacity();
            assert_eq!(index.insert(fp, seq, &events), None);
            assert_eq!(index.seqs.capacity(), capacity, "insert never grows it");
            if sizes.last() != Some(&index.built_for) {
                sizes.push(index.built_for);
            }
        }
        assert!(sizes.windows(2).all(|w| w[1] > w[0] && w[1] < 2 * w[0] + 2));
        // Expiry's way: the oldest go (forgotten in the marks too) down to a quarter of the
        // table, then one new for each one gone, long enough to use every slot several
        // times over: the table keeps its size.
        let size = index.built_for;
        let mut window: std::collections::VecDeque<(u64, u64)> = pairs.into();
        let mut churn = |index: &mut DedupIndex, events: &mut EventTable, add: Option<u64>| {
            let (seq, fp) = window.pop_front().unwrap();
            assert_eq!(index.remove(fp, events), Some(seq));
            events.remove(seq);
            if let Some(new_seq) = add {
                let new_fp = new_seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                index.room_for_one(new_seq, events);
                events.insert(new_seq, remembered(new_fp));
                index.insert(new_fp, new_seq, events);
                window.push_back((new_seq, new_fp));
            }
        };
        while index.len() > size / 4 {
            churn(&mut index, &mut events, None);
        }
        for new_seq in 20_000..20_000 + 4 * size as u64 {
            churn(&mut index, &mut events, Some(new_seq));
        }
        assert_eq!(index.built_for, size);
        assert_eq!(index.len(), size / 4);
        assert!(events
            .iter()
            .all(|(seq, m)| index.get(m.fingerprint, &events) == Some(seq)));
    }

    fn is_narrow(index: &DedupIndex) -> bool {
        matches!(index.seqs, Slots::Narrow { .. })
    }

    #[test]
    fn a_seq_32_bits_past_the_base_moves_the_base_up_to_the_oldest_id_still_remembered() {
        let mut events = EventTable::new();
        let mut index = DedupIndex::new();
        for (seq, fp) in fingerprints(100) {
            index.room_for_one(seq, &events);
            events.insert(seq, remembered(fp));
            index.insert(fp, seq, &events);
        }
        // The first 90 expire; the next id comes 2^32 - 1 seqs after the oldest one left.
        for (seq, fp) in fingerprints(90) {
            assert_eq!(index.remove(fp, &events), Some(seq));
            events.remove(seq);
        }
        let (late, late_fp) = (91 + u64::from(u32::MAX), 0x1234_5678_9abc_def0);
        assert!(
            !index.seqs.holds(late),
            "past 32 bits from the first base, 1"
        );
        index.room_for_one(late, &events);
        events.insert(late, remembered(late_fp));
        assert_eq!(index.insert(late_fp, late, &events), None);
        assert!(is_narrow(&index), "it fits in 32 bits from 91");
        assert_eq!(index.get(late_fp, &events), Some(late));
        for (seq, fp) in fingerprints(100).into_iter().skip(90) {
            assert_eq!(index.get(fp, &events), Some(seq));
        }
    }

    #[test]
    fn ids_more_than_32_bits_of_seqs_apart_are_held_as_whole_seqs() {
        let (old, far) = ((7, 0xaaaa), ((1u64 << 33) + 7, 0xbbbb));
        // Made room for first, as the writer does.
        let mut events = table(&[old]);
        let mut index = DedupIndex::new();
        index.insert(old.1, old.0, &events);
        index.room_for_one(far.0, &events);
        events.insert(far.0, remembered(far.1));
        index.insert(far.1, far.0, &events);
        assert!(!is_narrow(&index));
        assert_eq!(index.get(old.1, &events), Some(old.0));
        assert_eq!(index.get(far.1, &events), Some(far.0));
        // Inserted without room made first: the table widens itself.
        let mut events = table(&[old, far]);
        let mut index = DedupIndex::new();
        index.insert(old.1, old.0, &events);
        index.insert(far.1, far.0, &events);
        assert_eq!(index.get(old.1, &events), Some(old.0));
        assert_eq!(index.get(far.1, &events), Some(far.0));
        assert_eq!(index.remove(old.1, &events), Some(old.0));
        events.remove(old.0);
        assert_eq!((index.len(), index.get(far.1, &events)), (1, Some(far.0)));
    }
}
