//! The suite: the work directory, starting and stopping processes, the measurements every scenario uses.

use super::*;

pub(crate) struct Bins {
    pub(crate) hookfan: PathBuf,
    pub(crate) load: PathBuf,
    pub(crate) baseline: PathBuf,
    pub(crate) receiver: PathBuf,
    pub(crate) sqs: PathBuf,
    pub(crate) floor: PathBuf,
    /// The previous hookfan (`--old-hookfan`), measured beside this one in `ingest`.
    pub(crate) old_hookfan: Option<PathBuf>,
}

pub(crate) struct Suite {
    pub(crate) args: Args,
    pub(crate) bins: Bins,
    pub(crate) work: PathBuf,
    pub(crate) admin_supported: bool,
    /// Whether the previous hookfan has the admin listener.
    pub(crate) old_admin_supported: bool,
    pub(crate) perf_ok: bool,
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    pub(crate) run_seq: u64,
    pub(crate) started: Instant,
}

impl Suite {
    pub(crate) fn wants(&self, scenario: &str) -> bool {
        self.args.scenarios == "all" || self.args.scenarios.split(',').any(|s| s.trim() == scenario)
    }

    pub(crate) fn row(&mut self, section: &str, metric: &str, value: String) -> &mut Row {
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

    pub(crate) fn note(&mut self, text: String) {
        println!("  note: {text}");
        self.notes.push(text);
    }

    pub(crate) fn log_path(&self, name: &str) -> PathBuf {
        self.work.join(format!("{name}.log"))
    }

    pub(crate) fn record_pid(&self, pid: u32) {
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
    pub(crate) fn spawn(&self, name: &str, mut cmd: Command, marker: &'static str) -> Result<Proc> {
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

    pub(crate) fn baseline(&self) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.baseline);
        cmd.args(["--listen", "127.0.0.1:0"]);
        self.spawn("baseline", cmd, "baseline listening on http://")
    }

    /// The durable floor (bench_floor): HMAC + JSON `type` + one pwrite and one fdatasync per
    /// group on a preallocated file, nothing else.
    pub(crate) fn floor(&self, name: &str, data: &Path) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.floor);
        cmd.args(["--listen", "127.0.0.1:0", "--secret", common::API_SECRET])
            .args(["--file-mib", if self.args.quick { "64" } else { "256" }])
            .arg("--dir")
            .arg(data);
        let mut p = self.spawn(name, cmd, "floor listening on http://")?;
        p.writer = FLOOR_WRITER_THREAD;
        Ok(p)
    }

    pub(crate) fn receiver(&self, name: &str, hold: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.receiver);
        cmd.args(["--listen", "127.0.0.1:0"]);
        for h in hold {
            cmd.args(["--hold", h]);
        }
        self.spawn(name, cmd, "receiver listening on http://")
    }

    pub(crate) fn sqs_stub(&self, name: &str, hold: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(&self.bins.sqs);
        cmd.args(["--listen", "127.0.0.1:0"]);
        for h in hold {
            cmd.args(["--hold", h]);
        }
        self.spawn(name, cmd, "sqs stub listening on http://")
    }

    /// Writes a routes.yaml for `routes` (YAML snippets, one per route) and starts hookfan.
    pub(crate) fn hookfan(&self, name: &str, data: &Path, routes: &[String]) -> Result<Proc> {
        self.hookfan_with(name, data, routes, &[])
    }

    /// [`Suite::hookfan`] with `extra` top-level lines in its config.
    pub(crate) fn hookfan_with(
        &self,
        name: &str,
        data: &Path,
        routes: &[String],
        extra: &[String],
    ) -> Result<Proc> {
        let config = self.hookfan_config(name, data, routes, self.admin_supported, &[], extra)?;
        self.hookfan_from(&self.bins.hookfan, name, &config)
    }

    /// The previous hookfan (`--old-hookfan`), if any, with the config this one gets, less the
    /// settings it does not know (`spool_segment_bytes`, a setting of the log spool, when the
    /// user gave it in BENCH_HOOKFAN_CONFIG).
    pub(crate) fn old_hookfan(
        &mut self,
        name: &str,
        data: &Path,
        routes: &[String],
    ) -> Result<Option<Proc>> {
        let Some(bin) = self.bins.old_hookfan.clone() else {
            return Ok(None);
        };
        const NEW_KEYS: &[&str] = &["spool_segment_bytes"];
        let config =
            self.hookfan_config(name, data, routes, self.old_admin_supported, NEW_KEYS, &[])?;
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

    pub(crate) fn hookfan_from(&self, bin: &Path, name: &str, config: &Path) -> Result<Proc> {
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
    /// setting one of `skip` (keys a previous hookfan refuses), `extra` lines, the bench app
    /// and `routes`.
    pub(crate) fn hookfan_config(
        &self,
        name: &str,
        data: &Path,
        routes: &[String],
        admin: bool,
        skip: &[&str],
        extra: &[String],
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
        for line in extra {
            writeln!(y, "{line}")?;
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

    pub(crate) fn next_run_id(&mut self) -> u64 {
        self.run_seq += 1;
        (common::now_us() << 8) ^ self.run_seq
    }

    /// Runs the load generator against `url`; bounded by the spec's duration and count.
    pub(crate) fn load(&mut self, url: &str, spec: Spec) -> Result<Load> {
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

    pub(crate) fn closed(&self, duration: f64) -> Spec {
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
    pub(crate) fn io_start(&self, pid: u32) -> IoCounter {
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
    pub(crate) fn io_end(c: IoCounter) -> Io {
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
    pub(crate) fn measure(
        &mut self,
        h: &Proc,
        others: &[&Proc],
        spec: Spec,
        agg: &mut Agg,
    ) -> Result<Load> {
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
    pub(crate) fn compare(
        &mut self,
        base: &Proc,
        h: &Proc,
        others: &[&Proc],
    ) -> Result<(Agg, Agg)> {
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
    pub(crate) fn compare_sides(
        &mut self,
        base: &Proc,
        sides: &[(&Proc, &[&Proc])],
    ) -> Result<Vec<Agg>> {
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
    pub(crate) fn baseline_load(&mut self, base: &Proc, h: &Proc, spec: Spec) -> Result<Load> {
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
    pub(crate) fn latency(&mut self, base: &Proc, h: &Proc, rate: f64) -> Result<(Agg, Agg)> {
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
    pub(crate) fn wait_delivered(dest: &Proc, want: u64, timeout: Duration) -> Result<Value> {
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
    pub(crate) fn fill(&mut self, h: &Proc, n: u64, max_secs: f64) -> Result<Load> {
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
    pub(crate) fn one_webhook(addr: SocketAddr, run: u64) -> Result<u16> {
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

    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.work.join(format!("data-{name}"))
    }

    pub(crate) fn cleanup(&self, dir: &Path) {
        if !self.args.keep {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Stops `p` with SIGTERM; a process that does not exit in time is killed and noted.
    pub(crate) fn stop(&mut self, p: &mut Proc, timeout: Duration) -> Option<Duration> {
        match p.stop(timeout) {
            Ok(d) => Some(d),
            Err(e) => {
                self.note(format!("{e:#} (killed)"));
                None
            }
        }
    }

    /// "previous hookfan (REVISION)", for rows and notes.
    pub(crate) fn old_name(&self) -> String {
        match self.args.old_label.as_str() {
            "" => "previous hookfan".into(),
            label => format!("previous hookfan ({label})"),
        }
    }

    pub(crate) fn elapsed(&self) -> String {
        format!("[{:>5.0} s]", self.started.elapsed().as_secs_f64())
    }
}

/// Processes that `compare_sides` freezes (SIGSTOP) while another one is measured; all of them
/// are continued when this is dropped, whatever happened meanwhile.
pub(crate) struct Freezer {
    pub(crate) pids: Vec<u32>,
}

impl Freezer {
    pub(crate) fn signal(pid: u32, sig: &str) -> Result<()> {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .context("kill")?;
        Ok(())
    }

    /// Freezes every process but `run`, then continues `run` (None: freezes them all).
    pub(crate) fn only(&self, run: Option<u32>) -> Result<()> {
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
pub(crate) struct FsyncStats {
    pub(crate) n: usize,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) over_10ms: usize,
}

pub(crate) struct FsyncWatch {
    pub(crate) stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) thread: std::thread::JoinHandle<Option<FsyncStats>>,
}

impl FsyncWatch {
    pub(crate) fn start(dir: &Path) -> FsyncWatch {
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

    pub(crate) fn stop(self) -> Option<FsyncStats> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

pub(crate) fn fmt_disk(d: Option<FsyncStats>) -> String {
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
pub(crate) struct RssSampler {
    pub(crate) stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub(crate) thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32) -> RssSampler {
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
    pub(crate) fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The three routes of the ingest scenarios: one event type, three kinds of filter (all,
/// exact list, globs), so every `message.new` is stored once with three queue entries.
pub(crate) fn three_routes(base_url: &str, extra: &str) -> Vec<String> {
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

pub(crate) fn verdict(ok: bool) -> String {
    if ok { "met" } else { "MISSED" }.into()
}
