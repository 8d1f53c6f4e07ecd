//! `template::Template` on an arbitrary template and an arbitrary event: parsing and rendering
//! must never panic, and what they produce must keep the module's rules.
//!
//! Input layout: the template's text, a NUL byte, then the event as JSON text. When that is
//! not JSON, the same bytes build an event through `arbitrary` instead, so every input
//! renders against something. A seed is `{cid|'none'}` NUL `{"cid":"..."}`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use hookfan::template::Template;
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

    let Ok(template) = Template::parse(source) else {
        return;
    };
    assert_eq!(template.source(), source);
    assert!(!source.is_empty(), "accepted the empty template");
    let rendered = template.render(&event);
    assert_eq!(
        rendered,
        template.render(&event),
        "rendering is not deterministic"
    );
    // Text with no placeholder is its own value, whatever the event.
    if !source.contains('{') {
        assert_eq!(rendered.as_deref(), Ok(source));
    }
    if let Err(message) = rendered {
        assert!(
            message.contains(source),
            "the error does not name the template"
        );
    }
});
