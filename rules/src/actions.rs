//! The concrete actions of a LinuxKit build.
//!
//! Every action is pure data plus `execute`; the engine derives its key from `kind`, `version`,
//! `params`, its declared outputs (with their codec versions) and its input artifacts. This
//! table lists what each kind takes, what it puts into `params` and what it declares. Trees
//! are declared with the codec `lkb-tree` at [`TREE_FORMAT_VERSION`]; tars with `pax-tar` at
//! `TAR_FORMAT_VERSION`; segments with `cpio`, the cpio version and [`Codec::params`](crate::compress::Codec::params)
//! (compressor, level, library versions).
//!
//! | kind                | inputs (kinds)                                  | params                                             | outputs (kind) |
//! |---------------------|-------------------------------------------------|----------------------------------------------------|---------|
//! | `fetch`             | —                                               | blob digest and size                               | `blob` (blob) |
//! | `unpack`            | a layer (blob)                                  | media type, limits                                 | `tree` (tree) |
//! | `merge`             | each layer's tree, in order                     | —                                                  | `tree` |
//! | `init-root`         | the image tree                                  | source ref, location                               | `tree` |
//! | `bundle`            | the image tree (unless de-duplicated)           | bundle path, root dir, readonly, config.json, runtime.json, source ref, location | `tree` |
//! | `kernel`            | the image tree                                  | binary, tar, ucode names, cmdline, source ref      | `kernel`, `cmdline`, `ucode`? (blobs), `rootfs`, `initrd` (trees) |
//! | `files`             | —                                               | every entry: path, kind, bytes or blob digest, mode, uid, gid | `tree` |
//! | `apk-db`            | the init-root trees                             | —                                                  | `tree` (the union, or empty) |
//! | `volume`            | the image tree (filesystem), blobs then the index (oci), — (blank) | name, location, content kind, source ref, layout version | `tree` |
//! | `sbom`              | SPDX attestation layers (blobs)                 | per document: prefix, input; created time, format version | `tree` |
//! | `segment`           | one tree                                        | —                                                  | `segment` (archive) |
//! | `initrd`            | `ucode`? (blob), segments (archives)            | whether ucode is prepended                         | `initrd` (archive) |
//! | `rootfs-tar`        | the kernel's `rootfs`, section trees            | —                                                  | `tar` (archive) |
//! | `kernel-initrd-tar` | `kernel`, `initrd`, `cmdline`, `ucode`?         | —                                                  | `tar` (archive) |
//! | `uki`               | boot image tree, `kernel`, `cmdline`, `initrd`, `ucode`? | os-release text                           | `uki` (blob) |
//! | `raw-bios`          | boot image tree, `kernel`, `initrd`, `cmdline`  | size                                               | `disk` (disk-image) |
//! | `raw-efi`           | boot image tree, `uki`                          | size                                               | `disk` (disk-image) |
//! | `convert`           | a raw disk (disk-image)                         | target format                                      | `disk` (disk-image) |
//! | `iso`               | rootfs trees (`kernel+iso`); boot image tree, `cmdline`, rootfs trees (`iso-bios`, `iso-efi`); boot image tree, `kernel`, `initrd`, `cmdline` (`iso-efi-initrd`) | layout | `iso` (disk-image) |
//!
//! Labels, identities and image sources (where to fetch from) are *not* in keys: they do not
//! change the bytes.
//!
//! Params are written as named [`KeyHasher::field`](lkb_engine::KeyHasher::field)s, so
//! `--explain` can say which one changed: `kernel` writes `image`, `binary`, `tar`, `ucode`,
//! `cmdline`, `limits`; `bundle` writes `path`, `root`, `readonly`, `config.json`,
//! `runtime.json`, `image`, `location`; `files` writes one field per entry, `files[N]`, with
//! `path`, `kind`, `contents` (or `target`), `mode`, `uid`, `gid`, `parent_mode`. A codec
//! change is named by `--explain` as an output change.

mod apkdb;
mod archive;
mod files;
mod fs_image;
#[cfg(test)]
mod golden_tests;
mod image;
mod kernel;
mod media;
mod sbom;
mod sections;
mod volume;

pub use apkdb::{APK_INSTALLED, ApkDbAction};
pub use archive::{
    InitrdAction, KernelInitrdTarAction, RootfsTarAction, SEGMENT_MEMBER_BYTES, SegmentAction,
};
pub use files::{
    DOCKERFILE, DockerfileAction, FileData, FileItem, FilesAction, FilesError, file_items,
};
pub use fs_image::{FsImage, FsImageAction};
pub use image::{FetchBlobAction, MergeImageAction, UnpackLayerAction};
pub use kernel::KernelAction;
pub use media::{
    ConvertAction, DiskFormat, IsoAction, IsoLayout, RawBiosAction, RawEfiAction, UKI_OS_RELEASE,
    UkiAction, disk_identity, grub_cfg, isolinux_cfg,
};
pub use sbom::{SBOM_PATH, SbomAction, SbomPart};
pub use sections::{BundleAction, InitRootAction, RootFilter};
pub use volume::{VolumeAction, VolumeContent};

use lkb_engine::{ActionError, ArtifactKind, ExecCtx, OutputDecl};
use lkb_store::{ActionResult, BlobRef, Store};

use crate::tree::{Entry, Meta, TREE_FORMAT_VERSION, Tree, TreeError};

/// LinuxKit's `defaultModTime` (2017-04-18T16:30:00Z): the mtime of generated entries.
pub const DEFAULT_MTIME: i64 = 1_492_533_000;

/// Reads and decodes a tree blob.
pub(crate) fn load_tree(store: &Store, blob: &BlobRef) -> Result<Tree, ActionError> {
    let bytes = store.read_blob(&blob.digest)?;
    Tree::decode(&bytes).map_err(tree_error)
}

/// Encodes a tree and stores it.
pub(crate) fn save_tree(store: &Store, tree: &Tree) -> Result<BlobRef, ActionError> {
    Ok(store.put_bytes(&tree.encode())?)
}

/// The blobs of every input, in wiring order.
pub(crate) fn input_blobs(ctx: &ExecCtx) -> Vec<BlobRef> {
    ctx.inputs().iter().map(|input| input.blob).collect()
}

/// The declaration of a tree output: lkb's tree encoding, whose version enters the key.
pub(crate) fn tree_output(name: &'static str) -> OutputDecl {
    OutputDecl::new(name, ArtifactKind::Tree).codec("lkb-tree", TREE_FORMAT_VERSION.to_string())
}

/// The one output `tree` (see [`tree_output`]) of the actions that make a tree.
pub(crate) fn tree_outputs() -> Vec<OutputDecl> {
    vec![tree_output("tree")]
}

/// Encodes `tree` and returns it as the result `tree`.
pub(crate) fn tree_result(store: &Store, tree: &Tree) -> Result<ActionResult, ActionError> {
    let blob = save_tree(store, tree)?;
    Ok(ActionResult::new().with("tree", ArtifactKind::Tree, blob))
}

/// A result with one plain blob.
pub(crate) fn blob_result(name: &str, blob: BlobRef) -> ActionResult {
    ActionResult::new().with(name, ArtifactKind::Blob, blob)
}

/// Directories an action generates: 0755, root, [`DEFAULT_MTIME`].
pub(crate) const GENERATED_DIR: Meta = Meta::new(0o755, 0, 0, DEFAULT_MTIME);
/// Files an action generates: 0644, root, [`DEFAULT_MTIME`].
pub(crate) const GENERATED_FILE: Meta = Meta::new(0o644, 0, 0, DEFAULT_MTIME);

/// Adds `entry` to a tree being built.
pub(crate) fn insert(tree: &mut Tree, entry: Entry) -> Result<(), ActionError> {
    tree.insert(entry).map(drop).map_err(tree_error)
}

/// A tree error as an action error of the same category.
pub(crate) fn tree_error(e: TreeError) -> ActionError {
    ActionError::new(e.category(), e)
}

/// Sets LinuxKit's provenance PAX records on every entry.
pub(crate) fn tag(tree: &mut Tree, source: &str, location: &str) {
    tree.set_pax_all("LINUXKIT.source", source);
    tree.set_pax_all("LINUXKIT.location", location);
}

/// `entry` with LinuxKit's provenance PAX records.
pub(crate) fn tagged(mut entry: Entry, source: &str, location: &str) -> Entry {
    entry.pax.insert("LINUXKIT.source".into(), source.into());
    entry
        .pax
        .insert("LINUXKIT.location".into(), location.into());
    entry
}

/// The param fields `--explain` names when an action's params go from `old` to `new`.
#[cfg(test)]
fn changed_params(old: &dyn lkb_engine::Action, new: &dyn lkb_engine::Action) -> Vec<String> {
    let (old, new) = (
        lkb_engine::params_digest(old),
        lkb_engine::params_digest(new),
    );
    lkb_engine::ParamsDigest::changed_fields(
        old.fields.iter().map(|(p, d)| (p.as_str(), d)),
        new.fields.iter().map(|(p, d)| (p.as_str(), d)),
    )
}
