//! Errors of graph construction and of a build.

use lkb_store::{ErrorCategory, StoreError};

use crate::{ActionError, NodeId};

/// The graph is malformed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The actions depend on each other in a cycle; `nodes` are the labels of every action
    /// in it.
    #[error("the actions form a cycle: {}", nodes.join(" <-> "))]
    Cycle { nodes: Vec<String> },
    /// A node id that this graph did not hand out was used as an input, edge or target.
    #[error("node {node} is not part of this graph")]
    UnknownNode { node: NodeId },
    /// An action was wired to an input of the wrong kind or to an output that does not exist.
    #[error("{action} is wired wrongly: {problem}")]
    Miswired { action: String, problem: String },
    /// An action returned other artifacts than it declares.
    #[error("{action} returned the outputs {returned} but declares {declared}")]
    UndeclaredOutputs {
        action: String,
        returned: String,
        declared: String,
    },
    /// The scheduler stopped with work left although nothing failed (a bug).
    #[error("the scheduler stopped before {label} completed")]
    Stalled { label: String },
}

impl EngineError {
    /// Graphs are produced by lowering, so a malformed one is a bug in lkb.
    pub fn category(&self) -> ErrorCategory {
        ErrorCategory::Internal
    }
}

/// Why a build did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An action failed; nothing that depends on it was started.
    #[error("{label} failed")]
    ActionFailed {
        node: NodeId,
        label: String,
        #[source]
        source: ActionError,
    },
    /// Looking up or recording an action in the store failed.
    #[error("cannot look up or record the result of {label} in the store")]
    Store {
        node: NodeId,
        label: String,
        #[source]
        source: StoreError,
    },
    /// An input of `label` was a remote hit whose blob the cache no longer has. Running the
    /// build again without the cache rebuilds it (the CLI does).
    #[error("{label} cannot start")]
    RemoteLost {
        node: NodeId,
        label: String,
        #[source]
        source: crate::RemoteLost,
    },
    /// The build was cancelled (e.g. Ctrl-C); running actions were allowed to finish.
    #[error("build cancelled")]
    Cancelled,
    /// The graph or the requested targets are malformed.
    #[error(transparent)]
    Graph(#[from] EngineError),
}

impl BuildError {
    /// Who has to act on this error. A cancelled build is the user's choice.
    pub fn category(&self) -> ErrorCategory {
        match self {
            BuildError::ActionFailed { source, .. } => source.category(),
            BuildError::Store { source, .. } => source.category(),
            BuildError::RemoteLost { .. } => ErrorCategory::Environment,
            BuildError::Cancelled => ErrorCategory::User,
            BuildError::Graph(error) => error.category(),
        }
    }
}

lkb_store::categorized!(EngineError, BuildError, crate::ActionError);
