//! `lkb run qemu`: boots what a build wrote (or a label, built first) in real QEMU with TCG,
//! and ends on a guest power-off, an `--until` match or a `--timeout`.

use lkb_tests::cli::{self, Lkb};
use lkb_tests::examples::{BOOT_MARKER, DONE_MARKER, POWEROFF_FLAG};
use sha2::Digest as _;

/// A scratch workspace with the repository's example ymls and the example layout.
fn example_workspace() -> tempfile::TempDir {
    let layout = cli::example_layout().expect("example OCI layout (examples/images/oci)");
    let ws = cli::workspace(&[&layout], &[]).expect("scratch workspace");
    let examples = ws.path().join("examples");
    fs_err::create_dir(&examples).unwrap();
    fs_err::copy(
        cli::repo_root().join("examples/minimal.yml"),
        examples.join("minimal.yml"),
    )
    .unwrap();
    ws
}

/// `lkb run qemu` with TCG, 512 MB and a 10-minute limit, then `args`.
fn boot(lkb: &Lkb, args: &[&str]) -> lkb_tests::cli::Run {
    let mut all = vec![
        "run",
        "qemu",
        "--accel",
        "tcg",
        "--mem",
        "512",
        "--timeout",
        "10m",
    ];
    all.extend_from_slice(args);
    lkb.run(&all).unwrap()
}

#[test]
fn run_boots_a_label_and_a_built_prefix_and_ends_on_until_power_off_or_timeout() {
    let ws = example_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let log = ws.path().join("console.log");
    let log_arg = log.display().to_string();

    // A label: built first, then booted until the init says it is done.
    let run = boot(
        &lkb,
        &[
            "--until",
            DONE_MARKER,
            "--console-log",
            &log_arg,
            "//examples:minimal",
        ],
    );
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains(BOOT_MARKER), "{}", run.stdout);
    assert!(run.stderr.contains("matched --until"), "{}", run.stderr);
    let logged = fs_err::read_to_string(&log).unwrap();
    assert!(logged.contains(BOOT_MARKER), "{logged}");
    let prefix = ws.path().join("lkb-out/examples/minimal");
    assert!(
        ws.path()
            .join("lkb-out/examples/minimal-initrd.img")
            .is_file()
    );

    // The prefix of what the build wrote, without --until, with a disk that does not exist
    // yet and user networking with a published port: told so on its command line, the
    // example init powers the VM off once its services run, which ends `run` with success.
    let cmdline_file = ws.path().join("lkb-out/examples/minimal-cmdline");
    let cmdline = fs_err::read_to_string(&cmdline_file).unwrap();
    fs_err::write(&cmdline_file, format!("{cmdline} {POWEROFF_FLAG}")).unwrap();
    let prefix_arg = prefix.display().to_string();
    let disk = ws.path().join("disk.qcow2");
    let disk_arg = format!("file={},size=64M", disk.display());
    let run = boot(
        &lkb,
        &["--disk", &disk_arg, "--publish", "0:22", &prefix_arg],
    );
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual-size"], 64 << 20, "{info}");
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.contains(DONE_MARKER), "{}", run.stdout);

    // A pattern that never appears: an error with the console's last lines, whether the
    // guest powers off first or the timeout comes first.
    let run = boot(&lkb, &["--until", "NEVER-PRINTED", &prefix_arg]);
    assert_eq!(run.code, 2, "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("the last lines"), "{}", run.stderr);
    assert!(run.stderr.contains(DONE_MARKER), "{}", run.stderr);
}

#[test]
fn run_names_what_it_looked_for_and_what_to_install() {
    let ws = example_workspace();
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.run(&["run", "qemu", "out/nothing"]).unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("out/nothing-kernel") && run.stderr.contains("out/nothing-initrd.img"),
        "{}",
        run.stderr
    );

    fs_err::create_dir(ws.path().join("out")).unwrap();
    fs_err::write(ws.path().join("out/a-kernel"), b"k").unwrap();
    fs_err::write(ws.path().join("out/a-initrd.img"), b"i").unwrap();
    let run = lkb
        .run(&[
            "run",
            "qemu",
            "--qemu",
            "/nonexistent/qemu",
            "--accel",
            "tcg",
            "out/a",
        ])
        .unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("qemu-system-x86"), "{}", run.stderr);

    let run = lkb.run(&["run", "hyperkit", "out/a"]).unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("qemu only"), "{}", run.stderr);
}

/// Pseudo-random bytes that do not compress.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let block = sha2::Sha256::digest([seed.to_le_bytes(), counter.to_le_bytes()].concat());
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

/// A segment with more file data than one gzip member takes is several complete archives, each
/// its own member: the kernel unpacks them all (the guest boots to its end), and the initrd
/// holds more archives than there are segments.
#[test]
fn an_initrd_with_a_multi_member_segment_boots() {
    let ws = example_workspace();
    let mut yml = fs_err::read_to_string(ws.path().join("examples/minimal.yml")).unwrap();
    yml.push_str("files:\n");
    for i in 0..3 {
        let name = format!("blob{i}.bin");
        // The last file is larger than a member: its member is compressed in pieces on every
        // core and joined into one deflate stream, and the kernel must read that too.
        let size = if i == 2 { 40 << 20 } else { 9 << 20 };
        fs_err::write(ws.path().join("examples").join(&name), noise(i, size)).unwrap();
        yml.push_str(&format!("  - path: var/big/{name}\n    source: {name}\n"));
    }
    fs_err::write(ws.path().join("examples/big.yml"), yml).unwrap();
    let lkb = Lkb::new(ws.path()).unwrap();
    let built = lkb.build(&["//examples:big"]).unwrap().ok().unwrap();
    let segments = built
        .events()
        .into_iter()
        .filter(|e| e["event"] == "action_finished" && e["kind"] == "segment")
        .count();
    let initrd = fs_err::read(ws.path().join("lkb-out/examples/big-initrd.img")).unwrap();
    let mut plain = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&initrd[..]),
        &mut plain,
    )
    .unwrap();
    let archives = cli::split_cpio_archives(&plain).unwrap();
    assert_eq!(
        archives.len(),
        segments + 2,
        "the files segment is three archives: two 9 MiB files do not fit in one 16 MiB run"
    );

    let prefix = ws.path().join("lkb-out/examples/big").display().to_string();
    let run = boot(&lkb, &["--until", DONE_MARKER, &prefix]);
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(
        !run.stdout.contains("Initramfs unpacking failed"),
        "{}",
        run.stdout
    );
}
