//! The top level of a linuxkit.yml file, `kernel`, `files`, `volumes`, and multi-file merging.

use std::path::Path;
use std::sync::Arc;

use super::error::{ConfigError, ConfigWarning, Span, Spanned, did_you_mean};
use super::fields;
use super::image::{check_reference, image_spec};
use super::template::TemplateValues;
use super::types::{Config, FileSpec, ImageSpec, Kernel, MetadataFormat, Volume, VolumeFormat};
use super::yaml::{Node, Reader, child, item};

const TOP_KEYS: &[&str] = &[
    "kernel",
    "init",
    "onboot",
    "onshutdown",
    "services",
    "trust",
    "files",
    "volumes",
];

/// The largest yml file lkb parses. Real configs are a few KiB; the limit keeps a huge or
/// endless file (the parser's memory is many times the text's size) from exhausting memory.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// The text of a yml file read from disk: at most [`MAX_CONFIG_BYTES`] long (a longer `bytes`
/// is taken to be cut off at one byte more) and valid UTF-8, or an error at the first byte
/// that is not. Pure: `file` is only used in locations.
pub fn config_text(bytes: Vec<u8>, file: &Path) -> Result<String, ConfigError> {
    let file: Arc<Path> = Arc::from(file);
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(too_large(file));
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..])
            .chars()
            .count()
            + 1;
        ConfigError::new(
            Span::new(file, saturate(line), saturate(column)),
            "the file is not valid UTF-8 text",
        )
        .with_hint("a linuxkit.yml is UTF-8 text; was a binary or another encoding given?")
    })
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn too_large(file: Arc<Path>) -> ConfigError {
    ConfigError::new(
        Span::new(file, 1, 1),
        format!(
            "the file is larger than {} MiB, the most lkb reads as a config",
            MAX_CONFIG_BYTES >> 20
        ),
    )
}

/// The most `files:` entries a config (one file, or several merged) may have. Real configs have
/// tens; every entry costs memory and time in each step up to the initrd (about 4 KiB and
/// 0.1 ms), so hundreds of thousands would take minutes and gigabytes.
pub const MAX_FILES_ENTRIES: usize = 65_536;

fn check_files_count(count: usize, span: impl FnOnce() -> Span) -> Result<(), ConfigError> {
    if count > MAX_FILES_ENTRIES {
        return Err(ConfigError::new(
            span(),
            format!("files: {count} entries, more than the {MAX_FILES_ENTRIES} lkb accepts"),
        )
        .with_hint("put many files in an image instead"));
    }
    Ok(())
}

/// Parses and checks one linuxkit.yml file. Pure: `file` is only used in locations.
pub fn parse_config(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_config_with(text, file, &TemplateValues::new())
}

/// [`parse_config`] with `@pkg:` template scalars replaced by their resolved values (see
/// [`super::resolve_templates`]); replaced values keep the template's location. Pure.
pub fn parse_config_with(
    text: &str,
    file: &Path,
    templates: &TemplateValues,
) -> Result<Config, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large(Arc::from(file)));
    }
    let r = Reader::new(Arc::from(file), text);
    let Some(mut doc) = r.load()? else {
        return Ok(Config::default());
    };
    templates.substitute(&mut doc);
    let map = r.map(&doc, "", TOP_KEYS)?;
    let mut config = Config::default();
    // Each section, and each item of a list, is checked on its own, so one run reports a
    // problem in every item that has one (the first problem of each), as compilers do.
    let mut errors = Errors::default();
    if let Some(node) = map.get("kernel") {
        config.kernel = errors.keep(kernel(&r, node));
    }
    if let Some(node) = map.get("init")
        && let Some(init) = errors.keep(r.strings(node, "init"))
    {
        for (i, reference) in init.value.iter().enumerate() {
            errors.keep(check_reference(reference, &item("init", i)));
        }
        config.init = init.value;
    }
    for (key, list) in [
        ("onboot", &mut config.onboot),
        ("onshutdown", &mut config.onshutdown),
        ("services", &mut config.services),
    ] {
        if let Some(node) = map.get(key)
            && let Some(items) = errors.keep(r.sequence(node, key))
        {
            for (i, n) in items.iter().enumerate() {
                list.extend(errors.keep(image_spec(&r, n, &item(key, i))));
            }
        }
    }
    if let Some(node) = map.get("files")
        && let Some(items) = errors.keep(r.sequence(node, "files"))
        && errors
            .keep(check_files_count(items.len(), || r.span_of(node)))
            .is_some()
    {
        for (i, n) in items.iter().enumerate() {
            config
                .files
                .extend(errors.keep(file_spec(&r, n, &item("files", i))));
        }
    }
    if let Some(node) = map.get("volumes")
        && let Some(items) = errors.keep(r.sequence(node, "volumes"))
    {
        for (i, n) in items.iter().enumerate() {
            config
                .volumes
                .extend(errors.keep(volume(&r, n, &item("volumes", i))));
        }
    }
    if let Some(node) = map.get("trust")
        && let Some(trust) = errors.keep(r.map(node, "trust", &["image", "org"]))
    {
        for key in ["image", "org"] {
            if let Some(v) = trust.get(key) {
                errors.keep(r.strings(v, &child("trust", key)));
            }
        }
        config.warnings.push(ConfigWarning {
            span: trust.span,
            message: "`trust` is ignored: LinuxKit no longer verifies image signatures".to_owned(),
        });
    }
    errors.keep(unique_services(&config.services));
    errors.keep(unique_volumes(&config.volumes));
    match ConfigError::all(errors.0) {
        Some(error) => Err(error),
        None => Ok(config),
    }
}

/// The problems found so far in one file.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    /// The value, or `None` after noting the error.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }
}

fn kernel(r: &Reader<'_>, node: &Node) -> Result<Kernel, ConfigError> {
    let map = r.map(
        node,
        "kernel",
        &["image", "cmdline", "binary", "tar", "ucode"],
    )?;
    let get = |key: &str| {
        map.get(key)
            .map(|v| r.string(v, &child("kernel", key)))
            .transpose()
    };
    let image = get("image")?;
    if let Some(reference) = image.as_ref().filter(|s| !s.value.is_empty()) {
        check_reference(reference, "kernel.image")?;
    }
    Ok(Kernel {
        span: map.span.clone(),
        image,
        cmdline: get("cmdline")?,
        binary: get("binary")?,
        tar: get("tar")?,
        ucode: get("ucode")?,
    })
}

const FILE_KEYS: &[&str] = &[
    "path",
    "directory",
    "symlink",
    "contents",
    "source",
    "metadata",
    "optional",
    "mode",
    "uid",
    "gid",
];

fn file_spec(r: &Reader<'_>, node: &Node, path: &str) -> Result<FileSpec, ConfigError> {
    let map = r.map(node, path, FILE_KEYS)?;
    let string = |key: &str| {
        map.get(key)
            .map(|v| r.string(v, &child(path, key)))
            .transpose()
    };
    let flag = |key: &str| -> Result<bool, ConfigError> {
        Ok(map
            .get(key)
            .map(|v| r.boolean(v, &child(path, key)))
            .transpose()?
            .is_some_and(|b| b.value))
    };
    // LinuxKit treats an empty symlink, source or metadata as absent.
    let non_empty = |key: &str| -> Result<Option<Spanned<String>>, ConfigError> {
        Ok(string(key)?.filter(|s| !s.value.is_empty()))
    };

    let Some(file_path) = string("path")? else {
        return Err(ConfigError::new(
            map.span.clone(),
            format!("{path}: missing required key `path`"),
        ));
    };
    if file_path.value.trim_start_matches('/').is_empty() {
        return Err(ConfigError::new(
            file_path.span,
            format!("{path}.path: must name a file"),
        ));
    }
    if file_path.value.split('/').any(|c| c == "..") {
        return Err(ConfigError::new(
            file_path.span,
            format!("{path}.path: `{}` must not contain `..`", file_path.value),
        ));
    }
    let metadata = match non_empty("metadata")? {
        Some(m) => {
            let format = match m.value.as_str() {
                "yaml" => MetadataFormat::Yaml,
                "json" => MetadataFormat::Json,
                other => {
                    let err = ConfigError::new(
                        m.span.clone(),
                        format!("{path}.metadata: unsupported metadata type `{other}`"),
                    );
                    return Err(err.with_hint(
                        did_you_mean(other, ["yaml", "json"])
                            .unwrap_or_else(|| "expected `yaml` or `json`".to_owned()),
                    ));
                }
            };
            Some(Spanned::new(format, m.span))
        }
        None => None,
    };
    let spec = FileSpec {
        span: map.span.clone(),
        directory: flag("directory")?,
        symlink: non_empty("symlink")?,
        contents: string("contents")?,
        source: non_empty("source")?,
        metadata,
        optional: flag("optional")?,
        mode: map
            .get("mode")
            .map(|v| fields::mode(r, v, &child(path, "mode")))
            .transpose()?,
        uid: map
            .get("uid")
            .map(|v| fields::id_value(r, v, &child(path, "uid")))
            .transpose()?,
        gid: map
            .get("gid")
            .map(|v| fields::id_value(r, v, &child(path, "gid")))
            .transpose()?,
        path: file_path,
    };
    check_file_content(&spec, path)?;
    Ok(spec)
}

/// Exactly one of `directory`, `symlink`, `contents`, `source` and `metadata`.
fn check_file_content(spec: &FileSpec, path: &str) -> Result<(), ConfigError> {
    let sources = [
        ("symlink", spec.symlink.as_ref().map(|s| &s.span)),
        ("contents", spec.contents.as_ref().map(|s| &s.span)),
        ("source", spec.source.as_ref().map(|s| &s.span)),
        ("metadata", spec.metadata.as_ref().map(|s| &s.span)),
    ];
    let given: Vec<(&str, &super::error::Span)> = sources
        .iter()
        .filter_map(|(k, s)| s.map(|s| (*k, s)))
        .collect();
    if spec.directory {
        if let Some((key, span)) = given.first() {
            return Err(ConfigError::new(
                (*span).clone(),
                format!("{path}: a directory cannot have `{key}`"),
            ));
        }
        return Ok(());
    }
    match given.as_slice() {
        [] => Err(ConfigError::new(
            spec.span.clone(),
            format!(
                "{path}: contents of file `{}` not specified",
                spec.path.value
            ),
        )
        .with_hint("give one of `contents`, `source`, `metadata`, `symlink` or `directory: true`")),
        [_] => Ok(()),
        [(first, _), (second, span), ..] => Err(ConfigError::new(
            (*span).clone(),
            format!("{path}: `{first}` and `{second}` are both set; a file takes exactly one"),
        )),
    }
}

fn volume(r: &Reader<'_>, node: &Node, path: &str) -> Result<Volume, ConfigError> {
    let map = r.map(
        node,
        path,
        &["name", "image", "readonly", "format", "platforms"],
    )?;
    let Some(name) = map.get("name") else {
        return Err(ConfigError::new(
            map.span.clone(),
            format!("{path}: missing required key `name`"),
        ));
    };
    let name = r.string(name, &child(path, "name"))?;
    let valid = !name.value.is_empty()
        && name
            .value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(ConfigError::new(
            name.span.clone(),
            format!("{path}.name: invalid volume name `{}`", name.value),
        )
        .with_hint("volume names use only a-z, 0-9, `_` and `-`"));
    }
    let image = map
        .get("image")
        .map(|v| r.string(v, &child(path, "image")))
        .transpose()?
        .filter(|s| !s.value.is_empty());
    if let Some(reference) = &image {
        check_reference(reference, &child(path, "image"))?;
    }
    let format = match map.get("format") {
        Some(v) => {
            let f = r.string(v, &child(path, "format"))?;
            match f.value.as_str() {
                "filesystem" => VolumeFormat::Filesystem,
                "oci" => VolumeFormat::Oci,
                other => {
                    return Err(ConfigError::new(
                        f.span.clone(),
                        format!("{path}.format: unknown volume format `{other}`"),
                    )
                    .with_hint("expected `filesystem` or `oci`"));
                }
            }
        }
        None => VolumeFormat::Filesystem,
    };
    Ok(Volume {
        span: map.span.clone(),
        name,
        image,
        readonly: map
            .get("readonly")
            .map(|v| r.boolean(v, &child(path, "readonly")))
            .transpose()?
            .is_some_and(|b| b.value),
        format,
        platforms: map
            .get("platforms")
            .map(|v| r.strings(v, &child(path, "platforms")))
            .transpose()?
            .map(|l| l.value)
            .unwrap_or_default(),
    })
}

fn unique_services(services: &[ImageSpec]) -> Result<(), ConfigError> {
    for (i, service) in services.iter().enumerate() {
        if let Some(first) = services[..i]
            .iter()
            .find(|s| s.name.value == service.name.value)
        {
            return Err(ConfigError::new(
                service.name.span.clone(),
                format!("duplicate service name `{}`", service.name.value),
            )
            .with_hint(format!(
                "services run side by side and need unique names; the first is at {}",
                first.name.span
            )));
        }
    }
    Ok(())
}

fn unique_volumes(volumes: &[Volume]) -> Result<(), ConfigError> {
    for (i, volume) in volumes.iter().enumerate() {
        if let Some(first) = volumes[..i]
            .iter()
            .find(|v| v.name.value == volume.name.value)
        {
            return Err(ConfigError::new(
                volume.name.span.clone(),
                format!("duplicate volume name `{}`", volume.name.value),
            )
            .with_hint(format!("the first is at {}", first.name.span)));
        }
    }
    Ok(())
}

/// Folds several parsed files together in order, as `linuxkit build a.yml b.yml` does.
///
/// `kernel.image`, `cmdline` and `binary`: the last non-empty value wins. `kernel.tar` and
/// `ucode`: the last value written wins, even `""`. Every list is concatenated. Service names
/// are checked for uniqueness again; so are volume names (LinuxKit does not, but it only
/// resolves volumes of the last file, so duplicates could never work).
pub fn merge(configs: Vec<Config>) -> Result<Config, ConfigError> {
    let mut merged = Config::default();
    for config in configs {
        merged.kernel = match (merged.kernel.take(), config.kernel) {
            (None, next) => next,
            (Some(previous), None) => Some(previous),
            (Some(mut previous), Some(next)) => {
                let non_empty =
                    |s: &Option<Spanned<String>>| s.as_ref().is_some_and(|s| !s.value.is_empty());
                if non_empty(&next.image) {
                    previous.image = next.image;
                }
                if non_empty(&next.cmdline) {
                    previous.cmdline = next.cmdline;
                }
                if non_empty(&next.binary) {
                    previous.binary = next.binary;
                }
                if next.tar.is_some() {
                    previous.tar = next.tar;
                }
                if next.ucode.is_some() {
                    previous.ucode = next.ucode;
                }
                Some(previous)
            }
        };
        merged.init.extend(config.init);
        merged.onboot.extend(config.onboot);
        merged.onshutdown.extend(config.onshutdown);
        merged.services.extend(config.services);
        merged.files.extend(config.files);
        merged.volumes.extend(config.volumes);
        merged.warnings.extend(config.warnings);
    }
    if let Some(extra) = merged.files.get(MAX_FILES_ENTRIES) {
        check_files_count(merged.files.len(), || extra.span.clone())?;
    }
    unique_services(&merged.services)?;
    unique_volumes(&merged.volumes)?;
    Ok(merged)
}
