//! Why a route takes an event or not, in words: `hookfan explain` and `POST /api/explain`.

use std::fmt;

use serde_json::Value;

use super::{Block, Test};
use crate::config::Route;

/// Why a body given to explain is not an event it can judge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEvent {
    /// Over `max_body_bytes`, as received or once gunzipped: the listener answers 413.
    #[error("over max_body_bytes ({limit}): the listener would refuse it (413)")]
    TooLarge { limit: usize },
    /// Broken gzip, not JSON, or JSON but not an object: the listener answers 400.
    #[error("{0}: the listener would refuse it (400)")]
    Unreadable(String),
}

/// The event of an explain request (`hookfan explain`'s file, `POST /api/explain`'s body):
/// gunzipped as the listener does (`Content-Encoding: gzip`, or gzip's magic bytes), at most
/// `limit` bytes, and a JSON object, as the listener requires.
pub fn read_event(
    headers: &axum::http::HeaderMap,
    body: bytes::Bytes,
    limit: usize,
) -> Result<Value, NotAnEvent> {
    use crate::ingest::verify::{decode, Rejection};
    let body = match decode(headers, body, limit) {
        Ok(body) if body.len() <= limit => body,
        Ok(_) | Err(Rejection::TooLarge { .. }) => return Err(NotAnEvent::TooLarge { limit }),
        Err(e) => return Err(NotAnEvent::Unreadable(e.to_string())),
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(event @ Value::Object(_)) => Ok(event),
        Ok(_) => Err(NotAnEvent::Unreadable(
            "the body is JSON but not an object".into(),
        )),
        Err(e) => Err(NotAnEvent::Unreadable(format!(
            "the body is not JSON ({e})"
        ))),
    }
}

/// Every route's verdict on one event, in config order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Explained {
    /// The event's `type` (null when the body has no string one).
    pub event_type: Option<String>,
    /// The request path it was taken as posted to.
    pub path: String,
    pub routes: Vec<Verdict>,
}

/// One route's verdict: it takes the event, or the first reason it does not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub route: String,
    pub takes: bool,
    /// Why not, in words (`event type "reaction.new" not in [message.*]`); null when it
    /// takes the event.
    #[serde(serialize_with = "display_opt")]
    pub skip: Option<Skip>,
}

/// Why a route does not take an event. The checks run in this order, and the first that
/// fails is the reason.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    Disabled,
    EventType {
        event_type: Option<String>,
        wanted: String,
    },
    Path {
        path: String,
        wanted: String,
    },
    /// A `match:` condition does not hold, or a `not:` one does.
    Content {
        block: Block,
        field: String,
        test: Test,
        /// What the path reached in the body (empty: nothing).
        found: Vec<Value>,
    },
}

/// The verdict of every route on the event of `body` (parsed whole; a body that is not a
/// JSON object reaches nothing by any path) posted to `path`.
pub fn explain(routes: &[Route], body: Option<&Value>, path: &str) -> Explained {
    let event_type = body.and_then(|b| b.get("type")).and_then(Value::as_str);
    let routes = routes
        .iter()
        .map(|r| {
            let skip = if !r.enabled {
                Some(Skip::Disabled)
            } else if !r.filter.matches(event_type) {
                Some(Skip::EventType {
                    event_type: event_type.map(str::to_string),
                    wanted: r.filter.describe(),
                })
            } else if !r.paths.matches(path) {
                Some(Skip::Path {
                    path: path.to_string(),
                    wanted: r.paths.describe(),
                })
            } else {
                r.content.refusal(body).map(|refused| Skip::Content {
                    block: refused.block,
                    field: refused.condition.path.to_string(),
                    test: refused.condition.test.clone(),
                    found: refused.found,
                })
            };
            Verdict {
                route: r.name.clone(),
                takes: skip.is_none(),
                skip,
            }
        })
        .collect();
    Explained {
        event_type: event_type.map(str::to_string),
        path: path.to_string(),
        routes,
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Disabled => f.write_str("disabled"),
            Skip::EventType {
                event_type: Some(t),
                wanted,
            } => write!(f, "event type \"{t}\" not in [{wanted}]"),
            Skip::EventType {
                event_type: None,
                wanted,
            } => write!(
                f,
                "the body has no string type, and the route takes only [{wanted}]"
            ),
            Skip::Path { path, wanted } => write!(f, "path \"{path}\" not in [{wanted}]"),
            Skip::Content {
                block,
                field,
                test,
                found,
            } => {
                write!(f, "{field} is ")?;
                if found.is_empty() {
                    f.write_str("absent")?;
                } else {
                    found_values(f, found)?;
                }
                match block {
                    Block::Match => write!(f, ", wanted {test}"),
                    Block::Not => write!(f, ", excluded by not: {test}"),
                }
            }
        }
    }
}

/// Up to three values as compact JSON (each cut at 60 characters), then how many more.
fn found_values(f: &mut fmt::Formatter<'_>, found: &[Value]) -> fmt::Result {
    const SHOWN: usize = 3;
    for (i, value) in found.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        let text = value.to_string();
        match text.char_indices().nth(60) {
            Some((cut, _)) => write!(f, "{}…", &text[..cut])?,
            None => f.write_str(&text)?,
        }
    }
    if found.len() > SHOWN {
        write!(f, " (and {} more)", found.len() - SHOWN)?;
    }
    Ok(())
}

fn display_opt<S: serde::Serializer>(skip: &Option<Skip>, s: S) -> Result<S::Ok, S::Error> {
    match skip {
        Some(skip) => s.collect_str(skip),
        None => s.serialize_none(),
    }
}
