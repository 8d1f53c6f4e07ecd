//! `dedup:`: where webhook ids are remembered. The spool (default) dedups one replica's
//! webhooks; Redis shares the ids between replicas (`crate::dedup`).

use std::time::Duration;

use std::path::PathBuf;

use redis::IntoConnectionInfo;

use super::{
    duration, Diagnostic, Positions, RawDedup, RawRedisSentinel, RawRedisTls, RedisDedup, RedisTls,
    RedisTopology, Secret, SentinelDedup,
};

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
            for (key, given) in [
                ("url", raw.url.is_some()),
                ("cluster", raw.cluster.is_some()),
                ("sentinel", raw.sentinel.is_some()),
                ("tls", raw.tls.is_some()),
            ] {
                if given {
                    errs.push(pos.conflict(
                        &format!("dedup.{key}"),
                        format!(
                            "dedup: {key} is for backend: redis (the spool backend needs none)"
                        ),
                    ));
                }
            }
            return None;
        }
        "redis" => {}
        other => {
            errs.push(pos.invalid(
                "dedup.backend",
                format!("dedup: backend \"{other}\" is not one of spool, redis"),
            ));
            return None;
        }
    }
    let kinds = [
        raw.url.is_some(),
        raw.cluster.is_some(),
        raw.sentinel.is_some(),
    ];
    let topology = match kinds.iter().filter(|k| **k).count() {
        0 => {
            errs.push(pos.missing(
                "dedup",
                "dedup: backend redis needs url: (like redis://redis:6379/0), cluster: { nodes: [...] } or sentinel: { master: ..., nodes: [...] }",
            ));
            None
        }
        1 => topology(raw.url, raw.cluster, raw.sentinel, pos, errs),
        _ => {
            errs.push(pos.conflict(
                "dedup",
                "dedup: give one of url, cluster and sentinel, not several",
            ));
            None
        }
    };
    let tls = raw.tls.and_then(|t| tls(t, pos, errs));
    if let (Some(topology), Some(_)) = (&topology, &tls) {
        if !topology_urls(topology).all(|url| url.expose_str().starts_with("rediss://")) {
            errs.push(pos.conflict(
                "dedup.tls",
                "dedup: tls is for rediss:// URLs; write rediss:// (or remove tls: for plain TCP)",
            ));
        }
    }
    let timeout = duration(&raw.timeout, "dedup.timeout", DEFAULT_TIMEOUT, pos, errs);
    if timeout.is_zero() || timeout > Duration::from_secs(2) {
        errs.push(pos.invalid(
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
        errs.push(pos.invalid(
            "dedup.pending_ttl",
            "dedup: pending_ttl must be between 6s (longer than an acknowledgement may take) and 60s (Stream stops retrying after about 15 s)",
        ));
    }
    Some(RedisDedup {
        topology: topology?,
        tls,
        key_prefix: raw
            .key_prefix
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string()),
        timeout,
        pending_ttl,
    })
}

fn topology_urls(topology: &RedisTopology) -> impl Iterator<Item = &Secret> {
    match topology {
        RedisTopology::Single(url) => std::slice::from_ref(url).iter(),
        RedisTopology::Cluster(nodes) => nodes.iter(),
        RedisTopology::Sentinel(s) => s.nodes.iter(),
    }
}

fn topology(
    url: Option<String>,
    cluster: Option<super::RawRedisCluster>,
    sentinel: Option<RawRedisSentinel>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<RedisTopology> {
    if let Some(url) = url {
        return redis_url(url, "dedup.url", pos, errs).map(RedisTopology::Single);
    }
    if let Some(cluster) = cluster {
        let nodes = nodes(cluster.nodes, "dedup.cluster.nodes", pos, errs)?;
        // The cluster client takes the first node's user, password, database and scheme for
        // every node, and refuses seeds that disagree: say so before it does at startup.
        let urls: Vec<&str> = nodes.iter().map(Secret::expose_str).collect();
        if redis::cluster::ClusterClient::new(urls).is_err() {
            errs.push(pos.conflict(
                "dedup.cluster.nodes",
                "dedup: cluster: the nodes must share one user, password, database and scheme (redis:// or rediss://)",
            ));
            return None;
        }
        return Some(RedisTopology::Cluster(nodes));
    }
    let s = sentinel?;
    if s.master.trim().is_empty() {
        errs.push(pos.invalid(
            "dedup.sentinel.master",
            "dedup: sentinel: master is empty: give the name the sentinels monitor (sentinel monitor <name> ...)",
        ));
    }
    let db = s.db.unwrap_or(0);
    if db < 0 {
        errs.push(pos.invalid("dedup.sentinel.db", "dedup: sentinel: db must be 0 or more"));
    }
    let nodes = nodes(s.nodes, "dedup.sentinel.nodes", pos, errs)?;
    // One connection setting for every sentinel (the client's): say so rather than use the
    // first one's silently.
    let infos: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.expose_str().into_connection_info().ok())
        .collect();
    let first = &infos[0];
    if infos.iter().any(|i| {
        i.redis_settings().username() != first.redis_settings().username()
            || i.redis_settings().password() != first.redis_settings().password()
            || is_tls(i) != is_tls(first)
    }) {
        errs.push(pos.conflict(
            "dedup.sentinel.nodes",
            "dedup: sentinel: the nodes must share one user, password and scheme (redis:// or rediss://)",
        ));
        return None;
    }
    if s.master.trim().is_empty() || db < 0 {
        return None;
    }
    Some(RedisTopology::Sentinel(SentinelDedup {
        master: s.master,
        nodes,
        username: s.username.filter(|u| !u.is_empty()),
        password: s.password.filter(|p| !p.is_empty()).map(Secret::new),
        db,
    }))
}

/// A list of Redis URLs, at least one; every bad one reported at its own line.
fn nodes(
    list: Vec<String>,
    key: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<Vec<Secret>> {
    if list.is_empty() {
        errs.push(pos.invalid(
            key,
            format!(
                "dedup: {} is empty: give at least one node (like redis://10.0.0.1:6379)",
                key.trim_start_matches("dedup.")
            ),
        ));
        return None;
    }
    let before = errs.len();
    let nodes: Vec<Secret> = list
        .into_iter()
        .enumerate()
        .filter_map(|(i, url)| redis_url(url, &format!("{key}[{i}]"), pos, errs))
        .collect();
    (errs.len() == before).then_some(nodes)
}

fn redis_url(
    url: String,
    key: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<Secret> {
    // A cluster or sentinel node is reached over TCP; one server may also be a unix socket.
    let scheme_ok =
        key == "dedup.url" || url.starts_with("redis://") || url.starts_with("rediss://");
    if scheme_ok && redis::Client::open(url.as_str()).is_ok() {
        return Some(Secret::new(url));
    }
    // Never echo the URL: it may carry a password.
    errs.push(pos.invalid(
        key,
        format!(
            "dedup: {} is not a Redis URL (redis://[user:password@]host[:port][/db] or rediss:// for TLS)",
            key.trim_start_matches("dedup.")
        ),
    ));
    None
}

fn tls(raw: RawRedisTls, pos: &Positions, errs: &mut Vec<Diagnostic>) -> Option<RedisTls> {
    let before = errs.len();
    let mut path = |key: &str, value: Option<String>| {
        let value = value?;
        if value.trim().is_empty() {
            errs.push(pos.invalid(
                &format!("dedup.tls.{key}"),
                format!("dedup: tls.{key} is empty: give the path of a PEM file, or remove it"),
            ));
            return None;
        }
        Some(PathBuf::from(value))
    };
    let ca_file = path("ca_file", raw.ca_file);
    let cert_file = path("cert_file", raw.cert_file);
    let key_file = path("key_file", raw.key_file);
    let client = match (cert_file, key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            errs.push(pos.conflict(
                "dedup.tls",
                "dedup: tls: cert_file and key_file go together (a client certificate and its key, for mutual TLS)",
            ));
            None
        }
    };
    if ca_file.is_none() && client.is_none() && errs.len() == before {
        errs.push(pos.missing(
            "dedup.tls",
            "dedup: tls names no file: give ca_file (a private CA) and/or cert_file with key_file, or remove tls: to trust the system's roots",
        ));
    }
    (errs.len() == before).then_some(RedisTls { ca_file, client })
}

fn is_tls(info: &redis::ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}
