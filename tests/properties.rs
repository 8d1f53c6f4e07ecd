//! Properties of the pure cores, checked on generated inputs (proptest).
//!
//! Each test states one claim in its doc comment; proptest tries it on a few hundred inputs
//! and shrinks any counterexample. The unit tables beside each module pin exact examples;
//! these pin the rules those examples come from:
//!
//! - routing (`route::EventFilter`): empty filters, exact names, `*` globs against a
//!   reference matcher, entry validation;
//! - routing by content (`route::Condition`, `route::select`): no conditions is routing by
//!   type alone, an absent field never matches, `not` is `match`'s complement, the pruned
//!   body decides as the whole one, array paths, globs and numbers;
//! - templates (`template::Template`): no panics, literal text, field values, alternatives,
//!   malformed templates refused;
//! - backoff (`deliver::backoff::delay`): every delay within its documented bounds, for any
//!   attempt number;
//! - verification (`ingest::verify`): sign → verify round trips, and every alteration of the
//!   body, the signature or the app is refused with the right rejection.
//!
//! Case counts keep the whole file to a few seconds in a debug build.

use std::io::Write;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use hookfan::config::{App, RetryPolicy, Secret};
use hookfan::deliver::backoff;
use hookfan::ingest::verify::{
    self, sign, Rejection, HEADER_API_KEY, HEADER_SIGNATURE, HEADER_WEBHOOK_ID,
};
use hookfan::route::EventFilter;
use hookfan::template::Template;

// ---------------------------------------------------------------------------------------------
// Strategies shared by several properties.

/// `cases` inputs per property. Counterexamples proptest finds are kept in
/// `tests/properties.proptest-regressions` (committed) and tried first on every run.
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig::with_cases(cases)
}

/// Any JSON value, small, with keys drawn mostly from a few names so that template paths
/// often hit something.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["type", "cid", "message", "user", "id", "a", "b"])
            .prop_map(str::to_string),
        1 => ".{0,6}",
    ]
}

/// One segment of a template field path: what a template accepts between dots.
fn path_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}"
}

/// Text that is never part of a placeholder.
fn literal_text() -> impl Strategy<Value = String> {
    "[^{}]{0,10}"
}

// ---------------------------------------------------------------------------------------------
// Routing.

/// The reference model of one `event_types` entry: `*` matches any run of characters
/// (including none), every other character matches itself. Written as the textbook dynamic
/// programme over characters, independently of `route/filters.rs`'s split-and-search.
fn reference_glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // m[i][j]: the first i pattern characters match the first j text characters.
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = if p[i - 1] == '*' {
                m[i - 1][j] || (j > 0 && m[i][j - 1])
            } else {
                j > 0 && m[i - 1][j - 1] && p[i - 1] == t[j - 1]
            };
        }
    }
    m[p.len()][t.len()]
}

/// A valid `event_types` entry over a tiny alphabet, so globs and texts often meet.
fn small_pattern() -> impl Strategy<Value = String> {
    "[ab.*]{1,7}"
}

fn small_text() -> impl Strategy<Value = String> {
    "[ab.]{0,9}"
}

proptest! {
    #![proptest_config(cases(256))]

    /// An empty `event_types` list takes every event: any type, and bodies without one.
    #[test]
    fn an_empty_filter_takes_every_event(event_type in any::<String>()) {
        for filter in [EventFilter::new::<&str>(&[]).unwrap(), EventFilter::all()] {
            prop_assert!(filter.takes_everything());
            prop_assert!(filter.matches(Some(&event_type)));
            prop_assert!(filter.matches(None));
        }
    }

    /// A list of exact names (no `*`) takes exactly the types it names, compared byte for
    /// byte, and never a body without a type.
    #[test]
    fn exact_names_match_exactly_those_names(
        names in prop::collection::vec("[a-zA-Z0-9._:-]{1,12}", 1..6),
        probe in prop_oneof![
            "[a-zA-Z0-9._:-]{0,12}",
            any::<prop::sample::Index>().prop_map(|i| i.index(usize::MAX).to_string()),
        ],
        pick in any::<prop::sample::Index>(),
    ) {
        let filter = EventFilter::new(&names).unwrap();
        prop_assert!(!filter.takes_everything());
        prop_assert!(!filter.matches(None));
        let named = &names[pick.index(names.len())];
        prop_assert!(filter.matches(Some(named)), "{names:?} must take {named:?}");
        prop_assert_eq!(filter.matches(Some(&probe)), names.contains(&probe));
    }

    /// A filter of globs takes a type exactly when one of its entries matches it under the
    /// reference model (`*` = any run of characters, anything else literal).
    #[test]
    fn globs_agree_with_the_reference_model(
        patterns in prop::collection::vec(small_pattern(), 1..4),
        text in small_text(),
    ) {
        let filter = EventFilter::new(&patterns).unwrap();
        let expected = patterns.iter().any(|p| reference_glob(p, &text));
        prop_assert_eq!(
            filter.matches(Some(&text)), expected,
            "event_types {:?} with type {:?}", patterns, text
        );
    }

    /// The same agreement on arbitrary Unicode, where byte and character positions differ.
    #[test]
    fn globs_agree_with_the_reference_model_on_any_text(
        pattern in "[^\\s]{0,3}(\\*[^\\s]{0,3}){1,3}",
        text in ".{0,12}",
    ) {
        let filter = EventFilter::new(&[&pattern]).unwrap();
        prop_assert_eq!(filter.matches(Some(&text)), reference_glob(&pattern, &text));
    }

    /// `EventFilter::new` refuses exactly the entries that are empty or contain white space,
    /// reporting each one's index; any other list builds a filter, and matching any string
    /// against it returns rather than panics.
    #[test]
    fn entries_are_refused_exactly_when_empty_or_spaced_and_matching_never_panics(
        entries in prop::collection::vec(".{0,8}", 0..6),
        probes in prop::collection::vec(any::<String>(), 0..4),
    ) {
        let bad: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_empty() || e.chars().any(char::is_whitespace))
            .map(|(i, _)| i)
            .collect();
        match EventFilter::new(&entries) {
            Ok(filter) => {
                prop_assert!(bad.is_empty(), "{entries:?} should have been refused");
                for probe in &probes {
                    filter.matches(Some(probe));
                }
                filter.matches(None);
            }
            Err(errors) => {
                let got: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
                prop_assert_eq!(got, bad);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routing by content (`match:`, `not:`).

/// A field path's source text for these keys: bare when a key allows it, else quoted.
fn path_source(keys: &[String]) -> String {
    let mut out = String::new();
    for (i, key) in keys.iter().enumerate() {
        let bare = !key.is_empty()
            && !key.contains(|c: char| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace());
        if bare {
            if i > 0 {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str("[\"");
            out.push_str(&key.replace('\\', "\\\\").replace('"', "\\\""));
            out.push_str("\"]");
        }
    }
    out
}

/// A condition's path: one to three keys, mostly the names `json_value` uses.
fn condition_keys() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(key(), 1..4)
}

/// A condition's value as routes.yaml's JSON: a value, a list, `exists` or comparisons.
fn condition_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..3).prop_map(Value::from),
        "[ab*]{0,3}".prop_map(Value::String),
        ".{0,4}".prop_map(Value::String),
    ];
    let op = prop::sample::select(vec!["eq", "gte", "gt", "lte", "lt"]);
    prop_oneof![
        scalar.clone(),
        prop::collection::vec(scalar, 1..4).prop_map(Value::Array),
        any::<bool>().prop_map(|b| json!({ "exists": b })),
        prop::collection::btree_map(op, -3.0f64..3.0, 1..3).prop_map(|m| Value::Object(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        )),
    ]
}

fn condition() -> impl Strategy<Value = hookfan::route::Condition> {
    (condition_keys(), condition_value()).prop_map(|(keys, value)| {
        hookfan::route::Condition::parse(&path_source(&keys), &value)
            .unwrap_or_else(|e| panic!("{keys:?} {value}: {e:?}"))
    })
}

/// An event body: an object, often holding the keys conditions name.
fn event_body() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A value a path of `keys` reaches into: objects holding the next key beside other fields,
/// or arrays of them, down to a leaf of the kind conditions compare (or anything).
fn holding(keys: Vec<String>) -> BoxedStrategy<Value> {
    let Some((key, rest)) = keys.split_first() else {
        return prop_oneof![
            (-3i64..3).prop_map(Value::from),
            "[ab]{0,3}".prop_map(Value::String),
            json_value(),
        ]
        .boxed();
    };
    let key = key.clone();
    let object = (holding(rest.to_vec()), event_body())
        .prop_map(move |(child, mut object)| {
            object[key.as_str()] = child;
            object
        })
        .boxed();
    prop_oneof![
        object.clone(),
        prop::collection::vec(prop_oneof![object, json_value()], 1..4).prop_map(Value::Array),
    ]
    .boxed()
}

/// Conditions, and a body their paths often reach into.
fn conditions_and_body() -> impl Strategy<Value = (Vec<hookfan::route::Condition>, Value)> {
    prop::collection::vec(condition(), 1..4).prop_flat_map(|conditions| {
        let keys = conditions[0].path.keys().to_vec();
        (Just(conditions), holding(keys)).prop_map(|(conditions, reached)| {
            // The top level is an object whatever `holding` made.
            let body = match reached {
                Value::Object(_) => reached,
                other => json!({ "x": other }),
            };
            (conditions, body)
        })
    })
}

fn content_route(
    name: &str,
    types: &[String],
    all: Vec<hookfan::route::Condition>,
    none: Vec<hookfan::route::Condition>,
) -> hookfan::config::Route {
    hookfan::config::Route {
        name: name.into(),
        enabled: true,
        filter: EventFilter::new(types).unwrap(),
        paths: hookfan::route::PathFilter::all(),
        content: hookfan::route::ContentFilter::new(all, none),
        destination: hookfan::config::Destination::File(hookfan::config::FileDestination {
            path: "x".into(),
            retry: RetryPolicy::DEFAULT,
            rate_limit: None,
        }),
    }
}

fn selected(routes: &[hookfan::config::Route], body: &Value) -> Vec<String> {
    let text = body.to_string();
    let event_type = body.get("type").and_then(Value::as_str);
    let candidate = hookfan::route::Candidate {
        event_type,
        path: "/",
        body: text.as_bytes(),
    };
    hookfan::route::select(routes, &hookfan::route::needs(routes), &candidate)
        .into_iter()
        .map(str::to_string)
        .collect()
}

proptest! {
    #![proptest_config(cases(256))]

    /// Routes without `match`/`not` select exactly what their `event_types` select, whatever
    /// the body holds.
    #[test]
    fn without_conditions_routing_is_by_type_alone(
        types in prop::collection::vec(prop::collection::vec(small_pattern(), 0..3), 1..5),
        event_type in small_text(),
        mut body in event_body(),
    ) {
        body["type"] = json!(event_type);
        let routes: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(i, t)| content_route(&format!("r{i}"), t, vec![], vec![]))
            .collect();
        let by_type: Vec<String> = routes
            .iter()
            .filter(|r| r.filter.matches(Some(&event_type)))
            .map(|r| r.name.clone())
            .collect();
        prop_assert_eq!(selected(&routes, &body), by_type);
    }

    /// A `match` condition on a field the body does not have never selects, unless it asks
    /// for `{exists: false}`.
    #[test]
    fn a_match_on_an_absent_field_never_selects(
        c in condition(),
        mut body in event_body(),
    ) {
        body.as_object_mut().unwrap().remove(&c.path.keys()[0]);
        let absent_wanted = c.test == hookfan::route::Test::Exists(false);
        let routes = [content_route("r", &[], vec![c], vec![])];
        prop_assert_eq!(selected(&routes, &body).len() == 1, absent_wanted);
    }

    /// `not` is the complement of `match`: of two routes with the same condition, one in each
    /// block, exactly one takes any event.
    #[test]
    fn not_is_the_complement_of_match((c, body) in conditions_and_body()) {
        let c = c[0].clone();
        let routes = [
            content_route("match", &[], vec![c.clone()], vec![]),
            content_route("not", &[], vec![], vec![c]),
        ];
        prop_assert_eq!(selected(&routes, &body).len(), 1);
    }

    /// Selection reads only the parts of the body conditions name, and decides exactly as
    /// over the whole body.
    #[test]
    fn the_pruned_body_decides_as_the_whole_body((conditions, body) in conditions_and_body()) {
        let mut needed = hookfan::route::Needed::default();
        hookfan::route::ContentFilter::new(conditions.clone(), vec![]).needs(&mut needed);
        let pruned = needed.parse(body.to_string().as_bytes()).expect("JSON parses");
        for c in &conditions {
            prop_assert_eq!(c.holds(&pruned), c.holds(&body), "{:?} over {}", c, pruned);
        }
    }

    /// Through an array, a path matches when any element matches; a string value is a glob
    /// as in `event_types`.
    #[test]
    fn array_paths_match_when_any_element_matches_by_glob(
        pattern in "[ab*]{1,4}",
        texts in prop::collection::vec(small_text(), 0..5),
    ) {
        let c = hookfan::route::Condition::parse("members.user_id", &json!(pattern)).unwrap();
        let members: Vec<Value> = texts.iter().map(|t| json!({ "user_id": t })).collect();
        let want = texts.iter().any(|t| reference_glob(&pattern, t));
        prop_assert_eq!(c.holds(&json!({ "members": members })), want);
        // Also when the array is the value itself.
        let c = hookfan::route::Condition::parse("tags", &json!(pattern)).unwrap();
        prop_assert_eq!(c.holds(&json!({ "tags": texts })), want);
    }

    /// Numbers compare as numbers, integers and floats alike; a string of digits is no number.
    #[test]
    fn comparisons_follow_the_numbers(
        op in prop::sample::select(vec!["eq", "gte", "gt", "lte", "lt"]),
        bound in -5i64..5,
        value in -5i64..5,
        as_float in any::<bool>(),
    ) {
        let c = hookfan::route::Condition::parse("n", &json!({ op: bound })).unwrap();
        let want = match op {
            "eq" => value == bound,
            "gte" => value >= bound,
            "gt" => value > bound,
            "lte" => value <= bound,
            _ => value < bound,
        };
        let n = if as_float { json!(value as f64) } else { json!(value) };
        prop_assert_eq!(c.holds(&json!({ "n": n })), want);
        let digits = json!({ "n": value.to_string() });
        prop_assert_eq!(c.holds(&digits), false);
    }
}

// ---------------------------------------------------------------------------------------------
// Templates.

/// An event with `value` at `path` (nested objects), and `siblings` beside each step.
fn event_with(path: &[String], value: Value, siblings: &Map<String, Value>) -> Value {
    let mut node = value;
    for segment in path.iter().rev() {
        let mut object = siblings.clone();
        object.insert(segment.clone(), node);
        node = Value::Object(object);
    }
    node
}

/// A template that must be refused, whatever surrounds it.
fn malformed_template() -> impl Strategy<Value = String> {
    let name = "[a-z_]{1,6}";
    prop_oneof![
        // An unclosed `{`.
        (literal_text(), name).prop_map(|(a, n)| format!("{a}{{{n}")),
        // A `}` with no `{` before it, before or after a placeholder.
        (literal_text(), literal_text()).prop_map(|(a, b)| format!("{a}}}{b}")),
        (literal_text(), name, literal_text()).prop_map(|(a, n, b)| format!("{a}}}{{{n}}}{b}")),
        (literal_text(), name, literal_text()).prop_map(|(a, n, b)| format!("{{{n}}}{a}}}{b}")),
        // An empty placeholder or an empty alternative.
        (literal_text(), "[ ]{0,2}").prop_map(|(a, s)| format!("{a}{{{s}}}")),
        (name, name).prop_map(|(x, y)| format!("{{{x}||{y}}}")),
        // A path with an empty segment.
        (name, name).prop_map(|(x, y)| format!("{{{x}..{y}}}")),
        name.prop_map(|x| format!("{{{x}.}}")),
        // A field name with a character outside [A-Za-z0-9_-].
        (name, "[^A-Za-z0-9_.|'\"{}\\s-]", name).prop_map(|(x, c, y)| format!("{{{x}{c}{y}}}")),
        // A quoted literal alone, or before a field name.
        name.prop_map(|x| format!("{{'{x}'}}")),
        (name, name).prop_map(|(x, y)| format!("{{'{x}'|{y}}}")),
        // Nothing at all.
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Parsing any string returns a template or an error, and rendering a parsed template
    /// against any JSON value returns a string or an error: never a panic.
    #[test]
    fn parsing_and_rendering_never_panic(
        source in prop_oneof![any::<String>(), "[a-z.{}|'\" _-]{0,24}"],
        event in json_value(),
    ) {
        if let Ok(template) = Template::parse(&source) {
            prop_assert_eq!(template.source(), source.as_str());
            let _ = template.render(&event);
        }
    }

    /// Text without braces is a template of itself: it parses (when not empty) and renders
    /// to itself against any event.
    #[test]
    fn a_template_of_literal_text_renders_to_itself(
        text in "[^{}]{1,30}",
        event in json_value(),
    ) {
        let template = Template::parse(&text).unwrap();
        prop_assert_eq!(template.render(&event).unwrap(), text);
    }

    /// `{a.b.c}` renders the string stored at `a.b.c`, whatever else the event holds, with
    /// the literal text around the placeholder kept as is.
    #[test]
    fn a_field_renders_the_string_at_its_path(
        path in prop::collection::vec(path_segment(), 1..5),
        value in ".{0,16}",
        siblings in prop::collection::btree_map(key(), json_value(), 0..3),
        before in literal_text(),
        after in literal_text(),
    ) {
        let siblings: Map<String, Value> = siblings.into_iter().collect();
        let event = event_with(&path, Value::String(value.clone()), &siblings);
        let source = format!("{before}{{{}}}{after}", path.join("."));
        let template = Template::parse(&source).unwrap();
        prop_assert_eq!(template.render(&event).unwrap(), format!("{before}{value}{after}"));
    }

    /// A number or a boolean at the path renders as its JSON text.
    #[test]
    fn a_field_renders_numbers_and_booleans_as_their_json_text(
        path in prop::collection::vec(path_segment(), 1..4),
        value in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
    ) {
        let event = event_with(&path, value.clone(), &Map::new());
        let template = Template::parse(&format!("{{{}}}", path.join("."))).unwrap();
        prop_assert_eq!(template.render(&event).unwrap(), value.to_string());
    }

    /// `{f1|f2|...|'lit'}` renders the first alternative whose field holds a value; a field
    /// that is missing, null, an object or an array holds none. When none does, the quoted
    /// literal is used; without one, the last alternative is itself the literal (with two
    /// or more), and a single missing field is an error.
    #[test]
    fn alternatives_pick_the_first_field_with_a_value(
        names in prop::collection::btree_set("[a-z_]{1,6}", 1..5)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
        present in prop::collection::vec(
            prop_oneof![
                ".{0,8}".prop_map(Some),
                Just(None),
            ],
            5,
        ),
        absent_as in prop::collection::vec(
            prop::sample::select(vec![Value::Null, json!({"x": "y"}), json!(["x"]), json!({})]),
            5,
        ),
        quoted in prop::option::of(("[a-z0-9 :-]{0,8}", prop::bool::ANY)),
    ) {
        let mut event = Map::new();
        for (i, name) in names.iter().enumerate() {
            match &present[i] {
                Some(v) => { event.insert(name.clone(), Value::String(v.clone())); }
                None if i % 2 == 0 => { event.insert(name.clone(), absent_as[i].clone()); }
                None => {}
            }
        }
        let event = Value::Object(event);
        let mut alternatives = names.clone();
        if let Some((lit, double)) = &quoted {
            let q = if *double { '"' } else { '\'' };
            alternatives.push(format!("{q}{lit}{q}"));
        }
        let source = format!("{{{}}}", alternatives.join("|"));
        let got = Template::parse(&source).unwrap().render(&event);

        let first = names.iter().enumerate().find_map(|(i, _)| present[i].clone());
        let expected = match (first, &quoted) {
            (Some(value), _) => Some(value),
            (None, Some((lit, _))) => Some(lit.clone()),
            (None, None) if names.len() >= 2 => Some(names.last().unwrap().clone()),
            (None, None) => None,
        };
        match expected {
            Some(want) => prop_assert_eq!(got, Ok(want), "template {}", source),
            None => {
                let err = got.unwrap_err();
                prop_assert_eq!(&err.fields, &names, "template {}", source);
                prop_assert!(err.to_string().contains(&names[0]), "error should name {}: {}", names[0], err);
            }
        }
    }

    /// Malformed templates (unclosed or stray braces, empty placeholders or path segments,
    /// bad characters in a field name, misplaced quoted literals, the empty string) are
    /// refused with an error message, never accepted and never a panic.
    #[test]
    fn malformed_templates_are_refused(source in malformed_template()) {
        let result = Template::parse(&source);
        prop_assert!(result.is_err(), "{source:?} was accepted: {result:?}");
        prop_assert!(!result.unwrap_err().to_string().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Backoff.

const YEAR: u64 = 365 * 24 * 3600;

/// Retry policies from a nanosecond to a year of initial backoff and up to a century of
/// maximum: the range a routes.yaml can sensibly say.
fn policy() -> impl Strategy<Value = RetryPolicy> {
    let nanos = |max: u64| {
        prop_oneof![
            1..=1_000_000_000u64,                  // up to a second, any nanosecond
            (1..=max).prop_map(|s| s * 1_000_000), // whole milliseconds
            (1..=max / 1000).prop_map(|s| s * 1_000_000_000), // whole seconds
            1..=max * 1_000_000,                   // anything in range
        ]
    };
    (nanos(YEAR * 1000), nanos(100 * YEAR * 1000)).prop_map(|(initial, extra)| {
        let initial = Duration::from_nanos(initial);
        let max = initial + Duration::from_nanos(extra) - Duration::from_nanos(1);
        RetryPolicy::try_new(Duration::from_secs(3600), initial, max).unwrap()
    })
}

fn attempt() -> impl Strategy<Value = u32> {
    prop_oneof![1..=64u32, any::<u32>(), Just(0), Just(u32::MAX)]
}

/// Jitter as documented, `[0, 1)`, plus the edges and out-of-range values the function
/// clamps (any number but NaN, which no random draw produces).
fn jitter() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..1.0f64,
        1 => Just(0.0),
        1 => Just(1.0),
        1 => any::<f64>().prop_filter("not NaN", |f| !f.is_nan()),
    ]
}

/// The documented ceiling, computed exactly: `initial * 2^(attempt-1)`, capped at max.
fn ceiling(policy: &RetryPolicy, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let exact = if doublings >= 128 {
        u128::MAX
    } else {
        policy
            .initial_backoff()
            .as_nanos()
            .saturating_mul(1u128 << doublings.min(127))
    };
    let max = policy.max_backoff().as_nanos();
    Duration::from_nanos(exact.min(max) as u64)
}

proptest! {
    #![proptest_config(cases(256))]

    /// Without `Retry-After`, every delay is at least zero and at most the ceiling
    /// `min(initial_backoff * 2^(attempt-1), max_backoff)`, for any attempt number
    /// (including 0 and u32::MAX) and any jitter: no overflow, no panic.
    #[test]
    fn every_delay_lies_between_zero_and_the_ceiling(
        policy in policy(),
        attempt in attempt(),
        jitter in jitter(),
    ) {
        let d = backoff::delay(&policy, attempt, None, jitter);
        prop_assert!(d <= ceiling(&policy, attempt), "{d:?} over the ceiling {:?}", ceiling(&policy, attempt));
        prop_assert!(d <= policy.max_backoff());
    }

    /// `Retry-After` is a floor capped at `max_backoff`: the delay is at least
    /// `min(retry_after, max_backoff)` and still never more than `max_backoff`.
    #[test]
    fn retry_after_is_a_floor_capped_at_max_backoff(
        policy in policy(),
        attempt in attempt(),
        jitter in jitter(),
        retry_after in prop_oneof![
            (0..=3600u64).prop_map(Duration::from_secs),
            any::<u64>().prop_map(Duration::from_nanos),
            any::<u64>().prop_map(Duration::from_secs),
            Just(Duration::MAX),
        ],
    ) {
        let d = backoff::delay(&policy, attempt, Some(retry_after), jitter);
        prop_assert!(d >= retry_after.min(policy.max_backoff()), "{d:?} under the floor");
        prop_assert!(d <= policy.max_backoff(), "{d:?} over max_backoff");
    }

    /// More jitter never means a shorter wait, and the draw 0 waits not at all.
    #[test]
    fn the_delay_grows_with_the_jitter_draw(
        policy in policy(),
        attempt in attempt(),
        a in 0.0..=1.0f64,
        b in 0.0..=1.0f64,
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(backoff::delay(&policy, attempt, None, low) <= backoff::delay(&policy, attempt, None, high));
        prop_assert_eq!(backoff::delay(&policy, attempt, None, 0.0), Duration::ZERO);
    }

    /// With the full draw, later attempts never wait less than earlier ones, and the ceiling
    /// reaches `max_backoff` once the doubling passes it.
    #[test]
    fn the_ceiling_never_shrinks_from_one_attempt_to_the_next(
        policy in policy(),
        attempt in 1..=200u32,
    ) {
        let now = backoff::delay(&policy, attempt, None, 1.0);
        let next = backoff::delay(&policy, attempt + 1, None, 1.0);
        prop_assert!(now <= next, "attempt {attempt}: {now:?}, then {next:?}");
        let until_max = policy.max_backoff().as_nanos() / policy.initial_backoff().as_nanos();
        if until_max < 1 << 30 {
            let enough = 2 + (until_max as f64).log2().ceil() as u32;
            let at_max = backoff::delay(&policy, enough, None, 1.0);
            let gap = policy.max_backoff().saturating_sub(at_max);
            // `delay` scales by the draw in floating point: allow its rounding.
            prop_assert!(gap <= policy.max_backoff() / 1_000_000, "attempt {enough}: {at_max:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Verification.

/// A webhook body as Stream sends it: a JSON object with a string `type` and other fields.
fn body() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        "[a-z_]{1,10}(\\.[a-z_]{1,10}){0,2}",
        prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4),
        prop::bool::ANY,
    )
        .prop_map(|(event_type, fields, pretty)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("type".into(), Value::String(event_type.clone()));
            let value = Value::Object(object);
            let bytes = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            (event_type, bytes)
        })
}

/// App secrets. Printable ASCII only: HMAC pads keys with zero bytes, so `"k"` and `"k\0"`
/// are the same HMAC key, and the "another secret fails" property needs secrets that really
/// differ.
fn secret() -> impl Strategy<Value = String> {
    "[ -~]{1,48}"
}

fn api_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

fn app(key: &str, secret: &str) -> App {
    App::new(key, Secret::new(secret))
}

fn headers(api_key: Option<&str>, signature: &str, gzip: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(key) = api_key {
        h.insert(HEADER_API_KEY, HeaderValue::from_str(key).unwrap());
    }
    h.insert(HEADER_SIGNATURE, HeaderValue::from_str(signature).unwrap());
    h.insert(HEADER_WEBHOOK_ID, HeaderValue::from_static("wh-1"));
    if gzip {
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
    }
    h
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const LIMIT: usize = 1 << 20;

fn is_mismatch(r: &Result<verify::VerifiedWebhook, Rejection>) -> bool {
    matches!(r, Err(Rejection::BadSignature(m)) if m.contains("does not match"))
}

proptest! {
    #![proptest_config(cases(128))]

    /// A body signed with its app's secret verifies, with or without `X-Api-Key` when there
    /// is one app, and the result carries the exact body, its `type`, the signature and ids.
    #[test]
    fn a_body_signed_with_the_app_secret_verifies(
        (event_type, body) in body(),
        key in api_key(),
        secret in secret(),
        send_key in prop::bool::ANY,
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let apps = [app(&key, &secret)];
        let h = headers(send_key.then_some(key.as_str()), &signature, false);
        let v = verify::verify(&h, Bytes::from(body.clone()), &apps, LIMIT).unwrap();
        prop_assert_eq!(v.body.as_ref(), body.as_slice());
        prop_assert_eq!(v.event_type(), Some(event_type.as_str()));
        prop_assert_eq!(v.signature(), signature);
        prop_assert_eq!(v.api_key(), send_key.then_some(key.as_str()));
        prop_assert_eq!(v.webhook_id(), Some("wh-1"));
    }

    /// Changing any one byte of a signed body makes the signature not match.
    #[test]
    fn a_body_with_any_byte_changed_is_refused(
        (_, body) in body(),
        secret in secret(),
        at in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let mut altered = body.clone();
        let i = at.index(altered.len());
        altered[i] ^= flip;
        // A body starts with `{"`: one changed byte cannot make it look gzipped.
        let got = verify::verify(&headers(None, &signature, false), altered.into(), &[app("k", &secret)], LIMIT);
        prop_assert!(is_mismatch(&got), "byte {i} ^ {flip:#x}: {got:?}");
    }

    /// Changing any one character of the signature is refused: a different hex digit does
    /// not match, anything else is not a hex signature; both are `BadSignature` (401).
    #[test]
    fn a_signature_with_any_character_changed_is_refused(
        (_, body) in body(),
        secret in secret(),
        at in 0..64usize,
        replacement in "[!-~]",
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let original = signature.as_bytes()[at] as char;
        let replacement = replacement.chars().next().unwrap();
        // Only a change of value counts: `a` for `A` is the same digit.
        let same_digit = replacement.is_ascii_hexdigit()
            && replacement.to_digit(16) == original.to_digit(16);
        prop_assume!(!same_digit);
        let mut altered = signature.clone();
        altered.replace_range(at..at + 1, &replacement.to_string());
        let got = verify::verify(&headers(None, &altered, false), body.into(), &[app("k", &secret)], LIMIT);
        if replacement.is_ascii_hexdigit() {
            prop_assert!(is_mismatch(&got), "{altered}: {got:?}");
        } else {
            prop_assert!(matches!(&got, Err(Rejection::BadSignature(m)) if m.contains("not 64 hex")), "{altered}: {got:?}");
        }
        prop_assert_eq!(got.unwrap_err().status(), axum::http::StatusCode::UNAUTHORIZED);
    }

    /// A signature cut short or lengthened is refused as not being 64 hex characters.
    #[test]
    fn a_signature_of_the_wrong_length_is_refused(
        (_, body) in body(),
        secret in secret(),
        keep in 0..64usize,
        extra in "[0-9a-f]{1,8}",
        longer in prop::bool::ANY,
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let altered = if longer { format!("{signature}{extra}") } else { signature[..keep].to_string() };
        let got = verify::verify(&headers(None, &altered, false), body.into(), &[app("k", &secret)], LIMIT);
        prop_assert!(matches!(&got, Err(Rejection::BadSignature(m)) if m.contains("not 64 hex")), "{altered:?}: {got:?}");
    }

    /// The signature covers the uncompressed bytes: a gzipped body (at any level, declared by
    /// `Content-Encoding` or only recognisable by its magic bytes) verifies exactly like the
    /// plain one and yields the uncompressed body.
    #[test]
    fn a_gzipped_body_verifies_like_the_plain_one(
        (event_type, body) in body(),
        secret in secret(),
        level in 0..=9u32,
        declared in prop::bool::ANY,
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let compressed = gzip(&body, level);
        let v = verify::verify(&headers(None, &signature, declared), compressed.into(), &[app("k", &secret)], LIMIT).unwrap();
        prop_assert_eq!(v.body.as_ref(), body.as_slice());
        prop_assert_eq!(v.event_type(), Some(event_type.as_str()));
    }

    /// A gzipped body that inflates past `max_body_bytes` is refused as too large (413),
    /// before its signature is looked at; one that fits verifies.
    #[test]
    fn a_gzipped_body_over_the_limit_is_too_large(
        (_, body) in body(),
        secret in secret(),
        slack in 0..64usize,
        over in prop::bool::ANY,
    ) {
        let signature = sign(secret.as_bytes(), &body);
        let limit = if over { body.len().saturating_sub(1 + slack) } else { body.len() + slack };
        let got = verify::verify(&headers(None, &signature, true), gzip(&body, 6).into(), &[app("k", &secret)], limit);
        if over {
            prop_assert_eq!(got.unwrap_err(), Rejection::TooLarge { limit, decompressed: true });
        } else {
            prop_assert!(got.is_ok(), "{got:?}");
        }
    }

    /// Hex digits are accepted in either case, and in any mix of cases.
    #[test]
    fn upper_and_mixed_case_hex_signatures_verify(
        (_, body) in body(),
        secret in secret(),
        upper in prop::collection::vec(prop::bool::ANY, 64),
    ) {
        let signature: String = sign(secret.as_bytes(), &body)
            .chars()
            .zip(&upper)
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let got = verify::verify(&headers(None, &signature, false), body.into(), &[app("k", &secret)], LIMIT);
        prop_assert!(got.is_ok(), "{signature}: {got:?}");
    }

    /// With several apps, `X-Api-Key` picks the secret: a body signed with app B's secret
    /// verifies as B and is refused as A; an unknown key is answered 503 (a key rotated in
    /// before routes.yaml lists it) and none is an unknown app.
    #[test]
    fn another_apps_secret_does_not_verify(
        (_, body) in body(),
        key_a in api_key(),
        key_b in api_key(),
        secret_a in secret(),
        secret_b in secret(),
    ) {
        prop_assume!(key_a != key_b && secret_a != secret_b);
        let apps = [app(&key_a, &secret_a), app(&key_b, &secret_b)];
        let signed_by_b = sign(secret_b.as_bytes(), &body);
        let bytes = Bytes::from(body);

        let as_b = verify::verify(&headers(Some(&key_b), &signed_by_b, false), bytes.clone(), &apps, LIMIT);
        prop_assert!(as_b.is_ok(), "{as_b:?}");
        let as_a = verify::verify(&headers(Some(&key_a), &signed_by_b, false), bytes.clone(), &apps, LIMIT);
        prop_assert!(is_mismatch(&as_a), "{as_a:?}");
        let unknown = verify::verify(&headers(Some(&format!("{key_a}{key_b}")), &signed_by_b, false), bytes.clone(), &apps, LIMIT);
        prop_assert!(matches!(unknown, Err(Rejection::UnknownApiKey { .. })), "{unknown:?}");
        let no_key = verify::verify(&headers(None, &signed_by_b, false), bytes, &apps, LIMIT);
        prop_assert!(matches!(no_key, Err(Rejection::UnknownApp(_))), "{no_key:?}");
    }

    /// Anything signed correctly is verified or refused as bad JSON (400): never a panic,
    /// and a verified body is always a JSON object.
    #[test]
    fn any_correctly_signed_bytes_verify_only_as_a_json_object(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        secret in secret(),
    ) {
        prop_assume!(!body.starts_with(&[0x1f, 0x8b]));
        let signature = sign(secret.as_bytes(), &body);
        match verify::verify(&headers(None, &signature, false), body.clone().into(), &[app("k", &secret)], LIMIT) {
            Ok(v) => {
                let parsed: Value = serde_json::from_slice(&v.body).unwrap();
                prop_assert!(parsed.is_object());
                prop_assert_eq!(v.event_type(), parsed.get("type").and_then(Value::as_str));
            }
            Err(e) => prop_assert!(matches!(e, Rejection::BadJson(_)), "{e:?}"),
        }
    }
}
