//! lkb's OCI client: image references, platforms, manifests, OCI layouts, a registry client,
//! and verified transfer of manifests, configs and layers into the store.
//!
//! - [`reference`](ImageRef), [`platform`](Platform), [`manifest`](Manifest): parsing, pure.
//! - [`RegistryClient`]: the distribution API on reqwest (token and basic auth with Docker's
//!   credentials, retries, stall detection); [`OciLayout`]: a directory in the OCI image layout.
//! - [`ImageSource`]: what the resolver in `lkb-rules` pulls through (layouts, then a registry).
//!
//! The crate depends only on `lkb-store`, so both the rules (pulls) and the remote cache (its
//! registry backend) use it without depending on each other.
//!
//! Every byte that enters the store from here has been hashed on the way in and compared with
//! the digest it was asked for; a mismatch is an error and leaves the store untouched.

mod auth;
mod digest;
mod error;
mod layout;
mod manifest;
mod platform;
mod reference;
mod registry;
mod sink;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use lkb_store::{BlobDigest, BlobRef, Store};
use serde::{Deserialize, Serialize};

pub use auth::{Challenge, Credential, DockerConfig, parse_www_authenticate};
pub use digest::{parse_sha256, sha256_digest};
pub use error::OciError;
pub use layout::OciLayout;
pub use manifest::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, DOCKER_CONFIG, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST, Descriptor, DescriptorPlatform, ImageIndex, ImageManifest, Manifest,
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, parse_manifest,
};
pub use platform::{Platform, go_arch, select_manifest};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API, ImageRef};
pub use registry::{CHUNK_BYTES, FetchedManifest, RegistryClient, RegistryConfig};

lkb_store::categorized!(OciError);

/// One layer of a resolved image, as listed in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDesc {
    pub digest: BlobDigest,
    pub size: u64,
    pub media_type: String,
}

/// An image reference pinned to one platform's manifest. Manifest, index and config are in the
/// store once this exists; layers are fetched separately ([`ImageSource::fetch_blob`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The reference that was resolved (serialised in canonical form).
    pub reference: ImageRef,
    /// The platform it was resolved for.
    pub platform: Platform,
    /// The index (manifest list) the manifest was picked from, if the reference named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<BlobDigest>,
    pub manifest: BlobRef,
    pub config: BlobRef,
    pub layers: Vec<LayerDesc>,
}

impl ResolvedImage {
    /// The reference pinned by digest: the index digest if there was one (what a user would
    /// write in a yml), else the manifest digest.
    pub fn pinned(&self) -> ImageRef {
        self.reference
            .with_digest(self.index_digest.unwrap_or(self.manifest.digest))
    }
}

/// Somewhere images come from: a registry, an OCI layout, or a chain of them.
#[async_trait]
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// For messages: "registry client", "OCI layout /path".
    fn describe(&self) -> String;

    /// Resolves `r` for `platform`; stores manifest (and index) and config, verified.
    async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError>;

    /// Puts one layer into the store, verified. `progress` gets the bytes transferred so far
    /// (it restarts from 0 if a download is retried).
    async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError>;
}

#[async_trait]
impl ImageSource for RegistryClient {
    fn describe(&self) -> String {
        "registry".to_string()
    }

    async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError> {
        RegistryClient::resolve(self, r, platform, store).await
    }

    async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        RegistryClient::fetch_blob(self, r, desc, store, progress).await
    }
}

#[async_trait]
impl ImageSource for OciLayout {
    fn describe(&self) -> String {
        format!("OCI layout {}", self.root().display())
    }

    async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError> {
        OciLayout::resolve(self, r, platform, store).await
    }

    async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        OciLayout::fetch_blob(self, r, desc, store, progress).await
    }
}

/// The resolver's view: OCI layouts (in the order listed in lkb.toml) first, then the registry
/// (absent when working offline). Blobs come from whichever layout has them, else the registry.
#[derive(Clone, Debug, Default)]
pub struct ImageSources {
    layouts: Vec<Arc<OciLayout>>,
    /// Layouts the workspace lists that do not exist (yet), to name when an image is missing.
    missing_layouts: Vec<PathBuf>,
    registry: Option<RegistryClient>,
}

impl ImageSources {
    pub fn new(layouts: Vec<OciLayout>, registry: Option<RegistryClient>) -> ImageSources {
        ImageSources {
            layouts: layouts.into_iter().map(Arc::new).collect(),
            missing_layouts: Vec::new(),
            registry,
        }
    }

    pub fn layouts(&self) -> &[Arc<OciLayout>] {
        &self.layouts
    }

    /// The same sources, remembering listed layouts that do not exist.
    #[must_use]
    pub fn with_missing_layouts(mut self, missing: Vec<PathBuf>) -> ImageSources {
        self.missing_layouts = missing;
        self
    }

    /// Listed layouts that do not exist.
    pub fn missing_layouts(&self) -> &[PathBuf] {
        &self.missing_layouts
    }

    pub fn registry(&self) -> Option<&RegistryClient> {
        self.registry.as_ref()
    }
}

#[async_trait]
impl ImageSource for ImageSources {
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.layouts.iter().map(|l| l.describe()).collect();
        if self.registry.is_some() {
            parts.push("the registry".to_string());
        }
        if parts.is_empty() {
            "no image sources".to_string()
        } else {
            parts.join(", ")
        }
    }

    async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError> {
        for layout in &self.layouts {
            if layout.find(r).is_some() {
                return layout.resolve(r, platform, store).await;
            }
        }
        match &self.registry {
            Some(reg) => reg.resolve(r, platform, store).await,
            None => Err(OciError::NotInSources {
                reference: r.original().to_string(),
                searched: self.describe(),
            }),
        }
    }

    async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        for layout in &self.layouts {
            if tokio::fs::metadata(layout.blob_path(&desc.digest))
                .await
                .is_ok()
            {
                return layout.fetch_blob(r, desc, store, progress).await;
            }
        }
        match &self.registry {
            Some(reg) => reg.fetch_blob(r, desc, store, progress).await,
            None => Err(OciError::NotInSources {
                reference: format!("{r} (blob {})", desc.digest),
                searched: self.describe(),
            }),
        }
    }
}

/// Picks the platform's entry from an index, or says which platforms there are.
fn pick_platform<'a>(
    r: &ImageRef,
    index: &'a ImageIndex,
    platform: &Platform,
) -> Result<&'a Descriptor, OciError> {
    select_manifest(&index.manifests, platform).map_err(|available| OciError::NoMatchingPlatform {
        reference: r.original().to_string(),
        wanted: platform.to_string(),
        available,
    })
}

/// Parses the manifest an index entry points at, which must be an image manifest: nested
/// indexes are not supported.
fn platform_manifest(
    r: &ImageRef,
    source: &str,
    bytes: &[u8],
    hint: Option<&str>,
) -> Result<ImageManifest, OciError> {
    match parse_manifest(bytes, hint).map_err(|p| problem(r, source, p))? {
        Manifest::Image(m) => Ok(m),
        Manifest::Index(_) => Err(OciError::UnsupportedMediaType {
            reference: r.original().to_string(),
            media_type: "nested image index".to_string(),
        }),
    }
}

fn problem(r: &ImageRef, source: &str, p: manifest::ManifestProblem) -> OciError {
    match p {
        manifest::ManifestProblem::Unsupported(media_type) => OciError::UnsupportedMediaType {
            reference: r.original().to_string(),
            media_type,
        },
        manifest::ManifestProblem::Invalid(reason) => OciError::InvalidManifest {
            reference: r.original().to_string(),
            source_name: source.to_string(),
            reason,
        },
    }
}

/// The [`ResolvedImage`] for a manifest whose bytes and config are in the store already (used by
/// the resolver when a pin is taken from `lkb.lock`).
pub fn build_resolved(
    r: &ImageRef,
    platform: &Platform,
    index_digest: Option<BlobDigest>,
    manifest: BlobRef,
    config: BlobRef,
    m: &ImageManifest,
    source: &str,
) -> Result<ResolvedImage, OciError> {
    let layers = m
        .layers
        .iter()
        .map(|l| {
            let digest = l.sha256().ok_or_else(|| OciError::InvalidManifest {
                reference: r.original().to_string(),
                source_name: source.to_string(),
                reason: format!("layer has an unsupported digest {:?}", l.digest),
            })?;
            Ok(LayerDesc {
                digest,
                size: l.size,
                media_type: l.media_type.clone(),
            })
        })
        .collect::<Result<Vec<_>, OciError>>()?;
    Ok(ResolvedImage {
        reference: r.clone(),
        platform: platform.clone(),
        index_digest,
        manifest,
        config,
        layers,
    })
}
