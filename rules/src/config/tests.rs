//! Tests of the top level, `kernel`, `files`, `volumes`, merging, ids and references.

use std::path::Path;

use super::*;

pub(super) fn yml(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

pub(super) fn parse(lines: &[&str]) -> Result<Config, ConfigError> {
    parse_config(&yml(lines), Path::new("t.yml"))
}

pub(super) fn ok(lines: &[&str]) -> Config {
    match parse(lines) {
        Ok(config) => config,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Asserts an error at `line:column` whose message is exactly `message`.
#[track_caller]
pub(super) fn fails(lines: &[&str], line: u32, column: u32, message: &str) -> ConfigError {
    let err = match parse(lines) {
        Ok(_) => panic!("expected an error: {message}"),
        Err(e) => e,
    };
    assert_eq!(err.message(), message, "full error: {err}");
    assert_eq!(
        (err.span().line, err.span().column),
        (line, column),
        "full error: {err}"
    );
    assert_eq!(&*err.span().file, Path::new("t.yml"));
    err
}

#[test]
fn empty_file_is_an_empty_config() {
    assert_eq!(ok(&[""]), Config::default());
    assert_eq!(ok(&["# just a comment"]), Config::default());
}

#[test]
fn display_format() {
    let err = fails(&["kernal: {}"], 1, 1, "top level: unknown key `kernal`");
    assert_eq!(
        err.to_string(),
        "t.yml:1:1: top level: unknown key `kernal`\nhint: did you mean `kernel`?"
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    fails(
        &["- a", "- b"],
        1,
        1,
        "top level: expected a mapping, found a sequence",
    );
}

#[test]
fn yaml_syntax_errors_are_located() {
    let err = parse(&["onboot:", "  - name: [a", "kernel: {}"]).expect_err("syntax");
    assert!(err.message().starts_with("invalid YAML: "), "{err}");
    assert_eq!(&*err.span().file, Path::new("t.yml"));
}

#[test]
fn duplicate_keys_are_rejected() {
    let err = parse(&["init: []", "init: []"]).expect_err("duplicate");
    assert_eq!(err.message(), "invalid YAML: duplicated key in mapping");
    assert_eq!(err.span().line, 2);
}

#[test]
fn multiple_documents_are_rejected() {
    fails(
        &["init: []", "---", "init: []"],
        3,
        1,
        "more than one YAML document; a configuration is a single document",
    );
}

#[test]
fn kernel_fields() {
    let c = ok(&[
        "kernel:",
        "  image: linuxkit/kernel:6.6",
        "  cmdline: \"console=ttyS0\"",
        "  tar: none",
    ]);
    let k = c.kernel.expect("kernel");
    assert_eq!(k.image(), Some("linuxkit/kernel:6.6"));
    assert_eq!(k.cmdline(), "console=ttyS0");
    assert_eq!(k.binary(), "kernel");
    assert_eq!(k.tar(), None);
    assert_eq!(k.ucode(), None);
    assert_eq!(
        (
            k.image.as_ref().expect("image").span.line,
            k.image.expect("image").span.column
        ),
        (2, 10)
    );

    let k = ok(&[
        "kernel:",
        "  image: k",
        "  binary: bzImage",
        "  ucode: intel-ucode.cpio",
    ])
    .kernel
    .expect("kernel");
    assert_eq!(k.tar(), Some("kernel.tar"));
    assert_eq!(k.binary(), "bzImage");
    assert_eq!(k.ucode(), Some("intel-ucode.cpio"));
}

#[test]
fn kernel_errors() {
    let e = fails(
        &["kernel:", "  image: k", "  cmdlin: x"],
        3,
        3,
        "kernel: unknown key `cmdlin`",
    );
    assert_eq!(e.hint(), Some("did you mean `cmdline`?"));
    fails(
        &["kernel:", "  cmdline: 42"],
        2,
        12,
        "kernel.cmdline: expected a string, found an integer",
    );
    fails(
        &["kernel: linuxkit/kernel"],
        1,
        9,
        "kernel: expected a mapping, found a string",
    );
}

#[test]
fn init_entries() {
    let c = ok(&["init:", "  - linuxkit/init:v1", "  - linuxkit/runc:v1"]);
    assert_eq!(c.init.len(), 2);
    assert_eq!(c.init[1].value, "linuxkit/runc:v1");
    assert_eq!((c.init[1].span.line, c.init[1].span.column), (3, 5));
    fails(
        &["init:", "  - {a: b}"],
        2,
        5,
        "init[0]: expected a string, found a mapping",
    );
    fails(
        &["init:", "  - \"\""],
        2,
        5,
        "init[0]: image reference must not be empty",
    );
    fails(
        &["init: linuxkit/init"],
        1,
        7,
        "init: expected a sequence, found a string",
    );
}

#[test]
fn trust_is_a_warning() {
    let c = ok(&["trust:", "  org:", "    - linuxkit"]);
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(
        c.warnings[0].to_string(),
        "t.yml:2:3: `trust` is ignored: LinuxKit no longer verifies image signatures"
    );
    fails(&["trust:", "  orgs: []"], 2, 3, "trust: unknown key `orgs`");
}

#[test]
fn files_parse() {
    let c = ok(&[
        "files:",
        "  - path: /etc/motd",
        "    contents: \"hello\"",
        "    mode: \"0644\"",
        "    uid: sshd",
        "    gid: 7",
        "  - path: etc/ssh",
        "    directory: true",
        "  - path: etc/link",
        "    symlink: /etc/motd",
        "  - path: etc/config.yml",
        "    metadata: yaml",
        "  - path: root/.ssh/authorized_keys",
        "    source: ~/.ssh/id_rsa.pub",
        "    optional: true",
        "  - path: empty",
        "    contents: \"\"",
    ]);
    let f = &c.files;
    assert_eq!(f[0].archive_path(), "etc/motd");
    assert_eq!(f[0].effective_mode(), 0o644);
    assert_eq!(f[0].parent_dir_mode(), 0o755);
    assert_eq!(
        f[0].uid.as_ref().map(|u| u.value.clone()),
        Some(IdValue::Name("sshd".into()))
    );
    assert_eq!(
        f[0].gid.as_ref().map(|u| u.value.clone()),
        Some(IdValue::Number(7))
    );
    assert_eq!(f[0].content(), FileContent::Contents("hello"));
    assert_eq!(f[1].content(), FileContent::Directory);
    assert_eq!(f[1].effective_mode(), 0o700);
    assert_eq!(f[2].content(), FileContent::Symlink("/etc/motd"));
    assert_eq!(f[2].effective_mode(), 0o600);
    assert_eq!(f[2].parent_dir_mode(), 0o700);
    assert_eq!(f[3].content(), FileContent::Metadata(MetadataFormat::Yaml));
    assert_eq!(f[4].content(), FileContent::Source("~/.ssh/id_rsa.pub"));
    assert!(f[4].optional);
    assert_eq!(f[5].content(), FileContent::Contents(""));
}

#[test]
fn file_mode_must_be_a_quoted_octal_string() {
    let e = fails(
        &["files:", "  - path: a", "    contents: x", "    mode: 0644"],
        4,
        11,
        "files[0].mode: expected a quoted octal string, found an integer",
    );
    assert_eq!(e.hint(), Some("quote it: \"0644\""));
    fails(
        &[
            "files:",
            "  - path: a",
            "    contents: x",
            "    mode: \"rw-r--r--\"",
        ],
        4,
        11,
        "files[0].mode: invalid mode `rw-r--r--`: expected an octal number such as \"0644\"",
    );
    fails(
        &[
            "files:",
            "  - path: a",
            "    contents: x",
            "    mode: \"0999\"",
        ],
        4,
        11,
        "files[0].mode: invalid mode `0999`: expected an octal number such as \"0644\"",
    );
}

#[test]
fn file_content_rules() {
    fails(
        &["files:", "  - path: etc/x"],
        2,
        5,
        "files[0]: contents of file `etc/x` not specified",
    );
    fails(
        &["files:", "  - path: x", "    contents: a", "    source: /b"],
        4,
        13,
        "files[0]: `contents` and `source` are both set; a file takes exactly one",
    );
    fails(
        &[
            "files:",
            "  - path: x",
            "    contents: a",
            "    metadata: yaml",
        ],
        4,
        15,
        "files[0]: `contents` and `metadata` are both set; a file takes exactly one",
    );
    fails(
        &[
            "files:",
            "  - path: x",
            "    source: /a",
            "    metadata: json",
        ],
        4,
        15,
        "files[0]: `source` and `metadata` are both set; a file takes exactly one",
    );
    fails(
        &[
            "files:",
            "  - path: x",
            "    directory: true",
            "    contents: a",
        ],
        4,
        15,
        "files[0]: a directory cannot have `contents`",
    );
    fails(
        &[
            "files:",
            "  - path: x",
            "    directory: true",
            "    symlink: /a",
        ],
        4,
        14,
        "files[0]: a directory cannot have `symlink`",
    );
    fails(
        &["files:", "  - path: x", "    metadata: toml"],
        3,
        15,
        "files[0].metadata: unsupported metadata type `toml`",
    );
}

#[test]
fn file_paths_and_fields() {
    fails(
        &["files:", "  - contents: a"],
        2,
        5,
        "files[0]: missing required key `path`",
    );
    fails(
        &["files:", "  - path: /", "    contents: a"],
        2,
        11,
        "files[0].path: must name a file",
    );
    fails(
        &["files:", "  - path: etc/../../x", "    contents: a"],
        2,
        11,
        "files[0].path: `etc/../../x` must not contain `..`",
    );
    let e = fails(
        &["files:", "  - path: x", "    contents: a", "    user: root"],
        4,
        5,
        "files[0]: unknown key `user`",
    );
    assert_eq!(
        e.hint(),
        Some(
            "expected one of: path, directory, symlink, contents, source, metadata, optional, mode, uid, gid"
        )
    );
    let e = fails(
        &["files:", "  - path: x", "    directory: yes"],
        3,
        16,
        "files[0].directory: expected a boolean, found a string",
    );
    assert_eq!(e.hint(), Some("YAML 1.2 booleans are `true` and `false`"));
    fails(
        &["files:", "  - path: x", "    contents: a", "    uid: [1]"],
        4,
        10,
        "files[0].uid: expected an integer or a container name, found a sequence",
    );
}

#[test]
fn volumes_parse() {
    let c = ok(&[
        "volumes:",
        "  - name: vol_1",
        "    image: alpine:3.20",
        "    readonly: true",
        "  - name: layout",
        "    image: alpine:3.20",
        "    format: oci",
        "    platforms: [linux/amd64, linux/arm64]",
        "  - name: blank",
    ]);
    assert_eq!(
        c.volumes[0].merged_dir(),
        "/containers/volumes/vol_1/merged"
    );
    assert!(c.volumes[0].readonly);
    assert_eq!(c.volumes[1].format, VolumeFormat::Oci);
    assert_eq!(c.volumes[1].platforms.len(), 2);
    assert_eq!(c.volumes[2].image, None);
    assert_eq!(c.volumes[2].format, VolumeFormat::Filesystem);
}

#[test]
fn volume_errors() {
    let e = fails(
        &["volumes:", "  - name: Data"],
        2,
        11,
        "volumes[0].name: invalid volume name `Data`",
    );
    assert_eq!(
        e.hint(),
        Some("volume names use only a-z, 0-9, `_` and `-`")
    );
    fails(
        &["volumes:", "  - image: x"],
        2,
        5,
        "volumes[0]: missing required key `name`",
    );
    fails(
        &["volumes:", "  - name: a", "  - name: a"],
        3,
        11,
        "duplicate volume name `a`",
    );
    fails(
        &["volumes:", "  - name: a", "    format: tar"],
        3,
        13,
        "volumes[0].format: unknown volume format `tar`",
    );
}

#[test]
fn service_names_are_unique_but_onboot_names_need_not_be() {
    let e = fails(
        &[
            "services:",
            "  - name: a",
            "    image: x",
            "  - name: a",
            "    image: y",
        ],
        4,
        11,
        "duplicate service name `a`",
    );
    assert_eq!(
        e.hint(),
        Some("services run side by side and need unique names; the first is at t.yml:2:11")
    );
    ok(&[
        "onboot:",
        "  - name: a",
        "    image: x",
        "  - name: a",
        "    image: y",
    ]);
}

#[test]
fn merge_semantics() {
    let a = parse_config(
        &yml(&[
            "kernel:",
            "  image: k1",
            "  cmdline: one",
            "  ucode: intel-ucode.cpio",
            "init: [i1]",
            "services:",
            "  - name: s",
            "    image: x",
            "volumes:",
            "  - name: v",
        ]),
        Path::new("a.yml"),
    )
    .expect("a");
    let b = parse_config(
        &yml(&[
            "kernel:",
            "  image: \"\"",
            "  cmdline: two",
            "  ucode: \"\"",
            "  tar: custom.tar",
            "init: [i2]",
            "onboot:",
            "  - name: o",
            "    image: y",
        ]),
        Path::new("b.yml"),
    )
    .expect("b");
    let m = merge(vec![a.clone(), b]).expect("merge");
    let k = m.kernel.as_ref().expect("kernel");
    assert_eq!(k.image(), Some("k1"));
    assert_eq!(k.cmdline(), "two");
    assert_eq!(k.ucode(), None);
    assert_eq!(k.tar(), Some("custom.tar"));
    assert_eq!(
        m.init.iter().map(|s| s.value.as_str()).collect::<Vec<_>>(),
        ["i1", "i2"]
    );
    assert_eq!(m.onboot.len(), 1);
    assert_eq!(merge(Vec::new()).expect("empty"), Config::default());

    let err = merge(vec![a.clone(), a]).expect_err("duplicate service");
    assert_eq!(
        err.to_string().lines().next(),
        Some("a.yml:7:11: duplicate service name `s`")
    );
}

#[test]
fn merge_rejects_volume_names_repeated_across_files() {
    let a = parse_config("volumes:\n  - name: v\n", Path::new("a.yml")).expect("a");
    let b = parse_config("volumes:\n  - name: v\n", Path::new("b.yml")).expect("b");
    let err = merge(vec![a, b]).expect_err("duplicate volume");
    assert_eq!(err.span().to_string(), "b.yml:2:11");
    assert_eq!(err.message(), "duplicate volume name `v`");
}

#[test]
fn id_map_and_resolution() {
    let c = ok(&[
        "onboot:",
        "  - name: a",
        "    image: x",
        "  - name: b",
        "    image: x",
        "onshutdown:",
        "  - name: a",
        "    image: x",
        "services:",
        "  - name: c",
        "    image: x",
    ]);
    let ids = IdMap::from_config(&c);
    assert_eq!(ids.get("a"), Some(102));
    assert_eq!(ids.get("b"), Some(101));
    assert_eq!(ids.get("c"), Some(103));
    let span = Span::new(std::sync::Arc::from(Path::new("t.yml")), 1, 1);
    let v = |value: IdValue| Spanned::new(value, span.clone());
    assert_eq!(ids.resolve_id(&v(IdValue::Number(5))), Ok(5));
    assert_eq!(ids.resolve_id(&v(IdValue::Name(String::new()))), Ok(0));
    assert_eq!(ids.resolve_id(&v(IdValue::Name("root".into()))), Ok(0));
    assert_eq!(ids.resolve_id(&v(IdValue::Name("c".into()))), Ok(103));
    let err = ids
        .resolve_id(&v(IdValue::Name("d".into())))
        .expect_err("unknown");
    assert_eq!(err.message(), "cannot find id `d`");
    let err = ids
        .resolve_id(&v(IdValue::Number(-1)))
        .expect_err("negative");
    assert_eq!(
        err.message(),
        "id -1 is out of range (expected 0 to 4294967295)"
    );
}

#[test]
fn reference_expansion() {
    assert_eq!(expand_ref("alpine"), "docker.io/library/alpine");
    assert_eq!(expand_ref("alpine:3.20"), "docker.io/library/alpine:3.20");
    assert_eq!(expand_ref("linuxkit/init:v1"), "docker.io/linuxkit/init:v1");
    assert_eq!(expand_ref("localhost/x"), "localhost/x");
    assert_eq!(expand_ref("localhost:5000/x"), "localhost:5000/x");
    assert_eq!(expand_ref("ghcr.io/x"), "ghcr.io/x");
    assert_eq!(expand_ref("a/b/c"), "a/b/c");
    assert_eq!(
        expand_ref("linuxkit/init@sha256:abcd"),
        "docker.io/linuxkit/init@sha256:abcd"
    );
}

#[test]
fn anchors_and_merge_keys() {
    let c = ok(&[
        "onboot:",
        "  - &base",
        "    name: a",
        "    image: x",
        "    net: host",
        "  - <<: *base",
        "    name: b",
    ]);
    assert_eq!(c.onboot[1].name.value, "b");
    assert_eq!(c.onboot[1].image.value, "x");
    assert_eq!(
        c.onboot[1].config.net.as_ref().map(|s| s.value.as_str()),
        Some("host")
    );
}

#[test]
fn legacy_octal_integers_read_like_yaml_v3() {
    let c = ok(&[
        "onboot:",
        "  - name: a",
        "    image: x",
        "    uid: 0755",
        "    gid: 0o17",
    ]);
    assert_eq!(
        c.onboot[0].config.uid.as_ref().map(|u| u.value.clone()),
        Some(IdValue::Number(0o755))
    );
    assert_eq!(
        c.onboot[0].config.gid.as_ref().map(|u| u.value.clone()),
        Some(IdValue::Number(15))
    );
}

#[test]
fn every_item_with_a_problem_is_reported_in_one_run() {
    let err = parse(&[
        "kernel:",
        "  image: linuxkit/kernel:6.6",
        "  cmdlin: console=ttyS0",
        "services:",
        "  - name: one",
        "    image: linuxkit/one:1",
        "    capabilities: [CAP_NOPE]",
        "  - name: two",
        "    image: linuxkit/two:1",
        "  - name: three",
        "    imag: linuxkit/three:1",
        "files:",
        "  - path: etc/motd",
        "    mode: 644",
    ])
    .expect_err("four problems");
    let lines: Vec<(u32, u32)> = err
        .problems()
        .map(|problem| (problem.span().line, problem.span().column))
        .collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(lines[0].0, 3, "the kernel's first: {err}");
    assert_eq!(
        lines.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        {
            let mut sorted = lines.iter().map(|(line, _)| *line).collect::<Vec<_>>();
            sorted.sort_unstable();
            sorted
        },
        "in file order: {err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("t.yml:3:"), "{text}");
    assert!(text.ends_with("(4 problems)"), "{text}");
    assert_eq!(text.matches("t.yml:").count(), 4, "{text}");
    // One problem prints as before, with no count.
    let one = parse(&["kernel:", "  cmdlin: x"]).expect_err("one problem");
    assert_eq!(one.problems().count(), 1);
    assert!(!one.to_string().contains("problems"), "{one}");
}

#[test]
fn a_config_larger_than_the_limit_is_refused_before_parsing() {
    let file = Path::new("big.yml");
    let big = vec![b'#'; MAX_CONFIG_BYTES + 1];
    let error = config_text(big, file).expect_err("too large");
    assert_eq!(
        error.to_string(),
        format!(
            "big.yml:1:1: the file is larger than {} MiB, the most lkb reads as a config",
            MAX_CONFIG_BYTES >> 20
        )
    );
    let text = "#".repeat(MAX_CONFIG_BYTES + 1);
    let error = parse_config(&text, file).expect_err("too large");
    assert!(
        error
            .to_string()
            .starts_with("big.yml:1:1: the file is larger"),
        "{error}"
    );
    assert_eq!(
        config_text(b"kernel: {}\n".to_vec(), file).expect("ok"),
        "kernel: {}\n"
    );
}

#[test]
fn invalid_utf8_is_reported_where_it_is() {
    let bytes = b"kernel:\n  image: lin\xffuxkit/kernel:6.6\n".to_vec();
    let error = config_text(bytes, Path::new("bad.yml")).expect_err("not UTF-8");
    assert_eq!(
        error.to_string(),
        "bad.yml:2:13: the file is not valid UTF-8 text\nhint: a linuxkit.yml is UTF-8 text; \
         was a binary or another encoding given?"
    );
    assert_eq!(error.category(), lkb_store::ErrorCategory::User);
}

#[test]
fn files_entries_are_capped_per_file_and_merged() {
    let entries = |n: usize| {
        let mut text = String::from("files:\n");
        for i in 0..n {
            text.push_str(&format!("- {{path: etc/f{i}, contents: x}}\n"));
        }
        text
    };
    let error =
        parse_config(&entries(MAX_FILES_ENTRIES + 1), Path::new("many.yml")).expect_err("too many");
    assert_eq!(
        error.to_string(),
        format!(
            "many.yml:2:3: files: {} entries, more than the {MAX_FILES_ENTRIES} lkb accepts\n\
             hint: put many files in an image instead",
            MAX_FILES_ENTRIES + 1
        )
    );
    let half = parse_config(&entries(MAX_FILES_ENTRIES / 2 + 1), Path::new("half.yml"))
        .expect("under the limit");
    let error = merge(vec![half.clone(), half]).expect_err("too many merged");
    assert!(
        error.to_string().contains("files: 65538 entries"),
        "{error}"
    );
}
