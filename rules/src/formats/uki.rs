//! `uki` (lkb's own; LinuxKit has none): `NAME.efi`, one unified kernel image — systemd's EFI
//! stub with the command line, kernel and initrd as PE sections. UEFI firmware boots it as
//! `EFI/BOOT/BOOTX64.EFI`, systemd-boot as a Type #2 entry; it can be signed for Secure Boot.
//! Nothing without a kernel, as `tar-kernel-initrd`.

use std::sync::Arc;

use lkb_engine::{GraphBuilder, Out};

use super::{MediaOptions, OutputFormat, OutputSpec, Parts};
use crate::actions::UkiAction;

pub(crate) struct Uki;

impl OutputFormat for Uki {
    fn name(&self) -> &'static str {
        "uki"
    }

    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        vec![media.boot_image.clone()]
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        match uki(g, parts) {
            Some(uki) => vec![OutputSpec::new(format!("{name}.efi"), uki, "uki")],
            None => Vec::new(),
        }
    }
}

/// The unified kernel image of the build (added once; `raw-efi` puts it on its ESP). `None`
/// without a kernel.
pub(crate) fn uki(g: &mut GraphBuilder, parts: &mut Parts) -> Option<Out> {
    let kernel = parts.kernel?;
    let boot = parts.boot_image()?;
    let initrd = parts.initrd(g);
    let mut inputs = vec![boot, kernel.kernel, kernel.cmdline, initrd];
    inputs.extend(kernel.ucode);
    let node = g.add_wired(
        Arc::new(UkiAction {
            boot_image: parts.media.boot_image.clone(),
        }),
        &inputs,
    );
    Some(g.only(node))
}
