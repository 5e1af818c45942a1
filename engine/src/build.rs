//! What a build is asked to do ([`BuildOptions`]) and what it produced ([`BuildOutcome`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lkb_store::{ActionKey, ActionResult};

use crate::{CancelToken, NodeId, RebuildReason, Remote, RemoteStats};

/// How to run a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Parallel [`ActionClass::Cpu`](crate::ActionClass::Cpu) actions (`-j`).
    pub jobs: usize,
    /// Parallel [`ActionClass::Io`](crate::ActionClass::Io) actions (network fetches).
    pub io_jobs: usize,
    /// Ignore the action cache: every needed action runs ([`RebuildReason::Forced`]).
    pub rebuild: bool,
    /// Run only what these nodes need; `None` runs the whole graph.
    pub targets: Option<Vec<NodeId>>,
    /// Trip to stop the build.
    pub cancel: CancelToken,
    /// A remote cache to consult on local misses and (if it allows) to upload results to.
    pub remote: Option<Arc<Remote>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            io_jobs: 8,
            rebuild: false,
            targets: None,
            cancel: CancelToken::new(),
            remote: None,
        }
    }
}

/// Counts for the build summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Actions needed for the requested targets.
    pub total: usize,
    /// Of those, taken from the cache (including duplicates of an action executed in this
    /// build).
    pub cached: usize,
    /// Of those, executed.
    pub executed: usize,
    /// Counters added by actions ([`ExecCtx::add_counter`](crate::ExecCtx::add_counter)).
    pub counters: BTreeMap<String, u64>,
    /// What the remote cache did, when there is one (counted over every build that used the
    /// same [`Remote`]).
    pub remote: Option<RemoteStats>,
    /// Wall-clock time of the build.
    pub wall: Duration,
}

/// The result of a successful build.
#[derive(Debug, Clone, Default)]
pub struct BuildOutcome {
    /// The result of every needed node.
    pub results: BTreeMap<NodeId, Arc<ActionResult>>,
    /// The action key of every needed node.
    pub keys: BTreeMap<NodeId, ActionKey>,
    /// Why each executed node ran.
    pub reasons: BTreeMap<NodeId, RebuildReason>,
    pub stats: BuildStats,
}
