//! The running configuration, and hot reload.
//!
//! Ingest and the admin API read a [`Live`] snapshot per request from a `watch` channel; a
//! reload builds the next snapshot and swaps it in whole, so a request sees one config from
//! start to end and no connection is dropped. [`Routes`] owns one delivery worker per enabled
//! route and reconciles them with a new config:
//!
//! - a new or re-enabled route gets a worker;
//! - a route whose destination changed (URL, queue, retry, concurrency, ...) has its worker
//!   stopped (in-flight deliveries get `shutdown_grace`) and a new one started: events still
//!   pending are delivered to the new destination;
//! - a removed or disabled route's worker is stopped. Its pending events stay on disk (the
//!   queue is keyed by route name) and resume if a route of that name comes back;
//! - a route whose `event_types` changed keeps its worker: only ingest reads filters.
//!
//! A reload goes through the same `config::load` as startup. An invalid file changes nothing:
//! the error (with lines and columns) is logged, counted, and the old config keeps running.
//! `listen`, `admin_listen`, `data_dir`, `max_connections`, `max_buffered_bytes` and
//! `delivery_nice` need a restart; a change to them is logged and ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Route};
use crate::dedup::SharedDedup;
use crate::deliver::{RouteStats, RouteWorker};
use crate::ingest::passthrough::Passthroughs;
use crate::sinks::Sink;
use crate::sources::Sources;
use crate::spool::Spool;

/// What ingest and the admin API need, as of the latest successful (re)load.
pub struct Live {
    pub config: Arc<Config>,
    /// Per enabled route: its worker's wake-up, which the spool's writer notifies once per
    /// committed group that gives the route events ([`Spool::route_waker`]); the admin API
    /// reads it as "this route runs".
    pub notifiers: HashMap<String, Arc<Notify>>,
    /// Per enabled route: `hookfan_events_routed_total`, registered once here rather than
    /// looked up by its label on every stored event.
    pub routed: HashMap<String, metrics::Counter>,
    /// Per route ever run since start: its delivery counters.
    pub stats: HashMap<String, Arc<RouteStats>>,
    /// The synchronous hooks' handlers, by exact path.
    pub passthrough: Arc<Passthroughs>,
    /// Dedup shared with other replicas (Redis), when configured; restart-only.
    pub dedup: Option<Arc<SharedDedup>>,
}

pub type LiveView = watch::Receiver<Arc<Live>>;

/// How often the config file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

struct Running {
    route: Route,
    stop: CancellationToken,
    done: JoinHandle<()>,
}

/// The delivery workers, one per enabled route.
pub struct Routes {
    spool: Spool,
    grace: Duration,
    /// Where workers run: the delivery runtime (see `deliver::runtime`).
    runtime: Handle,
    running: HashMap<String, Running>,
    /// Kept across worker restarts so no wake-up and no counter is lost.
    notifiers: HashMap<String, Arc<Notify>>,
    stats: HashMap<String, Arc<RouteStats>>,
    /// The passthrough handlers last published; unchanged blocks keep their client and slots.
    passthrough: Arc<Passthroughs>,
    dedup: Option<Arc<SharedDedup>>,
}

impl Routes {
    pub fn new(
        spool: Spool,
        grace: Duration,
        runtime: Handle,
        dedup: Option<Arc<SharedDedup>>,
    ) -> Routes {
        Routes {
            spool,
            grace,
            runtime,
            running: HashMap::new(),
            notifiers: HashMap::new(),
            stats: HashMap::new(),
            passthrough: Arc::default(),
            dedup,
        }
    }

    /// Starts, stops and restarts workers so that exactly `config`'s enabled routes run, and
    /// returns the snapshot to publish. Fails (having changed nothing) only if a new sink
    /// cannot be built.
    pub async fn apply(&mut self, config: Arc<Config>) -> anyhow::Result<Live> {
        let wanted: HashMap<&str, &Route> = config
            .routes
            .iter()
            .filter(|r| r.enabled)
            .map(|r| (r.name.as_str(), r))
            .collect();
        // Build every new sink and handler first, so a failure leaves what runs alone.
        let passthrough = Arc::new(Passthroughs::build(
            &config.passthrough,
            Some(&self.passthrough),
        )?);
        let mut sinks = HashMap::new();
        for (name, route) in &wanted {
            let unchanged = self
                .running
                .get(*name)
                .is_some_and(|r| r.route.destination == route.destination);
            if !unchanged {
                sinks.insert(
                    name.to_string(),
                    Arc::new(Sink::build(&route.destination).await?),
                );
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
        for route in config.routes.iter().filter(|r| !r.enabled) {
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
            notifiers: self
                .running
                .keys()
                .map(|n| (n.clone(), self.notifiers[n].clone()))
                .collect(),
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
        let notify = self
            .notifiers
            .entry(name.clone())
            .or_insert_with(|| self.spool.route_waker(&name))
            .clone();
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

/// What hot reload watches: the config file, the text the running config came from, and a
/// SIGHUP stream registered up front (so a SIGHUP right after start reloads, not kills).
pub struct Reload {
    path: PathBuf,
    loaded: Vec<u8>,
    hup: tokio::signal::unix::Signal,
}

impl Reload {
    pub fn new(path: PathBuf, loaded_text: String) -> std::io::Result<Reload> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Reload {
            path,
            loaded: loaded_text.into_bytes(),
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Reloads on SIGHUP and when the file changes, until `shutdown`; publishes each valid
    /// config through `publish` and applies its sources. Returns the workers and sources for
    /// the final drain.
    pub async fn run(
        mut self,
        mut routes: Routes,
        mut sources: Sources,
        publish: watch::Sender<Arc<Live>>,
        shutdown: CancellationToken,
    ) -> (Routes, Sources) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.hup.recv() => "SIGHUP",
                _ = tick.tick() => {
                    // Editors often replace the file: compare content, not inode or mtime.
                    match std::fs::read(&self.path) {
                        Ok(now) if now != self.loaded => {
                            self.loaded = now;
                            "file changed"
                        }
                        _ => continue,
                    }
                }
            };
            if trigger == "SIGHUP" {
                if let Ok(now) = std::fs::read(&self.path) {
                    self.loaded = now;
                }
            }
            reload(&self.path, trigger, &mut routes, &mut sources, &publish).await;
        }
        (routes, sources)
    }
}

async fn reload(
    path: &Path,
    trigger: &str,
    routes: &mut Routes,
    sources: &mut Sources,
    publish: &watch::Sender<Arc<Live>>,
) {
    let current = publish.borrow().config.clone();
    let mut next = match config::load(path) {
        Ok(next) => {
            for warning in next.render_warnings(&path.display().to_string()) {
                tracing::warn!("config reload ({trigger}): {warning}");
            }
            next
        }
        Err(e) => {
            metrics::counter!("hookfan_config_reloads_total", "outcome" => "failure").increment(1);
            tracing::error!(
                "config reload ({trigger}) failed; the previous config keeps running:\n{e}"
            );
            return;
        }
    };
    for (what, changed) in [
        ("listen", next.listen != current.listen),
        ("admin_listen", next.admin_listen != current.admin_listen),
        ("data_dir", next.data_dir != current.data_dir),
        (
            "spool_segment_bytes",
            next.spool_segment_bytes != current.spool_segment_bytes,
        ),
        (
            "tls (on or off)",
            next.tls.is_some() != current.tls.is_some(),
        ),
        (
            "max_connections",
            next.max_connections != current.max_connections,
        ),
        (
            "max_buffered_bytes",
            next.max_buffered_bytes != current.max_buffered_bytes,
        ),
        ("delivery_nice", next.delivery_nice != current.delivery_nice),
        ("dedup", next.dedup != current.dedup),
    ] {
        if changed {
            tracing::warn!("config reload: {what} changed; restart hookfan to apply it (kept the running value)");
        }
    }
    // The running buffer budget stays; a body limit it could never hold would answer every
    // large or chunked webhook 503 until a restart.
    if next.max_body_bytes > current.max_buffered_bytes {
        metrics::counter!("hookfan_config_reloads_total", "outcome" => "failure").increment(1);
        tracing::error!(
            "config reload ({trigger}) failed; the previous config keeps running: max_body_bytes ({}) is more than the running max_buffered_bytes ({}), which only a restart changes",
            next.max_body_bytes,
            current.max_buffered_bytes
        );
        return;
    }
    // Likewise the running spool's segments: a webhook must fit in half of one.
    if 2 * next.max_body_bytes as u64 > current.spool_segment_bytes {
        metrics::counter!("hookfan_config_reloads_total", "outcome" => "failure").increment(1);
        tracing::error!(
            "config reload ({trigger}) failed; the previous config keeps running: max_body_bytes ({}) is more than half the running spool_segment_bytes ({}), which only a restart changes",
            next.max_body_bytes,
            current.spool_segment_bytes
        );
        return;
    }
    next.listen = current.listen;
    next.admin_listen = current.admin_listen;
    next.data_dir = current.data_dir.clone();
    next.spool_segment_bytes = current.spool_segment_bytes;
    next.max_connections = current.max_connections;
    next.max_buffered_bytes = current.max_buffered_bytes;
    next.delivery_nice = current.delivery_nice;
    next.dedup = current.dedup.clone();
    if next.tls.is_some() != current.tls.is_some() {
        next.tls = current.tls.clone();
    }
    match routes.apply(Arc::new(next)).await {
        Ok(live) => {
            let n = live.config.routes.len();
            let config = live.config.clone();
            publish.send_replace(Arc::new(live));
            sources.apply(&config).await;
            metrics::counter!("hookfan_config_reloads_total", "outcome" => "success").increment(1);
            tracing::info!(routes = n, "config reloaded ({trigger})");
        }
        Err(e) => {
            metrics::counter!("hookfan_config_reloads_total", "outcome" => "failure").increment(1);
            tracing::error!(error = %e, "config reload ({trigger}) failed; the previous config keeps running");
        }
    }
}
