//! Pushes against a scripted registry with a token server: the scopes asked for, chunked
//! uploads with their ranges and moving `Location`s, manifests by tag, and credentials kept
//! from a `Location` on another host. The real-registry tests are in tests/it/remote_cache_oci.rs.

use super::*;

/// What the scripted registry holds and saw.
#[derive(Default)]
struct Pushed {
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: BTreeMap<String, (String, Vec<u8>)>,
    /// The upload in progress (one at a time in these tests).
    upload: Vec<u8>,
    /// Scopes asked of the token server, in order.
    scopes: Vec<String>,
    /// `METHOD path authorization` of every registry request.
    requests: Vec<String>,
}

/// A registry for `team/cache` whose token server hands out `tok-pull` or `tok-push` by the
/// scope asked for; writes need `tok-push`. Upload `Location`s are relative, except that after
/// the first `PATCH` it sends the client to `other_host` (the same server under another name)
/// when given.
fn push_server(other_host: Option<&'static str>) -> (Server, Arc<Mutex<Pushed>>) {
    let state = Arc::new(Mutex::new(Pushed::default()));
    let shared = state.clone();
    let server = Server::start(move |r| {
        let mut state = shared.lock().unwrap();
        let host = r.header("host").unwrap().to_string();
        let port = host.rsplit(':').next().unwrap().to_string();
        if r.path.starts_with("/token") {
            let scope = r
                .path
                .split('&')
                .find_map(|p| p.strip_prefix("scope="))
                .unwrap_or_default()
                .replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2C", ",");
            let token = if scope.ends_with(":pull,push") {
                "tok-push"
            } else {
                "tok-pull"
            };
            state.scopes.push(scope);
            return Resp::new(200, format!(r#"{{"token":"{token}","expires_in":300}}"#));
        }
        let auth = r.header("authorization").unwrap_or("-").to_string();
        state
            .requests
            .push(format!("{} {} {auth}", r.method, r.path));
        let writes = matches!(r.method.as_str(), "POST" | "PATCH" | "PUT");
        let allowed = match auth.as_str() {
            "Bearer tok-push" => true,
            "Bearer tok-pull" => !writes,
            // Only the other host's uploads go without credentials (its "signed" Location).
            _ => r.path.contains("signed=1"),
        };
        if !allowed {
            let actions = if writes { "pull,push" } else { "pull" };
            return Resp::new(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://{host}/token",service="mock",scope="repository:team/cache:{actions}""#
                ),
            );
        }
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        let uploads = "/v2/team/cache/blobs/uploads/";
        match (r.method.as_str(), path) {
            ("HEAD", p) if p.starts_with("/v2/team/cache/blobs/") => {
                let digest = p.rsplit('/').next().unwrap();
                match state.blobs.get(digest) {
                    Some(data) => Resp::new(200, Vec::new())
                        .header("Docker-Content-Digest", digest)
                        .header("X-Length", &data.len().to_string()),
                    None => Resp::new(404, Vec::new()),
                }
            }
            ("POST", p) if p == uploads => {
                state.upload.clear();
                Resp::new(202, Vec::new()).header("Location", &format!("{uploads}u1?_state=0"))
            }
            ("PATCH", p) if p.starts_with(uploads) => {
                let range = r.header("content-range").unwrap();
                let (start, end) = range.split_once('-').unwrap();
                let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
                assert_eq!(start, state.upload.len(), "{range}");
                assert_eq!(end + 1 - start, r.body.len(), "{range}");
                state.upload.extend_from_slice(&r.body);
                let next = match other_host {
                    Some(name) => {
                        format!("http://{name}:{port}{uploads}u1?_state=1&signed=1")
                    }
                    None => format!("{uploads}u1?_state={}", state.upload.len()),
                };
                Resp::new(202, Vec::new())
                    .header("Location", &next)
                    .header("Range", &format!("0-{}", state.upload.len() - 1))
            }
            ("PUT", p) if p.starts_with(uploads) => {
                let digest = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("digest="))
                    .unwrap()
                    .replace("%3A", ":");
                let mut data = std::mem::take(&mut state.upload);
                data.extend_from_slice(&r.body);
                if sha256_digest(&data).to_string() != digest {
                    return Resp::new(400, r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#);
                }
                state.blobs.insert(digest.clone(), data);
                Resp::new(201, Vec::new()).header("Docker-Content-Digest", &digest)
            }
            ("PUT", p) if p.starts_with("/v2/team/cache/manifests/") => {
                let tag = p.rsplit('/').next().unwrap().to_string();
                let media = r.header("content-type").unwrap().to_string();
                let digest = sha256_digest(&r.body).to_string();
                state.manifests.insert(tag, (media, r.body.clone()));
                Resp::new(201, Vec::new()).header("Docker-Content-Digest", &digest)
            }
            ("GET", p) if p.starts_with("/v2/team/cache/manifests/") => {
                let tag = p.rsplit('/').next().unwrap();
                match state.manifests.get(tag) {
                    Some((media, bytes)) => Resp::new(200, bytes.clone())
                        .header("Content-Type", media)
                        .header("Docker-Content-Digest", &sha256_digest(bytes).to_string()),
                    None => Resp::new(
                        404,
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                    ),
                }
            }
            _ => Resp::new(404, Vec::new()),
        }
    });
    (server, state)
}

fn varied(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

#[tokio::test]
async fn large_blobs_go_up_in_chunks_small_ones_at_once_and_manifests_by_tag() {
    let (server, state) = push_server(None);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let client = RegistryClient::new(fast_config()).unwrap();
    let r = ImageRef::repository_in(&server.addr, "team/cache").unwrap();
    let data = varied(2 * CHUNK_BYTES as usize + 1000);
    let big = store.put_bytes(&data).unwrap();

    assert!(!client.blob_exists(&r, &big.digest).await.unwrap());
    assert_eq!(client.push_blob(&r, &store, &big).await.unwrap(), big.size);
    assert!(client.blob_exists(&r, &big.digest).await.unwrap());
    {
        let state = state.lock().unwrap();
        assert_eq!(state.blobs[&big.digest.to_string()], data);
        let patches: Vec<&String> = state
            .requests
            .iter()
            .filter(|l| l.starts_with("PATCH"))
            .collect();
        assert_eq!(patches.len(), 3, "{:?}", state.requests);
        // Reads asked for pull, writes for pull and push.
        assert_eq!(
            state.scopes,
            [
                "repository:team/cache:pull",
                "repository:team/cache:pull,push"
            ]
        );
    }

    let config = client.push_bytes(&r, b"{\"a\":1}".to_vec()).await.unwrap();
    let empty = client.push_bytes(&r, Vec::new()).await.unwrap();
    assert_eq!(empty.size, 0);
    {
        let state = state.lock().unwrap();
        assert_eq!(state.blobs[&config.digest.to_string()], b"{\"a\":1}");
        assert!(state.blobs[&empty.digest.to_string()].is_empty());
        assert_eq!(
            state
                .requests
                .iter()
                .filter(|l| l.starts_with("PATCH"))
                .count(),
            3,
            "small blobs go in one PUT"
        );
    }

    assert_eq!(client.manifest_by_tag(&r, "lkb-1").await.unwrap(), None);
    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let digest = client
        .put_manifest(&r, "lkb-1", OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let fetched = client.manifest_by_tag(&r, "lkb-1").await.unwrap().unwrap();
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(fetched.digest, digest);
    assert_eq!(fetched.media_type.as_deref(), Some(OCI_MANIFEST));
    let e = client
        .put_manifest(&r, "not a tag", OCI_MANIFEST, manifest)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::InvalidReference { .. }), "{e:?}");
}

#[tokio::test]
async fn an_upload_location_on_another_host_gets_no_credentials() {
    let (server, state) = push_server(Some("localhost"));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let client = RegistryClient::new(fast_config()).unwrap();
    let r = ImageRef::repository_in(&server.addr, "team/cache").unwrap();
    let data = varied(CHUNK_BYTES as usize + 10);
    let blob = store.put_bytes(&data).unwrap();
    client.push_blob(&r, &store, &blob).await.unwrap();
    let state = state.lock().unwrap();
    assert_eq!(state.blobs[&blob.digest.to_string()], data);
    let elsewhere: Vec<&String> = state
        .requests
        .iter()
        .filter(|l| l.contains("signed=1"))
        .collect();
    assert_eq!(elsewhere.len(), 2, "{:?}", state.requests);
    assert!(elsewhere.iter().all(|l| l.ends_with(" -")), "{elsewhere:?}");
}
