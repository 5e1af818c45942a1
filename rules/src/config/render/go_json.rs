//! JSON text as Go's `json.MarshalIndent(v, "", "    ")` writes it: 4-space indent, `[]`
//! and `{}` for empty collections, `": "` after keys, no trailing newline, and Go's string
//! escaping (`<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`; control characters other than
//! `\b`, `\f`, `\n`, `\r`, `\t` as `\u00xx`).

use super::Node;

const INDENT: &str = "    ";

/// Serialises `node` like Go's `json.MarshalIndent` with a 4-space indent.
pub(super) fn to_json(node: &Node) -> String {
    let mut out = String::new();
    value(&mut out, node, 0);
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

fn value(out: &mut String, node: &Node, depth: usize) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Number(n) => out.push_str(n),
        Node::Str(s) => string(out, s),
        Node::Seq(items) if items.is_empty() => out.push_str("[]"),
        Node::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Node::Map(entries) if entries.is_empty() => out.push_str("{}"),
        Node::Map(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                string(out, key);
                out.push_str(": ");
                value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\0'..='\u{1f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::marshal_indent;

    #[test]
    fn go_layout_and_escapes() {
        let node = Node::Map(vec![
            ("a".into(), Node::Seq(vec![])),
            ("b".into(), Node::Map(vec![])),
            ("c".into(), Node::Null),
            (
                "d".into(),
                Node::Seq(vec![Node::Number("1".into()), Node::Bool(true)]),
            ),
            ("e".into(), Node::Str("<a&b>\u{1}\t\"\\\u{2028}é".into())),
        ]);
        assert_eq!(
            to_json(&node),
            "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": null,\n    \"d\": [\n        1,\n        true\n    ],\n    \
             \"e\": \"\\u003ca\\u0026b\\u003e\\u0001\\t\\\"\\\\\\u2028é\"\n}"
        );
    }

    fn text(v: &Value) -> String {
        String::from_utf8(marshal_indent(v)).expect("utf-8")
    }

    #[test]
    fn layout() {
        let v = json!({"a": [], "b": {}, "c": [1, {"d": true}], "e": null});
        assert_eq!(
            text(&v),
            "{\n    \"a\": [],\n    \"b\": {},\n    \"c\": [\n        1,\n        {\n            \
             \"d\": true\n        }\n    ],\n    \"e\": null\n}"
        );
    }

    #[test]
    fn escapes_like_go() {
        let v = json!("a && b <c> \"q\" \\ \n\t\u{1}\u{8}\u{c}\u{7f}\u{2028}é");
        assert_eq!(
            text(&v),
            "\"a \\u0026\\u0026 b \\u003cc\\u003e \\\"q\\\" \\\\ \\n\\t\\u0001\\b\\f\u{7f}\\u2028é\""
        );
    }

    #[test]
    fn big_numbers() {
        assert_eq!(text(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(text(&json!(-5)), "-5");
    }
}
