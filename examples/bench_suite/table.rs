//! The results table: its rows and their verdicts.

use super::*;

pub(crate) struct Row {
    pub(crate) section: String,
    pub(crate) metric: String,
    pub(crate) value: String,
    pub(crate) reference: String,
    pub(crate) ratio: String,
    pub(crate) target: String,
    pub(crate) verdict: String,
}

pub(crate) fn fmt_rate(x: f64) -> String {
    if x >= 100.0 {
        format!("{:.0}/s", x)
    } else {
        format!("{:.1}/s", x)
    }
}

pub(crate) fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// CPU time per event, in microseconds: `cpu` over `events` measured over the same time, as
/// cores and events per second, or as CPU seconds and an event count.
pub(crate) fn cpu_us(cpu: f64, events: f64) -> f64 {
    cpu / events.max(1e-9) * 1e6
}

pub(crate) fn fmt_mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

pub(crate) fn fmt_dur(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}
