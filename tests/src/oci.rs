//! OCI image fixtures built in code.
//!
//! Data flow: [`Entry`] values go into a [`Layer`] (a tar stream, optionally compressed), layers
//! and an [`ImageConfig`] go into an [`ImageBuilder`] which produces an [`Image`] (manifest,
//! config and layer [`Blob`]s with their sha256 [`Digest`]s). Several images form an
//! [`ImageIndex`] through [`IndexBuilder`]. Images and indexes are written to an
//! [`OciLayout`] directory or pushed to a registry ([`crate::registry`]).
//!
//! Every byte is deterministic: fixed mtimes (0 unless set), entries in insertion order, empty
//! owner names, gzip header mtime 0, and JSON with a fixed key order.

mod image;
mod layer;
mod layout;

use std::fmt;
use std::str::FromStr;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub use self::image::{
    Artifact, ArtifactRef, Flavor, Image, ImageBuilder, ImageConfig, ImageIndex, IndexBuilder,
};
pub use self::layer::{Compression, Entry, EntryKind, Layer, LayerBlob, TarFormat};
pub use self::layout::{LayoutEntry, OciLayout};

/// OCI and Docker media types used by the fixtures.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI layer, uncompressed tar.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI layer, zstd.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker layer, uncompressed tar.
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker layer, gzip.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker layer, zstd (as written by `docker buildx --compression zstd`).
    pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

    /// True for a manifest list or OCI index.
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    /// True for a single-platform image manifest.
    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }
}

/// Annotation key naming a manifest inside an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Label that LinuxKit images use to carry their default runtime config.
pub const MOBY_CONFIG_LABEL: &str = "org.mobyproject.config";

/// A sha256 content digest, displayed as `sha256:<64 hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Wraps an already computed 64-character lowercase hex string.
    pub fn from_hex(hex: &str) -> anyhow::Result<Self> {
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            bail!("not a sha256 hex digest: {hex:?}");
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }

    /// The 64 hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let hex = s
            .strip_prefix("sha256:")
            .with_context(|| format!("digest {s:?} does not start with sha256:"))?;
        Self::from_hex(hex)
    }
}

/// A content-addressed blob: its media type, its bytes and their digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type used in descriptors that point at this blob.
    pub media_type: String,
    /// sha256 of `data`.
    pub digest: Digest,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Blob {
    /// Hashes `data` and wraps it.
    pub fn new(media_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            media_type: media_type.into(),
            digest: Digest::of(&data),
            data,
        }
    }

    /// Serialises `value` as compact JSON and wraps it.
    pub fn json(media_type: impl Into<String>, value: &Value) -> Self {
        let data = serde_json::to_vec(value).expect("serde_json::Value always serialises");
        Self::new(media_type, data)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The bytes decompressed according to the media type (`+gzip`/`.gzip`, `+zstd`/`.zstd`;
    /// anything else is returned as is).
    pub fn uncompressed(&self) -> anyhow::Result<Vec<u8>> {
        if self.media_type.ends_with("gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(self.data.as_slice()),
                &mut out,
            )?;
            Ok(out)
        } else if self.media_type.ends_with("zstd") {
            Ok(zstd::decode_all(self.data.as_slice())?)
        } else {
            Ok(self.data.clone())
        }
    }

    /// An OCI descriptor `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size(),
        })
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.size())
            .finish()
    }
}

/// An OCI platform (`os`, `architecture`, optional `variant`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// GOARCH spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8` for arm64.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", None)
    }

    /// `linux/arm64/v8`.
    pub fn linux_arm64() -> Self {
        Self::new("linux", "arm64", Some("v8"))
    }

    /// `unknown/unknown`, the platform BuildKit gives attestation manifests.
    pub fn unknown() -> Self {
        Self::new("unknown", "unknown", None)
    }

    /// Any platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The `platform` object of an index entry.
    pub fn to_json(&self) -> Value {
        let mut value = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            value["variant"] = json!(variant);
        }
        value
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_matches_known_value() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let parsed: Digest = d.to_string().parse().unwrap();
        assert_eq!(parsed, d);
        assert!("sha512:00".parse::<Digest>().is_err());
        assert!("sha256:ABC".parse::<Digest>().is_err());
    }

    #[test]
    fn platform_json() {
        assert_eq!(
            Platform::linux_arm64().to_json(),
            json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
        );
        assert_eq!(Platform::linux_amd64().to_string(), "linux/amd64");
    }
}
