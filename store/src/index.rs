//! The redb index: the action cache and the small metadata tables.

use std::io;
use std::path::Path;

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use crate::pack::Location;
use crate::{ActionKey, ActionResult, BlobDigest, BlobRef, Store, StoreError};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Action key (64 hex) → JSON [`ActionResult`].
const ACTIONS: Table = TableDefinition::new("actions");
const ACTIONS_NAME: &str = "actions";

/// Blob digest (64 hex) → where a packed blob is: pack id, offset, length (24 bytes,
/// little-endian; see [`crate::pack`]).
const PACKED: Table = TableDefinition::new("packed");

/// A metadata table of the index: string keys, opaque byte values owned by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaTable {
    /// Per action identity: what the last execution was keyed on (for `--explain`).
    History,
    /// Image references resolved to digests.
    Pins,
    /// GC roots: the outputs of the last build of each target.
    Roots,
    /// `CACHE-URL ACTION-KEY` → JSON result known to be at that remote cache, whose blobs were
    /// not downloaded ("build without the bytes"); used only with that cache.
    Remote,
}

impl MetaTable {
    /// Every metadata table.
    pub const ALL: [MetaTable; 4] = [
        MetaTable::History,
        MetaTable::Pins,
        MetaTable::Roots,
        MetaTable::Remote,
    ];

    /// The table's name in the index file.
    pub const fn name(self) -> &'static str {
        match self {
            MetaTable::History => "history",
            MetaTable::Pins => "pins",
            MetaTable::Roots => "roots",
            MetaTable::Remote => "remote",
        }
    }

    const fn definition(self) -> Table {
        TableDefinition::new(self.name())
    }
}

/// The outcome of an action-cache lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A record exists and every blob it names is present with the right size.
    Hit(ActionResult),
    /// No record for this key.
    Miss,
    /// A record exists but names a blob that is missing or has the wrong size.
    Damaged { missing: BlobRef },
}

/// Creates every table, so read transactions never see a missing one.
pub(crate) fn create_tables(db: &redb::Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(ACTIONS)?;
    txn.open_table(PACKED)?;
    for table in MetaTable::ALL {
        txn.open_table(table.definition())?;
    }
    txn.commit()?;
    Ok(())
}

/// The error for a failed index operation: [`StoreError::DamagedIndex`] when redb says the file
/// is corrupt or not a database, else [`StoreError::Index`].
pub(crate) fn index_error(path: &Path, source: redb::Error) -> StoreError {
    let damaged = match &source {
        redb::Error::Corrupted(detail) => Some(detail.clone()),
        redb::Error::Io(e) if e.kind() == io::ErrorKind::InvalidData => Some(e.to_string()),
        _ => None,
    };
    match damaged {
        Some(detail) => StoreError::DamagedIndex {
            path: path.to_owned(),
            detail,
        },
        None => StoreError::Index {
            path: path.to_owned(),
            source: Box::new(source),
        },
    }
}

/// Runs an index operation, turning a panic inside redb into [`StoreError::DamagedIndex`]:
/// redb panics on some damaged files (`unreachable!` in its page parser) instead of returning
/// an error, and a damaged cache must not crash lkb with an internal error.
pub(crate) fn guarded<T>(
    path: &Path,
    operation: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(operation)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the index library panicked".to_owned());
        tracing::debug!(path = %path.display(), %detail, "redb panicked on the store index");
        Err(StoreError::DamagedIndex {
            path: path.to_owned(),
            detail: format!("reading it failed: {detail}"),
        })
    })
}

impl Store {
    fn index_error(&self, source: impl Into<redb::Error>) -> StoreError {
        index_error(&self.inner.index_path, source.into())
    }

    /// [`guarded`] for this store's index.
    fn guard<T>(&self, operation: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        guarded(&self.inner.index_path, operation)
    }

    /// Runs `body` in a write transaction that also commits `packed` (locations of packed blobs
    /// written so far, taken by the caller before it synced what they point at, if it did).
    fn write<T>(
        &self,
        packed: Vec<(BlobDigest, Location)>,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.guard(|| {
            let txn = self
                .inner
                .db
                .begin_write()
                .map_err(|e| self.index_error(e))?;
            let value = body(&txn)?;
            if !packed.is_empty() {
                let mut table = txn.open_table(PACKED).map_err(|e| self.index_error(e))?;
                for (digest, location) in &packed {
                    table
                        .insert(digest.hex().as_str(), location.encode().as_slice())
                        .map_err(|e| self.index_error(e))?;
                }
            }
            txn.commit().map_err(|e| self.index_error(e))?;
            self.inner.packs.committed(&packed);
            Ok(value)
        })
    }

    /// The index's location of a packed blob.
    pub(crate) fn packed_location(&self, d: &BlobDigest) -> Result<Option<Location>, StoreError> {
        Ok(self
            .read_value(PACKED, &d.hex())?
            .and_then(|bytes| Location::decode(&bytes)))
    }

    /// Every packed blob in the index (rows that do not parse are skipped).
    pub(crate) fn packed_rows(&self) -> Result<Vec<(BlobDigest, Location)>, StoreError> {
        Ok(self
            .list_values(PACKED)?
            .into_iter()
            .filter_map(|(hex, value)| {
                let digest = format!("sha256:{hex}").parse().ok()?;
                Some((digest, Location::decode(&value)?))
            })
            .collect())
    }

    /// Records new locations for packed blobs (after compaction), in one transaction.
    pub(crate) fn put_packed(&self, rows: Vec<(BlobDigest, Location)>) -> Result<(), StoreError> {
        self.write(rows, |_| Ok(()))
    }

    /// Deletes the index rows of packed blobs; returns which of `digests` had one.
    pub(crate) fn remove_packed(&self, digests: &[BlobDigest]) -> Result<Vec<bool>, StoreError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        self.write(Vec::new(), |txn| {
            let mut table = txn.open_table(PACKED).map_err(|e| self.index_error(e))?;
            digests
                .iter()
                .map(|d| {
                    table
                        .remove(d.hex().as_str())
                        .map(|old| old.is_some())
                        .map_err(|e| self.index_error(e))
                })
                .collect()
        })
    }

    fn read_value(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| {
            let txn = self
                .inner
                .db
                .begin_read()
                .map_err(|e| self.index_error(e))?;
            let table = txn.open_table(table).map_err(|e| self.index_error(e))?;
            let value = table.get(key).map_err(|e| self.index_error(e))?;
            Ok(value.map(|guard| guard.value().to_vec()))
        })
    }

    fn list_values(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.guard(|| {
            let txn = self
                .inner
                .db
                .begin_read()
                .map_err(|e| self.index_error(e))?;
            let table = txn.open_table(table).map_err(|e| self.index_error(e))?;
            let mut rows = Vec::new();
            for row in table.iter().map_err(|e| self.index_error(e))? {
                let (key, value) = row.map_err(|e| self.index_error(e))?;
                rows.push((key.value().to_owned(), value.value().to_vec()));
            }
            Ok(rows)
        })
    }

    fn remove_value(&self, table: Table, key: &str) -> Result<bool, StoreError> {
        self.write(Vec::new(), |txn| {
            let mut table = txn.open_table(table).map_err(|e| self.index_error(e))?;
            Ok(table
                .remove(key)
                .map_err(|e| self.index_error(e))?
                .is_some())
        })
    }

    /// Looks up an action record and checks that every blob it names is present.
    pub fn get_action_checked(&self, key: &ActionKey) -> Result<Lookup, StoreError> {
        let hex = key.to_string();
        let Some(bytes) = self.read_value(ACTIONS, &hex)? else {
            return Ok(Lookup::Miss);
        };
        let result: ActionResult =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::CorruptRecord {
                table: ACTIONS_NAME,
                key: hex,
                source: Box::new(source),
            })?;
        if let Some(missing) = result.blobs().find(|blob| !self.has_blob(blob)) {
            return Ok(Lookup::Damaged { missing: *missing });
        }
        Ok(Lookup::Hit(result))
    }

    /// The cached result of an action, only if every blob it names is present.
    pub fn get_action(&self, key: &ActionKey) -> Result<Option<ActionResult>, StoreError> {
        Ok(match self.get_action_checked(key)? {
            Lookup::Hit(result) => Some(result),
            Lookup::Miss | Lookup::Damaged { .. } => None,
        })
    }

    /// Records an action result. Its blobs must be in the store; they are synced to disk
    /// before the record is committed, so a crash never leaves a record without its blobs.
    pub fn put_action(&self, key: &ActionKey, r: &ActionResult) -> Result<(), StoreError> {
        self.put_action_with_meta(key, r, &[])
    }

    /// [`Store::put_action`] plus metadata rows, committed in the same transaction.
    pub fn put_action_with_meta(
        &self,
        key: &ActionKey,
        r: &ActionResult,
        meta: &[(MetaTable, &str, &[u8])],
    ) -> Result<(), StoreError> {
        if let Some(missing) = r.blobs().find(|blob| !self.has_blob(blob)) {
            return Err(StoreError::BlobMissing {
                digest: missing.digest,
                path: self.blob_path(&missing.digest),
            });
        }
        let json = serde_json::to_vec(r).map_err(|source| StoreError::CorruptRecord {
            table: ACTIONS_NAME,
            key: key.to_string(),
            source: Box::new(source),
        })?;
        // Taken before the sync, so every location committed points at synced bytes.
        let packed = self.inner.packs.pending_rows();
        self.sync_blobs()?;
        self.write(packed, |txn| {
            let mut actions = txn.open_table(ACTIONS).map_err(|e| self.index_error(e))?;
            actions
                .insert(key.to_string().as_str(), json.as_slice())
                .map_err(|e| self.index_error(e))?;
            for (table, row_key, value) in meta {
                let mut table = txn
                    .open_table(table.definition())
                    .map_err(|e| self.index_error(e))?;
                table
                    .insert(*row_key, *value)
                    .map_err(|e| self.index_error(e))?;
            }
            Ok(())
        })
    }

    /// Deletes an action record; returns whether it existed.
    pub fn remove_action(&self, key: &ActionKey) -> Result<bool, StoreError> {
        self.remove_value(ACTIONS, &key.to_string())
    }

    /// Deletes many action records in one transaction; returns how many existed.
    pub fn remove_actions(&self, keys: &[ActionKey]) -> Result<usize, StoreError> {
        let hex: Vec<String> = keys.iter().map(ToString::to_string).collect();
        self.remove_action_rows(&hex)
    }

    /// Deletes action records by their raw key text (which need not parse), in one transaction.
    pub(crate) fn remove_action_rows(&self, keys: &[String]) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.write(Vec::new(), |txn| {
            let mut table = txn.open_table(ACTIONS).map_err(|e| self.index_error(e))?;
            let mut removed = 0;
            for key in keys {
                if table
                    .remove(key.as_str())
                    .map_err(|e| self.index_error(e))?
                    .is_some()
                {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    /// Every action record as stored: key text and JSON bytes, neither checked (for `verify`).
    pub(crate) fn action_rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_values(ACTIONS)
    }

    /// The size of the index file in bytes.
    pub fn index_size(&self) -> Result<u64, StoreError> {
        let path = &self.inner.index_path;
        fs_err::metadata(path)
            .map(|meta| meta.len())
            .map_err(|source| StoreError::Scan {
                path: path.clone(),
                source,
            })
    }

    /// Every action record (for `cache ls` and garbage collection).
    pub fn list_actions(&self) -> Result<Vec<(ActionKey, ActionResult)>, StoreError> {
        let mut actions = Vec::new();
        for (hex, bytes) in self.list_values(ACTIONS)? {
            let corrupt =
                |source: Box<dyn std::error::Error + Send + Sync>| StoreError::CorruptRecord {
                    table: ACTIONS_NAME,
                    key: hex.clone(),
                    source,
                };
            let key: ActionKey = hex.parse().map_err(|e| corrupt(Box::new(e)))?;
            let result = serde_json::from_slice(&bytes).map_err(|e| corrupt(Box::new(e)))?;
            actions.push((key, result));
        }
        Ok(actions)
    }

    /// A metadata value.
    pub fn get_meta(&self, table: MetaTable, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_value(table.definition(), key)
    }

    /// Sets a metadata value. Blobs are not synced first: if the value names blobs that must
    /// survive a crash, call [`Store::sync_blobs`] before.
    pub fn put_meta(&self, table: MetaTable, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put_metas(&[(table, key, value)])
    }

    /// Writes several metadata values in one transaction.
    pub fn put_metas(&self, rows: &[(MetaTable, &str, &[u8])]) -> Result<(), StoreError> {
        self.write(self.inner.packs.pending_rows(), |txn| {
            for (table, key, value) in rows {
                let mut table = txn
                    .open_table(table.definition())
                    .map_err(|e| self.index_error(e))?;
                table
                    .insert(*key, *value)
                    .map_err(|e| self.index_error(e))?;
            }
            Ok(())
        })
    }

    /// Deletes a metadata value; returns whether it existed.
    pub fn remove_meta(&self, table: MetaTable, key: &str) -> Result<bool, StoreError> {
        self.remove_value(table.definition(), key)
    }

    /// Every row of a metadata table, in key order.
    pub fn list_meta(&self, table: MetaTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.list_values(table.definition())
    }
}
