//! The final configuration as text: what a `files:` entry with `metadata: yaml|json` holds,
//! and what `lkb config` prints.
//!
//! LinuxKit writes its `Moby` struct after merging and template expansion, with image strings
//! replaced by canonical references: `yaml.v2` `Marshal` for `yaml`, `json.MarshalIndent`
//! with a 4-space indent for `json`. [`render_metadata`] produces the same bytes from a
//! [`Config`]:
//! - keys in Go struct order: `kernel` {`image`, `cmdline`, `binary`, `tar`, `ucode`},
//!   `init`, `onboot`, `onshutdown`, `services`, `files`, `volumes`; image objects as
//!   LinuxKit's `Image`/`ImageConfig` (`name`, `image`, `capabilities`, `capabilities.add`,
//!   `ambient`, `mounts`, `binds`, `binds.add`, `devices`, `tmpfs`, `command`, …, `runtime`);
//! - Go's `omitempty`: unset pointers and empty strings are left out; a list written empty
//!   stays (`capabilities: []`); fields without `omitempty` are always there (a file's
//!   `directory` and `optional`, a device's `major` and `minor`, `kernel.image`);
//! - in YAML, empty top-level lists are `[]`; in JSON they are `null` (Go's nil slices);
//! - kernel, init and container images are canonical (`docker.io/…`); volume images stay as
//!   written, as LinuxKit leaves them;
//! - OCI types carry no yaml tags, so in YAML `mounts[]`, `uidMappings[]` and `resources` use
//!   lower-cased Go field names (`uidmappings`, `containerid`, `hugepagelimits`, …) with
//!   every field present (`null`, `[]`, `{}`), while JSON uses the OCI names with `omitempty`.
//!
//! Values the parser normalised are written back in a canonical form, since the text as
//! written is not kept: `mode` as four octal digits (`"0644"`), `rlimits` as
//! `name,soft,hard` with the lower-case name (`nofile,1024,unlimited`), a volume's `format`
//! only when it is `oci`, and binds and tmpfs as `source:destination[:options]`.

mod go_json;
mod linux_resources;
mod yaml_v2;

use std::collections::BTreeMap;

use super::error::Spanned;
use super::types::{
    Bind, BindNamespaces, Config, Device, FileSpec, IdMapping, IdValue, ImageSpec, Interface,
    Kernel, MetadataFormat, Mount, Rlimit, Runtime, StringList, Tmpfs, Volume, VolumeFormat,
};
use linux_resources::resources;

/// A value tree in Go struct order, written by [`yaml_v2`] or [`go_json`].
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    /// A number, as its decimal text.
    Number(String),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn str(s: &str) -> Node {
        Node::Str(s.to_owned())
    }

    fn int(n: impl ToString) -> Node {
        Node::Number(n.to_string())
    }
}

/// Which encoder the tree is for: the two follow different Go tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Yaml,
    Json,
}

/// Builds a Go struct's fields in order.
#[derive(Default)]
struct Fields(Vec<(String, Node)>);

impl Fields {
    fn put(&mut self, key: &str, node: Node) {
        self.0.push((key.to_owned(), node));
    }

    fn opt(&mut self, key: &str, node: Option<Node>) {
        if let Some(node) = node {
            self.put(key, node);
        }
    }

    fn done(self) -> Node {
        Node::Map(self.0)
    }
}

/// The configuration as LinuxKit writes it into a `metadata:` file.
///
/// YAML ends with a newline; JSON does not (Go's `MarshalIndent`).
pub fn render_metadata(config: &Config, format: MetadataFormat) -> Vec<u8> {
    let text = match format {
        MetadataFormat::Yaml => yaml_v2::to_yaml(&moby(config, Flavor::Yaml)),
        MetadataFormat::Json => go_json::to_json(&moby(config, Flavor::Json)),
    };
    text.into_bytes()
}

fn moby(config: &Config, f: Flavor) -> Node {
    let list = |items: Vec<Node>| match f {
        Flavor::Json if items.is_empty() => Node::Null,
        _ => Node::Seq(items),
    };
    let images = |specs: &[ImageSpec]| list(specs.iter().map(|s| image(s, f)).collect());
    let mut m = Fields::default();
    m.put("kernel", kernel(config.kernel.as_ref()));
    m.put(
        "init",
        list(
            config
                .init
                .iter()
                .map(|i| Node::Str(super::expand_ref(&i.value)))
                .collect(),
        ),
    );
    m.put("onboot", images(&config.onboot));
    m.put("onshutdown", images(&config.onshutdown));
    m.put("services", images(&config.services));
    m.put("files", list(config.files.iter().map(file).collect()));
    m.put("volumes", list(config.volumes.iter().map(volume).collect()));
    m.done()
}

fn kernel(kernel: Option<&Kernel>) -> Node {
    let mut k = Fields::default();
    let image = kernel.and_then(Kernel::image).map(super::expand_ref);
    k.put("image", Node::Str(image.unwrap_or_default()));
    if let Some(kernel) = kernel {
        k.opt("cmdline", non_empty(&kernel.cmdline));
        k.opt("binary", non_empty(&kernel.binary));
        k.opt("tar", kernel.tar.as_ref().map(|s| Node::str(s)));
        k.opt("ucode", kernel.ucode.as_ref().map(|s| Node::str(s)));
    }
    k.done()
}

fn non_empty(value: &Option<Spanned<String>>) -> Option<Node> {
    value
        .as_ref()
        .filter(|s| !s.value.is_empty())
        .map(|s| Node::str(s))
}

fn strings(list: &StringList) -> Node {
    Node::Seq(list.value.iter().map(|s| Node::str(s)).collect())
}

fn id_value(value: &IdValue) -> Node {
    match value {
        IdValue::Number(n) => Node::int(n),
        IdValue::Name(name) => Node::str(name),
    }
}

fn mode(mode: u32) -> Node {
    Node::Str(format!("{mode:04o}"))
}

fn file(spec: &FileSpec) -> Node {
    let mut m = Fields::default();
    m.put("path", Node::str(&spec.path));
    m.put("directory", Node::Bool(spec.directory));
    m.opt("symlink", spec.symlink.as_ref().map(|s| Node::str(s)));
    m.opt("contents", spec.contents.as_ref().map(|s| Node::str(s)));
    m.opt("source", spec.source.as_ref().map(|s| Node::str(s)));
    m.opt(
        "metadata",
        spec.metadata.as_ref().map(|m| {
            Node::str(match m.value {
                MetadataFormat::Yaml => "yaml",
                MetadataFormat::Json => "json",
            })
        }),
    );
    m.put("optional", Node::Bool(spec.optional));
    m.opt("mode", spec.mode.as_ref().map(|m| mode(m.value)));
    m.opt("uid", spec.uid.as_ref().map(|u| id_value(u)));
    m.opt("gid", spec.gid.as_ref().map(|g| id_value(g)));
    m.done()
}

fn volume(volume: &Volume) -> Node {
    let mut m = Fields::default();
    m.put("name", Node::str(&volume.name));
    m.opt("image", volume.image.as_ref().map(|s| Node::str(s)));
    if volume.readonly {
        m.put("readonly", Node::Bool(true));
    }
    if volume.format == VolumeFormat::Oci {
        m.put("format", Node::str("oci"));
    }
    if !volume.platforms.is_empty() {
        m.put(
            "platforms",
            Node::Seq(volume.platforms.iter().map(|p| Node::str(p)).collect()),
        );
    }
    m.done()
}

fn bind_text(bind: &Bind) -> Node {
    let mut text = format!("{}:{}", bind.source, bind.destination);
    if let Some(options) = &bind.options {
        text.push(':');
        text.push_str(&options.join(","));
    }
    Node::Str(text)
}

fn tmpfs_text(tmpfs: &Tmpfs) -> Node {
    let mut text = tmpfs.destination.clone();
    if let Some(options) = &tmpfs.options {
        text.push(':');
        text.push_str(&options.join(","));
    }
    Node::Str(text)
}

fn rlimit_text(rlimit: &Rlimit) -> Node {
    let value = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_owned()
        } else {
            v.to_string()
        }
    };
    let name = rlimit.kind.trim_start_matches("RLIMIT_").to_lowercase();
    Node::Str(format!(
        "{name},{},{}",
        value(rlimit.soft),
        value(rlimit.hard)
    ))
}

fn device(device: &Device) -> Node {
    let mut m = Fields::default();
    m.put("path", Node::str(&device.path));
    m.put("type", Node::str(&device.dev_type));
    m.put("major", Node::int(device.major));
    m.put("minor", Node::int(device.minor));
    m.opt("mode", device.mode.map(mode));
    m.done()
}

/// An OCI `LinuxIDMapping`: untagged for yaml.v2, so its keys are lower-cased.
fn id_mapping(mapping: &IdMapping, f: Flavor) -> Node {
    let (container, host) = match f {
        Flavor::Yaml => ("containerid", "hostid"),
        Flavor::Json => ("containerID", "hostID"),
    };
    let mut m = Fields::default();
    m.put(container, Node::int(mapping.container_id));
    m.put(host, Node::int(mapping.host_id));
    m.put("size", Node::int(mapping.size));
    m.done()
}

fn id_mappings(list: &[IdMapping], f: Flavor) -> Node {
    Node::Seq(list.iter().map(|m| id_mapping(m, f)).collect())
}

/// An OCI `Mount`: every field in YAML (no yaml tags), OCI `omitempty` in JSON.
fn mount(mount: &Mount, f: Flavor) -> Node {
    let mut m = Fields::default();
    m.put("destination", Node::str(&mount.destination));
    let options = Node::Seq(mount.options.iter().map(|o| Node::str(o)).collect());
    match f {
        Flavor::Yaml => {
            m.put("type", Node::str(&mount.mount_type));
            m.put("source", Node::str(&mount.source));
            m.put("options", options);
            m.put("uidmappings", id_mappings(&mount.uid_mappings, f));
            m.put("gidmappings", id_mappings(&mount.gid_mappings, f));
        }
        Flavor::Json => {
            if !mount.mount_type.is_empty() {
                m.put("type", Node::str(&mount.mount_type));
            }
            if !mount.source.is_empty() {
                m.put("source", Node::str(&mount.source));
            }
            if !mount.options.is_empty() {
                m.put("options", options);
            }
            if !mount.uid_mappings.is_empty() {
                m.put("uidMappings", id_mappings(&mount.uid_mappings, f));
            }
            if !mount.gid_mappings.is_empty() {
                m.put("gidMappings", id_mappings(&mount.gid_mappings, f));
            }
        }
    }
    m.done()
}

/// A string map: yaml.v2 sorts keys its own way, encoding/json by bytes.
fn string_map(map: &BTreeMap<String, String>, f: Flavor) -> Node {
    let mut entries: Vec<(String, Node)> =
        map.iter().map(|(k, v)| (k.clone(), Node::str(v))).collect();
    if f == Flavor::Yaml {
        // yaml.v2's key order is not always transitive, so a library sort may reject it.
        // Go's `sort.Sort` insertion-sorts up to 12 elements; this does the same for every
        // size, which matches Go exactly whenever the order is consistent on the keys.
        for i in 1..entries.len() {
            let mut j = i;
            while j > 0 && yaml_v2::key_less(&entries[j].0, &entries[j - 1].0) {
                entries.swap(j, j - 1);
                j -= 1;
            }
        }
    }
    Node::Map(entries)
}

fn image(spec: &ImageSpec, f: Flavor) -> Node {
    let c = &spec.config;
    let mut m = Fields::default();
    m.put("name", Node::str(&spec.name));
    m.put("image", Node::Str(spec.reference()));
    m.opt("capabilities", c.capabilities.as_ref().map(strings));
    m.opt("capabilities.add", c.capabilities_add.as_ref().map(strings));
    m.opt("ambient", c.ambient.as_ref().map(strings));
    m.opt(
        "mounts",
        c.mounts
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(|x| mount(x, f)).collect())),
    );
    m.opt(
        "binds",
        c.binds
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(bind_text).collect())),
    );
    m.opt(
        "binds.add",
        c.binds_add
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(bind_text).collect())),
    );
    m.opt(
        "devices",
        c.devices
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(device).collect())),
    );
    m.opt(
        "tmpfs",
        c.tmpfs
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(tmpfs_text).collect())),
    );
    m.opt("command", c.command.as_ref().map(strings));
    m.opt("env", c.env.as_ref().map(strings));
    m.opt("cwd", non_empty(&c.cwd));
    m.opt("net", non_empty(&c.net));
    m.opt("pid", non_empty(&c.pid));
    m.opt("ipc", non_empty(&c.ipc));
    m.opt("uts", non_empty(&c.uts));
    m.opt("userns", non_empty(&c.userns));
    m.opt("hostname", non_empty(&c.hostname));
    m.opt("readonly", c.readonly.as_ref().map(|b| Node::Bool(b.value)));
    m.opt("maskedPaths", c.masked_paths.as_ref().map(strings));
    m.opt("readonlyPaths", c.readonly_paths.as_ref().map(strings));
    m.opt("uid", c.uid.as_ref().map(|u| id_value(u)));
    m.opt("gid", c.gid.as_ref().map(|g| id_value(g)));
    m.opt(
        "additionalGids",
        c.additional_gids
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(|g| id_value(g)).collect())),
    );
    m.opt(
        "noNewPrivileges",
        c.no_new_privileges.as_ref().map(|b| Node::Bool(b.value)),
    );
    m.opt(
        "oomScoreAdj",
        c.oom_score_adj.as_ref().map(|n| Node::int(n.value)),
    );
    m.opt(
        "rootfsPropagation",
        c.rootfs_propagation.as_ref().map(|s| Node::str(s)),
    );
    m.opt("cgroupsPath", c.cgroups_path.as_ref().map(|s| Node::str(s)));
    m.opt(
        "resources",
        c.resources.as_ref().map(|r| resources(&r.value, f)),
    );
    m.opt("sysctl", c.sysctl.as_ref().map(|s| string_map(s, f)));
    m.opt(
        "rlimits",
        c.rlimits
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(rlimit_text).collect())),
    );
    m.opt(
        "uidMappings",
        c.uid_mappings.as_ref().map(|l| id_mappings(&l.value, f)),
    );
    m.opt(
        "gidMappings",
        c.gid_mappings.as_ref().map(|l| id_mappings(&l.value, f)),
    );
    m.opt(
        "annotations",
        c.annotations.as_ref().map(|a| string_map(a, f)),
    );
    m.opt("runtime", c.runtime.as_ref().map(|r| runtime(r, f)));
    m.done()
}

fn runtime(runtime: &Runtime, f: Flavor) -> Node {
    let mut m = Fields::default();
    m.opt("cgroups", runtime.cgroups.as_ref().map(strings));
    m.opt(
        "mounts",
        runtime
            .mounts
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(|x| mount(x, f)).collect())),
    );
    m.opt("mkdir", runtime.mkdir.as_ref().map(strings));
    m.opt(
        "interfaces",
        runtime
            .interfaces
            .as_ref()
            .map(|l| Node::Seq(l.value.iter().map(interface).collect())),
    );
    let bind_ns = bind_namespaces(&runtime.bind_ns);
    // A struct is never "empty" to encoding/json; yaml.v2 drops one whose fields are all nil.
    if f == Flavor::Json || bind_ns != Node::Map(Vec::new()) {
        m.put("bindNS", bind_ns);
    }
    m.opt(
        "namespace",
        runtime.namespace.as_ref().map(|s| Node::str(s)),
    );
    m.done()
}

fn interface(interface: &Interface) -> Node {
    let mut m = Fields::default();
    for (key, value) in [
        ("name", &interface.name),
        ("add", &interface.add),
        ("peer", &interface.peer),
    ] {
        if !value.is_empty() {
            m.put(key, Node::str(value));
        }
    }
    m.put("createInRoot", Node::Bool(interface.create_in_root));
    m.done()
}

fn bind_namespaces(ns: &BindNamespaces) -> Node {
    let mut m = Fields::default();
    for (key, value) in [
        ("cgroup", &ns.cgroup),
        ("ipc", &ns.ipc),
        ("mnt", &ns.mnt),
        ("net", &ns.net),
        ("pid", &ns.pid),
        ("user", &ns.user),
        ("uts", &ns.uts),
    ] {
        m.opt(key, value.as_ref().map(|s| Node::str(s)));
    }
    m.done()
}

/// Any JSON value as Go's `json.MarshalIndent(v, "", "    ")` writes it, object keys in the
/// order of the map (callers build it in Go struct order): a bundle's `config.json` and
/// `runtime.json`.
pub(crate) fn marshal_indent(value: &serde_json::Value) -> Vec<u8> {
    go_json::to_json(&json_node(value)).into_bytes()
}

/// A JSON leaf as a node.
fn json_node(value: &serde_json::Value) -> Node {
    match value {
        serde_json::Value::Null => Node::Null,
        serde_json::Value::Bool(b) => Node::Bool(*b),
        serde_json::Value::Number(n) => Node::Number(n.to_string()),
        serde_json::Value::String(s) => Node::str(s),
        serde_json::Value::Array(items) => Node::Seq(items.iter().map(json_node).collect()),
        serde_json::Value::Object(map) => {
            Node::Map(map.iter().map(|(k, v)| (k.clone(), json_node(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests;
