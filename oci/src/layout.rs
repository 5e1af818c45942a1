//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/…`) as an image source, e.g.
//! LinuxKit's `~/.linuxkit/cache` or the output of `linuxkit cache export --format oci`.

use std::path::{Path, PathBuf};

use lkb_store::{BlobDigest, BlobRef, Store};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use super::digest::{hex_of, sha256_digest};
use super::manifest::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, MAX_MANIFEST_BYTES,
    Manifest, parse_manifest,
};
use super::sink::{Chunk, has_blob, join_sink, put_verified_bytes, spawn_sink};
use super::{
    ImageRef, LayerDesc, OciError, Platform, ResolvedImage, build_resolved, pick_platform,
};

const READ_CHUNK: usize = 256 * 1024;

/// An opened OCI image layout directory. `index.json` is read once, at [`OciLayout::open`].
#[derive(Clone, Debug)]
pub struct OciLayout {
    root: PathBuf,
    index: ImageIndex,
}

impl OciLayout {
    /// Opens a layout: checks `oci-layout` and reads `index.json`.
    pub fn open(dir: impl AsRef<Path>) -> Result<OciLayout, OciError> {
        let root = dir.as_ref().to_path_buf();
        let bad = |detail: String| OciError::Layout {
            path: root.clone(),
            detail,
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            image_layout_version: String,
        }
        let marker = fs_err::read(root.join("oci-layout"))
            .map_err(|e| bad(format!("not an OCI image layout ({e})")))?;
        let marker: Marker = serde_json::from_slice(&marker)
            .map_err(|e| bad(format!("oci-layout is not valid: {e}")))?;
        if !marker.image_layout_version.starts_with("1.") {
            return Err(bad(format!(
                "unsupported imageLayoutVersion {:?}",
                marker.image_layout_version
            )));
        }
        let index = fs_err::read(root.join("index.json")).map_err(|e| bad(e.to_string()))?;
        let index: ImageIndex = serde_json::from_slice(&index)
            .map_err(|e| bad(format!("index.json is not a valid image index: {e}")))?;
        Ok(OciLayout { root, index })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root descriptors of `index.json`.
    pub fn entries(&self) -> &[Descriptor] {
        &self.index.manifests
    }

    /// Where a blob lives in this layout.
    pub fn blob_path(&self, d: &BlobDigest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex_of(d))
    }

    /// Whether the layout has a file for this blob (its content is verified when copied).
    pub fn has_blob(&self, d: &BlobDigest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Finds the root descriptor for a reference.
    ///
    /// A reference with a digest matches a root descriptor with that digest (or, failing that,
    /// any blob of the layout with that digest, e.g. one platform's manifest). Otherwise the
    /// `org.opencontainers.image.ref.name` / `io.containerd.image.name` annotations are compared
    /// with the reference as written and in canonical form; an untagged reference finally also
    /// matches `:latest`.
    pub fn find(&self, r: &ImageRef) -> Option<Descriptor> {
        if let Some(want) = r.digest() {
            if let Some(d) = self.entries().iter().find(|d| d.sha256() == Some(*want)) {
                return Some(d.clone());
            }
            let len = fs_err::metadata(self.blob_path(want)).ok()?.len();
            return Some(Descriptor {
                media_type: String::new(),
                digest: want.to_string(),
                size: len,
                platform: None,
                annotations: Default::default(),
                urls: Vec::new(),
            });
        }
        let matches_ref = |d: &Descriptor, r: &ImageRef| {
            [ANNOTATION_REF_NAME, ANNOTATION_CONTAINERD_NAME]
                .iter()
                .filter_map(|k| d.annotations.get(*k))
                .any(|name| {
                    name == r.original()
                        || *name == r.canonical()
                        || ImageRef::parse(name).is_ok_and(|n| n == *r)
                })
        };
        if let Some(d) = self.entries().iter().find(|d| matches_ref(d, r)) {
            return Some(d.clone());
        }
        if r.tag().is_none() {
            let latest = r.with_tag("latest").ok()?;
            return self
                .entries()
                .iter()
                .find(|d| matches_ref(d, &latest))
                .cloned();
        }
        None
    }

    /// Resolves `r` from this layout, copying (and verifying) manifest, index and config into
    /// the store.
    pub async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError> {
        let source = format!("OCI layout {}", self.root.display());
        let top = self.find(r).ok_or_else(|| OciError::NotInSources {
            reference: r.original().to_string(),
            searched: source.clone(),
        })?;
        let top_digest = self.descriptor_digest(r, &top, &source)?;
        let bytes = self
            .read_small(&top_digest, top.size, &format!("manifest of {r}"))
            .await?;
        let hint = Some(top.media_type.as_str()).filter(|m| !m.is_empty());
        let parsed = parse_manifest(&bytes, hint).map_err(|p| super::problem(r, &source, p))?;
        let (index_digest, manifest_bytes, manifest_digest, manifest) = match parsed {
            Manifest::Image(m) => (None, bytes, top_digest, m),
            Manifest::Index(idx) => {
                let chosen = pick_platform(r, &idx, platform)?;
                let d = self.descriptor_digest(r, chosen, &source)?;
                let mbytes = self
                    .read_small(&d, chosen.size, &format!("manifest of {r} for {platform}"))
                    .await?;
                let hint = Some(chosen.media_type.as_str()).filter(|m| !m.is_empty());
                let m = super::platform_manifest(r, &source, &mbytes, hint)?;
                put_verified_bytes(store, bytes, top_digest).await?;
                (Some(top_digest), mbytes, d, m)
            }
        };
        let manifest_ref = put_verified_bytes(store, manifest_bytes, manifest_digest).await?;
        let config_digest = self.descriptor_digest(r, &manifest.config, &source)?;
        let config = self
            .copy_blob(
                config_digest,
                manifest.config.size,
                format!("config of {r} in {source}"),
                store,
                &|_| {},
            )
            .await?;
        build_resolved(
            r,
            platform,
            index_digest,
            manifest_ref,
            config,
            &manifest,
            &source,
        )
    }

    /// Copies one blob from the layout into the store, verifying size and sha256.
    pub async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        self.copy_blob(
            desc.digest,
            desc.size,
            format!("layer of {r} in OCI layout {}", self.root.display()),
            store,
            progress,
        )
        .await
    }

    fn descriptor_digest(
        &self,
        r: &ImageRef,
        d: &Descriptor,
        source: &str,
    ) -> Result<BlobDigest, OciError> {
        d.sha256().ok_or_else(|| OciError::InvalidManifest {
            reference: r.original().to_string(),
            source_name: source.to_string(),
            reason: format!("unsupported digest {:?}", d.digest),
        })
    }

    fn missing(&self, d: &BlobDigest, what: &str, e: std::io::Error) -> OciError {
        if e.kind() == std::io::ErrorKind::NotFound {
            OciError::Layout {
                path: self.root.clone(),
                detail: format!("blob {d} ({what}) is missing"),
            }
        } else {
            OciError::Io {
                path: self.blob_path(d),
                source: e,
            }
        }
    }

    /// Reads and verifies a manifest-sized blob.
    async fn read_small(&self, d: &BlobDigest, size: u64, what: &str) -> Result<Vec<u8>, OciError> {
        if size > MAX_MANIFEST_BYTES {
            return Err(OciError::TooLarge {
                what: format!("{what} ({d}) in OCI layout {}", self.root.display()),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let path = self.blob_path(d);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| self.missing(d, what, e))?;
        if meta.len() != size {
            return Err(OciError::SizeMismatch {
                what: format!("{what} in OCI layout {}", self.root.display()),
                digest: *d,
                expected: size,
                actual: meta.len(),
            });
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| self.missing(d, what, e))?;
        let actual = sha256_digest(&bytes);
        if actual != *d {
            return Err(OciError::DigestMismatch {
                what: format!("{what} in OCI layout {}", self.root.display()),
                expected: *d,
                actual,
            });
        }
        Ok(bytes)
    }

    async fn copy_blob(
        &self,
        digest: BlobDigest,
        size: u64,
        what: String,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        let blob = BlobRef { digest, size };
        if has_blob(store, blob).await {
            progress(size);
            return Ok(blob);
        }
        let path = self.blob_path(&digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| self.missing(&digest, &what, e))?;
        let (tx, task) = spawn_sink::<Vec<u8>>(store, digest, size, what);
        let mut copied = 0u64;
        let outcome: Result<(), OciError> = loop {
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => {
                    let _ = tx.send(Chunk::End).await;
                    break Ok(());
                }
                Ok(n) => {
                    buf.truncate(n);
                    copied += n as u64;
                    if tx.send(Chunk::Data(buf)).await.is_err() {
                        break Ok(());
                    }
                    progress(copied);
                }
                Err(e) => {
                    break Err(OciError::Io {
                        path: path.clone(),
                        source: e,
                    });
                }
            }
        };
        drop(tx);
        let written = join_sink(task).await;
        outcome?;
        written
    }
}
