//! What the one-time import reads from a redb spool ([`RedbSpool::export`]).

use super::*;

/// An event of a redb spool that some route still holds, as [`RedbSpool::export`] reads it.
pub(crate) struct ExportedEvent {
    pub event: StoredEvent,
    /// The routes holding it in their queue: (route, due_ms, state).
    pub pending: Vec<(String, u64, PendingState)>,
    /// The routes holding it as a dead letter.
    pub dead: Vec<(String, DeadState)>,
}

/// What [`RedbSpool::export`] hands over, in this order: every held event, then the ids.
pub(crate) enum Exported {
    /// An event some route holds; events come in seq order.
    Event(Box<ExportedEvent>),
    /// A remembered webhook id whose event no route holds any more; oldest first.
    Id {
        received_at_ms: u64,
        webhook_id: String,
    },
}

impl RedbSpool {
    /// Reads what the redb spool file at `path` holds that a new spool must carry (the log's
    /// import, `import.rs`), in one read transaction, handing each item to `visit`: the
    /// events some route holds, with every route's queue entry or dead letter, then the
    /// remembered ids of events no route holds. Schema versions 1 and 2 are read; redb's
    /// lock is held meanwhile (a running hookfan on the file makes it
    /// [`SpoolError::InUse`]). A file that is not a spool this version reads, or that fails
    /// to read, is [`SpoolError::Incompatible`], naming it; `visit`'s errors pass through.
    pub(crate) fn export(
        path: &Path,
        mut visit: impl FnMut(Exported) -> Result<(), SpoolError>,
    ) -> Result<(), SpoolError> {
        let unreadable = |e: &dyn std::fmt::Display| SpoolError::Incompatible {
            path: path.to_path_buf(),
            why: format!("cannot be read to import it ({e})"),
        };
        // An earlier hookfan's first start cut between creating the file and writing redb's
        // header leaves it empty: it never held an event. redb opens an empty file only to
        // create a database in it, which it does under its lock: so one still being created
        // by a running hookfan is `InUse` like any other, and an abandoned one becomes an
        // empty database (no tables), which holds nothing to import.
        let empty = std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        let opened = if empty {
            builder.create(path)
        } else {
            builder.open(path)
        };
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => SpoolError::InUse(path.to_path_buf()),
            redb::DatabaseError::Storage(redb::StorageError::Io(source))
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                SpoolError::DataDir {
                    path: path.to_path_buf(),
                    source,
                }
            }
            other => unreadable(&other),
        })?;
        let txn = db.begin_read().map_err(|e| unreadable(&e))?;
        let version = match txn.open_table(META) {
            Ok(meta) => meta
                .get("schema_version")
                .map_err(|e| unreadable(&e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(unreadable(&e)),
        };
        match version {
            Some(1 | SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(SpoolError::Incompatible {
                    path: path.to_path_buf(),
                    why: format!("spool schema version {other}, this hookfan imports versions 1 and {SCHEMA_VERSION}"),
                })
            }
            None => {
                // No version: an empty file (a first start cut before its schema was
                // written) has no tables at all; anything else is not a spool.
                let tables = txn.list_tables().map_err(|e| unreadable(&e))?.count();
                if tables > 0 {
                    return Err(SpoolError::Incompatible {
                        path: path.to_path_buf(),
                        why: "the file is a redb database but not a hookfan spool".into(),
                    });
                }
                return Ok(());
            }
        }
        let events = txn.open_table(EVENTS).map_err(|e| unreadable(&e))?;
        let pending = txn.open_table(PENDING).map_err(|e| unreadable(&e))?;
        let dead = txn.open_table(DEAD).map_err(|e| unreadable(&e))?;
        let seen = txn.open_table(SEEN_BY_TIME).map_err(|e| unreadable(&e))?;

        // Who holds each event, by seq: its queue entries and its dead letters (keys and
        // small states only; bodies are read one at a time below).
        type Holders = (Vec<(String, u64, PendingState)>, Vec<(String, DeadState)>);
        let mut held: std::collections::BTreeMap<u64, Holders> = Default::default();
        for row in pending.iter().map_err(|e| unreadable(&e))? {
            let (k, v) = row.map_err(|e| unreadable(&e))?;
            let (route, due_ms, seq) = k.value();
            let state = PendingState::decode(v.value()).map_err(|e| unreadable(&e))?;
            held.entry(seq)
                .or_default()
                .0
                .push((route.to_string(), due_ms, state));
        }
        for row in dead.iter().map_err(|e| unreadable(&e))? {
            let (k, v) = row.map_err(|e| unreadable(&e))?;
            let (route, seq) = k.value();
            let state = DeadState::decode(v.value()).map_err(|e| unreadable(&e))?;
            held.entry(seq)
                .or_default()
                .1
                .push((route.to_string(), state));
        }

        let mut held_ids: HashSet<(u64, String)> = HashSet::new();
        for (seq, (pending, dead)) in held {
            let Some(bytes) = events.get(seq).map_err(|e| unreadable(&e))? else {
                return Err(unreadable(&format_args!(
                    "event {seq} is held by a route but has no stored body"
                )));
            };
            let event = StoredEvent::decode(bytes.value()).map_err(|e| unreadable(&e))?;
            if let Some(id) = &event.webhook_id {
                held_ids.insert((event.received_at_ms, id.clone()));
            }
            visit(Exported::Event(Box::new(ExportedEvent {
                event,
                pending,
                dead,
            })))?;
        }
        for row in seen.iter().map_err(|e| unreadable(&e))? {
            let (k, _) = row.map_err(|e| unreadable(&e))?;
            let (received_at_ms, id) = k.value();
            if held_ids.contains(&(received_at_ms, id.to_string())) {
                continue;
            }
            visit(Exported::Id {
                received_at_ms,
                webhook_id: id.to_string(),
            })?;
        }
        Ok(())
    }
}
