//! The spool's API types: what ingest, delivery, the admin API and the CLI hand the spool and
//! get back ([`super::Spool`]'s arguments and results), and its error.
//!
//! `StoredEvent`, `PendingState` and `DeadState` also derive serde: the previous spool's
//! encoding of its rows (`redb/codec.rs`), read by the one-time import.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::LogError;

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The store failed (I/O error, disk full, ...). Ingest answers 503 so Stream retries.
    #[error("spool storage error: {0}")]
    Storage(#[from] ::redb::Error),
    /// The spool file is held by another running hookfan.
    #[error("the spool {0} is in use by another hookfan process (stop it, or give this one its own data_dir)")]
    InUse(PathBuf),
    /// The file exists but is not a hookfan spool this version understands.
    #[error(
        "{path}: {why}; move it aside to start with an empty spool, or point data_dir elsewhere"
    )]
    Incompatible { path: PathBuf, why: String },
    /// The data directory cannot be created or opened.
    #[error("cannot use data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The writer has stopped (shutting down).
    #[error("the spool is shutting down")]
    Closed,
    /// The writer's queue stayed full: the disk cannot keep up. Ingest answers 503.
    #[error("the spool is overloaded (writer queue full)")]
    Busy,
    /// Not durable by the caller's deadline: the disk is slower than arrivals. It may still
    /// be stored after (a retry is then a duplicate). Ingest answers 503.
    #[error("the spool did not store it in time (overloaded disk)")]
    Late,
    /// A commit failed (disk full, I/O error); nothing in it was stored.
    #[error("the spool could not commit: {0}")]
    CommitFailed(String),
    /// The database is being reopened after a failed commit (disk full, I/O error).
    #[error("the spool is recovering from a failed commit ({0}); retry")]
    Recovering(String),
    /// The walk that counts each route's backlog at open failed; backlog figures are unknown.
    #[error("the spool could not count its backlog at open: {0}")]
    CountFailed(String),
    /// A redb spool (`spool.redb`) sits beside a log spool that already holds data and was
    /// not imported from it: hookfan never merges the two (see `import.rs`).
    #[error("{redb} is an old spool beside the spool {log}, which already holds events and was not imported from it; hookfan will not merge them. Drain it with the previous hookfan version (on a data_dir holding only that file, until `hookfan drain` exits 0), or move it aside if its events are not needed")]
    RedbBesideLog { redb: PathBuf, log: PathBuf },
    /// The log-structured spool ([`super::LogSpool`]) failed otherwise: a corrupt segment or
    /// checkpoint at open, an I/O error outside the ack path, a submission too large.
    #[error(transparent)]
    Log(LogError),
}

/// The fingerprint of a message group id that an ordered route's queue keeps for each event
/// ([`super::Spool::append_grouped`]): SipHash-2-4 with fixed keys, so it means the same across
/// restarts and releases; never 0 (which stands for "no group"). Two groups whose
/// fingerprints collide only hold each other back, never reorder.
#[allow(deprecated)] // std's SipHasher: its algorithm is fixed, unlike DefaultHasher's.
pub fn message_group_fingerprint(group_id: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::hash::SipHasher::new_with_keys(0x686f_6f6b_6661_6e00, 0x6d67_726f_7570);
    hasher.write(group_id.as_bytes());
    hasher.finish().max(1)
}

/// Milliseconds since the Unix epoch, by the system clock: when ingest received a webhook.
pub fn now_ms() -> u64 {
    crate::clock::Clock::system().now_ms()
}

/// Where a route holds an event in `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PendingKey {
    pub due_ms: u64,
    pub seq: u64,
}

/// An event a route should deliver now.
#[derive(Debug, Clone)]
pub struct DueItem {
    pub key: PendingKey,
    pub state: PendingState,
    pub event: Arc<StoredEvent>,
}

/// What a read of a route's due events found.
#[derive(Debug, Default)]
pub struct Due {
    pub items: Vec<DueItem>,
    /// When the next not-yet-due event of the route is due, if any.
    pub next_due_ms: Option<u64>,
}

/// The result of handing a verified webhook to the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Durably stored for every route given, as event `seq`.
    Stored { seq: u64 },
    /// Its webhook id was seen within the dedup window: nothing was stored.
    Duplicate,
}

/// How one delivery attempt of one event on one route ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Delivered,
    /// Try again at `due_ms`; `attempts` made so far.
    Retry {
        due_ms: u64,
        attempts: u32,
        error: String,
    },
    /// Ordered routes: keep the event's place in the queue and try it again at `not_before_ms`;
    /// nothing behind it is delivered until then.
    Hold {
        not_before_ms: u64,
        attempts: u32,
        error: String,
    },
    /// Give up: move to the route's dead letters.
    Dead {
        attempts: u32,
        error: String,
    },
}

/// What a route holds in the spool.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouteSummary {
    pub pending: u64,
    /// Receipt time (ms since the epoch) of the oldest pending event (seqs follow receipt).
    pub oldest_pending_received_ms: Option<u64>,
    pub dead_letters: u64,
}

/// A dead letter, for listing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    pub route: String,
    pub seq: u64,
    pub webhook_id: Option<String>,
    pub event_type: Option<String>,
    pub received_at_ms: u64,
    pub dead_at_ms: u64,
    pub attempts: u32,
    pub error: String,
}

/// One dead letter with its event as stored: what `GET /api/dead-letters/<route>/<seq>`
/// answers and `hookfan dead-letters show` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetterShown {
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// The path and query the webhook was posted to; None for `/`.
    pub path: Option<String>,
    /// The app it was signed for (`X-Api-Key`: not a secret).
    pub api_key: Option<String>,
    /// The body as received (uncompressed), when it is UTF-8, as Stream's JSON is...
    pub body: Option<String>,
    /// ... else base64. Neither when the event's record is gone.
    pub body_base64: Option<String>,
}

impl DeadLetterShown {
    pub fn new(letter: DeadLetter, event: Option<StoredEvent>) -> DeadLetterShown {
        let (path, api_key, body) = match event {
            Some(e) => (e.path, e.api_key, Some(e.body)),
            None => (None, None, None),
        };
        let (body, body_base64) = match body.map(String::from_utf8) {
            Some(Ok(text)) => (Some(text), None),
            Some(Err(e)) => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
                (None, Some(encoded))
            }
            None => (None, None),
        };
        DeadLetterShown {
            letter,
            path,
            api_key,
            body,
            body_base64,
        }
    }
}

/// What to do with selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Back into the route's queue, due now, with a fresh attempt count.
    Replay,
    /// Forget them (the event is deleted when no other route holds it).
    Drop,
}

/// A verified webhook as stored: everything needed to deliver it again, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub webhook_id: Option<String>,
    pub received_at_ms: u64,
    pub api_key: Option<String>,
    /// Stream's `X-Signature`, forwarded unchanged.
    pub signature: String,
    pub event_type: Option<String>,
    /// The uncompressed body exactly as signed. Encoded as one length-prefixed byte string
    /// (postcard writes a `Vec<u8>` as a sequence of `u8`, which is the same bytes on disk
    /// but one serializer call per byte).
    #[serde(with = "super::redb::codec::byte_string")]
    pub body: Vec<u8>,
    /// The path and query the webhook was posted to, as received; None for `/`.
    pub path: Option<String>,
    /// The trace the webhook's deliveries join; None when tracing was off at ingest. Not
    /// in the redb spool's format (an import has none).
    #[serde(skip)]
    pub trace: Option<Trace>,
}

/// A W3C trace context (`traceparent`'s ids and flags, and `tracestate`) stored with an
/// event, so that each delivery attempt joins the webhook's trace, after a restart too. The
/// spool only keeps it; what it means is the telemetry's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
    /// `tracestate` as received; whoever makes a `Trace` keeps it to [`Trace::MAX_STATE`]
    /// bytes.
    pub state: String,
}

/// A [`Trace`] borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRef<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
    pub state: &'a str,
}

impl Trace {
    /// The longest `tracestate` kept: W3C's 32 members of at most 256 + 1 + 256 bytes
    /// are far more than any real one; a longer one is dropped (W3C lets a vendor drop
    /// what it cannot keep), not the event.
    pub const MAX_STATE: usize = 512;

    pub fn borrowed(&self) -> TraceRef<'_> {
        TraceRef {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
            state: &self.state,
        }
    }
}

impl TraceRef<'_> {
    pub fn into_owned(self) -> Trace {
        Trace {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
            state: self.state.to_string(),
        }
    }
}

/// A [`StoredEvent`] borrowed: what ingest hands the spool, straight from the verified
/// request, so storing a webhook copies its body once, into the log's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub webhook_id: Option<&'a str>,
    pub received_at_ms: u64,
    pub api_key: Option<&'a str>,
    pub signature: &'a str,
    pub event_type: Option<&'a str>,
    pub body: &'a [u8],
    pub path: Option<&'a str>,
    pub trace: Option<TraceRef<'a>>,
}

impl<'a> EventRef<'a> {
    /// The request path without its query (`/` when none was kept).
    pub fn request_path(&self) -> &'a str {
        let full = self.path.unwrap_or("/");
        full.split_once('?').map_or(full, |(path, _)| path)
    }
}

impl StoredEvent {
    /// This event, borrowed.
    pub fn borrowed(&self) -> EventRef<'_> {
        EventRef {
            webhook_id: self.webhook_id.as_deref(),
            received_at_ms: self.received_at_ms,
            api_key: self.api_key.as_deref(),
            signature: &self.signature,
            event_type: self.event_type.as_deref(),
            body: &self.body,
            path: self.path.as_deref(),
            trace: self.trace.as_ref().map(Trace::borrowed),
        }
    }

    /// The request path without its query (`/` when none was kept).
    pub fn request_path(&self) -> &str {
        self.borrowed().request_path()
    }

    /// The request's query, if it had one.
    pub fn request_query(&self) -> Option<&str> {
        self.path.as_deref()?.split_once('?').map(|(_, q)| q)
    }
}

/// A route's delivery state of one pending event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingState {
    /// Attempts made so far; the next one is `attempts + 1`.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// On ordered routes a failing event keeps its place and waits until this time (ms since
    /// the epoch; 0: not waiting), holding back the events behind it.
    pub not_before_ms: u64,
}

/// Why and when a route gave up on an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadState {
    pub attempts: u32,
    pub error: String,
    pub dead_at_ms: u64,
}
