use super::super::record::EventRecord;
use super::super::recovery::recover;
use super::super::storage::{Fault, FaultOp, SegmentFile, SimDisk, Storage};
use super::*;
use std::future::Future;

fn config() -> WriterConfig {
    WriterConfig {
        segment_size: 4096,
        prepared_ahead: 2,
        enqueue_timeout: Duration::from_secs(5),
        rotate_timeout: Duration::from_secs(5),
        barrier_timeout: Duration::from_secs(5),
        prepare_retry: Duration::from_millis(10),
    }
}

fn event(id: &str) -> Record<'_> {
    Record::Event(EventRecord {
        webhook_id: Some(id),
        received_at_ms: 1,
        api_key: None,
        signature: "sig",
        event_type: Some("message.new"),
        path: None,
        trace: None,
        body: &[b'x'; 300],
        routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
    })
}

fn start(disk: &SimDisk) -> Writer {
    let recovered = recover(disk).unwrap();
    Writer::start(Arc::new(disk.clone()), recovered, config()).unwrap()
}

#[test]
fn acknowledged_records_are_in_the_state_and_survive_a_crash() {
    let disk = SimDisk::new(1);
    let w = start(&disk);
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    let mut tickets = Vec::new();
    for i in 0..40 {
        let id = format!("id-{i}");
        let t = w.submit(&[event(&id)]).unwrap();
        w.wait(&t).unwrap();
        tickets.push(t);
    }
    assert_eq!(w.with_state(|s| s.route(0).unwrap().pending_len()), 40);
    let after = disk.crash();
    drop(w);
    let recovered = recover(&after).unwrap();
    assert_eq!(recovered.state.route(0).unwrap().pending_len(), 40);
    assert!(
        recovered.report.segments > 2,
        "40 × 300 bytes span segments of 4 KiB"
    );
    assert_eq!(recovered.next_lsn, tickets.last().unwrap().end_lsn);
}

#[test]
fn concurrent_submissions_share_groups_and_all_resolve() {
    let disk = SimDisk::new(2);
    let w = Arc::new(start(&disk));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("{t}-{i}");
                    w.wait(&w.submit(&[event(&id)]).unwrap()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(w.resolved(), 201);
    assert_eq!(w.with_state(|s| s.live_events()), 200);
}

#[test]
fn a_failed_sync_fails_its_group_and_writing_goes_on_in_a_fresh_segment() {
    for fault in [FaultOp::Sync, FaultOp::Write] {
        let disk = SimDisk::new(3);
        let w = start(&disk);
        w.wait(&w.submit(&[event("a")]).unwrap()).unwrap();
        disk.inject(fault, Fault::Io);
        let failed = w.submit(&[event("b")]).unwrap();
        match w.wait(&failed) {
            Err(LogError::WriteFailed { voided: true, .. }) => {}
            other => panic!("{fault:?}: {other:?}"),
        }
        w.wait(&w.submit(&[event("c")]).unwrap()).unwrap();
        let after = disk.crash();
        drop(w);
        let r = recover(&after).unwrap();
        let ids: Vec<u64> = r.state.route(0).unwrap().pending().map(|p| p.1).collect();
        assert_eq!(ids, vec![1, 3], "{fault:?}: b is void, a and c are kept");
        assert_eq!(r.next_lsn, 4);
    }
}

#[test]
fn while_no_segment_can_be_prepared_groups_fail_and_writing_resumes_once_space_is_back() {
    let disk = SimDisk::new(7);
    let recovered = recover(&disk).unwrap();
    let config = WriterConfig {
        prepared_ahead: 1,
        rotate_timeout: Duration::from_millis(50),
        ..config()
    };
    let w = Writer::start(Arc::new(disk.clone()), recovered, config).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    // The disk is full: every preparation fails for a while.
    for _ in 0..1000 {
        disk.inject(FaultOp::Create, Fault::NoSpace);
    }
    let mut failed = 0;
    let mut ok = 0;
    for i in 0..40 {
        let id = format!("id-{i}");
        match w.wait(&w.submit(&[event(&id)]).unwrap()) {
            Ok(()) => ok += 1,
            Err(LogError::WriteFailed { voided: true, .. }) => failed += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(failed > 0, "segments ran out ({ok} stored first)");
    // Space is back.
    disk.clear_faults();
    let mut stored = ok;
    for i in 40..60 {
        let id = format!("id-{i}");
        w.wait(&w.submit(&[event(&id)]).unwrap()).unwrap();
        stored += 1;
    }
    let after = disk.crash();
    drop(w);
    let r = recover(&after).unwrap();
    assert_eq!(r.state.route(0).unwrap().pending_len(), stored);
}

#[test]
fn settings_the_writer_cannot_work_with_are_refused_before_it_starts() {
    for (segment_size, prepared_ahead) in [(100, 1), (u64::from(u32::MAX) + 1, 1), (4096, 0)] {
        let disk = SimDisk::new(8);
        let config = WriterConfig {
            segment_size,
            prepared_ahead,
            ..config()
        };
        let started = Writer::start(Arc::new(disk.clone()), recover(&disk).unwrap(), config);
        assert!(
            matches!(started, Err(LogError::BadConfig(_))),
            "{segment_size} {prepared_ahead}"
        );
    }
}

#[test]
fn a_submission_larger_than_a_segment_is_refused() {
    let disk = SimDisk::new(4);
    let w = start(&disk);
    let body = vec![0u8; 5000];
    let big = Record::Event(EventRecord {
        webhook_id: None,
        received_at_ms: 1,
        api_key: None,
        signature: "",
        event_type: None,
        path: None,
        trace: None,
        body: &body,
        routes: vec![].into(),
    });
    assert!(matches!(w.submit(&[big]), Err(LogError::TooLarge { .. })));
}

#[test]
fn after_close_submissions_are_refused() {
    let disk = SimDisk::new(5);
    let w = start(&disk);
    let t = w.submit(&[event("a")]).unwrap();
    w.close();
    w.wait(&t).unwrap();
    assert!(matches!(w.submit(&[event("b")]), Err(LogError::Closed)));
}

#[tokio::test]
async fn an_async_waiter_wakes_on_the_shared_watermark() {
    let disk = SimDisk::new(6);
    let w = start(&disk);
    let t = w.submit(&[event("a"), event("b")]).unwrap();
    assert_eq!(t.end_lsn - t.first_lsn, 2);
    w.durable(&t).await.unwrap();
}

/// Counts the wakes of the task it stands for.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_published_group_wakes_only_the_waiters_it_resolves() {
    let disk = SimDisk::new(8);
    let w = start(&disk);
    let first = w.submit(&[event("first")]).unwrap();
    w.wait(&first).unwrap();
    // A waiter (with no deadline) for the 50th record from here, and 49 groups of one
    // record before it.
    let later = Ticket {
        first_lsn: first.end_lsn + 49,
        end_lsn: first.end_lsn + 50,
    };
    let wakes = Arc::new(Wakes::default());
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut waiting = Box::pin(w.durable(&later));
    assert!(waiting.as_mut().poll(&mut cx).is_pending());
    for i in 0..49 {
        w.wait(&w.submit(&[event(&format!("e{i}"))]).unwrap())
            .unwrap();
    }
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        0,
        "49 groups that do not resolve it (and the clock's ticks) left it asleep"
    );
    let last = w.submit(&[event("last")]).unwrap();
    assert_eq!(last, later);
    w.wait(&last).unwrap();
    // Its group wakes it: right after it is published (a bounded wait, not a sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while wakes.0.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "its group wakes it, once"
    );
    assert!(matches!(
        waiting.as_mut().poll(&mut cx),
        std::task::Poll::Ready(Ok(()))
    ));
}

#[tokio::test]
async fn an_async_waiter_is_told_when_its_group_failed_and_later_ones_are_not() {
    let disk = SimDisk::new(9);
    let w = start(&disk);
    w.durable(&w.submit(&[event("a")]).unwrap()).await.unwrap();
    disk.inject(FaultOp::Sync, Fault::Io);
    let failed = w.submit(&[event("b")]).unwrap();
    assert!(matches!(
        w.durable(&failed).await,
        Err(LogError::WriteFailed { voided: true, .. })
    ));
    let after = w.submit(&[event("c")]).unwrap();
    w.durable(&after).await.unwrap();
    // Asked again, after the fact: the same answers.
    assert!(w.durable(&failed).await.is_err());
    w.durable(&after).await.unwrap();
}

#[tokio::test]
async fn a_waiter_with_a_deadline_is_answered_late_once_the_clock_passes_it() {
    let disk = SimDisk::new(7);
    let w = start(&disk);
    // Durable in time: answered as usual.
    let far = Instant::now() + Duration::from_secs(60);
    let t = w.submit(&[event("a")]).unwrap();
    w.durable_by(&t, far).await.unwrap();
    // Records that no group will resolve (lsns not given yet) while nothing is
    // published: only the clock thread moves the watermark, and the waiter gives up at
    // its deadline, not before.
    let ahead = Ticket {
        first_lsn: t.end_lsn + 10,
        end_lsn: t.end_lsn + 11,
    };
    // (A waiter that never gives up fails the test, not hangs it.)
    let bounded =
        |deadline| tokio::time::timeout(Duration::from_secs(30), w.durable_by(&ahead, deadline));
    let deadline = Instant::now() + 3 * CLOCK_TICK;
    assert!(matches!(bounded(deadline).await, Ok(Err(LogError::Late))));
    assert!(Instant::now() >= deadline);
    // A deadline already past: answered by the next tick at the latest.
    assert!(matches!(
        bounded(Instant::now()).await,
        Ok(Err(LogError::Late))
    ));
    w.close();
}

/// A [`SimDisk`] that notes every write made to a file through it: (offset, length).
#[derive(Clone)]
struct Noted {
    disk: SimDisk,
    writes: Arc<Mutex<Vec<(u64, usize)>>>,
}

struct NotedFile {
    file: Arc<dyn SegmentFile>,
    writes: Arc<Mutex<Vec<(u64, usize)>>>,
}

impl Noted {
    fn file(&self, file: Arc<dyn SegmentFile>) -> Arc<dyn SegmentFile> {
        Arc::new(NotedFile {
            file,
            writes: self.writes.clone(),
        })
    }
}

impl Storage for Noted {
    fn create(&self, name: &str) -> std::io::Result<Arc<dyn SegmentFile>> {
        self.disk.create(name).map(|f| self.file(f))
    }
    fn open(&self, name: &str) -> std::io::Result<Arc<dyn SegmentFile>> {
        self.disk.open(name).map(|f| self.file(f))
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        self.disk.list()
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.disk.rename(from, to)
    }
    fn remove(&self, name: &str) -> std::io::Result<()> {
        self.disk.remove(name)
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.disk.sync_dir()
    }
}

impl SegmentFile for NotedFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.writes.lock().unwrap().push((offset, buf.len()));
        self.file.write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.file.read_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
    fn size(&self) -> std::io::Result<u64> {
        self.file.size()
    }
    fn zero_fill(&self, len: u64) -> std::io::Result<()> {
        self.file.zero_fill(len)
    }

    fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.truncate(len)
    }
}

#[test]
fn every_group_is_written_to_the_end_of_its_last_page_or_of_its_segment() {
    // A write ending inside a page the page cache does not hold would read that page from
    // the disk first, on the ack path (see `write_group`).
    let disk = SimDisk::new(12);
    let noted = Noted {
        disk: disk.clone(),
        writes: Arc::default(),
    };
    // Not a whole number of pages: a segment's last write ends at the segment's end.
    let segment_size = 3 * 4096 + 1000;
    let config = WriterConfig {
        segment_size,
        ..config()
    };
    let w = Writer::start(Arc::new(noted.clone()), recover(&disk).unwrap(), config).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    for i in 0..60 {
        let id = format!("id-{i}");
        w.wait(&w.submit(&[event(&id)]).unwrap()).unwrap();
    }
    let writes = noted.writes.lock().unwrap().clone();
    assert!(writes.len() >= 61, "a write per group: {writes:?}");
    let mut at_segment_end = 0;
    for &(offset, len) in &writes {
        let end = offset + len as u64;
        assert!(
            end.is_multiple_of(4096) || end == segment_size,
            "a write of {len} bytes at {offset} ends inside a page"
        );
        at_segment_end += usize::from(end == segment_size);
    }
    assert!(at_segment_end > 0, "60 × 300 bytes fill segments of 13 KiB");
    // The zeros written after each group are not records: all 60 are there, once.
    let recovered = recover(&disk.crash()).unwrap();
    drop(w);
    assert_eq!(recovered.state.route(0).unwrap().pending_len(), 60);
}

#[test]
fn a_log_left_without_spares_waits_for_its_first_segment_not_its_first_group() {
    let disk = SimDisk::new(9);
    let recovered = recover(&disk).unwrap();
    // Groups never wait for a segment: one that finds none ready fails.
    let config = WriterConfig {
        rotate_timeout: Duration::ZERO,
        ..config()
    };
    let w = Writer::start(Arc::new(disk.clone()), recovered, config).unwrap();
    assert!(w.wait_prepared(Duration::from_secs(60)));
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
}

#[test]
fn waiting_for_the_first_segment_ends_when_its_preparation_fails() {
    let disk = SimDisk::new(10);
    for _ in 0..1000 {
        disk.inject(FaultOp::Create, Fault::NoSpace);
    }
    let recovered = recover(&disk).unwrap();
    let w = Writer::start(Arc::new(disk.clone()), recovered, config()).unwrap();
    // Not the whole timeout: the disk is full, and the daemon goes on to answer 503 (and
    // to recover by itself once space is back) rather than wait to listen.
    assert!(!w.wait_prepared(Duration::from_secs(600)));
}

#[test]
fn what_a_restart_after_a_kill_recovered_from_the_page_cache_survives_a_power_cut_after() {
    let disk = SimDisk::new(21);
    let w = start(&disk);
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    w.wait(&w.submit(&[event("a")]).unwrap()).unwrap();
    // Event b is written, but its sync hangs: it is never acknowledged, and the process is
    // killed with it in the page cache only. (A segment for it is ready first: holding the
    // syncs holds the preparer's too.)
    assert!(w.wait_prepared(Duration::from_secs(60)));
    disk.hold_syncs(true);
    let _never = w.submit(&[event("b")]).unwrap();
    let written = |d: &SimDisk| {
        d.list().unwrap().iter().any(|n| {
            d.bytes(n)
                .is_some_and(|b| b.windows(2).any(|w| w == [0x01, b'b']))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !written(&disk) {
        assert!(std::time::Instant::now() < deadline, "b was never written");
        std::thread::yield_now();
    }
    let after_kill = disk.kill();
    // The dead process's sync fails now (its disk is gone), as its threads end.
    disk.hold_syncs(false);
    // The next run finds b (at least once allows it) and acknowledges c.
    let w2 = start(&after_kill);
    assert_eq!(w2.with_state(|s| s.route(0).unwrap().pending_len()), 2);
    w2.wait(&w2.submit(&[event("c")]).unwrap()).unwrap();
    // The power goes: b was never synced. What the second run acknowledged is all there,
    // and the log opens.
    let after_cut = after_kill.crash();
    drop(w2);
    let recovered = recover(&after_cut).unwrap();
    let pending = recovered.state.route(0).unwrap().pending_len();
    assert_eq!(pending, 3, "a and c, and b: the second run made it durable");
}
