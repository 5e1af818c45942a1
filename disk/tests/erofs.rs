//! EROFS images checked with independent readers: erofs-utils 1.5 (`fsck.erofs`, its
//! `--extract`, `dump.erofs`) always, and Linux's erofs driver in an ignored test that needs
//! root and loop devices (`cargo test -p lkb-disk --test erofs -- --ignored`).
//!
//! Oracle limits, from erofs-utils 1.5's source: `--extract` writes no extended attributes and
//! extracts hard links as separate files (so attributes and link sharing are checked with
//! `dump.erofs --path` and the kernel), and it `chmod`s before `lchown`, which clears setuid
//! (and setgid on group-executable files), so extracted modes lose those bits; `dump.erofs`
//! and the kernel show them.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use lkb_disk::erofs::{ErofsOptions, ErofsPlan, plan};
use lkb_disk::{Data, FileSink, FsEntry, FsKind};

const T0: i64 = 1_700_000_000;
const MANY: usize = 2100;

fn entry(path: &str, kind: FsKind, mode: u32) -> FsEntry {
    FsEntry {
        path: path.to_string(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: T0,
        link_group: None,
        xattrs: Vec::new(),
    }
}

fn bytes(b: &[u8]) -> FsKind {
    FsKind::File(Data::Bytes(b.to_vec()))
}

fn options() -> ErofsOptions {
    ErofsOptions {
        build_time: T0,
        uuid: *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef",
        volume_name: "lkb-test".into(),
    }
}

/// Bytes that differ at every offset (a shifted block would show).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// A POSIX access ACL in the xattr format (version 2, then tag, permissions, id):
/// `user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1000),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// Every kind, odd modes, large ids, times, hard links, attributes, sizes around the block
/// size, a large streamed file, a multi-block directory, deep missing parents, long names.
fn fixture(dir: &Path) -> Vec<FsEntry> {
    let big = dir.join("big");
    std::fs::write(&big, pattern((1 << 20) + 12345, 3)).unwrap();
    let shared = dir.join("shared");
    std::fs::write(&shared, pattern(10_000, 5)).unwrap();
    let long = "n".repeat(255);

    let mut v = vec![
        FsEntry {
            xattrs: vec![("user.comment".into(), b"root dir".to_vec())],
            ..entry("etc", FsKind::Dir, 0o755)
        },
        FsEntry {
            xattrs: vec![
                ("trusted.overlay.opaque".into(), b"y".to_vec()),
                ("user.mime_type".into(), b"text/plain".to_vec()),
            ],
            ..entry(
                "etc/passwd",
                bytes(b"root:x:0:0:root:/root:/bin/sh\n"),
                0o644,
            )
        },
        FsEntry {
            xattrs: vec![(
                "security.capability".into(),
                vec![
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            )],
            ..entry("bin/su", bytes(b"\x7fELF not really"), 0o4755)
        },
        entry("bin/sgid", bytes(b"g"), 0o2755),
        FsEntry {
            xattrs: vec![("system.posix_acl_access".into(), acl())],
            ..entry("acl", bytes(b"with an access ACL"), 0o644)
        },
        entry("tmp", FsKind::Dir, 0o1777),
        FsEntry {
            uid: 100_000,
            gid: 100_001,
            mtime: T0 + 12_345,
            ..entry("home/user", FsKind::Dir, 0o700)
        },
        FsEntry {
            uid: 65_536,
            gid: 70_000,
            mtime: T0 - 999,
            ..entry("home/user/.profile", bytes(b"export PS1='$ '\n"), 0o600)
        },
        FsEntry {
            mtime: -86_400,
            ..entry("old", bytes(b"before 1970"), 0o444)
        },
        entry("nothing", bytes(b""), 0o000),
        entry("sizes/empty", bytes(b""), 0o644),
        entry("sizes/one", bytes(b"1"), 0o644),
        entry(
            "sizes/block",
            FsKind::File(Data::Bytes(pattern(4096, 1))),
            0o644,
        ),
        entry(
            "sizes/block+1",
            FsKind::File(Data::Bytes(pattern(4097, 2))),
            0o644,
        ),
        entry(
            "sizes/3-blocks-less-1",
            FsKind::File(Data::Bytes(pattern(3 * 4096 - 1, 4))),
            0o755,
        ),
        entry(
            "sizes/big",
            FsKind::File(Data::File {
                path: big,
                len: (1 << 20) + 12345,
            }),
            0o644,
        ),
        FsEntry {
            xattrs: vec![
                ("user.a".into(), pattern(3000, 7)),
                ("user.b".into(), pattern(3000, 8)),
            ],
            ..entry("sizes/huge-xattrs", bytes(b"tiny"), 0o644)
        },
        entry("deep/a/b/c/d/e/file", bytes(b"deep"), 0o644),
        entry(&long, bytes(b"long name"), 0o644),
        entry(
            &format!("{}/{long}", "d".repeat(255)),
            bytes(b"longer"),
            0o644,
        ),
        entry("links/rel", FsKind::Symlink("../etc/passwd".into()), 0o777),
        entry("links/abs", FsKind::Symlink("/etc/passwd".into()), 0o777),
        entry("links/dangling", FsKind::Symlink("nowhere".into()), 0o777),
        entry(
            "links/long",
            FsKind::Symlink("x/".repeat(2046) + "y"),
            0o777,
        ),
        entry("dev/null", FsKind::CharDev { major: 1, minor: 3 }, 0o666),
        entry("dev/sda1", FsKind::BlockDev { major: 8, minor: 1 }, 0o660),
        entry(
            "dev/wide",
            FsKind::CharDev {
                major: 300,
                minor: 70_000,
            },
            0o600,
        ),
        entry("dev/fifo", FsKind::Fifo, 0o644),
        entry("dev/socket", FsKind::Socket, 0o755),
    ];
    for (path, data) in [
        ("hl/a", bytes(b"linked")),
        ("hl/b", bytes(b"linked")),
        ("hl/sub/c", bytes(b"linked")),
    ] {
        v.push(FsEntry {
            link_group: Some(1),
            xattrs: vec![("user.link".into(), b"1".to_vec())],
            ..entry(path, data, 0o640)
        });
    }
    for path in ["hl/big1", "hl/big2"] {
        v.push(FsEntry {
            link_group: Some(2),
            ..entry(
                path,
                FsKind::File(Data::File {
                    path: shared.clone(),
                    len: 10_000,
                }),
                0o644,
            )
        });
    }
    for i in 0..MANY {
        let name = format!("many/entry-{i:05}-{}", "m".repeat(i % 40));
        v.push(entry(&name, bytes(&[i as u8; 3][..i % 4]), 0o644));
    }
    v.push(entry("many/sub", FsKind::Dir, 0o755));
    v
}

/// The tree a reader should see: the entries plus the directories the writer adds.
fn expected(entries: &[FsEntry]) -> BTreeMap<String, FsEntry> {
    let mut tree: BTreeMap<String, FsEntry> = entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            tree.entry(parent.to_string())
                .or_insert_with(|| entry(parent, FsKind::Dir, 0o755));
            p = parent;
        }
    }
    tree.entry(String::new())
        .or_insert_with(|| entry("", FsKind::Dir, 0o755));
    tree
}

fn write(plan: &ErofsPlan, path: &Path) {
    let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
    plan.write(&mut sink).unwrap();
    assert_eq!(sink.position(), plan.size());
    sink.finish().unwrap();
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (install erofs-utils): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The word after `label` in dump.erofs output.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    let at = out
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in\n{out}"));
    out[at + label.len()..].split_whitespace().next().unwrap()
}

/// Every path under `root`, relative, `""` for the root itself.
fn walk(root: &Path) -> BTreeMap<String, std::fs::Metadata> {
    let mut found = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for child in std::fs::read_dir(&path).unwrap() {
                let name = child.unwrap().file_name().into_string().unwrap();
                stack.push(if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                });
            }
        }
        found.insert(rel, meta);
    }
    found
}

fn type_bits(kind: &FsKind) -> u32 {
    match kind {
        FsKind::Dir => 0o040_000,
        FsKind::File(_) => 0o100_000,
        FsKind::Symlink(_) => 0o120_000,
        FsKind::CharDev { .. } => 0o020_000,
        FsKind::BlockDev { .. } => 0o060_000,
        FsKind::Fifo => 0o010_000,
        FsKind::Socket => 0o140_000,
    }
}

/// glibc's `major`/`minor` of a 64-bit `st_rdev`.
fn major_minor(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Checks a mounted or extracted tree against the entries: the same paths, and for each its
/// type, owner, mtime, content, symlink target and device number. `mode_mask` takes away
/// the mode bits the reader is known not to keep.
fn compare_tree(root: &Path, tree: &BTreeMap<String, FsEntry>, mode_mask: impl Fn(u32) -> u32) {
    let found = walk(root);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        tree.keys().collect::<Vec<_>>(),
        "the same paths"
    );
    for (path, e) in tree {
        let meta = &found[path];
        let full = root.join(path);
        let is_link = matches!(e.kind, FsKind::Symlink(_));
        let want_mode = type_bits(&e.kind) | if is_link { 0o777 } else { mode_mask(e.mode) };
        assert_eq!(meta.mode(), want_mode, "{path:?} mode {:o}", meta.mode());
        assert_eq!((meta.uid(), meta.gid()), (e.uid, e.gid), "{path:?} owner");
        assert_eq!(
            (meta.mtime(), meta.mtime_nsec()),
            (e.mtime, 0),
            "{path:?} mtime"
        );
        match &e.kind {
            FsKind::File(data) => {
                assert_eq!(meta.len(), data.len(), "{path:?} size");
                assert!(
                    std::fs::read(&full).unwrap() == data.read_all().unwrap(),
                    "{path:?} content"
                );
            }
            FsKind::Symlink(target) => {
                assert_eq!(std::fs::read_link(&full).unwrap(), PathBuf::from(target));
            }
            FsKind::CharDev { major, minor } | FsKind::BlockDev { major, minor } => {
                assert_eq!(major_minor(meta.rdev()), (*major, *minor), "{path:?} rdev");
            }
            FsKind::Fifo => assert!(meta.file_type().is_fifo()),
            FsKind::Socket => assert!(meta.file_type().is_socket()),
            FsKind::Dir => {}
        }
    }
}

/// Plans and writes the fixture; returns the plan, the image, the expected tree and the
/// temporary directory that holds them.
fn build() -> (
    ErofsPlan,
    PathBuf,
    BTreeMap<String, FsEntry>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let entries = fixture(dir.path());
    let tree = expected(&entries);
    let plan = plan(entries, options()).unwrap();
    let image = dir.path().join("image.erofs");
    write(&plan, &image);
    (plan, image, tree, dir)
}

#[test]
fn fsck_erofs_extracts_what_was_planned() {
    let (plan, image, tree, dir) = build();
    let image_s = image.to_str().unwrap();
    run("fsck.erofs", &[image_s]);

    let out = dir.path().join("out");
    run(
        "fsck.erofs",
        &[&format!("--extract={}", out.display()), image_s],
    );
    // fsck.erofs 1.5 chmods, then lchowns, which clears setuid (and setgid when group may
    // execute) on files.
    let extracted_mode = |m: u32| {
        let m = if m & 0o4000 != 0 { m & !0o4000 } else { m };
        if m & 0o2010 == 0o2010 { m & !0o2000 } else { m }
    };
    let files: BTreeMap<_, _> = tree
        .iter()
        .map(|(p, e)| {
            let keep = matches!(e.kind, FsKind::Dir);
            let e = FsEntry {
                mode: if keep { e.mode } else { extracted_mode(e.mode) },
                ..e.clone()
            };
            (p.clone(), e)
        })
        .collect();
    compare_tree(&out, &files, |m| m);

    // The superblock: counts as planned, UUID and time from the options.
    let sb = run("dump.erofs", &["-s", image_s]);
    let linked = tree.values().filter(|e| e.link_group.is_some()).count();
    let groups: std::collections::BTreeSet<u32> =
        tree.values().filter_map(|e| e.link_group).collect();
    let inodes = tree.len() - linked + groups.len();
    assert_eq!(field(&sb, "inode count:"), inodes.to_string(), "{sb}");
    assert_eq!(plan.inode_count(), inodes as u64);
    assert_eq!(
        field(&sb, "Filesystem blocks:"),
        (plan.size() / 4096).to_string()
    );
    assert_eq!(field(&sb, "root nid:"), "36");
    assert_eq!(field(&sb, "UUID:"), "01234567-89ab-cdef-0123-456789abcdef");
    assert!(
        sb.contains("features:                          mtime"),
        "{sb}"
    );
    assert!(!sb.contains("sb_csum") && !sb.contains("lz4"), "{sb}");

    // Hard links: one nid per group, the group's size as link count.
    let dump = |path: &str| run("dump.erofs", &[&format!("--path=/{path}"), image_s]);
    for (group, members) in [
        (1, ["hl/a", "hl/b", "hl/sub/c"].as_slice()),
        (2, &["hl/big1", "hl/big2"]),
    ] {
        let nids: Vec<String> = members
            .iter()
            .map(|m| {
                let d = dump(m);
                assert_eq!(field(&d, "Links:"), members.len().to_string(), "{m}");
                field(&d, "NID:").to_string()
            })
            .collect();
        assert!(
            nids.iter().all(|n| *n == nids[0]),
            "group {group}: {nids:?}"
        );
    }
    // Exact modes, which extraction loses and dump.erofs 1.5 prints without the setuid,
    // setgid and sticky bits: `i_mode` is at byte 4 of the inode dump.erofs finds.
    let img = std::fs::read(&image).unwrap();
    for (path, mode) in [
        ("bin/su", 0o104_755),
        ("bin/sgid", 0o102_755),
        ("tmp", 0o041_777),
        ("nothing", 0o100_000),
    ] {
        let d = dump(path);
        let access = field(&d, "Access:").split('/').next().unwrap();
        assert_eq!(access, format!("{:04o}", mode & 0o777), "{path}");
        let at = field(&d, "NID:").parse::<usize>().unwrap() * 32 + 4;
        assert_eq!(u16::from_le_bytes([img[at], img[at + 1]]), mode, "{path}");
    }
    for (path, e) in &tree {
        if e.xattrs.is_empty() {
            continue;
        }
        let size: usize = 12
            + e.xattrs
                .iter()
                .map(|(name, value)| {
                    let suffix = if name.starts_with("system.posix_acl_") {
                        ""
                    } else {
                        name.split_once('.').unwrap().1
                    };
                    (4 + suffix.len() + value.len()).next_multiple_of(4)
                })
                .sum::<usize>();
        assert_eq!(
            field(&dump(path), "Xattr size:"),
            size.to_string(),
            "{path}"
        );
    }
    // Directory link counts: 2 + subdirectories.
    let root = dump("");
    assert_eq!(field(&root, "NID:"), "36");
    let subdirs = tree
        .keys()
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .filter(|p| matches!(tree[*p].kind, FsKind::Dir))
        .count();
    assert_eq!(field(&root, "Links:"), (2 + subdirs).to_string());
    let many = dump("many");
    assert_eq!(field(&many, "Links:"), "3");
    let many_size: usize = [".", ".."]
        .iter()
        .map(|n| n.len())
        .chain(
            tree.keys()
                .filter_map(|p| p.strip_prefix("many/"))
                .map(str::len),
        )
        .map(|n| 12 + n)
        .sum();
    let many_blocks = field(&many, "Size:")
        .parse::<usize>()
        .unwrap()
        .div_ceil(4096);
    assert!(
        many_blocks >= many_size.div_ceil(4096) && many_blocks > 10,
        "{many}"
    );
}

#[test]
fn erofs_writes_are_reproducible_and_sized_as_planned() {
    let (plan, image, _tree, dir) = build();
    let again = dir.path().join("again.erofs");
    write(&plan, &again);
    let first = std::fs::read(&image).unwrap();
    assert_eq!(first.len() as u64, plan.size());
    assert!(first == std::fs::read(&again).unwrap(), "same bytes twice");
    let mut memory = Vec::new();
    plan.write(&mut memory).unwrap();
    assert!(first == memory, "a file sink's holes read back as zeros");
}

/// Linux's own driver reads the image: every path, mode (setuid included), owner, time,
/// content, device number, extended attribute, hard link and directory link count.
#[test]
#[ignore = "mounts with the kernel's erofs driver: needs root, loop devices and erofs in the kernel"]
fn the_kernel_reads_the_erofs_image() {
    let (_plan, image, tree, dir) = build();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(
        "mount",
        &[
            "-t",
            "erofs",
            "-o",
            "loop,ro",
            image.to_str().unwrap(),
            mnt.to_str().unwrap(),
        ],
    );
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);

    compare_tree(&mnt, &tree, |m| m);
    let mut inode_of_group: BTreeMap<u32, u64> = BTreeMap::new();
    let mut buf = vec![0u8; 1 << 16];
    for (path, e) in &tree {
        let full = mnt.join(path);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        if let Some(g) = e.link_group {
            let ino = *inode_of_group.entry(g).or_insert(meta.ino());
            assert_eq!(meta.ino(), ino, "{path:?} shares its group's inode");
            let members = tree.values().filter(|x| x.link_group == Some(g)).count();
            assert_eq!(meta.nlink(), members as u64, "{path:?}");
        }
        if let FsKind::Dir = e.kind {
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            let subdirs = tree
                .iter()
                .filter(|(p, x)| {
                    matches!(x.kind, FsKind::Dir)
                        && p.strip_prefix(&prefix)
                            .is_some_and(|r| !r.is_empty() && !r.contains('/'))
                })
                .count();
            assert_eq!(meta.nlink(), 2 + subdirs as u64, "{path:?} nlink");
        }
        if matches!(e.kind, FsKind::Symlink(_)) {
            continue;
        }
        let n = rustix::fs::listxattr(&full, &mut buf[..]).unwrap();
        let mut names: Vec<String> = buf[..n]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        names.sort();
        let want: Vec<&String> = e.xattrs.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            want,
            "{path:?} xattr names"
        );
        for (name, value) in &e.xattrs {
            let n = rustix::fs::getxattr(&full, name.as_str(), &mut buf[..]).unwrap();
            assert!(buf[..n] == value[..], "{path:?} {name}");
        }
    }
}
