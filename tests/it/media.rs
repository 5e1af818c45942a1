//! Boot media end to end: `lkb build` of `examples/minimal.yml` in every boot-media format
//! (once, shared by the tests here), then each image booted in `qemu-system-x86_64` — SeaBIOS
//! for the BIOS formats, OVMF for the EFI ones — and checked with Debian's own tools as
//! independent oracles (`sfdisk`, `sgdisk`, `fsck.vfat`, `mdir`, `xorriso`, `isoinfo`).
//!
//! `iso-bios` and `iso-efi` put the root file system on the ISO and boot the kernel without an
//! initrd; the example kernel has its CD-ROM and ISO 9660 drivers as modules, so it cannot
//! mount that root. Their tests show what the boot loader is responsible for: the kernel was
//! started, with the command line the format promises (the kernel's own `Command line:` line).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use lkb_tests::cli::{self, Lkb};
use lkb_tests::examples::DONE_MARKER;
use lkb_tests::qemu::{self, OVMF, VmOptions};

/// OVMF under TCG takes a while before the kernel starts; BIOS boots are quicker.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Every boot-media format, built in one `lkb build`.
/// (`kernel+iso` writes `NAME.iso` as `iso-bios` does, so it is built on its own.)
const FORMATS: &str = "uki,raw-bios,raw-efi,iso-bios,iso-efi,iso-efi-initrd,tar";

/// The example's command line (`examples/minimal.yml`).
const CMDLINE: &str = "console=tty0 console=ttyS0";

/// A workspace under the integration tests' scratch dir, with the example layout and
/// `minimal.yml`, and one build of it in every format.
struct Media {
    lkb: Lkb,
    dir: PathBuf,
}

impl Media {
    fn file(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        assert!(path.is_file(), "{} was not written", path.display());
        path
    }
}

/// A fresh workspace in `root`: `lkb.toml` naming the example layout, `minimal.yml`.
pub(crate) fn workspace_in(root: &Path, extra_toml: &str) -> Lkb {
    let layout = cli::example_layout().expect("example OCI layout (examples/images/oci)");
    let _ = fs_err::remove_dir_all(root);
    fs_err::create_dir_all(root.join("examples")).unwrap();
    fs_err::write(
        root.join("lkb.toml"),
        format!(
            "[images]\nlayouts = [{:?}]\n{extra_toml}",
            layout.display().to_string()
        ),
    )
    .unwrap();
    fs_err::copy(
        cli::repo_root().join("examples/minimal.yml"),
        root.join("examples/minimal.yml"),
    )
    .unwrap();
    Lkb {
        store: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
        cwd: root.to_path_buf(),
        env: Vec::new(),
    }
}

fn media() -> &'static Media {
    static MEDIA: OnceLock<Media> = OnceLock::new();
    MEDIA.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media");
        let lkb = workspace_in(&root, "");
        let run = lkb
            .build(&["//examples:minimal", "-f", FORMATS, "--dir", "out"])
            .unwrap();
        assert_eq!(run.code, 0, "lkb build -f {FORMATS}:\n{}", run.stderr);
        Media {
            lkb,
            dir: root.join("out"),
        }
    })
}

/// Runs a checker tool and returns its stdout; fails the test with its output otherwise.
pub(crate) fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Boots with `args` and returns the console log once `marker` appeared; the VM is stopped
/// there (the example systems keep running, their boot media carry no
/// [`lkb_tests::examples::POWEROFF_FLAG`]).
pub(crate) fn boot_until(args: &[OsString], marker: &str) -> String {
    let mut vm = VmOptions::tcg(1024, marker, BOOT_TIMEOUT);
    vm.stop_at_marker = true;
    let report = qemu::run_vm(&vm, args).expect("qemu-system-x86_64 runs");
    assert!(
        report.marker_after.is_some(),
        "{marker:?} not printed within {:?} (VM {}); last lines:\n{}",
        report.elapsed,
        if report.exited { "exited" } else { "killed" },
        report.tail(60)
    );
    report.log
}

pub(crate) fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// A raw drive the guest cannot change (`snapshot=on`), so tests may boot one image at once.
fn drive(path: &Path, extra: &str) -> Vec<OsString> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,snapshot=on{extra}", path.display()).into(),
    ]
}

/// The kernel's own print of the command line it was given.
pub(crate) fn kernel_cmdline(log: &str) -> &str {
    log.lines()
        .find_map(|line| line.split_once("Command line: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("the kernel printed no `Command line:`:\n{log}"))
        .trim()
}

#[test]
fn uki_boots_as_the_firmwares_boot_entry() {
    let m = media();
    // A FAT file system QEMU makes from a directory (vvfat): the UKI is the removable-media
    // boot path, as on a USB stick.
    let esp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    fs_err::create_dir_all(esp.path().join("EFI/BOOT")).unwrap();
    fs_err::copy(
        m.file("minimal.efi"),
        esp.path().join("EFI/BOOT/BOOTX64.EFI"),
    )
    .unwrap();
    let mut vm = args(&["-bios", OVMF, "-drive"]);
    // Read-write vvfat (OVMF wants to write), private to this test's directory.
    vm.push(format!("file=fat:rw:{},format=raw", esp.path().display()).into());
    let log = boot_until(&vm, DONE_MARKER);
    assert!(kernel_cmdline(&log).contains(CMDLINE), "{log}");
}

#[test]
fn raw_efi_boots_under_ovmf_and_passes_the_partition_checkers() {
    let m = media();
    let disk = m.file("minimal-efi.img");
    let disk_str = disk.display().to_string();
    tool("sgdisk", &["-v", &disk_str]);
    let table: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", &disk_str])).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table}");
    assert_eq!(parts[0]["start"], 2048, "{table}");
    assert_eq!(
        parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "an EFI System Partition: {table}"
    );
    let esp = format!("{disk_str}@@1M");
    let listing = tool("mdir", &["-/", "-b", "-i", &esp, "::"]);
    for path in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/Linux/linuxkit.efi",
        "::/loader/loader.conf",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} missing:\n{listing}"
        );
    }
    assert_eq!(
        tool("mtype", &["-i", &esp, "::/loader/loader.conf"]).trim(),
        "timeout 0"
    );
    let mut vm = args(&["-bios", OVMF]);
    vm.extend(drive(&disk, ""));
    boot_until(&vm, DONE_MARKER);
}

#[test]
fn raw_bios_boots_under_seabios_and_passes_the_checkers() {
    let m = media();
    let disk = m.file("minimal-bios.img");
    let disk_str = disk.display().to_string();
    let table: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", &disk_str])).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table}");
    assert_eq!(parts[0]["start"], 2048, "{table}");
    assert_eq!(parts[0]["bootable"], true, "{table}");
    let fs = format!("{disk_str}@@1M");
    let listing = tool("mdir", &["-/", "-a", "-b", "-i", &fs, "::"]);
    for path in [
        "::/syslinux.cfg",
        "::/kernel",
        "::/initrd.img",
        "::/ldlinux.sys",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} missing:\n{listing}"
        );
    }
    let log = boot_until(&drive(&disk, ""), DONE_MARKER);
    assert!(kernel_cmdline(&log).contains(CMDLINE), "{log}");
}

#[test]
fn iso_bios_starts_the_kernel_from_cdrom_and_as_a_hard_disk() {
    let m = media();
    let iso = m.file("minimal.iso");
    let report = tool(
        "xorriso",
        &[
            "-indev",
            &iso.display().to_string(),
            "-report_el_torito",
            "plain",
        ],
    );
    assert!(report.contains("BIOS"), "a BIOS boot entry:\n{report}");
    // The kernel has no initrd and its CD-ROM drivers are modules: it starts, prints the
    // command line the boot loader gave it, and cannot mount /dev/sr0.
    for how in [
        vec!["-cdrom".into(), iso.clone().into_os_string()],
        drive(&iso, ""),
    ] {
        let log = boot_until(&how, "Command line:");
        let cmdline = kernel_cmdline(&log);
        assert!(cmdline.contains(CMDLINE), "{cmdline}");
        assert!(cmdline.contains("root=/dev/sr0"), "{cmdline}");
    }
}

#[test]
fn iso_efi_starts_the_kernel_under_ovmf() {
    let m = media();
    let iso = m.file("minimal-efi.iso");
    let report = tool(
        "xorriso",
        &[
            "-indev",
            &iso.display().to_string(),
            "-report_el_torito",
            "plain",
        ],
    );
    assert!(report.contains("UEFI"), "an EFI boot entry:\n{report}");
    let mut vm = args(&["-bios", OVMF, "-cdrom"]);
    vm.push(iso.into_os_string());
    let log = boot_until(&vm, "Command line:");
    let cmdline = kernel_cmdline(&log);
    assert!(cmdline.contains(CMDLINE), "{cmdline}");
    assert!(cmdline.contains("root=/dev/sr0"), "{cmdline}");
}

#[test]
fn iso_efi_initrd_boots_under_ovmf() {
    let m = media();
    let iso = m.file("minimal-efi-initrd.iso");
    let mut vm = args(&["-bios", OVMF, "-cdrom"]);
    vm.push(iso.into_os_string());
    boot_until(&vm, DONE_MARKER);
}

/// `type size path` of every entry of the tar, as GNU tar lists them.
fn tar_listing(tar: &Path) -> Vec<String> {
    let listing = tool("tar", &["-tvf", &tar.display().to_string()]);
    let mut entries: Vec<String> = listing
        .lines()
        .filter_map(|line| {
            // -rw-r--r-- 0/0  123 2017-04-18 16:30 ./etc/motd
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields
                .get(5)?
                .trim_start_matches("./")
                .trim_end_matches('/');
            let size = if fields[0].starts_with('-') {
                fields[2]
            } else {
                "-"
            };
            (!path.is_empty() && path != ".")
                .then(|| format!("{} {} {size} {path}", fields[0], fields[1]))
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// The same of an ISO as xorriso (libisofs, reading Rock Ridge) lists it, without the boot
/// loader's own files.
fn iso_listing(iso: &Path) -> Vec<String> {
    let found = tool(
        "xorriso",
        &[
            "-indev",
            &iso.display().to_string(),
            "-find",
            "/",
            "-exec",
            "lsdl",
            "--",
        ],
    );
    let mut entries: Vec<String> = found
        .lines()
        .filter_map(|line| {
            // -rw-r--r--    1 0        0             123 Apr 18  2017 '/etc/motd'
            let fields: Vec<&str> = line.split_whitespace().collect();
            let quoted = line.split_once('\'')?.1.split('\'').next()?;
            let path = quoted.trim_start_matches('/');
            let boot_loader = ["isolinux", "EFI"]
                .iter()
                .any(|dir| path == *dir || path.starts_with(&format!("{dir}/")));
            if path.is_empty() || boot_loader {
                return None;
            }
            let size = if fields[0].starts_with('-') {
                fields[4]
            } else {
                "-"
            };
            Some(format!(
                "{} {}/{} {size} {path}",
                fields[0], fields[2], fields[3]
            ))
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn the_isos_hold_the_same_root_file_system_as_the_tar() {
    let m = media();
    let from_tar = tar_listing(&m.file("minimal.tar"));
    assert!(from_tar.len() > 20, "{from_tar:?}");
    // The boot ISOs leave out boot/cmdline (it is in the boot loader's config), as LinuxKit's.
    let without_cmdline: Vec<String> = from_tar
        .iter()
        .filter(|e| !e.ends_with(" boot/cmdline"))
        .cloned()
        .collect();
    for name in ["minimal.iso", "minimal-efi.iso"] {
        assert_eq!(
            iso_listing(&m.file(name)),
            without_cmdline,
            "{name} vs the tar"
        );
    }
    let plain = m
        .lkb
        .build(&[
            "//examples:minimal",
            "-f",
            "kernel+iso",
            "--dir",
            "out-plain",
        ])
        .unwrap()
        .ok()
        .unwrap();
    drop(plain);
    let iso = m.dir.with_file_name("out-plain").join("minimal.iso");
    assert_eq!(iso_listing(&iso), from_tar, "kernel+iso vs the tar");
}

#[test]
fn a_size_too_small_is_refused_and_nothing_is_written() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-small");
    let lkb = workspace_in(&root, "");
    let run = lkb
        .build(&[
            "//examples:minimal",
            "-f",
            "raw-bios",
            "--size",
            "1M",
            "--dir",
            "out",
        ])
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("needs at least"), "{}", run.stderr);
    assert!(!root.join("out/minimal-bios.img").exists());
}

#[test]
fn a_boot_image_without_the_boot_loaders_is_refused_by_path() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-badboot");
    let lkb = workspace_in(
        &root,
        "[boot]\nimage = \"localhost/lkb-examples/getty:1\"\n",
    );
    let run = lkb
        .build(&["//examples:minimal", "-f", "uki", "--dir", "out"])
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("has no file /systemd-boot/linuxx64.efi.stub"),
        "{}",
        run.stderr
    );
    assert!(!root.join("out/minimal.efi").exists());
}

#[test]
fn a_no_op_rebuild_of_every_format_runs_nothing() {
    let m = media();
    let run = m
        .lkb
        .build(&["//examples:minimal", "-f", FORMATS, "--dir", "out"])
        .unwrap()
        .ok()
        .unwrap();
    let summary = run.summary().unwrap();
    assert_eq!(summary["actions"]["executed"], 0, "{summary}");
}

#[test]
fn a_changed_files_entry_reruns_its_segment_the_initrd_and_the_formats_holding_them() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-files");
    let lkb = workspace_in(&root, "");
    let yml = root.join("examples/minimal.yml");
    let base = fs_err::read_to_string(&yml).unwrap();
    let with_motd = |text: &str| {
        format!("{base}files:\n  - path: etc/motd\n    contents: \"{text}\"\n    mode: \"0644\"\n")
    };
    let formats = "raw-bios,raw-efi,iso-bios,iso-efi-initrd";
    fs_err::write(&yml, with_motd("one")).unwrap();
    lkb.build(&["//examples:minimal", "-f", formats, "--dir", "out"])
        .unwrap()
        .ok()
        .unwrap();
    let efi_before = fs_err::read(root.join("out/minimal-efi.img")).unwrap();

    fs_err::write(&yml, with_motd("two")).unwrap();
    let run = lkb
        .build(&["//examples:minimal", "-f", formats, "--dir", "out"])
        .unwrap()
        .ok()
        .unwrap();
    let mut kinds = run.executed_kinds();
    kinds.sort();
    // The files tree and its segment, the initrd, and each format's own steps: nothing
    // upstream (no fetch, unpack, merge, bundle, kernel), no other segment.
    assert_eq!(
        kinds,
        [
            "files", "initrd", "iso", "iso", "raw-bios", "raw-efi", "segment", "uki"
        ],
        "{}",
        run.stderr
    );
    assert_ne!(
        fs_err::read(root.join("out/minimal-efi.img")).unwrap(),
        efi_before
    );
}

#[test]
fn lkb_run_boots_a_bios_disk_and_a_uki_choosing_the_firmware_by_name() {
    let m = media();
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for image in ["minimal-bios.img", "minimal.efi"] {
        // A copy: `lkb run` opens the disk read-write, and other tests boot the same file.
        let copy = scratch.path().join(image);
        fs_err::copy(m.file(image), &copy).unwrap();
        let path = copy.display().to_string();
        let run = m
            .lkb
            .run(&[
                "run",
                "qemu",
                "--accel",
                "tcg",
                "--networking",
                "none",
                "--until",
                DONE_MARKER,
                "--timeout",
                "300s",
                &path,
            ])
            .unwrap();
        assert_eq!(run.code, 0, "lkb run {image}:\n{}", run.stderr);
        assert!(run.stdout.contains("LKB-EXAMPLE-BOOTED"), "{}", run.stdout);
    }
}
