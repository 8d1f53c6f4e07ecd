//! The events the state still needs, by seq: a page per 64 consecutive seqs, each a bitmap
//! of the seqs it holds and their metadata packed in seq order. Costs about the metadata's
//! own size per event; a B-tree, filled in seq order as the log fills it, keeps its nodes
//! about half full, which is twice that. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::state::EventMeta;
use crate::spool::seq_set::Bits;

const PAGE_BITS: u32 = 6;
const PAGE_MASK: u64 = (1 << PAGE_BITS) - 1;

#[derive(Debug, Clone, Default)]
struct Page {
    /// Bit `i`: seq `page * 64 + i` is here.
    present: u64,
    /// The metadata of the seqs present, in seq order.
    metas: Vec<EventMeta>,
}

impl Page {
    /// Where seq bit `bit`'s metadata is (or goes) in `metas`.
    fn index(&self, bit: u32) -> usize {
        (self.present & ((1u64 << bit) - 1)).count_ones() as usize
    }

    fn has(&self, bit: u32) -> bool {
        self.present & (1 << bit) != 0
    }
}

/// A map from seq to [`EventMeta`], ordered by seq.
#[derive(Debug, Clone, Default)]
pub struct EventTable {
    /// Shared with the table's clones (a checkpoint's snapshot) until changed: a page is
    /// copied when first changed after a clone, so a clone costs one map entry per page.
    pages: BTreeMap<u64, Arc<Page>>,
    len: usize,
}

fn slot(seq: u64) -> (u64, u32) {
    (seq >> PAGE_BITS, (seq & PAGE_MASK) as u32)
}

impl EventTable {
    pub fn new() -> EventTable {
        EventTable::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, seq: u64) -> Option<&EventMeta> {
        let (page, bit) = slot(seq);
        let page = self.pages.get(&page).filter(|p| p.has(bit))?;
        page.metas.get(page.index(bit))
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut EventMeta> {
        let (page, bit) = slot(seq);
        let page = self.pages.get_mut(&page).filter(|p| p.has(bit))?;
        let page = Arc::make_mut(page);
        let i = page.index(bit);
        page.metas.get_mut(i)
    }

    pub fn contains_key(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Inserts `seq`, or replaces its metadata (returning the old one).
    pub fn insert(&mut self, seq: u64, meta: EventMeta) -> Option<EventMeta> {
        let (page, bit) = slot(seq);
        let page = Arc::make_mut(self.pages.entry(page).or_default());
        let i = page.index(bit);
        if page.has(bit) {
            return Some(std::mem::replace(&mut page.metas[i], meta));
        }
        // Pages grow one entry at a time: no slack kept per page.
        page.metas.reserve_exact(1);
        page.metas.insert(i, meta);
        page.present |= 1 << bit;
        self.len += 1;
        None
    }

    pub fn remove(&mut self, seq: u64) -> Option<EventMeta> {
        let (index, bit) = slot(seq);
        let page = self.pages.get_mut(&index).filter(|p| p.has(bit))?;
        let page = Arc::make_mut(page);
        let meta = page.metas.remove(page.index(bit));
        page.present &= !(1 << bit);
        self.len -= 1;
        if page.present == 0 {
            self.pages.remove(&index);
        } else if page.metas.capacity() >= 2 * page.metas.len() + 8 {
            page.metas.shrink_to_fit();
        }
        Some(meta)
    }

    /// The first event at or after `seq`.
    pub fn first_from(&self, seq: u64) -> Option<(u64, &EventMeta)> {
        let (first, bit) = slot(seq);
        self.pages.range(first..).find_map(|(&index, page)| {
            let from = if index == first { !0u64 << bit } else { !0 };
            let bits = page.present & from;
            (bits != 0).then(|| {
                let b = bits.trailing_zeros();
                (
                    (index << PAGE_BITS) + u64::from(b),
                    &page.metas[page.index(b)],
                )
            })
        })
    }

    /// The highest seq held.
    pub fn last_seq(&self) -> Option<u64> {
        self.pages.iter().rev().find_map(|(&index, page)| {
            (page.present != 0)
                .then(|| (index << PAGE_BITS) + u64::from(63 - page.present.leading_zeros()))
        })
    }

    /// Every event, by seq, to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut EventMeta)> {
        self.pages.iter_mut().flat_map(|(&page, p)| {
            let p = Arc::make_mut(p);
            Bits(p.present)
                .zip(&mut p.metas)
                .map(move |(bit, meta)| ((page << PAGE_BITS) + u64::from(bit), meta))
        })
    }

    /// Every event, by seq.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &EventMeta)> {
        self.pages.iter().flat_map(|(&page, p)| {
            Bits(p.present)
                .zip(&p.metas)
                .map(move |(bit, meta)| ((page << PAGE_BITS) + u64::from(bit), meta))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Location;
    use super::*;
    use proptest::prelude::*;

    fn meta(n: u64) -> EventMeta {
        EventMeta::new(
            Location {
                segment: n,
                offset: n * 3,
                len: n as u32,
            },
            n * 7,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn an_event_table_behaves_like_a_btree_map(
            ops in proptest::collection::vec((0u8..3, 0u64..600), 0..400)
        ) {
            let mut table = EventTable::new();
            let mut model = BTreeMap::new();
            for (op, seq) in ops {
                match op {
                    0 => prop_assert_eq!(table.insert(seq, meta(seq)), model.insert(seq, meta(seq))),
                    1 => prop_assert_eq!(table.remove(seq), model.remove(&seq)),
                    _ => {
                        if let Some(m) = table.get_mut(seq) {
                            m.set_holders(m.holders() + 1);
                        }
                        if let Some(m) = model.get_mut(&seq) {
                            m.set_holders(m.holders() + 1);
                        }
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert_eq!(table.get(seq), model.get(&seq));
                prop_assert_eq!(table.contains_key(seq), model.contains_key(&seq));
                prop_assert_eq!(table.first_from(seq), model.range(seq..).next().map(|(s, m)| (*s, m)));
            }
            let all: Vec<_> = table.iter().map(|(s, m)| (s, *m)).collect();
            let want: Vec<_> = model.iter().map(|(s, m)| (*s, *m)).collect();
            prop_assert_eq!(all, want);
            prop_assert!(table.pages.values().all(|p| p.present != 0 && p.metas.len() == p.present.count_ones() as usize));
        }
    }
}
