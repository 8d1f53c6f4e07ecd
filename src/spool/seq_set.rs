//! A set of seqs as bitmaps, one per range of 1024 consecutive seqs: a route's never-attempted
//! events in the log's state ([`super::state`]), and the redb spool's backlog counts.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Seqs per bitmap bucket of a [`SeqSet`].
pub const BUCKET_BITS: u32 = 10;
pub const WORDS: usize = 1 << (BUCKET_BITS - 6);

/// One bucket's bitmap: bit `b` of word `w` is seq `(index << 10) + 64 w + b`.
pub type Words = [u64; WORDS];

/// A set of seqs stored as one bitmap per range of 1024 consecutive seqs: 128 bytes for each
/// range that holds a member, so about one bit per event for a backlog (seqs are dense), and
/// the smallest member is found without a walk. A clone shares the buckets (copied on write):
/// it costs one map entry per bucket, not the bitmaps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeqSet {
    buckets: BTreeMap<u64, Arc<Words>>,
    len: u64,
}

impl SeqSet {
    fn slot(seq: u64) -> (u64, usize, u64) {
        let bit = (seq & ((1 << BUCKET_BITS) - 1)) as usize;
        (seq >> BUCKET_BITS, bit / 64, 1 << (bit % 64))
    }

    /// Adds `seq`; false if it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (bucket, word, mask) = Self::slot(seq);
        let words = self
            .buckets
            .entry(bucket)
            .or_insert_with(|| Arc::new([0; WORDS]));
        let fresh = words[word] & mask == 0;
        if fresh {
            Arc::make_mut(words)[word] |= mask;
        }
        self.len += u64::from(fresh);
        fresh
    }

    /// Removes `seq`; false if it was not there.
    pub fn remove(&mut self, seq: u64) -> bool {
        let (bucket, word, mask) = Self::slot(seq);
        let Some(words) = self.buckets.get_mut(&bucket) else {
            return false;
        };
        let present = words[word] & mask != 0;
        if !present {
            return false;
        }
        Arc::make_mut(words)[word] &= !mask;
        if words.iter().all(|w| *w == 0) {
            self.buckets.remove(&bucket);
        }
        self.len -= u64::from(present);
        present
    }

    pub fn first(&self) -> Option<u64> {
        let (bucket, words) = self.buckets.first_key_value()?;
        let (i, w) = words.iter().enumerate().find(|(_, w)| **w != 0)?;
        Some((bucket << BUCKET_BITS) + (i as u64) * 64 + u64::from(w.trailing_zeros()))
    }

    pub fn contains(&self, seq: u64) -> bool {
        let (bucket, word, mask) = Self::slot(seq);
        self.buckets
            .get(&bucket)
            .is_some_and(|w| w[word] & mask != 0)
    }

    /// The members, smallest first.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets
            .iter()
            .flat_map(|(&bucket, words)| SeqSet::members(bucket, words))
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The bitmaps, by bucket index (each holds a member): the set as a checkpoint keeps it.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, &Words)> + '_ {
        self.buckets.iter().map(|(&index, words)| (index, &**words))
    }

    /// Adds bucket `index`'s members, `words` (see [`Words`]), past every member so far;
    /// false (and nothing added) if the bucket is empty or not past the last one.
    pub fn push_bucket(&mut self, index: u64, words: Words) -> bool {
        let past = self
            .buckets
            .last_key_value()
            .is_none_or(|(&last, _)| index > last);
        if !past || words.iter().all(|&w| w == 0) || index > u64::MAX >> BUCKET_BITS {
            return false;
        }
        self.len += words.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        self.buckets.insert(index, Arc::new(words));
        true
    }

    /// The members of bucket `index`'s bitmap `words`, smallest first.
    pub fn members(index: u64, words: &Words) -> impl Iterator<Item = u64> + '_ {
        words.iter().enumerate().flat_map(move |(i, &w)| {
            let base = (index << BUCKET_BITS) + (i as u64) * 64;
            Bits(w).map(move |bit| base + u64::from(bit))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The set bits of a word, lowest first.
pub(crate) struct Bits(pub(crate) u64);

impl Iterator for Bits {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_seq_set_behaves_like_a_btree_set(ops in proptest::collection::vec((any::<bool>(), 0u64..5000), 0..400)) {
            let mut set = SeqSet::default();
            let mut model = std::collections::BTreeSet::new();
            for (add, seq) in ops {
                if add {
                    prop_assert_eq!(set.insert(seq), model.insert(seq));
                } else {
                    prop_assert_eq!(set.remove(seq), model.remove(&seq));
                }
                prop_assert_eq!(set.len(), model.len() as u64);
                prop_assert_eq!(set.first(), model.first().copied());
                prop_assert_eq!(set.contains(seq), model.contains(&seq));
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(set.buckets.len(), model.iter().map(|s| s >> BUCKET_BITS).collect::<std::collections::BTreeSet<_>>().len());
            // Its buckets, pushed in order, build the same set back.
            let mut again = SeqSet::default();
            for (index, words) in set.buckets() {
                prop_assert!(again.push_bucket(index, *words));
            }
            prop_assert_eq!(again, set);
        }
    }

    #[test]
    fn a_bucket_is_pushed_only_past_the_last_one_and_never_empty() {
        let mut set = SeqSet::default();
        let mut words = [0; WORDS];
        words[1] = 0b101;
        assert!(!set.push_bucket(3, [0; WORDS]));
        assert!(set.push_bucket(3, words));
        assert!(!set.push_bucket(3, words));
        assert!(!set.push_bucket(2, words));
        assert!(!set.push_bucket(u64::MAX, words), "past the last seq");
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [3 * 1024 + 64, 3 * 1024 + 66]
        );
        assert_eq!(set.len(), 2);
    }
}
