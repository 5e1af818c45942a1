//! The only place that writes to stdout and stderr directly.

use std::io::Write;

/// Writes a result line to stdout.
#[expect(clippy::print_stdout, reason = "results go to stdout")]
pub fn out(line: &str) {
    println!("{line}");
}

/// Writes a diagnostic line to stderr.
#[expect(clippy::print_stderr, reason = "diagnostics go to stderr")]
pub fn err(line: &str) {
    eprintln!("{line}");
}

/// Flushes both streams (before exiting).
pub fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
