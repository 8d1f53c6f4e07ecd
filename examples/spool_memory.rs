//! What the log spool's in-memory state costs per event: builds a [`State`] by applying
//! event records as the writer does, and prints the growth of this process's resident
//! memory per event, for three cases: events pending on 3 routes (a backlog), the same
//! events each attempted once on every route and due again (a backlog while the destination
//! refuses connections: each entry has its attempt count and last error), and events
//! delivered but remembered for dedup (the `dedup_window`).
//!
//! ```sh
//! cargo run --release --example spool_memory -- [events] [pending|retried|remembered]
//! ```
//!
//! One case per run (default: 1,000,000 events, pending): memory an allocator got back
//! is not returned to the kernel, so a second case in the same process would read 0. Also
//! prints how long a checkpoint's snapshot of that state takes under the writer's lock, and
//! the longest apply of one event record (the dedup index growing), which the writer also
//! does under that lock, and the state's checkpoint: its size and how long it takes to
//! encode and to decode (maintenance encodes one off the ack path; a restart decodes one).

use std::time::{Duration, Instant};

use hookfan::spool::record::RouteDue;
use hookfan::spool::{checkpoint, EventRecord, Location, Record, State};

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm's resident field");
    pages * 4096
}

/// What [`per_event`] measured.
struct Figures {
    /// RSS growth per event, in bytes.
    bytes: f64,
    /// How long a checkpoint's snapshot of the state takes (the writer waits for it).
    snapshot: Duration,
    /// The longest apply of one event record.
    longest_apply: Duration,
    /// A checkpoint of the state: its size, how long encoding and decoding it take.
    checkpoint_bytes: usize,
    encode: Duration,
    decode: Duration,
}

/// What happens to each event on its 3 routes right after it is stored.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Nothing,
    /// A failed attempt, with reqwest's words for a refused connection.
    Retried,
    Delivered,
}

/// The error of an attempt the destination refused, as the HTTP sink words it.
const REFUSED: &str = "error sending request for url (http://127.0.0.1:18081/r1): client error \
                       (Connect): tcp connect error: Connection refused (os error 111)";

/// Applies `n` events (webhook ids of 36 characters, as Stream's UUIDs) to a fresh state,
/// then what `then` says on each of their 3 routes.
fn per_event(n: u64, then: Then) -> Figures {
    let before = rss_bytes();
    let mut state = State::new();
    let names = ["a", "b", "c"];
    for (id, name) in names.iter().enumerate() {
        state.apply(
            id as u64 + 1,
            Location {
                segment: 1,
                offset: 0,
                len: 1,
            },
            &Record::Route {
                id: id as u32,
                name,
            },
        );
    }
    let mut lsn = 10;
    let mut longest_apply = Duration::ZERO;
    for i in 0..n {
        let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919);
        let record = Record::Event(EventRecord {
            webhook_id: Some(&id),
            received_at_ms: 1_800_000_000_000 + i,
            api_key: None,
            signature: "s",
            event_type: None,
            path: None,
            trace: None,
            body: b"{}",
            routes: (0..3)
                .map(|r| RouteDue::new(r, 1_800_000_000_000 + i))
                .collect::<Vec<_>>()
                .into(),
        });
        let location = Location {
            segment: 1 + lsn / 30_000,
            offset: 40 + (lsn % 30_000) * 1100,
            len: 1100,
        };
        let started = Instant::now();
        state.apply(lsn, location, &record);
        longest_apply = longest_apply.max(started.elapsed());
        let seq = lsn;
        lsn += 1;
        for route in 0..3 {
            let record = match then {
                Then::Nothing => break,
                Then::Delivered => Record::Delivered { route, seq },
                Then::Retried => Record::Retry {
                    route,
                    seq,
                    due_ms: 1_800_000_100_000 + i,
                    attempts: 1,
                    error: REFUSED,
                },
            };
            state.apply(lsn, location, &record);
            lsn += 1;
        }
    }
    let bytes = rss_bytes().saturating_sub(before) as f64 / n as f64;
    let started = Instant::now();
    let snapshot = state.snapshot();
    let took = started.elapsed();
    std::hint::black_box((&state, &snapshot));
    let started = Instant::now();
    let file = checkpoint::encode(&state);
    let encode = started.elapsed();
    let started = Instant::now();
    let back = checkpoint::decode(&file).expect("the checkpoint decodes");
    let decode = started.elapsed();
    assert_eq!(back.state.live_events(), state.live_events());
    Figures {
        bytes,
        snapshot: took,
        longest_apply,
        checkpoint_bytes: file.len(),
        encode,
        decode,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (case, f) = match args.next().as_deref() {
        None | Some("pending") => ("events pending on 3 routes", per_event(n, Then::Nothing)),
        Some("retried") => (
            "events pending on 3 routes, each attempted once there",
            per_event(n, Then::Retried),
        ),
        Some("remembered") => (
            "events delivered, their ids remembered",
            per_event(n, Then::Delivered),
        ),
        Some(other) => panic!("unknown case {other:?}: pending, retried or remembered"),
    };
    println!(
        "{n} {case}: {:.0} bytes of memory each; a checkpoint's snapshot taken in {:.2?}; longest apply of one event {:.2?}",
        f.bytes, f.snapshot, f.longest_apply
    );
    println!(
        "its checkpoint: {:.1} MiB, encoded in {:.2?}, decoded in {:.2?}",
        f.checkpoint_bytes as f64 / (1 << 20) as f64,
        f.encode,
        f.decode
    );
}
