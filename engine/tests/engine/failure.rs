//! Failure propagation, panics and cancellation.

use std::error::Error as _;
use std::time::Duration;

use lkb_engine::{BuildError, BuildEvent, BuildOptions, CancelToken, ErrorCategory, GraphBuilder};

use crate::support::{Behaviour, World};

fn options(jobs: usize) -> BuildOptions {
    BuildOptions {
        jobs,
        ..BuildOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_stops_dependents_and_lets_running_actions_finish() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let broken = world
        .action("broken")
        .behaviour(Behaviour::Fail(ErrorCategory::User))
        .delay_ms(30);
    let broken = builder.add(broken.arc(), &[]);
    let dependent = builder.add(world.action("dependent").arc(), &[broken]);
    let slow = builder.add(world.action("slow").delay_ms(400).arc(), &[]);
    let after_slow = builder.add(world.action("after_slow").arc(), &[slow]);
    let graph = builder.build().expect("acyclic");

    let error = world
        .run_with(&graph, &options(2))
        .await
        .expect_err("build fails");
    match &error {
        BuildError::ActionFailed {
            node,
            label,
            source,
        } => {
            assert_eq!(*node, broken);
            assert_eq!(label, "count broken");
            assert_eq!(source.category(), ErrorCategory::User);
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert_eq!(error.category(), ErrorCategory::User);
    assert_eq!(error.category().exit_code(), 2);
    // The chain: each message once.
    assert_eq!(error.to_string(), "count broken failed");
    let cause = error.source().expect("cause");
    assert_eq!(cause.to_string(), "broken refused to work");
    assert_eq!(
        cause.source().expect("root cause").to_string(),
        "disk says no"
    );

    assert_eq!(world.counts.runs("broken"), 1);
    assert_eq!(world.counts.runs("dependent"), 0, "dependents never start");
    assert_eq!(
        world.counts.runs("slow"),
        1,
        "the running independent action finished"
    );
    assert_eq!(
        world.counts.runs("after_slow"),
        0,
        "nothing new starts after a failure"
    );
    let events = world.recorder.take();
    assert!(events.iter().any(|e| matches!(
        e,
        BuildEvent::ActionFailed { label, error, .. }
            if label == "count broken" && error == "broken refused to work: disk says no"
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        BuildEvent::ActionFinished { label, cached: false, .. } if label == "count slow"
    )));
    assert!(!events.iter().any(|e| matches!(
        e,
        BuildEvent::ActionStarted { node, .. } | BuildEvent::ActionFinished { node, .. }
            if *node == dependent
    )));

    // The finished action was recorded: building just it is a cache hit.
    let opts = BuildOptions {
        targets: Some(vec![slow]),
        ..options(2)
    };
    let outcome = world
        .run_with(&graph, &opts)
        .await
        .expect("slow alone builds");
    assert_eq!((outcome.stats.total, outcome.stats.cached), (1, 1));
    assert!(outcome.results.contains_key(&slow) && !outcome.results.contains_key(&after_slow));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_and_internal_categories_are_kept() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    builder.add(
        world
            .action("offline")
            .behaviour(Behaviour::Fail(ErrorCategory::Environment))
            .arc(),
        &[],
    );
    let graph = builder.build().expect("acyclic");
    let error = world
        .run_with(&graph, &options(1))
        .await
        .expect_err("fails");
    assert_eq!(error.category(), ErrorCategory::Environment);

    let mut builder = GraphBuilder::new();
    builder.add(world.action("bomb").behaviour(Behaviour::Panic).arc(), &[]);
    let graph = builder.build().expect("acyclic");
    let error = world
        .run_with(&graph, &options(1))
        .await
        .expect_err("panics are failures");
    assert_eq!(error.category(), ErrorCategory::Internal);
    let cause = error.source().expect("cause").to_string();
    assert!(cause.contains("panicked: bomb exploded"), "{cause}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_waits_for_running_actions_and_keeps_the_store_consistent() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let long = builder.add(
        world
            .action("long")
            .behaviour(Behaviour::UntilCancelled)
            .arc(),
        &[],
    );
    let next = builder.add(world.action("next").arc(), &[long]);
    let queued = builder.add(world.action("queued").arc(), &[]);
    let graph = builder.build().expect("acyclic");

    let cancel = CancelToken::new();
    let opts = BuildOptions {
        jobs: 1,
        cancel: cancel.clone(),
        ..BuildOptions::default()
    };
    let recorder = world.recorder.clone();
    let trip = tokio::spawn(async move {
        while !recorder
            .started_labels()
            .iter()
            .any(|label| label == "count long")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cancel.cancel();
    });
    let error = world.run_with(&graph, &opts).await.expect_err("cancelled");
    trip.await.expect("trip task");
    assert!(matches!(error, BuildError::Cancelled), "{error:?}");
    assert_eq!(world.counts.runs("long"), 1);
    assert_eq!(world.counts.runs("next"), 0);
    assert_eq!(
        world.counts.runs("queued"),
        0,
        "-j 1 was busy; nothing starts after cancel"
    );

    // The running action's result was recorded, and the store still works.
    let outcome = world.run(&graph).await;
    assert_eq!(world.counts.executed(), ["next", "queued"]);
    assert_eq!(outcome.stats.cached, 1);
    assert!(outcome.results.contains_key(&next) && outcome.results.contains_key(&queued));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_before_start_runs_nothing() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    builder.add(world.action("never").arc(), &[]);
    let graph = builder.build().expect("acyclic");
    let cancel = CancelToken::new();
    cancel.cancel();
    let opts = BuildOptions {
        cancel,
        ..BuildOptions::default()
    };
    let error = world.run_with(&graph, &opts).await.expect_err("cancelled");
    assert!(matches!(error, BuildError::Cancelled));
    assert_eq!(world.counts.total(), 0);
}
