//! newc ("070701") cpio writer, as the Linux initramfs reads it.
//!
//! Headers follow LinuxKit's initrd writer (reference/linuxkit.md §3.2): 13 fields of 8
//! upper-case hex digits; `mode` = permission bits | file type; `nlink` 2 for directories and
//! 1 otherwise; `devmajor`/`devminor` fixed at 3/1; `rdev` from device entries; symlink data is
//! the target; name + NUL and data each padded to 4 bytes; the `TRAILER!!!` entry (counted by
//! the inode counter, nlink 1); the whole archive zero-padded to a multiple of 512.
//!
//! Where lkb differs from LinuxKit:
//! - **Hard links are real newc hard links**, not relative symlinks: every member of a group
//!   gets the same inode number and `nlink` = group size, all with the primary's metadata; only
//!   the *last* member carries the data, the others have size 0. Both the kernel
//!   (`init/initramfs.c`: `maybe_link`) and GNU cpio accept this; GNU cpio writes it so.
//!   Links to symlinks, devices and fifos are written as independent copies (the kernel links
//!   only regular files and devices, and LinuxKit never had such links).
//! - Files of 4 GiB or more are an error instead of a corrupt archive.
//! - mtimes outside the 32-bit range are clamped to 0 / 0xffffffff.
//! - A root entry is always named `.`; LinuxKit copies a kernel tar's `./` verbatim.
//!
//! **Inode numbers.** Each archive (segment) numbers its entries from `ino_base` (default
//! LinuxKit's 721), one per entry or hard-link group, plus one for the trailer. Numbers are not
//! unique across the segments of an initrd, and need not be: the kernel forgets all inode
//! numbers at every `TRAILER!!!` (`free_hash()`), and `cpio -i` reads one archive at a time.
//! Keeping the default base for every segment keeps a segment's bytes independent of the
//! segments before it, so changing one segment never changes another. Callers that want
//! unique numbers anyway can chain `CpioSummary::next_ino` into the next segment's base.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use lkb_store::{ErrorCategory, Store, StoreError};

use crate::tree::{Entry, EntryKind, Tree};

/// Version of this writer's byte-affecting choices, for action keys.
/// 2: [`write_cpio`] writes a tree's root entry (`.`) first.
pub const CPIO_FORMAT_VERSION: u32 = 2;
/// LinuxKit's first inode number.
pub const LINUXKIT_INO_BASE: u32 = 721;
const TRAILER: &str = "TRAILER!!!";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpioOptions {
    /// Inode number of the first entry.
    pub ino_base: u32,
}

impl Default for CpioOptions {
    fn default() -> CpioOptions {
        CpioOptions {
            ino_base: LINUXKIT_INO_BASE,
        }
    }
}

/// What a finished archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpioSummary {
    /// Entries written, without the trailer.
    pub entries: u64,
    /// Archive size including the final padding.
    pub bytes: u64,
    /// The first inode number not used (the trailer's + 1).
    pub next_ino: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("{path:?} has {size} bytes, but newc cpio only holds files below 4 GiB")]
    TooLarge { path: String, size: u64 },
    #[error("{path:?} is a {kind}, which has no place in an initrd")]
    Marker { path: String, kind: &'static str },
    #[error("hard link {path:?} points to {target:?}, which is not in this archive")]
    DanglingHardlink { path: String, target: String },
    #[error("hard link {path:?} points to {target:?}, which is a {kind}")]
    BadHardlink {
        path: String,
        target: String,
        kind: &'static str,
    },
    #[error("inode numbers exhausted (ino_base {base} + entries passes 2^32)")]
    InodeOverflow { base: u32 },
    #[error("content of {path:?} ended after {actual} of {expected} bytes")]
    ShortBlob {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing cpio: {0}")]
    Io(#[from] io::Error),
}

impl CpioError {
    /// Too-large files come from the user's inputs; markers and broken links in a tree handed
    /// to the writer are lkb bugs; I/O and store trouble is the environment.
    pub fn category(&self) -> ErrorCategory {
        match self {
            CpioError::TooLarge { .. } | CpioError::InodeOverflow { .. } => ErrorCategory::User,
            CpioError::Marker { .. }
            | CpioError::DanglingHardlink { .. }
            | CpioError::BadHardlink { .. } => ErrorCategory::Internal,
            CpioError::ShortBlob { .. } | CpioError::Io(_) => ErrorCategory::Environment,
            CpioError::Store(e) => e.category(),
        }
    }
}

/// File type bits of a newc `mode`.
fn type_bits(kind: &EntryKind) -> Option<u32> {
    Some(match kind {
        EntryKind::Dir => 0o040000,
        EntryKind::File { .. } => 0o100000,
        EntryKind::Symlink { .. } => 0o120000,
        EntryKind::Char { .. } => 0o020000,
        EntryKind::Block { .. } => 0o060000,
        EntryKind::Fifo => 0o010000,
        EntryKind::Hardlink { .. } | EntryKind::Whiteout | EntryKind::Opaque => return None,
    })
}

struct Header {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
}

/// How an entry of one `write_entries` call is written.
#[derive(Clone, Copy)]
enum Role {
    Plain,
    /// Member of the hard-link group with this index.
    Member(usize),
    /// Written as a copy of the entry at this index.
    CopyOf(usize),
}

#[derive(Clone)]
struct Group {
    primary: usize,
    members: Vec<usize>,
    ino: Option<u32>,
}

/// Where a [`CpioWriter`] puts an archive. Any [`Write`] gets the files' contents copied in
/// from the store; an [`ArchiveLayout`] notes where they come from instead.
pub trait ArchiveSink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Adds the first `size` bytes of blob `digest`; returns how many there were.
    fn contents(
        &mut self,
        store: &Store,
        digest: &lkb_store::BlobDigest,
        size: u64,
    ) -> Result<u64, CpioError>;
    fn flush(&mut self) -> io::Result<()>;
}

impl<W: Write> ArchiveSink for W {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }
    fn contents(
        &mut self,
        store: &Store,
        digest: &lkb_store::BlobDigest,
        size: u64,
    ) -> Result<u64, CpioError> {
        let mut file = store.open_blob(digest)?;
        Ok(io::copy(&mut (&mut file).take(size), self)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Write::flush(self)
    }
}

/// An archive as the bytes the writer made and the ranges of blobs between them, so any
/// range of it can be read without writing what comes before ([`ArchiveLayout::read`]).
#[derive(Debug, Default)]
pub struct ArchiveLayout {
    /// Each part with its offset in the archive.
    parts: Vec<(u64, Part)>,
    len: u64,
}

#[derive(Debug)]
enum Part {
    Bytes(Vec<u8>),
    Blob {
        digest: lkb_store::BlobDigest,
        size: u64,
    },
}

impl ArchiveSink for ArchiveLayout {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.parts.last_mut() {
            Some((_, Part::Bytes(last))) => last.extend_from_slice(bytes),
            _ => self.parts.push((self.len, Part::Bytes(bytes.to_vec()))),
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
    fn contents(
        &mut self,
        _store: &Store,
        digest: &lkb_store::BlobDigest,
        size: u64,
    ) -> Result<u64, CpioError> {
        self.parts.push((
            self.len,
            Part::Blob {
                digest: *digest,
                size,
            },
        ));
        self.len += size;
        Ok(size)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ArchiveLayout {
    /// The archive's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `range` of the archive, reading the blobs it covers from `store`.
    pub fn read(&self, store: &Store, range: std::ops::Range<u64>) -> Result<Vec<u8>, CpioError> {
        let mut out = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        let first = self.parts.partition_point(|(at, _)| *at <= range.start);
        for (at, part) in &self.parts[first.saturating_sub(1)..] {
            if *at >= range.end {
                break;
            }
            let part_len = match part {
                Part::Bytes(bytes) => bytes.len() as u64,
                Part::Blob { size, .. } => *size,
            };
            let from = range.start.max(*at) - at;
            let to = range.end.min(at + part_len) - at;
            if from >= to {
                continue;
            }
            match part {
                Part::Bytes(bytes) => out.extend_from_slice(&bytes[from as usize..to as usize]),
                Part::Blob { digest, size } => {
                    let mut blob = store.open_blob(digest)?;
                    io::Seek::seek(&mut blob, io::SeekFrom::Start(from))?;
                    let want = to - from;
                    let got = io::copy(&mut (&mut blob).take(want), &mut out)?;
                    if got != want {
                        return Err(CpioError::ShortBlob {
                            path: format!("blob {digest}"),
                            expected: *size,
                            actual: from + got,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Streams a newc archive to `out`. Wrap a plain `out` in a `BufWriter` (or a compressor).
pub struct CpioWriter<W: ArchiveSink> {
    out: W,
    store: Store,
    base: u32,
    next_ino: u32,
    offset: u64,
    entries: u64,
}

impl<W: ArchiveSink> CpioWriter<W> {
    pub fn new(out: W, store: &Store, opts: &CpioOptions) -> CpioWriter<W> {
        CpioWriter {
            out,
            store: store.clone(),
            base: opts.ino_base,
            next_ino: opts.ino_base,
            offset: 0,
            entries: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.put(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, to: u64) -> io::Result<()> {
        let n = (to - self.offset % to) % to;
        self.put(&vec![0u8; n as usize])
    }

    fn alloc_ino(&mut self) -> Result<u32, CpioError> {
        let ino = self.next_ino;
        self.next_ino = ino
            .checked_add(1)
            .ok_or(CpioError::InodeOverflow { base: self.base })?;
        Ok(ino)
    }

    fn header(&mut self, h: &Header, name: &str) -> io::Result<()> {
        let namesize = name.len() as u64 + 1;
        let fields = [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.filesize,
            3,
            1,
            h.rdev.0,
            h.rdev.1,
            namesize as u32,
            0,
        ];
        let mut buf = Vec::with_capacity(110 + name.len() + 4);
        buf.extend_from_slice(b"070701");
        for f in fields {
            buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        self.put(&buf)?;
        self.pad(4)
    }

    /// Writes entries in the given order. Hard links must find their target among the same
    /// call's entries. Whiteout markers are refused.
    pub fn write_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), CpioError> {
        let list: Vec<&Entry> = entries.into_iter().collect();
        let (roles, mut groups) = plan(&list)?;
        self.write_run(&list, 0..list.len(), &roles, &mut groups)
    }

    /// Writes entries `run` of `list`, whose roles and groups [`plan`] computed over the
    /// whole list; the run holds every member of each group it touches.
    fn write_run(
        &mut self,
        list: &[&Entry],
        run: std::ops::Range<usize>,
        roles: &[Role],
        groups: &mut [Group],
    ) -> Result<(), CpioError> {
        for i in run {
            let e = list[i];
            match roles[i] {
                Role::Plain => {
                    let ino = self.alloc_ino()?;
                    self.write_one(&e.path, e, ino, None)?;
                }
                Role::CopyOf(p) => {
                    let ino = self.alloc_ino()?;
                    self.write_one(&e.path, list[p], ino, None)?;
                }
                Role::Member(g) => {
                    let ino = match groups[g].ino {
                        Some(ino) => ino,
                        None => *groups[g].ino.insert(self.alloc_ino()?),
                    };
                    let group = &groups[g];
                    let last = *group.members.last().expect("groups are not empty") == i;
                    let nlink = group.members.len() as u32;
                    self.write_one(&e.path, list[group.primary], ino, Some((nlink, last)))?;
                }
            }
            self.entries += 1;
        }
        Ok(())
    }

    /// Writes `src`'s kind and metadata under `path`. `link` = (nlink, carries data) for
    /// hard-link group members.
    fn write_one(
        &mut self,
        path: &str,
        src: &Entry,
        ino: u32,
        link: Option<(u32, bool)>,
    ) -> Result<(), CpioError> {
        let kind_bits = type_bits(&src.kind).ok_or_else(|| CpioError::Marker {
            path: path.to_string(),
            kind: src.kind.name(),
        })?;
        let (size, rdev) = match &src.kind {
            EntryKind::File { blob } => (blob.size, (0, 0)),
            EntryKind::Symlink { target } => (target.len() as u64, (0, 0)),
            EntryKind::Char { major, minor } | EntryKind::Block { major, minor } => {
                (0, (*major, *minor))
            }
            _ => (0, (0, 0)),
        };
        if size > u64::from(u32::MAX) {
            return Err(CpioError::TooLarge {
                path: path.to_string(),
                size,
            });
        }
        let (nlink, with_data) = match link {
            Some((n, last)) => (n, last),
            None => (if src.is_dir() { 2 } else { 1 }, true),
        };
        let filesize = if with_data { size as u32 } else { 0 };
        let h = Header {
            ino,
            mode: (src.mode & 0o7777) | kind_bits,
            uid: src.uid,
            gid: src.gid,
            nlink,
            mtime: src.mtime.clamp(0, i64::from(u32::MAX)) as u32,
            filesize,
            rdev,
        };
        self.header(&h, path)?;
        match &src.kind {
            EntryKind::File { blob } if with_data && blob.size > 0 => {
                let copied = self.out.contents(&self.store, &blob.digest, blob.size)?;
                self.offset += copied;
                if copied != blob.size {
                    return Err(CpioError::ShortBlob {
                        path: path.to_string(),
                        expected: blob.size,
                        actual: copied,
                    });
                }
            }
            EntryKind::Symlink { target } => self.put(target.as_bytes())?,
            _ => {}
        }
        self.pad(4)?;
        Ok(())
    }

    /// Writes the trailer and the padding to 512 bytes; returns the inner writer.
    pub fn finish(mut self) -> Result<(W, CpioSummary), CpioError> {
        let ino = self.alloc_ino()?;
        let h = Header {
            ino,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdev: (0, 0),
        };
        self.header(&h, TRAILER)?;
        self.pad(512)?;
        self.out.flush()?;
        let summary = CpioSummary {
            entries: self.entries,
            bytes: self.offset,
            next_ino: self.next_ino,
        };
        Ok((self.out, summary))
    }
}

/// Finds the hard-link groups among `list`.
fn plan(list: &[&Entry]) -> Result<(Vec<Role>, Vec<Group>), CpioError> {
    let index: HashMap<&str, usize> = list
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_str(), i))
        .collect();
    let mut roles = vec![Role::Plain; list.len()];
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: HashMap<usize, usize> = HashMap::new();
    for (i, e) in list.iter().enumerate() {
        let EntryKind::Hardlink { target } = &e.kind else {
            continue;
        };
        let dangling = || CpioError::DanglingHardlink {
            path: e.path.clone(),
            target: target.clone(),
        };
        let mut p = *index.get(target.as_str()).ok_or_else(dangling)?;
        for _ in 0..=list.len() {
            match &list[p].kind {
                EntryKind::Hardlink { target: next } => {
                    p = *index.get(next.as_str()).ok_or_else(dangling)?
                }
                _ => break,
            }
        }
        match &list[p].kind {
            EntryKind::File { .. } => {
                let g = *group_of.entry(p).or_insert_with(|| {
                    groups.push(Group {
                        primary: p,
                        members: vec![p],
                        ino: None,
                    });
                    groups.len() - 1
                });
                groups[g].members.push(i);
                roles[p] = Role::Member(g);
                roles[i] = Role::Member(g);
            }
            EntryKind::Symlink { .. }
            | EntryKind::Char { .. }
            | EntryKind::Block { .. }
            | EntryKind::Fifo => {
                roles[i] = Role::CopyOf(p);
            }
            k => {
                return Err(CpioError::BadHardlink {
                    path: e.path.clone(),
                    target: target.clone(),
                    kind: k.name(),
                });
            }
        }
    }
    for g in &mut groups {
        g.members.sort_unstable();
    }
    Ok((roles, groups))
}

/// Version of [`archive_runs`]' cutting rule, for the keys of the segments it shapes.
/// 2: cut before an entry that would overflow the run (1 cut after the run reached it).
pub const RUNS_VERSION: u32 = 2;

/// A tree's archive entries cut into runs of at most `target_bytes` of file data each, for
/// separate archives that are compressed in parallel and concatenated (the kernel reads a
/// sequence of compressed archives). A cut never separates the members of a hard-link group,
/// since inode numbers do not carry across a trailer. The cuts depend only on the entries and
/// `target_bytes`, never on the machine, so the bytes stay reproducible.
pub fn archive_runs(list: &[&Entry], target_bytes: u64) -> Result<ArchiveRuns, CpioError> {
    let (roles, groups) = plan(list)?;
    // open[i] > 0: a cut just before entry i would split a group.
    let mut open = vec![0i64; list.len() + 1];
    for group in &groups {
        let first = group.members[0];
        let last = *group.members.last().expect("groups are not empty");
        open[first + 1] += 1;
        open[last + 1] -= 1;
    }
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    let mut depth = 0i64;
    for (i, entry) in list.iter().enumerate() {
        depth += open[i];
        let size = entry.blob().map_or(0, |blob| blob.size) + 512;
        // Cut before an entry that would take the run past the target: a run is at most
        // the target unless one entry (or hard-link group) alone is larger.
        if i > start && depth == 0 && bytes + size > target_bytes {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    runs.push(start..list.len());
    Ok(ArchiveRuns {
        ranges: runs,
        roles,
        groups,
    })
}

/// The cuts [`archive_runs`] chose, with the hard-link plan of the whole list, made once and
/// shared by the runs' writers.
pub struct ArchiveRuns {
    /// Entry ranges, one archive each, in order.
    pub ranges: Vec<std::ops::Range<usize>>,
    roles: Vec<Role>,
    groups: Vec<Group>,
}

impl ArchiveRuns {
    /// Writes `run` (one of [`ArchiveRuns::ranges`]) of `list` as one complete newc archive.
    pub fn write<W: ArchiveSink>(
        &self,
        out: W,
        list: &[&Entry],
        run: std::ops::Range<usize>,
        store: &Store,
        opts: &CpioOptions,
    ) -> Result<(W, CpioSummary), CpioError> {
        // Each run holds whole groups, so a copy of the groups is this writer's alone.
        let mut groups = self.groups.clone();
        let mut w = CpioWriter::new(out, store, opts);
        w.write_run(list, run, &self.roles, &mut groups)?;
        w.finish()
    }
}

/// Writes a whole tree, in archive order, as one newc archive: first its root entry, as `.`,
/// if it has one ([`Tree::root`]).
///
/// Each initrd segment is one tree, so the root entry appears once per segment whose tree has
/// one (the kernel's modules, each `init:` image), in the order LinuxKit writes the same
/// entries; the kernel applies them in turn (a directory that exists gets the new owner and
/// mode), so as with LinuxKit the last one decides `/`.
pub fn write_cpio<W: Write>(
    out: W,
    tree: &Tree,
    store: &Store,
    opts: &CpioOptions,
) -> Result<(W, CpioSummary), CpioError> {
    let mut w = CpioWriter::new(out, store, opts);
    w.write_entries(tree.archive_entries())?;
    w.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::{Command, Stdio};

    use super::*;
    use crate::tree::testutil::*;
    use crate::tree::{Meta, Tree};

    /// (name, 13 header fields, data) per newc entry, trailer included.
    pub(crate) fn parse_newc(b: &[u8]) -> Vec<(String, [u32; 13], Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0usize;
        let align = |p: usize| (p + 3) & !3;
        loop {
            assert_eq!(&b[pos..pos + 6], b"070701", "magic at {pos}");
            let mut f = [0u32; 13];
            for (i, v) in f.iter_mut().enumerate() {
                let s = std::str::from_utf8(&b[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap();
                assert_eq!(s, s.to_uppercase(), "upper-case hex");
                *v = u32::from_str_radix(s, 16).unwrap();
            }
            let name_end = pos + 110 + f[11] as usize;
            let name = String::from_utf8(b[pos + 110..name_end - 1].to_vec()).unwrap();
            assert_eq!(b[name_end - 1], 0);
            let data_start = align(name_end);
            let data = b[data_start..data_start + f[6] as usize].to_vec();
            pos = align(data_start + f[6] as usize);
            let done = name == TRAILER;
            out.push((name, f, data));
            if done {
                assert_eq!(b.len() % 512, 0);
                assert!(b[pos..].iter().all(|x| *x == 0));
                return out;
            }
        }
    }

    fn cpio_bytes(t: &Tree, store: &Store) -> Vec<u8> {
        write_cpio(Vec::new(), t, store, &CpioOptions::default())
            .unwrap()
            .0
    }

    #[test]
    fn runs_cut_by_file_data_and_never_inside_a_hard_link_group() {
        let (_d, store) = store();
        let meta = Meta::new(0o644, 0, 0, 0);
        let mut t = Tree::new();
        for (path, size) in [("a", 40), ("b", 40), ("c", 40), ("d", 40), ("e", 40)] {
            let blob = store.put_bytes(&vec![b'x'; size]).unwrap();
            t.insert(Entry::file(path, blob, meta)).unwrap();
        }
        // `b` and `d` are one hard-link group: no cut before `c` or `d`.
        t.insert(Entry::hardlink("d", "b", meta)).unwrap();
        let list: Vec<&Entry> = t.archive_entries().collect();
        let names = |runs: &[std::ops::Range<usize>]| -> Vec<Vec<&str>> {
            runs.iter()
                .map(|run| list[run.clone()].iter().map(|e| e.path.as_str()).collect())
                .collect()
        };
        // Each entry counts its data plus 512 bytes (552 for a file): a cut comes before the
        // entry that would take a run past the target, unless it would split the group.
        let runs = archive_runs(&list, 1200).unwrap();
        assert_eq!(names(&runs.ranges), [vec!["a", "b", "c", "d"], vec!["e"]]);
        let runs = archive_runs(&list, 1000).unwrap();
        assert_eq!(
            names(&runs.ranges),
            [vec!["a"], vec!["b", "c", "d"], vec!["e"]]
        );
        let runs = archive_runs(&list, 500).unwrap();
        assert_eq!(
            names(&runs.ranges),
            [vec!["a"], vec!["b", "c", "d"], vec!["e"]]
        );
        let whole = 0..list.len();
        assert_eq!(archive_runs(&list, u64::MAX).unwrap().ranges, [whole]);

        // Each run is a complete archive with its trailer, and together they hold every entry;
        // the group's data is carried once, by its last member.
        let mut all = Vec::new();
        for run in runs.ranges.clone() {
            let (bytes, _) = runs
                .write(Vec::new(), &list, run, &store, &CpioOptions::default())
                .unwrap();
            let entries = parse_newc(&bytes);
            assert_eq!(entries.last().unwrap().0, TRAILER);
            all.extend(entries.into_iter().filter(|e| e.0 != TRAILER));
        }
        let names: Vec<&str> = all.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        let (b, d) = (&all[1], &all[3]);
        assert_eq!(
            (b.1[0], b.1[4], b.2.len()),
            (d.1[0], 2, 0),
            "same inode, nlink 2"
        );
        assert_eq!(d.2.len(), 40);
    }

    #[test]
    fn headers_links_and_trailer() {
        let (_d, store) = store();
        let t = sample_tree(&store, true);
        let bytes = cpio_bytes(&t, &store);
        assert_eq!(bytes, cpio_bytes(&t, &store), "deterministic");
        let ents = parse_newc(&bytes);
        let names: Vec<&str> = ents.iter().map(|e| e.0.as_str()).collect();
        let mut want: Vec<&str> = t.iter().map(|e| e.path.as_str()).collect();
        want.push(TRAILER);
        assert_eq!(names, want);
        assert_eq!(ents[0].1[0], LINUXKIT_INO_BASE);
        let get = |n: &str| ents.iter().find(|e| e.0 == n).unwrap();
        for (name, f, _) in &ents {
            assert_eq!((f[7], f[8], f[12]), (3, 1, 0), "dev 3/1, check 0: {name}");
        }
        let bin = get("bin");
        assert_eq!((bin.1[1], bin.1[4]), (0o040755, 2));
        // Hard-link group: one inode, nlink 3, data only on the last member.
        let group = ["bin/busybox", "bin/ls", "bin/sh"].map(get);
        assert!(
            group
                .iter()
                .all(|g| g.1[0] == group[0].1[0] && g.1[4] == 3 && g.1[1] == 0o104755)
        );
        assert_eq!(group.map(|g| g.1[6]), [0, 0, 5000]);
        assert_eq!(group[2].2, t.read_file(&store, "bin/busybox").unwrap());
        let sym = get("etc/mtab");
        assert_eq!(
            (sym.1[1], sym.2.as_slice()),
            (0o120777, &b"/proc/mounts"[..])
        );
        let null = get("dev/null");
        assert_eq!((null.1[1], null.1[9], null.1[10]), (0o020666, 1, 3));
        assert_eq!(get("dev/sda").1[1], 0o060660);
        let passwd = get("etc/passwd");
        assert_eq!((passwd.1[2], passwd.1[3], passwd.1[5]), (1000, 100, 1));
        // Inodes are unique per entry except within the group; the trailer takes the next one.
        let mut inos: Vec<u32> = ents.iter().map(|e| e.1[0]).collect();
        let trailer = ents.last().unwrap();
        assert_eq!((trailer.1[4], trailer.1[1]), (1, 0));
        assert_eq!(trailer.1[0], *inos.iter().max().unwrap());
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), ents.len() - 2);
        let (_, summary) =
            write_cpio(Vec::new(), &t, &store, &CpioOptions { ino_base: 5000 }).unwrap();
        assert_eq!(summary.next_ino, 5000 + inos.len() as u32);
        assert_eq!(
            (summary.entries, summary.bytes),
            (t.len() as u64, bytes.len() as u64)
        );
    }

    #[test]
    fn the_root_entry_comes_first_as_dot() {
        let (_d, store) = store();
        let mut t = tree_of(vec![file(&store, "a", b"A")]);
        t.set_root(Some(crate::tree::Entry::dir(
            crate::tree::ROOT_PATH,
            Meta::new(0o700, 5, 6, 1_492_533_000),
        )))
        .unwrap();
        let bytes = cpio_bytes(&t, &store);
        let ents = parse_newc(&bytes);
        let names: Vec<&str> = ents.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, [".", "a", TRAILER]);
        let f = ents[0].1;
        // ino, mode, uid, gid, nlink, mtime
        assert_eq!(
            f[..6],
            [LINUXKIT_INO_BASE, 0o040700, 5, 6, 2, 1_492_533_000]
        );

        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, &bytes).unwrap();
        let long = run(Command::new("cpio")
            .args(["-itv", "--quiet", "-n", "-F"])
            .arg(&archive));
        let first: Vec<&str> = long.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            (first[0], first[2], first[3]),
            ("drwx------", "5", "6"),
            "{long}"
        );
        assert_eq!(first.last(), Some(&"."), "{long}");
    }

    #[test]
    fn gnu_cpio_lists_and_extracts_it() {
        let (_d, store) = store();
        let listed = sample_tree(&store, true);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, cpio_bytes(&listed, &store)).unwrap();
        let names = run(Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&archive));
        let want: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names.lines().collect::<Vec<_>>(), want);
        let long = run(Command::new("cpio")
            .args(["-tv", "--quiet", "-n", "-F"])
            .arg(&archive));
        for (line, e) in long.lines().zip(listed.iter()) {
            let perms = line.split_whitespace().next().unwrap();
            let primary = listed.resolve(&e.path).unwrap();
            assert_eq!(
                perms,
                perm_string(type_char(&listed, e), primary.mode),
                "{line}"
            );
            match &e.kind {
                EntryKind::Symlink { target } => {
                    assert!(line.ends_with(&format!("{} -> {target}", e.path)), "{line}")
                }
                _ => assert!(line.ends_with(&e.path), "{line}"),
            }
        }

        let t = sample_tree(&store, false);
        std::fs::write(&archive, cpio_bytes(&t, &store)).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let status = Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .current_dir(&out)
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success());
        assert_extracted_matches(&out, &t, &store);
    }

    #[test]
    fn refusals() {
        let (_d, store) = store();
        let marker = tree_of(vec![crate::tree::Entry::new(
            ".wh.x",
            EntryKind::Whiteout,
            M644,
        )]);
        let e = write_cpio(Vec::new(), &marker, &store, &CpioOptions::default()).unwrap_err();
        assert!(matches!(e, CpioError::Marker { .. }), "{e}");
        let mut w = CpioWriter::new(Vec::new(), &store, &CpioOptions::default());
        let link = crate::tree::Entry::hardlink("l", "elsewhere", M644);
        assert!(matches!(
            w.write_entries([&link]),
            Err(CpioError::DanglingHardlink { .. })
        ));
        let mut big = blob(&store, b"");
        big.size = 1 << 32;
        let huge = tree_of(vec![crate::tree::Entry::file("huge", big, M644)]);
        let e = write_cpio(Vec::new(), &huge, &store, &CpioOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                CpioError::TooLarge {
                    size: 4_294_967_296,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.category(), ErrorCategory::User);
        let e = write_cpio(
            Vec::new(),
            &tree_of(vec![]),
            &store,
            &CpioOptions { ino_base: u32::MAX },
        )
        .unwrap_err();
        assert!(matches!(e, CpioError::InodeOverflow { .. }));
        // Clamped mtimes.
        let neg = tree_of(vec![crate::tree::Entry::dir(
            "d",
            Meta::new(0o755, 0, 0, -10),
        )]);
        let bytes = write_cpio(Vec::new(), &neg, &store, &CpioOptions::default())
            .unwrap()
            .0;
        assert_eq!(parse_newc(&bytes)[0].1[5], 0);
    }
}
