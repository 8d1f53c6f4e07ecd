//! What ingest counts, as handles registered once when the listener starts: answering a
//! webhook updates a counter, it never builds a metric key (a key with a label is a
//! `Vec`, a hash and a map lookup in the recorder, every time).

use metrics::{Counter, Gauge, Histogram};

/// How a webhook was answered: the `outcome` label of `hookfan_webhooks_received_total`
/// (docs/metrics.md says what each means).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    Unauthorized,
    BadRequest,
    TooLarge,
    Unavailable,
    MethodNotAllowed,
    IpNotAllowed,
    TooOld,
    Timeout,
    Overloaded,
    UnknownApiKey,
    SyncHook,
    InProgress,
    PushOnPassthrough,
}

impl Outcome {
    /// Every outcome, each at its own discriminant.
    pub const ALL: [Outcome; 15] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Unauthorized,
        Outcome::BadRequest,
        Outcome::TooLarge,
        Outcome::Unavailable,
        Outcome::MethodNotAllowed,
        Outcome::IpNotAllowed,
        Outcome::TooOld,
        Outcome::Timeout,
        Outcome::Overloaded,
        Outcome::UnknownApiKey,
        Outcome::SyncHook,
        Outcome::InProgress,
        Outcome::PushOnPassthrough,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Unauthorized => "unauthorized",
            Outcome::BadRequest => "bad_request",
            Outcome::TooLarge => "too_large",
            Outcome::Unavailable => "unavailable",
            Outcome::MethodNotAllowed => "method_not_allowed",
            Outcome::IpNotAllowed => "ip_not_allowed",
            Outcome::TooOld => "too_old",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::UnknownApiKey => "unknown_api_key",
            Outcome::SyncHook => "sync_hook",
            Outcome::InProgress => "in_progress",
            Outcome::PushOnPassthrough => "push_on_passthrough",
        }
    }
}

/// Ingest's metric handles, one set per listener.
pub struct IngestMetrics {
    /// `hookfan_webhooks_received_total`, by [`Outcome`] (indexed by its discriminant).
    received: [Counter; Outcome::ALL.len()],
    /// `hookfan_ingest_ack_seconds`.
    pub ack_seconds: Histogram,
    /// `hookfan_ingest_buffered_bytes`.
    pub buffered_bytes: Gauge,
}

impl IngestMetrics {
    /// Registers every handle with the installed recorder (each outcome's series shows from
    /// the start, at 0).
    pub fn register() -> Self {
        IngestMetrics {
            received: Outcome::ALL.map(|outcome| {
                metrics::counter!("hookfan_webhooks_received_total", "outcome" => outcome.label())
            }),
            ack_seconds: metrics::histogram!("hookfan_ingest_ack_seconds"),
            buffered_bytes: metrics::gauge!("hookfan_ingest_buffered_bytes"),
        }
    }

    /// Counts one webhook answered with `outcome`.
    pub fn count(&self, outcome: Outcome) {
        self.received[outcome as usize].increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_counter_and_label() {
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(
                outcome as usize, i,
                "{outcome:?} is not at its discriminant"
            );
        }
        let labels: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(
            labels.len(),
            Outcome::ALL.len(),
            "two outcomes share a label"
        );
    }

    #[test]
    fn docs_metrics_md_explains_every_outcome() {
        let docs = include_str!("../../docs/metrics.md");
        let line = docs
            .lines()
            .find(|l| l.starts_with("| `hookfan_webhooks_received_total`"))
            .expect("docs/metrics.md lists hookfan_webhooks_received_total");
        for outcome in Outcome::ALL {
            let label = format!("`{}`", outcome.label());
            assert!(
                line.contains(&label),
                "docs/metrics.md does not explain {label}"
            );
        }
    }
}
