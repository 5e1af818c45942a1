//! The only place that writes to stdout and stderr directly.

use std::io::Write;

/// Writes a diagnostic line to stderr.
#[expect(clippy::print_stderr, reason = "diagnostics go to stderr")]
pub(crate) fn err(line: &str) {
    eprintln!("{line}");
}

/// Flushes both streams (before exiting).
pub(crate) fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
