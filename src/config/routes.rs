//! `routes:`: each route's name, filters and destination (`http`, `file`, `sqs`, `sns`), with
//! its retry policy.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::raw::{RawAws, RawConditions, RawFile, RawHttp, RawRetry, RawRoute};
use super::*;
use crate::route::{
    Block, Condition, ConditionErrorAt, ConditionErrorKind, ContentFilter, EventFilter, PathFilter,
};

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
    /// What it asks of the body (`match:`, `not:`); nothing when absent.
    pub content: ContentFilter,
    pub destination: Destination,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    Http(HttpDestination),
    File(FileDestination),
    Sqs(AwsDestination),
    Sns(AwsDestination),
}

/// Which kind of destination a route has: its key in routes.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Http,
    File,
    Sqs,
    Sns,
}

impl DestinationKind {
    /// Every kind, in the order routes.yaml's documentation lists them.
    pub const ALL: [DestinationKind; 4] = [
        DestinationKind::Http,
        DestinationKind::File,
        DestinationKind::Sqs,
        DestinationKind::Sns,
    ];

    /// Its key in routes.yaml (`http`, `file`, `sqs`, `sns`), also its name in the admin
    /// API, `status` and logs.
    pub const fn key(self) -> &'static str {
        match self {
            DestinationKind::Http => "http",
            DestinationKind::File => "file",
            DestinationKind::Sqs => "sqs",
            DestinationKind::Sns => "sns",
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl serde::Serialize for DestinationKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl Destination {
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Http(_) => DestinationKind::Http,
            Destination::File(_) => DestinationKind::File,
            Destination::Sqs(_) => DestinationKind::Sqs,
            Destination::Sns(_) => DestinationKind::Sns,
        }
    }

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

    /// Its `rate_limit:` (with `burst:`), when deliveries are paced.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            Destination::Http(h) => h.rate_limit,
            Destination::File(f) => f.rate_limit,
            Destination::Sqs(a) | Destination::Sns(a) => a.rate_limit,
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
    pub rate_limit: Option<RateLimit>,
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
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileDestination {
    pub path: PathBuf,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimit>,
}

/// A destination's `rate_limit:` (with its `burst:`): deliveries are paced to `per_second`
/// events a second on average, at most `burst` at once after a quiet spell
/// ([`crate::deliver::pace`]). Built only by [`RateLimit::parse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
    /// As written: `amount` per `unit` (`s`, `m`, `h`).
    amount: u32,
    unit: char,
}

impl RateLimit {
    /// The most events a rate may allow per unit, and a burst may hold.
    pub const MAX: u32 = 1_000_000;

    /// Reads `50/s`, `300/m` or `1000/h`, and `burst` (default: one second's worth, at least
    /// one event).
    pub fn parse(text: &str, burst: Option<u64>) -> Result<RateLimit, String> {
        let form = || {
            format!("rate_limit \"{text}\" is not a rate: write events per second, minute or hour, like 50/s, 300/m or 1000/h")
        };
        let (amount, unit) = text.trim().split_once('/').ok_or_else(form)?;
        let amount: u32 = amount.trim().parse().map_err(|_| form())?;
        let (unit, seconds) = match unit.trim() {
            "s" => ('s', 1.0),
            "m" => ('m', 60.0),
            "h" => ('h', 3600.0),
            _ => return Err(form()),
        };
        if amount == 0 || amount > Self::MAX {
            return Err(format!(
                "rate_limit \"{text}\" must allow 1 to {} events per {unit}",
                Self::MAX
            ));
        }
        let per_second = f64::from(amount) / seconds;
        let burst = match burst {
            None => (per_second.ceil() as u32).max(1),
            Some(b) if (1..=u64::from(Self::MAX)).contains(&b) => b as u32,
            Some(b) => return Err(format!("burst {b} must be 1 to {} events", Self::MAX)),
        };
        Ok(RateLimit {
            per_second,
            burst,
            amount,
            unit,
        })
    }

    /// As `status` and the admin API show it: `50/s, burst 50`.
    pub fn describe(&self) -> String {
        format!("{}/{}, burst {}", self.amount, self.unit, self.burst)
    }
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

pub(super) fn validate(
    raw: Vec<RawRoute>,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    // Each file route's file, and the route that writes it: a file has one writer, so that
    // a batch that failed is cut back off without touching another route's lines.
    let mut files: HashMap<PathBuf, String> = HashMap::new();
    if raw.is_empty() {
        errs.push(pos.missing(
            "routes",
            "no routes configured: add at least one route, or every event is acknowledged and dropped",
        ));
    }
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let label = format!("route \"{}\"", r.name);
        check_name(&r.name, "route", &at, &mut names, pos, errs);
        let filter = match EventFilter::new(&r.event_types) {
            Ok(filter) => filter,
            Err(bad) => {
                for (index, why) in bad {
                    errs.push(pos.invalid(
                        &format!("{at}.event_types[{index}]"),
                        format!("{label}: {why}"),
                    ));
                }
                EventFilter::all()
            }
        };
        unknown_event_types(&r.event_types, &at, &label, pos, warnings);
        let paths = match r.paths.as_deref().map(PathFilter::new) {
            None => PathFilter::all(),
            Some(Ok(paths)) => paths,
            Some(Err(bad)) => {
                for (index, why) in bad {
                    errs.push(
                        pos.invalid(&format!("{at}.paths[{index}]"), format!("{label}: {why}")),
                    );
                }
                PathFilter::all()
            }
        };
        let content = ContentFilter::new(
            conditions(r.match_, Block::Match, &at, &label, pos, errs),
            conditions(r.not, Block::Not, &at, &label, pos, errs),
        );
        let destination = if let Some(h) = r.http {
            http(h, &at, &label, pos, errs)
        } else if let Some(f) = r.file {
            let written = file(f, &at, &label, pos, errs);
            if let Some(Destination::File(d)) = &written {
                if let Some(other) = files.insert(d.path.clone(), r.name.clone()) {
                    errs.push(pos.not_unique(
                        &format!("{at}.file.path"),
                        format!("{label}: file.path \"{}\" is written by route \"{other}\" too; give each route its own file, or one route the event types of both", d.path.display()),
                    ));
                }
            }
            written
        } else if let Some(a) = r.sqs {
            aws(
                a,
                DestinationKind::Sqs,
                &format!("{at}.sqs"),
                &label,
                pos,
                errs,
            )
            .map(Destination::Sqs)
        } else if let Some(a) = r.sns {
            aws(
                a,
                DestinationKind::Sns,
                &format!("{at}.sns"),
                &label,
                pos,
                errs,
            )
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
                content,
                destination,
            });
        }
    }

    routes
}

/// A route's `match:` or `not:` block, each malformed entry reported where it stands.
fn conditions(
    raw: Option<Option<RawConditions>>,
    block: Block,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Vec<Condition> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let at = format!("{at}.{}", block.key());
    // `match:` with nothing under it (or only comments) is null: as empty as `{}`.
    let RawConditions(entries) = raw.unwrap_or_default();
    if entries.is_empty() {
        errs.push(pos.invalid(
            &at,
            format!(
                "{label}: {} is empty (remove it, or give it field: value entries)",
                block.key()
            ),
        ));
    }
    let mut conditions = Vec::new();
    for (key, value) in entries {
        match Condition::parse(&key, &value) {
            Ok(c) => conditions.push(c),
            Err(problems) => {
                for p in problems {
                    let path = match &p.at {
                        ConditionErrorAt::Key => format!("{at}.{key}#key"),
                        ConditionErrorAt::Value => format!("{at}.{key}"),
                        ConditionErrorAt::Item(i) => format!("{at}.{key}[{i}]"),
                        // An unknown operator is its key's fault; a bad bound, its value's.
                        ConditionErrorAt::Operator(op)
                            if p.kind == ConditionErrorKind::UnknownOperator =>
                        {
                            format!("{at}.{key}.{op}#key")
                        }
                        ConditionErrorAt::Operator(op) => format!("{at}.{key}.{op}"),
                    };
                    let problem = match p.kind {
                        ConditionErrorKind::Invalid => Problem::InvalidValue,
                        ConditionErrorKind::UnknownOperator => Problem::UnknownKey,
                        ConditionErrorKind::Conflict => Problem::Conflict,
                    };
                    errs.push(pos.problem(
                        problem,
                        &path,
                        format!("{label}: {}: {}", block.key(), p.message),
                    ));
                }
            }
        }
    }
    conditions
}

fn http(
    h: RawHttp,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<Destination> {
    let at = format!("{at}.http");
    let url = match reqwest::Url::parse(&h.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        Ok(_) => {
            errs.push(pos.invalid(
                &format!("{at}.url"),
                format!(
                    "{label}: http.url \"{}\" must be an http:// or https:// URL with a host",
                    h.url
                ),
            ));
            None
        }
        Err(e) => {
            errs.push(pos.invalid(
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
        errs,
    );
    let concurrency = h.concurrency.unwrap_or(DEFAULT_HTTP_CONCURRENCY);
    if !(1..=1024).contains(&concurrency) {
        errs.push(pos.invalid(
            &format!("{at}.concurrency"),
            format!("{label}: http.concurrency must be between 1 and 1024"),
        ));
    }
    let retry = retry_policy(&h.retry, &format!("{at}.retry"), label, pos, errs);
    let api_secret = match h.api_secret {
        Some(s) if s.is_empty() => {
            errs.push(pos.invalid(&format!("{at}.api_secret"), format!("{label}: http.api_secret is empty; remove it to forward Stream's own signature")));
            None
        }
        other => other.map(Secret::new),
    };
    let rate_limit = pace(&h.rate_limit, h.burst, &at, label, pos, errs);
    url.map(|url| {
        Destination::Http(HttpDestination {
            url,
            timeout,
            concurrency,
            retry,
            api_secret,
            forward_path: h.forward_path.unwrap_or(false),
            rate_limit,
        })
    })
}

fn file(
    f: RawFile,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<Destination> {
    let retry = retry_policy(&f.retry, &format!("{at}.file.retry"), label, pos, errs);
    if f.path.is_empty() {
        errs.push(pos.invalid(
            &format!("{at}.file.path"),
            format!("{label}: file.path is empty"),
        ));
    }
    let rate_limit = pace(
        &f.rate_limit,
        f.burst,
        &format!("{at}.file"),
        label,
        pos,
        errs,
    );
    Some(Destination::File(FileDestination {
        path: PathBuf::from(f.path),
        retry,
        rate_limit,
    }))
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
        warnings.push(pos.problem(
            Problem::UnknownEventType,
            &format!("{at}.event_types[{index}]"),
            format!("{label}: \"{entry}\" is not an event type Stream documents (it matches only a type of exactly that name){hint}"),
        ));
    }
}

pub(super) fn retry_policy(
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
        errs.push(pos.invalid(&at, format!("{label}: retry: {why}")));
        d
    })
}

fn aws(
    raw: RawAws,
    kind: DestinationKind,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<AwsDestination> {
    let before = errs.len();
    let (target_key, target) = match kind {
        DestinationKind::Sqs => ("queue_url", raw.queue_url),
        _ => ("topic_arn", raw.topic_arn),
    };
    let Some(target) = target.filter(|t| !t.trim().is_empty()) else {
        errs.push(pos.missing(
            &format!("{at}#key"),
            format!("{label}: {kind}.{target_key} is missing"),
        ));
        return None;
    };
    let target_at = format!("{at}.{target_key}");
    let fifo = if kind == DestinationKind::Sqs {
        match reqwest::Url::parse(&target) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                url.path().trim_end_matches('/').ends_with(".fifo")
            }
            _ => {
                errs.push(pos.invalid(&target_at, format!(
                    "{label}: sqs.queue_url \"{target}\" is not a queue URL (like https://sqs.us-east-1.amazonaws.com/123456789012/stream-events)"
                )));
                false
            }
        }
    } else {
        let parts: Vec<&str> = target.split(':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
            errs.push(pos.invalid(&target_at, format!(
                "{label}: sns.topic_arn \"{target}\" is not a topic ARN (like arn:aws:sns:us-east-1:123456789012:moderation)"
            )));
        }
        target.ends_with(".fifo")
    };
    if let Some(endpoint) = &raw.endpoint_url {
        if !reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            errs.push(pos.invalid(
                &format!("{at}.endpoint_url"),
                format!("{label}: {kind}.endpoint_url \"{endpoint}\" is not an http(s) URL"),
            ));
        }
    }
    let message_group_id = match &raw.message_group_id {
        Some(source) => match crate::template::Template::parse(source) {
            Ok(t) => Some(t),
            Err(why) => {
                errs.push(pos.invalid(
                    &format!("{at}.message_group_id"),
                    format!("{label}: {kind}.message_group_id: {why}"),
                ));
                None
            }
        },
        None if fifo => {
            errs.push(pos.missing(&target_at, format!(
                "{label}: {target} is a FIFO {}: set {kind}.message_group_id, for example \"{{cid}}\" to keep each channel in order",
                if kind == DestinationKind::Sqs { "queue" } else { "topic" }
            )));
            None
        }
        None => None,
    };
    if kind == DestinationKind::Sns && !fifo && raw.message_group_id.is_some() {
        errs.push(pos.conflict(
            &format!("{at}.message_group_id"),
            format!("{label}: sns.message_group_id only applies to FIFO topics (.fifo); remove it"),
        ));
    }
    let body = match raw.body.as_deref() {
        None | Some("raw") => BodyFormat::Raw,
        Some("stream_compressed") => BodyFormat::StreamCompressed,
        Some(other) => {
            errs.push(pos.invalid(
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
        errs.push(pos.invalid(
            &format!("{at}.concurrency"),
            format!("{label}: {kind}.concurrency must be between 1 and 1024"),
        ));
    } else if fifo && concurrency != 1 {
        errs.push(pos.conflict(
            &format!("{at}.concurrency"),
            format!("{label}: a FIFO {kind} route delivers one batch at a time to keep order; remove concurrency"),
        ));
    }
    for (key, value) in [("region", &raw.region), ("role_arn", &raw.role_arn)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errs.push(pos.invalid(
                &format!("{at}.{key}"),
                format!("{label}: {kind}.{key} is empty; remove it to use the AWS environment's"),
            ));
        }
    }
    let retry = retry_policy(&raw.retry, &format!("{at}.retry"), label, pos, errs);
    let rate_limit = pace(&raw.rate_limit, raw.burst, at, label, pos, errs);
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
        rate_limit,
    })
}

/// A destination block's `rate_limit:` and `burst:` (`at`: the block's path).
fn pace(
    rate_limit: &Option<String>,
    burst: Option<u64>,
    at: &str,
    label: &str,
    pos: &Positions,
    errs: &mut Vec<Diagnostic>,
) -> Option<RateLimit> {
    let Some(text) = rate_limit else {
        if burst.is_some() {
            errs.push(pos.conflict(
                &format!("{at}.burst"),
                format!("{label}: burst without rate_limit paces nothing; add rate_limit (like 50/s) or remove burst"),
            ));
        }
        return None;
    };
    match RateLimit::parse(text, burst) {
        Ok(limit) => Some(limit),
        Err(why) => {
            let key = if why.starts_with("burst") {
                "burst"
            } else {
                "rate_limit"
            };
            errs.push(pos.invalid(&format!("{at}.{key}"), format!("{label}: {why}")));
            None
        }
    }
}
