//! The bootable example images, mirroring LinuxKit's `examples/minimal.yml` and `sshd.yml`
//! stack, made from Debian packages (see [`crate::debs`]):
//!
//! | ref | contents |
//! |---|---|
//! | `localhost/lkb-examples/kernel:1` (Debian version in its labels) | `/kernel` (bzImage), `/kernel.tar` (`./lib/modules/<release>/modules.*` and three drivers), `/System.map` |
//! | `localhost/lkb-examples/init:1` | busybox-static, applet symlinks, `/init` ([`INIT_SCRIPT`]) |
//! | `localhost/lkb-examples/{getty,dhcpcd,sshd,rngd}:1` | busybox base layer + a service layer with `/etc/lkb-example` |
//! | `localhost/lkb-examples/boot:1` | the boot loaders of the boot-media formats ([`crate::boot_image`]) |
//!
//! Every ref is a multi-platform index: the real linux/amd64 image plus a small linux/arm64
//! stub (so platform selection is exercised). `sshd` also carries a BuildKit attestation
//! manifest; `getty` uses Docker media types; `sshd`'s service layer is zstd.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::debs::{DebCache, DebPackage};
use crate::oci::{
    Compression, Entry, Flavor, ImageBuilder, ImageIndex, IndexBuilder, Layer, MOBY_CONFIG_LABEL,
    OciLayout, Platform,
};

/// Repository prefix of every example ref.
pub const REPO_PREFIX: &str = "localhost/lkb-examples";
/// Printed by [`INIT_SCRIPT`] once the console works.
pub const BOOT_MARKER: &str = "LKB-EXAMPLE-BOOTED";
/// Printed by [`INIT_SCRIPT`] just before it powers off.
pub const DONE_MARKER: &str = "LKB-EXAMPLE-DONE";
/// The busybox package.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Name of the stamp file that makes [`write_layout`] idempotent.
pub const STAMP_FILE: &str = ".lkb-fixtures-stamp";

/// `/init` of the init image. The kernel runs it from the initramfs as PID 1.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# lkb example init: proves the kernel ran this initrd and shows what lkb put into it.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs may have no /dev/console node; reopen the console from devtmpfs.
exec 0</dev/console 1>/dev/console 2>&1
echo "LKB-EXAMPLE-BOOTED"
echo "LKB-KERNEL $(uname -r)"
echo "LKB-CMDLINE $(cat /proc/cmdline)"
ls /containers/onboot /containers/services
for kind in onboot services; do
  for bundle in /containers/$kind/*; do
    [ -d "$bundle" ] || continue
    id=""
    [ -f "$bundle/rootfs/etc/lkb-example" ] && id="$(cat "$bundle/rootfs/etc/lkb-example")"
    echo "LKB-BUNDLE $kind ${bundle##*/} $id"
  done
done
echo "LKB-EXAMPLE-DONE"
poweroff -f
"#;

/// Applets linked as `/bin/<name> -> busybox`.
pub const BIN_APPLETS: &[&str] = &[
    "cat", "dmesg", "echo", "false", "find", "grep", "hostname", "ip", "kill", "ls", "mkdir",
    "mount", "ps", "sed", "sh", "sleep", "true", "umount", "uname",
];
/// Applets linked as `/sbin/<name> -> /bin/busybox` (absolute links).
pub const SBIN_APPLETS: &[&str] = &["halt", "poweroff", "reboot"];

/// One example image.
#[derive(Clone, Debug)]
pub struct ExampleImage {
    /// Short name: `kernel`, `init`, `getty`, ...
    pub name: &'static str,
    /// Full ref, e.g. `localhost/lkb-examples/init:1`.
    pub reference: String,
    /// The index (amd64 + arm64 stub, sometimes an attestation).
    pub index: ImageIndex,
}

/// The Debian packages the examples are made from.
#[derive(Clone, Debug)]
pub struct ExampleDebs {
    /// `linux-image-<abi>-amd64`.
    pub kernel: DebPackage,
    /// `busybox-static`.
    pub busybox: DebPackage,
}

impl ExampleDebs {
    /// Fetches (or reuses from the cache) the kernel and busybox packages.
    pub fn fetch(cache: &DebCache) -> anyhow::Result<Self> {
        let kernel_name = cache.kernel_package_name()?;
        Ok(Self {
            kernel: cache.fetch(&kernel_name)?,
            busybox: cache.fetch(BUSYBOX_PACKAGE)?,
        })
    }
}

/// The packages unpacked into a temporary directory (removed on drop).
#[derive(Debug)]
pub struct Sources {
    debs: ExampleDebs,
    dir: tempfile::TempDir,
    kernel_release: String,
}

impl Sources {
    /// Unpacks both packages with `dpkg -x`.
    pub fn unpack(cache: &DebCache, debs: &ExampleDebs) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("lkb-debs-").tempdir()?;
        cache.unpack(&debs.kernel, dir.path())?;
        cache.unpack(&debs.busybox, dir.path())?;
        let mut releases: Vec<String> = fs_err::read_dir(dir.path().join("boot"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("vmlinuz-").map(str::to_owned)
            })
            .collect();
        releases.sort();
        let Some(kernel_release) = releases.pop() else {
            bail!("{} has no boot/vmlinuz-*", debs.kernel.path.display());
        };
        Ok(Self {
            debs: debs.clone(),
            dir,
            kernel_release,
        })
    }

    /// [`ExampleDebs::fetch`] then [`Sources::unpack`].
    pub fn prepare(cache: &DebCache) -> anyhow::Result<Self> {
        Self::unpack(cache, &ExampleDebs::fetch(cache)?)
    }

    /// The packages.
    pub fn debs(&self) -> &ExampleDebs {
        &self.debs
    }

    /// e.g. `6.1.0-56-amd64`.
    pub fn kernel_release(&self) -> &str {
        &self.kernel_release
    }

    /// The kernel ref's tag: the package version with characters a tag may not hold
    /// replaced by `_` (e.g. `6.1.192-2`).
    pub fn kernel_tag(&self) -> String {
        tag_from_version(&self.debs.kernel.version)
    }

    /// The bzImage.
    pub fn kernel(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("boot/vmlinuz-{}", self.kernel_release))
    }

    /// `System.map` (Debian ships a one-line stub).
    pub fn system_map(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("boot/System.map-{}", self.kernel_release))
    }

    /// `lib/modules/<release>`.
    pub fn modules_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("lib/modules/{}", self.kernel_release))
    }

    /// The static busybox binary.
    pub fn busybox(&self) -> PathBuf {
        self.dir.path().join("bin/busybox")
    }
}

/// A valid tag from a Debian version: `[A-Za-z0-9_.-]`, at most 128 characters.
pub fn tag_from_version(version: &str) -> String {
    let mut tag: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(128)
        .collect();
    if tag.starts_with(['.', '-']) {
        tag.replace_range(..1, "_");
    }
    tag
}

/// Modules kept in `kernel.tar`, relative to `lib/modules/<release>/`.
pub const KERNEL_TAR_MODULES: &[&str] = &[
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/net/core/failover.ko",
];

/// `kernel.tar` as LinuxKit kernels ship it: entries named `./`, `./lib/`,
/// `./lib/modules/<release>/...`, with the packages' mtimes. Holds the `modules.*` metadata
/// and [`KERNEL_TAR_MODULES`].
pub fn kernel_tar(sources: &Sources) -> anyhow::Result<Vec<u8>> {
    let modules = sources.modules_dir();
    let release = sources.kernel_release();
    let mtime_of = |path: &Path| -> anyhow::Result<u64> {
        let modified = fs_err::metadata(path)?.modified()?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()))
    };
    let base_mtime = mtime_of(&modules)?;
    let mut dirs = vec![
        "./".to_owned(),
        "./lib/".to_owned(),
        "./lib/modules/".to_owned(),
        format!("./lib/modules/{release}/"),
    ];
    let mut files = Vec::new();
    let mut metadata: Vec<String> = fs_err::read_dir(&modules)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("modules."))
        .collect();
    metadata.sort();
    files.extend(metadata);
    for module in KERNEL_TAR_MODULES {
        let parts: Vec<&str> = module.split('/').collect();
        for depth in 1..parts.len() {
            let dir = format!("./lib/modules/{release}/{}/", parts[..depth].join("/"));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        files.push((*module).to_owned());
    }
    let mut entries: Vec<Entry> = dirs
        .into_iter()
        .map(|d| Entry::dir(d).mtime(base_mtime))
        .collect();
    for file in files {
        let host = modules.join(&file);
        entries.push(
            Entry::file(
                format!("./lib/modules/{release}/{file}"),
                fs_err::read(&host)?,
            )
            .mtime(mtime_of(&host)?),
        );
    }
    // Name order puts every directory before its contents.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Layer::new().entries(entries).tar_bytes()
}

fn arm64_stub(name: &str, extra: Layer) -> anyhow::Result<crate::oci::Image> {
    ImageBuilder::new()
        .platform(Platform::linux_arm64())
        .layer(extra.dir("etc").file(
            "etc/lkb-example",
            format!("lkb-example {name} arm64-stub\n"),
        ))
        .build()
}

/// The kernel image.
pub fn kernel_image(sources: &Sources) -> anyhow::Result<ImageIndex> {
    let amd64 = ImageBuilder::new()
        .layer(
            Layer::new()
                .file("kernel", fs_err::read(sources.kernel())?)
                .file("kernel.tar", kernel_tar(sources)?)
                .file("System.map", fs_err::read(sources.system_map())?),
        )
        .label("org.lkb-examples.kernel-release", sources.kernel_release())
        .build()?;
    let empty_tar = Layer::new().tar_bytes()?;
    let arm64 = arm64_stub(
        "kernel",
        Layer::new()
            .file("kernel", "arm64 stub, not bootable\n")
            .file("kernel.tar", empty_tar),
    )?;
    IndexBuilder::new().image(amd64).image(arm64).build()
}

/// Writes the init image's tree into `dir`: `/bin/busybox`, applet links, `/init`, and the
/// mount points init needs. Permissions are set explicitly (independent of the umask).
pub fn write_init_rootfs(busybox: &Path, dir: &Path) -> anyhow::Result<()> {
    for (sub, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
    ] {
        let path = dir.join(sub);
        fs_err::create_dir_all(&path)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    let write = |rel: &str, content: &[u8], mode: u32| -> anyhow::Result<()> {
        let path = dir.join(rel);
        fs_err::write(&path, content)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    write("bin/busybox", &fs_err::read(busybox)?, 0o755)?;
    write("init", INIT_SCRIPT.as_bytes(), 0o755)?;
    write("etc/lkb-example", b"lkb-example init\n", 0o644)?;
    for applet in BIN_APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))
            .with_context(|| format!("linking bin/{applet}"))?;
    }
    for applet in SBIN_APPLETS {
        std::os::unix::fs::symlink("/bin/busybox", dir.join("sbin").join(applet))
            .with_context(|| format!("linking sbin/{applet}"))?;
    }
    Ok(())
}

/// [`write_init_rootfs`] plus a fake `/containers` tree (onboot `000-dhcpcd`, service
/// `getty`), as lkb would lay bundles out: a hand-made initrd for boot smoke tests.
pub fn write_smoke_rootfs(busybox: &Path, dir: &Path) -> anyhow::Result<()> {
    write_init_rootfs(busybox, dir)?;
    for (kind, bundle, id) in [
        ("onboot", "000-dhcpcd", "dhcpcd"),
        ("services", "getty", "getty"),
    ] {
        let root = dir.join("containers").join(kind).join(bundle);
        fs_err::create_dir_all(root.join("rootfs/etc"))?;
        fs_err::write(root.join("config.json"), b"{}\n")?;
        fs_err::write(
            root.join("rootfs/etc/lkb-example"),
            format!("lkb-example {id}\n"),
        )?;
    }
    Ok(())
}

/// The init image.
pub fn init_image(sources: &Sources) -> anyhow::Result<ImageIndex> {
    let tree = tempfile::Builder::new().prefix("lkb-init-").tempdir()?;
    write_init_rootfs(&sources.busybox(), tree.path())?;
    let amd64 = ImageBuilder::new()
        .layer(Layer::from_dir(tree.path())?)
        .build()?;
    let arm64 = arm64_stub("init", Layer::new().executable("init", "#!/bin/sh\n"))?;
    IndexBuilder::new().image(amd64).image(arm64).build()
}

struct Service {
    name: &'static str,
    dirs: &'static [&'static str],
    files: &'static [(&'static str, &'static str, u32)],
    entrypoint: Option<&'static [&'static str]>,
    cmd: Option<&'static [&'static str]>,
    label: Option<&'static str>,
    compression: Compression,
    flavor: Flavor,
    attestation: bool,
}

const SERVICES: &[Service] = &[
    Service {
        name: "getty",
        dirs: &[],
        files: &[(
            "usr/bin/rungetty.sh",
            "#!/bin/sh\necho \"getty (lkb example) INSECURE=$INSECURE\"\nexec sleep 3600\n",
            0o755,
        )],
        entrypoint: None,
        cmd: Some(&["/usr/bin/rungetty.sh"]),
        label: None,
        compression: Compression::Gzip,
        flavor: Flavor::Docker,
        attestation: false,
    },
    Service {
        name: "dhcpcd",
        dirs: &[],
        files: &[
            (
                "dhcpcd.conf",
                "# lkb example dhcpcd.conf\nhostname\nipv4only\n",
                0o644,
            ),
            (
                "sbin/dhcpcd",
                "#!/bin/sh\necho \"dhcpcd (lkb example) $*\"\n",
                0o755,
            ),
        ],
        entrypoint: None,
        cmd: Some(&["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf"]),
        label: Some(
            r#"{"net":"host","binds":["/var/run:/run","/etc/resolv.conf:/etc/resolv.conf"],"capabilities":["CAP_NET_ADMIN","CAP_NET_BIND_SERVICE","CAP_NET_RAW","CAP_SYS_ADMIN"],"runtime":{"mkdir":["/var/run"]}}"#,
        ),
        compression: Compression::Gzip,
        flavor: Flavor::Oci,
        attestation: false,
    },
    Service {
        name: "sshd",
        dirs: &["etc/ssh"],
        files: &[
            (
                "etc/ssh/sshd_config",
                "# lkb example sshd_config\nPermitRootLogin yes\n",
                0o644,
            ),
            (
                "usr/sbin/sshd",
                "#!/bin/sh\necho \"sshd (lkb example) $*\"\nexec sleep 3600\n",
                0o755,
            ),
        ],
        entrypoint: Some(&["/usr/sbin/sshd", "-D", "-e"]),
        cmd: None,
        label: Some(
            r#"{"pid":"host","net":"host","binds":["/root/.ssh:/root/.ssh","/etc/resolv.conf:/etc/resolv.conf"],"capabilities":["all"]}"#,
        ),
        compression: Compression::Zstd,
        flavor: Flavor::Oci,
        attestation: true,
    },
    Service {
        name: "rngd",
        dirs: &[],
        files: &[(
            "sbin/rngd",
            "#!/bin/sh\necho \"rngd (lkb example) $*\"\n",
            0o755,
        )],
        entrypoint: None,
        cmd: Some(&["/sbin/rngd"]),
        label: None,
        compression: Compression::Gzip,
        flavor: Flavor::Oci,
        attestation: false,
    },
];

/// Short names of the service images.
pub fn service_names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

/// The busybox base layer every service image shares (identical bytes, so one blob).
pub fn busybox_base_layer(busybox: &[u8]) -> Layer {
    Layer::new()
        .dir("bin")
        .entry(Entry::file("bin/busybox", busybox.to_vec()).mode(0o755))
        .symlink("bin/sh", "busybox")
        .dir("etc")
        .dir("sbin")
        .dir("usr")
        .dir("usr/bin")
        .dir("usr/sbin")
}

/// A service image (`getty`, `dhcpcd`, `sshd` or `rngd`).
pub fn service_image(name: &str, busybox: &[u8]) -> anyhow::Result<ImageIndex> {
    let service = SERVICES
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no example service {name:?}"))?;
    let mut layer = Layer::new()
        .compression(service.compression)
        .file("etc/lkb-example", format!("lkb-example {name}\n"));
    for dir in service.dirs {
        layer = layer.dir(dir);
    }
    for (path, content, mode) in service.files {
        layer = layer.entry(Entry::file(*path, *content).mode(*mode));
    }
    let mut builder = ImageBuilder::new()
        .flavor(service.flavor)
        .layer(busybox_base_layer(busybox))
        .layer(layer)
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .working_dir("/");
    if let Some(entrypoint) = service.entrypoint {
        builder = builder.entrypoint(entrypoint);
    }
    if let Some(cmd) = service.cmd {
        builder = builder.cmd(cmd);
    }
    if let Some(label) = service.label {
        builder = builder.label(MOBY_CONFIG_LABEL, label);
    }
    let amd64 = builder.build()?;
    let arm64 = arm64_stub(name, Layer::new())?;
    let mut index = IndexBuilder::new()
        .flavor(service.flavor)
        .image(amd64.clone())
        .image(arm64);
    if service.attestation {
        index = index.attestation_for(&amd64)?;
    }
    index.build()
}

/// All example images, kernel first.
pub fn build_examples(sources: &Sources) -> anyhow::Result<Vec<ExampleImage>> {
    let mut out = vec![
        ExampleImage {
            name: "kernel",
            // A stable tag, so examples/*.yml need no edit when Debian updates the kernel; the
            // Debian version is in the image's labels.
            reference: format!("{REPO_PREFIX}/kernel:1"),
            index: kernel_image(sources)?,
        },
        ExampleImage {
            name: "init",
            reference: format!("{REPO_PREFIX}/init:1"),
            index: init_image(sources)?,
        },
    ];
    let busybox = fs_err::read(sources.busybox())?;
    for service in SERVICES {
        out.push(ExampleImage {
            name: service.name,
            reference: format!("{REPO_PREFIX}/{}:1", service.name),
            index: service_image(service.name, &busybox)?,
        });
    }
    Ok(out)
}

/// A hash of the code that defines the examples; part of the stamp.
pub fn fingerprint() -> String {
    let mut hasher = Sha256::new();
    for source in [
        include_str!("examples.rs"),
        include_str!("boot_image.rs"),
        include_str!("syslinux_payload.rs"),
        include_str!("oci.rs"),
        include_str!("oci/layer.rs"),
        include_str!("oci/image.rs"),
        include_str!("oci/layout.rs"),
    ] {
        hasher.update((source.len() as u64).to_le_bytes());
        hasher.update(source.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What [`write_layout`] did.
#[derive(Clone, Debug)]
pub struct LayoutOutcome {
    /// Refs in the layout.
    pub refs: Vec<String>,
    /// True when the existing layout was up to date and left alone.
    pub up_to_date: bool,
}

/// Writes every example into an OCI layout at `out`, named by full ref. Skips the work when
/// `out` holds a verified layout whose stamp matches the packages and [`fingerprint`]
/// (unless `force`). The new layout is built beside `out` and renamed into place.
pub fn write_layout(cache: &DebCache, out: &Path, force: bool) -> anyhow::Result<LayoutOutcome> {
    let debs = ExampleDebs::fetch(cache)?;
    let boot_debs = crate::boot_image::fetch(cache)?;
    let mut deb_names = vec![debs.kernel.file_name(), debs.busybox.file_name()];
    deb_names.extend(boot_debs.iter().map(DebPackage::file_name));
    let stamp = serde_json::to_vec_pretty(&json!({
        "fingerprint": fingerprint(),
        "debs": deb_names,
    }))?;
    if !force
        && fs_err::read(out.join(STAMP_FILE)).is_ok_and(|old| old == stamp)
        && let Ok(layout) = OciLayout::open(out)
        && layout.verify().is_ok()
    {
        return Ok(LayoutOutcome {
            refs: layout
                .entries()
                .iter()
                .filter_map(|e| e.ref_name.clone())
                .collect(),
            up_to_date: true,
        });
    }
    let sources = Sources::unpack(cache, &debs)?;
    let mut images = build_examples(&sources)?;
    images.push(ExampleImage {
        name: "boot",
        reference: format!("{REPO_PREFIX}/boot:1"),
        index: crate::boot_image::boot_image(cache, &boot_debs)?,
    });
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".lkb-fixtures-")
        .tempdir_in(parent)?;
    let mut layout = OciLayout::create(staging.path())?;
    for image in &images {
        layout.add(&image.reference, &image.index)?;
    }
    layout.verify()?;
    fs_err::write(staging.path().join(STAMP_FILE), &stamp)?;
    if out.exists() {
        fs_err::remove_dir_all(out)?;
    }
    let staged = staging.keep();
    fs_err::rename(&staged, out)?;
    Ok(LayoutOutcome {
        refs: images.into_iter().map(|i| i.reference).collect(),
        up_to_date: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_from_debian_versions() {
        assert_eq!(tag_from_version("6.1.192-2"), "6.1.192-2");
        assert_eq!(tag_from_version("1:1.35.0-4+deb12u1"), "1_1.35.0-4_deb12u1");
        assert_eq!(tag_from_version("-x"), "_x");
    }

    #[test]
    fn service_images_share_the_base_layer() {
        let busybox = b"not really busybox".to_vec();
        let getty = service_image("getty", &busybox).unwrap();
        let sshd = service_image("sshd", &busybox).unwrap();
        assert_eq!(getty.images[0].diff_ids[0], sshd.images[0].diff_ids[0]);
        assert_eq!(sshd.images.len(), 3, "amd64, arm64 stub, attestation");
        let config = sshd.images[0].config_json();
        let label = config["config"]["Labels"][MOBY_CONFIG_LABEL]
            .as_str()
            .unwrap();
        let label: serde_json::Value = serde_json::from_str(label).unwrap();
        assert_eq!(label["capabilities"], json!(["all"]));
        assert!(service_image("nope", &busybox).is_err());
    }
}
