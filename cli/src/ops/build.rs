//! `build`: [`plan`] (expand → load → resolve → lower), then
//! execute → output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::errors::{Context, json_bytes};
use lkb_engine::{
    BuildError, BuildEvent, BuildOptions, BuildStats, CancelToken, Download, References, Remote,
    Reporter, Scheduler,
};
use lkb_rules::formats::OutputSpec;
use lkb_store::{Artifact, BlobRef, MetaTable, Store};

use crate::ops::cache::RootRecord;
use crate::ops::plan::{Plan, PlanRequest, RegistrySettings, plan};
use crate::settings::Settings;

pub use crate::ops::plan::{expand_targets, load_config, open_store};

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// What to plan: targets, formats, images.
    pub plan: PlanRequest,
    pub jobs: Option<usize>,
    pub rebuild: bool,
    /// Build a second time ignoring the cache and report actions whose outputs differ.
    pub check: bool,
    pub remote: RemoteRequest,
}

/// Which remote cache to use, if any.
#[derive(Debug, Clone, Default)]
pub struct RemoteRequest {
    /// `--remote-cache`: `None` takes `[cache] remote` from lkb.toml; an empty URL means none.
    pub url: Option<String>,
    /// Upload executed results (`--remote-upload`).
    pub upload: bool,
    /// `--remote-download`.
    pub download: Download,
    pub ca_cert: Option<PathBuf>,
    pub credentials: Option<lkb_remote::Credentials>,
    /// `--remote-timeout`.
    pub timeout: std::time::Duration,
}

impl RemoteRequest {
    /// The remote layer for a build, given the workspace's `[cache] remote` and how pulls
    /// reach registries (which an `oci://` cache shares). Makes no connection yet; a malformed
    /// URL is an error.
    fn open(
        &self,
        configured: Option<&str>,
        registry: &RegistrySettings,
    ) -> crate::errors::Result<Option<Arc<Remote>>> {
        let url = match &self.url {
            Some(url) => url.as_str(),
            None => configured.unwrap_or_default(),
        };
        if url.is_empty() {
            return Ok(None);
        }
        // Docker's config.json is read only for a registry cache, as only pulls read it.
        let registry = if url.starts_with("oci://") {
            registry.load()?
        } else {
            lkb_rules::oci::RegistryConfig::default()
        };
        let options = lkb_remote::RemoteOptions {
            ca_cert: self.ca_cert.clone(),
            credentials: self.credentials.clone(),
            timeouts: lkb_remote::Timeouts {
                request: self.timeout,
                ..Default::default()
            },
            registry,
        };
        let cache = lkb_remote::connect(url, &options)?;
        let references: References = Arc::new(|store: &Store, artifact: &Artifact| {
            lkb_rules::gc::reference_blobs(store, artifact).map_err(|error| error.into())
        });
        Ok(Some(Arc::new(Remote::new(
            cache,
            self.upload,
            self.download,
            references,
        ))))
    }
}

/// `--check` found actions whose outputs differ between two executions.
#[derive(Debug, thiserror::Error)]
#[error("not reproducible: {} action(s) gave different outputs when run again:\n  {}", .actions.len(), .actions.join("\n  "))]
pub struct NotReproducible {
    pub actions: Vec<String>,
}

/// Two runs of one action disagreeing is a bug in that action (or a non-hermetic input).
impl lkb_store::Categorized for NotReproducible {
    fn category(&self) -> lkb_store::ErrorCategory {
        lkb_store::ErrorCategory::Internal
    }
}

/// What a build did.
#[derive(Debug)]
pub struct BuildReport {
    pub targets: Vec<String>,
    pub outputs: Vec<PathBuf>,
    pub stats: BuildStats,
}

/// Builds every target of `req`: [`plan`], then [`execute`]. Images whose pin moved are
/// announced through `notify` before anything runs.
pub async fn build(
    settings: &Settings,
    req: &BuildRequest,
    reporter: Arc<dyn Reporter>,
    notify: &(dyn Fn(&str) + Sync),
    cancel: CancelToken,
) -> crate::errors::Result<BuildReport> {
    let plan = plan(settings, &req.plan, notify).await?;
    for moved in &plan.moved {
        notify(&moved.to_string());
    }
    execute(plan, req, reporter, cancel).await
}

/// Runs a plan's graph, writes its outputs and records the GC roots, and (only then) updates
/// `lkb.lock`.
pub async fn execute(
    plan: Plan,
    req: &BuildRequest,
    reporter: Arc<dyn Reporter>,
    cancel: CancelToken,
) -> crate::errors::Result<BuildReport> {
    let Plan {
        store,
        graph,
        targets,
        lock,
        remote_cache,
        registry,
        ..
    } = plan;
    let remote = req.remote.open(remote_cache.as_deref(), &registry)?;

    // execute
    let opts = BuildOptions {
        jobs: req.jobs.unwrap_or(BuildOptions::default().jobs).max(1),
        rebuild: req.rebuild,
        cancel,
        // Only what the requested outputs need; lowering adds nothing else, this keeps it so.
        targets: Some(
            targets
                .iter()
                .flat_map(|target| target.outputs.iter().flat_map(OutputSpec::nodes))
                .collect(),
        ),
        remote,
        ..BuildOptions::default()
    };
    let outcome = match run_and_fetch(&graph, &store, &opts, &reporter, &targets).await {
        Err(Failure::Lost(lost)) => {
            // A remote hit whose blob the cache lost by the time it was needed: build again
            // without the cache, which rebuilds exactly what needed that blob.
            // One warning per build: a cache already given up on has said so.
            if opts.remote.as_ref().is_some_and(|remote| remote.active()) {
                reporter.event(&BuildEvent::Warning {
                    message: format!("{lost}; building again without the remote cache"),
                });
            }
            let local = BuildOptions {
                remote: None,
                ..opts.clone()
            };
            let mut outcome = Scheduler::run(&graph, &store, &local, Arc::clone(&reporter)).await?;
            outcome.stats.remote = opts.remote.as_ref().map(|remote| remote.stats());
            outcome
        }
        Err(Failure::Build(error)) => return Err(error.into()),
        Ok(outcome) => outcome,
    };
    if req.check {
        let again = BuildOptions {
            rebuild: true,
            ..opts.clone()
        };
        let second = Scheduler::run(&graph, &store, &again, reporter).await?;
        let differing: Vec<String> = outcome
            .results
            .iter()
            .filter(|(node, result)| second.results.get(node) != Some(result))
            .filter_map(|(node, _)| graph.action(*node).map(|a| a.label()))
            .collect();
        if !differing.is_empty() {
            return Err(NotReproducible { actions: differing }.into());
        }
    }

    // output: only now, after everything succeeded, touch the output directories. Every
    // output is first copied to a temporary file beside it; only when all are staged are they
    // renamed into place, so a failure leaves every output as it was and no temporary file.
    // The exception is an output made of parts whose head is unchanged (an initrd whose
    // `files:` segment changed): its changed tail is written into the file in place, after
    // all others are staged (see [`Staged::Tail`]).
    let mut staged = Vec::new();
    let mut written = Vec::new();
    for target in &targets {
        for spec in &target.outputs {
            let blobs = output_blobs(&outcome, spec)?;
            if blobs.iter().all(|blob| blob.size == 0) {
                continue;
            }
            let path = target.dir.join(&spec.file_name);
            if let Some(stage) = stage_output(&store, &blobs, spec.len, &path)? {
                staged.push(stage);
            }
            written.push(path);
        }
    }
    for stage in staged {
        stage.publish(&store)?;
    }
    for target in &targets {
        RootRecord::of_build(&store, &graph, &outcome, &target.outputs, &lock.lock)
            .put(&store, &target.key)?;
    }
    lock.write()?;
    Ok(BuildReport {
        targets: targets.into_iter().map(|t| t.label).collect(),
        outputs: written,
        stats: outcome.stats,
    })
}

/// Why [`run_and_fetch`] did not produce an outcome.
enum Failure {
    Build(BuildError),
    /// A remote hit's blob is gone from the cache.
    Lost(lkb_engine::RemoteLost),
}

/// Runs the graph and, with a remote cache, brings the blobs of every output file into the
/// store (a build without the bytes leaves them at the cache until now).
async fn run_and_fetch(
    graph: &lkb_engine::Graph,
    store: &Store,
    opts: &BuildOptions,
    reporter: &Arc<dyn Reporter>,
    targets: &[crate::ops::plan::PlannedTarget],
) -> Result<lkb_engine::BuildOutcome, Failure> {
    let outcome = match Scheduler::run(graph, store, opts, Arc::clone(reporter)).await {
        Ok(outcome) => outcome,
        Err(BuildError::RemoteLost { source, .. }) => return Err(Failure::Lost(source)),
        Err(error) => return Err(Failure::Build(error)),
    };
    let mut outcome = outcome;
    if let Some(remote) = &opts.remote {
        let mut blobs = Vec::new();
        for spec in targets.iter().flat_map(|target| &target.outputs) {
            // A missing result is reported by the output step.
            blobs.extend(output_blobs(&outcome, spec).unwrap_or_default());
        }
        remote
            .materialize_blobs(store, &blobs)
            .await
            .map_err(Failure::Lost)?;
        outcome.stats.remote = Some(remote.stats());
    }
    Ok(outcome)
}

/// The blobs that make up one output file, in order.
fn output_blobs(
    outcome: &lkb_engine::BuildOutcome,
    spec: &OutputSpec,
) -> crate::errors::Result<Vec<BlobRef>> {
    spec.parts()
        .map(|(node, artifact)| {
            let result = outcome
                .results
                .get(&node)
                .context("an output's action has no result")?;
            result
                .get(artifact)
                .copied()
                .with_context(|| format!("no `{artifact}` artifact for {}", spec.file_name))
        })
        .collect()
}

/// What the store remembers about an output file it wrote, to leave it alone next time.
///
/// Re-hashing the file on every build would cost a no-op build ~100 ms per 125 MiB initrd, so
/// the check compares the file's identity instead: device, inode, size, mtime and ctime. A user
/// can set the mtime back (`touch -d`, `utime`) after editing a file, but not the ctime, which
/// the kernel sets to now on every write, `chmod` and `utime`; so any change made to the file
/// after lkb recorded it makes the record differ, and the output is written again.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq, Debug)]
struct OutputRecord {
    digest: String,
    device: u64,
    inode: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    /// Hard links to the file; records written before this field read as 1.
    #[serde(default = "one_link")]
    links: u64,
}

fn one_link() -> u64 {
    1
}

impl OutputRecord {
    /// The record of the file at `path` (not following a symlink) holding `blobs` one after
    /// the other, or `None` if there is no regular file there.
    fn of(path: &Path, blobs: &[BlobRef]) -> Option<OutputRecord> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs_err::symlink_metadata(path).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        let digests: Vec<String> = blobs.iter().map(|blob| blob.digest.to_string()).collect();
        Some(OutputRecord {
            digest: digests.join("+"),
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            links: meta.nlink(),
        })
    }
}

/// An output ready to be put in place.
enum StagedOutput {
    /// Copied to a temporary file beside its path, to be renamed over it. Dropping it removes
    /// the temporary file.
    Whole {
        tmp: tempfile::TempPath,
        path: PathBuf,
        blobs: Vec<BlobRef>,
    },
    /// The file at `path` is the one lkb wrote last time and holds `blobs[..keep]` already:
    /// only the parts from `keep` on are written, at their offset, and the file is cut to the
    /// new length. A changed `files:` entry then costs its segment, not the whole initrd.
    Tail {
        path: PathBuf,
        blobs: Vec<BlobRef>,
        keep: usize,
    },
}

impl StagedOutput {
    /// Puts the output in place (a rename over the output path, replacing a symlink there and
    /// never following it; or the tail written into the file) and records the new file.
    fn publish(self, store: &Store) -> crate::errors::Result<()> {
        let (path, blobs) = match self {
            StagedOutput::Whole { tmp, path, blobs } => {
                tmp.persist(&path)
                    .map_err(|error| error.error)
                    .with_context(|| format!("cannot put output {} in place", path.display()))?;
                (path, blobs)
            }
            StagedOutput::Tail { path, blobs, keep } => {
                write_tail(store, &path, &blobs, keep)?;
                (path, blobs)
            }
        };
        if let Some(record) = OutputRecord::of(&path, &blobs) {
            store.put_meta(MetaTable::Roots, &output_key(&path), &json_bytes(&record)?)?;
        }
        Ok(())
    }
}

/// Writes `blobs[keep..]` into the existing file at `path` after the parts it keeps, and cuts
/// it to the new length. The file is opened without following a symlink.
fn write_tail(
    store: &Store,
    path: &Path,
    blobs: &[BlobRef],
    keep: usize,
) -> crate::errors::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("cannot open output {}", path.display()))?;
    let mut at: u64 = blobs[..keep].iter().map(|blob| blob.size).sum();
    for blob in &blobs[keep..] {
        at += store
            .copy_blob_to_at(&blob.digest, &file, at)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.set_len(at)
        .with_context(|| format!("cannot cut {} to its length", path.display()))?;
    Ok(())
}

/// How many leading parts of `blobs` the file at `path` already holds, if lkb may update it in
/// place: it is the file lkb recorded (identity unchanged since), it is made of parts, the
/// first part is the same, and it has no other hard link (writing into it would change the
/// other name's content too, where a rename would not).
fn reusable_head(recorded: &OutputRecord, now: &OutputRecord, blobs: &[BlobRef]) -> Option<usize> {
    let identity = |r: &OutputRecord| (r.device, r.inode, r.size, r.mtime_ns, r.ctime_ns);
    let same_file = identity(recorded) == identity(now);
    if !same_file || now.links != 1 || blobs.len() < 2 {
        return None;
    }
    let old: Vec<&str> = recorded.digest.split('+').collect();
    let keep = old
        .iter()
        .zip(blobs)
        .take_while(|(old, new)| **old == new.digest.to_string())
        .count();
    (keep > 0).then_some(keep)
}

fn output_key(path: &Path) -> String {
    format!("output:{}", path.display())
}

/// Copies a blob (extended to `len` with a hole) to a new temporary file beside `path`, unless the file at `path` is the one
/// lkb wrote there last time (see [`OutputRecord`]). The temporary file has an unpredictable
/// name and is created with `O_EXCL`, so a symlink planted in the output directory is never
/// followed.
fn stage_output(
    store: &Store,
    blobs: &[BlobRef],
    len: Option<u64>,
    path: &Path,
) -> crate::errors::Result<Option<StagedOutput>> {
    // The file's length: the blobs', or more for a disk whose trailing zeros it leaves out.
    let content: u64 = blobs.iter().map(|blob| blob.size).sum();
    let len = len.unwrap_or(content).max(content);
    let recorded = store
        .get_meta(MetaTable::Roots, &output_key(path))?
        .and_then(|bytes| serde_json::from_slice::<OutputRecord>(&bytes).ok());
    if let (Some(recorded), Some(now)) = (recorded, OutputRecord::of(path, blobs)) {
        if recorded == now && now.size == len {
            return Ok(None);
        }
        // Only a file exactly its parts (no extension with zeros) is updated in place.
        if len == content
            && let Some(keep) = reusable_head(&recorded, &now, blobs)
        {
            return Ok(Some(StagedOutput::Tail {
                path: path.to_path_buf(),
                blobs: blobs.to_vec(),
                keep,
            }));
        }
    }
    let dir = path.parent().context("output path has no directory")?;
    let file_name = path.file_name().context("output path has no name")?;
    fs_err::create_dir_all(dir)?;
    if fs_err::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) {
        return Err(crate::errors::Error::user(format!(
            "cannot write output {}: a directory is in the way",
            path.display()
        )));
    }
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".lkb-tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Exactly rw-r--r--, whatever the umask; std's Permissions (fs_err has none).
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the mode of {}", tmp.path().display()))?;
    }
    // copy_file_range per data range (a reflink where the file system has them); a disk
    // image's holes stay holes.
    let mut at = 0;
    for blob in blobs {
        at += store
            .copy_blob_to_at(&blob.digest, tmp.as_file(), at)
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    }
    if len > content {
        tmp.as_file()
            .set_len(len)
            .with_context(|| format!("cannot extend {}", tmp.path().display()))?;
    }
    Ok(Some(StagedOutput::Whole {
        tmp: tmp.into_temp_path(),
        path: path.to_path_buf(),
        blobs: blobs.to_vec(),
    }))
}

/// Groups the report's outputs by directory for printing.
pub fn outputs_by_dir(outputs: &[PathBuf]) -> BTreeMap<PathBuf, Vec<String>> {
    let mut map: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for o in outputs {
        let dir = o.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = o
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        map.entry(dir).or_default().push(name);
    }
    map
}
