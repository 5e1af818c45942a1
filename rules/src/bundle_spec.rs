//! The OCI bundle description of one container: `config.json` and `runtime.json`.
//!
//! [`bundle_spec`] combines three layers, highest first: the yml image object, the image's
//! `org.mobyproject.config` label, and the image config (`Entrypoint`, `Cmd`, `Env`,
//! `WorkingDir`, for `command`, `env` and `cwd` only), then LinuxKit's defaults. The bytes
//! match LinuxKit's `ConfigToOCI` + `ImageBundle` output (Go `MarshalIndent`, 4-space
//! indent, runtime-spec field order), except for two fixed quirks:
//! - `capabilities.add` and `binds.add` merge without duplicates, and a bind with explicit
//!   options gets `rbind` only if it is not already there;
//! - camelCase `resources` keys take effect (see [`crate::config`]), and volume names are
//!   rewritten in `mounts[]` of type bind as well as in binds, looked up among all volumes.
//!
//! A label may also use `capabilities.add`/`binds.add`; they extend the label's own lists.

mod oci;
mod runtime;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_layers;

use serde_json::Value;

use crate::config::{
    Bind, ConfigError, IdMap, ImageConfig, ImageSettings, ImageSpec, Span, Volume, did_you_mean,
    marshal_indent,
};

/// The label that carries an image's default container settings.
pub const LABEL_KEY: &str = "org.mobyproject.config";

/// Everything one container bundle's spec depends on.
#[derive(Clone, Copy, Debug)]
pub struct BundleInput<'a> {
    /// The yml image object.
    pub spec: &'a ImageSpec,
    /// The image's OCI config: either the whole config blob or its `config` object
    /// (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `Labels`).
    pub image_config: &'a Value,
    /// Container-name ids of the whole build.
    pub ids: &'a IdMap,
    /// Every volume of the (merged) configuration, for bind sources that name one.
    pub volumes: &'a [Volume],
    /// The bundle directory inside the image, without a leading `/`
    /// (`containers/onboot/000-dhcpcd`, `containers/services/sshd`).
    pub bundle_path: &'a str,
    /// Where the same image was already extracted by an earlier container (LinuxKit's
    /// de-duplication), e.g. `containers/onboot/000-x/lower`; `None` to extract it here.
    pub shared_root: Option<&'a str>,
}

/// The generated files of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// `<bundle>/config.json`.
    pub config_json: Vec<u8>,
    /// `<bundle>/runtime.json`.
    pub runtime_json: Vec<u8>,
    /// Whether the root filesystem is read-only: the image goes to `<bundle>/rootfs`
    /// instead of `<bundle>/lower`, and there is no `tmp` overlay.
    pub readonly: bool,
    /// The directory (no leading `/`) holding the image filesystem: `shared_root`, else
    /// `<bundle>/rootfs` or `<bundle>/lower`.
    pub root: String,
}

/// The settings an image brings itself.
#[derive(Debug, Default)]
struct ImageDefaults {
    args: Vec<String>,
    env: Vec<String>,
    working_dir: String,
    label: Option<String>,
}

/// Computes `config.json` and `runtime.json` for one container.
pub fn bundle_spec(input: &BundleInput<'_>) -> Result<BundleSpec, ConfigError> {
    let spec = input.spec;
    let defaults = image_defaults(input.image_config, &spec.image.span)?;
    let label = match &defaults.label {
        Some(text) => crate::config::parse_label(text, &spec.reference())?,
        None => ImageConfig::default(),
    };
    let yaml = rewrite_volumes(&spec.config, input.volumes)?;

    let readonly = yaml
        .readonly
        .as_ref()
        .or(label.readonly.as_ref())
        .is_some_and(|r| r.value);
    let oci = oci::config(&yaml, &label, &defaults, input.ids, readonly)?;

    let bundle = input.bundle_path.trim_matches('/');
    let root = match input.shared_root {
        Some(shared) => shared.trim_matches('/').to_owned(),
        None if readonly => format!("{bundle}/rootfs"),
        None => format!("{bundle}/lower"),
    };
    let runtime = runtime::runtime(&yaml, &label, bundle, &root, readonly);
    Ok(BundleSpec {
        config_json: marshal_indent(&oci),
        runtime_json: marshal_indent(&runtime),
        readonly,
        root,
    })
}

/// The settings an image brings itself (`Entrypoint`+`Cmd`, `Env`, `WorkingDir` and its
/// `org.mobyproject.config` label), read from its OCI config exactly as the bundles read them:
/// what `lkb config --resolved` shows.
pub fn image_settings(
    image_config: &Value,
    spec: &ImageSpec,
) -> Result<ImageSettings, ConfigError> {
    let defaults = image_defaults(image_config, &spec.image.span)?;
    let label = match &defaults.label {
        Some(text) => crate::config::parse_label(text, &spec.reference())?,
        None => ImageConfig::default(),
    };
    Ok(ImageSettings {
        label,
        command: defaults.args,
        env: defaults.env,
        working_dir: defaults.working_dir,
    })
}

/// Reads `Entrypoint`+`Cmd`, `Env`, `WorkingDir` and the label from the image config.
fn image_defaults(value: &Value, span: &Span) -> Result<ImageDefaults, ConfigError> {
    let config = match value.get("config") {
        Some(inner) if inner.is_object() => inner,
        _ => value,
    };
    let bad = |key: &str, expected: &str| {
        ConfigError::new(
            span.clone(),
            format!("the image config's `{key}` is not {expected}"),
        )
    };
    let strings = |key: &str| -> Result<Vec<String>, ConfigError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(key, "a list of strings")),
            Some(_) => Err(bad(key, "a list of strings")),
        }
    };
    let mut args = strings("Entrypoint")?;
    args.extend(strings("Cmd")?);
    let working_dir = match config.get("WorkingDir") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("WorkingDir", "a string")),
    };
    let label = match config.get("Labels") {
        None | Some(Value::Null) => None,
        Some(Value::Object(labels)) => match labels.get(LABEL_KEY) {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad(&format!("Labels.{LABEL_KEY}"), "a string")),
        },
        Some(_) => return Err(bad("Labels", "an object")),
    };
    Ok(ImageDefaults {
        args,
        env: strings("Env")?,
        working_dir,
        label,
    })
}

fn find_volume<'v>(
    volumes: &'v [Volume],
    name: &str,
    span: &Span,
) -> Result<&'v Volume, ConfigError> {
    volumes
        .iter()
        .find(|v| v.name.value == name)
        .ok_or_else(|| {
            let err = ConfigError::new(span.clone(), format!("volume `{name}` not found"));
            match did_you_mean(name, volumes.iter().map(|v| v.name.value.as_str())) {
                Some(hint) => err.with_hint(hint),
                None => err.with_hint(
                    "a bind source without a leading `/` names a volume from the `volumes` section",
                ),
            }
        })
}

fn read_only_error(name: &str, span: &Span) -> ConfigError {
    ConfigError::new(
        span.clone(),
        format!("volume `{name}` is read-only, but attempting to write into container read-write"),
    )
    .with_hint("bind it with `:ro` as the only option")
}

fn rewrite_binds(binds: &mut [Bind], volumes: &[Volume]) -> Result<(), ConfigError> {
    for bind in binds.iter_mut().filter(|b| b.is_volume()) {
        let volume = find_volume(volumes, &bind.source, &bind.span)?;
        if volume.readonly && bind.options.as_deref() != Some(&["ro".to_owned()][..]) {
            return Err(read_only_error(&bind.source, &bind.span));
        }
        bind.source = volume.merged_dir();
    }
    Ok(())
}

/// Points yml binds and bind mounts whose source is a volume name at the volume.
fn rewrite_volumes(config: &ImageConfig, volumes: &[Volume]) -> Result<ImageConfig, ConfigError> {
    let mut config = config.clone();
    for binds in [&mut config.binds, &mut config.binds_add]
        .into_iter()
        .flatten()
    {
        rewrite_binds(&mut binds.value, volumes)?;
    }
    if let Some(mounts) = &mut config.mounts {
        for mount in &mut mounts.value {
            if mount.mount_type != "bind" || mount.source.starts_with('/') {
                continue;
            }
            let volume = find_volume(volumes, &mount.source, &mount.span)?;
            if volume.readonly {
                let first = mount.options.iter().find(|o| *o == "ro" || *o == "rw");
                if first.map(String::as_str) != Some("ro") {
                    return Err(read_only_error(&mount.source, &mount.span));
                }
            }
            mount.source = volume.merged_dir();
        }
    }
    Ok(config)
}
