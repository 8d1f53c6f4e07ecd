//! The log against a reference model, through crashes.
//!
//! Each case runs two epochs on one [`SimDisk`]. An epoch recovers the directory, starts a
//! writer, and runs random operations the way ingest and delivery will: appends of webhooks
//! (ids drawn from a small pool, so many repeat; the dedup check reads the stored id back),
//! deliveries, retries, holds, dead letters, replays, drops, dropping a route's queue, write
//! and sync failures (EIO, ENOSPC), failed segment preparations, time passing (expiring ids
//! from the dedup window), checkpoints, and compaction steps (segments deleted, events still
//! needed copied forward; a case's checkpoints are taken from snapshots of the writer's
//! state, or rebuilt from the log, by its seed). Every operation that was acknowledged is applied to the model;
//! one that failed is not (checkpoints and compaction change nothing the model sees). Then a few more appends and deliveries are submitted and,
//! while they are in flight, and optionally while a checkpoint and a compaction step run, the
//! power is cut at a random write or sync of the disk (the writer's, the segment
//! preparer's, or the checkpoint's): unsynced writes are dropped and the last one may be
//! torn. Three epochs in ten end with a kill instead (`kill -9` at that write or sync): the
//! next epoch finds every write, synced or not, as the page cache keeps them, and the power
//! cut that ends it may then take what was never synced, so what a restart built on must
//! have been made durable by it (see "Failure" in the log's documentation). Recovery starts from the newest checkpoint the crash left. After recovery the state must be exactly the model, give or take what was
//! in flight: an in-flight record answered as durable must be there, one answered as
//! failed (void) must not, and any other is wholly there or wholly absent:
//!
//! - every acknowledged event is pending (in the model's order, with its attempts and hold)
//!   or dead on each of its routes, or was acknowledged as delivered or dropped;
//! - nothing answered as failed comes back;
//! - the dedup index finds every id acknowledged within the window, at its event;
//! - every event a route holds reads back from where the state says (moved or not), with
//!   its id and body, and every remembered id reads back at its event;
//! - recovery never reports a torn tail as corruption.
//!
//! `HOOKFAN_LOG_MODEL_CASES` raises the case count (default 256). Failures are kept by
//! proptest in `proptest-regressions/`: commit them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::checkpoint;
use super::compaction::{Maintenance, MaintenanceConfig};
use super::reader::read_record;
use super::record::{EventRecord, Record, RouteDue, RouteId};
use super::recovery::{recover, RecoveryReport};
use super::state::State;
use super::storage::{Fault, FaultOp, SimDisk, Storage};
use super::writer::{Ticket, Writer, WriterConfig};
use super::{LogError, Trace};

const ROUTES: RouteId = 3;
const WINDOW_MS: u64 = 200;

#[derive(Debug, Clone)]
enum Op {
    /// Webhooks (id from a pool of 12, route mask), submitted together, then awaited.
    Append(Vec<(u8, u8)>),
    Deliver(RouteId, usize),
    Retry(RouteId, usize, u64),
    Hold(RouteId, usize, u64),
    Dead(RouteId, usize),
    Replay(RouteId, usize),
    Drop(RouteId, usize),
    DropPending(RouteId),
    Fail(FaultOp, Fault),
    Tick(u64),
    Checkpoint,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    let route = 0..ROUTES;
    prop_oneof![
        6 => proptest::collection::vec((0..12u8, 1..8u8), 1..5).prop_map(Op::Append),
        3 => (route.clone(), any::<usize>()).prop_map(|(r, i)| Op::Deliver(r, i)),
        2 => (route.clone(), any::<usize>(), 1..500u64).prop_map(|(r, i, d)| Op::Retry(r, i, d)),
        1 => (route.clone(), any::<usize>(), 1..500u64).prop_map(|(r, i, d)| Op::Hold(r, i, d)),
        2 => (route.clone(), any::<usize>()).prop_map(|(r, i)| Op::Dead(r, i)),
        1 => (route.clone(), any::<usize>()).prop_map(|(r, i)| Op::Replay(r, i)),
        1 => (route.clone(), any::<usize>()).prop_map(|(r, i)| Op::Drop(r, i)),
        1 => route.prop_map(Op::DropPending),
        1 => prop_oneof![Just(FaultOp::Write), Just(FaultOp::Sync)]
            .prop_flat_map(|o| prop_oneof![Just(Fault::Io), Just(Fault::NoSpace)]
                .prop_map(move |f| Op::Fail(o, f))),
        // A full disk for segment preparations (an EIO there means the disk is gone).
        1 => Just(Op::Fail(FaultOp::Create, Fault::NoSpace)),
        2 => (1..150u64).prop_map(Op::Tick),
        1 => Just(Op::Checkpoint),
        3 => Just(Op::Compact),
    ]
}

#[derive(Debug, Clone)]
struct Epoch {
    ops: Vec<Op>,
    /// Appends in flight at the crash.
    in_flight_appends: Vec<(u8, u8)>,
    /// Deliveries in flight at the crash: (route, pick).
    in_flight_deliveries: Vec<(RouteId, usize)>,
    /// The power goes at this write or sync after the in-flight records are submitted.
    crash_at_op: u64,
    /// The crash is a kill (`kill -9`): the page cache outlives the process, with what was
    /// never synced, which the next epoch's power cut may then take.
    kill: bool,
    /// A checkpoint and a compaction step run while the crash comes.
    maintain_at_crash: bool,
    /// After the crash, a byte of the newest checkpoint is flipped (at this pick): recovery
    /// must pass over it to the older one and the log after it, losing nothing.
    damage_checkpoint: Option<usize>,
}

fn epoch() -> impl Strategy<Value = Epoch> {
    (
        proptest::collection::vec(op(), 0..40),
        proptest::collection::vec((0..12u8, 1..8u8), 0..4),
        proptest::collection::vec((0..ROUTES, any::<usize>()), 0..3),
        (1..8u64, proptest::bool::weighted(0.3)),
        any::<bool>(),
        proptest::option::weighted(0.25, any::<usize>()),
    )
        .prop_map(
            |(
                ops,
                in_flight_appends,
                in_flight_deliveries,
                (crash_at_op, kill),
                maintain_at_crash,
                damage_checkpoint,
            )| {
                Epoch {
                    ops,
                    in_flight_appends,
                    in_flight_deliveries,
                    crash_at_op,
                    kill,
                    maintain_at_crash,
                    damage_checkpoint,
                }
            },
        )
}

/// A pending entry as the model and the state both show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    due: u64,
    seq: u64,
    attempts: u32,
    not_before: u64,
    /// Its message group on the route ([`group_of`]), kept through every change.
    group: u64,
}

/// The message group of the event `id` on `route`: route 0 plays an ordered route whose
/// events fall in three groups, one of them 0 (the whole route); the others have none.
fn group_of(route: RouteId, id: &str) -> u64 {
    match route {
        0 => id.bytes().map(u64::from).sum::<u64>() % 3,
        _ => 0,
    }
}

#[derive(Debug, Default, Clone)]
struct Model {
    /// (route, due, seq) → (attempts, not_before).
    pending: BTreeMap<(RouteId, u64, u64), (u32, u64)>,
    dead: BTreeSet<(RouteId, u64)>,
    /// Webhook id → (seq, received): the latest acknowledged event of each id.
    ids: HashMap<String, (u64, u64)>,
    /// seq → webhook id, of every acknowledged event (its body follows from the id).
    events: HashMap<u64, String>,
    now: u64,
}

impl Model {
    fn pending_of(&self, route: RouteId) -> Vec<Pending> {
        self.pending
            .range((route, 0, 0)..=(route, u64::MAX, u64::MAX))
            .map(|(&(_, due, seq), &(attempts, not_before))| Pending {
                due,
                seq,
                attempts,
                not_before,
                group: group_of(route, &self.events[&seq]),
            })
            .collect()
    }

    fn dead_of(&self, route: RouteId) -> Vec<u64> {
        self.dead
            .range((route, 0)..=(route, u64::MAX))
            .map(|&(_, seq)| seq)
            .collect()
    }

    fn pick_pending(&self, route: RouteId, pick: usize) -> Option<Pending> {
        let all = self.pending_of(route);
        (!all.is_empty()).then(|| all[pick % all.len()])
    }

    fn pick_dead(&self, route: RouteId, pick: usize) -> Option<u64> {
        let all = self.dead_of(route);
        (!all.is_empty()).then(|| all[pick % all.len()])
    }
}

fn state_pending(state: &State, route: RouteId) -> Vec<Pending> {
    state.route(route).map_or(Vec::new(), |q| {
        q.pending()
            .map(|(due, seq, e)| Pending {
                due,
                seq,
                attempts: e.attempts,
                not_before: e.not_before_ms,
                group: e.group,
            })
            .collect()
    })
}

fn state_dead(state: &State, route: RouteId) -> Vec<u64> {
    state
        .route(route)
        .map_or(Vec::new(), |q| q.dead().map(|(seq, _)| seq).collect())
}

fn config() -> WriterConfig {
    WriterConfig {
        // Small segments, so cases cross segment boundaries often.
        segment_size: 1024,
        prepared_ahead: 2,
        enqueue_timeout: Duration::from_secs(5),
        // Generous: on this shared machine the preparer may lag. After the power cut the
        // preparer fails with EIO and nothing waits this long.
        rotate_timeout: Duration::from_secs(1),
        // Faults are one-shot here: a barrier always gets a segment in the end, unless the
        // power is gone.
        barrier_timeout: Duration::from_secs(10),
        prepare_retry: Duration::from_millis(1),
    }
}

fn body(id: &str) -> Vec<u8> {
    format!("{{\"type\":\"message.new\",\"id\":\"{id}\"}}").into_bytes()
}

/// Every other event carries a trace (record kind 13), made from its id: it must come back
/// with the event, through recovery and compaction's copies.
fn trace_of(id: &str) -> Option<Trace> {
    let sum: u32 = id.bytes().map(u32::from).sum();
    sum.is_multiple_of(2).then(|| Trace {
        trace_id: [id.len() as u8; 16],
        span_id: sum.to_le_bytes().repeat(2).try_into().unwrap(),
        flags: sum.is_multiple_of(4).into(),
        state: if sum.is_multiple_of(3) {
            String::new()
        } else {
            format!("m={id}")
        },
    })
}

fn routes_of(mask: u8) -> Vec<RouteId> {
    (0..ROUTES).filter(|r| mask & (1 << r) != 0).collect()
}

/// Is `id` a duplicate? The way ingest will ask: a fingerprint hit, confirmed by reading
/// the stored record, within the window. An error when the record cannot be read (after
/// the power cut): ingest would answer 503.
fn is_duplicate(disk: &SimDisk, writer: &Writer, id: &str, now: u64) -> Result<bool, LogError> {
    let Some(hit) = writer.with_state(|s| s.dedup_candidate(id)) else {
        return Ok(false);
    };
    let bytes = read_record(disk, &hit.location)?;
    let Ok(Record::Event(stored)) = Record::decode(&bytes) else {
        panic!("the dedup index points at a record that is not an event");
    };
    Ok(stored.webhook_id == Some(id) && hit.received_at_ms + WINDOW_MS >= now)
}

/// Submits one webhook; returns its ticket (its seq is the ticket's lsn).
fn submit_append(writer: &Writer, id: &str, mask: u8, now: u64) -> Ticket {
    let body = body(id);
    let trace = trace_of(id);
    let record = Record::Event(EventRecord {
        webhook_id: Some(id),
        received_at_ms: now,
        api_key: Some("key"),
        signature: "sig",
        event_type: Some("message.new"),
        path: Some("/webhooks"),
        trace: trace.as_ref().map(Trace::borrowed),
        body: &body,
        routes: routes_of(mask)
            .into_iter()
            .map(|route| RouteDue {
                route,
                due_ms: now,
                group: group_of(route, id),
            })
            .collect::<Vec<_>>()
            .into(),
    });
    writer.submit(&[record]).expect("room in the group")
}

/// Waits for a ticket: true if durable, false if it failed (and is then void for good).
fn acknowledged(writer: &Writer, ticket: &Ticket) -> bool {
    match writer.wait(ticket) {
        Ok(()) => true,
        Err(LogError::WriteFailed { voided: true, .. }) => false,
        Err(e) => panic!("unexpected outcome {e:?}"),
    }
}

/// Runs one operation; the model changes only if it was acknowledged.
fn run(op: &Op, disk: &SimDisk, writer: &Writer, maint: &mut Maintenance, model: &mut Model) {
    let now = model.now;
    let one = |record: Record<'_>| acknowledged(writer, &writer.submit(&[record]).unwrap());
    match op {
        Op::Append(hooks) => {
            let mut submitted: Vec<(String, u8, Ticket)> = Vec::new();
            for &(id, mask) in hooks {
                let id = format!("id-{id}");
                let in_flight = submitted.iter().any(|(i, _, _)| *i == id);
                let duplicate = is_duplicate(disk, writer, &id, now);
                if in_flight || duplicate.expect("a remembered event reads back") {
                    continue;
                }
                let ticket = submit_append(writer, &id, mask, now);
                submitted.push((id, mask, ticket));
            }
            for (id, mask, ticket) in submitted {
                if acknowledged(writer, &ticket) {
                    let seq = ticket.first_lsn;
                    for r in routes_of(mask) {
                        model.pending.insert((r, now, seq), (0, 0));
                    }
                    model.ids.insert(id.clone(), (seq, now));
                    model.events.insert(seq, id);
                }
            }
        }
        Op::Deliver(route, pick) => {
            if let Some(p) = model.pick_pending(*route, *pick) {
                let route = *route;
                if one(Record::Delivered { route, seq: p.seq }) {
                    model.pending.remove(&(route, p.due, p.seq));
                }
            }
        }
        Op::Retry(route, pick, delay) => {
            if let Some(p) = model.pick_pending(*route, *pick) {
                let (route, due_ms, attempts) = (*route, now + delay, p.attempts + 1);
                let error = "503 Service Unavailable";
                if one(Record::Retry {
                    route,
                    seq: p.seq,
                    due_ms,
                    attempts,
                    error,
                }) {
                    model.pending.remove(&(route, p.due, p.seq));
                    model.pending.insert((route, due_ms, p.seq), (attempts, 0));
                }
            }
        }
        Op::Hold(route, pick, delay) => {
            if let Some(p) = model.pick_pending(*route, *pick) {
                let (route, not_before_ms, attempts) = (*route, now + delay, p.attempts + 1);
                let error = "timeout";
                if one(Record::Hold {
                    route,
                    seq: p.seq,
                    not_before_ms,
                    attempts,
                    error,
                }) {
                    model
                        .pending
                        .insert((route, p.due, p.seq), (attempts, not_before_ms));
                }
            }
        }
        Op::Dead(route, pick) => {
            if let Some(p) = model.pick_pending(*route, *pick) {
                let route = *route;
                let record = Record::Dead {
                    route,
                    seq: p.seq,
                    attempts: p.attempts + 1,
                    error: "400 Bad Request",
                    dead_at_ms: now,
                };
                if one(record) {
                    model.pending.remove(&(route, p.due, p.seq));
                    model.dead.insert((route, p.seq));
                }
            }
        }
        Op::Replay(route, pick) => {
            if let Some(seq) = model.pick_dead(*route, *pick) {
                let route = *route;
                if one(Record::Replay {
                    route,
                    seq,
                    due_ms: now,
                }) {
                    model.dead.remove(&(route, seq));
                    model.pending.insert((route, now, seq), (0, 0));
                }
            }
        }
        Op::Drop(route, pick) => {
            if let Some(seq) = model.pick_dead(*route, *pick) {
                let route = *route;
                if one(Record::Drop { route, seq }) {
                    model.dead.remove(&(route, seq));
                }
            }
        }
        Op::DropPending(route) => {
            if one(Record::DropPending { route: *route }) {
                model.pending.retain(|&(r, _, _), _| r != *route);
            }
        }
        // At most one fault of each kind waits: a failed group's barrier (three tries) then
        // always gets through. A disk that fails everything is the crash's business.
        Op::Fail(op, fault) => {
            if disk.pending_faults(*op) == 0 {
                disk.inject(*op, *fault);
            }
        }
        Op::Tick(ms) => {
            model.now += ms;
            // What the daemon does as time passes: ids older than the window are forgotten
            // (whether this record is acknowledged or not, those in the window stay).
            let before_ms = model.now.saturating_sub(WINDOW_MS);
            one(Record::ExpireIds {
                before_ms,
                limit: 64,
            });
        }
        Op::Checkpoint => match maint.checkpoint(writer) {
            Ok(taken) => {
                // Rebuilt from the log, not read from the writer: it must say exactly what
                // the writer's state says (the writer is idle between ops).
                assert_eq!(maint.checkpoints_from_memory(), 0, "the log did not replay");
                if let Some(at) = taken {
                    let name = checkpoint::checkpoint_name(at.lsn);
                    let written = checkpoint::decode(&disk.bytes(&name).unwrap()).unwrap();
                    assert_eq!(
                        checkpoint::encode(&written.state),
                        writer.with_state(checkpoint::encode),
                        "a checkpoint at lsn {} differs from the writer's state",
                        at.lsn
                    );
                }
            }
            // A full disk (an injected create fault) fails a checkpoint as it fails a
            // preparation: nothing changes, the next one tries again.
            Err(LogError::Io { source, .. }) if source.raw_os_error() == Some(28) => {}
            Err(e) => panic!("checkpoint: {e}"),
        },
        // A maintenance round: a checkpoint if anything changed, then a compaction step.
        Op::Compact => match maint.step(writer) {
            Ok(done) => {
                assert_eq!(maint.checkpoints_from_memory(), 0, "the log did not replay");
                if std::env::var_os("HOOKFAN_LOG_MODEL_STATS").is_some() {
                    eprintln!(
                        "model-stats compacted deleted={} copied={}",
                        done.deleted, done.copied
                    );
                }
            }
            // Copies go through the writer: an injected fault fails them like any group; a
            // full disk fails the checkpoint.
            Err(LogError::WriteFailed { voided: true, .. }) => {}
            Err(LogError::Io { source, .. }) if source.raw_os_error() == Some(28) => {}
            Err(e) => panic!("compaction: {e}"),
        },
    }
}

/// What a record in flight at the crash was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Durable: it must be there.
    Durable,
    /// Failed and void: it must not be there.
    Void,
    /// Failed, maybe not void (the disk was gone before a barrier): either.
    Unknown,
}

fn answer(writer: &Writer, ticket: &Ticket) -> Answer {
    match writer.wait(ticket) {
        Ok(()) => Answer::Durable,
        Err(LogError::WriteFailed { voided: true, .. }) => Answer::Void,
        Err(_) => Answer::Unknown,
    }
}

/// What was in flight at a crash.
#[derive(Default)]
struct InFlight {
    /// seq → (id, routes, answer) of appends.
    appends: BTreeMap<u64, (String, Vec<RouteId>, Answer)>,
    /// (route, seq) → answer of deliveries.
    deliveries: BTreeMap<(RouteId, u64), Answer>,
}

/// Checks the recovered state against the model, resolves what was in flight into the
/// model (each record wholly there or wholly absent), and returns the model to go on with.
fn check(
    disk: &SimDisk,
    state: &State,
    mut model: Model,
    in_flight: &InFlight,
) -> Result<Model, TestCaseError> {
    // In-flight appends: each one all there (on every route) or not at all.
    for (&seq, (id, routes, answer)) in &in_flight.appends {
        let present: Vec<bool> = routes
            .iter()
            .map(|&r| state_pending(state, r).iter().any(|p| p.seq == seq))
            .collect();
        let landed = present.iter().all(|&p| p);
        prop_assert!(
            landed || present.iter().all(|&p| !p),
            "event {seq} landed on some of its routes only"
        );
        match answer {
            Answer::Durable => prop_assert!(landed, "event {seq} was acknowledged, then lost"),
            Answer::Void => prop_assert!(!landed, "event {seq} failed, then came back"),
            Answer::Unknown => {}
        }
        if landed {
            for &r in routes {
                model.pending.insert((r, model.now, seq), (0, 0));
            }
            model.ids.insert(id.clone(), (seq, model.now));
            model.events.insert(seq, id.clone());
        }
    }
    // In-flight deliveries: the event is pending as before, or gone.
    for (&(route, seq), answer) in &in_flight.deliveries {
        let gone = !state_pending(state, route).iter().any(|p| p.seq == seq);
        match answer {
            Answer::Durable => prop_assert!(gone, "delivery of {seq} was acknowledged, then lost"),
            Answer::Void => prop_assert!(!gone, "delivery of {seq} failed, then came back"),
            Answer::Unknown => {}
        }
        if gone {
            model.pending.retain(|&(r, _, s), _| (r, s) != (route, seq));
        }
    }
    for r in 0..ROUTES {
        prop_assert_eq!(
            state_pending(state, r),
            model.pending_of(r),
            "route {} pending (in delivery order)",
            r
        );
        prop_assert_eq!(
            state_dead(state, r),
            model.dead_of(r),
            "route {} dead letters",
            r
        );
    }
    for (id, &(seq, received)) in &model.ids {
        if received + WINDOW_MS >= model.now {
            let hit = state.dedup_candidate(id);
            prop_assert_eq!(hit.map(|h| h.seq), Some(seq), "dedup of {}", id);
            let stored = read_event(disk, state, seq)?;
            prop_assert_eq!(stored.0.as_deref(), Some(id.as_str()), "id of {}", seq);
        }
    }
    // Every event a route holds reads back whole from where the state says it is.
    let held: BTreeSet<u64> = model
        .pending
        .keys()
        .map(|&(_, _, seq)| seq)
        .chain(model.dead.iter().map(|&(_, seq)| seq))
        .collect();
    for seq in held {
        let id = &model.events[&seq];
        let (stored_id, stored_body, stored_trace) = read_event(disk, state, seq)?;
        prop_assert_eq!(stored_id.as_deref(), Some(id.as_str()), "id of {}", seq);
        prop_assert_eq!(stored_body, body(id), "body of {}", seq);
        prop_assert_eq!(stored_trace, trace_of(id), "trace of {}", seq);
    }
    Ok(model)
}

/// An event's id, body and trace, as read back.
type ReadBack = (Option<String>, Vec<u8>, Option<Trace>);

/// The id, body and trace of event `seq`, read from where the state says its record is.
fn read_event(disk: &SimDisk, state: &State, seq: u64) -> Result<ReadBack, TestCaseError> {
    let Some(meta) = state.event(seq) else {
        return Err(TestCaseError::fail(format!(
            "event {seq} is not in the state"
        )));
    };
    let bytes = read_record(disk, &meta.location())
        .map_err(|e| TestCaseError::fail(format!("event {seq}: {e}")))?;
    match Record::decode(&bytes) {
        Ok(Record::Event(e)) => Ok((
            e.webhook_id.map(str::to_string),
            e.body.to_vec(),
            e.trace.map(|t| t.into_owned()),
        )),
        other => Err(TestCaseError::fail(format!(
            "event {seq} at {:?} reads as {other:?}",
            meta.location()
        ))),
    }
}

fn run_case(seed: u64, epochs: &[Epoch]) -> Result<(), TestCaseError> {
    let mut disk = SimDisk::new(seed);
    let mut model = Model {
        now: 1_000,
        ..Model::default()
    };
    let mut in_flight = InFlight::default();
    let mut damaged: Option<String> = None;
    for (n, epoch) in epochs.iter().enumerate() {
        let recovered = match recover(&disk) {
            Ok(r) => r,
            Err(e) => return Err(TestCaseError::fail(format!("epoch {n}: recovery: {e}"))),
        };
        passed_over(&recovered.report, &damaged)?;
        stats(&recovered.report, &in_flight);
        model = check(&disk, &recovered.state, model, &in_flight)?;
        let mut maint = Maintenance::new(
            Arc::new(disk.clone()),
            recovered.checkpoint,
            MaintenanceConfig {
                checkpoint_every: 1,
                copy_batch: 200,
                // Half the cases take checkpoints from snapshots of the writer's state, half
                // rebuild them from the log.
                snapshot_at_most: if seed.is_multiple_of(2) {
                    usize::MAX
                } else {
                    0
                },
                ..MaintenanceConfig::for_segments(config().segment_size)
            },
        );
        let writer = Writer::start(Arc::new(disk.clone()), recovered, config()).unwrap();
        if n == 0 {
            for id in 0..ROUTES {
                let name = format!("route-{id}");
                let t = writer.submit(&[Record::Route { id, name: &name }]).unwrap();
                prop_assert!(acknowledged(&writer, &t), "route {} was not bound", id);
            }
        }
        for op in &epoch.ops {
            run(op, &disk, &writer, &mut maint, &mut model);
            model.now += 1;
        }
        // Before the crash the writer's own state is the model, exactly.
        writer.with_state(|s| check(&disk, s, model.clone(), &InFlight::default()))?;

        // In flight: submitted, then the power goes at a random write or sync; each is
        // answered (durable, void, or unknown) before the disk is looked at again.
        if epoch.kill {
            disk.kill_at_op(epoch.crash_at_op);
        } else {
            disk.crash_at_op(epoch.crash_at_op);
        }
        let mut appends = Vec::new();
        for &(id, mask) in &epoch.in_flight_appends {
            let id = format!("id-{id}");
            let taken = appends.iter().any(|(i, _, _)| *i == id);
            // After the power cut, the read fails: ingest answers 503, nothing is submitted.
            if taken || is_duplicate(&disk, &writer, &id, model.now).unwrap_or(true) {
                continue;
            }
            let ticket = submit_append(&writer, &id, mask, model.now);
            appends.push((id, mask, ticket));
        }
        let mut deliveries = Vec::new();
        for &(route, pick) in &epoch.in_flight_deliveries {
            if let Some(p) = model.pick_pending(route, pick) {
                if deliveries
                    .iter()
                    .any(|(r, s, _)| (*r, *s) == (route, p.seq))
                {
                    continue;
                }
                let t = writer.submit(&[Record::Delivered { route, seq: p.seq }]);
                deliveries.push((route, p.seq, t.unwrap()));
            }
        }
        if epoch.maintain_at_crash {
            // Either completes before the power goes, or fails when it does (never Corrupt).
            for result in [
                maint.checkpoint(&writer).map(|_| ()),
                maint.compact(&writer).map(|_| ()),
            ] {
                match result {
                    Ok(()) | Err(LogError::Io { .. } | LogError::WriteFailed { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("maintenance: {e}"))),
                }
            }
        }
        in_flight = InFlight::default();
        for (id, mask, ticket) in appends {
            let a = answer(&writer, &ticket);
            in_flight
                .appends
                .insert(ticket.first_lsn, (id, routes_of(mask), a));
        }
        for (route, seq, ticket) in deliveries {
            in_flight
                .deliveries
                .insert((route, seq), answer(&writer, &ticket));
        }
        disk = disk.crash();
        drop(writer);
        damaged = epoch
            .damage_checkpoint
            .and_then(|pick| damage_newest_checkpoint(&disk, pick));
    }
    let recovered =
        recover(&disk).map_err(|e| TestCaseError::fail(format!("last recovery: {e}")))?;
    passed_over(&recovered.report, &damaged)?;
    stats(&recovered.report, &in_flight);
    check(&disk, &recovered.state, model, &in_flight)?;
    Ok(())
}

/// Flips a byte of the newest checkpoint, if there is one, so that it no longer decodes;
/// returns its name. The newest may be one an earlier epoch damaged already (a crash can
/// undo the rename of its rewrite): flipping the same byte again would repair it, so the
/// flip moves on until the file is damaged.
fn damage_newest_checkpoint(disk: &SimDisk, pick: usize) -> Option<String> {
    let newest = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| checkpoint::checkpoint_lsn(n).is_some())
        .max()?;
    let len = disk.bytes(&newest)?.len();
    let mut at = pick % len;
    loop {
        let bytes = disk.bytes(&newest)?;
        disk.corrupt(&newest, at as u64, &[bytes[at] ^ 0x20]);
        if checkpoint::decode(&disk.bytes(&newest)?).is_err() {
            return Some(newest);
        }
        at = (at + 1) % len;
    }
}

/// A damaged checkpoint was seen and passed over (the state is then checked as usual).
fn passed_over(report: &RecoveryReport, damaged: &Option<String>) -> Result<(), TestCaseError> {
    if let Some(name) = damaged {
        let seen = report.damaged_checkpoints.iter().any(|(n, _, _)| n == name);
        prop_assert!(seen, "the damaged {} was not reported: {:?}", name, report);
    }
    Ok(())
}

/// With `HOOKFAN_LOG_MODEL_STATS` set, one line per recovery on stderr (`--nocapture`), to
/// see what the cases exercised: torn tails cut, void records skipped, segments read.
fn stats(report: &RecoveryReport, in_flight: &InFlight) {
    if std::env::var_os("HOOKFAN_LOG_MODEL_STATS").is_some() {
        eprintln!(
            "model-stats segments={} records={} torn={} void={} in_flight={} checkpoint={} damaged_checkpoints={}",
            report.segments,
            report.records,
            u8::from(report.torn.is_some()),
            report.void_records,
            in_flight.appends.len() + in_flight.deliveries.len(),
            u8::from(report.checkpoint.is_some()),
            report.damaged_checkpoints.len(),
        );
    }
}

/// Cases of a simulation: the environment variable `var` if set, else 256 (CI's count).
pub(super) fn cases_from(var: &str) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn cases() -> u32 {
    cases_from("HOOKFAN_LOG_MODEL_CASES")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn after_any_crash_the_log_holds_exactly_what_was_acknowledged(
        seed in any::<u64>(),
        epochs in proptest::collection::vec(epoch(), 2..=2),
    ) {
        run_case(seed, &epochs)?;
    }
}
