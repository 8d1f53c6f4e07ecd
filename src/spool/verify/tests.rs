use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::super::checkpoint::{checkpoint_lsn, checkpoint_name};
use super::super::compaction::{Maintenance, MaintenanceConfig};
use super::super::facade::{LogSpool, LogSpoolConfig, DIR_NAME};
use super::super::record::{EventRecord, Record};
use super::super::repair::{
    finish_interrupted, repair, RepairError, COMPLETE_MARKER, REPAIR_DIR_NAME,
};
use super::super::segment::{self, segment_name, SegmentScan, GROUP_HEADER_LEN};
use super::super::storage::{RealDisk, Storage};
use super::super::writer::{Writer, WriterConfig};
use super::super::{recover, CorruptWhy, LogError};
use super::*;
use crate::spool::{now_ms, AppendOutcome, Completion, SpoolError, StoredEvent};

const SEGMENT: u64 = 2048;

fn writer_config() -> WriterConfig {
    WriterConfig {
        segment_size: SEGMENT,
        prepared_ahead: 1,
        ..WriterConfig::default()
    }
}

/// Small segments; maintenance never runs during a test (its first round is an hour away).
fn quiet() -> LogSpoolConfig {
    LogSpoolConfig {
        clock: crate::clock::Clock::system(),
        writer: writer_config(),
        maintenance: MaintenanceConfig {
            interval: Duration::from_secs(3600),
            ..MaintenanceConfig::for_segments(SEGMENT)
        },
    }
}

fn event(id: &str) -> StoredEvent {
    StoredEvent {
        webhook_id: Some(id.to_string()),
        received_at_ms: now_ms(),
        api_key: Some("key".into()),
        signature: "00".repeat(32),
        event_type: Some("message.new".into()),
        body: format!(
            "{{\"type\":\"message.new\",\"id\":\"{id}\",\"pad\":\"{}\"}}",
            "x".repeat(200)
        )
        .into_bytes(),
        path: None,
        trace: None,
    }
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("e{i}")).collect()
}

/// A log in `data_dir` holding one event per id for route `r`, each in a group of its own.
async fn log_of(data_dir: &Path, ids: &[String]) {
    let spool = LogSpool::open_with(data_dir, quiet()).unwrap();
    for id in ids {
        let stored = spool
            .append(event(id), vec!["r".into()], Duration::from_secs(600))
            .await
            .unwrap();
        assert!(matches!(stored, AppendOutcome::Stored { .. }));
    }
    spool.close().await;
}

fn due_ids(spool: &LogSpool) -> Vec<String> {
    spool
        .due("r", u64::MAX - 1, &HashSet::new(), 1000, false)
        .unwrap()
        .items
        .iter()
        .map(|i| i.event.webhook_id.clone().unwrap())
        .collect()
}

/// Every file under `dir`: its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            let modified = path.metadata().unwrap().modified().unwrap();
            files.insert(path.clone(), (std::fs::read(&path).unwrap(), modified));
        }
    }
    files
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Puts `data_dir` as a crash between a repair's two renames leaves it: the old log moved
/// aside (done by the repair), the repaired one, marked complete, not yet `spool/`.
fn cut_between_the_renames(data_dir: &Path) {
    let new_dir = data_dir.join(REPAIR_DIR_NAME);
    std::fs::rename(data_dir.join(DIR_NAME), &new_dir).unwrap();
    std::fs::write(new_dir.join(COMPLETE_MARKER), b"").unwrap();
}

#[tokio::test]
async fn a_repair_cut_short_between_its_renames_is_finished_by_the_next_start_or_repair() {
    let data = tempfile::tempdir().unwrap();
    log_of(data.path(), &ids(12)).await;
    let repaired = repair(data.path(), writer_config()).unwrap();
    assert!(repaired.moved_to.is_dir());
    let dir = data.path().join(DIR_NAME);
    let new_dir = data.path().join(REPAIR_DIR_NAME);
    assert!(
        !dir.join(COMPLETE_MARKER).exists(),
        "removed after the swap"
    );

    // `serve` finishes the swap before it opens the log: every event is there.
    cut_between_the_renames(data.path());
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    assert_eq!(due_ids(&spool), ids(12));
    spool.close().await;
    assert!(!new_dir.exists() && !dir.join(COMPLETE_MARKER).exists());

    // So does `repair`, which then repairs the repaired log (nothing is lost).
    cut_between_the_renames(data.path());
    let again = repair(data.path(), writer_config()).unwrap();
    assert!(again.salvage.is_clean(), "{}", again.report);
    assert_eq!(again.kept.routes["r"].pending, 12);

    // A `spool.repair/` never marked complete (the repair stopped before its swap) is
    // not taken for the log.
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    spool.close().await;
    std::fs::rename(&dir, &new_dir).unwrap();
    assert!(!finish_interrupted(data.path()).unwrap());
    assert!(new_dir.is_dir() && !dir.exists());
}

#[tokio::test]
async fn a_clean_log_verifies_as_opening_with_its_counts_and_verify_changes_no_file() {
    let data = tempfile::tempdir().unwrap();
    log_of(data.path(), &ids(12)).await;
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    let due = spool
        .due("r", u64::MAX - 1, &HashSet::new(), 2, false)
        .unwrap();
    for item in &due.items {
        spool
            .complete("r", item.key, Completion::Delivered)
            .await
            .unwrap();
    }
    // The preparer zero-fills the next segment in the background: a spare to keep.
    assert!(spool.wait_prepared(Duration::from_secs(60)));
    spool.close().await;
    // A half-prepared segment, which recovery at open would remove.
    let dir = data.path().join(DIR_NAME);
    std::fs::write(dir.join("00000000000000000099.seg.tmp"), b"").unwrap();
    let before = snapshot(data.path());

    let report = verify(&dir);
    assert!(report.opens(), "{report}");
    let Verdict::Opens {
        totals,
        torn,
        would_remove,
        kept_spares,
        ..
    } = &report.verdict
    else {
        unreachable!()
    };
    // The spares the daemon prepared are kept for the next writer, not removed; the
    // segments' list names them spares too.
    assert!(!kept_spares.is_empty(), "{report}");
    for spare in kept_spares {
        assert!(!would_remove.contains(spare), "{spare}");
        let listed = report.segments.iter().find(|s| &s.file == spare).unwrap();
        assert_eq!(listed.status, SegmentStatus::Spare, "{spare}");
    }
    assert_eq!(
        totals.routes["r"],
        RouteTotals {
            pending: 10,
            dead: 0
        }
    );
    assert_eq!((totals.events, totals.ids), (12, 12));
    assert_eq!(*torn, None);
    assert!(would_remove.contains(&"00000000000000000099.seg.tmp".to_string()));
    assert!(report.segments.len() >= 3, "{report}");
    assert!(report
        .segments
        .iter()
        .all(|s| !matches!(s.status, SegmentStatus::BadHeader { .. })));
    let text = report.to_string();
    assert!(text.contains("hookfan opens this log"), "{text}");
    assert!(
        text.contains("spare segment(s) for the writer's next"),
        "{text}"
    );
    assert!(
        text.contains("route r: 10 pending, 0 dead letters"),
        "{text}"
    );
    serde_json::to_string(&report).unwrap();

    assert_eq!(snapshot(data.path()), before, "verify changed a file");
}

#[tokio::test]
async fn a_torn_last_group_verifies_as_opening_and_is_reported_as_cut_at_open() {
    let data = tempfile::tempdir().unwrap();
    log_of(data.path(), &ids(6)).await;
    let dir = data.path().join(DIR_NAME);
    let report = verify(&dir);
    let newest = report
        .segments
        .iter()
        .rfind(|s| matches!(s.status, SegmentStatus::Used { .. }))
        .unwrap()
        .clone();
    let path = dir.join(&newest.file);
    let mut bytes = std::fs::read(&path).unwrap();
    let SegmentScan::Used { groups, .. } = segment::scan(&bytes, newest.index) else {
        panic!("used");
    };
    let last = groups.last().unwrap();
    let end = last.offset as usize + last.header.frame_len();
    bytes[last.offset as usize + 50..end].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let report = verify(&dir);
    assert!(report.opens(), "{report}");
    let Verdict::Opens { torn, totals, .. } = &report.verdict else {
        unreachable!()
    };
    assert_eq!(
        torn.as_ref().map(|t| (&t.0, t.1)),
        Some((&newest.file, last.offset))
    );
    assert_eq!(totals.routes["r"].pending, 5);
    let text = report.to_string();
    assert!(text.contains("a torn tail, cut at open"), "{text}");
    assert!(text.contains("it may be the group being written"), "{text}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "not cut by verify");
}

#[test]
fn a_directory_with_no_log_yet_verifies_as_an_empty_log_and_is_not_created() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join(DIR_NAME);
    let report = verify(&dir);
    assert!(report.opens() && !report.exists);
    assert!(!dir.exists());
}

/// The first sealed segment's group holding an event record: (its offset, its frame's
/// length, the event's webhook id).
fn an_event_group(path: &Path, index: u64) -> (u64, usize, String) {
    let bytes = std::fs::read(path).unwrap();
    let SegmentScan::Used { groups, .. } = segment::scan(&bytes, index) else {
        panic!("segment {index} is used");
    };
    for g in groups {
        let group = segment::decode_group(&bytes[g.offset as usize..], index).unwrap();
        for (_, record) in group.records() {
            if let Ok(Record::Event(e)) = Record::decode(record) {
                let id = e.webhook_id.unwrap().to_string();
                return (g.offset, g.header.payload_len as usize, id);
            }
        }
    }
    panic!("no event in segment {index}");
}

#[tokio::test]
async fn a_byte_flipped_in_a_sealed_segments_acknowledged_group_is_refused_reported_and_repaired_keeping_every_other_event(
) {
    let data = tempfile::tempdir().unwrap();
    let all = ids(16);
    log_of(data.path(), &all).await;
    let dir = data.path().join(DIR_NAME);
    let name = segment_name(2);
    let (offset, payload_len, lost) = an_event_group(&dir.join(&name), 2);
    // Inside the event's body (the record's last field), near the payload's end.
    flip(
        &dir.join(&name),
        offset + (GROUP_HEADER_LEN + payload_len) as u64 - 5,
    );

    // Refused at open, naming the file and the group's offset.
    let err = LogSpool::open_with(data.path(), quiet())
        .err()
        .expect("refused");
    let SpoolError::Log(LogError::Corrupt {
        file,
        offset: at,
        why,
    }) = &err
    else {
        panic!("{err}");
    };
    assert_eq!((file.as_str(), *at), (name.as_str(), offset));
    assert_eq!(*why, CorruptWhy::Frame(segment::BadFrame::Checksum));
    let message = err.to_string();
    assert!(message.contains("hookfan spool repair"), "{message}");

    // Verify says the same.
    let report = verify(&dir);
    assert!(!report.opens());
    let Verdict::Refused {
        file,
        offset: at,
        error,
    } = &report.verdict
    else {
        unreachable!()
    };
    assert_eq!((file.as_deref(), *at), (Some(name.as_str()), Some(offset)));
    assert_eq!(
        *error,
        LogError::Corrupt {
            file: name.clone(),
            offset,
            why: CorruptWhy::Frame(segment::BadFrame::Checksum),
        }
        .to_string()
    );
    let text = report.to_string();
    assert!(text.contains(&name) && text.contains("REFUSED"), "{text}");

    // Repair keeps every other event and names the lost one.
    let repaired = repair(data.path(), writer_config()).unwrap();
    assert!(repaired.report.contains(&name), "{}", repaired.report);
    assert!(
        repaired.report.contains(&format!("webhook id {lost}")),
        "{}",
        repaired.report
    );
    assert_eq!(repaired.salvage.lost_lsns.len(), 1, "{}", repaired.report);
    assert_eq!(
        std::fs::read_to_string(&repaired.report_file).unwrap(),
        repaired.report
    );
    assert!(
        repaired.moved_to.join(&name).is_file(),
        "the old log is kept"
    );
    assert_eq!(repaired.kept.routes["r"].pending, 15);

    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    let others: Vec<String> = all.iter().filter(|id| **id != lost).cloned().collect();
    assert_eq!(due_ids(&spool), others);
    // Their ids are still remembered; the lost one is stored again when Stream retries.
    let again = spool
        .append(
            event(&others[0]),
            vec!["r".into()],
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(again, AppendOutcome::Duplicate);
    spool.close().await;
    assert!(verify(&dir).opens());
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

/// A log on the real disk whose early segments compaction deleted: 40 events on route
/// 0, all but the last two delivered, maintenance rounds until segments went.
fn compacted(dir: &Path) {
    let storage: Arc<dyn Storage> = Arc::new(RealDisk::open(dir).unwrap());
    let r = recover(&*storage).unwrap();
    let mut m = Maintenance::new(
        storage.clone(),
        r.checkpoint,
        MaintenanceConfig::for_segments(1024),
    );
    let config = WriterConfig {
        segment_size: 1024,
        ..writer_config()
    };
    let w = Writer::start(storage.clone(), r, config).unwrap();
    w.wait(&w.submit(&[Record::Route { id: 0, name: "r" }]).unwrap())
        .unwrap();
    let seqs = append(&w, 40);
    for &seq in &seqs[..38] {
        w.wait(&w.submit(&[Record::Delivered { route: 0, seq }]).unwrap())
            .unwrap();
    }
    let expire = Record::ExpireIds {
        before_ms: u64::MAX,
        limit: 100,
    };
    w.wait(&w.submit(&[expire]).unwrap()).unwrap();
    let mut deleted = 0;
    for _ in 0..4 {
        deleted += m.step(&w).unwrap().deleted;
    }
    assert!(deleted > 5, "{deleted} segments deleted");
    w.close();
}

#[test]
fn a_byte_flipped_in_the_only_checkpoint_whose_segments_were_compacted_away_is_refused_and_reported(
) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join(DIR_NAME);
    compacted(&dir);
    let mut checkpoints: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| checkpoint_lsn(n).is_some())
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints.len(), 2);
    std::fs::remove_file(dir.join(&checkpoints[0])).unwrap();
    let only = checkpoints[1].clone();
    flip(&dir.join(&only), 60);

    let storage = ReadOnlyDir::new(&dir);
    let Err(LogError::Corrupt { file, offset, .. }) = recover(&storage) else {
        panic!("refused");
    };
    assert_eq!((file.as_str(), offset), (only.as_str(), 40));

    let report = verify(&dir);
    assert_eq!(
        report.verdict,
        Verdict::Refused {
            error: recover(&storage).unwrap_err().to_string(),
            file: Some(only.clone()),
            offset: Some(40),
        }
    );
    let c = report.checkpoints.iter().find(|c| c.file == only).unwrap();
    assert_eq!(c.damaged.as_ref().map(|d| d.0), Some(40));
    let text = report.to_string();
    assert!(
        text.contains(&format!("{only}  lsn")) && text.contains("DAMAGED at byte 40"),
        "{text}"
    );
    assert_eq!(checkpoint_name(c.lsn), only);

    // Repair starts from what the segments still hold: the two pending events are kept,
    // and the records the checkpoint covered are reported lost, the route's name with
    // them (its events are kept apart, under a name of their own).
    let repaired = repair(data.path(), writer_config()).unwrap();
    assert!(repaired.report.contains(&only), "{}", repaired.report);
    assert!(
        !repaired.salvage.lost_lsns.is_empty(),
        "{}",
        repaired.report
    );
    assert_eq!(
        repaired.kept.routes["unnamed-route-0"].pending, 2,
        "{}",
        repaired.report
    );
    assert!(repaired.report.contains("routes whose name was lost"));
    assert!(verify(&dir).opens());
}

#[tokio::test]
async fn repair_refuses_while_a_hookfan_holds_the_log() {
    let data = tempfile::tempdir().unwrap();
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    let err = repair(data.path(), writer_config()).unwrap_err();
    assert!(matches!(err, RepairError::InUse(_)), "{err}");
    assert!(err.to_string().contains("stop it first"), "{err}");
    let names: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [DIR_NAME], "no new log, no report, nothing moved");
    spool.close().await;
}

#[tokio::test]
async fn repair_of_an_intact_log_keeps_every_queue_its_retries_holds_and_dead_letters() {
    let data = tempfile::tempdir().unwrap();
    log_of(data.path(), &ids(6)).await;
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    let items = spool
        .due("r", u64::MAX - 1, &HashSet::new(), 10, false)
        .unwrap()
        .items;
    let outcomes = vec![
        (items[0].key, Completion::Delivered),
        (
            items[1].key,
            Completion::Retry {
                due_ms: 7_000,
                attempts: 2,
                error: "503".into(),
            },
        ),
        (
            items[2].key,
            Completion::Hold {
                not_before_ms: u64::MAX - 10,
                attempts: 1,
                error: "429".into(),
            },
        ),
        (
            items[3].key,
            Completion::Dead {
                attempts: 5,
                error: "400".into(),
            },
        ),
    ];
    spool.complete_batch("r", outcomes).await.unwrap();
    let queue = |spool: &LogSpool| {
        let due = spool
            .due("r", u64::MAX - 1, &HashSet::new(), 10, false)
            .unwrap();
        let items: Vec<_> = due
            .items
            .iter()
            .map(|i| (i.key.due_ms, i.state.clone(), (*i.event).clone()))
            .collect();
        let held = spool.due("r", 0, &HashSet::new(), 10, true).unwrap();
        let dead: Vec<_> = spool
            .dead_letters(None)
            .unwrap()
            .into_iter()
            .map(|d| (d.route, d.webhook_id, d.attempts, d.error, d.dead_at_ms))
            .collect();
        (
            items,
            held.next_due_ms,
            dead,
            spool.route_summary("r").unwrap(),
        )
    };
    let before = queue(&spool);
    spool.close().await;

    let repaired = repair(data.path(), writer_config()).unwrap();
    assert!(repaired.salvage.is_clean(), "{}", repaired.report);
    assert!(repaired
        .report
        .contains("nothing was damaged and nothing was lost"));
    let spool = LogSpool::open_with(data.path(), quiet()).unwrap();
    assert_eq!(queue(&spool), before);
    let again = spool
        .append(event("e0"), vec!["r".into()], Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        again,
        AppendOutcome::Duplicate,
        "a delivered event's id is remembered"
    );
    spool.close().await;
}
