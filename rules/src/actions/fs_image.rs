//! The root file system as a read-only file-system image, for the `kernel+squashfs` and
//! `kernel+erofs` formats: every tree merged as extracting LinuxKit's tar would, minus `boot/`
//! (the kernel and command line are written beside the image), then written in-process by
//! [`lkb_disk::squashfs`] or [`lkb_disk::erofs`].

use std::io::{Seek, SeekFrom};

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::ActionResult;

use super::media::{content_id, disk_error, rootfs_entries, write_image};
use super::{DEFAULT_MTIME, input_blobs};

/// Which file system [`FsImageAction`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsImage {
    /// squashfs 4.0, gzip, 128 KiB blocks (mksquashfs's defaults, as LinuxKit runs it).
    Squashfs,
    /// EROFS, uncompressed (`mkfs.erofs` without options, as LinuxKit runs it).
    Erofs,
}

impl FsImage {
    fn name(self) -> &'static str {
        match self {
            FsImage::Squashfs => "squashfs",
            FsImage::Erofs => "erofs",
        }
    }
}

/// The root file system without `boot/` as a squashfs or EROFS image.
#[derive(Debug)]
pub struct FsImageAction {
    pub fs: FsImage,
}

#[async_trait]
impl Action for FsImageAction {
    fn kind(&self) -> &'static str {
        self.fs.name()
    }
    fn label(&self) -> String {
        format!("{} image", self.fs.name())
    }
    fn identity(&self) -> String {
        format!("fs-image {}", self.fs.name())
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("fs", |key| {
            key.str(self.fs.name());
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("image", ArtifactKind::DiskImage).codec(self.fs.name(), "1")]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Tree)
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let trees = input_blobs(ctx);
        let store = ctx.store().clone();
        let fs = self.fs;
        ctx.blocking(move || {
            let mut entries = rootfs_entries(&trees, &store, false)?;
            entries.retain(|entry| entry.path != "boot" && !entry.path.starts_with("boot/"));
            let blob = match fs {
                FsImage::Squashfs => {
                    // squashfs stores these prefixes only; mksquashfs drops the others (POSIX
                    // ACLs), and so does lkb (docs/compat.md).
                    for entry in &mut entries {
                        entry.xattrs.retain(|(name, _)| {
                            ["user.", "trusted.", "security."]
                                .iter()
                                .any(|prefix| name.starts_with(prefix))
                        });
                    }
                    // The superblock is written last, so the image goes through a scratch
                    // file before it becomes a blob.
                    let options = lkb_disk::squashfs::SquashfsOptions {
                        mkfs_time: DEFAULT_MTIME,
                        ..Default::default()
                    };
                    let mut scratch = store.scratch_file()?;
                    lkb_disk::squashfs::write(entries, &options, &mut scratch)
                        .map_err(disk_error)?;
                    scratch
                        .seek(SeekFrom::Start(0))
                        .map_err(ActionError::environment)?;
                    store.put_reader(&mut scratch, None)?
                }
                FsImage::Erofs => {
                    let options = lkb_disk::erofs::ErofsOptions {
                        build_time: DEFAULT_MTIME,
                        uuid: content_id(&trees, "erofs uuid"),
                        volume_name: String::new(),
                    };
                    let plan = lkb_disk::erofs::plan(entries, options).map_err(disk_error)?;
                    write_image(&store, |out| plan.write(out))?
                }
            };
            Ok(ActionResult::new().with("image", ArtifactKind::DiskImage, blob))
        })
        .await
    }
}
