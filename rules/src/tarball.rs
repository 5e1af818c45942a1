//! PAX tar writer, byte-compatible with Go's `archive/tar` where that is cheap.
//!
//! Choices (the ones Go makes for a header with `Format: tar.FormatPAX`, as LinuxKit writes):
//! - Main header: ustar magic `ustar\0` + `00`; numbers as zero-padded octal with a NUL
//!   (`0000755\0`); checksum as six octal digits, NUL, space; empty uname/gname; devmajor and
//!   devminor written (as `0000000\0` unless a device); no prefix field; directory names
//!   without a trailing `/`.
//! - A PAX `x` header precedes an entry whenever it has records. Records: `path` / `linkpath`
//!   when the name is longer than 100 bytes or not ASCII (the header then holds the ASCII
//!   characters, truncated), `uid` / `gid` / `size` / `mtime` when the value does not fit its
//!   octal field, `SCHILY.xattr.<name>` per xattr, the entry's own [`Entry::pax`] records, and
//!   the writer's extra records ([`TarWriter::set_extra_pax`], e.g. `LINUXKIT.source`), which
//!   override the entry's. Records are sorted by key; the `x` header is named
//!   `<dir>/PaxHeaders.0/<name>` with mode, owner and mtime 0.
//! - Hard links are tar hard links (type `1`, size 0) to a path written earlier by the same
//!   writer; writing a link before its target is an error (a tree in archive order with
//!   normalised links never does).
//! - Whiteout markers are written as empty regular files under their `.wh.` names, so the
//!   writer can also produce OCI layers.
//! - The archive ends with two zero blocks (no padding to a 10 KiB record, like Go).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use lkb_store::{ErrorCategory, Store, StoreError};

use crate::tree::{Entry, EntryKind, ROOT_PATH, Tree, is_basic_pax_key};

/// Version of this writer's byte-affecting choices, for action keys.
/// 2: root entries (`.`) are written, their PAX header named `PaxHeaders.0` as Go names it.
pub const TAR_FORMAT_VERSION: u32 = 2;
const BLOCK: usize = 512;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarOptions {
    /// PAX records added to every entry (overriding the entry's own records of the same key).
    pub extra_pax: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("hard link {path:?} is written before its target {target:?}")]
    LinkBeforeTarget { path: String, target: String },
    #[error("entry {path:?}: invalid PAX record {key:?} (keys must not contain '=' or NUL)")]
    InvalidPaxRecord { path: String, key: String },
    #[error("entry {path:?}: PAX header of {size} bytes is too large")]
    PaxTooLarge { path: String, size: usize },
    #[error("content of {path:?} ended after {actual} of {expected} bytes")]
    ShortBlob {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing tar: {0}")]
    Io(#[from] io::Error),
}

impl TarError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            TarError::LinkBeforeTarget { .. } => ErrorCategory::Internal,
            TarError::InvalidPaxRecord { .. } | TarError::PaxTooLarge { .. } => ErrorCategory::User,
            TarError::ShortBlob { .. } | TarError::Io(_) => ErrorCategory::Environment,
            TarError::Store(e) => e.category(),
        }
    }
}

/// Writes `v` as zero-padded octal filling all but the last byte (a NUL), like Go's
/// `formatOctal`. Returns false (and writes zeros) if it does not fit.
fn octal(field: &mut [u8], v: u64) -> bool {
    let digits = format!("{v:o}");
    let width = field.len() - 1;
    let fits = digits.len() <= width;
    let digits = if fits { digits } else { "0".to_string() };
    let padded = format!("{digits:0>width$}");
    field[..width].copy_from_slice(padded.as_bytes());
    field[width] = 0;
    fits
}

/// Go's `toASCII` (drops non-ASCII characters), then as much as fits; NUL-terminated if
/// shorter than the field. A truncation that ends in `/` loses the trailing slashes.
fn string_field(field: &mut [u8], s: &str) {
    let ascii: Vec<u8> = s.bytes().filter(|b| b.is_ascii()).collect();
    let n = ascii.len().min(field.len());
    field[..n].copy_from_slice(&ascii[..n]);
    if ascii.len() > field.len() && field[field.len() - 1] == b'/' {
        let kept = ascii[..field.len() - 1]
            .iter()
            .rposition(|b| *b != b'/')
            .map_or(0, |i| i + 1);
        field[kept] = 0;
    }
}

fn needs_pax_string(s: &str, len: usize) -> bool {
    s.len() > len || !s.is_ascii()
}

/// Fills in magic, version and checksum (`%06o\0 `) of a header block.
fn seal(b: &mut [u8; BLOCK]) {
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|x| u64::from(*x)).sum();
    octal(&mut b[148..155], sum);
    b[155] = b' ';
}

/// A main header block. `numbers` = mode, uid, gid, size, mtime (0 where a PAX record holds
/// the value).
fn header_block(
    name: &str,
    typeflag: u8,
    numbers: [u64; 5],
    linkname: &str,
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    string_field(&mut b[0..100], name);
    for (v, r) in numbers
        .iter()
        .zip([100..108, 108..116, 116..124, 124..136, 136..148])
    {
        octal(&mut b[r], *v);
    }
    b[156] = typeflag;
    string_field(&mut b[157..257], linkname);
    octal(&mut b[329..337], u64::from(dev.0));
    octal(&mut b[337..345], u64::from(dev.1));
    seal(&mut b);
    b
}

/// One PAX record, `"<len> <key>=<value>\n"`, as Go's `formatPAXRecord` builds it.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let base = key.len() + value.len() + 3;
    let mut len = base + base.to_string().len();
    if (base + len.to_string().len()) != len {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Streams a PAX tar to `out`. Wrap `out` in a `BufWriter` (or a compressor).
pub struct TarWriter<W: Write> {
    out: W,
    store: Store,
    extra_pax: BTreeMap<String, String>,
    written: HashSet<String>,
    offset: u64,
    entries: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, store: &Store, opts: &TarOptions) -> TarWriter<W> {
        TarWriter {
            out,
            store: store.clone(),
            extra_pax: opts.extra_pax.clone(),
            written: HashSet::new(),
            offset: 0,
            entries: 0,
        }
    }

    /// Replaces the records added to every following entry (e.g. per LinuxKit section).
    pub fn set_extra_pax(&mut self, records: BTreeMap<String, String>) {
        self.extra_pax = records;
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (BLOCK as u64 - self.offset % BLOCK as u64) % BLOCK as u64;
        self.put(&[0u8; BLOCK][..n as usize])
    }

    /// Appends all entries in order.
    pub fn append_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), TarError> {
        for e in entries {
            self.append(e)?;
        }
        Ok(())
    }

    /// Appends one entry (its PAX header, header, data).
    pub fn append(&mut self, e: &Entry) -> Result<(), TarError> {
        let (typeflag, size, link, dev): (u8, u64, &str, (u32, u32)) = match &e.kind {
            EntryKind::Dir => (b'5', 0, "", (0, 0)),
            EntryKind::File { blob } => (b'0', blob.size, "", (0, 0)),
            EntryKind::Symlink { target } => (b'2', 0, target.as_str(), (0, 0)),
            EntryKind::Hardlink { target } => {
                if !self.written.contains(target) {
                    return Err(TarError::LinkBeforeTarget {
                        path: e.path.clone(),
                        target: target.clone(),
                    });
                }
                (b'1', 0, target.as_str(), (0, 0))
            }
            EntryKind::Char { major, minor } => (b'3', 0, "", (*major, *minor)),
            EntryKind::Block { major, minor } => (b'4', 0, "", (*major, *minor)),
            EntryKind::Fifo => (b'6', 0, "", (0, 0)),
            EntryKind::Whiteout | EntryKind::Opaque => (b'0', 0, "", (0, 0)),
        };

        let mut records: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        if needs_pax_string(&e.path, 100) {
            records.insert("path".into(), e.path.as_bytes().to_vec());
        }
        if needs_pax_string(link, 100) {
            records.insert("linkpath".into(), link.as_bytes().to_vec());
        }
        let mtime_octal = u64::try_from(e.mtime)
            .ok()
            .filter(|m| *m <= 0o777_7777_7777);
        let numbers = [
            (u64::from(e.mode), true),
            (u64::from(e.uid), u64::from(e.uid) <= 0o777_7777),
            (u64::from(e.gid), u64::from(e.gid) <= 0o777_7777),
            (size, size <= 0o777_7777_7777),
            (mtime_octal.unwrap_or(0), true),
        ];
        for (key, (v, fits)) in [
            ("uid", numbers[1]),
            ("gid", numbers[2]),
            ("size", numbers[3]),
        ] {
            if !fits {
                records.insert(key.into(), v.to_string().into_bytes());
            }
        }
        if mtime_octal.is_none() {
            records.insert("mtime".into(), e.mtime.to_string().into_bytes());
        }
        for (k, v) in &e.xattrs {
            records.insert(format!("SCHILY.xattr.{k}"), v.clone());
        }
        for (k, v) in e.pax.iter().chain(&self.extra_pax) {
            if !is_basic_pax_key(k) {
                records.insert(k.clone(), v.clone().into_bytes());
            }
        }
        if !records.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &records {
                if k.is_empty() || k.contains(['=', '\0']) {
                    return Err(TarError::InvalidPaxRecord {
                        path: e.path.clone(),
                        key: k.clone(),
                    });
                }
                pax_record(&mut data, k, v);
            }
            if data.len() > 1 << 20 {
                return Err(TarError::PaxTooLarge {
                    path: e.path.clone(),
                    size: data.len(),
                });
            }
            let (dir, file) = match e.path.rfind('/') {
                Some(i) => (&e.path[..i], &e.path[i + 1..]),
                None => ("", e.path.as_str()),
            };
            // Go joins and cleans the parts: the root entry's header is `PaxHeaders.0`.
            let name = if file == ROOT_PATH && dir.is_empty() {
                "PaxHeaders.0".to_string()
            } else if dir.is_empty() {
                format!("PaxHeaders.0/{file}")
            } else {
                format!("{dir}/PaxHeaders.0/{file}")
            };
            let mut block = [0u8; BLOCK];
            string_field(&mut block[0..100], name.trim_end_matches('/'));
            for r in [100..108, 108..116, 116..124, 136..148] {
                octal(&mut block[r], 0);
            }
            octal(&mut block[124..136], data.len() as u64);
            block[156] = b'x';
            seal(&mut block);
            self.put(&block)?;
            self.put(&data)?;
            self.pad()?;
        }

        let numbers = numbers.map(|(v, fits)| if fits { v } else { 0 });
        let block = header_block(&e.path, typeflag, numbers, link, dev);
        self.put(&block)?;
        if let EntryKind::File { blob } = &e.kind
            && blob.size > 0
        {
            let mut file = self.store.open_blob(&blob.digest)?;
            let copied = io::copy(&mut (&mut file).take(blob.size), &mut self.out)?;
            self.offset += copied;
            if copied != blob.size {
                return Err(TarError::ShortBlob {
                    path: e.path.clone(),
                    expected: blob.size,
                    actual: copied,
                });
            }
            self.pad()?;
        }
        self.written.insert(e.path.clone());
        self.entries += 1;
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks); returns the inner writer.
    pub fn finish(mut self) -> Result<(W, TarSummary), TarError> {
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok((
            self.out,
            TarSummary {
                entries: self.entries,
                bytes: self.offset,
            },
        ))
    }
}

/// Writes a whole tree, in archive order, as one tar: first its root entry, as `.`, if it has
/// one ([`Tree::root`]).
pub fn write_tar<W: Write>(
    out: W,
    tree: &Tree,
    store: &Store,
    opts: &TarOptions,
) -> Result<(W, TarSummary), TarError> {
    let mut w = TarWriter::new(out, store, opts);
    w.append_entries(tree.archive_entries())?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::process::Command;

    use super::*;
    use crate::cpio::{CpioOptions, tests::parse_newc, write_cpio};
    use crate::layer::{Limits, unpack_layer};
    use crate::tree::testutil::*;
    use crate::tree::{Entry, Meta};

    fn tar_bytes(t: &Tree, store: &Store, extra: &[(&str, &str)]) -> Vec<u8> {
        let opts = TarOptions {
            extra_pax: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        write_tar(Vec::new(), t, store, &opts).unwrap().0
    }

    #[test]
    fn go_style_headers() {
        let (_d, store) = store();
        let t = tree_of(vec![file(&store, "a", b"hello")]);
        let b = tar_bytes(
            &t,
            &store,
            &[("LINUXKIT.source", "img"), ("LINUXKIT.location", "init[0]")],
        );
        assert_eq!(b.len(), 512 * 6);
        let x = &b[..512];
        assert_eq!(&x[..15], b"PaxHeaders.0/a\0");
        assert_eq!(
            (&x[100..108], x[156], &x[257..265]),
            (&b"0000000\0"[..], b'x', &b"ustar\x0000"[..])
        );
        assert_eq!(
            &x[329..345],
            &[0u8; 16],
            "Go leaves the x header's device fields empty"
        );
        let records = b"29 LINUXKIT.location=init[0]\n23 LINUXKIT.source=img\n";
        assert_eq!(&b[512..512 + records.len()], records);
        assert_eq!(&x[124..136], format!("{:011o}\0", records.len()).as_bytes());
        let h = &b[1024..1536];
        assert_eq!(&h[..2], b"a\0");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[108..124], b"0000000\x000000000\0");
        assert_eq!(
            &h[124..148],
            format!("00000000005\0{:011o}\0", M644.mtime).as_bytes()
        );
        assert_eq!((h[156], &h[329..345]), (b'0', &b"0000000\x000000000\0"[..]));
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*c)
                }
            })
            .sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
        assert_eq!(&b[1536..1541], b"hello");
        assert!(b[2048..].iter().all(|c| *c == 0));
        // No records, no PAX header.
        let plain = tar_bytes(&tree_of(vec![Entry::dir("d", M755)]), &store, &[]);
        assert_eq!((plain.len(), plain[156]), (512 * 3, b'5'));
    }

    #[test]
    fn the_root_entry_comes_first_as_dot() {
        let (_d, store) = store();
        let mut t = tree_of(vec![file(&store, "a", b"A")]);
        let mut root = Entry::dir(ROOT_PATH, Meta::new(0o700, 5, 6, 1_492_533_000));
        root.pax
            .insert("LINUXKIT.location".into(), "init[0]".into());
        t.set_root(Some(root)).unwrap();
        let b = tar_bytes(&t, &store, &[]);
        // Go: path.Join("", "PaxHeaders.0", ".") is "PaxHeaders.0".
        assert_eq!(&b[..13], b"PaxHeaders.0\0");
        let h = &b[1024..1536];
        assert_eq!((&h[..2], h[156]), (&b".\0"[..], b'5'));
        assert_eq!(&h[100..124], b"0000700\x000000005\x000000006\x00");

        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        std::fs::write(&archive, &b).unwrap();
        let listed = run(Command::new("tar")
            .args(["-tvf"])
            .arg(&archive)
            .arg("--numeric-owner"));
        let first = listed.lines().next().unwrap();
        assert!(first.starts_with("drwx------ 5/6 "), "{listed}");
        assert!(first.ends_with(" ./") || first.ends_with(" ."), "{listed}");
        let unpacked: Tree = unpack_layer(&store, &b[..], "", &Limits::default(), None).unwrap();
        assert_eq!(unpacked.root(), t.root());
    }

    #[test]
    fn gnu_tar_lists_and_extracts_it() {
        let (_d, store) = store();
        let t = sample_tree(&store, true);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        std::fs::write(&archive, tar_bytes(&t, &store, &[("LINUXKIT.source", "x")])).unwrap();
        let listing = run(Command::new("tar")
            .args(["-tvf"])
            .arg(&archive)
            .arg("--numeric-owner"));
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), t.len());
        for (line, e) in lines.iter().zip(t.iter()) {
            let mut words = line.split_whitespace();
            let perms = words.next().unwrap();
            let tc = if matches!(e.kind, EntryKind::Hardlink { .. }) {
                'h'
            } else {
                type_char(&t, e)
            };
            assert_eq!(perms, perm_string(tc, e.mode), "{line}");
            assert_eq!(
                words.next().unwrap(),
                format!("{}/{}", e.uid, e.gid),
                "{line}"
            );
            let tail = match &e.kind {
                EntryKind::Symlink { target } => format!("{} -> {target}", e.path),
                EntryKind::Hardlink { target } => format!("{} link to {target}", e.path),
                _ => e.path.clone(),
            };
            assert!(line.ends_with(&tail), "{line} !~ {tail}");
        }
        let t = sample_tree(&store, false);
        std::fs::write(&archive, tar_bytes(&t, &store, &[])).unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        run(Command::new("tar")
            .args(["-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&out));
        assert_extracted_matches(&out, &t, &store);
    }

    #[test]
    fn round_trips_through_layer_unpack() {
        let (_d, store) = store();
        let mut t = sample_tree(&store, true);
        let mut f = Entry::file(
            "x/caps",
            blob(&store, b"bin"),
            Meta::new(0o755, 5_000_000, 3_000_000, -5),
        );
        f.xattrs.insert(
            "security.capability".into(),
            vec![1, 0, 0, 2, b'\n', 0, 0x20, 0xff],
        );
        f.xattrs.insert("user.ünïcode".into(), b"v=1".to_vec());
        f.pax
            .insert("LINUXKIT.location".into(), "services[1]".into());
        for e in [
            Entry::dir("x", M755),
            f,
            Entry::new("x/.wh.gone", EntryKind::Whiteout, M644),
        ] {
            t.insert(e).unwrap();
        }
        t.insert(Entry::symlink(
            format!("x/{}", "s".repeat(150)),
            "t".repeat(300),
            M644,
        ))
        .unwrap();
        t.insert(Entry::file("x/ünï", blob(&store, b"u"), M644))
            .unwrap();
        let bytes = tar_bytes(&t, &store, &[]);
        let back = unpack_layer(
            &store,
            &bytes[..],
            "application/vnd.oci.image.layer.v1.tar",
            &Limits::default(),
            None,
        )
        .unwrap();
        assert_eq!(back, t);
        let gz = crate::compress::Codec::Gzip { level: 6 }
            .compress(&bytes)
            .unwrap();
        assert_eq!(
            unpack_layer(&store, &gz[..], "", &Limits::default(), None).unwrap(),
            t
        );
        assert_eq!(bytes, tar_bytes(&t, &store, &[]), "deterministic");
    }

    #[test]
    fn refusals() {
        let (_d, store) = store();
        let mut w = TarWriter::new(Vec::new(), &store, &TarOptions::default());
        let e = w.append(&Entry::hardlink("l", "t", M644)).unwrap_err();
        assert!(matches!(e, TarError::LinkBeforeTarget { .. }), "{e}");
        let mut bad = Entry::dir("d", M755);
        bad.pax.insert("a=b".into(), "c".into());
        assert!(matches!(
            w.append(&bad),
            Err(TarError::InvalidPaxRecord { .. })
        ));
    }

    /// (name, type, mode, uid, gid, content, link) per entry.
    type Model = Vec<(String, char, u32, u64, u64, Vec<u8>, Option<String>)>;

    fn tar_model(bytes: &[u8]) -> Model {
        let mut out: Model = Vec::new();
        let mut contents: HashMap<String, Vec<u8>> = HashMap::new();
        for ent in tar::Archive::new(bytes).entries().unwrap() {
            let mut ent = ent.unwrap();
            let h = ent.header().clone();
            let name = String::from_utf8(ent.path_bytes().into_owned()).unwrap();
            let link = ent
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let mut data = Vec::new();
            ent.read_to_end(&mut data).unwrap();
            let (tc, link) = match h.entry_type().as_byte() {
                b'5' => ('d', None),
                b'2' => ('l', link.map(|l| format!("sym:{l}"))),
                b'1' => {
                    data = contents[link.as_ref().unwrap()].clone();
                    ('-', link.map(|l| format!("hard:{l}")))
                }
                b'3' => (
                    'c',
                    Some(format!(
                        "dev:{},{}",
                        h.device_major().unwrap().unwrap(),
                        h.device_minor().unwrap().unwrap()
                    )),
                ),
                b'4' => (
                    'b',
                    Some(format!(
                        "dev:{},{}",
                        h.device_major().unwrap().unwrap(),
                        h.device_minor().unwrap().unwrap()
                    )),
                ),
                b'6' => ('p', None),
                _ => ('-', None),
            };
            contents.insert(name.clone(), data.clone());
            out.push((
                name,
                tc,
                h.mode().unwrap() & 0o7777,
                h.uid().unwrap(),
                h.gid().unwrap(),
                data,
                link,
            ));
        }
        out
    }

    fn cpio_model(bytes: &[u8]) -> Model {
        let ents = parse_newc(bytes);
        let ents = &ents[..ents.len() - 1];
        let mut first_of: HashMap<u32, String> = HashMap::new();
        let mut data_of: HashMap<u32, Vec<u8>> = HashMap::new();
        for (name, f, data) in ents {
            first_of.entry(f[0]).or_insert_with(|| name.clone());
            if !data.is_empty() {
                data_of.insert(f[0], data.clone());
            }
        }
        ents.iter()
            .map(|(name, f, data)| {
                let (tc, link) = match f[1] & 0o170000 {
                    0o040000 => ('d', None),
                    0o120000 => (
                        'l',
                        Some(format!("sym:{}", String::from_utf8(data.clone()).unwrap())),
                    ),
                    0o020000 => ('c', Some(format!("dev:{},{}", f[9], f[10]))),
                    0o060000 => ('b', Some(format!("dev:{},{}", f[9], f[10]))),
                    0o010000 => ('p', None),
                    _ if first_of[&f[0]] != *name => {
                        ('-', Some(format!("hard:{}", first_of[&f[0]])))
                    }
                    _ => ('-', None),
                };
                let content = if tc == '-' {
                    data_of.get(&f[0]).cloned().unwrap_or_default()
                } else if tc == 'l' {
                    Vec::new()
                } else {
                    data.clone()
                };
                (
                    name.clone(),
                    tc,
                    f[1] & 0o7777,
                    u64::from(f[2]),
                    u64::from(f[3]),
                    content,
                    link,
                )
            })
            .collect()
    }

    #[test]
    fn tar_and_cpio_of_a_tree_agree_entry_for_entry() {
        let (_d, store) = store();
        let t = sample_tree(&store, true);
        let tar = tar_model(&tar_bytes(&t, &store, &[]));
        let cpio = cpio_model(
            &write_cpio(Vec::new(), &t, &store, &CpioOptions::default())
                .unwrap()
                .0,
        );
        assert_eq!(tar.len(), t.len());
        for (a, b) in tar.iter().zip(&cpio) {
            assert_eq!(a, b);
        }
        assert_eq!(tar, cpio);
    }
}
