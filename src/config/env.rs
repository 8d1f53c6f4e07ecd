//! `${VAR}` and `${VAR:-default}` substitution over the raw text of routes.yaml.
//!
//! Substitution happens on the text, before YAML parsing, like Vector does, so a variable may
//! stand anywhere a scalar may. Line numbers are preserved for every line that contains no
//! substituted newline. `$${` writes a literal `${`. References inside YAML comments are left
//! alone, so commenting out a line never makes a missing variable an error.
//!
//! Pure: the environment is passed in as a lookup function.

use super::{Diagnostic, Problem};

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
///
/// Returns the substituted text, one diagnostic for every reference that could not be
/// resolved (unset without a default, or malformed), each with the line and column of its `$`,
/// and the map from columns of the result back to columns of `text`.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Vec<Diagnostic>, ColumnMap) {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut map = ColumnMap::default();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let line_start = out.len();
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
                    Problem::Environment,
                    (line_no, col),
                    None,
                    "unclosed \"${\": write ${NAME} or ${NAME:-default} (or $${ for a literal ${)",
                ));
                out.push_str(after);
                rest = "";
                break;
            };
            let inner = &after[2..close];
            let written_from = out[line_start..].chars().count() + 1;
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                errors.push(Diagnostic::new(
                    Problem::Environment,
                    (line_no, col),
                    None,
                    format!("\"${{{inner}}}\" is not a valid variable reference: names are letters, digits and _, not starting with a digit"),
                ));
            } else {
                // As in the shell, `:-` also replaces a variable that is set but empty.
                match (lookup(name), default) {
                    (Some(value), None) => out.push_str(&value),
                    (Some(value), Some(_)) if !value.is_empty() => out.push_str(&value),
                    (_, Some(default)) => out.push_str(default),
                    (None, None) => errors.push(Diagnostic::new(
                        Problem::Environment,
                        (line_no, col),
                        None,
                        format!("environment variable {name} is not set (set it, or give a default with ${{{name}:-default}})"),
                    )),
                }
            }
            let reference_len = after[..=close].chars().count();
            map.record(
                line_no,
                Splice {
                    written_from,
                    written_to: out[line_start..].chars().count() + 1,
                    original_from: col,
                    original_to: col + reference_len,
                },
            );
            col += reference_len;
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out.push_str(&line[comment_at..]);
    }
    (out, errors, map)
}

/// One `${...}` replaced on a line: columns `[written_from, written_to)` of the substituted
/// text stand for `[original_from, original_to)` of the file as written.
#[derive(Debug, Clone, Copy)]
struct Splice {
    written_from: usize,
    written_to: usize,
    original_from: usize,
    original_to: usize,
}

/// Maps columns of the substituted text back to the file as the user wrote it, so a
/// diagnostic after a `${VAR}` on the same line still points at the right character.
#[derive(Debug, Default)]
pub struct ColumnMap(std::collections::HashMap<usize, Vec<Splice>>);

impl ColumnMap {
    fn record(&mut self, line: usize, splice: Splice) {
        self.0.entry(line).or_default().push(splice);
    }

    /// The column in the original text of column `column` of line `line` after substitution.
    /// A column inside a substituted value maps to its `$`.
    pub fn original(&self, line: usize, column: usize) -> usize {
        let Some(splices) = self.0.get(&line) else {
            return column;
        };
        let mut shift: isize = 0;
        for s in splices {
            if column < s.written_from {
                break;
            }
            if column < s.written_to {
                return s.original_from;
            }
            shift = s.original_to as isize - s.written_to as isize;
        }
        (column as isize + shift).max(1) as usize
    }
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
        let (out, errors, _) = substitute("a: ${KEY}\nb: ${NOPE:-x y}\nc: ${EMPTY:-d}\n", env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "a: abc\nb: x y\nc: d\n");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line_and_column() {
        let (_, errors, _) = substitute("a: ${ONE}\n  b: x ${TWO}\n", env);
        let got: Vec<_> = errors.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(got, vec![(1, 4), (2, 8)]);
        assert!(errors[0].message.contains("ONE is not set"));
    }

    #[test]
    fn leaves_comments_and_escapes_alone() {
        let (out, errors, _) = substitute("# ${UNSET}\na: 1 # ${UNSET}\nb: $${KEY} $5\n", env);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out, "# ${UNSET}\na: 1 # ${UNSET}\nb: ${KEY} $5\n");
    }

    #[test]
    fn columns_after_a_substitution_map_back_to_the_text_as_written() {
        // "a: ${KEY} ${KEY} z" becomes "a: abc abc z".
        let (out, _, map) = substitute("a: ${KEY} ${KEY} z\n", env);
        assert_eq!(out, "a: abc abc z\n");
        assert_eq!(map.original(1, 1), 1);
        assert_eq!(map.original(1, 4), 4, "start of the first value is its $");
        assert_eq!(map.original(1, 5), 4, "inside the first value");
        assert_eq!(map.original(1, 8), 11, "start of the second value");
        assert_eq!(map.original(1, 12), 18, "the z after both");
        assert_eq!(map.original(2, 7), 7, "other lines are unchanged");
    }

    #[test]
    fn rejects_malformed_references() {
        let (_, errors, _) = substitute("a: ${1X}\nb: ${OPEN\n", env);
        assert_eq!(errors.len(), 2);
        assert!(errors[0].message.contains("not a valid variable"));
        assert!(errors[1].message.contains("unclosed"));
    }
}
