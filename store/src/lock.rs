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
                let holder = wait_for_holder(&mut file)
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

/// The holder's pid. A process that has just taken the lock writes its pid a moment later, so
/// an empty or unreadable file is read again a few times (for at most ~200 ms) before giving up.
fn wait_for_holder(file: &mut fs_err::File) -> Option<u32> {
    for _ in 0..20 {
        if let Some(pid) = read_holder(file) {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

fn read_holder(file: &mut fs_err::File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Writes this process's pid over the file's content, then cuts off what is left of a longer
/// previous pid: the file is never empty in between, so a waiting process reads either the old
/// holder's pid or this one's, never nothing.
fn write_holder(file: &mut fs_err::File) -> std::io::Result<()> {
    let line = format!("{}\n", std::process::id());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())?;
    file.set_len(line.len() as u64)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_waiting_message_names_a_holder_that_writes_its_pid_late() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lock");
        let mut holder = fs_err::File::create(&path).expect("create lock");
        holder.file().lock().expect("lock");
        // Like a process that has just taken the lock: the file is still empty.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writeln!(holder, "4242").expect("write pid");
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let messages = std::sync::Mutex::new(Vec::new());
        let lock = StoreLock::acquire(&path, &|m| {
            messages.lock().expect("not poisoned").push(m.to_owned());
        })
        .expect("acquired once released");
        release.join().expect("holder thread");
        let messages = messages.into_inner().expect("not poisoned");
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("(pid 4242)"), "{messages:?}");
        drop(lock);
        let text = fs_err::read_to_string(&path).expect("read lock");
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_shorter_pid_leaves_no_digits_of_the_longer_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lock");
        fs_err::write(&path, "99999999999\n").expect("write");
        let lock = StoreLock::acquire(&path, &|_| {}).expect("free lock");
        let text = fs_err::read_to_string(&path).expect("read lock");
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(lock);
    }
}
