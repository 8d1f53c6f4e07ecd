//! A route's delivery counters since the daemon started ([`RouteStats`]), and its most recent
//! failed attempts with the destination's answer ([`RecentFailure`]): what `/api/routes`,
//! `/api/routes/{name}/failures`, `hookfan status` and the console's route page show. In
//! memory only: a restart starts them again (the spool keeps each pending event's last
//! error, and every dead letter's).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

/// Failed attempts a route keeps, the newest ones.
pub const RECENT_FAILURES: usize = 20;

/// A route's delivery counters since the daemon started.
#[derive(Debug, Default)]
pub struct RouteStats {
    pub in_flight: AtomicU64,
    pub delivered: AtomicU64,
    /// Attempts that failed (retried, held or dead-lettered).
    pub failed: AtomicU64,
    /// The last [`RECENT_FAILURES`] failed attempts, oldest first.
    recent: Mutex<VecDeque<RecentFailure>>,
    /// Events sent to the destination, by the second (the current rate).
    sent: Mutex<PerSecond>,
    /// A paced route's token bucket as its worker last left it: a worker restarted by a
    /// reload goes on from it ([`super::pace::Bucket::new`]).
    pub(crate) pace: Mutex<Option<super::pace::Bucket>>,
}

/// Counts by the second: the current second's, and the last whole second's.
#[derive(Debug, Default)]
struct PerSecond {
    second: u64,
    count: u64,
    previous: u64,
}

impl PerSecond {
    fn add(&mut self, now_ms: u64, n: u64) {
        self.roll(now_ms);
        self.count += n;
    }

    /// Moves to the second of `now_ms`.
    fn roll(&mut self, now_ms: u64) {
        let second = now_ms / 1000;
        if second != self.second {
            self.previous = if second == self.second + 1 {
                self.count
            } else {
                0
            };
            self.second = second;
            self.count = 0;
        }
    }
}

/// One failed attempt, and what became of its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentFailure {
    /// When the destination answered (ms since the epoch).
    pub at_ms: u64,
    pub webhook_id: Option<String>,
    pub event_type: Option<String>,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// The destination's answer (status and the start of its body) or why none came.
    pub error: String,
    pub then: Then,
}

/// What became of an event after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Then {
    /// Tried again after `in_ms`.
    Retry { in_ms: u64 },
    /// An ordered route holds its message group until the event is tried again.
    Hold { in_ms: u64 },
    /// Moved to the route's dead letters.
    DeadLetter,
}

impl RouteStats {
    /// Counts a failed attempt and keeps it among the recent ones.
    pub fn failed(&self, failure: RecentFailure) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().expect("stats lock");
        if recent.len() == RECENT_FAILURES {
            recent.pop_front();
        }
        recent.push_back(failure);
    }

    /// The last failure: its error and when (ms since the epoch).
    pub fn last_error(&self) -> Option<(String, u64)> {
        let recent = self.recent.lock().expect("stats lock");
        recent.back().map(|f| (f.error.clone(), f.at_ms))
    }

    /// Counts `n` events handed to the destination at `now_ms` (attempts, retries included).
    pub fn sent(&self, now_ms: u64, n: u64) {
        self.sent.lock().expect("stats lock").add(now_ms, n);
    }

    /// Events handed to the destination in the last whole second before `now_ms`.
    pub fn sent_last_second(&self, now_ms: u64) -> u64 {
        let mut sent = self.sent.lock().expect("stats lock");
        sent.roll(now_ms);
        sent.previous
    }

    /// The recent failed attempts, newest first.
    pub fn recent_failures(&self) -> Vec<RecentFailure> {
        let recent = self.recent.lock().expect("stats lock");
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_last_whole_seconds_count() {
        let stats = RouteStats::default();
        stats.sent(10_000, 3);
        stats.sent(10_999, 2);
        assert_eq!(stats.sent_last_second(10_999), 0, "the second is not over");
        assert_eq!(stats.sent_last_second(11_000), 5);
        stats.sent(11_500, 7);
        assert_eq!(stats.sent_last_second(12_100), 7);
        assert_eq!(
            stats.sent_last_second(13_000),
            0,
            "nothing sent in second 12"
        );
        stats.sent(20_000, 1);
        assert_eq!(stats.sent_last_second(21_000), 1);
        assert_eq!(stats.sent_last_second(25_000), 0, "a quiet spell");
    }

    fn failure(at_ms: u64) -> RecentFailure {
        RecentFailure {
            at_ms,
            webhook_id: Some(format!("id-{at_ms}")),
            event_type: None,
            attempt: 1,
            error: format!("HTTP 503 at {at_ms}"),
            then: Then::Retry { in_ms: 100 },
        }
    }

    #[test]
    fn a_route_keeps_its_newest_failures_newest_first_and_counts_them_all() {
        let stats = RouteStats::default();
        assert_eq!(stats.last_error(), None);
        for at in 1..=RECENT_FAILURES as u64 + 5 {
            stats.failed(failure(at));
        }
        let recent = stats.recent_failures();
        assert_eq!(recent.len(), RECENT_FAILURES);
        assert_eq!(recent[0], failure(RECENT_FAILURES as u64 + 5));
        assert_eq!(recent[RECENT_FAILURES - 1], failure(6));
        assert_eq!(
            stats.failed.load(Ordering::Relaxed),
            RECENT_FAILURES as u64 + 5
        );
        let last = RECENT_FAILURES as u64 + 5;
        assert_eq!(
            stats.last_error(),
            Some((format!("HTTP 503 at {last}"), last))
        );
    }

    #[test]
    fn what_became_of_the_event_reads_as_json_with_its_kind() {
        let json = |then| serde_json::to_value(then).unwrap();
        assert_eq!(
            json(Then::Retry { in_ms: 250 }),
            serde_json::json!({"kind": "retry", "in_ms": 250})
        );
        assert_eq!(
            json(Then::DeadLetter),
            serde_json::json!({"kind": "dead_letter"})
        );
    }
}
