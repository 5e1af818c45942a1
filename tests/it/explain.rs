//! `lkb explain`, `lkb build --explain` and `lkb query` against the real binary: one test per
//! rebuild reason (new, a `files` entry changed, the cmdline changed, a damaged cache entry,
//! `--rebuild`, an image tag that moved in a real registry), and the query graph in text, DOT
//! and JSON before and after a build.

use std::collections::BTreeSet;
use std::path::Path;

use lkb_tests::cli::{Lkb, Run, example_layout, workspace};
use lkb_tests::oci::{Image, ImageBuilder, Layer};
use lkb_tests::registry::Registry;
use lkb_tests::synthetic;
use serde_json::Value;

/// A small system from the example images: kernel, init, and a `files` section of four
/// entries (`files[3]` holds `last`).
fn system_yml(cmdline: &str, last: &str) -> String {
    format!(
        "kernel:\n  image: localhost/lkb-examples/kernel:1\n  cmdline: \"{cmdline}\"\n\
         init:\n  - localhost/lkb-examples/init:1\n\
         files:\n\
         \x20 - path: etc/a\n    contents: \"a\"\n\
         \x20 - path: etc/b\n    contents: \"b\"\n\
         \x20 - path: etc/c\n    directory: true\n\
         \x20 - path: etc/d\n    contents: \"{last}\"\n"
    )
}

/// A workspace using the example images' OCI layout, with `app.yml` (`//:app`).
fn example_workspace(cmdline: &str, last: &str) -> tempfile::TempDir {
    let layout = example_layout().expect("example images");
    let ws = workspace(&[&layout], &[]).expect("workspace");
    write_app(ws.path(), &system_yml(cmdline, last));
    ws
}

fn write_app(dir: &Path, yml: &str) {
    fs_err::write(dir.join("app.yml"), yml).expect("write app.yml");
}

/// `lkb explain ARGS` with no progress lines: stdout is the explanation.
fn explain(lkb: &Lkb, args: &[&str]) -> Run {
    let mut all = vec!["--progress=none", "explain"];
    all.extend_from_slice(args);
    lkb.run(&all)
        .expect("run lkb")
        .ok()
        .expect("lkb explain succeeds")
}

/// The explanation lines (`KIND LABEL: REASON`).
fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

/// The line for the action whose label starts with `label` (after the padded kind).
fn line_for<'r>(run: &'r Run, kind: &str, label: &str) -> &'r str {
    let prefix = format!("{kind:<9} {label}");
    run.stdout
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {kind} {label}:\n{}", run.stdout))
}

/// Labels (with their kind) of the actions a `--progress=json` build executed.
fn executed(run: &Run) -> BTreeSet<String> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == "action_finished" && e["cached"] == false)
        .map(|e| {
            format!(
                "{} {}",
                e["kind"].as_str().unwrap_or(""),
                e["label"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn first_build_explains_every_action_as_new_and_a_noop_explains_nothing() {
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");
    let first = lkb
        .run(&["--progress=json", "explain", "//:app"])
        .expect("run")
        .ok()
        .expect("first explain");
    let summary = first.summary().expect("summary");
    let explained = lines(&first);
    assert_eq!(
        explained.len() as u64,
        summary["actions"]["executed"].as_u64().expect("executed"),
        "one line per executed action:\n{}",
        first.stdout
    );
    assert!(!explained.is_empty());
    for line in &explained {
        assert!(line.ends_with(": new"), "{line}");
    }
    // The JSON events carry the reason too.
    for event in first.events() {
        if event["event"] == "action_finished" && event["cached"] == false {
            assert_eq!(event["reason"], "new", "{event}");
            assert_eq!(event["reason_kind"], "new", "{event}");
        }
    }
    assert!(
        ws.path().join("lkb-out/app-initrd.img").is_file(),
        "explain builds"
    );

    let again = explain(&lkb, &["//:app"]);
    assert_eq!(again.stdout, "", "nothing ran, nothing to explain");
}

#[test]
fn changed_files_entry_is_named_and_traced_downstream() {
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");
    explain(&lkb, &["//:app"]);

    write_app(ws.path(), &system_yml("console=ttyS0", "D"));
    let run = explain(&lkb, &["//:app"]);
    assert_eq!(
        lines(&run).len(),
        2,
        "files and its segment (the initrd file is written from the segments):\n{}",
        run.stdout
    );
    assert_eq!(
        line_for(&run, "files", "files (4 entries)"),
        "files     files (4 entries): parameter changed: files[3].contents"
    );
    let segment = line_for(&run, "segment", "segment files");
    assert!(
        segment
            .starts_with("segment   segment files: input changed: files (4 entries): tree sha256:"),
        "{segment}"
    );
    assert!(segment.contains(" → sha256:"), "{segment}");
    assert!(
        segment.ends_with(" (files[3].contents changed)"),
        "{segment}"
    );
}

#[test]
fn a_changed_files_entry_rewrites_only_the_initrd_tail_unless_the_file_has_another_link() {
    use std::os::unix::fs::MetadataExt;
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");
    explain(&lkb, &["//:app"]);
    let initrd = ws.path().join("lkb-out/app-initrd.img");
    let inode = |path: &Path| fs_err::metadata(path).expect("stat").ino();
    let before = inode(&initrd);
    let old = fs_err::read(&initrd).expect("initrd");

    // The files segment is the initrd's last part: the head stays, the tail is rewritten
    // in the same file, and the result is what a fresh write gives.
    write_app(
        ws.path(),
        &system_yml("console=ttyS0", "a longer content than before"),
    );
    explain(&lkb, &["//:app"]);
    assert_eq!(inode(&initrd), before, "updated in place, not replaced");
    let updated = fs_err::read(&initrd).expect("initrd");
    assert_ne!(updated, old);
    assert!(updated.len() > old.len());
    fs_err::remove_file(&initrd).expect("remove");
    explain(&lkb, &["//:app"]);
    assert_eq!(fs_err::read(&initrd).expect("initrd"), updated);

    // Shrinking works the same way: the file is cut to its new length.
    write_app(ws.path(), &system_yml("console=ttyS0", "d"));
    let fresh = inode(&initrd);
    explain(&lkb, &["//:app"]);
    assert_eq!(inode(&initrd), fresh);
    assert_eq!(fs_err::read(&initrd).expect("initrd"), old);

    // A second name for the file keeps its content: the output is replaced, not written into.
    let link = ws.path().join("kept-initrd.img");
    fs_err::hard_link(&initrd, &link).expect("link");
    write_app(ws.path(), &system_yml("console=ttyS0", "e"));
    explain(&lkb, &["//:app"]);
    assert_ne!(inode(&initrd), inode(&link));
    assert_eq!(fs_err::read(&link).expect("link"), old);
    assert_ne!(fs_err::read(&initrd).expect("initrd"), old);
}

#[test]
fn changed_cmdline_is_named_in_explain_and_in_build_explain() {
    let ws = example_workspace("console=ttyS0", "d");
    // Two stores, so the same change can be explained by both commands.
    let explainer = Lkb::new(ws.path()).expect("lkb");
    let builder = Lkb::new(ws.path()).expect("lkb");
    explain(&explainer, &["//:app"]);
    builder
        .build(&["//:app"])
        .expect("run")
        .ok()
        .expect("first build");

    write_app(ws.path(), &system_yml("console=ttyS0 quiet", "d"));
    let run = explain(&explainer, &["//:app"]);
    assert_eq!(
        line_for(&run, "kernel", "kernel localhost/lkb-examples/kernel:1"),
        "kernel    kernel localhost/lkb-examples/kernel:1: parameter changed: cmdline"
    );
    // The segment takes only the kernel's `initrd` tree, which the command line does not
    // touch: it stays cached, and so does the initrd.
    let explained = lines(&run);
    assert!(
        explained
            .iter()
            .all(|l| !l.contains("segment kernel") && !l.starts_with("initrd")),
        "{explained:?}"
    );

    // `build --explain` prints the same reasons in its progress lines (on stderr).
    let progress = builder
        .run(&["--progress=plain", "build", "--explain", "//:app"])
        .expect("run")
        .ok()
        .expect("build --explain");
    assert_eq!(progress.stdout, "", "build --explain keeps stdout clean");
    for line in lines(&run) {
        let (head, reason) = line.split_once(": ").expect("KIND LABEL: REASON");
        let label = head[10..].to_owned();
        let found = progress
            .stderr
            .lines()
            .any(|l| l.contains(&format!(" {label} (")) && l.ends_with(&format!("): {reason}")));
        assert!(
            found,
            "`{line}` is not in the progress output:\n{}",
            progress.stderr
        );
    }
}

#[test]
fn damaged_cache_entry_names_the_missing_blob() {
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");
    explain(&lkb, &["//:app"]);
    // The initrd's last segment: a blob only its segment action makes, and its own file in
    // the store (small blobs share pack files instead).
    let initrd = fs_err::read(ws.path().join("lkb-out/app-initrd.img")).expect("initrd");
    let cas = lkb.store.path().join("store-v1/cas/sha256");
    let mut last = None;
    for fanout in fs_err::read_dir(&cas).expect("cas") {
        for entry in fs_err::read_dir(fanout.expect("fanout").path()).expect("fanout") {
            let path = entry.expect("entry").path();
            let bytes = fs_err::read(&path).expect("blob");
            if !bytes.is_empty() && initrd.ends_with(&bytes) {
                last = Some(path);
            }
        }
    }
    let blob = last.expect("the initrd's last segment is a blob file in the store");
    let hex = blob.file_name().unwrap().to_string_lossy().into_owned();
    fs_err::remove_file(&blob).expect("remove the segment");

    let run = explain(&lkb, &["//:app"]);
    let lines = lines(&run);
    assert_eq!(
        lines.len(),
        1,
        "only the segment action runs again: {lines:?}"
    );
    assert!(
        lines[0].starts_with("segment ")
            && lines[0].ends_with(&format!(
                ": cache entry damaged: blob sha256:{hex} is missing or truncated"
            )),
        "{lines:?}"
    );
    assert!(blob.is_file(), "running it again restored the blob");
}

#[test]
fn rebuild_forces_every_action() {
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");
    let first = explain(&lkb, &["//:app"]);
    let run = explain(&lkb, &["--rebuild", "//:app"]);
    assert_eq!(lines(&run).len(), lines(&first).len(), "{}", run.stdout);
    for line in lines(&run) {
        assert!(line.ends_with(": forced (--rebuild)"), "{line}");
    }
}

fn app_image(tag: &str) -> Image {
    ImageBuilder::new()
        .layer(
            Layer::new()
                .dir("etc")
                .file("etc/which", format!("{tag}\n")),
        )
        .entrypoint(&["/bin/true"])
        .build()
        .expect("app image")
}

#[test]
fn moved_image_is_announced_and_named_as_the_origin() {
    let registry = Registry::start().expect("registry");
    let addr = registry.addr().to_owned();
    registry
        .push_image(
            "lkb/kernel",
            "1",
            &synthetic::fake_kernel_image().expect("kernel"),
        )
        .expect("push kernel");
    let v1 = app_image("v1");
    registry.push_image("lkb/app", "1", &v1).expect("push v1");
    let ws = workspace(&[], &[]).expect("workspace");
    let app = format!("{addr}/lkb/app:1");
    write_app(
        ws.path(),
        &format!(
            "kernel:\n  image: {addr}/lkb/kernel:1\n  cmdline: \"console=ttyS0\"\n\
             onboot:\n  - name: app\n    image: {app}\n"
        ),
    );
    let lkb = Lkb::new(ws.path()).expect("lkb");
    let first = explain(&lkb, &["//:app"]);
    assert!(!first.stdout.contains("moved"), "{}", first.stdout);

    // The tag moves; --pull notices.
    let v2 = app_image("v2");
    registry.push_image("lkb/app", "1", &v2).expect("push v2");
    let run = lkb
        .run(&["--progress=json", "explain", "--pull", "//:app"])
        .expect("run")
        .ok()
        .expect("explain --pull");
    let explained = lines(&run);
    assert_eq!(
        explained[0],
        format!("image {app} moved: {} → {}", v1.digest(), v2.digest()),
        "the move comes before the actions:\n{}",
        run.stdout
    );
    let origin = format!(" (image {app} moved)");
    let bundle = line_for(&run, "bundle", "bundle containers/onboot/000-app");
    assert!(bundle.contains(": input changed: merge "), "{bundle}");
    assert!(bundle.ends_with(&origin), "{bundle}");
    let merge = line_for(&run, "merge", &format!("merge {app}"));
    assert!(merge.ends_with(&origin), "{merge}");
    let fetch = line_for(&run, "fetch", "fetch sha256:");
    assert!(
        fetch.ends_with(": new"),
        "a new layer is a new action: {fetch}"
    );
    let segment = line_for(&run, "segment", "segment onboot[0] app");
    assert!(segment.ends_with(&origin), "{segment}");
    // Nothing about the kernel ran.
    assert!(!run.stdout.contains("kernel"), "{}", run.stdout);
    assert_eq!(
        explained.len() as u64 - 1,
        run.summary().expect("summary")["actions"]["executed"]
            .as_u64()
            .expect("n")
    );
    // The JSON progress has the move as an event.
    let moved: Vec<Value> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "image_moved")
        .collect();
    assert_eq!(moved.len(), 1, "{}", run.stderr);
    assert_eq!(moved[0]["ref"], app.as_str());
    assert_eq!(moved[0]["old"], v1.digest().to_string());
    assert_eq!(moved[0]["new"], v2.digest().to_string());
    let executed = executed(&run);
    assert!(
        executed.iter().all(|label| !label.starts_with("kernel ")),
        "{executed:?}"
    );
}

/// `lkb query //:app --output FORMAT` on stdout.
fn query(lkb: &Lkb, output: &str) -> String {
    lkb.run(&["-q", "query", "//:app", "--output", output])
        .expect("run")
        .ok()
        .expect("lkb query")
        .stdout
}

/// The node lines of the text output (before the outputs section).
fn node_lines(text: &str) -> Vec<&str> {
    text.lines().take_while(|line| !line.is_empty()).collect()
}

/// Checks the DOT output's structure: a digraph whose node declarations and edges agree with
/// the JSON graph. Returns the number of node declarations.
fn check_dot(dot: &str, json: &Value) -> usize {
    let nodes = json["nodes"].as_array().expect("nodes");
    let body = dot
        .trim_end()
        .strip_prefix("digraph lkb {\n")
        .and_then(|rest| rest.strip_suffix("\n}"))
        .unwrap_or_else(|| panic!("not a digraph:\n{dot}"));
    let mut declared = BTreeSet::new();
    let mut edges = BTreeSet::new();
    for line in body.lines().map(str::trim) {
        if let Some((from, to)) = line.split_once(" -> ") {
            let to = to.split([' ', ';']).next().expect("edge target");
            edges.insert((from.to_owned(), to.to_owned()));
        } else if let Some((id, attrs)) = line.split_once(" [") {
            assert!(attrs.ends_with("];"), "{line}");
            declared.insert(id.to_owned());
        } else {
            assert!(
                line == "rankdir=LR;" || line.starts_with("node ["),
                "unexpected DOT line: {line}"
            );
        }
    }
    for (from, to) in &edges {
        assert!(
            declared.contains(from) && declared.contains(to),
            "{from} -> {to}"
        );
    }
    let mut expected = BTreeSet::new();
    for node in nodes {
        let id = node["id"].as_u64().expect("id");
        assert!(declared.contains(&format!("n{id}")), "n{id} not declared");
        for input in node["inputs"].as_array().expect("inputs") {
            expected.insert((
                format!("n{}", input.as_u64().expect("input")),
                format!("n{id}"),
            ));
        }
    }
    let graph_edges: BTreeSet<_> = edges
        .iter()
        .filter(|(_, to)| to.starts_with('n'))
        .cloned()
        .collect();
    assert_eq!(graph_edges, expected, "DOT edges are the inputs");
    let outputs: usize = json["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .flat_map(|t| t["outputs"].as_array().expect("outputs"))
        .map(|output| 1 + output["more"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        edges.len(),
        expected.len() + outputs,
        "one dashed edge per artifact an output holds"
    );
    declared.len()
}

#[test]
fn query_shows_the_graph_and_what_is_cached() {
    let ws = example_workspace("console=ttyS0", "d");
    let lkb = Lkb::new(ws.path()).expect("lkb");

    // Before any build: nothing is cached; only actions without inputs have a key.
    let text = query(&lkb, "text");
    let before = node_lines(&text);
    assert!(before.len() > 10, "{text}");
    for line in &before {
        assert!(line.contains(" not cached "), "{line}");
    }
    let json: Value = serde_json::from_str(&query(&lkb, "json")).expect("query JSON parses");
    assert_eq!(json["v"], 1);
    let nodes = json["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), before.len());
    assert_eq!(json["summary"]["total"], nodes.len());
    assert_eq!(json["summary"]["cached"], 0);
    for node in nodes {
        assert_eq!(node["cached"], false, "{node}");
        let leaf = node["inputs"].as_array().is_some_and(Vec::is_empty);
        assert_eq!(node["key"].is_string(), leaf, "{node}");
        assert_eq!(
            node["state"],
            if leaf { "not-cached" } else { "unknown" },
            "{node}"
        );
    }
    for kind in [
        "fetch",
        "unpack",
        "merge",
        "kernel",
        "init-root",
        "files",
        "segment",
    ] {
        assert!(nodes.iter().any(|n| n["kind"] == kind), "no {kind} node");
    }
    let declared = check_dot(&query(&lkb, "dot"), &json);
    assert!(declared > nodes.len(), "nodes and output notes");
    assert!(
        !ws.path().join("lkb.lock").exists(),
        "query writes no lock file"
    );
    assert!(
        !ws.path().join("lkb-out").exists(),
        "query writes no outputs"
    );

    // Query ran nothing: the first build still runs every action.
    let build = lkb.build(&["//:app"]).expect("run").ok().expect("build");
    let summary = build.summary().expect("summary");
    assert_eq!(summary["actions"]["executed"], summary["actions"]["total"]);
    assert_eq!(summary["actions"]["total"], nodes.len());

    // After the build: everything cached, every key known, and the same keys in every format.
    let text = query(&lkb, "text");
    let after = node_lines(&text);
    assert_eq!(after.len(), before.len());
    for line in &after {
        assert!(line.contains(" cached "), "{line}");
        assert!(!line.contains(" ? "), "{line}");
    }
    assert!(text.contains("//:app → "), "{text}");
    assert!(text.contains("app-initrd.img <- #"), "{text}");
    let json: Value = serde_json::from_str(&query(&lkb, "json")).expect("query JSON parses");
    assert_eq!(json["summary"]["cached"], json["summary"]["total"]);
    assert_eq!(json["summary"]["not_cached"], 0);
    for (node, line) in json["nodes"].as_array().expect("nodes").iter().zip(&after) {
        assert_eq!(node["cached"], true, "{node}");
        assert_eq!(node["state"], "cached", "{node}");
        let key = node["key"].as_str().expect("key");
        let short = node["short_key"].as_str().expect("short key");
        assert_eq!(key.len(), 64);
        assert!(key.starts_with(short));
        let id = node["id"].as_u64().expect("id");
        assert!(line.starts_with(&format!("#{id} ")), "{line}");
        assert!(line.contains(&format!(" {short} ")), "{line} has {short}");
        assert!(
            line.contains(node["label"].as_str().expect("label")),
            "{line}"
        );
    }
    let dot = query(&lkb, "dot");
    check_dot(&dot, &json);
    assert!(!dot.contains("not cached"), "{dot}");
}
