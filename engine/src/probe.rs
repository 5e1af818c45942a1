//! [`probe`]: what the action cache already holds for a graph, without running anything.

use std::sync::Arc;

use lkb_store::{ActionKey, ActionResult, Artifact, BlobRef, Lookup, Store, StoreError};

use crate::Graph;
use crate::key::action_key;

/// Whether a node's result is in the action cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// The cache holds a result for the node's key and every blob it names is present.
    Cached,
    /// The cache holds nothing for the node's key.
    NotCached,
    /// The cache holds a result for the key, but it names a missing or truncated blob.
    Damaged { missing: BlobRef },
    /// The key is not known: an input is not cached, so its output (and hence this key)
    /// is only known after running it.
    Unknown,
}

impl CacheState {
    /// Whether a build would take this node from the cache.
    pub fn is_cached(&self) -> bool {
        matches!(self, CacheState::Cached)
    }
}

/// What [`probe`] found for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProbe {
    /// The node's action key, when all its inputs are cached (otherwise `None`).
    pub key: Option<ActionKey>,
    pub state: CacheState,
}

/// Computes the key of every node whose inputs are all cached, in topological order, and
/// looks each up in the store's action cache, exactly as a build would before running
/// anything. Indexed by [`NodeId::index`](crate::NodeId::index). Blocking (reads the index).
pub fn probe(graph: &Graph, store: &Store) -> Result<Vec<NodeProbe>, StoreError> {
    let mut results: Vec<Option<Arc<ActionResult>>> = vec![None; graph.len()];
    let mut probes = Vec::with_capacity(graph.len());
    // Insertion order is topological: inputs are always added before their dependents.
    for (index, node) in graph.nodes.iter().enumerate() {
        let inputs: Option<Vec<Artifact>> = node
            .wires
            .iter()
            .map(|wire| {
                let result = results[wire.node().index()].as_ref()?;
                result.outputs.get(wire.index()).cloned()
            })
            .collect();
        let Some(inputs) = inputs else {
            probes.push(NodeProbe {
                key: None,
                state: CacheState::Unknown,
            });
            continue;
        };
        let key = action_key(
            node.action.kind(),
            node.action.version(),
            &node.params.hash,
            &node.outputs,
            inputs.iter(),
        );
        let state = match store.get_action_checked(&key)? {
            Lookup::Hit(result) => {
                results[index] = Some(Arc::new(result));
                CacheState::Cached
            }
            Lookup::Miss => CacheState::NotCached,
            Lookup::Damaged { missing } => CacheState::Damaged { missing },
        };
        probes.push(NodeProbe {
            key: Some(key),
            state,
        });
    }
    Ok(probes)
}
