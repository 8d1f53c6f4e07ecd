//! A minimal SQS-compatible endpoint for the benchmark only: answers `SendMessageBatch` over
//! the AWS JSON 1.0 protocol (what the official SDK speaks: `X-Amz-Target:
//! AmazonSQS.SendMessageBatch`, `Content-Type: application/x-amz-json-1.0`) and counts what it
//! gets, so that draining to "SQS" can be measured without the destination being the
//! bottleneck. It stores nothing. Correctness against SQS semantics is tested with moto in
//! `tests/it/`, not here.
//!
//! Each successful entry carries `MessageId`, `MD5OfMessageBody` and, when the entry has
//! attributes, `MD5OfMessageAttributes`, computed as SQS does. (aws-sdk-sqs for Rust does not
//! verify them today; other SDKs do, and the cost is kept realistic.) Requests without
//! `SigV4`-looking `Authorization` are refused, like SQS would.
//!
//! Control (used by `bench_suite`): `GET /_bench/stats`, `POST /_bench/reset`,
//! `POST /_bench/hold?p=/q`, `POST /_bench/release[?p=/q]`. With `--hold /` it starts held:
//! requests are accepted and not answered until released (a destination that is down).
//!
//! ```sh
//! cargo run --release --example bench_sqs_stub -- --listen 127.0.0.1:4566
//! ```
//! Prints `sqs stub listening on http://ADDR` on stderr when ready. Route config:
//! `sqs: { queue_url: http://ADDR/123456789012/bench, endpoint_url: http://ADDR, region: us-east-1 }`
//! with any `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` in the environment.

#[path = "bench_common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// IP:PORT to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Hold (accept, do not answer) batches for queues whose URL path starts with this prefix
    /// (`/` = every queue) until `POST /_bench/release[?p=PREFIX]`; repeatable.
    #[arg(long)]
    hold: Vec<String>,
    /// Do not remember webhook ids (saves memory; `unique` stays 0).
    #[arg(long)]
    no_unique: bool,
}

struct Stub {
    dest: common::hold::Destination,
    next_id: AtomicU64,
    batches: AtomicU64,
}

const AMZ_JSON: &str = "application/x-amz-json-1.0";

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, AMZ_JSON)],
        json!({ "__type": format!("com.amazonaws.sqs#{kind}"), "message": message }).to_string(),
    )
        .into_response()
}

async fn handle(State(stub): State<Arc<Stub>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if path.starts_with("/_bench/") {
        return match stub.dest.control(&path, parts.uri.query()) {
            Some(json) => {
                let mut v: Value = serde_json::from_str(&json).unwrap_or_default();
                v["batches"] = json!(stub.batches.load(Ordering::Relaxed));
                v.to_string().into_response()
            }
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let body: Bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let signed = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !signed {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "MissingAuthenticationToken",
            "request is not signed",
        );
    }
    if target != "AmazonSQS.SendMessageBatch" {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("the bench stub only answers SendMessageBatch, not {target:?}"),
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                &e.to_string(),
            )
        }
    };
    let Some(entries) = request.get("Entries").and_then(Value::as_array) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "EmptyBatchRequest",
            "no Entries in the request",
        );
    };
    if entries.is_empty() || entries.len() > 10 {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            "a batch holds 1 to 10 entries",
        );
    }
    // Held and counted per queue (the path of its QueueUrl), so one stub serves several routes.
    let queue_url = request
        .get("QueueUrl")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let queue = queue_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| "/".to_string());
    stub.dest.wait_released(&queue).await;
    let mut successful = Vec::with_capacity(entries.len());
    let mut ids = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = entry.get("Id").and_then(Value::as_str).unwrap_or_default();
        let body = entry
            .get("MessageBody")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut ok = json!({
            "Id": id,
            "MessageId": format!("00000000-0000-4000-8000-{:012x}", stub.next_id.fetch_add(1, Ordering::Relaxed)),
            "MD5OfMessageBody": hex::encode(md5(body.as_bytes())),
        });
        if let Some(attrs) = entry.get("MessageAttributes").and_then(Value::as_object) {
            if !attrs.is_empty() {
                ok["MD5OfMessageAttributes"] =
                    json!(hex::encode(md5(&attributes_digest_input(attrs))));
            }
            let wid = attrs
                .get("webhook_id")
                .and_then(|a| a.get("StringValue"))
                .and_then(Value::as_str)
                .unwrap_or("-");
            ids.push(wid.to_string());
        } else {
            ids.push("-".to_string());
        }
        successful.push(ok);
    }
    stub.batches.fetch_add(1, Ordering::Relaxed);
    stub.dest.record(&queue, ids.iter().map(String::as_str));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, AMZ_JSON)],
        json!({ "Successful": successful, "Failed": [] }).to_string(),
    )
        .into_response()
}

/// The bytes SQS hashes for `MD5OfMessageAttributes`: attributes sorted by name, each as
/// length-prefixed name, length-prefixed data type, a transport byte (1 string/number,
/// 2 binary) and the length-prefixed value.
fn attributes_digest_input(attrs: &serde_json::Map<String, Value>) -> Vec<u8> {
    let mut names: Vec<&String> = attrs.keys().collect();
    names.sort();
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    for name in names {
        let a = &attrs[name];
        let data_type = a
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or("String");
        put(&mut out, name.as_bytes());
        put(&mut out, data_type.as_bytes());
        if let Some(s) = a.get("StringValue").and_then(Value::as_str) {
            out.push(1);
            put(&mut out, s.as_bytes());
        } else if let Some(b) = a.get("BinaryValue").and_then(Value::as_str) {
            out.push(2);
            put(&mut out, b.as_bytes());
        }
    }
    out
}

/// MD5 (RFC 1321). Only for the response checksums SQS returns; not for security.
fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) = (
        0x6745_2301u32,
        0xefcd_ab89u32,
        0x98ba_dcfeu32,
        0x1032_5476u32,
    );
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let stub = Arc::new(Stub {
        dest: common::hold::Destination::new(&args.hold, !args.no_unique),
        next_id: AtomicU64::new(1),
        batches: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind the sqs stub listener");
    let addr = listener.local_addr().expect("local address");
    eprintln!("sqs stub listening on http://{addr}");
    axum::serve(listener, Router::new().fallback(handle).with_state(stub))
        .await
        .expect("serve");
}

#[cfg(test)]
mod tests {
    use super::md5;

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(hex::encode(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex::encode(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex::encode(md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
    }
}
