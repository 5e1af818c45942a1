//! Output formats (`--format`): each is one module holding a type that implements
//! [`OutputFormat`], registered with one line in [`REGISTRY`].
//!
//! A format lowers onto [`Parts`], the pieces every format draws from (the kernel's outputs,
//! the section trees in LinuxKit order, the initrd). Parts are added to the graph on demand:
//! the initrd and its cpio segments exist only when a requested format asks for
//! [`Parts::initrd`], so `-f tar` computes no initrd. A format returns the files it writes as
//! [`OutputSpec`]s, each naming the artifact it takes; the build asks the engine for exactly
//! those artifacts' actions and nothing else.

mod docker;
mod iso;
mod kernel_fs;
mod kernel_initrd;
mod raw_bios;
mod raw_efi;
mod tar;
mod tar_kernel_initrd;
mod uki;
mod vm;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use lkb_engine::{ArtifactKind, GraphBuilder, NodeId, Out};

use crate::actions::{InitrdAction, SegmentAction};
use crate::compress::Codec;

/// The image holding the boot loaders the boot-media formats install, when `lkb.toml` names
/// none (`[boot] image`). `examples/images/build.sh` builds it; its layout is in
/// docs/formats.md.
pub const DEFAULT_BOOT_IMAGE: &str = "localhost/lkb-examples/boot:1";

/// What the boot-media formats take besides the config: the boot loader image and the disk
/// size (`--size`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// The image whose files are the boot loaders (`[boot] image` in `lkb.toml`).
    pub boot_image: String,
    /// `--size` in bytes: the disk formats pad to it; `None` sizes the disk to its content.
    pub size: Option<u64>,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            boot_image: DEFAULT_BOOT_IMAGE.to_owned(),
            size: None,
        }
    }
}

/// Parses LinuxKit's `--size`: a number of MiB, or a number with an `M` (MiB) or `G` (GiB)
/// suffix (lkb also takes `K`, `T` and lower case). Returns bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&trimmed[..at], c.to_ascii_uppercase()),
        _ => (trimmed, 'M'),
    };
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => {
            return Err(format!(
                "`{text}`: the unit must be K, M, G or T (e.g. 1024M, 2G)"
            ));
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 1024M, 2G, or a number of MiB)"))?;
    if number == 0 {
        return Err(format!("`{text}`: the size must be more than zero"));
    }
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// One output format: its `--format` name, the images its own actions need, and how it lowers
/// onto the shared [`Parts`].
pub(crate) trait OutputFormat: Sync + 'static {
    /// The `--format` name, as LinuxKit spells it.
    fn name(&self) -> &'static str;

    /// Images the format's own actions read besides the config's (a boot loader's files, for
    /// the disk formats), as canonical references. They are resolved and pinned in `lkb.lock`
    /// with the config's images, and their file trees reach [`OutputFormat::lower`] through
    /// [`Parts::tool_image`].
    fn tool_images(&self, media: &MediaOptions) -> Vec<String> {
        let _ = media;
        Vec::new()
    }

    /// Adds the format's own actions and returns the files it writes for target `name`.
    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec>;
}

/// Every format lkb builds. A new format is a module beside the others and one line here.
const REGISTRY: &[&dyn OutputFormat] = &[
    &kernel_initrd::KernelInitrd,
    &kernel_fs::KERNEL_SQUASHFS,
    &kernel_fs::KERNEL_EROFS,
    &docker::Docker,
    &iso::KERNEL_ISO,
    &iso::ISO_BIOS,
    &iso::ISO_EFI,
    &iso::ISO_EFI_INITRD,
    &raw_bios::RawBios,
    &raw_efi::RawEfi,
    &tar::Tar,
    &tar_kernel_initrd::TarKernelInitrd,
    &uki::Uki,
    &vm::QCOW2_BIOS,
    &vm::QCOW2_EFI,
    &vm::AWS,
    &vm::VHD,
    &vm::DYNAMIC_VHD,
    &vm::VMDK,
    &vm::GCP,
];

/// Formats LinuxKit has that lkb does not build yet; named in the error so users know.
const NOT_YET: &[&str] = &["rpi3"];

/// A LinuxKit output format (`--format`), one of [`Format::all`].
#[derive(Clone, Copy)]
pub struct Format(&'static dyn OutputFormat);

impl Format {
    /// Every format lkb builds, in registration order.
    pub fn all() -> impl Iterator<Item = Format> {
        REGISTRY.iter().map(|format| Format(*format))
    }

    /// LinuxKit's default, `kernel+initrd`.
    pub fn default_format() -> Format {
        Format(&kernel_initrd::KernelInitrd)
    }

    /// The `--format` name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The images this format's own actions read; see [`OutputFormat::tool_images`].
    pub fn tool_images(self, media: &MediaOptions) -> Vec<String> {
        self.0.tool_images(media)
    }

    /// A format that is not registered, for tests of the format interface.
    #[cfg(test)]
    pub(crate) fn unregistered(format: &'static dyn OutputFormat) -> Format {
        Format(format)
    }

    pub(crate) fn lower(
        self,
        g: &mut GraphBuilder,
        name: &str,
        parts: &mut Parts,
    ) -> Vec<OutputSpec> {
        self.0.lower(g, name, parts)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Format {}

impl Hash for Format {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl PartialOrd for Format {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Format {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({})", self.name())
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("output format `{name}` is not supported by lkb yet (supported: {supported})")]
    NotYet { name: String, supported: String },
    #[error("unknown output format `{name}`{}", match .nearest { Some(n) => format!("; did you mean `{n}`?"), None => String::new() })]
    Unknown {
        name: String,
        nearest: Option<String>,
    },
}

impl FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Format, FormatError> {
        if let Some(format) = Format::all().find(|f| f.name() == s) {
            return Ok(format);
        }
        if NOT_YET.contains(&s) {
            let supported = Format::all().map(Format::name).collect::<Vec<_>>();
            return Err(FormatError::NotYet {
                name: s.to_string(),
                supported: supported.join(", "),
            });
        }
        let candidates = Format::all()
            .map(Format::name)
            .chain(NOT_YET.iter().copied());
        Err(FormatError::Unknown {
            name: s.to_string(),
            nearest: crate::workspace::nearest(s, candidates.map(String::from)),
        })
    }
}

/// The kernel's artifacts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelParts {
    pub kernel: Out,
    pub cmdline: Out,
    pub ucode: Option<Out>,
    /// `boot/kernel`, `boot/cmdline`, `boot/ucode.cpio` and the modules: what the root file
    /// system gets.
    pub rootfs: Out,
    /// The modules (and `boot/`): what the initrd gets.
    pub initrd: Out,
    pub cmdline_empty: bool,
}

/// A tree the initrd and the root file system get, in LinuxKit order, and what it holds (for
/// the segment's label).
#[derive(Debug, Clone)]
pub(crate) struct SectionTree {
    pub tree: Out,
    pub what: String,
}

/// The lowered pieces every format draws from. The initrd is added on first use.
#[derive(Debug)]
pub(crate) struct Parts {
    pub kernel: Option<KernelParts>,
    /// Section trees after the kernel, in LinuxKit order.
    pub trees: Vec<SectionTree>,
    pub codec: Codec,
    pub media: MediaOptions,
    /// The last of [`Parts::trees`] is the SBOM (`sbom.spdx.json`), which LinuxKit writes
    /// after everything else, the docker format's `Dockerfile` included.
    pub sbom_last: bool,
    initrd: Option<Out>,
    /// The microcode (if any) and the segments, in initrd order, once added.
    initrd_parts: Option<Vec<(Out, &'static str)>>,
    /// The file trees of the formats' tool images, by canonical reference.
    tools: BTreeMap<String, Out>,
}

impl Parts {
    pub(crate) fn new(
        kernel: Option<KernelParts>,
        trees: Vec<SectionTree>,
        codec: Codec,
        media: MediaOptions,
        sbom_last: bool,
    ) -> Self {
        Parts {
            kernel,
            trees,
            codec,
            media,
            sbom_last,
            initrd: None,
            initrd_parts: None,
            tools: BTreeMap::new(),
        }
    }

    /// Makes the file tree of a tool image available to formats.
    pub(crate) fn add_tool_image(&mut self, reference: String, tree: Out) {
        self.tools.insert(reference, tree);
    }

    /// The file tree of the boot image (`[boot] image`), for formats that list it in their
    /// [`OutputFormat::tool_images`].
    pub(crate) fn boot_image(&self) -> Option<Out> {
        self.tool_image(&self.media.boot_image)
    }

    /// The file tree of `reference`, one of the format's [`OutputFormat::tool_images`].
    pub(crate) fn tool_image(&self, reference: &str) -> Option<Out> {
        self.tools.get(reference).copied()
    }

    /// What the initrd is made of, in order: the microcode (if any), then one compressed cpio
    /// segment per tree (the kernel's first). Added to the graph the first time a format asks.
    /// Each with its artifact's name (`ucode`, `segment`).
    pub(crate) fn initrd_parts(&mut self, g: &mut GraphBuilder) -> Vec<(Out, &'static str)> {
        if let Some(parts) = &self.initrd_parts {
            return parts.clone();
        }
        let mut parts = Vec::new();
        parts.extend(
            self.kernel
                .and_then(|kernel| kernel.ucode)
                .map(|ucode| (ucode, "ucode")),
        );
        let kernel_tree = self.kernel.map(|kernel| SectionTree {
            tree: kernel.initrd,
            what: "kernel".to_owned(),
        });
        for section in kernel_tree.iter().chain(&self.trees) {
            let segment = g.add_wired(
                Arc::new(SegmentAction {
                    codec: self.codec,
                    what: section.what.clone(),
                }),
                &[section.tree],
            );
            parts.push((g.only(segment), "segment"));
        }
        self.initrd_parts = Some(parts.clone());
        parts
    }

    /// The initrd as one blob ([`Parts::initrd_parts`] concatenated), for formats that put it
    /// inside another file. Added to the graph the first time a format asks for it.
    pub(crate) fn initrd(&mut self, g: &mut GraphBuilder) -> Out {
        if let Some(initrd) = self.initrd {
            return initrd;
        }
        let ucode = self.kernel.and_then(|kernel| kernel.ucode);
        let inputs: Vec<Out> = self
            .initrd_parts(g)
            .into_iter()
            .map(|(out, _)| out)
            .collect();
        let node = g.add_wired(
            Arc::new(InitrdAction {
                ucode: ucode.is_some(),
            }),
            &inputs,
        );
        let initrd = g.only(node);
        self.initrd = Some(initrd);
        initrd
    }

    /// The trees of the whole root file system, in order: the kernel's `rootfs`, then every
    /// section tree.
    pub(crate) fn rootfs_trees(&self) -> Vec<Out> {
        let kernel = self.kernel.map(|kernel| kernel.rootfs);
        kernel
            .into_iter()
            .chain(self.trees.iter().map(|section| section.tree))
            .collect()
    }

    /// [`Parts::rootfs_trees`] with `extra` after every section and the `files:` entries but
    /// before the SBOM, where LinuxKit puts the docker format's `Dockerfile`.
    pub(crate) fn rootfs_trees_with(&self, extra: Out) -> Vec<Out> {
        let mut trees = self.rootfs_trees();
        let at = trees.len() - usize::from(self.sbom_last);
        trees.insert(at, extra);
        trees
    }
}

/// One file a build writes: `file_name` in the output dir gets artifact `artifact` (of kind
/// `kind`) of `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub file_name: String,
    pub node: NodeId,
    pub artifact: String,
    pub kind: ArtifactKind,
    /// The file's length when the artifact leaves out trailing zeros (a sized disk): the
    /// output is extended to it with a hole.
    pub len: Option<u64>,
    /// Artifacts written after the first, in order: the file is their concatenation. The
    /// initrd of `kernel+initrd` is written this way straight from its segments, so no action
    /// copies them into one blob first.
    pub more: Vec<(NodeId, String)>,
}

impl OutputSpec {
    /// The file `file_name`, holding the artifact `out` whose name is `artifact`.
    pub(crate) fn new(file_name: String, out: Out, artifact: &str) -> OutputSpec {
        OutputSpec {
            file_name,
            node: out.node(),
            artifact: artifact.to_owned(),
            kind: out.kind(),
            len: None,
            more: Vec::new(),
        }
    }

    /// The file holding the artifacts `parts` (each with its name) one after the other.
    pub(crate) fn concat(file_name: String, parts: &[(Out, &str)]) -> OutputSpec {
        let ((first, artifact), rest) = parts.split_first().expect("at least one part");
        OutputSpec {
            more: rest
                .iter()
                .map(|(part, artifact)| (part.node(), (*artifact).to_owned()))
                .collect(),
            ..OutputSpec::new(file_name, *first, artifact)
        }
    }

    /// Every node whose artifact the file holds, the first one first.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.node).chain(self.more.iter().map(|(node, _)| *node))
    }

    /// Every (node, artifact) the file holds, in order.
    pub fn parts(&self) -> impl Iterator<Item = (NodeId, &str)> + '_ {
        std::iter::once((self.node, self.artifact.as_str())).chain(
            self.more
                .iter()
                .map(|(node, artifact)| (*node, artifact.as_str())),
        )
    }

    /// The same output, extended to `len` bytes when written (see [`OutputSpec::len`]).
    pub(crate) fn padded_to(self, len: Option<u64>) -> OutputSpec {
        OutputSpec { len, ..self }
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_as_linuxkit_reads_them() {
        assert_eq!(parse_size("1024"), Ok(1 << 30), "a bare number is MiB");
        assert_eq!(parse_size("1024M"), Ok(1 << 30));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        for bad in ["", "G", "1.5G", "-1M", "0", "10Q", "99999999999T"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
