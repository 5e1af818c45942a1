//! `probe`: keys and cache state without running anything.

use lkb_engine::{CacheState, probe};

use crate::diamond;
use crate::support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_sees_what_a_build_would_take_from_the_cache() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));

    // Nothing built: the leaves' keys are known, the rest depends on their outputs.
    let before = probe(&d.graph, &world.store).expect("probe");
    assert_eq!(before.len(), 5);
    for leaf in [d.leaf_a, d.leaf_b] {
        assert_eq!(before[leaf.index()].state, CacheState::NotCached);
        assert!(before[leaf.index()].key.is_some());
    }
    for node in [d.mid_a, d.mid_b, d.top] {
        assert_eq!(before[node.index()].state, CacheState::Unknown);
        assert_eq!(before[node.index()].key, None);
    }
    assert_eq!(world.counts.total(), 0, "probing runs nothing");

    let outcome = world.run(&d.graph).await;
    let after = probe(&d.graph, &world.store).expect("probe");
    for id in d.graph.node_ids() {
        let found = &after[id.index()];
        assert!(found.state.is_cached(), "{id}: {found:?}");
        assert_eq!(
            found.key,
            Some(outcome.keys[&id]),
            "{id}: same key as the build"
        );
    }

    // Change one leaf: it and what depends on it are no longer known to be cached.
    let changed = diamond(&world, world.action("leaf_a").salt("v2"));
    let partly = probe(&changed.graph, &world.store).expect("probe");
    assert_eq!(partly[changed.leaf_a.index()].state, CacheState::NotCached);
    assert_ne!(
        partly[changed.leaf_a.index()].key,
        Some(outcome.keys[&d.leaf_a])
    );
    assert_eq!(partly[changed.mid_a.index()].state, CacheState::Unknown);
    assert_eq!(partly[changed.top.index()].state, CacheState::Unknown);
    assert!(partly[changed.mid_b.index()].state.is_cached());

    // A damaged entry is reported as such, with its key.
    let blob = outcome.results[&d.mid_b].outputs[0].blob;
    assert!(world.store.remove_blob(&blob.digest).expect("remove"));
    let damaged = probe(&d.graph, &world.store).expect("probe");
    assert_eq!(
        damaged[d.mid_b.index()].state,
        CacheState::Damaged { missing: blob }
    );
    assert_eq!(damaged[d.mid_b.index()].key, Some(outcome.keys[&d.mid_b]));
    assert_eq!(damaged[d.top.index()].state, CacheState::Unknown);
}
