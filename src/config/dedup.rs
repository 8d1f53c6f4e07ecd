//! `dedup:`: where webhook ids are remembered. The spool (default) dedups one replica's
//! webhooks; Redis shares the ids between replicas (`crate::dedup`).

use std::time::Duration;

use super::{duration, Diagnostic, Positions, RawDedup, RedisDedup, Secret};

pub const DEFAULT_KEY_PREFIX: &str = "hookfan:";
/// Per call to Redis: far below Stream's 6 s, so a slow Redis costs little before the fallback.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// A claim outlives the 5 s an acknowledgement may take, so it is never taken over while its
/// replica is still storing; a dead replica's claim frees the id well within Stream's retries.
pub const DEFAULT_PENDING_TTL: Duration = Duration::from_secs(10);
const MIN_PENDING_TTL: Duration = Duration::from_secs(6);

pub(super) fn validate(
    raw: Option<RawDedup>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<RedisDedup> {
    let raw = raw?;
    match raw.backend.as_deref().unwrap_or("spool") {
        "spool" => {
            if raw.url.is_some() {
                errs.push(pos.diag(
                    "dedup.url",
                    "dedup: url is for backend: redis (the spool backend needs none)",
                ));
            }
            return None;
        }
        "redis" => {}
        other => {
            errs.push(pos.diag(
                "dedup.backend",
                format!("dedup: backend \"{other}\" is not one of spool, redis"),
            ));
            return None;
        }
    }
    let url = match raw.url {
        Some(url) if redis::Client::open(url.as_str()).is_ok() => Some(url),
        Some(_) => {
            // Never echo the URL: it may carry a password.
            errs.push(pos.diag(
                "dedup.url",
                "dedup: url is not a Redis URL (redis://[user:password@]host[:port][/db] or rediss:// for TLS)",
            ));
            None
        }
        None => {
            errs.push(pos.diag(
                "dedup",
                "dedup: backend redis needs url: (like redis://redis:6379/0)",
            ));
            None
        }
    };
    let timeout = duration(&raw.timeout, "dedup.timeout", DEFAULT_TIMEOUT, pos, errs);
    if timeout.is_zero() || timeout > Duration::from_secs(2) {
        errs.push(pos.diag(
            "dedup.timeout",
            "dedup: timeout must be greater than 0 and at most 2s (Stream waits 6 s for the whole webhook)",
        ));
    }
    let pending_ttl = duration(
        &raw.pending_ttl,
        "dedup.pending_ttl",
        DEFAULT_PENDING_TTL,
        pos,
        errs,
    );
    if pending_ttl < MIN_PENDING_TTL || pending_ttl > Duration::from_secs(60) {
        errs.push(pos.diag(
            "dedup.pending_ttl",
            "dedup: pending_ttl must be between 6s (longer than an acknowledgement may take) and 60s (Stream stops retrying after about 15 s)",
        ));
    }
    Some(RedisDedup {
        url: Secret::new(url?),
        key_prefix: raw
            .key_prefix
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string()),
        timeout,
        pending_ttl,
    })
}
