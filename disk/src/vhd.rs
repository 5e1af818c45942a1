//! Microsoft's VHD (Virtual Hard Disk) image from a raw disk: fixed or dynamic.
//!
//! A **fixed** VHD is the disk itself followed by a 512-byte footer. Azure takes only fixed
//! VHDs whose virtual size is a whole number of MiB, so the raw disk is first padded to a MiB
//! boundary (the padding is a hole). The raw disk's zero 64 KiB pieces are written as holes
//! too, so the file is as sparse as its input.
//!
//! A **dynamic** VHD stores only the 2 MiB blocks that hold data:
//!
//! | offset | what |
//! |---|---|
//! | 0 | a copy of the footer |
//! | 512 | the dynamic disk header (`cxsparse`, 1024 bytes) |
//! | 1536 | the block allocation table: one big-endian sector number per block, `0xFFFFFFFF` for a block that is not stored; padded to a whole sector with `0xFF` |
//! | after the table | each stored block, in disk order: a one-sector bitmap (all ones: every sector present, as QEMU writes it) and 2 MiB of data |
//! | end | the footer |
//!
//! Its virtual size is the raw disk's. Blocks that are zero in the raw disk (holes, and data
//! extents that happen to be zero) are not stored and read as zeros.
//!
//! The footer records the size, the disk geometry computed by the specification's algorithm
//! ([`geometry`]), a fixed timestamp ([`TIMESTAMP`]) and the caller's unique id, so two
//! writes of the same disk are the same bytes.

use crate::sparse::{self, ChunkReader, NonZero};
use crate::{Data, DiskError, Sink};

/// The data block size of dynamic disks: 2 MiB, the specification's default.
pub const BLOCK_SIZE: u64 = 2 << 20;
/// The footer's creation time, in seconds since 2000-01-01T00:00:00Z: LinuxKit's fixed
/// build time, 2017-04-18T16:30:00Z.
pub const TIMESTAMP: u32 = 545_848_200;
/// The footer's creator application. The format leaves this field informational, but QEMU
/// uses it to decide a disk's size: before QEMU 10 (Debian 12 has 7.2) only a few known
/// creators (`win `, `qem2`, `d2v `, `CTXS`, `tap\0`) are sized by the footer's current size,
/// and every other by the CHS geometry, which rounds the disk down (a 100 MiB disk would read
/// as 204612 sectors instead of 204800). `qem2` is what `qemu-img convert -O vpc -o
/// force_size` writes, which is how LinuxKit makes its VHDs, so lkb's VHDs are read as
/// LinuxKit's are. [`CREATOR_VERSION`] marks lkb's own.
pub const CREATOR_APP: [u8; 4] = *b"qem2";
/// The footer's creator version: 1.0 of lkb's writer (QEMU writes 5.3).
pub const CREATOR_VERSION: u32 = 0x0001_0000;
/// The footer's creator host OS: `Wi2k`, the value QEMU writes (the specification knows only
/// Windows and Macintosh).
pub const CREATOR_HOST_OS: [u8; 4] = *b"Wi2k";
/// QEMU refuses disks of this many sectors or more (2040 GiB), the specification's limit.
pub const MAX_SECTORS: u64 = 0xff00_0000;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
const FOOTER_SIZE: u64 = 512;
const DYNAMIC_HEADER_SIZE: u64 = 1024;
const FIXED: u32 = 2;
const DYNAMIC: u32 = 3;
/// The granularity at which a fixed disk's zero runs become holes.
const FIXED_SCAN_CHUNK: u64 = 64 << 10;
/// The bitmap in front of each dynamic block: one bit per sector, in whole sectors.
const BITMAP_SIZE: u64 = (BLOCK_SIZE / SECTOR / 8).div_ceil(SECTOR) * SECTOR;
const UNUSED: u32 = 0xffff_ffff;

/// Which kind of VHD to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VhdKind {
    /// The whole disk, padded to a whole MiB, then the footer (Azure's format).
    Fixed,
    /// Only the 2 MiB blocks that hold data.
    Dynamic,
}

/// What to convert.
#[derive(Debug, Clone)]
pub struct Vhd {
    /// The raw disk: a multiple of 512 bytes, not empty.
    pub raw: Data,
    pub kind: VhdKind,
    /// The footer's unique id, derived from the content by the caller.
    pub unique_id: [u8; 16],
}

/// A planned VHD.
#[derive(Debug, Clone)]
pub struct VhdPlan {
    raw: Data,
    kind: VhdKind,
    /// Chunks of the raw disk holding data: 64 KiB for fixed disks, blocks for dynamic ones.
    nonzero: NonZero,
    virtual_size: u64,
    footer: [u8; FOOTER_SIZE as usize],
}

/// The disk geometry (cylinders, heads, sectors per track) the VHD specification assigns to
/// a disk of `size` bytes; disks over 65535 × 16 × 255 sectors get that maximum.
pub fn geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / SECTOR).min(65535 * 16 * 255);
    let (sectors, heads, cylinders_times_heads) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut sectors = 17;
        let mut cth = total / sectors;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            sectors = 31;
            heads = 16;
            cth = total / sectors;
        }
        if cth >= heads * 1024 {
            sectors = 63;
            heads = 16;
            cth = total / sectors;
        }
        (sectors, heads, cth)
    };
    (
        (cylinders_times_heads / heads) as u16,
        heads as u8,
        sectors as u8,
    )
}

/// The one's complement of the sum of `bytes`, the footer's and the dynamic header's checksum.
fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// Scans the raw disk (for a dynamic disk, which blocks hold data) and lays out the image.
pub fn plan(vhd: Vhd) -> Result<VhdPlan, DiskError> {
    let len = vhd.raw.len();
    if len == 0 || !len.is_multiple_of(SECTOR) {
        return Err(DiskError::Invalid(format!(
            "a VHD needs a raw disk of a non-zero multiple of 512 bytes, not {len}"
        )));
    }
    let virtual_size = match vhd.kind {
        VhdKind::Fixed => len.div_ceil(MIB) * MIB,
        VhdKind::Dynamic => len,
    };
    if virtual_size / SECTOR >= MAX_SECTORS {
        return Err(DiskError::Invalid(format!(
            "a VHD holds less than 2040 GiB; the disk is {virtual_size} bytes"
        )));
    }
    let chunk = match vhd.kind {
        VhdKind::Fixed => FIXED_SCAN_CHUNK,
        VhdKind::Dynamic => BLOCK_SIZE,
    };
    let nonzero = NonZero::scan(&vhd.raw, chunk)?;

    let mut footer = [0u8; FOOTER_SIZE as usize];
    footer[0..8].copy_from_slice(b"conectix");
    // Features: bit 1 is reserved and always set.
    put32(&mut footer, 8, 2);
    put32(&mut footer, 12, 0x0001_0000);
    let data_offset = match vhd.kind {
        VhdKind::Fixed => u64::MAX,
        VhdKind::Dynamic => FOOTER_SIZE,
    };
    put64(&mut footer, 16, data_offset);
    put32(&mut footer, 24, TIMESTAMP);
    footer[28..32].copy_from_slice(&CREATOR_APP);
    put32(&mut footer, 32, CREATOR_VERSION);
    footer[36..40].copy_from_slice(&CREATOR_HOST_OS);
    put64(&mut footer, 40, virtual_size);
    put64(&mut footer, 48, virtual_size);
    let (cylinders, heads, sectors) = geometry(virtual_size);
    footer[56..58].copy_from_slice(&cylinders.to_be_bytes());
    footer[58] = heads;
    footer[59] = sectors;
    let disk_type = match vhd.kind {
        VhdKind::Fixed => FIXED,
        VhdKind::Dynamic => DYNAMIC,
    };
    put32(&mut footer, 60, disk_type);
    footer[68..84].copy_from_slice(&vhd.unique_id);
    // 84: not in a saved state.
    let sum = checksum(&footer);
    put32(&mut footer, 64, sum);

    let plan = VhdPlan {
        raw: vhd.raw,
        kind: vhd.kind,
        nonzero,
        virtual_size,
        footer,
    };
    if plan.kind == VhdKind::Dynamic {
        let last = plan.blocks_offset() + plan.stored_blocks() * (BITMAP_SIZE + BLOCK_SIZE);
        if last / SECTOR > u64::from(UNUSED) {
            return Err(DiskError::Invalid(format!(
                "a dynamic VHD of {virtual_size} bytes has blocks past its 2 TiB addressing limit"
            )));
        }
    }
    Ok(plan)
}

impl VhdPlan {
    /// The image file's size in bytes.
    pub fn size(&self) -> u64 {
        match self.kind {
            VhdKind::Fixed => self.virtual_size + FOOTER_SIZE,
            VhdKind::Dynamic => {
                self.blocks_offset()
                    + self.stored_blocks() * (BITMAP_SIZE + BLOCK_SIZE)
                    + FOOTER_SIZE
            }
        }
    }

    /// The disk's size as the VHD records it: for a fixed disk, the raw size rounded up to a
    /// whole MiB.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// How many 2 MiB blocks a dynamic disk stores (0 for a fixed disk).
    pub fn stored_blocks(&self) -> u64 {
        match self.kind {
            VhdKind::Fixed => 0,
            VhdKind::Dynamic => self.nonzero.indices().len() as u64,
        }
    }

    /// The footer (also the first sector of a dynamic disk).
    pub fn footer(&self) -> &[u8; 512] {
        &self.footer
    }

    fn table_entries(&self) -> u64 {
        self.virtual_size.div_ceil(BLOCK_SIZE)
    }

    fn table_offset(&self) -> u64 {
        FOOTER_SIZE + DYNAMIC_HEADER_SIZE
    }

    fn blocks_offset(&self) -> u64 {
        self.table_offset() + (self.table_entries() * 4).div_ceil(SECTOR) * SECTOR
    }

    fn dynamic_header(&self) -> Vec<u8> {
        let mut h = vec![0u8; DYNAMIC_HEADER_SIZE as usize];
        h[0..8].copy_from_slice(b"cxsparse");
        // No further header structure.
        put64(&mut h, 8, u64::MAX);
        put64(&mut h, 16, self.table_offset());
        put32(&mut h, 24, 0x0001_0000);
        put32(&mut h, 28, self.table_entries() as u32);
        put32(&mut h, 32, BLOCK_SIZE as u32);
        // 40..: no parent (this is not a differencing disk).
        let sum = checksum(&h);
        put32(&mut h, 36, sum);
        h
    }

    /// Writes the image front to back; exactly [`VhdPlan::size`] bytes.
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        match self.kind {
            VhdKind::Fixed => {
                sparse::copy_sparse(out, &self.raw, &self.nonzero)?;
                out.zeros(self.virtual_size - self.raw.len())
                    .map_err(DiskError::Io)?;
            }
            VhdKind::Dynamic => self.write_dynamic(out)?,
        }
        out.write_all(&self.footer).map_err(DiskError::Io)
    }

    /// Everything of a dynamic disk before the closing footer.
    fn write_dynamic(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        out.write_all(&self.footer).map_err(DiskError::Io)?;
        out.write_all(&self.dynamic_header())
            .map_err(DiskError::Io)?;

        let table_bytes = (self.blocks_offset() - self.table_offset()) as usize;
        let mut table = vec![0xff; table_bytes];
        let blocks_offset = self.blocks_offset();
        for (rank, &index) in self.nonzero.indices().iter().enumerate() {
            let offset = blocks_offset + rank as u64 * (BITMAP_SIZE + BLOCK_SIZE);
            let sector = (offset / SECTOR) as u32;
            put32(&mut table, index as usize * 4, sector);
        }
        out.write_all(&table).map_err(DiskError::Io)?;

        let bitmap = vec![0xff; BITMAP_SIZE as usize];
        let mut reader = ChunkReader::open(&self.raw, BLOCK_SIZE)?;
        for &index in self.nonzero.indices() {
            out.write_all(&bitmap).map_err(DiskError::Io)?;
            out.write_all(reader.read(index)?).map_err(DiskError::Io)?;
        }
        Ok(())
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = *b"0123456789abcdef";

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn convert(raw: &[u8], kind: VhdKind) -> (VhdPlan, Vec<u8>) {
        let plan = plan(Vhd {
            raw: Data::Bytes(raw.to_vec()),
            kind,
            unique_id: ID,
        })
        .unwrap();
        let mut img = Vec::new();
        plan.write(&mut img).unwrap();
        assert_eq!(img.len() as u64, plan.size());
        (plan, img)
    }

    /// Checks a footer's fixed fields and checksum; returns (data offset, current size, type).
    fn parse_footer(f: &[u8]) -> (u64, u64, u32) {
        assert_eq!(f.len(), 512);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(be32(f, 8), 2);
        assert_eq!(be32(f, 12), 0x0001_0000);
        assert_eq!(be32(f, 24), TIMESTAMP);
        assert_eq!(&f[28..32], b"qem2");
        assert_eq!(&f[68..84], &ID);
        let mut zeroed = f.to_vec();
        zeroed[64..68].fill(0);
        assert_eq!(be32(f, 64), checksum(&zeroed));
        assert_eq!(be64(f, 40), be64(f, 48), "original and current size");
        let (c, h, s) = geometry(be64(f, 48));
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), c);
        assert_eq!((f[58], f[59]), (h, s));
        (be64(f, 16), be64(f, 48), be32(f, 60))
    }

    #[test]
    fn geometry_follows_the_specification() {
        // Worked by hand from the specification's algorithm.
        // 100 MiB = 204800 sectors: 17 sectors per track, 12047 cylinder-heads, 12 heads.
        assert_eq!(geometry(100 << 20), (1003, 12, 17));
        // 16 MiB = 32768 sectors: 1927 cylinder-heads, 4 heads at least.
        assert_eq!(geometry(16 << 20), (481, 4, 17));
        // 1 GiB = 2097152 sectors: 17 spt needs 121 heads, so 31 spt with 16 heads gives
        // 67650 cylinder-heads, still too many; 63 spt: 33288 / 16.
        assert_eq!(geometry(1 << 30), (2080, 16, 63));
        // 25 GiB = 52428800 sectors: 63 spt, 832203 cylinder-heads / 16.
        assert_eq!(geometry(25 << 30), (52012, 16, 63));
        // At and past 65535 × 16 × 63 sectors: 255 sectors per track, 259056 cylinder-heads.
        assert_eq!(geometry(65535 * 16 * 63 * 512), (16191, 16, 255));
        assert_eq!(geometry(u64::MAX / 2), (65535, 16, 255));
        // 200 MiB = 409600 sectors: 17 spt would need 24 heads; 31 spt gives 13212
        // cylinder-heads, under 16 × 1024.
        assert_eq!(geometry(200 << 20), (825, 16, 31));
    }

    #[test]
    fn fixed_is_the_disk_padded_to_a_mib_then_the_footer() {
        let mut raw = vec![0u8; 3 * 512 + (1 << 20)];
        raw[0] = 0x55;
        let last = raw.len() - 1;
        raw[last] = 0xaa;
        let (plan, img) = convert(&raw, VhdKind::Fixed);
        assert_eq!(plan.virtual_size(), 2 << 20);
        assert_eq!(img.len(), (2 << 20) + 512);
        assert_eq!(&img[..raw.len()], &raw[..]);
        assert!(img[raw.len()..2 << 20].iter().all(|&b| b == 0));
        let (data_offset, size, kind) = parse_footer(&img[2 << 20..]);
        assert_eq!((data_offset, size, kind), (u64::MAX, 2 << 20, 2));
    }

    #[test]
    fn dynamic_stores_only_blocks_with_data() {
        // 9 MiB: five table entries, the last block half past the end of the disk.
        let mut raw = vec![0u8; 9 << 20];
        raw[100] = 1;
        raw[(6 << 20) + 5] = 2;
        raw[(9 << 20) - 1] = 3;
        let (plan, img) = convert(&raw, VhdKind::Dynamic);
        assert_eq!(plan.stored_blocks(), 3);
        assert_eq!(plan.virtual_size(), 9 << 20);
        assert_eq!(img.len() as u64, 1536 + 512 + 3 * (512 + BLOCK_SIZE) + 512);

        assert_eq!(&img[..512], &img[img.len() - 512..], "footer copy");
        let (data_offset, size, kind) = parse_footer(&img[..512]);
        assert_eq!((data_offset, size, kind), (512, 9 << 20, 3));

        let h = &img[512..1536];
        assert_eq!(&h[0..8], b"cxsparse");
        assert_eq!(be64(h, 8), u64::MAX);
        assert_eq!(be64(h, 16), 1536);
        assert_eq!(be32(h, 24), 0x0001_0000);
        assert_eq!(be32(h, 28), 5);
        assert_eq!(be32(h, 32), 2 << 20);
        let mut zeroed = h.to_vec();
        zeroed[36..40].fill(0);
        assert_eq!(be32(h, 36), checksum(&zeroed));

        // Read the disk back through the table.
        let mut back = vec![0u8; 9 << 20];
        for block in 0..5usize {
            let entry = be32(&img, 1536 + 4 * block);
            if entry == UNUSED {
                continue;
            }
            let at = entry as usize * 512;
            assert!(img[at..at + 512].iter().all(|&b| b == 0xff), "bitmap");
            let start = block * (2 << 20);
            let n = (back.len() - start).min(2 << 20);
            back[start..start + n].copy_from_slice(&img[at + 512..at + 512 + n]);
        }
        let used: Vec<u32> = (0..5).map(|b| be32(&img, 1536 + 4 * b)).collect();
        assert_eq!(used, [4, UNUSED, UNUSED, 4 + 4097, 4 + 2 * 4097]);
        // The table's padding to a whole sector is 0xFF too.
        assert!(img[1536 + 20..2048].iter().all(|&b| b == 0xff));
        assert!(back == raw);
    }

    #[test]
    fn a_raw_disk_of_partial_sectors_or_none_is_invalid() {
        for kind in [VhdKind::Fixed, VhdKind::Dynamic] {
            for len in [0, 513] {
                let err = plan(Vhd {
                    raw: Data::Bytes(vec![0; len]),
                    kind,
                    unique_id: ID,
                })
                .unwrap_err();
                assert!(
                    matches!(err, DiskError::Invalid(_)),
                    "{kind:?} {len}: {err}"
                );
            }
        }
    }

    #[test]
    fn the_same_disk_and_id_give_the_same_bytes() {
        let mut raw = vec![0u8; 4 << 20];
        raw[3 << 20] = 7;
        for kind in [VhdKind::Fixed, VhdKind::Dynamic] {
            assert_eq!(convert(&raw, kind).1, convert(&raw, kind).1);
        }
    }
}
