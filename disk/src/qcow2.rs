//! QEMU's qcow2 image (version 3, `compat=1.1`) from a raw disk, storing only the clusters
//! that hold data.
//!
//! The image uses 64 KiB clusters, 16-bit refcounts, no compression, encryption, snapshots or
//! backing file, and no header extensions (the header is followed by the end-of-extensions
//! marker). Its layout, in clusters, front to back:
//!
//! | what | clusters |
//! |---|---|
//! | header | 1 |
//! | L1 table (one entry per 512 MiB of virtual disk) | `ceil(8 * entries / 64 KiB)` |
//! | refcount table | enough for the refcount blocks |
//! | refcount blocks (one per 32768 host clusters) | enough for every cluster of the file |
//! | L2 tables, one per 512 MiB of virtual disk that holds data, in guest order | one each |
//! | data clusters: the raw disk's non-zero 64 KiB clusters, in guest order | one each |
//!
//! Every cluster of the file is used exactly once, so every refcount is 1 and every L1 and L2
//! entry carries the "copied" flag; guest clusters that are zero in the raw disk (holes, and
//! data extents that happen to be zero) are left unallocated and read as zeros.
//!
//! Nothing in the image depends on anything but the raw disk's bytes.

use crate::sparse::{ChunkReader, NonZero};
use crate::{Data, DiskError, Sink};

/// `cluster_bits`: 64 KiB clusters, QEMU's default.
pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// `refcount_order`: 16-bit refcounts, QEMU's default.
pub const REFCOUNT_ORDER: u32 = 4;

const MAGIC: &[u8; 4] = b"QFI\xfb";
const VERSION: u32 = 3;
/// The version 3 header without optional fields.
const HEADER_LENGTH: usize = 104;
/// Entries in one L2 table (8-byte entries filling one cluster).
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// Refcounts in one refcount block (16-bit entries filling one cluster).
const REFCOUNT_BLOCK_ENTRIES: u64 = CLUSTER_SIZE * 8 / (1 << REFCOUNT_ORDER);
/// Bit 63 of L1 and L2 entries: the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// QEMU refuses L1 tables over 32 MiB and refcount tables over 8 MiB.
const MAX_L1_BYTES: u64 = 32 << 20;
const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;

/// A planned image: the raw disk's non-zero clusters and where every structure goes.
#[derive(Debug, Clone)]
pub struct Qcow2Plan {
    raw: Data,
    nonzero: NonZero,
    l1_entries: u64,
    l1_clusters: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// The L1 indices that have an L2 table, ascending.
    l2_tables: Vec<u64>,
    /// Host clusters in the file.
    clusters: u64,
}

/// Scans `raw` for non-zero clusters and lays out the image. `raw`'s length (the virtual
/// disk size) must be a non-zero multiple of 512.
pub fn plan(raw: Data) -> Result<Qcow2Plan, DiskError> {
    let virtual_size = raw.len();
    if virtual_size == 0 || !virtual_size.is_multiple_of(512) {
        return Err(DiskError::Invalid(format!(
            "a qcow2 image needs a raw disk of a non-zero multiple of 512 bytes, not {virtual_size}"
        )));
    }
    let l1_entries = virtual_size.div_ceil(CLUSTER_SIZE * L2_ENTRIES);
    if l1_entries * 8 > MAX_L1_BYTES {
        return Err(DiskError::Invalid(format!(
            "a {virtual_size}-byte disk needs an L1 table larger than QEMU's 32 MiB limit"
        )));
    }
    let nonzero = NonZero::scan(&raw, CLUSTER_SIZE)?;
    let mut l2_tables: Vec<u64> = nonzero.indices().iter().map(|i| i / L2_ENTRIES).collect();
    l2_tables.dedup();
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE);
    let others = 1 + l1_clusters + l2_tables.len() as u64 + nonzero.indices().len() as u64;
    let (refcount_table_clusters, refcount_blocks, clusters) = refcount_layout(others);
    if refcount_table_clusters * CLUSTER_SIZE > MAX_REFCOUNT_TABLE_BYTES {
        return Err(DiskError::Invalid(format!(
            "a {virtual_size}-byte disk needs a refcount table larger than QEMU's 8 MiB limit"
        )));
    }
    Ok(Qcow2Plan {
        raw,
        nonzero,
        l1_entries,
        l1_clusters,
        refcount_table_clusters,
        refcount_blocks,
        l2_tables,
        clusters,
    })
}

/// The refcount table's clusters, the refcount blocks and the file's clusters for a file of
/// `others` clusters besides the refcount structures, which must count themselves too.
fn refcount_layout(others: u64) -> (u64, u64, u64) {
    let mut blocks: u64 = 1;
    loop {
        let table_clusters = (blocks * 8).div_ceil(CLUSTER_SIZE);
        let clusters = others + table_clusters + blocks;
        let needed = clusters.div_ceil(REFCOUNT_BLOCK_ENTRIES);
        // `clusters` only grows with `blocks`, so `needed` never falls below `blocks`.
        if needed == blocks {
            return (table_clusters, blocks, clusters);
        }
        blocks = needed;
    }
}

impl Qcow2Plan {
    /// The image file's size in bytes.
    pub fn size(&self) -> u64 {
        self.clusters * CLUSTER_SIZE
    }

    /// The virtual disk's size in bytes: the raw disk's.
    pub fn virtual_size(&self) -> u64 {
        self.raw.len()
    }

    /// How many of the virtual disk's clusters hold data (are stored in the image).
    pub fn data_clusters(&self) -> u64 {
        self.nonzero.indices().len() as u64
    }

    fn l1_offset(&self) -> u64 {
        CLUSTER_SIZE
    }

    fn refcount_table_offset(&self) -> u64 {
        self.l1_offset() + self.l1_clusters * CLUSTER_SIZE
    }

    fn refcount_blocks_offset(&self) -> u64 {
        self.refcount_table_offset() + self.refcount_table_clusters * CLUSTER_SIZE
    }

    fn l2_offset(&self) -> u64 {
        self.refcount_blocks_offset() + self.refcount_blocks * CLUSTER_SIZE
    }

    fn data_offset(&self) -> u64 {
        self.l2_offset() + self.l2_tables.len() as u64 * CLUSTER_SIZE
    }

    fn header(&self) -> Vec<u8> {
        // The header, then the end-of-extensions marker (type 0, length 0).
        let mut h = vec![0; HEADER_LENGTH + 8];
        h[0..4].copy_from_slice(MAGIC);
        put32(&mut h, 4, VERSION);
        // 8: backing_file_offset, 16: backing_file_size: none.
        put32(&mut h, 20, CLUSTER_BITS);
        put64(&mut h, 24, self.virtual_size());
        // 32: crypt_method: none.
        put32(&mut h, 36, self.l1_entries as u32);
        put64(&mut h, 40, self.l1_offset());
        put64(&mut h, 48, self.refcount_table_offset());
        put32(&mut h, 56, self.refcount_table_clusters as u32);
        // 60: nb_snapshots, 64: snapshots_offset: none. 72, 80, 88: no feature bits (the
        // image is clean, refcounts are not lazy).
        put32(&mut h, 96, REFCOUNT_ORDER);
        put32(&mut h, 100, HEADER_LENGTH as u32);
        h
    }

    /// Writes `n_clusters` of 8-byte big-endian entries, `entry(i)` for the first `count`
    /// and zeros after them.
    fn write_table(
        out: &mut dyn Sink,
        count: u64,
        n_clusters: u64,
        entry: impl Fn(u64) -> u64,
    ) -> Result<(), DiskError> {
        let mut bytes = Vec::with_capacity((n_clusters * CLUSTER_SIZE) as usize);
        for i in 0..count {
            bytes.extend_from_slice(&entry(i).to_be_bytes());
        }
        bytes.resize((n_clusters * CLUSTER_SIZE) as usize, 0);
        out.write_all(&bytes).map_err(DiskError::Io)
    }

    /// Writes the image front to back; exactly [`Qcow2Plan::size`] bytes.
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        let header = self.header();
        out.write_all(&header).map_err(DiskError::Io)?;
        out.zeros(CLUSTER_SIZE - header.len() as u64)
            .map_err(DiskError::Io)?;

        // L1: each L1 index with data points at its L2 table, in order; the rest are zero.
        let mut l1 = vec![0u64; self.l1_entries as usize];
        for (rank, &index) in self.l2_tables.iter().enumerate() {
            l1[index as usize] = (self.l2_offset() + rank as u64 * CLUSTER_SIZE) | COPIED;
        }
        Self::write_table(out, self.l1_entries, self.l1_clusters, |i| l1[i as usize])?;

        let blocks_offset = self.refcount_blocks_offset();
        Self::write_table(
            out,
            self.refcount_blocks,
            self.refcount_table_clusters,
            |i| blocks_offset + i * CLUSTER_SIZE,
        )?;

        // Refcount blocks: 1 for every cluster of the file, 0 past its end.
        let mut block = vec![0u8; CLUSTER_SIZE as usize];
        for b in 0..self.refcount_blocks {
            let first = b * REFCOUNT_BLOCK_ENTRIES;
            let used = self
                .clusters
                .saturating_sub(first)
                .min(REFCOUNT_BLOCK_ENTRIES) as usize;
            block.fill(0);
            for entry in block.chunks_exact_mut(2).take(used) {
                entry.copy_from_slice(&1u16.to_be_bytes());
            }
            out.write_all(&block).map_err(DiskError::Io)?;
        }

        // L2 tables: guest cluster → its data cluster, which follow in the same order.
        let indices = self.nonzero.indices();
        let data_offset = self.data_offset();
        let mut rank = 0;
        for &table in &self.l2_tables {
            block.fill(0);
            let end = (table + 1) * L2_ENTRIES;
            while rank < indices.len() && indices[rank] < end {
                let slot = (indices[rank] % L2_ENTRIES) as usize * 8;
                let entry = (data_offset + rank as u64 * CLUSTER_SIZE) | COPIED;
                block[slot..slot + 8].copy_from_slice(&entry.to_be_bytes());
                rank += 1;
            }
            out.write_all(&block).map_err(DiskError::Io)?;
        }

        let mut reader = ChunkReader::open(&self.raw, CLUSTER_SIZE)?;
        for &index in indices {
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
    use std::collections::BTreeMap;

    const MIB: u64 = 1 << 20;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Reads a qcow2 image back by following its tables, checking that every host cluster is
    /// used once and has refcount 1: the virtual size and the stored guest clusters.
    fn read_back(img: &[u8]) -> (u64, BTreeMap<u64, Vec<u8>>) {
        assert_eq!(&img[..4], MAGIC);
        assert_eq!(be32(img, 4), 3);
        let cluster = 1u64 << be32(img, 20);
        assert_eq!(img.len() as u64 % cluster, 0);
        let clusters = img.len() as u64 / cluster;
        let size = be64(img, 24);
        let l1_size = be32(img, 36) as usize;
        let l1_offset = be64(img, 40) as usize;
        let rt_offset = be64(img, 48) as usize;
        let rt_clusters = be32(img, 56) as u64;
        assert_eq!(be32(img, 96), 4);
        assert_eq!(be32(img, 100), 104);
        // End of header extensions.
        assert_eq!(be64(img, 104), 0);

        let mut uses = vec![0u32; clusters as usize];
        let mut mark = |offset: u64, n: u64| {
            assert_eq!(offset % cluster, 0);
            for c in offset / cluster..offset / cluster + n {
                uses[c as usize] += 1;
            }
        };
        mark(0, 1);
        mark(l1_offset as u64, (l1_size as u64 * 8).div_ceil(cluster));
        mark(rt_offset as u64, rt_clusters);

        let mut stored = BTreeMap::new();
        for i in 0..l1_size {
            let l1e = be64(img, l1_offset + 8 * i);
            if l1e == 0 {
                continue;
            }
            assert_ne!(l1e & COPIED, 0);
            let l2 = (l1e & !COPIED) as usize;
            mark(l2 as u64, 1);
            for j in 0..(cluster / 8) as usize {
                let l2e = be64(img, l2 + 8 * j);
                if l2e == 0 {
                    continue;
                }
                assert_eq!(l2e & !COPIED & ((1 << 56) - 1), l2e & !COPIED);
                assert_ne!(l2e & COPIED, 0);
                let host = (l2e & !COPIED) as usize;
                mark(host as u64, 1);
                let guest = (i as u64 * (cluster / 8) + j as u64) * cluster;
                assert!(guest < size);
                stored.insert(guest, img[host..host + cluster as usize].to_vec());
            }
        }
        let mut refcount = |c: u64| {
            let per_block = cluster / 2;
            let rte = be64(img, rt_offset + 8 * (c / per_block) as usize) as usize;
            mark(rte as u64, 0);
            assert_ne!(rte, 0, "cluster {c} has no refcount block");
            let at = rte + 2 * (c % per_block) as usize;
            u16::from_be_bytes([img[at], img[at + 1]])
        };
        let refcounts: Vec<u16> = (0..clusters).map(&mut refcount).collect();
        // Refcount blocks themselves are used too.
        let rt_entries = rt_clusters * cluster / 8;
        for k in 0..rt_entries as usize {
            let rte = be64(img, rt_offset + 8 * k);
            if rte != 0 {
                uses[(rte / cluster) as usize] += 1;
            }
        }
        for c in 0..clusters as usize {
            assert_eq!(uses[c], 1, "host cluster {c} is used {} times", uses[c]);
            assert_eq!(refcounts[c], 1, "host cluster {c}'s refcount");
        }
        (size, stored)
    }

    /// The raw disk an image reads as.
    fn to_raw(img: &[u8]) -> Vec<u8> {
        let (size, stored) = read_back(img);
        let mut raw = vec![0; size as usize];
        for (guest, bytes) in stored {
            let guest = guest as usize;
            let n = (raw.len() - guest).min(bytes.len());
            raw[guest..guest + n].copy_from_slice(&bytes[..n]);
        }
        raw
    }

    fn convert(raw: Data) -> (Qcow2Plan, Vec<u8>) {
        let plan = plan(raw).unwrap();
        let mut img = Vec::new();
        plan.write(&mut img).unwrap();
        assert_eq!(img.len() as u64, plan.size());
        (plan, img)
    }

    #[test]
    fn stores_only_non_zero_clusters_and_reads_back() {
        // A sparse 1100 MiB file: three L2 tables' worth of virtual disk, the middle one empty.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw");
        let len = 1100 * MIB;
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        use std::os::unix::fs::FileExt;
        let marks = [
            (0, 1u8),
            (3 * CLUSTER_SIZE + 100, 2),
            (512 * MIB - 1, 3),
            (1024 * MIB, 4),
            (len - 1, 5),
        ];
        for (at, byte) in marks {
            file.write_all_at(&[byte], at).unwrap();
        }
        let (plan, img) = convert(Data::File { path, len });
        assert_eq!(plan.data_clusters(), 5);
        assert_eq!(plan.virtual_size(), len);
        // Header, L1, refcount table, one refcount block, two L2 tables, five data clusters.
        assert_eq!(plan.size(), (1 + 1 + 1 + 1 + 2 + 5) * CLUSTER_SIZE);
        assert_eq!(be32(&img, 36), 3, "L1 entries for 1100 MiB");
        assert_eq!(be64(&img, 24), len);
        let (size, stored) = read_back(&img);
        assert_eq!(size, len);
        let expected: Vec<(u64, u64, u8)> = marks
            .iter()
            .map(|&(at, byte)| (at / CLUSTER_SIZE * CLUSTER_SIZE, at % CLUSTER_SIZE, byte))
            .collect();
        assert_eq!(
            stored.keys().copied().collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (guest, within, byte) in expected {
            let cluster = &stored[&guest];
            let mut want = vec![0; CLUSTER_SIZE as usize];
            want[within as usize] = byte;
            assert!(cluster == &want, "cluster at {guest}");
        }
    }

    #[test]
    fn a_disk_of_zeros_has_only_metadata() {
        let raw = vec![0u8; (3 * MIB) as usize];
        let (plan, img) = convert(Data::Bytes(raw.clone()));
        assert_eq!(plan.size(), 4 * CLUSTER_SIZE);
        assert!(to_raw(&img) == raw);
    }

    #[test]
    fn a_partial_last_cluster_is_padded() {
        let mut raw = vec![0u8; 65536 + 1536];
        raw[65536 + 1535] = 0xaa;
        let (plan, img) = convert(Data::Bytes(raw.clone()));
        assert_eq!(plan.data_clusters(), 1);
        assert_eq!(be64(&img, 24), 65536 + 1536);
        assert!(to_raw(&img) == raw);
    }

    #[test]
    fn refcount_blocks_grow_with_the_file() {
        // One block covers 32768 clusters, itself and the refcount table's cluster included.
        assert_eq!(refcount_layout(10), (1, 1, 12));
        assert_eq!(refcount_layout(32766), (1, 1, 32768));
        assert_eq!(refcount_layout(32767), (1, 2, 32770));
        // 8192 blocks fill one table cluster; the 8193rd needs a second.
        let full = 8192 * REFCOUNT_BLOCK_ENTRIES;
        assert_eq!(refcount_layout(full - 8193), (1, 8192, full));
        assert_eq!(refcount_layout(full - 8192), (2, 8193, full + 3));
    }

    #[test]
    fn the_raw_size_must_be_whole_sectors() {
        for len in [0, 1000] {
            let err = plan(Data::Bytes(vec![0; len])).unwrap_err();
            assert!(matches!(err, DiskError::Invalid(_)), "{len}: {err}");
        }
    }

    #[test]
    fn the_same_disk_gives_the_same_bytes() {
        let mut raw = vec![0u8; (2 * MIB) as usize];
        raw[700_000] = 9;
        let raw = Data::Bytes(raw);
        assert_eq!(convert(raw.clone()).1, convert(raw).1);
    }
}
