//! Why an action ran: the history of the last execution per identity, and [`RebuildReason`].

use std::fmt;

use lkb_store::{ActionKey, Artifact, BlobDigest, BlobRef, MetaTable, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::{KEY_SCHEMA_VERSION, OutputDecl, ParamsDigest};

/// `tree (lkb-tree 1)`: an output's kind and codec, as the history records them.
fn describe_output(decl: &OutputDecl) -> String {
    match &decl.codec {
        Some(codec) => format!("{} ({} {})", decl.kind, codec.name, codec.version),
        None => decl.kind.to_string(),
    }
}

/// How much of each field's digest the history keeps (enough to notice a change).
const FIELD_DIGEST_BYTES: usize = 8;

/// Why an action was executed instead of taken from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildReason {
    /// No earlier execution of this identity is recorded.
    New,
    /// The build was asked to ignore the cache.
    Forced,
    /// The cache entry exists but names a blob that is missing or has the wrong size.
    CacheEntryDamaged { blob: BlobRef },
    /// The action's implementation version changed.
    VersionChanged { old: u32, new: u32 },
    /// A parameter changed (anything the action hashes besides its inputs). `fields` are
    /// the paths of the changed [`KeyHasher::field`](crate::KeyHasher::field)s, e.g.
    /// `files[3].contents`; empty when the last record does not say (an older lkb wrote it).
    ParamsChanged { fields: Vec<String> },
    /// The number of inputs changed. `origin` says what upstream change caused it, when an
    /// input ran in this build for a known reason.
    InputCountChanged {
        old: usize,
        new: usize,
        origin: Option<String>,
    },
    /// Input `input` produced different bytes: its artifact `artifact` went from `old` to `new`
    /// (`None` when the artifact was added or removed). `origin` is the upstream change that
    /// led to it, e.g. `files[3].contents changed` or `image localhost/app:v2`, when known.
    InputChanged {
        input: usize,
        input_label: String,
        artifact: String,
        old: Option<BlobDigest>,
        new: Option<BlobDigest>,
        origin: Option<String>,
    },
    /// A declared output changed: its kind, or its codec's version (e.g. a new libdeflate or
    /// tree encoding). `old` and `new` describe the output as `kind (codec version)`.
    OutputChanged {
        output: String,
        old: String,
        new: String,
    },
    /// Nothing changed since the last execution, but its cache entry is gone (e.g. removed
    /// by garbage collection).
    CacheEntryMissing,
}

impl RebuildReason {
    /// The upstream change behind an input change, if known.
    pub fn origin(&self) -> Option<&str> {
        match self {
            RebuildReason::InputChanged { origin, .. }
            | RebuildReason::InputCountChanged { origin, .. } => origin.as_deref(),
            _ => None,
        }
    }

    /// The same reason with its origin (if it has one) mapped through `map`, e.g. to say how
    /// an outside source changed.
    pub fn map_origin(mut self, map: impl FnOnce(String) -> String) -> Self {
        if let RebuildReason::InputChanged { origin, .. }
        | RebuildReason::InputCountChanged { origin, .. } = &mut self
        {
            *origin = origin.take().map(map);
        }
        self
    }

    /// A short, stable name for the kind of reason: `new`, `forced`, `cache-entry-damaged`,
    /// `version-changed`, `params-changed`, `input-count-changed`, `input-changed`,
    /// `output-changed`, `cache-entry-missing`.
    pub fn name(&self) -> &'static str {
        match self {
            RebuildReason::New => "new",
            RebuildReason::Forced => "forced",
            RebuildReason::CacheEntryDamaged { .. } => "cache-entry-damaged",
            RebuildReason::VersionChanged { .. } => "version-changed",
            RebuildReason::ParamsChanged { .. } => "params-changed",
            RebuildReason::InputCountChanged { .. } => "input-count-changed",
            RebuildReason::InputChanged { .. } => "input-changed",
            RebuildReason::OutputChanged { .. } => "output-changed",
            RebuildReason::CacheEntryMissing => "cache-entry-missing",
        }
    }
}

fn short(digest: Option<&BlobDigest>) -> String {
    digest.map_or_else(|| "(none)".to_owned(), |d| format!("sha256:{}", d.short()))
}

/// At most this many changed fields are named in one line.
const FIELDS_SHOWN: usize = 6;

/// `a, b, c` or `a, b, … and 4 more`.
pub(crate) fn field_list(fields: &[String]) -> String {
    let mut text = fields
        .iter()
        .take(FIELDS_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if fields.len() > FIELDS_SHOWN {
        text.push_str(&format!(" and {} more", fields.len() - FIELDS_SHOWN));
    }
    text
}

fn with_origin(f: &mut fmt::Formatter<'_>, origin: Option<&String>) -> fmt::Result {
    match origin {
        Some(origin) => write!(f, " ({origin})"),
        None => Ok(()),
    }
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::New => f.write_str("new"),
            RebuildReason::Forced => f.write_str("forced"),
            RebuildReason::CacheEntryDamaged { blob } => {
                write!(
                    f,
                    "cache entry damaged: blob {} is missing or truncated",
                    blob.digest
                )
            }
            RebuildReason::VersionChanged { old, new } => {
                write!(f, "action version changed: {old} → {new}")
            }
            RebuildReason::ParamsChanged { fields } => match fields.len() {
                0 => f.write_str("parameters changed"),
                1 => write!(f, "parameter changed: {}", fields[0]),
                _ => write!(f, "parameters changed: {}", field_list(fields)),
            },
            RebuildReason::InputCountChanged { old, new, origin } => {
                write!(f, "number of inputs changed: {old} → {new}")?;
                with_origin(f, origin.as_ref())
            }
            RebuildReason::InputChanged {
                input_label,
                artifact,
                old,
                new,
                origin,
                ..
            } => {
                write!(
                    f,
                    "input changed: {input_label}: {artifact} {} → {}",
                    short(old.as_ref()),
                    short(new.as_ref())
                )?;
                with_origin(f, origin.as_ref())
            }
            RebuildReason::OutputChanged { output, old, new } => {
                write!(f, "output {output} changed: {old} → {new}")
            }
            RebuildReason::CacheEntryMissing => {
                f.write_str("inputs unchanged but the cache entry is gone")
            }
        }
    }
}

/// One input as recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The label of the action that produced it.
    pub label: String,
    pub artifact: Artifact,
}

/// What the last execution (or cache hit) of an identity was keyed on, stored in
/// [`MetaTable::History`] as JSON under the action's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub schema: u64,
    pub key: ActionKey,
    pub kind: String,
    pub version: u32,
    /// Hex BLAKE3 of the action's params writes.
    pub params: String,
    /// Per params field (see [`KeyHasher::field`](crate::KeyHasher::field)): its path and
    /// the first 16 hex digits of its BLAKE3, to name the fields that changed. Absent in
    /// records written before lkb kept it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
    pub inputs: Vec<InputRecord>,
    /// Per declared output: `name` → `kind (codec version)`, to name an output whose codec
    /// changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<(String, String)>,
}

impl HistoryRecord {
    pub(crate) fn new(
        key: ActionKey,
        kind: &str,
        version: u32,
        params: &ParamsDigest,
        outputs: &[OutputDecl],
        inputs: impl Iterator<Item = (String, Artifact)>,
    ) -> Self {
        HistoryRecord {
            schema: KEY_SCHEMA_VERSION,
            key,
            kind: kind.to_owned(),
            version,
            params: hex::encode(params.hash),
            fields: params
                .fields
                .iter()
                .map(|(path, digest)| (path.clone(), hex::encode(&digest[..FIELD_DIGEST_BYTES])))
                .collect(),
            inputs: inputs
                .map(|(label, artifact)| InputRecord { label, artifact })
                .collect(),
            outputs: outputs
                .iter()
                .map(|decl| (decl.name.to_owned(), describe_output(decl)))
                .collect(),
        }
    }

    /// The record of the last build under `history_key` (a node's scope and identity, see
    /// [`Graph::history_key`](crate::Graph::history_key)), if any and readable.
    pub fn load(store: &Store, history_key: &str) -> Result<Option<HistoryRecord>, StoreError> {
        let Some(bytes) = store.get_meta(MetaTable::History, history_key)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(record) => Ok(Some(record)),
            Err(error) => {
                tracing::warn!(history_key, %error, "ignoring unreadable build history");
                Ok(None)
            }
        }
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a history record serialises: all keys are strings")
    }

    /// Why an action with record `self` had to run, given the previous record.
    pub fn reason_since(&self, previous: Option<&HistoryRecord>) -> RebuildReason {
        let Some(old) = previous else {
            return RebuildReason::New;
        };
        if old.schema != self.schema || old.kind != self.kind {
            return RebuildReason::New;
        }
        if old.version != self.version {
            return RebuildReason::VersionChanged {
                old: old.version,
                new: self.version,
            };
        }
        if old.params != self.params {
            let fields = if old.fields.is_empty() {
                Vec::new()
            } else {
                ParamsDigest::changed_fields(
                    old.fields
                        .iter()
                        .map(|(path, digest)| (path.as_str(), digest)),
                    self.fields
                        .iter()
                        .map(|(path, digest)| (path.as_str(), digest)),
                )
            };
            return RebuildReason::ParamsChanged { fields };
        }
        if old.outputs != self.outputs {
            let longest = old.outputs.len().max(self.outputs.len());
            let describe = |entry: Option<&(String, String)>| {
                entry.map_or_else(|| "(none)".to_owned(), |(_, what)| what.clone())
            };
            if let Some((before, after)) = (0..longest)
                .map(|i| (old.outputs.get(i), self.outputs.get(i)))
                .find(|(before, after)| before != after)
            {
                let output = after.or(before).map(|(name, _)| name.clone());
                return RebuildReason::OutputChanged {
                    output: output.unwrap_or_default(),
                    old: describe(before),
                    new: describe(after),
                };
            }
        }
        if old.inputs.len() != self.inputs.len() {
            return RebuildReason::InputCountChanged {
                old: old.inputs.len(),
                new: self.inputs.len(),
                origin: None,
            };
        }
        for (index, (was, now)) in old.inputs.iter().zip(&self.inputs).enumerate() {
            let (before, after) = (&was.artifact, &now.artifact);
            if before.blob == after.blob && before.kind == after.kind {
                continue;
            }
            return RebuildReason::InputChanged {
                input: index,
                input_label: now.label.clone(),
                artifact: after.name.clone(),
                old: Some(before.blob.digest),
                new: Some(after.blob.digest),
                origin: None,
            };
        }
        RebuildReason::CacheEntryMissing
    }
}
