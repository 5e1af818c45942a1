//! Verified streaming into the store.
//!
//! Bytes arrive on the async side (network, file reads) and are handed over a bounded channel to
//! a blocking task that hashes them and writes them into a [`BlobWriter`]. The blob is published
//! only when its length and sha256 match the descriptor; otherwise the writer is dropped and
//! nothing enters the store.

use std::io::Write as _;

use lkb_store::{BlobDigest, BlobRef, BlobWriter, Store, StoreError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::OciError;

/// Chunks in flight between the producer and the writing thread (bounded: back-pressure).
const CHANNEL_DEPTH: usize = 16;

pub(crate) enum Chunk<B> {
    Data(B),
    /// All data was sent; verify and publish.
    End,
}

/// A writer that refuses to publish anything but the expected blob. The store's writer hashes
/// what passes through it; that one hash is what is checked (the bytes are hashed once).
pub(crate) struct VerifyingWriter {
    writer: BlobWriter,
    written: u64,
    expected: BlobDigest,
    size: u64,
    what: String,
}

impl VerifyingWriter {
    pub(crate) fn new(
        store: &Store,
        expected: BlobDigest,
        size: u64,
        what: String,
    ) -> Result<VerifyingWriter, OciError> {
        Ok(VerifyingWriter {
            writer: store.writer()?,
            written: 0,
            expected,
            size,
            what,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), OciError> {
        self.written += bytes.len() as u64;
        if self.written > self.size {
            return Err(self.size_error(self.written));
        }
        self.writer
            .write_all(bytes)
            .map_err(|source| OciError::Store(self.writer.write_error(source)))
    }

    fn size_error(&self, actual: u64) -> OciError {
        OciError::SizeMismatch {
            what: self.what.clone(),
            digest: self.expected,
            expected: self.size,
            actual,
        }
    }

    /// Checks length and digest, then publishes. On any mismatch the temporary file is dropped.
    pub(crate) fn finish(self) -> Result<BlobRef, OciError> {
        if self.written != self.size {
            return Err(self.size_error(self.written));
        }
        match self.writer.finish_expect(&self.expected) {
            Ok(blob) => Ok(blob),
            Err(StoreError::DigestMismatch { expected, actual }) => Err(OciError::DigestMismatch {
                what: self.what,
                expected,
                actual,
            }),
            Err(error) => Err(error.into()),
        }
    }
}

/// Starts the blocking writer task. Send [`Chunk::Data`] then [`Chunk::End`]; dropping the sender
/// without `End` aborts (nothing is published) and the task reports [`OciError::Internal`].
pub(crate) fn spawn_sink<B>(
    store: &Store,
    expected: BlobDigest,
    size: u64,
    what: String,
) -> (
    mpsc::Sender<Chunk<B>>,
    JoinHandle<Result<BlobRef, OciError>>,
)
where
    B: AsRef<[u8]> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Chunk<B>>(CHANNEL_DEPTH);
    let store = store.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let mut w = VerifyingWriter::new(&store, expected, size, what)?;
        loop {
            match rx.blocking_recv() {
                Some(Chunk::Data(b)) => w.write(b.as_ref())?,
                Some(Chunk::End) => return w.finish(),
                None => return Err(OciError::Internal("blob transfer aborted".into())),
            }
        }
    });
    (tx, handle)
}

/// Waits for a sink task.
pub(crate) async fn join_sink(
    h: JoinHandle<Result<BlobRef, OciError>>,
) -> Result<BlobRef, OciError> {
    match h.await {
        Ok(r) => r,
        Err(e) => Err(OciError::Internal(format!("blob writer task failed: {e}"))),
    }
}

/// Stores small, already verified bytes (manifests, indexes) without blocking the runtime.
pub(crate) async fn put_verified_bytes(
    store: &Store,
    bytes: Vec<u8>,
    digest: BlobDigest,
) -> Result<BlobRef, OciError> {
    let store = store.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<BlobRef, OciError> {
        let blob = BlobRef {
            digest,
            size: bytes.len() as u64,
        };
        if store.has_blob(&blob) {
            return Ok(blob);
        }
        let mut w = VerifyingWriter::new(&store, digest, bytes.len() as u64, "manifest".into())?;
        w.write(&bytes)?;
        w.finish()
    })
    .await;
    match r {
        Ok(r) => r,
        Err(e) => Err(OciError::Internal(format!("store task failed: {e}"))),
    }
}

/// `store.has_blob` off the runtime threads (a stat, but on a possibly slow disk).
pub(crate) async fn has_blob(store: &Store, blob: BlobRef) -> bool {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.has_blob(&blob))
        .await
        .unwrap_or(false)
}
