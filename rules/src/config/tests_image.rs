//! Tests of image objects (`onboot`/`onshutdown`/`services` entries) and labels.

use serde_json::json;

use super::tests::{fails, ok};
use super::*;

/// A one-service config whose image object has the extra `lines` (indented 4).
fn service(lines: &[&str]) -> Vec<String> {
    let mut out = vec![
        "services:".to_owned(),
        "  - name: s".to_owned(),
        "    image: alpine".to_owned(),
    ];
    out.extend(lines.iter().map(|l| format!("    {l}")));
    out
}

fn refs(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).collect()
}

/// Expects an error on line `3 + offset` (the first extra line is offset 1).
#[track_caller]
fn service_fails(lines: &[&str], offset: u32, column: u32, message: &str) -> ConfigError {
    let text = service(lines);
    fails(&refs(&text), 3 + offset, column, message)
}

fn service_ok(lines: &[&str]) -> ImageConfig {
    let text = service(lines);
    ok(&refs(&text)).services.remove(0).config
}

#[test]
fn full_featured_image_object() {
    let c = service_ok(&[
        "capabilities: [CAP_NET_ADMIN, CAP_SYS_ADMIN]",
        "capabilities.add: [CAP_SYS_TIME]",
        "ambient: [CAP_NET_ADMIN]",
        "mounts:",
        "  - type: cgroup",
        "    options: [rw, nosuid]",
        "  - source: /var/lib",
        "    destination: /var/lib",
        "    type: bind",
        "    options: [rbind]",
        "    uidmappings: [{containerID: 0, hostID: 1000, size: 1}]",
        "binds: [/etc/resolv.conf:/etc/resolv.conf, \"/var:/var:ro,rshared\"]",
        "binds.add: [data:/data]",
        "tmpfs: [/tmp, \"/run:size=10m,mode=755\"]",
        "devices:",
        "  - {path: all, type: b}",
        "  - {path: /dev/console, type: c, major: 5, minor: 1, mode: \"0666\"}",
        "command: [/bin/sh, -c, \"echo hi\"]",
        "env: [A=1]",
        "cwd: /root",
        "net: new",
        "pid: host",
        "ipc: new",
        "uts: new",
        "userns: new",
        "hostname: box",
        "readonly: true",
        "maskedPaths: [/proc/kcore]",
        "readonlyPaths: [/proc/sys]",
        "uid: 100",
        "gid: sshd",
        "additionalGids: [10, wheel]",
        "noNewPrivileges: true",
        "oomScoreAdj: -500",
        "rootfsPropagation: shared",
        "cgroupsPath: /x/y",
        "resources:",
        "  memory: {limit: 1048576, kernelTCP: 10, disableOOMKiller: true}",
        "  cpu: {shares: 512, realtimeRuntime: 5, cpus: \"0-1\"}",
        "  pids: {}",
        "  blockio:",
        "    weight: 10",
        "    leafWeight: 20",
        "    weightDevice: [{major: 8, minor: 0, leafWeight: 5}]",
        "    throttleReadBpsDevice: [{major: 8, minor: 0, rate: 100}]",
        "  hugepageLimits: [{pageSize: 2MB, limit: 4}]",
        "  network: {classID: 7, priorities: [{name: eth0, priority: 1}]}",
        "  devices: [{allow: false, access: rwm}]",
        "sysctl: {net.ipv4.ip_forward: \"1\"}",
        "rlimits: [\"nofile,1024,unlimited\", \"RLIMIT_CORE, 0, 0\"]",
        "uidMappings: [{containerID: 0, hostID: 100000, size: 65536}]",
        "gidMappings: [{containerID: 0, hostID: 100000, size: 65536}]",
        "annotations: {org.example/x: y}",
        "runtime:",
        "  cgroups: [systemreserved]",
        "  mounts: [{type: bind, source: /a, destination: /b, options: [bind]}]",
        "  mkdir: [/var/lib/x]",
        "  interfaces: [{name: wg0, add: wireguard, createInRoot: true}]",
        "  bindNS: {net: /run/netns/wg}",
        "  namespace: services.linuxkit",
    ]);
    assert_eq!(c.capabilities.as_ref().map(|l| l.value.len()), Some(2));
    assert_eq!(
        c.capabilities_add
            .as_ref()
            .map(|l| l.value[0].value.as_str()),
        Some("CAP_SYS_TIME")
    );
    let mounts = &c.mounts.as_ref().expect("mounts").value;
    assert_eq!(
        mounts[0].resolve().expect("inferred"),
        ResolvedMount {
            destination: "/sys/fs/cgroup".into(),
            mount_type: "cgroup".into(),
            source: "cgroup".into()
        }
    );
    assert_eq!(
        mounts[1].uid_mappings,
        [IdMapping {
            container_id: 0,
            host_id: 1000,
            size: 1
        }]
    );
    let binds = &c.binds.as_ref().expect("binds").value;
    assert_eq!(binds[1].options, Some(vec!["ro".into(), "rshared".into()]));
    assert!(c.binds_add.as_ref().expect("add").value[0].is_volume());
    let tmpfs = &c.tmpfs.as_ref().expect("tmpfs").value;
    assert_eq!(tmpfs[0].options, None);
    assert_eq!(
        tmpfs[1].options,
        Some(vec!["size=10m".into(), "mode=755".into()])
    );
    let devices = &c.devices.as_ref().expect("devices").value;
    assert_eq!(devices[0].mode, None);
    assert_eq!(devices[1].mode, Some(0o666));
    assert_eq!(
        c.gid.as_ref().map(|g| g.value.clone()),
        Some(IdValue::Name("sshd".into()))
    );
    assert_eq!(c.additional_gids.as_ref().map(|g| g.value.len()), Some(2));
    assert_eq!(c.oom_score_adj.as_ref().map(|v| v.value), Some(-500));
    assert_eq!(
        c.resources.as_ref().expect("resources").value,
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 1048576, "kernelTCP": 10, "disableOOMKiller": true},
            "cpu": {"shares": 512, "realtimeRuntime": 5, "cpus": "0-1"},
            "pids": {"limit": 0},
            "blockIO": {
                "weight": 10,
                "leafWeight": 20,
                "weightDevice": [{"major": 8, "minor": 0, "leafWeight": 5}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 100}]
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4}],
            "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 1}]}
        })
    );
    let rlimits = &c.rlimits.as_ref().expect("rlimits").value;
    assert_eq!(
        (rlimits[0].kind.as_str(), rlimits[0].soft, rlimits[0].hard),
        ("RLIMIT_NOFILE", 1024, u64::MAX)
    );
    assert_eq!(rlimits[1].kind, "RLIMIT_CORE");
    assert_eq!(
        c.uid_mappings.as_ref().map(|m| m.value[0].host_id),
        Some(100000)
    );
    assert_eq!(
        c.sysctl
            .as_ref()
            .map(|m| m.value["net.ipv4.ip_forward"].as_str()),
        Some("1")
    );
    let runtime = c.runtime.as_ref().expect("runtime");
    assert_eq!(
        runtime.bind_ns.net.as_ref().map(|s| s.value.as_str()),
        Some("/run/netns/wg")
    );
    assert!(runtime.interfaces.as_ref().expect("interfaces").value[0].create_in_root);
    assert_eq!(
        runtime.namespace.as_ref().map(|s| s.value.as_str()),
        Some("services.linuxkit")
    );
}

#[test]
fn resources_key_order_is_canonical() {
    let c = service_ok(&[
        "resources:",
        "  pids: {limit: 5}",
        "  memory: {swap: 1, limit: 2}",
    ]);
    let text = serde_json::to_string(&c.resources.expect("resources").value).expect("json");
    assert_eq!(
        text,
        r#"{"memory":{"limit":2,"swap":1},"pids":{"limit":5}}"#
    );
}

#[test]
fn required_keys_and_names() {
    fails(
        &["onboot:", "  - image: x"],
        2,
        5,
        "onboot[0]: missing required key `name`",
    );
    fails(
        &["onboot:", "  - name: x"],
        2,
        5,
        "onboot[0]: missing required key `image`",
    );
    fails(
        &["onboot:", "  - name: ../x", "    image: x"],
        2,
        11,
        "onboot[0].name: container name `../x` must not contain `/`",
    );
    fails(
        &["onboot:", "  - name: a", "    image: \"al pine\""],
        3,
        12,
        "onboot[0].image: image reference `al pine` must not contain whitespace",
    );
}

#[test]
fn unknown_keys_get_hints() {
    let e = service_fails(&["bindz: []"], 1, 5, "services[0]: unknown key `bindz`");
    assert_eq!(e.hint(), Some("did you mean `binds`?"));
    let e = service_fails(
        &["capabilities_add: []"],
        1,
        5,
        "services[0]: unknown key `capabilities_add`",
    );
    assert_eq!(e.hint(), Some("did you mean `capabilities.add`?"));
    let e = service_fails(
        &["cgroupns: host"],
        1,
        5,
        "services[0]: unknown key `cgroupns`",
    );
    assert!(
        e.hint()
            .is_some_and(|h| h.starts_with("expected one of: name, image, ")),
        "{e}"
    );
    let e = service_fails(
        &["resources:", "  memory: {limt: 1}"],
        2,
        16,
        "services[0].resources.memory: unknown key `limt`",
    );
    assert_eq!(e.hint(), Some("did you mean `limit`?"));
    service_fails(
        &["runtime:", "  bindNS: {network: /x}"],
        2,
        16,
        "services[0].runtime.bindNS: unknown key `network`",
    );
    service_fails(
        &["mounts:", "  - {dest: /x}"],
        2,
        10,
        "services[0].mounts[0]: unknown key `dest`",
    );
}

#[test]
fn wrong_types() {
    service_fails(
        &["command: \"sleep 10\""],
        1,
        14,
        "services[0].command: expected a sequence, found a string",
    );
    let e = service_fails(
        &["command: [sleep, 10]"],
        1,
        22,
        "services[0].command[1]: expected a string, found an integer",
    );
    assert_eq!(e.hint(), Some("quote it: \"10\""));
    service_fails(
        &["env: {A: b}"],
        1,
        10,
        "services[0].env: expected a sequence, found a mapping",
    );
    service_fails(
        &["readonly: \"true\""],
        1,
        15,
        "services[0].readonly: expected a boolean, found a string",
    );
    service_fails(
        &["sysctl: {a: 1}"],
        1,
        17,
        "services[0].sysctl.a: expected a string, found an integer",
    );
    service_fails(
        &["oomScoreAdj: 2000"],
        1,
        18,
        "services[0].oomScoreAdj: 2000 is out of range (expected -1000 to 1000)",
    );
    service_fails(
        &["resources:", "  blockio: {weight: 70000}"],
        2,
        25,
        "services[0].resources.blockio.weight: 70000 is out of range (expected 0 to 65535)",
    );
    service_fails(
        &["uidMappings: [{hostID: -1}]"],
        1,
        28,
        "services[0].uidMappings[0].hostID: -1 is out of range (expected 0 to 4294967295)",
    );
    service_fails(
        &["uid: 1.5"],
        1,
        10,
        "services[0].uid: expected an integer or a container name, found a float",
    );
    service_fails(
        &["net: ~"],
        1,
        10,
        "services[0].net: expected a string, found null",
    );
}

#[test]
fn capabilities_are_checked() {
    let e = service_fails(
        &["capabilities: [CAP_NET_ADMIN, SYS_ADMIN]"],
        1,
        35,
        "services[0].capabilities[1]: unknown capability `SYS_ADMIN`",
    );
    assert_eq!(e.hint(), Some("did you mean `CAP_SYS_ADMIN`?"));
    let e = service_fails(
        &["capabilities.add: [cap_net_raw]"],
        1,
        24,
        "services[0].capabilities.add[0]: unknown capability `cap_net_raw`",
    );
    assert_eq!(e.hint(), Some("did you mean `CAP_NET_RAW`?"));
    let e = service_fails(
        &["ambient: [CAP_NET_ADMN]"],
        1,
        15,
        "services[0].ambient[0]: unknown capability `CAP_NET_ADMN`",
    );
    assert_eq!(e.hint(), Some("did you mean `CAP_NET_ADMIN`?"));
    service_fails(
        &["capabilities: [all, CAP_NET_ADMIN]"],
        1,
        20,
        "services[0].capabilities[0]: `all` must be the only entry of a capability list",
    );
    service_ok(&["capabilities: [ALL]"]);
    service_ok(&["capabilities: [none]", "ambient: [all]"]);
}

#[test]
fn bind_and_tmpfs_syntax() {
    service_fails(
        &["binds: [/var]"],
        1,
        13,
        "services[0].binds[0]: invalid bind `/var`: missing `:` (expected `source:destination[:options]`)",
    );
    service_fails(
        &["binds.add: [\"/a:/b:ro:x\"]"],
        1,
        17,
        "services[0].binds.add[0]: invalid bind `/a:/b:ro:x`: too many `:` (expected `source:destination[:options]`)",
    );
    service_fails(
        &["binds: [\":/b\"]"],
        1,
        13,
        "services[0].binds[0]: invalid bind `:/b`: empty source",
    );
    service_fails(
        &["binds: [\"/a:/b:ro,,rbind\"]"],
        1,
        13,
        "services[0].binds[0]: invalid bind `/a:/b:ro,,rbind`: empty mount option in `ro,,rbind`",
    );
    service_fails(
        &["tmpfs: [\"/tmp:a:b\"]"],
        1,
        13,
        "services[0].tmpfs[0]: invalid tmpfs `/tmp:a:b`: too many `:` (expected `destination[:options]`)",
    );
    service_fails(
        &["tmpfs: [\":size=1m\"]"],
        1,
        13,
        "services[0].tmpfs[0]: invalid tmpfs `:size=1m`: empty destination",
    );
}

#[test]
fn mount_inference() {
    service_fails(
        &["mounts:", "  - {source: /x, destination: /y}"],
        2,
        9,
        "services[0].mounts[0]: mount for destination `/y` is missing `type` (it can only be inferred for the sources mqueue, devpts, proc, sysfs and cgroup, or for /dev)",
    );
    service_fails(
        &["mounts:", "  - {type: tmpfs}"],
        2,
        9,
        "services[0].mounts[0]: mount of type `tmpfs` is missing `destination`",
    );
    let c = service_ok(&["mounts:", "  - {destination: /dev}", "  - {source: mqueue}"]);
    let m = &c.mounts.expect("mounts").value;
    assert_eq!(m[0].resolve().expect("dev").mount_type, "tmpfs");
    assert_eq!(m[1].resolve().expect("mqueue").destination, "/dev/mqueue");
    // runtime mounts are passed through without inference
    service_ok(&["runtime:", "  mounts: [{destination: /x}]"]);
    service_fails(
        &["mounts:", "  - {uidmappings: [], uidMappings: []}"],
        2,
        40,
        "services[0].mounts[0]: `uidmappings` and `uidMappings` are the same setting; give only one",
    );
}

#[test]
fn devices_need_a_mode() {
    let e = service_fails(
        &[
            "devices:",
            "  - {path: /dev/fuse, type: c, major: 10, minor: 229}",
        ],
        2,
        9,
        "services[0].devices[0]: device `/dev/fuse` needs a `mode`",
    );
    assert_eq!(e.hint(), Some("add for example `mode: \"0666\"`"));
    let e = service_fails(
        &[
            "devices:",
            "  - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: 0666}",
        ],
        2,
        65,
        "services[0].devices[0].mode: expected a quoted octal string, found an integer",
    );
    assert_eq!(e.hint(), Some("quote it: \"0666\""));
    service_fails(
        &["devices:", "  - {type: b}"],
        2,
        9,
        "services[0].devices[0]: missing required key `path`",
    );
}

#[test]
fn rlimits_are_checked() {
    let e = service_fails(
        &["rlimits: [\"nofiles,1,2\"]"],
        1,
        15,
        "services[0].rlimits[0]: invalid rlimit `nofiles,1,2`: unknown limit `nofiles`",
    );
    assert_eq!(e.hint(), Some("did you mean `RLIMIT_NOFILE`?"));
    service_fails(
        &["rlimits: [\"nofile,1\"]"],
        1,
        15,
        "services[0].rlimits[0]: invalid rlimit `nofile,1`: expected `name,soft,hard`",
    );
    service_fails(
        &["rlimits: [\"nofile,-1,2\"]"],
        1,
        15,
        "services[0].rlimits[0]: invalid rlimit `nofile,-1,2`: `-1` is not a non-negative integer or `unlimited`",
    );
}

#[test]
fn label_parsing() {
    let label = parse_label(
        r#"{"capabilities":["CAP_SYS_ADMIN"],"binds":["/a:/b"],"net":"new","uid":5}"#,
        "docker.io/x/y:1",
    )
    .expect("label");
    assert_eq!(label.net.as_ref().map(|s| s.value.as_str()), Some("new"));
    assert_eq!(
        label.uid.as_ref().map(|s| s.value.clone()),
        Some(IdValue::Number(5))
    );

    let err = parse_label(r#"{"name":"x","net":"new"}"#, "docker.io/x/y:1").expect_err("name");
    assert_eq!(
        err.to_string(),
        "docker.io/x/y:1 (label org.mobyproject.config):1:9: `name` cannot be set in the org.mobyproject.config label"
    );
    let err = parse_label("[1, 2]", "img").expect_err("array");
    assert_eq!(
        err.message(),
        "the org.mobyproject.config label must be an object"
    );
    let err = parse_label(r#"{"capabilities":["CAP_FOO"]}"#, "img").expect_err("cap");
    assert_eq!(
        err.message(),
        "capabilities[0]: unknown capability `CAP_FOO`"
    );
    let err = parse_label(r#"{"bogus":1}"#, "img").expect_err("key");
    assert_eq!(err.message(), "top level: unknown key `bogus`");
    assert_eq!(
        parse_label("", "img").expect("empty"),
        ImageConfig::default()
    );
}
