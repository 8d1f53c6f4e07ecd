//! Scenarios of ingest: the disk probe, durable ingest against bare axum, the floor and the previous hookfan, and the unrouted and refused cases.

use super::*;

pub(crate) fn probe(s: &mut Suite) -> Result<f64> {
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
pub(crate) fn writer_busy_row(s: &mut Suite, sec: &str, label: &str, agg: &Agg) {
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

pub(crate) fn ingest(s: &mut Suite, base: &Proc, disk_rate: Option<f64>) -> Result<()> {
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
    // The floor at the rate of hookfan's half-rate run below: what this machine's disk,
    // cores and load generator allow a durable ingest's p99 at that load, in the same run.
    let floor_latency = match &floor {
        Some(p) => {
            let rate = hf.rps() / 2.0;
            println!("{} floor latency at {rate:.0}/s", s.elapsed());
            let spec = Spec {
                connections: s.args.connections,
                duration: s.args.duration * s.args.rounds as f64,
                warmup: 1.0,
                max_requests: 50_000_000,
                rate: Some(rate),
            };
            let mut agg = Agg::default();
            let l = s.measure(p, &[], spec, &mut agg)?;
            Some((agg, l.late, l.ok))
        }
        None => None,
    };
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
    if let Some((f, late, ok)) = &floor_latency {
        s.row(
            sec,
            "durable floor at the same rate: ack p50 / p99 / p99.9",
            format!("{} / {} / {}", fmt_us(f.p50), fmt_us(f.p99), fmt_us(f.p999)),
        )
        .reference =
            format!("the same load generator and offered rate; {late} of {ok} requests sent late");
    }
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
pub(crate) fn contender_rows(s: &mut Suite, sec: &str, name: &str, a: &Agg, b: &Agg) {
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
pub(crate) fn versus_row(s: &mut Suite, sec: &str, name: &str, hf: &Agg, a: &Agg) {
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

pub(crate) fn fsync_rows(s: &mut Suite, sec: &str, what: &str, a: &Agg, disk_rate: Option<f64>) {
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
pub(crate) fn unrouted(s: &mut Suite, base: &Proc) -> Result<()> {
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

pub(crate) fn refused(s: &mut Suite, base: &Proc) -> Result<()> {
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
