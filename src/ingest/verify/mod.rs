//! The pure core of ingest: from (headers, body bytes, apps) to a [`VerifiedWebhook`] or a
//! [`Rejection`], in the order the contract fixes:
//! gzip (bounded) → secret by `X-Api-Key` → `X-Signature` over the uncompressed body →
//! JSON with a `type`.
//!
//! No I/O, no clock, no allocation beyond the decompressed body. A `VerifiedWebhook` can only
//! be made here, so anything holding one has passed every check.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::config::App;
use crate::ingest::outcome::Outcome;
use crate::stream::{Gunzip, SigningKey};

pub use crate::stream::{
    sign, HEADER_API_KEY, HEADER_ATTEMPT, HEADER_SIGNATURE, HEADER_WEBHOOK_ID,
};

/// A webhook whose signature checked out and whose body is a JSON object.
///
/// Its fields are read where they are, not copied out: the headers' values share the
/// request's buffer, and the `type` is a range of the body (unless it was written with
/// escapes, which only a copy can undo).
#[derive(Debug, Clone)]
pub struct VerifiedWebhook {
    /// `X-Webhook-Id`, stable across Stream's retries; the dedup key. None if absent or
    /// empty.
    webhook_id: Option<HeaderValue>,
    /// `X-Api-Key` as sent (None when the single configured app was used implicitly).
    api_key: Option<HeaderValue>,
    /// `X-Signature` as sent, forwarded so handlers can verify with Stream's SDK.
    signature: HeaderValue,
    /// The event's `type`, when it is a string.
    event_type: Option<Text>,
    /// Where the event's `created_at` value is in `body` (read only when asked for, by
    /// [`VerifiedWebhook::created_at`]: only `max_event_age` needs it).
    created_at: Option<Range<usize>>,
    /// The exact uncompressed body bytes that were signed.
    pub body: Bytes,
    _sealed: Sealed,
}

/// A JSON string of the body: where its characters are, or, when it holds escapes, what
/// they spell.
#[derive(Debug, Clone)]
enum Text {
    InBody(Range<usize>),
    Unescaped(Box<str>),
}

/// A header value this module has checked is visible ASCII, trimmed.
fn text(value: &HeaderValue) -> &str {
    value.to_str().map_or("", str::trim)
}

impl VerifiedWebhook {
    /// `X-Webhook-Id`, the dedup key: None when absent or empty.
    pub fn webhook_id(&self) -> Option<&str> {
        self.webhook_id.as_ref().map(text)
    }

    /// `X-Api-Key` as sent (None when the single configured app was used implicitly).
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_ref().map(text)
    }

    /// `X-Signature` as sent.
    pub fn signature(&self) -> &str {
        text(&self.signature)
    }

    /// The event's `type`, when it is a string.
    pub fn event_type(&self) -> Option<&str> {
        match self.event_type.as_ref()? {
            Text::InBody(range) => std::str::from_utf8(self.body.get(range.clone())?).ok(),
            Text::Unescaped(text) => Some(text),
        }
    }

    /// The event's `created_at`, when it is a timestamp this module understands
    /// ([`parse_created_at`]).
    pub fn created_at(&self) -> Option<SystemTime> {
        let raw = self.body.get(self.created_at.clone()?)?;
        parse_created_at(&serde_json::from_slice(raw).ok()?)
    }
}

/// Keeps [`VerifiedWebhook`] from being built outside this module.
#[derive(Debug, Clone)]
struct Sealed;

/// Why a webhook was refused. Each maps to one status code and one metric outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Body (before or after gzip) over `max_body_bytes`.
    #[error("body is larger than max_body_bytes ({limit} bytes){}", if *.decompressed { " after gzip decompression" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    /// `Content-Encoding: gzip` (or gzip magic) but the stream is broken.
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    /// No usable `X-Api-Key`: none with several apps configured, or one sent twice or
    /// unreadable.
    #[error("{0}")]
    UnknownApp(String),
    /// An `X-Api-Key` that names no configured app. Stream signs with the most recently
    /// created key at once, so this is most often a key rotated in before routes.yaml lists
    /// it: answered 503 so that Stream retries, and the retry passes once the app is added.
    #[error("X-Api-Key \"{key}\" is not one of the configured apps; if it is a new key of your Stream app, add it to apps: in routes.yaml (the file is reloaded within a second) and Stream's retries will be accepted")]
    UnknownApiKey {
        /// The key as sent, at most [`MAX_LOGGED_KEY`] characters (a key is not a secret).
        key: String,
    },
    /// Missing, malformed, or wrong `X-Signature`.
    #[error("{0}")]
    BadSignature(&'static str),
    /// Signed correctly, but the body is not a JSON object.
    #[error("body is not a JSON object: {0}")]
    BadJson(String),
    /// Signed correctly, but `created_at` is older than `max_event_age`: a replay.
    #[error("the event was created {} ago, more than max_event_age ({}); refused as a possible replay", humantime::format_duration(*.age), humantime::format_duration(*.max_age))]
    TooOld { age: Duration, max_age: Duration },
}

/// Longest part of an unknown `X-Api-Key` that is kept for the log line.
pub const MAX_LOGGED_KEY: usize = 64;

/// The answer to the sender: the status, and why in one line (a 503 with `Retry-After`, and
/// no more words, for a key to add: Stream retries it).
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::UnknownApiKey { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "unknown X-Api-Key; retry\n",
            )
                .into_response(),
            other => (other.status(), format!("{other}\n")).into_response(),
        }
    }
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::UnknownApiKey { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BadGzip(_) | Rejection::BadJson(_) => StatusCode::BAD_REQUEST,
            Rejection::UnknownApp(_) | Rejection::BadSignature(_) | Rejection::TooOld { .. } => {
                StatusCode::UNAUTHORIZED
            }
        }
    }

    /// How it counts in `hookfan_webhooks_received_total`.
    pub fn outcome(&self) -> Outcome {
        match self {
            Rejection::TooLarge { .. } => Outcome::TooLarge,
            Rejection::BadGzip(_) | Rejection::BadJson(_) => Outcome::BadRequest,
            Rejection::UnknownApp(_) | Rejection::BadSignature(_) => Outcome::Unauthorized,
            Rejection::UnknownApiKey { .. } => Outcome::UnknownApiKey,
            Rejection::TooOld { .. } => Outcome::TooOld,
        }
    }
}

/// Runs every check on a received body. `body` is the raw request body, already bounded by
/// `max_body_bytes`.
pub fn verify(
    headers: &HeaderMap,
    body: Bytes,
    apps: &[App],
    max_body_bytes: usize,
) -> Result<VerifiedWebhook, Rejection> {
    let body = decode(headers, body, max_body_bytes)?;
    let api_key = auth_header(headers, HEADER_API_KEY)
        .map_err(|why| Rejection::UnknownApp(format!("X-Api-Key {why}")))?;
    let app = pick_app(apps, api_key.map(text))?;
    let signature = match auth_header(headers, HEADER_SIGNATURE) {
        Ok(Some(signature)) => signature,
        Ok(None) => return Err(Rejection::BadSignature("missing X-Signature header")),
        Err(_) => {
            return Err(Rejection::BadSignature(
                "X-Signature must be one header of 64 hex characters",
            ))
        }
    };
    check_signature(app.signing_key(), &body, text(signature))?;
    let (event_type, created_at) = parse_envelope(&body)?;
    Ok(VerifiedWebhook {
        webhook_id: headers
            .get(HEADER_WEBHOOK_ID)
            .filter(|id| id.to_str().is_ok_and(|id| !id.trim().is_empty()))
            .cloned(),
        api_key: api_key.cloned(),
        signature: signature.clone(),
        event_type,
        created_at,
        body,
        _sealed: Sealed,
    })
}

/// An authentication header, which must be sent at most once and readable: a second value,
/// or one that is not visible ASCII, is refused rather than guessed at (taking the first of
/// two, or treating an unreadable key as absent, would let a request pick which one counts).
fn auth_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h HeaderValue>, &'static str> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("is sent more than once");
    }
    match value.to_str() {
        Ok(_) => Ok(Some(value)),
        Err(_) => Err("is not visible ASCII"),
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Gunzips the body when it says or looks gzipped, never producing more than `limit` bytes,
/// so a gzip bomb costs at most `limit + 1` bytes of memory.
pub fn decode(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, Rejection> {
    let declared = headers
        .get_all(axum::http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !declared && !body.starts_with(&GZIP_MAGIC) {
        return Ok(body);
    }
    match crate::stream::gunzip(&body, limit) {
        Ok(out) => Ok(Bytes::from(out)),
        Err(Gunzip::TooLarge) => Err(Rejection::TooLarge {
            limit,
            decompressed: true,
        }),
        Err(Gunzip::Broken(why)) => Err(Rejection::BadGzip(why)),
    }
}

fn pick_app<'a>(apps: &'a [App], api_key: Option<&str>) -> Result<&'a App, Rejection> {
    match (api_key, apps) {
        (Some(key), _) => {
            apps.iter()
                .find(|a| a.api_key() == key)
                .ok_or_else(|| Rejection::UnknownApiKey {
                    key: key.chars().take(MAX_LOGGED_KEY).collect(),
                })
        }
        (None, [only]) => Ok(only),
        (None, _) => Err(Rejection::UnknownApp(
            "missing X-Api-Key header, and several apps are configured".into(),
        )),
    }
}

/// Compares `signature` (hex, either case) with the HMAC of `body` in constant time.
pub fn check_signature(key: &SigningKey, body: &[u8], signature: &str) -> Result<(), Rejection> {
    let mut given = [0u8; 32];
    hex::decode_to_slice(signature, &mut given)
        .map_err(|_| Rejection::BadSignature("X-Signature is not 64 hex characters"))?;
    if bool::from(key.tag(body).ct_eq(&given)) {
        Ok(())
    } else {
        Err(Rejection::BadSignature(
            "X-Signature does not match the body (wrong secret for this X-Api-Key, or the body was altered)",
        ))
    }
}

/// Refuses an event created more than `max_age` before `now`. An event without a
/// `created_at` it can read passes: a replayed body cannot gain one, since the signature
/// covers the body. Events from the future (clock skew) pass too.
pub fn check_age(
    created_at: Option<SystemTime>,
    max_age: Duration,
    now: SystemTime,
) -> Result<(), Rejection> {
    match created_at.and_then(|created| now.duration_since(created).ok()) {
        Some(age) if age > max_age => Err(Rejection::TooOld {
            // Whole seconds read better in a log line than nanoseconds.
            age: Duration::from_secs(age.as_secs()),
            max_age,
        }),
        _ => Ok(()),
    }
}

/// Reads Stream's `created_at`: an RFC 3339 string (Chat, Feeds) or an integer count of
/// nanoseconds since the epoch (what Stream's Go SDK vectors carry); integers too small to
/// be nanoseconds of this century are read as micro-, milli- or plain seconds. Anything else
/// is None.
pub fn parse_created_at(value: &serde_json::Value) -> Option<SystemTime> {
    match value {
        serde_json::Value::String(text) => {
            let t =
                time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .ok()?;
            let nanos = t.unix_timestamp_nanos();
            let nanos = u64::try_from(nanos).ok()?;
            Some(UNIX_EPOCH + Duration::from_nanos(nanos))
        }
        serde_json::Value::Number(n) => {
            let n = n.as_u64()?;
            let nanos = match n {
                n if n >= 100_000_000_000_000_000 => n,
                n if n >= 100_000_000_000_000 => n.checked_mul(1_000)?,
                n if n >= 100_000_000_000 => n.checked_mul(1_000_000)?,
                n => n.checked_mul(1_000_000_000)?,
            };
            Some(UNIX_EPOCH + Duration::from_nanos(nanos))
        }
        _ => None,
    }
}

/// Parses the whole body as a JSON object (so malformed JSON is refused) and returns its
/// `type` when that is a string and its `created_at` when readable. Unknown fields and
/// unknown types are fine.
fn parse_envelope(body: &[u8]) -> Result<(Option<Text>, Option<Range<usize>>), Rejection> {
    // Both fields borrowed as they are in the body: a `type` is copied out only when it
    // holds escapes, and `created_at` is read later, if at all.
    #[derive(serde::Deserialize)]
    struct Envelope<'b> {
        #[serde(rename = "type", borrow)]
        event_type: Option<&'b RawValue>,
        #[serde(borrow)]
        created_at: Option<&'b RawValue>,
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(Rejection::BadJson("the body is empty".into())),
        Some(b'{') => {}
        Some(_) => {
            return Err(Rejection::BadJson(
                "expected an object starting with '{'".into(),
            ))
        }
    }
    // JSON text is UTF-8 (RFC 8259), and serde_json does not check the strings it skips.
    std::str::from_utf8(body)
        .map_err(|e| Rejection::BadJson(format!("the body is not UTF-8 ({e})")))?;
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| Rejection::BadJson(e.to_string()))?;
    // A raw value is a slice of `body`: where it starts follows from the two addresses.
    let at = |raw: &RawValue| raw.get().as_ptr() as usize - body.as_ptr() as usize;
    // Anything but a string (a number, an object, null) is no event type.
    let event_type = match envelope.event_type {
        Some(raw) if raw.get().starts_with('"') && !raw.get().contains('\\') => {
            // The characters between the quotes are the type (serde_json checked the
            // string when it read past it).
            let start = at(raw) + 1;
            Some(Text::InBody(start..start + raw.get().len() - 2))
        }
        Some(raw) if raw.get().starts_with('"') => Some(Text::Unescaped(
            serde_json::from_str::<Box<str>>(raw.get())
                .map_err(|e| Rejection::BadJson(format!("type: {e}")))?,
        )),
        Some(raw) => {
            readable(raw, "type")?;
            None
        }
        None => None,
    };
    let created_at = match envelope.created_at {
        Some(raw) => {
            readable(raw, "created_at")?;
            let start = at(raw);
            Some(start..start + raw.get().len())
        }
        None => None,
    };
    Ok((event_type, created_at))
}

/// Refuses a `type` or `created_at` that serde_json cannot read as a value (nesting deeper
/// than its recursion limit, a number out of range such as `1e999`), which other fields may
/// hold. A string, the usual case, was checked when it was read past.
fn readable(raw: &RawValue, field: &str) -> Result<(), Rejection> {
    if raw.get().starts_with('"') {
        return Ok(());
    }
    serde_json::from_str::<serde_json::Value>(raw.get())
        .map(drop)
        .map_err(|e| Rejection::BadJson(format!("{field}: {e}")))
}

#[cfg(test)]
mod tests;
