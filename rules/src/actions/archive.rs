//! Archive actions: cpio segments, the initrd, the rootfs tar and the kernel+initrd tar.

use std::io::{BufWriter, Write};

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, Store};

use super::{GENERATED_FILE, input_blobs, load_tree};
use crate::compress::Codec;
use crate::compress::pieces::{self, MemberSum, PIECE_BYTES};
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

/// File data per compressed member of a gzip segment (see [`SegmentAction`]).
pub const SEGMENT_MEMBER_BYTES: u64 = 16 << 20;

/// One tree as compressed newc cpio (DESIGN §5).
///
/// A gzip segment with more than [`SEGMENT_MEMBER_BYTES`] of file data is several complete
/// archives ([`cpio::archive_runs`]), each its own gzip member, compressed on every core at
/// once and concatenated in order: the kernel unpacks a sequence of compressed archives, and
/// gzip readers read concatenated members as one stream. A run larger than a member (one
/// large file) is still one member, but compressed in pieces on every core
/// ([`crate::compress::pieces`]). The cuts depend only on the tree, so the bytes do not depend
/// on the machine's core count.
#[derive(Debug)]
pub struct SegmentAction {
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
    fn params(&self, _key: &mut KeyHasher) {
        // Everything that shapes the bytes is the codec, declared with the output.
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        let members = match self.member_bytes() {
            Some(bytes) => format!(
                "members-per={bytes};runs-v{};larger-in-pieces-of={PIECE_BYTES}:v{};",
                cpio::RUNS_VERSION,
                pieces::PIECES_VERSION,
            ),
            None => String::new(),
        };
        vec![OutputDecl::new("segment", ArtifactKind::Archive).codec(
            "cpio",
            format!(
                "newc-v{};{members}{}",
                cpio::CPIO_FORMAT_VERSION,
                self.codec.params()
            ),
        )]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::exactly([ArtifactKind::Tree])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let tree = *ctx.input(0)?;
        let store = ctx.store().clone();
        let codec = self.codec;
        let member_bytes = self.member_bytes();
        ctx.blocking(move || {
            let tree = load_tree(&store, &tree)?;
            let list: Vec<&Entry> = tree.archive_entries().collect();
            // Without members, one run of everything.
            let target = member_bytes.unwrap_or(u64::MAX);
            let runs = cpio::archive_runs(&list, target).map_err(cpio_error)?;
            let blob = to_blob(&store, |out| {
                let (Codec::Gzip { .. }, [_, ..]) = (codec, runs.ranges.as_slice()) else {
                    // zstd and none stream one archive of everything.
                    let all = 0..list.len();
                    return write_member(out, codec, &runs, &list, all, &store);
                };
                let Codec::Gzip { level } = codec else {
                    unreachable!("only gzip segments are cut into members")
                };
                let threads = std::thread::available_parallelism().map_or(1, usize::from);
                let options = cpio::CpioOptions::default();
                let hints: Vec<usize> = runs
                    .ranges
                    .iter()
                    .map(|run| archive_size_hint(&list[run.clone()]))
                    .collect();
                // A run larger than a member (one file larger than SEGMENT_MEMBER_BYTES) is
                // one member compressed in pieces; its layout says where each piece's bytes are.
                let mut layouts = Vec::with_capacity(runs.ranges.len());
                let mut work = Vec::new();
                for (index, run) in runs.ranges.iter().enumerate() {
                    if hints[index] as u64 <= SEGMENT_MEMBER_BYTES {
                        layouts.push(None);
                        work.push(Work::Member(index));
                        continue;
                    }
                    let (layout, _) = runs
                        .write(
                            cpio::ArchiveLayout::default(),
                            &list,
                            run.clone(),
                            &store,
                            &options,
                        )
                        .map_err(cpio_error)?;
                    let count = layout.len().div_ceil(PIECE_BYTES).max(1);
                    work.extend((0..count).map(|piece| Work::Piece {
                        run: index,
                        bytes: piece * PIECE_BYTES..((piece + 1) * PIECE_BYTES).min(layout.len()),
                        last: piece + 1 == count,
                    }));
                    layouts.push(Some(layout));
                }
                let cost = |index: usize| match &work[index] {
                    Work::Member(run) => hints[*run],
                    // Its bytes and about as many compressed.
                    Work::Piece { .. } => 2 * PIECE_BYTES as usize,
                };
                let mut sum = MemberSum::default();
                in_order(
                    work.len(),
                    threads,
                    (&cost, MEMBERS_IN_MEMORY),
                    |index| match &work[index] {
                        Work::Member(run) => {
                            let mut raw = Vec::with_capacity(hints[*run]);
                            runs.write(
                                &mut raw,
                                &list,
                                runs.ranges[*run].clone(),
                                &store,
                                &options,
                            )
                            .map_err(cpio_error)?;
                            let mut member = codec.compress(&raw).map_err(io_error)?;
                            drop(raw);
                            member.shrink_to_fit();
                            Ok(Made::Member(member))
                        }
                        Work::Piece { run, bytes, last } => {
                            let layout = layouts[*run].as_ref().expect("pieced runs have layouts");
                            let raw = layout.read(&store, bytes.clone()).map_err(cpio_error)?;
                            let piece =
                                pieces::compress_piece(level, &raw, *last).map_err(io_error)?;
                            Ok(Made::Piece(piece))
                        }
                    },
                    |index, made| {
                        match made {
                            Made::Member(bytes) => out.write_all(&bytes),
                            Made::Piece(piece) => {
                                let Work::Piece { bytes, last, .. } = &work[index] else {
                                    unreachable!("pieces are made for pieces")
                                };
                                (|| {
                                    if bytes.start == 0 {
                                        out.write_all(&pieces::gzip_header(level))?;
                                    }
                                    out.write_all(&piece.deflate)?;
                                    sum.add(&piece);
                                    if *last {
                                        out.write_all(&std::mem::take(&mut sum).trailer())?;
                                    }
                                    Ok(())
                                })()
                            }
                        }
                        .map_err(io_error)
                    },
                )
            })?;
            Ok(ActionResult::new().with("segment", ArtifactKind::Archive, blob))
        })
        .await
    }
}

/// How many bytes of archive the members and pieces being compressed may hold together
/// (each also holds about as much compressed): a 16 MiB member shares the machine with a
/// piece or two, not with two more members. One item is always allowed.
const MEMBERS_IN_MEMORY: usize = 48 << 20;

/// What a segment's compression is cut into.
enum Work {
    /// Run `.0` of the archive runs, as one member.
    Member(usize),
    /// Bytes `bytes` of a run's archive, compressed as a piece of its member.
    Piece {
        run: usize,
        bytes: std::ops::Range<u64>,
        last: bool,
    },
}

/// A [`Work`] item done by a worker of [`in_order`].
enum Made {
    Member(Vec<u8>),
    Piece(pieces::Piece),
}

/// About the size of `entries` as a newc archive (headers, names, data, padding), so the
/// buffer a member is written into is allocated once.
fn archive_size_hint(entries: &[&Entry]) -> usize {
    let bytes: u64 = entries
        .iter()
        .map(|entry| {
            let data = match &entry.kind {
                crate::tree::EntryKind::File { blob } => blob.size,
                crate::tree::EntryKind::Symlink { target } => target.len() as u64,
                _ => 0,
            };
            110 + entry.path.len() as u64 + data + 8
        })
        .sum();
    usize::try_from(bytes + 512).unwrap_or(usize::MAX)
}

/// Makes items `0..count` with `make` on `threads` threads and hands them to `write` in order.
/// A thread takes the next item only while fewer than `threads` items are taken and not yet
/// written and their `cost` together stays within `budget` (one item is always allowed), so
/// memory stays bounded, and a slow item does not hold up the other threads more than that.
fn in_order<T: Send>(
    count: usize,
    threads: usize,
    (cost, budget): (&(dyn Fn(usize) -> usize + Sync), usize),
    make: impl Fn(usize) -> Result<T, ActionError> + Sync,
    mut write: impl FnMut(usize, T) -> Result<(), ActionError>,
) -> Result<(), ActionError> {
    use std::collections::BTreeMap;
    use std::sync::{Condvar, Mutex};
    struct Queue<T> {
        next: usize,
        written: usize,
        done: BTreeMap<usize, Result<T, ActionError>>,
        failed: bool,
        /// The cost of the items taken and not yet written.
        in_flight: usize,
    }
    let queue = Mutex::new(Queue {
        next: 0,
        written: 0,
        done: BTreeMap::new(),
        failed: false,
        in_flight: 0,
    });
    let changed = Condvar::new();
    let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
    let threads = threads.clamp(1, count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut q = lock();
                        // Wait while `threads` items are out, or while the next one would
                        // take the memory they hold past the budget (unless none is out).
                        while !q.failed
                            && q.next < count
                            && (q.next >= q.written + threads
                                || (q.in_flight > 0 && q.in_flight + cost(q.next) > budget))
                        {
                            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                        if q.failed || q.next >= count {
                            return;
                        }
                        q.in_flight += cost(q.next);
                        q.next += 1;
                        q.next - 1
                    };
                    // A panic becomes this item's error, so the writer is not left waiting.
                    let item =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(index)))
                            .unwrap_or_else(|_| {
                                Err(ActionError::internal(format!(
                                    "compressing segment member {index} panicked"
                                )))
                            });
                    let mut q = lock();
                    q.failed |= item.is_err();
                    q.done.insert(index, item);
                    changed.notify_all();
                }
            });
        }
        // This thread writes, in order, as items finish.
        let mut result = Ok(());
        while result.is_ok() && lock().written < count {
            let item = {
                let mut q = lock();
                loop {
                    let written = q.written;
                    if let Some(item) = q.done.remove(&written) {
                        break item;
                    }
                    q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let written = lock().written;
            result = item.and_then(|item| write(written, item));
            let mut q = lock();
            q.in_flight -= cost(q.written);
            q.written += 1;
            q.failed |= result.is_err();
            changed.notify_all();
        }
        result
    })
}

impl SegmentAction {
    /// File data per member, for the codecs whose segments are cut into members.
    fn member_bytes(&self) -> Option<u64> {
        matches!(self.codec, Codec::Gzip { .. }).then_some(SEGMENT_MEMBER_BYTES)
    }
}

fn cpio_error(e: cpio::CpioError) -> ActionError {
    ActionError::new(e.category(), e)
}

/// Entries `run` of `list` as one compressed archive (one gzip member) into `out`.
fn write_member(
    out: &mut dyn Write,
    codec: Codec,
    runs: &cpio::ArchiveRuns,
    list: &[&Entry],
    run: std::ops::Range<usize>,
    store: &Store,
) -> Result<(), ActionError> {
    let enc = codec.writer(out).map_err(io_error)?;
    let (enc, _) = runs
        .write(enc, list, run, store, &cpio::CpioOptions::default())
        .map_err(cpio_error)?;
    enc.finish().map_err(io_error)?;
    Ok(())
}

/// The initrd: raw microcode (if any), then every segment, concatenated.
#[derive(Debug)]
pub struct InitrdAction {
    /// Input 0 is the kernel's `ucode`, prepended as it is.
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
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("initrd", ArtifactKind::Archive)]
    }
    fn inputs(&self) -> InputKinds {
        if self.ucode {
            InputKinds::then_each([ArtifactKind::Blob], ArtifactKind::Archive)
        } else {
            InputKinds::each(ArtifactKind::Archive)
        }
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let parts = input_blobs(ctx);
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let blob = to_blob(&store, |out| {
                for part in &parts {
                    let mut f = store.open_blob(&part.digest)?;
                    std::io::copy(&mut f, out).map_err(io_error)?;
                }
                Ok(())
            })?;
            Ok(ActionResult::new().with("initrd", ArtifactKind::Archive, blob))
        })
        .await
    }
}

/// The whole root filesystem as one PAX tar (format `tar`): the same trees as the initrd, in
/// the same order, plus the kernel's `boot/` files. Each tree's root entry (`.`), if any, comes
/// before its entries, as in the initrd segments.
#[derive(Debug)]
pub struct RootfsTarAction {
    /// The format it is for (`tar`, `docker`): the docker format's tar holds one more tree,
    /// so it is another action of the build.
    pub format: &'static str,
}

#[async_trait]
impl Action for RootfsTarAction {
    fn kind(&self) -> &'static str {
        "rootfs-tar"
    }
    fn label(&self) -> String {
        match self.format {
            "tar" => "rootfs tar".into(),
            format => format!("rootfs tar ({format})"),
        }
    }
    fn identity(&self) -> String {
        match self.format {
            "tar" => "rootfs-tar".into(),
            format => format!("rootfs-tar {format}"),
        }
    }
    fn params(&self, _key: &mut KeyHasher) {}
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![tar_output()]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Tree)
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let blobs = input_blobs(ctx);
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let trees = blobs
                .iter()
                .map(|b| load_tree(&store, b))
                .collect::<Result<Vec<_>, _>>()?;
            let blob = to_blob(&store, |out| {
                write_tar(out, trees.iter().flat_map(Tree::archive_entries), &store)
            })?;
            Ok(ActionResult::new().with("tar", ArtifactKind::Archive, blob))
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
    fn params(&self, _key: &mut KeyHasher) {}
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![tar_output()]
    }
    fn inputs(&self) -> InputKinds {
        // kernel, initrd, cmdline, then the microcode when the kernel has one.
        InputKinds {
            fixed: vec![
                ArtifactKind::Blob,
                ArtifactKind::Archive,
                ArtifactKind::Blob,
            ],
            rest: Some(ArtifactKind::Blob),
        }
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let names = ["kernel", "initrd.img", "cmdline", "ucode.cpio"];
        let files: Vec<(&str, BlobRef)> = names.into_iter().zip(input_blobs(ctx)).collect();
        let store = ctx.store().clone();
        ctx.blocking(move || {
            // LinuxKit's order (kernel, initrd.img, cmdline, ucode.cpio), not path order.
            let entries: Vec<Entry> = files
                .into_iter()
                .filter(|(_, b)| b.size > 0)
                .map(|(name, blob)| Entry::file(name, blob, GENERATED_FILE))
                .collect();
            let blob = to_blob(&store, |out| write_tar(out, &entries, &store))?;
            Ok(ActionResult::new().with("tar", ArtifactKind::Archive, blob))
        })
        .await
    }
}

/// The output of the tar actions: a PAX tar, whose writer's version enters the key.
fn tar_output() -> OutputDecl {
    OutputDecl::new("tar", ArtifactKind::Archive)
        .codec("pax-tar", tarball::TAR_FORMAT_VERSION.to_string())
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

    fn codec_of(action: &dyn Action) -> String {
        let outputs = action.outputs();
        let codec = outputs[0].codec.as_ref().expect("a codec");
        format!("{} {}", codec.name, codec.version)
    }

    #[test]
    fn the_segment_codec_and_its_library_versions_are_declared() {
        let segment = |codec| SegmentAction {
            codec,
            what: "files".into(),
        };
        let gzip = codec_of(&segment(Codec::Gzip { level: 6 }));
        assert!(gzip.starts_with("cpio newc-v"), "{gzip}");
        assert!(gzip.contains("level=6"), "{gzip}");
        assert!(
            gzip.contains(&format!("libdeflate-{}", env!("LKB_LIBDEFLATE_VERSION"))),
            "{gzip}"
        );
        assert_ne!(gzip, codec_of(&segment(Codec::Gzip { level: 9 })));
        assert_ne!(gzip, codec_of(&segment(Codec::Zstd { level: 3 })));
        // The codec is not a param: `--explain` names it as an output change.
        assert!(changed(&segment(Codec::Gzip { level: 6 }), &segment(Codec::None)).is_empty());
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
        assert!(fields(&RootfsTarAction { format: "tar" }).is_empty());
        assert!(codec_of(&RootfsTarAction { format: "tar" }).starts_with("pax-tar "));
        assert!(codec_of(&KernelInitrdTarAction).starts_with("pax-tar "));
        assert_eq!(
            changed(
                &InitrdAction { ucode: true },
                &InitrdAction { ucode: false }
            ),
            ["ucode"]
        );
    }
}
