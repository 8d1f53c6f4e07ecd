//! Route matching: which routes want an event, decided from its `type` alone.
//!
//! Pure and allocation-free on the hot path: no I/O, no clock, no config lookups. Semantics
//! follow Stream's own `event_types`: an empty list takes every event, including types Stream
//! adds later and bodies without a `type`; a list takes only what it names. An entry may be a
//! glob where `*` matches any run of characters (`message.*`, `*.deleted`); an entry without
//! `*` is matched exactly.

/// Which event types a route takes.
///
/// ```
/// use hookfan::route::EventFilter;
///
/// let everything = EventFilter::new::<&str>(&[]).unwrap();
/// assert!(everything.matches(Some("a.type.stream.adds.next.year")));
/// assert!(everything.matches(None)); // a body without a `type`
///
/// let chat = EventFilter::new(&["message.new", "moderation.*", "*.deleted"]).unwrap();
/// assert!(chat.matches(Some("moderation.flagged")));
/// assert!(chat.matches(Some("channel.deleted")));
/// assert!(!chat.matches(Some("message.updated")));
/// assert!(!chat.matches(None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    /// Empty means every event.
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// The literal pieces between `*`s, e.g. `*.deleted` is `["", ".deleted"]`.
    Glob(Vec<String>),
}

impl EventFilter {
    /// A filter taking every event.
    pub fn all() -> Self {
        EventFilter {
            patterns: Vec::new(),
        }
    }

    /// Builds a filter from `event_types`; on error, the index of every bad entry and why.
    pub fn new<S: AsRef<str>>(event_types: &[S]) -> Result<Self, Vec<(usize, String)>> {
        let mut patterns = Vec::with_capacity(event_types.len());
        let mut errors = Vec::new();
        for (i, entry) in event_types.iter().enumerate() {
            let entry = entry.as_ref();
            if entry.is_empty() || entry.chars().any(char::is_whitespace) {
                errors.push((
                    i,
                    format!("event type \"{entry}\" is empty or contains white space (write message.new, or a glob like message.*)"),
                ));
                continue;
            }
            patterns.push(if entry.contains('*') {
                Pattern::Glob(entry.split('*').map(str::to_string).collect())
            } else {
                Pattern::Exact(entry.to_string())
            });
        }
        if errors.is_empty() {
            Ok(EventFilter { patterns })
        } else {
            Err(errors)
        }
    }

    pub fn takes_everything(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether an event of this type (None: the body has no string `type`) goes to the route.
    pub fn matches(&self, event_type: Option<&str>) -> bool {
        if self.patterns.is_empty() {
            return true;
        }
        let Some(t) = event_type else { return false };
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(name) => name == t,
            Pattern::Glob(parts) => glob_match(parts, t),
        })
    }

    /// The list as written, for route tables.
    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            return "* (every event)".to_string();
        }
        self.patterns
            .iter()
            .map(|p| match p {
                Pattern::Exact(n) => n.clone(),
                Pattern::Glob(parts) => parts.join("*"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `parts` are the literals between `*`s: the first must prefix `text`, the last must suffix
/// it, and the middle ones must appear in order in between.
fn glob_match(parts: &[String], text: &str) -> bool {
    let (first, rest) = parts.split_first().expect("split yields at least one part");
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_table() {
        // (event_types, event type, expected)
        let table: &[(&[&str], Option<&str>, bool)] = &[
            (&[], Some("message.new"), true),
            (&[], Some("totally.made.up"), true),
            (&[], None, true),
            (&["message.new"], Some("message.new"), true),
            (&["message.new"], Some("message.newer"), false),
            (&["message.new"], Some("message"), false),
            (&["message.new"], None, false),
            (&["message.*"], Some("message.new"), true),
            (&["message.*"], Some("message."), true),
            (&["message.*"], Some("messages.new"), false),
            (&["*.deleted"], Some("channel.deleted"), true),
            (&["*.deleted"], Some("channel.deleted.not"), false),
            (&["moderation.*"], Some("moderation.flagged"), true),
            (&["call.*.ended"], Some("call.session.ended"), true),
            (&["call.*.ended"], Some("call.ended"), false),
            (&["*"], Some("anything"), true),
            (&["*"], None, false),
            (&["a*a"], Some("a"), false),
            (&["a*a"], Some("aa"), true),
            (
                &["user.banned", "user.unbanned"],
                Some("user.unbanned"),
                true,
            ),
            (
                &["user.banned", "user.unbanned"],
                Some("user.deleted"),
                false,
            ),
            (&["Message.New"], Some("message.new"), false),
        ];
        for (types, event, want) in table {
            let filter = EventFilter::new(types).unwrap();
            assert_eq!(
                filter.matches(*event),
                *want,
                "event_types {types:?} with type {event:?}"
            );
        }
    }

    #[test]
    fn rejects_empty_and_spaced_entries_with_their_index() {
        let bad: Vec<usize> = EventFilter::new(&["ok", "", "a b"])
            .unwrap_err()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(bad, [1, 2]);
    }
}
