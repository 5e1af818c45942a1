//! The action graph: building it, deduplicating actions, and checking it is acyclic.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use lkb_store::ArtifactKind;

use crate::key::params_digest;
use crate::{Action, EngineError, OutputDecl, ParamsDigest};

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

/// One artifact of a node, as the graph builder hands it out: the handle lowering wires into
/// the inputs of later actions. It carries the artifact's kind, so a wrong wiring is refused
/// when the graph is built rather than when the action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Out {
    node: NodeId,
    index: u32,
    kind: ArtifactKind,
}

impl Out {
    /// The node producing the artifact.
    pub fn node(self) -> NodeId {
        self.node
    }

    /// The artifact's position among the node's declared outputs.
    pub fn index(self) -> usize {
        self.index as usize
    }

    /// The artifact's kind.
    pub fn kind(self) -> ArtifactKind {
        self.kind
    }
}

pub(crate) struct Node {
    pub(crate) action: Arc<dyn Action>,
    /// The input artifacts, in declared order.
    pub(crate) wires: Vec<Out>,
    /// The nodes of `wires`, position by position (with repeats).
    pub(crate) inputs: Vec<NodeId>,
    pub(crate) outputs: Vec<OutputDecl>,
    pub(crate) params: ParamsDigest,
    /// Whose build history the node's runs belong to ([`GraphBuilder::set_scope`]).
    pub(crate) scope: Arc<str>,
}

/// What makes two `add` calls the same action.
#[derive(PartialEq, Eq, Hash)]
struct Signature {
    kind: &'static str,
    version: u32,
    params_hash: [u8; 32],
    inputs: Vec<(NodeId, u32)>,
}

impl Node {
    fn signature(&self) -> Signature {
        Signature {
            kind: self.action.kind(),
            version: self.action.version(),
            params_hash: self.params.hash,
            inputs: self.wires.iter().map(|w| (w.node, w.index)).collect(),
        }
    }

    /// The key the node's build history is stored under: its scope and its identity.
    pub(crate) fn history_key(&self) -> String {
        let identity = self.action.identity();
        if self.scope.is_empty() {
            identity
        } else {
            format!("{} {identity}", self.scope)
        }
    }
}

/// Collects actions and their inputs; [`GraphBuilder::build`] checks the result.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<Node>,
    by_signature: HashMap<Signature, NodeId>,
    unknown: Option<NodeId>,
    /// The first wiring mistake, reported by `build`.
    miswired: Option<EngineError>,
    scope: Arc<str>,
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

    /// Nodes added from now on keep their build history (for `--explain`) under `scope`, e.g.
    /// a workspace and target label, so two targets with actions of the same identity do not
    /// overwrite each other's history. A node shared by several scopes keeps the first.
    pub fn set_scope(&mut self, scope: &str) {
        self.scope = Arc::from(scope);
    }

    fn check(&mut self, id: NodeId) -> bool {
        let known = id.index() < self.nodes.len();
        if !known && self.unknown.is_none() {
            self.unknown = Some(id);
        }
        known
    }

    fn miswire(&mut self, action: String, problem: String) {
        if self.miswired.is_none() {
            self.miswired = Some(EngineError::Miswired { action, problem });
        }
    }

    /// The artifact `name` of `node`. Asking for an artifact the node does not declare is a
    /// wiring mistake, reported by [`GraphBuilder::build`].
    pub fn out(&mut self, node: NodeId, name: &str) -> Out {
        if !self.check(node) {
            return Out {
                node,
                index: 0,
                kind: ArtifactKind::Blob,
            };
        }
        let found = self.nodes[node.index()]
            .outputs
            .iter()
            .position(|decl| decl.name == name);
        match found {
            Some(index) => Out {
                node,
                index: u32::try_from(index).expect("fewer than 2^32 outputs"),
                kind: self.nodes[node.index()].outputs[index].kind,
            },
            None => {
                let producer = &self.nodes[node.index()];
                let label = producer.action.label();
                let declared = declared_names(&producer.outputs);
                self.miswire(
                    label,
                    format!("it has no output `{name}` (it declares {declared})"),
                );
                Out {
                    node,
                    index: u32::MAX,
                    kind: ArtifactKind::Blob,
                }
            }
        }
    }

    /// The only artifact of `node`; a node with several outputs is a wiring mistake.
    pub fn only(&mut self, node: NodeId) -> Out {
        if !self.check(node) {
            return Out {
                node,
                index: 0,
                kind: ArtifactKind::Blob,
            };
        }
        let producer = &self.nodes[node.index()];
        let kind = producer
            .outputs
            .first()
            .map_or(ArtifactKind::Blob, |decl| decl.kind);
        if producer.outputs.len() != 1 {
            let label = producer.action.label();
            let declared = declared_names(&producer.outputs);
            self.miswire(
                label,
                format!("it has no single output to wire (it declares {declared})"),
            );
        }
        Out {
            node,
            index: 0,
            kind,
        }
    }

    /// Adds an action taking the only output of each of `inputs`, in that order. See
    /// [`GraphBuilder::add_wired`].
    pub fn add(&mut self, action: Arc<dyn Action>, inputs: &[NodeId]) -> NodeId {
        let wires: Vec<Out> = inputs.iter().map(|&input| self.only(input)).collect();
        self.add_wired(action, &wires)
    }

    /// Adds an action whose inputs are the artifacts `inputs`, in that order. Their kinds must
    /// be what the action's [`Action::inputs`] asks for. Adding an action with the same kind,
    /// version, params and inputs as an earlier one returns the earlier node, so shared work
    /// runs once.
    pub fn add_wired(&mut self, action: Arc<dyn Action>, inputs: &[Out]) -> NodeId {
        let mut known = true;
        for input in inputs {
            known &= self.check(input.node);
        }
        if known {
            self.check_kinds(&*action, inputs);
        }
        let node = Node {
            params: params_digest(&*action),
            outputs: action.outputs(),
            action,
            wires: inputs.to_vec(),
            inputs: inputs.iter().map(|input| input.node).collect(),
            scope: Arc::clone(&self.scope),
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

    fn check_kinds(&mut self, action: &dyn Action, inputs: &[Out]) {
        let wanted = action.inputs();
        if !wanted.enough(inputs.len()) {
            let problem = format!(
                "it takes at least {} inputs but was given {}",
                wanted.fixed.len(),
                inputs.len()
            );
            return self.miswire(action.label(), problem);
        }
        for (position, input) in inputs.iter().enumerate() {
            if input.index == u32::MAX {
                continue; // already reported by `out`
            }
            match wanted.at(position) {
                None => {
                    let problem = format!(
                        "it takes {} inputs but was given {}",
                        wanted.fixed.len(),
                        inputs.len()
                    );
                    return self.miswire(action.label(), problem);
                }
                Some(kind) if kind != input.kind => {
                    let producer = self.nodes[input.node.index()].action.label();
                    let problem = format!(
                        "input {position} must be a {kind} but is a {} of {producer}",
                        input.kind
                    );
                    return self.miswire(action.label(), problem);
                }
                Some(_) => {}
            }
        }
    }

    /// Appends the only output of `from` to the inputs of `to`. Unlike [`GraphBuilder::add`]
    /// this can close a cycle, which [`GraphBuilder::build`] then reports.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) {
        let known_from = self.check(from);
        if !self.check(to) {
            return;
        }
        let wire = if known_from {
            self.only(from)
        } else {
            Out {
                node: from,
                index: 0,
                kind: ArtifactKind::Blob,
            }
        };
        let node = &mut self.nodes[to.index()];
        let old = node.signature();
        node.wires.push(wire);
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

    /// Checks the graph: every node id is known, every input is wired to an artifact of the
    /// kind its action takes, and there is no cycle.
    pub fn build(self) -> Result<Graph, EngineError> {
        if let Some(node) = self.unknown {
            return Err(EngineError::UnknownNode { node });
        }
        if let Some(error) = self.miswired {
            return Err(error);
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

fn declared_names(outputs: &[OutputDecl]) -> String {
    if outputs.is_empty() {
        return "no outputs".to_owned();
    }
    outputs
        .iter()
        .map(|decl| format!("`{}`", decl.name))
        .collect::<Vec<_>>()
        .join(", ")
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

    /// The nodes a node's inputs come from, in declared order (a node once per input).
    pub fn inputs(&self, id: NodeId) -> &[NodeId] {
        self.nodes.get(id.index()).map_or(&[], |node| &node.inputs)
    }

    /// The input artifacts of a node, in declared order.
    pub fn wires(&self, id: NodeId) -> &[Out] {
        self.nodes.get(id.index()).map_or(&[], |node| &node.wires)
    }

    /// The artifacts a node declares.
    pub fn outputs(&self, id: NodeId) -> &[OutputDecl] {
        self.nodes.get(id.index()).map_or(&[], |node| &node.outputs)
    }

    /// The artifact `name` of a node, if it declares one.
    pub fn out(&self, id: NodeId, name: &str) -> Option<Out> {
        let node = self.nodes.get(id.index())?;
        let index = node.outputs.iter().position(|decl| decl.name == name)?;
        Some(Out {
            node: id,
            index: u32::try_from(index).ok()?,
            kind: node.outputs[index].kind,
        })
    }

    /// Where a node's build history is kept: its scope and identity.
    pub fn history_key(&self, id: NodeId) -> Option<String> {
        self.nodes.get(id.index()).map(Node::history_key)
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
