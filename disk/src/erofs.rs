//! EROFS images without compression: a read-only root file system the kernel mounts directly
//! (`mount -t erofs`), written in-process and reproducibly.
//!
//! # Input
//!
//! The tree is a list of [`FsEntry`], one per path (`"etc/passwd"`; `""` is the root). Order
//! does not matter: the image depends only on the set of entries. Directories missing from the
//! list, the root included, are made with mode 0755, owner 0:0 and [`ErofsOptions::build_time`]
//! as mtime. Entries that share a [`FsEntry::link_group`] are hard links to one inode: they
//! must be of the same kind with the same content (directories cannot be linked), and the
//! inode takes its mode, owner, mtime and extended attributes from the group's first path in
//! byte order. Extended attributes are kept if their name starts with a prefix EROFS has an
//! index for (`user.`, `trusted.`, `security.`, `lustre.`, or is `system.posix_acl_access` /
//! `system.posix_acl_default`); any other name is refused.
//!
//! # What is written
//!
//! Blocks are 4096 bytes. The image is, front to back:
//!
//! - Block 0: 1024 zero bytes, then the 128-byte superblock (magic `0xE0F5E1E2`, block size
//!   bits 12, the root's nid, inode and block counts, the build time, UUID and volume name
//!   from [`ErofsOptions`]; no checksum; the only feature bit is `COMPAT_MTIME`, no
//!   compression, chunk or device bits). The metadata area starts at block 0
//!   (`meta_blkaddr = 0`), so inodes follow the superblock in the same block.
//! - The metadata area: every inode, 32-byte aligned (a nid is its byte offset / 32), each
//!   followed by its inline extended attributes (an `erofs_xattr_ibody_header` with no shared
//!   attributes, then the entries, 4-byte aligned) and, for the `FLAT_INLINE` layout, the tail
//!   of its data (the bytes past the last whole block). An inode with its attributes and tail
//!   never straddles a block boundary unless it is bigger than a block (huge attributes): then
//!   it starts a block. Inodes are placed in breadth-first order of the tree (the root first,
//!   at nid 36 unless it is too big for block 0), each best fit into the partly used blocks
//!   (the fullest with room); nothing else is in this area (no shared attributes).
//! - The data area: the whole blocks of every file, directory and long symlink, each
//!   contiguous (`raw_blkaddr`), in the same breadth-first order. A tail that fits beside its
//!   inode is inlined (`FLAT_INLINE`); otherwise the data is `FLAT_PLAIN`, its last block padded
//!   with zeros. Inodes without whole blocks have `raw_blkaddr` `0xFFFFFFFF`, as mkfs.erofs does.
//!
//! Inodes are compact (32 bytes) when that loses nothing: owner and link count below 65536,
//! size below 4 GiB, and mtime equal to the build time (compact inodes take their time from
//! the superblock); otherwise extended (64 bytes: 32-bit ids, 64-bit size and mtime).
//! Directories are EROFS dirent blocks: all entries, `.` and `..` included, sorted by name
//! bytes, as many as fit per block without splitting a name; the directory's size ends at its
//! last name, and its link count is 2 plus its subdirectories. Symlink targets are data; device
//! numbers are in the inode (Linux's `new_encode_dev`); fifos and sockets have none.
//!
//! Nothing comes from the clock or the environment: times, UUID and name are options, the
//! layout follows from the sorted tree. [`plan`] reads no file; [`ErofsPlan::write`] streams
//! each file once (the inlined tail and the whole blocks are two ranges of it) and fails with
//! [`DiskError::SourceChanged`] if a file's length differs from the plan.
//!
//! Checked against erofs-utils 1.5 (`fsck.erofs`, its `--extract`, `dump.erofs`) and Linux's
//! erofs driver (`tests/erofs.rs`; the kernel test is ignored by default, as it needs root).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Seek, SeekFrom};

use crate::{Data, DiskError, FsEntry, FsKind, Sink};

const BLOCK: u64 = 4096;
const BLOCK_BITS: u8 = 12;
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_SIZE: usize = 128;
const MAGIC: u32 = 0xE0F5_E1E2;
/// Inodes carry their own mtime (compact ones an offset from the build time, which is 0 here).
const FEATURE_COMPAT_MTIME: u32 = 0x2;
/// Inode alignment: a nid counts these.
const SLOT: u64 = 32;
const COMPACT_INODE: u64 = 32;
const EXTENDED_INODE: u64 = 64;
/// The first inode: right after the superblock, in block 0.
const FIRST_INODE: u64 = SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64;
const DIRENT: usize = 12;
const XATTR_HEADER: usize = 12;
const XATTR_ENTRY: usize = 4;
/// `raw_blkaddr` of an inode without whole blocks.
const NULL_ADDR: u32 = u32::MAX;
const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;

const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Extended attribute name prefixes and their EROFS name indexes. The ACL names are whole
/// names (their entries have an empty suffix).
const XATTR_PREFIXES: [(&str, u8, bool); 6] = [
    ("user.", 1, false),
    ("system.posix_acl_access", 2, true),
    ("system.posix_acl_default", 3, true),
    ("trusted.", 4, false),
    ("lustre.", 5, false),
    ("security.", 6, false),
];

/// What the caller decides about the image as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErofsOptions {
    /// The superblock's build time (seconds since the Unix epoch), also the mtime of
    /// directories made for missing parents.
    pub build_time: i64,
    /// The file system UUID (derive it from content for reproducible images).
    pub uuid: [u8; 16],
    /// Volume name, at most 16 bytes, may be empty.
    pub volume_name: String,
}

/// A laid-out image: every inode's nid and every block is known, nothing has been read.
#[derive(Debug)]
pub struct ErofsPlan {
    /// Inodes in breadth-first order of the tree; the root is first.
    nodes: Vec<Node>,
    /// Indexes into `nodes` by position in the metadata area.
    meta_order: Vec<usize>,
    build_time: i64,
    uuid: [u8; 16],
    volume_name: [u8; 16],
    /// Blocks of the image.
    blocks: u32,
}

#[derive(Debug)]
struct Node {
    /// `st_mode`: file type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    nlink: u32,
    /// `i_ino`, for 32-bit `stat` (1-based, in node order).
    ino: u32,
    content: Content,
    /// The inline extended attributes, header included; empty when there are none.
    xattrs: Vec<u8>,
    /// `i_size`: bytes of data (file contents, dirent blocks, symlink target).
    size: u64,
    /// `FLAT_INLINE`: the tail (`size % BLOCK` bytes) follows the inode and its attributes.
    inline: bool,
    compact: bool,
    /// Byte offset of the inode in the image (`nid * 32`).
    pos: u64,
    /// First block of the data's whole blocks, [`NULL_ADDR`] when there are none.
    blkaddr: u32,
}

#[derive(Debug)]
enum Content {
    Dir(DirContent),
    File(Data),
    Symlink(String),
    /// Character or block device: `new_encode_dev(major, minor)`.
    Device(u32),
    /// Fifos and sockets.
    None,
}

#[derive(Debug, Default)]
struct DirContent {
    /// All entries, `.` and `..` included, sorted by name.
    entries: Vec<Dirent>,
    /// Index of the first entry of each dirent block.
    block_starts: Vec<usize>,
}

#[derive(Debug)]
struct Dirent {
    name: Vec<u8>,
    node: usize,
}

fn invalid(msg: impl Into<String>) -> DiskError {
    DiskError::Invalid(msg.into())
}

/// Lays out an image of `entries`. Reads nothing: sizes come from [`Data::len`].
pub fn plan(entries: Vec<FsEntry>, options: ErofsOptions) -> Result<ErofsPlan, DiskError> {
    let ErofsOptions {
        build_time,
        uuid,
        volume_name,
    } = options;
    if volume_name.len() > 16 {
        return Err(invalid(format!(
            "EROFS volume name {volume_name:?} is {} bytes, at most 16 fit",
            volume_name.len()
        )));
    }
    let mut name = [0u8; 16];
    name[..volume_name.len()].copy_from_slice(volume_name.as_bytes());

    let mut nodes = build_tree(entries, build_time)?;
    for node in &mut nodes {
        node.size = match &mut node.content {
            Content::Dir(dir) => {
                let (starts, size) = pack_dirents(&dir.entries);
                dir.block_starts = starts;
                size
            }
            Content::File(data) => data.len(),
            Content::Symlink(target) => target.len() as u64,
            Content::Device(_) | Content::None => 0,
        };
        node.compact = u16::try_from(node.uid).is_ok()
            && u16::try_from(node.gid).is_ok()
            && u16::try_from(node.nlink).is_ok()
            && u32::try_from(node.size).is_ok()
            && node.mtime == build_time;
        let tail = node.size % BLOCK;
        node.inline = tail > 0 && node.inode_size() + node.xattrs.len() as u64 + tail <= BLOCK;
    }

    let mut packer = MetaPacker::new();
    for node in &mut nodes {
        node.pos = packer.place(node.meta_len());
    }
    let mut meta_order: Vec<usize> = (0..nodes.len()).collect();
    meta_order.sort_by_key(|&i| nodes[i].pos);

    let too_large = || invalid("EROFS image too large: more than 2^32 blocks");
    let mut next = packer.next_block;
    for node in &mut nodes {
        let blocks = node.whole_blocks();
        if blocks == 0 {
            node.blkaddr = NULL_ADDR;
        } else {
            node.blkaddr = u32::try_from(next).map_err(|_| too_large())?;
            next += blocks;
        }
    }
    let blocks = u32::try_from(next)
        .ok()
        .filter(|&b| b < NULL_ADDR)
        .ok_or_else(too_large)?;

    Ok(ErofsPlan {
        nodes,
        meta_order,
        build_time,
        uuid,
        volume_name: name,
        blocks,
    })
}

impl Node {
    fn inode_size(&self) -> u64 {
        if self.compact {
            COMPACT_INODE
        } else {
            EXTENDED_INODE
        }
    }

    fn tail_len(&self) -> u64 {
        if self.inline { self.size % BLOCK } else { 0 }
    }

    /// Bytes in the metadata area: inode, attributes, inline tail.
    fn meta_len(&self) -> u64 {
        self.inode_size() + self.xattrs.len() as u64 + self.tail_len()
    }

    /// Blocks in the data area.
    fn whole_blocks(&self) -> u64 {
        if self.inline {
            self.size / BLOCK
        } else {
            self.size.div_ceil(BLOCK)
        }
    }

    fn nid(&self) -> u64 {
        self.pos / SLOT
    }
}

/// One path while the tree is built.
struct TreeEntry {
    name: String,
    parent: usize,
    /// Taken when the entry's inode is made.
    entry: Option<FsEntry>,
    is_dir: bool,
    children: Vec<usize>,
}

/// Checks the entries, adds missing directories and makes one node per inode, in
/// breadth-first order with the root first, directories filled in.
fn build_tree(entries: Vec<FsEntry>, build_time: i64) -> Result<Vec<Node>, DiskError> {
    let by_path = crate::fs_tree::complete(entries, build_time, "EROFS")?;

    // BTreeMap order puts every parent (a prefix) before its children, and a directory's
    // children in name order.
    let mut tree: Vec<TreeEntry> = Vec::with_capacity(by_path.len());
    let mut index: HashMap<String, usize> = HashMap::with_capacity(by_path.len());
    // The group's first path and the entries that link to it.
    let mut groups: HashMap<u32, usize> = HashMap::new();
    let mut link_of: Vec<usize> = Vec::with_capacity(by_path.len());
    for (path, e) in by_path {
        let i = tree.len();
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (index[parent], name.to_string()),
            None if path.is_empty() => (0, String::new()),
            None => (0, path.clone()),
        };
        let is_dir = matches!(e.kind, FsKind::Dir);
        if i == 0 && !is_dir {
            return Err(invalid("EROFS: the root entry (\"\") must be a directory"));
        }
        if i != 0 {
            if !tree[parent].is_dir {
                return Err(invalid(format!(
                    "EROFS: {path:?} is inside {:?}, which is not a directory",
                    &path[..path.len() - name.len() - 1]
                )));
            }
            tree[parent].children.push(i);
        }
        let mut target = i;
        if let Some(group) = e.link_group {
            if is_dir {
                return Err(invalid(format!(
                    "EROFS: directory {path:?} has a link group; directories cannot be hard links"
                )));
            }
            match groups.get(&group) {
                Some(&first) => {
                    let first_entry = tree[first].entry.as_ref().expect("not taken yet");
                    if first_entry.kind != e.kind {
                        return Err(invalid(format!(
                            "EROFS: {path:?} and {:?} are hard links (link group {group}) but \
                             differ in kind or content",
                            first_entry.path
                        )));
                    }
                    target = first;
                }
                None => {
                    groups.insert(group, i);
                }
            }
        }
        link_of.push(target);
        index.insert(path, i);
        tree.push(TreeEntry {
            name,
            parent,
            entry: Some(e),
            is_dir,
            children: Vec::new(),
        });
    }

    let mut links = vec![0u32; tree.len()];
    for &t in &link_of {
        links[t] += 1;
    }
    // Breadth first: a directory's inodes near each other and near the directory.
    let mut node_of: Vec<usize> = vec![usize::MAX; tree.len()];
    let mut nodes: Vec<Node> = Vec::with_capacity(tree.len());
    let mut dirs: Vec<usize> = Vec::new();
    let mut queue = VecDeque::from([0usize]);
    node_of[0] = 0;
    nodes.push(make_node(&mut tree[0], 1, 1)?);
    while let Some(d) = queue.pop_front() {
        dirs.push(d);
        for k in 0..tree[d].children.len() {
            let c = tree[d].children[k];
            let t = link_of[c];
            if node_of[t] == usize::MAX {
                node_of[t] = nodes.len();
                let ino = u32::try_from(nodes.len() + 1)
                    .map_err(|_| invalid("EROFS: more than 2^32 inodes"))?;
                nodes.push(make_node(&mut tree[t], ino, links[t])?);
            }
            node_of[c] = node_of[t];
            if tree[c].is_dir {
                queue.push_back(c);
            }
        }
    }

    for d in dirs {
        let node = node_of[d];
        let subdirs = tree[d].children.iter().filter(|&&c| tree[c].is_dir).count();
        let mut entries = Vec::with_capacity(tree[d].children.len() + 2);
        entries.push(Dirent {
            name: b".".to_vec(),
            node,
        });
        entries.push(Dirent {
            name: b"..".to_vec(),
            node: node_of[tree[d].parent],
        });
        for &c in &tree[d].children {
            entries.push(Dirent {
                name: tree[c].name.as_bytes().to_vec(),
                node: node_of[c],
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let n = &mut nodes[node];
        n.nlink = u32::try_from(subdirs + 2)
            .map_err(|_| invalid("EROFS: a directory with more than 2^32 subdirectories"))?;
        n.content = Content::Dir(DirContent {
            entries,
            block_starts: Vec::new(),
        });
    }
    Ok(nodes)
}

fn make_node(t: &mut TreeEntry, ino: u32, nlink: u32) -> Result<Node, DiskError> {
    let e = t.entry.take().expect("each inode is made once");
    let (type_bits, content) = match e.kind {
        FsKind::Dir => (S_IFDIR, Content::Dir(DirContent::default())),
        FsKind::File(data) => (S_IFREG, Content::File(data)),
        FsKind::Symlink(target) => {
            if target.is_empty() || target.len() > 4095 || target.contains('\0') {
                return Err(invalid(format!(
                    "EROFS: symlink {:?} has an empty, NUL-containing or over-long target",
                    e.path
                )));
            }
            (S_IFLNK, Content::Symlink(target))
        }
        FsKind::CharDev { major, minor } => (S_IFCHR, device(&e.path, major, minor)?),
        FsKind::BlockDev { major, minor } => (S_IFBLK, device(&e.path, major, minor)?),
        FsKind::Fifo => (S_IFIFO, Content::None),
        FsKind::Socket => (S_IFSOCK, Content::None),
    };
    Ok(Node {
        mode: type_bits | (e.mode & 0o7777),
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        nlink,
        ino,
        content,
        xattrs: xattr_body(&e.path, &e.xattrs)?,
        size: 0,
        inline: false,
        compact: false,
        pos: 0,
        blkaddr: NULL_ADDR,
    })
}

/// A device number as Linux's `new_encode_dev` packs it: minor's low 8 bits, then the 12
/// bits of major, then minor's high 12 bits.
fn device(path: &str, major: u32, minor: u32) -> Result<Content, DiskError> {
    if major > 0xfff || minor > 0xf_ffff {
        return Err(invalid(format!(
            "EROFS: device {path:?} is {major}:{minor}; Linux device numbers have 12-bit majors \
             and 20-bit minors"
        )));
    }
    Ok(Content::Device(
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12),
    ))
}

/// The inline attribute area of one inode: the ibody header (no shared attributes), then the
/// entries sorted by full name, each padded to 4 bytes. Empty without attributes.
fn xattr_body(path: &str, xattrs: &[(String, Vec<u8>)]) -> Result<Vec<u8>, DiskError> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&(String, Vec<u8>)> = xattrs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut body = vec![0u8; XATTR_HEADER];
    for (i, (name, value)) in sorted.iter().enumerate() {
        if i > 0 && sorted[i - 1].0 == *name {
            return Err(invalid(format!(
                "EROFS: {path:?} has extended attribute {name:?} twice"
            )));
        }
        let (index, suffix) = XATTR_PREFIXES
            .iter()
            .find_map(|&(prefix, index, whole)| {
                let suffix = name.strip_prefix(prefix)?;
                (suffix.is_empty() == whole).then_some((index, suffix))
            })
            .ok_or_else(|| {
                invalid(format!(
                    "EROFS: {path:?} has extended attribute {name:?}, whose prefix EROFS has \
                     no index for (user., trusted., security., lustre., \
                     system.posix_acl_access, system.posix_acl_default)"
                ))
            })?;
        let name_len = u8::try_from(suffix.len()).map_err(|_| {
            invalid(format!(
                "EROFS: {path:?}: extended attribute name {name:?} is longer than 255 bytes \
                 after its prefix"
            ))
        })?;
        let value_len = u16::try_from(value.len()).map_err(|_| {
            invalid(format!(
                "EROFS: {path:?}: extended attribute {name:?} has a value over 65535 bytes"
            ))
        })?;
        body.push(name_len);
        body.push(index);
        body.extend_from_slice(&value_len.to_le_bytes());
        body.extend_from_slice(suffix.as_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(XATTR_ENTRY), 0);
    }
    if xattr_count(body.len()).is_none() {
        return Err(invalid(format!(
            "EROFS: {path:?}: extended attributes take {} bytes, more than an inode holds",
            body.len()
        )));
    }
    Ok(body)
}

/// `i_xattr_icount` of an attribute area of `len` bytes: the header counts 1, then one per
/// 4 bytes.
fn xattr_count(len: usize) -> Option<u16> {
    if len == 0 {
        return Some(0);
    }
    u16::try_from(1 + (len - XATTR_HEADER) / 4).ok()
}

/// Splits sorted dirents into blocks (no name across a boundary): the first entry of each
/// block and the directory's size (whole blocks plus the last block's used bytes).
fn pack_dirents(entries: &[Dirent]) -> (Vec<usize>, u64) {
    let mut starts = vec![0];
    let mut used = 0;
    for (i, e) in entries.iter().enumerate() {
        let need = DIRENT + e.name.len();
        if used + need > BLOCK as usize {
            starts.push(i);
            used = 0;
        }
        used += need;
    }
    let size = (starts.len() as u64 - 1) * BLOCK + used as u64;
    (starts, size)
}

/// Places inodes (with attributes and inline tails) in the metadata area: best fit among the
/// partly used blocks (the fullest block with room, the lowest of equals), never across a
/// block boundary unless bigger than a block.
struct MetaPacker {
    /// Partly used blocks as (free bytes, block number); used bytes are a multiple of 32.
    open: BTreeSet<(u64, u64)>,
    /// The first block not used yet.
    next_block: u64,
}

impl MetaPacker {
    fn new() -> Self {
        MetaPacker {
            open: BTreeSet::from([(BLOCK - FIRST_INODE, 0)]),
            next_block: 1,
        }
    }

    /// Where an item of `len` bytes goes.
    fn place(&mut self, len: u64) -> u64 {
        if len > BLOCK {
            let pos = self.next_block * BLOCK;
            self.next_block += len.div_ceil(BLOCK);
            let used = len.next_multiple_of(SLOT) % BLOCK;
            if used != 0 {
                self.open_block(self.next_block - 1, used);
            }
            return pos;
        }
        if let Some(&(free, block)) = self.open.range((len, 0)..).next() {
            self.open.remove(&(free, block));
            let used = BLOCK - free;
            self.open_block(block, (used + len).next_multiple_of(SLOT));
            return block * BLOCK + used;
        }
        let pos = self.next_block * BLOCK;
        self.next_block += 1;
        self.open_block(self.next_block - 1, len.next_multiple_of(SLOT));
        pos
    }

    fn open_block(&mut self, block: u64, used: u64) {
        if used + SLOT <= BLOCK {
            self.open.insert((BLOCK - used, block));
        }
    }
}

/// Dirent file types.
fn file_type(mode: u32) -> u8 {
    match mode & 0o170_000 {
        S_IFREG => 1,
        S_IFDIR => 2,
        S_IFCHR => 3,
        S_IFBLK => 4,
        S_IFIFO => 5,
        S_IFSOCK => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

impl ErofsPlan {
    /// Bytes of the image.
    pub fn size(&self) -> u64 {
        u64::from(self.blocks) * BLOCK
    }

    /// Inodes in the image (paths, less the extra names of hard links).
    pub fn inode_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// Writes the image front to back: superblock, inodes, then data blocks. File data is
    /// streamed; only a directory's dirent blocks are built in memory.
    pub fn write(&self, sink: &mut dyn Sink) -> Result<(), DiskError> {
        let mut out = Out { sink, pos: 0 };
        out.seek(SUPERBLOCK_OFFSET)?;
        out.bytes(&self.superblock())?;
        let mut buf = Vec::with_capacity(BLOCK as usize);
        for &i in &self.meta_order {
            let node = &self.nodes[i];
            out.seek(node.pos)?;
            buf.clear();
            self.inode(node, &mut buf);
            buf.extend_from_slice(&node.xattrs);
            out.bytes(&buf)?;
            let tail = node.tail_len();
            if tail > 0 {
                let start = node.size - tail;
                match &node.content {
                    Content::File(data) => out.data(data, start, tail)?,
                    Content::Dir(dir) => out.bytes(&self.dirents(dir)[to_usize(start)..])?,
                    Content::Symlink(target) => out.bytes(target.as_bytes())?,
                    Content::Device(_) | Content::None => unreachable!("no data"),
                }
            }
        }
        for node in &self.nodes {
            if node.blkaddr == NULL_ADDR {
                continue;
            }
            out.seek(u64::from(node.blkaddr) * BLOCK)?;
            let len = node.size - node.tail_len();
            match &node.content {
                Content::File(data) => out.data(data, 0, len)?,
                Content::Dir(dir) => out.bytes(&self.dirents(dir)[..to_usize(len)])?,
                Content::Symlink(target) => out.bytes(target.as_bytes())?,
                Content::Device(_) | Content::None => unreachable!("no data"),
            }
        }
        out.seek(self.size())?;
        Ok(())
    }

    fn superblock(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut sb = [0u8; SUPERBLOCK_SIZE];
        sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        sb[8..12].copy_from_slice(&FEATURE_COMPAT_MTIME.to_le_bytes());
        sb[12] = BLOCK_BITS;
        let root =
            u16::try_from(self.nodes[0].nid()).expect("the root is placed first, in block 0 or 1");
        sb[14..16].copy_from_slice(&root.to_le_bytes());
        sb[16..24].copy_from_slice(&self.inode_count().to_le_bytes());
        sb[24..32].copy_from_slice(&self.build_time.to_le_bytes());
        sb[36..40].copy_from_slice(&self.blocks.to_le_bytes());
        // meta_blkaddr and xattr_blkaddr (40..48) are 0.
        sb[48..64].copy_from_slice(&self.uuid);
        sb[64..80].copy_from_slice(&self.volume_name);
        sb
    }

    /// The on-disk inode, compact or extended.
    fn inode(&self, node: &Node, buf: &mut Vec<u8>) {
        let layout = if node.inline {
            LAYOUT_FLAT_INLINE
        } else {
            LAYOUT_FLAT_PLAIN
        };
        let format = (layout << 1) | u16::from(!node.compact);
        let icount = xattr_count(node.xattrs.len()).expect("checked in plan");
        let mode = u16::try_from(node.mode).expect("type and permission bits");
        let union = match node.content {
            Content::Device(rdev) => rdev,
            Content::None => 0,
            _ => node.blkaddr,
        };
        buf.extend_from_slice(&format.to_le_bytes());
        buf.extend_from_slice(&icount.to_le_bytes());
        buf.extend_from_slice(&mode.to_le_bytes());
        if node.compact {
            let small = |v: u64| u16::try_from(v).expect("compact").to_le_bytes();
            buf.extend_from_slice(&small(node.nlink.into()));
            let size = u32::try_from(node.size).expect("compact");
            buf.extend_from_slice(&size.to_le_bytes());
            // i_mtime: seconds after the build time.
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.extend_from_slice(&union.to_le_bytes());
            buf.extend_from_slice(&node.ino.to_le_bytes());
            buf.extend_from_slice(&small(node.uid.into()));
            buf.extend_from_slice(&small(node.gid.into()));
            buf.extend_from_slice(&[0; 4]);
        } else {
            buf.extend_from_slice(&[0; 2]);
            buf.extend_from_slice(&node.size.to_le_bytes());
            buf.extend_from_slice(&union.to_le_bytes());
            buf.extend_from_slice(&node.ino.to_le_bytes());
            buf.extend_from_slice(&node.uid.to_le_bytes());
            buf.extend_from_slice(&node.gid.to_le_bytes());
            buf.extend_from_slice(&node.mtime.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.extend_from_slice(&node.nlink.to_le_bytes());
            buf.extend_from_slice(&[0; 16]);
        }
    }

    /// A directory's data: dirent blocks, each a table of `(nid, name offset, file type)`
    /// then the names; every block but the last padded to the block size.
    fn dirents(&self, dir: &DirContent) -> Vec<u8> {
        let mut out = Vec::new();
        let ends = dir.block_starts[1..]
            .iter()
            .copied()
            .chain([dir.entries.len()]);
        for (start, end) in dir.block_starts.iter().copied().zip(ends) {
            let block = &dir.entries[start..end];
            let first = out.len();
            let mut name_off = block.len() * DIRENT;
            for e in block {
                let node = &self.nodes[e.node];
                out.extend_from_slice(&node.nid().to_le_bytes());
                let off = u16::try_from(name_off).expect("within a block");
                out.extend_from_slice(&off.to_le_bytes());
                out.push(file_type(node.mode));
                out.push(0);
                name_off += e.name.len();
            }
            for e in block {
                out.extend_from_slice(&e.name);
            }
            if end < dir.entries.len() {
                out.resize(first + BLOCK as usize, 0);
            }
        }
        out
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("in-memory data fits usize")
}

/// The sink with the position, so every area can be checked to start where it was planned.
struct Out<'a> {
    sink: &'a mut dyn Sink,
    pos: u64,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), DiskError> {
        self.sink.write_all(b).map_err(DiskError::Io)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// `len` bytes of `data` from `start`, checking that a file still has its planned length.
    fn data(&mut self, data: &Data, start: u64, len: u64) -> Result<(), DiskError> {
        match data {
            Data::Bytes(bytes) => self.bytes(&bytes[to_usize(start)..to_usize(start + len)]),
            Data::Part { .. } => {
                let bytes = data.read_all()?;
                self.bytes(&bytes[to_usize(start)..to_usize(start + len)])
            }
            Data::File { path, len: planned } => {
                let changed = |found| DiskError::SourceChanged {
                    path: path.clone(),
                    expected: *planned,
                    found,
                };
                let mut file = fs_err::File::open(path).map_err(DiskError::Io)?;
                let found = file.metadata().map_err(DiskError::Io)?.len();
                if found != *planned {
                    return Err(changed(found));
                }
                file.seek(SeekFrom::Start(start)).map_err(DiskError::Io)?;
                let copied = io::copy(&mut file.take(len), self.sink).map_err(DiskError::Io)?;
                if copied != len {
                    return Err(changed(start + copied));
                }
                self.pos += len;
                Ok(())
            }
        }
    }

    /// Zeros up to `to`, which must not be behind.
    fn seek(&mut self, to: u64) -> Result<(), DiskError> {
        assert!(
            to >= self.pos,
            "layout overlap: at {} asked for {to}",
            self.pos
        );
        if to > self.pos {
            self.sink.zeros(to - self.pos).map_err(DiskError::Io)?;
            self.pos = to;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
