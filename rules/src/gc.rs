//! What garbage collection and `lkb cache verify` need to know about lkb's blob formats.
//!
//! The store is generic and treats blobs as opaque; it asks [`references`] which blobs an
//! action output refers to. Only trees refer to other blobs: a tree names the blob holding
//! each regular file's content ([`crate::tree`]). Every other artifact (layers, archives,
//! segments, initrds, kernels) is self-contained.
//!
//! # Which blobs are trees
//!
//! The artifact's declared kind says so ([`ArtifactKind::Tree`]): every action declares the
//! kind of each output, and the store records it with the result. The content is never
//! sniffed, so a registry layer that happens to start with the tree magic is just a blob.
//! A tree of another format version is an error rather than "no references": guessing
//! wrong would let garbage collection delete file contents a cached tree still needs.

use std::collections::BTreeSet;

use lkb_store::{Artifact, ArtifactKind, BlobDigest, BlobRef, Store};

use crate::oci::{Manifest, parse_manifest};
use crate::tree::{Tree, TreeError};

/// The blobs that `artifact` refers to: for a tree, the distinct content blobs of its files,
/// in digest order; nothing for any other kind.
pub fn references(store: &Store, artifact: &Artifact) -> Result<Vec<BlobDigest>, TreeError> {
    Ok(reference_blobs(store, artifact)?
        .into_iter()
        .map(|blob| blob.digest)
        .collect())
}

/// [`references`] with each blob's size (what a remote cache transfer needs).
pub fn reference_blobs(store: &Store, artifact: &Artifact) -> Result<Vec<BlobRef>, TreeError> {
    if artifact.kind != ArtifactKind::Tree {
        return Ok(Vec::new());
    }
    let tree = Tree::load(store, &artifact.blob.digest)?;
    let mut contents: Vec<BlobRef> = tree
        .iter()
        .filter_map(|entry| entry.blob())
        .copied()
        .collect();
    contents.sort();
    contents.dedup();
    Ok(contents)
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
        let Ok(bytes) = store.read_blob(&digest) else {
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
    use lkb_store::{Artifact, ArtifactKind, BlobRef, Store};

    use super::{image_metadata, references};
    use crate::tree::{Entry, Meta, TREE_FORMAT_VERSION_NO_ROOT, TREE_MAGIC, Tree};

    fn artifact(kind: ArtifactKind, blob: BlobRef) -> Artifact {
        Artifact {
            name: "out".to_owned(),
            kind,
            blob,
        }
    }
    use ArtifactKind::{Archive, Blob, Tree as TreeKind};

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
        assert_eq!(
            references(&store, &artifact(TreeKind, tree_blob)).expect("references"),
            expected
        );
        // The declared kind decides, not the content: the same bytes as a blob or an archive
        // (say, a registry layer that starts with the tree magic) refer to nothing.
        for kind in [Blob, Archive] {
            assert_eq!(
                references(&store, &artifact(kind, tree_blob)).expect("references"),
                vec![]
            );
        }
        let empty_tree = store.put_bytes(&Tree::new().encode()).expect("put");
        assert_eq!(
            references(&store, &artifact(TreeKind, empty_tree)).expect("references"),
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
        let error = references(&store, &artifact(TreeKind, future)).expect_err("future version");
        assert!(error.to_string().contains("format version"), "{error}");

        // Version 1 (before the root entry) is still read.
        let mut v1 = Tree::new().encode();
        v1[version] = TREE_FORMAT_VERSION_NO_ROOT;
        v1.remove(version + 1);
        let v1 = store.put_bytes(&v1).expect("put");
        assert_eq!(references(&store, &artifact(TreeKind, v1)).expect("v1"), []);

        let mut broken = Tree::new().encode();
        broken.extend_from_slice(b"trailing");
        let broken = store.put_bytes(&broken).expect("put");
        assert!(references(&store, &artifact(TreeKind, broken)).is_err());

        let missing = BlobRef {
            digest: lkb_store::BlobDigest::of_bytes(b"never stored"),
            size: 12,
        };
        assert!(references(&store, &artifact(TreeKind, missing)).is_err());
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
