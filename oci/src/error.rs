//! Errors of image acquisition, each with a category that the CLI maps to an exit code.

use std::path::PathBuf;

use lkb_store::{BlobDigest, ErrorCategory, StoreError};

/// Everything that can go wrong while resolving or fetching an image.
///
/// Messages name the image reference, the registry (and URL) or the layout path, and the
/// digests involved, so that a user can act on them without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The reference string is not a valid `[registry/]repo[:tag][@sha256:…]`.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A platform string such as `linux/arm64/v8` could not be parsed.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },

    /// The registry could not be reached: DNS, connection refused, TLS, timeouts.
    #[error("cannot reach registry {registry} at {url}: {detail}")]
    Unreachable {
        registry: String,
        url: String,
        detail: String,
        #[source]
        source: Option<reqwest::Error>,
    },

    /// A transfer stopped making progress: no bytes for the read timeout, or slower than the
    /// minimum transfer rate.
    #[error("{what} stalled at {url} after {received} bytes: {detail}")]
    Stalled {
        what: String,
        registry: String,
        url: String,
        received: u64,
        detail: String,
    },

    /// The registry has no such manifest (tag or digest) or repository.
    #[error("image {reference} not found in registry {registry} ({detail})")]
    NotFound {
        reference: String,
        registry: String,
        detail: String,
    },

    /// The image is not in any of the configured sources (layouts, and no registry was allowed).
    #[error("image {reference} not found in {searched}")]
    NotInSources { reference: String, searched: String },

    /// A manifest names a blob that the registry does not have.
    #[error("blob {digest} of image {reference} is missing from registry {registry} ({url})")]
    BlobNotFound {
        reference: String,
        registry: String,
        digest: BlobDigest,
        url: String,
    },

    /// The registry wants credentials and none were configured.
    #[error(
        "registry {registry} requires authentication (401); log in with docker login or add \
         credentials to ~/.docker/config.json (while fetching {reference})"
    )]
    AuthRequired { registry: String, reference: String },

    /// Credentials were sent and rejected, or access was denied (403).
    #[error("registry {registry} refused access to {reference}: {detail}")]
    AuthFailed {
        registry: String,
        reference: String,
        detail: String,
    },

    /// The registry answered with a status we do not know how to handle.
    #[error("registry {registry} answered {status} for {url}: {detail}")]
    Registry {
        registry: String,
        url: String,
        status: u16,
        detail: String,
    },

    /// Content did not hash to the digest it was requested or announced by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: BlobDigest,
        actual: BlobDigest,
    },

    /// Content had a different length than its descriptor says.
    #[error("size mismatch for {what} {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        digest: BlobDigest,
        expected: u64,
        actual: u64,
    },

    /// A manifest or index is larger than we are willing to buffer.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },

    /// An index has no manifest for the requested platform.
    #[error(
        "image {reference} has no manifest for platform {wanted}; available platforms: {}",
        if available.is_empty() { "(none)".to_string() } else { available.join(", ") }
    )]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },

    /// A media type (or manifest schema) we do not support, e.g. Docker schema 1.
    #[error("image {reference}: unsupported media type {media_type}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },

    /// A manifest or index that does not parse or violates the spec.
    #[error("invalid manifest for image {reference} from {source_name}: {reason}")]
    InvalidManifest {
        reference: String,
        source_name: String,
        reason: String,
    },

    /// `~/.docker/config.json` (or the configured path) is malformed.
    #[error("cannot use docker config {path}: {detail}")]
    DockerConfig { path: PathBuf, detail: String },

    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} failed for {server}: {detail}")]
    CredentialHelper {
        helper: String,
        server: String,
        detail: String,
    },

    /// A directory that was configured as an OCI layout is not one (or its index is broken).
    #[error("OCI layout {path}: {detail}")]
    Layout { path: PathBuf, detail: String },

    /// Reading a file of an OCI layout failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing into the store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),

    /// A bug in lkb (e.g. a background task panicked).
    #[error("internal error: {0}")]
    Internal(String),
}

impl OciError {
    /// Who has to act: the user (fix the yml/credentials), the environment (network, disk,
    /// a misbehaving registry), or us.
    pub fn category(&self) -> ErrorCategory {
        match self {
            OciError::Store(e) => e.category(),
            OciError::InvalidReference { .. }
            | OciError::InvalidPlatform { .. }
            | OciError::NotFound { .. }
            | OciError::NotInSources { .. }
            | OciError::AuthRequired { .. }
            | OciError::AuthFailed { .. }
            | OciError::NoMatchingPlatform { .. }
            | OciError::UnsupportedMediaType { .. }
            | OciError::DockerConfig { .. }
            | OciError::Layout { .. } => ErrorCategory::User,
            OciError::Unreachable { .. }
            | OciError::Stalled { .. }
            | OciError::BlobNotFound { .. }
            | OciError::Registry { .. }
            | OciError::DigestMismatch { .. }
            | OciError::SizeMismatch { .. }
            | OciError::TooLarge { .. }
            | OciError::InvalidManifest { .. }
            | OciError::CredentialHelper { .. }
            | OciError::Io { .. } => ErrorCategory::Environment,
            OciError::Internal(_) => ErrorCategory::Internal,
        }
    }

    /// True for failures that another attempt might not hit (used by the retry loop).
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            OciError::Unreachable { .. } | OciError::Stalled { .. }
        ) || matches!(self, OciError::Registry { status, .. } if *status >= 500 || *status == 429)
    }

    /// Notes on a transient failure that it was the last of `attempts` attempts.
    pub(crate) fn after_attempts(mut self, attempts: u32) -> OciError {
        if attempts > 1
            && self.is_transient()
            && let OciError::Unreachable { detail, .. }
            | OciError::Stalled { detail, .. }
            | OciError::Registry { detail, .. } = &mut self
        {
            detail.push_str(&format!(" (gave up after {attempts} attempts)"));
        }
        self
    }
}

/// Renders an error with its chain of causes, `a: b: c`, for messages that embed a source.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}
