//! `tar-kernel-initrd`: `NAME-initrd.tar` holding `kernel`, `initrd.img`, `cmdline` and
//! `ucode.cpio` (each only if not empty). Nothing without a kernel, as in LinuxKit.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

use super::{OutputFormat, OutputSpec, Parts};
use crate::actions::KernelInitrdTarAction;

pub(crate) struct TarKernelInitrd;

impl OutputFormat for TarKernelInitrd {
    fn name(&self) -> &'static str {
        "tar-kernel-initrd"
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let Some(kernel) = parts.kernel else {
            return Vec::new();
        };
        let initrd = parts.initrd(g);
        let mut inputs = vec![kernel.kernel, initrd, kernel.cmdline];
        inputs.extend(kernel.ucode);
        let tar = g.add_wired(Arc::new(KernelInitrdTarAction), &inputs);
        vec![OutputSpec::new(
            format!("{name}-initrd.tar"),
            g.only(tar),
            "tar",
        )]
    }
}
