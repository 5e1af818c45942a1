//! Running the real `lkb` binary in tests: a private store per test, JSON-lines progress, and
//! helpers to read the build summary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{Context, bail};
use serde_json::Value;

/// The workspace root (the directory holding `lkb.toml` and `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the `lkb` binary, built on first use (`cargo build -p lkb`) so that
/// `cargo test -p lkb-tests` works on its own.
pub fn lkb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "lkb", "--bin", "lkb"])
            .current_dir(repo_root());
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p lkb");
        assert!(status.success(), "cargo build -p lkb failed");
        profile_dir.join("lkb")
    })
    .clone()
}

/// The example images' OCI layout (`examples/images/oci`), built from Debian packages on
/// first use.
pub fn example_layout() -> anyhow::Result<PathBuf> {
    static LAYOUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let out = repo_root().join("examples/images/oci");
            let cache = crate::debs::DebCache::open_default().map_err(|e| format!("{e:#}"))?;
            crate::examples::write_layout(&cache, &out, false).map_err(|e| format!("{e:#}"))?;
            Ok(out)
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// One `lkb` invocation environment: a private store and a working directory.
pub struct Lkb {
    pub store: tempfile::TempDir,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// What `lkb` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The final JSON summary line (with `--progress=json`).
    pub fn summary(&self) -> anyhow::Result<Value> {
        self.events()
            .into_iter()
            .rev()
            .find(|v| v["event"] == "summary")
            .with_context(|| format!("no summary in stderr:\n{}", self.stderr))
    }

    /// Every JSON event line on stderr.
    pub fn events(&self) -> Vec<Value> {
        self.stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Labels of executed actions of `kind`.
    pub fn executed(&self, kind: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|v| {
                v["event"] == "action_finished" && v["cached"] == false && v["kind"] == kind
            })
            .map(|v| v["label"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Kinds of every executed (not cached) action, in the order they finished.
    pub fn executed_kinds(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|v| v["event"] == "action_finished" && v["cached"] == false)
            .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Fails with the whole output unless the exit code is 0.
    pub fn ok(self) -> anyhow::Result<Run> {
        if self.code != 0 {
            bail!(
                "lkb exited {}:\nstdout:\n{}\nstderr:\n{}",
                self.code,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

impl Lkb {
    /// A fresh store; commands run in `cwd`.
    pub fn new(cwd: impl Into<PathBuf>) -> anyhow::Result<Lkb> {
        Ok(Lkb {
            store: tempfile::tempdir()?,
            cwd: cwd.into(),
            env: Vec::new(),
        })
    }

    /// Sets an environment variable for every later command.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Lkb {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The command, ready to run (store and HOME are private to the test).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(lkb_bin());
        cmd.args(args)
            .current_dir(&self.cwd)
            .env("LKB_STORE", self.store.path())
            .env("HOME", self.store.path().join("home"))
            .env_remove("DOCKER_CONFIG")
            .env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `lkb ARGS`.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        let out: Output = self
            .command(args)
            .output()
            .with_context(|| format!("run lkb {args:?}"))?;
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs `lkb --progress=json build ARGS`.
    pub fn build(&self, args: &[&str]) -> anyhow::Result<Run> {
        let mut all = vec!["--progress=json", "build"];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

/// A scratch workspace: a temp dir with an `lkb.toml` listing `layouts` and marking
/// `insecure` registries.
pub fn workspace(layouts: &[&Path], insecure: &[&str]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let quote = |s: &str| format!("{s:?}");
    let layouts: Vec<String> = layouts
        .iter()
        .map(|p| quote(&p.display().to_string()))
        .collect();
    let insecure: Vec<String> = insecure.iter().map(|s| quote(s)).collect();
    fs_err::write(
        dir.path().join("lkb.toml"),
        format!(
            "[images]\nlayouts = [{}]\ninsecure-registries = [{}]\n",
            layouts.join(", "),
            insecure.join(", ")
        ),
    )?;
    Ok(dir)
}

/// Splits a decompressed initrd into its newc cpio archives by walking the headers (each
/// archive ends with a `TRAILER!!!` entry and zero padding to 512 bytes), so each can be handed
/// to `cpio -i` in turn. Searching for the trailer's bytes would not do: busybox contains them.
pub fn split_cpio_archives(data: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let align = |p: usize| (p + 3) & !3;
    let mut archives = Vec::new();
    let mut start = 0;
    while data[start..].iter().any(|b| *b != 0) {
        let mut pos = start;
        loop {
            let header = data
                .get(pos..pos + 110)
                .with_context(|| format!("truncated cpio header at offset {pos}"))?;
            if &header[..6] != b"070701" {
                bail!("no newc header at offset {pos}");
            }
            let field = |i: usize| -> anyhow::Result<usize> {
                let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])?;
                Ok(usize::from_str_radix(text, 16)?)
            };
            let (size, namesize) = (field(6)?, field(11)?);
            let name = data
                .get(pos + 110..pos + 110 + namesize.saturating_sub(1))
                .with_context(|| format!("truncated cpio name at offset {pos}"))?;
            let is_trailer = name == b"TRAILER!!!";
            pos = align(align(pos + 110 + namesize) + size);
            if is_trailer {
                break;
            }
        }
        let end = (start + (pos - start).div_ceil(512) * 512).min(data.len());
        archives.push(data[start..end].to_vec());
        start = end;
    }
    Ok(archives)
}

/// Every file below `dir` (not directories), sorted.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
