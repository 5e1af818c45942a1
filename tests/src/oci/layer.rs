//! Layer tar streams written byte by byte, so fixtures can hold anything a hostile or old image
//! might: `..` and absolute names, long names as PAX or GNU records, whiteouts, devices.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use tar::{EntryType, Header};

use super::{Blob, Digest, Flavor, media_type};

/// How a layer's tar stream is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip, header mtime 0, no file name.
    #[default]
    Gzip,
    /// zstd, level 3, single frame.
    Zstd,
}

/// How names longer than the 100-byte ustar field are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TarFormat {
    /// ustar headers plus PAX `x` records (`path`, `linkpath`), as Go's archive/tar writes.
    #[default]
    Pax,
    /// GNU headers plus `././@LongLink` `L`/`K` entries, as GNU tar writes.
    Gnu,
}

/// What an [`Entry`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory; its name gets a trailing `/` in the archive.
    Dir,
    /// A regular file with this content.
    File(Vec<u8>),
    /// A symbolic link to this target, absolute or relative, stored verbatim.
    Symlink(String),
    /// A hard link to an earlier entry's archive name.
    HardLink(String),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One tar entry. `path` is written verbatim (no normalisation), so fixtures may use `./x`,
/// `/abs`, `../escape` or names longer than 100 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Archive name. Directories get a trailing `/` added when missing.
    pub path: String,
    /// Type and payload.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Extra PAX records written before the entry (e.g. `SCHILY.xattr.user.k`).
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(path: impl Into<String>, kind: EntryKind, mode: u32) -> Self {
        Self {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            pax: Vec::new(),
        }
    }

    /// A directory, mode 0755.
    pub fn dir(path: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Dir, 0o755)
    }

    /// A regular file, mode 0644.
    pub fn file(path: impl Into<String>, content: impl Into<Vec<u8>>) -> Self {
        Self::new(path, EntryKind::File(content.into()), 0o644)
    }

    /// A symlink, mode 0777.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Symlink(target.into()), 0o777)
    }

    /// A hard link to the archive name `target`, mode 0644.
    pub fn hardlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(path, EntryKind::HardLink(target.into()), 0o644)
    }

    /// A character device, mode 0600.
    pub fn char_device(path: impl Into<String>, major: u32, minor: u32) -> Self {
        Self::new(path, EntryKind::CharDevice { major, minor }, 0o600)
    }

    /// A block device, mode 0600.
    pub fn block_device(path: impl Into<String>, major: u32, minor: u32) -> Self {
        Self::new(path, EntryKind::BlockDevice { major, minor }, 0o600)
    }

    /// A fifo, mode 0644.
    pub fn fifo(path: impl Into<String>) -> Self {
        Self::new(path, EntryKind::Fifo, 0o644)
    }

    /// The whiteout that deletes `path` from lower layers: an empty file `dir/.wh.<name>`.
    pub fn whiteout(path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        let (dir, name) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        Self::file(format!("{dir}.wh.{name}"), Vec::new())
    }

    /// The opaque marker that hides everything below `dir` from lower layers:
    /// an empty file `dir/.wh..wh..opq`.
    pub fn opaque(dir: &str) -> Self {
        let dir = dir.trim_end_matches('/');
        if dir.is_empty() {
            Self::file(".wh..wh..opq", Vec::new())
        } else {
            Self::file(format!("{dir}/.wh..wh..opq"), Vec::new())
        }
    }

    /// Sets the permission bits.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Sets uid and gid.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets the modification time.
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    /// Adds a PAX record, e.g. `("SCHILY.xattr.security.capability", bytes)`.
    pub fn pax(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.pax.push((key.into(), value.into()));
        self
    }

    fn archive_name(&self) -> String {
        if self.kind == EntryKind::Dir && !self.path.ends_with('/') {
            format!("{}/", self.path)
        } else {
            self.path.clone()
        }
    }
}

/// A layer: entries in the order given, a tar format and a compression.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
    raw_tar: Option<Vec<u8>>,
    compression: Compression,
    format: TarFormat,
    media_type: Option<String>,
}

/// A layer as stored: its compressed blob and the digest of its uncompressed tar.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// Compressed bytes with the layer media type.
    pub blob: Blob,
    /// sha256 of the uncompressed tar (goes into the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
}

impl Layer {
    /// An empty gzip PAX layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer whose uncompressed tar is exactly `tar` (for hand-made or broken archives).
    pub fn from_tar(tar: Vec<u8>) -> Self {
        Self {
            raw_tar: Some(tar),
            ..Self::default()
        }
    }

    /// A layer holding the tree at `root`; see [`Layer::add_tree`].
    pub fn from_dir(root: &Path) -> anyhow::Result<Self> {
        Self::new().add_tree(root, "")
    }

    /// Sets the compression (default gzip).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the long-name format (default PAX).
    pub fn format(mut self, format: TarFormat) -> Self {
        self.format = format;
        self
    }

    /// Overrides the media type written in the manifest (e.g. to test unknown types).
    pub fn media_type(mut self, media_type: impl Into<String>) -> Self {
        self.media_type = Some(media_type.into());
        self
    }

    /// Appends an entry.
    pub fn entry(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Appends entries.
    pub fn entries(mut self, entries: impl IntoIterator<Item = Entry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// Appends a directory (0755).
    pub fn dir(self, path: &str) -> Self {
        self.entry(Entry::dir(path))
    }

    /// Appends a file (0644).
    pub fn file(self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.entry(Entry::file(path, content))
    }

    /// Appends an executable file (0755).
    pub fn executable(self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.entry(Entry::file(path, content).mode(0o755))
    }

    /// Appends a symlink.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(Entry::symlink(path, target))
    }

    /// Appends a hard link to an earlier entry.
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(Entry::hardlink(path, target))
    }

    /// Appends a whiteout for `path`.
    pub fn whiteout(self, path: &str) -> Self {
        self.entry(Entry::whiteout(path))
    }

    /// Appends an opaque marker for `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.entry(Entry::opaque(dir))
    }

    /// Appends the tree at `root` below `prefix` (`""` for the layer root), walking each
    /// directory in byte order of names. Modes and symlink targets are kept; owners become
    /// 0:0 and mtimes 0; files sharing an inode become hard links to the first one.
    pub fn add_tree(mut self, root: &Path, prefix: &str) -> anyhow::Result<Self> {
        let mut inodes = HashMap::new();
        let prefix = prefix.trim_end_matches('/');
        walk(root, prefix, &mut inodes, &mut self.entries)?;
        Ok(self)
    }

    /// The entries (empty for [`Layer::from_tar`]).
    pub fn entry_list(&self) -> &[Entry] {
        &self.entries
    }

    /// The uncompressed tar stream.
    pub fn tar_bytes(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(raw) = &self.raw_tar {
            return Ok(raw.clone());
        }
        write_tar(&self.entries, self.format)
    }

    /// Compresses the tar and computes digests, using `flavor`'s media types.
    pub fn to_blob(&self, flavor: Flavor) -> anyhow::Result<LayerBlob> {
        let tar = self.tar_bytes()?;
        let diff_id = Digest::of(&tar);
        let data = compress(&tar, self.compression)?;
        let media_type = match (&self.media_type, flavor, self.compression) {
            (Some(mt), _, _) => mt.as_str(),
            (None, Flavor::Oci, Compression::None) => media_type::OCI_LAYER_TAR,
            (None, Flavor::Oci, Compression::Gzip) => media_type::OCI_LAYER_GZIP,
            (None, Flavor::Oci, Compression::Zstd) => media_type::OCI_LAYER_ZSTD,
            (None, Flavor::Docker, Compression::None) => media_type::DOCKER_LAYER_TAR,
            (None, Flavor::Docker, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
            (None, Flavor::Docker, Compression::Zstd) => media_type::DOCKER_LAYER_ZSTD,
        };
        Ok(LayerBlob {
            blob: Blob::new(media_type, data),
            diff_id,
        })
    }
}

/// Compresses `data` deterministically.
pub(crate) fn compress(data: &[u8], compression: Compression) -> anyhow::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            Ok(encoder.finish()?)
        }
        Compression::Zstd => Ok(zstd::encode_all(data, 3)?),
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    inodes: &mut HashMap<(u64, u64), String>,
    out: &mut Vec<Entry>,
) -> anyhow::Result<()> {
    let mut children = fs_err::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()?;
    children.sort();
    for name in children {
        let host = dir.join(&name);
        let name = name
            .to_str()
            .with_context(|| format!("non-UTF-8 name in {}", host.display()))?;
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs_err::symlink_metadata(&host)?;
        let mode = meta.mode() & 0o7777;
        let file_type = meta.file_type();
        if file_type.is_dir() {
            out.push(Entry::dir(path.clone()).mode(mode));
            walk(&host, &path, inodes, out)?;
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(&host)?;
            let target = target
                .to_str()
                .with_context(|| format!("non-UTF-8 link target in {}", host.display()))?;
            out.push(Entry::symlink(path, target));
        } else if file_type.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = inodes.get(&key) {
                    out.push(Entry::hardlink(path, first.clone()).mode(mode));
                    continue;
                }
                inodes.insert(key, path.clone());
            }
            out.push(Entry::file(path, fs_err::read(&host)?).mode(mode));
        } else if file_type.is_fifo() {
            out.push(Entry::fifo(path).mode(mode));
        } else {
            bail!("unsupported file type at {}", host.display());
        }
    }
    Ok(())
}

/// Writes `entries` as a tar stream with two zero blocks at the end.
pub(crate) fn write_tar(entries: &[Entry], format: TarFormat) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        write_entry(&mut builder, entry, format)
            .with_context(|| format!("writing tar entry {:?}", entry.path))?;
    }
    Ok(builder.into_inner()?)
}

fn write_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    entry: &Entry,
    format: TarFormat,
) -> anyhow::Result<()> {
    let name = entry.archive_name();
    let link = match &entry.kind {
        EntryKind::Symlink(target) | EntryKind::HardLink(target) => Some(target.as_str()),
        _ => None,
    };
    let mut records = entry.pax.clone();
    match format {
        TarFormat::Pax => {
            if name.len() > 100 {
                records.push(("path".to_owned(), name.as_bytes().to_vec()));
            }
            if let Some(link) = link.filter(|l| l.len() > 100) {
                records.push(("linkpath".to_owned(), link.as_bytes().to_vec()));
            }
        }
        TarFormat::Gnu => {
            if name.len() > 100 {
                append_gnu_long(builder, b'L', name.as_bytes())?;
            }
            if let Some(link) = link.filter(|l| l.len() > 100) {
                append_gnu_long(builder, b'K', link.as_bytes())?;
            }
        }
    }
    if !records.is_empty() {
        let data = pax_records(&records);
        let mut header = Header::new_ustar();
        let base = name.trim_end_matches('/');
        let base = base.rsplit('/').next().unwrap_or(base);
        set_raw(
            &mut header.as_old_mut().name,
            format!("PaxHeaders.0/{base}").as_bytes(),
        );
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_entry_type(EntryType::XHeader);
        header.set_cksum();
        builder.append(&header, data.as_slice())?;
    }

    let mut header = match format {
        TarFormat::Pax => Header::new_ustar(),
        TarFormat::Gnu => Header::new_gnu(),
    };
    set_raw(&mut header.as_old_mut().name, name.as_bytes());
    if let Some(link) = link {
        set_raw(&mut header.as_old_mut().linkname, link.as_bytes());
    }
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    let (entry_type, content): (EntryType, &[u8]) = match &entry.kind {
        EntryKind::Dir => (EntryType::Directory, &[]),
        EntryKind::File(content) => (EntryType::Regular, content),
        EntryKind::Symlink(_) => (EntryType::Symlink, &[]),
        EntryKind::HardLink(_) => (EntryType::Link, &[]),
        EntryKind::CharDevice { .. } => (EntryType::Char, &[]),
        EntryKind::BlockDevice { .. } => (EntryType::Block, &[]),
        EntryKind::Fifo => (EntryType::Fifo, &[]),
    };
    header.set_entry_type(entry_type);
    header.set_size(content.len() as u64);
    if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } =
        entry.kind
    {
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
    }
    header.set_cksum();
    builder.append(&header, content)?;
    Ok(())
}

/// Copies `value` into a fixed header field, truncating, NUL-padding the rest.
fn set_raw(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    field[n..].fill(0);
}

fn append_gnu_long(
    builder: &mut tar::Builder<Vec<u8>>,
    kind: u8,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut header = Header::new_gnu();
    set_raw(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_size(value.len() as u64 + 1);
    header.set_entry_type(EntryType::new(kind));
    header.set_cksum();
    let mut data = value.to_vec();
    data.push(0);
    builder.append(&header, data.as_slice())?;
    Ok(())
}

/// Encodes PAX records: each is `"<len> <key>=<value>\n"` where `len` counts the whole record.
fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body_len = 1 + key.len() + 1 + value.len() + 1;
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn read_back(tar: &[u8]) -> Vec<(String, EntryType, Option<String>, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let link = e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap());
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, link, data)
            })
            .collect()
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let out = pax_records(&[("path".into(), vec![b'a'; 3])]);
        assert_eq!(out, b"12 path=aaa\n");
        let out = pax_records(&[("path".into(), vec![b'a'; 90])]);
        let text = String::from_utf8(out).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), text.len());
    }

    #[test]
    fn long_names_survive_in_both_formats() {
        let long = format!("{}/file", "d".repeat(150));
        let target = format!("/{}", "t".repeat(120));
        for format in [TarFormat::Pax, TarFormat::Gnu] {
            let tar = write_tar(
                &[
                    Entry::file(long.clone(), "x"),
                    Entry::symlink("link", target.clone()),
                    Entry::hardlink("hard", long.clone()),
                ],
                format,
            )
            .unwrap();
            let back = read_back(&tar);
            assert_eq!(back[0].0, long, "{format:?}");
            assert_eq!(back[0].3, b"x");
            assert_eq!(back[1].2.as_deref(), Some(target.as_str()));
            assert_eq!(back[2].1, EntryType::Link);
            assert_eq!(back[2].2.as_deref(), Some(long.as_str()));
        }
    }

    #[test]
    fn gnu_tar_reads_long_names_xattrs_and_devices() {
        let long = format!("{}/file", "d".repeat(150));
        for format in [TarFormat::Pax, TarFormat::Gnu] {
            let tar = write_tar(
                &[
                    Entry::file(long.clone(), "x")
                        .owner(1000, 1000)
                        .mode(0o4755)
                        .pax("SCHILY.xattr.user.lkb", "v"),
                    Entry::symlink("link", format!("../{}", "t".repeat(120))),
                    Entry::char_device("dev/null", 1, 3),
                ],
                format,
            )
            .unwrap();
            let mut child = std::process::Command::new("tar")
                .args(["--numeric-owner", "--xattrs", "-tvf", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&tar).unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{format:?}");
            let listing = String::from_utf8(output.stdout).unwrap();
            let lines: Vec<&str> = listing.lines().collect();
            // `*` marks an entry with xattrs.
            assert!(lines[0].starts_with("-rwsr-xr-x* 1000/1000 "), "{listing}");
            assert!(lines[0].ends_with(&format!(" {long}")), "{listing}");
            assert!(
                lines[1].ends_with(&format!(" link -> ../{}", "t".repeat(120))),
                "{listing}"
            );
            assert!(lines[2].starts_with("crw-------"), "{listing}");
            assert!(lines[2].contains(" 1,3 "), "{listing}");
        }
    }

    #[test]
    fn whiteouts_and_verbatim_names() {
        assert_eq!(Entry::whiteout("etc/foo").path, "etc/.wh.foo");
        assert_eq!(Entry::whiteout("foo").path, ".wh.foo");
        assert_eq!(Entry::opaque("etc/").path, "etc/.wh..wh..opq");
        let tar = write_tar(
            &[
                Entry::dir("./"),
                Entry::dir("etc"),
                Entry::file("../escape", "e"),
                Entry::file("/abs", "a"),
                Entry::char_device("dev/null", 1, 3),
            ],
            TarFormat::Pax,
        )
        .unwrap();
        let names: Vec<_> = read_back(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["./", "etc/", "../escape", "/abs", "dev/null"]);
    }

    #[test]
    fn compression_is_deterministic_and_decodes() {
        let tar = write_tar(&[Entry::file("a", "hello")], TarFormat::Pax).unwrap();
        let gz = compress(&tar, Compression::Gzip).unwrap();
        assert_eq!(gz, compress(&tar, Compression::Gzip).unwrap());
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar);
        let zst = compress(&tar, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(zst.as_slice()).unwrap(), tar);
    }

    #[test]
    fn add_tree_keeps_links_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir(root.join("bin")).unwrap();
        fs_err::write(root.join("bin/busybox"), "bb").unwrap();
        fs_err::hard_link(root.join("bin/busybox"), root.join("bin/zz")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let layer = Layer::from_dir(root).unwrap();
        let names: Vec<_> = layer.entry_list().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, ["bin", "bin/busybox", "bin/sh", "bin/zz"]);
        assert_eq!(
            layer.entry_list()[3].kind,
            EntryKind::HardLink("bin/busybox".into())
        );
        assert_eq!(
            layer.entry_list()[2].kind,
            EntryKind::Symlink("busybox".into())
        );
    }
}
