//! The subset of the OCI image spec (and Docker's v2 schema 2) that acquisition needs:
//! descriptors, image manifests, image indexes / manifest lists.

use std::collections::BTreeMap;

use lkb_store::BlobDigest;
use serde::{Deserialize, Serialize};

use super::digest::parse_sha256;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header for manifest requests: every manifest and index type we understand.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes larger than this are refused (the CNCF distribution limit is 4 MiB).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Annotation holding an image's reference name in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and `linuxkit cache import`'s) equivalent.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An OCI content descriptor. The digest is kept as text so that a foreign algorithm produces
/// a precise error where it is used instead of a generic parse failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// The digest, if it is a well-formed sha256 one.
    pub fn sha256(&self) -> Option<BlobDigest> {
        parse_sha256(&self.digest)
    }

    /// BuildKit attestation manifests ride along in indexes; they are never a platform image.
    pub fn is_attestation(&self) -> bool {
        self.annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest")
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// The `platform` of an index entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker); also the shape of an OCI layout's `index.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // short-lived; boxing would only add noise at use sites
pub enum Manifest {
    Index(ImageIndex),
    Image(ImageManifest),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Why a manifest could not be used.
#[derive(Debug)]
pub enum ManifestProblem {
    Unsupported(String),
    Invalid(String),
}

/// Parses manifest bytes. The kind comes from the document's `mediaType`, else the HTTP
/// `Content-Type` (or descriptor media type) given as `hint`, else the document's shape.
pub fn parse_manifest(bytes: &[u8], hint: Option<&str>) -> Result<Manifest, ManifestProblem> {
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| ManifestProblem::Invalid(format!("not a JSON object: {e}")))?;
    let hint = hint
        .map(|h| h.split(';').next().unwrap_or(h).trim())
        .filter(|h| !h.is_empty() && *h != "application/json" && *h != "text/plain");
    let kind = probe
        .media_type
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(hint);
    if probe.schema_version == Some(1)
        || matches!(kind, Some(DOCKER_SCHEMA1) | Some(DOCKER_SCHEMA1_SIGNED))
    {
        return Err(ManifestProblem::Unsupported(
            kind.unwrap_or(DOCKER_SCHEMA1).to_string() + " (Docker schema 1)",
        ));
    }
    let is_index = match kind {
        Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(other) if probe.manifests.is_none() && probe.config.is_none() => {
            return Err(ManifestProblem::Unsupported(other.to_string()));
        }
        _ => probe.manifests.is_some() && probe.config.is_none(),
    };
    if probe.schema_version != Some(2) {
        return Err(ManifestProblem::Invalid(format!(
            "schemaVersion is {:?}, expected 2",
            probe.schema_version
        )));
    }
    if is_index {
        serde_json::from_slice(bytes)
            .map(Manifest::Index)
            .map_err(|e| ManifestProblem::Invalid(format!("bad image index: {e}")))
    } else {
        serde_json::from_slice(bytes)
            .map(Manifest::Image)
            .map_err(|e| ManifestProblem::Invalid(format!("bad image manifest: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn detects_kinds() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        assert!(
            matches!(parse_manifest(idx.as_bytes(), None), Ok(Manifest::Index(i)) if i.manifests.len() == 1)
        );
        // No mediaType in the body: use the hint, then the shape.
        let idx2 = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(idx2.as_bytes(), None),
            Ok(Manifest::Index(_))
        ));
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":2}},"layers":[{{"mediaType":"x","digest":"{D}","size":3}}]}}"#
        );
        match parse_manifest(
            m.as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        ) {
            Ok(Manifest::Image(im)) => {
                assert_eq!(im.layers.len(), 1);
                assert!(im.config.sha256().is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        let s1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(s1.as_bytes(), None),
            Err(ManifestProblem::Unsupported(_))
        ));
        assert!(matches!(
            parse_manifest(b"nope", None),
            Err(ManifestProblem::Invalid(_))
        ));
        let art = r#"{"schemaVersion":2,"mediaType":"application/vnd.foo"}"#;
        assert!(matches!(
            parse_manifest(art.as_bytes(), None),
            Err(ManifestProblem::Unsupported(_))
        ));
    }
}
