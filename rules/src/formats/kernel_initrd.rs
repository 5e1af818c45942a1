//! `kernel+initrd` (LinuxKit's default): `NAME-kernel`, `NAME-initrd.img` and, when the
//! command line is not empty, `NAME-cmdline`.

use lkb_engine::GraphBuilder;

use super::{OutputFormat, OutputSpec, Parts};

pub(crate) struct KernelInitrd;

impl OutputFormat for KernelInitrd {
    fn name(&self) -> &'static str {
        "kernel+initrd"
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let mut outputs = Vec::new();
        if let Some(kernel) = parts.kernel {
            outputs.push(OutputSpec::new(
                format!("{name}-kernel"),
                kernel.kernel,
                "kernel",
            ));
        }
        let initrd = parts.initrd(g);
        outputs.push(OutputSpec::new(
            format!("{name}-initrd.img"),
            initrd,
            "initrd",
        ));
        if let Some(kernel) = parts.kernel.filter(|kernel| !kernel.cmdline_empty) {
            outputs.push(OutputSpec::new(
                format!("{name}-cmdline"),
                kernel.cmdline,
                "cmdline",
            ));
        }
        outputs
    }
}
