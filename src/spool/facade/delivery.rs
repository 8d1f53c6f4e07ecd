//! The delivery side of the spool: which events of a route are due (with the FIFO holds of
//! ordered routes, see "FIFO holds" in the module documentation) and how attempts ended,
//! recorded as one submission per batch.

use super::*;

/// The message groups an ordered route's read may not deliver from (see "FIFO holds").
#[derive(Default)]
struct Blocked {
    groups: HashSet<u64>,
    /// An event of group 0 (the whole route) waits: nothing after it goes.
    all: bool,
}

impl Blocked {
    fn blocks(&self, group: u64) -> bool {
        self.all || (group == 0 && !self.groups.is_empty()) || self.groups.contains(&group)
    }

    fn add(&mut self, group: u64) {
        if group == 0 {
            self.all = true;
        } else {
            self.groups.insert(group);
        }
    }
}

impl LogSpool {
    /// Records how a delivery attempt ended. Returns once durable.
    pub async fn complete(
        &self,
        route: &str,
        key: PendingKey,
        completion: Completion,
    ) -> Result<(), SpoolError> {
        self.complete_batch(route, vec![(key, completion)]).await
    }

    /// Records how the attempts of one batch of `route` ended: one submission (so one group,
    /// all or nothing), answered once durable. A completion names the event by seq alone:
    /// `key.due_ms` is not checked (the redb spool ignores a key whose due time moved).
    pub async fn complete_batch(
        &self,
        route: &str,
        outcomes: Vec<(PendingKey, Completion)>,
    ) -> Result<(), SpoolError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let Some(route) = self.route_id(route) else {
            // No record ever named the route: it holds nothing to complete.
            return Ok(());
        };
        let now = self.inner.clock.now_ms();
        let records: Vec<Record<'_>> = outcomes
            .iter()
            .map(|(key, completion)| {
                let seq = key.seq;
                match completion {
                    Completion::Delivered => Record::Delivered { route, seq },
                    Completion::Retry {
                        due_ms,
                        attempts,
                        error,
                    } => Record::Retry {
                        route,
                        seq,
                        due_ms: *due_ms,
                        attempts: *attempts,
                        error,
                    },
                    Completion::Hold {
                        not_before_ms,
                        attempts,
                        error,
                    } => Record::Hold {
                        route,
                        seq,
                        not_before_ms: *not_before_ms,
                        attempts: *attempts,
                        error,
                    },
                    Completion::Dead { attempts, error } => Record::Dead {
                        route,
                        seq,
                        attempts: *attempts,
                        error,
                        dead_at_ms: now,
                    },
                }
            })
            .collect();
        // Completions wait for room rather than fail (as the redb spool's do): a full group
        // only delays them.
        let ticket = self.submit(&records, true).await?;
        self.settle(&ticket).await
    }

    /// Up to `limit` events of `route` due at `now_ms`, oldest due first, skipping
    /// `in_flight`. On an `ordered` route an event held back until later, or one still in
    /// flight, blocks every later event of its message group (see "FIFO holds" in mod.rs;
    /// group 0, the whole route, stops the read there). Blocking: reads the events' records
    /// back.
    pub fn due(
        &self,
        route: &str,
        now_ms: u64,
        in_flight: &HashSet<u64>,
        limit: usize,
        ordered: bool,
    ) -> Result<Due, SpoolError> {
        let Some(route) = self.route_id(route) else {
            return Ok(Due::default());
        };
        let mut next_due_ms: Option<u64> = None;
        let picked: Vec<(PendingKey, PendingState, Location)> = self.with_state(|s| {
            let mut picked = Vec::new();
            let Some(q) = s.route(route) else {
                return picked;
            };
            let mut blocked = Blocked::default();
            for (due_ms, seq, entry) in q.pending() {
                if due_ms > now_ms || picked.len() == limit {
                    next_due_ms = Some(next_due_ms.map_or(due_ms, |d| d.min(due_ms)));
                    break;
                }
                let held = entry.not_before_ms > now_ms;
                let flying = in_flight.contains(&seq);
                if ordered {
                    if held {
                        let at = entry.not_before_ms;
                        next_due_ms = Some(next_due_ms.map_or(at, |d| d.min(at)));
                    }
                    // Nothing of a group goes ahead of an event of it that waits: a hold
                    // keeps its place, and an outcome still in flight may turn out a hold.
                    if held || flying || blocked.blocks(entry.group) {
                        blocked.add(entry.group);
                        if blocked.all {
                            break;
                        }
                        continue;
                    }
                } else if flying || held {
                    continue;
                }
                let Some(meta) = s.event(seq) else { continue };
                let state = PendingState {
                    attempts: entry.attempts,
                    last_error: entry.last_error.as_deref().map(str::to_string),
                    not_before_ms: entry.not_before_ms,
                };
                picked.push((PendingKey { due_ms, seq }, state, meta.location()));
            }
            picked
        });
        let mut due = Due {
            items: Vec::with_capacity(picked.len()),
            next_due_ms,
        };
        for (key, state, location) in picked {
            // None: completed since the state was read (dropped, say); nothing to deliver.
            if let Some(event) = self.load_event(key.seq, location)? {
                due.items.push(DueItem {
                    key,
                    state,
                    event: Arc::new(event),
                });
            }
        }
        Ok(due)
    }
}
