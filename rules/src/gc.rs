//! What garbage collection and `lkb cache verify` need to know about lkb's blob formats.
//!
//! The store is generic and treats blobs as opaque; it asks [`references`] which blobs an
//! action output refers to. Only trees refer to other blobs: a tree names the blob holding
//! each regular file's content ([`crate::tree`]). Every other artifact (layers, archives,
//! segments, initrds, kernels) is self-contained.
//!
//! # Which blobs are trees
//!
//! A blob is a tree when its content starts with the tree encoding's magic. Artifact names do
//! not decide it: `initrd` is a tree when the `kernel` action returns it and a compressed
//! archive when the `initrd` action does. The magic is eight bytes (`LKBTREE\n`) that no
//! archive, layer, kernel or JSON document starts with, and checking it reads nine bytes per
//! artifact. A blob with the magic but another format version is an error rather than "no
//! references": guessing wrong would let garbage collection delete file contents a cached tree
//! still needs.

use std::collections::BTreeSet;
use std::io::Read;

use lkb_store::{Artifact, BlobDigest, Store};

use crate::oci::{Manifest, parse_manifest};
use crate::tree::{TREE_FORMAT_VERSION, TREE_FORMAT_VERSION_NO_ROOT, TREE_MAGIC, Tree, TreeError};

/// The first bytes of every tree encoding: the magic, then the format version.
fn tree_header() -> Vec<u8> {
    let mut header = TREE_MAGIC.to_vec();
    header.push(TREE_FORMAT_VERSION);
    header
}

/// Whether `prefix` (at least the first nine bytes of a blob) starts with the tree magic, and
/// if so which format version follows it.
fn tree_version(prefix: &[u8]) -> Option<u8> {
    let header = tree_header();
    let magic = &header[..header.len() - 1];
    if prefix.len() < header.len() || &prefix[..magic.len()] != magic {
        return None;
    }
    Some(prefix[magic.len()])
}

/// The blobs that `artifact` refers to: the distinct content blobs of a tree's files, in
/// digest order; nothing for any other artifact.
pub fn references(store: &Store, artifact: &Artifact) -> Result<Vec<BlobDigest>, TreeError> {
    let digest = &artifact.blob.digest;
    let mut prefix = Vec::with_capacity(16);
    store
        .open_blob(digest)?
        .take(tree_header().len() as u64)
        .read_to_end(&mut prefix)
        .map_err(|source| lkb_store::StoreError::ReadBlob {
            digest: *digest,
            source,
        })?;
    match tree_version(&prefix) {
        None => Ok(Vec::new()),
        Some(TREE_FORMAT_VERSION | TREE_FORMAT_VERSION_NO_ROOT) => {
            let tree = Tree::load(store, digest)?;
            let mut contents: Vec<BlobDigest> = tree
                .iter()
                .filter_map(|entry| entry.blob())
                .map(|blob| blob.digest)
                .collect();
            contents.sort();
            contents.dedup();
            Ok(contents)
        }
        Some(version) => Err(TreeError::Decode(format!(
            "tree blob {digest} has format version {version}; this lkb reads version \
             {TREE_FORMAT_VERSION}"
        ))),
    }
}

/// The image metadata a build reads from the store before it runs any action, starting from
/// pinned manifests and indexes (`tops`): those blobs, and transitively the manifests an index
/// in the store lists and the config an image manifest in the store names. Layers are left
/// out: `fetch` actions own them. Blobs that are absent or are not manifests end the walk.
pub fn image_metadata(
    store: &Store,
    tops: impl IntoIterator<Item = BlobDigest>,
) -> BTreeSet<BlobDigest> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<BlobDigest> = tops.into_iter().collect();
    while let Some(digest) = queue.pop() {
        if !seen.insert(digest) {
            continue;
        }
        let Ok(bytes) = fs_err::read(store.blob_path(&digest)) else {
            continue;
        };
        match parse_manifest(&bytes, None) {
            Ok(Manifest::Index(index)) => {
                queue.extend(index.manifests.iter().filter_map(|d| d.sha256()));
            }
            Ok(Manifest::Image(manifest)) => queue.extend(manifest.config.sha256()),
            Err(_) => {}
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use lkb_store::{Artifact, BlobRef, Store};

    use super::{image_metadata, references};
    use crate::tree::{Entry, Meta, TREE_FORMAT_VERSION_NO_ROOT, TREE_MAGIC, Tree};

    fn artifact(name: &str, blob: BlobRef) -> Artifact {
        Artifact {
            name: name.to_owned(),
            blob,
        }
    }

    #[test]
    fn a_tree_refers_to_its_file_contents_and_nothing_else_refers_to_anything() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let hello = store.put_bytes(b"hello").expect("put");
        let world = store.put_bytes(b"world").expect("put");
        let meta = Meta::new(0o644, 0, 0, 0);
        let mut tree = Tree::new();
        for entry in [
            Entry::dir("etc", Meta::new(0o755, 0, 0, 0)),
            Entry::file("etc/a", hello, meta),
            Entry::file("etc/b", world, meta),
            Entry::file("etc/c", hello, meta),
            Entry::symlink("etc/d", "a", meta),
        ] {
            tree.insert(entry).expect("insert");
        }
        let tree_blob = store.put_bytes(&tree.encode()).expect("put tree");

        let mut expected = vec![hello.digest, world.digest];
        expected.sort();
        // The artifact's name does not matter, its content does.
        for name in ["tree", "initrd", "anything"] {
            assert_eq!(
                references(&store, &artifact(name, tree_blob)).expect("references"),
                expected
            );
        }
        assert_eq!(
            references(&store, &artifact("tree", hello)).expect("references"),
            vec![]
        );
        let empty = store.put_bytes(b"").expect("put");
        assert_eq!(
            references(&store, &artifact("initrd", empty)).expect("references"),
            vec![]
        );
        let empty_tree = store.put_bytes(&Tree::new().encode()).expect("put");
        assert_eq!(
            references(&store, &artifact("tree", empty_tree)).expect("references"),
            vec![]
        );
    }

    #[test]
    fn an_unknown_tree_version_or_a_broken_tree_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let mut future = Tree::new().encode();
        let version = TREE_MAGIC.len();
        future[version] = future[version].wrapping_add(1);
        let future = store.put_bytes(&future).expect("put");
        let error = references(&store, &artifact("tree", future)).expect_err("future version");
        assert!(error.to_string().contains("format version"), "{error}");

        // Version 1 (before the root entry) is still read.
        let mut v1 = Tree::new().encode();
        v1[version] = TREE_FORMAT_VERSION_NO_ROOT;
        v1.remove(version + 1);
        let v1 = store.put_bytes(&v1).expect("put");
        assert_eq!(references(&store, &artifact("tree", v1)).expect("v1"), []);

        let mut broken = Tree::new().encode();
        broken.extend_from_slice(b"trailing");
        let broken = store.put_bytes(&broken).expect("put");
        assert!(references(&store, &artifact("tree", broken)).is_err());

        let missing = BlobRef {
            digest: lkb_store::BlobDigest::of_bytes(b"never stored"),
            size: 12,
        };
        assert!(references(&store, &artifact("tree", missing)).is_err());
    }

    #[test]
    fn image_metadata_follows_indexes_to_manifests_to_configs_but_not_layers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        let config = store
            .put_bytes(br#"{"architecture":"amd64","os":"linux"}"#)
            .expect("put");
        let layer = store.put_bytes(b"layer bytes").expect("put");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            config.digest, config.size, layer.digest, layer.size
        );
        let manifest = store.put_bytes(manifest.as_bytes()).expect("put");
        let absent = lkb_store::BlobDigest::of_bytes(b"another platform");
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{absent}","size":3}}]}}"#,
            manifest.digest, manifest.size
        );
        let index = store.put_bytes(index.as_bytes()).expect("put");
        let kept = image_metadata(&store, [index.digest]);
        let expected = [index.digest, manifest.digest, config.digest, absent]
            .into_iter()
            .collect();
        assert_eq!(kept, expected);
        assert!(!kept.contains(&layer.digest));
    }
}
