//! A small OCI distribution client on reqwest: manifests and blobs, the token dance, retries.
//!
//! This file holds the client, its configuration and the manifest requests; the parts of a
//! request live beside it: [`token`] authenticates (challenges, bearer tokens, basic auth,
//! credential lookup; `pull` or `pull,push` scopes), [`retry`] re-sends on connection
//! failures, stalls, 5xx and 429 with back-off from one budget per operation, [`stall`]
//! notices bodies that stop or trickle, [`blob`] streams verified blobs into the store, and
//! [`push`] asks whether a blob is there, uploads blobs and puts and gets manifests by tag.
//!
//! Every body read here is bounded: manifests and indexes by [`MAX_MANIFEST_BYTES`], configs by
//! [`MAX_CONFIG_BYTES`], token replies and error envelopes by their own small limits, layers by
//! the size their descriptor gives.

mod blob;
mod push;
mod retry;
mod stall;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lkb_store::{BlobDigest, BlobRef, Store};
use reqwest::header::{self, HeaderMap};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::auth::{Credential, DockerConfig, registry_key};
use super::digest::{parse_sha256, sha256_digest};
use super::error::chain;
use super::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Manifest, parse_manifest};
use super::sink::put_verified_bytes;
use super::{
    ImageRef, LayerDesc, OciError, Platform, ResolvedImage, build_resolved, pick_platform,
};
use retry::Attempts;
use token::AuthState;

pub use push::{CHUNK_BYTES, FetchedManifest};

/// The largest image config we fetch. Configs are JSON read into memory; real ones are a few
/// KiB, rarely more than a few hundred.
pub(crate) const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

/// How a [`RegistryClient`] talks to registries.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) spoken to over plain HTTP. `localhost`, `127.0.0.1` and `[::1]`
    /// (any port) always are.
    pub insecure: Vec<String>,
    /// Docker's config.json, for `auths`, `credsStore` and `credHelpers`.
    pub docker_config: DockerConfig,
    /// Explicit credentials per registry (`docker.io`, `host:port`); these win over
    /// `docker_config`.
    pub credentials: BTreeMap<String, Credential>,
    /// Concurrent blob downloads per registry.
    pub max_concurrent_fetches: usize,
    /// Extra attempts per manifest or blob (token requests included) after a connection
    /// failure, a stall, a 5xx or a 429. One budget per operation, however deep the retry.
    pub retries: u32,
    /// First back-off delay; doubles per attempt (capped at 10 s).
    pub retry_base_delay: Duration,
    pub connect_timeout: Duration,
    /// A transfer that sends no bytes for this long is stalled (and retried, then failed);
    /// response headers must arrive within `connect_timeout + read_timeout`. Also the window
    /// over which `min_transfer_rate` is measured.
    pub read_timeout: Duration,
    /// Bytes per second a body must average over each `read_timeout` window, else it is
    /// stalled; 0 turns the check off. With the defaults a stalled or trickling transfer fails
    /// in about 1.5 minutes: (1 + `retries`) windows plus back-off.
    pub min_transfer_rate: u64,
    pub user_agent: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            docker_config: DockerConfig::empty(),
            credentials: BTreeMap::new(),
            max_concurrent_fetches: 4,
            retries: 3,
            retry_base_delay: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(20),
            min_transfer_rate: 1024,
            user_agent: concat!("lkb/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// An async registry client; create one per process and clone it freely.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: RegistryConfig,
    state: Mutex<AuthState>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure", &self.inner.config.insecure)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// Builds the client (installs rustls's ring crypto provider if none is installed yet).
    pub fn new(config: RegistryConfig) -> Result<RegistryClient, OciError> {
        // Another part of the process may have installed a provider already; that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .map_err(|e| OciError::Internal(format!("cannot build HTTP client: {}", chain(&e))))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                config,
                state: Mutex::new(AuthState::default()),
                limits: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn uses_plain_http(&self, registry: &str) -> bool {
        let host = registry.to_ascii_lowercase();
        let local = ["localhost", "127.0.0.1", "[::1]"].iter().any(|l| {
            host == *l
                || host
                    .strip_prefix(l)
                    .is_some_and(|rest| rest.starts_with(':'))
        });
        local
            || self
                .inner
                .config
                .insecure
                .iter()
                .any(|i| registry_key(i) == registry_key(&host))
    }

    /// `http[s]://<api host>` for a reference.
    pub fn base_url(&self, r: &ImageRef) -> String {
        let scheme = if self.uses_plain_http(r.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    fn limit(&self, registry: &str) -> Arc<Semaphore> {
        let mut l = self
            .inner
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        l.entry(registry.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.inner.config.max_concurrent_fetches.max(1),
                ))
            })
            .clone()
    }

    /// Resolves `r` to one platform's manifest: fetches the manifest (and index), verifies them
    /// against the requested digest (else `Docker-Content-Digest`), stores them and the config
    /// blob, and lists the layers.
    pub async fn resolve(
        &self,
        r: &ImageRef,
        platform: &Platform,
        store: &Store,
    ) -> Result<ResolvedImage, OciError> {
        let source = format!("registry {}", r.registry());
        let (bytes, ctype, digest) = self
            .fetch_manifest(r, &r.request_reference(), r.digest())
            .await?;
        let top =
            parse_manifest(&bytes, ctype.as_deref()).map_err(|p| super::problem(r, &source, p))?;
        let (index, manifest_bytes, manifest_digest, manifest) = match top {
            Manifest::Image(m) => (None, bytes, digest, m),
            Manifest::Index(idx) => {
                let chosen = pick_platform(r, &idx, platform)?;
                let want = chosen.sha256().ok_or_else(|| OciError::InvalidManifest {
                    reference: r.original().to_string(),
                    source_name: source.clone(),
                    reason: format!("index entry has an unsupported digest {:?}", chosen.digest),
                })?;
                let (mbytes, mtype, mdigest) = self
                    .fetch_manifest(r, &want.to_string(), Some(&want))
                    .await?;
                if mbytes.len() as u64 != chosen.size {
                    return Err(OciError::SizeMismatch {
                        what: format!("manifest of {r} for {platform}"),
                        digest: want,
                        expected: chosen.size,
                        actual: mbytes.len() as u64,
                    });
                }
                let hint = mtype.as_deref().or(Some(chosen.media_type.as_str()));
                let m = super::platform_manifest(r, &source, &mbytes, hint)?;
                (Some((bytes, digest)), mbytes, mdigest, m)
            }
        };

        let index_digest = match index {
            Some((ibytes, idigest)) => {
                put_verified_bytes(store, ibytes, idigest).await?;
                Some(idigest)
            }
            None => None,
        };
        let manifest_ref = put_verified_bytes(store, manifest_bytes, manifest_digest).await?;

        let config_digest = manifest
            .config
            .sha256()
            .ok_or_else(|| OciError::InvalidManifest {
                reference: r.original().to_string(),
                source_name: source.clone(),
                reason: format!(
                    "config has an unsupported digest {:?}",
                    manifest.config.digest
                ),
            })?;
        if manifest.config.size > MAX_CONFIG_BYTES {
            return Err(OciError::TooLarge {
                what: format!(
                    "config {config_digest} of {r} from registry {} ({} bytes)",
                    r.registry(),
                    manifest.config.size
                ),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let config = self
            .fetch_verified(
                r,
                config_digest,
                manifest.config.size,
                format!("config of {r}"),
                store,
                &|_| {},
            )
            .await?;
        build_resolved(
            r,
            platform,
            index_digest,
            manifest_ref,
            config,
            &manifest,
            &source,
        )
    }

    /// Streams one blob into the store, verifying size and sha256 on the way.
    pub async fn fetch_blob(
        &self,
        r: &ImageRef,
        desc: &LayerDesc,
        store: &Store,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<BlobRef, OciError> {
        self.fetch_verified(
            r,
            desc.digest,
            desc.size,
            format!("layer of {r} from registry {}", r.registry()),
            store,
            progress,
        )
        .await
    }

    /// GETs a manifest by tag or digest and verifies its bytes, retrying transient failures.
    async fn fetch_manifest(
        &self,
        r: &ImageRef,
        reference: &str,
        expected: Option<&BlobDigest>,
    ) -> Result<(Vec<u8>, Option<String>, BlobDigest), OciError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base_url(r),
            r.repository()
        );
        let mut attempts = self.attempts();
        loop {
            match self
                .fetch_manifest_once(r, &url, expected, &mut attempts)
                .await
            {
                Err(e) if e.is_transient() && attempts.can_retry() => {
                    self.pause_before_retry(&mut attempts, &url, &e).await;
                }
                Err(e) => return Err(e.after_attempts(attempts.made())),
                Ok(found) => return Ok(found),
            }
        }
    }

    async fn fetch_manifest_once(
        &self,
        r: &ImageRef,
        url: &str,
        expected: Option<&BlobDigest>,
        attempts: &mut Attempts,
    ) -> Result<(Vec<u8>, Option<String>, BlobDigest), OciError> {
        let url = url.to_string();
        let resp = self.get(r, &url, Some(MANIFEST_ACCEPT), attempts).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            let detail = self.error_summary(resp).await;
            return Err(OciError::NotFound {
                reference: r.original().to_string(),
                registry: r.registry().to_string(),
                detail: if detail.is_empty() {
                    format!("404 for {url}")
                } else {
                    detail
                },
            });
        }
        if !status.is_success() {
            return Err(self.status_error(r, &url, resp).await);
        }
        let ctype = header_str(resp.headers(), header::CONTENT_TYPE.as_str());
        let announced = header_str(resp.headers(), "docker-content-digest");
        let what = || format!("manifest of {r} from registry {}", r.registry());
        let bytes =
            read_limited(self, r.registry(), &url, resp, MAX_MANIFEST_BYTES, &what()).await?;
        let actual = sha256_digest(&bytes);
        if let Some(exp) = expected {
            if *exp != actual {
                return Err(OciError::DigestMismatch {
                    what: what(),
                    expected: *exp,
                    actual,
                });
            }
        } else if let Some(announced) = announced.as_deref().and_then(parse_sha256)
            && announced != actual
        {
            return Err(OciError::DigestMismatch {
                what: what(),
                expected: announced,
                actual,
            });
        }
        Ok((bytes, ctype, actual))
    }

    async fn status_error(&self, r: &ImageRef, url: &str, resp: Response) -> OciError {
        let status = resp.status();
        let detail = self.error_summary(resp).await;
        if status == StatusCode::FORBIDDEN {
            return OciError::AuthFailed {
                registry: r.registry().to_string(),
                reference: r.original().to_string(),
                detail: format!("access denied (403) for {url}: {detail}"),
            };
        }
        OciError::Registry {
            registry: r.registry().to_string(),
            url: url.to_string(),
            status: status.as_u16(),
            detail: if detail.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .to_string()
            } else {
                detail
            },
        }
    }
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A request or a body read that failed below HTTP (connection, TLS, timeout).
fn unreachable(registry: &str, url: &str, e: reqwest::Error) -> OciError {
    OciError::Unreachable {
        registry: registry.to_string(),
        url: url.to_string(),
        detail: chain(&e),
        source: Some(e),
    }
}

/// Reads a whole body of `what` from `registry`, refusing more than `limit` bytes and giving up
/// on a stalled transfer.
async fn read_limited(
    client: &RegistryClient,
    registry: &str,
    url: &str,
    mut resp: Response,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, OciError> {
    let too_large = || OciError::TooLarge {
        what: format!("{what} at {url}"),
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let mut watch = client.body_watch();
    let mut out = Vec::new();
    loop {
        match watch.next_chunk(&mut resp).await {
            Ok(Some(c)) => {
                let c = c.as_ref();
                if out.len() as u64 + c.len() as u64 > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(c);
            }
            Ok(None) => return Ok(out),
            Err(failure) => return Err(failure.into_error(what, registry, url, watch.received)),
        }
    }
}

impl RegistryClient {
    /// The distribution error envelope as one line: `MANIFEST_UNKNOWN: manifest unknown`. Best
    /// effort: reads at most 64 KiB for at most the read timeout.
    async fn error_summary(&self, resp: Response) -> String {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            errors: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let mut resp = resp;
        let mut body = Vec::new();
        let read = async {
            while let Ok(Some(c)) = resp.chunk().await {
                body.extend_from_slice(&c);
                if body.len() > 64 * 1024 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.inner.config.read_timeout, read).await;
        if let Ok(env) = serde_json::from_slice::<Envelope>(&body)
            && !env.errors.is_empty()
        {
            return env
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
        }
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        text.chars().take(200).collect()
    }
}
