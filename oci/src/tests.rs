//! Tests of the registry client against a scripted HTTP/1.1 server (for the paths a real
//! registry cannot easily be made to take: token servers, 5xx, truncated bodies, lying
//! digests), and of OCI layouts built by hand. The real-registry tests are in tests/it/oci.rs.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use lkb_store::{BlobDigest, ErrorCategory, Store};
use serde_json::json;

use super::*;

mod push;

// ---------------------------------------------------------------- a scripted HTTP server

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Announce the full length but send only this many bytes, then close.
    truncate_at: Option<usize>,
}

impl Resp {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncate_at: None,
        }
    }
    fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

struct Server {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let log2 = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                let log = log2.clone();
                std::thread::spawn(move || serve(conn, &*h, &log));
            }
        });
        Server { addr, log }
    }

    fn hits(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn image(&self, rest: &str) -> ImageRef {
        ImageRef::parse(&format!("{}/{rest}", self.addr)).unwrap()
    }
}

fn serve(conn: TcpStream, h: &(dyn Fn(&Req) -> Resp + Send + Sync), log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut l = String::new();
            if reader.read_line(&mut l).unwrap_or(0) == 0 {
                return;
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let req = Req {
            method,
            path,
            headers,
            body,
        };
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method, req.path));
        let resp = h(&req);
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let _ = out.write_all(head.as_bytes());
        match resp.truncate_at {
            Some(n) => {
                let _ = out.write_all(&resp.body[..n]);
                let _ = out.flush();
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
            None => {
                let _ = out.write_all(&resp.body);
            }
        }
    }
}

// ---------------------------------------------------------------- images

struct TestImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
}

impl TestImage {
    fn new(arch: &str, layer_sizes: &[usize]) -> TestImage {
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .unwrap();
        let layers: Vec<Vec<u8>> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                // Deterministic bytes that differ per arch and layer.
                let seed = arch
                    .bytes()
                    .fold(i as u32 + 7, |a, b| a.wrapping_mul(31) ^ b as u32);
                (0..*n)
                    .map(|k| ((k as u32).wrapping_mul(2654435761) ^ seed) as u8)
                    .collect()
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config).to_string(), "size": config.len()},
            "layers": layers.iter().map(|l| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha256_digest(l).to_string(), "size": l.len()
            })).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage {
            manifest,
            config,
            layers,
        }
    }

    fn digest(&self) -> BlobDigest {
        sha256_digest(&self.manifest)
    }

    fn blobs(&self) -> Vec<Vec<u8>> {
        let mut v = vec![self.config.clone()];
        v.extend(self.layers.iter().cloned());
        v
    }
}

fn index_of(images: &[(&TestImage, &str, Option<&str>)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|(im, arch, variant)| {
            let mut p = json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant { p["variant"] = json!(v); }
            json!({"mediaType": OCI_MANIFEST, "digest": im.digest().to_string(),
                   "size": im.manifest.len(), "platform": p})
        }).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A registry serving `repo` with tag `tag` → `top` (manifest or index bytes) and all blobs.
fn registry_handler(
    repo: &str,
    tag: &str,
    top: Vec<u8>,
    manifests: Vec<Vec<u8>>,
    blobs: Vec<Vec<u8>>,
) -> impl Fn(&Req) -> Option<Resp> + Send + Sync + 'static {
    let repo = repo.to_string();
    let tag = tag.to_string();
    let top_digest = sha256_digest(&top).to_string();
    let mut by_digest: BTreeMap<String, (Vec<u8>, bool)> = BTreeMap::new();
    by_digest.insert(top_digest, (top.clone(), true));
    for m in manifests {
        by_digest.insert(sha256_digest(&m).to_string(), (m, true));
    }
    for b in blobs {
        by_digest.insert(sha256_digest(&b).to_string(), (b, false));
    }
    move |req: &Req| {
        let mpfx = format!("/v2/{repo}/manifests/");
        let bpfx = format!("/v2/{repo}/blobs/");
        if let Some(reference) = req.path.strip_prefix(&mpfx) {
            let key = if reference == tag {
                sha256_digest(&top).to_string()
            } else {
                reference.to_string()
            };
            return Some(match by_digest.get(&key) {
                Some((bytes, true)) => {
                    let media =
                        serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["mediaType"]
                            .as_str()
                            .unwrap()
                            .to_string();
                    Resp::new(200, bytes.clone())
                        .header("Content-Type", &media)
                        .header("Docker-Content-Digest", &key)
                }
                _ => Resp::new(
                    404,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                ),
            });
        }
        if let Some(d) = req.path.strip_prefix(&bpfx) {
            return Some(match by_digest.get(d) {
                Some((bytes, _)) => Resp::new(200, bytes.clone()),
                None => Resp::new(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#),
            });
        }
        None
    }
}

fn fast_config() -> RegistryConfig {
    RegistryConfig {
        retries: 3,
        retry_base_delay: Duration::from_millis(1),
        ..RegistryConfig::default()
    }
}

fn open_store(dir: &Path) -> Store {
    Store::open(dir).unwrap()
}

fn tmp_is_empty(store: &Store) -> bool {
    let tmp = store.root().join("store-v1").join("tmp");
    std::fs::read_dir(&tmp)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

async fn pull_all(
    c: &RegistryClient,
    r: &ImageRef,
    p: &Platform,
    store: &Store,
) -> Result<ResolvedImage, OciError> {
    let resolved = c.resolve(r, p, store).await?;
    for l in &resolved.layers {
        let b = c.fetch_blob(r, l, store, &|_| {}).await?;
        assert_eq!(b.digest, l.digest);
    }
    Ok(resolved)
}

// ---------------------------------------------------------------- registry tests

#[test]
fn plain_http_rules() {
    let c = RegistryClient::new(RegistryConfig {
        insecure: vec!["myreg.lan:5000".into(), "http://other.lan".into()],
        ..RegistryConfig::default()
    })
    .unwrap();
    for yes in [
        "localhost",
        "localhost:5000",
        "127.0.0.1:1234",
        "127.0.0.1",
        "[::1]:5000",
        "myreg.lan:5000",
        "other.lan",
    ] {
        assert!(c.uses_plain_http(yes), "{yes}");
    }
    for no in [
        "localhostx:5000",
        "127.0.0.10:5000",
        "myreg.lan",
        "ghcr.io",
        "docker.io",
    ] {
        assert!(!c.uses_plain_http(no), "{no}");
    }
    let r = ImageRef::parse("alpine").unwrap();
    assert_eq!(c.base_url(&r), "https://registry-1.docker.io");
    let r = ImageRef::parse("localhost:5000/x").unwrap();
    assert_eq!(c.base_url(&r), "http://localhost:5000");
}

#[tokio::test]
async fn pulls_a_multi_layer_image_and_stores_everything() {
    let im = TestImage::new("amd64", &[10, 3 * 1024 * 1024 + 17, 0]);
    let h = registry_handler("app", "1", im.manifest.clone(), vec![], im.blobs());
    let srv = Server::start(move |r| h(r).unwrap_or_else(|| Resp::new(404, "")));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("app:1");
    let seen = AtomicUsize::new(0);
    let resolved = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(resolved.index_digest, None);
    assert_eq!(resolved.manifest.digest, im.digest());
    assert_eq!(
        store.read_blob(&resolved.manifest.digest).unwrap(),
        im.manifest
    );
    assert_eq!(store.read_blob(&resolved.config.digest).unwrap(), im.config);
    assert_eq!(resolved.layers.len(), 3);
    for (l, bytes) in resolved.layers.iter().zip(&im.layers) {
        let progress = |n: u64| {
            seen.fetch_max(n as usize, Ordering::SeqCst);
        };
        let b = c.fetch_blob(&r, l, &store, &progress).await.unwrap();
        assert_eq!(b.size, bytes.len() as u64);
        assert_eq!(store.read_blob(&b.digest).unwrap(), *bytes);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3 * 1024 * 1024 + 17);
    // Second fetch of a stored blob does not touch the network.
    let before = srv.hits("/blobs/");
    c.fetch_blob(&r, &resolved.layers[1], &store, &|_| {})
        .await
        .unwrap();
    assert_eq!(srv.hits("/blobs/"), before);
    // The lock-file form round-trips.
    let json = serde_json::to_string(&resolved).unwrap();
    let back: ResolvedImage = serde_json::from_str(&json).unwrap();
    assert_eq!(back, resolved);
    assert_eq!(resolved.pinned().digest(), Some(&im.digest()));
}

#[tokio::test]
async fn index_selects_the_platform_or_lists_the_available_ones() {
    let amd = TestImage::new("amd64", &[100]);
    let arm = TestImage::new("arm64", &[200, 300]);
    let idx = index_of(&[(&amd, "amd64", None), (&arm, "arm64", Some("v8"))]);
    let mut blobs = amd.blobs();
    blobs.extend(arm.blobs());
    let h = registry_handler(
        "multi/arch",
        "latest",
        idx.clone(),
        vec![amd.manifest.clone(), arm.manifest.clone()],
        blobs,
    );
    let srv = Server::start(move |r| h(r).unwrap_or_else(|| Resp::new(404, "")));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("multi/arch");
    let res = pull_all(&c, &r, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(res.index_digest, Some(sha256_digest(&idx)));
    assert_eq!(res.manifest.digest, arm.digest());
    assert_eq!(res.layers.len(), 2);
    assert_eq!(store.read_blob(&sha256_digest(&idx)).unwrap(), idx);
    assert_eq!(res.pinned().digest(), Some(&sha256_digest(&idx)));
    let res = c
        .resolve(&r, &Platform::linux("x86_64"), &store)
        .await
        .unwrap();
    assert_eq!(res.manifest.digest, amd.digest());

    let e = c
        .resolve(&r, &Platform::linux("riscv64"), &store)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::User);
    let msg = e.to_string();
    assert!(
        msg.contains("linux/riscv64") && msg.contains("linux/amd64, linux/arm64/v8"),
        "{msg}"
    );
    assert!(matches!(e, OciError::NoMatchingPlatform { .. }));

    // Resolving a pinned platform manifest directly works too.
    let pinned = r.with_digest(arm.digest());
    let res = c
        .resolve(&pinned, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(res.index_digest, None);
    assert_eq!(res.manifest.digest, arm.digest());
}

#[tokio::test]
async fn tampered_blob_is_rejected_and_nothing_enters_the_store() {
    let im = TestImage::new("amd64", &[64 * 1024]);
    let good = im.layers[0].clone();
    let mut bad = good.clone();
    bad[1000] ^= 0xff;
    let bad_digest = sha256_digest(&bad);
    let layer_digest = sha256_digest(&good).to_string();
    let h = registry_handler("x", "1", im.manifest.clone(), vec![], im.blobs());
    let srv = Server::start(move |r| {
        if r.path.ends_with(&layer_digest) {
            return Resp::new(200, bad.clone());
        }
        h(r).unwrap_or_else(|| Resp::new(404, ""))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("x:1");
    let res = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    let e = c
        .fetch_blob(&r, &res.layers[0], &store, &|_| {})
        .await
        .unwrap_err();
    match &e {
        OciError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, sha256_digest(&good));
            assert_eq!(*actual, bad_digest);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.category(), ErrorCategory::Environment);
    let msg = e.to_string();
    assert!(
        msg.contains(&sha256_digest(&good).to_string()) && msg.contains(&bad_digest.to_string())
    );
    assert!(!store.blob_path(&sha256_digest(&good)).exists());
    assert!(!store.blob_path(&bad_digest).exists());
    assert!(tmp_is_empty(&store));
    // A mismatch is not retried.
    assert_eq!(srv.hits(&sha256_digest(&good).to_string()), 1);
}

#[tokio::test]
async fn wrong_sizes_are_rejected() {
    let im = TestImage::new("amd64", &[1000]);
    let mut longer = im.layers[0].clone();
    longer.extend_from_slice(b"extra");
    let layer_digest = sha256_digest(&im.layers[0]).to_string();
    let h = registry_handler("x", "1", im.manifest.clone(), vec![], im.blobs());
    let srv = Server::start(move |r| {
        if r.path.ends_with(&layer_digest) {
            return Resp::new(200, longer.clone());
        }
        h(r).unwrap_or_else(|| Resp::new(404, ""))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("x:1");
    let res = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    let e = c
        .fetch_blob(&r, &res.layers[0], &store, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            OciError::SizeMismatch {
                expected: 1000,
                actual: 1005,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn manifest_digests_are_verified() {
    let im = TestImage::new("amd64", &[10]);
    let other = TestImage::new("arm64", &[10]);
    let im_digest = im.digest();
    let manifest = im.manifest.clone();
    let other_manifest = other.manifest.clone();
    let srv = Server::start(move |r| {
        if r.path == "/v2/x/manifests/lying" {
            // Announces the digest of another manifest.
            return Resp::new(200, manifest.clone())
                .header("Content-Type", OCI_MANIFEST)
                .header(
                    "Docker-Content-Digest",
                    &sha256_digest(&other_manifest).to_string(),
                );
        }
        if r.path == format!("/v2/x/manifests/{im_digest}") {
            // Serves the wrong bytes for a digest.
            return Resp::new(200, other_manifest.clone()).header("Content-Type", OCI_MANIFEST);
        }
        Resp::new(404, "")
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let e = c
        .resolve(&srv.image("x:lying"), &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OciError::DigestMismatch { expected, actual, .. }
        if expected == other.digest() && actual == im.digest()),
        "{e:?}"
    );
    let e = c
        .resolve(
            &srv.image("x").with_digest(im.digest()),
            &Platform::linux("amd64"),
            &store,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, OciError::DigestMismatch { expected, actual, .. }
        if expected == im.digest() && actual == other.digest()),
        "{e:?}"
    );
    assert!(!store.blob_path(&im.digest()).exists());
    assert!(!store.blob_path(&other.digest()).exists());
}

#[tokio::test]
async fn retries_5xx_429_and_truncated_bodies() {
    let im = TestImage::new("amd64", &[200 * 1024]);
    let layer_digest = sha256_digest(&im.layers[0]).to_string();
    let layer = im.layers[0].clone();
    let h = registry_handler("x", "1", im.manifest.clone(), vec![], im.blobs());
    let blob_calls = Arc::new(AtomicUsize::new(0));
    let manifest_calls = Arc::new(AtomicUsize::new(0));
    let (bc, mc) = (blob_calls.clone(), manifest_calls.clone());
    let srv = Server::start(move |r| {
        if r.path.contains("/manifests/") && mc.fetch_add(1, Ordering::SeqCst) == 0 {
            return Resp::new(429, "slow down").header("Retry-After", "0");
        }
        if r.path.ends_with(&layer_digest) {
            match bc.fetch_add(1, Ordering::SeqCst) {
                0 => return Resp::new(503, "busy"),
                1 => {
                    let mut resp = Resp::new(200, layer.clone());
                    resp.truncate_at = Some(1000);
                    return resp;
                }
                _ => {}
            }
        }
        h(r).unwrap_or_else(|| Resp::new(404, ""))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("x:1");
    let res = pull_all(&c, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(blob_calls.load(Ordering::SeqCst), 3);
    assert_eq!(manifest_calls.load(Ordering::SeqCst), 2);
    assert!(store.has_blob(&lkb_store::BlobRef {
        digest: res.layers[0].digest,
        size: res.layers[0].size
    }));
    assert!(tmp_is_empty(&store));

    // Persistent 5xx gives up with an Environment error naming the URL.
    let srv = Server::start(|_| Resp::new(500, "down"));
    let e = c
        .resolve(&srv.image("x:1"), &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Environment);
    assert!(
        e.to_string()
            .contains(&format!("http://{}/v2/x/manifests/1", srv.addr)),
        "{e}"
    );
    assert_eq!(srv.hits("/manifests/"), 4);
}

#[tokio::test]
async fn not_found_is_a_user_error_naming_image_and_registry() {
    let srv = Server::start(|_| {
        Resp::new(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let e = c
        .resolve(&srv.image("foo:1"), &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::User);
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "image {}/foo:1 not found in registry {}",
            srv.addr, srv.addr
        )),
        "{msg}"
    );
    assert!(msg.contains("MANIFEST_UNKNOWN"), "{msg}");
}

#[tokio::test]
async fn unreachable_registry_is_an_environment_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(RegistryConfig {
        retries: 1,
        ..fast_config()
    })
    .unwrap();
    let r = ImageRef::parse(&format!("127.0.0.1:{port}/x:1")).unwrap();
    let e = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::Unreachable { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Environment);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "registry 127.0.0.1:{port} at http://127.0.0.1:{port}/v2/x/manifests/1"
        )),
        "{msg}"
    );
}

fn bearer_server(required_basic: Option<&'static str>) -> (Server, TestImage, Arc<AtomicUsize>) {
    let im = TestImage::new("amd64", &[5000, 6000]);
    let h = registry_handler("team/app", "v1", im.manifest.clone(), vec![], im.blobs());
    let tokens = Arc::new(AtomicUsize::new(0));
    let t2 = tokens.clone();
    let srv = Server::start(move |r| {
        if r.path.starts_with("/token") {
            t2.fetch_add(1, Ordering::SeqCst);
            // GET carries the parameters in the query, the OAuth2 POST in the form body.
            let params = format!("{}&{}", r.path, String::from_utf8_lossy(&r.body));
            assert!(params.contains("service=mock"), "{params}");
            assert!(
                params.contains("scope=repository%3Ateam%2Fapp%3Apull"),
                "{params}"
            );
            if r.method == "POST" {
                let body = String::from_utf8_lossy(&r.body).to_string();
                if body.contains("grant_type=refresh_token") && body.contains("refresh_token=rt-1")
                {
                    return Resp::new(200, r#"{"access_token":"tok-123","expires_in":300}"#);
                }
                return Resp::new(401, "bad refresh token");
            }
            if let Some(want) = required_basic {
                let got = r.header("authorization").unwrap_or("");
                let expect = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(want)
                );
                if got != expect {
                    return Resp::new(401, "bad credentials");
                }
            }
            return Resp::new(200, r#"{"token":"tok-123","expires_in":300}"#);
        }
        if r.header("authorization") != Some("Bearer tok-123") {
            let host = r.header("host").unwrap().to_string();
            return Resp::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://{host}/token",service="mock",scope="repository:team/app:pull""#
                ),
            );
        }
        h(r).unwrap_or_else(|| Resp::new(404, ""))
    });
    (srv, im, tokens)
}

#[tokio::test]
async fn bearer_token_dance_anonymous_and_cached() {
    let (srv, im, tokens) = bearer_server(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let r = srv.image("team/app:v1");
    let res = pull_all(&c, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(res.manifest.digest, im.digest());
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        1,
        "the token is cached per scope"
    );
    // One 401, then everything authenticated up front.
    assert_eq!(srv.hits("/v2/"), 2 + 1 + 2);
}

#[tokio::test]
async fn bearer_token_with_basic_credentials_and_refresh_tokens() {
    let (srv, _im, tokens) = bearer_server(Some("alice:s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let r = srv.image("team/app:v1");

    // No credentials: the token server refuses, which is the user's to fix.
    let c = RegistryClient::new(fast_config()).unwrap();
    let e = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::AuthRequired { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::User);
    assert!(e.to_string().starts_with(&format!(
        "registry {} requires authentication (401); log in with docker login or add credentials to ~/.docker/config.json",
        srv.addr
    )), "{e}");

    // Credentials from a docker config.json.
    let cfg_json = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        srv.addr,
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let docker = DockerConfig::from_json(cfg_json.as_bytes(), Path::new("/t/config.json")).unwrap();
    let c = RegistryClient::new(RegistryConfig {
        docker_config: docker,
        ..fast_config()
    })
    .unwrap();
    pull_all(&c, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();

    // Wrong explicit credentials: refused, then anonymous is refused too.
    let mut creds = BTreeMap::new();
    creds.insert(srv.addr.clone(), Credential::basic("alice", "wrong"));
    let c = RegistryClient::new(RegistryConfig {
        credentials: creds,
        ..fast_config()
    })
    .unwrap();
    let e = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::AuthFailed { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::User);

    // An identity (refresh) token goes through the OAuth2 POST.
    let mut creds = BTreeMap::new();
    creds.insert(srv.addr.clone(), Credential::IdentityToken("rt-1".into()));
    let c = RegistryClient::new(RegistryConfig {
        credentials: creds,
        ..fast_config()
    })
    .unwrap();
    let before = tokens.load(Ordering::SeqCst);
    c.resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), before + 1);
    assert_eq!(srv.hits("POST /token"), 1);
}

#[tokio::test]
async fn basic_challenge() {
    let im = TestImage::new("amd64", &[10]);
    let h = registry_handler("x", "1", im.manifest.clone(), vec![], im.blobs());
    let srv = Server::start(move |r| {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        if r.header("authorization") != Some(want.as_str()) {
            return Resp::new(401, "")
                .header("WWW-Authenticate", r#"Basic realm="Registry Realm""#);
        }
        h(r).unwrap_or_else(|| Resp::new(404, ""))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let r = srv.image("x:1");
    let c = RegistryClient::new(fast_config()).unwrap();
    let e = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::AuthRequired { .. }), "{e:?}");

    let mut creds = BTreeMap::new();
    creds.insert(srv.addr.clone(), Credential::basic("u", "p"));
    let c = RegistryClient::new(RegistryConfig {
        credentials: creds,
        ..fast_config()
    })
    .unwrap();
    pull_all(&c, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    // Only the first request was challenged.
    assert_eq!(srv.hits("/v2/"), 2 + 1 + 1 + 1);

    let mut creds = BTreeMap::new();
    creds.insert(srv.addr.clone(), Credential::basic("u", "nope"));
    let c = RegistryClient::new(RegistryConfig {
        credentials: creds,
        ..fast_config()
    })
    .unwrap();
    let e = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::AuthFailed { .. }), "{e:?}");
}

#[tokio::test]
async fn schema1_is_unsupported() {
    let srv = Server::start(|_| {
        Resp::new(
            200,
            r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#,
        )
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let c = RegistryClient::new(fast_config()).unwrap();
    let e = c
        .resolve(&srv.image("x:1"), &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::UnsupportedMediaType { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::User);
}

// ---------------------------------------------------------------- OCI layouts

fn write_layout(dir: &Path, blobs: &[&[u8]], entries: serde_json::Value) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    for b in blobs {
        std::fs::write(dir.join("blobs/sha256").join(sha256_digest(b).hex()), b).unwrap();
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries})).unwrap(),
    )
    .unwrap();
}

fn desc(bytes: &[u8], media: &str, annotations: serde_json::Value) -> serde_json::Value {
    json!({"mediaType": media, "digest": sha256_digest(bytes).to_string(), "size": bytes.len(),
           "annotations": annotations})
}

#[tokio::test]
async fn layout_find_resolve_and_fetch() {
    let amd = TestImage::new("amd64", &[1000, 2000]);
    let arm = TestImage::new("arm64", &[3000]);
    let idx = index_of(&[(&amd, "amd64", None), (&arm, "arm64", None)]);
    let single = TestImage::new("amd64", &[42]);
    let mut blobs: Vec<Vec<u8>> = vec![
        idx.clone(),
        amd.manifest.clone(),
        arm.manifest.clone(),
        single.manifest.clone(),
    ];
    blobs.extend(amd.blobs());
    blobs.extend(arm.blobs());
    blobs.extend(single.blobs());
    let blob_refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().unwrap();
    write_layout(
        dir.path(),
        &blob_refs,
        json!([
            desc(
                &idx,
                OCI_INDEX,
                json!({ANNOTATION_REF_NAME: "docker.io/linuxkit/init:v1"})
            ),
            desc(
                &single.manifest,
                OCI_MANIFEST,
                json!({ANNOTATION_CONTAINERD_NAME: "localhost:5000/single"})
            ),
        ]),
    );
    let layout = OciLayout::open(dir.path()).unwrap();
    // Canonical and short spellings match; unknown tags do not.
    let init = ImageRef::parse("linuxkit/init:v1").unwrap();
    assert_eq!(
        layout.find(&init).unwrap().digest,
        sha256_digest(&idx).to_string()
    );
    assert!(
        layout
            .find(&ImageRef::parse("docker.io/linuxkit/init:v1").unwrap())
            .is_some()
    );
    assert!(
        layout
            .find(&ImageRef::parse("linuxkit/init:v2").unwrap())
            .is_none()
    );
    // Untagged ref vs containerd name; untagged also matches :latest.
    assert!(
        layout
            .find(&ImageRef::parse("localhost:5000/single").unwrap())
            .is_some()
    );
    // Digest refs match roots and any blob.
    let by_digest = init.with_digest(arm.digest());
    assert_eq!(
        layout.find(&by_digest).unwrap().size,
        arm.manifest.len() as u64
    );

    let sdir = tempfile::tempdir().unwrap();
    let store = open_store(sdir.path());
    let res = layout
        .resolve(&init, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(res.index_digest, Some(sha256_digest(&idx)));
    assert_eq!(res.manifest.digest, arm.digest());
    assert_eq!(store.read_blob(&res.config.digest).unwrap(), arm.config);
    let b = layout
        .fetch_blob(&init, &res.layers[0], &store, &|_| {})
        .await
        .unwrap();
    assert_eq!(store.read_blob(&b.digest).unwrap(), arm.layers[0]);

    let e = layout
        .resolve(&init, &Platform::linux("s390x"), &store)
        .await
        .unwrap_err();
    assert!(
        matches!(e, OciError::NoMatchingPlatform { ref available, .. } if available.len() == 2),
        "{e:?}"
    );
    let res = layout
        .resolve(&by_digest, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(res.manifest.digest, arm.digest());
    let e = layout
        .resolve(
            &ImageRef::parse("nothere").unwrap(),
            &Platform::linux("amd64"),
            &store,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::NotInSources { .. }), "{e:?}");

    // Through the trait object, with a registry that would fail if asked.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sources: Arc<dyn ImageSource> = Arc::new(ImageSources::new(
        vec![layout.clone()],
        Some(
            RegistryClient::new(RegistryConfig {
                retries: 0,
                ..fast_config()
            })
            .unwrap(),
        ),
    ));
    let single_ref = ImageRef::parse("localhost:5000/single").unwrap();
    let res = sources
        .resolve(&single_ref, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(res.manifest.digest, single.digest());
    sources
        .fetch_blob(&single_ref, &res.layers[0], &store, &|_| {})
        .await
        .unwrap();
    let missing = ImageRef::parse(&format!("127.0.0.1:{port}/nope:1")).unwrap();
    let e = sources
        .resolve(&missing, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::Unreachable { .. }), "{e:?}");
    let offline = ImageSources::new(vec![layout.clone()], None);
    let e = offline
        .resolve(&missing, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::NotInSources { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
}

#[tokio::test]
async fn layout_tampered_and_missing_blobs() {
    let im = TestImage::new("amd64", &[4096, 10]);
    let blobs: Vec<Vec<u8>> = std::iter::once(im.manifest.clone())
        .chain(im.blobs())
        .collect();
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().unwrap();
    write_layout(
        dir.path(),
        &refs,
        json!([desc(
            &im.manifest,
            OCI_MANIFEST,
            json!({ANNOTATION_REF_NAME: "example.com/t:1"})
        )]),
    );
    let layout = OciLayout::open(dir.path()).unwrap();
    let r = ImageRef::parse("example.com/t:1").unwrap();
    let sdir = tempfile::tempdir().unwrap();
    let store = open_store(sdir.path());
    let res = layout
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();

    // Same length, different content.
    let l0 = &res.layers[0];
    let path = layout.blob_path(&l0.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = layout
        .fetch_blob(&r, l0, &store, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, OciError::DigestMismatch { expected, actual, .. }
        if expected == l0.digest && actual == sha256_digest(&bytes)),
        "{e:?}"
    );
    assert!(!store.blob_path(&l0.digest).exists());
    assert!(tmp_is_empty(&store));

    std::fs::remove_file(layout.blob_path(&res.layers[1].digest)).unwrap();
    let e = layout
        .fetch_blob(&r, &res.layers[1], &store, &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::Layout { .. }), "{e:?}");
    assert!(e.to_string().contains("is missing"), "{e}");

    // A tampered manifest is caught at resolve time.
    let mpath = layout.blob_path(&im.digest());
    std::fs::write(
        &mpath,
        im.manifest
            .iter()
            .map(|b| if *b == b'2' { b'3' } else { *b })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let sdir2 = tempfile::tempdir().unwrap();
    let store2 = open_store(sdir2.path());
    let e = layout
        .resolve(&r, &Platform::linux("amd64"), &store2)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::DigestMismatch { .. }), "{e:?}");

    let e = OciLayout::open(sdir.path()).unwrap_err();
    assert!(matches!(e, OciError::Layout { .. }));
    assert_eq!(e.category(), ErrorCategory::User);
}
