//! The supervisor of the delivery workers: one [`RouteWorker`] per enabled route, reconciled
//! with each config a reload publishes, and the one answer to "is this route running".
//!
//! - a new or re-enabled route gets a worker;
//! - a route whose destination changed (URL, queue, retry, concurrency, ...) has its worker
//!   stopped (in-flight deliveries get `shutdown_grace`) and a new one started: events still
//!   pending are delivered to the new destination;
//! - a removed or disabled route's worker is stopped. Its pending events stay on disk (the
//!   queue is keyed by route name) and resume if a route of that name comes back;
//! - a route whose `event_types`, `paths`, `match` or `not` changed keeps its worker: only
//!   ingest reads filters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RouteStats, RouteWorker};
use crate::config::{Config, Route};
use crate::dedup::SharedDedup;
use crate::ingest::passthrough::Passthroughs;
use crate::live::Live;
use crate::sinks::{Sink, SinkError};
use crate::spool::Spool;

struct Running {
    route: Route,
    stop: CancellationToken,
    done: JoinHandle<()>,
}

/// Why [`Supervisor::apply`] could not run a config; it changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("passthrough: cannot build the HTTP client: {0}")]
    Passthrough(reqwest::Error),
    #[error("route {route}: {error}")]
    Sink { route: String, error: SinkError },
}

/// The delivery workers, one per enabled route.
pub struct Supervisor {
    spool: Spool,
    grace: Duration,
    /// Where workers run: the delivery runtime (see `deliver::runtime`).
    runtime: Handle,
    running: HashMap<String, Running>,
    /// Kept across worker restarts so no counter is lost.
    stats: HashMap<String, Arc<RouteStats>>,
    /// The passthrough handlers last published; unchanged blocks keep their client and slots.
    passthrough: Arc<Passthroughs>,
    dedup: Option<Arc<SharedDedup>>,
}

impl Supervisor {
    pub fn new(
        spool: Spool,
        grace: Duration,
        runtime: Handle,
        dedup: Option<Arc<SharedDedup>>,
    ) -> Supervisor {
        Supervisor {
            spool,
            grace,
            runtime,
            running: HashMap::new(),
            stats: HashMap::new(),
            passthrough: Arc::default(),
            dedup,
        }
    }

    /// Starts, stops and restarts workers so that exactly `config`'s enabled routes run, and
    /// returns the snapshot to publish. Fails (having changed nothing) only if a new sink
    /// or passthrough client cannot be built.
    pub async fn apply(&mut self, config: Arc<Config>) -> Result<Live, ApplyError> {
        let wanted: HashMap<&str, &Route> = config
            .routes()
            .iter()
            .filter(|r| r.enabled)
            .map(|r| (r.name.as_str(), r))
            .collect();
        // Build every new sink and handler first, so a failure leaves what runs alone.
        let passthrough = Arc::new(
            Passthroughs::build(config.passthrough(), Some(&self.passthrough))
                .map_err(ApplyError::Passthrough)?,
        );
        let mut sinks = HashMap::new();
        for (name, route) in &wanted {
            let unchanged = self
                .running
                .get(*name)
                .is_some_and(|r| r.route.destination == route.destination);
            if !unchanged {
                let sink =
                    Sink::build(&route.destination)
                        .await
                        .map_err(|error| ApplyError::Sink {
                            route: name.to_string(),
                            error,
                        })?;
                sinks.insert(name.to_string(), Arc::new(sink));
            }
        }
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, _)| sinks.contains_key(*name) || !wanted.contains_key(name.as_str()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            let running = self.running.remove(&name).expect("listed above");
            let why = if wanted.contains_key(name.as_str()) {
                "its destination changed"
            } else {
                "it was removed or disabled; its pending events stay on disk"
            };
            tracing::info!(route = %name, "stopping the route's worker: {why}");
            running.stop.cancel();
            let _ = running.done.await;
        }
        for (name, sink) in sinks {
            let route = wanted[name.as_str()].clone();
            self.start(route, sink);
        }
        for (name, running) in self.running.iter_mut() {
            // Kept workers: remember the new route (its filter may have changed).
            running.route = wanted[name.as_str()].clone();
        }
        for route in config.routes().iter().filter(|r| !r.enabled) {
            tracing::info!(route = %route.name, "route disabled: it takes no events; what it already holds stays on disk");
        }
        Ok(Live {
            routed: self
                .running
                .keys()
                .map(|n| {
                    let counter =
                        metrics::counter!("hookfan_events_routed_total", "route" => n.clone());
                    (n.clone(), counter)
                })
                .collect(),
            unrouted: metrics::counter!("hookfan_events_unrouted_total"),
            running: self.running.keys().cloned().collect(),
            stats: self.stats.clone(),
            passthrough: {
                self.passthrough = passthrough.clone();
                passthrough
            },
            dedup: self.dedup.clone(),
            config,
        })
    }

    fn start(&mut self, route: Route, sink: Arc<Sink>) {
        let name = route.name.clone();
        // The spool keeps one wake-up per name, so a restarted worker gets the same one and
        // no wake-up given meanwhile is lost.
        let notify = self.spool.route_waker(&name);
        let stats = self.stats.entry(name.clone()).or_default().clone();
        let stop = CancellationToken::new();
        let worker = RouteWorker {
            route: Arc::new(route.clone()),
            sink,
            spool: self.spool.clone(),
            notify: notify.clone(),
            shutdown: stop.clone(),
            grace: self.grace,
            stats,
            clock: self.spool.clock(),
            jitter: rand::random::<f64>,
        };
        let done = self.runtime.spawn(worker.run());
        // Pending events may be waiting already (restart, or a route that came back).
        notify.notify_one();
        self.running.insert(name, Running { route, stop, done });
    }

    /// Stops every worker; in-flight deliveries get the grace period.
    pub async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        for (_, running) in self.running.drain() {
            let _ = running.done.await;
        }
    }
}
