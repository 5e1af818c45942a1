//! The boot loader image the boot-media formats install (`localhost/lkb-examples/boot:1`, lkb's
//! default `[boot] image`), made from Debian 12's packages.
//!
//! | path | from |
//! |---|---|
//! | `/syslinux/mbr.bin` | `syslinux-common`: the MBR boot code raw-bios writes to sector 0 |
//! | `/syslinux/ldlinux.bss`, `/syslinux/ldlinux.sys` | the boot sector template and the core SYSLINUX loads, taken out of Debian's `syslinux` installer ([`crate::syslinux_payload`]) |
//! | `/syslinux/ldlinux.c32` | the installer too, so all three come from one SYSLINUX build |
//! | `/isolinux/isolinux.bin`, `/isolinux/isohdpfx.bin` | `isolinux`: the El Torito boot file and the isohybrid MBR code |
//! | `/isolinux/ldlinux.c32` | `syslinux-common` (BIOS modules), the build of `isolinux.bin` |
//! | `/grub/bootx64.efi` | a GRUB EFI image made here with `grub-mkimage` from `grub-efi-amd64-bin` (prefix `/EFI/BOOT`, the modules in [`GRUB_MODULES`]) |
//! | `/systemd-boot/systemd-bootx64.efi`, `/systemd-boot/linuxx64.efi.stub` | `systemd-boot-efi` |
//!
//! The package versions are the image's labels (`org.lkb.boot.<package>`). Everything runs
//! when the fixture is built (`examples/images/build.sh`), never during `lkb build`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, ensure};

use crate::debs::{DebCache, DebPackage};
use crate::oci::{ImageBuilder, ImageIndex, IndexBuilder, Layer};

/// The Debian packages the image is made from. `grub-common` provides `grub-mkimage`.
pub const BOOT_PACKAGES: &[&str] = &[
    "syslinux",
    "syslinux-common",
    "isolinux",
    "grub-common",
    "grub-efi-amd64-bin",
    "systemd-boot-efi",
];

/// The modules built into `/grub/bootx64.efi`: partitions, FAT and ISO 9660, the Linux loader
/// (EFI handover), config and search commands, decompressors and the EFI console. LinuxKit's
/// list, less CoreOS-only modules, plus `search_*` and `configfile`.
pub const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "ext2",
    "normal",
    "boot",
    "linux",
    "configfile",
    "search",
    "search_fs_file",
    "search_fs_uuid",
    "search_label",
    "echo",
    "test",
    "gzio",
    "xzio",
    "cpio",
    "acpi",
    "all_video",
    "efi_gop",
    "video",
];

/// The packages, fetched (or reused from the cache).
pub fn fetch(cache: &DebCache) -> anyhow::Result<Vec<DebPackage>> {
    BOOT_PACKAGES
        .iter()
        .map(|package| cache.fetch(package))
        .collect()
}

/// Builds the image from `debs` (as [`fetch`] returns them), unpacking into a temporary
/// directory.
pub fn boot_image(cache: &DebCache, debs: &[DebPackage]) -> anyhow::Result<ImageIndex> {
    let dir = tempfile::Builder::new()
        .prefix("lkb-boot-debs-")
        .tempdir()?;
    let root = dir.path();
    for deb in debs {
        cache.unpack(deb, root)?;
    }
    let read = |path: &str| -> anyhow::Result<Vec<u8>> {
        fs_err::read(root.join(path)).with_context(|| format!("the boot packages have no /{path}"))
    };
    let payload = crate::syslinux_payload::extract(&read("usr/bin/syslinux")?)
        .map_err(|e| anyhow::anyhow!("Debian's syslinux installer: {e}"))?;
    let ldlinux_c32 = read("usr/lib/syslinux/modules/bios/ldlinux.c32")?;
    let grub = grub_mkimage(root)?;
    let layer = Layer::new()
        .file("syslinux/mbr.bin", read("usr/lib/syslinux/mbr/mbr.bin")?)
        .file("syslinux/ldlinux.bss", payload.ldlinux_bss)
        .file("syslinux/ldlinux.sys", payload.ldlinux_sys)
        .file("syslinux/ldlinux.c32", payload.ldlinux_c32)
        .file(
            "isolinux/isolinux.bin",
            read("usr/lib/ISOLINUX/isolinux.bin")?,
        )
        .file(
            "isolinux/isohdpfx.bin",
            read("usr/lib/ISOLINUX/isohdpfx.bin")?,
        )
        .file("isolinux/ldlinux.c32", ldlinux_c32)
        .file("grub/bootx64.efi", grub)
        .file(
            "systemd-boot/systemd-bootx64.efi",
            read("usr/lib/systemd/boot/efi/systemd-bootx64.efi")?,
        )
        .file(
            "systemd-boot/linuxx64.efi.stub",
            read("usr/lib/systemd/boot/efi/linuxx64.efi.stub")?,
        );
    let mut image = ImageBuilder::new().layer(layer);
    for deb in debs {
        image = image.label(&format!("org.lkb.boot.{}", deb.name), &deb.version);
    }
    IndexBuilder::new().image(image.build()?).build()
}

/// `grub-mkimage` from the unpacked `grub-common`, with the modules of `grub-efi-amd64-bin`.
/// Its output depends only on the modules and arguments (checked: two runs, and a run under
/// another clock, give the same bytes).
fn grub_mkimage(root: &Path) -> anyhow::Result<Vec<u8>> {
    let out = tempfile::Builder::new().prefix("lkb-grub-").tempdir()?;
    let image = out.path().join("bootx64.efi");
    let status = Command::new(root.join("usr/bin/grub-mkimage"))
        .arg("-d")
        .arg(root.join("usr/lib/grub/x86_64-efi"))
        .args(["-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o"])
        .arg(&image)
        .args(GRUB_MODULES)
        .status()
        .context("cannot run grub-mkimage from grub-common")?;
    ensure!(status.success(), "grub-mkimage failed: {status}");
    Ok(fs_err::read(&image)?)
}
