//! A thin, located view over saphyr's marked YAML tree.
//!
//! Every accessor takes the dotted path of the value (`onboot[0].binds[1]`) so that messages
//! name both the place in the file (line:column) and the place in the schema.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use saphyr::{LoadableYamlNode, MarkedYamlOwned, Marker, ScalarOwned, YamlDataOwned};

use super::error::{ConfigError, Span, Spanned, did_you_mean};

pub(super) type Node = MarkedYamlOwned;

/// Reads one source text; knows its file name for spans.
pub(super) struct Reader<'t> {
    file: Arc<Path>,
    text: &'t str,
}

/// `top level` for the document root, otherwise the path itself.
pub(super) fn display_path(path: &str) -> &str {
    if path.is_empty() { "top level" } else { path }
}

/// `parent.key` (or `key` at the root).
pub(super) fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `parent[index]`.
pub(super) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The data of a node, looking through tags.
fn data(node: &Node) -> &YamlDataOwned<Node> {
    match &node.data {
        YamlDataOwned::Tagged(_, inner) => data(inner),
        other => other,
    }
}

/// "a string", "a mapping", … for messages.
pub(super) fn describe(node: &Node) -> &'static str {
    match data(node) {
        YamlDataOwned::Value(ScalarOwned::Null) => "null",
        YamlDataOwned::Value(ScalarOwned::Boolean(_)) => "a boolean",
        YamlDataOwned::Value(ScalarOwned::Integer(_)) => "an integer",
        YamlDataOwned::Value(ScalarOwned::FloatingPoint(_)) => "a float",
        YamlDataOwned::Value(ScalarOwned::String(_)) => "a string",
        YamlDataOwned::Sequence(_) => "a sequence",
        YamlDataOwned::Mapping(_) => "a mapping",
        _ => "an invalid value",
    }
}

/// A mapping's entries (after `<<` merge keys are applied), keyed by their string form.
pub(super) struct Map<'n> {
    pub(super) span: Span,
    entries: Vec<(Spanned<String>, &'n Node)>,
}

impl<'n> Map<'n> {
    /// The value of `key`, if present.
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| *v)
    }

    /// All entries in document order.
    pub(super) fn entries(&self) -> &[(Spanned<String>, &'n Node)] {
        &self.entries
    }
}

impl<'t> Reader<'t> {
    pub(super) fn new(file: Arc<Path>, text: &'t str) -> Reader<'t> {
        Reader { file, text }
    }

    /// Parses the text; `None` for an empty document. More than one document is an error.
    pub(super) fn load(&self) -> Result<Option<Node>, ConfigError> {
        let mut docs = Node::load_from_str(self.text).map_err(|e| {
            ConfigError::new(
                self.mark(*e.marker()),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        if docs.len() > 1 {
            return Err(ConfigError::new(
                self.span_of(&docs[1]),
                "more than one YAML document; a configuration is a single document",
            ));
        }
        let Some(doc) = docs.pop() else {
            return Ok(None);
        };
        match data(&doc) {
            YamlDataOwned::BadValue => Ok(None),
            YamlDataOwned::Value(ScalarOwned::Null) => Ok(None),
            _ => Ok(Some(doc)),
        }
    }

    pub(super) fn mark(&self, marker: Marker) -> Span {
        let line = u32::try_from(marker.line()).unwrap_or(u32::MAX);
        let column = u32::try_from(marker.col() + 1).unwrap_or(u32::MAX);
        Span::new(self.file.clone(), line, column)
    }

    pub(super) fn span_of(&self, node: &Node) -> Span {
        self.mark(node.span.start)
    }

    /// An error located at `node`.
    pub(super) fn error(&self, node: &Node, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.span_of(node), message)
    }

    /// The source text of a scalar node, as written (quotes included).
    pub(super) fn raw(&self, node: &Node) -> String {
        let start = node.span.start.index();
        let end = node.span.end.index().max(start);
        self.text.chars().skip(start).take(end - start).collect()
    }

    /// `<path>: expected <expected>, found <kind>`, with a hint for the common mistakes.
    pub(super) fn type_error(&self, node: &Node, path: &str, expected: &str) -> ConfigError {
        let err = self.error(
            node,
            format!(
                "{}: expected {expected}, found {}",
                display_path(path),
                describe(node)
            ),
        );
        match data(node) {
            YamlDataOwned::Value(
                ScalarOwned::Integer(_) | ScalarOwned::FloatingPoint(_) | ScalarOwned::Boolean(_),
            ) if expected.contains("string") => {
                err.with_hint(format!("quote it: \"{}\"", self.raw(node).trim()))
            }
            YamlDataOwned::Value(ScalarOwned::String(s))
                if expected == "a boolean"
                    && matches!(
                        s.to_lowercase().as_str(),
                        "yes" | "no" | "on" | "off" | "y" | "n"
                    ) =>
            {
                err.with_hint("YAML 1.2 booleans are `true` and `false`")
            }
            _ => err,
        }
    }

    /// The key of a mapping entry as a string (plain scalars keep their written form).
    fn key(&self, node: &Node, path: &str) -> Result<Spanned<String>, ConfigError> {
        let span = self.span_of(node);
        match data(node) {
            YamlDataOwned::Value(ScalarOwned::String(s)) => Ok(Spanned::new(s.clone(), span)),
            YamlDataOwned::Value(
                ScalarOwned::Integer(_) | ScalarOwned::FloatingPoint(_) | ScalarOwned::Boolean(_),
            ) => Ok(Spanned::new(self.raw(node).trim().to_owned(), span)),
            _ => Err(self.error(
                node,
                format!(
                    "{}: mapping keys must be strings, found {}",
                    display_path(path),
                    describe(node)
                ),
            )),
        }
    }

    /// Reads a mapping, applying `<<` merge keys, and rejects keys outside `allowed`.
    pub(super) fn map<'n>(
        &self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
    ) -> Result<Map<'n>, ConfigError> {
        let map = self.any_map(node, path)?;
        for (key, _) in &map.entries {
            if !allowed.contains(&key.value.as_str()) {
                let err = ConfigError::new(
                    key.span.clone(),
                    format!("{}: unknown key `{}`", display_path(path), key.value),
                );
                return Err(match did_you_mean(&key.value, allowed.iter().copied()) {
                    Some(hint) => err.with_hint(hint),
                    None => err.with_hint(format!("expected one of: {}", allowed.join(", "))),
                });
            }
        }
        Ok(map)
    }

    /// Reads a mapping with arbitrary keys.
    pub(super) fn any_map<'n>(&self, node: &'n Node, path: &str) -> Result<Map<'n>, ConfigError> {
        let YamlDataOwned::Mapping(mapping) = data(node) else {
            return Err(self.type_error(node, path, "a mapping"));
        };
        let mut entries: Vec<(Spanned<String>, &'n Node)> = Vec::with_capacity(mapping.len());
        let mut merges = Vec::new();
        for (key, value) in mapping {
            let key = self.key(key, path)?;
            if key.value == "<<" {
                merges.push(value);
            } else {
                entries.push((key, value));
            }
        }
        for merge in merges {
            let sources: Vec<&'n Node> = match data(merge) {
                YamlDataOwned::Sequence(items) => items.iter().collect(),
                _ => vec![merge],
            };
            for source in sources {
                let merged = self.any_map(source, path)?;
                for (key, value) in merged.entries {
                    if !entries.iter().any(|(k, _)| k.value == key.value) {
                        entries.push((key, value));
                    }
                }
            }
        }
        Ok(Map {
            span: self.span_of(node),
            entries,
        })
    }

    pub(super) fn sequence<'n>(
        &self,
        node: &'n Node,
        path: &str,
    ) -> Result<&'n [Node], ConfigError> {
        match data(node) {
            YamlDataOwned::Sequence(items) => Ok(items),
            _ => Err(self.type_error(node, path, "a sequence")),
        }
    }

    pub(super) fn string(&self, node: &Node, path: &str) -> Result<Spanned<String>, ConfigError> {
        match data(node) {
            YamlDataOwned::Value(ScalarOwned::String(s)) => {
                Ok(Spanned::new(s.clone(), self.span_of(node)))
            }
            _ => Err(self.type_error(node, path, "a string")),
        }
    }

    pub(super) fn boolean(&self, node: &Node, path: &str) -> Result<Spanned<bool>, ConfigError> {
        match data(node) {
            YamlDataOwned::Value(ScalarOwned::Boolean(b)) => {
                Ok(Spanned::new(*b, self.span_of(node)))
            }
            _ => Err(self.type_error(node, path, "a boolean")),
        }
    }

    /// An integer; a plain scalar with a leading `0` is octal, as yaml.v3 reads it.
    pub(super) fn integer(&self, node: &Node, path: &str) -> Result<Spanned<i64>, ConfigError> {
        let YamlDataOwned::Value(ScalarOwned::Integer(value)) = data(node) else {
            return Err(self.type_error(node, path, "an integer"));
        };
        let raw = self.raw(node);
        let raw = raw.trim();
        let (negative, digits) = match raw.as_bytes().first() {
            Some(b'-') => (true, &raw[1..]),
            Some(b'+') => (false, &raw[1..]),
            _ => (false, raw),
        };
        let legacy_octal = digits.len() > 1
            && digits.starts_with('0')
            && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let value = match i64::from_str_radix(digits, 8) {
            Ok(octal) if legacy_octal => {
                if negative {
                    -octal
                } else {
                    octal
                }
            }
            _ => *value,
        };
        Ok(Spanned::new(value, self.span_of(node)))
    }

    /// An integer that must fit `T` (`what` names the range in the message).
    pub(super) fn integer_in<T: TryFrom<i64>>(
        &self,
        node: &Node,
        path: &str,
        what: &str,
    ) -> Result<Spanned<T>, ConfigError> {
        let value = self.integer(node, path)?;
        match T::try_from(value.value) {
            Ok(v) => Ok(Spanned::new(v, value.span)),
            Err(_) => Err(ConfigError::new(
                value.span,
                format!(
                    "{}: {} is out of range (expected {what})",
                    display_path(path),
                    value.value
                ),
            )),
        }
    }

    /// A sequence of strings.
    pub(super) fn strings(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<Spanned<Vec<Spanned<String>>>, ConfigError> {
        let items = self.sequence(node, path)?;
        let values = items
            .iter()
            .enumerate()
            .map(|(i, n)| self.string(n, &item(path, i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Spanned::new(values, self.span_of(node)))
    }

    /// A mapping from strings to strings (keys sorted, as Go sorts map keys).
    pub(super) fn string_map(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<Spanned<BTreeMap<String, String>>, ConfigError> {
        let map = self.any_map(node, path)?;
        let mut out = BTreeMap::new();
        for (key, value) in map.entries() {
            let value = self.string(value, &child(path, &key.value))?;
            out.insert(key.value.clone(), value.value);
        }
        Ok(Spanned::new(out, map.span))
    }

    /// Whether the node is a string scalar.
    pub(super) fn is_string(node: &Node) -> bool {
        matches!(data(node), YamlDataOwned::Value(ScalarOwned::String(_)))
    }

    /// Whether the node is an integer scalar.
    pub(super) fn is_integer(node: &Node) -> bool {
        matches!(data(node), YamlDataOwned::Value(ScalarOwned::Integer(_)))
    }
}
