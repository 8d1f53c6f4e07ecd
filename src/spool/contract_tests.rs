// The spool's contract: included by `tests.rs` once per implementation, each module giving
// `Spool` (the type under test) and `open(data_dir)`. Every test here must pass for both.

const WINDOW: Duration = Duration::from_secs(600);

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

fn routes(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Appends one event per id, in order, for route `r` alone.
async fn append_to_r(spool: &Spool, ids: &[&str]) {
    for id in ids {
        spool
            .append(event(id), routes(&["r"]), WINDOW)
            .await
            .unwrap();
    }
}

/// The webhook ids of `items`, in order.
fn webhook_ids(items: &[DueItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.event.webhook_id.clone().unwrap())
        .collect()
}

/// 500 events of 1 KiB for route `r`, appended concurrently (group commit), then all
/// delivered concurrently: a round of the tests that watch disk use come back.
async fn append_and_deliver_a_round(spool: &Spool) {
    let appends: Vec<_> = (0..500)
        .map(|_| {
            let spool = spool.clone();
            let mut e = event("unused");
            e.webhook_id = None;
            e.body = vec![b' '; 1024];
            tokio::spawn(async move { spool.append(e, routes(&["r"]), WINDOW).await })
        })
        .collect();
    for a in appends {
        a.await.unwrap().unwrap();
    }
    let completes: Vec<_> = due(spool, "r")
        .into_iter()
        .map(|item| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.complete("r", item.key, Completion::Delivered).await })
        })
        .collect();
    for c in completes {
        c.await.unwrap().unwrap();
    }
}

fn due(spool: &Spool, route: &str) -> Vec<DueItem> {
    spool
        .due(route, u64::MAX - 1, &HashSet::new(), 1000, false)
        .unwrap()
        .items
}

#[tokio::test]
async fn an_appended_event_is_due_on_every_route_it_was_stored_for_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    let outcome = spool
        .append(event("a"), routes(&["r1", "r2"]), WINDOW)
        .await
        .unwrap();
    assert!(matches!(outcome, AppendOutcome::Stored { .. }));
    assert_eq!(due(&spool, "r1").len(), 1);
    assert_eq!(due(&spool, "r2").len(), 1);
    assert_eq!(due(&spool, "r3").len(), 0);
    assert_eq!(spool.stored_events().unwrap(), 1);
    assert_eq!(due(&spool, "r1")[0].event.body, event("a").body);
}

#[tokio::test]
async fn a_webhook_id_seen_within_the_window_is_a_duplicate_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    spool
        .append(event("a"), routes(&["r"]), WINDOW)
        .await
        .unwrap();
    let again = spool
        .append(event("a"), routes(&["r"]), WINDOW)
        .await
        .unwrap();
    assert_eq!(again, AppendOutcome::Duplicate);
    assert_eq!(spool.stored_events().unwrap(), 1);
    assert_eq!(due(&spool, "r").len(), 1);
}

#[tokio::test]
async fn concurrent_appends_of_one_id_store_it_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(event("same"), routes(&["r"]), WINDOW).await })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if let AppendOutcome::Stored { .. } = t.await.unwrap().unwrap() {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(due(&spool, "r").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_on_many_ids_from_several_threads_store_each_once_and_all_return() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("racing-{i}")).collect();
    let tasks: Vec<_> = (0..20)
        .flat_map(|_| ids.clone())
        .map(|id| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.append(event(&id), routes(&["r"]), WINDOW).await })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        // A waiter that missed its wake-up would hang here: fail instead.
        let outcome = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("every append returns")
            .unwrap()
            .unwrap();
        if let AppendOutcome::Stored { .. } = outcome {
            stored += 1;
        }
    }
    assert_eq!(stored, ids.len());
    let mut delivered = webhook_ids(&due(&spool, "r"));
    delivered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(delivered, expected);
}

#[tokio::test]
async fn an_id_older_than_the_window_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    let mut old = event("a");
    old.received_at_ms -= 20_000;
    spool.append(old, routes(&["r"]), WINDOW).await.unwrap();
    let again = spool
        .append(event("a"), routes(&["r"]), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(again, AppendOutcome::Stored { .. }));
}

#[tokio::test]
async fn the_event_is_freed_only_when_its_last_route_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    spool
        .append(event("a"), routes(&["r1", "r2"]), WINDOW)
        .await
        .unwrap();
    let key = due(&spool, "r1")[0].key;
    spool
        .complete("r1", key, Completion::Delivered)
        .await
        .unwrap();
    assert_eq!(spool.stored_events().unwrap(), 1, "r2 still holds it");
    let key = due(&spool, "r2")[0].key;
    spool
        .complete(
            "r2",
            key,
            Completion::Dead {
                attempts: 1,
                error: "HTTP 400".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        spool.stored_events().unwrap(),
        1,
        "a dead letter keeps its event"
    );
    let dead = spool.dead_letters(Some("r2")).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].webhook_id.as_deref(), Some("a"));
    assert_eq!(dead[0].error, "HTTP 400");
    assert!(due(&spool, "r2").is_empty());
}

#[tokio::test]
async fn delivered_events_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    for i in 0..100 {
        spool
            .append(event(&i.to_string()), routes(&["r"]), WINDOW)
            .await
            .unwrap();
    }
    for item in due(&spool, "r") {
        spool
            .complete("r", item.key, Completion::Delivered)
            .await
            .unwrap();
    }
    assert_eq!(spool.stored_events().unwrap(), 0);
    assert_eq!(spool.pending_count("r").unwrap(), 0);
}

#[tokio::test]
async fn a_retried_event_moves_behind_the_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["first", "second"]).await;
    let first = due(&spool, "r")[0].clone();
    assert_eq!(first.event.webhook_id.as_deref(), Some("first"));
    let later = now_ms() + 60_000;
    spool
        .complete(
            "r",
            first.key,
            Completion::Retry {
                due_ms: later,
                attempts: 1,
                error: "HTTP 503".into(),
            },
        )
        .await
        .unwrap();
    let now = spool
        .due("r", now_ms(), &HashSet::new(), 10, false)
        .unwrap();
    let ids = webhook_ids(&now.items);
    assert_eq!(ids, ["second"]);
    assert_eq!(now.next_due_ms, Some(later));
    let all = due(&spool, "r");
    assert_eq!(all[1].state.attempts, 1);
    assert_eq!(all[1].state.last_error.as_deref(), Some("HTTP 503"));
}

#[tokio::test]
async fn in_flight_events_are_skipped_and_the_limit_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    for i in 0..10 {
        spool
            .append(event(&i.to_string()), routes(&["r"]), WINDOW)
            .await
            .unwrap();
    }
    let all = due(&spool, "r");
    let skip: HashSet<u64> = all[..3].iter().map(|i| i.key.seq).collect();
    let got = spool.due("r", u64::MAX - 1, &skip, 4, false).unwrap();
    let seqs: Vec<u64> = got.items.iter().map(|i| i.key.seq).collect();
    assert_eq!(
        seqs,
        all[3..7].iter().map(|i| i.key.seq).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn everything_committed_survives_reopening_and_seqs_keep_growing() {
    let dir = tempfile::tempdir().unwrap();
    let first_seq = {
        let spool = open(dir.path()).unwrap();
        let AppendOutcome::Stored { seq } = spool
            .append(event("a"), routes(&["r"]), WINDOW)
            .await
            .unwrap()
        else {
            panic!("stored")
        };
        spool.close().await;
        seq
    };
    let spool = open(dir.path()).unwrap();
    assert_eq!(due(&spool, "r").len(), 1);
    assert_eq!(
        spool
            .append(event("a"), routes(&["r"]), WINDOW)
            .await
            .unwrap(),
        AppendOutcome::Duplicate
    );
    let AppendOutcome::Stored { seq } = spool
        .append(event("b"), routes(&["r"]), WINDOW)
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    assert!(seq > first_seq);
}

#[tokio::test]
async fn a_second_process_on_the_same_spool_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _spool = open(dir.path()).unwrap();
    let err = open(dir.path()).err().expect("second open fails");
    assert!(matches!(err, SpoolError::InUse(_)), "{err}");
}

#[tokio::test]
async fn writes_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    spool.close().await;
    let err = spool
        .append(event("a"), routes(&["r"]), WINDOW)
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::Closed));
}

#[tokio::test]
async fn on_an_ordered_route_a_held_event_keeps_its_place_and_blocks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["first", "second", "third"]).await;
    let first = due(&spool, "r")[0].clone();
    let later = now_ms() + 60_000;
    spool
        .complete(
            "r",
            first.key,
            Completion::Hold {
                not_before_ms: later,
                attempts: 1,
                error: "throttled".into(),
            },
        )
        .await
        .unwrap();
    let ordered = spool.due("r", now_ms(), &HashSet::new(), 10, true).unwrap();
    assert!(
        ordered.items.is_empty(),
        "nothing may overtake the held event"
    );
    assert_eq!(ordered.next_due_ms, Some(later));
    let at_time = spool.due("r", later, &HashSet::new(), 10, true).unwrap();
    let ids = webhook_ids(&at_time.items);
    assert_eq!(ids, ["first", "second", "third"]);
    assert_eq!(at_time.items[0].state.attempts, 1);
}

#[tokio::test]
async fn on_an_ordered_route_nothing_overtakes_an_event_still_in_flight() {
    // The worker may read again between a batch's outcome being committed and it hearing of
    // it; the in-flight head may be a hold, so the read must stop there, not skip it.
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["first", "second"]).await;
    let head: HashSet<u64> = HashSet::from([due(&spool, "r")[0].key.seq]);
    let ordered = spool.due("r", now_ms(), &head, 10, true).unwrap();
    assert!(ordered.items.is_empty(), "read {:?}", ordered.items);
    let unordered = spool.due("r", now_ms(), &head, 10, false).unwrap();
    let ids = webhook_ids(&unordered.items);
    assert_eq!(
        ids,
        ["second"],
        "an unordered route skips what is in flight"
    );
}

#[tokio::test]
async fn new_events_are_queued_in_commit_order_even_if_their_clocks_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    let mut late = event("late-clock");
    late.received_at_ms += 5_000;
    let mut early = event("early-clock");
    early.received_at_ms -= 5_000;
    spool.append(late, routes(&["r"]), WINDOW).await.unwrap();
    spool.append(early, routes(&["r"]), WINDOW).await.unwrap();
    let ids = webhook_ids(&due(&spool, "r"));
    assert_eq!(ids, ["late-clock", "early-clock"]);
}

#[tokio::test]
async fn replayed_dead_letters_are_due_again_with_fresh_attempts_and_dropped_ones_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["a", "b", "c"]).await;
    for item in due(&spool, "r") {
        spool
            .complete(
                "r",
                item.key,
                Completion::Dead {
                    attempts: 3,
                    error: "HTTP 400".into(),
                },
            )
            .await
            .unwrap();
    }
    assert!(due(&spool, "r").is_empty());
    let n = spool
        .dead_letter_action(DeadLetterAction::Replay, Some("r"), vec!["b".into()])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let again = due(&spool, "r");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.webhook_id.as_deref(), Some("b"));
    assert_eq!(again[0].state.attempts, 0, "a replay starts counting again");
    assert_eq!(spool.dead_letters(None).unwrap().len(), 2);

    let n = spool
        .dead_letter_action(DeadLetterAction::Drop, None, vec![])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(spool.dead_letters(None).unwrap().is_empty());
    assert_eq!(
        spool.stored_events().unwrap(),
        1,
        "only the replayed event is still held"
    );
    let none = spool
        .dead_letter_action(DeadLetterAction::Replay, Some("other"), vec![])
        .await
        .unwrap();
    assert_eq!(none, 0);
}

#[tokio::test]
async fn routes_on_disk_lists_every_route_holding_pending_or_dead_rows() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    assert!(spool.routes_on_disk().unwrap().is_empty());
    spool
        .append(event("a"), routes(&["b-route", "a-route"]), WINDOW)
        .await
        .unwrap();
    spool
        .append(event("b"), routes(&["a-route", "a-route-2"]), WINDOW)
        .await
        .unwrap();
    let item = due(&spool, "b-route").remove(0);
    spool
        .complete(
            "b-route",
            item.key,
            Completion::Dead {
                attempts: 1,
                error: "x".into(),
            },
        )
        .await
        .unwrap();
    spool
        .append(event("c"), routes(&["c"]), WINDOW)
        .await
        .unwrap();
    let item = due(&spool, "c").remove(0);
    spool
        .complete("c", item.key, Completion::Delivered)
        .await
        .unwrap();
    assert_eq!(
        spool.routes_on_disk().unwrap(),
        ["a-route", "a-route-2", "b-route"]
    );
    let summary = spool.route_summary("a-route").unwrap();
    assert_eq!((summary.pending, summary.dead_letters), (2, 0));
    assert!(summary.oldest_pending_received_ms.is_some());
    assert_eq!(spool.route_summary("b-route").unwrap().dead_letters, 1);
}

#[tokio::test]
async fn dropping_a_routes_pending_events_frees_only_what_no_other_route_holds() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    spool
        .append(event("shared"), routes(&["gone", "kept"]), WINDOW)
        .await
        .unwrap();
    spool
        .append(event("alone"), routes(&["gone"]), WINDOW)
        .await
        .unwrap();
    assert_eq!(spool.drop_pending("gone").await.unwrap(), 2);
    assert!(due(&spool, "gone").is_empty());
    assert_eq!(due(&spool, "kept").len(), 1);
    assert_eq!(
        spool.stored_events().unwrap(),
        1,
        "the shared event is still held by kept"
    );
}

/// The maintained figures of every route equal a walk of its rows.
fn assert_counts_match_a_scan(spool: &Spool, names: &[&str]) {
    for name in names {
        assert_eq!(
            spool.route_summary(name).unwrap(),
            spool.scan_summary(name).unwrap(),
            "route {name}"
        );
    }
}

#[tokio::test]
async fn backlog_figures_are_kept_through_every_kind_of_change_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b", "c"];
    {
        let spool = open(dir.path()).unwrap();
        for i in 0..30 {
            let (id, at) = (format!("e{i}"), 1_000 + i);
            let e = StoredEvent {
                received_at_ms: at,
                ..event(&id)
            };
            spool.append(e, routes(&names), WINDOW).await.unwrap();
        }
        // a: the oldest delivered, the next one retried (it keeps its seq, moves back).
        let items = due(&spool, "a");
        let batch = vec![
            (items[0].key, Completion::Delivered),
            (
                items[1].key,
                Completion::Retry {
                    due_ms: u64::MAX - 10,
                    attempts: 1,
                    error: "503".into(),
                },
            ),
        ];
        spool.complete_batch("a", batch).await.unwrap();
        let a = spool.route_summary("a").unwrap();
        assert_eq!((a.pending, a.oldest_pending_received_ms), (29, Some(1_001)));
        // b: three dead letters, one replayed, one dropped.
        let items = due(&spool, "b");
        let dead = items[..3]
            .iter()
            .map(|i| {
                let error = "410".to_string();
                (i.key, Completion::Dead { attempts: 1, error })
            })
            .collect();
        spool.complete_batch("b", dead).await.unwrap();
        assert_counts_match_a_scan(&spool, &names);
        let replay = vec!["e0".to_string()];
        let n = spool
            .dead_letter_action(DeadLetterAction::Replay, Some("b"), replay)
            .await
            .unwrap();
        assert_eq!(n, 1);
        let drop = vec!["e1".to_string()];
        spool
            .dead_letter_action(DeadLetterAction::Drop, Some("b"), drop)
            .await
            .unwrap();
        let b = spool.route_summary("b").unwrap();
        assert_eq!((b.pending, b.dead_letters), (28, 1));
        // c: dropped entirely.
        assert_eq!(spool.drop_pending("c").await.unwrap(), 30);
        assert_counts_match_a_scan(&spool, &names);
        assert_eq!(spool.routes_on_disk().unwrap(), ["a", "b"]);
        spool.close().await;
    }
    let spool = open(dir.path()).unwrap();
    assert_counts_match_a_scan(&spool, &names);
    assert_eq!(spool.route_summary("a").unwrap().pending, 29);
    assert_eq!(spool.routes_on_disk().unwrap(), ["a", "b"]);
}

#[tokio::test]
async fn changes_committed_while_the_backlog_is_still_being_counted_at_open_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["a", "b"];
    {
        let spool = open(dir.path()).unwrap();
        for i in 0..2_000 {
            let id = format!("old{i}");
            spool
                .append(event(&id), routes(&names), WINDOW)
                .await
                .unwrap();
        }
        spool.close().await;
    }
    // Reopen and change rows at once, while the walk at open may still be running: new
    // events, deliveries of old ones, a dead letter. Whichever finishes first, the figures
    // must equal a walk of the rows.
    let spool = open(dir.path()).unwrap();
    for i in 0..50 {
        let id = format!("new{i}");
        spool
            .append(event(&id), routes(&names), WINDOW)
            .await
            .unwrap();
    }
    let items = due(&spool, "a");
    let delivered = items[..100]
        .iter()
        .map(|i| (i.key, Completion::Delivered))
        .collect();
    spool.complete_batch("a", delivered).await.unwrap();
    let dead = vec![(
        items[100].key,
        Completion::Dead {
            attempts: 1,
            error: "410".into(),
        },
    )];
    spool.complete_batch("a", dead).await.unwrap();

    assert_counts_match_a_scan(&spool, &names);
    let a = spool.route_summary("a").unwrap();
    assert_eq!((a.pending, a.dead_letters), (2_050 - 101, 1));
    assert_eq!(spool.route_summary("b").unwrap().pending, 2_050);
    spool.close().await;
}

#[tokio::test]
async fn every_remembered_id_is_found_again_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2_000).map(|n| format!("{n:08x}-uuid")).collect();
    {
        let spool = open(dir.path()).unwrap();
        let tasks: Vec<_> = ids
            .chunks(100)
            .map(|chunk| {
                let (spool, chunk) = (spool.clone(), chunk.to_vec());
                tokio::spawn(async move {
                    for id in chunk {
                        spool
                            .append(event(&id), routes(&["r"]), WINDOW)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        spool.close().await;
    }
    let spool = open(dir.path()).unwrap();
    for id in &ids {
        let again = spool
            .append(event(id), routes(&["r"]), WINDOW)
            .await
            .unwrap();
        assert_eq!(again, AppendOutcome::Duplicate, "{id}");
    }
    assert_eq!(spool.stored_events().unwrap(), ids.len() as u64);
}

/// One step of the dedup model test.
#[derive(Debug, Clone)]
enum DedupStep {
    /// Append webhook `id` received `age_ms` ago (0, 5 s: within the 10 s window; 20 s: not).
    Append { id: u8, age_ms: u64 },
    /// Close and open the spool again: the id index is rebuilt from disk.
    Reopen,
}

fn dedup_step() -> impl proptest::strategy::Strategy<Value = DedupStep> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0u8..6, prop_oneof![Just(0u64), Just(5_000), Just(20_000)])
            .prop_map(|(id, age_ms)| DedupStep::Append { id, age_ms }),
        1 => Just(DedupStep::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the order of appends, repeats, late arrivals and restarts, a webhook is a
    /// duplicate exactly when its id was last stored with a `received_at` within the window,
    /// and every other one is stored: the reference model is a map of id → last stored age.
    #[test]
    fn dedup_agrees_with_a_model_of_the_window_through_restarts(
        steps in proptest::collection::vec(dedup_step(), 1..40)
    ) {
        let window = Duration::from_secs(10);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = open(dir.path()).unwrap();
            let mut last_stored_age: std::collections::HashMap<u8, u64> = Default::default();
            let mut stored = 0u64;
            for step in &steps {
                match *step {
                    DedupStep::Append { id, age_ms } => {
                        let mut e = event(&format!("{id:02x}-9f1c-4b7e-8d2a-{id:012x}"));
                        e.received_at_ms -= age_ms;
                        let got = spool.append(e, routes(&["r"]), window).await.unwrap();
                        let duplicate = last_stored_age.get(&id).is_some_and(|&a| a <= 5_000);
                        if duplicate {
                            assert_eq!(got, AppendOutcome::Duplicate, "{step:?} in {steps:?}");
                        } else {
                            assert!(matches!(got, AppendOutcome::Stored { .. }), "{step:?} in {steps:?}");
                            last_stored_age.insert(id, age_ms);
                            stored += 1;
                        }
                    }
                    DedupStep::Reopen => {
                        spool.close().await;
                        drop(spool);
                        spool = open(dir.path()).unwrap();
                    }
                }
            }
            assert_eq!(spool.stored_events().unwrap(), stored);
            spool.close().await;
        });
    }
}

#[tokio::test]
async fn an_append_whose_caller_gave_up_waiting_still_makes_its_id_a_duplicate_once_stored() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["first"]).await;
    // Polled once (handed to the spool), then dropped before its answer: Stream timed out.
    let gave_up = tokio::time::timeout(
        Duration::ZERO,
        spool.append(event("a"), routes(&["r"]), WINDOW),
    )
    .await;
    if let Ok(answer) = gave_up {
        assert!(matches!(answer.unwrap(), AppendOutcome::Stored { .. }));
    }
    // Stream's retry comes at once: whether or not the first is stored yet, never twice.
    let retry = spool
        .append(event("a"), routes(&["r"]), WINDOW)
        .await
        .unwrap();
    let stored = webhook_ids(&due(&spool, "r"));
    match retry {
        AppendOutcome::Duplicate => assert_eq!(stored, ["first", "a"]),
        AppendOutcome::Stored { .. } => panic!("stored twice: {stored:?}"),
    }
}
