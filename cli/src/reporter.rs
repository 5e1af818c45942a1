//! Renders build events on stderr: a spinner on a terminal, one line per executed action
//! otherwise, or versioned JSON lines (`--progress=json`, documented in docs/cli.md).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use lkb_engine::{BuildEvent, RebuildReason, Reporter};

use crate::args::ProgressMode;
use crate::printer;

/// Version of the JSON-lines event format.
pub(crate) const JSON_VERSION: u32 = 1;

pub(crate) struct CliReporter {
    mode: Mode,
    finished: AtomicUsize,
    executed: AtomicUsize,
    explain: bool,
}

enum Mode {
    Bar(ProgressBar),
    Plain,
    Json,
    Silent,
    /// Lines for --explain are still printed, nothing else.
    Quiet,
}

impl CliReporter {
    pub(crate) fn new(mode: ProgressMode, quiet: bool, explain: bool) -> CliReporter {
        let mode = match mode {
            _ if quiet => Mode::Silent,
            ProgressMode::Json => Mode::Json,
            ProgressMode::None => Mode::Quiet,
            ProgressMode::Plain => Mode::Plain,
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                Mode::Bar(bar)
            }
            ProgressMode::Auto => Mode::Plain,
        };
        CliReporter {
            mode,
            finished: AtomicUsize::new(0),
            executed: AtomicUsize::new(0),
            explain,
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        matches!(self.mode, Mode::Json)
    }

    pub(crate) fn is_silent(&self) -> bool {
        matches!(self.mode, Mode::Silent)
    }

    /// Prints a line without tearing the bar.
    pub(crate) fn line(&self, text: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.suspend(|| printer::err(text)),
            Mode::Silent => {}
            _ => printer::err(text),
        }
    }

    pub(crate) fn finish(&self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

/// One short human sentence for why an action ran.
pub(crate) fn reason_text(reason: &RebuildReason) -> String {
    reason.to_string()
}

impl Reporter for CliReporter {
    fn event(&self, event: &BuildEvent) {
        if let Mode::Json = self.mode {
            printer::err(&json_event(event).to_string());
            return;
        }
        match event {
            BuildEvent::ActionStarted { label, .. } => {
                if let Mode::Bar(bar) = &self.mode {
                    let done = self.finished.load(Ordering::Relaxed);
                    bar.set_message(format!("{done} done, running {label}"));
                }
            }
            BuildEvent::ActionFinished {
                kind,
                label,
                cached,
                reason,
                duration,
                ..
            } => {
                self.finished.fetch_add(1, Ordering::Relaxed);
                if *cached {
                    return;
                }
                let n = self.executed.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match (self.explain, reason) {
                    (true, Some(r)) => format!(": {}", reason_text(r)),
                    _ => String::new(),
                };
                let text = format!(
                    "  {n:>4} {kind:<9} {label} ({:.2}s){why}",
                    duration.as_secs_f64()
                );
                match &self.mode {
                    Mode::Plain => printer::err(&text),
                    Mode::Bar(bar) => bar.suspend(|| printer::err(&text)),
                    Mode::Quiet if self.explain => printer::err(&text),
                    _ => {}
                }
            }
            BuildEvent::ActionFailed { label, error, .. } => {
                self.line(&format!("  FAILED {label}: {error}"));
            }
            BuildEvent::Progress { .. } => {}
        }
    }
}

fn json_event(event: &BuildEvent) -> serde_json::Value {
    use serde_json::json;
    match event {
        BuildEvent::ActionStarted { node, kind, label } => json!({
            "v": JSON_VERSION, "event": "action_started", "node": node.index(), "kind": kind, "label": label,
        }),
        BuildEvent::Progress { node, bytes } => json!({
            "v": JSON_VERSION, "event": "progress", "node": node.index(), "bytes": bytes,
        }),
        BuildEvent::ActionFinished {
            node,
            kind,
            label,
            cached,
            reason,
            duration,
        } => json!({
            "v": JSON_VERSION, "event": "action_finished", "node": node.index(), "kind": kind,
            "label": label, "cached": cached,
            "reason": reason.as_ref().map(reason_text),
            "duration_ms": duration.as_millis() as u64,
        }),
        BuildEvent::ActionFailed {
            node,
            kind,
            label,
            error,
        } => json!({
            "v": JSON_VERSION, "event": "action_failed", "node": node.index(), "kind": kind,
            "label": label, "error": error,
        }),
    }
}
