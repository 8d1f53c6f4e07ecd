use super::super::compaction::{Maintenance, MaintenanceConfig};
use super::super::segment::{encode_segment_header, test_group as group};
use super::super::{CorruptWhy, LogError};
use super::salvage::find_groups;
use super::*;

/// Segment 1 of 1 KiB: its header, the groups, zeros.
fn segment_of(groups: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = encode_segment_header(&SegmentHeader {
        index: 1,
        flags: 0,
        start_lsn: 1,
        void_from: 1,
    })
    .to_vec();
    for g in groups {
        bytes.extend_from_slice(g);
    }
    bytes.resize(1024, 0);
    bytes
}

#[test]
fn a_damaged_group_is_skipped_and_the_scan_resynchronises_on_the_next_valid_one() {
    let groups = [
        group(1, 1, &[b"a"]),
        group(1, 2, &[b"bbbbbbbbbbbbbbbbbbbbbbbb"]),
        group(1, 3, &[b"c"]),
    ];
    let mut bytes = segment_of(&groups);
    let second = SEGMENT_HEADER_LEN + groups[0].len();
    bytes[second + GROUP_HEADER_LEN + 10] ^= 0x04;
    let found = find_groups(&bytes, 1);
    let third = second + groups[1].len();
    assert_eq!(found.groups, vec![SEGMENT_HEADER_LEN as u64, third as u64]);
    assert_eq!(
        found.damaged,
        vec![(second as u64, groups[1].len() as u64, BadFrame::Checksum)]
    );
}

#[test]
fn damage_with_nothing_valid_after_it_ends_at_the_last_written_byte() {
    let groups = [
        group(1, 1, &[b"a"]),
        group(1, 2, &[b"bbbbbbbbbbbbbbbbbbbbbbbbbbbb"]),
    ];
    let mut bytes = segment_of(&groups);
    let second = SEGMENT_HEADER_LEN + groups[0].len();
    bytes[second + 3] ^= 0x01; // its magic
    let found = find_groups(&bytes, 1);
    assert_eq!(found.groups, vec![SEGMENT_HEADER_LEN as u64]);
    assert_eq!(
        found.damaged,
        vec![(second as u64, groups[1].len() as u64, BadFrame::Magic)]
    );
    // A damaged segment header costs its 40 bytes, not the groups after it.
    bytes[20] ^= 0x01;
    let found = find_groups(&bytes, 1);
    assert_eq!(found.header, None);
    assert_eq!(found.groups.len(), 1);
    assert_eq!(
        found.damaged[0],
        (0, SEGMENT_HEADER_LEN as u64, BadFrame::Checksum)
    );
}

#[test]
fn an_event_that_filled_its_group_is_written_again_with_its_dead_letter_record_apart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join(DIR_NAME);
    let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(&dir).unwrap());
    let config = WriterConfig {
        segment_size: 1024,
        prepared_ahead: 1,
        ..WriterConfig::default()
    };
    let w = Writer::start(storage.clone(), recover(&*storage).unwrap(), config.clone()).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    // The largest body a group takes.
    let seq = (0..1024usize)
        .rev()
        .find_map(|len| {
            let body = vec![b'x'; len];
            let record = Record::Event(EventRecord {
                webhook_id: Some("big"),
                received_at_ms: 1,
                api_key: None,
                signature: "sig",
                event_type: None,
                path: None,
                trace: None,
                body: &body,
                routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
            });
            let t = w.submit(&[record]).ok()?;
            w.wait(&t).unwrap();
            Some(t.first_lsn)
        })
        .unwrap();
    let dead = Record::Dead {
        route: 0,
        seq,
        attempts: 3,
        error: "400 Bad Request: the handler refused it",
        dead_at_ms: 5,
    };
    w.wait(&w.submit(&[dead]).unwrap()).unwrap();
    w.close();

    let repaired = repair(data.path(), config).unwrap();
    assert!(repaired.salvage.is_clean(), "{}", repaired.report);
    assert_eq!(repaired.kept.routes["r"].dead, 1);
    let r = recover(&ReadOnlyDir::new(&dir)).unwrap();
    let q = r.state.route(0).unwrap();
    let (_, entry) = q.dead().next().unwrap();
    assert_eq!(
        (entry.attempts, &*entry.error),
        (3, "400 Bad Request: the handler refused it")
    );
}

#[test]
fn an_event_the_checkpoint_holds_whose_record_is_damaged_is_named_lost_and_the_rest_kept() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join(DIR_NAME);
    let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(&dir).unwrap());
    let r = recover(&*storage).unwrap();
    let mut m = Maintenance::new(
        storage.clone(),
        r.checkpoint,
        MaintenanceConfig::for_segments(1024),
    );
    let config = WriterConfig {
        segment_size: 1024,
        prepared_ahead: 1,
        ..WriterConfig::default()
    };
    let w = Writer::start(storage.clone(), r, config.clone()).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    let mut seqs = Vec::new();
    for i in 0..10 {
        let id = format!("id-{i}");
        let body = vec![b'x'; 200];
        let record = Record::Event(EventRecord {
            webhook_id: Some(&id),
            received_at_ms: 1,
            api_key: None,
            signature: "sig",
            event_type: Some("message.new"),
            path: None,
            trace: None,
            body: &body,
            routes: vec![crate::spool::record::RouteDue::new(0, 1)].into(),
        });
        let t = w.submit(&[record]).unwrap();
        w.wait(&t).unwrap();
        seqs.push(t.first_lsn);
    }
    m.checkpoint(&w).unwrap().unwrap();
    w.close();
    drop(m);

    // Event id-3's record, in a segment before the checkpoint's: not replayed, but
    // still needed.
    let location = recover(&*storage)
        .unwrap()
        .state
        .event(seqs[3])
        .unwrap()
        .location();
    let name = segment::segment_name(location.segment);
    let path = dir.join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(location.offset + u64::from(location.len)) as usize - 3] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let Err(LogError::Corrupt { why, .. }) = recover(&ReadOnlyDir::new(&dir)) else {
        panic!("refused");
    };
    assert_eq!(why, CorruptWhy::EventMissing { seq: seqs[3] });

    let repaired = repair(data.path(), config).unwrap();
    let lost = &repaired.salvage.lost_events;
    assert_eq!(lost.len(), 1, "{}", repaired.report);
    assert_eq!(lost[0].seq, seqs[3]);
    assert_eq!(lost[0].webhook_id.as_deref(), Some("id-3"));
    assert_eq!(lost[0].routes, ["r (pending)"]);
    assert!(
        repaired.salvage.lost_lsns.is_empty(),
        "the checkpoint covers them"
    );
    assert!(
        repaired.report.contains("webhook id id-3 on [r (pending)]"),
        "{}",
        repaired.report
    );
    assert_eq!(repaired.kept.routes["r"].pending, 9);
    let r = recover(&ReadOnlyDir::new(&dir)).unwrap();
    assert!(r.state.dedup_candidate("id-4").is_some());
    assert_eq!(r.state.route_name(0), Some("r"));
}
