//! The values stored in the spool's tables, encoded with postcard (a compact, stable serde
//! format). Each value starts with a format byte so a later version can change the layout
//! and still read old spools.

use serde::{Deserialize, Serialize};

use super::SpoolError;

const FORMAT_V1: u8 = 1;

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

codec!(StoredEvent);
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
        };
        assert_eq!(StoredEvent::decode(&e.encode().unwrap()).unwrap(), e);
    }

    #[test]
    fn bodies_are_encoded_as_before_so_old_spools_still_read() {
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
        };
        assert_eq!(now.encode().unwrap(), old);
        assert_eq!(StoredEvent::decode(&old).unwrap(), now);
    }

    #[test]
    fn unknown_format_bytes_are_refused() {
        assert!(PendingState::decode(&[9, 0, 0]).is_err());
        assert!(PendingState::decode(&[]).is_err());
    }
}
