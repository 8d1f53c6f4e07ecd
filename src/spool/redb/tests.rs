//! The redb spool's tests: the spool's contract (`../contract_tests.rs`), then its file, its
//! backlog walk at open and its schema.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::spool::*;

type Spool = RedbSpool;

fn open(dir: &Path) -> Result<Spool, SpoolError> {
    Spool::open(dir)
}

include!("../contract_tests.rs");

#[tokio::test]
async fn a_file_that_is_not_a_spool_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0xA5u8; 64 * 1024];
    std::fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
    let err = Spool::open(dir.path()).err().expect("garbage is refused");
    let msg = err.to_string();
    assert!(msg.contains(FILE_NAME), "{msg}");
    assert_eq!(
        std::fs::read(dir.path().join(FILE_NAME)).unwrap(),
        garbage,
        "not overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_stops_growing_once_delivered_space_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let size = || std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
    let mut sizes = Vec::new();
    const ROUNDS: usize = 8;
    for _round in 0..ROUNDS {
        append_and_deliver_a_round(&spool).await;
        sizes.push(size());
    }
    assert_eq!(spool.stored_events().unwrap(), 0);
    // Without reuse the file would end above the 4 MiB written; redb's allocator may keep a
    // few rounds' worth of pages in flight, so allow twice the first round's size.
    let last = *sizes.last().unwrap();
    assert!(
        last <= 2 * sizes[0] && last < 4 * 1024 * 1024,
        "4 MiB written in {ROUNDS} rounds, file keeps growing: {sizes:?}"
    );
}

#[test]
fn readers_wait_for_the_count_at_open_and_then_see_the_changes_queued_meanwhile() {
    let shared = Arc::new(SharedCounts::walking());
    // Committed while the walk runs: queued, in order.
    shared.apply(vec![
        Change::AddPending("r".into(), 7),
        Change::RemovePending("r".into(), 3),
    ]);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let seen = shared.read(|c| c.get("r").map(|r| (r.pending.len(), r.pending.first())));
            tx.send(seen.unwrap()).unwrap();
        })
    };
    assert!(
        rx.try_recv().is_err(),
        "a reader must not see counts before the walk is done"
    );
    // The walk saw seqs 3 and 5 in its snapshot.
    let mut walked = Counts::default();
    walked.add_pending("r", 3);
    walked.add_pending("r", 5);
    shared.finish(Ok(walked));
    assert_eq!(rx.recv().unwrap(), Some((2, Some(5))), "{{5, 7}}");
    reader.join().unwrap();
    // Later changes apply at once.
    shared.apply(vec![Change::RemovePending("r".into(), 5)]);
    assert_eq!(
        shared
            .read(|c| c.get("r").map(|r| r.pending.first()))
            .unwrap(),
        Some(Some(7))
    );
}

#[test]
fn a_failed_count_at_open_is_an_error_for_readers_not_a_hang() {
    let shared = SharedCounts::walking();
    shared.finish(Err(SpoolError::Closed));
    let err = shared.read(|_| ()).unwrap_err();
    assert!(matches!(err, SpoolError::CountFailed(_)), "{err}");
}

/// Rewrites the spool in `dir` as schema version 1 left it: the version, and every remembered
/// id also in the `seen` table.
fn downgrade_to_version_1(dir: &Path) {
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let by_time = txn.open_table(SEEN_BY_TIME).unwrap();
        let mut seen = txn.open_table(SEEN_V1).unwrap();
        for row in by_time.iter().unwrap() {
            let (k, _) = row.unwrap();
            let (at, id) = k.value();
            seen.insert(id, at).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("schema_version", 1).unwrap();
    }
    txn.commit().unwrap();
}

fn schema_version(dir: &Path) -> u64 {
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    let version = meta.get("schema_version").unwrap().unwrap().value();
    version
}

fn table_names(dir: &Path) -> Vec<String> {
    use ::redb::TableHandle;
    let db = Database::create(dir.join(FILE_NAME)).unwrap();
    let txn = db.begin_write().unwrap();
    let names = txn.list_tables().unwrap().map(|t| t.name().to_string());
    names.collect()
}

#[tokio::test]
async fn a_version_1_spool_is_upgraded_in_place_keeping_its_events_and_its_remembered_ids() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..300).map(|n| format!("id-{n}")).collect();
    {
        let spool = Spool::open(dir.path()).unwrap();
        for id in &ids {
            spool
                .append(event(id), routes(&["r"]), WINDOW)
                .await
                .unwrap();
        }
        spool.close().await;
    }
    downgrade_to_version_1(dir.path());
    assert!(table_names(dir.path()).contains(&"seen".to_string()));

    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(due(&spool, "r").len(), ids.len());
    for id in &ids {
        let again = spool
            .append(event(id), routes(&["r"]), WINDOW)
            .await
            .unwrap();
        assert_eq!(again, AppendOutcome::Duplicate, "{id}");
    }
    spool.close().await;
    drop(spool);
    let tables = table_names(dir.path());
    assert!(!tables.contains(&"seen".to_string()), "{tables:?}");
    assert_eq!(schema_version(dir.path()), 2);
}

#[tokio::test]
async fn a_spool_written_by_a_newer_hookfan_is_refused_and_keeps_its_version() {
    let dir = tempfile::tempdir().unwrap();
    Spool::open(dir.path()).unwrap().close().await;
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 3)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Spool::open(dir.path()).err().expect("refused");
    let msg = err.to_string();
    assert!(matches!(err, SpoolError::Incompatible { .. }), "{msg}");
    assert!(
        msg.contains("schema version 3") && msg.contains("reads version 2"),
        "{msg}"
    );
    assert_eq!(schema_version(dir.path()), 3);
}
