//! `vmdk`: a raw disk image as a monolithic *streamOptimized* VMDK, the variant vSphere, ESXi
//! and OVA/OVF imports take.
//!
//! The file, in 512-byte sectors:
//!
//! | sectors | content |
//! |---|---|
//! | 0 | sparse extent header: `KDMV`, version 3, compressed grains with markers, grain directory "at the end" |
//! | 1 ..= 20 | the embedded descriptor (text, zero padded) |
//! | 21 .. 128 | zeros, so the first grain starts on a grain boundary (`overHead` = 128) |
//! | 128 .. | for every grain (64 KiB of the disk) that is not all zeros, in disk order: a grain marker (its first sector number on the disk, the compressed length) and the zlib-compressed grain, padded to a sector; after the last grain of each 32 MiB span, a grain table marker and that span's grain table |
//! | end − 4 − n | grain directory marker |
//! | end − 3 − n .. end − 3 | grain directory: the sector of each span's grain table, or 0 (n sectors) |
//! | end − 3 | footer marker |
//! | end − 2 | footer: the header again, with the real grain directory offset |
//! | end − 1 | end-of-stream marker |
//!
//! Grain tables that would only hold zeros are left out (their directory entry is 0): the
//! metadata is 2.5 KiB per 32 MiB span that holds data, plus 4 bytes per span for the
//! directory, so a mostly empty 25 GiB disk costs a few tens of kilobytes beyond its grains.
//!
//! Compressed sizes are only known once a grain is compressed, so the output cannot be laid out
//! from sizes alone as the other writers here are. Instead [`plan`] reads the raw disk once:
//! it finds the data regions with `SEEK_DATA`/`SEEK_HOLE` (holes are never read), reads the
//! grains that overlap them, keeps the numbers of those that are not all zeros, and derives
//! the descriptor's `CID` from their content; the plan keeps 4 bytes per non-zero grain.
//! [`VmdkPlan::write`] then emits front to back,
//! reading and compressing those grains again, 64 at a time with the compression spread over
//! every core (each grain is its own zlib stream, so the bytes do not depend on the core
//! count); it holds one batch (4 MiB and its compressed form) and one grain table at a time,
//! plus the grain directory (4 bytes per 32 MiB of disk). The second read checks that the
//! content is still what was planned.
//!
//! Nothing depends on the output file's name, the clock or randomness: the extent line names
//! the fixed file `disk.vmdk`, the CID is a CRC-32 of the capacity and the non-zero grains,
//! and grains are compressed with zlib at a fixed level.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::{Data, DiskError, Sink};

pub const SECTOR: u64 = 512;
/// Sectors per grain, the unit of allocation and compression.
pub const GRAIN_SECTORS: u64 = 128;
/// Bytes per grain: 64 KiB.
pub const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Entries per grain table: one table covers 32 MiB of the disk.
pub const GTES_PER_GT: u64 = 512;
/// The embedded descriptor's first sector.
pub const DESCRIPTOR_OFFSET: u64 = 1;
/// Sectors reserved for the descriptor.
pub const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain (header, descriptor, padding): one grain.
pub const OVERHEAD_SECTORS: u64 = GRAIN_SECTORS;
/// The file name in the descriptor's extent line. A monolithic file's extent is the file
/// itself and readers do not open it by name, so a fixed name keeps the bytes independent of
/// where the output goes.
pub const EXTENT_NAME: &str = "disk.vmdk";
/// Grains read, then compressed on every core, at a time (4 MiB of disk).
const BATCH_GRAINS: usize = 64;
/// The zlib level grains are compressed with.
pub const LEVEL: u32 = 6;
/// The largest disk: grain table entries are 32-bit sector numbers, and VMware's sparse
/// extents stop at 2 TiB.
pub const MAX_CAPACITY: u64 = (1 << 32) * SECTOR;

const MAGIC: &[u8; 4] = b"KDMV";
const VERSION: u32 = 3;
/// Valid newline detection bytes, compressed grains, markers.
const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;
const COMPRESS_DEFLATE: u16 = 1;
/// The header's grain directory offset in a stream: "see the footer".
const GD_AT_END: u64 = u64::MAX;
const GT_SECTORS: u64 = GTES_PER_GT * 4 / SECTOR;
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;
/// A grain marker: the grain's first sector (u64) and the compressed length (u32).
const GRAIN_MARKER_LEN: usize = 12;

/// A raw disk, scanned and ready to be written as a streamOptimized VMDK.
#[derive(Debug, Clone)]
pub struct VmdkPlan {
    raw: Data,
    /// Numbers of the grains that are not all zeros, ascending.
    grains: Vec<u32>,
    /// CRC-32 of the capacity and the non-zero grains (number and bytes).
    digest: u32,
}

/// Scans `raw` (a raw disk image, a whole number of sectors, at most [`MAX_CAPACITY`]) for
/// the grains that hold anything but zeros. Reads the data regions of the file once; holes
/// are skipped without reading.
pub fn plan(raw: Data) -> Result<VmdkPlan, DiskError> {
    let len = raw.len();
    if len == 0 || !len.is_multiple_of(SECTOR) {
        return Err(DiskError::Invalid(format!(
            "a VMDK needs a raw disk of a whole number of {SECTOR}-byte sectors, got {len} bytes"
        )));
    }
    if len > MAX_CAPACITY {
        return Err(DiskError::Invalid(format!(
            "a VMDK sparse extent holds at most {MAX_CAPACITY} bytes, the raw disk is {len}"
        )));
    }
    let source = Source::open(&raw)?;
    let mut crc = content_crc(len);
    let mut grains = Vec::new();
    let mut buf = vec![0u8; GRAIN as usize];
    let mut last = None;
    for (start, end) in source.data_regions()? {
        for grain in start / GRAIN..end.div_ceil(GRAIN) {
            if last.is_some_and(|l| l >= grain) {
                continue;
            }
            last = Some(grain);
            let bytes = source.read_grain(grain, &mut buf)?;
            if !is_zero(bytes) {
                add_grain(&mut crc, grain, bytes);
                grains.push(grain as u32);
            }
        }
    }
    Ok(VmdkPlan {
        raw,
        grains,
        digest: crc.sum(),
    })
}

/// [`plan`] then [`VmdkPlan::write`]: the raw disk `raw` as a streamOptimized VMDK into
/// `out`. Returns the bytes written.
pub fn write(raw: &Data, out: &mut dyn Sink) -> Result<u64, DiskError> {
    plan(raw.clone())?.write(out)
}

impl VmdkPlan {
    /// The virtual disk's size in bytes (the raw image's size).
    pub fn capacity(&self) -> u64 {
        self.raw.len()
    }

    /// How many grains (64 KiB each) hold data and are written.
    pub fn grain_count(&self) -> usize {
        self.grains.len()
    }

    /// The descriptor's content ID: derived from the content, never `ffffffff` (no parent)
    /// or `fffffffe`.
    pub fn cid(&self) -> u32 {
        if self.digest >= 0xFFFF_FFFE {
            self.digest ^ 0x8000_0000
        } else {
            self.digest
        }
    }

    /// The embedded descriptor text.
    pub fn descriptor(&self) -> String {
        let sectors = self.capacity() / SECTOR;
        // 255 heads and 63 sectors per track, as VMware uses for SCSI disks; cylinders cover
        // the disk, capped at what the field can say.
        let cylinders = sectors.div_ceil(255 * 63).min(65535);
        format!(
            "# Disk DescriptorFile\n\
             version=1\n\
             encoding=\"UTF-8\"\n\
             CID={cid:08x}\n\
             parentCID=ffffffff\n\
             createType=\"streamOptimized\"\n\
             \n\
             # Extent description\n\
             RW {sectors} SPARSE \"{EXTENT_NAME}\"\n\
             \n\
             # The Disk Data Base\n\
             #DDB\n\
             \n\
             ddb.virtualHWVersion = \"4\"\n\
             ddb.adapterType = \"lsilogic\"\n\
             ddb.geometry.cylinders = \"{cylinders}\"\n\
             ddb.geometry.heads = \"255\"\n\
             ddb.geometry.sectors = \"63\"\n",
            cid = self.cid(),
        )
    }

    /// Writes the VMDK front to back into `out` and returns its length in bytes. Fails if the
    /// raw disk no longer has the content it was planned with.
    pub fn write(&self, out: &mut dyn Sink) -> Result<u64, DiskError> {
        let capacity = self.capacity() / SECTOR;
        let source = Source::open(&self.raw)?;
        let io = DiskError::Io;

        out.write_all(&header(capacity, GD_AT_END)).map_err(io)?;
        let descriptor = self.descriptor();
        let room = (DESCRIPTOR_SECTORS * SECTOR) as usize;
        if descriptor.len() > room {
            return Err(DiskError::Invalid(format!(
                "the VMDK descriptor is {} bytes, {room} fit",
                descriptor.len()
            )));
        }
        out.write_all(descriptor.as_bytes()).map_err(io)?;
        out.zeros(OVERHEAD_SECTORS * SECTOR - SECTOR - descriptor.len() as u64)
            .map_err(io)?;

        let mut stream = Stream {
            out,
            sector: OVERHEAD_SECTORS,
        };
        let gt_count = (capacity.div_ceil(GRAIN_SECTORS)).div_ceil(GTES_PER_GT);
        let mut gd = vec![0u32; gt_count as usize];
        let mut gt = vec![0u32; GTES_PER_GT as usize];
        let mut open_gt: Option<u64> = None;
        let mut crc = content_crc(self.capacity());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        // A batch of grains is read in order, compressed on every core (each grain is its own
        // zlib stream, so the bytes do not depend on the thread count), then written in order.
        let mut buffers = vec![vec![0u8; GRAIN as usize]; BATCH_GRAINS];
        let mut packed = vec![Vec::new(); BATCH_GRAINS];
        for batch in self.grains.chunks(BATCH_GRAINS) {
            let mut lens = Vec::with_capacity(batch.len());
            for (&grain, buf) in batch.iter().zip(buffers.iter_mut()) {
                let bytes = source.read_grain(u64::from(grain), buf)?;
                add_grain(&mut crc, u64::from(grain), bytes);
                lens.push(bytes.len());
            }
            let per_thread = batch.len().div_ceil(threads);
            std::thread::scope(|scope| -> Result<(), DiskError> {
                let handles: Vec<_> = batch
                    .chunks(per_thread)
                    .zip(buffers.chunks(per_thread))
                    .zip(lens.chunks(per_thread))
                    .zip(packed.chunks_mut(per_thread))
                    .map(|(((grains, bufs), lens), outs)| {
                        scope.spawn(move || -> Result<(), DiskError> {
                            let mut compress = Compress::new(Compression::new(LEVEL), true);
                            for (((grain, buf), len), out) in
                                grains.iter().zip(bufs).zip(lens).zip(outs)
                            {
                                pack_grain(&mut compress, u64::from(*grain), &buf[..*len], out)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                for handle in handles {
                    match handle.join() {
                        Ok(result) => result?,
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                Ok(())
            })?;
            for (&grain, grain_packed) in batch.iter().zip(&packed) {
                let grain = u64::from(grain);
                let table = grain / GTES_PER_GT;
                if open_gt != Some(table) {
                    if let Some(done) = open_gt {
                        gd[done as usize] = stream.grain_table(&gt)?;
                        gt.fill(0);
                    }
                    open_gt = Some(table);
                }
                gt[(grain % GTES_PER_GT) as usize] = stream.position()?;
                stream.put(grain_packed)?;
            }
        }
        if let Some(done) = open_gt {
            gd[done as usize] = stream.grain_table(&gt)?;
        }
        if crc.sum() != self.digest {
            return Err(DiskError::Invalid(format!(
                "{} changed while the VMDK was written",
                source.name()
            )));
        }

        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        stream.put(&marker(gd_sectors, MARKER_GD))?;
        let gd_offset = stream.sector;
        stream.put(&padded(&le_words(&gd)))?;
        stream.put(&marker(1, MARKER_FOOTER))?;
        stream.put(&header(capacity, gd_offset))?;
        stream.put(&marker(0, MARKER_EOS))?;
        Ok(stream.sector * SECTOR)
    }
}

/// The output after the header and descriptor, counted in sectors.
struct Stream<'a> {
    out: &'a mut dyn Sink,
    sector: u64,
}

impl Stream<'_> {
    /// Appends whole sectors.
    fn put(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        debug_assert!((bytes.len() as u64).is_multiple_of(SECTOR));
        self.out.write_all(bytes).map_err(DiskError::Io)?;
        self.sector += bytes.len() as u64 / SECTOR;
        Ok(())
    }

    /// The next sector's number, as tables store it.
    fn position(&self) -> Result<u32, DiskError> {
        u32::try_from(self.sector).map_err(|_| {
            DiskError::Invalid(format!(
                "the VMDK outgrew the {} bytes its 32-bit tables can address",
                (1u64 << 32) * SECTOR
            ))
        })
    }

    /// Appends a grain table with its marker; returns where the table starts.
    fn grain_table(&mut self, gt: &[u32]) -> Result<u32, DiskError> {
        self.put(&marker(GT_SECTORS, MARKER_GT))?;
        let at = self.position()?;
        self.put(&le_words(gt))?;
        Ok(at)
    }
}

/// Compresses one grain into `packed`: marker, zlib stream, zeros to the next sector.
fn pack_grain(
    compress: &mut Compress,
    grain: u64,
    bytes: &[u8],
    packed: &mut Vec<u8>,
) -> Result<(), DiskError> {
    packed.clear();
    packed.extend_from_slice(&(grain * GRAIN_SECTORS).to_le_bytes());
    packed.extend_from_slice(&[0; 4]);
    compress.reset();
    loop {
        let consumed = compress.total_in() as usize;
        // zlib's worst case for 64 KiB is a few dozen bytes over; one round is the rule.
        packed.reserve(bytes.len() - consumed + 1024);
        let status = compress
            .compress_vec(&bytes[consumed..], packed, FlushCompress::Finish)
            .map_err(|e| DiskError::Io(std::io::Error::other(e)))?;
        if status == Status::StreamEnd {
            break;
        }
    }
    let size = (packed.len() - GRAIN_MARKER_LEN) as u32;
    packed[8..12].copy_from_slice(&size.to_le_bytes());
    packed.resize(packed.len().next_multiple_of(SECTOR as usize), 0);
    Ok(())
}

/// The sparse extent header (and footer): sizes in sectors.
fn header(capacity: u64, gd_offset: u64) -> [u8; SECTOR as usize] {
    let mut h = [0u8; SECTOR as usize];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&DESCRIPTOR_OFFSET.to_le_bytes());
    h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GTES_PER_GT as u32).to_le_bytes());
    // 48..56: no redundant grain directory.
    h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD_SECTORS.to_le_bytes());
    // 72: cleanly shut down. 73..77: the newline detection bytes.
    h[73..77].copy_from_slice(b"\n \r\n");
    h[77..79].copy_from_slice(&COMPRESS_DEFLATE.to_le_bytes());
    h
}

/// A metadata marker sector: `sectors` of `kind` follow.
fn marker(sectors: u64, kind: u32) -> [u8; SECTOR as usize] {
    let mut m = [0u8; SECTOR as usize];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    // 8..12: size 0 tells a metadata marker from a grain marker.
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

fn le_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn padded(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(v.len().next_multiple_of(SECTOR as usize), 0);
    v
}

fn content_crc(capacity: u64) -> Crc {
    let mut crc = Crc::new();
    crc.update(&capacity.to_le_bytes());
    crc
}

fn add_grain(crc: &mut Crc, grain: u64, bytes: &[u8]) {
    crc.update(&grain.to_le_bytes());
    crc.update(bytes);
}

fn is_zero(bytes: &[u8]) -> bool {
    // OR-folding fixed chunks vectorises; an early exit per chunk keeps data grains cheap.
    bytes
        .chunks(256)
        .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// The raw disk being read.
enum Source<'a> {
    Bytes(std::borrow::Cow<'a, [u8]>),
    File {
        file: File,
        path: &'a Path,
        len: u64,
    },
}

impl<'a> Source<'a> {
    fn open(raw: &'a Data) -> Result<Self, DiskError> {
        match raw {
            Data::Bytes(bytes) => Ok(Source::Bytes(bytes.into())),
            Data::Part { .. } => Ok(Source::Bytes(raw.read_all()?.into())),
            Data::File { path, len } => {
                let file = File::open(path).map_err(|e| {
                    DiskError::Io(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ))
                })?;
                let found = file.metadata().map_err(DiskError::Io)?.len();
                if found != *len {
                    return Err(changed(path, *len, found));
                }
                Ok(Source::File {
                    file,
                    path,
                    len: *len,
                })
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    fn name(&self) -> String {
        match self {
            Source::Bytes(_) => "the raw disk".into(),
            Source::File { path, .. } => path.display().to_string(),
        }
    }

    /// Byte ranges that may hold data, ascending; everything else reads as zeros. In memory
    /// that is everything; a file reports its holes.
    fn data_regions(&self) -> Result<Vec<(u64, u64)>, DiskError> {
        let Source::File { file, len, .. } = self else {
            return Ok(vec![(0, self.len())]);
        };
        use rustix::fs::{SeekFrom, seek};
        let mut regions = Vec::new();
        let mut pos = 0;
        while pos < *len {
            let start = match seek(file, SeekFrom::Data(pos)) {
                Ok(start) => start,
                // No data at or after `pos`.
                Err(rustix::io::Errno::NXIO) => break,
                Err(e) => return Err(DiskError::Io(e.into())),
            };
            if start >= *len {
                break;
            }
            let end = seek(file, SeekFrom::Hole(start))
                .map_err(|e| DiskError::Io(e.into()))?
                .min(*len);
            regions.push((start, end));
            pos = end;
        }
        Ok(regions)
    }

    /// Grain `grain`'s bytes: a whole grain, or less for the last one of a disk that is not
    /// a whole number of grains.
    fn read_grain<'b>(&self, grain: u64, buf: &'b mut [u8]) -> Result<&'b [u8], DiskError> {
        let start = grain * GRAIN;
        let n = GRAIN.min(self.len() - start) as usize;
        let buf = &mut buf[..n];
        match self {
            Source::Bytes(bytes) => buf.copy_from_slice(&bytes[start as usize..][..n]),
            Source::File { file, path, len } => {
                file.read_exact_at(buf, start).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        let found = file.metadata().map(|m| m.len()).unwrap_or(0);
                        changed(path, *len, found)
                    } else {
                        DiskError::Io(e)
                    }
                })?;
            }
        }
        Ok(buf)
    }
}

fn changed(path: &Path, expected: u64, found: u64) -> DiskError {
    DiskError::SourceChanged {
        path: PathBuf::from(path),
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileSink;
    use std::process::Command;

    const MIB: u64 = 1 << 20;

    /// Deterministic bytes: text-like runs (compressible) alternating with xorshift noise
    /// (incompressible, so some grains compress to more than a grain).
    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        let mut line = 0u64;
        while out.len() < len {
            if (out.len() / 100_000) % 2 == 0 {
                out.extend_from_slice(
                    format!("line {line} of block {seed}: lkb vmdk\n").as_bytes(),
                );
                line += 1;
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    /// A sparse raw disk of `size` bytes with `writes` at their offsets.
    fn sparse_raw(path: &Path, size: u64, writes: &[(u64, Vec<u8>)]) -> Data {
        let file = File::create(path).unwrap();
        file.set_len(size).unwrap();
        for (offset, bytes) in writes {
            file.write_all_at(bytes, *offset).unwrap();
        }
        Data::File {
            path: path.to_owned(),
            len: size,
        }
    }

    fn write_file(raw: &Data, path: &Path) -> u64 {
        let mut sink = FileSink::new(File::create(path).unwrap());
        let n = write(raw, &mut sink).unwrap();
        assert_eq!(sink.position(), n);
        sink.finish().unwrap();
        n
    }

    fn qemu_img(args: &[&str]) -> (bool, String) {
        let out = Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img must be installed");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn s(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// The raw disk the format tests share: 100 MiB + 3 sectors (four grain tables, the last
    /// grain partial) with data at the start, unaligned noise in the second table's span, an
    /// allocated all-zero MiB alone in the third table's span, and bytes in the last sector.
    fn example(dir: &Path) -> Data {
        sparse_raw(
            &dir.join("disk.raw"),
            100 * MIB + 3 * SECTOR,
            &[
                (0, pattern(1, MIB as usize)),
                (40 * MIB + 100, pattern(2, 200 * 1024 + 7)),
                (70 * MIB, vec![0; MIB as usize]),
                (100 * MIB + 2 * SECTOR + 17, vec![0xAB; 400]),
            ],
        )
    }

    /// Grains with any non-zero byte, counted the simple way.
    fn nonzero_grains(raw: &[u8]) -> Vec<u32> {
        raw.chunks(GRAIN as usize)
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&b| b != 0))
            .map(|(i, _)| i as u32)
            .collect()
    }

    #[test]
    fn qemu_reads_what_we_write() {
        let dir = tempfile::tempdir().unwrap();
        let raw = example(dir.path());
        let raw_path = dir.path().join("disk.raw");
        let vmdk = dir.path().join("out.vmdk");
        let planned = plan(raw.clone()).unwrap();
        let bytes = write_file(&raw, &vmdk);
        assert_eq!(std::fs::metadata(&vmdk).unwrap().len(), bytes);
        let content = std::fs::read(&raw_path).unwrap();
        assert_eq!(planned.grains, nonzero_grains(&content));

        let (ok, info) = qemu_img(&["info", "--output=json", s(&vmdk)]);
        assert!(ok, "{info}");
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["format"], "vmdk", "{info}");
        assert_eq!(info["virtual-size"], raw.len(), "{info}");
        let data = &info["format-specific"]["data"];
        assert_eq!(data["create-type"], "streamOptimized", "{info}");
        assert_eq!(data["cid"], planned.cid(), "{info}");
        assert_eq!(data["parent-cid"], 0xFFFF_FFFFu32, "{info}");
        assert_eq!(data["extents"][0]["compressed"], true, "{info}");
        assert_eq!(data["extents"][0]["cluster-size"], GRAIN, "{info}");

        let (ok, check) = qemu_img(&["check", s(&vmdk)]);
        assert!(ok && check.contains("No errors were found"), "{check}");

        let (ok, compare) =
            qemu_img(&["compare", "-f", "raw", "-F", "vmdk", s(&raw_path), s(&vmdk)]);
        assert!(ok && compare.contains("Images are identical"), "{compare}");

        let back = dir.path().join("back.raw");
        let (ok, convert) = qemu_img(&["convert", "-f", "vmdk", "-O", "raw", s(&vmdk), s(&back)]);
        assert!(ok, "{convert}");
        assert!(
            std::fs::read(&back).unwrap() == content,
            "round trip differs"
        );
    }

    #[test]
    fn layout_follows_the_stream_format() {
        let dir = tempfile::tempdir().unwrap();
        let raw = example(dir.path());
        let vmdk = dir.path().join("out.vmdk");
        write_file(&raw, &vmdk);
        let file = std::fs::read(&vmdk).unwrap();
        let planned = plan(raw.clone()).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
        let sector = |n: u64| (n * SECTOR) as usize;
        let capacity = raw.len() / SECTOR;

        // Header.
        assert_eq!(&file[0..4], b"KDMV");
        assert_eq!(u32_at(4), 3);
        assert_eq!(u32_at(8), 0x3_0001);
        assert_eq!(u64_at(12), capacity);
        assert_eq!(u64_at(20), 128);
        assert_eq!((u64_at(28), u64_at(36)), (1, 20));
        assert_eq!(u32_at(44), 512);
        assert_eq!(u64_at(48), 0);
        assert_eq!(u64_at(56), u64::MAX);
        assert_eq!(u64_at(64), 128);
        assert_eq!(&file[72..79], b"\0\n \r\n\x01\0");
        assert!(file[79..512].iter().all(|&b| b == 0));

        // Descriptor.
        let text = &file[512..sector(21)];
        let end = text.iter().position(|&b| b == 0).unwrap();
        let text = std::str::from_utf8(&text[..end]).unwrap();
        assert!(
            text.starts_with("# Disk DescriptorFile\nversion=1\n"),
            "{text}"
        );
        for line in [
            format!("CID={:08x}\n", planned.cid()),
            "parentCID=ffffffff\n".into(),
            "createType=\"streamOptimized\"\n".into(),
            format!("RW {capacity} SPARSE \"disk.vmdk\"\n"),
            "ddb.adapterType = \"lsilogic\"\n".into(),
            format!(
                "ddb.geometry.cylinders = \"{}\"\n",
                capacity.div_ceil(255 * 63)
            ),
        ] {
            assert!(text.contains(&line), "{line:?} missing from\n{text}");
        }
        assert!(file[sector(1) + end..sector(128)].iter().all(|&b| b == 0));

        // Footer marker, footer (the header with the directory's offset), end of stream.
        let len = file.len();
        assert_eq!(len % 512, 0);
        let footer = &file[len - 1024..len - 512];
        assert_eq!(u64_at(len - 1536), 1);
        assert_eq!(u32_at(len - 1536 + 8), 0);
        assert_eq!(u32_at(len - 1536 + 12), 3);
        assert_eq!(&footer[..56], &file[..56]);
        assert_eq!(&footer[64..], &file[64..512]);
        assert!(file[len - 512..].iter().all(|&b| b == 0));
        let gd_offset = u64::from_le_bytes(footer[56..64].try_into().unwrap());

        // Walk the stream: grains in disk order, each table after its grains.
        let mut at = 128u64;
        let mut grains = Vec::new();
        let mut tables = Vec::new();
        loop {
            let p = sector(at);
            let (val, size, kind) = (u64_at(p), u32_at(p + 8), u32_at(p + 12));
            if size != 0 {
                assert_eq!(val % 128, 0, "grain marker LBA {val}");
                let mut z = flate2::Decompress::new(true);
                let mut out = Vec::with_capacity(GRAIN as usize);
                let status = z
                    .decompress_vec(
                        &file[p + 12..p + 12 + size as usize],
                        &mut out,
                        flate2::FlushDecompress::Finish,
                    )
                    .unwrap();
                assert_eq!(status, Status::StreamEnd);
                let expected = GRAIN.min(raw.len() - val * SECTOR);
                assert_eq!(out.len() as u64, expected);
                grains.push((val / 128, at));
                at += (12 + u64::from(size)).div_ceil(SECTOR);
                continue;
            }
            match kind {
                MARKER_GT => {
                    assert_eq!(val, 4);
                    tables.push(at + 1);
                    at += 5;
                }
                MARKER_GD => {
                    assert_eq!(at + 1, gd_offset);
                    assert_eq!(val, 1);
                    break;
                }
                other => panic!("marker {other} at sector {at}"),
            }
        }
        assert_eq!(
            grains.iter().map(|&(g, _)| g as u32).collect::<Vec<_>>(),
            planned.grains
        );
        assert_eq!(sector(gd_offset + 1), len - 1536);
        // Four tables' span; the third holds only the allocated zeros, so it is left out.
        let gd: Vec<u64> = (0..4)
            .map(|i| u64::from(u32_at(sector(gd_offset) + 4 * i)))
            .collect();
        assert_eq!(gd, vec![tables[0], tables[1], 0, tables[2]]);
        assert!(
            file[sector(gd_offset) + 16..len - 1536]
                .iter()
                .all(|&b| b == 0)
        );
        for (grain, at) in grains {
            let table = gd[(grain / 512) as usize];
            assert_eq!(
                u64::from(u32_at(sector(table) + 4 * (grain % 512) as usize)),
                at
            );
        }
    }

    #[test]
    fn holes_are_skipped_and_allocated_zeros_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let raw = example(dir.path());
        let regions = Source::open(&raw).unwrap().data_regions().unwrap();
        let covered = |at: u64| regions.iter().any(|&(s, e)| s <= at && at < e);
        assert!(covered(0) && covered(40 * MIB + 100) && covered(100 * MIB + 1024));
        assert!(covered(70 * MIB), "written zeros are data: {regions:?}");
        assert!(
            !covered(10 * MIB) && !covered(90 * MIB),
            "holes: {regions:?}"
        );
        let read: u64 = regions.iter().map(|(s, e)| e - s).sum();
        assert!(read < 4 * MIB, "{regions:?}");
    }

    #[test]
    fn output_depends_only_on_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let raw = example(dir.path());
        let content = std::fs::read(dir.path().join("disk.raw")).unwrap();
        let mut first = Vec::new();
        let n = write(&raw, &mut first).unwrap();
        assert_eq!(n, first.len() as u64);
        let mut again = Vec::new();
        write(&raw, &mut again).unwrap();
        assert!(first == again, "a second run differs");

        // The same disk in memory, and as a file without holes.
        let mut from_bytes = Vec::new();
        write(&Data::Bytes(content.clone()), &mut from_bytes).unwrap();
        assert!(first == from_bytes, "in-memory input differs");
        let dense = dir.path().join("dense.raw");
        std::fs::write(&dense, &content).unwrap();
        let mut from_dense = Vec::new();
        let dense = Data::File {
            path: dense,
            len: content.len() as u64,
        };
        write(&dense, &mut from_dense).unwrap();
        assert!(first == from_dense, "hole-free input differs");

        // One byte more changes the CID.
        let mut changed = content;
        changed[5 * MIB as usize] = 1;
        let a = plan(raw).unwrap();
        let b = plan(Data::Bytes(changed)).unwrap();
        assert_ne!(a.cid(), b.cid());
        assert_eq!(b.grain_count(), a.grain_count() + 1);
    }

    #[test]
    fn an_empty_disk_has_no_grains_or_tables() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sparse_raw(&dir.path().join("disk.raw"), 16 * MIB, &[]);
        let vmdk = dir.path().join("out.vmdk");
        let n = write_file(&raw, &vmdk);
        // Header, descriptor and padding; directory marker and one sector of directory;
        // footer marker, footer, end of stream.
        assert_eq!(n, (128 + 2 + 3) * SECTOR);
        let (ok, check) = qemu_img(&["check", s(&vmdk)]);
        assert!(ok, "{check}");
        let raw_path = dir.path().join("disk.raw");
        let (ok, compare) =
            qemu_img(&["compare", "-f", "raw", "-F", "vmdk", s(&raw_path), s(&vmdk)]);
        assert!(ok && compare.contains("Images are identical"), "{compare}");
    }

    #[test]
    fn a_raw_disk_must_be_whole_sectors() {
        for len in [0, 1000, 512 * 7 + 1] {
            let err = plan(Data::Bytes(vec![1; len])).unwrap_err();
            assert!(
                matches!(&err, DiskError::Invalid(m) if m.contains(&format!("got {len} bytes"))),
                "{err}"
            );
        }
        let err = write(&Data::Bytes(vec![0; 1000]), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DiskError::Invalid(_)), "{err}");
        let too_big = Data::File {
            path: "/nonexistent".into(),
            len: MAX_CAPACITY + SECTOR,
        };
        assert!(matches!(plan(too_big), Err(DiskError::Invalid(_))));
    }

    #[test]
    fn a_source_that_changes_after_planning_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let raw = sparse_raw(&path, 4 * MIB, &[(MIB, pattern(3, 1000))]);
        let planned = plan(raw.clone()).unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(b"different", MIB)
            .unwrap();
        let err = planned.write(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("changed while"), "{err}");

        std::fs::write(&path, b"short").unwrap();
        let err = planned.write(&mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, DiskError::SourceChanged { expected, found: 5, .. } if expected == 4 * MIB),
            "{err}"
        );
    }
}
