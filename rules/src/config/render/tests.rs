//! Exact metadata text. The expected outputs were checked against LinuxKit's own
//! serialisation (yaml.v2 and encoding/json over its `Moby` struct shape); the one
//! intended difference is that camelCase `hostID` mappings take effect.

use std::path::Path;

use super::*;
use crate::config::{ImageConfig, ImageSettings, merge, parse_config, parse_label, resolve_image};

fn config(text: &str) -> Config {
    parse_config(text, Path::new("test.yml")).expect("valid config")
}

fn yaml(config: &Config) -> String {
    String::from_utf8(render_metadata(config, MetadataFormat::Yaml)).expect("utf-8")
}

fn json(config: &Config) -> String {
    String::from_utf8(render_metadata(config, MetadataFormat::Json)).expect("utf-8")
}

/// LinuxKit's `examples/minimal.yml`.
const MINIMAL: &str = r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=tty0 console=ttyS0 console=ttyAMA0"
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
  - linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
  - linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e
onboot:
  - name: dhcpcd
    image: linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb
    command: ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
services:
  - name: getty
    image: linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0
    env:
     - INSECURE=true
"#;

/// Every field of every section, with values that need quoting, folding and literal blocks.
const EVERY_FIELD: &str = r#"kernel:
  image: linuxkit/kernel:6.12.59
  cmdline: "console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1 rootwait quiet splash"
  binary: bzImage
  tar: none
  ucode: intel-ucode.cpio
init:
  - linuxkit/init:v1
  - alpine
  - registry.example.com/x/y:z
onboot:
  - name: sysctl
    image: linuxkit/sysctl:v2
    capabilities:
      - CAP_SYS_ADMIN
      - CAP_NET_ADMIN
    capabilities.add:
      - CAP_SYS_BOOT
    ambient:
      - all
    mounts:
      - type: cgroup
        options: ["rw", "nosuid"]
      - destination: /mnt
        type: bind
        source: /var/data
        uidmappings:
          - containerID: 0
            hostID: 1000
            size: 1
    binds:
      - /var:/var
      - /etc/resolv.conf:/etc/resolv.conf:ro,rshared
    binds.add:
      - /lib/modules:/lib/modules
    devices:
      - path: all
        type: b
      - path: /dev/null
        type: c
        major: 1
        minor: 3
        mode: "0666"
    tmpfs:
      - /tmp
      - /run:size=10m,mode=755
    command: ["/bin/sh", "-c", "echo hello: world # not a comment", "yes", "", "123"]
    env:
      - A=1
      - "B=two words"
    cwd: /root
    net: new
    pid: host
    ipc: new
    uts: new
    userns: new
    hostname: box
    readonly: false
    maskedPaths: [/proc/kcore]
    readonlyPaths: []
    uid: 100
    gid: getty
    additionalGids: [1, sysctl]
    noNewPrivileges: true
    oomScoreAdj: -500
    rootfsPropagation: ""
    cgroupsPath: /lk/sysctl
    resources:
      devices:
        - allow: false
          access: rwm
        - allow: true
          type: c
          major: 5
          minor: 1
          access: rw
      memory:
        limit: 1048576
        swappiness: 10
      cpu:
        shares: 512
        cpus: "0-1"
      pids:
        limit: 100
      blockio:
        weight: 10
      network:
        priorities:
          - name: eth0
            priority: 2
    sysctl:
      net.ipv4.ip_forward: "1"
      a10: x
      a9: "y"
    rlimits:
      - nofile,1024,4096
      - memlock,unlimited,unlimited
    uidMappings:
      - containerID: 0
        hostID: 100000
        size: 65536
    gidMappings: []
    annotations:
      org.example/key: "value: with colon"
    runtime:
      cgroups: [systemreserved]
      mounts:
        - type: overlay
          source: overlay
          destination: /etc
          options: ["lowerdir=/etc"]
      mkdir: [/var/lib/x]
      interfaces:
        - name: wg0
          add: wireguard
          createInRoot: true
        - name: eth1
      bindNS:
        net: /run/netns/wg0
      namespace: services.linuxkit
onshutdown:
  - name: bye
    image: busybox:latest
    command: ["/bin/echo", "bye"]
    runtime:
      mkdir: [/x]
services:
  - name: getty
    image: linuxkit/getty:abc
    env: ["INSECURE=true"]
    uid: "0"
files:
  - path: etc/linuxkit-config
    metadata: yaml
  - path: /etc/json
    metadata: json
    mode: "0644"
  - path: etc/motd
    contents: |
      Welcome
        indented
  - path: etc/empty
    contents: ""
  - path: var/dir
    directory: true
    mode: "0755"
    uid: 1
    gid: getty
  - path: etc/link
    symlink: /etc/motd
  - path: root/.ssh/authorized_keys
    source: ~/.ssh/id_rsa.pub
    optional: true
    mode: "0600"
volumes:
  - name: blank
  - name: alpine
    image: alpine:3.21
    readonly: true
  - name: layout
    image: linuxkit/x:1
    format: oci
    platforms: [linux/amd64]
"#;

/// A second file merged after [`EVERY_FIELD`].
const OVERLAY: &str = r#"kernel:
  ucode: ""
  cmdline: "console=ttyS1"
onboot:
  - name: modprobe
    image: linuxkit/modprobe:1
    command: ["modprobe", "-a", "virtio"]
"#;

#[test]
fn minimal_yaml() {
    assert_eq!(
        yaml(&config(MINIMAL)),
        r#"kernel:
  image: docker.io/linuxkit/kernel:6.12.59
  cmdline: console=tty0 console=ttyS0 console=ttyAMA0
init:
- docker.io/linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
- docker.io/linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492
- docker.io/linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e
onboot:
- name: dhcpcd
  image: docker.io/linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb
  command:
  - /sbin/dhcpcd
  - --nobackground
  - -f
  - /dhcpcd.conf
  - "-1"
onshutdown: []
services:
- name: getty
  image: docker.io/linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0
  env:
  - INSECURE=true
files: []
volumes: []
"#
    );
}

#[test]
fn minimal_json() {
    assert_eq!(
        json(&config(MINIMAL)),
        r#"{
    "kernel": {
        "image": "docker.io/linuxkit/kernel:6.12.59",
        "cmdline": "console=tty0 console=ttyS0 console=ttyAMA0"
    },
    "init": [
        "docker.io/linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a",
        "docker.io/linuxkit/runc:9442aa234715e751a16144f1d4ae3fd1a00fd492",
        "docker.io/linuxkit/containerd:ba19f64efd3331a8fd0a33e00eabd14f6ee1780e"
    ],
    "onboot": [
        {
            "name": "dhcpcd",
            "image": "docker.io/linuxkit/dhcpcd:b87e9ececac55a65eaa592f4dd8b4e0c3009afdb",
            "command": [
                "/sbin/dhcpcd",
                "--nobackground",
                "-f",
                "/dhcpcd.conf",
                "-1"
            ]
        }
    ],
    "onshutdown": null,
    "services": [
        {
            "name": "getty",
            "image": "docker.io/linuxkit/getty:a86d74c8f89be8956330c3b115b0b1f2e09ef6e0",
            "env": [
                "INSECURE=true"
            ]
        }
    ],
    "files": null,
    "volumes": null
}"#
    );
}

#[test]
fn empty_config() {
    let empty = Config::default();
    assert_eq!(
        yaml(&empty),
        "kernel:\n  image: \"\"\ninit: []\nonboot: []\nonshutdown: []\nservices: []\nfiles: []\nvolumes: []\n"
    );
    assert_eq!(
        json(&empty),
        "{\n    \"kernel\": {\n        \"image\": \"\"\n    },\n    \"init\": null,\n    \"onboot\": null,\n    \
         \"onshutdown\": null,\n    \"services\": null,\n    \"files\": null,\n    \"volumes\": null\n}"
    );
}

#[test]
fn every_field_yaml() {
    assert_eq!(
        yaml(&config(EVERY_FIELD)),
        r#"kernel:
  image: docker.io/linuxkit/kernel:6.12.59
  cmdline: console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1
    rootwait quiet splash
  binary: bzImage
  tar: none
  ucode: intel-ucode.cpio
init:
- docker.io/linuxkit/init:v1
- docker.io/library/alpine
- registry.example.com/x/y:z
onboot:
- name: sysctl
  image: docker.io/linuxkit/sysctl:v2
  capabilities:
  - CAP_SYS_ADMIN
  - CAP_NET_ADMIN
  capabilities.add:
  - CAP_SYS_BOOT
  ambient:
  - all
  mounts:
  - destination: ""
    type: cgroup
    source: ""
    options:
    - rw
    - nosuid
    uidmappings: []
    gidmappings: []
  - destination: /mnt
    type: bind
    source: /var/data
    options: []
    uidmappings:
    - containerid: 0
      hostid: 1000
      size: 1
    gidmappings: []
  binds:
  - /var:/var
  - /etc/resolv.conf:/etc/resolv.conf:ro,rshared
  binds.add:
  - /lib/modules:/lib/modules
  devices:
  - path: all
    type: b
    major: 0
    minor: 0
  - path: /dev/null
    type: c
    major: 1
    minor: 3
    mode: "0666"
  tmpfs:
  - /tmp
  - /run:size=10m,mode=755
  command:
  - /bin/sh
  - -c
  - 'echo hello: world # not a comment'
  - "yes"
  - ""
  - "123"
  env:
  - A=1
  - B=two words
  cwd: /root
  net: new
  pid: host
  ipc: new
  uts: new
  userns: new
  hostname: box
  readonly: false
  maskedPaths:
  - /proc/kcore
  readonlyPaths: []
  uid: 100
  gid: getty
  additionalGids:
  - 1
  - sysctl
  noNewPrivileges: true
  oomScoreAdj: -500
  rootfsPropagation: ""
  cgroupsPath: /lk/sysctl
  resources:
    devices:
    - allow: false
      type: ""
      major: null
      minor: null
      access: rwm
    - allow: true
      type: c
      major: 5
      minor: 1
      access: rw
    memory:
      limit: 1048576
      reservation: null
      swap: null
      kernel: null
      kerneltcp: null
      swappiness: 10
      disableoomkiller: null
      usehierarchy: null
      checkbeforeupdate: null
    cpu:
      shares: 512
      quota: null
      burst: null
      period: null
      realtimeruntime: null
      realtimeperiod: null
      cpus: 0-1
      mems: ""
      idle: null
    pids:
      limit: 100
    blockio:
      weight: 10
      leafweight: null
      weightdevice: []
      throttlereadbpsdevice: []
      throttlewritebpsdevice: []
      throttlereadiopsdevice: []
      throttlewriteiopsdevice: []
    hugepagelimits: []
    network:
      classid: null
      priorities:
      - name: eth0
        priority: 2
    rdma: {}
    unified: {}
  sysctl:
    a9: "y"
    a10: x
    net.ipv4.ip_forward: "1"
  rlimits:
  - nofile,1024,4096
  - memlock,unlimited,unlimited
  uidMappings:
  - containerid: 0
    hostid: 100000
    size: 65536
  gidMappings: []
  annotations:
    org.example/key: 'value: with colon'
  runtime:
    cgroups:
    - systemreserved
    mounts:
    - destination: /etc
      type: overlay
      source: overlay
      options:
      - lowerdir=/etc
      uidmappings: []
      gidmappings: []
    mkdir:
    - /var/lib/x
    interfaces:
    - name: wg0
      add: wireguard
      createInRoot: true
    - name: eth1
      createInRoot: false
    bindNS:
      net: /run/netns/wg0
    namespace: services.linuxkit
onshutdown:
- name: bye
  image: docker.io/library/busybox:latest
  command:
  - /bin/echo
  - bye
  runtime:
    mkdir:
    - /x
services:
- name: getty
  image: docker.io/linuxkit/getty:abc
  env:
  - INSECURE=true
  uid: "0"
files:
- path: etc/linuxkit-config
  directory: false
  metadata: yaml
  optional: false
- path: /etc/json
  directory: false
  metadata: json
  optional: false
  mode: "0644"
- path: etc/motd
  directory: false
  contents: |
    Welcome
      indented
  optional: false
- path: etc/empty
  directory: false
  contents: ""
  optional: false
- path: var/dir
  directory: true
  optional: false
  mode: "0755"
  uid: 1
  gid: getty
- path: etc/link
  directory: false
  symlink: /etc/motd
  optional: false
- path: root/.ssh/authorized_keys
  directory: false
  source: ~/.ssh/id_rsa.pub
  optional: true
  mode: "0600"
volumes:
- name: blank
- name: alpine
  image: alpine:3.21
  readonly: true
- name: layout
  image: linuxkit/x:1
  format: oci
  platforms:
  - linux/amd64
"#
    );
}

#[test]
fn every_field_json() {
    assert_eq!(
        json(&config(EVERY_FIELD)),
        r#"{
    "kernel": {
        "image": "docker.io/linuxkit/kernel:6.12.59",
        "cmdline": "console=tty0 console=ttyS0 console=ttyAMA0 console=ttysclp0 root=/dev/sda1 rootwait quiet splash",
        "binary": "bzImage",
        "tar": "none",
        "ucode": "intel-ucode.cpio"
    },
    "init": [
        "docker.io/linuxkit/init:v1",
        "docker.io/library/alpine",
        "registry.example.com/x/y:z"
    ],
    "onboot": [
        {
            "name": "sysctl",
            "image": "docker.io/linuxkit/sysctl:v2",
            "capabilities": [
                "CAP_SYS_ADMIN",
                "CAP_NET_ADMIN"
            ],
            "capabilities.add": [
                "CAP_SYS_BOOT"
            ],
            "ambient": [
                "all"
            ],
            "mounts": [
                {
                    "destination": "",
                    "type": "cgroup",
                    "options": [
                        "rw",
                        "nosuid"
                    ]
                },
                {
                    "destination": "/mnt",
                    "type": "bind",
                    "source": "/var/data",
                    "uidMappings": [
                        {
                            "containerID": 0,
                            "hostID": 1000,
                            "size": 1
                        }
                    ]
                }
            ],
            "binds": [
                "/var:/var",
                "/etc/resolv.conf:/etc/resolv.conf:ro,rshared"
            ],
            "binds.add": [
                "/lib/modules:/lib/modules"
            ],
            "devices": [
                {
                    "path": "all",
                    "type": "b",
                    "major": 0,
                    "minor": 0
                },
                {
                    "path": "/dev/null",
                    "type": "c",
                    "major": 1,
                    "minor": 3,
                    "mode": "0666"
                }
            ],
            "tmpfs": [
                "/tmp",
                "/run:size=10m,mode=755"
            ],
            "command": [
                "/bin/sh",
                "-c",
                "echo hello: world # not a comment",
                "yes",
                "",
                "123"
            ],
            "env": [
                "A=1",
                "B=two words"
            ],
            "cwd": "/root",
            "net": "new",
            "pid": "host",
            "ipc": "new",
            "uts": "new",
            "userns": "new",
            "hostname": "box",
            "readonly": false,
            "maskedPaths": [
                "/proc/kcore"
            ],
            "readonlyPaths": [],
            "uid": 100,
            "gid": "getty",
            "additionalGids": [
                1,
                "sysctl"
            ],
            "noNewPrivileges": true,
            "oomScoreAdj": -500,
            "rootfsPropagation": "",
            "cgroupsPath": "/lk/sysctl",
            "resources": {
                "devices": [
                    {
                        "allow": false,
                        "access": "rwm"
                    },
                    {
                        "allow": true,
                        "type": "c",
                        "major": 5,
                        "minor": 1,
                        "access": "rw"
                    }
                ],
                "memory": {
                    "limit": 1048576,
                    "swappiness": 10
                },
                "cpu": {
                    "shares": 512,
                    "cpus": "0-1"
                },
                "pids": {
                    "limit": 100
                },
                "blockIO": {
                    "weight": 10
                },
                "network": {
                    "priorities": [
                        {
                            "name": "eth0",
                            "priority": 2
                        }
                    ]
                }
            },
            "sysctl": {
                "a10": "x",
                "a9": "y",
                "net.ipv4.ip_forward": "1"
            },
            "rlimits": [
                "nofile,1024,4096",
                "memlock,unlimited,unlimited"
            ],
            "uidMappings": [
                {
                    "containerID": 0,
                    "hostID": 100000,
                    "size": 65536
                }
            ],
            "gidMappings": [],
            "annotations": {
                "org.example/key": "value: with colon"
            },
            "runtime": {
                "cgroups": [
                    "systemreserved"
                ],
                "mounts": [
                    {
                        "destination": "/etc",
                        "type": "overlay",
                        "source": "overlay",
                        "options": [
                            "lowerdir=/etc"
                        ]
                    }
                ],
                "mkdir": [
                    "/var/lib/x"
                ],
                "interfaces": [
                    {
                        "name": "wg0",
                        "add": "wireguard",
                        "createInRoot": true
                    },
                    {
                        "name": "eth1",
                        "createInRoot": false
                    }
                ],
                "bindNS": {
                    "net": "/run/netns/wg0"
                },
                "namespace": "services.linuxkit"
            }
        }
    ],
    "onshutdown": [
        {
            "name": "bye",
            "image": "docker.io/library/busybox:latest",
            "command": [
                "/bin/echo",
                "bye"
            ],
            "runtime": {
                "mkdir": [
                    "/x"
                ],
                "bindNS": {}
            }
        }
    ],
    "services": [
        {
            "name": "getty",
            "image": "docker.io/linuxkit/getty:abc",
            "env": [
                "INSECURE=true"
            ],
            "uid": "0"
        }
    ],
    "files": [
        {
            "path": "etc/linuxkit-config",
            "directory": false,
            "metadata": "yaml",
            "optional": false
        },
        {
            "path": "/etc/json",
            "directory": false,
            "metadata": "json",
            "optional": false,
            "mode": "0644"
        },
        {
            "path": "etc/motd",
            "directory": false,
            "contents": "Welcome\n  indented\n",
            "optional": false
        },
        {
            "path": "etc/empty",
            "directory": false,
            "contents": "",
            "optional": false
        },
        {
            "path": "var/dir",
            "directory": true,
            "optional": false,
            "mode": "0755",
            "uid": 1,
            "gid": "getty"
        },
        {
            "path": "etc/link",
            "directory": false,
            "symlink": "/etc/motd",
            "optional": false
        },
        {
            "path": "root/.ssh/authorized_keys",
            "directory": false,
            "source": "~/.ssh/id_rsa.pub",
            "optional": true,
            "mode": "0600"
        }
    ],
    "volumes": [
        {
            "name": "blank"
        },
        {
            "name": "alpine",
            "image": "alpine:3.21",
            "readonly": true
        },
        {
            "name": "layout",
            "image": "linuxkit/x:1",
            "format": "oci",
            "platforms": [
                "linux/amd64"
            ]
        }
    ]
}"#
    );
}

#[test]
fn merged_files() {
    let merged = merge(vec![
        config(EVERY_FIELD),
        parse_config(OVERLAY, Path::new("overlay.yml")).expect("valid overlay"),
    ])
    .expect("merge");
    let text = yaml(&merged);
    assert!(text.starts_with(
        "kernel:\n  image: docker.io/linuxkit/kernel:6.12.59\n  cmdline: console=ttyS1\n  \
         binary: bzImage\n  tar: none\n  ucode: \"\"\ninit:\n"
    ));
    assert!(text.contains(
        "    namespace: services.linuxkit\n- name: modprobe\n  image: docker.io/linuxkit/modprobe:1\n"
    ));
}

/// camelCase `resources` keys (which LinuxKit validates, then drops) take effect, and are
/// written under the lower-cased runtime-spec Go field names yaml.v2 uses.
#[test]
fn resources_follow_the_runtime_spec_struct() {
    let text = yaml(&config(
        r#"onboot:
  - name: x
    image: x
    resources:
      memory:
        kernelTCP: 5
        disableOOMKiller: true
      cpu:
        realtimeRuntime: 7
      hugepageLimits:
        - pageSize: 2MB
          limit: 4096
      blockIO:
        leafWeight: 3
        weightDevice:
          - major: 8
            minor: 1
            weight: 5
            leafWeight: 6
        throttleReadBpsDevice:
          - major: 8
            minor: 0
            rate: 1000
      network:
        classID: 9
"#,
    ));
    let start = text.find("  resources:\n").expect("resources");
    let end = text.find("onshutdown:").expect("onshutdown");
    assert_eq!(
        &text[start..end],
        r#"  resources:
    devices: []
    memory:
      limit: null
      reservation: null
      swap: null
      kernel: null
      kerneltcp: 5
      swappiness: null
      disableoomkiller: true
      usehierarchy: null
      checkbeforeupdate: null
    cpu:
      shares: null
      quota: null
      burst: null
      period: null
      realtimeruntime: 7
      realtimeperiod: null
      cpus: ""
      mems: ""
      idle: null
    pids: null
    blockio:
      weight: null
      leafweight: 3
      weightdevice:
      - linuxblockiodevice:
          major: 8
          minor: 1
        weight: 5
        leafweight: 6
      throttlereadbpsdevice:
      - linuxblockiodevice:
          major: 8
          minor: 0
        rate: 1000
      throttlewritebpsdevice: []
      throttlereadiopsdevice: []
      throttlewriteiopsdevice: []
    hugepagelimits:
    - pagesize: 2MB
      limit: 4096
    network:
      classid: 9
      priorities: []
    rdma: {}
    unified: {}
"#
    );
}

fn label(text: &str) -> ImageConfig {
    parse_label(text, "docker.io/linuxkit/x:1").expect("valid label")
}

#[test]
fn resolve_image_precedence() {
    let spec = config(
        "onboot:\n- name: x\n  image: linuxkit/x:1\n  capabilities.add: [CAP_SYS_BOOT, CAP_SYS_ADMIN]\n  \
         binds.add: [/a:/a]\n  net: \"\"\n  pid: host\n  runtime:\n    bindNS:\n      net: /run/netns/x\n",
    )
    .onboot
    .remove(0);
    let settings = ImageSettings {
        label: label(
            r#"{"capabilities":["CAP_SYS_ADMIN"],"binds":["/b:/b"],"binds.add":["/a:/a"],"net":"new","pid":"new","readonly":true,"runtime":{"mkdir":["/m"],"bindNS":{"net":"/label","ipc":"/ipc"}}}"#,
        ),
        command: vec!["/bin/x".into(), "-v".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: String::new(),
    };
    let resolved = resolve_image(&spec, &settings);
    let merged = Config {
        onboot: vec![resolved],
        ..Config::default()
    };
    assert_eq!(
        yaml(&merged),
        "kernel:\n  image: \"\"\ninit: []\nonboot:\n- name: x\n  image: docker.io/linuxkit/x:1\n  capabilities:\n  \
         - CAP_SYS_ADMIN\n  - CAP_SYS_BOOT\n  binds:\n  - /b:/b\n  - /a:/a\n  command:\n  - /bin/x\n  - -v\n  \
         env:\n  - PATH=/bin\n  cwd: /\n  net: new\n  pid: host\n  readonly: true\n  runtime:\n    mkdir:\n    - /m\n    \
         bindNS:\n      ipc: /ipc\n      net: /run/netns/x\nonshutdown: []\nservices: []\nfiles: []\nvolumes: []\n"
    );
}

#[test]
fn resolve_image_keeps_yml_lists_and_falls_back_to_the_image() {
    let spec = config(
        "services:\n- name: x\n  image: x\n  capabilities: []\n  binds: [/c:/c]\n  command: []\n  cwd: /w\n",
    )
    .services
    .remove(0);
    let settings = ImageSettings {
        label: label("capabilities: [CAP_NET_ADMIN]\nbinds.add: [/d:/d]\nenv: [A=1]\n"),
        command: vec!["/ignored".into()],
        env: vec!["B=2".into()],
        working_dir: "/image".into(),
    };
    let c = resolve_image(&spec, &settings).config;
    assert_eq!(c.capabilities.map(|l| l.value.len()), Some(0));
    assert_eq!(c.capabilities_add, None);
    let binds: Vec<String> = c
        .binds
        .expect("binds")
        .value
        .iter()
        .map(|b| b.destination.clone())
        .collect();
    assert_eq!(binds, ["/c"]);
    assert_eq!(c.command.map(|l| l.value.len()), Some(0));
    let env: Vec<String> = c
        .env
        .expect("env")
        .value
        .iter()
        .map(|e| e.value.clone())
        .collect();
    assert_eq!(env, ["A=1"]);
    assert_eq!(c.cwd.map(|s| s.value), Some("/w".to_owned()));

    let bare = config("services:\n- name: y\n  image: y\n")
        .services
        .remove(0);
    let c = resolve_image(&bare, &settings).config;
    assert_eq!(c.cwd.map(|s| s.value), Some("/image".to_owned()));
    let caps: Vec<String> = c
        .capabilities
        .expect("caps")
        .value
        .iter()
        .map(|e| e.value.clone())
        .collect();
    assert_eq!(caps, ["CAP_NET_ADMIN"]);
    assert_eq!(c.binds.map(|b| b.value.len()), Some(1));
}
