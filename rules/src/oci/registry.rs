//! A small OCI distribution client on reqwest: manifests and blobs, the token dance, retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lkb_store::{BlobDigest, BlobRef, Store};
use reqwest::header::{self, HeaderMap};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::auth::{Challenge, Credential, DockerConfig, parse_www_authenticate, registry_key};
use super::digest::{parse_sha256, sha256_digest};
use super::error::chain;
use super::manifest::{MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Manifest, parse_manifest};
use super::sink::{Chunk, has_blob, join_sink, put_verified_bytes, spawn_sink};
use super::{
    ImageRef, LayerDesc, OciError, Platform, ResolvedImage, build_resolved, pick_platform,
};

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
    /// Extra attempts after a connection failure, a 5xx or a 429.
    pub retries: u32,
    /// First back-off delay; doubles per attempt (capped at 10 s).
    pub retry_base_delay: Duration,
    pub connect_timeout: Duration,
    /// Longest pause between two reads of a response body.
    pub read_timeout: Duration,
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
            read_timeout: Duration::from_secs(60),
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

#[derive(Default)]
struct AuthState {
    /// Bearer tokens per (registry, scope).
    tokens: HashMap<(String, String), (String, Instant)>,
    /// The last challenge each registry sent, so later requests can authenticate up front.
    schemes: HashMap<String, Challenge>,
    /// Credentials per registry once looked up (`None`: there are none).
    creds: HashMap<String, Option<Credential>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure", &self.inner.config.insecure)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Why a token request did not produce a token.
enum TokenFailure {
    Denied(StatusCode),
    Error(OciError),
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

    fn state(&self) -> MutexGuard<'_, AuthState> {
        // A panic while holding this lock cannot leave the maps inconsistent: keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
                match parse_manifest(&mbytes, hint).map_err(|p| super::problem(r, &source, p))? {
                    Manifest::Image(m) => (Some((bytes, digest)), mbytes, mdigest, m),
                    Manifest::Index(_) => {
                        return Err(OciError::UnsupportedMediaType {
                            reference: r.original().to_string(),
                            media_type: "nested image index".to_string(),
                        });
                    }
                }
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

    async fn fetch_verified(
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
        let mut attempt = 0u32;
        loop {
            match self
                .download_once(r, &url, digest, size, &what, store, progress)
                .await
            {
                Err(e) if e.is_transient() && attempt < self.inner.config.retries => {
                    let delay = self.backoff(attempt, None);
                    tracing::warn!(%url, attempt, "blob download failed, retrying in {delay:?}: {e}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
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
    ) -> Result<BlobRef, OciError> {
        let mut resp = self.get(r, url, None).await?;
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
        let mut received = 0u64;
        let outcome: Result<(), OciError> = loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    received += bytes.len() as u64;
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
                Err(e) => {
                    break Err(OciError::Unreachable {
                        registry: r.registry().to_string(),
                        url: url.to_string(),
                        detail: format!(
                            "download interrupted after {received} bytes: {}",
                            chain(&e)
                        ),
                        source: Some(e),
                    });
                }
            }
        };
        drop(tx);
        let written = join_sink(task).await;
        outcome?;
        written
    }

    /// GETs a manifest by tag or digest and verifies its bytes.
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
        let resp = self.get(r, &url, Some(MANIFEST_ACCEPT)).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            let detail = error_summary(resp).await;
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
        let bytes = read_limited(r, &url, resp, MAX_MANIFEST_BYTES).await?;
        let actual = sha256_digest(&bytes);
        let what = || format!("manifest of {r} from registry {}", r.registry());
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
        let detail = error_summary(resp).await;
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

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(Duration::from_secs(30)),
            None => self
                .inner
                .config
                .retry_base_delay
                .saturating_mul(1u32 << attempt.min(16))
                .min(Duration::from_secs(10)),
        }
    }

    /// Sends a request, retrying connection failures, 5xx and 429 with back-off.
    async fn send_retrying(
        &self,
        registry: &str,
        url: &str,
        make: &(dyn Fn() -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<Response, OciError> {
        let mut attempt = 0u32;
        loop {
            let last = attempt >= self.inner.config.retries;
            match make().send().await {
                Err(e) => {
                    if !last && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                    {
                        let delay = self.backoff(attempt, None);
                        tracing::debug!(%url, attempt, "request failed, retrying in {delay:?}: {}", chain(&e));
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(OciError::Unreachable {
                        registry: registry.to_string(),
                        url: url.to_string(),
                        detail: chain(&e),
                        source: Some(e),
                    });
                }
                Ok(resp) => {
                    let s = resp.status();
                    if !last && (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) {
                        let after = header_str(resp.headers(), header::RETRY_AFTER.as_str())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        let delay = self.backoff(attempt, after);
                        tracing::debug!(%url, attempt, status = s.as_u16(), "retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }

    /// An authenticated GET: sends what we know works for the registry, answers one 401 with the
    /// token dance (or basic auth) and tries again.
    async fn get(
        &self,
        r: &ImageRef,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, OciError> {
        let registry = r.registry();
        let scope = format!("repository:{}:pull", r.repository());
        let mut challenged = false;
        loop {
            let auth = self.authorization(r, &scope).await?;
            let http = &self.inner.http;
            let make = || {
                let mut b = http.get(url);
                if let Some(a) = accept {
                    b = b.header(header::ACCEPT, a);
                }
                if let Some(a) = &auth {
                    b = b.header(header::AUTHORIZATION, a.as_str());
                }
                b
            };
            let resp = self.send_retrying(registry, url, &make).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            if challenged {
                let had_creds = self.credentials(registry).await?.is_some();
                let detail = error_summary(resp).await;
                return Err(if had_creds {
                    OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: format!("credentials were rejected (401): {detail}"),
                    }
                } else {
                    OciError::AuthRequired {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                    }
                });
            }
            challenged = true;
            let chosen = challenges
                .iter()
                .find(|c| matches!(c, Challenge::Bearer { realm, .. } if !realm.is_empty()))
                .or_else(|| {
                    challenges
                        .iter()
                        .find(|c| matches!(c, Challenge::Basic { .. }))
                })
                .cloned();
            match chosen {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) => {
                    {
                        let mut st = self.state();
                        st.tokens.remove(&(registry.to_string(), scope.clone()));
                        st.schemes.insert(
                            registry.to_string(),
                            Challenge::Bearer {
                                realm: realm.clone(),
                                service: service.clone(),
                                scope: None,
                            },
                        );
                    }
                    let want = asked.unwrap_or_else(|| scope.clone());
                    self.obtain_token(r, &realm, service.as_deref(), &want, &scope)
                        .await?;
                }
                Some(c @ Challenge::Basic { .. }) => {
                    if self.credentials(registry).await?.is_none() {
                        return Err(OciError::AuthRequired {
                            registry: registry.to_string(),
                            reference: r.original().to_string(),
                        });
                    }
                    self.state().schemes.insert(registry.to_string(), c);
                }
                _ => {
                    if self.credentials(registry).await?.is_none() {
                        return Err(OciError::AuthRequired {
                            registry: registry.to_string(),
                            reference: r.original().to_string(),
                        });
                    }
                    return Err(OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: "401 without a Bearer or Basic challenge".to_string(),
                    });
                }
            }
        }
    }

    /// The Authorization header to send up front, if we know how this registry authenticates.
    async fn authorization(&self, r: &ImageRef, scope: &str) -> Result<Option<String>, OciError> {
        let registry = r.registry();
        let (token, scheme) = {
            let st = self.state();
            let key = (registry.to_string(), scope.to_string());
            let token = st
                .tokens
                .get(&key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(t, _)| t.clone());
            (token, st.schemes.get(registry).cloned())
        };
        if let Some(t) = token {
            return Ok(Some(format!("Bearer {t}")));
        }
        match scheme {
            Some(Challenge::Bearer { realm, service, .. }) => {
                // A new scope (or an expired token) on a registry known to want tokens.
                let t = self
                    .obtain_token(r, &realm, service.as_deref(), scope, scope)
                    .await?;
                Ok(Some(format!("Bearer {t}")))
            }
            Some(Challenge::Basic { .. }) => match self.credentials(registry).await? {
                Some(Credential::Basic { username, password }) => {
                    Ok(Some(basic_header(&username, &password)))
                }
                Some(Credential::IdentityToken(_)) => Err(OciError::AuthFailed {
                    registry: registry.to_string(),
                    reference: r.original().to_string(),
                    detail:
                        "the registry wants basic auth but only an identity token is configured"
                            .to_string(),
                }),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Credentials for a registry: explicit ones first, then docker config (looked up once).
    async fn credentials(&self, registry: &str) -> Result<Option<Credential>, OciError> {
        let key = registry_key(registry);
        if let Some(c) = self
            .inner
            .config
            .credentials
            .iter()
            .find(|(k, _)| registry_key(k) == key)
        {
            return Ok(Some(c.1.clone()));
        }
        if let Some(c) = self.state().creds.get(&key) {
            return Ok(c.clone());
        }
        let cfg = self.inner.config.docker_config.clone();
        let k2 = key.clone();
        let found = tokio::task::spawn_blocking(move || cfg.lookup(&k2))
            .await
            .map_err(|e| OciError::Internal(format!("credential lookup task failed: {e}")))??;
        self.state().creds.insert(key, found.clone());
        Ok(found)
    }

    /// Runs the token dance and caches the token under (registry, `cache_scope`).
    async fn obtain_token(
        &self,
        r: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        cache_scope: &str,
    ) -> Result<String, OciError> {
        let registry = r.registry();
        let creds = self.credentials(registry).await?;
        let result = match self
            .request_token(registry, realm, service, scope, creds.as_ref())
            .await
        {
            Ok(t) => Ok(t),
            Err(TokenFailure::Denied(status)) if creds.is_some() => {
                // Stale credentials should not break public pulls: try anonymously.
                match self
                    .request_token(registry, realm, service, scope, None)
                    .await
                {
                    Ok(t) => {
                        tracing::warn!(
                            registry,
                            "token request with configured credentials was refused ({status}); \
                             continuing anonymously"
                        );
                        Ok(t)
                    }
                    Err(_) => Err(OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: format!("token server {realm} rejected the credentials ({status})"),
                    }),
                }
            }
            Err(TokenFailure::Denied(_)) => Err(OciError::AuthRequired {
                registry: registry.to_string(),
                reference: r.original().to_string(),
            }),
            Err(TokenFailure::Error(e)) => Err(e),
        };
        let (token, ttl) = result?;
        self.state().tokens.insert(
            (registry.to_string(), cache_scope.to_string()),
            (token.clone(), Instant::now() + ttl),
        );
        Ok(token)
    }

    async fn request_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credential>,
    ) -> Result<(String, Duration), TokenFailure> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: realm.to_string(),
                status: 401,
                detail: format!("unusable token realm {realm:?}: {e}"),
            })
        })?;
        let http = &self.inner.http;
        let make: Box<dyn Fn() -> reqwest::RequestBuilder + Send + Sync> = match creds {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = reqwest::Url::parse("http://form.invalid/")
                    .map_err(|e| TokenFailure::Error(OciError::Internal(e.to_string())))?;
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "lkb");
                    q.append_pair("scope", scope);
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                }
                let body = form.query().unwrap_or_default().to_string();
                let u = url.clone();
                Box::new(move || {
                    http.post(u.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.clone())
                })
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                }
                let basic = match other {
                    Some(Credential::Basic { username, password }) => {
                        Some(basic_header(username, password))
                    }
                    _ => None,
                };
                let u = url.clone();
                Box::new(move || {
                    let b = http.get(u.clone());
                    match &basic {
                        Some(h) => b.header(header::AUTHORIZATION, h.as_str()),
                        None => b,
                    }
                })
            }
        };
        let resp = self
            .send_retrying(registry, url.as_str(), &*make)
            .await
            .map_err(TokenFailure::Error)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(TokenFailure::Denied(status));
        }
        if !status.is_success() {
            let detail = error_summary(resp).await;
            return Err(TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("token request failed: {detail}"),
            }));
        }
        let body = resp.bytes().await.map_err(|e| {
            TokenFailure::Error(OciError::Unreachable {
                registry: registry.to_string(),
                url: url.to_string(),
                detail: chain(&e),
                source: Some(e),
            })
        })?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("unparseable token reply: {e}"),
            })
        })?;
        let token = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenFailure::Error(OciError::Registry {
                    registry: registry.to_string(),
                    url: url.to_string(),
                    status: status.as_u16(),
                    detail: "token reply has no token".to_string(),
                })
            })?;
        // Default lifetime per the token spec is 60 s; renew a little early.
        let secs = reply.expires_in.unwrap_or(60).max(10);
        Ok((token, Duration::from_secs(secs - secs.min(10) + 1)))
    }
}

fn basic_header(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_limited(
    r: &ImageRef,
    url: &str,
    mut resp: Response,
    limit: u64,
) -> Result<Vec<u8>, OciError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(OciError::TooLarge {
            what: format!("manifest of {r} at {url}"),
            limit,
        });
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() as u64 + c.len() as u64 > limit {
                    return Err(OciError::TooLarge {
                        what: format!("manifest of {r} at {url}"),
                        limit,
                    });
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(OciError::Unreachable {
                    registry: r.registry().to_string(),
                    url: url.to_string(),
                    detail: chain(&e),
                    source: Some(e),
                });
            }
        }
    }
}

/// The distribution error envelope as one line: `MANIFEST_UNKNOWN: manifest unknown`.
async fn error_summary(resp: Response) -> String {
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
    while let Ok(Some(c)) = resp.chunk().await {
        body.extend_from_slice(&c);
        if body.len() > 64 * 1024 {
            break;
        }
    }
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
