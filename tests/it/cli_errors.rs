//! `lkb build` with bad input, a hostile environment, Ctrl-C and a busy store, through the real
//! binary: the exit code (2 = the user's mistake, 3 = the environment), one `error:` line that
//! says what is wrong (with `file:line:col` for yml), and no output written — a good build's
//! outputs stay byte for byte (and inode for inode) what they were.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use lkb_tests::cli::{self, Lkb, Run};
use lkb_tests::oci::{Compression, ImageBuilder, Layer, OciLayout};
use lkb_tests::registry::{Registry, free_port};

/// A scratch workspace (a copy of the repository's `examples/*.yml` and an `lkb.toml` naming
/// the example layout plus `extra_layouts`), a private store, and a good build of
/// `//examples:minimal` already in `lkb-out/examples`.
struct Fixture {
    ws: tempfile::TempDir,
    lkb: Lkb,
}

impl Fixture {
    fn new(insecure: &[&str]) -> Fixture {
        Fixture::with_layouts(&[], insecure)
    }

    fn with_layouts(extra_layouts: &[&Path], insecure: &[&str]) -> Fixture {
        let examples_layout = cli::example_layout().expect("example OCI layout");
        let mut layouts = vec![examples_layout.as_path()];
        layouts.extend_from_slice(extra_layouts);
        let ws = cli::workspace(&layouts, insecure).unwrap();
        let examples = ws.path().join("examples");
        fs_err::create_dir(&examples).unwrap();
        for entry in fs_err::read_dir(cli::repo_root().join("examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yml") {
                fs_err::copy(&path, examples.join(path.file_name().unwrap())).unwrap();
            }
        }
        let lkb = Lkb::new(ws.path()).unwrap();
        let fixture = Fixture { ws, lkb };
        let good = fixture
            .lkb
            .build(&["//examples:minimal"])
            .unwrap()
            .ok()
            .unwrap();
        assert_eq!(good.summary().unwrap()["ok"], true);
        for name in ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"] {
            assert!(
                fixture.out_dir().join(name).is_file(),
                "good build wrote {name}"
            );
        }
        fixture
    }

    fn path(&self) -> &Path {
        self.ws.path()
    }

    fn out_dir(&self) -> PathBuf {
        self.path().join("lkb-out/examples")
    }

    /// Writes `examples/NAME.yml` and returns its path.
    fn write_yml(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join("examples").join(format!("{name}.yml"));
        fs_err::write(&path, text).unwrap();
        path
    }

    /// Runs `lkb build ARGS` twice — once with the default output directory, once with a
    /// fresh `--dir` — and checks both fail with `code`, one `error:` line, the same message,
    /// nothing on stdout, no `--dir` created and the workspace (good outputs, `lkb.lock`,
    /// everything) untouched. Returns the stderr of the first run.
    fn expect_failure(&self, args: &[&str], code: i32) -> String {
        let before = snapshot(self.path());
        let run = self.run_build(args);
        let first = check_failure(&run, code, args);

        let dir = tempfile::tempdir().unwrap();
        let never = dir.path().join("never-written");
        let never_arg = never.display().to_string();
        let mut with_dir = args.to_vec();
        with_dir.extend_from_slice(&["--dir", &never_arg]);
        let run = self.run_build(&with_dir);
        let second = check_failure(&run, code, &with_dir);
        assert_eq!(first, second, "same mistake, same message");
        assert!(
            !never.exists(),
            "{} was created by a failed build",
            never.display()
        );

        let after = snapshot(self.path());
        assert_same_snapshot(&before, &after);
        run.stderr
    }

    fn run_build(&self, args: &[&str]) -> Run {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        self.lkb.run(&all).unwrap()
    }
}

/// Checks exit code, stdout, and that stderr has exactly one `error:` line; returns it.
fn check_failure(run: &Run, code: i32, args: &[&str]) -> String {
    assert_eq!(
        run.code, code,
        "lkb build {args:?}: exit code\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.stdout, "", "lkb build {args:?} printed on stdout");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "lkb build {args:?}: want exactly one `error:` line:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("this is a bug in lkb"),
        "{}",
        run.stderr
    );
    errors[0].to_string()
}

/// Metadata and content of everything below a directory.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File {
        bytes: Vec<u8>,
        ino: u64,
        mtime_ns: i128,
    },
    Other,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let entry = if meta.is_dir() {
                stack.push(path.clone());
                Entry::Dir
            } else if meta.is_file() {
                Entry::File {
                    bytes: fs_err::read(&path).unwrap(),
                    ino: meta.ino(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                }
            } else {
                Entry::Other
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn assert_same_snapshot(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    let names = |m: &BTreeMap<PathBuf, Entry>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(after),
        "files appeared or vanished in the workspace"
    );
    for (path, entry) in before {
        assert!(
            &after[path] == entry,
            "{} changed (content, inode or mtime)",
            path.display()
        );
    }
}

/// The start of examples/minimal.yml, without onboot and services, for hand-written variants
/// whose line numbers the tests know.
const KERNEL_AND_INIT: &str = "\
kernel:
  image: localhost/lkb-examples/kernel:1
  cmdline: \"console=ttyS0\"
init:
  - localhost/lkb-examples/init:1
";

#[test]
fn unknown_yml_key_names_file_line_col_and_suggests_the_key() {
    let f = Fixture::new(&[]);
    let yml = f.write_yml(
        "bindz",
        &format!(
            "{KERNEL_AND_INIT}\
onboot:
  - name: dhcpcd
    image: localhost/lkb-examples/dhcpcd:1
    bindz:
      - /etc/resolv.conf:/etc/resolv.conf
"
        ),
    );
    let stderr = f.expect_failure(&["//examples:bindz"], 2);
    // `bindz` is on line 9, indented by four.
    let location = format!("{}:9:5", yml.display());
    assert!(stderr.contains(&location), "want {location}:\n{stderr}");
    assert!(stderr.contains("onboot[0]"), "{stderr}");
    assert!(stderr.contains("`bindz`"), "{stderr}");
    assert!(stderr.contains("did you mean `binds`"), "{stderr}");
}

#[test]
fn wrong_yml_types_name_file_line_col() {
    let f = Fixture::new(&[]);

    let init_string = f.write_yml(
        "init-string",
        "\
kernel:
  image: localhost/lkb-examples/kernel:1
  cmdline: \"console=ttyS0\"
init: \"x\"
",
    );
    let stderr = f.expect_failure(&["//examples:init-string"], 2);
    let location = format!("{}:4:7", init_string.display());
    assert!(stderr.contains(&location), "want {location}:\n{stderr}");
    assert!(stderr.contains("init"), "{stderr}");
    assert!(
        stderr.contains("sequence") && stderr.contains("string"),
        "{stderr}"
    );

    let command_int = f.write_yml(
        "command-int",
        &format!(
            "{KERNEL_AND_INIT}\
onboot:
  - name: dhcpcd
    image: localhost/lkb-examples/dhcpcd:1
    command: 3
"
        ),
    );
    let stderr = f.expect_failure(&["//examples:command-int"], 2);
    let location = format!("{}:9:14", command_int.display());
    assert!(stderr.contains(&location), "want {location}:\n{stderr}");
    assert!(stderr.contains("onboot[0].command"), "{stderr}");
    assert!(stderr.contains("integer"), "{stderr}");

    // A plain yml path (no label) reports the same place.
    let stderr = f.expect_failure(&["examples/command-int.yml"], 2);
    assert!(stderr.contains(":9:14"), "{stderr}");
    assert!(stderr.contains("command-int.yml"), "{stderr}");
}

/// minimal.yml with the onboot image replaced by `image`.
fn with_onboot_image(image: &str) -> String {
    format!(
        "{KERNEL_AND_INIT}\
onboot:
  - name: dhcpcd
    image: {image}
services:
  - name: getty
    image: localhost/lkb-examples/getty:1
"
    )
}

#[test]
fn image_missing_from_a_real_registry_is_a_user_error_naming_it() {
    let registry = Registry::start().unwrap();
    let f = Fixture::new(&[registry.addr()]);
    let image = format!("{}/nope:1", registry.addr());
    f.write_yml("missing", &with_onboot_image(&image));
    let stderr = f.expect_failure(&["//examples:missing"], 2);
    assert!(stderr.contains(&image), "names {image}:\n{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    // The registry was really asked.
    assert!(
        registry.log().contains("/v2/nope/manifests/1"),
        "registry log:\n{}",
        registry.log()
    );
}

#[test]
fn unreachable_registry_is_an_environment_error_naming_it() {
    // A port nothing listens on: bound, then released.
    let registry = format!("127.0.0.1:{}", free_port().unwrap());
    let f = Fixture::new(&[&registry]);
    f.write_yml(
        "unreachable",
        &with_onboot_image(&format!("{registry}/nope:1")),
    );
    let started = Instant::now();
    let stderr = f.expect_failure(&["//examples:unreachable"], 3);
    assert!(stderr.contains(&registry), "names {registry}:\n{stderr}");
    assert!(
        stderr.contains("cannot reach") || stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "two refused connections took {:?}",
        started.elapsed()
    );
}

#[test]
fn unknown_labels_and_packages_suggest_the_nearest() {
    let f = Fixture::new(&[]);

    let stderr = f.expect_failure(&["//examples:minimall"], 2);
    assert!(stderr.contains("//examples:minimall"), "{stderr}");
    assert!(
        stderr.contains("did you mean `//examples:minimal`"),
        "{stderr}"
    );

    let stderr = f.expect_failure(&["//exampels:minimal"], 2);
    assert!(stderr.contains("package"), "{stderr}");
    assert!(stderr.contains("//exampels"), "{stderr}");
    assert!(stderr.contains("did you mean `//examples`"), "{stderr}");

    let stderr = f.expect_failure(&["//nope/..."], 2);
    assert!(stderr.contains("//nope/..."), "{stderr}");
    assert!(stderr.contains("package"), "{stderr}");

    // A pattern mixing a good and a bad label builds nothing, not even the good one.
    let stderr = f.expect_failure(&["//examples:sshd", "//examples:nope"], 2);
    assert!(stderr.contains("//examples:nope"), "{stderr}");
    assert!(!f.out_dir().join("sshd-kernel").exists());
}

#[test]
fn bad_formats_and_flags_exit_2() {
    let f = Fixture::new(&[]);

    let stderr = f.expect_failure(&["//examples:minimal", "--format", "foo"], 2);
    assert!(
        stderr.contains("`foo`") && stderr.contains("format"),
        "{stderr}"
    );

    let stderr = f.expect_failure(&["//examples:minimal", "--format", "rpi3"], 2);
    assert!(stderr.contains("rpi3"), "{stderr}");
    assert!(stderr.contains("not supported"), "{stderr}");
    // It says what is supported.
    assert!(stderr.contains("kernel+initrd"), "{stderr}");

    // Known-but-unsupported next to a good format: still nothing written.
    let stderr = f.expect_failure(&["//examples:minimal", "-f", "tar,rpi3"], 2);
    assert!(stderr.contains("rpi3"), "{stderr}");

    // clap rejects an unknown flag with its own usage error (exit 2).
    let stderr = f.expect_failure(&["//examples:minimal", "--bogus"], 2);
    assert!(stderr.contains("--bogus"), "{stderr}");
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[test]
fn invalid_lkb_toml_key_names_lkb_toml() {
    let f = Fixture::new(&[]);
    let manifest = f.path().join("lkb.toml");
    let good = fs_err::read_to_string(&manifest).unwrap();
    fs_err::write(&manifest, format!("{good}layoutz = [\"elsewhere\"]\n")).unwrap();
    let stderr = f.expect_failure(&["//examples:minimal"], 2);
    assert!(stderr.contains("lkb.toml"), "{stderr}");
    assert!(stderr.contains(&manifest.display().to_string()), "{stderr}");
    assert!(stderr.contains("layoutz"), "{stderr}");

    // An unknown section is as wrong as an unknown key.
    fs_err::write(&manifest, format!("{good}[imagez]\n")).unwrap();
    let stderr = f.expect_failure(&["//examples:minimal"], 2);
    assert!(
        stderr.contains("lkb.toml") && stderr.contains("imagez"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Ctrl-C and the store lock need a build that runs for a few seconds.

/// How many heavy services, and how much incompressible data each image carries.
const HEAVY_SERVICES: usize = 24;
const HEAVY_BYTES: usize = 4 << 20;

/// Deterministic incompressible bytes (xorshift64*), different per seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI layout with `HEAVY_SERVICES` distinct images (one plain-tar layer of noise each),
/// and a workspace whose `examples/heavy.yml` runs all of them as services on the example
/// kernel and init.
struct Heavy {
    fixture: Fixture,
    _layout: tempfile::TempDir,
}

fn heavy() -> Heavy {
    let layout_dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(layout_dir.path()).unwrap();
    let mut yml = format!("{KERNEL_AND_INIT}services:\n");
    for i in 0..HEAVY_SERVICES {
        let image = ImageBuilder::new()
            .layer(
                Layer::new()
                    .compression(Compression::None)
                    .dir("data")
                    .file("data/noise", noise(i as u64 + 1, HEAVY_BYTES)),
            )
            .entrypoint(&["/bin/true"])
            .build()
            .unwrap();
        let reference = format!("localhost/lkb-heavy/svc{i:02}:1");
        layout.add(&reference, &image).unwrap();
        yml.push_str(&format!("  - name: heavy{i:02}\n    image: {reference}\n"));
    }
    let fixture = Fixture::with_layouts(&[layout_dir.path()], &[]);
    fixture.write_yml("heavy", &yml);
    Heavy {
        fixture,
        _layout: layout_dir,
    }
}

/// Spawns `cmd` with stdout and stderr going to files (a full pipe must not stall it).
fn spawn_logged(mut cmd: Command, logs: &Path, name: &str) -> (Child, PathBuf) {
    let stderr = logs.join(format!("{name}.stderr"));
    let stdout = logs.join(format!("{name}.stdout"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(fs_err::File::create(&stdout).unwrap().into_parts().0)
        .stderr(fs_err::File::create(&stderr).unwrap().into_parts().0)
        .spawn()
        .unwrap();
    (child, stderr)
}

/// Waits up to `limit` for `child`; kills it (our own child, by handle) when it takes longer.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn read_outputs(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    ["kernel", "initrd.img", "cmdline"]
        .iter()
        .map(|suffix| fs_err::read(dir.join(format!("{name}-{suffix}"))).unwrap())
        .collect()
}

#[test]
fn ctrl_c_stops_promptly_and_leaves_the_store_consistent() {
    let h = heavy();
    let f = &h.fixture;
    let logs = tempfile::tempdir().unwrap();
    let heavy_out = f.path().join("lkb-out/examples/heavy-initrd.img");
    let before = snapshot(f.path());

    let cmd = f
        .lkb
        .command(&["--progress=json", "build", "//examples:heavy"]);
    let (mut child, stderr_path) = spawn_logged(cmd, logs.path(), "interrupted");
    // Interrupt ~0.3 s into the work (not during process start-up, before lkb has its
    // handler: that would test the default SIGINT action, not lkb).
    assert!(
        wait_for_text(
            &stderr_path,
            r#""event":"action_started""#,
            Duration::from_secs(60)
        ),
        "no action started:\n{}",
        fs_err::read_to_string(&stderr_path).unwrap()
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the heavy build finished within 0.3 s; make it heavier:\n{}",
        fs_err::read_to_string(&stderr_path).unwrap()
    );
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_for(&mut child, Duration::from_secs(60));
    let took = signalled.elapsed();
    let stderr = fs_err::read_to_string(&stderr_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running 60 s after SIGINT:\n{stderr}"));
    assert!(
        status.code().is_some_and(|c| c != 0),
        "want a non-zero exit (not death by signal), got {status}:\n{stderr}"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to stop after SIGINT:\n{stderr}"
    );
    assert!(
        stderr.contains("interrupted"),
        "says it was interrupted:\n{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cancel"), "{stderr}");
    assert!(!heavy_out.exists(), "an interrupted build wrote outputs");
    assert_same_snapshot(&before, &snapshot(f.path()));

    // The same store builds it afterwards, keeping what finished before the interrupt…
    let resumed = f.lkb.build(&["//examples:heavy"]).unwrap().ok().unwrap();
    let summary = resumed.summary().unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    let resumed_bytes = read_outputs(&f.out_dir(), "heavy");
    // …and it is consistent: a third build does nothing, and a fresh store gives the same bytes.
    let third = f.lkb.build(&["//examples:heavy"]).unwrap().ok().unwrap();
    assert_eq!(
        third.summary().unwrap()["actions"]["executed"],
        0,
        "{}",
        third.stderr
    );

    let fresh = Lkb::new(f.path()).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_dir_arg = fresh_dir.path().display().to_string();
    let run = fresh
        .build(&["//examples:heavy", "--dir", &fresh_dir_arg])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(run.summary().unwrap()["actions"]["cached"], 0);
    assert!(
        read_outputs(fresh_dir.path(), "heavy") == resumed_bytes,
        "the build after the interrupt differs from a fresh build"
    );
}

#[test]
fn two_builds_on_one_store_both_succeed_the_second_waits() {
    let h = heavy();
    let f = &h.fixture;
    let logs = tempfile::tempdir().unwrap();
    let lock_file = f.lkb.store.path().join("store-v1/lock");

    let first_cmd = f
        .lkb
        .command(&["--progress=json", "build", "//examples:heavy"]);
    let (mut first, first_stderr) = spawn_logged(first_cmd, logs.path(), "first");
    let pid = first.id().to_string();
    // Wait until the first process holds the store lock (it writes its pid there).
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs_err::read_to_string(&lock_file)
        .map(|s| s.trim() != pid)
        .unwrap_or(true)
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first build ended before it was seen holding the lock:\n{}",
            fs_err::read_to_string(&first_stderr).unwrap()
        );
        assert!(Instant::now() < deadline, "no lock file naming pid {pid}");
        thread::sleep(Duration::from_millis(5));
    }
    let second_dir = logs.path().join("second-out");
    let second_cmd = f.lkb.command(&[
        "--progress=json",
        "build",
        "//examples:sshd",
        "--dir",
        &second_dir.display().to_string(),
    ]);
    let (mut second, second_stderr) = spawn_logged(second_cmd, logs.path(), "second");
    let first_status = wait_for(&mut first, Duration::from_secs(300));
    let second_status = wait_for(&mut second, Duration::from_secs(300));
    let first_log = fs_err::read_to_string(&first_stderr).unwrap();
    let second_log = fs_err::read_to_string(&second_stderr).unwrap();
    assert!(
        first_status.is_some_and(|s| s.success()),
        "first: {first_status:?}\n{first_log}"
    );
    assert!(
        second_status.is_some_and(|s| s.success()),
        "second: {second_status:?}\n{second_log}"
    );
    assert!(
        second_log.contains("waiting for the store lock"),
        "the second build says it waits:\n{second_log}"
    );
    assert!(
        second_log.contains(&format!("pid {pid}")),
        "and names the holder {pid}:\n{second_log}"
    );
    assert!(
        !first_log.contains("waiting for the store lock"),
        "{first_log}"
    );
    assert!(f.out_dir().join("heavy-initrd.img").is_file());
    for name in ["sshd-kernel", "sshd-initrd.img", "sshd-cmdline"] {
        assert!(second_dir.join(name).is_file(), "{name}");
    }
    // Both reported success as their last JSON event.
    for log in [&first_log, &second_log] {
        let last = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .next_back()
            .unwrap();
        assert_eq!(last["event"], "summary", "{log}");
        assert_eq!(last["ok"], true, "{log}");
    }
}

/// Sends SIGINT to `child` (our own, by pid) and waits up to `prompt` for it to exit.
fn interrupt(child: &mut Child, prompt: Duration) -> (Option<ExitStatus>, Duration) {
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = signalled + prompt;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (Some(status), signalled.elapsed());
        }
        if Instant::now() >= deadline {
            return (None, signalled.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `path` until it contains `needle` (or `limit` passes).
fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if fs_err::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn ctrl_c_while_waiting_for_the_store_lock_stops_promptly() {
    let f = Fixture::new(&[]);
    let logs = tempfile::tempdir().unwrap();
    // This test holds the store lock itself, as another lkb process would.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(f.lkb.store.path().join("store-v1/lock"))
        .unwrap();
    lock.lock().unwrap();
    let before = snapshot(f.path());

    let cmd = f.lkb.command(&["build", "//examples:sshd"]);
    let (mut child, stderr_path) = spawn_logged(cmd, logs.path(), "waiting");
    assert!(
        wait_for_text(
            &stderr_path,
            "waiting for the store lock",
            Duration::from_secs(60)
        ),
        "never said it waits:\n{}",
        fs_err::read_to_string(&stderr_path).unwrap()
    );
    let (status, took) = interrupt(&mut child, Duration::from_secs(5));
    // Let it go either way, so the test ends.
    lock.unlock().unwrap();
    let status = status.or_else(|| wait_for(&mut child, Duration::from_secs(60)));
    let stderr = fs_err::read_to_string(&stderr_path).unwrap();
    assert!(
        took < Duration::from_secs(5),
        "still waiting for the store lock {took:?} after SIGINT (status once the lock was \
         released: {status:?}):\n{stderr}"
    );
    let status = status.unwrap();
    assert!(status.code().is_some_and(|c| c != 0), "{status}:\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!f.out_dir().join("sshd-initrd.img").exists());
    assert_same_snapshot(&before, &snapshot(f.path()));
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers (a hung registry).
struct StalledServer {
    addr: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StalledServer {
    fn start() -> StalledServer {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&accepted);
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        StalledServer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StalledServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn ctrl_c_while_resolving_from_a_hung_registry_stops_promptly() {
    let server = StalledServer::start();
    let f = Fixture::new(&[&server.addr]);
    f.write_yml(
        "hung",
        &with_onboot_image(&format!("{}/hung:1", server.addr)),
    );
    let logs = tempfile::tempdir().unwrap();
    let before = snapshot(f.path());

    let cmd = f.lkb.command(&["build", "//examples:hung"]);
    let (mut child, stderr_path) = spawn_logged(cmd, logs.path(), "hung");
    // Wait until lkb is connected to the hung registry, i.e. resolving images.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "lkb never connected to the hung registry:\n{}",
            fs_err::read_to_string(&stderr_path).unwrap()
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "lkb did not wait for the hung registry:\n{}",
        fs_err::read_to_string(&stderr_path).unwrap()
    );
    let (status, took) = interrupt(&mut child, Duration::from_secs(5));
    if status.is_none() {
        // Our own child, by its handle.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = fs_err::read_to_string(&stderr_path).unwrap();
    let status = status
        .unwrap_or_else(|| panic!("still resolving {took:?} after SIGINT (killed it):\n{stderr}"));
    assert!(status.code().is_some_and(|c| c != 0), "{status}:\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!f.out_dir().join("hung-initrd.img").exists());
    assert_same_snapshot(&before, &snapshot(f.path()));
}

#[test]
fn yml_path_that_is_missing_or_a_directory_is_a_user_error() {
    let f = Fixture::new(&[]);

    let stderr = f.expect_failure(&["examples/nope.yml"], 2);
    assert!(stderr.contains("examples/nope.yml"), "{stderr}");

    // A directory is not "missing"; the message must not claim it is.
    let stderr = f.expect_failure(&["examples"], 2);
    assert!(stderr.contains("examples"), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("no such file"),
        "examples/ exists (it is a directory):\n{stderr}"
    );
}

#[test]
fn error_report_does_not_repeat_causes_already_in_the_message() {
    let registry = format!("127.0.0.1:{}", free_port().unwrap());
    let f = Fixture::new(&[&registry]);
    f.write_yml("refused", &with_onboot_image(&format!("{registry}/nope:1")));
    let stderr = f.expect_failure(&["//examples:refused"], 3);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_string();
    for line in stderr.lines() {
        if let Some(cause) = line.trim_start().strip_prefix("caused by: ") {
            assert!(
                !error.contains(cause),
                "`caused by: {cause}` repeats what the error line already says:\n{stderr}"
            );
        }
    }
}

/// A newcomer who has not built the example images yet: the image is in no layout (the
/// listed one does not exist) and the registry is unreachable. The error says the layout is
/// missing and which script creates it, not only that a registry refused a connection.
#[test]
fn an_image_in_no_layout_names_the_missing_layout_and_its_build_script() {
    let registry = format!("127.0.0.1:{}", free_port().unwrap());
    let ws = cli::workspace(&[], &[&registry]).unwrap();
    fs_err::write(
        ws.path().join("lkb.toml"),
        format!("[images]\nlayouts = [\"images/oci\"]\ninsecure-registries = [\"{registry}\"]\n"),
    )
    .unwrap();
    fs_err::create_dir_all(ws.path().join("images")).unwrap();
    fs_err::write(ws.path().join("images/build.sh"), "#!/bin/sh\n").unwrap();
    fs_err::write(
        ws.path().join("app.yml"),
        format!("init:\n  - {registry}/lkb/init:1\n"),
    )
    .unwrap();
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["//:app"]).unwrap();
    let error = check_failure(&run, 2, &["//:app"]);
    assert!(
        error.contains(&format!(
            "image {registry}/lkb/init:1 is in none of the OCI layouts"
        )),
        "{}",
        run.stderr
    );
    let layout = ws.path().join("images/oci");
    let script = ws.path().join("images/build.sh");
    assert!(
        run.stderr.contains(&format!(
            "hint: {} does not exist; {} creates it",
            layout.display(),
            script.display()
        )),
        "{}",
        run.stderr
    );
    // The registry's own failure is still there, as the cause.
    assert!(run.stderr.contains(&registry), "{}", run.stderr);
    assert!(!ws.path().join("lkb-out").exists());
}
