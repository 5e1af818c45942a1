//! Finding the non-zero parts of a raw disk image, for writers that store only those.
//!
//! A raw disk from lkb's own writers is a sparse file: a 25 GiB disk may hold 150 MB of data
//! and holes everywhere else. [`NonZero::scan`] divides the image into fixed-size chunks (a
//! qcow2 cluster, a VHD block) and lists the chunks that hold at least one non-zero byte. It
//! asks the file system where the data is (`SEEK_DATA`/`SEEK_HOLE`), so holes cost nothing,
//! and reads only the data extents, so a data extent that happens to be all zeros (a
//! preallocated region) is not listed either. [`ChunkReader`] then reads listed chunks back
//! when the image is written, and [`copy_sparse`] writes the raw image itself with its zero
//! chunks as holes.
//!
//! Memory is one index (8 bytes) per non-zero chunk plus one chunk-sized buffer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Data, DiskError, Sink};

/// How much of a data extent is read at once while scanning.
const SCAN_BUFFER: u64 = 256 << 10;

/// The chunks of a raw image that hold a non-zero byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonZero {
    chunk_size: u64,
    image_len: u64,
    indices: Vec<u64>,
}

impl NonZero {
    /// Scans `raw` in chunks of `chunk_size` bytes (a power of two, at least 512). The last
    /// chunk may be shorter than `chunk_size` when the image is not a whole number of chunks.
    pub fn scan(raw: &Data, chunk_size: u64) -> Result<NonZero, DiskError> {
        assert!(
            chunk_size.is_power_of_two() && chunk_size >= 512,
            "chunk size {chunk_size} is not a power of two of at least 512"
        );
        let image_len = raw.len();
        let mut indices = Vec::new();
        let part;
        let raw = match raw {
            Data::Part { .. } => {
                part = Data::Bytes(raw.read_all()?);
                &part
            }
            _ => raw,
        };
        match raw {
            Data::Bytes(bytes) => {
                for (index, chunk) in bytes.chunks(chunk_size as usize).enumerate() {
                    if !is_zero(chunk) {
                        indices.push(index as u64);
                    }
                }
            }
            Data::Part { .. } => unreachable!("read into memory above"),
            Data::File { path, len } => {
                let file = open_checked(path, *len)?;
                let mut buf = vec![0; SCAN_BUFFER.min(chunk_size) as usize];
                let mut pos = 0;
                while let Some((start, end)) = next_data_extent(&file, pos, *len)? {
                    // Each chunk the extent touches, unless an earlier extent already found
                    // data in it.
                    let mut at = start;
                    while at < end {
                        let index = at / chunk_size;
                        let stop = ((index + 1) * chunk_size).min(end);
                        if indices.last() != Some(&index)
                            && !range_is_zero(&file, path, *len, at..stop, &mut buf)?
                        {
                            indices.push(index);
                        }
                        at = stop;
                    }
                    pos = end;
                }
            }
        }
        Ok(NonZero {
            chunk_size,
            image_len,
            indices,
        })
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The scanned image's length in bytes.
    pub fn image_len(&self) -> u64 {
        self.image_len
    }

    /// How many chunks the image has, the last one possibly short.
    pub fn chunk_count(&self) -> u64 {
        self.image_len.div_ceil(self.chunk_size)
    }

    /// The indices of the chunks holding a non-zero byte, ascending.
    pub fn indices(&self) -> &[u64] {
        &self.indices
    }
}

/// Reads whole chunks of a raw image, padding a short last chunk with zeros.
pub struct ChunkReader<'a> {
    raw: &'a Data,
    /// A [`Data::Part`]'s bytes, read when opened (parts are small).
    part: Option<Vec<u8>>,
    file: Option<File>,
    chunk_size: u64,
    buf: Vec<u8>,
}

impl<'a> ChunkReader<'a> {
    pub fn open(raw: &'a Data, chunk_size: u64) -> Result<Self, DiskError> {
        let file = match raw {
            Data::Bytes(_) | Data::Part { .. } => None,
            Data::File { path, len } => Some(open_checked(path, *len)?),
        };
        let part = match raw {
            Data::Part { .. } => Some(raw.read_all()?),
            _ => None,
        };
        Ok(ChunkReader {
            raw,
            part,
            file,
            chunk_size,
            buf: vec![0; chunk_size as usize],
        })
    }

    /// Chunk `index`, `chunk_size` bytes long.
    pub fn read(&mut self, index: u64) -> Result<&[u8], DiskError> {
        let start = index * self.chunk_size;
        let image_len = self.raw.len();
        assert!(start < image_len, "chunk {index} is past the image's end");
        let n = (image_len - start).min(self.chunk_size) as usize;
        match (self.raw, &self.file) {
            (Data::Part { .. }, _) => {
                let bytes = self.part.as_deref().unwrap_or_default();
                let start = start as usize;
                self.buf[..n].copy_from_slice(&bytes[start..start + n]);
            }
            (Data::Bytes(bytes), _) => {
                let start = start as usize;
                self.buf[..n].copy_from_slice(&bytes[start..start + n]);
            }
            (Data::File { path, len }, Some(file)) => {
                read_at(file, path, *len, &mut self.buf[..n], start)?;
            }
            (Data::File { .. }, None) => unreachable!("a file source is opened by `open`"),
        }
        self.buf[n..].fill(0);
        Ok(&self.buf)
    }
}

/// Writes the raw image `raw` (scanned into `nonzero`) to `out`: its non-zero chunks as
/// data, the rest through [`Sink::zeros`], so a file-backed sink gets holes. Writes exactly
/// `raw.len()` bytes.
pub fn copy_sparse(out: &mut dyn Sink, raw: &Data, nonzero: &NonZero) -> Result<(), DiskError> {
    let chunk = nonzero.chunk_size;
    let len = raw.len();
    let mut reader = ChunkReader::open(raw, chunk)?;
    let mut pos = 0;
    for &index in &nonzero.indices {
        let start = index * chunk;
        out.zeros(start - pos).map_err(DiskError::Io)?;
        let n = (len - start).min(chunk) as usize;
        out.write_all(&reader.read(index)?[..n])
            .map_err(DiskError::Io)?;
        pos = start + n as u64;
    }
    out.zeros(len - pos).map_err(DiskError::Io)
}

/// Whether every byte of `bytes` is zero. Folds with OR over fixed blocks so the compiler can
/// vectorize it, stopping at the first block with a set bit.
pub fn is_zero(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(512);
    blocks.all(|block| block.iter().fold(0, |acc, &b| acc | b) == 0)
        && blocks.remainder().iter().all(|&b| b == 0)
}

fn open_checked(path: &Path, len: u64) -> Result<File, DiskError> {
    let file = File::open(path)
        .map_err(|e| DiskError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))?;
    let found = file.metadata().map_err(DiskError::Io)?.len();
    if found != len {
        return Err(DiskError::SourceChanged {
            path: path.to_path_buf(),
            expected: len,
            found,
        });
    }
    Ok(file)
}

/// The next extent at or after `pos` that the file system reports as data, clipped to `len`;
/// `None` when only holes remain.
fn next_data_extent(file: &File, pos: u64, len: u64) -> Result<Option<(u64, u64)>, DiskError> {
    if pos >= len {
        return Ok(None);
    }
    let start = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(pos)) {
        Ok(start) => start,
        // ENXIO: nothing but holes from `pos` to the end of the file.
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(errno) => return Err(DiskError::Io(errno.into())),
    };
    if start >= len {
        return Ok(None);
    }
    let end = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(start))
        .map_err(|errno| DiskError::Io(errno.into()))?;
    Ok(Some((start, end.min(len))))
}

/// Whether the bytes in `range` of `file` (planned as `len` bytes long) are all zero, read
/// `buf.len()` at a time.
fn range_is_zero(
    file: &File,
    path: &Path,
    len: u64,
    range: std::ops::Range<u64>,
    buf: &mut [u8],
) -> Result<bool, DiskError> {
    let mut at = range.start;
    while at < range.end {
        let n = (range.end - at).min(buf.len() as u64) as usize;
        read_at(file, path, len, &mut buf[..n], at)?;
        if !is_zero(&buf[..n]) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Fills `buf` from `file` at `offset`; a file that ends early changed since it was planned.
fn read_at(
    file: &File,
    path: &Path,
    expected: u64,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), DiskError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            DiskError::SourceChanged {
                path: path.to_path_buf(),
                expected,
                found: file.metadata().map(|m| m.len()).unwrap_or(0),
            }
        } else {
            DiskError::Io(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileSink;
    use std::io::{Seek, SeekFrom, Write};

    const MIB: u64 = 1 << 20;

    /// A sparse file of `len` bytes with `data` written at each offset; `allocated` ranges are
    /// written as explicit zeros (allocated on disk, but zero).
    fn sparse_file(dir: &Path, len: u64, data: &[(u64, &[u8])], allocated: &[(u64, u64)]) -> Data {
        let path = dir.join("raw");
        let mut file = File::create(&path).unwrap();
        file.set_len(len).unwrap();
        for &(at, n) in allocated {
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(&vec![0; n as usize]).unwrap();
        }
        for &(at, bytes) in data {
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(bytes).unwrap();
        }
        Data::File { path, len }
    }

    #[test]
    fn finds_chunks_with_data_and_skips_holes_and_allocated_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let len = 64 * MIB + 512;
        let raw = sparse_file(
            dir.path(),
            len,
            &[
                (0, b"boot"),
                // Straddles the boundary of chunks 16 and 17 (64 KiB chunks at 1 MiB + ...).
                (17 * 65536 - 2, b"abcd"),
                (40 * MIB + 7, b"x"),
                (len - 1, b"!"),
            ],
            &[(8 * MIB, 4 * MIB)],
        );
        let nz = NonZero::scan(&raw, 65536).unwrap();
        assert_eq!(nz.indices(), &[0, 16, 17, 640, 1024]);
        assert_eq!(nz.chunk_count(), 1025);
        assert_eq!(nz.image_len(), len);

        // The same bytes in memory give the same answer.
        let bytes = Data::Bytes(raw.read_all().unwrap());
        assert_eq!(
            NonZero::scan(&bytes, 65536).unwrap().indices(),
            nz.indices()
        );
    }

    #[test]
    fn reads_chunks_and_pads_the_short_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sparse_file(dir.path(), 3 * 512, &[(1024, b"tail"), (0, b"a")], &[]);
        let mut reader = ChunkReader::open(&raw, 1024).unwrap();
        let last = reader.read(1).unwrap();
        assert_eq!(last.len(), 1024);
        assert_eq!(&last[..4], b"tail");
        assert!(is_zero(&last[4..]));
        assert_eq!(reader.read(0).unwrap()[0], b'a');
    }

    #[test]
    fn copy_sparse_reproduces_the_image_with_holes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 32 * MIB + 1536;
        let raw = sparse_file(
            dir.path(),
            len,
            &[(5, b"head"), (20 * MIB, b"middle"), (len - 3, b"end")],
            &[(MIB, 8 * MIB)],
        );
        let nz = NonZero::scan(&raw, 65536).unwrap();
        let out_path = dir.path().join("copy");
        let mut sink = FileSink::new(File::create(&out_path).unwrap());
        copy_sparse(&mut sink, &raw, &nz).unwrap();
        assert_eq!(sink.position(), len);
        sink.finish().unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), raw.read_all().unwrap());
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&out_path).unwrap().blocks();
        assert!(blocks * 512 <= 4 * 65536, "{blocks} blocks allocated");
    }

    #[test]
    fn a_source_of_the_wrong_length_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let Data::File { path, .. } = sparse_file(dir.path(), 4096, &[], &[]) else {
            unreachable!()
        };
        let raw = Data::File { path, len: 8192 };
        let err = NonZero::scan(&raw, 512).unwrap_err();
        assert!(
            matches!(
                err,
                DiskError::SourceChanged {
                    expected: 8192,
                    found: 4096,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn is_zero_sees_a_single_bit_anywhere() {
        let mut bytes = vec![0u8; 4096 + 17];
        assert!(is_zero(&bytes));
        for at in [0, 511, 512, 4095, 4096, 4112] {
            bytes[at] = 0x80;
            assert!(!is_zero(&bytes), "bit at {at}");
            bytes[at] = 0;
        }
    }
}
