//! JSON text exactly as Go's `json.MarshalIndent(v, "", "    ")` writes it.
//!
//! Object keys keep the order of the `serde_json::Map` (built in Go struct order by the
//! callers). Strings are escaped as `encoding/json` does: `<`, `>` and `&` become `\u003c`,
//! `\u003e` and `\u0026`; U+2028 and U+2029 are escaped; control characters other than
//! `\b`, `\f`, `\n`, `\r` and `\t` become `\u00XX` (lower-case hex). No trailing newline.

use serde_json::Value;

const INDENT: &str = "    ";

/// Serialises `value` like Go's `json.MarshalIndent` with a 4-space indent.
pub(super) fn marshal_indent(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_value(&mut out, value, 0);
    out.into_bytes()
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

fn write_value(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
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
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => {
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
