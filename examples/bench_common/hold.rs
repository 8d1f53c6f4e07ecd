//! What the benchmark's fake destinations share: "hold" (accept requests but do not answer
//! them until released: a destination that is down without refusing connections, so the
//! route's worker does not spin on retries), delivery counting with first/last timestamps,
//! and the `/_bench/...` control endpoints the suite drives.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::watch;

/// Counts what a fake destination received.
#[derive(Default)]
struct Counts {
    total: u64,
    /// (path, webhook id) pairs seen, to tell a redelivery from a new event.
    unique: HashSet<(u32, String)>,
    per_path: HashMap<String, u64>,
    paths: HashMap<String, u32>,
    first_us: u64,
    last_us: u64,
}

pub struct Destination {
    counts: Mutex<Counts>,
    /// Path prefixes held ("" holds everything).
    held: Mutex<Vec<String>>,
    generation: watch::Sender<u64>,
    track_unique: bool,
}

impl Destination {
    pub fn new(hold: &[String], track_unique: bool) -> Destination {
        Destination {
            counts: Mutex::default(),
            held: Mutex::new(hold.to_vec()),
            generation: watch::Sender::new(0),
            track_unique,
        }
    }

    fn is_held(&self, path: &str) -> bool {
        self.held
            .lock()
            .expect("held lock")
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }

    /// Waits while `path` is held.
    pub async fn wait_released(&self, path: &str) {
        let mut rx = self.generation.subscribe();
        while self.is_held(path) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Counts `n` deliveries of (`path`, `id`).
    pub fn record<'a>(&self, path: &str, ids: impl Iterator<Item = &'a str>) {
        let now = super::now_us();
        let mut c = self.counts.lock().expect("counts lock");
        let next = c.paths.len() as u32;
        let p = *c.paths.entry(path.to_string()).or_insert(next);
        let mut n = 0;
        for id in ids {
            n += 1;
            if self.track_unique {
                c.unique.insert((p, id.to_string()));
            }
        }
        c.total += n;
        *c.per_path.entry(path.to_string()).or_default() += n;
        if c.first_us == 0 {
            c.first_us = now;
        }
        c.last_us = now;
    }

    /// Handles `/_bench/stats`, `/_bench/reset`, `/_bench/hold?p=/x`, `/_bench/release?p=/x`
    /// (no `p`: everything). Returns the JSON answer.
    pub fn control(&self, path: &str, query: Option<&str>) -> Option<String> {
        let prefix = query
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("p=")))
            .unwrap_or("")
            .to_string();
        match path {
            "/_bench/stats" => {}
            "/_bench/reset" => *self.counts.lock().expect("counts lock") = Counts::default(),
            "/_bench/hold" => self.held.lock().expect("held lock").push(prefix),
            "/_bench/release" => {
                self.held
                    .lock()
                    .expect("held lock")
                    .retain(|p| !prefix.is_empty() && *p != prefix);
                self.generation.send_modify(|g| *g += 1);
            }
            _ => return None,
        }
        let c = self.counts.lock().expect("counts lock");
        Some(
            serde_json::json!({
                "total": c.total,
                "unique": c.unique.len(),
                "per_path": c.per_path,
                "first_us": c.first_us,
                "last_us": c.last_us,
                "held": *self.held.lock().expect("held lock"),
            })
            .to_string(),
        )
    }
}
