//! `hookfan serve`: the daemon, until SIGTERM or SIGINT.

use super::*;

/// `hookfan serve`: runs until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let (config, text) = config::load_with_text(config_path)?;
    for warning in config.render_warnings(&config_path.display().to_string()) {
        tracing::warn!("{warning}");
    }
    let listener =
        match config.listen() {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (is another process using it?)")
            })?),
            None => None,
        };
    let admin = match config.admin_listen() {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on admin_listen {addr} (is another process using it? set admin_listen to another port, or off)")
        })?),
        None => None,
    };
    ignore_file_size_signal().context("cannot handle SIGXFSZ")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let reload = hookfan::reload::Reload::new(config_path.to_path_buf(), text)
        .context("cannot listen for SIGHUP")?;
    Ok(hookfan::server::run(config, Some(reload), listener, admin, shutdown).await?)
}

/// SIGXFSZ: 25 on Linux (x86 and ARM), macOS and the BSDs.
const SIGXFSZ: i32 = 25;

/// Takes over SIGXFSZ before the spool is opened. A write past the file size limit
/// (`RLIMIT_FSIZE`, e.g. `ulimit -f` or a container's limit) sends SIGXFSZ, whose default
/// action kills the process: a full disk would then end hookfan mid-commit. With a handler
/// installed the write fails with EFBIG instead, the commit fails, and ingest answers 503 with
/// `Retry-After` like for any other storage error. The handler only logs; tokio keeps it
/// installed for the life of the process.
fn ignore_file_size_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut xfsz = signal(SignalKind::from_raw(SIGXFSZ))?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            tracing::warn!("SIGXFSZ: the spool file reached the file size limit; writes fail with EFBIG (ignored signal)");
        }
    });
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    // Cancel first: nothing, not even a failing log write, may stand between a signal and
    // the shutdown.
    shutdown.cancel();
    tracing::info!("{name} received: no longer accepting webhooks, draining");
}
