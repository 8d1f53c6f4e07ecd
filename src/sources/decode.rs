//! The pure core of a source: from an SQS message body, in any form Stream writes natively,
//! to the event JSON exactly as Stream signed it.
//!
//! The forms (tests/fixtures/stream-webhooks/: `sqs_body.txt`, `sqs_body_uncompressed.txt`,
//! `sns_notification.txt`), as Stream's own SDK decoders read them:
//!
//! - raw JSON (`{...}`, or `[...]`: a Feeds v2 firehose batch of updates, kept as one event);
//! - base64(JSON), Stream's native body without payload compression;
//! - base64(gzip(JSON)), with payload compression;
//! - any of these as the `Message` of an SNS notification envelope (a topic feeding the queue),
//!   whose `MessageId` then identifies the event for dedup.
//!
//! Bounded: base64 is decoded only from a body within the limit's base64 size, and gzip never
//! produces more than `limit` bytes (a gzip bomb costs `limit + 1`). No I/O, no clock.

use base64::Engine;

use crate::stream::Gunzip;

/// A message's event, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The event JSON, byte for byte as Stream signed it.
    pub body: Vec<u8>,
    /// The SNS notification's `MessageId`, when the body was an SNS envelope.
    pub sns_message_id: Option<String>,
    /// The event's `type`, when it is a string.
    pub event_type: Option<String>,
}

/// Why a message cannot be decoded. It is never deleted: the queue's redrive policy takes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecodable {
    #[error("the message body is empty")]
    Empty,
    #[error("the message body is neither JSON nor base64 ({0})")]
    BadBase64(String),
    #[error("the message body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("the event is not a JSON object or list: {0}")]
    BadJson(String),
    #[error("the event is larger than max_body_bytes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("an SNS notification envelope without a string Message")]
    BadSnsEnvelope,
    /// The message carries a signature that is not the body's (checked by the source).
    #[error("the message's signature does not match its body: {0}")]
    BadSignature(String),
}

impl Undecodable {
    /// The `reason` label of `hookfan_source_undecodable_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Undecodable::Empty => "empty",
            Undecodable::BadBase64(_) => "bad_base64",
            Undecodable::BadGzip(_) => "bad_gzip",
            Undecodable::BadJson(_) => "bad_json",
            Undecodable::TooLarge { .. } => "too_large",
            Undecodable::BadSnsEnvelope => "bad_sns_envelope",
            Undecodable::BadSignature(_) => "bad_signature",
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes one SQS message body into its event, at most `limit` bytes of it.
pub fn decode(body: &str, limit: usize) -> Result<Decoded, Undecodable> {
    let text = body.trim();
    if text.is_empty() {
        return Err(Undecodable::Empty);
    }
    if text.starts_with('{') {
        if let Some(envelope) = sns_envelope(text)? {
            let inner = decode_payload(envelope.message.trim(), limit)?;
            return finish(inner, Some(envelope.message_id));
        }
    }
    finish(decode_payload(text, limit)?, None)
}

/// An SNS notification: `{"Type": "Notification", "Message": "...", "MessageId": "..."}`.
struct Envelope {
    message: String,
    message_id: String,
}

/// The envelope, when `text` is one; `Ok(None)` when it is an event (no `"Type":
/// "Notification"`); an error when it says it is a notification but has no Message.
fn sns_envelope(text: &str) -> Result<Option<Envelope>, Undecodable> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "Type")]
        kind: Option<serde_json::Value>,
        #[serde(rename = "Message")]
        message: Option<serde_json::Value>,
        #[serde(rename = "MessageId")]
        message_id: Option<serde_json::Value>,
        #[serde(rename = "type")]
        event_type: Option<serde_json::Value>,
    }
    let Ok(raw) = serde_json::from_str::<Raw>(text) else {
        return Ok(None); // not JSON: decode_payload says why
    };
    // A Stream event always has a string lowercase `type`; a custom event may carry any other
    // field, `Type` and `TopicArn` included, and is still an event.
    let notification =
        matches!(&raw.kind, Some(serde_json::Value::String(k)) if k == "Notification");
    if !notification || matches!(raw.event_type, Some(serde_json::Value::String(_))) {
        return Ok(None);
    }
    match raw.message {
        Some(serde_json::Value::String(message)) => Ok(Some(Envelope {
            message,
            message_id: match raw.message_id {
                Some(serde_json::Value::String(id)) if !id.is_empty() => id,
                _ => return Err(Undecodable::BadSnsEnvelope),
            },
        })),
        _ => Err(Undecodable::BadSnsEnvelope),
    }
}

/// Raw JSON as is; anything else base64, then gunzipped when it starts with gzip's magic.
fn decode_payload(text: &str, limit: usize) -> Result<Vec<u8>, Undecodable> {
    if text.starts_with('{') || text.starts_with('[') {
        if text.len() > limit {
            return Err(Undecodable::TooLarge { limit });
        }
        return Ok(text.as_bytes().to_vec());
    }
    // base64 grows by 4/3; a longer text cannot decode to a gzip of an event within the limit
    // by more than gzip's own worst-case overhead, so refuse it before decoding.
    if text.len() > limit.saturating_mul(2).saturating_add(1024) {
        return Err(Undecodable::TooLarge { limit });
    }
    let compact: String = text.split_ascii_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| Undecodable::BadBase64(e.to_string()))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        if bytes.len() > limit {
            return Err(Undecodable::TooLarge { limit });
        }
        return Ok(bytes);
    }
    crate::stream::gunzip(&bytes, limit).map_err(|e| match e {
        Gunzip::TooLarge => Undecodable::TooLarge { limit },
        Gunzip::Broken(why) => Undecodable::BadGzip(why),
    })
}

/// Checks the event is a JSON object (or a Feeds v2 list) and reads its `type`.
fn finish(body: Vec<u8>, sns_message_id: Option<String>) -> Result<Decoded, Undecodable> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        event_type: Option<serde_json::Value>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Undecodable::Empty);
    }
    std::str::from_utf8(&body).map_err(|e| Undecodable::BadJson(format!("not UTF-8 ({e})")))?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let event_type = match first {
        Some(b'{') => {
            let envelope: Envelope =
                serde_json::from_slice(&body).map_err(|e| Undecodable::BadJson(e.to_string()))?;
            match envelope.event_type {
                Some(serde_json::Value::String(t)) => Some(t),
                _ => None,
            }
        }
        Some(b'[') => {
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| Undecodable::BadJson(e.to_string()))?;
            None
        }
        _ => {
            return Err(Undecodable::BadJson(
                "expected an object starting with '{' (or a Feeds list with '[')".into(),
            ))
        }
    };
    Ok(Decoded {
        body,
        sns_message_id,
        event_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stream-webhooks"
    );
    const LIMIT: usize = 1 << 20;

    fn read(case: &str, file: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{case}/{file}"))
            .unwrap_or_else(|e| panic!("fixture {case}/{file}: {e}"))
    }

    fn valid_cases() -> Vec<String> {
        std::fs::read_dir(FIXTURES)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('_'))
            .filter(|n| std::path::Path::new(&format!("{FIXTURES}/{n}/body.json")).exists())
            .collect()
    }

    #[test]
    fn every_native_form_of_every_fixture_decodes_to_its_body_byte_for_byte() {
        let cases = valid_cases();
        assert!(cases.len() >= 10, "{cases:?}");
        for case in cases {
            let body = read(&case, "body.json");
            for form in ["sqs_body.txt", "sqs_body_uncompressed.txt", "body.json"] {
                let got = decode(&read(&case, form), LIMIT)
                    .unwrap_or_else(|e| panic!("{case}/{form}: {e}"));
                assert_eq!(got.body, body.as_bytes(), "{case}/{form}");
                assert_eq!(got.sns_message_id, None);
            }
            let got = decode(&read(&case, "sns_notification.txt"), LIMIT)
                .unwrap_or_else(|e| panic!("{case}/sns: {e}"));
            assert_eq!(got.body, body.as_bytes(), "{case}/sns");
            assert_eq!(
                got.sns_message_id.as_deref(),
                Some("00000000-0000-0000-0000-000000000000")
            );
            let expected: serde_json::Value =
                serde_json::from_str(&read(&case, "expected.json")).unwrap();
            assert_eq!(
                got.event_type.as_deref(),
                expected["type"].as_str(),
                "{case}"
            );
        }
    }

    #[test]
    fn the_invalid_fixtures_are_undecodable_with_their_reason() {
        // (case, form, reason)
        let table = [
            ("bad_base64", "sqs_body.txt", "bad_base64"),
            ("bad_base64", "sns_notification.txt", "bad_base64"),
            ("bad_compression", "sqs_body.txt", "bad_gzip"),
            ("bad_compression", "sns_notification.txt", "bad_gzip"),
            (
                "bad_sns_envelope",
                "sns_notification.txt",
                "bad_sns_envelope",
            ),
            ("empty_body", "sqs_body.txt", "empty"),
            ("malformed_json", "sqs_body.txt", "bad_json"),
            ("malformed_json", "sns_notification.txt", "bad_json"),
        ];
        for (case, form, reason) in table {
            let got = decode(&read(&format!("_invalid/{case}"), form), LIMIT);
            assert_eq!(
                got.as_ref().map_err(Undecodable::reason),
                Err(reason),
                "{case}/{form}: {got:?}"
            );
        }
        // Typeless and unknown-type events are events: decoded, routed to catch-all routes.
        for case in ["missing_type", "unknown_type"] {
            let got = decode(&read(&format!("_invalid/{case}"), "sqs_body.txt"), LIMIT).unwrap();
            assert_eq!(
                got.body,
                read(&format!("_invalid/{case}"), "body.json").as_bytes()
            );
        }
    }

    #[test]
    fn a_feeds_v2_list_of_updates_is_kept_as_one_event() {
        let list = r#"[{"feed":"user:1","new":[{"id":"a1"}],"deleted":[]}]"#;
        let got = decode(list, LIMIT).unwrap();
        assert_eq!(got.body, list.as_bytes());
        assert_eq!(got.event_type, None);
        let b64 = base64::engine::general_purpose::STANDARD.encode(list);
        assert_eq!(decode(&b64, LIMIT).unwrap().body, list.as_bytes());
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![b' '; 10 << 20]).unwrap();
        let bomb = base64::engine::general_purpose::STANDARD.encode(enc.finish().unwrap());
        assert_eq!(
            decode(&bomb, 1024),
            Err(Undecodable::TooLarge { limit: 1024 })
        );
        let big = format!("{{\"type\":\"x\",\"pad\":\"{}\"}}", "p".repeat(2000));
        assert_eq!(
            decode(&big, 1024),
            Err(Undecodable::TooLarge { limit: 1024 })
        );
    }

    #[test]
    fn an_envelope_needs_a_string_message_and_an_id() {
        for (text, want) in [
            (
                r#"{"Type":"Notification","MessageId":"m"}"#,
                Err("bad_sns_envelope"),
            ),
            (
                r#"{"Type":"Notification","Message":{},"MessageId":"m"}"#,
                Err("bad_sns_envelope"),
            ),
            (
                r#"{"Type":"Notification","Message":"{\"type\":\"x\"}"}"#,
                Err("bad_sns_envelope"),
            ),
            (
                r#"{"Type":"Notification","Message":"{\"type\":\"x\"}","MessageId":"m"}"#,
                Ok(Some("x")),
            ),
            // An event that happens to have a `Type` field is not an envelope, whatever it says.
            (
                r#"{"Type":"other","type":"message.new"}"#,
                Ok(Some("message.new")),
            ),
            (
                r#"{"Type":"Notification","type":"custom","TopicArn":"x","Message":"m","MessageId":"i"}"#,
                Ok(Some("custom")),
            ),
        ] {
            let got = decode(text, LIMIT);
            assert_eq!(
                got.as_ref()
                    .map(|d| d.event_type.as_deref())
                    .map_err(Undecodable::reason),
                want,
                "{text}"
            );
        }
    }
}
