//! The spool's queries and the operator's actions on it (the admin API's and the CLI's):
//! counts and summaries read from the state, dead letters listed, replayed or dropped, a
//! route's pending events dropped. Each action is one submission: all or nothing.

use super::*;

impl LogSpool {
    /// How many events `route` still has to deliver. From the state: O(1).
    pub fn pending_count(&self, route: &str) -> Result<u64, SpoolError> {
        let Some(route) = self.route_id(route) else {
            return Ok(0);
        };
        Ok(self.with_state(|s| s.route(route).map_or(0, |q| q.pending_len() as u64)))
    }

    /// What `route` holds: pending events, when the oldest of them was received, and dead
    /// letters. From the state, no disk read: O(log n).
    pub fn route_summary(&self, route: &str) -> Result<RouteSummary, SpoolError> {
        let Some(route) = self.route_id(route) else {
            return Ok(RouteSummary::default());
        };
        Ok(self.with_state(|s| {
            let Some(q) = s.route(route) else {
                return RouteSummary::default();
            };
            RouteSummary {
                pending: q.pending_len() as u64,
                oldest_pending_received_ms: q
                    .oldest_pending()
                    .and_then(|seq| s.event(seq))
                    .map(|m| m.received_at_ms()),
                dead_letters: q.dead_len() as u64,
            }
        }))
    }

    /// [`LogSpool::route_summary`] by walking the route's queue (tests compare the two, as
    /// they do for the redb spool's maintained counts).
    #[cfg(test)]
    pub(crate) fn scan_summary(&self, route: &str) -> Result<RouteSummary, SpoolError> {
        let Some(route) = self.route_id(route) else {
            return Ok(RouteSummary::default());
        };
        Ok(self.with_state(|s| {
            let Some(q) = s.route(route) else {
                return RouteSummary::default();
            };
            let oldest = q.pending().map(|(_, seq, _)| seq).min();
            RouteSummary {
                pending: q.pending().count() as u64,
                oldest_pending_received_ms: oldest
                    .and_then(|seq| s.event(seq))
                    .map(|m| m.received_at_ms()),
                dead_letters: q.dead().count() as u64,
            }
        }))
    }

    /// Every route name that holds pending events or dead letters, sorted.
    pub fn routes_on_disk(&self) -> Result<Vec<String>, SpoolError> {
        let mut names: Vec<String> = self.with_state(|s| {
            s.routes()
                .filter(|(_, q)| q.pending_len() + q.dead_len() > 0)
                .filter_map(|(id, _)| s.route_name(id).map(str::to_string))
                .collect()
        });
        names.sort_unstable();
        Ok(names)
    }

    /// Number of events some route holds (each counted once, whatever its routes; events
    /// kept only for their webhook id are not counted). Walks the events: O(n).
    pub fn stored_events(&self) -> Result<u64, SpoolError> {
        Ok(self.with_state(|s| s.events().filter(|(_, m)| m.holders() > 0).count() as u64))
    }

    /// The dead letters of `route` (all routes if None), only those with the given webhook
    /// ids if any: (route, seq, the event's location).
    fn select_dead(
        &self,
        route: Option<&str>,
        webhook_ids: &[String],
    ) -> Result<Vec<(RouteId, u64)>, SpoolError> {
        let route = match route {
            Some(name) => match self.route_id(name) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let all: Vec<(RouteId, u64, Option<Location>)> = self.with_state(|s| {
            s.routes()
                .filter(|(id, _)| route.is_none_or(|r| r == *id))
                .flat_map(|(id, q)| q.dead().map(move |(seq, _)| (id, seq)))
                .map(|(id, seq)| (id, seq, s.event(seq).map(|m| m.location())))
                .collect()
        });
        let mut selected = Vec::with_capacity(all.len());
        for (id, seq, location) in all {
            if !webhook_ids.is_empty() {
                let stored = match location {
                    Some(at) => self.load_event(seq, at)?.and_then(|e| e.webhook_id),
                    None => None,
                };
                if !stored.is_some_and(|w| webhook_ids.contains(&w)) {
                    continue;
                }
            }
            selected.push((id, seq));
        }
        Ok(selected)
    }

    /// Replays (back into the queue, due now, attempts from 0) or drops the dead letters of
    /// `route` (all routes if None), only those with the given webhook ids if any are given.
    /// One submission: a crash leaves all of them or none moved. Returns how many.
    pub async fn dead_letter_action(
        &self,
        action: DeadLetterAction,
        route: Option<&str>,
        webhook_ids: Vec<String>,
    ) -> Result<u64, SpoolError> {
        let _admin = self.inner.admin.lock().await;
        let selected = self.select_dead(route, &webhook_ids)?;
        if selected.is_empty() {
            return Ok(0);
        }
        let now = self.inner.clock.now_ms();
        let records: Vec<Record<'_>> = selected
            .iter()
            .map(|&(route, seq)| match action {
                DeadLetterAction::Replay => Record::Replay {
                    route,
                    seq,
                    due_ms: now,
                },
                DeadLetterAction::Drop => Record::Drop { route, seq },
            })
            .collect();
        let ticket = self.submit(&records, false).await?;
        self.settle(&ticket).await?;
        Ok(selected.len() as u64)
    }

    /// Forgets every pending event of `route`, in one record. Only for a route that is not
    /// running (removed from the config or disabled): the caller checks. Returns how many.
    pub async fn drop_pending(&self, route: &str) -> Result<u64, SpoolError> {
        let Some(id) = self.route_id(route) else {
            return Ok(0);
        };
        let _admin = self.inner.admin.lock().await;
        let n = self.with_state(|s| s.route(id).map_or(0, |q| q.pending_len() as u64));
        if n == 0 {
            return Ok(0);
        }
        let ticket = self
            .submit(&[Record::DropPending { route: id }], false)
            .await?;
        self.settle(&ticket).await?;
        Ok(n)
    }

    /// Dead letters, of one route or all, by route name then seq. Blocking: reads each
    /// letter's event record back for its id and type.
    pub fn dead_letters(&self, route: Option<&str>) -> Result<Vec<DeadLetter>, SpoolError> {
        let route = match route {
            Some(name) => match self.route_id(name) {
                Some(id) => Some(id),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        type Letter = (String, u64, DeadState, Option<(Location, u64)>);
        let mut letters: Vec<Letter> = self.with_state(|s| {
            s.routes()
                .filter(|(id, _)| route.is_none_or(|r| r == *id))
                .flat_map(|(id, q)| {
                    let name = s.route_name(id).unwrap_or_default().to_string();
                    q.dead().map(move |(seq, d)| {
                        let state = DeadState {
                            attempts: d.attempts,
                            error: d.error.to_string(),
                            dead_at_ms: d.dead_at_ms,
                        };
                        let at = s.event(seq).map(|m| (m.location(), m.received_at_ms()));
                        (name.clone(), seq, state, at)
                    })
                })
                .collect()
        });
        letters.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut out = Vec::with_capacity(letters.len());
        for (route, seq, state, at) in letters {
            out.push(self.letter(route, seq, state, at)?.0);
        }
        Ok(out)
    }

    /// Dead letter `seq` of `route`, with its event as stored (the body to look at); None
    /// when the route has no such dead letter. Blocking: reads the event's record.
    pub fn dead_letter(
        &self,
        route: &str,
        seq: u64,
    ) -> Result<Option<DeadLetterShown>, SpoolError> {
        let Some(id) = self.route_id(route) else {
            return Ok(None);
        };
        let found = self.with_state(|s| {
            let dead = s.route(id)?.dead_letter(seq)?;
            let state = DeadState {
                attempts: dead.attempts,
                error: dead.error.to_string(),
                dead_at_ms: dead.dead_at_ms,
            };
            let at = s.event(seq).map(|m| (m.location(), m.received_at_ms()));
            Some((state, at))
        });
        let Some((state, at)) = found else {
            return Ok(None);
        };
        let (letter, event) = self.letter(route.to_string(), seq, state, at)?;
        Ok(Some(DeadLetterShown::new(letter, event)))
    }

    /// A dead letter as listed, its event read back from `at` (its location and receipt).
    fn letter(
        &self,
        route: String,
        seq: u64,
        state: DeadState,
        at: Option<(Location, u64)>,
    ) -> Result<(DeadLetter, Option<StoredEvent>), SpoolError> {
        let event = match at {
            Some((location, _)) => self.load_event(seq, location)?,
            None => None,
        };
        let letter = DeadLetter {
            route,
            seq,
            webhook_id: event.as_ref().and_then(|e| e.webhook_id.clone()),
            event_type: event.as_ref().and_then(|e| e.event_type.clone()),
            received_at_ms: at.map_or(0, |(_, received)| received),
            dead_at_ms: state.dead_at_ms,
            attempts: state.attempts,
            error: state.error,
        };
        Ok((letter, event))
    }
}
