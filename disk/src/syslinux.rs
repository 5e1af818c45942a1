//! SYSLINUX installed into a FAT volume in-process, as `syslinux --install` would do it.
//!
//! What SYSLINUX 6's installer (`mtools/syslinux.c`, `libinstaller/syslxmod.c`) does, and so
//! what this module does:
//! - `ldlinux.sys` is written as the loader image (whole sectors) followed by two sectors of
//!   ADV (the auxiliary data vector, reset: head magic, checksum, tail magic, zeros
//!   between), and `ldlinux.c32` next to it. Both get the read-only, hidden and system
//!   attributes.
//! - The image's patch area (found by `LDLINUX_MAGIC`, at a 4-byte boundary) gets the
//!   number of loader sectors, the ADV sector count (2) and the loader's length in dwords.
//!   The extended patch area it points to locates the sector extent list, which gets the
//!   loader's sectors after the first as (LBA, count) runs of less than 64 KiB; the two ADV
//!   sector pointers; and the offsets in the boot sector of the first sector's address.
//! - The checksum makes the dwords of the loader image sum to `LDLINUX_MAGIC`.
//! - The boot sector keeps the volume's BPB; `ldlinux.bss` provides the jump and OEM name
//!   (bytes 0-10) and everything from byte 90 up to the signature, with the first loader
//!   sector's 64-bit address patched in.
//!
//! Sector numbers are relative to the start of the volume. The boot sector adds the partition
//! offset itself, from the partition entry the MBR hands it (or the BPB's hidden sectors).
//!
//! This module plans `ldlinux.sys` and `ldlinux.c32` as the last files of the volume, where
//! the installer's `mcopy` would put them on a volume that already holds the others.

use crate::fat::{self, FatFile, FatPlan, FatSpec, attr};
use crate::{Data, DiskError};

/// SYSLINUX's `LDLINUX_MAGIC`, which opens the patch area.
const LDLINUX_MAGIC: u32 = 0x3eb2_02fe;
const ADV_MAGIC_HEAD: u32 = 0x5a2d_2fa5;
const ADV_MAGIC_CHECKSUM: u32 = 0xa304_1767;
const ADV_MAGIC_TAIL: u32 = 0xdd28_bf64;
const SECTOR: usize = 512;

/// The installed loader's path in the volume.
pub const LDLINUX_SYS: &str = "ldlinux.sys";
/// The core module's path in the volume.
pub const LDLINUX_C32: &str = "ldlinux.c32";

/// Attributes the installer gives both files (`mattrib +r +h +s` after `mcopy`).
pub const ATTRIBUTES: u8 = attr::READ_ONLY | attr::HIDDEN | attr::SYSTEM | attr::ARCHIVE;

/// SYSLINUX's BIOS boot files, all from one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslinuxFiles {
    /// `mbr.bin` (up to 440 bytes): the disk's MBR boot code, for whole-disk layouts.
    pub mbr_bin: Vec<u8>,
    /// `ldlinux.sys` as built (unpatched; padded to whole sectors here if it is not).
    pub ldlinux_sys: Vec<u8>,
    /// `ldlinux.bss`, the 512-byte boot sector template.
    pub ldlinux_bss: Vec<u8>,
    /// `ldlinux.c32`.
    pub ldlinux_c32: Data,
}

impl SyslinuxFiles {
    /// The loader image padded to whole sectors.
    fn loader(&self) -> Vec<u8> {
        let mut image = self.ldlinux_sys.clone();
        image.resize(image.len().div_ceil(SECTOR) * SECTOR, 0);
        image
    }
}

/// Plans `spec` with SYSLINUX installed: adds `ldlinux.sys` and `ldlinux.c32` after the
/// other files, then patches the loader and the boot sector for where they landed.
pub fn plan(mut spec: FatSpec, files: &SyslinuxFiles) -> Result<FatPlan, DiskError> {
    add_files(&mut spec, files);
    let mut plan = fat::plan(spec)?;
    install(&mut plan, files)?;
    Ok(plan)
}

/// Appends `ldlinux.sys` (loader plus room for the ADV) and `ldlinux.c32` to `spec`.
pub fn add_files(spec: &mut FatSpec, files: &SyslinuxFiles) {
    let sys_len = files.loader().len() + 2 * SECTOR;
    for (path, data) in [
        (LDLINUX_SYS, Data::Bytes(vec![0; sys_len])),
        (LDLINUX_C32, files.ldlinux_c32.clone()),
    ] {
        spec.files.push(FatFile {
            path: path.to_owned(),
            data,
            attributes: ATTRIBUTES,
        });
    }
}

/// Patches a planned volume that holds the files [`add_files`] added: `ldlinux.sys` gets its
/// patched content and ADV, the boot sector the SYSLINUX boot code.
pub fn install(plan: &mut FatPlan, files: &SyslinuxFiles) -> Result<(), DiskError> {
    let location = plan
        .file_location(LDLINUX_SYS)
        .ok_or_else(|| DiskError::Invalid(format!("the volume has no {LDLINUX_SYS}")))?;
    let loader = files.loader();
    if location.len != (loader.len() + 2 * SECTOR) as u64 {
        return Err(DiskError::Invalid(format!(
            "{LDLINUX_SYS} in the volume is {} bytes, not the loader's {} plus the ADV",
            location.len,
            loader.len()
        )));
    }
    // The file is one run of clusters.
    let count = (location.len / SECTOR as u64) as usize;
    let sectors: Vec<u64> = (location.first_sector..).take(count).collect();
    let (content, boot_sector) = patch(files, &plan.boot_sector(), &sectors)?;
    plan.replace_data(LDLINUX_SYS, Data::Bytes(content))?;
    plan.set_boot_sector(boot_sector)
}

fn get16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The installer's patching, on its own: given the volume's boot sector and the sectors
/// `ldlinux.sys` occupies (volume-relative, in file order, loader sectors then the two ADV
/// sectors), returns the file's content (patched loader plus reset ADV) and the new boot
/// sector.
pub fn patch(
    files: &SyslinuxFiles,
    volume_boot_sector: &[u8; 512],
    sectors: &[u64],
) -> Result<(Vec<u8>, [u8; 512]), DiskError> {
    let invalid = |what: &str| DiskError::Invalid(format!("{LDLINUX_SYS}: {what}"));
    let bss = &files.ldlinux_bss;
    if bss.len() != SECTOR || bss[510..] != [0x55, 0xAA] {
        return Err(DiskError::Invalid(
            "ldlinux.bss is not a 512-byte boot sector".into(),
        ));
    }
    let mut image = files.loader();
    let loader_sectors = image.len() / SECTOR;
    if sectors.len() != loader_sectors + 2 {
        return Err(invalid(&format!(
            "{} sectors given for a {loader_sectors}-sector loader and 2 ADV sectors",
            sectors.len()
        )));
    }
    let magic = (0..image.len().saturating_sub(24))
        .step_by(4)
        .find(|&at| image[at..at + 4] == LDLINUX_MAGIC.to_le_bytes())
        .ok_or_else(|| invalid("no LDLINUX_MAGIC patch area"))?;
    let epa = get16(&image, magic + 22);
    if epa + 20 > image.len() {
        return Err(invalid("extended patch area outside the image"));
    }
    let epa_field = |i: usize| get16(&image, epa + 2 * i);
    let (adv_pointers, secptr, secptr_count) = (epa_field(0), epa_field(5), epa_field(6));
    let (sect1ptr0, sect1ptr1) = (epa_field(7), epa_field(8));
    if adv_pointers + 16 > image.len() || secptr + 10 * secptr_count > image.len() {
        return Err(invalid("patch pointers outside the image"));
    }
    for at in [sect1ptr0, sect1ptr1] {
        if !(90..=506).contains(&at) {
            return Err(invalid(&format!(
                "first-sector pointer at boot sector offset {at}, outside the boot code"
            )));
        }
    }

    // Boot sector: the volume's BPB inside SYSLINUX's jump, name and code.
    let mut boot = *volume_boot_sector;
    boot[..11].copy_from_slice(&bss[..11]);
    boot[90..510].copy_from_slice(&bss[90..510]);
    put32(&mut boot, sect1ptr0, sectors[0] as u32);
    put32(&mut boot, sect1ptr1, (sectors[0] >> 32) as u32);

    // Totals.
    put16(&mut image, magic + 8, loader_sectors as u16);
    put16(&mut image, magic + 10, 2);
    let dwords = (image.len() / 4) as u32;
    put32(&mut image, magic + 12, dwords);

    // Extents for the loader's sectors after the first.
    let extents = extents(&sectors[1..loader_sectors]);
    if extents.len() > secptr_count {
        return Err(invalid(&format!(
            "needs {} sector extents, the image has room for {secptr_count}",
            extents.len()
        )));
    }
    image[secptr..secptr + 10 * secptr_count].fill(0);
    for (i, (lba, len)) in extents.into_iter().enumerate() {
        put64(&mut image, secptr + 10 * i, lba);
        put16(&mut image, secptr + 10 * i + 8, len);
    }
    put64(&mut image, adv_pointers, sectors[loader_sectors]);
    put64(&mut image, adv_pointers + 8, sectors[loader_sectors + 1]);

    // The checksum: all dwords of the loader sum to LDLINUX_MAGIC.
    put32(&mut image, magic + 16, 0);
    let sum = image.chunks_exact(4).fold(0u32, |sum, d| {
        sum.wrapping_add(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
    });
    put32(&mut image, magic + 16, LDLINUX_MAGIC.wrapping_sub(sum));

    let adv = reset_adv();
    image.extend_from_slice(&adv);
    image.extend_from_slice(&adv);
    Ok((image, boot))
}

/// (LBA, sectors) runs for `sectors`, loaded from 0x8000 on: a run ends where the sectors
/// stop being consecutive or before it reaches 64 KiB. The installer also tests for a 64 KiB
/// boundary of the load address, comparing the new sector's address with the run's new end;
/// that test is kept exactly as it is, so the result matches the installer's.
fn extents(sectors: &[u64]) -> Vec<(u64, u16)> {
    let mut out = Vec::new();
    let mut addr: u32 = 0x8000;
    let (mut base, mut lba, mut len) = (addr, 0u64, 0u32);
    for &sector in sectors {
        if len > 0 {
            let bytes = (len + 1) * SECTOR as u32;
            if sector == lba + u64::from(len)
                && bytes < 0x10000
                && (addr ^ (base + bytes - 1)) & 0xFFFF_0000 == 0
            {
                len += 1;
                addr += SECTOR as u32;
                continue;
            }
            out.push((lba, len as u16));
        }
        base = addr;
        lba = sector;
        len = 1;
        addr += SECTOR as u32;
    }
    if len > 0 {
        out.push((lba, len as u16));
    }
    out
}

/// An empty ADV sector: head magic, a checksum that makes the dwords after the head sum to
/// its constant, and the tail magic.
fn reset_adv() -> [u8; SECTOR] {
    let mut adv = [0u8; SECTOR];
    put32(&mut adv, 0, ADV_MAGIC_HEAD);
    put32(&mut adv, 4, ADV_MAGIC_CHECKSUM);
    put32(&mut adv, SECTOR - 4, ADV_MAGIC_TAIL);
    adv
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use lkb_tests::debs::DebCache;

    use super::*;
    use crate::FileSink;
    use crate::fat::{FatOptions, FatType};

    /// Debian's `syslinux` (the mtools installer) and `syslinux-common` packages, unpacked.
    pub(crate) struct Debian {
        dir: tempfile::TempDir,
    }

    impl Debian {
        pub(crate) fn unpack() -> Debian {
            let cache = DebCache::open_default().unwrap();
            let dir = tempfile::tempdir().unwrap();
            for package in ["syslinux", "syslinux-common"] {
                let deb = cache.fetch(package).unwrap();
                cache.unpack(&deb, dir.path()).unwrap();
            }
            Debian { dir }
        }

        pub(crate) fn installer(&self) -> PathBuf {
            self.dir.path().join("usr/bin/syslinux")
        }

        /// The boot files: loader and boot sector from the installer (as it would write
        /// them), `mbr.bin` from `syslinux-common`.
        pub(crate) fn files(&self) -> SyslinuxFiles {
            let payload =
                lkb_tests::syslinux_payload::extract(&std::fs::read(self.installer()).unwrap())
                    .unwrap();
            SyslinuxFiles {
                mbr_bin: std::fs::read(self.dir.path().join("usr/lib/syslinux/mbr/mbr.bin"))
                    .unwrap(),
                ldlinux_sys: payload.ldlinux_sys,
                ldlinux_bss: payload.ldlinux_bss,
                ldlinux_c32: Data::Bytes(payload.ldlinux_c32),
            }
        }
    }

    use crate::test_tools::run;

    fn write(plan: &FatPlan, path: &Path) {
        let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
        plan.write(&mut sink).unwrap();
        sink.finish().unwrap();
    }

    fn mcopy_out(image: &Path, name: &str) -> Vec<u8> {
        let out = image.with_extension(name);
        run(Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(image)
            .arg(format!("::/{name}"))
            .arg(&out));
        std::fs::read(out).unwrap()
    }

    /// The same volume installed by Debian's `syslinux --install` and by [`plan`] must have
    /// the same boot sector, the same FATs and byte-identical `ldlinux.sys` (patch area,
    /// extents, checksum and ADV) and `ldlinux.c32`. The installer puts its files in the
    /// first free clusters, which is where [`add_files`] plans them.
    #[test]
    fn matches_debians_installer() {
        let debian = Debian::unpack();
        let files = debian.files();
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd");
        std::fs::File::create(&initrd)
            .unwrap()
            .set_len(3_000_000)
            .unwrap();
        for (fat_type, size, hidden) in [
            (FatType::Fat12, 8 << 20, 0),
            (FatType::Fat16, 32 << 20, 2048),
            (FatType::Fat32, 300 << 20, 63),
        ] {
            let spec = FatSpec {
                files: vec![
                    FatFile::new("syslinux.cfg", Data::Bytes(b"DEFAULT linux\n".to_vec())),
                    FatFile::new("kernel", Data::Bytes(vec![0xAB; 200_000])),
                    FatFile::new(
                        "initrd.img",
                        Data::File {
                            path: initrd.clone(),
                            len: 3_000_000,
                        },
                    ),
                ],
                dirs: vec![],
                options: FatOptions {
                    volume_id: 0xC0FF_EE00,
                    size: Some(size),
                    fat_type: Some(fat_type),
                    hidden_sectors: hidden,
                    ..FatOptions::default()
                },
            };
            let theirs = dir.path().join("theirs.img");
            write(&fat::plan(spec.clone()).unwrap(), &theirs);
            run(Command::new(debian.installer())
                .arg("--install")
                .arg(&theirs));

            let plan = plan(spec, &files).unwrap();
            assert_eq!(plan.fat_type(), fat_type);
            let ours = dir.path().join("ours.img");
            write(&plan, &ours);
            let fsck = run(Command::new("fsck.vfat").arg("-n").arg(&ours));
            assert_eq!(fsck.lines().count(), 2, "{fsck}");

            let (a, b) = (
                std::fs::read(&theirs).unwrap(),
                std::fs::read(&ours).unwrap(),
            );
            assert_eq!(a[..512], b[..512], "{fat_type}: boot sector");
            let reserved = usize::from(u16::from_le_bytes([b[14], b[15]])) * 512;
            let fat_len = match fat_type {
                FatType::Fat32 => u32::from_le_bytes(b[36..40].try_into().unwrap()) as usize,
                _ => usize::from(u16::from_le_bytes([b[22], b[23]])),
            } * 512;
            assert!(
                a[reserved..reserved + 2 * fat_len] == b[reserved..reserved + 2 * fat_len],
                "{fat_type}: FATs differ"
            );
            if fat_type == FatType::Fat32 {
                assert_eq!(a[512..1024], b[512..1024], "FSInfo");
            }
            for name in [LDLINUX_SYS, LDLINUX_C32] {
                assert!(
                    mcopy_out(&theirs, name) == mcopy_out(&ours, name),
                    "{fat_type}: {name} differs"
                );
                let attributes = |image: &Path| {
                    run(Command::new("mattrib")
                        .arg("-i")
                        .arg(image)
                        .arg(format!("::/{name}")))
                };
                assert_eq!(attributes(&theirs), attributes(&ours), "{name}");
            }
            let loc = plan.file_location(LDLINUX_SYS).unwrap();
            assert!(
                a[loc.offset as usize..(loc.offset + loc.len) as usize]
                    == b[loc.offset as usize..(loc.offset + loc.len) as usize],
                "{fat_type}: ldlinux.sys is where the installer put it"
            );
        }
    }

    #[test]
    fn a_loader_without_patch_area_is_refused() {
        let files = SyslinuxFiles {
            mbr_bin: vec![],
            ldlinux_sys: vec![0x11; 4096],
            ldlinux_bss: {
                let mut b = vec![0; 512];
                b[510] = 0x55;
                b[511] = 0xAA;
                b
            },
            ldlinux_c32: Data::Bytes(vec![1; 10]),
        };
        let err = plan(FatSpec::default(), &files).unwrap_err();
        assert!(err.to_string().contains("LDLINUX_MAGIC"), "{err}");
        let bad_bss = SyslinuxFiles {
            ldlinux_bss: vec![0; 100],
            ..files
        };
        let err = plan(FatSpec::default(), &bad_bss).unwrap_err();
        assert!(err.to_string().contains("ldlinux.bss"), "{err}");
    }

    #[test]
    fn extents_split_at_gaps_and_64k() {
        // The installer's window test compares the new sector with the run's end, both past
        // the boundary, so in effect only the 64 KiB limit (127 sectors) splits a run.
        let contiguous: Vec<u64> = (100..300).collect();
        assert_eq!(extents(&contiguous), vec![(100, 127), (227, 73)]);
        assert_eq!(extents(&[5, 6, 7, 20, 21]), vec![(5, 3), (20, 2)]);
        assert!(extents(&[]).is_empty());
    }

    #[test]
    fn the_reset_adv_checks_out() {
        let adv = reset_adv();
        let dword = |at: usize| u32::from_le_bytes(adv[at..at + 4].try_into().unwrap());
        assert_eq!(dword(0), ADV_MAGIC_HEAD);
        assert_eq!(dword(508), ADV_MAGIC_TAIL);
        let sum = (4..508)
            .step_by(4)
            .fold(0u32, |s, at| s.wrapping_add(dword(at)));
        assert_eq!(sum, ADV_MAGIC_CHECKSUM);
    }
}
