//! Cache hits, invalidation, early cut-off and rebuild reasons.

use lkb_engine::{BuildEvent, BuildOptions, RebuildReason};
use lkb_store::{BlobDigest, MetaTable};

use crate::diamond;
use crate::support::{Behaviour, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_executes_nothing() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    let first = world.run(&d.graph).await;
    assert_eq!(world.counts.total(), 5);
    assert_eq!(
        (first.stats.total, first.stats.executed, first.stats.cached),
        (5, 5, 0)
    );
    assert_eq!(
        world.output(&first, d.top),
        "top/|mid_a/|leaf_a/|mid_b/|leaf_b/"
    );

    let second = world.run(&d.graph).await;
    assert_eq!(world.counts.total(), 0);
    assert_eq!(
        (
            second.stats.total,
            second.stats.executed,
            second.stats.cached
        ),
        (5, 0, 5)
    );
    assert_eq!(second.results, first.results);
    assert_eq!(second.keys, first.keys);
    assert!(second.reasons.is_empty());
    assert!(
        world.recorder.started_labels().is_empty(),
        "cache hits are not started"
    );
    let finished_cached = world
        .recorder
        .take()
        .iter()
        .filter(|e| {
            matches!(
                e,
                BuildEvent::ActionFinished {
                    cached: true,
                    reason: None,
                    ..
                }
            )
        })
        .count();
    assert_eq!(finished_cached, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_leaf_reruns_exactly_its_dependents() {
    let world = World::new();
    let before = diamond(&world, world.action("leaf_a"));
    let first = world.run(&before.graph).await;

    let after = diamond(&world, world.action("leaf_a").salt("v2"));
    let second = world.run(&after.graph).await;
    assert_eq!(world.counts.executed(), ["leaf_a", "mid_a", "top"]);
    assert_eq!((second.stats.executed, second.stats.cached), (3, 2));
    assert_eq!(
        second.reasons[&after.leaf_a],
        RebuildReason::ParamsChanged {
            fields: vec!["salt".to_owned()]
        }
    );
    let blob = |outcome: &lkb_engine::BuildOutcome, node| outcome.results[&node].outputs[0].blob;
    assert_eq!(
        second.reasons[&after.mid_a],
        RebuildReason::InputChanged {
            input: 0,
            input_label: "count leaf_a".to_owned(),
            artifact: "out".to_owned(),
            old: Some(blob(&first, before.leaf_a).digest),
            new: Some(blob(&second, after.leaf_a).digest),
            origin: Some("leaf_a salt changed".to_owned()),
        }
    );
    assert_eq!(
        second.reasons[&after.top],
        RebuildReason::InputChanged {
            input: 0,
            input_label: "count mid_a".to_owned(),
            artifact: "out".to_owned(),
            old: Some(blob(&first, before.mid_a).digest),
            new: Some(blob(&second, after.mid_a).digest),
            origin: Some("leaf_a salt changed".to_owned()),
        }
    );
    assert_eq!(
        world.output(&second, after.top),
        "top/|mid_a/|leaf_a/v2|mid_b/|leaf_b/"
    );
    assert_eq!(second.keys[&after.mid_b], first.keys[&before.mid_b]);

    // And back: the old entries are still cached.
    let third = world.run(&before.graph).await;
    assert_eq!(third.stats.executed, 0);
    assert_eq!(third.results, first.results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_upstream_output_cuts_off_downstream() {
    let world = World::new();
    let fixed = Behaviour::Fixed("same bytes".to_owned());
    let first_graph = diamond(&world, world.action("leaf_a").behaviour(fixed.clone()));
    let first = world.run(&first_graph.graph).await;

    let changed = diamond(&world, world.action("leaf_a").behaviour(fixed).salt("v2"));
    let second = world.run(&changed.graph).await;
    assert_eq!(
        world.counts.executed(),
        ["leaf_a"],
        "only the changed leaf re-runs"
    );
    assert_eq!(
        second.reasons[&changed.leaf_a],
        RebuildReason::ParamsChanged {
            fields: vec!["salt".to_owned()]
        }
    );
    assert_ne!(
        second.keys[&changed.leaf_a],
        first.keys[&first_graph.leaf_a]
    );
    assert_eq!(second.keys[&changed.mid_a], first.keys[&first_graph.mid_a]);
    assert_eq!(
        second.results[&changed.top],
        first.results[&first_graph.top]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reasons() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    let first = world.run(&d.graph).await;
    assert!(
        first
            .reasons
            .values()
            .all(|reason| *reason == RebuildReason::New)
    );
    assert_eq!(first.reasons.len(), 5);

    // A damaged cache entry: the output blob of mid_b is gone.
    let mid_b_blob = first.results[&d.mid_b].outputs[0].blob;
    assert!(
        world
            .store
            .remove_blob(&mid_b_blob.digest)
            .expect("remove blob")
    );
    let damaged = world.run(&d.graph).await;
    assert_eq!(
        world.counts.executed(),
        ["mid_b"],
        "same bytes again: top stays cached"
    );
    assert_eq!(
        damaged.reasons[&d.mid_b],
        RebuildReason::CacheEntryDamaged { blob: mid_b_blob }
    );
    assert!(
        world.store.has_blob(&mid_b_blob),
        "re-executing restored the blob"
    );

    // The record is gone although nothing changed.
    assert!(
        world
            .store
            .remove_action(&first.keys[&d.top])
            .expect("remove record")
    );
    let missing = world.run(&d.graph).await;
    assert_eq!(missing.reasons[&d.top], RebuildReason::CacheEntryMissing);
    assert_eq!(missing.stats.executed, 1);

    // A new implementation version.
    let bumped = diamond(&world, world.action("leaf_a").version(2));
    let versioned = world.run(&bumped.graph).await;
    assert_eq!(
        versioned.reasons[&bumped.leaf_a],
        RebuildReason::VersionChanged { old: 1, new: 2 }
    );
    assert_eq!(
        world.counts.executed(),
        ["leaf_a"],
        "same output bytes: cut off"
    );

    // Forced.
    let opts = BuildOptions {
        rebuild: true,
        jobs: 2,
        ..BuildOptions::default()
    };
    let forced = world.run_with(&d.graph, &opts).await.expect("forced build");
    assert_eq!(forced.stats.executed, 5);
    assert!(
        forced
            .reasons
            .values()
            .all(|reason| *reason == RebuildReason::Forced)
    );
    assert_eq!(
        forced.results, first.results,
        "deterministic actions give the same bytes"
    );

    // Every executed action's reason is in its ActionFinished event.
    let explained = world
        .recorder
        .take()
        .iter()
        .filter(|e| {
            matches!(
                e,
                BuildEvent::ActionFinished {
                    cached: false,
                    reason: Some(RebuildReason::Forced),
                    ..
                }
            )
        })
        .count();
    assert_eq!(explained, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_kept_per_identity() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    let outcome = world.run(&d.graph).await;
    let record = lkb_engine::HistoryRecord::load(&world.store, "top")
        .expect("read history")
        .expect("history for top");
    assert_eq!(record.key, outcome.keys[&d.top]);
    assert_eq!(record.kind, "counting");
    assert_eq!(record.inputs.len(), 2);
    assert_eq!(record.inputs[1].label, "count mid_b");
    let raw = world
        .store
        .get_meta(MetaTable::History, "top")
        .expect("meta")
        .expect("row");
    assert!(serde_json::from_slice::<serde_json::Value>(&raw).is_ok());

    // A reason from a record, by hand: an input artifact that changed.
    let mut changed = record.clone();
    let other = world.store.put_bytes(b"something else").expect("put");
    changed.inputs[1].artifact.blob = other;
    assert_eq!(
        changed.reason_since(Some(&record)),
        RebuildReason::InputChanged {
            input: 1,
            input_label: "count mid_b".to_owned(),
            artifact: "out".to_owned(),
            old: Some(record.inputs[1].artifact.blob.digest),
            new: Some(other.digest),
            origin: None,
        }
    );
    let _: BlobDigest = record.inputs[0].artifact.blob.digest;
}
