//! Micro-benchmark of the spool alone, for A/B comparisons of spool changes: no HTTP, no load
//! generator, so its figures move only with the spool's own costs.
//!
//! ```sh
//! cargo run --release --example bench_spool -- [events] [appenders]
//! ```
//!
//! 1. append: `events` webhooks (~1.1 KiB, unique ids) for 3 routes from `appenders`
//!    concurrent tasks; prints events/s, the writer thread's CPU per event, events per commit.
//! 2. drain: delivers every route's queue the way a route worker does (concurrency 8, batches of
//!    10), one `complete_batch` per batch; prints completions/s and writer CPU per completion.
//! 3. summary: the time of one `route_summary` per route (what `/metrics` reads).

mod bench_common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookfan::spool::{now_ms, Completion, Spool, StoredEvent};

const ROUTES: [&str; 3] = ["all", "messages", "globs"];

/// CPU time of this process's thread named `name*`, from `/proc/self/task/*/schedstat` (ns).
fn thread_cpu_ns(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(name) {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    total
}

fn disk_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let appenders: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(64);
    let dir = std::env::temp_dir().join(format!("hookfan-bench-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spool = Spool::open(&dir).expect("open the spool");
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("loadavg before: {}", loadavg.trim());

    // 1. append
    let routes: Vec<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    let (cpu0, disk0, t0) = (
        thread_cpu_ns("hookfan-spool-w"),
        disk_bytes(),
        Instant::now(),
    );
    let run = now_ms();
    let mut tasks = Vec::new();
    for a in 0..appenders {
        let (spool, routes) = (spool.clone(), routes.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = a;
            while n < events {
                let body = bench_common::message_new_body(run, n, now_ms());
                let event = StoredEvent {
                    webhook_id: Some(bench_common::webhook_id(run, n)),
                    received_at_ms: now_ms(),
                    api_key: Some(bench_common::API_KEY.into()),
                    signature: bench_common::sign(
                        bench_common::API_SECRET.as_bytes(),
                        body.as_bytes(),
                    ),
                    event_type: Some("message.new".into()),
                    body: body.into_bytes(),
                    path: None,
                    trace: None,
                };
                spool
                    .append(event, routes.clone(), Duration::from_secs(600))
                    .await
                    .expect("append");
                n += appenders;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns("hookfan-spool-w") - cpu0;
    let disk = disk_bytes() - disk0;
    println!(
        "append: {events} events x {} routes, {appenders} appenders: {:.0} events/s; writer CPU {:.1} us/event ({:.2} cores); disk {:.1} KiB/event",
        ROUTES.len(),
        events as f64 / secs,
        cpu as f64 / 1000.0 / events as f64,
        cpu as f64 / 1e9 / secs,
        disk as f64 / 1024.0 / events as f64,
    );

    // 3. summary, with the backlog in place
    let t = Instant::now();
    for r in ROUTES {
        let s = spool.route_summary(r).expect("summary");
        assert_eq!(s.pending, events);
    }
    println!(
        "route_summary x {}: {:.2} ms",
        ROUTES.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );

    // 2. drain
    let (cpu0, disk0, t0) = (
        thread_cpu_ns("hookfan-spool-w"),
        disk_bytes(),
        Instant::now(),
    );
    let mut tasks = Vec::new();
    for r in ROUTES {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let in_flight = Arc::new(std::sync::Mutex::new(HashSet::new()));
            let sem = Arc::new(tokio::sync::Semaphore::new(8));
            let mut running = Vec::new();
            loop {
                let permit = sem.clone().acquire_owned().await.unwrap();
                let skip = in_flight.lock().unwrap().clone();
                let due = {
                    let spool = spool.clone();
                    tokio::task::spawn_blocking(move || spool.due(r, u64::MAX, &skip, 10, false))
                        .await
                        .unwrap()
                        .expect("due")
                };
                if due.items.is_empty() {
                    drop(permit);
                    if in_flight.lock().unwrap().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                in_flight
                    .lock()
                    .unwrap()
                    .extend(due.items.iter().map(|i| i.key.seq));
                let (spool, in_flight) = (spool.clone(), in_flight.clone());
                running.push(tokio::spawn(async move {
                    let done: Vec<_> = due
                        .items
                        .iter()
                        .map(|i| (i.key, Completion::Delivered))
                        .collect();
                    drop(permit);
                    spool.complete_batch(r, done).await.expect("complete");
                    let mut f = in_flight.lock().unwrap();
                    for i in &due.items {
                        f.remove(&i.key.seq);
                    }
                }));
            }
            for t in running {
                t.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = thread_cpu_ns("hookfan-spool-w") - cpu0;
    let disk = disk_bytes() - disk0;
    let n = events * ROUTES.len() as u64;
    println!(
        "drain: {n} completions: {:.0}/s; writer CPU {:.1} us/completion ({:.2} cores); disk {:.1} KiB/completion",
        n as f64 / secs,
        cpu as f64 / 1000.0 / n as f64,
        cpu as f64 / 1e9 / secs,
        disk as f64 / 1024.0 / n as f64,
    );
    spool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "loadavg after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
