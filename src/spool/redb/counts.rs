//! Per-route backlog figures (pending events, the oldest of them, dead letters) kept in memory
//! so that `/metrics` and `/api/routes` read them in O(routes) instead of walking the tables.
//!
//! Built by one scan of `pending` and `dead` in the snapshot taken when the spool opens (on a
//! thread of its own, see `SharedCounts` in `mod.rs`); after that only the writer changes
//! them, applying the [`Change`]s of a transaction once it is committed (a failed commit
//! changes nothing). Pure: no I/O, no clock.

use std::collections::HashMap;

use crate::spool::seq_set::SeqSet;

/// What one route holds in the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteCounts {
    /// Seqs of the route's `pending` rows (one row per event and route).
    pub pending: SeqSet,
    /// Number of the route's `dead` rows.
    pub dead: u64,
}

/// A change to one route's rows, recorded while a transaction is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddPending(String, u64),
    RemovePending(String, u64),
    AddDead(String),
    RemoveDead(String),
}

/// Every route that holds rows. A route whose last row goes is forgotten.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    routes: HashMap<String, RouteCounts>,
}

impl Counts {
    fn route(&mut self, name: &str) -> &mut RouteCounts {
        if !self.routes.contains_key(name) {
            self.routes.insert(name.to_string(), RouteCounts::default());
        }
        self.routes.get_mut(name).expect("just inserted")
    }

    /// Counts a `pending` row (at open).
    pub fn add_pending(&mut self, route: &str, seq: u64) {
        self.route(route).pending.insert(seq);
    }

    /// Counts a `dead` row (at open).
    pub fn add_dead(&mut self, route: &str) {
        self.route(route).dead += 1;
    }

    /// Applies the changes of one committed transaction, in order.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            match change {
                Change::AddPending(route, seq) => {
                    self.route(&route).pending.insert(seq);
                }
                Change::RemovePending(route, seq) => {
                    if let Some(r) = self.routes.get_mut(&route) {
                        r.pending.remove(seq);
                    }
                    self.forget_if_empty(&route);
                }
                Change::AddDead(route) => self.route(&route).dead += 1,
                Change::RemoveDead(route) => {
                    if let Some(r) = self.routes.get_mut(&route) {
                        r.dead = r.dead.saturating_sub(1);
                    }
                    self.forget_if_empty(&route);
                }
            }
        }
    }

    fn forget_if_empty(&mut self, route: &str) {
        if self
            .routes
            .get(route)
            .is_some_and(|r| r.pending.is_empty() && r.dead == 0)
        {
            self.routes.remove(route);
        }
    }

    pub fn get(&self, route: &str) -> Option<&RouteCounts> {
        self.routes.get(route)
    }

    /// Names of the routes holding rows, sorted.
    pub fn route_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_forgotten_when_its_last_row_goes() {
        let mut counts = Counts::default();
        counts.apply([
            Change::AddPending("a".into(), 7),
            Change::AddPending("a".into(), 3000),
            Change::AddPending("b".into(), 7),
        ]);
        assert_eq!(counts.get("a").unwrap().pending.first(), Some(7));
        counts.apply([
            Change::RemovePending("a".into(), 7),
            Change::AddDead("a".into()),
        ]);
        let a = counts.get("a").unwrap();
        assert_eq!(
            (a.pending.len(), a.pending.first(), a.dead),
            (1, Some(3000), 1)
        );
        counts.apply([
            Change::RemovePending("a".into(), 3000),
            Change::RemoveDead("a".into()),
        ]);
        assert_eq!(counts.route_names(), ["b"]);
    }
}
