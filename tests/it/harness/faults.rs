//! Fault injection (e2e_faults).

#[allow(unused_imports)]
use super::*;

/// The nice value in a `/proc/.../stat` line: `pid (comm) state ...`, where comm may hold
/// spaces; nice is field 19, the 17th after the closing parenthesis.
pub(crate) fn nice_in_stat(stat: &str) -> i32 {
    let close = stat.rfind(')').expect("comm in parentheses");
    stat[close + 1..]
        .split_whitespace()
        .nth(16)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no nice value in {stat}"))
}

/// The nice value of the calling thread (a daemon started from it inherits it).
pub fn own_nice() -> i32 {
    nice_in_stat(&std::fs::read_to_string("/proc/thread-self/stat").expect("read own stat"))
}

impl Daemon {
    /// The pid of the running child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Sets the running child's soft file size limit (`RLIMIT_FSIZE`) with util-linux
    /// `prlimit --pid`; `None` raises it back to the hard limit. Only the soft limit is
    /// touched, so raising it again needs no privilege.
    pub fn limit_file_size(&self, bytes: Option<u64>) {
        let pid = self.pid().to_string();
        let soft = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
        let out = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={soft}:")])
            .output()
            .unwrap_or_else(|e| {
                panic!("run prlimit (util-linux) to limit the spool's file size: {e}")
            });
        assert!(
            out.status.success(),
            "prlimit --pid {pid} --fsize={soft}: failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("[harness] hookfan (pid {pid}) file size limit: {soft}");
    }

    /// Peak resident memory of the running child (`VmHWM` in /proc/PID/status), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resident memory of the running child now (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Every thread of the running child: its name and its nice value (/proc/PID/task/*/stat).
    pub fn thread_priorities(&self) -> Vec<(String, i32)> {
        let dir = format!("/proc/{}/task", self.pid());
        let tasks = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}"));
        let mut threads = Vec::new();
        for task in tasks.flatten() {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
            threads.push((stat[open + 1..close].to_string(), nice_in_stat(&stat)));
        }
        threads
    }

    /// A `<field> N kB` line of the running child's /proc/PID/status.
    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} line in {path}"))
    }

    /// `<dir>/data/spool`: the spool's log (segments, checkpoints).
    pub fn spool_dir(&self) -> PathBuf {
        self.dir().join("data").join("spool")
    }

    /// Runs `hookfan serve` once more on this daemon's config while the daemon is stopped, and
    /// returns how it ended: for startups that must fail. Panics if it is still running
    /// after `within` (it is then killed), or if it got as far as listening.
    pub async fn serve_expecting_exit(&self, within: Duration) -> std::process::Output {
        assert!(self.child.is_none(), "stop the daemon first");
        let mut cmd = serve_command(&self.config_path, &self.env);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let pid = child.id().to_string();
        let waiter = tokio::task::spawn_blocking(move || child.wait_with_output());
        let out = match timeout(within, waiter).await {
            Ok(joined) => joined.expect("join").expect("wait for hookfan serve"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                panic!("hookfan serve was expected to exit, but still ran after {within:?}");
            }
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in stderr.lines() {
            eprintln!("[hookfan once] {line}");
        }
        assert!(
            !stderr.contains(LISTENING),
            "hookfan started listening although it should have refused to start"
        );
        out
    }
}

/// The `p`-th percentile (0..=100) of `samples` (sorted in place); zero when empty.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

impl Receiver {
    /// The next recorded request, or `None` once `deadline` passes (never panics).
    pub async fn next_before(&mut self, deadline: Instant) -> Option<Recorded> {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(r)) => Some(r),
            Ok(None) => unreachable!("the receiver state holds a sender"),
            Err(_) => None,
        }
    }
}
