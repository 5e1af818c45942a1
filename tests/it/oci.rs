//! Image acquisition (`lkb_rules::oci`) against a real registry (Debian's docker-registry) and
//! real OCI layouts built by the test-support crate.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use lkb_rules::oci::{
    Credential, DockerConfig, ImageRef, ImageSource, ImageSources, OciError, OciLayout, Platform,
    RegistryClient, RegistryConfig, ResolvedImage,
};
use lkb_store::{BlobDigest, BlobRef, ErrorCategory, Store};
use lkb_tests::oci::{
    Compression, Flavor, Image, ImageBuilder, IndexBuilder, Layer, OciLayout as LayoutBuilder,
    Platform as TestPlatform,
};
use lkb_tests::registry::{Registry, free_port};

fn digest(d: &lkb_tests::oci::Digest) -> BlobDigest {
    d.to_string().parse().unwrap()
}

fn image(platform: TestPlatform, flavor: Flavor) -> Image {
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    ImageBuilder::new()
        .platform(platform.clone())
        .flavor(flavor)
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/platform", platform.to_string()),
        )
        .layer(
            Layer::new()
                .compression(Compression::Zstd)
                .file("usr/share/big", big),
        )
        .layer(
            Layer::new()
                .compression(Compression::None)
                .symlink("bin", "/usr/bin"),
        )
        .entrypoint(&["/bin/sh"])
        .build()
        .unwrap()
}

fn client(config: RegistryConfig) -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        retries: 1,
        retry_base_delay: std::time::Duration::from_millis(5),
        ..config
    })
    .unwrap()
}

async fn pull(
    source: &dyn ImageSource,
    r: &ImageRef,
    platform: &Platform,
    store: &Store,
) -> Result<ResolvedImage, OciError> {
    let resolved = source.resolve(r, platform, store).await?;
    for layer in &resolved.layers {
        source.fetch_blob(r, layer, store, &|_| {}).await?;
    }
    Ok(resolved)
}

/// Everything the image consists of is in the store, byte for byte.
fn assert_stored(store: &Store, resolved: &ResolvedImage, image: &Image) {
    assert_eq!(resolved.manifest.digest, digest(image.digest()));
    assert_eq!(
        store.read_blob(&resolved.manifest.digest).unwrap(),
        image.manifest.data
    );
    assert_eq!(resolved.config.digest, digest(&image.config.digest));
    assert_eq!(
        store.read_blob(&resolved.config.digest).unwrap(),
        image.config.data
    );
    assert_eq!(resolved.layers.len(), image.layers.len());
    for (got, want) in resolved.layers.iter().zip(&image.layers) {
        assert_eq!(got.digest, digest(&want.digest));
        assert_eq!(got.size, want.size());
        assert_eq!(got.media_type, want.media_type);
        assert_eq!(store.read_blob(&got.digest).unwrap(), want.data);
    }
}

fn tmp_is_empty(store: &Store) -> bool {
    let tmp = store.root().join("store-v1").join("tmp");
    std::fs::read_dir(tmp)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn pulls_multi_layer_images_oci_and_docker() {
    let registry = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = client(RegistryConfig::default());
    for (repo, flavor) in [("lkb/oci", Flavor::Oci), ("lkb/docker", Flavor::Docker)] {
        let img = image(TestPlatform::linux_amd64(), flavor);
        registry.push_image(repo, "1.0", &img).unwrap();
        let r = ImageRef::parse(&format!("{}/{repo}:1.0", registry.addr())).unwrap();
        let resolved = pull(&c, &r, &Platform::linux("amd64"), &store)
            .await
            .unwrap();
        assert_eq!(resolved.index_digest, None);
        assert_stored(&store, &resolved, &img);
        // By digest too.
        let pinned = resolved.pinned();
        let again = c
            .resolve(&pinned, &Platform::linux("amd64"), &store)
            .await
            .unwrap();
        assert_eq!(again.manifest, resolved.manifest);
    }
    // An untagged ref asks the registry for latest.
    let img = image(TestPlatform::linux_amd64(), Flavor::Oci);
    registry.push_image("lkb/untagged", "latest", &img).unwrap();
    let r = ImageRef::parse(&format!("{}/lkb/untagged", registry.addr())).unwrap();
    let resolved = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_eq!(resolved.manifest.digest, digest(img.digest()));
}

#[tokio::test]
async fn index_with_two_platforms_selects_the_right_one() {
    let registry = Registry::start().unwrap();
    let amd = image(TestPlatform::linux_amd64(), Flavor::Oci);
    let arm = image(TestPlatform::linux_arm64(), Flavor::Oci);
    let index = IndexBuilder::new()
        .image(amd.clone())
        .image(arm.clone())
        .attestation_for(&amd)
        .unwrap()
        .build()
        .unwrap();
    registry.push_image("lkb/multi", "2", &index).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = client(RegistryConfig::default());
    let r = ImageRef::parse(&format!("{}/lkb/multi:2", registry.addr())).unwrap();

    let resolved = pull(&c, &r, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(resolved.index_digest, Some(digest(index.digest())));
    assert_eq!(
        store.read_blob(&digest(index.digest())).unwrap(),
        index.index.data
    );
    assert_stored(&store, &resolved, &arm);
    let resolved = pull(&c, &r, &Platform::linux("x86_64"), &store)
        .await
        .unwrap();
    assert_stored(&store, &resolved, &amd);

    let e = c
        .resolve(&r, &Platform::linux("riscv64"), &store)
        .await
        .unwrap_err();
    assert_eq!(e.category(), ErrorCategory::User);
    let msg = e.to_string();
    assert!(msg.contains("linux/riscv64"), "{msg}");
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
    assert!(
        !msg.contains("unknown"),
        "attestations are not platforms: {msg}"
    );
}

#[tokio::test]
async fn tampered_blob_is_rejected_and_nothing_enters_the_store() {
    let registry = Registry::start().unwrap();
    let img = image(TestPlatform::linux_amd64(), Flavor::Oci);
    registry.push_image("lkb/tamper", "1", &img).unwrap();
    let victim = &img.layers[1];
    registry.corrupt_blob(&victim.digest).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = client(RegistryConfig::default());
    let r = ImageRef::parse(&format!("{}/lkb/tamper:1", registry.addr())).unwrap();
    let resolved = c
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    let e = c
        .fetch_blob(&r, &resolved.layers[1], &store, &|_| {})
        .await
        .unwrap_err();
    let OciError::DigestMismatch {
        expected, actual, ..
    } = &e
    else {
        panic!("expected a digest mismatch, got {e:?}");
    };
    assert_eq!(*expected, digest(&victim.digest));
    assert_ne!(actual, expected);
    assert_eq!(e.category(), ErrorCategory::Environment);
    let msg = e.to_string();
    assert!(
        msg.contains(&expected.to_string()) && msg.contains(&actual.to_string()),
        "{msg}"
    );
    assert!(!store.blob_path(expected).exists());
    assert!(!store.blob_path(actual).exists());
    assert!(!store.has_blob(&BlobRef {
        digest: *expected,
        size: victim.size()
    }));
    assert!(tmp_is_empty(&store));
    // The untouched layers still come through.
    c.fetch_blob(&r, &resolved.layers[0], &store, &|_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn htpasswd_registry_needs_credentials() {
    let registry = Registry::start_with_htpasswd("lkb", "s3cret pass").unwrap();
    let img = image(TestPlatform::linux_amd64(), Flavor::Oci);
    registry.push_image("lkb/private", "1", &img).unwrap();
    let r = ImageRef::parse(&format!("{}/lkb/private:1", registry.addr())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    // Without credentials: a clear user error.
    let e = client(RegistryConfig::default())
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::AuthRequired { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::User);
    assert!(
        e.to_string().starts_with(&format!(
            "registry {} requires authentication (401); log in with docker login or add \
             credentials to ~/.docker/config.json",
            registry.addr()
        )),
        "{e}"
    );

    // With credentials from a docker config.json.
    let cfg_dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("lkb:s3cret pass");
    std::fs::write(
        cfg_dir.path().join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let docker_config = DockerConfig::load_dir(cfg_dir.path()).unwrap();
    let c = client(RegistryConfig {
        docker_config,
        ..RegistryConfig::default()
    });
    let resolved = pull(&c, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_stored(&store, &resolved, &img);

    // With wrong credentials: refused, also a user error.
    let mut credentials = BTreeMap::new();
    credentials.insert(
        registry.addr().to_string(),
        Credential::basic("lkb", "wrong"),
    );
    let e = client(RegistryConfig {
        credentials,
        ..RegistryConfig::default()
    })
    .resolve(&r, &Platform::linux("amd64"), &store)
    .await
    .unwrap_err();
    assert!(matches!(e, OciError::AuthFailed { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::User);
}

#[tokio::test]
async fn unreachable_registry_is_an_environment_error() {
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = ImageRef::parse(&format!("127.0.0.1:{port}/lkb/none:1")).unwrap();
    let e = client(RegistryConfig::default())
        .resolve(&r, &Platform::linux("amd64"), &store)
        .await
        .unwrap_err();
    assert!(matches!(e, OciError::Unreachable { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::Environment);
    let msg = e.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(
        msg.contains(&format!("http://127.0.0.1:{port}/v2/lkb/none/manifests/1")),
        "{msg}"
    );
}

#[tokio::test]
async fn missing_tag_is_a_user_error() {
    let registry = Registry::start().unwrap();
    let img = image(TestPlatform::linux_amd64(), Flavor::Oci);
    registry.push_image("lkb/there", "1", &img).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let c = client(RegistryConfig::default());
    for missing in ["lkb/there:2", "lkb/nothere:1"] {
        let r = ImageRef::parse(&format!("{}/{missing}", registry.addr())).unwrap();
        let e = c
            .resolve(&r, &Platform::linux("amd64"), &store)
            .await
            .unwrap_err();
        assert!(matches!(e, OciError::NotFound { .. }), "{e:?}");
        assert_eq!(e.category(), ErrorCategory::User);
        assert!(
            e.to_string().starts_with(&format!(
                "image {}/{missing} not found in registry {}",
                registry.addr(),
                registry.addr()
            )),
            "{e}"
        );
    }
}

#[tokio::test]
async fn oci_layout_source_first_then_registry() {
    let amd = image(TestPlatform::linux_amd64(), Flavor::Oci);
    let arm = image(TestPlatform::linux_arm64(), Flavor::Oci);
    let index = IndexBuilder::new()
        .image(amd.clone())
        .image(arm.clone())
        .build()
        .unwrap();
    let layout_dir = tempfile::tempdir().unwrap();
    let mut builder = LayoutBuilder::create(layout_dir.path()).unwrap();
    builder.add("docker.io/linuxkit/local:v1", &index).unwrap();

    let layout = OciLayout::open(layout_dir.path()).unwrap();
    let r = ImageRef::parse("linuxkit/local:v1").unwrap();
    assert!(layout.find(&r).is_some());
    assert!(
        layout
            .find(&ImageRef::parse("linuxkit/local:v2").unwrap())
            .is_none()
    );

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let resolved = pull(&layout, &r, &Platform::linux("arm64"), &store)
        .await
        .unwrap();
    assert_eq!(resolved.index_digest, Some(digest(index.digest())));
    assert_stored(&store, &resolved, &arm);

    // The chain: the layout wins for what it has; the registry serves the rest.
    let registry = Registry::start().unwrap();
    let remote = image(TestPlatform::linux_amd64(), Flavor::Docker);
    registry.push_image("lkb/remote", "1", &remote).unwrap();
    let sources = ImageSources::new(
        vec![layout.clone()],
        Some(client(RegistryConfig::default())),
    );
    let resolved = pull(&sources, &r, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_stored(&store, &resolved, &amd);
    let rr = ImageRef::parse(&format!("{}/lkb/remote:1", registry.addr())).unwrap();
    let resolved = pull(&sources, &rr, &Platform::linux("amd64"), &store)
        .await
        .unwrap();
    assert_stored(&store, &resolved, &remote);

    // A tampered layout blob is caught like a tampered registry blob.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = Store::open(fresh_dir.path()).unwrap();
    let victim = &amd.layers[1];
    let path = layout_dir
        .path()
        .join("blobs/sha256")
        .join(victim.digest.hex());
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    let resolved = layout
        .resolve(&r, &Platform::linux("amd64"), &fresh)
        .await
        .unwrap();
    let e = layout
        .fetch_blob(&r, &resolved.layers[1], &fresh, &|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(e, OciError::DigestMismatch { expected, .. } if expected == digest(&victim.digest)),
        "{e:?}"
    );
    assert!(!fresh.blob_path(&digest(&victim.digest)).exists());
    assert!(tmp_is_empty(&fresh));

    // Not a layout at all.
    let e = OciLayout::open(Path::new("/nonexistent/layout")).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::User);
}
