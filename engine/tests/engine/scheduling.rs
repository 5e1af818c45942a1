//! Parallelism limits, priorities, targets, run-time deduplication, counters and progress.

use lkb_engine::{ActionClass, BuildEvent, BuildOptions, GraphBuilder, NodeId};

use crate::diamond;
use crate::support::{Behaviour, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_1_and_jobs_2_give_identical_results() {
    let mut outcomes = Vec::new();
    for jobs in [1, 2] {
        let world = World::new();
        let mut builder = GraphBuilder::new();
        let leaves: Vec<NodeId> = (0..4)
            .map(|i| builder.add(world.action(&format!("leaf{i}")).delay_ms(40).arc(), &[]))
            .collect();
        builder.add(world.action("join").arc(), &leaves);
        let graph = builder.build().expect("acyclic");
        let opts = BuildOptions {
            jobs,
            ..BuildOptions::default()
        };
        let outcome = world.run_with(&graph, &opts).await.expect("build");
        assert_eq!(
            world.counts.max_running(ActionClass::Cpu),
            jobs,
            "-j {jobs} is the limit"
        );
        outcomes.push((outcome.keys, outcome.results));
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_actions_have_their_own_limit() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    for i in 0..3 {
        let fetch = world
            .action(&format!("fetch{i}"))
            .class(ActionClass::Io)
            .delay_ms(40);
        builder.add(fetch.arc(), &[]);
    }
    builder.add(world.action("cpu").delay_ms(40).arc(), &[]);
    let graph = builder.build().expect("acyclic");
    let opts = BuildOptions {
        jobs: 1,
        io_jobs: 2,
        ..BuildOptions::default()
    };
    world.run_with(&graph, &opts).await.expect("build");
    assert_eq!(world.counts.max_running(ActionClass::Io), 2);
    assert_eq!(world.counts.max_running(ActionClass::Cpu), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_path_starts_first() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    builder.add(world.action("lonely").arc(), &[]);
    let head = builder.add(world.action("head").arc(), &[]);
    let body = builder.add(world.action("body").arc(), &[head]);
    builder.add(world.action("tail").arc(), &[body]);
    let graph = builder.build().expect("acyclic");
    // Empty cache: every leaf is looked up in one batch, so the longest chain starts first.
    let opts = BuildOptions {
        jobs: 1,
        ..BuildOptions::default()
    };
    world.run_with(&graph, &opts).await.expect("build");
    assert_eq!(world.recorder.started_labels()[0], "count head");
    // Forced: no lookups, so each newly ready node is queued before the permit is reused.
    let opts = BuildOptions {
        jobs: 1,
        rebuild: true,
        ..BuildOptions::default()
    };
    world.run_with(&graph, &opts).await.expect("build");
    let started = world.recorder.started_labels();
    // `tail` and `lonely` both end their paths: the tie goes to the earlier node.
    assert_eq!(
        started,
        ["count head", "count body", "count lonely", "count tail"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_limit_the_build() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    let opts = BuildOptions {
        targets: Some(vec![d.mid_a]),
        ..BuildOptions::default()
    };
    let outcome = world.run_with(&d.graph, &opts).await.expect("build");
    assert_eq!(world.counts.executed(), ["leaf_a", "mid_a"]);
    assert_eq!(
        outcome.results.keys().copied().collect::<Vec<_>>(),
        [d.leaf_a, d.mid_a]
    );
    assert_eq!(outcome.stats.total, 2);

    let full = world.run(&d.graph).await;
    assert_eq!(world.counts.executed(), ["leaf_b", "mid_b", "top"]);
    assert_eq!(full.stats.cached, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_in_two_nodes_executes_once() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let same = || Behaviour::Fixed("identical".to_owned());
    let left = builder.add(world.action("left").behaviour(same()).arc(), &[]);
    let right = builder.add(world.action("right").behaviour(same()).arc(), &[]);
    // Different input nodes, so not merged in the graph, but equal keys at run time.
    let use_left = builder.add(world.action("use").delay_ms(50).arc(), &[left]);
    let use_right = builder.add(world.action("use").delay_ms(50).arc(), &[right]);
    assert_ne!(use_left, use_right);
    let graph = builder.build().expect("acyclic");
    let outcome = world
        .run_with(&graph, &BuildOptions::default())
        .await
        .expect("build");
    assert_eq!(world.counts.runs("use"), 1);
    assert_eq!(outcome.keys[&use_left], outcome.keys[&use_right]);
    assert_eq!(outcome.results[&use_left], outcome.results[&use_right]);
    assert_eq!((outcome.stats.executed, outcome.stats.cached), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_progress_are_reported() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    let outcome = world.run(&d.graph).await;
    let written: u64 = ["leaf_a/", "leaf_b/", "mid_a/|leaf_a/", "mid_b/|leaf_b/"]
        .iter()
        .map(|s| s.len() as u64)
        .sum::<u64>()
        + "top/|mid_a/|leaf_a/|mid_b/|leaf_b/".len() as u64;
    assert_eq!(outcome.stats.counters["bytes written"], written);
    let progress: u64 = world
        .recorder
        .take()
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Progress { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(progress, written);
}
