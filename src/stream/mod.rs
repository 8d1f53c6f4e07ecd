//! What hookfan knows of Stream's wire format, in one place: the header names of every hook,
//! how Stream signs a body, the kinds of hook Stream sends ([`hooks`]), and the event types it
//! documents ([`event_types`]).
//!
//! Pure: no I/O, no clock. Ingest, the sinks and the CLI import it; nothing here imports them.

pub(crate) mod event_types;
pub mod hooks;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Unique id of a webhook call, the same on each of Stream's retries: the dedup key.
pub const HEADER_WEBHOOK_ID: &str = "x-webhook-id";
/// Stream's attempt number, from 1.
pub const HEADER_ATTEMPT: &str = "x-webhook-attempt";
/// The app's API key; picks the secret the body was signed with.
pub const HEADER_API_KEY: &str = "x-api-key";
/// Hex HMAC-SHA256 of the body with the app's API secret.
pub const HEADER_SIGNATURE: &str = "x-signature";

/// Why [`gunzip`] produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gunzip {
    /// More than the limit once decompressed.
    TooLarge,
    /// Not a gzip stream, or a broken one.
    Broken(String),
}

/// Decompresses Stream's gzip payloads (webhook bodies with payload compression on, native
/// SQS/SNS messages), every member, never producing more than `limit` bytes: a gzip bomb costs
/// at most `limit + 1` bytes of memory.
pub fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, Gunzip> {
    use std::io::Read;
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit + 1));
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Gunzip::Broken(e.to_string()))?;
    if out.len() > limit {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

/// Hex HMAC-SHA256 of `body` with `secret`, lower case: what Stream puts in `X-Signature`.
///
/// ```
/// // Stream's own test vector (tests/fixtures/stream-webhooks/message.new).
/// let body = br#"{"type":"message.new","created_at":1778198400000000000}"#;
/// assert_eq!(
///     hookfan::stream::sign(b"test_secret_do_not_use_in_production", body),
///     "408ab27d58b18a584d29f2801dde0d5ad20e5f5965039ac88d2ef49014a2c4a7"
/// );
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    SigningKey::new(secret).sign(body)
}

/// A secret made into an HMAC-SHA256 key once, for the many bodies signed or checked with
/// it: keying hashes two blocks of its own (the padded key, inner and outer), so a key kept
/// keyed saves them on every body. Shows nothing of the secret in `Debug`.
#[derive(Clone)]
pub struct SigningKey(Hmac<Sha256>);

impl SigningKey {
    pub fn new(secret: &[u8]) -> Self {
        SigningKey(Hmac::new_from_slice(secret).expect("HMAC takes any key length"))
    }

    /// The HMAC-SHA256 of `body`.
    pub fn tag(&self, body: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The hex HMAC-SHA256 of `body`, lower case: what Stream puts in `X-Signature`.
    pub fn sign(&self, body: &[u8]) -> String {
        hex::encode(self.tag(body))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_kept_keyed_signs_every_body_as_a_fresh_hmac_does() {
        let key = SigningKey::new(b"test_secret_do_not_use_in_production");
        for body in [&b""[..], b"{}", &[b'x'; 4096]] {
            let mut fresh = Hmac::<Sha256>::new_from_slice(b"test_secret_do_not_use_in_production")
                .expect("any key length");
            fresh.update(body);
            assert_eq!(
                key.tag(body),
                <[u8; 32]>::from(fresh.finalize().into_bytes())
            );
            assert_eq!(key.sign(body), hex::encode(key.tag(body)));
        }
    }

    #[test]
    fn a_signing_key_never_shows_its_secret() {
        let shown = format!("{:?}", SigningKey::new(b"s3cr3t-value"));
        assert_eq!(shown, "SigningKey(***)");
    }
}
