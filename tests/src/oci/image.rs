//! Image manifests, configs and indexes.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::{Blob, Compression, Digest, Layer, Platform, media_type};

/// Which family of media types to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flavor {
    /// `application/vnd.oci.image.*`.
    #[default]
    Oci,
    /// `application/vnd.docker.distribution.manifest.v2+json` and friends (Docker Hub style).
    Docker,
}

/// The `config` object of an image config (the runtime defaults).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    /// `User`.
    pub user: Option<String>,
    /// `Env`, each `KEY=value`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// Any other keys, copied verbatim into the `config` object.
    pub extra: Map<String, Value>,
}

impl ImageConfig {
    fn to_json(&self) -> Value {
        let mut out = Map::new();
        if let Some(user) = &self.user {
            out.insert("User".into(), json!(user));
        }
        if !self.env.is_empty() {
            out.insert("Env".into(), json!(self.env));
        }
        if let Some(entrypoint) = &self.entrypoint {
            out.insert("Entrypoint".into(), json!(entrypoint));
        }
        if let Some(cmd) = &self.cmd {
            out.insert("Cmd".into(), json!(cmd));
        }
        if let Some(dir) = &self.working_dir {
            out.insert("WorkingDir".into(), json!(dir));
        }
        if !self.labels.is_empty() {
            out.insert("Labels".into(), json!(self.labels));
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

/// Builds one single-platform [`Image`].
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    platform: Platform,
    flavor: Flavor,
    layers: Vec<Layer>,
    config: ImageConfig,
    annotations: BTreeMap<String, String>,
    created: Option<String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// A linux/amd64 OCI image with no layers.
    pub fn new() -> Self {
        Self {
            platform: Platform::linux_amd64(),
            flavor: Flavor::Oci,
            layers: Vec::new(),
            config: ImageConfig::default(),
            annotations: BTreeMap::new(),
            created: None,
        }
    }

    /// Sets the platform written to the config (and to index entries).
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Sets OCI or Docker media types.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Appends a layer (lowest first).
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Replaces the whole runtime config.
    pub fn config(mut self, config: ImageConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets `Entrypoint`.
    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.config.entrypoint = Some(args.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Sets `Cmd`.
    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.config.cmd = Some(args.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    /// Appends one `KEY=value` to `Env`.
    pub fn env(mut self, key_value: &str) -> Self {
        self.config.env.push(key_value.to_owned());
        self
    }

    /// Sets `WorkingDir`.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.config.working_dir = Some(dir.to_owned());
        self
    }

    /// Sets `User`.
    pub fn user(mut self, user: &str) -> Self {
        self.config.user = Some(user.to_owned());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.config.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a manifest annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the config's `created` timestamp (RFC 3339); omitted by default.
    pub fn created(mut self, timestamp: &str) -> Self {
        self.created = Some(timestamp.to_owned());
        self
    }

    /// Builds layers, config and manifest.
    pub fn build(&self) -> anyhow::Result<Image> {
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut diff_ids = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let built = layer.to_blob(self.flavor)?;
            layers.push(built.blob);
            diff_ids.push(built.diff_id);
        }
        let mut config = Map::new();
        if let Some(created) = &self.created {
            config.insert("created".into(), json!(created));
        }
        config.insert("architecture".into(), json!(self.platform.architecture));
        config.insert("os".into(), json!(self.platform.os));
        if let Some(variant) = &self.platform.variant {
            config.insert("variant".into(), json!(variant));
        }
        config.insert("config".into(), self.config.to_json());
        config.insert(
            "rootfs".into(),
            json!({
                "type": "layers",
                "diff_ids": diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
        let (manifest_type, config_type) = match self.flavor {
            Flavor::Oci => (media_type::OCI_MANIFEST, media_type::OCI_CONFIG),
            Flavor::Docker => (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG),
        };
        let config = Blob::json(config_type, &Value::Object(config));
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = json!(self.annotations);
        }
        Ok(Image {
            platform: self.platform.clone(),
            manifest: Blob::json(manifest_type, &manifest),
            config,
            layers,
            diff_ids,
        })
    }
}

/// A built single-platform image.
#[derive(Clone, Debug)]
pub struct Image {
    /// Platform from the config.
    pub platform: Platform,
    /// The manifest JSON.
    pub manifest: Blob,
    /// The config JSON.
    pub config: Blob,
    /// Layer blobs, lowest first.
    pub layers: Vec<Blob>,
    /// Digests of the uncompressed layers.
    pub diff_ids: Vec<Digest>,
}

impl Image {
    /// The manifest digest.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// Config and layer blobs (everything the manifest points at).
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// The manifest as JSON.
    pub fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest.data).expect("manifest was written as JSON")
    }

    /// The config as JSON.
    pub fn config_json(&self) -> Value {
        serde_json::from_slice(&self.config.data).expect("config was written as JSON")
    }
}

/// Builds an [`ImageIndex`] (OCI index or Docker manifest list).
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    flavor: Flavor,
    entries: Vec<(Image, BTreeMap<String, String>)>,
    annotations: BTreeMap<String, String>,
}

impl IndexBuilder {
    /// An empty OCI index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets OCI index or Docker manifest list.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Adds an image; its platform goes into the entry.
    pub fn image(self, image: Image) -> Self {
        self.image_with_annotations(image, &[])
    }

    /// Adds an image with entry annotations.
    pub fn image_with_annotations(mut self, image: Image, annotations: &[(&str, &str)]) -> Self {
        let annotations = annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.entries.push((image, annotations));
        self
    }

    /// Adds a BuildKit-style attestation manifest (`unknown/unknown`, in-toto layer) that refers
    /// to `subject`, as real multi-arch images on Docker Hub carry.
    pub fn attestation_for(self, subject: &Image) -> anyhow::Result<Self> {
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{ "digest": { "sha256": subject.digest().hex() } }],
            "predicate": {},
        });
        let layer = Layer::from_tar(serde_json::to_vec(&statement)?)
            .compression(Compression::None)
            .media_type("application/vnd.in-toto+json");
        let attestation = ImageBuilder::new()
            .platform(Platform::unknown())
            .layer(layer)
            .build()?;
        let digest = subject.digest().to_string();
        Ok(self.image_with_annotations(
            attestation,
            &[
                ("vnd.docker.reference.digest", &digest),
                ("vnd.docker.reference.type", "attestation-manifest"),
            ],
        ))
    }

    /// Adds a BuildKit-style SBOM attestation for `subject`: an `unknown/unknown` manifest whose
    /// one layer is an in-toto statement (`application/vnd.in-toto+json`, annotated
    /// `in-toto.io/predicate-type: https://spdx.dev/Document`) with `spdx` as its predicate,
    /// the shape LinuxKit reads SBOMs from.
    pub fn spdx_attestation_for(self, subject: &Image, spdx: &Value) -> anyhow::Result<Self> {
        const SPDX: &str = "https://spdx.dev/Document";
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SPDX,
            "subject": [{ "name": "_", "digest": { "sha256": subject.digest().hex() } }],
            "predicate": spdx,
        });
        let layer = Layer::from_tar(serde_json::to_vec(&statement)?)
            .compression(Compression::None)
            .media_type("application/vnd.in-toto+json");
        let mut attestation = ImageBuilder::new()
            .platform(Platform::unknown())
            .layer(layer)
            .build()?;
        let mut manifest = attestation.manifest_json();
        manifest["layers"][0]["annotations"] = json!({ "in-toto.io/predicate-type": SPDX });
        attestation.manifest = Blob::json(attestation.manifest.media_type.clone(), &manifest);
        let digest = subject.digest().to_string();
        Ok(self.image_with_annotations(
            attestation,
            &[
                ("vnd.docker.reference.digest", &digest),
                ("vnd.docker.reference.type", "attestation-manifest"),
            ],
        ))
    }

    /// Adds an index annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Writes the index JSON.
    pub fn build(self) -> anyhow::Result<ImageIndex> {
        if self.entries.is_empty() {
            bail!("an image index needs at least one manifest");
        }
        let index_type = match self.flavor {
            Flavor::Oci => media_type::OCI_INDEX,
            Flavor::Docker => media_type::DOCKER_MANIFEST_LIST,
        };
        let manifests: Vec<Value> = self
            .entries
            .iter()
            .map(|(image, annotations)| {
                let mut descriptor = image.manifest.descriptor();
                descriptor["platform"] = image.platform.to_json();
                if !annotations.is_empty() {
                    descriptor["annotations"] = json!(annotations);
                }
                descriptor
            })
            .collect();
        let mut index = json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": manifests,
        });
        if !self.annotations.is_empty() {
            index["annotations"] = json!(self.annotations);
        }
        Ok(ImageIndex {
            index: Blob::json(index_type, &index),
            images: self.entries.into_iter().map(|(image, _)| image).collect(),
        })
    }
}

/// A built multi-platform index and the images it lists.
#[derive(Clone, Debug)]
pub struct ImageIndex {
    /// The index JSON.
    pub index: Blob,
    /// The images, in index order.
    pub images: Vec<Image>,
}

impl ImageIndex {
    /// The index digest.
    pub fn digest(&self) -> &Digest {
        &self.index.digest
    }

    /// The image for `platform`, if listed.
    pub fn image_for(&self, platform: &Platform) -> Option<&Image> {
        self.images.iter().find(|image| &image.platform == platform)
    }

    /// The index as JSON.
    pub fn index_json(&self) -> Value {
        serde_json::from_slice(&self.index.data).expect("index was written as JSON")
    }
}

/// Either an image or an index: what can be tagged in a layout or a registry.
#[derive(Clone, Copy, Debug)]
pub enum ArtifactRef<'a> {
    /// A single-platform image.
    Image(&'a Image),
    /// A multi-platform index.
    Index(&'a ImageIndex),
}

impl<'a> ArtifactRef<'a> {
    /// The manifest or index blob that a tag points at.
    pub fn top(&self) -> &'a Blob {
        match self {
            Self::Image(image) => &image.manifest,
            Self::Index(index) => &index.index,
        }
    }

    /// The digest a tag resolves to.
    pub fn digest(&self) -> &'a Digest {
        &self.top().digest
    }

    /// The single-platform images below the top.
    pub fn images(&self) -> Vec<&'a Image> {
        match self {
            Self::Image(image) => vec![*image],
            Self::Index(index) => index.images.iter().collect(),
        }
    }
}

/// An owned image or index, e.g. as loaded from an [`super::OciLayout`].
#[derive(Clone, Debug)]
pub enum Artifact {
    /// A single-platform image.
    Image(Image),
    /// A multi-platform index.
    Index(ImageIndex),
}

impl Artifact {
    /// Borrows it as an [`ArtifactRef`].
    pub fn as_artifact_ref(&self) -> ArtifactRef<'_> {
        match self {
            Self::Image(image) => ArtifactRef::Image(image),
            Self::Index(index) => ArtifactRef::Index(index),
        }
    }

    /// The digest a tag resolves to.
    pub fn digest(&self) -> &Digest {
        match self {
            Self::Image(image) => image.digest(),
            Self::Index(index) => index.digest(),
        }
    }
}

impl<'a> From<&'a Artifact> for ArtifactRef<'a> {
    fn from(artifact: &'a Artifact) -> Self {
        artifact.as_artifact_ref()
    }
}

impl<'a> From<&'a Image> for ArtifactRef<'a> {
    fn from(image: &'a Image) -> Self {
        Self::Image(image)
    }
}

impl<'a> From<&'a ImageIndex> for ArtifactRef<'a> {
    fn from(index: &'a ImageIndex) -> Self {
        Self::Index(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::MOBY_CONFIG_LABEL;

    fn sample(platform: Platform) -> Image {
        ImageBuilder::new()
            .platform(platform)
            .layer(Layer::new().dir("etc").file("etc/hello", "hi"))
            .layer(
                Layer::new()
                    .compression(Compression::Zstd)
                    .whiteout("etc/hello"),
            )
            .entrypoint(&["/bin/sh"])
            .cmd(&["-c", "true"])
            .env("PATH=/bin")
            .working_dir("/")
            .label(MOBY_CONFIG_LABEL, r#"{"net":"host"}"#)
            .build()
            .unwrap()
    }

    #[test]
    fn manifest_points_at_config_and_layers() {
        let image = sample(Platform::linux_amd64());
        let manifest = image.manifest_json();
        assert_eq!(manifest["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(
            manifest["config"]["digest"],
            image.config.digest.to_string()
        );
        assert_eq!(manifest["config"]["size"], image.config.size());
        assert_eq!(
            manifest["layers"][1]["mediaType"],
            media_type::OCI_LAYER_ZSTD
        );
        let config = image.config_json();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["config"]["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(
            config["config"]["Labels"][MOBY_CONFIG_LABEL],
            r#"{"net":"host"}"#
        );
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            image.diff_ids[0].to_string()
        );
        assert_eq!(image.digest(), &Digest::of(&image.manifest.data));
    }

    #[test]
    fn builds_are_deterministic() {
        let a = sample(Platform::linux_amd64());
        let b = sample(Platform::linux_amd64());
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.layers, b.layers);
    }

    #[test]
    fn index_lists_platforms() {
        let amd = sample(Platform::linux_amd64());
        let arm = sample(Platform::linux_arm64());
        let index = IndexBuilder::new()
            .image(amd.clone())
            .image(arm)
            .attestation_for(&amd)
            .unwrap()
            .build()
            .unwrap();
        let json = index.index_json();
        assert_eq!(json["manifests"].as_array().unwrap().len(), 3);
        assert_eq!(json["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(json["manifests"][2]["platform"]["os"], "unknown");
        assert_eq!(
            index.image_for(&Platform::linux_amd64()).unwrap().digest(),
            amd.digest()
        );
        let docker = IndexBuilder::new()
            .flavor(Flavor::Docker)
            .image(amd)
            .build()
            .unwrap();
        assert_eq!(docker.index.media_type, media_type::DOCKER_MANIFEST_LIST);
    }
}
