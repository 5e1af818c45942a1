use super::testutil::*;
use super::*;

fn paths(t: &Tree) -> Vec<&str> {
    t.iter().map(|e| e.path.as_str()).collect()
}

fn dir(p: &str) -> Entry {
    Entry::dir(p, M755)
}

#[test]
fn archive_order_is_component_wise() {
    let mut t = Tree::new();
    for p in [
        "ab", "a.txt", "a-b", "a/c", "a/b/c", "a", "a/b", "a/b-c", "a/b/c/d", "a0",
    ] {
        t.insert(dir(p)).unwrap();
    }
    assert_eq!(
        paths(&t),
        [
            "a", "a/b", "a/b/c", "a/b/c/d", "a/b-c", "a/c", "a-b", "a.txt", "a0", "ab"
        ]
    );
    // Plain byte order would put "a-b" between "a" and "a/b".
    assert!("a-b" < "a/b");
    assert_eq!(cmp_paths("a-b", "a/b"), Ordering::Greater);
    // Every parent precedes its children, and each subtree is contiguous.
    let order = paths(&t);
    for (i, p) in order.iter().enumerate() {
        if let Some(parent) = split_parent(p).0 {
            let pi = order.iter().position(|q| *q == parent).unwrap();
            assert!(pi < i);
            assert!(
                order[pi..i]
                    .iter()
                    .all(|q| *q == parent || q.starts_with(&format!("{parent}/")))
            );
        }
    }
    let below: Vec<_> = t.descendants("a/b").map(|e| e.path.as_str()).collect();
    assert_eq!(below, ["a/b/c", "a/b/c/d"]);
    assert_eq!(t.descendants("").count(), t.len());
    assert_eq!(t.remove_subtree("a/b").len(), 3);
    assert!(t.contains("a/b-c"));
}

#[test]
fn path_normalisation() {
    assert_eq!(normalize_path("./a//b").unwrap().as_deref(), Some("a/b"));
    assert_eq!(normalize_path("/x/./y/").unwrap().as_deref(), Some("x/y"));
    assert_eq!(normalize_path("a/../b").unwrap().as_deref(), Some("b"));
    assert_eq!(
        normalize_path("a/b/../../c/.").unwrap().as_deref(),
        Some("c")
    );
    assert_eq!(normalize_path("./").unwrap(), None);
    assert_eq!(normalize_path("/").unwrap(), None);
    assert_eq!(normalize_path("a/..").unwrap(), None);
    assert_eq!(
        normalize_path("../etc/passwd"),
        Err(PathError::Escapes("../etc/passwd".into()))
    );
    assert_eq!(
        normalize_path("a/../../x"),
        Err(PathError::Escapes("a/../../x".into()))
    );
    assert_eq!(
        normalize_path("/../x"),
        Err(PathError::Escapes("/../x".into()))
    );
    assert!(matches!(normalize_path("a\0b"), Err(PathError::Nul(_))));
    for bad in ["", "/a", "a/", "a//b", "a/./b", "a/../b", ".."] {
        assert!(check_path(bad).is_err(), "{bad:?}");
        assert!(Tree::new().insert(dir(bad)).is_err(), "{bad:?}");
    }
    assert!(check_path("a/.b/c..d/...").is_ok());
}

#[test]
fn insert_validates_kinds() {
    let mut t = Tree::new();
    assert!(
        t.insert(Entry::new("d/.wh.x", EntryKind::Whiteout, M644))
            .is_ok()
    );
    assert!(
        t.insert(Entry::new("d/x", EntryKind::Whiteout, M644))
            .is_err()
    );
    assert!(
        t.insert(Entry::new("d/.wh..", EntryKind::Whiteout, M644))
            .is_err()
    );
    assert!(
        t.insert(Entry::new("d/.wh..wh..opq", EntryKind::Whiteout, M644))
            .is_err()
    );
    assert!(
        t.insert(Entry::new("d/.wh..wh..opq", EntryKind::Opaque, M644))
            .is_ok()
    );
    assert!(t.insert(Entry::hardlink("l", "l", M644)).is_err());
    assert!(t.insert(Entry::hardlink("l", "../x", M644)).is_err());
    assert!(t.insert(Entry::symlink("s", "", M644)).is_err());
    assert!(
        t.insert(Entry::new(
            "m",
            EntryKind::Fifo,
            Meta::new(0o10644, 0, 0, 0)
        ))
        .is_ok()
    );
    let mut e = dir("bad-mode");
    e.mode = 0o40755;
    assert!(t.insert(e).is_err());
    let wo = t.get("d/.wh.x").unwrap();
    assert_eq!(wo.whiteout_target().as_deref(), Some("d/x"));
    assert_eq!(
        t.get("d/.wh..wh..opq")
            .unwrap()
            .whiteout_target()
            .as_deref(),
        Some("d")
    );
    let root_opq = Entry::new(".wh..wh..opq", EntryKind::Opaque, M644);
    assert_eq!(root_opq.whiteout_target().as_deref(), Some(""));
}

#[test]
fn ensure_parents_and_dirs() {
    let (_d, store) = store();
    let mut t = tree_of(vec![
        file(&store, "x/y/z", b"1"),
        file(&store, "x/w", b"2"),
        dir("q"),
    ]);
    let meta = Meta::new(0o700, 1, 2, 3);
    assert_eq!(t.ensure_parents(meta).unwrap(), 2);
    assert_eq!(paths(&t), ["q", "x", "x/w", "x/y", "x/y/z"]);
    assert_eq!(t.get("x/y").unwrap().meta(), meta);
    assert_eq!(t.ensure_parents(meta).unwrap(), 0);
    t.check_complete().unwrap();

    t.ensure_dir("containers/onboot/000-a/lower", M755).unwrap();
    assert!(t.get("containers/onboot").unwrap().is_dir());
    assert!(t.ensure_dir("x/w/sub", M755).is_err(), "x/w is a file");
    let mut bad = tree_of(vec![file(&store, "f", b""), file(&store, "f/g/h", b"")]);
    assert!(matches!(
        bad.ensure_parents(meta),
        Err(TreeError::NotADirectory { .. })
    ));
}

#[test]
fn prefixed_moves_paths_and_link_targets_only() {
    let (_d, store) = store();
    let t = tree_of(vec![
        dir("bin"),
        file(&store, "bin/a", b"x"),
        Entry::hardlink("bin/b", "bin/a", M644),
        Entry::symlink("bin/c", "/bin/a", M644),
        Entry::symlink("bin/d", "a", M644),
    ]);
    let p = t.prefixed("/containers/onboot/000-x/lower/").unwrap();
    assert_eq!(
        kinds(&p),
        [
            (
                "containers/onboot/000-x/lower/bin".into(),
                "directory".into()
            ),
            ("containers/onboot/000-x/lower/bin/a".into(), "file".into()),
            (
                "containers/onboot/000-x/lower/bin/b".into(),
                "link>containers/onboot/000-x/lower/bin/a".into()
            ),
            (
                "containers/onboot/000-x/lower/bin/c".into(),
                "sym>/bin/a".into()
            ),
            ("containers/onboot/000-x/lower/bin/d".into(), "sym>a".into()),
        ]
    );
    assert_eq!(t.prefixed("").unwrap(), t);
    assert!(t.prefixed("../up").is_err());
}

#[test]
fn encode_decode_round_trip() {
    let (_d, store) = store();
    let mut f = file(&store, "etc/passwd", b"root:x:0:0");
    f.xattrs.insert(
        "security.capability".into(),
        vec![1, 0, 0, 2, b'\n', 0, 0xff],
    );
    f.xattrs.insert("user.comment".into(), b"a=b\nc".to_vec());
    f.pax.insert(
        "LINUXKIT.source".into(),
        "docker.io/library/alpine:3.20".into(),
    );
    f.pax.insert("LINUXKIT.location".into(), "onboot[0]".into());
    f.uid = 1000;
    f.gid = 4_000_000_000;
    let t = tree_of(vec![
        dir("etc"),
        f,
        Entry::hardlink("etc/shadow-link", "etc/passwd", M644),
        Entry::symlink("etc/mtab", "/proc/mounts", Meta::new(0o777, 0, 0, -5)),
        Entry::new(
            "dev/null",
            EntryKind::Char { major: 1, minor: 3 },
            Meta::new(0o666, 0, 0, 0),
        ),
        Entry::new(
            "dev/sda",
            EntryKind::Block {
                major: 8,
                minor: u32::MAX,
            },
            M644,
        ),
        Entry::new("run/fifo", EntryKind::Fifo, M644),
        Entry::new("w/.wh.gone", EntryKind::Whiteout, M644),
        Entry::new("w/.wh..wh..opq", EntryKind::Opaque, M644),
        Entry::dir("a-b", Meta::new(0o7777, u32::MAX, 0, i64::MIN)),
        Entry::dir("a", M755),
        Entry::dir("a/b", M755),
    ]);
    let bytes = t.encode();
    assert_eq!(bytes, t.clone().encode(), "deterministic");
    assert_eq!(&bytes[..8], b"LKBTREE\n");
    let back = Tree::decode(&bytes).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.encode(), bytes);
    assert_eq!(Tree::decode(&Tree::new().encode()).unwrap(), Tree::new());

    let mut wrong_version = bytes.clone();
    wrong_version[8] = 99;
    assert!(Tree::decode(&wrong_version).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Tree::decode(&trailing).is_err());
    assert!(Tree::decode(&bytes[..bytes.len() - 1]).is_err());
    // Swap the order of two single-entry trees' bodies: out of order must be refused.
    let one = |p: &str| tree_of(vec![dir(p)]).encode();
    let (x, y) = (one("b"), one("a"));
    // magic, version, no root, count.
    let mut two = x[..10].to_vec();
    two.push(2);
    two.extend_from_slice(&x[11..]);
    two.extend_from_slice(&y[11..]);
    assert!(matches!(Tree::decode(&two), Err(TreeError::Decode(m)) if m.contains("order")));
}

#[test]
fn the_root_entry_round_trips_and_version_1_still_decodes() {
    let mut t = tree_of(vec![dir("etc")]);
    let mut root = Entry::dir(ROOT_PATH, Meta::new(0o700, 5, 6, 7));
    root.pax
        .insert("LINUXKIT.location".into(), "init[0]".into());
    t.set_root(Some(root.clone())).unwrap();
    let bytes = t.encode();
    assert_eq!(bytes[8], TREE_FORMAT_VERSION);
    let back = Tree::decode(&bytes).unwrap();
    assert_eq!(back.root(), Some(&root));
    assert_eq!(back, t);
    assert_eq!(
        back.archive_entries()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
        [".", "etc"]
    );
    let mut bad_tag = bytes.clone();
    bad_tag[9] = 2;
    assert!(Tree::decode(&bad_tag).is_err());

    // Only a directory named `.` can be the root.
    assert!(t.set_root(Some(dir("etc"))).is_err());
    let file_root = Entry::new(ROOT_PATH, EntryKind::Fifo, Meta::new(0o644, 0, 0, 0));
    assert!(t.set_root(Some(file_root)).is_err());

    // Version 1: no root field after the version byte.
    let plain = tree_of(vec![dir("etc")]);
    let mut v1 = plain.encode();
    v1[8] = 1;
    v1.remove(9);
    assert_eq!(Tree::decode(&v1).unwrap(), plain);
}

#[test]
fn merge_whiteouts_hide_lower_layers_only() {
    let (_d, store) = store();
    let l1 = tree_of(vec![
        dir("a"),
        file(&store, "a/x", b"x"),
        dir("a/x-dir"),
        file(&store, "a/x-dir/f", b""),
        file(&store, "a/y", b"y"),
        file(&store, "b", b"b1"),
        dir("c"),
        file(&store, "c/deep", b""),
    ]);
    let l2 = tree_of(vec![
        Entry::new("a/.wh.x", EntryKind::Whiteout, M644),
        Entry::new("a/.wh.x-dir", EntryKind::Whiteout, M644),
        Entry::new(".wh.b", EntryKind::Whiteout, M644),
        file(&store, "b", b"b2"), // same layer: not hidden by its own whiteout
        Entry::new(".wh.c", EntryKind::Whiteout, M644),
        Entry::new("a/.wh.never-existed", EntryKind::Whiteout, M644),
    ]);
    let m = Tree::merge_layers(&[l1, l2]).unwrap();
    assert_eq!(paths(&m), ["a", "a/y", "b"]);
    assert_eq!(m.read_file(&store, "b").unwrap(), b"b2");
    m.check_complete().unwrap();
}

#[test]
fn merge_opaque_directory() {
    let (_d, store) = store();
    let l1 = tree_of(vec![
        dir("d"),
        file(&store, "d/x", b""),
        dir("d/sub"),
        file(&store, "d/sub/y", b""),
        dir("e"),
    ]);
    let l2 = tree_of(vec![
        Entry::dir("d", Meta::new(0o700, 5, 5, 9)),
        Entry::new("d/.wh..wh..opq", EntryKind::Opaque, M644),
        file(&store, "d/z", b"z"),
    ]);
    let m = Tree::merge_layers(&[l1.clone(), l2]).unwrap();
    assert_eq!(paths(&m), ["d", "d/z", "e"]);
    assert_eq!(m.get("d").unwrap().meta(), Meta::new(0o700, 5, 5, 9));
    // An opaque marker at the root hides everything below.
    let l3 = tree_of(vec![
        Entry::new(".wh..wh..opq", EntryKind::Opaque, M644),
        file(&store, "n", b""),
    ]);
    assert_eq!(paths(&Tree::merge_layers(&[l1, l3]).unwrap()), ["n"]);
}

#[test]
fn merge_replacements_between_files_and_dirs() {
    let (_d, store) = store();
    let l1 = tree_of(vec![
        file(&store, "p", b"file"),
        dir("q"),
        file(&store, "q/child", b""),
        dir("r"),
        file(&store, "r/keep", b""),
    ]);
    let l2 = tree_of(vec![
        Entry::dir("p", Meta::new(0o750, 0, 0, 0)),
        file(&store, "p/inside", b"i"),
        file(&store, "q", b"now a file"),
        Entry::dir("r", Meta::new(0o711, 7, 7, 7)),
        file(&store, "s/t/u", b"implicit parents"),
    ]);
    let m = Tree::merge_layers(&[l1, l2]).unwrap();
    assert_eq!(
        paths(&m),
        ["p", "p/inside", "q", "r", "r/keep", "s", "s/t", "s/t/u"]
    );
    assert!(m.get("p").unwrap().is_dir());
    assert_eq!(m.read_file(&store, "q").unwrap(), b"now a file");
    assert_eq!(
        m.get("r").unwrap().meta(),
        Meta::new(0o711, 7, 7, 7),
        "upper dir metadata wins"
    );
    assert_eq!(m.get("s/t").unwrap().meta(), Meta::IMPLICIT_DIR);
    // A layer entry below a lower non-directory replaces it with an implicit directory.
    let l3 = tree_of(vec![file(&store, "q/x", b"")]);
    let m2 = Tree::merge_layers(&[m.clone(), l3]).unwrap();
    assert!(m2.get("q").unwrap().is_dir());
    m2.check_complete().unwrap();
}

#[test]
fn hardlinks_are_normalised_to_the_first_path() {
    let (_d, store) = store();
    let mut t = tree_of(vec![
        Entry::file("z", blob(&store, b"c1"), Meta::new(0o4755, 3, 4, 5)),
        Entry::hardlink("m", "z", M644),
        Entry::hardlink("a", "m", M644), // chain
    ]);
    t.normalize_hardlinks().unwrap();
    assert_eq!(
        kinds(&t),
        [
            ("a".into(), "file".into()),
            ("m".into(), "link>a".into()),
            ("z".into(), "link>a".into())
        ]
    );
    assert_eq!(
        t.get("a").unwrap().meta(),
        Meta::new(0o4755, 3, 4, 5),
        "inode metadata moves"
    );
    assert_eq!(t.read_file(&store, "z").unwrap(), b"c1");
    t.check_complete().unwrap();

    let mut cyc = tree_of(vec![
        Entry::hardlink("a", "b", M644),
        Entry::hardlink("b", "a", M644),
    ]);
    assert!(cyc.normalize_hardlinks().is_err());
    let mut to_dir = tree_of(vec![dir("d"), Entry::hardlink("l", "d", M644)]);
    assert!(matches!(
        to_dir.normalize_hardlinks(),
        Err(TreeError::BadHardlinkTarget { .. })
    ));
    let mut external = tree_of(vec![Entry::hardlink("l", "lower/x", M644)]);
    external.normalize_layer_hardlinks().unwrap();
    assert!(matches!(
        external.normalize_hardlinks(),
        Err(TreeError::DanglingHardlink { .. })
    ));
}

#[test]
fn long_hardlink_chains_normalise_in_linear_time() {
    // Each link points to the one before it: walking every chain from scratch took quadratic
    // time (20,000 links: 49 s); each link is now followed once.
    const LINKS: usize = 20_000;
    let (_d, store) = store();
    let mut entries = vec![file(&store, "f", b"shared")];
    entries.push(Entry::hardlink("l00000", "f", M644));
    for i in 1..LINKS {
        entries.push(Entry::hardlink(
            format!("l{i:05}"),
            format!("l{:05}", i - 1),
            M644,
        ));
    }
    let mut layer = tree_of(entries.clone());
    layer.normalize_layer_hardlinks().unwrap();
    assert!(
        layer
            .iter()
            .skip(1)
            .all(|e| e.kind == EntryKind::Hardlink { target: "f".into() })
    );
    let merged = Tree::merge_layers(&[layer]).unwrap();
    assert_eq!(merged.read_file(&store, "l19999").unwrap(), b"shared");

    // The chain's primary is whited out by an upper layer: every link survives.
    let mut lower = tree_of(entries);
    lower.normalize_layer_hardlinks().unwrap();
    let upper = tree_of(vec![Entry::new(".wh.f", EntryKind::Whiteout, M644)]);
    let merged = Tree::merge_layers(&[lower, upper]).unwrap();
    assert_eq!(merged.len(), LINKS);
    assert_eq!(merged.read_file(&store, "l19999").unwrap(), b"shared");
    assert!(merged.iter().skip(1).all(|e| e.kind
        == EntryKind::Hardlink {
            target: "l00000".into()
        }));

    // A cycle that the first link only leads into is still found.
    let mut cycle = tree_of(vec![
        Entry::hardlink("a", "b", M644),
        Entry::hardlink("b", "c", M644),
        Entry::hardlink("c", "b", M644),
    ]);
    assert!(matches!(
        cycle.normalize_layer_hardlinks(),
        Err(TreeError::BadHardlinkTarget { .. })
    ));
}

#[test]
fn merge_keeps_old_content_for_links_whose_target_goes_away() {
    let (_d, store) = store();
    let base = || {
        let mut l = tree_of(vec![
            file(&store, "p", b"c1"),
            Entry::hardlink("q", "p", M644),
            Entry::hardlink("r", "p", M644),
        ]);
        l.normalize_layer_hardlinks().unwrap();
        l
    };
    // The primary is whited out: the first survivor takes the content, the rest follow it.
    let wh = tree_of(vec![Entry::new(".wh.p", EntryKind::Whiteout, M644)]);
    let m = Tree::merge_layers(&[base(), wh]).unwrap();
    assert_eq!(
        kinds(&m),
        [("q".into(), "file".into()), ("r".into(), "link>q".into())]
    );
    assert_eq!(m.read_file(&store, "r").unwrap(), b"c1");
    // The primary is replaced by a new file: the links keep the old inode.
    let new = tree_of(vec![file(&store, "p", b"c2")]);
    let m = Tree::merge_layers(&[base(), new]).unwrap();
    assert_eq!(m.read_file(&store, "p").unwrap(), b"c2");
    assert_eq!(m.read_file(&store, "q").unwrap(), b"c1");
    assert_eq!(
        m.get("r").unwrap().kind,
        EntryKind::Hardlink { target: "q".into() }
    );
    // A link in an upper layer to a lower file; then the lower file is replaced.
    let l1 = tree_of(vec![file(&store, "f", b"c1")]);
    let mut l2 = tree_of(vec![
        Entry::hardlink("g", "f", M644),
        Entry::hardlink("a", "f", M644),
    ]);
    l2.normalize_layer_hardlinks().unwrap();
    let l3 = tree_of(vec![file(&store, "f", b"c3")]);
    let m = Tree::merge_layers(&[l1.clone(), l2.clone()]).unwrap();
    assert_eq!(
        kinds(&m),
        [
            ("a".into(), "file".into()),
            ("f".into(), "link>a".into()),
            ("g".into(), "link>a".into())
        ]
    );
    let m = Tree::merge_layers(&[l1, l2, l3]).unwrap();
    assert_eq!(m.read_file(&store, "f").unwrap(), b"c3");
    assert_eq!(m.read_file(&store, "g").unwrap(), b"c1");
    assert_eq!(
        m.get("g").unwrap().kind,
        EntryKind::Hardlink { target: "a".into() }
    );
    m.check_complete().unwrap();
    // A link to something no layer has is an error.
    let dangling = tree_of(vec![Entry::hardlink("x", "nope", M644)]);
    assert!(matches!(
        Tree::merge_layers(&[dangling]),
        Err(TreeError::DanglingHardlink { .. })
    ));
}

#[test]
fn read_file_follows_hardlinks_not_symlinks() {
    let (_d, store) = store();
    let t = tree_of(vec![
        file(&store, "a", b"data"),
        Entry::hardlink("b", "a", M644),
        Entry::symlink("c", "a", M644),
    ]);
    assert_eq!(t.read_file(&store, "b").unwrap(), b"data");
    assert!(matches!(
        t.read_file(&store, "c"),
        Err(TreeError::NotAFile { .. })
    ));
    assert!(matches!(
        t.read_file(&store, "nope"),
        Err(TreeError::NotFound { .. })
    ));
    assert_eq!(t.content_size(), 4);
}
