//! `kernel+initrd` (LinuxKit's default): `NAME-kernel`, `NAME-initrd.img` and, when the
//! command line is not empty, `NAME-cmdline`. `NAME-initrd.img` is the microcode and the
//! segments written one after the other by the output step; no action concatenates them.

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
        // Written straight from the segments (and the microcode): a changed segment costs
        // itself and one write of the file, not a copy of every segment into a new blob first.
        let initrd = parts.initrd_parts(g);
        outputs.push(OutputSpec::concat(format!("{name}-initrd.img"), &initrd));
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
