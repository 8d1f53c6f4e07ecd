//! `${VAR}` and `${VAR:-default}` substitution over the raw text of routes.yaml.
//!
//! Substitution happens on the text, before YAML parsing, like Vector does, so a variable may
//! stand anywhere a scalar may. Line numbers are preserved for every line that contains no
//! substituted newline. `$${` writes a literal `${`. References inside YAML comments are left
//! alone, so commenting out a line never makes a missing variable an error.
//!
//! Pure: the environment is passed in as a lookup function.

use super::Diagnostic;

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
///
/// Returns the substituted text and one diagnostic for every reference that could not be
/// resolved (unset without a default, or malformed), each with the line and column of its `$`.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<Diagnostic>) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let comment_at = comment_start(line).unwrap_or(line.len());
        let mut rest = &line[..comment_at];
        let mut col = 1;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            col += rest[..pos].chars().count();
            let after = &rest[pos..];
            if let Some(stripped) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = stripped;
                col += 3;
                continue;
            }
            if !after.starts_with("${") {
                out.push('$');
                rest = &after[1..];
                col += 1;
                continue;
            }
            let Some(close) = after.find('}') else {
                errors.push(Diagnostic::new(
                    line_no,
                    col,
                    "unclosed \"${\": write ${NAME} or ${NAME:-default} (or $${ for a literal ${)",
                ));
                out.push_str(after);
                rest = "";
                break;
            };
            let inner = &after[2..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                errors.push(Diagnostic::new(
                    line_no,
                    col,
                    format!("\"${{{inner}}}\" is not a valid variable reference: names are letters, digits and _, not starting with a digit"),
                ));
            } else {
                // As in the shell, `:-` also replaces a variable that is set but empty.
                match (lookup(name), default) {
                    (Some(value), None) => out.push_str(&value),
                    (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
                    (_, Some(default)) => out.push_str(default),
                    (None, None) => errors.push(Diagnostic::new(
                        line_no,
                        col,
                        format!("environment variable {name} is not set (set it, or give a default with ${{{name}:-default}})"),
                    )),
                }
            }
            col += after[..=close].chars().count();
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out.push_str(&line[comment_at..]);
    }
    (out, errors)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Byte offset of a YAML comment on this line: a `#` at the start or after white space,
/// outside quotes. Approximate (no multi-line scalars), which is what users write here.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev_is_space = true;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '#' && prev_is_space => return Some(i),
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
        prev_is_space = c.is_whitespace();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("abc".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let (out, errors) = substitute("a: ${KEY}\nb: ${NOPE:-x y}\nc: ${EMPTY:-d}\n", env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "a: abc\nb: x y\nc: d\n");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line_and_column() {
        let (_, errors) = substitute("a: ${ONE}\n  b: x ${TWO}\n", env);
        let got: Vec<_> = errors.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(got, vec![(1, 4), (2, 8)]);
        assert!(errors[0].message.contains("ONE is not set"));
    }

    #[test]
    fn leaves_comments_and_escapes_alone() {
        let (out, errors) = substitute("# ${UNSET}\na: 1 # ${UNSET}\nb: $${KEY} $5\n", env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "# ${UNSET}\na: 1 # ${UNSET}\nb: ${KEY} $5\n");
    }

    #[test]
    fn rejects_malformed_references() {
        let (_, errors) = substitute("a: ${1X}\nb: ${OPEN\n", env);
        assert_eq!(errors.len(), 2);
        assert!(errors[0].message.contains("not a valid variable"));
        assert!(errors[1].message.contains("unclosed"));
    }
}
