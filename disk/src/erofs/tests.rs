use super::*;

const T0: i64 = 1_700_000_000;

fn file(path: &str, bytes: &[u8]) -> FsEntry {
    FsEntry {
        path: path.into(),
        kind: FsKind::File(Data::Bytes(bytes.to_vec())),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: T0,
        link_group: None,
        xattrs: Vec::new(),
    }
}

fn options() -> ErofsOptions {
    ErofsOptions {
        build_time: T0,
        uuid: [7; 16],
        volume_name: "lkb".into(),
    }
}

fn image(entries: Vec<FsEntry>) -> Vec<u8> {
    let plan = plan(entries, options()).unwrap();
    let mut out = Vec::new();
    plan.write(&mut out).unwrap();
    assert_eq!(out.len() as u64, plan.size());
    out
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

#[test]
fn superblock_and_root_are_where_readers_look() {
    let img = image(vec![file("a/b", b"hello"), file("z", &[9; 5000])]);
    let sb = &img[1024..1152];
    assert_eq!(le32(sb), MAGIC);
    assert_eq!(le32(&sb[8..]), FEATURE_COMPAT_MTIME);
    assert_eq!(sb[12], 12);
    assert_eq!(le16(&sb[14..]), 36, "the root right after the superblock");
    assert_eq!(u64::from_le_bytes(sb[16..24].try_into().unwrap()), 4);
    assert_eq!(i64::from_le_bytes(sb[24..32].try_into().unwrap()), T0);
    assert_eq!(le32(&sb[36..]) as usize * 4096, img.len());
    assert_eq!(&sb[48..64], &[7; 16]);
    assert_eq!(&sb[64..80], b"lkb\0\0\0\0\0\0\0\0\0\0\0\0\0");
    assert_eq!(le32(&sb[80..]), 0, "no incompatible features");
    // The root: compact (its mtime is the build time), FLAT_INLINE, 0755 directory.
    let root = &img[1152..1184];
    assert_eq!(le16(root), LAYOUT_FLAT_INLINE << 1);
    assert_eq!(le16(&root[4..]), 0o040_755);
    assert_eq!(le16(&root[6..]), 3, "nlink: 2 + subdirectory a");
    // "z" is 4096 + 904 bytes: one data block and an inline tail, after 1 metadata block.
    assert_eq!(img.len(), 2 * 4096);
    assert_eq!(&img[4096..8192], &[9; 4096]);
    assert_eq!(plan(vec![], options()).unwrap().size(), 4096);
}

#[test]
fn writing_twice_gives_the_same_bytes() {
    let entries = || {
        let mut v: Vec<FsEntry> = (0..300)
            .map(|i| file(&format!("d{}/f{i}", i % 7), &vec![i as u8; i * 37]))
            .collect();
        v.reverse();
        v
    };
    let a = image(entries());
    let mut shuffled = entries();
    shuffled.sort_by(|x, y| x.path.len().cmp(&y.path.len()).then(y.path.cmp(&x.path)));
    assert_eq!(a, image(shuffled), "input order does not matter");
}

fn dirent(name: &[u8]) -> Dirent {
    Dirent {
        name: name.to_vec(),
        node: 0,
    }
}

#[test]
fn dirents_fill_blocks_without_splitting_names() {
    // 12 + 244 = 256 bytes each: 16 per block exactly.
    let names: Vec<Dirent> = (0..33).map(|i| dirent(&[b'a' + i as u8; 244])).collect();
    let (starts, size) = pack_dirents(&names);
    assert_eq!(starts, vec![0, 16, 32]);
    assert_eq!(size, 2 * 4096 + 256);
    // One byte more per name: 15 per block.
    let names: Vec<Dirent> = (0..31).map(|_| dirent(&[b'x'; 245])).collect();
    let (starts, size) = pack_dirents(&names);
    assert_eq!(starts, vec![0, 15, 30]);
    assert_eq!(size, 2 * 4096 + 257);
}

#[test]
fn directory_blocks_are_tables_then_names() {
    let plan = plan(
        vec![file("b", b""), file("a", b""), file("-", b"")],
        options(),
    )
    .unwrap();
    let Content::Dir(root) = &plan.nodes[0].content else {
        panic!("root is a directory")
    };
    let bytes = plan.dirents(root);
    let names: Vec<&[u8]> = root.entries.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(names, [&b"-"[..], b".", b"..", b"a", b"b"]);
    assert_eq!(bytes.len(), 5 * 12 + 1 + 1 + 2 + 1 + 1);
    assert_eq!(le16(&bytes[8..]), 60);
    assert_eq!(le16(&bytes[12 + 8..]), 61);
    assert_eq!(bytes[10], 1, "`-` is a regular file");
    assert_eq!(bytes[12 + 10], 2, "`.` is a directory");
    assert_eq!(
        u64::from_le_bytes(bytes[12..20].try_into().unwrap()),
        36,
        "`.` is the root"
    );
    assert_eq!(&bytes[60..], b"-...ab");
}

#[test]
fn xattrs_are_indexed_and_aligned() {
    let body = xattr_body(
        "f",
        &[
            ("user.ab".into(), b"xyz".to_vec()),
            ("system.posix_acl_access".into(), vec![2, 0, 0, 0]),
        ],
    )
    .unwrap();
    // Header, then the ACL (sorted first: "system" < "user"), then user.ab.
    assert_eq!(&body[..12], &[0; 12]);
    assert_eq!(&body[12..16], &[0, 2, 4, 0]);
    assert_eq!(&body[16..20], &[2, 0, 0, 0]);
    assert_eq!(&body[20..24], &[2, 1, 3, 0]);
    assert_eq!(&body[24..32], b"abxyz\0\0\0");
    assert_eq!(xattr_count(body.len()), Some(6));
    assert_eq!(xattr_count(0), Some(0));

    let err = |name: &str| {
        xattr_body("p", &[(name.into(), vec![])])
            .unwrap_err()
            .to_string()
    };
    assert!(err("os2.x").contains("\"os2.x\""), "{}", err("os2.x"));
    assert!(err("system.posix_acl_accessx").contains("no index"));
    assert!(err("user.").contains("no index"));
    let twice = xattr_body(
        "p",
        &[("user.a".into(), vec![]), ("user.a".into(), vec![1])],
    );
    assert!(twice.unwrap_err().to_string().contains("twice"));
}

#[test]
fn inodes_never_straddle_blocks() {
    let mut packer = MetaPacker::new();
    assert_eq!(packer.place(64), 1152);
    assert_eq!(packer.place(40), 1216);
    assert_eq!(packer.place(2880), 4096, "1280 + 2880 > 4096");
    assert_eq!(
        packer.place(64),
        4096 + 2880,
        "best fit: block 1 has less room"
    );
    assert_eq!(
        packer.place(9000),
        2 * 4096,
        "bigger than a block: starts one"
    );
    assert_eq!(packer.next_block, 5);
    assert_eq!(packer.place(2000), 1280, "block 0 fits, block 1 does not");
    assert_eq!(packer.place(1000), 4096 + 2944);
    assert_eq!(
        packer.place(3000),
        4 * 4096 + 832,
        "after the big item in its last block"
    );
    assert_eq!(packer.place(4096), 5 * 4096);
    assert_eq!(packer.next_block, 6);
    assert_eq!(
        packer.place(100),
        4096 + 3968,
        "the 128 bytes left in block 1"
    );
}

#[test]
fn refusals_name_the_problem() {
    let err = |entries: Vec<FsEntry>| plan(entries, options()).unwrap_err().to_string();
    assert!(err(vec![file("a", b""), file("a", b"")]).contains("\"a\" is listed twice"));
    assert!(err(vec![file("a/../b", b"")]).contains("bad path"));
    assert!(err(vec![file("a", b""), file("a/b", b"")]).contains("not a directory"));
    let mut x = file("x", b"");
    x.xattrs = vec![("foo.bar".into(), b"1".to_vec())];
    let e = err(vec![x]);
    assert!(e.contains("\"foo.bar\"") && e.contains("\"x\""), "{e}");
    let (mut a, mut b) = (file("a", b"1"), file("b", b"2"));
    a.link_group = Some(1);
    b.link_group = Some(1);
    assert!(err(vec![a, b]).contains("differ in kind or content"));
    let mut dev = file("dev", b"");
    dev.kind = FsKind::CharDev {
        major: 4096,
        minor: 0,
    };
    assert!(err(vec![dev]).contains("12-bit majors"));
    let mut o = options();
    o.volume_name = "x".repeat(17);
    assert!(
        plan(vec![], o)
            .unwrap_err()
            .to_string()
            .contains("at most 16")
    );
}

#[test]
fn a_changed_source_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![1; 5000]).unwrap();
    for planned in [4999, 5001] {
        let mut e = file("f", b"");
        e.kind = FsKind::File(Data::File {
            path: path.clone(),
            len: planned,
        });
        let plan = plan(vec![e], options()).unwrap();
        match plan.write(&mut Vec::new()) {
            Err(DiskError::SourceChanged {
                expected, found, ..
            }) => assert_eq!((expected, found), (planned, 5000)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_link_group_is_one_inode_with_its_first_paths_metadata() {
    let mut entries = Vec::new();
    for (path, mode) in [("z/b", 0o600), ("a", 0o644), ("z/c", 0o755)] {
        let mut e = file(path, b"same");
        e.mode = mode;
        e.link_group = Some(9);
        entries.push(e);
    }
    let plan = plan(entries, options()).unwrap();
    // Root, `a` (with `z/b` and `z/c`), `z`.
    assert_eq!(plan.inode_count(), 3);
    let linked = &plan.nodes[1];
    assert_eq!((linked.mode, linked.nlink), (0o100_644, 3));
    let Content::Dir(z) = &plan.nodes[2].content else {
        panic!("z is a directory")
    };
    let targets: Vec<usize> = z.entries.iter().map(|e| e.node).collect();
    assert_eq!(targets, [2, 0, 1, 1], "`.`, `..`, b, c");
    let inos: Vec<u32> = plan.nodes.iter().map(|n| n.ino).collect();
    assert_eq!(inos, [1, 2, 3]);
}
