//! The floor of durable ingest on this machine: the least work any spool that answers 200 only
//! after `fdatasync` must do, as a tiny server the suite runs beside bare axum and hookfan.
//!
//! Copied from the team's `durable-floor` tool (`../shared/tools/durable-floor/src/main.rs`
//! next to this repository, which a fresh clone does not have), with the same behaviour, and
//! adapted to the suite: the HMAC secret defaults to the one `bench_load` signs with (`--secret`
//! or `FLOOR_SECRET` to change it), the preallocated file is 256 MiB by default (`--file-mib`)
//! instead of 1 GiB so that it starts in a moment, the address comes from `--listen` (port 0:
//! any free port) and it prints `floor listening on http://ADDR` on stderr once ready.
//!
//! POST (any path) → HMAC-SHA256 of the body checked against `X-Signature` (hex) → JSON `type`
//! read (borrowed, no allocation) → record framed into the current group → one `pwrite` + one
//! `fdatasync` per group on a zero-filled, preallocated file (wrapping to its start when full),
//! on a writer thread (`floor-writer`) while the next group fills → `200 stored` once the sync
//! covering the request has returned. `--nosync` skips the `fdatasync`.
//!
//! It does not dedup, route, keep queue entries, checkpoint, recover, compact, deliver or count
//! anything: a real spool must do all that on top of this.
//!
//! ```sh
//! cargo run --release --example bench_floor -- --listen 127.0.0.1:0 --dir /tmp/floor-data
//! cargo run --release --example bench_floor -- --listen 127.0.0.1:0 --dir /tmp/floor-data2 --nosync
//! ```

#[path = "bench_common/mod.rs"]
mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use axum::{body::Bytes, http::HeaderMap, http::StatusCode, routing::post, Router};
use clap::Parser;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Parser)]
struct Args {
    /// IP:PORT to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Directory of the preallocated log file (`segment.log`).
    #[arg(long, default_value = "/tmp/bench-floor")]
    dir: PathBuf,
    /// Size of the zero-filled, preallocated log file, in MiB; writes wrap to its start.
    #[arg(long, default_value_t = 256)]
    file_mib: u64,
    /// HMAC-SHA256 secret for `X-Signature` (default: the one `bench_load` signs with).
    #[arg(long, env = "FLOOR_SECRET", default_value = common::API_SECRET)]
    secret: String,
    /// Skip the fdatasync (the group is still written with one pwrite).
    #[arg(long)]
    nosync: bool,
}

#[derive(serde::Deserialize)]
struct Typed<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<&'a str>,
}

struct Group {
    buf: Vec<u8>,
    next_seq: u64,
}

struct Log {
    group: Mutex<Group>,
    wake: Condvar,
    durable: tokio::sync::watch::Sender<u64>,
    mac: Hmac<Sha256>,
}

fn writer(log: Arc<Log>, file: std::fs::File, file_bytes: u64, sync: bool) {
    let mut off = 0u64;
    let mut spare = Vec::with_capacity(1 << 20);
    loop {
        let (buf, upto) = {
            let mut g = log.group.lock().expect("group lock");
            while g.buf.is_empty() {
                g = log.wake.wait(g).expect("group lock");
            }
            std::mem::swap(&mut g.buf, &mut spare);
            (std::mem::take(&mut spare), g.next_seq)
        };
        if off + buf.len() as u64 > file_bytes {
            off = 0;
        }
        file.write_all_at(&buf, off).expect("pwrite");
        off += buf.len() as u64;
        if sync {
            file.sync_data().expect("fdatasync");
        }
        log.durable.send_replace(upto);
        spare = buf;
        spare.clear();
    }
}

async fn ingest(log: Arc<Log>, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let Some(sig) = headers
        .get("x-signature")
        .and_then(|v| hex::decode(v.as_bytes()).ok())
    else {
        return (StatusCode::UNAUTHORIZED, "no signature\n");
    };
    let mut mac = log.mac.clone();
    mac.update(&body);
    if mac.verify_slice(&sig).is_err() {
        return (StatusCode::UNAUTHORIZED, "bad signature\n");
    }
    let Ok(t) = serde_json::from_slice::<Typed>(&body) else {
        return (StatusCode::BAD_REQUEST, "not json\n");
    };
    let kind_len = t.kind.map_or(0, |k| k.len());
    let id = headers
        .get("x-webhook-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let seq = {
        let mut g = log.group.lock().expect("group lock");
        let was_empty = g.buf.is_empty();
        g.buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        g.buf.extend_from_slice(&(id.len() as u16).to_le_bytes());
        g.buf.extend_from_slice(&(kind_len as u16).to_le_bytes());
        g.buf.extend_from_slice(id);
        g.buf.extend_from_slice(&body);
        g.next_seq += 1;
        if was_empty {
            log.wake.notify_one();
        }
        g.next_seq
    };
    let mut rx = log.durable.subscribe();
    let _ = rx.wait_for(|d| *d >= seq).await;
    (StatusCode::OK, "stored\n")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let file_bytes = args.file_mib.max(1) << 20;
    std::fs::create_dir_all(&args.dir).expect("create the floor's directory");
    let path = args.dir.join("segment.log");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("open the floor's log file");
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(file_bytes >> 20) {
        file.write_all(&zeros).expect("preallocate the log file");
    }
    file.sync_all().expect("sync the preallocated log file");
    let (tx, _) = tokio::sync::watch::channel(0u64);
    let log = Arc::new(Log {
        group: Mutex::new(Group {
            buf: Vec::with_capacity(1 << 20),
            next_seq: 0,
        }),
        wake: Condvar::new(),
        durable: tx,
        mac: Hmac::<Sha256>::new_from_slice(args.secret.as_bytes())
            .expect("HMAC takes any key length"),
    });
    let l2 = log.clone();
    let sync = !args.nosync;
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || writer(l2, file, file_bytes, sync))
        .expect("start the writer thread");
    let app = Router::new().fallback(post(move |h: HeaderMap, b: Bytes| {
        ingest(log.clone(), h, b)
    }));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .expect("bind the floor's listener");
    let addr = listener.local_addr().expect("local address");
    eprintln!(
        "floor listening on http://{addr} ({} MiB file, {})",
        file_bytes >> 20,
        if sync {
            "fdatasync per group"
        } else {
            "nosync"
        }
    );
    axum::serve(listener, app).await.expect("serve");
}
