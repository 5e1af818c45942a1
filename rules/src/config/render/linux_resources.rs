//! An OCI `LinuxResources` (`resources:` of an image object) for the metadata text. JSON takes
//! the normalised OCI object as is. The runtime-spec types carry no yaml tags, so yaml.v2
//! writes every field of the Go structs, keyed by the lower-cased Go field name, with the zero
//! value (`null`, `0`, `""`, `false`, `[]`, `{}`) where the object has none. The tables
//! below list each struct's fields in Go order, starting at [`RESOURCES`].

use super::{Fields, Flavor, Node, json_node};

/// How yaml.v2 writes one field of an OCI resources struct.
#[derive(Clone, Copy)]
enum Go {
    /// A pointer to a number or bool: the value, or `null`.
    Pointer,
    /// A number: the value, or 0.
    Int,
    /// A string: the value, or `""`.
    Str,
    /// A bool: the value, or false.
    Bool,
    /// A pointer to a struct: the struct, or `null`.
    Struct(&'static [GoField]),
    /// A slice of structs: the items, or `[]`.
    Slice(&'static [GoField]),
    /// An untagged embedded struct, nested under its lower-cased type name; its fields come
    /// from the enclosing JSON object.
    Embedded(&'static [GoField]),
    /// A map the schema cannot set: always `{}`.
    EmptyMap,
}

/// A runtime-spec field: its yaml.v2 key (the lower-cased Go name), its OCI JSON key, kind.
struct GoField(&'static str, &'static str, Go);

const DEVICE_CGROUP: &[GoField] = &[
    GoField("allow", "allow", Go::Bool),
    GoField("type", "type", Go::Str),
    GoField("major", "major", Go::Pointer),
    GoField("minor", "minor", Go::Pointer),
    GoField("access", "access", Go::Str),
];

const MEMORY: &[GoField] = &[
    GoField("limit", "limit", Go::Pointer),
    GoField("reservation", "reservation", Go::Pointer),
    GoField("swap", "swap", Go::Pointer),
    GoField("kernel", "kernel", Go::Pointer),
    GoField("kerneltcp", "kernelTCP", Go::Pointer),
    GoField("swappiness", "swappiness", Go::Pointer),
    GoField("disableoomkiller", "disableOOMKiller", Go::Pointer),
    GoField("usehierarchy", "useHierarchy", Go::Pointer),
    GoField("checkbeforeupdate", "checkBeforeUpdate", Go::Pointer),
];

const CPU: &[GoField] = &[
    GoField("shares", "shares", Go::Pointer),
    GoField("quota", "quota", Go::Pointer),
    GoField("burst", "burst", Go::Pointer),
    GoField("period", "period", Go::Pointer),
    GoField("realtimeruntime", "realtimeRuntime", Go::Pointer),
    GoField("realtimeperiod", "realtimePeriod", Go::Pointer),
    GoField("cpus", "cpus", Go::Str),
    GoField("mems", "mems", Go::Str),
    GoField("idle", "idle", Go::Pointer),
];

const PIDS: &[GoField] = &[GoField("limit", "limit", Go::Int)];

const BLOCK_IO_DEVICE: &[GoField] = &[
    GoField("major", "major", Go::Int),
    GoField("minor", "minor", Go::Int),
];

const WEIGHT_DEVICE: &[GoField] = &[
    GoField("linuxblockiodevice", "", Go::Embedded(BLOCK_IO_DEVICE)),
    GoField("weight", "weight", Go::Pointer),
    GoField("leafweight", "leafWeight", Go::Pointer),
];

const THROTTLE_DEVICE: &[GoField] = &[
    GoField("linuxblockiodevice", "", Go::Embedded(BLOCK_IO_DEVICE)),
    GoField("rate", "rate", Go::Int),
];

const BLOCK_IO: &[GoField] = &[
    GoField("weight", "weight", Go::Pointer),
    GoField("leafweight", "leafWeight", Go::Pointer),
    GoField("weightdevice", "weightDevice", Go::Slice(WEIGHT_DEVICE)),
    GoField(
        "throttlereadbpsdevice",
        "throttleReadBpsDevice",
        Go::Slice(THROTTLE_DEVICE),
    ),
    GoField(
        "throttlewritebpsdevice",
        "throttleWriteBpsDevice",
        Go::Slice(THROTTLE_DEVICE),
    ),
    GoField(
        "throttlereadiopsdevice",
        "throttleReadIOPSDevice",
        Go::Slice(THROTTLE_DEVICE),
    ),
    GoField(
        "throttlewriteiopsdevice",
        "throttleWriteIOPSDevice",
        Go::Slice(THROTTLE_DEVICE),
    ),
];

const HUGEPAGE_LIMIT: &[GoField] = &[
    GoField("pagesize", "pageSize", Go::Str),
    GoField("limit", "limit", Go::Int),
];

const INTERFACE_PRIORITY: &[GoField] = &[
    GoField("name", "name", Go::Str),
    GoField("priority", "priority", Go::Int),
];

const NETWORK: &[GoField] = &[
    GoField("classid", "classID", Go::Pointer),
    GoField("priorities", "priorities", Go::Slice(INTERFACE_PRIORITY)),
];

const RESOURCES: &[GoField] = &[
    GoField("devices", "devices", Go::Slice(DEVICE_CGROUP)),
    GoField("memory", "memory", Go::Struct(MEMORY)),
    GoField("cpu", "cpu", Go::Struct(CPU)),
    GoField("pids", "pids", Go::Struct(PIDS)),
    GoField("blockio", "blockIO", Go::Struct(BLOCK_IO)),
    GoField(
        "hugepagelimits",
        "hugepageLimits",
        Go::Slice(HUGEPAGE_LIMIT),
    ),
    GoField("network", "network", Go::Struct(NETWORK)),
    GoField("rdma", "", Go::EmptyMap),
    GoField("unified", "", Go::EmptyMap),
];

/// `resources`: the normalised OCI JSON as is for JSON; for YAML, the runtime-spec
/// `LinuxResources` struct as yaml.v2 writes it.
pub(super) fn resources(value: &serde_json::Value, f: Flavor) -> Node {
    match f {
        Flavor::Json => json_node(value),
        Flavor::Yaml => go_struct(value, RESOURCES),
    }
}

fn go_struct(value: &serde_json::Value, fields: &[GoField]) -> Node {
    let mut m = Fields::default();
    for GoField(yaml_key, json_key, kind) in fields {
        let found = value.get(*json_key).filter(|v| !v.is_null());
        let node = match (kind, found) {
            (Go::Embedded(inner), _) => go_struct(value, inner),
            (Go::EmptyMap, _) => Node::Map(Vec::new()),
            (Go::Struct(inner), Some(v)) => go_struct(v, inner),
            (Go::Slice(inner), Some(serde_json::Value::Array(items))) => {
                Node::Seq(items.iter().map(|item| go_struct(item, inner)).collect())
            }
            (Go::Slice(_), _) => Node::Seq(Vec::new()),
            (Go::Pointer | Go::Struct(_), None) => Node::Null,
            (Go::Int, None) => Node::int(0),
            (Go::Str, None) => Node::str(""),
            (Go::Bool, None) => Node::Bool(false),
            (Go::Pointer | Go::Int | Go::Str | Go::Bool, Some(v)) => json_node(v),
        };
        m.put(yaml_key, node);
    }
    m.done()
}
