//! A checkpoint's body as it is written now (version 2): the codec of the log's module
//! documentation ("Checkpoints"), encoded a part at a time and decoded a block at a time.
//!
//! Shaped so that what a large backlog holds costs least: a route's never-attempted events
//! are its bitmaps, copied word for word (128 bytes per 1024 seqs, where version 1 wrote
//! six integers per event and route); each event carries its own due time and its dedup
//! fingerprint, so neither needs a list of its own; a route's error texts are written once
//! and then named by number (a failing destination gives every entry the same words).

use std::collections::HashMap;
use std::sync::Arc;

use super::body_reader::BodyReader;
use super::*;
use crate::spool::record::Out;
use crate::spool::seq_set::{Words, WORDS};
use crate::spool::state::{DeadEntry, Entry, Inconsistent, Location, Restore};

/// `previous` to `next` as an unsigned integer small when they are close (zigzag).
fn step(previous: u64, next: u64) -> u64 {
    let d = next.wrapping_sub(previous) as i64;
    ((d << 1) ^ (d >> 63)) as u64
}

/// The value a [`step`] from `previous` leads to.
fn stepped(previous: u64, step: u64) -> u64 {
    previous.wrapping_add((step >> 1) ^ (step & 1).wrapping_neg())
}

/// A route's error texts as the body names them: 0 none, 1 a new one (its text follows,
/// and it takes the next number), 2 + n the n-th (from 0) given before. Each text is
/// given once, so a body read back holds one copy of each.
#[derive(Default)]
struct Texts<'s> {
    /// Numbers of the texts given, by the address of a shared text (entries that failed
    /// the same way share one, see `RouteQueue::error_text`): one lookup per entry...
    by_address: HashMap<*const u8, u64>,
    /// ... and by the text, for the first entry of each address.
    by_text: HashMap<&'s str, u64>,
}

impl<'s> Texts<'s> {
    fn write(&mut self, o: &mut Out<'_>, text: Option<&'s Arc<str>>) {
        let Some(text) = text else {
            o.uint(0);
            return;
        };
        let address = Arc::as_ptr(text).cast::<u8>();
        if let Some(n) = self.by_address.get(&address) {
            o.uint(2 + n);
            return;
        }
        let next = self.by_text.len() as u64;
        let n = *self.by_text.entry(text).or_insert(next);
        self.by_address.insert(address, n);
        if n == next {
            o.uint(1);
            o.str(text);
        } else {
            o.uint(2 + n);
        }
    }
}

/// The body of `state` into `body`, handed to `flush` whenever it holds `flush_at` bytes
/// or more (`flush` takes what it wants from the front), so the whole body need never be
/// in memory.
pub(super) fn encode_parts(
    state: &State,
    body: &mut Vec<u8>,
    flush_at: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut flushed = |body: &mut Vec<u8>| -> io::Result<()> {
        if body.len() >= flush_at {
            flush(body)?;
        }
        Ok(())
    };
    let mut o = Out(body);
    encode_head(state, &mut o);
    o.uint(state.live_events() as u64);
    o.uint(state.id_order().count() as u64);
    let (mut seq0, mut segment0, mut received0) = (0, 0, 0);
    for (seq, meta) in state.events() {
        // Seqs grow; segments and receipt times mostly do.
        o.uint(seq - seq0);
        seq0 = seq;
        let location = meta.location();
        o.uint(step(segment0, location.segment));
        segment0 = location.segment;
        o.uint(location.offset);
        o.uint(u64::from(location.len));
        o.uint(step(received0, meta.received_at_ms()));
        received0 = meta.received_at_ms();
        o.uint(u64::from(meta.due_after_ms()) << 1 | u64::from(meta.remembered()));
        if meta.remembered() {
            o.0.extend_from_slice(&meta.fingerprint.to_le_bytes());
        }
        flushed(o.0)?;
    }
    let routes: Vec<_> = state.routes().collect();
    o.uint(routes.len() as u64);
    for (id, queue) in routes {
        o.uint(u64::from(id));
        let fresh = queue.fresh();
        o.uint(fresh.buckets().count() as u64);
        let mut index0 = 0;
        for (index, words) in fresh.buckets() {
            o.uint(index - index0);
            index0 = index;
            for word in words {
                o.0.extend_from_slice(&word.to_le_bytes());
            }
            flushed(o.0)?;
        }
        let mut texts = Texts::default();
        let others = queue.others();
        o.uint(others.len() as u64);
        let mut due0 = 0;
        for (due, seq, entry) in others {
            // In delivery order: due times grow.
            o.uint(due - due0);
            due0 = due;
            o.uint(seq);
            o.uint(u64::from(entry.attempts));
            o.uint(entry.not_before_ms);
            texts.write(&mut o, entry.last_error.as_ref());
            o.uint(entry.group);
            flushed(o.0)?;
        }
        o.uint(queue.dead_len() as u64);
        let mut seq0 = 0;
        for (seq, dead) in queue.dead() {
            o.uint(seq - seq0);
            seq0 = seq;
            o.uint(u64::from(dead.attempts));
            texts.write(&mut o, Some(&dead.error));
            o.uint(dead.dead_at_ms);
            o.uint(dead.group);
            flushed(o.0)?;
        }
    }
    Ok(())
}

/// The body's head, the same in both versions: the fingerprint keys and the routes' names.
pub(super) fn encode_head(state: &State, o: &mut Out<'_>) {
    let [k0, k1] = state.keys();
    o.uint(k0);
    o.uint(k1);
    let names: Vec<(RouteId, &str)> = state.route_names().collect();
    o.uint(names.len() as u64);
    for (id, name) in names {
        o.uint(u64::from(id));
        o.str(name);
    }
}

/// Bytes an event with a remembered id takes at least: its fields, one byte each, and its
/// fingerprint. Bounds the dedup window's size by the bytes left to read.
const REMEMBERED_EVENT_LEN: usize = 6 + 8;

pub(super) fn decode_body<E, F: FnMut(&mut [u8], u64) -> Result<(), E>>(
    i: &mut BodyReader<F>,
    at: CheckpointAt,
    after_events: &mut dyn FnMut(&State, CheckpointAt),
) -> Result<State, Stop<E>> {
    let inconsistent = |i: &BodyReader<F>, e| i.bad(BadCheckpoint::Inconsistent(e));
    let keys = [i.uint()?, i.uint()?];
    let mut restore = Restore::new(keys, at.lsn, at.segment);
    for _ in 0..i.uint()? {
        let id = i.u32()?;
        restore.name(id, i.str()?);
    }
    let events = i.uint()?;
    let ids = i.uint()?;
    restore.ids_ahead(ids, i.left() / REMEMBERED_EVENT_LEN);
    let (mut seq, mut segment, mut received_at_ms) = (0u64, 0, 0);
    let mut marked = 0u64;
    for _ in 0..events {
        seq = i.after(seq)?;
        segment = stepped(segment, i.uint()?);
        let location = Location {
            segment,
            offset: i.uint()?,
            len: i.u32()?,
        };
        received_at_ms = stepped(received_at_ms, i.uint()?);
        let due_and_remembered = i.uint()?;
        let due_after_ms = u32::try_from(due_and_remembered >> 1)
            .map_err(|_| i.record_error(RecordError::Overflow))?;
        restore
            .event(seq, location, received_at_ms, Some(due_after_ms))
            .map_err(|e| inconsistent(i, e))?;
        if due_and_remembered & 1 == 1 {
            let fingerprint = i.u64_le()?;
            restore
                .remembered(fingerprint, seq)
                .map_err(|e| inconsistent(i, e))?;
            marked += 1;
        }
    }
    if marked != ids {
        let why = Inconsistent::IdCount {
            counted: ids,
            marked,
        };
        return Err(inconsistent(i, why));
    }
    after_events(restore.so_far(), at);
    for _ in 0..i.uint()? {
        let route = i.u32()?;
        restore.route(route).map_err(|e| inconsistent(i, e))?;
        let mut index = 0u64;
        for _ in 0..i.uint()? {
            index = i.after(index)?;
            let mut words: Words = [0; WORDS];
            for word in &mut words {
                *word = i.u64_le()?;
            }
            restore
                .fresh(route, index, words)
                .map_err(|e| inconsistent(i, e))?;
        }
        let mut texts: Vec<Arc<str>> = Vec::new();
        let mut due = 0u64;
        for _ in 0..i.uint()? {
            due = i.after(due)?;
            let seq = i.uint()?;
            let entry = Entry {
                attempts: i.u32()?,
                not_before_ms: i.uint()?,
                last_error: read_text(i, &mut texts)?,
                group: i.uint()?,
            };
            restore
                .other(route, due, seq, entry)
                .map_err(|e| inconsistent(i, e))?;
        }
        let mut seq = 0u64;
        for _ in 0..i.uint()? {
            seq = i.after(seq)?;
            let attempts = i.u32()?;
            let error =
                read_text(i, &mut texts)?.ok_or_else(|| i.record_error(RecordError::NoText))?;
            let dead = DeadEntry {
                attempts,
                error,
                dead_at_ms: i.uint()?,
                group: i.uint()?,
            };
            restore
                .dead(route, seq, dead)
                .map_err(|e| inconsistent(i, e))?;
        }
        restore.route_end(route);
    }
    restore.finish().map_err(|e| inconsistent(i, e))
}

/// An error text as [`Texts`] writes it, `texts` being the route's so far.
fn read_text<E, F: FnMut(&mut [u8], u64) -> Result<(), E>>(
    i: &mut BodyReader<F>,
    texts: &mut Vec<Arc<str>>,
) -> Result<Option<Arc<str>>, Stop<E>> {
    match i.uint()? {
        0 => Ok(None),
        1 => {
            let text: Arc<str> = Arc::from(i.str()?);
            texts.push(text.clone());
            Ok(Some(text))
        }
        n => usize::try_from(n - 2)
            .ok()
            .and_then(|n| texts.get(n))
            .map(|text| Some(text.clone()))
            .ok_or_else(|| i.record_error(RecordError::TextNumber)),
    }
}
