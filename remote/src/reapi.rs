//! The Remote Execution API v2 (Bazel's remote cache protocol) over gRPC: ActionCache,
//! ContentAddressableStorage, ByteStream and Capabilities, as served by bazel-remote,
//! BuildGrid, Buildbarn, NativeLink, BuildBuddy and EngFlow.
//!
//! # Mapping
//!
//! - **Action digest.** REAPI keys results by the digest of an `Action` message. lkb derives it
//!   from its own action key: a `Command` with the arguments `["lkb-action", KEY]`, an `Action`
//!   naming that command and the empty input root, and the SHA-256 of the encoded `Action`.
//!   Protobuf encoding of these fixed fields is deterministic, so every machine derives the same
//!   digest. The `Command` and `Action` are not uploaded: lkb only uses the cache, never
//!   `Execute`. Remote execution would upload them and a real input root (see
//!   docs/architecture.md).
//! - **Action result.** One `output_files` entry per artifact, in order: `path` is the artifact
//!   name, `digest` its blob, and the node property `lkb.kind` its kind (`tree`, `archive`, …).
//!   `exit_code` is 0.
//! - **Blobs** are the store's blobs under their SHA-256. Blobs up to [`BATCH_BLOB_BYTES`] go
//!   through `BatchUpdateBlobs`/`BatchReadBlobs`; larger ones stream through ByteStream in
//!   [`CHUNK_BYTES`] messages, never whole in memory. A broken read resumes at the offset it
//!   reached.
//!
//! `GetCapabilities` is asked once, before the first other call: the cache must offer SHA-256
//! (lkb's digests are SHA-256; another function is refused with a clear error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use lkb_store::{
    ActionKey, ActionResult, ArtifactKind, BlobDigest, BlobRef, RemoteCache, RemoteError, Store,
    StoreError,
};
use prost::Message as _;
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;
use tonic::transport::Channel;

use crate::{ConfigError, RemoteOptions, Timeouts};

/// Blobs up to this size use the batch calls (well under the usual 4 MiB message limit).
pub const BATCH_BLOB_BYTES: u64 = 1024 * 1024;
/// Size of one ByteStream message.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Digests per `FindMissingBlobs` request.
const FIND_MISSING_BATCH: usize = 4096;
/// How often a broken ByteStream read is resumed before the download fails.
const READ_RESUMES: u32 = 3;
/// The node property that carries an artifact's kind.
const KIND_PROPERTY: &str = "lkb.kind";

const SHA256: i32 = re::digest_function::Value::Sha256 as i32;

/// Where the cache is.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL as the user gave it (no credentials: they never go in the URL).
    pub url: String,
    pub tls: bool,
    /// `host:port`.
    pub authority: String,
    /// The REAPI instance name (may be empty).
    pub instance: String,
}

/// What `GetCapabilities` said, checked once.
#[derive(Debug, Clone, Copy)]
struct Capabilities {
    /// The server's limit on a batch request; 0 means no limit.
    max_batch_bytes: u64,
}

/// A REAPI cache.
#[derive(Debug)]
pub struct ReapiCache {
    endpoint: Endpoint,
    channel: Channel,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    timeouts: Timeouts,
    capabilities: tokio::sync::OnceCell<Result<Capabilities, RemoteError>>,
}

impl ReapiCache {
    /// The client for `endpoint`; connects on first use. Must be called within a tokio runtime.
    pub fn new(endpoint: Endpoint, options: &RemoteOptions) -> Result<Self, ConfigError> {
        let transport = |message: String| ConfigError::Transport {
            url: endpoint.url.clone(),
            message,
        };
        let scheme = if endpoint.tls { "https" } else { "http" };
        let mut channel =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", endpoint.authority))
                .map_err(|e| transport(e.to_string()))?
                .connect_timeout(options.timeouts.connect)
                .tcp_nodelay(true);
        if endpoint.tls {
            let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &options.ca_cert {
                let pem = std::fs::read(path).map_err(|source| ConfigError::CaCert {
                    path: path.clone(),
                    source,
                })?;
                tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            channel = channel
                .tls_config(tls)
                .map_err(|e| transport(e.to_string()))?;
        }
        let authorization = options
            .credentials
            .as_ref()
            .map(|credentials| {
                credentials.header().parse().map_err(|_| {
                    transport("the credentials hold characters a header cannot".to_owned())
                })
            })
            .transpose()?;
        Ok(ReapiCache {
            channel: channel.connect_lazy(),
            endpoint,
            authorization,
            timeouts: options.timeouts,
            capabilities: tokio::sync::OnceCell::new(),
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Runs one call under the request timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeouts.request, call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "{what}: no answer within {:?}",
                self.timeouts.request
            ))),
        }
    }

    fn error(&self, what: &str, status: &tonic::Status) -> RemoteError {
        status_error(&self.endpoint.url, what, status)
    }

    /// The per-blob status of a batch call, as an error unless it is OK.
    fn batch_status(
        &self,
        what: &str,
        status: Option<bazel_remote_apis::google::rpc::Status>,
    ) -> Result<(), RemoteError> {
        match status.filter(|status| status.code != 0) {
            Some(status) => Err(self.error(
                what,
                &tonic::Status::new(tonic::Code::from(status.code), status.message),
            )),
            None => Ok(()),
        }
    }

    /// What `GetCapabilities` said. Asked once: callers waiting meanwhile share the answer,
    /// and a failure is kept too, so a dead server costs one timeout, not one per caller.
    async fn capabilities(&self) -> Result<Capabilities, RemoteError> {
        self.capabilities
            .get_or_init(|| async {
                let request = self.request(re::GetCapabilitiesRequest {
                    instance_name: self.endpoint.instance.clone(),
                });
                let reply = self
                    .bounded(
                        "GetCapabilities",
                        CapabilitiesClient::new(self.channel.clone()).get_capabilities(request),
                    )
                    .await
                    .map_err(|status| self.error("GetCapabilities", &status))?;
                let Some(cache) = reply.cache_capabilities else {
                    return Err(RemoteError::refused(format!(
                        "{} offers no cache (no cache capabilities)",
                        self.endpoint.url
                    )));
                };
                if !cache.digest_functions.contains(&SHA256) {
                    let offered: Vec<String> = cache
                        .digest_functions
                        .iter()
                        .map(|f| {
                            re::digest_function::Value::try_from(*f)
                                .map_or_else(|_| f.to_string(), |v| v.as_str_name().to_owned())
                        })
                        .collect();
                    return Err(RemoteError::refused(format!(
                        "{} offers digest functions [{}]; lkb needs SHA256",
                        self.endpoint.url,
                        offered.join(", ")
                    )));
                }
                Ok(Capabilities {
                    max_batch_bytes: u64::try_from(cache.max_batch_total_size_bytes).unwrap_or(0),
                })
            })
            .await
            .clone()
    }

    /// Whether `size` bytes go through the batch calls.
    async fn batched(&self, size: u64) -> Result<bool, RemoteError> {
        let capabilities = self.capabilities().await?;
        // Leave room for the request's own fields.
        let limit = match capabilities.max_batch_bytes {
            0 => BATCH_BLOB_BYTES,
            max => BATCH_BLOB_BYTES.min(max.saturating_sub(64 * 1024)),
        };
        Ok(size <= limit)
    }

    fn resource(&self, tail: &str) -> String {
        if self.endpoint.instance.is_empty() {
            tail.to_owned()
        } else {
            format!("{}/{tail}", self.endpoint.instance)
        }
    }

    async fn download_batched(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        let request = self.request(re::BatchReadBlobsRequest {
            instance_name: self.endpoint.instance.clone(),
            digests: vec![proto_digest(blob)],
            acceptable_compressors: Vec::new(),
            digest_function: SHA256,
        });
        let reply = self
            .bounded(
                "BatchReadBlobs",
                ContentAddressableStorageClient::new(self.channel.clone())
                    .batch_read_blobs(request),
            )
            .await
            .map_err(|status| self.error("BatchReadBlobs", &status))?;
        let Some(response) = reply.responses.into_iter().next() else {
            return Err(RemoteError::corrupt(format!(
                "{}: BatchReadBlobs returned nothing for {}",
                self.endpoint.url, blob.digest
            )));
        };
        self.batch_status("BatchReadBlobs", response.status)?;
        let size = response.data.len() as u64;
        store
            .put_reader(&mut response.data.as_slice(), Some(&blob.digest))
            .map_err(|error| self.store_error(blob, &error))?;
        Ok(size)
    }

    async fn download_streamed(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        use std::io::Write as _;
        let resource = self.resource(&format!("blobs/{}/{}", blob.digest.hex(), blob.size));
        let mut writer = store
            .writer()
            .map_err(|error| self.store_error(blob, &error))?;
        let mut resumes = 0;
        loop {
            let offset = writer.size();
            let request = self.request(bs::ReadRequest {
                resource_name: resource.clone(),
                read_offset: offset as i64,
                read_limit: 0,
            });
            let mut client = bs::byte_stream_client::ByteStreamClient::new(self.channel.clone());
            let broken = match self.bounded("ByteStream.Read", client.read(request)).await {
                Err(status) => status,
                Ok(mut stream) => loop {
                    match tokio::time::timeout(self.timeouts.request, stream.message()).await {
                        Err(_) => {
                            break tonic::Status::deadline_exceeded(format!(
                                "ByteStream.Read: no data within {:?}",
                                self.timeouts.request
                            ));
                        }
                        Ok(Err(status)) => break status,
                        Ok(Ok(None)) => {
                            return self.finish_download(writer, blob);
                        }
                        Ok(Ok(Some(message))) => {
                            if writer.size() + message.data.len() as u64 > blob.size {
                                return Err(RemoteError::corrupt(format!(
                                    "{}: {} is longer than its {} bytes",
                                    self.endpoint.url, blob.digest, blob.size
                                )));
                            }
                            writer.write_all(&message.data).map_err(|source| {
                                self.store_error(blob, &writer.write_error(source))
                            })?;
                        }
                    }
                },
            };
            let progressed = writer.size() > offset;
            if matches!(broken.code(), tonic::Code::NotFound) || resumes >= READ_RESUMES {
                return Err(self.error("ByteStream.Read", &broken));
            }
            if !progressed {
                resumes += 1;
            }
            tracing::debug!(blob = %blob.digest, at = writer.size(), "resuming a broken read: {broken}");
        }
    }

    fn finish_download(
        &self,
        writer: lkb_store::BlobWriter,
        blob: &BlobRef,
    ) -> Result<u64, RemoteError> {
        let size = writer.size();
        writer
            .finish_expect(&blob.digest)
            .map_err(|error| self.store_error(blob, &error))?;
        Ok(size)
    }

    /// A store error while taking in a download: a digest mismatch is the cache's fault
    /// (corrupt); anything else is local trouble, reported as making the cache unusable.
    fn store_error(&self, blob: &BlobRef, error: &StoreError) -> RemoteError {
        match error {
            StoreError::DigestMismatch { actual, .. } => RemoteError::corrupt(format!(
                "{} sent bytes for {} that hash to {actual}",
                self.endpoint.url, blob.digest
            )),
            other => RemoteError::unavailable(format!(
                "cannot store {} from {}: {other}",
                blob.digest, self.endpoint.url
            )),
        }
    }

    async fn upload_batched(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        let data = store.read_blob(&blob.digest).map_err(|error| {
            RemoteError::unavailable(format!("cannot read {}: {error}", blob.digest))
        })?;
        let request = self.request(re::BatchUpdateBlobsRequest {
            instance_name: self.endpoint.instance.clone(),
            requests: vec![re::batch_update_blobs_request::Request {
                digest: Some(proto_digest(blob)),
                data,
                compressor: 0,
            }],
            digest_function: SHA256,
        });
        let reply = self
            .bounded(
                "BatchUpdateBlobs",
                ContentAddressableStorageClient::new(self.channel.clone())
                    .batch_update_blobs(request),
            )
            .await
            .map_err(|status| self.error("BatchUpdateBlobs", &status))?;
        for response in reply.responses {
            self.batch_status("BatchUpdateBlobs", response.status)?;
        }
        Ok(blob.size)
    }

    async fn upload_streamed(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        let cannot_read = |error: String| {
            RemoteError::unavailable(format!("cannot read {}: {error}", blob.digest))
        };
        // The blob's own file, or the range of a pack it is in.
        let (path, offset, _) = store
            .blob_file(&blob.digest)
            .map_err(|error| cannot_read(error.to_string()))?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|error| cannot_read(error.to_string()))?;
        if offset > 0 {
            use tokio::io::AsyncSeekExt as _;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|error| cannot_read(error.to_string()))?;
        }
        let resource = self.resource(&format!(
            "uploads/{}/blobs/{}/{}",
            upload_id(blob),
            blob.digest.hex(),
            blob.size
        ));
        let size = blob.size;
        let read_error = std::sync::Arc::new(std::sync::Mutex::new(None::<std::io::Error>));
        let failed = read_error.clone();
        let messages = write_messages(file, resource, size, failed);
        let mut client = bs::byte_stream_client::ByteStreamClient::new(self.channel.clone());
        // The whole upload is bounded by the request timeout plus 1 s per MiB.
        let limit = self.timeouts.request + Duration::from_secs(size / (1024 * 1024));
        let call = client.write(self.request(messages));
        let reply = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "ByteStream.Write: not done within {limit:?}"
            ))),
        };
        if let Some(error) = read_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(RemoteError::unavailable(format!(
                "cannot read {}: {error}",
                blob.digest
            )));
        }
        let reply = reply.map_err(|status| self.error("ByteStream.Write", &status))?;
        if u64::try_from(reply.committed_size).ok() != Some(size) {
            return Err(RemoteError::unavailable(format!(
                "{}: ByteStream.Write of {} committed {} of {size} bytes",
                self.endpoint.url, blob.digest, reply.committed_size
            )));
        }
        Ok(size)
    }
}

#[async_trait::async_trait]
impl RemoteCache for ReapiCache {
    fn describe(&self) -> String {
        self.endpoint.url.clone()
    }

    async fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>, RemoteError> {
        self.capabilities().await?;
        let request = self.request(re::GetActionResultRequest {
            instance_name: self.endpoint.instance.clone(),
            action_digest: Some(action_digest(key)),
            inline_stdout: false,
            inline_stderr: false,
            inline_output_files: Vec::new(),
            digest_function: SHA256,
        });
        let reply = self
            .bounded(
                "GetActionResult",
                ActionCacheClient::new(self.channel.clone()).get_action_result(request),
            )
            .await;
        match reply {
            Ok(result) => from_proto(&result).map(Some).map_err(|problem| {
                RemoteError::corrupt(format!(
                    "{}: the result for action {key} is not lkb's: {problem}",
                    self.endpoint.url
                ))
            }),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(self.error("GetActionResult", &status)),
        }
    }

    async fn put_action(&self, key: &ActionKey, result: &ActionResult) -> Result<(), RemoteError> {
        self.capabilities().await?;
        let request = self.request(re::UpdateActionResultRequest {
            instance_name: self.endpoint.instance.clone(),
            action_digest: Some(action_digest(key)),
            action_result: Some(to_proto(result)),
            results_cache_policy: None,
            digest_function: SHA256,
        });
        self.bounded(
            "UpdateActionResult",
            ActionCacheClient::new(self.channel.clone()).update_action_result(request),
        )
        .await
        .map_err(|status| self.error("UpdateActionResult", &status))?;
        Ok(())
    }

    async fn find_missing(&self, blobs: &[BlobRef]) -> Result<Vec<BlobRef>, RemoteError> {
        self.capabilities().await?;
        let mut missing = Vec::new();
        for chunk in blobs.chunks(FIND_MISSING_BATCH) {
            let request = self.request(re::FindMissingBlobsRequest {
                instance_name: self.endpoint.instance.clone(),
                blob_digests: chunk.iter().map(proto_digest).collect(),
                digest_function: SHA256,
            });
            let reply = self
                .bounded(
                    "FindMissingBlobs",
                    ContentAddressableStorageClient::new(self.channel.clone())
                        .find_missing_blobs(request),
                )
                .await
                .map_err(|status| self.error("FindMissingBlobs", &status))?;
            for digest in reply.missing_blob_digests {
                match chunk.iter().find(|blob| blob.digest.hex() == digest.hash) {
                    Some(blob) => missing.push(*blob),
                    None => {
                        return Err(RemoteError::corrupt(format!(
                            "{}: FindMissingBlobs named {} which was not asked about",
                            self.endpoint.url, digest.hash
                        )));
                    }
                }
            }
        }
        Ok(missing)
    }

    async fn upload(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        if blob.size == 0 {
            return Ok(0);
        }
        if self.batched(blob.size).await? {
            self.upload_batched(store, blob).await
        } else {
            self.upload_streamed(store, blob).await
        }
    }

    async fn download(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        if blob.size == 0 {
            store
                .put_reader(&mut std::io::empty(), Some(&blob.digest))
                .map_err(|error| self.store_error(blob, &error))?;
            return Ok(0);
        }
        if self.batched(blob.size).await? {
            self.download_batched(store, blob).await
        } else {
            self.download_streamed(store, blob).await
        }
    }
}

/// The ByteStream `Write` messages for a blob of `size` bytes in `file`: one per chunk, read by
/// a task that stays at most two chunks ahead of the sender. A read error ends the stream early
/// (the server then refuses the short write) and is left in `failed`.
fn write_messages(
    mut file: tokio::fs::File,
    resource: String,
    size: u64,
    failed: std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
) -> futures::channel::mpsc::Receiver<bs::WriteRequest> {
    use futures::SinkExt as _;
    let (mut sender, receiver) = futures::channel::mpsc::channel(1);
    tokio::spawn(async move {
        let mut offset = 0u64;
        let mut resource = Some(resource);
        while offset < size {
            let want = (size - offset).min(CHUNK_BYTES as u64) as usize;
            let mut data = vec![0u8; want];
            if let Err(error) = file.read_exact(&mut data).await {
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                return;
            }
            let message = bs::WriteRequest {
                // Only the first message needs the name.
                resource_name: resource.take().unwrap_or_default(),
                write_offset: offset as i64,
                finish_write: offset + want as u64 >= size,
                data,
            };
            offset += want as u64;
            if sender.send(message).await.is_err() {
                return; // the call ended early; its error is reported there
            }
        }
    });
    receiver
}

/// The REAPI action digest lkb uses for `key` (see the module docs).
pub fn action_digest(key: &ActionKey) -> re::Digest {
    let command = re::Command {
        arguments: vec!["lkb-action".to_owned(), key.to_string()],
        ..Default::default()
    };
    let action = re::Action {
        command_digest: Some(digest_of(&command.encode_to_vec())),
        input_root_digest: Some(digest_of(&re::Directory::default().encode_to_vec())),
        ..Default::default()
    };
    digest_of(&action.encode_to_vec())
}

fn digest_of(bytes: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex::encode(Sha256::digest(bytes)),
        size_bytes: bytes.len() as i64,
    }
}

fn proto_digest(blob: &BlobRef) -> re::Digest {
    re::Digest {
        hash: blob.digest.hex(),
        size_bytes: blob.size as i64,
    }
}

/// A name for one upload, unique enough across processes (REAPI asks for a UUID; servers
/// treat it as an opaque string).
fn upload_id(blob: &BlobRef) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(blob.digest.hex());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.update(now.as_nanos().to_le_bytes());
    let h = hex::encode(&hasher.finalize()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn to_proto(result: &ActionResult) -> re::ActionResult {
    re::ActionResult {
        output_files: result
            .outputs
            .iter()
            .map(|artifact| re::OutputFile {
                path: artifact.name.clone(),
                digest: Some(proto_digest(&artifact.blob)),
                is_executable: false,
                contents: Vec::new(),
                node_properties: Some(re::NodeProperties {
                    properties: vec![re::NodeProperty {
                        name: KIND_PROPERTY.to_owned(),
                        value: artifact.kind.name().to_owned(),
                    }],
                    mtime: None,
                    unix_mode: None,
                }),
            })
            .collect(),
        exit_code: 0,
        ..Default::default()
    }
}

fn from_proto(result: &re::ActionResult) -> Result<ActionResult, String> {
    if result.exit_code != 0 {
        return Err(format!("exit code {}", result.exit_code));
    }
    let mut out = ActionResult::new();
    for file in &result.output_files {
        let digest = file
            .digest
            .as_ref()
            .ok_or_else(|| format!("output {:?} has no digest", file.path))?;
        let blob_digest: BlobDigest = format!("sha256:{}", digest.hash)
            .parse()
            .map_err(|e| format!("output {:?}: {e}", file.path))?;
        let size = u64::try_from(digest.size_bytes)
            .map_err(|_| format!("output {:?} has a negative size", file.path))?;
        let kind = file
            .node_properties
            .as_ref()
            .and_then(|p| p.properties.iter().find(|p| p.name == KIND_PROPERTY))
            .and_then(|p| ArtifactKind::ALL.into_iter().find(|k| k.name() == p.value))
            .ok_or_else(|| format!("output {:?} has no {KIND_PROPERTY} property", file.path))?;
        out.push(
            file.path.clone(),
            kind,
            BlobRef {
                digest: blob_digest,
                size,
            },
        );
    }
    Ok(out)
}

/// How a gRPC status reads to the caller: credentials and permissions are a refusal, a blob
/// not found is missing; anything else means the cache is not usable now.
fn status_error(url: &str, what: &str, status: &tonic::Status) -> RemoteError {
    let message = format!("{url}: {what}: {:?}: {}", status.code(), status.message());
    match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            RemoteError::refused(message)
        }
        tonic::Code::NotFound => RemoteError::missing(message),
        _ => RemoteError::unavailable(message),
    }
}

#[cfg(test)]
mod tests;
