//! Stage 1 of reading routes.yaml: the file's shape, as serde types (their doc comments are
//! also the JSON Schema's descriptions, `hookfan schema`), and the keys each block takes.

use serde::Deserialize;

#[allow(clippy::wildcard_imports)]
use super::*;

/// routes.yaml: which Stream webhooks hookfan accepts and where each event goes. `${VAR}`
/// and `${VAR:-default}` are replaced from the environment before the file is read.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "hookfan routes.yaml", rename = "RoutesYaml")]
pub(super) struct RawConfig {
    /// Webhook ingress address (IP:PORT), or `off` (sources only); point Stream's webhook URL
    /// here.
    #[schemars(extend("default" = DEFAULT_LISTEN))]
    pub(super) listen: Option<String>,
    /// Serve the webhook port over HTTPS with these PEM files (renewals are picked up within
    /// 1 s); plain HTTP without.
    pub(super) tls: Option<RawTls>,
    /// Only these senders (IP addresses or CIDR networks) may post webhooks; others get 403.
    pub(super) allowed_ips: Option<Vec<String>>,
    /// Refuse (401) signed events whose created_at is older than this (at least 1m); a replay
    /// defence. Off by default.
    #[schemars(extend("pattern" = schema::DURATION))]
    pub(super) max_event_age: Option<String>,
    /// Open webhook connections at most; more wait in the kernel's accept queue.
    #[schemars(range(min = 1, max = 1_000_000), extend("default" = DEFAULT_MAX_CONNECTIONS))]
    pub(super) max_connections: Option<usize>,
    /// A request's headers, then its body, must each arrive within this (else 408).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    pub(super) request_timeout: Option<String>,
    /// Request bodies held in memory at once, across requests; beyond it, 503 at once.
    /// Default: 64 MiB, or twice max_body_bytes when that is more.
    #[schemars(range(min = 1), extend("default" = DEFAULT_MAX_BUFFERED_BYTES))]
    pub(super) max_buffered_bytes: Option<u64>,
    /// Admin listener (/healthz, /readyz, /metrics, /api) as IP:PORT, or `off`.
    #[schemars(extend("default" = DEFAULT_ADMIN_LISTEN))]
    pub(super) admin_listen: Option<String>,
    /// When set, the admin API (/api/...) requires it as a bearer token.
    pub(super) admin_token: Option<String>,
    /// Directory of the durable spool (its log is in `<data_dir>/spool/`).
    #[schemars(extend("default" = DEFAULT_DATA_DIR))]
    pub(super) data_dir: Option<String>,
    /// Size of each spool segment file, in bytes (created zero-filled ahead of need). The
    /// spool's disk use is a few segments plus the backlog; a webhook must fit in half of
    /// one (at least twice max_body_bytes).
    #[schemars(
        range(min = MIN_SEGMENT_BYTES, max = MAX_SEGMENT_BYTES),
        extend("default" = DEFAULT_SPOOL_SEGMENT_BYTES)
    )]
    pub(super) spool_segment_bytes: Option<u64>,
    /// Largest accepted body in bytes, checked before and after gzip decompression.
    #[schemars(range(min = 1, max = MAX_BODY_LIMIT), extend("default" = DEFAULT_MAX_BODY_BYTES))]
    pub(super) max_body_bytes: Option<u64>,
    /// How long X-Webhook-Id values are remembered, to drop Stream's retries.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10m"))]
    pub(super) dedup_window: Option<String>,
    /// How long in-flight deliveries may finish after SIGTERM before hookfan exits.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    pub(super) shutdown_grace: Option<String>,
    /// How many nice steps below ingest the delivery threads run (0: the same priority).
    #[schemars(range(min = 0, max = 19), extend("default" = DEFAULT_DELIVERY_NICE))]
    pub(super) delivery_nice: Option<i64>,
    /// Stream apps whose webhooks are accepted (at least one, unless the config has sources
    /// and no webhook listener); X-Api-Key picks the secret.
    #[serde(default)]
    pub(super) apps: Vec<RawApp>,
    /// Routes (at least one): which event types go to which destination.
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
    /// Stream's synchronous hooks (Before-Message-Send, Custom Commands): requests on these
    /// exact paths are verified, then answered by their handler; never stored.
    #[serde(default)]
    pub(super) passthrough: Vec<RawPassthrough>,
    /// Queues Stream delivers to natively (SQS), consumed besides the webhook listener.
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
    /// Where webhook ids are remembered: the spool (one replica) or Redis (shared by
    /// replicas behind a load balancer).
    pub(super) dedup: Option<RawDedup>,
    /// OpenTelemetry traces over OTLP/HTTP: on with this block (or the standard OTEL_*
    /// environment); OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none still turn them off.
    pub(super) tracing: Option<RawTracing>,
}

/// OpenTelemetry traces.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tracing")]
pub(super) struct RawTracing {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), like
    /// OTEL_EXPORTER_OTLP_ENDPOINT, which it overrides. Default: the OTEL_* environment's,
    /// else http://localhost:4318.
    pub(super) endpoint: Option<String>,
    /// The share of new traces sampled, from 0 to 1; a webhook whose traceparent says
    /// sampled (or not) is followed as its sender decided. Default: OTEL_TRACES_SAMPLER's,
    /// else 1 (every trace).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub(super) sample_ratio: Option<f64>,
    /// Finished spans waiting for export at most; more are dropped and counted. Default:
    /// OTEL_BSP_MAX_QUEUE_SIZE, else 2048.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub(super) queue_size: Option<u64>,
}

/// Dedup backend.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dedup")]
pub(super) struct RawDedup {
    /// `spool` (default: this replica's spool) or `redis` (shared by replicas).
    #[schemars(extend("enum" = ["spool", "redis"], "default" = "spool"))]
    pub(super) backend: Option<String>,
    /// One Redis server: redis://[user:password@]host[:port][/db], or rediss:// for TLS.
    /// Exactly one of url, cluster and sentinel.
    pub(super) url: Option<String>,
    /// A Redis Cluster, instead of url.
    pub(super) cluster: Option<RawRedisCluster>,
    /// A master found through Redis Sentinel (and followed through failovers), instead of
    /// url.
    pub(super) sentinel: Option<RawRedisSentinel>,
    /// Certificates for rediss:// URLs: a private CA, and a client certificate for mutual
    /// TLS. Without it, the system's roots are trusted (SSL_CERT_FILE is honoured).
    pub(super) tls: Option<RawRedisTls>,
    /// Prefix of the keys hookfan writes.
    #[schemars(extend("default" = dedup::DEFAULT_KEY_PREFIX))]
    pub(super) key_prefix: Option<String>,
    /// Per call to Redis; slower counts as unavailable (local dedup meanwhile).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "250ms"))]
    pub(super) timeout: Option<String>,
    /// How long a claim of a webhook being stored lasts (6s to 60s).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "10s"))]
    pub(super) pending_ttl: Option<String>,
}

/// A Redis Cluster: the client learns every node and slot from any of these.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisCluster")]
pub(super) struct RawRedisCluster {
    /// Seed nodes (one is enough, more survive one being down), each
    /// redis://[user:password@]host:port or rediss://; all with the same user, password and
    /// scheme.
    pub(super) nodes: Vec<String>,
}

/// Redis Sentinel: the sentinels name the master, and name the new one after a failover.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisSentinel")]
pub(super) struct RawRedisSentinel {
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`).
    pub(super) master: String,
    /// The sentinels, each redis://[user:password@]host:port (the sentinels' own
    /// credentials, usually none) or rediss:// for TLS to the sentinels and the master.
    pub(super) nodes: Vec<String>,
    /// User on the master (and its replicas), if its ACL needs one.
    pub(super) username: Option<String>,
    /// Password on the master (and its replicas); usually `${REDIS_PASSWORD}`.
    pub(super) password: Option<String>,
    /// Database number on the master.
    #[schemars(range(min = 0), extend("default" = 0))]
    pub(super) db: Option<i64>,
}

/// PEM files for rediss://.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RedisTls")]
pub(super) struct RawRedisTls {
    /// CA certificate(s) that signed the server's certificate, trusted instead of the
    /// system's roots.
    pub(super) ca_file: Option<String>,
    /// Client certificate chain for mutual TLS (with key_file).
    pub(super) cert_file: Option<String>,
    /// The client certificate's private key (with cert_file).
    pub(super) key_file: Option<String>,
}

/// A queue Stream delivers to natively.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Source")]
pub(super) struct RawSource {
    /// Unique among sources; its events are routed as if posted to /sources/<name>.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub(super) name: String,
    /// The SQS queue to receive from.
    pub(super) sqs: RawSqsSource,
}

/// An SQS queue, received from with long polling; a message is deleted once stored.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SqsSource")]
pub(super) struct RawSqsSource {
    /// The queue's URL.
    pub(super) queue_url: String,
    /// Overrides the region of the AWS environment.
    pub(super) region: Option<String>,
    /// Overrides the endpoint (LocalStack, moto, ...).
    pub(super) endpoint_url: Option<String>,
    /// Assume this role to receive.
    pub(super) role_arn: Option<String>,
    /// Receive loops (each asks for up to 10 messages).
    #[schemars(range(min = 1, max = 64), extend("default" = sources::DEFAULT_CONCURRENCY))]
    pub(super) concurrency: Option<usize>,
    /// Long polling: how long one receive waits (whole seconds, 0s to 20s).
    #[schemars(extend("pattern" = schema::DURATION, "default" = "20s"))]
    pub(super) wait_time: Option<String>,
    /// How long a received message stays invisible to other consumers; default: the queue's.
    #[schemars(extend("pattern" = schema::DURATION))]
    pub(super) visibility_timeout: Option<String>,
}

/// A synchronous hook's exact path and its handler.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Passthrough")]
pub(super) struct RawPassthrough {
    /// The exact request path on the webhook listener, like /stream/before-message-send.
    #[schemars(regex(pattern = r"^/[^?#*\s]*$"))]
    pub(super) path: String,
    /// The handler's http:// or https:// URL; the request's query is added to its own.
    pub(super) url: String,
    /// The handler must answer within this (else 504). Default: Stream's deadline for the
    /// hook less 100 ms (1.4 s for Before-Message-Send, 900 ms for Custom Commands).
    #[schemars(extend("pattern" = schema::DURATION))]
    pub(super) timeout: Option<String>,
    /// Requests in flight to the handler at most; more are answered 503 at once.
    #[schemars(range(min = 1, max = 4096), extend("default" = DEFAULT_PASSTHROUGH_CONCURRENCY))]
    pub(super) concurrency: Option<usize>,
}

/// PEM files of the webhook listener's certificate chain and private key.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tls")]
pub(super) struct RawTls {
    /// PEM certificate chain, leaf first.
    pub(super) cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(super) key: String,
}

/// A Stream app whose webhooks are accepted.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "App")]
pub(super) struct RawApp {
    /// The app's API key (Stream sends it as X-Api-Key).
    pub(super) api_key: String,
    /// The app's API secret, which signs its webhooks; usually `${STREAM_API_SECRET}`.
    pub(super) api_secret: String,
}

/// A route: the event types it takes and exactly one destination (sqs, sns, http or file).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub(super) struct RawRoute {
    /// Unique; letters, digits, '-', '_' and '.'. Also the key of the route's queue in the
    /// spool: renaming a route starts a new queue.
    #[schemars(extend("pattern" = "^[A-Za-z0-9._-]+$"))]
    pub(super) name: String,
    /// Event types this route takes; `[]` takes every event, including types Stream adds
    /// later. An entry may be a glob where `*` matches any run of characters (`message.*`).
    pub(super) event_types: Vec<String>,
    /// Only webhooks posted to these request paths (globs as in event_types, like
    /// "/pending/*"); absent: every path.
    pub(super) paths: Option<Vec<String>>,
    /// `false` keeps the route (and the events it holds) but delivers nothing.
    #[schemars(extend("default" = true))]
    pub(super) enabled: Option<bool>,
    /// Conditions on the event's JSON body, every one of which must hold: a dotted field path
    /// (`channel_type`, `message.user.id`; `custom["a.b"]` for a key holding a dot) and the
    /// value wanted (a string, with `*` globs; a number, boolean or null), a list of them
    /// (any of), `{exists: true|false}`, or numeric comparisons (`{gte: 1000}`).
    #[serde(rename = "match", default, deserialize_with = "present")]
    pub(super) match_: Option<Option<RawConditions>>,
    /// Conditions as in `match`; an event for which any of them holds is not taken.
    #[serde(default, deserialize_with = "present")]
    pub(super) not: Option<Option<RawConditions>>,
    /// POST each event to an HTTP handler, with Stream's headers and signature.
    pub(super) http: Option<RawHttp>,
    /// Append each event as one JSON line to a file.
    pub(super) file: Option<RawFile>,
    /// Send each event to an SQS queue.
    pub(super) sqs: Option<RawAws>,
    /// Publish each event to an SNS topic.
    pub(super) sns: Option<RawAws>,
}

/// A key that is present, even with an empty (null) value: `Some(None)` then, where a plain
/// `Option` would read it as absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A `match:` or `not:` block: field paths and what they must hold, in the file's order.
#[derive(Debug, Default)]
pub(super) struct RawConditions(pub(super) Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for RawConditions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = RawConditions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of field paths to the values they must hold")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawConditions, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawConditions(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

impl schemars::JsonSchema for RawConditions {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Conditions".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let scalar = serde_json::json!({ "type": ["string", "number", "boolean", "null"] });
        let number = serde_json::json!({ "type": "number" });
        schemars::json_schema!({
            "description": "Field path (dotted; [\"a.b\"] for a key holding a dot) to the value it must hold.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "anyOf": [
                    scalar,
                    { "type": "array", "items": scalar, "minItems": 1 },
                    {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": false,
                        "properties": {
                            "exists": { "type": "boolean" },
                            "eq": number, "gte": number, "gt": number, "lte": number, "lt": number
                        }
                    }
                ]
            }
        })
    }
}

/// `sqs:` and `sns:` share one shape; `queue_url` belongs to sqs and `topic_arn` to sns (the
/// lint pass checks which keys each accepts; the schema splits them into `Sqs` and `Sns`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Aws")]
pub(super) struct RawAws {
    /// The queue URL, like https://sqs.us-east-1.amazonaws.com/123456789012/stream-events
    /// (a name ending in .fifo makes the route ordered).
    pub(super) queue_url: Option<String>,
    /// The topic ARN, like arn:aws:sns:us-east-1:123456789012:moderation (a name ending in
    /// .fifo makes the route ordered).
    pub(super) topic_arn: Option<String>,
    /// Overrides the region of the AWS environment.
    pub(super) region: Option<String>,
    /// Overrides the AWS endpoint (LocalStack, moto, ...).
    pub(super) endpoint_url: Option<String>,
    /// Assume this IAM role for this route's requests.
    pub(super) role_arn: Option<String>,
    /// MessageGroupId template over the event JSON, like "{cid}"; required for FIFO targets
    /// (and only allowed on FIFO topics).
    pub(super) message_group_id: Option<String>,
    /// The message body: the event JSON as Stream sent it (`raw`), or base64(gzip(json))
    /// (`stream_compressed`, Stream's compressed SQS/SNS format).
    #[schemars(extend("enum" = ["raw", "stream_compressed", null], "default" = "raw"))]
    pub(super) body: Option<String>,
    /// Batches in flight for this route (FIFO targets: always 1).
    #[schemars(range(min = 1, max = 1024), extend("default" = DEFAULT_AWS_CONCURRENCY))]
    pub(super) concurrency: Option<usize>,
    /// How long and how often failed deliveries are retried.
    pub(super) retry: Option<RawRetry>,
    /// Paces deliveries: at most this many events a second, minute or hour on average, like
    /// 50/s, 300/m or 1000/h (a retry counts again). Absent: as fast as the destination takes.
    #[schemars(extend("pattern" = "^\\s*[0-9]+\\s*/\\s*[smh]\\s*$"))]
    pub(super) rate_limit: Option<String>,
    /// With rate_limit: how many events may go at once after a quiet spell. Default: one
    /// second's worth of rate_limit (at least 1).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub(super) burst: Option<u64>,
}

/// An HTTP handler.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Http")]
pub(super) struct RawHttp {
    /// The handler's http:// or https:// URL.
    pub(super) url: String,
    /// Per attempt.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "6s"))]
    pub(super) timeout: Option<String>,
    /// Deliveries in flight for this route.
    #[schemars(range(min = 1, max = 1024), extend("default" = DEFAULT_HTTP_CONCURRENCY))]
    pub(super) concurrency: Option<usize>,
    /// How long and how often failed deliveries are retried.
    pub(super) retry: Option<RawRetry>,
    /// Re-sign deliveries with this secret instead of forwarding Stream's signature.
    pub(super) api_secret: Option<String>,
    /// Append the path and query each webhook was posted to onto url's path.
    #[schemars(extend("default" = false))]
    pub(super) forward_path: Option<bool>,
    /// Paces deliveries: at most this many events a second, minute or hour on average, like
    /// 50/s, 300/m or 1000/h (a retry counts again). Absent: as fast as the destination takes.
    #[schemars(extend("pattern" = "^\\s*[0-9]+\\s*/\\s*[smh]\\s*$"))]
    pub(super) rate_limit: Option<String>,
    /// With rate_limit: how many events may go at once after a quiet spell. Default: one
    /// second's worth of rate_limit (at least 1).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub(super) burst: Option<u64>,
}

/// A JSON-lines file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "File")]
pub(super) struct RawFile {
    /// The file to append to (fsynced before an event counts as delivered).
    pub(super) path: String,
    /// How long and how often failed deliveries are retried.
    pub(super) retry: Option<RawRetry>,
    /// Paces deliveries: at most this many events a second, minute or hour on average, like
    /// 50/s, 300/m or 1000/h (a retry counts again). Absent: as fast as the destination takes.
    #[schemars(extend("pattern" = "^\\s*[0-9]+\\s*/\\s*[smh]\\s*$"))]
    pub(super) rate_limit: Option<String>,
    /// With rate_limit: how many events may go at once after a quiet spell. Default: one
    /// second's worth of rate_limit (at least 1).
    #[schemars(range(min = 1, max = 1_000_000))]
    pub(super) burst: Option<u64>,
}

/// Exponential backoff with full jitter; initial_backoff must not exceed max_backoff.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Retry")]
pub(super) struct RawRetry {
    /// An event still failing this long after it was received goes to the dead letters.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "24h"))]
    pub(super) max_age: Option<String>,
    /// The first retry's backoff.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "1s"))]
    pub(super) initial_backoff: Option<String>,
    /// The longest backoff between two attempts.
    #[schemars(extend("pattern" = schema::DURATION, "default" = "5m"))]
    pub(super) max_backoff: Option<String>,
}

/// The keys each level accepts, for the lint pass that reports every unknown key at once.
/// Kept beside the serde types above; `every_documented_key_is_accepted` checks they agree.
pub(super) const TOP_KEYS: &[&str] = &[
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
    "tracing",
];
pub(super) const TRACING_KEYS: &[&str] = &["endpoint", "sample_ratio", "queue_size"];
pub(super) const DEDUP_KEYS: &[&str] = &[
    "backend",
    "url",
    "cluster",
    "sentinel",
    "tls",
    "key_prefix",
    "timeout",
    "pending_ttl",
];
pub(super) const DEDUP_CLUSTER_KEYS: &[&str] = &["nodes"];
pub(super) const DEDUP_SENTINEL_KEYS: &[&str] = &["master", "nodes", "username", "password", "db"];
pub(super) const DEDUP_TLS_KEYS: &[&str] = &["ca_file", "cert_file", "key_file"];
pub(super) const SOURCE_KEYS: &[&str] = &["name", "sqs"];
pub(super) const SQS_SOURCE_KEYS: &[&str] = &[
    "queue_url",
    "region",
    "endpoint_url",
    "role_arn",
    "concurrency",
    "wait_time",
    "visibility_timeout",
];
pub(super) const PASSTHROUGH_KEYS: &[&str] = &["path", "url", "timeout", "concurrency"];
pub(super) const APP_KEYS: &[&str] = &["api_key", "api_secret"];
pub(super) const TLS_KEYS: &[&str] = &["cert", "key"];
pub(super) const ROUTE_KEYS: &[&str] = &["name", "event_types", "paths", "enabled", "match", "not"];
/// The destination keys of a route, one of which it must have.
pub(super) const DESTINATIONS: [&str; 4] = [
    DestinationKind::ALL[0].key(),
    DestinationKind::ALL[1].key(),
    DestinationKind::ALL[2].key(),
    DestinationKind::ALL[3].key(),
];
pub(super) const HTTP_KEYS: &[&str] = &[
    "url",
    "timeout",
    "concurrency",
    "retry",
    "api_secret",
    "forward_path",
    "rate_limit",
    "burst",
];
pub(super) const FILE_KEYS: &[&str] = &["path", "retry", "rate_limit", "burst"];
pub(super) const RETRY_KEYS: &[&str] = &["max_age", "initial_backoff", "max_backoff"];
pub(super) const SQS_KEYS: &[&str] = &[
    "queue_url",
    "region",
    "endpoint_url",
    "role_arn",
    "message_group_id",
    "body",
    "concurrency",
    "retry",
    "rate_limit",
    "burst",
];
pub(super) const SNS_KEYS: &[&str] = &[
    "topic_arn",
    "region",
    "endpoint_url",
    "role_arn",
    "message_group_id",
    "body",
    "concurrency",
    "retry",
    "rate_limit",
    "burst",
];
