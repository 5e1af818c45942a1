//! The only place that writes to stdout and stderr directly.

use std::io::Write;

/// Writes a diagnostic line to stderr.
#[expect(clippy::print_stderr, reason = "diagnostics go to stderr")]
pub(crate) fn err(line: &str) {
    eprintln!("{line}");
}

/// Writes a result line to stdout (`query`, `explain`). A closed stdout, as in
/// `lkb query … | head`, ends the output quietly instead of failing the command.
pub(crate) fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // Ignored on purpose: the reader went away, and there is no one left to tell.
    let _ = writeln!(stdout, "{line}");
}

/// Copies console bytes to stdout as they come (`lkb run`), ignoring a closed stdout.
pub(crate) fn raw(bytes: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
}

/// Flushes both streams (before exiting).
pub(crate) fn flush() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}
