//! The processes a run starts and watches: hookfan, bare axum, the receivers, the durable floor.

use super::*;

/// A child process that printed `... listening on http://ADDR`; killed when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: Option<SocketAddr>,
    /// From spawn to the listening line.
    pub(crate) ready: Duration,
    pub(crate) log: PathBuf,
    /// Name prefix of the process's storage writer thread(s), for its CPU ("" = none).
    pub(crate) writer: &'static str,
}

pub(crate) fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGTERM, then wait up to `timeout` (SIGKILL after). Returns how long it took to exit.
    pub(crate) fn stop(&mut self, timeout: Duration) -> Result<Duration> {
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

    pub(crate) fn status_kb(&self, field: &str) -> u64 {
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

pub(crate) fn proc_status_kb(pid: u32, field: &str) -> u64 {
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
pub(crate) fn machine_jiffies() -> (u64, u64) {
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
pub(crate) struct Window {
    pub(crate) t0: Instant,
    /// (label, pid, thread-name prefix or "" for the whole process, CPU seconds at start).
    pub(crate) pids: Vec<(String, u32, &'static str, f64)>,
    pub(crate) machine: (u64, u64),
}

pub(crate) struct CpuUse {
    /// (label, cores); a process's spool writer thread is labelled `NAME:writer`.
    pub(crate) procs: Vec<(String, f64)>,
    /// Cores busy on the whole machine.
    pub(crate) machine: f64,
    /// The window's length in seconds.
    pub(crate) secs: f64,
}

/// CPU seconds of `pid`'s threads whose name starts with `prefix` ("" = the whole process).
pub(crate) fn cpu_seconds(pid: u32, prefix: &str) -> f64 {
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
pub(crate) const WRITER_THREAD: &str = "hookfan-spool";
/// bench_floor's writer thread.
pub(crate) const FLOOR_WRITER_THREAD: &str = "floor-writer";

impl Window {
    pub(crate) fn start(procs: &[&Proc]) -> Window {
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

    pub(crate) fn end(self) -> CpuUse {
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

    pub(crate) fn cores(cpu: &CpuUse, label: &str) -> f64 {
        cpu.procs
            .iter()
            .find(|(n, _)| n == label)
            .map_or(0.0, |(_, c)| *c)
    }
}
