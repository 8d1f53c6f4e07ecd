//! Scenario of routing by content: durable ingest to 8 routes (destination down) with a
//! `match:` of 3 entries each, against the same 8 routes without, against bare axum. Every
//! entry holds for the load's events, so both sides store the same 8 queue entries per
//! webhook: the difference is the cost of reading the body and testing the conditions.

use super::*;

/// The 8 routes; `with_match` adds the 3 conditions to each.
fn eight_routes(base_url: &str, with_match: bool) -> Vec<String> {
    (0..8)
        .map(|i| {
            let conditions = if with_match {
                format!(
                    "\n  match: {{ channel_type: [messaging, team-{i}], message.user.id: \"user-*\", \
                     channel_member_count: {{ gte: 1, lte: 1000 }} }}"
                )
            } else {
                String::new()
            };
            format!(
                "- name: route-{i}\n  event_types: []{conditions}\n  http: {{ url: {base_url}/r{i} }}"
            )
        })
        .collect()
}

pub(crate) fn content(s: &mut Suite, base: &Proc) -> Result<()> {
    println!(
        "{} content: ingest to 8 routes, with and without match (3 entries each)",
        s.elapsed()
    );
    let recv = s.receiver("receiver-content", &["/"])?;
    let mut sides = Vec::new();
    for (label, with_match) in [("without match", false), ("with match", true)] {
        let name = format!(
            "hookfan-content-{}",
            if with_match { "match" } else { "plain" }
        );
        let data = s.data_dir(&name);
        let routes = eight_routes(&recv.url(""), with_match);
        let h = s.hookfan_with(&name, &data, &routes, &[])?;
        sides.push((label, h, data));
    }
    let measured: Vec<(&Proc, &[&Proc])> = sides.iter().map(|(_, h, _)| (h, &[][..])).collect();
    let aggs = s.compare_sides(base, &measured)?;
    let b = &aggs[0];
    let sec = "1f routing by content (ingest, 8 routes)";
    for ((label, _, _), a) in sides.iter().zip(&aggs[1..]) {
        let r = s.row(
            sec,
            &format!("hookfan, {label}: requests/s"),
            fmt_rate(a.rps()),
        );
        r.ratio = format!("{:.2}", a.rps() / b.rps());
        r.reference = format!(
            "baseline {}; {:.0} us CPU per request",
            fmt_rate(b.rps()),
            cpu_us(a.server_cores, a.rps())
        );
    }
    let ratio = aggs[2].rps() / aggs[1].rps();
    let r = s.row(sec, "with match / without", format!("{ratio:.2}"));
    r.target = ">= 0.90".into();
    r.verdict = verdict(ratio >= 0.9);
    r.reference = format!(
        "CPU per request {:.0} us with, {:.0} us without",
        cpu_us(aggs[2].server_cores, aggs[2].rps()),
        cpu_us(aggs[1].server_cores, aggs[1].rps())
    );
    for (_, mut h, data) in sides {
        s.stop(&mut h, Duration::from_secs(20));
        s.cleanup(&data);
    }
    Ok(())
}
