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
//! Segments use gzip and no compression only: a zstd segment's params name the libzstd
//! version, so its key follows the `zstd-sys` in `Cargo.lock`, by design.

use std::sync::Arc;

use lkb_engine::{Action, action_key, params_hash};
use lkb_store::{ActionResult, BlobDigest, BlobRef};

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

/// A result with one artifact `name` whose bytes would be `content`.
fn result(name: &str, content: &str) -> ActionResult {
    ActionResult::new().with(name, blob(content))
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

/// What the kernel action of [`kernel`] returns.
fn kernel_result() -> ActionResult {
    ActionResult::new()
        .with("kernel", blob("bzImage"))
        .with("cmdline", blob("console=ttyS0"))
        .with("ucode", blob("ucode cpio"))
        .with("rootfs", blob("kernel rootfs tree"))
        .with("initrd", blob("kernel initrd tree"))
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
    inputs: Vec<ActionResult>,
    key: &'static str,
}

fn case(
    kind: &'static str,
    action: impl Action,
    inputs: Vec<ActionResult>,
    key: &'static str,
) -> Case {
    Case {
        kind,
        action: Box::new(action),
        inputs,
        key,
    }
}

fn key_of(action: &dyn Action, inputs: &[ActionResult]) -> String {
    action_key(
        action.kind(),
        action.version(),
        &params_hash(action),
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
            "0b7a225a9014cb9a4f665320d1de16d69a02353a1427d471e3121716f14a4700",
        ),
        case(
            "unpack",
            UnpackLayerAction {
                reference: "localhost/lkb/app:1".into(),
                layer: layer("app layer"),
                limits: limits(),
            },
            vec![result("blob", "app layer")],
            "56aed585300efc9dcab3e7b07865c360ffc2d8c37da9918bb1bc550b3db80fa3",
        ),
        case(
            "merge",
            MergeImageAction {
                reference: "localhost/lkb/app:1".into(),
            },
            vec![
                result("tree", "lower layer tree"),
                result("tree", "upper layer tree"),
            ],
            "ebc6b7214e95cceedf5f644a7d97966593b95298f659efec5f02ddc7861bd12c",
        ),
        case(
            "init-root",
            InitRootAction {
                source: "localhost/lkb/init:1".into(),
                location: "init[0]".into(),
            },
            vec![result("tree", "init image tree")],
            "2f905df41b03fc1ce168d8784a843372b47102f135ebfbdaa518064b75b5ee7f",
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
            vec![result("tree", "app image tree")],
            "885062bd11886d874c081bb929b9912f6b59a78cc48da10570206e17389d9b2b",
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
            "674575195d5ce7e95f3df292f3f12075c59fcb1d93c0f0f587a1dde184c1d9bb",
        ),
        case(
            "kernel",
            kernel(),
            vec![result("tree", "kernel image tree")],
            "c0a319cc0de79c099c44b32d2ae3af440273451c9f9ed1a04e3031f97299c25a",
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
            "64f54b289c1883507f29b77ecfc88dfa36043ceab0f2701c4609af6b404c7844",
        ),
        case(
            "segment",
            SegmentAction {
                artifact: "tree".into(),
                codec: Codec::Gzip { level: 6 },
                what: "onboot[0] app".into(),
            },
            vec![result("tree", "bundle tree")],
            "a46071542e4170d4b96399a8841e52a9fdaebc59eba70b1e9d3602c18a5b8a1f",
        ),
        case(
            "segment",
            SegmentAction {
                artifact: "initrd".into(),
                codec: Codec::None,
                what: "kernel".into(),
            },
            vec![kernel_result()],
            "a5c79ec3eb4760718081fbcc111d37fdeb49963c938a2c7ccc3997631ce14f04",
        ),
        case(
            "initrd",
            InitrdAction { ucode: true },
            vec![
                kernel_result(),
                result("segment", "kernel segment"),
                result("segment", "bundle segment"),
            ],
            "0fab9e9f5100c433c58e1914cba596ed31e87ab8113cb280798b67176ce3da34",
        ),
        case(
            "rootfs-tar",
            RootfsTarAction {
                artifacts: vec!["rootfs".into(), "tree".into(), "tree".into()],
            },
            vec![
                kernel_result(),
                result("tree", "init tree"),
                result("tree", "bundle tree"),
            ],
            "93a8e92edca4fdbe85aa87ba39a64fd94de6dbc7b1d492dc72b85d36eea687f1",
        ),
        case(
            "kernel-initrd-tar",
            KernelInitrdTarAction,
            vec![kernel_result(), result("initrd", "initrd bytes")],
            "cad608643eb37f99c18b00b452bd493961e9171fe0b72c6a657867f676ebc507",
        ),
        case(
            "volume",
            VolumeAction {
                name: "scratch".into(),
                location: "volume[0]".into(),
                content: VolumeContent::Blank,
            },
            vec![],
            "b4cf2fb07eca86c879430fdc665758c82c630f2b77abe42708153bf5b1a27e47",
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
            vec![result("tree", "volume image tree")],
            "3e861dea68f65c4c3f3f26b0d00280ce72cad8764985b160092d1d7b9dd7392f",
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
                result("blob", "layer"),
                result("blob", "config"),
                result("blob", "manifest"),
                result("blob", "index"),
            ],
            "861c8485b770a0fad375bd99f1b174c16d3a06fa5ba5b08a5a31395258dae819",
        ),
        case(
            "apk-db",
            ApkDbAction,
            vec![result("tree", "init tree a"), result("tree", "init tree b")],
            "a18edde0a2d3c566bd6ed0ab81279e29bb375fc14eb2012a5785e2baa1ebab6a",
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
                result("blob", "kernel attestation"),
                result("blob", "app attestation"),
            ],
            "ae470c101d6dfca0ee9006fa31a5c477dab88172370ea0b1ddf523fc2e739b37",
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
    let blob_input = [result("blob", "app layer")];
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
    let trees = [result("tree", "lower layer tree")];
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
        artifact: "tree".into(),
        codec: Codec::Gzip { level: 6 },
        what: what.into(),
    };
    let tree = [result("tree", "bundle tree")];
    assert_eq!(
        key_of(&segment("onboot[0] app"), &tree),
        key_of(&segment("services[3] other"), &tree)
    );
}
