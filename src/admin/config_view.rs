//! `GET /api/config`: the running config as JSON, for the web console's config page.
//!
//! Owns: one hand-written JSON view of [`Config`]. Never: a secret. `Config` has no
//! `Serialize` on purpose; this view names every field it shows, so a field added to the
//! config later shows nowhere until someone decides here how it is shown. Every [`Secret`]
//! is written as [`MASK`] (or `null` when absent), and a password inside a URL is masked too.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::config::{Config, Destination, RedisTopology, RetryPolicy, Secret};

use super::AdminState;

/// What a secret is shown as.
pub const MASK: &str = "***";

/// `GET /api/config` (behind `admin_token`, like the rest of `/api`).
pub async fn get_config(State(state): State<AdminState>) -> Json<Value> {
    let config = state.live.borrow().config.clone();
    Json(view(&config))
}

/// Only whether it is set; not even its length.
fn secret(_: &Secret) -> Value {
    Value::from(MASK)
}

/// A URL with any password in it masked; an unparsable one is masked whole.
fn url_masked(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Cannot fail for a URL that already has a password.
                let _ = url.set_password(Some(MASK));
            }
            url.to_string()
        }
        Err(_) => MASK.to_string(),
    }
}

fn secret_url(s: &Secret) -> Value {
    Value::from(url_masked(s.expose_str()))
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn retry(r: &RetryPolicy) -> Value {
    json!({
        "max_age": duration(r.max_age()),
        "initial_backoff": duration(r.initial_backoff()),
        "max_backoff": duration(r.max_backoff()),
    })
}

fn destination(d: &Destination) -> Value {
    let mut block = match d {
        Destination::Http(h) => json!({
            "url": url_masked(h.url.as_str()),
            "timeout": duration(h.timeout),
            "concurrency": h.concurrency,
            "retry": retry(&h.retry),
            "api_secret": h.api_secret.as_ref().map(secret),
            "forward_path": h.forward_path,
        }),
        Destination::File(f) => json!({
            "path": f.path.display().to_string(),
            "retry": retry(&f.retry),
        }),
        Destination::Sqs(a) | Destination::Sns(a) => json!({
            "target": a.target,
            "region": a.region,
            "endpoint_url": a.endpoint_url.as_deref().map(url_masked),
            "role_arn": a.role_arn,
            "message_group_id": a.message_group_id.as_ref().map(|t| t.source().to_string()),
            "body": match a.body {
                crate::config::BodyFormat::Raw => "raw",
                crate::config::BodyFormat::StreamCompressed => "stream_compressed",
            },
            "fifo": a.fifo,
            "concurrency": a.concurrency,
            "retry": retry(&a.retry),
        }),
    };
    block["rate_limit"] = json!(d.rate_limit().map(|l| l.describe()));
    block
}

/// The running config, secrets masked.
pub fn view(c: &Config) -> Value {
    let routes: Vec<Value> = c
        .routes()
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "enabled": r.enabled,
                "event_types": r.filter.describe(),
                "paths": r.paths.describe(),
                "conditions": r.content.describe(),
                "destination": r.destination.kind(),
                r.destination.kind().key(): destination(&r.destination),
            })
        })
        .collect();
    let dedup = c.dedup().map(|d| {
        let topology = match &d.topology {
            RedisTopology::Single(url) => json!({ "url": secret_url(url) }),
            RedisTopology::Cluster(nodes) => {
                json!({ "cluster": { "nodes": nodes.iter().map(secret_url).collect::<Vec<_>>() } })
            }
            RedisTopology::Sentinel(s) => json!({ "sentinel": {
                "master": s.master,
                "nodes": s.nodes.iter().map(secret_url).collect::<Vec<_>>(),
                "username": s.username,
                "password": s.password.as_ref().map(secret),
                "db": s.db,
            }}),
        };
        json!({
            "backend": "redis",
            "topology": topology,
            "tls": d.tls.as_ref().map(|t| json!({
                "ca_file": t.ca_file.as_ref().map(|p| p.display().to_string()),
                "client_cert_file": t.client.as_ref().map(|(c, _)| c.display().to_string()),
                "client_key_file": t.client.as_ref().map(|(_, k)| k.display().to_string()),
            })),
            "key_prefix": d.key_prefix,
            "timeout": duration(d.timeout),
            "pending_ttl": duration(d.pending_ttl),
        })
    });
    json!({
        "listen": c.listen().map(|a| a.to_string()),
        "tls": c.tls().map(|t| json!({
            "cert": t.cert.display().to_string(),
            "key": t.key.display().to_string(),
        })),
        "allowed_ips": c.allowed_ips().map(|nets| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
        "max_event_age": c.max_event_age().map(duration),
        "max_connections": c.max_connections(),
        "request_timeout": duration(c.request_timeout()),
        "max_buffered_bytes": c.max_buffered_bytes(),
        "admin_listen": c.admin_listen().map_or_else(|| "off".to_string(), |a| a.to_string()),
        "admin_token": c.admin_token().map(secret),
        "data_dir": c.data_dir().display().to_string(),
        "max_body_bytes": c.max_body_bytes(),
        "dedup_window": duration(c.dedup_window()),
        "shutdown_grace": duration(c.shutdown_grace()),
        "delivery_nice": c.delivery_nice(),
        "apps": c.apps().iter().map(|a| json!({
            "api_key": a.api_key(),
            "api_secret": secret(a.api_secret()),
        })).collect::<Vec<_>>(),
        "routes": routes,
        "passthrough": c.passthrough().iter().map(|p| json!({
            "path": p.path,
            "url": url_masked(p.url.as_str()),
            "timeout": p.timeout.map(duration),
            "concurrency": p.concurrency,
        })).collect::<Vec<_>>(),
        "sources": c.sources().iter().map(|s| json!({
            "name": s.name,
            "path": s.path(),
            "sqs": {
                "queue_url": s.sqs.queue_url,
                "region": s.sqs.region,
                "endpoint_url": s.sqs.endpoint_url.as_deref().map(url_masked),
                "role_arn": s.sqs.role_arn,
                "concurrency": s.sqs.concurrency,
                "wait_time": duration(s.sqs.wait_time),
                "visibility_timeout": s.sqs.visibility_timeout.map(duration),
            },
        })).collect::<Vec<_>>(),
        "dedup": dedup,
        "tracing": c.tracing().map(|t| json!({
            "endpoint": t.endpoint.as_ref().map(|u| url_masked(u.as_str())),
            "sample_ratio": t.sample_ratio,
            "queue_size": t.queue_size,
        })),
        "warnings": c.warnings().iter().map(|w| format!("{}:{}: {}", w.line, w.column, w.message)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &[&str] = &[
        "app-secret-one",
        "admin-token-two",
        "resign-secret-three",
        "redis-password-four",
        "sentinel-password-five",
        "url-password-six",
    ];

    fn config_with_every_secret() -> Config {
        crate::config::from_str("routes.yaml", EVERY_SECRET, |_| None).expect("valid config")
    }

    const EVERY_SECRET: &str = r#"
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
admin_token: "admin-token-two"
data_dir: "/tmp/hookfan-config-view"
apps:
  - api_key: key
    api_secret: "app-secret-one"
routes:
  - name: resigned
    event_types: ["message.*"]
    http:
      url: "https://user:url-password-six@handler.example/hook"
      api_secret: "resign-secret-three"
  - name: to-file
    event_types: []
    file: { path: /tmp/events.jsonl }
passthrough:
  - path: /stream/before-message-send
    url: "https://hooks.example/bms"
dedup:
  backend: redis
  sentinel:
    master: mymaster
    nodes: ["redis://:redis-password-four@sentinel-1:26379"]
    password: "sentinel-password-five"
tracing:
  endpoint: "https://collector.example:4318"
  sample_ratio: 0.1
"#;

    #[test]
    fn the_config_view_masks_every_secret_and_keeps_the_rest() {
        let view = view(&config_with_every_secret());
        let text = serde_json::to_string_pretty(&view).unwrap();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        assert_eq!(view["admin_token"], MASK);
        assert_eq!(view["apps"][0]["api_key"], "key");
        assert_eq!(view["apps"][0]["api_secret"], MASK);
        let http = &view["routes"][0]["http"];
        assert_eq!(http["api_secret"], MASK);
        assert_eq!(http["url"], "https://user:***@handler.example/hook");
        assert_eq!(view["routes"][0]["event_types"], "message.*");
        assert_eq!(view["routes"][1]["destination"], "file");
        assert_eq!(
            view["dedup"]["topology"]["sentinel"]["password"], MASK,
            "{text}"
        );
        assert_eq!(
            view["passthrough"][0]["path"],
            "/stream/before-message-send"
        );
        assert_eq!(
            view["tracing"]["endpoint"],
            "https://collector.example:4318/"
        );
        assert_eq!(view["tracing"]["sample_ratio"], 0.1);
    }

    #[test]
    fn an_absent_secret_is_null_and_an_unparsable_url_is_masked_whole() {
        let yaml = EVERY_SECRET.replace("admin_token: \"admin-token-two\"\n", "");
        let config = crate::config::from_str("routes.yaml", &yaml, |_| None).expect("valid config");
        assert!(config.admin_token().is_none());
        assert_eq!(view(&config)["admin_token"], Value::Null);
        assert_eq!(url_masked("not a url with a secret"), MASK);
    }
}
