//! The remote cache against real servers started per test on free 127.0.0.1 ports: a Remote
//! Execution API cache (BuildGrid, [`reapi`]) and an OCI registry (Debian's `docker-registry`,
//! [`oci`]). Both backends run the same scenarios, written here once: two stores stand for two
//! machines, and faults (a dead server, a corrupt blob, a server that never answers or is
//! killed mid-build, read-only mode) never fail a build.

mod oci;
mod reapi;

use std::io::BufRead as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use lkb_store::{
    ActionKey, ActionResult, ArtifactKind, BlobRef, RemoteCache, RemoteErrorKind, Store,
};
use lkb_tests::cli::{Lkb, Run, example_layout, repo_root};
use serde_json::Value;

/// A cache server the scenarios run against.
trait CacheServer {
    /// The `--remote-cache` URL.
    fn url(&self) -> String;
    /// The file holding blob `hex` in the server's storage.
    fn blob_path(&self, hex: &str) -> PathBuf;
    /// Kills the server now, as a crash would.
    fn kill(&mut self);
}

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

    /// The same machine with `vars` in the environment of every command.
    fn with_env(mut self, vars: &[(&str, &str)]) -> Machine {
        for (key, value) in vars {
            self.lkb = self.lkb.env(key, *value);
        }
        self
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

fn output_bytes(machine: &Machine) -> u64 {
    OUTPUTS
        .iter()
        .map(|name| machine.output(name).len() as u64)
        .sum()
}

/// A builds `//examples:sshd` and uploads; B (another directory, user and store, empty)
/// executes nothing and downloads exactly the output files' bytes; a `files:` change on B
/// re-runs only its column, and A then gets B's results as remote hits; `explain` on a third
/// machine says "remote hit" for every action. `env` goes to every machine (credentials).
fn machines_share_results_both_ways(server: &dyn CacheServer, env: &[(&str, &str)]) {
    let url = server.url();
    let remote = ["--remote-cache", url.as_str()];
    let a = Machine::new("alice", "hello\\n").with_env(env);
    let b = Machine::new("bob", "hello\\n").with_env(env);

    let first = a.build(&remote).ok().expect("A builds");
    assert!(warnings(&first).is_empty(), "{:?}", warnings(&first));
    let s = summary(&first);
    let total = number(&s["actions"], "total");
    assert_eq!(number(&s["actions"], "executed"), total);
    assert_eq!(number(&s, "remote_misses"), total, "{s}");
    assert!(number(&s, "bytes_uploaded") > 0, "{s}");

    // B: the same keys, so everything comes from A, and (build without the bytes) only the
    // output files' blobs are downloaded.
    let second = b.build(&remote).ok().expect("B builds");
    assert!(warnings(&second).is_empty(), "{:?}", warnings(&second));
    let s = summary(&second);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    assert_eq!(number(&s, "remote_hits"), total, "{s}");
    assert_eq!(number(&s, "bytes_uploaded"), 0, "{s}");
    same_outputs(&a, &b);
    // The initrd is written from the segments, which are the blobs.
    assert_eq!(number(&s, "bytes_downloaded"), output_bytes(&b), "{s}");
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
    assert!(warnings(&changed).is_empty(), "{:?}", warnings(&changed));

    // A makes the same change and gets B's results.
    a.set_motd("changed on B\\n");
    let fetched = a.build(&remote).ok().expect("A after the change");
    let s = summary(&fetched);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    assert_eq!(number(&s, "remote_hits"), 2, "{s}");
    same_outputs(&a, &b);

    // explain names remote hits.
    let c = Machine::new("carol", "changed on B\\n").with_env(env);
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

/// `--remote-upload=false` takes nothing up: a second machine (read-only too, so the cache
/// stays empty for the caller to check) finds nothing.
fn read_only_mode_uploads_nothing(server: &dyn CacheServer) {
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    let run = a
        .build(&["--remote-cache", &url, "--remote-upload=false"])
        .ok()
        .expect("build");
    let s = summary(&run);
    assert_eq!(number(&s, "bytes_uploaded"), 0, "{s}");
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));
    let b = Machine::new("bob", "hello\\n");
    let run = b
        .build(&["--remote-cache", &url, "--remote-upload=false"])
        .ok()
        .expect("build");
    let s = summary(&run);
    assert_eq!(number(&s, "remote_hits"), 0, "nothing was uploaded: {s}");
    assert_eq!(number(&s, "bytes_uploaded"), 0, "{s}");
}

/// A cache nobody listens on, and one that accepts connections and never says a word: one
/// warning each, and the same outputs as a local build. `url_of` makes a cache URL of the
/// backend's scheme for `127.0.0.1:PORT`.
fn a_dead_or_silent_cache_costs_one_warning(url_of: &dyn Fn(&str) -> String) {
    let reference = Machine::new("ref", "hello\\n");
    reference.build(&[]).ok().expect("local build");

    let dead = url_of(&format!(
        "127.0.0.1:{}",
        lkb_tests::registry::free_port().unwrap()
    ));
    let a = Machine::new("alice", "hello\\n");
    let run = a.build(&["--remote-cache", &dead]).ok().expect("build");
    assert_eq!(warnings(&run).len(), 1, "{:?}", warnings(&run));
    assert!(warnings(&run)[0].contains("not used for the rest of this build"));
    same_outputs(&a, &reference);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = url_of(&listener.local_addr().unwrap().to_string());
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

/// A kernel blob corrupted on the server is never used (the build runs again without the
/// cache), and a server killed while a build talks to it costs at most one warning.
fn a_corrupt_blob_and_a_killed_cache_never_break_the_build(server: &mut dyn CacheServer) {
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    let run = a.build(&["--remote-cache", &url]).ok().expect("A uploads");
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));

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
        "{warned:?} in {}",
        summary(&run)
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

/// 5 MiB + 1 of varied bytes: more than one chunk of either backend.
fn large_blob() -> Vec<u8> {
    (0..5 * 1024 * 1024 + 1u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A backend on its own: a blob bigger than a chunk goes up and comes back, `find_missing`
/// before and after, results round-trip with their kinds, and a blob the server corrupted
/// never enters the store.
async fn a_backend_round_trips_and_refuses_corrupt_blobs(
    cache: Arc<dyn RemoteCache>,
    server: &dyn CacheServer,
) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open(dir_a.path()).expect("store A");
    let b = Store::open(dir_b.path()).expect("store B");
    let data = large_blob();
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
    assert!(!c.has_blob(&big), "nothing entered the store");
}

/// `blob` as a [`BlobRef`] of `store`.
fn put(store: &Store, blob: &[u8]) -> BlobRef {
    store.put_bytes(blob).expect("put")
}
