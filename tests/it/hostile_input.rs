//! Hostile input and a hostile output directory (issue 13): planted symlinks, outputs changed
//! behind lkb's back, a failure half-way through the output step, bad `--name`s, device files
//! as `files:` sources, huge or non-UTF-8 yml files, and arbitrary text fed to the yml parser.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lkb_tests::cli::{self, Lkb, Run};

/// A scratch workspace holding `examples/minimal.yml`, with a private store and a good build
/// of `//examples:minimal` in `lkb-out/examples`.
struct Fixture {
    ws: tempfile::TempDir,
    lkb: Lkb,
}

const OUTPUTS: [&str; 3] = ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"];

impl Fixture {
    fn new() -> Fixture {
        let layout = cli::example_layout().expect("example OCI layout");
        let ws = cli::workspace(&[layout.as_path()], &[]).expect("workspace");
        fs_err::create_dir(ws.path().join("examples")).expect("mkdir");
        let lkb = Lkb::new(ws.path()).expect("lkb");
        let fixture = Fixture { ws, lkb };
        fixture.write_yml("minimal", &minimal_yml());
        fixture.build_ok(&["//examples:minimal"]);
        fixture
    }

    fn path(&self) -> &Path {
        self.ws.path()
    }

    fn out_dir(&self) -> PathBuf {
        self.path().join("lkb-out/examples")
    }

    fn write_yml(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join("examples").join(format!("{name}.yml"));
        fs_err::write(&path, text).expect("write yml");
        path
    }

    fn build_ok(&self, args: &[&str]) -> Run {
        let run = self.lkb.build(args).expect("run lkb").ok().expect("build");
        assert_eq!(run.summary().expect("summary")["ok"], true);
        run
    }

    /// Runs `lkb ARGS`, killing it (and failing) after a minute: a hang is a bug here.
    fn run(&self, args: &[&str]) -> Run {
        let mut child = self
            .lkb
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lkb");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                child.kill().expect("kill");
                panic!("lkb {args:?} still running after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `lkb ARGS`, expects exit code 2 and one `error:` line, and returns that line.
    fn user_error(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code, 2,
            "lkb {args:?}: exit code\nstdout:\n{}\nstderr:\n{}",
            run.stdout, run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        run.stderr
    }

    fn temp_files(&self) -> Vec<String> {
        names(&self.out_dir())
            .into_iter()
            .filter(|n| n.contains("lkb-tmp"))
            .collect()
    }
}

fn minimal_yml() -> String {
    fs_err::read_to_string(cli::repo_root().join("examples/minimal.yml")).expect("minimal.yml")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn planted_symlinks_in_the_output_directory_are_not_followed() {
    let fx = Fixture::new();
    let out = fx.out_dir();
    let kernel = fs_err::read(out.join("minimal-kernel")).expect("kernel");
    let cmdline = fs_err::read(out.join("minimal-cmdline")).expect("cmdline");
    let victim = fx.path().join("victim");
    fs_err::write(&victim, "precious").expect("victim");

    // The temporary name lkb used to use, and the output itself, pointing elsewhere.
    fs_err::remove_file(out.join("minimal-kernel")).expect("rm");
    std::os::unix::fs::symlink(&victim, out.join(".minimal-kernel.lkb-tmp")).expect("symlink");
    fs_err::remove_file(out.join("minimal-cmdline")).expect("rm");
    std::os::unix::fs::symlink(&victim, out.join("minimal-cmdline")).expect("symlink");

    fx.build_ok(&["//examples:minimal"]);
    assert_eq!(fs_err::read_to_string(&victim).expect("victim"), "precious");
    for (name, bytes) in [("minimal-kernel", &kernel), ("minimal-cmdline", &cmdline)] {
        let path = out.join(name);
        assert!(
            fs_err::symlink_metadata(&path).expect("stat").is_file(),
            "{name} is a regular file"
        );
        assert_eq!(&fs_err::read(&path).expect("read"), bytes, "{name}");
    }
    // Only the planted link is left over; lkb's own temporary files are gone.
    let left: Vec<String> = fx.temp_files();
    assert_eq!(left, [".minimal-kernel.lkb-tmp"]);
}

#[test]
fn a_failed_output_step_replaces_nothing_and_leaves_no_temporary_files() {
    let fx = Fixture::new();
    let out = fx.out_dir();
    // `two` differs from minimal, so all three of its outputs must be written; the last one
    // cannot be, as a directory is in the way.
    let yml = minimal_yml().replace("console=ttyS0", "console=ttyS1");
    fx.write_yml("two", &yml);
    for name in ["two-kernel", "two-initrd.img"] {
        fs_err::write(out.join(name), "old").expect("old output");
    }
    fs_err::create_dir_all(out.join("two-cmdline/occupied")).expect("dir in the way");
    let before: Vec<(String, u64)> = names(&out)
        .into_iter()
        .map(|n| {
            let ino = fs_err::symlink_metadata(out.join(&n)).expect("stat").ino();
            (n, ino)
        })
        .collect();

    let stderr = fx.user_error(&["build", "//examples:two"]);
    assert!(stderr.contains("two-cmdline"), "{stderr}");
    for name in ["two-kernel", "two-initrd.img"] {
        assert_eq!(
            fs_err::read_to_string(out.join(name)).expect("read"),
            "old",
            "{name} was replaced by a failed build"
        );
    }
    let after: Vec<(String, u64)> = names(&out)
        .into_iter()
        .map(|n| {
            let ino = fs_err::symlink_metadata(out.join(&n)).expect("stat").ino();
            (n, ino)
        })
        .collect();
    assert_eq!(before, after, "the output directory changed");
    assert_eq!(fx.temp_files(), Vec::<String>::new());

    // Once the way is clear, all three are written.
    fs_err::remove_dir_all(out.join("two-cmdline")).expect("clear");
    fx.build_ok(&["//examples:two"]);
    assert!(
        fs_err::read_to_string(out.join("two-cmdline"))
            .expect("cmdline")
            .contains("ttyS1")
    );
    assert_ne!(
        fs_err::read(out.join("two-kernel")).expect("kernel"),
        b"old"
    );
}

#[test]
fn an_output_changed_keeping_its_size_and_mtime_is_written_again() {
    let fx = Fixture::new();
    let out = fx.out_dir();
    for name in OUTPUTS {
        let path = out.join(name);
        let good = fs_err::read(&path).expect("read");
        let modified = fs_err::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime");
        let mut bad = good.clone();
        bad[0] ^= 0xff;
        let file = fs_err::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        std::io::Write::write_all(&mut &file, &bad).expect("corrupt");
        // Same size, mtime set back: only the ctime tells.
        file.file()
            .set_times(std::fs::FileTimes::new().set_modified(modified))
            .expect("utime");
        drop(file);
        assert_eq!(
            fs_err::metadata(&path)
                .expect("stat")
                .modified()
                .expect("m"),
            modified
        );

        fx.build_ok(&["//examples:minimal"]);
        assert!(
            fs_err::read(&path).expect("read") == good,
            "{name} was left corrupt"
        );
    }
    // And a build with nothing changed leaves every output alone (same inode).
    let inodes = |fx: &Fixture| -> Vec<u64> {
        OUTPUTS
            .iter()
            .map(|n| fs_err::metadata(fx.out_dir().join(n)).expect("stat").ino())
            .collect()
    };
    let before = inodes(&fx);
    fx.build_ok(&["//examples:minimal"]);
    assert_eq!(before, inodes(&fx));
}

#[test]
fn a_name_that_is_not_a_plain_file_name_is_a_usage_error() {
    let fx = Fixture::new();
    let outside = fx.path().join("lkb-out");
    let before = names(&outside);
    for name in ["", ".", "..", "../escape", "a/b", "/tmp/x"] {
        let stderr = fx.user_error(&["build", "--name", name, "examples/minimal.yml"]);
        assert!(stderr.contains("--name"), "{name:?}: {stderr}");
    }
    assert_eq!(names(&outside), before);
    assert!(!fx.path().join("escape-kernel").exists());
}

#[test]
fn a_files_source_that_is_a_device_is_refused() {
    let fx = Fixture::new();
    let yml = format!(
        "{}files:\n  - path: etc/ok\n    contents: fine\n  - path: etc/zero\n    source: /dev/zero\n",
        minimal_yml()
    );
    fx.write_yml("zero", &yml);
    let stderr = fx.user_error(&["build", "//examples:zero"]);
    assert!(
        stderr.contains("files[1]")
            && stderr.contains("/dev/zero")
            && stderr.contains("not a regular file"),
        "{stderr}"
    );
}

#[test]
fn a_yml_that_is_not_utf8_or_too_large_is_a_user_error() {
    let fx = Fixture::new();
    let mut bytes = minimal_yml().into_bytes();
    bytes.extend_from_slice(b"# caf\xe9\n");
    fs_err::write(fx.path().join("examples/latin1.yml"), &bytes).expect("write");
    for command in ["build", "config"] {
        let stderr = fx.user_error(&[command, "//examples:latin1"]);
        assert!(
            stderr.contains("latin1.yml:") && stderr.contains("not valid UTF-8"),
            "{stderr}"
        );
    }

    let huge = fs_err::File::create(fx.path().join("examples/huge.yml")).expect("create");
    huge.set_len(17 << 20).expect("sparse 17 MiB");
    drop(huge);
    let stderr = fx.user_error(&["build", "//examples:huge"]);
    assert!(
        stderr.contains("huge.yml:1:1") && stderr.contains("larger than 16 MiB"),
        "{stderr}"
    );
}

#[test]
fn an_image_config_with_non_string_entrypoint_items_is_an_error_not_a_panic() {
    use lkb_rules::bundle_spec::image_settings;
    let config = lkb_rules::config::parse_config(
        "services:\n- name: s\n  image: linuxkit/s:1\n",
        Path::new("t.yml"),
    )
    .expect("valid");
    let spec = &config.services[0];
    for blob in [
        serde_json::json!({"config": {"Entrypoint": [null, 1]}}),
        serde_json::json!({"config": {"Cmd": [{}, []]}}),
        serde_json::json!({"config": {"Env": [null], "WorkingDir": 7}}),
        serde_json::json!({"config": {"Labels": {"org.mobyproject.config": 1}}}),
        serde_json::json!({"config": null}),
        serde_json::json!([]),
    ] {
        let result = std::panic::catch_unwind(|| image_settings(&blob, spec));
        let result = result.unwrap_or_else(|_| panic!("image_settings panicked on {blob}"));
        if let Err(error) = result {
            assert_eq!(
                lkb_store::Categorized::category(&error),
                lkb_store::ErrorCategory::User,
                "{blob}: {error}"
            );
        }
    }
}

#[test]
fn layer_limit_messages_name_no_setting_that_does_not_exist() {
    use lkb_rules::layer::LayerErrorKind;
    for error in [
        LayerErrorKind::TooManyEntries { limit: 10 },
        LayerErrorKind::PathTooLong {
            path: "a/b".into(),
            len: 5000,
            limit: 4096,
        },
        LayerErrorKind::TooLarge { limit: 1 << 30 },
    ] {
        let message = error.to_string();
        for setting in ["max_entries", "max_path_len", "max_total_bytes", "max-path"] {
            assert!(!message.contains(setting), "{message}");
        }
        assert!(message.contains("fixed limit"), "{message}");
    }
}

/// A small deterministic generator (xorshift), so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn the_yml_front_end_never_panics_on_arbitrary_text() {
    const PIECES: &[&str] = &[
        "kernel:",
        "image:",
        "cmdline:",
        "init:",
        "onboot:",
        "services:",
        "files:",
        "volumes:",
        "- ",
        "  ",
        "\n",
        ":",
        "{",
        "}",
        "[",
        "]",
        ",",
        "\"",
        "'",
        "&a",
        "*a",
        "<<: *a",
        "!!str",
        "!tag",
        "null",
        "~",
        "1",
        "-1",
        "0o777",
        "1e9",
        "true",
        "name: x",
        "path: /etc/x",
        "mode: \"0644\"",
        "uid: 1",
        "gid: root",
        "source: /dev/null",
        "contents: |",
        "@pkg:x",
        "#",
        "\t",
        "\u{feff}",
        "é",
        "\\",
        "%YAML 1.2",
        "---",
        "...",
        "? ",
        "|-",
        ">",
        "capabilities: [all]",
        "binds: [a:b]",
        "env: [A=1]",
        "rlimits: [nofile,1,2]",
    ];
    let seed_texts = [minimal_yml(), String::new()];
    for seed in 1..=3000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut text = seed_texts[rng.below(seed_texts.len())].clone();
        for _ in 0..1 + rng.below(12) {
            let piece = PIECES[rng.below(PIECES.len())];
            let mut at = if text.is_empty() {
                0
            } else {
                rng.below(text.len())
            };
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            if rng.below(4) == 0 && at < text.len() {
                // Delete a few characters instead.
                let mut end = (at + 1 + rng.below(8)).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, "");
            } else {
                text.insert_str(at, piece);
            }
        }
        let parsed = std::panic::catch_unwind(|| {
            lkb_rules::config::parse_config(&text, Path::new("fuzz.yml")).map(|config| {
                // Merging and rendering must not panic either.
                let _ = lkb_rules::config::merge(vec![config]);
            })
        });
        assert!(
            parsed.is_ok(),
            "seed {seed}: parse_config panicked on:\n{text}"
        );
    }
}
