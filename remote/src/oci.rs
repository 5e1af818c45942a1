//! A remote cache in an OCI registry repository (`oci://HOST[:PORT]/REPO[/MORE]`), through
//! lkb's own registry client (`lkb-oci`), with the pull side's plain-HTTP list and credentials.
//!
//! # Mapping
//!
//! - **Action result** = one OCI image manifest, tagged `lkb-<action key>` (68 characters; a
//!   tag may have 128). Its `artifactType` is [`ARTIFACT_TYPE`] and its config a blob of
//!   media type [`CONFIG_MEDIA_TYPE`]: the result record, JSON
//!   `{"action": KEY, "outputs": [{"name", "kind", "digest", "size"}, …]}`. The outputs' blobs
//!   are the layers, in order, of media type [`LAYER_MEDIA_TYPE`] with the annotations
//!   [`NAME_ANNOTATION`] and [`KIND_ANNOTATION`]; the manifest carries [`ACTION_ANNOTATION`].
//!   Nothing machine-specific goes in (no clock, host or user), so two machines that produce
//!   the same result push the same manifest.
//! - **Blobs** are the store's blobs under their SHA-256, in the same repository. What the
//!   cache lacks is asked with one `HEAD` per blob, [`HEAD_CONCURRENCY`] at a time. Uploads go
//!   in one `PUT` up to [`lkb_oci::CHUNK_BYTES`] and in chunked `PATCH`es read from the store's
//!   file above; downloads stream into the store and are verified before they enter it.
//! - A result is read back from the manifest and its config; the layers must list exactly the
//!   record's blobs and the record must name the key it is tagged with, else the entry is
//!   [`RemoteErrorKind::Corrupt`](lkb_store::RemoteErrorKind::Corrupt).
//!
//! The registry (CNCF distribution 2.8, Debian's `docker-registry`, in the tests) checks that
//! every blob a manifest names is in the repository, so blobs go up before the manifest, the
//! empty blob included. It keeps unknown `artifactType` fields, config and layer media types
//! and annotations as they are, and takes a manifest whose layers repeat a digest or that has
//! no layers (an action without outputs).
//!
//! A file tree's contents are blobs of the repository that no manifest names (only the tree's
//! own blob is a layer). A registry's garbage collection may delete such blobs; lkb then finds
//! them missing when it needs them and builds again without the cache (docs/remote-cache.md).
//!
//! Every request is bounded by [`Timeouts`](crate::Timeouts): the connect timeout, and the
//! request timeout for the answer and for each stretch of a transfer without bytes. Nothing is
//! retried here: a failing cache is the engine's to give up on.

use std::collections::BTreeMap;

use futures::{StreamExt as _, TryStreamExt as _};
use lkb_oci::{
    Credential, Descriptor, ImageRef, OCI_MANIFEST, OciError, RegistryClient, RegistryConfig,
};
use lkb_store::{
    ActionKey, ActionResult, ArtifactKind, BlobDigest, BlobRef, RemoteCache, RemoteError, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};

use crate::{ConfigError, Credentials, RemoteOptions};

/// The `artifactType` of a result's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.lkb.action-result.v1";
/// The media type of a result's config blob (the result record).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.lkb.action-result.config.v1+json";
/// The media type of an output blob, as a layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.lkb.artifact.v1";
/// The layer annotation holding the output's name.
pub const NAME_ANNOTATION: &str = "vnd.lkb.artifact.name";
/// The layer annotation holding the output's kind (`blob`, `tree`, `archive`, `disk-image`).
pub const KIND_ANNOTATION: &str = "vnd.lkb.artifact.kind";
/// The manifest annotation holding the action key.
pub const ACTION_ANNOTATION: &str = "vnd.lkb.action";
/// How many `HEAD` requests `find_missing` has in flight.
pub const HEAD_CONCURRENCY: usize = 8;
/// The largest result record read (records list a few outputs: a few hundred bytes).
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// The tag a result is stored under.
pub fn tag(key: &ActionKey) -> String {
    format!("lkb-{key}")
}

/// An action result's config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    action: String,
    outputs: Vec<OutputRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OutputRecord {
    name: String,
    kind: String,
    digest: String,
    size: u64,
}

/// The manifest of an action result (an OCI image manifest with an `artifactType`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    artifact_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// A descriptor of `blob`.
fn descriptor(
    media_type: &str,
    blob: &BlobRef,
    annotations: BTreeMap<String, String>,
) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: blob.digest.to_string(),
        size: blob.size,
        platform: None,
        annotations,
        urls: Vec::new(),
    }
}

/// The record of `result`: the config blob of its manifest.
fn record_of(key: &ActionKey, result: &ActionResult) -> Record {
    Record {
        action: key.to_string(),
        outputs: result
            .outputs
            .iter()
            .map(|artifact| OutputRecord {
                name: artifact.name.clone(),
                kind: artifact.kind.name().to_owned(),
                digest: artifact.blob.digest.to_string(),
                size: artifact.blob.size,
            })
            .collect(),
    }
}

/// The manifest of `result`, whose record was pushed as `config`.
fn manifest_of(key: &ActionKey, result: &ActionResult, config: &BlobRef) -> ResultManifest {
    ResultManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_owned(),
        artifact_type: ARTIFACT_TYPE.to_owned(),
        config: descriptor(CONFIG_MEDIA_TYPE, config, BTreeMap::new()),
        layers: result
            .outputs
            .iter()
            .map(|artifact| {
                let annotations = BTreeMap::from([
                    (KIND_ANNOTATION.to_owned(), artifact.kind.name().to_owned()),
                    (NAME_ANNOTATION.to_owned(), artifact.name.clone()),
                ]);
                descriptor(LAYER_MEDIA_TYPE, &artifact.blob, annotations)
            })
            .collect(),
        annotations: BTreeMap::from([(ACTION_ANNOTATION.to_owned(), key.to_string())]),
    }
}

/// The manifest and its config blob, if the bytes are an lkb action result's manifest.
fn parse_manifest(bytes: &[u8]) -> Result<(ResultManifest, BlobRef), String> {
    let manifest: ResultManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
    if manifest.schema_version != 2 || manifest.media_type != OCI_MANIFEST {
        return Err(format!(
            "schema {} of media type {:?}, not an OCI image manifest",
            manifest.schema_version, manifest.media_type
        ));
    }
    if manifest.artifact_type != ARTIFACT_TYPE || manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "artifact type {:?} with a config of type {:?}, not an lkb action result",
            manifest.artifact_type, manifest.config.media_type
        ));
    }
    let config = blob_of(&manifest.config.digest, manifest.config.size)?;
    Ok((manifest, config))
}

fn blob_of(digest: &str, size: u64) -> Result<BlobRef, String> {
    let digest: BlobDigest = lkb_oci::parse_sha256(digest)
        .ok_or_else(|| format!("{digest:?} is not a sha256 digest"))?;
    Ok(BlobRef { digest, size })
}

/// The result a record describes, if it is the record for `key` and the manifest's layers are
/// its blobs.
fn result_of(
    key: &ActionKey,
    record: &Record,
    layers: &[Descriptor],
) -> Result<ActionResult, String> {
    if record.action != key.to_string() {
        return Err(format!("the record is for action {}", record.action));
    }
    if record.outputs.len() != layers.len() {
        return Err(format!(
            "{} outputs in the record, {} layers",
            record.outputs.len(),
            layers.len()
        ));
    }
    let mut result = ActionResult::new();
    for (output, layer) in record.outputs.iter().zip(layers) {
        let blob = blob_of(&output.digest, output.size)?;
        if layer.digest != output.digest || layer.size != output.size {
            return Err(format!(
                "output {:?} is {} ({} bytes) in the record, {} ({} bytes) as a layer",
                output.name, output.digest, output.size, layer.digest, layer.size
            ));
        }
        let kind = ArtifactKind::ALL
            .into_iter()
            .find(|kind| kind.name() == output.kind)
            .ok_or_else(|| {
                format!(
                    "output {:?} has unknown kind {:?}",
                    output.name, output.kind
                )
            })?;
        result.push(output.name.clone(), kind, blob);
    }
    Ok(result)
}

/// A registry repository used as a cache.
#[derive(Debug)]
pub struct OciCache {
    url: String,
    repository: ImageRef,
    client: RegistryClient,
}

impl OciCache {
    /// The cache at `repository`; `url` is how the user named it. Uses the pull side's registry
    /// settings from `options.registry` (plain-HTTP registries, Docker's config.json), with
    /// `options.credentials` (basic only) for this registry winning over them. Talks to nobody
    /// yet.
    pub fn new(
        url: &str,
        repository: ImageRef,
        options: &RemoteOptions,
    ) -> Result<Self, ConfigError> {
        let problem = |message: &str| ConfigError::Credentials {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        if options.ca_cert.is_some() {
            return Err(problem(
                "--remote-ca-cert is for grpcs:// caches; a registry is trusted as for pulls \
                 (the system's roots)",
            ));
        }
        let mut config: RegistryConfig = options.registry.clone();
        match &options.credentials {
            None => {}
            Some(Credentials::Basic { user, password }) => {
                config.credentials.insert(
                    repository.registry().to_owned(),
                    Credential::basic(user, password),
                );
            }
            Some(Credentials::Bearer(_)) => {
                return Err(problem(
                    "LKB_REMOTE_TOKEN is for grpc:// caches; give a registry LKB_REMOTE_USER and \
                     LKB_REMOTE_PASSWORD, or its credentials in Docker's config.json",
                ));
            }
        }
        // Bounded by the cache's timeouts, not the pull side's; no retries (see the module docs).
        config.connect_timeout = options.timeouts.connect;
        config.read_timeout = options.timeouts.request;
        config.retries = 0;
        config.max_concurrent_fetches = HEAD_CONCURRENCY;
        let client = RegistryClient::new(config).map_err(|error| ConfigError::Transport {
            url: url.to_owned(),
            message: error.to_string(),
        })?;
        Ok(OciCache {
            url: url.to_owned(),
            repository,
            client,
        })
    }

    /// How an error of the registry client reads to the caller.
    fn error(&self, what: &str, error: &OciError) -> RemoteError {
        let message = format!("{}: {what}: {error}", self.url);
        match error {
            OciError::DigestMismatch { .. }
            | OciError::SizeMismatch { .. }
            | OciError::TooLarge { .. }
            | OciError::InvalidManifest { .. }
            | OciError::UnsupportedMediaType { .. }
            | OciError::Store(StoreError::DigestMismatch { .. }) => RemoteError::corrupt(message),
            OciError::BlobNotFound { .. } | OciError::NotFound { .. } => {
                RemoteError::missing(message)
            }
            OciError::AuthRequired { .. }
            | OciError::AuthFailed { .. }
            | OciError::DockerConfig { .. }
            | OciError::CredentialHelper { .. } => RemoteError::refused(message),
            // A 4xx is a request the registry will not take (a read-only or pull-through
            // registry, a manifest it rejects); 5xx and 429 mean it is not well now.
            OciError::Registry { status, .. } if (400..500).contains(status) && *status != 429 => {
                RemoteError::refused(message)
            }
            _ => RemoteError::unavailable(message),
        }
    }

    fn corrupt(&self, key: &ActionKey, problem: &str) -> RemoteError {
        RemoteError::corrupt(format!(
            "{}: the entry for action {key} is not lkb's: {problem}",
            self.url
        ))
    }
}

#[async_trait::async_trait]
impl RemoteCache for OciCache {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>, RemoteError> {
        let tag = tag(key);
        let Some(fetched) = self
            .client
            .manifest_by_tag(&self.repository, &tag)
            .await
            .map_err(|error| self.error(&format!("manifest {tag}"), &error))?
        else {
            return Ok(None);
        };
        let (manifest, config) =
            parse_manifest(&fetched.bytes).map_err(|problem| self.corrupt(key, &problem))?;
        let bytes = self
            .client
            .blob_bytes(&self.repository, &config, MAX_RECORD_BYTES)
            .await
            .map_err(|error| self.error(&format!("the record of {tag}"), &error))?;
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|error| self.corrupt(key, &format!("unreadable record: {error}")))?;
        result_of(key, &record, &manifest.layers)
            .map(Some)
            .map_err(|problem| self.corrupt(key, &problem))
    }

    async fn put_action(&self, key: &ActionKey, result: &ActionResult) -> Result<(), RemoteError> {
        let tag = tag(key);
        let record = serde_json::to_vec(&record_of(key, result))
            .map_err(|error| RemoteError::unavailable(format!("cannot encode {tag}: {error}")))?;
        let config = self
            .client
            .push_bytes(&self.repository, record)
            .await
            .map_err(|error| self.error(&format!("the record of {tag}"), &error))?;
        let manifest = serde_json::to_vec(&manifest_of(key, result, &config))
            .map_err(|error| RemoteError::unavailable(format!("cannot encode {tag}: {error}")))?;
        self.client
            .put_manifest(&self.repository, &tag, OCI_MANIFEST, manifest)
            .await
            .map_err(|error| self.error(&format!("manifest {tag}"), &error))?;
        Ok(())
    }

    async fn find_missing(&self, blobs: &[BlobRef]) -> Result<Vec<BlobRef>, RemoteError> {
        let present: Vec<bool> = futures::stream::iter(blobs.iter().copied())
            .map(|blob| async move {
                self.client
                    .blob_exists(&self.repository, &blob.digest)
                    .await
                    .map_err(|error| self.error(&format!("HEAD {}", blob.digest), &error))
            })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(blobs
            .iter()
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(blob, _)| *blob)
            .collect())
    }

    async fn upload(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        self.client
            .push_blob(&self.repository, store, blob)
            .await
            .map_err(|error| self.error(&format!("upload of {}", blob.digest), &error))
    }

    async fn download(&self, store: &Store, blob: &BlobRef) -> Result<u64, RemoteError> {
        if blob.size == 0 {
            store
                .put_reader(&mut std::io::empty(), Some(&blob.digest))
                .map_err(|error| self.error("the empty blob", &OciError::Store(error)))?;
            return Ok(0);
        }
        let layer = lkb_oci::LayerDesc {
            digest: blob.digest,
            size: blob.size,
            media_type: LAYER_MEDIA_TYPE.to_owned(),
        };
        self.client
            .fetch_blob(&self.repository, &layer, store, &|_| {})
            .await
            .map_err(|error| self.error(&format!("download of {}", blob.digest), &error))?;
        Ok(blob.size)
    }
}

#[cfg(test)]
mod tests;
