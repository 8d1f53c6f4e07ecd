use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::super::compaction::{Maintenance, MaintenanceConfig};
use super::super::record::EventRecord;
use super::super::segment::{segment_name, GROUP_HEADER_LEN};
use super::super::storage::{Fault, FaultOp, SegmentFile, SimDisk};
use super::super::writer::{Writer, WriterConfig};
use super::*;

const SEGMENT: u64 = 1024;

fn config() -> WriterConfig {
    WriterConfig {
        segment_size: SEGMENT,
        prepared_ahead: 1,
        enqueue_timeout: Duration::from_secs(5),
        rotate_timeout: Duration::from_secs(5),
        barrier_timeout: Duration::from_secs(5),
        prepare_retry: Duration::from_millis(1),
    }
}

/// A log of `n` events of 200 bytes each, one group each, on route 0: about four per
/// 1 KiB segment. Returns the disk as a clean shutdown leaves it.
fn log_of(n: usize) -> SimDisk {
    let disk = SimDisk::new(9);
    let w = Writer::start(Arc::new(disk.clone()), recover(&disk).unwrap(), config()).unwrap();
    append(&w, n);
    w.close();
    disk
}

fn pending(r: &Recovered) -> usize {
    r.state.route(0).map_or(0, |q| q.pending_len())
}

fn corrupt_at(result: Result<Recovered, LogError>) -> (String, u64, CorruptWhy) {
    match result {
        Err(LogError::Corrupt { file, offset, why }) => (file, offset, why),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn an_empty_directory_opens_as_an_empty_log() {
    let r = recover(&SimDisk::new(1)).unwrap();
    assert_eq!(
        (r.next_lsn, r.next_segment, r.state.live_events()),
        (1, 1, 0)
    );
}

#[test]
fn every_acknowledged_event_is_back_after_a_clean_shutdown() {
    let disk = log_of(20);
    let r = recover(&disk).unwrap();
    assert_eq!(pending(&r), 20);
    assert_eq!(r.next_lsn, 21);
    assert_eq!(r.report.torn, None);
    assert!(r.report.segments >= 5);
}

#[test]
fn a_byte_flipped_in_a_sealed_segment_is_refused_naming_the_file_and_offset() {
    let disk = log_of(20);
    let name = segment_name(1);
    let at = (SEGMENT_HEADER_LEN + GROUP_HEADER_LEN + 30) as u64;
    let byte = disk.bytes(&name).unwrap()[at as usize];
    disk.corrupt(&name, at, &[byte ^ 0x01]);
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!(file, name);
    assert_eq!(
        offset, SEGMENT_HEADER_LEN as u64,
        "the group that holds the byte"
    );
    assert_eq!(why, CorruptWhy::Frame(BadFrame::Checksum));
    // The operator's message names both.
    let message = recover(&disk).unwrap_err().to_string();
    assert!(
        message.contains(&name) && message.contains("at byte 40"),
        "{message}"
    );
}

/// `disk`, whose file `name` claims to be 5 GiB long.
struct Oversized {
    disk: SimDisk,
    name: String,
}

struct Claims5GiB(Arc<dyn SegmentFile>);

impl SegmentFile for Claims5GiB {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(5 << 30)
    }
    fn zero_fill(&self, len: u64) -> io::Result<()> {
        self.0.zero_fill(len)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
}

impl Storage for Oversized {
    fn create(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        self.disk.create(name)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn SegmentFile>> {
        let file = self.disk.open(name)?;
        Ok(if name == self.name {
            Arc::new(Claims5GiB(file))
        } else {
            file
        })
    }
    fn list(&self) -> io::Result<Vec<String>> {
        self.disk.list()
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.disk.rename(from, to)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.disk.remove(name)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.disk.sync_dir()
    }
}

#[test]
fn a_segment_file_larger_than_hookfan_writes_is_refused_not_read() {
    let disk = log_of(20);
    let name = segment_name(2);
    let oversized = Oversized {
        disk,
        name: name.clone(),
    };
    let (file, offset, why) = corrupt_at(recover(&oversized));
    assert_eq!((file, offset), (name, 0));
    assert_eq!(why, CorruptWhy::Oversized(5 << 30));
}

#[test]
fn a_byte_flipped_in_a_sealed_segments_header_is_refused() {
    let disk = log_of(20);
    let name = segment_name(2);
    disk.corrupt(&name, 17, &[0xee]);
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!((file, offset), (name, 0));
    assert_eq!(why, CorruptWhy::Frame(BadFrame::Checksum));
}

#[test]
fn a_bad_group_in_the_newest_segment_with_a_valid_one_after_it_is_corruption_not_a_tear() {
    let disk = log_of(20);
    let newest = segment::indexes(&disk.list().unwrap())
        .into_iter()
        .filter(|&i| {
            !disk
                .bytes(&segment_name(i))
                .unwrap()
                .iter()
                .all(|&b| b == 0)
        })
        .max()
        .unwrap();
    let name = segment_name(newest);
    let bytes = disk.bytes(&name).unwrap();
    let SegmentScan::Used { groups, .. } = segment::scan(&bytes, newest) else {
        panic!("used");
    };
    assert!(groups.len() >= 2, "the newest segment holds two groups");
    let at = groups[0].offset + GROUP_HEADER_LEN as u64 + 10;
    disk.corrupt(&name, at, &[bytes[at as usize] ^ 0x80]);
    let (file, offset, _) = corrupt_at(recover(&disk));
    assert_eq!((file, offset), (name, groups[0].offset));
}

#[test]
fn a_torn_last_group_is_cut_and_counted_and_stays_cut_after_more_writes() {
    let disk = log_of(6);
    // Tear the newest segment's last group: keep its first 50 bytes.
    let r = recover(&disk).unwrap();
    let newest = r.next_segment - 1;
    let name = segment_name(newest);
    let bytes = disk.bytes(&name).unwrap();
    let SegmentScan::Used { groups, .. } = segment::scan(&bytes, newest) else {
        panic!("used");
    };
    let last = groups.last().unwrap();
    let tail = last.offset + 50;
    disk.corrupt(&name, tail, &vec![0; last.header.frame_len() - 50]);
    let r = recover(&disk).unwrap();
    assert_eq!(pending(&r), 5);
    assert_eq!(
        r.report.torn,
        Some((name.clone(), last.offset, BadFrame::Checksum))
    );

    // Writing goes on in a new segment; the cut tail is now in a sealed one.
    let w = Writer::start(Arc::new(disk.clone()), r, config()).unwrap();
    w.wait(&w.submit(&[Record::Delivered { route: 0, seq: 1 }]).unwrap())
        .unwrap();
    w.close();
    let r = recover(&disk).unwrap();
    assert_eq!(pending(&r), 4);
    assert_eq!(r.report.torn, None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Every byte of a sealed segment counts: header, records, padding, the zeros after.
    #[test]
    fn a_byte_changed_anywhere_in_a_sealed_segment_is_refused_naming_that_segment(
        segment_pick in 0usize..100,
        offset in 0u64..SEGMENT,
        xor in 1u8..=255,
    ) {
        let disk = log_of(20);
        let newest = recover(&disk).unwrap().next_segment - 1;
        // Sealed: every segment before the newest.
        let index = 1 + (segment_pick as u64 % (newest - 1));
        let name = segment_name(index);
        let byte = disk.bytes(&name).unwrap()[offset as usize];
        disk.corrupt(&name, offset, &[byte ^ xor]);
        match recover(&disk) {
            Err(LogError::Corrupt { file, offset: at, .. }) => {
                proptest::prop_assert_eq!(&file, &name);
                proptest::prop_assert!(at <= offset, "names {} for a change at {}", at, offset);
            }
            other => proptest::prop_assert!(false, "{:?}", other.map(|r| r.report)),
        }
    }
}

#[test]
fn segments_whose_header_never_landed_after_the_newest_valid_one_are_a_torn_tail() {
    // A group failed in a fresh segment (nothing of it landed), then the barrier in the
    // next one was cut by the crash: a zeroed segment, then a torn header.
    let disk = log_of(6);
    let next = recover(&disk).unwrap().next_segment;
    for (index, bytes) in [(next, vec![0u8; 64]), (next + 1, b"HFSG\x01\x01".to_vec())] {
        let name = segment_name(index);
        // In place of the spare the last run prepared, if any.
        let _ = disk.remove(&name);
        let f = disk.create(&name).unwrap();
        f.zero_fill(SEGMENT).unwrap();
        f.write_at(&bytes, 0).unwrap();
        f.sync_data().unwrap();
    }
    disk.sync_dir().unwrap();
    let r = recover(&disk).unwrap();
    assert_eq!(pending(&r), 6);
    assert_eq!(
        r.report.torn,
        Some((segment_name(next), 0, BadFrame::Zeros))
    );
    // The writer goes on after them, and the next recovery accepts them before it.
    let w = Writer::start(Arc::new(disk.clone()), r, config()).unwrap();
    w.wait(&w.submit(&[Record::Delivered { route: 0, seq: 1 }]).unwrap())
        .unwrap();
    w.close();
    let r = recover(&disk).unwrap();
    assert_eq!((pending(&r), r.report.torn), (5, None));
}

#[test]
fn an_empty_segment_file_after_the_newest_valid_one_is_a_torn_tail_and_the_log_goes_on() {
    // A file of 0 bytes in the place of the next segment (its zeros and header never
    // reached the disk): nothing acknowledged can be in it.
    let disk = log_of(6);
    let next = recover(&disk).unwrap().next_segment;
    let name = segment_name(next);
    let _ = disk.remove(&name);
    disk.create(&name).unwrap().sync_data().unwrap();
    disk.sync_dir().unwrap();
    let r = recover(&disk).unwrap();
    assert_eq!(pending(&r), 6);
    let w = Writer::start(Arc::new(disk.clone()), r, config()).unwrap();
    w.wait(&w.submit(&[Record::Delivered { route: 0, seq: 1 }]).unwrap())
        .unwrap();
    w.close();
    assert_eq!(pending(&recover(&disk).unwrap()), 5);
}

#[test]
fn a_sealed_segment_emptied_to_0_bytes_is_refused_naming_it() {
    let disk = log_of(20);
    let name = segment_name(2);
    disk.remove(&name).unwrap();
    disk.create(&name).unwrap().sync_data().unwrap();
    disk.sync_dir().unwrap();
    assert_eq!(
        corrupt_at(recover(&disk)),
        (name, 0, CorruptWhy::Frame(BadFrame::Zeros))
    );
}

#[test]
fn a_newest_segment_whose_header_is_gone_but_holds_acknowledged_groups_is_refused() {
    let disk = log_of(20);
    let newest = recover(&disk).unwrap().next_segment - 1;
    let name = segment_name(newest);
    disk.corrupt(&name, 0, &[0; SEGMENT_HEADER_LEN]);
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!(
        (file, offset, why),
        (name, 0, CorruptWhy::Frame(BadFrame::Zeros))
    );
}

#[test]
fn a_missing_sealed_segment_is_refused_as_missing_records() {
    let disk = log_of(20);
    disk.remove(&segment_name(2)).unwrap();
    let (file, _, why) = corrupt_at(recover(&disk));
    assert_eq!(file, segment_name(1));
    assert!(matches!(why, CorruptWhy::Missing { .. }), "{why:?}");
}

#[test]
fn half_prepared_and_spare_segments_are_removed_at_open() {
    let disk = log_of(3);
    disk.create("00000000000000000099.seg.tmp").unwrap();
    disk.sync_dir().unwrap();
    let r = recover(&disk).unwrap();
    assert!(r.report.removed >= 1);
    let names = disk.list().unwrap();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(pending(&r), 3);
}

/// A spare is told from a segment whose header is gone by a byte anywhere in it, read a
/// window at a time.
#[test]
fn a_file_is_all_zeros_only_if_no_byte_in_any_window_is_set() {
    const MIB: u64 = 1 << 20;
    let disk = SimDisk::new(5);
    let f = disk.create("spare").unwrap();
    f.zero_fill(3 * MIB + 100).unwrap();
    assert!(all_zeros(&disk, "spare").unwrap());
    for at in [0, MIB - 1, MIB, 2 * MIB + 7, 3 * MIB + 99] {
        f.write_at(&[1], at).unwrap();
        assert!(!all_zeros(&disk, "spare").unwrap(), "a byte set at {at}");
        f.write_at(&[0], at).unwrap();
    }
    assert!(all_zeros(&disk, "spare").unwrap());
    let empty = disk.create("empty").unwrap();
    empty.zero_fill(0).unwrap();
    assert!(all_zeros(&disk, "empty").unwrap());
}

/// The spares are checked beside the checkpoint's decoding: the newest segments, back to
/// the first that is not all zeros (a zeroed header over a byte written is not a spare).
#[test]
fn the_zero_check_ahead_takes_the_newest_all_zero_segments_and_stops_at_the_first_other() {
    let disk = log_of(3);
    let used = disk.list().unwrap().len() as u64;
    for index in [50, 51, 52, 53] {
        let f = disk.create(&segment::segment_name(index)).unwrap();
        f.zero_fill(4096).unwrap();
    }
    // 51: its header never landed, but a later byte did.
    disk.open(&segment::segment_name(51))
        .unwrap()
        .write_at(&[9], 100)
        .unwrap();
    let indexes = segment::indexes(&disk.list().unwrap());
    assert!(used >= 1 && indexes.len() as u64 == used + 4);
    assert_eq!(trailing_zeros(&disk, &indexes), vec![53, 52]);
    // Without 52 and 53, the newest is 51: nothing is taken, 50 behind it neither.
    assert_eq!(
        trailing_zeros(&disk, &indexes[..indexes.len() - 2]),
        Vec::<u64>::new()
    );
}

/// A restart writes first into the segment the last run prepared and never used, rather
/// than preparing one again before its first write; spares it does not need (more than
/// it keeps prepared, or of another size) are removed.
#[test]
fn a_restart_writes_into_the_spare_the_last_run_prepared_and_removes_the_others() {
    let disk = log_of(3);
    let r = recover(&disk).unwrap();
    let next = r.next_segment;
    for s in &r.spares {
        disk.remove(&segment_name(*s)).unwrap();
    }
    // Two in order (the writer keeps one prepared), then one of another size.
    for (index, size) in [
        (next, SEGMENT),
        (next + 1, SEGMENT),
        (next + 2, SEGMENT / 2),
    ] {
        let f = disk.create(&segment_name(index)).unwrap();
        f.zero_fill(size).unwrap();
        f.sync_data().unwrap();
    }
    disk.sync_dir().unwrap();
    let r = recover(&disk).unwrap();
    assert_eq!(r.spares, vec![next, next + 1, next + 2]);

    // No segment can be prepared meanwhile: the first write goes to the spare, or fails.
    disk.inject(FaultOp::Create, Fault::Io);
    let config = WriterConfig {
        rotate_timeout: Duration::from_millis(300),
        prepare_retry: Duration::from_secs(10),
        ..config()
    };
    let w = Writer::start(Arc::new(disk.clone()), r, config).unwrap();
    let names = disk.list().unwrap();
    assert!(names.contains(&segment_name(next)), "{names:?}");
    assert!(!names.contains(&segment_name(next + 1)), "{names:?}");
    assert!(!names.contains(&segment_name(next + 2)), "{names:?}");
    let seqs = append(&w, 1);
    w.close();
    let r = recover(&disk).unwrap();
    assert_eq!(r.state.event(seqs[0]).unwrap().location().segment, next);
    assert_eq!(pending(&r), 4);
}

/// A spare whose rename the last run never made durable (it was killed between the rename
/// and the directory sync) is still a file a new run can see: what the writer acknowledges
/// in it must survive a power cut, so its name is made durable before the first write.
#[test]
fn a_spare_whose_name_was_not_yet_durable_keeps_what_is_acknowledged_in_it() {
    let disk = log_of(3);
    let r = recover(&disk).unwrap();
    let next = r.next_segment;
    for s in &r.spares {
        disk.remove(&segment_name(*s)).unwrap();
    }
    disk.sync_dir().unwrap();
    // Prepared as the preparer does, up to the rename: no directory sync after it.
    let tmp = format!("{}.tmp", segment_name(next));
    let f = disk.create(&tmp).unwrap();
    f.zero_fill(SEGMENT).unwrap();
    f.sync_data().unwrap();
    disk.sync_dir().unwrap();
    disk.rename(&tmp, &segment_name(next)).unwrap();

    // The next run (the same disk: a kill keeps the page cache) takes it and writes to it;
    // its preparer cannot make the next one (whose directory sync would hide the point).
    let r = recover(&disk).unwrap();
    assert_eq!(r.spares, vec![next]);
    disk.inject(FaultOp::Create, Fault::Io);
    let config = WriterConfig {
        prepare_retry: Duration::from_secs(10),
        ..config()
    };
    let w = Writer::start(Arc::new(disk.clone()), r, config).unwrap();
    let seqs = append(&w, 1);
    assert_eq!(
        w.with_state(|s| s.event(seqs[0]).unwrap().location().segment),
        next
    );

    // The power goes: the acknowledged event is there after it.
    let after = disk.crash();
    drop(w);
    let r = recover(&after).unwrap();
    assert_eq!(pending(&r), 4);
    assert!(
        r.state.event(seqs[0]).is_some(),
        "the acknowledged event survives"
    );
}

/// A writer with maintenance on `disk`, from what recovery finds.
fn open(disk: &SimDisk) -> (Writer, Maintenance) {
    let r = recover(disk).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let m = Maintenance::new(
        storage.clone(),
        r.checkpoint,
        MaintenanceConfig::for_segments(SEGMENT),
    );
    (Writer::start(storage, r, config()).unwrap(), m)
}

fn append(w: &Writer, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let id = format!("id-{i}");
            let body = vec![b'x'; 200];
            let record = Record::Event(EventRecord {
                webhook_id: Some(&id),
                received_at_ms: 1,
                api_key: None,
                signature: "sig",
                event_type: None,
                path: None,
                trace: None,
                body: &body,
                routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
            });
            let t = w.submit(&[record]).unwrap();
            w.wait(&t).unwrap();
            t.first_lsn
        })
        .collect()
}

fn deliver(w: &Writer, seq: u64) {
    w.wait(&w.submit(&[Record::Delivered { route: 0, seq }]).unwrap())
        .unwrap();
}

fn pending_seqs(r: &Recovered) -> Vec<u64> {
    r.state
        .route(0)
        .map_or(vec![], |q| q.pending().map(|p| p.1).collect())
}

fn checkpoints(disk: &SimDisk) -> Vec<String> {
    let mut names: Vec<String> = disk
        .list()
        .unwrap()
        .into_iter()
        .filter(|n| checkpoint::checkpoint_lsn(n).is_some())
        .collect();
    names.sort();
    names
}

#[test]
fn a_restart_replays_only_the_log_after_the_checkpoint() {
    let disk = SimDisk::new(21);
    let (w, mut m) = open(&disk);
    let seqs = append(&w, 20);
    let at = m.checkpoint(&w).unwrap().unwrap();
    for &seq in &seqs[..3] {
        deliver(&w, seq);
    }
    w.close();
    let r = recover(&disk).unwrap();
    assert_eq!(
        r.report.checkpoint,
        Some(checkpoint::checkpoint_name(at.lsn))
    );
    assert_eq!(r.report.records, 3, "only the deliveries after it");
    assert_eq!(pending_seqs(&r), seqs[3..].to_vec());
    assert_eq!(r.state.dedup_candidate("id-7").unwrap().seq, seqs[7]);
    // The same state as the whole log gives.
    disk.remove(&checkpoint::checkpoint_name(at.lsn)).unwrap();
    let whole = recover(&disk).unwrap();
    assert_eq!(whole.report.checkpoint, None);
    assert_eq!(pending_seqs(&whole), pending_seqs(&r));
    assert_eq!(whole.next_lsn, r.next_lsn);
}

/// A log whose early segments compaction deleted: 40 events, all but the last two
/// delivered, maintenance rounds until two checkpoints stand and segments went.
fn compacted() -> (SimDisk, Vec<u64>) {
    let disk = SimDisk::new(22);
    let (w, mut m) = open(&disk);
    let seqs = append(&w, 40);
    for &seq in &seqs[..38] {
        deliver(&w, seq);
    }
    w.wait(
        &w.submit(&[Record::ExpireIds {
            before_ms: u64::MAX,
            limit: 100,
        }])
        .unwrap(),
    )
    .unwrap();
    let mut deleted = 0;
    for _ in 0..4 {
        deleted += m.step(&w).unwrap().deleted;
    }
    assert!(deleted > 5, "{deleted} segments deleted");
    assert!(disk.open(&segment_name(1)).is_err());
    w.close();
    (disk, seqs)
}

#[test]
fn a_damaged_newest_checkpoint_is_passed_over_when_the_older_one_and_the_log_cover_it() {
    let (disk, seqs) = compacted();
    let names = checkpoints(&disk);
    assert_eq!(names.len(), 2);
    let newest = names[1].clone();
    // Flipped, not overwritten: the body holds random fingerprint keys, so a fixed value
    // is already there one time in 256.
    let byte = disk.bytes(&newest).unwrap()[60];
    disk.corrupt(&newest, 60, &[byte ^ 0xff]);
    let r = recover(&disk).unwrap();
    assert_eq!(r.report.checkpoint.as_ref(), Some(&names[0]));
    assert_eq!(
        r.report.damaged_checkpoints,
        vec![(newest, 40, BadCheckpoint::Checksum)]
    );
    assert_eq!(pending_seqs(&r), seqs[38..].to_vec());
}

#[test]
fn a_damaged_checkpoint_is_refused_naming_it_when_the_log_it_covered_is_gone() {
    let (disk, _) = compacted();
    let names = checkpoints(&disk);
    for name in &names {
        let byte = disk.bytes(name).unwrap()[60];
        disk.corrupt(name, 60, &[byte ^ 0xff]);
    }
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!((file, offset), (names[1].clone(), 40));
    assert_eq!(why, CorruptWhy::Checkpoint(BadCheckpoint::Checksum));
    let message = recover(&disk).unwrap_err().to_string();
    assert!(
        message.contains(&names[1]) && message.contains("at byte 40"),
        "{message}"
    );
}

#[test]
fn a_needed_event_in_a_segment_before_the_checkpoint_must_still_be_there_intact() {
    let disk = SimDisk::new(23);
    let (w, mut m) = open(&disk);
    let seqs = append(&w, 30);
    // The first event stays pending; the rest are delivered; replay starts well after it.
    for &seq in &seqs[1..] {
        deliver(&w, seq);
    }
    for _ in 0..3 {
        m.step(&w).unwrap();
    }
    w.close();
    let r = recover(&disk).unwrap();
    let location = r.state.event(seqs[0]).unwrap().location();
    assert_eq!(location.segment, 1);
    assert!(
        r.checkpoint.unwrap().segment > 1,
        "segment 1 is not replayed"
    );
    assert_eq!(pending_seqs(&r), vec![seqs[0]]);

    // A byte of its record flipped: its group no longer checks.
    let name = segment_name(1);
    let byte = disk.bytes(&name).unwrap()[location.offset as usize + 10];
    disk.corrupt(&name, location.offset + 10, &[byte ^ 1]);
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!((file.as_str(), offset), (name.as_str(), location.offset));
    assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });

    // Its segment gone.
    disk.remove(&name).unwrap();
    let (file, _, why) = corrupt_at(recover(&disk));
    assert_eq!(file, name);
    assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });
}

/// The old segments are checked against the checkpoint's events while the log is
/// replayed; what the log delivered since is not needed, and damage there is no refusal.
#[test]
fn damage_in_an_old_segment_where_only_events_delivered_since_the_checkpoint_lived_is_no_refusal() {
    let disk = SimDisk::new(24);
    let (w, mut m) = open(&disk);
    let seqs = append(&w, 30);
    for &seq in &seqs[2..] {
        deliver(&w, seq);
    }
    for _ in 0..3 {
        m.step(&w).unwrap();
    }
    // Pending at the checkpoint, delivered after it, and its id forgotten (with every
    // other one): only the event still pending is needed.
    deliver(&w, seqs[1]);
    w.wait(
        &w.submit(&[Record::ExpireIds {
            before_ms: u64::MAX,
            limit: 100,
        }])
        .unwrap(),
    )
    .unwrap();
    w.close();
    let r = recover(&disk).unwrap();
    assert!(
        r.checkpoint.unwrap().segment > 1,
        "segment 1 is not replayed"
    );
    let location = |seq| r.state.event(seq).map(|m| m.location());
    assert_eq!(location(seqs[0]).unwrap().segment, 1);
    assert_eq!(
        location(seqs[1]),
        None,
        "delivered and forgotten: not needed"
    );
    assert_eq!(pending_seqs(&r), vec![seqs[0]]);

    // The record of the event delivered since, after the one still needed, damaged.
    let name = segment_name(1);
    let offset = disk
        .bytes(&name)
        .unwrap()
        .windows(b"id-1".len() + 1)
        .position(|w| w[..4] == *b"id-1" && !w[4].is_ascii_digit())
        .expect("the record of id-1") as u64;
    assert!(offset > location(seqs[0]).unwrap().offset);
    disk.corrupt(&name, offset, b"XX");
    let r = recover(&disk).unwrap();
    assert_eq!(pending_seqs(&r), vec![seqs[0]]);

    // Damage in the one still needed is refused as before.
    let at = r.state.event(seqs[0]).unwrap().location().offset;
    disk.corrupt(&name, at + 10, b"XX");
    let (file, offset, why) = corrupt_at(recover(&disk));
    assert_eq!((file.as_str(), offset), (name.as_str(), at));
    assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[0] });
}
