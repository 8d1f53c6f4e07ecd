//! The body of a checkpoint of version 1, read (checkpoints are written in version 2, see
//! `body.rs`; a log written before keeps its newest checkpoint until the next one).
//!
//! ```text
//! keys k0 k1 | names: count × (route id, name)
//! events: count × (seq − previous seq, segment, offset, length, received_at_ms)
//! routes: count × (route id, pending: count × (due, seq, attempts, not_before_ms,
//!         optional last error, group), dead: count × (seq, attempts, error, dead_at_ms,
//!         group))
//! ids:    count × (received_at_ms, fingerprint, seq)   the dedup window, oldest first
//! ```
//!
//! Each event's due time is the one of the first route listing it pending and never
//! attempted ([`Restore::pending`]).

use super::body_reader::BodyReader;
use super::*;
use crate::spool::state::{DeadEntry, Entry, Location, Restore};

pub(super) fn decode_body<E, F: FnMut(&mut [u8], u64) -> Result<(), E>>(
    i: &mut BodyReader<F>,
    at: CheckpointAt,
    after_events: &mut dyn FnMut(&State, CheckpointAt),
) -> Result<State, Stop<E>> {
    let keys = [i.uint()?, i.uint()?];
    let mut restore = Restore::new(keys, at.lsn, at.segment);
    for _ in 0..i.uint()? {
        let id = i.u32()?;
        restore.name(id, i.str()?);
    }
    let mut seq = 0u64;
    for _ in 0..i.uint()? {
        seq = i.after(seq)?;
        let location = Location {
            segment: i.uint()?,
            offset: i.uint()?,
            len: i.u32()?,
        };
        let received_at_ms = i.uint()?;
        restore
            .event(seq, location, received_at_ms, None)
            .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
    }
    after_events(restore.so_far(), at);
    for _ in 0..i.uint()? {
        let route = i.u32()?;
        for _ in 0..i.uint()? {
            let due = i.uint()?;
            let seq = i.uint()?;
            let entry = Entry {
                attempts: i.u32()?,
                not_before_ms: i.uint()?,
                last_error: i.opt_str()?.map(Into::into),
                group: i.uint()?,
            };
            restore
                .pending(route, due, seq, entry)
                .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
        }
        for _ in 0..i.uint()? {
            let seq = i.uint()?;
            let dead = DeadEntry {
                attempts: i.u32()?,
                error: i.str()?.into(),
                dead_at_ms: i.uint()?,
                group: i.uint()?,
            };
            restore
                .dead(route, seq, dead)
                .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))?;
        }
    }
    let ids = i.uint()?;
    let listed = restore.so_far().live_events();
    restore.ids_ahead(ids, listed);
    for _ in 0..ids {
        let received_at_ms = i.uint()?;
        let fingerprint = i.uint()?;
        let seq = i.uint()?;
        restore.id(received_at_ms, fingerprint, seq);
    }
    restore
        .finish()
        .map_err(|e| i.bad(BadCheckpoint::Inconsistent(e)))
}

/// The body of `state` in version 1, as hookfan wrote it before version 2: for the tests
/// that old checkpoints are still read.
#[cfg(test)]
pub(super) fn encode_body(state: &State) -> Vec<u8> {
    let mut body = Vec::new();
    let mut o = crate::spool::record::Out(&mut body);
    super::body::encode_head(state, &mut o);
    o.uint(state.live_events() as u64);
    let mut previous = 0;
    for (seq, meta) in state.events() {
        // Seqs grow: each one as the distance from the previous.
        o.uint(seq - previous);
        previous = seq;
        let location = meta.location();
        o.uint(location.segment);
        o.uint(location.offset);
        o.uint(u64::from(location.len));
        o.uint(meta.received_at_ms());
    }
    let routes: Vec<_> = state.routes().collect();
    o.uint(routes.len() as u64);
    for (id, queue) in routes {
        o.uint(u64::from(id));
        o.uint(queue.pending_len() as u64);
        for (due, seq, entry) in queue.pending() {
            o.uint(due);
            o.uint(seq);
            o.uint(u64::from(entry.attempts));
            o.uint(entry.not_before_ms);
            o.opt_str(entry.last_error.as_deref());
            o.uint(entry.group);
        }
        o.uint(queue.dead_len() as u64);
        for (seq, dead) in queue.dead() {
            o.uint(seq);
            o.uint(u64::from(dead.attempts));
            o.str(&dead.error);
            o.uint(dead.dead_at_ms);
            o.uint(dead.group);
        }
    }
    let ids = state.id_order().count();
    o.uint(ids as u64);
    for (received_at_ms, fingerprint, seq) in state.id_order() {
        o.uint(received_at_ms);
        o.uint(fingerprint);
        o.uint(seq);
    }
    body
}
