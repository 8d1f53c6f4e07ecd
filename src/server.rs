//! Wiring: opens the spool, starts one delivery worker per enabled route, serves ingest, and
//! shuts all of it down in order.
//!
//! A drain (`crate::drain`) is the first step of that order without the rest: ingest and
//! sources stop, deliveries go on until SIGTERM.
//!
//! Shutdown order is what makes "200 means stored" hold at exit: (1) stop accepting and let
//! in-flight ingest requests finish, each waiting for its commit; (2) stop starting
//! deliveries and give in-flight ones `shutdown_grace`; (3) commit what is queued and close
//! the spool.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::deliver::runtime::DeliveryRuntime;
use crate::deliver::supervisor::Supervisor;
use crate::ingest::{self, IngestState};
use crate::reload::Reload;
use crate::sources::Sources;
use crate::spool::LogSpoolConfig;
use crate::spool::Spool;

/// Why the daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] ingest::tls::TlsError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot start the delivery threads: {0}")]
    DeliveryThreads(std::io::Error),
    #[error(transparent)]
    Dedup(#[from] crate::dedup::DedupError),
    #[error(transparent)]
    Routes(#[from] crate::deliver::supervisor::ApplyError),
    #[error("the config reload task failed: {0}")]
    ReloadTask(tokio::task::JoinError),
    #[error("cannot read the {listener} listener's address: {error}")]
    Address {
        listener: &'static str,
        error: std::io::Error,
    },
}

/// Runs the daemon on `listener` (webhooks; None: sources only) and `admin` (health,
/// metrics, API) until `shutdown` is cancelled, then drains and returns. With `reload`, the
/// config is reloaded when its file changes or on SIGHUP.
pub async fn run(
    config: Config,
    reload: Option<Reload>,
    listener: Option<TcpListener>,
    admin: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    // rustls is built with two crypto providers in this tree (ring, and aws-lc-rs through the
    // AWS SDK); clients that ask for the process default (Redis over rediss://) need one named.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    // Certificates first: a bad one should stop startup before anything is opened.
    let certs = match config.tls() {
        Some(files) => Some(ingest::tls::CertStore::open(files)?),
        None => None,
    };
    // The recorder first: the spool's writer registers its metrics when it starts.
    let metrics = crate::telemetry::metrics_handle();
    let spool = Spool::open_with(
        config.data_dir(),
        LogSpoolConfig::with_segment_size(config.spool_segment_bytes()),
    )?;
    tracing::info!(spool = %spool.path().display(), "spool open");
    // Counters of rare events exist from the start, so rate() and increase() see the first one.
    for outcome in ["success", "failure"] {
        metrics::counter!("hookfan_config_reloads_total", "outcome" => outcome).increment(0);
    }
    metrics::counter!("hookfan_spool_commit_failures_total").increment(0);
    metrics::gauge!("hookfan_ingest_buffered_bytes").set(0.0);
    metrics::gauge!("hookfan_ingest_connections").set(0.0);
    // Histogram samples pile up until upkeep drains them; do it whether or not anyone scrapes,
    // every second: at 50k webhooks/s that is 400 KB of samples held at most (5 s held 2 MB).
    let upkeep = {
        let (handle, stop) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };

    // Deliveries run on their own threads, below ingest's priority: a draining backlog must
    // not slow acknowledgements down.
    let delivery =
        DeliveryRuntime::start(config.delivery_nice()).map_err(ServeError::DeliveryThreads)?;
    // Shared dedup connects in the background: ingest dedups locally until Redis answers.
    let dedup = match config.dedup() {
        Some(redis) => {
            let dedup = crate::dedup::SharedDedup::new(redis, config.dedup_window())?;
            dedup.connect();
            Some(dedup)
        }
        None => None,
    };
    let mut routes = Supervisor::new(
        spool.clone(),
        config.shutdown_grace(),
        delivery.handle(),
        dedup,
    );
    let (publish, live) = watch::channel(Arc::new(routes.apply(config.clone()).await?));

    let source_stats = crate::sources::Registry::default();
    let drain = crate::drain::Drain::default();
    metrics::gauge!("hookfan_draining").set(0.0);
    let admin_task = match admin {
        Some(admin) => {
            let addr = admin.local_addr().map_err(|error| ServeError::Address {
                listener: "admin",
                error,
            })?;
            // Lets operator commands find a listener bound to port 0.
            let addr_file = config.data_dir().join(crate::admin::ADDR_FILE);
            if let Err(e) = std::fs::write(&addr_file, addr.to_string()) {
                tracing::warn!(file = %addr_file.display(), error = %e, "cannot record the admin address; `hookfan status` needs a fixed admin_listen port");
            }
            let state = crate::admin::AdminState {
                metrics,
                spool: spool.clone(),
                live: live.clone(),
                sources: source_stats.clone(),
                drain: drain.clone(),
            };
            let stop = shutdown.clone();
            tracing::info!("admin listening on http://{addr} (/healthz, /readyz, /metrics, /api)");
            Some(tokio::spawn(async move {
                axum::serve(admin, crate::admin::router(state))
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }))
        }
        None => None,
    };

    // Sources feed the same back half as ingest, on this runtime.
    let mut sources = Sources::new(spool.clone(), live.clone(), source_stats, drain.clone());
    sources.apply(&config).await;

    // Reloads stop before ingest does, so no worker is started during the drain.
    let stop_reloads = CancellationToken::new();
    let (reloader, kept) = match reload {
        Some(reload) => {
            let task = tokio::spawn(reload.run(routes, sources, publish, stop_reloads.clone()));
            (Some(task), None)
        }
        None => (None, Some((routes, sources))),
    };

    let tls = certs.as_ref().map(|store| {
        tokio::spawn(ingest::tls::watch(
            store.clone(),
            live.clone(),
            shutdown.clone(),
        ));
        store.acceptor()
    });
    match listener {
        Some(listener) => {
            let state = IngestState::new(live.clone(), spool.clone(), config.max_buffered_bytes());
            // Ingest stops at shutdown or at a drain, whichever comes first.
            let stop = shutdown.child_token();
            tokio::spawn({
                let (drain, stop) = (drain.clone(), stop.clone());
                async move {
                    tokio::select! {
                        _ = drain.requested().cancelled() => stop.cancel(),
                        _ = stop.cancelled() => {}
                    }
                }
            });
            let addr = listener.local_addr().map_err(|error| ServeError::Address {
                listener: "webhook",
                error,
            })?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(
                routes = config.routes().len(),
                max_connections = config.max_connections(),
                "ingest listening on {scheme}://{addr}"
            );
            ingest::listener::serve(
                listener,
                tls,
                ingest::router(state),
                live,
                config.max_connections(),
                stop,
                drain.clone(),
            )
            .await;
            if !shutdown.is_cancelled() {
                tracing::info!("draining: ingest stopped; deliveries go on until SIGTERM");
                shutdown.cancelled().await;
            }
            tracing::info!("ingest stopped; finishing deliveries in flight");
        }
        None => {
            tracing::info!(
                routes = config.routes().len(),
                sources = config.sources().len(),
                "no webhook listener (listen: off, or sources and no apps); receiving from sources only"
            );
            drain.ingest_closed();
            shutdown.cancelled().await;
        }
    }

    stop_reloads.cancel();
    let (mut routes, mut sources) = match reloader {
        Some(task) => task.await.map_err(ServeError::ReloadTask)?,
        None => kept.expect("routes and sources are kept when not reloading"),
    };
    // Sources stop receiving and store what they hold before the workers stop.
    sources.stop_all().await;
    routes.stop_all().await;
    drop(delivery);
    spool.close().await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    upkeep.abort();
    tracing::info!("spool closed; bye");
    Ok(())
}
