//! Shared by the benchmark examples (`bench_*.rs`): the Stream-like webhook they send, its
//! signature, and a minimal HTTP/1.1 client over one keep-alive TCP connection.
//!
//! The client is deliberately tiny (one pre-formatted request, `Content-Length` responses only)
//! so that the load generator spends as little of the machine's CPU as possible: on a 2-core
//! box it shares the cores with the server it measures.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod hold;

pub const API_KEY: &str = "bench_api_key";
pub const API_SECRET: &str = "bench_api_secret_not_for_production";

/// Hex HMAC-SHA256 of `body` with `secret`: Stream's `X-Signature`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A random-looking version 4 UUID, unique per (`run`, `n`), as Stream's `X-Webhook-Id` is.
/// Random matters: an index keyed by id then takes every new id at a random place, as in
/// production. `BENCH_SEQ_IDS=1` sends sequential ids instead (what the suite sent before
/// 2026-12-02), which flattered such an index.
pub fn webhook_id(run: u64, n: u64) -> String {
    if std::env::var_os("BENCH_SEQ_IDS").is_some() {
        return format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (run >> 32) as u32,
            (run >> 16) as u16,
            (run & 0xfff) as u16,
            (n >> 48) & 0xfff,
            n & 0xffff_ffff_ffff
        );
    }
    let (hi, lo) = (splitmix64(run ^ n.rotate_left(32)), splitmix64(n ^ run));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        (hi >> 32) as u32,
        (hi >> 16) as u16,
        hi & 0xfff,
        8 | (lo >> 62),
        (lo >> 48) & 0xfff,
        lo & 0xffff_ffff_ffff
    )
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A `message.new` event shaped like the ones Stream Chat sends (about 1 KiB), unique per
/// `n` (message id, timestamps).
pub fn message_new_body(run: u64, n: u64, created_ms: u64) -> String {
    let ts = rfc3339_ms(created_ms);
    let user = n % 997;
    format!(
        concat!(
            r#"{{"type":"message.new","cid":"messaging:bench-{ch}","channel_id":"bench-{ch}","#,
            r#""channel_type":"messaging","channel_member_count":3,"message_id":"{run:x}-{n}","#,
            r#""message":{{"id":"{run:x}-{n}","text":"Hey team, build {n} is deployed and the dashboards look healthy. Shout if anything looks odd.","#,
            r#""html":"<p>Hey team, build {n} is deployed and the dashboards look healthy.</p>\n","#,
            r#""type":"regular","user":{{"id":"user-{user}","role":"user","created_at":"2024-01-09T12:00:00.000Z","#,
            r#""updated_at":"2025-11-02T08:30:00.000Z","last_active":"{ts}","banned":false,"online":true,"name":"User {user}","#,
            r#""image":"https://example.com/avatars/{user}.png"}},"attachments":[],"latest_reactions":[],"own_reactions":[],"#,
            r#""reaction_counts":{{}},"reaction_scores":{{}},"reply_count":0,"deleted_reply_count":0,"cid":"messaging:bench-{ch}","#,
            r#""created_at":"{ts}","updated_at":"{ts}","shadowed":false,"mentioned_users":[],"silent":false,"pinned":false,"#,
            r#""pinned_at":null,"pinned_by":null,"pin_expires":null}},"#,
            r#""user":{{"id":"user-{user}","role":"user","banned":false,"online":true,"name":"User {user}"}},"#,
            r#""watcher_count":2,"created_at":"{ts}"}}"#
        ),
        ch = n % 64,
        run = run,
        n = n,
        user = user,
        ts = ts
    )
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds (no date library needed).
pub fn rfc3339_ms(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (d, s) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(d as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The full signed request, ready to write to the socket.
pub fn signed_request(host: &str, path: &str, id: &str, body: &str, secret: &[u8]) -> Vec<u8> {
    let sig = sign(secret, body.as_bytes());
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Stream-Webhook-Client/1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nX-Webhook-Id: {id}\r\n\
         X-Webhook-Attempt: 1\r\nX-Api-Key: {API_KEY}\r\nX-Signature: {sig}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

/// A parsed response head: status, body length, and whether the server will close.
struct Head {
    status: u16,
    content_length: usize,
    close: bool,
    head_len: usize,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head over 64 KiB"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(io::Error::other)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut content_length = None;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::other("chunked responses are not supported"));
        }
    }
    Ok(Some(Head {
        status,
        content_length: content_length.unwrap_or(0),
        close,
        head_len: end + 4,
    }))
}

/// One keep-alive HTTP/1.1 connection (async, for the load generator).
pub struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    pub closed: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            closed: false,
        })
    }

    /// Sends one request and reads its response; returns the status code.
    pub async fn round_trip(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let total = head.head_len + head.content_length;
                while self.buf.len() < total {
                    let mut chunk = [0u8; 4096];
                    let n = self.stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                self.closed = head.close;
                return Ok(head.status);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One blocking request on a fresh connection (control endpoints, one-off probes).
/// Returns (status, body).
pub fn blocking_request(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut buf = Vec::new();
    loop {
        if let Some(head) = parse_head(&buf)? {
            let total = head.head_len + head.content_length;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((head.status, buf[head.head_len..total].to_vec()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET`/`POST` without a body, for the bench servers' `/_bench/...` control endpoints.
pub fn control(addr: SocketAddr, method: &str, path: &str) -> io::Result<(u16, String)> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = blocking_request(addr, req.as_bytes(), Duration::from_secs(10))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Microseconds since the Unix epoch (comparable across the bench processes).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// User + system CPU seconds used so far by process `pid` (all its threads), from
/// `/proc/PID/stat` (ticks of 1/100 s, Linux's USER_HZ on every mainstream platform).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// A value from a flat JSON object printed by one of the bench processes.
pub fn json_u64(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64()).unwrap_or(0)
}
