//! Writers for boot media, in-process and reproducible.
//!
//! Every writer here works the same way: it *plans* the whole layout from the list of files
//! (sizes only, no file data read), so the image size and every offset are known before a byte
//! is written, and then *emits* the image front to back into a [`Sink`]. Runs of zeros go
//! through [`Sink::zeros`], so a file-backed sink leaves holes: a 1 GiB disk with 100 MB of
//! content is 100 MB on disk and is never held in memory. File contents are streamed from
//! [`Data`] (store blobs are files), so memory does not grow with the image.
//!
//! Nothing here reads the clock, the environment or a random source: identifiers (volume ids,
//! disk signatures, GUIDs) and timestamps are parameters, which callers derive from content.
//!
//! This crate knows nothing of the store, the engine or linuxkit.yml; `lkb-rules` turns build
//! inputs into [`Data`] and calls these writers from its actions.

pub mod erofs;
pub mod fat;
mod fs_tree;
pub mod gcp;
pub mod gpt;
pub mod iso;
pub mod mbr;
pub mod qcow2;
pub mod raw_bios;
pub mod raw_efi;
pub mod sparse;
pub mod squashfs;
pub mod syslinux;
pub mod uki;
pub mod vhd;
pub mod vmdk;

/// What the modules' tests share: running the oracle tools.
#[cfg(test)]
pub(crate) mod test_tools {
    use std::process::Command;

    /// Runs an oracle tool (mtools without its geometry check) and returns its stdout; fails
    /// the test with its stderr otherwise.
    pub(crate) fn run(command: &mut Command) -> String {
        let output = command
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap_or_else(|e| panic!("{command:?}: {e} (the oracle tools must be installed)"));
        assert!(
            output.status.success(),
            "{command:?}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// One path of a file system image (ISO 9660, squashfs, EROFS): what the image writers take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    /// Relative path with `/` separators and no `.`/`..` components; `""` is the root.
    pub path: String,
    pub kind: FsKind,
    /// Permission bits, setuid/setgid/sticky included; file type bits are ignored.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// Entries with the same group are hard links to one file.
    pub link_group: Option<u32>,
    /// Extended attributes (`security.capability`, `user.*`, …), sorted by name. ISO 9660
    /// has nowhere to keep them.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// What an [`FsEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsKind {
    Dir,
    File(Data),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
    BlockDev { major: u32, minor: u32 },
    Fifo,
    Socket,
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Small generated content (a boot loader config, a patched boot file).
    Bytes(Vec<u8>),
    /// A file on disk (a store blob), read when the image is written. `len` is its size,
    /// checked when it is read.
    File { path: PathBuf, len: u64 },
    /// `len` bytes at `offset` of a larger file (a small store blob kept in a pack file), read
    /// when the image is written.
    Part {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Data {
    pub fn len(&self) -> u64 {
        match self {
            Data::Bytes(bytes) => bytes.len() as u64,
            Data::File { len, .. } | Data::Part { len, .. } => *len,
        }
    }

    /// The source file and the range of it this data is, for the variants that are files.
    fn file_range(&self) -> Option<(&Path, u64, u64)> {
        match self {
            Data::Bytes(_) => None,
            Data::File { path, len } => Some((path, 0, *len)),
            Data::Part { path, offset, len } => Some((path, *offset, *len)),
        }
    }

    /// A reader of the bytes, for a file source checked against its planned length: a whole
    /// file must still have it, and a part must still lie inside its file.
    pub fn reader(&self) -> Result<Box<dyn Read + '_>, DiskError> {
        let Some((path, offset, len)) = self.file_range() else {
            let Data::Bytes(bytes) = self else {
                unreachable!("only bytes have no file");
            };
            return Ok(Box::new(bytes.as_slice()));
        };
        let mut file = fs_err::File::open(path).map_err(DiskError::Io)?;
        let found = file.metadata().map_err(DiskError::Io)?.len();
        let fits = match self {
            Data::Part { .. } => found >= offset + len,
            _ => found == len,
        };
        if !fits {
            return Err(DiskError::SourceChanged {
                path: path.to_owned(),
                expected: offset + len,
                found,
            });
        }
        if offset > 0 {
            io::Seek::seek(&mut file, io::SeekFrom::Start(offset)).map_err(DiskError::Io)?;
        }
        Ok(Box::new(file.take(len)))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All of the bytes in memory: for small inputs a writer must patch (boot sectors,
    /// `ldlinux.sys`, an EFI stub's headers).
    pub fn read_all(&self) -> Result<Vec<u8>, DiskError> {
        if let Data::Bytes(bytes) = self {
            return Ok(bytes.clone());
        }
        let mut bytes = Vec::new();
        self.reader()?
            .read_to_end(&mut bytes)
            .map_err(DiskError::Io)?;
        self.check_read(bytes.len() as u64)?;
        Ok(bytes)
    }

    /// An error unless `read` bytes are all of this data (a file that shrank since it was
    /// planned reads short).
    fn check_read(&self, read: u64) -> Result<(), DiskError> {
        match self.file_range() {
            Some((path, _, len)) if read != len => Err(DiskError::SourceChanged {
                path: path.to_owned(),
                expected: len,
                found: read,
            }),
            _ => Ok(()),
        }
    }
}

/// Where a writer's bytes go, front to back.
pub trait Sink: Write {
    /// Appends `n` zero bytes. A file-backed sink seeks instead, leaving a hole.
    fn zeros(&mut self, n: u64) -> io::Result<()> {
        io::copy(&mut io::repeat(0).take(n), self).map(|_| ())
    }
}

impl Sink for Vec<u8> {}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn zeros(&mut self, n: u64) -> io::Result<()> {
        (**self).zeros(n)
    }
}

/// Copies all of `data` into `out`, checking that a file source still has the length it was
/// planned with.
pub fn write_data(out: &mut dyn Sink, data: &Data) -> Result<(), DiskError> {
    if let Data::Bytes(bytes) = data {
        return out.write_all(bytes).map_err(DiskError::Io);
    }
    let copied = io::copy(&mut data.reader()?, out).map_err(DiskError::Io)?;
    data.check_read(copied)
}

/// A [`Sink`] over a file: zeros become holes, and [`FileSink::finish`] sets the final length
/// so a trailing hole is part of the file.
pub struct FileSink {
    file: std::fs::File,
    pos: u64,
}

impl FileSink {
    pub fn new(file: std::fs::File) -> Self {
        FileSink { file, pos: 0 }
    }

    /// Bytes written so far, holes included.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn finish(self) -> io::Result<std::fs::File> {
        self.file.set_len(self.pos)?;
        Ok(self.file)
    }
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Sink for FileSink {
    fn zeros(&mut self, n: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        self.pos += n;
        self.file.seek(SeekFrom::Start(self.pos)).map(|_| ())
    }
}

/// What can go wrong writing an image. The messages name the file or limit concerned.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Io(#[source] io::Error),
    #[error("{path} changed while the image was written: planned {expected} bytes, found {found}")]
    SourceChanged {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    /// The content does not fit the requested size; `needed` is the smallest size that works.
    #[error("{what} needs at least {needed} bytes ({}), {requested} requested", mib(*needed))]
    TooSmall {
        what: String,
        needed: u64,
        requested: u64,
    },
    /// An input that is not what the writer needs (a name FAT cannot hold, a stub that is not a
    /// PE image, a boot file missing its patch area).
    #[error("{0}")]
    Invalid(String),
}

/// `n` bytes as MiB, rounded up, for messages.
fn mib(n: u64) -> String {
    format!("{} MiB", n.div_ceil(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_leaves_holes_and_keeps_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut sink = FileSink::new(std::fs::File::create(&path).unwrap());
        sink.write_all(b"head").unwrap();
        sink.zeros(64 << 20).unwrap();
        sink.write_all(b"tail").unwrap();
        sink.zeros(1 << 20).unwrap();
        let end = sink.position();
        sink.finish().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), end);
        assert_eq!(end, 8 + (65 << 20));
        use std::os::unix::fs::MetadataExt;
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "holes stay holes: {} blocks",
            meta.blocks()
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"head");
        assert_eq!(&bytes[4 + (64 << 20)..8 + (64 << 20)], b"tail");
    }

    #[test]
    fn a_shrunken_source_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let data = Data::File { path, len: 5 };
        let err = write_data(&mut Vec::new(), &data).unwrap_err();
        assert!(
            err.to_string().contains("planned 5 bytes, found 3"),
            "{err}"
        );
    }
}
