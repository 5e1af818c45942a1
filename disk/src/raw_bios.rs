//! LinuxKit's `raw-bios` disk: an MBR disk whose one active partition holds a FAT volume with
//! SYSLINUX, the kernel and the initrd.
//!
//! The layout follows LinuxKit's `tools/mkimage-raw-bios/make-bios`:
//! - `syslinux.cfg` boots `/kernel` with `/initrd.img` and the command line;
//! - the volume is the kernel plus the initrd plus 1 MiB of headroom, rounded up to whole
//!   MiB (more if the FAT's own structures need it, which LinuxKit did not check);
//! - the disk is the volume plus 4 MiB: the partition starts at sector 2048 (1 MiB) and
//!   3 MiB stay free at the end;
//! - the partition has type 0x83 (what LinuxKit's `sfdisk` script leaves as the default) and
//!   the active flag; the MBR's code is SYSLINUX's `mbr.bin`, which boots the active
//!   partition.
//!
//! Differences: the volume is written in-process (no `mkfs.vfat`, `mcopy` or `syslinux
//! --install`), its BPB records the partition offset in its hidden sectors, the FAT type
//! always suits the cluster count, and a requested `size` gives the disk that exact size
//! with the partition running to its end (LinuxKit ignores `--size` for this format).

use crate::fat::{FatFile, FatOptions, FatPlan, FatSpec, SECTOR_SIZE};
use crate::mbr::{Mbr, Partition};
use crate::syslinux::{self, SyslinuxFiles};
use crate::{Data, DiskError, Sink};

/// Where the partition starts, in sectors.
pub const PARTITION_START: u64 = 2048;
/// The partition type LinuxKit's disks carry.
pub const PARTITION_TYPE: u8 = 0x83;

const MIB: u64 = 1 << 20;

/// What goes on the disk.
#[derive(Debug, Clone)]
pub struct RawBios {
    pub kernel: Data,
    pub initrd: Data,
    /// The kernel command line (one line; a trailing newline is dropped).
    pub cmdline: String,
    pub syslinux: SyslinuxFiles,
    /// The exact disk size in bytes (a multiple of 512); `None` sizes it as LinuxKit does.
    pub size: Option<u64>,
    /// The FAT volume's serial number.
    pub volume_id: u32,
    /// The MBR's disk signature.
    pub disk_signature: u32,
}

/// A planned disk.
#[derive(Debug, Clone)]
pub struct RawBiosPlan {
    mbr: [u8; 512],
    volume: FatPlan,
    size: u64,
}

/// The `syslinux.cfg` LinuxKit writes.
pub fn syslinux_cfg(cmdline: &str) -> String {
    format!(
        "DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n    APPEND {cmdline}\n"
    )
}

/// Plans the disk.
pub fn plan(input: RawBios) -> Result<RawBiosPlan, DiskError> {
    let cmdline = input.cmdline.trim_end_matches('\n');
    if cmdline.contains('\n') {
        return Err(DiskError::Invalid(
            "the kernel command line must be a single line for syslinux.cfg".into(),
        ));
    }
    let content = input.kernel.len() + input.initrd.len();
    let spec = |volume_size: Option<u64>| FatSpec {
        files: vec![
            FatFile::new(
                "syslinux.cfg",
                Data::Bytes(syslinux_cfg(cmdline).into_bytes()),
            ),
            FatFile::new("kernel", input.kernel.clone()),
            FatFile::new("initrd.img", input.initrd.clone()),
        ],
        dirs: Vec::new(),
        options: FatOptions {
            volume_id: input.volume_id,
            size: volume_size,
            hidden_sectors: PARTITION_START as u32,
            ..FatOptions::default()
        },
    };
    let start = PARTITION_START * SECTOR_SIZE;
    let (volume, size) = match input.size {
        None => {
            let smallest = syslinux::plan(spec(None), &input.syslinux)?.size();
            let linuxkit = (content + MIB).div_ceil(MIB) * MIB;
            let volume_size = linuxkit.max(smallest.div_ceil(MIB) * MIB);
            let volume = syslinux::plan(spec(Some(volume_size)), &input.syslinux)?;
            (volume, start + volume_size + 3 * MIB)
        }
        Some(size) => {
            if !size.is_multiple_of(SECTOR_SIZE) {
                return Err(DiskError::Invalid(format!(
                    "a disk is a whole number of 512-byte sectors, not {size} bytes"
                )));
            }
            let too_small = || -> Result<DiskError, DiskError> {
                let smallest = syslinux::plan(spec(None), &input.syslinux)?.size();
                Ok(DiskError::TooSmall {
                    what: "the raw-bios disk".into(),
                    needed: start + smallest,
                    requested: size,
                })
            };
            if size <= start {
                return Err(too_small()?);
            }
            match syslinux::plan(spec(Some(size - start)), &input.syslinux) {
                Ok(volume) => (volume, size),
                Err(DiskError::TooSmall { .. }) => return Err(too_small()?),
                Err(other) => return Err(other),
            }
        }
    };
    let sectors = u32::try_from(volume.size() / SECTOR_SIZE).map_err(|_| {
        DiskError::Invalid("the partition is larger than an MBR can describe".into())
    })?;
    let mbr = Mbr {
        boot_code: input.syslinux.mbr_bin.clone(),
        disk_signature: input.disk_signature,
        partitions: vec![Partition {
            bootable: true,
            kind: PARTITION_TYPE,
            start_lba: PARTITION_START as u32,
            sectors,
        }],
    }
    .to_bytes()?;
    Ok(RawBiosPlan { mbr, volume, size })
}

impl RawBiosPlan {
    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The FAT volume in the partition.
    pub fn volume(&self) -> &FatPlan {
        &self.volume
    }

    /// Writes the disk front to back; the gaps are holes in a file-backed sink.
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        let start = PARTITION_START * SECTOR_SIZE;
        out.write_all(&self.mbr).map_err(DiskError::Io)?;
        out.zeros(start - SECTOR_SIZE).map_err(DiskError::Io)?;
        self.volume.write(out)?;
        out.zeros(self.size - start - self.volume.size())
            .map_err(DiskError::Io)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::FileSink;
    use crate::syslinux::tests::Debian;

    use crate::test_tools::run;

    fn write(plan: &RawBiosPlan, path: &Path) {
        let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
        plan.write(&mut sink).unwrap();
        assert_eq!(sink.position(), plan.size());
        sink.finish().unwrap();
    }

    fn input(debian: &Debian, kernel: Data, initrd: Data, size: Option<u64>) -> RawBios {
        RawBios {
            kernel,
            initrd,
            cmdline: "console=tty0 console=ttyS0\n".into(),
            syslinux: debian.files(),
            size,
            volume_id: 0x4C4B_4231,
            disk_signature: 0x0BAD_CAFE,
        }
    }

    #[test]
    fn the_disk_is_laid_out_as_linuxkit_does() {
        let debian = Debian::unpack();
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd");
        std::fs::File::create(&initrd)
            .unwrap()
            .set_len(5_000_000)
            .unwrap();
        let kernel = Data::Bytes(vec![0x4B; 3_000_000]);
        let initrd = Data::File {
            path: initrd,
            len: 5_000_000,
        };
        let plan = plan(input(&debian, kernel.clone(), initrd, None)).unwrap();
        // 8 MB of content + 1 MiB, rounded up to MiB, plus 4 MiB.
        let volume = (8_000_000u64 + MIB).div_ceil(MIB) * MIB;
        assert_eq!(plan.volume().size(), volume);
        assert_eq!(plan.size(), volume + 4 * MIB);

        let image = dir.path().join("disk.img");
        write(&plan, &image);
        let dump = run(Command::new("sfdisk").arg("--dump").arg(&image));
        assert!(dump.contains("label-id: 0x0badcafe"), "{dump}");
        let line = format!(
            "start=        2048, size={:>12}, type=83, bootable",
            volume / 512
        );
        assert!(dump.contains(&line), "{line} not in\n{dump}");
        let bytes = std::fs::read(&image).unwrap();
        let mbr_bin = debian.files().mbr_bin;
        assert_eq!(bytes[..mbr_bin.len()], mbr_bin[..]);

        let volume_bytes = &bytes[MIB as usize..(MIB + volume) as usize];
        let volume_image = dir.path().join("volume.img");
        std::fs::write(&volume_image, volume_bytes).unwrap();
        let fsck = run(Command::new("fsck.vfat").arg("-n").arg(&volume_image));
        assert_eq!(fsck.lines().count(), 2, "{fsck}");
        assert_eq!(&volume_bytes[3..11], b"SYSLINUX");
        assert_eq!(
            &volume_bytes[28..32],
            &2048u32.to_le_bytes(),
            "hidden sectors"
        );

        let at = format!("{}@@1M", image.display());
        let listing = run(Command::new("mdir").args(["-a", "-b", "-i", &at, "::"]));
        let names: Vec<&str> = listing.lines().collect();
        assert_eq!(
            names,
            [
                "::/initrd.img",
                "::/kernel",
                "::/ldlinux.c32",
                "::/ldlinux.sys",
                "::/syslinux.cfg"
            ]
        );
        let cfg = run(Command::new("mtype").args(["-i", &at, "::/syslinux.cfg"]));
        assert_eq!(
            cfg,
            "DEFAULT linux\nLABEL linux\n    KERNEL /kernel\n    INITRD /initrd.img\n    \
             APPEND console=tty0 console=ttyS0\n"
        );
        let out = dir.path().join("kernel.out");
        run(Command::new("mcopy")
            .args(["-n", "-i", &at, "::/kernel"])
            .arg(&out));
        assert!(std::fs::read(&out).unwrap() == kernel.read_all().unwrap());
    }

    #[test]
    fn a_requested_size_is_exact_or_too_small() {
        let debian = Debian::unpack();
        let kernel = || Data::Bytes(vec![1; 2_000_000]);
        let initrd = || Data::Bytes(vec![2; 1_000_000]);
        let err = plan(input(&debian, kernel(), initrd(), Some(3 * MIB))).unwrap_err();
        let DiskError::TooSmall {
            needed, requested, ..
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(requested, 3 * MIB);
        assert!(needed > 3 * MIB && needed < 5 * MIB, "{needed}");
        // The needed size itself works, with the partition up to the end of the disk.
        let exact = plan(input(&debian, kernel(), initrd(), Some(needed))).unwrap();
        assert_eq!(exact.size(), needed);
        assert_eq!(exact.volume().size(), needed - MIB);
        let big = plan(input(&debian, kernel(), initrd(), Some(1 << 30))).unwrap();
        assert_eq!(big.size(), 1 << 30);

        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        write(&big, &image);
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&image).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        assert!(meta.blocks() * 512 < 16 * MIB, "free space stays sparse");
        let at = format!("{}@@1M", image.display());
        let info = run(Command::new("minfo").args(["-i", &at, "::"]));
        assert!(info.contains("disk type=\"FAT32   \""), "{info}");

        let odd = plan(input(&debian, kernel(), initrd(), Some(needed + 1))).unwrap_err();
        assert!(matches!(odd, DiskError::Invalid(_)), "{odd}");
        let mut two_lines = input(&debian, kernel(), initrd(), None);
        two_lines.cmdline = "a\nb".into();
        assert!(matches!(plan(two_lines), Err(DiskError::Invalid(_))));
    }
}
