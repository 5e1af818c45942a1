//! Maps errors to exit codes (2 = your input, 3 = the environment, 101 = a bug in lkb) and
//! prints them with their chain of causes.

use std::process::ExitCode;

use lkb_engine::{BuildError, EngineError};
use lkb_rules::actions::FilesError;
use lkb_rules::config::ConfigError;
use lkb_rules::formats::FormatError;
use lkb_rules::lock::LockError;
use lkb_rules::lower::LowerError;
use lkb_rules::oci::OciError;
use lkb_rules::resolve::ResolveError;
use lkb_rules::workspace::WorkspaceError;
use lkb_store::{ErrorCategory, StoreError};

use crate::ops::build::NotReproducible;
use crate::printer;

/// An error the CLI itself raises about its arguments.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// The category of the first cause that knows its category.
pub(crate) fn category(error: &anyhow::Error) -> ErrorCategory {
    for cause in error.chain() {
        macro_rules! try_as {
            ($($ty:ty),*) => {$(
                if let Some(e) = cause.downcast_ref::<$ty>() {
                    return e.category();
                }
            )*};
        }
        try_as!(
            BuildError,
            EngineError,
            ConfigError,
            FilesError,
            ResolveError,
            OciError,
            LockError,
            LowerError,
            WorkspaceError,
            StoreError,
            NotReproducible
        );
        if cause.downcast_ref::<UsageError>().is_some()
            || cause.downcast_ref::<FormatError>().is_some()
        {
            return ErrorCategory::User;
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return ErrorCategory::Environment;
        }
    }
    ErrorCategory::Internal
}

pub(crate) fn exit_code(category: ErrorCategory) -> u8 {
    match category {
        ErrorCategory::User => 2,
        ErrorCategory::Environment => 3,
        ErrorCategory::Internal => 101,
    }
}

/// Prints `error: …` and each distinct cause, and returns the exit code.
pub(crate) fn report(error: &anyhow::Error) -> ExitCode {
    let category = category(error);
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
