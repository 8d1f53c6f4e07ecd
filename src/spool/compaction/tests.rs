use super::super::reader::read_record;
use super::super::recovery::recover;
use super::super::storage::{RealDisk, SimDisk};
use super::super::writer::WriterConfig;
use super::*;

const SEGMENT: u64 = 4096;

fn use_(bytes: u64) -> SegmentUse {
    SegmentUse { events: 1, bytes }
}

#[test]
fn a_step_deletes_below_the_floor_what_holds_nothing_and_copies_the_oldest_cheap_segment() {
    // (what it shows, files, uses, floor, delete, copy)
    type Case<'a> = (
        &'a str,
        Vec<u64>,
        Vec<(u64, SegmentUse)>,
        u64,
        Vec<u64>,
        Vec<u64>,
    );
    let cases: Vec<Case> = vec![
        (
            "no floor: nothing",
            vec![1, 2, 3],
            vec![],
            0,
            vec![],
            vec![],
        ),
        (
            "below the floor only",
            vec![1, 2, 3, 4],
            vec![],
            3,
            vec![1, 2],
            vec![],
        ),
        (
            "a segment that holds an event stays; the cheap one is copied",
            vec![1, 2, 3, 4],
            vec![(1, use_(100))],
            4,
            vec![2, 3],
            vec![1],
        ),
        (
            "a costly segment is not copied; the next cheap one is",
            vec![1, 2, 3, 4],
            vec![(1, use_(2000)), (2, use_(10))],
            4,
            vec![3],
            vec![2],
        ),
        (
            "cheap segments are copied from until the step's bytes are spent",
            vec![1, 2, 3, 4, 5],
            vec![
                (1, use_(600)),
                (2, use_(600)),
                (3, use_(400)),
                (4, use_(30)),
            ],
            5,
            vec![],
            vec![1, 3],
        ),
        (
            "nothing at or after the floor is copied",
            vec![1, 2, 3],
            vec![(2, use_(1))],
            2,
            vec![1],
            vec![],
        ),
    ];
    for (name, files, uses, floor, delete, copy) in cases {
        assert_eq!(
            plan(&files, &uses, floor, 1024),
            Plan { delete, copy },
            "{name}"
        );
    }
}

fn config() -> WriterConfig {
    WriterConfig {
        segment_size: SEGMENT,
        prepared_ahead: 2,
        enqueue_timeout: Duration::from_secs(5),
        rotate_timeout: Duration::from_secs(5),
        barrier_timeout: Duration::from_secs(5),
        prepare_retry: Duration::from_millis(10),
    }
}

fn maint_config() -> MaintenanceConfig {
    MaintenanceConfig {
        copy_batch: 1024,
        ..MaintenanceConfig::for_segments(SEGMENT)
    }
}

fn body(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(280)).into_bytes()
}

/// Appends `n` events (ids and ~300-byte bodies) on route 0, one group each: about a
/// dozen per 4 KiB segment. Returns their seqs.
fn append(w: &Writer, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let id = format!("id-{i}");
            let body = body(i);
            let event = Record::Event(EventRecord {
                webhook_id: Some(&id),
                received_at_ms: 1_000 + i,
                api_key: None,
                signature: "sig",
                event_type: None,
                path: None,
                trace: None,
                body: &body,
                routes: vec![crate::spool::record::RouteDue::new(0, 1_000 + i)].into(),
            });
            let t = w.submit(&[event]).unwrap();
            w.wait(&t).unwrap();
            t.first_lsn
        })
        .collect()
}

fn one(w: &Writer, record: Record<'_>) {
    w.wait(&w.submit(&[record]).unwrap()).unwrap();
}

/// Route 0 gives up on `seq` (a dead letter).
fn dies(w: &Writer, seq: u64) {
    let record = Record::Dead {
        route: 0,
        seq,
        attempts: 3,
        error: "400",
        dead_at_ms: 5,
    };
    one(w, record);
}

/// Every 40th of `seqs` dies on route 0 and the rest are delivered: a few dead letters
/// pinning segments nothing else needs. Returns the dead ones, with their index in `seqs`.
fn every_fortieth_dies(w: &Writer, seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut dead = Vec::new();
    for (i, &seq) in seqs.iter().enumerate() {
        if i % 40 == 0 {
            dies(w, seq);
            dead.push((i as u64, seq));
        } else {
            one(w, Record::Delivered { route: 0, seq });
        }
    }
    dead
}

/// A log on a simulated disk (`seed`), opened, with its maintenance (`maint`).
fn sim_log(seed: u64, maint: MaintenanceConfig) -> (SimDisk, Maintenance, Writer) {
    let disk = SimDisk::new(seed);
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let recovered = recover(&disk).unwrap();
    let m = Maintenance::new(storage.clone(), recovered.checkpoint, maint);
    let w = Writer::start(storage, recovered, config()).unwrap();
    (disk, m, w)
}

/// Takes a checkpoint (one must be due); returns the bytes it read from the disk.
fn checkpoint_reading(disk: &SimDisk, m: &mut Maintenance, w: &Writer) -> u64 {
    let before = disk.bytes_read();
    m.checkpoint(w)
        .unwrap()
        .expect("a new lsn: a checkpoint is taken");
    disk.bytes_read() - before
}

/// The newest checkpoint kept holds exactly the writer's state.
fn assert_newest_holds_the_writers_state(disk: &SimDisk, m: &Maintenance, w: &Writer) {
    let newest = m.kept().last().unwrap();
    let bytes = disk.bytes(&checkpoint::checkpoint_name(newest.lsn));
    assert_holds_the_writers_state(&bytes.unwrap(), w);
}

/// The checkpoint file `bytes` holds exactly the writer's state.
fn assert_holds_the_writers_state(bytes: &[u8], w: &Writer) {
    let written = checkpoint::decode(bytes).unwrap();
    assert_eq!(
        checkpoint::encode(&written.state),
        w.with_state(checkpoint::encode)
    );
}

fn segment_files(storage: &dyn Storage) -> Vec<u64> {
    segment::indexes(&storage.list().unwrap())
}

#[test]
fn a_drained_backlog_returns_the_directory_to_a_few_segments() {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Storage> = Arc::new(RealDisk::open(dir.path()).unwrap());
    let recovered = recover(&*disk).unwrap();
    let mut m = Maintenance::new(disk.clone(), recovered.checkpoint, maint_config());
    let w = Writer::start(disk.clone(), recovered, config()).unwrap();
    let seqs = append(&w, 400);
    let peak = segment_files(&*disk).len();
    assert!(peak > 30, "the backlog spans {peak} segments");
    for seq in seqs {
        one(&w, Record::Delivered { route: 0, seq });
    }
    // The dedup window passes.
    one(
        &w,
        Record::ExpireIds {
            before_ms: u64::MAX,
            limit: 1000,
        },
    );
    // Idle from here on: maintenance rounds alone bring the space back.
    for _ in 0..3 {
        m.step(&w).unwrap();
    }
    let files = segment_files(&*disk);
    assert!(
        files.len() <= 4,
        "{} segments left of {peak}: {files:?}",
        files.len()
    );
    let checkpoints = disk
        .list()
        .unwrap()
        .iter()
        .filter(|n| checkpoint::checkpoint_lsn(n).is_some())
        .count();
    assert_eq!(checkpoints, 2);
    w.close();
    let r = recover(&*disk).unwrap();
    assert_eq!(r.state.live_events(), 0);
    assert!(
        r.report.records < 10,
        "replayed {} records",
        r.report.records
    );
}

/// Maintenance that rebuilds every checkpoint from the log.
fn rebuilding() -> MaintenanceConfig {
    MaintenanceConfig {
        snapshot_at_most: 0,
        ..maint_config()
    }
}

#[test]
fn checkpoints_taken_while_the_writer_appends_each_hold_the_writers_state_at_their_lsn() {
    for config in [maint_config(), rebuilding()] {
        checkpoints_taken_while_the_writer_appends(config);
    }
}

fn checkpoints_taken_while_the_writer_appends(config: MaintenanceConfig) {
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Storage> = Arc::new(RealDisk::open(dir.path()).unwrap());
    let recovered = recover(&*disk).unwrap();
    let mut m = Maintenance::new(disk.clone(), recovered.checkpoint, config);
    let w = Arc::new(Writer::start(disk.clone(), recovered, self::config()).unwrap());
    // Four submitters, so groups are being written while a checkpoint is taken.
    let submitters: Vec<_> = (0..4)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || append(&w, 150))
        })
        .collect();
    let mut taken = Vec::new();
    while submitters.iter().any(|s| !s.is_finished()) {
        taken.extend(m.checkpoint(&w).unwrap());
    }
    for s in submitters {
        s.join().unwrap();
    }
    assert_eq!(m.checkpoints_from_memory(), 0, "the log did not replay");
    assert!(taken.len() >= 2, "{} checkpoints taken", taken.len());
    // With the writer idle: one more (none if the loop's last one already came after the
    // last record), and the newest says what the writer's state says.
    m.checkpoint(&w).unwrap();
    let last = m.kept().last().unwrap();
    assert_eq!(last.lsn, w.with_state(|s| s.next_lsn()));
    let bytes =
        super::super::recovery::read_all(&*disk, &checkpoint::checkpoint_name(last.lsn), None)
            .unwrap();
    assert_holds_the_writers_state(&bytes, &w);
    w.close();
    let r = recover(&*disk).unwrap();
    assert_eq!(r.state.route(0).unwrap().pending_len(), 600);
    assert_eq!(r.report.records, 0, "the checkpoint covers the whole log");
}

#[test]
fn a_large_checkpoint_is_taken_again_only_once_the_log_wrote_several_times_its_size() {
    let amortized = MaintenanceConfig {
        small_checkpoint: 0,
        log_per_checkpoint: 4,
        ..maint_config()
    };
    let (_disk, mut m, w) = sim_log(7, amortized);
    append(&w, 10);
    m.step(&w).unwrap();
    let mut last = m.kept().last().expect("the first one is always worth it");
    let mut taken = 1;
    for _ in 0..300 {
        append(&w, 1);
        let (size, log_at) = (m.newest_size, m.log_at_newest);
        assert!(size > 0);
        m.step(&w).unwrap();
        let newest = m.kept().last().unwrap();
        if newest != last {
            let written = m.log_at_newest - log_at;
            assert!(
                written >= 4 * size,
                "a checkpoint of {size} bytes after {written} bytes of log"
            );
            last = newest;
            taken += 1;
        }
    }
    w.close();
    assert!(taken >= 3, "{taken} checkpoints taken");
}

#[test]
fn a_log_that_does_not_replay_is_checkpointed_from_the_writers_state_and_counted() {
    let (disk, mut m, w) = sim_log(5, rebuilding());
    append(&w, 5);
    let first = m.checkpoint(&w).unwrap().unwrap();
    append(&w, 40);
    // A byte flipped in the first group after the checkpoint's segment.
    let damaged = segment::segment_name(first.segment + 1);
    let at = (segment::SEGMENT_HEADER_LEN + segment::GROUP_HEADER_LEN + 20) as u64;
    let byte = disk.bytes(&damaged).unwrap()[at as usize];
    disk.corrupt(&damaged, at, &[byte ^ 0x40]);
    m.checkpoint(&w).unwrap().expect("a second checkpoint");
    assert_eq!(m.checkpoints_from_memory(), 1);
    assert_newest_holds_the_writers_state(&disk, &m, &w);
    w.close();
}

#[test]
fn a_checkpoint_taken_from_a_snapshot_reads_nothing_unless_it_would_copy_too_many_entries() {
    // Five dead letters and a retried event: a snapshot copies six entries.
    for (most, from_snapshot) in [(6, true), (5, false), (usize::MAX, true)] {
        let config = MaintenanceConfig {
            snapshot_at_most: most,
            ..maint_config()
        };
        let (disk, mut m, w) = sim_log(12, config);
        let seqs = append(&w, 20);
        for &seq in &seqs[..5] {
            dies(&w, seq);
        }
        let retry = Record::Retry {
            route: 0,
            seq: seqs[7],
            due_ms: 9_000,
            attempts: 1,
            error: "503",
        };
        one(&w, retry);
        assert_eq!(w.with_state(State::snapshot_cost), 6);
        let read = checkpoint_reading(&disk, &mut m, &w);
        assert_eq!(
            read == 0,
            from_snapshot,
            "at most {most}: read {read} bytes"
        );
        assert_newest_holds_the_writers_state(&disk, &m, &w);
        w.close();
    }
}

#[test]
fn a_checkpoint_rebuilt_from_the_log_reads_of_the_writers_segment_only_what_it_wrote() {
    const LARGE: u64 = 4 << 20;
    let disk = SimDisk::new(11);
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let recovered = recover(&disk).unwrap();
    let mut m = Maintenance::new(
        storage.clone(),
        recovered.checkpoint,
        MaintenanceConfig {
            snapshot_at_most: 0,
            ..MaintenanceConfig::for_segments(LARGE)
        },
    );
    let large = WriterConfig {
        segment_size: LARGE,
        ..config()
    };
    let w = Writer::start(storage, recovered, large).unwrap();
    for _ in 0..3 {
        append(&w, 5);
        let read = checkpoint_reading(&disk, &mut m, &w);
        // Its own checkpoint (the first time none) and five groups of the 4 MiB segment.
        assert!(read < 16 << 10, "a checkpoint read {read} bytes");
    }
    assert_eq!(m.checkpoints_from_memory(), 0);
    assert_newest_holds_the_writers_state(&disk, &m, &w);
    w.close();
}

#[test]
fn dead_letters_pinning_old_segments_are_copied_forward_and_read_back_after_a_restart() {
    let (disk, mut m, w) = sim_log(3, maint_config());
    let seqs = append(&w, 240);
    // Every 40th event dies; the rest are delivered; then the ids expire.
    let dead = every_fortieth_dies(&w, &seqs);
    one(
        &w,
        Record::ExpireIds {
            before_ms: u64::MAX,
            limit: 1000,
        },
    );
    let mut copied = 0;
    for _ in 0..4 {
        copied += m.step(&w).unwrap().copied;
    }
    assert!(copied >= dead.len(), "{copied} copied");
    let files = segment_files(&disk);
    assert!(files.len() <= 5, "{files:?}");
    // Each dead letter reads back from its new place, body and all, after a crash too.
    let after = disk.crash();
    drop(w);
    let r = recover(&after).unwrap();
    let q = r.state.route(0).unwrap();
    assert_eq!(
        q.dead().map(|(seq, _)| seq).collect::<Vec<_>>(),
        dead.iter().map(|d| d.1).collect::<Vec<_>>()
    );
    for (i, seq) in dead {
        let meta = r.state.event(seq).unwrap();
        assert!(files.contains(&meta.location().segment));
        let bytes = read_record(&after, &meta.location()).unwrap();
        let Ok(Record::Event(e)) = Record::decode(&bytes) else {
            panic!("event {seq} does not read back");
        };
        assert_eq!(e.body, &body(i)[..], "event {seq}");
    }
}

/// A needed event that no valid group of its segment holds any more (a flipped byte in
/// its group) is refused when compaction comes to copy it forward, naming the segment,
/// the event and where it was: never skipped as if it were not needed.
#[test]
fn a_needed_event_whose_group_was_damaged_is_refused_when_it_would_be_copied() {
    let (disk, mut m, w) = sim_log(6, maint_config());
    let seqs = append(&w, 240);
    let (_, first_dead) = every_fortieth_dies(&w, &seqs)[0];
    let at = w.with_state(|s| s.event(first_dead).unwrap().location());
    let name = segment::segment_name(at.segment);
    disk.corrupt(&name, at.offset + 8, &[0xA5; 4]);
    let refused = (0..6).find_map(|_| m.step(&w).err());
    match refused {
        Some(LogError::Corrupt { file, offset, why }) => {
            assert_eq!(file, name);
            assert_eq!(offset, at.offset);
            assert_eq!(why, CorruptWhy::EventMissing { seq: first_dead });
        }
        other => panic!("not refused as damage: {other:?}"),
    }
    // Nothing was copied from the damaged segment's groups after the bad one.
    assert_eq!(
        w.with_state(|s| s.event(first_dead).unwrap().location()),
        at,
        "the event still names its place"
    );
}

#[test]
fn stopping_the_maintenance_thread_wakes_it_instead_of_waiting_out_its_interval() {
    let config = MaintenanceConfig {
        interval: Duration::from_secs(3600),
        ..maint_config()
    };
    let (_disk, m, w) = sim_log(5, config);
    let w = Arc::new(w);
    let mut handle = m.spawn(w.clone()).unwrap();
    let started = std::time::Instant::now();
    handle.stop();
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn an_event_kept_only_for_its_id_is_copied_without_its_body() {
    let (disk, mut m, w) = sim_log(4, maint_config());
    let seqs = append(&w, 40);
    for &seq in &seqs {
        one(&w, Record::Delivered { route: 0, seq });
    }
    for _ in 0..4 {
        m.step(&w).unwrap();
    }
    let first = seqs[0];
    let hit = w.with_state(|s| s.dedup_candidate("id-0")).unwrap();
    assert_eq!(hit.seq, first);
    let bytes = read_record(&disk, &hit.location).unwrap();
    let Ok(Record::Event(e)) = Record::decode(&bytes) else {
        panic!("the id does not read back");
    };
    assert_eq!((e.webhook_id, e.body), (Some("id-0"), &b""[..]));
    assert!(hit.location.segment > 1, "moved from the first segment");
}
