//! `event_types` and `paths`: which types and request paths a route takes. Semantics follow
//! Stream's own `event_types`: an empty list takes every event, including types Stream adds
//! later and bodies without a `type`; a list takes only what it names. An entry may be a glob
//! where `*` matches any run of characters (`message.*`, `*.deleted`); an entry without `*`
//! is matched exactly. `paths` work the same way on the request path (without its query):
//! absent or empty takes every path.

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
    patterns: Patterns,
}

impl EventFilter {
    /// A filter taking every event.
    pub fn all() -> Self {
        EventFilter {
            patterns: Patterns(Vec::new()),
        }
    }

    /// Builds a filter from `event_types`; on error, the index of every bad entry and why.
    pub fn new<S: AsRef<str>>(event_types: &[S]) -> Result<Self, Vec<(usize, String)>> {
        Patterns::new(event_types, |entry| {
            (entry.is_empty() || entry.chars().any(char::is_whitespace)).then(|| {
                format!("event type \"{entry}\" is empty or contains white space (write message.new, or a glob like message.*)")
            })
        })
        .map(|patterns| EventFilter { patterns })
    }

    pub fn takes_everything(&self) -> bool {
        self.patterns.0.is_empty()
    }

    /// Whether an event of this type (None: the body has no string `type`) goes to the route.
    pub fn matches(&self, event_type: Option<&str>) -> bool {
        if self.patterns.0.is_empty() {
            return true;
        }
        event_type.is_some_and(|t| self.patterns.matches(t))
    }

    /// The list as written, for route tables.
    pub fn describe(&self) -> String {
        self.patterns.describe("* (every event)")
    }
}

/// Which request paths a route takes (`paths:`), matched on the path without its query.
///
/// ```
/// use hookfan::route::PathFilter;
///
/// let every = PathFilter::all();
/// assert!(every.matches("/anything"));
/// let pending = PathFilter::new(&["/pending/*"]).unwrap();
/// assert!(pending.matches("/pending/commit"));
/// assert!(!pending.matches("/stream"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFilter {
    /// Empty means every path.
    patterns: Patterns,
}

impl PathFilter {
    /// A filter taking every path (no `paths:` key).
    pub fn all() -> Self {
        PathFilter {
            patterns: Patterns(Vec::new()),
        }
    }

    /// Builds a filter from `paths`; on error, the index of every bad entry and why.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Self, Vec<(usize, String)>> {
        Patterns::new(paths, |entry| {
            if !(entry.starts_with('/') || entry.starts_with('*')) {
                Some(format!("path \"{entry}\" must start with / (like /stream or /pending/*)"))
            } else if entry.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                Some(format!("path \"{entry}\" contains white space, ? or #: paths are matched without their query"))
            } else {
                None
            }
        })
        .map(|patterns| PathFilter { patterns })
    }

    pub fn takes_every_path(&self) -> bool {
        self.patterns.0.is_empty()
    }

    /// Whether a webhook posted to `path` (without its query) goes to the route.
    pub fn matches(&self, path: &str) -> bool {
        self.patterns.0.is_empty() || self.patterns.matches(path)
    }

    /// The list as written, for route tables.
    pub fn describe(&self) -> String {
        self.patterns.describe("* (every path)")
    }
}

/// Exact names and `*` globs; what an empty list means is the wrapper's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Patterns(Vec<Pattern>);

/// One name or glob: the unit of `event_types`, `paths` and string values of `match:`.
///
/// ```
/// use hookfan::route::Pattern;
///
/// assert!(Pattern::new("bot-*").matches("bot-7"));
/// assert!(!Pattern::new("bot-*").matches("robot-7"));
/// assert!(Pattern::new("admin").matches("admin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// The literal pieces between `*`s, e.g. `*.deleted` is `["", ".deleted"]`.
    Glob(Vec<String>),
}

impl Pattern {
    /// `*` matches any run of characters; without one, the text must be equal.
    pub fn new(entry: &str) -> Self {
        if entry.contains('*') {
            Pattern::Glob(entry.split('*').map(str::to_string).collect())
        } else {
            Pattern::Exact(entry.to_string())
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(name) => name == text,
            Pattern::Glob(parts) => glob_match(parts, text),
        }
    }

    /// As written.
    pub fn source(&self) -> String {
        match self {
            Pattern::Exact(n) => n.clone(),
            Pattern::Glob(parts) => parts.join("*"),
        }
    }
}

impl Patterns {
    /// Every entry that `invalid` finds fault with is reported, with its index.
    fn new<S: AsRef<str>>(
        entries: &[S],
        invalid: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Vec<(usize, String)>> {
        let mut patterns = Vec::with_capacity(entries.len());
        let mut errors = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.as_ref();
            if let Some(why) = invalid(entry) {
                errors.push((i, why));
                continue;
            }
            patterns.push(Pattern::new(entry));
        }
        if errors.is_empty() {
            Ok(Patterns(patterns))
        } else {
            Err(errors)
        }
    }

    fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|p| p.matches(text))
    }

    fn describe(&self, empty: &str) -> String {
        if self.0.is_empty() {
            return empty.to_string();
        }
        self.0
            .iter()
            .map(Pattern::source)
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
    fn paths_table() {
        // (paths, request path, expected)
        let table: &[(&[&str], &str, bool)] = &[
            (&[], "/", true),
            (&[], "/anything/at/all", true),
            (&["/pending/*"], "/pending/commit", true),
            (&["/pending/*"], "/pending/", true),
            (&["/pending/*"], "/pending", false),
            (&["/pending/*"], "/stream/pending/x", false),
            (&["/stream"], "/stream", true),
            (&["/stream"], "/stream/", false),
            (&["*/commit"], "/pending/commit", true),
            (&["/a", "/b/*"], "/b/c", true),
            (&["/a", "/b/*"], "/c", false),
        ];
        for (paths, path, want) in table {
            let filter = PathFilter::new(paths).unwrap();
            assert_eq!(filter.matches(path), *want, "paths {paths:?} with {path:?}");
        }
    }

    #[test]
    fn rejects_paths_that_cannot_match_with_their_index() {
        let bad: Vec<usize> = PathFilter::new(&["/ok", "relative", "/with?query", "/a b", "*x"])
            .unwrap_err()
            .iter()
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(bad, [1, 2, 3]);
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
