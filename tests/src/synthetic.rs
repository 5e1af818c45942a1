//! Canned synthetic images (no Debian packages needed), each with a documented purpose, and
//! for the layered one the expected flattened tree as an oracle.
//!
//! | ref | what it exercises |
//! |---|---|
//! | `localhost/lkb-fixtures/hello:1` | one manifest (no index), one gzip layer |
//! | `localhost/lkb-fixtures/layered:1` | gzip + zstd + uncompressed layers, PAX and GNU long names, whiteouts, opaque dir, hard links, abs/rel symlinks, owners, setuid, full config |
//! | `localhost/lkb-fixtures/multiarch:1` | OCI index: linux/amd64, linux/arm64/v8, attestation |
//! | `localhost/lkb-fixtures/multiarch-docker:1` | the same as a Docker manifest list |
//! | `localhost/lkb-fixtures/fake-kernel:1` | `/kernel`, `/kernel.tar` (`./lib/modules/...`), `/intel-ucode.cpio`, not bootable |
//! | `localhost/lkb-fixtures/hostile-<case>:1` | one layer per [`hostile_layers`] case |

use std::collections::BTreeMap;
use std::path::Path;

use crate::oci::{
    Compression, Entry, Flavor, Image, ImageBuilder, ImageIndex, IndexBuilder, Layer,
    MOBY_CONFIG_LABEL, OciLayout, Platform, TarFormat,
};

/// Repository prefix of the synthetic refs.
pub const REPO_PREFIX: &str = "localhost/lkb-fixtures";

/// The `org.mobyproject.config` label of [`layered_image`].
pub const LAYERED_LABEL: &str =
    r#"{"binds":["/etc/resolv.conf:/etc/resolv.conf"],"capabilities":["CAP_NET_ADMIN"]}"#;

/// `/hello` and an entrypoint.
pub fn hello_image() -> anyhow::Result<Image> {
    ImageBuilder::new()
        .layer(Layer::new().file("hello", "hello from lkb-tests\n"))
        .entrypoint(&["/hello"])
        .build()
}

fn long_dir() -> String {
    format!("deep/{}", "d".repeat(120))
}

fn long_link_name() -> String {
    format!("links/{}", "l".repeat(110))
}

fn long_link_target() -> String {
    format!("/{}/file.txt", long_dir())
}

const PASSWD_1: &str = "root:x:0:0:root:/root:/bin/sh\n";
const PASSWD_2: &str = "root:x:0:0:root:/root:/bin/sh\nlkb:x:1000:1000::/home/user:/bin/sh\n";

/// Layer 1 (gzip, PAX names): the base tree.
pub fn layered_base() -> Layer {
    let deep = long_dir();
    Layer::new()
        .dir("etc")
        .file("etc/passwd", PASSWD_1)
        .file("etc/remove-me", "gone\n")
        .dir("etc/opaque")
        .file("etc/opaque/lower", "lower\n")
        .dir("home")
        .entry(Entry::dir("home/user").mode(0o750).owner(1000, 1000))
        .entry(
            Entry::file("home/user/.profile", "export LKB=1\n")
                .mode(0o600)
                .owner(1000, 1000),
        )
        .dir("usr")
        .dir("usr/bin")
        .executable("usr/bin/tool", "#!/bin/sh\necho tool\n")
        .hardlink("usr/bin/tool-hardlink", "usr/bin/tool")
        .symlink("usr/bin/abs-link", "/usr/bin/tool")
        .symlink("usr/bin/rel-link", "tool")
        .entry(Entry::file("usr/bin/setuid", "suid\n").mode(0o4755))
        .dir("var")
        .dir("var/cache")
        .file("var/cache/stale", "stale\n")
        .dir("deep")
        .dir(&deep)
        .file(&format!("{deep}/file.txt"), "long path\n")
}

/// Layer 2 (zstd): deletions and replacements.
pub fn layered_changes() -> Layer {
    Layer::new()
        .compression(Compression::Zstd)
        .dir("etc")
        .whiteout("etc/remove-me")
        .file("etc/passwd", PASSWD_2)
        .dir("etc/opaque")
        .opaque("etc/opaque")
        .file("etc/opaque/upper", "upper\n")
        .dir("var")
        .whiteout("var/cache")
}

/// Layer 3 (uncompressed, GNU long names): a long symlink and a late file.
pub fn layered_additions() -> Layer {
    Layer::new()
        .compression(Compression::None)
        .format(TarFormat::Gnu)
        .dir("links")
        .symlink(&long_link_name(), &long_link_target())
        .file("etc/added-late", "layer 3\n")
}

/// Three layers plus a full config (Entrypoint, Cmd, Env, WorkingDir, User, labels).
pub fn layered_image() -> anyhow::Result<Image> {
    ImageBuilder::new()
        .layer(layered_base())
        .layer(layered_changes())
        .layer(layered_additions())
        .entrypoint(&["/usr/bin/tool"])
        .cmd(&["--flag"])
        .env("PATH=/usr/bin:/bin")
        .env("LKB=1")
        .working_dir("/home/user")
        .user("1000:1000")
        .label(MOBY_CONFIG_LABEL, LAYERED_LABEL)
        .label("org.opencontainers.image.title", "layered")
        .build()
}

/// A node of a flattened tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// Directory with mode.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// Regular file.
    File {
        /// Content.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner uid.
        uid: u64,
        /// Owner gid.
        gid: u64,
    },
    /// Symlink target.
    Symlink(String),
    /// Hard link to another path of the tree.
    HardLink(String),
}

fn file(content: &str, mode: u32) -> Node {
    Node::File {
        content: content.as_bytes().to_vec(),
        mode,
        uid: 0,
        gid: 0,
    }
}

/// What [`layered_image`] flattens to, keyed by clean path (no `./`, no trailing `/`).
/// With `honour_opaque` false (LinuxKit's behaviour, see reference §2.2), lower entries of an
/// opaque directory stay visible.
pub fn layered_expected(honour_opaque: bool) -> BTreeMap<String, Node> {
    let deep = long_dir();
    let dir = Node::Dir { mode: 0o755 };
    let mut tree = BTreeMap::new();
    let mut put = |path: &str, node: Node| {
        tree.insert(path.to_owned(), node);
    };
    put("etc", dir.clone());
    put("etc/passwd", file(PASSWD_2, 0o644));
    put("etc/opaque", dir.clone());
    if !honour_opaque {
        put("etc/opaque/lower", file("lower\n", 0o644));
    }
    put("etc/opaque/upper", file("upper\n", 0o644));
    put("etc/added-late", file("layer 3\n", 0o644));
    put("home", dir.clone());
    put("home/user", Node::Dir { mode: 0o750 });
    put(
        "home/user/.profile",
        Node::File {
            content: b"export LKB=1\n".to_vec(),
            mode: 0o600,
            uid: 1000,
            gid: 1000,
        },
    );
    put("usr", dir.clone());
    put("usr/bin", dir.clone());
    put("usr/bin/tool", file("#!/bin/sh\necho tool\n", 0o755));
    put(
        "usr/bin/tool-hardlink",
        Node::HardLink("usr/bin/tool".into()),
    );
    put("usr/bin/abs-link", Node::Symlink("/usr/bin/tool".into()));
    put("usr/bin/rel-link", Node::Symlink("tool".into()));
    put("usr/bin/setuid", file("suid\n", 0o4755));
    put("var", dir.clone());
    put("deep", dir.clone());
    put(&deep, dir.clone());
    put(&format!("{deep}/file.txt"), file("long path\n", 0o644));
    put("links", dir);
    put(&long_link_name(), Node::Symlink(long_link_target()));
    tree
}

/// amd64 + arm64 images (each with `/etc/arch`) and an attestation for amd64.
pub fn multiarch_index(flavor: Flavor) -> anyhow::Result<ImageIndex> {
    let image = |platform: Platform| {
        ImageBuilder::new()
            .flavor(flavor)
            .platform(platform.clone())
            .layer(
                Layer::new()
                    .dir("etc")
                    .file("etc/arch", format!("{}\n", platform.architecture)),
            )
            .build()
    };
    let amd64 = image(Platform::linux_amd64())?;
    let mut index = IndexBuilder::new()
        .flavor(flavor)
        .image(amd64.clone())
        .image(image(Platform::linux_arm64())?);
    if flavor == Flavor::Oci {
        index = index.attestation_for(&amd64)?;
    }
    index.build()
}

/// A LinuxKit-shaped kernel image that is not bootable: `/kernel` (text), `/kernel.tar` with
/// `./`-prefixed entries, `/intel-ucode.cpio` (a newc trailer only), `/System.map`.
pub fn fake_kernel_image() -> anyhow::Result<Image> {
    let kernel_tar = Layer::new()
        .entries([
            Entry::dir("./").mtime(1_700_000_000),
            Entry::dir("./lib/").mtime(1_700_000_000),
            Entry::dir("./lib/modules/").mtime(1_700_000_000),
            Entry::dir("./lib/modules/0.0.0-fake/").mtime(1_700_000_000),
            Entry::file("./lib/modules/0.0.0-fake/modules.dep", "").mtime(1_700_000_000),
        ])
        .tar_bytes()?;
    let mut trailer = b"070701".to_vec();
    trailer.extend_from_slice(&[b'0'; 8 * 11]);
    trailer.extend_from_slice(b"0000000B00000000TRAILER!!!\0");
    while !trailer.len().is_multiple_of(4) {
        trailer.push(0);
    }
    ImageBuilder::new()
        .layer(
            Layer::new()
                .file("kernel", "fake kernel, not bootable\n")
                .file("kernel.tar", kernel_tar)
                .file("intel-ucode.cpio", trailer)
                .file("System.map", "0000000000000000 T fake\n"),
        )
        .build()
}

/// Layers an unpacker must refuse or neutralise (DESIGN §9), by case name.
pub fn hostile_layers() -> Vec<(&'static str, Layer)> {
    vec![
        ("dotdot", Layer::new().file("../escape", "x")),
        (
            "dotdot-inner",
            Layer::new().dir("a").file("a/../../escape", "x"),
        ),
        ("absolute", Layer::new().file("/abs/file", "x")),
        (
            "symlink-then-write",
            Layer::new()
                .symlink("link-out", "../../../../etc")
                .file("link-out/passwd", "owned\n"),
        ),
        (
            "absolute-symlink-then-write",
            Layer::new()
                .symlink("etc", "/etc")
                .file("etc/passwd", "owned\n"),
        ),
        (
            "hardlink-outside",
            Layer::new().hardlink("hard-out", "/etc/shadow"),
        ),
        (
            "hardlink-dotdot",
            Layer::new().hardlink("hard-up", "../outside"),
        ),
        (
            "hardlink-missing",
            Layer::new().hardlink("hard-missing", "no/such/file"),
        ),
        (
            "odd-but-fine",
            Layer::new()
                .dir("./dot/")
                .file("dot//double-slash", "ok\n")
                .file("./dot/./here", "ok\n"),
        ),
        ("whiteout-escape", Layer::new().file("../.wh.etc", "")),
    ]
}

/// Writes every synthetic fixture into an OCI layout at `dir`; returns the refs.
pub fn write_layout(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut layout = OciLayout::create(dir)?;
    let mut refs = Vec::new();
    let mut add = |name: &str, artifact: crate::oci::ArtifactRef<'_>| -> anyhow::Result<()> {
        let reference = format!("{REPO_PREFIX}/{name}:1");
        layout.add(&reference, artifact)?;
        refs.push(reference);
        Ok(())
    };
    add("hello", (&hello_image()?).into())?;
    add("layered", (&layered_image()?).into())?;
    add("multiarch", (&multiarch_index(Flavor::Oci)?).into())?;
    add(
        "multiarch-docker",
        (&multiarch_index(Flavor::Docker)?).into(),
    )?;
    add("fake-kernel", (&fake_kernel_image()?).into())?;
    for (case, layer) in hostile_layers() {
        let image = ImageBuilder::new().layer(layer).build()?;
        add(&format!("hostile-{case}"), (&image).into())?;
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_holds_every_fixture_and_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let refs = write_layout(a.path()).unwrap();
        write_layout(b.path()).unwrap();
        assert_eq!(refs.len(), 5 + hostile_layers().len());
        let layout = OciLayout::open(a.path()).unwrap();
        layout.verify().unwrap();
        assert_eq!(
            fs_err::read(a.path().join("index.json")).unwrap(),
            fs_err::read(b.path().join("index.json")).unwrap()
        );
    }

    #[test]
    fn layered_image_has_the_long_names_and_the_expected_tree_is_consistent() {
        let image = layered_image().unwrap();
        assert_eq!(image.layers.len(), 3);
        assert!(long_dir().len() > 100 && long_link_target().len() > 100);
        let expected = layered_expected(true);
        assert!(!expected.contains_key("etc/remove-me"));
        assert!(!expected.contains_key("var/cache/stale"));
        assert!(layered_expected(false).contains_key("etc/opaque/lower"));
    }
}
