//! The remote cache against a real Remote Execution API server (BuildGrid, started per test on
//! a free 127.0.0.1 port): two stores stand for two machines, and faults (a dead server, a
//! corrupt blob, a server that never answers, read-only mode) never fail a build.

use std::io::BufRead as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;

use lkb_tests::buildgrid::BuildGrid;
use lkb_tests::cli::{Lkb, Run, example_layout, files_under, repo_root};
use serde_json::Value;

/// One "machine": its own workspace directory, store, HOME and user name.
struct Machine {
    lkb: Lkb,
    _dir: tempfile::TempDir,
}

impl Machine {
    fn new(user: &str, motd: &str) -> Machine {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lkb-machine-{user}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let root = dir.path().join("work");
        fs_err::create_dir_all(root.join("examples")).expect("mkdir");
        let layout = example_layout().expect("example images");
        fs_err::write(
            root.join("lkb.toml"),
            format!("[images]\nlayouts = [{:?}]\n", layout.display().to_string()),
        )
        .expect("lkb.toml");
        let machine = Machine {
            lkb: Lkb::new(&root)
                .expect("lkb")
                .env("USER", user)
                .env("LOGNAME", user),
            _dir: dir,
        };
        machine.set_motd(motd);
        machine
    }

    fn root(&self) -> &Path {
        &self.lkb.cwd
    }

    /// examples/sshd.yml with its motd `files:` entry set to `motd`.
    fn set_motd(&self, motd: &str) {
        let yml = fs_err::read_to_string(repo_root().join("examples/sshd.yml")).expect("sshd.yml");
        let original = "Built by lkb from examples/sshd.yml\\n";
        assert!(
            yml.contains(original),
            "examples/sshd.yml has the motd entry"
        );
        fs_err::write(
            self.root().join("examples/sshd.yml"),
            yml.replace(original, motd),
        )
        .expect("write sshd.yml");
    }

    fn build(&self, extra: &[&str]) -> Run {
        let mut args = vec!["//examples:sshd"];
        args.extend_from_slice(extra);
        self.lkb.build(&args).expect("run lkb")
    }

    fn output(&self, name: &str) -> Vec<u8> {
        fs_err::read(self.root().join("lkb-out/examples").join(name)).expect("output")
    }
}

fn summary(run: &Run) -> Value {
    run.summary().expect("summary")
}

fn number(summary: &Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

fn warnings(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == "warning")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const OUTPUTS: [&str; 3] = ["sshd-kernel", "sshd-initrd.img", "sshd-cmdline"];

fn same_outputs(a: &Machine, b: &Machine) {
    for name in OUTPUTS {
        assert!(a.output(name) == b.output(name), "{name} differs");
    }
}

#[test]
fn a_second_machine_builds_from_the_cache_and_shares_its_change_back() {
    let server = BuildGrid::start().expect("BuildGrid");
    let url = server.url();
    let remote = ["--remote-cache", url.as_str()];
    let a = Machine::new("alice", "hello\\n");
    let b = Machine::new("bob", "hello\\n");

    let first = a.build(&remote).ok().expect("A builds");
    assert!(warnings(&first).is_empty(), "{:?}", warnings(&first));
    let s = summary(&first);
    let total = number(&s["actions"], "total");
    assert_eq!(number(&s["actions"], "executed"), total);
    assert_eq!(number(&s, "remote_misses"), total, "{s}");
    assert!(number(&s, "bytes_uploaded") > 0, "{s}");

    // B: another directory, user and store; the same keys, so everything comes from A, and
    // (build without the bytes) only the output files' blobs are downloaded.
    let second = b.build(&remote).ok().expect("B builds");
    assert!(warnings(&second).is_empty(), "{:?}", warnings(&second));
    let s = summary(&second);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    assert_eq!(number(&s, "remote_hits"), total, "{s}");
    assert_eq!(number(&s, "bytes_uploaded"), 0, "{s}");
    same_outputs(&a, &b);
    let output_bytes: usize = OUTPUTS.iter().map(|name| b.output(name).len()).sum();
    // The initrd is written from the segments, which are the blobs.
    assert_eq!(number(&s, "bytes_downloaded"), output_bytes as u64, "{s}");
    // A remote hit is recorded locally: the next build asks nobody.
    let again = b.build(&remote).ok().expect("B again");
    let s = summary(&again);
    assert_eq!(
        number(&s, "remote_hits") + number(&s, "remote_misses"),
        0,
        "{s}"
    );

    // One files entry changes on B: only its column runs, and goes up to the cache.
    b.set_motd("changed on B\\n");
    let changed = b.build(&remote).ok().expect("B after the change");
    assert_eq!(
        changed.executed_kinds(),
        ["files", "segment"],
        "{}",
        changed.stderr
    );
    let s = summary(&changed);
    assert_eq!(number(&s, "remote_misses"), 2, "{s}");

    // A makes the same change and gets B's results.
    a.set_motd("changed on B\\n");
    let fetched = a.build(&remote).ok().expect("A after the change");
    let s = summary(&fetched);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    assert_eq!(number(&s, "remote_hits"), 2, "{s}");
    same_outputs(&a, &b);

    // explain names remote hits.
    let c = Machine::new("carol", "changed on B\\n");
    let explained = c
        .lkb
        .run(&[
            "--progress=none",
            "explain",
            "//examples:sshd",
            "--remote-cache",
            &url,
        ])
        .expect("run")
        .ok()
        .expect("explain");
    assert!(
        explained
            .stdout
            .lines()
            .all(|l| l.ends_with(": remote hit")),
        "{}",
        explained.stdout
    );
}

#[test]
fn read_only_mode_uploads_nothing() {
    let server = BuildGrid::start().expect("BuildGrid");
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    let run = a
        .build(&["--remote-cache", &url, "--remote-upload=false"])
        .ok()
        .expect("build");
    let s = summary(&run);
    assert_eq!(number(&s, "bytes_uploaded"), 0, "{s}");
    assert!(warnings(&run).is_empty());
    let b = Machine::new("bob", "hello\\n");
    let s = summary(&b.build(&["--remote-cache", &url]).ok().expect("build"));
    assert_eq!(number(&s, "remote_hits"), 0, "nothing was uploaded: {s}");
}

#[test]
fn a_dead_or_silent_cache_costs_one_warning_and_the_build_succeeds() {
    let reference = Machine::new("ref", "hello\\n");
    reference.build(&[]).ok().expect("local build");

    // Nothing listens on the port.
    let dead = format!(
        "grpc://127.0.0.1:{}",
        lkb_tests::registry::free_port().unwrap()
    );
    let a = Machine::new("alice", "hello\\n");
    let run = a.build(&["--remote-cache", &dead]).ok().expect("build");
    assert_eq!(warnings(&run).len(), 1, "{:?}", warnings(&run));
    assert!(warnings(&run)[0].contains("not used for the rest of this build"));
    same_outputs(&a, &reference);

    // A server that accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = format!("grpc://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(8) {
            open.push(stream);
        }
    });
    let b = Machine::new("bob", "hello\\n");
    let run = b
        .build(&["--remote-cache", &silent, "--remote-timeout", "2"])
        .ok()
        .expect("build");
    assert_eq!(warnings(&run).len(), 1, "{:?}", warnings(&run));
    same_outputs(&b, &reference);
    drop(held);
}

#[test]
fn a_cache_killed_mid_build_and_a_corrupt_blob_never_break_the_build() {
    let mut server = BuildGrid::start().expect("BuildGrid");
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    a.build(&["--remote-cache", &url]).ok().expect("A uploads");

    // Corrupt the kernel on the server (same size, other bytes).
    let kernel = a.output("sshd-kernel");
    let hex = lkb_store::BlobDigest::of_bytes(&kernel).hex();
    let path = server.blob_path(&hex);
    let mut bad = fs_err::read(&path).expect("kernel blob on the server");
    bad[100] ^= 0xff;
    fs_err::write(&path, &bad).expect("corrupt");
    let b = Machine::new("bob", "hello\\n");
    let run = b.build(&["--remote-cache", &url]).ok().expect("B builds");
    // Without the bytes the hit is taken on the cache's word; the corrupt kernel shows when
    // the outputs are fetched, and the build runs again locally.
    let warned = warnings(&run);
    assert!(
        warned
            .iter()
            .any(|w| w.contains(&hex) && w.contains("building again without the remote cache")),
        "{warned:?}"
    );
    assert!(
        !run.executed_kinds().is_empty(),
        "the kernel's action ran locally"
    );
    same_outputs(&a, &b);
    let verify = b
        .lkb
        .run(&["cache", "verify"])
        .expect("run")
        .ok()
        .expect("verify");
    assert!(!verify.stdout.contains("damaged"), "{}", verify.stdout);
    // Downloading everything at the hit, the entry is refused there and the action runs.
    let b2 = Machine::new("bob2", "hello\\n");
    let run = b2
        .build(&["--remote-cache", &url, "--remote-download=all"])
        .ok()
        .expect("B2 builds");
    let warned = warnings(&run);
    assert!(
        warned
            .iter()
            .any(|w| w.contains(&hex) && w.contains("not using that entry")),
        "{warned:?}"
    );
    // The kernel's bytes are also a file in the kernel image's unpacked tree: whichever
    // entry names them first is refused and runs here.
    assert!(!run.executed_kinds().is_empty());
    same_outputs(&a, &b2);

    // Killed while a build talks to it: one warning, a good build.
    let c = Machine::new("carol", "other\\n");
    let mut child = c
        .lkb
        .command(&[
            "--progress=json",
            "build",
            "//examples:sshd",
            "--remote-cache",
            &url,
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn lkb");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let first_hit = line.contains("\"remote\":\"hit\"");
        seen.push(line);
        if first_hit {
            break;
        }
    }
    server.kill();
    seen.extend(lines.map(|l| l.expect("line")));
    let status = child.wait().expect("wait");
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: seen.join("\n"),
    };
    let run = run.ok().expect("the build survives the dead cache");
    assert!(warnings(&run).len() <= 1, "{:?}", warnings(&run));
    let reference = Machine::new("ref", "other\\n");
    reference.build(&[]).ok().expect("local build");
    same_outputs(&c, &reference);
}

#[test]
fn download_all_takes_every_blob_and_a_lost_blob_means_a_local_rebuild() {
    let server = BuildGrid::start().expect("BuildGrid");
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    a.build(&["--remote-cache", &url]).ok().expect("A uploads");

    // --remote-download=all: every blob of every hit, more than the outputs.
    let b = Machine::new("bob", "hello\\n");
    let run = b
        .build(&["--remote-cache", &url, "--remote-download=all"])
        .ok()
        .expect("B builds");
    let s = summary(&run);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    let output_bytes: usize = OUTPUTS.iter().map(|name| b.output(name).len()).sum();
    assert!(number(&s, "bytes_downloaded") > output_bytes as u64, "{s}");
    same_outputs(&a, &b);

    // C builds without the bytes; then the cache loses everything C did not download, and an
    // onboot command changes, so its bundle needs an image tree C never fetched.
    let c = Machine::new("carol", "hello\\n");
    c.build(&["--remote-cache", &url]).ok().expect("C builds");
    let kept: std::collections::BTreeSet<String> =
        files_under(&c.lkb.store.path().join("store-v1/cas"))
            .unwrap()
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
    let mut deleted = 0;
    let objects = server.blob_path(&"0".repeat(64));
    let objects = objects.parent().unwrap().parent().unwrap();
    for path in files_under(objects).unwrap() {
        let name = format!(
            "{}{}",
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            path.file_name().unwrap().to_string_lossy()
        );
        if !kept.contains(&name) {
            fs_err::remove_file(&path).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0);
    let yml = c.root().join("examples/sshd.yml");
    let text = fs_err::read_to_string(&yml).unwrap();
    assert!(text.contains(r#"command: ["/sbin/rngd", "-1"]"#), "{text}");
    fs_err::write(
        &yml,
        text.replace(
            r#"command: ["/sbin/rngd", "-1"]"#,
            r#"command: ["/sbin/rngd", "-1", "-v"]"#,
        ),
    )
    .unwrap();
    let run = c
        .build(&["--remote-cache", &url])
        .ok()
        .expect("C rebuilds locally");
    let warned = warnings(&run);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("building again without the remote cache")),
        "{warned:?}"
    );
    let reference = Machine::new("ref", "hello\\n");
    fs_err::write(
        reference.root().join("examples/sshd.yml"),
        fs_err::read(&yml).unwrap(),
    )
    .unwrap();
    reference.build(&[]).ok().expect("local build");
    same_outputs(&c, &reference);
}

/// The REAPI backend on its own: a blob bigger than a batch goes up and comes back through
/// ByteStream in chunks, results round-trip with their kinds, and a blob the server corrupted
/// never enters the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reapi_backend_streams_large_blobs_and_refuses_corrupt_ones() {
    use lkb_store::{ActionKey, ActionResult, ArtifactKind, RemoteErrorKind, Store};
    let server = BuildGrid::start().expect("BuildGrid");
    let cache =
        lkb_remote::connect(&server.url(), &lkb_remote::RemoteOptions::default()).expect("backend");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path()).expect("store A");
    let b = Store::open(dir_b.path()).expect("store B");
    // 5 MiB + 1 of varied bytes: five full chunks and a short one.
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 1u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big = a.put_bytes(&data).expect("put");
    let small = a.put_bytes(b"small").expect("put");
    assert_eq!(
        cache.find_missing(&[big, small]).await.unwrap(),
        vec![big, small]
    );
    assert_eq!(cache.upload(&a, &big).await.unwrap(), big.size);
    assert_eq!(cache.upload(&a, &small).await.unwrap(), small.size);
    assert!(cache.find_missing(&[big, small]).await.unwrap().is_empty());

    let key: ActionKey = "ab".repeat(32).parse().unwrap();
    assert_eq!(cache.get_action(&key).await.unwrap(), None);
    let result = ActionResult::new()
        .with("tree", ArtifactKind::Tree, small)
        .with("disk", ArtifactKind::DiskImage, big);
    cache.put_action(&key, &result).await.unwrap();
    assert_eq!(cache.get_action(&key).await.unwrap(), Some(result));

    assert_eq!(cache.download(&b, &big).await.unwrap(), big.size);
    assert_eq!(b.read_blob(&big.digest).unwrap(), data);

    let c_dir = tempfile::tempdir().unwrap();
    let c = Store::open(c_dir.path()).expect("store C");
    let path = server.blob_path(&big.digest.hex());
    let mut bad = fs_err::read(&path).unwrap();
    bad[3 * 1024 * 1024] ^= 1;
    fs_err::write(&path, &bad).unwrap();
    let error = cache.download(&c, &big).await.expect_err("corrupt");
    assert_eq!(error.kind, RemoteErrorKind::Corrupt, "{error}");
    assert!(!c.has_blob(&big));
}
