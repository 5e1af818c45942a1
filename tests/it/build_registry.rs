//! End-to-end `lkb build` against a real registry (Debian's docker-registry on 127.0.0.1):
//! layer semantics in the extracted initrd, fetch de-duplication, platform selection, tampered
//! blobs, authentication, unreachable registries, the lock file, `--locked`, `--pull` and
//! `--offline`. Every output is checked with the real `gzip` and `cpio`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lkb_tests::cli::{Lkb, Run, workspace};
use lkb_tests::oci::{
    Compression, Digest, Entry, Flavor, Image, ImageBuilder, Layer, MOBY_CONFIG_LABEL, TarFormat,
};
use lkb_tests::registry::{Registry, docker_config_json, free_port};
use lkb_tests::synthetic::{self, Node};
use serde_json::Value;

/// LinuxKit's `/etc/hosts` (reference §2.2).
const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
/// `etc/resolv.conf` of container images (reference §2.2).
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

/// Runs a program, fails the test unless it exits 0, returns stdout.
pub(crate) fn run_tool(cmd: &mut Command, stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // Feed stdin from a thread so a large archive cannot deadlock against stdout.
        let feeder = std::thread::spawn(move || pipe.write_all(&data));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return out.stdout;
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Splits concatenated newc archives by walking their headers (a search for `TRAILER!!!`
/// would also hit file contents: busybox carries that string for its cpio applet). Each
/// archive ends with its trailer padded to a multiple of 512 bytes.
pub(crate) fn split_newc(data: &[u8]) -> Vec<Vec<u8>> {
    let align = |p: usize| (p + 3) & !3;
    let mut archives = Vec::new();
    let mut start = 0;
    while data[start..].iter().any(|b| *b != 0) {
        let mut pos = start;
        loop {
            assert_eq!(
                &data[pos..pos + 6],
                b"070701",
                "no newc header at offset {pos}"
            );
            let hex = |i: usize| {
                let field = std::str::from_utf8(&data[pos + 6 + 8 * i..pos + 14 + 8 * i]).unwrap();
                usize::from_str_radix(field, 16).unwrap()
            };
            let (size, namesize) = (hex(6), hex(11));
            let name = &data[pos + 110..pos + 110 + namesize - 1];
            pos = align(align(pos + 110 + namesize) + size);
            if name == b"TRAILER!!!" {
                break;
            }
        }
        let end = (start + (pos - start).div_ceil(512) * 512).min(data.len());
        archives.push(data[start..end].to_vec());
        start = end;
    }
    archives
}

/// Removes the last archive if it is LinuxKit's `sbom.spdx.json` section (written by default
/// after everything else), checking that it holds nothing else. Returns whether it was there.
pub(crate) fn drop_sbom(listings: &mut Vec<Vec<String>>) -> bool {
    let is_sbom = listings
        .last()
        .is_some_and(|last| last.iter().any(|n| n == "sbom.spdx.json"));
    if is_sbom {
        let last = listings.pop().unwrap();
        assert_eq!(last, ["sbom.spdx.json"], "the SBOM section holds more");
    }
    is_sbom
}

/// `gzip -dc` of an initrd, split into its cpio archives.
pub(crate) fn initrd_archives(initrd: &Path) -> Vec<Vec<u8>> {
    split_newc(&run_tool(Command::new("gzip").arg("-dc").arg(initrd), None))
}

/// Extracts every archive of the initrd with `cpio -idmu --no-absolute-filenames`, in order,
/// into `dest` (later archives replace earlier entries, like the kernel). Returns the names
/// each archive lists (`cpio -it`).
fn extract_initrd(initrd: &Path, dest: &Path) -> Vec<Vec<String>> {
    fs_err::create_dir_all(dest).unwrap();
    let mut listings = Vec::new();
    for archive in initrd_archives(initrd) {
        let names = run_tool(
            Command::new("cpio").args(["-it", "--quiet"]),
            Some(&archive),
        );
        listings.push(
            String::from_utf8(names)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect(),
        );
        run_tool(
            Command::new("cpio")
                .args(["-idmu", "--quiet", "--no-absolute-filenames"])
                .current_dir(dest),
            Some(&archive),
        );
    }
    listings
}

/// Every path below `root` (relative, no trailing `/`), not following symlinks.
pub(crate) fn walk(root: &Path) -> BTreeSet<String> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel);
            if entry.file_type().unwrap().is_dir() {
                go(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    go(root, root, &mut out);
    out
}

/// Asserts that the extracted tree at `root` is exactly `expected`: same paths, and for each
/// the type, permission bits, owner, content and link target.
fn assert_tree(root: &Path, expected: &BTreeMap<String, Node>) {
    let actual = walk(root);
    let wanted: BTreeSet<String> = expected.keys().cloned().collect();
    let missing: Vec<_> = wanted.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&wanted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "tree at {} differs:\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        root.display()
    );
    for (path, node) in expected {
        let full = root.join(path);
        let meta = fs_err::symlink_metadata(&full).unwrap();
        match node {
            Node::Dir { mode } => {
                assert!(meta.is_dir(), "{path} is not a directory");
                assert_eq!(meta.mode() & 0o7777, *mode, "mode of {path}");
            }
            Node::File {
                content,
                mode,
                uid,
                gid,
            } => {
                assert!(meta.file_type().is_file(), "{path} is not a regular file");
                assert_eq!(meta.mode() & 0o7777, *mode, "mode of {path}");
                assert_eq!(
                    (u64::from(meta.uid()), u64::from(meta.gid())),
                    (*uid, *gid),
                    "owner of {path}"
                );
                assert_eq!(&fs_err::read(&full).unwrap(), content, "content of {path}");
            }
            Node::Symlink(target) => {
                assert!(meta.file_type().is_symlink(), "{path} is not a symlink");
                assert_eq!(
                    fs_err::read_link(&full).unwrap().to_string_lossy(),
                    target.as_str(),
                    "target of {path}"
                );
            }
            Node::HardLink(target) => {
                let other = fs_err::symlink_metadata(root.join(target)).unwrap();
                assert!(
                    meta.file_type().is_file(),
                    "hard link {path} is not a regular file"
                );
                assert_eq!(
                    (meta.dev(), meta.ino()),
                    (other.dev(), other.ino()),
                    "{path} is not a hard link to {target}"
                );
                assert_eq!(meta.nlink(), 2, "link count of {path}");
            }
        }
    }
}

fn file_node(content: &str, mode: u32, uid: u64, gid: u64) -> Node {
    Node::File {
        content: content.as_bytes().to_vec(),
        mode,
        uid,
        gid,
    }
}

/// What LinuxKit adds to (or forces on) every container image's filesystem (reference §2.2).
fn add_container_touches(tree: &mut BTreeMap<String, Node>) {
    let dir = Node::Dir { mode: 0o755 };
    for d in ["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"] {
        tree.insert(d.into(), dir.clone());
    }
    tree.insert("etc/hosts".into(), file_node(HOSTS, 0o644, 0, 0));
    tree.insert("etc/resolv.conf".into(), file_node(NO_RESOLV, 0o644, 0, 0));
    tree.insert("etc/mtab".into(), Node::Symlink("/proc/mounts".into()));
}

fn summary_u64(run: &Run, pointer: &str) -> u64 {
    let summary = run.summary().unwrap();
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {summary}"))
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// The lower layer of [`two_layer_image`]; the same `tag` gives the same bytes.
fn base_layer(tag: &str) -> Layer {
    Layer::new()
        .dir("etc")
        .file("etc/which", format!("{tag}\n"))
        .dir("data")
        .file("data/a.bin", noise(300_000, 1))
}

/// A two-layer image whose layers are big enough to tell fetched bytes apart.
fn two_layer_image(tag: &str) -> Image {
    ImageBuilder::new()
        .layer(base_layer(tag))
        .layer(
            Layer::new()
                .compression(Compression::Zstd)
                .dir("data")
                .file("data/b.bin", noise(200_000, 2))
                .file("data/tag", format!("{tag}\n")),
        )
        .entrypoint(&["/bin/true"])
        .build()
        .unwrap()
}

/// Every file name below the store's directories.
fn store_file_names(store: &Path) -> BTreeSet<String> {
    walk(store)
        .into_iter()
        .filter_map(|p| {
            Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect()
}

fn fake_kernel_yml(addr: &str, cmdline: &str, service_ref: &str) -> String {
    format!(
        "kernel:\n  image: {addr}/lkb/kernel:1\n  cmdline: \"{cmdline}\"\nonboot:\n  - name: app\n    image: {service_ref}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// 1. layer semantics

/// Layer 4 (PAX): paths and link targets longer than 255 bytes, owners other than root.
fn long_pax_layer() -> Layer {
    let (a, b) = ("a".repeat(150), "b".repeat(150));
    let dir = format!("long/{a}/{b}");
    let file = format!("{dir}/file-{}.txt", "c".repeat(100));
    Layer::new()
        .dir("long")
        .dir(&format!("long/{a}"))
        .entry(Entry::dir(dir.clone()).mode(0o750).owner(77, 88))
        .entry(
            Entry::file(file.clone(), "very long path\n")
                .mode(0o640)
                .owner(4242, 4343),
        )
        .hardlink(&format!("{dir}/hard-{}", "d".repeat(120)), &file)
        .dir("links")
        .symlink("links/long-abs", &format!("/{file}"))
}

/// Layer 5 (GNU long names): a >255-byte name and a relative >255-byte symlink target.
fn long_gnu_layer() -> Layer {
    let (e, f) = ("e".repeat(200), "f".repeat(200));
    Layer::new()
        .compression(Compression::None)
        .format(TarFormat::Gnu)
        .dir("gnu")
        .dir(&format!("gnu/{e}"))
        .entry(
            Entry::file(format!("gnu/{e}/{f}"), "gnu long\n")
                .mode(0o600)
                .owner(1, 2),
        )
        .symlink("gnu/rel-long", &format!("{e}/{f}"))
}

pub(crate) fn layered_plus_long_image() -> Image {
    ImageBuilder::new()
        .layer(synthetic::layered_base())
        .layer(synthetic::layered_changes())
        .layer(synthetic::layered_additions())
        .layer(long_pax_layer())
        .layer(long_gnu_layer())
        .entrypoint(&["/usr/bin/tool"])
        .cmd(&["--flag"])
        .env("PATH=/usr/bin:/bin")
        .env("LKB=1")
        .working_dir("/home/user")
        .label(MOBY_CONFIG_LABEL, synthetic::LAYERED_LABEL)
        .build()
        .unwrap()
}

fn layered_plus_long_expected() -> BTreeMap<String, Node> {
    let mut tree = synthetic::layered_expected(true);
    let (a, b) = ("a".repeat(150), "b".repeat(150));
    let dir = format!("long/{a}/{b}");
    let file = format!("{dir}/file-{}.txt", "c".repeat(100));
    assert!(file.len() > 255);
    tree.insert("long".into(), Node::Dir { mode: 0o755 });
    tree.insert(format!("long/{a}"), Node::Dir { mode: 0o755 });
    tree.insert(dir.clone(), Node::Dir { mode: 0o750 });
    tree.insert(
        file.clone(),
        file_node("very long path\n", 0o640, 4242, 4343),
    );
    tree.insert(
        format!("{dir}/hard-{}", "d".repeat(120)),
        Node::HardLink(file.clone()),
    );
    tree.insert("links/long-abs".into(), Node::Symlink(format!("/{file}")));
    let (e, f) = ("e".repeat(200), "f".repeat(200));
    tree.insert("gnu".into(), Node::Dir { mode: 0o755 });
    tree.insert(format!("gnu/{e}"), Node::Dir { mode: 0o755 });
    tree.insert(format!("gnu/{e}/{f}"), file_node("gnu long\n", 0o600, 1, 2));
    tree.insert("gnu/rel-long".into(), Node::Symlink(format!("{e}/{f}")));
    add_container_touches(&mut tree);
    tree
}

#[test]
fn multi_layer_registry_image_extracts_to_the_expected_tree() {
    let registry = Registry::start().unwrap();
    let image = layered_plus_long_image();
    registry.push_image("lkb/layered", "1", &image).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    let reference = format!("{}/lkb/layered:1", registry.addr());
    write(
        ws.path(),
        "layered.yml",
        &format!(
            "onboot:\n  - name: x\n    image: {reference}\nservices:\n  - name: svc\n    image: {reference}\n    command: [\"/usr/bin/tool\", \"--service\"]\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["layered.yml"]).unwrap().ok().unwrap();
    assert_eq!(
        run.executed("fetch").len(),
        image.layers.len(),
        "{}",
        run.stderr
    );

    // No kernel: the initrd alone is written, named after the yml.
    let out = ws.path().join("lkb-out");
    let written: BTreeSet<String> = walk(&out);
    assert_eq!(
        written,
        BTreeSet::from(["layered-initrd.img".to_string()]),
        "{}",
        run.stderr
    );

    let root = ws.path().join("extracted");
    let mut listings = extract_initrd(&out.join("layered-initrd.img"), &root);
    if drop_sbom(&mut listings) {
        let sbom: Value =
            serde_json::from_slice(&fs_err::read(root.join("sbom.spdx.json")).unwrap()).unwrap();
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3", "{sbom}");
    }
    assert_eq!(listings.len(), 2, "one archive per bundle: {listings:?}");
    assert!(
        listings[0]
            .iter()
            .all(|n| n.starts_with("containers/onboot/000-x")
                || n == "containers"
                || n == "containers/onboot"),
        "{:?}",
        listings[0]
    );

    let bundle = root.join("containers/onboot/000-x");
    assert_tree(&bundle.join("lower"), &layered_plus_long_expected());
    let home = fs_err::symlink_metadata(bundle.join("lower/home/user")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    let long_dir = fs_err::symlink_metadata(bundle.join(format!(
        "lower/long/{}/{}",
        "a".repeat(150),
        "b".repeat(150)
    )))
    .unwrap();
    assert_eq!((long_dir.uid(), long_dir.gid()), (77, 88));
    for generated in ["tmp", "rootfs"] {
        assert!(bundle.join(generated).is_dir(), "{generated}");
    }

    // The bundle spec comes from the image config and label.
    let config: Value =
        serde_json::from_slice(&fs_err::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/usr/bin/tool", "--flag"])
    );
    assert_eq!(config["process"]["cwd"], "/home/user");
    let env: Vec<&str> = config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"LKB=1"), "{env:?}");
    let svc: Value = serde_json::from_slice(
        &fs_err::read(root.join("containers/services/svc/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        svc["process"]["args"],
        serde_json::json!(["/usr/bin/tool", "--service"])
    );
}

// ---------------------------------------------------------------------------------------------
// 2. one image, two services

#[test]
fn image_shared_by_two_services_is_fetched_unpacked_and_extracted_once() {
    let registry = Registry::start().unwrap();
    let image = two_layer_image("shared");
    registry.push_image("lkb/shared", "1", &image).unwrap();
    // Another image on the same base layer: only its own layer is new.
    let cousin = ImageBuilder::new()
        .layer(base_layer("shared"))
        .layer(Layer::new().dir("data").file("data/cousin", "cousin\n"))
        .build()
        .unwrap();
    assert_eq!(cousin.layers[0].digest, image.layers[0].digest);
    registry.push_image("lkb/cousin", "1", &cousin).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    let reference = format!("{}/lkb/shared:1", registry.addr());
    write(
        ws.path(),
        "two.yml",
        &format!(
            "services:\n  - name: first\n    image: {reference}\n  - name: second\n    image: {reference}\n    command: [\"/bin/second\"]\n  - name: cousin\n    image: {}/lkb/cousin:1\n    command: [\"/bin/cousin\"]\n",
            registry.addr()
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["two.yml"]).unwrap().ok().unwrap();

    let layer_bytes: u64 =
        image.layers.iter().map(|l| l.size()).sum::<u64>() + cousin.layers[1].size();
    assert_eq!(run.executed("fetch").len(), 3, "{}", run.stderr);
    assert_eq!(run.executed("unpack").len(), 3, "{}", run.stderr);
    assert_eq!(run.executed("merge").len(), 2, "{}", run.stderr);
    assert_eq!(run.executed("bundle").len(), 3, "{}", run.stderr);
    assert_eq!(summary_u64(&run, "/bytes_fetched"), layer_bytes);
    // No action ran twice under another name.
    let labels: Vec<String> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "action_finished")
        .map(|e| e["label"].as_str().unwrap_or_default().to_owned())
        .collect();
    let unique: BTreeSet<&String> = labels.iter().collect();
    assert_eq!(unique.len(), labels.len(), "{labels:#?}");

    let root = ws.path().join("x");
    extract_initrd(&ws.path().join("lkb-out/two-initrd.img"), &root);
    let first = root.join("containers/services/first");
    let second = root.join("containers/services/second");
    assert_eq!(
        fs_err::read(first.join("lower/data/b.bin")).unwrap(),
        noise(200_000, 2)
    );
    assert_eq!(
        fs_err::read_to_string(first.join("lower/etc/which")).unwrap(),
        "shared\n"
    );
    // LinuxKit's de-duplication: the second bundle has no image filesystem of its own.
    assert_eq!(
        walk(&second),
        BTreeSet::from(["config.json", "runtime.json", "rootfs", "tmp"].map(String::from)),
        "second bundle holds more than its spec"
    );
    let runtime: Value =
        serde_json::from_slice(&fs_err::read(second.join("runtime.json")).unwrap()).unwrap();
    let overlay = runtime["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "overlay")
        .unwrap_or_else(|| panic!("no overlay mount in {runtime}"));
    let options: Vec<&str> = overlay["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        options.contains(&"lowerdir=/containers/services/first/lower"),
        "{options:?}"
    );
    assert!(
        options.contains(&"upperdir=/containers/services/second/tmp/upper"),
        "{options:?}"
    );
    assert_eq!(overlay["destination"], "/containers/services/second/rootfs");
    let config: Value =
        serde_json::from_slice(&fs_err::read(second.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/bin/second"])
    );
    // The cousin image is a different image: extracted on its own, base layer included.
    let cousin_root = root.join("containers/services/cousin/lower");
    assert_eq!(
        fs_err::read(cousin_root.join("data/a.bin")).unwrap(),
        noise(300_000, 1)
    );
    assert_eq!(
        fs_err::read_to_string(cousin_root.join("data/cousin")).unwrap(),
        "cousin\n"
    );
    assert!(!cousin_root.join("data/b.bin").exists());
}

// ---------------------------------------------------------------------------------------------
// 3. platforms

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no GOARCH spelling for host {other}"),
    }
}

#[test]
fn multi_platform_index_yields_the_requested_architecture() {
    let registry = Registry::start().unwrap();
    registry
        .push_image(
            "lkb/multi",
            "1",
            &synthetic::multiarch_index(Flavor::Oci).unwrap(),
        )
        .unwrap();
    registry
        .push_image(
            "lkb/multi-docker",
            "1",
            &synthetic::multiarch_index(Flavor::Docker).unwrap(),
        )
        .unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "multi.yml",
        &format!(
            "onboot:\n  - name: oci\n    image: {a}/lkb/multi:1\n  - name: docker\n    image: {a}/lkb/multi-docker:1\n",
            a = registry.addr()
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let arch_of = |dir: &str, extra: &[&str]| -> (String, String) {
        let mut args = vec!["multi.yml", "--dir", dir];
        args.extend_from_slice(extra);
        lkb.build(&args).unwrap().ok().unwrap();
        let root = ws.path().join(format!("{dir}-x"));
        extract_initrd(&ws.path().join(dir).join("multi-initrd.img"), &root);
        let read = |bundle: &str| {
            fs_err::read_to_string(root.join(format!("containers/onboot/{bundle}/lower/etc/arch")))
                .unwrap()
        };
        (read("000-oci"), read("001-docker"))
    };
    let host = format!("{}\n", host_arch());
    assert_eq!(arch_of("default", &[]), (host.clone(), host.clone()));
    assert_eq!(
        arch_of("arm", &["--arch", "arm64"]),
        ("arm64\n".to_string(), "arm64\n".to_string())
    );
    assert_eq!(
        arch_of("amd", &["--arch", "amd64"]),
        ("amd64\n".to_string(), "amd64\n".to_string())
    );
    // Different content, so different initrds.
    assert_ne!(
        fs_err::read(ws.path().join("arm/multi-initrd.img")).unwrap(),
        fs_err::read(ws.path().join("amd/multi-initrd.img")).unwrap()
    );
    let lock = fs_err::read_to_string(ws.path().join("lkb.lock")).unwrap();
    assert!(lock.contains("linux/arm64"), "{lock}");
    assert!(lock.contains("linux/amd64"), "{lock}");

    // A platform the index lacks is the user's problem, and the message lists what exists.
    let run = lkb
        .build(&["multi.yml", "--dir", "s390x", "--arch", "s390x"])
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("s390x"), "{}", run.stderr);
    assert!(run.stderr.contains("linux/arm64"), "{}", run.stderr);
    assert!(!ws.path().join("s390x").exists());
}

// ---------------------------------------------------------------------------------------------
// 4. tampered blob

#[test]
fn tampered_blob_fails_names_both_digests_writes_nothing_and_recovers() {
    let registry = Registry::start().unwrap();
    let image = two_layer_image("tamper");
    registry.push_image("lkb/tamper", "1", &image).unwrap();
    let victim = &image.layers[0];
    registry.corrupt_blob(&victim.digest).unwrap();
    let served = fs_err::read(registry.blob_data_path(&victim.digest)).unwrap();
    let actual = Digest::of(&served);
    assert_ne!(actual, victim.digest);

    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "tamper.yml",
        &format!(
            "onboot:\n  - name: t\n    image: {}/lkb/tamper:1\n",
            registry.addr()
        ),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["tamper.yml"]).unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&victim.digest.to_string()),
        "expected digest not named:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&actual.to_string()),
        "actual digest not named:\n{}",
        run.stderr
    );
    assert!(
        !ws.path().join("lkb-out").exists(),
        "a failed build wrote outputs"
    );
    assert!(
        !ws.path().join("lkb.lock").exists(),
        "a failed build wrote lkb.lock"
    );
    let names = store_file_names(&lkb.store.path().join("store-v1"));
    for bad in [&victim.digest, &actual] {
        assert!(
            !names.contains(bad.hex()),
            "the store kept a file named {bad}"
        );
    }

    // A tampered image config is caught the same way, while resolving.
    let other = ImageBuilder::new()
        .layer(Layer::new().file("x", "x\n"))
        .entrypoint(&["/x"])
        .build()
        .unwrap();
    registry
        .push_image("lkb/tamper-config", "1", &other)
        .unwrap();
    registry.corrupt_blob(&other.config.digest).unwrap();
    let bad_config =
        Digest::of(&fs_err::read(registry.blob_data_path(&other.config.digest)).unwrap());
    write(
        ws.path(),
        "config.yml",
        &format!(
            "onboot:\n  - name: c\n    image: {}/lkb/tamper-config:1\n",
            registry.addr()
        ),
    );
    let run = lkb.build(&["config.yml"]).unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&other.config.digest.to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&bad_config.to_string()),
        "{}",
        run.stderr
    );
    assert!(!ws.path().join("lkb-out").exists());
    let names = store_file_names(&lkb.store.path().join("store-v1"));
    assert!(!names.contains(other.config.digest.hex()) && !names.contains(bad_config.hex()));

    // Put the right bytes back (a re-push of the same blob); the same store now builds.
    registry
        .replace_blob_data(&victim.digest, &victim.data)
        .unwrap();
    let run = lkb.build(&["tamper.yml"]).unwrap().ok().unwrap();
    let fetched = run.executed("fetch");
    assert!(
        fetched
            .iter()
            .any(|l| l.contains(&victim.digest.hex()[..12])),
        "the repaired layer was not fetched: {fetched:?}"
    );
    let out = ws.path().join("lkb-out/tamper-initrd.img");
    let root = ws.path().join("x");
    extract_initrd(&out, &root);
    assert_eq!(
        fs_err::read(root.join("containers/onboot/000-t/lower/data/a.bin")).unwrap(),
        noise(300_000, 1)
    );
    let names = store_file_names(&lkb.store.path().join("store-v1"));
    assert!(names.contains(victim.digest.hex()));
    assert!(!names.contains(actual.hex()));
}

// ---------------------------------------------------------------------------------------------
// 5. authentication

#[test]
fn htpasswd_registry_needs_credentials_from_the_docker_config() {
    let registry = Registry::start_with_htpasswd("lkb", "s3cret").unwrap();
    let image = two_layer_image("private");
    registry.push_image("lkb/private", "1", &image).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "private.yml",
        &format!(
            "onboot:\n  - name: p\n    image: {}/lkb/private:1\n",
            registry.addr()
        ),
    );

    // Anonymous: a user error that says what to do.
    let lkb = Lkb::new(ws.path()).unwrap();
    let run = lkb.build(&["private.yml"]).unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.to_lowercase().contains("authentication"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(registry.addr()), "{}", run.stderr);
    assert!(!ws.path().join("lkb-out").exists());

    // Wrong password: refused, still a user error.
    let wrong = tempfile::tempdir().unwrap();
    write(
        wrong.path(),
        "config.json",
        &docker_config_json(registry.addr(), "lkb", "wrong"),
    );
    let run = Lkb::new(ws.path())
        .unwrap()
        .env("DOCKER_CONFIG", wrong.path().display().to_string())
        .build(&["private.yml"])
        .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(registry.addr()), "{}", run.stderr);
    assert!(!ws.path().join("lkb-out").exists());

    // $HOME/.docker/config.json (HOME is private to the Lkb).
    write(
        &lkb.store.path().join("home/.docker"),
        "config.json",
        &docker_config_json(registry.addr(), "lkb", "s3cret"),
    );
    let run = lkb.build(&["private.yml"]).unwrap().ok().unwrap();
    assert_eq!(run.executed("fetch").len(), 2);
    let root = ws.path().join("home-x");
    extract_initrd(&ws.path().join("lkb-out/private-initrd.img"), &root);
    assert_eq!(
        fs_err::read_to_string(root.join("containers/onboot/000-p/lower/data/tag")).unwrap(),
        "private\n"
    );

    // $DOCKER_CONFIG, with a fresh store.
    let good = tempfile::tempdir().unwrap();
    write(
        good.path(),
        "config.json",
        &docker_config_json(registry.addr(), "lkb", "s3cret"),
    );
    let run = Lkb::new(ws.path())
        .unwrap()
        .env("DOCKER_CONFIG", good.path().display().to_string())
        .build(&["private.yml", "--dir", "via-env", "--pull"])
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(run.executed("fetch").len(), 2);
    assert_eq!(
        fs_err::read(ws.path().join("via-env/private-initrd.img")).unwrap(),
        fs_err::read(ws.path().join("lkb-out/private-initrd.img")).unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. unreachable registry

#[test]
fn unreachable_registry_fails_with_one_clear_message() {
    let port = free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "gone.yml",
        &format!("onboot:\n  - name: g\n    image: {addr}/lkb/gone:1\n"),
    );
    let lkb = Lkb::new(ws.path()).unwrap();
    let started = std::time::Instant::now();
    let run = lkb.run(&["build", "gone.yml"]).unwrap();
    let took = started.elapsed();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].contains(&addr), "{}", run.stderr);
    // One error with its causes, not a retry log or a cascade of failures.
    assert!(
        run.stderr.lines().count() <= 6,
        "too much output:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("bug in lkb"),
        "{}",
        run.stderr
    );
    assert!(
        took < std::time::Duration::from_secs(60),
        "giving up took {took:?}"
    );
    assert!(!ws.path().join("lkb-out").exists());
}

/// The error's causes are printed once: a `caused by:` line that only repeats text already
/// on the `error:` line is noise.
#[test]
fn unreachable_registry_message_does_not_repeat_its_causes() {
    let port = free_port().unwrap();
    let ws = workspace(&[], &[]).unwrap();
    write(
        ws.path(),
        "gone.yml",
        &format!("onboot:\n  - name: g\n    image: 127.0.0.1:{port}/lkb/gone:1\n"),
    );
    let run = Lkb::new(ws.path())
        .unwrap()
        .run(&["build", "gone.yml"])
        .unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    for cause in run
        .stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("caused by: "))
    {
        assert!(
            !error.contains(cause),
            "`{cause}` is already in the error line:\n{}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 7. no-op rebuild, lock file, --locked, --pull, --offline

fn stat(path: &Path) -> (u64, i64, i64) {
    let m = fs_err::metadata(path).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[test]
fn rebuild_is_a_noop_lock_pins_locked_refuses_drift_offline_uses_the_store() {
    let registry = Registry::start().unwrap();
    let addr = registry.addr().to_owned();
    registry
        .push_image("lkb/kernel", "1", &synthetic::fake_kernel_image().unwrap())
        .unwrap();
    let v1 = two_layer_image("v1");
    registry.push_image("lkb/app", "1", &v1).unwrap();
    let ws = workspace(&[], &[]).unwrap();
    let app = format!("{addr}/lkb/app:1");
    write(
        ws.path(),
        "sys.yml",
        &fake_kernel_yml(&addr, "console=ttyS0", &app),
    );
    let lkb = Lkb::new(ws.path()).unwrap();

    let first = lkb.build(&["sys.yml"]).unwrap().ok().unwrap();
    assert!(summary_u64(&first, "/actions/executed") > 0);
    let out = ws.path().join("lkb-out");
    let files: Vec<PathBuf> = ["sys-kernel", "sys-initrd.img", "sys-cmdline"]
        .iter()
        .map(|n| out.join(n))
        .collect();
    assert_eq!(
        fs_err::read_to_string(&files[0]).unwrap(),
        "fake kernel, not bootable\n"
    );
    assert_eq!(fs_err::read_to_string(&files[2]).unwrap(), "console=ttyS0");
    let lock_path = ws.path().join("lkb.lock");
    let lock = fs_err::read_to_string(&lock_path).unwrap();
    assert!(lock.contains(&app), "{lock}");
    assert!(lock.contains(&v1.digest().to_string()), "{lock}");
    let before: Vec<_> = files.iter().map(|f| stat(f)).collect();

    // 2nd build: nothing runs, nothing is fetched, nothing is rewritten.
    let second = lkb.build(&["sys.yml"]).unwrap().ok().unwrap();
    assert_eq!(
        summary_u64(&second, "/actions/executed"),
        0,
        "{}",
        second.stderr
    );
    assert_eq!(
        summary_u64(&second, "/actions/cached"),
        summary_u64(&second, "/actions/total")
    );
    assert_eq!(summary_u64(&second, "/bytes_fetched"), 0);
    assert_eq!(files.iter().map(|f| stat(f)).collect::<Vec<_>>(), before);

    // The tag moves in the registry.
    let v2 = two_layer_image("v2");
    registry.push_image("lkb/app", "1", &v2).unwrap();
    // Pinned: a plain build keeps using v1.
    let pinned = lkb.build(&["sys.yml"]).unwrap().ok().unwrap();
    assert_eq!(
        summary_u64(&pinned, "/actions/executed"),
        0,
        "{}",
        pinned.stderr
    );
    // --locked --pull: the pin would change → refused, nothing touched.
    let drift = lkb.build(&["sys.yml", "--locked", "--pull"]).unwrap();
    assert_eq!(drift.code, 2, "{}", drift.stderr);
    assert!(drift.stderr.contains(&app), "{}", drift.stderr);
    assert!(
        drift.stderr.contains(&v2.digest().to_string())
            || drift.stderr.contains(&v2.digest().hex()[..12]),
        "the new digest is not named:\n{}",
        drift.stderr
    );
    assert_eq!(files.iter().map(|f| stat(f)).collect::<Vec<_>>(), before);
    assert_eq!(fs_err::read_to_string(&lock_path).unwrap(), lock);

    // Registry gone: --offline with the warm store builds, even a changed config.
    drop(registry);
    let offline = lkb.build(&["sys.yml", "--offline"]).unwrap().ok().unwrap();
    assert_eq!(
        summary_u64(&offline, "/actions/executed"),
        0,
        "{}",
        offline.stderr
    );
    // Pinned and stored: even without --offline the no-op build needs no registry.
    let pinned = lkb.build(&["sys.yml"]).unwrap().ok().unwrap();
    assert_eq!(
        summary_u64(&pinned, "/actions/executed"),
        0,
        "{}",
        pinned.stderr
    );
    assert_eq!(files.iter().map(|f| stat(f)).collect::<Vec<_>>(), before);
    write(
        ws.path(),
        "sys.yml",
        &fake_kernel_yml(&addr, "console=ttyS0 offline=1", &app),
    );
    let changed = lkb
        .build(&["sys.yml", "--offline", "--dir", "offline-out"])
        .unwrap()
        .ok()
        .unwrap();
    assert!(summary_u64(&changed, "/actions/executed") > 0);
    assert_eq!(summary_u64(&changed, "/bytes_fetched"), 0);
    assert_eq!(
        fs_err::read_to_string(ws.path().join("offline-out/sys-cmdline")).unwrap(),
        "console=ttyS0 offline=1"
    );
    let root = ws.path().join("offline-x");
    extract_initrd(&ws.path().join("offline-out/sys-initrd.img"), &root);
    assert_eq!(
        fs_err::read_to_string(root.join("containers/onboot/000-app/lower/data/tag")).unwrap(),
        "v1\n"
    );
    assert!(root.join("lib/modules/0.0.0-fake/modules.dep").is_file());

    // --offline with an empty store: a clear failure that names the image.
    let cold = Lkb::new(ws.path()).unwrap();
    let run = cold
        .build(&["sys.yml", "--offline", "--dir", "cold-out"])
        .unwrap();
    assert!(matches!(run.code, 2 | 3), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{addr}/lkb/")),
        "the image is not named:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("offline"), "{}", run.stderr);
    assert!(!ws.path().join("cold-out").exists());
}
