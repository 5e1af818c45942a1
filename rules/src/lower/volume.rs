//! Lowering of `volumes:` entries (reference §2.5): blank, the filesystem of an image, or an
//! OCI image layout of an image index (every blob of the selected platforms, then the index).

use std::sync::Arc;

use lkb_engine::NodeId;

use super::{LowerError, Lowering};
use crate::actions::{VolumeAction, VolumeContent};
use crate::config::{ConfigError, Volume, VolumeFormat};
use crate::oci::{Descriptor, Platform};

impl Lowering<'_, '_> {
    /// One `volumes:` entry (reference §2.5).
    pub(super) fn volume(&mut self, i: usize, volume: &Volume) -> Result<NodeId, LowerError> {
        let name = volume.name.value.clone();
        let location = format!("volume[{i}]");
        let Some(image) = &volume.image else {
            let action = VolumeAction {
                name,
                location,
                content: VolumeContent::Blank,
            };
            return Ok(self.g.add(Arc::new(action), &[]));
        };
        let reference = crate::config::expand_ref(&image.value);
        if volume.format == VolumeFormat::Filesystem {
            let merged = self.image(&reference)?;
            self.sbom_sources.push((
                reference.clone(),
                format!("containers/volumes/{name}/lower/"),
            ));
            let action = VolumeAction {
                name,
                location,
                content: VolumeContent::Filesystem { source: reference },
            };
            return Ok(self.g.add(Arc::new(action), &[merged]));
        }
        let platforms = volume
            .platforms
            .iter()
            .map(|p| {
                Platform::parse(&p.value)
                    .map_err(|e| ConfigError::new(p.span.clone(), format!("volume `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let info = Arc::clone(self.info(&reference)?);
        let Some(index) = self.input.indexes.get(&reference).cloned() else {
            if info.resolved.index_digest.is_some() {
                return Err(LowerError::Unresolved(format!("{reference} (its index)")));
            }
            return Err(ConfigError::new(
                image.span.clone(),
                format!(
                    "volume `{name}`: format `oci` needs an image index, but {reference} is a \
                     single-platform image manifest"
                ),
            )
            .with_hint("LinuxKit writes OCI-layout volumes from multi-platform indexes only")
            .into());
        };
        let r = &info.resolved.reference;
        let mut inputs: Vec<NodeId> = Vec::new();
        for manifest in index
            .manifests
            .iter()
            .filter(|m| platform_wanted(&platforms, &m.descriptor))
        {
            for blob in manifest.blobs() {
                let node = self.fetch(r, blob);
                if !inputs.contains(&node) {
                    inputs.push(node);
                }
            }
        }
        inputs.push(self.fetch(r, &index.index));
        let action = VolumeAction {
            name,
            location,
            content: VolumeContent::Oci { source: reference },
        };
        Ok(self.g.add(Arc::new(action), &inputs))
    }
}

/// Does an index entry match the `platforms` of an `oci` volume? LinuxKit compares OS and
/// architecture exactly and the variant only when one is asked for; no platforms means every
/// image manifest. Entries without a platform match only then.
fn platform_wanted(platforms: &[Platform], entry: &Descriptor) -> bool {
    if platforms.is_empty() {
        return true;
    }
    let Some(have) = &entry.platform else {
        return false;
    };
    platforms.iter().any(|want| {
        want.os == have.os
            && want.architecture == have.architecture
            && want
                .variant
                .as_ref()
                .is_none_or(|v| Some(v) == have.variant.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::oci::{DescriptorPlatform, OCI_MANIFEST};

    #[test]
    fn platform_matching_is_linuxkits() {
        let entry = |arch: &str, variant: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: String::new(),
            size: 0,
            platform: Some(DescriptorPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
                os_version: None,
                os_features: Vec::new(),
            }),
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        };
        let p = |s: &str| Platform::parse(s).expect("platform");
        assert!(platform_wanted(&[], &entry("amd64", None)));
        assert!(platform_wanted(
            &[p("linux/arm64")],
            &entry("arm64", Some("v8"))
        ));
        assert!(platform_wanted(
            &[p("linux/arm64/v8")],
            &entry("arm64", Some("v8"))
        ));
        assert!(!platform_wanted(
            &[p("linux/arm64/v8")],
            &entry("arm64", None)
        ));
        assert!(!platform_wanted(&[p("linux/amd64")], &entry("arm64", None)));
        let mut bare = entry("amd64", None);
        bare.platform = None;
        assert!(platform_wanted(&[], &bare));
        assert!(!platform_wanted(&[p("linux/amd64")], &bare));
    }
}
