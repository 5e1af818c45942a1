//! `resources`: checked against LinuxKit's schema and normalised to OCI `LinuxResources` JSON.
//!
//! The output uses the OCI JSON key names, in runtime-spec Go field order, and follows Go's
//! `omitempty` rules, so it can be embedded in `config.json` as is. Unlike LinuxKit, which
//! silently drops the documented camelCase keys (`kernelTCP`, `disableOOMKiller`,
//! `realtimeRuntime`, `leafWeight`, `hugepageLimits`, `classID`, …), every key the schema
//! accepts takes effect. `blockIO` is accepted as another spelling of `blockio`.

use serde_json::{Map as JsonMap, Value};

use super::error::{ConfigError, Spanned};
use super::fields::either;
use super::yaml::{Node, Reader, child, item};

#[derive(Clone, Copy)]
enum Kind {
    I64,
    U64,
    U32,
    U16,
    Bool,
    Str,
    /// A string in OCI (`"2MB"`); LinuxKit's schema says integer, so both are accepted.
    PageSize,
    Object(&'static [Field]),
    List(&'static [Field]),
}

/// When a field appears in the output (Go `omitempty` and pointer semantics).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Not omitempty: written even when absent, as the zero value.
    Always,
    /// A pointer: written whenever given, zero or not.
    IfSet,
    /// omitempty on a value: written when given and not empty.
    IfNonEmpty,
}

struct Field {
    key: &'static str,
    alias: Option<&'static str>,
    json: &'static str,
    kind: Kind,
    presence: Presence,
}

const fn field(key: &'static str, kind: Kind, presence: Presence) -> Field {
    Field {
        key,
        alias: None,
        json: key,
        kind,
        presence,
    }
}

use Kind::{Bool, I64, List, Object, PageSize, Str, U16, U32, U64};
use Presence::{Always, IfNonEmpty, IfSet};

const DEVICE_CGROUP: &[Field] = &[
    field("allow", Bool, Always),
    field("type", Str, IfNonEmpty),
    field("major", I64, IfSet),
    field("minor", I64, IfSet),
    field("access", Str, IfNonEmpty),
];

const MEMORY: &[Field] = &[
    field("limit", I64, IfSet),
    field("reservation", I64, IfSet),
    field("swap", I64, IfSet),
    field("kernel", I64, IfSet),
    field("kernelTCP", I64, IfSet),
    field("swappiness", U64, IfSet),
    field("disableOOMKiller", Bool, IfSet),
];

const CPU: &[Field] = &[
    field("shares", U64, IfSet),
    field("quota", I64, IfSet),
    field("period", U64, IfSet),
    field("realtimeRuntime", I64, IfSet),
    field("realtimePeriod", U64, IfSet),
    field("cpus", Str, IfNonEmpty),
    field("mems", Str, IfNonEmpty),
];

const PIDS: &[Field] = &[field("limit", I64, Always)];

const WEIGHT_DEVICE: &[Field] = &[
    field("major", I64, Always),
    field("minor", I64, Always),
    field("weight", U16, IfSet),
    field("leafWeight", U16, IfSet),
];

const THROTTLE_DEVICE: &[Field] = &[
    field("major", I64, Always),
    field("minor", I64, Always),
    field("rate", U64, Always),
];

const BLOCK_IO: &[Field] = &[
    field("weight", U16, IfSet),
    field("leafWeight", U16, IfSet),
    field("weightDevice", List(WEIGHT_DEVICE), IfNonEmpty),
    field("throttleReadBpsDevice", List(THROTTLE_DEVICE), IfNonEmpty),
    field("throttleWriteBpsDevice", List(THROTTLE_DEVICE), IfNonEmpty),
    field("throttleReadIOPSDevice", List(THROTTLE_DEVICE), IfNonEmpty),
    field("throttleWriteIOPSDevice", List(THROTTLE_DEVICE), IfNonEmpty),
];

const HUGEPAGE_LIMIT: &[Field] = &[
    field("pageSize", PageSize, Always),
    field("limit", U64, Always),
];

const INTERFACE_PRIORITY: &[Field] = &[field("name", Str, Always), field("priority", U32, Always)];

const NETWORK: &[Field] = &[
    field("classID", U32, IfSet),
    field("priorities", List(INTERFACE_PRIORITY), IfNonEmpty),
];

const RESOURCES: &[Field] = &[
    field("devices", List(DEVICE_CGROUP), IfNonEmpty),
    field("memory", Object(MEMORY), IfSet),
    field("cpu", Object(CPU), IfSet),
    field("pids", Object(PIDS), IfSet),
    Field {
        key: "blockio",
        alias: Some("blockIO"),
        json: "blockIO",
        kind: Object(BLOCK_IO),
        presence: IfSet,
    },
    field("hugepageLimits", List(HUGEPAGE_LIMIT), IfNonEmpty),
    field("network", Object(NETWORK), IfSet),
];

/// Reads `resources` into normalised OCI JSON.
pub(super) fn resources(
    r: &Reader<'_>,
    node: &Node,
    path: &str,
) -> Result<Spanned<Value>, ConfigError> {
    let value = object(r, node, path, RESOURCES)?;
    Ok(Spanned::new(value, r.span_of(node)))
}

fn object(r: &Reader<'_>, node: &Node, path: &str, fields: &[Field]) -> Result<Value, ConfigError> {
    let mut allowed: Vec<&str> = Vec::with_capacity(fields.len() + 1);
    for f in fields {
        allowed.push(f.key);
        allowed.extend(f.alias);
    }
    let map = r.map(node, path, &allowed)?;
    let mut out = JsonMap::new();
    for f in fields {
        let found = match f.alias {
            Some(alias) => either(r, &map, path, f.key, alias)?,
            None => map.get(f.key).map(|n| (n, child(path, f.key))),
        };
        match found {
            Some((n, p)) => {
                let value = value(r, n, &p, f.kind)?;
                if f.presence == IfNonEmpty && is_empty(&value) {
                    continue;
                }
                out.insert(f.json.to_owned(), value);
            }
            None if f.presence == Always => {
                out.insert(f.json.to_owned(), zero(f.kind));
            }
            None => {}
        }
    }
    Ok(Value::Object(out))
}

fn value(r: &Reader<'_>, node: &Node, path: &str, kind: Kind) -> Result<Value, ConfigError> {
    Ok(match kind {
        I64 => Value::from(r.integer(node, path)?.value),
        U64 => Value::from(
            r.integer_in::<u64>(node, path, "a non-negative integer")?
                .value,
        ),
        U32 => Value::from(r.integer_in::<u32>(node, path, "0 to 4294967295")?.value),
        U16 => Value::from(r.integer_in::<u16>(node, path, "0 to 65535")?.value),
        Bool => Value::from(r.boolean(node, path)?.value),
        Str => Value::from(r.string(node, path)?.value),
        PageSize => {
            if Reader::is_integer(node) {
                Value::from(r.integer(node, path)?.value.to_string())
            } else {
                Value::from(r.string(node, path)?.value)
            }
        }
        Object(fields) => object(r, node, path, fields)?,
        List(fields) => {
            let items = r.sequence(node, path)?;
            let values = items
                .iter()
                .enumerate()
                .map(|(i, n)| object(r, n, &item(path, i), fields))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(values)
        }
    })
}

fn zero(kind: Kind) -> Value {
    match kind {
        I64 | U64 | U32 | U16 => Value::from(0),
        Bool => Value::from(false),
        Str | PageSize => Value::from(""),
        Object(_) => Value::Object(JsonMap::new()),
        List(_) => Value::Array(Vec::new()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
