//! Command-line arguments (clap derive). Commands are thin wrappers over `ops`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lkb",
    version,
    about = "Build LinuxKit images from a content-addressed build graph",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Store directory [default: $XDG_CACHE_HOME/lkb, else ~/.cache/lkb]
    #[arg(long, global = true, env = "LKB_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// How to show progress on stderr
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise
    Auto,
    /// One line per finished action
    Plain,
    /// Versioned JSON lines (see docs/cli.md)
    Json,
    /// Nothing but the summary
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets (labels like //examples:sshd, patterns like //examples/..., or yml files)
    Build(BuildArgs),
    /// Build, printing one line per executed action saying why it ran
    Explain(BuildArgs),
    /// Print the action graph of targets (kinds, short keys, cached or not)
    Query(QueryArgs),
    /// Print the merged, validated, defaulted config of targets
    Config(ConfigArgs),
    /// Inspect and manage the store
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Boot a build in QEMU: `lkb run qemu out/sshd`, or a label, built first
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// `qemu` (the only backend so far, and the default), then what to boot: a build's path
    /// prefix (lkb-out/examples/sshd for sshd-kernel, sshd-initrd.img or sshd-squashfs.img,
    /// sshd-cmdline), its -kernel file, an .iso, a disk (.img, .raw, .qcow2, .vhd, .vmdk), a
    /// unified kernel image (.efi), or a label such as //examples:sshd to build first
    #[arg(required = true, num_args = 1..=2, value_name = "[qemu] IMAGE")]
    pub image: Vec<String>,
    /// Virtual CPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory in MB
    #[arg(long, default_value_t = 1024, value_name = "MB")]
    pub mem: u32,
    /// Accelerator [default: kvm when /dev/kvm is usable, else tcg]
    #[arg(long, value_name = "kvm|tcg")]
    pub accel: Option<String>,
    /// The QEMU binary [default: qemu-system-x86_64, or qemu-system-aarch64 for --arch arm64]
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<String>,
    /// Guest architecture: amd64 or arm64 [default: the host's]
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Open a display window (the serial console stays on the terminal)
    #[arg(long, conflicts_with = "detached")]
    pub gui: bool,
    /// Print the QEMU command line and exit without starting it
    #[arg(long)]
    pub dry_run: bool,
    /// Stop with success at the first console line matching REGEX
    #[arg(long, value_name = "REGEX")]
    pub until: Option<String>,
    /// Stop with an error (and the last 40 console lines) after DURATION (90s, 5m, 1h)
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Also write the console to FILE
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,
    /// A disk: [file=]PATH[,size=1G][,format=qcow2|raw], created with qemu-img when missing
    /// (repeatable)
    #[arg(long, value_name = "DISK")]
    pub disk: Vec<String>,
    /// Guest networking: default (= user), user, tap[,NAME] (default tap0), bridge[,NAME]
    /// (default virbr0) or none
    #[arg(long, default_value = "default", value_name = "MODE")]
    pub networking: String,
    /// Forward a host port to the guest with user networking: HOST:GUEST[/tcp|/udp]
    /// (repeatable)
    #[arg(long, value_name = "PORTS")]
    pub publish: Vec<String>,
    /// Boot with UEFI firmware [default: for .efi files and the -efi / -efi-initrd images]
    #[arg(long)]
    pub uefi: bool,
    /// The UEFI firmware (Debian package ovmf)
    #[arg(long, default_value = "/usr/share/ovmf/OVMF.fd", value_name = "PATH")]
    pub fw: PathBuf,
    /// IMAGE is an ISO, whatever its name
    #[arg(long, conflicts_with_all = ["kernel", "squashfs"])]
    pub iso: bool,
    /// IMAGE is a kernel+initrd prefix, whatever its name
    #[arg(long, conflicts_with = "squashfs")]
    pub kernel: bool,
    /// IMAGE is a kernel+squashfs prefix (PREFIX-kernel, PREFIX-squashfs.img)
    #[arg(long)]
    pub squashfs: bool,
    /// Metadata for the guest: written as the file `config` on STATE/data.iso, an extra CD-ROM
    #[arg(long, value_name = "STRING", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// As --data, with the content of FILE
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// Where the run keeps qemu.pid, mac-addr, data.iso and the disks --disk size=… makes;
    /// kept [default: a temporary directory, removed when the run ends]
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Start QEMU in the background (console in STATE/console.log), print its pid and the
    /// state directory, and exit; stop it with `kill $(cat STATE/qemu.pid)`
    #[arg(long, conflicts_with_all = ["until", "timeout", "console_log"])]
    pub detached: bool,
    /// For a label: the remote cache flags of `lkb build`
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Labels, patterns or yml files
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Output formats to plan (as for build)
    #[arg(short, long = "format", value_delimiter = ',', value_name = "FORMAT")]
    pub formats: Vec<String>,
    /// How to print the graph
    #[arg(long, value_enum, default_value_t = QueryOutput::Text)]
    pub output: QueryOutput,
    /// Disk size for the disk formats (as for build; it is part of the disks' keys)
    #[arg(long, value_parser = lkb_rules::formats::parse_size, value_name = "SIZE")]
    pub size: Option<u64>,
    /// Target architecture [default: the host's]
    #[arg(long)]
    pub arch: Option<String>,
    /// Use only the store and OCI layouts
    #[arg(long)]
    pub offline: bool,
    /// Initrd segment compression (as for build; it is part of the segments' keys)
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub initrd_compression: Compression,
    /// Leave out sbom.spdx.json (as for build)
    #[arg(long)]
    pub no_sbom: bool,
}

/// How `lkb query` prints the graph (see docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryOutput {
    /// One line per action: id, kind, short key, cached or not, label, inputs
    Text,
    /// A Graphviz digraph, edges from input to dependent
    Dot,
    /// One versioned JSON document
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Labels, patterns or yml files (several files merge in order)
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Also merge each image's org.mobyproject.config label (resolves images)
    #[arg(long)]
    pub resolved: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = ConfigOutput::Yaml)]
    pub output: ConfigOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigOutput {
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached action results and blobs
    Ls,
    /// Show how much space the store uses
    Du,
    /// Remove everything not reachable from the last outputs of each target
    Gc {
        /// Also evict reachable entries, oldest first, until the store is at most this big (e.g. 10G)
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
    },
    /// Re-hash every blob; drop damaged blobs and the cache entries that name them
    Verify,
    /// Delete the whole store
    Clean,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Labels, patterns or yml files (several files merge in order, as LinuxKit does)
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Output formats (repeat or comma-separate)
    #[arg(short, long = "format", value_delimiter = ',', value_name = "FORMAT")]
    pub formats: Vec<String>,
    /// Output directory [default: lkb-out/<package path>]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Output base name [default: the (last) yml file's stem]
    #[arg(long)]
    pub name: Option<String>,
    /// CPU-bound actions run at once [default: number of CPUs]
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Disk size for the disk formats (raw-bios, raw-efi): MiB, or with an M or G suffix
    /// (1024M, 2G) [default: what the content needs]
    #[arg(long, value_parser = lkb_rules::formats::parse_size, value_name = "SIZE")]
    pub size: Option<u64>,
    /// Target architecture (amd64, arm64, ...) [default: the host's]
    #[arg(long)]
    pub arch: Option<String>,
    /// Refuse to change lkb.lock
    #[arg(long)]
    pub locked: bool,
    /// Use only the store and OCI layouts; never the network
    #[arg(long)]
    pub offline: bool,
    /// Re-resolve every image tag instead of reusing lkb.lock pins
    #[arg(long)]
    pub pull: bool,
    /// Ignore the action cache and run every action
    #[arg(long)]
    pub rebuild: bool,
    /// Print why each executed action ran
    #[arg(long)]
    pub explain: bool,
    /// Build twice, the second time ignoring the action cache, and name every action whose
    /// output differs (a reproducibility check)
    #[arg(long)]
    pub check: bool,
    /// Initrd segment compression
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub initrd_compression: Compression,
    /// Leave out sbom.spdx.json (the SPDX documents of the images' attestations, merged)
    #[arg(long)]
    pub no_sbom: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// The remote cache flags of `build`, `explain` and `run`.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Share action results through a remote cache: grpc://HOST:PORT[/INSTANCE] or
    /// grpcs://HOST:PORT[/INSTANCE] (Remote Execution API), or oci://HOST[:PORT]/REPOSITORY
    /// (an OCI registry) [default: `[cache] remote` in lkb.toml]; an empty URL
    /// (`--remote-cache=`) turns it off
    #[arg(long, env = "LKB_REMOTE_CACHE", value_name = "URL")]
    pub remote_cache: Option<String>,
    /// Upload executed results to the remote cache; false makes it read-only (for untrusted
    /// jobs)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub remote_upload: bool,
    /// What a remote hit downloads: outputs (only what the requested outputs and locally run
    /// actions need, when they need it) or all (every blob of every hit)
    #[arg(long, value_enum, default_value_t = RemoteDownload::Outputs, value_name = "WHAT")]
    pub remote_download: RemoteDownload,
    /// A CA certificate (PEM) trusted for grpcs:// besides the system roots
    #[arg(long, value_name = "FILE")]
    pub remote_ca_cert: Option<PathBuf>,
    /// Seconds one remote call (or the wait for the next chunk of a transfer) may take before
    /// the cache is given up on for the build
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub remote_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RemoteDownload {
    Outputs,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}
