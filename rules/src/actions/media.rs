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

/// Streams an image into a new store blob.
fn write_image(
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
fn disk_error(error: DiskError) -> ActionError {
    let category = match &error {
        DiskError::TooSmall { .. } | DiskError::Invalid(_) => ErrorCategory::User,
        DiskError::Io(_) | DiskError::SourceChanged { .. } => ErrorCategory::Environment,
    };
    ActionError::new(category, error)
}

/// A store blob as writer input, read when the image is written.
fn blob_data(store: &Store, blob: &BlobRef) -> Data {
    Data::File {
        path: store.blob_path(&blob.digest),
        len: blob.size,
    }
}

/// The boot image's files, looked up by path with a message that names the image.
struct BootFiles<'a> {
    tree: Tree,
    reference: &'a str,
    store: &'a Store,
}

impl BootFiles<'_> {
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
            let boot = BootFiles {
                tree: load_tree(&store, &inputs[0])?,
                reference: &reference,
                store: &store,
            };
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
        "raw-efi".into()
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
            let boot = BootFiles {
                tree: load_tree(&store, &inputs[0])?,
                reference: &reference,
                store: &store,
            };
            let disk = lkb_disk::raw_efi::plan(lkb_disk::raw_efi::RawEfi {
                systemd_boot: boot.file("systemd-boot/systemd-bootx64.efi")?,
                uki: blob_data(&store, &inputs[1]),
                size,
                seed: content_id(&inputs, "raw-efi"),
            })
            .map_err(disk_error)?;
            let blob = write_image(&store, |out| disk.write(out))?;
            Ok(ActionResult::new().with("disk", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}

/// `--size`, as a named key field (so `--explain` says `size` changed).
fn size_param(key: &mut KeyHasher, size: Option<u64>) {
    key.field("size", |key| {
        key.u64(size.unwrap_or(0));
    });
}
