//! `passthrough:` blocks: Stream's synchronous hooks, each an exact path and its handler.

use std::collections::HashSet;
use std::time::Duration;

use super::{duration, Diagnostic, Passthrough, Positions, RawPassthrough};

pub const DEFAULT_CONCURRENCY: usize = 64;

/// The `passthrough:` blocks: one exact path each, an http(s) handler, a deadline.
pub(super) fn validate(
    raw: Vec<RawPassthrough>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Vec<Passthrough> {
    let mut out = Vec::new();
    let mut paths = HashSet::new();
    for (i, p) in raw.into_iter().enumerate() {
        let at = format!("passthrough[{i}]");
        let label = format!("passthrough \"{}\"", p.path);
        let mut ok = true;
        if !p.path.starts_with('/')
            || p.path
                .contains(|c: char| c.is_whitespace() || matches!(c, '?' | '#' | '*'))
        {
            errs.push(pos.invalid(
                &format!("{at}.path"),
                format!("{label}: path must be one exact request path starting with / (like /stream/before-message-send), without a query, # or *"),
            ));
            ok = false;
        } else if !paths.insert(p.path.clone()) {
            errs.push(pos.not_unique(
                &format!("{at}.path"),
                format!("{label}: the path is used by another passthrough block; each path has one handler"),
            ));
            ok = false;
        }
        let url = match reqwest::Url::parse(&p.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            Ok(_) => {
                errs.push(pos.invalid(
                    &format!("{at}.url"),
                    format!(
                        "{label}: url \"{}\" must be an http:// or https:// URL with a host",
                        p.url
                    ),
                ));
                None
            }
            Err(e) => {
                errs.push(pos.invalid(
                    &format!("{at}.url"),
                    format!("{label}: url \"{}\" is not a URL: {e}", p.url),
                ));
                None
            }
        };
        let timeout = p.timeout.as_ref().map(|_| {
            duration(
                &p.timeout,
                &format!("{at}.timeout"),
                Duration::ZERO,
                pos,
                errs,
            )
        });
        if timeout.is_some_and(|t| t.is_zero()) {
            errs.push(pos.invalid(
                &format!("{at}.timeout"),
                format!("{label}: timeout must be greater than 0"),
            ));
        }
        let concurrency = p.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=4096).contains(&concurrency) {
            errs.push(pos.invalid(
                &format!("{at}.concurrency"),
                format!("{label}: concurrency must be between 1 and 4096"),
            ));
        }
        if let (true, Some(url)) = (ok, url) {
            out.push(Passthrough {
                path: p.path,
                url,
                timeout,
                concurrency,
            });
        }
    }
    out
}
