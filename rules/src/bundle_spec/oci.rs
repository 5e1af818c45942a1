//! `config.json`: the OCI runtime spec, built as JSON in runtime-spec Go field order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::ImageDefaults;
use crate::config::{
    ALL_CAPABILITIES, Bind, ConfigError, IdMap, IdMapping, ImageConfig, Mount, Spanned, StringList,
    capability_keyword, check_capability,
};

/// The runtime-spec version LinuxKit vendors.
pub(super) const OCI_VERSION: &str = "1.2.1";

/// The yml value if written, else the label's.
fn pick<'a, T>(yaml: &'a Option<T>, label: &'a Option<T>) -> Option<&'a T> {
    yaml.as_ref().or(label.as_ref())
}

/// The first non-empty string among the yml value and the label's.
fn pick_non_empty<'a>(
    yaml: &'a Option<Spanned<String>>,
    label: &'a Option<Spanned<String>>,
) -> Option<&'a str> {
    [yaml, label]
        .into_iter()
        .flatten()
        .map(|s| s.value.as_str())
        .find(|s| !s.is_empty())
}

fn strings(list: Option<&StringList>) -> Vec<String> {
    list.map(|l| l.value.iter().map(|s| s.value.clone()).collect())
        .unwrap_or_default()
}

/// Appends `items` to `out`, skipping any already present (LinuxKit meant to, §8.8).
fn push_unique<T: Clone>(out: &mut Vec<T>, items: &[T], same: impl Fn(&T, &T) -> bool) {
    for item in items {
        if !out.iter().any(|o| same(o, item)) {
            out.push(item.clone());
        }
    }
}

fn insert_list(map: &mut Map<String, Value>, key: &str, list: Vec<String>) {
    if !list.is_empty() {
        map.insert(key.to_owned(), json!(list));
    }
}

pub(super) fn id_mappings(list: &[IdMapping]) -> Value {
    Value::Array(
        list.iter()
            .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.size}))
            .collect(),
    )
}

/// A runtime-spec `Mount` object (`type`, `source`, `options` and the mappings omitted when
/// empty).
pub(super) fn mount_json(
    destination: &str,
    mount_type: &str,
    source: &str,
    options: &[String],
    uid_mappings: &[IdMapping],
    gid_mappings: &[IdMapping],
) -> Value {
    let mut m = Map::new();
    m.insert("destination".to_owned(), json!(destination));
    if !mount_type.is_empty() {
        m.insert("type".to_owned(), json!(mount_type));
    }
    if !source.is_empty() {
        m.insert("source".to_owned(), json!(source));
    }
    if !options.is_empty() {
        m.insert("options".to_owned(), json!(options));
    }
    if !uid_mappings.is_empty() {
        m.insert("uidMappings".to_owned(), id_mappings(uid_mappings));
    }
    if !gid_mappings.is_empty() {
        m.insert("gidMappings".to_owned(), id_mappings(gid_mappings));
    }
    Value::Object(m)
}

fn simple_mount(destination: &str, mount_type: &str, source: &str, options: &[&str]) -> Value {
    let options: Vec<String> = options.iter().map(|s| (*s).to_owned()).collect();
    mount_json(destination, mount_type, source, &options, &[], &[])
}

/// Default mounts, then tmpfs, then binds, then mounts; later ones replace earlier ones with
/// the same destination; sorted by destination.
fn mounts(
    yaml: &ImageConfig,
    label: &ImageConfig,
    readonly: bool,
) -> Result<Vec<Value>, ConfigError> {
    let ro = |mut options: Vec<&'static str>| {
        if readonly {
            options.push("ro");
        }
        options
    };
    let mut by_destination: BTreeMap<String, Value> = BTreeMap::new();
    let defaults = [
        (
            "/proc",
            "proc",
            vec!["nosuid", "nodev", "noexec", "relatime"],
        ),
        (
            "/dev",
            "tmpfs",
            ro(vec!["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ),
        (
            "/dev/pts",
            "devpts",
            vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        ("/sys", "sysfs", ro(vec!["nosuid", "noexec", "nodev"])),
        (
            "/sys/fs/cgroup",
            "cgroup",
            vec!["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    for (destination, kind, options) in defaults {
        by_destination.insert(
            destination.to_owned(),
            simple_mount(destination, kind, kind, &options),
        );
    }
    if let Some(tmpfs) = pick(&yaml.tmpfs, &label.tmpfs) {
        for t in &tmpfs.value {
            let options = t.options.clone().unwrap_or_default();
            by_destination.insert(
                t.destination.clone(),
                mount_json(&t.destination, "tmpfs", "tmpfs", &options, &[], &[]),
            );
        }
    }
    for bind in binds(yaml, label) {
        let options = match &bind.options {
            None => vec!["rw".to_owned(), "rbind".to_owned(), "rshared".to_owned()],
            Some(options) => {
                let mut options = options.clone();
                if !options.iter().any(|o| o == "rbind") {
                    options.push("rbind".to_owned());
                }
                options
            }
        };
        by_destination.insert(
            bind.destination.clone(),
            mount_json(&bind.destination, "bind", &bind.source, &options, &[], &[]),
        );
    }
    if let Some(list) = pick(&yaml.mounts, &label.mounts) {
        for mount in &list.value {
            let resolved = resolve(mount)?;
            by_destination.insert(
                resolved.destination.clone(),
                mount_json(
                    &resolved.destination,
                    &resolved.mount_type,
                    &resolved.source,
                    &mount.options,
                    &mount.uid_mappings,
                    &mount.gid_mappings,
                ),
            );
        }
    }
    Ok(by_destination.into_values().collect())
}

fn resolve(mount: &Mount) -> Result<crate::config::ResolvedMount, ConfigError> {
    mount
        .resolve()
        .map_err(|e| ConfigError::new(mount.span.clone(), e))
}

/// `binds` if written in the yml, else the label's binds plus the yml's `binds.add`.
fn binds(yaml: &ImageConfig, label: &ImageConfig) -> Vec<Bind> {
    if let Some(binds) = &yaml.binds {
        return binds.value.clone();
    }
    let same = |a: &Bind, b: &Bind| {
        a.source == b.source && a.destination == b.destination && a.options == b.options
    };
    let mut out = Vec::new();
    for list in [&label.binds, &label.binds_add, &yaml.binds_add]
        .into_iter()
        .flatten()
    {
        push_unique(&mut out, &list.value, same);
    }
    out
}

/// Expands a lone `all`/`none` and checks every name.
fn expand_capabilities(list: Vec<Spanned<String>>, what: &str) -> Result<Vec<String>, ConfigError> {
    if let [only] = list.as_slice() {
        match capability_keyword(&only.value) {
            Some("all") => return Ok(ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            Some(_) => return Ok(Vec::new()),
            None => {}
        }
    }
    for cap in &list {
        check_capability(&cap.value, &cap.span, what)?;
    }
    Ok(list.into_iter().map(|c| c.value).collect())
}

fn capabilities(yaml: &ImageConfig, label: &ImageConfig) -> Result<Value, ConfigError> {
    let effective = match &yaml.capabilities {
        Some(list) => list.value.clone(),
        None => {
            let mut merged: Vec<Spanned<String>> = Vec::new();
            for list in [
                &label.capabilities,
                &label.capabilities_add,
                &yaml.capabilities_add,
            ]
            .into_iter()
            .flatten()
            {
                push_unique(&mut merged, &list.value, |a, b| a.value == b.value);
            }
            merged
        }
    };
    let effective = expand_capabilities(effective, "capabilities")?;
    let ambient = pick(&yaml.ambient, &label.ambient)
        .map(|l| l.value.clone())
        .unwrap_or_default();
    let ambient = expand_capabilities(ambient, "ambient")?;
    let bounding: Vec<String> = effective
        .iter()
        .chain(&ambient)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut caps = Map::new();
    insert_list(&mut caps, "bounding", bounding.clone());
    insert_list(&mut caps, "effective", effective);
    insert_list(&mut caps, "inheritable", bounding.clone());
    insert_list(&mut caps, "permitted", bounding);
    insert_list(&mut caps, "ambient", ambient);
    Ok(Value::Object(caps))
}

fn user(yaml: &ImageConfig, label: &ImageConfig, ids: &IdMap) -> Result<Value, ConfigError> {
    let id = |value: Option<&Spanned<crate::config::IdValue>>| match value {
        Some(v) => ids.resolve_id(v),
        None => Ok(0),
    };
    let mut user = Map::new();
    user.insert("uid".to_owned(), json!(id(pick(&yaml.uid, &label.uid))?));
    user.insert("gid".to_owned(), json!(id(pick(&yaml.gid, &label.gid))?));
    if let Some(gids) = pick(&yaml.additional_gids, &label.additional_gids) {
        let gids = gids
            .value
            .iter()
            .map(|g| ids.resolve_id(g))
            .collect::<Result<Vec<u32>, _>>()?;
        if !gids.is_empty() {
            user.insert("additionalGids".to_owned(), json!(gids));
        }
    }
    Ok(Value::Object(user))
}

fn process(
    yaml: &ImageConfig,
    label: &ImageConfig,
    defaults: &ImageDefaults,
    ids: &IdMap,
) -> Result<Value, ConfigError> {
    let mut p = Map::new();
    p.insert("user".to_owned(), user(yaml, label, ids)?);
    let args = match pick(&yaml.command, &label.command) {
        Some(list) => strings(Some(list)),
        None => defaults.args.clone(),
    };
    insert_list(&mut p, "args", args);
    let env = match pick(&yaml.env, &label.env) {
        Some(list) => strings(Some(list)),
        None => defaults.env.clone(),
    };
    insert_list(&mut p, "env", env);
    let cwd = pick_non_empty(&yaml.cwd, &label.cwd)
        .or(Some(defaults.working_dir.as_str()).filter(|s| !s.is_empty()))
        .unwrap_or("/");
    p.insert("cwd".to_owned(), json!(cwd));
    p.insert("capabilities".to_owned(), capabilities(yaml, label)?);
    if let Some(rlimits) = pick(&yaml.rlimits, &label.rlimits)
        && !rlimits.value.is_empty()
    {
        let list: Vec<Value> = rlimits
            .value
            .iter()
            .map(|r| json!({"type": r.kind, "hard": r.hard, "soft": r.soft}))
            .collect();
        p.insert("rlimits".to_owned(), Value::Array(list));
    }
    if pick(&yaml.no_new_privileges, &label.no_new_privileges).is_some_and(|b| b.value) {
        p.insert("noNewPrivileges".to_owned(), json!(true));
    }
    if let Some(adj) = pick(&yaml.oom_score_adj, &label.oom_score_adj) {
        p.insert("oomScoreAdj".to_owned(), json!(adj.value));
    }
    Ok(Value::Object(p))
}

/// `network`, `ipc`, `uts`, `pid`, `user`, `mount`, each only when not shared with the host.
fn namespaces(yaml: &ImageConfig, label: &ImageConfig) -> Vec<Value> {
    let settings = [
        (
            "network",
            pick_non_empty(&yaml.net, &label.net).unwrap_or("root"),
            &["none", "new"][..],
        ),
        (
            "ipc",
            pick_non_empty(&yaml.ipc, &label.ipc).unwrap_or("root"),
            &["new"][..],
        ),
        (
            "uts",
            pick_non_empty(&yaml.uts, &label.uts).unwrap_or("root"),
            &["new"][..],
        ),
        (
            "pid",
            pick_non_empty(&yaml.pid, &label.pid).unwrap_or(""),
            &["new"][..],
        ),
        (
            "user",
            pick_non_empty(&yaml.userns, &label.userns).unwrap_or("root"),
            &["new"][..],
        ),
    ];
    let mut out = Vec::new();
    for (kind, setting, fresh) in settings {
        if setting == "host" || setting == "root" {
            continue;
        }
        let path = if fresh.contains(&setting) {
            ""
        } else {
            setting
        };
        out.push(if path.is_empty() {
            json!({"type": kind})
        } else {
            json!({"type": kind, "path": path})
        });
    }
    out.push(json!({"type": "mount"}));
    out
}

/// `linux.devices` and the matching device-cgroup rules.
fn devices(yaml: &ImageConfig, label: &ImageConfig) -> (Vec<Value>, Vec<Value>) {
    let mut devices = Vec::new();
    let mut rules = Vec::new();
    let Some(list) = pick(&yaml.devices, &label.devices) else {
        return (devices, rules);
    };
    for device in &list.value {
        let mut rule = Map::new();
        rule.insert("allow".to_owned(), json!(true));
        if !device.dev_type.is_empty() {
            rule.insert("type".to_owned(), json!(device.dev_type));
        }
        if device.path != "all" {
            rule.insert("major".to_owned(), json!(device.major));
            rule.insert("minor".to_owned(), json!(device.minor));
            let mut entry = Map::new();
            entry.insert("path".to_owned(), json!(device.path));
            entry.insert("type".to_owned(), json!(device.dev_type));
            entry.insert("major".to_owned(), json!(device.major));
            entry.insert("minor".to_owned(), json!(device.minor));
            if let Some(mode) = device.mode {
                entry.insert("fileMode".to_owned(), json!(mode));
            }
            devices.push(Value::Object(entry));
        }
        rule.insert("access".to_owned(), json!("rwm"));
        rules.push(Value::Object(rule));
    }
    (devices, rules)
}

/// `resources` (already in OCI form) with the device rules appended to `devices`.
fn resources(yaml: &ImageConfig, label: &ImageConfig, rules: Vec<Value>) -> Value {
    let base = pick(&yaml.resources, &label.resources)
        .and_then(|r| r.value.as_object().cloned())
        .unwrap_or_default();
    let mut device_rules: Vec<Value> = base
        .get("devices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    device_rules.extend(rules);
    let mut out = Map::new();
    if !device_rules.is_empty() {
        out.insert("devices".to_owned(), Value::Array(device_rules));
    }
    for (key, value) in base {
        if key != "devices" {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

fn string_map(map: Option<&Spanned<BTreeMap<String, String>>>) -> Option<Value> {
    let map = map.filter(|m| !m.value.is_empty())?;
    Some(Value::Object(
        map.value
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    ))
}

fn linux(yaml: &ImageConfig, label: &ImageConfig) -> Value {
    let mut l = Map::new();
    for (key, list) in [
        ("uidMappings", pick(&yaml.uid_mappings, &label.uid_mappings)),
        ("gidMappings", pick(&yaml.gid_mappings, &label.gid_mappings)),
    ] {
        if let Some(list) = list.filter(|l| !l.value.is_empty()) {
            l.insert(key.to_owned(), id_mappings(&list.value));
        }
    }
    if let Some(sysctl) = string_map(pick(&yaml.sysctl, &label.sysctl)) {
        l.insert("sysctl".to_owned(), sysctl);
    }
    let (devices, rules) = devices(yaml, label);
    l.insert("resources".to_owned(), resources(yaml, label, rules));
    let pointer = |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| {
        pick(a, b).map(|s| s.value.clone()).unwrap_or_default()
    };
    let cgroups_path = pointer(&yaml.cgroups_path, &label.cgroups_path);
    if !cgroups_path.is_empty() {
        l.insert("cgroupsPath".to_owned(), json!(cgroups_path));
    }
    l.insert(
        "namespaces".to_owned(),
        Value::Array(namespaces(yaml, label)),
    );
    if !devices.is_empty() {
        l.insert("devices".to_owned(), Value::Array(devices));
    }
    let propagation = pointer(&yaml.rootfs_propagation, &label.rootfs_propagation);
    if !propagation.is_empty() {
        l.insert("rootfsPropagation".to_owned(), json!(propagation));
    }
    insert_list(
        &mut l,
        "maskedPaths",
        strings(pick(&yaml.masked_paths, &label.masked_paths)),
    );
    insert_list(
        &mut l,
        "readonlyPaths",
        strings(pick(&yaml.readonly_paths, &label.readonly_paths)),
    );
    Value::Object(l)
}

/// The whole `config.json` value.
pub(super) fn config(
    yaml: &ImageConfig,
    label: &ImageConfig,
    defaults: &ImageDefaults,
    ids: &IdMap,
    readonly: bool,
) -> Result<Value, ConfigError> {
    let mut spec = Map::new();
    spec.insert("ociVersion".to_owned(), json!(OCI_VERSION));
    spec.insert("process".to_owned(), process(yaml, label, defaults, ids)?);
    spec.insert(
        "root".to_owned(),
        if readonly {
            json!({"path": "rootfs", "readonly": true})
        } else {
            json!({"path": "rootfs"})
        },
    );
    if let Some(hostname) = pick_non_empty(&yaml.hostname, &label.hostname) {
        spec.insert("hostname".to_owned(), json!(hostname));
    }
    spec.insert(
        "mounts".to_owned(),
        Value::Array(mounts(yaml, label, readonly)?),
    );
    if let Some(annotations) = string_map(pick(&yaml.annotations, &label.annotations)) {
        spec.insert("annotations".to_owned(), annotations);
    }
    spec.insert("linux".to_owned(), linux(yaml, label));
    Ok(Value::Object(spec))
}
