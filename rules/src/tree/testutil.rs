//! Test helpers shared by the tree, layer, cpio and tarball tests: a scratch store and a
//! byte-level tar builder that can express what real writers never produce (escaping names,
//! raw PAX records, GNU long names).

use std::process::Command;

use lkb_store::{BlobRef, Store};

use tar::{EntryType, Header};

use super::{Entry, EntryKind, Meta, Tree};

pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

pub(crate) fn blob(store: &Store, data: &[u8]) -> BlobRef {
    store.put_bytes(data).expect("put blob")
}

pub(crate) const M644: Meta = Meta {
    mode: 0o644,
    uid: 0,
    gid: 0,
    mtime: 1_492_533_000,
};
pub(crate) const M755: Meta = Meta {
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtime: 1_492_533_000,
};

pub(crate) fn tree_of(entries: Vec<Entry>) -> Tree {
    let mut t = Tree::new();
    for e in entries {
        t.insert(e).expect("valid entry");
    }
    t
}

pub(crate) fn file(store: &Store, path: &str, data: &[u8]) -> Entry {
    Entry::file(path, blob(store, data), M644)
}

pub(crate) fn kinds(t: &Tree) -> Vec<(String, String)> {
    t.iter()
        .map(|e| {
            let k = match &e.kind {
                EntryKind::Hardlink { target } => format!("link>{target}"),
                EntryKind::Symlink { target } => format!("sym>{target}"),
                k => k.name().to_string(),
            };
            (e.path.clone(), k)
        })
        .collect()
}

/// Builds tar bytes one raw header at a time.
#[derive(Default)]
pub(crate) struct TarBuf {
    pub(crate) bytes: Vec<u8>,
}

impl TarBuf {
    pub(crate) fn raw(
        &mut self,
        name: &[u8],
        typ: u8,
        data: &[u8],
        tweak: impl FnOnce(&mut Header),
    ) {
        let mut h = Header::new_ustar();
        let n = name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        h.set_entry_type(EntryType::new(typ));
        h.set_mode(if typ == b'5' { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_492_533_000);
        h.set_size(data.len() as u64);
        tweak(&mut h);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name.as_bytes(), b'0', data, |_| {});
        self
    }
    pub(crate) fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(name.as_bytes(), b'5', b"", |_| {});
        self
    }
    pub(crate) fn link(&mut self, typ: u8, name: &str, target: &str) -> &mut Self {
        self.raw(name.as_bytes(), typ, b"", |h| {
            let t = target.as_bytes();
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        });
        self
    }
    /// A PAX extended header with the given records, for the next entry.
    pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len.to_string().len() + rest > len {
                len += 1;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        self.raw(b"PaxHeaders.0/x", b'x', &data, |_| {});
        self
    }
    pub(crate) fn gnu_long_name(&mut self, name: &str) -> &mut Self {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        self.raw(b"././@LongLink", b'L', &data, |_| {});
        self
    }
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.bytes);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

/// Runs a command; returns stdout, panicking with stderr on failure.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The `ls -l` style permission string of an entry (`drwxr-xr-x`, `-rwsr-xr-x`, …).
pub(crate) fn perm_string(type_char: char, mode: u32) -> String {
    let mut s = String::from(type_char);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o40, 'r'),
        (0o20, 'w'),
        (0o10, 'x'),
        (0o4, 'r'),
        (0o2, 'w'),
        (0o1, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let special = match i {
            2 => (mode & 0o4000 != 0).then_some('s'),
            5 => (mode & 0o2000 != 0).then_some('s'),
            8 => (mode & 0o1000 != 0).then_some('t'),
            _ => None,
        };
        let set = mode & bit != 0;
        s.push(match (special, set) {
            (Some(c), true) => c,
            (Some(c), false) => c.to_ascii_uppercase(),
            (None, true) => *c,
            (None, false) => '-',
        });
    }
    s
}

/// The type character `ls -l` shows for an entry (hard links show as their target's type).
pub(crate) fn type_char(t: &Tree, e: &Entry) -> char {
    match &t.resolve(&e.path).expect("resolves").kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::Char { .. } => 'c',
        EntryKind::Block { .. } => 'b',
        EntryKind::Fifo => 'p',
        _ => '-',
    }
}

/// A tree exercising every kind the archive writers handle. With `devices`, it also has
/// device nodes (which an unprivileged extraction cannot create).
pub(crate) fn sample_tree(store: &Store, devices: bool) -> Tree {
    let long_dir = format!("l/{}", "a".repeat(200));
    let long_file = format!("{long_dir}/{}", "b".repeat(120));
    let busybox: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut entries = vec![
        Entry::dir("bin", M755),
        Entry::file(
            "bin/busybox",
            blob(store, &busybox),
            Meta::new(0o4755, 0, 0, 1_600_000_000),
        ),
        Entry::hardlink("bin/sh", "bin/busybox", M755),
        Entry::hardlink("bin/ls", "bin/busybox", M755),
        Entry::symlink("bin/rel", "busybox", Meta::new(0o777, 0, 0, 1_492_533_000)),
        Entry::dir("etc", Meta::new(0o750, 1000, 100, 1_492_533_000)),
        Entry::file(
            "etc/passwd",
            blob(store, b"root:x:0:0:root:/root:/bin/sh\n"),
            Meta::new(0o640, 1000, 100, 1),
        ),
        Entry::symlink(
            "etc/mtab",
            "/proc/mounts",
            Meta::new(0o777, 0, 0, 1_492_533_000),
        ),
        Entry::file("empty", blob(store, b""), M644),
        Entry::new(
            "fifo",
            EntryKind::Fifo,
            Meta::new(0o600, 0, 0, 1_492_533_000),
        ),
        Entry::dir("l", M755),
        Entry::dir(long_dir, M755),
        Entry::file(long_file, blob(store, b"long"), M644),
        Entry::file("a-b", blob(store, b"a-b"), M644),
        Entry::dir("a", M755),
        Entry::file("a/b", blob(store, b"a/b"), M644),
    ];
    if devices {
        entries.push(Entry::dir("dev", M755));
        entries.push(Entry::new(
            "dev/null",
            EntryKind::Char { major: 1, minor: 3 },
            Meta::new(0o666, 0, 0, 0),
        ));
        entries.push(Entry::new(
            "dev/sda",
            EntryKind::Block { major: 8, minor: 0 },
            Meta::new(0o660, 0, 6, 0),
        ));
    }
    let mut t = tree_of(entries);
    t.normalize_hardlinks().expect("links");
    t.check_complete().expect("complete");
    t
}

/// Compares an extracted directory with the tree (contents, link targets, hard-link inodes,
/// permissions, mtimes; owners only when running as root).
pub(crate) fn assert_extracted_matches(root: &std::path::Path, t: &Tree, store: &Store) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let as_root = run(Command::new("id").arg("-u")).trim() == "0";
    for e in t.iter() {
        let p = root.join(&e.path);
        let md = std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        let primary = t.resolve(&e.path).expect("resolves");
        match &primary.kind {
            EntryKind::File { .. } => {
                assert!(md.is_file(), "{}", e.path);
                assert_eq!(
                    std::fs::read(&p).unwrap(),
                    t.read_file(store, &e.path).unwrap(),
                    "{}",
                    e.path
                );
            }
            EntryKind::Dir => assert!(md.is_dir(), "{}", e.path),
            EntryKind::Symlink { target } => {
                assert_eq!(
                    std::fs::read_link(&p).unwrap().to_str(),
                    Some(target.as_str()),
                    "{}",
                    e.path
                );
                continue; // symlink permissions and times are not meaningful
            }
            _ => {}
        }
        if let EntryKind::Hardlink { target } = &e.kind {
            let tmd = std::fs::symlink_metadata(root.join(target)).unwrap();
            assert_eq!(md.ino(), tmd.ino(), "{} is a hard link to {target}", e.path);
        }
        assert_eq!(
            md.permissions().mode() & 0o7777,
            primary.mode,
            "mode of {}",
            e.path
        );
        if !primary.is_dir() {
            assert_eq!(md.mtime(), primary.mtime, "mtime of {}", e.path);
        }
        if as_root {
            assert_eq!(
                (md.uid(), md.gid()),
                (primary.uid, primary.gid),
                "owner of {}",
                e.path
            );
        }
    }
}
