//! The action graph: building it, deduplicating actions, and checking it is acyclic.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::key::params_digest;
use crate::{Action, EngineError, ParamsDigest};

/// A node of a [`Graph`] (or of the [`GraphBuilder`] that made it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The node's position in insertion order.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn from_index(index: usize) -> Self {
        NodeId(u32::try_from(index).expect("a graph has fewer than 2^32 nodes"))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

pub(crate) struct Node {
    pub(crate) action: Arc<dyn Action>,
    pub(crate) inputs: Vec<NodeId>,
    pub(crate) params: ParamsDigest,
}

/// What makes two `add` calls the same action.
#[derive(PartialEq, Eq, Hash)]
struct Signature {
    kind: &'static str,
    version: u32,
    params_hash: [u8; 32],
    inputs: Vec<NodeId>,
}

impl Node {
    fn signature(&self) -> Signature {
        Signature {
            kind: self.action.kind(),
            version: self.action.version(),
            params_hash: self.params.hash,
            inputs: self.inputs.clone(),
        }
    }
}

/// Collects actions and their inputs; [`GraphBuilder::build`] checks the result.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    by_signature: HashMap<Signature, NodeId>,
    unknown: Option<NodeId>,
}

impl fmt::Debug for GraphBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphBuilder")
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

impl GraphBuilder {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn check(&mut self, id: NodeId) {
        if id.index() >= self.nodes.len() && self.unknown.is_none() {
            self.unknown = Some(id);
        }
    }

    /// Adds an action whose inputs are the results of `inputs`, in that order. Adding an
    /// action with the same kind, version, params and inputs as an earlier one returns the
    /// earlier node, so shared work runs once.
    pub fn add(&mut self, action: Arc<dyn Action>, inputs: &[NodeId]) -> NodeId {
        for &input in inputs {
            self.check(input);
        }
        let node = Node {
            params: params_digest(&*action),
            action,
            inputs: inputs.to_vec(),
        };
        let signature = node.signature();
        if let Some(&existing) = self.by_signature.get(&signature) {
            return existing;
        }
        let id = NodeId::from_index(self.nodes.len());
        self.nodes.push(node);
        self.by_signature.insert(signature, id);
        id
    }

    /// Appends `from` to the inputs of `to`. Unlike [`GraphBuilder::add`] this can close a
    /// cycle, which [`GraphBuilder::build`] then reports.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) {
        self.check(from);
        self.check(to);
        let Some(node) = self.nodes.get_mut(to.index()) else {
            return;
        };
        let old = node.signature();
        node.inputs.push(from);
        let new = node.signature();
        if self.by_signature.get(&old) == Some(&to) {
            self.by_signature.remove(&old);
        }
        self.by_signature.entry(new).or_insert(to);
    }

    /// The number of distinct actions added so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Checks the graph: every node id is known and there is no cycle.
    pub fn build(self) -> Result<Graph, EngineError> {
        if let Some(node) = self.unknown {
            return Err(EngineError::UnknownNode { node });
        }
        let nodes = self.nodes;
        let mut dependents = vec![Vec::new(); nodes.len()];
        for (index, node) in nodes.iter().enumerate() {
            for input in &node.inputs {
                dependents[input.index()].push(NodeId::from_index(index));
            }
        }
        if let Some(cycle) = find_cycle(&nodes) {
            let names = cycle
                .iter()
                .map(|id| nodes[id.index()].action.label())
                .collect();
            return Err(EngineError::Cycle { nodes: names });
        }
        let critical = critical_path(&nodes, &dependents);
        Ok(Graph {
            nodes,
            dependents,
            critical,
        })
    }
}

/// A checked, acyclic action graph.
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) dependents: Vec<Vec<NodeId>>,
    /// Per node: the number of nodes on the longest path from it to a sink, itself included.
    pub(crate) critical: Vec<usize>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.nodes
                    .iter()
                    .map(|node| (node.action.label(), &node.inputs)),
            )
            .finish()
    }
}

impl Graph {
    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node id, in insertion order (inputs always come before their dependents).
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(NodeId::from_index)
    }

    /// The action of a node.
    pub fn action(&self, id: NodeId) -> Option<&Arc<dyn Action>> {
        self.nodes.get(id.index()).map(|node| &node.action)
    }

    /// The hash of a node's params, whole and per field.
    pub fn params(&self, id: NodeId) -> Option<&ParamsDigest> {
        self.nodes.get(id.index()).map(|node| &node.params)
    }

    /// The inputs of a node, in declared order.
    pub fn inputs(&self, id: NodeId) -> &[NodeId] {
        self.nodes.get(id.index()).map_or(&[], |node| &node.inputs)
    }

    /// The nodes that take this node as an input.
    pub fn dependents(&self, id: NodeId) -> &[NodeId] {
        self.dependents.get(id.index()).map_or(&[], Vec::as_slice)
    }

    /// The number of nodes on the longest path from this node to a sink, itself included.
    pub fn critical_path(&self, id: NodeId) -> usize {
        self.critical.get(id.index()).copied().unwrap_or(0)
    }

    /// A stable text rendering, one line per node: `#id kind "label" <- #input …`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for id in self.node_ids() {
            let node = &self.nodes[id.index()];
            out.push_str(&format!(
                "{id} {} {:?}",
                node.action.kind(),
                node.action.label()
            ));
            if !node.inputs.is_empty() {
                out.push_str(" <-");
                for input in &node.inputs {
                    out.push_str(&format!(" {input}"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Finds a strongly connected component with a cycle (Tarjan, iterative so deep graphs cannot
/// overflow the stack). Returns its nodes in insertion order.
fn find_cycle(nodes: &[Node]) -> Option<Vec<NodeId>> {
    const UNVISITED: usize = usize::MAX;
    let count = nodes.len();
    let mut index_of = vec![UNVISITED; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack = Vec::new();
    let mut next_index = 0;
    // Explicit DFS frames: (node, next input position).
    let mut frames: Vec<(usize, usize)> = Vec::new();

    for root in 0..count {
        if index_of[root] != UNVISITED {
            continue;
        }
        frames.push((root, 0));
        index_of[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;

        while let Some(&mut (node, ref mut position)) = frames.last_mut() {
            if let Some(input) = nodes[node].inputs.get(*position) {
                *position += 1;
                let next = input.index();
                if index_of[next] == UNVISITED {
                    index_of[next] = next_index;
                    low[next] = next_index;
                    next_index += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    frames.push((next, 0));
                } else if on_stack[next] {
                    low[node] = low[node].min(index_of[next]);
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index_of[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                let self_loop = nodes[node].inputs.iter().any(|input| input.index() == node);
                if component.len() > 1 || self_loop {
                    component.sort_unstable();
                    return Some(component.into_iter().map(NodeId::from_index).collect());
                }
            }
        }
    }
    None
}

/// Longest path (in nodes) from each node to a sink. Needs an acyclic graph.
fn critical_path(nodes: &[Node], dependents: &[Vec<NodeId>]) -> Vec<usize> {
    // Kahn's order over dependents, reversed, visits every dependent before its inputs.
    let mut remaining: Vec<usize> = nodes.iter().map(|node| node.inputs.len()).collect();
    let mut order: Vec<usize> = (0..nodes.len()).filter(|&i| remaining[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let node = order[next];
        next += 1;
        for dependent in &dependents[node] {
            remaining[dependent.index()] -= 1;
            if remaining[dependent.index()] == 0 {
                order.push(dependent.index());
            }
        }
    }
    let mut critical = vec![1; nodes.len()];
    for &node in order.iter().rev() {
        let longest = dependents[node]
            .iter()
            .map(|d| critical[d.index()])
            .max()
            .unwrap_or(0);
        critical[node] = longest + 1;
    }
    critical
}
