//! The linuxkit.yml front end: pure parsing, checking and merging.
//!
//! [`parse_config`] reads one file's text into a typed [`Config`] in which every value keeps
//! its location ([`Spanned`]); [`merge`] folds several files together as
//! `linuxkit build a.yml b.yml` does; [`IdMap`] gives container names their uid/gid numbers;
//! [`parse_label`] reads an image's `org.mobyproject.config` label with the same schema.
//!
//! The accepted schema is LinuxKit's (`schema.go`): unknown keys anywhere are errors (with a
//! "did you mean" hint), types are strict (`mode` must be a quoted string), and the semantic
//! checks LinuxKit makes at build time (capability names, bind and tmpfs syntax, mount type
//! inference, rlimits, device modes, the file content rules) are made here, at parse time,
//! with a file:line:column. Differences from LinuxKit:
//! - camelCase OCI keys (`resources.memory.kernelTCP`, `uidMappings[].hostID`, …) take
//!   effect instead of being silently dropped; `blockIO` and `mounts[].uidMappings` are
//!   accepted as other spellings of `blockio` and `uidmappings`;
//! - container names may not contain `/` or be `.`/`..`; file paths may not contain `..`;
//!   a file may not combine `directory`/`symlink` with other content; volume names must not
//!   be empty, and stay unique across merged files;
//! - `oomScoreAdj` must be within -1000..=1000.
//!
//! No I/O happens here; the caller reads the file.
//! The one exception is `@pkg:` templates: [`parse_local_config`] and [`resolve_templates`]
//! read the package's `build.yml` and run `git`; [`parse_config_with`] stays pure.
//! [`render_metadata`] writes the final configuration as LinuxKit's `metadata:` files hold it.

mod error;
mod fields;
mod ids;
mod image;
mod parse;
mod render;
mod resources;
mod template;
mod types;
mod yaml;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_image;

pub use error::{ConfigError, ConfigWarning, Span, Spanned};
pub use fields::{ALL_CAPABILITIES, RLIMIT_NAMES};
pub use ids::IdMap;
pub use image::{ImageSettings, parse_label, resolve_image};
pub use parse::{
    MAX_CONFIG_BYTES, MAX_FILES_ENTRIES, config_text, merge, parse_config, parse_config_with,
};
pub use render::render_metadata;
pub use template::{
    PackageError, TEMPLATE_PREFIX, TemplateValues, find_templates, package_reference,
    parse_local_config, resolve_templates,
};
pub use types::{
    Bind, BindNamespaces, Config, Device, FileContent, FileSpec, IdMapping, IdValue, ImageConfig,
    ImageSpec, Interface, Kernel, MetadataFormat, Mount, ResolvedMount, Rlimit, Runtime,
    StringList, Tmpfs, Volume, VolumeFormat,
};

pub(crate) use error::did_you_mean;
pub(crate) use fields::{capability_keyword, check_capability};
pub(crate) use render::marshal_indent;

/// Expands a short image reference the way LinuxKit does (`ReferenceExpand`):
/// `alpine` → `docker.io/library/alpine`, `linuxkit/init:v1` → `docker.io/linuxkit/init:v1`.
/// A first segment with a `.` or `:`, or `localhost`, is a registry and is left alone; so is
/// any reference with three or more segments. No tag is added.
pub fn expand_ref(reference: &str) -> String {
    let segments: Vec<&str> = reference.split('/').collect();
    match segments.as_slice() {
        [_] => format!("docker.io/library/{reference}"),
        [first, _] if !first.contains('.') && !first.contains(':') && *first != "localhost" => {
            format!("docker.io/{reference}")
        }
        _ => reference.to_owned(),
    }
}

/// What a config uses an image for: this decides what a build reads of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageRole {
    /// `kernel.image`.
    Kernel,
    /// An `init:` entry.
    Init,
    /// An `onboot`, `onshutdown` or `services` container.
    Container,
    /// A `volumes[].image`, extracted as a filesystem or kept as an OCI layout.
    Volume(VolumeFormat),
}

/// Every image a config uses, in LinuxKit's section order, with its reference expanded
/// ([`expand_ref`]) and its role. The one list of image-bearing sections: resolution, index
/// requests and lowering all go by it.
pub fn image_uses(config: &Config) -> Vec<(String, ImageRole)> {
    let mut uses = Vec::new();
    if let Some(image) = config.kernel.as_ref().and_then(|k| k.image()) {
        uses.push((expand_ref(image), ImageRole::Kernel));
    }
    for image in &config.init {
        uses.push((expand_ref(&image.value), ImageRole::Init));
    }
    for spec in config
        .onboot
        .iter()
        .chain(&config.onshutdown)
        .chain(&config.services)
    {
        uses.push((spec.reference(), ImageRole::Container));
    }
    for volume in &config.volumes {
        if let Some(image) = &volume.image {
            uses.push((expand_ref(&image.value), ImageRole::Volume(volume.format)));
        }
    }
    uses
}

/// The distinct image references a config uses, as [`image_uses`] lists them.
pub fn image_refs(config: &Config) -> std::collections::BTreeSet<String> {
    image_uses(config)
        .into_iter()
        .map(|(reference, _)| reference)
        .collect()
}
