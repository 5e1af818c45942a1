//! Squashfs 4.0 images, gzip-compressed, as `mksquashfs -comp gzip` makes them: LinuxKit's
//! `squashfs` output and the root file systems of other formats.
//!
//! # Input
//!
//! The tree is a list of [`FsEntry`], one per path (`""` is the root). Order does not matter.
//! Directories missing from the list, the root included, are made with mode 0755, owner 0:0
//! and [`SquashfsOptions::mkfs_time`] as mtime. Entries that share a [`FsEntry::link_group`]
//! are hard links to one inode: they must be of one kind with the same content (same [`Data`],
//! symlink target or device number), and the inode takes its mode, owner, time and xattrs
//! from the first of them in path order. Times are clamped to squashfs's `0..=u32::MAX`.
//! Extended attributes must be in the `user.`, `trusted.` or `security.` namespace, the only
//! ones squashfs can hold.
//!
//! # What is written
//!
//! In this order, as the Linux kernel requires (every table after the data, in this order):
//!
//! 1. The superblock (96 bytes), written last by seeking back: table positions and compressed
//!    sizes are only known once everything after it is written. Then, when the compression
//!    level is not gzip's default 9, the compressor options (level, window 15, default
//!    strategy) in an uncompressed metadata block.
//! 2. File data, in inode number order (below). Each file is cut into blocks of
//!    [`SquashfsOptions::block_size`], each a separate zlib stream, or stored as it is when
//!    compressing does not shrink it; a whole block of zeros is a hole, not stored. Files
//!    smaller than a block are packed, back to back, into fragment blocks, compressed the
//!    same way; a larger file's last block is a short block of its own. A file with the same
//!    contents as an earlier one shares its blocks or fragment instead (the superblock says
//!    "duplicates removed"). Blocks are compressed on all cores and written in a fixed order
//!    (see `data`).
//! 3. The inode table: one inode per file, directory, symlink, device, fifo or socket (hard
//!    links share one). Basic inodes where they suffice, extended ones for xattrs, hard-linked
//!    files, holes, files or offsets past 4 GiB, and directories whose listing spans metadata
//!    blocks: these carry a directory index (offset, block and first name of the first run in
//!    each block after the first), which lets the kernel skip to the right block on lookup.
//! 4. The directory table: each directory's entries sorted by name (bytewise), in runs of at
//!    most 256 under a header naming the inode table block of their inodes; a new run starts
//!    whenever that block changes, an inode number is more than ±32767 from the run's base, or
//!    an entry would start in the next metadata block.
//! 5. The fragment table (position and size of each fragment block), the export table (inode
//!    number to inode reference, for NFS), and the id table (the distinct uids and gids, in
//!    ascending order; inodes hold 16-bit indices into it). Each is a lookup table: 8 KiB
//!    metadata blocks followed by the list of their positions, to which the superblock
//!    points.
//! 6. With any xattrs: the key/value pairs of each distinct xattr set (an inode's xattrs; equal
//!    sets are written once and share an id, numbered in inode order), the xattr id table
//!    (lookup table of reference, count and size per set), and its header. Values are stored
//!    inline.
//! 7. Zeros up to a multiple of 4 KiB, as the kernel wants whole device blocks
//!    (`bytes_used` in the superblock excludes them).
//!
//! Metadata (tables 3–6) is a stream cut into 8 KiB blocks, each compressed like data blocks
//! (stored when that does not shrink it) behind a 16-bit size header; it is built in memory,
//! file data is not.
//!
//! Inode numbers follow a post-order walk of the tree: each directory's entries in name
//! order, a subdirectory's whole subtree before the subdirectory itself, and every directory
//! after its entries, so the root is the last inode. The inode table is written in that order,
//! which is what lets each directory's listing point at inodes already written, and each
//! directory inode at a listing already written. The root's parent is the inode count plus
//! one, as mksquashfs writes it. Directory link counts are 2 plus the number of
//! subdirectories.
//!
//! Nothing comes from the clock or the environment: the superblock time is an option, the rest
//! from the entries, and the layout from sorted input. The image is the same for any number
//! of threads.

mod data;
mod metadata;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::io::{Seek, SeekFrom, Write};

use crate::{Data, DiskError, FsEntry, FsKind};
use data::{DataWriter, FileData, Fragment};
use metadata::{METADATA_BLOCK, MetadataWriter};

/// How to write a squashfs image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquashfsOptions {
    /// Superblock time, and the mtime of directories made for missing parents.
    pub mkfs_time: i64,
    /// Data block size: a power of two from 4 KiB to 1 MiB (default 128 KiB, as mksquashfs).
    pub block_size: u32,
    /// gzip (zlib) level, 1 to 9 (default 9, as mksquashfs).
    pub compression_level: u32,
}

impl Default for SquashfsOptions {
    fn default() -> Self {
        SquashfsOptions {
            mkfs_time: 0,
            block_size: 128 << 10,
            compression_level: 9,
        }
    }
}

/// Writes the squashfs image of `entries` at the current position of `out` and returns its
/// size (a multiple of 4 KiB). `out` is left at the end of the image.
///
/// Compressed sizes are only known after compressing, so the superblock is written last, by
/// seeking back to where the image starts.
pub fn write<W: Write + Seek>(
    entries: Vec<FsEntry>,
    options: &SquashfsOptions,
    out: &mut W,
) -> Result<u64, DiskError> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    write_with_threads(entries, options, out, threads)
}

/// [`write`] on `threads` threads.
fn write_with_threads<W: Write + Seek>(
    entries: Vec<FsEntry>,
    options: &SquashfsOptions,
    out: &mut W,
    threads: usize,
) -> Result<u64, DiskError> {
    let block_log = check_options(options)?;
    let tree = Tree::build(entries, clamp_time(options.mkfs_time))?;
    let level = options.compression_level;

    let base = out.stream_position().map_err(DiskError::Io)?;
    let mut out = Out { inner: out, pos: 0 };
    out.write(&[0; SUPERBLOCK])?;
    let mut flags = FLAG_DUPLICATES | FLAG_EXPORTABLE;
    if level != DEFAULT_LEVEL {
        // An uncompressed 8-byte metadata block: level, window bits, strategies (none set:
        // zlib's default).
        flags |= FLAG_COMPRESSOR_OPTIONS;
        out.write(&(8 | 0x8000u16).to_le_bytes())?;
        out.write(&level.to_le_bytes())?;
        out.write(&15u16.to_le_bytes())?;
        out.write(&0u16.to_le_bytes())?;
    }

    // File data, in inode order.
    let mut writer = DataWriter::new(
        &mut out,
        options.block_size,
        level,
        threads,
        tree.inodes.len(),
    );
    for &i in &tree.order {
        if let Kind::File(data) = &tree.inodes[i].kind {
            writer.add(i, data)?;
        }
    }
    let (files, fragments) = writer.finish()?;

    let tables = tree.metadata(&files, options.block_size, level)?;

    let inode_table_start = out.pos;
    out.write(&tables.inodes)?;
    let directory_table_start = out.pos;
    out.write(&tables.directories)?;
    let mut fragment_entries = Vec::with_capacity(fragments.len() * 16);
    for Fragment { start, size } in &fragments {
        fragment_entries.extend_from_slice(&start.to_le_bytes());
        fragment_entries.extend_from_slice(&size.to_le_bytes());
        fragment_entries.extend_from_slice(&0u32.to_le_bytes());
    }
    let fragment_table_start = out.lookup_table(&fragment_entries, level)?;
    let export_entries: Vec<u8> = tables
        .references
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let export_table_start = out.lookup_table(&export_entries, level)?;
    let id_entries: Vec<u8> = tables.ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let id_table_start = out.lookup_table(&id_entries, level)?;
    let xattr_table_start = if tables.xattr_ids.is_empty() {
        NONE64
    } else {
        let pairs_start = out.pos;
        out.write(&tables.xattr_pairs)?;
        let (packed, block_starts) = {
            let mut m = MetadataWriter::new(level);
            m.write(&tables.xattr_ids);
            m.finish()
        };
        let ids_start = out.pos;
        out.write(&packed)?;
        let header_start = out.pos;
        out.write(&pairs_start.to_le_bytes())?;
        let count = u32::try_from(tables.xattr_ids.len() / 16).expect("fewer than 2^32 inodes");
        out.write(&count.to_le_bytes())?;
        out.write(&0u32.to_le_bytes())?;
        for s in block_starts {
            out.write(&(ids_start + s).to_le_bytes())?;
        }
        header_start
    };
    let bytes_used = out.pos;
    let size = bytes_used.next_multiple_of(DEVICE_BLOCK);
    out.write(&vec![0; (size - bytes_used) as usize])?;

    let mut sb = Vec::with_capacity(SUPERBLOCK);
    sb.extend_from_slice(&MAGIC.to_le_bytes());
    sb.extend_from_slice(&(tree.order.len() as u32).to_le_bytes());
    sb.extend_from_slice(&clamp_time(options.mkfs_time).to_le_bytes());
    sb.extend_from_slice(&options.block_size.to_le_bytes());
    sb.extend_from_slice(&(fragments.len() as u32).to_le_bytes());
    sb.extend_from_slice(&COMPRESSION_GZIP.to_le_bytes());
    sb.extend_from_slice(&block_log.to_le_bytes());
    sb.extend_from_slice(&flags.to_le_bytes());
    sb.extend_from_slice(&(tables.ids.len() as u16).to_le_bytes());
    sb.extend_from_slice(&4u16.to_le_bytes());
    sb.extend_from_slice(&0u16.to_le_bytes());
    for v in [
        tables.root,
        bytes_used,
        id_table_start,
        xattr_table_start,
        inode_table_start,
        directory_table_start,
        fragment_table_start,
        export_table_start,
    ] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    debug_assert_eq!(sb.len(), SUPERBLOCK);
    let inner = out.inner;
    inner
        .seek(SeekFrom::Start(base))
        .and_then(|_| inner.write_all(&sb))
        .and_then(|_| inner.seek(SeekFrom::Start(base + size)))
        .map_err(DiskError::Io)?;
    Ok(size)
}

const MAGIC: u32 = 0x7371_7368;
const SUPERBLOCK: usize = 96;
const COMPRESSION_GZIP: u16 = 1;
const DEFAULT_LEVEL: u32 = 9;
/// The image is padded to a multiple of this.
const DEVICE_BLOCK: u64 = 4096;
/// "No such table" and "no fragment" / "no xattrs" in 64 and 32 bits.
const NONE64: u64 = u64::MAX;
const NONE32: u32 = u32::MAX;
/// Superblock flags: files with the same contents share their data, there is an export table,
/// and the compressor options follow the superblock.
const FLAG_DUPLICATES: u16 = 0x0040;
const FLAG_EXPORTABLE: u16 = 0x0080;
const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;

/// Largest directory entry count under one header.
const RUN: usize = 256;

fn invalid(msg: impl Into<String>) -> DiskError {
    DiskError::Invalid(msg.into())
}

fn check_options(options: &SquashfsOptions) -> Result<u16, DiskError> {
    let b = options.block_size;
    if !b.is_power_of_two() || !(4096..=1 << 20).contains(&b) {
        return Err(invalid(format!(
            "squashfs: block size {b}: a power of two from 4096 to 1048576"
        )));
    }
    if !(1..=9).contains(&options.compression_level) {
        return Err(invalid(format!(
            "squashfs: gzip level {}: 1 to 9",
            options.compression_level
        )));
    }
    Ok(b.trailing_zeros() as u16)
}

fn clamp_time(t: i64) -> u32 {
    u32::try_from(t.clamp(0, u32::MAX.into())).expect("clamped")
}

/// Bytes written so far, from where the image starts.
struct Out<'w, W: Write> {
    inner: &'w mut W,
    pos: u64,
}

impl<W: Write> Out<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        self.inner.write_all(bytes).map_err(DiskError::Io)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Writes a lookup table (fixed-size `entries`, whose size divides 8 KiB) as metadata
    /// blocks and then the list of their positions; returns where the list starts.
    fn lookup_table(&mut self, entries: &[u8], level: u32) -> Result<u64, DiskError> {
        let mut m = MetadataWriter::new(level);
        m.write(entries);
        let (packed, block_starts) = m.finish();
        let start = self.pos;
        self.write(&packed)?;
        let list = self.pos;
        for s in block_starts {
            self.write(&(start + s).to_le_bytes())?;
        }
        Ok(list)
    }
}

/// Basic inode types; the extended type of each is this plus 7.
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
enum InodeType {
    Dir = 1,
    File = 2,
    Symlink = 3,
    BlockDev = 4,
    CharDev = 5,
    Fifo = 6,
    Socket = 7,
}

const EXTENDED: u16 = 7;

/// The tree, planned: names, inodes and their numbering. Nothing read yet.
struct Tree {
    /// Directory entries by path; `nodes[0]` is the root.
    nodes: Vec<Node>,
    inodes: Vec<Inode>,
    /// Inode indices in inode number order (number = position + 1).
    order: Vec<usize>,
}

struct Node {
    name: String,
    inode: usize,
    /// The directory holding this entry (the root holds itself).
    parent: usize,
    /// A directory's entries, sorted by name.
    children: Vec<usize>,
}

struct Inode {
    kind: Kind,
    /// Permission bits.
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
    xattrs: Vec<(String, Vec<u8>)>,
    nlink: u32,
    number: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// The directory's node.
    Dir(usize),
    File(Data),
    Symlink(String),
    /// Device number in Linux's encoding.
    CharDev(u32),
    BlockDev(u32),
    Fifo,
    Socket,
}

impl Kind {
    fn basic_type(&self) -> InodeType {
        match self {
            Kind::Dir(_) => InodeType::Dir,
            Kind::File(_) => InodeType::File,
            Kind::Symlink(_) => InodeType::Symlink,
            Kind::CharDev(_) => InodeType::CharDev,
            Kind::BlockDev(_) => InodeType::BlockDev,
            Kind::Fifo => InodeType::Fifo,
            Kind::Socket => InodeType::Socket,
        }
    }
}

/// Linux's `new_encode_dev`, as squashfs stores device numbers.
fn device(path: &str, major: u32, minor: u32) -> Result<u32, DiskError> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return Err(invalid(format!(
            "squashfs: device {path:?} is {major}:{minor}; majors must be under 4096 and \
             minors under 2^20"
        )));
    }
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The namespace id and the rest of an xattr name.
fn xattr_prefix(name: &str) -> Option<(u16, &str)> {
    [("user.", 0), ("trusted.", 1), ("security.", 2)]
        .into_iter()
        .find_map(|(prefix, id)| {
            name.strip_prefix(prefix)
                .filter(|rest| !rest.is_empty())
                .map(|rest| (id, rest))
        })
}

fn check_xattrs(path: &str, xattrs: &[(String, Vec<u8>)]) -> Result<(), DiskError> {
    for (name, value) in xattrs {
        if xattr_prefix(name).is_none() || name.len() > 255 || value.len() > 65536 {
            return Err(invalid(format!(
                "squashfs: xattr {name:?} of {path:?}: squashfs holds only user., trusted. \
                 and security. names (up to 255 bytes, values up to 64 KiB)"
            )));
        }
    }
    Ok(())
}

impl Tree {
    fn build(entries: Vec<FsEntry>, mkfs_time: u32) -> Result<Tree, DiskError> {
        let by_path = crate::fs_tree::complete(entries, mkfs_time.into(), "squashfs")?;

        let mut nodes: Vec<Node> = Vec::with_capacity(by_path.len());
        let mut inodes: Vec<Inode> = Vec::with_capacity(by_path.len());
        let mut node_of: HashMap<String, usize> = HashMap::with_capacity(by_path.len());
        let mut groups: HashMap<u32, (usize, String)> = HashMap::new();
        // Path order puts every directory (a prefix) before what it holds.
        for (path, e) in by_path {
            let (parent_path, name) = path.rsplit_once('/').unwrap_or(("", &path));
            let parent = if path.is_empty() {
                0
            } else {
                let p = node_of[parent_path];
                if !matches!(inodes[nodes[p].inode].kind, Kind::Dir(_)) {
                    return Err(invalid(format!(
                        "squashfs: {path:?} is inside {parent_path:?}, which is not a directory"
                    )));
                }
                p
            };
            let index = nodes.len();
            let kind = match e.kind {
                FsKind::Dir => Kind::Dir(index),
                FsKind::File(data) => Kind::File(data),
                FsKind::Symlink(target) => {
                    if target.is_empty() || target.len() > 4095 || target.contains('\0') {
                        return Err(invalid(format!(
                            "squashfs: symlink {path:?} has an empty, NUL-containing or \
                             over-long target"
                        )));
                    }
                    Kind::Symlink(target)
                }
                FsKind::CharDev { major, minor } => Kind::CharDev(device(&path, major, minor)?),
                FsKind::BlockDev { major, minor } => Kind::BlockDev(device(&path, major, minor)?),
                FsKind::Fifo => Kind::Fifo,
                FsKind::Socket => Kind::Socket,
            };
            if path.is_empty() && !matches!(kind, Kind::Dir(_)) {
                return Err(invalid(
                    "squashfs: the root entry (\"\") must be a directory",
                ));
            }
            check_xattrs(&path, &e.xattrs)?;
            let linked = match e.link_group {
                Some(_) if matches!(kind, Kind::Dir(_)) => {
                    return Err(invalid(format!(
                        "squashfs: directory {path:?} has a link group; directories cannot be \
                         hard links"
                    )));
                }
                Some(g) => groups
                    .get(&g)
                    .cloned()
                    .map(|(inode, first)| (g, inode, first)),
                None => None,
            };
            let inode = match linked {
                Some((g, inode, first)) => {
                    if inodes[inode].kind != kind {
                        return Err(invalid(format!(
                            "squashfs: {path:?} and {first:?} are hard links (link group {g}) \
                             but differ in kind or content"
                        )));
                    }
                    inodes[inode].nlink += 1;
                    inode
                }
                None => {
                    inodes.push(Inode {
                        kind,
                        mode: (e.mode & 0o7777) as u16,
                        uid: e.uid,
                        gid: e.gid,
                        mtime: clamp_time(e.mtime),
                        xattrs: e.xattrs,
                        nlink: 1,
                        number: 0,
                    });
                    if let Some(g) = e.link_group {
                        groups.insert(g, (inodes.len() - 1, path.clone()));
                    }
                    inodes.len() - 1
                }
            };
            nodes.push(Node {
                name: name.to_string(),
                inode,
                parent,
                children: Vec::new(),
            });
            if index != 0 {
                nodes[parent].children.push(index);
            }
            node_of.insert(path, index);
        }

        for n in 0..nodes.len() {
            let mut children = std::mem::take(&mut nodes[n].children);
            children.sort_by(|&a, &b| nodes[a].name.as_bytes().cmp(nodes[b].name.as_bytes()));
            let subdirs = children
                .iter()
                .filter(|&&c| matches!(inodes[nodes[c].inode].kind, Kind::Dir(_)))
                .count();
            if matches!(inodes[nodes[n].inode].kind, Kind::Dir(_)) {
                inodes[nodes[n].inode].nlink = 2 + subdirs as u32;
            }
            nodes[n].children = children;
        }

        // Post-order numbering: a directory after its entries, a subdirectory's subtree
        // before the subdirectory.
        let mut order = Vec::with_capacity(inodes.len());
        let mut stack = vec![(0usize, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match nodes[node].children.get(*next) {
                Some(&child) => {
                    *next += 1;
                    let inode = nodes[child].inode;
                    if matches!(inodes[inode].kind, Kind::Dir(_)) {
                        stack.push((child, 0));
                    } else if inodes[inode].number == 0 {
                        order.push(inode);
                        inodes[inode].number = order.len() as u32;
                    }
                }
                None => {
                    let inode = nodes[node].inode;
                    order.push(inode);
                    inodes[inode].number = order.len() as u32;
                    stack.pop();
                }
            }
        }
        debug_assert_eq!(order.len(), inodes.len());
        if u32::try_from(order.len()).is_err() {
            return Err(invalid("squashfs: more than 2^32 - 1 inodes"));
        }
        Ok(Tree {
            nodes,
            inodes,
            order,
        })
    }

    /// Builds the inode, directory, id and xattr tables, given where the data went.
    fn metadata(
        &self,
        files: &[FileData],
        block_size: u32,
        level: u32,
    ) -> Result<Tables, DiskError> {
        let ids: BTreeSet<u32> = self.inodes.iter().flat_map(|i| [i.uid, i.gid]).collect();
        if ids.len() > usize::from(u16::MAX) {
            return Err(invalid(format!(
                "squashfs: {} distinct uids and gids, at most 65535",
                ids.len()
            )));
        }
        let id_index: HashMap<u32, u16> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u16))
            .collect();

        // Xattr sets, numbered in inode order.
        let mut xattr_pairs = MetadataWriter::new(level);
        let mut xattr_ids = Vec::new();
        let mut set_ids: HashMap<&[(String, Vec<u8>)], u32> = HashMap::new();
        let mut xattr_of = vec![NONE32; self.inodes.len()];
        for &i in &self.order {
            let set = self.inodes[i].xattrs.as_slice();
            if set.is_empty() {
                continue;
            }
            let next = set_ids.len() as u32;
            let id = *set_ids.entry(set).or_insert_with(|| {
                let reference = xattr_pairs.reference();
                let mut bytes = Vec::new();
                for (name, value) in set {
                    let (prefix, rest) = xattr_prefix(name).expect("checked when built");
                    bytes.extend_from_slice(&prefix.to_le_bytes());
                    bytes.extend_from_slice(&(rest.len() as u16).to_le_bytes());
                    bytes.extend_from_slice(rest.as_bytes());
                    bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(value);
                }
                xattr_pairs.write(&bytes);
                xattr_ids.extend_from_slice(&reference.to_le_bytes());
                xattr_ids.extend_from_slice(&(set.len() as u32).to_le_bytes());
                xattr_ids.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                next
            });
            xattr_of[i] = id;
        }

        let mut inode_table = MetadataWriter::new(level);
        let mut dir_table = MetadataWriter::new(level);
        let mut references = vec![0u64; self.inodes.len()];
        let inode_count = self.order.len() as u32;
        for &i in &self.order {
            let inode = &self.inodes[i];
            let xattr = xattr_of[i];
            let mut b = Vec::with_capacity(64);
            let extended = |basic: bool| -> u16 {
                if basic {
                    inode.kind.basic_type() as u16
                } else {
                    inode.kind.basic_type() as u16 + EXTENDED
                }
            };
            // The header is the same for all types but the type itself, filled in below.
            let header = |b: &mut Vec<u8>, type_: u16| {
                b.extend_from_slice(&type_.to_le_bytes());
                b.extend_from_slice(&inode.mode.to_le_bytes());
                b.extend_from_slice(&id_index[&inode.uid].to_le_bytes());
                b.extend_from_slice(&id_index[&inode.gid].to_le_bytes());
                b.extend_from_slice(&inode.mtime.to_le_bytes());
                b.extend_from_slice(&inode.number.to_le_bytes());
            };
            match &inode.kind {
                Kind::Dir(node) => {
                    let listing = self.listing(*node, &references, &mut dir_table)?;
                    let parent = if *node == 0 {
                        inode_count + 1
                    } else {
                        self.inodes[self.nodes[self.nodes[*node].parent].inode].number
                    };
                    let size = listing.size + 3;
                    let basic =
                        xattr == NONE32 && size <= u32::from(u16::MAX) && listing.index_count == 0;
                    header(&mut b, extended(basic));
                    if basic {
                        b.extend_from_slice(&listing.block.to_le_bytes());
                        b.extend_from_slice(&inode.nlink.to_le_bytes());
                        b.extend_from_slice(&(size as u16).to_le_bytes());
                        b.extend_from_slice(&listing.offset.to_le_bytes());
                        b.extend_from_slice(&parent.to_le_bytes());
                    } else {
                        b.extend_from_slice(&inode.nlink.to_le_bytes());
                        b.extend_from_slice(&size.to_le_bytes());
                        b.extend_from_slice(&listing.block.to_le_bytes());
                        b.extend_from_slice(&parent.to_le_bytes());
                        b.extend_from_slice(&listing.index_count.to_le_bytes());
                        b.extend_from_slice(&listing.offset.to_le_bytes());
                        b.extend_from_slice(&xattr.to_le_bytes());
                        b.extend_from_slice(&listing.index);
                    }
                }
                Kind::File(data) => {
                    let f = &files[i];
                    let size = data.len();
                    let (fragment, offset) = f.fragment.unwrap_or((NONE32, 0));
                    let expected_blocks = if f.fragment.is_some() {
                        size / u64::from(block_size)
                    } else {
                        size.div_ceil(u64::from(block_size))
                    };
                    debug_assert_eq!(f.blocks.len() as u64, expected_blocks);
                    let basic = xattr == NONE32
                        && inode.nlink == 1
                        && f.sparse == 0
                        && size <= u64::from(u32::MAX)
                        && f.start <= u64::from(u32::MAX);
                    header(&mut b, extended(basic));
                    if basic {
                        b.extend_from_slice(&(f.start as u32).to_le_bytes());
                        b.extend_from_slice(&fragment.to_le_bytes());
                        b.extend_from_slice(&offset.to_le_bytes());
                        b.extend_from_slice(&(size as u32).to_le_bytes());
                    } else {
                        b.extend_from_slice(&f.start.to_le_bytes());
                        b.extend_from_slice(&size.to_le_bytes());
                        b.extend_from_slice(&f.sparse.to_le_bytes());
                        b.extend_from_slice(&inode.nlink.to_le_bytes());
                        b.extend_from_slice(&fragment.to_le_bytes());
                        b.extend_from_slice(&offset.to_le_bytes());
                        b.extend_from_slice(&xattr.to_le_bytes());
                    }
                    for s in &f.blocks {
                        b.extend_from_slice(&s.to_le_bytes());
                    }
                }
                Kind::Symlink(target) => {
                    header(&mut b, extended(xattr == NONE32));
                    b.extend_from_slice(&inode.nlink.to_le_bytes());
                    b.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    b.extend_from_slice(target.as_bytes());
                    if xattr != NONE32 {
                        b.extend_from_slice(&xattr.to_le_bytes());
                    }
                }
                Kind::CharDev(dev) | Kind::BlockDev(dev) => {
                    header(&mut b, extended(xattr == NONE32));
                    b.extend_from_slice(&inode.nlink.to_le_bytes());
                    b.extend_from_slice(&dev.to_le_bytes());
                    if xattr != NONE32 {
                        b.extend_from_slice(&xattr.to_le_bytes());
                    }
                }
                Kind::Fifo | Kind::Socket => {
                    header(&mut b, extended(xattr == NONE32));
                    b.extend_from_slice(&inode.nlink.to_le_bytes());
                    if xattr != NONE32 {
                        b.extend_from_slice(&xattr.to_le_bytes());
                    }
                }
            }
            references[i] = inode_table.reference();
            inode_table.write(&b);
        }

        let root = references[self.nodes[0].inode];
        Ok(Tables {
            inodes: inode_table.finish().0,
            directories: dir_table.finish().0,
            references: self.order.iter().map(|&i| references[i]).collect(),
            ids: ids.into_iter().collect(),
            xattr_pairs: xattr_pairs.finish().0,
            xattr_ids,
            root,
        })
    }

    /// Writes the listing of directory `node` (whose entries' inodes are all written) and
    /// says where it is.
    fn listing(
        &self,
        node: usize,
        references: &[u64],
        dir_table: &mut MetadataWriter,
    ) -> Result<Listing, DiskError> {
        let start = dir_table.reference();
        let children = &self.nodes[node].children;
        let inode_of = |c: usize| &self.inodes[self.nodes[c].inode];
        let mut size = 0usize;
        let mut index = Vec::new();
        let mut index_count = 0usize;
        let mut indexed_block = start >> 16;
        let mut run_start = 0;
        while run_start < children.len() {
            let at = dir_table.reference();
            let first = children[run_start];
            if at >> 16 != indexed_block {
                // The first run in this metadata block: an index entry, so lookups can skip
                // the blocks before it.
                indexed_block = at >> 16;
                index_count += 1;
                let name = self.nodes[first].name.as_bytes();
                index.extend_from_slice(&(size as u32).to_le_bytes());
                let block = u32::try_from(indexed_block)
                    .map_err(|_| invalid("squashfs: directory table over 4 GiB"))?;
                index.extend_from_slice(&block.to_le_bytes());
                index.extend_from_slice(&(name.len() as u32 - 1).to_le_bytes());
                index.extend_from_slice(name);
            }
            let block = references[self.nodes[first].inode] >> 16;
            let base = i64::from(inode_of(first).number);
            // A run ends after 256 entries, at an entry whose inode is in another block or
            // too far in number, or before an entry that would start in the next metadata
            // block (so that each block's first run can be indexed).
            let room = METADATA_BLOCK - (at & 0xffff) as usize;
            let mut run_bytes = 12;
            let run_len = children[run_start..]
                .iter()
                .take(RUN)
                .enumerate()
                .take_while(|&(i, &c)| {
                    let fits = i == 0 || run_bytes < room;
                    run_bytes += 8 + self.nodes[c].name.len();
                    fits && references[self.nodes[c].inode] >> 16 == block
                        && i16::try_from(i64::from(inode_of(c).number) - base).is_ok()
                })
                .count();
            let mut b = Vec::with_capacity(12 + run_len * 24);
            b.extend_from_slice(&(run_len as u32 - 1).to_le_bytes());
            let block32 =
                u32::try_from(block).map_err(|_| invalid("squashfs: inode table over 4 GiB"))?;
            b.extend_from_slice(&block32.to_le_bytes());
            b.extend_from_slice(&(base as u32).to_le_bytes());
            for &c in &children[run_start..run_start + run_len] {
                let inode = inode_of(c);
                let reference = references[self.nodes[c].inode];
                let name = self.nodes[c].name.as_bytes();
                b.extend_from_slice(&((reference & 0xffff) as u16).to_le_bytes());
                let delta = i16::try_from(i64::from(inode.number) - base).expect("checked above");
                b.extend_from_slice(&delta.to_le_bytes());
                b.extend_from_slice(&(inode.kind.basic_type() as u16).to_le_bytes());
                b.extend_from_slice(&(name.len() as u16 - 1).to_le_bytes());
                b.extend_from_slice(name);
            }
            size += b.len();
            dir_table.write(&b);
            run_start += run_len;
        }
        Ok(Listing {
            block: u32::try_from(start >> 16)
                .map_err(|_| invalid("squashfs: directory table over 4 GiB"))?,
            offset: (start & 0xffff) as u16,
            size: u32::try_from(size)
                .ok()
                .filter(|&s| s < u32::MAX - 3)
                .ok_or_else(|| invalid("squashfs: a directory listing over 4 GiB"))?,
            index_count: u16::try_from(index_count)
                .map_err(|_| invalid("squashfs: a directory index over 65535 entries"))?,
            index,
        })
    }
}

/// Where a directory's listing is in the directory table and its size without the 3 bytes
/// squashfs adds (for `.` and `..`).
struct Listing {
    block: u32,
    offset: u16,
    size: u32,
    /// Directory index entries (for the runs that start a metadata block), to follow an
    /// extended directory inode.
    index: Vec<u8>,
    index_count: u16,
}

/// The metadata, packed, and what the superblock needs of it.
struct Tables {
    inodes: Vec<u8>,
    directories: Vec<u8>,
    /// Inode references in inode number order (the export table).
    references: Vec<u64>,
    /// The id table.
    ids: Vec<u32>,
    /// Packed xattr key/value pairs.
    xattr_pairs: Vec<u8>,
    /// Xattr id table entries (16 bytes each), unpacked.
    xattr_ids: Vec<u8>,
    root: u64,
}
