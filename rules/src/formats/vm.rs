//! The VM and cloud formats: a bootable raw disk (the `raw-bios` or `raw-efi` layout) wrapped in
//! the container a platform imports (layouts in docs/formats.md):
//!
//! | format | file | disk | wrapped as |
//! |---|---|---|---|
//! | `qcow2-bios` | `NAME.qcow2` | raw-bios, `--size` (1024M) | qcow2 v3 |
//! | `qcow2-efi` | `NAME-efi.qcow2` | raw-efi (`--size` if given) | qcow2 v3 |
//! | `aws` | `NAME.raw` | raw-bios, `--size` (1024M) | — (AWS ImportSnapshot takes raw) |
//! | `vhd` | `NAME.vhd` | raw-bios, `--size` (1024M) | fixed VHD (Azure, Hyper-V) |
//! | `dynamic-vhd` | `NAME.vhd` | raw-bios, `--size` (1024M) | dynamic VHD |
//! | `vmdk` | `NAME.vmdk` | raw-bios, `--size` (1024M) | VMDK streamOptimized (vSphere) |
//! | `gcp` | `NAME.img.tar.gz` | raw-bios, `--size` (1024M) in whole GiB | `disk.raw` in a GNU sparse tar, gzip |
//!
//! LinuxKit puts the root file system on ext4 for these; an lkb system runs from its initrd,
//! so the FAT boot partition of `raw-bios` carries everything (docs/compat.md). The wrap is its
//! own action, so a changed `files:` entry re-runs the segment, the initrd, the disk and the
//! wrap, nothing upstream.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

use super::{MediaOptions, OutputFormat, OutputSpec, Parts};
use crate::actions::{ConvertAction, DiskFormat, disk_identity};

/// LinuxKit's `--size` default for the formats that have a size.
pub(crate) const DEFAULT_SIZE: u64 = 1 << 30;

/// Which raw disk a VM format wraps.
#[derive(Clone, Copy)]
enum Base {
    /// `raw-bios`, `--size` or [`DEFAULT_SIZE`].
    Bios,
    /// `raw-bios`, `--size` or [`DEFAULT_SIZE`] rounded up to a whole GiB, as GCE's image
    /// import requires.
    BiosWholeGib,
    /// `raw-efi`, `--size` or as small as its content.
    Efi,
}

/// One VM format.
pub(crate) struct Vm {
    name: &'static str,
    file: &'static str,
    base: Base,
    /// `None`: the raw disk itself.
    wrap: Option<DiskFormat>,
}

pub(crate) const QCOW2_BIOS: Vm = Vm {
    name: "qcow2-bios",
    file: ".qcow2",
    base: Base::Bios,
    wrap: Some(DiskFormat::Qcow2),
};
pub(crate) const QCOW2_EFI: Vm = Vm {
    name: "qcow2-efi",
    file: "-efi.qcow2",
    base: Base::Efi,
    wrap: Some(DiskFormat::Qcow2),
};
pub(crate) const AWS: Vm = Vm {
    name: "aws",
    file: ".raw",
    base: Base::Bios,
    wrap: None,
};
pub(crate) const VHD: Vm = Vm {
    name: "vhd",
    file: ".vhd",
    base: Base::Bios,
    wrap: Some(DiskFormat::VhdFixed),
};
pub(crate) const DYNAMIC_VHD: Vm = Vm {
    name: "dynamic-vhd",
    file: ".vhd",
    base: Base::Bios,
    wrap: Some(DiskFormat::VhdDynamic),
};
pub(crate) const GCP: Vm = Vm {
    name: "gcp",
    file: ".img.tar.gz",
    base: Base::BiosWholeGib,
    wrap: Some(DiskFormat::GcpTarGz),
};
pub(crate) const VMDK: Vm = Vm {
    name: "vmdk",
    file: ".vmdk",
    base: Base::Bios,
    wrap: Some(DiskFormat::Vmdk),
};

impl OutputFormat for Vm {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        vec![media.boot_image.clone()]
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        // A sized raw-bios disk's blob leaves out its trailing zeros: `len` is its length.
        let (disk, identity, len) = match self.base {
            Base::Bios => {
                let size = parts.media.size.unwrap_or(DEFAULT_SIZE);
                let disk = super::raw_bios::disk(g, parts, Some(size));
                (disk, disk_identity("raw-bios", Some(size)), Some(size))
            }
            Base::BiosWholeGib => {
                let size = parts
                    .media
                    .size
                    .unwrap_or(DEFAULT_SIZE)
                    .next_multiple_of(1 << 30);
                let disk = super::raw_bios::disk(g, parts, Some(size));
                (disk, disk_identity("raw-bios", Some(size)), Some(size))
            }
            Base::Efi => {
                let disk = super::raw_efi::disk(g, parts, parts.media.size);
                (disk, disk_identity("raw-efi", parts.media.size), None)
            }
        };
        let Some(disk) = disk else {
            return Vec::new();
        };
        let file = format!("{name}{}", self.file);
        match self.wrap {
            None => vec![OutputSpec::new(file, disk, "disk").padded_to(len)],
            Some(to) => {
                let convert = ConvertAction {
                    to,
                    disk: identity,
                    disk_len: len,
                };
                let node = g.add_wired(Arc::new(convert), &[disk]);
                vec![OutputSpec::new(file, g.only(node), "disk")]
            }
        }
    }
}
