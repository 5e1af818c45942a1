//! ISO images checked with independent readers: xorriso/osirrox (libisofs), isoinfo
//! (genisoimage), sfdisk, and QEMU for booting (ignored test, needs Debian boot files).
//!
//! Linux's own iso9660 driver is not exercised here: this container's kernel has no iso9660
//! file system, so `mount -o loop` fails ("unknown filesystem type").

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use lkb_disk::iso::{BootEntry, BootImage, ElTorito, HybridMbr, IsoOptions, IsoPlan, plan};
use lkb_disk::{Data, FileSink, FsEntry, FsKind};

const T0: i64 = 1_700_000_000;

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

fn options(volume_id: &str, joliet: bool) -> IsoOptions {
    IsoOptions {
        volume_id: volume_id.to_string(),
        timestamp: T0,
        joliet,
        boot: None,
        hybrid: None,
    }
}

fn write(plan: &IsoPlan, path: &Path) {
    let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
    plan.write(&mut sink).unwrap();
    assert_eq!(sink.position(), plan.size());
    sink.finish().unwrap();
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (install xorriso and genisoimage): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ls -l` style mode string.
fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '-',
    };
    let mut s = String::from(kind);
    for (shift, special, lower, upper) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    let bits = mode & 7;
    s.push(if bits & 4 != 0 { 'r' } else { '-' });
    s.push(if bits & 2 != 0 { 'w' } else { '-' });
    s.push(match (bits & 1 != 0, mode & 0o1000 != 0) {
        (true, true) => 't',
        (false, true) => 'T',
        (true, false) => 'x',
        (false, false) => '-',
    });
    s
}

/// One line of `xorriso -find / -exec lsdl`: mode, uid, gid, size (or `major,minor`), and the
/// symlink target.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    mode: String,
    uid: u32,
    gid: u32,
    size: String,
    target: Option<String>,
}

fn xorriso_listing(iso: &Path) -> BTreeMap<String, Listed> {
    let out = run(
        "xorriso",
        &[
            "-abort_on",
            "FAILURE",
            "-return_with",
            "FAILURE",
            "32",
            "-indev",
            iso.to_str().unwrap(),
            "-find",
            "/",
            "-exec",
            "lsdl",
        ],
    );
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let at = line.find(" '/").expect("a quoted path");
        let fields: Vec<&str> = line[..at].split_whitespace().collect();
        let rest = &line[at + 1..];
        let (path, target) = match rest.split_once(" -> ") {
            Some((p, t)) => (p, Some(t.trim_matches('\'').to_string())),
            None => (rest, None),
        };
        map.insert(
            path.trim_matches('\'').to_string(),
            Listed {
                mode: fields[0].to_string(),
                uid: fields[2].parse().unwrap(),
                gid: fields[3].parse().unwrap(),
                size: fields[4].to_string(),
                target,
            },
        );
    }
    map
}

/// Link counts from `isoinfo -R -l` (Rock Ridge PX), by path.
fn isoinfo_nlinks(iso: &Path) -> BTreeMap<String, u32> {
    let out = run("isoinfo", &["-R", "-l", "-i", iso.to_str().unwrap()]);
    let mut dir = String::new();
    let mut map = BTreeMap::new();
    for line in out.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of ") {
            dir = d.trim_end_matches('/').to_string();
            continue;
        }
        let Some(close) = line.find("]  ") else {
            continue;
        };
        let name = line[close + 3..].split(" -> ").next().unwrap().trim_end();
        if name == "." || name == ".." {
            continue;
        }
        let nlink = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        map.insert(format!("{dir}/{name}"), nlink);
    }
    map
}

/// Names in the Joliet tree (`isoinfo -J -f`).
fn joliet_names(iso: &Path) -> Vec<String> {
    // isoinfo knows no UTF-8 output; Latin-1 covers the names used here.
    let out = Command::new("isoinfo")
        .args(["-J", "-j", "iso8859-1", "-f", "-i", iso.to_str().unwrap()])
        .output()
        .expect("isoinfo (genisoimage)");
    assert!(out.status.success());
    let text: String = out.stdout.iter().map(|&b| char::from(b)).collect();
    text.lines().map(str::to_string).collect()
}

fn extract(iso: &Path, to: &Path) {
    run(
        "xorriso",
        &[
            "-osirrox",
            "on:device_files:on",
            "-hardlinks",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            "/",
            to.to_str().unwrap(),
        ],
    );
}

/// A sparse file of `len` bytes with `head` at the start and `tail` at the end.
fn sparse(path: &Path, len: u64, head: &[u8], tail: &[u8]) -> Data {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    f.write_all(head).unwrap();
    f.seek(SeekFrom::Start(len - tail.len() as u64)).unwrap();
    f.write_all(tail).unwrap();
    Data::File {
        path: path.to_path_buf(),
        len,
    }
}

/// A root file system's worth of awkward cases.
fn rootfs(dir: &Path) -> Vec<FsEntry> {
    let mut e = vec![
        entry("", FsKind::Dir, 0o755),
        entry("bin", FsKind::Dir, 0o755),
        entry("bin/busybox", bytes(&[0x7f; 3000]), 0o4755),
        entry("bin/sh", FsKind::Symlink("busybox".into()), 0o777),
        entry("etc/empty", bytes(b""), 0o644),
        entry(
            "etc/abs",
            FsKind::Symlink("/usr/lib/../lib/./x".into()),
            0o777,
        ),
        entry("dev/null", FsKind::CharDev { major: 1, minor: 3 }, 0o666),
        entry("dev/sda1", FsKind::BlockDev { major: 8, minor: 1 }, 0o660),
        entry("dev/tty", FsKind::CharDev { major: 5, minor: 0 }, 0o666),
        entry(
            "dev/ttyS255",
            FsKind::CharDev {
                major: 4,
                minor: 255,
            },
            0o660,
        ),
        entry("dev/fifo", FsKind::Fifo, 0o600),
        entry("dev/log", FsKind::Socket, 0o666),
        entry("tmp", FsKind::Dir, 0o1777),
        entry("Mixed Case name.TXT", bytes(b"mixed"), 0o640),
        entry("grüße", bytes("unicode".as_bytes()), 0o644),
        entry(
            "big.img",
            FsKind::File(sparse(&dir.join("big"), 64 << 20, b"HEAD", b"TAIL")),
            0o644,
        ),
    ];
    let mut passwd = entry("etc/passwd", bytes(b"root:x:0:0\n"), 0o600);
    passwd.uid = 1000;
    passwd.gid = 100;
    passwd.mtime = 86_400 * 365;
    e.push(passwd);
    for name in ["etc/hard1", "etc/hard2", "bin/hard3"] {
        let mut h = entry(name, bytes(b"linked"), 0o755);
        h.link_group = Some(7);
        e.push(h);
    }
    // Symlink targets: many components, one component longer than an SL record, and several
    // SL entries in a row (libisofs reads targets up to 1024 bytes; see
    // `symlink_targets_longer_than_a_block` for longer ones).
    let many: Vec<String> = (0..40).map(|i| format!("component-{i:02}")).collect();
    e.push(entry(
        "links/many",
        FsKind::Symlink(format!("/{}", many.join("/"))),
        0o777,
    ));
    e.push(entry(
        "links/wide",
        FsKind::Symlink(format!("../{}/end", "w".repeat(600))),
        0o777,
    ));
    let huge: Vec<String> = (0..4).map(|i| format!("{i}{}", "h".repeat(240))).collect();
    e.push(entry("links/huge", FsKind::Symlink(huge.join("/")), 0o777));
    // Longest names, in a directory big enough to need several sectors.
    e.push(entry(
        &format!("long/{}.conf", "n".repeat(250)),
        bytes(b"long"),
        0o644,
    ));
    e.push(entry(
        &format!("long/{}", "d".repeat(255)),
        FsKind::Dir,
        0o700,
    ));
    for i in 0..150 {
        e.push(entry(
            &format!("long/file-with-a-longish-name-{i:04}.txt"),
            bytes(format!("{i}").as_bytes()),
            0o644,
        ));
    }
    // Deeper than ECMA-119's 8 levels; parents made implicitly.
    let deep: Vec<String> = (1..=12).map(|i| format!("d{i}")).collect();
    e.push(entry(
        &format!("{}/leaf", deep.join("/")),
        bytes(b"deep"),
        0o644,
    ));
    e
}

fn expected_mode(e: &FsEntry) -> u32 {
    let kind = match e.kind {
        FsKind::Dir => 0o040_000,
        FsKind::File(_) => 0o100_000,
        FsKind::Symlink(_) => 0o120_000,
        FsKind::CharDev { .. } => 0o020_000,
        FsKind::BlockDev { .. } => 0o060_000,
        FsKind::Fifo => 0o010_000,
        FsKind::Socket => 0o140_000,
    };
    kind | e.mode
}

#[test]
fn rock_ridge_tree_reads_back_with_libisofs() {
    let dir = tempfile::tempdir().unwrap();
    let entries = rootfs(dir.path());
    let iso = dir.path().join("root.iso");
    write(
        &plan(entries.clone(), options("LinuxKit", true)).unwrap(),
        &iso,
    );

    let listing = xorriso_listing(&iso);
    for e in &entries {
        let path = format!("/{}", e.path);
        let path = if e.path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let got = listing
            .get(&path)
            .unwrap_or_else(|| panic!("{path} not listed"));
        let size = match &e.kind {
            FsKind::File(d) => d.len().to_string(),
            FsKind::CharDev { major, minor } | FsKind::BlockDev { major, minor } => {
                format!("{major},{minor}")
            }
            _ => "0".to_string(),
        };
        let target = match &e.kind {
            FsKind::Symlink(t) => Some(t.clone()),
            _ => None,
        };
        let want = Listed {
            mode: mode_string(expected_mode(e)),
            uid: e.uid,
            gid: e.gid,
            size,
            target,
        };
        assert_eq!(*got, want, "{path}");
    }
    // The implicit parents, and nothing else.
    let implicit = [
        "/dev",
        "/etc",
        "/links",
        "/long",
        "/d1",
        "/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12",
    ];
    for p in implicit {
        assert_eq!(listing[p].mode, "drwxr-xr-x", "{p}");
    }
    assert_eq!(listing.len(), entries.len() + 4 + 12);

    let nlinks = isoinfo_nlinks(&iso);
    assert_eq!(nlinks["/etc/hard1"], 3);
    assert_eq!(nlinks["/bin/hard3"], 3);
    assert_eq!(nlinks["/bin/busybox"], 1);
    assert_eq!(nlinks["/long"], 3, "2 + one subdirectory");
}

#[test]
fn contents_extract_with_osirrox() {
    let dir = tempfile::tempdir().unwrap();
    let entries = rootfs(dir.path());
    let iso = dir.path().join("root.iso");
    write(
        &plan(entries.clone(), options("LinuxKit", true)).unwrap(),
        &iso,
    );
    let out = dir.path().join("out");
    extract(&iso, &out);
    for e in &entries {
        if matches!(
            e.kind,
            FsKind::CharDev { .. } | FsKind::BlockDev { .. } | FsKind::Socket
        ) {
            // osirrox (1.5.4) does not create devices or sockets even with device_files:on;
            // their Rock Ridge entries are checked through `-exec lsdl` instead.
            continue;
        }
        let p = out.join(&e.path);
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("{}: {err}", e.path));
        match &e.kind {
            FsKind::File(data) => {
                let got = std::fs::read(&p).unwrap();
                assert!(got == data.read_all().unwrap(), "{} differs", e.path);
                assert_eq!(meta.mode() & 0o7777, e.mode, "{}", e.path);
                assert_eq!(meta.mtime(), e.mtime, "{}", e.path);
            }
            FsKind::Symlink(t) => assert_eq!(std::fs::read_link(&p).unwrap(), PathBuf::from(t)),
            FsKind::Fifo => assert!(meta.file_type().is_fifo()),
            FsKind::Dir => assert!(meta.is_dir()),
            _ => unreachable!("skipped"),
        }
    }
    let ino = |p: &str| std::fs::metadata(out.join(p)).unwrap().ino();
    assert_eq!(
        ino("etc/hard1"),
        ino("etc/hard2"),
        "osirrox restored the hard links"
    );
    assert_eq!(ino("etc/hard1"), ino("bin/hard3"));
    assert_ne!(ino("etc/hard1"), ino("bin/busybox"));
    assert_eq!(
        std::fs::metadata(out.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
}

#[test]
fn plain_iso_and_joliet_trees_read_back_with_isoinfo() {
    let dir = tempfile::tempdir().unwrap();
    let entries = rootfs(dir.path());
    let iso = dir.path().join("root.iso");
    write(&plan(entries, options("LinuxKit", true)).unwrap(), &iso);
    let iso_s = iso.to_str().unwrap();

    let pvd = run("isoinfo", &["-d", "-i", iso_s]);
    assert!(pvd.contains("Volume id: LinuxKit"), "{pvd}");
    assert!(pvd.contains("Joliet with UCS level 3 found"), "{pvd}");
    assert!(
        pvd.contains("Rock Ridge signatures version 1 found"),
        "{pvd}"
    );

    // ISO 9660 names, without any extension.
    let plain = run("isoinfo", &["-f", "-i", iso_s]);
    for name in [
        "/BIN/BUSYBOX.;1",
        "/ETC/PASSWD.;1",
        "/MIXED_CASE_NAME.TXT;1",
        "/GR__E.;1",
    ] {
        assert!(plain.lines().any(|l| l == name), "{name} in\n{plain}");
    }
    assert_eq!(
        run("isoinfo", &["-x", "/ETC/PASSWD.;1", "-i", iso_s]),
        "root:x:0:0\n"
    );
    let depth = plain.lines().map(|l| l.matches('/').count()).max().unwrap();
    assert_eq!(depth, 13, "d1/…/d12/leaf is not relocated");

    // Joliet: real names of directories and files, no symlinks or devices.
    let joliet = joliet_names(&iso);
    for name in [
        "/Mixed Case name.TXT",
        "/grüße",
        "/etc/hard2",
        "/big.img",
        "/tmp",
    ] {
        assert!(
            joliet.iter().any(|l| l == name),
            "{name} in Joliet: {joliet:?}"
        );
    }
    assert!(!joliet.iter().any(|l| l == "/bin/sh" || l == "/dev/null"));
    let long = joliet.iter().find(|l| l.starts_with("/long/nnn")).unwrap();
    assert_eq!(long.chars().count(), "/long/".len() + 103);
    assert!(long.ends_with(".conf"));
    assert_eq!(
        run("isoinfo", &["-J", "-x", "/etc/passwd", "-i", iso_s]),
        "root:x:0:0\n"
    );
}

#[test]
fn images_are_reproducible_and_independent_of_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let entries = rootfs(dir.path());
    let mut reversed = entries.clone();
    reversed.reverse();
    let mut a = Vec::new();
    let mut b = Vec::new();
    plan(entries.clone(), options("LinuxKit", true))
        .unwrap()
        .write(&mut a)
        .unwrap();
    plan(reversed, options("LinuxKit", true))
        .unwrap()
        .write(&mut b)
        .unwrap();
    assert!(a == b, "same entries, same bytes");
    let mut c = Vec::new();
    let mut later = options("LinuxKit", true);
    later.timestamp += 1;
    plan(entries, later).unwrap().write(&mut c).unwrap();
    assert!(a != c, "the timestamp is used");
}

#[test]
fn files_of_4_gib_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = sparse(&dir.path().join("huge"), 4 << 30, b"x", b"y");
    let err = plan(
        vec![entry("huge", FsKind::File(data), 0o644)],
        options("X", false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("\"huge\" is 4294967296 bytes"), "{err}");
    assert!(err.contains("multi-extent"), "{err}");
}

/// A stand-in for isolinux.bin: 4 sectors with the hybrid signature at 0x40.
fn fake_isolinux() -> Vec<u8> {
    let mut b: Vec<u8> = (0..2048u32).map(|i| (i * 7 % 251) as u8).collect();
    b[0x40..0x44].copy_from_slice(&[0xfb, 0xc0, 0x78, 0x70]);
    b
}

/// A small FAT image made with mkfs.vfat, holding EFI/BOOT/BOOTX64.EFI.
fn fat_image(dir: &Path) -> Data {
    let img = dir.join("efi.img");
    let _ = std::fs::remove_file(&img);
    run("mkfs.vfat", &["-C", img.to_str().unwrap(), "1440"]);
    let payload = dir.join("BOOTX64.EFI");
    std::fs::write(&payload, b"MZ not really a PE image").unwrap();
    let i = img.to_str().unwrap();
    run("mmd", &["-i", i, "::/EFI", "::/EFI/BOOT"]);
    run(
        "mcopy",
        &[
            "-i",
            i,
            payload.to_str().unwrap(),
            "::/EFI/BOOT/BOOTX64.EFI",
        ],
    );
    Data::File {
        len: std::fs::metadata(&img).unwrap().len(),
        path: img,
    }
}

fn bios_tree(isolinux: &[u8]) -> Vec<FsEntry> {
    vec![
        entry("isolinux/isolinux.bin", bytes(isolinux), 0o644),
        entry("isolinux/ldlinux.c32", bytes(b"ldlinux"), 0o644),
        entry("isolinux/isolinux.cfg", bytes(b"default linux\n"), 0o644),
        entry("boot/kernel", bytes(&[1; 10_000]), 0o644),
    ]
}

fn report_el_torito(iso: &Path) -> String {
    run(
        "xorriso",
        &[
            "-indev",
            iso.to_str().unwrap(),
            "-report_el_torito",
            "plain",
        ],
    )
}

/// The `El Torito boot img` rows: platform, load size, LBA.
fn boot_rows(report: &str) -> Vec<(String, u32, u32)> {
    report
        .lines()
        .filter_map(|l| l.strip_prefix("El Torito boot img :"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].to_string(),
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn el_torito_bios_and_efi_entries_with_boot_info_table_and_isohybrid() {
    let dir = tempfile::tempdir().unwrap();
    let isolinux = fake_isolinux();
    let efi = fat_image(dir.path());
    let efi_len = efi.len();
    let fat = efi.read_all().unwrap();
    let mut o = options("LinuxKit", true);
    o.boot = Some(ElTorito {
        catalog: Some("isolinux/boot.cat".into()),
        bios: Some(BootEntry {
            image: BootImage::Path("isolinux/isolinux.bin".into()),
            load_sectors: Some(4),
            boot_info_table: true,
        }),
        efi: Some(BootEntry {
            image: BootImage::Hidden(efi),
            load_sectors: None,
            boot_info_table: false,
        }),
    });
    let mbr_code: Vec<u8> = (0..432u32).map(|i| (i % 200) as u8 + 1).collect();
    o.hybrid = Some(HybridMbr {
        code: mbr_code.clone(),
        disk_id: 0x1234_5678,
    });
    let p = plan(bios_tree(&isolinux), o).unwrap();
    let iso = dir.path().join("boot.iso");
    write(&p, &iso);

    let report = report_el_torito(&iso);
    assert!(
        report.contains("El Torito cat path : /isolinux/boot.cat"),
        "{report}"
    );
    assert!(
        report.contains("El Torito img path :   1  /isolinux/isolinux.bin"),
        "{report}"
    );
    assert!(
        report.contains("boot-info-table isohybrid-suitable"),
        "{report}"
    );
    let rows = boot_rows(&report);
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("BIOS", 4));
    assert_eq!(
        (rows[1].0.as_str(), rows[1].1),
        ("UEFI", efi_len.div_ceil(512) as u32)
    );

    // The boot information table, as isolinux reads it.
    let image = std::fs::read(&iso).unwrap();
    let at = rows[0].2 as usize * 2048;
    let boot = &image[at..at + isolinux.len()];
    let word = |o: usize| u32::from_le_bytes(boot[o..o + 4].try_into().unwrap());
    assert_eq!(word(8), 16, "primary volume descriptor");
    assert_eq!(word(12), rows[0].2, "boot file LBA");
    assert_eq!(word(16), isolinux.len() as u32);
    let sum = isolinux[64..]
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .fold(0u32, u32::wrapping_add);
    assert_eq!(word(20), sum);
    assert_eq!(&boot[64..], &isolinux[64..]);
    // The hidden EFI image is byte for byte the FAT image.
    let at = rows[1].2 as usize * 2048;
    assert!(image[at..at + fat.len()] == fat[..]);
    // Neither the EFI image nor anything else extra is in the tree.
    let listing = xorriso_listing(&iso);
    assert_eq!(
        listing.keys().cloned().collect::<Vec<_>>(),
        [
            "/",
            "/boot",
            "/boot/kernel",
            "/isolinux",
            "/isolinux/boot.cat",
            "/isolinux/isolinux.bin",
            "/isolinux/isolinux.cfg",
            "/isolinux/ldlinux.c32"
        ]
    );

    // isohybrid MBR: code, boot file address in 512-byte sectors, signature, one partition.
    assert_eq!(image.len() % (1 << 20), 0, "padded to whole cylinders");
    assert_eq!(&image[..432], &mbr_code[..]);
    assert_eq!(
        u32::from_le_bytes(image[432..436].try_into().unwrap()),
        rows[0].2 * 4
    );
    assert_eq!(&image[510..512], &[0x55, 0xaa]);
    let table = run("sfdisk", &["--dump", iso.to_str().unwrap()]);
    assert!(table.contains("label-id: 0x12345678"), "{table}");
    let sectors = image.len() / 512;
    assert!(
        table.contains(&format!(
            "start=           0, size={sectors:>12}, type=17, bootable"
        )),
        "{table}"
    );
}

/// LinuxKit's `iso-efi` shape: Rock Ridge only, hidden catalog, one hidden EFI image.
#[test]
fn efi_only_image_has_a_uefi_default_entry() {
    let dir = tempfile::tempdir().unwrap();
    let efi = fat_image(dir.path());
    let mut o = options("ISOIMAGE", false);
    o.boot = Some(ElTorito {
        catalog: None,
        bios: None,
        efi: Some(BootEntry {
            image: BootImage::Hidden(efi),
            load_sectors: None,
            boot_info_table: false,
        }),
    });
    let tree = vec![
        entry("EFI/BOOT/grub.cfg", bytes(b"set timeout=0\n"), 0o644),
        entry("kernel", bytes(&[3; 5000]), 0o644),
    ];
    let iso = dir.path().join("efi.iso");
    write(&plan(tree, o).unwrap(), &iso);
    let report = report_el_torito(&iso);
    let rows = boot_rows(&report);
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0].0, "UEFI");
    assert!(!report.contains("cat path"), "catalog hidden: {report}");
    let info = run("isoinfo", &["-d", "-i", iso.to_str().unwrap()]);
    assert!(
        info.contains("Arch 239"),
        "validation entry platform 0xEF: {info}"
    );
    assert!(info.contains("NO Joliet present"), "{info}");
    assert_eq!(
        xorriso_listing(&iso).keys().cloned().collect::<Vec<_>>(),
        ["/", "/EFI", "/EFI/BOOT", "/EFI/BOOT/grub.cfg", "/kernel"]
    );
}
