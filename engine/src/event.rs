//! Build events and the [`Reporter`] that receives them.

use std::time::Duration;

use crate::{NodeId, RebuildReason};

/// Something that happened during a build. Cache hits get only an `ActionFinished`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// An action began executing (it was not in the cache).
    ActionStarted {
        node: NodeId,
        kind: &'static str,
        label: String,
    },
    /// An executing action processed `bytes` more bytes.
    Progress { node: NodeId, bytes: u64 },
    /// An action completed, from the cache (`cached`) or by executing it (with the `reason`).
    ActionFinished {
        node: NodeId,
        kind: &'static str,
        label: String,
        cached: bool,
        reason: Option<RebuildReason>,
        duration: Duration,
    },
    /// An action failed; `error` is its message with the chain of causes.
    ActionFailed {
        node: NodeId,
        kind: &'static str,
        label: String,
        error: String,
    },
}

/// Receives build events. Called from several threads; keep it quick.
pub trait Reporter: Send + Sync {
    fn event(&self, event: &BuildEvent);
}

/// A reporter that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&self, _event: &BuildEvent) {}
}

impl<F: Fn(&BuildEvent) + Send + Sync> Reporter for F {
    fn event(&self, event: &BuildEvent) {
        self(event);
    }
}
