//! Boots a unified kernel image made by `lkb_disk::uki` under OVMF: the image is
//! `EFI/BOOT/BOOTX64.EFI` on a FAT file system made for this test by `mkfs.vfat` and `mcopy`
//! (independent tools, so only the UKI is under test), and the example init prints
//! `LKB-EXAMPLE-DONE` on the serial console and powers off.

use std::path::Path;
use std::process::Command;

use lkb_disk::uki::{self, Uki};
use lkb_disk::{Data, FileSink};

const BOOTKIT: &str = "/tmp/bootkit";
const STUB: &str = "debian-bootloaders/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
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

#[test]
fn ovmf_boots_the_uki_from_a_fat_esp() {
    let dir = tempfile::tempdir().unwrap();
    let plan = uki::plan(Uki {
        stub: fixture(STUB),
        osrel: b"ID=lkb\nNAME=\"lkb example\"\nVERSION_ID=1\n".to_vec(),
        cmdline: b"console=tty0 console=ttyS0".to_vec(),
        uname: None,
        linux: fixture("minimal-kernel"),
        initrd: fixture("minimal-initrd.img"),
        ucode: None,
    })
    .unwrap();
    let efi = dir.path().join("linux.efi");
    let mut sink = FileSink::new(std::fs::File::create(&efi).unwrap());
    plan.write(&mut sink).unwrap();
    sink.finish().unwrap();

    let esp = dir.path().join("esp.img");
    run(Command::new("mkfs.vfat").arg("-C").arg(&esp).arg("32768"));
    run(Command::new("mmd")
        .arg("-i")
        .arg(&esp)
        .args(["::/EFI", "::/EFI/BOOT"]));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&esp)
        .arg(&efi)
        .arg("::/EFI/BOOT/BOOTX64.EFI"));

    let out = Command::new("timeout")
        .arg("300")
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot"])
        .args(["-bios", OVMF, "-drive"])
        .arg(format!("file={},format=raw", esp.display()))
        .output()
        .expect("qemu-system-x86_64");
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("LKB-EXAMPLE-DONE"),
        "no LKB-EXAMPLE-DONE on the serial console ({}):\n{console}",
        out.status
    );
}
