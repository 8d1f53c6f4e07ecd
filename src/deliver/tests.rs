//! A route's worker over a real spool, in paused time: the destination is a channel the test
//! answers ([`ChannelSink`]), the clock is tokio's ([`Clock::tokio_from`]), and the backoff's
//! random draw is 1 (the whole ceiling), so every retry, hold, `max_age` and shutdown grace
//! lands on the millisecond the rules give, and a test of an hour's retries runs in
//! milliseconds.
//!
//! Tokio moves a paused clock to the next timer whenever the runtime has nothing to do,
//! including while it waits for the spool's writer thread. The tests wait for the spool with
//! [`settle`], which polls on a blocking thread (time stands still while one runs), and
//! guard every wait with real time ([`within`]), never with a tokio timeout.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RouteStats, RouteWorker};
use crate::clock::Clock;
use crate::sinks::channel::{Attempt, ChannelSink};
use crate::sinks::{Outcome, Sink};
use crate::spool::storage::{Fault, FaultOp};
use crate::spool::{LogSpool, LogSpoolConfig, SimDisk, Spool, StoredEvent};

/// When every test starts, in ms since the epoch.
const T0: u64 = 1_800_000_000_000;
/// The longest any wait may take in real time before the test fails.
const REAL_LIMIT: Duration = Duration::from_secs(20);

/// A worker for route `r`, its spool, and the test's end of its destination.
struct Rig {
    spool: Spool,
    attempts: UnboundedReceiver<Attempt>,
    clock: Clock,
    stats: Arc<RouteStats>,
    stop: CancellationToken,
    /// Ends when the worker does, with when that was (ms after [`T0`]).
    worker: JoinHandle<u64>,
    _dir: tempfile::TempDir,
}

/// Starts route `r` with `destination` (a routes.yaml destination block) and `grace`,
/// after storing one event per id in `ids` (received at [`T0`], in that order).
async fn rig(destination: &str, grace: Duration, ids: &[&str]) -> Rig {
    rig_on(None, 1, destination, grace, ids).await
}

/// [`rig`], with the spool on `disk` (a simulated one, which can fail) when given, and a
/// destination taking `batch` events at a time (as SQS and SNS take 10).
async fn rig_on(
    disk: Option<&SimDisk>,
    batch: usize,
    destination: &str,
    grace: Duration,
    ids: &[&str],
) -> Rig {
    let yaml = format!(
        "apps: [{{ api_key: k, api_secret: s }}]\nroutes:\n  - name: r\n    event_types: []\n{destination}"
    );
    let config = crate::config::from_str("routes.yaml", &yaml, |_| None).expect("valid config");
    let route = config.routes()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::tokio_from(T0);
    let spool = match disk {
        None => open(dir.path(), clock),
        Some(disk) => LogSpool::open_in(
            Arc::new(disk.clone()),
            "sim".into(),
            spool_config(clock),
            None,
        )
        .unwrap(),
    };
    for id in ids {
        let outcome = spool
            .append(event(id), vec!["r".into()], Duration::from_secs(600))
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            crate::spool::AppendOutcome::Stored { .. }
        ));
    }
    let (sink, attempts) = ChannelSink::new(batch);
    let stats = Arc::new(RouteStats::default());
    let stop = CancellationToken::new();
    let notify = spool.route_waker("r");
    let worker = RouteWorker {
        route: Arc::new(route),
        sink: Arc::new(Sink::Channel(sink)),
        spool: spool.clone(),
        notify: notify.clone(),
        shutdown: stop.clone(),
        grace,
        stats: stats.clone(),
        clock,
        jitter: || 1.0,
    };
    let worker = tokio::spawn(async move {
        worker.run().await;
        clock.now_ms() - T0
    });
    notify.notify_one();
    Rig {
        spool,
        attempts,
        clock,
        stats,
        stop,
        worker,
        _dir: dir,
    }
}

fn open(dir: &Path, clock: Clock) -> Spool {
    Spool::open_with(dir, spool_config(clock)).unwrap()
}

fn spool_config(clock: Clock) -> LogSpoolConfig {
    LogSpoolConfig {
        clock,
        ..LogSpoolConfig::with_segment_size(1 << 20)
    }
}

fn event(id: &str) -> StoredEvent {
    StoredEvent {
        webhook_id: Some(id.into()),
        received_at_ms: T0,
        api_key: Some("k".into()),
        signature: "00".repeat(32),
        event_type: Some("message.new".into()),
        body: format!(r#"{{"type":"message.new","id":"{id}"}}"#).into_bytes(),
        path: None,
        trace: None,
    }
}

fn retry() -> Outcome {
    Outcome::Retry {
        after: None,
        error: "503 Service Unavailable".into(),
    }
}

impl Rig {
    /// The next attempt, with its id and when it started (ms after [`T0`]).
    async fn next(&mut self) -> (Attempt, String, u64) {
        let attempt = within("the next attempt", self.attempts.recv())
            .await
            .expect("the worker is running");
        let id = attempt.webhook_id.clone().unwrap_or_default();
        (attempt, id, self.clock.now_ms() - T0)
    }

    /// Answers every attempt with `answer(id, number)` until `enough` of them were made;
    /// returns (id, number, ms after T0) of each.
    async fn script(
        &mut self,
        enough: usize,
        answer: impl Fn(&str, u32) -> Outcome,
    ) -> Vec<(String, u32, u64)> {
        let mut seen = Vec::new();
        while seen.len() < enough {
            let (attempt, id, at) = self.next().await;
            seen.push((id.clone(), attempt.number, at));
            let outcome = answer(&id, attempt.number);
            attempt.answer(outcome);
        }
        seen
    }

    fn pending(&self) -> u64 {
        self.spool.pending_count("r").unwrap()
    }

    /// Waits until `n` deliveries are recorded (the spool holds their outcomes).
    async fn delivered(&self, n: u64, what: &str) {
        let stats = self.stats.clone();
        settle(what, move || stats.delivered.load(Ordering::Relaxed) == n).await;
    }
}

/// An answer for [`Rig::script`]: `id`'s first attempt is asked to retry, every other
/// attempt is delivered.
fn fails_once(id: &'static str) -> impl Fn(&str, u32) -> Outcome {
    move |attempted, n| {
        if attempted == id && n == 1 {
            retry()
        } else {
            Outcome::Delivered
        }
    }
}

/// Waits, in real time and without moving the paused clock, until `done` holds.
async fn settle(what: &str, done: impl Fn() -> bool + Send + 'static) {
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < REAL_LIMIT,
                "{what}: not after {REAL_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    })
    .await
    .unwrap();
}

/// `fut`, or a failure after [`REAL_LIMIT`] of real time (a tokio timeout would fire at
/// once in paused time).
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    let (fire, fired) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(REAL_LIMIT);
        let _ = fire.send(());
    });
    tokio::select! {
        out = fut => out,
        _ = fired => panic!("{what}: nothing after {REAL_LIMIT:?} of real time"),
    }
}

/// Retries every 100 ms doubling up to 1 s, for at most an hour.
const HTTP: &str = "    http:\n      url: http://127.0.0.1:9/\n      concurrency: 1\n      retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 1s }\n";
/// A FIFO queue: one batch at a time, a failing event holds its place.
const FIFO: &str = "    sqs:\n      queue_url: https://sqs.eu-west-1.amazonaws.com/1/q.fifo\n      message_group_id: \"{cid}\"\n      concurrency: 1\n      retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 1s }\n";

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_tried_again_after_a_backoff_that_doubles_up_to_max_backoff() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a"]).await;
    let attempts = rig
        .script(7, |_, n| if n < 7 { retry() } else { Outcome::Delivered })
        .await;
    let times: Vec<u64> = attempts.iter().map(|a| a.2).collect();
    // Waits of 100, 200, 400, 800 ms, then max_backoff's 1 s.
    assert_eq!(times, [0, 100, 300, 700, 1500, 2500, 3500]);
    assert_eq!(
        attempts.iter().map(|a| a.1).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );
    // Counted once the spool holds the outcome.
    rig.delivered(1, "the delivery recorded").await;
    assert_eq!(rig.pending(), 0);
    assert_eq!(rig.stats.failed.load(Ordering::Relaxed), 6);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_is_a_floor_under_the_backoff_capped_at_max_backoff() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a"]).await;
    let after = |secs| Outcome::Retry {
        after: Some(Duration::from_secs(secs)),
        error: "429 Too Many Requests".into(),
    };
    let attempts = rig
        .script(4, |_, n| match n {
            // Longer than the backoff's 100 ms but within max_backoff: honoured.
            1 => Outcome::Retry {
                after: Some(Duration::from_millis(700)),
                error: "429 Too Many Requests".into(),
            },
            // Five minutes asked, max_backoff (1 s) given.
            2 => after(300),
            // Shorter than the backoff's ceiling (400 ms): the backoff wins.
            3 => Outcome::Retry {
                after: Some(Duration::from_millis(10)),
                error: "429 Too Many Requests".into(),
            },
            _ => Outcome::Delivered,
        })
        .await;
    let times: Vec<u64> = attempts.iter().map(|a| a.2).collect();
    assert_eq!(times, [0, 700, 1700, 2100]);
}

#[tokio::test(start_paused = true)]
async fn an_event_still_failing_at_max_age_becomes_a_dead_letter_and_is_not_tried_again() {
    let http = HTTP.replace("max_age: 1h", "max_age: 2s");
    let mut rig = rig(&http, Duration::from_secs(5), &["a"]).await;
    let attempts = rig.script(6, |_, _| retry()).await;
    let times: Vec<u64> = attempts.iter().map(|a| a.2).collect();
    // The attempt at 1.5 s is younger than max_age: retried. The one at 2.5 s is not.
    assert_eq!(times, [0, 100, 300, 700, 1500, 2500]);
    let spool = rig.spool.clone();
    settle("the dead letter recorded", move || {
        spool.dead_letters(Some("r")).unwrap().len() == 1
    })
    .await;
    let letter = rig.spool.dead_letters(Some("r")).unwrap().remove(0);
    assert_eq!(letter.attempts, 6);
    assert!(letter.error.contains("max_age 2s"), "{}", letter.error);
    assert_eq!(letter.dead_at_ms, T0 + 2500);
    assert_eq!(rig.pending(), 0);
    // An hour later, nothing was tried again.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        rig.attempts.try_recv().is_err(),
        "a dead letter was retried"
    );
}

#[tokio::test(start_paused = true)]
async fn on_an_unordered_route_a_failing_event_moves_behind_the_events_after_it() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a", "b", "c"]).await;
    let attempts = rig
        .script(4, |id, _| {
            if id == "a" {
                retry()
            } else {
                Outcome::Delivered
            }
        })
        .await;
    let order: Vec<(&str, u32)> = attempts.iter().map(|a| (a.0.as_str(), a.1)).collect();
    assert_eq!(order, [("a", 1), ("b", 1), ("c", 1), ("a", 2)]);
    assert_eq!(
        attempts[3].2, 100,
        "a's retry is due 100 ms after its failure"
    );
}

#[tokio::test(start_paused = true)]
async fn on_a_fifo_route_a_failing_event_holds_back_the_events_behind_it() {
    let mut rig = rig(FIFO, Duration::from_secs(5), &["a", "b", "c"]).await;
    let attempts = rig
        .script(5, |id, n| {
            if id == "a" && n < 3 {
                retry()
            } else {
                Outcome::Delivered
            }
        })
        .await;
    assert_eq!(
        attempts,
        [
            ("a".into(), 1, 0),
            ("a".into(), 2, 100),
            ("a".into(), 3, 300),
            ("b".into(), 1, 300),
            ("c".into(), 1, 300),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_a_delivery_answered_within_the_grace_is_recorded() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a"]).await;
    let (attempt, _, _) = rig.next().await;
    rig.stop.cancel();
    // The destination answers after 2 s of the 5 s grace.
    tokio::time::sleep(Duration::from_secs(2)).await;
    attempt.answer(Outcome::Delivered);
    let spool = rig.spool.clone();
    settle("the delivery recorded", move || {
        spool.pending_count("r").unwrap() == 0
    })
    .await;
    let ended = within("the worker's end", &mut rig.worker).await.unwrap();
    assert_eq!(
        ended, 2000,
        "it stopped once the delivery was done, not before"
    );
    assert_eq!(rig.stats.delivered.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_a_delivery_still_in_flight_after_the_grace_is_left_pending() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a", "b"]).await;
    let (_unanswered, id, _) = rig.next().await;
    assert_eq!(id, "a");
    rig.stop.cancel();
    let ended = within("the worker's end", &mut rig.worker).await.unwrap();
    assert_eq!(ended, 5000, "it waited exactly the grace");
    assert!(
        rig.attempts.try_recv().is_err(),
        "no delivery starts after shutdown"
    );
    // Both stay in the spool: a is delivered again after a restart (at least once), b was
    // never started.
    assert_eq!(rig.pending(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_whose_outcome_cannot_be_recorded_is_delivered_again_after_a_pause() {
    let disk = SimDisk::new(7);
    let mut rig = rig_on(Some(&disk), 1, HTTP, Duration::from_secs(5), &["a"]).await;
    let (first, _, at) = rig.next().await;
    assert_eq!(at, 0);
    // The destination took it, but the spool cannot make that durable (EIO on fdatasync).
    disk.inject(FaultOp::Sync, Fault::Io);
    first.answer(Outcome::Delivered);
    let (second, id, at) = rig.next().await;
    assert_eq!(
        (id.as_str(), second.number, at),
        ("a", 1, 1000),
        "the same event, its attempt never recorded, after the 1 s pause"
    );
    assert_eq!(disk.pending_faults(FaultOp::Sync), 0, "the fault was used");
    second.answer(Outcome::Delivered);
    rig.delivered(1, "the second delivery recorded").await;
    assert_eq!(rig.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_panics_gives_its_event_back_and_it_is_delivered_again() {
    let mut rig = rig(HTTP, Duration::from_secs(5), &["a"]).await;
    let (first, id, at) = rig.next().await;
    assert_eq!((id.as_str(), at), ("a", 0));
    // A bug in the destination's client: the delivery task panics mid-attempt.
    first.panic();
    let (second, id, at) = rig.next().await;
    assert_eq!(
        (id.as_str(), second.number, at),
        ("a", 1, 0),
        "the same event again at once, its panicked attempt never recorded"
    );
    second.answer(Outcome::Delivered);
    rig.delivered(1, "the second delivery recorded").await;
    assert_eq!(rig.pending(), 0);
    assert_eq!(
        rig.stats.in_flight.load(Ordering::Relaxed),
        0,
        "nothing is counted in flight any more"
    );
    assert_eq!(
        rig.stats.failed.load(Ordering::Relaxed),
        0,
        "a panic is not counted as a failed attempt"
    );
}

/// An HTTP route paced to 100 events a second, with a burst of 100.
const PACED: &str = "    http:\n      url: http://127.0.0.1:9/\n      concurrency: 8\n      rate_limit: 100/s\n      burst: 100\n      retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 1s }\n";

#[tokio::test(start_paused = true)]
async fn a_paced_route_sends_its_backlog_at_the_rate_after_one_burst_in_order() {
    let ids: Vec<String> = (0..600).map(|i| format!("e{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut rig = rig(PACED, Duration::from_secs(5), &refs).await;
    let mut sent = Vec::new();
    let mut most_pending_in_memory = 0;
    while sent.len() < 600 {
        let (attempt, id, at) = rig.next().await;
        // What the worker holds is what it had tokens for, never the backlog.
        most_pending_in_memory =
            most_pending_in_memory.max(rig.stats.in_flight.load(Ordering::Relaxed));
        sent.push((id, at));
        attempt.answer(Outcome::Delivered);
    }
    assert_eq!(
        sent.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        ids,
        "every event once, in queue order"
    );
    let times: Vec<u64> = sent.iter().map(|(_, at)| *at).collect();
    // The burst at once, then 100 a second: the last near 5 s.
    assert_eq!(times.iter().filter(|&&t| t == 0).count(), 100, "the burst");
    let last = *times.last().unwrap();
    assert!((4900..=5000).contains(&last), "the last at {last} ms");
    // Never more than rate + burst in any one-second window.
    for (i, &start) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|&&t| t < start + 1000).count();
        assert!(
            in_window <= 200,
            "{in_window} sent in the second from {start} ms"
        );
    }
    assert!(
        most_pending_in_memory <= 100,
        "in flight at most {most_pending_in_memory}"
    );
    rig.delivered(600, "every delivery recorded").await;
    assert_eq!(rig.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_takes_a_token_too() {
    let one_a_second = "    http:\n      url: http://127.0.0.1:9/\n      concurrency: 1\n      rate_limit: 1/s\n      retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 1s }\n";
    let mut rig = rig(one_a_second, Duration::from_secs(5), &["a", "b"]).await;
    let attempts = rig.script(3, fails_once("a")).await;
    // a fails at 0 and is due again at 100 ms, but the next token is at 1 s, and b was due
    // first; a's retry waits for the token after.
    assert_eq!(
        attempts,
        [
            ("a".into(), 1, 0),
            ("b".into(), 1, 1000),
            ("a".into(), 2, 2000)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_paced_batching_destination_spends_a_token_per_message_not_per_batch() {
    // An SQS route, whose sink takes batches of up to 10: 10 events a second, a burst of 10.
    let paced = "    sqs:\n      queue_url: https://sqs.eu-west-1.amazonaws.com/1/q\n      concurrency: 1\n      rate_limit: 10/s\n      burst: 10\n";
    let ids: Vec<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut rig = rig_on(None, 10, paced, Duration::from_secs(5), &refs).await;
    let attempts = rig.script(30, |_, _| Outcome::Delivered).await;
    let times: Vec<u64> = attempts.iter().map(|a| a.2).collect();
    // The burst's 10 go in one batch at once; the other 20 one token (100 ms) at a time. A
    // token per batch would have sent all 30 in three batches within 200 ms.
    assert_eq!(&times[..10], [0; 10]);
    let last = times[29];
    assert!(
        (1900..=2000).contains(&last),
        "the last at {last} ms: {times:?}"
    );
    assert_eq!(
        attempts.iter().map(|a| a.0.clone()).collect::<Vec<_>>(),
        ids,
        "in queue order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_paced_fifo_route_keeps_its_order_and_a_retry_spends_a_token_too() {
    // Two a second (a burst of two, one second's worth); a failing event holds the group in
    // its place.
    let paced_fifo = "    sqs:\n      queue_url: https://sqs.eu-west-1.amazonaws.com/1/q.fifo\n      message_group_id: \"{cid}\"\n      concurrency: 1\n      rate_limit: 2/s\n      retry: { max_age: 1h, initial_backoff: 100ms, max_backoff: 1s }\n";
    let mut rig = rig(paced_fifo, Duration::from_secs(5), &["a", "b", "c"]).await;
    let attempts = rig.script(4, fails_once("a")).await;
    // a fails at 0 and is held 100 ms; its retry spends the burst's second token. b and c
    // wait behind it, then each for a token of its own (one per 500 ms).
    assert_eq!(
        attempts,
        [
            ("a".into(), 1, 0),
            ("a".into(), 2, 100),
            ("b".into(), 1, 500),
            ("c".into(), 1, 1000),
        ]
    );
}
