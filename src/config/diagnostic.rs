//! What reading routes.yaml reports: a [`Diagnostic`] is where (line, column, key path),
//! what kind of problem ([`Problem`]), and what to do about it (the message).
//!
//! The kind is the typed part, for code: `hookfan check --json` prints it as a stable
//! `code`, and a test can ask for a kind rather than match words. The message is for people
//! and may be reworded; the codes may not (the README lists them, and a test holds it to
//! [`Problem::ALL`]).

use std::fmt;

/// One problem found in routes.yaml, or one warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based, in the file as written (before `${VAR}` substitution).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The key path the problem is about, like `routes[2].http.url` (for a missing key, the
    /// mapping it is missing from); None when the problem is in the text itself (YAML
    /// syntax, a `${VAR}` reference).
    pub path: Option<String>,
    pub problem: Problem,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        problem: Problem,
        (line, column): (usize, usize),
        path: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            line,
            column,
            path,
            problem,
            message: message.into(),
        }
    }
}

/// What kind of problem a [`Diagnostic`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// Not YAML, or not the shape of a config: a list where a mapping goes, text where a
    /// number goes.
    Syntax,
    /// A `${VAR}` reference that is unset (with no default) or malformed.
    Environment,
    /// A key hookfan does not know (a typo, or a setting of another version).
    UnknownKey,
    /// A key written twice in one mapping.
    DuplicateKey,
    /// Something required is not there: a key, a route's destination, any app or route.
    MissingKey,
    /// A value out of its range or not of its form: a URL, address, duration, size, name,
    /// an empty string.
    InvalidValue,
    /// Settings that are each valid but cannot hold together.
    Conflict,
    /// A name, key or path that must be unique and is used twice.
    NotUnique,
    /// (A warning.) An event type Stream does not document: valid, probably not meant.
    UnknownEventType,
}

impl Problem {
    /// Every kind, in declaration order.
    pub const ALL: [Problem; 9] = [
        Problem::Syntax,
        Problem::Environment,
        Problem::UnknownKey,
        Problem::DuplicateKey,
        Problem::MissingKey,
        Problem::InvalidValue,
        Problem::Conflict,
        Problem::NotUnique,
        Problem::UnknownEventType,
    ];

    /// The stable name of the kind, as `hookfan check --json` prints it.
    pub fn code(self) -> &'static str {
        match self {
            Problem::Syntax => "syntax",
            Problem::Environment => "environment",
            Problem::UnknownKey => "unknown-key",
            Problem::DuplicateKey => "duplicate-key",
            Problem::MissingKey => "missing-key",
            Problem::InvalidValue => "invalid-value",
            Problem::Conflict => "conflict",
            Problem::NotUnique => "not-unique",
            Problem::UnknownEventType => "unknown-event-type",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The diagnostics as `file:line:column: message` lines and a count, as `hookfan check`
/// and the daemon print them.
pub(super) fn render(file: &str, diagnostics: &[Diagnostic]) -> String {
    let mut lines: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{file}:{}:{}: {}", d.line, d.column, d.message))
        .collect();
    let n = diagnostics.len();
    lines.push(format!(
        "{file}: {n} error{} found",
        if n == 1 { "" } else { "s" }
    ));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code() {
        let codes: std::collections::HashSet<&str> =
            Problem::ALL.iter().map(|p| p.code()).collect();
        assert_eq!(codes.len(), Problem::ALL.len());
        for problem in Problem::ALL {
            assert!(
                problem
                    .code()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{problem:?}"
            );
        }
    }
}
