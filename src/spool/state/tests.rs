use super::super::record::test_event as event;
use super::*;

const R: RouteId = 0;
const S: RouteId = 1;

fn at(lsn: u64) -> Location {
    Location {
        segment: lsn / 100,
        offset: lsn,
        len: 1,
    }
}

/// Applies `records` at lsns 1, 2, ...
fn state(records: &[Record<'_>]) -> State {
    let mut s = State::new();
    for (i, r) in records.iter().enumerate() {
        let lsn = i as u64 + 1;
        s.apply(lsn, at(lsn), r);
    }
    s
}

/// Route `r`'s pending seqs in delivery order, and its dead seqs.
fn queue(s: &State, r: RouteId) -> (Vec<u64>, Vec<u64>) {
    s.route(r).map_or((vec![], vec![]), |q| {
        (
            q.pending().map(|(_, seq, _)| seq).collect(),
            q.dead().map(|(seq, _)| seq).collect(),
        )
    })
}

/// A table row: what it shows, the records, then routes R's and S's (pending, dead).
type Case<'a> = (
    &'a str,
    Vec<Record<'a>>,
    (Vec<u64>, Vec<u64>),
    (Vec<u64>, Vec<u64>),
);

/// (fresh, with a state of their own) pending events of route `r`.
fn stored(s: &State, r: RouteId) -> (u64, usize) {
    s.route(r)
        .map_or((0, 0), |q| (q.queue.fresh.len(), q.queue.other.len()))
}

#[test]
fn an_events_metadata_takes_32_bytes_and_gives_every_field_back_whole() {
    // What every event pending or remembered costs, besides its dedup index entry.
    assert_eq!(std::mem::size_of::<EventMeta>(), 32);
    let location = Location {
        segment: u64::from(u32::MAX - 1),
        offset: u64::from(u32::MAX),
        len: u32::MAX,
    };
    // The year 2100, then each packed field at its largest and back, the others kept.
    let received = 4_102_444_800_000;
    let mut meta = EventMeta::new(location, received);
    assert_eq!(meta.location(), location);
    meta.set_holders(u16::MAX);
    meta.set_remembered(true);
    meta.fingerprint = u64::MAX;
    assert_eq!(
        (meta.received_at_ms(), meta.holders(), meta.remembered()),
        (received, u16::MAX, true)
    );
    meta.set_holders(0);
    assert_eq!(
        (meta.received_at_ms(), meta.holders(), meta.remembered()),
        (received, 0, true)
    );
    meta.set_remembered(false);
    meta.set_holders(7);
    assert_eq!(
        (meta.received_at_ms(), meta.holders(), meta.remembered()),
        (received, 7, false)
    );
    assert_eq!((meta.location(), meta.fingerprint), (location, u64::MAX));
    // Past 4 GiB or 4 billion segments (no segment is that large, the writer prepares
    // none that far): the last one, where a read fails. Past 2109: the last ms.
    let beyond = Location {
        segment: 1 << 33,
        offset: 1 << 33,
        ..location
    };
    let meta = EventMeta::new(beyond, u64::MAX);
    assert_eq!(
        (meta.location().segment, meta.location().offset),
        (u64::from(u32::MAX), u64::from(u32::MAX))
    );
    assert_eq!((meta.received_at_ms(), meta.holders()), (RECEIVED_MAX, 0));
}

#[test]
fn a_restored_dedup_window_names_listed_events_and_a_taken_over_entry_is_passed_over() {
    // An entry whose fingerprint a later one took over (checkpoints written before the
    // window was kept with the events hold these), its event long gone: accepted.
    let mut r = Restore::new([1, 2], 10, 1);
    r.event(5, at(5), 50, None).unwrap();
    r.id(30, 7, 3);
    r.id(50, 7, 5);
    let s = r.finish().unwrap();
    assert!(s.event(5).unwrap().remembered());
    assert_eq!(s.remembered_ids(), 1);
    assert_eq!(s.id_order().collect::<Vec<_>>(), [(50, 7, 5)]);
    // An id naming an event the checkpoint does not list: refused, naming it.
    let mut r = Restore::new([1, 2], 10, 1);
    r.event(5, at(5), 50, None).unwrap();
    r.id(50, 7, 5);
    r.id(60, 8, 6);
    assert_eq!(r.finish().unwrap_err(), Inconsistent::Id(6));
    // Two ids naming one event: refused too.
    let mut r = Restore::new([1, 2], 10, 1);
    r.event(5, at(5), 50, None).unwrap();
    r.id(50, 7, 5);
    r.id(50, 8, 5);
    assert_eq!(r.finish().unwrap_err(), Inconsistent::Id(5));
}

#[test]
fn events_never_attempted_cost_a_bit_and_keep_that_form_through_a_checkpoint() {
    let mut records: Vec<Record> = (0..100)
        .map(|i| event(None, 1_000 + i / 7, &[R, S]))
        .collect();
    records.push(Record::Retry {
        route: R,
        seq: 5,
        due_ms: 9_000,
        attempts: 1,
        error: "503",
    });
    let s = state(&records);
    assert_eq!(stored(&s, R), (99, 1));
    assert_eq!(stored(&s, S), (100, 0));
    let back = super::super::checkpoint::decode(&super::super::checkpoint::encode(&s))
        .unwrap()
        .state;
    assert_eq!(stored(&back, R), (99, 1));
    assert_eq!(stored(&back, S), (100, 0));
    let order = |s: &State| queue(s, R).0;
    assert_eq!(order(&back), order(&s));
    assert_eq!(*order(&s).last().unwrap(), 5, "the retry is due last");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// However its events are kept (fresh bitmap or entries of their own), a route's
    /// queue holds and orders exactly what a plain (due, seq) map would.
    #[test]
    fn a_route_queue_holds_and_orders_what_a_plain_map_would(
        ops in proptest::collection::vec((0u8..4, 0u64..400, 0u64..6, 0u32..2), 0..300)
    ) {
        let mut q = RouteQueue::default();
        let mut events = Events::new();
        let mut model: BTreeMap<(u64, u64), Entry> = BTreeMap::new();
        let mut next_seq = 1;
        let mut clock = 0;
        for (op, pick, step, attempts) in ops {
            let pending: Vec<u64> = model.keys().map(|&(_, s)| s).collect();
            match op {
                // A new event: the next seq, received no earlier than the last one and
                // due a little after (or, for this route, at another time).
                0 | 1 => {
                    clock += step;
                    let mut meta = EventMeta {
                        due_after_ms: (pick % 3) as u32,
                        ..EventMeta::new(at(next_seq), clock)
                    };
                    meta.set_holders(1);
                    events.insert(next_seq, meta);
                    let due = if op == 0 { meta.due_ms() } else { clock + pick % 5 };
                    q.put(due, next_seq, Entry::default(), Some(meta.due_ms()));
                    model.insert((due, next_seq), Entry::default());
                    next_seq += 1;
                }
                // A retry (attempted) or replay (not) of an event pending or not: its
                // own due time.
                2 if next_seq > 1 => {
                    let seq = 1 + pick % (next_seq - 1);
                    let entry = Entry { attempts, ..Entry::default() };
                    if let Some(key) = model.keys().find(|k| k.1 == seq).copied() {
                        let (due, taken) = q.take(seq, &events).expect("pending");
                        proptest::prop_assert_eq!((due, &taken), (key.0, &model.remove(&key).unwrap()));
                    }
                    let due = pick % 50 + step;
                    let event_due = (attempts == 0).then(|| events.get(seq).unwrap().due_ms());
                    q.put(due, seq, entry.clone(), event_due);
                    model.insert((due, seq), entry);
                }
                // An outcome: the event leaves.
                _ => {
                    if let Some(&seq) = pending.get(pick as usize % pending.len().max(1)) {
                        let key = model.keys().find(|k| k.1 == seq).copied().unwrap();
                        let (due, taken) = q.take(seq, &events).expect("pending");
                        proptest::prop_assert_eq!((due, &taken), (key.0, &model.remove(&key).unwrap()));
                    }
                }
            }
            let q = RouteView { queue: &q, events: &events };
            let got: Vec<(u64, u64, Entry)> = q.pending().map(|(d, s, e)| (d, s, e.clone())).collect();
            let want: Vec<(u64, u64, Entry)> = model.iter().map(|(&(d, s), e)| (d, s, e.clone())).collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(q.pending_len(), model.len());
            proptest::prop_assert_eq!(q.oldest_pending(), model.keys().map(|k| k.1).min());
            for seq in 1..next_seq {
                proptest::prop_assert_eq!(q.is_pending(seq), model.keys().any(|k| k.1 == seq));
            }
        }
    }
}

#[test]
fn each_record_changes_the_queues_as_the_table_says() {
    let cases: Vec<Case> = vec![
        (
            "an event is pending on each of its routes",
            vec![event(None, 10, &[R, S]), event(None, 11, &[R])],
            (vec![1, 2], vec![]),
            (vec![1], vec![]),
        ),
        (
            "a delivery removes it from that route only",
            vec![
                event(None, 10, &[R, S]),
                Record::Delivered { route: R, seq: 1 },
            ],
            (vec![], vec![]),
            (vec![1], vec![]),
        ),
        (
            "a retry moves it behind what is due earlier",
            vec![
                event(None, 10, &[R]),
                event(None, 11, &[R]),
                Record::Retry {
                    route: R,
                    seq: 1,
                    due_ms: 50,
                    attempts: 1,
                    error: "503",
                },
            ],
            (vec![2, 1], vec![]),
            (vec![], vec![]),
        ),
        (
            "a hold keeps its place",
            vec![
                event(None, 10, &[R]),
                event(None, 11, &[R]),
                Record::Hold {
                    route: R,
                    seq: 1,
                    not_before_ms: 50,
                    attempts: 1,
                    error: "503",
                },
            ],
            (vec![1, 2], vec![]),
            (vec![], vec![]),
        ),
        (
            "a dead letter leaves the queue for the dead letters",
            vec![
                event(None, 10, &[R, S]),
                Record::Dead {
                    route: R,
                    seq: 1,
                    attempts: 3,
                    error: "400",
                    dead_at_ms: 9,
                },
            ],
            (vec![], vec![1]),
            (vec![1], vec![]),
        ),
        (
            "a replay puts it back at its due time",
            vec![
                event(None, 10, &[R]),
                event(None, 20, &[R]),
                Record::Dead {
                    route: R,
                    seq: 1,
                    attempts: 3,
                    error: "400",
                    dead_at_ms: 9,
                },
                Record::Replay {
                    route: R,
                    seq: 1,
                    due_ms: 30,
                },
            ],
            (vec![2, 1], vec![]),
            (vec![], vec![]),
        ),
        (
            "a drop forgets the dead letter",
            vec![
                event(None, 10, &[R]),
                Record::Dead {
                    route: R,
                    seq: 1,
                    attempts: 3,
                    error: "400",
                    dead_at_ms: 9,
                },
                Record::Drop { route: R, seq: 1 },
            ],
            (vec![], vec![]),
            (vec![], vec![]),
        ),
        (
            "dropping a route's pending events keeps its dead letters and other routes",
            vec![
                event(None, 10, &[R, S]),
                event(None, 11, &[R]),
                Record::Dead {
                    route: R,
                    seq: 2,
                    attempts: 3,
                    error: "400",
                    dead_at_ms: 9,
                },
                Record::DropPending { route: R },
            ],
            (vec![], vec![2]),
            (vec![1], vec![]),
        ),
        (
            "records about events not in that place change nothing",
            vec![
                event(None, 10, &[R]),
                Record::Delivered { route: S, seq: 1 },
                Record::Replay {
                    route: R,
                    seq: 1,
                    due_ms: 5,
                },
                Record::Drop { route: R, seq: 1 },
                Record::Hold {
                    route: R,
                    seq: 9,
                    not_before_ms: 5,
                    attempts: 1,
                    error: "",
                },
                Record::Delivered { route: R, seq: 1 },
                Record::Delivered { route: R, seq: 1 },
                Record::Retry {
                    route: R,
                    seq: 1,
                    due_ms: 5,
                    attempts: 1,
                    error: "",
                },
            ],
            (vec![], vec![]),
            (vec![], vec![]),
        ),
    ];
    for (name, records, want_r, want_s) in cases {
        let s = state(&records);
        assert_eq!(queue(&s, R), want_r, "{name}: route R");
        assert_eq!(queue(&s, S), want_s, "{name}: route S");
    }
}

#[test]
fn an_event_is_needed_until_its_last_route_lets_go_and_its_id_expires() {
    let mut s = state(&[
        event(Some("a"), 10, &[R, S]),
        Record::Delivered { route: R, seq: 1 },
    ]);
    assert_eq!(s.event(1).unwrap().holders(), 1);
    assert_eq!(s.oldest_needed_segment(), Some(0));
    s.apply(3, at(3), &Record::Delivered { route: S, seq: 1 });
    assert!(s.event(1).unwrap().remembered(), "kept for its id");
    assert_eq!(s.dedup_candidate("a").unwrap().seq, 1);
    s.expire_ids(11, 100);
    assert_eq!(s.event(1), None);
    assert_eq!(s.dedup_candidate("a"), None);
    assert_eq!(s.live_events(), 0);
}

#[test]
fn the_dedup_index_names_the_latest_event_of_an_id_and_expiry_keeps_it() {
    let mut s = state(&[event(Some("a"), 10, &[R]), event(Some("a"), 500, &[R])]);
    assert_eq!(s.dedup_candidate("a").unwrap().seq, 2);
    // The first one's entry expires; the second stays remembered.
    s.expire_ids(100, 100);
    assert_eq!(s.dedup_candidate("a").unwrap().seq, 2);
    assert_eq!(s.remembered_ids(), 1);
    assert!(!s.event(1).unwrap().remembered());
    assert_eq!(s.event(1).unwrap().holders(), 1, "still pending on R");
}

#[test]
fn expiry_stops_at_its_limit_and_at_the_first_id_still_in_the_window() {
    let mut s = state(&[
        event(Some("a"), 10, &[]),
        event(Some("b"), 90, &[]),
        event(Some("c"), 20, &[]),
    ]);
    s.expire_ids(50, 100);
    // "c" is older than the cutoff but came after "b": it stays until "b" goes.
    assert_eq!(s.remembered_ids(), 2);
    s.expire_ids(1000, 1);
    assert_eq!(s.remembered_ids(), 1);
}

#[test]
fn routes_are_bound_by_records_and_lsns_advance() {
    let s = state(&[
        Record::Route { id: 4, name: "sqs" },
        Record::Route {
            id: 5,
            name: "http",
        },
    ]);
    assert_eq!(s.route_id("http"), Some(5));
    assert_eq!(s.route_name(4), Some("sqs"));
    assert_eq!(s.next_lsn(), 3);
}

#[test]
fn retry_and_hold_keep_their_attempts_and_errors() {
    let s = state(&[
        event(None, 10, &[R]),
        Record::Hold {
            route: R,
            seq: 1,
            not_before_ms: 99,
            attempts: 2,
            error: "503",
        },
    ]);
    let (due, seq, e) = s.route(R).unwrap().pending().next().unwrap();
    assert_eq!((due, seq, e.attempts, e.not_before_ms), (10, 1, 2, 99));
    assert_eq!(e.last_error.as_deref(), Some("503"));
}

#[test]
fn a_routes_entries_that_failed_the_same_way_share_one_copy_of_the_error_and_keep_it_through_a_checkpoint(
) {
    let retry = |seq, error| Record::Retry {
        route: R,
        seq,
        due_ms: 100 + seq,
        attempts: 1,
        error,
    };
    let mut records: Vec<Record> = (0..5).map(|_| event(None, 10, &[R, S])).collect();
    records.extend([
        retry(1, "refused"),
        retry(2, "refused"),
        retry(3, "timed out"),
        retry(4, "refused"),
        Record::Dead {
            route: R,
            seq: 5,
            attempts: 1,
            error: "refused",
            dead_at_ms: 50,
        },
        Record::Retry {
            route: S,
            seq: 1,
            due_ms: 200,
            attempts: 1,
            error: "refused",
        },
    ]);
    let live = state(&records);
    let restored = super::super::checkpoint::decode(&super::super::checkpoint::encode(&live))
        .expect("the checkpoint decodes")
        .state;
    for s in [&live, &restored] {
        let text = |seq| -> Arc<str> {
            let q = s.route(R).unwrap();
            q.pending()
                .find(|&(_, sq, _)| sq == seq)
                .map(|(_, _, e)| e.last_error.clone().unwrap())
                .or_else(|| {
                    q.dead()
                        .find(|&(sq, _)| sq == seq)
                        .map(|(_, d)| d.error.clone())
                })
                .unwrap()
        };
        assert!(
            Arc::ptr_eq(&text(1), &text(2)),
            "one copy for a run of one error"
        );
        assert_eq!((&*text(3), &*text(4)), ("timed out", "refused"));
        assert!(Arc::ptr_eq(&text(4), &text(5)), "dead letters share it too");
        let (_, _, other_route) = s
            .route(S)
            .unwrap()
            .pending()
            .find(|&(_, seq, _)| seq == 1)
            .unwrap();
        assert_eq!(other_route.last_error.as_deref(), Some("refused"));
    }
}
