//! The writer's in-memory index of the webhook ids it remembers: a 64-bit fingerprint of each
//! id → the time of its `seen_by_time` row. See "Dedup" in the spool's documentation.
//!
//! The map is a hint that the writer checks: every hit is confirmed by reading the row it
//! names, so no entry can make a webhook a false duplicate. It holds an entry for every row of
//! `seen_by_time` and no other (loaded at open, then changed with each transaction, and the
//! changes of a transaction that fails are undone), with one exception: when two remembered ids share a fingerprint, only the later
//! one is found, so a retry of the earlier one would be stored once more. That is a duplicate
//! delivery, which at-least-once delivery allows, never a loss. It needs a 64-bit collision
//! between ids within one `dedup_window`: with 6 million ids remembered (10 minutes at
//! 10,000 webhooks/s), about one in 3 × 10^12 new ids.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};

use crate::spool::dedup_index::Prehashed;

pub(super) struct SeenIndex {
    /// Keys of the fingerprint hash, random per process (SipHash).
    keys: RandomState,
    at: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    /// What the open transaction changed (fingerprint, entry before), to undo if it fails.
    undo: Vec<(u64, Option<u64>)>,
}

impl SeenIndex {
    /// Room for `ids` without growing: a map that grows holds its old and new tables at once.
    pub(super) fn with_capacity(ids: usize) -> SeenIndex {
        SeenIndex {
            keys: RandomState::new(),
            at: HashMap::with_capacity_and_hasher(ids, Default::default()),
            undo: Vec::new(),
        }
    }

    /// Adds a row read from disk at open (nothing to undo).
    pub(super) fn load(&mut self, id: &str, received_ms: u64) {
        let fingerprint = self.fingerprint(id);
        self.at.insert(fingerprint, received_ms);
    }

    /// The transaction that made the changes since the last call was committed: keep them.
    pub(super) fn committed(&mut self) {
        self.undo.clear();
    }

    /// The transaction failed: undo its changes, so the map again matches the rows on disk
    /// (an entry without a row would never be swept).
    pub(super) fn rolled_back(&mut self) {
        while let Some((fingerprint, before)) = self.undo.pop() {
            match before {
                Some(at) => self.at.insert(fingerprint, at),
                None => self.at.remove(&fingerprint),
            };
        }
    }

    pub(super) fn fingerprint(&self, id: &str) -> u64 {
        self.keys.hash_one(id)
    }

    /// When the id with this fingerprint was received, if one is remembered.
    pub(super) fn get(&self, fingerprint: u64) -> Option<u64> {
        self.at.get(&fingerprint).copied()
    }

    pub(super) fn insert(&mut self, fingerprint: u64, received_ms: u64) {
        let before = self.at.insert(fingerprint, received_ms);
        self.undo.push((fingerprint, before));
    }

    /// Forgets `id` received at `received_ms` (its row was swept), unless its fingerprint now
    /// names a later id.
    pub(super) fn forget(&mut self, id: &str, received_ms: u64) {
        let fingerprint = self.fingerprint(id);
        if self.at.get(&fingerprint) == Some(&received_ms) {
            self.at.remove(&fingerprint);
            self.undo.push((fingerprint, Some(received_ms)));
        }
    }

    /// Gives memory back after a burst has been swept (a map never shrinks by itself).
    pub(super) fn shrink_if_sparse(&mut self) {
        if self.at.capacity() > 4096 && self.at.len() < self.at.capacity() / 4 {
            self.at.shrink_to_fit();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_found_by_its_fingerprint_until_forgotten_at_its_own_time() {
        let mut seen = SeenIndex::with_capacity(0);
        let id = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let fp = seen.fingerprint(id);
        assert_eq!(seen.get(fp), None);
        seen.insert(fp, 1_000);
        assert_eq!(seen.get(fp), Some(1_000));
        // Received again later (after its window): a sweep of the old row keeps the new one.
        seen.insert(fp, 2_000);
        seen.forget(id, 1_000);
        assert_eq!(seen.get(fp), Some(2_000));
        seen.forget(id, 2_000);
        assert_eq!(seen.get(fp), None);
        assert_eq!(seen.len(), 0);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_the_map_as_the_last_commit_left_it() {
        let mut seen = SeenIndex::with_capacity(0);
        let (a, b, c) = ("a", "b", "c");
        let (fa, fb, fc) = (
            seen.fingerprint(a),
            seen.fingerprint(b),
            seen.fingerprint(c),
        );
        seen.insert(fa, 1);
        seen.insert(fb, 2);
        seen.committed();

        // One failed transaction: a new id, an id received again, and a sweep.
        seen.insert(fc, 3);
        seen.insert(fa, 4);
        seen.forget(b, 2);
        seen.insert(fb, 5);
        seen.rolled_back();
        assert_eq!(
            (seen.get(fa), seen.get(fb), seen.get(fc)),
            (Some(1), Some(2), None)
        );

        // A committed one stays, and a later failure does not reach back past it.
        seen.insert(fc, 6);
        seen.committed();
        seen.forget(c, 6);
        seen.rolled_back();
        assert_eq!(seen.get(fc), Some(6));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn distinct_ids_have_distinct_fingerprints_and_the_map_shrinks_after_a_sweep() {
        let mut seen = SeenIndex::with_capacity(0);
        let ids: Vec<String> = (0..100_000).map(|n| format!("id-{n}")).collect();
        for id in &ids {
            let fp = seen.fingerprint(id);
            seen.insert(fp, 7);
        }
        assert_eq!(
            seen.len(),
            ids.len(),
            "no two of 100k ids share a fingerprint"
        );
        let full = seen.at.capacity();
        for id in &ids[..99_000] {
            seen.forget(id, 7);
        }
        seen.shrink_if_sparse();
        assert_eq!(seen.len(), 1_000);
        assert!(
            seen.at.capacity() < full / 10,
            "{} of {full}",
            seen.at.capacity()
        );
    }
}
