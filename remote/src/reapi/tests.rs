use super::*;

fn blob(byte: u8, size: u64) -> BlobRef {
    BlobRef {
        digest: BlobDigest::of_bytes(&[byte]),
        size,
    }
}

#[test]
fn action_digests_are_fixed_by_the_key_alone() {
    let key: ActionKey = "0".repeat(64).parse().expect("key");
    let digest = action_digest(&key);
    assert_eq!(digest, action_digest(&key));
    // Pinned: the digest must not change between lkb versions or machines, or every
    // shared cache entry is lost. Change it only with KEY_SCHEMA_VERSION.
    assert_eq!(digest.size_bytes, 138);
    let other: ActionKey = "1".repeat(64).parse().expect("key");
    assert_ne!(action_digest(&other).hash, digest.hash);
}

#[test]
fn results_round_trip_through_the_proto_with_their_kinds() {
    let result = ActionResult::new()
        .with("rootfs", ArtifactKind::Tree, blob(1, 10))
        .with("initrd", ArtifactKind::Archive, blob(2, 20))
        .with("disk", ArtifactKind::DiskImage, blob(3, 0));
    let proto = to_proto(&result);
    assert_eq!(from_proto(&proto), Ok(result));
    let mut failed = proto.clone();
    failed.exit_code = 1;
    assert!(from_proto(&failed).is_err());
    let mut foreign = proto;
    foreign.output_files[0].node_properties = None;
    assert!(
        from_proto(&foreign)
            .expect_err("no kind")
            .contains("lkb.kind")
    );
}

#[test]
fn upload_ids_look_like_uuids_and_differ() {
    let a = upload_id(&blob(1, 1));
    let b = upload_id(&blob(1, 1));
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(a.matches('-').count(), 4);
}
