//! Debian packages as fixture sources: fetched with `apt-get download` into a cache directory
//! (reused across runs) and unpacked with `dpkg -x`. Nothing is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail, ensure};

/// The meta package whose dependency names the current kernel package.
pub const KERNEL_META_PACKAGE: &str = "linux-image-amd64";

/// A downloaded `.deb`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebPackage {
    /// `Package` field.
    pub name: String,
    /// `Version` field, e.g. `1:1.35.0-4+deb12u1+b1`.
    pub version: String,
    /// `Architecture` field.
    pub architecture: String,
    /// The file in the cache.
    pub path: PathBuf,
}

impl DebPackage {
    /// Reads the control fields of a `.deb` file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let fields = run(Command::new("dpkg-deb").arg("-f").arg(path).args([
            "Package",
            "Version",
            "Architecture",
        ]))?;
        let mut name = None;
        let mut version = None;
        let mut architecture = None;
        for line in fields.lines() {
            if let Some((key, value)) = line.split_once(':') {
                let value = Some(value.trim().to_owned());
                match key {
                    "Package" => name = value,
                    "Version" => version = value,
                    "Architecture" => architecture = value,
                    _ => {}
                }
            }
        }
        Ok(Self {
            name: name.context("deb without Package")?,
            version: version.context("deb without Version")?,
            architecture: architecture.context("deb without Architecture")?,
            path: path.to_owned(),
        })
    }

    /// The file name, e.g. `busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A directory of downloaded `.deb` files.
#[derive(Clone, Debug)]
pub struct DebCache {
    dir: PathBuf,
}

impl DebCache {
    /// Uses (and creates) `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        fs_err::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// `$LKB_FIXTURES_DEBS`, else `$XDG_CACHE_HOME/lkb-fixtures/debs`, else
    /// `$HOME/.cache/lkb-fixtures/debs`.
    #[expect(
        clippy::disallowed_methods,
        reason = "test support picks its cache dir the way cli settings would"
    )]
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("LKB_FIXTURES_DEBS") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        cache.join("lkb-fixtures/debs")
    }

    /// [`DebCache::new`] on [`DebCache::default_dir`].
    pub fn open_default() -> anyhow::Result<Self> {
        Self::new(&Self::default_dir())
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cached files of `package`, any version.
    pub fn cached(&self, package: &str) -> anyhow::Result<Vec<DebPackage>> {
        let prefix = format!("{package}_");
        let mut names: Vec<String> = fs_err::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| DebPackage::from_file(&self.dir.join(n)))
            .filter(|p| p.as_ref().map_or(true, |p| p.name == package))
            .collect()
    }

    /// The candidate version of `package` from the cache when present, otherwise downloaded
    /// with `apt-get download`. Without apt metadata, falls back to any cached version.
    pub fn fetch(&self, package: &str) -> anyhow::Result<DebPackage> {
        let cached = self.cached(package)?;
        let candidate = candidate_version(package).ok().flatten();
        match &candidate {
            Some(version) => {
                if let Some(hit) = cached.iter().find(|p| &p.version == version) {
                    return Ok(hit.clone());
                }
            }
            None => {
                if let Some(last) = cached.last() {
                    return Ok(last.clone());
                }
                bail!(
                    "{package}: not cached in {} and apt knows no candidate",
                    self.dir.display()
                );
            }
        }
        let spec = match &candidate {
            Some(version) => format!("{package}={version}"),
            None => package.to_owned(),
        };
        // Download into a private directory, then move in, so concurrent fetchers never see
        // a partial file.
        let staging = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&self.dir)?;
        run(Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(staging.path()))
        .with_context(|| format!("apt-get download {spec}"))?;
        let mut downloaded = None;
        for entry in fs_err::read_dir(staging.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let target = self.dir.join(&name);
            fs_err::rename(entry.path(), &target)?;
            downloaded = Some(target);
        }
        let path = downloaded.with_context(|| format!("apt-get download {spec} wrote nothing"))?;
        let package_info = DebPackage::from_file(&path)?;
        ensure!(
            package_info.name == package,
            "downloaded {} but asked for {package}",
            package_info.name
        );
        Ok(package_info)
    }

    /// The current kernel package (e.g. `linux-image-6.1.0-56-amd64`): the dependency of
    /// [`KERNEL_META_PACKAGE`], or without apt metadata the newest cached kernel package.
    pub fn kernel_package_name(&self) -> anyhow::Result<String> {
        if let Ok(name) = kernel_package_from_apt() {
            return Ok(name);
        }
        let mut names: Vec<String> = fs_err::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let package = name.split('_').next()?.to_owned();
                (package.starts_with("linux-image-")
                    && package.ends_with("-amd64")
                    && package != KERNEL_META_PACKAGE
                    && name.ends_with(".deb"))
                .then_some(package)
            })
            .collect();
        names.sort();
        names.pop().with_context(|| {
            format!(
                "no kernel package known to apt or cached in {}",
                self.dir.display()
            )
        })
    }

    /// Unpacks `deb` into `dest` with `dpkg -x` (creates `dest`).
    pub fn unpack(&self, deb: &DebPackage, dest: &Path) -> anyhow::Result<()> {
        fs_err::create_dir_all(dest)?;
        run(Command::new("dpkg").arg("-x").arg(&deb.path).arg(dest))
            .with_context(|| format!("dpkg -x {}", deb.path.display()))?;
        Ok(())
    }
}

/// `Candidate:` of `apt-cache policy <package>`; `None` when apt knows no candidate.
pub fn candidate_version(package: &str) -> anyhow::Result<Option<String>> {
    let output = run(Command::new("apt-cache").args(["policy", package]))?;
    Ok(output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .find(|v| *v != "(none)")
        .map(str::to_owned))
}

fn kernel_package_from_apt() -> anyhow::Result<String> {
    let output = run(Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]))?;
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_owned)
        .with_context(|| format!("apt-cache depends {KERNEL_META_PACKAGE} names no kernel"))
}

/// Runs a command, returning stdout; stderr goes into the error.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {:?}", command.get_program()))?;
    ensure!(
        output.status.success(),
        "{:?} failed ({}): {}",
        command.get_program(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
