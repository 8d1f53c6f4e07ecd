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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
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
    let request: BatchRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                &e.to_string(),
            )
        }
    };
    let entries = &request.entries;
    if entries.is_empty() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "EmptyBatchRequest",
            "no Entries in the request",
        );
    }
    if entries.len() > 10 {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            "a batch holds at most 10 entries",
        );
    }
    // Held and counted per queue (the path of its QueueUrl), so one stub serves several routes.
    let queue = request
        .queue_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_else(|| "/".to_string());
    stub.dest.wait_released(&queue).await;
    let mut successful = Vec::with_capacity(entries.len());
    let mut ids = Vec::with_capacity(entries.len());
    for entry in entries {
        successful.push(BatchResultEntry {
            id: &entry.id,
            message_id: format!(
                "00000000-0000-4000-8000-{:012x}",
                stub.next_id.fetch_add(1, Ordering::Relaxed)
            ),
            md5_of_message_body: hex::encode(Md5::digest(entry.message_body.as_bytes())),
            md5_of_message_attributes: (!entry.message_attributes.is_empty()).then(|| {
                hex::encode(Md5::digest(attributes_digest_input(
                    &entry.message_attributes,
                )))
            }),
        });
        ids.push(
            entry
                .message_attributes
                .get("webhook_id")
                .and_then(|a| a.string_value.as_deref())
                .unwrap_or("-"),
        );
    }
    stub.batches.fetch_add(1, Ordering::Relaxed);
    stub.dest.record(&queue, ids.iter().copied());
    let response = BatchResponse {
        successful,
        failed: [],
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, AMZ_JSON)],
        serde_json::to_string(&response).expect("a response serializes"),
    )
        .into_response()
}

/// The part of a `SendMessageBatch` request the stub reads (AWS JSON 1.0 member names).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchRequest {
    #[serde(default)]
    queue_url: String,
    #[serde(default)]
    entries: Vec<BatchRequestEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchRequestEntry {
    id: String,
    message_body: String,
    /// Sorted by name, the order SQS hashes them in.
    #[serde(default)]
    message_attributes: BTreeMap<String, Attribute>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResponse<'a> {
    successful: Vec<BatchResultEntry<'a>>,
    failed: [(); 0],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResultEntry<'a> {
    id: &'a str,
    message_id: String,
    #[serde(rename = "MD5OfMessageBody")]
    md5_of_message_body: String,
    #[serde(
        rename = "MD5OfMessageAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    md5_of_message_attributes: Option<String>,
}

/// The bytes SQS hashes for `MD5OfMessageAttributes`: attributes sorted by name, each as
/// length-prefixed name, length-prefixed data type, a transport byte (1 string/number,
/// 2 binary) and the length-prefixed value.
fn attributes_digest_input(attrs: &BTreeMap<String, Attribute>) -> Vec<u8> {
    let mut out = Vec::new();
    let put = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    for (name, a) in attrs {
        put(&mut out, name.as_bytes());
        put(&mut out, a.data_type.as_bytes());
        if let Some(s) = &a.string_value {
            out.push(1);
            put(&mut out, s.as_bytes());
        } else if let Some(b) = &a.binary_value {
            out.push(2);
            put(&mut out, b.as_bytes());
        }
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
