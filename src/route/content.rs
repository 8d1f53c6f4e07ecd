//! `match:` and `not:`: what a route asks of the event's JSON body, beyond its type and path.
//!
//! A condition is a [`FieldPath`] and a [`Test`]. The path is dotted (`message.user.id`); a
//! key that holds a dot is written in brackets and quotes (`custom["team.name"]`). A path
//! reaches a set of values: through an object it follows the key, and at an array (on the
//! way or at its end) it goes on in every element, so `members.user_id` reaches every
//! member's id. The test holds when one reached value passes it:
//!
//! - a string: that string, where `*` matches any run of characters (as in `event_types`);
//! - a number, a boolean or `null`: that JSON value (numbers equal as numbers: `1` is `1.0`);
//! - a list: any of its values;
//! - `{exists: true}`: the path reaches a value other than `null` (an empty array reaches
//!   none); `{exists: false}`: it does not;
//! - `{eq|gte|gt|lte|lt: number}`: one reached number passes every comparison given.
//!
//! Values compare as JSON, without conversion: `"7"` is not `7`. A field that is absent, or
//! of another type, passes no test but `{exists: false}`, so it does not match and it does
//! not exclude.
//!
//! Every condition of `match:` must hold and none of `not:`; a route with neither takes what
//! its type and path filters take. Pure: the body comes in parsed, and [`Needed`] parses only
//! the parts of it some condition reads.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::filters::Pattern;

/// A route's `match:` and `not:` conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContentFilter {
    /// Each must hold.
    all: Vec<Condition>,
    /// None may hold.
    none: Vec<Condition>,
}

/// Which block a condition is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Match,
    Not,
}

impl Block {
    /// Its key in routes.yaml.
    pub fn key(self) -> &'static str {
        match self {
            Block::Match => "match",
            Block::Not => "not",
        }
    }
}

/// Why a content filter turns an event away: the first condition that does.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused<'c> {
    pub block: Block,
    pub condition: &'c Condition,
    /// What the path reached in the event (empty: nothing).
    pub found: Vec<Value>,
}

impl ContentFilter {
    /// Builds the filter of `match:` (`all`) and `not:` (`none`).
    pub fn new(all: Vec<Condition>, none: Vec<Condition>) -> Self {
        ContentFilter { all, none }
    }

    /// No condition: the route takes what its type and path filters take, and never needs
    /// the body.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.none.is_empty()
    }

    pub fn conditions(&self) -> impl Iterator<Item = (Block, &Condition)> {
        (self.all.iter().map(|c| (Block::Match, c)))
            .chain(self.none.iter().map(|c| (Block::Not, c)))
    }

    /// Whether the event (its body, parsed; `None` when it could not be read) passes. A
    /// body that could not be read passes no filter that has conditions: neither a `match`
    /// nor a `not` can be decided on it.
    pub fn matches(&self, body: Option<&Value>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(body) = body else {
            return false;
        };
        self.all.iter().all(|c| c.holds(body)) && !self.none.iter().any(|c| c.holds(body))
    }

    /// The first condition, in config order (`match:` then `not:`), that turns the event
    /// away, with what its path reached.
    pub fn refusal<'c>(&'c self, body: Option<&Value>) -> Option<Refused<'c>> {
        let Some(body) = body else {
            // Unreadable: the first condition is undecided, and that turns the event away.
            return self.conditions().next().map(|(block, condition)| Refused {
                block,
                condition,
                found: Vec::new(),
            });
        };
        let refused = |block, condition: &'c Condition| {
            let mut found = Vec::new();
            condition.path.reach(body, &mut |v| {
                found.push(v.clone());
                false
            });
            Refused {
                block,
                condition,
                found,
            }
        };
        if let Some(c) = self.all.iter().find(|c| !c.holds(body)) {
            return Some(refused(Block::Match, c));
        }
        self.none
            .iter()
            .find(|c| c.holds(body))
            .map(|c| refused(Block::Not, c))
    }

    /// The conditions in one line, for route tables: `match channel_type: one of livestream,
    /// gaming; not message.user.id: bot-*`; None without any.
    pub fn describe(&self) -> Option<String> {
        let block = |block: Block, conditions: &[Condition]| {
            (!conditions.is_empty()).then(|| {
                let entries: Vec<String> = conditions
                    .iter()
                    .map(|c| format!("{}: {}", c.path, c.test))
                    .collect();
                format!("{} {}", block.key(), entries.join(", "))
            })
        };
        let parts: Vec<String> = [
            block(Block::Match, &self.all),
            block(Block::Not, &self.none),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Adds the body paths this filter reads to `needed`.
    pub fn needs(&self, needed: &mut Needed) {
        for (_, c) in self.conditions() {
            needed.add(&c.path.keys);
        }
    }
}

/// One entry of `match:` or `not:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: FieldPath,
    pub test: Test,
}

impl Condition {
    /// Whether one value the path reaches passes the test (for `exists`, whether the path
    /// reaches a value at all).
    pub fn holds(&self, body: &Value) -> bool {
        match &self.test {
            Test::AnyOf(wanted) => self.path.any(body, |v| wanted.iter().any(|w| w.matches(v))),
            Test::Exists(want) => self.path.any(body, |v| !v.is_null()) == *want,
            Test::Compare(comparisons) => self.path.any(body, |v| match v {
                Value::Number(x) => comparisons.iter().all(|(op, n)| op.holds(x, n)),
                _ => false,
            }),
        }
    }
}

/// What a condition asks of the values its path reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// One of these values (a single value is a list of one).
    AnyOf(Vec<Wanted>),
    /// `{exists: bool}`.
    Exists(bool),
    /// `{gte: 1000, lt: 5000}`: one reached number passes them all.
    Compare(Vec<(Compare, Number)>),
}

/// A value a condition names.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    Text(Pattern),
    Number(Number),
    Bool(bool),
    Null,
}

impl Wanted {
    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Wanted::Text(p), Value::String(s)) => p.matches(s),
            (Wanted::Number(n), Value::Number(v)) => numbers_equal(n, v),
            (Wanted::Bool(b), Value::Bool(v)) => b == v,
            (Wanted::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Bare, as routes.yaml would write it, unless it reads as another JSON value.
            Wanted::Text(p) => {
                let text = p.source();
                if text.is_empty() || serde_json::from_str::<Value>(&text).is_ok() {
                    write!(f, "{}", Value::String(text))
                } else {
                    f.write_str(&text)
                }
            }
            Wanted::Number(n) => write!(f, "{n}"),
            Wanted::Bool(b) => write!(f, "{b}"),
            Wanted::Null => f.write_str("null"),
        }
    }
}

/// Integers exactly (ids beyond 2^53 included); otherwise as floating point.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    a.as_f64() == b.as_f64()
}

/// A numeric comparison of `{...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Gte,
    Gt,
    Lte,
    Lt,
}

impl Compare {
    pub const ALL: [Compare; 5] = [
        Compare::Eq,
        Compare::Gte,
        Compare::Gt,
        Compare::Lte,
        Compare::Lt,
    ];

    /// Its key in routes.yaml.
    pub fn key(self) -> &'static str {
        match self {
            Compare::Eq => "eq",
            Compare::Gte => "gte",
            Compare::Gt => "gt",
            Compare::Lte => "lte",
            Compare::Lt => "lt",
        }
    }

    /// Equality as [`numbers_equal`] (integers exactly); the others as floating point.
    fn holds(self, value: &Number, bound: &Number) -> bool {
        if self == Compare::Eq {
            return numbers_equal(value, bound);
        }
        let (Some(value), Some(bound)) = (value.as_f64(), bound.as_f64()) else {
            return false;
        };
        match self {
            Compare::Eq | Compare::Gte => value >= bound,
            Compare::Gt => value > bound,
            Compare::Lte => value <= bound,
            Compare::Lt => value < bound,
        }
    }
}

/// Where in a condition's written form a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionErrorAt {
    /// The key: the field path.
    Key,
    /// The value as a whole.
    Value,
    /// Item `i` of a list.
    Item(usize),
    /// An operator of `{...}`: the key's name.
    Operator(String),
}

/// A malformed `match:` or `not:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub at: ConditionErrorAt,
    pub kind: ConditionErrorKind,
    pub message: String,
}

/// What kind of problem a [`ConditionError`] is, for config diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionErrorKind {
    Invalid,
    UnknownOperator,
    Conflict,
}

impl Condition {
    /// Reads one entry as written in routes.yaml (its value as JSON); every problem found.
    pub fn parse(key: &str, value: &Value) -> Result<Condition, Vec<ConditionError>> {
        let err = |at, kind, message: String| ConditionError { at, kind, message };
        let path = FieldPath::parse(key)
            .map_err(|why| vec![err(ConditionErrorAt::Key, ConditionErrorKind::Invalid, why)]);
        let test = match value {
            Value::Array(items) if items.is_empty() => Err(vec![err(
                ConditionErrorAt::Value,
                ConditionErrorKind::Invalid,
                format!("{key}: an empty list matches nothing (list the values wanted, or remove the entry)"),
            )]),
            Value::Array(items) => {
                let mut wanted = Vec::new();
                let mut errors = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match scalar(item) {
                        Some(w) => wanted.push(w),
                        None => errors.push(err(
                            ConditionErrorAt::Item(i),
                            ConditionErrorKind::Invalid,
                            format!("{key}: a list holds values to match (strings, numbers, booleans, null), not {}", kind_of(item)),
                        )),
                    }
                }
                if errors.is_empty() {
                    Ok(Test::AnyOf(wanted))
                } else {
                    Err(errors)
                }
            }
            Value::Object(ops) => operators(key, ops),
            scalar_value => Ok(Test::AnyOf(vec![
                scalar(scalar_value).expect("not a list or a mapping")
            ])),
        };
        match (path, test) {
            (Ok(path), Ok(test)) => Ok(Condition { path, test }),
            (path, test) => Err(path
                .err()
                .into_iter()
                .flatten()
                .chain(test.err().into_iter().flatten())
                .collect()),
        }
    }
}

fn scalar(value: &Value) -> Option<Wanted> {
    match value {
        Value::String(s) => Some(Wanted::Text(Pattern::new(s))),
        Value::Number(n) => Some(Wanted::Number(n.clone())),
        Value::Bool(b) => Some(Wanted::Bool(*b)),
        Value::Null => Some(Wanted::Null),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

const OPERATORS: &str = "exists, eq, gte, gt, lte, lt";

fn operators(key: &str, ops: &Map<String, Value>) -> Result<Test, Vec<ConditionError>> {
    let err = |op: &str, kind, message: String| ConditionError {
        at: ConditionErrorAt::Operator(op.to_string()),
        kind,
        message,
    };
    if ops.is_empty() {
        return Err(vec![ConditionError {
            at: ConditionErrorAt::Value,
            kind: ConditionErrorKind::Invalid,
            message: format!("{key}: an empty mapping tests nothing (write a value, a list, or one of {OPERATORS})"),
        }]);
    }
    let mut errors = Vec::new();
    let mut exists = None;
    let mut comparisons = Vec::new();
    for (op, bound) in ops {
        if op == "exists" {
            match bound {
                Value::Bool(b) => exists = Some(*b),
                other => errors.push(err(
                    op,
                    ConditionErrorKind::Invalid,
                    format!("{key}: exists takes true or false, not {}", kind_of(other)),
                )),
            }
            continue;
        }
        let Some(compare) = Compare::ALL.into_iter().find(|c| c.key() == op) else {
            errors.push(err(
                op,
                ConditionErrorKind::UnknownOperator,
                format!("{key}: unknown operator \"{op}\" (expected one of {OPERATORS})"),
            ));
            continue;
        };
        match bound {
            Value::Number(n) => comparisons.push((compare, n.clone())),
            _ => errors.push(err(
                op,
                ConditionErrorKind::Invalid,
                format!(
                    "{key}: {op} compares numbers, and {} is {} (to match a string, write `{key}: \"...\"`)",
                    bound,
                    kind_of(bound)
                ),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match (exists, comparisons.is_empty()) {
        (Some(want), true) => Ok(Test::Exists(want)),
        (None, false) => Ok(Test::Compare(comparisons)),
        (Some(true), false) => Ok(Test::Compare(comparisons)), // a number passing implies it exists
        (Some(false), false) => Err(vec![ConditionError {
            at: ConditionErrorAt::Value,
            kind: ConditionErrorKind::Conflict,
            message: format!("{key}: exists: false cannot hold with a comparison (no value would be compared); keep one"),
        }]),
        (None, true) => unreachable!("a non-empty mapping had neither"),
    }
}

impl fmt::Display for Test {
    /// As routes.yaml would say it, for explanations: `one of livestream, gaming`,
    /// `gte 1000`, `to exist`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::AnyOf(wanted) if wanted.len() == 1 => write!(f, "{}", wanted[0]),
            Test::AnyOf(wanted) => {
                f.write_str("one of ")?;
                for (i, w) in wanted.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{w}")?;
                }
                Ok(())
            }
            Test::Exists(true) => f.write_str("to exist"),
            Test::Exists(false) => f.write_str("to be absent"),
            Test::Compare(comparisons) => {
                for (i, (op, n)) in comparisons.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{} {n}", op.key())?;
                }
                Ok(())
            }
        }
    }
}

/// A path into the body, as written (`message.user.id`, `custom["a.b"]`) and as keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    source: String,
    keys: Vec<String>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FieldPath {
    /// Keys separated by `.`; a key holding a `.`, `[`, `]` or `"` is written `["..."]`
    /// (inside, `\"` and `\\` stand for `"` and `\`), after a `.` or right after the key
    /// before it: `custom["team.name"]`, `["a.b"].c`.
    pub fn parse(source: &str) -> Result<FieldPath, String> {
        let bad = |why: &str| {
            Err(format!(
                "\"{source}\" is not a field path: {why} (write message.user.id, or custom[\"a.b\"] for a key holding a dot)"
            ))
        };
        let chars: Vec<char> = source.chars().collect();
        let mut keys = Vec::new();
        let mut i = 0;
        loop {
            let mut key = String::new();
            if chars.get(i) == Some(&'[') {
                // A quoted key: `["a.b"]`.
                if chars.get(i + 1) != Some(&'"') {
                    return bad("a bracket must hold a quoted key, like [\"a.b\"]");
                }
                i += 2;
                loop {
                    match chars.get(i) {
                        None => return bad("an unclosed [\""),
                        Some('\\') => match chars.get(i + 1) {
                            Some(&c @ ('"' | '\\')) => {
                                key.push(c);
                                i += 1;
                            }
                            _ => return bad("inside quotes, only \\\" and \\\\ are escapes"),
                        },
                        Some('"') => break,
                        Some(&c) => key.push(c),
                    }
                    i += 1;
                }
                if chars.get(i + 1) != Some(&']') {
                    return bad("a quoted key must be followed by ]");
                }
                i += 2;
            } else {
                // A bare key, up to `.`, `[` or the end.
                while let Some(&c) = chars.get(i) {
                    if c == '.' || c == '[' {
                        break;
                    }
                    if c == ']' || c == '"' || c.is_whitespace() {
                        return bad(&format!("a bare key cannot hold {c:?}"));
                    }
                    key.push(c);
                    i += 1;
                }
                if key.is_empty() {
                    return bad("an empty key");
                }
            }
            keys.push(key);
            match chars.get(i) {
                None => break,
                Some('.') if i + 1 == chars.len() => return bad("a trailing dot"),
                Some('.') => i += 1,
                Some('[') => {} // a quoted key straight after this one
                Some(c) => return bad(&format!("{c:?} after a quoted key (write . or [ next)")),
            }
        }
        Ok(FieldPath {
            source: source.to_string(),
            keys,
        })
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Whether one value the path reaches passes `test` (the walk stops at the first).
    fn any(&self, body: &Value, mut test: impl FnMut(&Value) -> bool) -> bool {
        self.reach(body, &mut |v| test(v))
    }

    /// Calls `each` with the values the path reaches (through arrays, every element) until
    /// it returns true; whether one did.
    fn reach<'v>(&self, body: &'v Value, each: &mut dyn FnMut(&'v Value) -> bool) -> bool {
        fn walk<'v>(
            value: &'v Value,
            keys: &[String],
            each: &mut dyn FnMut(&'v Value) -> bool,
        ) -> bool {
            match (value, keys.split_first()) {
                (Value::Array(items), _) => items.iter().any(|item| walk(item, keys, each)),
                (_, None) => each(value),
                (Value::Object(fields), Some((key, rest))) => {
                    fields.get(key).is_some_and(|child| walk(child, rest, each))
                }
                _ => false,
            }
        }
        walk(body, &self.keys, each)
    }
}

/// The body paths some route's conditions read: a tree of keys. [`Needed::parse`] builds
/// only those parts of a body, and skips the rest without allocating.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    /// Read the whole value here (a path ends here).
    whole: bool,
    children: BTreeMap<String, Needed>,
}

impl Needed {
    /// Nothing is needed: no route has conditions.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.children.is_empty()
    }

    fn add(&mut self, keys: &[String]) {
        match keys.split_first() {
            None => self.whole = true,
            Some((key, rest)) => self.children.entry(key.clone()).or_default().add(rest),
        }
    }

    /// The body with only the needed paths in it (every condition over it holds exactly as
    /// over the whole body), or `None` when it is not JSON.
    pub fn parse(&self, body: &[u8]) -> Option<Value> {
        #[cfg(test)]
        PARSES.with(|n| n.set(n.get() + 1));
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = self.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Needed {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &Needed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(found) = map.next_key_seed(Key(self))? {
            match found {
                Some((key, child)) => {
                    fields.insert(key, map.next_value_seed(child)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // A path goes on in every element of an array.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    // A scalar where a path wants to go deeper: no value reached, nothing kept.
    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
thread_local! {
    /// How many bodies [`Needed::parse`] has read on this thread: what routing costs.
    pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A key of an object [`Needed`] walks: the key and what is needed under it when it is
/// needed, else nothing, and then the key is not copied out of the body.
struct Key<'n>(&'n Needed);

impl<'de, 'n> DeserializeSeed<'de> for Key<'n> {
    type Value = Option<(String, &'n Needed)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for Key<'n> {
    type Value = Option<(String, &'n Needed)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .children
            .get(key)
            .map(|child| (key.to_string(), child)))
    }
}
