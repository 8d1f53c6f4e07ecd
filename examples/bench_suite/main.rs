//! hookfan's benchmark suite: starts every process on loopback (hookfan, a bare axum
//! baseline, a fast HTTP receiver, an SQS stub, the load generator), runs the scenarios of
//! `bench/README.md` and prints one table. Run it through `bench/run.sh`, which builds
//! everything in release mode first.
//!
//! Every comparison is measured side by side in the same run (alternating rounds of the two
//! sides) and printed as a ratio: absolute numbers on a shared machine drift, ratios much less.
//! Every request loop is bounded in count and time, and only talks to 127.0.0.1.

#[path = "../bench_common/mod.rs"]
mod common;

mod backlog;
mod content;
mod delivery;
mod ingest;
mod load;
mod processes;
mod suite;
mod table;
mod tracing;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;

use backlog::*;
use delivery::*;
use ingest::*;
use load::*;
use processes::*;
use suite::*;
use table::*;

#[derive(Parser, Debug, Clone)]
#[command(about = "hookfan benchmark suite (use bench/run.sh)")]
struct Args {
    /// Seconds per measured load run.
    #[arg(long, env = "BENCH_DURATION", default_value_t = 5.0)]
    duration: f64,
    /// Alternating rounds (baseline, hookfan) per throughput comparison.
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 2)]
    rounds: usize,
    /// Load generator connections (requests in flight at full speed).
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 64)]
    connections: usize,
    /// Events spooled before each drain measurement.
    #[arg(long, env = "BENCH_DRAIN_EVENTS", default_value_t = 100_000)]
    drain_events: u64,
    /// Events pending in the backlog scenario.
    #[arg(long, env = "BENCH_BACKLOG", default_value_t = 1_000_000)]
    backlog: u64,
    /// Longest the backlog may take to build, in seconds (the suite reports what it reached).
    #[arg(long, env = "BENCH_BACKLOG_MAX_SECS", default_value_t = 360.0)]
    backlog_max_secs: f64,
    /// Working directory (spools, logs, results). Default: target/bench/run-<time>.
    #[arg(long, env = "BENCH_DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the spool files afterwards (they can take a few GB).
    #[arg(long)]
    keep: bool,
    /// Smoke test: tiny numbers, a minute in all. The table is not meaningful.
    #[arg(long)]
    quick: bool,
    /// Extra top-level lines for every hookfan config, for A/B runs of a setting, e.g.
    /// `BENCH_HOOKFAN_CONFIG='delivery_nice: 0'` (several lines separated by `;`).
    #[arg(long, env = "BENCH_HOOKFAN_CONFIG", default_value = "")]
    hookfan_config: String,
    /// Comma-separated subset: probe,ingest,unrouted,refused,tracing,content,deliver,drain-http,drain-sqs,
    /// backlog.
    #[arg(long, env = "BENCH_SCENARIOS", default_value = "all")]
    scenarios: String,
    /// A previous hookfan binary to measure beside this one in `ingest` (bench/run.sh builds
    /// the revision BENCH_OLD_REV and sets this).
    #[arg(long, env = "BENCH_OLD_HOOKFAN")]
    old_hookfan: Option<PathBuf>,
    /// What the previous hookfan is (its git revision), for the table.
    #[arg(long, env = "BENCH_OLD_LABEL", default_value = "")]
    old_label: String,
    /// Measure without touching the machine's free memory first (see [`warm_memory`]); also
    /// `BENCH_COLD_MEMORY=1`.
    #[arg(long)]
    cold_memory: bool,
}

/// Touches all but 1 GiB of the machine's free memory once, then gives it back, and says how
/// long that took. On a VM whose memory the hypervisor backs on first use, as this project's
/// are, the first write to a page of guest memory costs a fault in the host: writing a new
/// 3 GiB file measured 41–50 µs of system time per 20 KiB write on memory never used before,
/// and 7 µs once that memory had been used. A spool's page cache grows into such memory
/// during a run (hookfan's segments; the redb file) while the floor rewrites one file, so
/// without this the same-run comparison charges only some contenders the hypervisor's cost,
/// which a machine that has run for a while has long paid.
fn warm_memory() -> Option<String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let free_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemFree:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    // Within a container, its cgroup's limit is the free memory (cgroup v2; `max`: none).
    let cgroup_room = || -> Option<u64> {
        let read = |f: &str| std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(f)).ok();
        let max: u64 = read("memory.max")?.trim().parse().ok()?;
        let current: u64 = read("memory.current")?.trim().parse().ok()?;
        Some(max.saturating_sub(current))
    };
    let free = (free_kib * 1024).min(cgroup_room().unwrap_or(u64::MAX));
    let bytes = free.saturating_sub(1 << 30).min(64 << 30) as usize;
    if bytes == 0 {
        return None;
    }
    let t = Instant::now();
    let mut touched: Vec<u8> = Vec::new();
    // Refused (strict overcommit): measured without.
    touched.try_reserve_exact(bytes).ok()?;
    touched.resize(bytes, 1);
    std::hint::black_box(&touched);
    drop(touched);
    let secs = t.elapsed().as_secs_f64();
    Some(format!(
        "memory: touched {:.1} GiB of free memory before measuring, in {secs:.1} s ({:.0} µs per MiB)",
        bytes as f64 / f64::from(1 << 30),
        secs * 1e6 / (bytes as f64 / f64::from(1 << 20)),
    ))
}

fn machine_description() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    vec![
        format!("cpu: {cores} x {model}"),
        format!("memory: {:.1} GiB", mem as f64 / 1024.0 / 1024.0),
        format!("kernel: {}", kernel.trim()),
        format!(
            "load average at start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    ]
}

fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && path.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {} ({})", f[0], f[1], f[2])))
        })
        .max()
        .map_or("unknown".into(), |(_, s)| s)
}

fn print_table(rows: &[Row]) -> String {
    let head = [
        "scenario",
        "metric",
        "value",
        "reference",
        "ratio",
        "target",
        "verdict",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.section.as_str(),
                r.metric.as_str(),
                r.value.as_str(),
                r.reference.as_str(),
                r.ratio.as_str(),
                r.target.as_str(),
                r.verdict.as_str(),
            ]
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}|", ["---"; 7].join("|"));
    for c in &cells {
        let _ = writeln!(out, "| {} |", c.join(" | "));
    }
    out
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.duration = 1.0;
        args.rounds = 1;
        args.drain_events = args.drain_events.min(5_000);
        args.backlog = args.backlog.min(20_000);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("exe dir")?.to_path_buf();
    let bins = Bins {
        hookfan: dir.join("../hookfan"),
        load: dir.join("bench_load"),
        baseline: dir.join("bench_baseline"),
        receiver: dir.join("bench_receiver"),
        sqs: dir.join("bench_sqs_stub"),
        floor: dir.join("bench_floor"),
        old_hookfan: args.old_hookfan.clone(),
    };
    for b in [
        &bins.hookfan,
        &bins.load,
        &bins.baseline,
        &bins.receiver,
        &bins.sqs,
        &bins.floor,
    ]
    .into_iter()
    .chain(&bins.old_hookfan)
    {
        if !b.exists() {
            bail!(
                "{} is missing: run bench/run.sh (it builds everything)",
                b.display()
            );
        }
    }
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => dir
            .join("../../bench")
            .join(format!("run-{}", common::now_ms() / 1000)),
    };
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let admin_supported = supports_admin(&bins.hookfan, &work)?;
    let old_admin_supported = match &bins.old_hookfan {
        Some(old) => supports_admin(old, &work)?,
        None => false,
    };
    let perf_ok = Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            "syscalls:sys_enter_fdatasync",
            "--",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut s = Suite {
        args: args.clone(),
        bins,
        work: work.clone(),
        admin_supported,
        old_admin_supported,
        perf_ok,
        rows: Vec::new(),
        notes: Vec::new(),
        run_seq: 0,
        started: Instant::now(),
    };
    let machine = machine_description();
    println!("hookfan benchmark suite; work dir {}", work.display());
    for m in &machine {
        println!("  {m}");
    }
    println!("  data disk: {}", filesystem_of(&work));
    let old_line = old_description(&args);
    if s.wants("ingest") {
        println!("  {old_line}");
    }
    if !perf_ok {
        s.note("perf stat cannot count syscalls here: fsync figures are n/a (install linux-perf, run as root)".into());
    }
    if args.quick {
        s.note("--quick: tiny runs, numbers are not meaningful".into());
    }

    if args.cold_memory || args.quick || std::env::var_os("BENCH_COLD_MEMORY").is_some() {
        println!("  memory: not touched before measuring (--cold-memory or --quick)");
    } else if let Some(line) = warm_memory() {
        println!("  {line}");
    }

    let disk_rate = if s.wants("probe") {
        Some(probe(&mut s)?)
    } else {
        None
    };
    let base = s.baseline()?;
    let mut failures = Vec::new();
    let mut step = |name: &str, s: &mut Suite, f: &dyn Fn(&mut Suite) -> Result<()>| {
        if s.wants(name) {
            if let Err(e) = f(s) {
                println!("  ERROR in {name}: {e:#}");
                s.notes.push(format!("{name} failed: {e:#}"));
                failures.push(name.to_string());
            }
        }
    };
    step("ingest", &mut s, &|s| ingest(s, &base, disk_rate));
    step("unrouted", &mut s, &|s| unrouted(s, &base));
    step("refused", &mut s, &|s| refused(s, &base));
    step("tracing", &mut s, &|s| tracing::tracing(s, &base));
    step("content", &mut s, &|s| content::content(s, &base));
    step("deliver", &mut s, &|s| deliver(s, &base, disk_rate));
    step("drain-http", &mut s, &drain_http);
    step("drain-sqs", &mut s, &drain_sqs);
    step("backlog", &mut s, &|s| backlog(s, &base));
    let base_hwm = base.status_kb("VmHWM");
    drop(base);

    let total = s.started.elapsed();
    let table = print_table(&s.rows);
    let mut report = String::new();
    let git = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(report, "## Results\n");
    let _ = writeln!(
        report,
        "- date: {} (unix {})",
        date_utc(),
        common::now_ms() / 1000
    );
    for m in &machine {
        let _ = writeln!(report, "- {m}");
    }
    let _ = writeln!(report, "- data disk: {}", filesystem_of(&work));
    let _ = writeln!(report, "- hookfan: git {git}");
    if s.wants("ingest") {
        let _ = writeln!(report, "- {old_line}");
    }
    let _ = writeln!(
        report,
        "- settings: {} connections, {} s x {} rounds per side, drain {} events, backlog {} events",
        args.connections, args.duration, args.rounds, args.drain_events, args.backlog
    );
    if !args.hookfan_config.is_empty() {
        let _ = writeln!(report, "- hookfan config extra: `{}`", args.hookfan_config);
    }
    let _ = writeln!(report, "- suite wall time: {:.0} s", total.as_secs_f64());
    let _ = writeln!(report, "- baseline peak RSS: {}\n", fmt_mib(base_hwm));
    report.push_str(&table);
    if !s.notes.is_empty() {
        let _ = writeln!(report, "\nNotes:\n");
        for n in &s.notes {
            let _ = writeln!(report, "- {n}");
        }
    }
    std::fs::write(work.join("results.md"), &report)?;
    println!("\n{report}");
    println!("(also in {})", work.join("results.md").display());
    if !failures.is_empty() {
        bail!("scenarios failed: {}", failures.join(", "));
    }
    Ok(())
}

/// Does this hookfan have the admin listener? Then the suite gives it a free port (and reads
/// its commits from /metrics); otherwise it leaves the key out.
fn supports_admin(bin: &Path, work: &Path) -> Result<bool> {
    let probe_cfg = work.join("admin-probe.yaml");
    std::fs::write(
        &probe_cfg,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndata_dir: {}/admin-probe\napps:\n  - api_key: k\n    api_secret: s\nroutes:\n  - name: f\n    event_types: []\n    file: {{ path: /dev/null }}\n",
            work.display()
        ),
    )?;
    Ok(Command::new(bin)
        .args(["check", "--config"])
        .arg(&probe_cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success()))
}

/// The header line naming the previous hookfan of the ingest scenario.
fn old_description(args: &Args) -> String {
    match &args.old_hookfan {
        Some(bin) => format!(
            "previous hookfan (ingest): {} ({})",
            if args.old_label.is_empty() {
                "revision not given"
            } else {
                &args.old_label
            },
            bin.display()
        ),
        None => "previous hookfan (ingest): not measured (no --old-hookfan; bench/run.sh: BENCH_OLD_REV=none)".into(),
    }
}

/// Now (UTC) as YYYY-MM-DD HH:MM.
fn date_utc() -> String {
    let t = common::rfc3339_ms(common::now_ms());
    t[..16].replace('T', " ")
}
