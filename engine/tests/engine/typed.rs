//! Typed artifacts: declared outputs, kind-checked wiring, and history kept per scope.

use async_trait::async_trait;
use lkb_engine::{
    Action, ActionError, ArtifactKind, BuildError, EngineError, ErrorCategory, ExecCtx,
    GraphBuilder, HistoryRecord, InputKinds, KeyHasher, OutputDecl, RebuildReason,
};
use lkb_store::ActionResult;

use crate::support::World;

/// An action with two outputs (`a`, a tree, and `b`, a blob), each the concatenation of a tag
/// and its inputs' bytes. `lie` makes it return outputs it did not declare.
#[derive(Debug)]
struct Pair {
    tag: &'static str,
    takes: InputKinds,
    lie: bool,
}

impl Pair {
    fn new(tag: &'static str) -> Self {
        Pair {
            tag,
            takes: InputKinds::none(),
            lie: false,
        }
    }
}

#[async_trait]
impl Action for Pair {
    fn kind(&self) -> &'static str {
        "pair"
    }
    fn label(&self) -> String {
        format!("pair {}", self.tag)
    }
    fn identity(&self) -> String {
        "pair".to_owned()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.str(self.tag);
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![
            OutputDecl::new("a", ArtifactKind::Tree),
            OutputDecl::new("b", ArtifactKind::Blob),
        ]
    }
    fn inputs(&self) -> InputKinds {
        self.takes.clone()
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let mut bytes = self.tag.as_bytes().to_vec();
        for input in ctx.inputs() {
            bytes.push(b'|');
            bytes.extend(ctx.store().read_blob(&input.blob.digest)?);
        }
        let a = ctx.store().put_bytes(&[b"a:", &bytes[..]].concat())?;
        let b = ctx.store().put_bytes(&[b"b:", &bytes[..]].concat())?;
        let second = if self.lie {
            ArtifactKind::DiskImage
        } else {
            ArtifactKind::Blob
        };
        Ok(ActionResult::new()
            .with("a", ArtifactKind::Tree, a)
            .with("b", second, b))
    }
}

fn takes(kinds: &[ArtifactKind]) -> InputKinds {
    InputKinds::exactly(kinds.to_vec())
}

#[tokio::test]
async fn named_outputs_reach_the_input_they_are_wired_to() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let first = builder.add_wired(std::sync::Arc::new(Pair::new("first")), &[]);
    let b = builder.out(first, "b");
    assert_eq!(b.kind(), ArtifactKind::Blob);
    assert_eq!(b.index(), 1);
    let a = builder.out(first, "a");
    let consumer = Pair {
        takes: takes(&[ArtifactKind::Blob, ArtifactKind::Tree]),
        ..Pair::new("second")
    };
    let second = builder.add_wired(std::sync::Arc::new(consumer), &[b, a]);
    let graph = builder.build().expect("well wired");
    assert_eq!(graph.wires(second), [b, a]);
    let outcome = world.run(&graph).await;
    let blob = outcome.results[&second].get("a").expect("a");
    let bytes = world.store.read_blob(&blob.digest).expect("read");
    assert_eq!(bytes, b"a:second|b:first|a:first");
    let kinds: Vec<_> = outcome.results[&second]
        .outputs
        .iter()
        .map(|artifact| artifact.kind)
        .collect();
    assert_eq!(kinds, [ArtifactKind::Tree, ArtifactKind::Blob]);
}

#[test]
fn a_wrong_kind_is_refused_when_the_graph_is_built() {
    let mut builder = GraphBuilder::new();
    let first = builder.add_wired(std::sync::Arc::new(Pair::new("first")), &[]);
    let a = builder.out(first, "a");
    let consumer = Pair {
        takes: takes(&[ArtifactKind::Blob]),
        ..Pair::new("second")
    };
    builder.add_wired(std::sync::Arc::new(consumer), &[a]);
    let error = builder.build().expect_err("a tree wired to a blob input");
    assert!(matches!(error, EngineError::Miswired { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "pair second is wired wrongly: input 0 must be a blob but is a tree of pair first"
    );
    assert_eq!(error.category(), ErrorCategory::Internal);
}

#[test]
fn unknown_output_names_and_ambiguous_wiring_are_refused() {
    let mut builder = GraphBuilder::new();
    let first = builder.add_wired(std::sync::Arc::new(Pair::new("first")), &[]);
    builder.out(first, "c");
    let error = builder.build().expect_err("no output c");
    assert_eq!(
        error.to_string(),
        "pair first is wired wrongly: it has no output `c` (it declares `a`, `b`)"
    );

    // `add` wires each input's only output; a node with two is ambiguous.
    let mut builder = GraphBuilder::new();
    let first = builder.add_wired(std::sync::Arc::new(Pair::new("first")), &[]);
    let consumer = Pair {
        takes: InputKinds::each(ArtifactKind::Tree),
        ..Pair::new("second")
    };
    builder.add(std::sync::Arc::new(consumer), &[first]);
    let error = builder.build().expect_err("two outputs");
    assert!(
        error.to_string().contains("has no single output to wire"),
        "{error}"
    );

    // Too few inputs.
    let mut builder = GraphBuilder::new();
    let consumer = Pair {
        takes: takes(&[ArtifactKind::Tree]),
        ..Pair::new("second")
    };
    builder.add_wired(std::sync::Arc::new(consumer), &[]);
    let error = builder.build().expect_err("missing input");
    assert!(
        error
            .to_string()
            .contains("takes at least 1 inputs but was given 0"),
        "{error}"
    );
}

#[tokio::test]
async fn a_result_that_differs_from_the_declaration_is_an_internal_error_and_not_cached() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let liar = builder.add_wired(
        std::sync::Arc::new(Pair {
            lie: true,
            ..Pair::new("liar")
        }),
        &[],
    );
    let graph = builder.build().expect("well wired");
    let error = world
        .run_with(&graph, &lkb_engine::BuildOptions::default())
        .await
        .expect_err("undeclared output kind");
    assert!(
        matches!(error, BuildError::ActionFailed { .. }),
        "{error:?}"
    );
    assert_eq!(error.category(), ErrorCategory::Internal);
    let cause = std::error::Error::source(&error)
        .expect("cause")
        .to_string();
    assert!(
        cause.contains("returned the outputs [a (tree), b (disk-image)]")
            && cause.contains("but declares [a (tree), b (blob)]"),
        "{cause}"
    );
    let probe = lkb_engine::probe(&graph, &world.store).expect("probe");
    assert_eq!(probe[liar.index()].state, lkb_engine::CacheState::NotCached);
}

#[tokio::test]
async fn history_is_kept_per_scope() {
    let world = World::new();
    // Two targets whose actions share an identity ("leaf") but differ in content.
    let build = |salt: &str, scope: &str| {
        let mut builder = GraphBuilder::new();
        builder.set_scope(scope);
        let leaf = builder.add(world.action("leaf").salt(salt).arc(), &[]);
        (builder.build().expect("acyclic"), leaf)
    };
    let (one, one_leaf) = build("one", "/ws//pkg:one");
    let (two, two_leaf) = build("two", "/ws//pkg:two");
    assert_eq!(
        one.history_key(one_leaf).as_deref(),
        Some("/ws//pkg:one leaf")
    );
    let first = world.run(&one).await;
    let second = world.run(&two).await;
    let load = |key: &str| {
        HistoryRecord::load(&world.store, key)
            .expect("load")
            .expect("a row per target")
    };
    assert_eq!(load("/ws//pkg:one leaf").key, first.keys[&one_leaf]);
    assert_eq!(load("/ws//pkg:two leaf").key, second.keys[&two_leaf]);

    // Building one again is a cache hit that leaves both rows alone.
    let again = world.run(&one).await;
    assert_eq!(again.stats.executed, 0);
    assert_eq!(load("/ws//pkg:two leaf").key, second.keys[&two_leaf]);

    // A change to one is explained against one's last build, not two's.
    let (changed, changed_leaf) = build("one, changed", "/ws//pkg:one");
    let outcome = world.run(&changed).await;
    assert_eq!(
        outcome.reasons[&changed_leaf],
        RebuildReason::ParamsChanged {
            fields: vec!["salt".to_owned()]
        }
    );
    assert_eq!(load("/ws//pkg:two leaf").key, second.keys[&two_leaf]);
}
