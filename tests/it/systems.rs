//! The example systems really run: the example init starts every bundle lkb wrote with Debian's
//! runc, and `//examples:sshd` serves ssh (Debian's dropbear) to the host through QEMU's user
//! networking. Real QEMU under TCG; the host's ssh client is Debian's `openssh-client`.
//!
//! `lkb run qemu --until … --timeout …` on `//examples:minimal` (exit 0 at the marker, a
//! marker that never comes ends non-zero with the console's tail) is covered in `run.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lkb_tests::cli::{self, Lkb};
use lkb_tests::examples::{DONE_MARKER, ONSHUTDOWN_MARKER};

use crate::media::workspace_in;

/// Under TCG on a loaded 2-core machine the sshd example serves ssh about 30 s after QEMU starts.
const SSH_READY_LIMIT: Duration = Duration::from_secs(360);

/// An example system whose onboot container and one service ask runc for a sysctl that
/// cannot be: in the host's network namespace runc refuses it before starting, in a new one
/// the kernel has no such setting. (runc 1.1 only warns about capabilities it does not know,
/// so an unknown capability would start.)
const REJECTED_YML: &str = r#"kernel:
  image: localhost/lkb-examples/kernel:1
  cmdline: "console=tty0 console=ttyS0"
init:
  - localhost/lkb-examples/init:1
onboot:
  - name: nosysctl
    image: localhost/lkb-examples/rngd:1
    command: ["/sbin/rngd", "-1"]
    sysctl:
      net.ipv4.lkb_no_such_setting: "1"
services:
  - name: broken
    image: localhost/lkb-examples/getty:1
    net: new
    sysctl:
      net.ipv4.lkb_no_such_setting: "1"
  - name: getty
    image: localhost/lkb-examples/getty:1
"#;

struct Systems {
    lkb: Lkb,
    root: PathBuf,
    /// The private key whose public half `examples/sshd.yml` puts into the image.
    key: PathBuf,
}

/// One workspace for the tests here: the repository's `examples/sshd.yml`, [`REJECTED_YML`],
/// and a HOME with a fresh ed25519 key pair at `~/.ssh/id_rsa` (the name sshd.yml reads).
fn systems() -> &'static Systems {
    static SYSTEMS: OnceLock<Systems> = OnceLock::new();
    SYSTEMS.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systems");
        let lkb = workspace_in(&root, "");
        fs_err::copy(
            cli::repo_root().join("examples/sshd.yml"),
            root.join("examples/sshd.yml"),
        )
        .unwrap();
        fs_err::write(root.join("examples/rejected.yml"), REJECTED_YML).unwrap();
        let home = root.join("home");
        fs_err::create_dir_all(home.join(".ssh")).unwrap();
        let key = home.join(".ssh/id_rsa");
        let keygen = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "lkb-systems-test",
                "-f",
            ])
            .arg(&key)
            .output()
            .expect("ssh-keygen runs (Debian package openssh-client)");
        assert!(keygen.status.success(), "{keygen:?}");
        let lkb = lkb.env("HOME", home.display().to_string());
        Systems { lkb, root, key }
    })
}

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Kills the detached QEMU (our own, by its pid) if a test ends before it powered off.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
}

/// `ssh root@127.0.0.1 -p PORT COMMAND` with the test's key, never asking anything.
fn ssh(key: &Path, port: u16, command: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            command,
        ])
        .output()
        .expect("ssh runs (Debian package openssh-client)")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `lkb run //examples:sshd --publish PORT:22 --detached` (the README's command, with a label:
/// built, then booted), ssh in as root with the key from the `files:` entry, look at PID 1 and
/// the services, `poweroff` from inside: the onshutdown container prints its line and QEMU
/// exits.
#[test]
fn sshd_example_serves_ssh_and_powers_off_through_its_onshutdown_container() {
    let s = systems();
    let state = s.root.join("state-sshd");
    let _ = fs_err::remove_dir_all(&state);
    let port = free_port();
    let publish = format!("{port}:22");
    let state_arg = state.display().to_string();
    let started = Instant::now();
    let run = s
        .lkb
        .run(&[
            "run",
            "--accel",
            "tcg",
            "--mem",
            "512",
            "--publish",
            &publish,
            "--detached",
            "--state",
            &state_arg,
            "//examples:sshd",
        ])
        .unwrap();
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let pid: u32 = fs_err::read_to_string(state.join("qemu.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _guard = KillOnDrop(pid);
    let console = || fs_err::read_to_string(state.join("console.log")).unwrap_or_default();

    let command = "cat /proc/1/cmdline; echo; ls /containers/services";
    let mut last = None;
    while started.elapsed() < SSH_READY_LIMIT && alive(pid) {
        let output = ssh(&s.key, port, command);
        if output.status.success() {
            last = Some(output);
            break;
        }
        last = Some(output);
        std::thread::sleep(Duration::from_secs(2));
    }
    let ready_after = started.elapsed();
    let output = last.expect("at least one ssh attempt");
    assert!(
        output.status.success(),
        "no ssh login within {ready_after:.0?}: {}\nconsole:\n{}",
        text(&output),
        console()
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let init = lines.next().unwrap_or_default();
    assert_eq!(
        init, "/bin/sh\0/init\0",
        "PID 1 is the example init: {stdout:?}"
    );
    let services: Vec<&str> = lines.flat_map(str::split_whitespace).collect();
    assert_eq!(
        services,
        ["dhcpcd", "getty", "rngd", "sshd"],
        "{stdout}\nssh ready after {ready_after:.0?}"
    );
    let log = console();
    for line in [
        "lkb-init: onboot 000-rngd1 exited 0",
        "lkb-init: service sshd started",
        DONE_MARKER,
    ] {
        assert!(log.contains(line), "no {line:?} on the console:\n{log}");
    }

    // busybox poweroff signals PID 1 (the container shares the host's PID namespace), which
    // runs the onshutdown container, stops everything and powers off.
    let _ = ssh(&s.key, port, "poweroff");
    let off = Instant::now();
    while alive(pid) && off.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = console();
    assert!(!alive(pid), "QEMU {pid} still runs after poweroff:\n{log}");
    let shutdown_line = format!("{ONSHUTDOWN_MARKER}: the onshutdown container ran");
    assert!(
        log.lines().any(|l| l.trim_end() == shutdown_line),
        "the onshutdown container's line is missing:\n{log}"
    );
    assert!(
        log.contains("lkb-init: onshutdown 000-goodbye exited 0"),
        "{log}"
    );
    assert!(log.contains("reboot: Power down"), "{log}");
}

/// A config.json runc refuses to start (a sysctl the kernel does not have) gives one clear
/// console line per container with runc's reason, and the init goes on: the other service
/// starts and the boot reaches its end.
#[test]
fn a_container_runc_rejects_is_a_console_line_not_a_hang() {
    let s = systems();
    let run = s
        .lkb
        .run(&[
            "run",
            "qemu",
            "--accel",
            "tcg",
            "--mem",
            "512",
            "--networking",
            "none",
            "--timeout",
            "5m",
            "--until",
            DONE_MARKER,
            "//examples:rejected",
        ])
        .unwrap();
    assert_eq!(
        run.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    for (prefix, reason) in [
        (
            "lkb-init: onboot 000-nosysctl failed: ",
            r#"sysctl "net.ipv4.lkb_no_such_setting" not allowed in host network namespace"#,
        ),
        (
            "lkb-init: service broken failed: ",
            "open /proc/sys/net/ipv4/lkb_no_such_setting: no such file or directory",
        ),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", run.stdout));
        assert!(line.contains(reason), "{line}");
    }
    assert!(
        run.stdout.contains("lkb-init: service getty started"),
        "{}",
        run.stdout
    );
}
