//! Blob downloads: small ones into memory ([`RegistryClient::blob_bytes`]); into the store,
//! nothing to do when the store has the blob; otherwise at most
//! [`RegistryConfig::max_concurrent_fetches`] at once per registry, each body streamed into
//! the store while its size and sha256 are checked, and transient failures retried after a
//! back-off.
//!
//! [`RegistryConfig::max_concurrent_fetches`]: super::RegistryConfig::max_concurrent_fetches

use lkb_store::{BlobDigest, BlobRef, Store};
use reqwest::StatusCode;

use super::retry::Attempts;
use super::{RegistryClient, read_limited};
use crate::digest::sha256_digest;
use crate::sink::{Chunk, has_blob, join_sink, spawn_sink};
use crate::{ImageRef, OciError};

impl RegistryClient {
    pub(super) async fn fetch_verified(
        &self,
        r: &ImageRef,
        digest: BlobDigest,
        size: u64,
        what: String,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        let blob = BlobRef { digest, size };
        if has_blob(store, blob).await {
            progress(size);
            return Ok(blob);
        }
        let limit = self.limit(r.registry());
        let _permit = limit
            .acquire()
            .await
            .map_err(|_| OciError::Internal("download limiter closed".into()))?;
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base_url(r),
            r.repository(),
            digest
        );
        let mut attempts = self.attempts();
        loop {
            match self
                .download_once(r, &url, digest, size, &what, store, progress, &mut attempts)
                .await
            {
                Err(e) if e.is_transient() && attempts.can_retry() => {
                    self.pause_before_retry(&mut attempts, &format!("blob {digest} ({what})"), &e)
                        .await;
                }
                Err(e) => return Err(e.after_attempts(attempts.made())),
                Ok(blob) => return Ok(blob),
            }
        }
    }

    /// A small blob's bytes in memory (a config, a record), verified against `blob`; at most
    /// `limit` bytes are accepted.
    pub async fn blob_bytes(
        &self,
        r: &ImageRef,
        blob: &BlobRef,
        limit: u64,
    ) -> Result<Vec<u8>, OciError> {
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base_url(r),
            r.repository(),
            blob.digest
        );
        let what = format!("blob {} of {}", blob.digest, r.name());
        if blob.size > limit {
            return Err(OciError::TooLarge {
                what: format!("{what} ({} bytes)", blob.size),
                limit,
            });
        }
        let mut attempts = self.attempts();
        loop {
            let result = async {
                let resp = self.get(r, &url, None, &mut attempts).await?;
                match resp.status() {
                    StatusCode::NOT_FOUND => Err(OciError::BlobNotFound {
                        reference: r.original().to_string(),
                        registry: r.registry().to_string(),
                        digest: blob.digest,
                        url: url.clone(),
                    }),
                    status if status.is_success() => {
                        read_limited(self, r.registry(), &url, resp, limit, &what).await
                    }
                    _ => Err(self.status_error(r, &url, resp).await),
                }
            }
            .await;
            match result {
                Err(e) if e.is_transient() && attempts.can_retry() => {
                    self.pause_before_retry(&mut attempts, &what, &e).await;
                }
                Err(e) => return Err(e.after_attempts(attempts.made())),
                Ok(bytes) => {
                    if bytes.len() as u64 != blob.size {
                        return Err(OciError::SizeMismatch {
                            what,
                            digest: blob.digest,
                            expected: blob.size,
                            actual: bytes.len() as u64,
                        });
                    }
                    let actual = sha256_digest(&bytes);
                    if actual != blob.digest {
                        return Err(OciError::DigestMismatch {
                            what,
                            expected: blob.digest,
                            actual,
                        });
                    }
                    return Ok(bytes);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn download_once(
        &self,
        r: &ImageRef,
        url: &str,
        digest: BlobDigest,
        size: u64,
        what: &str,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
        attempts: &mut Attempts,
    ) -> Result<BlobRef, OciError> {
        let mut resp = self.get(r, url, None, attempts).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(OciError::BlobNotFound {
                reference: r.original().to_string(),
                registry: r.registry().to_string(),
                digest,
                url: url.to_string(),
            });
        }
        if !status.is_success() {
            return Err(self.status_error(r, url, resp).await);
        }
        if let Some(len) = resp.content_length()
            && len != size
        {
            return Err(OciError::SizeMismatch {
                what: what.to_string(),
                digest,
                expected: size,
                actual: len,
            });
        }
        let (tx, task) = spawn_sink(store, digest, size, what.to_string());
        let mut watch = self.body_watch();
        let outcome: Result<(), OciError> = loop {
            match watch.next_chunk(&mut resp).await {
                Ok(Some(bytes)) => {
                    let received = watch.received;
                    if received > size {
                        break Err(OciError::SizeMismatch {
                            what: what.to_string(),
                            digest,
                            expected: size,
                            actual: received,
                        });
                    }
                    if tx.send(Chunk::Data(bytes)).await.is_err() {
                        // The writer stopped (disk error, ...): its result says why.
                        break Ok(());
                    }
                    progress(received);
                }
                Ok(None) => {
                    let _ = tx.send(Chunk::End).await;
                    break Ok(());
                }
                Err(failure) => {
                    let what = format!("blob {digest} ({what})");
                    break Err(failure.into_error(&what, r.registry(), url, watch.received));
                }
            }
        };
        drop(tx);
        let written = join_sink(task).await;
        outcome?;
        written
    }
}
