//! Load generator for the benchmark suite: sends signed Stream-like `message.new` webhooks
//! (about 1 KiB, a unique `X-Webhook-Id` and body per request, a valid `X-Signature`) over
//! keep-alive HTTP/1.1 connections, and prints one JSON line with throughput and
//! acknowledgement latency percentiles.
//!
//! Two modes:
//! - closed loop (default): `--connections` requests in flight at all times; measures the
//!   maximum rate.
//! - fixed rate (`--rate R`): requests are scheduled at R/s spread over the connections. A
//!   request that could not be sent on time because its connection was still waiting for the
//!   previous answer is timed from when it *should* have been sent (no coordinated omission).
//!
//! Every run is bounded: it stops at `--duration` seconds (after `--warmup`) or after
//! `--max-requests`, whichever comes first, and only talks to the given loopback URL.
//!
//! ```sh
//! cargo run --release --example bench_load -- --url http://127.0.0.1:8080/stream \
//!     --connections 64 --duration 5
//! ```

#[path = "bench_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Signed Stream-webhook load generator (loopback only)")]
struct Args {
    /// Target, e.g. http://127.0.0.1:8080/stream (loopback addresses only).
    #[arg(long)]
    url: String,
    /// Connections (= requests in flight in closed-loop mode).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds to send before measuring (not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Stop after this many requests in total (warm-up included).
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Fixed rate in requests/s over all connections (default: closed loop, as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Makes webhook ids unique across runs against the same spool (default: from the clock).
    #[arg(long)]
    run_id: Option<u64>,
    /// App secret to sign with.
    #[arg(long, default_value = common::API_SECRET)]
    secret: String,
    /// Worker threads of the generator's runtime (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write every measured request to this file, a line each: when it was due (or
    /// sent), in µs since the Unix epoch, and its latency in µs. To line latency spikes up
    /// with the server's log.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    /// With `--trace`: (due or sent, µs since the epoch; latency µs) of each measured request.
    trace: Vec<(u64, u32)>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    late: u64,
    last_done: Option<Instant>,
}

fn main() {
    let args = Args::parse();
    let url = args.url.clone();
    let rest = url
        .strip_prefix("http://")
        .expect("--url must be http://HOST:PORT/PATH");
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .expect("--url host must be an IP:PORT literal");
    assert!(
        addr.ip().is_loopback(),
        "bench_load only sends to loopback addresses"
    );
    assert!(args.connections > 0 && args.duration > 0.0);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        rt.worker_threads(t);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let wall = std::time::Instant::now();
    let mut out = rt.block_on(run(args, addr, hostport.to_string(), path.to_string()));
    // The generator's own CPU use: it shares the machine with the server it measures.
    out["cpu_s"] = serde_json::json!(common::process_cpu_seconds(std::process::id()));
    out["wall_s"] = serde_json::json!(wall.elapsed().as_secs_f64());
    println!("{out}");
}

async fn run(args: Args, addr: SocketAddr, host: String, path: String) -> serde_json::Value {
    let run_id = args.run_id.unwrap_or_else(|| {
        let t = common::now_us();
        t ^ (u64::from(std::process::id()) << 40)
    });
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let deadline = measure_from + Duration::from_secs_f64(args.duration);
    let started_us = common::now_us() + 20_000 + (args.warmup * 1e6) as u64;
    let mut tasks = Vec::new();
    for k in 0..args.connections {
        let (args, host, path, issued) = (args.clone(), host.clone(), path.clone(), issued.clone());
        tasks.push(tokio::spawn(async move {
            connection(
                k,
                &args,
                addr,
                &host,
                &path,
                run_id,
                &issued,
                (start, measure_from, deadline),
            )
            .await
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.expect("connection task");
        total.latencies_us.extend_from_slice(&t.latencies_us);
        total.trace.extend_from_slice(&t.trace);
        for (s, n) in t.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.errors += t.errors;
        total.late += t.late;
        total.last_done = match (total.last_done, t.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    if let Some(path) = &args.trace {
        total.trace.sort_unstable();
        let mut out = String::with_capacity(total.trace.len() * 24);
        for (at, us) in &total.trace {
            out.push_str(&format!("{at} {us}\n"));
        }
        std::fs::write(path, out).expect("write the --trace file");
    }
    let end = total.last_done.unwrap_or(deadline).max(measure_from);
    let elapsed = end.duration_since(measure_from).as_secs_f64().max(1e-9);
    let mut lat = total.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> u64 {
        if lat.is_empty() {
            return 0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        u64::from(lat[i])
    };
    let ok: u64 = total
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let measured = lat.len() as u64;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&x| f64::from(x)).sum::<f64>() / lat.len() as f64
    };
    serde_json::json!({
        "mode": if args.rate.is_some() { "rate" } else { "closed" },
        "connections": args.connections,
        "rate_target": args.rate.unwrap_or(0.0),
        "run_id": run_id,
        "issued": issued.load(Ordering::Relaxed).min(args.max_requests),
        "measured": measured,
        "ok": ok,
        "statuses": total.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
        "errors": total.errors,
        "late": total.late,
        "elapsed_s": elapsed,
        "rps": ok as f64 / elapsed,
        "mean_us": mean,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": lat.last().copied().unwrap_or(0),
        "started_us": started_us,
        "ended_us": started_us + (elapsed * 1e6) as u64,
    })
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    k: usize,
    args: &Args,
    addr: SocketAddr,
    host: &str,
    path: &str,
    run_id: u64,
    issued: &AtomicU64,
    (start, measure_from, deadline): (Instant, Instant, Instant),
) -> Tally {
    let mut tally = Tally::default();
    let secret = args.secret.as_bytes();
    // Fixed rate: this connection's share, staggered so the connections do not fire together.
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
    let offset = args
        .rate
        .map_or(Duration::ZERO, |r| Duration::from_secs_f64(k as f64 / r));
    tokio::time::sleep_until((start + offset).into()).await;
    let mut conn: Option<common::Conn> = None;
    let mut i: u32 = 0;
    // The clocks' pairing, for `--trace`'s epoch times.
    let (epoch_us, epoch_at) = (common::now_us(), Instant::now());
    loop {
        let intended = interval.map(|iv| start + offset + iv * i);
        i += 1;
        let now = Instant::now();
        if now >= deadline || intended.is_some_and(|t| t >= deadline) {
            break;
        }
        // Timed from: the intended send time when the connection was busy past it, else the
        // actual send (a late timer is the generator's fault, not the server's).
        let mut from = None;
        if let Some(t) = intended {
            if now < t {
                tokio::time::sleep_until(t.into()).await;
            } else if now.duration_since(t) > Duration::from_millis(1) {
                tally.late += 1;
                from = Some(t);
            }
        }
        let n = issued.fetch_add(1, Ordering::Relaxed);
        if n >= args.max_requests {
            break;
        }
        let id = common::webhook_id(run_id, n);
        let body = common::message_new_body(run_id, n, common::now_ms());
        let request = common::signed_request(host, path, &id, &body, secret);
        if conn.is_none() {
            match common::Conn::connect(addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let sent = Instant::now();
        let from = from.unwrap_or(sent);
        let result = c.round_trip(&request).await;
        let done = Instant::now();
        match result {
            Ok(status) => {
                if c.closed {
                    conn = None;
                }
                if sent >= measure_from {
                    let us = done
                        .duration_since(from)
                        .as_micros()
                        .min(u128::from(u32::MAX));
                    tally.latencies_us.push(us as u32);
                    if args.trace.is_some() {
                        let at = epoch_us as i128
                            + if from >= epoch_at {
                                from.duration_since(epoch_at).as_micros() as i128
                            } else {
                                -(epoch_at.duration_since(from).as_micros() as i128)
                            };
                        tally.trace.push((at as u64, us as u32));
                    }
                    *tally.statuses.entry(status).or_default() += 1;
                    tally.last_done = Some(done);
                }
            }
            Err(_) => {
                conn = None;
                if sent >= measure_from {
                    tally.errors += 1;
                }
            }
        }
    }
    tally
}
