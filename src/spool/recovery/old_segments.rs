//! The check of the segments before the checkpoint's: every event still needed that the
//! state places there must be a record of a valid group there. With a large backlog this
//! is most of an open's reading, so it starts as soon as the checkpoint's events are
//! decoded ([`EarlyCheck`]) and runs beside the rest of the open; [`check_events`] then
//! looks again only for what it could not confirm.

use std::collections::BTreeMap;

use super::super::compaction::group_events;
use super::super::reader;
use super::super::segment;
use super::super::state::State;
use super::super::storage::Storage;
use super::super::{CorruptWhy, LogError};
use super::corrupt;

/// Every event still needed must have its record where the state says. In a replayed
/// segment (read whole, every group checked) its segment must be one of them; in an older
/// one (not replayed), the segment is read (a window at a time, up to its last needed
/// record) and the record must be in a valid group, as an event of that seq (or its copy).
/// Catches a segment deleted, or damaged where a needed record lives.
///
/// Most of that reading was done beside the replay ([`EarlyCheck`], for the events the
/// checkpoint listed): an event it found needs nothing more. The others (none, unless the
/// early check failed somewhere or the log moved an event into an old segment) are checked
/// here, segment by segment; the error of the lowest segment is the one reported.
pub(super) fn check_events(
    storage: &dyn Storage,
    state: &State,
    old: &[u64],
    replayed: &[u64],
    early: Option<EarlyCheck<'_>>,
) -> Result<(), LogError> {
    let found = early.map(EarlyCheck::join).unwrap_or_default();
    let first_replayed = replayed.first().copied().unwrap_or(u64::MAX);
    let mut unchecked: BTreeMap<u64, Vec<Needed>> = BTreeMap::new();
    for (seq, meta) in state.events() {
        let location = meta.location();
        let segment = location.segment;
        let missing = if segment >= first_replayed {
            replayed.binary_search(&segment).is_err()
        } else {
            // Not listed: the segment is gone. (The state's offsets fit 32 bits.)
            let listed = old.binary_search(&segment).is_ok();
            match u32::try_from(location.offset) {
                Ok(offset) if listed => {
                    let needed = Needed {
                        seq,
                        offset,
                        len: location.len,
                    };
                    if !found.get(&segment).is_some_and(|f| f.holds(needed)) {
                        unchecked.entry(segment).or_default().push(needed);
                    }
                    false
                }
                _ => true,
            }
        };
        if missing {
            let name = segment::segment_name(segment);
            return Err(corrupt(
                &name,
                location.offset,
                CorruptWhy::EventMissing { seq },
            ));
        }
    }
    drop(found);
    let mut unchecked: Vec<(u64, Vec<Needed>)> = unchecked.into_iter().collect();
    let results = on_threads(
        &mut unchecked,
        threads(0),
        |chunk: &mut [(u64, Vec<Needed>)]| -> Result<(), LogError> {
            for (segment, events) in chunk {
                check_segment(storage, *segment, events)?;
            }
            Ok(())
        },
    );
    results.into_iter().collect()
}

/// The threads to split reading over: one per core (at most four), less `busy`, at least one.
fn threads(busy: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .saturating_sub(busy)
        .max(1)
}

/// Runs `work` over `items` split into `threads` chunks, each on a thread of its own;
/// returns each chunk's result in order.
fn on_threads<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    work: impl Fn(&mut [T]) -> R + Sync,
) -> Vec<R> {
    let per = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = items
            .chunks_mut(per)
            .map(|chunk| scope.spawn(move || work(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The old segments' check, started as soon as the checkpoint is read, on the events it
/// lists there, while the log after it is replayed: most of an open's reading with a large
/// backlog, done on the cores the replay leaves free. The replay can only take events out
/// of the old segments (a new event, or a copy of one, is written after the checkpoint), so
/// what this finds is what [`check_events`] would look for, and it looks again only for
/// what this could not confirm.
pub(super) struct EarlyCheck<'scope> {
    workers: Vec<std::thread::ScopedJoinHandle<'scope, Vec<(u64, Checked)>>>,
}

/// What the early check found in one old segment.
struct Checked {
    /// Every event listed was found (else nothing is taken as found there).
    whole: bool,
    /// The events listed, by offset.
    events: Vec<Needed>,
}

impl Checked {
    /// `needed` was found where it is said to be.
    fn holds(&self, needed: Needed) -> bool {
        self.whole
            && self
                .events
                .binary_search_by_key(&needed.offset, |n| n.offset)
                .is_ok_and(|i| self.events[i] == needed)
    }
}

impl<'scope> EarlyCheck<'scope> {
    /// Starts checking, on threads of `scope`, the events `state` (a checkpoint's, which
    /// replays from segment `replay_from`) places in the segments of `indexes` before
    /// `replay_from`.
    pub(super) fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        storage: &'env dyn Storage,
        state: &State,
        replay_from: u64,
        indexes: &[u64],
    ) -> EarlyCheck<'scope> {
        // Events come in seq order, mostly segment after segment.
        let mut lists: BTreeMap<u64, Vec<Needed>> = BTreeMap::new();
        let mut current: Option<(u64, Vec<Needed>)> = None;
        for (seq, meta) in state.events() {
            let location = meta.location();
            let segment = location.segment;
            let Ok(offset) = u32::try_from(location.offset) else {
                continue;
            };
            if segment >= replay_from || indexes.binary_search(&segment).is_err() {
                continue;
            }
            if current.as_ref().is_none_or(|(s, _)| *s != segment) {
                if let Some((s, list)) = current.take() {
                    lists.insert(s, list);
                }
                current = Some((segment, lists.remove(&segment).unwrap_or_default()));
            }
            if let Some((_, list)) = &mut current {
                list.push(Needed {
                    seq,
                    offset,
                    len: location.len,
                });
            }
        }
        if let Some((s, list)) = current {
            lists.insert(s, list);
        }
        let lists: Vec<(u64, Vec<Needed>)> = lists.into_iter().collect();
        // The replay keeps one core busy.
        let threads = threads(1);
        let per = lists.len().div_ceil(threads).max(1);
        let mut lists = lists.into_iter().peekable();
        let mut workers = Vec::new();
        while lists.peek().is_some() {
            let chunk: Vec<_> = lists.by_ref().take(per).collect();
            workers.push(scope.spawn(move || {
                chunk
                    .into_iter()
                    .map(|(segment, mut events)| {
                        let whole = check_segment(storage, segment, &mut events).is_ok();
                        (segment, Checked { whole, events })
                    })
                    .collect()
            }));
        }
        EarlyCheck { workers }
    }

    /// What the check found, by segment, once it is done.
    fn join(self) -> BTreeMap<u64, Checked> {
        self.workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    }
}

/// Checks that each of `events` (sorted by offset in place) is a record of a valid group in
/// `segment` (its event record, or a copy of it), in order; stops at the first one missing.
fn check_segment(
    storage: &dyn Storage,
    segment: u64,
    events: &mut [Needed],
) -> Result<(), LogError> {
    // Both in offset order, walked together; the reading stops once every needed event
    // was found, or one was passed over (missing).
    if !events.is_sorted_by_key(|n| n.offset) {
        events.sort_unstable_by_key(|n| n.offset);
    }
    let mut needed = events.iter().peekable();
    let mut passed = None;
    reader::for_each_group(storage, segment, |offset, group| {
        for (seq, location, _) in group_events(group, offset, segment) {
            let at = u64::from;
            match needed.peek() {
                Some(n) if (at(n.offset), n.seq, n.len) == (location.offset, seq, location.len) => {
                    needed.next();
                }
                Some(n) if at(n.offset) <= location.offset => {
                    passed = Some(**n);
                    return Ok(false);
                }
                Some(_) => {}
                None => return Ok(false),
            }
        }
        Ok(true)
    })?;
    if let Some(n) = passed.or_else(|| needed.next().copied()) {
        return Err(corrupt(
            &segment::segment_name(segment),
            u64::from(n.offset),
            CorruptWhy::EventMissing { seq: n.seq },
        ));
    }
    Ok(())
}

/// A needed event's record in an old segment, as the state places it: 16 bytes, since a
/// restart with a large backlog lists every pending event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needed {
    seq: u64,
    offset: u32,
    len: u32,
}
