//! A position-keeping view of routes.yaml, used only to put a line and column on every
//! diagnostic and to find *all* unknown or missing keys in one pass.
//!
//! The typed parse is serde's (`yaml_serde`), which stops at its first error and forgets
//! positions once it succeeds. This module walks the same text with `yaml-rust2`'s marked
//! event stream and builds a tiny tree: enough to answer "where is `routes[2].http.url`?".

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::{Diagnostic, Problem};

/// A node of the YAML document with the position where it starts (1-based line and column).
#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
pub enum NodeKind {
    Scalar(String),
    Seq(Vec<Node>),
    /// Keys are kept in document order, each with the node of its key.
    Map(Vec<(Node, Node)>),
    Alias,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The value stored under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The entries of a mapping; empty for anything else.
    pub fn entries(&self) -> impl Iterator<Item = (&Node, &Node)> {
        let entries: &[(Node, Node)] = match &self.kind {
            NodeKind::Map(entries) => entries,
            _ => &[],
        };
        entries.iter().map(|(k, v)| (k, v))
    }

    pub fn items(&self) -> &[Node] {
        match &self.kind {
            NodeKind::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.kind, NodeKind::Map(_))
    }
}

/// Parses `text` into a [`Node`] tree. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        let m = e.marker();
        Diagnostic::new(
            Problem::Syntax,
            (m.line(), m.col() + 1),
            None,
            format!("invalid YAML: {}", e.info()),
        )
    })?;
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Map(Vec::new()),
        line: 1,
        column: 1,
    }))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// For each open mapping on the stack: the key waiting for its value.
    pending_keys: Vec<Option<Node>>,
    root: Option<Node>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        let Some(parent) = self.stack.last_mut() else {
            self.root.get_or_insert(node);
            return;
        };
        match &mut parent.kind {
            NodeKind::Seq(items) => items.push(node),
            NodeKind::Map(entries) => {
                let slot = self.pending_keys.last_mut().expect("a map has a key slot");
                match slot.take() {
                    Some(key) => {
                        let mut node = node;
                        // yaml-rust2 places an empty value at the next token, often on a
                        // later line: point at its key instead.
                        if matches!(&node.kind, NodeKind::Scalar(s) if s.is_empty() || s == "~")
                            && node.line != key.line
                        {
                            (node.line, node.column) = (key.line, key.column);
                        }
                        entries.push((key, node));
                    }
                    None => *slot = Some(node),
                }
            }
            _ => unreachable!("only collections are pushed on the stack"),
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = |kind| Node {
            kind,
            line: mark.line(),
            column: mark.col() + 1,
        };
        match ev {
            Event::Scalar(value, ..) => self.push_value(at(NodeKind::Scalar(value))),
            Event::Alias(_) => self.push_value(at(NodeKind::Alias)),
            Event::SequenceStart(..) => self.stack.push(at(NodeKind::Seq(Vec::new()))),
            Event::MappingStart(..) => {
                self.stack.push(at(NodeKind::Map(Vec::new())));
                self.pending_keys.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let mut node = self.stack.pop().expect("balanced collection events");
                if node.is_map() {
                    self.pending_keys.pop();
                }
                // yaml-rust2 marks a block mapping at the colon after its first key (a flow
                // mapping at its `{`): a block mapping is where its first key is.
                if let NodeKind::Map(entries) = &node.kind {
                    if let Some((first, _)) = entries.first() {
                        if (first.line, first.column) < (node.line, node.column) {
                            (node.line, node.column) = (first.line, first.column);
                        }
                    }
                }
                self.push_value(node);
            }
            _ => {}
        }
    }
}

/// Where each value (and each key, under `path#key`) stands, by dotted path such as
/// `routes[2].http.url`.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, (usize, usize)>);

impl Positions {
    pub fn index(root: &Node) -> Self {
        let mut positions = Positions::default();
        positions.walk(root, String::new());
        positions
    }

    fn walk(&mut self, node: &Node, path: String) {
        self.0.insert(path.clone(), (node.line, node.column));
        match &node.kind {
            NodeKind::Map(entries) => {
                for (key, value) in entries {
                    let Some(name) = key.as_str() else { continue };
                    let child = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    self.0
                        .insert(format!("{child}#key"), (key.line, key.column));
                    self.walk(value, child);
                }
            }
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }

    /// The position of `path`, or of its nearest ancestor that exists (a missing key is
    /// reported where its parent stands).
    pub fn at(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(pos) = self.0.get(path) {
                return *pos;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.0.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// The value path standing exactly at (`line`, `column`), the deepest if several do
    /// (serde's errors give only a position).
    pub fn path_at(&self, line: usize, column: usize) -> Option<String> {
        self.0
            .iter()
            .filter(|(path, pos)| **pos == (line, column) && !path.ends_with("#key"))
            .map(|(path, _)| path)
            .max_by_key(|path| path.len())
            .filter(|path| !path.is_empty())
            .cloned()
    }

    /// A [`Problem`] about `path`, reported at its position (a missing key's at its parent).
    pub fn problem(&self, problem: Problem, path: &str, message: impl Into<String>) -> Diagnostic {
        let clean = path.strip_suffix("#key").unwrap_or(path);
        Diagnostic::new(
            problem,
            self.at(path),
            (!clean.is_empty()).then(|| clean.to_string()),
            message,
        )
    }

    /// A value out of its range or not of its form ([`Problem::InvalidValue`]).
    pub fn invalid(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        self.problem(Problem::InvalidValue, path, message)
    }

    /// Settings that cannot hold together ([`Problem::Conflict`]).
    pub fn conflict(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        self.problem(Problem::Conflict, path, message)
    }

    /// A name, key or path used twice ([`Problem::NotUnique`]).
    pub fn not_unique(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        self.problem(Problem::NotUnique, path, message)
    }

    /// Something required that is not there ([`Problem::MissingKey`]).
    pub fn missing(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        self.problem(Problem::MissingKey, path, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns_of_keys_and_values() {
        let root = parse("a: 1\nroutes:\n  - name: x\n    http: { url: u }\n").unwrap();
        let pos = Positions::index(&root);
        assert_eq!(pos.at("a"), (1, 4));
        assert_eq!(pos.at("routes[0].name#key"), (3, 5));
        assert_eq!(pos.at("routes[0].name"), (3, 11));
        assert_eq!(pos.at("routes[0].http.url"), (4, 18));
        assert_eq!(pos.at("routes[0].http.missing"), (4, 11));
        assert_eq!(pos.at("routes[0]"), (3, 5));
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"), "{err:?}");
        assert!(err.line >= 1);
    }
}
