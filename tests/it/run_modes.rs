//! `lkb run qemu` beyond kernel+initrd, with real QEMU under TCG: the VM disk formats
//! through QEMU's drivers, kernel+squashfs prefixes, `--state`, `--detached`, `--data`, and
//! SIGTERM. One shared build of `examples/minimal.yml`: kernel+initrd and the VM disks in
//! `out/`, kernel+squashfs in `sq/` (a prefix with a squashfs boots it, as LinuxKit's does).
//! `xorriso` (Debian's xorriso) reads the data ISO back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lkb_tests::cli::Lkb;
use lkb_tests::examples::DONE_MARKER;

use crate::media::{tool, workspace_in};

struct Built {
    lkb: Lkb,
    root: PathBuf,
}

impl Built {
    fn path(&self, relative: &str) -> String {
        self.root.join(relative).display().to_string()
    }
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-modes");
        let lkb = workspace_in(&root, "");
        for (formats, dir) in [
            ("kernel+initrd,qcow2-bios,vhd", "out"),
            ("kernel+squashfs", "sq"),
        ] {
            let run = lkb
                .build(&["//examples:minimal", "-f", formats, "--dir", dir])
                .unwrap();
            assert_eq!(run.code, 0, "lkb build -f {formats}:\n{}", run.stderr);
        }
        Built { lkb, root }
    })
}

/// `lkb run qemu` with TCG and 512 MB, then `args`.
fn run(lkb: &Lkb, args: &[&str]) -> lkb_tests::cli::Run {
    let mut all = vec!["run", "qemu", "--accel", "tcg", "--mem", "512"];
    all.extend_from_slice(args);
    lkb.run(&all).unwrap()
}

fn assert_ok(run: &lkb_tests::cli::Run) {
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
}

#[test]
fn run_boots_qcow2_and_vhd_disks_through_qemus_drivers() {
    let b = built();
    for image in ["out/minimal.qcow2", "out/minimal.vhd"] {
        let run = run(
            &b.lkb,
            &["--timeout", "10m", "--until", DONE_MARKER, &b.path(image)],
        );
        assert_ok(&run);
        assert!(run.stdout.contains(DONE_MARKER), "{image}: {}", run.stdout);
    }
}

/// The example kernel has squashfs as a module, so it cannot mount this root: the boot is
/// checked up to the kernel's own print of the command line lkb gave it.
#[test]
fn run_boots_a_kernel_squashfs_prefix_with_root_on_the_first_disk() {
    let b = built();
    let until = "Command line:.*root=/dev/sda";
    for (args, image) in [
        (&[][..], "sq/minimal"),
        (&["--squashfs"][..], "sq/minimal-kernel"),
    ] {
        let mut all = vec!["--timeout", "5m", "--until", until];
        all.extend_from_slice(args);
        let image = b.path(image);
        all.push(&image);
        let run = run(&b.lkb, &all);
        assert_ok(&run);
        let line = run
            .stdout
            .lines()
            .find_map(|line| line.split_once("Command line: ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no `Command line:`: {}", run.stdout));
        assert_eq!(line.trim(), "console=tty0 console=ttyS0 root=/dev/sda");
    }
    // --squashfs on a prefix without one names what it looked for.
    let run = run(&b.lkb, &["--squashfs", &b.path("out/minimal")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("minimal-squashfs.img"),
        "{}",
        run.stderr
    );
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to `limit` for `done`, checking twice a second.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    done()
}

fn kill(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// `--detached --state DIR --data hello --disk size=64M`: lkb prints the pid and exits; the
/// pid file names a running QEMU given the state's MAC, disk and data CD, whose console
/// reaches the example's marker; the data ISO holds `config` = `hello`.
#[test]
fn run_detached_keeps_its_files_in_the_state_dir_and_hands_the_guest_its_data() {
    let b = built();
    let state = b.root.join("state-detached");
    let _ = fs_err::remove_dir_all(&state);
    let state_arg = state.display().to_string();
    let run = run(
        &b.lkb,
        &[
            "--detached",
            "--state",
            &state_arg,
            "--data",
            "hello",
            "--disk",
            "size=64M",
            &b.path("out/minimal"),
        ],
    );
    assert_ok(&run);
    let pid: u32 = fs_err::read_to_string(state.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        run.stdout.contains(&format!("pid: {pid}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&state_arg), "{}", run.stdout);
    assert!(alive(pid), "QEMU {pid} is not running");
    let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");

    let console = state.join("console.log");
    let reached = wait_for(Duration::from_secs(300), || {
        fs_err::read_to_string(&console).is_ok_and(|log| log.contains(DONE_MARKER))
    });
    kill("-TERM", pid);
    assert!(
        wait_for(Duration::from_secs(30), || !alive(pid)),
        "QEMU {pid} still runs"
    );
    assert!(
        reached,
        "{DONE_MARKER} not in the console:\n{}",
        fs_err::read_to_string(&console).unwrap_or_default()
    );

    let mac = fs_err::read_to_string(state.join("mac-addr")).unwrap();
    assert!(
        cmdline.contains(&format!("mac={}", mac.trim())),
        "{cmdline}"
    );
    assert!(
        cmdline.contains(&format!(
            "file={}/data.iso,format=raw,media=cdrom",
            state.display()
        )),
        "{cmdline}"
    );
    assert!(
        cmdline.contains(&format!("file={}/disk.img,format=qcow2", state.display())),
        "{cmdline}"
    );
    assert!(state.join("disk.img").is_file());

    let iso = state.join("data.iso").display().to_string();
    let listing = tool(
        "xorriso",
        &["-indev", &iso, "-find", "/", "-exec", "lsdl", "--"],
    );
    assert!(listing.contains("'/config'"), "{listing}");
    let out = b.root.join("config-out");
    let _ = fs_err::remove_file(&out);
    tool(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            &iso,
            "-extract",
            "/config",
            &out.display().to_string(),
        ],
    );
    assert_eq!(fs_err::read_to_string(&out).unwrap(), "hello");
}

/// SIGTERM to a foreground `lkb run` stops QEMU and removes the temporary state dir; a
/// given `--state` stays (without the pid file).
#[test]
fn run_on_sigterm_stops_qemu_and_removes_only_a_temporary_state_dir() {
    let b = built();
    let tmp = b.root.join("tmp-sigterm");
    let given = b.root.join("state-sigterm");
    for dir in [&tmp, &given] {
        let _ = fs_err::remove_dir_all(dir);
    }
    fs_err::create_dir_all(&tmp).unwrap();
    let prefix = b.path("out/minimal");
    let given_arg = given.display().to_string();
    for state in [None, Some(given_arg.as_str())] {
        let mut args = vec!["run", "qemu", "--accel", "tcg", "--mem", "512"];
        args.extend(["--timeout", "10m", "--until", "NEVER-PRINTED"]);
        if let Some(state) = state {
            args.extend(["--state", state]);
        }
        args.push(&prefix);
        let mut child = b
            .lkb
            .command(&args)
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let state_dir = || match state {
            Some(state) => Some(PathBuf::from(state)),
            None => fs_err::read_dir(&tmp)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .next(),
        };
        let mut pid = None;
        wait_for(Duration::from_secs(60), || {
            pid = state_dir()
                .and_then(|dir| fs_err::read_to_string(dir.join("qemu.pid")).ok())
                .and_then(|text| text.trim().parse::<u32>().ok());
            pid.is_some()
        });
        let pid = pid.expect("qemu.pid appears in the state dir");
        assert!(alive(pid));
        kill("-TERM", child.id());
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
        assert!(!alive(pid), "QEMU {pid} outlived lkb");
        match state {
            None => assert_eq!(fs_err::read_dir(&tmp).unwrap().count(), 0, "left behind"),
            Some(_) => {
                assert!(given.join("mac-addr").is_file());
                assert!(!given.join("qemu.pid").exists());
            }
        }
    }
}

#[test]
fn run_refuses_conflicting_or_missing_data_and_detached_with_a_limit() {
    let b = built();
    let prefix = b.path("out/minimal");
    for (args, expect) in [
        (
            &["--data", "a", "--data-file", "b"][..],
            "cannot be used with",
        ),
        (&["--data-file", "no-such-file"][..], "no-such-file"),
        (&["--detached", "--until", "x"][..], "cannot be used with"),
        (
            &["--detached", "--timeout", "1m"][..],
            "cannot be used with",
        ),
    ] {
        let mut all = args.to_vec();
        all.push(&prefix);
        let run = run(&b.lkb, &all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expect), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn run_dry_run_prints_the_qemu_command_line_for_gui_tap_bridge_and_arm64() {
    let b = built();
    let prefix = b.path("out/minimal");
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let line = |args: &[&str]| {
        let mut all = vec!["--dry-run", "--state", &state_dir];
        all.extend_from_slice(args);
        all.push(&prefix);
        let run = run(&b.lkb, &all);
        assert_ok(&run);
        run.stdout.trim().to_owned()
    };
    let gui_tap = line(&["--gui", "--networking", "tap,tap7"]);
    assert!(
        gui_tap.starts_with("qemu-system-x86_64 -accel tcg "),
        "{gui_tap}"
    );
    assert!(gui_tap.contains(" -serial mon:stdio "), "{gui_tap}");
    assert!(!gui_tap.contains("-nographic"), "{gui_tap}");
    assert!(
        gui_tap.contains(" -netdev tap,id=net0,ifname=tap7,script=no,downscript=no "),
        "{gui_tap}"
    );
    assert!(
        gui_tap.contains(&format!("-kernel {prefix}-kernel")),
        "{gui_tap}"
    );
    // A port forward needs QEMU's user networking.
    let refused = run(
        &b.lkb,
        &[
            "--dry-run",
            "--networking",
            "bridge",
            "--publish",
            "2222:22",
            &prefix,
        ],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    let bridge = line(&["--networking", "bridge,br9", "--arch", "arm64"]);
    assert!(
        bridge.starts_with(
            "qemu-system-aarch64 -accel tcg -smp 1 -m 512 -machine virt -cpu max -nographic "
        ),
        "{bridge}"
    );
    assert!(
        bridge.contains(" -netdev bridge,id=net0,br=br9 "),
        "{bridge}"
    );
    // Nothing ran: no pid file in the state directory.
    assert!(!state.path().join("qemu.pid").exists());
}
