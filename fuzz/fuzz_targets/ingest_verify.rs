//! `ingest::verify::verify` on arbitrary requests: it must never panic, and what it accepts
//! must really be signed and be a JSON object. What ingest does next with an accepted body is
//! checked too: the synchronous-hook shape test (never a body with a string `type`), and the
//! headers a passthrough request is forwarded with (Stream's, unchanged; no per-connection
//! ones).
//!
//! Input layout: the first [`HEADER_BYTES`] bytes are decoded (with `arbitrary`) into the
//! request's headers and settings, the rest is the body. All-zero header bytes mean: one app,
//! its `X-Api-Key`, a correct lower-case signature, no `Content-Encoding`, the default size
//! limit; so a seed is 32 zero bytes followed by a webhook body. A "correct" signature is
//! the HMAC of the bytes `verify` will check (the body after gunzip), which lets the fuzzer
//! past the HMAC into gzip and JSON handling; other modes alter or replace it. Signatures are
//! computed here with `hmac` directly, never with the crate's own signing: a correctly signed
//! request from a known app must never be refused for its signature or its key.
//!
//! Where the body verify must hand on is known without the crate's code (what was gzipped,
//! or what was sent plain and does not start like gzip), the request is signed over it, and
//! a well-formed one (a known key, a correct signature, within the limit, a JSON object with
//! no key twice at its top level) must be accepted with exactly that body.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use hookfan::config::{App, Secret};
use hookfan::ingest::passthrough::forwarded_headers;
use hmac::{Hmac, Mac};
use hookfan::ingest::verify::{
    decode, verify, Rejection, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_WEBHOOK_ID,
};
use hookfan::stream::hooks::sync_hook_shape;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::io::Write;

/// The top-level keys of a JSON object, in order, repeats kept (serde_json's `Value` keeps
/// only the last of a repeated key).
struct TopKeys(Vec<String>);

impl<'de> Deserialize<'de> for TopKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TopKeys, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = TopKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A JSON object by the RFC's rules as serde_json reads them (UTF-8, one value, nothing
/// after it), with no key twice at its top level.
fn is_plain_object(body: &[u8]) -> bool {
    if std::str::from_utf8(body).is_err() {
        return false;
    }
    let Ok(serde_json::Value::Object(_)) = serde_json::from_slice(body) else {
        return false;
    };
    let Ok(TopKeys(mut keys)) = serde_json::from_slice(body) else {
        return false;
    };
    let n = keys.len();
    keys.sort();
    keys.dedup();
    keys.len() == n
}

/// Stream's signature of `body`, computed here with `hmac` and `sha2` directly rather than
/// with the crate's own signing, so the oracle does not share the code it checks.
fn sign(secret: impl AsRef<[u8]>, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_ref()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// How many leading input bytes describe the headers.
const HEADER_BYTES: usize = 32;

const DEFAULT_LIMIT: usize = 1 << 20;

#[derive(Arbitrary, Debug)]
enum Signature {
    /// HMAC of the decoded body with the secret of the app `X-Api-Key` names (or the first).
    Correct,
    Uppercase,
    /// The correct signature with one character replaced.
    Altered {
        at: u8,
        with: u8,
    },
    /// Signed with a secret no app has.
    WrongSecret,
    Missing,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ApiKey {
    First,
    Second,
    Absent,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Encoding {
    /// The body as is (gzip is still sniffed by its magic bytes).
    Plain,
    /// Gzip the body, with `Content-Encoding: gzip`.
    Gzip { level: u8 },
    /// Gzip the body without saying so.
    GzipUndeclared { level: u8 },
    /// Send this `Content-Encoding` with the body as is.
    Declared(String),
}

#[derive(Arbitrary, Debug)]
struct Headers {
    signature: Signature,
    api_key: ApiKey,
    two_apps: bool,
    encoding: Encoding,
    webhook_id: Option<String>,
    /// None: the default 1 MiB; else a small `max_body_bytes`.
    limit: Option<u16>,
}

fn apps(two: bool) -> Vec<App> {
    let mut apps = vec![App::new(
        "key-a",
        Secret::new("test_secret_do_not_use_in_production"),
    )];
    if two {
        apps.push(App::new("key-b", Secret::new("secret-b")));
    }
    apps
}

fn gzip(body: &[u8], level: u8) -> Vec<u8> {
    let level = flate2::Compression::new(u32::from(level % 10));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
    enc.write_all(body).unwrap();
    enc.finish().unwrap()
}

/// Sets a header if the value is one HTTP could carry at all (the listener never sees others).
fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// A header's value as text, trimmed; None when absent or not text.
fn readable<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fuzz_target!(|data: &[u8]| {
    let split = data.len().min(HEADER_BYTES);
    let Ok(h) = Headers::arbitrary(&mut Unstructured::new(&data[..split])) else {
        return;
    };
    let body = &data[split..];
    let apps = apps(h.two_apps);
    let limit = h.limit.map_or(DEFAULT_LIMIT, usize::from);

    let mut headers = HeaderMap::new();
    let wire: Vec<u8> = match &h.encoding {
        Encoding::Plain => body.to_vec(),
        Encoding::Gzip { level } => {
            set(&mut headers, "content-encoding", "gzip");
            gzip(body, *level)
        }
        Encoding::GzipUndeclared { level } => gzip(body, *level),
        Encoding::Declared(value) => {
            set(&mut headers, "content-encoding", value);
            body.to_vec()
        }
    };
    let api_key = match &h.api_key {
        ApiKey::First => Some("key-a"),
        ApiKey::Second => Some("key-b"),
        ApiKey::Absent => None,
        ApiKey::Raw(key) => Some(key.as_str()),
    };
    if let Some(key) = api_key {
        set(&mut headers, "x-api-key", key);
    }
    if let Some(id) = &h.webhook_id {
        set(&mut headers, "x-webhook-id", id);
    }
    // `X-Api-Key` as verify reads it, and the app whose secret a correct signature uses: the
    // one it names, else the first. A value that is not visible ASCII names no app and is
    // refused (`present` but not `named`).
    let present = headers.contains_key(HEADER_API_KEY);
    let named = readable(&headers, HEADER_API_KEY).map(str::to_string);
    let named = named.as_deref();
    let secret = apps
        .iter()
        .find(|a| Some(a.api_key()) == named)
        .unwrap_or(&apps[0])
        .api_secret()
        .clone();
    // The body verify must hand on, known without the crate's code: what was gzipped, or
    // what was sent plain unless it starts with gzip's magic bytes (which verify sniffs).
    // Otherwise (an arbitrary declared encoding) the crate's own decoding says what it is.
    let expected: Option<&[u8]> = match &h.encoding {
        Encoding::Gzip { .. } | Encoding::GzipUndeclared { .. } => Some(body),
        Encoding::Plain if !body.starts_with(&[0x1f, 0x8b]) => Some(body),
        _ => None,
    };
    let signed = match expected {
        Some(b) => b.to_vec(),
        None => decode(&headers, Bytes::from(wire.clone()), limit)
            .map(|b| b.to_vec())
            .unwrap_or_else(|_| body.to_vec()),
    };
    let correct = sign(secret.expose(), &signed);
    let signature = match &h.signature {
        Signature::Correct => Some(correct.clone()),
        Signature::Uppercase => Some(correct.to_uppercase()),
        Signature::Altered { at, with } => {
            let mut s = correct.clone().into_bytes();
            let i = usize::from(*at) % s.len();
            s[i] = *with;
            String::from_utf8(s).ok()
        }
        Signature::WrongSecret => Some(sign(b"not-a-configured-secret", &signed)),
        Signature::Missing => None,
        Signature::Raw(raw) => Some(raw.clone()),
    };
    if let Some(signature) = &signature {
        set(&mut headers, "x-signature", signature);
    }

    let result = verify(&headers, Bytes::from(wire.clone()), &apps, limit);

    let key_ok = match named {
        Some(key) => apps.iter().any(|a| a.api_key() == key),
        None => !present && apps.len() == 1,
    };
    let correct_sent = matches!(h.signature, Signature::Correct | Signature::Uppercase);
    if let Some(expected) = expected {
        if let Ok(v) = &result {
            assert_eq!(&v.body[..], expected, "verify handed on another body than was sent");
        }
        let gzipped = !matches!(h.encoding, Encoding::Plain);
        let within = !gzipped || expected.len() <= limit;
        if key_ok && correct_sent && within && is_plain_object(expected) {
            assert!(
                result.is_ok(),
                "a well-formed, correctly signed request was refused: {:?}",
                result.as_ref().err()
            );
        }
    }

    match &result {
        Ok(v) => {
            // Accepted means: signed by the app its key names (or the only app) ...
            let app = match named {
                Some(key) => apps
                    .iter()
                    .find(|a| a.api_key() == key)
                    .expect("accepted with an unknown X-Api-Key"),
                None => {
                    assert!(!present, "accepted an X-Api-Key that is not text");
                    assert_eq!(apps.len(), 1, "accepted without X-Api-Key among two apps");
                    &apps[0]
                }
            };
            let sent = readable(&headers, HEADER_SIGNATURE).expect("accepted unsigned");
            assert_eq!(sent, v.signature());
            assert!(
                sign(app.api_secret().expose(), &v.body).eq_ignore_ascii_case(v.signature()),
                "accepted a signature that is not the body's HMAC"
            );
            // ... over a body no bigger than the limit once decompressed ...
            assert!(v.body.len() <= limit.max(wire.len()));
            // ... that is a JSON object, whose string `type` is the event type.
            let raw: Box<serde_json::value::RawValue> =
                serde_json::from_slice(&v.body).expect("accepted a body that is not JSON");
            assert!(raw.get().starts_with('{'), "accepted non-object JSON");
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&v.body) {
                let event_type = value.get("type").and_then(|t| t.as_str());
                assert_eq!(v.event_type(), event_type);
            }
            assert_eq!(
                v.webhook_id(),
                readable(&headers, HEADER_WEBHOOK_ID).filter(|id| !id.is_empty())
            );
            // A push event (a string `type`) is never taken for a synchronous hook.
            if sync_hook_shape(&v.body).is_some() {
                assert!(v.event_type().is_none(), "a typed event taken for a hook");
            }
            // A passthrough request goes on with Stream's headers exactly as received.
            let forwarded = forwarded_headers(&headers, Some([203, 0, 113, 7].into()));
            for name in [
                HEADER_SIGNATURE,
                HEADER_API_KEY,
                HEADER_WEBHOOK_ID,
                "content-encoding",
            ] {
                assert_eq!(
                    forwarded.get_all(name).iter().collect::<Vec<_>>(),
                    headers.get_all(name).iter().collect::<Vec<_>>(),
                    "{name}"
                );
            }
            assert!(forwarded.get("content-length").is_none());
            assert_eq!(forwarded["x-forwarded-for"], "203.0.113.7");
        }
        Err(rejection) => {
            assert!(!rejection.to_string().is_empty());
            // A correct signature from a named (or the only) app is never what gets refused.
            if key_ok && correct_sent {
                assert!(
                    !matches!(
                        rejection,
                        Rejection::BadSignature(_) | Rejection::UnknownApp(_)
                    ),
                    "a correctly signed request was refused: {rejection:?}"
                );
            }
        }
    }
});
