//! `template::Template` on an arbitrary template and an arbitrary event, against an oracle:
//! a second reading of the language in the module's documentation, written another way (a
//! character at a time, not by searching for braces). Parsing must accept exactly what the
//! oracle accepts, refusing the rest for the same reason, and rendering must give the
//! oracle's text, or fail on the same placeholder; neither may panic.
//!
//! Input layout: the template's text, a NUL byte, then the event as JSON text. When that is
//! not JSON, the same bytes build an event through `arbitrary` instead, so every input
//! renders against something. A seed is `{cid|'none'}` NUL `{"cid":"..."}`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use hookfan::template::{Template, TemplateError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A JSON value built from arbitrary bytes.
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl From<Json> for Value {
    fn from(j: Json) -> Value {
        match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(i) => Value::from(i),
            Json::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(entries) => {
                Value::Object(entries.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

/// Why the oracle refuses a template (the variants of [`TemplateError`], without their text).
#[derive(Debug, PartialEq)]
enum Refused {
    StrayClose,
    Unclosed,
    Empty,
    MisplacedLiteral,
    NotAFieldName,
}

fn kind(e: &TemplateError) -> Refused {
    match e {
        TemplateError::StrayClose { .. } => Refused::StrayClose,
        TemplateError::Unclosed { .. } => Refused::Unclosed,
        TemplateError::Empty => Refused::Empty,
        TemplateError::MisplacedLiteral { .. } => Refused::MisplacedLiteral,
        TemplateError::NotAFieldName { .. } => Refused::NotAFieldName,
    }
}

enum Piece {
    Text(String),
    /// A placeholder: its field names (dotted), then the literal used when none holds a
    /// value (the last alternative, quoted or not, when there are two or more).
    Field(Vec<String>, Option<String>),
}

/// The oracle's parse: one pass over the characters, inside or outside braces.
fn oracle_parse(source: &str) -> Result<Vec<Piece>, Refused> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut inside: Option<String> = None;
    for c in source.chars() {
        match (inside.as_mut(), c) {
            (None, '{') => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                inside = Some(String::new());
            }
            (None, '}') => return Err(Refused::StrayClose),
            (None, c) => text.push(c),
            (Some(inner), '}') => {
                pieces.push(oracle_field(inner)?);
                inside = None;
            }
            (Some(inner), c) => inner.push(c),
        }
    }
    if inside.is_some() {
        return Err(Refused::Unclosed);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if pieces.is_empty() {
        return Err(Refused::Empty);
    }
    Ok(pieces)
}

fn oracle_field(inner: &str) -> Result<Piece, Refused> {
    let alternatives: Vec<&str> = inner.split('|').map(str::trim).collect();
    let n = alternatives.len();
    let mut names = Vec::new();
    let mut fallback = None;
    for (i, alt) in alternatives.into_iter().enumerate() {
        let chars: Vec<char> = alt.chars().collect();
        let quoted = chars.len() >= 2
            && (chars[0] == '\'' || chars[0] == '"')
            && chars[chars.len() - 1] == chars[0];
        let is_last_of_several = i == n - 1 && n > 1;
        if quoted {
            if !is_last_of_several {
                return Err(Refused::MisplacedLiteral);
            }
            fallback = Some(chars[1..chars.len() - 1].iter().collect());
            continue;
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if alt
            .split('.')
            .any(|seg| seg.is_empty() || !seg.chars().all(name_char))
        {
            return Err(Refused::NotAFieldName);
        }
        if is_last_of_several {
            fallback = Some(alt.to_string());
        }
        names.push(alt.to_string());
    }
    Ok(Piece::Field(names, fallback))
}

/// The oracle's render: the text, or the field names of the placeholder that had no value.
fn oracle_render(pieces: &[Piece], event: &Value) -> Result<String, Vec<String>> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(names, fallback) => {
                let value = names.iter().find_map(|name| {
                    let mut v = event;
                    for seg in name.split('.') {
                        v = v.as_object()?.get(seg)?;
                    }
                    match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    }
                });
                match (value, fallback) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(f)) => out.push_str(f),
                    (None, None) => return Err(names.clone()),
                }
            }
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let (source, event) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let event: Value = match serde_json::from_slice(event) {
        Ok(v) => v,
        Err(_) => match Json::arbitrary_take_rest(Unstructured::new(event)) {
            Ok(j) => j.into(),
            Err(_) => Value::Null,
        },
    };

    let (template, pieces) = match (Template::parse(source), oracle_parse(source)) {
        (Ok(t), Ok(p)) => (t, p),
        (Err(e), Err(why)) => {
            assert_eq!(kind(&e), why, "{source:?} refused for another reason: {e}");
            if !matches!(e, TemplateError::Empty) {
                assert!(e.to_string().contains(source), "the error does not name the template");
            }
            return;
        }
        (got, want) => panic!(
            "{source:?}: parsed {:?}, the oracle {}",
            got.map(|_| "Ok"),
            match want {
                Ok(_) => "accepts it".to_string(),
                Err(why) => format!("refuses it: {why:?}"),
            }
        ),
    };
    assert_eq!(template.source(), source);
    match (template.render(&event), oracle_render(&pieces, &event)) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{source:?} against {event}"),
        (Err(e), Err(names)) => {
            assert_eq!(e.fields, names, "{source:?} against {event}");
            assert_eq!(e.template, source);
        }
        (got, want) => panic!("{source:?} against {event}: rendered {got:?}, the oracle {want:?}"),
    }
});
