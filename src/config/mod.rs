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
mod env;
mod passthrough;
pub mod placeholder;
mod restart;
pub mod schema;
mod sources;
mod tree;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::route::{EventFilter, PathFilter};
use crate::stream::SigningKey;

pub use placeholder::{Placeheld, Placeholders};
pub use tree::Positions;

/// One problem found in routes.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            line,
            column,
            message: message.into(),
        }
    }
}

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

fn render(file: &str, diagnostics: &[Diagnostic]) -> String {
    let mut lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{file}:{}:{}: {}", d.line, d.column, d.message))
        .collect();
    let n = diagnostics.len();
    lines.push(format!(
        "{file}: {n} error{} found",
        if n == 1 { "" } else { "s" }
    ));
    lines.join("\n")
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

/// A validated configuration. Only [`load`] and [`from_str`] make one.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Stream's webhooks are received; None when there is no webhook listener
    /// (`listen: off`, or sources and no `apps`).
    pub listen: Option<SocketAddr>,
    /// Serve ingest over TLS with these files (reloaded when they change); plain HTTP
    /// without.
    pub tls: Option<TlsFiles>,
    /// Only these networks may post webhooks (others get 403); None allows everyone.
    pub allowed_ips: Option<Vec<ipnet::IpNet>>,
    /// Refuse (401) signed events whose `created_at` is older than this; a replay defence.
    pub max_event_age: Option<Duration>,
    /// Open ingest connections at most; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A request's headers and body must both arrive within this (slow clients are cut off).
    pub request_timeout: Duration,
    /// Request bodies held in memory at once, across requests; beyond it, 503 at once.
    pub max_buffered_bytes: usize,
    /// Health, readiness and metrics; None when `admin_listen: off`.
    pub admin_listen: Option<SocketAddr>,
    /// Required as a bearer token by the admin API (`/api/...`) when set.
    pub admin_token: Option<Secret>,
    /// The spool (durable store) lives here.
    pub data_dir: PathBuf,
    /// Size of each of the spool's segment files.
    pub spool_segment_bytes: u64,
    /// Largest accepted body, checked before and after gzip decompression.
    pub max_body_bytes: usize,
    /// How long an `X-Webhook-Id` is remembered to drop Stream's retries.
    pub dedup_window: Duration,
    /// How long in-flight deliveries may finish after SIGTERM before the daemon exits.
    pub shutdown_grace: Duration,
    /// How many nice steps below ingest the delivery threads run (0: the same priority).
    pub delivery_nice: i32,
    /// Stream apps whose webhooks are accepted; `X-Api-Key` picks one.
    pub apps: Vec<App>,
    pub routes: Vec<Route>,
    /// Synchronous hooks (Before-Message-Send, Custom Commands): a request on one of these
    /// exact paths is verified, then proxied to its handler and answered with the handler's
    /// answer; it is never stored.
    pub passthrough: Vec<Passthrough>,
    /// Queues hookfan consumes events from, besides the webhook listener.
    pub sources: Vec<Source>,
    /// Dedup shared with other replicas on Redis; None: the spool's own (one replica).
    pub dedup: Option<RedisDedup>,
    /// What is valid but probably not meant (an event type Stream does not document):
    /// printed by `check`, logged at startup and reload. Never stops anything.
    pub warnings: Vec<Diagnostic>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique; also the key of the route's queue in the spool, so renaming a route starts a
    /// new queue.
    pub name: String,
    /// A disabled route matches nothing; events it already holds stay on disk.
    pub enabled: bool,
    pub filter: EventFilter,
    /// The request paths it takes (`paths:`); every path when absent.
    pub paths: PathFilter,
    pub destination: Destination,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Http(HttpDestination),
    File(FileDestination),
    Sqs(AwsDestination),
    Sns(AwsDestination),
}

impl Destination {
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Http(_) => "http",
            Destination::File(_) => "file",
            Destination::Sqs(_) => "sqs",
            Destination::Sns(_) => "sns",
        }
    }

    /// Where it delivers, for tables and logs (never a secret).
    /// Where it delivers, for people (status, the admin API, `check`): a password in an HTTP
    /// URL shows as `***`.
    pub fn target(&self) -> String {
        match self {
            Destination::Http(h) => {
                let mut url = h.url.clone();
                if url.password().is_some() {
                    // Cannot fail: the URL already has a password.
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Destination::File(f) => f.path.display().to_string(),
            Destination::Sqs(a) | Destination::Sns(a) => a.target.clone(),
        }
    }

    pub fn retry(&self) -> &RetryPolicy {
        match self {
            Destination::Http(h) => &h.retry,
            Destination::File(f) => &f.retry,
            Destination::Sqs(a) | Destination::Sns(a) => &a.retry,
        }
    }

    /// How many deliveries of this route may be in flight at once.
    pub fn concurrency(&self) -> usize {
        match self {
            Destination::Http(h) => h.concurrency,
            // Appends to one file are serialised anyway; one writer keeps lines in order.
            Destination::File(_) => 1,
            Destination::Sqs(a) | Destination::Sns(a) => a.concurrency,
        }
    }

    /// Whether the route must deliver in ingest order (FIFO queues and topics): one batch at
    /// a time, and a failing event holds back the ones behind it instead of being overtaken.
    pub fn ordered(&self) -> bool {
        match self {
            Destination::Sqs(a) | Destination::Sns(a) => a.fifo,
            _ => false,
        }
    }

    /// An ordered destination's message group id template (FIFO queues and topics).
    pub fn message_group(&self) -> Option<&crate::template::Template> {
        match self {
            Destination::Sqs(a) | Destination::Sns(a) if a.fifo => a.message_group_id.as_ref(),
            _ => None,
        }
    }
}

/// An `sqs` or `sns` destination.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsDestination {
    /// The queue URL (sqs) or topic ARN (sns).
    pub target: String,
    /// Overrides the region of the AWS environment.
    pub region: Option<String>,
    /// Overrides the endpoint (LocalStack, moto, ...).
    pub endpoint_url: Option<String>,
    /// Assume this role for the destination's requests.
    pub role_arn: Option<String>,
    /// `MessageGroupId` for each event; required for FIFO targets.
    pub message_group_id: Option<crate::template::Template>,
    pub body: BodyFormat,
    /// A `.fifo` queue or topic: ordered delivery, deduplication ids.
    pub fifo: bool,
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

/// What an SQS message or SNS notification carries as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The event JSON exactly as Stream sent it.
    Raw,
    /// base64(gzip(json)), Stream's own compressed SQS/SNS format.
    StreamCompressed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpDestination {
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// When set, deliveries are re-signed with this secret instead of carrying Stream's.
    pub api_secret: Option<Secret>,
    /// Append the path and query the webhook was posted to onto `url`'s path.
    pub forward_path: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileDestination {
    pub path: PathBuf,
    pub retry: RetryPolicy,
}

/// How a route retries. Built only through [`RetryPolicy::try_new`] (its fields are
/// private), so every policy has `0 < initial_backoff <= max_backoff` and `max_age > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_age: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

/// Why [`RetryPolicy::try_new`] refused its durations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    #[error("initial_backoff must be greater than 0")]
    ZeroInitialBackoff,
    #[error("initial_backoff ({}) is greater than max_backoff ({})", humantime::format_duration(*.initial), humantime::format_duration(*.max))]
    InitialAboveMax { initial: Duration, max: Duration },
    #[error("max_age must be greater than 0")]
    ZeroMaxAge,
}

impl RetryPolicyError {
    /// The key of routes.yaml's `retry:` block the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            RetryPolicyError::ZeroInitialBackoff | RetryPolicyError::InitialAboveMax { .. } => {
                "initial_backoff"
            }
            RetryPolicyError::ZeroMaxAge => "max_age",
        }
    }
}

impl RetryPolicy {
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_age: Duration::from_secs(24 * 3600),
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(300),
    };

    pub fn try_new(
        max_age: Duration,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> Result<Self, RetryPolicyError> {
        if initial_backoff.is_zero() {
            return Err(RetryPolicyError::ZeroInitialBackoff);
        }
        if initial_backoff > max_backoff {
            return Err(RetryPolicyError::InitialAboveMax {
                initial: initial_backoff,
                max: max_backoff,
            });
        }
        if max_age.is_zero() {
            return Err(RetryPolicyError::ZeroMaxAge);
        }
        Ok(RetryPolicy {
            max_age,
            initial_backoff,
            max_backoff,
        })
    }

    /// An event still failing this long after it was received is dead-lettered.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The backoff's ceiling after the first failed attempt; it doubles per attempt.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The most any retry waits (a destination's `Retry-After` included).
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
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
const MAX_BODY_LIMIT: u64 = 256 * 1024 * 1024;
/// Longest duration any key takes (ten years): beyond it, time arithmetic would overflow.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 24 * 3600);

// ---------------------------------------------------------------------------------------------
// Stage 1: the file's shape, as serde types.

/// routes.yaml: which Stream webhooks hookfan accepts and where each event goes. `${VAR}`
/// and `${VAR:-default}` are replaced from the environment before the file is read.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookfan routes.yaml", rename = "RoutesYaml")]
struct RawConfig {
    /// Webhook ingress address (IP:PORT), or `off` (sources only); point Stream's webhook URL
    /// here.
    #[schemars(extend("default" = DEFAULT_LISTEN))]
    listen: Option<String>,
    /// Serve the webhook port over HTTPS with these PEM files (renewals are picked up within
    /// 1 s); plain HTTP without.
    tls: Option<RawTls>,
    /// Only these senders (IP addresses or CIDR networks) may post webhooks; others get 403.
    allowed_ips: Option<Vec<String>>,
    /// Refuse (401) signed events whose created_at is older than this (at least 1m); a replay
    /// defence. Off by default.
    #[schemars(extend("pattern" = schema::DURATION))]
    max_event_age: Option<String>,
    /// Open webhook connections at most; more wait in the kernel's accept queue.
    #[schemars(range(min = 1, max = 1_000_000), extend("default" = DEFAULT_MAX_CONNECTIONS))]
    max_connections: Option<usize>,
    /// A request's headers, then its body, must each arrive within this (else 408).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    request_timeout: Option<String>,
    /// Request bodies held in memory at once, across requests; beyond it, 503 at once.
    /// Default: 64 MiB, or twice max_body_bytes when that is more.
    #[schemars(range(min = 1), extend("default" = DEFAULT_MAX_BUFFERED_BYTES))]
    max_buffered_bytes: Option<u64>,
    /// Admin listener (/healthz, /readyz, /metrics, /api) as IP:PORT, or `off`.
    #[schemars(extend("default" = DEFAULT_ADMIN_LISTEN))]
    admin_listen: Option<String>,
    /// When set, the admin API (/api/...) requires it as a bearer token.
    admin_token: Option<String>,
    /// Directory of the durable spool (its log is in `<data_dir>/spool/`).
    #[schemars(extend("default" = DEFAULT_DATA_DIR))]
    data_dir: Option<String>,
    /// Size of each spool segment file, in bytes (created zero-filled ahead of need). The
    /// spool's disk use is a few segments plus the backlog; a webhook must fit in half of
    /// one (at least twice max_body_bytes).
    #[schemars(
        range(min = MIN_SEGMENT_BYTES, max = MAX_SEGMENT_BYTES),
        extend("default" = DEFAULT_SPOOL_SEGMENT_BYTES)
    )]
    spool_segment_bytes: Option<u64>,
    /// Largest accepted body in bytes, checked before and after gzip decompression.
    #[schemars(range(min = 1, max = MAX_BODY_LIMIT), extend("default" = DEFAULT_MAX_BODY_BYTES))]
    max_body_bytes: Option<u64>,
    /// How long X-Webhook-Id values are remembered, to drop Stream's retries.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10m"))]
    dedup_window: Option<String>,
    /// How long in-flight deliveries may finish after SIGTERM before hookfan exits.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    shutdown_grace: Option<String>,
    /// How many nice steps below ingest the delivery threads run (0: the same priority).
    #[schemars(range(min = 0, max = 19), extend("default" = DEFAULT_DELIVERY_NICE))]
    delivery_nice: Option<i64>,
    /// Stream apps whose webhooks are accepted (at least one, unless the config has sources
    /// and no webhook listener); X-Api-Key picks the secret.
    #[serde(default)]
    apps: Vec<RawApp>,
    /// Routes (at least one): which event types go to which destination.
    #[serde(default)]
    routes: Vec<RawRoute>,
    /// Stream's synchronous hooks (Before-Message-Send, Custom Commands): requests on these
    /// exact paths are verified, then answered by their handler; never stored.
    #[serde(default)]
    passthrough: Vec<RawPassthrough>,
    /// Queues Stream delivers to natively (SQS), consumed besides the webhook listener.
    #[serde(default)]
    sources: Vec<RawSource>,
    /// Where webhook ids are remembered: the spool (one replica) or Redis (shared by
    /// replicas behind a load balancer).
    dedup: Option<RawDedup>,
}

/// Dedup backend.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dedup")]
struct RawDedup {
    /// `spool` (default: this replica's spool) or `redis` (shared by replicas).
    #[schemars(extend("enum" = ["spool", "redis"], "default" = "spool"))]
    backend: Option<String>,
    /// One Redis server: redis://[user:password@]host[:port][/db], or rediss:// for TLS.
    /// Exactly one of url, cluster and sentinel.
    url: Option<String>,
    /// A Redis Cluster, instead of url.
    cluster: Option<RawRedisCluster>,
    /// A master found through Redis Sentinel (and followed through failovers), instead of
    /// url.
    sentinel: Option<RawRedisSentinel>,
    /// Certificates for rediss:// URLs: a private CA, and a client certificate for mutual
    /// TLS. Without it, the system's roots are trusted (SSL_CERT_FILE is honoured).
    tls: Option<RawRedisTls>,
    /// Prefix of the keys hookfan writes.
    #[schemars(extend("default" = dedup::DEFAULT_KEY_PREFIX))]
    key_prefix: Option<String>,
    /// Per call to Redis; slower counts as unavailable (local dedup meanwhile).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "250ms"))]
    timeout: Option<String>,
    /// How long a claim of a webhook being stored lasts (6s to 60s).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    pending_ttl: Option<String>,
}

/// A Redis Cluster: the client learns every node and slot from any of these.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisCluster")]
struct RawRedisCluster {
    /// Seed nodes (one is enough, more survive one being down), each
    /// redis://[user:password@]host:port or rediss://; all with the same user, password and
    /// scheme.
    nodes: Vec<String>,
}

/// Redis Sentinel: the sentinels name the master, and name the new one after a failover.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisSentinel")]
struct RawRedisSentinel {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    master: String,
    /// The sentinels, each redis://[user:password@]host:port (the sentinels' own
    /// credentials, usually none) or rediss:// for TLS to the sentinels and the master.
    nodes: Vec<String>,
    /// User on the master (and its replicas), if its ACL needs one.
    username: Option<String>,
    /// Password on the master (and its replicas); usually `${REDIS_PASSWORD}`.
    password: Option<String>,
    /// Database number on the master.
    #[schemars(range(min = 0), extend("default" = 0))]
    db: Option<i64>,
}

/// PEM files for rediss://.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisTls")]
struct RawRedisTls {
    /// CA certificate(s) that signed the server's certificate, trusted instead of the
    /// system's roots.
    ca_file: Option<String>,
    /// Client certificate chain for mutual TLS (with key_file).
    cert_file: Option<String>,
    /// The client certificate's private key (with cert_file).
    key_file: Option<String>,
}

/// A queue Stream delivers to natively.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Source")]
struct RawSource {
    /// Unique among sources; its events are routed as if posted to /sources/<name>.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    name: String,
    /// The SQS queue to receive from.
    sqs: RawSqsSource,
}

/// An SQS queue, received from with long polling; a message is deleted once stored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqsSource")]
struct RawSqsSource {
    /// The queue's URL.
    queue_url: String,
    /// Overrides the region of the AWS environment.
    region: Option<String>,
    /// Overrides the endpoint (LocalStack, moto, ...).
    endpoint_url: Option<String>,
    /// Assume this role to receive.
    role_arn: Option<String>,
    /// Receive loops (each asks for up to 10 messages).
    #[schemars(range(min = 1, max = 64), extend("default" = sources::DEFAULT_CONCURRENCY))]
    concurrency: Option<usize>,
    /// Long polling: how long one receive waits (whole seconds, 0s to 20s).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "20s"))]
    wait_time: Option<String>,
    /// How long a received message stays invisible to other consumers; default: the queue's.
    #[schemars(extend("pattern" = schema::DURATION))]
    visibility_timeout: Option<String>,
}

/// A synchronous hook's exact path and its handler.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Passthrough")]
struct RawPassthrough {
    /// The exact request path on the webhook listener, like /stream/before-message-send.
    #[schemars(regex(pattern = r"^/[^?#*\s]*$"))]
    path: String,
    /// The handler's http:// or https:// URL; the request's query is added to its own.
    url: String,
    /// The handler must answer within this (else 504). Default: Stream's deadline for the
    /// hook less 100 ms (1.4 s for Before-Message-Send, 900 ms for Custom Commands).
    #[schemars(extend("pattern" = schema::DURATION))]
    timeout: Option<String>,
    /// Requests in flight to the handler at most; more are answered 503 at once.
    #[schemars(range(min = 1, max = 4096), extend("default" = DEFAULT_PASSTHROUGH_CONCURRENCY))]
    concurrency: Option<usize>,
}

/// PEM files of the webhook listener's certificate chain and private key.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
struct RawTls {
    /// PEM certificate chain, leaf first.
    cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    key: String,
}

/// A Stream app whose webhooks are accepted.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "App")]
struct RawApp {
    /// The app's API key (Stream sends it as X-Api-Key).
    api_key: String,
    /// The app's API secret, which signs its webhooks; usually `${STREAM_API_SECRET}`.
    api_secret: String,
}

/// A route: the event types it takes and exactly one destination (sqs, sns, http or file).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
struct RawRoute {
    /// Unique; letters, digits, '-', '_' and '.'. Also the key of the route's queue in the
    /// spool: renaming a route starts a new queue.
    #[schemars(extend("pattern" = "^[A-Za-z0-9._-]+$"))]
    name: String,
    /// Event types this route takes; `[]` takes every event, including types Stream adds
    /// later. An entry may be a glob where `*` matches any run of characters (`message.*`).
    event_types: Vec<String>,
    /// Only webhooks posted to these request paths (globs as in event_types, like
    /// "/pending/*"); absent: every path.
    paths: Option<Vec<String>>,
    /// `false` keeps the route (and the events it holds) but delivers nothing.
    #[schemars(extend("default" = true))]
    enabled: Option<bool>,
    /// POST each event to an HTTP handler, with Stream's headers and signature.
    http: Option<RawHttp>,
    /// Append each event as one JSON line to a file.
    file: Option<RawFile>,
    /// Send each event to an SQS queue.
    sqs: Option<RawAws>,
    /// Publish each event to an SNS topic.
    sns: Option<RawAws>,
}

/// `sqs:` and `sns:` share one shape; `queue_url` belongs to sqs and `topic_arn` to sns (the
/// lint pass checks which keys each accepts; the schema splits them into `Sqs` and `Sns`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Aws")]
struct RawAws {
    /// The queue URL, like https://sqs.us-east-1.amazonaws.com/123456789012/stream-events
    /// (a name ending in .fifo makes the route ordered).
    queue_url: Option<String>,
    /// The topic ARN, like arn:aws:sns:us-east-1:123456789012:moderation (a name ending in
    /// .fifo makes the route ordered).
    topic_arn: Option<String>,
    /// Overrides the region of the AWS environment.
    region: Option<String>,
    /// Overrides the AWS endpoint (LocalStack, moto, ...).
    endpoint_url: Option<String>,
    /// Assume this IAM role for this route's requests.
    role_arn: Option<String>,
    /// MessageGroupId template over the event JSON, like "{cid}"; required for FIFO targets
    /// (and only allowed on FIFO topics).
    message_group_id: Option<String>,
    /// The message body: the event JSON as Stream sent it (`raw`), or base64(gzip(json))
    /// (`stream_compressed`, Stream's compressed SQS/SNS format).
    #[schemars(extend("enum" = ["raw", "stream_compressed", null], "default" = "raw"))]
    body: Option<String>,
    /// Batches in flight for this route (FIFO targets: always 1).
    #[schemars(range(min = 1, max = 1024), extend("default" = DEFAULT_AWS_CONCURRENCY))]
    concurrency: Option<usize>,
    /// How long and how often failed deliveries are retried.
    retry: Option<RawRetry>,
}

/// An HTTP handler.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Http")]
struct RawHttp {
    /// The handler's http:// or https:// URL.
    url: String,
    /// Per attempt.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "6s"))]
    timeout: Option<String>,
    /// Deliveries in flight for this route.
    #[schemars(range(min = 1, max = 1024), extend("default" = DEFAULT_HTTP_CONCURRENCY))]
    concurrency: Option<usize>,
    /// How long and how often failed deliveries are retried.
    retry: Option<RawRetry>,
    /// Re-sign deliveries with this secret instead of forwarding Stream's signature.
    api_secret: Option<String>,
    /// Append the path and query each webhook was posted to onto url's path.
    #[schemars(extend("default" = false))]
    forward_path: Option<bool>,
}

/// A JSON-lines file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "File")]
struct RawFile {
    /// The file to append to (fsynced before an event counts as delivered).
    path: String,
    /// How long and how often failed deliveries are retried.
    retry: Option<RawRetry>,
}

/// Exponential backoff with full jitter; initial_backoff must not exceed max_backoff.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retry")]
struct RawRetry {
    /// An event still failing this long after it was received goes to the dead letters.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "24h"))]
    max_age: Option<String>,
    /// The first retry's backoff.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "1s"))]
    initial_backoff: Option<String>,
    /// The longest backoff between two attempts.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "5m"))]
    max_backoff: Option<String>,
}

/// The keys each level accepts, for the lint pass that reports every unknown key at once.
/// Kept beside the serde types above; `every_documented_key_is_accepted` checks they agree.
const TOP_KEYS: &[&str] = &[
    "listen",
    "tls",
    "allowed_ips",
    "max_event_age",
    "max_connections",
    "request_timeout",
    "max_buffered_bytes",
    "admin_listen",
    "admin_token",
    "data_dir",
    "spool_segment_bytes",
    "max_body_bytes",
    "dedup_window",
    "shutdown_grace",
    "delivery_nice",
    "apps",
    "routes",
    "passthrough",
    "sources",
    "dedup",
];
const DEDUP_KEYS: &[&str] = &[
    "backend",
    "url",
    "cluster",
    "sentinel",
    "tls",
    "key_prefix",
    "timeout",
    "pending_ttl",
];
const DEDUP_CLUSTER_KEYS: &[&str] = &["nodes"];
const DEDUP_SENTINEL_KEYS: &[&str] = &["master", "nodes", "username", "password", "db"];
const DEDUP_TLS_KEYS: &[&str] = &["ca_file", "cert_file", "key_file"];
const SOURCE_KEYS: &[&str] = &["name", "sqs"];
const SQS_SOURCE_KEYS: &[&str] = &[
    "queue_url",
    "region",
    "endpoint_url",
    "role_arn",
    "concurrency",
    "wait_time",
    "visibility_timeout",
];
const PASSTHROUGH_KEYS: &[&str] = &["path", "url", "timeout", "concurrency"];
const APP_KEYS: &[&str] = &["api_key", "api_secret"];
const TLS_KEYS: &[&str] = &["cert", "key"];
const ROUTE_KEYS: &[&str] = &["name", "event_types", "paths", "enabled"];
const DESTINATIONS: &[&str] = &["http", "file", "sqs", "sns"];
const HTTP_KEYS: &[&str] = &[
    "url",
    "timeout",
    "concurrency",
    "retry",
    "api_secret",
    "forward_path",
];
const FILE_KEYS: &[&str] = &["path", "retry"];
const RETRY_KEYS: &[&str] = &["max_age", "initial_backoff", "max_backoff"];
const SQS_KEYS: &[&str] = &[
    "queue_url",
    "region",
    "endpoint_url",
    "role_arn",
    "message_group_id",
    "body",
    "concurrency",
    "retry",
];
const SNS_KEYS: &[&str] = &[
    "topic_arn",
    "region",
    "endpoint_url",
    "role_arn",
    "message_group_id",
    "body",
    "concurrency",
    "retry",
];
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
    diagnostics.extend(lint(&root));
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
                    1,
                    1,
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
            diagnostics.push(Diagnostic::new(line, column, message));
            return Err(invalid(diagnostics));
        }
    };
    let mut config = validate(raw, &positions)
        .map_err(|d| invalid(diagnostics.into_iter().chain(d).collect()))?;
    for w in &mut config.warnings {
        w.column = columns.original(w.line, w.column);
    }
    Ok(config)
}

impl Config {
    /// The warnings as `file:line:column: warning: ...` lines.
    pub fn render_warnings(&self, file: &str) -> Vec<String> {
        self.warnings
            .iter()
            .map(|d| format!("{file}:{}:{}: warning: {}", d.line, d.column, d.message))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: every unknown or missing key, with its position.

fn lint(root: &tree::Node) -> Vec<Diagnostic> {
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

// ---------------------------------------------------------------------------------------------
// Stage 3: values, with defaults, into the types the daemon runs on.

fn validate(raw: RawConfig, pos: &Positions) -> Result<Config, Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let mut warnings = Vec::new();

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN).trim();
    let mut listen = if listen_text == "off" {
        None
    } else {
        Some(listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            errs.push(pos.diag(
                "listen",
                format!("listen: \"{listen_text}\" is not an IP:PORT address (for example 0.0.0.0:8080 or 127.0.0.1:8080), or off"),
            ));
            DEFAULT_LISTEN.parse().expect("default listen address parses")
        }))
    };

    let admin_text = raw
        .admin_listen
        .as_deref()
        .unwrap_or(DEFAULT_ADMIN_LISTEN)
        .trim();
    let admin_listen = if admin_text == "off" {
        None
    } else {
        match admin_text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errs.push(pos.diag(
                    "admin_listen",
                    format!("admin_listen: \"{admin_text}\" is not an IP:PORT address (for example 127.0.0.1:9090), or off"),
                ));
                None
            }
        }
    };
    let admin_token = match raw.admin_token {
        Some(t) if t.trim().is_empty() => {
            errs.push(pos.diag(
                "admin_token",
                "admin_token is empty (is its environment variable set?); remove it to leave the admin API open on its loopback address",
            ));
            None
        }
        other => other.map(Secret::new),
    };
    let tls = raw.tls.map(|t| {
        for (key, value) in [("cert", &t.cert), ("key", &t.key)] {
            if value.trim().is_empty() {
                errs.push(pos.diag(
                    &format!("tls.{key}"),
                    format!("tls.{key} is empty: give the path of a PEM file, or remove tls: to serve plain HTTP"),
                ));
            }
        }
        TlsFiles {
            cert: PathBuf::from(t.cert),
            key: PathBuf::from(t.key),
        }
    });
    let allowed_ips = raw.allowed_ips.map(|list| {
        if list.is_empty() {
            errs.push(pos.diag(
                "allowed_ips",
                "allowed_ips is empty, which would refuse every sender; remove it to accept webhooks from anywhere",
            ));
        }
        list.iter()
            .enumerate()
            .filter_map(|(i, text)| match parse_network(text) {
                Some(net) => Some(net),
                None => {
                    errs.push(pos.diag(
                        &format!("allowed_ips[{i}]"),
                        format!("allowed_ips: \"{text}\" is not an IP address or CIDR network (like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"),
                    ));
                    None
                }
            })
            .collect()
    });
    let max_event_age = raw.max_event_age.as_ref().map(|_| {
        let age = duration(&raw.max_event_age, "max_event_age", MIN_EVENT_AGE, pos, &mut errs);
        if age < MIN_EVENT_AGE {
            errs.push(pos.diag(
                "max_event_age",
                format!("max_event_age must be at least {} (Stream retries an event for up to 15 s, and clocks drift)", humantime::format_duration(MIN_EVENT_AGE)),
            ));
        }
        age
    });
    let delivery_nice = raw
        .delivery_nice
        .map_or(Ok(DEFAULT_DELIVERY_NICE), i32::try_from)
        .ok()
        .filter(|n| (0..=19).contains(n))
        .unwrap_or_else(|| {
            errs.push(pos.diag(
                "delivery_nice",
                "delivery_nice must be between 0 (the same priority as ingest) and 19",
            ));
            DEFAULT_DELIVERY_NICE
        });
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=1_000_000).contains(&max_connections) {
        errs.push(pos.diag(
            "max_connections",
            "max_connections must be between 1 and 1000000",
        ));
    }
    let request_timeout = duration(
        &raw.request_timeout,
        "request_timeout",
        DEFAULT_REQUEST_TIMEOUT,
        pos,
        &mut errs,
    );
    if request_timeout.is_zero() {
        errs.push(pos.diag("request_timeout", "request_timeout must be greater than 0"));
    }
    let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
    if data_dir.as_os_str().is_empty() {
        errs.push(pos.diag("data_dir", "data_dir: must not be empty"));
    }

    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        errs.push(pos.diag(
            "max_body_bytes",
            format!("max_body_bytes: must be between 1 and {MAX_BODY_LIMIT}"),
        ));
    }

    let spool_segment_bytes = raw
        .spool_segment_bytes
        .unwrap_or(DEFAULT_SPOOL_SEGMENT_BYTES);
    if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&spool_segment_bytes) {
        errs.push(pos.diag(
            "spool_segment_bytes",
            format!("spool_segment_bytes: must be between {MIN_SEGMENT_BYTES} (1 MiB) and {MAX_SEGMENT_BYTES} (1 GiB)"),
        ));
    } else if max_body_bytes <= MAX_BODY_LIMIT && spool_segment_bytes < 2 * max_body_bytes {
        let key = if raw.spool_segment_bytes.is_some() {
            "spool_segment_bytes"
        } else {
            "max_body_bytes"
        };
        errs.push(pos.diag(
            key,
            format!("spool_segment_bytes ({spool_segment_bytes}) is less than twice max_body_bytes ({max_body_bytes}): a webhook of the largest size must fit in half a spool segment; raise spool_segment_bytes"),
        ));
    }

    let max_buffered_bytes = raw
        .max_buffered_bytes
        .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES.max(2 * max_body_bytes));
    if max_buffered_bytes < max_body_bytes {
        errs.push(pos.diag(
            "max_buffered_bytes",
            format!("max_buffered_bytes ({max_buffered_bytes}) is less than max_body_bytes ({max_body_bytes}): a webhook of the largest size could never be taken"),
        ));
    }
    let dedup_window = duration(
        &raw.dedup_window,
        "dedup_window",
        DEFAULT_DEDUP_WINDOW,
        pos,
        &mut errs,
    );
    let shutdown_grace = duration(
        &raw.shutdown_grace,
        "shutdown_grace",
        DEFAULT_SHUTDOWN_GRACE,
        pos,
        &mut errs,
    );

    let mut apps = Vec::new();
    let mut keys = HashSet::new();
    let listen_written = raw.listen.as_deref().is_some_and(|l| l.trim() != "off");
    match (raw.apps.is_empty(), raw.sources.is_empty(), listen.is_some()) {
        // Sources only: nothing could be verified on a webhook port, so there is none.
        (true, false, _) if listen_written => errs.push(pos.diag(
            "listen",
            "listen: a webhook listener needs apps: to verify what it receives; add apps:, or write listen: off to run on sources only",
        )),
        (true, false, _) => listen = None,
        (true, true, _) => errs.push(pos.diag(
            "apps",
            "no apps configured: add `apps: [{ api_key: ..., api_secret: ... }]` with your Stream app's key and secret, or every webhook is refused",
        )),
        (false, true, false) => errs.push(pos.diag(
            "listen",
            "listen is off and there are no sources: hookfan would receive nothing (add a source under sources:, or give listen an address)",
        )),
        _ => {}
    }
    if listen.is_none() && !raw.passthrough.is_empty() {
        errs.push(pos.diag(
            "passthrough",
            "passthrough: synchronous hooks arrive on the webhook listener, and there is none (listen: off, or no apps): Stream would send its messages unmoderated",
        ));
    }
    for (i, app) in raw.apps.into_iter().enumerate() {
        let at = format!("apps[{i}]");
        if app.api_key.trim().is_empty() {
            errs.push(pos.diag(&format!("{at}.api_key"), "app: api_key is empty"));
        } else if !keys.insert(app.api_key.clone()) {
            errs.push(pos.diag(
                &format!("{at}.api_key"),
                format!("app: api_key \"{}\" is listed twice", app.api_key),
            ));
        }
        if app.api_secret.is_empty() {
            errs.push(pos.diag(
                &format!("{at}.api_secret"),
                "app: api_secret is empty (is its environment variable set to an empty value?)",
            ));
        }
        apps.push(App::new(app.api_key, Secret::new(app.api_secret)));
    }

    let mut routes = Vec::new();
    let mut names = HashSet::new();
    if raw.routes.is_empty() {
        errs.push(pos.diag(
            "routes",
            "no routes configured: add at least one route, or every event is acknowledged and dropped",
        ));
    }
    for (i, r) in raw.routes.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let label = format!("route \"{}\"", r.name);
        check_name(&r.name, "route", &at, &mut names, pos, &mut errs);
        let filter = match EventFilter::new(&r.event_types) {
            Ok(filter) => filter,
            Err(bad) => {
                for (index, why) in bad {
                    errs.push(pos.diag(
                        &format!("{at}.event_types[{index}]"),
                        format!("{label}: {why}"),
                    ));
                }
                EventFilter::all()
            }
        };
        unknown_event_types(&r.event_types, &at, &label, pos, &mut warnings);
        let paths = match r.paths.as_deref().map(PathFilter::new) {
            None => PathFilter::all(),
            Some(Ok(paths)) => paths,
            Some(Err(bad)) => {
                for (index, why) in bad {
                    errs.push(pos.diag(&format!("{at}.paths[{index}]"), format!("{label}: {why}")));
                }
                PathFilter::all()
            }
        };
        let destination = if let Some(h) = r.http {
            let at = format!("{at}.http");
            let url = match reqwest::Url::parse(&h.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                Ok(_) => {
                    errs.push(pos.diag(&format!("{at}.url"), format!("{label}: http.url \"{}\" must be an http:// or https:// URL with a host", h.url)));
                    None
                }
                Err(e) => {
                    errs.push(pos.diag(
                        &format!("{at}.url"),
                        format!("{label}: http.url \"{}\" is not a URL: {e}", h.url),
                    ));
                    None
                }
            };
            let timeout = duration(
                &h.timeout,
                &format!("{at}.timeout"),
                DEFAULT_HTTP_TIMEOUT,
                pos,
                &mut errs,
            );
            let concurrency = h.concurrency.unwrap_or(DEFAULT_HTTP_CONCURRENCY);
            if !(1..=1024).contains(&concurrency) {
                errs.push(pos.diag(
                    &format!("{at}.concurrency"),
                    format!("{label}: http.concurrency must be between 1 and 1024"),
                ));
            }
            let retry = retry_policy(&h.retry, &format!("{at}.retry"), &label, pos, &mut errs);
            let api_secret = match h.api_secret {
                Some(s) if s.is_empty() => {
                    errs.push(pos.diag(&format!("{at}.api_secret"), format!("{label}: http.api_secret is empty; remove it to forward Stream's own signature")));
                    None
                }
                other => other.map(Secret::new),
            };
            url.map(|url| {
                Destination::Http(HttpDestination {
                    url,
                    timeout,
                    concurrency,
                    retry,
                    api_secret,
                    forward_path: h.forward_path.unwrap_or(false),
                })
            })
        } else if let Some(f) = r.file {
            let retry = retry_policy(
                &f.retry,
                &format!("{at}.file.retry"),
                &label,
                pos,
                &mut errs,
            );
            if f.path.is_empty() {
                errs.push(pos.diag(
                    &format!("{at}.file.path"),
                    format!("{label}: file.path is empty"),
                ));
            }
            Some(Destination::File(FileDestination {
                path: PathBuf::from(f.path),
                retry,
            }))
        } else if let Some(a) = r.sqs {
            aws_destination(a, "sqs", &format!("{at}.sqs"), &label, pos, &mut errs)
                .map(Destination::Sqs)
        } else if let Some(a) = r.sns {
            aws_destination(a, "sns", &format!("{at}.sns"), &label, pos, &mut errs)
                .map(Destination::Sns)
        } else {
            None // the lint pass reported the missing destination
        };
        if let Some(destination) = destination {
            routes.push(Route {
                name: r.name,
                enabled: r.enabled.unwrap_or(true),
                filter,
                paths,
                destination,
            });
        }
    }

    let passthrough = passthrough::validate(raw.passthrough, pos, &mut errs);
    let sources = sources::validate(raw.sources, pos, &mut errs);
    let dedup = dedup::validate(raw.dedup, pos, &mut errs);

    if !errs.is_empty() {
        errs.sort_by_key(|d| (d.line, d.column));
        return Err(errs);
    }
    warnings.sort_by_key(|d| (d.line, d.column));
    Ok(Config {
        listen,
        tls,
        allowed_ips,
        max_event_age,
        max_connections,
        request_timeout,
        max_buffered_bytes: max_buffered_bytes as usize,
        admin_listen,
        admin_token,
        data_dir,
        spool_segment_bytes,
        max_body_bytes: max_body_bytes as usize,
        dedup_window,
        shutdown_grace,
        delivery_nice,
        apps,
        routes,
        passthrough,
        sources,
        dedup,
        warnings,
    })
}

/// A warning for each `event_types` entry without `*` that names no event type Stream
/// documents, with the closest ones it does.
fn unknown_event_types(
    entries: &[String],
    at: &str,
    label: &str,
    pos: &Positions,
    warnings: &mut Vec<Diagnostic>,
) {
    use crate::stream::event_types;
    for (index, entry) in entries.iter().enumerate() {
        if entry.contains('*') || entry.trim().is_empty() || event_types::is_known(entry) {
            continue;
        }
        let closest = event_types::closest(entry, 3);
        let hint = if closest.is_empty() {
            String::new()
        } else {
            format!("; did you mean {}?", closest.join(", "))
        };
        warnings.push(pos.diag(
            &format!("{at}.event_types[{index}]"),
            format!("{label}: \"{entry}\" is not an event type Stream documents (it matches only a type of exactly that name){hint}"),
        ));
    }
}

/// A route's or source's name: letters, digits, `-`, `_` and `.`, unique among its `kind`.
fn check_name(
    name: &str,
    kind: &str,
    at: &str,
    names: &mut HashSet<String>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) {
    let label = format!("{kind} \"{name}\"");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errs.push(pos.diag(
            &format!("{at}.name"),
            format!("{label}: a name is letters, digits, '-', '_' and '.' only"),
        ));
    } else if !names.insert(name.to_string()) {
        errs.push(pos.diag(
            &format!("{at}.name"),
            format!("{label}: the name is used by another {kind}; names must be unique"),
        ));
    }
}

/// An address (a network of one) or a CIDR network, normalised to its network address.
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
}

fn duration(
    text: &Option<String>,
    path: &str,
    default: Duration,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d > MAX_DURATION => {
            let key = path.rsplit('.').next().unwrap_or(path);
            errs.push(pos.diag(
                path,
                format!("{key}: \"{text}\" is longer than hookfan supports (at most 3650d)"),
            ));
            default
        }
        Ok(d) => d,
        Err(e) => {
            let key = path.rsplit('.').next().unwrap_or(path);
            errs.push(pos.diag(
                path,
                format!("{key}: \"{text}\" is not a duration ({e}); write it like 500ms, 6s, 10m or 24h"),
            ));
            default
        }
    }
}

fn retry_policy(
    raw: &Option<RawRetry>,
    path: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> RetryPolicy {
    let Some(raw) = raw else {
        return RetryPolicy::DEFAULT;
    };
    let d = RetryPolicy::DEFAULT;
    let before = errs.len();
    let max_age = duration(
        &raw.max_age,
        &format!("{path}.max_age"),
        d.max_age,
        pos,
        errs,
    );
    let initial = duration(
        &raw.initial_backoff,
        &format!("{path}.initial_backoff"),
        d.initial_backoff,
        pos,
        errs,
    );
    let max = duration(
        &raw.max_backoff,
        &format!("{path}.max_backoff"),
        d.max_backoff,
        pos,
        errs,
    );
    if errs.len() > before {
        return d;
    }
    RetryPolicy::try_new(max_age, initial, max).unwrap_or_else(|why| {
        let at = format!("{path}.{}", why.field());
        errs.push(pos.diag(&at, format!("{label}: retry: {why}")));
        d
    })
}

fn aws_destination(
    raw: RawAws,
    kind: &str,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<AwsDestination> {
    let before = errs.len();
    let (target_key, target) = match kind {
        "sqs" => ("queue_url", raw.queue_url),
        _ => ("topic_arn", raw.topic_arn),
    };
    let Some(target) = target.filter(|t| !t.trim().is_empty()) else {
        errs.push(pos.diag(
            &format!("{at}#key"),
            format!("{label}: {kind}.{target_key} is missing"),
        ));
        return None;
    };
    let target_at = format!("{at}.{target_key}");
    let fifo = if kind == "sqs" {
        match reqwest::Url::parse(&target) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                url.path().trim_end_matches('/').ends_with(".fifo")
            }
            _ => {
                errs.push(pos.diag(&target_at, format!(
                    "{label}: sqs.queue_url \"{target}\" is not a queue URL (like https://sqs.us-east-1.amazonaws.com/123456789012/stream-events)"
                )));
                false
            }
        }
    } else {
        let parts: Vec<&str> = target.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
            errs.push(pos.diag(&target_at, format!(
                "{label}: sns.topic_arn \"{target}\" is not a topic ARN (like arn:aws:sns:us-east-1:123456789012:moderation)"
            )));
        }
        target.ends_with(".fifo")
    };
    if let Some(endpoint) = &raw.endpoint_url {
        if !reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            errs.push(pos.diag(
                &format!("{at}.endpoint_url"),
                format!("{label}: {kind}.endpoint_url \"{endpoint}\" is not an http(s) URL"),
            ));
        }
    }
    let message_group_id = match &raw.message_group_id {
        Some(source) => match crate::template::Template::parse(source) {
            Ok(t) => Some(t),
            Err(why) => {
                errs.push(pos.diag(
                    &format!("{at}.message_group_id"),
                    format!("{label}: {kind}.message_group_id: {why}"),
                ));
                None
            }
        },
        None if fifo => {
            errs.push(pos.diag(&target_at, format!(
                "{label}: {target} is a FIFO {}: set {kind}.message_group_id, for example \"{{cid}}\" to keep each channel in order",
                if kind == "sqs" { "queue" } else { "topic" }
            )));
            None
        }
        None => None,
    };
    if kind == "sns" && !fifo && raw.message_group_id.is_some() {
        errs.push(pos.diag(
            &format!("{at}.message_group_id"),
            format!("{label}: sns.message_group_id only applies to FIFO topics (.fifo); remove it"),
        ));
    }
    let body = match raw.body.as_deref() {
        None | Some("raw") => BodyFormat::Raw,
        Some("stream_compressed") => BodyFormat::StreamCompressed,
        Some(other) => {
            errs.push(pos.diag(
                &format!("{at}.body"),
                format!("{label}: {kind}.body \"{other}\" is not one of raw, stream_compressed"),
            ));
            BodyFormat::Raw
        }
    };
    let concurrency = raw
        .concurrency
        .unwrap_or(if fifo { 1 } else { DEFAULT_AWS_CONCURRENCY });
    if !(1..=1024).contains(&concurrency) {
        errs.push(pos.diag(
            &format!("{at}.concurrency"),
            format!("{label}: {kind}.concurrency must be between 1 and 1024"),
        ));
    } else if fifo && concurrency != 1 {
        errs.push(pos.diag(
            &format!("{at}.concurrency"),
            format!("{label}: a FIFO {kind} route delivers one batch at a time to keep order; remove concurrency"),
        ));
    }
    for (key, value) in [("region", &raw.region), ("role_arn", &raw.role_arn)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errs.push(pos.diag(
                &format!("{at}.{key}"),
                format!("{label}: {kind}.{key} is empty; remove it to use the AWS environment's"),
            ));
        }
    }
    let retry = retry_policy(&raw.retry, &format!("{at}.retry"), label, pos, errs);
    if errs.len() > before {
        return None;
    }
    Some(AwsDestination {
        target,
        region: raw.region,
        endpoint_url: raw.endpoint_url,
        role_arn: raw.role_arn,
        message_group_id,
        body,
        fifo,
        concurrency,
        retry,
    })
}
