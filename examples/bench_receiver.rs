//! A fast local HTTP destination for the benchmark: answers every webhook POST with 200 and
//! counts deliveries (total, distinct (path, X-Webhook-Id), first and last arrival). With
//! `--hold` (or `POST /_bench/hold?p=/prefix`) it accepts requests but does not answer them
//! until `POST /_bench/release`: a destination that is down without refusing connections.
//!
//! Control (used by `bench_suite`): `GET /_bench/stats`, `POST /_bench/reset`,
//! `POST /_bench/hold?p=/x`, `POST /_bench/release[?p=/x]`. `POST /v1/traces` is an OTLP/HTTP
//! trace sink that keeps nothing (the `tracing` scenario).
//!
//! ```sh
//! cargo run --release --example bench_receiver -- --listen 127.0.0.1:3000 --hold /
//! ```
//! Prints `receiver listening on http://ADDR` on stderr when ready.

#[path = "bench_common/mod.rs"]
mod common;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;

#[derive(Parser)]
struct Args {
    /// IP:PORT to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Hold (do not answer) requests whose path starts with this prefix; repeatable.
    #[arg(long)]
    hold: Vec<String>,
    /// Do not remember webhook ids (saves memory; `unique` stays 0).
    #[arg(long)]
    no_unique: bool,
}

async fn handle(State(dest): State<Arc<common::hold::Destination>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path == "/v1/traces" {
        // An OTLP/HTTP collector that keeps nothing: an empty ExportTraceServiceResponse.
        let _ = body.collect().await;
        return ([("content-type", "application/x-protobuf")], "").into_response();
    }
    if path.starts_with("/_bench/") {
        return match dest.control(&path, parts.uri.query()) {
            Some(json) => json.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let body: Bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    std::hint::black_box(body.len());
    dest.wait_released(&path).await;
    let id = parts
        .headers
        .get("x-webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    dest.record(&path, std::iter::once(id));
    "ok\n".into_response()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dest = Arc::new(common::hold::Destination::new(&args.hold, !args.no_unique));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind the receiver listener");
    let addr = listener.local_addr().expect("local address");
    eprintln!("receiver listening on http://{addr}");
    axum::serve(listener, Router::new().fallback(handle).with_state(dest))
        .await
        .expect("serve");
}
