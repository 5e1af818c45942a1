//! Garbage collection, disk usage and removing the whole store: the generic parts.
//!
//! The store treats blobs as opaque bytes. Two things come from the caller:
//! - [`GcRoot`]s: what to keep (the CLI records one per target: the actions and blobs of its
//!   last build);
//! - a [`ReferenceFn`]: which blobs an artifact's content refers to (`lkb-rules`: a tree blob
//!   refers to the blobs holding its files' contents).
//!
//! # Reachability
//!
//! Given roots, the *live* set is exactly:
//!
//! 1. every action record a root names (names of records that do not exist are ignored);
//! 2. every blob a root names (for example image manifests a build read from the store);
//! 3. every output blob of a live action;
//! 4. every blob the [`ReferenceFn`] returns for an output of a live action.
//!
//! References are followed one level, from action outputs only: a tree refers to file
//! contents; file contents, and blobs a root names directly, refer to nothing. Every other
//! action record and blob file is garbage. Rows of the metadata tables are not touched (the
//! build history of a removed action stays, so `--explain` can still say what changed).
//!
//! # Procedure
//!
//! [`Store::inventory`] reads every action record and blob, and asks the [`ReferenceFn`]
//! about every output blob once. [`Inventory::plan`] marks the live set (evicting roots,
//! oldest first, while the live set is bigger than `max_size`) and lists the garbage;
//! [`Store::sweep`] deletes the garbage records in one index transaction and then the blob
//! files, so a crash in between leaks blobs but never leaves a record naming a deleted blob.
//! The caller holds the store (and so its process lock) throughout, so no other lkb process
//! writes in between; within one process, do not build while collecting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::ops::AddAssign;
use std::path::Path;

use rayon::prelude::*;

use crate::lock::StoreLock;
use crate::store::{STORE_DIR, is_open_in_process};
use crate::{ActionKey, ActionResult, Artifact, BlobDigest, BlobRef, Store, StoreError};

/// The error a [`ReferenceFn`] returns; the store wraps it in [`StoreError::References`].
pub type ReferenceError = Box<dyn std::error::Error + Send + Sync>;

/// Which blobs the content of an artifact refers to. Called only for artifacts whose
/// [`ArtifactKind`](crate::ArtifactKind) has references and whose blob is present. Supplied by the crate that knows the
/// formats; called from several threads.
pub type ReferenceFn<'a> = dyn Fn(&Artifact) -> Result<Vec<BlobDigest>, ReferenceError> + Sync + 'a;

/// A named set of action records and blobs to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcRoot {
    /// What the root is called (the CLI uses the target label).
    pub name: String,
    /// When the root was recorded, in milliseconds since the Unix epoch, or 0 if unknown.
    /// With a size limit, the oldest roots are evicted first.
    pub recorded_at_ms: u64,
    /// Action records to keep, with their outputs and what those refer to.
    pub actions: Vec<ActionKey>,
    /// Further blobs to keep as they are.
    pub blobs: Vec<BlobDigest>,
}

/// A number of blobs and their total size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub blobs: usize,
    pub bytes: u64,
}

impl Usage {
    fn add(&mut self, bytes: u64) {
        self.blobs += 1;
        self.bytes += bytes;
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.blobs += other.blobs;
        self.bytes += other.bytes;
    }
}

/// The live set of some roots (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSet {
    pub actions: BTreeSet<ActionKey>,
    pub blobs: BTreeSet<BlobDigest>,
}

/// What a blob is, for `du`: the name it has as some action's output, else whether an output
/// refers to it, else neither.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BlobClass {
    /// An action output with this artifact name (the alphabetically first, if several).
    Artifact(String),
    /// Referred to by an action output (e.g. file contents of a tree).
    Referenced,
    /// Neither: blobs read by builds outside actions (image manifests, host files), or garbage.
    Other,
}

/// Every action record and blob of a store, and what each output refers to. Taken once by
/// [`Store::inventory`]; then marked against any roots.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    actions: BTreeMap<ActionKey, ActionResult>,
    blobs: HashMap<BlobDigest, u64>,
    references: HashMap<BlobDigest, Vec<BlobDigest>>,
}

/// What garbage collection is going to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Roots given up to meet the size limit, oldest first.
    pub evicted: Vec<String>,
    /// Action records to delete, in key order.
    pub remove_actions: Vec<ActionKey>,
    /// Blob files to delete, in digest order.
    pub remove_blobs: Vec<BlobRef>,
    /// Action records that stay.
    pub kept_actions: usize,
    /// Blob files that stay.
    pub kept: Usage,
}

impl GcPlan {
    /// The blobs (and bytes) the plan deletes.
    pub fn freed(&self) -> Usage {
        let mut freed = Usage::default();
        for blob in &self.remove_blobs {
            freed.add(blob.size);
        }
        freed
    }
}

/// What [`Store::sweep`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub actions_removed: usize,
    pub blobs_removed: Usage,
}

/// What [`Store::clean`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub files: usize,
    pub bytes: u64,
}

impl Inventory {
    /// Every action record, by key.
    pub fn actions(&self) -> &BTreeMap<ActionKey, ActionResult> {
        &self.actions
    }

    /// The size of a blob file, if present.
    pub fn blob_size(&self, digest: &BlobDigest) -> Option<u64> {
        self.blobs.get(digest).copied()
    }

    /// Every blob file.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for size in self.blobs.values() {
            usage.add(*size);
        }
        usage
    }

    /// The blobs of `digests` that are present, and their size.
    pub fn usage_of<'a>(&self, digests: impl IntoIterator<Item = &'a BlobDigest>) -> Usage {
        let mut usage = Usage::default();
        for digest in digests {
            if let Some(size) = self.blobs.get(digest) {
                usage.add(*size);
            }
        }
        usage
    }

    /// The live set of `roots` (see the module docs).
    pub fn mark<'a>(&self, roots: impl IntoIterator<Item = &'a GcRoot>) -> LiveSet {
        let mut live = LiveSet::default();
        for root in roots {
            live.blobs.extend(root.blobs.iter().copied());
            for key in &root.actions {
                let Some(result) = self.actions.get(key) else {
                    continue;
                };
                if !live.actions.insert(*key) {
                    continue;
                }
                for blob in result.blobs() {
                    live.blobs.insert(blob.digest);
                    if let Some(referenced) = self.references.get(&blob.digest) {
                        live.blobs.extend(referenced.iter().copied());
                    }
                }
            }
        }
        live
    }

    /// Every present blob by [`BlobClass`].
    pub fn by_class(&self) -> BTreeMap<BlobClass, Usage> {
        let mut names: HashMap<BlobDigest, &str> = HashMap::new();
        for artifact in self.actions.values().flat_map(|result| &result.outputs) {
            let name = names.entry(artifact.blob.digest).or_insert(&artifact.name);
            if artifact.name.as_str() < *name {
                *name = &artifact.name;
            }
        }
        let referenced: BTreeSet<&BlobDigest> = self.references.values().flatten().collect();
        let mut classes: BTreeMap<BlobClass, Usage> = BTreeMap::new();
        for (digest, size) in &self.blobs {
            let class = match names.get(digest) {
                Some(name) => BlobClass::Artifact((*name).to_owned()),
                None if referenced.contains(digest) => BlobClass::Referenced,
                None => BlobClass::Other,
            };
            classes.entry(class).or_default().add(*size);
        }
        classes
    }

    /// Marks the live set of `roots` and lists everything else. With `max_size`, if the live
    /// blobs take more than `max_size` bytes, roots are evicted oldest first (by
    /// [`GcRoot::recorded_at_ms`], then name) until they fit or no root is left.
    pub fn plan(&self, roots: &[GcRoot], max_size: Option<u64>) -> GcPlan {
        let mut order: Vec<&GcRoot> = roots.iter().collect();
        order.sort_by(|a, b| (a.recorded_at_ms, &a.name).cmp(&(b.recorded_at_ms, &b.name)));
        let mut live = self.mark(order.iter().copied());
        let mut evicted = Vec::new();
        if let Some(max_size) = max_size {
            let mut first_kept = 0;
            while first_kept < order.len() && self.usage_of(&live.blobs).bytes > max_size {
                evicted.push(order[first_kept].name.clone());
                first_kept += 1;
                live = self.mark(order[first_kept..].iter().copied());
            }
        }
        let remove_actions = self
            .actions
            .keys()
            .filter(|key| !live.actions.contains(key))
            .copied()
            .collect();
        let mut remove_blobs: Vec<BlobRef> = self
            .blobs
            .iter()
            .filter(|(digest, _)| !live.blobs.contains(digest))
            .map(|(digest, size)| BlobRef {
                digest: *digest,
                size: *size,
            })
            .collect();
        remove_blobs.sort();
        GcPlan {
            evicted,
            remove_actions,
            remove_blobs,
            kept_actions: live.actions.len(),
            kept: self.usage_of(&live.blobs),
        }
    }
}

impl Store {
    /// Reads every action record and blob, and asks `references` about every present output
    /// blob (in parallel).
    pub fn inventory(&self, references: &ReferenceFn<'_>) -> Result<Inventory, StoreError> {
        let actions: BTreeMap<ActionKey, ActionResult> = self.list_actions()?.into_iter().collect();
        let mut blobs = HashMap::new();
        for blob in self.list_blobs()? {
            let blob = blob?;
            blobs.insert(blob.digest, blob.size);
        }
        let mut outputs: BTreeMap<BlobDigest, &Artifact> = BTreeMap::new();
        for artifact in actions.values().flat_map(|result| &result.outputs) {
            if artifact.kind.has_references()
                && blobs.get(&artifact.blob.digest) == Some(&artifact.blob.size)
            {
                outputs.entry(artifact.blob.digest).or_insert(artifact);
            }
        }
        let references = outputs
            .into_par_iter()
            .map(|(digest, artifact)| {
                references(artifact)
                    .map(|referenced| (digest, referenced))
                    .map_err(|source| StoreError::References { digest, source })
            })
            .filter(|found| found.as_ref().map_or(true, |(_, r)| !r.is_empty()))
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Inventory {
            actions,
            blobs,
            references,
        })
    }

    /// Deletes what `plan` lists: the action records first (one transaction), then the blob
    /// files. Blobs already gone are not counted.
    pub fn sweep(&self, plan: &GcPlan) -> Result<GcReport, StoreError> {
        let actions_removed = self.remove_actions(&plan.remove_actions)?;
        let mut blobs_removed = Usage::default();
        let digests: Vec<BlobDigest> = plan.remove_blobs.iter().map(|b| b.digest).collect();
        for (blob, removed) in plan.remove_blobs.iter().zip(self.remove_blobs(&digests)?) {
            if removed {
                blobs_removed.add(blob.size);
            }
        }
        Ok(GcReport {
            actions_removed,
            blobs_removed,
        })
    }

    /// Deletes the store under `root` (everything in `store-v1/` but the lock file), holding
    /// its lock, so it waits for (and calls `notify` about) a process using the store. The
    /// lock file stays so that processes already waiting for it keep excluding each other;
    /// they recreate the store when they get it. The index need not be readable. Fails if
    /// this process has the store open.
    pub fn clean(root: &Path, notify: &dyn Fn(&str)) -> Result<CleanReport, StoreError> {
        let dir = root.join(STORE_DIR);
        if !dir.is_dir() {
            return Ok(CleanReport::default());
        }
        let canonical = fs_err::canonicalize(&dir).map_err(|source| StoreError::Remove {
            path: dir.clone(),
            source,
        })?;
        if is_open_in_process(&canonical) {
            return Err(StoreError::InUse { path: dir });
        }
        let lock_path = dir.join("lock");
        let _lock = StoreLock::acquire(&lock_path, notify)?;
        let mut report = CleanReport::default();
        let remove_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Remove { path, source }
        };
        for entry in fs_err::read_dir(&dir).map_err(remove_error(&dir))? {
            let path = entry.map_err(remove_error(&dir))?.path();
            if path == lock_path {
                continue;
            }
            tally(&path, &mut report).map_err(remove_error(&path))?;
            let is_dir = fs_err::symlink_metadata(&path)
                .map(|meta| meta.is_dir())
                .unwrap_or(false);
            let removed = if is_dir {
                fs_err::remove_dir_all(&path)
            } else {
                fs_err::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Remove { path, source }),
            }
        }
        Ok(report)
    }
}

/// Adds the files under `path` (not following symlinks) to `report`.
fn tally(path: &Path, report: &mut CleanReport) -> io::Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs_err::read_dir(path)? {
            tally(&entry?.path(), report)?;
        }
    } else {
        report.files += 1;
        report.bytes += meta.len();
    }
    Ok(())
}
