//! Bundle spec tests. Expected texts were checked against LinuxKit's own `ConfigToOCI` and
//! `ImageBundle` output, except where a fixed quirk is noted.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::config::{Config, IdMap, parse_config};

/// Parses an `onboot` list made of one image object (`lines`) plus optional `volumes` lines.
pub(super) fn config(lines: &[&str], volumes: &[&str]) -> Config {
    let mut text = String::from("onboot:\n");
    for (i, line) in lines.iter().enumerate() {
        text.push_str(if i == 0 { "  - " } else { "    " });
        text.push_str(line);
        text.push('\n');
    }
    if !volumes.is_empty() {
        text.push_str("volumes:\n");
        for line in volumes {
            text.push_str(line);
            text.push('\n');
        }
    }
    match parse_config(&text, Path::new("t.yml")) {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn run(
    config: &Config,
    image_config: &Value,
    names: &[&str],
) -> Result<BundleSpec, ConfigError> {
    let ids = IdMap::from_names(names.iter().copied());
    bundle_spec(&BundleInput {
        spec: &config.onboot[0],
        image_config,
        ids: &ids,
        volumes: &config.volumes,
        bundle_path: "containers/onboot/000-test",
        shared_root: None,
    })
}

pub(super) fn build(lines: &[&str], image_config: Value) -> BundleSpec {
    match run(&config(lines, &[]), &image_config, &[]) {
        Ok(spec) => spec,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

/// The compact JSON of the value at `pointer` in `bytes` (key order preserved).
pub(super) fn at(bytes: &[u8], pointer: &str) -> String {
    let value: Value = serde_json::from_slice(bytes).expect("valid JSON");
    let part = value.pointer(pointer).expect("pointer exists");
    serde_json::to_string(part).expect("serialise")
}

pub(super) const DEFAULT_MOUNTS: &str = r#"{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","nodev","noexec","relatime"]},{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev"]},{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["nosuid","noexec","nodev","relatime","ro"]}"#;

const DEFAULTS_CONFIG: &str = r#"{
    "ociVersion": "1.2.1",
    "process": {
        "user": {
            "uid": 0,
            "gid": 0
        },
        "args": [
            "/sbin/dhcpcd",
            "--nobackground",
            "-f",
            "/dhcpcd.conf"
        ],
        "env": [
            "PATH=/usr/bin"
        ],
        "cwd": "/",
        "capabilities": {}
    },
    "root": {
        "path": "rootfs"
    },
    "mounts": [
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": [
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k"
            ]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]
        },
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": [
                "nosuid",
                "nodev",
                "noexec",
                "relatime"
            ]
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [
                "nosuid",
                "noexec",
                "nodev"
            ]
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                "ro"
            ]
        }
    ],
    "linux": {
        "resources": {},
        "namespaces": [
            {
                "type": "pid"
            },
            {
                "type": "mount"
            }
        ]
    }
}"#;

const DEFAULTS_RUNTIME: &str = r#"{
    "cgroups": [],
    "mounts": [
        {
            "destination": "/containers/onboot/000-test/tmp",
            "type": "tmpfs",
            "source": "tmpfs"
        },
        {
            "destination": "/containers/onboot/000-test/tmp",
            "options": [
                "remount",
                "private"
            ]
        },
        {
            "destination": "/containers/onboot/000-test/rootfs",
            "type": "overlay",
            "source": "overlay",
            "options": [
                "lowerdir=/containers/onboot/000-test/lower",
                "upperdir=/containers/onboot/000-test/tmp/upper",
                "workdir=/containers/onboot/000-test/tmp/work"
            ]
        }
    ],
    "mkdir": [],
    "interfaces": [],
    "bindNS": {
        "cgroup": "",
        "ipc": "",
        "mnt": "",
        "net": "",
        "pid": "",
        "user": "",
        "uts": ""
    },
    "namespace": ""
}"#;

const READONLY_RUNTIME: &str = r#"{
    "cgroups": [],
    "mounts": [
        {
            "destination": "/containers/onboot/000-test/rootfs",
            "source": "/containers/onboot/000-test/rootfs",
            "options": [
                "bind"
            ]
        }
    ],
    "mkdir": [],
    "interfaces": [],
    "bindNS": {
        "cgroup": "",
        "ipc": "",
        "mnt": "",
        "net": "",
        "pid": "",
        "user": "",
        "uts": ""
    },
    "namespace": ""
}"#;

#[test]
fn defaults_only() {
    let spec = build(
        &["name: dhcpcd", "image: linuxkit/dhcpcd:v1"],
        json!({
            "Entrypoint": ["/sbin/dhcpcd"],
            "Cmd": ["--nobackground", "-f", "/dhcpcd.conf"],
            "Env": ["PATH=/usr/bin"],
            "WorkingDir": ""
        }),
    );
    assert_eq!(text(&spec.config_json), DEFAULTS_CONFIG);
    assert_eq!(text(&spec.runtime_json), DEFAULTS_RUNTIME);
    assert!(!spec.readonly);
    assert_eq!(spec.root, "containers/onboot/000-test/lower");
}

#[test]
fn whole_image_config_blob_is_accepted() {
    let spec = build(
        &["name: a", "image: b"],
        json!({"architecture": "amd64", "config": {"Cmd": ["/x"], "WorkingDir": "/w"}}),
    );
    assert_eq!(at(&spec.config_json, "/process/args"), r#"["/x"]"#);
    assert_eq!(at(&spec.config_json, "/process/cwd"), r#""/w""#);
}

#[test]
fn readonly_root() {
    let spec = build(
        &[
            "name: ro",
            "image: alpine",
            "readonly: true",
            r#"command: ["/bin/sh", "-c", "a && b <c>"]"#,
        ],
        json!({}),
    );
    assert!(spec.readonly);
    assert_eq!(spec.root, "containers/onboot/000-test/rootfs");
    let config = text(&spec.config_json);
    assert!(
        config.contains(r#""a \u0026\u0026 b \u003cc\u003e""#),
        "{config}"
    );
    assert!(config.contains(
        "    \"root\": {\n        \"path\": \"rootfs\",\n        \"readonly\": true\n    },"
    ));
    assert_eq!(
        at(&spec.config_json, "/mounts/0"),
        r#"{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k","ro"]}"#
    );
    assert_eq!(
        at(&spec.config_json, "/mounts/3"),
        r#"{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]}"#
    );
    assert_eq!(text(&spec.runtime_json), READONLY_RUNTIME);
}

#[test]
fn shared_root_is_used_for_the_overlay() {
    let config = config(&["name: a", "image: b"], &[]);
    let ids = IdMap::default();
    let spec = bundle_spec(&BundleInput {
        spec: &config.onboot[0],
        image_config: &json!({}),
        ids: &ids,
        volumes: &[],
        bundle_path: "containers/services/b",
        shared_root: Some("containers/onboot/000-a/lower"),
    })
    .expect("spec");
    assert_eq!(spec.root, "containers/onboot/000-a/lower");
    assert_eq!(
        at(&spec.runtime_json, "/mounts/2/options"),
        r#"["lowerdir=/containers/onboot/000-a/lower","upperdir=/containers/services/b/tmp/upper","workdir=/containers/services/b/tmp/work"]"#
    );
}

#[test]
fn capabilities_all_and_ambient() {
    let spec = build(
        &[
            "name: c",
            "image: a",
            "capabilities: [all]",
            "ambient: [CAP_NET_ADMIN]",
        ],
        json!({}),
    );
    let caps: Value =
        serde_json::from_str(&at(&spec.config_json, "/process/capabilities")).expect("json");
    let effective: Vec<&str> = caps["effective"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(effective, crate::config::ALL_CAPABILITIES);
    let mut sorted = effective.clone();
    sorted.sort_unstable();
    assert_eq!(caps["bounding"], json!(sorted));
    assert_eq!(caps["inheritable"], caps["bounding"]);
    assert_eq!(caps["permitted"], caps["bounding"]);
    assert_eq!(caps["ambient"], json!(["CAP_NET_ADMIN"]));
    assert_eq!(
        at(&spec.config_json, "/process/capabilities/bounding/0"),
        r#""CAP_AUDIT_CONTROL""#
    );
}

#[test]
fn capabilities_add_merges_with_the_label_without_duplicates() {
    // LinuxKit repeats CAP_NET_RAW in `effective` (quirk §8.8).
    let spec = build(
        &[
            "name: c",
            "image: a",
            "capabilities.add: [CAP_SYS_TIME, CAP_NET_RAW]",
        ],
        json!({"Labels": {"org.mobyproject.config": r#"{"capabilities":["CAP_NET_RAW","CAP_CHOWN"]}"#}}),
    );
    assert_eq!(
        at(&spec.config_json, "/process/capabilities"),
        r#"{"bounding":["CAP_CHOWN","CAP_NET_RAW","CAP_SYS_TIME"],"effective":["CAP_NET_RAW","CAP_CHOWN","CAP_SYS_TIME"],"inheritable":["CAP_CHOWN","CAP_NET_RAW","CAP_SYS_TIME"],"permitted":["CAP_CHOWN","CAP_NET_RAW","CAP_SYS_TIME"]}"#
    );
    // A yml `capabilities` list wins over both.
    let spec = build(
        &[
            "name: c",
            "image: a",
            "capabilities: [none]",
            "capabilities.add: [CAP_SYS_TIME]",
        ],
        json!({"Labels": {"org.mobyproject.config": r#"{"capabilities":["CAP_CHOWN"]}"#}}),
    );
    assert_eq!(at(&spec.config_json, "/process/capabilities"), "{}");
}

#[test]
fn capability_keywords_only_alone() {
    let config = config(&["name: c", "image: a", "capabilities.add: [all]"], &[]);
    let label = json!({"Labels": {"org.mobyproject.config": r#"{"capabilities":["CAP_CHOWN"]}"#}});
    let err = run(&config, &label, &[]).expect_err("all with others");
    assert_eq!(
        err.to_string(),
        "t.yml:4:24: capabilities: `all` must be the only entry of a capability list"
    );
    // Without label capabilities, `capabilities.add: [all]` is all of them.
    assert!(run(&config, &json!({}), &[]).is_ok());
}

#[test]
fn binds_and_tmpfs() {
    let spec = build(
        &[
            "name: b",
            "image: a",
            "binds:",
            "  - /var/run:/var/run",
            "  - /etc/resolv.conf:/etc/resolv.conf:ro",
            "  - /lib/modules:/lib/modules:ro,rshared",
            "  - /x:/y:rbind,ro",
            "tmpfs:",
            "  - /tmp",
            "  - /run:size=10m,mode=755",
            "  - /var/run:nosuid",
        ],
        json!({}),
    );
    // `/x:/y:rbind,ro` gets no second `rbind` (LinuxKit adds one, quirk §8.8).
    assert_eq!(
        at(&spec.config_json, "/mounts"),
        r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},{"destination":"/etc/resolv.conf","type":"bind","source":"/etc/resolv.conf","options":["ro","rbind"]},{"destination":"/lib/modules","type":"bind","source":"/lib/modules","options":["ro","rshared","rbind"]},{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","nodev","noexec","relatime"]},{"destination":"/run","type":"tmpfs","source":"tmpfs","options":["size=10m","mode=755"]},{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev"]},{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["nosuid","noexec","nodev","relatime","ro"]},{"destination":"/tmp","type":"tmpfs","source":"tmpfs"},{"destination":"/var/run","type":"bind","source":"/var/run","options":["rw","rbind","rshared"]},{"destination":"/y","type":"bind","source":"/x","options":["rbind","ro"]}]"#
    );
}

#[test]
fn mounts_with_inference_override_by_destination() {
    let spec = build(
        &[
            "name: m",
            "image: a",
            "mounts:",
            "  - type: cgroup",
            r#"    options: ["rw","nosuid","noexec","nodev","relatime"]"#,
            "  - source: mqueue",
            "  - destination: /dev",
            "    options: [size=1m]",
            "  - type: bind",
            "    source: /var/lib/docker",
            "    destination: /var/lib/docker",
            "    options: [rbind, rw]",
            r#"binds: ["/x:/var/lib/docker"]"#,
        ],
        json!({}),
    );
    assert_eq!(
        at(&spec.config_json, "/mounts"),
        r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["size=1m"]},{"destination":"/dev/mqueue","type":"mqueue","source":"mqueue"},{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","nodev","noexec","relatime"]},{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev"]},{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["rw","nosuid","noexec","nodev","relatime"]},{"destination":"/var/lib/docker","type":"bind","source":"/var/lib/docker","options":["rbind","rw"]}]"#
    );
}

#[test]
fn devices_and_resources() {
    let spec = build(
        &[
            "name: d",
            "image: a",
            "devices:",
            "  - {path: all, type: b}",
            r#"  - {path: /dev/console, type: c, major: 5, minor: 1, mode: "0666"}"#,
            r#"  - {path: /dev/tty0, type: c, major: 4, minor: 0, mode: "0620"}"#,
            "resources:",
            "  devices: [{allow: false, access: rwm}]",
            "  memory: {limit: 1048576}",
            "  pids: {limit: 10}",
        ],
        json!({}),
    );
    assert_eq!(
        at(&spec.config_json, "/linux"),
        r#"{"resources":{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"b","access":"rwm"},{"allow":true,"type":"c","major":5,"minor":1,"access":"rwm"},{"allow":true,"type":"c","major":4,"minor":0,"access":"rwm"}],"memory":{"limit":1048576},"pids":{"limit":10}},"namespaces":[{"type":"pid"},{"type":"mount"}],"devices":[{"path":"/dev/console","type":"c","major":5,"minor":1,"fileMode":438},{"path":"/dev/tty0","type":"c","major":4,"minor":0,"fileMode":400}]}"#
    );
}

#[test]
fn camel_case_resources_take_effect() {
    // LinuxKit validates these keys but drops them (quirk §8.9).
    let spec = build(
        &[
            "name: r",
            "image: a",
            "resources:",
            "  memory: {kernelTCP: 7, disableOOMKiller: true}",
            "  cpu: {realtimeRuntime: 950000, realtimePeriod: 1000000}",
            "  hugepageLimits: [{pageSize: 2MB, limit: 0}]",
            "uidMappings: [{containerID: 0, hostID: 100000, size: 65536}]",
        ],
        json!({}),
    );
    assert_eq!(
        at(&spec.config_json, "/linux"),
        r#"{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"resources":{"memory":{"kernelTCP":7,"disableOOMKiller":true},"cpu":{"realtimeRuntime":950000,"realtimePeriod":1000000},"hugepageLimits":[{"pageSize":"2MB","limit":0}]},"namespaces":[{"type":"pid"},{"type":"mount"}]}"#
    );
}

#[test]
fn rlimits_and_process_flags() {
    let spec = build(
        &[
            "name: r",
            "image: a",
            "rlimits:",
            "  - nofile,1024,unlimited",
            r#"  - "RLIMIT_CORE, 0, 0""#,
            "  - memlock,UNLIMITED,unlimited",
            "noNewPrivileges: true",
            "oomScoreAdj: -100",
        ],
        json!({}),
    );
    assert_eq!(
        at(&spec.config_json, "/process"),
        r#"{"user":{"uid":0,"gid":0},"cwd":"/","capabilities":{},"rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":1024},{"type":"RLIMIT_CORE","hard":0,"soft":0},{"type":"RLIMIT_MEMLOCK","hard":18446744073709551615,"soft":18446744073709551615}],"noNewPrivileges":true,"oomScoreAdj":-100}"#
    );
}
