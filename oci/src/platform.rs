//! Target platforms (`linux/amd64`, `linux/arm64`, `linux/arm/v7`) and selecting a manifest for
//! one from an image index.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::OciError;
use super::manifest::{Descriptor, DescriptorPlatform};

/// An OCI platform. `variant` is optional; `arm64` and `arm64/v8` are treated as the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>` where `arch` may be a Go name (`amd64`) or a Rust/uname name (`x86_64`).
    pub fn linux(arch: &str) -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: go_arch(arch).to_string(),
            variant: None,
        }
    }

    /// Linux on the architecture this binary runs on (x86_64 → amd64, aarch64 → arm64).
    pub fn host() -> Platform {
        let mut p = Platform::linux(std::env::consts::ARCH);
        if p.architecture == "arm" {
            p.variant = Some("v7".to_string());
        }
        p
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, OciError> {
        let bad = |reason: &str| OciError::InvalidPlatform {
            platform: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad("expected os/architecture[/variant]"));
        }
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(bad(
                "components must be non-empty letters, digits, '_' or '-'",
            ));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: go_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// Does an index entry's platform satisfy this one?
    ///
    /// OS and architecture must be equal. If this platform names a variant the entry's must
    /// match it; if it names none, any variant is acceptable (LinuxKit ignores variants), with
    /// [`select_manifest`] preferring an exact match.
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalised(), other.normalised());
        a.os == b.os
            && a.architecture == b.architecture
            && (self.variant.is_none() || a.variant == b.variant)
    }

    /// Fills in implied variants: `arm64` is `v8`, bare `arm` is `v7`.
    fn normalised(&self) -> Platform {
        let architecture = go_arch(&self.architecture.to_ascii_lowercase()).to_string();
        let variant = match (architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_string()),
            ("arm", None) => Some("v7".to_string()),
            (_, v) => v.map(str::to_ascii_lowercase),
        };
        Platform {
            os: self.os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }
}

/// Maps Rust/uname architecture names to Go/OCI ones; others pass through.
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64le" | "ppc64el" => "ppc64le",
        "riscv64gc" => "riscv64",
        "armv7l" | "armhf" => "arm",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl From<&DescriptorPlatform> for Platform {
    fn from(p: &DescriptorPlatform) -> Self {
        Platform {
            os: p.os.clone(),
            architecture: p.architecture.clone(),
            variant: p.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// Picks the manifest for `want` from an index's entries.
///
/// Entries without a platform and attestation manifests (BuildKit's `unknown/unknown`) are
/// skipped. Among matches, an exact variant match wins, then the first in index order. On
/// failure returns the list of platforms that are available, for the error message.
pub fn select_manifest<'a>(
    entries: &'a [Descriptor],
    want: &Platform,
) -> Result<&'a Descriptor, Vec<String>> {
    let candidates: Vec<(&Descriptor, Platform)> = entries
        .iter()
        .filter(|d| !d.is_attestation())
        .filter_map(|d| d.platform.as_ref().map(|p| (d, Platform::from(p))))
        .collect();
    let wanted = want.normalised();
    let exact = candidates
        .iter()
        .find(|(_, p)| want.matches(p) && p.normalised().variant == wanted.variant);
    let any = candidates.iter().find(|(_, p)| want.matches(p));
    match exact.or(any) {
        Some((d, _)) => Ok(d),
        None => {
            let mut available: Vec<String> =
                candidates.iter().map(|(_, p)| p.to_string()).collect();
            available.dedup();
            Err(available)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(n: u8, platform: Option<(&str, &str, Option<&str>)>) -> Descriptor {
        Descriptor {
            media_type: super::super::manifest::OCI_MANIFEST.to_string(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 100,
            platform: platform.map(|(os, arch, v)| DescriptorPlatform {
                os: os.into(),
                architecture: arch.into(),
                variant: v.map(Into::into),
                os_version: None,
                os_features: Vec::new(),
            }),
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        }
    }

    #[test]
    fn host_and_names() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(h.architecture, "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(h.architecture, "arm64");
        assert_eq!(Platform::linux("aarch64").to_string(), "linux/arm64");
        assert_eq!(Platform::linux("x86_64").to_string(), "linux/amd64");
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().variant.as_deref(),
            Some("v7")
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap(),
            Platform::linux("amd64")
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        let json = serde_json::to_string(&Platform::linux("amd64")).unwrap();
        assert_eq!(json, r#"{"os":"linux","architecture":"amd64"}"#);
    }

    #[test]
    fn selects_os_and_arch() {
        let entries = vec![
            entry(1, Some(("linux", "amd64", None))),
            entry(2, Some(("linux", "arm64", Some("v8")))),
            entry(3, Some(("windows", "amd64", None))),
        ];
        let d = select_manifest(&entries, &Platform::linux("amd64")).unwrap();
        assert_eq!(d.digest, entries[0].digest);
        // arm64 and arm64/v8 are the same thing.
        let d = select_manifest(&entries, &Platform::linux("arm64")).unwrap();
        assert_eq!(d.digest, entries[1].digest);
        let d = select_manifest(&entries, &Platform::parse("linux/arm64/v8").unwrap()).unwrap();
        assert_eq!(d.digest, entries[1].digest);
    }

    #[test]
    fn variant_preference_and_requirement() {
        let entries = vec![
            entry(1, Some(("linux", "arm", Some("v6")))),
            entry(2, Some(("linux", "arm", Some("v7")))),
        ];
        // No variant asked: bare arm means v7, which is an exact match.
        let d = select_manifest(&entries, &Platform::linux("arm")).unwrap();
        assert_eq!(d.digest, entries[1].digest);
        let d = select_manifest(&entries, &Platform::parse("linux/arm/v6").unwrap()).unwrap();
        assert_eq!(d.digest, entries[0].digest);
        let err = select_manifest(&entries, &Platform::parse("linux/arm/v5").unwrap()).unwrap_err();
        assert_eq!(
            err,
            vec!["linux/arm/v6".to_string(), "linux/arm/v7".to_string()]
        );
    }

    #[test]
    fn skips_attestations_and_lists_available() {
        let mut att = entry(9, Some(("unknown", "unknown", None)));
        att.annotations.insert(
            "vnd.docker.reference.type".into(),
            "attestation-manifest".into(),
        );
        let entries = vec![
            entry(1, Some(("linux", "amd64", None))),
            att,
            entry(2, None),
        ];
        let err = select_manifest(&entries, &Platform::linux("riscv64")).unwrap_err();
        assert_eq!(err, vec!["linux/amd64".to_string()]);
    }
}
