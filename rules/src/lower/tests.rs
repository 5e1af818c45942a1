//! Lowering of a small config with init images, every kind of volume and a container: the
//! order of sections, what volumes and the SBOM fetch, and the index requests behind them.

use std::path::Path;

use lkb_engine::{Action as _, Graph};
use lkb_store::{BlobRef, ErrorCategory};
use serde_json::json;

use super::*;
use crate::actions::FetchBlobAction;
use crate::indexes::IndexedManifest;
use crate::oci::{
    Descriptor, DescriptorPlatform, ImageSources, OCI_MANIFEST, Platform, ResolvedImage,
    sha256_digest,
};

const YML: &str = "\
init:
  - example.com/lkb/init-a:1
  - example.com/lkb/init-b:1
volumes:
  - name: blank
  - name: fs
    image: example.com/lkb/vol:1
  - name: arm
    image: example.com/lkb/vol:1
    format: oci
    platforms: [linux/arm64]
onboot:
  - name: app
    image: example.com/lkb/app:1
    binds: [\"fs:/data\"]
";

fn desc(seed: &str, media_type: &str) -> LayerDesc {
    LayerDesc {
        digest: sha256_digest(seed.as_bytes()),
        size: seed.len() as u64,
        media_type: media_type.into(),
    }
}

fn blob(d: &LayerDesc) -> BlobRef {
    BlobRef {
        digest: d.digest,
        size: d.size,
    }
}

fn image(reference: &str, index: bool) -> Arc<ImageInfo> {
    let layer = desc(&format!("{reference} layer"), "tar+gzip");
    Arc::new(ImageInfo {
        resolved: ResolvedImage {
            reference: ImageRef::parse(reference).expect("ref"),
            platform: Platform::linux("amd64"),
            index_digest: index.then(|| sha256_digest(format!("{reference} index").as_bytes())),
            manifest: blob(&desc(&format!("{reference} manifest"), OCI_MANIFEST)),
            config: blob(&desc(&format!("{reference} config"), "config")),
            layers: vec![layer],
        },
        config: json!({"config": {"Entrypoint": ["/bin/true"]}}),
    })
}

fn platform_manifest(seed: &str, arch: &str, shared: &LayerDesc) -> IndexedManifest {
    IndexedManifest {
        descriptor: Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: desc(&format!("{seed} manifest"), OCI_MANIFEST)
                .digest
                .to_string(),
            size: 10,
            platform: Some(DescriptorPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
                os_version: None,
                os_features: Vec::new(),
            }),
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        },
        manifest: desc(&format!("{seed} manifest"), OCI_MANIFEST),
        config: desc(&format!("{seed} config"), "config"),
        layers: vec![
            shared.clone(),
            desc(&format!("{seed} own layer"), "tar+gzip"),
        ],
    }
}

struct Fixture {
    config: Config,
    images: BTreeMap<String, Arc<ImageInfo>>,
    indexes: BTreeMap<String, Arc<IndexInfo>>,
}

fn fixture(yml: &str) -> Fixture {
    let config = crate::config::parse_config(yml, Path::new("t.yml")).expect("yml");
    let mut images = BTreeMap::new();
    for r in ["init-a", "init-b", "vol", "app"] {
        let reference = format!("example.com/lkb/{r}:1");
        images.insert(reference.clone(), image(&reference, r != "init-b"));
    }
    let shared = desc("shared layer", "tar+gzip");
    let mut indexes = BTreeMap::new();
    let index = |seed: &str, manifests, sbom_layers| {
        Arc::new(IndexInfo {
            index: desc(&format!("{seed} index"), OCI_INDEX_TYPE),
            manifests,
            sbom_layers,
        })
    };
    indexes.insert(
        "example.com/lkb/init-a:1".to_string(),
        index("init-a", Vec::new(), vec![desc("spdx a", "in-toto")]),
    );
    indexes.insert(
        "example.com/lkb/app:1".to_string(),
        index("app", Vec::new(), vec![desc("spdx app", "in-toto")]),
    );
    indexes.insert(
        "example.com/lkb/vol:1".to_string(),
        index(
            "vol",
            vec![
                platform_manifest("amd", "amd64", &shared),
                platform_manifest("arm", "arm64", &shared),
            ],
            Vec::new(),
        ),
    );
    Fixture {
        config,
        images,
        indexes,
    }
}

const OCI_INDEX_TYPE: &str = crate::oci::OCI_INDEX;

fn lower_tar(f: &Fixture, sbom: Option<SbomOptions>) -> Result<(Graph, NodeId), LowerError> {
    let (graph, outputs) = lower_formats(f, sbom, &["tar"])?;
    Ok((graph, outputs[0].node))
}

fn lower_formats(
    f: &Fixture,
    sbom: Option<SbomOptions>,
    formats: &[&str],
) -> Result<(Graph, Vec<OutputSpec>), LowerError> {
    let formats: Vec<Format> = formats
        .iter()
        .map(|name| name.parse().expect("a format"))
        .collect();
    lower_with(f, sbom, &formats)
}

fn lower_with(
    f: &Fixture,
    sbom: Option<SbomOptions>,
    formats: &[Format],
) -> Result<(Graph, Vec<OutputSpec>), LowerError> {
    let input = LowerInput {
        config: &f.config,
        images: &f.images,
        files: Vec::new(),
        sources: Arc::new(ImageSources::default()),
        codec: Codec::None,
        limits: Limits::default(),
        indexes: &f.indexes,
        sbom,
        media: MediaOptions {
            boot_image: "example.com/lkb/app:1".to_owned(),
            size: None,
        },
    };
    let mut g = GraphBuilder::new();
    let outputs = lower(&mut g, "t", formats, &input)?;
    Ok((g.build().expect("graph"), outputs))
}

/// The kinds of every action in the graph.
fn all_kinds(graph: &Graph) -> std::collections::BTreeSet<&'static str> {
    graph
        .node_ids()
        .map(|n| graph.action(n).expect("node").kind())
        .collect()
}

/// A format whose own action reads a tool image (as a disk format reads a boot loader's).
struct WithTool;

impl crate::formats::OutputFormat for WithTool {
    fn name(&self) -> &'static str {
        "with-tool"
    }
    fn tool_images(&self, media: &crate::formats::MediaOptions) -> Vec<String> {
        vec![media.boot_image.clone()]
    }
    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let tool = parts
            .tool_image(&parts.media.boot_image)
            .expect("the tool image's tree");
        let tar = g.add_wired(
            Arc::new(crate::actions::RootfsTarAction { format: "tar" }),
            &[tool],
        );
        vec![OutputSpec::new(format!("{name}.tool"), g.only(tar), "tar")]
    }
}

#[test]
fn a_format_gets_the_trees_of_its_tool_images() {
    let f = fixture(YML);
    let (graph, outputs) = lower_with(&f, None, &[Format::unregistered(&WithTool)]).expect("lower");
    assert_eq!(outputs[0].file_name, "t.tool");
    let tar = outputs[0].node;
    assert_eq!(kinds(&graph, graph.inputs(tar)), ["merge"]);
    assert_eq!(
        graph.action(graph.inputs(tar)[0]).expect("node").label(),
        "merge example.com/lkb/app:1"
    );
}

#[test]
fn a_format_adds_only_the_parts_it_needs() {
    let f = fixture(YML);
    let (tar, outputs) = lower_formats(&f, None, &["tar"]).expect("lower");
    let kinds = all_kinds(&tar);
    assert!(kinds.contains("rootfs-tar"));
    assert!(
        !kinds.contains("segment") && !kinds.contains("initrd"),
        "{kinds:?}"
    );
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].kind, lkb_engine::ArtifactKind::Archive);

    // kernel+initrd writes its initrd straight from the segments: no initrd action.
    let (initrd, outputs) = lower_formats(&f, None, &["kernel+initrd"]).expect("lower");
    let kinds = all_kinds(&initrd);
    assert!(
        kinds.contains("segment") && !kinds.contains("initrd"),
        "{kinds:?}"
    );
    assert!(!kinds.contains("rootfs-tar"), "{kinds:?}");
    let file = outputs
        .iter()
        .find(|o| o.file_name == "t-initrd.img")
        .expect("t-initrd.img");
    let segments = initrd
        .node_ids()
        .filter(|n| initrd.action(*n).expect("node").kind() == "segment")
        .count();
    assert_eq!(file.nodes().count(), segments, "one part per segment");
    assert!(file.parts().all(|(_, artifact)| artifact == "segment"));

    // Two formats that both need the segments share them.
    let (both, _) =
        lower_formats(&f, None, &["kernel+initrd", "tar-kernel-initrd"]).expect("lower");
    let count = |graph: &Graph, kind: &str| {
        graph
            .node_ids()
            .filter(|n| graph.action(*n).expect("node").kind() == kind)
            .count()
    };
    assert_eq!(count(&both, "segment"), segments);
    assert!(count(&both, "initrd") <= 1);
}

fn kinds(graph: &Graph, nodes: &[NodeId]) -> Vec<&'static str> {
    nodes
        .iter()
        .map(|n| graph.action(*n).expect("node").kind())
        .collect()
}

fn fetched(graph: &Graph, node: NodeId) -> Vec<String> {
    graph
        .inputs(node)
        .iter()
        .map(|n| graph.action(*n).expect("node").label())
        .collect()
}

fn fetch_label(reference: &str, d: &LayerDesc) -> String {
    FetchBlobAction {
        reference: ImageRef::parse(reference).expect("ref"),
        layer: d.clone(),
        source: Arc::new(ImageSources::default()),
    }
    .label()
}

#[test]
fn sections_come_in_linuxkit_order() {
    let f = fixture(YML);
    let (graph, tar) = lower_tar(&f, Some(SbomOptions::default())).expect("lower");
    let trees = graph.inputs(tar).to_vec();
    assert_eq!(
        kinds(&graph, &trees),
        [
            "init-root",
            "init-root",
            "apk-db",
            "volume",
            "volume",
            "volume",
            "bundle",
            "sbom"
        ]
    );
    let labels: Vec<String> = trees[3..6]
        .iter()
        .map(|n| graph.action(*n).expect("node").label())
        .collect();
    assert_eq!(
        labels,
        [
            "volume[0] blank (blank)",
            "volume[1] fs (example.com/lkb/vol:1)",
            "volume[2] arm (OCI layout of example.com/lkb/vol:1)"
        ]
    );
    // The APK union reads both init roots, in order.
    assert_eq!(graph.inputs(trees[2]), &trees[..2]);
    // The filesystem volume reads the merged image.
    assert_eq!(kinds(&graph, graph.inputs(trees[4])), ["merge"]);
}

#[test]
fn oci_volume_fetches_the_selected_platforms_blobs_then_the_index() {
    let f = fixture(YML);
    let (graph, tar) = lower_tar(&f, None).expect("lower");
    let oci = graph.inputs(tar)[5];
    let vol = &f.indexes["example.com/lkb/vol:1"];
    let arm = &vol.manifests[1];
    let r = "example.com/lkb/vol:1";
    let mut expected: Vec<String> = arm.blobs().map(|d| fetch_label(r, d)).collect();
    expected.push(fetch_label(r, &vol.index));
    assert_eq!(fetched(&graph, oci), expected);

    // Without platforms: every manifest; the shared layer is fetched once.
    let all = YML.replace("    platforms: [linux/arm64]\n", "");
    let f = fixture(&all);
    let (graph, tar) = lower_tar(&f, None).expect("lower");
    let oci = graph.inputs(tar)[5];
    let vol = &f.indexes[r];
    let mut expected: Vec<String> = Vec::new();
    for m in &vol.manifests {
        for d in m.blobs() {
            let label = fetch_label(r, d);
            if !expected.contains(&label) {
                expected.push(label);
            }
        }
    }
    expected.push(fetch_label(r, &vol.index));
    assert_eq!(fetched(&graph, oci), expected);
    // Two manifests of config, shared layer, own layer, manifest; then the index.
    assert_eq!(expected.len(), 2 * 4 - 1 + 1, "{expected:?}");
}

#[test]
fn sbom_reads_the_attestations_of_extracted_images_in_order() {
    let f = fixture(YML);
    let (graph, tar) = lower_tar(&f, Some(SbomOptions::default())).expect("lower");
    let sbom = *graph.inputs(tar).last().expect("sbom");
    assert_eq!(
        fetched(&graph, sbom),
        [
            fetch_label("example.com/lkb/init-a:1", &desc("spdx a", "in-toto")),
            fetch_label("example.com/lkb/app:1", &desc("spdx app", "in-toto")),
        ]
    );
    // --no-sbom: no SBOM action at all.
    let (graph, tar) = lower_tar(&f, None).expect("lower");
    assert!(!kinds(&graph, graph.inputs(tar)).contains(&"sbom"));
    // One init image: no APK union.
    let one = YML.replace("  - example.com/lkb/init-b:1\n", "");
    let f = fixture(&one);
    let (graph, tar) = lower_tar(&f, None).expect("lower");
    assert!(!kinds(&graph, graph.inputs(tar)).contains(&"apk-db"));
}

#[test]
fn oci_volume_needs_an_index_and_valid_platforms() {
    let yml = YML.replace(
        "example.com/lkb/vol:1\n    format",
        "example.com/lkb/init-b:1\n    format",
    );
    let f = fixture(&yml);
    let err = lower_tar(&f, None).expect_err("not an index");
    assert_eq!(err.category(), ErrorCategory::User);
    assert!(err.to_string().contains("needs an image index"), "{err}");

    let yml = YML.replace("[linux/arm64]", "[linux]");
    let f = fixture(&yml);
    let err = lower_tar(&f, None).expect_err("bad platform");
    assert_eq!(err.category(), ErrorCategory::User);
    assert!(err.to_string().contains("volume `arm`"), "{err}");
}

#[test]
fn index_requests_follow_what_is_extracted() {
    let f = fixture(YML);
    let with = index_requests([&f.config], true);
    let sbom_only = IndexRequest {
        manifests: false,
        sbom: true,
    };
    assert_eq!(with["example.com/lkb/init-a:1"], sbom_only);
    assert_eq!(with["example.com/lkb/app:1"], sbom_only);
    assert_eq!(
        with["example.com/lkb/vol:1"],
        IndexRequest {
            manifests: true,
            sbom: true
        }
    );
    let without = index_requests([&f.config], false);
    assert_eq!(
        without.keys().collect::<Vec<_>>(),
        ["example.com/lkb/vol:1"]
    );
    assert!(!without["example.com/lkb/vol:1"].sbom);
}

#[test]
fn two_formats_writing_one_file_name_are_refused_and_shared_files_are_written_once() {
    let f = fixture(
        "kernel:\n  image: example.com/lkb/vol:1\n  cmdline: console=ttyS0\ninit:\n  - example.com/lkb/init-a:1\n",
    );
    let err = lower_formats(&f, None, &["kernel+iso", "iso-bios"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "formats kernel+iso and iso-bios both write t.iso; build them separately (or with --name)"
    );
    assert_eq!(err.category(), ErrorCategory::User);
    // kernel+initrd and kernel+iso both write t-kernel and t-cmdline: the same artifacts.
    let (_, outputs) = lower_formats(&f, None, &["kernel+initrd", "kernel+iso"]).expect("lower");
    let names: Vec<&str> = outputs.iter().map(|o| o.file_name.as_str()).collect();
    assert_eq!(names, ["t-kernel", "t-initrd.img", "t-cmdline", "t.iso"]);
}

/// Identities name one action of a build (the engine's history and `--explain` go by them):
/// every format at once, with disks of two sizes and two wraps of one container format,
/// still gives each action its own.
#[test]
fn every_action_of_every_format_has_its_own_identity() {
    let f = fixture(
        "kernel:\n  image: example.com/lkb/vol:1\n  cmdline: console=ttyS0\ninit:\n  - example.com/lkb/init-a:1\n",
    );
    // `kernel+iso` and `dynamic-vhd` write the file names of `iso-bios` and `vhd`.
    let formats: Vec<Format> = Format::all()
        .filter(|format| !["kernel+iso", "dynamic-vhd"].contains(&format.name()))
        .collect();
    let (graph, _) = lower_with(&f, None, &formats).expect("lower");
    let mut seen = std::collections::BTreeMap::new();
    for node in graph.node_ids() {
        let action = graph.action(node).expect("node");
        if let Some(other) = seen.insert(action.identity(), action.label()) {
            panic!(
                "{} and {} share the identity {:?}",
                other,
                action.label(),
                action.identity()
            );
        }
    }
    assert!(
        seen.keys()
            .any(|id| id.starts_with("convert qcow2 raw-efi")),
        "{seen:?}"
    );
}
