//! hookfan's benchmark suite: starts every process on loopback (hookfan, a bare axum
//! baseline, a fast HTTP receiver, an SQS stub, the load generator), runs the scenarios of
//! `bench/README.md` and prints one table. Run it through `bench/run.sh`, which builds
//! everything in release mode first.
//!
//! Every comparison is measured side by side in the same run (alternating rounds of the two
//! sides) and printed as a ratio: absolute numbers on a shared machine drift, ratios much less.
//! Every request loop is bounded in count and time, and only talks to 127.0.0.1.

#[path = "bench_common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;

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
    /// Comma-separated subset: probe,ingest,unrouted,refused,deliver,drain-http,drain-sqs,backlog.
    #[arg(long, env = "BENCH_SCENARIOS", default_value = "all")]
    scenarios: String,
    /// A previous hookfan binary to measure beside this one in `ingest` (bench/run.sh builds
    /// the revision BENCH_OLD_REV and sets this).
    #[arg(long, env = "BENCH_OLD_HOOKFAN")]
    old_hookfan: Option<PathBuf>,
    /// What the previous hookfan is (its git revision), for the table.
    #[arg(long, env = "BENCH_OLD_LABEL", default_value = "")]
    old_label: String,
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process that printed `... listening on http://ADDR`; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    /// From spawn to the listening line.
    ready: Duration,
    log: PathBuf,
    /// Name prefix of the process's storage writer thread(s), for its CPU ("" = none).
    writer: &'static str,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGTERM, then wait up to `timeout` (SIGKILL after). Returns how long it took to exit.
    fn stop(&mut self, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        if self.child.try_wait()?.is_none() {
            Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status()
                .context("kill -TERM")?;
            while self.child.try_wait()?.is_none() {
                if t0.elapsed() > timeout {
                    self.child.kill().ok();
                    self.child.wait().ok();
                    bail!(
                        "{} did not exit within {timeout:?} of SIGTERM; see {}",
                        self.name,
                        self.log.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(t0.elapsed())
    }

    fn status_kb(&self, field: &str) -> u64 {
        proc_status_kb(self.pid(), field)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
        }
        self.child.wait().ok();
    }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// (busy, total) jiffies of the whole machine, from /proc/stat.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// CPU use during a measured window: per watched process, the load generator, and everyone
/// else on the machine (other tenants; the machine is shared).
struct Window {
    t0: Instant,
    /// (label, pid, thread-name prefix or "" for the whole process, CPU seconds at start).
    pids: Vec<(String, u32, &'static str, f64)>,
    machine: (u64, u64),
}

struct CpuUse {
    /// (label, cores); a process's spool writer thread is labelled `NAME:writer`.
    procs: Vec<(String, f64)>,
    /// Cores busy on the whole machine.
    machine: f64,
    /// The window's length in seconds.
    secs: f64,
}

/// CPU seconds of `pid`'s threads whose name starts with `prefix` ("" = the whole process).
fn cpu_seconds(pid: u32, prefix: &str) -> f64 {
    if prefix.is_empty() {
        return common::process_cpu_seconds(pid);
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let comm = &stat[stat.find('(')? + 1..stat.rfind(')')?];
            if !comm.starts_with(prefix) {
                return None;
            }
            let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some((ticks(11) + ticks(12)) as f64 / 100.0)
        })
        .sum()
}

/// hookfan's spool writer thread (the name is cut to 15 characters by the kernel).
const WRITER_THREAD: &str = "hookfan-spool";
/// bench_floor's writer thread.
const FLOOR_WRITER_THREAD: &str = "floor-writer";

impl Window {
    fn start(procs: &[&Proc]) -> Window {
        let mut pids = Vec::new();
        for p in procs {
            pids.push((p.name.clone(), p.pid(), "", cpu_seconds(p.pid(), "")));
            if !p.writer.is_empty() {
                pids.push((
                    format!("{}:writer", p.name),
                    p.pid(),
                    p.writer,
                    cpu_seconds(p.pid(), p.writer),
                ));
            }
        }
        Window {
            t0: Instant::now(),
            pids,
            machine: machine_jiffies(),
        }
    }

    fn end(self) -> CpuUse {
        let secs = self.t0.elapsed().as_secs_f64().max(1e-6);
        let (busy, _) = machine_jiffies();
        CpuUse {
            procs: self
                .pids
                .iter()
                .map(|(n, pid, prefix, c0)| (n.clone(), (cpu_seconds(*pid, prefix) - c0) / secs))
                .collect(),
            machine: (busy - self.machine.0) as f64 / 100.0 / secs,
            secs,
        }
    }

    fn cores(cpu: &CpuUse, label: &str) -> f64 {
        cpu.procs
            .iter()
            .find(|(n, _)| n == label)
            .map_or(0.0, |(_, c)| *c)
    }
}

// ---------------------------------------------------------------------------------------------
// Load runs

#[derive(Clone, Copy)]
struct Spec {
    connections: usize,
    duration: f64,
    warmup: f64,
    max_requests: u64,
    rate: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct Load {
    ok: u64,
    issued: u64,
    errors: u64,
    non_2xx: u64,
    elapsed: f64,
    rps: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    late: u64,
    /// Cores used by the load generator over its whole run.
    gen_cores: f64,
}

impl Load {
    fn from_json(v: &Value) -> Load {
        let ok = common::json_u64(v, "ok");
        let measured = common::json_u64(v, "measured");
        let errors = common::json_u64(v, "errors");
        Load {
            ok,
            issued: common::json_u64(v, "issued"),
            errors,
            non_2xx: measured.saturating_sub(ok),
            elapsed: v["elapsed_s"].as_f64().unwrap_or(0.0),
            rps: v["rps"].as_f64().unwrap_or(0.0),
            p50: common::json_u64(v, "p50_us"),
            p99: common::json_u64(v, "p99_us"),
            p999: common::json_u64(v, "p999_us"),
            late: common::json_u64(v, "late"),
            gen_cores: v["cpu_s"].as_f64().unwrap_or(0.0)
                / v["wall_s"].as_f64().unwrap_or(1.0).max(1e-6),
        }
    }
}

/// Disk activity of one process over a window.
#[derive(Debug, Clone, Copy, Default)]
struct Io {
    fsyncs: Option<u64>,
    pwrites: Option<u64>,
    /// Bytes written to the block device that holds the work directory
    /// (`/sys/dev/block/M:m/stat`: the filesystem's journal included, and anything else
    /// writing to that disk meanwhile). Not /proc/PID/io's `write_bytes`: that counts each
    /// page (or large folio) dirtied, so a 200-byte write into a 2 MiB folio counts 2 MiB
    /// (on this machine's kernel it read 30x the disk's own figure).
    write_bytes: u64,
    secs: f64,
}

impl Io {
    fn add(&mut self, o: &Io) {
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.fsyncs = sum(self.fsyncs, o.fsyncs);
        self.pwrites = sum(self.pwrites, o.pwrites);
        self.write_bytes += o.write_bytes;
        self.secs += o.secs;
    }
}

struct IoCounter {
    perf: Option<(Child, PathBuf)>,
    device: PathBuf,
    write_bytes: u64,
    t0: Instant,
}

/// The block device's statistics file for the filesystem holding `dir`.
fn device_stat_of(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).map_or(0, |m| m.dev());
    // glibc's encoding of major and minor numbers in a dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"))
}

/// Bytes written to that device so far (sectors written, field 7, × 512); 0 when it has
/// no statistics (tmpfs, overlay).
fn device_written(stat: &Path) -> u64 {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| s.split_whitespace().nth(6)?.parse::<u64>().ok())
        .map_or(0, |sectors| sectors * 512)
}

/// hookfan's spool commits so far: (count, seconds spent in them), from its /metrics.
fn commit_totals(h: &Proc) -> Option<(f64, f64)> {
    let (status, body) = common::control(h.admin?, "GET", "/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let value = |name: &str| {
        body.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some((
        value("hookfan_spool_commit_seconds_count")?,
        value("hookfan_spool_commit_seconds_sum")?,
    ))
}

/// hookfan's own acknowledgement histogram so far (`hookfan_ingest_ack_seconds`, from the
/// handler's start to its answer): (upper bound in seconds, cumulative count) per bucket.
fn ack_buckets(h: &Proc) -> Option<Vec<(f64, f64)>> {
    let (status, body) = common::control(h.admin?, "GET", "/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let buckets: Vec<(f64, f64)> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("hookfan_ingest_ack_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    (!buckets.is_empty()).then_some(buckets)
}

/// What hookfan's own histogram says of the acknowledgements between two readings: the
/// bucket bound that holds the 99th percentile, and the share answered within 5 ms.
fn server_ack_p99(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<(f64, f64)> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let n0 = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - n0)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let p99 = delta.iter().find(|(_, n)| *n >= 0.99 * total)?.0;
    let within_5ms = delta.iter().find(|(le, _)| *le >= 0.005)?.1 / total;
    Some((p99, within_5ms))
}

/// Several rounds of one side, combined: throughput over all rounds, worst percentiles.
#[derive(Debug, Clone, Default)]
struct Agg {
    ok: u64,
    elapsed: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    errors: u64,
    non_2xx: u64,
    gen_cores: f64,
    server_cores: f64,
    writer_cores: f64,
    machine_cores: f64,
    io: Io,
    rounds: usize,
    /// Requests answered 2xx, warm-ups included.
    sent: u64,
    /// The disk's fsync latency meanwhile, seen by an independent probe (latency runs).
    disk: Option<FsyncStats>,
    /// hookfan's own histogram of the same run (latency runs): the bound of its p99 bucket
    /// and the share within 5 ms ([`server_ack_p99`]).
    server_ack: Option<(f64, f64)>,
    /// Spool commits during the measured runs: (count, seconds spent applying and committing,
    /// fsync included), from hookfan's /metrics; None without an admin listener.
    commits: Option<(f64, f64)>,
    /// Wall seconds the `commits` figures cover.
    commits_secs: f64,
}

impl Agg {
    fn add(&mut self, l: &Load, cpu: &CpuUse, server: &str) {
        self.ok += l.ok;
        self.sent += l.ok;
        self.elapsed += l.elapsed;
        self.p50 = self.p50.max(l.p50);
        self.p99 = self.p99.max(l.p99);
        self.p999 = self.p999.max(l.p999);
        self.errors += l.errors;
        self.non_2xx += l.non_2xx;
        let n = self.rounds as f64;
        let avg = |old: f64, new: f64| (old * n + new) / (n + 1.0);
        self.gen_cores = avg(self.gen_cores, l.gen_cores);
        self.server_cores = avg(self.server_cores, Window::cores(cpu, server));
        self.writer_cores = avg(
            self.writer_cores,
            Window::cores(cpu, &format!("{server}:writer")),
        );
        self.machine_cores = avg(self.machine_cores, cpu.machine);
        self.rounds += 1;
    }

    fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.max(1e-9)
    }

    /// Share of the wall time the spool's writer spent applying and committing batches.
    fn writer_busy(&self) -> Option<f64> {
        self.commits
            .map(|(_, secs)| secs / self.commits_secs.max(1e-9))
    }

    /// Mean time of one commit (apply + commit + fsync), in seconds.
    fn commit_mean(&self) -> Option<f64> {
        self.commits
            .filter(|&(n, _)| n > 0.0)
            .map(|(n, secs)| secs / n)
    }

    fn per_fsync(&self) -> Option<f64> {
        self.io
            .fsyncs
            .filter(|&f| f > 0)
            .map(|f| self.ok as f64 / f as f64)
    }
}

// ---------------------------------------------------------------------------------------------
// Results table

struct Row {
    section: String,
    metric: String,
    value: String,
    reference: String,
    ratio: String,
    target: String,
    verdict: String,
}

fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{:.0}/s", x)
    } else {
        format!("{:.1}/s", x)
    }
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// CPU time per event, in microseconds: `cpu` over `events` measured over the same time, as
/// cores and events per second, or as CPU seconds and an event count.
fn cpu_us(cpu: f64, events: f64) -> f64 {
    cpu / events.max(1e-9) * 1e6
}

fn fmt_mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn fmt_dur(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}

// ---------------------------------------------------------------------------------------------
// The suite

struct Bins {
    hookfan: PathBuf,
    load: PathBuf,
    baseline: PathBuf,
    receiver: PathBuf,
    sqs: PathBuf,
    floor: PathBuf,
    /// The previous hookfan (`--old-hookfan`), measured beside this one in `ingest`.
    old_hookfan: Option<PathBuf>,
}

struct Suite {
    args: Args,
    bins: Bins,
    work: PathBuf,
    admin_supported: bool,
    /// Whether the previous hookfan has the admin listener.
    old_admin_supported: bool,
    perf_ok: bool,
    rows: Vec<Row>,
    notes: Vec<String>,
    run_seq: u64,
    started: Instant,
}

impl Suite {
    fn wants(&self, scenario: &str) -> bool {
        self.args.scenarios == "all" || self.args.scenarios.split(',').any(|s| s.trim() == scenario)
    }

    fn row(&mut self, section: &str, metric: &str, value: String) -> &mut Row {
        println!("  {section:<26} {metric:<44} {value}");
        self.rows.push(Row {
            section: section.into(),
            metric: metric.into(),
            value,
            reference: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: String::new(),
        });
        self.rows.last_mut().expect("just pushed")
    }

    fn note(&mut self, text: String) {
        println!("  note: {text}");
        self.notes.push(text);
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.work.join(format!("{name}.log"))
    }

    fn record_pid(&self, pid: u32) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.work.join("pids"))
        {
            let _ = writeln!(f, "{pid}");
        }
    }

    /// Starts `cmd` with its stderr going to a log file, and waits for `marker` + address in
    /// that file. (A file rather than a pipe: a process whose stderr pipe has lost its reader
    /// may not survive its next log line, and a killed suite must not leave such processes.)
    fn spawn(&self, name: &str, mut cmd: Command, marker: &'static str) -> Result<Proc> {
        let log = self.log_path(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let start = file.metadata()?.len();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.record_pid(child.id());
        let mut admin = None;
        let mut seen = 0;
        loop {
            let text = std::fs::read(&log).unwrap_or_default();
            let at = Instant::now();
            let text =
                String::from_utf8_lossy(&text[(start as usize).min(text.len())..]).into_owned();
            // Only whole lines, each looked at once.
            let complete = text.rfind('\n').map_or(0, |i| i + 1);
            for line in text[seen.min(complete)..complete].lines() {
                if let Some(a) = addr_after(line, "admin listening on http://") {
                    admin = Some(a);
                } else if let Some(addr) = addr_after(line, marker) {
                    return Ok(Proc {
                        name: name.into(),
                        child,
                        addr,
                        admin,
                        ready: at.duration_since(spawned),
                        log,
                        writer: WRITER_THREAD,
                    });
                }
            }
            seen = complete;
            if child.try_wait()?.is_some() {
                bail!("{name} exited before listening; see {}", log.display());
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{name} did not start listening within 60 s; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn baseline(&self) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.baseline);
        cmd.args(["--listen", "127.0.0.1:0"]);
        self.spawn("baseline", cmd, "baseline listening on http://")
    }

    /// The durable floor (bench_floor): HMAC + JSON `type` + one pwrite and one fdatasync per
    /// group on a preallocated file, nothing else.
    fn floor(&self, name: &str, data: &Path) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.floor);
        cmd.args(["--listen", "127.0.0.1:0", "--secret", common::API_SECRET])
            .args(["--file-mib", if self.args.quick { "64" } else { "256" }])
            .arg("--dir")
            .arg(data);
        let mut p = self.spawn(name, cmd, "floor listening on http://")?;
        p.writer = FLOOR_WRITER_THREAD;
        Ok(p)
    }

    fn receiver(&self, name: &str, hold: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.receiver);
        cmd.args(["--listen", "127.0.0.1:0"]);
        for h in hold {
            cmd.args(["--hold", h]);
        }
        self.spawn(name, cmd, "receiver listening on http://")
    }

    fn sqs_stub(&self, name: &str, hold: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.sqs);
        cmd.args(["--listen", "127.0.0.1:0"]);
        for h in hold {
            cmd.args(["--hold", h]);
        }
        self.spawn(name, cmd, "sqs stub listening on http://")
    }

    /// Writes a routes.yaml for `routes` (YAML snippets, one per route) and starts hookfan.
    fn hookfan(&self, name: &str, data: &Path, routes: &[String]) -> Result<Proc> {
        let config = self.hookfan_config(name, data, routes, self.admin_supported, &[])?;
        self.hookfan_from(&self.bins.hookfan, name, &config)
    }

    /// The previous hookfan (`--old-hookfan`), if any, with the config this one gets, less the
    /// settings it does not know (`spool_segment_bytes`, a setting of the log spool, when the
    /// user gave it in BENCH_HOOKFAN_CONFIG).
    fn old_hookfan(&mut self, name: &str, data: &Path, routes: &[String]) -> Result<Option<Proc>> {
        let Some(bin) = self.bins.old_hookfan.clone() else {
            return Ok(None);
        };
        const NEW_KEYS: &[&str] = &["spool_segment_bytes"];
        let config = self.hookfan_config(name, data, routes, self.old_admin_supported, NEW_KEYS)?;
        if self
            .args
            .hookfan_config
            .split(';')
            .any(|l| NEW_KEYS.iter().any(|k| l.trim().starts_with(k)))
        {
            self.note(format!(
                "the {} runs without {} (BENCH_HOOKFAN_CONFIG): it does not know the key",
                self.old_name(),
                NEW_KEYS.join(", ")
            ));
        }
        self.hookfan_from(&bin, name, &config).map(Some)
    }

    fn hookfan_from(&self, bin: &Path, name: &str, config: &Path) -> Result<Proc> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        self.spawn(name, cmd, "ingest listening on http://")
    }

    /// hookfan's config: the suite's settings, BENCH_HOOKFAN_CONFIG's lines except those
    /// setting one of `skip` (keys a previous hookfan refuses), the bench app and `routes`.
    fn hookfan_config(
        &self,
        name: &str,
        data: &Path,
        routes: &[String],
        admin: bool,
        skip: &[&str],
    ) -> Result<PathBuf> {
        let mut y = String::new();
        writeln!(y, "# written by bench_suite")?;
        writeln!(y, "listen: 127.0.0.1:0")?;
        if admin {
            writeln!(y, "admin_listen: 127.0.0.1:0")?;
        }
        writeln!(y, "data_dir: {}", data.display())?;
        writeln!(y, "dedup_window: 10m")?;
        writeln!(y, "shutdown_grace: 1s")?;
        for line in self.args.hookfan_config.split(';').map(str::trim) {
            if !line.is_empty() && !skip.iter().any(|k| line.starts_with(k)) {
                writeln!(y, "{line}")?;
            }
        }
        writeln!(y, "apps:")?;
        writeln!(y, "  - api_key: {}", common::API_KEY)?;
        writeln!(y, "    api_secret: {}", common::API_SECRET)?;
        writeln!(y, "routes:")?;
        for r in routes {
            for line in r.lines() {
                writeln!(y, "  {line}")?;
            }
        }
        let path = self.work.join(format!("{name}.yaml"));
        std::fs::write(&path, y)?;
        Ok(path)
    }

    fn next_run_id(&mut self) -> u64 {
        self.run_seq += 1;
        (common::now_us() << 8) ^ self.run_seq
    }

    /// Runs the load generator against `url`; bounded by the spec's duration and count.
    fn load(&mut self, url: &str, spec: Spec) -> Result<Load> {
        let run_id = self.next_run_id();
        let mut cmd = Command::new(&self.bins.load);
        cmd.args(["--url", url])
            .args(["--connections", &spec.connections.to_string()])
            .args(["--duration", &spec.duration.to_string()])
            .args(["--warmup", &spec.warmup.to_string()])
            .args(["--max-requests", &spec.max_requests.to_string()])
            .args(["--run-id", &run_id.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(r) = spec.rate {
            cmd.args(["--rate", &format!("{r:.1}")]);
        }
        let mut child = cmd.spawn().context("cannot start bench_load")?;
        self.record_pid(child.id());
        let limit = Duration::from_secs_f64(spec.warmup + spec.duration + 60.0);
        let t0 = Instant::now();
        while child.try_wait()?.is_none() {
            if t0.elapsed() > limit {
                child.kill().ok();
                child.wait().ok();
                bail!("bench_load overran its time limit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)?;
        let v: Value = serde_json::from_str(out.trim())
            .with_context(|| format!("bench_load printed {out:?}"))?;
        let l = Load::from_json(&v);
        if l.errors > 0 || l.non_2xx > 0 {
            println!(
                "  warning: {url}: {} connection errors, {} non-2xx answers ({})",
                l.errors, l.non_2xx, v["statuses"]
            );
        }
        Ok(l)
    }

    fn closed(&self, duration: f64) -> Spec {
        Spec {
            connections: self.args.connections,
            duration,
            warmup: 0.0,
            max_requests: 50_000_000,
            rate: None,
        }
    }

    /// Starts counting `pid`'s disk activity: fsync-family and pwrite syscalls with
    /// `perf stat` (when it can count them here), bytes written from /proc/PID/io.
    fn io_start(&self, pid: u32) -> IoCounter {
        let mut perf = None;
        if self.perf_ok {
            let out = self
                .work
                .join(format!("perf-{pid}-{}.csv", common::now_us()));
            let child = Command::new("perf")
                .args(["stat", "-x,", "-o"])
                .arg(&out)
                .args([
                    "-e",
                    "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,syscalls:sys_enter_pwrite64",
                    "-p",
                    &pid.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(child) = child {
                self.record_pid(child.id());
                // perf needs a moment to attach to every thread.
                std::thread::sleep(Duration::from_millis(150));
                perf = Some((child, out));
            }
        }
        let device = device_stat_of(&self.work);
        IoCounter {
            perf,
            write_bytes: device_written(&device),
            device,
            t0: Instant::now(),
        }
    }

    /// Stops counting (SIGINT makes perf print its totals).
    fn io_end(c: IoCounter) -> Io {
        let mut io = Io {
            write_bytes: device_written(&c.device).saturating_sub(c.write_bytes),
            secs: c.t0.elapsed().as_secs_f64(),
            ..Io::default()
        };
        if let Some((mut child, out)) = c.perf {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
            let text = std::fs::read_to_string(out).unwrap_or_default();
            for line in text.lines() {
                let n = line
                    .split(',')
                    .next()
                    .and_then(|c| c.trim().parse::<u64>().ok());
                let Some(n) = n else { continue };
                if line.contains("sys_enter_fdatasync") || line.contains("sys_enter_fsync") {
                    io.fsyncs = Some(io.fsyncs.unwrap_or(0) + n);
                } else if line.contains("sys_enter_pwrite64") {
                    io.pwrites = Some(io.pwrites.unwrap_or(0) + n);
                }
            }
        }
        io
    }

    /// One measured closed-loop run against hookfan `h`, with CPU and disk accounting.
    fn measure(&mut self, h: &Proc, others: &[&Proc], spec: Spec, agg: &mut Agg) -> Result<Load> {
        let io = self.io_start(h.pid());
        let mut watched = vec![h];
        watched.extend_from_slice(others);
        let commits0 = commit_totals(h);
        let t0 = Instant::now();
        let w = Window::start(&watched);
        let l = self.load(&h.url("/stream"), spec)?;
        let cpu = w.end();
        if let (Some((n0, s0)), Some((n1, s1))) = (commits0, commit_totals(h)) {
            let (n, secs) = agg.commits.unwrap_or_default();
            agg.commits = Some((n + n1 - n0, secs + s1 - s0));
            agg.commits_secs += t0.elapsed().as_secs_f64();
        }
        let mut io = Suite::io_end(io);
        // Rates over the load's own measured time (the counter ran a little longer, idle).
        io.secs = l.elapsed;
        agg.io.add(&io);
        agg.add(&l, &cpu, &h.name);
        Ok(l)
    }

    /// Alternating rounds of the baseline and hookfan at full speed.
    fn compare(&mut self, base: &Proc, h: &Proc, others: &[&Proc]) -> Result<(Agg, Agg)> {
        let mut aggs = self.compare_sides(base, &[(h, others)])?;
        let hf = aggs.pop().context("hookfan's rounds")?;
        let b = aggs.pop().context("the baseline's rounds")?;
        Ok((b, hf))
    }

    /// Alternating rounds at full speed, with the same load generator settings: the baseline,
    /// then each side in turn (a server under test and the processes whose CPU counts with it),
    /// after a warm-up of each. The sides' order rotates from round to round, so that none
    /// always runs right after the same other one (and its disk writeback). Every side is
    /// frozen (SIGSTOP) except the one being loaded, so that no side's background work
    /// (deliveries, retries) takes CPU from another's turn. Returns the baseline's rounds, then
    /// each side's.
    fn compare_sides(&mut self, base: &Proc, sides: &[(&Proc, &[&Proc])]) -> Result<Vec<Agg>> {
        let freezer = Freezer {
            pids: sides.iter().map(|(p, _)| p.pid()).collect(),
        };
        let warm = Spec {
            duration: 1.0,
            ..self.closed(1.0)
        };
        let mut aggs = vec![Agg::default(); sides.len() + 1];
        freezer.only(None)?;
        self.load(&base.url("/stream"), warm)?;
        for (i, (p, _)) in sides.iter().enumerate() {
            freezer.only(Some(p.pid()))?;
            aggs[i + 1].sent = self.load(&p.url("/stream"), warm)?.ok;
        }
        for round in 0..self.args.rounds {
            let spec = self.closed(self.args.duration);
            freezer.only(None)?;
            let w = Window::start(&[base]);
            let l = self.load(&base.url("/stream"), spec)?;
            aggs[0].add(&l, &w.end(), &base.name);
            for k in 0..sides.len() {
                let i = (k + round) % sides.len();
                let (p, others) = sides[i];
                freezer.only(Some(p.pid()))?;
                self.measure(p, others, spec, &mut aggs[i + 1])?;
            }
        }
        Ok(aggs)
    }

    /// Loads the baseline while hookfan `h` is frozen (SIGSTOP), so that hookfan's background
    /// work (deliveries, retries) does not take CPU from the baseline's turn.
    fn baseline_load(&mut self, base: &Proc, h: &Proc, spec: Spec) -> Result<Load> {
        let signal = |sig: &str| {
            Command::new("kill")
                .args([sig, &h.pid().to_string()])
                .status()
                .map(|_| ())
        };
        signal("-STOP")?;
        let l = self.load(&base.url("/stream"), spec);
        signal("-CONT")?;
        l
    }

    /// The baseline and hookfan at the same fixed rate, for acknowledgement latency.
    fn latency(&mut self, base: &Proc, h: &Proc, rate: f64) -> Result<(Agg, Agg)> {
        let spec = Spec {
            connections: self.args.connections,
            duration: self.args.duration * self.args.rounds as f64,
            warmup: 1.0,
            max_requests: 50_000_000,
            rate: Some(rate),
        };
        let (mut b, mut hf) = (Agg::default(), Agg::default());
        let w = Window::start(&[base]);
        let watch = FsyncWatch::start(&self.work);
        let l = self.baseline_load(base, h, spec)?;
        b.disk = watch.stop();
        b.add(&l, &w.end(), &base.name);
        let watch = FsyncWatch::start(&self.work);
        let acks0 = ack_buckets(h);
        let l = self.measure(h, &[], spec, &mut hf)?;
        hf.disk = watch.stop();
        hf.server_ack = acks0
            .zip(ack_buckets(h))
            .and_then(|(before, after)| server_ack_p99(&before, &after));
        if l.late * 100 > l.ok.max(1) {
            self.note(format!(
                "at {rate:.0}/s, {} of {} hookfan requests left late (their connection was still busy): latency counts from when they were due",
                l.late, l.ok
            ));
        }
        Ok((b, hf))
    }

    /// Waits until `dest` has seen `want` distinct deliveries since its last reset (or
    /// `timeout`, or 30 s without progress); returns the last stats.
    fn wait_delivered(dest: &Proc, want: u64, timeout: Duration) -> Result<Value> {
        let t0 = Instant::now();
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let (_, body) = common::control(dest.addr, "GET", "/_bench/stats")?;
            let v: Value = serde_json::from_str(&body)?;
            let n = common::json_u64(&v, "unique");
            if n != last {
                (last, since) = (n, Instant::now());
            }
            // Done, out of time, or no progress for 30 s.
            if n >= want || t0.elapsed() > timeout || since.elapsed() > Duration::from_secs(30) {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fills hookfan's spool with `n` events at full speed (the destination must be held or
    /// down). Returns the load result.
    fn fill(&mut self, h: &Proc, n: u64, max_secs: f64) -> Result<Load> {
        let spec = Spec {
            connections: self.args.connections,
            duration: max_secs,
            warmup: 0.0,
            max_requests: n,
            rate: None,
        };
        self.load(&h.url("/stream"), spec)
    }

    /// One webhook, timed; for "restart until the first 200".
    fn one_webhook(addr: SocketAddr, run: u64) -> Result<u16> {
        let id = common::webhook_id(run, 0);
        let body = common::message_new_body(run, 0, common::now_ms());
        let req = common::signed_request(
            &addr.to_string(),
            "/stream",
            &id,
            &body,
            common::API_SECRET.as_bytes(),
        );
        let (status, _) = common::blocking_request(addr, &req, Duration::from_secs(10))?;
        Ok(status)
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.work.join(format!("data-{name}"))
    }

    fn cleanup(&self, dir: &Path) {
        if !self.args.keep {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Stops `p` with SIGTERM; a process that does not exit in time is killed and noted.
    fn stop(&mut self, p: &mut Proc, timeout: Duration) -> Option<Duration> {
        match p.stop(timeout) {
            Ok(d) => Some(d),
            Err(e) => {
                self.note(format!("{e:#} (killed)"));
                None
            }
        }
    }

    /// "previous hookfan (REVISION)", for rows and notes.
    fn old_name(&self) -> String {
        match self.args.old_label.as_str() {
            "" => "previous hookfan".into(),
            label => format!("previous hookfan ({label})"),
        }
    }

    fn elapsed(&self) -> String {
        format!("[{:>5.0} s]", self.started.elapsed().as_secs_f64())
    }
}

/// Processes that `compare_sides` freezes (SIGSTOP) while another one is measured; all of them
/// are continued when this is dropped, whatever happened meanwhile.
struct Freezer {
    pids: Vec<u32>,
}

impl Freezer {
    fn signal(pid: u32, sig: &str) -> Result<()> {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .context("kill")?;
        Ok(())
    }

    /// Freezes every process but `run`, then continues `run` (None: freezes them all).
    fn only(&self, run: Option<u32>) -> Result<()> {
        for &pid in self.pids.iter().filter(|&&p| Some(p) != run) {
            Freezer::signal(pid, "-STOP")?;
        }
        if let Some(pid) = run {
            Freezer::signal(pid, "-CONT")?;
        }
        Ok(())
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = Freezer::signal(pid, "-CONT");
        }
    }
}

/// fdatasync latency seen by a light independent probe (one 4 KiB write + fdatasync every
/// 5 ms) while something else runs: shows whether the disk itself stalled.
#[derive(Debug, Clone, Copy)]
struct FsyncStats {
    n: usize,
    p99_us: u64,
    max_us: u64,
    over_10ms: usize,
}

struct FsyncWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Option<FsyncStats>>,
}

impl FsyncWatch {
    fn start(dir: &Path) -> FsyncWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let path = dir.join("fsync-watch.bin");
        let thread = std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&path)
                .ok()?;
            let page = vec![0x5au8; 4096];
            let mut lat = Vec::new();
            let mut i: u64 = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && lat.len() < 1_000_000 {
                let t = Instant::now();
                f.write_all_at(&page, (i % 256) * 4096).ok()?;
                f.sync_data().ok()?;
                lat.push(t.elapsed().as_micros() as u64);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(f);
            let _ = std::fs::remove_file(&path);
            lat.sort_unstable();
            let n = lat.len();
            (n > 0).then(|| FsyncStats {
                n,
                p99_us: lat[(n * 99 / 100).min(n - 1)],
                max_us: lat[n - 1],
                over_10ms: lat.iter().filter(|&&x| x > 10_000).count(),
            })
        });
        FsyncWatch { stop, thread }
    }

    fn stop(self) -> Option<FsyncStats> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

fn fmt_disk(d: Option<FsyncStats>) -> String {
    d.map_or("n/a".into(), |d| {
        format!(
            "p99 {} / max {} ({} of {} over 10 ms)",
            fmt_us(d.p99_us),
            fmt_us(d.max_us),
            d.over_10ms,
            d.n
        )
    })
}

/// Samples a process's resident memory twice a second in a thread.
struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                out.push((t0.elapsed().as_secs_f64(), proc_status_kb(pid, "VmRSS")));
                std::thread::sleep(Duration::from_millis(500));
            }
            out
        });
        RssSampler { stop, thread }
    }

    /// (seconds since start, VmRSS kB) samples.
    fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The three routes of the ingest scenarios: one event type, three kinds of filter (all,
/// exact list, globs), so every `message.new` is stored once with three queue entries.
fn three_routes(base_url: &str, extra: &str) -> Vec<String> {
    [
        ("all-events", "[]", "/r1"),
        ("messages", "[message.new, message.updated]", "/r2"),
        ("chat-globs", "[\"message.*\", \"reaction.*\"]", "/r3"),
    ]
    .iter()
    .map(|(name, types, path)| {
        format!(
            "- name: {name}\n  event_types: {types}\n  http: {{ url: {base_url}{path}{extra} }}"
        )
    })
    .collect()
}

fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.into()
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn probe(s: &mut Suite) -> Result<f64> {
    // Overwrite 4 KiB pages of a preallocated file, fdatasync after each: the disk's durable
    // write rate, the ceiling of commits per second for any store on this disk.
    let path = s.work.join("fsync-probe.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all(&vec![0u8; 16 << 20])?;
    f.sync_all()?;
    let page = vec![0xabu8; 4096];
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let mut i: u64 = 0;
    while t0.elapsed() < Duration::from_secs(2) && i < 1_000_000 {
        use std::os::unix::fs::FileExt;
        let off = (i.wrapping_mul(2_654_435_761) % 4096) * 4096;
        let t = Instant::now();
        f.write_all_at(&page, off)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
        i += 1;
    }
    let rate = i as f64 / t0.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    lat.sort_unstable();
    let p = |q: f64| lat[((q * lat.len() as f64) as usize).min(lat.len() - 1)];
    s.row(
        "disk",
        "fdatasync rate (4 KiB overwrite + fdatasync)",
        fmt_rate(rate),
    )
    .reference = format!(
        "p50 {} / p99 {} / max {}",
        fmt_us(p(0.5)),
        fmt_us(p(0.99)),
        fmt_us(p(1.0))
    );
    Ok(rate)
}

/// How busy the spool's single writer was: the share of wall time spent applying and
/// committing batches (fsync included). Near 100% means the writer is the bottleneck.
fn writer_busy_row(s: &mut Suite, sec: &str, label: &str, agg: &Agg) {
    let (Some(busy), Some(mean)) = (agg.writer_busy(), agg.commit_mean()) else {
        return;
    };
    let per_commit = agg.commits.map_or(0.0, |(n, _)| agg.ok as f64 / n.max(1.0));
    s.row(
        sec,
        &format!("spool writer busy at {label} (apply + commit + fsync)"),
        format!("{:.0}% of the time", 100.0 * busy),
    )
    .reference = format!(
        "mean commit {:.2} ms; writer CPU {:.2} cores; ~{per_commit:.0} webhooks per commit",
        mean * 1000.0,
        agg.writer_cores
    );
}

fn ingest(s: &mut Suite, base: &Proc, disk_rate: Option<f64>) -> Result<()> {
    println!(
        "{} ingest only: 3 routes, destination down (holding requests)",
        s.elapsed()
    );
    let recv = s.receiver("receiver-held", &["/"])?;
    let data = s.data_dir("ingest");
    let routes = three_routes(&recv.url(""), "");
    let h = s.hookfan("hookfan-ingest", &data, &routes)?;
    // The contenders, in the same alternation: the durable floor, and the previous hookfan
    // (same config and routes, its own data directory) when one was given.
    let floor_data = s.data_dir("ingest-floor");
    let mut floor = match s.floor("floor-ingest", &floor_data) {
        Ok(p) => Some(p),
        Err(e) => {
            s.note(format!("the durable floor was not measured: {e:#}"));
            None
        }
    };
    let old_data = s.data_dir("ingest-old");
    let mut old = match s.old_hookfan("hookfan-old-ingest", &old_data, &routes) {
        Ok(p) => p,
        Err(e) => {
            s.note(format!("the {} was not measured: {e:#}", s.old_name()));
            None
        }
    };
    let mut sides: Vec<(&Proc, &[&Proc])> = vec![(&h, &[])];
    sides.extend(floor.iter().map(|p| (p, &[] as &[&Proc])));
    sides.extend(old.iter().map(|p| (p, &[] as &[&Proc])));
    let mut aggs = s.compare_sides(base, &sides)?.into_iter();
    let b = aggs.next().context("the baseline's rounds")?;
    let hf = aggs.next().context("hookfan's rounds")?;
    let floor_agg = floor.as_ref().and_then(|_| aggs.next());
    let old_agg = old.as_ref().and_then(|_| aggs.next());
    // Done with the contenders: the rest of the scenario is hookfan's.
    for p in [floor.as_mut(), old.as_mut()].into_iter().flatten() {
        s.stop(p, Duration::from_secs(20));
    }
    drop((floor, old));
    s.cleanup(&floor_data);
    s.cleanup(&old_data);
    let sec = "1 ingest only (dest. down)";
    s.row(sec, "bare axum baseline: requests/s", fmt_rate(b.rps()))
        .reference = format!(
        "server {:.2} + loadgen {:.2} cores; machine {:.2}",
        b.server_cores, b.gen_cores, b.machine_cores
    );
    let ratio = hf.rps() / b.rps();
    let r = s.row(
        sec,
        "hookfan durable ingest: requests/s",
        fmt_rate(hf.rps()),
    );
    r.reference = format!("baseline {}", fmt_rate(b.rps()));
    r.ratio = format!("{:.2}", ratio);
    r.target = ">= 0.50 of baseline".into();
    r.verdict = verdict(ratio >= 0.5);
    s.row(
        sec,
        "hookfan CPU cores at max rate (writer thread)",
        format!("{:.2} ({:.2})", hf.server_cores, hf.writer_cores),
    )
    .reference = format!(
        "loadgen {:.2}; whole machine {:.2} of 2",
        hf.gen_cores, hf.machine_cores
    );
    // The budget the ratio target implies: at half the baseline's rate, hookfan and the load
    // generator at these costs per webhook would need this many of the machine's cores.
    let (hook_us, gen_us) = (
        cpu_us(hf.server_cores, hf.rps()),
        cpu_us(hf.gen_cores, hf.rps()),
    );
    let half = 0.5 * b.rps();
    s.row(
        sec,
        "hookfan CPU per stored webhook (writer thread)",
        format!(
            "{hook_us:.0} us ({:.0} us)",
            cpu_us(hf.writer_cores, hf.rps())
        ),
    )
    .reference = format!(
        "bare axum {:.0} us per request; at 0.5 of the baseline ({}) hookfan + loadgen would need {:.2} cores",
        cpu_us(b.server_cores, b.rps()),
        fmt_rate(half),
        half * (hook_us + gen_us) / 1e6
    );
    s.row(
        sec,
        "ack latency at max rate p50 / p99",
        format!("{} / {}", fmt_us(hf.p50), fmt_us(hf.p99)),
    )
    .reference = format!("baseline {} / {}", fmt_us(b.p50), fmt_us(b.p99));
    writer_busy_row(s, sec, "max rate", &hf);
    fsync_rows(s, sec, "max rate", &hf, disk_rate);
    if let Some(f) = &floor_agg {
        contender_rows(s, sec, "durable floor (fsync per group)", f, &b);
    }
    let old_name = s.old_name();
    if let Some(o) = &old_agg {
        contender_rows(s, sec, &old_name, o, &b);
    }
    if let Some(f) = &floor_agg {
        versus_row(s, sec, "durable floor", &hf, f);
    }
    if let Some(o) = &old_agg {
        versus_row(s, sec, &old_name, &hf, o);
    }

    // Latency at half of hookfan's maximum rate, baseline at the same rate.
    let rate = hf.rps() / 2.0;
    println!(
        "{} latency at {rate:.0}/s (half of hookfan's max)",
        s.elapsed()
    );
    let (lb, lh) = s.latency(base, &h, rate)?;
    let sec = "1 ingest, half max rate";
    s.row(sec, "offered rate (half of hookfan's max)", fmt_rate(rate));
    let r = s.row(
        sec,
        "hookfan ack p50 / p99 / p99.9",
        format!(
            "{} / {} / {}",
            fmt_us(lh.p50),
            fmt_us(lh.p99),
            fmt_us(lh.p999)
        ),
    );
    r.reference = format!(
        "baseline {} / {} / {}",
        fmt_us(lb.p50),
        fmt_us(lb.p99),
        fmt_us(lb.p999)
    );
    r.ratio = format!("p99 x{:.1}", lh.p99 as f64 / lb.p99.max(1) as f64);
    r.target = "p99 <= 5 ms".into();
    r.verdict = verdict(lh.p99 <= 5_000);
    if let Some((p99, within)) = lh.server_ack {
        s.row(
            sec,
            "hookfan ack p99, its own histogram (handler start to answer)",
            format!("<= {} ms", p99 * 1000.0),
        )
        .reference = format!(
            "{:.2}% within 5 ms; the load generator's figure above also counts the socket, the scheduler and requests sent late on a busy connection",
            within * 100.0
        );
    }
    s.row(
        sec,
        "disk fsync latency meanwhile (probe)",
        fmt_disk(lh.disk),
    )
    .reference = format!("during baseline: {}", fmt_disk(lb.disk));
    writer_busy_row(s, sec, "half rate", &lh);
    fsync_rows(s, sec, "half rate", &lh, disk_rate);
    let hwm = h.status_kb("VmHWM");
    let r = s.row(
        sec,
        "hookfan peak RSS (VmHWM) after ingest runs",
        fmt_mib(hwm),
    );
    r.reference = format!("baseline {}", fmt_mib(base.status_kb("VmHWM")));
    r.target = "<= 64 MiB".into();
    r.verdict = verdict(hwm <= 64 * 1024);
    let mut h = h;
    s.stop(&mut h, Duration::from_secs(20));
    s.cleanup(&data);
    Ok(())
}

/// A contender measured in the same alternation as the baseline and hookfan: its rate and ratio
/// to the baseline, its CPU per request.
fn contender_rows(s: &mut Suite, sec: &str, name: &str, a: &Agg, b: &Agg) {
    let r = s.row(sec, &format!("{name}: requests/s"), fmt_rate(a.rps()));
    r.reference = format!(
        "baseline {}; ack p50 / p99 {} / {}",
        fmt_rate(b.rps()),
        fmt_us(a.p50),
        fmt_us(a.p99)
    );
    r.ratio = format!("{:.2}", a.rps() / b.rps());
    let per_fsync = a.per_fsync().map_or("events per fsync n/a".into(), |p| {
        format!("{p:.1} events per fsync")
    });
    s.row(
        sec,
        &format!("{name}: CPU per request (writer thread)"),
        format!(
            "{:.0} us ({:.0} us)",
            cpu_us(a.server_cores, a.rps()),
            cpu_us(a.writer_cores, a.rps())
        ),
    )
    .reference = format!(
        "{:.2} cores ({:.2}); bare axum {:.0} us; {per_fsync}",
        a.server_cores,
        a.writer_cores,
        cpu_us(b.server_cores, b.rps())
    );
}

/// hookfan's rate over a contender's, measured in the same run.
fn versus_row(s: &mut Suite, sec: &str, name: &str, hf: &Agg, a: &Agg) {
    let r = s.row(
        sec,
        &format!("hookfan / {name}: requests/s"),
        format!("{} / {}", fmt_rate(hf.rps()), fmt_rate(a.rps())),
    );
    r.ratio = format!("{:.2}", hf.rps() / a.rps().max(1e-9));
    r.reference = format!(
        "CPU per request {:.0} us / {:.0} us",
        cpu_us(hf.server_cores, hf.rps()),
        cpu_us(a.server_cores, a.rps())
    );
}

fn fsync_rows(s: &mut Suite, sec: &str, what: &str, a: &Agg, disk_rate: Option<f64>) {
    let secs = a.io.secs.max(1e-9);
    match a.io.fsyncs {
        Some(f) => {
            let per_s = f as f64 / secs;
            let r = s.row(sec, &format!("fsyncs/s at {what}"), fmt_rate(per_s));
            if let Some(d) = disk_rate {
                r.reference = format!("disk probe {}", fmt_rate(d));
                r.ratio = format!("{:.2} of disk", per_s / d);
            }
            let per = a.per_fsync().unwrap_or(0.0);
            let r = s.row(
                sec,
                &format!("events per fsync at {what}"),
                format!("{per:.1}"),
            );
            r.target = "> 1 (group commit)".into();
            r.verdict = verdict(per > 1.0);
        }
        None => {
            s.row(
                sec,
                &format!("fsyncs/s at {what}"),
                "n/a (perf unavailable)".into(),
            );
        }
    }
    let per_event = a.io.write_bytes as f64 / a.ok.max(1) as f64;
    let r = s.row(
        sec,
        &format!("disk writes per event at {what} (block device)"),
        format!("{:.1} KiB", per_event / 1024.0),
    );
    r.reference = format!(
        "{:.0} MiB/s{}",
        a.io.write_bytes as f64 / secs / (1 << 20) as f64,
        a.io.pwrites.map_or(String::new(), |p| format!(
            "; {:.1} pwrites/event",
            p as f64 / a.ok.max(1) as f64
        ))
    );
}

/// Ingest without storage: no route takes `message.new`, so hookfan reads, verifies, parses
/// and answers 200 without touching the spool. Separates the HTTP + signature cost from the
/// spool's, and shows what grows with the number of requests alone.
fn unrouted(s: &mut Suite, base: &Proc) -> Result<()> {
    println!(
        "{} ingest, no route matches (verified, not stored)",
        s.elapsed()
    );
    let recv = s.receiver("receiver-unrouted", &["/"])?;
    let data = s.data_dir("unrouted");
    let route = format!(
        "- name: calls-only\n  event_types: [call.session_started]\n  http: {{ url: {} }}",
        recv.url("/calls")
    );
    let h = s.hookfan("hookfan-unrouted", &data, &[route])?;
    let rss0 = h.status_kb("VmRSS");
    let (b, hf) = s.compare(base, &h, &[])?;
    let rss1 = h.status_kb("VmRSS");
    let sec = "1c verify only (no route)";
    let r = s.row(
        sec,
        "hookfan verified, unstored: requests/s",
        fmt_rate(hf.rps()),
    );
    r.reference = format!("baseline {}", fmt_rate(b.rps()));
    r.ratio = format!("{:.2}", hf.rps() / b.rps());
    s.row(
        sec,
        "hookfan CPU cores at max rate",
        format!("{:.2}", hf.server_cores),
    )
    .reference = format!(
        "loadgen {:.2}; machine {:.2}; baseline server {:.2}",
        hf.gen_cores, hf.machine_cores, b.server_cores
    );
    s.row(
        sec,
        "hookfan CPU per verified request",
        format!("{:.0} us", cpu_us(hf.server_cores, hf.rps())),
    )
    .reference = format!(
        "bare axum {:.0} us per request",
        cpu_us(b.server_cores, b.rps())
    );
    let r = s.row(
        sec,
        "RSS growth with the number of requests",
        format!(
            "{:+.1} MiB per 100k requests",
            (rss1 as f64 - rss0 as f64) / 1024.0 / hf.sent.max(1) as f64 * 100_000.0
        ),
    );
    r.reference = format!(
        "{} -> {} over {} requests",
        fmt_mib(rss0),
        fmt_mib(rss1),
        hf.sent
    );
    let mut h = h;
    s.stop(&mut h, Duration::from_secs(20));
    s.cleanup(&data);
    Ok(())
}

fn refused(s: &mut Suite, base: &Proc) -> Result<()> {
    println!(
        "{} ingest, destination refusing connections (retry churn)",
        s.elapsed()
    );
    // A port with nothing listening: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let data = s.data_dir("refused");
    let h = s.hookfan(
        "hookfan-refused",
        &data,
        &three_routes(&format!("http://127.0.0.1:{port}"), ""),
    )?;
    let (b, hf) = s.compare(base, &h, &[])?;
    let sec = "1b ingest, dest. refusing";
    let r = s.row(
        sec,
        "hookfan durable ingest: requests/s",
        fmt_rate(hf.rps()),
    );
    r.reference = format!("baseline {}", fmt_rate(b.rps()));
    r.ratio = format!("{:.2}", hf.rps() / b.rps());
    s.row(
        sec,
        "hookfan CPU cores at max rate (writer thread)",
        format!("{:.2} ({:.2})", hf.server_cores, hf.writer_cores),
    )
    .reference = format!(
        "loadgen {:.2}; machine {:.2}",
        hf.gen_cores, hf.machine_cores
    );
    if let Some(per) = hf.per_fsync() {
        s.row(
            sec,
            "events per fsync (incl. retry bookkeeping)",
            format!("{per:.1}"),
        );
    }
    let mut h = h;
    s.stop(&mut h, Duration::from_secs(20));
    s.cleanup(&data);
    Ok(())
}

fn deliver(s: &mut Suite, base: &Proc, disk_rate: Option<f64>) -> Result<()> {
    println!(
        "{} ingest + delivery to a fast local receiver, 3 routes",
        s.elapsed()
    );
    let recv = s.receiver("receiver-live", &[])?;
    let data = s.data_dir("deliver");
    let h = s.hookfan("hookfan-deliver", &data, &three_routes(&recv.url(""), ""))?;
    let w0 = Instant::now();
    let (b, hf) = s.compare(base, &h, &[&recv])?;
    let load_secs = w0.elapsed();
    let (_, st) = common::control(recv.addr, "GET", "/_bench/stats")?;
    let at_end: Value = serde_json::from_str(&st)?;
    let sec = "2 ingest + delivery (3 routes)";
    let r = s.row(sec, "hookfan ingest: requests/s", fmt_rate(hf.rps()));
    r.reference = format!("baseline {}", fmt_rate(b.rps()));
    r.ratio = format!("{:.2}", hf.rps() / b.rps());
    r.target = ">= 0.50 of baseline".into();
    r.verdict = verdict(hf.rps() / b.rps() >= 0.5);
    s.row(
        sec,
        "hookfan CPU cores at max rate (writer thread)",
        format!("{:.2} ({:.2})", hf.server_cores, hf.writer_cores),
    )
    .reference = format!(
        "loadgen {:.2}; receiver incl.; machine {:.2}",
        hf.gen_cores, hf.machine_cores
    );
    writer_busy_row(s, sec, "max rate", &hf);
    fsync_rows(s, sec, "max rate", &hf, disk_rate);
    // Everything the load generator got a 200 for, warm-ups included, times 3 routes.
    let expected = 3 * hf.sent;
    let delivered_at_end = common::json_u64(&at_end, "unique");
    let t_wait = Instant::now();
    let v = Suite::wait_delivered(&recv, expected, Duration::from_secs(120))?;
    let caught_up = common::json_u64(&v, "unique");
    let catch_up = t_wait.elapsed();
    if caught_up < expected {
        s.note(format!(
            "deliver: only {caught_up} of {expected} deliveries arrived within 120 s after the load"
        ));
    }
    s.row(
        sec,
        "deliveries done when the load stopped",
        format!(
            "{delivered_at_end} of {expected} ({:.0}%)",
            100.0 * delivered_at_end as f64 / expected.max(1) as f64
        ),
    )
    .reference = format!(
        "{} over {:.0} s of load",
        fmt_rate(delivered_at_end as f64 / load_secs.as_secs_f64()),
        load_secs.as_secs_f64()
    );
    s.row(
        sec,
        "delivery catch-up after the load stopped",
        fmt_dur(catch_up),
    );
    let rate = hf.rps() / 2.0;
    println!(
        "{} latency at {rate:.0}/s (half of hookfan's max with delivery)",
        s.elapsed()
    );
    let (lb, lh) = s.latency(base, &h, rate)?;
    let r = s.row(
        sec,
        "ack p50 / p99 at half max rate",
        format!("{} / {}", fmt_us(lh.p50), fmt_us(lh.p99)),
    );
    r.reference = format!(
        "baseline {} / {} at {}",
        fmt_us(lb.p50),
        fmt_us(lb.p99),
        fmt_rate(rate)
    );
    r.target = "p99 <= 10 ms".into();
    r.verdict = verdict(lh.p99 <= 10_000);
    s.row(
        sec,
        "disk fsync latency meanwhile (probe)",
        fmt_disk(lh.disk),
    );
    let hwm = h.status_kb("VmHWM");
    let r = s.row(sec, "hookfan peak RSS (VmHWM)", fmt_mib(hwm));
    r.target = "<= 64 MiB".into();
    r.verdict = verdict(hwm <= 64 * 1024);
    let mut h = h;
    s.stop(&mut h, Duration::from_secs(30));
    s.cleanup(&data);
    Ok(())
}

/// Spools `n` events for routes of different concurrency whose destination holds every
/// request, then releases one route at a time and measures its drain at the destination.
/// `paths`: (label, path, whether the row is judged against `target`).
fn drain(
    s: &mut Suite,
    sec: &str,
    dest: &Proc,
    routes: Vec<String>,
    paths: &[(&str, &str, bool)],
    target: Option<f64>,
) -> Result<()> {
    let n = s.args.drain_events;
    let data = s.data_dir(&format!("drain-{}", dest.name));
    let h = s.hookfan(&format!("hookfan-{}", dest.name), &data, &routes)?;
    let t0 = Instant::now();
    let fill = s.fill(&h, n, 600.0)?;
    s.row(
        sec,
        "events spooled (ingest at full speed)",
        format!("{}", fill.ok),
    )
    .reference = format!(
        "{} in {:.1} s",
        fmt_rate(fill.rps),
        t0.elapsed().as_secs_f64()
    );
    if fill.ok < n {
        s.note(format!(
            "{sec}: only {} of {n} events were accepted ({} sent)",
            fill.ok, fill.issued
        ));
    }
    for &(label, path, judged) in paths {
        common::control(dest.addr, "POST", "/_bench/reset")?;
        let io = s.io_start(h.pid());
        let released = common::now_us();
        let w = Window::start(&[&h, dest]);
        common::control(dest.addr, "POST", &format!("/_bench/release?p={path}"))?;
        let v = Suite::wait_delivered(dest, fill.ok, Duration::from_secs(300))?;
        let cpu = w.end();
        let io = Suite::io_end(io);
        let got = common::json_u64(&v, "unique");
        let last = common::json_u64(&v, "last_us");
        let secs = (last.saturating_sub(released)) as f64 / 1e6;
        let rate = got as f64 / secs.max(1e-6);
        let r = s.row(sec, &format!("drain rate, {label}"), fmt_rate(rate));
        r.reference = format!(
            "{got} events in {secs:.1} s; hookfan {:.2} cores (writer {:.2}), dest. {:.2}",
            Window::cores(&cpu, &h.name),
            Window::cores(&cpu, &format!("{}:writer", h.name)),
            Window::cores(&cpu, &dest.name)
        );
        if let Some(t) = target.filter(|_| judged) {
            r.target = format!(">= {}", fmt_rate(t));
            r.verdict = verdict(rate >= t);
        }
        // What bounds the drain when the machine is busy: the CPU each delivered event costs,
        // and how many cores the target rate would take at that cost.
        let per_event =
            |label: &str| cpu_us(Window::cores(&cpu, label) * cpu.secs, got.max(1) as f64);
        let (hook_us, dest_us) = (per_event(&h.name), per_event(&dest.name));
        let writer_us = per_event(&format!("{}:writer", h.name));
        let r = s.row(
            sec,
            &format!("  CPU per delivered event, {label}"),
            format!("hookfan {hook_us:.0} us (writer {writer_us:.0} us), dest. {dest_us:.0} us"),
        );
        if let Some(t) = target.filter(|_| judged) {
            r.reference = format!(
                "at {} these costs would take {:.2} cores",
                fmt_rate(t),
                t * (hook_us + dest_us) / 1e6
            );
        }
        if let Some(f) = io.fsyncs.filter(|&f| f > 0) {
            s.row(
                sec,
                &format!("  deliveries per fsync, {label}"),
                format!("{:.1}", got as f64 / f as f64),
            )
            .reference = format!(
                "{} fsyncs/s; disk writes {:.1} KiB/event",
                fmt_rate(f as f64 / secs.max(1e-6)),
                io.write_bytes as f64 / got.max(1) as f64 / 1024.0
            );
        }
        if got < fill.ok {
            s.note(format!(
                "{sec} {label}: only {got} of {} delivered within 300 s",
                fill.ok
            ));
        }
    }
    let hwm = h.status_kb("VmHWM");
    s.row(sec, "hookfan peak RSS (VmHWM)", fmt_mib(hwm));
    let mut h = h;
    s.stop(&mut h, Duration::from_secs(30));
    s.cleanup(&data);
    Ok(())
}

fn drain_http(s: &mut Suite) -> Result<()> {
    println!(
        "{} drain {} spooled events to HTTP",
        s.elapsed(),
        s.args.drain_events
    );
    let recv = s.receiver("receiver-drain", &["/c4", "/default", "/c32"])?;
    let routes = vec![
        format!(
            "- name: drain-c4\n  event_types: []\n  http: {{ url: {}, concurrency: 4 }}",
            recv.url("/c4")
        ),
        format!(
            "- name: drain-default\n  event_types: []\n  http: {{ url: {} }}",
            recv.url("/default")
        ),
        format!(
            "- name: drain-c32\n  event_types: []\n  http: {{ url: {}, concurrency: 32 }}",
            recv.url("/c32")
        ),
    ];
    let default = format!(
        "concurrency {} (default)",
        hookfan::config::DEFAULT_HTTP_CONCURRENCY
    );
    drain(
        s,
        "3 drain to HTTP",
        &recv,
        routes,
        &[
            ("concurrency 4", "/c4", false),
            (&default, "/default", true),
            ("concurrency 32", "/c32", false),
        ],
        Some(10_000.0),
    )
}

fn drain_sqs(s: &mut Suite) -> Result<()> {
    println!(
        "{} drain {} spooled events to the SQS stub",
        s.elapsed(),
        s.args.drain_events
    );
    let stub = s.sqs_stub(
        "sqs-stub",
        &["/123456789012/bench-c4", "/123456789012/bench-default"],
    )?;
    let route = |name: &str, queue: &str, conc: Option<u32>| {
        let conc = conc.map_or(String::new(), |n| format!("\n    concurrency: {n}"));
        format!(
            "- name: {name}\n  event_types: []\n  sqs:\n    queue_url: http://{}/123456789012/{queue}\n    endpoint_url: http://{}\n    region: us-east-1{conc}",
            stub.addr, stub.addr
        )
    };
    // The second route leaves `concurrency` out, so it runs at the default, whatever that is.
    let routes = vec![
        route("sqs-c4", "bench-c4", Some(4)),
        route("sqs-default", "bench-default", None),
    ];
    let default = format!(
        "concurrency {} x batch 10 (default)",
        hookfan::config::DEFAULT_AWS_CONCURRENCY
    );
    drain(
        s,
        "4 drain to SQS stub",
        &stub,
        routes,
        &[
            ("concurrency 4 x batch 10", "/123456789012/bench-c4", false),
            (&default, "/123456789012/bench-default", true),
        ],
        Some(20_000.0),
    )
}

fn backlog(s: &mut Suite, base: &Proc) -> Result<()> {
    let n = s.args.backlog;
    println!(
        "{} backlog: {n} events pending (3 routes, destination down)",
        s.elapsed()
    );
    let sec = "5 backlog";
    let recv = s.receiver("receiver-backlog", &["/"])?;
    let data = s.data_dir("backlog");
    let routes = three_routes(&recv.url(""), "");
    let mut h = s.hookfan("hookfan-backlog", &data, &routes)?;
    let run = s.next_run_id();
    let t = Instant::now();
    let status = Suite::one_webhook(h.addr, run)?;
    let empty_first = h.ready + t.elapsed();
    let empty_ready = h.ready;
    s.stop(&mut h, Duration::from_secs(20));
    // Restart on the (nearly) empty spool: the reference for the restart with a backlog.
    h = s.hookfan("hookfan-backlog", &data, &routes)?;
    let t = Instant::now();
    Suite::one_webhook(h.addr, run + 1)?;
    let empty_restart_first = h.ready + t.elapsed();
    let empty_restart_ready = h.ready;
    if status != 200 {
        s.note(format!("first webhook on an empty spool got {status}"));
    }
    let t0 = Instant::now();
    let sampler = RssSampler::start(h.pid());
    let fill = s.fill(&h, n.saturating_sub(2), s.args.backlog_max_secs)?;
    let samples = sampler.stop();
    let pending = fill.ok + 2;
    let r = s.row(sec, "events pending (x3 routes)", format!("{pending}"));
    r.reference = format!(
        "built at {} in {:.0} s",
        fmt_rate(fill.rps),
        t0.elapsed().as_secs_f64()
    );
    if pending < n {
        r.verdict = "SCALED".into();
        s.note(format!(
            "backlog: reached {pending} of {n} events within {} s (BENCH_BACKLOG_MAX_SECS)",
            s.args.backlog_max_secs
        ));
    }
    let hwm_fill = h.status_kb("VmHWM");
    let rss_after = h.status_kb("VmRSS");
    let r = s.row(
        sec,
        "peak RSS while building the backlog",
        fmt_mib(hwm_fill),
    );
    r.reference = format!("RSS after: {}", fmt_mib(rss_after));
    r.target = "<= 128 MiB".into();
    r.verdict = verdict(hwm_fill <= 128 * 1024);
    // Growth in the second half of the build, when caches are long warm: what keeps growing
    // with the number of requests served.
    if samples.len() >= 4 {
        let mid = samples[samples.len() / 2];
        let end = samples[samples.len() - 1];
        let secs = (end.0 - mid.0).max(1e-6);
        let requests = fill.rps * secs;
        let r = s.row(
            sec,
            "RSS growth, 2nd half of the build",
            format!(
                "{:+.1} MiB per 100k requests",
                (end.1 as f64 - mid.1 as f64) / 1024.0 / requests.max(1.0) * 100_000.0
            ),
        );
        r.reference = format!(
            "{} at {:.0} s -> {} at {:.0} s",
            fmt_mib(mid.1),
            mid.0,
            fmt_mib(end.1),
            end.0
        );
    }
    let stop = s.stop(&mut h, Duration::from_secs(60));
    // The log's directory (segments, prepared ones included, and checkpoints).
    let mut allocated = 0;
    for entry in std::fs::read_dir(data.join("spool"))? {
        use std::os::unix::fs::MetadataExt;
        allocated += entry?.metadata()?.blocks() * 512;
    }
    s.row(
        sec,
        "disk use (spool/)",
        format!("{:.0} MiB", allocated as f64 / (1 << 20) as f64),
    )
    .reference = format!(
        "{:.0} bytes/event; body ~{} B",
        allocated as f64 / pending.max(1) as f64,
        common::message_new_body(0, 0, common::now_ms()).len()
    );
    s.row(
        sec,
        "shutdown (SIGTERM to exit)",
        stop.map_or("did not exit: killed".into(), fmt_dur),
    );
    // Restart with the backlog.
    let mut h = s.hookfan("hookfan-backlog", &data, &routes)?;
    let t = Instant::now();
    let status = Suite::one_webhook(h.addr, run + 2)?;
    let first = h.ready + t.elapsed();
    let r = s.row(sec, "restart: start to listening", fmt_dur(h.ready));
    r.reference = format!(
        "empty spool {} (first start {})",
        fmt_dur(empty_restart_ready),
        fmt_dur(empty_ready)
    );
    r.ratio = format!(
        "x{:.1}",
        h.ready.as_secs_f64() / empty_restart_ready.as_secs_f64().max(1e-6)
    );
    let r = s.row(sec, "restart: start to first 200", fmt_dur(first));
    r.reference = format!(
        "empty spool {} (first start {})",
        fmt_dur(empty_restart_first),
        fmt_dur(empty_first)
    );
    r.ratio = format!(
        "x{:.1}",
        first.as_secs_f64() / empty_restart_first.as_secs_f64().max(1e-6)
    );
    r.target = "<= 1 s".into();
    r.verdict = verdict(first <= Duration::from_secs(1) && status == 200);
    // Ingest on top of the backlog, side by side with the baseline.
    let (b, hf) = s.compare(base, &h, &[])?;
    let r = s.row(
        sec,
        "ingest with the backlog: requests/s",
        fmt_rate(hf.rps()),
    );
    r.reference = format!("baseline {}", fmt_rate(b.rps()));
    r.ratio = format!("{:.2}", hf.rps() / b.rps());
    let hwm = h.status_kb("VmHWM");
    let r = s.row(sec, "peak RSS after restart + load", fmt_mib(hwm));
    // The load's events stay pending too: the peak is with more than the backlog.
    r.reference = format!("{} pending by then", pending + hf.ok + 1);
    r.target = "<= 128 MiB".into();
    r.verdict = verdict(hwm <= 128 * 1024);
    // What one Prometheus scrape costs with this backlog (the backlog gauges are computed at
    // scrape time). Last, because it changes the process's memory.
    if let Some(admin) = h.admin {
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        let cpu0 = common::process_cpu_seconds(h.pid());
        let t = Instant::now();
        let answer = common::blocking_request(admin, req.as_bytes(), Duration::from_secs(120));
        let took = t.elapsed();
        let cpu = common::process_cpu_seconds(h.pid()) - cpu0;
        match answer {
            Ok((200, _)) => {
                let r = s.row(sec, "one GET /metrics with the backlog", fmt_dur(took));
                r.reference = format!("{cpu:.2} CPU s");
                let after = h.status_kb("VmHWM");
                let r = s.row(sec, "peak RSS after that scrape", fmt_mib(after));
                r.reference = format!("before: {}", fmt_mib(hwm));
                r.target = "<= 128 MiB".into();
                r.verdict = verdict(after <= 128 * 1024);
            }
            Ok((status, _)) => s.note(format!("GET /metrics answered {status}")),
            Err(e) => s.note(format!("GET /metrics failed: {e}")),
        }
    }
    s.stop(&mut h, Duration::from_secs(60));
    s.cleanup(&data);
    Ok(())
}

// ---------------------------------------------------------------------------------------------

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
