//! Streaming unpack of an image layer into a per-layer [`Tree`].
//!
//! The layer is read as a stream (decompressed on the fly, tar parsed with
//! `tar::Archive::entries()`); nothing is ever written to the host filesystem. File contents
//! go to the store as blobs. The tar is read in *raw* mode and the extension headers are
//! interpreted here: PAX `x` records (length-prefixed, so binary xattr values with newlines
//! survive), GNU `L`/`K` long names, PAX `g` global headers (ignored, as go-containerregistry
//! does).
//!
//! What a layer may contain, and what becomes of it:
//! - names are normalised lexically ([`normalize_path`]); `..` climbing out of the root is an
//!   error naming the path; a root directory entry (`./`, `.`, `/`) becomes the tree's
//!   [`Tree::root`] (the last one wins); a root entry of another type is dropped;
//! - `dir/.wh.name` → [`EntryKind::Whiteout`], `dir/.wh..wh..opq` → [`EntryKind::Opaque`]; other
//!   `.wh..wh.*` names (aufs metadata such as `.wh..wh.plnk`) and everything below them are
//!   skipped, as Docker does;
//! - hard-link targets are normalised the same way; links are normalised per layer
//!   ([`Tree::normalize_layer_hardlinks`]) and may point into lower layers;
//! - a path repeated in one layer: the later entry wins (a directory over a directory only
//!   updates the metadata); a path below a non-directory of the same layer is an error;
//! - PAX `uid`/`gid`/`mtime` override the header; `SCHILY.xattr.*` become xattrs; other records,
//!   except the basic ones (`path`, `size`, `atime`, …) and `GNU.sparse.*`, are kept in
//!   [`Entry::pax`] like Go's archive/tar keeps them (non-UTF-8 values are dropped);
//! - regular, directory, symlink, hard link, char/block device and fifo entries are accepted;
//!   GNU sparse files, multi-volume parts and other types are refused; non-UTF-8 names are
//!   refused.
//!
//! Integrity: the tar ends at its end-of-archive blocks, but the stream is read to its end after
//! them, so the compression's own checks run (gzip's CRC-32 and length trailer, zstd's content
//! checksum) and data after the compressed stream is refused. The uncompressed stream is
//! hashed as it is read and compared with the layer's `diff_id` (the image config's
//! `rootfs.diff_ids`) when the caller has one.
//!
//! Error categories: problems in the layer's bytes (corrupt compression or tar, escaping
//! paths, unsupported types) are [`ErrorCategory::Environment`]: the layer came from a registry
//! or an image, not from the user's yml. Exceeding a [`Limits`] value is
//! [`ErrorCategory::User`]: the fix is to raise the limit in the configuration. A layer whose
//! content does not match the image config's `diff_id` is [`ErrorCategory::User`]: the image
//! the user named is inconsistent.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use lkb_store::{BlobDigest, ErrorCategory, Store, StoreError};
use sha2::{Digest as _, Sha256};

use crate::compress::{Detected, decompress_reader};
use crate::tree::{
    Entry, EntryKind, Meta, OPAQUE_MARKER, PathError, ROOT_PATH, Tree, TreeError, WHITEOUT_PREFIX,
    ancestors, is_basic_pax_key, normalize_path, split_parent,
};

/// Bounds for one layer; exceeding one is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in the tar (extension headers not counted).
    pub max_entries: u64,
    /// Bytes of a normalised path (and of a raw name or link target).
    pub max_path_len: usize,
    /// Bytes of the decompressed tar stream.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_entries: 1_000_000,
            max_path_len: 4096,
            max_total_bytes: 64 << 30,
        }
    }
}

/// Largest PAX extended header accepted (Go's archive/tar uses the same bound).
const MAX_PAX_HEADER: u64 = 1 << 20;
/// Files up to this size are read into memory and stored with one call.
const SMALL_FILE: u64 = 1 << 20;

/// What went wrong while unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerErrorKind {
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    #[error("corrupt layer: {0}")]
    Corrupt(String),
    #[error("reading the layer: {0}")]
    Io(#[from] io::Error),
    #[error("entry {path:?}: {reason}")]
    BadEntry { path: String, reason: String },
    #[error("entry {0:?} climbs out of the root")]
    Escapes(String),
    #[error("entry {path:?}: unsupported tar entry type {kind}")]
    Unsupported { path: String, kind: String },
    #[error("more than {limit} entries, lkb's fixed limit for one layer")]
    TooManyEntries { limit: u64 },
    #[error("path of {len} bytes is longer than {limit} bytes, lkb's fixed limit: {path:?}")]
    PathTooLong {
        path: String,
        len: usize,
        limit: usize,
    },
    #[error("uncompressed layer is larger than {limit} bytes, lkb's fixed limit")]
    TooLarge { limit: u64 },
    #[error("corrupt compressed stream after the end of the tar")]
    Trailer(#[source] io::Error),
    #[error(
        "the uncompressed layer hashes to {actual}, but the image config's rootfs.diff_ids \
         says {expected}"
    )]
    DiffIdMismatch {
        expected: BlobDigest,
        actual: BlobDigest,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("storing layer content: {0}")]
    Store(#[from] StoreError),
}

/// An error unpacking a layer, naming the layer when the caller supplied its digest.
#[derive(Debug)]
pub struct LayerError {
    pub layer: Option<String>,
    pub kind: LayerErrorKind,
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.layer {
            Some(d) => write!(f, "layer {d}: {}", self.kind),
            None => write!(f, "layer: {}", self.kind),
        }
    }
}

impl std::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

impl<E: Into<LayerErrorKind>> From<E> for LayerError {
    fn from(e: E) -> LayerError {
        LayerError {
            layer: None,
            kind: e.into(),
        }
    }
}

impl LayerError {
    /// Attaches the layer's digest (or another name) for the message.
    pub fn in_layer(mut self, digest: impl std::fmt::Display) -> LayerError {
        self.layer = Some(digest.to_string());
        self
    }

    /// See the module docs.
    pub fn category(&self) -> ErrorCategory {
        match &self.kind {
            LayerErrorKind::TooManyEntries { .. }
            | LayerErrorKind::PathTooLong { .. }
            | LayerErrorKind::TooLarge { .. }
            | LayerErrorKind::DiffIdMismatch { .. } => ErrorCategory::User,
            LayerErrorKind::Store(e) => e.category(),
            LayerErrorKind::Tree(e @ TreeError::Store(_)) => e.category(),
            _ => ErrorCategory::Environment,
        }
    }
}

fn bad(path: &str, reason: impl Into<String>) -> LayerErrorKind {
    LayerErrorKind::BadEntry {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// What a layer media type says about compression: `Some(codec)` for known layer types,
/// `None` when unknown-but-acceptable (empty). Other media types are refused.
pub fn layer_media_type(media_type: &str) -> Result<Option<Detected>, LayerErrorKind> {
    let base = media_type.split(';').next().unwrap_or("").trim();
    Ok(match base {
        "" => None,
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Some(Detected::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Detected::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Detected::Zstd),
        _ => return Err(LayerErrorKind::MediaType(media_type.to_string())),
    })
}

/// Counts and hashes decompressed bytes, and fails the stream once the limit is passed.
struct Counting<R> {
    inner: R,
    count: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
    hasher: Sha256,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("layer size limit exceeded"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Extension headers collected for the next real entry.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<(String, Vec<u8>)>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.pax.is_none() && self.long_name.is_none() && self.long_link.is_none()
    }
    fn pax(&self, key: &str) -> Option<&[u8]> {
        self.pax
            .as_ref()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parses PAX extended header records (`"<len> <key>=<value>\n"`, length-prefixed).
fn parse_pax(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, LayerErrorKind> {
    let corrupt = |why: &str| LayerErrorKind::Corrupt(format!("malformed PAX record: {why}"));
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| corrupt("no length"))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("bad length"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(corrupt("length does not fit"));
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| corrupt("no '='"))?;
        let key = String::from_utf8(rec[..eq].to_vec()).map_err(|_| corrupt("key not UTF-8"))?;
        out.push((key, rec[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn read_limited(
    r: &mut dyn Read,
    size: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, LayerErrorKind> {
    if size > max {
        return Err(LayerErrorKind::Corrupt(format!(
            "{what} of {size} bytes exceeds {max}"
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    r.take(size).read_to_end(&mut buf)?;
    if buf.len() as u64 != size {
        return Err(LayerErrorKind::Corrupt(format!("{what} truncated")));
    }
    Ok(buf)
}

fn trim_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

fn parse_pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    let has_frac = frac.bytes().any(|b| b != b'0');
    Some(if s.starts_with('-') && has_frac {
        secs - 1
    } else {
        secs
    })
}

/// Unpacks one layer (see the module docs). `media_type` may be empty; the compression is
/// taken from the stream's magic bytes, which win over the media type (registries are known
/// to mislabel). With `diff_id`, the uncompressed stream must hash to it. Use
/// [`LayerError::in_layer`] to name the layer in errors.
pub fn unpack_layer(
    store: &Store,
    blob: impl Read,
    media_type: &str,
    limits: &Limits,
    diff_id: Option<&BlobDigest>,
) -> Result<Tree, LayerError> {
    layer_media_type(media_type)?;
    let (_detected, stream) = decompress_reader(blob)?;
    let exceeded = Rc::new(Cell::new(false));
    let counting = Counting {
        inner: stream,
        count: 0,
        limit: limits.max_total_bytes,
        exceeded: exceeded.clone(),
        hasher: Sha256::new(),
    };
    let too_large = || LayerErrorKind::TooLarge {
        limit: limits.max_total_bytes,
    };
    let mut archive = tar::Archive::new(counting);
    let result = unpack_tar(store, &mut archive, limits);
    if exceeded.get() {
        return Err(too_large().into());
    }
    let tree = result?;
    // The rest of the stream: the tar's padding, then the compression's trailer, which the
    // decompressor checks only when it reaches the end.
    let mut rest = archive.into_inner();
    if let Err(e) = io::copy(&mut rest, &mut io::sink()) {
        if exceeded.get() {
            return Err(too_large().into());
        }
        return Err(LayerErrorKind::Trailer(e).into());
    }
    if let Some(expected) = diff_id {
        let actual = BlobDigest::from_bytes(rest.hasher.finalize().into());
        if actual != *expected {
            return Err(LayerErrorKind::DiffIdMismatch {
                expected: *expected,
                actual,
            }
            .into());
        }
    }
    Ok(tree)
}

fn unpack_tar<R: Read>(
    store: &Store,
    archive: &mut tar::Archive<R>,
    limits: &Limits,
) -> Result<Tree, LayerErrorKind> {
    let mut tree = Tree::new();
    let mut pending = Pending::default();
    let mut count: u64 = 0;
    let name_max = limits.max_path_len as u64 + 1;
    for item in archive.entries()?.raw(true) {
        let mut entry = item.map_err(|e| LayerErrorKind::Corrupt(e.to_string()))?;
        let header = entry.header().clone();
        let size = header
            .entry_size()
            .map_err(|e| LayerErrorKind::Corrupt(e.to_string()))?;
        match header.entry_type().as_byte() {
            b'x' | b'X' => {
                if pending.pax.is_some() {
                    return Err(LayerErrorKind::Corrupt(
                        "two PAX headers for one entry".into(),
                    ));
                }
                let data = read_limited(&mut entry, size, MAX_PAX_HEADER, "PAX header")?;
                pending.pax = Some(parse_pax(&data)?);
            }
            b'g' => {
                read_limited(&mut entry, size, MAX_PAX_HEADER, "PAX global header")?;
            }
            b'L' => {
                let data = read_limited(&mut entry, size, name_max, "GNU long name")?;
                pending.long_name = Some(trim_nul(data));
            }
            b'K' => {
                let data = read_limited(&mut entry, size, name_max, "GNU long link name")?;
                pending.long_link = Some(trim_nul(data));
            }
            _ => {
                count += 1;
                if count > limits.max_entries {
                    return Err(LayerErrorKind::TooManyEntries {
                        limit: limits.max_entries,
                    });
                }
                let ext = std::mem::take(&mut pending);
                add_entry(store, &mut tree, &mut entry, &header, size, &ext, limits)?;
            }
        }
    }
    if !pending.is_empty() {
        return Err(LayerErrorKind::Corrupt(
            "extension header at the end of the layer".into(),
        ));
    }
    tree.normalize_layer_hardlinks()?;
    Ok(tree)
}

fn utf8(raw: &[u8], what: &str) -> Result<String, LayerErrorKind> {
    String::from_utf8(raw.to_vec()).map_err(|_| {
        bad(
            &String::from_utf8_lossy(raw),
            format!("{what} is not valid UTF-8"),
        )
    })
}

fn normalize(raw: &str, limits: &Limits) -> Result<Option<String>, LayerErrorKind> {
    if raw.len() > limits.max_path_len {
        return Err(LayerErrorKind::PathTooLong {
            path: raw.to_string(),
            len: raw.len(),
            limit: limits.max_path_len,
        });
    }
    match normalize_path(raw) {
        Ok(p) => Ok(p),
        Err(PathError::Escapes(p)) => Err(LayerErrorKind::Escapes(p)),
        Err(PathError::Nul(p)) => Err(bad(&p, "name contains a NUL byte")),
    }
}

fn num(r: io::Result<u64>, path: &str, what: &str) -> Result<u64, LayerErrorKind> {
    r.map_err(|e| bad(path, format!("bad {what}: {e}")))
}

fn id32(v: u64, path: &str, what: &str) -> Result<u32, LayerErrorKind> {
    u32::try_from(v).map_err(|_| bad(path, format!("{what} {v} does not fit in 32 bits")))
}

#[allow(clippy::too_many_arguments)]
fn add_entry(
    store: &Store,
    tree: &mut Tree,
    data: &mut dyn Read,
    header: &tar::Header,
    size: u64,
    ext: &Pending,
    limits: &Limits,
) -> Result<(), LayerErrorKind> {
    let raw_name = match (ext.pax("path"), &ext.long_name) {
        (Some(p), _) => p.to_vec(),
        (None, Some(l)) => l.clone(),
        (None, None) => header.path_bytes().into_owned(),
    };
    let name = utf8(&raw_name, "name")?;
    let Some(path) = normalize(&name, limits)? else {
        let raw_type = header.entry_type().as_byte();
        let is_dir = matches!(raw_type, b'5' | b'D')
            || (matches!(raw_type, b'0' | b'\0') && raw_name.ends_with(b"/"));
        return if is_dir {
            set_root(tree, header, ext)
        } else {
            Ok(())
        };
    };
    let raw_type = header.entry_type().as_byte();
    let base = split_parent(&path).1;
    if path
        .split('/')
        .any(|c| c.starts_with(".wh..wh.") && c != OPAQUE_MARKER)
        || (base == OPAQUE_MARKER && path.split('/').filter(|c| c.starts_with(".wh.")).count() > 1)
    {
        return Ok(()); // aufs metadata (e.g. .wh..wh.plnk/…)
    }
    if let Some(v) = ext.pax("size") {
        let pax_size = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if pax_size != Some(size) {
            return Err(bad(
                &path,
                "PAX size record disagrees with the header (unsupported)",
            ));
        }
    }

    let meta = entry_meta(header, ext, &path)?;

    let link_target = || -> Result<String, LayerErrorKind> {
        let raw = match (ext.pax("linkpath"), &ext.long_link) {
            (Some(p), _) => p.to_vec(),
            (None, Some(l)) => l.clone(),
            (None, None) => header
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default(),
        };
        if raw.len() > limits.max_path_len {
            return Err(LayerErrorKind::PathTooLong {
                path: String::from_utf8_lossy(&raw).into_owned(),
                len: raw.len(),
                limit: limits.max_path_len,
            });
        }
        utf8(&raw, "link target")
    };
    let device = |path: &str| -> Result<(u32, u32), LayerErrorKind> {
        let major = header
            .device_major()
            .map_err(|e| bad(path, format!("bad device major: {e}")))?;
        let minor = header
            .device_minor()
            .map_err(|e| bad(path, format!("bad device minor: {e}")))?;
        Ok((major.unwrap_or(0), minor.unwrap_or(0)))
    };

    let kind = if base == OPAQUE_MARKER {
        EntryKind::Opaque
    } else if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
        if matches!(hidden, "" | "." | "..") {
            return Err(bad(&path, "whiteout of an unnameable path"));
        }
        EntryKind::Whiteout
    } else {
        match raw_type {
            b'0' | b'\0' | b'7' if raw_type != b'7' && raw_name.ends_with(b"/") => EntryKind::Dir,
            b'0' | b'\0' | b'7' => EntryKind::File {
                blob: store_file(store, data, size, &path)?,
            },
            b'1' => {
                let target = link_target()?;
                let target = normalize(&target, limits)?
                    .ok_or_else(|| bad(&path, "hard link to the root directory"))?;
                if target == path {
                    return Err(bad(&path, "hard link to itself"));
                }
                EntryKind::Hardlink { target }
            }
            b'2' => {
                let target = link_target()?;
                if target.is_empty() || target.contains('\0') {
                    return Err(bad(&path, "symlink target is empty or contains NUL"));
                }
                EntryKind::Symlink { target }
            }
            b'3' => {
                let (major, minor) = device(&path)?;
                EntryKind::Char { major, minor }
            }
            b'4' => {
                let (major, minor) = device(&path)?;
                EntryKind::Block { major, minor }
            }
            b'5' | b'D' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            b'V' => return Ok(()), // GNU volume label
            other => {
                let kind = match other {
                    b'S' => "GNU sparse file".to_string(),
                    b'M' => "GNU multi-volume continuation".to_string(),
                    c => format!("{:?}", c as char),
                };
                return Err(LayerErrorKind::Unsupported { path, kind });
            }
        }
    };

    let mut entry = Entry::new(path, kind, meta);
    copy_records(&mut entry, ext);
    insert_layer_entry(tree, entry)
}

/// Records a root directory entry (`./`) as the tree's root; later ones replace earlier ones,
/// like a directory over a directory.
fn set_root(tree: &mut Tree, header: &tar::Header, ext: &Pending) -> Result<(), LayerErrorKind> {
    let mut root = Entry::dir(ROOT_PATH, entry_meta(header, ext, ROOT_PATH)?);
    copy_records(&mut root, ext);
    tree.set_root(Some(root))?;
    Ok(())
}

/// Keeps an entry's xattrs and its PAX records other than the basic ones.
fn copy_records(entry: &mut Entry, ext: &Pending) {
    for (k, v) in ext.pax.iter().flatten() {
        if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
            entry.xattrs.insert(name.to_string(), v.clone());
        } else if !is_basic_pax_key(k)
            && let Ok(v) = String::from_utf8(v.clone())
        {
            entry.pax.insert(k.clone(), v);
        }
    }
}

/// Mode, owner and mtime of an entry: the header's, overridden by PAX records.
fn entry_meta(header: &tar::Header, ext: &Pending, path: &str) -> Result<Meta, LayerErrorKind> {
    let uid = match ext.pax("uid") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(path, "bad PAX uid"))?,
        None => num(header.uid(), path, "uid")?,
    };
    let gid = match ext.pax("gid") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(path, "bad PAX gid"))?,
        None => num(header.gid(), path, "gid")?,
    };
    let mtime = match ext.pax("mtime") {
        Some(v) => parse_pax_time(v).ok_or_else(|| bad(path, "bad PAX mtime"))?,
        None => i64::try_from(num(header.mtime(), path, "mtime")?).unwrap_or(i64::MAX),
    };
    let mode = header
        .mode()
        .map_err(|e| bad(path, format!("bad mode: {e}")))?
        & 0o7777;
    Ok(Meta {
        mode,
        uid: id32(uid, path, "uid")?,
        gid: id32(gid, path, "gid")?,
        mtime,
    })
}

fn store_file(
    store: &Store,
    data: &mut dyn Read,
    size: u64,
    path: &str,
) -> Result<lkb_store::BlobRef, LayerErrorKind> {
    let truncated = || LayerErrorKind::Corrupt(format!("content of {path:?} is truncated"));
    if size <= SMALL_FILE {
        let mut buf = Vec::with_capacity(size as usize);
        data.take(size).read_to_end(&mut buf)?;
        if buf.len() as u64 != size {
            return Err(truncated());
        }
        return Ok(store.put_bytes(&buf)?);
    }
    let mut w = store.writer()?;
    let copied = io::copy(&mut data.take(size), &mut w)?;
    if copied != size {
        return Err(truncated());
    }
    Ok(w.finish()?)
}

/// Adds an entry to a per-layer tree with tar-extraction semantics (later entries win).
fn insert_layer_entry(tree: &mut Tree, entry: Entry) -> Result<(), LayerErrorKind> {
    for a in ancestors(&entry.path) {
        if let Some(p) = tree.get(a)
            && !p.is_dir()
        {
            return Err(TreeError::NotADirectory {
                path: a.to_string(),
                kind: p.kind.name(),
                child: entry.path.clone(),
            }
            .into());
        }
    }
    if let Some(old) = tree.get(&entry.path)
        && old.is_dir()
        && !entry.is_dir()
    {
        tree.remove_children(&entry.path);
    }
    tree.insert(entry)?;
    Ok(())
}
