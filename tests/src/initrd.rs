//! Hand-made initrds for boot smoke tests, written by Debian's GNU `cpio` (an oracle that is
//! independent of lkb's own initrd writer).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, ensure};

/// A newc cpio archive of the tree at `dir` (owners 0:0, names sorted, no `.` entry, no
/// trailing data), as `find . | sort | cpio -o -H newc -R 0:0 --reproducible` would write it.
pub fn cpio_from_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut names = Vec::new();
    collect(dir, "", &mut names)?;
    names.sort();
    let mut list = String::new();
    for name in &names {
        list.push_str(name);
        list.push('\n');
    }
    let mut child = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning cpio (Debian package cpio)")?;
    let mut stdin = child.stdin.take().context("cpio stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(list.as_bytes()));
    let output = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("cpio stdin writer panicked"))??;
    ensure!(
        output.status.success(),
        "cpio failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}

/// [`cpio_from_dir`], gzip-compressed (header mtime 0), ready for `qemu -initrd`.
pub fn gzip_initrd_from_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let cpio = cpio_from_dir(dir)?;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(&cpio)?;
    Ok(encoder.finish()?)
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("non-UTF-8 name in {}", dir.display()))?;
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let is_dir = entry.file_type()?.is_dir();
        out.push(path.clone());
        if is_dir {
            collect(&entry.path(), &path, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_lists_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("bin")).unwrap();
        fs_err::write(dir.path().join("bin/hello"), "hi").unwrap();
        std::os::unix::fs::symlink("hello", dir.path().join("bin/link")).unwrap();
        let archive = cpio_from_dir(dir.path()).unwrap();
        assert!(archive.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&archive);
        for name in ["bin\0", "bin/hello\0", "bin/link\0", "TRAILER!!!\0"] {
            assert!(text.contains(name), "{name:?} missing");
        }
        assert_eq!(archive, cpio_from_dir(dir.path()).unwrap());
    }
}
