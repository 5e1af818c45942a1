//! The golden corpus (`tests/golden/`): yml files written for lkb, built with
//! `--format tar --no-sbom` against a handful of synthetic images, and compared byte for byte
//! with the committed snapshots: every `containers/**/config.json` and `runtime.json`, the
//! regular files written by `files:` entries, and `tar-headers.txt` (one line per tar entry:
//! path, type, mode, owner, size, mtime, link target, PAX records).
//!
//! `LKB_BLESS=1 cargo test -p lkb-tests --test it golden` rewrites the snapshots; review the
//! diff before committing it (see `tests/golden/README.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use lkb_tests::cli::{Lkb, repo_root, workspace};
use lkb_tests::oci::{
    Compression, Entry, Image, ImageBuilder, Layer, MOBY_CONFIG_LABEL, OciLayout,
};

/// Where every corpus image lives: `localhost/golden/<name>:1`.
const REF_PREFIX: &str = "localhost/golden";
/// The snapshot of each yml: `<name>/tar-headers.txt`.
const HEADERS_FILE: &str = "tar-headers.txt";
/// Fewer files than this means the corpus directory was not found or was emptied.
const MIN_CORPUS: usize = 15;

/// Whether `LKB_BLESS=1`: rewrite the snapshots instead of comparing.
#[expect(
    clippy::disallowed_methods,
    reason = "a test switch, not lkb configuration; lkb itself never sees it"
)]
fn bless_requested() -> bool {
    std::env::var_os("LKB_BLESS").is_some_and(|v| v == "1")
}

fn golden_dir() -> PathBuf {
    repo_root().join("tests/golden")
}

// ---------------------------------------------------------------------------------------------
// the synthetic images

/// `plain`: Entrypoint, Cmd, Env and WorkingDir, no label; one gzip layer.
fn plain_image() -> Image {
    let t = 1_600_000_000;
    ImageBuilder::new()
        .layer(
            Layer::new().entries([
                Entry::dir("bin").mtime(t),
                Entry::file("bin/app", "#!/bin/sh\nexec sleep 1\n")
                    .mode(0o755)
                    .mtime(t),
                Entry::dir("srv").mtime(t),
            ]),
        )
        .entrypoint(&["/bin/app"])
        .cmd(&["--serve"])
        .env("PATH=/usr/bin:/bin")
        .env("MODE=image")
        .working_dir("/srv")
        .build()
        .expect("plain image")
}

/// `bare`: no runtime config at all; one uncompressed layer holding what the flattening
/// treats specially (excluded and replaced files, a device) and what headers must carry
/// through (owners, setuid, sticky, xattrs, hard and symbolic links, mtimes).
fn bare_image() -> Image {
    let t = 1_500_000_000;
    let capability: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let entries = [
        Entry::file(".dockerenv", ""),
        Entry::file("Dockerfile", "FROM scratch\n"),
        Entry::dir("bin"),
        Entry::file("bin/setuid", "su\n").mode(0o4755),
        Entry::dir("dev"),
        Entry::char_device("dev/null", 1, 3).mode(0o666),
        Entry::char_device("dev/console", 5, 1),
        Entry::dir("etc"),
        Entry::file("etc/group", "root:x:0:\n"),
        Entry::file("etc/hostname", "image\n"),
        Entry::file("etc/hosts", "127.0.0.1 image-hosts\n"),
        Entry::file("etc/resolv.conf", "nameserver 192.0.2.53\n"),
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/tool", "tool\n")
            .mode(0o750)
            .owner(1000, 1001)
            .pax("SCHILY.xattr.security.capability", capability)
            .pax("SCHILY.xattr.user.origin", "golden"),
        Entry::hardlink("usr/bin/tool-hardlink", "usr/bin/tool"),
        Entry::dir("usr/lib"),
        Entry::file("usr/lib/libgolden.so.1", "\x7fELF"),
        Entry::symlink("usr/lib/libgolden.so", "libgolden.so.1"),
        Entry::dir("var"),
        Entry::dir("var/spool").mode(0o1777),
        Entry::dir("var/lib").mode(0o750).owner(100, 101),
    ];
    ImageBuilder::new()
        .layer(
            Layer::new()
                .compression(Compression::None)
                .entries(entries.into_iter().map(|e| e.mtime(t))),
        )
        .layer(named_owner_layer(t + 1))
        .build()
        .expect("bare image")
}

/// A layer whose one file carries owner names (`uname`/`gname`), which the `Entry` builder
/// leaves empty: `var/lib/named` owned by `daemon:adm` (1:4).
fn named_owner_layer(mtime: u64) -> Layer {
    let content = b"named\n";
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path("var/lib/named").expect("path");
    header.set_mode(0o640);
    header.set_uid(1);
    header.set_gid(4);
    header.set_username("daemon").expect("uname");
    header.set_groupname("adm").expect("gname");
    header.set_mtime(mtime);
    header.set_size(content.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, content.as_slice()).expect("append");
    Layer::from_tar(builder.into_inner().expect("finish tar")).compression(Compression::None)
}

/// `cmd`: a Cmd without Entrypoint, Env without WorkingDir; two layers, the upper one
/// deleting a file of the lower one.
fn cmd_image() -> Image {
    let t = 1_550_000_000;
    ImageBuilder::new()
        .layer(Layer::new().entries([
            Entry::dir("usr").mtime(t),
            Entry::dir("usr/bin").mtime(t),
            Entry::file("usr/bin/cmd", "cmd\n").mode(0o755).mtime(t),
            Entry::dir("usr/share").mtime(t),
            Entry::file("usr/share/old", "old\n").mtime(t),
        ]))
        .layer(Layer::new().entries([
            Entry::dir("usr/share").mtime(t + 1),
            Entry::whiteout("usr/share/old").mtime(t + 1),
            Entry::file("usr/share/new", "new\n").mtime(t + 1),
        ]))
        .cmd(&["/usr/bin/cmd", "-x"])
        .env("A=1")
        .build()
        .expect("cmd image")
}

/// The JSON label of `labelled`, compact, as `linuxkit pkg build` writes it.
const JSON_LABEL: &str = concat!(
    r#"{"capabilities":["CAP_NET_ADMIN","CAP_SYS_ADMIN"],"#,
    r#""binds":["/run:/run:rshared","/etc/resolv.conf:/etc/resolv.conf"],"#,
    r#""tmpfs":["/tmp"],"#,
    r#""devices":[{"path":"/dev/kmsg","type":"c","major":1,"minor":11,"mode":"0644"}],"#,
    r#""command":["/sbin/labelled","--from-label"],"env":["FROM=label"],"cwd":"/label","#,
    r#""net":"new","pid":"host","hostname":"from-label","#,
    r#""sysctl":{"net.ipv4.ip_forward":"1"},"rlimits":["nofile,1024,2048"],"#,
    r#""noNewPrivileges":true,"oomScoreAdj":-500,"maskedPaths":["/proc/kcore"],"#,
    r#""annotations":{"org.example.from":"label"},"#,
    r#""runtime":{"cgroups":["labelled"],"mkdir":["/var/lib/labelled"],"#,
    r#""bindNS":{"net":"/run/netns/labelled","uts":"/run/utsns/labelled"},"#,
    r#""namespace":"labelled"}}"#,
);

/// `labelled`: the JSON label, and an image config that the label overrides.
fn labelled_image() -> Image {
    let t = 1_600_000_001;
    ImageBuilder::new()
        .layer(
            Layer::new().entries([
                Entry::dir("sbin").mtime(t),
                Entry::file("sbin/labelled", "labelled\n")
                    .mode(0o755)
                    .mtime(t),
            ]),
        )
        .entrypoint(&["/sbin/image-entrypoint"])
        .cmd(&["--from-image"])
        .env("FROM=image")
        .working_dir("/image")
        .label(MOBY_CONFIG_LABEL, JSON_LABEL)
        .label("org.opencontainers.image.title", "labelled")
        .build()
        .expect("labelled image")
}

/// The YAML label of `yamllabel`, with `capabilities.add` and `binds.add` of its own.
const YAML_LABEL: &str = "\
capabilities:
  - CAP_CHOWN
capabilities.add:
  - CAP_DAC_OVERRIDE
binds:
  - /etc/ssl:/etc/ssl:ro
binds.add:
  - /var/cache:/var/cache
readonly: true
tmpfs:
  - /tmp:size=4m
resources:
  memory:
    limit: 33554432
  pids:
    limit: 32
env:
  - FROM=yaml-label
";

/// `yamllabel`: the YAML label; command and cwd come from the image config.
fn yaml_label_image() -> Image {
    let t = 1_600_000_002;
    ImageBuilder::new()
        .layer(
            Layer::new().entries([
                Entry::dir("usr").mtime(t),
                Entry::dir("usr/sbin").mtime(t),
                Entry::file("usr/sbin/daemon", "daemon\n")
                    .mode(0o755)
                    .mtime(t),
            ]),
        )
        .entrypoint(&["/usr/sbin/daemon"])
        .cmd(&["-f"])
        .env("FROM=image")
        .working_dir("/var/daemon")
        .label(MOBY_CONFIG_LABEL, YAML_LABEL)
        .build()
        .expect("yamllabel image")
}

/// Writes every corpus image into an OCI layout at `dir`.
fn write_layout(dir: &Path) {
    let mut layout = OciLayout::create(dir).expect("create layout");
    for (name, image) in [
        ("plain", plain_image()),
        ("bare", bare_image()),
        ("cmd", cmd_image()),
        ("labelled", labelled_image()),
        ("yamllabel", yaml_label_image()),
    ] {
        layout
            .add(&format!("{REF_PREFIX}/{name}:1"), &image)
            .expect("add image to layout");
    }
}

// ---------------------------------------------------------------------------------------------
// reading the tar

/// One tar entry as the snapshot describes it.
struct TarEntry {
    path: String,
    line: String,
    /// Regular-file contents.
    data: Vec<u8>,
    regular: bool,
    pax: BTreeMap<String, Vec<u8>>,
}

/// PAX values and link targets with anything but printable ASCII (and `\`, `}`, space)
/// escaped as `\xNN`, so each entry stays on one line and binary xattrs are readable.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' && b != b'}' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn parse_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let mut pax = BTreeMap::new();
        if let Some(records) = entry.pax_extensions().expect("pax records") {
            for record in records {
                let record = record.expect("pax record");
                let key = record.key().expect("utf-8 pax key").to_owned();
                pax.insert(key, record.value_bytes().to_vec());
            }
        }
        let header = entry.header().clone();
        let pax_number = |key: &str, fallback: u64| {
            pax.get(key).map_or(fallback, |v| {
                let text = String::from_utf8_lossy(v);
                let whole = text.split('.').next().unwrap_or_default();
                whole.parse().expect("numeric pax record")
            })
        };
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
        let path = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let mut line = format!(
            "{path} {kind} {:04o} {}:{} {} {}",
            header.mode().expect("mode") & 0o7777,
            pax_number("uid", header.uid().expect("uid")),
            pax_number("gid", header.gid().expect("gid")),
            entry.size(),
            pax_number("mtime", header.mtime().expect("mtime")),
        );
        let owner_names = (
            header.username().ok().flatten().unwrap_or_default(),
            header.groupname().ok().flatten().unwrap_or_default(),
        );
        if owner_names != ("", "") {
            let _ = write!(line, " owner={}:{}", owner_names.0, owner_names.1);
        }
        if matches!(kind, 'l' | 'h') {
            let target = entry.link_name_bytes().expect("link target").into_owned();
            let _ = write!(line, " -> {}", escape(&target));
        }
        if matches!(kind, 'c' | 'b') {
            let _ = write!(
                line,
                " dev={},{}",
                header.device_major().ok().flatten().unwrap_or_default(),
                header.device_minor().ok().flatten().unwrap_or_default()
            );
        }
        let records: Vec<String> = pax
            .iter()
            .map(|(k, v)| format!("{k}={}", escape(v)))
            .collect();
        let _ = write!(line, " pax{{{}}}", records.join(" "));
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.push(TarEntry {
            path,
            line,
            data,
            regular: kind == '-',
            pax,
        });
    }
    out
}

/// What one yml's snapshot holds: relative path → bytes.
fn snapshot_of(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let entries = parse_tar(tar_bytes);
    let mut out = BTreeMap::new();
    let mut headers = String::new();
    for entry in &entries {
        headers.push_str(&entry.line);
        headers.push('\n');
        let parts: Vec<&str> = entry.path.split('/').collect();
        let bundle_file = matches!(
            parts.as_slice(),
            [
                "containers",
                "onboot" | "onshutdown" | "services",
                _,
                "config.json" | "runtime.json"
            ]
        );
        let from_files = entry.pax.get("LINUXKIT.source").map(Vec::as_slice)
            == Some(b"linuxkit.files".as_slice());
        if entry.regular && (bundle_file || from_files) {
            let previous = out.insert(entry.path.clone(), entry.data.clone());
            assert!(previous.is_none(), "{} twice in the tar", entry.path);
        }
    }
    out.insert(HEADERS_FILE.to_owned(), headers.into_bytes());
    out
}

// ---------------------------------------------------------------------------------------------
// comparing

/// Every file below `dir`, by path relative to it.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(read) = fs_err::read_dir(dir) else {
            return;
        };
        for entry in read {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    fs_err::read(&path).expect("read snapshot"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A line diff of `expected` and `actual` (LCS), with two lines of context around changes.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split('\n').collect();
    let b: Vec<&str> = actual.split('\n').collect();
    // lcs[i][j]: longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 2;
    const MAX_LINES: usize = 200;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut shown = 0;
    let mut last_printed: Option<usize> = None;
    for (k, op) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
        if !near {
            continue;
        }
        if last_printed.is_none_or(|p| p + 1 != k) {
            let _ = writeln!(out, "@@ expected line {} @@", op.1);
        }
        last_printed = Some(k);
        let _ = writeln!(out, "{}{}", op.0, op.2);
        shown += 1;
        if shown >= MAX_LINES {
            out.push_str("… (diff cut)\n");
            break;
        }
    }
    out
}

/// The differences between a snapshot and a build, one paragraph per file.
fn compare(
    name: &str,
    expected: &BTreeMap<String, Vec<u8>>,
    actual: &BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => problems.push(format!(
                "{name}/{path}: in the snapshot, not in the build output"
            )),
            Some(got) if got != want => problems.push(format!(
                "{name}/{path} differs (- snapshot, + build):\n{}",
                diff(
                    &String::from_utf8_lossy(want),
                    &String::from_utf8_lossy(got)
                )
            )),
            Some(_) => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!(
            "{name}/{path}: in the build output, not in the snapshot"
        ));
    }
    problems
}

/// Replaces the snapshot directory `dir` with `files`.
fn bless(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    if dir.exists() {
        fs_err::remove_dir_all(dir).expect("remove old snapshot");
    }
    for (path, bytes) in files {
        let full = dir.join(path);
        fs_err::create_dir_all(full.parent().expect("parent")).expect("snapshot dir");
        fs_err::write(&full, bytes).expect("write snapshot");
    }
}

/// The corpus: `(name, yml text)` for every `tests/golden/*.yml`, by name.
fn corpus() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(golden_dir()).expect("tests/golden") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yml") {
            let name = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            out.push((name, fs_err::read_to_string(&path).expect("read yml")));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// the test

#[test]
fn golden_corpus_matches_its_snapshots() {
    let blessing = bless_requested();
    let corpus = corpus();
    assert!(
        corpus.len() >= MIN_CORPUS,
        "only {} yml files in {}",
        corpus.len(),
        golden_dir().display()
    );

    let layout_dir = tempfile::tempdir().expect("tempdir");
    write_layout(layout_dir.path());
    let ws = workspace(&[layout_dir.path()], &[]).expect("workspace");
    let lkb = Lkb::new(ws.path()).expect("lkb");

    let mut problems = Vec::new();
    for (name, text) in &corpus {
        let yml = format!("{name}.yml");
        fs_err::write(ws.path().join(&yml), text).expect("write yml");
        let run = lkb
            .build(&[
                "--format",
                "tar",
                "--no-sbom",
                "--arch",
                "amd64",
                &yml,
                "--dir",
                "out",
            ])
            .expect("run lkb");
        if run.code != 0 {
            problems.push(format!(
                "{name}.yml: lkb exited {}:\n{}",
                run.code, run.stderr
            ));
            continue;
        }
        let tar_bytes = fs_err::read(ws.path().join("out").join(format!("{name}.tar")))
            .expect("read the tar output");
        let actual = snapshot_of(&tar_bytes);
        let dir = golden_dir().join(name);
        if blessing {
            bless(&dir, &actual);
        } else {
            let expected = read_tree(&dir);
            if expected.is_empty() {
                problems.push(format!(
                    "{name}: no snapshot in {}; run LKB_BLESS=1 cargo test -p lkb-tests --test it golden",
                    dir.display()
                ));
            } else {
                problems.extend(compare(name, &expected, &actual));
            }
        }
    }

    // Snapshot directories whose yml is gone.
    for entry in fs_err::read_dir(golden_dir()).expect("tests/golden") {
        let path = entry.expect("dir entry").path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if !corpus.iter().any(|(n, _)| *n == name) {
            if blessing {
                fs_err::remove_dir_all(&path).expect("remove stale snapshot");
            } else {
                problems.push(format!("{name}/: a snapshot without {name}.yml"));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{} golden mismatch(es); if the change is intended, run \
         LKB_BLESS=1 cargo test -p lkb-tests --test it golden and review the diff:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn golden_diff_shows_changed_lines_with_context() {
    let text = diff(
        "a\nb\nc\nd\ne\nf\ng\nh\ni\nj",
        "a\nB\nc\nd\ne\nf\ng\nh\nI\nj",
    );
    assert_eq!(
        text,
        "@@ expected line 1 @@\n a\n-b\n+B\n c\n d\n@@ expected line 7 @@\n g\n h\n-i\n+I\n j\n"
    );
    assert_eq!(diff("same", "same"), "");
    assert_eq!(escape(b"a b\\}\x00\xff"), "a\\x20b\\x5c\\x7d\\x00\\xff");
}
