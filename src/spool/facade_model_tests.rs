//! The log spool's facade ([`LogSpool`]: dedup claims, route names, `due`, completions, dead
//! letter actions, `drop_pending`, its maintenance thread) over the simulated disk, against a
//! reference model, across power cuts. `model_tests.rs` proves the writer, the state,
//! checkpoints and compaction at the record level; this test proves what the daemon calls.
//!
//! Each case runs two epochs. An epoch is a sequence of operations, each answered before the
//! next (appends with repeated webhook ids on one or two routes, deliveries, retries, dead
//! letters, replays and drops of dead letters, `drop_pending`), while the maintenance thread
//! checkpoints and compacts every millisecond; then appends of new ids and one batch of
//! completions go in flight together, and the power goes before a random write or sync
//! (or after all of them). The disk as the cut left it is opened again and checked:
//! - every append answered `Stored` is pending on each of its routes, delivered, or dead,
//!   as the model says; an append not answered is on all its routes or on none;
//! - a batch of completions answered is applied whole; one not answered, whole or not at
//!   all;
//! - each route's pending events carry the model's attempts and last error, and its dead
//!   letters the model's attempts and error;
//! - every id answered `Stored` is still a duplicate (the window never passes here).
//!
//! Cases: `HOOKFAN_FACADE_MODEL_CASES` (default 256, about a second; 3,000 take 12 s). A
//! facade that answered an append or a batch of completions before it was durable fails
//! this test within a few hundred cases (both were tried).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::compaction::MaintenanceConfig;
use super::{LogSpool, LogSpoolConfig, SimDisk, WriterConfig};
use crate::spool::{
    now_ms, AppendOutcome, Completion, DeadLetterAction, PendingKey, SpoolError, StoredEvent,
};

const ROUTES: [&str; 2] = ["a", "b"];
const WINDOW: Duration = Duration::from_secs(600);
/// Ids of the sequential part; the tail's appends use fresh ids above these.
const IDS: u8 = 16;
/// How long anything in flight may take to be answered once the power is gone.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    /// `mask`: bit 0 route a, bit 1 route b (never 0).
    Append {
        id: u8,
        mask: u8,
    },
    Deliver {
        route: usize,
        pick: usize,
    },
    Retry {
        route: usize,
        pick: usize,
    },
    Dead {
        route: usize,
        pick: usize,
    },
    Replay {
        route: usize,
    },
    DropDead {
        route: usize,
    },
    DropPending {
        route: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Deliver,
    Retry,
    Dead,
}

#[derive(Debug, Clone)]
struct Epoch {
    ops: Vec<Op>,
    /// Appends in flight at the power cut: (mask) each, of a fresh id.
    tail_appends: Vec<u8>,
    /// One batch of completions in flight too: its route and (pick, kind) each.
    tail_batch: (usize, Vec<(usize, Kind)>),
    /// The power goes before this write or sync of the tail (if there are that many).
    crash_at: u64,
}

fn op() -> impl Strategy<Value = Op> {
    let route = 0..ROUTES.len();
    prop_oneof![
        8 => (0..IDS, 1..4u8).prop_map(|(id, mask)| Op::Append { id, mask }),
        3 => (route.clone(), any::<usize>()).prop_map(|(route, pick)| Op::Deliver { route, pick }),
        2 => (route.clone(), any::<usize>()).prop_map(|(route, pick)| Op::Retry { route, pick }),
        2 => (route.clone(), any::<usize>()).prop_map(|(route, pick)| Op::Dead { route, pick }),
        1 => route.clone().prop_map(|route| Op::Replay { route }),
        1 => route.clone().prop_map(|route| Op::DropDead { route }),
        1 => route.prop_map(|route| Op::DropPending { route }),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Deliver), Just(Kind::Retry), Just(Kind::Dead)]
}

fn epoch() -> impl Strategy<Value = Epoch> {
    (
        proptest::collection::vec(op(), 0..40),
        proptest::collection::vec(1..4u8, 0..6),
        (
            0..ROUTES.len(),
            proptest::collection::vec((any::<usize>(), kind()), 0..4),
        ),
        1..12u64,
    )
        .prop_map(|(ops, tail_appends, tail_batch, crash_at)| Epoch {
            ops,
            tail_appends,
            tail_batch,
            crash_at,
        })
}

/// Where an event stands on one route, as far as the model knows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Pending {
        attempts: u32,
        error: Option<String>,
    },
    Dead {
        attempts: u32,
        error: String,
    },
}

/// (route, webhook id) → entry; absent: never there, delivered or dropped.
type Entries = BTreeMap<(usize, String), Entry>;

/// What a completion leaves of one (route, webhook id): None once delivered.
type Change = ((usize, String), Option<Entry>);

#[derive(Debug, Default, Clone)]
struct Model {
    entries: Entries,
    /// Every id answered `Stored`.
    stored: BTreeSet<String>,
}

impl Model {
    fn count(&self, route: usize, dead: bool) -> u64 {
        self.entries
            .iter()
            .filter(|((r, _), e)| *r == route && matches!(e, Entry::Dead { .. }) == dead)
            .count() as u64
    }
}

fn config() -> LogSpoolConfig {
    let writer = WriterConfig {
        // Small segments, so cases cross segments and compaction deletes and copies.
        segment_size: 4096,
        prepared_ahead: 1,
        enqueue_timeout: Duration::from_secs(5),
        rotate_timeout: Duration::from_secs(1),
        barrier_timeout: Duration::from_secs(10),
        prepare_retry: Duration::from_millis(1),
    };
    let maintenance = MaintenanceConfig {
        checkpoint_every: 16,
        interval: Duration::from_millis(1),
        ..MaintenanceConfig::for_segments(writer.segment_size)
    };
    LogSpoolConfig {
        clock: crate::clock::Clock::system(),
        writer,
        maintenance,
    }
}

fn open(disk: &SimDisk) -> LogSpool {
    LogSpool::open_in(Arc::new(disk.clone()), "sim".into(), config(), None)
        .unwrap_or_else(|e| panic!("the disk a power cut left opens: {e}"))
}

fn event(id: &str) -> StoredEvent {
    StoredEvent {
        webhook_id: Some(id.to_string()),
        received_at_ms: now_ms(),
        api_key: Some("key".into()),
        signature: "00".repeat(32),
        event_type: Some("message.new".into()),
        body: format!("{{\"type\":\"message.new\",\"id\":\"{id}\"}}").into_bytes(),
        path: None,
        trace: None,
    }
}

fn routes_of(mask: u8) -> Vec<String> {
    (0..ROUTES.len())
        .filter(|r| mask & (1 << r) != 0)
        .map(|r| ROUTES[r].to_string())
        .collect()
}

/// A route's pending events as the spool lists them: id → (key, entry).
fn pending(spool: &LogSpool, route: usize) -> BTreeMap<String, (PendingKey, Entry)> {
    let due = spool
        .due(ROUTES[route], u64::MAX - 1, &HashSet::new(), 100_000, false)
        .unwrap();
    due.items
        .into_iter()
        .map(|i| {
            let id = i.event.webhook_id.clone().expect("every event has an id");
            let entry = Entry::Pending {
                attempts: i.state.attempts,
                error: i.state.last_error.clone(),
            };
            (id, (i.key, entry))
        })
        .collect()
}

/// Everything the spool holds, as the model writes it.
fn found(spool: &LogSpool) -> Entries {
    let mut entries = Entries::new();
    for (route, name) in ROUTES.iter().enumerate() {
        for (id, (_, entry)) in pending(spool, route) {
            entries.insert((route, id), entry);
        }
        for d in spool.dead_letters(Some(name)).unwrap() {
            let id = d.webhook_id.expect("every event has an id");
            let entry = Entry::Dead {
                attempts: d.attempts,
                error: d.error,
            };
            entries.insert((route, id), entry);
        }
    }
    entries
}

/// The completion `kind` makes of an event at `entry`, and the entry it leaves (None:
/// delivered). `n` tells errors apart.
fn completion(kind: Kind, entry: &Entry, n: usize) -> (Completion, Option<Entry>) {
    let Entry::Pending { attempts, .. } = entry else {
        unreachable!("only pending events are completed")
    };
    let attempts = attempts + 1;
    match kind {
        Kind::Deliver => (Completion::Delivered, None),
        Kind::Retry => {
            let error = format!("503 #{n}");
            let retry = Completion::Retry {
                due_ms: now_ms(),
                attempts,
                error: error.clone(),
            };
            (
                retry,
                Some(Entry::Pending {
                    attempts,
                    error: Some(error),
                }),
            )
        }
        Kind::Dead => {
            let error = format!("400 #{n}");
            let dead = Completion::Dead {
                attempts,
                error: error.clone(),
            };
            (dead, Some(Entry::Dead { attempts, error }))
        }
    }
}

async fn run(op: &Op, n: usize, spool: &LogSpool, model: &mut Model) {
    match *op {
        Op::Append { id, mask } => {
            let id = format!("id-{id}");
            let outcome = spool.append(event(&id), routes_of(mask), WINDOW).await;
            match outcome.unwrap() {
                AppendOutcome::Stored { .. } => {
                    assert!(model.stored.insert(id.clone()), "{id} stored twice");
                    for route in 0..ROUTES.len() {
                        if mask & (1 << route) != 0 {
                            let fresh = Entry::Pending {
                                attempts: 0,
                                error: None,
                            };
                            model.entries.insert((route, id.clone()), fresh);
                        }
                    }
                }
                AppendOutcome::Duplicate => {
                    assert!(model.stored.contains(&id), "{id} a duplicate of nothing")
                }
            }
        }
        Op::Deliver { route, pick } | Op::Retry { route, pick } | Op::Dead { route, pick } => {
            let kind = match op {
                Op::Deliver { .. } => Kind::Deliver,
                Op::Retry { .. } => Kind::Retry,
                _ => Kind::Dead,
            };
            let listed = pending(spool, route);
            let Some((id, (key, entry))) = listed.iter().nth(pick % listed.len().max(1)) else {
                return;
            };
            let (completion, after) = completion(kind, entry, n);
            spool
                .complete(ROUTES[route], *key, completion)
                .await
                .unwrap();
            set(&mut model.entries, (route, id.clone()), after);
        }
        Op::Replay { route } | Op::DropDead { route } => {
            let replay = matches!(op, Op::Replay { .. });
            let action = if replay {
                DeadLetterAction::Replay
            } else {
                DeadLetterAction::Drop
            };
            let moved = spool
                .dead_letter_action(action, Some(ROUTES[route]), Vec::new())
                .await
                .unwrap();
            assert_eq!(moved, model.count(route, true), "{op:?}");
            for ((r, _), entry) in model.entries.iter_mut() {
                if *r == route && matches!(entry, Entry::Dead { .. }) && replay {
                    *entry = Entry::Pending {
                        attempts: 0,
                        error: None,
                    };
                }
            }
            if !replay {
                model
                    .entries
                    .retain(|(r, _), e| *r != route || !matches!(e, Entry::Dead { .. }));
            }
        }
        Op::DropPending { route } => {
            let dropped = spool.drop_pending(ROUTES[route]).await.unwrap();
            assert_eq!(dropped, model.count(route, false), "{op:?}");
            model
                .entries
                .retain(|(r, _), e| *r != route || matches!(e, Entry::Dead { .. }));
        }
    }
}

fn set(entries: &mut Entries, key: (usize, String), entry: Option<Entry>) {
    match entry {
        Some(entry) => entries.insert(key, entry),
        None => entries.remove(&key),
    };
}

/// What the tail may leave, apart from what was answered: each unanswered append whole on
/// its routes or absent; the batch, if unanswered, whole or absent.
struct Unsure {
    /// (id, its entries once stored).
    appends: Vec<(String, Vec<(usize, String)>)>,
    /// The batch's entries after it, if it was not answered.
    batch: Option<Vec<Change>>,
}

async fn tail(
    epoch: &Epoch,
    fresh: &mut u64,
    disk: &SimDisk,
    spool: &LogSpool,
    model: &mut Model,
) -> Unsure {
    let (route, picks) = &epoch.tail_batch;
    let listed: Vec<(String, (PendingKey, Entry))> = pending(spool, *route).into_iter().collect();
    let mut chosen = BTreeMap::new();
    for (n, (pick, kind)) in picks.iter().enumerate() {
        if listed.is_empty() {
            break;
        }
        let (id, (key, entry)) = &listed[pick % listed.len()];
        chosen
            .entry(id.clone())
            .or_insert_with(|| (*key, completion(*kind, entry, 1000 + n)));
    }
    let batch: Vec<(PendingKey, Completion)> = chosen
        .values()
        .map(|(key, (completion, _))| (*key, completion.clone()))
        .collect();
    let batch_after: Vec<Change> = chosen
        .iter()
        .map(|(id, (_, (_, after)))| ((*route, id.clone()), after.clone()))
        .collect();

    disk.crash_at_op(epoch.crash_at);
    let mut appends = Vec::new();
    for &mask in &epoch.tail_appends {
        *fresh += 1;
        let id = format!("fresh-{fresh}");
        let spool = spool.clone();
        let event = event(&id);
        let task = tokio::spawn(async move { spool.append(event, routes_of(mask), WINDOW).await });
        appends.push((id, mask, task));
    }
    let completing = {
        let spool = spool.clone();
        let route = ROUTES[*route];
        tokio::spawn(async move { spool.complete_batch(route, batch).await })
    };

    let mut unsure = Unsure {
        appends: Vec::new(),
        batch: None,
    };
    for (id, mask, task) in appends {
        let answer = tokio::time::timeout(ANSWER_WITHIN, task)
            .await
            .expect("an append in flight at a power cut is answered")
            .unwrap();
        let on: Vec<(usize, String)> = (0..ROUTES.len())
            .filter(|r| mask & (1 << r) != 0)
            .map(|r| (r, id.clone()))
            .collect();
        match answer {
            Ok(AppendOutcome::Stored { .. }) => {
                model.stored.insert(id.clone());
                for key in on {
                    let fresh = Entry::Pending {
                        attempts: 0,
                        error: None,
                    };
                    model.entries.insert(key, fresh);
                }
            }
            Ok(AppendOutcome::Duplicate) => panic!("{id} is fresh, not a duplicate"),
            Err(_) => unsure.appends.push((id, on)),
        }
    }
    let answer = tokio::time::timeout(ANSWER_WITHIN, completing)
        .await
        .expect("completions in flight at a power cut are answered")
        .unwrap();
    match answer {
        Ok(()) => {
            for (key, after) in batch_after {
                set(&mut model.entries, key, after);
            }
        }
        Err(SpoolError::Closed) => unreachable!("the spool is not closed"),
        Err(_) => unsure.batch = Some(batch_after),
    }
    unsure
}

/// Checks what the reopened spool holds against the model and what the tail left unsure,
/// and settles the model to what was found.
async fn check(spool: &LogSpool, model: &mut Model, unsure: Unsure) {
    let found = found(spool);
    let mut expected = model.entries.clone();
    for (id, on) in &unsure.appends {
        let present: Vec<bool> = on.iter().map(|k| found.contains_key(k)).collect();
        assert!(
            present.iter().all(|p| *p) || present.iter().all(|p| !*p),
            "{id}, unanswered, is on some of its routes only: {present:?}"
        );
        if present[0] {
            model.stored.insert(id.clone());
            for key in on {
                let fresh = Entry::Pending {
                    attempts: 0,
                    error: None,
                };
                expected.insert(key.clone(), fresh);
            }
        }
    }
    if let Some(batch) = unsure.batch {
        let applied = batch
            .iter()
            .all(|(key, after)| found.get(key) == after.as_ref());
        let untouched = batch
            .iter()
            .all(|(key, _)| found.get(key) == expected.get(key));
        assert!(
            applied || untouched,
            "an unanswered batch of completions is applied in part: {batch:?}"
        );
        if applied {
            for (key, after) in batch {
                set(&mut expected, key, after);
            }
        }
    }
    assert_eq!(
        found, expected,
        "the spool after the power cut, against the model"
    );
    model.entries = expected;
    for id in &model.stored {
        let again = spool.append(event(id), routes_of(1), WINDOW).await.unwrap();
        assert_eq!(again, AppendOutcome::Duplicate, "{id} forgotten");
    }
}

async fn run_case(seed: u64, epochs: &[Epoch]) {
    let mut disk = SimDisk::new(seed);
    let mut spool = open(&disk);
    let mut model = Model::default();
    let mut fresh = 0;
    for epoch in epochs {
        for (n, op) in epoch.ops.iter().enumerate() {
            run(op, n, &spool, &mut model).await;
        }
        let unsure = tail(epoch, &mut fresh, &disk, &spool, &mut model).await;
        let after = disk.crash();
        drop(spool);
        disk = after;
        spool = open(&disk);
        check(&spool, &mut model, unsure).await;
    }
    spool.close().await;
}

fn cases() -> u32 {
    super::model_tests::cases_from("HOOKFAN_FACADE_MODEL_CASES")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn what_the_facade_answered_survives_any_power_cut(
        seed in any::<u64>(),
        epochs in proptest::collection::vec(epoch(), 2..=2),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_case(seed, &epochs));
    }
}
