//! Boots unified kernel images made by `lkb_disk::uki` under OVMF. The example init prints
//! `LKB-CMDLINE <its command line>` and `LKB-EXAMPLE-DONE` on the serial console and powers
//! off. FAT file systems are made for these tests by `mkfs.vfat` and `mcopy` (independent
//! tools), so only the UKI and the partition table are under test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use lkb_disk::gpt::{self, Gpt, Guid, Partition};
use lkb_disk::uki::{self, Uki};
use lkb_disk::{Data, FileSink, Sink};

/// Debian 12's systemd-boot-efi 252, unpacked, and the example kernel and initrd.
const BOOTKIT: &str = "/tmp/bootkit";
const STUB: &str = "debian-bootloaders/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const SYSTEMD_BOOT: &str = "debian-bootloaders/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

fn fixture(name: &str) -> Data {
    let path = Path::new(BOOTKIT).join(name);
    let len = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (boot fixture missing)", path.display()))
        .len();
    Data::File { path, len }
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?}: {status}");
}

/// The example kernel and initrd as `dir/linux.efi`.
fn write_uki(dir: &Path, osrel: &[u8], cmdline: &[u8]) -> PathBuf {
    let plan = uki::plan(Uki {
        stub: fixture(STUB),
        osrel: osrel.to_vec(),
        cmdline: cmdline.to_vec(),
        uname: None,
        linux: fixture("minimal-kernel"),
        initrd: fixture("minimal-initrd.img"),
        ucode: None,
    })
    .unwrap();
    let path = dir.join("linux.efi");
    let mut sink = FileSink::new(std::fs::File::create(&path).unwrap());
    plan.write(&mut sink).unwrap();
    sink.finish().unwrap();
    path
}

/// A FAT file system of `kib` KiB (mkfs.vfat picks the FAT type) holding `files` (source,
/// `::/dest`), in directories `dirs`.
fn fat(path: &Path, kib: u64, dirs: &[&str], files: &[(&Path, &str)]) {
    run(Command::new("mkfs.vfat")
        .arg("-C")
        .arg(path)
        .arg(kib.to_string()));
    if !dirs.is_empty() {
        run(Command::new("mmd").arg("-i").arg(path).args(dirs));
    }
    for (from, to) in files {
        run(Command::new("mcopy").arg("-i").arg(path).arg(from).arg(to));
    }
}

/// Boots `disk` under OVMF and returns the serial console, which must show the init finishing.
fn boot(disk: &Path) -> String {
    let out = Command::new("timeout")
        .arg("300")
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot"])
        .args(["-bios", OVMF, "-drive"])
        .arg(format!("file={},format=raw", disk.display()))
        .output()
        .expect("qemu-system-x86_64");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        console.contains("LKB-EXAMPLE-DONE"),
        "no LKB-EXAMPLE-DONE on the serial console ({}):\n{console}",
        out.status
    );
    console
}

/// The firmware starts the UKI itself, as the removable-media boot file of a whole-disk FAT.
#[test]
fn ovmf_boots_the_uki_as_the_default_boot_file() {
    let dir = tempfile::tempdir().unwrap();
    let efi = write_uki(
        dir.path(),
        b"ID=lkb\nNAME=\"lkb example\"\nVERSION_ID=1\n",
        b"console=tty0 console=ttyS0",
    );
    let esp = dir.path().join("esp.img");
    fat(
        &esp,
        32 * 1024,
        &["::/EFI", "::/EFI/BOOT"],
        &[(&efi, "::/EFI/BOOT/BOOTX64.EFI")],
    );
    let console = boot(&esp);
    assert!(
        console.contains("LKB-CMDLINE console=tty0 console=ttyS0\r"),
        "the UKI's command line reached the kernel:\n{console}"
    );
}

/// LinuxKit's `raw-efi` layout (tools/mkimage-raw-efi/make-efi): GPT, one ESP at LBA 2048
/// (type EF00, name "EFI System", attribute bit 2) holding systemd-boot as
/// `EFI/BOOT/BOOTX64.EFI`, the UKI as `EFI/Linux/linuxkit.efi` and `loader/loader.conf` with
/// `timeout 0`, so that systemd-boot picks the UKI up as a Type #2 entry and boots it without
/// a menu. The partition table is `lkb_disk::gpt`'s.
#[test]
fn systemd_boot_boots_the_uki_from_a_gpt_esp() {
    let dir = tempfile::tempdir().unwrap();
    // What LinuxKit passes to ukify: the os-release is only a name, and " text" is appended
    // to the command line.
    let efi = write_uki(
        dir.path(),
        b"NAME=\"LinuxKit\"",
        b"console=tty0 console=ttyS0 text",
    );
    let loader_conf = dir.path().join("loader.conf");
    std::fs::write(&loader_conf, "timeout 0\n").unwrap();
    let esp = dir.path().join("esp.img");
    let esp_sectors = 32 * 2048;
    fat(
        &esp,
        esp_sectors / 2,
        &["::/EFI", "::/EFI/BOOT", "::/EFI/Linux", "::/loader"],
        &[
            (
                &Path::new(BOOTKIT).join(SYSTEMD_BOOT),
                "::/EFI/BOOT/BOOTX64.EFI",
            ),
            (&efi, "::/EFI/Linux/linuxkit.efi"),
            (&loader_conf, "::/loader/loader.conf"),
        ],
    );

    // The ESP and 4 MiB, as make-efi sizes the disk.
    let disk_size = (esp_sectors + 4 * 2048) * gpt::SECTOR;
    let plan = gpt::plan(&Gpt {
        disk_size,
        disk_guid: Guid::from_hash([0x11; 16]),
        partitions: vec![Partition {
            type_guid: gpt::ESP,
            guid: Guid::from_hash([0x22; 16]),
            first_lba: 2048,
            last_lba: 2048 + esp_sectors - 1,
            attributes: gpt::ATTR_LEGACY_BIOS_BOOTABLE,
            name: "EFI System".into(),
        }],
    })
    .unwrap();
    let disk = dir.path().join("disk.img");
    let mut sink = FileSink::new(std::fs::File::create(&disk).unwrap());
    sink.write_all(plan.head()).unwrap();
    sink.zeros(2048 * gpt::SECTOR - plan.head().len() as u64)
        .unwrap();
    let len = std::fs::metadata(&esp).unwrap().len();
    assert_eq!(len, esp_sectors * gpt::SECTOR);
    lkb_disk::write_data(&mut sink, &Data::File { path: esp, len }).unwrap();
    sink.zeros(plan.tail_offset() - sink.position()).unwrap();
    sink.write_all(plan.tail()).unwrap();
    assert_eq!(sink.position(), disk_size);
    sink.finish().unwrap();

    let console = boot(&disk);
    assert!(
        console.contains("LKB-CMDLINE console=tty0 console=ttyS0 text\r"),
        "the UKI's command line reached the kernel:\n{console}"
    );
}
