//! Sources: queues Stream delivers to natively, consumed beside the webhook listener.
//!
//! Stream can deliver an app's events to an SQS queue itself (or to an SNS topic feeding one).
//! A source receives from that queue and hands each event to the same back half as a pushed
//! webhook ([`crate::ingest::store`]): routed by `event_types` (and by path, as if posted to
//! `/sources/<name>`), stored once for every matching route with one fsync, delivered with the
//! same retries and dead letters. So hookfan needs no public endpoint, and its own downtime
//! costs nothing: the queue holds the events meanwhile.
//!
//! - [`decode`] (pure): a message body in every form Stream writes, to the event JSON.
//! - [`sqs`]: the receive loops. **A message is deleted only after the commit that stores it**
//!   (acknowledge = delete); a crash before that lets SQS deliver it again after its visibility
//!   timeout, and the dedup of the store (by webhook id, or the message's id) keeps it stored
//!   once. A message that cannot be decoded is never deleted: it is counted, logged once, and
//!   left to the queue's redrive policy. When the spool pushes back, receiving pauses.
//!
//! [`Sources`] runs one [`sqs::SqsSource`] per configured source and reconciles them with a
//! new config on reload: new sources start, removed ones stop (finishing the batch in hand),
//! changed ones restart. Nothing is lost by a stop: an undeleted message comes back. A drain
//! ([`crate::drain`]) stops them all and starts none after it.

pub mod decode;
pub mod sqs;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Source};
use crate::drain::Drain;
use crate::live::LiveView;
use crate::spool::Spool;

/// Every source's counters since start, by name (kept when a source stops), shared with the
/// admin API.
#[derive(Clone, Default)]
pub struct Registry(Arc<RwLock<BTreeMap<String, Arc<sqs::SourceStats>>>>);

impl Registry {
    /// The counters of `name`, made on first use.
    fn stats(&self, name: &str) -> Arc<sqs::SourceStats> {
        let mut map = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_string()).or_default().clone()
    }

    /// The counters of `name`, if it ever ran.
    pub fn get(&self, name: &str) -> Option<Arc<sqs::SourceStats>> {
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).cloned()
    }

    /// Names of every source that ran since start.
    pub fn names(&self) -> Vec<String> {
        let map = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.keys().cloned().collect()
    }
}

struct Running {
    source: Source,
    stop: CancellationToken,
    done: JoinHandle<()>,
}

/// The running sources, one task each.
pub struct Sources {
    spool: Spool,
    live: LiveView,
    running: HashMap<String, Running>,
    /// Kept across restarts and reloads, like routes' stats.
    stats: Registry,
    /// A drain stops every source and starts none after it.
    drain: Drain,
}

impl Sources {
    pub fn new(spool: Spool, live: LiveView, stats: Registry, drain: Drain) -> Sources {
        Sources {
            spool,
            live,
            running: HashMap::new(),
            stats,
            drain,
        }
    }

    /// Starts, stops and restarts sources so that exactly `config`'s run.
    pub async fn apply(&mut self, config: &Config) {
        let wanted: HashMap<&str, &Source> = config
            .sources()
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| wanted.get(name.as_str()) != Some(&&r.source))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let running = self.running.remove(&name).expect("listed above");
            tracing::info!(source = %name, "stopping the source (removed or changed); messages it has not stored stay in the queue");
            running.stop.cancel();
            let _ = running.done.await;
        }
        for (name, source) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            if self.drain.is_requested() {
                tracing::info!(source = %name, "not starting the source: hookfan is draining");
                continue;
            }
            let stats = self.stats.stats(name);
            let consumer = sqs::SqsSource::new(source, stats).await;
            // Stopped by a drain too; tracked, so the drain knows when every source is done.
            let stop = self.drain.requested().child_token();
            let done = self.drain.sources().spawn(consumer.run(
                self.live.clone(),
                self.spool.clone(),
                stop.clone(),
            ));
            tracing::info!(source = %name, queue = %source.sqs.queue_url, "source started");
            self.running.insert(
                name.to_string(),
                Running {
                    source: source.clone(),
                    stop,
                    done,
                },
            );
        }
    }

    /// Stops every source; each finishes storing (and deleting) the batch in hand.
    pub async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        for (_, running) in self.running.drain() {
            let _ = running.done.await;
        }
    }
}
