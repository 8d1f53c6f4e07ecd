//! The log spool's decoders (`spool::segment` and `spool::record`) on arbitrary
//! bytes and on real segments damaged at random: they must never panic, what they accept
//! must hold together, and damage must never change what comes before it.
//!
//! Input layout: the first byte chooses the mode.
//! - Even: the rest is raw bytes, handed to every decoder as a record, a group, a segment
//!   header and a whole segment (its index from the first 8 bytes). A record that decodes
//!   must encode to bytes that decode to the same record; a scanned segment's groups must
//!   lie inside the input and follow one another.
//! - Odd: the rest builds (with `arbitrary`) records, grouped, written as a valid segment,
//!   then optionally damaged (one byte changed) or cut short. Undamaged, the scan must give
//!   back every group and every record exactly; damaged at offset d, it must give back
//!   every group that ends before d, unchanged. Checksums make random bytes almost never a
//!   valid group, so this mode is how the fuzzer reaches the code behind them.
//!
//! - Even inputs are also a checkpoint: raw, and as the body of a checkpoint sealed around
//!   them (header and block checksums right) in each version read, so the fuzzer reaches
//!   the bodies' decoders (`checkpoint::decode`); a checkpoint that decodes must encode to
//!   one that decodes to the same place in the log and the same events.
//!
//! Allocation: the decoders reserve nothing the input does not hold (libFuzzer's
//! `-malloc_limit_mb` catches a regression that would).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use hookfan::spool::checkpoint::{self, CheckpointAt};
use hookfan::spool::record::{EventRecord, Record, RouteDue};
use hookfan::spool::TraceRef;
use hookfan::spool::segment::{
    self, ScanEnd, SegmentHeader, SegmentScan, GROUP_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Rec {
    Route(u32, String),
    Event {
        id: Option<String>,
        at: u64,
        key: Option<String>,
        signature: String,
        event_type: Option<String>,
        path: Option<String>,
        /// Trace id, span id, flags, tracestate (record kind 13).
        trace: Option<([u8; 16], [u8; 8], u8, String)>,
        body: Vec<u8>,
        routes: Vec<(u32, u64, u64)>,
    },
    Delivered(u32, u64),
    Retry(u32, u64, u64, u32, String),
    Hold(u32, u64, u64, u32, String),
    Dead(u32, u64, u32, String, u64),
    Replay(u32, u64, u64),
    Drop(u32, u64),
    DropPending(u32),
    ExpireIds(u64, u32),
}

impl Rec {
    fn record(&self) -> Record<'_> {
        match self {
            Rec::Route(id, name) => Record::Route { id: *id, name },
            Rec::Event {
                id,
                at,
                key,
                signature,
                event_type,
                path,
                trace,
                body,
                routes,
            } => Record::Event(EventRecord {
                webhook_id: id.as_deref(),
                received_at_ms: *at,
                api_key: key.as_deref(),
                signature,
                event_type: event_type.as_deref(),
                path: path.as_deref(),
                trace: trace.as_ref().map(|(trace_id, span_id, flags, state)| TraceRef {
                    trace_id: *trace_id,
                    span_id: *span_id,
                    flags: *flags,
                    state,
                }),
                body,
                routes: routes
                    .iter()
                    .map(|&(route, due_ms, group)| RouteDue {
                        route,
                        due_ms,
                        group,
                    })
                    .collect::<Vec<_>>()
                    .into(),
            }),
            Rec::Delivered(route, seq) => Record::Delivered {
                route: *route,
                seq: *seq,
            },
            Rec::Retry(route, seq, due_ms, attempts, error) => Record::Retry {
                route: *route,
                seq: *seq,
                due_ms: *due_ms,
                attempts: *attempts,
                error,
            },
            Rec::Hold(route, seq, not_before_ms, attempts, error) => Record::Hold {
                route: *route,
                seq: *seq,
                not_before_ms: *not_before_ms,
                attempts: *attempts,
                error,
            },
            Rec::Dead(route, seq, attempts, error, dead_at_ms) => Record::Dead {
                route: *route,
                seq: *seq,
                attempts: *attempts,
                error,
                dead_at_ms: *dead_at_ms,
            },
            Rec::Replay(route, seq, due_ms) => Record::Replay {
                route: *route,
                seq: *seq,
                due_ms: *due_ms,
            },
            Rec::Drop(route, seq) => Record::Drop {
                route: *route,
                seq: *seq,
            },
            Rec::DropPending(route) => Record::DropPending { route: *route },
            Rec::ExpireIds(before_ms, limit) => Record::ExpireIds {
                before_ms: *before_ms,
                limit: *limit,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Built {
    index: u64,
    start_lsn: u32,
    groups: Vec<Vec<Rec>>,
    /// Zeros after the last group.
    spare: u8,
    /// (offset, xor): one byte changed (xor 0 changes nothing).
    damage: Option<(u16, u8)>,
    /// Cut the file to this length.
    cut: Option<u16>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        raw(rest);
    } else if let Ok(built) = Built::arbitrary_take_rest(Unstructured::new(rest)) {
        damaged(&built);
    }
});

fn raw(bytes: &[u8]) {
    if let Ok(record) = Record::decode(bytes) {
        let again = record.encode();
        assert_eq!(Record::decode(&again).as_ref(), Ok(&record));
    }
    let _ = segment::decode_segment_header(bytes);
    let index = bytes
        .get(..8)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap()));
    if let Ok(group) = segment::decode_group(bytes, index) {
        assert!(GROUP_HEADER_LEN + group.payload.len() <= bytes.len());
        assert_eq!(group.records().count(), group.header.count as usize);
        for (_, r) in group.records() {
            let _ = Record::decode(r);
        }
    }
    check_scan(bytes, index);
    check_checkpoint(bytes);
    let at = CheckpointAt {
        lsn: index,
        segment: index >> 32,
    };
    for version in [1, checkpoint::CHECKPOINT_VERSION] {
        check_checkpoint(&checkpoint::seal(at, version, bytes));
    }
}

/// A checkpoint that decodes re-encodes to one that decodes the same.
fn check_checkpoint(bytes: &[u8]) {
    if let Ok(c) = checkpoint::decode(bytes) {
        let again = checkpoint::decode(&checkpoint::encode(&c.state)).expect("re-encoded");
        assert_eq!(again.at, c.at);
        assert_eq!(again.state.live_events(), c.state.live_events());
        assert!(again.state.events().eq(c.state.events()));
    }
}

/// A scan's verdict must hold together; returns its groups.
fn check_scan(bytes: &[u8], index: u64) -> Vec<segment::GroupAt> {
    let SegmentScan::Used {
        header,
        groups,
        end,
    } = segment::scan(bytes, index)
    else {
        return Vec::new();
    };
    let mut next = header.start_lsn;
    let mut end_of_groups = SEGMENT_HEADER_LEN as u64;
    for g in &groups {
        assert_eq!(g.offset, end_of_groups, "groups follow one another");
        assert_eq!(g.header.first_lsn, next, "lsns follow one another");
        assert!(
            g.offset as usize + GROUP_HEADER_LEN + g.header.payload_len as usize <= bytes.len()
        );
        next = g.header.end_lsn();
        end_of_groups = g.offset + g.header.frame_len() as u64;
    }
    match end {
        ScanEnd::Clean { offset } => assert_eq!(offset, end_of_groups),
        ScanEnd::Bad {
            offset,
            valid_after,
            ..
        } => {
            assert_eq!(offset, end_of_groups);
            if let Some(after) = valid_after {
                assert!(after > offset && (after as usize) < bytes.len());
            }
        }
    }
    groups
}

fn damaged(built: &Built) {
    let header = SegmentHeader {
        index: built.index,
        flags: 0,
        start_lsn: u64::from(built.start_lsn),
        void_from: u64::from(built.start_lsn),
    };
    let mut bytes = segment::encode_segment_header(&header).to_vec();
    let mut lsn = header.start_lsn;
    let mut ends = Vec::new();
    for group in &built.groups {
        let mut frame = vec![0; GROUP_HEADER_LEN];
        for r in group {
            segment::push_record(&mut frame, |out| r.record().encode_into(out));
        }
        segment::seal_group(&mut frame, 0, built.index, lsn, group.len() as u32);
        lsn += group.len() as u64;
        bytes.extend_from_slice(&frame);
        ends.push(bytes.len());
    }
    bytes.resize(bytes.len() + usize::from(built.spare), 0);

    // The first offset the damage touches (none: the whole file is intact).
    let built_len = bytes.len();
    let mut intact_up_to = built_len;
    if let Some((at, xor)) = built.damage {
        let at = usize::from(at) % bytes.len();
        bytes[at] ^= xor;
        if xor != 0 {
            intact_up_to = at;
        }
    }
    if let Some(cut) = built.cut {
        let cut = usize::from(cut).min(bytes.len());
        bytes.truncate(cut);
        intact_up_to = intact_up_to.min(cut);
    }

    let groups = check_scan(&bytes, built.index);
    if intact_up_to < SEGMENT_HEADER_LEN {
        return;
    }
    // Every group that ends before the damage comes back, records and all.
    let whole = ends.iter().take_while(|&&end| end <= intact_up_to).count();
    assert!(
        groups.len() >= whole,
        "{} groups back, {whole} intact before the damage",
        groups.len()
    );
    for (g, built_group) in groups.iter().zip(&built.groups).take(whole) {
        let group = segment::decode_group(&bytes[g.offset as usize..], built.index).unwrap();
        let records: Vec<_> = group.records().map(|(_, r)| r).collect();
        assert_eq!(records.len(), built_group.len());
        for (bytes, r) in records.iter().zip(built_group) {
            assert_eq!(Record::decode(bytes).unwrap(), r.record());
        }
    }
    if intact_up_to == built_len {
        assert_eq!(
            groups.len(),
            built.groups.len(),
            "an intact segment scans whole"
        );
    }
}
