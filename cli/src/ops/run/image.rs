//! Which image a path names: a kernel+initrd or kernel+squashfs prefix, an ISO, a disk (with
//! QEMU's driver for it) or a unified kernel image.

use std::path::{Path, PathBuf};

use super::RunError;

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
