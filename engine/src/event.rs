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
        /// Whether the remote cache was asked, and what it said.
        remote: RemoteUse,
        duration: Duration,
    },
    /// An action failed; `error` is its message with the chain of causes.
    ActionFailed {
        node: NodeId,
        kind: &'static str,
        label: String,
        error: String,
    },
    /// Something the user should know that does not stop the build (a remote cache that went
    /// away, a corrupt remote entry).
    Warning { message: String },
}

/// What the remote cache had to do with an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemoteUse {
    /// Not asked: no remote cache, a local hit, or `--rebuild`.
    #[default]
    NotAsked,
    /// Taken from the remote cache.
    Hit,
    /// Asked, and it did not have it (or could not be used).
    Miss,
}

impl RemoteUse {
    /// `remote hit`, `remote miss`, or nothing.
    pub fn text(self) -> Option<&'static str> {
        match self {
            RemoteUse::NotAsked => None,
            RemoteUse::Hit => Some("remote hit"),
            RemoteUse::Miss => Some("remote miss"),
        }
    }
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
