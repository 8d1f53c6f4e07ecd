//! Scenarios of delivery: ingest while delivering to 3 routes, and the HTTP and SQS drains.

use super::*;

pub(crate) fn deliver(s: &mut Suite, base: &Proc, disk_rate: Option<f64>) -> Result<()> {
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
pub(crate) fn drain(
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

pub(crate) fn drain_http(s: &mut Suite) -> Result<()> {
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

pub(crate) fn drain_sqs(s: &mut Suite) -> Result<()> {
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
