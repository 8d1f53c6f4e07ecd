//! Hot reload: the config file watched (by content, every second) and SIGHUP, each valid new
//! config published to ingest and the admin API as a new [`Live`] snapshot, applied to the
//! delivery workers ([`Supervisor`]) and the sources.
//!
//! A reload goes through the same `config::load` as startup. An invalid file changes nothing:
//! the error (with lines and columns) is logged, counted, and the old config keeps running.
//! The settings only a restart changes are listed once, in `config/restart.rs`: a change to
//! one is logged and the running value kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::deliver::supervisor::Supervisor;
use crate::live::Live;
use crate::sources::Sources;

/// How often the config file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

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
        mut routes: Supervisor,
        mut sources: Sources,
        publish: watch::Sender<Arc<Live>>,
        shutdown: CancellationToken,
    ) -> (Supervisor, Sources) {
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
    routes: &mut Supervisor,
    sources: &mut Sources,
    publish: &watch::Sender<Arc<Live>>,
) {
    let current = publish.borrow().config.clone();
    let next = match config::load(path) {
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
    let next = match current.reloaded(next) {
        Ok(reloaded) => {
            for what in reloaded.kept {
                tracing::warn!(
                    "config reload: {what} changed; restart hookfan to apply it (kept the running value)"
                );
            }
            reloaded.config
        }
        Err(why) => {
            metrics::counter!("hookfan_config_reloads_total", "outcome" => "failure").increment(1);
            tracing::error!(
                "config reload ({trigger}) failed; the previous config keeps running: {why}"
            );
            return;
        }
    };
    match routes.apply(Arc::new(next)).await {
        Ok(live) => {
            let n = live.config.routes().len();
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
