//! `lkb run qemu`: boots what a build wrote in QEMU, watching its serial console.
//!
//! The image is found from the path LinuxKit's `run qemu` takes: a prefix (`out/sshd` →
//! `sshd-kernel`, `sshd-initrd.img`, `sshd-cmdline`; or `sshd-kernel` with
//! `sshd-squashfs.img`, the root file system as the first disk), or an image file by its
//! extension: an ISO (`.iso`, as a CD-ROM), a disk (`.img`, `.raw`, `.qcow2`, `.vhd`, `.vmdk`,
//! as the first hard disk through QEMU's driver for it) or a unified kernel image (`.efi`,
//! loaded by the UEFI firmware). EFI images boot with OVMF. QEMU runs with `-nographic
//! -no-reboot`, so the serial console is its stdout and a guest power-off (or reboot) ends it.
//! lkb copies the console to its own stdout and, with `--console-log`, to a file; `--until`
//! ends the run at the first console line that matches, `--timeout` bounds it.
//!
//! A run keeps its files in a state directory ([`StateDir`]): `qemu.pid`, `mac-addr`,
//! `data.iso` (`--data`), the disks `--disk size=…` creates, and `console.log` when detached.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lkb_store::{Categorized, ErrorCategory};

/// How many console lines a failure shows.
pub const TAIL_LINES: usize = 40;

/// What `lkb run` cannot do, and why.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no bootable image at {path}: looked for {}", .looked_for.join(", "))]
    NoImage {
        path: String,
        looked_for: Vec<String>,
    },
    #[error("{path} is a {kind}, which `lkb run qemu` cannot boot; boot {instead} instead")]
    NotBootable {
        path: String,
        kind: &'static str,
        instead: &'static str,
    },
    #[error("no UEFI firmware at {path} (install the Debian package ovmf, or pass --fw)")]
    NoFirmware { path: String },
    #[error("cannot run {qemu}: {source} (install the Debian package {package})")]
    NoQemu {
        qemu: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid --until pattern: {0}")]
    BadPattern(#[from] regex::Error),
    #[error("invalid --disk {text:?}: {reason}")]
    BadDisk { text: String, reason: String },
    #[error("invalid --publish {text:?}: expected HOST:GUEST[/tcp|/udp]")]
    BadPublish { text: String },
    #[error("invalid --networking {text:?}: expected default, user or none")]
    BadNetworking { text: String },
    #[error("cannot create disk {path}: qemu-img said: {stderr}")]
    DiskCreate { path: String, stderr: String },
    #[error("no --data-file at {path}")]
    NoDataFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the data ISO {path}")]
    DataIso {
        path: String,
        #[source]
        source: lkb_disk::DiskError,
    },
    #[error("{path} holds no MAC address ({text:?}); remove it to have a new one made")]
    BadMac { path: String, text: String },
    #[error("{qemu} did not start in the background; it said: {stderr}")]
    DetachFailed { qemu: String, stderr: String },
    #[error("interrupted by {signal}: QEMU was stopped")]
    Interrupted { signal: &'static str },
    #[error("invalid --timeout {text:?}: expected a number with an optional s, m or h suffix")]
    BadDuration { text: String },
    #[error("no console line matched --until within {timeout:?}; the last lines:\n{tail}")]
    TimedOut { timeout: Duration, tail: String },
    #[error("the guest stopped before a console line matched --until; the last lines:\n{tail}")]
    NoMatch { tail: String },
    #[error("{qemu} failed ({status}); the last lines:\n{tail}")]
    QemuFailed {
        qemu: String,
        status: String,
        tail: String,
    },
}

impl Categorized for RunError {
    fn category(&self) -> ErrorCategory {
        match self {
            RunError::NoQemu { .. }
            | RunError::NoFirmware { .. }
            | RunError::Read { .. }
            | RunError::Write { .. }
            | RunError::DataIso { .. }
            | RunError::BadMac { .. }
            | RunError::DetachFailed { .. }
            | RunError::QemuFailed { .. }
            | RunError::DiskCreate { .. } => ErrorCategory::Environment,
            _ => ErrorCategory::User,
        }
    }
}

/// A kernel+initrd build on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInitrd {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The command line (empty when the build wrote no `-cmdline` file).
    pub cmdline: String,
}

/// A kernel+squashfs build on disk: the kernel boots with `root=/dev/sda`, the squashfs
/// being the first disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSquashfs {
    pub kernel: PathBuf,
    pub squashfs: PathBuf,
    /// The command line (empty when the build wrote no `-cmdline` file), without `root=`.
    pub cmdline: String,
}

/// How QEMU reads a disk image (its `-drive format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveFormat {
    Raw,
    Qcow2,
    /// VHD (QEMU's `vpc` driver).
    Vpc,
    Vmdk,
}

impl DriveFormat {
    /// QEMU's name for it.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DriveFormat::Raw => "raw",
            DriveFormat::Qcow2 => "qcow2",
            DriveFormat::Vpc => "vpc",
            DriveFormat::Vmdk => "vmdk",
        }
    }
}

/// What `lkb run` boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootable {
    KernelInitrd(KernelInitrd),
    KernelSquashfs(KernelSquashfs),
    /// An ISO (`iso-bios`, `iso-efi`, …), as a CD-ROM.
    Iso(PathBuf),
    /// A disk (`raw-bios`, `raw-efi`, `aws`, `qcow2-bios`, `qcow2-efi`, `vhd`, `vmdk`), as the
    /// first hard disk.
    Disk(PathBuf, DriveFormat),
    /// A unified kernel image, which the UEFI firmware loads as its kernel.
    Uki(PathBuf),
}

impl Bootable {
    /// Whether it needs UEFI firmware unless told: a UKI, and the images LinuxKit names
    /// `-efi` (`NAME-efi.img`, `NAME-efi.qcow2`, `NAME-efi.iso`, `NAME-efi-initrd.iso`).
    pub fn wants_uefi(&self) -> bool {
        let efi_name = |path: &Path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|stem| stem.ends_with("-efi") || stem.ends_with("-efi-initrd"))
        };
        match self {
            Bootable::KernelInitrd(_) | Bootable::KernelSquashfs(_) => false,
            Bootable::Uki(_) => true,
            Bootable::Iso(path) | Bootable::Disk(path, _) => efi_name(path),
        }
    }
}

/// How `path` is to be read: by its name, or as the flags force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageKind {
    #[default]
    Detect,
    /// `--kernel`: a kernel+initrd prefix.
    KernelInitrd,
    /// `--squashfs`: a kernel+squashfs prefix.
    KernelSquashfs,
    /// `--iso`.
    Iso,
}

/// Reads `PREFIX-cmdline`, trimmed; empty when there is none.
fn read_cmdline(prefix: &str) -> Result<String, RunError> {
    let path = PathBuf::from(format!("{prefix}-cmdline"));
    match fs_err::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(RunError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Finds the image at `path`: a prefix of `-kernel` and `-squashfs.img` or `-initrd.img`
/// files (and, optionally, `-cmdline`), the `-kernel` file itself, or an image file by its
/// extension. As LinuxKit, a prefix with a squashfs boots it, even if it has an initrd too.
pub fn find_image(path: &Path, kind: ImageKind) -> Result<Bootable, RunError> {
    let text = path.display().to_string();
    let prefix = text.strip_suffix("-kernel").unwrap_or(&text).to_owned();
    let kernel = PathBuf::from(format!("{prefix}-kernel"));
    let initrd = PathBuf::from(format!("{prefix}-initrd.img"));
    let squashfs = PathBuf::from(format!("{prefix}-squashfs.img"));
    if kind == ImageKind::Iso {
        return match path.is_file() {
            true => Ok(Bootable::Iso(path.to_path_buf())),
            false => Err(RunError::NoImage {
                path: text.clone(),
                looked_for: vec![text],
            }),
        };
    }
    let shown = |paths: &[&PathBuf]| paths.iter().map(|p| p.display().to_string()).collect();
    if kind == ImageKind::KernelSquashfs
        || (kind == ImageKind::Detect && kernel.is_file() && squashfs.is_file())
    {
        if !(kernel.is_file() && squashfs.is_file()) {
            return Err(RunError::NoImage {
                path: text,
                looked_for: shown(&[&kernel, &squashfs]),
            });
        }
        return Ok(Bootable::KernelSquashfs(KernelSquashfs {
            cmdline: read_cmdline(&prefix)?,
            kernel,
            squashfs,
        }));
    }
    if kernel.is_file() && initrd.is_file() {
        return Ok(Bootable::KernelInitrd(KernelInitrd {
            cmdline: read_cmdline(&prefix)?,
            kernel,
            initrd,
        }));
    }
    let no_image = || RunError::NoImage {
        path: text.clone(),
        looked_for: match kind {
            ImageKind::KernelInitrd => shown(&[&kernel, &initrd]),
            _ => shown(&[&kernel, &initrd, &squashfs]),
        },
    };
    if kind == ImageKind::KernelInitrd || !path.is_file() {
        return Err(no_image());
    }
    let file = path.to_path_buf();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    match path.extension().and_then(|e| e.to_str()) {
        Some("iso") => Ok(Bootable::Iso(file)),
        Some("img" | "raw") => Ok(Bootable::Disk(file, DriveFormat::Raw)),
        Some("qcow2") => Ok(Bootable::Disk(file, DriveFormat::Qcow2)),
        Some("vhd") => Ok(Bootable::Disk(file, DriveFormat::Vpc)),
        Some("vmdk") => Ok(Bootable::Disk(file, DriveFormat::Vmdk)),
        Some("efi") => Ok(Bootable::Uki(file)),
        Some("gz") if name.ends_with(".img.tar.gz") => Err(RunError::NotBootable {
            path: text,
            kind: "GCE image archive (gcp)",
            instead: "the raw disk it holds (`-f aws` writes it as NAME.raw)",
        }),
        _ => Err(no_image()),
    }
}

/// Parses `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, RunError> {
    let bad = || RunError::BadDuration {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    let (number, unit) = match trimmed.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A `--disk`: a file, its size when it has to be created, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `None` for `--disk size=…`: the file is made in the state directory
    /// ([`Disk::place`]).
    pub path: Option<PathBuf>,
    /// `qemu-img` size (`1G`, `512M`) when the disk is created; LinuxKit's default is 1G.
    pub size: Option<String>,
    /// `qcow2` or `raw`.
    pub format: String,
}

impl Disk {
    /// The file, once placed.
    fn file(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Gives a disk with no file LinuxKit's name in `state`: `disk.img`, then `disk1.img`,
    /// `disk2.img`, … by its place among the `--disk` flags.
    pub fn place(&mut self, index: usize, state: &Path) {
        if self.path.is_none() {
            let id = if index == 0 {
                String::new()
            } else {
                index.to_string()
            };
            self.path = Some(state.join(format!("disk{id}.img")));
        }
    }
}

/// Parses LinuxKit's `--disk [file=]PATH[,size=1G][,format=qcow2|raw]`; with a size, the
/// file may be left out (it is then made in the state directory, as qcow2 by default).
pub fn parse_disk(text: &str) -> Result<Disk, RunError> {
    let bad = |reason: &str| RunError::BadDisk {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut disk = Disk {
        path: None,
        size: None,
        format: String::new(),
    };
    for (i, part) in text.split(',').enumerate() {
        match part.split_once('=') {
            Some(("file", path)) if !path.is_empty() => disk.path = Some(PathBuf::from(path)),
            Some(("size", size)) if !size.is_empty() => disk.size = Some(size.to_owned()),
            Some(("format", format)) => disk.format = format.to_owned(),
            Some((key @ ("file" | "size"), _)) => return Err(bad(&format!("empty `{key}`"))),
            Some((key, _)) => return Err(bad(&format!("unknown key `{key}`"))),
            None if i == 0 && !part.is_empty() => disk.path = Some(PathBuf::from(part)),
            None => return Err(bad("expected key=value after the path")),
        }
    }
    if disk.path.is_none() && disk.size.is_none() {
        return Err(bad("no file and no size"));
    }
    if disk.format.is_empty() {
        let qcow2 = match &disk.path {
            Some(path) => path.extension().is_some_and(|ext| ext == "qcow2"),
            None => true,
        };
        disk.format = if qcow2 { "qcow2" } else { "raw" }.to_owned();
    }
    if !["qcow2", "raw"].contains(&disk.format.as_str()) {
        return Err(bad("format must be qcow2 or raw"));
    }
    Ok(disk)
}

/// Creates `disk` with `qemu-img` unless it exists.
pub fn ensure_disk(disk: &Disk) -> Result<(), RunError> {
    let path = disk.file();
    if path.exists() {
        return Ok(());
    }
    let output = Command::new("qemu-img")
        .args(["create", "-f", &disk.format])
        .arg(path)
        .arg(disk.size.as_deref().unwrap_or("1G"))
        .output()
        .map_err(|source| RunError::NoQemu {
            qemu: "qemu-img".to_owned(),
            package: "qemu-utils",
            source,
        })?;
    if !output.status.success() {
        return Err(RunError::DiskCreate {
            path: path.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Where a run keeps its files: the `--state` directory (kept), or a temporary one removed
/// when this value is dropped, unless [`StateDir::keep`] was called.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    temporary: Option<tempfile::TempDir>,
}

impl StateDir {
    /// `given` (created if missing), or a new temporary directory.
    pub fn open(given: Option<&Path>) -> Result<StateDir, RunError> {
        match given {
            Some(path) => {
                let error = |source| RunError::Write {
                    path: path.display().to_string(),
                    source,
                };
                fs_err::create_dir_all(path).map_err(error)?;
                // Absolute: a detached QEMU runs from `/`, and the printed path must work
                // from anywhere.
                Ok(StateDir {
                    path: std::path::absolute(path).map_err(error)?,
                    temporary: None,
                })
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("lkb-run-")
                    .tempdir()
                    .map_err(|source| RunError::Write {
                        path: std::env::temp_dir().display().to_string(),
                        source,
                    })?;
                Ok(StateDir {
                    path: dir.path().to_path_buf(),
                    temporary: Some(dir),
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory is removed when the run ends.
    pub fn is_temporary(&self) -> bool {
        self.temporary.is_some()
    }

    /// Keeps a temporary directory after the run (`--detached`).
    pub fn keep(&mut self) {
        if let Some(dir) = self.temporary.take() {
            // Leaves the directory in place: the detached QEMU writes its console there.
            let _ = dir.keep();
        }
    }

    /// The guest NIC's MAC address from `mac-addr`, made on first use: random bytes from the
    /// kernel, locally administered and unicast, as LinuxKit's (`02:…` style, lower case).
    pub fn mac_address(&self) -> Result<String, RunError> {
        let path = self.path.join("mac-addr");
        match fs_err::read_to_string(&path) {
            Ok(text) => {
                let mac = text.trim();
                let valid = mac.len() == 17
                    && mac.split(':').count() == 6
                    && mac
                        .split(':')
                        .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
                return match valid {
                    true => Ok(mac.to_ascii_lowercase()),
                    false => Err(RunError::BadMac {
                        path: path.display().to_string(),
                        text: mac.to_owned(),
                    }),
                };
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RunError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        let mut bytes = [0u8; 6];
        let random = "/dev/urandom";
        std::io::Read::read_exact(
            &mut fs_err::File::open(random).map_err(|source| RunError::Read {
                path: random.to_owned(),
                source,
            })?,
            &mut bytes,
        )
        .map_err(|source| RunError::Read {
            path: random.to_owned(),
            source,
        })?;
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        let mac = bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        fs_err::write(&path, format!("{mac}\n")).map_err(|source| RunError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(mac)
    }

    /// Writes `STATE/data.iso`: ISO 9660 with Rock Ridge holding one file, `config`, with
    /// `data` (LinuxKit's metadata CD, which its `metadata` package reads). Reproducible:
    /// LinuxKit's fixed time for every timestamp.
    pub fn write_data_iso(&self, data: &[u8]) -> Result<PathBuf, RunError> {
        let path = self.path.join("data.iso");
        let iso_error = |source| RunError::DataIso {
            path: path.display().to_string(),
            source,
        };
        let entry = |path: &str, kind, mode| lkb_disk::FsEntry {
            path: path.to_owned(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DATA_ISO_TIME,
            link_group: None,
            xattrs: Vec::new(),
        };
        let entries = vec![
            entry("", lkb_disk::FsKind::Dir, 0o755),
            entry(
                "config",
                lkb_disk::FsKind::File(lkb_disk::Data::Bytes(data.to_vec())),
                0o644,
            ),
        ];
        let plan = lkb_disk::iso::plan(
            entries,
            lkb_disk::iso::IsoOptions {
                volume_id: "CIDATA".to_owned(),
                timestamp: DATA_ISO_TIME,
                joliet: false,
                boot: None,
                hybrid: None,
            },
        )
        .map_err(iso_error)?;
        let write_error = |source| RunError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = fs_err::File::create(&path).map_err(write_error)?;
        let mut sink = lkb_disk::FileSink::new(file.into_parts().0);
        plan.write(&mut sink).map_err(iso_error)?;
        sink.finish().map_err(write_error)?;
        Ok(path)
    }
}

/// The data ISO's time: LinuxKit's image time, 2017-04-18T16:30:00Z.
const DATA_ISO_TIME: i64 = 1_492_533_000;

/// Guest networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// QEMU's user-mode network, with `--publish` port forwards.
    User {
        publish: Vec<String>,
    },
    None,
}

/// Parses `--networking` (`default` is `user`) with the `--publish HOST:GUEST[/PROTO]` list.
pub fn parse_networking(text: &str, publish: &[String]) -> Result<Networking, RunError> {
    let forwards = publish
        .iter()
        .map(|spec| {
            let bad = || RunError::BadPublish { text: spec.clone() };
            let (ports, proto) = match spec.split_once('/') {
                Some((ports, proto @ ("tcp" | "udp"))) => (ports, proto),
                Some(_) => return Err(bad()),
                None => (spec.as_str(), "tcp"),
            };
            let (host, guest) = ports.split_once(':').ok_or_else(bad)?;
            let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
            Ok(format!(
                "hostfwd={proto}:127.0.0.1:{}-:{}",
                port(host)?,
                port(guest)?
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match text {
        "default" | "user" => Ok(Networking::User { publish: forwards }),
        "none" if forwards.is_empty() => Ok(Networking::None),
        "none" => Err(RunError::BadPublish {
            text: publish.join(" "),
        }),
        _ => Err(RunError::BadNetworking {
            text: text.to_owned(),
        }),
    }
}

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct QemuRequest {
    pub image: Bootable,
    /// UEFI firmware (`-bios`), for EFI images; `None` is QEMU's SeaBIOS.
    pub firmware: Option<PathBuf>,
    pub qemu: String,
    pub cpus: u32,
    pub mem_mib: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub until: Option<regex::Regex>,
    pub timeout: Option<Duration>,
    pub console_log: Option<PathBuf>,
    /// Placed disks (every one has a file).
    pub disks: Vec<Disk>,
    pub networking: Networking,
    /// The NIC's MAC address (from the state directory's `mac-addr`).
    pub mac: Option<String>,
    /// `STATE/data.iso`, attached as one more CD-ROM.
    pub data_iso: Option<PathBuf>,
    /// The state directory: `qemu.pid`, and `console.log` when detached.
    pub state: PathBuf,
    /// Start QEMU in the background and return.
    pub detached: bool,
    /// Where to copy the console as it comes, if anywhere.
    pub echo: Option<Echo>,
}

impl QemuRequest {
    /// `STATE/qemu.pid`, which QEMU writes (`-pidfile`) and removes when it exits.
    pub fn pid_file(&self) -> PathBuf {
        self.state.join("qemu.pid")
    }

    /// `STATE/console.log`, the console of a detached QEMU.
    pub fn detached_console(&self) -> PathBuf {
        self.state.join("console.log")
    }
}

/// Where the console goes besides the log file: the caller's stdout writer.
pub type Echo = fn(&[u8]);

/// How a run ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest powered off (or rebooted, which `-no-reboot` turns into an exit).
    Stopped,
    /// A console line matched `--until`; QEMU was stopped.
    Matched(String),
    /// `--detached`: QEMU runs in the background with this pid.
    Detached { pid: u32 },
}

/// Whether `/dev/kvm` can be used by this process.
pub fn kvm_usable() -> bool {
    fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The QEMU command line for `request`.
pub fn qemu_args(request: &QemuRequest) -> Vec<String> {
    let image = &request.image;
    let mut args = vec![
        "-accel".to_owned(),
        request.accel.clone(),
        "-smp".to_owned(),
        request.cpus.to_string(),
        "-m".to_owned(),
        request.mem_mib.to_string(),
    ];
    if request.detached {
        // `-nographic` puts the console on stdio, which a daemon does not have.
        args.extend(
            [
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                &format!("file:{}", request.detached_console().display()),
                "-daemonize",
            ]
            .map(str::to_owned),
        );
    } else {
        args.push("-nographic".to_owned());
    }
    args.push("-no-reboot".to_owned());
    args.extend([
        "-pidfile".to_owned(),
        request.pid_file().display().to_string(),
    ]);
    if let Some(firmware) = &request.firmware {
        args.extend(["-bios".to_owned(), firmware.display().to_string()]);
    }
    // The image's own disk comes first, so the firmware boots it; `--disk`s follow.
    let mut first_disk = 0;
    let first_drive = |path: &Path, format: DriveFormat| {
        format!(
            "file={},format={},index=0,media=disk",
            path.display(),
            format.qemu_name()
        )
    };
    match image {
        Bootable::KernelInitrd(image) => {
            args.extend(["-kernel".to_owned(), image.kernel.display().to_string()]);
            args.extend(["-initrd".to_owned(), image.initrd.display().to_string()]);
            if !image.cmdline.is_empty() {
                args.push("-append".to_owned());
                args.push(image.cmdline.clone());
            }
        }
        Bootable::KernelSquashfs(image) => {
            args.extend(["-kernel".to_owned(), image.kernel.display().to_string()]);
            let cmdline = match image.cmdline.as_str() {
                "" => "root=/dev/sda".to_owned(),
                cmdline => format!("{cmdline} root=/dev/sda"),
            };
            args.extend(["-append".to_owned(), cmdline]);
            args.push("-drive".to_owned());
            args.push(first_drive(&image.squashfs, DriveFormat::Raw));
            first_disk = 1;
        }
        Bootable::Iso(path) => {
            args.extend(["-cdrom".to_owned(), path.display().to_string()]);
        }
        Bootable::Disk(path, format) => {
            args.push("-drive".to_owned());
            args.push(first_drive(path, *format));
            first_disk = 1;
        }
        Bootable::Uki(path) => {
            args.extend(["-kernel".to_owned(), path.display().to_string()]);
        }
    }
    for (index, disk) in request.disks.iter().enumerate() {
        args.push("-drive".to_owned());
        args.push(format!(
            "file={},format={},index={},media=disk",
            disk.file().display(),
            disk.format,
            index + first_disk
        ));
    }
    // After the numbered drives: a CD-ROM without an index takes the first free slot.
    if let Some(data) = &request.data_iso {
        args.push("-drive".to_owned());
        let drive = format!("file={},format=raw,media=cdrom,readonly=on", data.display());
        args.push(drive);
    }
    match &request.networking {
        Networking::None => args.extend(["-nic".to_owned(), "none".to_owned()]),
        Networking::User { publish } => {
            let mut netdev = "user,id=net0".to_owned();
            for forward in publish {
                netdev.push(',');
                netdev.push_str(forward);
            }
            let mut device = "virtio-net-pci,netdev=net0".to_owned();
            if let Some(mac) = &request.mac {
                device.push_str(&format!(",mac={mac}"));
            }
            args.extend(["-netdev".to_owned(), netdev, "-device".to_owned(), device]);
        }
    }
    args
}

/// Stops our own QEMU child by its PID and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The spawn error for a QEMU that cannot be started.
fn no_qemu(request: &QemuRequest) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    |source| RunError::NoQemu {
        qemu: request.qemu.clone(),
        package: "qemu-system-x86, or pass --qemu",
        source,
    }
}

/// Prepares what QEMU reads and writes: the disks `--disk` names (created when missing).
fn prepare(request: &QemuRequest) -> Result<(), RunError> {
    for disk in &request.disks {
        ensure_disk(disk)?;
    }
    Ok(())
}

/// Starts QEMU in the background (`-daemonize`: QEMU returns once the VM is set up, so a
/// bad argument is still reported here) and returns its pid from `STATE/qemu.pid`.
fn run_detached(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    prepare(request)?;
    let output = Command::new(&request.qemu)
        .args(qemu_args(request))
        .stdin(Stdio::null())
        .output()
        .map_err(no_qemu(request))?;
    let failed = |detail: &str| RunError::DetachFailed {
        qemu: request.qemu.clone(),
        stderr: format!("{detail}{}", String::from_utf8_lossy(&output.stderr).trim()),
    };
    if !output.status.success() {
        return Err(failed(""));
    }
    let pid_file = request.pid_file();
    let pid = fs_err::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or_else(|| failed(&format!("no pid in {}. ", pid_file.display())))?;
    Ok(RunOutcome::Detached { pid })
}

/// Set by SIGINT or SIGTERM while QEMU runs in the foreground.
#[derive(Debug, Clone, Default)]
struct Interrupt(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl Interrupt {
    const INT: u8 = 1;
    const TERM: u8 = 2;

    /// Starts watching for SIGINT and SIGTERM (which no longer end lkb at once) on a thread
    /// of its own, with a one-thread tokio runtime.
    fn watch() -> Interrupt {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = Interrupt::default();
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return interrupt;
        };
        let signals = {
            let _entered = runtime.enter();
            signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
        };
        let Ok((mut int, mut term)) = signals else {
            return interrupt;
        };
        let flag = interrupt.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let which = tokio::select! {
                    _ = int.recv() => Interrupt::INT,
                    _ = term.recv() => Interrupt::TERM,
                };
                flag.0.store(which, std::sync::atomic::Ordering::SeqCst);
                // Later signals are swallowed here: the run is already stopping.
                loop {
                    tokio::select! {
                        _ = int.recv() => {},
                        _ = term.recv() => {},
                    }
                }
            });
        });
        interrupt
    }

    /// The signal that came, if one did.
    fn received(&self) -> Option<&'static str> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Interrupt::INT => Some("SIGINT"),
            Interrupt::TERM => Some("SIGTERM"),
            _ => None,
        }
    }
}

/// Boots `request`, copying the console, until the guest stops, `--until` matches,
/// `--timeout` passes or lkb gets SIGINT/SIGTERM (QEMU is stopped in every case); with
/// `detached`, starts it in the background instead.
pub fn run_qemu(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    if request.detached {
        return run_detached(request);
    }
    let outcome = run_foreground(request);
    // QEMU removes its pid file when it exits by itself, not when it is killed.
    let _ = fs_err::remove_file(request.pid_file());
    outcome
}

fn run_foreground(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    let mut log_file = match &request.console_log {
        Some(path) => Some(fs_err::File::create(path).map_err(|source| RunError::Read {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    prepare(request)?;
    let interrupt = Interrupt::watch();
    let mut child = Command::new(&request.qemu)
        .args(qemu_args(request))
        .stdin(if request.until.is_some() || request.timeout.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(no_qemu(request))?;
    // Both pipes feed one channel of lines; the readers end when QEMU closes them.
    let (lines, received) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for pipe in [stdout, stderr].into_iter().flatten() {
        let lines = lines.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                if lines.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(lines);

    let started = Instant::now();
    let mut tail: Vec<String> = Vec::new();
    let outcome = loop {
        if let Some(signal) = interrupt.received() {
            stop(&mut child);
            break Err(RunError::Interrupted { signal });
        }
        let wait = match request.timeout {
            Some(limit) => match limit.checked_sub(started.elapsed()) {
                Some(left) => left.min(Duration::from_millis(200)),
                None => {
                    stop(&mut child);
                    break Err(RunError::TimedOut {
                        timeout: limit,
                        tail: tail.concat(),
                    });
                }
            },
            None => Duration::from_millis(200),
        };
        match received.recv_timeout(wait) {
            Ok(line) => {
                if let Some(echo) = request.echo {
                    echo(line.as_bytes());
                }
                if let Some(file) = &mut log_file {
                    let _ = file.write_all(line.as_bytes());
                }
                tail.push(line.clone());
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
                if let Some(pattern) = &request.until
                    && pattern.is_match(line.trim_end_matches('\n'))
                {
                    stop(&mut child);
                    break Ok(RunOutcome::Matched(line.trim_end().to_owned()));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|source| RunError::Read {
                    path: request.qemu.clone(),
                    source,
                })?;
                break if !status.success() {
                    Err(RunError::QemuFailed {
                        qemu: request.qemu.clone(),
                        status: status.to_string(),
                        tail: tail.concat(),
                    })
                } else if request.until.is_some() {
                    Err(RunError::NoMatch {
                        tail: tail.concat(),
                    })
                } else {
                    Ok(RunOutcome::Stopped)
                };
            }
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h").ok(), Some(Duration::from_secs(5400)));
        for bad in ["", "m", "5d", "-1", "1e99"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn kernel_initrd(found: Bootable) -> KernelInitrd {
        match found {
            Bootable::KernelInitrd(image) => image,
            other => panic!("not a kernel+initrd: {other:?}"),
        }
    }

    #[test]
    fn images_are_found_by_prefix_kernel_path_or_extension() {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path().join("sshd");
        let missing = find_image(&prefix, ImageKind::Detect).expect_err("nothing there");
        assert!(matches!(missing, RunError::NoImage { .. }));
        assert!(missing.to_string().contains("sshd-initrd.img"), "{missing}");
        assert_eq!(missing.category(), ErrorCategory::User);

        fs_err::write(dir.path().join("sshd-kernel"), b"k").expect("write");
        fs_err::write(dir.path().join("sshd-initrd.img"), b"i").expect("write");
        let found = kernel_initrd(find_image(&prefix, ImageKind::Detect).expect("kernel+initrd"));
        assert_eq!(found.cmdline, "");
        fs_err::write(dir.path().join("sshd-cmdline"), b"console=ttyS0\n").expect("write");
        let found = find_image(&dir.path().join("sshd-kernel"), ImageKind::KernelInitrd);
        let found = kernel_initrd(found.expect("by kernel path"));
        assert_eq!(found.cmdline, "console=ttyS0");
        assert_eq!(found.initrd, dir.path().join("sshd-initrd.img"));

        for (name, efi) in [
            ("sshd.iso", false),
            ("sshd-efi.iso", true),
            ("sshd-efi-initrd.iso", true),
            ("sshd-bios.img", false),
            ("sshd-efi.img", true),
            ("sshd.efi", true),
        ] {
            let path = dir.path().join(name);
            fs_err::write(&path, b"x").expect("write");
            let found = find_image(&path, ImageKind::Detect).expect(name);
            assert_eq!(found.wants_uefi(), efi, "{name}: {found:?}");
        }
        let forced = find_image(&dir.path().join("sshd-bios.img"), ImageKind::Iso).expect("iso");
        assert_eq!(forced, Bootable::Iso(dir.path().join("sshd-bios.img")));

        for (name, format, efi) in [
            ("sshd.qcow2", DriveFormat::Qcow2, false),
            ("sshd-efi.qcow2", DriveFormat::Qcow2, true),
            ("sshd.vhd", DriveFormat::Vpc, false),
            ("sshd.vmdk", DriveFormat::Vmdk, false),
            ("sshd.raw", DriveFormat::Raw, false),
        ] {
            let path = dir.path().join(name);
            fs_err::write(&path, b"x").expect("write");
            let found = find_image(&path, ImageKind::Detect).expect(name);
            assert_eq!(found, Bootable::Disk(path.clone(), format));
            assert_eq!(found.wants_uefi(), efi, "{name}");
        }
        let gcp = dir.path().join("sshd.img.tar.gz");
        fs_err::write(&gcp, b"x").expect("write");
        let error = find_image(&gcp, ImageKind::Detect).expect_err("gcp");
        assert!(matches!(error, RunError::NotBootable { .. }), "{error}");
    }

    #[test]
    fn a_prefix_with_a_squashfs_boots_it_and_the_flags_force_a_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path().join("sq");
        fs_err::write(dir.path().join("sq-kernel"), b"k").expect("write");
        let error = find_image(&prefix, ImageKind::KernelSquashfs).expect_err("no squashfs");
        assert!(error.to_string().contains("sq-squashfs.img"), "{error}");
        fs_err::write(dir.path().join("sq-squashfs.img"), b"s").expect("write");
        fs_err::write(dir.path().join("sq-cmdline"), b"console=ttyS0\n").expect("write");
        let expected = Bootable::KernelSquashfs(KernelSquashfs {
            kernel: dir.path().join("sq-kernel"),
            squashfs: dir.path().join("sq-squashfs.img"),
            cmdline: "console=ttyS0".to_owned(),
        });
        assert_eq!(
            find_image(&prefix, ImageKind::Detect).expect("detect"),
            expected
        );
        // With an initrd too, detection picks the squashfs (as LinuxKit); --kernel the initrd.
        fs_err::write(dir.path().join("sq-initrd.img"), b"i").expect("write");
        assert_eq!(
            find_image(&prefix, ImageKind::Detect).expect("detect"),
            expected
        );
        let forced = find_image(&prefix, ImageKind::KernelInitrd).expect("--kernel");
        assert!(matches!(forced, Bootable::KernelInitrd(_)), "{forced:?}");
    }

    #[test]
    fn the_state_dir_keeps_one_mac_and_writes_the_data_iso() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDir::open(Some(&dir.path().join("state"))).expect("state");
        assert!(!state.is_temporary());
        let mac = state.mac_address().expect("mac");
        assert_eq!(mac.len(), 17, "{mac}");
        let first = u8::from_str_radix(&mac[..2], 16).expect("hex");
        assert_eq!(first & 0x03, 0x02, "locally administered unicast: {mac}");
        let again = StateDir::open(Some(&dir.path().join("state"))).expect("state");
        assert_eq!(again.mac_address().expect("mac"), mac);
        fs_err::write(dir.path().join("state/mac-addr"), "nonsense").expect("write");
        assert!(again.mac_address().is_err());

        let iso = state.write_data_iso(b"hello").expect("data.iso");
        let bytes = fs_err::read(&iso).expect("read");
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert_eq!(
            fs_err::read(state.write_data_iso(b"hello").expect("again")).expect("read"),
            bytes,
            "reproducible"
        );

        let temporary = StateDir::open(None).expect("temporary");
        let path = temporary.path().to_path_buf();
        assert!(temporary.is_temporary() && path.is_dir());
        drop(temporary);
        assert!(!path.exists());
        let mut kept = StateDir::open(None).expect("temporary");
        kept.keep();
        assert!(kept.path().is_dir());
        fs_err::remove_dir_all(kept.path()).expect("clean up");
    }

    #[test]
    fn disks_and_networks_parse_as_linuxkit_spells_them() {
        let disk = parse_disk("data.img").expect("plain path");
        assert_eq!((disk.size.as_deref(), disk.format.as_str()), (None, "raw"));
        let disk = parse_disk("file=/tmp/d.qcow2,size=512M").expect("keys");
        assert_eq!(
            (disk.size.as_deref(), disk.format.as_str()),
            (Some("512M"), "qcow2")
        );
        assert!(parse_disk("d.img,format=vdi").is_err());
        assert!(parse_disk("format=raw").is_err());
        assert!(parse_disk("file=,size=1G").is_err());
        let mut placed = [
            parse_disk("size=1G").expect("no file"),
            parse_disk("size=2G").expect(""),
        ];
        assert_eq!(placed[0].format, "qcow2", "as LinuxKit");
        for (index, disk) in placed.iter_mut().enumerate() {
            disk.place(index, Path::new("/state"));
        }
        assert_eq!(
            placed[0].path.as_deref(),
            Some(Path::new("/state/disk.img"))
        );
        assert_eq!(
            placed[1].path.as_deref(),
            Some(Path::new("/state/disk1.img"))
        );
        assert!(parse_disk("d.img,bogus").is_err());
        assert_eq!(
            parse_networking("user", &["8080:80/udp".to_owned()]).expect("user"),
            Networking::User {
                publish: vec!["hostfwd=udp:127.0.0.1:8080-:80".to_owned()]
            }
        );
        assert_eq!(
            parse_networking("none", &[]).expect("none"),
            Networking::None
        );
        assert!(parse_networking("none", &["1:2".to_owned()]).is_err());
        assert!(parse_networking("tap", &[]).is_err());
        assert!(parse_networking("user", &["80".to_owned()]).is_err());
        assert!(parse_networking("user", &["1:2/sctp".to_owned()]).is_err());
    }

    #[test]
    fn qemu_arguments() {
        let request = QemuRequest {
            image: Bootable::KernelInitrd(KernelInitrd {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: "console=ttyS0".into(),
            }),
            firmware: None,
            qemu: "qemu-system-x86_64".into(),
            cpus: 2,
            mem_mib: 512,
            accel: "tcg".into(),
            until: None,
            timeout: None,
            console_log: None,
            disks: vec![parse_disk("file=d.qcow2,size=2G").expect("disk")],
            networking: parse_networking("default", &["2222:22".to_owned()]).expect("net"),
            mac: Some("02:00:00:00:00:01".to_owned()),
            data_iso: None,
            state: "/s".into(),
            detached: false,
            echo: None,
        };
        assert_eq!(
            qemu_args(&request).join(" "),
            "-accel tcg -smp 2 -m 512 -nographic -no-reboot -pidfile /s/qemu.pid -kernel k \
             -initrd i -append console=ttyS0 -drive file=d.qcow2,format=qcow2,index=0,media=disk \
             -netdev user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device \
             virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01"
        );
        let disk = QemuRequest {
            image: Bootable::Disk("x-efi.qcow2".into(), DriveFormat::Qcow2),
            firmware: Some("/ovmf.fd".into()),
            networking: Networking::None,
            data_iso: Some("/s/data.iso".into()),
            ..request.clone()
        };
        assert_eq!(
            qemu_args(&disk).join(" "),
            "-accel tcg -smp 2 -m 512 -nographic -no-reboot -pidfile /s/qemu.pid -bios /ovmf.fd \
             -drive file=x-efi.qcow2,format=qcow2,index=0,media=disk -drive \
             file=d.qcow2,format=qcow2,index=1,media=disk -drive \
             file=/s/data.iso,format=raw,media=cdrom,readonly=on -nic none"
        );
        let squashfs = QemuRequest {
            image: Bootable::KernelSquashfs(KernelSquashfs {
                kernel: "p-kernel".into(),
                squashfs: "p-squashfs.img".into(),
                cmdline: "console=ttyS0".into(),
            }),
            disks: Vec::new(),
            networking: Networking::None,
            detached: true,
            ..request
        };
        assert_eq!(
            qemu_args(&squashfs).join(" "),
            "-accel tcg -smp 2 -m 512 -display none -monitor none -serial file:/s/console.log \
             -daemonize -no-reboot -pidfile /s/qemu.pid -kernel p-kernel -append console=ttyS0 \
             root=/dev/sda -drive file=p-squashfs.img,format=raw,index=0,media=disk -nic none"
        );
    }

    #[test]
    fn a_missing_qemu_is_an_environment_error_naming_the_package() {
        let request = QemuRequest {
            image: Bootable::KernelInitrd(KernelInitrd {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: String::new(),
            }),
            firmware: None,
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            cpus: 1,
            mem_mib: 256,
            accel: "tcg".into(),
            until: None,
            timeout: Some(Duration::from_secs(1)),
            console_log: None,
            disks: Vec::new(),
            networking: Networking::None,
            mac: None,
            data_iso: None,
            state: std::env::temp_dir(),
            detached: false,
            echo: None,
        };
        let error = run_qemu(&request).expect_err("no qemu");
        assert_eq!(error.category(), ErrorCategory::Environment);
        assert!(error.to_string().contains("qemu-system-x86"), "{error}");
    }
}
