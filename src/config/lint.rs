//! Stage 2 of reading routes.yaml: every unknown, duplicate or missing key, with its
//! position, found on the YAML tree before serde sees it (serde would stop at the first).

use super::raw::*;
use super::{tree, Diagnostic, Problem};

pub(super) fn lint(root: &tree::Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if !root.is_map() {
        out.push(Diagnostic::new(
            Problem::Syntax,
            (root.line, root.column),
            None,
            "the top level must be a mapping with `apps:` and `routes:`",
        ));
        return out;
    }
    duplicate_keys(root, "", &mut out);
    unknown_keys(root, "", TOP_KEYS, "", &mut out);
    if let Some(tls) = root.get("tls") {
        unknown_keys(tls, "tls", TLS_KEYS, "tls: ", &mut out);
        missing_keys(tls, "tls", TLS_KEYS, "tls", &mut out);
    }
    let items = |key: &str| root.get(key).map(|n| n.items()).unwrap_or_default();
    for (i, app) in items("apps").iter().enumerate() {
        let at = format!("apps[{i}]");
        unknown_keys(app, &at, APP_KEYS, "app: ", &mut out);
        missing_keys(app, &at, APP_KEYS, "app", &mut out);
    }
    for (i, hook) in items("passthrough").iter().enumerate() {
        let at = format!("passthrough[{i}]");
        unknown_keys(hook, &at, PASSTHROUGH_KEYS, "passthrough: ", &mut out);
        missing_keys(hook, &at, &["path", "url"], "passthrough", &mut out);
    }
    if let Some(dedup) = root.get("dedup") {
        unknown_keys(dedup, "dedup", DEDUP_KEYS, "dedup: ", &mut out);
        if let Some(cluster) = dedup.get("cluster") {
            let at = "dedup.cluster";
            unknown_keys(
                cluster,
                at,
                DEDUP_CLUSTER_KEYS,
                "dedup: cluster: ",
                &mut out,
            );
            missing_keys(cluster, at, &["nodes"], "dedup: cluster", &mut out);
        }
        if let Some(sentinel) = dedup.get("sentinel") {
            let (at, prefix) = ("dedup.sentinel", "dedup: sentinel: ");
            unknown_keys(sentinel, at, DEDUP_SENTINEL_KEYS, prefix, &mut out);
            missing_keys(
                sentinel,
                at,
                &["master", "nodes"],
                "dedup: sentinel",
                &mut out,
            );
        }
        if let Some(tls) = dedup.get("tls") {
            unknown_keys(tls, "dedup.tls", DEDUP_TLS_KEYS, "dedup: tls: ", &mut out);
        }
    }
    if let Some(tracing) = root.get("tracing") {
        unknown_keys(tracing, "tracing", TRACING_KEYS, "tracing: ", &mut out);
    }
    for (i, source) in items("sources").iter().enumerate() {
        let at = format!("sources[{i}]");
        unknown_keys(source, &at, SOURCE_KEYS, "source: ", &mut out);
        missing_keys(source, &at, SOURCE_KEYS, "source", &mut out);
        if let Some(sqs) = source.get("sqs") {
            let at = format!("{at}.sqs");
            unknown_keys(sqs, &at, SQS_SOURCE_KEYS, "source: sqs: ", &mut out);
            missing_keys(sqs, &at, &["queue_url"], "source: sqs", &mut out);
        }
    }
    for (i, route) in items("routes").iter().enumerate() {
        let at = format!("routes[{i}]");
        if !route.is_map() {
            continue; // serde reports the wrong type
        }
        let label = match route.get("name").and_then(|n| n.as_str()) {
            Some(name) => format!("route \"{name}\""),
            None => format!("route #{}", i + 1),
        };
        let mut destinations = Vec::new();
        for (key, value) in route.entries() {
            let Some(k) = key.as_str() else { continue };
            if DESTINATIONS.contains(&k) {
                destinations.push(k);
                if !value.is_map() {
                    // `http:` with nothing under it would otherwise drop the route silently.
                    out.push(Diagnostic::new(
                        Problem::Syntax,
                        (value.line, value.column),
                        Some(format!("{at}.{k}")),
                        format!("{label}: {k}: needs its settings as a mapping (see the README's Destinations)"),
                    ));
                }
                let (keys, _) = match k {
                    "http" => (HTTP_KEYS, ()),
                    "file" => (FILE_KEYS, ()),
                    "sqs" => (SQS_KEYS, ()),
                    _ => (SNS_KEYS, ()),
                };
                let (at, prefix) = (format!("{at}.{k}"), format!("{label}: {k}: "));
                unknown_keys(value, &at, keys, &prefix, &mut out);
                if let Some(retry) = value.get("retry") {
                    let (at, prefix) = (format!("{at}.retry"), format!("{prefix}retry: "));
                    unknown_keys(retry, &at, RETRY_KEYS, &prefix, &mut out);
                }
            } else if !ROUTE_KEYS.contains(&k) {
                let msg = if value.is_map() {
                    format!(
                        "{label}: unknown destination key \"{k}\" (expected one of {})",
                        DESTINATIONS.join(", ")
                    )
                } else {
                    format!(
                        "{label}: unknown key \"{k}\" (expected one of {}, {})",
                        ROUTE_KEYS.join(", "),
                        DESTINATIONS.join(", ")
                    )
                };
                out.push(Diagnostic::new(
                    Problem::UnknownKey,
                    (key.line, key.column),
                    Some(format!("{at}.{k}")),
                    msg,
                ));
            }
        }
        for key in ["name", "event_types"] {
            if route.get(key).is_none() {
                let hint = if key == "event_types" {
                    " (use [] for every event, including types Stream adds later)"
                } else {
                    ""
                };
                out.push(Diagnostic::new(
                    Problem::MissingKey,
                    (route.line, route.column),
                    Some(at.clone()),
                    format!("{label}: missing \"{key}\"{hint}"),
                ));
            }
        }
        match destinations.len() {
            1 => {}
            0 if route.entries().any(|(k, v)| {
                v.is_map() && !k.as_str().is_some_and(|k| ROUTE_KEYS.contains(&k))
            }) => {} // already reported as an unknown destination key
            0 => out.push(Diagnostic::new(
                Problem::MissingKey,
                (route.line, route.column),
                Some(at),
                format!(
                    "{label}: no destination (add exactly one of {})",
                    DESTINATIONS.join(", ")
                ),
            )),
            _ => out.push(Diagnostic::new(
                Problem::Conflict,
                (route.line, route.column),
                Some(at),
                format!(
                    "{label}: has {} destinations ({}); a route has exactly one: split it into one route per destination",
                    destinations.len(),
                    destinations.join(", ")
                ),
            )),
        }
    }
    out
}

/// A key written twice in one mapping, anywhere in the file (YAML would keep one silently
/// or refuse the file at a confusing place).
fn duplicate_keys(node: &tree::Node, at: &str, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (key, value) in node.entries() {
        let Some(k) = key.as_str() else {
            duplicate_keys(value, at, out);
            continue;
        };
        let child = child(at, k);
        match seen.iter().find(|(name, _)| *name == k) {
            Some((_, first_line)) => out.push(Diagnostic::new(
                Problem::DuplicateKey,
                (key.line, key.column),
                Some(child.clone()),
                format!("key \"{k}\" is written twice in this mapping (first on line {first_line}); keep one"),
            )),
            None => seen.push((k, key.line)),
        }
        duplicate_keys(value, &child, out);
    }
    for (i, item) in node.items().iter().enumerate() {
        duplicate_keys(item, &format!("{at}[{i}]"), out);
    }
}

/// The path of key `k` under `at` (`at` empty: the top level).
fn child(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn unknown_keys(
    node: &tree::Node,
    at: &str,
    allowed: &[&str],
    prefix: &str,
    out: &mut Vec<Diagnostic>,
) {
    for (key, _) in node.entries() {
        let Some(k) = key.as_str() else { continue };
        if !allowed.contains(&k) {
            out.push(Diagnostic::new(
                Problem::UnknownKey,
                (key.line, key.column),
                Some(child(at, k)),
                format!(
                    "{prefix}unknown key \"{k}\" (expected one of {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

/// Each of `required` that `node` lacks, reported where the mapping stands, with the
/// mapping's path.
fn missing_keys(
    node: &tree::Node,
    at: &str,
    required: &[&str],
    what: &str,
    out: &mut Vec<Diagnostic>,
) {
    if !node.is_map() {
        return;
    }
    for key in required {
        if node.get(key).is_none() {
            out.push(Diagnostic::new(
                Problem::MissingKey,
                (node.line, node.column),
                Some(at.to_string()),
                format!("{what}: missing \"{key}\""),
            ));
        }
    }
}
