//! Why an action ran: the history of the last execution per identity, and [`RebuildReason`].

use std::fmt;

use lkb_store::{
    ActionKey, ActionResult, Artifact, BlobDigest, BlobRef, MetaTable, Store, StoreError,
};
use serde::{Deserialize, Serialize};

use crate::KEY_SCHEMA_VERSION;

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
    /// A parameter changed (anything the action hashes besides its inputs).
    ParamsChanged,
    /// The number of inputs changed.
    InputCountChanged { old: usize, new: usize },
    /// Input `input` produced different bytes: its artifact `artifact` went from `old` to `new`
    /// (`None` when the artifact was added or removed).
    InputChanged {
        input: usize,
        input_label: String,
        artifact: String,
        old: Option<BlobDigest>,
        new: Option<BlobDigest>,
    },
    /// Nothing changed since the last execution, but its cache entry is gone (e.g. removed
    /// by garbage collection).
    CacheEntryMissing,
}

fn short(digest: Option<&BlobDigest>) -> String {
    digest.map_or_else(|| "(none)".to_owned(), |d| format!("sha256:{}", d.short()))
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::New => f.write_str("new action"),
            RebuildReason::Forced => f.write_str("rebuild forced"),
            RebuildReason::CacheEntryDamaged { blob } => {
                write!(
                    f,
                    "cache entry damaged: blob {} is missing or truncated",
                    blob.digest
                )
            }
            RebuildReason::VersionChanged { old, new } => {
                write!(f, "action version changed from {old} to {new}")
            }
            RebuildReason::ParamsChanged => f.write_str("parameters changed"),
            RebuildReason::InputCountChanged { old, new } => {
                write!(f, "number of inputs changed from {old} to {new}")
            }
            RebuildReason::InputChanged {
                input,
                input_label,
                artifact,
                old,
                new,
            } => write!(
                f,
                "input {input} ({input_label}) changed: {artifact} {} -> {}",
                short(old.as_ref()),
                short(new.as_ref())
            ),
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
    pub inputs: Vec<InputRecord>,
}

impl HistoryRecord {
    pub(crate) fn new(
        key: ActionKey,
        kind: &str,
        version: u32,
        params_hash: &[u8; 32],
        inputs: impl Iterator<Item = (String, ActionResult)>,
    ) -> Self {
        HistoryRecord {
            schema: KEY_SCHEMA_VERSION,
            key,
            kind: kind.to_owned(),
            version,
            params: hex::encode(params_hash),
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
            return RebuildReason::ParamsChanged;
        }
        if old.inputs.len() != self.inputs.len() {
            return RebuildReason::InputCountChanged {
                old: old.inputs.len(),
                new: self.inputs.len(),
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
            };
        }
        RebuildReason::CacheEntryMissing
    }
}
