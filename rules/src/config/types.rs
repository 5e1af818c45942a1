//! The typed linuxkit.yml model.
//!
//! Every optional field is an `Option` so that "not written" and "written empty" stay apart:
//! container settings resolve as yml > image label > image config > default, and only a value
//! that was written takes part.

use std::collections::BTreeMap;

use super::error::{ConfigWarning, Span, Spanned};

/// A list of strings with the span of the list and of each item.
pub type StringList = Spanned<Vec<Spanned<String>>>;

/// One linuxkit.yml file, or several merged with [`super::merge`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The `kernel` section, if written.
    pub kernel: Option<Kernel>,
    /// `init` image references, in order.
    pub init: Vec<Spanned<String>>,
    /// `onboot` containers, in order.
    pub onboot: Vec<ImageSpec>,
    /// `onshutdown` containers, in order.
    pub onshutdown: Vec<ImageSpec>,
    /// `services` containers, in order (names unique).
    pub services: Vec<ImageSpec>,
    /// `files` entries, in order.
    pub files: Vec<FileSpec>,
    /// `volumes`, in order (names unique).
    pub volumes: Vec<Volume>,
    /// Accepted-but-ignored input worth reporting (for example `trust`).
    pub warnings: Vec<ConfigWarning>,
}

/// The `kernel` section. Use the accessor methods for LinuxKit's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// Where the section starts.
    pub span: Span,
    /// OCI image holding the kernel.
    pub image: Option<Spanned<String>>,
    /// Kernel command line.
    pub cmdline: Option<Spanned<String>>,
    /// Kernel file name in the image (default `kernel`).
    pub binary: Option<Spanned<String>>,
    /// Modules tarball in the image: unset means `kernel.tar`; `""` or `none` means none.
    pub tar: Option<Spanned<String>>,
    /// CPU microcode cpio in the image: unset or `""` means none.
    pub ucode: Option<Spanned<String>>,
}

impl Kernel {
    /// The kernel image reference; `None` when unset or empty (then there is no kernel).
    pub fn image(&self) -> Option<&str> {
        self.image
            .as_ref()
            .map(|s| s.value.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The command line (`""` when unset).
    pub fn cmdline(&self) -> &str {
        self.cmdline.as_ref().map_or("", |s| s.value.as_str())
    }

    /// The kernel file name (`kernel` when unset or empty).
    pub fn binary(&self) -> &str {
        self.binary
            .as_ref()
            .map(|s| s.value.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("kernel")
    }

    /// The modules tarball name, or `None` when disabled with `""` or `none`.
    pub fn tar(&self) -> Option<&str> {
        match self.tar.as_ref().map(|s| s.value.as_str()) {
            None => Some("kernel.tar"),
            Some("" | "none") => None,
            Some(name) => Some(name),
        }
    }

    /// The microcode cpio name, or `None` when unset or `""`.
    pub fn ucode(&self) -> Option<&str> {
        self.ucode
            .as_ref()
            .map(|s| s.value.as_str())
            .filter(|s| !s.is_empty())
    }
}

/// An image object from `onboot`, `onshutdown` or `services`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Where the object starts.
    pub span: Span,
    /// Container name (directory name, containerd id, uid/gid name).
    pub name: Spanned<String>,
    /// Image reference as written.
    pub image: Spanned<String>,
    /// Everything else.
    pub config: ImageConfig,
}

impl ImageSpec {
    /// The image reference expanded to its canonical `docker.io/…` form.
    pub fn reference(&self) -> String {
        super::expand_ref(&self.image.value)
    }
}

/// The settings of an image object that an `org.mobyproject.config` label may also carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `capabilities`: replaces everything else.
    pub capabilities: Option<StringList>,
    /// `capabilities.add`: appended to the label's capabilities.
    pub capabilities_add: Option<StringList>,
    /// `ambient` capabilities.
    pub ambient: Option<StringList>,
    /// `mounts`: full mount objects.
    pub mounts: Option<Spanned<Vec<Mount>>>,
    /// `binds`: replaces everything else.
    pub binds: Option<Spanned<Vec<Bind>>>,
    /// `binds.add`: appended to the label's binds.
    pub binds_add: Option<Spanned<Vec<Bind>>>,
    /// `tmpfs` mounts.
    pub tmpfs: Option<Spanned<Vec<Tmpfs>>>,
    /// `devices`.
    pub devices: Option<Spanned<Vec<Device>>>,
    /// `command`: the whole argv.
    pub command: Option<StringList>,
    /// `env`: replaces the image's environment.
    pub env: Option<StringList>,
    /// `cwd` (an empty value counts as unset).
    pub cwd: Option<Spanned<String>>,
    /// `net` namespace (an empty value counts as unset).
    pub net: Option<Spanned<String>>,
    /// `pid` namespace (an empty value counts as unset).
    pub pid: Option<Spanned<String>>,
    /// `ipc` namespace (an empty value counts as unset).
    pub ipc: Option<Spanned<String>>,
    /// `uts` namespace (an empty value counts as unset).
    pub uts: Option<Spanned<String>>,
    /// `userns` (an empty value counts as unset).
    pub userns: Option<Spanned<String>>,
    /// `hostname` (an empty value counts as unset).
    pub hostname: Option<Spanned<String>>,
    /// `readonly` root filesystem.
    pub readonly: Option<Spanned<bool>>,
    /// `maskedPaths`.
    pub masked_paths: Option<StringList>,
    /// `readonlyPaths`.
    pub readonly_paths: Option<StringList>,
    /// `uid`: a number or a container name.
    pub uid: Option<Spanned<IdValue>>,
    /// `gid`: a number or a container name.
    pub gid: Option<Spanned<IdValue>>,
    /// `additionalGids`.
    pub additional_gids: Option<Spanned<Vec<Spanned<IdValue>>>>,
    /// `noNewPrivileges`.
    pub no_new_privileges: Option<Spanned<bool>>,
    /// `oomScoreAdj`.
    pub oom_score_adj: Option<Spanned<i64>>,
    /// `rootfsPropagation` (an empty value overrides the label).
    pub rootfs_propagation: Option<Spanned<String>>,
    /// `cgroupsPath` (an empty value overrides the label).
    pub cgroups_path: Option<Spanned<String>>,
    /// `resources`, validated and normalised to OCI `LinuxResources` JSON (OCI key names in
    /// runtime-spec field order).
    pub resources: Option<Spanned<serde_json::Value>>,
    /// `sysctl`.
    pub sysctl: Option<Spanned<BTreeMap<String, String>>>,
    /// `rlimits`, parsed.
    pub rlimits: Option<Spanned<Vec<Rlimit>>>,
    /// `uidMappings`.
    pub uid_mappings: Option<Spanned<Vec<IdMapping>>>,
    /// `gidMappings`.
    pub gid_mappings: Option<Spanned<Vec<IdMapping>>>,
    /// `annotations`.
    pub annotations: Option<Spanned<BTreeMap<String, String>>>,
    /// `runtime`: settings for the in-VM service runner.
    pub runtime: Option<Runtime>,
}

/// A uid or gid as written: a number or the name of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdValue {
    /// A numeric id.
    Number(i64),
    /// `""`, `root` or a container name.
    Name(String),
}

/// An OCI mount object as written (empty strings mean "not given").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where the object starts.
    pub span: Span,
    /// `destination`.
    pub destination: String,
    /// `type`.
    pub mount_type: String,
    /// `source`.
    pub source: String,
    /// `options`.
    pub options: Vec<String>,
    /// `uidmappings` (also accepted: `uidMappings`).
    pub uid_mappings: Vec<IdMapping>,
    /// `gidmappings` (also accepted: `gidMappings`).
    pub gid_mappings: Vec<IdMapping>,
}

/// A container mount after LinuxKit's type, source and destination defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedMount {
    /// Mount point.
    pub destination: String,
    /// File system type.
    pub mount_type: String,
    /// Source.
    pub source: String,
}

impl Mount {
    /// Applies LinuxKit's inference: an empty type comes from a well-known source (`proc`,
    /// `sysfs`, …) or is `tmpfs` for `/dev`; an empty source is the type; an empty destination
    /// is the type's usual mount point.
    pub fn resolve(&self) -> Result<ResolvedMount, String> {
        let mut mount_type = self.mount_type.clone();
        if mount_type.is_empty() {
            if matches!(
                self.source.as_str(),
                "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup"
            ) {
                mount_type = self.source.clone();
            } else if self.destination == "/dev" {
                mount_type = "tmpfs".to_owned();
            } else {
                return Err(format!(
                    "mount for destination `{}` is missing `type` (it can only be inferred for \
                     the sources mqueue, devpts, proc, sysfs and cgroup, or for /dev)",
                    self.destination
                ));
            }
        }
        let source = if self.source.is_empty() {
            mount_type.clone()
        } else {
            self.source.clone()
        };
        let destination = if self.destination.is_empty() {
            let default = match mount_type.as_str() {
                "proc" => "/proc",
                "devpts" => "/dev/pts",
                "sysfs" => "/sys",
                "cgroup" => "/sys/fs/cgroup",
                "mqueue" => "/dev/mqueue",
                _ => {
                    return Err(format!(
                        "mount of type `{mount_type}` is missing `destination`"
                    ));
                }
            };
            default.to_owned()
        } else {
            self.destination.clone()
        };
        Ok(ResolvedMount {
            destination,
            mount_type,
            source,
        })
    }
}

/// A uid/gid mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMapping {
    /// `containerID`.
    pub container_id: u32,
    /// `hostID`.
    pub host_id: u32,
    /// `size`.
    pub size: u32,
}

/// A `binds` entry, `source:destination[:options]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// Where it was written.
    pub span: Span,
    /// Host path, or a volume name (no leading `/`).
    pub source: String,
    /// Container path.
    pub destination: String,
    /// Comma-separated options, when given.
    pub options: Option<Vec<String>>,
}

impl Bind {
    /// Whether the source names a volume rather than a host path.
    pub fn is_volume(&self) -> bool {
        !self.source.starts_with('/')
    }
}

/// A `tmpfs` entry, `destination[:options]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where it was written.
    pub span: Span,
    /// Mount point.
    pub destination: String,
    /// Comma-separated options, when given.
    pub options: Option<Vec<String>>,
}

/// A `devices` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Where it was written.
    pub span: Span,
    /// Device path, or `all` for a whole class (cgroup rule only).
    pub path: String,
    /// `b`, `c`, …
    pub dev_type: String,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// File mode (required unless `path` is `all`).
    pub mode: Option<u32>,
}

/// An `rlimits` entry, `name,soft,hard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// Where it was written.
    pub span: Span,
    /// `RLIMIT_*` name.
    pub kind: String,
    /// Soft limit (`unlimited` is `u64::MAX`).
    pub soft: u64,
    /// Hard limit (`unlimited` is `u64::MAX`).
    pub hard: u64,
}

/// The `runtime` object, consumed by the service runner in the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    /// Where the object starts.
    pub span: Span,
    /// `cgroups` to create.
    pub cgroups: Option<StringList>,
    /// `mounts` in the root namespace.
    pub mounts: Option<Spanned<Vec<Mount>>>,
    /// `mkdir` in the root namespace.
    pub mkdir: Option<StringList>,
    /// `interfaces` to move or create.
    pub interfaces: Option<Spanned<Vec<Interface>>>,
    /// `bindNS` paths.
    pub bind_ns: BindNamespaces,
    /// containerd `namespace`.
    pub namespace: Option<Spanned<String>>,
}

/// `runtime.bindNS`: where to bind-mount each namespace of the container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindNamespaces {
    /// `cgroup`.
    pub cgroup: Option<Spanned<String>>,
    /// `ipc`.
    pub ipc: Option<Spanned<String>>,
    /// `mnt`.
    pub mnt: Option<Spanned<String>>,
    /// `net`.
    pub net: Option<Spanned<String>>,
    /// `pid`.
    pub pid: Option<Spanned<String>>,
    /// `user`.
    pub user: Option<Spanned<String>>,
    /// `uts`.
    pub uts: Option<Spanned<String>>,
}

/// A `runtime.interfaces` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Where it was written.
    pub span: Span,
    /// Interface name.
    pub name: String,
    /// Kind of interface to create (`veth`, `wireguard`, …).
    pub add: String,
    /// veth peer name.
    pub peer: String,
    /// Create in the root namespace first.
    pub create_in_root: bool,
}

/// `files[].metadata`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataFormat {
    /// The merged config as YAML.
    Yaml,
    /// The merged config as 4-space-indented JSON.
    Json,
}

/// What a `files` entry produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileContent<'a> {
    /// A directory.
    Directory,
    /// A symlink to the target.
    Symlink(&'a str),
    /// Inline contents.
    Contents(&'a str),
    /// A host file (`~/` still unexpanded, relative to the working directory).
    Source(&'a str),
    /// The merged configuration.
    Metadata(MetadataFormat),
}

/// A `files` entry. The parser guarantees exactly one content source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Where the object starts.
    pub span: Span,
    /// Path as written.
    pub path: Spanned<String>,
    /// `directory: true`.
    pub directory: bool,
    /// Symlink target.
    pub symlink: Option<Spanned<String>>,
    /// Inline contents (may be empty).
    pub contents: Option<Spanned<String>>,
    /// Host source path.
    pub source: Option<Spanned<String>>,
    /// Write the merged configuration.
    pub metadata: Option<Spanned<MetadataFormat>>,
    /// Skip the entry if `source` cannot be read.
    pub optional: bool,
    /// Mode bits.
    pub mode: Option<Spanned<u32>>,
    /// Owner.
    pub uid: Option<Spanned<IdValue>>,
    /// Group.
    pub gid: Option<Spanned<IdValue>>,
}

impl FileSpec {
    /// The archive path: the written path without its leading `/`.
    pub fn archive_path(&self) -> &str {
        self.path.value.trim_start_matches('/')
    }

    /// The mode: as written, else 0700 for directories and 0600 otherwise.
    pub fn effective_mode(&self) -> u32 {
        match &self.mode {
            Some(mode) => mode.value,
            None if self.directory => 0o700,
            None => 0o600,
        }
    }

    /// The mode of implicit parent directories: each rwx triplet with any bit set gains `x`.
    pub fn parent_dir_mode(&self) -> u32 {
        let mut mode = self.effective_mode();
        for mask in [0o700, 0o070, 0o007] {
            if mode & mask != 0 {
                mode |= mask & 0o111;
            }
        }
        mode
    }

    /// What the entry produces.
    pub fn content(&self) -> FileContent<'_> {
        if self.directory {
            FileContent::Directory
        } else if let Some(target) = &self.symlink {
            FileContent::Symlink(&target.value)
        } else if let Some(contents) = &self.contents {
            FileContent::Contents(&contents.value)
        } else if let Some(source) = &self.source {
            FileContent::Source(&source.value)
        } else if let Some(format) = &self.metadata {
            FileContent::Metadata(format.value)
        } else {
            // The parser rejects entries without content; an empty file is the safe reading.
            FileContent::Contents("")
        }
    }
}

/// `volumes[].format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VolumeFormat {
    /// The flattened image filesystem (default).
    #[default]
    Filesystem,
    /// An OCI image layout.
    Oci,
}

/// A `volumes` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Where the object starts.
    pub span: Span,
    /// Name, matching `^[a-z0-9_-]+$`.
    pub name: Spanned<String>,
    /// Image to fill it from, if any.
    pub image: Option<Spanned<String>>,
    /// Containers may only bind it with `ro`.
    pub readonly: bool,
    /// Content layout.
    pub format: VolumeFormat,
    /// Platforms to include (only for `oci`).
    pub platforms: Vec<Spanned<String>>,
}

impl Volume {
    /// `/containers/volumes/<name>`.
    pub fn base_dir(&self) -> String {
        format!("/containers/volumes/{}", self.name.value)
    }

    /// `/containers/volumes/<name>/merged`: what containers bind.
    pub fn merged_dir(&self) -> String {
        format!("{}/merged", self.base_dir())
    }
}
