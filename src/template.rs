//! Field templates such as `"{cid}"` or `"{message.user.id|user.id|'none'}"`: a string with
//! `{...}` placeholders filled from the event's JSON. Used for SQS/SNS `message_group_id`.
//!
//! Inside braces, alternatives are separated by `|` and tried in order; each is a dotted
//! path into the event (`message.user.id`). A string field gives its value, a number or a
//! boolean its JSON text (`7`, `true`); a missing, null, object or array field gives nothing and the next alternative is tried.
//! When none gives a value, the last alternative is used as literal text if there are two or
//! more (`{cid|unknown}` gives `unknown`), and a quoted last alternative (`'none'` or
//! `"none"`) is always literal. A single alternative that is missing is an error: the event
//! cannot be sent the way the route asks, which is for the operator to decide.
//!
//! Pure: no I/O. Parsed (and so validated) once at config time.

use serde_json::Value;

/// Why a template's text is not a template. Each names the template, as config errors quote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("'}}' without '{{' in template \"{template}\"")]
    StrayClose { template: String },
    #[error("unclosed '{{' in template \"{template}\"")]
    Unclosed { template: String },
    #[error("the template is empty")]
    Empty,
    #[error("in template \"{template}\": a quoted literal must come last, after a field name")]
    MisplacedLiteral { template: String },
    #[error("in template \"{template}\": \"{alternative}\" is not a field name (write {{cid}}, {{message.user.id}} or {{cid|'default'}})")]
    NotAFieldName {
        template: String,
        alternative: String,
    },
}

/// Why an event could not fill a template: none of one placeholder's fields holds a value
/// and it has no literal to fall back on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the event has no field {} for template \"{template}\" (add a fallback like {{{}|'none'}})",
    fields.join(" or "),
    fields.join("|")
)]
pub struct MissingField {
    pub template: String,
    /// The placeholder's fields, dotted (`message.user.id`).
    pub fields: Vec<String>,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field {
        /// Dotted paths, tried in order.
        paths: Vec<Vec<String>>,
        /// Used when no path gives a value.
        fallback: Option<String>,
    },
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let stray = || TemplateError::StrayClose {
            template: source.to_string(),
        };
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(stray());
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| TemplateError::Unclosed {
                template: source.to_string(),
            })?;
            parts.push(parse_field(&after[..close], source)?);
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(stray());
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if parts.is_empty() {
            return Err(TemplateError::Empty);
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fills the template from `event`; on error, which placeholder had no value.
    pub fn render(&self, event: &Value) -> Result<String, MissingField> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { paths, fallback } => {
                    let found = paths.iter().find_map(|p| lookup(event, p));
                    match (found, fallback) {
                        (Some(value), _) => out.push_str(&value),
                        (None, Some(literal)) => out.push_str(literal),
                        (None, None) => {
                            return Err(MissingField {
                                template: self.source.clone(),
                                fields: paths.iter().map(|p| p.join(".")).collect(),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_field(inner: &str, source: &str) -> Result<Part, TemplateError> {
    let alternatives: Vec<&str> = inner.split('|').map(str::trim).collect();
    let mut paths = Vec::new();
    let mut fallback = None;
    let last = alternatives.len() - 1;
    for (i, alt) in alternatives.iter().enumerate() {
        let quoted = ['\'', '"']
            .iter()
            .find_map(|q| alt.strip_prefix(*q).and_then(|a| a.strip_suffix(*q)));
        match quoted {
            Some(literal) if i == last && i > 0 => fallback = Some(literal.to_string()),
            Some(_) => {
                return Err(TemplateError::MisplacedLiteral {
                    template: source.to_string(),
                })
            }
            None => {
                let path: Vec<String> = alt.split('.').map(str::to_string).collect();
                if alt.is_empty()
                    || path.iter().any(|seg| {
                        seg.is_empty()
                            || !seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
                {
                    return Err(TemplateError::NotAFieldName {
                        template: source.to_string(),
                        alternative: alt.to_string(),
                    });
                }
                if i == last && i > 0 {
                    fallback = Some(alt.to_string());
                }
                paths.push(path);
            }
        }
    }
    Ok(Part::Field { paths, fallback })
}

fn lookup(event: &Value, path: &[String]) -> Option<String> {
    let mut v = event;
    for seg in path {
        v = v.get(seg.as_str())?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_from_event_fields() {
        let event = json!({
            "type": "message.new",
            "cid": "messaging:general",
            "channel_id": "general",
            "message": {"user": {"id": "u1"}, "n": 7, "nothing": null},
        });
        let table = [
            ("{cid}", Some("messaging:general")),
            ("{message.user.id}", Some("u1")),
            ("room-{channel_id}/{type}", Some("room-general/message.new")),
            ("{message.n}", Some("7")),
            ("{missing|cid}", Some("messaging:general")),
            ("{missing|unknown}", Some("unknown")),
            ("{missing|'none'}", Some("none")),
            ("{message.nothing|\"x y\"}", Some("x y")),
            ("{message.user|type}", Some("message.new")),
            ("static", Some("static")),
        ];
        for (source, want) in table {
            let got = Template::parse(source).unwrap().render(&event);
            assert_eq!(got.as_deref().ok(), want, "{source}: {got:?}");
        }
    }

    #[test]
    fn a_single_missing_field_is_an_error_naming_it() {
        let err = Template::parse("{cid}")
            .unwrap()
            .render(&json!({"type": "x"}))
            .unwrap_err();
        assert_eq!(err.fields, ["cid"]);
        assert!(err.to_string().contains("no field cid"), "{err}");
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in [
            "",
            "{",
            "{cid",
            "cid}",
            "{}",
            "{a..b}",
            "{a b}",
            "{'lit'}",
            "{'lit'|cid}",
            "}{cid}",
            "a}b{cid}",
            "{cid}}{type}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
