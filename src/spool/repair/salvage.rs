//! Salvage: what survives of a damaged log. Every segment read, every group whose frame
//! checks kept (resynchronising after damage), the records after the newest checkpoint that
//! decodes applied in lsn order, and every event left without an intact record named.

use super::*;

/// Bytes that are not a valid group where one was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: String,
    pub offset: u64,
    pub len: u64,
    pub why: String,
    /// What the damaged bytes still seem to hold (unverified: their checksum failed), if
    /// they start like a group: (lsn, the record described, its webhook id for an event).
    pub unverified: Vec<(u64, String, Option<String>)>,
    /// No intact group comes after it in the log: it may be the torn last group of a crash
    /// (never acknowledged), or acknowledged records whose number cannot be told.
    pub at_end: bool,
}

/// An event the repaired log does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostEvent {
    pub seq: u64,
    /// What the state knew of it: when received, and each route holding it.
    pub received_at_ms: u64,
    pub routes: Vec<String>,
    /// From the damaged bytes (unverified), when they show it.
    pub webhook_id: Option<String>,
}

/// What [`salvage`] kept and what it could not.
#[derive(Debug)]
pub struct Salvage {
    /// The state rebuilt from the starting checkpoint and every record kept.
    pub state: State,
    /// Locations of intact event records (an event, or the event inside a copy).
    intact: HashSet<Location>,
    /// The checkpoint the state started from.
    pub checkpoint: Option<String>,
    /// Checkpoints that do not decode: (file, offset, why).
    pub damaged_checkpoints: Vec<(String, u64, String)>,
    pub damaged: Vec<Damage>,
    /// lsn ranges `[from, to)` whose records are gone.
    pub lost_lsns: Vec<(u64, u64)>,
    /// Records kept that are about an event whose own record was lost: (lsn, what).
    pub orphans: Vec<(u64, String)>,
    /// Events whose record was lost but a compaction copy of it was kept.
    pub resurrected: Vec<u64>,
    /// Events the state holds whose record is not intact.
    pub lost_events: Vec<LostEvent>,
    /// Routes holding events whose `Route` record (their name) was lost.
    pub unnamed_routes: Vec<RouteId>,
    /// Records applied, and those passed over as void (a later segment declared them so).
    pub records: u64,
    pub void_records: u64,
}

impl Salvage {
    pub(super) fn lose(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        match self.lost_lsns.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => self.lost_lsns.push((from, to)),
        }
    }

    pub(super) fn is_lost(&self, lsn: u64) -> bool {
        self.lost_lsns.iter().any(|&(a, b)| (a..b).contains(&lsn))
    }

    /// Whether anything at all was lost or damaged.
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
            && self.damaged_checkpoints.is_empty()
            && self.unnamed_routes.is_empty()
            && self.lost_lsns.is_empty()
            && self.lost_events.is_empty()
    }
}

/// The intact groups of one segment and the damaged regions between them.
pub(super) struct Found {
    pub(super) header: Option<SegmentHeader>,
    /// Offsets of valid group frames of this segment, in file order.
    pub(super) groups: Vec<u64>,
    /// (offset, length, why).
    pub(super) damaged: Vec<(u64, u64, BadFrame)>,
}

/// Every valid group frame in a segment's bytes, resynchronising after damage at the next
/// 8-byte boundary holding a valid group of this segment. Pure.
pub(super) fn find_groups(bytes: &[u8], index: u64) -> Found {
    let mut found = Found {
        header: None,
        groups: Vec::new(),
        damaged: Vec::new(),
    };
    match segment::decode_segment_header(bytes) {
        Ok(h) if h.index == index => found.header = Some(h),
        Ok(_) => found
            .damaged
            .push((0, SEGMENT_HEADER_LEN as u64, BadFrame::Segment)),
        Err(why) => found.damaged.push((0, SEGMENT_HEADER_LEN as u64, why)),
    }
    // The end of the last non-zero byte, rounded up: where damage with nothing valid after
    // it stops.
    let data_end = bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| (i + 1).div_ceil(ALIGN) * ALIGN)
        .min(bytes.len());
    let mut at = SEGMENT_HEADER_LEN;
    while at < data_end {
        match segment::decode_group(&bytes[at..], index) {
            Ok(g) => {
                found.groups.push(at as u64);
                at += g.header.frame_len();
            }
            Err(why) => {
                let next = segment::find_valid_group(bytes, at + ALIGN, index).map(|n| n as usize);
                let end = next.unwrap_or(data_end);
                found.damaged.push((at as u64, (end - at) as u64, why));
                match next {
                    Some(n) => at = n,
                    None => break,
                }
            }
        }
    }
    found
}

/// What damaged bytes that start like a group frame seem to hold, record by record, read
/// without their checksum: (lsn, description, webhook id).
pub(super) fn unverified(bytes: &[u8], state: &State) -> Vec<(u64, String, Option<String>)> {
    let mut out = Vec::new();
    let Some(h) = bytes.get(..GROUP_HEADER_LEN) else {
        return out;
    };
    if h[0..4] != GROUP_MAGIC {
        return out;
    }
    let u32_at = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[16..24]);
    let first_lsn = u64::from_le_bytes(first);
    let count = u32_at(24);
    let payload_len = u32_at(28) as usize;
    let payload_end = GROUP_HEADER_LEN
        .saturating_add(payload_len)
        .min(bytes.len());
    let mut rest = &bytes[GROUP_HEADER_LEN..payload_end];
    for i in 0..u64::from(count.min(4096)) {
        let Some(len) = rest.get(..RECORD_LEN_BYTES) else {
            break;
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(record) = rest.get(RECORD_LEN_BYTES..RECORD_LEN_BYTES.saturating_add(len)) else {
            break;
        };
        rest = &rest[RECORD_LEN_BYTES + len..];
        let lsn = first_lsn.saturating_add(i);
        match Record::decode(record) {
            Ok(r) => {
                let id = match &r {
                    Record::Event(e) | Record::Copy { event: e, .. } => {
                        e.webhook_id.map(str::to_string)
                    }
                    _ => None,
                };
                out.push((lsn, describe(&r, state), id));
            }
            Err(e) => out.push((lsn, format!("a record that does not decode ({e})"), None)),
        }
    }
    out
}

/// A route's name; one whose `Route` record was lost (in a segment compaction deleted,
/// behind a damaged checkpoint) gets a name of its own, so that its events stay apart from
/// every configured route: hookfan keeps them as a removed route's (see the report).
pub(super) fn route_name(state: &State, id: RouteId) -> String {
    state
        .route_name(id)
        .map_or_else(|| format!("unnamed-route-{id}"), str::to_string)
}

/// One line about a record, for the report.
pub(super) fn describe(record: &Record<'_>, state: &State) -> String {
    let event = |e: &EventRecord<'_>| {
        let routes: Vec<String> = e
            .routes
            .iter()
            .map(|r| route_name(state, r.route))
            .collect();
        format!(
            "event, webhook id {}, type {}, routes [{}]",
            e.webhook_id.unwrap_or("-"),
            e.event_type.unwrap_or("-"),
            routes.join(", ")
        )
    };
    match record {
        Record::Route { id, name } => format!("route {name:?} bound to id {id}"),
        Record::Event(e) => event(e),
        Record::Copy { seq, event: e } => format!("copy of event {seq}: {}", event(e)),
        Record::Delivered { route, seq } => {
            format!("event {seq} delivered on {}", route_name(state, *route))
        }
        Record::Retry { route, seq, .. } => {
            format!("event {seq} to retry on {}", route_name(state, *route))
        }
        Record::Hold { route, seq, .. } => {
            format!("event {seq} held on {}", route_name(state, *route))
        }
        Record::Dead { route, seq, .. } => {
            format!("event {seq} dead on {}", route_name(state, *route))
        }
        Record::Replay { route, seq, .. } => {
            format!("event {seq} replayed on {}", route_name(state, *route))
        }
        Record::Drop { route, seq } => {
            format!("dead letter {seq} dropped on {}", route_name(state, *route))
        }
        Record::DropPending { route } => {
            format!("pending events of {} dropped", route_name(state, *route))
        }
        Record::ExpireIds { .. } => "dedup window moved".to_string(),
    }
}

/// The event a record is about, if it names one.
pub(super) fn about(record: &Record<'_>) -> Option<u64> {
    match record {
        Record::Delivered { seq, .. }
        | Record::Retry { seq, .. }
        | Record::Hold { seq, .. }
        | Record::Dead { seq, .. }
        | Record::Replay { seq, .. }
        | Record::Drop { seq, .. } => Some(*seq),
        _ => None,
    }
}

/// Reads every checkpoint and segment in `storage` and keeps what is intact. Reads only.
pub fn salvage(storage: &dyn Storage) -> Result<Salvage, LogError> {
    let names = storage
        .list()
        .map_err(|e| LogError::io("list", "the spool directory", e))?;
    let indexes = segment::indexes(&names);
    let mut lsns: Vec<u64> = names
        .iter()
        .filter_map(|n| checkpoint::checkpoint_lsn(n))
        .collect();
    lsns.sort_unstable_by(|a, b| b.cmp(a));

    let mut damaged_checkpoints = Vec::new();
    let mut base = None;
    for lsn in lsns {
        let name = checkpoint::checkpoint_name(lsn);
        let bytes = read_file(storage, &name)?;
        match checkpoint::decode(&bytes) {
            Ok(c) if c.at.lsn == lsn => {
                if base.is_none() {
                    base = Some((name, c));
                }
            }
            Ok(_) => {
                damaged_checkpoints.push((name, 0, checkpoint::BadCheckpoint::Name.to_string()))
            }
            Err((offset, why)) => damaged_checkpoints.push((name, offset, why.to_string())),
        }
    }
    let (state, base_lsn, checkpoint) = match base {
        Some((name, c)) => (c.state, c.at.lsn, Some(name)),
        None => (State::new(), 1, None),
    };
    let mut s = Salvage {
        state,
        intact: HashSet::new(),
        checkpoint,
        damaged_checkpoints,
        damaged: Vec::new(),
        lost_lsns: Vec::new(),
        orphans: Vec::new(),
        resurrected: Vec::new(),
        lost_events: Vec::new(),
        unnamed_routes: Vec::new(),
        records: 0,
        void_records: 0,
    };

    // Each segment's header first: a segment's records at or after the next valid header's
    // `void from` are void when that header says `TAIL_UNTRUSTED`.
    let mut heads = Vec::with_capacity(indexes.len());
    for &index in &indexes {
        let name = segment::segment_name(index);
        let file = storage
            .open(&name)
            .map_err(|e| LogError::io("open", name.as_str(), e))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| LogError::io("read", name.as_str(), e))?;
        heads.push(
            segment::decode_segment_header(&head[..n])
                .ok()
                .filter(|h| h.index == index),
        );
    }

    // The next lsn a complete history needs.
    let mut expected = base_lsn;
    // The last intact group read: (segment, offset).
    let mut last_group: Option<(u64, u64)> = None;
    // Lsns read from damaged bytes, for naming lost events: lsn → webhook id.
    let mut seen_ids: HashMap<u64, String> = HashMap::new();
    for (p, &index) in indexes.iter().enumerate() {
        let name = segment::segment_name(index);
        let bytes = read_file(storage, &name)?;
        if bytes.iter().all(|&b| b == 0) {
            continue; // a prepared spare
        }
        let found = find_groups(&bytes, index);
        for &(offset, len, why) in &found.damaged {
            let unverified = unverified(&bytes[offset as usize..], &s.state);
            for (lsn, _, id) in &unverified {
                if let Some(id) = id {
                    seen_ids.insert(*lsn, id.clone());
                }
            }
            s.damaged.push(Damage {
                file: name.clone(),
                offset,
                len,
                why: why.describe().to_string(),
                unverified,
                at_end: false,
            });
        }
        let cut = heads[p + 1..]
            .iter()
            .flatten()
            .next()
            .filter(|h| h.tail_untrusted())
            .map(|h| h.void_from);
        if let Some(h) = found.header.filter(SegmentHeader::tail_untrusted) {
            // Lsns from `void from` to this segment's start were skipped, not lost.
            s.lose(expected, h.void_from);
            expected = expected.max(h.start_lsn);
        }
        for offset in found.groups {
            last_group = Some((index, offset));
            let Ok(group) = segment::decode_group(&bytes[offset as usize..], index) else {
                continue;
            };
            for ((lsn, bytes), at) in group.records().zip(group.record_offsets()) {
                let location = Location {
                    segment: index,
                    offset: offset + at as u64,
                    len: bytes.len() as u32,
                };
                let record = match Record::decode(bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        s.damaged.push(Damage {
                            file: name.clone(),
                            offset: location.offset,
                            len: u64::from(location.len),
                            why: format!("a record that does not decode ({e})"),
                            unverified: Vec::new(),
                            at_end: false,
                        });
                        if lsn >= expected {
                            s.lose(expected, lsn + 1);
                            expected = lsn + 1;
                        }
                        continue;
                    }
                };
                let inner = match &record {
                    Record::Event(_) => Some(location),
                    Record::Copy { seq, .. } => {
                        let prefix = Record::copy_prefix_len(*seq);
                        Some(Location {
                            segment: index,
                            offset: location.offset + prefix as u64,
                            len: location.len.saturating_sub(prefix as u32),
                        })
                    }
                    _ => None,
                };
                if let Some(inner) = inner {
                    s.intact.insert(inner);
                }
                if cut.is_some_and(|c| lsn >= c) {
                    s.void_records += 1;
                    continue;
                }
                if lsn < expected {
                    // Below the checkpoint (it holds the effect), or an lsn seen twice.
                    continue;
                }
                s.lose(expected, lsn);
                expected = lsn + 1;
                match &record {
                    Record::Copy { seq, event }
                        if s.state.event(*seq).is_none() && s.is_lost(*seq) =>
                    {
                        let inner = inner.unwrap_or(location);
                        s.state.apply(*seq, inner, &Record::Event(event.clone()));
                        s.resurrected.push(*seq);
                    }
                    r => {
                        if let Some(seq) = about(r) {
                            if s.state.event(seq).is_none() && s.is_lost(seq) {
                                s.orphans.push((lsn, describe(r, &s.state)));
                            }
                        }
                    }
                }
                s.state.apply(lsn, location, &record);
                s.records += 1;
            }
        }
    }

    for d in &mut s.damaged {
        let at = (segment::segment_index(&d.file).unwrap_or(0), d.offset);
        d.at_end = last_group.is_none_or(|last| at > last);
    }

    // Every event the state still holds must have an intact record.
    let mut holders: HashMap<u64, Vec<String>> = HashMap::new();
    for (id, q) in s.state.routes() {
        let name = route_name(&s.state, id);
        for (_, seq, _) in q.pending() {
            holders
                .entry(seq)
                .or_default()
                .push(format!("{name} (pending)"));
        }
        for (seq, _) in q.dead() {
            holders
                .entry(seq)
                .or_default()
                .push(format!("{name} (dead letter)"));
        }
    }
    let lost: Vec<LostEvent> = s
        .state
        .events()
        .filter(|(_, m)| !s.intact.contains(&m.location()))
        .map(|(seq, m)| LostEvent {
            seq,
            received_at_ms: m.received_at_ms(),
            routes: holders.remove(&seq).unwrap_or_default(),
            webhook_id: seen_ids.get(&seq).cloned(),
        })
        .collect();
    s.lost_events = lost;
    s.unnamed_routes = s
        .state
        .routes()
        .map(|(id, _)| id)
        .filter(|&id| s.state.route_name(id).is_none())
        .collect();
    Ok(s)
}
