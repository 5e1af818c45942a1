//! Smoke tests for the test-support crate itself: the registry launcher, the image builder
//! against a real registry, and the QEMU boot harness.

use lkb_tests::oci::{
    Compression, Digest, Flavor, ImageBuilder, IndexBuilder, Layer, MOBY_CONFIG_LABEL, OciLayout,
    Platform, media_type,
};
use lkb_tests::registry::{BasicAuth, Registry};

fn sample_image(platform: Platform, flavor: Flavor) -> lkb_tests::oci::Image {
    ImageBuilder::new()
        .platform(platform.clone())
        .flavor(flavor)
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/platform", platform.to_string())
                .symlink("etc/abs", "/etc/platform"),
        )
        .layer(
            Layer::new()
                .compression(Compression::Zstd)
                .whiteout("etc/abs"),
        )
        .entrypoint(&["/bin/sh"])
        .label(
            MOBY_CONFIG_LABEL,
            r#"{"binds":["/etc/resolv.conf:/etc/resolv.conf"]}"#,
        )
        .build()
        .unwrap()
}

#[test]
fn registry_push_then_get_manifest_and_blobs_by_tag() {
    let registry = Registry::start().unwrap();
    assert!(registry.addr().starts_with("127.0.0.1:"));
    let image = sample_image(Platform::linux_amd64(), Flavor::Oci);
    let digest = registry.push_image("lkb/sample", "v1", &image).unwrap();
    assert_eq!(&digest, image.digest());

    let response = registry.get_manifest("lkb/sample", "v1").unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body, image.manifest.data);
    assert_eq!(
        response.header("Content-Type"),
        Some(media_type::OCI_MANIFEST)
    );
    assert_eq!(
        response.header("Docker-Content-Digest"),
        Some(digest.to_string().as_str())
    );
    for blob in image.blobs() {
        let response = registry
            .get(&format!("/v2/lkb/sample/blobs/{}", blob.digest))
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(Digest::of(&response.body), blob.digest);
    }
    // Pushing again is a no-op for blobs and keeps the tag.
    registry.push_image("lkb/sample", "v1", &image).unwrap();
}

#[test]
fn registry_accepts_multi_platform_index_from_layout_and_docker_lists() {
    let registry = Registry::start().unwrap();
    let amd = sample_image(Platform::linux_amd64(), Flavor::Oci);
    let index = IndexBuilder::new()
        .image(amd.clone())
        .image(sample_image(Platform::linux_arm64(), Flavor::Oci))
        .attestation_for(&amd)
        .unwrap()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(dir.path()).unwrap();
    layout.add("localhost/lkb/multi:1", &index).unwrap();
    let pushed = registry
        .push_layout("lkb/multi", "1", &layout, "localhost/lkb/multi:1")
        .unwrap();
    assert_eq!(&pushed, index.digest());
    let response = registry.get_manifest("lkb/multi", "1").unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("Content-Type"), Some(media_type::OCI_INDEX));
    assert_eq!(response.body, index.index.data);
    let child = registry
        .get_manifest("lkb/multi", &amd.digest().to_string())
        .unwrap();
    assert_eq!(child.body, amd.manifest.data);

    let docker = IndexBuilder::new()
        .flavor(Flavor::Docker)
        .image(sample_image(Platform::linux_amd64(), Flavor::Docker))
        .build()
        .unwrap();
    registry
        .push_image("lkb/docker", "latest", &docker)
        .unwrap();
    let response = registry.get_manifest("lkb/docker", "latest").unwrap();
    assert_eq!(
        response.header("Content-Type"),
        Some(media_type::DOCKER_MANIFEST_LIST)
    );
}

#[test]
fn htpasswd_registry_rejects_anonymous_and_accepts_credentials() {
    let registry = Registry::start_with_htpasswd("lkb", "s3cret").unwrap();
    let anonymous = registry.request("GET", "/v2/", &[], &[], None).unwrap();
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "{:?}",
        anonymous.headers
    );
    let wrong = BasicAuth {
        user: "lkb".into(),
        password: "wrong".into(),
    };
    assert_eq!(
        registry
            .request("GET", "/v2/", &[], &[], Some(&wrong))
            .unwrap()
            .status,
        401
    );
    assert_eq!(registry.get("/v2/").unwrap().status, 200);

    let image = sample_image(Platform::linux_amd64(), Flavor::Oci);
    let error = registry
        .push_with_auth("lkb/private", "1", (&image).into(), None)
        .unwrap_err();
    assert!(error.to_string().contains("401"), "{error:#}");
    registry.push_image("lkb/private", "1", &image).unwrap();
    let manifest = registry.get_manifest("lkb/private", "1").unwrap();
    assert_eq!(manifest.body, image.manifest.data);
    let anonymous = registry
        .request("GET", "/v2/lkb/private/manifests/1", &[], &[], None)
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

#[test]
fn corrupt_blob_serves_wrong_bytes_under_the_old_digest() {
    let registry = Registry::start().unwrap();
    let image = sample_image(Platform::linux_amd64(), Flavor::Oci);
    registry.push_image("lkb/tamper", "1", &image).unwrap();
    let layer = &image.layers[0];
    registry.corrupt_blob(&layer.digest).unwrap();
    let response = registry
        .get(&format!("/v2/lkb/tamper/blobs/{}", layer.digest))
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), layer.data.len());
    assert_ne!(Digest::of(&response.body), layer.digest);
}

#[test]
fn dropping_the_registry_kills_its_process() {
    let registry = Registry::start().unwrap();
    let pid = registry.pid();
    let addr = registry.addr().to_owned();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(registry);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn two_registries_run_side_by_side() {
    let a = Registry::start().unwrap();
    let b = Registry::start().unwrap();
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.storage_dir(), b.storage_dir());
}

/// Unpacks every layer of `image` into `dir` (no whiteout handling; the examples have none).
fn unpack_image(image: &lkb_tests::oci::Image, dir: &std::path::Path) {
    for layer in &image.layers {
        let tar = layer.uncompressed().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        archive.set_preserve_permissions(true);
        archive.unpack(dir).unwrap();
    }
}

/// Uses the example layout the other tests share (made once from cached Debian packages), so it
/// needs nothing they do not; the boot takes about 10 s of QEMU, like the tests in `boot.rs`.
#[test]
fn example_images_push_to_the_registry_and_boot() {
    use lkb_tests::examples::{BOOT_MARKER, DONE_MARKER};
    use lkb_tests::oci::Artifact;

    let work = tempfile::tempdir().unwrap();
    let layout = OciLayout::open(&lkb_tests::cli::example_layout().unwrap()).unwrap();
    let refs: Vec<String> = layout
        .entries()
        .iter()
        .filter_map(|e| e.ref_name.clone())
        .collect();
    assert!(!refs.is_empty(), "the example layout names no images");
    let registry = Registry::start().unwrap();
    for reference in &refs {
        let (repo, tag) = reference
            .strip_prefix("localhost/")
            .and_then(|r| r.rsplit_once(':'))
            .unwrap();
        registry.push_layout(repo, tag, &layout, reference).unwrap();
        assert_eq!(registry.get_manifest(repo, tag).unwrap().status, 200);
    }

    let amd64 = |name: &str| {
        let reference = refs
            .iter()
            .find(|r| r.contains(&format!("/{name}:")))
            .unwrap();
        let Artifact::Index(index) = layout.load(reference).unwrap() else {
            panic!("{reference} is not an index");
        };
        index.image_for(&Platform::linux_amd64()).unwrap().clone()
    };
    // Lay the initrd out the way lkb does: init image at the root, bundles below /containers.
    let root = work.path().join("root");
    unpack_image(&amd64("init"), &root);
    unpack_image(
        &amd64("dhcpcd"),
        &root.join("containers/onboot/000-dhcpcd/rootfs"),
    );
    unpack_image(
        &amd64("getty"),
        &root.join("containers/services/getty/rootfs"),
    );
    let kernel_dir = work.path().join("kernel");
    unpack_image(&amd64("kernel"), &kernel_dir);
    let initrd = work.path().join("initrd.img");
    fs_err::write(
        &initrd,
        lkb_tests::initrd::gzip_initrd_from_dir(&root).unwrap(),
    )
    .unwrap();

    let log = lkb_tests::qemu::boot_kernel_initrd(
        &kernel_dir.join("kernel"),
        &initrd,
        "console=tty0 console=ttyS0 console=ttyAMA0",
        DONE_MARKER,
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    assert!(log.contains(BOOT_MARKER), "{log}");
    assert!(
        log.contains("LKB-BUNDLE onboot 000-dhcpcd lkb-example dhcpcd"),
        "{log}"
    );
    assert!(
        log.contains("LKB-BUNDLE services getty lkb-example getty"),
        "{log}"
    );
}
