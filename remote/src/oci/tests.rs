use super::*;

fn blob(byte: u8, size: u64) -> BlobRef {
    BlobRef {
        digest: BlobDigest::of_bytes(&[byte]),
        size,
    }
}

fn key(hex: &str) -> ActionKey {
    hex.repeat(64 / hex.len()).parse().expect("key")
}

fn sample() -> ActionResult {
    ActionResult::new()
        .with("rootfs", ArtifactKind::Tree, blob(1, 10))
        .with("initrd", ArtifactKind::Archive, blob(2, 20))
        .with("disk", ArtifactKind::DiskImage, blob(3, 0))
        .with("again", ArtifactKind::Blob, blob(2, 20))
}

/// Writes `result` as the backend does and reads it back from the bytes alone.
fn round_trip(key: &ActionKey, result: &ActionResult) -> Result<ActionResult, String> {
    let record = serde_json::to_vec(&record_of(key, result)).expect("record");
    let config = BlobRef {
        digest: BlobDigest::of_bytes(&record),
        size: record.len() as u64,
    };
    let manifest = serde_json::to_vec(&manifest_of(key, result, &config)).expect("manifest");
    let (parsed, named) = parse_manifest(&manifest)?;
    assert_eq!(named, config);
    let record: Record = serde_json::from_slice(&record).expect("record");
    result_of(key, &record, &parsed.layers)
}

#[test]
fn tags_fit_the_distribution_grammar() {
    let tag = tag(&key("0f"));
    assert_eq!(tag.len(), 68);
    assert!(tag.len() <= 128);
    assert!(tag.starts_with("lkb-"));
    assert!(
        tag.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    );
}

#[test]
fn results_round_trip_with_kinds_names_and_repeated_blobs() {
    let key = key("ab");
    assert_eq!(round_trip(&key, &sample()), Ok(sample()));
    assert_eq!(
        round_trip(&key, &ActionResult::new()),
        Ok(ActionResult::new())
    );
}

#[test]
fn the_manifest_is_fixed_by_the_result_alone() {
    // Pinned: two machines pushing one result push one manifest, and the format is what the
    // docs describe. Changing it loses every shared entry: bump the media types with it.
    let key = key("01");
    let result = ActionResult::new().with("out", ArtifactKind::Blob, blob(7, 3));
    let config = blob(9, 100);
    let manifest = serde_json::to_string(&manifest_of(&key, &result, &config)).unwrap();
    let expected = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""artifactType":"application/vnd.lkb.action-result.v1","#,
            r#""config":{{"mediaType":"application/vnd.lkb.action-result.config.v1+json","digest":"{config}","size":100}},"#,
            r#""layers":[{{"mediaType":"application/vnd.lkb.artifact.v1","digest":"{out}","size":3,"#,
            r#""annotations":{{"vnd.lkb.artifact.kind":"blob","vnd.lkb.artifact.name":"out"}}}}],"#,
            r#""annotations":{{"vnd.lkb.action":"{key}"}}}}"#
        ),
        config = config.digest,
        out = blob(7, 3).digest,
        key = key,
    );
    assert_eq!(manifest, expected);
    let record = serde_json::to_string(&record_of(&key, &result)).unwrap();
    assert_eq!(
        record,
        format!(
            r#"{{"action":"{key}","outputs":[{{"name":"out","kind":"blob","digest":"{}","size":3}}]}}"#,
            blob(7, 3).digest
        )
    );
}

#[test]
fn foreign_or_inconsistent_entries_are_refused() {
    let key = key("ab");
    let record = record_of(&key, &sample());
    let config = blob(9, 100);
    let manifest = manifest_of(&key, &sample(), &config);

    // Someone else's manifest under our tag.
    let mut image = manifest.clone();
    image.artifact_type = String::new();
    image.config.media_type = "application/vnd.oci.image.config.v1+json".into();
    let error = parse_manifest(&serde_json::to_vec(&image).unwrap()).expect_err("image");
    assert!(error.contains("not an lkb action result"), "{error}");
    assert!(parse_manifest(b"{}").is_err());
    assert!(parse_manifest(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#).is_err());

    // A record copied under another key.
    let error = result_of(&self::key("cd"), &record, &manifest.layers).expect_err("key");
    assert!(error.contains("for action"), "{error}");

    // Layers that are not the record's blobs.
    let mut layers = manifest.layers.clone();
    layers.swap(0, 1);
    assert!(result_of(&key, &record, &layers).is_err());
    assert!(result_of(&key, &record, &manifest.layers[1..]).is_err());

    // A kind lkb does not know.
    let mut odd = record.clone();
    odd.outputs[0].kind = "socket".into();
    let error = result_of(&key, &odd, &manifest.layers).expect_err("kind");
    assert!(error.contains("unknown kind"), "{error}");
}

#[test]
fn the_cache_reaches_its_registry_as_pulls_do() {
    let repository = ImageRef::repository_in("reg.lan:5000", "team/cache").unwrap();
    let pulls = RegistryConfig {
        insecure: vec!["reg.lan:5000".into()],
        credentials: BTreeMap::from([("other.lan".into(), Credential::basic("o", "p"))]),
        ..RegistryConfig::default()
    };
    let options = RemoteOptions {
        registry: pulls.clone(),
        ..RemoteOptions::default()
    };
    let cache = OciCache::new(
        "oci://reg.lan:5000/team/cache",
        repository.clone(),
        &options,
    )
    .expect("cache");
    // Plain HTTP because the workspace says so, as for pulls; the cache's own timeouts.
    assert_eq!(cache.client.base_url(&repository), "http://reg.lan:5000");
    assert_eq!(cache.client.config().credentials, pulls.credentials);
    assert_eq!(cache.client.config().retries, 0);
    assert_eq!(cache.client.config().read_timeout, options.timeouts.request);

    // LKB_REMOTE_USER/PASSWORD win for the cache's registry only.
    let options = RemoteOptions {
        registry: RegistryConfig::default(),
        credentials: Some(Credentials::Basic {
            user: "ci".into(),
            password: "s3cret".into(),
        }),
        ..RemoteOptions::default()
    };
    let cache = OciCache::new(
        "oci://reg.lan:5000/team/cache",
        repository.clone(),
        &options,
    )
    .expect("cache");
    assert_eq!(cache.client.base_url(&repository), "https://reg.lan:5000");
    assert_eq!(
        cache.client.config().credentials,
        BTreeMap::from([("reg.lan:5000".into(), Credential::basic("ci", "s3cret"))])
    );
    assert!(!format!("{cache:?}").contains("s3cret"));
}
