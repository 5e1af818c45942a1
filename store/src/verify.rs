//! `verify`: re-hash every blob, delete the damaged ones, and drop every action record that
//! depends on a damaged or missing blob, so that the next build re-runs those actions instead
//! of failing (or, in a release build, copying damaged bytes into an output).
//!
//! A record is dropped when
//! - its key or JSON does not parse;
//! - one of its output blobs is damaged, missing, or has another size than recorded;
//! - one of its outputs refers ([`ReferenceFn`]) to a blob that is damaged or missing, or the
//!   reference function fails on it (say, a tree that does not decode).
//!
//! Records are dropped (one transaction) before blobs are deleted, so no record ever names a
//! blob that `verify` deleted.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::gc::{ReferenceFn, Usage};
use crate::{ActionKey, ActionResult, BlobDigest, BlobRef, Store, StoreError};

/// What is wrong with a blob file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobDamage {
    /// Its content hashes to another digest than its name.
    Corrupt { actual: BlobDigest },
    /// It could not be read.
    Unreadable { error: String },
}

/// A blob file that `verify` deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlob {
    pub digest: BlobDigest,
    /// The size of the file.
    pub size: u64,
    pub damage: BlobDamage,
}

/// Why `verify` dropped an action record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordDamage {
    /// The key or the JSON of the record does not parse.
    Unreadable { error: String },
    /// An output blob is damaged, missing, or has another size than recorded.
    Output { artifact: String, blob: BlobRef },
    /// An output refers to a blob that is damaged or missing.
    Reference {
        artifact: String,
        digest: BlobDigest,
    },
    /// The reference function failed on an output.
    References { artifact: String, error: String },
}

/// An action record that `verify` dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedAction {
    /// The key as stored (normally 64 hex characters; see [`ActionKey`]).
    pub key: String,
    pub damage: RecordDamage,
}

/// What `verify` checked and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every blob file that was hashed.
    pub checked: Usage,
    /// Action records checked.
    pub actions_checked: usize,
    /// Deleted blob files, in digest order.
    pub damaged_blobs: Vec<DamagedBlob>,
    /// Dropped action records, in key order.
    pub dropped_actions: Vec<DroppedAction>,
}

impl Store {
    /// Re-hashes every blob (in parallel), deletes the damaged ones and drops the action
    /// records that depend on them (see the module docs of `verify`). `references` is as for
    /// [`Store::inventory`].
    pub fn verify(&self, references: &ReferenceFn<'_>) -> Result<VerifyReport, StoreError> {
        let blobs = self.list_blobs()?.collect::<Result<Vec<BlobRef>, _>>()?;
        let mut checked = Usage::default();
        for blob in &blobs {
            checked += Usage {
                blobs: 1,
                bytes: blob.size,
            };
        }
        let mut damaged_blobs: Vec<DamagedBlob> = blobs
            .par_iter()
            .filter_map(|blob| {
                let damage = match self.verify_blob(&blob.digest) {
                    Ok(_) => return None,
                    Err(StoreError::CorruptBlob { actual, .. }) => BlobDamage::Corrupt { actual },
                    Err(error) => BlobDamage::Unreadable {
                        error: error.to_string(),
                    },
                };
                Some(DamagedBlob {
                    digest: blob.digest,
                    size: blob.size,
                    damage,
                })
            })
            .collect();
        damaged_blobs.sort_by_key(|damaged| damaged.digest);
        let damaged: HashSet<BlobDigest> = damaged_blobs.iter().map(|d| d.digest).collect();
        let sound: HashMap<BlobDigest, u64> = blobs
            .iter()
            .filter(|blob| !damaged.contains(&blob.digest))
            .map(|blob| (blob.digest, blob.size))
            .collect();

        let rows = self.action_rows()?;
        let actions_checked = rows.len();
        let mut dropped_actions: Vec<DroppedAction> = rows
            .par_iter()
            .filter_map(|(key, json)| {
                check_record(key, json, &sound, references).map(|damage| DroppedAction {
                    key: key.clone(),
                    damage,
                })
            })
            .collect();
        dropped_actions.sort_by(|a, b| a.key.cmp(&b.key));

        let keys: Vec<String> = dropped_actions.iter().map(|d| d.key.clone()).collect();
        self.remove_action_rows(&keys)?;
        for blob in &damaged_blobs {
            self.remove_blob(&blob.digest)?;
        }
        Ok(VerifyReport {
            checked,
            actions_checked,
            damaged_blobs,
            dropped_actions,
        })
    }
}

/// Why the record `key` → `json` must go, if it must.
fn check_record(
    key: &str,
    json: &[u8],
    sound: &HashMap<BlobDigest, u64>,
    references: &ReferenceFn<'_>,
) -> Option<RecordDamage> {
    if let Err(error) = key.parse::<ActionKey>() {
        return Some(RecordDamage::Unreadable {
            error: error.to_string(),
        });
    }
    let result: ActionResult = match serde_json::from_slice(json) {
        Ok(result) => result,
        Err(error) => {
            return Some(RecordDamage::Unreadable {
                error: error.to_string(),
            });
        }
    };
    if let Some(artifact) = result
        .outputs
        .iter()
        .find(|a| sound.get(&a.blob.digest) != Some(&a.blob.size))
    {
        return Some(RecordDamage::Output {
            artifact: artifact.name.clone(),
            blob: artifact.blob,
        });
    }
    for artifact in result.outputs.iter().filter(|a| a.kind.has_references()) {
        match references(artifact) {
            Ok(referenced) => {
                if let Some(digest) = referenced.iter().find(|d| !sound.contains_key(d)) {
                    return Some(RecordDamage::Reference {
                        artifact: artifact.name.clone(),
                        digest: *digest,
                    });
                }
            }
            Err(error) => {
                return Some(RecordDamage::References {
                    artifact: artifact.name.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
    None
}
