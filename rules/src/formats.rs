//! Output formats. A new format is one variant of [`Format`] plus its lowering in
//! `Format::lower`.

use std::fmt;
use std::str::FromStr;

use lkb_engine::{GraphBuilder, NodeId};
use std::sync::Arc;

use crate::actions::{KernelInitrdTarAction, RootfsTarAction};

/// A LinuxKit output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `NAME-kernel`, `NAME-initrd.img`, `NAME-cmdline` (the default).
    KernelInitrd,
    /// `NAME.tar`: the whole root filesystem.
    Tar,
    /// `NAME-initrd.tar`: kernel, initrd.img, cmdline (and ucode.cpio) in one tar.
    TarKernelInitrd,
}

/// Formats LinuxKit has that lkb does not build yet; named in the error so users know.
const NOT_YET: &[&str] = &[
    "docker",
    "iso-bios",
    "iso-efi",
    "iso-efi-initrd",
    "raw-bios",
    "raw-efi",
    "qcow2-efi",
    "qcow2-bios",
    "kernel+squashfs",
    "kernel+erofs",
    "kernel+iso",
    "gcp",
    "vhd",
    "dynamic-vhd",
    "vmdk",
    "rpi3",
    "aws",
];

impl Format {
    pub const ALL: [Format; 3] = [Format::KernelInitrd, Format::Tar, Format::TarKernelInitrd];

    pub fn name(self) -> &'static str {
        match self {
            Format::KernelInitrd => "kernel+initrd",
            Format::Tar => "tar",
            Format::TarKernelInitrd => "tar-kernel-initrd",
        }
    }

    /// Adds this format's actions and returns its output files.
    pub(crate) fn lower(self, g: &mut GraphBuilder, name: &str, parts: &Parts) -> Vec<OutputSpec> {
        match self {
            Format::KernelInitrd => {
                let mut outs = Vec::new();
                if let Some(kernel) = parts.kernel {
                    outs.push(OutputSpec::new(format!("{name}-kernel"), kernel, "kernel"));
                }
                outs.push(OutputSpec::new(
                    format!("{name}-initrd.img"),
                    parts.initrd,
                    "initrd",
                ));
                if let Some(kernel) = parts.kernel.filter(|_| !parts.cmdline_empty) {
                    outs.push(OutputSpec::new(
                        format!("{name}-cmdline"),
                        kernel,
                        "cmdline",
                    ));
                }
                outs
            }
            Format::Tar => {
                let mut inputs = Vec::new();
                let mut artifacts = Vec::new();
                if let Some(kernel) = parts.kernel {
                    inputs.push(kernel);
                    artifacts.push("rootfs".to_string());
                }
                for (node, artifact) in &parts.trees {
                    inputs.push(*node);
                    artifacts.push(artifact.clone());
                }
                let tar = g.add(Arc::new(RootfsTarAction { artifacts }), &inputs);
                vec![OutputSpec::new(format!("{name}.tar"), tar, "tar")]
            }
            Format::TarKernelInitrd => match parts.kernel {
                Some(kernel) => {
                    let tar = g.add(Arc::new(KernelInitrdTarAction), &[kernel, parts.initrd]);
                    vec![OutputSpec::new(format!("{name}-initrd.tar"), tar, "tar")]
                }
                None => Vec::new(),
            },
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "output format `{0}` is not supported by lkb yet (supported: kernel+initrd, tar, tar-kernel-initrd)"
    )]
    NotYet(String),
    #[error("unknown output format `{name}`{}", match .nearest { Some(n) => format!("; did you mean `{n}`?"), None => String::new() })]
    Unknown {
        name: String,
        nearest: Option<String>,
    },
}

impl FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Format, FormatError> {
        if let Some(f) = Format::ALL.into_iter().find(|f| f.name() == s) {
            return Ok(f);
        }
        if NOT_YET.contains(&s) {
            return Err(FormatError::NotYet(s.to_string()));
        }
        let candidates = Format::ALL
            .iter()
            .map(|f| f.name())
            .chain(NOT_YET.iter().copied());
        Err(FormatError::Unknown {
            name: s.to_string(),
            nearest: crate::workspace::nearest(s, candidates.map(String::from)),
        })
    }
}

/// The lowered pieces every format draws from.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The kernel action (outputs `kernel`, `cmdline`, `ucode`?, trees `rootfs` and `initrd`).
    pub kernel: Option<NodeId>,
    pub cmdline_empty: bool,
    /// The initrd action.
    pub initrd: NodeId,
    /// Section trees after the kernel, in LinuxKit order: (node, artifact).
    pub trees: Vec<(NodeId, String)>,
}

/// One file a build writes: `file_name` in the output dir gets artifact `artifact` of `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub file_name: String,
    pub node: NodeId,
    pub artifact: String,
}

impl OutputSpec {
    fn new(file_name: String, node: NodeId, artifact: &str) -> OutputSpec {
        OutputSpec {
            file_name,
            node,
            artifact: artifact.to_string(),
        }
    }
}
