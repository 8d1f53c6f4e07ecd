//! The ingest listener's connection handling: what a public endpoint needs before a request
//! ever reaches the handler.
//!
//! - At most `max_connections` open connections; beyond that, new ones wait in the kernel's
//!   accept queue instead of costing memory here.
//! - TLS (optional) with a handshake deadline.
//! - HTTP/1.1 with a header deadline (`request_timeout`, which also closes idle keep-alive
//!   connections) and a header size cap (431 beyond it); the body deadline is the handler's.
//! - Graceful shutdown: stop accepting, close idle connections, let requests in flight
//!   finish (each waits for its commit, so every 200 given is stored).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::live::LiveView;

/// Request heads (request line and headers) larger than this get 431. Stream's are < 1 KiB.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Serves `app` on `listener` until `shutdown`, then closes the socket (telling `drain`) and
/// waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    live: LiveView,
    max_connections: usize,
    shutdown: CancellationToken,
    drain: crate::drain::Drain,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    // One warning a minute at most while connections keep hitting the limit.
    let mut warned_at: Option<tokio::time::Instant> = None;
    loop {
        // A slot first, then accept: at the limit, connections queue in the kernel.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::counter!("hookfan_ingest_connection_limit_reached_total").increment(1);
                if warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    warned_at = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        max_connections,
                        "ingest: max_connections reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    metrics::counter!("hookfan_ingest_accept_errors_total").increment(1);
                    tracing::warn!(error = %e, "ingest: accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let timeout = live.borrow().config.request_timeout();
        let watcher = graceful.watcher();
        let (app, tls, stop) = (app.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _slot = slot;
            metrics::gauge!("hookfan_ingest_connections").increment(1.0);
            match tls {
                None => serve_connection(stream, peer, app, timeout, watcher).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        _ = stop.cancelled() => None,
                        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => Some(done),
                    };
                    match handshake {
                        Some(Ok(Ok(stream))) => {
                            serve_connection(stream, peer, app, timeout, watcher).await
                        }
                        Some(Ok(Err(e))) => tls_failed(peer, &e.to_string()),
                        Some(Err(_)) => tls_failed(peer, "no handshake within request_timeout"),
                        None => {}
                    }
                }
            }
            metrics::gauge!("hookfan_ingest_connections").decrement(1.0);
        });
    }
    // New connections are refused from here on (a load balancer's health check sees it too).
    drop(listener);
    drain.ingest_closed();
    graceful.shutdown().await;
}

fn tls_failed(peer: SocketAddr, why: &str) {
    metrics::counter!("hookfan_ingest_tls_handshake_failures_total").increment(1);
    tracing::debug!(%peer, why, "ingest: TLS handshake failed");
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .keep_alive(true);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        // Header timeouts, oversized heads and resets land here; hyper has already answered
        // (408/431) where an answer was possible.
        metrics::counter!("hookfan_ingest_connection_errors_total").increment(1);
        tracing::debug!(%peer, error = %e, "ingest: connection ended with an error");
    }
}

/// The IP a request came from, as the listener saw it (the TCP peer).
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Whether `ip` may post, given `allowed_ips` (None: everyone).
pub fn ip_allowed(allowed: Option<&[ipnet::IpNet]>, ip: Option<std::net::IpAddr>) -> bool {
    match (allowed, ip) {
        (None, _) => true,
        (Some(nets), Some(ip)) => nets.iter().any(|net| net.contains(&ip)),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn without_allowed_ips_everyone_may_post() {
        assert!(ip_allowed(None, Some("203.0.113.7".parse().unwrap())));
        assert!(ip_allowed(None, None));
    }

    #[test]
    fn allowed_ips_admit_exactly_their_networks() {
        let allowed = nets(&["10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32"]);
        for ip in ["10.1.2.3", "203.0.113.7", "2001:db8::1"] {
            assert!(
                ip_allowed(Some(&allowed), Some(ip.parse().unwrap())),
                "{ip}"
            );
        }
        for ip in ["11.0.0.1", "203.0.113.8", "127.0.0.1", "2001:db9::1"] {
            assert!(
                !ip_allowed(Some(&allowed), Some(ip.parse().unwrap())),
                "{ip}"
            );
        }
        assert!(
            !ip_allowed(Some(&allowed), None),
            "an unknown peer is refused"
        );
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_listener_is_matched_as_ipv4() {
        let mut extensions = axum::http::Extensions::new();
        let mapped: SocketAddr = "[::ffff:203.0.113.7]:443".parse().unwrap();
        extensions.insert(ConnectInfo(mapped));
        let ip = peer_ip(&extensions);
        assert_eq!(ip, Some("203.0.113.7".parse().unwrap()));
        assert!(ip_allowed(Some(&nets(&["203.0.113.0/24"])), ip));
    }
}
