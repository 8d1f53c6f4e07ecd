//! The running configuration as ingest and the admin API see it: a [`Live`] snapshot per
//! request from a `watch` channel. A reload (`reload.rs`) builds the next snapshot and swaps
//! it in whole, so a request sees one config from start to end and no connection is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::dedup::SharedDedup;
use crate::deliver::RouteStats;
use crate::ingest::passthrough::Passthroughs;

/// What ingest and the admin API need, as of the latest successful (re)load.
pub struct Live {
    pub config: Arc<Config>,
    /// The routes whose delivery worker runs, as the supervisor
    /// ([`crate::deliver::supervisor::Supervisor`]) last started them: the enabled ones.
    pub running: HashSet<String>,
    /// Per enabled route: `hookfan_events_routed_total`, registered once here rather than
    /// looked up by its label on every stored event.
    pub routed: HashMap<String, metrics::Counter>,
    /// `hookfan_events_unrouted_total`, registered once as `routed` is.
    pub unrouted: metrics::Counter,
    /// Per route ever run since start: its delivery counters.
    pub stats: HashMap<String, Arc<RouteStats>>,
    /// The synchronous hooks' handlers, by exact path.
    pub passthrough: Arc<Passthroughs>,
    /// Dedup shared with other replicas (Redis), when configured; restart-only.
    pub dedup: Option<Arc<SharedDedup>>,
}

pub type LiveView = watch::Receiver<Arc<Live>>;
