//! OCI image layout directories: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use super::{
    Artifact, ArtifactRef, Blob, Digest, Image, ImageIndex, Platform, REF_NAME_ANNOTATION,
    media_type,
};

/// One entry of a layout's `index.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutEntry {
    /// Media type of the manifest or index.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The `org.opencontainers.image.ref.name` annotation.
    pub ref_name: Option<String>,
}

impl LayoutEntry {
    fn to_json(&self) -> Value {
        let mut value = json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size,
        });
        if let Some(name) = &self.ref_name {
            value["annotations"] = json!({ REF_NAME_ANNOTATION: name });
        }
        value
    }

    fn from_json(value: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            media_type: str_field(value, "mediaType")?.to_owned(),
            digest: str_field(value, "digest")?.parse()?,
            size: value["size"].as_u64().context("descriptor without size")?,
            ref_name: value["annotations"][REF_NAME_ANNOTATION]
                .as_str()
                .map(str::to_owned),
        })
    }
}

/// An OCI image layout directory. Entries of `index.json` keep insertion order; adding a ref
/// name that exists replaces that entry in place.
#[derive(Debug)]
pub struct OciLayout {
    root: PathBuf,
    entries: Vec<LayoutEntry>,
}

impl OciLayout {
    /// Creates (or empties the index of) a layout at `root`.
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        fs_err::create_dir_all(root.join("blobs/sha256"))?;
        fs_err::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let layout = Self {
            root: root.to_owned(),
            entries: Vec::new(),
        };
        layout.write_index()?;
        Ok(layout)
    }

    /// Opens an existing layout.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let marker: Value = serde_json::from_slice(&fs_err::read(root.join("oci-layout"))?)?;
        ensure!(
            marker["imageLayoutVersion"] == "1.0.0",
            "{}: unsupported oci-layout {marker}",
            root.display()
        );
        let index: Value = serde_json::from_slice(&fs_err::read(root.join("index.json"))?)?;
        let entries = index["manifests"]
            .as_array()
            .context("index.json without manifests")?
            .iter()
            .map(LayoutEntry::from_json)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            root: root.to_owned(),
            entries,
        })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `index.json` entries.
    pub fn entries(&self) -> &[LayoutEntry] {
        &self.entries
    }

    /// The entry named `ref_name`.
    pub fn entry(&self, ref_name: &str) -> Option<&LayoutEntry> {
        self.entries
            .iter()
            .find(|e| e.ref_name.as_deref() == Some(ref_name))
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Writes a blob unless a file of the right size is already there.
    pub fn write_blob(&self, blob: &Blob) -> anyhow::Result<PathBuf> {
        let path = self.blob_path(&blob.digest);
        if fs_err::metadata(&path).is_ok_and(|m| m.len() == blob.size()) {
            return Ok(path);
        }
        let tmp = path.with_extension("tmp");
        fs_err::write(&tmp, &blob.data)?;
        fs_err::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Reads a blob and checks its digest.
    pub fn read_blob(&self, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        let data = fs_err::read(self.blob_path(digest))?;
        let actual = Digest::of(&data);
        ensure!(&actual == digest, "blob {digest} has digest {actual}");
        Ok(data)
    }

    /// Writes all blobs of `artifact` and names it `ref_name` in `index.json`.
    pub fn add<'a>(
        &mut self,
        ref_name: &str,
        artifact: impl Into<ArtifactRef<'a>>,
    ) -> anyhow::Result<Digest> {
        let artifact = artifact.into();
        for image in artifact.images() {
            for blob in image.blobs() {
                self.write_blob(blob)?;
            }
            self.write_blob(&image.manifest)?;
        }
        let top = artifact.top();
        self.write_blob(top)?;
        let entry = LayoutEntry {
            media_type: top.media_type.clone(),
            digest: top.digest.clone(),
            size: top.size(),
            ref_name: Some(ref_name.to_owned()),
        };
        match self
            .entries
            .iter_mut()
            .find(|e| e.ref_name.as_deref() == Some(ref_name))
        {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
        self.write_index()?;
        Ok(top.digest.clone())
    }

    /// Loads the image or index named `ref_name`, checking every blob's digest and size.
    pub fn load(&self, ref_name: &str) -> anyhow::Result<Artifact> {
        let entry = self
            .entry(ref_name)
            .with_context(|| format!("{}: no ref {ref_name:?}", self.root.display()))?;
        self.load_entry(entry)
    }

    /// Loads the artifact an `index.json` entry points at.
    pub fn load_entry(&self, entry: &LayoutEntry) -> anyhow::Result<Artifact> {
        let top = self.load_blob(&entry.media_type, &entry.digest, entry.size)?;
        if media_type::is_index(&entry.media_type) {
            let json: Value = serde_json::from_slice(&top.data)?;
            let mut images = Vec::new();
            for child in json["manifests"]
                .as_array()
                .context("index without manifests")?
            {
                let child_entry = LayoutEntry::from_json(child)?;
                ensure!(
                    media_type::is_manifest(&child_entry.media_type),
                    "nested index {} is not supported",
                    child_entry.digest
                );
                let platform = child.get("platform").map(platform_from_json).transpose()?;
                images.push(self.load_image(&child_entry, platform)?);
            }
            Ok(Artifact::Index(ImageIndex { index: top, images }))
        } else if media_type::is_manifest(&entry.media_type) {
            Ok(Artifact::Image(self.load_image(entry, None)?))
        } else {
            bail!(
                "{} has unexpected media type {}",
                entry.digest,
                entry.media_type
            )
        }
    }

    /// Loads every named entry, checking all blobs.
    pub fn verify(&self) -> anyhow::Result<()> {
        for entry in &self.entries {
            self.load_entry(entry)
                .with_context(|| format!("verifying {:?}", entry.ref_name))?;
        }
        Ok(())
    }

    fn load_image(&self, entry: &LayoutEntry, platform: Option<Platform>) -> anyhow::Result<Image> {
        let manifest = self.load_blob(&entry.media_type, &entry.digest, entry.size)?;
        let json: Value = serde_json::from_slice(&manifest.data)?;
        let config_entry = LayoutEntry::from_json(&json["config"])?;
        let config = self.load_blob(
            &config_entry.media_type,
            &config_entry.digest,
            config_entry.size,
        )?;
        let config_json: Value = serde_json::from_slice(&config.data)?;
        let mut layers = Vec::new();
        for layer in json["layers"]
            .as_array()
            .context("manifest without layers")?
        {
            let layer = LayoutEntry::from_json(layer)?;
            layers.push(self.load_blob(&layer.media_type, &layer.digest, layer.size)?);
        }
        let diff_ids = config_json["rootfs"]["diff_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .map(|id| id.as_str().context("diff_id not a string")?.parse())
                    .collect::<anyhow::Result<Vec<Digest>>>()
            })
            .transpose()?
            .unwrap_or_default();
        let platform = match platform {
            Some(platform) => platform,
            None => platform_from_json(&config_json)?,
        };
        Ok(Image {
            platform,
            manifest,
            config,
            layers,
            diff_ids,
        })
    }

    fn load_blob(&self, media_type: &str, digest: &Digest, size: u64) -> anyhow::Result<Blob> {
        let data = self.read_blob(digest)?;
        ensure!(
            data.len() as u64 == size,
            "blob {digest} has {} bytes, descriptor says {size}",
            data.len()
        );
        Ok(Blob {
            media_type: media_type.to_owned(),
            digest: digest.clone(),
            data,
        })
    }

    fn write_index(&self) -> anyhow::Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": self.entries.iter().map(LayoutEntry::to_json).collect::<Vec<_>>(),
        });
        let tmp = self.root.join("index.json.tmp");
        fs_err::write(&tmp, serde_json::to_vec(&index)?)?;
        fs_err::rename(&tmp, self.root.join("index.json"))?;
        Ok(())
    }
}

fn str_field<'v>(value: &'v Value, key: &str) -> anyhow::Result<&'v str> {
    value[key]
        .as_str()
        .with_context(|| format!("descriptor without {key}: {value}"))
}

fn platform_from_json(value: &Value) -> anyhow::Result<Platform> {
    Ok(Platform {
        os: str_field(value, "os")?.to_owned(),
        architecture: str_field(value, "architecture")?.to_owned(),
        variant: value["variant"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{ImageBuilder, IndexBuilder, Layer};

    #[test]
    fn add_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let amd = ImageBuilder::new()
            .layer(Layer::new().file("a", "amd"))
            .build()
            .unwrap();
        let arm = ImageBuilder::new()
            .platform(Platform::linux_arm64())
            .layer(Layer::new().file("a", "arm"))
            .build()
            .unwrap();
        let index = IndexBuilder::new()
            .image(amd.clone())
            .image(arm)
            .build()
            .unwrap();
        let mut layout = OciLayout::create(dir.path()).unwrap();
        layout.add("localhost/x:1", &index).unwrap();
        layout.add("localhost/y:1", &amd).unwrap();
        layout.add("localhost/x:1", &index).unwrap();

        let reopened = OciLayout::open(dir.path()).unwrap();
        assert_eq!(reopened.entries().len(), 2);
        reopened.verify().unwrap();
        let Artifact::Index(loaded) = reopened.load("localhost/x:1").unwrap() else {
            panic!("expected an index");
        };
        assert_eq!(loaded.digest(), index.digest());
        assert_eq!(loaded.images[1].platform, Platform::linux_arm64());
        assert_eq!(loaded.images[0].layers, amd.layers);

        fs_err::write(reopened.blob_path(&amd.layers[0].digest), b"tampered").unwrap();
        assert!(reopened.verify().is_err());
    }
}
