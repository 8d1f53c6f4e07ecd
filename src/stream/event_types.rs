//! The event types Stream documents, for `hookfan check`'s warning about `event_types`
//! entries that name none of them (a docs-table name like `ActivityAddedEvent` copied instead
//! of `feeds.activity.added`, or a typo).
//!
//! The list is `event_types.txt` beside this file: one type a line, sorted, with the sources it
//! was taken from in its `#` header. It only ever causes a warning: an unknown type is never
//! an error, since Stream adds types and hookfan must route them (an empty `event_types` takes
//! them all).

use std::sync::LazyLock;

/// The list as shipped: `#` lines are comments.
const LIST: &str = include_str!("event_types.txt");

static KNOWN: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut types: Vec<&str> = LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    types.sort_unstable();
    types.dedup();
    types
});

/// Whether Stream documents this exact type.
pub fn is_known(event_type: &str) -> bool {
    KNOWN.binary_search(&event_type).is_ok()
}

/// Up to `n` known types closest to `entry`, best first: those sharing the most words with it
/// (`ActivityAddedEvent` shares "activity" and "added" with `feeds.activity.added`), then by
/// spelling (a typo like `mesage.new`).
pub fn closest(entry: &str, n: usize) -> Vec<&'static str> {
    let ours = words(entry);
    let squashed = ours.concat();
    let mut scored: Vec<(usize, f64, &'static str)> = KNOWN
        .iter()
        .map(|known| {
            let theirs = words(known);
            let shared = ours.iter().filter(|w| theirs.contains(w)).count();
            let spelling = strsim::normalized_levenshtein(&squashed, &theirs.concat());
            (shared, spelling, *known)
        })
        .filter(|(shared, spelling, _)| *shared > 0 || *spelling >= 0.6)
        .collect();
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then(a.2.len().cmp(&b.2.len()))
    });
    scored.into_iter().take(n).map(|(_, _, t)| t).collect()
}

/// The lower-case words of an entry: split at `.`, `_`, `-`, `*` and camel-case humps, without
/// the word "event" (docs tables name types `MessageNewEvent`).
fn words(entry: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in entry.chars() {
        if !c.is_ascii_alphanumeric() {
            previous_lower = false;
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.retain(|w| w != "event");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_unique_and_every_line_is_a_type() {
        let lines: Vec<&str> = LIST
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            lines, sorted,
            "keep event_types.txt sorted and without repeats"
        );
        for t in &lines {
            assert!(
                !t.contains(char::is_whitespace) && !t.contains('*'),
                "{t:?} does not look like an event type"
            );
        }
        assert!(
            LIST.lines().any(|l| l.starts_with("# Source")),
            "name the sources"
        );
        assert!(lines.len() > 150, "{} types", lines.len());
    }

    #[test]
    fn types_seen_in_stream_fixtures_are_known() {
        for t in [
            "message.new",
            "message.updated",
            "message.deleted",
            "channel.created",
            "channel.deleted",
            "reaction.new",
            "user.banned",
            "user.unbanned",
            "call.session_started",
            "call.session_ended",
            "feeds.activity.added",
        ] {
            assert!(is_known(t), "{t}");
        }
        assert!(!is_known("ActivityAddedEvent"));
        assert!(!is_known("message.*"));
    }

    #[test]
    fn a_docs_table_name_or_a_typo_is_matched_to_the_real_type() {
        assert_eq!(
            closest("ActivityAddedEvent", 3).first(),
            Some(&"feeds.activity.added")
        );
        assert_eq!(closest("mesage.new", 3).first(), Some(&"message.new"));
        assert_eq!(closest("MessageNewEvent", 3).first(), Some(&"message.new"));
        assert!(closest("zzzzzzzz", 3).is_empty());
    }

    #[test]
    fn every_feeds_docs_table_name_suggests_its_real_type_among_the_first_three() {
        // Stream's Feeds v3 "Event Handling" table names events by class, not by `type`.
        let table = [
            ("ActivityAddedEvent", "feeds.activity.added"),
            ("ActivityUpdatedEvent", "feeds.activity.updated"),
            ("ActivityDeletedEvent", "feeds.activity.deleted"),
            (
                "ActivityRemovedFromFeedEvent",
                "feeds.activity.removed_from_feed",
            ),
            ("ActivityMarkEvent", "feeds.activity.marked"),
            ("ActivityPinnedEvent", "feeds.activity.pinned"),
            ("CommentAddedEvent", "feeds.comment.added"),
            ("CommentDeletedEvent", "feeds.comment.deleted"),
            (
                "ActivityReactionAddedEvent",
                "feeds.activity.reaction.added",
            ),
            (
                "CommentReactionDeletedEvent",
                "feeds.comment.reaction.deleted",
            ),
            ("PollVoteCastedFeedEvent", "feeds.poll.vote_casted"),
            ("FeedCreatedEvent", "feeds.feed.created"),
        ];
        for (docs_name, real) in table {
            let suggested = closest(docs_name, 3);
            assert!(
                suggested.contains(&real),
                "{docs_name}: suggested {suggested:?}, not {real}"
            );
        }
    }

    #[test]
    fn words_split_dots_and_camel_case_and_drop_event() {
        assert_eq!(words("ActivityAddedEvent"), ["activity", "added"]);
        assert_eq!(
            words("call.session_started"),
            ["call", "session", "started"]
        );
        assert_eq!(words("HTTPRequest"), ["httprequest"]);
    }
}
