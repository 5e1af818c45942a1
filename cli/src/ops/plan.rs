//! `plan`: expand → load → resolve → lower, shared by `build` and `query`.
//!
//! Planning reads yml files and host sources, resolves images (through `lkb.lock`, OCI
//! layouts and registries, storing manifests and configs) and lowers every target into one
//! action graph. It runs no action and writes nothing outside the store: the lock file is
//! written by [`build`](crate::ops::build) after a successful build ([`LockUpdate::write`]).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::errors::Context;
use lkb_engine::{Graph, GraphBuilder};
use lkb_rules::actions::file_items;
use lkb_rules::compress::Codec;
use lkb_rules::config::{self, Config};
use lkb_rules::formats::{DEFAULT_BOOT_IMAGE, Format, MediaOptions, OutputSpec};
use lkb_rules::layer::Limits;
use lkb_rules::lock::{LOCK_FILE, LockError, LockFile};
use lkb_rules::lower::{LowerInput, SbomOptions, index_requests, lower};
use lkb_rules::oci::{
    DockerConfig, ImageRef, ImageSources, OciLayout, Platform, RegistryClient, RegistryConfig,
};
use lkb_rules::resolve::Resolver;
use lkb_rules::workspace::{self, Target, Workspace};
use lkb_store::{BlobDigest, Store};

use crate::errors::UsageError;
use crate::settings::Settings;

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub targets: Vec<String>,
    /// Output formats; empty means `kernel+initrd`.
    pub formats: Vec<Format>,
    pub dir: Option<PathBuf>,
    pub name: Option<String>,
    pub arch: Option<String>,
    pub locked: bool,
    pub offline: bool,
    pub pull: bool,
    pub codec: Codec,
    /// Leave out `sbom.spdx.json`.
    pub no_sbom: bool,
    /// `--size` in bytes, for the disk formats.
    pub size: Option<u64>,
}

/// An image whose pin changed since `lkb.lock` was written: the same ref now names another
/// manifest (the tag moved, or the OCI layout holds a new image under it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMove {
    /// The canonical ref, as in `lkb.lock`.
    pub reference: String,
    pub platform: String,
    /// The manifest digest of the old pin.
    pub old: BlobDigest,
    /// The manifest digest it resolves to now.
    pub new: BlobDigest,
}

impl ImageMove {
    /// What fetches of this image name as their [`source`](lkb_engine::Action::source), so
    /// reasons downstream can say the image moved.
    pub fn source(&self) -> String {
        let canonical = ImageRef::parse(&self.reference)
            .map_or_else(|_| self.reference.clone(), |r| r.canonical());
        format!("image {canonical}")
    }
}

impl fmt::Display for ImageMove {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "image {} moved: {} → {}",
            self.reference, self.old, self.new
        )
    }
}

/// The pins of `old` that `new` points elsewhere.
fn moved_images(old: &LockFile, new: &LockFile) -> Vec<ImageMove> {
    new.pins
        .iter()
        .filter_map(|(key, pin)| {
            let before = old.pins.get(key)?;
            (before.manifest != pin.manifest).then(|| ImageMove {
                reference: key.reference.clone(),
                platform: key.platform.clone(),
                old: before.manifest,
                new: pin.manifest,
            })
        })
        .collect()
}

/// One planned target: where its outputs go and which nodes produce them.
#[derive(Debug)]
pub struct PlannedTarget {
    pub label: String,
    /// The label made unique across workspaces sharing a store: `/abs/workspace//pkg:name`,
    /// or the absolute path of the yml outside a workspace. Build history and GC roots are
    /// kept under it.
    pub key: String,
    /// The output directory.
    pub dir: PathBuf,
    pub outputs: Vec<OutputSpec>,
}

/// The lock file as it should be after a successful build.
#[derive(Debug)]
pub struct LockUpdate {
    /// `lkb.lock` of the workspace; `None` outside a workspace.
    pub path: Option<PathBuf>,
    pub lock: LockFile,
    /// How it differs from the file on disk (empty: nothing to write).
    pub changes: Vec<String>,
}

impl LockUpdate {
    /// Writes the lock file if there is one and it changed.
    pub fn write(&self) -> crate::errors::Result<()> {
        if let Some(path) = &self.path
            && !self.changes.is_empty()
        {
            self.lock.write(path)?;
        }
        Ok(())
    }
}

/// Every target lowered into one graph, ready to execute or query.
#[derive(Debug)]
pub struct Plan {
    pub store: Store,
    pub graph: Graph,
    pub targets: Vec<PlannedTarget>,
    pub lock: LockUpdate,
    /// Images whose pin moved since the lock file was written.
    pub moved: Vec<ImageMove>,
    /// `[cache] remote` of the workspace's `lkb.toml`.
    pub remote_cache: Option<String>,
    /// Where registry settings come from; an `oci://` remote cache uses them as pulls do.
    pub registry: RegistrySettings,
}

/// How lkb reaches registries, for pulls and for an `oci://` remote cache alike: the
/// workspace's insecure (plain-HTTP) registries and Docker's config.json for credentials. The
/// config file is read only when a registry is used ([`RegistrySettings::load`]), so an
/// offline build never reads it.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    insecure: Vec<String>,
    docker_config: Option<PathBuf>,
}

impl RegistrySettings {
    pub(crate) fn new(settings: &Settings, workspace: Option<&Workspace>) -> RegistrySettings {
        RegistrySettings {
            insecure: workspace
                .map(|ws| ws.manifest.images.insecure_registries.clone())
                .unwrap_or_default(),
            docker_config: settings.docker_config.clone(),
        }
    }

    /// The registry client's configuration (reads Docker's config.json, if there is one).
    pub fn load(&self) -> crate::errors::Result<RegistryConfig> {
        let docker_config = match &self.docker_config {
            Some(path) if path.exists() => DockerConfig::load(path)?,
            _ => DockerConfig::empty(),
        };
        Ok(RegistryConfig {
            insecure: self.insecure.clone(),
            docker_config,
            ..RegistryConfig::default()
        })
    }
}

/// Turns the command-line targets into build targets.
pub fn expand_targets(
    args: &[String],
    cwd: &Path,
    name: Option<&str>,
) -> crate::errors::Result<(Option<Workspace>, Vec<Target>)> {
    let workspace = Workspace::discover(cwd)?;
    let labels = args.iter().filter(|a| workspace::is_label(a)).count();
    if labels > 0 && labels < args.len() {
        return Err(
            UsageError("give either labels (//pkg:name) or yml files, not both".into()).into(),
        );
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
        check_name(name)?;
        if targets.len() > 1 {
            return Err(UsageError("--name needs exactly one target".into()).into());
        }
        targets[0].name = name.to_string();
    }
    Ok((workspace, targets))
}

/// `--name` becomes the first part of every output's file name in the output directory, so it
/// must be one plain file-name part: not empty, not `.` or `..`, no `/` (nor a NUL byte).
fn check_name(name: &str) -> crate::errors::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(UsageError(format!(
            "--name {name:?} is not a plain file name (it must be non-empty, not `.` or `..`, \
             and without `/`)"
        ))
        .into());
    }
    Ok(())
}

/// Parses and merges the yml files of a target (pure apart from reading the files, and
/// `git` for `@pkg:` templates).
pub fn load_config(target: &Target) -> crate::errors::Result<Config> {
    let mut configs = Vec::new();
    for file in &target.files {
        let text = read_config_file(file)?;
        configs.push(config::parse_local_config(&text, file)?);
    }
    Ok(config::merge(configs)?)
}

/// The text of a yml file: read up to one byte more than [`config::MAX_CONFIG_BYTES`] (so an
/// endless file such as a device or FIFO stops too), then checked as UTF-8.
fn read_config_file(file: &Path) -> crate::errors::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs_err::File::open(file)?
        .take(config::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(config::config_text(bytes, file)?)
}

/// [`load_config`] for every target, in order, passing each config's warnings to `notify`.
pub(crate) fn load_configs(
    targets: &[Target],
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<Vec<Config>> {
    let mut configs = Vec::new();
    for target in targets {
        let config = load_config(target)?;
        for warning in &config.warnings {
            notify(&format!("warning: {warning}"));
        }
        configs.push(config);
    }
    Ok(configs)
}

/// Where images come from: the workspace's OCI layouts (those that exist), then the registry
/// (configured by [`RegistrySettings`]), unless `offline`.
pub(crate) fn image_sources(
    settings: &Settings,
    workspace: Option<&Workspace>,
    offline: bool,
) -> crate::errors::Result<ImageSources> {
    let (layouts, missing): (Vec<PathBuf>, Vec<PathBuf>) = workspace
        .map(Workspace::layouts)
        .unwrap_or_default()
        .into_iter()
        .partition(|p| p.exists());
    let layouts = layouts
        .into_iter()
        .map(|p| {
            OciLayout::open(&p).with_context(|| format!("cannot open OCI layout {}", p.display()))
        })
        .collect::<crate::errors::Result<Vec<_>>>()?;
    let registry = if offline {
        None
    } else {
        let config = RegistrySettings::new(settings, workspace).load()?;
        Some(RegistryClient::new(config)?)
    };
    Ok(ImageSources::new(layouts, registry).with_missing_layouts(missing))
}

/// Opens the store. Waiting for another process's lock happens on a blocking thread, so the
/// caller's future stays cancellable (Ctrl-C) while it waits; the wait message goes to `notify`.
pub async fn open_store(
    settings: &Settings,
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<Store> {
    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel::<String>();
    let root = settings.store.clone();
    let mut opening = tokio::task::spawn_blocking(move || {
        Store::open_with(&root, &|message: &str| {
            let _ = tx.send(message.to_string());
        })
    });
    let opened = loop {
        tokio::select! {
            Some(message) = messages.recv() => notify(&message),
            joined = &mut opening => break crate::errors::joined(joined, "the store-opening thread failed")?,
        }
    };
    let store =
        opened.with_context(|| format!("cannot open the store at {}", settings.store.display()))?;
    Ok(store)
}

/// Expands, loads, resolves and lowers every target of `req` into one graph. Warnings and
/// store-lock waits go to `notify`.
pub async fn plan(
    settings: &Settings,
    req: &PlanRequest,
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<Plan> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let (workspace, targets) = expand_targets(&req.targets, &cwd, req.name.as_deref())?;
    let formats = if req.formats.is_empty() {
        vec![Format::default_format()]
    } else {
        req.formats.clone()
    };

    // load
    let configs = load_configs(&targets, notify)?;

    let store = open_store(settings, notify).await?;

    // resolve
    let platform = match &req.arch {
        Some(arch) => Platform::linux(arch),
        None => Platform::host(),
    };
    let sources = Arc::new(image_sources(settings, workspace.as_ref(), req.offline)?);
    let lock_path = workspace.as_ref().map(|ws| ws.root.join(LOCK_FILE));
    let old_lock = match &lock_path {
        Some(p) => LockFile::read(p)?,
        None => LockFile::default(),
    };
    let media = MediaOptions {
        boot_image: workspace
            .as_ref()
            .and_then(|ws| ws.manifest.boot.image.clone())
            .unwrap_or_else(|| DEFAULT_BOOT_IMAGE.to_owned()),
        size: req.size,
    };
    let tools = formats.iter().flat_map(|format| format.tool_images(&media));
    let refs: BTreeSet<String> = configs
        .iter()
        .flat_map(config::image_refs)
        .chain(tools)
        .collect();
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
    let moved = moved_images(&old_lock, &new_lock);
    if req.locked && !changes.is_empty() {
        return Err(LockError::Drift {
            changes: changes.join("\n"),
        }
        .into());
    }
    let indexes = resolver
        .resolve_indexes(&images, &index_requests(&configs, !req.no_sbom))
        .await?;

    // lower
    let mut g = GraphBuilder::new();
    let mut planned = Vec::new();
    for (target, config) in targets.iter().zip(&configs) {
        let key = target_key(workspace.as_ref(), target, &cwd);
        g.set_scope(&key);
        let base = target
            .files
            .last()
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let files = file_items(config, &base, settings.home.as_deref(), &store)?;
        let input = LowerInput {
            config,
            images: &images,
            files,
            sources: Arc::clone(&sources) as _,
            codec: req.codec,
            limits: Limits::default(),
            indexes: &indexes,
            sbom: (!req.no_sbom).then(SbomOptions::default),
            media: media.clone(),
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
        planned.push(PlannedTarget {
            label: target.label.clone(),
            key,
            dir,
            outputs,
        });
    }
    let graph = g.build()?;

    Ok(Plan {
        store,
        graph,
        targets: planned,
        lock: LockUpdate {
            path: lock_path,
            lock: new_lock,
            changes,
        },
        moved,
        registry: RegistrySettings::new(settings, workspace.as_ref()),
        remote_cache: workspace.and_then(|ws| ws.manifest.cache.remote),
    })
}

/// Where a target's build history and GC root are kept: its label prefixed by its workspace's
/// root, so two workspaces on one store keep apart; outside a workspace, the yml's absolute
/// path.
fn target_key(workspace: Option<&Workspace>, target: &Target, cwd: &Path) -> String {
    match workspace {
        Some(ws) if target.label.starts_with("//") => {
            format!("{}{}", ws.root.display(), target.label)
        }
        _ => {
            let path = target
                .files
                .last()
                .map_or_else(|| PathBuf::from(&target.label), |file| cwd.join(file));
            path.display().to_string()
        }
    }
}
