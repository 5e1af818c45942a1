//! Canonical byte encoding of a [`Tree`].
//!
//! ```text
//! tree    = magic "LKBTREE\n" | version u8 (= 2) | root | count varint | entry*count
//! root    = 0 (none) | 1 entry     (path ".", a directory; see `Tree::root`)
//! entry   = path str | tag u8 | payload | mode varint | uid varint | gid varint
//!           | mtime zigzag-varint | n varint | (key str | value bytes)*n    (xattrs)
//!           | n varint | (key str | value str)*n                           (pax records)
//! payload = Dir 0: - | File 1: sha256 [32] + size varint | Symlink 2: target str
//!           | Hardlink 3: target str | Char 4 / Block 5: major varint + minor varint
//!           | Fifo 6 / Whiteout 7 / Opaque 8: -
//! str     = bytes holding UTF-8;   bytes = len varint | raw
//! varint  = unsigned LEB128, shortest form
//! ```
//! Entries are in archive order and map keys in byte order; the decoder insists on strictly
//! ascending order, shortest varints, valid entries and no trailing bytes, so every tree has
//! exactly one encoding and `decode(encode(t)) == t`.
//!
//! Version 1 had no `root` field. It is still decoded (as a tree without a root entry), so
//! stores written before version 2 keep working: results of actions whose trees could hold a
//! root (`unpack`) have new keys and are made again, and the others never have one.

use std::collections::BTreeMap;

use lkb_store::{BlobDigest, BlobRef, Store};

use super::{Entry, EntryKind, PathKey, Tree, TreeError, cmp_paths, validate};

/// The first bytes of every tree encoding; the format version follows.
pub(crate) const TREE_MAGIC: &[u8; 8] = b"LKBTREE\n";
/// Version of the tree encoding; bump when the format or the meaning of a field changes.
pub const TREE_FORMAT_VERSION: u8 = 2;
/// The version before the root entry, still decoded.
pub(crate) const TREE_FORMAT_VERSION_NO_ROOT: u8 = 1;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    put_bytes(out, e.path.as_bytes());
    match &e.kind {
        EntryKind::Dir => out.push(0),
        EntryKind::File { blob } => {
            out.push(1);
            out.extend_from_slice(blob.digest.as_bytes());
            put_varint(out, blob.size);
        }
        EntryKind::Symlink { target } => {
            out.push(2);
            put_bytes(out, target.as_bytes());
        }
        EntryKind::Hardlink { target } => {
            out.push(3);
            put_bytes(out, target.as_bytes());
        }
        EntryKind::Char { major, minor } | EntryKind::Block { major, minor } => {
            out.push(if matches!(e.kind, EntryKind::Char { .. }) {
                4
            } else {
                5
            });
            put_varint(out, u64::from(*major));
            put_varint(out, u64::from(*minor));
        }
        EntryKind::Fifo => out.push(6),
        EntryKind::Whiteout => out.push(7),
        EntryKind::Opaque => out.push(8),
    }
    put_varint(out, u64::from(e.mode));
    put_varint(out, u64::from(e.uid));
    put_varint(out, u64::from(e.gid));
    put_varint(out, zigzag(e.mtime));
    put_varint(out, e.xattrs.len() as u64);
    for (k, v) in &e.xattrs {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v);
    }
    put_varint(out, e.pax.len() as u64);
    for (k, v) in &e.pax {
        put_bytes(out, k.as_bytes());
        put_bytes(out, v.as_bytes());
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl Tree {
    /// The canonical encoding (see the module docs of `tree::codec`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.len() * 64);
        out.extend_from_slice(TREE_MAGIC);
        out.push(TREE_FORMAT_VERSION);
        match &self.root {
            None => out.push(0),
            Some(root) => {
                out.push(1);
                put_entry(&mut out, root);
            }
        }
        put_varint(&mut out, self.len() as u64);
        for e in self.iter() {
            put_entry(&mut out, e);
        }
        out
    }

    /// Stores the canonical encoding as a blob.
    pub fn put(&self, store: &Store) -> Result<BlobRef, TreeError> {
        Ok(store.put_bytes(&self.encode())?)
    }

    /// Loads a tree stored with [`Tree::put`].
    pub fn load(store: &Store, digest: &BlobDigest) -> Result<Tree, TreeError> {
        Tree::decode(&store.read_blob(digest)?)
    }

    /// Decodes [`Tree::encode`] output, rejecting anything that is not canonical.
    pub fn decode(bytes: &[u8]) -> Result<Tree, TreeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        if r.take(TREE_MAGIC.len())? != TREE_MAGIC {
            return Err(TreeError::Decode("not a tree (bad magic)".into()));
        }
        let version = r.u8()?;
        let mut tree = Tree::new();
        match version {
            TREE_FORMAT_VERSION_NO_ROOT => {}
            TREE_FORMAT_VERSION => match r.u8()? {
                0 => {}
                1 => {
                    let root = r.entry()?;
                    tree.set_root(Some(root))
                        .map_err(|e| TreeError::Decode(e.to_string()))?;
                }
                t => return Err(TreeError::Decode(format!("unknown root tag {t}"))),
            },
            _ => {
                return Err(TreeError::Decode(format!(
                    "unsupported tree format version {version}"
                )));
            }
        }
        let count = r.varint()?;
        let mut prev: Option<String> = None;
        for _ in 0..count {
            let entry = r.entry()?;
            if let Some(p) = &prev
                && !cmp_paths(p, &entry.path).is_lt()
            {
                return Err(TreeError::Decode(format!(
                    "entries out of order: {p:?} before {:?}",
                    entry.path
                )));
            }
            validate(&entry).map_err(|e| TreeError::Decode(e.to_string()))?;
            prev = Some(entry.path.clone());
            tree.map.insert(PathKey(entry.path.clone()), entry);
        }
        if r.pos != bytes.len() {
            return Err(TreeError::Decode(format!(
                "{} trailing bytes",
                bytes.len() - r.pos
            )));
        }
        Ok(tree)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| TreeError::Decode("truncated".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, TreeError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, TreeError> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(TreeError::Decode("varint overflows 64 bits".into()));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(TreeError::Decode("varint not in shortest form".into()));
                }
                return Ok(v);
            }
        }
        Err(TreeError::Decode("varint too long".into()))
    }

    fn u32(&mut self) -> Result<u32, TreeError> {
        u32::try_from(self.varint()?).map_err(|_| TreeError::Decode("value exceeds 32 bits".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], TreeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| TreeError::Decode("length".into()))?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, TreeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| TreeError::Decode("string is not UTF-8".into()))
    }

    fn map<V>(
        &mut self,
        mut value: impl FnMut(&mut Self) -> Result<V, TreeError>,
    ) -> Result<BTreeMap<String, V>, TreeError> {
        let n = self.varint()?;
        let mut out = BTreeMap::new();
        let mut prev: Option<String> = None;
        for _ in 0..n {
            let k = self.string()?;
            if prev.as_deref().is_some_and(|p| p >= k.as_str()) {
                return Err(TreeError::Decode(format!("map keys out of order at {k:?}")));
            }
            let v = value(self)?;
            prev = Some(k.clone());
            out.insert(k, v);
        }
        Ok(out)
    }

    fn entry(&mut self) -> Result<Entry, TreeError> {
        let path = self.string()?;
        let kind = match self.u8()? {
            0 => EntryKind::Dir,
            1 => {
                let mut sha = [0u8; 32];
                sha.copy_from_slice(self.take(32)?);
                let digest = BlobDigest::from_bytes(sha);
                EntryKind::File {
                    blob: BlobRef {
                        digest,
                        size: self.varint()?,
                    },
                }
            }
            2 => EntryKind::Symlink {
                target: self.string()?,
            },
            3 => EntryKind::Hardlink {
                target: self.string()?,
            },
            4 => EntryKind::Char {
                major: self.u32()?,
                minor: self.u32()?,
            },
            5 => EntryKind::Block {
                major: self.u32()?,
                minor: self.u32()?,
            },
            6 => EntryKind::Fifo,
            7 => EntryKind::Whiteout,
            8 => EntryKind::Opaque,
            t => return Err(TreeError::Decode(format!("unknown entry tag {t}"))),
        };
        let mode = self.u32()?;
        let uid = self.u32()?;
        let gid = self.u32()?;
        let mtime = unzigzag(self.varint()?);
        let xattrs = self.map(|r| Ok(r.bytes()?.to_vec()))?;
        let pax = self.map(|r| r.string())?;
        Ok(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
            pax,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_and_zigzag_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut r = Reader { buf: &b, pos: 0 };
            assert_eq!(r.varint().unwrap(), v);
            assert_eq!(r.pos, b.len());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, 1_492_533_000] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        let mut r = Reader {
            buf: &[0x80, 0x00],
            pos: 0,
        };
        assert!(r.varint().is_err(), "non-shortest varint must be refused");
    }
}
