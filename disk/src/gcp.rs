//! Google Compute Engine's image import format: a gzip-compressed tar holding one file,
//! `disk.raw`, the raw disk.
//!
//! GCE reads GNU tar (its import guide makes the file with `tar --format=oldgnu -Sczf`), so
//! the member is an old-GNU *sparse* member (type `S`): only the disk's non-zero regions are
//! stored, with a map of `(offset, length)` pairs in the header and in extension headers
//! after it. A 10 GiB disk of 100 MB content is a 100 MB member before compression, and
//! reading it costs what the data costs (the scan asks the file system where the data is).
//!
//! The bytes depend only on the disk and the options: the gzip header carries no name and no
//! time, and the member's time is a parameter.

use std::io::{Read as _, Write};

use flate2::{Compression, GzBuilder};

use crate::sparse::{ChunkReader, NonZero};
use crate::{Data, DiskError};

/// Granularity of the sparse map: regions start and end on 4 KiB boundaries.
const REGION: u64 = 4096;
const BLOCK: usize = 512;
/// GNU tar writes archives in records of 20 blocks; so does this.
const RECORD: u64 = 20 * BLOCK as u64;
/// Sparse map entries in the member's header, and in each extension header.
const HEADER_ENTRIES: usize = 4;
const EXTENSION_ENTRIES: usize = 21;

/// What the member carries besides the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpOptions {
    /// The member's modification time (seconds since the epoch).
    pub mtime: i64,
    /// gzip level (LinuxKit's image uses GNU tar's gzip default, 6).
    pub level: u32,
}

impl Default for GcpOptions {
    fn default() -> Self {
        GcpOptions { mtime: 0, level: 6 }
    }
}

/// Writes `raw` as `disk.raw` in a gzip-compressed GNU tar.
pub fn write(raw: &Data, options: &GcpOptions, out: &mut dyn Write) -> Result<(), DiskError> {
    let nonzero = NonZero::scan(raw, REGION)?;
    let regions = regions(&nonzero);
    let mut gz = GzBuilder::new()
        .operating_system(255)
        .write(out, Compression::new(options.level.min(9)));
    let stored: u64 = regions.iter().map(|(_, len)| len).sum();
    for header in headers(raw.len(), stored, options.mtime, &regions) {
        gz.write_all(&header).map_err(DiskError::Io)?;
    }
    let mut reader = ChunkReader::open(raw, REGION)?;
    for index in nonzero.indices() {
        gz.write_all(reader.read(*index)?).map_err(DiskError::Io)?;
    }
    // The data padded to a block, then the two zero blocks that end an archive, then the rest
    // of the record.
    let written = (1 + extension_count(regions.len()) as u64) * BLOCK as u64 + stored;
    let end = (written.next_multiple_of(BLOCK as u64) + 2 * BLOCK as u64).next_multiple_of(RECORD);
    std::io::copy(&mut std::io::repeat(0).take(end - written), &mut gz).map_err(DiskError::Io)?;
    gz.finish().map_err(DiskError::Io)?;
    Ok(())
}

/// Merges runs of non-zero chunks into `(offset, length)` regions. The last region ends at
/// the disk's end; when the disk ends in zeros, a zero-length region there marks its size, as
/// GNU tar writes it.
fn regions(nonzero: &NonZero) -> Vec<(u64, u64)> {
    let image_len = nonzero.image_len();
    let mut regions: Vec<(u64, u64)> = Vec::new();
    for index in nonzero.indices() {
        let start = index * REGION;
        let len = REGION.min(image_len - start);
        match regions.last_mut() {
            Some((at, run)) if *at + *run == start => *run += len,
            _ => regions.push((start, len)),
        }
    }
    if regions.last().is_none_or(|(at, len)| at + len < image_len) {
        regions.push((image_len, 0));
    }
    regions
}

/// Extension headers needed beyond the member header's four map entries.
fn extension_count(regions: usize) -> usize {
    regions
        .saturating_sub(HEADER_ENTRIES)
        .div_ceil(EXTENSION_ENTRIES)
}

/// The member header, then its extension headers.
fn headers(real_size: u64, stored: u64, mtime: i64, regions: &[(u64, u64)]) -> Vec<[u8; BLOCK]> {
    let mut header = [0u8; BLOCK];
    header[..8].copy_from_slice(b"disk.raw");
    number(&mut header[100..108], 0o644);
    number(&mut header[108..116], 0);
    number(&mut header[116..124], 0);
    number(&mut header[124..136], stored);
    number(&mut header[136..148], mtime.max(0) as u64);
    header[156] = b'S';
    // Old GNU magic: "ustar  \0".
    header[257..265].copy_from_slice(b"ustar  \0");
    header[265..269].copy_from_slice(b"root");
    header[297..301].copy_from_slice(b"root");
    let (first, rest) = regions.split_at(regions.len().min(HEADER_ENTRIES));
    for (i, (offset, len)) in first.iter().enumerate() {
        let at = 386 + i * 24;
        number(&mut header[at..at + 12], *offset);
        number(&mut header[at + 12..at + 24], *len);
    }
    header[482] = u8::from(!rest.is_empty());
    number(&mut header[483..495], real_size);
    checksum(&mut header);

    let mut out = vec![header];
    let chunks: Vec<&[(u64, u64)]> = rest.chunks(EXTENSION_ENTRIES).collect();
    for (n, chunk) in chunks.iter().enumerate() {
        let mut block = [0u8; BLOCK];
        for (i, (offset, len)) in chunk.iter().enumerate() {
            let at = i * 24;
            number(&mut block[at..at + 12], *offset);
            number(&mut block[at + 12..at + 24], *len);
        }
        block[504] = u8::from(n + 1 < chunks.len());
        out.push(block);
    }
    out
}

/// A tar number: octal digits and a NUL, or GNU's base-256 form (high bit set, big-endian)
/// when the octal digits do not fit (sizes of 8 GiB and more in a 12-byte field).
fn number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits * 3 >= 64 || value < 1u64 << (digits * 3) {
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let bytes = value.to_be_bytes();
        let at = field.len() - bytes.len();
        field[at..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

/// The header checksum: the byte sum with the checksum field read as spaces, as six octal
/// digits, a NUL and a space.
fn checksum(header: &mut [u8; BLOCK]) {
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    header[154] = 0;
    header[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tools::run;
    use std::os::unix::fs::FileExt;
    use std::process::Command;

    /// A sparse raw disk of `len` bytes with `writes` at their offsets.
    fn disk(dir: &std::path::Path, len: u64, writes: &[(u64, &[u8])]) -> Data {
        let path = dir.join("disk.img");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        for (at, bytes) in writes {
            file.write_all_at(bytes, *at).unwrap();
        }
        Data::File { path, len }
    }

    fn gcp(dir: &std::path::Path, raw: &Data) -> std::path::PathBuf {
        let path = dir.join("disk.img.tar.gz");
        let mut bytes = Vec::new();
        write(
            raw,
            &GcpOptions {
                mtime: 1_492_533_000,
                level: 6,
            },
            &mut bytes,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn gnu_tar_lists_one_sparse_disk_and_extracts_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // More regions than the header holds, so extension headers are used; one region
        // not on a 4 KiB boundary; data at the very end.
        let mut writes: Vec<(u64, Vec<u8>)> = (0..60u64)
            .map(|i| (i * (1 << 20) + 100, vec![i as u8 + 1; 5000]))
            .collect();
        writes.push((((64 << 20) - 3), vec![7, 8, 9]));
        let refs: Vec<(u64, &[u8])> = writes.iter().map(|(a, b)| (*a, b.as_slice())).collect();
        let raw = disk(dir.path(), 64 << 20, &refs);
        let archive = gcp(dir.path(), &raw);

        let listing = run(Command::new("tar").arg("-tvzf").arg(&archive));
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 1, "{listing}");
        assert!(lines[0].ends_with(" disk.raw"), "{listing}");
        assert!(lines[0].contains(&(64u64 << 20).to_string()), "{listing}");
        assert!(lines[0].contains("2017-04-18"), "{listing}");

        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("tar")
            .arg("-xzSf")
            .arg(&archive)
            .arg("-C")
            .arg(&out));
        let Data::File { path, .. } = &raw else {
            unreachable!()
        };
        assert_eq!(
            std::fs::read(out.join("disk.raw")).unwrap(),
            std::fs::read(path).unwrap()
        );
        // Deterministic.
        let again = std::fs::read(gcp(dir.path(), &raw)).unwrap();
        assert_eq!(again, std::fs::read(&archive).unwrap());
    }

    #[test]
    fn a_disk_ending_in_zeros_and_one_over_eight_gib_keep_their_size() {
        let dir = tempfile::tempdir().unwrap();
        for len in [1u64 << 20, 10 << 30] {
            let raw = disk(dir.path(), len, &[(510, &[0x55, 0xaa])]);
            let archive = gcp(dir.path(), &raw);
            let listing = run(Command::new("tar").arg("-tvzf").arg(&archive));
            assert!(listing.contains(&format!(" {len} ")), "{len}: {listing}");
            // Tiny: only the first 4 KiB is stored.
            assert!(std::fs::metadata(&archive).unwrap().len() < 4096);
        }
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let raw = disk(dir.path(), 1 << 20, &[(510, &[0x55, 0xaa])]);
        let archive = gcp(dir.path(), &raw);
        run(Command::new("tar")
            .arg("-xzSf")
            .arg(&archive)
            .arg("-C")
            .arg(&out));
        let bytes = std::fs::read(out.join("disk.raw")).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
    }

    #[test]
    fn numbers_switch_to_base_256_past_the_octal_range() {
        let mut field = [0u8; 12];
        number(&mut field, 0o777);
        assert_eq!(&field, b"00000000777\0");
        number(&mut field, 10 << 30);
        assert_eq!(field[0], 0x80);
        assert_eq!(u64::from_be_bytes(field[4..].try_into().unwrap()), 10 << 30);
    }
}
