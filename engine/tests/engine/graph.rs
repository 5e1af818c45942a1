//! Graph construction: cycles, deduplication, unknown nodes.

use lkb_engine::{EngineError, ErrorCategory, GraphBuilder};

use crate::support::World;

#[test]
fn cycle_names_every_node_in_it() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let outside = builder.add(world.action("outside").arc(), &[]);
    let a = builder.add(world.action("a").arc(), &[outside]);
    let b = builder.add(world.action("b").arc(), &[a]);
    let c = builder.add(world.action("c").arc(), &[b]);
    builder.add(world.action("after").arc(), &[c]);
    builder.add_edge(c, a);
    let error = builder.build().expect_err("cycle");
    match &error {
        EngineError::Cycle { nodes } => assert_eq!(nodes, &["count a", "count b", "count c"]),
        other => panic!("unexpected error: {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "the actions form a cycle: count a <-> count b <-> count c"
    );
    assert_eq!(error.category(), ErrorCategory::Internal);
}

#[test]
fn self_loop_is_a_cycle() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let alone = builder.add(world.action("alone").arc(), &[]);
    builder.add_edge(alone, alone);
    match builder.build() {
        Err(EngineError::Cycle { nodes }) => assert_eq!(nodes, ["count alone"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn identical_actions_are_added_once() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let image = builder.add(world.action("fetch busybox").arc(), &[]);
    let again = builder.add(world.action("fetch busybox").arc(), &[]);
    assert_eq!(image, again, "same kind, version, params and inputs");
    let unpack_1 = builder.add(world.action("unpack").arc(), &[image]);
    let unpack_2 = builder.add(world.action("unpack").arc(), &[again]);
    assert_eq!(unpack_1, unpack_2);
    let other = builder.add(world.action("fetch busybox").salt("other tag").arc(), &[]);
    assert_ne!(other, image);
    let different_inputs = builder.add(world.action("unpack").arc(), &[other]);
    assert_ne!(different_inputs, unpack_1);
    let newer = builder.add(world.action("fetch busybox").version(2).arc(), &[]);
    assert_ne!(newer, image);
    assert_eq!(builder.len(), 5);
    let graph = builder.build().expect("acyclic");
    assert_eq!(graph.len(), 5);
    assert_eq!(graph.inputs(unpack_1), [image]);
    assert_eq!(graph.dependents(image), [unpack_1]);
    assert_eq!(graph.critical_path(image), 2);
    assert_eq!(graph.critical_path(unpack_1), 1);
    assert_eq!(
        graph.describe(),
        "#0 counting \"count fetch busybox\"\n\
         #1 counting \"count unpack\" <- #0\n\
         #2 counting \"count fetch busybox\"\n\
         #3 counting \"count unpack\" <- #2\n\
         #4 counting \"count fetch busybox\"\n"
    );
}

#[test]
fn add_edge_updates_deduplication() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let x = builder.add(world.action("x").arc(), &[]);
    let y = builder.add(world.action("y").arc(), &[]);
    let z = builder.add(world.action("z").arc(), &[x]);
    builder.add_edge(y, z);
    assert_ne!(
        builder.add(world.action("z").arc(), &[x]),
        z,
        "z now has two inputs"
    );
    assert_eq!(builder.add(world.action("z").arc(), &[x, y]), z);
}

#[test]
fn unknown_nodes_are_reported() {
    let world = World::new();
    let mut other = GraphBuilder::new();
    other.add(world.action("elsewhere").arc(), &[]);
    let foreign = other.add(world.action("elsewhere 2").arc(), &[]);
    let mut builder = GraphBuilder::new();
    builder.add(world.action("here").arc(), &[foreign]);
    assert!(matches!(builder.build(), Err(EngineError::UnknownNode { node }) if node == foreign));
}
