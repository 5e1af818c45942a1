//! The remote cache layer: between the scheduler and the store, never inside actions.
//!
//! On a local miss the scheduler asks [`Remote::fetch`]: the result recorded under the action
//! key at the remote cache, with every blob it needs downloaded (verified) into the local
//! store and the result recorded locally, so the next build is a local hit. After an action
//! executes, [`Remote::upload`] sends the blobs the cache lacks and then the result.
//!
//! # Build without the bytes ([`Download::Outputs`])
//!
//! By default a remote hit downloads nothing: the cache is asked whether it holds the result's
//! output blobs (`find_missing`), and the result is kept in the store's
//! [`MetaTable::Remote`] table rather than its action cache (whose records always have their
//! blobs). Downstream keys need only the result's digests, so a build whose every action hits
//! moves no bytes until the end, when the caller fetches what the requested outputs need
//! ([`Remote::materialize`]). An action that must run locally gets its inputs the same way
//! before it starts. A later build with the same cache takes those results from the table
//! without asking the server. Should the cache have lost a blob by the time it is needed, the
//! build fails with [`RemoteLost`]; the CLI then runs the build again without the cache, which
//! rebuilds exactly what the lost blob needed. With [`Download::All`] a hit downloads every
//! blob it names and goes into the action cache, as a local execution would.
//!
//! # Failures never fail a build
//!
//! A cache that cannot be reached, times out, or refuses (credentials, read-only) is warned
//! about once ([`BuildEvent::Warning`](crate::BuildEvent::Warning)) and not asked again during
//! the build; the build carries on locally. A blob whose bytes do not match its digest never
//! enters the store: the entry is treated as a miss, with a warning.
//!
//! The blobs of a result are its outputs plus whatever they refer to (a tree's file contents):
//! the caller says which through [`References`], as for garbage collection.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lkb_store::{
    ActionKey, ActionResult, Artifact, BlobDigest, BlobRef, MetaTable, ReferenceError, RemoteCache,
    RemoteError, RemoteErrorKind, Store,
};
use tokio::sync::Semaphore;

/// Which blobs an artifact refers to (besides itself), with their sizes; as
/// `lkb_store::ReferenceFn` for garbage collection.
pub type References =
    Arc<dyn Fn(&Store, &Artifact) -> Result<Vec<BlobRef>, ReferenceError> + Send + Sync>;

/// How many calls to the cache run at once (servers limit concurrent requests; BuildGrid's
/// default is 10).
const CALLS: usize = 8;

/// What a remote hit downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Download {
    /// Only what the requested outputs and locally executed actions need, when they need it.
    #[default]
    Outputs,
    /// Every blob of every hit, at once.
    All,
}

/// A blob a remote hit promised could not be downloaded when it was needed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the remote cache no longer has {blob} ({reason})")]
pub struct RemoteLost {
    pub blob: lkb_store::BlobDigest,
    pub reason: String,
}

/// A remote cache and how to use it, for one or more builds.
pub struct Remote {
    cache: Arc<dyn RemoteCache>,
    upload: bool,
    download: Download,
    references: References,
    calls: Semaphore,
    /// Set on the first failure that makes the cache unusable.
    disabled: AtomicBool,
    /// Warnings not yet handed to the reporter.
    warnings: Mutex<Vec<String>>,
    stats: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    uploads: AtomicU64,
    bytes_downloaded: AtomicU64,
    bytes_uploaded: AtomicU64,
}

/// What the remote cache did in a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Actions taken from the remote cache.
    pub hits: u64,
    /// Actions asked for and not found (or not usable).
    pub misses: u64,
    /// Action results uploaded.
    pub uploads: u64,
    pub bytes_downloaded: u64,
    pub bytes_uploaded: u64,
    /// Whether the cache was given up on during the build.
    pub disabled: bool,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("cache", &self.cache.describe())
            .field("upload", &self.upload)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Uses `cache`; uploads results only when `upload`; downloads as `download` says.
    pub fn new(
        cache: Arc<dyn RemoteCache>,
        upload: bool,
        download: Download,
        references: References,
    ) -> Remote {
        Remote {
            cache,
            upload,
            download,
            references,
            calls: Semaphore::new(CALLS),
            disabled: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            stats: Counters::default(),
        }
    }

    /// The cache's address.
    pub fn describe(&self) -> String {
        self.cache.describe()
    }

    /// Whether the cache is still in use.
    pub fn active(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Whether executed results are uploaded.
    pub fn uploads(&self) -> bool {
        self.upload && self.active()
    }

    /// What happened so far.
    pub fn stats(&self) -> RemoteStats {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        RemoteStats {
            hits: load(&self.stats.hits),
            misses: load(&self.stats.misses),
            uploads: load(&self.stats.uploads),
            bytes_downloaded: load(&self.stats.bytes_downloaded),
            bytes_uploaded: load(&self.stats.bytes_uploaded),
            disabled: !self.active(),
        }
    }

    /// Warnings raised since the last call.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn warn(&self, message: String) {
        tracing::debug!("{message}");
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
    }

    /// Handles a failure: a corrupt entry or a missing blob is warned about; anything else
    /// turns the cache off for the rest of the build, with one warning.
    fn failed(&self, error: &RemoteError) {
        match error.kind {
            RemoteErrorKind::Corrupt | RemoteErrorKind::Missing => {
                self.warn(format!("remote cache: {error}; not using that entry"))
            }
            RemoteErrorKind::Unavailable | RemoteErrorKind::Refused => {
                if !self.disabled.swap(true, Ordering::Relaxed) {
                    self.warn(format!(
                        "remote cache {} not used for the rest of this build: {error}",
                        self.cache.describe()
                    ));
                }
            }
        }
    }

    /// The result of `key` from the remote cache, with every blob it needs in `store` and the
    /// result recorded there (with `history`); `None` on a miss or any failure.
    pub(crate) async fn fetch(
        &self,
        store: &Store,
        key: &ActionKey,
        history: (&str, &[u8]),
    ) -> Option<ActionResult> {
        if !self.active() {
            return None;
        }
        match self.try_fetch(store, key, history).await {
            Ok(Some(result)) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(result)
            }
            Ok(None) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                self.failed(&error);
                None
            }
        }
    }

    async fn try_fetch(
        &self,
        store: &Store,
        key: &ActionKey,
        (history_key, history): (&str, &[u8]),
    ) -> Result<Option<ActionResult>, RemoteError> {
        let found = {
            let _permit = self.calls.acquire().await;
            if !self.active() {
                return Ok(None);
            }
            self.cache.get_action(key).await?
        };
        let Some(result) = found else {
            return Ok(None);
        };
        if self.download == Download::Outputs {
            // Only the record: check the cache still holds the outputs, keep it aside.
            let outputs: Vec<BlobRef> = result.outputs.iter().map(|a| a.blob).collect();
            let missing = {
                let _permit = self.calls.acquire().await;
                self.cache.find_missing(&outputs).await?
            };
            if let Some(blob) = missing.first() {
                tracing::debug!(%key, blob = %blob.digest, "remote result without its blob");
                return Ok(None);
            }
            let json = serde_json::to_vec(&result).map_err(|error| {
                RemoteError::unavailable(format!("cannot encode action {key}: {error}"))
            })?;
            store
                .put_metas(&[
                    (MetaTable::Remote, &self.row(key), &json),
                    (MetaTable::History, history_key, history),
                ])
                .map_err(|error| {
                    RemoteError::unavailable(format!("cannot record action {key}: {error}"))
                })?;
            return Ok(Some(result));
        }
        self.download_closure(store, &result.outputs)
            .await
            .map_err(|(_, error)| error)?;
        store
            .put_action_with_meta(key, &result, &[(MetaTable::History, history_key, history)])
            .map_err(|error| {
                RemoteError::unavailable(format!("cannot record action {key}: {error}"))
            })?;
        Ok(Some(result))
    }

    /// Brings `artifacts` (and what trees among them refer to) into `store` from the cache,
    /// for an action about to run locally. Everything already in the store costs nothing.
    pub async fn materialize(
        &self,
        store: &Store,
        artifacts: &[Artifact],
    ) -> Result<(), RemoteLost> {
        self.download_closure(store, artifacts)
            .await
            .map_err(|(blob, error)| self.lost(blob, error))
    }

    /// [`Remote::materialize`] for plain blobs (the build's output files).
    pub async fn materialize_blobs(
        &self,
        store: &Store,
        blobs: &[BlobRef],
    ) -> Result<(), RemoteLost> {
        for blob in blobs {
            self.ensure(store, blob)
                .await
                .map_err(|error| self.lost(blob.digest, error))?;
        }
        Ok(())
    }

    /// A needed blob the cache could not hand over. A bad or missing blob says nothing about
    /// the cache; anything else ends its use for the build.
    fn lost(&self, blob: BlobDigest, error: RemoteError) -> RemoteLost {
        if !matches!(
            error.kind,
            RemoteErrorKind::Corrupt | RemoteErrorKind::Missing
        ) {
            self.failed(&error);
        }
        RemoteLost {
            blob,
            reason: error.message,
        }
    }

    /// Downloads what the store lacks of `artifacts` and of what the trees among them refer
    /// to; on failure, the blob that could not be had. A tree already in the store came with
    /// its contents (no download records anything before every blob is in), so only a tree
    /// fetched now is followed.
    async fn download_closure(
        &self,
        store: &Store,
        artifacts: &[Artifact],
    ) -> Result<(), (BlobDigest, RemoteError)> {
        for artifact in artifacts {
            let had = store.has_blob(&artifact.blob);
            self.ensure(store, &artifact.blob)
                .await
                .map_err(|error| (artifact.blob.digest, error))?;
            if artifact.kind.has_references() && !had {
                let references = self
                    .references_of(store, artifact)
                    .map_err(|error| (artifact.blob.digest, error))?;
                for blob in references {
                    self.ensure(store, &blob)
                        .await
                        .map_err(|error| (blob.digest, error))?;
                }
            }
        }
        Ok(())
    }

    /// The blobs a tree artifact refers to, read from the store.
    fn references_of(
        &self,
        store: &Store,
        artifact: &Artifact,
    ) -> Result<Vec<BlobRef>, RemoteError> {
        (self.references)(store, artifact).map_err(|error| {
            RemoteError::corrupt(format!(
                "{} `{}` ({}) cannot be read: {error}",
                artifact.kind, artifact.name, artifact.blob.digest
            ))
        })
    }

    /// The `remote` table's row for `key` at this cache: `URL KEY`, so results another cache
    /// holds are not taken as this one's.
    fn row(&self, key: &ActionKey) -> String {
        format!("{} {key}", self.cache.describe())
    }

    /// A result kept aside by an earlier build without the bytes (see the module docs).
    pub(crate) fn known(&self, store: &Store, key: &ActionKey) -> Option<ActionResult> {
        if self.download != Download::Outputs {
            return None;
        }
        let json = store.get_meta(MetaTable::Remote, &self.row(key)).ok()??;
        serde_json::from_slice(&json).ok()
    }

    /// Downloads `blob` unless the store has it.
    async fn ensure(&self, store: &Store, blob: &BlobRef) -> Result<(), RemoteError> {
        if store.has_blob(blob) {
            return Ok(());
        }
        let _permit = self.calls.acquire().await;
        if !self.active() {
            return Err(RemoteError::unavailable("the remote cache was given up on"));
        }
        let bytes = self.cache.download(store, blob).await?;
        self.stats
            .bytes_downloaded
            .fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads an executed action's result: first the blobs the cache lacks (outputs and what
    /// they refer to), then the result. Failures are warned about, never returned.
    pub(crate) async fn upload(&self, store: &Store, key: &ActionKey, result: &ActionResult) {
        if !self.uploads() {
            return;
        }
        if let Err(error) = self.try_upload(store, key, result).await {
            self.failed(&error);
        }
    }

    async fn try_upload(
        &self,
        store: &Store,
        key: &ActionKey,
        result: &ActionResult,
    ) -> Result<(), RemoteError> {
        let mut blobs = BTreeSet::new();
        for artifact in &result.outputs {
            blobs.insert(artifact.blob);
            if artifact.kind.has_references() {
                let references = self.references_of(store, artifact)?;
                blobs.extend(references);
            }
        }
        let blobs: Vec<BlobRef> = blobs.into_iter().collect();
        let missing = {
            let _permit = self.calls.acquire().await;
            self.cache.find_missing(&blobs).await?
        };
        for blob in &missing {
            let _permit = self.calls.acquire().await;
            if !self.active() {
                return Ok(());
            }
            let bytes = self.cache.upload(store, blob).await?;
            self.stats
                .bytes_uploaded
                .fetch_add(bytes, Ordering::Relaxed);
        }
        let _permit = self.calls.acquire().await;
        self.cache.put_action(key, result).await?;
        self.stats.uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
