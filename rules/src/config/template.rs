//! `@pkg:` templates.
//!
//! In a yml read from a local file, a string scalar `@pkg:<path>` (an image reference, a
//! command argument, any string) stands for the image that `linuxkit pkg build` makes from the
//! package directory `<yml dir>/<path>`, named as `linuxkit pkg show-tag --canonical` names
//! it: `docker.io/<org>/<image>:<tag>`, where `org` (default `linuxkit`) and `image` come
//! from the package's `build.yml`, and `tag` is its `tag` template (default `{{.Hash}}`)
//! applied to the package hash. The hash is the git tree hash of the directory at `HEAD`
//! (with `extra-sources` folded in with SHA-1), plus `-dirty-<7 hex>` when the directory has
//! uncommitted or untracked changes; the 7 hex digits start the SHA-256 of the contents of
//! the package's tracked and untracked files. Outside a git work tree the hash is empty,
//! and an empty tag is `latest`.
//!
//! Parsing stays pure: [`find_templates`] lists a text's template scalars and
//! [`super::parse_config_with`] substitutes resolved values. Only [`resolve_templates`] and
//! [`package_reference`] do I/O (reading `build.yml`, running `git`).
//!
//! Differences from LinuxKit: a template that cannot be resolved is an error at its
//! file:line:column (LinuxKit keeps the text and fails later, or not at all); other `@…`
//! strings are kept as written (LinuxKit turns them into `""`); the package's own `tag`
//! template is honoured (LinuxKit's `build` ignores it, unlike `pkg build` and `show-tag`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use saphyr::{ScalarOwned, YamlDataOwned};
use sha2::{Digest, Sha256};

use super::error::{ConfigError, Spanned};
use super::parse::{parse_config, parse_config_with};
use super::types::Config;
use super::yaml::{Node, Reader, child};

/// The prefix of a package template.
pub const TEMPLATE_PREFIX: &str = "@pkg:";

/// Keys a package `build.yml` may have (LinuxKit decodes it strictly).
const BUILD_YML_KEYS: &[&str] = &[
    "image",
    "org",
    "tag",
    "dockerfile",
    "arches",
    "extra-sources",
    "gitrepo",
    "network",
    "disable-cache",
    "config",
    "buildArgs",
    "depends",
];

/// Resolved templates of one file: template text → replacement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateValues {
    values: BTreeMap<String, String>,
}

impl TemplateValues {
    /// No substitutions.
    pub fn new() -> TemplateValues {
        TemplateValues::default()
    }

    /// Replaces every scalar equal to `template` with `value`.
    pub fn insert(&mut self, template: impl Into<String>, value: impl Into<String>) {
        self.values.insert(template.into(), value.into());
    }

    /// The replacement of `template`, if any.
    pub fn get(&self, template: &str) -> Option<&str> {
        self.values.get(template).map(String::as_str)
    }

    /// Whether there is nothing to substitute.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces template string scalars (keys included) in a parsed document.
    pub(super) fn substitute(&self, node: &mut Node) {
        if self.values.is_empty() {
            return;
        }
        match &mut node.data {
            YamlDataOwned::Value(ScalarOwned::String(s)) => {
                if let Some(value) = self.values.get(s.as_str()) {
                    value.clone_into(s);
                }
            }
            YamlDataOwned::Sequence(items) => {
                for item in items {
                    self.substitute(item);
                }
            }
            YamlDataOwned::Mapping(map) => {
                let entries = std::mem::take(map);
                for (mut key, mut value) in entries {
                    self.substitute(&mut key);
                    self.substitute(&mut value);
                    map.insert(key, value);
                }
            }
            YamlDataOwned::Tagged(_, inner) => self.substitute(inner),
            _ => {}
        }
    }
}

/// Every `@pkg:` string scalar of a yml text, keys included, in document order. Pure.
pub fn find_templates(text: &str, file: &Path) -> Result<Vec<Spanned<String>>, ConfigError> {
    let r = Reader::new(Arc::from(file), text);
    let mut found = Vec::new();
    if let Some(doc) = r.load()? {
        collect(&r, &doc, &mut found);
    }
    Ok(found)
}

fn collect(r: &Reader<'_>, node: &Node, found: &mut Vec<Spanned<String>>) {
    match &node.data {
        YamlDataOwned::Value(ScalarOwned::String(s)) if s.starts_with(TEMPLATE_PREFIX) => {
            found.push(Spanned::new(s.clone(), r.span_of(node)));
        }
        YamlDataOwned::Sequence(items) => {
            for item in items {
                collect(r, item, found);
            }
        }
        YamlDataOwned::Mapping(map) => {
            for (key, value) in map {
                collect(r, key, found);
                collect(r, value, found);
            }
        }
        YamlDataOwned::Tagged(_, inner) => collect(r, inner, found),
        _ => {}
    }
}

/// Resolves templates found in a yml file whose directory is `yml_dir`: reads each
/// package's `build.yml` and asks `git` for its hash. An error names the template's place.
pub fn resolve_templates(
    found: &[Spanned<String>],
    yml_dir: &Path,
) -> Result<TemplateValues, ConfigError> {
    let mut values = TemplateValues::new();
    for template in found {
        if values.get(&template.value).is_some() {
            continue;
        }
        let package = template.value.trim_start_matches(TEMPLATE_PREFIX);
        let dir = clean(&yml_dir.join(package));
        let reference = package_reference(&dir).map_err(|e| {
            ConfigError::new(
                template.span.clone(),
                format!("cannot resolve `{}`: {e}", template.value),
            )
            .with_hint(
                "`@pkg:<path>` names a package directory with a build.yml, relative to the \
                 yml file",
            )
        })?;
        values.insert(template.value.clone(), reference);
    }
    Ok(values)
}

/// Parses a yml read from a local file: checks it as written ([`parse_config`]), then
/// resolves its `@pkg:` templates against its directory and parses it again with them
/// substituted. Runs `git` only when the file has templates.
pub fn parse_local_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let config = parse_config(text, file)?;
    let found = find_templates(text, file)?;
    if found.is_empty() {
        return Ok(config);
    }
    let dir = file.parent().unwrap_or_else(|| Path::new(""));
    let values = resolve_templates(&found, dir)?;
    parse_config_with(text, file, &values)
}

/// Why a package's image name cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    BuildYml(ConfigError),
    #[error("cannot run `git {args}` in {}: {source}", dir.display())]
    GitMissing {
        args: String,
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("`git {args}` in {} failed: {stderr}", dir.display())]
    GitFailed {
        args: String,
        dir: PathBuf,
        stderr: String,
    },
    #[error("{} is not committed: HEAD has no such directory", dir.display())]
    NotCommitted { dir: PathBuf },
    #[error("{} is not in a git work tree", dir.display())]
    NotInGit { dir: PathBuf },
    #[error("invalid tag template `{template}`: {reason}")]
    TagTemplate { template: String, reason: String },
}

/// The canonical image reference of the package in `dir`, as
/// `linuxkit pkg show-tag --canonical <dir>` prints it.
pub fn package_reference(dir: &Path) -> Result<String, PackageError> {
    let path = dir.join("build.yml");
    // std, not fs_err: `PackageError::Read` names the path itself.
    let text = std::fs::read_to_string(&path).map_err(|source| PackageError::Read {
        path: path.clone(),
        source,
    })?;
    let info = BuildInfo::parse(&text, &path).map_err(PackageError::BuildYml)?;
    let hash = package_hash(dir, &info.extra_sources)?.unwrap_or_default();
    let mut tag = expand_tag(&info.tag, &hash)?;
    if tag.is_empty() {
        "latest".clone_into(&mut tag);
    }
    Ok(super::expand_ref(&format!(
        "{}/{}:{tag}",
        info.org, info.image
    )))
}

/// The parts of a package's `build.yml` that name its image.
#[derive(Debug, PartialEq, Eq)]
struct BuildInfo {
    image: String,
    org: String,
    tag: String,
    extra_sources: Vec<String>,
}

impl BuildInfo {
    fn parse(text: &str, path: &Path) -> Result<BuildInfo, ConfigError> {
        let r = Reader::new(Arc::from(path), text);
        let Some(doc) = r.load()? else {
            return Err(ConfigError::new(
                super::error::Span::new(Arc::from(path), 1, 1),
                "`image` is required",
            ));
        };
        let map = r.map(&doc, "", BUILD_YML_KEYS)?;
        let string = |key: &str| {
            map.get(key)
                .map(|v| r.string(v, &child("", key)))
                .transpose()
        };
        let image = match string("image")? {
            Some(image) if !image.value.is_empty() => image.value,
            _ => {
                return Err(ConfigError::new(map.span.clone(), "`image` is required"));
            }
        };
        let org = match string("org")? {
            Some(org) if org.value.is_empty() => {
                return Err(ConfigError::new(org.span, "`org` must not be empty"));
            }
            Some(org) => org.value,
            None => "linuxkit".to_owned(),
        };
        let tag = string("tag")?
            .map(|t| t.value)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "{{.Hash}}".to_owned());
        let extra_sources = match map.get("extra-sources") {
            Some(v) => r
                .strings(v, "extra-sources")?
                .value
                .into_iter()
                .map(|s| s.value)
                .collect(),
            None => Vec::new(),
        };
        Ok(BuildInfo {
            image,
            org,
            tag,
            extra_sources,
        })
    }
}

/// Applies a Go text/template tag template to `hash`: `{{.Hash}}` (also `{{ .Hash }}` and
/// the `{{-`/`-}}` trim markers) is the only action a tag template may use.
fn expand_tag(template: &str, hash: &str) -> Result<String, PackageError> {
    let fail = |reason: &str| PackageError::TagTemplate {
        template: template.to_owned(),
        reason: reason.to_owned(),
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut literal = &rest[..start];
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| fail("unclosed `{{`"))?;
        let mut action = &after[..end];
        let mut next = &after[end + 2..];
        if let Some(trimmed) = action
            .strip_prefix('-')
            .filter(|a| a.starts_with(char::is_whitespace))
        {
            literal = literal.trim_end();
            action = trimmed;
        }
        let trim_next = match action
            .strip_suffix('-')
            .filter(|a| a.ends_with(char::is_whitespace))
        {
            Some(trimmed) => {
                action = trimmed;
                true
            }
            None => false,
        };
        out.push_str(literal);
        if action.trim() != ".Hash" {
            return Err(fail(&format!(
                "`{{{{{action}}}}}` is not supported; the only action is `{{{{.Hash}}}}`"
            )));
        }
        out.push_str(hash);
        if trim_next {
            next = next.trim_start();
        }
        rest = next;
    }
    out.push_str(rest);
    Ok(out)
}

/// The package hash, or `None` outside a git work tree.
fn package_hash(dir: &Path, extra_sources: &[String]) -> Result<Option<String>, PackageError> {
    if !inside_work_tree(dir)? {
        return Ok(None);
    }
    let mut hash = tree_hash(dir)?;
    if !extra_sources.is_empty() {
        let mut combined = hash;
        for entry in extra_sources {
            let parts: Vec<&str> = entry.split(':').collect();
            let [source, _destination] = parts.as_slice() else {
                return Err(PackageError::BuildYml(ConfigError::new(
                    super::error::Span::new(Arc::from(dir.join("build.yml").as_path()), 1, 1),
                    format!("extra-sources: bad source format in `{entry}` (expected `src:dst`)"),
                )));
            };
            let source = clean(&dir.join(source));
            if !inside_work_tree(&source)? {
                return Err(PackageError::NotInGit { dir: source });
            }
            combined.push_str(&tree_hash(&source)?);
        }
        hash = sha1_hex(combined.as_bytes());
    }
    if is_dirty(dir)? {
        let content = content_hash(dir)?;
        hash.push_str("-dirty-");
        hash.push_str(&content[..7]);
    }
    Ok(Some(hash))
}

/// Runs `git -C dir args…`.
fn git(dir: &Path, args: &[&str]) -> Result<Output, PackageError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|source| PackageError::GitMissing {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            source,
        })
}

fn git_failed(dir: &Path, args: &[&str], output: &Output) -> PackageError {
    PackageError::GitFailed {
        args: args.join(" "),
        dir: dir.to_path_buf(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

/// Standard output of a git command that must succeed.
fn git_stdout(dir: &Path, args: &[&str]) -> Result<String, PackageError> {
    let output = git(dir, args)?;
    if !output.status.success() {
        return Err(git_failed(dir, args, &output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn inside_work_tree(dir: &Path) -> Result<bool, PackageError> {
    let args = ["rev-parse", "--is-inside-work-tree"];
    let output = git(dir, &args)?;
    if !output.status.success() {
        return Ok(false);
    }
    match String::from_utf8_lossy(&output.stdout).trim() {
        "true" => Ok(true),
        _ => Err(git_failed(dir, &args, &output)),
    }
}

/// The object name of `dir` in `HEAD`.
fn tree_hash(dir: &Path) -> Result<String, PackageError> {
    let output = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD:./"])?;
    if !output.status.success() {
        return Err(PackageError::NotCommitted {
            dir: dir.to_path_buf(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Tracked files changed since `HEAD`, or untracked files, under `dir`.
fn is_dirty(dir: &Path) -> Result<bool, PackageError> {
    let diff = [
        "diff",
        "--no-ext-diff",
        "--exit-code",
        "--quiet",
        "HEAD",
        "--",
        ".",
    ];
    let output = git(dir, &diff)?;
    match output.status.code() {
        Some(0) => {}
        Some(1) => return Ok(true),
        _ => return Err(git_failed(dir, &diff, &output)),
    }
    let untracked = [
        "ls-files",
        "--exclude-standard",
        "--others",
        "--error-unmatch",
        "--",
        ".",
    ];
    let output = git(dir, &untracked)?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(git_failed(dir, &untracked, &output)),
    }
}

/// SHA-256 (hex) over the contents of the tracked then the untracked files under `dir`, in
/// `git ls-files` order; directories, symlinks and files that cannot be opened are skipped,
/// as LinuxKit does.
fn content_hash(dir: &Path) -> Result<String, PackageError> {
    let tracked = git_stdout(dir, &["ls-files"])?;
    let untracked = git_stdout(dir, &["ls-files", "--exclude-standard", "--others"])?;
    let listing = format!("{tracked}\n{untracked}");
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    for line in listing.trim().split('\n') {
        let name = line.strip_suffix('\r').unwrap_or(line);
        let path = dir.join(name);
        let Ok(meta) = fs_err::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() || meta.file_type().is_symlink() {
            continue;
        }
        // std, not fs_err: read errors become `PackageError::Read`, which names the path.
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|source| PackageError::Read {
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lexically normalises `.` and `..` components (Go's `path.Clean`, without touching the
/// file system).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        out.pop();
                    }
                    Some(Component::RootDir) => {}
                    _ => out.push(".."),
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// SHA-1 (hex): LinuxKit folds `extra-sources` tree hashes into the package hash with it.
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut message = data.to_vec();
    let bit_length = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_length.to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (state, value) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(value);
        }
    }
    let mut out = String::with_capacity(40);
    for word in h {
        let _ = write!(out, "{word:08x}");
    }
    out
}

#[cfg(test)]
mod tests;
