//! The `file` destination: JSON Lines appended to a local file, the quickstart's
//! zero-dependency destination. Each line is `{"webhook_id", "received_at", "type", "event"}`
//! and is fsynced before the event counts as delivered. Each time the file is opened (first
//! use, and after an error) its directory is synced too, and the parents of any directory
//! made for it, so a power cut cannot take a new file, or a new directory, with the lines in
//! it. A file has one route writing it (the config refuses two), so a batch that failed can
//! be cut back off.
//!
//! The file is reached through [`Appender`]: the real one is opened `O_APPEND`; tests use a
//! file on the spool's simulated disk, whose power cut keeps only what was synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{error_chain, Outcome};
use crate::config::FileDestination;
#[cfg(test)]
use crate::spool::storage::{SegmentFile, Storage};
use crate::spool::StoredEvent;

/// Most lines appended (and fsynced) together.
pub const MAX_BATCH: usize = 256;

pub struct FileSink {
    /// As the config names it (for error messages).
    path: PathBuf,
    at: Arc<Place>,
    /// Opened on first use and kept open; reopened after an error.
    file: Arc<Mutex<Option<Box<dyn Appender>>>>,
}

/// Where the lines go.
enum Place {
    /// A file of the real disk.
    Real(PathBuf),
    /// A file of a [`Storage`]: the simulated disk, in tests.
    #[cfg(test)]
    In(Arc<dyn Storage>, String),
}

/// The operations appending a batch of lines needs.
trait Appender: Send {
    /// Its length now.
    fn len(&self) -> io::Result<u64>;
    /// Writes `bytes` at its end.
    fn append(&self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Cuts it back to `len`: a batch half written is taken back.
    fn cut(&self, len: u64) -> io::Result<()>;
}

impl Appender for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        (&mut &*self).write_all(bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn cut(&self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

#[cfg(test)]
impl Appender for Arc<dyn SegmentFile> {
    fn len(&self) -> io::Result<u64> {
        self.size()
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.write_at(bytes, self.size()?)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn cut(&self, len: u64) -> io::Result<()> {
        self.truncate(len)
    }
}

impl Place {
    /// Opens the file, creating it (and its directories) if needed, then makes its entry
    /// durable: its directory is synced, and the parent of each directory made for it. On
    /// every open, not only when it creates the file: an open after an error may follow one
    /// whose directory sync failed.
    fn open(&self) -> io::Result<Box<dyn Appender>> {
        match self {
            Place::Real(path) => {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let made = create_dirs(dir)?;
                let file = OpenOptions::new().append(true).create(true).open(path)?;
                sync_dir(dir)?;
                for made in &made {
                    sync_dir(made.parent().unwrap_or(Path::new(".")))?;
                }
                Ok(Box::new(file))
            }
            #[cfg(test)]
            Place::In(storage, name) => {
                let file = match storage.open(name) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => storage.create(name)?,
                    Err(e) => return Err(e),
                };
                storage.sync_dir()?;
                Ok(Box::new(file))
            }
        }
    }
}

/// Creates `dir` and whatever parents of it are missing; returns the directories it made.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    Ok(missing)
}

/// fsyncs a directory, making the entries in it durable. A directory that cannot be opened
/// for reading (write and search only) cannot be synced: that is logged, not refused, as
/// before this sync existed.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            tracing::warn!(dir = %dir.display(), "file destination: cannot open the directory to sync it (no read permission); a power cut may lose a file just created in it");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[derive(Serialize)]
struct Line<'a> {
    webhook_id: Option<&'a str>,
    received_at: String,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    /// The path and query it was posted to, when not `/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    event: &'a RawValue,
}

impl FileSink {
    pub fn new(d: &FileDestination) -> Self {
        FileSink {
            path: d.path.clone(),
            at: Arc::new(Place::Real(d.path.clone())),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// A sink appending to the file `name` of `storage` (the simulated disk, in tests).
    #[cfg(test)]
    fn in_storage(storage: Arc<dyn Storage>, name: &str) -> Self {
        FileSink {
            path: PathBuf::from(name),
            at: Arc::new(Place::In(storage, name.to_string())),
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// Appends one line per event with one write and one fsync. An event that cannot be
    /// rendered fails alone; an I/O error fails (and retries) the whole batch.
    pub async fn deliver_batch<'e>(
        &self,
        events: impl Iterator<Item = &'e StoredEvent>,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        let mut text = String::new();
        for event in events {
            match render(event) {
                Ok(line) => {
                    text.push_str(&line);
                    outcomes.push(Outcome::Delivered);
                }
                Err(error) => outcomes.push(Outcome::Permanent { error }),
            }
        }
        if text.is_empty() {
            return outcomes;
        }
        let at = self.at.clone();
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut guard = file.lock().expect("file sink lock");
            if guard.is_none() {
                *guard = Some(at.open()?);
            }
            let f = guard.as_ref().expect("opened above");
            let before = f.len()?;
            let result = f.append(text.as_bytes()).and_then(|()| f.sync());
            if result.is_err() {
                // Cut a half-written batch off, so the retry does not follow a broken line.
                let _ = f.cut(before);
                *guard = None;
            }
            result
        })
        .await;
        let error = match written {
            Ok(Ok(())) => return outcomes,
            Ok(Err(e)) => format!(
                "cannot append to {}: {}",
                self.path.display(),
                error_chain(&e)
            ),
            Err(e) => format!("file writer task failed: {e}"),
        };
        for o in outcomes.iter_mut().filter(|o| **o == Outcome::Delivered) {
            *o = Outcome::Retry {
                after: None,
                error: error.clone(),
            };
        }
        outcomes
    }
}

/// One JSON line for `event`. The event JSON is embedded as sent, with its line breaks (which
/// JSON only allows as white space between tokens) turned into spaces so it stays one line.
fn render(event: &StoredEvent) -> Result<String, String> {
    let text = std::str::from_utf8(&event.body)
        .map_err(|e| format!("event body is not UTF-8: {e}"))?
        .replace(['\n', '\r'], " ");
    let raw = RawValue::from_string(text).map_err(|e| format!("event body is not JSON: {e}"))?;
    let received = UNIX_EPOCH + Duration::from_millis(event.received_at_ms);
    let line = Line {
        webhook_id: event.webhook_id.as_deref(),
        received_at: humantime::format_rfc3339_millis(received).to_string(),
        event_type: event.event_type.as_deref(),
        path: event.path.as_deref(),
        event: &raw,
    };
    let mut out = serde_json::to_string(&line).map_err(|e| e.to_string())?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::storage::{Fault, FaultOp};
    use crate::spool::SimDisk;

    fn event(id: &str) -> StoredEvent {
        StoredEvent {
            webhook_id: Some(id.into()),
            received_at_ms: 1_778_198_400_000,
            api_key: None,
            signature: String::new(),
            event_type: Some("message.new".into()),
            body: format!("{{\"type\":\"message.new\",\"id\":\"{id}\"}}").into_bytes(),
            path: None,
            trace: None,
        }
    }

    /// The webhook ids of the lines in `name` on `disk`, which must all be whole.
    fn ids_in(disk: &SimDisk, name: &str) -> Vec<String> {
        let file = disk.open(name).expect("the file is there");
        let mut bytes = vec![0; file.size().unwrap() as usize];
        file.read_at(&mut bytes, 0).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "a broken last line: {text:?}"
        );
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a whole line");
                v["webhook_id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    async fn deliver(sink: &FileSink, ids: &[&str]) -> Vec<Outcome> {
        let events: Vec<StoredEvent> = ids.iter().map(|id| event(id)).collect();
        sink.deliver_batch(events.iter()).await
    }

    /// What counts as delivered is on disk: a power cut after the batches were answered
    /// keeps every line of them, in a file it created (its name synced too).
    #[tokio::test]
    async fn lines_counted_delivered_survive_a_power_cut() {
        let disk = SimDisk::new(1);
        let sink = FileSink::in_storage(Arc::new(disk.clone()), "events.jsonl");
        assert_eq!(
            deliver(&sink, &["a", "b"]).await,
            [Outcome::Delivered, Outcome::Delivered]
        );
        assert_eq!(deliver(&sink, &["c"]).await, [Outcome::Delivered]);
        let after = disk.crash();
        assert_eq!(ids_in(&after, "events.jsonl"), ["a", "b", "c"]);
    }

    /// On the real disk: the directories a file needs are made, and lines appended to it
    /// across batches and reopenings.
    #[tokio::test]
    async fn on_the_real_disk_directories_are_made_and_lines_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/events.jsonl");
        let sink = FileSink::new(&FileDestination {
            path: path.clone(),
            retry: crate::config::RetryPolicy::DEFAULT,
            rate_limit: None,
        });
        assert_eq!(deliver(&sink, &["a"]).await, [Outcome::Delivered]);
        *sink.file.lock().unwrap() = None;
        assert_eq!(deliver(&sink, &["b"]).await, [Outcome::Delivered]);
        let ids: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["webhook_id"].to_string()
            })
            .collect();
        assert_eq!(ids, ["\"a\"", "\"b\""]);
    }

    /// A batch whose write or sync fails is retried whole, and the file is cut back to
    /// before it: the retry's lines follow whole lines, each event once.
    #[tokio::test]
    async fn a_batch_that_failed_is_taken_back_and_retried_whole() {
        let disk = SimDisk::new(2);
        let sink = FileSink::in_storage(Arc::new(disk.clone()), "events.jsonl");
        assert_eq!(deliver(&sink, &["a"]).await, [Outcome::Delivered]);
        for op in [FaultOp::Write, FaultOp::Sync] {
            disk.inject(op, Fault::Io);
            let failed = deliver(&sink, &["b", "c"]).await;
            assert!(
                failed.iter().all(|o| matches!(o, Outcome::Retry { .. })),
                "{op:?}: {failed:?}"
            );
            assert_eq!(ids_in(&disk, "events.jsonl"), ["a"], "{op:?}");
        }
        assert_eq!(
            deliver(&sink, &["b", "c"]).await,
            [Outcome::Delivered, Outcome::Delivered]
        );
        assert_eq!(ids_in(&disk.crash(), "events.jsonl"), ["a", "b", "c"]);
    }

    #[test]
    fn a_line_embeds_the_event_and_stays_on_one_line() {
        let event = StoredEvent {
            webhook_id: Some("w1".into()),
            received_at_ms: 1_778_198_400_123,
            api_key: None,
            signature: String::new(),
            event_type: Some("message.new".into()),
            body: b"{\"type\":\"message.new\",\n \"text\":\"a\\nb\",\"n\":1778198400000000000}"
                .to_vec(),
            path: None,
            trace: None,
        };
        let line = render(&event).unwrap();
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["webhook_id"], "w1");
        assert_eq!(v["received_at"], "2026-05-08T00:00:00.123Z");
        assert_eq!(v["type"], "message.new");
        assert_eq!(v["event"]["text"], "a\nb");
        assert!(
            line.contains("1778198400000000000"),
            "big numbers are kept as sent"
        );
        assert!(v.get("path").is_none(), "no path for /: {line}");

        let posted_elsewhere = StoredEvent {
            path: Some("/pending/commit?x=1".into()),
            ..event
        };
        let v: serde_json::Value =
            serde_json::from_str(&render(&posted_elsewhere).unwrap()).unwrap();
        assert_eq!(v["path"], "/pending/commit?x=1");
    }
}
