//! The interface to a remote cache: where action results and blobs are shared between machines.
//!
//! A backend (`lkb-remote`: the Remote Execution API over gRPC, or an OCI registry) implements
//! [`RemoteCache`]: a handful of plain operations on action results and blobs. Policy — when to
//! ask, what to download, what to upload, what a failure means — lives with the caller (the
//! engine's scheduler), not in the backends, so every backend behaves the same.
//!
//! Keys and digests are the store's own: an action result is found by its [`ActionKey`], and a
//! blob by its sha256 [`BlobRef`]. Nothing machine-specific (paths, users, clocks) is part of
//! either, so two machines building the same thing compute the same keys.

use std::fmt;

use crate::{ActionKey, ActionResult, BlobRef, Store};

/// What went wrong talking to a remote cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
}

/// How the caller should treat a [`RemoteError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The cache cannot be reached, timed out, or failed: stop using it for this build.
    Unavailable,
    /// The cache refused the request (credentials, permissions, read-only): stop using it for
    /// this build.
    Refused,
    /// The cache handed out bytes that do not match their digest, or a record that does not
    /// parse: treat the entry as a miss; the cache itself may still be used.
    Corrupt,
    /// The cache does not have a blob (evicted or lost since a result named it): treat the
    /// entry as a miss; the cache itself may still be used.
    Missing,
}

impl RemoteError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Unavailable, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Refused, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Corrupt, message)
    }

    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(RemoteErrorKind::Missing, message)
    }

    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

/// A remote cache of action results and blobs. Every method is one bounded conversation with
/// the server: implementations apply their own timeouts, so a dead server returns
/// [`RemoteErrorKind::Unavailable`] rather than hanging.
#[async_trait::async_trait]
pub trait RemoteCache: Send + Sync + fmt::Debug {
    /// The cache's address for messages, without credentials.
    fn describe(&self) -> String;

    /// The result recorded under `key`, if any. Only the record: its blobs may or may not be
    /// in the cache (see [`RemoteCache::find_missing`]).
    async fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>, RemoteError>;

    /// Records `result` under `key`. The caller uploads the blobs it names first.
    async fn put_action(&self, key: &ActionKey, result: &ActionResult) -> Result<(), RemoteError>;

    /// Those of `blobs` the cache does not have.
    async fn find_missing(&self, blobs: &[BlobRef]) -> Result<Vec<BlobRef>, RemoteError>;

    /// Sends a blob from `store`; returns the bytes sent.
    async fn upload(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError>;

    /// Fetches a blob into `store`, streaming, verified against its digest before it enters
    /// the store ([`RemoteErrorKind::Corrupt`] otherwise); returns the bytes received.
    async fn download(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError>;
}
