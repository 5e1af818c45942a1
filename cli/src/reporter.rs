//! Renders build events on stderr: a spinner on a terminal, one line per executed action
//! otherwise, or versioned JSON lines (`--progress=json`, documented in docs/cli.md).
//!
//! With an explanation ([`Explain`]), each executed action's line says why it ran, and
//! images whose pin moved are announced first; `lkb explain` prints just those lines, on
//! stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use lkb_engine::{BuildEvent, RebuildReason, RemoteUse, Reporter};

use crate::args::ProgressMode;
use crate::ops::plan::ImageMove;
use crate::printer;

/// Version of the JSON-lines event format.
pub(crate) const JSON_VERSION: u32 = 1;

/// Whether and where to say why actions ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Explain {
    /// Executed actions are listed without a reason.
    Off,
    /// `lkb build --explain`: the progress line of each executed action ends with its reason.
    Progress,
    /// `lkb explain`: one line per executed action on stdout, and no other action lines.
    Only,
}

pub(crate) struct CliReporter {
    mode: Mode,
    finished: AtomicUsize,
    executed: AtomicUsize,
    explain: Explain,
    /// Action sources of images that moved ("image REF") → what to call them in a reason
    /// ("image REF moved").
    moved: Mutex<BTreeMap<String, String>>,
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
    pub(crate) fn new(mode: ProgressMode, quiet: bool, explain: Explain) -> CliReporter {
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
            moved: Mutex::new(BTreeMap::new()),
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

    /// Prints a result line on stdout without tearing the bar.
    fn out(&self, text: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.suspend(|| printer::out(text)),
            _ => printer::out(text),
        }
    }

    /// Prints an explanation line where the explanation goes (nowhere when not explaining).
    fn explanation(&self, text: &str) {
        match self.explain {
            Explain::Off => {}
            Explain::Progress => match &self.mode {
                Mode::Json | Mode::Silent => {}
                _ => self.line(text),
            },
            Explain::Only => self.out(text),
        }
    }

    /// Announces images whose pin moved (before any action runs), and remembers them so that
    /// reasons downstream say `image REF moved`.
    pub(crate) fn images_moved(&self, moved: &[ImageMove]) {
        let mut known = self
            .moved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for image in moved {
            known.insert(image.source(), format!("image {} moved", image.reference));
            if let Mode::Json = self.mode {
                let event = serde_json::json!({
                    "v": JSON_VERSION, "event": "image_moved", "ref": image.reference,
                    "platform": image.platform, "old": image.old.to_string(),
                    "new": image.new.to_string(),
                });
                printer::err(&event.to_string());
            }
            self.explanation(&image.to_string());
        }
    }

    /// One short human sentence for why an action ran.
    pub(crate) fn reason_text(&self, reason: &RebuildReason) -> String {
        if *reason == RebuildReason::Forced {
            return "forced (--rebuild)".to_owned();
        }
        let moved = self
            .moved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reason
            .clone()
            .map_origin(|origin| moved.get(&origin).cloned().unwrap_or(origin))
            .to_string()
    }
}

impl Reporter for CliReporter {
    fn event(&self, event: &BuildEvent) {
        if let Mode::Json = self.mode {
            printer::err(&self.json_event(event).to_string());
            if let (
                Explain::Only,
                BuildEvent::ActionFinished {
                    kind,
                    label,
                    reason: Some(reason),
                    ..
                },
            ) = (self.explain, event)
            {
                self.out(&explain_line(kind, label, &self.reason_text(reason)));
            }
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
                remote,
                duration,
                ..
            } => {
                self.finished.fetch_add(1, Ordering::Relaxed);
                if *cached {
                    if *remote == RemoteUse::Hit {
                        self.explanation(&explain_line(kind, label, "remote hit"));
                    }
                    return;
                }
                let n = self.executed.fetch_add(1, Ordering::Relaxed) + 1;
                let why = match (reason, remote.text()) {
                    (Some(reason), None) if self.explain != Explain::Off => {
                        self.reason_text(reason)
                    }
                    (Some(reason), Some(remote)) if self.explain != Explain::Off => {
                        format!("{} ({remote})", self.reason_text(reason))
                    }
                    _ => String::new(),
                };
                if self.explain == Explain::Only {
                    self.out(&explain_line(kind, label, &why));
                    return;
                }
                let why = if why.is_empty() {
                    why
                } else {
                    format!(": {why}")
                };
                let text = format!(
                    "  {n:>4} {kind:<9} {label} ({:.2}s){why}",
                    duration.as_secs_f64()
                );
                match &self.mode {
                    Mode::Plain => printer::err(&text),
                    Mode::Bar(bar) => bar.suspend(|| printer::err(&text)),
                    Mode::Quiet if self.explain == Explain::Progress => printer::err(&text),
                    _ => {}
                }
            }
            BuildEvent::ActionFailed { label, error, .. } => {
                self.line(&format!("  FAILED {label}: {error}"));
            }
            BuildEvent::Warning { message } => self.line(&format!("warning: {message}")),
            BuildEvent::Progress { .. } => {}
        }
    }
}

/// `lkb explain`'s line for one executed action: `KIND LABEL: REASON`.
fn explain_line(kind: &str, label: &str, reason: &str) -> String {
    format!("{kind:<9} {label}: {reason}")
}

impl CliReporter {
    fn json_event(&self, event: &BuildEvent) -> serde_json::Value {
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
                remote,
                duration,
            } => json!({
                "v": JSON_VERSION, "event": "action_finished", "node": node.index(), "kind": kind,
                "label": label, "cached": cached,
                "remote": match remote {
                    RemoteUse::NotAsked => None,
                    RemoteUse::Hit => Some("hit"),
                    RemoteUse::Miss => Some("miss"),
                },
                "reason": reason.as_ref().map(|reason| self.reason_text(reason)),
                "reason_kind": reason.as_ref().map(RebuildReason::name),
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
            BuildEvent::Warning { message } => json!({
                "v": JSON_VERSION, "event": "warning", "message": message,
            }),
        }
    }
}
