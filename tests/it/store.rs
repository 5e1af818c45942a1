//! The store under stress, and `lkb cache`: two builds on one store at once, builds killed
//! with SIGKILL at random points, and `cache gc | verify | ls | du | clean` against real
//! builds of the example images.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lkb_tests::cli::{Lkb, Run, example_layout, repo_root, workspace};
use serde_json::Value;
use sha2::Digest as _;

const MINIMAL: &str = "//examples:minimal";
const OUTPUTS: [&str; 3] = ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"];

// ---------------------------------------------------------------------------------------------
// helpers

fn repo_yml(name: &str) -> String {
    fs_err::read_to_string(repo_root().join("examples").join(name)).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, text).unwrap();
}

/// A scratch workspace using the example layout, with `examples/minimal.yml`.
fn minimal_workspace() -> tempfile::TempDir {
    let layout = example_layout().unwrap();
    let ws = workspace(&[&layout], &[]).unwrap();
    write(ws.path(), "examples/minimal.yml", &repo_yml("minimal.yml"));
    ws
}

/// A second `Lkb` on the same store as `first`.
fn same_store(first: &Lkb, cwd: &Path) -> Lkb {
    Lkb::new(cwd)
        .unwrap()
        .env("LKB_STORE", first.store.path().display().to_string())
}

fn build_ok(lkb: &Lkb, args: &[&str]) -> Run {
    lkb.build(args).unwrap().ok().unwrap()
}

fn cache_ok(lkb: &Lkb, args: &[&str]) -> Run {
    let mut all = vec!["cache"];
    all.extend_from_slice(args);
    lkb.run(&all).unwrap().ok().unwrap()
}

fn executed(run: &Run) -> u64 {
    let summary = run.summary().unwrap();
    summary
        .pointer("/actions/executed")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no executed count in {summary}"))
}

/// The output files of `//examples:minimal` under `dir`, by name.
fn outputs(dir: &Path) -> BTreeMap<&'static str, Vec<u8>> {
    OUTPUTS
        .iter()
        .map(|name| (*name, fs_err::read(dir.join(name)).unwrap()))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn store_dir(lkb: &Lkb) -> PathBuf {
    lkb.store.path().join("store-v1")
}

fn blob_path(lkb: &Lkb, hex: &str) -> PathBuf {
    store_dir(lkb).join("cas/sha256").join(&hex[..2]).join(hex)
}

/// The files holding blobs (one per large blob in `cas/`, shared pack files in `packs/`):
/// count and bytes.
fn cas_usage(lkb: &Lkb) -> (usize, u64) {
    fn walk(dir: &Path, usage: &mut (usize, u64)) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, usage);
            } else {
                usage.0 += 1;
                usage.1 += fs_err::metadata(&path).unwrap().len();
            }
        }
    }
    let mut usage = (0, 0);
    walk(&store_dir(lkb).join("cas"), &mut usage);
    walk(&store_dir(lkb).join("packs"), &mut usage);
    usage
}

/// The number of blobs `lkb cache ls` says the store holds.
fn ls_blobs(lkb: &Lkb) -> u64 {
    count_after(&cache_ok(lkb, &["ls"]).stdout, " action entries, ")
}

/// The whole number in `text` right after `prefix`.
fn count_after(text: &str, prefix: &str) -> u64 {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"))
        + prefix.len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in:\n{text}"))
}

/// Holds the store's lock the way another lkb process would (an exclusive flock on
/// `store-v1/lock`) until dropped.
struct LockHolder {
    _file: std::fs::File,
}

impl LockHolder {
    fn take(lkb: &Lkb) -> LockHolder {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(store_dir(lkb).join("lock"))
            .unwrap();
        file.lock().unwrap();
        LockHolder { _file: file }
    }
}

/// Starts `lkb ARGS` with stderr going to a file, so the test can watch it while it runs.
fn spawn(lkb: &Lkb, args: &[&str], stderr: &Path) -> Child {
    lkb.command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the file contains `needle`, and returns its content.
fn wait_for_text(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = fs_err::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?}; got:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A small deterministic generator (xorshift64*), so the kill points are the same every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

// ---------------------------------------------------------------------------------------------
// (a) concurrency

/// Two cold builds of one target on one store, started together, both succeed with the same
/// bytes. Then, with the lock held as another process would, a build says it is waiting, does
/// not finish until the lock is free, and then succeeds without executing anything.
#[test]
fn two_builds_on_one_store_both_succeed_and_the_second_says_it_waits() {
    let ws = minimal_workspace();
    let first = Lkb::new(ws.path()).unwrap();
    let second = same_store(&first, ws.path());

    let mut a = first.command(&["--progress=json", "build", MINIMAL, "--dir", "out-a"]);
    let mut b = second.command(&["--progress=json", "build", MINIMAL, "--dir", "out-b"]);
    let a = a
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = b
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for (name, out) in [("a", &a), ("b", &b)] {
        assert!(
            out.status.success(),
            "build {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        outputs(&ws.path().join("out-a")),
        outputs(&ws.path().join("out-b"))
    );

    // Deterministic waiting: the lock is held while the build starts.
    let holder = LockHolder::take(&first);
    let stderr = ws.path().join("waiting.stderr");
    let mut child = spawn(
        &second,
        &["--progress=json", "build", MINIMAL, "--dir", "out-c"],
        &stderr,
    );
    let text = wait_for_text(&stderr, "waiting for the store lock");
    assert!(text.contains("held by another lkb process (pid "), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "must wait for the lock"
    );
    drop(holder);
    let status = child.wait().unwrap();
    let text = fs_err::read_to_string(&stderr).unwrap();
    assert!(status.success(), "waiting build failed:\n{text}");
    let run = Run {
        code: 0,
        stdout: String::new(),
        stderr: text,
    };
    assert_eq!(executed(&run), 0);
    assert_eq!(
        outputs(&ws.path().join("out-c")),
        outputs(&ws.path().join("out-a"))
    );
}

// ---------------------------------------------------------------------------------------------
// (b) crashes

/// Builds killed with SIGKILL at seeded random points (twice in a row on the same store, then
/// on a fresh one, ten times) leave a store that the next build uses without error, and whose
/// outputs are byte-identical to a build in a fresh store. `cache verify` finds no damage.
///
/// Every kill interrupts a running build: the points are counted in `action_started` events
/// (read from the child's `--progress=json` stream as it goes), never more than the build still
/// has to start, and the child is checked to be alive just before it is killed. (Points in time
/// cannot promise that: later builds run faster than the first, cold one.)
#[test]
fn builds_killed_at_random_points_leave_a_usable_store() {
    let ws = minimal_workspace();
    let reference = Lkb::new(ws.path()).unwrap();
    let run = build_ok(&reference, &[MINIMAL, "--dir", "reference"]);
    let expected = outputs(&ws.path().join("reference"));
    let actions = run
        .events()
        .iter()
        .filter(|v| v["event"] == "action_started")
        .count() as u64;
    assert!(actions >= 2, "a cold build starts {actions} actions");

    let mut random = Random(0x0005_eed1_b5c0_ffee);
    for iteration in 0..10 {
        let lkb = Lkb::new(ws.path()).unwrap();
        // The first build gets through at most `first` actions, so the second, on the same
        // store, still starts at least `actions - first`.
        let first = 1 + random.next() % (actions - 1);
        let second = 1 + random.next() % (actions - first);
        let points = [first, second];
        for (run, &point) in points.iter().enumerate() {
            let mut child = lkb
                .command(&["--progress=json", "build", MINIMAL, "--dir", "out"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Kept open until the child is dead: a closed pipe would end the build early.
            let mut events = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut started = 0;
            for line in events.by_ref() {
                let line = line.unwrap();
                if serde_json::from_str::<Value>(&line)
                    .is_ok_and(|v| v["event"] == "action_started")
                {
                    started += 1;
                    if started == point {
                        break;
                    }
                }
            }
            let exited = child.try_wait().unwrap();
            assert!(
                started == point && exited.is_none(),
                "iteration {iteration}, run {run}: the build ended ({exited:?}) after \
                 {started} of {point} action starts; a kill must interrupt a running build"
            );
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            drop(events);
        }
        let run = lkb
            .build(&[MINIMAL, "--dir", "out"])
            .unwrap()
            .ok()
            .unwrap_or_else(|e| panic!("iteration {iteration}, killed at {points:?}: {e}"));
        assert_eq!(
            outputs(&ws.path().join("out")),
            expected,
            "iteration {iteration}, killed at {points:?}: outputs differ ({} executed)",
            executed(&run)
        );
        let verify = cache_ok(&lkb, &["verify"]);
        assert!(
            verify.stdout.contains("no damage found"),
            "iteration {iteration}, killed at {points:?}:\n{}",
            verify.stdout
        );
        assert_eq!(executed(&build_ok(&lkb, &[MINIMAL, "--dir", "out"])), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) gc

/// `minimal.yml` without `onboot:` and with another kernel command line.
fn other_yml() -> String {
    let minimal = repo_yml("minimal.yml");
    let onboot = minimal.find("onboot:").unwrap();
    let services = minimal.find("services:").unwrap();
    let without_onboot = format!("{}{}", &minimal[..onboot], &minimal[services..]);
    let replaced = without_onboot.replace(
        "cmdline: \"console=tty0 console=ttyS0\"",
        "cmdline: \"console=ttyS0 quiet\"",
    );
    assert_ne!(
        replaced, without_onboot,
        "the cmdline of minimal.yml changed"
    );
    replaced
}

/// Two targets (whose actions share identities such as `kernel` and `initrd`) stay warm
/// through `gc`; after one target changes, `gc` frees its old outputs and both stay warm;
/// `--max-size` evicts the least recently built target first.
#[test]
fn gc_keeps_rooted_targets_warm_and_removes_orphans() {
    let ws = minimal_workspace();
    write(ws.path(), "examples/other.yml", &other_yml());
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL]);
    build_ok(&lkb, &["//examples:other"]);

    let gc = cache_ok(&lkb, &["gc"]);
    assert!(
        gc.stdout.contains("removed 0 action entries and 0 blobs"),
        "{}",
        gc.stdout
    );
    assert_eq!(
        executed(&build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL])),
        0
    );
    assert_eq!(executed(&build_ok(&lkb, &["//examples:other"])), 0);

    // Change the onboot container's command: its bundle, segment and the initrd change.
    let out = ws.path().join("lkb-out/examples");
    let old_initrd = sha256_hex(&fs_err::read(out.join("minimal-initrd.tar")).unwrap());
    let minimal = repo_yml("minimal.yml");
    let changed = minimal.replace("\"-1\"]", "\"-1\", \"-4\"]");
    assert_ne!(
        changed, minimal,
        "the dhcpcd command of minimal.yml changed"
    );
    write(ws.path(), "examples/minimal.yml", &changed);
    assert!(executed(&build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL])) > 0);
    let new_initrd = sha256_hex(&fs_err::read(out.join("minimal-initrd.tar")).unwrap());
    assert_ne!(old_initrd, new_initrd);
    assert!(blob_path(&lkb, &old_initrd).exists());

    let (files_before, bytes_before) = cas_usage(&lkb);
    let blobs_before = ls_blobs(&lkb);
    let gc = cache_ok(&lkb, &["gc"]);
    let removed_actions = count_after(&gc.stdout, "removed ");
    let removed_blobs = count_after(&gc.stdout, " action entries and ");
    assert!(removed_actions > 0 && removed_blobs > 0, "{}", gc.stdout);
    let (files_after, bytes_after) = cas_usage(&lkb);
    assert_eq!(blobs_before - ls_blobs(&lkb), removed_blobs);
    assert!(files_after < files_before, "the old initrd tar's file went");
    assert!(bytes_after < bytes_before);
    assert!(
        !blob_path(&lkb, &old_initrd).exists(),
        "the old initrd tar is garbage"
    );
    assert!(blob_path(&lkb, &new_initrd).exists());
    assert_eq!(
        executed(&build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL])),
        0
    );
    assert_eq!(executed(&build_ok(&lkb, &["//examples:other"])), 0);
    let again = cache_ok(&lkb, &["gc"]);
    assert!(
        again
            .stdout
            .contains("removed 0 action entries and 0 blobs"),
        "{}",
        again.stdout
    );

    // Just under the current size: the least recently built target (minimal) goes, and only
    // it; `other` alone fits because it does not use the onboot image. (The large blobs' files
    // alone, without the packs: packs may hold dead bytes the limit does not count.)
    let (_, total) = cas_usage(&lkb);
    let packs = {
        let mut bytes = 0;
        for entry in fs_err::read_dir(store_dir(&lkb).join("packs")).unwrap() {
            bytes += entry.unwrap().metadata().unwrap().len();
        }
        bytes
    };
    let limit = (total - packs - 1).to_string();
    let gc = cache_ok(&lkb, &["gc", "--max-size", &limit]);
    assert!(
        gc.stdout.contains("//examples:minimal to fit"),
        "{}",
        gc.stdout
    );
    assert!(
        !gc.stdout.contains("//examples:other to fit"),
        "{}",
        gc.stdout
    );
    assert!(cas_usage(&lkb).1 < total);
    let ls = cache_ok(&lkb, &["ls"]);
    assert!(!ls.stdout.contains(MINIMAL), "{}", ls.stdout);
    assert!(ls.stdout.contains("//examples:other"), "{}", ls.stdout);
    assert_eq!(executed(&build_ok(&lkb, &["//examples:other"])), 0);
    assert!(executed(&build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL])) > 0);

    // A bad size is a usage error.
    let bad = lkb.run(&["cache", "gc", "--max-size", "lots"]).unwrap();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("invalid size"), "{}", bad.stderr);
}

// ---------------------------------------------------------------------------------------------
// (d) verify

/// A blob damaged in place (same size, one byte flipped) is found by `cache verify`, which
/// deletes it and every cache entry that needs it; the next build re-runs exactly those
/// actions and writes the same outputs.
#[test]
fn verify_drops_damaged_entries_so_they_re_run() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(&lkb, &[MINIMAL, "--dir", "out"]);
    let before = outputs(&ws.path().join("out"));

    // The kernel: an output of the `kernel` action, and file content in the kernel image's
    // unpacked and merged trees.
    let kernel = sha256_hex(&before["minimal-kernel"]);
    let path = blob_path(&lkb, &kernel);
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs_err::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs_err::write(&path, &bytes).unwrap();

    let verify = cache_ok(&lkb, &["verify"]);
    assert!(
        verify
            .stdout
            .contains(&format!("damaged blob sha256:{kernel}")),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("content hashes to sha256:"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains(" kernel): output `kernel`"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains("refers to sha256:"),
        "{}",
        verify.stdout
    );
    assert!(!path.exists());

    let run = build_ok(&lkb, &[MINIMAL, "--dir", "out"]);
    let mut kinds = run.executed_kinds();
    kinds.sort();
    kinds.dedup();
    assert!(kinds.contains(&"kernel".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"unpack".to_owned()), "{kinds:?}");
    assert!(!kinds.contains(&"fetch".to_owned()), "{kinds:?}");
    assert!(!kinds.contains(&"initrd".to_owned()), "{kinds:?}");
    for event in run.events() {
        if event["event"] == "action_finished" && event["cached"] == false {
            assert!(event["reason"].is_string(), "{event}");
        }
    }
    assert_eq!(outputs(&ws.path().join("out")), before);
    assert!(
        cache_ok(&lkb, &["verify"])
            .stdout
            .contains("no damage found")
    );
    assert_eq!(executed(&build_ok(&lkb, &[MINIMAL, "--dir", "out"])), 0);
}

// ---------------------------------------------------------------------------------------------
// (e) ls and du

#[test]
fn ls_and_du_describe_the_store() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let empty = cache_ok(&lkb, &["ls"]);
    assert!(empty.stdout.starts_with("no store at "), "{}", empty.stdout);

    let run = build_ok(&lkb, &[MINIMAL]);
    let total_actions = run.summary().unwrap()["actions"]["total"].as_u64().unwrap();
    let (files, bytes) = cas_usage(&lkb);
    let blobs = ls_blobs(&lkb);
    assert!(
        blobs > files as u64,
        "small blobs share pack files: {blobs} blobs in {files} files"
    );

    let ls = cache_ok(&lkb, &["ls"]);
    let row = ls
        .stdout
        .lines()
        .find(|l| l.contains(MINIMAL))
        .unwrap_or_else(|| panic!("{}", ls.stdout));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[2], "ago", "{row}");
    let actions: u64 = columns[3].parse().unwrap();
    assert!(actions > 0 && actions <= total_actions, "{row}");
    assert!(
        ls.stdout
            .contains(&format!("store: {actions} action entries, {blobs} blobs")),
        "{}",
        ls.stdout
    );
    assert!(
        ls.stdout
            .contains("not reachable from any target: 0 action entries, 0 blobs"),
        "{}",
        ls.stdout
    );

    let du = cache_ok(&lkb, &["du"]);
    assert!(
        du.stdout.contains(&format!("  {blobs} blobs")),
        "{}",
        du.stdout
    );
    for kind in [
        "output `tree`",
        "output `segment`",
        "output `initrd`",
        "file contents",
    ] {
        assert!(du.stdout.contains(kind), "no {kind} in:\n{}", du.stdout);
    }
    assert!(
        du.stdout
            .contains(&format!("{actions} action entries, 1 target roots")),
        "{}",
        du.stdout
    );
    assert!(
        du.stdout.lines().any(|l| l.starts_with("total")),
        "{}",
        du.stdout
    );
    // The sizes by kind add up to the blob files.
    let index = du.stdout.find("index").unwrap();
    let by_kind: u64 = du.stdout[..index]
        .lines()
        .filter_map(|l| l.trim_end().strip_suffix(')'))
        .filter_map(|l| l.rsplit('(').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    assert_eq!(by_kind, blobs, "{}", du.stdout);
    assert!(bytes > 0);
}

// ---------------------------------------------------------------------------------------------
// (f) clean

/// `cache clean` waits for a process holding the store, removes everything but the lock file,
/// and the next build starts cold and succeeds.
#[test]
fn clean_removes_the_store_while_holding_its_lock() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(&lkb, &[MINIMAL, "--dir", "out"]);
    let before = outputs(&ws.path().join("out"));

    let holder = LockHolder::take(&lkb);
    let stderr = ws.path().join("clean.stderr");
    let mut child = spawn(&lkb, &["cache", "clean"], &stderr);
    wait_for_text(&stderr, "waiting for the store lock");
    assert!(
        store_dir(&lkb).join("index.redb").exists(),
        "nothing removed while waiting"
    );
    drop(holder);
    assert!(
        child.wait().unwrap().success(),
        "{}",
        fs_err::read_to_string(&stderr).unwrap()
    );

    let mut left: Vec<String> = fs_err::read_dir(store_dir(&lkb))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["lock"]);
    let again = cache_ok(&lkb, &["clean"]);
    assert!(
        again.stdout.starts_with("nothing to remove"),
        "{}",
        again.stdout
    );

    let run = build_ok(&lkb, &[MINIMAL, "--dir", "out"]);
    assert_eq!(
        executed(&run),
        run.summary().unwrap()["actions"]["total"].as_u64().unwrap()
    );
    assert_eq!(outputs(&ws.path().join("out")), before);
    let verify = cache_ok(&lkb, &["verify"]);
    assert!(
        verify.stdout.contains("no damage found"),
        "{}",
        verify.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// (f) state per target and per workspace, and builds that run only what their formats need

/// `-f tar` runs no cpio segment and no initrd; `-f kernel+initrd` then runs those but no
/// rootfs tar, and reuses every tree the tar build made.
#[test]
fn a_format_runs_only_the_actions_its_files_need() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let tar = build_ok(&lkb, &["-f", "tar", MINIMAL]);
    let kinds = tar.executed_kinds();
    assert!(kinds.iter().any(|k| k == "rootfs-tar"), "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k == "segment" || k == "initrd"),
        "a tar build compressed an initrd: {kinds:?}"
    );
    let out = ws.path().join("lkb-out/examples");
    assert!(out.join("minimal.tar").is_file());
    assert!(!out.join("minimal-initrd.img").exists());

    let initrd = build_ok(&lkb, &["-f", "kernel+initrd", MINIMAL]);
    let kinds = initrd.executed_kinds();
    assert!(kinds.iter().any(|k| k == "segment"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "segment"), "{kinds:?}");
    let unexpected: Vec<&String> = kinds
        .iter()
        .filter(|k| *k != "segment" && *k != "initrd")
        .collect();
    assert!(
        unexpected.is_empty(),
        "only segments and the initrd are new: {unexpected:?}"
    );
    assert!(out.join("minimal-initrd.img").is_file());
}

/// Two workspaces on one store, each with a `//examples:minimal` that differs: `gc` keeps
/// both (their roots do not overwrite each other), and both stay warm.
#[test]
fn two_workspaces_on_one_store_keep_their_own_roots() {
    let first = minimal_workspace();
    let second = minimal_workspace();
    write(second.path(), "examples/minimal.yml", &other_yml());
    let lkb_first = Lkb::new(first.path()).unwrap();
    let lkb_second = same_store(&lkb_first, second.path());
    build_ok(&lkb_first, &[MINIMAL]);
    build_ok(&lkb_second, &[MINIMAL]);

    let gc = cache_ok(&lkb_first, &["gc"]);
    assert!(
        gc.stdout.contains("removed 0 action entries and 0 blobs"),
        "{}",
        gc.stdout
    );
    assert_eq!(executed(&build_ok(&lkb_first, &[MINIMAL])), 0);
    assert_eq!(executed(&build_ok(&lkb_second, &[MINIMAL])), 0);
    let ls = cache_ok(&lkb_first, &["ls"]);
    for ws in [&first, &second] {
        let root = format!("{}{MINIMAL}", ws.path().canonicalize().unwrap().display());
        assert!(ls.stdout.contains(&root), "no root {root}:\n{}", ls.stdout);
    }
}

/// Two targets whose actions share identities (`initrd`, `kernel`; `tar-kernel-initrd` is
/// built for the initrd action): each target's explanation compares with its own last build,
/// not with the other target's.
#[test]
fn explanations_compare_with_the_same_targets_last_build() {
    let ws = minimal_workspace();
    write(ws.path(), "examples/other.yml", &other_yml());
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(&lkb, &["-f", "tar-kernel-initrd", MINIMAL]);
    build_ok(&lkb, &["-f", "tar-kernel-initrd", "//examples:other"]);

    // Change minimal's onboot command: its bundle, one segment and its initrd re-run.
    let minimal = repo_yml("minimal.yml");
    let changed = minimal.replace("\"-1\"]", "\"-1\", \"-4\"]");
    assert_ne!(
        changed, minimal,
        "the dhcpcd command of minimal.yml changed"
    );
    write(ws.path(), "examples/minimal.yml", &changed);
    let run = lkb
        .run(&[
            "--progress=json",
            "explain",
            "-f",
            "tar-kernel-initrd",
            MINIMAL,
        ])
        .unwrap()
        .ok()
        .unwrap();
    let initrd = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "action_finished" && e["kind"] == "initrd")
        .expect("the initrd re-ran");
    // Against `other`'s initrd (one segment fewer) this would be `input-count-changed`.
    assert_eq!(initrd["reason_kind"], "input-changed", "{initrd}");
    assert!(
        initrd["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("segment onboot[0]"),
        "{initrd}"
    );
}
