//! Stage 2 of reading routes.yaml: every unknown, duplicate or missing key, with its
//! position, found on the YAML tree before serde sees it (serde would stop at the first).

use super::raw::*;
use super::{tree, Diagnostic};

pub(super) fn lint(root: &tree::Node) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if !root.is_map() {
        out.push(Diagnostic::new(
            root.line,
            root.column,
            "the top level must be a mapping with `apps:` and `routes:`",
        ));
        return out;
    }
    duplicate_keys(root, &mut out);
    unknown_keys(root, TOP_KEYS, "", &mut out);
    if let Some(tls) = root.get("tls") {
        unknown_keys(tls, TLS_KEYS, "tls: ", &mut out);
        missing_keys(tls, TLS_KEYS, "tls", &mut out);
    }
    for app in root.get("apps").map(|n| n.items()).unwrap_or_default() {
        unknown_keys(app, APP_KEYS, "app: ", &mut out);
        missing_keys(app, APP_KEYS, "app", &mut out);
    }
    for hook in root
        .get("passthrough")
        .map(|n| n.items())
        .unwrap_or_default()
    {
        unknown_keys(hook, PASSTHROUGH_KEYS, "passthrough: ", &mut out);
        missing_keys(hook, &["path", "url"], "passthrough", &mut out);
    }
    if let Some(dedup) = root.get("dedup") {
        unknown_keys(dedup, DEDUP_KEYS, "dedup: ", &mut out);
        if let Some(cluster) = dedup.get("cluster") {
            unknown_keys(cluster, DEDUP_CLUSTER_KEYS, "dedup: cluster: ", &mut out);
            missing_keys(cluster, &["nodes"], "dedup: cluster", &mut out);
        }
        if let Some(sentinel) = dedup.get("sentinel") {
            unknown_keys(sentinel, DEDUP_SENTINEL_KEYS, "dedup: sentinel: ", &mut out);
            missing_keys(sentinel, &["master", "nodes"], "dedup: sentinel", &mut out);
        }
        if let Some(tls) = dedup.get("tls") {
            unknown_keys(tls, DEDUP_TLS_KEYS, "dedup: tls: ", &mut out);
        }
    }
    for source in root.get("sources").map(|n| n.items()).unwrap_or_default() {
        unknown_keys(source, SOURCE_KEYS, "source: ", &mut out);
        missing_keys(source, SOURCE_KEYS, "source", &mut out);
        if let Some(sqs) = source.get("sqs") {
            unknown_keys(sqs, SQS_SOURCE_KEYS, "source: sqs: ", &mut out);
            missing_keys(sqs, &["queue_url"], "source: sqs", &mut out);
        }
    }
    for (i, route) in root
        .get("routes")
        .map(|n| n.items())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
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
                        value.line,
                        value.column,
                        format!("{label}: {k}: needs its settings as a mapping (see the README's Destinations)"),
                    ));
                }
                let (keys, _) = match k {
                    "http" => (HTTP_KEYS, ()),
                    "file" => (FILE_KEYS, ()),
                    "sqs" => (SQS_KEYS, ()),
                    _ => (SNS_KEYS, ()),
                };
                let prefix = format!("{label}: {k}: ");
                unknown_keys(value, keys, &prefix, &mut out);
                if let Some(retry) = value.get("retry") {
                    unknown_keys(retry, RETRY_KEYS, &format!("{prefix}retry: "), &mut out);
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
                out.push(Diagnostic::new(key.line, key.column, msg));
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
                    route.line,
                    route.column,
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
                route.line,
                route.column,
                format!(
                    "{label}: no destination (add exactly one of {})",
                    DESTINATIONS.join(", ")
                ),
            )),
            _ => out.push(Diagnostic::new(
                route.line,
                route.column,
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
fn duplicate_keys(node: &tree::Node, out: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (key, value) in node.entries() {
        if let Some(k) = key.as_str() {
            match seen.iter().find(|(name, _)| *name == k) {
                Some((_, first_line)) => out.push(Diagnostic::new(
                    key.line,
                    key.column,
                    format!("key \"{k}\" is written twice in this mapping (first on line {first_line}); keep one"),
                )),
                None => seen.push((k, key.line)),
            }
        }
        duplicate_keys(value, out);
    }
    for item in node.items() {
        duplicate_keys(item, out);
    }
}

fn unknown_keys(node: &tree::Node, allowed: &[&str], prefix: &str, out: &mut Vec<Diagnostic>) {
    for (key, _) in node.entries() {
        let Some(k) = key.as_str() else { continue };
        if !allowed.contains(&k) {
            out.push(Diagnostic::new(
                key.line,
                key.column,
                format!(
                    "{prefix}unknown key \"{k}\" (expected one of {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

fn missing_keys(node: &tree::Node, required: &[&str], what: &str, out: &mut Vec<Diagnostic>) {
    if !node.is_map() {
        return;
    }
    for key in required {
        if node.get(key).is_none() {
            out.push(Diagnostic::new(
                node.line,
                node.column,
                format!("{what}: missing \"{key}\""),
            ));
        }
    }
}
