//! Image objects (`onboot`, `onshutdown`, `services` entries) and the
//! `org.mobyproject.config` image label, which share one schema.

use std::path::Path;
use std::sync::Arc;

use super::error::{ConfigError, Spanned};
use super::fields;
use super::resources::resources;
use super::types::{ImageConfig, ImageSpec};
use super::yaml::{Map, Node, Reader, child};

/// Keys of an image object, in LinuxKit's schema order.
pub(super) const IMAGE_KEYS: &[&str] = &[
    "name",
    "image",
    "capabilities",
    "capabilities.add",
    "ambient",
    "mounts",
    "binds",
    "binds.add",
    "devices",
    "tmpfs",
    "command",
    "env",
    "cwd",
    "net",
    "pid",
    "ipc",
    "uts",
    "userns",
    "readonly",
    "maskedPaths",
    "readonlyPaths",
    "uid",
    "gid",
    "additionalGids",
    "noNewPrivileges",
    "hostname",
    "oomScoreAdj",
    "rootfsPropagation",
    "cgroupsPath",
    "resources",
    "sysctl",
    "rlimits",
    "uidMappings",
    "gidMappings",
    "annotations",
    "runtime",
];

/// Checks a container name: it becomes a directory name in the image.
fn check_name(name: &Spanned<String>, path: &str) -> Result<(), ConfigError> {
    let problem = if name.value.is_empty() {
        Some("must not be empty")
    } else if name.value == "." || name.value == ".." {
        Some("must not be `.` or `..`")
    } else if name.value.contains('/') {
        Some("must not contain `/`")
    } else if name.value.contains('\0') {
        Some("must not contain NUL")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ConfigError::new(
            name.span.clone(),
            format!("{path}.name: container name `{}` {problem}", name.value),
        )),
        None => Ok(()),
    }
}

/// Checks an image reference for the mistakes that can be seen without parsing it fully.
pub(super) fn check_reference(reference: &Spanned<String>, path: &str) -> Result<(), ConfigError> {
    if reference.value.is_empty() {
        return Err(ConfigError::new(
            reference.span.clone(),
            format!("{path}: image reference must not be empty"),
        ));
    }
    if reference.value.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            reference.span.clone(),
            format!(
                "{path}: image reference `{}` must not contain whitespace",
                reference.value
            ),
        ));
    }
    Ok(())
}

/// One entry of `onboot`, `onshutdown` or `services`.
pub(super) fn image_spec(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<ImageSpec, ConfigError> {
    let map = r.map(node, path, IMAGE_KEYS)?;
    let required = |key: &str| -> Result<Spanned<String>, ConfigError> {
        match map.get(key) {
            Some(v) => r.string(v, &child(path, key)),
            None => Err(ConfigError::new(
                map.span.clone(),
                format!("{path}: missing required key `{key}`"),
            )),
        }
    };
    let name = required("name")?;
    check_name(&name, path)?;
    let image = required("image")?;
    check_reference(&image, &child(path, "image"))?;
    Ok(ImageSpec {
        span: map.span.clone(),
        name,
        image,
        config: image_config(r, &map, path)?,
    })
}

/// Parses the text of an image's `org.mobyproject.config` label (YAML or JSON).
///
/// `origin` names the label in error messages, for example the image reference.
pub fn parse_label(text: &str, origin: &str) -> Result<ImageConfig, ConfigError> {
    let file: Arc<Path> = Arc::from(Path::new(&format!(
        "{origin} (label org.mobyproject.config)"
    )));
    let r = Reader::new(file.clone(), text);
    let Some(doc) = r.load()? else {
        return Ok(ImageConfig::default());
    };
    let map = r.map(&doc, "", IMAGE_KEYS).map_err(|e| {
        if e.message().starts_with("top level: expected a mapping") {
            ConfigError::new(
                e.span().clone(),
                "the org.mobyproject.config label must be an object",
            )
        } else {
            e
        }
    })?;
    for key in ["name", "image"] {
        if let Some(node) = map.get(key) {
            return Err(r.error(
                node,
                format!("`{key}` cannot be set in the org.mobyproject.config label"),
            ));
        }
    }
    image_config(&r, &map, "")
}

/// The settings shared by image objects and labels.
pub(super) fn image_config(
    r: &Reader<'_>,
    map: &Map<'_>,
    path: &str,
) -> Result<ImageConfig, ConfigError> {
    let p = |key: &str| child(path, key);
    let strings = |key: &str| map.get(key).map(|v| r.strings(v, &p(key))).transpose();
    let string = |key: &str| map.get(key).map(|v| r.string(v, &p(key))).transpose();
    let boolean = |key: &str| map.get(key).map(|v| r.boolean(v, &p(key))).transpose();
    let caps = |key: &str| {
        map.get(key)
            .map(|v| fields::capabilities(r, v, &p(key)))
            .transpose()
    };
    let binds = |key: &str| {
        map.get(key)
            .map(|v| fields::binds(r, v, &p(key)))
            .transpose()
    };
    let id = |key: &str| {
        map.get(key)
            .map(|v| fields::id_value(r, v, &p(key)))
            .transpose()
    };
    let mappings = |key: &str| {
        map.get(key)
            .map(|v| fields::id_mappings(r, v, &p(key)))
            .transpose()
    };
    let string_map = |key: &str| map.get(key).map(|v| r.string_map(v, &p(key))).transpose();

    let oom_score_adj = match map.get("oomScoreAdj") {
        Some(v) => {
            let value = r.integer(v, &p("oomScoreAdj"))?;
            if !(-1000..=1000).contains(&value.value) {
                return Err(ConfigError::new(
                    value.span,
                    format!(
                        "{}: {} is out of range (expected -1000 to 1000)",
                        p("oomScoreAdj"),
                        value.value
                    ),
                ));
            }
            Some(value)
        }
        None => None,
    };

    Ok(ImageConfig {
        capabilities: caps("capabilities")?,
        capabilities_add: caps("capabilities.add")?,
        ambient: caps("ambient")?,
        mounts: map
            .get("mounts")
            .map(|v| fields::mounts(r, v, &p("mounts"), true))
            .transpose()?,
        binds: binds("binds")?,
        binds_add: binds("binds.add")?,
        tmpfs: map
            .get("tmpfs")
            .map(|v| fields::tmpfs(r, v, &p("tmpfs")))
            .transpose()?,
        devices: map
            .get("devices")
            .map(|v| fields::devices(r, v, &p("devices")))
            .transpose()?,
        command: strings("command")?,
        env: strings("env")?,
        cwd: string("cwd")?,
        net: string("net")?,
        pid: string("pid")?,
        ipc: string("ipc")?,
        uts: string("uts")?,
        userns: string("userns")?,
        hostname: string("hostname")?,
        readonly: boolean("readonly")?,
        masked_paths: strings("maskedPaths")?,
        readonly_paths: strings("readonlyPaths")?,
        uid: id("uid")?,
        gid: id("gid")?,
        additional_gids: map
            .get("additionalGids")
            .map(|v| fields::id_values(r, v, &p("additionalGids")))
            .transpose()?,
        no_new_privileges: boolean("noNewPrivileges")?,
        oom_score_adj,
        rootfs_propagation: string("rootfsPropagation")?,
        cgroups_path: string("cgroupsPath")?,
        resources: map
            .get("resources")
            .map(|v| resources(r, v, &p("resources")))
            .transpose()?,
        sysctl: string_map("sysctl")?,
        rlimits: map
            .get("rlimits")
            .map(|v| fields::rlimits(r, v, &p("rlimits")))
            .transpose()?,
        uid_mappings: mappings("uidMappings")?,
        gid_mappings: mappings("gidMappings")?,
        annotations: string_map("annotations")?,
        runtime: map
            .get("runtime")
            .map(|v| fields::runtime(r, v, &p("runtime")))
            .transpose()?,
    })
}
