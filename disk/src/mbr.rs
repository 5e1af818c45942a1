//! The master boot record: boot code, disk signature and a four-slot partition table.
//!
//! CHS fields use the 255-head, 63-sector translation partitioning tools assume for disk
//! images; a position beyond what CHS can address (cylinder 1023) is stored as the maximum,
//! `FE FF FF`, the usual "use the LBA fields" marker.

use crate::DiskError;

/// Bytes of boot code before the disk signature.
pub const BOOT_CODE_LEN: usize = 440;

const HEADS: u32 = 255;
const SECTORS_PER_TRACK: u32 = 63;

/// One primary partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The active flag (0x80) a BIOS-style MBR boots from.
    pub bootable: bool,
    /// The partition type byte, e.g. 0x83 (Linux), 0x0C (FAT32 LBA), 0xEF (EFI system).
    pub kind: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

/// An MBR to render into the disk's first sector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mbr {
    /// Up to 440 bytes run by the BIOS (e.g. SYSLINUX's `mbr.bin`); zeros if empty.
    pub boot_code: Vec<u8>,
    /// The 32-bit disk identifier at byte 440.
    pub disk_signature: u32,
    /// At most four partitions, in slot order.
    pub partitions: Vec<Partition>,
}

impl Mbr {
    /// The 512-byte sector.
    pub fn to_bytes(&self) -> Result<[u8; 512], DiskError> {
        if self.boot_code.len() > BOOT_CODE_LEN {
            return Err(DiskError::Invalid(format!(
                "MBR boot code is {} bytes; at most {BOOT_CODE_LEN} fit",
                self.boot_code.len()
            )));
        }
        if self.partitions.len() > 4 {
            return Err(DiskError::Invalid(format!(
                "an MBR holds 4 partitions, not {}",
                self.partitions.len()
            )));
        }
        let mut s = [0u8; 512];
        s[..self.boot_code.len()].copy_from_slice(&self.boot_code);
        s[440..444].copy_from_slice(&self.disk_signature.to_le_bytes());
        for (i, p) in self.partitions.iter().enumerate() {
            if p.sectors == 0 || p.start_lba == 0 {
                return Err(DiskError::Invalid(format!(
                    "MBR partition {} must start after sector 0 and not be empty",
                    i + 1
                )));
            }
            let last = p.start_lba.checked_add(p.sectors - 1).ok_or_else(|| {
                DiskError::Invalid(format!(
                    "MBR partition {} ends beyond the 2 TiB an MBR can address",
                    i + 1
                ))
            })?;
            let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
            e[0] = if p.bootable { 0x80 } else { 0 };
            e[1..4].copy_from_slice(&chs(p.start_lba));
            e[4] = p.kind;
            e[5..8].copy_from_slice(&chs(last));
            e[8..12].copy_from_slice(&p.start_lba.to_le_bytes());
            e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xAA;
        Ok(s)
    }
}

/// The CHS triple (head, sector | cylinder high bits, cylinder low byte) for `lba`.
fn chs(lba: u32) -> [u8; 3] {
    let cylinder = lba / (HEADS * SECTORS_PER_TRACK);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS_PER_TRACK) % HEADS;
    let sector = lba % SECTORS_PER_TRACK + 1;
    [
        head as u8,
        sector as u8 | ((cylinder >> 2) & 0xC0) as u8,
        cylinder as u8,
    ]
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn run(command: &mut Command) -> String {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("{command:?}: {e} (sfdisk must be installed)"));
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn the_table_matches_what_sfdisk_writes() {
        let dir = tempfile::tempdir().unwrap();
        // Small and large disks: the second puts partitions beyond CHS reach.
        for (disk_sectors, parts) in [
            (
                131_072u64,
                vec![(true, 0x83, 2048, 100_000), (false, 0x0C, 102_048, 20_000)],
            ),
            (
                (40u64 << 30) / 512,
                vec![
                    (false, 0xEF, 2048, 204_800),
                    (true, 0x83, 206_848, 20_000_000),
                    (false, 0x82, 20_206_848, 40_000_000),
                    (false, 0x07, 60_206_848, 10_000_000),
                ],
            ),
        ] {
            let image = dir.path().join("disk.img");
            let file = std::fs::File::create(&image).unwrap();
            file.set_len(disk_sectors * 512).unwrap();
            drop(file);
            let mut script = String::from("label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n");
            for (bootable, kind, start, size) in &parts {
                script.push_str(&format!(
                    "start={start}, size={size}, type={kind:x}{}\n",
                    if *bootable { ", bootable" } else { "" }
                ));
            }
            let mut child = Command::new("sfdisk")
                .args(["--no-reread", "--no-tell-kernel", "-q"])
                .arg(&image)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("sfdisk must be installed");
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            let mut theirs = [0u8; 512];
            std::io::Read::read_exact(&mut std::fs::File::open(&image).unwrap(), &mut theirs)
                .unwrap();

            let ours = Mbr {
                boot_code: vec![0xFA; 300],
                disk_signature: 0x1234_ABCD,
                partitions: parts
                    .iter()
                    .map(|&(bootable, kind, start_lba, sectors)| Partition {
                        bootable,
                        kind,
                        start_lba,
                        sectors,
                    })
                    .collect(),
            }
            .to_bytes()
            .unwrap();
            assert_eq!(&ours[440..512], &theirs[440..512], "{disk_sectors} sectors");
            assert_eq!(&ours[..300], &[0xFA; 300][..]);
            assert_eq!(&ours[300..440], &[0; 140][..]);

            // sfdisk reads our table back as we meant it.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .unwrap()
                .write_all(&ours)
                .unwrap();
            let dump = run(Command::new("sfdisk").arg("--dump").arg(&image));
            assert!(dump.contains("label-id: 0x1234abcd"), "{dump}");
            for (bootable, kind, start, size) in &parts {
                let line = format!("start={start:>12}, size={size:>12}, type={kind:x}");
                let found = dump.lines().find(|l| l.contains(&line));
                let found = found.unwrap_or_else(|| panic!("{line} not in\n{dump}"));
                assert_eq!(found.contains("bootable"), *bootable, "{found}");
            }
        }
    }

    #[test]
    fn what_an_mbr_cannot_hold_is_an_error() {
        let p = Partition {
            bootable: false,
            kind: 0x83,
            start_lba: 2048,
            sectors: 1,
        };
        for mbr in [
            Mbr {
                boot_code: vec![0; 441],
                ..Mbr::default()
            },
            Mbr {
                partitions: vec![p; 5],
                ..Mbr::default()
            },
            Mbr {
                partitions: vec![Partition {
                    start_lba: u32::MAX,
                    sectors: 2,
                    ..p
                }],
                ..Mbr::default()
            },
            Mbr {
                partitions: vec![Partition { sectors: 0, ..p }],
                ..Mbr::default()
            },
        ] {
            assert!(
                matches!(mbr.to_bytes(), Err(DiskError::Invalid(_))),
                "{mbr:?}"
            );
        }
    }
}
