//! The VM and cloud formats end to end: one `lkb build` of `examples/minimal.yml` as
//! `qcow2-bios`, `qcow2-efi`, `aws`, `vhd`, `vmdk`, `gcp` (and `raw-efi`, which `qcow2-efi`
//! wraps), then `dynamic-vhd` on its own (it writes `NAME.vhd` as `vhd` does).
//!
//! `qemu-img` (Debian's qemu-utils) is the oracle: `check` and `info` accept every image, and
//! `convert -O raw` of each gives back exactly the raw disk it wraps — `aws`'s `NAME.raw` for
//! the BIOS ones, `raw-efi`'s disk for `qcow2-efi`. GNU tar lists `gcp`'s archive and
//! extracts the same raw disk. Then each container boots in qemu through qemu's own driver
//! for it (`format=qcow2|vpc|vmdk`) to the example's marker: SeaBIOS for the BIOS disks, OVMF
//! for `qcow2-efi`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lkb_tests::cli::Lkb;
use lkb_tests::examples::DONE_MARKER;
use lkb_tests::qemu::OVMF;

use crate::media::{args, boot_until, tool, workspace_in};

const FORMATS: &str = "qcow2-bios,qcow2-efi,aws,vhd,vmdk,gcp,raw-efi";

struct Vms {
    lkb: Lkb,
    root: PathBuf,
    dir: PathBuf,
}

impl Vms {
    fn file(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        assert!(path.is_file(), "{} was not written", path.display());
        path
    }
}

fn vms() -> &'static Vms {
    static VMS: OnceLock<Vms> = OnceLock::new();
    VMS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-formats");
        let lkb = workspace_in(&root, "");
        for (formats, dir) in [(FORMATS, "out"), ("dynamic-vhd", "out-dynamic")] {
            let run = lkb
                .build(&["//examples:minimal", "-f", formats, "--dir", dir])
                .unwrap();
            assert_eq!(run.code, 0, "lkb build -f {formats}:\n{}", run.stderr);
        }
        Vms {
            lkb,
            dir: root.join("out"),
            root,
        }
    })
}

fn info(image: &Path, format: &str) -> serde_json::Value {
    let path = image.display().to_string();
    serde_json::from_str(&tool(
        "qemu-img",
        &["info", "--output=json", "-f", format, &path],
    ))
    .unwrap()
}

/// `qemu-img check` (formats that have one) and `convert -O raw`: the raw bytes.
fn as_raw(image: &Path, format: &str) -> Vec<u8> {
    let path = image.display().to_string();
    if format != "vpc" {
        tool("qemu-img", &["check", "-f", format, &path]);
    }
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let raw = scratch.path().join("raw");
    tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            format,
            "-O",
            "raw",
            &path,
            &raw.display().to_string(),
        ],
    );
    fs_err::read(raw).unwrap()
}

fn drive(path: &Path, format: &str) -> Vec<OsString> {
    vec![
        "-drive".into(),
        format!("file={},format={format},snapshot=on", path.display()).into(),
    ]
}

#[test]
fn qemu_img_accepts_every_container_and_reads_back_the_raw_disk() {
    let v = vms();
    let bios = fs_err::read(v.file("minimal.raw")).unwrap();
    assert_eq!(bios.len(), 1 << 30, "aws: --size's default, 1024M");
    assert_eq!(&bios[510..512], &[0x55, 0xaa]);

    for (file, format, kind) in [
        ("minimal.qcow2", "qcow2", "qcow2"),
        ("minimal.vhd", "vpc", "vpc"),
        ("minimal.vmdk", "vmdk", "vmdk"),
    ] {
        let path = v.file(file);
        let info = info(&path, format);
        assert_eq!(info["format"], kind, "{file}: {info}");
        assert_eq!(info["virtual-size"], 1u64 << 30, "{file}: {info}");
        assert!(as_raw(&path, format) == bios, "{file} is not the aws disk");
    }
    let qcow2 = info(&v.file("minimal.qcow2"), "qcow2");
    assert_eq!(qcow2["format-specific"]["data"]["compat"], "1.1", "{qcow2}");
    let vmdk = info(&v.file("minimal.vmdk"), "vmdk");
    assert_eq!(
        vmdk["format-specific"]["data"]["create-type"], "streamOptimized",
        "{vmdk}"
    );
    // Only the data is stored: a 1 GiB disk of a few MB.
    for file in ["minimal.qcow2", "minimal.vmdk"] {
        let len = fs_err::metadata(v.file(file)).unwrap().len();
        assert!(len < 256 << 20, "{file}: {len} bytes");
    }

    let dynamic = v.root.join("out-dynamic/minimal.vhd");
    let info_dynamic = info(&dynamic, "vpc");
    assert_eq!(info_dynamic["virtual-size"], 1u64 << 30, "{info_dynamic}");
    assert!(
        as_raw(&dynamic, "vpc") == bios,
        "dynamic-vhd is not the aws disk"
    );
    assert!(fs_err::metadata(&dynamic).unwrap().len() < 256 << 20);

    let efi = fs_err::read(v.file("minimal-efi.img")).unwrap();
    let qcow2_efi = v.file("minimal-efi.qcow2");
    assert_eq!(info(&qcow2_efi, "qcow2")["virtual-size"], efi.len() as u64);
    assert!(
        as_raw(&qcow2_efi, "qcow2") == efi,
        "qcow2-efi is not raw-efi"
    );
}

#[test]
fn gcp_is_one_gnu_sparse_disk_raw_equal_to_the_aws_disk() {
    let v = vms();
    let archive = v.file("minimal.img.tar.gz").display().to_string();
    let listing = tool("tar", &["-tvzf", &archive]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(lines[0].ends_with(" disk.raw"), "{listing}");
    assert!(lines[0].contains(" 1073741824 "), "a whole GiB: {listing}");
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dest = scratch.path().display().to_string();
    tool("tar", &["-xzSf", &archive, "-C", &dest]);
    assert!(
        fs_err::read(scratch.path().join("disk.raw")).unwrap()
            == fs_err::read(v.file("minimal.raw")).unwrap(),
        "gcp's disk.raw is not the aws disk"
    );
}

#[test]
fn qcow2_bios_boots_under_seabios() {
    boot_until(&drive(&vms().file("minimal.qcow2"), "qcow2"), DONE_MARKER);
}

#[test]
fn qcow2_efi_boots_under_ovmf() {
    let mut vm = args(&["-bios", OVMF]);
    vm.extend(drive(&vms().file("minimal-efi.qcow2"), "qcow2"));
    boot_until(&vm, DONE_MARKER);
}

#[test]
fn vhd_boots_through_qemus_vpc_driver() {
    boot_until(&drive(&vms().file("minimal.vhd"), "vpc"), DONE_MARKER);
}

#[test]
fn vmdk_boots_through_qemus_vmdk_driver() {
    boot_until(&drive(&vms().file("minimal.vmdk"), "vmdk"), DONE_MARKER);
}

/// `gcp`'s `disk.raw` is byte-identical to this disk (the test above), so this boot covers it.
#[test]
fn aws_raw_disk_boots_under_seabios() {
    boot_until(&drive(&vms().file("minimal.raw"), "raw"), DONE_MARKER);
}

#[test]
fn a_changed_files_entry_rewraps_only_the_disks_that_hold_it() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-files");
    let lkb = workspace_in(&root, "");
    let yml = root.join("examples/minimal.yml");
    let base = fs_err::read_to_string(&yml).unwrap();
    let with_motd = |text: &str| {
        format!("{base}files:\n  - path: etc/motd\n    contents: \"{text}\"\n    mode: \"0644\"\n")
    };
    let build = |text: &str| {
        fs_err::write(&yml, with_motd(text)).unwrap();
        lkb.build(&["//examples:minimal", "-f", "qcow2-efi,vmdk", "--dir", "out"])
            .unwrap()
            .ok()
            .unwrap()
    };
    build("one");
    let before = fs_err::read(root.join("out/minimal-efi.qcow2")).unwrap();
    let run = build("two");
    let mut kinds = run.executed_kinds();
    kinds.sort();
    // The files tree, its segment and the initrd; the UKI and the ESP disk for qcow2-efi, the
    // FAT disk for vmdk; one wrap each. Nothing upstream of the initrd.
    assert_eq!(
        kinds,
        [
            "convert", "convert", "files", "initrd", "raw-bios", "raw-efi", "segment", "uki"
        ],
        "{}",
        run.stderr
    );
    assert_ne!(
        fs_err::read(root.join("out/minimal-efi.qcow2")).unwrap(),
        before
    );
    // And a rebuild runs nothing.
    let again = build("two");
    assert_eq!(again.summary().unwrap()["actions"]["executed"], 0);
}

#[test]
fn a_size_too_small_for_a_vm_disk_names_the_minimum() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-small");
    let lkb = workspace_in(&root, "");
    for format in ["qcow2-bios", "vhd", "gcp"] {
        let run = lkb
            .build(&[
                "//examples:minimal",
                "-f",
                format,
                "--size",
                "4M",
                "--dir",
                "out",
            ])
            .unwrap();
        if format == "gcp" {
            // GCE takes whole GiB: 4M is rounded up and fits.
            assert_eq!(run.code, 0, "{format}: {}", run.stderr);
            continue;
        }
        assert_eq!(run.code, 2, "{format}: {}", run.stderr);
        assert!(run.stderr.contains("needs at least"), "{}", run.stderr);
        assert!(run.stderr.contains("MiB"), "{}", run.stderr);
    }
    assert!(!root.join("out/minimal.qcow2").exists());
    assert!(!root.join("out/minimal.vhd").exists());
}

#[test]
fn a_no_op_rebuild_of_the_vm_formats_runs_nothing() {
    let v = vms();
    let run = v
        .lkb
        .build(&["//examples:minimal", "-f", FORMATS, "--dir", "out"])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(run.summary().unwrap()["actions"]["executed"], 0);
}

/// A 25 GiB disk of a small system costs what its content costs: the sized `raw-bios` blob
/// stops at its last data byte, and the dynamic VHD stores only non-zero blocks. Counted in
/// bytes (the store and the output), not timed.
#[test]
fn a_25_gib_dynamic_vhd_of_a_small_system_is_a_few_megabytes() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-25g");
    let lkb = workspace_in(&root, "");
    let run = lkb
        .build(&[
            "//examples:minimal",
            "-f",
            "dynamic-vhd,raw-bios",
            "--size",
            "25G",
            "--dir",
            "out",
        ])
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let vhd = root.join("out/minimal.vhd");
    let info = info(&vhd, "vpc");
    assert_eq!(info["virtual-size"], 25u64 << 30, "{info}");
    let len = fs_err::metadata(&vhd).unwrap().len();
    assert!(len < 64 << 20, "{len} bytes");
    // The raw disk has the full length, as a hole.
    let raw = fs_err::metadata(root.join("out/minimal-bios.img")).unwrap();
    assert_eq!(raw.len(), 25 << 30);
    use std::os::unix::fs::MetadataExt as _;
    assert!(raw.blocks() * 512 < 64 << 20, "{} blocks", raw.blocks());
    // Neither the store's blobs nor the outputs hold the zeros.
    let stored: u64 = crate::build_registry::walk(lkb.store.path())
        .iter()
        .filter_map(|p| fs_err::metadata(lkb.store.path().join(p)).ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum();
    assert!(stored < 512 << 20, "the store holds {stored} bytes");
    let path = vhd.display().to_string();
    let compare = tool(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "vpc",
            &root.join("out/minimal-bios.img").display().to_string(),
            &path,
        ],
    );
    assert!(compare.contains("Images are identical"), "{compare}");
}
