//! `volumes:` (blank, `filesystem`, `oci`), the APK database union of init images and the
//! merged `sbom.spdx.json`, end to end: `lkb build` against a real registry, with the rootfs
//! tar and the initrd read back entry by entry (reference §2.4, §2.5, §2.7, §2.9).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use lkb_tests::cli::{Lkb, Run, split_cpio_archives, workspace};
use lkb_tests::oci::{Digest, Image, ImageBuilder, ImageIndex, IndexBuilder, Layer, Platform};
use lkb_tests::registry::Registry;
use serde_json::{Value, json};

/// LinuxKit's default mtime (2017-04-18T16:30:00Z).
const DEFAULT_MTIME: u64 = 1_492_533_000;
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------------------------
// reading outputs

/// One archive member, from a tar or a cpio archive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    path: String,
    /// `d`, `f`, `l` (symlink), `h` (hard link), `c`, `b`, `p`.
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    /// File contents; symlink target for `l`; hard-link target for `h`.
    data: Vec<u8>,
    /// PAX records (tar only).
    pax: BTreeMap<String, String>,
}

impl Member {
    fn text(&self) -> String {
        String::from_utf8(self.data.clone()).expect("UTF-8 contents")
    }

    fn source(&self) -> (&str, &str) {
        (
            self.pax.get("LINUXKIT.source").map_or("", String::as_str),
            self.pax.get("LINUXKIT.location").map_or("", String::as_str),
        )
    }
}

fn read_tar(path: &Path) -> Vec<Member> {
    let file = fs_err::File::open(path).unwrap();
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut pax = BTreeMap::new();
        if let Some(records) = entry.pax_extensions().unwrap() {
            for record in records {
                let record = record.unwrap();
                let key = record.key().unwrap();
                if key.starts_with("LINUXKIT.") {
                    pax.insert(key.to_owned(), record.value().unwrap().to_owned());
                }
            }
        }
        let header = entry.header().clone();
        let kind = match header.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            other => panic!("unexpected tar entry type {other:?}"),
        };
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let data = match kind {
            'l' | 'h' => entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
            _ => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                data
            }
        };
        out.push(Member {
            path,
            kind,
            mode: header.mode().unwrap() & 0o7777,
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            mtime: header.mtime().unwrap(),
            data,
            pax,
        });
    }
    out
}

fn hex_field(header: &[u8], index: usize) -> u64 {
    let at = 6 + index * 8;
    let text = std::str::from_utf8(&header[at..at + 8]).unwrap();
    u64::from_str_radix(text, 16).unwrap()
}

/// Every member of every cpio archive of a gzip-compressed initrd, in order.
fn read_initrd(path: &Path) -> Vec<Member> {
    let compressed = fs_err::read(path).unwrap();
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    let mut out = Vec::new();
    for archive in split_cpio_archives(&raw).unwrap() {
        let mut at = 0;
        loop {
            let header = &archive[at..at + 110];
            assert_eq!(&header[..6], b"070701", "newc magic at {at}");
            let mode = hex_field(header, 1) as u32;
            let size = hex_field(header, 6) as usize;
            let name_size = hex_field(header, 11) as usize;
            let name = std::str::from_utf8(&archive[at + 110..at + 110 + name_size - 1])
                .unwrap()
                .to_owned();
            let data_at = (at + 110 + name_size).div_ceil(4) * 4;
            let data = archive[data_at..data_at + size].to_vec();
            at = (data_at + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                break;
            }
            let kind = match mode & 0o170000 {
                0o040000 => 'd',
                0o100000 => 'f',
                0o120000 => 'l',
                0o020000 => 'c',
                0o060000 => 'b',
                0o010000 => 'p',
                other => panic!("unexpected cpio file type {other:o} for {name}"),
            };
            out.push(Member {
                path: name,
                kind,
                mode: mode & 0o7777,
                uid: hex_field(header, 2),
                gid: hex_field(header, 3),
                mtime: hex_field(header, 5),
                data,
                pax: BTreeMap::new(),
            });
        }
    }
    out
}

/// The tar and the initrd hold the same members in the same order, with the same metadata
/// and contents (PAX records exist only in the tar).
fn assert_tar_and_initrd_agree(tar: &[Member], initrd: &[Member]) {
    let paths = |m: &[Member]| m.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(tar), paths(initrd));
    for (t, i) in tar.iter().zip(initrd) {
        if t.kind == 'h' {
            assert_eq!(i.kind, 'f', "{}", t.path);
            continue;
        }
        let strip = |m: &Member| Member {
            pax: BTreeMap::new(),
            ..m.clone()
        };
        assert_eq!(strip(t), strip(i), "{}", t.path);
    }
}

fn member<'a>(members: &'a [Member], path: &str) -> &'a Member {
    members
        .iter()
        .rev()
        .find(|m| m.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the archive"))
}

fn position(members: &[Member], pred: impl Fn(&Member) -> bool) -> usize {
    members.iter().position(pred).expect("a matching member")
}

// ---------------------------------------------------------------------------------------------
// fixtures

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs_err::write(&path, text).unwrap();
    path
}

/// A single-platform image with `files` (parent directories added).
fn image(platform: Platform, files: &[(&str, &str)]) -> Image {
    let mut layer = Layer::new();
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in files {
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for n in 1..=parts.len() {
            let dir = parts[..n].join("/");
            if !dirs.contains(&dir) {
                layer = layer.dir(&dir);
                dirs.push(dir);
            }
        }
    }
    for (path, content) in files {
        layer = layer.file(path, *content);
    }
    ImageBuilder::new()
        .platform(platform)
        .layer(layer)
        .entrypoint(&["/bin/true"])
        .build()
        .unwrap()
}

/// An SPDX document naming one package and one file (absolute, as syft writes them).
fn spdx(package: &str, file: &str) -> Value {
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": package,
        "documentNamespace": format!("https://example.com/{package}"),
        "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [{"SPDXID": format!("SPDXRef-Package-{package}"), "name": package, "downloadLocation": "NOASSERTION"}],
        "files": [{"SPDXID": format!("SPDXRef-File-{package}"), "fileName": file}],
        "relationships": [{
            "spdxElementId": format!("SPDXRef-Package-{package}"),
            "relatedSpdxElement": format!("SPDXRef-File-{package}"),
            "relationshipType": "CONTAINS"
        }]
    })
}

/// An amd64 + arm64 index, each platform with its own file, and an SPDX attestation for
/// each platform (naming `<name>-<arch>`), like a BuildKit image with `--sbom`.
fn multi_arch(name: &str, path: &str) -> ImageIndex {
    let amd = image(Platform::linux_amd64(), &[(path, "amd64\n")]);
    let arm = image(Platform::linux_arm64(), &[(path, "arm64\n")]);
    IndexBuilder::new()
        .image(amd.clone())
        .image(arm.clone())
        .spdx_attestation_for(&amd, &spdx(&format!("{name}-amd64"), &format!("/{path}")))
        .unwrap()
        .spdx_attestation_for(&arm, &spdx(&format!("{name}-arm64"), &format!("/{path}")))
        .unwrap()
        .build()
        .unwrap()
}

struct Outputs {
    tar: Vec<Member>,
    initrd: Vec<Member>,
}

/// `lkb build --arch amd64 --format tar,kernel+initrd ARGS` into `<cwd>/out`.
fn build(lkb: &Lkb, args: &[&str]) -> (Run, Outputs) {
    let mut all = vec![
        "--arch",
        "amd64",
        "--format",
        "tar,kernel+initrd",
        "--dir",
        "out",
    ];
    all.extend_from_slice(args);
    let run = lkb.build(&all).unwrap().ok().unwrap();
    let stem = Path::new(args.last().unwrap())
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = lkb.cwd.join("out");
    let outputs = Outputs {
        tar: read_tar(&out.join(format!("{stem}.tar"))),
        initrd: read_initrd(&out.join(format!("{stem}-initrd.img"))),
    };
    assert_tar_and_initrd_agree(&outputs.tar, &outputs.initrd);
    (run, outputs)
}

// ---------------------------------------------------------------------------------------------
// volumes

#[test]
fn blank_filesystem_and_oci_volumes_between_init_and_onboot() {
    let registry = Registry::start().unwrap();
    let addr = registry.addr();
    let init = image(Platform::linux_amd64(), &[("bin/init", "init\n")]);
    registry.push_image("lkb/init", "1", &init).unwrap();
    let vol = multi_arch("vol", "srv/data/which");
    registry.push_image("lkb/vol", "1", &vol).unwrap();
    let app = image(Platform::linux_amd64(), &[("bin/app", "app\n")]);
    registry.push_image("lkb/app", "1", &app).unwrap();

    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "vols.yml",
        &format!(
            "init:\n  - {addr}/lkb/init:1\n\
             volumes:\n\
             \x20 - name: blank\n\
             \x20 - name: fsvol\n    image: {addr}/lkb/vol:1\n    readonly: true\n\
             \x20 - name: arm\n    image: {addr}/lkb/vol:1\n    format: oci\n    platforms: [linux/arm64]\n\
             \x20 - name: every\n    image: {addr}/lkb/vol:1\n    format: oci\n\
             onboot:\n  - name: app\n    image: {addr}/lkb/app:1\n    binds: [\"fsvol:/data:ro\", \"blank:/scratch\"]\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let (_, out) = build(&lkb, &["--no-sbom", "vols.yml"]);
    let tar = &out.tar;
    let vol_ref = format!("{addr}/lkb/vol:1");

    // Order: init, then the volumes in yml order, then onboot (reference §2.9).
    let first_volume = position(tar, |m| m.path.starts_with("containers/volumes"));
    let last_init = tar.iter().rposition(|m| m.source().1 == "init[0]").unwrap();
    let first_onboot = position(tar, |m| m.path.starts_with("containers/onboot"));
    let last_volume = tar
        .iter()
        .rposition(|m| m.path.starts_with("containers/volumes"))
        .unwrap();
    assert!(last_init < first_volume && last_volume < first_onboot);
    let locations: Vec<&str> = tar[first_volume..=last_volume]
        .iter()
        .map(|m| m.source().1)
        .collect();
    let mut seen: Vec<&str> = locations.clone();
    seen.dedup();
    assert_eq!(seen, ["volume[0]", "volume[1]", "volume[2]", "volume[3]"]);

    // Blank: the four prefix directories from `empty`, then tmp and merged.
    let blank: Vec<(&str, (&str, &str))> = tar
        .iter()
        .filter(|m| m.source().1 == "volume[0]")
        .map(|m| (m.path.as_str(), m.source()))
        .collect();
    assert_eq!(
        blank,
        [
            ("containers", ("empty", "volume[0]")),
            ("containers/volumes", ("empty", "volume[0]")),
            ("containers/volumes/blank", ("empty", "volume[0]")),
            ("containers/volumes/blank/lower", ("empty", "volume[0]")),
            (
                "containers/volumes/blank/merged",
                ("linuxkit.volumes", "volume[0]")
            ),
            (
                "containers/volumes/blank/tmp",
                ("linuxkit.volumes", "volume[0]")
            ),
        ]
    );
    for m in tar.iter().filter(|m| m.source().1 == "volume[0]") {
        assert_eq!(
            (m.kind, m.mode, m.uid, m.mtime),
            ('d', 0o755, 0, DEFAULT_MTIME)
        );
    }

    // Filesystem: the amd64 image under lower, init-style resolv.conf.
    let lower = "containers/volumes/fsvol/lower";
    let which = member(tar, &format!("{lower}/srv/data/which"));
    assert_eq!(which.text(), "amd64\n");
    assert_eq!(which.source(), (vol_ref.as_str(), "volume[1]"));
    let resolv = member(tar, &format!("{lower}/etc/resolv.conf"));
    assert_eq!(
        (resolv.kind, resolv.text().as_str()),
        ('l', "/run/resolvconf/resolv.conf")
    );
    assert_eq!(member(tar, lower).source(), (vol_ref.as_str(), "volume[1]"));
    for dir in ["tmp", "merged"] {
        let m = member(tar, &format!("containers/volumes/fsvol/{dir}"));
        assert_eq!(m.source(), ("linuxkit.volumes", "volume[1]"));
        assert_eq!((m.kind, m.mode, m.mtime), ('d', 0o755, DEFAULT_MTIME));
    }

    // OCI, arm64 only: layout marker, the arm64 image's blobs, the index; nothing of amd64.
    let arm_img = vol.image_for(&Platform::linux_arm64()).unwrap();
    let amd_img = vol.image_for(&Platform::linux_amd64()).unwrap();
    let layout = "containers/volumes/arm/lower";
    let blobs = oci_blobs(tar, layout);
    let mut expected: Vec<&Digest> = arm_img.blobs().map(|b| &b.digest).collect();
    expected.push(arm_img.digest());
    expected.push(vol.digest());
    let mut expected: Vec<String> = expected.iter().map(|d| d.hex().to_owned()).collect();
    expected.sort();
    assert_eq!(blobs.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(!blobs.contains_key(amd_img.digest().hex()));
    assert_eq!(
        blobs[vol.digest().hex()],
        vol.index.data,
        "the original index"
    );
    assert_eq!(blobs[arm_img.digest().hex()], arm_img.manifest.data);
    let marker = member(tar, &format!("{layout}/oci-layout"));
    assert_eq!(
        marker.text(),
        "{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}"
    );
    assert_eq!((marker.mode, marker.mtime), (0o644, 0));
    let index_json = member(tar, &format!("{layout}/index.json"));
    assert!(
        index_json
            .text()
            .starts_with("{\n   \"schemaVersion\": 2,\n"),
        "{}",
        index_json.text()
    );
    let parsed: Value = serde_json::from_slice(&index_json.data).unwrap();
    assert_eq!(
        parsed,
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{
                "mediaType": OCI_INDEX,
                "size": vol.index.size(),
                "digest": vol.digest().to_string(),
                "annotations": {"org.opencontainers.image.ref.name": vol_ref},
            }]
        })
    );
    assert_eq!(index_json.source(), (vol_ref.as_str(), "volume[2]"));
    assert_eq!(member(tar, &format!("{layout}/blobs/sha256")).kind, 'd');

    // OCI, no platforms: every image manifest of the index, attestations included.
    let every = oci_blobs(tar, "containers/volumes/every/lower");
    for img in &vol.images {
        assert!(every.contains_key(img.digest().hex()), "{}", img.digest());
        for blob in img.blobs() {
            assert!(every.contains_key(blob.digest.hex()), "{}", blob.digest);
        }
    }
    assert_eq!(
        every.len(),
        vol.images
            .iter()
            .map(|i| i.blobs().count() + 1)
            .sum::<usize>()
            + 1
    );

    // The container binds the merged directories.
    let config = member(tar, "containers/onboot/000-app/config.json").text();
    assert!(
        config.contains("\"/containers/volumes/fsvol/merged\""),
        "{config}"
    );
    assert!(
        config.contains("\"/containers/volumes/blank/merged\""),
        "{config}"
    );

    // Pinned and stored: the rebuild needs no registry (index manifests come from the store).
    drop(registry);
    let (run, again) = build(&lkb, &["--no-sbom", "vols.yml"]);
    assert!(run.executed("fetch").is_empty(), "{}", run.stderr);
    assert_eq!(again.tar, out.tar);
}

/// `blobs/sha256/*` of an OCI layout in the archive, each checked against its name.
fn oci_blobs(members: &[Member], layout: &str) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{layout}/blobs/sha256/");
    let mut out = BTreeMap::new();
    for m in members.iter().filter(|m| m.path.starts_with(&prefix)) {
        let hex = m.path[prefix.len()..].to_owned();
        assert_eq!(
            Digest::of(&m.data).hex(),
            hex,
            "blob content matches its name"
        );
        assert_eq!(
            (m.kind, m.mode, m.uid, m.mtime),
            ('f', 0o644, 0, 0),
            "{}",
            m.path
        );
        out.insert(hex, m.data.clone());
    }
    out
}

#[test]
fn read_only_volume_bound_read_write_is_a_user_error() {
    let registry = Registry::start().unwrap();
    let addr = registry.addr();
    let app = image(Platform::linux_amd64(), &[("bin/app", "app\n")]);
    registry.push_image("lkb/app", "1", &app).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "ro.yml",
        &format!(
            "volumes:\n  - name: conf\n    readonly: true\n\
             onboot:\n  - name: app\n    image: {addr}/lkb/app:1\n    binds: [\"conf:/etc/conf\"]\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["--format", "tar", "ro.yml"]).unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "volume `conf` is read-only, but attempting to write into container read-write"
        ),
        "{}",
        run.stderr
    );
    assert!(!ws.path().join("lkb-out").exists());
}

#[test]
fn volume_from_an_earlier_file_is_bound_from_a_later_one() {
    let registry = Registry::start().unwrap();
    let addr = registry.addr();
    let app = image(Platform::linux_amd64(), &[("bin/app", "app\n")]);
    registry.push_image("lkb/app", "1", &app).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(ws.path(), "base.yml", "volumes:\n  - name: shared\n");
    write(
        ws.path(),
        "app.yml",
        &format!(
            "onboot:\n  - name: app\n    image: {addr}/lkb/app:1\n    binds: [\"shared:/shared\"]\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let (_, out) = build(&lkb, &["--no-sbom", "base.yml", "app.yml"]);
    let config = member(&out.tar, "containers/onboot/000-app/config.json").text();
    assert!(
        config.contains("\"/containers/volumes/shared/merged\""),
        "{config}"
    );
    assert_eq!(
        member(&out.tar, "containers/volumes/shared/lower").source(),
        ("empty", "volume[0]")
    );
}

// ---------------------------------------------------------------------------------------------
// APK database union

#[test]
fn apk_databases_of_init_images_are_united_after_them() {
    let registry = Registry::start().unwrap();
    let addr = registry.addr();
    let db = "lib/apk/db/installed";
    let a = image(
        Platform::linux_amd64(),
        &[(db, "P:busybox\nV:1.36\n"), ("bin/a", "a")],
    );
    let b = image(Platform::linux_amd64(), &[("bin/b", "b")]);
    let c = image(Platform::linux_amd64(), &[(db, "P:musl\nV:1.2\n")]);
    for (name, img) in [("a", &a), ("b", &b), ("c", &c)] {
        registry
            .push_image(&format!("lkb/init-{name}"), "1", img)
            .unwrap();
    }
    let vol = image(Platform::linux_amd64(), &[(db, "P:volume\n")]);
    registry.push_image("lkb/vol", "1", &vol).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "apk.yml",
        &format!(
            "init:\n  - {addr}/lkb/init-a:1\n  - {addr}/lkb/init-b:1\n  - {addr}/lkb/init-c:1\n\
             volumes:\n  - name: v\n    image: {addr}/lkb/vol:1\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let (_, out) = build(&lkb, &["--no-sbom", "apk.yml"]);
    let dbs: Vec<(usize, &Member)> = out
        .tar
        .iter()
        .enumerate()
        .filter(|(_, m)| m.path == db)
        .collect();
    assert_eq!(dbs.len(), 3, "a, c and the union");
    let (at, union) = dbs[2];
    assert_eq!(union.text(), "P:busybox\nV:1.36\n\n\nP:musl\nV:1.2\n\n\n");
    assert_eq!(
        (union.kind, union.mode, union.uid, union.gid, union.mtime),
        ('f', 0o644, 0, 0, 0)
    );
    assert_eq!(union.source(), ("LINUXKIT.apkinit", "init"));
    // After every init image, before the volume.
    let last_init = out
        .tar
        .iter()
        .rposition(|m| m.source().1.starts_with("init["))
        .unwrap();
    assert!(last_init < at);
    assert_eq!(out.tar[at + 1].source().1, "volume[0]");

    // One database: no union.
    write(
        ws.path(),
        "one.yml",
        &format!("init:\n  - {addr}/lkb/init-a:1\n  - {addr}/lkb/init-b:1\n"),
    );
    let (_, out) = build(&lkb, &["--no-sbom", "one.yml"]);
    assert_eq!(out.tar.iter().filter(|m| m.path == db).count(), 1);
    assert!(out.tar.iter().all(|m| m.source().0 != "LINUXKIT.apkinit"));
}

// ---------------------------------------------------------------------------------------------
// SBOM

fn sbom_workspace(registry: &Registry) -> tempfile::TempDir {
    let addr = registry.addr();
    registry
        .push_image("lkb/init", "1", &multi_arch("init", "bin/init"))
        .unwrap();
    registry
        .push_image("lkb/vol", "1", &multi_arch("vol", "srv/vol"))
        .unwrap();
    registry
        .push_image("lkb/svc", "1", &multi_arch("svc", "usr/bin/svc"))
        .unwrap();
    // No attestation at all: contributes nothing.
    let plain = image(Platform::linux_amd64(), &[("bin/plain", "plain")]);
    registry.push_image("lkb/plain", "1", &plain).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "sbom.yml",
        &format!(
            "init:\n  - {addr}/lkb/init:1\n\
             volumes:\n  - name: data\n    image: {addr}/lkb/vol:1\n\
             onboot:\n  - name: plain\n    image: {addr}/lkb/plain:1\n\
             services:\n  - name: svc\n    image: {addr}/lkb/svc:1\n  - name: again\n    image: {addr}/lkb/svc:1\n"
        ),
    );
    ws
}

#[test]
fn sbom_merges_the_attestations_and_is_reproducible_across_stores() {
    let registry = Registry::start().unwrap();
    let ws = sbom_workspace(&registry);
    let first = Lkb::new(ws.path()).unwrap();
    let (run, out) = build(&first, &["sbom.yml"]);
    assert_eq!(run.executed("sbom").len(), 1, "{}", run.stderr);

    let last = out.tar.last().unwrap();
    assert_eq!(last.path, "sbom.spdx.json");
    assert_eq!(
        (last.kind, last.mode, last.uid, last.gid, last.mtime),
        ('f', 0o644, 0, 0, DEFAULT_MTIME)
    );
    assert!(last.pax.is_empty(), "{:?}", last.pax);
    assert!(last.data.ends_with(b"}\n"));

    let doc: Value = serde_json::from_slice(&last.data).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["name"], "sbom");
    assert_eq!(doc["creationInfo"]["created"], "2017-04-18T16:30:00Z");
    assert_eq!(
        doc["creationInfo"]["creators"],
        json!(["Organization: LinuxKit", "Tool: linuxkit"])
    );
    let namespace = doc["documentNamespace"].as_str().unwrap();
    assert!(
        namespace.starts_with("https://github.com/linuxkit/linuxkit/sbom-"),
        "{namespace}"
    );
    // amd64 documents only; init at `/`, the volume and the (first) service under their lower
    // directories; the de-duplicated second service adds nothing.
    let names = |key: &str, field: &str| -> Vec<String> {
        doc[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[field].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        names("packages", "name"),
        ["init-amd64", "vol-amd64", "svc-amd64"]
    );
    assert_eq!(
        names("files", "fileName"),
        [
            "/bin/init",
            "containers/volumes/data/lower/srv/vol",
            "containers/services/svc/lower/usr/bin/svc"
        ]
    );
    assert_eq!(
        names("packages", "packageFileName"),
        [
            "",
            "containers/volumes/data/lower",
            "containers/services/svc/lower"
        ]
    );
    assert_eq!(doc["relationships"].as_array().unwrap().len(), 3);

    // Another store, another output directory: the same bytes, SBOM included.
    let second_dir = tempfile::tempdir().unwrap();
    fs_err::copy(
        ws.path().join("lkb.toml"),
        second_dir.path().join("lkb.toml"),
    )
    .unwrap();
    fs_err::copy(
        ws.path().join("sbom.yml"),
        second_dir.path().join("sbom.yml"),
    )
    .unwrap();
    let second = Lkb::new(second_dir.path()).unwrap();
    let (_, again) = build(&second, &["sbom.yml"]);
    assert_eq!(again.tar.last().unwrap().data, last.data);
    assert_eq!(
        fs_err::read(ws.path().join("out/sbom.tar")).unwrap(),
        fs_err::read(second_dir.path().join("out/sbom.tar")).unwrap()
    );
    assert_eq!(
        fs_err::read(ws.path().join("out/sbom-initrd.img")).unwrap(),
        fs_err::read(second_dir.path().join("out/sbom-initrd.img")).unwrap()
    );

    // The attestations are in the store: a rebuild works without the registry.
    drop(registry);
    let (run, cached) = build(&first, &["sbom.yml"]);
    assert!(run.executed("sbom").is_empty(), "{}", run.stderr);
    assert_eq!(cached.tar.last().unwrap().data, last.data);
}

#[test]
fn no_sbom_leaves_it_out_and_an_sbom_without_attestations_is_still_written() {
    let registry = Registry::start().unwrap();
    let ws = sbom_workspace(&registry);
    let lkb = Lkb::new(ws.path()).unwrap();
    let (run, out) = build(&lkb, &["--no-sbom", "sbom.yml"]);
    assert!(out.tar.iter().all(|m| m.path != "sbom.spdx.json"));
    assert!(run.executed("sbom").is_empty());
    assert!(
        out.tar
            .last()
            .unwrap()
            .path
            .starts_with("containers/services/again/")
    );

    // Only images without attestations: the document is written anyway, with no packages.
    write(
        ws.path(),
        "plain.yml",
        &format!(
            "onboot:\n  - name: plain\n    image: {}/lkb/plain:1\n",
            registry.addr()
        ),
    );
    let (_, out) = build(&lkb, &["plain.yml"]);
    let last = out.tar.last().unwrap();
    assert_eq!(last.path, "sbom.spdx.json");
    let doc: Value = serde_json::from_slice(&last.data).unwrap();
    assert!(
        doc.get("packages").is_none() && doc.get("files").is_none(),
        "{doc}"
    );
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
}
