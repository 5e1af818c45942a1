use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::*;

/// Runs git in `dir` (with a fixed identity) and returns its trimmed stdout.
fn run_git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=lkb", "-c", "user.email=lkb@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// A repository with `pkg/foo` (a package) and `images/x.yml`, all committed.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("pkg/foo/build.yml"), "image: foo\n");
    write(&root.join("pkg/foo/Dockerfile"), "FROM scratch\n");
    write(&root.join("pkg/foo/src/main.c"), "int main(){}\n");
    write(
        &root.join("images/x.yml"),
        "onboot:\n  - name: foo\n    image: \"@pkg:../pkg/foo\"\n    command: [\"@pkg:../pkg/foo\", \"@other\"]\n",
    );
    run_git(root, &["init", "-q"]);
    run_git(root, &["add", "."]);
    run_git(root, &["commit", "-q", "-m", "init"]);
    dir
}

#[test]
fn finds_template_scalars_with_locations() {
    let text =
        "onboot:\n  - name: x\n    image: \"@pkg:../a\"\n    command: ['@pkg:b', '@x', pkg]\n";
    let found = find_templates(text, Path::new("dir/x.yml")).expect("parses");
    let found: Vec<String> = found
        .iter()
        .map(|t| format!("{} {}", t.span, t.value))
        .collect();
    assert_eq!(found, ["dir/x.yml:3:12 @pkg:../a", "dir/x.yml:4:15 @pkg:b"]);
}

#[test]
fn substitution_keeps_the_template_location() {
    let text =
        "onboot:\n  - name: x\n    image: \"@pkg:../a\"\n    command: [\"@pkg:../a\", \"@x\"]\n";
    let mut values = TemplateValues::new();
    values.insert("@pkg:../a", "docker.io/linuxkit/a:abc");
    let config = parse_config_with(text, Path::new("x.yml"), &values).expect("valid");
    let spec = &config.onboot[0];
    assert_eq!(spec.image.value, "docker.io/linuxkit/a:abc");
    assert_eq!(spec.image.span.to_string(), "x.yml:3:12");
    let command: Vec<&str> = spec
        .config
        .command
        .as_ref()
        .expect("command")
        .value
        .iter()
        .map(|s| s.value.as_str())
        .collect();
    assert_eq!(command, ["docker.io/linuxkit/a:abc", "@x"]);
}

#[test]
fn clean_package_is_its_tree_hash() {
    let dir = repo();
    let root = dir.path();
    let tree = run_git(root, &["rev-parse", "HEAD:pkg/foo"]);
    assert_eq!(
        package_reference(&root.join("pkg/foo")).expect("resolves"),
        format!("docker.io/linuxkit/foo:{tree}")
    );

    let file = root.join("images/x.yml");
    let text = std::fs::read_to_string(&file).expect("read");
    let config = parse_local_config(&text, &file).expect("resolves");
    let spec = &config.onboot[0];
    assert_eq!(spec.image.value, format!("docker.io/linuxkit/foo:{tree}"));
    let command: Vec<&str> = spec
        .config
        .command
        .as_ref()
        .expect("command")
        .value
        .iter()
        .map(|s| s.value.as_str())
        .collect();
    assert_eq!(
        command,
        [format!("docker.io/linuxkit/foo:{tree}").as_str(), "@other"]
    );
}

#[test]
fn package_at_the_top_of_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(&root.join("build.yml"), "image: top\norg: acme\n");
    run_git(root, &["init", "-q"]);
    run_git(root, &["add", "."]);
    run_git(root, &["commit", "-q", "-m", "init"]);
    let tree = run_git(root, &["rev-parse", "HEAD^{tree}"]);
    assert_eq!(
        package_reference(root).expect("resolves"),
        format!("docker.io/acme/top:{tree}")
    );
}

/// The dirty suffix: SHA-256 over tracked then untracked file contents, in ls-files order.
fn dirty_suffix(files: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for contents in files {
        hasher.update(contents);
    }
    hex::encode(hasher.finalize())[..7].to_owned()
}

#[test]
fn modified_and_untracked_files_make_it_dirty() {
    let dir = repo();
    let root = dir.path();
    let pkg = root.join("pkg/foo");
    let tree = run_git(root, &["rev-parse", "HEAD:pkg/foo"]);

    write(&pkg.join("Dockerfile"), "FROM alpine\n");
    let suffix = dirty_suffix(&[b"FROM alpine\n", b"image: foo\n", b"int main(){}\n"]);
    assert_eq!(
        package_reference(&pkg).expect("resolves"),
        format!("docker.io/linuxkit/foo:{tree}-dirty-{suffix}")
    );

    run_git(root, &["checkout", "-q", "--", "pkg/foo/Dockerfile"]);
    write(&pkg.join("new.txt"), "new\n");
    let suffix = dirty_suffix(&[
        b"FROM scratch\n",
        b"image: foo\n",
        b"int main(){}\n",
        b"new\n",
    ]);
    assert_eq!(
        package_reference(&pkg).expect("resolves"),
        format!("docker.io/linuxkit/foo:{tree}-dirty-{suffix}")
    );

    // Changes outside the package do not count.
    std::fs::remove_file(pkg.join("new.txt")).expect("rm");
    write(&root.join("elsewhere.txt"), "x\n");
    assert_eq!(
        package_reference(&pkg).expect("resolves"),
        format!("docker.io/linuxkit/foo:{tree}")
    );
}

#[test]
fn build_yml_org_and_tag_template() {
    let dir = repo();
    let root = dir.path();
    write(
        &root.join("pkg/foo/build.yml"),
        "image: foo\norg: acme\ntag: \"v1-{{ .Hash }}\"\narches: [amd64]\n",
    );
    run_git(root, &["commit", "-q", "-am", "tag"]);
    let tree = run_git(root, &["rev-parse", "HEAD:pkg/foo"]);
    assert_eq!(
        package_reference(&root.join("pkg/foo")).expect("resolves"),
        format!("docker.io/acme/foo:v1-{tree}")
    );
}

#[test]
fn extra_sources_fold_in_with_sha1() {
    let dir = repo();
    let root = dir.path();
    write(
        &root.join("pkg/foo/build.yml"),
        "image: foo\nextra-sources:\n  - ../../shared:/shared\n",
    );
    write(&root.join("shared/lib.c"), "lib\n");
    run_git(root, &["add", "."]);
    run_git(root, &["commit", "-q", "-m", "extra"]);
    let tree = run_git(root, &["rev-parse", "HEAD:pkg/foo"]);
    let shared = run_git(root, &["rev-parse", "HEAD:shared"]);
    let expected = sha1_hex(format!("{tree}{shared}").as_bytes());
    assert_eq!(
        package_reference(&root.join("pkg/foo")).expect("resolves"),
        format!("docker.io/linuxkit/foo:{expected}")
    );
}

#[test]
fn outside_git_the_tag_is_latest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir.path().join("build.yml"), "image: foo\n");
    assert_eq!(
        package_reference(dir.path()).expect("resolves"),
        "docker.io/linuxkit/foo:latest"
    );
}

#[test]
fn errors_name_the_template_location() {
    let dir = repo();
    let root = dir.path();
    let file = root.join("images/bad.yml");
    let text = "services:\n  - name: a\n    image: \"@pkg:../pkg/missing\"\n";
    write(&file, text);
    let err = parse_local_config(text, &file).expect_err("no such package");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}:3:12: cannot resolve `@pkg:../pkg/missing`: cannot read {}",
            file.display(),
            root.join("pkg/missing/build.yml").display()
        )),
        "{message}"
    );
    assert!(message.contains("\nhint: "), "{message}");

    // An uncommitted package.
    write(&root.join("pkg/new/build.yml"), "image: new\n");
    let text = "services:\n  - name: a\n    image: \"@pkg:../pkg/new\"\n";
    let err = parse_local_config(text, &file).expect_err("not committed");
    assert!(err.to_string().contains("is not committed"), "{err}");

    // A build.yml problem is located in the build.yml too.
    write(&root.join("pkg/foo/build.yml"), "image: foo\nimagee: x\n");
    let text = "services:\n  - name: a\n    image: \"@pkg:../pkg/foo\"\n";
    let err = parse_local_config(text, &file).expect_err("bad build.yml");
    assert!(
        err.to_string().contains(&format!(
            "{}:2:1: top level: unknown key `imagee`",
            root.join("pkg/foo/build.yml").display()
        )),
        "{err}"
    );
    let err = package_reference(Path::new("/nonexistent/pkg")).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/pkg/build.yml")
    );
}

#[test]
fn invalid_yml_is_reported_before_templates() {
    let text = "services:\n  - name: a\n    image: \"@pkg:../nowhere\"\n    bogus: 1\n";
    let err = parse_local_config(text, Path::new("x.yml")).expect_err("invalid");
    assert!(
        err.to_string()
            .starts_with("x.yml:4:5: services[0]: unknown key `bogus`"),
        "{err}"
    );
}

#[test]
fn tag_templates() {
    assert_eq!(expand_tag("{{.Hash}}", "abc").expect("ok"), "abc");
    assert_eq!(
        expand_tag("v1-{{ .Hash }}-x", "abc").expect("ok"),
        "v1-abc-x"
    );
    assert_eq!(expand_tag("a  {{- .Hash -}}  b", "h").expect("ok"), "ahb");
    assert_eq!(expand_tag("fixed", "h").expect("ok"), "fixed");
    assert!(expand_tag("{{.Other}}", "h").is_err());
    assert!(expand_tag("{{.Hash", "h").is_err());
}

#[test]
fn sha1_vectors() {
    assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(
        sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
}

#[test]
fn lexical_clean() {
    assert_eq!(clean(Path::new("a/b/../c/./d")), Path::new("a/c/d"));
    assert_eq!(clean(Path::new("/x/../../y")), Path::new("/y"));
    assert_eq!(clean(Path::new("../a")), Path::new("../a"));
    assert_eq!(clean(Path::new("a/..")), Path::new("."));
}
