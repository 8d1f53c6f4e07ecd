//! Delivery: one worker per enabled route moves the route's due events from the spool to its
//! sink, and records every outcome back in the spool.
//!
//! # The state machine of one (route, event)
//! ```text
//!  pending(due) --attempt--> delivered                    -> row deleted (event freed when
//!      ^                |                                    no route holds it)
//!      |                +--> retryable, younger than max_age -> pending(now + backoff)
//!      +----------------+
//!                       +--> permanent, or older than max_age -> dead letter
//! ```
//! A row stays in `pending` under its old key while its attempt is in flight, so a crash at
//! any point redelivers it (at least once, never lost). On an unordered route a failing event
//! is re-keyed to a later due time, so it never blocks the events behind it; on an ordered
//! (FIFO) route it is held in place, and blocks the rest of its message group until then.
//! Which of these an outcome leads to is decided by a pure function, [`decide::decide`].
//!
//! # Scheduling
//! The worker reads the route's due rows in due order, skipping the ones in flight, and
//! starts one task per batch while a permit of the route's semaphore (its `concurrency`) is
//! free. A task gives its permit back as soon as the destination has answered (on unordered
//! routes), then records the batch's outcomes in one spool command; its events stay in the
//! worker's in-flight set, so they are not read again, until that commit is done. At most
//! `concurrency` answered batches wait for their commit (a second semaphore), so memory is
//! bounded by `2 × concurrency × max_batch` events, whatever the backlog on disk. Ordered
//! routes keep the permit until the outcome is committed: the next batch must see a hold.
//! The worker sleeps until: new events are stored (the spool's writer wakes it once per
//! group that gives the route something to deliver), a permit is given back, a task
//! finishes, the next retry falls due, or shutdown.
//!
//! Routes share nothing but the spool's writer, so a dead destination on one route never
//! delays another.

pub mod backoff;
pub(crate) mod decide;
pub(crate) mod pace;
pub(crate) mod runtime;
mod stats;
pub(crate) mod supervisor;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{RetryPolicy, Route};
use crate::sinks::{Delivery, Outcome, Sink};
use crate::spool::{Completion, DueItem, Spool, SpoolError};
use crate::telemetry::otel;
pub use stats::{RecentFailure, RouteStats, Then, RECENT_FAILURES};

/// How long the worker waits before reading again after the spool failed to read.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// At most one delivery-failure WARN line per route in this interval; the rest are counted.
const WARN_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a route's worker needs; built by the server, consumed by [`RouteWorker::run`].
pub struct RouteWorker {
    pub route: Arc<Route>,
    pub sink: Arc<Sink>,
    pub spool: Spool,
    /// Woken by the spool's writer once a committed group gives this route something to
    /// deliver ([`crate::spool::Spool::route_waker`]).
    pub notify: Arc<Notify>,
    /// Cancelled on shutdown: stop starting deliveries.
    pub shutdown: CancellationToken,
    /// How long in-flight deliveries may finish after shutdown.
    pub grace: Duration,
    /// Counters the admin API shows for this route.
    pub stats: Arc<RouteStats>,
    /// Where "now" comes from: the spool's clock ([`Spool::clock`]), so the due times this
    /// worker records and its reads of them agree.
    pub clock: Clock,
    /// The backoff's random draw in `[0, 1)` ([`decide::Attempt::jitter`]).
    pub jitter: fn() -> f64,
}

/// A delivery's share of its route's `concurrency`. Given back (however its task ends, a
/// panic too), it wakes the worker: a worker with every slot busy listens for nothing else
/// that could let it read more.
struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit first: the worker, woken, must find the slot free.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

/// A batch's events while a delivery task has them: the worker does not read them again
/// until this is dropped, however the task ends. A task that panics (a bug in a destination's
/// client) gives them back unrecorded, so they are delivered again: at least once, never
/// stuck until a restart.
struct Flight {
    seqs: Vec<u64>,
    done: mpsc::UnboundedSender<Vec<u64>>,
    stats: Arc<RouteStats>,
}

impl Flight {
    /// Counts `seqs` in flight until the returned guard is dropped.
    fn new(seqs: Vec<u64>, done: mpsc::UnboundedSender<Vec<u64>>, stats: Arc<RouteStats>) -> Self {
        stats
            .in_flight
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        Flight { seqs, done, stats }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.stats
            .in_flight
            .fetch_sub(self.seqs.len() as u64, Ordering::Relaxed);
        let _ = self.done.send(std::mem::take(&mut self.seqs));
    }
}

impl RouteWorker {
    pub async fn run(self) {
        let name = self.route.name.clone();
        let concurrency = self.route.destination.concurrency();
        let batch = self.sink.max_batch().max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        // Batches whose destination has answered but whose outcomes are not yet committed. Also
        // bounded by `concurrency`, so a slow disk holds deliveries back instead of piling up.
        let recording = Arc::new(Semaphore::new(concurrency));
        // Woken when a delivery gives its permit back before its outcome is committed.
        let freed = Arc::new(Notify::new());
        let ordered = self.route.destination.ordered();
        let tasks = TaskTracker::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<u64>>();
        let mut in_flight: HashSet<u64> = HashSet::new();
        // `rate_limit`: no more events are read than there are tokens for, so what waits for
        // one waits in the spool. `throttled_since`: since when the limit has held due events
        // back ([`pace::held_back`]), while it still does.
        let mut bucket = self.route.destination.rate_limit().map(|limit| {
            let before = self.stats.pace.lock().expect("stats lock").take();
            pace::Bucket::new(limit, before, self.clock.now_ms())
        });
        let mut throttled_since: Option<u64> = None;
        let throttled_seconds =
            metrics::gauge!("hookfan_delivery_throttled_seconds_total", "route" => name.clone());
        let ctx = Arc::new(Ctx {
            route: name.clone(),
            destination: self.route.destination.kind().key(),
            policy: *self.route.destination.retry(),
            ordered,
            sink: self.sink.clone(),
            spool: self.spool.clone(),
            warn: Mutex::new(WarnLimiter::default()),
            stats: self.stats.clone(),
            metrics: OutcomeMetrics::register(&name),
            clock: self.clock,
            jitter: self.jitter,
        });
        tracing::debug!(route = %name, concurrency, "delivery worker started");

        loop {
            while let Ok(seqs) = done_rx.try_recv() {
                for seq in seqs {
                    in_flight.remove(&seq);
                }
            }
            if self.shutdown.is_cancelled() {
                break;
            }
            let free = permits.available_permits();
            let mut next_due = None;
            let now = self.clock.now_ms();
            let mut want = free * batch;
            let slots = want;
            let tokens = bucket.as_mut().map(|b| b.available(now));
            if let Some(t) = tokens {
                want = want.min(t);
            }
            let mut throttled = false;
            if free > 0 && want == 0 {
                // Due events or not, none may go before the next token.
                throttled = throttled_since.is_some();
                next_due = bucket
                    .as_mut()
                    .map(|b| now + b.ready_in(now).as_millis() as u64);
            } else if free > 0 {
                let spool = self.spool.clone();
                let (route, skip) = (name.clone(), in_flight.clone());
                let read = tokio::task::spawn_blocking(move || {
                    spool.due(&route, now, &skip, want, ordered)
                })
                .await
                .unwrap_or(Err(SpoolError::Closed));
                match read {
                    Ok(due) => {
                        next_due = due.next_due_ms;
                        let sent = due.items.len();
                        if let (Some(b), Some(t)) = (bucket.as_mut(), tokens) {
                            b.take(now, sent);
                            *self.stats.pace.lock().expect("stats lock") = Some(b.clone());
                            // The read stopped at its limit with more due: next at a token.
                            let more_due = due.next_due_ms.is_some_and(|d| d <= now);
                            throttled = pace::held_back(t, slots, more_due);
                            if throttled {
                                let at = now + b.ready_in(now).as_millis() as u64;
                                next_due = Some(at);
                            }
                        }
                        ctx.stats.sent(now, sent as u64);
                        let mut items = due.items.into_iter().peekable();
                        while items.peek().is_some() {
                            let chunk: Vec<DueItem> = items.by_ref().take(batch).collect();
                            let permit = Slot {
                                permit: Some(
                                    permits
                                        .clone()
                                        .try_acquire_owned()
                                        .expect("no more chunks than free permits"),
                                ),
                                freed: freed.clone(),
                            };
                            let seqs: Vec<u64> = chunk.iter().map(|i| i.key.seq).collect();
                            in_flight.extend(&seqs);
                            let flight = Flight::new(seqs, done_tx.clone(), ctx.stats.clone());
                            let (ctx, recording) = (ctx.clone(), recording.clone());
                            tasks.spawn(async move {
                                let completions = ctx.attempt(&chunk).await;
                                // The destination has answered: unordered routes start the next
                                // delivery while this outcome waits for its commit. The events
                                // stay in `in_flight` (not read again) until it is committed.
                                // Ordered routes keep the permit: the next batch must see this
                                // outcome (a hold stops the queue).
                                let held = if ordered {
                                    (Some(permit), None)
                                } else {
                                    let record = recording.acquire_owned().await.ok();
                                    drop(permit);
                                    (None, record)
                                };
                                ctx.record(&chunk, completions).await;
                                // The events go back to the worker (as they would if this task
                                // panicked anywhere above), then the slot: a worker woken by
                                // the slot finds them readable again.
                                drop(flight);
                                drop(held);
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(route = %name, error = %e, "cannot read the route's queue from the spool; retrying");
                        next_due = Some(self.clock.now_ms() + READ_ERROR_PAUSE.as_millis() as u64);
                    }
                }
            }
            if let Some(since) = throttled_since.take() {
                throttled_seconds.increment(now.saturating_sub(since) as f64 / 1000.0);
            }
            if throttled {
                throttled_since = Some(now);
            }
            let now = self.clock.now_ms();
            let wait = next_due.map(|due| Duration::from_millis(due.saturating_sub(now)));
            // With every slot busy, new events could not be read anyway: the worker listens
            // for them again once a slot is freed (the spool's wake-up keeps its permit).
            let reading = permits.available_permits() > 0;
            tokio::select! {
                _ = self.notify.notified(), if reading => {}
                _ = freed.notified() => {}
                Some(seqs) = done_rx.recv() => {
                    for seq in seqs {
                        in_flight.remove(&seq);
                    }
                }
                _ = sleep_or_forever(wait) => {}
                _ = self.shutdown.cancelled() => break,
            }
        }

        tasks.close();
        if !tasks.is_empty() {
            tracing::info!(route = %name, in_flight = tasks.len(), grace = ?self.grace, "waiting for in-flight deliveries");
        }
        if tokio::time::timeout(self.grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                route = %name,
                abandoned = tasks.len(),
                "shutdown grace period over; abandoned deliveries stay pending and are retried after restart"
            );
        }
    }
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// What a route's delivery tasks share.
struct Ctx {
    route: String,
    /// The destination's kind (`http`, `file`, `sqs`, `sns`), for the attempts' trace spans.
    destination: &'static str,
    policy: RetryPolicy,
    /// FIFO: a failing event holds its place instead of moving behind the others.
    ordered: bool,
    sink: Arc<Sink>,
    spool: Spool,
    warn: Mutex<WarnLimiter>,
    stats: Arc<RouteStats>,
    metrics: OutcomeMetrics,
    clock: Clock,
    jitter: fn() -> f64,
}

/// A route's delivery outcome metrics (docs/metrics.md), registered once per worker.
struct OutcomeMetrics {
    delivered: metrics::Counter,
    retried: metrics::Counter,
    dead_lettered: metrics::Counter,
    latency: metrics::Histogram,
}

impl OutcomeMetrics {
    fn register(route: &str) -> OutcomeMetrics {
        let outcome = |outcome: &'static str| metrics::counter!("hookfan_deliveries_total", "route" => route.to_string(), "outcome" => outcome);
        OutcomeMetrics {
            delivered: outcome("delivered"),
            retried: outcome("retried"),
            dead_lettered: outcome("dead_lettered"),
            latency: metrics::histogram!("hookfan_delivery_latency_seconds", "route" => route.to_string()),
        }
    }
}

impl Ctx {
    /// Attempts `items` once; returns what the spool should record for each.
    /// Each attempt has its trace span, a child of its webhook's ingest span.
    async fn attempt(&self, items: &[DueItem]) -> Vec<Completion> {
        let deliveries: Vec<Delivery> = items
            .iter()
            .map(|i| {
                let number = i.state.attempts + 1;
                let span = otel::delivery_span(
                    &self.route,
                    self.destination,
                    number,
                    i.event.trace.as_ref(),
                );
                Delivery {
                    event: i.event.as_ref(),
                    number,
                    span,
                }
            })
            .collect();
        let outcomes = self.sink.deliver_batch(&deliveries).await;
        items
            .iter()
            .zip(deliveries)
            .zip(outcomes)
            .map(|((item, delivery), outcome)| {
                let completion = self.judge(item, outcome);
                let (outcome, then, error) = match &completion {
                    Completion::Delivered => ("delivered", None, None),
                    Completion::Retry { error, .. } => ("retried", Some("retry"), Some(error)),
                    Completion::Hold { error, .. } => ("retried", Some("hold"), Some(error)),
                    Completion::Dead { error, .. } => {
                        ("dead_lettered", Some("dead_letter"), Some(error))
                    }
                };
                otel::record_delivery(&delivery.span, outcome, then, error.map(String::as_str));
                completion
            })
            .collect()
    }

    /// Records the outcomes of one batch in one spool command, then counts them (so a
    /// counted outcome is one the spool holds).
    async fn record(&self, items: &[DueItem], completions: Vec<Completion>) {
        let now = self.clock.now_ms();
        let mut delivered_after_ms = Vec::new();
        let (mut retried, mut dead) = (0, 0);
        for (item, completion) in items.iter().zip(&completions) {
            match completion {
                Completion::Delivered => {
                    delivered_after_ms.push(now.saturating_sub(item.event.received_at_ms))
                }
                Completion::Retry { .. } | Completion::Hold { .. } => retried += 1,
                Completion::Dead { .. } => dead += 1,
            }
        }
        let outcomes = items.iter().map(|i| i.key).zip(completions).collect();
        // A failed write leaves the rows pending under their old keys: they are delivered
        // again later (duplicates, never a loss).
        match self.spool.complete_batch(&self.route, outcomes).await {
            Ok(()) => {
                let delivered = delivered_after_ms.len() as u64;
                self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
                self.metrics.delivered.increment(delivered);
                for ms in delivered_after_ms {
                    self.metrics.latency.record(ms as f64 / 1000.0);
                }
                self.metrics.retried.increment(retried);
                self.metrics.dead_lettered.increment(dead);
            }
            Err(SpoolError::Closed) => {}
            Err(e) => {
                tracing::error!(route = %self.route, error = %e, "cannot record delivery outcomes; the events will be delivered again");
                // The rows are still due under their old keys: without a pause a spool that
                // cannot commit (full disk) would have them re-sent in a tight loop. They stay
                // in flight (skipped by the worker) until this returns.
                tokio::time::sleep(READ_ERROR_PAUSE).await;
            }
        }
    }

    /// Turns an attempt's outcome into what the spool should record ([`decide::decide`]),
    /// with the stats and logs it calls for.
    fn judge(&self, item: &DueItem, outcome: Outcome) -> Completion {
        let now_ms = self.clock.now_ms();
        let rules = decide::Rules {
            policy: &self.policy,
            ordered: self.ordered,
        };
        let attempt = decide::Attempt {
            number: item.state.attempts + 1,
            received_at_ms: item.event.received_at_ms,
            now_ms,
            jitter: (self.jitter)(),
        };
        let decision = decide::decide(rules, attempt, outcome);
        let in_ms = |wait: Option<Duration>| wait.map_or(0, |w| w.as_millis() as u64);
        let failed = match &decision.completion {
            Completion::Dead { attempts, error } => Some((*attempts, error, Then::DeadLetter)),
            Completion::Retry {
                attempts, error, ..
            } => Some((
                *attempts,
                error,
                Then::Retry {
                    in_ms: in_ms(decision.wait),
                },
            )),
            Completion::Hold {
                attempts, error, ..
            } => Some((
                *attempts,
                error,
                Then::Hold {
                    in_ms: in_ms(decision.wait),
                },
            )),
            _ => None,
        };
        if let Some((attempt, error, then)) = failed {
            self.stats.failed(RecentFailure {
                at_ms: now_ms,
                webhook_id: item.event.webhook_id.clone(),
                event_type: item.event.event_type.clone(),
                attempt,
                error: error.to_string(),
                then,
            });
        }
        match (&decision.completion, decision.wait) {
            (Completion::Dead { attempts, error }, _) => tracing::error!(
                route = %self.route,
                webhook_id = item.event.webhook_id.as_deref().unwrap_or("-"),
                event_type = item.event.event_type.as_deref().unwrap_or("-"),
                attempt = attempts,
                error = %error,
                "delivery failed for good; moved to the route's dead letters (see `hookfan dead-letters list`)"
            ),
            (
                Completion::Retry {
                    attempts, error, ..
                }
                | Completion::Hold {
                    attempts, error, ..
                },
                Some(wait),
            ) => self.warn_failure(
                item,
                *attempts,
                error,
                &format!("retrying in {}", humantime::format_duration(round_ms(wait))),
            ),
            _ => {}
        }
        decision.completion
    }

    fn warn_failure(&self, item: &DueItem, attempt: u32, error: &str, next: &str) {
        let suppressed = match self.warn.lock().expect("warn limiter lock").admit() {
            Some(suppressed) => suppressed,
            None => return,
        };
        tracing::warn!(
            route = %self.route,
            webhook_id = item.event.webhook_id.as_deref().unwrap_or("-"),
            attempt,
            error = %error,
            suppressed,
            "delivery failed; {next}"
        );
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Lets one WARN line through per [`WARN_INTERVAL`] and counts the ones it holds back.
#[derive(Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(n)`: log now, `n` lines were suppressed since the last one. `None`: stay quiet.
    fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
