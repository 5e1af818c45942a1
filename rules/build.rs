//! Reads the version of the gzip library from the workspace's Cargo.lock, so it enters the
//! action keys of the segments it writes (a new libdeflate may change the bytes).

use std::path::Path;

/// The locked version of `package`, if the lock file names exactly one.
fn locked_version(lock: &str, package: &str) -> Option<String> {
    let wanted = format!("name = \"{package}\"");
    let mut versions = Vec::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            versions.push(version.trim_end_matches('"').to_owned());
        }
    }
    match versions.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn main() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let lock_path = Path::new(manifest).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let (package, variable) = ("libdeflate-sys", "LKB_LIBDEFLATE_VERSION");
    let version = locked_version(&lock, package).unwrap_or_else(|| {
        println!(
            "cargo:warning=no single locked version of {package} in {}; \
             gzip cache keys will not follow its upgrades",
            lock_path.display()
        );
        "unlocked".to_owned()
    });
    println!("cargo:rustc-env={variable}={version}");
}
