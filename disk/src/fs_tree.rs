//! What every file-system writer (ISO 9660, squashfs, EROFS) does first with its
//! [`FsEntry`] list: check the paths, refuse duplicates, and add the directories the list
//! leaves out (the root included).

use std::collections::BTreeMap;

use crate::{DiskError, FsEntry, FsKind};

/// The entries by path, every missing parent (and the root, `""`) added as a directory (0755,
/// root, `dir_time`). A path's parents sort before it, and a directory's children in name
/// order. `what` names the format in messages (`ISO`, `EROFS`, `squashfs`).
pub(crate) fn complete(
    entries: Vec<FsEntry>,
    dir_time: i64,
    what: &str,
) -> Result<BTreeMap<String, FsEntry>, DiskError> {
    let mut by_path: BTreeMap<String, FsEntry> = BTreeMap::new();
    for entry in entries {
        check_path(&entry.path, what)?;
        if let Some(old) = by_path.insert(entry.path.clone(), entry) {
            return Err(DiskError::Invalid(format!(
                "{what}: {:?} is listed twice",
                old.path
            )));
        }
    }
    let mut missing = vec![String::new()];
    for path in by_path.keys() {
        let mut p = path.as_str();
        while let Some(slash) = p.rfind('/') {
            p = &p[..slash];
            missing.push(p.to_string());
        }
    }
    for path in missing {
        by_path.entry(path.clone()).or_insert(FsEntry {
            path,
            kind: FsKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: dir_time,
            link_group: None,
            xattrs: Vec::new(),
        });
    }
    Ok(by_path)
}

/// A relative path of 1–255-byte components, none `.`, `..` or holding NUL; `""` is the root.
pub(crate) fn check_path(path: &str, what: &str) -> Result<(), DiskError> {
    if path.is_empty() {
        return Ok(());
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.len() > 255 || c.contains('\0') {
            return Err(DiskError::Invalid(format!(
                "{what}: bad path {path:?}: components must be 1 to 255 bytes, not `.` or `..`, \
                 without NUL, and the path relative without a trailing `/`"
            )));
        }
    }
    Ok(())
}
