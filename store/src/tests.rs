//! Unit tests of the store against a real temporary directory.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::*;

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

fn count_files(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs_err::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        count += if path.is_dir() { count_files(&path) } else { 1 };
    }
    count
}

/// Stores `bytes` as a blob file of its own (through a writer: `put_bytes` packs small blobs).
fn put_file(store: &Store, bytes: &[u8]) -> BlobRef {
    let mut writer = store.writer().expect("writer");
    writer.write_all(bytes).expect("write");
    writer.finish().expect("finish")
}

const HELLO_SHA256: &str =
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn digest_display_parse_and_serde() {
    let digest: BlobDigest = HELLO_SHA256.parse().expect("valid digest");
    assert_eq!(digest, BlobDigest::of_bytes(b"hello"));
    assert_eq!(digest.to_string(), HELLO_SHA256);
    assert_eq!(digest.short(), "2cf24dba5fb0");
    let json = serde_json::to_string(&digest).expect("serialize");
    assert_eq!(json, format!("\"{HELLO_SHA256}\""));
    let back: BlobDigest = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, digest);

    assert!(matches!(
        "sha512:00".parse::<BlobDigest>(),
        Err(DigestParseError::Algorithm { .. })
    ));
    assert!(matches!(
        "sha256:abc".parse::<BlobDigest>(),
        Err(DigestParseError::Hex { .. })
    ));
    let upper = HELLO_SHA256.to_uppercase().replace("SHA256", "sha256");
    assert!(matches!(
        upper.parse::<BlobDigest>(),
        Err(DigestParseError::Hex { .. })
    ));
    assert!(serde_json::from_str::<BlobDigest>("\"sha256:zz\"").is_err());
}

#[test]
fn action_key_display_and_parse() {
    let key = ActionKey::from_bytes([0xab; 32]);
    assert_eq!(key.to_string(), "ab".repeat(32));
    assert_eq!(key.short(), "abababababab");
    assert_eq!(key.to_string().parse::<ActionKey>().expect("parse"), key);
    let result = ActionResult::new().with(
        "out",
        ArtifactKind::Blob,
        BlobRef {
            digest: Digest::of_bytes(b""),
            size: 0,
        },
    );
    assert_eq!(result.get("out").map(|b| b.size), Some(0));
    assert_eq!(result.get("other"), None);
}

#[test]
fn put_and_read_blob() {
    let (_dir, store) = new_store();
    let blob = put_file(&store, b"hello");
    assert_eq!(
        blob,
        BlobRef {
            digest: HELLO_SHA256.parse().expect("digest"),
            size: 5
        }
    );
    let path = store.blob_path(&blob.digest);
    assert!(path.ends_with(format!("store-v1/cas/sha256/2c/{}", blob.digest.hex())));
    assert!(store.has_blob(&blob));
    assert!(!store.has_blob(&BlobRef { size: 4, ..blob }));
    assert_eq!(store.read_blob(&blob.digest).expect("read"), b"hello");
    assert_eq!(store.verify_blob(&blob.digest).expect("verify"), blob);
    let missing = BlobDigest::of_bytes(b"absent");
    assert!(matches!(
        store.read_blob(&missing),
        Err(StoreError::BlobMissing { .. })
    ));
}

#[test]
fn identical_content_is_stored_once() {
    let (_dir, store) = new_store();
    let first = put_file(&store, b"same");
    let mut writer = store.writer().expect("writer");
    writer.write_all(b"sa").expect("write");
    writer.write_all(b"me").expect("write");
    assert_eq!(writer.size(), 4);
    let second = writer.finish().expect("finish");
    assert_eq!(first, second);
    // Packed or not, content already present is not stored again.
    assert_eq!(store.put_bytes(b"same").expect("put"), first);
    let packed = store.put_bytes(b"packed").expect("put");
    assert_eq!(put_file(&store, b"packed"), packed);
    assert_eq!(store.put_bytes(b"packed").expect("put"), packed);
    assert_eq!(count_files(&store.dir().join("cas")), 1);
    assert_eq!(count_files(&store.dir().join("packs")), 1);
    let pack_len: u64 = fs_err::read_dir(store.dir().join("packs"))
        .expect("packs")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    assert_eq!(pack_len, 6, "one copy of the packed blob");
    assert_eq!(count_files(&store.dir().join("tmp")), 0);
}

#[test]
fn publishing_again_repairs_a_damaged_blob_of_the_same_size() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store) = new_store();
    let blob = put_file(&store, b"the content");
    let path = store.blob_path(&blob.digest);
    let inode = fs_err::metadata(&path).expect("stat").ino();
    // An intact file is kept as it is.
    put_file(&store, b"the content");
    assert_eq!(fs_err::metadata(&path).expect("stat").ino(), inode);

    damage(&store, &blob);
    assert!(store.has_blob(&blob), "same size: a stat does not see it");
    assert!(matches!(
        store.verify_blob(&blob.digest),
        Err(StoreError::CorruptBlob { .. })
    ));
    assert_eq!(put_file(&store, b"the content"), blob);
    assert_eq!(fs_err::read(&path).expect("read"), b"the content");
    store.verify_blob(&blob.digest).expect("repaired");

    // Also through a writer that expects the digest (what fetches use).
    damage(&store, &blob);
    let mut content = &b"the content"[..];
    store
        .put_reader(&mut content, Some(&blob.digest))
        .expect("repair");
    store.verify_blob(&blob.digest).expect("repaired");
    assert_eq!(count_files(&store.dir().join("tmp")), 0);
}

#[test]
fn digest_mismatch_publishes_nothing() {
    let (_dir, store) = new_store();
    let expected = BlobDigest::of_bytes(b"expected");
    let err = store
        .put_reader(&mut &b"something else"[..], Some(&expected))
        .expect_err("must mismatch");
    match &err {
        StoreError::DigestMismatch {
            expected: e,
            actual,
        } => {
            assert_eq!(*e, expected);
            assert_eq!(*actual, BlobDigest::of_bytes(b"something else"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.category(), ErrorCategory::Environment);
    assert_eq!(count_files(&store.dir().join("cas")), 0);
    assert_eq!(count_files(&store.dir().join("tmp")), 0);

    let ok = store
        .put_reader(&mut &b"expected"[..], Some(&expected))
        .expect("matches");
    assert_eq!(ok.digest, expected);
}

#[test]
fn zeros_become_holes_in_the_blob_and_in_its_copy() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store) = new_store();
    let mut w = store.writer().unwrap();
    w.write_all(b"head").unwrap();
    w.zeros(64 << 20).unwrap();
    w.write_all(b"tail").unwrap();
    w.zeros(32 << 20).unwrap();
    let blob = w.finish().unwrap();
    let mut expected = b"head".to_vec();
    expected.resize(4 + (64 << 20), 0);
    expected.extend_from_slice(b"tail");
    expected.resize(expected.len() + (32 << 20), 0);
    let want = BlobRef {
        digest: BlobDigest::of_bytes(&expected),
        size: expected.len() as u64,
    };
    assert_eq!(blob, want, "zeros are hashed like written zeros");
    let meta = std::fs::metadata(store.blob_path(&blob.digest)).unwrap();
    assert_eq!(
        meta.len(),
        expected.len() as u64,
        "a trailing hole is part of the file"
    );
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} blocks allocated",
        meta.blocks()
    );

    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("disk.img");
    let out = std::fs::File::create(&out_path).unwrap();
    assert_eq!(store.copy_blob_to(&blob.digest, &out).unwrap(), blob.size);
    drop(out);
    let meta = std::fs::metadata(&out_path).unwrap();
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "the copy stays sparse: {} blocks",
        meta.blocks()
    );
    assert!(std::fs::read(&out_path).unwrap() == expected);
}

#[test]
fn abandoned_writer_leaves_no_temp_file() {
    let (_dir, store) = new_store();
    let mut writer = store.writer().expect("writer");
    writer.write_all(&[7u8; 1000]).expect("write");
    writer.flush().expect("flush");
    assert_eq!(count_files(&store.dir().join("tmp")), 1);
    drop(writer);
    assert_eq!(count_files(&store.dir().join("tmp")), 0);
}

#[test]
fn action_hit_requires_its_blobs() {
    let (_dir, store) = new_store();
    let key = ActionKey::from_bytes([1; 32]);
    assert_eq!(
        store.get_action_checked(&key).expect("lookup"),
        Lookup::Miss
    );

    let a = store.put_bytes(b"a").expect("put");
    let b = store.put_bytes(b"bb").expect("put");
    let result =
        ActionResult::new()
            .with("a", ArtifactKind::Blob, a)
            .with("b", ArtifactKind::Blob, b);
    store.put_action(&key, &result).expect("put action");
    assert_eq!(
        store.get_action_checked(&key).expect("lookup"),
        Lookup::Hit(result.clone())
    );
    assert_eq!(store.get_action(&key).expect("lookup"), Some(result));

    assert!(store.remove_blob(&b.digest).expect("delete blob"));
    assert_eq!(
        store.get_action_checked(&key).expect("lookup"),
        Lookup::Damaged { missing: b }
    );
    assert_eq!(store.get_action(&key).expect("lookup"), None);
}

#[test]
fn action_naming_a_missing_blob_is_refused() {
    let (_dir, store) = new_store();
    let ghost = BlobRef {
        digest: BlobDigest::of_bytes(b"ghost"),
        size: 5,
    };
    let err = store
        .put_action(
            &ActionKey::from_bytes([2; 32]),
            &ActionResult::new().with("x", ArtifactKind::Blob, ghost),
        )
        .expect_err("dangling record");
    assert!(matches!(err, StoreError::BlobMissing { .. }), "{err:?}");
    assert!(store.list_actions().expect("list").is_empty());
}

#[test]
fn reopen_persists_and_cleans_tmp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = ActionKey::from_bytes([3; 32]);
    let result = {
        let store = Store::open(dir.path()).expect("open");
        let blob = store.put_bytes(b"persist me").expect("put");
        let result = ActionResult::new().with("out", ArtifactKind::Blob, blob);
        store
            .put_action_with_meta(&key, &result, &[(MetaTable::History, "id", b"h1")])
            .expect("put action");
        store
            .put_meta(MetaTable::Pins, "busybox:latest", b"sha256:00")
            .expect("put meta");
        fs_err::write(store.dir().join("tmp/blob-orphan"), b"left by a crash").expect("orphan");
        result
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get_action(&key).expect("lookup"),
        Some(result.clone())
    );
    assert_eq!(
        store.get_meta(MetaTable::History, "id").expect("meta"),
        Some(b"h1".to_vec())
    );
    assert_eq!(
        store.list_meta(MetaTable::Pins).expect("list"),
        vec![("busybox:latest".to_owned(), b"sha256:00".to_vec())]
    );
    assert_eq!(
        store.get_meta(MetaTable::Roots, "none").expect("meta"),
        None
    );
    assert_eq!(store.list_actions().expect("list"), vec![(key, result)]);
    assert_eq!(count_files(&store.dir().join("tmp")), 0);
    assert!(
        store
            .remove_meta(MetaTable::Pins, "busybox:latest")
            .expect("remove")
    );
    assert!(store.remove_action(&key).expect("remove"));
    assert_eq!(
        store.get_action_checked(&key).expect("lookup"),
        Lookup::Miss
    );
}

#[test]
fn list_and_remove_blobs() {
    let (_dir, store) = new_store();
    let mut put: Vec<BlobRef> = ["x", "yy", "zzz"]
        .iter()
        .map(|s| store.put_bytes(s.as_bytes()).expect("put"))
        .collect();
    let mut listed: Vec<BlobRef> = store
        .list_blobs()
        .expect("list")
        .collect::<Result<_, _>>()
        .expect("entries");
    put.sort();
    listed.sort();
    assert_eq!(listed, put);
    assert!(store.remove_blob(&put[0].digest).expect("remove"));
    assert!(!store.remove_blob(&put[0].digest).expect("remove again"));
    assert_eq!(store.list_blobs().expect("list").count(), 2);
}

#[test]
fn same_process_opens_share_the_store() {
    let (dir, store) = new_store();
    let again = Store::open(dir.path()).expect("second open in the same process");
    let blob = store.put_bytes(b"shared").expect("put");
    assert!(again.has_blob(&blob));
}

#[test]
fn second_opener_waits_for_the_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Store::open(dir.path()).expect("create store"));
    // Play another process: hold the lock file through a separate open file description.
    let lock_path = dir.path().join("store-v1/lock");
    let holder = fs_err::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .expect("open lock");
    holder.file().lock().expect("take lock");
    fs_err::write(&lock_path, "4242\n").expect("write pid");

    let (notified_tx, notified_rx) = mpsc::channel();
    let (opened_tx, opened_rx) = mpsc::channel();
    let root = dir.path().to_owned();
    let opener = std::thread::spawn(move || {
        let store = Store::open_with(&root, &|message| {
            notified_tx.send(message.to_owned()).expect("send");
        });
        opened_tx.send(()).expect("send");
        store
    });
    let message = notified_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("notified");
    assert_eq!(
        message,
        "waiting for the store lock held by another lkb process (pid 4242)"
    );
    assert!(
        opened_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "must still wait"
    );
    holder.file().unlock().expect("unlock");
    let store = opener
        .join()
        .expect("join")
        .expect("open after the lock is free");
    assert!(notified_rx.try_recv().is_err(), "notified only once");
    let pid = fs_err::read_to_string(&lock_path).expect("lock file");
    assert_eq!(pid.trim(), std::process::id().to_string());
    drop(store);
}

const CHILD_ENV: &str = "LKB_STORE_TEST_CHILD_ROOT";

/// Run twice: as the parent (holds the store, starts this test binary again as a child) and,
/// inside the child, as the second process that must wait and then succeed.
#[test]
#[expect(
    clippy::disallowed_methods,
    reason = "the test binary re-runs itself; the variable only tells it which role to play"
)]
fn second_process_waits_then_succeeds() {
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        let root = Path::new(&root);
        let store = Store::open_with(root, &|message| {
            fs_err::write(root.join("notified"), message).expect("write notification");
        })
        .expect("child opens the store");
        store
            .put_meta(MetaTable::Roots, "child", b"done")
            .expect("child writes");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("parent opens the store");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "tests::second_process_waits_then_succeeds",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let notified = dir.path().join("notified");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !notified.exists() {
        assert!(Instant::now() < deadline, "child never reported waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
    let message = fs_err::read_to_string(&notified).expect("notification");
    assert!(
        message.contains(&format!("(pid {})", std::process::id())),
        "{message}"
    );
    assert!(
        child.try_wait().expect("poll child").is_none(),
        "child must wait for the lock"
    );
    drop(store);
    let status = child.wait().expect("wait child");
    assert!(status.success(), "child failed: {status}");
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get_meta(MetaTable::Roots, "child").expect("meta"),
        Some(b"done".to_vec())
    );
}

#[test]
fn error_categories() {
    assert_eq!(ErrorCategory::User.exit_code(), 2);
    assert_eq!(ErrorCategory::Environment.exit_code(), 3);
    assert_eq!(ErrorCategory::Internal.exit_code(), 101);
    let corrupt = StoreError::CorruptRecord {
        table: "actions",
        key: "k".to_owned(),
        source: "bad".into(),
    };
    assert_eq!(corrupt.category(), ErrorCategory::Internal);
    let parse = "nope".parse::<BlobDigest>().expect_err("bad digest");
    assert_eq!(parse.category(), ErrorCategory::User);
}

#[test]
fn store_is_a_cheap_shareable_handle() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Store>();
    shareable::<BlobDigest>();
}

#[test]
fn action_result_json_shape_is_stable() {
    let result = ActionResult::new().with(
        "out",
        ArtifactKind::Blob,
        BlobRef {
            digest: HELLO_SHA256.parse().expect("digest"),
            size: 5,
        },
    );
    assert_eq!(
        serde_json::to_string(&result).expect("serialize"),
        format!(
            r#"{{"outputs":[{{"name":"out","kind":"blob","blob":{{"digest":"{HELLO_SHA256}","size":5}}}}]}}"#
        )
    );
}

// ---------------------------------------------------------------------------------------------
// garbage collection, verify, clean

/// A toy format for the reference function: an artifact called `list` holds the digests it
/// refers to, one per line.
fn list_references(
    store: &Store,
) -> impl Fn(&Artifact) -> Result<Vec<BlobDigest>, ReferenceError> + Sync + use<> {
    let store = store.clone();
    move |artifact: &Artifact| {
        if artifact.name != "list" {
            return Ok(Vec::new());
        }
        let text = String::from_utf8(store.read_blob(&artifact.blob.digest)?)?;
        text.lines()
            .map(|line| line.parse::<BlobDigest>().map_err(Into::into))
            .collect()
    }
}

fn put_list(store: &Store, blobs: &[BlobRef]) -> BlobRef {
    let text: String = blobs.iter().map(|b| format!("{}\n", b.digest)).collect();
    store.put_bytes(text.as_bytes()).expect("put list")
}

fn key(n: u8) -> ActionKey {
    ActionKey::from_bytes([n; 32])
}

fn root(name: &str, at: u64, actions: &[ActionKey], blobs: &[BlobRef]) -> GcRoot {
    GcRoot {
        name: name.to_owned(),
        recorded_at_ms: at,
        actions: actions.to_vec(),
        blobs: blobs.iter().map(|b| b.digest).collect(),
    }
}

fn blob_digests(store: &Store) -> std::collections::BTreeSet<BlobDigest> {
    store
        .list_blobs()
        .expect("list")
        .map(|b| b.expect("blob").digest)
        .collect()
}

#[test]
fn gc_keeps_what_roots_reach_and_removes_the_rest() {
    let (_dir, store) = new_store();
    let content = store.put_bytes(b"file content").expect("put");
    let list = put_list(&store, &[content]);
    let output = store.put_bytes(b"output").expect("put");
    let manifest = store.put_bytes(b"manifest").expect("put");
    let old_output = store.put_bytes(b"old output").expect("put");
    let old_content = store.put_bytes(b"old content").expect("put");
    let old_list = put_list(&store, &[old_content]);
    let orphan = store.put_bytes(b"orphan").expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new().with("list", ArtifactKind::Tree, list),
        )
        .expect("put");
    store
        .put_action(
            &key(2),
            &ActionResult::new().with("out", ArtifactKind::Blob, output),
        )
        .expect("put");
    store
        .put_action(
            &key(3),
            &ActionResult::new()
                .with("out", ArtifactKind::Blob, old_output)
                .with("list", ArtifactKind::Tree, old_list),
        )
        .expect("put");

    let references = list_references(&store);
    let inventory = store.inventory(&references).expect("inventory");
    let roots = [root("t", 1, &[key(1), key(2), key(9)], &[manifest])];
    let live = inventory.mark(&roots);
    assert_eq!(live.actions, [key(1), key(2)].into_iter().collect());
    let plan = inventory.plan(&roots, None);
    assert!(plan.evicted.is_empty());
    assert_eq!(plan.remove_actions, vec![key(3)]);
    let mut garbage = vec![old_output, old_content, old_list, orphan];
    garbage.sort();
    assert_eq!(plan.remove_blobs, garbage);
    assert_eq!(plan.freed().blobs, 4);
    assert_eq!(plan.kept.blobs, 4);
    assert_eq!(plan.kept_actions, 2);

    let report = store.sweep(&plan).expect("sweep");
    assert_eq!(report.actions_removed, 1);
    assert_eq!(report.blobs_removed, plan.freed());
    assert_eq!(
        blob_digests(&store),
        [content, list, output, manifest]
            .iter()
            .map(|b| b.digest)
            .collect()
    );
    assert!(store.get_action(&key(1)).expect("get").is_some());
    assert!(store.get_action(&key(2)).expect("get").is_some());
    assert_eq!(
        store.get_action_checked(&key(3)).expect("get"),
        Lookup::Miss
    );

    // A second collection finds nothing more.
    let again = store
        .inventory(&references)
        .expect("inventory")
        .plan(&roots, None);
    assert!(again.remove_actions.is_empty() && again.remove_blobs.is_empty());
}

#[test]
fn gc_with_max_size_evicts_oldest_roots_first() {
    let (_dir, store) = new_store();
    let shared = store.put_bytes(&[1u8; 100]).expect("put");
    let old = store.put_bytes(&[2u8; 1000]).expect("put");
    let new = store.put_bytes(&[3u8; 10]).expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new()
                .with("a", ArtifactKind::Blob, shared)
                .with("b", ArtifactKind::Blob, old),
        )
        .expect("put");
    store
        .put_action(
            &key(2),
            &ActionResult::new()
                .with("a", ArtifactKind::Blob, shared)
                .with("b", ArtifactKind::Blob, new),
        )
        .expect("put");
    let roots = [
        root("//new", 2_000, &[key(2)], &[]),
        root("//old", 1_000, &[key(1)], &[]),
    ];
    let inventory = store
        .inventory(&|_: &Artifact| Ok(Vec::new()))
        .expect("inventory");
    assert_eq!(inventory.usage().bytes, 1110);

    let fits = inventory.plan(&roots, Some(1110));
    assert!(fits.evicted.is_empty() && fits.remove_blobs.is_empty());

    let plan = inventory.plan(&roots, Some(500));
    assert_eq!(plan.evicted, vec!["//old".to_owned()]);
    assert_eq!(plan.remove_actions, vec![key(1)]);
    assert_eq!(plan.remove_blobs, vec![old]);
    assert_eq!(plan.kept.bytes, 110);

    let everything = inventory.plan(&roots, Some(0));
    assert_eq!(
        everything.evicted,
        vec!["//old".to_owned(), "//new".to_owned()]
    );
    assert_eq!(everything.kept, Usage::default());
    assert_eq!(everything.remove_blobs.len(), 3);

    store.sweep(&plan).expect("sweep");
    assert_eq!(
        blob_digests(&store),
        [shared.digest, new.digest].into_iter().collect()
    );
}

#[test]
fn gc_stops_when_references_cannot_be_read() {
    let (_dir, store) = new_store();
    let not_a_list = store.put_bytes(b"not a digest").expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new().with("list", ArtifactKind::Tree, not_a_list),
        )
        .expect("put");
    let error = store
        .inventory(&list_references(&store))
        .expect_err("bad list");
    assert!(
        matches!(&error, StoreError::References { digest, .. } if *digest == not_a_list.digest),
        "{error}"
    );
}

#[test]
fn blobs_by_class() {
    let (_dir, store) = new_store();
    let content = store.put_bytes(b"content").expect("put");
    let list = put_list(&store, &[content]);
    let segment = store.put_bytes(b"segment").expect("put");
    store.put_bytes(b"manifest").expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new()
                .with("list", ArtifactKind::Tree, list)
                .with("segment", ArtifactKind::Blob, segment),
        )
        .expect("put");
    store
        .put_action(
            &key(2),
            &ActionResult::new().with("zz", ArtifactKind::Blob, segment),
        )
        .expect("put");
    let classes = store
        .inventory(&list_references(&store))
        .expect("inventory")
        .by_class();
    let blobs = |class: BlobClass| classes.get(&class).map(|u| u.blobs);
    assert_eq!(blobs(BlobClass::Artifact("list".into())), Some(1));
    assert_eq!(blobs(BlobClass::Artifact("segment".into())), Some(1));
    assert_eq!(blobs(BlobClass::Artifact("zz".into())), None);
    assert_eq!(blobs(BlobClass::Referenced), Some(1));
    assert_eq!(blobs(BlobClass::Other), Some(1));
}

/// Flips the first byte of a blob (in its own file or in its pack), keeping its size.
fn damage(store: &Store, blob: &BlobRef) {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let (path, offset, _) = store.blob_file(&blob.digest).expect("locate");
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).expect("read");
    byte[0] ^= 0xff;
    file.write_all_at(&byte, offset).expect("write");
}

#[test]
fn verify_deletes_damaged_blobs_and_the_records_that_need_them() {
    let (_dir, store) = new_store();
    let good = store.put_bytes(b"good").expect("put");
    let bad = store.put_bytes(b"bad!").expect("put");
    let content = store.put_bytes(b"content").expect("put");
    let list = put_list(&store, &[content]);
    let gone = store.put_bytes(b"gone").expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new().with("out", ArtifactKind::Blob, good),
        )
        .expect("put");
    store
        .put_action(
            &key(2),
            &ActionResult::new()
                .with("out", ArtifactKind::Blob, good)
                .with("x", ArtifactKind::Blob, bad),
        )
        .expect("put");
    store
        .put_action(
            &key(3),
            &ActionResult::new().with("list", ArtifactKind::Tree, list),
        )
        .expect("put");
    store
        .put_action(
            &key(4),
            &ActionResult::new().with("out", ArtifactKind::Blob, gone),
        )
        .expect("put");
    // A record that is not JSON, written behind the API's back.
    {
        let txn = store.inner.db.begin_write().expect("write txn");
        {
            let mut actions = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("actions"))
                .expect("table");
            actions
                .insert(key(5).to_string().as_str(), b"{not json".as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    damage(&store, &bad);
    damage(&store, &content);
    store.remove_blob(&gone.digest).expect("remove");

    let report = store.verify(&list_references(&store)).expect("verify");
    assert_eq!(report.checked.blobs, 4);
    assert_eq!(report.actions_checked, 5);
    let mut damaged: Vec<BlobDigest> = vec![bad.digest, content.digest];
    damaged.sort();
    assert_eq!(
        report
            .damaged_blobs
            .iter()
            .map(|d| d.digest)
            .collect::<Vec<_>>(),
        damaged
    );
    assert!(
        report
            .damaged_blobs
            .iter()
            .all(|d| matches!(d.damage, BlobDamage::Corrupt { .. }))
    );
    let dropped: Vec<(String, RecordDamage)> = report
        .dropped_actions
        .iter()
        .map(|d| (d.key.clone(), d.damage.clone()))
        .collect();
    assert_eq!(dropped.len(), 4, "{dropped:?}");
    assert_eq!(
        dropped[0],
        (
            key(2).to_string(),
            RecordDamage::Output {
                artifact: "x".into(),
                blob: bad
            }
        )
    );
    assert_eq!(
        dropped[1],
        (
            key(3).to_string(),
            RecordDamage::Reference {
                artifact: "list".into(),
                digest: content.digest
            }
        )
    );
    assert_eq!(
        dropped[2],
        (
            key(4).to_string(),
            RecordDamage::Output {
                artifact: "out".into(),
                blob: gone
            }
        )
    );
    assert!(matches!(dropped[3].1, RecordDamage::Unreadable { .. }));

    assert_eq!(
        blob_digests(&store),
        [good.digest, list.digest].into_iter().collect()
    );
    assert_eq!(
        store.list_actions().expect("list").len(),
        1,
        "only the sound record stays"
    );
    let again = store
        .verify(&list_references(&store))
        .expect("verify again");
    assert!(again.damaged_blobs.is_empty() && again.dropped_actions.is_empty());
}

#[test]
fn clean_removes_everything_but_the_lock_and_the_store_reopens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let blob = store.put_bytes(b"data").expect("put");
    store
        .put_action(
            &key(1),
            &ActionResult::new().with("out", ArtifactKind::Blob, blob),
        )
        .expect("put");
    let in_use = Store::clean(dir.path(), &|_| {}).expect_err("open in this process");
    assert!(matches!(in_use, StoreError::InUse { .. }), "{in_use}");
    assert_eq!(in_use.category(), ErrorCategory::Internal);
    drop(store);

    let report = Store::clean(dir.path(), &|_| {}).expect("clean");
    assert!(report.files >= 2, "{report:?}");
    assert!(report.bytes >= 4);
    let left: Vec<String> = fs_err::read_dir(dir.path().join("store-v1"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["lock".to_owned()]);

    let store = Store::open(dir.path()).expect("reopen after clean");
    assert!(!store.has_blob(&blob));
    assert_eq!(store.get_action(&key(1)).expect("get"), None);
    store.put_bytes(b"new").expect("put after clean");
    drop(store);

    let nothing = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        Store::clean(nothing.path(), &|_| {}).expect("clean an empty root"),
        CleanReport::default()
    );
}

#[test]
fn clean_waits_for_the_lock() {
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Store::open(dir.path()).expect("create store"));
    let lock_path = dir.path().join("store-v1/lock");
    let holder = fs_err::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .expect("open lock");
    holder.file().lock().expect("take lock");
    let (notified_tx, notified_rx) = mpsc::channel();
    let root = dir.path().to_owned();
    let cleaner = std::thread::spawn(move || {
        Store::clean(&root, &|message| {
            notified_tx.send(message.to_owned()).expect("send");
        })
    });
    let message = notified_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("notified");
    assert!(
        message.starts_with("waiting for the store lock"),
        "{message}"
    );
    assert!(
        dir.path().join("store-v1/index.redb").exists(),
        "nothing removed while waiting"
    );
    holder.file().unlock().expect("unlock");
    cleaner.join().expect("join").expect("clean");
    assert!(!dir.path().join("store-v1/index.redb").exists());
}

#[test]
fn a_damaged_index_is_an_error_not_a_panic() {
    // Garbage (redb: "not a redb database") and a real index with flipped bytes (redb 4.6
    // panics in its page parser while opening it).
    for variant in ["garbage", "flipped"] {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let blob = store.put_bytes(b"x").expect("put");
            for n in 0..50u8 {
                let result = ActionResult::new().with("out", ArtifactKind::Blob, blob);
                store.put_action(&key(n), &result).expect("put action");
            }
        }
        let path = dir.path().join("store-v1").join("index.redb");
        let mut bytes = fs_err::read(&path).expect("read");
        let len = bytes.len();
        match variant {
            "garbage" => bytes.fill(0xab),
            _ => bytes[len / 3..].iter_mut().for_each(|b| *b ^= 0x5a),
        }
        fs_err::write(&path, &bytes).expect("write");

        let outcome = std::panic::catch_unwind(|| Store::open(dir.path()).map(|_| ()));
        let error = outcome
            .unwrap_or_else(|_| panic!("{variant}: opening panicked"))
            .expect_err(variant);
        assert!(
            matches!(&error, StoreError::DamagedIndex { path: p, .. } if *p == path),
            "{variant}: {error:?}"
        );
        assert_eq!(error.category(), ErrorCategory::Environment);
        assert!(
            error.to_string().contains("run `lkb cache clean`"),
            "{variant}: {error}"
        );
        Store::clean(dir.path(), &|_| {}).expect("clean");
        Store::open(dir.path()).expect("reopens after clean");
    }
}

#[test]
fn small_blobs_share_a_pack_and_outlive_the_process_once_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (recorded, unrecorded, big) = {
        let store = Store::open(dir.path()).expect("open");
        let recorded: Vec<BlobRef> = (0..100)
            .map(|i| {
                store
                    .put_bytes(format!("small {i}").as_bytes())
                    .expect("put")
            })
            .collect();
        let big = store
            .put_bytes(&vec![7u8; PACK_MAX_BLOB as usize + 1])
            .expect("put");
        // Readable at once, before any record names them.
        assert_eq!(
            store.read_blob(&recorded[5].digest).expect("read"),
            b"small 5"
        );
        let result = ActionResult::new().with("out", ArtifactKind::Blob, recorded[0]);
        store.put_action(&key(1), &result).expect("record");
        // Written after the last transaction: never committed to the index.
        let unrecorded = store
            .put_bytes(b"written, then the process died")
            .expect("put");
        assert!(store.has_blob(&unrecorded));
        (recorded, unrecorded, big)
    };
    assert_eq!(count_files(&dir.path().join("store-v1/packs")), 1);
    assert_eq!(
        count_files(&dir.path().join("store-v1/cas")),
        1,
        "only the big blob"
    );
    let store = Store::open(dir.path()).expect("reopen");
    for (i, blob) in recorded.iter().enumerate() {
        assert!(store.has_blob(blob));
        assert_eq!(
            store.read_blob(&blob.digest).expect("read"),
            format!("small {i}").as_bytes()
        );
        let mut copy = Vec::new();
        std::io::Read::read_to_end(&mut store.open_blob(&blob.digest).expect("open"), &mut copy)
            .expect("read");
        assert_eq!(copy.len() as u64, blob.size);
    }
    assert!(store.has_blob(&big));
    assert!(
        !store.has_blob(&unrecorded),
        "a row is only kept once committed"
    );
    assert_eq!(
        store.list_blobs().expect("list").count(),
        recorded.len() + 1
    );
    // A packed blob copies into a file like any other.
    let out = tempfile::tempfile().expect("temp");
    assert_eq!(
        store
            .copy_blob_to_at(&recorded[3].digest, &out, 4)
            .expect("copy"),
        7
    );
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &out, &mut bytes).expect("read");
    assert_eq!(bytes, b"\0\0\0\0small 3");
}

#[test]
fn removing_packed_blobs_compacts_and_then_deletes_their_pack() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs: Vec<BlobRef> = {
        let store = Store::open(dir.path()).expect("open");
        let blobs: Vec<BlobRef> = (0..10)
            .map(|i| {
                store
                    .put_bytes(format!("blob number {i}").as_bytes())
                    .expect("put")
            })
            .collect();
        store
            .put_meta(MetaTable::Pins, "p", b"v")
            .expect("commit rows");
        blobs
    };
    let packs = dir.path().join("store-v1/packs");
    let pack_names = || -> Vec<String> {
        let mut names: Vec<String> = fs_err::read_dir(&packs)
            .expect("packs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let first = pack_names();
    assert_eq!(first.len(), 1);
    let store = Store::open(dir.path()).expect("reopen");
    // Half or more still live: the pack stays as it is.
    let digests: Vec<BlobDigest> = blobs.iter().map(|b| b.digest).collect();
    assert_eq!(
        store.remove_blobs(&digests[..4]).expect("remove"),
        [true; 4]
    );
    assert_eq!(pack_names(), first);
    // Most of it dead: the live blobs move to a new pack and the old one goes.
    assert_eq!(
        store.remove_blobs(&digests[4..8]).expect("remove"),
        [true; 4]
    );
    let second = pack_names();
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    for (i, blob) in blobs.iter().enumerate().skip(8) {
        assert_eq!(
            store.read_blob(&blob.digest).expect("read"),
            format!("blob number {i}").as_bytes()
        );
    }
    drop(store);
    // After a restart nothing is live in the newer pack once the rest goes.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.remove_blobs(&digests[8..]).expect("remove"),
        [true; 2]
    );
    assert_eq!(
        store.remove_blobs(&digests[8..]).expect("remove"),
        [false; 2]
    );
    assert!(pack_names().is_empty());
    assert_eq!(store.list_blobs().expect("list").count(), 0);
}
