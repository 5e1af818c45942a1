//! LinuxKit's build rules for lkb: from `linuxkit.yml` to an action graph, and the actions.
//!
//! Data flow of a build (the CLI's `ops::plan` and `ops::build` drive it):
//!
//! - [`workspace`]: `lkb.toml`, labels (`//pkg:name`, `//pkg/...`) → targets.
//! - [`config`]: yml text → typed, validated [`config::Config`] (pure; errors carry
//!   file:line:col), multi-file merge, `@pkg:` templates, `metadata:` rendering.
//! - [`oci`], [`resolve`], [`indexes`], [`lock`]: image refs → pinned manifests and configs in
//!   the store (OCI layouts first, then registries; `lkb.lock`).
//! - [`lower`], [`formats`], [`bundle_spec`]: config + resolved images → actions in the
//!   engine's graph, and the output files each format needs (pure).
//! - [`actions`]: the concrete actions (fetch, unpack, merge, kernel, init-root, bundle,
//!   volume, files, apk-db, sbom, segment, initrd, tars), built on [`tree`] (canonical file
//!   trees), [`layer`] (layer tar → tree, never touching the host fs), [`cpio`], [`tarball`]
//!   and [`compress`].
//! - [`gc`]: which blobs a stored artifact refers to, for the store's garbage collector.
pub mod actions;
pub mod bundle_spec;
pub mod compress;
pub mod config;
pub mod cpio;
pub mod formats;
pub mod gc;
pub mod indexes;
pub mod layer;
pub mod lock;
pub mod lower;
/// Image acquisition lives in its own crate ([`lkb_oci`]), shared with the remote cache's
/// registry backend; it is re-exported here so `lkb_rules::oci::…` paths keep working.
pub use lkb_oci as oci;
pub mod resolve;
pub mod tarball;
pub mod tree;
pub mod workspace;

use lkb_store::{Categorized, ErrorCategory};

lkb_store::categorized!(
    actions::FilesError,
    config::ConfigError,
    cpio::CpioError,
    layer::LayerError,
    lock::LockError,
    lower::LowerError,
    resolve::ResolveError,
    tarball::TarError,
    tree::TreeError,
    workspace::WorkspaceError,
);

/// An unknown or unsupported `--format` is the user's to fix.
impl Categorized for formats::FormatError {
    fn category(&self) -> ErrorCategory {
        ErrorCategory::User
    }
}

/// A package whose tag cannot be computed: git missing is the machine's fault, the rest
/// (no build.yml, not committed, a bad tag template) the user's.
impl Categorized for config::PackageError {
    fn category(&self) -> ErrorCategory {
        match self {
            config::PackageError::GitMissing { .. } => ErrorCategory::Environment,
            _ => ErrorCategory::User,
        }
    }
}
