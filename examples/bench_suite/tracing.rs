//! Scenario of tracing: durable ingest (the `ingest` scenario's routes, destination down)
//! with OpenTelemetry traces off, at a 1% sample and at 100%, exported to a local OTLP/HTTP
//! sink (`bench_receiver`, whose CPU counts with the traced sides), against bare axum.

use super::*;

pub(crate) fn tracing(s: &mut Suite, base: &Proc) -> Result<()> {
    println!(
        "{} tracing: ingest with traces off, at 1% and at 100%",
        s.elapsed()
    );
    let recv = s.receiver("receiver-tracing", &["/"])?;
    let collector = s.receiver("otlp-collector", &[])?;
    let routes = three_routes(&recv.url(""), "");
    let mut sides = Vec::new();
    for (label, ratio) in [("off", None), ("1%", Some("0.01")), ("100%", Some("1"))] {
        let name = format!("hookfan-tracing-{}", label.trim_end_matches('%'));
        let data = s.data_dir(&name);
        let extra: Vec<String> = ratio
            .map(|r| {
                format!(
                    "tracing: {{ endpoint: \"{}\", sample_ratio: {r} }}",
                    collector.url("")
                )
            })
            .into_iter()
            .collect();
        let h = s.hookfan_with(&name, &data, &routes, &extra)?;
        sides.push((label, ratio.is_some(), h, data));
    }
    let with_collector = [&collector];
    let measured: Vec<(&Proc, &[&Proc])> = sides
        .iter()
        .map(|(_, traced, h, _)| {
            let others: &[&Proc] = if *traced { &with_collector } else { &[] };
            (h, others)
        })
        .collect();
    let aggs = s.compare_sides(base, &measured)?;
    let b = &aggs[0];
    let off = aggs[1].rps();
    let sec = "1e tracing (ingest, 3 routes)";
    for ((label, traced, h, _), a) in sides.iter().zip(&aggs[1..]) {
        let r = s.row(
            sec,
            &format!("hookfan, traces {label}: requests/s"),
            fmt_rate(a.rps()),
        );
        r.ratio = format!("{:.2}", a.rps() / b.rps());
        r.reference = format!(
            "baseline {}; {:.0} us CPU per request{}",
            fmt_rate(b.rps()),
            cpu_us(a.server_cores, a.rps()),
            if *traced {
                " (the collector's included)"
            } else {
                ""
            }
        );
        if *traced {
            let body = metrics_text(h).unwrap_or_default();
            let dropped = sample(&body, "hookfan_trace_spans_dropped_total");
            let failed = sample(&body, "hookfan_trace_export_failed_spans_total");
            let r = s.row(
                sec,
                &format!("traces {label}: / traces off"),
                format!("{:.2}", a.rps() / off),
            );
            r.reference = format!(
                "spans dropped (queue full) {}, in failed exports {}",
                dropped.map_or("n/a".into(), |n| format!("{n:.0}")),
                failed.map_or("n/a".into(), |n| format!("{n:.0}"))
            );
        }
    }
    for (_, _, mut h, data) in sides {
        s.stop(&mut h, Duration::from_secs(20));
        s.cleanup(&data);
    }
    Ok(())
}
