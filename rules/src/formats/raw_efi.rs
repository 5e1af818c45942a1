//! `raw-efi`: `NAME-efi.img`, a GPT disk whose EFI System Partition holds systemd-boot and the
//! build's unified kernel image (`EFI/Linux/linuxkit.efi`), booting it without a menu.
//! `--size` pads the disk (sparse). Nothing without a kernel.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

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
        let (Some(boot), Some(uki)) = (parts.boot_image(), super::uki::uki(g, parts)) else {
            return Vec::new();
        };
        let node = g.add_wired(
            Arc::new(RawEfiAction {
                boot_image: parts.media.boot_image.clone(),
                size: parts.media.size,
            }),
            &[boot, uki],
        );
        vec![OutputSpec::new(
            format!("{name}-efi.img"),
            g.only(node),
            "disk",
        )]
    }
}
