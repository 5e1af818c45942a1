//! Image objects (`onboot`, `onshutdown`, `services` entries) and the
//! `org.mobyproject.config` image label, which share one schema, and [`resolve_image`], which
//! folds an image's label and config into an image object.

use std::path::Path;
use std::sync::Arc;

use super::error::{ConfigError, Span, Spanned};
use super::fields;
use super::resources::resources;
use super::types::{BindNamespaces, ImageConfig, ImageSpec, Runtime, StringList};
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

/// What an image brings to its containers: its `org.mobyproject.config` label and the
/// `Entrypoint`+`Cmd`, `Env` and `WorkingDir` of its OCI config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSettings {
    /// The parsed label ([`parse_label`]); default when the image has none.
    pub label: ImageConfig,
    /// `Entrypoint` followed by `Cmd`.
    pub command: Vec<String>,
    /// `Env`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
}

/// An image object with its image's settings folded in, as the container will run:
/// each field comes from the yml if written there, else from the label; `command`, `env`
/// and `cwd` then fall back to the image config, and `cwd` to `/`. `capabilities.add` and
/// `binds.add` are merged into `capabilities` and `binds` (the label's lists, then the
/// label's `.add`, then the yml's `.add`, without duplicates) unless the yml sets
/// `capabilities`/`binds` itself. `runtime` merges per field, `bindNS` per namespace.
pub fn resolve_image(spec: &ImageSpec, image: &ImageSettings) -> ImageSpec {
    let yaml = &spec.config;
    let label = &image.label;
    let span = &spec.image.span;
    let synthesized = |list: &[String]| -> Option<StringList> {
        if list.is_empty() {
            return None;
        }
        let items = list
            .iter()
            .map(|s| Spanned::new(s.clone(), span.clone()))
            .collect();
        Some(Spanned::new(items, span.clone()))
    };
    let cwd = first_non_empty(&yaml.cwd, &label.cwd).or_else(|| {
        let dir = if image.working_dir.is_empty() {
            "/"
        } else {
            image.working_dir.as_str()
        };
        Some(Spanned::new(dir.to_owned(), span.clone()))
    });
    let config = ImageConfig {
        capabilities: match &yaml.capabilities {
            Some(list) => Some(list.clone()),
            None => merged(
                [
                    &label.capabilities,
                    &label.capabilities_add,
                    &yaml.capabilities_add,
                ],
                |a, b| a.value == b.value,
            ),
        },
        capabilities_add: None,
        ambient: pick(&yaml.ambient, &label.ambient),
        mounts: pick(&yaml.mounts, &label.mounts),
        binds: match &yaml.binds {
            Some(list) => Some(list.clone()),
            None => merged([&label.binds, &label.binds_add, &yaml.binds_add], |a, b| {
                a.source == b.source && a.destination == b.destination && a.options == b.options
            }),
        },
        binds_add: None,
        tmpfs: pick(&yaml.tmpfs, &label.tmpfs),
        devices: pick(&yaml.devices, &label.devices),
        command: pick(&yaml.command, &label.command).or_else(|| synthesized(&image.command)),
        env: pick(&yaml.env, &label.env).or_else(|| synthesized(&image.env)),
        cwd,
        net: first_non_empty(&yaml.net, &label.net),
        pid: first_non_empty(&yaml.pid, &label.pid),
        ipc: first_non_empty(&yaml.ipc, &label.ipc),
        uts: first_non_empty(&yaml.uts, &label.uts),
        userns: first_non_empty(&yaml.userns, &label.userns),
        hostname: first_non_empty(&yaml.hostname, &label.hostname),
        readonly: pick(&yaml.readonly, &label.readonly),
        masked_paths: pick(&yaml.masked_paths, &label.masked_paths),
        readonly_paths: pick(&yaml.readonly_paths, &label.readonly_paths),
        uid: pick(&yaml.uid, &label.uid),
        gid: pick(&yaml.gid, &label.gid),
        additional_gids: pick(&yaml.additional_gids, &label.additional_gids),
        no_new_privileges: pick(&yaml.no_new_privileges, &label.no_new_privileges),
        oom_score_adj: pick(&yaml.oom_score_adj, &label.oom_score_adj),
        rootfs_propagation: pick(&yaml.rootfs_propagation, &label.rootfs_propagation),
        cgroups_path: pick(&yaml.cgroups_path, &label.cgroups_path),
        resources: pick(&yaml.resources, &label.resources),
        sysctl: pick(&yaml.sysctl, &label.sysctl),
        rlimits: pick(&yaml.rlimits, &label.rlimits),
        uid_mappings: pick(&yaml.uid_mappings, &label.uid_mappings),
        gid_mappings: pick(&yaml.gid_mappings, &label.gid_mappings),
        annotations: pick(&yaml.annotations, &label.annotations),
        runtime: merge_runtime(yaml.runtime.as_ref(), label.runtime.as_ref()),
    };
    ImageSpec {
        span: spec.span.clone(),
        name: spec.name.clone(),
        image: spec.image.clone(),
        config,
    }
}

/// The yml value if written, else the label's.
fn pick<T: Clone>(yaml: &Option<T>, label: &Option<T>) -> Option<T> {
    yaml.as_ref().or(label.as_ref()).cloned()
}

/// The first non-empty string (an empty one counts as unset).
fn first_non_empty(
    yaml: &Option<Spanned<String>>,
    label: &Option<Spanned<String>>,
) -> Option<Spanned<String>> {
    [yaml, label]
        .into_iter()
        .flatten()
        .find(|s| !s.value.is_empty())
        .cloned()
}

/// Concatenates the given lists without duplicates; `None` when none is written.
fn merged<T: Clone>(
    lists: [&Option<Spanned<Vec<T>>>; 3],
    same: impl Fn(&T, &T) -> bool,
) -> Option<Spanned<Vec<T>>> {
    let span: Span = lists.iter().find_map(|l| l.as_ref())?.span.clone();
    let mut out: Vec<T> = Vec::new();
    for list in lists.into_iter().flatten() {
        for item in &list.value {
            if !out.iter().any(|o| same(o, item)) {
                out.push(item.clone());
            }
        }
    }
    Some(Spanned::new(out, span))
}

fn merge_runtime(yaml: Option<&Runtime>, label: Option<&Runtime>) -> Option<Runtime> {
    let (yaml, label) = match (yaml, label) {
        (None, None) => return None,
        (Some(only), None) | (None, Some(only)) => return Some(only.clone()),
        (Some(yaml), Some(label)) => (yaml, label),
    };
    let ns = |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| pick(a, b);
    let (y, l) = (&yaml.bind_ns, &label.bind_ns);
    Some(Runtime {
        span: yaml.span.clone(),
        cgroups: pick(&yaml.cgroups, &label.cgroups),
        mounts: pick(&yaml.mounts, &label.mounts),
        mkdir: pick(&yaml.mkdir, &label.mkdir),
        interfaces: pick(&yaml.interfaces, &label.interfaces),
        bind_ns: BindNamespaces {
            cgroup: ns(&y.cgroup, &l.cgroup),
            ipc: ns(&y.ipc, &l.ipc),
            mnt: ns(&y.mnt, &l.mnt),
            net: ns(&y.net, &l.net),
            pid: ns(&y.pid, &l.pid),
            user: ns(&y.user, &l.user),
            uts: ns(&y.uts, &l.uts),
        },
        namespace: pick(&yaml.namespace, &label.namespace),
    })
}
