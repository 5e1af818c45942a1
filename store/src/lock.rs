//! The process-level lock on a store: one lkb process at a time, later ones wait.

use std::fs::TryLockError; // the error type of File::try_lock, which fs_err does not wrap
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::StoreError;

/// An exclusive advisory lock on `store-v1/lock`, held for the lifetime of a
/// [`Store`](crate::Store). The file holds the pid of the holder, for the waiting message.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: fs_err::File,
}

impl StoreLock {
    /// Takes the lock, calling `notify` once (with a message naming the holder's pid) if another
    /// process holds it, then blocking until it is free.
    pub(crate) fn acquire(path: &Path, notify: &dyn Fn(&str)) -> Result<Self, StoreError> {
        let lock_error = |source| StoreError::Lock {
            path: path.to_owned(),
            source,
        };
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(lock_error)?;
        match file.file().try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file)
                    .map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"));
                notify(&format!(
                    "waiting for the store lock held by another lkb process ({holder})"
                ));
                file.file().lock().map_err(lock_error)?;
            }
            Err(TryLockError::Error(source)) => return Err(lock_error(source)),
        }
        write_holder(&mut file).map_err(lock_error)?;
        Ok(StoreLock { _file: file })
    }
}

fn read_holder(file: &mut fs_err::File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_holder(file: &mut fs_err::File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}
