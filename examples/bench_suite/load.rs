//! Load runs: the load generator's results, their aggregation over rounds, CPU and I/O accounting.

use super::*;

#[derive(Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) connections: usize,
    pub(crate) duration: f64,
    pub(crate) warmup: f64,
    pub(crate) max_requests: u64,
    pub(crate) rate: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    pub(crate) ok: u64,
    pub(crate) issued: u64,
    pub(crate) errors: u64,
    pub(crate) non_2xx: u64,
    pub(crate) elapsed: f64,
    pub(crate) rps: f64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) late: u64,
    /// Cores used by the load generator over its whole run.
    pub(crate) gen_cores: f64,
}

impl Load {
    pub(crate) fn from_json(v: &Value) -> Load {
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
pub(crate) struct Io {
    pub(crate) fsyncs: Option<u64>,
    pub(crate) pwrites: Option<u64>,
    /// Bytes written to the block device that holds the work directory
    /// (`/sys/dev/block/M:m/stat`: the filesystem's journal included, and anything else
    /// writing to that disk meanwhile). Not /proc/PID/io's `write_bytes`: that counts each
    /// page (or large folio) dirtied, so a 200-byte write into a 2 MiB folio counts 2 MiB
    /// (on this machine's kernel it read 30x the disk's own figure).
    pub(crate) write_bytes: u64,
    pub(crate) secs: f64,
}

impl Io {
    pub(crate) fn add(&mut self, o: &Io) {
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

pub(crate) struct IoCounter {
    pub(crate) perf: Option<(Child, PathBuf)>,
    pub(crate) device: PathBuf,
    pub(crate) write_bytes: u64,
    pub(crate) t0: Instant,
}

/// The block device's statistics file for the filesystem holding `dir`.
pub(crate) fn device_stat_of(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).map_or(0, |m| m.dev());
    // glibc's encoding of major and minor numbers in a dev_t.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"))
}

/// Bytes written to that device so far (sectors written, field 7, × 512); 0 when it has
/// no statistics (tmpfs, overlay).
pub(crate) fn device_written(stat: &Path) -> u64 {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| s.split_whitespace().nth(6)?.parse::<u64>().ok())
        .map_or(0, |sectors| sectors * 512)
}

/// hookfan's /metrics now; None without an admin listener.
pub(crate) fn metrics_text(h: &Proc) -> Option<String> {
    let (status, body) = common::control(h.admin?, "GET", "/metrics").ok()?;
    (status == 200).then_some(body)
}

/// The value of the unlabelled sample `name` in a /metrics text.
pub(crate) fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
    })
}

/// hookfan's spool commits so far: (count, seconds spent in them), from its /metrics.
pub(crate) fn commit_totals(h: &Proc) -> Option<(f64, f64)> {
    let body = metrics_text(h)?;
    Some((
        sample(&body, "hookfan_spool_commit_seconds_count")?,
        sample(&body, "hookfan_spool_commit_seconds_sum")?,
    ))
}

/// hookfan's own acknowledgement histogram so far (`hookfan_ingest_ack_seconds`, from the
/// handler's start to its answer): (upper bound in seconds, cumulative count) per bucket.
pub(crate) fn ack_buckets(h: &Proc) -> Option<Vec<(f64, f64)>> {
    let body = metrics_text(h)?;
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
pub(crate) fn server_ack_p99(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<(f64, f64)> {
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
pub(crate) struct Agg {
    pub(crate) ok: u64,
    pub(crate) elapsed: f64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) errors: u64,
    pub(crate) non_2xx: u64,
    pub(crate) gen_cores: f64,
    pub(crate) server_cores: f64,
    pub(crate) writer_cores: f64,
    pub(crate) machine_cores: f64,
    pub(crate) io: Io,
    pub(crate) rounds: usize,
    /// Requests answered 2xx, warm-ups included.
    pub(crate) sent: u64,
    /// The disk's fsync latency meanwhile, seen by an independent probe (latency runs).
    pub(crate) disk: Option<FsyncStats>,
    /// hookfan's own histogram of the same run (latency runs): the bound of its p99 bucket
    /// and the share within 5 ms ([`server_ack_p99`]).
    pub(crate) server_ack: Option<(f64, f64)>,
    /// Spool commits during the measured runs: (count, seconds spent applying and committing,
    /// fsync included), from hookfan's /metrics; None without an admin listener.
    pub(crate) commits: Option<(f64, f64)>,
    /// Wall seconds the `commits` figures cover.
    pub(crate) commits_secs: f64,
}

impl Agg {
    pub(crate) fn add(&mut self, l: &Load, cpu: &CpuUse, server: &str) {
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

    pub(crate) fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.max(1e-9)
    }

    /// Share of the wall time the spool's writer spent applying and committing batches.
    pub(crate) fn writer_busy(&self) -> Option<f64> {
        self.commits
            .map(|(_, secs)| secs / self.commits_secs.max(1e-9))
    }

    /// Mean time of one commit (apply + commit + fsync), in seconds.
    pub(crate) fn commit_mean(&self) -> Option<f64> {
        self.commits
            .filter(|&(n, _)| n > 0.0)
            .map(|(n, secs)| secs / n)
    }

    pub(crate) fn per_fsync(&self) -> Option<f64> {
        self.io
            .fsyncs
            .filter(|&f| f > 0)
            .map(|f| self.ok as f64 / f as f64)
    }
}
