//! End-to-end checks of lkb's output files, built from the example images (an OCI layout made
//! from Debian packages): the initrd as `gzip` + `cpio` see it, the rootfs tar as `tar` sees it
//! (and entry for entry equal to the initrd), `tar-kernel-initrd`, merging several yml files,
//! and `//pkg/...` patterns with a no-op rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use lkb_tests::cli::{Lkb, Run, example_layout, repo_root, workspace};

use crate::build_registry::{drop_sbom, initrd_archives, layered_plus_long_image, run_tool, walk};
use lkb_tests::examples::INIT_SCRIPT;
use lkb_tests::oci::{Artifact, Digest, Image, OciLayout, Platform};
use serde_json::{Value, json};

const KERNEL_REF: &str = "localhost/lkb-examples/kernel:1";
const INIT_REF: &str = "localhost/lkb-examples/init:1";
const DHCPCD_REF: &str = "localhost/lkb-examples/dhcpcd:1";
const GETTY_REF: &str = "localhost/lkb-examples/getty:1";
/// LinuxKit's mtime for generated entries (2017-04-18T16:30:00Z).
const DEFAULT_MTIME: u64 = 1_492_533_000;
const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
const NO_RESOLV: &str = "\n# no resolv.conf configured\n";

// ---------------------------------------------------------------------------------------------
// helpers

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).unwrap();
    }
    fs_err::write(&path, text).unwrap();
    path
}

fn repo_yml(name: &str) -> String {
    fs_err::read_to_string(repo_root().join("examples").join(name)).unwrap()
}

/// A scratch workspace whose `lkb.toml` lists the example layout, holding `ymls`.
fn example_workspace(ymls: &[(&str, &str)]) -> tempfile::TempDir {
    let layout = example_layout().unwrap();
    let ws = workspace(&[&layout], &[]).unwrap();
    for (name, text) in ymls {
        write(ws.path(), name, text);
    }
    ws
}

fn build_ok(lkb: &Lkb, args: &[&str]) -> Run {
    lkb.build(args).unwrap().ok().unwrap()
}

fn summary_u64(run: &Run, pointer: &str) -> u64 {
    let summary = run.summary().unwrap();
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {summary}"))
}

fn lines(bytes: Vec<u8>) -> Vec<String> {
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `cpio -it` of each archive.
fn cpio_names(archives: &[Vec<u8>]) -> Vec<Vec<String>> {
    archives
        .iter()
        .map(|a| {
            lines(run_tool(
                Command::new("cpio").args(["-it", "--quiet"]),
                Some(a),
            ))
        })
        .collect()
}

/// Extracts each archive in order with `cpio -idmu --no-absolute-filenames` (later wins).
fn cpio_extract(archives: &[Vec<u8>], dest: &Path) {
    fs_err::create_dir_all(dest).unwrap();
    for archive in archives {
        run_tool(
            Command::new("cpio")
                .args(["-idmu", "--quiet", "--no-absolute-filenames"])
                .current_dir(dest),
            Some(archive),
        );
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn stat(path: &Path) -> (u64, i64, i64) {
    let m = fs_err::metadata(path).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

/// The linux/amd64 image of an example ref, from the example layout.
fn example_image(reference: &str) -> Image {
    let layout = OciLayout::open(&example_layout().unwrap()).unwrap();
    match layout.load(reference).unwrap() {
        Artifact::Index(index) => index
            .image_for(&Platform::linux_amd64())
            .unwrap_or_else(|| panic!("{reference} has no linux/amd64 image"))
            .clone(),
        Artifact::Image(image) => image,
    }
}

/// What one path of an image's flattened filesystem is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fs {
    Dir,
    File(Vec<u8>, u32),
    Symlink(String),
}

fn clean(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_end_matches('/')
        .to_owned()
}

/// Applies a tar stream to a flattened view (the example images have no whiteouts).
fn apply_tar(tar_bytes: &[u8], tree: &mut BTreeMap<String, Fs>) {
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = clean(&entry.path().unwrap().to_string_lossy());
        if name.is_empty() || name == "." {
            continue;
        }
        assert!(
            !name.rsplit('/').next().unwrap().starts_with(".wh."),
            "example images have no whiteouts: {name}"
        );
        let header = entry.header().clone();
        let node = match header.entry_type() {
            tar::EntryType::Directory => Fs::Dir,
            tar::EntryType::Symlink => Fs::Symlink(
                entry
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            tar::EntryType::Link => {
                let target = clean(&entry.link_name().unwrap().unwrap().to_string_lossy());
                tree[&target].clone()
            }
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                Fs::File(data, header.mode().unwrap() & 0o7777)
            }
            other => panic!("unexpected {other:?} {name} in an example image"),
        };
        tree.insert(name, node);
    }
}

/// An example image's filesystem, layers applied in order.
fn image_fs(reference: &str) -> BTreeMap<String, Fs> {
    let mut tree = BTreeMap::new();
    for layer in &example_image(reference).layers {
        apply_tar(&layer.uncompressed().unwrap(), &mut tree);
    }
    tree
}

/// Asserts every path of `expected` is in the extracted dir `root` with that type, content
/// and mode.
fn assert_contains_fs(root: &Path, expected: &BTreeMap<String, Fs>, skip: &[&str]) {
    assert!(!expected.is_empty());
    for (path, node) in expected {
        if skip.contains(&path.as_str()) {
            continue;
        }
        let full = root.join(path);
        let meta = fs_err::symlink_metadata(&full)
            .unwrap_or_else(|e| panic!("{path} missing below {}: {e}", root.display()));
        match node {
            Fs::Dir => assert!(meta.is_dir(), "{path}"),
            Fs::File(content, mode) => {
                assert!(meta.file_type().is_file(), "{path}");
                assert_eq!(meta.mode() & 0o7777, *mode, "mode of {path}");
                assert!(
                    &fs_err::read(&full).unwrap() == content,
                    "content of {path}"
                );
            }
            Fs::Symlink(target) => assert_eq!(
                fs_err::read_link(&full).unwrap().to_string_lossy(),
                target.as_str(),
                "{path}"
            ),
        }
    }
}

/// One archive entry, as both tar and newc can express it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    name: String,
    /// `d`, `-`, `l`, `c`, `b`, `p`, or `h` for a hard link to `link`.
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    /// Content size (0 for directories and hard links; target length for symlinks).
    size: u64,
    mtime: u64,
    link: String,
    rdev: (u32, u32),
}

/// Parses one newc archive. Hard-link group members after the first become `h` records
/// pointing at the first, which carries the group's size (newc puts the data on the last).
fn parse_newc(archive: &[u8]) -> Vec<Rec> {
    let align = |p: usize| (p + 3) & !3;
    let mut out: Vec<Rec> = Vec::new();
    let mut groups: BTreeMap<u32, usize> = BTreeMap::new();
    let mut pos = 0;
    loop {
        assert_eq!(&archive[pos..pos + 6], b"070701", "newc magic at {pos}");
        let field = |i: usize| {
            let s = std::str::from_utf8(&archive[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap();
            u32::from_str_radix(s, 16).unwrap()
        };
        let (ino, mode, uid, gid, nlink, mtime, size) = (
            field(0),
            field(1),
            field(2),
            field(3),
            field(4),
            field(5),
            field(6),
        );
        let (rdev, namesize) = ((field(9), field(10)), field(11) as usize);
        let name_end = pos + 110 + namesize;
        let name = String::from_utf8(archive[pos + 110..name_end - 1].to_vec()).unwrap();
        let data_start = align(name_end);
        let data = &archive[data_start..data_start + size as usize];
        pos = align(data_start + size as usize);
        if name == "TRAILER!!!" {
            return out;
        }
        let kind = match mode & 0o170000 {
            0o040000 => 'd',
            0o100000 => '-',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            0o010000 => 'p',
            other => panic!("{name}: file type {other:o}"),
        };
        let mut rec = Rec {
            name,
            kind,
            mode: mode & 0o7777,
            uid: uid.into(),
            gid: gid.into(),
            size: size.into(),
            mtime: mtime.into(),
            link: if kind == 'l' {
                String::from_utf8(data.to_vec()).unwrap()
            } else {
                String::new()
            },
            rdev: if matches!(kind, 'c' | 'b') {
                rdev
            } else {
                (0, 0)
            },
        };
        if kind == '-' && nlink > 1 {
            match groups.get(&ino) {
                Some(&first) => {
                    out[first].size = out[first].size.max(rec.size);
                    rec.kind = 'h';
                    rec.link = out[first].name.clone();
                    rec.size = 0;
                }
                None => {
                    groups.insert(ino, out.len());
                }
            }
        }
        out.push(rec);
    }
}

/// Parses a tar with the `tar` crate: records and each entry's PAX records.
fn parse_tar(bytes: &[u8]) -> Vec<(Rec, BTreeMap<String, String>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut pax = BTreeMap::new();
        if let Some(records) = entry.pax_extensions().unwrap() {
            for record in records {
                let record = record.unwrap();
                pax.insert(
                    record.key().unwrap().to_owned(),
                    record.value().unwrap().to_owned(),
                );
            }
        }
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => '-',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            other => panic!("unexpected tar entry type {other:?}"),
        };
        let link = match kind {
            'l' | 'h' => entry
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            _ => String::new(),
        };
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let size = match kind {
            'l' => link.len() as u64,
            _ => entry.size(),
        };
        let rdev = match kind {
            'c' | 'b' => (
                header.device_major().unwrap().unwrap(),
                header.device_minor().unwrap().unwrap(),
            ),
            _ => (0, 0),
        };
        let mut sink = Vec::new();
        entry.read_to_end(&mut sink).unwrap();
        let rec = Rec {
            name,
            kind,
            mode: header.mode().unwrap() & 0o7777,
            uid: pax
                .get("uid")
                .map_or_else(|| header.uid().unwrap(), |v| v.parse().unwrap()),
            gid: pax
                .get("gid")
                .map_or_else(|| header.gid().unwrap(), |v| v.parse().unwrap()),
            size,
            mtime: pax.get("mtime").map_or_else(
                || header.mtime().unwrap(),
                |v| v.split('.').next().unwrap().parse().unwrap(),
            ),
            link,
            rdev,
        };
        out.push((rec, pax));
    }
    out
}

/// Files of the rootfs tar that the initrd does not hold (they are written beside it).
const OUTSIDE_INITRD: [&str; 2] = ["boot/kernel", "boot/cmdline"];

/// Asserts that the rootfs tar and the initrd hold the same entries, apart from
/// [`OUTSIDE_INITRD`]: the same names in the same order (`tar -t` vs `cpio -t`), the same type,
/// mode, owner, size, mtime and link target per entry (parsed), and that GNU tar and GNU cpio
/// extract them to the same tree. Returns the tar's entries with their PAX records.
fn assert_tar_agrees_with_initrd(
    scratch: &Path,
    tar_path: &Path,
    initrd: &Path,
) -> Vec<(Rec, BTreeMap<String, String>)> {
    let tar_names = lines(run_tool(Command::new("tar").arg("-tf").arg(tar_path), None));
    let archives = initrd_archives(initrd);
    let cpio_all: Vec<String> = cpio_names(&archives).into_iter().flatten().collect();
    let tar_inside: Vec<String> = tar_names
        .iter()
        .filter(|n| !OUTSIDE_INITRD.contains(&n.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        tar_inside, cpio_all,
        "tar -t and cpio -t list different names"
    );

    let tar_entries = parse_tar(&fs_err::read(tar_path).unwrap());
    let tar_recs: Vec<Rec> = tar_entries
        .iter()
        .map(|(r, _)| r.clone())
        .filter(|r| !OUTSIDE_INITRD.contains(&r.name.as_str()))
        .collect();
    let cpio_recs: Vec<Rec> = archives.iter().flat_map(|a| parse_newc(a)).collect();
    assert_eq!(tar_recs.len(), cpio_recs.len());
    for (t, c) in tar_recs.iter().zip(&cpio_recs) {
        if t.kind == 'h' || c.kind == 'h' {
            // A hard link's own header fields mean nothing (it is the target's inode).
            assert_eq!(
                (&t.name, t.kind, &t.link),
                (&c.name, c.kind, &c.link),
                "hard links disagree"
            );
        } else {
            assert_eq!(t, c, "tar and initrd disagree");
        }
    }

    // Later entries win in both; the extracted trees are the same.
    let from_tar = scratch.join("from-tar");
    fs_err::create_dir_all(&from_tar).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xpf")
            .arg(tar_path)
            .args(["--numeric-owner", "-C"])
            .arg(&from_tar),
        None,
    );
    for name in OUTSIDE_INITRD {
        let _ = fs_err::remove_file(from_tar.join(name));
    }
    let from_cpio = scratch.join("from-cpio");
    cpio_extract(&archives, &from_cpio);
    let (a, b) = (snapshot(&from_tar), snapshot(&from_cpio));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}:\n  tar:  {:?}\n  cpio: {:?}", a.get(k), b.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "tar and cpio extract differently:\n{}",
        differing.join("\n")
    );
    tar_entries
}

/// Type, permissions, owner, size, content digest, mtime (files), link target, and hard-link
/// group (the first path of the inode, in path order) of every path below `root`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::FileTypeExt as _;
    let mut first_of_inode: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for path in walk(root) {
        let full = root.join(&path);
        let m = fs_err::symlink_metadata(&full).unwrap();
        let ft = m.file_type();
        let common = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
        let desc = if ft.is_dir() {
            format!("dir {common}")
        } else if ft.is_symlink() {
            format!(
                "symlink {}:{} -> {}",
                m.uid(),
                m.gid(),
                fs_err::read_link(&full).unwrap().display()
            )
        } else if ft.is_file() {
            let group = if m.nlink() > 1 {
                first_of_inode
                    .entry(m.ino())
                    .or_insert_with(|| path.clone())
                    .clone()
            } else {
                String::new()
            };
            format!(
                "file {common} size {} mtime {} {} nlink {} {group}",
                m.len(),
                m.mtime(),
                Digest::of(&fs_err::read(&full).unwrap()),
                m.nlink()
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("device {common} rdev {:x}", m.rdev())
        } else {
            format!("other {common}")
        };
        out.insert(path, desc);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 8. the initrd through gzip and cpio

#[test]
fn initrd_extracts_with_cpio_into_the_linuxkit_layout() {
    let ws = example_workspace(&[("minimal.yml", &repo_yml("minimal.yml"))]);
    let lkb = Lkb::new(ws.path()).unwrap();
    let out = ws.path().join("out");
    build_ok(&lkb, &["minimal.yml", "--dir", "out"]);
    let written: BTreeSet<String> = fs_err::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from(
            ["minimal-kernel", "minimal-initrd.img", "minimal-cmdline"].map(String::from)
        )
    );
    assert_eq!(
        fs_err::read_to_string(out.join("minimal-cmdline")).unwrap(),
        "console=tty0 console=ttyS0"
    );

    // One archive per section, in LinuxKit's order.
    let archives = initrd_archives(&out.join("minimal-initrd.img"));
    let mut names = cpio_names(&archives);
    drop_sbom(&mut names);
    assert_eq!(names.len(), 4, "kernel, init, onboot, service: {names:#?}");
    // The kernel tar's `./` entry comes first, as `.` (LinuxKit copies it too).
    assert_eq!(names[0][..2], [".", "boot"]);
    assert!(
        names[0]
            .iter()
            .all(|n| n == "." || n == "boot" || n.starts_with("lib")),
        "{:#?}",
        names[0]
    );
    assert!(names[1].contains(&"init".to_string()));
    assert!(names[1].contains(&"bin/busybox".to_string()));
    for (archive, bundle) in [
        (2, "containers/onboot/000-dhcpcd"),
        (3, "containers/services/getty"),
    ] {
        assert!(
            names[archive]
                .iter()
                .all(|n| bundle.starts_with(n.as_str()) || n.starts_with(&format!("{bundle}/"))),
            "{bundle}: {:#?}",
            names[archive]
        );
        for generated in ["config.json", "runtime.json", "tmp", "rootfs", "lower"] {
            assert!(
                names[archive].contains(&format!("{bundle}/{generated}")),
                "{bundle}/{generated}"
            );
        }
    }

    let root = ws.path().join("root");
    cpio_extract(&archives, &root);

    // boot/ is there and empty: kernel and cmdline are separate files.
    assert!(root.join("boot").is_dir());
    assert_eq!(fs_err::read_dir(root.join("boot")).unwrap().count(), 0);

    // lib/modules/… exactly as in the kernel image's kernel.tar.
    let kernel = image_fs(KERNEL_REF);
    let Some(Fs::File(kernel_tar, _)) = kernel.get("kernel.tar") else {
        panic!("no kernel.tar in {KERNEL_REF}");
    };
    let mut modules = BTreeMap::new();
    apply_tar(kernel_tar, &mut modules);
    assert!(
        modules
            .keys()
            .any(|k| k.starts_with("lib/modules/") && k.ends_with(".ko"))
    );
    assert_contains_fs(&root, &modules, &[]);
    let Some(Fs::File(kernel_bytes, _)) = kernel.get("kernel") else {
        panic!("no kernel in {KERNEL_REF}");
    };
    assert!(fs_err::read(out.join("minimal-kernel")).unwrap() == *kernel_bytes);

    // The init image at /, with init's resolv.conf symlink.
    let init = image_fs(INIT_REF);
    assert_contains_fs(&root, &init, &["etc/resolv.conf", "etc/hosts"]);
    assert_eq!(
        fs_err::read_to_string(root.join("init")).unwrap(),
        INIT_SCRIPT
    );
    let busybox = fs_err::symlink_metadata(root.join("bin/busybox")).unwrap();
    assert!(busybox.file_type().is_file() && busybox.mode() & 0o111 != 0);
    assert_eq!(
        fs_err::read_link(root.join("etc/resolv.conf")).unwrap(),
        Path::new("/run/resolvconf/resolv.conf")
    );
    assert_eq!(
        fs_err::read_to_string(root.join("etc/hosts")).unwrap(),
        HOSTS
    );
    for dir in ["dev", "proc", "sys"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }

    // The onboot bundle.
    let dhcpcd = root.join("containers/onboot/000-dhcpcd");
    assert_contains_fs(
        &dhcpcd.join("lower"),
        &image_fs(DHCPCD_REF),
        &["etc/resolv.conf", "etc/hosts"],
    );
    assert_eq!(
        fs_err::read_to_string(dhcpcd.join("lower/etc/resolv.conf")).unwrap(),
        NO_RESOLV
    );
    assert_eq!(
        fs_err::read_to_string(dhcpcd.join("lower/etc/hosts")).unwrap(),
        HOSTS
    );
    assert!(dhcpcd.join("tmp").is_dir() && dhcpcd.join("rootfs").is_dir());
    let config = read_json(&dhcpcd.join("config.json"));
    assert_eq!(
        config["process"]["args"],
        json!(["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"])
    );
    assert_eq!(config["root"]["path"], "rootfs");
    let runtime = read_json(&dhcpcd.join("runtime.json"));
    let overlay = runtime["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "overlay")
        .unwrap_or_else(|| panic!("{runtime}"));
    assert!(
        strings(&overlay["options"])
            .contains(&"lowerdir=/containers/onboot/000-dhcpcd/lower".to_string()),
        "{overlay}"
    );

    // The service bundle: the image's own command, the yml's env.
    let getty = root.join("containers/services/getty");
    let getty_fs = image_fs(GETTY_REF);
    assert_contains_fs(
        &getty.join("lower"),
        &getty_fs,
        &["etc/resolv.conf", "etc/hosts"],
    );
    let config = read_json(&getty.join("config.json"));
    assert!(strings(&config["process"]["env"]).contains(&"INSECURE=true".to_string()));
    let image_config = example_image(GETTY_REF).config_json();
    let mut args = Vec::new();
    for key in ["Entrypoint", "Cmd"] {
        if let Some(list) = image_config["config"][key].as_array() {
            args.extend(list.iter().map(|v| v.as_str().unwrap().to_owned()));
        }
    }
    assert!(!args.is_empty());
    assert_eq!(strings(&config["process"]["args"]), args);
    read_json(&getty.join("runtime.json"));
}

// ---------------------------------------------------------------------------------------------
// 9. the rootfs tar against the initrd

#[test]
fn tar_output_agrees_with_the_initrd_entry_for_entry() {
    let ws = example_workspace(&[("minimal.yml", &repo_yml("minimal.yml"))]);
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(
        &lkb,
        &[
            "minimal.yml",
            "--dir",
            "out",
            "-f",
            "kernel+initrd",
            "-f",
            "tar",
            "-f",
            "docker",
        ],
    );
    let out = ws.path().join("out");
    let tar_path = out.join("minimal.tar");

    // GNU tar reads it; boot/kernel and boot/cmdline are in it with the right sizes.
    let listing = lines(run_tool(
        Command::new("tar")
            .args(["-tvf"])
            .arg(&tar_path)
            .arg("--numeric-owner"),
        None,
    ));
    let size_of = |name: &str| -> u64 {
        let line = listing
            .iter()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not in tar -tv:\n{}", listing.join("\n")));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    assert_eq!(
        size_of("boot/kernel"),
        fs_err::metadata(out.join("minimal-kernel")).unwrap().len()
    );
    assert_eq!(
        size_of("boot/cmdline"),
        "console=tty0 console=ttyS0".len() as u64
    );
    let tar_names = lines(run_tool(
        Command::new("tar").arg("-tf").arg(&tar_path),
        None,
    ));
    assert_eq!(tar_names.len(), listing.len());

    let tar_entries =
        assert_tar_agrees_with_initrd(ws.path(), &tar_path, &out.join("minimal-initrd.img"));
    assert_eq!(tar_entries.len(), tar_names.len());

    // LinuxKit's provenance records on every entry (but the SBOM, as in LinuxKit).
    for (rec, pax) in tar_entries
        .iter()
        .filter(|(r, _)| r.name != "sbom.spdx.json")
    {
        assert!(
            pax.contains_key("LINUXKIT.source") && pax.contains_key("LINUXKIT.location"),
            "{} has no provenance: {pax:?}",
            rec.name
        );
    }
    let provenance = |name: &str| -> (String, String) {
        let (_, pax) = tar_entries
            .iter()
            .find(|(r, _)| r.name == name)
            .unwrap_or_else(|| panic!("{name} not in the tar"));
        (
            pax["LINUXKIT.source"].clone(),
            pax["LINUXKIT.location"].clone(),
        )
    };
    let expect = |name: &str, source: &str, location: &str| {
        assert_eq!(
            provenance(name),
            (source.to_owned(), location.to_owned()),
            "{name}"
        );
    };
    expect("boot/kernel", KERNEL_REF, "kernel");
    expect("boot/cmdline", KERNEL_REF, "kernel");
    expect("init", INIT_REF, "init[0]");
    expect("bin/busybox", INIT_REF, "init[0]");
    expect(
        "containers/onboot/000-dhcpcd/config.json",
        DHCPCD_REF,
        "onboot[0]",
    );
    expect(
        "containers/onboot/000-dhcpcd/lower/etc/hosts",
        DHCPCD_REF,
        "onboot[0]",
    );
    expect(
        "containers/services/getty/runtime.json",
        GETTY_REF,
        "services[0]",
    );
    let kernel_rec = &tar_entries
        .iter()
        .find(|(r, _)| r.name == "boot/cmdline")
        .unwrap()
        .0;
    assert_eq!((kernel_rec.mode, kernel_rec.mtime), (0o644, DEFAULT_MTIME));

    // `docker`: the same entries and records, plus LinuxKit's Dockerfile (0644, root, its
    // time, no provenance) after the files and before the SBOM.
    let docker = parse_tar(&fs_err::read(out.join("minimal.docker")).unwrap());
    let at = tar_entries
        .iter()
        .position(|(r, _)| r.name == "sbom.spdx.json")
        .unwrap_or(tar_entries.len());
    let mut expected = tar_entries.clone();
    expected.insert(
        at,
        (
            Rec {
                name: "Dockerfile".into(),
                kind: '-',
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: DOCKERFILE.len() as u64,
                mtime: DEFAULT_MTIME,
                link: String::new(),
                rdev: (0, 0),
            },
            BTreeMap::new(),
        ),
    );
    assert_eq!(docker, expected);
    let extracted = run_tool(
        Command::new("tar")
            .args(["-xOf"])
            .arg(out.join("minimal.docker"))
            .arg("Dockerfile"),
        None,
    );
    assert_eq!(extracted, DOCKERFILE);
}

/// LinuxKit's Dockerfile entry, byte for byte.
const DOCKERFILE: &[u8] = b"\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n";

/// The same agreement on an image that has what the examples lack: hard links, names and
/// link targets over 255 bytes, owners other than root, setuid, whiteouts and an opaque dir;
/// plus a `files:` entry with its own owner. The image comes from an OCI layout.
#[test]
fn tar_and_initrd_agree_on_hard_links_long_names_and_owners() {
    let image = layered_plus_long_image();
    let layout_dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(layout_dir.path()).unwrap();
    layout.add("localhost/lkb-tests/layered:1", &image).unwrap();
    let ws = workspace(&[layout_dir.path()], &[]).unwrap();
    write(
        ws.path(),
        "layered.yml",
        "onboot:\n  - name: x\n    image: localhost/lkb-tests/layered:1\nservices:\n  - name: ro\n    image: localhost/lkb-tests/layered:1\n    readonly: true\nfiles:\n  - path: etc/owned/by-someone\n    contents: \"mine\\n\"\n    mode: \"0640\"\n    uid: 1234\n    gid: 5678\n",
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(
        &lkb,
        &[
            "layered.yml",
            "--dir",
            "out",
            "-f",
            "kernel+initrd",
            "-f",
            "tar",
        ],
    );
    let out = ws.path().join("out");
    let entries = assert_tar_agrees_with_initrd(
        ws.path(),
        &out.join("layered.tar"),
        &out.join("layered-initrd.img"),
    );
    let find = |name: &str| {
        entries
            .iter()
            .find(|(r, _)| r.name == name)
            .unwrap_or_else(|| panic!("{name} not in the tar"))
    };
    let lower = "containers/onboot/000-x/lower";
    let link = &find(&format!("{lower}/usr/bin/tool-hardlink")).0;
    assert_eq!(
        (link.kind, link.link.as_str()),
        ('h', &*format!("{lower}/usr/bin/tool"))
    );
    assert_eq!(find(&format!("{lower}/usr/bin/setuid")).0.mode, 0o4755);
    let owned = &find("etc/owned/by-someone").0;
    assert_eq!((owned.mode, owned.uid, owned.gid), (0o640, 1234, 5678));
    assert_eq!(
        find("etc/owned/by-someone").1["LINUXKIT.location"],
        "files[0]"
    );
    assert!(
        entries
            .iter()
            .any(|(r, _)| r.name.len() > 255 && r.kind == '-')
    );
    assert!(
        entries
            .iter()
            .any(|(r, _)| r.link.len() > 255 && r.kind == 'l')
    );
    assert!(!entries.iter().any(|(r, _)| r.name.contains(".wh.")));
    // The read-only service re-uses the onboot container's extraction.
    let runtime = entries
        .iter()
        .find(|(r, _)| r.name == "containers/services/ro/runtime.json")
        .unwrap();
    assert_eq!(runtime.1["LINUXKIT.location"], "services[0]");
    let root = ws.path().join("from-cpio");
    let ro_runtime = read_json(&root.join("containers/services/ro/runtime.json"));
    assert_eq!(ro_runtime["mounts"][0]["source"], format!("/{lower}"));
    assert_eq!(
        ro_runtime["mounts"][0]["destination"],
        "/containers/services/ro/rootfs"
    );
    assert!(!root.join("containers/services/ro/tmp").exists());
    assert!(root.join("containers/services/ro/rootfs").is_dir());
}

/// An image's `./` entry reaches the outputs as LinuxKit's does: the init image's initrd
/// segment and its part of the rootfs tar start with a `.` entry that has the image's mode,
/// owner and mtime, so `/` gets them when the kernel (or `tar -x`) applies it.
#[test]
fn the_image_root_entry_reaches_the_initrd_and_the_tar() {
    use lkb_tests::oci::{Entry, ImageBuilder, Layer};
    let image = ImageBuilder::new()
        .layer(
            Layer::new()
                .entry(Entry::dir(".").mode(0o700).owner(5, 6).mtime(1_600_000_000))
                .file("hello", "hi\n"),
        )
        .build()
        .unwrap();
    let layout_dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(layout_dir.path()).unwrap();
    layout
        .add("localhost/lkb-tests/rootmode:1", &image)
        .unwrap();
    let ws = workspace(&[layout_dir.path()], &[]).unwrap();
    write(
        ws.path(),
        "rootmode.yml",
        "init:\n  - localhost/lkb-tests/rootmode:1\nfiles:\n  - path: etc/extra\n    contents: x\n",
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(
        &lkb,
        &[
            "rootmode.yml",
            "--dir",
            "out",
            "-f",
            "kernel+initrd",
            "-f",
            "tar",
        ],
    );
    let out = ws.path().join("out");

    let archives = initrd_archives(&out.join("rootmode-initrd.img"));
    let listings: Vec<Vec<String>> = archives
        .iter()
        .map(|a| {
            lines(run_tool(
                Command::new("cpio").args(["-itv", "--quiet", "-n"]),
                Some(a),
            ))
        })
        .collect();
    let roots: Vec<&String> = listings
        .iter()
        .flatten()
        .filter(|l| l.ends_with(" ."))
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one `.` entry, in the init segment: {listings:#?}"
    );
    let init = listings
        .iter()
        .find(|l| l.iter().any(|e| e.ends_with(" hello")))
        .expect("the init image's segment");
    let fields: Vec<&str> = init[0].split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[2], fields[3], *fields.last().unwrap()),
        ("drwx------", "5", "6", "."),
        "{init:#?}"
    );
    let newc: Vec<Rec> = archives.iter().flat_map(|a| parse_newc(a)).collect();
    let root = newc.iter().find(|r| r.name == ".").expect("`.` parsed");
    assert_eq!(
        (root.kind, root.mode, root.uid, root.gid, root.mtime),
        ('d', 0o700, 5, 6, 1_600_000_000)
    );

    let tar = fs_err::read(out.join("rootmode.tar")).unwrap();
    let listed = lines(run_tool(
        Command::new("tar").args(["-tv", "--numeric-owner", "-f", "-"]),
        Some(&tar),
    ));
    assert!(
        listed[0].starts_with("drwx------ 5/6 ") && listed[0].ends_with(" ."),
        "{listed:#?}"
    );
    assert_eq!(listed.iter().filter(|l| l.ends_with(" .")).count(), 1);
    let (rec, pax) = &parse_tar(&tar)[0];
    assert_eq!((rec.name.as_str(), rec.mode, rec.uid), (".", 0o700, 5));
    assert_eq!(pax["LINUXKIT.location"], "init[0]");
}

// ---------------------------------------------------------------------------------------------
// 10. tar-kernel-initrd

#[test]
fn tar_kernel_initrd_holds_the_kernel_initrd_and_cmdline_bytes() {
    let ws = example_workspace(&[("minimal.yml", &repo_yml("minimal.yml"))]);
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = build_ok(
        &lkb,
        &[
            "minimal.yml",
            "--dir",
            "out",
            "--format",
            "kernel+initrd",
            "--format",
            "tar-kernel-initrd",
        ],
    );
    let out = ws.path().join("out");
    let reported: BTreeSet<PathBuf> = strings(&run.summary().unwrap()["outputs"])
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let expected: BTreeSet<PathBuf> = [
        "minimal-kernel",
        "minimal-initrd.img",
        "minimal-cmdline",
        "minimal-initrd.tar",
    ]
    .iter()
    .map(|n| out.join(n))
    .collect();
    assert_eq!(reported, expected);

    let tar_path = out.join("minimal-initrd.tar");
    let listing = lines(run_tool(
        Command::new("tar").arg("-tf").arg(&tar_path),
        None,
    ));
    let mut sorted = listing.clone();
    sorted.sort();
    assert_eq!(sorted, ["cmdline", "initrd.img", "kernel"]);
    let entries = parse_tar(&fs_err::read(&tar_path).unwrap());
    for (rec, _) in &entries {
        assert_eq!(
            (rec.kind, rec.mode, rec.uid, rec.gid, rec.mtime),
            ('-', 0o644, 0, 0, DEFAULT_MTIME),
            "{}",
            rec.name
        );
    }
    let unpacked = ws.path().join("unpacked");
    fs_err::create_dir_all(&unpacked).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar_path)
            .arg("-C")
            .arg(&unpacked),
        None,
    );
    for (inner, outer) in [
        ("kernel", "minimal-kernel"),
        ("initrd.img", "minimal-initrd.img"),
        ("cmdline", "minimal-cmdline"),
    ] {
        assert!(
            fs_err::read(unpacked.join(inner)).unwrap() == fs_err::read(out.join(outer)).unwrap(),
            "{inner} differs from {outer}"
        );
    }
}

/// Microcode: the raw `ucode` file goes in front of the gzip segments of the initrd, into
/// `NAME-initrd.tar` as `ucode.cpio` and into the rootfs tar as `boot/ucode.cpio`. An empty
/// cmdline writes no `NAME-cmdline` and no `cmdline` in `NAME-initrd.tar` (reference §3.1/3.2).
#[test]
fn ucode_is_prepended_and_an_empty_cmdline_is_left_out() {
    let layout_dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(layout_dir.path()).unwrap();
    let kernel = lkb_tests::synthetic::fake_kernel_image().unwrap();
    layout
        .add("localhost/lkb-tests/fake-kernel:1", &kernel)
        .unwrap();
    layout
        .add(
            "localhost/lkb-tests/hello:1",
            &lkb_tests::synthetic::hello_image().unwrap(),
        )
        .unwrap();
    let ws = workspace(&[layout_dir.path()], &[]).unwrap();
    write(
        ws.path(),
        "u.yml",
        "kernel:\n  image: localhost/lkb-tests/fake-kernel:1\n  ucode: intel-ucode.cpio\nonboot:\n  - name: hello\n    image: localhost/lkb-tests/hello:1\n",
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(
        &lkb,
        &[
            "u.yml",
            "--dir",
            "out",
            "-f",
            "kernel+initrd,tar-kernel-initrd,tar",
        ],
    );
    let out = ws.path().join("out");
    let written: BTreeSet<String> = fs_err::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from(["u-kernel", "u-initrd.img", "u-initrd.tar", "u.tar"].map(String::from))
    );
    let fs = {
        let mut tree = BTreeMap::new();
        for layer in &kernel.layers {
            apply_tar(&layer.uncompressed().unwrap(), &mut tree);
        }
        tree
    };
    let Some(Fs::File(ucode, _)) = fs.get("intel-ucode.cpio") else {
        panic!("no ucode in the fake kernel");
    };

    let initrd = fs_err::read(out.join("u-initrd.img")).unwrap();
    assert!(
        initrd.starts_with(ucode),
        "the initrd does not start with the ucode"
    );
    let rest = ws.path().join("segments.gz");
    fs_err::write(&rest, &initrd[ucode.len()..]).unwrap();
    let archives = initrd_archives(&rest);
    let mut names = cpio_names(&archives);
    drop_sbom(&mut names);
    assert_eq!(names.len(), 2, "{names:#?}");
    assert!(names[0].contains(&"lib/modules/0.0.0-fake/modules.dep".to_string()));
    assert!(
        !names[0].iter().any(|n| n.starts_with("boot/")),
        "{:?}",
        names[0]
    );
    assert!(names[1].contains(&"containers/onboot/000-hello/lower/hello".to_string()));

    let inner = parse_tar(&fs_err::read(out.join("u-initrd.tar")).unwrap());
    let inner_names: BTreeSet<&str> = inner.iter().map(|(r, _)| r.name.as_str()).collect();
    assert_eq!(
        inner_names,
        BTreeSet::from(["kernel", "initrd.img", "ucode.cpio"])
    );
    let unpacked = ws.path().join("unpacked");
    fs_err::create_dir_all(&unpacked).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(out.join("u-initrd.tar"))
            .arg("-C")
            .arg(&unpacked),
        None,
    );
    assert!(fs_err::read(unpacked.join("ucode.cpio")).unwrap() == *ucode);
    assert!(fs_err::read(unpacked.join("initrd.img")).unwrap() == initrd);
    assert!(
        fs_err::read(unpacked.join("kernel")).unwrap()
            == fs_err::read(out.join("u-kernel")).unwrap()
    );

    let rootfs = parse_tar(&fs_err::read(out.join("u.tar")).unwrap());
    let boot: Vec<&str> = rootfs
        .iter()
        .map(|(r, _)| r.name.as_str())
        .filter(|n| n.starts_with("boot"))
        .collect();
    assert!(
        boot.contains(&"boot/kernel") && boot.contains(&"boot/ucode.cpio"),
        "{boot:?}"
    );
    let from_tar = ws.path().join("rootfs");
    fs_err::create_dir_all(&from_tar).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(out.join("u.tar"))
            .arg("-C")
            .arg(&from_tar),
        None,
    );
    assert!(fs_err::read(from_tar.join("boot/ucode.cpio")).unwrap() == *ucode);
}

// ---------------------------------------------------------------------------------------------
// 11. several yml files

#[test]
fn several_yml_files_merge_in_order_and_outputs_follow_the_last() {
    let b = "kernel:\n  cmdline: \"console=ttyS0 lkb.merged=1\"\nservices:\n  - name: rngd\n    image: localhost/lkb-examples/rngd:1\n    command: [\"/sbin/rngd\", \"-f\"]\n";
    let ws = example_workspace(&[("a.yml", &repo_yml("minimal.yml")), ("b.yml", b)]);
    let lkb = Lkb::new(ws.path()).unwrap();

    build_ok(&lkb, &["a.yml", "b.yml", "--dir", "ab"]);
    let ab = ws.path().join("ab");
    let written: BTreeSet<String> = fs_err::read_dir(&ab)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from(["b-kernel", "b-initrd.img", "b-cmdline"].map(String::from))
    );
    assert_eq!(
        fs_err::read_to_string(ab.join("b-cmdline")).unwrap(),
        "console=ttyS0 lkb.merged=1"
    );
    let archives = initrd_archives(&ab.join("b-initrd.img"));
    let mut names = cpio_names(&archives);
    drop_sbom(&mut names);
    assert_eq!(names.len(), 5, "kernel, init, dhcpcd, getty, rngd");
    assert!(names[3].contains(&"containers/services/getty/config.json".to_string()));
    assert!(names[4].contains(&"containers/services/rngd/config.json".to_string()));
    let root = ws.path().join("ab-root");
    cpio_extract(&archives, &root);
    let rngd = read_json(&root.join("containers/services/rngd/config.json"));
    assert_eq!(rngd["process"]["args"], json!(["/sbin/rngd", "-f"]));
    let getty = read_json(&root.join("containers/services/getty/config.json"));
    assert!(strings(&getty["process"]["env"]).contains(&"INSECURE=true".to_string()));
    assert!(root.join("containers/onboot/000-dhcpcd/lower").is_dir());
    assert!(root.join("init").is_file());

    // The other order: a's cmdline is now the last non-empty one, the lists swap, and the
    // outputs are named after a.yml.
    build_ok(&lkb, &["b.yml", "a.yml", "--dir", "ba"]);
    let ba = ws.path().join("ba");
    let written: BTreeSet<String> = fs_err::read_dir(&ba)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from(["a-kernel", "a-initrd.img", "a-cmdline"].map(String::from))
    );
    assert_eq!(
        fs_err::read_to_string(ba.join("a-cmdline")).unwrap(),
        "console=tty0 console=ttyS0"
    );
    let mut names = cpio_names(&initrd_archives(&ba.join("a-initrd.img")));
    drop_sbom(&mut names);
    assert_eq!(names.len(), 5);
    assert!(names[3].contains(&"containers/services/rngd/config.json".to_string()));
    assert!(names[4].contains(&"containers/services/getty/config.json".to_string()));
}

// ---------------------------------------------------------------------------------------------
// 12. //pkg/... and the no-op rebuild

#[test]
fn recursive_pattern_builds_every_target_and_a_rebuild_touches_nothing() {
    let ws = example_workspace(&[
        ("examples/minimal.yml", &repo_yml("minimal.yml")),
        ("examples/sshd.yml", &repo_yml("sshd.yml")),
    ]);
    let lkb = Lkb::new(ws.path()).unwrap();
    let first = build_ok(&lkb, &["//examples/..."]);
    let summary = first.summary().unwrap();
    let targets: BTreeSet<String> = strings(&summary["targets"]).into_iter().collect();
    assert_eq!(
        targets,
        BTreeSet::from(["//examples:minimal", "//examples:sshd"].map(String::from))
    );
    let out = ws.path().join("lkb-out/examples");
    let files: Vec<PathBuf> = ["minimal", "sshd"]
        .iter()
        .flat_map(|n| ["kernel", "initrd.img", "cmdline"].map(|s| out.join(format!("{n}-{s}"))))
        .collect();
    let reported: BTreeSet<PathBuf> = strings(&summary["outputs"])
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(reported, files.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(
        fs_err::read_dir(&out).unwrap().count(),
        files.len(),
        "stray files in {}",
        out.display()
    );

    // sshd: rngd is extracted once (onboot) and shared by the rngd service; files: last.
    let archives = initrd_archives(&out.join("sshd-initrd.img"));
    let root = ws.path().join("sshd-root");
    cpio_extract(&archives, &root);
    assert!(root.join("containers/onboot/000-rngd1/lower").is_dir());
    assert!(!root.join("containers/services/rngd/lower").exists());
    for service in ["getty", "dhcpcd", "sshd"] {
        assert!(
            root.join(format!("containers/services/{service}/lower"))
                .is_dir(),
            "{service}"
        );
    }
    assert_eq!(
        fs_err::read_to_string(root.join("etc/motd")).unwrap(),
        "Built by lkb from examples/sshd.yml\n"
    );
    assert!(!root.join("root/.ssh/authorized_keys").exists());

    // Second run: nothing executes and no output file is rewritten.
    let before: Vec<_> = files.iter().map(|f| stat(f)).collect();
    let second = build_ok(&lkb, &["//examples/..."]);
    assert_eq!(
        summary_u64(&second, "/actions/executed"),
        0,
        "{}",
        second.stderr
    );
    assert_eq!(
        summary_u64(&second, "/actions/cached"),
        summary_u64(&first, "/actions/total")
    );
    assert_eq!(files.iter().map(|f| stat(f)).collect::<Vec<_>>(), before);

    // A deleted output comes back from the store, still without running anything.
    fs_err::remove_file(&files[1]).unwrap();
    let third = build_ok(&lkb, &["//examples/..."]);
    assert_eq!(summary_u64(&third, "/actions/executed"), 0);
    assert!(files[1].is_file());
    assert_eq!(
        files
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, f)| stat(f))
            .collect::<Vec<_>>(),
        before
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, s)| *s)
            .collect::<Vec<_>>()
    );
}

/// LinuxKit's `tarInitrdKernel` writes `kernel`, `initrd.img`, `cmdline` (then `ucode.cpio`) in
/// that order (reference §3.1); tools that stream the tar may rely on the kernel coming first.
#[test]
fn tar_kernel_initrd_lists_its_files_in_linuxkit_order() {
    let ws = example_workspace(&[("minimal.yml", &repo_yml("minimal.yml"))]);
    let lkb = Lkb::new(ws.path()).unwrap();
    build_ok(
        &lkb,
        &[
            "minimal.yml",
            "--dir",
            "out",
            "--format",
            "tar-kernel-initrd",
        ],
    );
    let tar_path = ws.path().join("out/minimal-initrd.tar");
    let listing = lines(run_tool(
        Command::new("tar").arg("-tf").arg(&tar_path),
        None,
    ));
    assert_eq!(listing, ["kernel", "initrd.img", "cmdline"]);
}
