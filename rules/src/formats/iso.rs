//! The ISO formats, after LinuxKit's `mkimage-iso-*` tools (layouts in
//! [`crate::actions::IsoLayout`] and docs/formats.md):
//!
//! - `iso-bios`: `NAME.iso`, the root file system with ISOLINUX, bootable from CD and, being
//!   isohybrid, as a disk;
//! - `iso-efi`: `NAME-efi.iso`, the root file system with GRUB as the El Torito EFI image;
//! - `iso-efi-initrd`: `NAME-efi-initrd.iso`, the kernel and initrd with GRUB;
//! - `kernel+iso`: `NAME-kernel`, `NAME-cmdline` and `NAME.iso`, the root file system without
//!   a boot loader.
//!
//! The boot formats need a kernel, as in LinuxKit; without one they write nothing.

use std::sync::Arc;

use lkb_engine::{GraphBuilder, Out};

use super::{MediaOptions, OutputFormat, OutputSpec, Parts};
use crate::actions::{IsoAction, IsoLayout};

/// One ISO format: its name, layout and file suffix.
pub(crate) struct Iso {
    name: &'static str,
    layout: IsoLayout,
    suffix: &'static str,
}

pub(crate) const ISO_BIOS: Iso = Iso {
    name: "iso-bios",
    layout: IsoLayout::Bios,
    suffix: ".iso",
};
pub(crate) const ISO_EFI: Iso = Iso {
    name: "iso-efi",
    layout: IsoLayout::Efi,
    suffix: "-efi.iso",
};
pub(crate) const ISO_EFI_INITRD: Iso = Iso {
    name: "iso-efi-initrd",
    layout: IsoLayout::EfiInitrd,
    suffix: "-efi-initrd.iso",
};
pub(crate) const KERNEL_ISO: Iso = Iso {
    name: "kernel+iso",
    layout: IsoLayout::Plain,
    suffix: ".iso",
};

impl OutputFormat for Iso {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        match self.layout {
            IsoLayout::Plain => Vec::new(),
            _ => vec![media.boot_image.clone()],
        }
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let Some(kernel) = parts.kernel else {
            return Vec::new();
        };
        let inputs: Vec<Out> = match self.layout {
            IsoLayout::Plain => parts.rootfs_trees(),
            IsoLayout::Bios | IsoLayout::Efi => {
                let Some(boot) = parts.boot_image() else {
                    return Vec::new();
                };
                let mut inputs = vec![boot, kernel.cmdline];
                inputs.extend(parts.rootfs_trees());
                inputs
            }
            IsoLayout::EfiInitrd => {
                let Some(boot) = parts.boot_image() else {
                    return Vec::new();
                };
                let initrd = parts.initrd(g);
                vec![boot, kernel.kernel, initrd, kernel.cmdline]
            }
        };
        let node = g.add_wired(
            Arc::new(IsoAction {
                layout: self.layout,
                boot_image: parts.media.boot_image.clone(),
            }),
            &inputs,
        );
        let iso = OutputSpec::new(format!("{name}{}", self.suffix), g.only(node), "iso");
        match self.layout {
            IsoLayout::Plain => vec![
                OutputSpec::new(format!("{name}-kernel"), kernel.kernel, "kernel"),
                OutputSpec::new(format!("{name}-cmdline"), kernel.cmdline, "cmdline"),
                iso,
            ],
            _ => vec![iso],
        }
    }
}
