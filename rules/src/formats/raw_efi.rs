//! `raw-efi`: `NAME-efi.img`, a GPT disk whose EFI System Partition holds systemd-boot and the
//! build's unified kernel image (`EFI/Linux/linuxkit.efi`), booting it without a menu.
//! `--size` pads the disk (sparse). Nothing without a kernel.

use std::sync::Arc;

use lkb_engine::{GraphBuilder, Out};

use super::{MediaOptions, OutputFormat, OutputSpec, Parts};
use crate::actions::RawEfiAction;

pub(crate) struct RawEfi;

impl OutputFormat for RawEfi {
    fn name(&self) -> &'static str {
        "raw-efi"
    }

    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        vec![media.boot_image.clone()]
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        match disk(g, parts, parts.media.size) {
            Some(disk) => vec![OutputSpec::new(format!("{name}-efi.img"), disk, "disk")],
            None => Vec::new(),
        }
    }
}

/// The raw-efi disk of `size` (`qcow2-efi` wraps it). `None` without a kernel.
pub(crate) fn disk(g: &mut GraphBuilder, parts: &mut Parts, size: Option<u64>) -> Option<Out> {
    let boot = parts.boot_image()?;
    let uki = super::uki::uki(g, parts)?;
    let node = g.add_wired(
        Arc::new(RawEfiAction {
            boot_image: parts.media.boot_image.clone(),
            size,
        }),
        &[boot, uki],
    );
    Some(g.only(node))
}
