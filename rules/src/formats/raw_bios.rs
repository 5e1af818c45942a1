//! `raw-bios`: `NAME-bios.img`, an MBR disk with one active FAT partition at LBA 2048 holding
//! SYSLINUX (installed in-process), `syslinux.cfg`, `kernel` and `initrd.img`, as LinuxKit's
//! `mkimage-raw-bios` lays it out. `--size` pads the disk (sparse). Nothing without a kernel.

use std::sync::Arc;

use lkb_engine::{GraphBuilder, Out};

use super::{MediaOptions, OutputFormat, OutputSpec, Parts};
use crate::actions::RawBiosAction;

pub(crate) struct RawBios;

impl OutputFormat for RawBios {
    fn name(&self) -> &'static str {
        "raw-bios"
    }

    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        vec![media.boot_image.clone()]
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        match disk(g, parts, parts.media.size) {
            // With `--size` the blob stops at the last data byte; the file gets the size.
            Some(disk) => vec![
                OutputSpec::new(format!("{name}-bios.img"), disk, "disk")
                    .padded_to(parts.media.size),
            ],
            None => Vec::new(),
        }
    }
}

/// The raw-bios disk of `size` (the VM formats wrap it); with a size, its blob leaves out the
/// disk's trailing zeros (see [`RawBiosAction`]). `None` without a kernel.
pub(crate) fn disk(g: &mut GraphBuilder, parts: &mut Parts, size: Option<u64>) -> Option<Out> {
    let (kernel, boot) = (parts.kernel?, parts.boot_image()?);
    let initrd = parts.initrd(g);
    let node = g.add_wired(
        Arc::new(RawBiosAction {
            boot_image: parts.media.boot_image.clone(),
            size,
        }),
        &[boot, kernel.kernel, initrd, kernel.cmdline],
    );
    Some(g.only(node))
}
