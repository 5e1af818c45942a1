//! The concrete actions of a LinuxKit build.
//!
//! Every action is pure data plus `execute`; the engine derives its key from `kind`, `version`,
//! `params` and the results of its inputs. This table lists what each kind puts into `params`
//! (the inputs' artifact digests are always part of the key):
//!
//! | kind                | inputs                         | params                                             | outputs |
//! |---------------------|--------------------------------|----------------------------------------------------|---------|
//! | `fetch`             | —                              | blob digest and size                               | `blob` |
//! | `unpack`            | fetch                          | media type, limits                                 | `tree` |
//! | `merge`             | unpack × layers, in order      | —                                                  | `tree` |
//! | `init-root`         | merge                          | source ref, location                               | `tree` |
//! | `bundle`            | merge (unless de-duplicated)   | bundle path, root dir, readonly, config.json, runtime.json, source ref, location | `tree` |
//! | `kernel`            | merge                          | binary, tar, ucode names, cmdline, source ref      | `kernel`, `cmdline`, `ucode`?, `rootfs`, `initrd` (trees) |
//! | `files`             | —                              | every entry: path, kind, bytes or blob digest, mode, uid, gid | `tree` |
//! | `apk-db`            | init-root × init images        | —                                                  | `tree` (the union, or empty) |
//! | `volume`            | merge (filesystem), fetch × blobs then the index (oci), — (blank) | name, location, content kind, source ref, layout version | `tree` |
//! | `sbom`              | fetch × SPDX attestation layers | per document: prefix, input; created time, format version | `tree` |
//! | `segment`           | one tree-producing action      | which artifact, codec, level                       | `segment` |
//! | `initrd`            | kernel?, segments              | whether ucode is prepended                         | `initrd` |
//! | `rootfs-tar`        | kernel?, trees                 | artifact per input                                 | `tar` |
//! | `kernel-initrd-tar` | kernel, initrd                 | —                                                  | `tar` |
//!
//! Labels, identities and image sources (where to fetch from) are *not* in keys: they do not
//! change the bytes.
//!
//! Params are written as named [`KeyHasher::field`](lkb_engine::KeyHasher::field)s, so
//! `--explain` can say which one changed: `kernel` writes `image`, `binary`, `tar`, `ucode`,
//! `cmdline`, `limits`; `bundle` writes `path`, `root`, `readonly`, `config.json`,
//! `runtime.json`, `image`, `location`; `files` writes one field per entry, `files[N]`, with
//! `path`, `kind`, `contents` (or `target`), `mode`, `uid`, `gid`, `parent_mode`; `segment`
//! writes `artifact`, `codec`, `cpio_format`.

mod apkdb;
mod archive;
mod files;
#[cfg(test)]
mod golden_tests;
mod image;
mod kernel;
mod sbom;
mod sections;
mod volume;

pub use apkdb::{APK_INSTALLED, ApkDbAction};
pub use archive::{InitrdAction, KernelInitrdTarAction, RootfsTarAction, SegmentAction};
pub use files::{FileData, FileItem, FilesAction};
pub use image::{FetchBlobAction, MergeImageAction, UnpackLayerAction};
pub use kernel::KernelAction;
pub use sbom::{SBOM_PATH, SbomAction, SbomPart};
pub use sections::{BundleAction, InitRootAction, RootFilter};
pub use volume::{VolumeAction, VolumeContent};

use lkb_engine::ActionError;
use lkb_store::{ActionResult, Artifact, BlobRef, Store};

use crate::tree::{Entry, Meta, Tree, TreeError};

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

/// The artifact `name` of an input result, or an internal error.
pub(crate) fn artifact<'a>(
    result: &'a ActionResult,
    name: &str,
) -> Result<&'a BlobRef, ActionError> {
    result.get(name).ok_or_else(|| {
        ActionError::internal(format!(
            "input has no `{name}` artifact (has {:?})",
            names(result)
        ))
    })
}

fn names(result: &ActionResult) -> Vec<&str> {
    result.outputs.iter().map(|a| a.name.as_str()).collect()
}

/// A result with one artifact.
pub(crate) fn single(name: &str, blob: BlobRef) -> ActionResult {
    ActionResult {
        outputs: vec![Artifact {
            name: name.to_string(),
            blob,
        }],
    }
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
