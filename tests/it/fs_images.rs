//! `kernel+squashfs` and `kernel+erofs` end to end: one `lkb build` of `examples/minimal.yml`
//! with `tar`, then each image read by its own project's tools — `unsquashfs -lln`
//! (squashfs-tools), `fsck.erofs` and `fsck.erofs --extract` (erofs-utils) — must hold the
//! same entries as the tar without `boot/`: path, type, mode, owner, size, mtime, link target,
//! and for EROFS the file contents.
//!
//! What these oracles cannot show: erofs-utils 1.5 extracts hard links as separate files and
//! clears setuid/setgid when it changes the owner after the mode, so the EROFS comparison
//! masks those bits (lkb-disk's own tests read the modes from the inodes and mount the image
//! with the kernel). No boot test: the example kernel has squashfs and EROFS as modules, and
//! its init runs from the initrd, not from a root it would have to mount.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lkb_tests::cli::Lkb;

use crate::media::{tool, workspace_in};

const FORMATS: &str = "kernel+squashfs,kernel+erofs,tar";

/// One entry as every listing here can express it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    path: String,
    /// `d`, `-`, `l`, `c`, `b`, `p`, `s`.
    kind: char,
    mode: u32,
    owner: String,
    /// Files: their size; symlinks: their target; others: empty.
    detail: String,
    mtime: String,
}

struct Images {
    lkb: Lkb,
    dir: PathBuf,
}

fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fs-images");
        let lkb = workspace_in(&root, "");
        let run = lkb
            .build(&["//examples:minimal", "-f", FORMATS, "--dir", "out"])
            .unwrap();
        assert_eq!(run.code, 0, "lkb build -f {FORMATS}:\n{}", run.stderr);
        Images {
            lkb,
            dir: root.join("out"),
        }
    })
}

/// `rwsr-xr-x`-style permissions (nine characters) as mode bits.
fn permissions(text: &str) -> u32 {
    let c: Vec<char> = text.chars().collect();
    assert_eq!(c.len(), 9, "{text}");
    let mut mode = 0;
    for (i, bit) in [
        (0, 0o400),
        (1, 0o200),
        (3, 0o040),
        (4, 0o020),
        (6, 0o004),
        (7, 0o002),
    ] {
        if c[i] != '-' {
            mode |= bit;
        }
    }
    for (i, exec, special) in [(2, 0o100, 0o4000), (5, 0o010, 0o2000), (8, 0o001, 0o1000)] {
        match c[i] {
            'x' => mode |= exec,
            's' | 't' => mode |= exec | special,
            'S' | 'T' => mode |= special,
            _ => {}
        }
    }
    mode
}

/// Parses `tar -tv --numeric-owner` or `unsquashfs -lln` lines (`MODE UID/GID SIZE DATE TIME
/// PATH [-> TARGET | link to TARGET]`), with `strip` taken off the paths. Hard links become
/// their target's entry under their own path.
fn parse_listing(text: &str, strip: &str) -> Vec<Listed> {
    let mut by_path: BTreeMap<String, Listed> = BTreeMap::new();
    let mut links = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 {
            continue;
        }
        let rest = fields[5..].join(" ");
        let (path, target) = match rest.split_once(" -> ") {
            Some((path, target)) => (path.to_owned(), Some(target.to_owned())),
            None => match rest.split_once(" link to ") {
                Some((path, target)) => {
                    links.push((clean(path, strip), clean(target, strip)));
                    continue;
                }
                None => (rest, None),
            },
        };
        let path = clean(&path, strip);
        let kind = fields[0].chars().next().unwrap();
        let detail = match kind {
            '-' => fields[2].to_owned(),
            'l' => target.unwrap_or_default(),
            _ => String::new(),
        };
        by_path.insert(
            path.clone(),
            Listed {
                path,
                kind,
                mode: permissions(&fields[0][1..]),
                owner: fields[1].to_owned(),
                detail,
                mtime: format!("{} {}", fields[3], fields[4]),
            },
        );
    }
    for (path, target) in links {
        let mut entry = by_path[&target].clone();
        entry.path = path.clone();
        by_path.insert(path, entry);
    }
    by_path.into_values().collect()
}

/// `path` relative to the root, which is `.`.
fn clean(path: &str, strip: &str) -> String {
    let path = path
        .strip_prefix(strip)
        .unwrap_or(path)
        .trim_start_matches('/')
        .trim_start_matches("./")
        .trim_end_matches('/');
    match path {
        "" => ".".to_owned(),
        path => path.to_owned(),
    }
}

/// The tar's entries without `boot` and what is below it (the later of two entries of one
/// path wins, as extraction does).
fn tar_without_boot() -> Vec<Listed> {
    let tar = images().dir.join("minimal.tar").display().to_string();
    let listing = tool("tar", &["-tv", "--numeric-owner", "-f", &tar]);
    parse_listing(&listing, "")
        .into_iter()
        .filter(|e| e.path != "boot" && !e.path.starts_with("boot/"))
        .collect()
}

#[test]
fn unsquashfs_lists_the_tar_without_boot() {
    let image = images().dir.join("minimal-squashfs.img");
    let path = image.display().to_string();
    let superblock = tool("unsquashfs", &["-s", &path]);
    assert!(superblock.contains("Compression gzip"), "{superblock}");
    assert!(superblock.contains("Block size 131072"), "{superblock}");
    let listing = tool("unsquashfs", &["-lln", "-d", "ROOT", &path]);
    let squashfs: Vec<Listed> = parse_listing(&listing, "ROOT");
    let expected = tar_without_boot();
    assert!(expected.len() > 100, "{} entries", expected.len());
    let missing: Vec<&Listed> = expected.iter().filter(|e| !squashfs.contains(e)).collect();
    let extra: Vec<&Listed> = squashfs.iter().filter(|e| !expected.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "in the tar, not as such in the squashfs: {missing:#?}\nin the squashfs only: {extra:#?}"
    );
}

#[test]
fn fsck_erofs_accepts_the_image_and_extracts_the_tar_without_boot() {
    let images = images();
    let image = images.dir.join("minimal-erofs.img").display().to_string();
    tool("fsck.erofs", &[&image]);
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let from_erofs = scratch.path().join("erofs");
    tool(
        "fsck.erofs",
        &[&format!("--extract={}", from_erofs.display()), &image],
    );
    let from_tar = scratch.path().join("tar");
    fs_err::create_dir_all(&from_tar).unwrap();
    let tar = images.dir.join("minimal.tar").display().to_string();
    tool(
        "tar",
        &[
            "-xpf",
            &tar,
            "--numeric-owner",
            "-C",
            &from_tar.display().to_string(),
        ],
    );
    fs_err::remove_dir_all(from_tar.join("boot")).unwrap();
    let (a, b) = (describe(&from_erofs), describe(&from_tar));
    let differing: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}:\n  erofs: {:?}\n  tar:   {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(differing.is_empty(), "{}", differing.join("\n"));
    assert!(a.len() > 100, "{} entries", a.len());
}

/// Type, permission bits (setuid/setgid masked: see the module docs), owner, mtime, size and
/// content digest or link target of every path below `root`.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in crate::build_registry::walk(root) {
        let full = root.join(&path);
        let m = fs_err::symlink_metadata(&full).unwrap();
        let ft = m.file_type();
        let common = format!("{:o} {}:{}", m.mode() & 0o1777, m.uid(), m.gid());
        let what = if ft.is_dir() {
            format!("dir {common}")
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs_err::read_link(&full).unwrap().display())
        } else if ft.is_file() {
            let bytes = fs_err::read(&full).unwrap();
            format!(
                "file {common} mtime {} size {} {}",
                m.mtime(),
                bytes.len(),
                lkb_tests::oci::Digest::of(&bytes)
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("device {common} {:x}", m.rdev())
        } else {
            format!("other {common}")
        };
        out.insert(path, what);
    }
    out
}

#[test]
fn kernel_and_cmdline_are_written_beside_the_images_and_rebuilds_are_no_ops() {
    let images = images();
    for name in ["minimal-kernel", "minimal-cmdline"] {
        assert!(images.dir.join(name).is_file(), "{name}");
    }
    let run = images
        .lkb
        .build(&["//examples:minimal", "-f", FORMATS, "--dir", "out"])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(run.summary().unwrap()["actions"]["executed"], 0);
}
