//! Tests of `crate::layer`: unpacking layer tars into per-layer trees. (They live here to
//! keep layer.rs short.)

use lkb_store::{BlobDigest, ErrorCategory, Store};

use crate::compress::Codec;
use crate::layer::{LayerError, LayerErrorKind, Limits, unpack_layer};
use crate::tree::testutil::{TarBuf, kinds, store};
use crate::tree::{EntryKind, Meta, Tree, TreeError};

fn unpack(store: &Store, bytes: &[u8]) -> Result<Tree, LayerError> {
    unpack_layer(store, bytes, "", &Limits::default(), None)
}

#[test]
fn entries_paths_metadata_and_links() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.dir("./").dir("./etc/");
    t.raw(b"./etc//passwd", b'0', b"root", |h| {
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mode(0o100640);
    });
    t.link(b'2', "bin/sh", "/bin/busybox")
        .link(b'2', "lib/x", "../y");
    t.file("bin/a", b"A").link(b'1', "usr/bin/b", "./bin//a");
    t.raw(b"dev/null", b'3', b"", |h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    });
    t.raw(b"run/fifo", b'6', b"", |_| {});
    t.raw(b"old-v7-dir/", b'\0', b"", |_| {});
    let tree = unpack(&store, &t.finish()).unwrap();
    let got: Vec<(String, String)> = kinds(&tree);
    let want = [
        ("bin/a", "file"),
        ("bin/sh", "sym>/bin/busybox"),
        ("dev/null", "char device"),
        ("etc", "directory"),
        ("etc/passwd", "file"),
        ("lib/x", "sym>../y"),
        ("old-v7-dir", "directory"),
        ("run/fifo", "fifo"),
        ("usr/bin/b", "link>bin/a"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    let passwd = tree.get("etc/passwd").unwrap();
    assert_eq!(passwd.meta(), Meta::new(0o640, 1000, 1001, 1_492_533_000));
    assert_eq!(tree.read_file(&store, "etc/passwd").unwrap(), b"root");
    assert_eq!(tree.read_file(&store, "usr/bin/b").unwrap(), b"A");
    assert_eq!(
        tree.get("dev/null").unwrap().kind,
        EntryKind::Char { major: 1, minor: 3 }
    );
}

#[test]
fn escaping_paths_are_refused_by_name() {
    let (_d, store) = store();
    for (typ, name, link) in [
        (b'0', "../evil", ""),
        (b'0', "a/../../evil", ""),
        (b'1', "ok", "../../etc/shadow"),
    ] {
        let mut t = TarBuf::default();
        t.link(typ, name, link);
        let err = unpack(&store, &t.finish())
            .unwrap_err()
            .in_layer("sha256:abc");
        assert!(matches!(err.kind, LayerErrorKind::Escapes(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("layer sha256:abc:") && msg.contains("climbs out"),
            "{msg}"
        );
        assert_eq!(err.category(), ErrorCategory::Environment);
    }
}

#[test]
fn whiteouts_opaque_and_aufs_metadata() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.file(".wh.foo", b"")
        .dir("d")
        .file("d/.wh..wh..opq", b"")
        .file("d/.wh.bar", b"");
    t.dir(".wh..wh.plnk").file(".wh..wh.plnk/123.456", b"x");
    let tree = unpack(&store, &t.finish()).unwrap();
    let got = kinds(&tree);
    let want = [
        (".wh.foo", "whiteout"),
        ("d", "directory"),
        ("d/.wh..wh..opq", "opaque marker"),
        ("d/.wh.bar", "whiteout"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    assert_eq!(
        tree.get("d/.wh.bar").unwrap().whiteout_target().as_deref(),
        Some("d/bar")
    );
}

#[test]
fn long_names_pax_records_and_xattrs() {
    let (_d, store) = store();
    let long = format!("{}/{}", "p".repeat(200), "q".repeat(120));
    let gnu = format!("g/{}", "n".repeat(150));
    let mut t = TarBuf::default();
    let cap: &[u8] = &[1, 0, 0, 2, b'\n', 0, 0x20];
    t.pax(&[
        ("path", long.as_bytes()),
        ("uid", b"70000"),
        ("gid", b"5000000"),
        ("mtime", b"1700000000.5"),
        ("atime", b"1"),
        ("SCHILY.xattr.security.capability", cap),
        ("LINUXKIT.source", b"img"),
    ]);
    t.file("short-ignored", b"L");
    t.gnu_long_name(&gnu).file("ignored", b"G");
    t.pax(&[("linkpath", long.as_bytes())])
        .link(b'1', "hl", "x");
    t.raw(b"name", b'0', b"U", |h| {
        h.as_ustar_mut().unwrap().prefix[..6].copy_from_slice(b"prefix")
    });
    let tree = unpack(&store, &t.finish()).unwrap();
    let e = tree.get(&long).expect("PAX path");
    assert_eq!((e.uid, e.gid, e.mtime), (70000, 5_000_000, 1_700_000_000));
    // "hl" links to it and comes first, so it holds the inode's xattrs.
    let hl = tree.get("hl").unwrap();
    assert_eq!(
        hl.xattrs.get("security.capability").map(Vec::as_slice),
        Some(cap)
    );
    assert_eq!(e.pax.keys().collect::<Vec<_>>(), ["LINUXKIT.source"]);
    assert_eq!(tree.read_file(&store, &gnu).unwrap(), b"G");
    assert_eq!(tree.read_file(&store, "prefix/name").unwrap(), b"U");
    // "hl" comes first in archive order, so it became the group's primary.
    assert_eq!(
        tree.get(&long).unwrap().kind,
        EntryKind::Hardlink {
            target: "hl".into()
        }
    );
    assert_eq!(tree.read_file(&store, "hl").unwrap(), b"L");
    assert!(long.len() > 255 && gnu.len() > 100);
}

#[test]
fn compressions_and_media_types() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.dir("a").file("a/f", &[7u8; 5000]);
    let raw = t.finish();
    let plain = unpack(&store, &raw).unwrap();
    for (codec, mt) in [
        (
            Codec::Gzip { level: 6 },
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        (
            Codec::Zstd { level: 3 },
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            Codec::Zstd { level: 3 },
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ), // mislabelled
        (Codec::None, "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let bytes = codec.compress(&raw).unwrap();
        assert_eq!(
            unpack_layer(&store, &bytes[..], mt, &Limits::default(), None).unwrap(),
            plain,
            "{mt}"
        );
    }
    let err = unpack_layer(
        &store,
        &raw[..],
        "application/vnd.oci.image.config.v1+json",
        &Limits::default(),
        None,
    );
    assert!(matches!(
        err.unwrap_err().kind,
        LayerErrorKind::MediaType(_)
    ));
}

#[test]
fn limits_have_clear_errors() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.file("a", &[0u8; 3000])
        .file("b", b"")
        .file(&"c".repeat(90), b"");
    let raw = t.finish();
    let run = |l: Limits| unpack_layer(&store, &raw[..], "", &l, None).unwrap_err();
    let e = run(Limits {
        max_entries: 2,
        ..Limits::default()
    });
    assert!(
        matches!(e.kind, LayerErrorKind::TooManyEntries { limit: 2 }),
        "{e}"
    );
    assert_eq!(e.category(), ErrorCategory::User);
    let e = run(Limits {
        max_path_len: 80,
        ..Limits::default()
    });
    assert!(
        matches!(e.kind, LayerErrorKind::PathTooLong { len: 90, .. }),
        "{e}"
    );
    let e = run(Limits {
        max_total_bytes: 2048,
        ..Limits::default()
    });
    assert!(
        matches!(e.kind, LayerErrorKind::TooLarge { limit: 2048 }),
        "{e}"
    );
}

#[test]
fn corrupt_and_inconsistent_layers() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.file("f", &[1u8; 2000]);
    let raw = t.finish();
    let e = unpack(&store, &raw[..1200]).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Environment, "{e}");
    let mut t = TarBuf::default();
    t.file("f", b"").file("f/g", b"");
    assert!(matches!(
        unpack(&store, &t.finish()).unwrap_err().kind,
        LayerErrorKind::Tree(TreeError::NotADirectory { .. })
    ));
    let mut t = TarBuf::default();
    t.raw(b"sparse", b'S', b"", |_| {});
    assert!(matches!(
        unpack(&store, &t.finish()).unwrap_err().kind,
        LayerErrorKind::Unsupported { .. }
    ));
    // Later entries win; a file over a directory drops the directory's subtree.
    let mut t = TarBuf::default();
    t.dir("d")
        .file("d/x", b"")
        .file("d", b"now a file")
        .file("e", b"1")
        .file("e", b"2");
    let tree = unpack(&store, &t.finish()).unwrap();
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.read_file(&store, "e").unwrap(), b"2");
}

#[test]
fn layers_from_tars_merge_per_oci() {
    let (_d, store) = store();
    let mut l1 = TarBuf::default();
    l1.dir("etc")
        .file("etc/a", b"a1")
        .file("etc/b", b"b1")
        .dir("var")
        .dir("var/cache");
    l1.file("var/cache/x", b"")
        .file("bin", b"not yet a dir")
        .link(b'1', "etc/a-link", "etc/a");
    let mut l2 = TarBuf::default();
    l2.file("etc/.wh.a", b"")
        .dir("var/cache")
        .file("var/cache/.wh..wh..opq", b"");
    l2.file("var/cache/y", b"y")
        .dir("bin")
        .file("bin/sh", b"sh");
    let layers = [l1.finish(), l2.finish()].map(|b| unpack(&store, &b).unwrap());
    let merged = Tree::merge_layers(&layers).unwrap();
    let got = kinds(&merged);
    let want = [
        ("bin", "directory"),
        ("bin/sh", "file"),
        ("etc", "directory"),
        ("etc/a-link", "file"),
        ("etc/b", "file"),
        ("var", "directory"),
        ("var/cache", "directory"),
        ("var/cache/y", "file"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    // etc/a was whited out, but its hard link keeps the content.
    assert_eq!(merged.read_file(&store, "etc/a-link").unwrap(), b"a1");
    merged.check_complete().unwrap();
}

#[test]
fn a_root_entry_becomes_the_tree_root_and_the_top_layer_decides() {
    let (_d, store) = store();
    let mut l1 = TarBuf::default();
    l1.pax(&[("LINUXKIT.note", b"lower")]);
    l1.raw(b"./", b'5', b"", |h| {
        h.set_mode(0o700);
        h.set_uid(5);
        h.set_gid(6);
    });
    l1.file("a", b"a");
    let mut l2 = TarBuf::default();
    l2.file("b", b"b");
    let mut l3 = TarBuf::default();
    l3.raw(b".", b'5', b"", |h| h.set_mode(0o750));
    // A non-directory at the root names nothing; it is dropped.
    l3.raw(b".", b'0', b"", |_| {});
    let layers = [l1.finish(), l2.finish(), l3.finish()].map(|b| unpack(&store, &b).unwrap());
    let root = layers[0].root().unwrap();
    assert_eq!((root.path.as_str(), root.is_dir()), (".", true));
    assert_eq!(root.meta(), Meta::new(0o700, 5, 6, 1_492_533_000));
    assert_eq!(
        root.pax.get("LINUXKIT.note").map(String::as_str),
        Some("lower")
    );
    assert!(layers[1].root().is_none());
    assert_eq!(layers[0].len(), 1, "the root is not one of the entries");

    let lower_two = Tree::merge_layers(&layers[..2]).unwrap();
    assert_eq!(lower_two.root(), layers[0].root());
    let all = Tree::merge_layers(&layers).unwrap();
    assert_eq!(
        all.root().unwrap().meta(),
        Meta::new(0o750, 0, 0, 1_492_533_000)
    );
    assert_eq!(Tree::decode(&all.encode()).unwrap(), all);
    assert_eq!(
        Tree::decode(&lower_two.encode()).unwrap().root(),
        layers[0].root()
    );
    // Prefixing drops it: under a prefix it would not describe `/`.
    assert!(all.prefixed("containers/x").unwrap().root().is_none());
}

#[test]
fn compression_trailers_are_checked() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.dir("a").file("a/f", &[7u8; 5000]);
    let raw = t.finish();
    let gz = Codec::Gzip { level: 6 }.compress(&raw).unwrap();
    let n = gz.len();
    // The gzip trailer: CRC-32 of the data, then its length mod 2^32 (ISIZE).
    let mut bad_crc = gz.clone();
    bad_crc[n - 8] ^= 0xff;
    let mut bad_size = gz.clone();
    bad_size[n - 1] ^= 0x01;
    let mut garbage = gz.clone();
    garbage.extend_from_slice(b"not gzip");
    let zst = Codec::Zstd { level: 3 }.compress(&raw).unwrap();
    // The zstd frame's content checksum is its last four bytes.
    let mut bad_checksum = zst.clone();
    let m = bad_checksum.len();
    bad_checksum[m - 1] ^= 0xff;
    let mut zst_garbage = zst.clone();
    zst_garbage.extend_from_slice(b"not zstd");
    for (what, bytes) in [
        ("gzip CRC-32", bad_crc),
        ("gzip ISIZE", bad_size),
        ("gzip trailing garbage", garbage),
        ("gzip trailer cut off", gz[..n - 4].to_vec()),
        ("zstd checksum", bad_checksum),
        ("zstd trailing garbage", zst_garbage),
    ] {
        let err = unpack(&store, &bytes)
            .expect_err(what)
            .in_layer("sha256:0123abcd");
        assert!(
            matches!(err.kind, LayerErrorKind::Trailer(_)),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("sha256:0123abcd"), "{what}: {err}");
        assert_eq!(err.category(), ErrorCategory::Environment, "{what}");
    }
    // Intact streams still unpack, also with zero padding after the tar's end.
    let plain = unpack(&store, &raw).unwrap();
    let mut padded = raw.clone();
    padded.extend([0u8; 10240]);
    for codec in [Codec::Gzip { level: 6 }, Codec::Zstd { level: 3 }] {
        let bytes = codec.compress(&padded).unwrap();
        assert_eq!(unpack(&store, &bytes).unwrap(), plain, "{codec:?}");
    }
}

#[test]
fn the_uncompressed_layer_must_match_its_diff_id() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.file("f", b"content");
    let mut raw = t.finish();
    // The diff_id covers the whole uncompressed stream, padding after the tar's end included.
    raw.extend([0u8; 4096]);
    let gz = Codec::Gzip { level: 6 }.compress(&raw).unwrap();
    let right = BlobDigest::of_bytes(&raw);
    let limits = Limits::default();
    unpack_layer(&store, &gz[..], "", &limits, Some(&right)).unwrap();
    unpack_layer(&store, &raw[..], "", &limits, Some(&right)).unwrap();

    let wrong = BlobDigest::of_bytes(b"another layer");
    let err = unpack_layer(&store, &gz[..], "", &limits, Some(&wrong))
        .unwrap_err()
        .in_layer("sha256:0123abcd");
    assert!(
        matches!(err.kind, LayerErrorKind::DiffIdMismatch { expected, actual }
            if expected == wrong && actual == right),
        "{err:?}"
    );
    assert_eq!(err.category(), ErrorCategory::User);
    let message = err.to_string();
    for part in ["sha256:0123abcd", &right.to_string(), &wrong.to_string()] {
        assert!(message.contains(part), "{message}");
    }
}

/// Arbitrary bytes never make the layer reader panic: mutations of valid layers (plain, gzip,
/// zstd) and plain noise, from a fixed seed so a failure reproduces.
#[test]
fn arbitrary_bytes_never_panic() {
    let (_d, store) = store();
    let mut t = TarBuf::default();
    t.dir("d")
        .file("d/f", &[5u8; 700])
        .pax(&[("path", b"d/long-name"), ("SCHILY.xattr.user.a", b"v")])
        .file("x", b"data")
        .gnu_long_name(&"n".repeat(150))
        .file("ignored", b"")
        .link(b'1', "d/hard", "d/f")
        .link(b'2', "d/sym", "../x");
    let raw = t.finish();
    let seeds = [
        raw.clone(),
        Codec::Gzip { level: 6 }.compress(&raw).unwrap(),
        Codec::Zstd { level: 3 }.compress(&raw).unwrap(),
    ];
    // xorshift64*: deterministic and dependency-free.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let limits = Limits {
        max_total_bytes: 1 << 20,
        ..Limits::default()
    };
    for round in 0..300 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match next() % 4 {
            0 => {
                // Flip a few bytes.
                for _ in 0..1 + next() % 4 {
                    let i = (next() % bytes.len() as u64) as usize;
                    bytes[i] ^= 1 << (next() % 8);
                }
            }
            1 => bytes.truncate((next() % bytes.len() as u64) as usize),
            2 => {
                // Overwrite a run with noise.
                let start = (next() % bytes.len() as u64) as usize;
                let end = (start + 1 + (next() % 64) as usize).min(bytes.len());
                for b in &mut bytes[start..end] {
                    *b = next() as u8;
                }
            }
            _ => {
                let len = (next() % 2048) as usize;
                bytes = (0..len).map(|_| next() as u8).collect();
            }
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = unpack_layer(&store, &bytes[..], "", &limits, None);
        }));
        assert!(outcome.is_ok(), "round {round} panicked on {bytes:02x?}");
    }
}
