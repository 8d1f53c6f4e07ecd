//! Draining a replica before it is retired (`hookfan drain`, `POST /api/drain`).
//!
//! A drain stops everything that brings events in and nothing that sends them out:
//!
//! 1. the webhook listener stops accepting and closes its socket, so new connections are
//!    refused and the load balancer moves traffic to the other replicas (`/readyz` answers 503
//!    from the moment the drain is asked for); requests in flight finish, each acknowledged
//!    only once stored, as at shutdown;
//! 2. every source stops receiving, after storing (and deleting) the batch in hand;
//! 3. delivery goes on until the spool is empty; `hookfan drain` watches the route counts and
//!    exits 0 once nothing comes in any more and nothing is pending or dead.
//!
//! A drain lasts until the process ends (SIGTERM, as usual): a restart takes webhooks again.
//! The state is one value shared by the admin API, ingest and sources; it holds no events.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The drain state of one process; clones share it.
#[derive(Clone, Default)]
pub struct Drain {
    requested: CancellationToken,
    ingest_closed: CancellationToken,
    /// Every running source's task: empty once they have all stopped.
    sources: TaskTracker,
}

impl Drain {
    /// Asks for the drain; true the first time.
    pub fn request(&self) -> bool {
        let first = !self.requested.is_cancelled();
        self.requested.cancel();
        if first {
            metrics::gauge!("hookfan_draining").set(1.0);
            tracing::info!("drain requested: the webhook listener closes and sources stop; deliveries go on until the spool is empty");
        }
        first
    }

    /// Whether the drain was asked for.
    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Cancelled when the drain is asked for (ingest and sources stop on it).
    pub fn requested(&self) -> &CancellationToken {
        &self.requested
    }

    /// The webhook listener has closed its socket (or there is none): called by the server.
    pub fn ingest_closed(&self) {
        self.ingest_closed.cancel();
    }

    /// The task tracker sources run on, so the drain knows when they have all stopped.
    pub fn sources(&self) -> &TaskTracker {
        &self.sources
    }

    /// Whether events may still come in: not drained, or the listener or a source is still
    /// finishing.
    pub fn accepting(&self) -> bool {
        !(self.is_requested() && self.ingest_closed.is_cancelled() && self.sources.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_until_asked_and_until_listener_and_sources_have_stopped() {
        let drain = Drain::default();
        let source_stop = drain.requested().child_token();
        let source = drain.sources().spawn({
            let stop = source_stop.clone();
            async move { stop.cancelled().await }
        });
        assert!(drain.accepting(), "accepting before a drain");
        assert!(!drain.is_requested());

        assert!(
            drain.request(),
            "the first request is the one that starts the drain"
        );
        assert!(!drain.request(), "a second request changes nothing");
        assert!(source_stop.is_cancelled(), "sources are told to stop");
        assert!(drain.accepting(), "the listener has not closed yet");

        drain.ingest_closed();
        source.await.expect("source task");
        assert!(
            !drain.accepting(),
            "listener closed and the source finished: nothing comes in"
        );
    }

    #[test]
    fn without_sources_the_closed_listener_is_enough() {
        let drain = Drain::default();
        drain.request();
        assert!(drain.accepting());
        drain.ingest_closed();
        assert!(!drain.accepting());
    }
}
