// The log facade's own tests, included by `tests.rs` into its module (after the contract,
// whose helpers they use): what the redb spool's own tests check, for the log, and a crash.

/// Small segments, so tests cross segments and compaction has something to do; maintenance
/// rounds every 10 ms, so it runs (copies forward, deletes) while tests read.
fn small() -> LogSpoolConfig {
    let writer = crate::spool::WriterConfig {
        segment_size: 256 << 10,
        prepared_ahead: 1,
        ..Default::default()
    };
    let maintenance = crate::spool::compaction::MaintenanceConfig {
        interval: Duration::from_millis(10),
        ..crate::spool::compaction::MaintenanceConfig::for_segments(writer.segment_size)
    };
    LogSpoolConfig {
        clock: crate::clock::Clock::system(),
        writer,
        maintenance,
    }
}

/// The redb spool's `a_file_that_is_not_a_spool_is_refused_and_left_alone`, for the log: a
/// damaged acknowledged group (a later valid one proves it was synced) is refused at open,
/// naming the file, and the file is left as it was.
#[tokio::test]
async fn a_damaged_segment_is_refused_by_name_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_to_r(&spool, &["a", "b", "c"]).await;
    spool.close().await;
    drop(spool);
    let log_dir = dir.path().join(crate::spool::facade::DIR_NAME);
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let first = segments[0].clone();
    let mut bytes = std::fs::read(&first).unwrap();
    // Inside the first group's payload (segment header 40, group header 40).
    bytes[90] ^= 0xFF;
    std::fs::write(&first, &bytes).unwrap();

    let err = open(dir.path()).err().expect("a corrupt log is refused");
    let msg = err.to_string();
    let name = first.file_name().unwrap().to_str().unwrap();
    assert!(matches!(err, SpoolError::Log(_)), "{msg}");
    assert!(msg.contains(name), "{msg}");
    assert_eq!(std::fs::read(&first).unwrap(), bytes, "not rewritten");
}

/// Opens the log on a simulated disk.
fn open_sim(disk: &crate::spool::SimDisk) -> Spool {
    LogSpool::open_in(Arc::new(disk.clone()), "sim".into(), small(), None).unwrap()
}

#[tokio::test]
async fn what_was_acknowledged_before_a_power_cut_is_pending_after_it_and_its_ids_remembered() {
    let disk = crate::spool::SimDisk::new(7);
    let spool = open_sim(&disk);
    append_to_r(&spool, &["a", "b", "c"]).await;
    let items = due(&spool, "r");
    spool
        .complete("r", items[0].key, Completion::Delivered)
        .await
        .unwrap();
    let retry_at = now_ms() + 60_000;
    let retry = Completion::Retry {
        due_ms: retry_at,
        attempts: 1,
        error: "503".into(),
    };
    spool.complete("r", items[1].key, retry).await.unwrap();
    // The power goes: only what was synced is left.
    let after = disk.crash();
    drop(spool);

    let spool = open_sim(&after);
    let ids = webhook_ids(&due(&spool, "r"));
    assert_eq!(ids, ["c", "b"], "a delivered, b retried behind c");
    let pending = spool
        .due("r", now_ms(), &HashSet::new(), 10, false)
        .unwrap();
    assert_eq!(webhook_ids(&pending.items), ["c"]);
    assert_eq!(pending.next_due_ms, Some(retry_at));
    for id in ["a", "b", "c"] {
        let again = spool
            .append(event(id), routes(&["r"]), WINDOW)
            .await
            .unwrap();
        assert_eq!(again, AppendOutcome::Duplicate, "{id}");
    }
    spool.close().await;
}

#[tokio::test]
async fn on_a_disk_that_hangs_an_append_gives_up_at_its_deadline_and_its_event_is_stored_after() {
    let disk = crate::spool::SimDisk::new(11);
    let spool = open_sim(&disk);
    append_to_r(&spool, &["a"]).await;
    let release = disk.syncs_held();
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    let b = event("b");
    // (An append that never gives up fails the test, not hangs it.)
    let appended = tokio::time::timeout(
        Duration::from_secs(30),
        spool.append_grouped(b.borrowed(), &[("r", 0)], WINDOW, Some(deadline)),
    )
    .await
    .expect("the append gave up");
    assert!(matches!(appended, Err(SpoolError::Late)), "{appended:?}");
    assert!(std::time::Instant::now() >= deadline);
    // The disk comes back: the event was stored after all (a retry is a duplicate), never
    // lost.
    drop(release);
    let again = spool.append(event("b"), routes(&["r"]), WINDOW).await.unwrap();
    assert_eq!(again, AppendOutcome::Duplicate);
    assert_eq!(webhook_ids(&due(&spool, "r")), ["a", "b"]);
    spool.close().await;
}

#[tokio::test]
async fn a_failed_write_is_an_error_for_its_append_and_readiness_until_a_write_succeeds() {
    use crate::spool::storage::{Fault, FaultOp};
    let disk = crate::spool::SimDisk::new(3);
    let spool = open_sim(&disk);
    append_to_r(&spool, &["bound"]).await;
    disk.inject(FaultOp::Sync, Fault::Io);
    let err = spool
        .append(event("lost"), routes(&["r"]), WINDOW)
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::CommitFailed(_)), "{err}");
    assert!(spool.commit_error().is_some());
    // Stream retries: the id was not stored, so it is not a duplicate.
    let again = spool
        .append(event("lost"), routes(&["r"]), WINDOW)
        .await
        .unwrap();
    assert!(matches!(again, AppendOutcome::Stored { .. }));
    assert_eq!(spool.commit_error(), None);
    assert_eq!(webhook_ids(&due(&spool, "r")), ["bound", "lost"]);
    spool.close().await;
}

/// The redb spool's `the_file_stops_growing_once_delivered_space_is_reused`, for the log:
/// once what was written is delivered, maintenance (checkpoints, then segments deleted)
/// brings the directory back to a few segments. Maintenance runs on its own thread every
/// 10 ms and signals nothing, so the end is awaited by looking, with a deadline. Deliveries
/// run while segments are deleted under them: `due` reads bodies back meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_shrinks_back_once_what_was_written_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    const ROUNDS: usize = 8;
    let mut most = 0;
    for _round in 0..ROUNDS {
        append_and_deliver_a_round(&spool).await;
        most = most.max(spool.file_bytes().unwrap());
    }
    assert_eq!(spool.stored_events().unwrap(), 0);
    assert!(
        most < 4 << 20,
        "segments were deleted while rounds ran: at most {most} bytes"
    );
    // Left: the segment being written, the prepared one, those the two checkpoints need,
    // the checkpoints themselves (small: nothing is pending).
    let bound = 6 * (256 << 10);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut now = spool.file_bytes().unwrap();
    while now > bound && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = spool.file_bytes().unwrap();
    }
    assert!(
        now <= bound,
        "4 MiB written and delivered; the directory holds {now} bytes (at most {most} before)"
    );
    spool.close().await;
}

/// Appends one event per (id, message group), in order, for the ordered route `fifo`.
async fn append_grouped_to_fifo(spool: &Spool, events: &[(&str, &str)]) {
    for (id, group) in events {
        let group = crate::spool::message_group_fingerprint(group);
        spool
            .append_grouped(event(id).borrowed(), &[("fifo", group)], WINDOW, None)
            .await
            .unwrap();
    }
}

fn due_ordered(spool: &Spool, now: u64, in_flight: &HashSet<u64>) -> Due {
    spool.due("fifo", now, in_flight, 10, true).unwrap()
}

#[tokio::test]
async fn on_an_ordered_route_a_held_event_blocks_only_its_own_message_group_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_grouped_to_fifo(
        &spool,
        &[
            ("a1", "channel-a"),
            ("b1", "channel-b"),
            ("a2", "channel-a"),
            ("b2", "channel-b"),
            ("a3", "channel-a"),
        ],
    )
    .await;
    let none = HashSet::new();
    let all = due_ordered(&spool, now_ms(), &none);
    assert_eq!(webhook_ids(&all.items), ["a1", "b1", "a2", "b2", "a3"]);
    let later = now_ms() + 60_000;
    let hold = Completion::Hold {
        not_before_ms: later,
        attempts: 1,
        error: "throttled".into(),
    };
    spool.complete("fifo", all.items[0].key, hold).await.unwrap();

    let read = due_ordered(&spool, now_ms(), &none);
    assert_eq!(
        webhook_ids(&read.items),
        ["b1", "b2"],
        "channel a waits behind its held event; channel b goes on"
    );
    assert_eq!(read.next_due_ms, Some(later));
    // An outcome still in flight blocks its group too: it may turn out a hold.
    let b1 = HashSet::from([read.items[0].key.seq]);
    assert!(due_ordered(&spool, now_ms(), &b1).items.is_empty());

    spool.close().await;
    drop(spool);
    let spool = open(dir.path()).unwrap();
    let read = due_ordered(&spool, now_ms(), &none);
    assert_eq!(webhook_ids(&read.items), ["b1", "b2"], "after a restart");
    let at_time = due_ordered(&spool, later, &none);
    assert_eq!(
        webhook_ids(&at_time.items),
        ["a1", "b1", "a2", "b2", "a3"],
        "once due, the held event goes first again, each group in its order"
    );
    assert_eq!(at_time.items[0].state.attempts, 1);
}

#[tokio::test]
async fn an_event_of_no_message_group_waits_for_every_group_and_blocks_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    append_grouped_to_fifo(&spool, &[("a1", "channel-a"), ("b1", "channel-b")]).await;
    // An event stored without a group (by an older hookfan, say) counts as every group's.
    spool
        .append(event("whole"), vec!["fifo".to_string()], WINDOW)
        .await
        .unwrap();
    append_grouped_to_fifo(&spool, &[("b2", "channel-b")]).await;
    let none = HashSet::new();
    let all = due_ordered(&spool, now_ms(), &none);
    assert_eq!(webhook_ids(&all.items), ["a1", "b1", "whole", "b2"]);
    let later = now_ms() + 60_000;
    let hold = Completion::Hold {
        not_before_ms: later,
        attempts: 1,
        error: "throttled".into(),
    };
    spool.complete("fifo", all.items[0].key, hold).await.unwrap();
    assert_eq!(
        webhook_ids(&due_ordered(&spool, now_ms(), &none).items),
        ["b1"],
        "b1 goes; the groupless event waits for a1, and b2 waits behind it"
    );
    let whole = all.items[2].key;
    let hold = Completion::Hold {
        not_before_ms: later,
        attempts: 1,
        error: "throttled".into(),
    };
    spool.complete("fifo", whole, hold).await.unwrap();
    spool
        .complete("fifo", all.items[0].key, Completion::Delivered)
        .await
        .unwrap();
    assert_eq!(
        webhook_ids(&due_ordered(&spool, now_ms(), &none).items),
        ["b1"],
        "a held groupless event stops the whole route after it (b1 is ahead of it)"
    );
}

/// Whether `waker` holds a wake-up now (without waiting).
fn woken(waker: &tokio::sync::Notify) -> bool {
    let notified = waker.notified();
    tokio::pin!(notified);
    // A stored permit completes the future on its first poll.
    notified.as_mut().enable()
}

/// Waits for `waker`'s wake-up (failing the test, not hanging it, if none comes).
async fn wait_woken(waker: &tokio::sync::Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), waker.notified())
        .await
        .unwrap_or_else(|_| panic!("{what}: not woken"));
}

/// The writer wakes a route's delivery once a group that gives it an event or a replayed
/// dead letter is durable: no caller wakes it per webhook, and a route the group gives
/// nothing is not woken.
#[tokio::test]
async fn the_writer_wakes_a_route_once_a_group_gives_it_something_to_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path()).unwrap();
    // Wake-ups asked for before the names are bound (a fresh spool), as at daemon start.
    let r = spool.route_waker("r");
    let other = spool.route_waker("other");
    assert!(Arc::ptr_eq(&r, &spool.route_waker("r")), "one per name");
    spool
        .append(event("x"), routes(&["other"]), WINDOW)
        .await
        .unwrap();
    wait_woken(&other, "other, after its first event").await;

    append_to_r(&spool, &["a", "b", "c"]).await;
    wait_woken(&r, "r, after its events").await;
    // The writer handles groups in turn: once r is woken for a later group, every wake of
    // the earlier ones was given. None went to `other`.
    append_to_r(&spool, &["d"]).await;
    wait_woken(&r, "r, after one more").await;
    assert!(!woken(&other), "other woken by groups that gave it nothing");

    // A dead letter replayed wakes its route; a completion does not.
    let items = due(&spool, "r");
    let dead = Completion::Dead {
        attempts: 1,
        error: "400".into(),
    };
    spool.complete("r", items[0].key, dead).await.unwrap();
    let replayed = spool
        .dead_letter_action(DeadLetterAction::Replay, Some("r"), Vec::new())
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    wait_woken(&r, "r, after the replay").await;
    append_to_r(&spool, &["e"]).await;
    wait_woken(&r, "r, after one more").await;
    assert!(!woken(&other), "other woken by a replay on r");

    // After a restart, names bound by the log's records get their wake-ups at once.
    spool.close().await;
    drop(spool);
    let spool = open(dir.path()).unwrap();
    let other = spool.route_waker("other");
    spool
        .append(event("y"), routes(&["other"]), WINDOW)
        .await
        .unwrap();
    wait_woken(&other, "other, after a restart").await;
    spool.close().await;
}

/// The dedup window's boundary, on the spool's clock (paused tokio time): an id received at
/// `t` is a duplicate up to and including `t + dedup_window`, and stored again 1 ms later.
#[tokio::test(start_paused = true)]
async fn an_id_is_a_duplicate_through_the_last_millisecond_of_its_window_and_new_after() {
    const T0: u64 = 1_800_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let spool = LogSpool::open_with(
        dir.path(),
        LogSpoolConfig {
            clock: crate::clock::Clock::tokio_from(T0),
            ..small()
        },
    )
    .unwrap();
    let window = Duration::from_secs(600);
    let at = |received_at_ms| StoredEvent {
        received_at_ms,
        ..event("the-id")
    };
    let first = spool.append(at(T0), routes(&["r"]), window).await.unwrap();
    assert!(matches!(first, AppendOutcome::Stored { .. }), "{first:?}");
    // Stream's retries come later; their own receipt times do not move the window.
    tokio::time::advance(window).await;
    let retry = spool
        .append(at(T0 + 600_000), routes(&["r"]), window)
        .await
        .unwrap();
    assert_eq!(retry, AppendOutcome::Duplicate, "at the window's last millisecond");
    tokio::time::advance(Duration::from_millis(1)).await;
    let later = spool
        .append(at(T0 + 600_001), routes(&["r"]), window)
        .await
        .unwrap();
    assert!(
        matches!(later, AppendOutcome::Stored { .. }),
        "1 ms after the window: {later:?}"
    );
    assert_eq!(spool.pending_count("r").unwrap(), 2);
    spool.close().await;
}

/// A traced webhook's trace context is delivered with it, after a restart too: its
/// deliveries join the webhook's trace whenever they happen.
#[tokio::test]
async fn an_events_trace_is_delivered_with_it_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let trace = crate::spool::Trace {
        trace_id: [7; 16],
        span_id: [9; 8],
        flags: 1,
        state: "congo=t61rcWkgMzE".into(),
    };
    {
        let spool = open(dir.path()).unwrap();
        let mut traced = event("traced");
        traced.trace = Some(trace.clone());
        for e in [traced, event("plain")] {
            spool.append(e, routes(&["r"]), WINDOW).await.unwrap();
        }
        spool.close().await;
    }
    let spool = open(dir.path()).unwrap();
    let traces: Vec<_> = due(&spool, "r")
        .into_iter()
        .map(|item| (item.event.webhook_id.clone().unwrap(), item.event.trace.clone()))
        .collect();
    assert_eq!(
        traces,
        [("traced".to_string(), Some(trace)), ("plain".to_string(), None)]
    );
}
