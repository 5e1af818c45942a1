//! `kernel+squashfs` and `kernel+erofs`: `NAME-kernel`, `NAME-cmdline` and the root file
//! system without `boot/` as `NAME-squashfs.img` or `NAME-erofs.img`, for systems that mount
//! their root from a read-only image instead of running from an initrd. Needs no initrd; a
//! config without a kernel writes the image alone.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

use super::{OutputFormat, OutputSpec, Parts};
use crate::actions::{FsImage, FsImageAction};

pub(crate) struct KernelFs {
    name: &'static str,
    fs: FsImage,
    suffix: &'static str,
}

pub(crate) const KERNEL_SQUASHFS: KernelFs = KernelFs {
    name: "kernel+squashfs",
    fs: FsImage::Squashfs,
    suffix: "-squashfs.img",
};
pub(crate) const KERNEL_EROFS: KernelFs = KernelFs {
    name: "kernel+erofs",
    fs: FsImage::Erofs,
    suffix: "-erofs.img",
};

impl OutputFormat for KernelFs {
    fn name(&self) -> &'static str {
        self.name
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let node = g.add_wired(
            Arc::new(FsImageAction { fs: self.fs }),
            &parts.rootfs_trees(),
        );
        let mut outputs = Vec::new();
        if let Some(kernel) = parts.kernel {
            outputs.push(OutputSpec::new(
                format!("{name}-kernel"),
                kernel.kernel,
                "kernel",
            ));
            outputs.push(OutputSpec::new(
                format!("{name}-cmdline"),
                kernel.cmdline,
                "cmdline",
            ));
        }
        outputs.push(OutputSpec::new(
            format!("{name}{}", self.suffix),
            g.only(node),
            "image",
        ));
        outputs
    }
}
