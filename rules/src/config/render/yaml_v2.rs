//! A YAML writer that produces the bytes `gopkg.in/yaml.v2` (v2.4) `Marshal` produces.
//!
//! yaml.v2 drives a port of libyaml's emitter; this module re-implements the part of that
//! emitter the metadata file needs (block mappings and sequences, empty flow collections and
//! the four scalar styles) as a small state machine over a [`Node`] tree, keeping the same
//! bookkeeping (column, indent stack, "last write was whitespace/indentation"), so that
//! line folding at 80 columns, quoting and indentation come out identical:
//! - sequences inside a mapping are not indented (`key:\n- item`);
//! - empty sequences and mappings are written `[]` and `{}`;
//! - a string that would read back as another type (`true`, `1`, `""`, `1:30`, a date) is
//!   double-quoted; a string with a line feed is a literal block (`|`, `|-`, `|+`) when
//!   that is possible; one that cannot be plain (leading or trailing space, `: `, ` #`, an
//!   indicator first, …) is single-quoted, or double-quoted if it also has special characters;
//! - plain, single- and double-quoted scalars are folded at a space once past column 80.

mod resolve;

use super::Node;
use resolve::{is_base60_float, reads_back_as_string};

/// Indentation step.
const BEST_INDENT: usize = 2;
/// Preferred line width.
const BEST_WIDTH: usize = 80;

/// Serialises `node` as a YAML document, the way yaml.v2 marshals the equivalent Go value.
pub(super) fn to_yaml(node: &Node) -> String {
    let mut emitter = Emitter::default();
    emitter.node(node, false, false);
    // DOCUMENT-END (implicit): finish the last line.
    emitter.write_indent();
    emitter.out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// What a scalar's text allows (libyaml's scalar analysis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Analysis {
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

struct Emitter {
    out: String,
    /// Characters written on the current line.
    column: usize,
    /// Current indentation; `None` before the root collection.
    indent: Option<usize>,
    indents: Vec<Option<usize>>,
    /// The last thing written was whitespace.
    whitespace: bool,
    /// Only indentation has been written on the current line so far.
    indention: bool,
    flow_level: usize,
    /// The node being written is a mapping key or value.
    mapping_context: bool,
    /// The node being written is a simple (`key:`) mapping key.
    simple_key_context: bool,
}

impl Default for Emitter {
    fn default() -> Emitter {
        Emitter {
            out: String::new(),
            column: 0,
            indent: None,
            indents: Vec::new(),
            whitespace: true,
            indention: true,
            flow_level: 0,
            mapping_context: false,
            simple_key_context: false,
        }
    }
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    /// Copies a line-break character from a scalar.
    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        self.indent = match self.indent {
            None if flow => Some(BEST_INDENT),
            None => Some(0),
            Some(indent) if !indentless => Some(indent + BEST_INDENT),
            Some(indent) => Some(indent),
        };
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(None);
    }

    fn node(&mut self, node: &Node, mapping: bool, simple_key: bool) {
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match node {
            Node::Seq(items) if self.flow_level > 0 || items.is_empty() => {
                self.flow_sequence(items);
            }
            Node::Seq(items) => self.block_sequence(items),
            Node::Map(entries) if self.flow_level > 0 || entries.is_empty() => {
                self.flow_mapping(entries);
            }
            Node::Map(entries) => self.block_mapping(entries),
            Node::Null => self.scalar("null", Style::Plain),
            Node::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain),
            Node::Number(n) => self.scalar(n, Style::Plain),
            Node::Str(s) => self.scalar(s, requested_style(s)),
        }
    }

    fn block_sequence(&mut self, items: &[Node]) {
        let indentless = self.mapping_context && !self.indention;
        self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, false, false);
        }
        self.pop_indent();
    }

    fn block_mapping(&mut self, entries: &[(String, Node)]) {
        self.increase_indent(false, false);
        for (key, value) in entries {
            self.write_indent();
            let key_node = Node::Str(key.clone());
            if is_simple_key(key) {
                self.node(&key_node, true, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.node(&key_node, true, false);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.node(value, true, false);
        }
        self.pop_indent();
    }

    fn flow_sequence(&mut self, items: &[Node]) {
        self.write_indicator("[", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            self.node(item, false, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.write_indicator("]", false, false, false);
    }

    fn flow_mapping(&mut self, entries: &[(String, Node)]) {
        self.write_indicator("{", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            let key_node = Node::Str(key.clone());
            if is_simple_key(key) {
                self.node(&key_node, true, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, false);
                self.node(&key_node, true, false);
                if self.column > BEST_WIDTH {
                    self.write_indent();
                }
                self.write_indicator(":", true, false, false);
            }
            self.node(value, true, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.write_indicator("}", false, false, false);
    }

    fn scalar(&mut self, value: &str, requested: Style) {
        let analysis = analyze(value);
        let mut style = requested;
        if self.simple_key_context && analysis.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain {
            let plain_allowed = if self.flow_level > 0 {
                analysis.flow_plain_allowed
            } else {
                analysis.block_plain_allowed
            };
            if !plain_allowed
                || (value.is_empty() && (self.flow_level > 0 || self.simple_key_context))
            {
                style = Style::SingleQuoted;
            }
        }
        if style == Style::SingleQuoted && !analysis.single_quoted_allowed {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal
            && (!analysis.block_allowed || self.flow_level > 0 || self.simple_key_context)
        {
            style = Style::DoubleQuoted;
        }
        self.increase_indent(true, false);
        let allow_breaks = !self.simple_key_context;
        let chars: Vec<char> = value.chars().collect();
        match style {
            Style::Plain => self.write_plain(&chars, allow_breaks),
            Style::SingleQuoted => self.write_single_quoted(&chars, allow_breaks),
            Style::DoubleQuoted => self.write_double_quoted(&chars, allow_breaks),
            Style::Literal => self.write_literal(&chars),
        }
        self.pop_indent();
    }

    fn write_plain(&mut self, chars: &[char], allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let fold = allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && chars.get(i + 1) != Some(&' ');
                if fold {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, chars: &[char], allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let mut spaces = false;
        let mut breaks = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let fold = allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                    && chars[i + 1] != ' ';
                if fold {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, chars: &[char], allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        // libyaml checks for a byte-order mark at the start of the value, not at each
        // character: a value starting with one has every character escaped.
        let starts_with_bom = chars.first() == Some(&'\u{FEFF}');
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if !is_printable(c) || starts_with_bom || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    other => {
                        let code = u32::from(other);
                        let (marker, digits) = match code {
                            0..=0xFF => ('x', 2),
                            0x100..=0xFFFF => ('u', 4),
                            _ => ('U', 8),
                        };
                        self.put(marker);
                        for shift in (0..digits).rev() {
                            let digit = (code >> (shift * 4)) & 0xF;
                            let hex =
                                char::from_digit(digit, 16).map_or('0', |d| d.to_ascii_uppercase());
                            self.put(hex);
                        }
                    }
                }
                spaces = false;
            } else if c == ' ' {
                let fold = allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len();
                if fold {
                    self.write_indent();
                    if chars[i + 1] == ' ' {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, chars: &[char]) {
        self.write_indicator("|", true, false, false);
        if chars.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let chomp = match chars {
            [] => Some("-"),
            [.., last] if !is_break(*last) => Some("-"),
            [_] => Some("+"),
            [.., before, _] if is_break(*before) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in chars {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

/// A key can be written as `key:` when it fits on one line and is at most 128 bytes.
fn is_simple_key(key: &str) -> bool {
    !analyze(key).multiline && key.len() <= 128
}

/// The style yaml.v2 asks for a string: literal if it has a line feed, plain if it would
/// read back as the same string, double-quoted otherwise.
fn requested_style(s: &str) -> Style {
    if s.contains('\n') {
        Style::Literal
    } else if reads_back_as_string(s) && !is_base60_float(s) {
        Style::Plain
    } else {
        Style::DoubleQuoted
    }
}

fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        && c != '\u{feff}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_blank_or_break_or_nul(c: char) -> bool {
    is_blank(c) || is_break(c) || c == '\0'
}

/// libyaml's scalar analysis: which styles can represent `value`.
fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            flow_plain_allowed: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = value.chars().collect();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let mut flow_indicators = block_indicators;
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = chars.get(i + 1).is_none_or(|&n| is_blank(n));
        let last = i + 1 == chars.len();
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                '?' | ':' => {
                    flow_indicators = true;
                    block_indicators |= followed_by_whitespace;
                }
                '-' if followed_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        } else {
            match c {
                ',' | '?' | '[' | ']' | '{' | '}' => flow_indicators = true,
                ':' => {
                    flow_indicators = true;
                    block_indicators |= followed_by_whitespace;
                }
                '#' if preceded_by_whitespace => {
                    flow_indicators = true;
                    block_indicators = true;
                }
                _ => {}
            }
        }
        if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            leading_space |= i == 0;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            leading_break |= i == 0;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank_or_break_or_nul(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        flow_plain_allowed: true,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special_characters {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.flow_plain_allowed = false;
        a.block_plain_allowed = false;
    }
    if flow_indicators {
        a.flow_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// yaml.v2's order for string map keys: letters compare as characters, and runs of digits
/// compare by value (`a2` < `a10`), letters sorting after non-letters.
pub(super) fn key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .wrapping_mul(10)
                .wrapping_add(i64::from(u32::from(ar[ai]) - 48));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .wrapping_mul(10)
                .wrapping_add(i64::from(u32::from(br[bi]) - 48));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(node: &Node) -> String {
        to_yaml(node)
    }

    fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    fn s(v: &str) -> Node {
        Node::Str(v.to_owned())
    }

    #[test]
    fn quoting_of_strings_that_read_back_as_other_types() {
        for (value, written) in [
            ("plain", "plain"),
            ("", "\"\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("1", "\"1\""),
            ("0x1F", "\"0x1F\""),
            ("0777", "\"0777\""),
            ("08", "\"08\""),
            ("1_000", "\"1_000\""),
            ("1.5", "\"1.5\""),
            (".5", "\".5\""),
            ("1e3", "\"1e3\""),
            ("1:30", "\"1:30\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("2024-02-30", "2024-02-30"),
            ("2001-12-14t21:59:43.10Z", "\"2001-12-14t21:59:43.10Z\""),
            ("1.2.3", "1.2.3"),
            ("6.12.59", "6.12.59"),
            ("+", "+"),
            ("-", "'-'"),
            ("-x", "-x"),
            ("<<", "<<"),
            ("n", "\"n\""),
            ("0xZZ", "0xZZ"),
        ] {
            assert_eq!(
                text(&map(vec![("k", s(value))])),
                format!("k: {written}\n"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn quoting_of_strings_that_cannot_be_plain() {
        for (value, written) in [
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("a#b", "a#b"),
            ("@pkg:x", "'@pkg:x'"),
            ("*", "'*'"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("tab\there", "\"tab\\there\""),
            ("bell\u{7}", "\"bell\\a\""),
            ("é", "é"),
            ("😀", "\"\\U0001F600\""),
            ("/var:/var:rshared,rbind", "/var:/var:rshared,rbind"),
            ("[x]", "'[x]'"),
            ("x,y", "x,y"),
            ("---", "'---'"),
        ] {
            assert_eq!(
                text(&map(vec![("k", s(value))])),
                format!("k: {written}\n"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn literal_blocks() {
        let doc = map(vec![
            ("a", s("one\ntwo\n")),
            ("b", s("one\ntwo")),
            ("c", s("one\n\n")),
            ("d", s(" lead\n")),
            ("e", s("trailing space \nx")),
            ("f", s("x\n\ny\n")),
        ]);
        assert_eq!(
            text(&doc),
            "a: |\n  one\n  two\nb: |-\n  one\n  two\nc: |+\n  one\n\nd: |2\n   lead\n\
             e: \"trailing space \\nx\"\nf: |\n  x\n\n  y\n"
        );
    }

    #[test]
    fn sequences_and_mappings() {
        let doc = map(vec![
            ("empty", Node::Seq(vec![])),
            ("none", Node::Map(vec![])),
            ("null", Node::Null),
            (
                "list",
                Node::Seq(vec![
                    map(vec![
                        ("name", s("x")),
                        ("command", Node::Seq(vec![s("a"), s("b")])),
                        ("no", Node::Number("0".into())),
                    ]),
                    s("y"),
                ]),
            ),
            ("nested", map(vec![("k", Node::Bool(false))])),
        ]);
        assert_eq!(
            text(&doc),
            "empty: []\nnone: {}\n\"null\": null\nlist:\n- name: x\n  command:\n  - a\n  - b\n  \"no\": 0\n\
             - \"y\"\nnested:\n  k: false\n"
        );
    }

    #[test]
    fn long_scalars_fold_past_column_80() {
        let words = "console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1 quiet splash";
        assert_eq!(
            text(&map(vec![("cmdline", s(words))])),
            "cmdline: console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1\n  quiet splash\n"
        );
        let quoted = format!("{words} x: y");
        assert_eq!(
            text(&map(vec![("c", s(&quoted))])),
            "c: 'console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1 quiet\n  splash x: y'\n"
        );
        let doubled = format!("{words}\tz");
        assert_eq!(
            text(&map(vec![("c", s(&doubled))])),
            "c: \"console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1 quiet\n  splash\\tz\"\n"
        );
    }

    #[test]
    fn long_keys_are_complex() {
        let key = "k".repeat(129);
        assert_eq!(text(&map(vec![(&key, s("v"))])), format!("? {key}\n: v\n"));
    }

    #[test]
    fn map_key_order() {
        let mut keys = vec![
            "a10",
            "a9",
            "b",
            "a",
            "A",
            "_x",
            "net.ipv4.ip_forward",
            "a09",
        ];
        for i in 1..keys.len() {
            let mut j = i;
            while j > 0 && key_less(keys[j], keys[j - 1]) {
                keys.swap(j, j - 1);
                j -= 1;
            }
        }
        assert_eq!(
            keys,
            [
                "_x",
                "A",
                "a",
                "a9",
                "a09",
                "a10",
                "b",
                "net.ipv4.ip_forward"
            ]
        );
    }
}
