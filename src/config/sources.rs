//! `sources:`: queues Stream delivers to natively, which hookfan consumes besides (or instead
//! of) its webhook listener.

use std::collections::HashSet;
use std::time::Duration;

use super::{check_name, duration, Diagnostic, Positions, RawSource, Source, SqsSource};

/// Receive loops per source.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// Long polling: SQS's longest wait, so an idle queue costs three requests a minute.
pub const DEFAULT_WAIT_TIME: Duration = Duration::from_secs(20);
/// SQS's limits on a receive's wait and a message's visibility timeout.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
const MAX_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(12 * 3600);

pub(super) fn validate(
    raw: Vec<RawSource>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Vec<Source> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("sources[{i}]");
        let label = format!("source \"{}\"", r.name);
        let before = errs.len();
        check_name(&r.name, "source", &at, &mut names, pos, errs);
        let q = r.sqs;
        let sqs_at = format!("{at}.sqs");
        if !reqwest::Url::parse(&q.queue_url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        {
            errs.push(pos.invalid(
                &format!("{sqs_at}.queue_url"),
                format!("{label}: sqs.queue_url \"{}\" is not a queue URL (like https://sqs.us-east-1.amazonaws.com/123456789012/stream-native)", q.queue_url),
            ));
        }
        if let Some(endpoint) = &q.endpoint_url {
            if !reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                errs.push(pos.invalid(
                    &format!("{sqs_at}.endpoint_url"),
                    format!("{label}: sqs.endpoint_url \"{endpoint}\" is not an http(s) URL"),
                ));
            }
        }
        let concurrency = q.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            errs.push(pos.invalid(
                &format!("{sqs_at}.concurrency"),
                format!("{label}: sqs.concurrency (receive loops) must be between 1 and 64"),
            ));
        }
        let wait_time = duration(
            &q.wait_time,
            &format!("{sqs_at}.wait_time"),
            DEFAULT_WAIT_TIME,
            pos,
            errs,
        );
        if wait_time < Duration::from_secs(1)
            || wait_time > MAX_WAIT_TIME
            || wait_time.subsec_nanos() != 0
        {
            errs.push(pos.invalid(
                &format!("{sqs_at}.wait_time"),
                format!("{label}: sqs.wait_time must be whole seconds from 1s to 20s (SQS long polling; 0s would poll an idle queue without pause)"),
            ));
        }
        let visibility_timeout = q.visibility_timeout.as_ref().map(|_| {
            let t = duration(
                &q.visibility_timeout,
                &format!("{sqs_at}.visibility_timeout"),
                Duration::ZERO,
                pos,
                errs,
            );
            if t.is_zero() || t > MAX_VISIBILITY_TIMEOUT || t.subsec_nanos() != 0 {
                errs.push(pos.invalid(
                    &format!("{sqs_at}.visibility_timeout"),
                    format!("{label}: sqs.visibility_timeout must be whole seconds from 1s to 12h"),
                ));
            }
            t
        });
        if errs.len() == before {
            out.push(Source {
                name: r.name,
                sqs: SqsSource {
                    queue_url: q.queue_url,
                    region: q.region,
                    endpoint_url: q.endpoint_url,
                    role_arn: q.role_arn,
                    concurrency,
                    wait_time,
                    visibility_timeout,
                },
            });
        }
    }
    out
}
