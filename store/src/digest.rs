//! Typed content digests and the records that name blobs.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Marker for [`Digest`]s of plain blobs (OCI blobs, files, archives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Blob {}

/// Marker for [`Digest`]s of canonical tree listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {}

/// The digest of a blob in the CAS.
pub type BlobDigest = Digest<Blob>;
/// The digest of a canonical tree listing (itself stored as a blob).
pub type TreeDigest = Digest<Tree>;

/// A sha256 digest whose kind `K` is tracked by the type system.
///
/// Displayed and serialised as `sha256:<64 lowercase hex>`, the form OCI uses.
pub struct Digest<K> {
    sha256: [u8; 32],
    kind: PhantomData<fn() -> K>,
}

impl<K> Digest<K> {
    /// Wraps raw sha256 bytes.
    pub const fn from_bytes(sha256: [u8; 32]) -> Self {
        Digest {
            sha256,
            kind: PhantomData,
        }
    }

    /// The sha256 of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self::from_bytes(sha2::Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The 64 lowercase hex characters, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The first 12 hex characters, for humans.
    pub fn short(&self) -> String {
        let mut hex = self.hex();
        hex.truncate(12);
        hex
    }

    /// Reinterprets the same bytes as another kind, e.g. a tree listing stored as a blob.
    pub const fn cast<K2>(self) -> Digest<K2> {
        Digest::from_bytes(self.sha256)
    }
}

impl<K> Clone for Digest<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K> Copy for Digest<K> {}
impl<K> PartialEq for Digest<K> {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}
impl<K> Eq for Digest<K> {}
impl<K> PartialOrd for Digest<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Digest<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sha256.cmp(&other.sha256)
    }
}
impl<K> Hash for Digest<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sha256.hash(state);
    }
}

impl<K> fmt::Display for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}
impl<K> fmt::Debug for Digest<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The algorithm prefix is missing or not `sha256:`.
    #[error("digest {input:?} does not start with \"sha256:\"")]
    Algorithm { input: String },
    /// The hex part is not exactly 64 lowercase hex characters.
    #[error("digest {input:?} is not 64 lowercase hex characters")]
    Hex { input: String },
}

impl DigestParseError {
    /// A bad digest always comes from user-visible input.
    pub fn category(&self) -> crate::ErrorCategory {
        crate::ErrorCategory::User
    }
}

fn parse_hex32(hex_text: &str) -> Option<[u8; 32]> {
    let lower = hex_text.len() == 64
        && hex_text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lower {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

impl<K> FromStr for Digest<K> {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(hex_text) = s.strip_prefix("sha256:") else {
            return Err(DigestParseError::Algorithm {
                input: s.to_owned(),
            });
        };
        parse_hex32(hex_text)
            .map(Self::from_bytes)
            .ok_or_else(|| DigestParseError::Hex {
                input: s.to_owned(),
            })
    }
}

impl<K> Serialize for Digest<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K> Deserialize<'de> for Digest<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The key of an action-cache entry: a BLAKE3 hash computed by the engine.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionKey([u8; 32]);

impl ActionKey {
    /// Wraps raw BLAKE3 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ActionKey(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex characters, for humans.
    pub fn short(&self) -> String {
        let mut hex = self.to_string();
        hex.truncate(12);
        hex
    }
}

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
impl fmt::Debug for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionKey({self})")
    }
}

impl FromStr for ActionKey {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s)
            .map(ActionKey)
            .ok_or_else(|| DigestParseError::Hex {
                input: s.to_owned(),
            })
    }
}

impl Serialize for ActionKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActionKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A blob named by digest, with its size (checked on every cache hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: BlobDigest,
    pub size: u64,
}

/// What an artifact is, declared by the action that produces it and recorded with it.
///
/// The kind decides what garbage collection follows (only [`ArtifactKind::Tree`]s refer to
/// other blobs) and what an action may take as an input; the bytes are never sniffed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// Opaque, self-contained bytes: a registry blob, a kernel, a text file.
    #[default]
    Blob,
    /// A file-system tree in lkb's tree encoding; refers to one content blob per regular file.
    Tree,
    /// An archive of files: a cpio segment, an initrd, a tar.
    Archive,
    /// A disk or file-system image: raw, ISO, qcow2, squashfs.
    DiskImage,
}

impl ArtifactKind {
    /// Every kind, in declaration order.
    pub const ALL: [ArtifactKind; 4] = [
        ArtifactKind::Blob,
        ArtifactKind::Tree,
        ArtifactKind::Archive,
        ArtifactKind::DiskImage,
    ];

    /// The kind's name, as serialised: `blob`, `tree`, `archive`, `disk-image`.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Blob => "blob",
            ArtifactKind::Tree => "tree",
            ArtifactKind::Archive => "archive",
            ArtifactKind::DiskImage => "disk-image",
        }
    }

    /// Whether the content of an artifact of this kind names other blobs.
    pub fn has_references(self) -> bool {
        self == ArtifactKind::Tree
    }

    /// Whether an artifact of this kind can be written out as a file as it is.
    pub fn is_file(self) -> bool {
        self != ArtifactKind::Tree
    }
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named output of an action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Records written before kinds were recorded read as [`ArtifactKind::Blob`]; their keys
    /// predate key schema 2, so no build looks them up again.
    #[serde(default)]
    pub kind: ArtifactKind,
    pub blob: BlobRef,
}

/// What an action produced: its named outputs, in the order the action returned them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ActionResult {
    pub outputs: Vec<Artifact>,
}

impl ActionResult {
    /// An empty result; add outputs with [`ActionResult::with`] or [`ActionResult::push`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an output and returns `self`, for building results in one expression.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, kind: ArtifactKind, blob: BlobRef) -> Self {
        self.push(name, kind, blob);
        self
    }

    /// Appends an output.
    pub fn push(&mut self, name: impl Into<String>, kind: ArtifactKind, blob: BlobRef) {
        self.outputs.push(Artifact {
            name: name.into(),
            kind,
            blob,
        });
    }

    /// The first output called `name`, with its kind.
    pub fn artifact(&self, name: &str) -> Option<&Artifact> {
        self.outputs.iter().find(|a| a.name == name)
    }

    /// The first output called `name`.
    pub fn get(&self, name: &str) -> Option<&BlobRef> {
        self.outputs
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.blob)
    }

    /// Every blob this result names, in output order.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> + '_ {
        self.outputs.iter().map(|a| &a.blob)
    }
}
