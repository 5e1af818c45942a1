//! The scenarios against a Remote Execution API cache (BuildGrid), and what only REAPI has:
//! `--remote-download=all` against blobs the server lost.

use lkb_tests::buildgrid::BuildGrid;
use lkb_tests::cli::files_under;

use super::*;

impl CacheServer for BuildGrid {
    fn url(&self) -> String {
        BuildGrid::url(self)
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        BuildGrid::blob_path(self, hex)
    }

    fn kill(&mut self) {
        BuildGrid::kill(self);
    }
}

#[test]
fn a_second_machine_builds_from_the_cache_and_shares_its_change_back() {
    let server = BuildGrid::start().expect("BuildGrid");
    machines_share_results_both_ways(&server, &[]);
}

#[test]
fn read_only_mode_uploads_nothing() {
    let server = BuildGrid::start().expect("BuildGrid");
    super::read_only_mode_uploads_nothing(&server);
}

#[test]
fn a_dead_or_silent_cache_costs_one_warning_and_the_build_succeeds() {
    a_dead_or_silent_cache_costs_one_warning(&|addr| format!("grpc://{addr}"));
}

#[test]
fn a_cache_killed_mid_build_and_a_corrupt_blob_never_break_the_build() {
    let mut server = BuildGrid::start().expect("BuildGrid");
    a_corrupt_blob_and_a_killed_cache_never_break_the_build(&mut server);
}

#[test]
fn download_all_takes_every_blob_and_a_lost_blob_means_a_local_rebuild() {
    let server = BuildGrid::start().expect("BuildGrid");
    let url = server.url();
    let a = Machine::new("alice", "hello\\n");
    a.build(&["--remote-cache", &url]).ok().expect("A uploads");

    // --remote-download=all: every blob of every hit, more than the outputs.
    let b = Machine::new("bob", "hello\\n");
    let run = b
        .build(&["--remote-cache", &url, "--remote-download=all"])
        .ok()
        .expect("B builds");
    let s = summary(&run);
    assert_eq!(number(&s["actions"], "executed"), 0, "{s}");
    assert!(number(&s, "bytes_downloaded") > output_bytes(&b), "{s}");
    same_outputs(&a, &b);

    // C builds without the bytes; then the cache loses everything C did not download, and an
    // onboot command changes, so its bundle needs an image tree C never fetched.
    let c = Machine::new("carol", "hello\\n");
    c.build(&["--remote-cache", &url]).ok().expect("C builds");
    let kept: std::collections::BTreeSet<String> =
        files_under(&c.lkb.store.path().join("store-v1/cas"))
            .unwrap()
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
    let mut deleted = 0;
    let objects = server.blob_path(&"0".repeat(64));
    let objects = objects.parent().unwrap().parent().unwrap();
    for path in files_under(objects).unwrap() {
        let name = format!(
            "{}{}",
            path.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy(),
            path.file_name().unwrap().to_string_lossy()
        );
        if !kept.contains(&name) {
            fs_err::remove_file(&path).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted > 0);
    let yml = c.root().join("examples/sshd.yml");
    let text = fs_err::read_to_string(&yml).unwrap();
    assert!(text.contains(r#"command: ["/sbin/rngd", "-1"]"#), "{text}");
    fs_err::write(
        &yml,
        text.replace(
            r#"command: ["/sbin/rngd", "-1"]"#,
            r#"command: ["/sbin/rngd", "-1", "-v"]"#,
        ),
    )
    .unwrap();
    let run = c
        .build(&["--remote-cache", &url])
        .ok()
        .expect("C rebuilds locally");
    let warned = warnings(&run);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("building again without the remote cache")),
        "{warned:?}"
    );
    let reference = Machine::new("ref", "hello\\n");
    fs_err::write(
        reference.root().join("examples/sshd.yml"),
        fs_err::read(&yml).unwrap(),
    )
    .unwrap();
    reference.build(&[]).ok().expect("local build");
    same_outputs(&c, &reference);
}

/// The REAPI backend on its own: the 5 MiB blob goes up and comes back through ByteStream in
/// chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reapi_backend_streams_large_blobs_and_refuses_corrupt_ones() {
    let server = BuildGrid::start().expect("BuildGrid");
    let cache =
        lkb_remote::connect(&server.url(), &lkb_remote::RemoteOptions::default()).expect("backend");
    a_backend_round_trips_and_refuses_corrupt_blobs(cache, &server).await;
}
