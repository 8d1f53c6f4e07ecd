//! Upgrading: a data_dir written by an earlier hookfan (the redb spool, `spool.redb`) is
//! imported when the daemon starts, and nothing it held is lost or delivered twice.

use std::collections::HashSet;
use std::time::Duration;

use hookfan::spool::{now_ms, Completion, RedbSpool, StoredEvent};

use crate::harness::*;

const WINDOW: Duration = Duration::from_secs(600);

fn stored(id: &str) -> StoredEvent {
    StoredEvent {
        webhook_id: Some(id.to_string()),
        received_at_ms: now_ms(),
        api_key: Some(API_KEY.to_string()),
        signature: "00".repeat(32),
        event_type: Some("message.new".into()),
        body: event_body("message.new", id),
        path: None,
        trace: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_redb_of_an_earlier_hookfan_is_imported_at_start_and_nothing_is_lost() {
    let mut receiver = Receiver::start().await;
    let mut daemon =
        Daemon::start(Config::default().route(HttpRoute::new("to-receiver", receiver.url()))).await;
    daemon.stop_gracefully().await;
    // What the earlier hookfan left: pending events, a dead letter, and a delivered event
    // whose id is still within the dedup window.
    let data = daemon.dir().join("data");
    std::fs::remove_dir_all(data.join("spool")).expect("remove the new spool");
    let pending: Vec<String> = (0..5).map(|_| new_id()).collect();
    let (dead, delivered) = (new_id(), new_id());
    {
        let old = RedbSpool::open(&data).expect("write an old spool");
        for id in pending.iter().chain([&dead, &delivered]) {
            old.append(stored(id), vec!["to-receiver".into()], WINDOW)
                .await
                .unwrap();
        }
        let due = old
            .due("to-receiver", u64::MAX - 1, &HashSet::new(), 100, false)
            .unwrap();
        for item in due.items {
            let completion = match item.event.webhook_id.as_deref() {
                Some(id) if id == dead => Completion::Dead {
                    attempts: 3,
                    error: "400 Bad Request".into(),
                },
                Some(id) if id == delivered => Completion::Delivered,
                _ => continue,
            };
            old.complete("to-receiver", item.key, completion)
                .await
                .unwrap();
        }
        old.close().await;
    }

    daemon.restart().await;
    let want: HashSet<String> = pending.iter().cloned().collect();
    let got = receiver
        .until_ids(
            &want,
            Duration::from_secs(30),
            "the old spool's pending events",
        )
        .await;
    let ids: Vec<&str> = got.iter().map(Recorded::webhook_id).collect();
    assert_eq!(
        ids.iter().copied().collect::<HashSet<_>>(),
        want.iter().map(String::as_str).collect(),
        "every pending event of the old spool is delivered, and nothing else"
    );
    assert_eq!(ids.len(), pending.len(), "each once: {ids:?}");
    assert!(data.join("spool.redb.imported").exists());
    assert!(!data.join("spool.redb").exists());
    // Stream retries the delivered event: still a duplicate after the upgrade.
    let http = client();
    let retry = post_signed(
        &http,
        &daemon.url(),
        &delivered,
        &event_body("message.new", &delivered),
    )
    .await;
    assert_eq!(retry.status, 200);
    assert_eq!(
        metric(
            &daemon,
            "hookfan_webhooks_received_total",
            r#"outcome="duplicate""#
        )
        .await,
        Some(1.0),
        "the retry of an event the old spool delivered is a duplicate"
    );
    daemon.stop_gracefully().await;
    let letters = daemon.dead_letters(None).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["webhook_id"], dead.as_str());
    assert_eq!(letters[0]["error"], "400 Bad Request");
    let late = receiver.drain_now();
    assert!(late.is_empty(), "delivered again: {late:?}");
}
