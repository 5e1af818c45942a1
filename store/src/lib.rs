//! The local content-addressed store of lkb.
//!
//! # Overview
//!
//! - [`digest`]: [`Digest<K>`] (sha256, typed by kind: [`BlobDigest`], [`TreeDigest`]),
//!   [`ActionKey`] (BLAKE3, computed by `lkb-engine`), and the records that name blobs:
//!   [`BlobRef`], [`Artifact`], [`ActionResult`].
//! - [`Store`]: opens a store directory (taking the process lock), reads blobs, and writes them
//!   through a [`BlobWriter`] (temp file → hash while writing → rename into `cas/`), or, for
//!   blobs of at most [`PACK_MAX_BLOB`] bytes given whole to [`Store::put_bytes`], by
//!   appending them to a pack file (`pack`).
//! - The redb index holds the action cache ([`Store::get_action_checked`],
//!   [`Store::put_action`]) and small metadata tables ([`MetaTable`]).
//! - `gc`: garbage collection ([`Store::inventory`] → [`Inventory::plan`] → [`Store::sweep`]),
//!   usage by [`BlobClass`] for `du`, and [`Store::clean`]. The store does not know blob
//!   formats: the caller passes the roots ([`GcRoot`]) and a [`ReferenceFn`] that says which
//!   blobs an artifact refers to (for lkb, a tree refers to its files' contents).
//! - `verify`: [`Store::verify`] re-hashes every blob, deletes damaged ones and drops the
//!   action records that depend on them.
//! - `remote`: the [`RemoteCache`] interface a shared cache backend implements.
//! - [`StoreError`] and the [`ErrorCategory`] shared by every lkb crate.
//!
//! # On-disk layout
//!
//! ```text
//! <root>/                        $LKB_STORE, chosen by the CLI
//!   store-v1/                    the layout version is in the path; a new layout is store-v2/
//!     lock                       advisory lock (flock) held by the one process using the store;
//!                                contains that process's pid, for the "waiting for" message
//!     cas/sha256/ab/abcdef…      blobs, one read-only file each, named by the lowercase hex
//!                                sha256 of the content; fanned out by its first two hex chars
//!     packs/0123456789abcdef.pack small blobs one after another; the index's `packed` table
//!                                says where each is (a process appends only to packs it made)
//!     tmp/blob-XXXXXX            blobs being written (same filesystem as cas/, so the final
//!                                rename is atomic); emptied when the store is opened
//!     index.redb                 redb database, tables below
//! ```
//!
//! | table     | key                       | value                                           |
//! |-----------|---------------------------|-------------------------------------------------|
//! | `actions` | action key, 64 hex chars  | JSON [`ActionResult`]: `{"outputs":[{"name", "blob":{"digest":"sha256:…","size"}}]}` |
//! | `packed`  | blob sha256, 64 hex chars | pack id, offset, length: 24 bytes, little-endian |
//! | `history` | action identity           | bytes owned by the engine (last key, inputs, params) |
//! | `pins`    | image reference           | bytes owned by the resolver                     |
//! | `roots`   | target label              | bytes owned by the CLI (GC roots; the CLI turns them into [`GcRoot`]s) |
//! | `remote`  | cache URL, space, action key | JSON [`ActionResult`] known at the remote cache, blobs not downloaded (owned by the engine) |
//!
//! # Consistency
//!
//! - A blob is written to `tmp/`, hashed while written, and renamed into `cas/` only when
//!   complete (and, with [`BlobWriter::finish_expect`], only if it has the expected digest).
//!   Blob files are never modified after the rename.
//! - Blobs are not fsynced as they are written. [`Store::put_action`] first flushes every blob
//!   written since the last flush ([`Store::sync_blobs`]: `fdatasync` of those files and packs,
//!   `fsync` of the directories they were added to — this store's writes only, not the whole
//!   file system's) and then commits the record, so a crash can leak an orphan blob but never
//!   leaves a record that names a missing blob. A cache hit is still only accepted if every
//!   blob it names is present with the right size ([`Lookup::Damaged`] otherwise).
//! - A packed blob's location reaches the index in the next write transaction, never before
//!   its bytes are written (and, through `put_action`, synced); until then it is kept in
//!   memory, so readers in this process see it at once.
//! - redb admits one process per database file. [`Store::open`] therefore takes an exclusive
//!   lock on `store-v1/lock` for the store's lifetime; a second lkb process is told who holds it
//!   ([`Store::open_with`]) and waits. Within one process, opening the same root again shares
//!   the open store. `cas/` and `tmp/` are created after the lock is taken, because
//!   [`Store::clean`] (which deletes everything but the lock file, holding the lock) may have
//!   run while a process waited.
//! - Garbage collection and `verify` delete action records (one transaction) before the blob
//!   files those records named, so a crash in between leaks blobs, never dangling records.

pub mod digest;

mod blob;
mod error;
mod gc;
mod index;
mod lock;
mod pack;
pub mod remote;
mod store;
mod verify;

#[cfg(test)]
mod tests;

pub use blob::{BlobIter, BlobWriter};
pub use digest::{
    ActionKey, ActionResult, Artifact, ArtifactKind, Blob, BlobDigest, BlobRef, Digest,
    DigestParseError, Tree, TreeDigest,
};
pub use error::{Categorized, ErrorCategory, StoreError};
pub use gc::{
    BlobClass, CleanReport, GcPlan, GcReport, GcRoot, Inventory, LiveSet, ReferenceError,
    ReferenceFn, Usage,
};
pub use index::{Lookup, MetaTable};
pub use pack::{BlobReader, PACK_MAX_BLOB};
pub use remote::{RemoteCache, RemoteError, RemoteErrorKind};
pub use store::Store;
pub use verify::{BlobDamage, DamagedBlob, DroppedAction, RecordDamage, VerifyReport};

categorized!(StoreError, DigestParseError);
