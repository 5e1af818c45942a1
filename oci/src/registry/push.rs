//! Pushing: whether a repository has a blob (`HEAD`), blob uploads, and manifests by tag.
//!
//! A blob goes up in one upload session (`POST /v2/<name>/blobs/uploads/`). A blob of at most
//! [`CHUNK_BYTES`] goes in one `PUT <location>?digest=…`; a larger one as `PATCH`es of
//! [`CHUNK_BYTES`] read from the store one at a time (from the blob's own file, or its range
//! of a pack; never the whole blob in memory), each to the `Location` the previous answer
//! gave, then an empty `PUT …?digest=`. A chunk is not re-sent on its own (the server may have
//! taken part of it): on a transient failure the upload starts over in a new session while
//! the operation's retry budget lasts.
//!
//! Writes ask for the `pull,push` scope; `HEAD` and `GET` for `pull` only, so read-only
//! credentials can still read.

use std::path::PathBuf;

use bytes::Bytes;
use lkb_store::{BlobDigest, BlobRef, Store};
use reqwest::header;
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::retry::Attempts;
use super::token::Access;
use super::{RegistryClient, header_str};
use crate::digest::{parse_sha256, sha256_digest};
use crate::{ImageRef, OciError};

/// Blobs up to this size go up in one request; larger ones in `PATCH`es of this size.
pub const CHUNK_BYTES: u64 = 4 * 1024 * 1024;

const OCTET_STREAM: &str = "application/octet-stream";

/// A manifest fetched by tag: its bytes (verified against `Docker-Content-Digest` when the
/// registry sends one), the `Content-Type` it came with, and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
    pub digest: BlobDigest,
}

/// Where the bytes of a blob being pushed come from.
enum Source<'a> {
    /// The store's file for the blob, read a chunk at a time.
    Store(&'a Store),
    /// Bytes in memory (small records such as configs).
    Bytes(Bytes),
}

/// Reads a blob's bytes from its [`Source`] in chunks of [`CHUNK_BYTES`] at most.
struct Chunks<'a> {
    source: &'a Source<'a>,
    blob: BlobRef,
    /// The file the blob's bytes are in, positioned at the next chunk.
    file: Option<(PathBuf, tokio::fs::File)>,
    offset: u64,
}

impl Chunks<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, OciError> {
        if self.offset >= self.blob.size {
            return Ok(None);
        }
        let want = (self.blob.size - self.offset).min(CHUNK_BYTES);
        let chunk = match self.source {
            Source::Bytes(bytes) => {
                let range = self.offset as usize..(self.offset + want) as usize;
                if range.end > bytes.len() {
                    return Err(OciError::Internal(format!(
                        "blob {} is shorter than its {} bytes",
                        self.blob.digest, self.blob.size
                    )));
                }
                bytes.slice(range)
            }
            Source::Store(store) => {
                if self.file.is_none() {
                    self.file = Some(open_in_store(store, &self.blob).await?);
                }
                let (path, file) = self.file.as_mut().expect("opened just above");
                let mut buffer = vec![0u8; want as usize];
                file.read_exact(&mut buffer)
                    .await
                    .map_err(|source| OciError::Io {
                        path: path.clone(),
                        source,
                    })?;
                Bytes::from(buffer)
            }
        };
        self.offset += want;
        Ok(Some(chunk))
    }
}

/// The store's file holding `blob` (its own file, or the pack it is in), positioned at its
/// first byte.
async fn open_in_store(
    store: &Store,
    blob: &BlobRef,
) -> Result<(PathBuf, tokio::fs::File), OciError> {
    let (path, offset, len) = store.blob_file(&blob.digest)?;
    if len != blob.size {
        return Err(OciError::SizeMismatch {
            what: format!("blob in the store ({})", path.display()),
            digest: blob.digest,
            expected: blob.size,
            actual: len,
        });
    }
    let io = |source| OciError::Io {
        path: path.clone(),
        source,
    };
    let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    Ok((path, file))
}

impl RegistryClient {
    /// Whether `r`'s repository holds blob `digest`.
    pub async fn blob_exists(&self, r: &ImageRef, digest: &BlobDigest) -> Result<bool, OciError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(r), r.repository());
        let request = |http: &reqwest::Client| http.head(&url);
        let mut attempts = self.attempts();
        let resp = self
            .send(r, Access::Pull, &url, &request, &mut attempts)
            .await?;
        match resp.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(r, &url, resp).await),
        }
    }

    /// Uploads a blob of the store to `r`'s repository, streaming it from its file; returns the
    /// bytes sent. The registry checks the digest before it keeps the blob.
    pub async fn push_blob(
        &self,
        r: &ImageRef,
        store: &Store,
        blob: &BlobRef,
    ) -> Result<u64, OciError> {
        self.push(r, &Source::Store(store), blob).await
    }

    /// Uploads bytes held in memory (a config, a small record) as a blob.
    pub async fn push_bytes(&self, r: &ImageRef, bytes: Vec<u8>) -> Result<BlobRef, OciError> {
        let blob = BlobRef {
            digest: sha256_digest(&bytes),
            size: bytes.len() as u64,
        };
        self.push(r, &Source::Bytes(Bytes::from(bytes)), &blob)
            .await?;
        Ok(blob)
    }

    async fn push(
        &self,
        r: &ImageRef,
        source: &Source<'_>,
        blob: &BlobRef,
    ) -> Result<u64, OciError> {
        let mut attempts = self.attempts();
        loop {
            match self.push_once(r, source, blob, &mut attempts).await {
                Err(e) if e.is_transient() && attempts.can_retry() => {
                    let what = format!("upload of blob {} to {}", blob.digest, r.name());
                    self.pause_before_retry(&mut attempts, &what, &e).await;
                }
                Err(e) => return Err(e.after_attempts(attempts.made())),
                Ok(()) => return Ok(blob.size),
            }
        }
    }

    /// One upload session, start to end.
    async fn push_once(
        &self,
        r: &ImageRef,
        source: &Source<'_>,
        blob: &BlobRef,
        attempts: &mut Attempts,
    ) -> Result<(), OciError> {
        let start = format!("{}/v2/{}/blobs/uploads/", self.base_url(r), r.repository());
        let request =
            |http: &reqwest::Client| http.post(&start).header(header::CONTENT_LENGTH, "0");
        let resp = self
            .send(r, Access::Push, &start, &request, attempts)
            .await?;
        let mut location = self.upload_location(r, &start, resp).await?;
        let mut chunks = Chunks {
            source,
            blob: *blob,
            file: None,
            offset: 0,
        };
        let last = if blob.size <= CHUNK_BYTES {
            chunks.next().await?.unwrap_or_default()
        } else {
            while let Some(chunk) = chunks.next().await? {
                let end = chunks.offset - 1;
                let range = format!("{}-{end}", chunks.offset - chunk.len() as u64);
                let request = |http: &reqwest::Client| {
                    http.patch(&location)
                        .header(header::CONTENT_TYPE, OCTET_STREAM)
                        .header(header::CONTENT_RANGE, range.as_str())
                        .header(header::CONTENT_LENGTH, chunk.len())
                        .body(chunk.clone())
                };
                let resp = self
                    .send(r, Access::Push, &location, &request, &mut Attempts::once())
                    .await?;
                location = self.upload_location(r, &location, resp).await?;
            }
            Bytes::new()
        };
        let mut done = reqwest::Url::parse(&location).map_err(|e| OciError::Registry {
            registry: r.registry().to_string(),
            url: location.clone(),
            status: 202,
            detail: format!("unusable upload location: {e}"),
        })?;
        done.query_pairs_mut()
            .append_pair("digest", &blob.digest.to_string());
        let done = done.to_string();
        let request = |http: &reqwest::Client| {
            http.put(&done)
                .header(header::CONTENT_TYPE, OCTET_STREAM)
                .header(header::CONTENT_LENGTH, last.len())
                .body(last.clone())
        };
        let resp = self
            .send(r, Access::Push, &done, &request, &mut Attempts::once())
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(r, &done, resp).await);
        }
        self.check_announced_digest(&resp, &blob.digest, || {
            format!("blob uploaded to {}", r.name())
        })
    }

    /// The absolute URL in an upload answer's `Location`, which must come with `202 Accepted`.
    async fn upload_location(
        &self,
        r: &ImageRef,
        url: &str,
        resp: Response,
    ) -> Result<String, OciError> {
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(r, url, resp).await);
        }
        let location = header_str(resp.headers(), header::LOCATION.as_str());
        let joined = location.as_deref().and_then(|location| {
            reqwest::Url::parse(url)
                .and_then(|base| base.join(location))
                .ok()
        });
        joined
            .map(|u| u.to_string())
            .ok_or_else(|| OciError::Registry {
                registry: r.registry().to_string(),
                url: url.to_string(),
                status: 202,
                detail: format!("upload answer without a usable Location ({location:?})"),
            })
    }

    /// A registry that names the digest of what it stored must name the one we sent.
    fn check_announced_digest(
        &self,
        resp: &Response,
        expected: &BlobDigest,
        what: impl FnOnce() -> String,
    ) -> Result<(), OciError> {
        match header_str(resp.headers(), "docker-content-digest")
            .as_deref()
            .and_then(parse_sha256)
        {
            Some(actual) if actual != *expected => Err(OciError::DigestMismatch {
                what: what(),
                expected: *expected,
                actual,
            }),
            _ => Ok(()),
        }
    }

    /// Stores `bytes` as the manifest tagged `tag` in `r`'s repository, sent with `media_type`
    /// as its `Content-Type`; returns its digest. The registry checks that every blob it names
    /// is in the repository.
    pub async fn put_manifest(
        &self,
        r: &ImageRef,
        tag: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<BlobDigest, OciError> {
        let tagged = r.with_tag(tag)?;
        let url = format!("{}/v2/{}/manifests/{tag}", self.base_url(r), r.repository());
        let digest = sha256_digest(&bytes);
        let body = Bytes::from(bytes);
        let request = |http: &reqwest::Client| {
            http.put(&url)
                .header(header::CONTENT_TYPE, media_type)
                .body(body.clone())
        };
        let mut attempts = self.attempts();
        let resp = self
            .send(&tagged, Access::Push, &url, &request, &mut attempts)
            .await?;
        if !resp.status().is_success() {
            return Err(self.status_error(&tagged, &url, resp).await);
        }
        self.check_announced_digest(&resp, &digest, || format!("manifest {tagged}"))?;
        Ok(digest)
    }

    /// The manifest tagged `tag` in `r`'s repository; `None` when the registry has no such tag
    /// (or no such repository yet).
    pub async fn manifest_by_tag(
        &self,
        r: &ImageRef,
        tag: &str,
    ) -> Result<Option<FetchedManifest>, OciError> {
        let tagged = r.with_tag(tag)?;
        match self.fetch_manifest(&tagged, tag, None).await {
            Ok((bytes, media_type, digest)) => Ok(Some(FetchedManifest {
                bytes,
                media_type,
                digest,
            })),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
