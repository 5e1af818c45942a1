//! The bootable example images, mirroring LinuxKit's `examples/minimal.yml` and `sshd.yml`
//! stack, made from Debian packages (see [`crate::debs`]):
//!
//! | ref | contents |
//! |---|---|
//! | `localhost/lkb-examples/kernel:1` (Debian version in its labels) | `/kernel` (bzImage), `/kernel.tar` (`./lib/modules/<release>/modules.*` and [`KERNEL_TAR_MODULES`]), `/System.map` |
//! | `localhost/lkb-examples/init:1` | busybox-static, applet symlinks, `/init` ([`INIT_SCRIPT`]), Debian's runc and jq with their libraries |
//! | `localhost/lkb-examples/{getty,dhcpcd,sshd,rngd}:1` | busybox base layer + a service layer with `/etc/lkb-example` |
//! | `localhost/lkb-examples/boot:1` | the boot loaders of the boot-media formats ([`crate::boot_image`]) |
//!
//! The systems really run: the init starts every bundle with runc; `dhcpcd` is busybox
//! `udhcpc` ([`DHCPCD_SCRIPT`]); `sshd` is Debian's dropbear ([`SSHD_SCRIPT`]); getty and rngd
//! only stay up. Programs come with exactly the libraries they load ([`crate::elf`]).
//!
//! Every ref is a multi-platform index: the real linux/amd64 image plus a small linux/arm64
//! stub (so platform selection is exercised). `sshd` also carries a BuildKit attestation
//! manifest; `getty` uses Docker media types; `sshd`'s service layer is zstd. The service
//! images share one busybox base layer blob; dhcpcd and sshd carry `org.mobyproject.config`
//! labels.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
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

/// Kernel command line flag that makes [`INIT_SCRIPT`] power off once every service has
/// started (after [`DONE_MARKER`]), running the onshutdown containers first. Without it the
/// example systems keep running, as LinuxKit's do. The boot tests' QEMU harness adds it
/// ([`crate::qemu::full_cmdline`]).
pub const POWEROFF_FLAG: &str = "lkb.example.poweroff";
/// Printed by the onshutdown container of `examples/sshd.yml`.
pub const ONSHUTDOWN_MARKER: &str = "LKB-EXAMPLE-ONSHUTDOWN";

/// `/init` of the init image, run by the kernel from the initramfs as PID 1: LinuxKit's init
/// as a busybox shell script, starting the bundles with Debian's runc (see
/// docs/architecture.md, "The example init"). Console lines: [`BOOT_MARKER`], `LKB-KERNEL`,
/// `LKB-CMDLINE`, the `/containers` listing, one `LKB-BUNDLE <kind> <bundle> <id>` per bundle,
/// `lkb-init: ...` per container, then [`DONE_MARKER`].
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# lkb example init, PID 1. Does what LinuxKit's init does, in its order, as a busybox shell
# script (docs/architecture.md says why): mount the kernel file systems, load the modules
# kernel.tar ships, run /containers/onboot/* to completion in order with runc, start
# /containers/services/*, and on poweroff (SIGUSR2), halt (SIGUSR1) or reboot (SIGTERM) run
# /containers/onshutdown/* before stopping everything. Kernel command line flag
# lkb.example.poweroff: power off once the services have started (for tests).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
mount -t proc -o nodev,nosuid,noexec,relatime proc /proc
mount -t sysfs -o nodev,nosuid,noexec sysfs /sys
mount -t devtmpfs -o nosuid,noexec,relatime,mode=755 dev /dev
# The initramfs may have no /dev/console node; reopen the console from devtmpfs.
exec 0</dev/console 1>/dev/console 2>&1
echo "LKB-EXAMPLE-BOOTED"
echo "LKB-KERNEL $(uname -r)"
echo "LKB-CMDLINE $(cat /proc/cmdline)"
set --
for kind in onboot services onshutdown; do
  [ -d /containers/$kind ] && set -- "$@" /containers/$kind
done
[ $# -eq 0 ] || ls "$@"
for kind in onboot services onshutdown; do
  for bundle in /containers/$kind/*; do
    [ -d "$bundle" ] || continue
    id=""
    for mark in "$bundle/rootfs/etc/lkb-example" "$bundle/lower/etc/lkb-example"; do
      [ -f "$mark" ] && id="$(cat "$mark")" && break
    done
    echo "LKB-BUNDLE $kind ${bundle##*/} $id"
  done
done

mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o noexec,nosuid,gid=5,mode=0620 devpts /dev/pts
mount -t tmpfs -o noexec,nosuid,nodev,mode=1777 shm /dev/shm
mount -t mqueue -o noexec,nosuid,nodev mqueue /dev/mqueue
mount -t cgroup2 -o nodev,nosuid,noexec cgroup2 /sys/fs/cgroup
mount -t tmpfs -o nodev,nosuid,relatime,mode=755 tmpfs /run
mount -t tmpfs -o nodev,nosuid,relatime,mode=1777 tmpfs /tmp
mkdir -p /var
mount -t tmpfs -o nodev,nosuid,relatime,mode=755 tmpfs /var
mkdir -p /var/cache /var/lib /var/log /var/spool /var/tmp /run/lkb-init
ln -s /run /var/run

# Modules: kernel.tar ships only what the examples need (overlay for the bundles, virtio_net
# for qemu's NIC); load them all, dependencies from modules.dep.
modules=""
for module in $(find /lib/modules/"$(uname -r)" -name '*.ko*' 2>/dev/null); do
  module=${module##*/}
  modules="$modules ${module%%.ko*}"
done
[ -n "$modules" ] && modprobe -a $modules

[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up
# /etc/resolv.conf links into /run: give the link a file, for containers that bind it.
if [ -L /etc/resolv.conf ]; then
  resolv=$(readlink /etc/resolv.conf)
  mkdir -p "${resolv%/*}" && : >>"$resolv"
fi

# pivot_root cannot leave the initramfs (rootfs); runc then moves the bundle root instead.
no_pivot=""
[ "$(awk '$2 == "/" { type = $3 } END { print type }' /proc/mounts)" = rootfs ] && no_pivot=--no-pivot

# prepare BUNDLE: what runtime.json asks before the container starts: mkdir, cgroups, mounts
# (the tmpfs and overlay of a read-write bundle, the bind of a read-only one).
prepare() {
  runtime=$1/runtime.json
  [ -f "$runtime" ] || return 0
  jq -e 'type == "object"' "$runtime" >/dev/null || return 1
  jq -r '.mkdir[]?' "$runtime" | while read -r dir; do
    mkdir -p "$dir" || exit 1
  done || return 1
  jq -r '.cgroups[]?' "$runtime" | while read -r group; do
    mkdir -p "/sys/fs/cgroup/$group" || exit 1
  done || return 1
  sep=$(printf '\037')
  jq -r --arg sep "$sep" '.mounts[]? | [.destination, .type // "", .source // "",
      ((.options // []) | join(","))] | join($sep)' "$runtime" |
    while IFS="$sep" read -r dest type source options; do
      mkdir -p "$dest" || exit 1
      # Propagation options need their own mount(2) call.
      propagation=""
      rest=""
      for option in $(echo "$options" | tr , ' '); do
        case $option in
        shared | rshared | private | rprivate | slave | rslave | unbindable | runbindable)
          propagation="$propagation $option"
          ;;
        upperdir=* | workdir=*)
          mkdir -p "${option#*=}" || exit 1
          rest="${rest:+$rest,}$option"
          ;;
        *) rest="${rest:+$rest,}$option" ;;
        esac
      done
      set --
      [ -n "$type" ] && set -- -t "$type"
      [ -n "$rest" ] && set -- "$@" -o "$rest"
      [ -n "$source" ] && set -- "$@" "$source"
      if [ -n "$type$rest$source" ]; then
        mount "$@" "$dest" || exit 1
      fi
      for option in $propagation; do
        mount --make-"$option" "$dest" || exit 1
      done
    done || return 1
  unused=$(jq -r '[(if (.interfaces // []) != [] then "interfaces" else empty end),
      (if ((.bindNS // {}) | map(select(. != "")) | length) > 0 then "bindNS" else empty end),
      (if (.namespace // "") != "" then "namespace" else empty end)] | join(", ")' "$runtime")
  [ -z "$unused" ] || echo "lkb-init: ${1##*/}: runtime.json $unused not supported here, ignored"
}

# runc_error LOG: the last error runc logged, if any.
runc_error() {
  jq -r 'select(.level == "error") | .msg' "$1" 2>/dev/null | tail -n 1
}

# run_once KIND BUNDLE: an onboot or onshutdown container, to completion; output on the
# console.
run_once() {
  name=${2##*/}
  if ! problem=$(prepare "$2" 2>&1); then
    echo "lkb-init: $1 $name failed: $problem"
    return
  fi
  [ -z "$problem" ] || echo "$problem"
  log=/run/lkb-init/$1.$name.runc.json
  runc --log "$log" --log-format json run $no_pivot --bundle "$2" "$name" </dev/null
  status=$?
  problem=$(runc_error "$log")
  if [ -n "$problem" ]; then
    echo "lkb-init: $1 $name failed: $problem"
  else
    echo "lkb-init: $1 $name exited $status"
  fi
  umount "$2/rootfs" 2>/dev/null
  umount "$2/tmp" 2>/dev/null
}

# start_service BUNDLE: a service, left running; output in /var/log/NAME.log.
start_service() {
  name=${1##*/}
  if ! problem=$(prepare "$1" 2>&1); then
    echo "lkb-init: service $name failed: $problem"
    return
  fi
  [ -z "$problem" ] || echo "$problem"
  log=/run/lkb-init/services.$name.runc.json
  if runc --log "$log" --log-format json run -d $no_pivot --bundle "$1" "$name" \
    </dev/null >"/var/log/$name.log" 2>&1; then
    echo "lkb-init: service $name started"
  else
    problem=$(runc_error "$log")
    echo "lkb-init: service $name failed: ${problem:-$(tail -n 3 "/var/log/$name.log")}"
  fi
}

# shutdown ACTION: the onshutdown containers, then stop every process and poweroff, halt or
# reboot.
shutdown() {
  trap '' USR1 USR2 TERM
  echo "lkb-init: $1: running the onshutdown containers"
  for bundle in /containers/onshutdown/*; do
    [ -d "$bundle" ] && run_once onshutdown "$bundle"
  done
  echo "lkb-init: $1: stopping every process"
  kill -TERM -1 2>/dev/null
  sleep 1
  kill -KILL -1 2>/dev/null
  sync
  case $1 in
  reboot) reboot -f ;;
  halt) halt -f ;;
  *) poweroff -f ;;
  esac
}
# What busybox poweroff, halt and reboot (without -f) send to PID 1.
trap 'shutdown poweroff' USR2
trap 'shutdown halt' USR1
trap 'shutdown reboot' TERM

for bundle in /containers/onboot/*; do
  [ -d "$bundle" ] && run_once onboot "$bundle"
done
for bundle in /containers/services/*; do
  [ -d "$bundle" ] && start_service "$bundle"
done
echo "LKB-EXAMPLE-DONE"
case " $(cat /proc/cmdline) " in
*" lkb.example.poweroff "*) shutdown poweroff ;;
esac
# Wait for a signal; the wait also reaps the orphans PID 1 inherits.
while :; do
  sleep 3600 &
  wait $!
done
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

/// The dynamically linked programs of the example systems and the packages of the libraries
/// they load: runc and jq in the init image, dropbear in the sshd image. The libraries actually
/// copied are those [`crate::elf::library_closure`] finds; a library missing from this list
/// fails the fixture build with its name.
pub const RUNTIME_PACKAGES: &[&str] = &[
    "runc",
    "jq",
    "dropbear-bin",
    "libc6",
    "libseccomp2",
    "libjq1",
    "libonig5",
    "libcrypt1",
    "libtomcrypt1",
    "libtommath1",
    "libgmp10",
    "zlib1g",
];

/// Programs of the init image: (path in the unpacked packages, path in the image).
pub const INIT_PROGRAMS: &[(&str, &str)] = &[
    ("usr/sbin/runc", "usr/bin/runc"),
    ("usr/bin/jq", "usr/bin/jq"),
];
/// Programs of the sshd image.
pub const SSHD_PROGRAMS: &[(&str, &str)] = &[("usr/sbin/dropbear", "usr/sbin/dropbear")];

/// The Debian packages the examples are made from.
#[derive(Clone, Debug)]
pub struct ExampleDebs {
    /// `linux-image-<abi>-amd64`.
    pub kernel: DebPackage,
    /// `busybox-static`.
    pub busybox: DebPackage,
    /// [`RUNTIME_PACKAGES`], in that order.
    pub runtime: Vec<DebPackage>,
}

impl ExampleDebs {
    /// Fetches (or reuses from the cache) the kernel, busybox and [`RUNTIME_PACKAGES`].
    pub fn fetch(cache: &DebCache) -> anyhow::Result<Self> {
        let kernel_name = cache.kernel_package_name()?;
        Ok(Self {
            kernel: cache.fetch(&kernel_name)?,
            busybox: cache.fetch(BUSYBOX_PACKAGE)?,
            runtime: RUNTIME_PACKAGES
                .iter()
                .map(|name| cache.fetch(name))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    /// Every package, kernel first.
    pub fn all(&self) -> impl Iterator<Item = &DebPackage> {
        [&self.kernel, &self.busybox]
            .into_iter()
            .chain(&self.runtime)
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
        for deb in debs.all() {
            cache.unpack(deb, dir.path())?;
        }
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

    /// `programs` and the libraries they load, as files of an image: `(path, bytes, mode)`
    /// for each program (0755) and library (its package's mode), parents not included. The loader's
    /// `PT_INTERP` path (`lib64/ld-linux-x86-64.so.2`) is a symlink into the library
    /// directory, as in Debian.
    pub fn program_files(&self, programs: &[(&str, &str)]) -> anyhow::Result<Vec<ProgramFile>> {
        let root = self.dir.path();
        let sources: Vec<&str> = programs.iter().map(|(from, _)| *from).collect();
        let libraries = crate::elf::library_closure(root, &sources)?;
        let mut out = Vec::new();
        for (from, to) in programs {
            let real = crate::elf::resolve_in(root, from)?;
            out.push(ProgramFile::File(
                (*to).to_owned(),
                fs_err::read(real)?,
                0o755,
            ));
        }
        for (path, real) in &libraries {
            let name = path.rsplit('/').next().unwrap_or(path);
            let in_lib_dir = format!("{}/{name}", crate::elf::LIBRARY_DIRS[0]);
            if *path != in_lib_dir && libraries.contains_key(&in_lib_dir) {
                out.push(ProgramFile::Symlink(path.clone(), format!("/{in_lib_dir}")));
            } else {
                // The package's mode: the loader must stay executable.
                let mode = fs_err::metadata(real)?.permissions().mode() & 0o7777;
                out.push(ProgramFile::File(path.clone(), fs_err::read(real)?, mode));
            }
        }
        Ok(out)
    }
}

/// One file [`Sources::program_files`] puts into an image.
#[derive(Clone, Debug)]
pub enum ProgramFile {
    /// Path, bytes, mode.
    File(String, Vec<u8>, u32),
    /// Path, target.
    Symlink(String, String),
}

impl ProgramFile {
    /// The path in the image.
    pub fn path(&self) -> &str {
        match self {
            ProgramFile::File(path, ..) | ProgramFile::Symlink(path, _) => path,
        }
    }

    /// The tar entry.
    pub fn entry(&self) -> Entry {
        match self {
            ProgramFile::File(path, bytes, mode) => Entry::file(path, bytes.clone()).mode(*mode),
            ProgramFile::Symlink(path, target) => Entry::symlink(path, target),
        }
    }

    /// Writes it below `dir` (parents must exist).
    pub fn write_below(&self, dir: &Path) -> anyhow::Result<()> {
        match self {
            ProgramFile::File(path, bytes, mode) => {
                let full = dir.join(path);
                fs_err::write(&full, bytes)?;
                fs_err::set_permissions(&full, std::fs::Permissions::from_mode(*mode))?;
            }
            ProgramFile::Symlink(path, target) => {
                std::os::unix::fs::symlink(target, dir.join(path))
                    .with_context(|| format!("linking {path}"))?;
            }
        }
        Ok(())
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

/// Modules kept in `kernel.tar`, relative to `lib/modules/<release>/`; [`INIT_SCRIPT`] loads
/// them all: overlay for read-write bundles, virtio_pci and virtio_net (and what they need) for
/// QEMU's NIC.
pub const KERNEL_TAR_MODULES: &[&str] = &[
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/fs/overlayfs/overlay.ko",
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
    for (name, content) in module_index(sources)? {
        entries.push(
            Entry::file(format!("./lib/modules/{release}/{name}"), content).mtime(base_mtime),
        );
    }
    // Name order puts every directory before its contents.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Layer::new().entries(entries).tar_bytes()
}

/// `modules.dep`, `modules.alias` and `modules.symbols` for [`KERNEL_TAR_MODULES`], which
/// Debian's package lacks (its postinst runs depmod) and modprobe needs: busybox `depmod` run
/// on a copy of just those modules, lines sorted so the bytes do not depend on directory order.
fn module_index(sources: &Sources) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let release = sources.kernel_release();
    let scratch = tempfile::Builder::new().prefix("lkb-depmod-").tempdir()?;
    let copy = scratch.path().join("lib/modules").join(release);
    for module in KERNEL_TAR_MODULES {
        let target = copy.join(module);
        fs_err::create_dir_all(target.parent().context("a module has a directory")?)?;
        fs_err::copy(sources.modules_dir().join(module), &target)?;
    }
    crate::debs::run(
        std::process::Command::new(sources.busybox())
            .arg("depmod")
            .arg("-b")
            .arg(scratch.path())
            .arg(release),
    )
    .context("busybox depmod")?;
    let mut out = Vec::new();
    for name in ["modules.alias", "modules.dep", "modules.symbols"] {
        let text = fs_err::read_to_string(copy.join(name))?;
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        let mut content = lines.join("\n");
        content.push('\n');
        out.push((name.to_owned(), content.into_bytes()));
    }
    ensure!(
        out[1].1.windows(13).any(|w| w == b"virtio_net.ko"),
        "depmod left virtio_net out of modules.dep"
    );
    Ok(out)
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

/// Writes the init image's tree into `dir`: `/bin/busybox`, applet links, `/init`, runc and
/// jq with their libraries ([`INIT_PROGRAMS`]), and the mount points init needs. Permissions
/// are set explicitly (independent of the umask).
pub fn write_init_rootfs(sources: &Sources, dir: &Path) -> anyhow::Result<()> {
    for (sub, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("lib", 0o755),
        ("lib/x86_64-linux-gnu", 0o755),
        ("lib64", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("var", 0o755),
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
    write("bin/busybox", &fs_err::read(sources.busybox())?, 0o755)?;
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
    for file in sources.program_files(INIT_PROGRAMS)? {
        file.write_below(dir)?;
    }
    Ok(())
}

/// [`write_init_rootfs`] plus a fake `/containers` tree (onboot `000-dhcpcd`, service
/// `getty`), as lkb would lay bundles out but with `{}` for `config.json` (runc refuses it,
/// and the init says so): a hand-made initrd for boot smoke tests.
pub fn write_smoke_rootfs(sources: &Sources, dir: &Path) -> anyhow::Result<()> {
    write_init_rootfs(sources, dir)?;
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
    write_init_rootfs(sources, tree.path())?;
    let amd64 = ImageBuilder::new()
        .layer(Layer::from_dir(tree.path())?)
        .build()?;
    let arm64 = arm64_stub("init", Layer::new().executable("init", "#!/bin/sh\n"))?;
    IndexBuilder::new().image(amd64).image(arm64).build()
}

struct Service {
    name: &'static str,
    /// Directories of the service layer, with their modes.
    dirs: &'static [(&'static str, u32)],
    files: &'static [(&'static str, &'static str, u32)],
    entrypoint: Option<&'static [&'static str]>,
    cmd: Option<&'static [&'static str]>,
    label: Option<&'static str>,
    compression: Compression,
    flavor: Flavor,
    attestation: bool,
}

/// `/sbin/dhcpcd` of the dhcpcd image: LinuxKit's dhcpcd command line on busybox `udhcpc`.
/// With `-1` it gets one lease and exits (an onboot container), else it keeps the lease (a
/// service).
pub const DHCPCD_SCRIPT: &str = r#"#!/bin/sh
# lkb example dhcpcd: LinuxKit's dhcpcd flags on busybox udhcpc, for eth0.
# -1: get one lease and exit (onboot); otherwise keep renewing it (a service).
once=""
for arg in "$@"; do
  [ "$arg" = -1 ] && once=1
done
if [ ! -e /sys/class/net/eth0 ]; then
  echo "dhcpcd (lkb example): no eth0, nothing to configure"
  exit 1
fi
echo "dhcpcd (lkb example): udhcpc on eth0 $*"
if [ -n "$once" ]; then
  exec udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /usr/share/udhcpc/default.script
fi
exec udhcpc -i eth0 -f -t 5 -T 2 -s /usr/share/udhcpc/default.script
"#;

/// udhcpc's script in the dhcpcd image: sets the leased address, the default route and
/// `/etc/resolv.conf` (written in place: it is a bind of the host's).
pub const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc event script (lkb example): configures what udhcpc leased with busybox ip.
case "$1" in
deconfig)
  ip link set "$interface" up
  ip -4 addr flush dev "$interface"
  ;;
bound | renew)
  ip -4 addr flush dev "$interface"
  ip -4 addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
  for gateway in $router; do
    ip -4 route replace default via "$gateway" dev "$interface"
    break
  done
  {
    [ -n "$domain" ] && echo "search $domain"
    for server in $dns; do
      echo "nameserver $server"
    done
  } >/etc/resolv.conf
  echo "dhcpcd (lkb example): $interface $ip/${mask:-24} via ${router:-none}"
  ;;
esac
exit 0
"#;

/// `/usr/sbin/sshd` of the sshd image: OpenSSH's `sshd -D -e` (foreground, log to stderr) as
/// Debian's dropbear, which makes its host key on first use (`-R`).
pub const SSHD_SCRIPT: &str = r#"#!/bin/sh
# lkb example sshd: dropbear in the foreground (-F), logging to stderr (-E), making its host
# keys in /etc/dropbear on first use (-R).
mkdir -p /etc/dropbear
echo "sshd (lkb example): dropbear on port 22"
exec /usr/sbin/dropbear -F -E -R -p 22
"#;

const SERVICES: &[Service] = &[
    Service {
        name: "getty",
        dirs: &[],
        files: &[(
            "usr/bin/rungetty.sh",
            concat!(
                "#!/bin/sh\necho \"getty (lkb example) INSECURE=$INSECURE\"\n",
                "while :; do\n  sleep 3600\ndone\n"
            ),
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
        dirs: &[("usr/share", 0o755), ("usr/share/udhcpc", 0o755)],
        files: &[
            (
                "dhcpcd.conf",
                "# lkb example dhcpcd.conf\nhostname\nipv4only\n",
                0o644,
            ),
            ("sbin/dhcpcd", DHCPCD_SCRIPT, 0o755),
            ("usr/share/udhcpc/default.script", UDHCPC_SCRIPT, 0o755),
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
        dirs: &[
            ("etc/dropbear", 0o700),
            ("etc/ssh", 0o755),
            ("lib", 0o755),
            ("lib/x86_64-linux-gnu", 0o755),
            ("lib64", 0o755),
            ("root", 0o700),
            ("var", 0o755),
            ("var/log", 0o755),
        ],
        files: &[
            (
                "etc/ssh/sshd_config",
                "# lkb example sshd_config\nPermitRootLogin yes\n",
                0o644,
            ),
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
            ("etc/group", "root:x:0:\n", 0o644),
            ("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600),
            ("etc/shells", "/bin/sh\n", 0o644),
            (
                "etc/nsswitch.conf",
                "passwd: files\ngroup: files\nshadow: files\n",
                0o644,
            ),
            ("usr/sbin/sshd", SSHD_SCRIPT, 0o755),
        ],
        entrypoint: Some(&["/usr/sbin/sshd", "-D", "-e"]),
        cmd: None,
        label: Some(
            r#"{"pid":"host","net":"host","binds":["/root/.ssh:/root/.ssh","/etc/resolv.conf:/etc/resolv.conf","/containers:/containers"],"capabilities":["all"]}"#,
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
            concat!(
                "#!/bin/sh\necho \"rngd (lkb example) $*\"\n",
                "[ \"$1\" = -1 ] && exit 0\n",
                "while :; do\n  sleep 3600\ndone\n"
            ),
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

/// A service image (`getty`, `dhcpcd`, `sshd` or `rngd`); `programs` go into its service
/// layer (for sshd: dropbear and its libraries, [`SSHD_PROGRAMS`]).
pub fn service_image(
    name: &str,
    busybox: &[u8],
    programs: &[ProgramFile],
) -> anyhow::Result<ImageIndex> {
    let service = SERVICES
        .iter()
        .find(|s| s.name == name)
        .with_context(|| format!("no example service {name:?}"))?;
    let mut layer = Layer::new()
        .compression(service.compression)
        .file("etc/lkb-example", format!("lkb-example {name}\n"));
    for (dir, mode) in service.dirs {
        layer = layer.entry(Entry::dir(*dir).mode(*mode));
    }
    for (path, content, mode) in service.files {
        layer = layer.entry(Entry::file(*path, *content).mode(*mode));
    }
    for program in programs {
        layer = layer.entry(program.entry());
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
    let sshd_programs = sources.program_files(SSHD_PROGRAMS)?;
    for service in SERVICES {
        let programs: &[ProgramFile] = match service.name {
            "sshd" => &sshd_programs,
            _ => &[],
        };
        out.push(ExampleImage {
            name: service.name,
            reference: format!("{REPO_PREFIX}/{}:1", service.name),
            index: service_image(service.name, &busybox, programs)?,
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
    let mut deb_names: Vec<String> = debs.all().map(DebPackage::file_name).collect();
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

    /// The shell scripts of the images parse (the host's `sh -n`; busybox's ash is a superset
    /// of what they use).
    #[test]
    fn shell_scripts_parse() {
        for (name, script) in [
            ("init", INIT_SCRIPT),
            ("dhcpcd", DHCPCD_SCRIPT),
            ("udhcpc script", UDHCPC_SCRIPT),
            ("sshd", SSHD_SCRIPT),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
        }
    }

    #[test]
    fn service_images_share_the_base_layer() {
        let busybox = b"not really busybox".to_vec();
        let getty = service_image("getty", &busybox, &[]).unwrap();
        let sshd = service_image("sshd", &busybox, &[]).unwrap();
        assert_eq!(getty.images[0].diff_ids[0], sshd.images[0].diff_ids[0]);
        assert_eq!(sshd.images.len(), 3, "amd64, arm64 stub, attestation");
        let config = sshd.images[0].config_json();
        let label = config["config"]["Labels"][MOBY_CONFIG_LABEL]
            .as_str()
            .unwrap();
        let label: serde_json::Value = serde_json::from_str(label).unwrap();
        assert_eq!(label["capabilities"], json!(["all"]));
        assert!(service_image("nope", &busybox, &[]).is_err());
    }
}
