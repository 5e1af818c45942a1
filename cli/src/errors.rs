//! The CLI's error type, which maps every error to an exit code (2 = your input, 3 = the
//! environment, 101 = a bug in lkb), and its printing with the chain of causes.
//!
//! [`Error`] converts only from errors that implement [`Categorized`], and keeps the
//! category it was made with through every added context. So an error type without a category
//! cannot reach the user: code that tries does not compile. Messages the CLI makes up itself
//! state their category ([`Error::user`], [`Error::environment`], [`Error::internal`]).

use std::fmt;
use std::process::ExitCode;

use lkb_store::{Categorized, ErrorCategory};

use crate::printer;

/// An error with who has to act on it.
pub struct Error {
    category: ErrorCategory,
    inner: anyhow::Error,
}

/// The CLI's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn message(category: ErrorCategory, message: impl fmt::Display) -> Error {
        Error {
            category,
            inner: anyhow::Error::msg(message.to_string()),
        }
    }

    /// The input (arguments, files, configuration) is wrong.
    pub fn user(message: impl fmt::Display) -> Error {
        Error::message(ErrorCategory::User, message)
    }

    /// The machine or the network is at fault.
    pub fn environment(message: impl fmt::Display) -> Error {
        Error::message(ErrorCategory::Environment, message)
    }

    /// A bug in lkb: an invariant did not hold.
    pub fn internal(message: impl fmt::Display) -> Error {
        Error::message(ErrorCategory::Internal, message)
    }

    /// Who has to act on this error.
    pub fn category(&self) -> ErrorCategory {
        self.category
    }

    /// The same error with `context` said first.
    #[must_use]
    pub fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Error {
        Error {
            category: self.category,
            inner: self.inner.context(context),
        }
    }

    /// The message and its causes, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        self.inner.chain()
    }

    /// The outermost error of type `E` in the chain, if any.
    pub fn downcast_ref<E: fmt::Display + fmt::Debug + Send + Sync + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref()
    }
}

impl<E: Categorized> From<E> for Error {
    fn from(error: E) -> Error {
        Error {
            category: error.category(),
            inner: anyhow::Error::new(error),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({:?})", self.inner, self.category)
    }
}

/// `anyhow`-style context for results whose error has a category: the context is said first,
/// the category stays.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Result<T>;
    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|error| error.into().context(context))
    }

    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T> {
        self.map_err(|error| error.into().context(context()))
    }
}

/// Context for a missing value: an invariant of lkb did not hold, so the error is internal.
impl<T> Context<T> for Option<T> {
    fn context(self, context: impl fmt::Display + Send + Sync + 'static) -> Result<T> {
        self.ok_or_else(|| Error::internal(context))
    }

    fn with_context<C: fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T> {
        self.ok_or_else(|| Error::internal(context()))
    }
}

/// A task that panicked or was cancelled: a bug, since lkb cancels none it waits for.
pub(crate) fn joined<T>(
    result: std::result::Result<T, tokio::task::JoinError>,
    what: &str,
) -> Result<T> {
    result.map_err(|error| Error::internal(format!("{what}: {error}")))
}

/// `value` as JSON bytes. lkb serialises only its own records, so a failure is a bug.
pub(crate) fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|error| Error::internal(format!("cannot encode JSON: {error}")))
}

/// `value` as indented JSON text; see [`json_bytes`].
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|error| Error::internal(format!("cannot encode JSON: {error}")))
}

/// An error the CLI itself raises about its arguments.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl Categorized for UsageError {
    fn category(&self) -> ErrorCategory {
        ErrorCategory::User
    }
}

pub(crate) fn exit_code(category: ErrorCategory) -> u8 {
    match category {
        ErrorCategory::User => 2,
        ErrorCategory::Environment => 3,
        ErrorCategory::Internal => 101,
    }
}

/// Prints `error: …` and each distinct cause, and returns the exit code.
pub(crate) fn report(error: &Error) -> ExitCode {
    let category = error.category();
    let mut lines = vec![format!("error: {error}")];
    let mut printed = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        // Some errors already include their causes in their message; print each text once.
        if !printed.contains(&text) {
            lines.push(format!("  caused by: {text}"));
            printed.push_str(&text);
        }
    }
    if category == ErrorCategory::Internal {
        lines.push("note: this is a bug in lkb; please report it with the command you ran".into());
    }
    for line in lines {
        printer::err(&line);
    }
    ExitCode::from(exit_code(category))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing<E: Into<Error>>(error: E) -> Result<()> {
        Err(error.into())
    }

    #[test]
    fn the_category_survives_every_context() {
        let config = lkb_rules::config::parse_config("kernel: [", std::path::Path::new("a.yml"))
            .expect_err("bad yml");
        let error = failing(config)
            .context("cannot load //:a")
            .with_context(|| "cannot plan //:a")
            .expect_err("an error");
        assert_eq!(error.category(), ErrorCategory::User);
        assert_eq!(error.to_string(), "cannot plan //:a");
        assert_eq!(error.chain().count(), 3);

        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = failing(io).context("cannot write out/a").expect_err("io");
        assert_eq!(error.category(), ErrorCategory::Environment);
        assert_eq!(exit_code(error.category()), 3);
    }

    #[test]
    fn every_library_error_has_a_category() {
        // Compiles only if each type converts into `Error`, which needs `Categorized`.
        fn converts<E: Into<Error>>() {}
        converts::<lkb_store::StoreError>();
        converts::<lkb_store::DigestParseError>();
        converts::<lkb_engine::BuildError>();
        converts::<lkb_engine::EngineError>();
        converts::<lkb_engine::ActionError>();
        converts::<lkb_rules::actions::FilesError>();
        converts::<lkb_rules::config::ConfigError>();
        converts::<lkb_rules::config::PackageError>();
        converts::<lkb_rules::formats::FormatError>();
        converts::<lkb_rules::lock::LockError>();
        converts::<lkb_rules::lower::LowerError>();
        converts::<lkb_rules::oci::OciError>();
        converts::<lkb_rules::resolve::ResolveError>();
        converts::<lkb_rules::workspace::WorkspaceError>();
        converts::<crate::ops::build::NotReproducible>();
        converts::<UsageError>();
        converts::<std::io::Error>();
    }
}
