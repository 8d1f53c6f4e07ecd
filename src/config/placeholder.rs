//! Validating routes.yaml without the secrets: `${VAR}` references stand for placeholder
//! values that pass validation, chosen by the key each reference is the value of.
//!
//! Two callers: `hookfan check --no-env` (every reference is a placeholder, so CI can lint a
//! config without its environment) and the operator commands (`status`, `dead-letters`,
//! `drop-pending`), which run in a shell without the daemon's secrets: there only *unset*
//! references become placeholders, and the caller refuses a config whose keys it needs
//! (`admin_listen`, `data_dir`, `admin_token`) came from one.
//!
//! How: the text is substituted once with a marker per reference, parsed into the position
//! tree to learn which key each marker stands under, then validated through the usual
//! [`super::from_str`] with each reference replaced by its value. Pure: the environment is a
//! lookup function.

use std::cell::Cell;

use super::tree::{self, Node, NodeKind};
use super::{env, Config, ConfigError};

/// Which `${VAR}` references become placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// Every reference, set or not, with or without a default (`check --no-env`).
    All,
    /// Only references whose variable is unset and have no default; the others resolve as
    /// the daemon would resolve them.
    ForUnset,
}

/// A key whose value came (wholly or in part) from a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeheld {
    /// The dotted path of the key, such as `apps[0].api_secret`.
    pub path: String,
    /// The variable the placeholder stands for.
    pub var: String,
}

/// Validates `text` like [`super::from_str`], with `${VAR}` references resolved as `which`
/// says; also returns the keys whose values came from placeholders, in file order.
pub fn from_str(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    which: Placeholders,
) -> Result<(Config, Vec<Placeheld>), ConfigError> {
    // Pass 1: a marker per reference, to learn the key each one stands under.
    let count = Cell::new(0usize);
    let (marked, _, _) = env::substitute(text, |_| {
        let n = count.replace(count.get() + 1);
        Some(marker(n))
    });
    let mut under: Vec<Option<(String, bool)>> = vec![None; count.get()];
    if let Ok(root) = tree::parse(&marked) {
        walk(&root, "", &mut under);
    }

    // Pass 2: the same references in the same order, now with their values.
    let mut placeheld = Vec::new();
    let mut values = Vec::with_capacity(under.len());
    // The substitution asks only about valid references, in file order: record their names.
    let order = std::cell::RefCell::new(Vec::new());
    env::substitute(text, |name| {
        order.borrow_mut().push(name.to_string());
        None
    });
    let order = order.into_inner();
    for (n, name) in order.iter().enumerate() {
        let set = lookup(name);
        let placeholder = match which {
            Placeholders::All => true,
            Placeholders::ForUnset => set.is_none() && !has_default(text, n),
        };
        if !placeholder {
            values.push(set);
            continue;
        }
        let (path, whole) = under.get(n).cloned().flatten().unwrap_or_default();
        values.push(Some(if whole {
            for_path(&path).to_string()
        } else {
            // Part of a longer value (`http://${HOST}:8080/`): a value that fits hosts,
            // ports, paths and secrets alike.
            "1".to_string()
        }));
        placeheld.push(Placeheld {
            path,
            var: name.clone(),
        });
    }
    let next = Cell::new(0usize);
    let config = super::from_str(file, text, |_| {
        let n = next.replace(next.get() + 1);
        values.get(n).cloned().flatten()
    })?;
    Ok((config, placeheld))
}

fn marker(n: usize) -> String {
    format!("hookfanref{n}x")
}

/// Whether the `n`-th reference of `text` has a `:-default`: leaving only it unresolved
/// reports an unset variable when it has none.
fn has_default(text: &str, n: usize) -> bool {
    let count = Cell::new(0usize);
    let (_, errors, _) = env::substitute(text, |_| {
        let i = count.replace(count.get() + 1);
        (i != n).then(|| marker(i))
    });
    errors.iter().all(|d| !d.message.contains("is not set"))
}

/// Records, for every marker in a scalar, the dotted path of its key and whether the marker
/// is the whole value.
fn walk(node: &Node, path: &str, under: &mut [Option<(String, bool)>]) {
    match &node.kind {
        NodeKind::Scalar(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find("hookfanref") {
                let digits: String = rest[at + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let after = &rest[at + 10 + digits.len()..];
                if let (Ok(n), Some(tail)) = (digits.parse::<usize>(), after.strip_prefix('x')) {
                    if let Some(slot) = under.get_mut(n) {
                        *slot = Some((path.to_string(), s == &marker(n)));
                    }
                    rest = tail;
                } else {
                    rest = after;
                }
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries {
                let Some(name) = key.as_str() else { continue };
                let child = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                };
                walk(value, &child, under);
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), under);
            }
        }
        NodeKind::Alias => {}
    }
}

/// The key a path ends in: `routes[0].http.url` → `url`, `allowed_ips[2]` → `allowed_ips`.
fn key_of(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

/// A value that passes validation at `path`: by its key, except where one key name means
/// different things (`url` is HTTP on a route, Redis under `dedup`).
fn for_path(path: &str) -> &'static str {
    if path == "dedup.url"
        || path.starts_with("dedup.cluster.nodes")
        || path.starts_with("dedup.sentinel.nodes")
    {
        return "redis://placeholder.invalid:6379";
    }
    for_key(key_of(path))
}

/// A value that passes validation for `key`. Keys not listed take a plain word, which every
/// free-form key (names, paths, secrets, templates) accepts.
pub fn for_key(key: &str) -> &'static str {
    match key {
        "listen" | "admin_listen" => "127.0.0.1:0",
        "enabled" | "forward_path" => "true",
        "allowed_ips" => "127.0.0.1/32",
        "max_event_age" | "dedup_window" => "10m",
        "request_timeout" | "shutdown_grace" => "10s",
        "timeout" => "6s",
        "wait_time" => "20s",
        "visibility_timeout" => "60s",
        "path" => "/placeholder",
        "max_age" => "24h",
        "initial_backoff" => "1s",
        "max_backoff" => "5m",
        "max_connections" => "1024",
        "max_body_bytes" => "1048576",
        // The largest max_body_bytes, so any max_body_bytes written beside it fits.
        "max_buffered_bytes" => "268435456",
        // The largest segment, for the same reason.
        "spool_segment_bytes" => "1073741824",
        "delivery_nice" => "5",
        // dedup.sentinel.db
        "db" => "0",
        // FIFO routes accept only 1.
        "concurrency" => "1",
        "queue_url" => "https://sqs.us-east-1.amazonaws.com/000000000000/placeholder",
        "topic_arn" => "arn:aws:sns:us-east-1:000000000000:placeholder",
        "url" | "endpoint_url" | "endpoint" => "http://placeholder.invalid/",
        "sample_ratio" => "1",
        "queue_size" => "2048",
        "role_arn" => "arn:aws:iam::000000000000:role/placeholder",
        "body" => "raw",
        "event_types" => "placeholder.event",
        _ => "placeholder",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &str) -> Option<String> {
        None
    }

    const TEXT: &str = "\
listen: ${LISTEN:-0.0.0.0:8080}
max_body_bytes: ${MAX}
apps:
  - api_key: ${KEY}
    api_secret: \"${SECRET}\"
routes:
  - name: a
    enabled: ${ON}
    event_types: [\"${TYPE}\"]
    sqs: { queue_url: \"${QUEUE}\", concurrency: ${N} }
  - name: b
    event_types: []
    http: { url: \"http://${HOST}:3000/x\", timeout: ${T} }
";

    #[test]
    fn every_reference_becomes_a_placeholder_that_validates() {
        let (config, held) = from_str("r.yaml", TEXT, nothing, Placeholders::All).unwrap();
        let paths: Vec<&str> = held.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listen",
                "max_body_bytes",
                "apps[0].api_key",
                "apps[0].api_secret",
                "routes[0].enabled",
                "routes[0].event_types[0]",
                "routes[0].sqs.queue_url",
                "routes[0].sqs.concurrency",
                "routes[1].http.url",
                "routes[1].http.timeout",
            ]
        );
        assert_eq!(held[1].var, "MAX");
        // "1" in a host is the IPv4 address 0.0.0.1.
        assert_eq!(
            config.routes()[1].destination.target(),
            "http://0.0.0.1:3000/x"
        );
    }

    #[test]
    fn for_unset_keeps_set_variables_and_defaults() {
        let env = |name: &str| (name == "KEY").then(|| "real-key".to_string());
        let (config, held) = from_str("r.yaml", TEXT, env, Placeholders::ForUnset).unwrap();
        assert_eq!(config.apps()[0].api_key(), "real-key");
        assert_eq!(
            config.listen().map(|a| a.to_string()).unwrap_or_default(),
            "0.0.0.0:8080",
            "the default applies"
        );
        assert!(held
            .iter()
            .all(|p| p.path != "apps[0].api_key" && p.path != "listen"));
        assert!(held.iter().any(|p| p.var == "SECRET"));
    }

    #[test]
    fn a_real_error_is_still_reported_where_it_is() {
        let text = "apps:\n  - api_key: ${KEY}\n    api_secret: ${S}\nroutes:\n  - name: a\n    event_types: []\n    file: { path: x, colour: red }\n";
        let err = from_str("r.yaml", text, nothing, Placeholders::All).unwrap_err();
        assert!(err.to_string().contains("r.yaml:7:22"), "{err}");
    }

    #[test]
    fn redis_urls_under_dedup_get_a_redis_placeholder_not_an_http_one() {
        for dedup in [
            "url: ${REDIS_URL}",
            "cluster: { nodes: [\"${NODE_A}\", \"${NODE_B}\"] }",
            "sentinel: { master: ${MASTER}, nodes: [\"${SENTINEL}\"], password: ${PW}, db: ${DB} }",
        ] {
            let text = format!("dedup:\n  backend: redis\n  {dedup}\napps:\n  - api_key: k\n    api_secret: s\nroutes:\n  - name: a\n    event_types: []\n    file: {{ path: x }}\n");
            let (config, _) = from_str("r.yaml", &text, nothing, Placeholders::All)
                .unwrap_or_else(|e| panic!("{dedup}: {e}"));
            assert!(config.dedup().is_some(), "{dedup}");
        }
    }
}
