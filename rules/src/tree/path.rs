//! Paths: normalisation of untrusted names, and the archive order.

use std::cmp::Ordering;

/// Compares two paths in archive order (component-wise; see the `tree` module docs).
pub fn cmp_paths(a: &str, b: &str) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

/// A path as a map key, ordered by [`cmp_paths`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PathKey(pub(super) String);
impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_paths(&self.0, &other.0)
    }
}
impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a raw archive name could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} climbs out of the root")]
    Escapes(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
}

/// Normalises an archive name lexically: a leading `/`, empty and `.` components are dropped,
/// `..` removes the previous component. Returns `Ok(None)` for the root itself (`.`, `./`, `/`)
/// and an error for a path whose `..` would climb above the root.
pub fn normalize_path(raw: &str) -> Result<Option<String>, PathError> {
    if raw.contains('\0') {
        return Err(PathError::Nul(raw.to_string()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in raw.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PathError::Escapes(raw.to_string()));
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        Ok(None)
    } else {
        Ok(Some(parts.join("/")))
    }
}

/// Checks that `path` is already in normal form; returns the reason if not.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err("has a leading, trailing or doubled '/'"),
            "." | ".." => return Err("has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Splits `a/b/c` into (`Some("a/b")`, `"c"`) and `c` into (`None`, `"c"`).
pub fn split_parent(path: &str) -> (Option<&str>, &str) {
    match path.rfind('/') {
        Some(i) => (Some(&path[..i]), &path[i + 1..]),
        None => (None, path),
    }
}

/// The proper ancestors of a path, outermost first: `a/b/c` → `a`, `a/b`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}
