//! Resolving pinned images from the store: stored manifests and configs are re-hashed.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use super::*;
use crate::tree::testutil::store;

const NAME: &str = "registry.example/lkb/app:1";

/// A pinned image whose manifest and config are in the store; returns the resolver (offline,
/// no sources) and the two digests.
fn pinned(store: &Store) -> (Resolver, BlobDigest, BlobDigest) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap();
    let config = store.put_bytes(&config).unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest.to_string(),
            "size": config.size,
        },
        "layers": [],
    }))
    .unwrap();
    let manifest = store.put_bytes(&manifest).unwrap();
    let platform = Platform::parse("linux/amd64").unwrap();
    let mut lock = LockFile::default();
    lock.pins.insert(
        PinKey {
            reference: canonical(),
            platform: platform.to_string(),
        },
        Pin {
            manifest: manifest.digest,
            index: None,
        },
    );
    let resolver = Resolver {
        sources: Arc::new(ImageSources::default()),
        store: store.clone(),
        platform,
        lock,
        pull: false,
        offline: true,
    };
    (resolver, manifest.digest, config.digest)
}

fn canonical() -> String {
    ImageRef::parse(NAME).unwrap().canonical()
}

/// Flips a byte of a stored blob, keeping its size.
fn damage(store: &Store, digest: &BlobDigest) {
    use std::os::unix::fs::FileExt;
    let (path, offset, _) = store.blob_file(digest).unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], offset).unwrap();
}

async fn resolve(resolver: &Resolver) -> Result<Arc<ImageInfo>, ResolveError> {
    let refs = BTreeSet::from([canonical()]);
    let (mut images, _) = resolver.resolve_all(&refs).await?;
    Ok(images.remove(&canonical()).unwrap())
}

#[tokio::test]
async fn damaged_stored_manifests_and_configs_are_not_used() {
    for damaged in ["manifest", "config"] {
        let (_d, store) = store();
        let (mut resolver, manifest, config) = pinned(&store);
        let info = resolve(&resolver).await.unwrap();
        assert_eq!(info.resolved.manifest.digest, manifest);

        let digest = if damaged == "manifest" {
            manifest
        } else {
            config
        };
        damage(&store, &digest);
        // Offline, it cannot be fetched again: an error naming the file.
        let error = resolve(&resolver).await.unwrap_err();
        assert!(
            matches!(&error, ResolveError::Store(StoreError::CorruptBlob { digest: d, .. }) if *d == digest),
            "{damaged}: {error:?}"
        );
        assert_eq!(error.category(), ErrorCategory::Environment);
        assert!(
            store.open_blob(&digest).is_err(),
            "{damaged}: the damaged file is removed so that the next run fetches it"
        );
        // Online, the pin is fetched again (here there is nowhere to fetch from).
        resolver.offline = false;
        let error = resolve(&resolver).await.unwrap_err();
        assert!(
            !matches!(error, ResolveError::Store(_)),
            "{damaged}: {error:?}"
        );
    }
}
