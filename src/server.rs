//! Wiring: opens the spool, starts one delivery worker per enabled route, serves ingest, and
//! shuts all of it down in order.
//!
//! Shutdown order is what makes "200 means stored" hold at exit: (1) stop accepting and let
//! in-flight ingest requests finish, each waiting for its commit; (2) stop starting
//! deliveries and give in-flight ones `shutdown_grace`; (3) commit what is queued and close
//! the spool.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::deliver::RouteWorker;
use crate::ingest::{self, IngestState};
use crate::sinks::Sink;
use crate::spool::Spool;

/// Runs the daemon on `listener` (webhooks) and `admin` (health, metrics) until `shutdown` is
/// cancelled, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let spool = Spool::open(&config.data_dir)?;
    tracing::info!(spool = %spool.path().display(), "spool open");
    let metrics = crate::telemetry::metrics_handle();

    let workers = TaskTracker::new();
    let stop_delivery = CancellationToken::new();
    let mut notifiers = HashMap::new();
    let mut stats = HashMap::new();
    for route in config.routes.iter() {
        if !route.enabled {
            tracing::info!(route = %route.name, "route disabled: it takes no events; what it already holds stays on disk");
            continue;
        }
        let notify = Arc::new(Notify::new());
        notifiers.insert(route.name.clone(), notify.clone());
        let route_stats = Arc::new(crate::deliver::RouteStats::default());
        stats.insert(route.name.clone(), route_stats.clone());
        let worker = RouteWorker {
            route: Arc::new(route.clone()),
            sink: Arc::new(Sink::build(&route.destination).await?),
            spool: spool.clone(),
            notify,
            shutdown: stop_delivery.clone(),
            grace: config.shutdown_grace,
            stats: route_stats,
        };
        workers.spawn(worker.run());
    }

    let notifiers = Arc::new(notifiers);
    let state = IngestState {
        config: config.clone(),
        spool: spool.clone(),
        notifiers: notifiers.clone(),
    };
    let admin_task = match admin {
        Some(admin) => {
            let addr = admin.local_addr()?;
            // Lets operator commands find a listener bound to port 0.
            let addr_file = config.data_dir.join(crate::admin::ADDR_FILE);
            if let Err(e) = std::fs::write(&addr_file, addr.to_string()) {
                tracing::warn!(file = %addr_file.display(), error = %e, "cannot record the admin address; `hookfan status` needs a fixed admin_listen port");
            }
            let state = crate::admin::AdminState {
                metrics,
                spool: spool.clone(),
                config: config.clone(),
                stats: Arc::new(stats),
                notifiers: notifiers.clone(),
            };
            let stop = shutdown.clone();
            tracing::info!("admin listening on http://{addr} (/healthz, /readyz, /metrics)");
            Some(tokio::spawn(async move {
                axum::serve(admin, crate::admin::router(state))
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
            }))
        }
        None => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(
        routes = config.routes.len(),
        "ingest listening on http://{addr}"
    );
    axum::serve(listener, ingest::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("ingest stopped; finishing deliveries in flight");

    stop_delivery.cancel();
    workers.close();
    workers.wait().await;
    spool.close().await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    tracing::info!("spool closed; bye");
    Ok(())
}
