//! Boot-media actions: unified kernel images, disks and ISOs, written in-process by `lkb-disk`.
//!
//! Each action reads its boot loaders from the tree of the boot image (`[boot] image`, always
//! input 0), plans the layout from sizes, then streams the image into a store blob front to
//! back; zeros become holes in the blob and stay holes in the output file. Identifiers the
//! formats carry (volume ids, disk signatures, GUIDs) are derived from the input digests, so
//! equal inputs give equal bytes on every machine.

use std::io::{BufWriter, Write};

use async_trait::async_trait;
use lkb_disk::{Data, DiskError, Sink};
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, BlobWriter, ErrorCategory, Store};
use sha2::Digest as _;

use super::{input_blobs, load_tree};
use crate::tree::Tree;

/// The `.osrel` of the unified kernel images lkb writes: what systemd-boot and `bootctl`
/// show for the entry.
pub const UKI_OS_RELEASE: &str = "NAME=\"LinuxKit\"";

/// A store blob being written, as a [`Sink`]: zeros are holes.
struct BlobSink(BufWriter<BlobWriter>);

impl Write for BlobSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Sink for BlobSink {
    fn zeros(&mut self, n: u64) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.get_mut().zeros(n)
    }
}

/// A sink that keeps trailing zeros out of the image: zeros are passed on only when data
/// follows them, so the blob ends with the last data byte (see [`RawBiosAction`]).
struct TrimSink<'a> {
    inner: &'a mut dyn Sink,
    pending: u64,
}

impl Write for TrimSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && self.pending > 0 {
            self.inner.zeros(self.pending)?;
            self.pending = 0;
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Sink for TrimSink<'_> {
    fn zeros(&mut self, n: u64) -> std::io::Result<()> {
        self.pending += n;
        Ok(())
    }
}

/// Streams an image into a new store blob.
pub(super) fn write_image(
    store: &Store,
    write: impl FnOnce(&mut dyn Sink) -> Result<(), DiskError>,
) -> Result<BlobRef, ActionError> {
    let mut sink = BlobSink(BufWriter::with_capacity(1 << 20, store.writer()?));
    write(&mut sink).map_err(disk_error)?;
    let writer = sink
        .0
        .into_inner()
        .map_err(|e| ActionError::environment(e.into_error()))?;
    Ok(writer.finish()?)
}

/// A writer's error with its category: a size or input problem is the user's, I/O the
/// environment's.
pub(super) fn disk_error(error: DiskError) -> ActionError {
    let category = match &error {
        DiskError::TooSmall { .. } | DiskError::Invalid(_) => ErrorCategory::User,
        DiskError::Io(_) | DiskError::SourceChanged { .. } => ErrorCategory::Environment,
    };
    ActionError::new(category, error)
}

/// A store blob as writer input, read when the image is written.
pub(super) fn blob_data(store: &Store, blob: &BlobRef) -> Data {
    match store.blob_file(&blob.digest) {
        Ok((path, offset, _)) if path != store.blob_path(&blob.digest) => Data::Part {
            path,
            offset,
            len: blob.size,
        },
        // Its own file; or missing, which the writer reports when it reads it.
        _ => Data::File {
            path: store.blob_path(&blob.digest),
            len: blob.size,
        },
    }
}

/// The boot image's files, looked up by path with a message that names the image.
struct BootFiles<'a> {
    tree: Tree,
    reference: &'a str,
    store: &'a Store,
}

impl<'a> BootFiles<'a> {
    /// The boot image's tree (an action's input 0), with its reference for messages.
    fn load(store: &'a Store, tree: &BlobRef, reference: &'a str) -> Result<Self, ActionError> {
        Ok(BootFiles {
            tree: load_tree(store, tree)?,
            reference,
            store,
        })
    }

    fn file(&self, path: &str) -> Result<Data, ActionError> {
        let blob = self.tree.file_blob(path).map_err(|_| {
            ActionError::user(format!(
                "the boot image {} has no file /{path} (the layout it needs is in docs/formats.md; \
                 set another with `[boot] image` in lkb.toml)",
                self.reference
            ))
        })?;
        Ok(blob_data(self.store, blob))
    }
}

/// `n` bytes derived from the digests of an action's inputs and a purpose: an identifier that
/// changes with the content and nothing else.
pub(crate) fn content_id<const N: usize>(inputs: &[BlobRef], purpose: &str) -> [u8; N] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(purpose.as_bytes());
    for input in inputs {
        hasher.update(input.digest.as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = [0; N];
    id.copy_from_slice(&digest[..N]);
    id
}

/// The unified kernel image (format `uki`, and the boot entry of `raw-efi`): systemd's EFI
/// stub from the boot image with `.osrel`, `.cmdline`, `.initrd` (and `.ucode`) and `.linux`.
#[derive(Debug)]
pub struct UkiAction {
    /// The boot image's reference, for messages only (its content is input 0).
    pub boot_image: String,
}

#[async_trait]
impl Action for UkiAction {
    fn kind(&self) -> &'static str {
        "uki"
    }
    fn label(&self) -> String {
        "unified kernel image".into()
    }
    fn identity(&self) -> String {
        "uki".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("osrel", |key| {
            key.str(UKI_OS_RELEASE);
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("uki", ArtifactKind::Blob).codec("pe-uki", "1")]
    }
    fn inputs(&self) -> InputKinds {
        // boot image, kernel, cmdline, initrd, then the microcode when the kernel has one.
        InputKinds::then_each(
            [
                ArtifactKind::Tree,
                ArtifactKind::Blob,
                ArtifactKind::Blob,
                ArtifactKind::Archive,
            ],
            ArtifactKind::Blob,
        )
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = input_blobs(ctx);
        let store = ctx.store().clone();
        let reference = self.boot_image.clone();
        ctx.blocking(move || {
            let boot = BootFiles::load(&store, &inputs[0], &reference)?;
            let uki = lkb_disk::uki::plan(lkb_disk::uki::Uki {
                stub: boot.file("systemd-boot/linuxx64.efi.stub")?,
                osrel: UKI_OS_RELEASE.as_bytes().to_vec(),
                cmdline: store.read_blob(&inputs[2].digest)?,
                uname: None,
                linux: blob_data(&store, &inputs[1]),
                initrd: blob_data(&store, &inputs[3]),
                ucode: inputs
                    .get(4)
                    .filter(|ucode| ucode.size > 0)
                    .map(|ucode| blob_data(&store, ucode)),
            })
            .map_err(disk_error)?;
            let blob = write_image(&store, |out| uki.write(out))?;
            Ok(ActionResult::new().with("uki", ArtifactKind::Blob, blob))
        })
        .await
    }
}

/// The `raw-efi` disk: GPT, one ESP with systemd-boot and the unified kernel image
/// ([`lkb_disk::raw_efi`]).
#[derive(Debug)]
pub struct RawEfiAction {
    /// The boot image's reference, for messages only.
    pub boot_image: String,
    /// `--size` in bytes.
    pub size: Option<u64>,
}

#[async_trait]
impl Action for RawEfiAction {
    fn kind(&self) -> &'static str {
        "raw-efi"
    }
    fn label(&self) -> String {
        "raw-efi disk".into()
    }
    fn identity(&self) -> String {
        disk_identity("raw-efi", self.size)
    }
    fn params(&self, key: &mut KeyHasher) {
        size_param(key, self.size);
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("disk", ArtifactKind::DiskImage).codec("raw-efi", "1")]
    }
    fn inputs(&self) -> InputKinds {
        // boot image, the unified kernel image.
        InputKinds::exactly([ArtifactKind::Tree, ArtifactKind::Blob])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = input_blobs(ctx);
        let store = ctx.store().clone();
        let reference = self.boot_image.clone();
        let size = self.size;
        ctx.blocking(move || {
            let boot = BootFiles::load(&store, &inputs[0], &reference)?;
            let disk = lkb_disk::raw_efi::plan(lkb_disk::raw_efi::RawEfi {
                systemd_boot: boot.file("systemd-boot/systemd-bootx64.efi")?,
                uki: blob_data(&store, &inputs[1]),
                size,
                seed: content_id(&inputs, "raw-efi"),
            })
            .map_err(disk_error)?;
            let blob = match size {
                None => write_image(&store, |out| disk.write(out))?,
                Some(_) => write_image(&store, |out| {
                    disk.write(&mut TrimSink {
                        inner: out,
                        pending: 0,
                    })
                })?,
            };
            Ok(ActionResult::new().with("disk", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}

/// `--size`, as a named key field (so `--explain` says `size` changed).
/// The identity of a disk action of `kind` and `--size`: one build may hold a disk of each
/// size (`raw-bios` sized to its content beside the 1 GiB one `qcow2-bios` wraps), and
/// identities name one action of a build.
pub fn disk_identity(kind: &str, size: Option<u64>) -> String {
    match size {
        None => kind.to_owned(),
        Some(bytes) if bytes % (1 << 20) == 0 => format!("{kind} {}M", bytes >> 20),
        Some(bytes) => format!("{kind} {bytes}B"),
    }
}

fn size_param(key: &mut KeyHasher, size: Option<u64>) {
    key.field("size", |key| {
        key.u64(size.unwrap_or(0));
    });
}

/// What an ISO holds and how it boots (formats `iso-bios`, `iso-efi`, `iso-efi-initrd`,
/// `kernel+iso`), after LinuxKit's `mkimage-iso-*` scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsoLayout {
    /// `kernel+iso`: the root file system, no boot loader. Inputs: the rootfs trees.
    Plain,
    /// `iso-bios`: the root file system (less `boot/cmdline`), ISOLINUX booting
    /// `/boot/kernel`, El Torito BIOS entry, Joliet, isohybrid MBR. Inputs: boot image tree,
    /// `cmdline`, the rootfs trees.
    Bios,
    /// `iso-efi`: the root file system (less `boot/cmdline`), GRUB as the El Torito EFI image,
    /// `EFI/BOOT/grub.cfg` booting `/boot/kernel`. Inputs as [`IsoLayout::Bios`].
    Efi,
    /// `iso-efi-initrd`: `/kernel`, `/initrd.img` and GRUB. Inputs: boot image tree, `kernel`,
    /// `initrd`, `cmdline`.
    EfiInitrd,
}

impl IsoLayout {
    fn name(self) -> &'static str {
        match self {
            IsoLayout::Plain => "kernel+iso",
            IsoLayout::Bios => "iso-bios",
            IsoLayout::Efi => "iso-efi",
            IsoLayout::EfiInitrd => "iso-efi-initrd",
        }
    }
}

/// The root device LinuxKit's ISO formats add when the command line names none: the first
/// CD-ROM drive.
const ISO_ROOT: &str = "root=/dev/sr0";

/// The command line with LinuxKit's `root=/dev/sr0` when it has no `root=`.
fn with_iso_root(cmdline: &str) -> String {
    let cmdline = cmdline.trim();
    if cmdline
        .split_whitespace()
        .any(|word| word.starts_with("root="))
    {
        cmdline.to_owned()
    } else if cmdline.is_empty() {
        ISO_ROOT.to_owned()
    } else {
        format!("{cmdline} {ISO_ROOT}")
    }
}

/// `isolinux/isolinux.cfg` of `iso-bios`.
pub fn isolinux_cfg(cmdline: &str) -> String {
    format!(
        "default linuxkit\nlabel linuxkit\n  kernel /boot/kernel\n  append {}\n",
        with_iso_root(cmdline)
    )
}

/// `EFI/BOOT/grub.cfg` of `iso-efi` (kernel from the root file system) and `iso-efi-initrd`
/// (kernel and initrd at the top of the ISO). GRUB's `linux` does the EFI handover itself;
/// LinuxKit's CoreOS GRUB spells it `linuxefi`/`initrdefi`.
pub fn grub_cfg(layout: IsoLayout, cmdline: &str) -> String {
    let entry = match layout {
        IsoLayout::EfiInitrd => format!(
            "\tlinux /kernel {} text\n\tinitrd /initrd.img\n",
            cmdline.trim()
        ),
        _ => format!("\tlinux /boot/kernel {} text\n", with_iso_root(cmdline)),
    };
    format!("set timeout=0\nset gfxpayload=text\nmenuentry 'LinuxKit ISO Image' {{\n{entry}}}\n")
}

/// An ISO image ([`lkb_disk::iso`]).
#[derive(Debug)]
pub struct IsoAction {
    pub layout: IsoLayout,
    /// The boot image's reference, for messages only.
    pub boot_image: String,
}

#[async_trait]
impl Action for IsoAction {
    fn kind(&self) -> &'static str {
        "iso"
    }
    fn label(&self) -> String {
        format!("{} image", self.layout.name())
    }
    fn identity(&self) -> String {
        format!("iso {}", self.layout.name())
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("layout", |key| {
            key.str(self.layout.name());
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("iso", ArtifactKind::DiskImage).codec("iso9660", "1")]
    }
    fn inputs(&self) -> InputKinds {
        use ArtifactKind::{Archive, Blob, Tree};
        match self.layout {
            IsoLayout::Plain => InputKinds::each(Tree),
            IsoLayout::Bios | IsoLayout::Efi => InputKinds::then_each([Tree, Blob], Tree),
            IsoLayout::EfiInitrd => InputKinds::exactly([Tree, Blob, Archive, Blob]),
        }
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = input_blobs(ctx);
        let store = ctx.store().clone();
        let layout = self.layout;
        let reference = self.boot_image.clone();
        ctx.blocking(move || {
            let iso = plan_iso(layout, &reference, &inputs, &store)?;
            let blob = write_image(&store, |out| iso.write(out))?;
            Ok(ActionResult::new().with("iso", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}

/// Lays out the ISO of `layout` from the action's inputs.
fn plan_iso(
    layout: IsoLayout,
    reference: &str,
    inputs: &[BlobRef],
    store: &Store,
) -> Result<lkb_disk::iso::IsoPlan, ActionError> {
    use lkb_disk::FsKind;
    use lkb_disk::iso::{BootEntry, BootImage, ElTorito, HybridMbr, IsoOptions};
    let generated = |path: &str, bytes: Vec<u8>| iso_entry(path, FsKind::File(Data::Bytes(bytes)));
    let boot = match layout {
        IsoLayout::Plain => None,
        _ => Some(BootFiles::load(store, &inputs[0], reference)?),
    };
    let (mut entries, cmdline) = match layout {
        IsoLayout::Plain => (rootfs_entries(inputs, store, false)?, String::new()),
        IsoLayout::Bios | IsoLayout::Efi => {
            let cmdline =
                String::from_utf8_lossy(&store.read_blob(&inputs[1].digest)?).into_owned();
            (rootfs_entries(&inputs[2..], store, true)?, cmdline)
        }
        IsoLayout::EfiInitrd => {
            let cmdline =
                String::from_utf8_lossy(&store.read_blob(&inputs[3].digest)?).into_owned();
            let entries = vec![
                iso_entry("kernel", FsKind::File(blob_data(store, &inputs[1]))),
                iso_entry("initrd.img", FsKind::File(blob_data(store, &inputs[2]))),
            ];
            (entries, cmdline)
        }
    };
    let seed: [u8; 4] = content_id(inputs, layout.name());
    let mut options = IsoOptions {
        volume_id: "ISOIMAGE".into(),
        timestamp: super::DEFAULT_MTIME,
        joliet: false,
        boot: None,
        hybrid: None,
    };
    match (layout, &boot) {
        (IsoLayout::Bios, Some(boot)) => {
            entries.push(iso_entry(
                "isolinux/isolinux.bin",
                FsKind::File(boot.file("isolinux/isolinux.bin")?),
            ));
            entries.push(iso_entry(
                "isolinux/ldlinux.c32",
                FsKind::File(boot.file("isolinux/ldlinux.c32")?),
            ));
            entries.push(generated(
                "isolinux/isolinux.cfg",
                isolinux_cfg(&cmdline).into_bytes(),
            ));
            options.volume_id = "LinuxKit".into();
            options.joliet = true;
            options.boot = Some(ElTorito {
                catalog: Some("isolinux/boot.cat".into()),
                bios: Some(BootEntry {
                    image: BootImage::Path("isolinux/isolinux.bin".into()),
                    load_sectors: Some(4),
                    boot_info_table: true,
                }),
                efi: None,
            });
            options.hybrid = Some(HybridMbr {
                code: boot
                    .file("isolinux/isohdpfx.bin")?
                    .read_all()
                    .map_err(disk_error)?,
                disk_id: u32::from_le_bytes(seed),
            });
        }
        (IsoLayout::Efi | IsoLayout::EfiInitrd, Some(boot)) => {
            let grub_cfg = grub_cfg(layout, &cmdline).into_bytes();
            entries.push(generated("EFI/BOOT/grub.cfg", grub_cfg.clone()));
            let esp = efi_boot_image(
                boot.file("grub/bootx64.efi")?,
                grub_cfg,
                u32::from_le_bytes(seed),
            )?;
            options.boot = Some(ElTorito {
                catalog: None,
                bios: None,
                efi: Some(BootEntry {
                    image: BootImage::Hidden(Data::Bytes(esp)),
                    load_sectors: None,
                    boot_info_table: false,
                }),
            });
        }
        _ => {}
    }
    lkb_disk::iso::plan(entries, options).map_err(disk_error)
}

/// A generated or loose entry: root-owned, 0644 (0755 for directories), LinuxKit's time.
fn iso_entry(path: &str, kind: lkb_disk::FsKind) -> lkb_disk::FsEntry {
    let mode = match kind {
        lkb_disk::FsKind::Dir => 0o755,
        _ => 0o644,
    };
    lkb_disk::FsEntry {
        path: path.to_owned(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: super::DEFAULT_MTIME,
        link_group: None,
        xattrs: Vec::new(),
    }
}

/// The El Torito EFI boot image: a FAT file system holding GRUB as `EFI/BOOT/BOOTX64.EFI` (and
/// its config, which GRUB reads from the ISO itself). As small as FAT allows, as LinuxKit's.
fn efi_boot_image(grub: Data, grub_cfg: Vec<u8>, volume_id: u32) -> Result<Vec<u8>, ActionError> {
    use lkb_disk::fat::{FatFile, FatOptions, FatSpec};
    let fat = lkb_disk::fat::plan(FatSpec {
        files: vec![
            FatFile::new("EFI/BOOT/BOOTX64.EFI", grub),
            FatFile::new("EFI/BOOT/grub.cfg", Data::Bytes(grub_cfg)),
        ],
        dirs: Vec::new(),
        options: FatOptions {
            volume_id,
            ..FatOptions::default()
        },
    })
    .map_err(disk_error)?;
    let mut image = Vec::with_capacity(fat.size() as usize);
    fat.write(&mut image).map_err(disk_error)?;
    Ok(image)
}

/// The root file system as file-system entries: the trees merged in order (a later entry replaces an
/// earlier one of the same path, and a non-directory replacing a directory drops what was
/// below it, as extracting LinuxKit's tar does), hard links as link groups. `drop_cmdline`
/// leaves out `boot/cmdline`, as LinuxKit's boot ISOs do (the command line is in the boot
/// loader's config).
pub(super) fn rootfs_entries(
    trees: &[BlobRef],
    store: &Store,
    drop_cmdline: bool,
) -> Result<Vec<lkb_disk::FsEntry>, ActionError> {
    use crate::tree::{Entry, EntryKind};
    use lkb_disk::{FsEntry, FsKind};
    use std::collections::BTreeMap;

    let mut merged: BTreeMap<String, Entry> = BTreeMap::new();
    for blob in trees {
        let tree = load_tree(store, blob)?;
        for entry in tree.archive_entries() {
            let path = match entry.path.as_str() {
                "." | "/" => String::new(),
                other => other.trim_start_matches("./").trim_matches('/').to_owned(),
            };
            if !entry.is_dir() && merged.get(&path).is_some_and(Entry::is_dir) {
                let below = format!("{path}/");
                merged.retain(|p, _| !p.starts_with(&below));
            }
            let mut entry = entry.clone();
            entry.path = path.clone();
            merged.insert(path, entry);
        }
    }
    if drop_cmdline {
        merged.remove("boot/cmdline");
    }
    // Hard links: every member of a group, the primary included, gets the group's number.
    let mut groups: BTreeMap<String, u32> = BTreeMap::new();
    for entry in merged.values() {
        if let EntryKind::Hardlink { target } = &entry.kind
            && merged.contains_key(target.as_str())
        {
            let next = groups.len() as u32 + 1;
            groups.entry(target.clone()).or_insert(next);
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for (path, entry) in &merged {
        let (kind, group) = match &entry.kind {
            EntryKind::Dir => (FsKind::Dir, None),
            EntryKind::File { blob } => (
                FsKind::File(blob_data(store, blob)),
                groups.get(path).copied(),
            ),
            EntryKind::Symlink { target } => (FsKind::Symlink(target.clone()), None),
            EntryKind::Hardlink { target } => match merged.get(target.as_str()).map(|t| &t.kind) {
                Some(EntryKind::File { blob }) => (
                    FsKind::File(blob_data(store, blob)),
                    groups.get(target).copied(),
                ),
                // A link whose target was replaced or removed: LinuxKit's tar extraction
                // would fail on it; skip it rather than invent content.
                _ => continue,
            },
            EntryKind::Char { major, minor } => (
                FsKind::CharDev {
                    major: *major,
                    minor: *minor,
                },
                None,
            ),
            EntryKind::Block { major, minor } => (
                FsKind::BlockDev {
                    major: *major,
                    minor: *minor,
                },
                None,
            ),
            EntryKind::Fifo => (FsKind::Fifo, None),
            EntryKind::Whiteout | EntryKind::Opaque => continue,
        };
        out.push(FsEntry {
            path: path.clone(),
            kind,
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            link_group: group,
            xattrs: entry
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
    }
    Ok(out)
}

/// The `raw-bios` disk: MBR, one active FAT partition with SYSLINUX, the kernel and the
/// initrd ([`lkb_disk::raw_bios`]).
///
/// With `--size` the blob stops at the disk's last data byte: the zeros after it (most of a
/// 25 GiB disk) would otherwise all be hashed into the blob's digest. The size is a param, so
/// whoever takes the disk knows its length: the output step extends the file to it
/// ([`crate::formats::OutputSpec::len`]) and [`ConvertAction`] reads the blob as that long.
#[derive(Debug)]
pub struct RawBiosAction {
    /// The boot image's reference, for messages only.
    pub boot_image: String,
    /// `--size` in bytes.
    pub size: Option<u64>,
}

#[async_trait]
impl Action for RawBiosAction {
    fn kind(&self) -> &'static str {
        "raw-bios"
    }
    fn label(&self) -> String {
        "raw-bios disk".into()
    }
    fn identity(&self) -> String {
        disk_identity("raw-bios", self.size)
    }
    fn version(&self) -> u32 {
        // 2: a sized disk's trailing zeros are left out of the blob.
        2
    }
    fn params(&self, key: &mut KeyHasher) {
        size_param(key, self.size);
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("disk", ArtifactKind::DiskImage).codec("raw-bios", "1")]
    }
    fn inputs(&self) -> InputKinds {
        // boot image, kernel, initrd, cmdline.
        InputKinds::exactly([
            ArtifactKind::Tree,
            ArtifactKind::Blob,
            ArtifactKind::Archive,
            ArtifactKind::Blob,
        ])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = input_blobs(ctx);
        let store = ctx.store().clone();
        let reference = self.boot_image.clone();
        let size = self.size;
        ctx.blocking(move || {
            let boot = BootFiles::load(&store, &inputs[0], &reference)?;
            let small = |path: &str| boot.file(path)?.read_all().map_err(disk_error);
            let ids: [u8; 8] = content_id(&inputs, "raw-bios");
            let disk = lkb_disk::raw_bios::plan(lkb_disk::raw_bios::RawBios {
                kernel: blob_data(&store, &inputs[1]),
                initrd: blob_data(&store, &inputs[2]),
                cmdline: String::from_utf8_lossy(&store.read_blob(&inputs[3].digest)?).into_owned(),
                syslinux: lkb_disk::syslinux::SyslinuxFiles {
                    mbr_bin: small("syslinux/mbr.bin")?,
                    ldlinux_sys: small("syslinux/ldlinux.sys")?,
                    ldlinux_bss: small("syslinux/ldlinux.bss")?,
                    ldlinux_c32: boot.file("syslinux/ldlinux.c32")?,
                },
                size,
                volume_id: u32::from_le_bytes([ids[0], ids[1], ids[2], ids[3]]),
                disk_signature: u32::from_le_bytes([ids[4], ids[5], ids[6], ids[7]]),
            })
            .map_err(disk_error)?;
            let blob = match size {
                None => write_image(&store, |out| disk.write(out))?,
                Some(_) => write_image(&store, |out| {
                    disk.write(&mut TrimSink {
                        inner: out,
                        pending: 0,
                    })
                })?,
            };
            Ok(ActionResult::new().with("disk", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}

/// What [`ConvertAction`] wraps a raw disk in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// qcow2 v3 (compat 1.1), only non-zero clusters stored ([`lkb_disk::qcow2`]).
    Qcow2,
    /// Fixed VHD: the disk padded to a whole MiB plus the footer ([`lkb_disk::vhd`]).
    VhdFixed,
    /// Dynamic VHD: only non-zero 2 MiB blocks stored.
    VhdDynamic,
    /// VMDK streamOptimized ([`lkb_disk::vmdk`]).
    Vmdk,
    /// GCE's `disk.raw` in a gzip-compressed GNU sparse tar ([`lkb_disk::gcp`]).
    GcpTarGz,
}

impl DiskFormat {
    fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::VhdFixed => "vhd-fixed",
            DiskFormat::VhdDynamic => "vhd-dynamic",
            DiskFormat::Vmdk => "vmdk-stream",
            DiskFormat::GcpTarGz => "gcp-tar-gz",
        }
    }
}

/// A raw disk in a VM image format. Sparse in, sparse out: only the disk's non-zero regions
/// are read and stored.
#[derive(Debug)]
pub struct ConvertAction {
    pub to: DiskFormat,
    /// The identity of the disk action it wraps ([`disk_identity`]): two VM formats may wrap
    /// different disks into one container format.
    pub disk: String,
    /// The disk's length when its blob leaves out trailing zeros (a sized `raw-bios` disk).
    pub disk_len: Option<u64>,
}

#[async_trait]
impl Action for ConvertAction {
    fn kind(&self) -> &'static str {
        "convert"
    }
    fn label(&self) -> String {
        format!("{} image", self.to.name())
    }
    fn identity(&self) -> String {
        format!("convert {} {}", self.to.name(), self.disk)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("to", |key| {
            key.str(self.to.name());
        });
        if let Some(len) = self.disk_len {
            key.field("disk_len", |key| {
                key.u64(len);
            });
        }
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("disk", ArtifactKind::DiskImage).codec(self.to.name(), "1")]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::exactly([ArtifactKind::DiskImage])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = input_blobs(ctx);
        let store = ctx.store().clone();
        let to = self.to;
        let disk_len = self.disk_len;
        ctx.blocking(move || {
            // A disk whose blob stops before its end is read through a scratch copy extended
            // to its length (a hole: nothing but the data is copied).
            let padded = match disk_len {
                Some(len) if len > inputs[0].size => {
                    let scratch = store.scratch_file()?;
                    store.copy_blob_to(&inputs[0].digest, &scratch)?;
                    scratch.set_len(len).map_err(ActionError::environment)?;
                    Some(scratch)
                }
                _ => None,
            };
            let raw = match &padded {
                Some(scratch) => {
                    use std::os::fd::AsRawFd as _;
                    Data::File {
                        path: format!("/proc/self/fd/{}", scratch.as_raw_fd()).into(),
                        len: disk_len.unwrap_or_default(),
                    }
                }
                None => blob_data(&store, &inputs[0]),
            };
            let blob = match to {
                DiskFormat::Qcow2 => {
                    let plan = lkb_disk::qcow2::plan(raw).map_err(disk_error)?;
                    write_image(&store, |out| plan.write(out))?
                }
                DiskFormat::VhdFixed | DiskFormat::VhdDynamic => {
                    let kind = match to {
                        DiskFormat::VhdFixed => lkb_disk::vhd::VhdKind::Fixed,
                        _ => lkb_disk::vhd::VhdKind::Dynamic,
                    };
                    let plan = lkb_disk::vhd::plan(lkb_disk::vhd::Vhd {
                        raw,
                        kind,
                        unique_id: content_id(&inputs, to.name()),
                    })
                    .map_err(disk_error)?;
                    write_image(&store, |out| plan.write(out))?
                }
                DiskFormat::Vmdk => {
                    let plan = lkb_disk::vmdk::plan(raw).map_err(disk_error)?;
                    write_image(&store, |out| plan.write(out).map(drop))?
                }
                DiskFormat::GcpTarGz => {
                    let options = lkb_disk::gcp::GcpOptions {
                        mtime: super::DEFAULT_MTIME,
                        level: 6,
                    };
                    write_image(&store, |out| lkb_disk::gcp::write(&raw, &options, out))?
                }
            };
            Ok(ActionResult::new().with("disk", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}
