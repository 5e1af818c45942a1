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
    let blob = store.put_bytes(b"hello").expect("put");
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
    let first = store.put_bytes(b"same").expect("put");
    let mut writer = store.writer().expect("writer");
    writer.write_all(b"sa").expect("write");
    writer.write_all(b"me").expect("write");
    assert_eq!(writer.size(), 4);
    let second = writer.finish().expect("finish");
    assert_eq!(first, second);
    assert_eq!(count_files(&store.dir().join("cas")), 1);
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
    let result = ActionResult::new().with("a", a).with("b", b);
    store.put_action(&key, &result).expect("put action");
    assert_eq!(
        store.get_action_checked(&key).expect("lookup"),
        Lookup::Hit(result.clone())
    );
    assert_eq!(store.get_action(&key).expect("lookup"), Some(result));

    fs_err::remove_file(store.blob_path(&b.digest)).expect("delete blob");
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
            &ActionResult::new().with("x", ghost),
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
        let result = ActionResult::new().with("out", blob);
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
        BlobRef {
            digest: HELLO_SHA256.parse().expect("digest"),
            size: 5,
        },
    );
    assert_eq!(
        serde_json::to_string(&result).expect("serialize"),
        format!(
            r#"{{"outputs":[{{"name":"out","blob":{{"digest":"{HELLO_SHA256}","size":5}}}}]}}"#
        )
    );
}
