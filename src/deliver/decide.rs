//! What an attempt's outcome means for its event: delivered, tried again later (re-queued
//! or, on an ordered route, held in place), or given up on. Pure: the time, the random
//! draw and the route's policy are arguments, so every rule is a line of a table test. The
//! worker ([`super::RouteWorker`]) does the I/O, the logs and the metrics around it.

use std::time::Duration;

use super::backoff;
use crate::config::RetryPolicy;
use crate::sinks::Outcome;
use crate::spool::Completion;

/// The route's side of a decision.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub policy: &'a RetryPolicy,
    /// FIFO: a failing event holds its place instead of moving behind the others.
    pub ordered: bool,
}

/// The attempt that ended.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Its number, from 1.
    pub number: u32,
    /// When its event was received (ms since the epoch): `max_age` counts from there.
    pub received_at_ms: u64,
    /// When it ended (ms since the epoch).
    pub now_ms: u64,
    /// A uniform draw in `[0, 1)` for the backoff's jitter.
    pub jitter: f64,
}

/// What to record for the event, and what to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub completion: Completion,
    /// Tried again after this wait (a retry or a hold); `None` when delivered or dead.
    pub wait: Option<Duration>,
}

/// Decides what `outcome` of `attempt` means under `rules`.
///
/// - Delivered: done.
/// - Permanent (the destination refused it as such): a dead letter at once.
/// - Retryable: a dead letter once the event is `max_age` old; else due again after the
///   backoff (`Retry-After` as a floor), re-queued, or held in place on an ordered route.
pub fn decide(rules: Rules<'_>, attempt: Attempt, outcome: Outcome) -> Decision {
    let attempts = attempt.number;
    let dead = |error| Decision {
        completion: Completion::Dead { attempts, error },
        wait: None,
    };
    match outcome {
        Outcome::Delivered => Decision {
            completion: Completion::Delivered,
            wait: None,
        },
        Outcome::Permanent { error } => dead(error),
        Outcome::Retry { after, error } => {
            let age = Duration::from_millis(attempt.now_ms.saturating_sub(attempt.received_at_ms));
            let max_age = rules.policy.max_age();
            if age >= max_age {
                return dead(format!(
                    "still failing after max_age {}: {error}",
                    humantime::format_duration(max_age)
                ));
            }
            let wait = backoff::delay(rules.policy, attempts, after, attempt.jitter);
            let at = attempt
                .now_ms
                .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            let completion = if rules.ordered {
                Completion::Hold {
                    not_before_ms: at,
                    attempts,
                    error,
                }
            } else {
                Completion::Retry {
                    due_ms: at,
                    attempts,
                    error,
                }
            };
            Decision {
                completion,
                wait: Some(wait),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::deliver::backoff::tests::policy;

    const NOW: u64 = 1_800_000_000_000;

    /// Attempt `number` of an event received `age_ms` ago, the jitter at its largest (the
    /// backoff is its ceiling).
    fn attempt(number: u32, age_ms: u64) -> Attempt {
        Attempt {
            number,
            received_at_ms: NOW - age_ms,
            now_ms: NOW,
            jitter: 1.0,
        }
    }

    fn retry(after: Option<Duration>) -> Outcome {
        Outcome::Retry {
            after,
            error: "HTTP 503".into(),
        }
    }

    fn unordered(p: &RetryPolicy) -> Rules<'_> {
        Rules {
            policy: p,
            ordered: false,
        }
    }

    #[test]
    fn each_outcome_becomes_its_completion() {
        let p = policy();
        let ordered = Rules {
            policy: &p,
            ordered: true,
        };
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        // (rules, attempt, outcome) -> (completion, wait)
        let table: Vec<(Rules, Attempt, Outcome, Completion, Option<Duration>)> = vec![
            // Delivered: done, whatever the attempt or age.
            (
                unordered(&p),
                attempt(7, 5_000_000),
                Outcome::Delivered,
                Completion::Delivered,
                None,
            ),
            // Retryable, young: due again after the backoff's ceiling for attempt 1.
            (
                unordered(&p),
                attempt(1, 0),
                retry(None),
                Completion::Retry {
                    due_ms: NOW + 100,
                    attempts: 1,
                    error: "HTTP 503".into(),
                },
                Some(ms(100)),
            ),
            // The ceiling doubles per attempt (attempt 4: 800 ms).
            (
                unordered(&p),
                attempt(4, 60_000),
                retry(None),
                Completion::Retry {
                    due_ms: NOW + 800,
                    attempts: 4,
                    error: "HTTP 503".into(),
                },
                Some(ms(800)),
            ),
            // Retry-After is a floor above the jittered backoff ...
            (
                unordered(&p),
                attempt(1, 0),
                retry(Some(secs(5))),
                Completion::Retry {
                    due_ms: NOW + 5_000,
                    attempts: 1,
                    error: "HTTP 503".into(),
                },
                Some(secs(5)),
            ),
            // ... capped at max_backoff, so a handler cannot park events for longer.
            (
                unordered(&p),
                attempt(1, 0),
                retry(Some(secs(3600))),
                Completion::Retry {
                    due_ms: NOW + 10_000,
                    attempts: 1,
                    error: "HTTP 503".into(),
                },
                Some(secs(10)),
            ),
            // An ordered route holds the event in place instead.
            (
                ordered,
                attempt(2, 0),
                retry(None),
                Completion::Hold {
                    not_before_ms: NOW + 200,
                    attempts: 2,
                    error: "HTTP 503".into(),
                },
                Some(ms(200)),
            ),
            // Retryable but max_age old (exactly): a dead letter, saying why.
            (
                unordered(&p),
                attempt(30, 3_600_000),
                retry(None),
                Completion::Dead {
                    attempts: 30,
                    error: "still failing after max_age 1h: HTTP 503".into(),
                },
                None,
            ),
            (
                ordered,
                attempt(30, 3_600_001),
                retry(None),
                Completion::Dead {
                    attempts: 30,
                    error: "still failing after max_age 1h: HTTP 503".into(),
                },
                None,
            ),
            // Permanent: a dead letter at once, however young.
            (
                unordered(&p),
                attempt(1, 0),
                Outcome::Permanent {
                    error: "HTTP 400".into(),
                },
                Completion::Dead {
                    attempts: 1,
                    error: "HTTP 400".into(),
                },
                None,
            ),
        ];
        for (i, (rules, attempt, outcome, completion, wait)) in table.into_iter().enumerate() {
            assert_eq!(
                decide(rules, attempt, outcome),
                Decision { completion, wait },
                "line {i} of the table"
            );
        }
    }

    #[test]
    fn the_jitter_spreads_retries_below_the_ceiling() {
        let p = policy();
        let at = |jitter| Attempt {
            jitter,
            ..attempt(3, 0)
        };
        let due = |jitter| match decide(unordered(&p), at(jitter), retry(None)).completion {
            Completion::Retry { due_ms, .. } => due_ms - NOW,
            other => panic!("not a retry: {other:?}"),
        };
        assert_eq!((due(0.0), due(0.5), due(1.0)), (0, 200, 400));
    }

    #[test]
    fn a_clock_behind_the_receipt_time_or_at_the_end_of_time_neither_panics_nor_kills() {
        let p = policy();
        // The clock went back: age 0, a retry.
        let behind = Attempt {
            now_ms: NOW - 1_000,
            ..attempt(1, 0)
        };
        let d = decide(unordered(&p), behind, retry(None));
        assert!(matches!(d.completion, Completion::Retry { .. }), "{d:?}");
        // Due past the end of u64 ms: saturates.
        let late = Attempt {
            received_at_ms: u64::MAX - 10,
            now_ms: u64::MAX - 10,
            ..attempt(1, 0)
        };
        match decide(unordered(&p), late, retry(None)).completion {
            Completion::Retry { due_ms, .. } => assert_eq!(due_ms, u64::MAX),
            other => panic!("not a retry: {other:?}"),
        }
    }
}
