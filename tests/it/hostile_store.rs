//! A store someone else damaged: `lkb` reports it and says how to recover instead of
//! crashing.

use std::path::Path;

use lkb_store::{ActionKey, ActionResult, ArtifactKind, Store};
use lkb_tests::cli::{Lkb, Run, workspace};

const TINY: &str = "\
kernel:
  image: localhost/lkb-examples/kernel:1
  cmdline: \"console=ttyS0\"
init:
  - localhost/lkb-examples/init:1
";

/// Fills the store under `root` with some action records, so its index has real pages.
fn populate(root: &Path) {
    let store = Store::open(root).expect("open store");
    let blob = store.put_bytes(b"output").expect("put blob");
    for n in 0..50u8 {
        let key: ActionKey = format!("{n:064x}").parse().expect("key");
        let result = ActionResult::new().with("out", ArtifactKind::Blob, blob);
        store.put_action(&key, &result).expect("put action");
    }
}

fn assert_damaged_index_reported(run: &Run, what: &str, index: &Path) {
    assert_eq!(
        run.code, 3,
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let want = format!("the store index at {} is damaged", index.display());
    assert!(run.stderr.contains(&want), "{what}:\n{}", run.stderr);
    assert!(
        run.stderr.contains("run `lkb cache clean`"),
        "{what}:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("this is a bug in lkb"),
        "{what}:\n{}",
        run.stderr
    );
    // redb's own panic is handled, so it is not printed as if lkb had crashed.
    assert!(!run.stderr.contains("panicked"), "{what}:\n{}", run.stderr);
}

#[test]
fn a_damaged_index_is_reported_with_the_way_out() {
    for variant in ["garbage", "flipped"] {
        let ws = workspace(&[], &[]).unwrap();
        fs_err::create_dir(ws.path().join("examples")).unwrap();
        fs_err::write(ws.path().join("examples/tiny.yml"), TINY).unwrap();
        let lkb = Lkb::new(ws.path()).unwrap();
        populate(lkb.store.path());
        let index = lkb.store.path().join("store-v1").join("index.redb");
        let mut bytes = fs_err::read(&index).unwrap();
        let len = bytes.len();
        match variant {
            "garbage" => bytes.fill(0xab),
            // redb 4.6 panics (unreachable!) on this one rather than returning an error.
            _ => bytes[len / 3..].iter_mut().for_each(|b| *b ^= 0x5a),
        }
        fs_err::write(&index, &bytes).unwrap();

        for args in [
            &["cache", "ls"][..],
            &["cache", "du"],
            &["cache", "verify"],
            &["cache", "gc"],
            &["build", "//examples:tiny"],
        ] {
            let run = lkb.run(args).unwrap();
            assert_damaged_index_reported(&run, &format!("{variant}: lkb {args:?}"), &index);
        }
        lkb.run(&["cache", "clean"]).unwrap().ok().unwrap();
        lkb.run(&["cache", "ls"]).unwrap().ok().unwrap();
    }
}
