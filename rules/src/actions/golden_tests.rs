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
//! compressor and its library versions): a segment's key follows the `zlib-rs`, `flate2` or
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
                limits: limits(),
            },
            vec![plain("blob", "app layer")],
            "e925e4aa566f66a0d75482756fcfc60a13fcdb9e6075129d34a964c412ed677a",
        ),
        case(
            "merge",
            MergeImageAction {
                reference: "localhost/lkb/app:1".into(),
            },
            vec![tree("lower layer tree"), tree("upper layer tree")],
            "449a72ae68ae55c0b7daeefec7864ab9958fe875a66b03019912510b997eb6bb",
        ),
        case(
            "init-root",
            InitRootAction {
                source: "localhost/lkb/init:1".into(),
                location: "init[0]".into(),
            },
            vec![tree("init image tree")],
            "75f1e6d69f9f8ef589505b4cc0c4af904e33091fe482330889df8cea2a78251b",
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
            "890e5687caf1b487e593f59645978b8925195d7aa9fe61912dc504899fdb2279",
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
            "3b06f7bb16b8459e35c02a718839c53ec2ecdf8d78b32348916d033b03eb3d97",
        ),
        case(
            "kernel",
            kernel(),
            vec![tree("kernel image tree")],
            "002cdb41cfa1ad8e53eaf696d146556f5fe33c746319d0ad9362dd31b4bab1f4",
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
            "fdb70e51306df807d31ef09e4cbb6996032f60f042df0ee2e93908d0b32638b3",
        ),
        case(
            "segment",
            SegmentAction {
                codec: Codec::None,
                what: "onboot[0] app".into(),
            },
            vec![tree("bundle tree")],
            "3a5d08504d581290c9af43d6478cf923746f15cda6a5748ab769f541516be54e",
        ),
        case(
            "segment",
            SegmentAction {
                codec: Codec::None,
                what: "kernel".into(),
            },
            vec![input("initrd", ArtifactKind::Tree, "kernel initrd tree")],
            "23b4bffbadee3118d47765becd142c950b3441417fc6f13e0fbabca05c676135",
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
            RootfsTarAction,
            vec![
                input("rootfs", ArtifactKind::Tree, "kernel rootfs tree"),
                tree("init tree"),
                tree("bundle tree"),
            ],
            "105b15e12d7de7fae43b2dc7b3a115bd929b5965f33fc52d4a0f2112cb01006b",
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
            "ee56b02265e18839eb9ddb2bf423b1dec59d8f34b1bd5f3e8cb348153ee969ac",
        ),
        case(
            "volume",
            VolumeAction {
                name: "scratch".into(),
                location: "volume[0]".into(),
                content: VolumeContent::Blank,
            },
            vec![],
            "def72918891e15c3362b86cd68b67d29c9bce4c3d7df8d7a493f58e49deb2d0e",
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
            "c9fcfbd9c9e0bd028ac0a19f3899571881ece9c3e79000610fb727c9968cf22a",
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
            "b0ec9c16a91ac512a31731e8aff3f54df1bd702bf8d4354d8df419163f35e87f",
        ),
        case(
            "apk-db",
            ApkDbAction,
            vec![tree("init tree a"), tree("init tree b")],
            "6fc4cacbc3dd49774cfafd79add3dcd9468f594f92f130ff0e45055aa76927b1",
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
            "01be556031ead7fdb57a8597acaa5ad26259506e74684374b0b13938b5bd8b4c",
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
