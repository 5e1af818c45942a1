//! Image indexes beyond the one platform a build resolves: every image manifest of an index
//! (for `format: oci` volumes, reference §2.5) and the SPDX attestation of the resolved
//! platform's manifest (for `sbom.spdx.json`, reference §2.7).
//!
//! This runs after [`Resolver::resolve_all`]: the index of every resolved image is already in
//! the store (the resolver put it there). Manifests and their configs enter the store here,
//! verified by digest, exactly as the resolver stores the chosen platform's manifest; layers
//! stay descriptors and are fetched by `fetch` actions in the graph. Nothing here touches the
//! lock file: everything below a pinned index is addressed by digest.
//!
//! A manifest (and config) already in the store is not fetched again, so a rebuild stays off
//! the network.

use std::collections::BTreeMap;
use std::sync::Arc;

use lkb_store::{BlobDigest, BlobRef};

use crate::oci::{
    DOCKER_MANIFEST, Descriptor, ImageIndex, ImageManifest, ImageRef, ImageSource as _, LayerDesc,
    Manifest, OCI_MANIFEST, OciError, parse_manifest, sha256_digest,
};
use crate::resolve::{ImageInfo, ResolveError, Resolver};

/// Annotation naming what an attestation manifest attests (the platform manifest's digest).
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Layer annotation with an in-toto statement's predicate type.
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The predicate type of an SPDX document.
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";
/// Media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// What lowering needs from one image's index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexRequest {
    /// Every image manifest of the index with its config and layer descriptors.
    pub manifests: bool,
    /// The SPDX in-toto layers attesting the resolved platform's manifest.
    pub sbom: bool,
}

impl IndexRequest {
    /// Asks for everything either request asks for.
    pub fn merge(&mut self, other: IndexRequest) {
        self.manifests |= other.manifests;
        self.sbom |= other.sbom;
    }
}

/// One image manifest listed in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedManifest {
    /// The index entry (platform, annotations, media type).
    pub descriptor: Descriptor,
    /// The manifest blob, in the store.
    pub manifest: LayerDesc,
    /// The config blob, in the store.
    pub config: LayerDesc,
    /// Layer descriptors, in manifest order (compressed blobs; not fetched here).
    pub layers: Vec<LayerDesc>,
}

impl IndexedManifest {
    /// Every blob of this image in the order LinuxKit writes them into an OCI layout: config,
    /// layers, manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &LayerDesc> {
        std::iter::once(&self.config)
            .chain(&self.layers)
            .chain(std::iter::once(&self.manifest))
    }
}

/// What an image's index holds beyond the resolved platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// The index blob itself, in the store.
    pub index: LayerDesc,
    /// Image manifests in index order (nested indexes and other artifacts are left out);
    /// empty unless [`IndexRequest::manifests`] was asked for.
    pub manifests: Vec<IndexedManifest>,
    /// SPDX in-toto layers of the attestation manifest for the resolved platform; empty unless
    /// [`IndexRequest::sbom`] was asked for or when the index carries no such attestation.
    pub sbom_layers: Vec<LayerDesc>,
}

impl Resolver {
    /// Reads the index of every requested image and fetches the manifests lowering needs.
    ///
    /// Images that were not resolved from an index (a single-platform manifest, or a ref
    /// pinned to a manifest digest) have no entry in the result.
    pub async fn resolve_indexes(
        &self,
        images: &BTreeMap<String, Arc<ImageInfo>>,
        requests: &BTreeMap<String, IndexRequest>,
    ) -> Result<BTreeMap<String, Arc<IndexInfo>>, ResolveError> {
        let jobs = requests.iter().filter_map(|(name, request)| {
            let info = images.get(name)?;
            let index = info.resolved.index_digest?;
            Some(async move {
                let found = self.index_info(name, info, index, *request).await?;
                Ok::<_, ResolveError>((name.clone(), Arc::new(found)))
            })
        });
        futures::future::join_all(jobs).await.into_iter().collect()
    }

    async fn index_info(
        &self,
        name: &str,
        info: &ImageInfo,
        digest: BlobDigest,
        request: IndexRequest,
    ) -> Result<IndexInfo, ResolveError> {
        let r = &info.resolved.reference;
        let (bytes, media_type) = self.stored_index(r, digest).await?;
        let index = match parse_manifest(&bytes, None) {
            Ok(Manifest::Index(index)) => index,
            Ok(Manifest::Image(_)) => return Err(bad_stored(r, digest, "it is not an index")),
            Err(p) => return Err(bad_stored(r, digest, &format!("{p:?}"))),
        };
        let mut found = IndexInfo {
            index: LayerDesc {
                digest,
                size: bytes.len() as u64,
                media_type,
            },
            manifests: Vec::new(),
            sbom_layers: Vec::new(),
        };
        if request.manifests {
            let jobs = index
                .manifests
                .iter()
                .filter(|d| d.media_type == OCI_MANIFEST || d.media_type == DOCKER_MANIFEST)
                .map(|d| self.indexed_manifest(r, d));
            for result in futures::future::join_all(jobs).await {
                found.manifests.push(result?.0);
            }
        }
        if request.sbom {
            found.sbom_layers = self.sbom_layers(name, r, info, &index).await?;
        }
        Ok(found)
    }

    /// The index bytes (verified) and their media type.
    async fn stored_index(
        &self,
        r: &ImageRef,
        digest: BlobDigest,
    ) -> Result<(Vec<u8>, String), ResolveError> {
        let read = |store: &lkb_store::Store| -> Option<Vec<u8>> {
            let bytes = store.read_blob(&digest).ok()?;
            (sha256_digest(&bytes) == digest).then_some(bytes)
        };
        let bytes = match read(&self.store) {
            Some(bytes) => bytes,
            None => {
                // Resolving by the index digest stores the index again.
                self.fetch_manifest(r, digest).await?;
                read(&self.store).ok_or_else(|| bad_stored(r, digest, "it vanished"))?
            }
        };
        let media_type = serde_json::from_slice::<ImageIndex>(&bytes)
            .ok()
            .and_then(|i| i.media_type)
            .unwrap_or_default();
        Ok((bytes, media_type))
    }

    /// The SPDX layers of the attestation for the resolved platform manifest (LinuxKit's
    /// `ImageSource.SBoMs`): the attestation manifest must name that manifest in
    /// `vnd.docker.reference.digest`; only its in-toto layers annotated with the SPDX
    /// predicate type count.
    async fn sbom_layers(
        &self,
        name: &str,
        r: &ImageRef,
        info: &ImageInfo,
        index: &ImageIndex,
    ) -> Result<Vec<LayerDesc>, ResolveError> {
        let subject = info.resolved.manifest.digest.to_string();
        let attestations: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| {
                d.is_attestation()
                    && d.annotations.get(ANNOTATION_REFERENCE_DIGEST) == Some(&subject)
            })
            .collect();
        let attestation = match attestations.as_slice() {
            [] => return Ok(Vec::new()),
            [one] => *one,
            _ => {
                return Err(OciError::InvalidManifest {
                    reference: name.to_string(),
                    source_name: "its image index".into(),
                    reason: format!(
                        "{} attestation manifests refer to {subject}; LinuxKit accepts one",
                        attestations.len()
                    ),
                }
                .into());
            }
        };
        let (_, manifest) = self.indexed_manifest(r, attestation).await?;
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            let spdx = layer
                .annotations
                .get(ANNOTATION_PREDICATE_TYPE)
                .map(String::as_str)
                == Some(SPDX_PREDICATE_TYPE);
            if !spdx || layer.media_type != IN_TOTO_MEDIA_TYPE {
                continue;
            }
            layers.push(layer_desc(r, layer)?);
        }
        Ok(layers)
    }

    /// One image manifest of the index, from the store or fetched (with its config).
    async fn indexed_manifest(
        &self,
        r: &ImageRef,
        d: &Descriptor,
    ) -> Result<(IndexedManifest, ImageManifest), ResolveError> {
        let want = layer_desc(r, d)?;
        let manifest = match self.stored_manifest(r, &want)? {
            Some(m) => m,
            None => {
                self.fetch_manifest(r, want.digest).await?;
                self.stored_manifest(r, &want)?.ok_or_else(|| {
                    bad_stored(r, want.digest, "its config did not reach the store")
                })?
            }
        };
        let found = IndexedManifest {
            descriptor: d.clone(),
            manifest: want,
            config: layer_desc(r, &manifest.config)?,
            layers: manifest
                .layers
                .iter()
                .map(|l| layer_desc(r, l))
                .collect::<Result<_, _>>()?,
        };
        Ok((found, manifest))
    }

    /// The parsed manifest if it and its config are both in the store.
    fn stored_manifest(
        &self,
        r: &ImageRef,
        want: &LayerDesc,
    ) -> Result<Option<ImageManifest>, ResolveError> {
        let blob = BlobRef {
            digest: want.digest,
            size: want.size,
        };
        if !self.store.has_blob(&blob) {
            return Ok(None);
        }
        let bytes = self.store.read_blob(&want.digest)?;
        if bytes.len() as u64 != want.size || sha256_digest(&bytes) != want.digest {
            return Ok(None);
        }
        let hint = Some(want.media_type.as_str()).filter(|m| !m.is_empty());
        let manifest = match parse_manifest(&bytes, hint) {
            Ok(Manifest::Image(m)) => m,
            Ok(Manifest::Index(_)) => {
                return Err(bad_stored(r, want.digest, "it is a nested index"));
            }
            Err(p) => return Err(bad_stored(r, want.digest, &format!("{p:?}"))),
        };
        let config = layer_desc(r, &manifest.config)?;
        let has_config = self.store.has_blob(&BlobRef {
            digest: config.digest,
            size: config.size,
        });
        Ok(has_config.then_some(manifest))
    }

    /// Puts the manifest (or index) `digest` of `r`'s repository and, for an image manifest,
    /// its config into the store, verified, from the first source that has it.
    async fn fetch_manifest(&self, r: &ImageRef, digest: BlobDigest) -> Result<(), ResolveError> {
        match self
            .sources
            .resolve(&r.with_digest(digest), &self.platform, &self.store)
            .await
        {
            Ok(_) => Ok(()),
            Err(OciError::NotInSources { .. }) if self.offline => Err(ResolveError::Offline {
                reference: r.with_digest(digest).canonical(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A descriptor as a fetchable blob; only sha256 digests are supported.
fn layer_desc(r: &ImageRef, d: &Descriptor) -> Result<LayerDesc, ResolveError> {
    let digest = d.sha256().ok_or_else(|| OciError::InvalidManifest {
        reference: r.original().to_string(),
        source_name: "its image index".into(),
        reason: format!("unsupported digest {:?}", d.digest),
    })?;
    Ok(LayerDesc {
        digest,
        size: d.size,
        media_type: d.media_type.clone(),
    })
}

fn bad_stored(r: &ImageRef, digest: BlobDigest, reason: &str) -> ResolveError {
    ResolveError::BadStoredManifest {
        reference: r.canonical(),
        digest,
        reason: reason.to_string(),
    }
}
