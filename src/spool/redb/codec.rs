//! The values stored in the redb spool's tables ([`StoredEvent`], [`PendingState`],
//! [`DeadState`], defined with the spool's API), encoded with postcard (a compact, stable
//! serde format). Each value starts with a format byte so a later version can change the
//! layout and still read old spools.

use serde::Deserialize;

use crate::spool::{DeadState, PendingState, SpoolError, StoredEvent};

const FORMAT_V1: u8 = 1;
/// [`StoredEvent`] only: format 1's fields, then the request path. Format 1 events still read
/// (as posted to `/`).
const FORMAT_V2: u8 = 2;

impl StoredEvent {
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
            trace: None,
        }
    }
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
pub(in crate::spool) mod byte_string {
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
            trace: None,
        };
        assert_eq!(StoredEvent::decode(&e.encode().unwrap()).unwrap(), e);
        assert_eq!(e.request_path(), "/pending/commit");
        assert_eq!(e.request_query(), Some("x=1"));
    }

    #[test]
    fn events_of_format_1_still_read_as_posted_to_the_root_path() {
        // The layout of format 1 before bodies were encoded as a byte string.
        #[derive(serde::Serialize)]
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
            trace: None,
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
