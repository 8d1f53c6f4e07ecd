//! The `file` destination: JSON Lines appended to a local file, the quickstart's
//! zero-dependency destination. Each line is `{"webhook_id", "received_at", "type", "event"}`
//! and is fsynced before the event counts as delivered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{error_chain, Outcome};
use crate::config::FileDestination;
use crate::spool::StoredEvent;

/// Most lines appended (and fsynced) together.
pub const MAX_BATCH: usize = 256;

pub struct FileSink {
    path: PathBuf,
    /// Opened on first use and kept open; reopened after an error.
    file: Arc<Mutex<Option<File>>>,
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
        let path = self.path.clone();
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut guard = file.lock().expect("file sink lock");
            if guard.is_none() {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                *guard = Some(OpenOptions::new().create(true).append(true).open(&path)?);
            }
            let f = guard.as_mut().expect("opened above");
            let before = f.metadata()?.len();
            let result = f.write_all(text.as_bytes()).and_then(|()| f.sync_data());
            if result.is_err() {
                // Cut a half-written batch off, so the retry does not follow a broken line.
                let _ = f.set_len(before);
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
