//! Engine tests: real store in a temp dir, synthetic `CountingAction`s.

mod support;

mod caching;
mod explain;
mod failure;
mod graph;
mod probe;
mod random;
mod scheduling;
mod typed;

use lkb_engine::{Graph, GraphBuilder, NodeId};
use support::{CountingAction, World};

/// Two leaves, one middle action on each, one top action on both middles.
pub struct Diamond {
    pub graph: Graph,
    pub leaf_a: NodeId,
    pub leaf_b: NodeId,
    pub mid_a: NodeId,
    pub mid_b: NodeId,
    pub top: NodeId,
}

/// Builds the diamond; `leaf_a` is given so tests can change it.
pub fn diamond(world: &World, leaf_a: CountingAction) -> Diamond {
    let mut builder = GraphBuilder::new();
    let leaf_a = builder.add(leaf_a.arc(), &[]);
    let leaf_b = builder.add(world.action("leaf_b").arc(), &[]);
    let mid_a = builder.add(world.action("mid_a").arc(), &[leaf_a]);
    let mid_b = builder.add(world.action("mid_b").arc(), &[leaf_b]);
    let top = builder.add(world.action("top").arc(), &[mid_a, mid_b]);
    Diamond {
        graph: builder.build().expect("acyclic"),
        leaf_a,
        leaf_b,
        mid_a,
        mid_b,
        top,
    }
}
