//! Bundle spec tests: layer precedence (yml > label > image config > default), the runtime
//! object, volumes and errors.

use serde_json::json;

use super::tests::{DEFAULT_MOUNTS, at, build, config, run, text};

const RUNTIME_MERGED: &str = r#"{
    "cgroups": [
        "systemreserved",
        "podruntime"
    ],
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
        },
        {
            "destination": "",
            "type": "cgroup",
            "options": [
                "rw"
            ]
        }
    ],
    "mkdir": [
        "/var/lib/containerd"
    ],
    "interfaces": [
        {
            "name": "eth1",
            "createInRoot": false
        },
        {
            "name": "wg0",
            "add": "wireguard",
            "createInRoot": true
        },
        {
            "name": "veth0",
            "peer": "veth1",
            "createInRoot": false
        }
    ],
    "bindNS": {
        "cgroup": "",
        "ipc": "/run/ipc",
        "mnt": "",
        "net": "/run/netns/x",
        "pid": "",
        "user": "",
        "uts": "/run/uts"
    },
    "namespace": "services.linuxkit"
}"#;

fn label(json_text: &str) -> serde_json::Value {
    json!({"Labels": {"org.mobyproject.config": json_text}})
}

#[test]
fn label_merge_precedence() {
    let spec = build(
        &[
            "name: p",
            "image: a",
            "env: [FROM=yml]",
            "hostname: fromyml",
            "pid: host",
        ],
        json!({
            "Env": ["FROM=image"],
            "Cmd": ["image-cmd"],
            "WorkingDir": "/image",
            "Labels": {"org.mobyproject.config": r#"{"command":["label-cmd"],"env":["FROM=label"],"cwd":"/label","hostname":"fromlabel","uts":"new","readonly":true,"sysctl":{"b":"2","a":"1"},"runtime":{"mkdir":["/var/lib/x"],"bindNS":{"net":"/run/netns/x"},"namespace":"label-ns"}}"#}
        }),
    );
    assert_eq!(
        at(&spec.config_json, "/process"),
        r#"{"user":{"uid":0,"gid":0},"args":["label-cmd"],"env":["FROM=yml"],"cwd":"/label","capabilities":{}}"#
    );
    assert_eq!(at(&spec.config_json, "/hostname"), r#""fromyml""#);
    assert_eq!(
        at(&spec.config_json, "/root"),
        r#"{"path":"rootfs","readonly":true}"#
    );
    assert_eq!(
        at(&spec.config_json, "/linux"),
        r#"{"sysctl":{"a":"1","b":"2"},"resources":{},"namespaces":[{"type":"uts"},{"type":"mount"}]}"#
    );
    assert_eq!(
        at(&spec.runtime_json, ""),
        r#"{"cgroups":[],"mounts":[{"destination":"/containers/onboot/000-test/rootfs","source":"/containers/onboot/000-test/rootfs","options":["bind"]}],"mkdir":["/var/lib/x"],"interfaces":[],"bindNS":{"cgroup":"","ipc":"","mnt":"","net":"/run/netns/x","pid":"","user":"","uts":""},"namespace":"label-ns"}"#
    );
}

#[test]
fn set_but_empty_values() {
    // Pointer-like fields: a written `""`/`false`/`[]` overrides the label; plain strings
    // (cwd, namespaces, hostname) only override when non-empty.
    let spec = build(
        &[
            "name: p",
            "image: a",
            r#"rootfsPropagation: """#,
            r#"cwd: """#,
            "readonly: false",
            "gid: 3",
            "additionalGids: []",
            "net: host",
            "pid: root",
            r#"tmpfs: ["/dev:size=1m"]"#,
            "devices: [{path: all}]",
        ],
        json!({
            "Entrypoint": ["/init"],
            "Env": null,
            "Labels": {"org.mobyproject.config": r#"{"rootfsPropagation":"shared","cwd":"/label","readonly":true,"uid":5,"additionalGids":[1],"cgroupsPath":"/label","mounts":[{"source":"proc"}],"resources":{"memory":{"limit":5},"cpu":{"shares":2,"cpus":""}}}"#}
        }),
    );
    assert_eq!(
        at(&spec.config_json, "/process"),
        r#"{"user":{"uid":5,"gid":3},"args":["/init"],"cwd":"/label","capabilities":{}}"#
    );
    assert_eq!(at(&spec.config_json, "/root"), r#"{"path":"rootfs"}"#);
    assert_eq!(
        at(&spec.config_json, "/mounts"),
        r#"[{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["size=1m"]},{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620"]},{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev"]},{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["nosuid","noexec","nodev","relatime","ro"]}]"#
    );
    assert_eq!(
        at(&spec.config_json, "/linux"),
        r#"{"resources":{"devices":[{"allow":true,"access":"rwm"}],"memory":{"limit":5},"cpu":{"shares":2}},"cgroupsPath":"/label","namespaces":[{"type":"mount"}]}"#
    );
}

#[test]
fn empty_lists_override_image_and_label() {
    let spec = build(
        &[
            "name: e",
            "image: a",
            "command: []",
            "env: []",
            "capabilities: [none]",
            "binds: []",
        ],
        json!({"Cmd": ["x"], "Env": ["A=b"], "Labels": {"org.mobyproject.config": r#"{"binds":["/a:/a"],"capabilities":["CAP_CHOWN"]}"#}}),
    );
    assert_eq!(
        at(&spec.config_json, "/process"),
        r#"{"user":{"uid":0,"gid":0},"cwd":"/","capabilities":{}}"#
    );
    assert_eq!(
        at(&spec.config_json, "/mounts"),
        format!("[{DEFAULT_MOUNTS}]")
    );
}

#[test]
fn uid_and_gids_by_name() {
    let config = config(
        &[
            "name: u",
            "image: a",
            "uid: sshd",
            "gid: root",
            r#"additionalGids: ["sshd", 7, "dhcpcd"]"#,
        ],
        &[],
    );
    let spec = run(&config, &json!({}), &["dhcpcd", "sshd", "u"]).expect("spec");
    assert_eq!(
        at(&spec.config_json, "/process/user"),
        r#"{"uid":101,"gid":0,"additionalGids":[101,7,100]}"#
    );
    let err = run(&config, &json!({}), &["dhcpcd", "sshd2"]).expect_err("unknown name");
    assert_eq!(
        err.to_string(),
        "t.yml:4:10: cannot find id `sshd`\nhint: did you mean `sshd2`?"
    );
}

#[test]
fn namespaces_paths_and_linux_fields() {
    let spec = build(
        &[
            "name: n",
            "image: a",
            "net: /run/netns/wg",
            "ipc: new",
            "uts: host",
            "pid: /proc/1/ns/pid",
            "userns: new",
            "cgroupsPath: podruntime/n",
            "rootfsPropagation: shared",
            "maskedPaths: [/proc/kcore]",
            "readonlyPaths: [/proc/sys, /proc/irq]",
            r#"annotations: {z: "1", a: "2"}"#,
            r#"sysctl: {net.ipv4.ip_forward: "1"}"#,
        ],
        json!({}),
    );
    assert_eq!(
        at(&spec.config_json, "/linux"),
        r#"{"sysctl":{"net.ipv4.ip_forward":"1"},"resources":{},"cgroupsPath":"podruntime/n","namespaces":[{"type":"network","path":"/run/netns/wg"},{"type":"ipc"},{"type":"pid","path":"/proc/1/ns/pid"},{"type":"user"},{"type":"mount"}],"rootfsPropagation":"shared","maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys","/proc/irq"]}"#
    );
    assert_eq!(
        at(&spec.config_json, "/annotations"),
        r#"{"a":"2","z":"1"}"#
    );

    let spec = build(
        &["name: n", "image: a", "net: none", "pid: new", "cwd: /work"],
        json!({"WorkingDir": "/x"}),
    );
    assert_eq!(at(&spec.config_json, "/process/cwd"), r#""/work""#);
    assert_eq!(
        at(&spec.config_json, "/linux/namespaces"),
        r#"[{"type":"network"},{"type":"pid"},{"type":"mount"}]"#
    );
}

#[test]
fn runtime_fields_merge_one_by_one() {
    let spec = build(
        &[
            "name: rt",
            "image: a",
            "runtime:",
            "  cgroups: [systemreserved, podruntime]",
            "  mounts:",
            "    - type: cgroup",
            "      options: [rw]",
            "  mkdir: [/var/lib/containerd]",
            "  interfaces:",
            "    - name: eth1",
            "    - name: wg0",
            "      add: wireguard",
            "      createInRoot: true",
            "    - name: veth0",
            "      peer: veth1",
            "  bindNS:",
            "    net: /run/netns/x",
            "    uts: /run/uts",
            "  namespace: services.linuxkit",
        ],
        label(
            r#"{"runtime":{"cgroups":["label"],"mkdir":["/label"],"bindNS":{"ipc":"/run/ipc","net":"/label/net"}}}"#,
        ),
    );
    assert_eq!(text(&spec.runtime_json), RUNTIME_MERGED);
}

#[test]
fn volume_binds_are_rewritten() {
    let volumes = ["  - name: data", "  - name: ro", "    readonly: true"];
    let config = config(
        &[
            "name: v",
            "image: a",
            r#"binds: ["data:/data", "ro:/ro:ro"]"#,
            "mounts: [{type: bind, source: data, destination: /m, options: [rw]}]",
        ],
        &volumes,
    );
    let spec = run(&config, &json!({}), &[]).expect("spec");
    let mounts = at(&spec.config_json, "/mounts");
    assert!(mounts.contains(r#"{"destination":"/data","type":"bind","source":"/containers/volumes/data/merged","options":["rw","rbind","rshared"]}"#), "{mounts}");
    assert!(mounts.contains(r#"{"destination":"/ro","type":"bind","source":"/containers/volumes/ro/merged","options":["ro","rbind"]}"#), "{mounts}");
    // LinuxKit leaves the source of bind mounts unrewritten (quirk §8.5).
    assert!(mounts.contains(r#"{"destination":"/m","type":"bind","source":"/containers/volumes/data/merged","options":["rw"]}"#), "{mounts}");

    let config = self::config(
        &["name: v", "image: a", r#"binds.add: ["ro:/ro:ro,rbind"]"#],
        &volumes,
    );
    let err = run(&config, &json!({}), &[]).expect_err("read-only");
    assert_eq!(
        err.to_string(),
        "t.yml:4:17: volume `ro` is read-only, but attempting to write into container read-write\nhint: bind it with `:ro` as the only option"
    );
    let config = self::config(
        &[
            "name: v",
            "image: a",
            "mounts: [{type: bind, source: ro, destination: /m, options: [rw, ro]}]",
        ],
        &volumes,
    );
    let err = run(&config, &json!({}), &[]).expect_err("read-only mount");
    assert_eq!(
        err.message(),
        "volume `ro` is read-only, but attempting to write into container read-write"
    );
    let config = self::config(
        &["name: v", "image: a", r#"binds: ["dta:/data"]"#],
        &volumes,
    );
    let err = run(&config, &json!({}), &[]).expect_err("missing");
    assert_eq!(
        err.to_string(),
        "t.yml:4:13: volume `dta` not found\nhint: did you mean `data`?"
    );
}

#[test]
fn label_binds_add_and_yml_binds_add_merge() {
    let spec = build(
        &["name: b", "image: a", r#"binds.add: ["/c:/c", "/a:/a"]"#],
        label(r#"{"binds":["/a:/a"],"binds.add":["/b:/b"]}"#),
    );
    let mounts = at(&spec.config_json, "/mounts");
    for dest in ["/a", "/b", "/c"] {
        assert!(
            mounts.contains(&format!(r#""destination":"{dest}","type":"bind""#)),
            "{mounts}"
        );
    }
}

#[test]
fn image_and_label_errors() {
    let config = config(&["name: a", "image: alpine"], &[]);
    let err = run(&config, &label(r#"{"net": 5}"#), &[]).expect_err("label type");
    assert_eq!(
        err.to_string(),
        "docker.io/library/alpine (label org.mobyproject.config):1:9: net: expected a string, found an integer\nhint: quote it: \"5\""
    );
    let err = run(&config, &label(r#"{"image": "x"}"#), &[]).expect_err("label image");
    assert_eq!(
        err.message(),
        "`image` cannot be set in the org.mobyproject.config label"
    );
    let err = run(&config, &json!({"Cmd": "sh"}), &[]).expect_err("bad image config");
    assert_eq!(
        err.to_string(),
        "t.yml:3:12: the image config's `Cmd` is not a list of strings"
    );
    // An empty label is no label.
    assert!(run(&config, &label(""), &[]).is_ok());
}
