//! `cache`: store management (`ls`, `du`, `gc`, `verify`, `clean`) and the GC roots that
//! `build` records.
//!
//! # GC roots
//!
//! After a successful build, each target's row in [`MetaTable::Roots`] (key: the target label)
//! is a [`RootRecord`]: when it was built, its output blobs, the key of every action its
//! outputs needed (the whole sub-graph, not only the last step), and the image metadata blobs
//! (manifests, indexes, configs) reachable from the pins of the build's lock file, which
//! resolving reads from the store before any action runs (the lock file is per workspace, so
//! this may include other targets' images; they are small). Rows
//! whose key starts with `output:` are output-file records, not roots. Rows written before
//! this format are a bare JSON list of output digests; they still count, and keep the
//! actions that produced those outputs (nothing upstream).
//!
//! Garbage collection keeps what [`lkb_store::Inventory::mark`] reaches from these roots, with
//! [`lkb_rules::gc::references`] telling which blobs a tree refers to. So `lkb build` of a
//! rooted target executes nothing after `gc`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::errors::Context;
use lkb_engine::{BuildOutcome, Graph, NodeId};
use lkb_rules::formats::OutputSpec;
use lkb_rules::lock::LockFile;
use lkb_store::{
    ActionKey, Artifact, BlobClass, BlobDigest, CleanReport, GcPlan, GcReport, GcRoot, Inventory,
    MetaTable, ReferenceError, Store, Usage, VerifyReport,
};
use serde::{Deserialize, Serialize};

use crate::errors::UsageError;
use crate::settings::Settings;

/// Prefix of the output-file records that share the roots table.
const OUTPUT_RECORD_PREFIX: &str = "output:";

/// A target's GC root: what its last build used. Stored as JSON in [`MetaTable::Roots`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRecord {
    /// When the build finished, in milliseconds since the Unix epoch (0: unknown).
    pub built_at_ms: u64,
    /// The target's output blobs.
    pub outputs: Vec<BlobDigest>,
    /// Every action the outputs needed, in key order.
    pub actions: Vec<ActionKey>,
    /// Other blobs the build read from the store (image metadata), in digest order.
    pub blobs: Vec<BlobDigest>,
    /// Read from the old format (a bare list of outputs).
    #[serde(skip)]
    pub legacy: bool,
}

/// Either format of a roots row.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredRoot {
    Current(RootRecord),
    Legacy(Vec<BlobDigest>),
}

impl RootRecord {
    /// Parses a roots row, in the current or the old format.
    pub fn decode(bytes: &[u8]) -> Result<RootRecord, serde_json::Error> {
        Ok(match serde_json::from_slice(bytes)? {
            StoredRoot::Current(record) => record,
            StoredRoot::Legacy(outputs) => RootRecord {
                outputs,
                legacy: true,
                ..RootRecord::default()
            },
        })
    }

    /// The record of a build that just finished: `outputs` of `graph` as executed in
    /// `outcome`, and the image metadata reachable from the pins of `lock`.
    pub fn of_build(
        store: &Store,
        graph: &Graph,
        outcome: &BuildOutcome,
        outputs: &[OutputSpec],
        lock: &LockFile,
    ) -> RootRecord {
        let mut needed: BTreeSet<NodeId> = BTreeSet::new();
        let mut queue: VecDeque<NodeId> = outputs.iter().flat_map(OutputSpec::nodes).collect();
        while let Some(node) = queue.pop_front() {
            if needed.insert(node) {
                queue.extend(graph.inputs(node).iter().copied());
            }
        }
        let actions: BTreeSet<ActionKey> = needed
            .iter()
            .filter_map(|node| outcome.keys.get(node).copied())
            .collect();
        let tops = lock
            .pins
            .values()
            .flat_map(|pin| std::iter::once(pin.manifest).chain(pin.index));
        RootRecord {
            built_at_ms: now_ms(),
            outputs: outputs
                .iter()
                .flat_map(OutputSpec::parts)
                .filter_map(|(node, artifact)| outcome.results.get(&node)?.get(artifact))
                .map(|blob| blob.digest)
                .collect(),
            actions: actions.into_iter().collect(),
            blobs: lkb_rules::gc::image_metadata(store, tops)
                .into_iter()
                .collect(),
            legacy: false,
        }
    }

    /// Stores the record as the root of `label`.
    pub fn put(&self, store: &Store, label: &str) -> crate::errors::Result<()> {
        store.put_meta(MetaTable::Roots, label, &crate::errors::json_bytes(self)?)?;
        Ok(())
    }

    /// The store-level root. A legacy record keeps the actions that produced its outputs.
    fn gc_root(&self, label: &str, inventory: &Inventory) -> GcRoot {
        let mut actions = self.actions.clone();
        if self.legacy {
            let outputs: BTreeSet<&BlobDigest> = self.outputs.iter().collect();
            actions.extend(
                inventory
                    .actions()
                    .iter()
                    .filter(|(_, result)| result.blobs().any(|b| outputs.contains(&b.digest)))
                    .map(|(key, _)| *key),
            );
        }
        GcRoot {
            name: label.to_owned(),
            recorded_at_ms: self.built_at_ms,
            actions,
            blobs: self.outputs.iter().chain(&self.blobs).copied().collect(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The roots rows of a store: readable ones by label, and the labels of unreadable ones.
#[derive(Debug, Default)]
pub struct Roots {
    pub targets: BTreeMap<String, RootRecord>,
    pub unreadable: Vec<String>,
    /// Rows keyed by a bare label (`//pkg:name`), as lkb wrote them before roots were keyed by
    /// workspace: they root nothing, and `gc` removes them.
    pub stale: Vec<String>,
}

impl Roots {
    /// Reads every root row (skipping output-file records).
    pub fn read(store: &Store) -> crate::errors::Result<Roots> {
        let mut roots = Roots::default();
        for (label, bytes) in store.list_meta(MetaTable::Roots)? {
            if label.starts_with(OUTPUT_RECORD_PREFIX) {
                continue;
            }
            if label.starts_with("//") {
                roots.stale.push(label);
                continue;
            }
            match RootRecord::decode(&bytes) {
                Ok(record) => {
                    roots.targets.insert(label, record);
                }
                Err(error) => {
                    tracing::warn!(%label, %error, "ignoring an unreadable GC root");
                    roots.unreadable.push(label);
                }
            }
        }
        Ok(roots)
    }

    fn gc_roots(&self, inventory: &Inventory) -> Vec<GcRoot> {
        self.targets
            .iter()
            .map(|(label, record)| record.gc_root(label, inventory))
            .collect()
    }
}

/// The blobs an artifact refers to, for the store's garbage collection and `verify`.
pub fn references(
    store: &Store,
) -> impl Fn(&Artifact) -> Result<Vec<BlobDigest>, ReferenceError> + Sync + use<> {
    let store = store.clone();
    move |artifact: &Artifact| {
        lkb_rules::gc::references(&store, artifact).map_err(|error| Box::new(error) as _)
    }
}

/// Opens the store for a `cache` command, or `None` if there is none yet.
fn open_existing(
    settings: &Settings,
    notify: &dyn Fn(&str),
) -> crate::errors::Result<Option<Store>> {
    if !Store::dir_under(&settings.store).is_dir() {
        return Ok(None);
    }
    let store = Store::open_with(&settings.store, notify)
        .with_context(|| format!("cannot open the store at {}", settings.store.display()))?;
    Ok(Some(store))
}

/// Action key (hex) → action identity, from the build history (best effort: the history has
/// the latest key of each identity only).
fn identities(store: &Store) -> crate::errors::Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct KeyOnly {
        key: String,
    }
    let mut map = BTreeMap::new();
    for (identity, bytes) in store.list_meta(MetaTable::History)? {
        if let Ok(record) = serde_json::from_slice::<KeyOnly>(&bytes) {
            map.insert(record.key, identity);
        }
    }
    Ok(map)
}

/// One target of `cache ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub label: String,
    pub built_at_ms: Option<u64>,
    /// Action records kept for it that exist.
    pub actions: usize,
    /// Blobs kept for it that exist (shared blobs count for every target).
    pub blobs: Usage,
}

/// What `cache ls` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub store: Option<PathBuf>,
    pub targets: Vec<TargetEntry>,
    pub unreadable_roots: Vec<String>,
    pub actions: usize,
    pub blobs: Usage,
    /// What `gc` would remove.
    pub unreachable_actions: usize,
    pub unreachable: Usage,
}

/// `cache ls`: the targets with roots, what each keeps, and what no root keeps.
pub fn ls(settings: &Settings, notify: &dyn Fn(&str)) -> crate::errors::Result<Listing> {
    let Some(store) = open_existing(settings, notify)? else {
        return Ok(Listing::default());
    };
    let roots = Roots::read(&store)?;
    let inventory = store.inventory(&references(&store))?;
    let gc_roots = roots.gc_roots(&inventory);
    let targets = gc_roots
        .iter()
        .map(|root| {
            let live = inventory.mark([root]);
            TargetEntry {
                label: root.name.clone(),
                built_at_ms: Some(root.recorded_at_ms).filter(|ms| *ms > 0),
                actions: live.actions.len(),
                blobs: inventory.usage_of(&live.blobs),
            }
        })
        .collect();
    let plan = inventory.plan(&gc_roots, None);
    Ok(Listing {
        store: Some(store.dir().to_owned()),
        targets,
        unreadable_roots: roots.unreadable,
        actions: inventory.actions().len(),
        blobs: inventory.usage(),
        unreachable_actions: plan.remove_actions.len(),
        unreachable: plan.freed(),
    })
}

/// What `cache du` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub store: Option<PathBuf>,
    pub blobs: Usage,
    pub by_class: BTreeMap<BlobClass, Usage>,
    pub index_bytes: u64,
    pub actions: usize,
    pub roots: usize,
    pub history: usize,
}

impl DiskUsage {
    /// Blobs and index together.
    pub fn total_bytes(&self) -> u64 {
        self.blobs.bytes + self.index_bytes
    }
}

/// `cache du`: bytes in the CAS (by kind of blob) and in the index.
pub fn du(settings: &Settings, notify: &dyn Fn(&str)) -> crate::errors::Result<DiskUsage> {
    let Some(store) = open_existing(settings, notify)? else {
        return Ok(DiskUsage::default());
    };
    let inventory = store.inventory(&references(&store))?;
    Ok(DiskUsage {
        store: Some(store.dir().to_owned()),
        blobs: inventory.usage(),
        by_class: inventory.by_class(),
        index_bytes: store.index_size()?,
        actions: inventory.actions().len(),
        roots: Roots::read(&store)?.targets.len(),
        history: store.list_meta(MetaTable::History)?.len(),
    })
}

/// What `cache gc` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    /// Targets whose roots were evicted to meet `--max-size`, oldest first.
    pub evicted: Vec<String>,
    pub plan: GcPlan,
    pub report: GcReport,
}

/// `cache gc [--max-size]`: removes everything the roots do not reach; with `max_size`, first
/// gives up the oldest targets' roots until what stays fits.
pub fn gc(
    settings: &Settings,
    max_size: Option<u64>,
    notify: &dyn Fn(&str),
) -> crate::errors::Result<Collection> {
    let Some(store) = open_existing(settings, notify)? else {
        return Ok(Collection::default());
    };
    let roots = Roots::read(&store)?;
    let inventory = store
        .inventory(&references(&store))
        .context("cannot collect garbage (`lkb cache verify` drops damaged cache entries)")?;
    let plan = inventory.plan(&roots.gc_roots(&inventory), max_size);
    // Roots go first: a crash after this leaves garbage for the next run, never a root that
    // names deleted records.
    for label in plan.evicted.iter().chain(&roots.stale) {
        store.remove_meta(MetaTable::Roots, label)?;
    }
    let report = store.sweep(&plan)?;
    Ok(Collection {
        evicted: plan.evicted.clone(),
        plan,
        report,
    })
}

/// What `cache verify` did, with the identities of dropped actions where the history knows
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    pub report: VerifyReport,
    pub identities: BTreeMap<String, String>,
}

/// `cache verify`: re-hashes every blob; damaged blobs and the action records that need them
/// are removed, so the next build re-runs those actions.
pub fn verify(settings: &Settings, notify: &dyn Fn(&str)) -> crate::errors::Result<Verification> {
    let Some(store) = open_existing(settings, notify)? else {
        return Ok(Verification::default());
    };
    let identities = identities(&store)?;
    let report = store.verify(&references(&store))?;
    let identities = report
        .dropped_actions
        .iter()
        .filter_map(|d| Some((d.key.clone(), identities.get(&d.key)?.clone())))
        .collect();
    Ok(Verification { report, identities })
}

/// `cache clean`: deletes the store (waiting for any process using it).
pub fn clean(
    settings: &Settings,
    notify: &dyn Fn(&str),
) -> crate::errors::Result<(PathBuf, CleanReport)> {
    let dir = Store::dir_under(&settings.store);
    let report = Store::clean(&settings.store, notify)
        .with_context(|| format!("cannot remove the store at {}", dir.display()))?;
    Ok((dir, report))
}

/// Parses a size such as `500M`, `2G`, `1.5GiB` or `4096`: a number, then optionally `K`,
/// `M`, `G` or `T` (powers of 1024), optionally followed by `B` or `iB`; case does not matter.
pub fn parse_size(text: &str) -> crate::errors::Result<u64> {
    let bad = || {
        crate::errors::Error::from(UsageError(format!(
            "invalid size {text:?}: expected a number with an optional K, M, G or T suffix \
             (e.g. 500M, 2G)"
        )))
    };
    let lower = text.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(unit_start);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if number.is_empty() {
        return Err(bad());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(bad);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * multiplier as f64).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use lkb_store::{ActionKey, ActionResult, Store};

    use super::{RootRecord, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert_eq!(parse_size("500M").ok(), Some(500 << 20));
        assert_eq!(parse_size("2G").ok(), Some(2 << 30));
        assert_eq!(parse_size("2gib").ok(), Some(2 << 30));
        assert_eq!(parse_size("1.5G").ok(), Some(3 << 29));
        assert_eq!(parse_size("10kB").ok(), Some(10 << 10));
        assert_eq!(parse_size("0").ok(), Some(0));
        for bad in ["", "G", "12X", "-1", "1.2.3M", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roots_in_both_formats() {
        let digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let legacy = RootRecord::decode(format!("[\"{digest}\"]").as_bytes()).expect("legacy");
        assert!(legacy.legacy);
        assert_eq!(legacy.outputs.len(), 1);
        assert_eq!(legacy.built_at_ms, 0);

        let current = RootRecord {
            built_at_ms: 7,
            outputs: vec![digest.parse().expect("digest")],
            actions: vec![lkb_store::ActionKey::from_bytes([1; 32])],
            blobs: vec![],
            legacy: false,
        };
        let json = serde_json::to_vec(&current).expect("encode");
        assert_eq!(RootRecord::decode(&json).expect("decode"), current);
        assert!(RootRecord::decode(b"{\"oops\":1}").is_err());
    }

    #[test]
    fn label_keyed_roots_of_an_older_lkb_are_stale() {
        let dir = std::env::temp_dir().join(format!("lkb-cache-stale-{}", std::process::id()));
        let store = Store::open(&dir).expect("store");
        let record = RootRecord::default();
        record.put(&store, "//examples:minimal").expect("old row");
        record
            .put(&store, "/ws//examples:minimal")
            .expect("new row");
        let roots = super::Roots::read(&store).expect("read");
        assert_eq!(roots.stale, ["//examples:minimal"]);
        assert_eq!(
            roots.targets.keys().collect::<Vec<_>>(),
            ["/ws//examples:minimal"]
        );
        drop(store);
        fs_err::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_legacy_root_keeps_the_actions_that_produced_its_outputs() {
        let dir = std::env::temp_dir().join(format!("lkb-cache-legacy-{}", std::process::id()));
        let store = Store::open(&dir).expect("open store");
        let output = store.put_bytes(b"output").expect("put");
        let other = store.put_bytes(b"other").expect("put");
        let producer = ActionKey::from_bytes([1; 32]);
        let unrelated = ActionKey::from_bytes([2; 32]);
        store
            .put_action(
                &producer,
                &ActionResult::new().with("out", lkb_store::ArtifactKind::Archive, output),
            )
            .expect("put");
        store
            .put_action(
                &unrelated,
                &ActionResult::new().with("out", lkb_store::ArtifactKind::Archive, other),
            )
            .expect("put");
        let inventory = store
            .inventory(&|_: &lkb_store::Artifact| Ok(Vec::new()))
            .expect("inventory");

        let legacy =
            RootRecord::decode(format!("[\"{}\"]", output.digest).as_bytes()).expect("decode");
        let root = legacy.gc_root("//t:t", &inventory);
        assert_eq!(root.actions, vec![producer]);
        assert_eq!(root.blobs, vec![output.digest]);
        assert_eq!(root.recorded_at_ms, 0);

        let current = RootRecord {
            built_at_ms: 5,
            outputs: vec![output.digest],
            actions: vec![],
            blobs: vec![other.digest],
            legacy: false,
        };
        let root = current.gc_root("//t:t", &inventory);
        assert!(
            root.actions.is_empty(),
            "a current record names its actions itself"
        );
        assert_eq!(root.blobs, vec![output.digest, other.digest]);
        drop(store);
        fs_err::remove_dir_all(&dir).expect("remove the test store");
    }
}
