//! Property test over random DAGs (a seeded PRNG, no extra dependency).

use std::collections::BTreeSet;

use lkb_engine::{BuildOptions, Graph, GraphBuilder, NodeId};

use crate::support::World;

/// xorshift64*: small, deterministic, good enough to shape graphs.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Node `i` is named `n{i}`; its inputs are earlier nodes.
struct Shape {
    inputs: Vec<Vec<usize>>,
}

impl Shape {
    fn random(prng: &mut Prng) -> Self {
        let count = 4 + prng.below(20) as usize;
        let inputs = (0..count)
            .map(|i| {
                let mut picked: Vec<usize> = (0..i)
                    .filter(|_| prng.below(4) == 0)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                // Declared order matters: shuffle it a little.
                if picked.len() > 1 && prng.below(2) == 0 {
                    picked.reverse();
                }
                picked
            })
            .collect();
        Shape { inputs }
    }

    fn graph(&self, world: &World, salts: &[String]) -> (Graph, Vec<NodeId>) {
        let mut builder = GraphBuilder::new();
        let mut ids: Vec<NodeId> = Vec::new();
        for (i, inputs) in self.inputs.iter().enumerate() {
            let inputs: Vec<NodeId> = inputs.iter().map(|&input| ids[input]).collect();
            let action = world.action(&format!("n{i}")).salt(&salts[i]);
            ids.push(builder.add(action.arc(), &inputs));
        }
        (builder.build().expect("acyclic by construction"), ids)
    }

    /// `node` and everything downstream of it, as names.
    fn affected(&self, node: usize) -> Vec<String> {
        let mut affected = BTreeSet::from([node]);
        for (i, inputs) in self.inputs.iter().enumerate() {
            if inputs.iter().any(|input| affected.contains(input)) {
                affected.insert(i);
            }
        }
        let mut names: Vec<String> = affected.iter().map(|i| format!("n{i}")).collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_graphs_are_deterministic_and_incremental() {
    for seed in 1..=10u64 {
        let mut prng = Prng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let shape = Shape::random(&mut prng);
        let count = shape.inputs.len();
        let mut salts = vec![String::new(); count];

        let serial = World::new();
        let parallel = World::new();
        let (graph, ids) = shape.graph(&serial, &salts);
        let one = BuildOptions {
            jobs: 1,
            ..BuildOptions::default()
        };
        let a = serial.run_with(&graph, &one).await.expect("serial build");
        let (graph, _) = shape.graph(&parallel, &salts);
        let three = BuildOptions {
            jobs: 3,
            ..BuildOptions::default()
        };
        let b = parallel
            .run_with(&graph, &three)
            .await
            .expect("parallel build");
        assert_eq!(
            a.keys, b.keys,
            "seed {seed}: keys do not depend on -j or the store"
        );
        assert_eq!(a.results, b.results, "seed {seed}");
        assert_eq!(b.stats.executed, count);

        let again = parallel.run_with(&graph, &three).await.expect("rebuild");
        assert_eq!(again.stats.executed, 0, "seed {seed}: nothing changed");

        let changed = prng.below(count as u64) as usize;
        salts[changed] = format!("changed by seed {seed}");
        let (graph, _) = shape.graph(&parallel, &salts);
        let after = parallel
            .run_with(&graph, &three)
            .await
            .expect("incremental build");
        assert_eq!(
            parallel.counts.executed(),
            shape.affected(changed),
            "seed {seed}"
        );
        assert_eq!(after.stats.executed + after.stats.cached, count);
        assert_eq!(after.results.len(), ids.len());
    }
}
