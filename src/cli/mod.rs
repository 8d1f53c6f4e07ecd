//! The command line's work, one function per subcommand, a file per group of them; `main.rs`
//! only parses arguments. Here: what several subcommands share (loading the config for an
//! operator, tables, reaching the spool or the running daemon's admin API).

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use hookfan::config::{self, Config, Placeholders};
use hookfan::spool::{DeadLetter, DeadLetterAction, DeadLetterShown, Spool, SpoolError};
use hookfan::stream::{HEADER_API_KEY, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_WEBHOOK_ID};

mod dead_letters;
mod explain;
mod send;
mod serve;
mod setup;
mod spool;
mod status;

pub use dead_letters::{dead_letters_act, dead_letters_list, dead_letters_show, drop_pending};
pub use explain::explain;
pub use send::send;
pub use serve::serve;
pub use setup::{check, init, schema};
pub use spool::{spool_repair, spool_verify};
pub use status::{drain, healthcheck, status};

/// The config as an operator command (`status`, `dead-letters`, `drop-pending`, `explain`)
/// reads it: in the operator's shell, which lacks the daemon's secrets. Unset `${VAR}`s
/// become placeholders, except in the keys the command uses: the admin address and token,
/// the data dir, and these keys of each route (`name` and `enabled` for `drop-pending`; every
/// key that selects events for `explain`).
fn load_for_operator(config_path: &Path, route_keys: &[&str]) -> anyhow::Result<Config> {
    let (config, held) = config::load_with_placeholders(config_path, Placeholders::ForUnset)?;
    let used = |path: &str| {
        matches!(path, "admin_listen" | "admin_token" | "data_dir")
            || path
                .strip_prefix("routes[")
                .and_then(|rest| rest.split_once("]."))
                .is_some_and(|(_, key)| {
                    route_keys.iter().any(|k| {
                        key.strip_prefix(k)
                            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
                    })
                })
    };
    if let Some(p) = held.iter().find(|p| used(&p.path)) {
        bail!(
            "{}: {} is ${{{}}}, which is not set in this shell; this command needs it: set it as the daemon has it",
            config_path.display(),
            p.path,
            p.var
        );
    }
    Ok(config)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Where an operator command reaches the spool: the file itself when no daemon runs, or the
/// running daemon's admin API when one holds the file.
enum Spooled {
    Offline(Spool),
    Live(Admin),
}

async fn reach_spool(config: &Config) -> anyhow::Result<Spooled> {
    let settings = hookfan::spool::LogSpoolConfig::with_segment_size(config.spool_segment_bytes());
    match Spool::open_with(config.data_dir(), settings) {
        Ok(spool) => Ok(Spooled::Offline(spool)),
        Err(SpoolError::InUse(path)) => Admin::new(config)
            .map(Spooled::Live)
            .with_context(|| format!("{} is in use by the running hookfan", path.display())),
        Err(e) => Err(e.into()),
    }
}

/// A client of the running daemon's admin API.
struct Admin {
    base: String,
    token: Option<hookfan::config::Secret>,
    client: reqwest::Client,
}

impl Admin {
    fn new(config: &Config) -> anyhow::Result<Admin> {
        let addr = admin_address(config.admin_listen(), config.data_dir())?;
        Ok(Admin {
            base: format!("http://{addr}"),
            token: config.admin_token().cloned(),
            client: reqwest::Client::new(),
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let (url, response) = self.send(method, path, body).await?;
        Self::answer(url, response).await
    }

    /// [`Admin::call`] for what may be gone by the time it is asked for (a dead letter
    /// replayed or dropped since it was listed): `None` when the API answers 404.
    async fn call_if_found<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let (url, response) = self.send(method, path, None).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::answer(url, response).await.map(Some)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(String, reqwest::Response)> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .client
            .request(method, &url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = &self.token {
            request = request.bearer_auth(String::from_utf8_lossy(token.expose()));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| {
            format!("cannot reach the admin API at {url} (is hookfan running?)")
        })?;
        Ok((url, response))
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        url: String,
        response: reqwest::Response,
    ) -> anyhow::Result<T> {
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("{url} answered {status}: {}", text.trim());
        }
        response
            .json()
            .await
            .with_context(|| format!("{url} answered something unexpected"))
    }
}

/// The address a local command reaches the running daemon's admin listener at: the
/// configured one (a wildcard address asked on loopback), or, for port 0, the one the daemon
/// recorded in `data_dir` when it bound.
fn admin_address(
    admin_listen: Option<std::net::SocketAddr>,
    data_dir: &Path,
) -> anyhow::Result<std::net::SocketAddr> {
    let mut addr = admin_listen.context(
        "admin_listen is off, so the running daemon cannot be asked: stop it, or enable admin_listen",
    )?;
    if addr.port() == 0 {
        // Bound to a port chosen at start: the daemon recorded it.
        let file = data_dir.join(hookfan::admin::ADDR_FILE);
        let recorded = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "admin_listen has port 0 and {} cannot be read (is hookfan running?)",
                file.display()
            )
        })?;
        addr = recorded
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an address", file.display()))?;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(addr)
}

fn query(route: Option<&str>, ids: &[String]) -> String {
    let mut parts = Vec::new();
    if let Some(r) = route {
        parts.push(format!("route={}", urlencode(r)));
    }
    if !ids.is_empty() {
        let list: Vec<String> = ids.iter().map(|id| urlencode(id)).collect();
        parts.push(format!("id={}", list.join(",")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", [("v", s)])
        .map(|u| {
            u.query()
                .unwrap_or_default()
                .trim_start_matches("v=")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;

    /// An admin API on loopback with one answer per path.
    async fn admin() -> Admin {
        let app = axum::Router::new()
            .route(
                "/here",
                get(|| async { axum::Json(serde_json::json!({"seq": 7})) }),
            )
            .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Admin {
            base: format!("http://{addr}"),
            token: None,
            client: reqwest::Client::new(),
        }
    }

    #[tokio::test]
    async fn what_is_gone_is_none_and_any_other_failure_is_an_error_naming_the_answer() {
        let admin = admin().await;
        let get = reqwest::Method::GET;
        let here: Option<serde_json::Value> =
            admin.call_if_found(get.clone(), "/here").await.unwrap();
        assert_eq!(here, Some(serde_json::json!({"seq": 7})));
        let gone: Option<serde_json::Value> =
            admin.call_if_found(get.clone(), "/gone").await.unwrap();
        assert_eq!(gone, None);
        let broken = admin
            .call_if_found::<serde_json::Value>(get.clone(), "/broken")
            .await
            .unwrap_err();
        assert!(
            broken
                .to_string()
                .contains("500 Internal Server Error: boom"),
            "{broken}"
        );
        let strict = admin
            .call::<serde_json::Value>(get, "/gone", None)
            .await
            .unwrap_err();
        assert!(strict.to_string().contains("404"), "{strict}");
    }
}
