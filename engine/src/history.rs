//! Why an action ran: the history of the last execution per identity, and [`RebuildReason`].

use std::fmt;

use lkb_store::{
    ActionKey, ActionResult, Artifact, BlobDigest, BlobRef, MetaTable, Store, StoreError,
};
use serde::{Deserialize, Serialize};

use crate::{KEY_SCHEMA_VERSION, ParamsDigest};

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
    /// `cache-entry-missing`.
    pub fn name(&self) -> &'static str {
        match self {
            RebuildReason::New => "new",
            RebuildReason::Forced => "forced",
            RebuildReason::CacheEntryDamaged { .. } => "cache-entry-damaged",
            RebuildReason::VersionChanged { .. } => "version-changed",
            RebuildReason::ParamsChanged { .. } => "params-changed",
            RebuildReason::InputCountChanged { .. } => "input-count-changed",
            RebuildReason::InputChanged { .. } => "input-changed",
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
            RebuildReason::CacheEntryMissing => {
                f.write_str("inputs unchanged but the cache entry is gone")
            }
        }
    }
}

/// One input as recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub label: String,
    pub outputs: Vec<Artifact>,
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
}

impl HistoryRecord {
    pub(crate) fn new(
        key: ActionKey,
        kind: &str,
        version: u32,
        params: &ParamsDigest,
        inputs: impl Iterator<Item = (String, ActionResult)>,
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
                .map(|(label, result)| InputRecord {
                    label,
                    outputs: result.outputs,
                })
                .collect(),
        }
    }

    /// The record of the last build of `identity`, if any and readable.
    pub fn load(store: &Store, identity: &str) -> Result<Option<HistoryRecord>, StoreError> {
        let Some(bytes) = store.get_meta(MetaTable::History, identity)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(record) => Ok(Some(record)),
            Err(error) => {
                tracing::warn!(identity, %error, "ignoring unreadable build history");
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
        if old.inputs.len() != self.inputs.len() {
            return RebuildReason::InputCountChanged {
                old: old.inputs.len(),
                new: self.inputs.len(),
                origin: None,
            };
        }
        for (index, (was, now)) in old.inputs.iter().zip(&self.inputs).enumerate() {
            if was.outputs == now.outputs {
                continue;
            }
            let longest = was.outputs.len().max(now.outputs.len());
            let (before, after) = (0..longest)
                .map(|i| (was.outputs.get(i), now.outputs.get(i)))
                .find(|(before, after)| before != after)
                .expect("different lists differ at some position");
            let artifact = after.or(before).map(|a| a.name.clone()).unwrap_or_default();
            return RebuildReason::InputChanged {
                input: index,
                input_label: now.label.clone(),
                artifact,
                old: before.map(|a| a.blob.digest),
                new: after.map(|a| a.blob.digest),
                origin: None,
            };
        }
        RebuildReason::CacheEntryMissing
    }
}
