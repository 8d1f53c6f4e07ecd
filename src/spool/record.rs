//! The records the log holds: events, and every change of a route's queue. Hand-framed (a
//! kind byte, then LEB128 integers and length-prefixed strings and bytes), decoded without
//! copying: a decoded [`Record`] borrows from the group it was read from. Pure; the decoder
//! never panics and never allocates.
//!
//! An event's routes are decoded lazily ([`RouteDues::Encoded`]): decoding checks them once
//! and keeps their bytes, so it allocates nothing at all.
//!
//! A record does not store its own sequence number: it is the lsn the group header gives it
//! (`first_lsn + its index`). An event's `seq` is the lsn of its [`Record::Event`], so seqs
//! are unique and grow in commit order, and every other record names an event by it.
//!
//! Why hand-framed rather than postcard (as `codec.rs` does): the decoder borrows every string
//! and the body (postcard would too), but here no count read from the input can reserve
//! memory at all, and each failure is a typed [`RecordError`].

use std::borrow::Cow;

use super::api::TraceRef;

/// A route, interned: [`Record::Route`] binds the id to the route's name once; every later
/// record names the route by id (1–5 bytes instead of the name).
pub type RouteId = u32;

const KIND_ROUTE: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_DELIVERED: u8 = 3;
const KIND_RETRY: u8 = 4;
const KIND_HOLD: u8 = 5;
const KIND_DEAD: u8 = 6;
const KIND_REPLAY: u8 = 7;
const KIND_DROP: u8 = 8;
const KIND_DROP_PENDING: u8 = 9;
const KIND_COPY: u8 = 10;
const KIND_EXPIRE_IDS: u8 = 11;
/// An event whose routes also carry message groups (FIFO routes): `(route, due, group)`.
const KIND_EVENT_GROUPED: u8 = 12;
/// An event with a flags byte after its kind ([`EXT_GROUPED`], [`EXT_TRACED`]): written only
/// for an event that carries a trace, so an untraced event's bytes stay those of kinds 2 and
/// 12 (and a hookfan without tracing writes nothing an older one cannot read).
const KIND_EVENT_EXT: u8 = 13;
/// Its routes carry message groups, as in [`KIND_EVENT_GROUPED`].
const EXT_GROUPED: u8 = 1;
/// A trace follows the path: trace id (16 bytes), span id (8), flags (1), `tracestate`.
const EXT_TRACED: u8 = 2;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// From here on, `id` names the route `name`.
    Route { id: RouteId, name: &'a str },
    /// A verified webhook, stored once, queued on each route it names.
    Event(EventRecord<'a>),
    /// The route delivered the event: it leaves the route's queue.
    Delivered { route: RouteId, seq: u64 },
    /// Unordered routes: try again at `due_ms` (the event moves behind those due earlier).
    Retry {
        route: RouteId,
        seq: u64,
        due_ms: u64,
        attempts: u32,
        error: &'a str,
    },
    /// Ordered routes: the event keeps its place and waits until `not_before_ms`.
    Hold {
        route: RouteId,
        seq: u64,
        not_before_ms: u64,
        attempts: u32,
        error: &'a str,
    },
    /// The route gave up: the event moves to its dead letters.
    Dead {
        route: RouteId,
        seq: u64,
        attempts: u32,
        error: &'a str,
        dead_at_ms: u64,
    },
    /// A dead letter goes back into the route's queue, due at `due_ms`, with fresh attempts.
    Replay {
        route: RouteId,
        seq: u64,
        due_ms: u64,
    },
    /// A dead letter is dropped.
    Drop { route: RouteId, seq: u64 },
    /// Every pending event of the route is forgotten (a route that no longer runs).
    DropPending { route: RouteId },
    /// Compaction copied event `seq` forward: from here on its record is `event` (the bytes
    /// after this record's prefix, see [`Record::copy_prefix_len`], which decode as a
    /// [`Record::Event`]), and the older copy is no longer read. Changes no queue. An event
    /// no route holds any more (kept only for its id) is copied without its body and routes.
    Copy { seq: u64, event: EventRecord<'a> },
    /// The dedup window moved: ids received before `before_ms` are forgotten, at most
    /// `limit` of them ([`crate::spool::State::expire_ids`]). A record, so a restart
    /// forgets exactly what was forgotten, and compaction may delete what only those ids
    /// kept.
    ExpireIds { before_ms: u64, limit: u32 },
}

/// A verified webhook as stored: everything needed to deliver it again, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord<'a> {
    pub webhook_id: Option<&'a str>,
    pub received_at_ms: u64,
    pub api_key: Option<&'a str>,
    /// Stream's `X-Signature`, forwarded unchanged.
    pub signature: &'a str,
    pub event_type: Option<&'a str>,
    /// The request's path and query, as received.
    pub path: Option<&'a str>,
    /// The trace its deliveries join (tracing on at ingest).
    pub trace: Option<TraceRef<'a>>,
    /// The uncompressed body exactly as signed.
    pub body: &'a [u8],
    /// The routes that take the event, each with the time it is first due.
    pub routes: RouteDues<'a>,
}

/// One route an event is queued on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDue {
    pub route: RouteId,
    /// When it is first due there (ms since the epoch).
    pub due_ms: u64,
    /// On an ordered (FIFO) route, the fingerprint of the event's message group: a held
    /// event blocks only the later events of its group. 0: none, which on an ordered route
    /// means the whole route (see "FIFO holds" in mod.rs).
    pub group: u64,
}

impl RouteDue {
    /// Queued on `route`, first due at `due_ms`, in no message group.
    pub fn new(route: RouteId, due_ms: u64) -> RouteDue {
        RouteDue {
            route,
            due_ms,
            group: 0,
        }
    }
}

/// An event's routes, each with the time it is first due.
#[derive(Debug, Clone)]
pub enum RouteDues<'a> {
    /// Given by the caller, to encode.
    List(Cow<'a, [RouteDue]>),
    /// As decoded: `count` pairs (or, `grouped`, triples) of LEB128 integers, already
    /// checked.
    Encoded {
        count: u32,
        grouped: bool,
        bytes: &'a [u8],
    },
}

impl RouteDues<'_> {
    pub fn len(&self) -> usize {
        match self {
            RouteDues::List(list) => list.len(),
            RouteDues::Encoded { count, .. } => *count as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The routes, in order.
    pub fn iter(&self) -> RouteDuesIter<'_> {
        match self {
            RouteDues::List(list) => RouteDuesIter {
                list: list.iter(),
                encoded: In(&[]),
                grouped: false,
                left: 0,
            },
            RouteDues::Encoded {
                count,
                grouped,
                bytes,
            } => RouteDuesIter {
                list: [].iter(),
                encoded: In(bytes),
                grouped: *grouped,
                left: *count,
            },
        }
    }

    /// Whether some route has a message group (the record is then written grouped).
    fn grouped(&self) -> bool {
        self.iter().any(|r| r.group != 0)
    }
}

impl PartialEq for RouteDues<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for RouteDues<'_> {}

impl From<Vec<RouteDue>> for RouteDues<'static> {
    fn from(list: Vec<RouteDue>) -> Self {
        RouteDues::List(Cow::Owned(list))
    }
}

impl<'a> From<&'a [RouteDue]> for RouteDues<'a> {
    fn from(list: &'a [RouteDue]) -> Self {
        RouteDues::List(Cow::Borrowed(list))
    }
}

/// Iterator over [`RouteDues`].
pub struct RouteDuesIter<'b> {
    list: std::slice::Iter<'b, RouteDue>,
    encoded: In<'b>,
    grouped: bool,
    left: u32,
}

impl Iterator for RouteDuesIter<'_> {
    type Item = RouteDue;

    fn next(&mut self) -> Option<RouteDue> {
        if let Some(&due) = self.list.next() {
            return Some(due);
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when the record was decoded; an error here cannot happen, and ends it.
        let route = self.encoded.u32().ok()?;
        let due_ms = self.encoded.uint().ok()?;
        let group = if self.grouped {
            self.encoded.uint().ok()?
        } else {
            0
        };
        Some(RouteDue {
            route,
            due_ms,
            group,
        })
    }
}

/// Why a record's bytes do not decode. The group's checksum was valid, so any of these is
/// a bug or a foreign writer, never a torn write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the record ends early")]
    Truncated,
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("an integer is longer than its type")]
    Overflow,
    #[error("a string is not UTF-8")]
    Utf8,
    #[error("bytes left after the record")]
    Trailing,
    #[error("an option tag is neither 0 nor 1")]
    OptionTag,
    /// An event's flags byte sets a bit no version of hookfan gives a meaning, or lacks
    /// the one its kind is written for.
    #[error("an event's flags byte {0:#04x} is not one hookfan writes")]
    Flags(u8),
    /// A checkpoint names an error text by a number it has not given one.
    #[error("an error text's number names none given before")]
    TextNumber,
    /// A checkpoint's dead letter names no error text (number 0).
    #[error("a dead letter without its error text")]
    NoText,
}

/// LEB128 integers, length-prefixed strings and bytes (also the checkpoint's encoding).
pub(super) struct Out<'o>(pub(super) &'o mut Vec<u8>);

impl Out<'_> {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub(super) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub(super) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// Reads what [`Out`] writes, borrowing; never panics, never allocates.
pub(super) struct In<'a>(pub(super) &'a [u8]);

impl<'a> In<'a> {
    pub(super) fn u8(&mut self) -> Result<u8, RecordError> {
        let (&b, rest) = self.0.split_first().ok_or(RecordError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    /// `N` raw bytes.
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let (head, rest) = self.0.split_first_chunk().ok_or(RecordError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    pub(super) fn uint(&mut self) -> Result<u64, RecordError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(RecordError::Overflow);
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::Overflow)
    }

    pub(super) fn u32(&mut self) -> Result<u32, RecordError> {
        u32::try_from(self.uint()?).map_err(|_| RecordError::Overflow)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let len = usize::try_from(self.uint()?).map_err(|_| RecordError::Overflow)?;
        if len > self.0.len() {
            return Err(RecordError::Truncated);
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }

    pub(super) fn str(&mut self) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| RecordError::Utf8)
    }

    pub(super) fn opt_str(&mut self) -> Result<Option<&'a str>, RecordError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(RecordError::OptionTag),
        }
    }
}

impl<'a> Record<'a> {
    /// Appends the record's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut o = Out(out);
        match self {
            Record::Route { id, name } => {
                o.u8(KIND_ROUTE);
                o.uint(u64::from(*id));
                o.str(name);
            }
            Record::Event(e) => {
                let grouped = e.routes.grouped();
                match (e.trace, grouped) {
                    (None, false) => o.u8(KIND_EVENT),
                    (None, true) => o.u8(KIND_EVENT_GROUPED),
                    (Some(_), grouped) => {
                        o.u8(KIND_EVENT_EXT);
                        o.u8(EXT_TRACED | if grouped { EXT_GROUPED } else { 0 });
                    }
                }
                o.opt_str(e.webhook_id);
                o.uint(e.received_at_ms);
                o.opt_str(e.api_key);
                o.str(e.signature);
                o.opt_str(e.event_type);
                o.opt_str(e.path);
                if let Some(t) = &e.trace {
                    o.0.extend_from_slice(&t.trace_id);
                    o.0.extend_from_slice(&t.span_id);
                    o.u8(t.flags);
                    o.str(t.state);
                }
                o.uint(e.routes.len() as u64);
                for r in e.routes.iter() {
                    o.uint(u64::from(r.route));
                    o.uint(r.due_ms);
                    if grouped {
                        o.uint(r.group);
                    }
                }
                // Last, so everything before it sits in the group's first bytes.
                o.bytes(e.body);
            }
            Record::Delivered { route, seq } => {
                o.u8(KIND_DELIVERED);
                o.uint(u64::from(*route));
                o.uint(*seq);
            }
            Record::Retry {
                route,
                seq,
                due_ms,
                attempts,
                error,
            } => {
                o.u8(KIND_RETRY);
                o.uint(u64::from(*route));
                o.uint(*seq);
                o.uint(*due_ms);
                o.uint(u64::from(*attempts));
                o.str(error);
            }
            Record::Hold {
                route,
                seq,
                not_before_ms,
                attempts,
                error,
            } => {
                o.u8(KIND_HOLD);
                o.uint(u64::from(*route));
                o.uint(*seq);
                o.uint(*not_before_ms);
                o.uint(u64::from(*attempts));
                o.str(error);
            }
            Record::Dead {
                route,
                seq,
                attempts,
                error,
                dead_at_ms,
            } => {
                o.u8(KIND_DEAD);
                o.uint(u64::from(*route));
                o.uint(*seq);
                o.uint(u64::from(*attempts));
                o.str(error);
                o.uint(*dead_at_ms);
            }
            Record::Replay { route, seq, due_ms } => {
                o.u8(KIND_REPLAY);
                o.uint(u64::from(*route));
                o.uint(*seq);
                o.uint(*due_ms);
            }
            Record::Drop { route, seq } => {
                o.u8(KIND_DROP);
                o.uint(u64::from(*route));
                o.uint(*seq);
            }
            Record::DropPending { route } => {
                o.u8(KIND_DROP_PENDING);
                o.uint(u64::from(*route));
            }
            Record::ExpireIds { before_ms, limit } => {
                o.u8(KIND_EXPIRE_IDS);
                o.uint(*before_ms);
                o.uint(u64::from(*limit));
            }
            Record::Copy { seq, event } => {
                o.u8(KIND_COPY);
                o.uint(*seq);
                // The event record whole, kind byte included: its location is this record's
                // plus the prefix, and a reader decodes it as any event.
                Record::Event(event.clone()).encode_into(o.0);
            }
        }
    }

    /// How many bytes of a [`Record::Copy`] of `seq` come before the event record it holds.
    pub fn copy_prefix_len(seq: u64) -> usize {
        let mut prefix = Vec::with_capacity(11);
        let mut o = Out(&mut prefix);
        o.u8(KIND_COPY);
        o.uint(seq);
        prefix.len()
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Reads one record: all of `bytes`, nothing more.
    pub fn decode(bytes: &'a [u8]) -> Result<Record<'a>, RecordError> {
        let mut i = In(bytes);
        let record = match i.u8()? {
            KIND_ROUTE => Record::Route {
                id: i.u32()?,
                name: i.str()?,
            },
            kind @ (KIND_EVENT | KIND_EVENT_GROUPED | KIND_EVENT_EXT) => {
                Record::Event(decode_event(&mut i, kind)?)
            }
            KIND_DELIVERED => Record::Delivered {
                route: i.u32()?,
                seq: i.uint()?,
            },
            KIND_RETRY => Record::Retry {
                route: i.u32()?,
                seq: i.uint()?,
                due_ms: i.uint()?,
                attempts: i.u32()?,
                error: i.str()?,
            },
            KIND_HOLD => Record::Hold {
                route: i.u32()?,
                seq: i.uint()?,
                not_before_ms: i.uint()?,
                attempts: i.u32()?,
                error: i.str()?,
            },
            KIND_DEAD => Record::Dead {
                route: i.u32()?,
                seq: i.uint()?,
                attempts: i.u32()?,
                error: i.str()?,
                dead_at_ms: i.uint()?,
            },
            KIND_REPLAY => Record::Replay {
                route: i.u32()?,
                seq: i.uint()?,
                due_ms: i.uint()?,
            },
            KIND_DROP => Record::Drop {
                route: i.u32()?,
                seq: i.uint()?,
            },
            KIND_DROP_PENDING => Record::DropPending { route: i.u32()? },
            KIND_EXPIRE_IDS => Record::ExpireIds {
                before_ms: i.uint()?,
                limit: i.u32()?,
            },
            KIND_COPY => {
                let seq = i.uint()?;
                match i.u8()? {
                    kind @ (KIND_EVENT | KIND_EVENT_GROUPED | KIND_EVENT_EXT) => Record::Copy {
                        seq,
                        event: decode_event(&mut i, kind)?,
                    },
                    kind => return Err(RecordError::UnknownKind(kind)),
                }
            }
            kind => return Err(RecordError::UnknownKind(kind)),
        };
        if !i.0.is_empty() {
            return Err(RecordError::Trailing);
        }
        Ok(record)
    }
}

/// The fields of an event record of `kind`, after its kind byte.
fn decode_event<'a>(i: &mut In<'a>, kind: u8) -> Result<EventRecord<'a>, RecordError> {
    let flags = match kind {
        KIND_EVENT => 0,
        KIND_EVENT_GROUPED => EXT_GROUPED,
        // Kind 13 is written only for a traced event: one record, one encoding.
        _ => match i.u8()? {
            flags if flags & !EXT_GROUPED == EXT_TRACED => flags,
            flags => return Err(RecordError::Flags(flags)),
        },
    };
    let grouped = flags & EXT_GROUPED != 0;
    let webhook_id = i.opt_str()?;
    let received_at_ms = i.uint()?;
    let api_key = i.opt_str()?;
    let signature = i.str()?;
    let event_type = i.opt_str()?;
    let path = i.opt_str()?;
    let trace = if flags & EXT_TRACED != 0 {
        Some(TraceRef {
            trace_id: i.array()?,
            span_id: i.array()?,
            flags: i.u8()?,
            state: i.str()?,
        })
    } else {
        None
    };
    let count = i.u32()?;
    // Checked now, read again when iterated: nothing is allocated.
    let start = i.0;
    for _ in 0..count {
        i.u32()?;
        i.uint()?;
        if grouped {
            i.uint()?;
        }
    }
    let routes = RouteDues::Encoded {
        count,
        grouped,
        bytes: &start[..start.len() - i.0.len()],
    };
    Ok(EventRecord {
        webhook_id,
        received_at_ms,
        api_key,
        signature,
        event_type,
        path,
        trace,
        routes,
        body: i.bytes()?,
    })
}

/// An event record for tests of what records mean: body `{}`, each route due at `received`.
#[cfg(test)]
pub(crate) fn test_event<'a>(id: Option<&'a str>, received: u64, routes: &[RouteId]) -> Record<'a> {
    Record::Event(EventRecord {
        webhook_id: id,
        received_at_ms: received,
        api_key: None,
        signature: "s",
        event_type: None,
        path: None,
        trace: None,
        body: b"{}",
        routes: routes
            .iter()
            .map(|&r| RouteDue::new(r, received))
            .collect::<Vec<_>>()
            .into(),
    })
}

#[cfg(test)]
mod tests;
