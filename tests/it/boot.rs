//! End to end: `lkb build` of the example systems, then a real boot of what it wrote in
//! `qemu-system-x86_64 -accel tcg`, plus the cache and reproducibility promises that make those
//! outputs worth having.
//!
//! Every test works in a scratch copy of the repository's workspace (an `lkb.toml` naming the
//! example OCI layout, and `examples/*.yml`) with a private store, so tests neither touch the
//! repository's `lkb.lock` / `lkb-out` nor share cache state.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lkb_tests::cli::{self, Lkb, Run};
use lkb_tests::examples::{BOOT_MARKER, DONE_MARKER};
use lkb_tests::qemu::{self, BootOptions};

/// TCG is slow on a loaded 2-core machine; the examples need ~5 s when idle.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A scratch workspace: `lkb.toml` naming the example layout (built on first use) and a copy
/// of the repository's `examples/*.yml`.
fn example_workspace() -> tempfile::TempDir {
    let layout = cli::example_layout().expect("example OCI layout (examples/images/oci)");
    let ws = cli::workspace(&[&layout], &[]).expect("scratch workspace");
    let examples = ws.path().join("examples");
    fs_err::create_dir(&examples).unwrap();
    for entry in fs_err::read_dir(cli::repo_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            fs_err::copy(&path, examples.join(path.file_name().unwrap())).unwrap();
        }
    }
    ws
}

/// The three files `lkb build` writes for `name` with the default format.
struct KernelInitrd {
    kernel: PathBuf,
    initrd: PathBuf,
    cmdline: PathBuf,
}

impl KernelInitrd {
    fn in_dir(dir: &Path, name: &str) -> KernelInitrd {
        KernelInitrd {
            kernel: dir.join(format!("{name}-kernel")),
            initrd: dir.join(format!("{name}-initrd.img")),
            cmdline: dir.join(format!("{name}-cmdline")),
        }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.kernel, &self.initrd, &self.cmdline]
    }

    fn cmdline_text(&self) -> String {
        fs_err::read_to_string(&self.cmdline).unwrap()
    }
}

/// Checks the JSON summary names exactly the three expected files and returns them.
fn built_outputs(run: &Run, dir: &Path, name: &str) -> KernelInitrd {
    let summary = run.summary().unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    let outputs = KernelInitrd::in_dir(dir, name);
    let listed: Vec<PathBuf> = summary["outputs"]
        .as_array()
        .expect("summary.outputs")
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap()))
        .collect();
    let expected: Vec<PathBuf> = outputs.all().iter().map(|p| p.to_path_buf()).collect();
    assert_eq!(listed, expected, "summary outputs");
    for path in outputs.all() {
        let meta = fs_err::metadata(path).unwrap();
        assert!(
            meta.is_file() && meta.len() > 0,
            "{} is empty",
            path.display()
        );
    }
    outputs
}

/// Boots the outputs and returns the serial console log once the example init has printed
/// everything and powered the VM off.
fn boot(outputs: &KernelInitrd) -> String {
    let cmdline = outputs.cmdline_text();
    let report = qemu::boot(&BootOptions::new(
        &outputs.kernel,
        &outputs.initrd,
        &cmdline,
        DONE_MARKER,
        BOOT_TIMEOUT,
    ))
    .expect("qemu-system-x86_64 runs");
    assert!(
        report.marker_after.is_some(),
        "{DONE_MARKER} not printed within {:?} (VM {}); last lines:\n{}",
        report.elapsed,
        if report.exited { "exited" } else { "killed" },
        report.tail(60)
    );
    assert!(
        report.exited,
        "the init's `poweroff -f` did not stop the VM; last lines:\n{}",
        report.tail(30)
    );
    let log = report.log;
    let booted = log
        .find(BOOT_MARKER)
        .unwrap_or_else(|| panic!("no {BOOT_MARKER}:\n{log}"));
    let done = log.find(DONE_MARKER).unwrap();
    assert!(booted < done, "{BOOT_MARKER} after {DONE_MARKER}:\n{log}");
    // The kernel saw the cmdline file lkb wrote (the harness appends the serial console).
    let seen = log
        .lines()
        .find_map(|l| without_printk(l).strip_prefix("LKB-CMDLINE "))
        .unwrap_or_else(|| panic!("no LKB-CMDLINE line:\n{log}"));
    assert_eq!(seen.trim(), qemu::full_cmdline(&cmdline), "{log}");
    log
}

/// A console line without a kernel message (`[    1.942021] tsc: ...`) that the kernel
/// printed into the middle of it: the guest's `echo`/`ls` output and printk share the serial
/// port, and a printk runs to the end of the line.
fn without_printk(line: &str) -> &str {
    for (at, _) in line.match_indices('[') {
        let rest = &line[at + 1..];
        if let Some(end) = rest.find(']') {
            let stamp = &rest[..end];
            if stamp.contains('.')
                && stamp.bytes().any(|b| b.is_ascii_digit())
                && stamp
                    .bytes()
                    .all(|b| b == b' ' || b == b'.' || b.is_ascii_digit())
            {
                return &line[..at];
            }
        }
    }
    line
}

/// `(kind, bundle)` of every `LKB-BUNDLE kind name [id]` line the init printed, in order.
fn bundles(log: &str) -> Vec<(String, String)> {
    log.lines()
        .map(without_printk)
        .filter_map(|l| l.strip_prefix("LKB-BUNDLE "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let kind = words.next().unwrap_or_default().to_string();
            let name = words.next().unwrap_or_default().to_string();
            (kind, name)
        })
        .collect()
}

/// The names printed between the boot marker and the first `LKB-BUNDLE` line by the init's
/// `ls /containers/onboot /containers/services` (the console is a tty, so busybox may print
/// several names per line; `dir:` headings are left out).
fn containers_listing(log: &str) -> Vec<String> {
    let start = log.find(BOOT_MARKER).unwrap();
    log[start..]
        .lines()
        .skip(1)
        .map(without_printk)
        .take_while(|l| !l.starts_with("LKB-BUNDLE"))
        .filter(|l| !l.starts_with("LKB-") && !l.trim_end().ends_with(':'))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect()
}

fn assert_booted_bundles(log: &str, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(bundles(log), expected, "bundles under /containers:\n{log}");
    let listing = containers_listing(log);
    for (_, name) in &expected {
        assert!(
            listing.iter().any(|l| l == name),
            "`ls /containers/...` does not show {name}: {listing:?}\n{log}"
        );
    }
}

/// Every actually executed action as `(kind, label)`.
fn executed(run: &Run) -> Vec<(String, String)> {
    run.events()
        .into_iter()
        .filter(|v| v["event"] == "action_finished" && v["cached"] == false)
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_string(),
                v["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The initrd, all gzip members decompressed back to back.
fn decompressed_initrd(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(fs_err::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn minimal_example_boots_in_qemu() {
    let ws = example_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["//examples:minimal"]).unwrap().ok().unwrap();
    let outputs = built_outputs(&run, &ws.path().join("lkb-out/examples"), "minimal");
    assert_eq!(outputs.cmdline_text(), "console=tty0 console=ttyS0");

    let log = boot(&outputs);
    assert_booted_bundles(&log, &[("onboot", "000-dhcpcd"), ("services", "getty")]);
}

#[test]
fn sshd_example_boots_then_rebuilds_only_what_a_files_change_touches() {
    let ws = example_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let out_dir = ws.path().join("lkb-out/examples");

    let first = lkb.build(&["//examples:sshd"]).unwrap().ok().unwrap();
    let sshd = built_outputs(&first, &out_dir, "sshd");
    let first_summary = first.summary().unwrap();
    assert_eq!(
        first_summary["actions"]["cached"], 0,
        "fresh store, nothing can be cached: {first_summary}"
    );

    let log = boot(&sshd);
    assert_booted_bundles(
        &log,
        &[
            ("onboot", "000-rngd1"),
            ("services", "dhcpcd"),
            ("services", "getty"),
            ("services", "rngd"),
            ("services", "sshd"),
            ("onshutdown", "000-goodbye"),
        ],
    );

    // A second build of the same target does no work at all.
    let initrd_before = fs_err::read(&sshd.initrd).unwrap();
    let again = lkb.build(&["//examples:sshd"]).unwrap().ok().unwrap();
    let summary = again.summary().unwrap();
    assert_eq!(
        summary["actions"]["executed"], 0,
        "{summary}\n{}",
        again.stderr
    );
    assert_eq!(
        summary["actions"]["cached"], summary["actions"]["total"],
        "{summary}"
    );
    assert_eq!(
        summary["actions"]["total"],
        first_summary["actions"]["total"]
    );
    assert_eq!(fs_err::read(&sshd.initrd).unwrap(), initrd_before);

    // A copy of sshd.yml that differs only in the contents of one `files:` entry: the files
    // tree and its segment run again (the output step writes the initrd from the segments); the kernel, init and every
    // bundle (and their segments) come from the cache, although the target has a new name.
    let original = fs_err::read_to_string(ws.path().join("examples/sshd.yml")).unwrap();
    let old_motd = r#"contents: "Built by lkb from examples/sshd.yml\n""#;
    assert!(
        original.contains(old_motd),
        "examples/sshd.yml changed shape:\n{original}"
    );
    let new_motd_text = "Built by lkb from a copy of examples/sshd.yml";
    let changed = original.replace(old_motd, &format!(r#"contents: "{new_motd_text}\n""#));
    fs_err::write(ws.path().join("examples/sshd-motd.yml"), changed).unwrap();

    let third = lkb.build(&["//examples:sshd-motd"]).unwrap().ok().unwrap();
    let motd = built_outputs(&third, &out_dir, "sshd-motd");
    let ran = executed(&third);
    let kinds: Vec<&str> = ran.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["files", "segment"],
        "executed: {ran:#?}\n{}",
        third.stderr
    );
    assert_eq!(ran[1].1, "segment files", "the one re-run segment: {ran:?}");
    let summary = third.summary().unwrap();
    assert_eq!(summary["actions"]["executed"], 2, "{summary}");
    assert_eq!(
        summary["actions"]["total"],
        first_summary["actions"]["total"]
    );

    // The change reached the image, and nothing else did.
    assert_eq!(
        fs_err::read(&motd.kernel).unwrap(),
        fs_err::read(&sshd.kernel).unwrap()
    );
    assert_eq!(motd.cmdline_text(), sshd.cmdline_text());
    let old_initrd = decompressed_initrd(&sshd.initrd);
    let new_initrd = decompressed_initrd(&motd.initrd);
    assert!(contains(&new_initrd, new_motd_text.as_bytes()));
    assert!(!contains(&old_initrd, new_motd_text.as_bytes()));
    // The earlier target's files are untouched by building the copy.
    assert_eq!(fs_err::read(&sshd.initrd).unwrap(), initrd_before);
}

/// Runs `cmd` under `sh -c 'umask U; exec lkb …'`, keeping its directory and environment.
fn with_umask(cmd: &Command, umask: &str) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
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

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every file below `dir` (relative path → bytes).
fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, fs_err::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn builds_are_byte_identical_across_stores_dirs_umask_and_tz() {
    let builds = [("022", "UTC"), ("077", "Pacific/Chatham")].map(|(umask, tz)| {
        let ws = example_workspace();
        let lkb = Lkb::new(ws.path())
            .unwrap()
            .env("TZ", tz)
            .env("LC_ALL", "C");
        let cmd = lkb.command(&["--progress=json", "build", "//examples:minimal"]);
        let out = with_umask(&cmd, umask).output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
        .ok()
        .unwrap();
        let outputs = built_outputs(&run, &ws.path().join("lkb-out/examples"), "minimal");
        let summary = run.summary().unwrap();
        assert_eq!(summary["actions"]["cached"], 0, "fresh store: {summary}");
        (ws, lkb, outputs, umask)
    });

    // The umask really applied: directories lkb created carry it.
    for (ws, lkb, _, umask) in &builds {
        let expected = if *umask == "077" { 0o700 } else { 0o755 };
        assert_eq!(
            mode_of(&lkb.store.path().join("store-v1")),
            expected,
            "store dir under umask {umask}"
        );
        assert_eq!(
            mode_of(&ws.path().join("lkb-out/examples")),
            expected,
            "output dir under umask {umask}"
        );
    }

    let (a, b) = (&builds[0], &builds[1]);
    assert_ne!(a.0.path(), b.0.path());
    assert_ne!(a.1.store.path(), b.1.store.path());
    for (x, y) in a.2.all().into_iter().zip(b.2.all()) {
        let (bx, by) = (fs_err::read(x).unwrap(), fs_err::read(y).unwrap());
        assert!(
            bx == by,
            "{} ({} bytes) and {} ({} bytes) differ",
            x.display(),
            bx.len(),
            y.display(),
            by.len()
        );
    }
    // Same for everything else lkb wrote into the workspaces (the pins in lkb.lock too).
    assert_eq!(read_tree(a.0.path()), read_tree(b.0.path()));
}
