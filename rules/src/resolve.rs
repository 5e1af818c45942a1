//! The resolve phase: image references → pinned, stored manifests and configs.
//!
//! Policy (see docs/architecture.md):
//! - A ref found in an OCI layout listed in `lkb.toml` is resolved from the layout every time
//!   (local, cheap; that is where locally built images change).
//! - A registry ref with a pin in `lkb.lock` reuses the pin; if the pinned manifest and config
//!   are in the store no network is used at all. `--pull` re-resolves every tag.
//! - `--offline` never uses a registry; a ref that is neither in a layout nor pinned and stored
//!   is an error.
//! - `--locked` turns any change to the lock file into an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use lkb_store::{BlobDigest, BlobRef, ErrorCategory, Store, StoreError};

use crate::lock::{LockError, LockFile, Pin, PinKey};
use crate::oci::{
    ImageRef, ImageSource, ImageSources, Manifest, OciError, Platform, ResolvedImage,
    build_resolved, parse_manifest,
};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "image {reference} is not in the store or any OCI layout, and --offline forbids asking a registry"
    )]
    Offline { reference: String },
    #[error("{}", not_in_layouts(.reference, .searched, .missing))]
    NotInLayouts {
        reference: String,
        /// The layouts searched.
        searched: Vec<PathBuf>,
        /// Listed layouts that do not exist.
        missing: Vec<PathBuf>,
        /// Why the registry could not give it either.
        #[source]
        source: Box<OciError>,
    },
    #[error("the image config {config} of {reference} has bad rootfs.diff_ids: {reason}")]
    BadDiffIds {
        reference: String,
        config: BlobDigest,
        reason: String,
    },
    #[error("stored manifest {digest} of {reference} is not an image manifest: {reason}")]
    BadStoredManifest {
        reference: String,
        digest: BlobDigest,
        reason: String,
    },
}

impl ResolveError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            ResolveError::Oci(e) => e.category(),
            ResolveError::Lock(e) => e.category(),
            ResolveError::Store(e) => e.category(),
            ResolveError::Offline { .. } => ErrorCategory::User,
            ResolveError::NotInLayouts {
                missing, source, ..
            } if missing.is_empty() => source.category(),
            // The layout the user was meant to create is missing: theirs to fix.
            ResolveError::NotInLayouts { .. } => ErrorCategory::User,
            ResolveError::BadStoredManifest { .. } | ResolveError::BadDiffIds { .. } => {
                ErrorCategory::Environment
            }
        }
    }
}

/// A resolved image and its parsed OCI image config.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub resolved: ResolvedImage,
    /// The image config document (`config.Labels`, `config.Env`, …).
    pub config: serde_json::Value,
}

impl ImageInfo {
    /// The config's `rootfs.diff_ids` entry for layer `index`: the digest of the uncompressed
    /// layer. `None` if the config has no such list (resolution checked that a list it has
    /// names one valid digest per layer).
    pub fn diff_id(&self, index: usize) -> Option<BlobDigest> {
        self.config
            .pointer("/rootfs/diff_ids")?
            .get(index)?
            .as_str()?
            .parse()
            .ok()
    }
}

/// Checks that the config's `rootfs.diff_ids`, if it has one, lists a sha256 digest per layer.
fn check_diff_ids(resolved: &ResolvedImage, config: &serde_json::Value) -> Result<(), String> {
    let Some(list) = config.pointer("/rootfs/diff_ids") else {
        tracing::warn!(
            image = %resolved.reference,
            "the image config has no rootfs.diff_ids; its layers cannot be checked against it"
        );
        return Ok(());
    };
    let list = list.as_array().ok_or("not a list")?;
    if list.len() != resolved.layers.len() {
        return Err(format!(
            "{} entries for {} layers",
            list.len(),
            resolved.layers.len()
        ));
    }
    for entry in list {
        entry
            .as_str()
            .and_then(|d| d.parse::<BlobDigest>().ok())
            .ok_or_else(|| format!("{entry} is not a sha256 digest"))?;
    }
    Ok(())
}

/// Inputs of the resolve phase.
pub struct Resolver {
    pub sources: Arc<ImageSources>,
    pub store: Store,
    pub platform: Platform,
    pub lock: LockFile,
    pub pull: bool,
    pub offline: bool,
}

impl Resolver {
    /// Resolves every ref (canonical strings) and returns the images and the new lock.
    pub async fn resolve_all(
        &self,
        refs: &BTreeSet<String>,
    ) -> Result<(BTreeMap<String, Arc<ImageInfo>>, LockFile), ResolveError> {
        let jobs = refs.iter().map(|r| async move {
            let info = self.resolve_one(r).await?;
            Ok::<_, ResolveError>((r.clone(), info))
        });
        let results = futures::future::join_all(jobs).await;
        let mut images = BTreeMap::new();
        let mut lock = self.lock.clone();
        for result in results {
            let (name, info) = result?;
            lock.pins.insert(
                self.key(&name),
                Pin {
                    manifest: info.resolved.manifest.digest,
                    index: info.resolved.index_digest,
                },
            );
            images.insert(name, Arc::new(info));
        }
        Ok((images, lock))
    }

    fn key(&self, reference: &str) -> PinKey {
        PinKey {
            reference: reference.to_string(),
            platform: self.platform.to_string(),
        }
    }

    async fn resolve_one(&self, name: &str) -> Result<ImageInfo, ResolveError> {
        let r = ImageRef::parse(name)?;
        let in_layout = self.sources.layouts().iter().any(|l| l.find(&r).is_some());
        let resolved = if in_layout {
            self.sources
                .resolve(&r, &self.platform, &self.store)
                .await?
        } else {
            let pin = self.lock.pins.get(&self.key(name)).filter(|_| !self.pull);
            let stored = match pin {
                Some(pin) => self.load_stored(&r, pin)?,
                None => None,
            };
            match (stored, pin) {
                (Some(resolved), _) => resolved,
                (None, _) if self.offline => {
                    return Err(ResolveError::Offline {
                        reference: name.to_string(),
                    });
                }
                (None, Some(pin)) => {
                    let mut resolved = self
                        .sources
                        .resolve(&r.with_digest(pin.manifest), &self.platform, &self.store)
                        .await?;
                    resolved.reference = r.clone();
                    resolved.index_digest = pin.index;
                    resolved
                }
                (None, None) => self
                    .sources
                    .resolve(&r, &self.platform, &self.store)
                    .await
                    .map_err(|error| self.not_in_layouts(name, error))?,
            }
        };
        let config = self.store.read_blob(&resolved.config.digest)?;
        let actual = BlobDigest::of_bytes(&config);
        if actual != resolved.config.digest {
            // Removed, so that the next run fetches it again.
            self.store.remove_blob(&resolved.config.digest)?;
            return Err(StoreError::CorruptBlob {
                digest: resolved.config.digest,
                actual,
                path: self.store.blob_file_path(&resolved.config.digest),
            }
            .into());
        }
        let config = serde_json::from_slice(&config).map_err(|e| OciError::InvalidManifest {
            reference: name.to_string(),
            source_name: "the store".into(),
            reason: format!("image config {} is not JSON: {e}", resolved.config.digest),
        })?;
        check_diff_ids(&resolved, &config).map_err(|reason| ResolveError::BadDiffIds {
            reference: name.to_string(),
            config: resolved.config.digest,
            reason,
        })?;
        Ok(ImageInfo { resolved, config })
    }

    /// A registry error for an image no layout has: when the workspace lists layouts, say
    /// so, and name the ones that do not exist.
    fn not_in_layouts(&self, name: &str, error: OciError) -> ResolveError {
        let searched: Vec<PathBuf> = self
            .sources
            .layouts()
            .iter()
            .map(|layout| layout.root().to_path_buf())
            .collect();
        let missing = self.sources.missing_layouts().to_vec();
        if searched.is_empty() && missing.is_empty() {
            return error.into();
        }
        ResolveError::NotInLayouts {
            reference: name.to_string(),
            searched,
            missing,
            source: Box::new(error),
        }
    }

    /// Rebuilds a pinned image from the store alone, if its manifest and config are there.
    fn load_stored(&self, r: &ImageRef, pin: &Pin) -> Result<Option<ResolvedImage>, ResolveError> {
        let bytes = match self.store.read_blob(&pin.manifest) {
            Ok(bytes) => bytes,
            // Debug builds re-hash in `read_blob`.
            Err(StoreError::CorruptBlob { actual, .. }) => {
                return self.damaged(pin.manifest, actual);
            }
            Err(_) => return Ok(None),
        };
        // A stored manifest is re-hashed: a damaged or swapped file would build another image.
        let actual = BlobDigest::of_bytes(&bytes);
        if actual != pin.manifest {
            return self.damaged(pin.manifest, actual);
        }
        let bad = |reason: String| ResolveError::BadStoredManifest {
            reference: r.canonical(),
            digest: pin.manifest,
            reason,
        };
        let manifest = match parse_manifest(&bytes, None) {
            Ok(Manifest::Image(m)) => m,
            Ok(Manifest::Index(_)) => return Err(bad("it is an index".into())),
            Err(p) => return Err(bad(format!("{p:?}"))),
        };
        let config_digest = manifest
            .config
            .sha256()
            .ok_or_else(|| bad(format!("config digest {:?}", manifest.config.digest)))?;
        let config = BlobRef {
            digest: config_digest,
            size: manifest.config.size,
        };
        if !self.store.has_blob(&config) {
            return Ok(None);
        }
        match self.store.verify_blob(&config.digest) {
            Ok(_) => {}
            Err(StoreError::CorruptBlob { actual, .. }) => {
                return self.damaged(config.digest, actual);
            }
            Err(StoreError::BlobMissing { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
        let manifest_ref = BlobRef {
            digest: pin.manifest,
            size: bytes.len() as u64,
        };
        let resolved = build_resolved(
            r,
            &self.platform,
            pin.index,
            manifest_ref,
            config,
            &manifest,
            "the store",
        )?;
        Ok(Some(resolved))
    }
}

impl Resolver {
    /// A stored manifest or config that does not hash to its digest: it is removed, so that
    /// it is fetched again (the sources skip blobs whose file exists); with `--offline` it
    /// cannot be, and that is an error.
    fn damaged(
        &self,
        digest: BlobDigest,
        actual: BlobDigest,
    ) -> Result<Option<ResolvedImage>, ResolveError> {
        let error = StoreError::CorruptBlob {
            digest,
            actual,
            path: self.store.blob_file_path(&digest),
        };
        self.store.remove_blob(&digest)?;
        if self.offline {
            return Err(error.into());
        }
        tracing::warn!(%error, "removed it; fetching it again");
        Ok(None)
    }
}

/// The message of [`ResolveError::NotInLayouts`], with a hint per missing layout (naming the
/// `build.sh` beside it when there is one, as for the examples).
fn not_in_layouts(reference: &str, searched: &[PathBuf], missing: &[PathBuf]) -> String {
    let list = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("image {reference} is in none of the OCI layouts lkb.toml lists");
    match (searched.is_empty(), missing.is_empty()) {
        (false, true) => text.push_str(&format!(" ({})", list(searched))),
        (false, false) => text.push_str(&format!(
            " (searched {}; missing {})",
            list(searched),
            list(missing)
        )),
        (true, _) => text.push_str(&format!(" (none of them exists: {})", list(missing))),
    }
    text.push_str(", and the registry could not provide it");
    for layout in missing {
        let script = layout.parent().map(|dir| dir.join("build.sh"));
        match script.filter(|script| script.is_file()) {
            Some(script) => text.push_str(&format!(
                "\nhint: {} does not exist; {} creates it",
                layout.display(),
                script.display()
            )),
            None => text.push_str(&format!(
                "\nhint: {} does not exist; create the layout or remove it from lkb.toml",
                layout.display()
            )),
        }
    }
    text
}

#[cfg(test)]
mod tests;
