//! `build`: [`plan`] (expand → load → resolve → lower), then
//! execute → output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::errors::{Context, json_bytes};
use lkb_engine::{BuildOptions, BuildStats, CancelToken, Reporter, Scheduler};
use lkb_store::{BlobRef, MetaTable, Store};

use crate::ops::cache::RootRecord;
use crate::ops::plan::{Plan, PlanRequest, plan};
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
        ..
    } = plan;

    // execute
    let opts = BuildOptions {
        jobs: req.jobs.unwrap_or(BuildOptions::default().jobs).max(1),
        rebuild: req.rebuild,
        cancel,
        // Only what the requested outputs need; lowering adds nothing else, this keeps it so.
        targets: Some(
            targets
                .iter()
                .flat_map(|target| target.outputs.iter().map(|output| output.node))
                .collect(),
        ),
        ..BuildOptions::default()
    };
    let outcome = Scheduler::run(&graph, &store, &opts, Arc::clone(&reporter)).await?;
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

    // output: only now, after everything succeeded, touch the output directories.
    let mut written = Vec::new();
    for target in &targets {
        for spec in &target.outputs {
            let result = outcome
                .results
                .get(&spec.node)
                .context("an output's action has no result")?;
            let blob = result.get(&spec.artifact).with_context(|| {
                format!("no `{}` artifact for {}", spec.artifact, spec.file_name)
            })?;
            if blob.size == 0 {
                continue;
            }
            let path = target.dir.join(&spec.file_name);
            place_output(&store, blob, &path)?;
            written.push(path);
        }
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

/// What the store remembers about an output file it wrote.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct OutputRecord {
    digest: String,
    size: u64,
    inode: u64,
    mtime_ns: i128,
}

fn stat_record(path: &Path, blob: &BlobRef) -> Option<OutputRecord> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::metadata(path).ok()?;
    Some(OutputRecord {
        digest: blob.digest.to_string(),
        size: meta.size(),
        inode: meta.ino(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

/// Copies a blob to `path` atomically, unless the file there is the one lkb wrote last time.
fn place_output(store: &Store, blob: &BlobRef, path: &Path) -> crate::errors::Result<()> {
    let key = format!("output:{}", path.display());
    if let (Some(prev), Some(now)) = (
        store.get_meta(MetaTable::Roots, &key)?,
        stat_record(path, blob),
    ) && serde_json::from_slice::<OutputRecord>(&prev).ok().as_ref() == Some(&now)
        && now.size == blob.size
    {
        return Ok(());
    }
    let dir = path.parent().context("output path has no directory")?;
    fs_err::create_dir_all(dir)?;
    let file_name = path.file_name().context("output path has no name")?;
    let tmp = dir.join(format!(".{}.lkb-tmp", file_name.to_string_lossy()));
    fs_err::copy(store.blob_path(&blob.digest), &tmp)?;
    {
        use std::os::unix::fs::PermissionsExt;
        // std's Permissions is a plain type; fs_err has none of its own.
        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    }
    fs_err::rename(&tmp, path)?;
    if let Some(record) = stat_record(path, blob) {
        store.put_meta(MetaTable::Roots, &key, &json_bytes(&record)?)?;
    }
    Ok(())
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
