//! An SQS source: receive loops over one queue, each message decoded ([`super::decode`]),
//! stored through [`crate::ingest::store`], and deleted only once stored.
//!
//! Per receive loop: a long poll for up to 10 messages; every message of the batch is stored
//! concurrently (so they share the spool's commit); those stored (or found duplicate, or taken
//! by no route) are deleted in one `DeleteMessageBatch`. What is left in the queue:
//!
//! - a message that cannot be decoded, or whose signature does not match: never deleted,
//!   counted, logged once, left to the queue's redrive policy;
//! - a message the spool could not take (overloaded, disk full): the loop pauses with backoff
//!   instead of receiving what it cannot store, and SQS offers the message again after its
//!   visibility timeout.
//!
//! Receive and delete errors (throttling, network, a missing queue) back off from 1 s to 30 s
//! with jitter: never a busy loop. A failed delete costs a duplicate receive, which the store's
//! dedup absorbs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, QueueAttributeName};
use tokio_util::sync::CancellationToken;

use super::decode::{self, Undecodable};
use crate::config::{self, App};
use crate::ingest::{self, NotStored, Stored};
use crate::live::{Live, LiveView};
use crate::spool::{now_ms, Spool, StoredEvent};

/// How long one SQS call may take beyond its long poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff after a failed call or a spool that pushed back.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the queue's depth is read for the lag gauge.
const LAG_INTERVAL: Duration = Duration::from_secs(30);
/// Undecodable message ids remembered so that each is logged once.
const LOGGED_IDS: usize = 10_000;

/// A source's counters, kept across restarts for metrics and `/api/sources`.
pub struct SourceStats {
    /// Messages received (each receipt of a message counts).
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub unrouted: AtomicU64,
    pub undecodable: AtomicU64,
    /// Messages received and not yet stored or given up on.
    pub in_flight: AtomicI64,
    /// The queue's `ApproximateNumberOfMessages` when last read; negative until then.
    pub queue_messages: AtomicI64,
    /// The last failed call or refused message, and when (ms since the epoch).
    pub last_error: Mutex<Option<(String, u64)>>,
    /// Undecodable messages already logged.
    logged: Mutex<HashSet<String>>,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            received: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unrouted: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            queue_messages: AtomicI64::new(-1),
            last_error: Mutex::new(None),
            logged: Mutex::new(HashSet::new()),
        }
    }
}

impl SourceStats {
    fn error(&self, why: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((why, now_ms()));
    }

    /// Whether this undecodable message has not been logged yet (then it now is).
    fn first_time(&self, message_id: &str) -> bool {
        let mut logged = self
            .logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.len() >= LOGGED_IDS {
            logged.clear();
        }
        logged.insert(message_id.to_string())
    }
}

/// What to do with a received message once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// Stored (or a duplicate, or routed nowhere): delete it from the queue.
    Delete,
    /// Never decodable: leave it to the queue's redrive policy.
    Leave,
    /// Not stored now: leave it, and pause receiving.
    Retry,
}

pub struct SqsSource {
    name: String,
    config: config::SqsSource,
    path: String,
    client: aws_sdk_sqs::Client,
    stats: Arc<SourceStats>,
}

impl SqsSource {
    pub async fn new(source: &config::Source, stats: Arc<SourceStats>) -> SqsSource {
        let sdk = crate::aws::sdk_config(crate::aws::Endpoint {
            region: source.sqs.region.as_deref(),
            endpoint_url: source.sqs.endpoint_url.as_deref(),
            role_arn: source.sqs.role_arn.as_deref(),
            attempt_timeout: source.sqs.wait_time + CALL_TIMEOUT,
        })
        .await;
        for outcome in [
            "stored",
            "duplicate",
            "unrouted",
            "undecodable",
            "not_stored",
        ] {
            metrics::counter!("hookfan_source_messages_total", "source" => source.name.clone(), "outcome" => outcome)
                .increment(0);
        }
        SqsSource {
            name: source.name.clone(),
            config: source.sqs.clone(),
            path: source.path(),
            client: aws_sdk_sqs::Client::new(&sdk),
            stats,
        }
    }

    /// Runs the receive loops and the lag poller until `stop`; each loop finishes the batch
    /// in hand (stores and deletes it) before returning.
    pub async fn run(self, live: LiveView, spool: Spool, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..this.config.concurrency {
            tasks.spawn(
                this.clone()
                    .receive_loop(live.clone(), spool.clone(), stop.clone()),
            );
        }
        tasks.spawn(this.clone().poll_lag(stop.clone()));
        while tasks.join_next().await.is_some() {}
    }

    async fn receive_loop(self: Arc<Self>, live: LiveView, spool: Spool, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let receive = self
                .client
                .receive_message()
                .queue_url(&self.config.queue_url)
                // After a failure, one message at a time until one is stored: each receive counts
                // toward the queue's maxReceiveCount, so a long outage of the spool must not
                // walk whole batches into the dead-letter queue.
                .max_number_of_messages(if failures > 0 { 1 } else { 10 })
                .wait_time_seconds(self.config.wait_time.as_secs() as i32)
                .set_visibility_timeout(self.config.visibility_timeout.map(|t| t.as_secs() as i32))
                .message_attribute_names("All")
                .send();
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                r = receive => r,
            };
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    failures += 1;
                    let why = crate::sinks::error_chain(&e);
                    metrics::counter!("hookfan_source_errors_total", "source" => self.name.clone(), "call" => "receive").increment(1);
                    tracing::warn!(source = %self.name, error = %why, "cannot receive from the source queue; retrying with backoff");
                    self.stats.error(format!("receive: {why}"));
                    if !pause(&stop, failures).await {
                        return;
                    }
                    continue;
                }
            };
            if messages.is_empty() {
                failures = 0;
                continue;
            }
            self.stats
                .received
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            self.stats
                .in_flight
                .fetch_add(messages.len() as i64, Ordering::Relaxed);
            // All of the batch at once, so that they share the spool's commit.
            let snapshot = live.borrow().clone();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, message) in messages.iter().cloned().enumerate() {
                let (this, live, spool) = (self.clone(), snapshot.clone(), spool.clone());
                tasks.spawn(async move { (i, this.handle(&live, &spool, &message).await) });
            }
            let mut handled = vec![Disposition::Retry; messages.len()];
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, disposition)) = joined {
                    handled[i] = disposition;
                }
            }
            self.stats
                .in_flight
                .fetch_sub(messages.len() as i64, Ordering::Relaxed);
            let done: Vec<&Message> = messages
                .iter()
                .zip(&handled)
                .filter(|(_, d)| **d == Disposition::Delete)
                .map(|(m, _)| m)
                .collect();
            let deleted = self.delete(&done).await;
            if handled.contains(&Disposition::Retry) || !deleted {
                failures += 1;
                if !pause(&stop, failures).await {
                    return;
                }
            } else {
                failures = 0;
            }
        }
    }

    /// Decodes and stores one message; says what to do with it in the queue.
    async fn handle(&self, live: &Live, spool: &Spool, message: &Message) -> Disposition {
        let message_id = message.message_id().unwrap_or("-");
        let event = match self.event(live, message) {
            Ok(event) => event,
            Err(why) => {
                self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
                self.count("undecodable");
                metrics::counter!("hookfan_source_undecodable_total", "source" => self.name.clone(), "reason" => why.reason()).increment(1);
                self.stats.error(format!("message {message_id}: {why}"));
                if self.stats.first_time(message_id) {
                    tracing::warn!(source = %self.name, %message_id, reason = %why, "cannot decode a message of the source queue; it is left in the queue for its redrive policy (logged once per message)");
                }
                return Disposition::Leave;
            }
        };
        let webhook_id = event.webhook_id.clone().unwrap_or_default();
        match ingest::store(live, spool, event.borrowed()).await {
            Ok(Stored::Stored { .. }) => {
                self.stats.stored.fetch_add(1, Ordering::Relaxed);
                self.count("stored");
                Disposition::Delete
            }
            Ok(Stored::Duplicate) => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                self.count("duplicate");
                tracing::debug!(source = %self.name, %webhook_id, "duplicate; deleted from the queue, not stored again");
                Disposition::Delete
            }
            Ok(Stored::Unrouted) => {
                self.stats.unrouted.fetch_add(1, Ordering::Relaxed);
                self.count("unrouted");
                Disposition::Delete
            }
            Err(e) => {
                self.count("not_stored");
                self.stats.error(format!("not stored: {e}"));
                let level_error = matches!(e, NotStored::Spool(_));
                if level_error {
                    tracing::error!(source = %self.name, %webhook_id, error = %e, "cannot store a message of the source queue; it stays in the queue and receiving pauses");
                } else {
                    tracing::warn!(source = %self.name, %webhook_id, error = %e, "cannot store a message of the source queue in time; it stays in the queue and receiving pauses");
                }
                Disposition::Retry
            }
        }
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!("hookfan_source_messages_total", "source" => self.name.clone(), "outcome" => outcome).increment(1);
    }

    /// The stored form of a message: its event, its id for dedup, the signature to forward.
    fn event(&self, live: &Live, message: &Message) -> Result<StoredEvent, Undecodable> {
        let decoded = decode::decode(message.body().unwrap_or(""), live.config.max_body_bytes())?;
        let attribute = |names: &[&str]| {
            let attributes = message.message_attributes()?;
            names
                .iter()
                .find_map(|n| attributes.get(*n)?.string_value())
                .map(str::to_string)
        };
        let api_key = attribute(&["api_key", "X-Api-Key", "x-api-key"]);
        let signature = match attribute(&["signature", "X-Signature", "x-signature"]) {
            Some(signature) => {
                verify_signature(
                    live.config.apps(),
                    api_key.as_deref(),
                    &decoded.body,
                    &signature,
                )?;
                signature
            }
            // An IAM-guarded queue needs no signature, and hookfan never signs what it could not
            // check (anyone allowed to send to the queue could have written it): an HTTP route
            // that needs one re-signs with its own `api_secret`.
            None => String::new(),
        };
        let webhook_id = attribute(&["webhook_id", "X-Webhook-Id", "x-webhook-id"]).or_else(|| {
            match (&decoded.sns_message_id, message.message_id()) {
                (Some(id), _) => Some(format!("sns:{id}")),
                (None, Some(id)) => Some(format!("sqs:{id}")),
                (None, None) => None,
            }
        });
        Ok(StoredEvent {
            webhook_id,
            received_at_ms: now_ms(),
            api_key,
            signature,
            event_type: decoded.event_type,
            body: decoded.body,
            path: Some(self.path.clone()),
            trace: None,
        })
    }

    /// Deletes the stored messages in one batch; false when the call or an entry failed (they
    /// come back and are found duplicate).
    async fn delete(&self, messages: &[&Message]) -> bool {
        if messages.is_empty() {
            return true;
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        let result = self
            .client
            .delete_message_batch()
            .queue_url(&self.config.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failed = match result {
            Ok(out) => {
                for entry in &out.failed {
                    tracing::warn!(source = %self.name, code = %entry.code, message = ?entry.message, "a stored message could not be deleted from the source queue; it will be received again and found duplicate within dedup_window");
                }
                if let Some(entry) = out.failed.first() {
                    self.stats.error(format!("delete: {}", entry.code));
                }
                out.failed.len()
            }
            Err(e) => {
                let why = crate::sinks::error_chain(&e);
                tracing::warn!(source = %self.name, error = %why, "cannot delete stored messages from the source queue; they will be received again and found duplicate");
                self.stats.error(format!("delete: {why}"));
                messages.len()
            }
        };
        if failed > 0 {
            metrics::counter!("hookfan_source_errors_total", "source" => self.name.clone(), "call" => "delete").increment(1);
        }
        failed == 0
    }

    /// Reads the queue's depth every [`LAG_INTERVAL`] into `hookfan_source_queue_messages`.
    async fn poll_lag(self: Arc<Self>, stop: CancellationToken) {
        // Registered at the first depth read: until then the series is absent, not a 0 that
        // no read gave.
        let mut gauge = None;
        let mut tick = tokio::time::interval(LAG_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let result = self
                .client
                .get_queue_attributes()
                .queue_url(&self.config.queue_url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await;
            if let Ok(out) = result {
                let depth = out
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                    .and_then(|v| v.parse::<f64>().ok());
                if let Some(depth) = depth {
                    // The API's figure first: whoever has seen the metric then finds it in
                    // /api/sources too.
                    self.stats
                        .queue_messages
                        .store(depth as i64, Ordering::Relaxed);
                    gauge
                        .get_or_insert_with(|| {
                            metrics::gauge!("hookfan_source_queue_messages", "source" => self.name.clone())
                        })
                        .set(depth);
                }
            }
        }
    }
}

/// Checks a message's signature against the app its key names (or the only app). With no
/// apps configured there is nothing to check against: the queue's IAM policy is the guard.
fn verify_signature(
    apps: &[App],
    api_key: Option<&str>,
    body: &[u8],
    signature: &str,
) -> Result<(), Undecodable> {
    if apps.is_empty() {
        return Ok(());
    }
    let app = only_app(apps, api_key).ok_or_else(|| {
        Undecodable::BadSignature("the message's api_key names no configured app".into())
    })?;
    crate::ingest::verify::check_signature(app.signing_key(), body, signature)
        .map_err(|e| Undecodable::BadSignature(e.to_string()))
}

/// The app a key names, or the only app when no key is given.
fn only_app<'a>(apps: &'a [App], api_key: Option<&str>) -> Option<&'a App> {
    match (api_key, apps) {
        (Some(key), _) => apps.iter().find(|a| a.api_key() == key),
        (None, [only]) => Some(only),
        (None, _) => None,
    }
}

/// Waits out the backoff after `failures` failures in a row; false when stopped meanwhile.
async fn pause(stop: &CancellationToken, failures: u32) -> bool {
    let ceiling = BACKOFF_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(5))
        .min(BACKOFF_MAX);
    let delay = ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0);
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::stream;

    fn app(key: &str, secret: &str) -> App {
        App::new(key, Secret::new(secret))
    }

    #[test]
    fn a_signature_attribute_is_checked_against_the_app_its_key_names() {
        let body = br#"{"type":"message.new"}"#;
        let apps = [app("a", "secret-a"), app("b", "secret-b")];
        let by_b = stream::sign(b"secret-b", body);
        // (apps, api_key attribute, signature, accepted)
        let table: &[(&[App], Option<&str>, &str, bool)] = &[
            (&apps, Some("b"), &by_b, true),
            (&apps, Some("a"), &by_b, false),
            (&apps, Some("c"), &by_b, false),
            (&apps, None, &by_b, false), // two apps and no key: nothing to pick by
            (&apps[1..], None, &by_b, true),
            (&[], None, "not even hex", true), // no apps: the queue's IAM policy is the guard
        ];
        for (apps, key, signature, accepted) in table {
            let got = verify_signature(apps, *key, body, signature);
            assert_eq!(got.is_ok(), *accepted, "{key:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.reason(), "bad_signature");
            }
        }
    }
}
