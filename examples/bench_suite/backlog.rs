//! The backlog scenario: a million events pending, memory, restart, shutdown.

use super::*;

pub(crate) fn backlog(s: &mut Suite, base: &Proc) -> Result<()> {
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
