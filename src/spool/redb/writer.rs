//! The redb spool's writer thread: every command waiting applied in one write transaction,
//! committed once (one fsync), then answered; a failed commit reopens the database.

use super::*;

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) db: SharedDb,
    pub(super) path: PathBuf,
    /// Set by a failed commit: the next batch first reopens the database.
    pub(super) broken_since: Option<Instant>,
    /// Shared with [`RedbSpool::commit_error`].
    pub(super) commit_error: Arc<Mutex<Option<String>>>,
    /// Shared with readers; changed only here, after a commit.
    pub(super) counts: Arc<SharedCounts>,
    pub(super) next_seq: u64,
    pub(super) last_sweep: Instant,
    /// The dedup window of the latest append: ids older than this are swept.
    pub(super) dedup_window_ms: u64,
    /// Where each remembered webhook id's `seen_by_time` row is; loaded at open.
    pub(super) seen: SeenIndex,
    /// The due time given to the latest new event. New events get
    /// `max(received_at, this)`, so their queue order is their commit order even when
    /// concurrent requests read the clock out of order (ordered routes rely on it).
    pub(super) last_fresh_due_ms: u64,
}

/// The answer to an applied command, sent once its transaction is committed (or failed).
pub(super) enum Reply {
    Append(
        oneshot::Sender<Result<AppendOutcome, SpoolError>>,
        AppendOutcome,
    ),
    Complete(oneshot::Sender<Result<(), SpoolError>>),
    Count(oneshot::Sender<Result<u64, SpoolError>>, u64),
}

impl Reply {
    pub(super) fn ok(self) {
        match self {
            Reply::Append(tx, outcome) => drop(tx.send(Ok(outcome))),
            Reply::Complete(tx) => drop(tx.send(Ok(()))),
            Reply::Count(tx, n) => drop(tx.send(Ok(n))),
        }
    }

    pub(super) fn fail(self, error: &dyn Fn() -> SpoolError) {
        match self {
            Reply::Append(tx, _) => drop(tx.send(Err(error()))),
            Reply::Complete(tx) => drop(tx.send(Err(error()))),
            Reply::Count(tx, _) => drop(tx.send(Err(error()))),
        }
    }
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut closing = None;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            // Commands after a Close are refused; the ones before it are committed.
            if let Some(at) = batch
                .iter()
                .position(|c| matches!(c, Command::Close { .. }))
            {
                for cmd in batch.drain(at + 1..) {
                    refuse(cmd);
                }
                if let Some(Command::Close { reply }) = batch.pop() {
                    closing = Some(reply);
                }
            }
            if !batch.is_empty() {
                self.commit_batch(batch);
            }
            if let Some(reply) = closing.take() {
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    refuse(cmd);
                }
                let _ = reply.send(());
                return;
            }
        }
    }

    pub(super) fn commit_batch(&mut self, batch: Vec<Command>) {
        if let Err(e) = self.recover() {
            let msg = e.to_string();
            let fail = || SpoolError::Recovering(msg.clone());
            for cmd in batch {
                cmd.fail(&fail);
            }
            return;
        }
        let started = Instant::now();
        let first_seq = self.next_seq;
        let n = batch.len();
        let mut replies = Vec::with_capacity(n);
        let result = self.apply(batch, &mut replies);
        match result {
            Ok(()) => {
                metrics::counter!("hookfan_spool_commits_total").increment(1);
                metrics::histogram!("hookfan_spool_commit_batch_size").record(n as f64);
                metrics::histogram!("hookfan_spool_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::gauge!("hookfan_spool_dedup_ids").set(self.seen.len() as f64);
                self.set_commit_error(None);
                for r in replies {
                    r.ok();
                }
            }
            Err((e, unapplied)) => {
                self.next_seq = first_seq;
                self.broken_since.get_or_insert_with(Instant::now);
                metrics::counter!("hookfan_spool_commit_failures_total").increment(1);
                tracing::error!(error = %e, commands = n, "spool commit failed; webhooks in it get 503 and Stream will retry them");
                let msg = e.to_string();
                self.set_commit_error(Some(msg.clone()));
                let fail = || SpoolError::CommitFailed(msg.clone());
                for r in replies {
                    r.fail(&fail);
                }
                for cmd in unapplied {
                    cmd.fail(&fail);
                }
            }
        }
    }

    /// After a failed commit, reopens the database (at most once per [`REOPEN_INTERVAL`]):
    /// redb refuses every write after an I/O error until then. The file holds exactly the
    /// commits that succeeded, so nothing acknowledged is affected. `Err` while not reopened.
    pub(super) fn recover(&mut self) -> Result<(), SpoolError> {
        let Some(since) = self.broken_since else {
            return Ok(());
        };
        let last_error = || {
            self.commit_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default()
        };
        if since.elapsed() < REOPEN_INTERVAL {
            return Err(SpoolError::Recovering(last_error()));
        }
        self.broken_since = Some(Instant::now());
        let mut slot = self
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // redb allows one `Database` per file: readers must let go of the old one first. No
        // new reader can start while this lock is held.
        if let Some(old) = slot.take() {
            let deadline = Instant::now() + REOPEN_WAIT;
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(still_shared) => {
                        *slot = Some(still_shared);
                        return Err(SpoolError::Recovering(last_error()));
                    }
                }
            }
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&self.path)
            .map_err(|e| {
                tracing::warn!(error = %e, "spool: reopening after a failed commit did not work yet; retrying with the next webhook");
                storage(e)
            })?;
        // The sequence continues after the last event that was committed.
        let next_seq = {
            let txn = db.begin_read().map_err(storage)?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let last = events.last().map_err(storage)?;
            last.map_or(1, |(k, _)| k.value() + 1)
        };
        self.next_seq = self.next_seq.max(next_seq);
        *slot = Some(Arc::new(db));
        drop(slot);
        self.broken_since = None;
        tracing::info!(spool = %self.path.display(), "spool reopened after a failed commit; taking webhooks again");
        Ok(())
    }

    pub(super) fn set_commit_error(&self, error: Option<String>) {
        *self
            .commit_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }

    /// Applies `batch` in one transaction. On failure, returns the error and the commands
    /// that were not yet turned into replies, so every caller still gets an answer.
    pub(super) fn apply(
        &mut self,
        batch: Vec<Command>,
        replies: &mut Vec<Reply>,
    ) -> Result<(), (SpoolError, Vec<Command>)> {
        let db = self
            .db
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(db) = db else {
            return Err((SpoolError::Recovering(String::new()), batch));
        };
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return Err((storage(e), batch)),
        };
        let now = now_ms();
        let mut iter = batch.into_iter();
        let applied = (|| -> Result<Vec<Change>, SpoolError> {
            let mut t = Tables {
                changes: Vec::new(),
                events: txn.open_table(EVENTS).map_err(storage)?,
                refs: txn.open_table(REFS).map_err(storage)?,
                pending: txn.open_table(PENDING).map_err(storage)?,
                dead: txn.open_table(DEAD).map_err(storage)?,
                seen_by_time: txn.open_table(SEEN_BY_TIME).map_err(storage)?,
            };
            for cmd in iter.by_ref() {
                match cmd {
                    Command::Append {
                        encoded,
                        webhook_id,
                        received_at_ms,
                        routes,
                        dedup_window_ms,
                        reply,
                    } => {
                        let new = NewEvent {
                            encoded: &encoded,
                            webhook_id: webhook_id.as_deref(),
                            received_at_ms,
                        };
                        // Each reply is kept even when its command fails: on failure every
                        // reply gets the batch's error (a dropped one would read as Closed).
                        let outcome = self.append(&mut t, new, &routes, dedup_window_ms, now);
                        let placeholder = AppendOutcome::Duplicate;
                        replies.push(Reply::Append(
                            reply,
                            *outcome.as_ref().unwrap_or(&placeholder),
                        ));
                        outcome?;
                    }
                    Command::Complete {
                        route,
                        outcomes,
                        reply,
                    } => {
                        let done = outcomes.into_iter().try_for_each(|(key, completion)| {
                            complete(&mut t, &route, key, completion, now)
                        });
                        replies.push(Reply::Complete(reply));
                        done?;
                    }
                    Command::DeadLetters {
                        action,
                        route,
                        webhook_ids,
                        reply,
                    } => {
                        let n = dead_letters(&mut t, action, route.as_deref(), &webhook_ids, now);
                        replies.push(Reply::Count(reply, *n.as_ref().unwrap_or(&0)));
                        n?;
                    }
                    Command::DropPending { route, reply } => {
                        let n = drop_pending(&mut t, &route);
                        replies.push(Reply::Count(reply, *n.as_ref().unwrap_or(&0)));
                        n?;
                    }
                    Command::Close { reply } => drop(reply.send(())),
                }
            }
            if self.last_sweep.elapsed() >= Duration::from_secs(1) {
                self.last_sweep = Instant::now();
                sweep_seen(&mut t, &mut self.seen, now, self.dedup_window_ms)?;
            }
            Ok(t.changes)
        })();
        let rest: Vec<Command> = iter.collect();
        let changes = match applied {
            Ok(changes) => changes,
            Err(e) => {
                self.seen.rolled_back();
                return Err((e, rest));
            }
        };
        if let Err(e) = txn.commit() {
            self.seen.rolled_back();
            return Err((storage(e), rest));
        }
        self.seen.committed();
        self.counts.apply(changes);
        Ok(())
    }

    pub(super) fn append(
        &mut self,
        t: &mut Tables<'_>,
        event: NewEvent<'_>,
        routes: &[String],
        dedup_window_ms: u64,
        now: u64,
    ) -> Result<AppendOutcome, SpoolError> {
        self.dedup_window_ms = dedup_window_ms;
        if let Some(id) = event.webhook_id {
            let fingerprint = self.seen.fingerprint(id);
            // A hit counts only when the row is there: the map may name an id whose commit
            // failed, or another id with the same fingerprint.
            if let Some(at) = self.seen.get(fingerprint) {
                if t.seen_by_time.get((at, id)).map_err(storage)?.is_some() {
                    if at.saturating_add(dedup_window_ms) >= now {
                        return Ok(AppendOutcome::Duplicate);
                    }
                    t.seen_by_time.remove((at, id)).map_err(storage)?;
                }
            }
            t.seen_by_time
                .insert((event.received_at_ms, id), ())
                .map_err(storage)?;
            self.seen.insert(fingerprint, event.received_at_ms);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        t.events.insert(seq, event.encoded).map_err(storage)?;
        t.refs.insert(seq, routes.len() as u32).map_err(storage)?;
        let fresh = PendingState::default().encode()?;
        let due = event.received_at_ms.max(self.last_fresh_due_ms);
        self.last_fresh_due_ms = due;
        for route in routes {
            t.pending
                .insert((route.as_str(), due, seq), fresh.as_slice())
                .map_err(storage)?;
            t.changes.push(Change::AddPending(route.clone(), seq));
        }
        Ok(AppendOutcome::Stored { seq })
    }
}

/// What the writer needs of a new event: its encoding and the fields it indexes.
pub(super) struct NewEvent<'a> {
    pub(super) encoded: &'a [u8],
    pub(super) webhook_id: Option<&'a str>,
    pub(super) received_at_ms: u64,
}

pub(super) struct Tables<'t> {
    /// What the transaction changes in each route's counts, applied once it is committed.
    pub(super) changes: Vec<Change>,
    pub(super) events: redb::Table<'t, u64, &'static [u8]>,
    pub(super) refs: redb::Table<'t, u64, u32>,
    pub(super) pending: redb::Table<'t, (&'static str, u64, u64), &'static [u8]>,
    pub(super) dead: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    pub(super) seen_by_time: redb::Table<'t, (u64, &'static str), ()>,
}

pub(super) fn complete(
    t: &mut Tables<'_>,
    route: &str,
    key: PendingKey,
    completion: Completion,
    now: u64,
) -> Result<(), SpoolError> {
    let removed = t
        .pending
        .remove((route, key.due_ms, key.seq))
        .map_err(storage)?
        .is_some();
    if !removed {
        // Already completed (e.g. twice after a restart race); nothing to do.
        return Ok(());
    }
    match completion {
        Completion::Delivered => {
            t.changes
                .push(Change::RemovePending(route.to_string(), key.seq));
            release(t, key.seq)?;
        }
        Completion::Retry {
            due_ms,
            attempts,
            error,
        } => {
            let state = PendingState {
                attempts,
                last_error: Some(error),
                not_before_ms: 0,
            };
            t.pending
                .insert((route, due_ms, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
        }
        Completion::Hold {
            not_before_ms,
            attempts,
            error,
        } => {
            let state = PendingState {
                attempts,
                last_error: Some(error),
                not_before_ms,
            };
            t.pending
                .insert((route, key.due_ms, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
        }
        Completion::Dead { attempts, error } => {
            let state = DeadState {
                attempts,
                error,
                dead_at_ms: now,
            };
            t.dead
                .insert((route, key.seq), state.encode()?.as_slice())
                .map_err(storage)?;
            t.changes
                .push(Change::RemovePending(route.to_string(), key.seq));
            t.changes.push(Change::AddDead(route.to_string()));
        }
    }
    Ok(())
}

/// Replays or drops the dead letters of `route` (all routes if None) whose webhook id is in
/// `webhook_ids` (all if empty). Returns how many.
pub(super) fn dead_letters(
    t: &mut Tables<'_>,
    action: DeadLetterAction,
    route: Option<&str>,
    webhook_ids: &[String],
    now: u64,
) -> Result<u64, SpoolError> {
    let rows = match route {
        Some(r) => t.dead.range((r, 0u64)..=(r, u64::MAX)),
        None => t.dead.range::<(&str, u64)>(..),
    }
    .map_err(storage)?;
    let mut selected: Vec<(String, u64)> = Vec::new();
    for row in rows {
        let (k, _) = row.map_err(storage)?;
        let (route, seq) = k.value();
        if !webhook_ids.is_empty() {
            let id = match t.events.get(seq).map_err(storage)? {
                Some(bytes) => StoredEvent::decode(bytes.value())?.webhook_id,
                None => None,
            };
            if !id.is_some_and(|id| webhook_ids.contains(&id)) {
                continue;
            }
        }
        selected.push((route.to_string(), seq));
    }
    let fresh = PendingState::default().encode()?;
    for (route, seq) in &selected {
        t.dead.remove((route.as_str(), *seq)).map_err(storage)?;
        t.changes.push(Change::RemoveDead(route.clone()));
        match action {
            DeadLetterAction::Replay => {
                t.pending
                    .insert((route.as_str(), now, *seq), fresh.as_slice())
                    .map_err(storage)?;
                t.changes.push(Change::AddPending(route.clone(), *seq));
            }
            DeadLetterAction::Drop => release(t, *seq)?,
        }
    }
    Ok(selected.len() as u64)
}

/// Removes every pending row of `route`, releasing its events. Returns how many.
pub(super) fn drop_pending(t: &mut Tables<'_>, route: &str) -> Result<u64, SpoolError> {
    let keys: Vec<(u64, u64)> = t
        .pending
        .range((route, 0u64, 0u64)..=(route, u64::MAX, u64::MAX))
        .map_err(storage)?
        .map(|row| row.map(|(k, _)| (k.value().1, k.value().2)))
        .collect::<Result<_, _>>()
        .map_err(storage)?;
    for (due, seq) in &keys {
        t.pending.remove((route, *due, *seq)).map_err(storage)?;
        t.changes
            .push(Change::RemovePending(route.to_string(), *seq));
        release(t, *seq)?;
    }
    Ok(keys.len() as u64)
}

/// One route let go of event `seq`; delete it when no route holds it any more.
pub(super) fn release(t: &mut Tables<'_>, seq: u64) -> Result<(), SpoolError> {
    let left = t
        .refs
        .get(seq)
        .map_err(storage)?
        .map_or(0, |v| v.value())
        .saturating_sub(1);
    if left == 0 {
        t.refs.remove(seq).map_err(storage)?;
        t.events.remove(seq).map_err(storage)?;
    } else {
        t.refs.insert(seq, left).map_err(storage)?;
    }
    Ok(())
}

/// Forgets webhook ids received more than `window_ms` ago. The check in `append` applies the
/// window exactly; this only reclaims their space.
pub(super) fn sweep_seen(
    t: &mut Tables<'_>,
    seen: &mut SeenIndex,
    now: u64,
    window_ms: u64,
) -> Result<(), SpoolError> {
    let cutoff = now.saturating_sub(window_ms);
    let expired: Vec<(u64, String)> = t
        .seen_by_time
        .range::<(u64, &str)>(..(cutoff, ""))
        .map_err(storage)?
        .take(SWEEP_LIMIT)
        .map(|row| row.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()
        .map_err(storage)?;
    for (at, id) in expired {
        t.seen_by_time.remove((at, id.as_str())).map_err(storage)?;
        seen.forget(&id, at);
    }
    seen.shrink_if_sparse();
    Ok(())
}

pub(super) fn refuse(cmd: Command) {
    cmd.fail(&|| SpoolError::Closed);
}
