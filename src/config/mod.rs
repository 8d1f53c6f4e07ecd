//! routes.yaml: parse, then validate, then hand out a [`Config`] that can only be made here.
//!
//! The pipeline is `text → ${VAR} substitution → YAML tree (positions) → key lint → serde
//! types → validation → Config`. Every stage collects *all* of its problems, and each one is
//! reported with its line and column and what to do about it. The first stage that finds
//! problems stops the pipeline, since later stages would only repeat them.
//!
//! Owns: the file format and its defaults. Never: opens sockets or files other than the
//! config itself, so `hookfan check` is safe to run anywhere.

mod dedup;
mod diagnostic;
mod env;
mod lint;
mod passthrough;
pub mod placeholder;
mod raw;
mod restart;
mod settings;
pub use restart::{ReloadRefused, Reloaded};
mod routes;
pub mod schema;
mod sources;
mod traces;
mod tree;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::stream::SigningKey;

use diagnostic::render;
pub use diagnostic::{Diagnostic, Problem};
pub use placeholder::{Placeheld, Placeholders};
use raw::*;
pub use routes::{
    AwsDestination, BodyFormat, Destination, DestinationKind, FileDestination, HttpDestination,
    RateLimit, RetryPolicy, RetryPolicyError, Route,
};
use settings::{check_name, duration, validate};
pub use traces::TracingSettings;
pub use tree::Positions;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source} (pass --config PATH or set HOOKFAN_CONFIG)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file was read and has one or more problems, all listed.
    #[error("{}", render(.file, .diagnostics))]
    Invalid {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },
}

/// A secret that never shows itself in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
    pub fn expose_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A validated configuration. Only [`load`] and [`from_str`] make one, and nothing outside
/// this module changes one: its fields are read through the methods below. A reload builds
/// a new one ([`Config::reloaded`]) from the running one's [`Fixed`] part and the new
/// file's [`Reloadable`] part.
#[derive(Debug, Clone)]
pub struct Config {
    fixed: Fixed,
    reloadable: Reloadable,
}

/// The settings only a restart changes (`restart.rs` lists them with why, for the reload's
/// warning and the README): a reload keeps them whole, as they run. Each field is described
/// on its accessor.
#[derive(Debug, Clone)]
struct Fixed {
    listen: Option<SocketAddr>,
    max_connections: usize,
    max_buffered_bytes: usize,
    admin_listen: Option<SocketAddr>,
    data_dir: PathBuf,
    spool_segment_bytes: u64,
    delivery_nice: i32,
    dedup: Option<RedisDedup>,
    tracing: Option<TracingSettings>,
}

/// The settings a reload applies (`tls` too, except turning it on or off). Each field is
/// described on its accessor.
#[derive(Debug, Clone)]
struct Reloadable {
    tls: Option<TlsFiles>,
    allowed_ips: Option<Vec<ipnet::IpNet>>,
    max_event_age: Option<Duration>,
    request_timeout: Duration,
    admin_token: Option<Secret>,
    max_body_bytes: usize,
    dedup_window: Duration,
    shutdown_grace: Duration,
    apps: Vec<App>,
    routes: Vec<Route>,
    /// What the routes' `match:`/`not:` read of a body (nothing when no route has them).
    needed: crate::route::Needed,
    passthrough: Vec<Passthrough>,
    sources: Vec<Source>,
    warnings: Vec<Diagnostic>,
}

impl Config {
    /// Where Stream's webhooks are received; None when there is no webhook listener
    /// (`listen: off`, or sources and no `apps`).
    pub fn listen(&self) -> Option<SocketAddr> {
        self.fixed.listen
    }

    /// Serve ingest over TLS with these files (reloaded when they change); plain HTTP
    /// without.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.reloadable.tls.as_ref()
    }

    /// Only these networks may post webhooks (others get 403); None allows everyone.
    pub fn allowed_ips(&self) -> Option<&[ipnet::IpNet]> {
        self.reloadable.allowed_ips.as_deref()
    }

    /// Refuse (401) signed events whose `created_at` is older than this; a replay defence.
    pub fn max_event_age(&self) -> Option<Duration> {
        self.reloadable.max_event_age
    }

    /// Open ingest connections at most; more wait in the kernel's accept queue.
    pub fn max_connections(&self) -> usize {
        self.fixed.max_connections
    }

    /// A request's headers and body must both arrive within this (slow clients are cut off).
    pub fn request_timeout(&self) -> Duration {
        self.reloadable.request_timeout
    }

    /// Request bodies held in memory at once, across requests; beyond it, 503 at once.
    pub fn max_buffered_bytes(&self) -> usize {
        self.fixed.max_buffered_bytes
    }

    /// Health, readiness and metrics; None when `admin_listen: off`.
    pub fn admin_listen(&self) -> Option<SocketAddr> {
        self.fixed.admin_listen
    }

    /// Required as a bearer token by the admin API (`/api/...`) when set.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.reloadable.admin_token.as_ref()
    }

    /// The spool (durable store) lives here.
    pub fn data_dir(&self) -> &Path {
        &self.fixed.data_dir
    }

    /// Size of each of the spool's segment files.
    pub fn spool_segment_bytes(&self) -> u64 {
        self.fixed.spool_segment_bytes
    }

    /// Largest accepted body, checked before and after gzip decompression.
    pub fn max_body_bytes(&self) -> usize {
        self.reloadable.max_body_bytes
    }

    /// How long an `X-Webhook-Id` is remembered to drop Stream's retries.
    pub fn dedup_window(&self) -> Duration {
        self.reloadable.dedup_window
    }

    /// How long in-flight deliveries may finish after SIGTERM before the daemon exits.
    pub fn shutdown_grace(&self) -> Duration {
        self.reloadable.shutdown_grace
    }

    /// How many nice steps below ingest the delivery threads run (0: the same priority).
    pub fn delivery_nice(&self) -> i32 {
        self.fixed.delivery_nice
    }

    /// Stream apps whose webhooks are accepted; `X-Api-Key` picks one.
    pub fn apps(&self) -> &[App] {
        &self.reloadable.apps
    }

    /// The routes, in the file's order.
    pub fn routes(&self) -> &[Route] {
        &self.reloadable.routes
    }

    /// What the routes' conditions read of an event's body ([`crate::route::select`]).
    pub fn needed(&self) -> &crate::route::Needed {
        &self.reloadable.needed
    }

    /// Synchronous hooks (Before-Message-Send, Custom Commands): a request on one of these
    /// exact paths is verified, then proxied to its handler and answered with the handler's
    /// answer; it is never stored.
    pub fn passthrough(&self) -> &[Passthrough] {
        &self.reloadable.passthrough
    }

    /// Queues hookfan consumes events from, besides the webhook listener.
    pub fn sources(&self) -> &[Source] {
        &self.reloadable.sources
    }

    /// Dedup shared with other replicas on Redis; None: the spool's own (one replica).
    pub fn dedup(&self) -> Option<&RedisDedup> {
        self.fixed.dedup.as_ref()
    }

    /// The `tracing:` block; None: traces only if the `OTEL_*` environment asks.
    pub fn tracing(&self) -> Option<&TracingSettings> {
        self.fixed.tracing.as_ref()
    }

    /// What is valid but probably not meant (an event type Stream does not document):
    /// printed by `check`, logged at startup and reload. Never stops anything.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.reloadable.warnings
    }
}

/// A `passthrough:` block: where a synchronous hook's requests go.
#[derive(Debug, Clone, PartialEq)]
pub struct Passthrough {
    /// The exact request path on the webhook listener (no query).
    pub path: String,
    /// The handler; the request's query string is added to it.
    pub url: reqwest::Url,
    /// The handler must answer within this, else Stream gets 504. None: within Stream's own
    /// deadline for the hook the body is (`stream::hooks`: 1.4 s for Before-Message-Send,
    /// 900 ms for Custom Commands and anything else).
    pub timeout: Option<Duration>,
    /// Requests in flight to the handler at most; more are answered 503 at once.
    pub concurrency: usize,
}

/// `dedup: { backend: redis, ... }`: webhook ids shared between replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisDedup {
    /// Which Redis: one server, a cluster, or a master named by sentinels.
    pub topology: RedisTopology,
    /// Certificates for `rediss://`; None trusts the system's roots.
    pub tls: Option<RedisTls>,
    pub key_prefix: String,
    /// Per call; slower counts as unavailable (local dedup meanwhile).
    pub timeout: Duration,
    /// How long a claim of a webhook being stored lasts.
    pub pending_ttl: Duration,
}

/// How a replica reaches Redis. Every URL is `redis://` or `rediss://` (all of one kind) and
/// may hold a password, so none is ever printed.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTopology {
    /// `url:`: one server.
    Single(Secret),
    /// `cluster: { nodes }`: seed nodes of a Redis Cluster.
    Cluster(Vec<Secret>),
    /// `sentinel: { master, nodes, ... }`: the master the sentinels name.
    Sentinel(SentinelDedup),
}

/// `dedup.sentinel`.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelDedup {
    /// The monitored master's name.
    pub master: String,
    /// The sentinels' URLs (their own credentials, if any).
    pub nodes: Vec<Secret>,
    /// Credentials and database on the master, which the sentinels do not tell.
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
}

/// `dedup.tls`: PEM files, read when the daemon starts (like the listener's `tls:`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisTls {
    /// Trusted instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key, for servers that require mutual TLS.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// A `sources:` entry: a queue Stream delivers to natively, consumed like webhooks arrive.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Unique among sources; labels its metrics and logs. Its events are routed as if posted
    /// to `/sources/<name>`.
    pub name: String,
    pub sqs: SqsSource,
}

/// An SQS queue to receive from.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsSource {
    pub queue_url: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub role_arn: Option<String>,
    /// Receive loops (each asks for up to 10 messages at a time).
    pub concurrency: usize,
    /// Long polling: how long one receive waits for messages (0 to 20 s).
    pub wait_time: Duration,
    /// How long a received message stays invisible to other consumers; None: the queue's.
    pub visibility_timeout: Option<Duration>,
}

impl Source {
    /// The path its events are routed and stored as posted to.
    pub fn path(&self) -> String {
        format!("/sources/{}", self.name)
    }
}

/// PEM files of the ingest listener's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One of Stream's apps: the key its webhooks name in `X-Api-Key`, and the secret they are
/// signed with, kept keyed for checking signatures ([`App::signing_key`]).
#[derive(Debug, Clone)]
pub struct App {
    api_key: String,
    api_secret: Secret,
    signing_key: SigningKey,
}

impl App {
    pub fn new(api_key: impl Into<String>, api_secret: Secret) -> Self {
        let signing_key = SigningKey::new(api_secret.expose());
        App {
            api_key: api_key.into(),
            api_secret,
            signing_key,
        }
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn api_secret(&self) -> &Secret {
        &self.api_secret
    }

    /// The secret as an HMAC key, keyed once.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(600);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(6);
pub const DEFAULT_HTTP_CONCURRENCY: usize = 16;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Delivery threads run this many nice steps below ingest (see `deliver::runtime`).
pub const DEFAULT_DELIVERY_NICE: i32 = 5;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight to one passthrough handler at most.
pub const DEFAULT_PASSTHROUGH_CONCURRENCY: usize = passthrough::DEFAULT_CONCURRENCY;
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 64 * 1024 * 1024;
/// Stream retries a webhook for up to 15 s after the event; a shorter `max_event_age` would
/// refuse its own retries.
const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
/// The largest `max_body_bytes` routes.yaml may set.
pub const MAX_BODY_LIMIT: u64 = 256 * 1024 * 1024;
/// Longest duration any key takes (ten years): beyond it, time arithmetic would overflow.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

// ---------------------------------------------------------------------------------------------
// Stage 1, the file's shape as serde types, is `raw.rs`; stage 2, every unknown or missing key
// with its position, is `lint.rs`.

/// Batches in flight per SQS/SNS route. A `SendMessageBatch` to AWS takes ~10-30 ms within a
/// region, so 4 would cap a route near 1.3-4k events/s while draining a backlog; 16 matches the
/// HTTP default and holds at most 2 × 16 × 10 events in memory. (Redpanda Connect's `aws_sqs`
/// output defaults to 64 in flight.)
pub const DEFAULT_AWS_CONCURRENCY: usize = 16;

/// Reads and validates the config file at `path`, substituting `${VAR}` from the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_text(path).map(|(config, _)| config)
}

/// Like [`load`], also returning the exact text the config was read from (reload compares
/// the file against it).
pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let config = from_str(&path.display().to_string(), &text, |name| {
        std::env::var(name).ok()
    })?;
    Ok((config, text))
}

/// Reads and validates the config at `path` with `${VAR}` references resolved from the
/// process environment as `which` says, returning the keys that took placeholders (see
/// `placeholder.rs`).
pub fn load_with_placeholders(
    path: &Path,
    which: Placeholders,
) -> Result<(Config, Vec<Placeheld>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    placeholder::from_str(
        &path.display().to_string(),
        &text,
        |name| std::env::var(name).ok(),
        which,
    )
}

/// The JSON Schema of routes.yaml (what `hookfan schema` prints), from the types above.
fn raw_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<RawConfig>()
}

/// Validates config `text`; `file` names it in diagnostics, `lookup` resolves `${VAR}`.
pub fn from_str(
    file: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let (text, mut diagnostics, columns) = env::substitute(text, lookup);
    // Positions found in the substituted text are mapped back to the file as written; the
    // substitution's own diagnostics already are.
    let from_env = diagnostics.len();
    let invalid = |mut diagnostics: Vec<Diagnostic>| {
        for d in diagnostics.iter_mut().skip(from_env) {
            d.column = columns.original(d.line, d.column);
        }
        diagnostics.sort_by_key(|d| (d.line, d.column));
        ConfigError::Invalid {
            file: file.to_string(),
            diagnostics,
        }
    };
    let root = tree::parse(&text).map_err(|d| {
        diagnostics.push(d);
        invalid(diagnostics.clone())
    })?;
    diagnostics.extend(lint::lint(&root));
    if !diagnostics.is_empty() {
        return Err(invalid(diagnostics));
    }
    let positions = Positions::index(&root);
    let raw: RawConfig = match serde_yaml::from_str::<Option<RawConfig>>(&text) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                diagnostics: vec![Diagnostic::new(
                    Problem::MissingKey,
                    (1, 1),
                    None,
                    "the file is empty: it needs at least `apps:` and `routes:` (see the README)",
                )],
            })
        }
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = e.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = message
                .strip_suffix(&suffix)
                .unwrap_or(&message)
                .to_string();
            let path = positions.path_at(line, column);
            diagnostics.push(Diagnostic::new(
                Problem::Syntax,
                (line, column),
                path,
                message,
            ));
            return Err(invalid(diagnostics));
        }
    };
    let mut config = validate(raw, &positions)
        .map_err(|d| invalid(diagnostics.into_iter().chain(d).collect()))?;
    for w in &mut config.reloadable.warnings {
        w.column = columns.original(w.line, w.column);
    }
    Ok(config)
}

impl Config {
    /// The warnings as `file:line:column: warning: ...` lines.
    pub fn render_warnings(&self, file: &str) -> Vec<String> {
        self.reloadable
            .warnings
            .iter()
            .map(|d| format!("{file}:{}:{}: warning: {}", d.line, d.column, d.message))
            .collect()
    }
}
