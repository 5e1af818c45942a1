//! Image references: `[registry/]repo[:tag][@sha256:…]`, canonicalised like LinuxKit's
//! `ReferenceExpand` (and Docker's normalisation for the registry request).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use lkb_store::BlobDigest;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::OciError;
use super::digest::parse_sha256;

/// The registry that Docker Hub images live in, as written in canonical references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves the registry API for [`DOCKER_HUB`].
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed image reference.
///
/// Equality and hashing use the canonical form only: `alpine:3.20` equals
/// `docker.io/library/alpine:3.20`. [`fmt::Display`] shows the reference as the user wrote it.
/// Serialised as the canonical string.
#[derive(Clone, Debug)]
pub struct ImageRef {
    original: String,
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<BlobDigest>,
}

impl ImageRef {
    /// Parses and canonicalises a reference.
    pub fn parse(s: &str) -> Result<ImageRef, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or control characters"));
        }

        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = parse_sha256(d).ok_or_else(|| {
                    bad("digest must be sha256: followed by 64 lowercase hex digits")
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };

        // A ':' after the last '/' separates the tag; one before it is a registry port.
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => {
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| bad(&r))?;
        }
        if name.is_empty() {
            return Err(bad("missing repository name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad("repository name is longer than 255 characters"));
        }

        let segments: Vec<&str> = name.split('/').collect();
        if segments.iter().any(|seg| seg.is_empty()) {
            return Err(bad("empty path component"));
        }
        let first = segments[0];
        let first_is_registry = segments.len() > 1
            && (first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.starts_with('['));

        let (registry, repo_segments) = if first_is_registry {
            validate_registry(first).map_err(|r| bad(&r))?;
            (normalise_registry(first), &segments[1..])
        } else {
            (DOCKER_HUB.to_string(), &segments[..])
        };
        for seg in repo_segments {
            validate_component(seg).map_err(|r| bad(&r))?;
        }
        let mut repository = repo_segments.join("/");
        if registry == DOCKER_HUB && repo_segments.len() == 1 {
            repository = format!("library/{repository}");
        }

        Ok(ImageRef {
            original: s.to_string(),
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// A repository named by its registry host and path, taken literally: `registry` is a host
    /// even without a dot or port (`oci://cache/lkb`), and no `library/` is added. For places
    /// that name a repository rather than an image, such as a remote cache URL.
    pub fn repository_in(registry: &str, repository: &str) -> Result<ImageRef, OciError> {
        let original = format!("{registry}/{repository}");
        let bad = |reason: String| OciError::InvalidReference {
            reference: original.clone(),
            reason,
        };
        validate_registry(registry).map_err(bad)?;
        if repository.is_empty() {
            return Err(bad("missing repository name".to_string()));
        }
        if repository.len() > MAX_NAME_LEN {
            return Err(bad(
                "repository name is longer than 255 characters".to_string()
            ));
        }
        for segment in repository.split('/') {
            validate_component(segment).map_err(bad)?;
        }
        Ok(ImageRef {
            registry: normalise_registry(registry),
            repository: repository.to_string(),
            tag: None,
            digest: None,
            original,
        })
    }

    /// The reference exactly as given.
    pub fn original(&self) -> &str {
        &self.original
    }

    /// The registry as written in canonical references (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given (no `latest` default here: see [`Self::request_reference`]).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference was pinned with `@sha256:…`.
    pub fn digest(&self) -> Option<&BlobDigest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The canonical string: `registry/repository[:tag][@digest]`. Like LinuxKit, no `:latest`
    /// is added to an untagged reference.
    pub fn canonical(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The host (and port) to send API requests to: `docker.io` maps to `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What goes after `/manifests/` in the registry request: the digest if pinned, else the tag,
    /// else `latest`.
    pub fn request_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same image pinned to `digest` (keeps the tag for readability).
    pub fn with_digest(&self, digest: BlobDigest) -> ImageRef {
        let mut r = self.clone();
        r.digest = Some(digest);
        r.original = r.canonical();
        r
    }

    /// The same reference with `tag` as its tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, OciError> {
        validate_tag(tag).map_err(|reason| OciError::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        let mut r = self.clone();
        r.tag = Some(tag.to_string());
        r.digest = None;
        r.original = r.canonical();
        Ok(r)
    }
}

/// `index.docker.io` and friends are all Docker Hub; host names are case-insensitive.
fn normalise_registry(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => lower,
    }
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("registry {host:?}: unterminated IPv6 address"))?;
        let addr = &rest[..end];
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("registry {host:?}: invalid IPv6 address"));
        }
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("registry {host:?}: junk after IPv6 address"))?,
            ),
        };
        (None, port)
    } else {
        match host.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(h) = h {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(format!("registry {host:?}: invalid host name"));
        }
    }
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("registry {host:?}: invalid port"));
    }
    Ok(())
}

/// A repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_component(seg: &str) -> Result<(), String> {
    let err = || {
        format!(
            "repository component {seg:?} must be lowercase letters and digits, separated by \
             '.', '_', '__' or dashes"
        )
    };
    let b = seg.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(err());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err(err()),
        }
        if i >= b.len() || !alnum(b[i]) || i == start {
            return Err(err());
        }
    }
    Ok(())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        && tag
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1-128 characters of letters, digits, '_', '.' and '-', not \
             starting with '.' or '-'"
        ))
    }
}

impl FromStr for ImageRef {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.repository == other.repository
            && self.tag == other.tag
            && self.digest == other.digest
    }
}

impl Eq for ImageRef {}

impl Hash for ImageRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.registry.hash(state);
        self.repository.hash(state);
        self.tag.hash(state);
        self.digest.hash(state);
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn p(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn one_segment_is_docker_library() {
        let r = p("alpine");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), None);
        assert_eq!(r.canonical(), "docker.io/library/alpine");
        assert_eq!(r.request_reference(), "latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "alpine");
    }

    #[test]
    fn two_segments_without_dot_is_docker_hub() {
        let r = p("linuxkit/init:v1.0");
        assert_eq!(r.canonical(), "docker.io/linuxkit/init:v1.0");
        assert_eq!(r.request_reference(), "v1.0");
        let r = p("docker.io/alpine:3");
        assert_eq!(r.canonical(), "docker.io/library/alpine:3");
        let r = p("index.docker.io/linuxkit/init");
        assert_eq!(r.canonical(), "docker.io/linuxkit/init");
        let r = p("a/b/c");
        assert_eq!(r.canonical(), "docker.io/a/b/c");
    }

    #[test]
    fn registries_with_dots_ports_and_localhost() {
        let r = p("localhost:5000/foo:1");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "foo");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.canonical(), "localhost:5000/foo:1");
        assert_eq!(r.api_host(), "localhost:5000");
        let r = p("localhost/foo");
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.canonical(), "localhost/foo");
        let r = p("ghcr.io/org/sub/img:tag");
        assert_eq!(r.registry(), "ghcr.io");
        assert_eq!(r.repository(), "org/sub/img");
        let r = p("127.0.0.1:5000/a/b");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        let r = p("[::1]:5000/a:t");
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(r.canonical(), "[::1]:5000/a:t");
        let r = p("Registry.Example.COM/x");
        assert_eq!(r.registry(), "registry.example.com");
    }

    #[test]
    fn digests() {
        let r = p(&format!("alpine@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), format!("sha256:{HEX}"));
        assert_eq!(r.request_reference(), format!("sha256:{HEX}"));
        assert_eq!(
            r.canonical(),
            format!("docker.io/library/alpine@sha256:{HEX}")
        );
        let r = p(&format!("localhost:5000/x:1@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.request_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.canonical(), format!("localhost:5000/x:1@sha256:{HEX}"));
    }

    #[test]
    fn equality_is_canonical_and_serde_roundtrips() {
        assert_eq!(p("alpine:3"), p("docker.io/library/alpine:3"));
        assert_ne!(p("alpine"), p("alpine:latest"));
        let r = p("linuxkit/init:v1");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/linuxkit/init:v1\"");
        let back: ImageRef = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let pinned = r.with_digest(format!("sha256:{HEX}").parse().unwrap());
        assert_eq!(
            pinned.to_string(),
            format!("docker.io/linuxkit/init:v1@sha256:{HEX}")
        );
    }

    #[test]
    fn invalid_references_name_the_ref() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "foo//bar",
            "/foo",
            "foo/",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            &format!("alpine@sha256:{}", HEX.to_uppercase()),
            "has space",
            "localhost:50x0/foo",
            "foo/-bar",
            "foo/bar-",
            "foo/b..ar",
            "foo/b___ar",
            "exa_mple.com/foo",
        ] {
            match ImageRef::parse(bad) {
                Err(e @ OciError::InvalidReference { .. }) => {
                    assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
                    assert!(matches!(e.category(), lkb_store::ErrorCategory::User));
                }
                other => panic!("{bad:?} should be invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn separators_in_components() {
        for ok in ["a.b", "a_b", "a__b", "a---b", "a-b.c_d"] {
            p(&format!("example.com/{ok}"));
        }
        let long_tag = "t".repeat(128);
        p(&format!("x:{long_tag}"));
        assert!(ImageRef::parse(&format!("x:{long_tag}t")).is_err());
    }

    #[test]
    fn a_repository_in_a_registry_is_taken_literally() {
        let r = ImageRef::repository_in("cache", "lkb").unwrap();
        assert_eq!((r.registry(), r.repository()), ("cache", "lkb"));
        assert_eq!(r.api_host(), "cache");
        let r = ImageRef::repository_in("127.0.0.1:5000", "team/lkb/cache").unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/team/lkb/cache");
        let r = ImageRef::repository_in("index.docker.io", "me/cache").unwrap();
        assert_eq!((r.registry(), r.api_host()), (DOCKER_HUB, DOCKER_HUB_API));
        for (registry, repository) in [
            ("", "a"),
            ("h", ""),
            ("h", "A"),
            ("h", "a//b"),
            ("h:x", "a"),
        ] {
            assert!(
                ImageRef::repository_in(registry, repository).is_err(),
                "{registry}/{repository}"
            );
        }
    }
}
