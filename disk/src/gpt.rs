//! GUID partition tables (UEFI specification, chapter 5), for 512-byte sectors.
//!
//! A GPT disk is: a protective MBR in LBA 0, the primary header in LBA 1, 128 partition entries
//! of 128 bytes in LBAs 2–33, the partitions, then a copy of the entries in the 32 sectors
//! before the last one and the backup header in the last sector. [`plan`] checks the layout
//! and builds both ends as bytes: the caller writes [`GptPlan::head`], the partitions (and
//! zeros between them), then [`GptPlan::tail`] at [`GptPlan::tail_offset`], front to back.
//!
//! GUIDs are parameters; [`Guid::from_hash`] turns bytes of a content hash into one. LBA 0 is
//! not covered by any checksum, so a caller may put boot code in its first 440 bytes.

use std::fmt;

use crate::DiskError;

/// Bytes per sector; GPT structures are laid out in these units.
pub const SECTOR: u64 = 512;
/// Partition entries in each array (the minimum the specification allows, and what every
/// partitioning tool writes).
pub const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
/// Sectors taken by one partition entry array.
const ARRAY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE) as u64 / SECTOR;
/// The first sector a partition may use: after the MBR, the header and the entries.
pub const FIRST_USABLE_LBA: u64 = 2 + ARRAY_SECTORS;
const HEADER_SIZE: usize = 92;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;

/// Partition attribute bit 0: the platform needs the partition to work.
pub const ATTR_REQUIRED: u64 = 1;
/// Partition attribute bit 2: legacy BIOS bootable (read by `gptmbr.bin`-style boot code).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// A GUID, held in the byte order of its text form (`00112233-4455-6677-8899-aabbccddeeff` is
/// bytes `00 11 … ff`). On disk GPT stores the first three fields little-endian
/// ([`Guid::to_disk`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Guid(pub [u8; 16]);

/// The EFI System Partition type, `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`.
pub const ESP: Guid = Guid::from_fields(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);
/// The Linux filesystem data type, `0FC63DAF-8483-4772-8E79-3D69D8477DE4`.
pub const LINUX_FILESYSTEM: Guid = Guid::from_fields(
    0x0FC6_3DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

impl Guid {
    /// The GUID whose text form is `d1-d2-d3-d4[0..2]-d4[2..8]` in hex.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_be_bytes();
        let b = d2.to_be_bytes();
        let c = d3.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// A GUID made from 16 bytes of a content hash, shaped like an RFC 4122 version 4
    /// (random) GUID: the hash's bytes in text order, with the version nibble set to 4 and
    /// the variant bits to `10`. The other 122 bits are the hash's, so the GUID is unique as
    /// long as the hashed content is, and the same content always gives the same GUID.
    pub fn from_hash(hash: [u8; 16]) -> Guid {
        let mut bytes = hash;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The 16 bytes GPT stores: the first three fields little-endian, the last eight as they
    /// are.
    pub fn to_disk(&self) -> [u8; 16] {
        let t = &self.0;
        [
            t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[13],
            t[14], t[15],
        ]
    }

    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }
}

/// Upper-case text form, as `sgdisk` and `sfdisk` print it.
impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// One partition. LBAs are in 512-byte sectors, both ends inclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    /// Attribute bits ([`ATTR_REQUIRED`], [`ATTR_LEGACY_BIOS_BOOTABLE`], type-specific bits
    /// 48–63).
    pub attributes: u64,
    /// At most [`NAME_UNITS`] UTF-16 code units.
    pub name: String,
}

/// A partition table to lay out.
#[derive(Clone, Debug)]
pub struct Gpt {
    /// The whole disk in bytes: a multiple of [`SECTOR`].
    pub disk_size: u64,
    pub disk_guid: Guid,
    /// In entry order (entry 1 first); at most [`ENTRIES`].
    pub partitions: Vec<Partition>,
}

/// Both ends of a GPT disk, ready to write.
#[derive(Clone, Debug)]
pub struct GptPlan {
    head: Vec<u8>,
    tail: Vec<u8>,
    tail_offset: u64,
    last_usable_lba: u64,
}

impl GptPlan {
    /// LBAs 0–33: protective MBR, primary header, primary entries. Written at offset 0.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The backup entries and the backup header: the last 33 sectors of the disk.
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// Where [`GptPlan::tail`] starts: the disk size less 33 sectors.
    pub fn tail_offset(&self) -> u64 {
        self.tail_offset
    }

    /// The last sector a partition may use.
    pub fn last_usable_lba(&self) -> u64 {
        self.last_usable_lba
    }
}

/// The last usable LBA of a disk of `disk_size` bytes: the sector before the backup entries.
pub fn last_usable_lba(disk_size: u64) -> u64 {
    (disk_size / SECTOR).saturating_sub(ARRAY_SECTORS + 2)
}

/// The smallest disk whose usable area ends at `last_lba` (inclusive).
pub fn disk_size_for(last_lba: u64) -> u64 {
    (last_lba + 1 + ARRAY_SECTORS + 1) * SECTOR
}

/// Checks the partitions against the disk and builds the protective MBR, both headers and both
/// entry arrays.
pub fn plan(gpt: &Gpt) -> Result<GptPlan, DiskError> {
    if !gpt.disk_size.is_multiple_of(SECTOR) {
        return Err(DiskError::Invalid(format!(
            "GPT: disk size {} is not a multiple of {SECTOR}-byte sectors",
            gpt.disk_size
        )));
    }
    if gpt.partitions.len() > ENTRIES {
        return Err(DiskError::Invalid(format!(
            "GPT: {} partitions, at most {ENTRIES} fit the entry array",
            gpt.partitions.len()
        )));
    }
    let sectors = gpt.disk_size / SECTOR;
    let last_usable = last_usable_lba(gpt.disk_size);
    let needed_last = gpt
        .partitions
        .iter()
        .map(|p| p.last_lba)
        .max()
        .unwrap_or(FIRST_USABLE_LBA);
    if sectors < FIRST_USABLE_LBA + ARRAY_SECTORS + 2 || needed_last > last_usable {
        return Err(DiskError::TooSmall {
            what: "GPT disk".into(),
            needed: disk_size_for(needed_last.max(FIRST_USABLE_LBA)),
            requested: gpt.disk_size,
        });
    }

    let mut entries = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (index, partition) in gpt.partitions.iter().enumerate() {
        check_partition(index, partition)?;
        for (other_index, other) in gpt.partitions[..index].iter().enumerate() {
            if partition.first_lba <= other.last_lba && other.first_lba <= partition.last_lba {
                return Err(DiskError::Invalid(format!(
                    "GPT: partition {} ({}–{}) overlaps partition {} ({}–{})",
                    index + 1,
                    partition.first_lba,
                    partition.last_lba,
                    other_index + 1,
                    other.first_lba,
                    other.last_lba
                )));
            }
        }
        let entry = &mut entries[index * ENTRY_SIZE..(index + 1) * ENTRY_SIZE];
        entry[0..16].copy_from_slice(&partition.type_guid.to_disk());
        entry[16..32].copy_from_slice(&partition.guid.to_disk());
        entry[32..40].copy_from_slice(&partition.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&partition.last_lba.to_le_bytes());
        entry[48..56].copy_from_slice(&partition.attributes.to_le_bytes());
        for (i, unit) in partition.name.encode_utf16().enumerate() {
            entry[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);

    let last = sectors - 1;
    let backup_entries = last - ARRAY_SECTORS;
    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        let mut sector = vec![0u8; SECTOR as usize];
        sector[0..8].copy_from_slice(b"EFI PART");
        sector[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        sector[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        sector[24..32].copy_from_slice(&my_lba.to_le_bytes());
        sector[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        sector[40..48].copy_from_slice(&FIRST_USABLE_LBA.to_le_bytes());
        sector[48..56].copy_from_slice(&last_usable.to_le_bytes());
        sector[56..72].copy_from_slice(&gpt.disk_guid.to_disk());
        sector[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        sector[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        sector[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        sector[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&sector[..HEADER_SIZE]);
        sector[16..20].copy_from_slice(&crc.to_le_bytes());
        sector
    };

    let mut head = protective_mbr(sectors);
    head.extend(header(1, last, 2));
    head.extend_from_slice(&entries);
    let mut tail = entries;
    tail.extend(header(last, 1, backup_entries));

    Ok(GptPlan {
        head,
        tail,
        tail_offset: backup_entries * SECTOR,
        last_usable_lba: last_usable,
    })
}

fn check_partition(index: usize, partition: &Partition) -> Result<(), DiskError> {
    let number = index + 1;
    if partition.type_guid.is_nil() {
        // A nil type marks an unused entry; the partition would vanish.
        return Err(DiskError::Invalid(format!(
            "GPT: partition {number} has the nil type GUID, which marks an unused entry"
        )));
    }
    if partition.first_lba < FIRST_USABLE_LBA || partition.first_lba > partition.last_lba {
        return Err(DiskError::Invalid(format!(
            "GPT: partition {number} spans LBAs {}–{}; it must start at {FIRST_USABLE_LBA} or \
             later and not end before it starts",
            partition.first_lba, partition.last_lba
        )));
    }
    let units = partition.name.encode_utf16().count();
    if units > NAME_UNITS {
        return Err(DiskError::Invalid(format!(
            "GPT: partition {number} name {:?} is {units} UTF-16 units, at most {NAME_UNITS} fit",
            partition.name
        )));
    }
    Ok(())
}

/// LBA 0: no boot code, one partition of type 0xEE covering the disk from LBA 1 (capped at
/// 2^32 − 1 sectors), and the 0x55AA signature.
fn protective_mbr(sectors: u64) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR as usize];
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xEE;
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS past the addressable range
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

/// CRC-32 as GPT (and zip, and Ethernet) use it: polynomial 0x04C11DB7 reflected, initial
/// value and final XOR all ones.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8)
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut value = i as u32;
        let mut bit = 0;
        while bit < 8 {
            value = if value & 1 == 1 {
                (value >> 1) ^ 0xEDB8_8320
            } else {
                value >> 1
            };
            bit += 1;
        }
        table[i] = value;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FileSink, Sink};
    use std::io::Write;
    use std::path::Path;
    use std::process::Command;

    const MIB: u64 = 1 << 20;

    fn guid(seed: u8) -> Guid {
        Guid::from_hash(std::array::from_fn(|i| {
            seed.wrapping_mul(31) ^ (i as u8 * 17)
        }))
    }

    fn example() -> Gpt {
        Gpt {
            disk_size: 64 * MIB,
            disk_guid: guid(1),
            partitions: vec![
                Partition {
                    type_guid: ESP,
                    guid: guid(2),
                    first_lba: 2048,
                    last_lba: 2048 + 32 * 2048 - 1,
                    attributes: ATTR_REQUIRED,
                    name: "EFI System".into(),
                },
                Partition {
                    type_guid: LINUX_FILESYSTEM,
                    guid: guid(3),
                    first_lba: 34 * 2048,
                    last_lba: last_usable_lba(64 * MIB),
                    attributes: ATTR_LEGACY_BIOS_BOOTABLE,
                    name: "lkb root ☃".into(),
                },
            ],
        }
    }

    /// Head, a few bytes of "partition content", zeros, tail: what a disk writer does.
    fn write_disk(plan: &GptPlan, disk_size: u64, path: &Path) -> Vec<u8> {
        let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
        sink.write_all(plan.head()).unwrap();
        sink.zeros(2048 * SECTOR - plan.head().len() as u64)
            .unwrap();
        sink.write_all(b"partition one").unwrap();
        sink.zeros(plan.tail_offset() - sink.position()).unwrap();
        sink.write_all(plan.tail()).unwrap();
        assert_eq!(sink.position(), disk_size);
        sink.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    fn tool(program: &str, args: &[&str], path: &Path) -> String {
        let out = Command::new(program)
            .args(args)
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    #[test]
    fn sgdisk_and_sfdisk_read_the_table_as_planned() {
        let dir = tempfile::tempdir().unwrap();
        let gpt = example();
        let plan = plan(&gpt).unwrap();
        let path = dir.path().join("disk.img");
        let image = write_disk(&plan, gpt.disk_size, &path);

        let verify = tool("sgdisk", &["-v"], &path);
        assert!(verify.contains("No problems found"), "{verify}");

        let dump = tool("sfdisk", &["-d"], &path);
        let lines: Vec<&str> = dump.lines().collect();
        let last_usable = 64 * 2048 - 34;
        let header = [
            "label: gpt".to_string(),
            format!("label-id: {}", gpt.disk_guid),
            format!("device: {}", path.display()),
            "unit: sectors".to_string(),
            "first-lba: 34".to_string(),
            format!("last-lba: {last_usable}"),
            "sector-size: 512".to_string(),
        ];
        assert_eq!(lines[..7], header, "{dump}");
        let p = gpt.partitions.clone();
        let partitions = [
            format!(
                "{}1 : start=        2048, size=       65536, type={ESP}, uuid={}, \
                 name=\"EFI System\", attrs=\"RequiredPartition\"",
                path.display(),
                p[0].guid
            ),
            format!(
                "{}2 : start=       69632, size=       61407, type={LINUX_FILESYSTEM}, uuid={}, \
                 name=\"lkb root \\xe2\\x98\\x83\", attrs=\"LegacyBIOSBootable\"",
                path.display(),
                p[1].guid
            ),
        ];
        assert_eq!(lines[8..], partitions, "{dump}");
        assert_eq!(last_usable, plan.last_usable_lba());
        assert_eq!(p[1].last_lba - p[1].first_lba + 1, 61407);

        // The same table twice is the same bytes.
        let again = write_disk(
            &super::plan(&gpt).unwrap(),
            gpt.disk_size,
            &dir.path().join("again"),
        );
        assert!(again == image);
    }

    #[test]
    fn a_disk_with_no_partitions_is_valid_and_the_protective_mbr_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let gpt = Gpt {
            disk_size: 68 * SECTOR,
            disk_guid: guid(9),
            partitions: Vec::new(),
        };
        let plan = plan(&gpt).unwrap();
        let path = dir.path().join("tiny.img");
        // One usable sector, LBA 34, between the two ends.
        assert_eq!(plan.last_usable_lba(), 34);
        assert_eq!(plan.tail_offset(), 35 * SECTOR);
        let mut bytes = plan.head().to_vec();
        bytes.resize(35 * SECTOR as usize, 0);
        bytes.extend_from_slice(plan.tail());
        std::fs::write(&path, &bytes).unwrap();
        let verify = tool("sgdisk", &["-v"], &path);
        assert!(verify.contains("No problems found"), "{verify}");
        // Type 0xEE from LBA 1 to the end of the disk.
        assert_eq!(bytes[446 + 4], 0xEE);
        assert_eq!(bytes[446 + 8..446 + 16], [1, 0, 0, 0, 67, 0, 0, 0]);
        assert_eq!(bytes[510..512], [0x55, 0xAA]);
    }

    #[test]
    fn guids_are_stored_mixed_endian_and_hashes_become_version_4_guids() {
        assert_eq!(ESP.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(
            ESP.to_disk(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(
            LINUX_FILESYSTEM.to_string(),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
        let from_hash = Guid::from_hash([0xff; 16]);
        assert_eq!(
            from_hash.to_string(),
            "FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF"
        );
        let from_zeros = Guid::from_hash([0; 16]);
        assert_eq!(
            from_zeros.to_string(),
            "00000000-0000-4000-8000-000000000000"
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn refusal(gpt: &Gpt) -> String {
        match plan(gpt) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{gpt:?} was accepted"),
        }
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut odd = example();
        odd.disk_size += 100;
        assert!(refusal(&odd).contains("not a multiple of 512"));

        let mut small = example();
        small.disk_size = 32 * MIB;
        let message = refusal(&small);
        assert!(
            message.contains("GPT disk needs at least 67108864 bytes"),
            "{message}"
        );

        let mut overlap = example();
        overlap.partitions[1].first_lba = 2048 + 100;
        assert!(refusal(&overlap).contains("partition 2 (2148–"));

        let mut early = example();
        early.partitions[0].first_lba = 33;
        assert!(refusal(&early).contains("must start at 34"));

        let mut long = example();
        long.partitions[0].name = "x".repeat(37);
        assert!(refusal(&long).contains("37 UTF-16 units"));

        let mut nil = example();
        nil.partitions[0].type_guid = Guid([0; 16]);
        assert!(refusal(&nil).contains("nil type GUID"));

        let mut many = example();
        many.partitions = (0..129)
            .map(|i| Partition {
                type_guid: LINUX_FILESYSTEM,
                guid: guid(i as u8),
                first_lba: 34 + i,
                last_lba: 34 + i,
                attributes: 0,
                name: String::new(),
            })
            .collect();
        assert!(refusal(&many).contains("129 partitions"));
    }
}
