//! Images checked by squashfs-tools' `unsquashfs` (listing, superblock, extraction as root).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::test_tools::run;

const T: i64 = 1_700_000_000;

fn entry(path: &str, kind: FsKind, mode: u32) -> FsEntry {
    FsEntry {
        path: path.into(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: T,
        link_group: None,
        xattrs: Vec::new(),
    }
}

fn file(path: &str, bytes: &[u8]) -> FsEntry {
    entry(path, FsKind::File(Data::Bytes(bytes.to_vec())), 0o644)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i} of a compressible file, {}\n", i * i).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn image(entries: Vec<FsEntry>, options: &SquashfsOptions, threads: usize) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let size = write_with_threads(entries, options, &mut out, threads).unwrap();
    let bytes = out.into_inner();
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(size % 4096, 0);
    bytes
}

/// Days since the epoch to the civil date (proleptic Gregorian).
fn civil(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// What `unsquashfs -lln` says of one path: mode string, owner, size (or `major,minor`),
/// time, symlink target.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    mode: String,
    owner: String,
    size: String,
    time: String,
    target: Option<String>,
}

fn listing(image: &Path) -> BTreeMap<String, Listed> {
    let out = run(Command::new("unsquashfs")
        .env("TZ", "UTC")
        .arg("-lln")
        .arg(image));
    let mut listed = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let t: Vec<&str> = line.split_whitespace().collect();
        // `major, minor`, or `major,minor` when both are wide.
        let (size, rest) = if t[2].ends_with(',') {
            (format!("{}{}", t[2], t[3]), &t[4..])
        } else {
            (t[2].to_string(), &t[3..])
        };
        let path = rest[2]
            .strip_prefix("squashfs-root")
            .unwrap()
            .trim_start_matches('/');
        let target = (rest.len() > 3).then(|| {
            assert_eq!(rest[3], "->", "{line}");
            rest[4..].join(" ")
        });
        listed.insert(
            path.to_string(),
            Listed {
                mode: t[0].to_string(),
                owner: t[1].to_string(),
                size,
                time: format!("{} {}", rest[0], rest[1]),
                target,
            },
        );
    }
    listed
}

/// `ls -l` mode string of an entry.
fn mode_string(e: &FsEntry) -> String {
    let kind = match e.kind {
        FsKind::Dir => 'd',
        FsKind::File(_) => '-',
        FsKind::Symlink(_) => 'l',
        FsKind::CharDev { .. } => 'c',
        FsKind::BlockDev { .. } => 'b',
        FsKind::Fifo => 'p',
        FsKind::Socket => 's',
    };
    let m = e.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char, unset: char| match (m & x != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't', 'T'),
    ]
    .into_iter()
    .collect()
}

fn xattrs(xs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    xs.iter()
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect()
}

/// A tree with every kind, odd modes and owners, hard links, xattrs, big, empty and sparse
/// files, a large directory, long names, and files read from disk under `dir`.
fn fixture(dir: &Path) -> Vec<FsEntry> {
    let mut e = vec![
        FsEntry {
            mtime: T - 5,
            xattrs: xattrs(&[("user.root", b"r")]),
            ..entry("", FsKind::Dir, 0o755)
        },
        entry("bin", FsKind::Dir, 0o755),
        entry(
            "bin/suid",
            FsKind::File(Data::Bytes(b"#!/bin/sh\n".to_vec())),
            0o4755,
        ),
        entry("bin/sgid", FsKind::File(Data::Bytes(b"x".to_vec())), 0o2711),
        entry("tmp", FsKind::Dir, 0o1777),
        file("etc/missing/parents/file.txt", b"deep\n"),
        FsEntry {
            uid: 100_000,
            gid: 200_000,
            mtime: 86_400 * 365,
            ..file("owned", b"mine")
        },
        FsEntry {
            mtime: -1000,
            ..file("time/before-1970", b"")
        },
        FsEntry {
            mtime: 1 << 33,
            ..file("time/after-2106", b"")
        },
        entry("dev/null", FsKind::CharDev { major: 1, minor: 3 }, 0o666),
        entry("dev/sda", FsKind::BlockDev { major: 8, minor: 0 }, 0o660),
        entry(
            "dev/wide",
            FsKind::CharDev {
                major: 300,
                minor: 70_000,
            },
            0o600,
        ),
        entry("run/fifo", FsKind::Fifo, 0o644),
        entry("run/socket", FsKind::Socket, 0o755),
        entry("sym/abs", FsKind::Symlink("/etc/passwd".into()), 0o777),
        entry("sym/rel", FsKind::Symlink("../bin/suid".into()), 0o777),
        entry("sym/long", FsKind::Symlink("t/".repeat(1000)), 0o777),
        file("empty", b""),
        entry("emptydir", FsKind::Dir, 0o700),
        file(&format!("long/{}", "n".repeat(255)), b"long name"),
        file("big/random", &noise(3 << 19, 1)),
        file("big/zeros", &vec![0; (1 << 20) + 100]),
        file("big/300k", &text(300 << 10)),
        file("big/exact", &text(256 << 10)),
        FsEntry {
            xattrs: xattrs(&[("user.comment", b"hello"), ("user.other", b"")]),
            ..file("x/user", b"u")
        },
        FsEntry {
            xattrs: xattrs(&[("user.comment", b"hello"), ("user.other", b"")]),
            ..file("x/user-same", b"same set")
        },
        FsEntry {
            xattrs: xattrs(&[(
                "security.capability",
                &[
                    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            )]),
            mode: 0o755,
            ..file("x/cap", &noise(200 << 10, 9))
        },
        FsEntry {
            xattrs: xattrs(&[("trusted.overlay.opaque", b"y")]),
            ..entry("x/opaque", FsKind::Dir, 0o755)
        },
        FsEntry {
            xattrs: xattrs(&[("trusted.big", &[7; 2000])]),
            ..entry("x/sym", FsKind::Symlink("user".into()), 0o777)
        },
    ];
    for (i, path) in ["links/a", "links/b", "other/c"].into_iter().enumerate() {
        e.push(FsEntry {
            link_group: Some(1),
            mode: 0o750,
            // Only the first in path order counts for the shared inode.
            mtime: T + i as i64,
            xattrs: xattrs(&[("user.linked", b"1")]),
            ..file(path, b"shared content\n")
        });
    }
    for path in ["links/fifo1", "links/fifo2"] {
        e.push(FsEntry {
            link_group: Some(2),
            ..entry(path, FsKind::Fifo, 0o600)
        });
    }
    // Duplicates of a big file (bytes and on disk), of a fragment, and a same-size near miss.
    e.push(file("dup/300k", &text(300 << 10)));
    let mut near = text(300 << 10);
    near[200_000] ^= 1;
    e.push(file("dup/300k-near", &near));
    e.push(file("dup/suid", b"#!/bin/sh\n"));
    e.push(file("dup/zeros", &vec![0; (1 << 20) + 100]));
    let copy = dir.join("copy");
    std::fs::write(&copy, text(300 << 10)).unwrap();
    e.push(entry(
        "dup/from-disk",
        FsKind::File(Data::File {
            path: copy,
            len: 300 << 10,
        }),
        0o644,
    ));
    for i in 0..1200 {
        e.push(file(
            &format!("many/file-{i:04}"),
            format!("{i}\n").as_bytes(),
        ));
    }
    // Over 64 KiB of listing: an extended directory inode.
    for i in 0..3000 {
        e.push(file(&format!("huge/{i:05}-{}", "h".repeat(40)), b""));
    }
    for (name, bytes) in [
        ("disk-big", text(700 << 10)),
        ("disk-small", b"small on disk".to_vec()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        e.push(entry(
            &format!("fromdisk/{name}"),
            FsKind::File(Data::File {
                path,
                len: bytes.len() as u64,
            }),
            0o644,
        ));
    }
    e
}

/// Adds the directories the writer makes for missing parents, as it makes them.
fn with_parents(entries: &[FsEntry], mkfs_time: i64) -> BTreeMap<String, FsEntry> {
    let mut all: BTreeMap<String, FsEntry> = entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect();
    for e in entries {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            all.entry(parent.to_string()).or_insert(FsEntry {
                mtime: mkfs_time,
                ..entry(parent, FsKind::Dir, 0o755)
            });
            p = parent;
        }
    }
    all.entry(String::new()).or_insert(FsEntry {
        mtime: mkfs_time,
        ..entry("", FsKind::Dir, 0o755)
    });
    all
}

/// The attributes a hard link shows: those of the first entry of its group in path order.
fn effective(all: &BTreeMap<String, FsEntry>, e: &FsEntry) -> FsEntry {
    match e.link_group {
        Some(g) => all
            .values()
            .find(|o| o.link_group == Some(g))
            .unwrap()
            .clone(),
        None => e.clone(),
    }
}

#[test]
fn unsquashfs_lists_and_extracts_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let entries = fixture(dir.path());
    let options = SquashfsOptions {
        mkfs_time: T + 100,
        ..SquashfsOptions::default()
    };
    let bytes = image(entries.clone(), &options, 2);
    let img = dir.path().join("img.sqfs");
    std::fs::write(&img, &bytes).unwrap();
    let all = with_parents(&entries, options.mkfs_time);

    // The listing: every path, with its type, mode, owner, size or device, time and target.
    let listed = listing(&img);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>()
    );
    for (path, e) in &all {
        let l = &listed[path];
        let eff = effective(&all, e);
        let size = match &e.kind {
            FsKind::Dir => l.size.clone(), // listing size, not checked here
            FsKind::File(d) => d.len().to_string(),
            FsKind::Symlink(t) => t.len().to_string(),
            // unsquashfs lists the stored number as `number >> 8, number & 0xff`, which is
            // only right for minors under 256 (it extracts all of them right; checked below).
            FsKind::CharDev { major, minor } | FsKind::BlockDev { major, minor } => {
                let stored = device("", *major, *minor).unwrap();
                format!("{},{}", stored >> 8, stored & 0xff)
            }
            FsKind::Fifo | FsKind::Socket => "0".into(),
        };
        let expected = Listed {
            mode: mode_string(&eff),
            owner: format!("{}/{}", eff.uid, eff.gid),
            size,
            time: civil(eff.mtime.clamp(0, u32::MAX.into())),
            target: match &e.kind {
                FsKind::Symlink(t) => Some(t.clone()),
                _ => None,
            },
        };
        assert_eq!(*l, expected, "{path:?}");
    }

    // The superblock.
    let sb = run(Command::new("unsquashfs").arg("-s").arg(&img));
    for line in [
        "Compression gzip",
        "Block size 131072",
        &format!("Number of inodes {}", all.len() - 3),
        "Number of ids 3",
        "Number of xattr ids 6",
        "Filesystem is exportable via NFS",
        "Duplicates are removed",
    ] {
        assert!(sb.lines().any(|l| l == line), "{line:?} in:\n{sb}");
    }
    assert!(!sb.contains("Number of fragments 0"), "{sb}");

    // Extraction as root: contents, owners, modes, devices, targets, xattrs, hard links.
    let root = dir.path().join("root");
    run(Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-d")
        .arg(&root)
        .arg(&img));
    for (path, e) in &all {
        let p = root.join(path);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let eff = effective(&all, e);
        assert_eq!(m.mode() & 0o7777, eff.mode, "{path:?}");
        assert_eq!((m.uid(), m.gid()), (eff.uid, eff.gid), "{path:?}");
        if !matches!(e.kind, FsKind::Symlink(_)) {
            assert_eq!(
                m.mtime(),
                eff.mtime.clamp(0, u32::MAX.into()),
                "mtime of {path:?}"
            );
        }
        match &e.kind {
            FsKind::Dir => assert!(m.is_dir()),
            FsKind::File(d) => {
                assert!(m.is_file());
                assert!(
                    std::fs::read(&p).unwrap() == d.read_all().unwrap(),
                    "{path:?}"
                );
            }
            FsKind::Symlink(t) => {
                assert_eq!(std::fs::read_link(&p).unwrap().to_str(), Some(t.as_str()));
            }
            FsKind::CharDev { major, minor } | FsKind::BlockDev { major, minor } => {
                assert!(m.file_type().is_char_device() || m.file_type().is_block_device());
                assert_eq!(
                    (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
                    (*major, *minor),
                    "{path:?}"
                );
            }
            FsKind::Fifo => assert!(m.file_type().is_fifo()),
            FsKind::Socket => assert!(m.file_type().is_socket()),
        }
        {
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut names[..]).unwrap();
            let mut got = Vec::new();
            for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let name = std::str::from_utf8(name).unwrap();
                let mut value = vec![0u8; 65536];
                let len = rustix::fs::lgetxattr(&p, name, &mut value[..]).unwrap();
                got.push((name.to_string(), value[..len].to_vec()));
            }
            got.sort();
            assert_eq!(got, eff.xattrs, "xattrs of {path:?}");
        }
    }
    let ino = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    for p in ["links/b", "other/c"] {
        assert_eq!(ino(p).ino(), ino("links/a").ino(), "{p} is links/a");
    }
    assert_eq!(ino("links/a").nlink(), 3);
    assert_eq!(ino("links/fifo1").ino(), ino("links/fifo2").ino());
    assert_ne!(ino("links/a").ino(), ino("links/fifo1").ino());
}

/// Directory link counts and sizes, hard link counts and the id and xattr tables, read from
/// the image itself (unsquashfs does not show them).
#[test]
fn link_counts_and_shared_tables_are_in_the_image() {
    let entries = vec![
        entry("a/b", FsKind::Dir, 0o755),
        entry("a/c", FsKind::Dir, 0o755),
        file("a/f", b"f"),
        FsEntry {
            link_group: Some(7),
            ..file("h1", b"h")
        },
        FsEntry {
            link_group: Some(7),
            ..file("a/h2", b"h")
        },
    ];
    let bytes = image(entries, &SquashfsOptions::default(), 1);
    let inodes = read_inodes(&bytes);
    // Root: a and the two links; `a`: b, c, f, h2.
    let by_number = |n: u32| inodes.iter().find(|i| i.number == n).unwrap();
    let root = by_number(inodes.len() as u32);
    assert_eq!((root.kind, root.nlink), (1, 3));
    let a = inodes.iter().find(|i| i.kind == 1 && i.nlink == 4).unwrap();
    assert_eq!(
        a.number,
        root.number - 1,
        "a's subtree, then a, then the root"
    );
    let linked: Vec<_> = inodes.iter().filter(|i| i.kind == 9).collect();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].nlink, 2);
}

struct RawInode {
    kind: u16,
    number: u32,
    nlink: u32,
}

/// Unpacks the inode table and walks it (only the types the test above writes).
fn read_inodes(image: &[u8]) -> Vec<RawInode> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let count = u32_at(image, 4) as usize;
    let block_size = u32_at(image, 12) as u64;
    let (start, end) = (u64_at(image, 64) as usize, u64_at(image, 72) as usize);
    let mut table = Vec::new();
    let mut at = start;
    while at < end {
        let h = u16_at(image, at);
        let len = usize::from(h & 0x7fff);
        let body = &image[at + 2..at + 2 + len];
        if h & 0x8000 != 0 {
            table.extend_from_slice(body);
        } else {
            let mut block = Vec::with_capacity(8192);
            flate2::Decompress::new(true)
                .decompress_vec(body, &mut block, flate2::FlushDecompress::Finish)
                .unwrap();
            table.extend_from_slice(&block);
        }
        at += 2 + len;
    }
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..count {
        let kind = u16_at(&table, at);
        let number = u32_at(&table, at + 12);
        let b = at + 16;
        let (nlink, len) = match kind {
            1 => (u32_at(&table, b + 4), 16),
            2 => {
                let size = u64::from(u32_at(&table, b + 12));
                let blocks = if u32_at(&table, b + 4) == u32::MAX {
                    size.div_ceil(block_size)
                } else {
                    size / block_size
                };
                (1, 16 + 4 * blocks as usize)
            }
            9 => {
                let size = u64_at(&table, b + 8);
                let blocks = if u32_at(&table, b + 28) == u32::MAX {
                    size.div_ceil(block_size)
                } else {
                    size / block_size
                };
                (u32_at(&table, b + 24), 40 + 4 * blocks as usize)
            }
            other => panic!("inode type {other} not expected here"),
        };
        out.push(RawInode {
            kind,
            number,
            nlink,
        });
        at = b + len;
    }
    assert_eq!(at, table.len());
    out
}

/// `bytes_used` from the superblock.
fn bytes_used(image: &[u8]) -> u64 {
    u64::from_le_bytes(image[40..48].try_into().unwrap())
}

#[test]
fn duplicates_are_stored_once() {
    let o = SquashfsOptions::default();
    let base = vec![file("a", &text(500_000)), file("s", b"small")];
    let mut dups = base.clone();
    dups.push(file("b", &text(500_000)));
    dups.push(file("t", b"small"));
    let mut different = base.clone();
    different.push(file("b", &text(499_999)));
    let (base, dups, different) = (
        bytes_used(&image(base, &o, 2)),
        bytes_used(&image(dups, &o, 2)),
        bytes_used(&image(different, &o, 2)),
    );
    assert!(dups - base < 200, "{base} → {dups}: metadata only");
    assert!(different - base > 10_000, "{base} → {different}: the data");
}

#[test]
fn images_are_reproducible_and_independent_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let entries = fixture(dir.path());
    let options = SquashfsOptions::default();
    let one = image(entries.clone(), &options, 1);
    for threads in [1, 2, 5] {
        let mut shuffled = entries.clone();
        shuffled.reverse();
        assert!(
            image(shuffled, &options, threads) == one,
            "{threads} threads, reversed input"
        );
    }
    // At an offset in the output: the same image after the prefix.
    let mut out = Cursor::new(b"prefix".to_vec());
    out.set_position(6);
    let size = write(entries, &options, &mut out).unwrap();
    assert_eq!(size, one.len() as u64);
    assert_eq!(out.position(), 6 + size);
    assert!(out.into_inner()[6..] == one[..]);
}

#[test]
fn small_blocks_and_other_levels_extract() {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = vec![
        file("text", &text(100_000)),
        file("noise", &noise(50_000, 3)),
        file("small", b"tiny"),
        file("zeros", &[0; 4096 * 3]),
    ];
    for i in 0..100 {
        entries.push(file(&format!("d/{i}"), &text(i * 97)));
    }
    let options = SquashfsOptions {
        mkfs_time: 0,
        block_size: 4096,
        compression_level: 1,
    };
    let bytes = image(entries.clone(), &options, 3);
    let img = dir.path().join("img");
    std::fs::write(&img, &bytes).unwrap();
    let sb = run(Command::new("unsquashfs").arg("-s").arg(&img));
    assert!(sb.contains("Block size 4096"), "{sb}");
    assert!(sb.contains("compression-level 1"), "{sb}");
    let root = dir.path().join("root");
    run(Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-d")
        .arg(&root)
        .arg(&img));
    for e in &entries {
        let FsKind::File(d) = &e.kind else {
            unreachable!()
        };
        assert!(
            std::fs::read(root.join(&e.path)).unwrap() == d.read_all().unwrap(),
            "{}",
            e.path
        );
    }
}

#[test]
fn bad_input_is_refused() {
    let err = |entries: Vec<FsEntry>, options: &SquashfsOptions| {
        write(entries, options, &mut Cursor::new(Vec::new())).unwrap_err()
    };
    let o = SquashfsOptions::default();
    let msg = |e: DiskError| e.to_string();
    assert!(msg(err(vec![file("a", b""), file("a", b"x")], &o)).contains("listed twice"));
    assert!(msg(err(vec![file("a/../b", b"")], &o)).contains("bad path"));
    assert!(msg(err(vec![file("a", b""), file("a/b", b"")], &o)).contains("not a directory"));
    let linked = |path: &str, bytes: &[u8]| FsEntry {
        link_group: Some(1),
        ..file(path, bytes)
    };
    assert!(msg(err(vec![linked("a", b"x"), linked("b", b"y")], &o)).contains("hard links"));
    let system = FsEntry {
        xattrs: xattrs(&[("system.posix_acl_access", b"")]),
        ..file("a", b"")
    };
    assert!(msg(err(vec![system], &o)).contains("xattr"));
    for options in [
        SquashfsOptions {
            block_size: 3000,
            ..o.clone()
        },
        SquashfsOptions {
            block_size: 2 << 20,
            ..o.clone()
        },
        SquashfsOptions {
            compression_level: 0,
            ..o.clone()
        },
    ] {
        assert!(matches!(err(vec![], &options), DiskError::Invalid(_)));
    }

    // A source file whose length is not the planned one, shorter or longer, small (read
    // whole) or spanning blocks (read block by block).
    let dir = tempfile::tempdir().unwrap();
    for (actual, planned) in [(10, 20), (20, 10), (300_000, 400_000), (300_000, 200_000)] {
        let path = dir.path().join(format!("f{actual}-{planned}"));
        std::fs::write(&path, vec![1; actual]).unwrap();
        let e = entry(
            "f",
            FsKind::File(Data::File {
                path,
                len: planned as u64,
            }),
            0o644,
        );
        match err(vec![e], &o) {
            DiskError::SourceChanged {
                expected, found, ..
            } => {
                assert_eq!(expected, planned as u64);
                assert!(found == actual as u64 || (found > expected && actual > planned));
            }
            other => panic!("{actual} bytes planned as {planned}: {other}"),
        }
    }
    // Found short when checked as a possible duplicate of a file of its planned size.
    let path = dir.path().join("short");
    std::fs::write(&path, [1; 10]).unwrap();
    let short = entry("g", FsKind::File(Data::File { path, len: 20 }), 0o644);
    match err(vec![file("f", &[1; 20]), short], &o) {
        DiskError::SourceChanged {
            expected: 20,
            found: 10,
            ..
        } => {}
        other => panic!("{other}"),
    }
    let missing = entry(
        "f",
        FsKind::File(Data::File {
            path: dir.path().join("missing"),
            len: 1,
        }),
        0o644,
    );
    assert!(matches!(err(vec![missing], &o), DiskError::Io(_)));
}

#[test]
fn an_empty_tree_is_a_root_directory() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img");
    std::fs::write(&img, image(vec![], &SquashfsOptions::default(), 1)).unwrap();
    let listed = listing(&img);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[""].mode, "drwxr-xr-x");
    assert_eq!(listed[""].size, "3");
}
