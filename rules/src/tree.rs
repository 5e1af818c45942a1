//! The file-tree data model: a canonical, ordered listing of a file tree.
//!
//! A [`Tree`] maps normalised relative paths to [`Entry`]s. File contents are not held in the
//! tree; a file names its content blob in the store ([`BlobRef`]). Trees are stored as blobs
//! themselves, in the canonical byte encoding of [`Tree::encode`].
//!
//! # Paths
//! Paths are relative, `/`-separated, without a leading or trailing `/`, without empty, `.` or
//! `..` components, without NUL bytes, and never empty. See [`normalize_path`] for turning
//! untrusted archive names into such paths.
//!
//! # The root
//! The root directory is not one of the entries. A tree may still carry its metadata
//! ([`Tree::root`]): a layer whose tar has a `./` entry records it, merges keep the topmost
//! layer's, and the archive writers emit it first as `.` (LinuxKit copies an image's root entry
//! into its rootfs tar and initrd, so the image's mode and owner of `/` survive). Prefixing a
//! tree drops it.
//!
//! # Order
//! Entries are kept and iterated in *archive order*: paths are compared component by
//! component (byte-wise within a component). This equals a byte-wise comparison in which `/`
//! sorts before every other byte. Consequences, relied upon by the archive writers:
//! - a directory comes before everything below it, and
//! - everything below a directory comes directly after it, before any sibling that merely shares
//!   a name prefix: `a`, `a/b`, `a/b/c`, `a-b`, `a.txt`, `ab`. (Plain byte order would give `a`,
//!   `a-b`, `a.txt`, `a/b`, `a/b/c`, `ab` and split `a`'s subtree.)
//!
//! # Hard links
//! A [`EntryKind::Hardlink`] names the *primary* entry of its link group: the group member that
//! comes first in archive order, which holds the content (a non-directory, non-link kind) and
//! the inode metadata; the links carry a copy of the primary's mode, owner and mtime (one
//! inode) and no xattrs. [`Tree::normalize_hardlinks`] establishes this; merged trees always
//! satisfy it, so archive writers meet a link's target before the link. Per-layer trees may
//! hold links whose target lives in a lower layer. [`Tree::merge_layers`] documents what
//! happens to links whose target a later layer removes (they keep the old content).
//!
//! # Whiteouts
//! Only per-layer trees hold [`EntryKind::Whiteout`] and [`EntryKind::Opaque`]. They keep the
//! path of the marker file itself (`dir/.wh.name`, `dir/.wh..wh..opq`), so a layer that both
//! whites out a lower `name` and adds a new `name` is representable.

mod codec;
#[cfg(test)]
mod layer_tests;
mod merge;
mod path;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

pub use codec::TREE_FORMAT_VERSION;
#[cfg(test)]
pub(crate) use codec::{TREE_FORMAT_VERSION_NO_ROOT, TREE_MAGIC};
use path::PathKey;
pub use path::{PathError, ancestors, check_path, cmp_paths, normalize_path, split_parent};

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use lkb_store::{BlobRef, ErrorCategory, Store, StoreError};

/// Prefix of a whiteout marker's file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Metadata of an entry (and of an inode, for hard-link groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Meta {
    /// Permission bits, `0o7777` at most (no file-type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
}

impl Meta {
    /// Metadata of directories that a merge has to create because a layer has entries below a
    /// path no layer declares: `0755`, root-owned, mtime 0.
    pub const IMPLICIT_DIR: Meta = Meta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
    };

    pub const fn new(mode: u32, uid: u32, gid: u32, mtime: i64) -> Meta {
        Meta {
            mode,
            uid,
            gid,
            mtime,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    Dir,
    File {
        blob: BlobRef,
    },
    /// `target` is data: kept verbatim (absolute or relative), never followed.
    Symlink {
        target: String,
    },
    /// `target` is the normalised path of the primary entry of the link group.
    Hardlink {
        target: String,
    },
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// Per-layer only: the entry's path is `dir/.wh.name`; it hides `dir/name` in lower layers.
    Whiteout,
    /// Per-layer only: the entry's path is `dir/.wh..wh..opq`; it hides all lower children of
    /// `dir`.
    Opaque,
}

impl PartialEq for EntryKind {
    fn eq(&self, other: &Self) -> bool {
        use EntryKind::*;
        match (self, other) {
            (Dir, Dir) | (Fifo, Fifo) | (Whiteout, Whiteout) | (Opaque, Opaque) => true,
            (File { blob: a }, File { blob: b }) => a.digest == b.digest && a.size == b.size,
            (Symlink { target: a }, Symlink { target: b }) => a == b,
            (Hardlink { target: a }, Hardlink { target: b }) => a == b,
            (Char { major: a, minor: b }, Char { major: c, minor: d }) => a == c && b == d,
            (Block { major: a, minor: b }, Block { major: c, minor: d }) => a == c && b == d,
            _ => false,
        }
    }
}
impl Eq for EntryKind {}

impl EntryKind {
    /// A short, stable name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Dir => "directory",
            EntryKind::File { .. } => "file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::Hardlink { .. } => "hard link",
            EntryKind::Char { .. } => "char device",
            EntryKind::Block { .. } => "block device",
            EntryKind::Fifo => "fifo",
            EntryKind::Whiteout => "whiteout",
            EntryKind::Opaque => "opaque marker",
        }
    }
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised relative path (see the module docs).
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// Extended attributes (from PAX `SCHILY.xattr.<name>` records).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Other PAX records kept with the entry (e.g. `LINUXKIT.source`).
    pub pax: BTreeMap<String, String>,
}

impl Entry {
    pub fn new(path: impl Into<String>, kind: EntryKind, meta: Meta) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode: meta.mode & 0o7777,
            uid: meta.uid,
            gid: meta.gid,
            mtime: meta.mtime,
            xattrs: BTreeMap::new(),
            pax: BTreeMap::new(),
        }
    }

    pub fn dir(path: impl Into<String>, meta: Meta) -> Entry {
        Entry::new(path, EntryKind::Dir, meta)
    }
    pub fn file(path: impl Into<String>, blob: BlobRef, meta: Meta) -> Entry {
        Entry::new(path, EntryKind::File { blob }, meta)
    }
    pub fn symlink(path: impl Into<String>, target: impl Into<String>, meta: Meta) -> Entry {
        Entry::new(
            path,
            EntryKind::Symlink {
                target: target.into(),
            },
            meta,
        )
    }
    pub fn hardlink(path: impl Into<String>, target: impl Into<String>, meta: Meta) -> Entry {
        Entry::new(
            path,
            EntryKind::Hardlink {
                target: target.into(),
            },
            meta,
        )
    }

    pub fn meta(&self) -> Meta {
        Meta {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
        }
    }

    pub fn set_meta(&mut self, meta: Meta) {
        self.mode = meta.mode & 0o7777;
        self.uid = meta.uid;
        self.gid = meta.gid;
        self.mtime = meta.mtime;
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }

    /// The path this whiteout hides (`dir/.wh.x` → `dir/x`), or for an opaque marker the
    /// directory whose lower children it hides (`""` for the root). `None` for other kinds.
    pub fn whiteout_target(&self) -> Option<String> {
        let (dir, name) = split_parent(&self.path);
        match self.kind {
            EntryKind::Opaque => Some(dir.unwrap_or("").to_string()),
            EntryKind::Whiteout => {
                let hidden = name.strip_prefix(WHITEOUT_PREFIX)?;
                Some(match dir {
                    Some(d) => format!("{d}/{hidden}"),
                    None => hidden.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The file's content blob, if this is a regular file.
    pub fn blob(&self) -> Option<&BlobRef> {
        match &self.kind {
            EntryKind::File { blob } => Some(blob),
            _ => None,
        }
    }
}

/// PAX keys that describe the tar header itself (names, size, owners, times, GNU sparse maps):
/// the layer reader applies them instead of keeping them in [`Entry::pax`], and the tar writer
/// derives them from the entry, ignoring any found there.
pub(crate) fn is_basic_pax_key(k: &str) -> bool {
    matches!(
        k,
        "path"
            | "linkpath"
            | "size"
            | "uid"
            | "gid"
            | "uname"
            | "gname"
            | "mtime"
            | "atime"
            | "ctime"
    ) || k.starts_with("GNU.sparse.")
}

/// Errors of tree operations.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path:?} is a {kind}, not a directory, but {child:?} is inside it")]
    NotADirectory {
        path: String,
        kind: &'static str,
        child: String,
    },
    #[error("hard link {path:?} points to {target:?}, which does not exist")]
    DanglingHardlink { path: String, target: String },
    #[error("hard link {path:?} points to {target:?}, which is a {kind}")]
    BadHardlinkTarget {
        path: String,
        target: String,
        kind: &'static str,
    },
    #[error("{path:?} does not exist")]
    NotFound { path: String },
    #[error("{path:?} is a {kind}, not a regular file")]
    NotAFile { path: String, kind: &'static str },
    #[error("blob of {path:?} has {actual} bytes, the tree says {expected}")]
    BlobSize {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("corrupt tree encoding: {0}")]
    Decode(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TreeError {
    /// Bad paths name things the user wrote; broken links and non-directories come from image
    /// data (environment); a tree blob that does not decode is our own bug (internal).
    pub fn category(&self) -> ErrorCategory {
        match self {
            TreeError::InvalidPath { .. }
            | TreeError::NotFound { .. }
            | TreeError::NotAFile { .. } => ErrorCategory::User,
            TreeError::NotADirectory { .. }
            | TreeError::DanglingHardlink { .. }
            | TreeError::BadHardlinkTarget { .. }
            | TreeError::BlobSize { .. } => ErrorCategory::Environment,
            TreeError::Store(e) => e.category(),
            TreeError::Decode(_) => ErrorCategory::Internal,
        }
    }
}

fn invalid(path: &str, reason: &'static str) -> TreeError {
    TreeError::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

/// Validates a root entry ([`Tree::set_root`]).
fn validate_root(root: &Entry) -> Result<(), TreeError> {
    if root.path != ROOT_PATH || !root.is_dir() {
        return Err(invalid(
            &root.path,
            "the root entry must be a directory named .",
        ));
    }
    if root.mode & !0o7777 != 0 {
        return Err(invalid(&root.path, "mode has bits outside 0o7777"));
    }
    Ok(())
}

/// Validates an entry for insertion into a tree.
fn validate(entry: &Entry) -> Result<(), TreeError> {
    check_path(&entry.path).map_err(|r| invalid(&entry.path, r))?;
    if entry.mode & !0o7777 != 0 {
        return Err(invalid(&entry.path, "mode has bits outside 0o7777"));
    }
    let name = split_parent(&entry.path).1;
    match &entry.kind {
        EntryKind::Hardlink { target } => {
            check_path(target).map_err(|r| invalid(target, r))?;
            if target == &entry.path {
                return Err(invalid(&entry.path, "hard link to itself"));
            }
        }
        EntryKind::Symlink { target } if target.is_empty() || target.contains('\0') => {
            return Err(invalid(
                &entry.path,
                "symlink target is empty or contains NUL",
            ));
        }
        EntryKind::Whiteout if !name.starts_with(WHITEOUT_PREFIX) || name == OPAQUE_MARKER => {
            return Err(invalid(&entry.path, "whiteout name must be .wh.<name>"));
        }
        EntryKind::Whiteout if matches!(&name[WHITEOUT_PREFIX.len()..], "" | "." | "..") => {
            return Err(invalid(&entry.path, "whiteout hides nothing nameable"));
        }
        EntryKind::Opaque if name != OPAQUE_MARKER => {
            return Err(invalid(
                &entry.path,
                "opaque marker name must be .wh..wh..opq",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// The name archive writers give the root entry ([`Tree::root`]).
pub const ROOT_PATH: &str = ".";

/// An ordered, canonical listing of a file tree (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    map: BTreeMap<PathKey, Entry>,
    /// The root directory's entry (path [`ROOT_PATH`], a directory), if the source had one.
    root: Option<Entry>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.map.get(&PathKey(path.to_string()))
    }

    /// The root directory's entry, named [`ROOT_PATH`], if the tree records one. It is not
    /// among [`Tree::iter`]'s entries; archive writers put it first.
    pub fn root(&self) -> Option<&Entry> {
        self.root.as_ref()
    }

    /// Records (or, with `None`, forgets) the root directory's metadata. The entry must be a
    /// directory named [`ROOT_PATH`] with mode bits within `0o7777`.
    pub fn set_root(&mut self, root: Option<Entry>) -> Result<(), TreeError> {
        if let Some(r) = &root {
            validate_root(r)?;
        }
        self.root = root;
        Ok(())
    }

    /// The root entry (if any) followed by all entries: what an archive of the tree holds.
    pub fn archive_entries(&self) -> impl Iterator<Item = &Entry> {
        self.root.iter().chain(self.map.values())
    }

    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Inserts an entry, replacing (and returning) one at the same path. Only the entry itself
    /// is validated (normal path, mode bits, kind-specific names); the caller keeps parents and
    /// links consistent (see [`Tree::ensure_parents`], [`Tree::normalize_hardlinks`]).
    pub fn insert(&mut self, entry: Entry) -> Result<Option<Entry>, TreeError> {
        validate(&entry)?;
        Ok(self.map.insert(PathKey(entry.path.clone()), entry))
    }

    pub fn remove(&mut self, path: &str) -> Option<Entry> {
        self.map.remove(&PathKey(path.to_string()))
    }

    /// Paths strictly below `dir` (`""` = the root: everything), in archive order.
    fn descendant_keys(&self, dir: &str) -> Vec<PathKey> {
        if dir.is_empty() {
            return self.map.keys().cloned().collect();
        }
        self.descendants(dir)
            .map(|e| PathKey(e.path.clone()))
            .collect()
    }

    /// Entries strictly below `dir` (`""` = the root: all entries), in archive order.
    pub fn descendants<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let start = if dir.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(PathKey(format!("{dir}/")))
        };
        let all = dir.is_empty();
        self.map
            .range((start, Bound::Unbounded))
            .map(|(_, e)| e)
            .take_while(move |e| {
                all || (e.path.len() > dir.len()
                    && e.path.starts_with(dir)
                    && e.path.as_bytes()[dir.len()] == b'/')
            })
    }

    /// Removes everything strictly below `dir` (`""` = everything); returns what was removed.
    pub fn remove_children(&mut self, dir: &str) -> Vec<Entry> {
        let keys = self.descendant_keys(dir);
        keys.iter().filter_map(|k| self.map.remove(k)).collect()
    }

    /// Removes `path` and everything below it; returns what was removed.
    pub fn remove_subtree(&mut self, path: &str) -> Vec<Entry> {
        let mut out: Vec<Entry> = self.remove(path).into_iter().collect();
        out.extend(self.remove_children(path));
        out
    }

    /// Keeps only the entries for which `keep` returns true. Removing a directory does not
    /// remove its children, and removing a link primary leaves dangling links: callers re-check.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        self.map.retain(|_, e| keep(e));
    }

    /// Sets a PAX record on every entry (e.g. LinuxKit's `LINUXKIT.source`); paths and kinds
    /// stay as they are.
    pub fn set_pax_all(&mut self, key: &str, value: &str) {
        for e in self.map.values_mut().chain(self.root.as_mut()) {
            e.pax.insert(key.to_string(), value.to_string());
        }
    }

    /// All entries in archive order: a parent always precedes its children, and a directory's
    /// subtree is contiguous.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.map.values()
    }

    /// Follows a hard link to its primary entry (at most one step in a normalised tree; chains
    /// are followed up to the tree size). Other entries resolve to themselves.
    pub fn resolve(&self, path: &str) -> Option<&Entry> {
        let mut cur = self.get(path)?;
        for _ in 0..=self.len() {
            match &cur.kind {
                EntryKind::Hardlink { target } => cur = self.get(target)?,
                _ => return Some(cur),
            }
        }
        None
    }

    /// A copy of this tree re-rooted under `prefix` (normalised; `""` or `/` leave it as is).
    /// Hard-link targets move along; symlink targets are data and stay unchanged. No directory
    /// entries are made for the prefix itself: use [`Tree::ensure_dir`]. The root entry is
    /// dropped: under a prefix it would name the prefix directory, not `/`.
    pub fn prefixed(&self, prefix: &str) -> Result<Tree, TreeError> {
        let prefix = match normalize_path(prefix) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(self.clone()),
            Err(e) => {
                return Err(invalid(
                    prefix,
                    if matches!(e, PathError::Nul(_)) {
                        "contains a NUL byte"
                    } else {
                        "climbs out of the root"
                    },
                ));
            }
        };
        let mut out = Tree::new();
        for e in self.iter() {
            let mut e = e.clone();
            e.path = format!("{prefix}/{}", e.path);
            if let EntryKind::Hardlink { target } = &mut e.kind {
                *target = format!("{prefix}/{target}");
            }
            out.map.insert(PathKey(e.path.clone()), e);
        }
        Ok(out)
    }

    /// Makes sure `path` and all its ancestors exist as directories. Missing ones are created
    /// with `meta`; existing directories keep their metadata. An existing non-directory on the
    /// way is an error.
    pub fn ensure_dir(&mut self, path: &str, meta: Meta) -> Result<(), TreeError> {
        check_path(path).map_err(|r| invalid(path, r))?;
        for dir in ancestors(path).chain(std::iter::once(path)) {
            match self.get(dir) {
                Some(e) if e.is_dir() => {}
                Some(e) => {
                    return Err(TreeError::NotADirectory {
                        path: dir.to_string(),
                        kind: e.kind.name(),
                        child: path.to_string(),
                    });
                }
                None => {
                    self.map
                        .insert(PathKey(dir.to_string()), Entry::dir(dir, meta));
                }
            }
        }
        Ok(())
    }

    /// Adds every missing ancestor directory of every entry, with `meta`. Returns how many
    /// were added. An ancestor that exists but is not a directory is an error.
    pub fn ensure_parents(&mut self, meta: Meta) -> Result<usize, TreeError> {
        let mut missing: Vec<String> = Vec::new();
        for e in self.iter() {
            // An existing parent is an entry itself, so its own ancestors get checked when it
            // is visited; only a missing parent needs the walk over all ancestors.
            let Some(parent) = split_parent(&e.path).0 else {
                continue;
            };
            match self.get(parent) {
                Some(p) if p.is_dir() => {}
                Some(p) => {
                    return Err(TreeError::NotADirectory {
                        path: parent.to_string(),
                        kind: p.kind.name(),
                        child: e.path.clone(),
                    });
                }
                None => {
                    for a in ancestors(&e.path) {
                        match self.get(a) {
                            Some(p) if !p.is_dir() => {
                                return Err(TreeError::NotADirectory {
                                    path: a.to_string(),
                                    kind: p.kind.name(),
                                    child: e.path.clone(),
                                });
                            }
                            Some(_) => {}
                            None => missing.push(a.to_string()),
                        }
                    }
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        let n = missing.len();
        for dir in missing {
            self.map.insert(PathKey(dir.clone()), Entry::dir(dir, meta));
        }
        Ok(n)
    }

    /// Reads a regular file's content from the store (hard links are followed, symlinks are
    /// not).
    pub fn read_file(&self, store: &Store, path: &str) -> Result<Vec<u8>, TreeError> {
        let blob = self.file_blob(path)?;
        let bytes = store.read_blob(&blob.digest)?;
        if bytes.len() as u64 != blob.size {
            return Err(TreeError::BlobSize {
                path: path.to_string(),
                expected: blob.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// The content blob of a regular file (hard links are followed, symlinks are not).
    pub fn file_blob(&self, path: &str) -> Result<&BlobRef, TreeError> {
        let entry = self.get(path).ok_or_else(|| TreeError::NotFound {
            path: path.to_string(),
        })?;
        let target = self.resolve(path).ok_or_else(|| match &entry.kind {
            EntryKind::Hardlink { target } => TreeError::DanglingHardlink {
                path: path.to_string(),
                target: target.clone(),
            },
            _ => TreeError::NotFound {
                path: path.to_string(),
            },
        })?;
        target.blob().ok_or_else(|| TreeError::NotAFile {
            path: path.to_string(),
            kind: target.kind.name(),
        })
    }

    /// Sum of the sizes of all regular-file blobs (hard links counted once).
    pub fn content_size(&self) -> u64 {
        self.iter().filter_map(|e| e.blob()).map(|b| b.size).sum()
    }

    /// Checks the invariants of a merged (or generated) tree: no whiteouts, every parent exists
    /// and is a directory, every hard link points to a primary that comes earlier.
    pub fn check_complete(&self) -> Result<(), TreeError> {
        for e in self.iter() {
            if matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
                return Err(invalid(&e.path, "whiteout marker in a merged tree"));
            }
            if let Some(parent) = split_parent(&e.path).0 {
                match self.get(parent) {
                    Some(p) if p.is_dir() => {}
                    Some(p) => {
                        return Err(TreeError::NotADirectory {
                            path: parent.to_string(),
                            kind: p.kind.name(),
                            child: e.path.clone(),
                        });
                    }
                    None => return Err(invalid(&e.path, "parent directory missing")),
                }
            }
            if let EntryKind::Hardlink { target } = &e.kind {
                let t = self
                    .get(target)
                    .ok_or_else(|| TreeError::DanglingHardlink {
                        path: e.path.clone(),
                        target: target.clone(),
                    })?;
                if matches!(
                    t.kind,
                    EntryKind::Dir
                        | EntryKind::Hardlink { .. }
                        | EntryKind::Whiteout
                        | EntryKind::Opaque
                ) {
                    return Err(TreeError::BadHardlinkTarget {
                        path: e.path.clone(),
                        target: target.clone(),
                        kind: t.kind.name(),
                    });
                }
                if cmp_paths(target, &e.path) != Ordering::Less {
                    return Err(invalid(
                        &e.path,
                        "hard link comes before its target in archive order",
                    ));
                }
            }
        }
        Ok(())
    }
}
