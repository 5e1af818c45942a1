//! Golden action keys: one action of every kind, with fixed params and fixed input results,
//! and the exact key the engine derives for it (`lkb_engine::action_key` over `kind`,
//! `version`, `params_hash` and the inputs' artifacts).
//!
//! A key is what a store (local or shared) files a result under, so a key that changes
//! silently either orphans every cached result or, worse, lets a result made by an older lkb
//! stand in for a newer one. If one of these hex strings changes, the change must be on
//! purpose:
//! - the action's output for the same inputs changed: bump that action's `version()` (or the
//!   format version it writes into its params: `CPIO_FORMAT_VERSION`, `TAR_FORMAT_VERSION`,
//!   `COMPRESS_VERSION`, the SBOM or OCI layout version), then update the hex here;
//! - the key encoding itself changed (`KeyHasher`, `action_key`): bump
//!   `lkb_engine::KEY_SCHEMA_VERSION`, then update every hex here;
//! - a params field was renamed or reordered with no change to the output: that invalidates
//!   every cached result for nothing, so prefer not to.
//!
//! Output codecs enter keys too (the tree encoding, the tar and cpio writers with the
//! compressor and its library versions): a segment's key follows the `libdeflate-sys` or
//! `zstd-sys` in `Cargo.lock`, by design, so the segment case here uses no compression.

use std::sync::Arc;

use lkb_engine::{Action, ArtifactKind, action_key, params_hash};
use lkb_store::{Artifact, BlobDigest, BlobRef};

use super::*;
use crate::compress::Codec;
use crate::layer::Limits;
use crate::oci::{ImageRef, ImageSources, LayerDesc};

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob whose digest and size are those of `content`.
fn blob(content: &str) -> BlobRef {
    BlobRef {
        digest: BlobDigest::of_bytes(content.as_bytes()),
        size: content.len() as u64,
    }
}

/// An input artifact `name` of `kind` whose bytes would be `content`.
fn input(name: &str, kind: ArtifactKind, content: &str) -> Artifact {
    Artifact {
        name: name.to_owned(),
        kind,
        blob: blob(content),
    }
}

fn tree(content: &str) -> Artifact {
    input("tree", ArtifactKind::Tree, content)
}

fn plain(name: &str, content: &str) -> Artifact {
    input(name, ArtifactKind::Blob, content)
}

fn archive(name: &str, content: &str) -> Artifact {
    input(name, ArtifactKind::Archive, content)
}

fn layer(content: &str) -> LayerDesc {
    LayerDesc {
        digest: BlobDigest::of_bytes(content.as_bytes()),
        size: content.len() as u64,
        media_type: GZIP_LAYER.into(),
    }
}

/// Spelled out, so a change of `Limits::default()` shows up in the tests of the limits, not
/// here.
fn limits() -> Limits {
    Limits {
        max_entries: 1_000_000,
        max_path_len: 4096,
        max_total_bytes: 64 << 30,
    }
}

fn reference(text: &str) -> ImageRef {
    ImageRef::parse(text).expect("a valid reference")
}

fn kernel() -> KernelAction {
    KernelAction {
        source: "localhost/lkb/kernel:1".into(),
        binary: "/kernel".into(),
        tar: Some("/kernel.tar".into()),
        ucode: Some("/intel-ucode.cpio".into()),
        cmdline: "console=ttyS0".into(),
        limits: limits(),
    }
}

fn file_item(index: usize, path: &str, data: FileData, mode: u32) -> FileItem {
    FileItem {
        path: path.into(),
        data,
        mode,
        uid: 0,
        gid: 0,
        parent_mode: 0o755,
        index,
    }
}

/// One golden case: the kind the action must report, the action, its inputs and its key.
struct Case {
    kind: &'static str,
    action: Box<dyn Action>,
    inputs: Vec<Artifact>,
    key: &'static str,
}

fn case(kind: &'static str, action: impl Action, inputs: Vec<Artifact>, key: &'static str) -> Case {
    Case {
        kind,
        action: Box::new(action),
        inputs,
        key,
    }
}

fn key_of(action: &dyn Action, inputs: &[Artifact]) -> String {
    action_key(
        action.kind(),
        action.version(),
        &params_hash(action),
        &action.outputs(),
        inputs.iter(),
    )
    .to_string()
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "fetch",
            FetchBlobAction {
                reference: reference("localhost/lkb/app:1"),
                layer: layer("app layer"),
                source: Arc::new(ImageSources::default()),
            },
            vec![],
            "e8492b391a353d9258ed486955461694973fef03fa38e51e789655f7b5047c56",
        ),
        case(
            "unpack",
            UnpackLayerAction {
                reference: "localhost/lkb/app:1".into(),
                layer: layer("app layer"),
                diff_id: Some(BlobDigest::of_bytes(b"app layer, uncompressed")),
                limits: limits(),
            },
            vec![plain("blob", "app layer")],
            "c8dc4881741d22d3490bc07c2c9fdd2f3103520d92e2b33b01349d409e18b723",
        ),
        case(
            "merge",
            MergeImageAction {
                reference: "localhost/lkb/app:1".into(),
            },
            vec![tree("lower layer tree"), tree("upper layer tree")],
            "6590b1bc6039c0b6eb9f0b69ef6d36fd60d411a36accc3da992923ac35ddb4a9",
        ),
        case(
            "init-root",
            InitRootAction {
                source: "localhost/lkb/init:1".into(),
                location: "init[0]".into(),
            },
            vec![tree("init image tree")],
            "66581bc73093ea523fea3ef054a988f3d38e93c16701546a0b6de947b4e1e93a",
        ),
        case(
            "bundle",
            BundleAction {
                bundle: "containers/onboot/000-app".into(),
                root: Some("lower".into()),
                readonly: true,
                config_json: br#"{"ociVersion":"1.0.1"}"#.to_vec(),
                runtime_json: br#"{"mounts":[]}"#.to_vec(),
                source: "localhost/lkb/app:1".into(),
                location: "onboot[0]".into(),
            },
            vec![tree("app image tree")],
            "fd086047429c5e5f7819a3673df2cffceada015a46bc0d43c388bb408014b443",
        ),
        case(
            "bundle",
            // De-duplicated: no image filesystem, no input.
            BundleAction {
                bundle: "containers/services/second".into(),
                root: None,
                readonly: false,
                config_json: b"{}".to_vec(),
                runtime_json: b"{}".to_vec(),
                source: "localhost/lkb/app:1".into(),
                location: "services[1]".into(),
            },
            vec![],
            "71ecea7b154a7c1f5bfa55d189876b880ceff4b71bf09da774685116326bdb6a",
        ),
        case(
            "kernel",
            kernel(),
            vec![tree("kernel image tree")],
            "179e1f28b502785f20284851a467bb89b066559110daa9ed1216b60e2373852b",
        ),
        case(
            "files",
            FilesAction {
                items: vec![
                    file_item(0, "etc/motd", FileData::Inline(b"hello\n".to_vec()), 0o644),
                    file_item(1, "etc/key", FileData::Blob(blob("key bytes")), 0o600),
                    file_item(2, "etc/link", FileData::Symlink("/etc/motd".into()), 0o777),
                    file_item(3, "var/empty", FileData::Directory, 0o700),
                ],
            },
            vec![],
            "04d311a6fdcd7295f2965766c198d11816b5fb36c60a3e986507e2834ff472f3",
        ),
        case(
            "segment",
            SegmentAction {
                codec: Codec::None,
                what: "onboot[0] app".into(),
            },
            vec![tree("bundle tree")],
            "4cd1a5b4c824ac5f05fcb5bb023d26c570989cde9df06d5f65da31b564451654",
        ),
        case(
            "segment",
            SegmentAction {
                codec: Codec::None,
                what: "kernel".into(),
            },
            vec![input("initrd", ArtifactKind::Tree, "kernel initrd tree")],
            "e9a7e0bea08d7b186953cf2c0c9b3fc959f9dbbfa9c2a36b1f332d09eeaf0bcb",
        ),
        case(
            "initrd",
            InitrdAction { ucode: true },
            vec![
                plain("ucode", "ucode cpio"),
                archive("segment", "kernel segment"),
                archive("segment", "bundle segment"),
            ],
            "b3e86c659e81d354a79b53dc30b822fe991d4b83f4d506cd4349e915e2dc997f",
        ),
        case(
            "rootfs-tar",
            RootfsTarAction { format: "tar" },
            vec![
                input("rootfs", ArtifactKind::Tree, "kernel rootfs tree"),
                tree("init tree"),
                tree("bundle tree"),
            ],
            "39eada69401ca92def7e14f5f4c7dc22ada3e05346aab71b9e85d28e26d78327",
        ),
        case(
            "kernel-initrd-tar",
            KernelInitrdTarAction,
            vec![
                plain("kernel", "bzImage"),
                archive("initrd", "initrd bytes"),
                plain("cmdline", "console=ttyS0"),
                plain("ucode", "ucode cpio"),
            ],
            "91701c6b47fac158fa1e15e8270d6182c94b05a5fef02dd50ee90794b71ae9d2",
        ),
        case(
            "volume",
            VolumeAction {
                name: "scratch".into(),
                location: "volume[0]".into(),
                content: VolumeContent::Blank,
            },
            vec![],
            "6fc5f24a4cdb460e9af078f21da62a302f676ac8b935cfebc08dc5c72e7e57b8",
        ),
        case(
            "volume",
            VolumeAction {
                name: "data".into(),
                location: "volume[1]".into(),
                content: VolumeContent::Filesystem {
                    source: "localhost/lkb/vol:1".into(),
                },
            },
            vec![tree("volume image tree")],
            "fbfc35892a6b76a69dab7ff7ef5cda4e479d0d54a4a6150bf4d83c47e249cc58",
        ),
        case(
            "volume",
            VolumeAction {
                name: "images".into(),
                location: "volume[2]".into(),
                content: VolumeContent::Oci {
                    source: "localhost/lkb/vol:1".into(),
                },
            },
            vec![
                plain("blob", "layer"),
                plain("blob", "config"),
                plain("blob", "manifest"),
                plain("blob", "index"),
            ],
            "ae78e95ecd2654cb142a0e805ecb42155455e2ae7a604846cc43cf2e68febfbc",
        ),
        case(
            "apk-db",
            ApkDbAction,
            vec![tree("init tree a"), tree("init tree b")],
            "32ac299cc3629fdcec0277a6905ec98368037e43a925aa9e1317d295b1a731f5",
        ),
        case(
            "sbom",
            SbomAction {
                parts: vec![
                    SbomPart {
                        prefix: String::new(),
                        input: 0,
                    },
                    SbomPart {
                        prefix: "containers/onboot/000-app/lower/".into(),
                        input: 1,
                    },
                ],
                created: DEFAULT_MTIME,
            },
            vec![
                plain("blob", "kernel attestation"),
                plain("blob", "app attestation"),
            ],
            "3b4e82bfa31f7ba99a071f7df9e4b599a06d19369d5503e1b1e43a33440bc8fb",
        ),
    ]
}

/// Every kind of action lkb lowers to; each must have a golden case above.
const KINDS: &[&str] = &[
    "fetch",
    "unpack",
    "merge",
    "init-root",
    "bundle",
    "kernel",
    "files",
    "segment",
    "initrd",
    "rootfs-tar",
    "kernel-initrd-tar",
    "volume",
    "apk-db",
    "sbom",
];

#[test]
fn golden_action_keys_per_kind() {
    let mut wrong = Vec::new();
    for (i, case) in cases().iter().enumerate() {
        assert_eq!(case.action.kind(), case.kind, "case {i}");
        let takes = case.action.inputs();
        assert!(takes.enough(case.inputs.len()), "case {i}: too few inputs");
        for (position, input) in case.inputs.iter().enumerate() {
            assert_eq!(
                takes.at(position),
                Some(input.kind),
                "case {i} input {position}"
            );
        }
        let key = key_of(&*case.action, &case.inputs);
        if key != case.key {
            wrong.push(format!(
                "case {i} ({}, {}): {key}",
                case.kind,
                case.action.label()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "action keys changed; bump the action's version() or KEY_SCHEMA_VERSION (see the module \
         docs), then update:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn golden_cases_cover_every_action_kind() {
    let covered: std::collections::BTreeSet<&str> = cases().iter().map(|c| c.kind).collect();
    let all: std::collections::BTreeSet<&str> = KINDS.iter().copied().collect();
    assert_eq!(covered, all);
}

/// What only names an action (its label, identity, where its bytes come from) stays out of the
/// key: the same bytes from another registry, or under another name, hit the same cache entry.
#[test]
fn golden_keys_leave_out_labels_and_sources() {
    let fetch = |r: &str| FetchBlobAction {
        reference: reference(r),
        layer: layer("app layer"),
        source: Arc::new(ImageSources::default()),
    };
    assert_eq!(
        key_of(&fetch("localhost/lkb/app:1"), &[]),
        key_of(&fetch("registry.example/mirror/app:2"), &[])
    );
    let unpack = |r: &str, media_type: &str| UnpackLayerAction {
        reference: r.into(),
        layer: LayerDesc {
            media_type: media_type.into(),
            ..layer("app layer")
        },
        diff_id: None,
        limits: limits(),
    };
    let blob_input = [plain("blob", "app layer")];
    assert_eq!(
        key_of(&unpack("localhost/lkb/app:1", GZIP_LAYER), &blob_input),
        key_of(
            &unpack(
                "registry.example/app:2",
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            ),
            &blob_input
        )
    );
    let trees = [tree("lower layer tree")];
    assert_eq!(
        key_of(
            &MergeImageAction {
                reference: "localhost/lkb/app:1".into()
            },
            &trees
        ),
        key_of(
            &MergeImageAction {
                reference: "localhost/lkb/other:7".into()
            },
            &trees
        )
    );
    let segment = |what: &str| SegmentAction {
        codec: Codec::Gzip { level: 6 },
        what: what.into(),
    };
    let tree = [tree("bundle tree")];
    assert_eq!(
        key_of(&segment("onboot[0] app"), &tree),
        key_of(&segment("services[3] other"), &tree)
    );
}
