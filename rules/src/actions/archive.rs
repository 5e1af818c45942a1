//! Archive actions: cpio segments, the initrd, the rootfs tar and the kernel+initrd tar.

use std::io::{BufWriter, Write};

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ExecCtx, KeyHasher};
use lkb_store::{ActionResult, BlobRef, Store};

use super::{GENERATED_FILE, artifact, load_tree, single};
use crate::compress::Codec;
use crate::tree::{Entry, Tree};
use crate::{cpio, tarball};

fn io_error(e: std::io::Error) -> ActionError {
    ActionError::environment(e)
}

/// Streams `write` into a new store blob.
fn to_blob(
    store: &Store,
    write: impl FnOnce(&mut dyn Write) -> Result<(), ActionError>,
) -> Result<BlobRef, ActionError> {
    let mut out = BufWriter::with_capacity(1 << 20, store.writer()?);
    write(&mut out)?;
    let writer = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    Ok(writer.finish()?)
}

/// One compressed newc cpio archive of one tree (DESIGN §5).
#[derive(Debug)]
pub struct SegmentAction {
    /// Which tree artifact of the input to archive (`tree`, or the kernel's `initrd`).
    pub artifact: String,
    pub codec: Codec,
    /// What the segment holds, for labels (`onboot[0] dhcpcd`).
    pub what: String,
}

#[async_trait]
impl Action for SegmentAction {
    fn kind(&self) -> &'static str {
        "segment"
    }
    fn label(&self) -> String {
        format!("segment {}", self.what)
    }
    fn identity(&self) -> String {
        format!("segment {}", self.what)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("artifact", |key| {
            key.str(&self.artifact);
        })
        .field("codec", |key| {
            key.str(&self.codec.params());
        })
        .field("cpio_format", |key| {
            key.u64(cpio::CPIO_FORMAT_VERSION.into());
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let tree = *artifact(ctx.input(0)?, &self.artifact)?;
        let store = ctx.store().clone();
        let codec = self.codec;
        ctx.blocking(move || {
            let tree = load_tree(&store, &tree)?;
            let blob = to_blob(&store, |out| {
                let enc = codec.writer(out).map_err(io_error)?;
                let (enc, _) = cpio::write_cpio(enc, &tree, &store, &cpio::CpioOptions::default())
                    .map_err(|e| ActionError::new(e.category(), e))?;
                enc.finish().map_err(io_error)?;
                Ok(())
            })?;
            Ok(single("segment", blob))
        })
        .await
    }
}

/// The initrd: raw microcode (if any), then every segment, concatenated.
#[derive(Debug)]
pub struct InitrdAction {
    /// Input 0 is the kernel action and its `ucode` artifact is prepended.
    pub ucode: bool,
}

#[async_trait]
impl Action for InitrdAction {
    fn kind(&self) -> &'static str {
        "initrd"
    }
    fn label(&self) -> String {
        "initrd".into()
    }
    fn identity(&self) -> String {
        "initrd".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("ucode", |key| {
            key.bool(self.ucode);
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let mut parts = Vec::new();
        let mut segments = ctx.inputs().iter();
        if self.ucode {
            let kernel = segments
                .next()
                .ok_or_else(|| ActionError::internal("initrd without kernel input"))?;
            parts.push(*artifact(kernel, "ucode")?);
        }
        for s in segments {
            parts.push(*artifact(s, "segment")?);
        }
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let blob = to_blob(&store, |out| {
                for part in &parts {
                    let mut f = store.open_blob(&part.digest)?;
                    std::io::copy(&mut f, out).map_err(io_error)?;
                }
                Ok(())
            })?;
            Ok(single("initrd", blob))
        })
        .await
    }
}

/// The whole root filesystem as one PAX tar (format `tar`): the same trees as the initrd, in
/// the same order, plus the kernel's `boot/` files. Each tree's root entry (`.`), if any, comes
/// before its entries, as in the initrd segments.
#[derive(Debug)]
pub struct RootfsTarAction {
    /// The tree artifact to take from each input, in input order.
    pub artifacts: Vec<String>,
}

#[async_trait]
impl Action for RootfsTarAction {
    fn kind(&self) -> &'static str {
        "rootfs-tar"
    }
    fn label(&self) -> String {
        "rootfs tar".into()
    }
    fn identity(&self) -> String {
        "rootfs-tar".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("artifacts", |key| {
            key.list(self.artifacts.iter(), |key, artifact| {
                key.str(artifact);
            });
        })
        .field("tar_format", |key| {
            key.u64(tarball::TAR_FORMAT_VERSION.into());
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let blobs: Vec<BlobRef> = ctx
            .inputs()
            .iter()
            .zip(&self.artifacts)
            .map(|(r, name)| artifact(r, name).copied())
            .collect::<Result<_, _>>()?;
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let trees = blobs
                .iter()
                .map(|b| load_tree(&store, b))
                .collect::<Result<Vec<_>, _>>()?;
            let blob = to_blob(&store, |out| {
                write_tar(out, trees.iter().flat_map(Tree::archive_entries), &store)
            })?;
            Ok(single("tar", blob))
        })
        .await
    }
}

/// `NAME-initrd.tar` (format `tar-kernel-initrd`): `kernel`, `initrd.img`, `cmdline` and
/// `ucode.cpio`, each only if non-empty, mode 0644, LinuxKit's default mtime.
#[derive(Debug)]
pub struct KernelInitrdTarAction;

#[async_trait]
impl Action for KernelInitrdTarAction {
    fn kind(&self) -> &'static str {
        "kernel-initrd-tar"
    }
    fn version(&self) -> u32 {
        // 2: entries in LinuxKit's order instead of path order.
        2
    }
    fn label(&self) -> String {
        "kernel+initrd tar".into()
    }
    fn identity(&self) -> String {
        "kernel-initrd-tar".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("tar_format", |key| {
            key.u64(tarball::TAR_FORMAT_VERSION.into());
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let kernel = ctx.input(0)?;
        let initrd = ctx.input(1)?;
        let mut files = vec![
            ("kernel", *artifact(kernel, "kernel")?),
            ("initrd.img", *artifact(initrd, "initrd")?),
            ("cmdline", *artifact(kernel, "cmdline")?),
        ];
        if let Some(ucode) = kernel.get("ucode") {
            files.push(("ucode.cpio", *ucode));
        }
        let store = ctx.store().clone();
        ctx.blocking(move || {
            // LinuxKit's order (kernel, initrd.img, cmdline, ucode.cpio), not path order.
            let entries: Vec<Entry> = files
                .into_iter()
                .filter(|(_, b)| b.size > 0)
                .map(|(name, blob)| Entry::file(name, blob, GENERATED_FILE))
                .collect();
            let blob = to_blob(&store, |out| write_tar(out, &entries, &store))?;
            Ok(single("tar", blob))
        })
        .await
    }
}

/// Writes entries, in the order given, as one PAX tar archive.
fn write_tar<'a>(
    out: &mut dyn Write,
    entries: impl IntoIterator<Item = &'a Entry>,
    store: &Store,
) -> Result<(), ActionError> {
    let fail = |e: tarball::TarError| ActionError::new(e.category(), e);
    let mut w = tarball::TarWriter::new(out, store, &tarball::TarOptions::default());
    w.append_entries(entries).map_err(fail)?;
    w.finish().map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::changed_params as changed;

    fn segment(codec: Codec) -> SegmentAction {
        SegmentAction {
            artifact: "tree".into(),
            codec,
            what: "files".into(),
        }
    }

    #[test]
    fn segment_params_name_the_codec() {
        let gzip = segment(Codec::Gzip { level: 6 });
        assert!(changed(&gzip, &segment(Codec::Gzip { level: 6 })).is_empty());
        assert_eq!(
            changed(&gzip, &segment(Codec::Gzip { level: 9 })),
            ["codec"]
        );
        assert_eq!(
            changed(&gzip, &segment(Codec::Zstd { level: 3 })),
            ["codec"]
        );
        let initrd = segment(Codec::None);
        let kernel = SegmentAction {
            artifact: "initrd".into(),
            ..segment(Codec::None)
        };
        assert_eq!(changed(&initrd, &kernel), ["artifact"]);
    }

    #[test]
    fn other_archive_params_are_named() {
        let fields = |action: &dyn Action| -> Vec<String> {
            lkb_engine::params_digest(action)
                .fields
                .into_iter()
                .map(|(path, _)| path)
                .collect()
        };
        assert_eq!(fields(&InitrdAction { ucode: true }), ["ucode"]);
        assert_eq!(
            fields(&RootfsTarAction {
                artifacts: vec!["rootfs".into(), "tree".into()],
            }),
            ["artifacts", "tar_format"]
        );
        assert_eq!(fields(&KernelInitrdTarAction), ["tar_format"]);
        assert_eq!(
            changed(
                &InitrdAction { ucode: true },
                &InitrdAction { ucode: false }
            ),
            ["ucode"]
        );
    }
}
