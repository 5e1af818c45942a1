//! Errors of the store, and the error categories shared by every lkb crate.

use std::io;
use std::path::PathBuf;

use crate::BlobDigest;

/// Who has to act on an error; the CLI maps it to an exit code and a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCategory {
    /// The input is wrong (bad yml, bad reference, wrong digest pin). Exit code 2.
    User,
    /// The machine or network is at fault (disk full, permissions, registry down). Exit code 3.
    Environment,
    /// A bug in lkb: an invariant did not hold. Exit code 101.
    Internal,
}

impl ErrorCategory {
    /// The process exit code for this category.
    pub const fn exit_code(self) -> i32 {
        match self {
            ErrorCategory::User => 2,
            ErrorCategory::Environment => 3,
            ErrorCategory::Internal => 101,
        }
    }
}

/// An error that says who has to act on it. Every error type of lkb implements it, and the
/// CLI's error type converts from nothing else, so an error cannot reach the user without a
/// category: a new error type without one does not compile where it meets the CLI.
pub trait Categorized: std::error::Error + Send + Sync + 'static {
    /// Who has to act on this error.
    fn category(&self) -> ErrorCategory;
}

/// Implements [`Categorized`] for error types that have an inherent `category(&self)`.
#[macro_export]
macro_rules! categorized {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::Categorized for $ty {
            fn category(&self) -> $crate::ErrorCategory {
                <$ty>::category(self)
            }
        }
    )*};
}

/// An I/O error that reached the top without a more specific error around it: the machine is
/// at fault (permissions, disk, a missing directory).
impl Categorized for io::Error {
    fn category(&self) -> ErrorCategory {
        ErrorCategory::Environment
    }
}

/// An error of the local store. Messages name the path or digest; the cause is the source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store directory could not be created.
    #[error("cannot create store directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot put the new store index in place at {path}")]
    CreateIndex {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot lock the store with {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The redb index failed.
    #[error("store index {path} failed")]
    Index {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// The redb index is damaged: redb refused it or failed on it (also by panicking).
    #[error("the store index at {path} is damaged ({detail}); run `lkb cache clean`")]
    DamagedIndex { path: PathBuf, detail: String },
    /// A record in the index is not valid JSON of the expected shape.
    #[error("record {key:?} in the {table} table of the store index is corrupt")]
    CorruptRecord {
        table: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Creating or writing a temporary file under `tmp/` failed.
    #[error("cannot write a new blob under {path}")]
    WriteBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the content of a new blob from its source failed.
    #[error("cannot read the content of a new blob")]
    ReadInput {
        #[source]
        source: io::Error,
    },
    /// Moving a finished blob into `cas/` failed.
    #[error("cannot publish blob {digest} at {path}")]
    Publish {
        digest: BlobDigest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Content did not hash to the digest it was promised to have. Nothing was published.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        expected: BlobDigest,
        actual: BlobDigest,
    },
    /// A blob that was asked for is not in the store.
    #[error("blob {digest} is missing from the store ({path})")]
    BlobMissing { digest: BlobDigest, path: PathBuf },
    /// A blob file exists but could not be read.
    #[error("cannot read blob {digest}")]
    ReadBlob {
        digest: BlobDigest,
        #[source]
        source: io::Error,
    },
    /// A blob file no longer hashes to its name (checked in debug builds and by `verify`).
    #[error("blob file {path} is corrupt: its content hashes to {actual}")]
    CorruptBlob {
        digest: BlobDigest,
        actual: BlobDigest,
        path: PathBuf,
    },
    /// Listing or removing blobs failed.
    #[error("cannot list or remove blobs under {path}")]
    Scan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The caller's reference function could not tell which blobs an artifact refers to
    /// (garbage collection stops rather than guess).
    #[error("cannot tell which blobs {digest} refers to")]
    References {
        digest: BlobDigest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store cannot be removed while this process has it open.
    #[error("the store {path} is open in this process")]
    InUse { path: PathBuf },
    /// Removing the store's files failed.
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Flushing blobs to disk before committing a record failed.
    #[error("cannot sync the store filesystem at {path}")]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// Who has to act on this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            StoreError::CorruptRecord { .. } | StoreError::InUse { .. } => ErrorCategory::Internal,
            StoreError::CreateDir { .. }
            | StoreError::CreateIndex { .. }
            | StoreError::Lock { .. }
            | StoreError::Index { .. }
            | StoreError::DamagedIndex { .. }
            | StoreError::WriteBlob { .. }
            | StoreError::ReadInput { .. }
            | StoreError::Publish { .. }
            | StoreError::DigestMismatch { .. }
            | StoreError::BlobMissing { .. }
            | StoreError::ReadBlob { .. }
            | StoreError::CorruptBlob { .. }
            | StoreError::Scan { .. }
            | StoreError::Sync { .. }
            | StoreError::References { .. }
            | StoreError::Remove { .. } => ErrorCategory::Environment,
        }
    }
}
