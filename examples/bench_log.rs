//! Micro-benchmark of the log spool's group-commit writer alone (`spool`, issue 21), on
//! the real disk under a temporary directory: no HTTP, no routing, no delivery.
//!
//! ```sh
//! cargo run --release --example bench_log -- [seconds] [appenders] [body_bytes]
//! ```
//!
//! `appenders` threads (default 64, like the ingest benchmark's connections) each append one
//! webhook event for 3 routes and wait until it is durable, in a loop, for `seconds`
//! (default 5, at most 60). Prints appends/s, fdatasyncs (groups) per second, records per
//! group, MB/s written, the writer thread's CPU per append, and the wait's p50/p99.
//! The temporary directory is `TMPDIR`'s (put it on the disk you mean to measure).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookfan::spool::record::RouteDue;
use hookfan::spool::{recover, EventRecord, RealDisk, Record, Writer, WriterConfig};

/// CPU time of this process's threads named `name*`, from `/proc/self/task/*/schedstat` (ns).
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

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = arg(1, 5).clamp(1, 60);
    let appenders = arg(2, 64).max(1);
    let body_bytes = arg(3, 1100) as usize;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let disk = Arc::new(RealDisk::open(dir.path()).expect("the directory opens"));
    let recovered = recover(&*disk).expect("an empty directory recovers");
    let writer = Arc::new(
        Writer::start(disk, recovered, WriterConfig::default()).expect("the writer starts"),
    );
    let routes = ["all", "messages", "globs"];
    for (id, name) in routes.iter().enumerate() {
        let t = writer
            .submit(&[Record::Route {
                id: id as u32,
                name,
            }])
            .unwrap();
        writer.wait(&t).unwrap();
    }
    // Let the preparer zero-fill its segments before the clock starts.
    std::thread::sleep(Duration::from_millis(500));

    let stop = Arc::new(AtomicBool::new(false));
    let waits: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let start_stats = writer.stats();
    let start_cpu = thread_cpu_ns("hookfan-spool-w");
    let started = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let (writer, stop, waits) = (writer.clone(), stop.clone(), waits.clone());
            std::thread::spawn(move || {
                let body = vec![b'x'; body_bytes];
                let mut mine = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{t:04}-{n:012}-0000-0000-000000000000");
                    n += 1;
                    let now = 1_778_198_400_000 + n;
                    let record = Record::Event(EventRecord {
                        webhook_id: Some(&id),
                        received_at_ms: now,
                        api_key: Some("key"),
                        signature:
                            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                        event_type: Some("message.new"),
                        path: Some("/webhooks"),
                        trace: None,
                        body: &body,
                        routes: vec![
                            RouteDue::new(0, now),
                            RouteDue::new(1, now),
                            RouteDue::new(2, now),
                        ]
                        .into(),
                    });
                    let begun = Instant::now();
                    let ticket = writer.submit(&[record]).expect("room");
                    writer.wait(&ticket).expect("durable");
                    mine.push(begun.elapsed());
                }
                waits.lock().unwrap().extend(mine);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_ns = thread_cpu_ns("hookfan-spool-w") - start_cpu;
    let stats = writer.stats();
    let groups = stats.groups - start_stats.groups;
    let records = stats.records - start_stats.records;
    let bytes = stats.bytes - start_stats.bytes;
    let mut waits = std::mem::take(&mut *waits.lock().unwrap());
    waits.sort_unstable();
    let pct = |p: f64| waits[((waits.len() - 1) as f64 * p) as usize];

    println!(
        "bench_log: {appenders} appenders, {body_bytes} B bodies, 3 routes, {seconds} s, dir {}",
        dir.path().display()
    );
    println!("  appends/s          {:>10.0}", records as f64 / elapsed);
    println!("  fdatasyncs/s       {:>10.0}", groups as f64 / elapsed);
    println!(
        "  records/group      {:>10.1}",
        records as f64 / groups.max(1) as f64
    );
    println!(
        "  MB/s written       {:>10.1}",
        bytes as f64 / elapsed / 1e6
    );
    println!(
        "  writer CPU/append  {:>10.1} µs",
        cpu_ns as f64 / 1e3 / records.max(1) as f64
    );
    println!(
        "  wait p50 / p99     {:>7.2} / {:.2} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    writer.close();
}
