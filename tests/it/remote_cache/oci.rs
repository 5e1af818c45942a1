//! The scenarios against an OCI registry (Debian's `docker-registry`, CNCF distribution 2.8),
//! and what only a registry has: credentials as for pulls (htpasswd behind Docker's
//! config.json or `LKB_REMOTE_USER`/`LKB_REMOTE_PASSWORD`), and what the registry keeps of the
//! manifests lkb pushes.

use lkb_remote::oci::{ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE};
use lkb_tests::registry::{Registry, docker_config_json};

use super::*;

/// The repository the tests cache into (two path components, as on ghcr.io or GitLab).
const REPOSITORY: &str = "team/lkb-cache";

impl CacheServer for Registry {
    fn url(&self) -> String {
        format!("oci://{}/{REPOSITORY}", self.addr())
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.blob_data_path(&lkb_tests::oci::Digest::from_hex(hex).expect("hex digest"))
    }

    fn kill(&mut self) {
        Registry::kill(self);
    }
}

/// The tags of the cache repository.
fn tags(registry: &Registry) -> Vec<String> {
    let listed = registry
        .get(&format!("/v2/{REPOSITORY}/tags/list"))
        .expect("tags/list");
    assert_eq!(listed.status, 200, "{}", listed.text());
    let listed: Value = serde_json::from_slice(&listed.body).expect("tags json");
    listed["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|tag| tag.as_str().expect("tag").to_owned())
        .collect()
}

#[test]
fn a_second_machine_builds_from_the_registry_and_shares_its_change_back() {
    let registry = Registry::start().expect("docker-registry");
    machines_share_results_both_ways(&registry, &[]);

    // What the registry kept: one lkb manifest per action, as pushed.
    let tags = tags(&registry);
    assert!(tags.len() > 10, "{tags:?}");
    assert!(
        tags.iter()
            .all(|tag| tag.starts_with("lkb-") && tag.len() == 68)
    );
    let manifest = registry
        .get_manifest(REPOSITORY, &tags[0])
        .expect("manifest");
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    assert_eq!(
        manifest.header("Content-Type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let manifest: Value = serde_json::from_slice(&manifest.body).expect("json");
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE, "{manifest}");
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().expect("layers");
    assert!(
        layers
            .iter()
            .all(|l| l["mediaType"] == LAYER_MEDIA_TYPE && l["annotations"].is_object()),
        "{manifest}"
    );
}

#[test]
fn read_only_mode_uploads_nothing_to_the_registry() {
    let registry = Registry::start().expect("docker-registry");
    read_only_mode_uploads_nothing(&registry);
    let listed = registry
        .get(&format!("/v2/{REPOSITORY}/tags/list"))
        .expect("tags/list");
    assert_eq!(listed.status, 404, "no repository: {}", listed.text());
}

#[test]
fn a_dead_or_silent_registry_costs_one_warning_and_the_build_succeeds() {
    a_dead_or_silent_cache_costs_one_warning(&|addr| format!("oci://{addr}/{REPOSITORY}"));
}

#[test]
fn a_registry_killed_mid_build_and_a_corrupt_blob_never_break_the_build() {
    let mut registry = Registry::start().expect("docker-registry");
    a_corrupt_blob_and_a_killed_cache_never_break_the_build(&mut registry);
}

/// A registry behind htpasswd: credentials come from Docker's config.json as for pulls, or
/// from `LKB_REMOTE_USER`/`LKB_REMOTE_PASSWORD`, which win for the cache's registry. Wrong or
/// missing credentials cost one warning and the build succeeds locally.
#[test]
fn a_registry_behind_htpasswd_takes_credentials_as_pulls_do() {
    let registry = Registry::start_with_htpasswd("ci", "s3cret pass").expect("docker-registry");
    let url = CacheServer::url(&registry);
    let remote = ["--remote-cache", url.as_str()];
    let config = |password: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        fs_err::write(
            dir.path().join("config.json"),
            docker_config_json(registry.addr(), "ci", password),
        )
        .expect("config.json");
        dir
    };
    let good = config("s3cret pass");
    let bad = config("wrong");
    let env = |dir: &tempfile::TempDir| dir.path().display().to_string();

    // Docker's config.json, as `docker login` writes it.
    let a = Machine::new("alice", "hello\\n").with_env(&[("DOCKER_CONFIG", &env(&good))]);
    let run = a.build(&remote).ok().expect("A builds");
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));
    let s = summary(&run);
    assert!(number(&s, "bytes_uploaded") > 0, "{s}");

    // Wrong credentials, then none: the registry refuses, one warning, a good local build,
    // and no password in what lkb prints.
    let b = Machine::new("bob", "hello\\n").with_env(&[
        ("LKB_REMOTE_USER", "ci"),
        ("LKB_REMOTE_PASSWORD", "wrong-s3cret"),
    ]);
    let run = b.build(&remote).ok().expect("B builds");
    let warned = warnings(&run);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("not used for the rest of this build"),
        "{warned:?}"
    );
    assert!(warned[0].contains("rejected"), "{warned:?}");
    assert!(!run.stderr.contains("wrong-s3cret"), "{}", run.stderr);
    assert_eq!(number(&summary(&run), "remote_hits"), 0);
    same_outputs(&a, &b);
    let c = Machine::new("carol", "hello\\n");
    let run = c.build(&remote).ok().expect("C builds");
    let warned = warnings(&run);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("requires authentication"), "{warned:?}");

    // LKB_REMOTE_USER and LKB_REMOTE_PASSWORD win over a config.json with a stale password.
    let d = Machine::new("dave", "hello\\n").with_env(&[
        ("DOCKER_CONFIG", &env(&bad)),
        ("LKB_REMOTE_USER", "ci"),
        ("LKB_REMOTE_PASSWORD", "s3cret pass"),
    ]);
    let run = d.build(&remote).ok().expect("D builds");
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));
    let s = summary(&run);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    same_outputs(&a, &d);
}

/// The OCI backend on its own: the 5 MiB blob goes up in chunked `PATCH`es and comes back;
/// the empty blob, a result without outputs and one naming a blob twice are taken by the
/// registry; a manifest that is not lkb's under a result's tag is corrupt, and a blob the
/// registry does not have is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oci_backend_uploads_in_chunks_and_refuses_corrupt_blobs() {
    let registry = Registry::start().expect("docker-registry");
    let cache = lkb_remote::connect(
        &CacheServer::url(&registry),
        &lkb_remote::RemoteOptions::default(),
    )
    .expect("backend");
    a_backend_round_trips_and_refuses_corrupt_blobs(cache.clone(), &registry).await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).expect("store");
    let empty = put(&store, b"");
    let once = put(&store, b"once");
    assert_eq!(
        cache.find_missing(&[empty, once]).await.unwrap(),
        vec![empty, once]
    );
    for blob in [empty, once] {
        assert_eq!(cache.upload(&store, &blob).await.unwrap(), blob.size);
    }
    assert!(cache.find_missing(&[empty, once]).await.unwrap().is_empty());
    for (hex, result) in [
        ("01", ActionResult::new()),
        (
            "02",
            ActionResult::new()
                .with("first", ArtifactKind::Blob, once)
                .with("empty", ArtifactKind::Archive, empty)
                .with("again", ArtifactKind::Blob, once),
        ),
    ] {
        let key: ActionKey = hex.repeat(32).parse().unwrap();
        cache.put_action(&key, &result).await.expect("put");
        assert_eq!(cache.get_action(&key).await.unwrap(), Some(result));
    }
    let other = tempfile::tempdir().unwrap();
    let other = Store::open(other.path()).expect("store");
    assert_eq!(cache.download(&other, &empty).await.unwrap(), 0);
    assert_eq!(cache.download(&other, &once).await.unwrap(), once.size);
    assert_eq!(other.read_blob(&once.digest).unwrap(), b"once");

    // Someone else's image under a result's tag.
    let key: ActionKey = "03".repeat(32).parse().unwrap();
    let image = lkb_tests::synthetic::hello_image().expect("image");
    registry
        .push_image(REPOSITORY, &lkb_remote::oci::tag(&key), &image)
        .expect("push");
    let error = cache.get_action(&key).await.expect_err("foreign");
    assert_eq!(error.kind, RemoteErrorKind::Corrupt, "{error}");
    assert!(error.message.contains("not lkb's"), "{error}");

    let never = BlobRef {
        digest: lkb_store::BlobDigest::of_bytes(b"never uploaded"),
        size: 14,
    };
    let error = cache.download(&other, &never).await.expect_err("missing");
    assert_eq!(error.kind, RemoteErrorKind::Missing, "{error}");
}
