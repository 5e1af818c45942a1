//! Reproducibility and incrementality end to end (DESIGN §1.2, §1.4, §8), with the real `lkb`
//! binary:
//! - the same bytes under another clock (`faketime`), `SOURCE_DATE_EPOCH`, TZ and umask, in
//!   another store and directory, for `kernel+initrd` and `tar`;
//! - the same bytes from the cache, from a forced rebuild and with `-j 1` / `-j 2`;
//! - `--check` on the minimal example;
//! - `--initrd-compression zstd` and `none`: valid initrds with the same archives, only the
//!   segments (and the concatenation) re-run, and the kernel boots the zstd one;
//! - with a real registry: a new image for one service re-runs exactly that service's column,
//!   and early cut-off (an upstream action re-runs, produces the same bytes, and the wave stops).
//!
//! `boot.rs` already covers two stores and directories under another umask and TZ, and
//! `build_registry.rs` a no-op build leaving outputs untouched; this file only adds the rest.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lkb_tests::cli::{self, Lkb, Run};
use lkb_tests::examples::{BOOT_MARKER, DONE_MARKER};
use lkb_tests::oci::{Compression, Image, ImageBuilder, Layer};
use lkb_tests::qemu;
use lkb_tests::registry::Registry;
use lkb_tests::synthetic;
use serde_json::Value;

use crate::build_registry::run_tool;

const MINIMAL: &str = "//examples:minimal";
/// `kernel+initrd`, `tar` and every boot-media format (`kernel+iso` writes `minimal.iso` as
/// `iso-bios` does; its ISO is the same writer without a boot loader).
const FORMATS: [&str; 6] = [
    "--format",
    "kernel+initrd,tar,docker,kernel+squashfs,kernel+erofs",
    "--format",
    "uki,raw-bios,raw-efi,iso-bios,iso-efi,iso-efi-initrd",
    "--format",
    "qcow2-bios,qcow2-efi,aws,vhd,vmdk,gcp",
];
/// What [`FORMATS`] writes for `minimal`.
const OUTPUTS: [&str; 19] = [
    "minimal-kernel",
    "minimal-initrd.img",
    "minimal-cmdline",
    "minimal.tar",
    "minimal.docker",
    "minimal-squashfs.img",
    "minimal-erofs.img",
    "minimal.qcow2",
    "minimal-efi.qcow2",
    "minimal.raw",
    "minimal.vhd",
    "minimal.vmdk",
    "minimal.img.tar.gz",
    "minimal.efi",
    "minimal-bios.img",
    "minimal-efi.img",
    "minimal.iso",
    "minimal-efi.iso",
    "minimal-efi-initrd.iso",
];
/// TCG on a loaded 2-core machine; the example needs ~5 s when idle.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// helpers

/// A scratch workspace: `lkb.toml` naming the example layout, and `examples/minimal.yml`.
fn minimal_workspace() -> tempfile::TempDir {
    let layout = cli::example_layout().expect("example OCI layout (examples/images/oci)");
    let ws = cli::workspace(&[&layout], &[]).expect("scratch workspace");
    fs_err::create_dir(ws.path().join("examples")).unwrap();
    fs_err::copy(
        cli::repo_root().join("examples/minimal.yml"),
        ws.path().join("examples/minimal.yml"),
    )
    .unwrap();
    ws
}

/// `lkb --progress=json build ARGS`, which must succeed.
fn build_ok(lkb: &Lkb, args: &[&str]) -> Run {
    lkb.build(args).unwrap().ok().unwrap()
}

/// `lkb --progress=json build MINIMAL FORMATS EXTRA`, which must succeed.
fn build_minimal(lkb: &Lkb, extra: &[&str]) -> Run {
    let mut args = vec![MINIMAL];
    args.extend_from_slice(&FORMATS);
    args.extend_from_slice(extra);
    build_ok(lkb, &args)
}

/// Runs a command built around `lkb` and collects what it did.
fn run(mut cmd: Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cmd` run as `sh -c 'SHELL_PREFIX "$0" "$@"'`: same program, arguments, directory and
/// environment, e.g. under another umask or `faketime`.
fn wrapped(cmd: &Command, shell_prefix: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("{shell_prefix} \"$0\" \"$@\""))
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    sh
}

fn summary_u64(run: &Run, pointer: &str) -> u64 {
    let summary = run.summary().unwrap();
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {summary}"))
}

/// `(kind, label)` of every `action_finished` event that matches `cached`, sorted.
fn finished(run: &Run, cached: bool) -> Vec<(String, String)> {
    let mut actions: Vec<(String, String)> = run
        .events()
        .into_iter()
        .filter(|v| v["event"] == "action_finished" && v["cached"] == cached)
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_owned(),
                v["label"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    actions.sort();
    actions
}

fn executed(run: &Run) -> Vec<(String, String)> {
    finished(run, false)
}

/// Every action of the build, executed or cached, sorted.
fn all_actions(run: &Run) -> Vec<(String, String)> {
    let mut all = finished(run, false);
    all.extend(finished(run, true));
    all.sort();
    all
}

/// Sorted `(kind, label)` pairs from string literals.
fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = list
        .iter()
        .map(|(k, l)| ((*k).to_owned(), (*l).to_owned()))
        .collect();
    pairs.sort();
    pairs
}

/// The files `names` in `dir`, by name.
fn read_outputs<'n>(dir: &Path, names: &[&'n str]) -> BTreeMap<&'n str, Vec<u8>> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let bytes = fs_err::read(&path).unwrap();
            assert!(!bytes.is_empty(), "{} is empty", path.display());
            (*name, bytes)
        })
        .collect()
}

/// A file's length and SHA-256, read in pieces: outputs are compared by these, not held in
/// memory (the VM formats' disks are 1 GiB).
#[derive(Debug, PartialEq, Eq)]
struct Content {
    len: u64,
    sha256: Vec<u8>,
}

fn digest_outputs<'n>(dir: &Path, names: &[&'n str]) -> BTreeMap<&'n str, Content> {
    use sha2::Digest as _;
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let mut hasher = sha2::Sha256::new();
            let mut file = fs_err::File::open(&path).unwrap();
            let mut buffer = vec![0; 1 << 20];
            let mut len = 0;
            loop {
                let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                len += n as u64;
            }
            assert!(len > 0, "{} is empty", path.display());
            let sha256 = hasher.finalize().to_vec();
            (*name, Content { len, sha256 })
        })
        .collect()
}

/// Fails naming every file whose bytes differ (with both sizes), not with a byte dump.
fn assert_same_files(a: &BTreeMap<&str, Content>, b: &BTreeMap<&str, Content>, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: other files"
    );
    let differing: Vec<String> = a
        .iter()
        .filter(|(name, content)| b[*name] != **content)
        .map(|(name, content)| format!("{name} ({} vs {} bytes)", content.len, b[name].len))
        .collect();
    assert!(differing.is_empty(), "{what}: {differing:?} differ");
}

/// Inode and mtime: a file lkb left alone keeps both.
fn stat(path: &Path) -> (u64, i64, i64) {
    let meta = fs_err::metadata(path).unwrap();
    (meta.ino(), meta.mtime(), meta.mtime_nsec())
}

fn stats(dir: &Path, names: &[&str]) -> BTreeMap<String, (u64, i64, i64)> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), stat(&dir.join(name))))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `sha256:` and the first 12 hex digits, as lkb labels name blobs.
fn short(digest: &lkb_tests::oci::Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

// ---------------------------------------------------------------------------------------------
// 1. another clock, SOURCE_DATE_EPOCH, TZ and umask

#[test]
fn same_bytes_under_another_clock_source_date_epoch_tz_and_umask() {
    // A: plain, from the workspace root.
    let ws_a = minimal_workspace();
    let lkb_a = Lkb::new(ws_a.path()).unwrap().env("TZ", "UTC");
    let run_a = build_minimal(&lkb_a, &[]);
    assert_eq!(summary_u64(&run_a, "/actions/cached"), 0);

    // B: another store, another workspace, run from its `examples/` directory, in UTC+5:45,
    // in 2031 by its clock (libfaketime), with SOURCE_DATE_EPOCH set and umask 077.
    let ws_b = minimal_workspace();
    let lkb_b = Lkb::new(ws_b.path().join("examples"))
        .unwrap()
        .env("TZ", "Asia/Kathmandu")
        .env("SOURCE_DATE_EPOCH", "1000000000")
        .env("LC_ALL", "C");
    let mut args = vec!["--progress=json", "build", MINIMAL];
    args.extend_from_slice(&FORMATS);
    let cmd = lkb_b.command(&args);
    let run_b = run(wrapped(
        &cmd,
        "umask 077 && exec faketime '2031-01-01 00:00:00'",
    ))
    .ok()
    .unwrap();
    assert_eq!(summary_u64(&run_b, "/actions/cached"), 0);
    assert_eq!(
        summary_u64(&run_a, "/actions/total"),
        summary_u64(&run_b, "/actions/total")
    );

    // The environment really applied: the umask to what lkb created, the fake clock to the
    // build time the store recorded (`cache ls`, two and a half fake days later, says "2d
    // ago"; the real-time build of A is years before that).
    assert_eq!(
        fs_err::metadata(lkb_b.store.path().join("store-v1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let ls = |lkb: &Lkb| {
        let cmd = lkb.command(&["cache", "ls"]);
        let out = run(wrapped(&cmd, "exec faketime '2031-01-03 12:00:00'"))
            .ok()
            .unwrap();
        out.stdout
            .lines()
            .find(|l| l.contains(MINIMAL))
            .unwrap_or_else(|| panic!("no {MINIMAL} row:\n{}", out.stdout))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(ls(&lkb_b), "2d", "B's build was not in 2031");
    assert_ne!(ls(&lkb_a), "2d");

    let a = digest_outputs(&ws_a.path().join("lkb-out/examples"), &OUTPUTS);
    let b = digest_outputs(&ws_b.path().join("lkb-out/examples"), &OUTPUTS);
    assert_same_files(
        &a,
        &b,
        "plain build vs faketime/SOURCE_DATE_EPOCH/TZ/umask build",
    );
    // The pins agree too.
    let lock_a = fs_err::read_to_string(ws_a.path().join("lkb.lock")).unwrap();
    let lock_b = fs_err::read_to_string(ws_b.path().join("lkb.lock")).unwrap();
    assert_eq!(lock_a, lock_b);
}

// ---------------------------------------------------------------------------------------------
// 2. from the cache, forced, and with other -j

#[test]
fn cache_hits_and_a_forced_rebuild_write_the_bytes_of_a_fresh_build() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let out = ws.path().join("lkb-out/examples");
    let fresh_run = build_minimal(&lkb, &[]);
    let total = summary_u64(&fresh_run, "/actions/total");
    assert_eq!(summary_u64(&fresh_run, "/actions/executed"), total);
    let fresh = digest_outputs(&out, &OUTPUTS);

    // Outputs gone, the store warm: every action is a cache hit, the files come back.
    fs_err::remove_dir_all(ws.path().join("lkb-out")).unwrap();
    let cached = build_minimal(&lkb, &[]);
    assert_eq!(
        summary_u64(&cached, "/actions/executed"),
        0,
        "{}",
        cached.stderr
    );
    assert_eq!(summary_u64(&cached, "/actions/cached"), total);
    assert_same_files(
        &fresh,
        &digest_outputs(&out, &OUTPUTS),
        "fresh vs from cache",
    );

    // --rebuild: every action runs again and produces the same bytes, so the output files
    // (whose recorded digest did not change) are not even rewritten.
    let before = stats(&out, &OUTPUTS);
    let forced = build_minimal(&lkb, &["--rebuild"]);
    assert_eq!(summary_u64(&forced, "/actions/executed"), total);
    assert_eq!(summary_u64(&forced, "/actions/cached"), 0);
    assert!(
        forced
            .events()
            .iter()
            .filter(|e| e["event"] == "action_finished")
            .all(|e| e["reason_kind"] == "forced"),
        "{}",
        forced.stderr
    );
    assert_eq!(all_actions(&forced), all_actions(&fresh_run));
    assert_same_files(
        &fresh,
        &digest_outputs(&out, &OUTPUTS),
        "fresh vs --rebuild",
    );
    assert_eq!(stats(&out, &OUTPUTS), before, "--rebuild rewrote outputs");
}

#[test]
fn one_job_and_two_jobs_write_the_same_bytes() {
    let builds: Vec<_> = ["1", "2"]
        .into_iter()
        .map(|jobs| {
            let ws = minimal_workspace();
            let lkb = Lkb::new(ws.path()).unwrap();
            let run = build_minimal(&lkb, &["-j", jobs]);
            assert_eq!(summary_u64(&run, "/actions/cached"), 0, "-j {jobs}");
            let outputs = digest_outputs(&ws.path().join("lkb-out/examples"), &OUTPUTS);
            (outputs, all_actions(&run))
        })
        .collect();
    assert_eq!(builds[0].1, builds[1].1, "the same graph");
    assert_same_files(&builds[0].0, &builds[1].0, "-j 1 vs -j 2");
}

// ---------------------------------------------------------------------------------------------
// 3. --check

/// `--check` builds, then runs every action again ignoring the cache, and compares. Nothing
/// outside lkb can make one of its actions give other bytes on a second run (every action
/// reads only its inputs from the store; fetch returns the stored blob; `files:` sources are
/// read once, before anything runs), so only the passing case is tested here.
#[test]
fn check_passes_on_the_minimal_example_fresh_and_warm() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let reference = {
        let other = minimal_workspace();
        build_minimal(&Lkb::new(other.path()).unwrap(), &[]);
        digest_outputs(&other.path().join("lkb-out/examples"), &OUTPUTS)
    };
    for pass in ["fresh store", "warm store"] {
        let run = build_minimal(&lkb, &["--check"]);
        let total = summary_u64(&run, "/actions/total");
        let events = run.events();
        let finished: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "action_finished")
            .collect();
        // Each action twice: first as a normal build would, then forced.
        assert_eq!(finished.len() as u64, 2 * total, "{pass}: {}", run.stderr);
        let forced = finished
            .iter()
            .filter(|e| e["cached"] == false && e["reason_kind"] == "forced")
            .count() as u64;
        assert_eq!(forced, total, "{pass}: {}", run.stderr);
        let first_executed = if pass == "fresh store" { total } else { 0 };
        assert_eq!(
            finished
                .iter()
                .filter(|e| e["reason_kind"] == "new")
                .count() as u64,
            first_executed,
            "{pass}: {:?}",
            finished
                .iter()
                .filter(|e| e["reason_kind"] != "new" && e["reason_kind"] != "forced")
                .map(|e| format!("{} {} {}", e["kind"], e["reason_kind"], e["cached"]))
                .collect::<Vec<_>>()
        );
        assert!(!run.stderr.contains("not reproducible"), "{}", run.stderr);
        assert_same_files(
            &reference,
            &digest_outputs(&ws.path().join("lkb-out/examples"), &OUTPUTS),
            pass,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. initrd compression

/// Every cpio archive of a decompressed initrd, each as the names `cpio -t` lists.
fn cpio_listings(cpio_stream: &[u8]) -> Vec<Vec<String>> {
    cli::split_cpio_archives(cpio_stream)
        .unwrap()
        .iter()
        .map(|archive| {
            let names = run_tool(Command::new("cpio").args(["-it", "--quiet"]), Some(archive));
            String::from_utf8(names)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn zstd_and_uncompressed_initrds_hold_the_same_archives_and_zstd_boots() {
    let ws = minimal_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let kernel_initrd = ["--format", "kernel+initrd"];
    let files = ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"];
    let build = |codec: &str, dir: &str| -> Run {
        let mut args = vec![MINIMAL, "--dir", dir, "--initrd-compression", codec];
        args.extend_from_slice(&kernel_initrd);
        build_ok(&lkb, &args)
    };

    let gzip_run = build("gzip", "gzip");
    let total = summary_u64(&gzip_run, "/actions/total");
    let segments: Vec<(String, String)> = all_actions(&gzip_run)
        .into_iter()
        .filter(|(kind, _)| kind == "segment")
        .collect();
    assert!(segments.len() >= 4, "{segments:?}");
    let mut codec_column = segments.clone();
    codec_column.sort();

    // The codec is in the segments' keys: switching it re-runs every segment, and nothing
    // else (trees, kernel, images are shared).
    for codec in ["zstd", "none"] {
        let run = build(codec, codec);
        assert_eq!(executed(&run), codec_column, "{codec}: {}", run.stderr);
        assert_eq!(summary_u64(&run, "/actions/total"), total);
    }
    // Every codec's results stay cached side by side.
    for codec in ["gzip", "zstd", "none"] {
        let again = build(codec, codec);
        let ran = executed(&again);
        assert!(ran.is_empty(), "{codec} again ran {ran:?}");
    }

    let gzip = read_outputs(&ws.path().join("gzip"), &files);
    let zstd = read_outputs(&ws.path().join("zstd"), &files);
    let none = read_outputs(&ws.path().join("none"), &files);
    for other in [&zstd, &none] {
        assert_eq!(other["minimal-kernel"], gzip["minimal-kernel"]);
        assert_eq!(other["minimal-cmdline"], gzip["minimal-cmdline"]);
    }
    let gzip_initrd = &gzip["minimal-initrd.img"];
    let zstd_initrd = &zstd["minimal-initrd.img"];
    let raw_initrd = &none["minimal-initrd.img"];
    assert!(gzip_initrd.starts_with(&[0x1f, 0x8b]));
    assert!(
        zstd_initrd.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "zstd magic"
    );
    assert!(raw_initrd.starts_with(b"070701"), "newc magic");

    // gzip -dc / zstd -dc read the concatenated members / frames back to the very bytes of
    // the uncompressed initrd: the same archives, whatever the codec.
    let from_gzip = run_tool(Command::new("gzip").arg("-dc"), Some(gzip_initrd));
    let from_zstd = run_tool(Command::new("zstd").args(["-dc", "-q"]), Some(zstd_initrd));
    assert!(from_gzip == *raw_initrd, "gzip -dc differs from none");
    assert!(from_zstd == *raw_initrd, "zstd -dc differs from none");
    let listings = cpio_listings(raw_initrd);
    assert_eq!(listings.len(), segments.len(), "one archive per segment");
    assert_eq!(cpio_listings(&from_zstd), listings);
    assert_eq!(cpio_listings(&from_gzip), listings);
    assert!(
        listings
            .iter()
            .flatten()
            .any(|name| name == "containers/services/getty/config.json"),
        "{listings:?}"
    );

    // Debian's kernel unpacks a zstd initramfs: boot it.
    let dir = ws.path().join("zstd");
    let cmdline = String::from_utf8(zstd["minimal-cmdline"].clone()).unwrap();
    let log = qemu::boot_kernel_initrd(
        &dir.join("minimal-kernel"),
        &dir.join("minimal-initrd.img"),
        &cmdline,
        DONE_MARKER,
        BOOT_TIMEOUT,
    )
    .unwrap();
    let booted = log
        .find(BOOT_MARKER)
        .unwrap_or_else(|| panic!("no {BOOT_MARKER}:\n{log}"));
    assert!(booted < log.find(DONE_MARKER).unwrap(), "{log}");
}

// ---------------------------------------------------------------------------------------------
// 5. a real registry: one service's column, early cut-off

/// A system with its own kernel (fake), one init image and two services `a` and `b`, each
/// on its own images in a real registry.
struct Columns {
    registry: Registry,
    ws: tempfile::TempDir,
    lkb: Lkb,
}

/// `b`'s image: a base layer and a top layer saying `tag`, gzip'd unless `top` says otherwise.
fn b_image(tag: &str, top: Compression) -> Image {
    ImageBuilder::new()
        .layer(Layer::new().dir("srv").file("srv/base", "b base\n"))
        .layer(
            Layer::new()
                .compression(top)
                .dir("srv")
                .file("srv/which", format!("b-{tag}-content\n")),
        )
        .entrypoint(&["/bin/b"])
        .build()
        .unwrap()
}

const OUT_FILES: [&str; 4] = ["sys-kernel", "sys-initrd.img", "sys-cmdline", "sys.tar"];

impl Columns {
    fn start(files: &str) -> Columns {
        let registry = Registry::start().unwrap();
        let kernel = synthetic::fake_kernel_image().unwrap();
        registry.push_image("lkb/kernel", "1", &kernel).unwrap();
        let init = ImageBuilder::new()
            .layer(
                Layer::new()
                    .dir("sbin")
                    .executable("sbin/init", "#!/bin/sh\n"),
            )
            .build()
            .unwrap();
        registry.push_image("lkb/init", "1", &init).unwrap();
        let a = ImageBuilder::new()
            .layer(Layer::new().dir("srv").file("srv/a", "a content\n"))
            .entrypoint(&["/bin/a"])
            .build()
            .unwrap();
        registry.push_image("lkb/a", "1", &a).unwrap();
        registry
            .push_image("lkb/b", "1", &b_image("v1", Compression::Gzip))
            .unwrap();
        let ws = cli::workspace(&[], &[]).unwrap();
        let lkb = Lkb::new(ws.path()).unwrap();
        let columns = Columns { registry, ws, lkb };
        columns.write_yml(files);
        columns
    }

    fn addr(&self) -> &str {
        self.registry.addr()
    }

    fn reference(&self, name: &str) -> String {
        format!("{}/lkb/{name}:1", self.addr())
    }

    fn write_yml(&self, files: &str) {
        let yml = format!(
            "kernel:\n  image: {kernel}\n  cmdline: \"console=ttyS0\"\n\
             init:\n  - {init}\n\
             services:\n  - name: a\n    image: {a}\n  - name: b\n    image: {b}\n{files}",
            kernel = self.reference("kernel"),
            init = self.reference("init"),
            a = self.reference("a"),
            b = self.reference("b"),
        );
        fs_err::write(self.ws.path().join("sys.yml"), yml).unwrap();
    }

    fn build(&self, extra: &[&str]) -> Run {
        let mut args = vec!["sys.yml", "--format", "kernel+initrd,tar"];
        args.extend_from_slice(extra);
        build_ok(&self.lkb, &args)
    }

    fn out(&self) -> std::path::PathBuf {
        self.ws.path().join("lkb-out")
    }

    /// The moved pins reported by the last build, as `(ref, new digest)`.
    fn moved(run: &Run) -> Vec<(String, String)> {
        run.events()
            .into_iter()
            .filter(|e| e["event"] == "image_moved")
            .map(|e| {
                (
                    e["ref"].as_str().unwrap_or_default().to_owned(),
                    e["new"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

#[test]
fn new_image_for_one_service_reruns_exactly_its_column() {
    let sys = Columns::start("");
    let first = sys.build(&[]);
    let total = summary_u64(&first, "/actions/total");
    assert_eq!(summary_u64(&first, "/actions/executed"), total);
    let before = stats(&sys.out(), &OUT_FILES);
    let old = read_outputs(&sys.out(), &OUT_FILES);

    // `b` gets a new top layer under the same tag; its base layer stays.
    let v2 = b_image("v2", Compression::Gzip);
    sys.registry.push_image("lkb/b", "1", &v2).unwrap();
    let run = sys.build(&["--pull"]);
    let b = sys.reference("b");
    assert_eq!(
        Columns::moved(&run),
        [(b.clone(), v2.digest().to_string())],
        "{}",
        run.stderr
    );
    let top = short(&v2.layers[1].digest);
    assert_eq!(
        executed(&run),
        pairs(&[
            ("fetch", &format!("fetch {top} of {b}")),
            ("unpack", &format!("unpack {top} of {b}")),
            ("merge", &format!("merge {b}")),
            ("bundle", &format!("bundle containers/services/b ({b})")),
            ("segment", "segment services[1] b"),
            ("rootfs-tar", "rootfs tar"),
        ]),
        "{}",
        run.stderr
    );
    assert_eq!(summary_u64(&run, "/actions/total"), total);
    assert_eq!(summary_u64(&run, "/bytes_fetched"), v2.layers[1].size());

    // The kernel and cmdline files are left alone; the initrd and tar carry v2, not v1.
    let after = stats(&sys.out(), &OUT_FILES);
    for name in ["sys-kernel", "sys-cmdline"] {
        assert_eq!(after[name], before[name], "{name} was rewritten");
    }
    let new = read_outputs(&sys.out(), &OUT_FILES);
    for name in ["sys-initrd.img", "sys.tar"] {
        assert_ne!(new[name], old[name], "{name} did not change");
    }
    let initrd = run_tool(
        Command::new("gzip").arg("-dc"),
        Some(&new["sys-initrd.img"]),
    );
    assert!(contains(&initrd, b"b-v2-content"));
    assert!(!contains(&initrd, b"b-v1-content"));
    assert!(contains(&new["sys.tar"], b"b-v2-content"));
    assert!(contains(&initrd, b"a content"), "a is still there");
}

#[test]
fn early_cutoff_stops_the_wave_where_the_bytes_stop_changing() {
    let sys = Columns::start(
        "files:\n  - path: etc/greeting\n    contents: \"hello from lkb\\n\"\n    mode: \"0644\"\n",
    );
    let first = sys.build(&[]);
    let total = summary_u64(&first, "/actions/total");
    let before = stats(&sys.out(), &OUT_FILES);
    let outputs = digest_outputs(&sys.out(), &OUT_FILES);
    let lock_before = fs_err::read_to_string(sys.ws.path().join("lkb.lock")).unwrap();
    let b = sys.reference("b");

    // (a) The same top layer of `b`, re-pushed uncompressed: a new blob (new manifest, new
    // pin), so it is fetched and unpacked; the unpacked tree is the same, so the merge of `b`
    // and everything after it are cache hits.
    let recompressed = b_image("v1", Compression::None);
    let top = &recompressed.layers[1];
    assert_eq!(
        recompressed.layers[0].digest,
        b_image("v1", Compression::Gzip).layers[0].digest
    );
    sys.registry
        .push_image("lkb/b", "1", &recompressed)
        .unwrap();
    let run = sys.build(&["--pull"]);
    assert_eq!(
        Columns::moved(&run),
        [(b.clone(), recompressed.digest().to_string())],
        "{}",
        run.stderr
    );
    assert_eq!(
        executed(&run),
        pairs(&[
            ("fetch", &format!("fetch {} of {b}", short(&top.digest))),
            ("unpack", &format!("unpack {} of {b}", short(&top.digest))),
        ]),
        "{}",
        run.stderr
    );
    assert!(
        finished(&run, true).contains(&("merge".to_owned(), format!("merge {b}"))),
        "{}",
        run.stderr
    );
    assert_eq!(summary_u64(&run, "/actions/total"), total);
    assert_eq!(summary_u64(&run, "/bytes_fetched"), top.size());
    let lock = fs_err::read_to_string(sys.ws.path().join("lkb.lock")).unwrap();
    assert_ne!(lock, lock_before, "the pin moved");
    assert!(lock.contains(&recompressed.digest().to_string()), "{lock}");
    assert_eq!(stats(&sys.out(), &OUT_FILES), before);
    assert_same_files(
        &outputs,
        &digest_outputs(&sys.out(), &OUT_FILES),
        "after re-compressing a layer",
    );

    // (b) The same bytes from a host file instead of inline `contents`: the `files` action
    // re-runs (its params name the kind of content) and writes the same tree, so its segment,
    // the initrd and the tar are cache hits.
    let greeting = sys.ws.path().join("greeting.txt");
    fs_err::write(&greeting, "hello from lkb\n").unwrap();
    sys.write_yml(&format!(
        "files:\n  - path: etc/greeting\n    source: \"{}\"\n    mode: \"0644\"\n",
        greeting.display()
    ));
    let run = sys.build(&["--explain"]);
    assert_eq!(
        executed(&run),
        pairs(&[("files", "files (1 entries)")]),
        "{}",
        run.stderr
    );
    let reason = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "action_finished" && e["kind"] == "files")
        .unwrap();
    assert_eq!(reason["reason_kind"], "params-changed", "{reason}");
    assert!(
        finished(&run, true).contains(&("segment".to_owned(), "segment files".to_owned())),
        "{}",
        run.stderr
    );
    assert_eq!(stats(&sys.out(), &OUT_FILES), before);

    // (c) For contrast, a config-only change that does not reach any bundle (the config's
    // `created` time): the pin moves, and no action's key changes at all.
    let dated = ImageBuilder::new()
        .layer(Layer::new().dir("srv").file("srv/base", "b base\n"))
        .layer(
            Layer::new()
                .compression(Compression::None)
                .dir("srv")
                .file("srv/which", "b-v1-content\n"),
        )
        .entrypoint(&["/bin/b"])
        .created("2031-01-01T00:00:00Z")
        .build()
        .unwrap();
    assert_ne!(dated.config.digest, recompressed.config.digest);
    sys.registry.push_image("lkb/b", "1", &dated).unwrap();
    let run = sys.build(&["--pull"]);
    assert_eq!(
        Columns::moved(&run),
        [(b, dated.digest().to_string())],
        "{}",
        run.stderr
    );
    let ran = executed(&run);
    assert!(ran.is_empty(), "a config-only change ran {ran:?}");
    assert_eq!(stats(&sys.out(), &OUT_FILES), before);
}
