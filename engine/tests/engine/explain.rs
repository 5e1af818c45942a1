//! Rebuild reasons that name what changed: params fields (`entries[3].contents`) and the
//! upstream origin of an input change.

use std::sync::Arc;

use async_trait::async_trait;
use lkb_engine::{
    Action, ActionError, ExecCtx, GraphBuilder, HistoryRecord, KeyHasher, RebuildReason,
};
use lkb_engine::{ArtifactKind, InputKinds, OutputDecl};
use lkb_store::ActionResult;

use crate::diamond;
use crate::support::World;

/// A `files:`-like action: a list of entries, each with a path and contents, hashed as one
/// field per entry and attribute.
#[derive(Debug)]
struct EntriesAction {
    mode: u64,
    entries: Vec<(String, String)>,
}

#[async_trait]
impl Action for EntriesAction {
    fn kind(&self) -> &'static str {
        "entries"
    }
    fn label(&self) -> String {
        format!("entries ({})", self.entries.len())
    }
    fn identity(&self) -> String {
        "entries".to_owned()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("mode", |key| {
            key.u64(self.mode);
        })
        .field("entries", |key| {
            key.u64(self.entries.len() as u64);
            for (index, (path, contents)) in self.entries.iter().enumerate() {
                key.field(&format!("[{index}]"), |key| {
                    key.field("path", |key| {
                        key.str(path);
                    })
                    .field("contents", |key| {
                        key.str(contents);
                    });
                });
            }
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("out", ArtifactKind::Blob)]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::none()
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let mut text = format!("mode {}\n", self.mode);
        for (path, contents) in &self.entries {
            text.push_str(&format!("{path}={contents}\n"));
        }
        let store = ctx.store().clone();
        let blob = ctx
            .blocking(move || store.put_bytes(text.as_bytes()))
            .await?;
        Ok(ActionResult::new().with("out", ArtifactKind::Blob, blob))
    }
}

fn entries(contents: &[&str]) -> EntriesAction {
    EntriesAction {
        mode: 0o644,
        entries: contents
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("etc/file{i}"), (*c).to_owned()))
            .collect(),
    }
}

/// entries → segment → image, like files → segment → initrd.
fn chain(world: &World, action: EntriesAction) -> (lkb_engine::Graph, [lkb_engine::NodeId; 3]) {
    let mut builder = GraphBuilder::new();
    let files = builder.add(Arc::new(action), &[]);
    let segment = builder.add(world.action("segment").arc(), &[files]);
    let image = builder.add(world.action("image").arc(), &[segment]);
    (builder.build().expect("acyclic"), [files, segment, image])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_entry_is_named_and_handed_downstream() {
    let world = World::new();
    let (graph, _) = chain(&world, entries(&["a", "b", "c", "d"]));
    world.run(&graph).await;

    let (graph, [files, segment, image]) = chain(&world, entries(&["a", "b", "c", "D"]));
    let outcome = world.run(&graph).await;
    assert_eq!(
        outcome.reasons[&files],
        RebuildReason::ParamsChanged {
            fields: vec!["entries[3].contents".to_owned()]
        }
    );
    assert_eq!(
        outcome.reasons[&files].to_string(),
        "parameter changed: entries[3].contents"
    );
    for node in [segment, image] {
        let reason = &outcome.reasons[&node];
        assert!(
            matches!(reason, RebuildReason::InputChanged { .. }),
            "{reason:?}"
        );
        assert_eq!(reason.origin(), Some("entries[3].contents changed"));
        assert!(
            reason
                .to_string()
                .ends_with(" (entries[3].contents changed)"),
            "{reason}"
        );
    }
    let segment_reason = outcome.reasons[&segment].to_string();
    assert!(
        segment_reason.starts_with("input changed: entries (4): out sha256:"),
        "{segment_reason}"
    );
    assert!(segment_reason.contains(" → sha256:"), "{segment_reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_fields_added_entries_and_plain_fields() {
    let world = World::new();
    let (graph, _) = chain(&world, entries(&["a", "b"]));
    world.run(&graph).await;

    // Two attributes of two entries and a top-level field at once.
    let mut changed = entries(&["A", "b"]);
    changed.mode = 0o600;
    changed.entries[1].0 = "etc/moved".to_owned();
    let (graph, [files, ..]) = chain(&world, changed);
    let outcome = world.run(&graph).await;
    assert_eq!(
        outcome.reasons[&files],
        RebuildReason::ParamsChanged {
            fields: vec![
                "mode".to_owned(),
                "entries[0].contents".to_owned(),
                "entries[1].path".to_owned(),
            ]
        }
    );
    assert_eq!(
        outcome.reasons[&files].to_string(),
        "parameters changed: mode, entries[0].contents, entries[1].path"
    );

    // An added entry is named as a whole.
    let mut grown = entries(&["A", "b", "c"]);
    grown.mode = 0o600;
    grown.entries[1].0 = "etc/moved".to_owned();
    let (graph, [files, segment, _]) = chain(&world, grown);
    let outcome = world.run(&graph).await;
    assert_eq!(
        outcome.reasons[&files],
        RebuildReason::ParamsChanged {
            fields: vec!["entries[2]".to_owned()]
        }
    );
    assert_eq!(
        outcome.reasons[&segment].origin(),
        Some("entries[2] changed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_action_field_is_prefixed_with_its_identity() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a"));
    world.run(&d.graph).await;
    let changed = diamond(
        &world,
        world
            .action("leaf_a")
            .behaviour(crate::support::Behaviour::Fixed("x".to_owned())),
    );
    let outcome = world.run(&changed.graph).await;
    assert_eq!(
        outcome.reasons[&changed.leaf_a],
        RebuildReason::ParamsChanged {
            fields: vec!["behaviour".to_owned()]
        }
    );
    assert_eq!(
        outcome.reasons[&changed.top].origin(),
        Some("leaf_a behaviour changed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_is_the_origin_of_what_follows() {
    let world = World::new();
    let d = diamond(&world, world.action("leaf_a").source("image app"));
    world.run(&d.graph).await;

    // The image moved: its layer is a new action (new identity), so everything downstream
    // names the image as the origin of its input change.
    let moved = diamond(
        &world,
        world.action("leaf_a@v2").source("image app").salt("v2"),
    );
    let outcome = world.run(&moved.graph).await;
    assert_eq!(outcome.reasons[&moved.leaf_a], RebuildReason::New);
    for node in [moved.mid_a, moved.top] {
        assert_eq!(outcome.reasons[&node].origin(), Some("image app"), "{node}");
    }
    assert!(
        outcome.reasons[&moved.mid_a]
            .to_string()
            .contains("count leaf_a@v2: out sha256:"),
        "{}",
        outcome.reasons[&moved.mid_a]
    );
    // A CLI can say how the source changed.
    let said = outcome.reasons[&moved.top]
        .clone()
        .map_origin(|origin| format!("{origin} moved"));
    assert_eq!(said.origin(), Some("image app moved"));
    assert!(!outcome.reasons.contains_key(&moved.mid_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_input_names_its_origin() {
    let world = World::new();
    let mut builder = GraphBuilder::new();
    let a = builder.add(world.action("a").arc(), &[]);
    builder.add(world.action("top").arc(), &[a]);
    world.run(&builder.build().expect("acyclic")).await;

    let mut builder = GraphBuilder::new();
    let a = builder.add(world.action("a").arc(), &[]);
    let b = builder.add(world.action("b").source("image extra").arc(), &[]);
    let top = builder.add(world.action("top").arc(), &[a, b]);
    let outcome = world.run(&builder.build().expect("acyclic")).await;
    assert_eq!(
        outcome.reasons[&top],
        RebuildReason::InputCountChanged {
            old: 1,
            new: 2,
            origin: Some("image extra".to_owned()),
        }
    );
    assert_eq!(
        outcome.reasons[&top].to_string(),
        "number of inputs changed: 1 → 2 (image extra)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_field_digests_and_tolerates_records_without_them() {
    let world = World::new();
    let (graph, _) = chain(&world, entries(&["a"]));
    world.run(&graph).await;
    let record = HistoryRecord::load(&world.store, "entries")
        .expect("read history")
        .expect("history for entries");
    let paths: Vec<&str> = record.fields.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "mode",
            "entries",
            "entries[0]",
            "entries[0].path",
            "entries[0].contents"
        ]
    );
    assert!(record.fields.iter().all(|(_, digest)| digest.len() == 16));

    // A record from before field digests were kept: the change is still reported.
    let mut older = record.clone();
    older.fields.clear();
    let mut now = record.clone();
    now.params = "0".repeat(64);
    assert_eq!(
        now.reason_since(Some(&older)),
        RebuildReason::ParamsChanged { fields: Vec::new() }
    );
    assert_eq!(
        now.reason_since(Some(&older)).to_string(),
        "parameters changed"
    );
    let json = serde_json::to_value(&older).expect("serialise");
    assert!(json.get("fields").is_none(), "empty fields are not written");
    let back: HistoryRecord = serde_json::from_value(json).expect("old records still load");
    assert_eq!(back, older);
}

#[test]
fn reason_names_and_texts() {
    let damaged = RebuildReason::CacheEntryDamaged {
        blob: lkb_store::BlobRef {
            digest: lkb_store::BlobDigest::of_bytes(b"x"),
            size: 1,
        },
    };
    let cases = [
        (RebuildReason::New, "new", "new"),
        (RebuildReason::Forced, "forced", "forced"),
        (
            RebuildReason::VersionChanged { old: 1, new: 2 },
            "version-changed",
            "action version changed: 1 → 2",
        ),
        (
            RebuildReason::CacheEntryMissing,
            "cache-entry-missing",
            "inputs unchanged but the cache entry is gone",
        ),
    ];
    for (reason, name, text) in cases {
        assert_eq!(reason.name(), name);
        assert_eq!(reason.to_string(), text);
        assert_eq!(reason.origin(), None);
    }
    assert_eq!(damaged.name(), "cache-entry-damaged");
    assert!(
        damaged
            .to_string()
            .starts_with("cache entry damaged: blob sha256:")
    );
    let many = RebuildReason::ParamsChanged {
        fields: (0..8).map(|i| format!("files[{i}].mode")).collect(),
    };
    assert_eq!(
        many.to_string(),
        "parameters changed: files[0].mode, files[1].mode, files[2].mode, files[3].mode, \
         files[4].mode, files[5].mode and 2 more"
    );
}
