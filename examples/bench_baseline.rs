//! The benchmark's ceiling: a bare axum server that reads the whole request body and answers
//! 200, with no verification, no storage and no fsync. Same HTTP stack (axum/hyper/tokio,
//! multi-threaded runtime, one worker per core) as hookfan's ingest, so `hookfan / baseline`
//! is the cost of everything hookfan does on top of receiving a request.
//!
//! ```sh
//! cargo run --release --example bench_baseline -- --listen 127.0.0.1:0
//! ```
//! Prints `baseline listening on http://ADDR` on stderr when ready.

use axum::body::Bytes;
use axum::Router;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// IP:PORT to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

async fn ok(body: Bytes) -> &'static str {
    std::hint::black_box(body.len());
    "ok\n"
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind the baseline listener");
    let addr = listener.local_addr().expect("local address");
    eprintln!("baseline listening on http://{addr}");
    axum::serve(listener, Router::new().fallback(ok))
        .await
        .expect("serve");
}
