//! File data: blocks and fragment blocks, compressed on all cores and written in a fixed
//! order.
//!
//! Files are cut into blocks of the block size. Files smaller than one block are packed into
//! *fragment blocks* (several files' bytes in one block, as mksquashfs does by default); the
//! last block of a larger file is a short block of its own. Each block becomes a *job*; jobs
//! are gathered into a window of a few per thread, compressed in parallel, and written in job
//! order. The window only changes when blocks are compressed, never where they go, so the
//! image does not depend on the number of threads. At most one window of blocks is in memory.
//!
//! A file with the same contents as one written before is not written again: it points at the
//! same blocks or fragment (mksquashfs's duplicate detection). Candidates are files of the same
//! size and CRC-32, compared byte by byte; a file is read twice only when an earlier file has
//! its size. Sources are assumed not to change while the image is written, beyond the length
//! check every read makes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Out;
use super::metadata::Compressor;
use crate::{Data, DiskError};

/// Set in a data block's or fragment block's size when it is stored uncompressed.
pub(super) const BLOCK_UNCOMPRESSED: u32 = 1 << 24;
/// Bytes read at a time when checking whether two files are the same.
const COMPARE_CHUNK: usize = 64 << 10;
/// Jobs per thread in a window: enough to keep every thread busy when block sizes vary.
const JOBS_PER_THREAD: usize = 4;

/// Where a file's data went.
#[derive(Debug, Default, Clone)]
pub(super) struct FileData {
    /// Offset of the first block in the image (0 when there is none).
    pub(super) start: u64,
    /// On-disk size of each block; 0 is a block of zeros not stored (a hole), and
    /// [`BLOCK_UNCOMPRESSED`] marks a stored one.
    pub(super) blocks: Vec<u32>,
    /// Fragment block index and offset in it, for files smaller than a block.
    pub(super) fragment: Option<(u32, u32)>,
    /// Bytes of holes (all-zero blocks not stored).
    pub(super) sparse: u64,
}

/// A fragment table entry: where a fragment block is and its on-disk size.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fragment {
    pub(super) start: u64,
    pub(super) size: u32,
}

enum Target {
    /// A block of the file with this index in [`DataWriter::files`].
    Block(usize),
    Fragment,
}

struct Job {
    target: Target,
    bytes: Vec<u8>,
}

enum Packed {
    /// A whole block of zeros, not stored.
    Hole,
    Stored,
    Compressed(Vec<u8>),
}

/// Writes file data at the current position of `out`, file after file.
pub(super) struct DataWriter<'a, 'w, 'd, W: std::io::Write> {
    out: &'a mut Out<'w, W>,
    block_size: usize,
    level: u32,
    threads: usize,
    pending: Vec<Job>,
    /// The fragment block being filled.
    fragment: Vec<u8>,
    /// Fragment blocks handed to jobs so far (written or pending).
    fragments_sealed: u32,
    fragments: Vec<Fragment>,
    files: Vec<FileData>,
    /// Sizes of the files written so far: a file of another size cannot be a duplicate, and
    /// is read only once.
    sizes: HashSet<u64>,
    /// Files written so far by size and CRC-32, with their sources, to find duplicates.
    written: HashMap<(u64, u32), Vec<(usize, &'d Data)>>,
}

impl<'a, 'w, 'd, W: std::io::Write> DataWriter<'a, 'w, 'd, W> {
    /// A writer for `files` files (indices `0..files`), each added once with
    /// [`DataWriter::add`].
    pub(super) fn new(
        out: &'a mut Out<'w, W>,
        block_size: u32,
        level: u32,
        threads: usize,
        files: usize,
    ) -> Self {
        DataWriter {
            out,
            block_size: block_size as usize,
            level,
            threads: threads.max(1),
            pending: Vec::new(),
            fragment: Vec::new(),
            fragments_sealed: 0,
            fragments: Vec::new(),
            files: vec![FileData::default(); files],
            sizes: HashSet::new(),
            written: HashMap::new(),
        }
    }

    /// Queues the blocks of file `index`, reading a [`Data::File`] block by block, or points
    /// it at the data of an earlier file with the same contents.
    pub(super) fn add(&mut self, index: usize, data: &'d Data) -> Result<(), DiskError> {
        let len = data.len();
        if len == 0 {
            return Ok(());
        }
        if self.sizes.contains(&len) {
            let crc = checksum(data)?;
            for &(earlier, earlier_data) in self.written.get(&(len, crc)).into_iter().flatten() {
                if same_contents(data, earlier_data)? {
                    if len >= self.block_size as u64 {
                        // Its blocks may still be pending: write them to know where they are.
                        self.flush()?;
                    }
                    self.files[index] = self.files[earlier].clone();
                    return Ok(());
                }
            }
        }
        let crc = self.add_blocks(index, data)?;
        self.sizes.insert(len);
        self.written
            .entry((len, crc))
            .or_default()
            .push((index, data));
        Ok(())
    }

    /// Queues the blocks of file `index` and returns the CRC-32 of its contents.
    fn add_blocks(&mut self, index: usize, data: &Data) -> Result<u32, DiskError> {
        let mut crc = flate2::Crc::new();
        let len = data.len();
        if len < self.block_size as u64 {
            let bytes = data.read_all()?;
            crc.update(&bytes);
            self.add_fragment(index, &bytes);
            return Ok(crc.sum());
        }
        match data {
            Data::Bytes(_) | Data::Part { .. } => {
                let bytes = match data {
                    Data::Bytes(bytes) => std::borrow::Cow::Borrowed(bytes),
                    _ => std::borrow::Cow::Owned(data.read_all()?),
                };
                crc.update(&bytes);
                for block in bytes.chunks(self.block_size) {
                    self.push(Target::Block(index), block.to_vec())?;
                }
            }
            Data::File { path, len } => {
                let mut file = fs_err::File::open(path).map_err(DiskError::Io)?;
                let mut remaining = *len;
                while remaining > 0 {
                    let want = remaining.min(self.block_size as u64);
                    let mut block = Vec::with_capacity(want as usize);
                    let got = file
                        .by_ref()
                        .take(want)
                        .read_to_end(&mut block)
                        .map_err(DiskError::Io)?;
                    if got as u64 != want {
                        return Err(DiskError::SourceChanged {
                            path: path.clone(),
                            expected: *len,
                            found: *len - remaining + got as u64,
                        });
                    }
                    remaining -= want;
                    crc.update(&block);
                    self.push(Target::Block(index), block)?;
                }
                check_end(&mut file, path, *len)?;
            }
        }
        Ok(crc.sum())
    }

    fn add_fragment(&mut self, index: usize, bytes: &[u8]) {
        if self.fragment.len() + bytes.len() > self.block_size {
            self.seal_fragment();
        }
        let offset = u32::try_from(self.fragment.len()).expect("under the block size");
        self.files[index].fragment = Some((self.fragments_sealed, offset));
        self.fragment.extend_from_slice(bytes);
    }

    fn seal_fragment(&mut self) {
        let bytes = std::mem::take(&mut self.fragment);
        self.fragments_sealed += 1;
        self.pending.push(Job {
            target: Target::Fragment,
            bytes,
        });
    }

    fn push(&mut self, target: Target, bytes: Vec<u8>) -> Result<(), DiskError> {
        self.pending.push(Job { target, bytes });
        if self.pending.len() >= self.threads * JOBS_PER_THREAD {
            self.flush()?;
        }
        Ok(())
    }

    /// Compresses the pending jobs and writes them in order.
    fn flush(&mut self) -> Result<(), DiskError> {
        let jobs = std::mem::take(&mut self.pending);
        let packed = pack_all(&jobs, self.block_size, self.level, self.threads);
        for (job, packed) in jobs.into_iter().zip(packed) {
            let start = self.out.pos;
            let size = match &packed {
                Packed::Hole => 0,
                Packed::Stored => {
                    self.out.write(&job.bytes)?;
                    job.bytes.len() as u32 | BLOCK_UNCOMPRESSED
                }
                Packed::Compressed(bytes) => {
                    self.out.write(bytes)?;
                    bytes.len() as u32
                }
            };
            match job.target {
                Target::Block(index) => {
                    let file = &mut self.files[index];
                    if file.blocks.is_empty() {
                        file.start = start;
                    }
                    file.blocks.push(size);
                    if matches!(packed, Packed::Hole) {
                        file.sparse += job.bytes.len() as u64;
                    }
                }
                Target::Fragment => self.fragments.push(Fragment { start, size }),
            }
        }
        Ok(())
    }

    /// Writes what is still pending (the last fragment block included) and returns where
    /// each file's data and each fragment block went.
    pub(super) fn finish(mut self) -> Result<(Vec<FileData>, Vec<Fragment>), DiskError> {
        if !self.fragment.is_empty() {
            self.seal_fragment();
        }
        self.flush()?;
        debug_assert_eq!(self.fragments.len(), self.fragments_sealed as usize);
        Ok((self.files, self.fragments))
    }
}

/// Fails if `file`, read up to its planned length `len`, has more.
fn check_end(file: &mut fs_err::File, path: &Path, len: u64) -> Result<(), DiskError> {
    if file.read(&mut [0]).map_err(DiskError::Io)? != 0 {
        let found = file.metadata().map_err(DiskError::Io)?.len();
        return Err(DiskError::SourceChanged {
            path: path.to_path_buf(),
            expected: len,
            found: found.max(len + 1),
        });
    }
    Ok(())
}

/// Reads `data` through, checking its length.
fn open(data: &Data) -> Result<Box<dyn Read + '_>, DiskError> {
    Ok(match data {
        Data::Bytes(bytes) => Box::new(bytes.as_slice()),
        Data::Part { .. } => data.reader()?,
        Data::File { path, len } => Box::new(LengthChecked {
            file: fs_err::File::open(path).map_err(DiskError::Io)?,
            path,
            len: *len,
            read: 0,
        }),
    })
}

/// A file source that fails with [`DiskError::SourceChanged`] (as an `io::Error`) when it is
/// shorter or longer than planned.
struct LengthChecked<'p> {
    file: fs_err::File,
    path: &'p Path,
    len: u64,
    read: u64,
}

impl Read for LengthChecked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.len - self.read).min(buf.len() as u64) as usize;
        if want == 0 {
            return match check_end(&mut self.file, self.path, self.len) {
                Ok(()) => Ok(0),
                Err(e) => Err(std::io::Error::other(e)),
            };
        }
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(DiskError::SourceChanged {
                path: self.path.to_path_buf(),
                expected: self.len,
                found: self.read,
            }));
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// An `io::Error` from [`LengthChecked`] back to the [`DiskError`] it carries.
fn source_error(e: std::io::Error) -> DiskError {
    if e.get_ref().is_some_and(|inner| inner.is::<DiskError>()) {
        let inner = e.into_inner().expect("checked above");
        *inner.downcast::<DiskError>().expect("checked above")
    } else {
        DiskError::Io(e)
    }
}

/// Fills `buf` from `r` unless it ends first; returns how much was read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, DiskError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(source_error(e)),
        }
    }
    Ok(n)
}

/// CRC-32 of all of `data`.
fn checksum(data: &Data) -> Result<u32, DiskError> {
    let mut crc = flate2::Crc::new();
    let mut r = open(data)?;
    let mut buf = vec![0; COMPARE_CHUNK];
    loop {
        let n = fill(&mut r, &mut buf)?;
        if n == 0 {
            return Ok(crc.sum());
        }
        crc.update(&buf[..n]);
    }
}

/// Whether two sources of the same planned length hold the same bytes.
fn same_contents(a: &Data, b: &Data) -> Result<bool, DiskError> {
    if a == b {
        return Ok(true);
    }
    let (mut ra, mut rb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0; COMPARE_CHUNK], vec![0; COMPARE_CHUNK]);
    loop {
        let n = fill(&mut ra, &mut ba)?;
        let m = fill(&mut rb, &mut bb)?;
        if ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Compresses `jobs` on up to `threads` threads; the result is in job order and the same for
/// any thread count.
fn pack_all(jobs: &[Job], block_size: usize, level: u32, threads: usize) -> Vec<Packed> {
    let pack = |compressor: &mut Compressor, job: &Job| {
        let whole_block = job.bytes.len() == block_size;
        if whole_block
            && matches!(job.target, Target::Block(_))
            && job.bytes.iter().all(|&b| b == 0)
        {
            Packed::Hole
        } else {
            compressor
                .compress(&job.bytes)
                .map_or(Packed::Stored, Packed::Compressed)
        }
    };
    let threads = threads.min(jobs.len());
    if threads <= 1 {
        let mut compressor = Compressor::new(level);
        return jobs.iter().map(|j| pack(&mut compressor, j)).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Vec<Vec<(usize, Packed)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut compressor = Compressor::new(level);
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, pack(&mut compressor, job)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut packed: Vec<Option<Packed>> = jobs.iter().map(|_| None).collect();
    for (i, p) in done.into_iter().flatten() {
        packed[i] = Some(p);
    }
    packed
        .into_iter()
        .map(|p| p.expect("every job was taken by a worker"))
        .collect()
}
