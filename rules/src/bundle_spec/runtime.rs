//! `runtime.json`: the merged `runtime` object for the in-VM service runner, with the mounts
//! that assemble the container's root filesystem prepended. Every key is always present.

use serde_json::{Map, Value, json};

use super::oci::mount_json;
use crate::config::{ImageConfig, Interface, Runtime, Spanned, StringList};

fn strings(list: Option<&StringList>) -> Value {
    json!(
        list.map(|l| l.value.iter().map(|s| s.value.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    )
}

fn interface_json(i: &Interface) -> Value {
    let mut m = Map::new();
    for (key, value) in [("name", &i.name), ("add", &i.add), ("peer", &i.peer)] {
        if !value.is_empty() {
            m.insert(key.to_owned(), json!(value));
        }
    }
    m.insert("createInRoot".to_owned(), json!(i.create_in_root));
    Value::Object(m)
}

/// The mounts that make `<bundle>/rootfs`: an overlay of the image over a tmpfs, or (read-only)
/// a bind of the extracted image.
fn rootfs_mounts(bundle: &str, root: &str, readonly: bool) -> Vec<Value> {
    let target = format!("/{bundle}/rootfs");
    if readonly {
        let options = ["bind".to_owned()];
        return vec![mount_json(
            &target,
            "",
            &format!("/{root}"),
            &options,
            &[],
            &[],
        )];
    }
    let tmp = format!("/{bundle}/tmp");
    let overlay = [
        format!("lowerdir=/{root}"),
        format!("upperdir={tmp}/upper"),
        format!("workdir={tmp}/work"),
    ];
    vec![
        mount_json(&tmp, "tmpfs", "tmpfs", &[], &[], &[]),
        mount_json(
            &tmp,
            "",
            "",
            &["remount".to_owned(), "private".to_owned()],
            &[],
            &[],
        ),
        mount_json(&target, "overlay", "overlay", &overlay, &[], &[]),
    ]
}

/// The yml runtime's value if written, else the label runtime's.
fn pick<'a, T>(
    yaml: Option<&'a Runtime>,
    label: Option<&'a Runtime>,
    get: impl Fn(&'a Runtime) -> Option<&'a T>,
) -> Option<&'a T> {
    yaml.and_then(&get).or_else(|| label.and_then(&get))
}

/// The whole `runtime.json` value.
pub(super) fn runtime(
    yaml: &ImageConfig,
    label: &ImageConfig,
    bundle: &str,
    root: &str,
    readonly: bool,
) -> Value {
    let (y, l) = (yaml.runtime.as_ref(), label.runtime.as_ref());
    let mut mounts = rootfs_mounts(bundle, root, readonly);
    if let Some(list) = pick(y, l, |r| r.mounts.as_ref()) {
        mounts.extend(list.value.iter().map(|m| {
            mount_json(
                &m.destination,
                &m.mount_type,
                &m.source,
                &m.options,
                &m.uid_mappings,
                &m.gid_mappings,
            )
        }));
    }
    let interfaces: Vec<Value> = pick(y, l, |r| r.interfaces.as_ref())
        .map(|list| list.value.iter().map(interface_json).collect())
        .unwrap_or_default();
    let text = |get: fn(&Runtime) -> Option<&Spanned<String>>| -> Value {
        json!(pick(y, l, get).map_or("", |s| s.value.as_str()))
    };
    let mut bind_ns = Map::new();
    bind_ns.insert("cgroup".to_owned(), text(|r| r.bind_ns.cgroup.as_ref()));
    bind_ns.insert("ipc".to_owned(), text(|r| r.bind_ns.ipc.as_ref()));
    bind_ns.insert("mnt".to_owned(), text(|r| r.bind_ns.mnt.as_ref()));
    bind_ns.insert("net".to_owned(), text(|r| r.bind_ns.net.as_ref()));
    bind_ns.insert("pid".to_owned(), text(|r| r.bind_ns.pid.as_ref()));
    bind_ns.insert("user".to_owned(), text(|r| r.bind_ns.user.as_ref()));
    bind_ns.insert("uts".to_owned(), text(|r| r.bind_ns.uts.as_ref()));

    let mut out = Map::new();
    out.insert(
        "cgroups".to_owned(),
        strings(pick(y, l, |r| r.cgroups.as_ref())),
    );
    out.insert("mounts".to_owned(), Value::Array(mounts));
    out.insert(
        "mkdir".to_owned(),
        strings(pick(y, l, |r| r.mkdir.as_ref())),
    );
    out.insert("interfaces".to_owned(), Value::Array(interfaces));
    out.insert("bindNS".to_owned(), Value::Object(bind_ns));
    out.insert("namespace".to_owned(), text(|r| r.namespace.as_ref()));
    Value::Object(out)
}
