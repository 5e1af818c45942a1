//! The registry client against a hostile registry ([`lkb_tests::fault_registry`]): slow, stalled
//! and truncated transfers fail within a bounded time and a bounded number of requests, with
//! errors naming the registry and the blob; oversized and odd replies are refused or survived
//! without panics.

use std::time::{Duration, Instant};

use lkb_rules::oci::{ImageRef, OciError, Platform, RegistryClient, RegistryConfig, ResolvedImage};
use lkb_store::{BlobRef, ErrorCategory, Store};
use lkb_tests::fault_registry::{Fault, FaultRegistry, Target, TokenReply};
use lkb_tests::oci::{Blob, Compression, Image, ImageBuilder, Layer};

/// Extra attempts the tests allow: 3 requests per operation in all.
const RETRIES: u32 = 2;

/// Small timeouts so a stall costs a second, not twenty.
fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        retries: RETRIES,
        retry_base_delay: Duration::from_millis(5),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        min_transfer_rate: 1024,
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn image() -> Image {
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    ImageBuilder::new()
        .layer(
            Layer::new()
                .compression(Compression::None)
                .file("data", data),
        )
        .build()
        .unwrap()
}

fn layer_target(image: &Image) -> Target {
    Target::Blob(image.layers[0].digest.to_string())
}

fn reference(reg: &FaultRegistry) -> ImageRef {
    ImageRef::parse(&format!("{}/hostile/app:1", reg.addr())).unwrap()
}

async fn pull(reg: &FaultRegistry, store: &Store) -> Result<ResolvedImage, OciError> {
    let c = client();
    let r = reference(reg);
    let resolved = c.resolve(&r, &Platform::linux("amd64"), store).await?;
    for layer in &resolved.layers {
        c.fetch_blob(&r, layer, store, &|_| {}).await?;
    }
    Ok(resolved)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn tmp_is_empty(store: &Store) -> bool {
    let tmp = store.root().join("store-v1").join("tmp");
    std::fs::read_dir(tmp)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

fn layer_stored(store: &Store, image: &Image) -> bool {
    let l = &image.layers[0];
    store.has_blob(&BlobRef {
        digest: l.digest.to_string().parse().unwrap(),
        size: l.size(),
    })
}

#[tokio::test]
async fn a_healthy_fault_registry_serves_the_image() {
    let im = image();
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &im)
        .start()
        .unwrap();
    let (_dir, store) = store();
    pull(&reg, &store).await.unwrap();
    assert!(layer_stored(&store, &im));
    assert_eq!(reg.hits("/blobs/"), 2, "{:?}", reg.requests());
}

#[tokio::test]
async fn token_with_expires_in_u64_max_is_used_without_panicking() {
    let im = image();
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &im)
        .token(TokenReply::ExpiresIn(u64::MAX.to_string()))
        .start()
        .unwrap();
    let (_dir, store) = store();
    pull(&reg, &store).await.unwrap();
    // One token for the whole pull: it was cached, not thrown away.
    assert_eq!(reg.hits("/token"), 1, "{:?}", reg.requests());
}

#[tokio::test]
async fn token_with_odd_expires_in_is_used() {
    for odd in [
        "-1",
        "0",
        "1.5",
        r#""3600""#,
        "null",
        "340282366920938463463374607431768211456",
    ] {
        let im = image();
        let reg = FaultRegistry::builder()
            .image("hostile/app", "1", &im)
            .token(TokenReply::ExpiresIn(odd.to_string()))
            .start()
            .unwrap();
        let (_dir, store) = store();
        pull(&reg, &store)
            .await
            .unwrap_or_else(|e| panic!("expires_in {odd}: {e}"));
    }
}

#[tokio::test]
async fn huge_token_reply_is_refused_naming_the_registry() {
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &image())
        .token(TokenReply::Huge(64 * 1024 * 1024))
        .start()
        .unwrap();
    let (_dir, store) = store();
    let e = pull(&reg, &store).await.unwrap_err();
    assert!(matches!(e, OciError::TooLarge { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("token reply"), "{text}");
    assert!(text.contains(reg.addr()), "{text}");
    assert_eq!(e.category(), ErrorCategory::Environment);
    // Refused, not retried.
    assert_eq!(reg.hits("/token"), 1, "{:?}", reg.requests());
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let huge = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "annotations": { "padding": "x".repeat(5 * 1024 * 1024) },
    });
    let reg = FaultRegistry::builder()
        .raw_manifest(
            "hostile/app",
            "1",
            &Blob::json("application/vnd.oci.image.manifest.v1+json", &huge),
        )
        .start()
        .unwrap();
    let (_dir, store) = store();
    let e = pull(&reg, &store).await.unwrap_err();
    assert!(matches!(e, OciError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains(reg.addr()), "{e}");
}

#[tokio::test]
async fn oversized_config_is_refused_before_it_is_fetched() {
    let im = image();
    let mut manifest = im.manifest_json();
    manifest["config"]["size"] = serde_json::json!(1u64 << 40);
    let reg = FaultRegistry::builder()
        .image("hostile/app", "real", &im)
        .raw_manifest(
            "hostile/app",
            "1",
            &Blob::json(im.manifest.media_type.clone(), &manifest),
        )
        .start()
        .unwrap();
    let (_dir, store) = store();
    let e = pull(&reg, &store).await.unwrap_err();
    assert!(matches!(e, OciError::TooLarge { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&im.config.digest.to_string()), "{text}");
    assert!(text.contains(reg.addr()), "{text}");
    assert_eq!(reg.hits("/blobs/"), 0, "{:?}", reg.requests());
}

/// The outcome of a pull that had to fail.
struct Failed {
    error: OciError,
    took: Duration,
    reg: FaultRegistry,
    im: Image,
    store: Store,
    _dir: tempfile::TempDir,
}

/// Runs a pull that must fail because of `fault` on the layer.
async fn failing_layer(fault: Fault) -> Failed {
    let im = image();
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &im)
        .fault(layer_target(&im), fault)
        .start()
        .unwrap();
    let (dir, store) = store();
    let started = Instant::now();
    let error = pull(&reg, &store).await.unwrap_err();
    Failed {
        error,
        took: started.elapsed(),
        reg,
        im,
        store,
        _dir: dir,
    }
}

#[tokio::test]
async fn blob_at_one_byte_a_second_fails_in_bounded_time_naming_blob_and_registry() {
    let Failed {
        error: e,
        took,
        reg,
        im,
        store,
        ..
    } = failing_layer(Fault::SlowBody {
        bytes_per_second: 4,
    })
    .await;
    assert!(matches!(e, OciError::Stalled { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&im.layers[0].digest.to_string()), "{text}");
    assert!(text.contains(reg.addr()), "{text}");
    assert!(text.contains("bytes/s"), "{text}");
    assert!(text.contains("gave up after 3 attempts"), "{text}");
    assert_eq!(e.category(), ErrorCategory::Environment);
    // 3 attempts of about a 1 s window each, not minutes.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(
        reg.hits(&im.layers[0].digest.to_string()),
        1 + RETRIES as usize,
        "{:?}",
        reg.requests()
    );
    assert!(!layer_stored(&store, &im));
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn blob_stalled_after_some_bytes_fails_without_nested_retries() {
    let Failed {
        error: e,
        took,
        reg,
        im,
        store,
        ..
    } = failing_layer(Fault::StallAfter(1000)).await;
    assert!(matches!(e, OciError::Stalled { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("after 1000 bytes"), "{text}");
    assert!(text.contains("no data for"), "{text}");
    assert!(text.contains(&im.layers[0].digest.to_string()), "{text}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // One budget: 1 + RETRIES requests, not (1 + RETRIES)².
    assert_eq!(
        reg.hits(&im.layers[0].digest.to_string()),
        1 + RETRIES as usize,
        "{:?}",
        reg.requests()
    );
    assert!(!layer_stored(&store, &im));
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn blob_whose_headers_never_come_fails_without_nested_retries() {
    let Failed {
        error: e,
        took,
        reg,
        im,
        store: _store,
        ..
    } = failing_layer(Fault::StallHeaders).await;
    assert_eq!(e.category(), ErrorCategory::Environment, "{e:?}");
    assert!(e.to_string().contains(reg.addr()), "{e}");
    // Each attempt waits at most connect + read timeout (3 s here).
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(
        reg.hits(&im.layers[0].digest.to_string()),
        1 + RETRIES as usize,
        "{:?}",
        reg.requests()
    );
}

#[tokio::test]
async fn stalled_manifest_fails_in_bounded_time() {
    for fault in [Fault::StallHeaders, Fault::StallAfter(10)] {
        let reg = FaultRegistry::builder()
            .image("hostile/app", "1", &image())
            .fault(Target::Manifests, fault.clone())
            .start()
            .unwrap();
        let (_dir, store) = store();
        let started = Instant::now();
        let e = pull(&reg, &store).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(e.category(), ErrorCategory::Environment, "{fault:?}: {e:?}");
        assert!(e.to_string().contains(reg.addr()), "{e}");
        assert!(took < Duration::from_secs(20), "{fault:?}: {took:?}");
        assert_eq!(
            reg.hits("/manifests/"),
            1 + RETRIES as usize,
            "{fault:?}: {:?}",
            reg.requests()
        );
    }
}

#[tokio::test]
async fn trickling_error_bodies_do_not_hold_the_client() {
    for (status, requests) in [(404, 1), (500, 1 + RETRIES as usize)] {
        let reg = FaultRegistry::builder()
            .image("hostile/app", "1", &image())
            .fault(Target::Manifests, Fault::SlowError(status))
            .start()
            .unwrap();
        let (_dir, store) = store();
        let started = Instant::now();
        let e = pull(&reg, &store).await.unwrap_err();
        let took = started.elapsed();
        assert!(e.to_string().contains(reg.addr()), "{e}");
        // Each error body is read for at most the read timeout (1 s here).
        assert!(took < Duration::from_secs(10), "{status}: {took:?}");
        assert_eq!(reg.hits("/manifests/"), requests, "{:?}", reg.requests());
    }
}

#[tokio::test]
async fn stalled_token_reply_shares_the_operation_budget() {
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &image())
        .token(TokenReply::ExpiresIn("300".into()))
        .fault(Target::Token, Fault::StallAfter(5))
        .start()
        .unwrap();
    let (_dir, store) = store();
    let started = Instant::now();
    let e = pull(&reg, &store).await.unwrap_err();
    assert!(matches!(e, OciError::Stalled { .. }), "{e:?}");
    assert!(e.to_string().contains("token reply"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        reg.hits("/token"),
        1 + RETRIES as usize,
        "{:?}",
        reg.requests()
    );
}

#[tokio::test]
async fn truncated_blob_is_retried_and_a_persistent_one_fails() {
    let im = image();
    let reg = FaultRegistry::builder()
        .image("hostile/app", "1", &im)
        .fault_first(layer_target(&im), Fault::Truncate(1000), 1)
        .start()
        .unwrap();
    let (_dir, store) = store();
    pull(&reg, &store).await.unwrap();
    assert!(layer_stored(&store, &im));
    assert_eq!(reg.hits(&im.layers[0].digest.to_string()), 2);

    let Failed {
        error: e,
        took: _,
        reg,
        im,
        store,
        ..
    } = failing_layer(Fault::Truncate(1000)).await;
    assert_eq!(e.category(), ErrorCategory::Environment, "{e:?}");
    assert!(e.to_string().contains(reg.addr()), "{e}");
    assert_eq!(
        reg.hits(&im.layers[0].digest.to_string()),
        1 + RETRIES as usize
    );
    assert!(!layer_stored(&store, &im));
    assert!(tmp_is_empty(&store));
}

#[tokio::test]
async fn blob_with_the_wrong_digest_is_rejected_and_not_stored() {
    let Failed {
        error: e,
        took: _,
        reg: _reg,
        im,
        store,
        ..
    } = failing_layer(Fault::WrongDigest).await;
    assert!(matches!(e, OciError::DigestMismatch { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&im.layers[0].digest.to_string()),
        "{e}"
    );
    assert!(!layer_stored(&store, &im));
    assert!(tmp_is_empty(&store));
}

#[test]
fn default_timeouts_bound_a_stalled_transfer_to_about_two_minutes() {
    let c = RegistryConfig::default();
    let attempts = 1 + c.retries;
    // The worst stall per attempt is waiting for headers: connect + read timeout.
    let per_attempt = c.connect_timeout + c.read_timeout;
    let backoff: Duration = (0..c.retries)
        .map(|i| (c.retry_base_delay * (1 << i)).min(Duration::from_secs(10)))
        .sum();
    let worst = per_attempt * attempts + backoff;
    assert!(worst <= Duration::from_secs(150), "{worst:?}");
    assert!(c.min_transfer_rate > 0);
}
