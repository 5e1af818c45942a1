//! Parsers and checks for the structured fields of an image object: capabilities, binds,
//! tmpfs, mounts, devices, rlimits, ids and the `runtime` object.

use super::error::{ConfigError, Span, Spanned, did_you_mean};
use super::types::{
    Bind, BindNamespaces, Device, IdMapping, IdValue, Interface, Mount, Rlimit, Runtime,
    StringList, Tmpfs,
};
use super::yaml::{Node, Reader, child, display_path, item};

/// Every capability LinuxKit knows, in kernel number order (what `all` expands to).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The POSIX resource limits an `rlimits` entry may name.
pub const RLIMIT_NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// Whether a single-entry capability list is the `all` or `none` keyword (any case).
pub(crate) fn capability_keyword(name: &str) -> Option<&'static str> {
    match name.to_lowercase().as_str() {
        "all" => Some("all"),
        "none" => Some("none"),
        _ => None,
    }
}

/// Checks one capability name; `path` names it in the message.
pub(crate) fn check_capability(name: &str, span: &Span, path: &str) -> Result<(), ConfigError> {
    if ALL_CAPABILITIES.contains(&name) {
        return Ok(());
    }
    let err = ConfigError::new(span.clone(), format!("{path}: unknown capability `{name}`"));
    if capability_keyword(name).is_some() {
        return Err(ConfigError::new(
            span.clone(),
            format!("{path}: `{name}` must be the only entry of a capability list"),
        ));
    }
    let upper = name.to_uppercase();
    let prefixed = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&prefixed.as_str()) {
        return Err(err.with_hint(format!("did you mean `{prefixed}`?")));
    }
    Err(match did_you_mean(&prefixed, ALL_CAPABILITIES) {
        Some(hint) => err.with_hint(hint),
        None => err.with_hint("capabilities are upper-case `CAP_*` names, or a lone `all`/`none`"),
    })
}

/// `capabilities`, `capabilities.add`, `ambient`.
pub(super) fn capabilities(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<StringList, ConfigError> {
    let list = r.strings(node, path)?;
    if list.value.len() == 1 && capability_keyword(&list.value[0]).is_some() {
        return Ok(list);
    }
    for (i, cap) in list.value.iter().enumerate() {
        check_capability(&cap.value, &cap.span, &item(path, i))?;
    }
    Ok(list)
}

/// Splits a comma-separated option list; empty options are an error.
fn options(text: &str) -> Result<Vec<String>, String> {
    let options: Vec<String> = text.split(',').map(str::to_owned).collect();
    if options.iter().any(String::is_empty) {
        return Err(format!("empty mount option in `{text}`"));
    }
    Ok(options)
}

/// Parses `source:destination[:options]`.
fn parse_bind(text: &str, span: Span) -> Result<Bind, String> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 2 {
        return Err(format!(
            "invalid bind `{text}`: missing `:` (expected `source:destination[:options]`)"
        ));
    }
    if parts.len() > 3 {
        return Err(format!(
            "invalid bind `{text}`: too many `:` (expected `source:destination[:options]`)"
        ));
    }
    if parts[0].is_empty() {
        return Err(format!("invalid bind `{text}`: empty source"));
    }
    if parts[1].is_empty() {
        return Err(format!("invalid bind `{text}`: empty destination"));
    }
    let options = match parts.get(2) {
        Some(opts) => Some(options(opts).map_err(|e| format!("invalid bind `{text}`: {e}"))?),
        None => None,
    };
    Ok(Bind {
        span,
        source: parts[0].to_owned(),
        destination: parts[1].to_owned(),
        options,
    })
}

/// `binds`, `binds.add`.
pub(super) fn binds(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<Bind>>, ConfigError> {
    let list = r.strings(node, path)?;
    let mut out = Vec::with_capacity(list.value.len());
    for (i, text) in list.value.into_iter().enumerate() {
        let bind = parse_bind(&text.value, text.span.clone())
            .map_err(|e| ConfigError::new(text.span.clone(), format!("{}: {e}", item(path, i))))?;
        out.push(bind);
    }
    Ok(Spanned::new(out, list.span))
}

/// `tmpfs`: `destination[:options]`.
pub(super) fn tmpfs(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<Tmpfs>>, ConfigError> {
    let list = r.strings(node, path)?;
    let mut out = Vec::with_capacity(list.value.len());
    for (i, text) in list.value.into_iter().enumerate() {
        let fail =
            |msg: String| ConfigError::new(text.span.clone(), format!("{}: {msg}", item(path, i)));
        let parts: Vec<&str> = text.value.split(':').collect();
        if parts.len() > 2 {
            return Err(fail(format!(
                "invalid tmpfs `{}`: too many `:` (expected `destination[:options]`)",
                text.value
            )));
        }
        if parts[0].is_empty() {
            return Err(fail(format!(
                "invalid tmpfs `{}`: empty destination",
                text.value
            )));
        }
        let options = match parts.get(1) {
            Some(opts) => Some(
                options(opts).map_err(|e| fail(format!("invalid tmpfs `{}`: {e}", text.value)))?,
            ),
            None => None,
        };
        out.push(Tmpfs {
            span: text.span.clone(),
            destination: parts[0].to_owned(),
            options,
        });
    }
    Ok(Spanned::new(out, list.span))
}

/// Reads `key` or its alternative spelling `alias`; both at once is an error.
pub(super) fn either<'n>(
    r: &Reader<'_>,
    map: &super::yaml::Map<'n>,
    path: &str,
    key: &str,
    alias: &str,
) -> Result<Option<(&'n Node, String)>, ConfigError> {
    match (map.get(key), map.get(alias)) {
        (Some(_), Some(second)) => Err(r.error(
            second,
            format!(
                "{}: `{key}` and `{alias}` are the same setting; give only one",
                display_path(path)
            ),
        )),
        (Some(n), None) => Ok(Some((n, child(path, key)))),
        (None, Some(n)) => Ok(Some((n, child(path, alias)))),
        (None, None) => Ok(None),
    }
}

/// `uidMappings`, `gidMappings`, `mounts[].uidmappings`.
pub(super) fn id_mappings(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<IdMapping>>, ConfigError> {
    let items = r.sequence(node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, n) in items.iter().enumerate() {
        let p = item(path, i);
        let map = r.map(n, &p, &["containerID", "hostID", "size"])?;
        let field = |key: &str| -> Result<u32, ConfigError> {
            match map.get(key) {
                Some(v) => Ok(r
                    .integer_in::<u32>(v, &child(&p, key), "0 to 4294967295")?
                    .value),
                None => Ok(0),
            }
        };
        out.push(IdMapping {
            container_id: field("containerID")?,
            host_id: field("hostID")?,
            size: field("size")?,
        });
    }
    Ok(Spanned::new(out, r.span_of(node)))
}

const MOUNT_KEYS: [&str; 8] = [
    "destination",
    "type",
    "source",
    "options",
    "uidmappings",
    "uidMappings",
    "gidmappings",
    "gidMappings",
];

/// A list of OCI mount objects. Container mounts (`infer`) must resolve a type and
/// destination; `runtime.mounts` are passed through as written.
pub(super) fn mounts(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
    infer: bool,
) -> Result<Spanned<Vec<Mount>>, ConfigError> {
    let items = r.sequence(node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, n) in items.iter().enumerate() {
        let p = item(path, i);
        let map = r.map(n, &p, &MOUNT_KEYS)?;
        let text = |key: &str| -> Result<String, ConfigError> {
            match map.get(key) {
                Some(v) => Ok(r.string(v, &child(&p, key))?.value),
                None => Ok(String::new()),
            }
        };
        let mappings = |key: &str, alias: &str| -> Result<Vec<IdMapping>, ConfigError> {
            match either(r, &map, &p, key, alias)? {
                Some((v, vp)) => Ok(id_mappings(r, v, &vp)?.value),
                None => Ok(Vec::new()),
            }
        };
        let mount = Mount {
            span: map.span.clone(),
            destination: text("destination")?,
            mount_type: text("type")?,
            source: text("source")?,
            options: match map.get("options") {
                Some(v) => r
                    .strings(v, &child(&p, "options"))?
                    .value
                    .into_iter()
                    .map(|s| s.value)
                    .collect(),
                None => Vec::new(),
            },
            uid_mappings: mappings("uidmappings", "uidMappings")?,
            gid_mappings: mappings("gidmappings", "gidMappings")?,
        };
        if infer {
            mount
                .resolve()
                .map_err(|e| ConfigError::new(mount.span.clone(), format!("{p}: {e}")))?;
        }
        out.push(mount);
    }
    Ok(Spanned::new(out, r.span_of(node)))
}

/// Parses an octal mode string (`"0644"`, `"755"`).
fn parse_mode(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

/// A `mode` value: a quoted octal string.
pub(super) fn mode(r: &Reader<'_>, node: &Node, path: &str) -> Result<Spanned<u32>, ConfigError> {
    let text = r
        .string(node, path)
        .map_err(|_| r.type_error(node, path, "a quoted octal string"))?;
    match parse_mode(&text.value) {
        Some(mode) => Ok(Spanned::new(mode, text.span)),
        None => Err(ConfigError::new(
            text.span,
            format!(
                "{path}: invalid mode `{}`: expected an octal number such as \"0644\"",
                text.value
            ),
        )),
    }
}

/// `devices`.
pub(super) fn devices(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<Device>>, ConfigError> {
    let items = r.sequence(node, path)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, n) in items.iter().enumerate() {
        let p = item(path, i);
        let map = r.map(n, &p, &["path", "type", "major", "minor", "mode"])?;
        let Some(dev_path) = map.get("path") else {
            return Err(ConfigError::new(
                map.span.clone(),
                format!("{p}: missing required key `path`"),
            ));
        };
        let dev_path = r.string(dev_path, &child(&p, "path"))?;
        if dev_path.value.is_empty() {
            return Err(ConfigError::new(
                dev_path.span,
                format!("{p}.path: must not be empty"),
            ));
        }
        let number = |key: &str| -> Result<i64, ConfigError> {
            match map.get(key) {
                Some(v) => Ok(r.integer(v, &child(&p, key))?.value),
                None => Ok(0),
            }
        };
        let mode = match map.get("mode") {
            Some(v) => Some(mode(r, v, &child(&p, "mode"))?.value),
            None => None,
        };
        if mode.is_none() && dev_path.value != "all" {
            return Err(ConfigError::new(
                map.span.clone(),
                format!("{p}: device `{}` needs a `mode`", dev_path.value),
            )
            .with_hint("add for example `mode: \"0666\"`"));
        }
        out.push(Device {
            span: map.span.clone(),
            path: dev_path.value,
            dev_type: match map.get("type") {
                Some(v) => r.string(v, &child(&p, "type"))?.value,
                None => String::new(),
            },
            major: number("major")?,
            minor: number("minor")?,
            mode,
        });
    }
    Ok(Spanned::new(out, r.span_of(node)))
}

/// Parses one `name,soft,hard` rlimit.
fn parse_rlimit(text: &str, span: Span) -> Result<Rlimit, ConfigError> {
    let parts: Vec<&str> = text.splitn(3, ',').collect();
    if parts.len() != 3 {
        return Err(ConfigError::new(
            span,
            format!("invalid rlimit `{text}`: expected `name,soft,hard`"),
        )
        .with_hint("for example `nofile,1024,4096` or `memlock,unlimited,unlimited`"));
    }
    let mut kind = parts[0].trim().to_uppercase();
    if !kind.starts_with("RLIMIT_") {
        kind = format!("RLIMIT_{kind}");
    }
    if !RLIMIT_NAMES.contains(&kind.as_str()) {
        let err = ConfigError::new(
            span.clone(),
            format!(
                "invalid rlimit `{text}`: unknown limit `{}`",
                parts[0].trim()
            ),
        );
        return Err(match did_you_mean(&kind, RLIMIT_NAMES) {
            Some(hint) => err.with_hint(hint),
            None => err,
        });
    }
    let value = |s: &str| -> Result<u64, ConfigError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(u64::MAX);
        }
        s.parse::<u64>().map_err(|_| {
            ConfigError::new(
                span.clone(),
                format!(
                    "invalid rlimit `{text}`: `{s}` is not a non-negative integer or `unlimited`"
                ),
            )
        })
    };
    let soft = value(parts[1])?;
    let hard = value(parts[2])?;
    Ok(Rlimit {
        span,
        kind,
        soft,
        hard,
    })
}

/// `rlimits`.
pub(super) fn rlimits(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<Rlimit>>, ConfigError> {
    let list = r.strings(node, path)?;
    let mut out = Vec::with_capacity(list.value.len());
    for (i, text) in list.value.into_iter().enumerate() {
        let limit = parse_rlimit(&text.value, text.span.clone()).map_err(|e| {
            let msg = format!("{}: {}", item(path, i), e.message());
            let hint = e.hint().map(str::to_owned);
            let err = ConfigError::new(text.span.clone(), msg);
            match hint {
                Some(h) => err.with_hint(h),
                None => err,
            }
        })?;
        out.push(limit);
    }
    Ok(Spanned::new(out, list.span))
}

/// `uid`, `gid`, an `additionalGids` entry, files' `uid`/`gid`.
pub(super) fn id_value(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<IdValue>, ConfigError> {
    if Reader::is_string(node) {
        Ok(r.string(node, path)?.map(IdValue::Name))
    } else if Reader::is_integer(node) {
        Ok(r.integer(node, path)?.map(IdValue::Number))
    } else {
        Err(r.type_error(node, path, "an integer or a container name"))
    }
}

/// `additionalGids`.
pub(super) fn id_values(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Vec<Spanned<IdValue>>>, ConfigError> {
    let items = r.sequence(node, path)?;
    let values = items
        .iter()
        .enumerate()
        .map(|(i, n)| id_value(r, n, &item(path, i)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Spanned::new(values, r.span_of(node)))
}

/// The `runtime` object.
pub(super) fn runtime(r: &Reader<'_>, node: &Node, path: &str) -> Result<Runtime, ConfigError> {
    let map = r.map(
        node,
        path,
        &[
            "cgroups",
            "mounts",
            "mkdir",
            "interfaces",
            "bindNS",
            "namespace",
        ],
    )?;
    let strings = |key: &str| -> Result<Option<StringList>, ConfigError> {
        map.get(key)
            .map(|v| r.strings(v, &child(path, key)))
            .transpose()
    };
    let mut bind_ns = BindNamespaces::default();
    if let Some(v) = map.get("bindNS") {
        let p = child(path, "bindNS");
        let ns = r.map(
            v,
            &p,
            &["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"],
        )?;
        let get = |key: &str| -> Result<Option<Spanned<String>>, ConfigError> {
            ns.get(key)
                .map(|v| r.string(v, &child(&p, key)))
                .transpose()
        };
        bind_ns = BindNamespaces {
            cgroup: get("cgroup")?,
            ipc: get("ipc")?,
            mnt: get("mnt")?,
            net: get("net")?,
            pid: get("pid")?,
            user: get("user")?,
            uts: get("uts")?,
        };
    }
    let interfaces = match map.get("interfaces") {
        Some(v) => {
            let p = child(path, "interfaces");
            let items = r.sequence(v, &p)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, n) in items.iter().enumerate() {
                let ip = item(&p, i);
                let m = r.map(n, &ip, &["name", "add", "peer", "createInRoot"])?;
                let text = |key: &str| -> Result<String, ConfigError> {
                    match m.get(key) {
                        Some(v) => Ok(r.string(v, &child(&ip, key))?.value),
                        None => Ok(String::new()),
                    }
                };
                out.push(Interface {
                    span: m.span.clone(),
                    name: text("name")?,
                    add: text("add")?,
                    peer: text("peer")?,
                    create_in_root: match m.get("createInRoot") {
                        Some(v) => r.boolean(v, &child(&ip, "createInRoot"))?.value,
                        None => false,
                    },
                });
            }
            Some(Spanned::new(out, r.span_of(v)))
        }
        None => None,
    };
    Ok(Runtime {
        span: map.span.clone(),
        cgroups: strings("cgroups")?,
        mounts: map
            .get("mounts")
            .map(|v| mounts(r, v, &child(path, "mounts"), false))
            .transpose()?,
        mkdir: strings("mkdir")?,
        interfaces,
        bind_ns,
        namespace: map
            .get("namespace")
            .map(|v| r.string(v, &child(path, "namespace")))
            .transpose()?,
    })
}
