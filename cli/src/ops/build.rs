//! `build`: expand → load → resolve → lower → execute → output.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use lkb_engine::{BuildOptions, BuildStats, CancelToken, GraphBuilder, Reporter, Scheduler};
use lkb_rules::actions::{FileData, FileItem};
use lkb_rules::compress::Codec;
use lkb_rules::config::{self, Config, FileContent, IdMap};
use lkb_rules::formats::{Format, OutputSpec};
use lkb_rules::layer::Limits;
use lkb_rules::lock::{LOCK_FILE, LockError, LockFile};
use lkb_rules::lower::{LowerInput, lower};
use lkb_rules::oci::{
    DockerConfig, ImageSources, OciLayout, Platform, RegistryClient, RegistryConfig,
};
use lkb_rules::resolve::Resolver;
use lkb_rules::workspace::{self, Target, Workspace};
use lkb_store::{BlobRef, MetaTable, Store};

use crate::errors::UsageError;
use crate::settings::Settings;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub targets: Vec<String>,
    pub formats: Vec<Format>,
    pub dir: Option<PathBuf>,
    pub name: Option<String>,
    pub jobs: Option<usize>,
    pub arch: Option<String>,
    pub locked: bool,
    pub offline: bool,
    pub pull: bool,
    pub rebuild: bool,
    pub codec: Codec,
    /// Build a second time ignoring the cache and report actions whose outputs differ.
    pub check: bool,
}

/// `--check` found actions whose outputs differ between two executions.
#[derive(Debug, thiserror::Error)]
#[error("not reproducible: {} action(s) gave different outputs when run again:\n  {}", .actions.len(), .actions.join("\n  "))]
pub struct NotReproducible {
    pub actions: Vec<String>,
}

impl NotReproducible {
    pub fn category(&self) -> lkb_store::ErrorCategory {
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

/// Turns the command-line targets into build targets.
pub fn expand_targets(
    args: &[String],
    cwd: &Path,
    name: Option<&str>,
) -> anyhow::Result<(Option<Workspace>, Vec<Target>)> {
    let workspace = Workspace::discover(cwd)?;
    let labels = args.iter().filter(|a| workspace::is_label(a)).count();
    if labels > 0 && labels < args.len() {
        bail!(UsageError(
            "give either labels (//pkg:name) or yml files, not both".into()
        ));
    }
    let mut targets = Vec::new();
    if labels > 0 {
        let ws = workspace
            .as_ref()
            .ok_or_else(|| workspace::WorkspaceError::NoWorkspace {
                start: cwd.to_path_buf(),
                label: args[0].clone(),
            })?;
        for label in args {
            for t in ws.expand(label)? {
                if !targets.iter().any(|x: &Target| x.label == t.label) {
                    targets.push(t);
                }
            }
        }
    } else {
        let files: Vec<PathBuf> = args.iter().map(|a| cwd.join(a)).collect();
        targets.push(workspace::target_from_files(&files, workspace.as_ref())?);
    }
    if let Some(name) = name {
        if targets.len() > 1 {
            bail!(UsageError("--name needs exactly one target".into()));
        }
        targets[0].name = name.to_string();
    }
    Ok((workspace, targets))
}

/// Parses and merges the yml files of a target (pure apart from reading the files).
pub fn load_config(target: &Target) -> anyhow::Result<Config> {
    let mut configs = Vec::new();
    for file in &target.files {
        let text = fs_err::read_to_string(file)?;
        configs.push(config::parse_config(&text, file)?);
    }
    Ok(config::merge(configs)?)
}

/// Every image reference a config uses, canonical.
pub fn image_refs(config: &Config) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    if let Some(image) = config.kernel.as_ref().and_then(|k| k.image()) {
        refs.insert(config::expand_ref(image));
    }
    for i in &config.init {
        refs.insert(config::expand_ref(&i.value));
    }
    for spec in config
        .onboot
        .iter()
        .chain(&config.onshutdown)
        .chain(&config.services)
    {
        refs.insert(spec.reference());
    }
    for v in &config.volumes {
        if let Some(image) = &v.image {
            refs.insert(config::expand_ref(&image.value));
        }
    }
    refs
}

pub fn open_store(settings: &Settings, reporter: &dyn Fn(&str)) -> anyhow::Result<Store> {
    let store = Store::open_with(&settings.store, reporter)
        .with_context(|| format!("cannot open the store at {}", settings.store.display()))?;
    Ok(store)
}

/// Builds every target of `req`.
pub async fn build(
    settings: &Settings,
    req: &BuildRequest,
    reporter: Arc<dyn Reporter>,
    notify: &(dyn Fn(&str) + Sync),
    cancel: CancelToken,
) -> anyhow::Result<BuildReport> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let (workspace, targets) = expand_targets(&req.targets, &cwd, req.name.as_deref())?;
    let formats = if req.formats.is_empty() {
        vec![Format::KernelInitrd]
    } else {
        req.formats.clone()
    };

    // load
    let mut configs = Vec::new();
    for target in &targets {
        let config = load_config(target)?;
        for warning in &config.warnings {
            notify(&format!("warning: {warning}"));
        }
        configs.push(config);
    }

    let store = open_store(settings, notify)?;

    // resolve
    let platform = match &req.arch {
        Some(arch) => Platform::linux(arch),
        None => Platform::host(),
    };
    let layouts = workspace
        .as_ref()
        .map(|ws| ws.layouts())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| {
            OciLayout::open(&p).with_context(|| format!("cannot open OCI layout {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let registry = if req.offline {
        None
    } else {
        let docker = match &settings.docker_config {
            Some(path) if path.exists() => DockerConfig::load(path)?,
            _ => DockerConfig::empty(),
        };
        let insecure = workspace
            .as_ref()
            .map(|ws| ws.manifest.images.insecure_registries.clone())
            .unwrap_or_default();
        Some(RegistryClient::new(RegistryConfig {
            insecure,
            docker_config: docker,
            ..RegistryConfig::default()
        })?)
    };
    let sources = Arc::new(ImageSources::new(layouts, registry));
    let lock_path = workspace.as_ref().map(|ws| ws.root.join(LOCK_FILE));
    let old_lock = match &lock_path {
        Some(p) => LockFile::read(p)?,
        None => LockFile::default(),
    };
    let refs: BTreeSet<String> = configs.iter().flat_map(image_refs).collect();
    let resolver = Resolver {
        sources: Arc::clone(&sources),
        store: store.clone(),
        platform,
        lock: old_lock.clone(),
        pull: req.pull,
        offline: req.offline,
    };
    let (images, new_lock) = resolver.resolve_all(&refs).await?;
    let changes = old_lock.diff(&new_lock);
    if req.locked && !changes.is_empty() {
        return Err(LockError::Drift {
            changes: changes.join("\n"),
        }
        .into());
    }

    // lower
    let mut g = GraphBuilder::new();
    let mut planned: Vec<(PathBuf, Vec<OutputSpec>)> = Vec::new();
    for (target, config) in targets.iter().zip(&configs) {
        let files = resolve_files(config, target, settings, &store)?;
        let input = LowerInput {
            config,
            images: &images,
            files,
            sources: Arc::clone(&sources) as _,
            codec: req.codec,
            limits: Limits::default(),
        };
        let outputs = lower(&mut g, &target.name, &formats, &input)
            .with_context(|| format!("cannot plan {}", target.label))?;
        let dir = match &req.dir {
            Some(d) => cwd.join(d),
            None => workspace
                .as_ref()
                .map_or_else(|| cwd.clone(), |ws| ws.root.clone())
                .join("lkb-out")
                .join(&target.package),
        };
        planned.push((dir, outputs));
    }
    let graph = g.build()?;

    // execute
    let opts = BuildOptions {
        jobs: req.jobs.unwrap_or(BuildOptions::default().jobs).max(1),
        rebuild: req.rebuild,
        cancel,
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
    for (dir, outputs) in &planned {
        for spec in outputs {
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
            let path = dir.join(&spec.file_name);
            place_output(&store, blob, &path)?;
            written.push(path);
        }
    }
    for (target, (_, outputs)) in targets.iter().zip(&planned) {
        let roots: Vec<String> = outputs
            .iter()
            .filter_map(|o| outcome.results.get(&o.node)?.get(&o.artifact))
            .map(|b| b.digest.to_string())
            .collect();
        store.put_meta(
            MetaTable::Roots,
            &target.label,
            serde_json::to_string(&roots)?.as_bytes(),
        )?;
    }
    if let Some(path) = &lock_path
        && !changes.is_empty()
    {
        new_lock.write(path)?;
    }
    Ok(BuildReport {
        targets: targets.into_iter().map(|t| t.label).collect(),
        outputs: written,
        stats: outcome.stats,
    })
}

/// Turns `files:` entries into lowering inputs: reads host sources into the store, resolves
/// owners, renders metadata.
fn resolve_files(
    config: &Config,
    target: &Target,
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<Vec<FileItem>> {
    let ids = IdMap::from_config(config);
    let base = target
        .files
        .last()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut items = Vec::new();
    for (index, spec) in config.files.iter().enumerate() {
        let data = match spec.content() {
            FileContent::Directory => FileData::Directory,
            FileContent::Symlink(t) => FileData::Symlink(t.to_string()),
            FileContent::Contents(c) => FileData::Inline(c.as_bytes().to_vec()),
            FileContent::Metadata(_) => {
                bail!(UsageError(format!(
                    "{}: files[{index}]: `metadata` files are not supported by lkb yet",
                    spec.span
                )))
            }
            FileContent::Source(source) => {
                let path = match (source.strip_prefix("~/"), &settings.home) {
                    (Some(rest), Some(home)) => home.join(rest),
                    _ => base.join(source),
                };
                match fs_err::File::open(&path) {
                    Ok(mut file) => FileData::Blob(store.put_reader(&mut file, None)?),
                    Err(_) if spec.optional => continue,
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(format!(
                            "{}: files[{index}]: cannot read source {source}",
                            spec.span
                        )));
                    }
                }
            }
        };
        let uid = spec
            .uid
            .as_ref()
            .map(|u| ids.resolve_id(u))
            .transpose()?
            .unwrap_or(0);
        let gid = spec
            .gid
            .as_ref()
            .map(|g| ids.resolve_id(g))
            .transpose()?
            .unwrap_or(0);
        items.push(FileItem {
            path: spec.archive_path().to_string(),
            data,
            mode: spec.effective_mode(),
            uid,
            gid,
            parent_mode: spec.parent_dir_mode(),
            index,
        });
    }
    Ok(items)
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
fn place_output(store: &Store, blob: &BlobRef, path: &Path) -> anyhow::Result<()> {
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
        fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    }
    fs_err::rename(&tmp, path)?;
    if let Some(record) = stat_record(path, blob) {
        store.put_meta(MetaTable::Roots, &key, &serde_json::to_vec(&record)?)?;
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
