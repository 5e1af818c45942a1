//! Workspaces, `lkb.toml` and labels.
//!
//! A workspace is the directory tree whose root holds `lkb.toml`. A *package* is any directory
//! in it; a *target* is a `NAME.yml` (or `NAME.yaml`) file in a package, named by the label
//! `//pkg/path:NAME`. `//pkg/...` names every target at or below `pkg`, `//...` every target in
//! the workspace. Plain yml paths work too, in or out of a workspace (LinuxKit's habit).

use std::path::{Path, PathBuf};

use lkb_store::ErrorCategory;
use serde::Deserialize;

/// The name of the file that marks a workspace root.
pub const WORKSPACE_FILE: &str = "lkb.toml";

/// Directory names never searched for targets by `//...` patterns.
const SKIPPED_DIRS: &[&str] = &["lkb-out", "target", "node_modules"];

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "no {WORKSPACE_FILE} found in {start} or any parent directory; labels like `{label}` need a workspace"
    )]
    NoWorkspace { start: PathBuf, label: String },
    #[error("{path}: invalid {WORKSPACE_FILE}: {message}")]
    InvalidManifest { path: PathBuf, message: String },
    #[error("`{label}` is not a valid label: {reason}")]
    BadLabel { label: String, reason: String },
    #[error("no target `{label}`{}", suggestion(.nearest))]
    UnknownTarget {
        label: String,
        nearest: Option<String>,
    },
    #[error("no package `{label}`{}", suggestion(.nearest))]
    UnknownPackage {
        label: String,
        nearest: Option<String>,
    },
    #[error("{path}: {reason}")]
    NotAFile { path: PathBuf, reason: String },
    #[error(
        "no target `{label}`: without `:NAME` it means `{label}:{name}`; the package has {}; \
         `{label}/...` builds them all",
        .targets.join(", ")
    )]
    NoDefaultTarget {
        label: String,
        name: String,
        targets: Vec<String>,
    },
    #[error("`{label}` matched no targets")]
    EmptyPattern { label: String },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn suggestion(nearest: &Option<String>) -> String {
    match nearest {
        Some(n) => format!("; did you mean `{n}`?"),
        None => String::new(),
    }
}

impl WorkspaceError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            WorkspaceError::Io { .. } => ErrorCategory::Environment,
            _ => ErrorCategory::User,
        }
    }
}

/// `lkb.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    #[serde(default)]
    pub images: ImagesSection,
    #[serde(default)]
    pub boot: BootSection,
    #[serde(default)]
    pub cache: CacheSection,
}

/// `[cache]`: the shared cache builds in this workspace use.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheSection {
    /// A remote cache URL (`grpc://`, `grpcs://`, `oci://`); `--remote-cache` overrides it.
    pub remote: Option<String>,
}

/// `[boot]`: what the boot-media formats (raw-bios, raw-efi, iso-*, uki) install.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootSection {
    /// The image holding the boot loaders (layout in docs/formats.md); resolved and pinned in
    /// `lkb.lock` like the config's images. Default: [`crate::formats::DEFAULT_BOOT_IMAGE`].
    pub image: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImagesSection {
    /// OCI image layouts searched for images before any registry, relative to the root.
    #[serde(default)]
    pub layouts: Vec<PathBuf>,
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

/// A loaded workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub manifest: Manifest,
}

/// One buildable target: the label it was named by and the yml files it merges, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `//pkg:name`, or the file path for plain paths.
    pub label: String,
    /// Package path relative to the workspace root (`examples`), empty for the root package
    /// and for files outside a workspace.
    pub package: PathBuf,
    /// Output base name (LinuxKit `--name` default: the last file's stem).
    pub name: String,
    pub files: Vec<PathBuf>,
}

impl Workspace {
    /// Finds the workspace containing `start` (walking up), if any.
    pub fn discover(start: &Path) -> Result<Option<Workspace>, WorkspaceError> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let candidate = d.join(WORKSPACE_FILE);
            if candidate.is_file() {
                return Workspace::load(d).map(Some);
            }
            dir = d.parent();
        }
        Ok(None)
    }

    pub fn load(root: &Path) -> Result<Workspace, WorkspaceError> {
        let path = root.join(WORKSPACE_FILE);
        let text = fs_err::read_to_string(&path).map_err(|source| WorkspaceError::Io {
            path: path.clone(),
            source,
        })?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| WorkspaceError::InvalidManifest {
                path: path.clone(),
                message: e.to_string().trim().to_string(),
            })?;
        Ok(Workspace {
            root: root.to_path_buf(),
            manifest,
        })
    }

    /// Absolute paths of the OCI layouts this workspace registers.
    pub fn layouts(&self) -> Vec<PathBuf> {
        self.manifest
            .images
            .layouts
            .iter()
            .map(|p| self.root.join(p))
            .collect()
    }

    /// Expands one label or pattern into targets, sorted by label.
    pub fn expand(&self, label: &str) -> Result<Vec<Target>, WorkspaceError> {
        let parsed = Label::parse(label)?;
        match parsed {
            Label::Target {
                package,
                name,
                implicit,
            } => {
                let dir = self.root.join(&package);
                if !dir.is_dir() {
                    let nearest = self.nearest_package(&package)?.map(|p| format!("//{p}"));
                    return Err(WorkspaceError::UnknownPackage {
                        label: format!("//{package}"),
                        nearest,
                    });
                }
                match find_yml(&dir, &name) {
                    Some(file) => Ok(vec![self.target(&package, &name, file)]),
                    None if implicit => {
                        let mut here = Vec::new();
                        self.collect(&dir, &mut here)?;
                        here.retain(|target| target.package == Path::new(&package));
                        here.sort_by(|a, b| a.label.cmp(&b.label));
                        if here.is_empty() {
                            return Err(WorkspaceError::EmptyPattern {
                                label: label.to_string(),
                            });
                        }
                        Err(WorkspaceError::NoDefaultTarget {
                            label: label.to_string(),
                            name,
                            targets: here.into_iter().map(|target| target.label).collect(),
                        })
                    }
                    None => {
                        let nearest =
                            nearest(label, self.all_targets()?.into_iter().map(|t| t.label));
                        Err(WorkspaceError::UnknownTarget {
                            label: label.to_string(),
                            nearest,
                        })
                    }
                }
            }
            Label::Recursive { package } => {
                let dir = self.root.join(&package);
                if !dir.is_dir() {
                    let nearest = self
                        .nearest_package(&package)?
                        .map(|p| format!("//{p}/..."));
                    return Err(WorkspaceError::UnknownPackage {
                        label: label.to_string(),
                        nearest,
                    });
                }
                let mut targets = Vec::new();
                self.collect(&dir, &mut targets)?;
                if targets.is_empty() {
                    return Err(WorkspaceError::EmptyPattern {
                        label: label.to_string(),
                    });
                }
                targets.sort_by(|a, b| a.label.cmp(&b.label));
                Ok(targets)
            }
        }
    }

    /// Every target in the workspace.
    pub fn all_targets(&self) -> Result<Vec<Target>, WorkspaceError> {
        let mut targets = Vec::new();
        self.collect(&self.root, &mut targets)?;
        targets.sort_by(|a, b| a.label.cmp(&b.label));
        Ok(targets)
    }

    /// The package with targets nearest to `package`, for a "did you mean" hint.
    fn nearest_package(&self, package: &str) -> Result<Option<String>, WorkspaceError> {
        Ok(nearest(
            package,
            self.all_targets()?
                .iter()
                .map(|t| t.package.to_string_lossy().into_owned()),
        ))
    }

    fn target(&self, package: &str, name: &str, file: PathBuf) -> Target {
        Target {
            label: format!("//{package}:{name}"),
            package: PathBuf::from(package),
            name: name.to_string(),
            files: vec![file],
        }
    }

    fn collect(&self, dir: &Path, out: &mut Vec<Target>) -> Result<(), WorkspaceError> {
        let io = |source| WorkspaceError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<_> = fs_err::read_dir(dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let file_type = entry.file_type().map_err(io)?;
            if file_type.is_dir() {
                if file_name.starts_with('.') || SKIPPED_DIRS.contains(&file_name.as_str()) {
                    continue;
                }
                self.collect(&path, out)?;
            } else if let Some(stem) = yml_stem(&file_name) {
                let package = dir
                    .strip_prefix(&self.root)
                    .unwrap_or(Path::new(""))
                    .to_string_lossy()
                    .into_owned();
                out.push(self.target(&package, stem, path));
            }
        }
        Ok(())
    }
}

/// Builds a target from plain yml paths (merged in order), LinuxKit style.
pub fn target_from_files(
    files: &[PathBuf],
    workspace: Option<&Workspace>,
) -> Result<Target, WorkspaceError> {
    let last = files.last().ok_or_else(|| WorkspaceError::BadLabel {
        label: String::new(),
        reason: "no yml file given".into(),
    })?;
    for f in files {
        if !f.is_file() {
            let reason = if f.is_dir() {
                "is a directory, not a yml file (to build the targets in it, use a label such as //pkg/...)".to_owned()
            } else if f.exists() {
                "is not a regular file".to_owned()
            } else {
                match label_like(f, workspace) {
                    Some(label) => {
                        format!("no such file; labels start with `//`: did you mean `{label}`?")
                    }
                    None => "no such file".to_owned(),
                }
            };
            return Err(WorkspaceError::NotAFile {
                path: f.clone(),
                reason,
            });
        }
    }
    let name = last
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "moby".into());
    let package = match workspace {
        Some(ws) => {
            let abs = fs_err::canonicalize(last).map_err(|source| WorkspaceError::Io {
                path: last.clone(),
                source,
            })?;
            let root = fs_err::canonicalize(&ws.root).unwrap_or(ws.root.clone());
            abs.parent()
                .and_then(|p| p.strip_prefix(&root).ok())
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
        None => PathBuf::new(),
    };
    Ok(Target {
        label: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        package,
        name,
        files: files.to_vec(),
    })
}

/// `//pkg:name` when a missing file `f` reads like a label written without its `//`
/// (`examples:sshd`): its path below the workspace root (or its name) has a `:`.
fn label_like(f: &Path, workspace: Option<&Workspace>) -> Option<String> {
    let relative = workspace
        .and_then(|ws| f.strip_prefix(&ws.root).ok())
        .or_else(|| f.file_name().map(Path::new))?
        .to_str()?;
    let (package, name) = relative.split_once(':')?;
    (!name.is_empty() && !name.contains(['/', ':'])).then(|| format!("//{package}:{name}"))
}

/// True if the argument looks like a label rather than a file path.
pub fn is_label(arg: &str) -> bool {
    arg.starts_with("//")
}

#[derive(Debug, PartialEq, Eq)]
enum Label {
    /// `implicit`: written without `:NAME`, so the name is the package's last component.
    Target {
        package: String,
        name: String,
        implicit: bool,
    },
    Recursive {
        package: String,
    },
}

impl Label {
    fn parse(label: &str) -> Result<Label, WorkspaceError> {
        let bad = |reason: &str| WorkspaceError::BadLabel {
            label: label.to_string(),
            reason: reason.to_string(),
        };
        let rest = label
            .strip_prefix("//")
            .ok_or_else(|| bad("labels start with `//`"))?;
        if rest == "..." {
            return Ok(Label::Recursive {
                package: String::new(),
            });
        }
        if let Some(package) = rest.strip_suffix("/...") {
            check_package(package).map_err(|r| bad(&r))?;
            return Ok(Label::Recursive {
                package: package.to_string(),
            });
        }
        let (package, name, implicit) = match rest.split_once(':') {
            Some((p, n)) => (p, n, false),
            None => (rest, rest.rsplit('/').next().unwrap_or(rest), true),
        };
        check_package(package).map_err(|r| bad(&r))?;
        if name.is_empty() || name.contains('/') || name.contains(':') {
            return Err(bad("the target name after `:` must be a plain file stem"));
        }
        Ok(Label::Target {
            package: package.to_string(),
            name: name.to_string(),
            implicit,
        })
    }
}

fn check_package(package: &str) -> Result<(), String> {
    if package.starts_with('/') || package.ends_with('/') {
        return Err("package paths have no leading or trailing `/`".into());
    }
    if package
        .split('/')
        .any(|c| c == ".." || c == "." || (c.is_empty() && !package.is_empty()))
    {
        return Err("package paths may not contain `.`, `..` or empty components".into());
    }
    Ok(())
}

fn yml_stem(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".yml")
        .or_else(|| file_name.strip_suffix(".yaml"))
        .filter(|s| !s.is_empty())
}

fn find_yml(dir: &Path, name: &str) -> Option<PathBuf> {
    ["yml", "yaml"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// The candidate closest to `wanted` by edit distance, if it is reasonably close.
pub fn nearest(wanted: &str, candidates: impl IntoIterator<Item = String>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wanted, &c), c))
        .filter(|(d, c)| *d <= (wanted.len().max(c.len()) / 2).max(2))
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs_err::write(
            root.join(WORKSPACE_FILE),
            "[images]\nlayouts = [\"images/oci\"]\ninsecure-registries = [\"reg.lan:5000\"]\n",
        )
        .expect("write");
        fs_err::create_dir_all(root.join("examples/nested")).expect("mkdir");
        fs_err::write(root.join("examples/minimal.yml"), "init: []\n").expect("write");
        fs_err::write(root.join("examples/sshd.yml"), "init: []\n").expect("write");
        fs_err::write(root.join("examples/nested/deep.yaml"), "init: []\n").expect("write");
        fs_err::write(root.join("top.yml"), "init: []\n").expect("write");
        let ws = Workspace::discover(&root.join("examples/nested"))
            .expect("discover")
            .expect("found");
        (dir, ws)
    }

    #[test]
    fn labels_resolve_to_files() {
        let (_d, ws) = workspace();
        let t = ws.expand("//examples:minimal").expect("expand");
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].label, "//examples:minimal");
        assert_eq!(t[0].name, "minimal");
        assert!(t[0].files[0].ends_with("examples/minimal.yml"));
        assert_eq!(ws.expand("//:top").expect("root")[0].name, "top");
        let deep = ws.expand("//examples/nested:deep").expect("yaml extension");
        assert_eq!(deep[0].package, PathBuf::from("examples/nested"));
        // A label without `:NAME` names the target of the package's own name; when there is
        // none, the error lists what the package has instead of guessing a near name.
        let err = ws.expand("//examples").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no target `//examples`: without `:NAME` it means `//examples:examples`; the \
             package has //examples:minimal, //examples:sshd; `//examples/...` builds them all"
        );
        assert_eq!(
            ws.expand("//examples/nested").unwrap_err().to_string(),
            "no target `//examples/nested`: without `:NAME` it means \
             `//examples/nested:nested`; the package has //examples/nested:deep; \
             `//examples/nested/...` builds them all"
        );
    }

    #[test]
    fn a_label_written_without_slashes_is_hinted() {
        let (d, ws) = workspace();
        let missing = d.path().join("examples:sshd");
        let err = target_from_files(&[missing], Some(&ws)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("no such file; labels start with `//`: did you mean `//examples:sshd`?"),
            "{err}"
        );
        let plain = d.path().join("nothing.yml");
        let err = target_from_files(&[plain], Some(&ws)).unwrap_err();
        assert!(err.to_string().ends_with(": no such file"), "{err}");
    }

    #[test]
    fn recursive_patterns() {
        let (_d, ws) = workspace();
        let labels: Vec<_> = ws
            .expand("//examples/...")
            .expect("expand")
            .into_iter()
            .map(|t| t.label)
            .collect();
        assert_eq!(
            labels,
            [
                "//examples/nested:deep",
                "//examples:minimal",
                "//examples:sshd"
            ]
        );
        assert_eq!(ws.expand("//...").expect("all").len(), 4);
    }

    #[test]
    fn unknown_labels_suggest_nearest() {
        let (_d, ws) = workspace();
        let err = ws.expand("//examples:minimall").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no target `//examples:minimall`; did you mean `//examples:minimal`?"
        );
        assert_eq!(err.category(), ErrorCategory::User);
        let err = ws.expand("//exampels:sshd").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no package `//exampels`; did you mean `//examples`?"
        );
        assert!(matches!(
            Label::parse("examples:x"),
            Err(WorkspaceError::BadLabel { .. })
        ));
        assert!(matches!(
            Label::parse("//a/../b:x"),
            Err(WorkspaceError::BadLabel { .. })
        ));
    }

    #[test]
    fn manifest_is_strict() {
        let (d, ws) = workspace();
        assert_eq!(ws.manifest.images.insecure_registries, ["reg.lan:5000"]);
        assert!(ws.layouts()[0].ends_with("images/oci"));
        fs_err::write(d.path().join(WORKSPACE_FILE), "[images]\nlayout = []\n").expect("write");
        let err = Workspace::load(d.path()).unwrap_err();
        assert!(err.to_string().contains("unknown field `layout`"), "{err}");
    }
}
