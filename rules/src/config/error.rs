//! Source locations, located values and the [`ConfigError`] every config check returns.

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use lkb_store::ErrorCategory;

/// A position in a configuration source: the file (or pseudo-file, such as an image label) and
/// a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The file the value was read from.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl Span {
    /// A span at `line:column` (both 1-based) of `file`.
    pub fn new(file: Arc<Path>, line: u32, column: u32) -> Span {
        Span { file, line, column }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A value together with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pairs `value` with `span`.
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { value, span }
    }

    /// Applies `f` to the value and keeps the span.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned {
            value: f(self.value),
            span: self.span,
        }
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// An invalid configuration: a yml file, a merged set of files, or an image's
/// `org.mobyproject.config` label.
///
/// `Display` prints `<file>:<line>:<col>: <message>`, followed by `\nhint: <hint>` when the
/// error carries a hint (so a reporter that prints `error: {err}` needs nothing else).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    span: Span,
    message: String,
    hint: Option<String>,
    /// Further problems found in the same file, reported with this one.
    also: Vec<ConfigError>,
}

impl ConfigError {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> ConfigError {
        ConfigError {
            span,
            message: message.into(),
            hint: None,
            also: Vec::new(),
        }
    }

    /// All of `errors` as one error (the first, with the others after it), or `None` if
    /// there are none.
    pub fn all(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut flat = Vec::new();
        for mut error in errors {
            let also = std::mem::take(&mut error.also);
            flat.push(error);
            flat.extend(also);
        }
        let mut iter = flat.into_iter();
        let mut first = iter.next()?;
        first.also = iter.collect();
        Some(first)
    }

    /// Every problem this error reports: itself, then the ones found with it.
    pub fn problems(&self) -> impl Iterator<Item = &ConfigError> {
        std::iter::once(self).chain(&self.also)
    }

    /// Adds (or replaces) the hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> ConfigError {
        self.hint = Some(hint.into());
        self
    }

    /// Where the problem is.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The problem, without location or hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A suggestion for fixing it, if there is one.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Configuration errors are always the user's to fix.
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::User
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        for other in &self.also {
            write!(f, "\n{other}")?;
        }
        if !self.also.is_empty() {
            write!(f, "\n({} problems)", self.also.len() + 1)?;
        }
        Ok(())
    }
}

/// Something accepted but worth telling the user about (for example the ignored `trust` key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where it was written.
    pub span: Span,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = if candidate.to_lowercase() == lower {
            0
        } else {
            edit_distance(word, candidate)
        };
        let limit = (candidate.chars().count() / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `did you mean `x`?` for the closest candidate, if any.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("binds", "bindz"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let keys = ["binds", "binds.add", "capabilities", "readonly"];
        assert_eq!(closest("bindz", keys), Some("binds"));
        assert_eq!(closest("readOnly", keys), Some("readonly"));
        assert_eq!(
            closest("capabilities_add", ["capabilities.add"]),
            Some("capabilities.add")
        );
        assert_eq!(closest("zzzzzz", keys), None);
    }

    #[test]
    fn display_with_hint() {
        let span = Span::new(Arc::from(Path::new("a.yml")), 3, 5);
        let err = ConfigError::new(span, "boom").with_hint("try harder");
        assert_eq!(err.to_string(), "a.yml:3:5: boom\nhint: try harder");
        assert_eq!(err.category(), ErrorCategory::User);
    }
}
