//! The values stored in the spool's tables, encoded with postcard (a compact, stable serde
//! format). Each value starts with a format byte so a later version can change the layout
//! and still read old spools.

use serde::{Deserialize, Serialize};

use super::SpoolError;

const FORMAT_V1: u8 = 1;
/// [`StoredEvent`] only: format 1's fields, then the request path. Format 1 events still read
/// (as posted to `/`).
const FORMAT_V2: u8 = 2;

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
    #[serde(with = "byte_string")]
    pub body: Vec<u8>,
    /// The path and query the webhook was posted to, as received; None for `/`.
    pub path: Option<String>,
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
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, SpoolError> {
        let mut out = vec![FORMAT_V2];
        postcard::to_io(self, &mut out).map_err(|e| corrupt("StoredEvent", e))?;
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SpoolError> {
        match bytes.split_first() {
            Some((&FORMAT_V2, rest)) => {
                postcard::from_bytes(rest).map_err(|e| corrupt("StoredEvent", e))
            }
            Some((&FORMAT_V1, rest)) => postcard::from_bytes::<StoredEventV1>(rest)
                .map(StoredEvent::from)
                .map_err(|e| corrupt("StoredEvent", e)),
            _ => Err(corrupt("StoredEvent", "unknown format byte")),
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

/// The layout of format 1, read from spools written before paths were kept.
#[derive(Deserialize)]
struct StoredEventV1 {
    webhook_id: Option<String>,
    received_at_ms: u64,
    api_key: Option<String>,
    signature: String,
    event_type: Option<String>,
    #[serde(with = "byte_string")]
    body: Vec<u8>,
}

impl From<StoredEventV1> for StoredEvent {
    fn from(v1: StoredEventV1) -> Self {
        StoredEvent {
            webhook_id: v1.webhook_id,
            received_at_ms: v1.received_at_ms,
            api_key: v1.api_key,
            signature: v1.signature,
            event_type: v1.event_type,
            body: v1.body,
            path: None,
        }
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

macro_rules! codec {
    ($t:ty) => {
        impl $t {
            pub fn encode(&self) -> Result<Vec<u8>, SpoolError> {
                let mut out = vec![FORMAT_V1];
                postcard::to_io(self, &mut out).map_err(|e| corrupt(stringify!($t), e))?;
                Ok(out)
            }

            pub fn decode(bytes: &[u8]) -> Result<Self, SpoolError> {
                match bytes.split_first() {
                    Some((&FORMAT_V1, rest)) => {
                        postcard::from_bytes(rest).map_err(|e| corrupt(stringify!($t), e))
                    }
                    _ => Err(corrupt(stringify!($t), "unknown format byte")),
                }
            }
        }
    };
}

codec!(PendingState);
codec!(DeadState);

/// `Vec<u8>` through serde's `bytes` data type instead of a sequence of `u8`. In postcard both
/// are a varint length followed by the bytes, so spools written either way read the same.
mod byte_string {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(ByteBuf)
    }

    struct ByteBuf;

    impl<'de> Visitor<'de> for ByteBuf {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(redb::Error::Corrupted(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_events_round_trip_byte_for_byte() {
        let e = StoredEvent {
            webhook_id: Some("id".into()),
            received_at_ms: 1_778_198_400_000,
            api_key: None,
            signature: "ab".repeat(32),
            event_type: Some("message.new".into()),
            body: b"{\"type\":\"message.new\"}\xff".to_vec(),
            path: Some("/pending/commit?x=1".into()),
        };
        assert_eq!(StoredEvent::decode(&e.encode().unwrap()).unwrap(), e);
        assert_eq!(e.request_path(), "/pending/commit");
        assert_eq!(e.request_query(), Some("x=1"));
    }

    #[test]
    fn events_of_format_1_still_read_as_posted_to_the_root_path() {
        // The layout of format 1 before bodies were encoded as a byte string.
        #[derive(Serialize)]
        struct Before {
            webhook_id: Option<String>,
            received_at_ms: u64,
            api_key: Option<String>,
            signature: String,
            event_type: Option<String>,
            body: Vec<u8>,
        }
        let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let before = Before {
            webhook_id: Some("id".into()),
            received_at_ms: 7,
            api_key: Some("key".into()),
            signature: "sig".into(),
            event_type: None,
            body: body.clone(),
        };
        let mut old = vec![FORMAT_V1];
        postcard::to_io(&before, &mut old).unwrap();
        let now = StoredEvent {
            webhook_id: Some("id".into()),
            received_at_ms: 7,
            api_key: Some("key".into()),
            signature: "sig".into(),
            event_type: None,
            body,
            path: None,
        };
        assert_eq!(StoredEvent::decode(&old).unwrap(), now);
        assert_eq!(now.request_path(), "/");
        assert_eq!(now.request_query(), None);
        // Format 2 is format 1's bytes followed by the path.
        let new = now.encode().unwrap();
        assert_eq!(new[0], FORMAT_V2);
        assert_eq!(&new[1..new.len() - 1], &old[1..]);
        assert_eq!(new.last(), Some(&0), "postcard's None");
    }

    #[test]
    fn unknown_format_bytes_are_refused() {
        assert!(PendingState::decode(&[9, 0, 0]).is_err());
        assert!(PendingState::decode(&[]).is_err());
    }
}
